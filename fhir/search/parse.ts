/**
 * Parses FHIR search parameters (as ordered name/value pairs, repeats allowed) into a
 * SearchRequest: filters ANDed across parameters and ORed across comma-separated values,
 * sort keys, paging, includes and result options. Anything we do not understand is an
 * error (400), or, under lenient handling, a warning and ignored.
 */
import { badRequest } from '../errors.js';
import { RESULT_PARAMETERS, typeCatalog } from './catalog.js';
import type { IndexedParam, ParamKind } from './catalog.js';
import { dateRange } from './dates.js';
import type { InstantRange } from './dates.js';
import { relativeReference } from '../store/index-values.js';

export type Prefix = 'eq' | 'ne' | 'gt' | 'lt' | 'ge' | 'le' | 'sa' | 'eb' | 'ap';
const PREFIXES = new Set<string>(['eq', 'ne', 'gt', 'lt', 'ge', 'le', 'sa', 'eb', 'ap']);

export type FilterValue =
  | { kind: 'date'; prefix: Prefix; range: InstantRange }
  | { kind: 'number'; prefix: Prefix; value: number }
  | { kind: 'text'; value: string };

export interface Filter {
  /** The parameter, or a special one (`_id`, `_lastUpdated`). */
  param: IndexedParam | { code: '_id'; kind: 'id' } | { code: '_lastUpdated'; kind: 'lastUpdated' };
  modifier?: string;
  /** ORed values; for `:missing`, a single 'true'/'false'. */
  values: FilterValue[];
  /** Chained search: the referenced types and the filter applied to them. */
  chain?: { types: string[]; filter: Filter };
}

export interface SortKey {
  code: string;
  descending: boolean;
}

export interface IncludeSpec {
  /** Type whose reference parameter is followed. */
  sourceType: string;
  param: IndexedParam;
  targetType?: string;
}

export interface SearchRequest {
  type: string;
  filters: Filter[];
  sort: SortKey[];
  count: number;
  cursor?: { direction: 'after' | 'before'; id: string };
  include: IncludeSpec[];
  revinclude: IncludeSpec[];
  total: 'none' | 'accurate';
  summaryCount: boolean;
  /** Parameter names echoed in the self link (in request order). */
  echo: [string, string][];
  /** Warnings for ignored parameters (lenient handling). */
  warnings: string[];
}

export interface ParseOptions {
  defaultCount: number;
  maxCount: number;
  lenient: boolean;
  fhirBaseUrl: string;
}

export function parseSearch(type: string, pairs: [string, string][], options: ParseOptions): SearchRequest {
  const request: SearchRequest = {
    type,
    filters: [],
    sort: [],
    count: options.defaultCount,
    include: [],
    revinclude: [],
    total: 'none',
    summaryCount: false,
    echo: [],
    warnings: [],
  };
  for (const [name, value] of pairs) {
    try {
      parsePair(request, name, value, options);
      if (name !== '_cursor') {
        request.echo.push([name, value]);
      }
    } catch (err) {
      if (!options.lenient) {
        throw err;
      }
      request.warnings.push(err instanceof Error ? err.message : String(err));
    }
  }
  return request;
}

function parsePair(request: SearchRequest, name: string, value: string, options: ParseOptions): void {
  if (RESULT_PARAMETERS.has(name)) {
    parseResultParameter(request, name, value, options);
    return;
  }
  request.filters.push(parseFilter(request.type, name, value, options, 0));
}

function parseResultParameter(request: SearchRequest, name: string, value: string, options: ParseOptions): void {
  switch (name) {
    case '_count': {
      if (!/^\d+$/.test(value)) {
        throw badRequest(`_count must be a non-negative whole number (got "${value}")`, ['_count']);
      }
      request.count = Math.min(Number(value), options.maxCount);
      return;
    }
    case '_sort':
      for (const key of value.split(',').filter(Boolean)) {
        const descending = key.startsWith('-');
        const code = descending ? key.slice(1) : key;
        if (code !== '_id' && code !== '_lastUpdated' && !typeCatalog(request.type).params.has(code)) {
          throw badRequest(`Unknown sort parameter "${code}" for ${request.type}`, ['_sort']);
        }
        request.sort.push({ code, descending });
      }
      return;
    case '_include':
    case '_revinclude':
      (name === '_include' ? request.include : request.revinclude).push(parseInclude(request.type, name, value));
      return;
    case '_total':
      if (value === 'accurate') {
        request.total = 'accurate';
      } else if (value !== 'none' && value !== 'estimate') {
        throw badRequest(`_total must be none, estimate or accurate (got "${value}")`, ['_total']);
      }
      return;
    case '_summary':
      if (value === 'count') {
        request.summaryCount = true;
      } else if (value !== 'false') {
        throw badRequest(`_summary=${value} is not supported (use count or false)`, ['_summary']);
      }
      return;
    case '_cursor': {
      const match = /^(after|before):([A-Za-z0-9\-.]{1,64})$/.exec(value);
      if (!match) {
        throw badRequest('Invalid paging cursor', ['_cursor']);
      }
      request.cursor = { direction: match[1] as 'after' | 'before', id: match[2] };
      return;
    }
    case '_format':
      if (!/json/.test(value)) {
        throw badRequest(`_format=${value} is not supported; this server speaks application/fhir+json`, ['_format']);
      }
      return;
    default:
      // _elements, _pretty, _page: accepted and not applied.
      return;
  }
}

function parseInclude(type: string, name: string, value: string): IncludeSpec {
  const [sourceType, code, targetType] = value.replace(/:iterate$/, '').split(':');
  const catalog = tryCatalog(sourceType);
  const param = catalog?.params.get(code ?? '');
  if (!catalog || !param || param.kind !== 'reference') {
    throw badRequest(`${name}=${value} does not name a reference search parameter`, [name]);
  }
  if (name === '_include' && sourceType !== type) {
    throw badRequest(`_include=${value} must start with ${type}`, [name]);
  }
  if (targetType !== undefined && !param.targets.includes(targetType)) {
    throw badRequest(`${name}=${value}: ${code} cannot refer to ${targetType}`, [name]);
  }
  return { sourceType, param, targetType };
}

function parseFilter(type: string, name: string, value: string, options: ParseOptions, depth: number): Filter {
  const dot = name.indexOf('.');
  const head = dot >= 0 ? name.slice(0, dot) : name;
  const [code, modifier] = head.split(':', 2) as [string, string | undefined];
  if (code === '_id' || code === '_lastUpdated') {
    if (dot >= 0) {
      throw badRequest(`${code} cannot be chained`, [name]);
    }
    const param = code === '_id' ? ({ code, kind: 'id' } as const) : ({ code, kind: 'lastUpdated' } as const);
    return buildFilter(param, modifier, value, options, name);
  }
  const catalog = typeCatalog(type);
  const param = catalog.params.get(code);
  if (!param) {
    throw badRequest(`Unknown search parameter "${code}" for ${type}`, [name]);
  }
  if (dot >= 0) {
    return parseChain(param, modifier, name.slice(dot + 1), value, options, depth, name);
  }
  return buildFilter(param, modifier, value, options, name);
}

function parseChain(
  param: IndexedParam,
  modifier: string | undefined,
  rest: string,
  value: string,
  options: ParseOptions,
  depth: number,
  name: string
): Filter {
  if (param.kind !== 'reference') {
    throw badRequest(`Only reference parameters can be chained (${name})`, [name]);
  }
  if (depth > 0) {
    throw badRequest(`Chains deeper than one level are not supported (${name})`, [name]);
  }
  const candidates = modifier ? [modifier] : param.targets.filter((t) => tryCatalog(t));
  if (modifier && !param.targets.includes(modifier)) {
    throw badRequest(`${param.code} cannot refer to ${modifier}`, [name]);
  }
  const chainedCode = rest.split(':')[0];
  const types = candidates.filter((t) => chainedCode === '_id' || chainedCode === '_lastUpdated' || tryCatalog(t)?.params.has(chainedCode));
  if (!types.length) {
    throw badRequest(`No target of ${param.code} has a search parameter "${chainedCode}"`, [name]);
  }
  // All candidate types share the parameter's definition shape; parse against the first.
  const filter = parseFilter(types[0], rest, value, options, depth + 1);
  return { param, values: [], chain: { types, filter } };
}

function buildFilter(
  param: Filter['param'],
  modifier: string | undefined,
  value: string,
  options: ParseOptions,
  name: string
): Filter {
  if (modifier === 'missing') {
    if (value !== 'true' && value !== 'false') {
      throw badRequest(`${name} takes true or false`, [name]);
    }
    return { param, modifier, values: [{ kind: 'text', value }] };
  }
  checkModifier(param.kind, modifier, param, name);
  const raw = splitValues(value);
  if (!raw.length) {
    throw badRequest(`Search parameter ${name} has no value`, [name]);
  }
  const values = raw.map((v) => parseValue(param, modifier, v, options, name));
  return { param, modifier, values };
}

const MODIFIERS: Record<string, string[]> = {
  id: ['not'],
  lastUpdated: [],
  token: ['not'],
  reference: [],
  string: ['exact', 'contains'],
  date: [],
  number: [],
  quantity: [],
  uri: [],
};

function checkModifier(kind: ParamKind | 'id' | 'lastUpdated', modifier: string | undefined, param: Filter['param'], name: string): void {
  if (modifier === undefined) {
    return;
  }
  if (kind === 'reference' && 'targets' in param && param.targets.includes(modifier)) {
    return;
  }
  if (!MODIFIERS[kind].includes(modifier)) {
    throw badRequest(`Modifier :${modifier} is not supported on ${param.code}`, [name]);
  }
}

function parseValue(param: Filter['param'], modifier: string | undefined, raw: string, options: ParseOptions, name: string): FilterValue {
  switch (param.kind) {
    case 'date':
    case 'lastUpdated': {
      const { prefix, rest } = splitPrefix(raw);
      const range = dateRange(rest);
      if (!range) {
        throw badRequest(`Invalid date "${raw}" for ${name}`, [name]);
      }
      return { kind: 'date', prefix, range };
    }
    case 'number':
    case 'quantity': {
      const { prefix, rest } = splitPrefix(raw);
      const number = Number(rest.split('|')[0]);
      if (rest === '' || !Number.isFinite(number)) {
        throw badRequest(`Invalid number "${raw}" for ${name}`, [name]);
      }
      return { kind: 'number', prefix, value: number };
    }
    case 'reference': {
      const reference = relativeReference(raw, options.fhirBaseUrl);
      if (!reference || reference.length > 2048) {
        throw badRequest(`Invalid reference "${raw}" for ${name}`, [name]);
      }
      return { kind: 'text', value: modifier && !reference.includes('/') ? `${modifier}/${reference}` : reference };
    }
    default:
      if (raw.length > 2048) {
        throw badRequest(`Search value for ${name} is too long`, [name]);
      }
      return { kind: 'text', value: raw };
  }
}

function splitPrefix(raw: string): { prefix: Prefix; rest: string } {
  const candidate = raw.slice(0, 2);
  if (PREFIXES.has(candidate) && /^[0-9-]/.test(raw.slice(2))) {
    return { prefix: candidate as Prefix, rest: raw.slice(2) };
  }
  return { prefix: 'eq', rest: raw };
}

/** Splits on commas not escaped with a backslash, unescaping `\,`, `\|`, `\$` and `\\`. */
export function splitValues(value: string): string[] {
  const result: string[] = [];
  let current = '';
  for (let i = 0; i < value.length; i++) {
    const ch = value[i];
    if (ch === '\\' && i + 1 < value.length) {
      current += value[++i];
    } else if (ch === ',') {
      result.push(current);
      current = '';
    } else {
      current += ch;
    }
  }
  result.push(current);
  return result.filter((v) => v.length > 0);
}

function tryCatalog(type: string) {
  try {
    return typeCatalog(type);
  } catch {
    return undefined;
  }
}
