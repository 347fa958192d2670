/**
 * A Subscription's criteria (`Communication?recipient=Practitioner/1`): checked when the
 * Subscription is written, and matched against one new resource by running the very same
 * search with `_id` added, inside the transaction that wrote the resource (so the match sees
 * it, and the notification commits or rolls back with it).
 */
import type { Queryable } from '../db/database.js';
import { FhirError, unprocessable } from '../errors.js';
import { RESULT_PARAMETERS } from '../search/catalog.js';
import { executeSearch } from '../search/execute.js';
import type { ResourceStore } from '../store/store.js';

/**
 * Types whose new versions are matched against Subscriptions. The hook itself is generic; new
 * messages are what integrations and the provider app need, and a Subscription to a type that
 * never notifies would be accepted only to stay silent.
 */
export const SUBSCRIBABLE_TYPES: ReadonlySet<string> = new Set(['Communication']);

export interface Criteria {
  type: string;
  pairs: [string, string][];
}

const CRITERIA = ['Subscription.criteria'];

/** Parses and checks criteria as a search of a subscribable type; 422 when it is not one. */
export function parseCriteria(store: ResourceStore, criteria: unknown): Criteria {
  if (typeof criteria !== 'string' || !criteria.trim()) {
    throw unprocessable('Subscription.criteria is required: a search such as Communication?recipient=Practitioner/123', CRITERIA);
  }
  const text = criteria.trim();
  const question = text.indexOf('?');
  const type = question < 0 ? text : text.slice(0, question);
  if (!SUBSCRIBABLE_TYPES.has(type)) {
    throw unprocessable(`Subscriptions are supported for ${[...SUBSCRIBABLE_TYPES].join(', ')}; the criteria name "${type.slice(0, 64)}"`, CRITERIA);
  }
  const pairs = [...new URLSearchParams(question < 0 ? '' : text.slice(question + 1))];
  const resultParameter = pairs.find(([name]) => RESULT_PARAMETERS.has(name));
  if (resultParameter) {
    throw unprocessable(`Subscription.criteria selects resources; ${resultParameter[0]} has no meaning there`, CRITERIA);
  }
  try {
    store.parseSearch(type, pairs, false);
  } catch (err) {
    if (err instanceof FhirError && err.status < 500) {
      throw unprocessable(`Subscription.criteria is not a valid search: ${err.message}`, CRITERIA);
    }
    throw err;
  }
  return { type, pairs };
}

/** Whether the resource `id` of the criteria's type matches them, as seen from `tx`. */
export async function criteriaMatch(tx: Queryable, store: ResourceStore, criteria: Criteria, id: string): Promise<boolean> {
  const request = store.parseSearch(criteria.type, [...criteria.pairs, ['_id', id]], false);
  request.count = 1;
  // No scope: the match runs as CareThread. What a Subscription may ask is confined when it
  // is written (see rules.ts), and a notification carries only the id.
  const result = await executeSearch(tx, request);
  return result.matches.length > 0;
}
