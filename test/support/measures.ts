/**
 * Small practices for the engagement-measure suites, built by hand: patients,
 * practitioners, encounters, messages and portal events with chosen ids and times, loaded
 * through the FHIR API as transaction Bundles with the administrator's token (which stores
 * them as given). Also: running a measure and reading its report the way an auditor does.
 */
import type { Bundle, Communication, Encounter, Extension, MeasureReport, Resource } from '@medplum/fhirtypes';
import type supertest from 'supertest';
import { expect } from 'vitest';
import type { TestServer } from './server.js';

export const FHIR_JSON = 'application/fhir+json';
export const CATEGORY_SYSTEM = 'https://carethread.dev/fhir/CodeSystem/message-category';
export const PORTAL_SYSTEM = 'https://carethread.dev/fhir/CodeSystem/portal-event';
export const TAG_SYSTEM = 'https://carethread.dev/fhir/CodeSystem/tag';
export const ENCOUNTER_KIND_SYSTEM = 'https://carethread.dev/fhir/CodeSystem/encounter-kind';
export const POLICY_EXTENSION = 'https://carethread.dev/fhir/StructureDefinition/measure-policy';
export const INFORMATION_AVAILABLE = 'https://carethread.dev/fhir/StructureDefinition/information-available';
export const REPORT_EXTENSION = 'https://carethread.dev/fhir/StructureDefinition/measure-report';
export const NPI_SYSTEM = 'http://hl7.org/fhir/sid/us-npi';
export const TIN_SYSTEM = 'urn:oid:2.16.840.1.113883.4.4';

type Agent = ReturnType<typeof supertest.agent>;

export interface EncounterSpec {
  id: string;
  patient: string;
  /** Participants (`Practitioner/…` or `PractitionerRole/…`); none for hospital stays. */
  with?: string[];
  start: string;
  /** Defaults to 30 minutes after the start. */
  end?: string | null;
  /** v3 ActCode: AMB (office), VR (telehealth), HH, IMP (inpatient), EMER (ED). */
  class?: string;
  status?: Encounter['status'];
  /** A code of the encounter-kind CodeSystem (e.g. consultative). */
  kind?: string;
  /** `Organization/…`: the hospital of a stay. */
  serviceProvider?: string;
  /** When the EHR marked the visit's information available to the EP. */
  informationAvailable?: string;
}

export interface MessageSpec {
  id: string;
  patient: string;
  from: string;
  to: string[];
  sent: string;
  /** A message-category code (reminder, education, clinical-summary, medical-question…). */
  category?: string;
  /** A thread header (tagged thread): not itself a message. */
  header?: boolean;
  partOf?: string;
  inResponseTo?: string;
  encounter?: string;
}

export interface PolicySpec {
  pools?: 'member-pools' | 'personal-only';
  countPatientSent?: boolean;
  seenBy?: 'all-services' | 'exclude-consultative-and-staff';
  reminderVisits?: 'with-ep' | 'with-practice';
  holidays?: string[];
}

/** Collects resources with chosen ids; `load` writes them in one transaction. */
export class PracticeBuilder {
  readonly resources: Resource[] = [];

  patient(id: string, extra: Record<string, unknown> = {}): string {
    return this.add({ resourceType: 'Patient', id, name: [{ family: id }], ...extra } as Resource);
  }

  /** A representative (RelatedPerson whose `patient` is the patient). */
  representative(id: string, patient: string): string {
    return this.add({ resourceType: 'RelatedPerson', id, active: true, patient: { reference: patient }, name: [{ family: id }] });
  }

  practitioner(id: string, name = id, npi?: string): string {
    return this.add({
      resourceType: 'Practitioner',
      id,
      name: [{ family: name }],
      ...(npi ? { identifier: [{ system: NPI_SYSTEM, value: npi }] } : {}),
    });
  }

  role(id: string, practitioner: string): string {
    return this.add({ resourceType: 'PractitionerRole', id, active: true, practitioner: { reference: practitioner } });
  }

  /** A shared inbox: a CareTeam without a subject. */
  careTeamPool(id: string, members: string[]): string {
    return this.add({ resourceType: 'CareTeam', id, status: 'active', name: id, participant: members.map((m) => ({ member: { reference: m } })) });
  }

  /** A shared inbox: a Group of practitioners. */
  groupPool(id: string, members: string[]): string {
    return this.add({ resourceType: 'Group', id, type: 'practitioner', actual: true, name: id, member: members.map((m) => ({ entity: { reference: m } })) });
  }

  organization(id: string, policy?: PolicySpec, tin?: string): string {
    const parts: Extension[] = [];
    if (policy?.pools) parts.push({ url: 'pools', valueCode: policy.pools });
    if (policy?.countPatientSent !== undefined) parts.push({ url: 'count-patient-sent', valueBoolean: policy.countPatientSent });
    if (policy?.seenBy) parts.push({ url: 'seen-by', valueCode: policy.seenBy });
    if (policy?.reminderVisits) parts.push({ url: 'reminder-visits', valueCode: policy.reminderVisits });
    for (const day of policy?.holidays ?? []) parts.push({ url: 'holiday', valueDate: day });
    return this.add({
      resourceType: 'Organization',
      id,
      name: id,
      ...(tin ? { identifier: [{ system: TIN_SYSTEM, value: tin }] } : {}),
      ...(parts.length ? { extension: [{ url: POLICY_EXTENSION, extension: parts }] } : {}),
    });
  }

  encounter(spec: EncounterSpec): string {
    const end = spec.end === undefined ? new Date(Date.parse(spec.start) + 30 * 60_000).toISOString() : spec.end;
    const encounter: Encounter = {
      resourceType: 'Encounter',
      id: spec.id,
      status: spec.status ?? 'finished',
      class: { system: 'http://terminology.hl7.org/CodeSystem/v3-ActCode', code: spec.class ?? 'AMB' },
      subject: { reference: spec.patient },
      period: { start: spec.start, ...(end ? { end } : {}) },
      ...(spec.with?.length ? { participant: spec.with.map((who) => ({ individual: { reference: who } })) } : {}),
      ...(spec.kind ? { type: [{ coding: [{ system: ENCOUNTER_KIND_SYSTEM, code: spec.kind }] }] } : {}),
      ...(spec.serviceProvider ? { serviceProvider: { reference: spec.serviceProvider } } : {}),
      ...(spec.informationAvailable ? { extension: [{ url: INFORMATION_AVAILABLE, valueDateTime: spec.informationAvailable }] } : {}),
    };
    return this.add(encounter);
  }

  /** Office visits (AMB) of each patient with `ep`, all starting at `start`. */
  visits(prefix: string, patients: string[], ep: string, start: string): void {
    patients.forEach((patient, i) => this.encounter({ id: `${prefix}-${i}`, patient, with: [ep], start }));
  }

  message(spec: MessageSpec): string {
    const message: Communication = {
      resourceType: 'Communication',
      id: spec.id,
      ...(spec.header ? { meta: { tag: [{ system: TAG_SYSTEM, code: 'thread' }] } } : {}),
      status: spec.header ? 'in-progress' : 'completed',
      subject: { reference: spec.patient },
      sender: { reference: spec.from },
      recipient: spec.to.map((reference) => ({ reference })),
      sent: spec.sent,
      category: [{ coding: [{ system: CATEGORY_SYSTEM, code: spec.category ?? 'medical-question' }] }],
      ...(spec.header ? { topic: { text: 'A question' } } : { payload: [{ contentString: 'Message text' }] }),
      ...(spec.partOf ? { partOf: [{ reference: spec.partOf }] } : {}),
      ...(spec.inResponseTo ? { inResponseTo: [{ reference: spec.inResponseTo }] } : {}),
      ...(spec.encounter ? { encounter: { reference: spec.encounter } } : {}),
    };
    return this.add(message);
  }

  /** A portal event (access-granted, view, download, transmit) as the portal records it. */
  portalEvent(id: string, code: string, patient: string, who: string, recorded: string): string {
    return this.add({
      resourceType: 'AuditEvent',
      id,
      type: { system: 'http://dicom.nema.org/resources/ontology/DCM', code: '110110', display: 'Patient Record' },
      subtype: [{ system: PORTAL_SYSTEM, code }],
      action: code === 'access-granted' ? 'C' : 'R',
      recorded,
      outcome: '0',
      agent: [{ who: { reference: who }, requestor: true }],
      source: { observer: { display: 'CareThread portal' } },
      entity: [{ what: { reference: patient } }],
    });
  }

  /** Writes everything collected so far (in transactions of at most 500 entries) and forgets it. */
  async load(server: TestServer): Promise<void> {
    const pending = this.resources.splice(0);
    for (let i = 0; i < pending.length; i += 500) {
      const bundle: Bundle = {
        resourceType: 'Bundle',
        type: 'transaction',
        entry: pending.slice(i, i + 500).map((resource) => ({ resource, request: { method: 'PUT', url: `${resource.resourceType}/${resource.id}` } })),
      };
      const res = await server.request.post('/fhir').set('content-type', FHIR_JSON).send(JSON.stringify(bundle));
      expect(res.status, JSON.stringify(res.body).slice(0, 2000)).toBe(200);
    }
  }

  /** Any other resource, as given. */
  add(resource: Resource): string {
    this.resources.push(resource);
    return `${resource.resourceType}/${resource.id}`;
  }
}

/** `prefix-1` … `prefix-n` as Patient references (the resources are added to `practice`). */
export function patients(practice: PracticeBuilder, prefix: string, n: number): string[] {
  return Array.from({ length: n }, (_, i) => practice.patient(`${prefix}-${i + 1}`));
}

export interface Result {
  report: MeasureReport;
  numerator: number;
  denominator: number;
  exclusionCount: number;
  /** met | not met | excluded, as printed. */
  met: string;
  percentage?: string;
  exclusion?: string;
  policies: string[];
  /** The references in a population's drill-down List (subject-list reports). */
  list(code: 'initial-population' | 'numerator'): string[];
  extension(name: string): string | undefined;
}

/** Runs `Measure/{id}/$evaluate-measure` and reads the report as an auditor would. */
export async function evaluate(agent: Agent, measure: string, params: Record<string, string>): Promise<Result> {
  const res = await agent.get(`/fhir/Measure/${measure}/$evaluate-measure`).query(params);
  expect(res.status, JSON.stringify(res.body).slice(0, 2000)).toBe(200);
  return readReport(res.body as MeasureReport);
}

export function readReport(report: MeasureReport): Result {
  expect(report.resourceType).toBe('MeasureReport');
  const populations = report.group?.[0]?.population ?? [];
  const population = (code: string) => populations.find((p) => p.code?.coding?.some((c) => c.code === code));
  const extension = (name: string) => report.extension?.find((e) => e.url === `${REPORT_EXTENSION}#${name}`)?.valueString;
  return {
    report,
    numerator: population('numerator')!.count!,
    denominator: population('denominator')!.count!,
    exclusionCount: population('denominator-exclusion')!.count!,
    met: extension('met')!,
    percentage: extension('percentage'),
    exclusion: extension('exclusion'),
    policies: (report.extension ?? []).filter((e) => e.url === `${REPORT_EXTENSION}#policy`).map((e) => e.valueString!),
    extension,
    list(code) {
      const target = population(code)?.subjectResults?.reference;
      expect(target, `${code} has no subjectResults`).toMatch(/^#/);
      const list = (report.contained ?? []).find((r) => r.resourceType === 'List' && `#${r.id}` === target);
      expect(list, `${target} is not contained`).toBeDefined();
      return ((list as { entry?: { item: { reference?: string } }[] }).entry ?? []).map((e) => e.item.reference!).sort();
    },
  };
}

/** The weekday of a calendar day, to state the calendar reasoning in the tests. */
export function weekday(day: string): string {
  return ['Sunday', 'Monday', 'Tuesday', 'Wednesday', 'Thursday', 'Friday', 'Saturday'][new Date(`${day}T00:00:00Z`).getUTCDay()];
}
