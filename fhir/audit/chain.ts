/**
 * The hash chain over the audit trail, shared by the sealer that extends it and the verifier
 * that re-walks it: each entry's hash commits to the previous entry's hash and to the audited
 * row's id and exact stored content.
 */
import { createHash } from 'node:crypto';
import type { Queryable } from '../db/database.js';

/** The `prev_hash` of the first entry. */
export const GENESIS_HASH = '0'.repeat(64);

export function chainHash(prevHash: string, id: string, content: string): string {
  return createHash('sha256').update(`${prevHash}\n${id}\n${content}`).digest('hex');
}

export interface ChainHead {
  position: number;
  hash: string;
  sealedAt: string;
}

/** The latest chain entry, or undefined while the chain is empty. */
export async function chainHead(db: Queryable): Promise<ChainHead | undefined> {
  const [row] = await db.query<{ position: string; hash: string; sealed_at: string }>(
    'SELECT position, hash, sealed_at FROM audit_chain ORDER BY position DESC LIMIT 1'
  );
  return row ? { position: Number(row.position), hash: row.hash, sealedAt: new Date(row.sealed_at).toISOString() } : undefined;
}
