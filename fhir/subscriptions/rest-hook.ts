/**
 * Delivers a rest-hook notification (an outbox entry queued by the matcher): a POST to the
 * Subscription's endpoint with its configured headers and, when it asked for
 * `application/fhir+json`, the id-only Bundle (notification.ts); otherwise an empty body.
 * A 2xx answer is delivered; anything else is retried by the outbox with backoff. An endpoint
 * that answers 410 Gone has gone for good: the Subscription is set to `error` and its
 * notifications stop. The Subscription is read at delivery, so one turned off, put in error
 * or deleted since the match gets nothing more.
 */
import type { Subscription } from '@medplum/fhirtypes';
import { systemContext } from '../access.js';
import type { Deliverer } from '../outbox/outbox.js';
import { PermanentFailure } from '../outbox/outbox.js';
import type { ResourceStore } from '../store/store.js';
import type { RestHookPayload } from './matcher.js';
import { idOnlyNotification } from './notification.js';
import { ID_ONLY_PAYLOAD, parseHeader } from './rules.js';

export interface RestHookOptions {
  fhirBase: string;
  /** How long one POST may take before it counts as failed. */
  timeoutMs: number;
}

export function restHookDeliverer(store: ResourceStore, options: RestHookOptions): Deliverer {
  return async (entry) => {
    const notified = entry.payload as RestHookPayload;
    const rows = await store.db.query<{ content: string }>(`SELECT content FROM "Subscription" WHERE id = $1 AND NOT deleted`, [notified.subscription]);
    const subscription = rows[0] ? (JSON.parse(rows[0].content) as Subscription) : undefined;
    const channel = subscription?.channel;
    if (!subscription || subscription.status !== 'active' || channel?.type !== 'rest-hook' || !channel.endpoint) {
      return;
    }
    const headers = new Headers((channel.header ?? []).map(parseHeader));
    let body: string | undefined;
    if (channel.payload === ID_ONLY_PAYLOAD) {
      headers.set('content-type', 'application/fhir+json');
      body = JSON.stringify(idOnlyNotification(options.fhirBase, notified));
    }
    let response: Response;
    try {
      // Redirects are not followed: they would carry the integration's headers elsewhere.
      response = await fetch(channel.endpoint, { method: 'POST', headers, body, redirect: 'manual', signal: AbortSignal.timeout(options.timeoutMs) });
    } catch {
      throw new Error('The endpoint could not be reached');
    }
    await response.body?.cancel().catch(() => undefined);
    if (response.ok) {
      return;
    }
    if (response.status === 410) {
      const error = 'The endpoint answered 410 Gone; notifications have stopped. Set the status to requested to resume.';
      await store.patch(systemContext(), 'Subscription', notified.subscription, [
        { op: 'replace', path: '/status', value: 'error' },
        { op: 'add', path: '/error', value: error },
      ]);
      throw new PermanentFailure('The endpoint answered 410 Gone');
    }
    throw new Error(`The endpoint answered HTTP ${response.status}`);
  };
}
