/**
 * What a Subscription must be before CareThread keeps it, and who may have one. Checked on
 * every write (create, update, patch) so the matcher can trust what it finds:
 *
 * - criteria: a valid search of a subscribable type (criteria.ts);
 * - channel: `rest-hook` to an http(s) endpoint, with optional `Name: value` headers (the
 *   integration's credentials, sent with each notification), or `websocket`;
 * - payload: absent (an empty POST) or `application/fhir+json`, which gets an id-only
 *   notification — never the resource itself, since a message's text is PHI;
 * - status: `requested` becomes `active` once the checks pass; `off`, `active` and `error`
 *   are kept as sent.
 *
 * Who: integrations (system clients) and staff; staff through the websocket channel only,
 * since a rest-hook has the server POST wherever it is told. The matcher runs as CareThread,
 * so a Subscription must not ask for more than its owner could read: a practitioner's
 * criteria must confine the messages to those addressed to them, their roles or their pools
 * (`recipient=`), the messages their inbox already shows them. Patients and representatives
 * are refused by the access policy; auditors, who may not read messages, here.
 */
import type { Subscription } from '@medplum/fhirtypes';
import type { AccessContext } from '../access.js';
import type { Queryable } from '../db/database.js';
import { forbidden, unprocessable } from '../errors.js';
import { identitiesOf } from '../messaging/care-team.js';
import { relativeReference } from '../store/index-values.js';
import type { ResourceStore } from '../store/store.js';
import type { Criteria } from './criteria.js';
import { parseCriteria } from './criteria.js';

export const ID_ONLY_PAYLOAD = 'application/fhir+json';

const HEADER = /^([!#$%&'*+.^_`|~0-9A-Za-z-]{1,64}):[ \t]*([^\r\n\0]{0,4096})$/;
/** Headers CareThread sets itself (or the HTTP client must). */
const RESERVED_HEADERS = new Set(['content-type', 'content-length', 'host', 'transfer-encoding', 'connection', 'expect', 'upgrade', 'te', 'trailer', 'keep-alive']);

/** Integrations and staff may manage (and bind to) Subscriptions; anyone else gets a 403. */
export function assertMayManage(ctx: AccessContext): void {
  if (ctx.system || ctx.role === 'client' || ctx.role === 'practitioner') {
    return;
  }
  throw forbidden('Only integrations and staff may use Subscriptions');
}

/** Checks `subscription` (already structurally valid) for `ctx`; returns it as it is stored. */
export async function checkSubscription(tx: Queryable, store: ResourceStore, ctx: AccessContext, subscription: Subscription): Promise<Subscription> {
  const criteria = parseCriteria(store, subscription.criteria);
  const channel = subscription.channel;
  if (channel?.type === 'rest-hook') {
    if (!ctx.system && ctx.role !== 'client') {
      // A rest-hook makes the server POST wherever it is told: that is for integrations an
      // administrator registered, not for every staff login.
      throw forbidden('rest-hook Subscriptions are for integrations (system clients); the provider app uses the websocket channel');
    }
    checkEndpoint(channel.endpoint);
    (channel.header ?? []).forEach(parseHeader);
  } else if (channel?.type === 'websocket') {
    if (channel.endpoint || channel.header?.length) {
      throw unprocessable('A websocket Subscription has no endpoint or headers: the client binds to it at /fhir/websocket', ['Subscription.channel']);
    }
  } else {
    throw unprocessable(`Subscription.channel.type ${JSON.stringify(channel?.type ?? null)} is not supported: use rest-hook or websocket`, ['Subscription.channel.type']);
  }
  if (channel.payload !== undefined && channel.payload !== ID_ONLY_PAYLOAD) {
    throw unprocessable(
      `Subscription.channel.payload must be absent (an empty notification) or ${ID_ONLY_PAYLOAD} (an id-only notification)`,
      ['Subscription.channel.payload']
    );
  }
  await assertConfined(tx, ctx, criteria, store.options.fhirBaseUrl);
  if (subscription.status === 'requested' || subscription.status === 'active') {
    const { error: _previous, ...rest } = subscription;
    return { ...rest, status: 'active' };
  }
  return subscription;
}

/** A practitioner's criteria must name only recipients that are they, their roles or pools. */
export async function assertConfined(tx: Queryable, ctx: AccessContext, criteria: Criteria, fhirBaseUrl: string): Promise<void> {
  assertMayManage(ctx);
  if (ctx.system || ctx.role === 'client') {
    return;
  }
  const identities = new Set(ctx.fhirUser ? await identitiesOf(tx, ctx.fhirUser) : []);
  const confined = criteria.pairs.some(
    ([name, value]) => name === 'recipient' && value.split(',').every((r) => identities.has(relativeReference(r.trim(), fhirBaseUrl)))
  );
  if (!confined) {
    throw forbidden(
      'A practitioner may subscribe only to messages addressed to them, their roles or their pools: the criteria need recipient=<one of those>'
    );
  }
}

function checkEndpoint(endpoint: string | undefined): void {
  const path = ['Subscription.channel.endpoint'];
  let url: URL;
  try {
    url = new URL(endpoint ?? '');
  } catch {
    throw unprocessable('A rest-hook Subscription needs channel.endpoint: an http or https URL', path);
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') {
    throw unprocessable('channel.endpoint must be an http or https URL', path);
  }
  if (url.username || url.password) {
    throw unprocessable('channel.endpoint may not carry credentials: send them in channel.header', path);
  }
}

/** `Name: value` → [name, value]; anything else is a 422. */
export function parseHeader(header: string): [string, string] {
  const match = HEADER.exec(header);
  if (!match) {
    throw unprocessable('Each channel.header must be "Name: value" on one line', ['Subscription.channel.header']);
  }
  if (RESERVED_HEADERS.has(match[1].toLowerCase())) {
    throw unprocessable(`channel.header may not set ${match[1]}`, ['Subscription.channel.header']);
  }
  return [match[1], match[2].trimEnd()];
}
