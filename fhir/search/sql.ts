/**
 * Turns a parsed SearchRequest into parameterized SQL over the resource tables: one
 * statement for the page (keyset-paged, so `next` links stay right while others write),
 * one for the total when asked, and one per `_include`/`_revinclude`.
 */
import { badRequest } from '../errors.js';
import { typeCatalog } from './catalog.js';
import type { IndexedParam } from './catalog.js';
import { normalizeString } from '../store/index-values.js';
import type { Filter, FilterValue, Prefix, SearchRequest, SortKey } from './parse.js';

/** Collects positional parameters while SQL text is built. */
export class SqlParams {
  readonly values: unknown[] = [];
  add(value: unknown, cast?: string): string {
    this.values.push(value);
    return `$${this.values.length}${cast ? `::${cast}` : ''}`;
  }
}

/** What the caller's access adds to a search of one type. */
export interface TypeScope {
  /** The caller may not read this type at all: nothing matches. */
  denied?: boolean;
  /** Only resources in one of these patient compartments (`Patient/id`). */
  compartments?: readonly string[];
  /** Resources carrying any of these security labels (`system|code`) are hidden. */
  excludeSecurity?: readonly string[];
  /** Scope query restrictions: a resource must match all filters of at least one set. */
  restrictions?: Filter[][];
}

/** The caller's confinement per resource type (undefined: unconfined). */
export type SearchScope = (type: string) => TypeScope | undefined;

/** The WHERE clause (without the keyword) for a type's filters, over table alias `alias`. */
export function whereClause(type: string, filters: Filter[], params: SqlParams, alias: string, scope?: SearchScope): string {
  const conditions = [`NOT ${alias}.deleted`];
  const typeScope = scope?.(type);
  if (typeScope?.denied) {
    return 'FALSE';
  }
  if (typeScope?.compartments) {
    conditions.push(`${alias}.compartments && ${params.add(typeScope.compartments, 'text[]')}`);
  }
  if (typeScope?.excludeSecurity?.length) {
    conditions.push(`NOT (COALESCE(${alias}.t__security, '{}') && ${params.add(typeScope.excludeSecurity, 'text[]')})`);
  }
  if (typeScope?.restrictions) {
    const sets = typeScope.restrictions.map((set) =>
      set.length ? `(${set.map((f) => filterCondition(type, f, params, alias, scope)).join(' AND ')})` : 'TRUE'
    );
    conditions.push(`(${sets.join(' OR ') || 'FALSE'})`);
  }
  for (const filter of filters) {
    conditions.push(filterCondition(type, filter, params, alias, scope));
  }
  return conditions.join(' AND ');
}

function filterCondition(type: string, filter: Filter, params: SqlParams, alias: string, scope?: SearchScope): string {
  const { param, modifier } = filter;
  if (filter.chain) {
    const column = `${alias}.${(param as IndexedParam).column}`;
    const subqueries = filter.chain.types.map((target) => {
      const inner = whereClause(target, [filter.chain!.filter], params, 'c', scope);
      return `SELECT '${target}/' || c.id FROM "${target}" c WHERE ${inner}`;
    });
    return `${column} && ARRAY(${subqueries.join(' UNION ALL ')})`;
  }
  if (modifier === 'missing') {
    const missing = (filter.values[0] as { value: string }).value === 'true';
    const column = missingColumn(param, alias);
    return missing ? `${column} IS NULL` : `${column} IS NOT NULL`;
  }
  switch (param.kind) {
    case 'id': {
      const ids = filter.values.map((v) => (v as { value: string }).value);
      return modifier === 'not'
        ? `${alias}.id <> ALL(${params.add(ids, 'text[]')})`
        : `${alias}.id = ANY(${params.add(ids, 'text[]')})`;
    }
    case 'lastUpdated':
      return any(filter.values.map((v) => instantCondition(`${alias}.last_updated`, v, params)));
    case 'token': {
      const list = params.add(texts(filter.values), 'text[]');
      const column = `${alias}.${param.column}`;
      return modifier === 'not' ? `NOT (COALESCE(${column}, '{}') && ${list})` : `${column} && ${list}`;
    }
    case 'uri':
      return `${alias}.${param.column} && ${params.add(texts(filter.values), 'text[]')}`;
    case 'reference':
      return `${alias}.${param.column} && ${params.add(referenceValues(param, filter.values), 'text[]')}`;
    case 'string':
      return stringCondition(`${alias}.${param.column}`, modifier, filter.values, params);
    case 'date':
      return any(filter.values.map((v) => rangeCondition(`${alias}.${param.column}_lo`, `${alias}.${param.column}_hi`, v, params)));
    case 'number':
    case 'quantity':
      return any(filter.values.map((v) => numberCondition(`${alias}.${param.column}`, v, params)));
  }
}

function missingColumn(param: Filter['param'], alias: string): string {
  switch (param.kind) {
    case 'id':
      return `${alias}.id`;
    case 'lastUpdated':
      return `${alias}.last_updated`;
    case 'date':
      return `${alias}.${param.column}_lo`;
    default:
      return `${alias}.${param.column}`;
  }
}

function texts(values: FilterValue[]): string[] {
  return values.map((v) => (v as { value: string }).value);
}

function referenceValues(param: IndexedParam, values: FilterValue[]): string[] {
  const result: string[] = [];
  for (const value of texts(values)) {
    if (value.includes('/') || value.includes(':')) {
      result.push(value);
    } else {
      // A bare id matches it under any type the parameter may refer to.
      for (const target of param.targets) {
        result.push(`${target}/${value}`);
      }
    }
  }
  return result;
}

function stringCondition(column: string, modifier: string | undefined, values: FilterValue[], params: SqlParams): string {
  if (modifier === 'exact') {
    return `${column}_exact && ${params.add(texts(values), 'text[]')}`;
  }
  const patterns = texts(values).map((v) => {
    const escaped = escapeLike(normalizeString(v));
    return modifier === 'contains' ? `%${escaped}%` : `${escaped}%`;
  });
  return `EXISTS (SELECT 1 FROM unnest(${column}) AS v(s) WHERE v.s LIKE ANY(${params.add(patterns, 'text[]')}))`;
}

function escapeLike(value: string): string {
  return value.replace(/[\\%_]/g, (c) => `\\${c}`);
}

/** A stored range [lo, hi) against a search range, per the R4 prefix rules. */
function rangeCondition(lo: string, hi: string, value: FilterValue, params: SqlParams): string {
  const { prefix, range } = value as Extract<FilterValue, { kind: 'date' }>;
  // Bind only the bounds the condition uses: PostgreSQL cannot type an unreferenced $n.
  const low = () => params.add(range.low, 'timestamptz');
  const high = () => params.add(range.high, 'timestamptz');
  const contained = () => `(${lo} >= ${low()} AND ${hi} <= ${high()})`;
  switch (prefix) {
    case 'eq':
      return contained();
    case 'ne':
      return `NOT ${contained()}`;
    case 'gt':
      return `${hi} > ${high()}`;
    case 'lt':
      return `${lo} < ${low()}`;
    case 'ge':
      return `(${hi} > ${high()} OR ${contained()})`;
    case 'le':
      return `(${lo} < ${low()} OR ${contained()})`;
    case 'sa':
      return `${lo} >= ${high()}`;
    case 'eb':
      return `${hi} <= ${low()}`;
    case 'ap':
      return `(${lo} < ${high()} AND ${hi} > ${low()})`;
  }
}

/** A stored instant against a search range: the same rules with a point for the range. */
function instantCondition(column: string, value: FilterValue, params: SqlParams): string {
  const { prefix, range } = value as Extract<FilterValue, { kind: 'date' }>;
  const conditions: Record<Prefix, () => string> = {
    eq: () => `(${column} >= ${params.add(range.low, 'timestamptz')} AND ${column} < ${params.add(range.high, 'timestamptz')})`,
    ne: () => `NOT (${column} >= ${params.add(range.low, 'timestamptz')} AND ${column} < ${params.add(range.high, 'timestamptz')})`,
    gt: () => `${column} >= ${params.add(range.high, 'timestamptz')}`,
    sa: () => `${column} >= ${params.add(range.high, 'timestamptz')}`,
    ge: () => `${column} >= ${params.add(range.low, 'timestamptz')}`,
    lt: () => `${column} < ${params.add(range.low, 'timestamptz')}`,
    eb: () => `${column} < ${params.add(range.low, 'timestamptz')}`,
    le: () => `${column} < ${params.add(range.high, 'timestamptz')}`,
    ap: () => `(${column} >= ${params.add(range.low, 'timestamptz')} AND ${column} < ${params.add(range.high, 'timestamptz')})`,
  };
  return conditions[prefix]();
}

function numberCondition(column: string, value: FilterValue, params: SqlParams): string {
  const { prefix, value: number } = value as Extract<FilterValue, { kind: 'number' }>;
  const p = params.add(number, 'numeric');
  const operators: Record<Prefix, string> = { eq: '=', ap: '=', ne: '<>', gt: '>', sa: '>', lt: '<', eb: '<', ge: '>=', le: '<=' };
  return `${column} ${operators[prefix]} ${p}`;
}

function any(conditions: string[]): string {
  return conditions.length === 1 ? conditions[0] : `(${conditions.join(' OR ')})`;
}

export interface SortColumn {
  expression: string;
  /** The same value read from the cursor row (alias `c`). */
  cursorExpression: string;
  descending: boolean;
}

/** Sort expressions for the request, ending with `id` so the order is total. */
export function sortColumns(request: SearchRequest, alias: string): SortColumn[] {
  const catalog = typeCatalog(request.type);
  const keys: SortKey[] = request.sort.length ? request.sort : [{ code: '_lastUpdated', descending: true }];
  const column = (expression: string, descending: boolean): SortColumn => ({
    expression,
    cursorExpression: expression.split(`${alias}.`).join('c.'),
    descending,
  });
  const columns = keys.map((key): SortColumn => {
    if (key.code === '_id') {
      return column(`${alias}.id`, key.descending);
    }
    if (key.code === '_lastUpdated') {
      return column(`${alias}.last_updated`, key.descending);
    }
    const param = catalog.params.get(key.code);
    if (!param) {
      throw badRequest(`Unknown sort parameter "${key.code}"`, ['_sort']);
    }
    switch (param.kind) {
      case 'date':
        return column(`${alias}.${param.column}_lo`, key.descending);
      case 'number':
      case 'quantity':
        return column(`${alias}.${param.column}`, key.descending);
      default:
        return column(`(${alias}.${param.column} COLLATE "C")`, key.descending);
    }
  });
  if (!columns.some((c) => c.expression === `${alias}.id`)) {
    columns.push(column(`${alias}.id`, columns[0].descending));
  }
  return columns;
}

/** ORDER BY text; `reverse` flips every direction (for `before` cursors). NULLs sort as largest. */
export function orderBy(columns: SortColumn[], reverse: boolean): string {
  return columns
    .map((c) => {
      const descending = c.descending !== reverse;
      return `${c.expression} ${descending ? 'DESC NULLS FIRST' : 'ASC NULLS LAST'}`;
    })
    .join(', ');
}

/**
 * Rows strictly after (or before) the cursor row in the sort order. The cursor row's sort
 * values are read from the table by id, so links carry no resource content.
 */
export function keysetCondition(columns: SortColumn[], before: boolean): string {
  const disjuncts: string[] = [];
  for (let i = 0; i < columns.length; i++) {
    const parts: string[] = [];
    for (let j = 0; j < i; j++) {
      parts.push(`${columns[j].expression} IS NOT DISTINCT FROM ${columns[j].cursorExpression}`);
    }
    const after = columns[i].descending === before; // moving towards larger values?
    const row = columns[i].expression;
    const cursor = columns[i].cursorExpression;
    parts.push(
      after
        ? `(${cursor} IS NOT NULL AND (${row} > ${cursor} OR ${row} IS NULL))`
        : `((${cursor} IS NULL AND ${row} IS NOT NULL) OR ${row} < ${cursor})`
    );
    disjuncts.push(`(${parts.join(' AND ')})`);
  }
  return `(${disjuncts.join(' OR ')})`;
}
