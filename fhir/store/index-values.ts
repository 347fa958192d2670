/**
 * Extracts a resource's search values into the column values of its table, evaluating each
 * parameter's FHIRPath (parsed once, in the catalog) and normalizing per parameter kind:
 * tokens as `code`, `system|code`, `system|` and `|code`; references as `Type/id`; strings
 * lower-cased without accents (plus the exact text); dates as instant ranges.
 */
import {
  convertToSearchableNumbers,
  convertToSearchableQuantities,
  convertToSearchableReferences,
  convertToSearchableStrings,
  convertToSearchableTokens,
  convertToSearchableUris,
  evalFhirPathTyped,
  toTypedValue,
} from '@medplum/core';
import type { TypedValue } from '@medplum/core';
import type { Period, Resource } from '@medplum/fhirtypes';
import type { IndexedParam, TypeCatalog } from '../search/catalog.js';
import { dateRange } from '../search/dates.js';

export type ColumnValues = Map<string, unknown>;

/** Column names of a type's table in a fixed order (index columns only). */
export function indexColumns(catalog: TypeCatalog): string[] {
  const columns: string[] = [];
  for (const param of catalog.params.values()) {
    columns.push(...paramColumns(param));
  }
  return columns;
}

export function paramColumns(param: IndexedParam): string[] {
  switch (param.kind) {
    case 'string':
      return [param.column, `${param.column}_exact`];
    case 'date':
      return [`${param.column}_lo`, `${param.column}_hi`];
    default:
      return [param.column];
  }
}

export interface ExtractOptions {
  /** The server's FHIR base URL; absolute references to it are stored relative. */
  fhirBaseUrl: string;
}

export function extractIndexValues(catalog: TypeCatalog, resource: Resource, options: ExtractOptions): ColumnValues {
  const values: ColumnValues = new Map();
  const input = [toTypedValue(resource)];
  for (const param of catalog.params.values()) {
    let typed: TypedValue[];
    try {
      typed = evalFhirPathTyped(param.expression, input);
    } catch {
      typed = [];
    }
    setParamValues(values, param, typed, options);
  }
  return values;
}

/** The patient compartments (`Patient/id`) a resource belongs to. */
export function compartmentsOf(catalog: TypeCatalog, resource: Resource, values: ColumnValues): string[] {
  const result = new Set<string>();
  if (resource.resourceType === 'Patient' && resource.id) {
    result.add(`Patient/${resource.id}`);
  }
  for (const code of catalog.compartmentParams) {
    const refs = values.get(catalog.params.get(code)!.column) as string[] | null;
    for (const ref of refs ?? []) {
      if (ref.startsWith('Patient/')) {
        result.add(ref);
      }
    }
  }
  return [...result];
}

function setParamValues(values: ColumnValues, param: IndexedParam, typed: TypedValue[], options: ExtractOptions): void {
  switch (param.kind) {
    case 'token':
      values.set(param.column, nonEmpty(tokenValues(typed)));
      return;
    case 'reference':
      values.set(
        param.column,
        nonEmpty(unique(convertToSearchableReferences(typed).map((r) => relativeReference(r, options.fhirBaseUrl))))
      );
      return;
    case 'uri':
      values.set(param.column, nonEmpty(unique(convertToSearchableUris(typed))));
      return;
    case 'string': {
      const strings = searchableStrings(typed);
      values.set(param.column, nonEmpty(unique(strings.map(normalizeString))));
      values.set(`${param.column}_exact`, nonEmpty(unique(strings)));
      return;
    }
    case 'date': {
      const [low, high] = dateBounds(typed);
      values.set(`${param.column}_lo`, low);
      values.set(`${param.column}_hi`, high);
      return;
    }
    case 'number': {
      const first = convertToSearchableNumbers(typed)[0];
      values.set(param.column, first?.[0] ?? null);
      return;
    }
    case 'quantity': {
      const first = convertToSearchableQuantities(typed)[0];
      values.set(param.column, first?.value ?? null);
      return;
    }
  }
}

/**
 * The texts a string parameter matches: each part of a name or address (family, given,
 * city, …) on its own, so a search on any part's beginning finds it, plus the whole text.
 */
function searchableStrings(typed: TypedValue[]): string[] {
  const result: string[] = [];
  const collect = (value: unknown, key?: string): void => {
    if (typeof value === 'string') {
      if (value.length && !SKIPPED_STRING_KEYS.has(key ?? '')) {
        result.push(value);
      }
    } else if (Array.isArray(value)) {
      value.forEach((v) => collect(v, key));
    } else if (value && typeof value === 'object') {
      for (const [k, v] of Object.entries(value)) {
        if (!SKIPPED_STRING_KEYS.has(k)) {
          collect(v, k);
        }
      }
    }
  };
  for (const value of typed) {
    collect(value.value);
  }
  for (const whole of convertToSearchableStrings(typed)) {
    if (typeof whole === 'string' && whole.length) {
      result.push(whole);
    }
  }
  return result;
}

const SKIPPED_STRING_KEYS = new Set(['use', 'type', 'period', 'extension', 'id']);

function tokenValues(typed: TypedValue[]): string[] {
  const result = new Set<string>();
  for (const token of convertToSearchableTokens(typed)) {
    const system = token.system;
    const value = token.value;
    if (value !== undefined && value !== '') {
      result.add(value);
      result.add(system ? `${system}|${value}` : `|${value}`);
    }
    if (system) {
      result.add(`${system}|`);
    }
  }
  return [...result];
}

function dateBounds(typed: TypedValue[]): [string | null, string | null] {
  let low: string | null = null;
  let high: string | null = null;
  for (const value of typed) {
    let range: { low: string; high: string } | undefined;
    if (typeof value.value === 'string') {
      range = dateRange(value.value);
    } else if (value.value && typeof value.value === 'object') {
      const period = value.value as Period;
      const start = period.start ? dateRange(period.start) : undefined;
      const end = period.end ? dateRange(period.end) : undefined;
      if (start || end) {
        range = { low: start?.low ?? '-infinity', high: end?.high ?? 'infinity' };
      }
    }
    if (range) {
      low = low === null || compareInstant(range.low, low) < 0 ? range.low : low;
      high = high === null || compareInstant(range.high, high) > 0 ? range.high : high;
    }
  }
  return [low, high];
}

function compareInstant(a: string, b: string): number {
  const rank = (v: string): number => (v === '-infinity' ? -Infinity : v === 'infinity' ? Infinity : Date.parse(v));
  return rank(a) - rank(b);
}

/** Lower-case, accents removed: the form string search compares. */
export function normalizeString(value: string): string {
  return value
    .normalize('NFD')
    .replace(/\p{M}/gu, '')
    .toLowerCase();
}

export function relativeReference(reference: string, fhirBaseUrl: string): string {
  if (reference.startsWith(fhirBaseUrl + '/')) {
    return reference.slice(fhirBaseUrl.length + 1);
  }
  return reference;
}

function unique(values: string[]): string[] {
  return [...new Set(values)];
}

function nonEmpty(values: string[]): string[] | null {
  return values.length ? values : null;
}
