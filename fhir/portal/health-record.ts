/**
 * What CareThread holds for a patient, as the caller may see it: the Patient, their visits
 * (Encounter), documents and clinical summaries (DocumentReference), messages and threads
 * (Communication) and appointments, with the people they name (so it reads with names),
 * as one `collection` Bundle. Every search runs under the caller's access context, so the
 * store's confinement applies unchanged: a patient reaches only themself, a representative
 * never a confidential resource, and a patient outside the caller's reach is a 404 exactly
 * like a missing one.
 */
import type { Bundle, BundleEntry, Reference, Resource } from '@medplum/fhirtypes';
import type { AccessContext } from '../access.js';
import type { ResourceStore } from '../store/store.js';

/** The searches that make up the record: type and the parameter naming the patient. */
const PARTS: [type: string, patientParam: string][] = [
  ['Encounter', 'subject'],
  ['DocumentReference', 'subject'],
  ['Communication', 'subject'],
  ['Appointment', 'patient'],
];

/** Most pages read per type; a record beyond that is cut short rather than served slowly. */
const MAX_PAGES = 20;

export interface HealthRecord {
  patient: string;
  bundle: Bundle;
}

export async function healthRecordOf(store: ResourceStore, ctx: AccessContext, patientId: string): Promise<HealthRecord> {
  const patient = `Patient/${patientId}`;
  const stored = await store.read(ctx, 'Patient', patientId);
  const resources: Resource[] = [JSON.parse(stored.content) as Resource];
  for (const [type, param] of PARTS) {
    resources.push(...(await searchAll(store, ctx, type, [[param, patient]])));
  }
  resources.push(...(await people(store, ctx, resources)));
  const base = store.options.fhirBaseUrl;
  const entry: BundleEntry[] = resources.map((resource) => ({ fullUrl: `${base}/${resource.resourceType}/${resource.id}`, resource }));
  const bundle: Bundle = {
    resourceType: 'Bundle',
    type: 'collection',
    timestamp: new Date().toISOString(),
    meta: { lastUpdated: new Date().toISOString() },
    entry,
  };
  return { patient, bundle };
}

/** Types of the people a record names (senders, recipients, visit participants), included so it reads with names. */
const PEOPLE = ['Practitioner', 'PractitionerRole', 'RelatedPerson', 'Organization'];

/** The practitioners, representatives and organizations the record refers to, as far as the caller may read them. */
async function people(store: ResourceStore, ctx: AccessContext, resources: Resource[]): Promise<Resource[]> {
  const references = new Set<string>();
  const add = (reference?: string) => reference && references.add(reference);
  for (const r of resources as { participant?: { individual?: Reference; actor?: Reference }[]; sender?: Reference; recipient?: Reference[]; author?: Reference[] }[]) {
    r.participant?.forEach((x) => add(x.individual?.reference ?? x.actor?.reference));
    add(r.sender?.reference);
    r.recipient?.forEach((x) => add(x.reference));
    r.author?.forEach((x) => add(x.reference));
  }
  const found: Resource[] = [];
  for (const type of PEOPLE) {
    const ids = [...references].filter((ref) => ref.startsWith(`${type}/`)).map((ref) => ref.slice(type.length + 1));
    for (let i = 0; i < ids.length; i += 100) {
      try {
        found.push(...(await searchAll(store, ctx, type, [['_id', ids.slice(i, i + 100).join(',')]])));
      } catch {
        // A type the caller's token does not cover: the record shows references instead of names.
      }
    }
  }
  return found;
}

async function searchAll(store: ResourceStore, ctx: AccessContext, type: string, query: [string, string][]): Promise<Resource[]> {
  const found: Resource[] = [];
  const request = store.parseSearch(type, [...query, ['_count', String(store.options.maxPageSize)]], false);
  for (let page = 0; page < MAX_PAGES; page++) {
    const result = await store.search(ctx, request);
    found.push(...result.matches.map((m) => JSON.parse(m.content) as Resource));
    if (!result.nextAfter) {
      break;
    }
    request.cursor = { direction: 'after', id: result.nextAfter };
  }
  return found;
}
