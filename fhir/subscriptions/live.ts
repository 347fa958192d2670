/**
 * Live subscription events for this instance's websocket clients. One LISTEN on the events
 * channel (matcher.ts) per instance; a match committed by any instance on the same database
 * reaches the listeners bound here to that Subscription. Events are wake-ups: one missed while
 * the database connection was down is not replayed (the app re-reads its inbox on reconnect).
 */
import type { Database } from '../db/database.js';
import { EVENTS_CHANNEL } from './matcher.js';
import type { SubscriptionEvent } from './matcher.js';

export type MatchListener = (subscription: string) => void;

export class LiveSubscriptions {
  private readonly listeners = new Map<string, Set<MatchListener>>();
  private listening: Promise<() => Promise<void>> | undefined;

  constructor(private readonly db: Database) {}

  /** Starts listening (once); resolves when events will be heard. */
  async start(): Promise<void> {
    this.listening ??= this.db.listen(EVENTS_CHANNEL, (payload) => this.dispatch(payload));
    try {
      await this.listening;
    } catch (err) {
      this.listening = undefined;
      throw err;
    }
  }

  /** Calls `listener` on each match of `subscription` until the returned function is called. */
  on(subscription: string, listener: MatchListener): () => void {
    let set = this.listeners.get(subscription);
    if (!set) {
      set = new Set();
      this.listeners.set(subscription, set);
    }
    set.add(listener);
    return () => {
      set.delete(listener);
      if (!set.size && this.listeners.get(subscription) === set) {
        this.listeners.delete(subscription);
      }
    };
  }

  async stop(): Promise<void> {
    const listening = this.listening;
    this.listening = undefined;
    this.listeners.clear();
    const unlisten = await listening?.catch(() => undefined);
    await unlisten?.();
  }

  private dispatch(payload: string): void {
    let event: Partial<SubscriptionEvent>;
    try {
      event = JSON.parse(payload);
    } catch {
      return;
    }
    if (event?.event !== 'subscription-match' || typeof event.subscription !== 'string') {
      return;
    }
    for (const listener of [...(this.listeners.get(event.subscription) ?? [])]) {
      listener(event.subscription);
    }
  }
}
