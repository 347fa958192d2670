/**
 * The audit sealer: moments after AuditEvent rows commit, it appends them to the hash chain
 * in sequence order. Requests only insert their rows and never wait on the chain; sealing
 * runs apart, one pass at a time across every instance on the database (a transaction-scoped
 * advisory lock: an instance that finds it taken skips the pass, the holder does the work).
 *
 * A row whose transaction commits after later rows were sealed is simply appended on the
 * next pass: the chain's order is seal order. A row recorded long before the chain's last
 * seal (more than `lateToleranceMs`) is not sealed: no request holds its audit entry
 * uncommitted that long, so such a row was put there by hand, and the verifier reports it.
 */
import type { Logger } from 'pino';
import type { Database, Queryable } from '../db/database.js';
import { chainHash, chainHead, GENESIS_HASH } from './chain.js';

/** Arbitrary constant naming CareThread's audit sealing lock. */
const SEAL_LOCK = 7_241_905_114;
/** Timed passes per sweep for late commits (the first pass sweeps too). */
const SWEEP_EVERY = 10;

export interface SealerOptions {
  /** How often committed rows are sealed. */
  intervalMs: number;
  /** Rows per sealing transaction. */
  batchSize?: number;
  /** How late (after the chain's last seal) a row may still commit and be sealed. */
  lateToleranceMs?: number;
  logger?: Logger;
}

export const DEFAULT_LATE_TOLERANCE_MS = 10 * 60_000;

export class AuditSealer {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<number> | undefined;
  private stopped = true;
  private passes = 0;

  constructor(
    private readonly db: Database,
    private readonly options: SealerOptions
  ) {}

  start(): void {
    this.stopped = false;
    this.schedule();
  }

  /** Stops the timer and seals what has committed so far. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await this.running?.catch(() => undefined);
    await this.sealNow().catch(() => undefined);
  }

  /**
   * Seals every committed, unsealed row now; returns how many were sealed. A pass without
   * `sweep` only looks past the highest seq sealed so far (new rows, a short index range);
   * a sweep also looks back over the tolerance window for rows that committed late.
   */
  async sealNow(sweep = true): Promise<number> {
    // One pass at a time in this process; the advisory lock orders the instances.
    const previous = this.running ?? Promise.resolve(0);
    const pass = previous.catch(() => 0).then(async () => {
      let total = 0;
      for (;;) {
        const sealed = await this.sealBatch(sweep);
        total += sealed;
        if (sealed < (this.options.batchSize ?? 500)) {
          return total;
        }
      }
    });
    this.running = pass;
    return pass;
  }

  private schedule(): void {
    if (this.stopped) {
      return;
    }
    this.timer = setTimeout(() => {
      this.passes++;
      this.sealNow(this.passes % SWEEP_EVERY === 1)
        .catch((err: unknown) => this.options.logger?.warn({ err: (err as Error).message }, 'audit sealing pass failed'))
        .finally(() => this.schedule());
    }, this.options.intervalMs);
  }

  private sealBatch(sweep: boolean): Promise<number> {
    const batchSize = this.options.batchSize ?? 500;
    const tolerance = this.options.lateToleranceMs ?? DEFAULT_LATE_TOLERANCE_MS;
    return this.db.transaction(async (tx) => {
      const [{ locked }] = await tx.query<{ locked: boolean }>('SELECT pg_try_advisory_xact_lock($1) AS locked', [SEAL_LOCK]);
      if (!locked) {
        return 0; // another instance is sealing
      }
      const head = await chainHead(tx);
      const [{ max_seq: headMaxSeq }] = await tx.query<{ max_seq: string }>('SELECT COALESCE(max(max_seq), 0) AS max_seq FROM audit_chain WHERE position = $1', [head?.position ?? 0]);
      const cutoff = head ? new Date(Date.parse(head.sealedAt) - tolerance).toISOString() : null;
      const rows = await unsealed(tx, batchSize, sweep ? await floor(tx, tolerance) : headMaxSeq, cutoff);
      let maxSeq = BigInt(headMaxSeq);
      let position = head?.position ?? 0;
      let prevHash = head?.hash ?? GENESIS_HASH;
      const positions: number[] = [];
      const ids: string[] = [];
      const seqs: string[] = [];
      const hashes: string[] = [];
      const prevHashes: string[] = [];
      const maxSeqs: string[] = [];
      for (const row of rows) {
        maxSeq = BigInt(row.seq) > maxSeq ? BigInt(row.seq) : maxSeq;
        maxSeqs.push(String(maxSeq));
        const hash = chainHash(prevHash, row.id, row.content);
        positions.push(++position);
        ids.push(row.id);
        seqs.push(row.seq);
        hashes.push(hash);
        prevHashes.push(prevHash);
        prevHash = hash;
      }
      if (rows.length) {
        await tx.query(
          `INSERT INTO audit_chain (position, audit_id, seq, hash, prev_hash, max_seq)
           SELECT * FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::text[], $5::text[], $6::bigint[])`,
          [positions, ids, seqs, hashes, prevHashes, maxSeqs]
        );
      }
      return rows.length;
    });
  }
}

/**
 * The seq at or below which no row needs sealing any more: the highest seq sealed more than
 * the tolerance ago. Every row below it was either sealed or is too late to be (see the
 * header), so a sweep's scan stays short however long the trail grows.
 */
async function floor(tx: Queryable, toleranceMs: number): Promise<string> {
  const [row] = await tx.query<{ max_seq: string }>(
    `SELECT max_seq FROM audit_chain WHERE sealed_at < now() - $1 * interval '1 millisecond' ORDER BY sealed_at DESC LIMIT 1`,
    [toleranceMs]
  );
  return row?.max_seq ?? '0';
}

/** Committed rows above seq `after` not yet in the chain, recorded no earlier than `cutoff`, in seq order. */
async function unsealed(tx: Queryable, limit: number, after: string, cutoff: string | null): Promise<{ id: string; seq: string; content: string }[]> {
  return tx.query(
    `SELECT a.id, a.seq, a.content FROM "AuditEvent" a
      WHERE a.seq > $2::bigint
        AND ($3::timestamptz IS NULL OR a.last_updated >= $3::timestamptz)
        AND NOT EXISTS (SELECT 1 FROM audit_chain c WHERE c.audit_id = a.id)
      ORDER BY a.seq
      LIMIT $1`,
    [limit, after, cutoff]
  );
}
