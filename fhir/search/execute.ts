/**
 * Runs a SearchRequest: the page of matches (keyset paging), the total when asked, and the
 * included resources. All counting and filtering happens in SQL.
 */
import type { Queryable } from '../db/database.js';
import { badRequest } from '../errors.js';
import { typeCatalog } from './catalog.js';
import type { IncludeSpec, SearchRequest } from './parse.js';
import { keysetCondition, orderBy, sortColumns, SqlParams, whereClause } from './sql.js';
import type { SearchScope, SortColumn } from './sql.js';
import { sortedIndexesOf } from './sorted-indexes.js';

export interface FoundResource {
  type: string;
  id: string;
  content: string;
}

export interface SearchResult {
  matches: FoundResource[];
  included: FoundResource[];
  total?: number;
  /** Id of the last match when more follow. */
  nextAfter?: string;
  /** Id of the first match when earlier matches exist. */
  previousBefore?: string;
}

/** Most resources one `_include`/`_revinclude` adds to a page. */
const INCLUDE_LIMIT = 1000;

export async function executeSearch(db: Queryable, request: SearchRequest, scope?: SearchScope): Promise<SearchResult> {
  const result: SearchResult = { matches: [], included: [] };
  if (request.total === 'accurate' || request.summaryCount) {
    result.total = await countMatches(db, request, scope);
  }
  if (request.summaryCount || request.count === 0) {
    return result;
  }
  if (request.cursor && !(await cursorVisible(db, request, scope))) {
    // Answer as for a cursor naming no resource: paging from a resource the caller cannot
    // see would tell them whether it exists and where it sorts.
    return result;
  }
  const before = request.cursor?.direction === 'before';
  const { sql, params } = buildPageQuery(request, scope, await cursorSortValue(db, request));
  const rows = await db.query<{ id: string; content: string }>(sql, params);
  const more = rows.length > request.count;
  const page = rows.slice(0, request.count);
  if (before) {
    page.reverse();
  }
  result.matches = page.map((r) => ({ type: request.type, id: r.id, content: r.content }));
  if (page.length) {
    const first = page[0].id;
    const last = page[page.length - 1].id;
    if (before) {
      result.nextAfter = last;
      result.previousBefore = more ? first : undefined;
    } else {
      result.nextAfter = more ? last : undefined;
      result.previousBefore = request.cursor ? first : undefined;
    }
  }
  result.included = await includes(db, request, result.matches, scope);
  return result;
}

/**
 * The SQL for one page of matches (`count + 1` rows, to know whether more follow). Uses a
 * sorted index table when the search is one of the hot shapes it serves.
 */
export function buildPageQuery(
  request: SearchRequest,
  scope?: SearchScope,
  /** The cursor row's sort value, when known: lets a sorted index seek straight to the page. */
  cursorSort?: string | null
): { sql: string; params: unknown[] } {
  const catalog = typeCatalog(request.type);
  const params = new SqlParams();
  const before = request.cursor?.direction === 'before';
  const sorted = sortedIndexFor(request);
  let from: string;
  let filters = request.filters;
  let columns: SortColumn[];
  let indexCondition = '';
  if (sorted) {
    from = `${sorted.index.table} x JOIN ${catalog.table} r ON r.id = x.id`;
    filters = request.filters.filter((f) => f !== sorted.filter);
    indexCondition = `x.target = ${params.add(sorted.target)} AND `;
    const sortColumn = `${catalog.params.get(sorted.index.sort)!.column}_lo`;
    const descending = request.sort[0].descending;
    columns = [
      { expression: 'x.sort', cursorExpression: `c.${sortColumn}`, descending },
      { expression: 'x.id', cursorExpression: 'c.id', descending },
    ];
  } else {
    from = `${catalog.table} r`;
    columns = sortColumns(request, 'r');
  }
  let keyset = '';
  const towardsSmaller = request.cursor && columns[0].descending !== before;
  if (sorted && request.cursor && towardsSmaller && typeof cursorSort === 'string') {
    // (sort, id) strictly below the cursor, written so the b-tree seeks to it.
    const sort = params.add(cursorSort, 'timestamptz');
    const id = params.add(request.cursor.id);
    keyset = ` AND x.sort <= ${sort} AND (x.sort < ${sort} OR x.id < ${id})`;
  } else if (request.cursor) {
    from += `, (SELECT * FROM ${catalog.table} WHERE id = ${params.add(request.cursor.id)}) c`;
    keyset = ` AND ${keysetCondition(columns, before)}`;
  }
  const where = whereClause(request.type, filters, params, 'r', scope);
  const sql =
    `SELECT r.id, r.content FROM ${from} WHERE ${indexCondition}${where}${keyset} ` +
    `ORDER BY ${orderBy(columns, before)} LIMIT ${request.count + 1}`;
  return { sql, params: params.values };
}

/** The cursor row's value of the sorted index's date, for searches a sorted index serves. */
async function cursorSortValue(db: Queryable, request: SearchRequest): Promise<string | null | undefined> {
  const sorted = request.cursor && sortedIndexFor(request);
  if (!sorted) {
    return undefined;
  }
  const column = `${typeCatalog(request.type).params.get(sorted.index.sort)!.column}_lo`;
  const rows = await db.query(`SELECT ${column} AS sort FROM ${typeCatalog(request.type).table} WHERE id = $1`, [request.cursor!.id]);
  return rows[0] ? (rows[0].sort ?? null) : undefined;
}

/** A sorted index table that serves this search: one typed reference, sorted by its date. */
function sortedIndexFor(request: SearchRequest) {
  if (request.sort.length !== 1) {
    return undefined;
  }
  for (const index of sortedIndexesOf(request.type)) {
    if (index.sort !== request.sort[0].code) {
      continue;
    }
    const filter = request.filters.find(
      (f) => f.param.code === index.param && !f.chain && f.values.length === 1 && (f.modifier === undefined || f.modifier !== 'missing')
    );
    const value = filter && (filter.values[0] as { value?: string }).value;
    if (filter && value && /^[A-Za-z]+\/[A-Za-z0-9\-.]{1,64}$/.test(value)) {
      return { index, filter, target: value };
    }
  }
  return undefined;
}

/**
 * Whether the cursor's resource lies within the caller's reach. Deleted rows keep their
 * compartments and security labels, so a page boundary deleted since stays usable.
 */
async function cursorVisible(db: Queryable, request: SearchRequest, scope?: SearchScope): Promise<boolean> {
  const typeScope = scope?.(request.type);
  if (!typeScope) {
    return true;
  }
  if (typeScope.denied) {
    return false;
  }
  const params = new SqlParams();
  const conditions = [`r.id = ${params.add(request.cursor!.id)}`];
  if (typeScope.compartments) {
    conditions.push(`r.compartments && ${params.add(typeScope.compartments, 'text[]')}`);
  }
  if (typeScope.excludeSecurity?.length) {
    conditions.push(`NOT (COALESCE(r.t__security, '{}') && ${params.add(typeScope.excludeSecurity, 'text[]')})`);
  }
  const rows = await db.query(`SELECT 1 FROM ${typeCatalog(request.type).table} r WHERE ${conditions.join(' AND ')}`, params.values);
  return rows.length > 0;
}

async function countMatches(db: Queryable, request: SearchRequest, scope?: SearchScope): Promise<number> {
  const params = new SqlParams();
  const where = whereClause(request.type, request.filters, params, 'r', scope);
  const rows = await db.query<{ n: string | number }>(
    `SELECT count(*) AS n FROM ${typeCatalog(request.type).table} r WHERE ${where}`,
    params.values
  );
  return Number(rows[0].n);
}

async function includes(db: Queryable, request: SearchRequest, matches: FoundResource[], scope?: SearchScope): Promise<FoundResource[]> {
  if (!matches.length || (!request.include.length && !request.revinclude.length)) {
    return [];
  }
  const seen = new Set(matches.map((m) => `${m.type}/${m.id}`));
  const found: FoundResource[] = [];
  const add = (resources: FoundResource[]) => {
    for (const r of resources) {
      const key = `${r.type}/${r.id}`;
      if (!seen.has(key)) {
        seen.add(key);
        found.push(r);
      }
    }
  };
  const ids = matches.map((m) => m.id);
  for (const spec of request.include) {
    add(await forwardInclude(db, request.type, ids, spec, scope));
  }
  const references = matches.map((m) => `${m.type}/${m.id}`);
  for (const spec of request.revinclude) {
    add(await reverseInclude(db, references, spec, scope));
  }
  return found;
}

async function forwardInclude(db: Queryable, type: string, ids: string[], spec: IncludeSpec, scope?: SearchScope): Promise<FoundResource[]> {
  const rows = await db.query<{ ref: string }>(
    `SELECT DISTINCT unnest(${spec.param.column}) AS ref FROM ${typeCatalog(type).table} WHERE id = ANY($1::text[])`,
    [ids]
  );
  const byType = new Map<string, string[]>();
  for (const { ref } of rows) {
    const [targetType, targetId, extra] = ref.split('/');
    if (extra !== undefined || !targetId || (spec.targetType && spec.targetType !== targetType)) {
      continue;
    }
    if (!spec.param.targets.includes(targetType) || !isStoredType(targetType)) {
      continue;
    }
    byType.set(targetType, [...(byType.get(targetType) ?? []), targetId]);
  }
  const found: FoundResource[] = [];
  for (const [targetType, targetIds] of byType) {
    const params = new SqlParams();
    const idList = params.add(targetIds, 'text[]');
    const where = whereClause(targetType, [], params, 't', scope);
    const rows = await db.query<{ id: string; content: string }>(
      `SELECT t.id, t.content FROM "${targetType}" t WHERE t.id = ANY(${idList}) AND ${where} LIMIT ${INCLUDE_LIMIT}`,
      params.values
    );
    found.push(...rows.map((r) => ({ type: targetType, id: r.id, content: r.content })));
  }
  return found;
}

async function reverseInclude(db: Queryable, references: string[], spec: IncludeSpec, scope?: SearchScope): Promise<FoundResource[]> {
  if (!isStoredType(spec.sourceType)) {
    throw badRequest(`_revinclude of ${spec.sourceType} is not supported`, ['_revinclude']);
  }
  const params = new SqlParams();
  const refs = params.add(references, 'text[]');
  const where = whereClause(spec.sourceType, [], params, 's', scope);
  const rows = await db.query<{ id: string; content: string }>(
    `SELECT s.id, s.content FROM "${spec.sourceType}" s WHERE s.${spec.param.column} && ${refs} AND ${where} ` +
      `ORDER BY s.id LIMIT ${INCLUDE_LIMIT}`,
    params.values
  );
  return rows.map((r) => ({ type: spec.sourceType, id: r.id, content: r.content }));
}

function isStoredType(type: string): boolean {
  try {
    typeCatalog(type);
    return true;
  } catch {
    return false;
  }
}
