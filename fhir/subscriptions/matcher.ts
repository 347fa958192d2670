/**
 * Finds the active Subscriptions a new resource version matches, inside the transaction that
 * wrote it, and queues what each is owed: an outbox entry for a rest-hook (delivered after
 * commit, with retries, once per Subscription and version), a NOTIFY on the events channel for
 * a websocket. PostgreSQL holds a NOTIFY until the transaction commits and drops it on
 * rollback, and delivers it to every instance listening on the database, so a provider app
 * hears of a message whichever instance it is connected to (live.ts).
 */
import type { Subscription } from '@medplum/fhirtypes';
import type { Queryable } from '../db/database.js';
import { enqueue } from '../outbox/outbox.js';
import type { ResourceStore } from '../store/store.js';
import { criteriaMatch, parseCriteria, SUBSCRIBABLE_TYPES } from './criteria.js';
import type { Criteria } from './criteria.js';
import type { NotifiedVersion } from './notification.js';

/** The NOTIFY channel instances share for live events. */
export const EVENTS_CHANNEL = 'carethread_events';

export const REST_HOOK_KIND = 'rest-hook';

/** An outbox entry of kind rest-hook: which Subscription to notify of which version. */
export interface RestHookPayload extends NotifiedVersion {
  subscription: string;
}

/** What the events channel carries for a websocket match: the Subscription's id, nothing more. */
export interface SubscriptionEvent {
  event: 'subscription-match';
  subscription: string;
}

export class SubscriptionMatcher {
  constructor(private readonly store: ResourceStore) {}

  async match(tx: Queryable, type: string, id: string, version: string): Promise<void> {
    if (!SUBSCRIBABLE_TYPES.has(type)) {
      return;
    }
    const rows = await tx.query<{ id: string; content: string }>(
      `SELECT id, content FROM "Subscription" WHERE t_status && ARRAY['active']::text[] AND NOT deleted`
    );
    for (const row of rows) {
      const subscription = JSON.parse(row.content) as Subscription;
      const criteria = this.criteriaOf(subscription);
      if (!criteria || criteria.type !== type || ended(subscription) || !(await criteriaMatch(tx, this.store, criteria, id))) {
        continue;
      }
      if (subscription.channel.type === 'rest-hook') {
        const payload: RestHookPayload = { subscription: row.id, type, id, version };
        await enqueue(tx, { kind: REST_HOOK_KIND, idempotencyKey: `sub:${row.id}:${type}/${id}/${version}`, payload, subject: `Subscription/${row.id}` });
      } else if (subscription.channel.type === 'websocket') {
        const event: SubscriptionEvent = { event: 'subscription-match', subscription: row.id };
        await tx.query('SELECT pg_notify($1, $2)', [EVENTS_CHANNEL, JSON.stringify(event)]);
      }
    }
  }

  /** Criteria are checked on every write; one that no longer parses is skipped, not fatal to the message. */
  private criteriaOf(subscription: Subscription): Criteria | undefined {
    try {
      return parseCriteria(this.store, subscription.criteria);
    } catch {
      return undefined;
    }
  }
}

function ended(subscription: Subscription): boolean {
  return subscription.end !== undefined && Date.parse(subscription.end) <= Date.now();
}
