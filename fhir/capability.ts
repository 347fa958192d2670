/**
 * The CapabilityStatement served at `/metadata`, generated from what the server really
 * implements: the stored types, the interactions the REST layer dispatches, and the search
 * parameters the catalog indexes.
 */
import type { CapabilityStatement, CapabilityStatementRestResource } from '@medplum/fhirtypes';
import { RESOURCE_TYPES } from './definitions.js';
import { getCatalog } from './search/catalog.js';

export interface CapabilityOptions {
  fhirBase: string;
  softwareVersion: string;
  /** Extra `rest.security` content (added by the authorization layer). */
  security?: NonNullable<CapabilityStatement['rest']>[number]['security'];
  /** The operations the REST layer dispatches, keyed `Type/$name` or `Type/id/$name`. */
  operations?: string[];
}

/** Operations defined by FHIR itself; ours are named under CareThread's canonical base. */
const STANDARD_OPERATIONS: Record<string, string> = {
  'Measure/$evaluate-measure': 'http://hl7.org/fhir/OperationDefinition/Measure-evaluate-measure',
};
const OUR_OPERATIONS = 'https://carethread.dev/fhir/OperationDefinition';

/** The operations on `type`, once each (an operation may exist at type and instance level). */
function operationsOf(type: string, operations: string[]): NonNullable<CapabilityStatementRestResource['operation']> {
  const names = new Set(operations.filter((key) => key.startsWith(`${type}/`)).map((key) => key.slice(key.indexOf('$') + 1)));
  return [...names].sort().map((name) => ({
    name,
    definition: STANDARD_OPERATIONS[`${type}/$${name}`] ?? `${OUR_OPERATIONS}/${type}-${name}`,
  }));
}

const TYPE_INTERACTIONS = ['read', 'vread', 'update', 'patch', 'delete', 'history-instance', 'history-type', 'create', 'search-type'] as const;

export function capabilityStatement(options: CapabilityOptions): CapabilityStatement {
  const catalog = getCatalog();
  const resources: CapabilityStatementRestResource[] = RESOURCE_TYPES.map((type) => {
    const entry = catalog.get(type)!;
    const references = [...entry.params.values()].filter((p) => p.kind === 'reference');
    const operation = operationsOf(type, options.operations ?? []);
    return {
      type,
      profile: `http://hl7.org/fhir/StructureDefinition/${type}`,
      interaction: TYPE_INTERACTIONS.map((code) => ({ code })),
      versioning: 'versioned-update',
      readHistory: true,
      updateCreate: true,
      conditionalCreate: true,
      conditionalRead: 'not-supported',
      conditionalUpdate: false,
      conditionalDelete: 'not-supported',
      searchInclude: references.map((p) => `${type}:${p.code}`),
      searchRevInclude: [...catalog.values()].flatMap((other) =>
        [...other.params.values()].filter((p) => p.kind === 'reference' && p.targets.includes(type)).map((p) => `${other.type}:${p.code}`)
      ),
      searchParam: [
        { name: '_id', type: 'token', definition: 'http://hl7.org/fhir/SearchParameter/Resource-id' },
        { name: '_lastUpdated', type: 'date', definition: 'http://hl7.org/fhir/SearchParameter/Resource-lastUpdated' },
        ...[...entry.params.values()].map((p) => ({
          name: p.code,
          type: p.kind,
          ...(p.definition.url ? { definition: p.definition.url } : {}),
        })),
      ],
      ...(operation.length ? { operation } : {}),
    };
  });
  return {
    resourceType: 'CapabilityStatement',
    status: 'active',
    date: '2026-11-23',
    kind: 'instance',
    software: { name: 'CareThread', version: options.softwareVersion },
    implementation: { description: 'CareThread FHIR R4 secure-messaging server', url: options.fhirBase },
    fhirVersion: '4.0.1',
    format: ['application/fhir+json', 'json'],
    patchFormat: ['application/json-patch+json'],
    rest: [
      {
        mode: 'server',
        ...(options.security ? { security: options.security } : {}),
        resource: resources,
        interaction: [{ code: 'transaction' }, { code: 'batch' }],
        searchParam: [
          { name: '_count', type: 'number' },
          { name: '_sort', type: 'string' },
          { name: '_include', type: 'string' },
          { name: '_revinclude', type: 'string' },
          { name: '_summary', type: 'token' },
          { name: '_total', type: 'token' },
        ],
      },
    ],
  };
}
