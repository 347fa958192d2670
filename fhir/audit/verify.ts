/**
 * Verifies the audit trail against its hash chain: walks the chain from the first entry,
 * recomputes every hash from the audited row's stored content, and checks that every
 * AuditEvent row is chained exactly once. Rows younger than the grace period may still be
 * waiting for the sealer (pending, not an error). Reports the first problem found:
 * - `altered`: a row's content (or the entry's hash) no longer matches its entry;
 * - `removed`: an entry whose AuditEvent row is gone, or missing chain positions;
 * - `inserted`: an entry that does not follow the one before it (prev_hash mismatch), or an
 *   AuditEvent row older than the grace period that is not in the chain.
 * Runs in one repeatable-read snapshot, so sealing going on meanwhile does not confuse it.
 */
import type { Database, Queryable } from '../db/database.js';
import { chainHash, GENESIS_HASH } from './chain.js';

export type ChainProblemKind = 'altered' | 'removed' | 'inserted';

export interface ChainProblem {
  kind: ChainProblemKind;
  /** The chain position concerned, when the problem is at an entry. */
  position?: number;
  /** The AuditEvent id concerned. */
  id?: string;
  detail: string;
}

export interface ChainVerification {
  valid: boolean;
  /** Chain entries checked. */
  checked: number;
  /** Unsealed rows younger than the grace period. */
  pending: number;
  firstProblem?: ChainProblem;
}

export interface VerifyOptions {
  /** How long a committed row may stay unsealed before it counts as inserted. */
  graceMs?: number;
  batchSize?: number;
}

export const DEFAULT_GRACE_MS = 60_000;

interface EntryRow {
  position: string;
  audit_id: string;
  hash: string;
  prev_hash: string;
  row_id: string | null;
  content: string | null;
}

export async function verifyAuditChain(db: Database, options: VerifyOptions = {}): Promise<ChainVerification> {
  return db.transaction(async (tx) => {
    if (db.engine === 'postgres') {
      await tx.query('SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY');
    }
    const walked = await walkChain(tx, options.batchSize ?? 1000);
    const { pending, inserted } = await unchainedRows(tx, options.graceMs ?? DEFAULT_GRACE_MS);
    const firstProblem = walked.problem ?? inserted;
    return { valid: !firstProblem, checked: walked.checked, pending, ...(firstProblem ? { firstProblem } : {}) };
  });
}

async function walkChain(tx: Queryable, batchSize: number): Promise<{ checked: number; problem?: ChainProblem }> {
  let checked = 0;
  let position = 0;
  let prevHash = GENESIS_HASH;
  for (;;) {
    const entries = await tx.query<EntryRow>(
      `SELECT c.position, c.audit_id, c.hash, c.prev_hash, a.id AS row_id, a.content
         FROM audit_chain c LEFT JOIN "AuditEvent" a ON a.id = c.audit_id
        WHERE c.position > $1 ORDER BY c.position LIMIT $2`,
      [position, batchSize]
    );
    for (const entry of entries) {
      const at = Number(entry.position);
      const id = entry.audit_id;
      if (at !== position + 1) {
        const missing = at === position + 2 ? `position ${position + 1} is` : `positions ${position + 1}–${at - 1} are`;
        return { checked, problem: { kind: 'removed', position: position + 1, detail: `Chain ${missing} missing (the entry after position ${position} is ${at})` } };
      }
      if (entry.prev_hash !== prevHash) {
        return { checked, problem: { kind: 'inserted', position: at, id, detail: `The entry at position ${at} does not follow the entry before it (prev_hash mismatch)` } };
      }
      if (entry.row_id === null || entry.content === null) {
        return { checked, problem: { kind: 'removed', position: at, id, detail: `AuditEvent/${id}, chained at position ${at}, is gone` } };
      }
      if (chainHash(entry.prev_hash, id, entry.content) !== entry.hash) {
        return { checked, problem: { kind: 'altered', position: at, id, detail: `AuditEvent/${id} at position ${at} does not match its chain hash` } };
      }
      checked++;
      position = at;
      prevHash = entry.hash;
    }
    if (entries.length < batchSize) {
      return { checked };
    }
  }
}

async function unchainedRows(tx: Queryable, graceMs: number): Promise<{ pending: number; inserted?: ChainProblem }> {
  const unchained = `FROM "AuditEvent" a WHERE NOT EXISTS (SELECT 1 FROM audit_chain c WHERE c.audit_id = a.id)`;
  const [{ pending }] = await tx.query<{ pending: string }>(
    `SELECT count(*) AS pending ${unchained} AND a.last_updated >= now() - $1 * interval '1 millisecond'`,
    [graceMs]
  );
  const [overdue] = await tx.query<{ id: string; seq: string; last_updated: string }>(
    `SELECT a.id, a.seq, a.last_updated ${unchained} AND a.last_updated < now() - $1 * interval '1 millisecond' ORDER BY a.seq LIMIT 1`,
    [graceMs]
  );
  return {
    pending: Number(pending),
    ...(overdue
      ? {
          inserted: {
            kind: 'inserted' as const,
            id: overdue.id,
            detail: `AuditEvent/${overdue.id} (seq ${overdue.seq}, recorded ${new Date(overdue.last_updated).toISOString()}) is not in the chain`,
          },
        }
      : {}),
  };
}
