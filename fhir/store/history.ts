/**
 * Instance and type history: every version, newest first, paged by the history table's
 * sequence number (stable while others write), confined to what the caller may see.
 */
import { compartmentsFor, CONFIDENTIAL_LABEL } from '../access.js';
import type { AccessContext } from '../access.js';
import type { Queryable } from '../db/database.js';
import { forbidden, notFound } from '../errors.js';
import { isValidId } from '../validate.js';
import type { AccessGuard } from './guard.js';

export interface HistoryEntry {
  id: string;
  version: number;
  lastUpdated: string;
  deleted: boolean;
  content: string;
  /** Whether this version created the resource (method POST in a history Bundle). */
  first: boolean;
}

export interface HistoryPage {
  entries: HistoryEntry[];
  total?: number;
  /** History sequence number to continue from, when more entries follow. */
  nextBefore?: string;
}

export async function readHistory(
  db: Queryable,
  guard: AccessGuard,
  ctx: AccessContext,
  type: string,
  id: string | undefined,
  query: { count: number; since?: string; before?: string }
): Promise<HistoryPage> {
  if (id !== undefined && !isValidId(id)) {
    throw notFound(`${type}/${id} does not exist`);
  }
  const count = query.count;
  const conditions: string[] = [];
  const params: unknown[] = [];
  if (id !== undefined) {
    const current = await db.query(`SELECT content, compartments, t__security FROM "${type}" WHERE id = $1`, [id]);
    if (!current.length) {
      throw notFound(`${type}/${id} does not exist`);
    }
    const [row] = current;
    await guard.assertVisible(db, ctx, type, { id, content: row.content, compartments: row.compartments ?? [], security: row.t__security });
    params.push(id);
    conditions.push(`id = $${params.length}`);
  } else if (!ctx.system) {
    if (guard.restrictions(ctx, type, 's')) {
      throw forbidden(`Type history is not available under a query-restricted scope`);
    }
    const compartments = compartmentsFor(ctx, type);
    if (compartments) {
      params.push(compartments);
      conditions.push(`id IN (SELECT id FROM "${type}" WHERE compartments && $${params.length}::text[])`);
    }
    if (ctx.hideConfidential) {
      params.push([CONFIDENTIAL_LABEL]);
      conditions.push(`id NOT IN (SELECT id FROM "${type}" WHERE t__security && $${params.length}::text[])`);
    }
  }
  if (query.since) {
    params.push(query.since);
    conditions.push(`last_updated >= $${params.length}::timestamptz`);
  }
  if (query.before) {
    params.push(query.before);
    conditions.push(`seq < $${params.length}::bigint`);
  }
  const where = conditions.length ? `WHERE ${conditions.join(' AND ')}` : '';
  const rows = await db.query(
    `SELECT seq, id, version, last_updated, deleted, content FROM "${type}_History" ${where} ORDER BY seq DESC LIMIT ${count + 1}`,
    params
  );
  const page = rows.slice(0, count);
  const entries = page.map((r) => ({
    id: r.id,
    version: r.version,
    lastUpdated: isoInstant(r.last_updated),
    deleted: r.deleted,
    content: r.content,
    first: r.version === 1,
  }));
  return { entries, nextBefore: rows.length > count && page.length ? String(page[page.length - 1].seq) : undefined };
}

function isoInstant(value: string): string {
  return new Date(value).toISOString();
}
