/**
 * The transactional outbox. `enqueue` runs inside the caller's transaction, so a delivery
 * exists exactly when the change that caused it committed. The worker claims due entries
 * with `FOR UPDATE SKIP LOCKED` (several instances never take the same one), keeps entries
 * of one ordering key in order, retries failures with exponential backoff, and marks an
 * entry failed (visible, retryable by hand) after its last attempt.
 */
import { EventEmitter } from 'node:events';
import type { Database, Queryable } from '../db/database.js';

export interface OutboxEntry {
  id: string;
  kind: string;
  idempotencyKey: string;
  payload: unknown;
  attempts: number;
  subject?: string;
}

export interface NewOutboxEntry {
  kind: string;
  idempotencyKey: string;
  payload: unknown;
  orderingKey?: string;
  subject?: string;
}

/** Delivers one entry; throws to have it retried. A PermanentFailure is not retried. */
export type Deliverer = (entry: OutboxEntry) => Promise<void>;

export class PermanentFailure extends Error {}

export interface OutboxOptions {
  pollIntervalMs: number;
  maxAttempts: number;
  /** First retry delay; doubles per attempt, capped at an hour. */
  baseBackoffMs: number;
  batchSize?: number;
  /** How long a claimed entry is reserved for its worker before others may retry it. */
  leaseMs?: number;
}

export const DEFAULT_OUTBOX_OPTIONS: OutboxOptions = { pollIntervalMs: 1000, maxAttempts: 12, baseBackoffMs: 2000 };

export async function enqueue(tx: Queryable, entry: NewOutboxEntry): Promise<void> {
  await tx.query(
    `INSERT INTO outbox (kind, idempotency_key, ordering_key, payload, subject) VALUES ($1, $2, $3, $4, $5)
     ON CONFLICT (idempotency_key) DO NOTHING`,
    [entry.kind, entry.idempotencyKey, entry.orderingKey ?? null, JSON.stringify(entry.payload), entry.subject ?? null]
  );
}

export class OutboxWorker {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private again = false;
  private stopped = true;
  /** Emits 'delivered' and 'failed' with the entry, for observers (metrics, tests). */
  readonly events = new EventEmitter();

  constructor(
    private readonly db: Database,
    private readonly deliverers: ReadonlyMap<string, Deliverer>,
    private readonly options: OutboxOptions = DEFAULT_OUTBOX_OPTIONS
  ) {}

  start(): void {
    this.stopped = false;
    this.schedule(0);
  }

  /** Asks for a pass soon (after a transaction enqueued something). */
  wake(): void {
    if (this.stopped) {
      return;
    }
    if (this.running) {
      this.again = true;
    } else {
      this.schedule(0);
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await this.running;
  }

  /** One pass: claim due entries and deliver them. Returns how many were attempted. */
  async runOnce(): Promise<number> {
    const claimed = await this.claim();
    for (const entry of claimed) {
      await this.deliver(entry);
    }
    return claimed.length;
  }

  private schedule(delay: number): void {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.running = this.loop().finally(() => {
        this.running = undefined;
        if (!this.stopped) {
          this.schedule(this.again ? 0 : this.options.pollIntervalMs);
          this.again = false;
        }
      });
    }, delay);
    this.timer.unref?.();
  }

  private async loop(): Promise<void> {
    try {
      while (!this.stopped && (await this.runOnce()) > 0) {
        // Keep going while there is work.
      }
    } catch {
      // The database is unreachable; the next poll tries again.
    }
  }

  private async claim(): Promise<OutboxEntry[]> {
    const lease = this.options.leaseMs ?? 60_000;
    const rows = await this.db.query(
      `UPDATE outbox SET attempts = attempts + 1, next_attempt_at = now() + make_interval(secs => $2::double precision / 1000)
       WHERE id IN (
         SELECT o.id FROM outbox o
         WHERE o.status = 'pending' AND o.next_attempt_at <= now()
           AND (o.ordering_key IS NULL OR NOT EXISTS (
             SELECT 1 FROM outbox p WHERE p.ordering_key = o.ordering_key AND p.status <> 'delivered' AND p.id < o.id))
         ORDER BY o.next_attempt_at, o.id
         LIMIT $1
         FOR UPDATE SKIP LOCKED)
       RETURNING id, kind, idempotency_key, payload, attempts, subject`,
      [this.options.batchSize ?? 20, lease]
    );
    return rows
      .map((r) => ({
        id: String(r.id),
        kind: r.kind,
        idempotencyKey: r.idempotency_key,
        payload: JSON.parse(r.payload),
        attempts: r.attempts,
        subject: r.subject ?? undefined,
      }))
      .sort((a, b) => Number(a.id) - Number(b.id));
  }

  private async deliver(entry: OutboxEntry): Promise<void> {
    const deliverer = this.deliverers.get(entry.kind);
    try {
      if (!deliverer) {
        throw new PermanentFailure(`No deliverer for ${entry.kind}`);
      }
      await deliverer(entry);
      await this.db.query(`UPDATE outbox SET status = 'delivered', delivered_at = now(), last_error = NULL WHERE id = $1`, [entry.id]);
      this.events.emit('delivered', entry);
    } catch (err) {
      const permanent = err instanceof PermanentFailure || entry.attempts >= this.options.maxAttempts;
      const backoff = Math.min(this.options.baseBackoffMs * 2 ** (entry.attempts - 1), 3_600_000);
      const message = err instanceof Error ? err.message.slice(0, 500) : 'delivery failed';
      await this.db.query(
        `UPDATE outbox SET status = $2, last_error = $3, next_attempt_at = now() + make_interval(secs => $4::double precision / 1000) WHERE id = $1`,
        [entry.id, permanent ? 'failed' : 'pending', message, backoff]
      );
      if (permanent) {
        this.events.emit('failed', entry);
      }
    }
  }
}
