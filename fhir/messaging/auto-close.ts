/**
 * Threads close themselves: an open thread whose last word from the patient side (or its
 * opening, when the patient side never wrote) is older than the configured number of days
 * becomes `completed`, and its Task, if still open, is cancelled with the reason. A thread
 * whose latest message is the patient's own, still unanswered, stays open however old it
 * is: closing it would drop the question from the provider's inbox and hide a missed due
 * time from the response-time figures. Threads staff closed by hand get their open Task
 * cancelled on the same pass.
 */
import type { Communication, Task } from '@medplum/fhirtypes';
import type { Logger } from 'pino';
import { systemContext } from '../access.js';
import type { Database, Queryable } from '../db/database.js';
import type { ResourceStore } from '../store/store.js';
import { THREAD_TAG } from './codes.js';
import { AUTO_REPLY_SENDER } from './messages.js';

const THREAD = `${THREAD_TAG.system}|${THREAD_TAG.code}`;
const OPEN_TASK_STATUSES = ['draft', 'requested', 'received', 'accepted', 'ready', 'in-progress', 'on-hold'];
const DAY_MS = 86_400_000;
const BATCH = 200;

export interface AutoCloseOptions {
  /** Days without a patient-side message after which an open thread closes. */
  days: number;
  /** How often the job looks for stale threads. */
  intervalMs: number;
  logger?: Logger;
}

/** The threads to close: open, quiet on the patient side since `cutoff`, not awaiting the practice. */
const STALE_THREADS = `
  SELECT h.id FROM "Communication" h
    LEFT JOIN LATERAL (
      SELECT max(x.sort) AS sent FROM "Communication_by_part_of_sent" x JOIN "Communication" m ON m.id = x.id
       WHERE x.target = 'Communication/' || h.id AND NOT m.deleted
         AND EXISTS (SELECT 1 FROM unnest(m.r_sender) s WHERE s LIKE 'Patient/%' OR s LIKE 'RelatedPerson/%')
    ) patient_side ON true
    LEFT JOIN LATERAL (
      SELECT m.r_sender AS sender FROM "Communication_by_part_of_sent" x JOIN "Communication" m ON m.id = x.id
       WHERE x.target = 'Communication/' || h.id AND x.sort IS NOT NULL AND NOT m.deleted
         AND NOT (COALESCE(m.r_sender, '{}') && ARRAY[$3::text])
       ORDER BY x.sort DESC, x.id DESC LIMIT 1
    ) latest ON true
   WHERE NOT h.deleted AND h.t__tag && ARRAY[$1::text] AND h.t_status && ARRAY['in-progress']
     AND COALESCE(h.d_sent_lo, h.last_updated) < $2::timestamptz
     AND (patient_side.sent IS NULL OR patient_side.sent < $2::timestamptz)
     AND NOT EXISTS (SELECT 1 FROM unnest(COALESCE(latest.sender, '{}')) s WHERE s LIKE 'Patient/%' OR s LIKE 'RelatedPerson/%')
     AND ($4::text IS NULL OR h.id = $4::text)
     AND ($5::text IS NULL OR h.id > $5::text)
   ORDER BY h.id
   LIMIT ${BATCH}`;

export class ThreadAutoClose {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<unknown> | undefined;
  private stopped = true;

  constructor(
    private readonly db: Database,
    private readonly store: ResourceStore,
    private readonly options: AutoCloseOptions
  ) {}

  /**
   * Runs every `intervalMs`, the first time one interval after start: a restart does not
   * close threads under the feet of whoever is working right after it.
   */
  start(): void {
    this.stopped = false;
    this.schedule();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await this.running;
  }

  /** Closes every thread that is stale at `now`; returns the closed headers' ids. */
  async closeStaleThreads(now: Date = new Date()): Promise<string[]> {
    const cutoff = new Date(now.getTime() - this.options.days * DAY_MS).toISOString();
    const closed: string[] = [];
    let after: string | null = null;
    for (;;) {
      const rows: { id: string }[] = await this.db.query<{ id: string }>(STALE_THREADS, [THREAD, cutoff, AUTO_REPLY_SENDER, null, after]);
      for (const { id } of rows) {
        // One thread that cannot be closed (a record another system wrote oddly) must not keep the rest open.
        const done = await this.closeThread(id, cutoff).catch((err: unknown) => {
          this.options.logger?.error({ err, thread: id }, 'could not close a stale thread');
          return false;
        });
        if (done) {
          closed.push(id);
        }
      }
      if (rows.length < BATCH) {
        break;
      }
      after = rows[rows.length - 1].id;
    }
    const cancelled = await this.cancelTasksOfClosedThreads();
    if (closed.length || cancelled) {
      this.options.logger?.info({ closedThreads: closed.length, cancelledTasks: cancelled }, 'closed stale message threads');
    }
    return closed;
  }

  /** Closes one thread if it is still stale once locked (a patient may have just written). */
  private async closeThread(id: string, cutoff: string): Promise<boolean> {
    const system = systemContext('thread-auto-close');
    return this.store.transaction(async (tx) => {
      // The store's own lock order (advisory lock, then the row), so a staff member closing
      // the same thread at this moment waits instead of deadlocking.
      await tx.query('SELECT pg_advisory_xact_lock(hashtextextended($1, 0))', [`Communication/${id}`]);
      await tx.query(`SELECT 1 FROM "Communication" WHERE id = $1 FOR UPDATE`, [id]);
      const still = await tx.query(STALE_THREADS, [THREAD, cutoff, AUTO_REPLY_SENDER, id, null]);
      if (!still.length) {
        return false;
      }
      const rows = await tx.query(`SELECT content FROM "Communication" WHERE id = $1`, [id]);
      const header = JSON.parse(rows[0].content) as Communication;
      const reason = `Closed automatically after ${this.options.days} days without a message from the patient`;
      await this.store.update(system, { ...header, status: 'completed', statusReason: { text: reason } }, 'Communication', id, { tx });
      await this.cancelOpenTask(tx, id, reason);
      return true;
    });
  }

  /** Threads staff closed by hand leave no open Task behind (it would count as past due forever). */
  private async cancelTasksOfClosedThreads(): Promise<number> {
    const rows = await this.db.query<{ header: string }>(
      `SELECT h.id AS header FROM "Task" t, unnest(t.r_focus) f
         JOIN "Communication" h ON f LIKE 'Communication/%' AND h.id = substr(f, 15)
        WHERE NOT t.deleted AND t.t_status && $1::text[] AND NOT h.deleted AND h.t__tag && ARRAY[$2::text] AND NOT (h.t_status && ARRAY['in-progress'])
        LIMIT ${BATCH}`,
      [OPEN_TASK_STATUSES, THREAD]
    );
    let cancelled = 0;
    for (const { header } of rows) {
      cancelled += await this.store
        .transaction((tx) => this.cancelOpenTask(tx, header, 'The thread was closed'))
        .catch((err: unknown) => {
          this.options.logger?.error({ err, thread: header }, 'could not cancel the task of a closed thread');
          return 0;
        });
    }
    return cancelled;
  }

  private async cancelOpenTask(tx: Queryable, header: string, reason: string): Promise<number> {
    const rows = await tx.query(`SELECT content FROM "Task" WHERE r_focus @> ARRAY[$1::text] AND t_status && $2::text[] AND NOT deleted`, [
      `Communication/${header}`,
      OPEN_TASK_STATUSES,
    ]);
    for (const row of rows) {
      const task = JSON.parse(row.content) as Task;
      // lastModified is when the change happens, whatever `now` the staleness was judged at.
      const cancelled: Task = { ...task, status: 'cancelled', statusReason: { text: reason }, lastModified: new Date().toISOString() };
      await this.store.update(systemContext('thread-auto-close'), cancelled, 'Task', task.id!, { tx });
    }
    return rows.length;
  }

  private schedule(): void {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.running = this.closeStaleThreads()
        .catch((err: unknown) => this.options.logger?.error({ err }, 'closing stale message threads failed'))
        .finally(() => {
          this.running = undefined;
          if (!this.stopped) {
            this.schedule();
          }
        });
    }, this.options.intervalMs);
    this.timer.unref?.();
  }
}
