/**
 * FHIR R4 Subscriptions, assembled: the REST handlers that check what is stored, the matcher
 * the message transaction calls, the rest-hook deliverer for the outbox, and the live events
 * websocket clients bind to. The HTTP side (the websocket endpoint) lives in server/.
 */
import type { Subscription } from '@medplum/fhirtypes';
import type { AccessContext } from '../access.js';
import type { Queryable } from '../db/database.js';
import { unprocessable } from '../errors.js';
import type { Deliverer } from '../outbox/outbox.js';
import type { TypeHandlers } from '../rest/dispatch.js';
import type { ResourceStore } from '../store/store.js';
import { parseCriteria } from './criteria.js';
import { subscriptionHandlers } from './handlers.js';
import { LiveSubscriptions } from './live.js';
import { SubscriptionMatcher } from './matcher.js';
import { restHookDeliverer } from './rest-hook.js';
import { assertConfined, assertMayManage } from './rules.js';

export interface SubscriptionsOptions {
  fhirBase: string;
  /** How long one rest-hook POST may take. */
  restHookTimeoutMs?: number;
}

export class Subscriptions {
  readonly live: LiveSubscriptions;
  readonly handlers: TypeHandlers;
  private readonly matcher: SubscriptionMatcher;

  constructor(
    private readonly store: ResourceStore,
    private readonly options: SubscriptionsOptions
  ) {
    this.live = new LiveSubscriptions(store.db);
    this.handlers = subscriptionHandlers(store);
    this.matcher = new SubscriptionMatcher(store);
  }

  /** Queues the notifications a new resource version is owed; runs in the writing transaction. */
  match(tx: Queryable, type: string, id: string, version: string): Promise<void> {
    return this.matcher.match(tx, type, id, version);
  }

  restHookDeliverer(): Deliverer {
    return restHookDeliverer(this.store, { fhirBase: this.options.fhirBase, timeoutMs: this.options.restHookTimeoutMs ?? 10_000 });
  }

  /**
   * Whether `ctx` may bind a websocket to Subscription `id`: it must be able to read it, be
   * one who may use Subscriptions, and the Subscription must be an active websocket one whose
   * criteria it could have written itself.
   */
  async authorizeBind(ctx: AccessContext, id: string): Promise<void> {
    assertMayManage(ctx);
    const stored = await this.store.read(ctx, 'Subscription', id);
    const subscription = JSON.parse(stored.content) as Subscription;
    if (subscription.channel?.type !== 'websocket') {
      throw unprocessable(`Subscription/${id} is not a websocket Subscription`);
    }
    if (subscription.status !== 'active') {
      throw unprocessable(`Subscription/${id} is ${subscription.status}, not active`);
    }
    await assertConfined(this.store.db, ctx, parseCriteria(this.store, subscription.criteria), this.store.options.fhirBaseUrl);
  }

  async close(): Promise<void> {
    await this.live.stop();
  }
}
