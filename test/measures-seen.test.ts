/**
 * Who is in an EP's denominator, for every EP measure (MEASURES.md "Shared definitions"):
 * "unique patients seen by the EP" are patients with at least one finished encounter in the
 * period in which the EP rendered a service (telehealth included, a patient seen twice
 * counts once); "office visits" are finished AMB or VR encounters. The seen-by policy may
 * leave out consultative-only services. Expected lists are worked out here from those
 * definitions, patient by patient.
 */
import type { Bundle, MeasureReport } from '@medplum/fhirtypes';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PracticeBuilder, evaluate, readReport } from './support/measures.js';
import type { Result } from './support/measures.js';
import { startTestServer } from './support/server.js';
import type { TestServer } from './support/server.js';

let server: TestServer;
const practice = new PracticeBuilder();
const PERIOD = { periodStart: '2014-04-01', periodEnd: '2014-06-30' };

// The EP, who also acts through a PractitionerRole, and a colleague.
const ep = practice.practitioner('seen-ep', 'Ellis');
const epRole = practice.role('seen-ep-role', ep);
const colleague = practice.practitioner('seen-colleague', 'Cole');
const lonely = practice.practitioner('seen-lonely', 'Lonely');
const strict = practice.organization('seen-strict', { seenBy: 'exclude-consultative-and-staff' });

const p = (id: string) => practice.patient(`seen-${id}`);
const office = p('office'); // AMB visit with the EP in the period → seen; 1 office visit
const tele = p('tele'); // VR (telehealth) visit → seen; 1 office visit
const twice = p('twice'); // two AMB visits → seen once; 2 office visits
const otherEp = p('other-ep'); // seen only by the colleague → not in the EP's denominators
const before = p('before'); // starts 23:30 on the day before the period → not seen
const after = p('after'); // starts at 00:00 on the day after the period → not seen
const lastMinute = p('last-minute'); // starts 23:45 on the last day, ends after → seen (starts in the period)
const inProgress = p('in-progress'); // unfinished → not seen
const cancelled = p('cancelled'); // cancelled → not seen
const planned = p('planned'); // planned → not seen
const viaRole = p('via-role'); // the EP took part through their PractitionerRole → seen
const shared = p('shared'); // the EP and the colleague both took part → seen by both
const home = p('home'); // HH (home health) with the EP → seen, but not an office visit
const consult = p('consult'); // only a consultative service (AMB) → seen by default, not under the strict seen-by policy
const consultAndOffice = p('consult-and-office'); // a consultative service and an ordinary visit → seen under both

practice.encounter({ id: 'seen-e-office', patient: office, with: [ep], start: '2014-04-10T15:00:00Z' });
practice.encounter({ id: 'seen-e-tele', patient: tele, with: [ep], start: '2014-05-05T15:00:00Z', class: 'VR' });
practice.encounter({ id: 'seen-e-twice-1', patient: twice, with: [ep], start: '2014-04-14T15:00:00Z' });
practice.encounter({ id: 'seen-e-twice-2', patient: twice, with: [ep], start: '2014-06-02T15:00:00Z' });
practice.encounter({ id: 'seen-e-other-ep', patient: otherEp, with: [colleague], start: '2014-04-15T15:00:00Z' });
practice.encounter({ id: 'seen-e-before', patient: before, with: [ep], start: '2014-03-31T23:30:00Z', end: '2014-04-01T00:00:00Z' });
practice.encounter({ id: 'seen-e-after', patient: after, with: [ep], start: '2014-07-01T00:00:00Z' });
practice.encounter({ id: 'seen-e-last-minute', patient: lastMinute, with: [ep], start: '2014-06-30T23:45:00Z', end: '2014-07-01T00:15:00Z' });
practice.encounter({ id: 'seen-e-in-progress', patient: inProgress, with: [ep], start: '2014-05-01T15:00:00Z', end: null, status: 'in-progress' });
practice.encounter({ id: 'seen-e-cancelled', patient: cancelled, with: [ep], start: '2014-05-01T15:00:00Z', status: 'cancelled' });
practice.encounter({ id: 'seen-e-planned', patient: planned, with: [ep], start: '2014-05-01T15:00:00Z', end: null, status: 'planned' });
practice.encounter({ id: 'seen-e-via-role', patient: viaRole, with: [epRole], start: '2014-05-07T15:00:00Z' });
practice.encounter({ id: 'seen-e-shared', patient: shared, with: [ep, colleague], start: '2014-05-08T15:00:00Z' });
practice.encounter({ id: 'seen-e-home', patient: home, with: [ep], start: '2014-05-09T15:00:00Z', class: 'HH' });
practice.encounter({ id: 'seen-e-consult', patient: consult, with: [ep], start: '2014-05-12T15:00:00Z', kind: 'consultative' });
practice.encounter({ id: 'seen-e-consult-2', patient: consultAndOffice, with: [ep], start: '2014-05-13T15:00:00Z', kind: 'consultative' });
practice.encounter({ id: 'seen-e-consult-office', patient: consultAndOffice, with: [ep], start: '2014-05-20T15:00:00Z' });

// The lonely EP's only encounter is a visit outside the period.
practice.encounter({ id: 'seen-e-lonely', patient: office, with: [lonely], start: '2014-03-03T15:00:00Z' });

const sorted = (refs: string[]) => [...refs].sort();

/** All-services policy (the default). */
const SEEN = sorted([office, tele, twice, lastMinute, viaRole, shared, home, consult, consultAndOffice]);
/** Patients with an office visit (AMB/VR): everyone seen except the home-health patient. */
const OFFICE_PATIENTS = sorted(SEEN.filter((x) => x !== home));
/** Office visits, one by one (clinical summaries count visits). */
const OFFICE_VISITS = sorted(
  [
    'seen-e-office',
    'seen-e-tele',
    'seen-e-twice-1',
    'seen-e-twice-2',
    'seen-e-last-minute',
    'seen-e-via-role',
    'seen-e-shared',
    'seen-e-consult',
    'seen-e-consult-2',
    'seen-e-consult-office',
  ].map((id) => `Encounter/${id}`)
);

async function attestation(params: Record<string, string>): Promise<Map<string, Result>> {
  const res = await server.request.get('/fhir/Measure/$attestation').query({ year: '2014', reportType: 'subject-list', ...params });
  expect(res.status, JSON.stringify(res.body).slice(0, 1000)).toBe(200);
  const reports = new Map<string, Result>();
  for (const entry of (res.body as Bundle).entry ?? []) {
    const report = entry.resource as MeasureReport;
    reports.set(report.measure.split('/').pop()!, readReport(report));
  }
  return reports;
}

beforeAll(async () => {
  server = await startTestServer();
  await practice.load(server);
});
afterAll(async () => {
  await server?.stop({ dropDatabase: true });
});

describe('unique patients seen by the EP (all-services policy, the default)', () => {
  it('counts each patient with a finished visit by the EP starting in the period once, telehealth included', async () => {
    const reports = await attestation({ ...PERIOD, practitioner: ep });
    expect([...reports.keys()].sort()).toEqual(['clinical-summary-2014', 'education-2014', 'reminders-2014', 'secure-messaging-2014', 'vdt-access-2014', 'vdt-use-2014']);
    // Secure messaging and both VDT measures: unique patients seen (9 of the 15 patients).
    for (const measure of ['secure-messaging-2014', 'vdt-access-2014', 'vdt-use-2014']) {
      const report = reports.get(measure)!;
      expect(report.denominator, measure).toBe(9);
      expect(report.list('initial-population'), measure).toEqual(SEEN);
    }
    // Education: unique patients with an office visit — the home-health patient is seen but has none.
    expect(reports.get('education-2014')!.denominator).toBe(8);
    expect(reports.get('education-2014')!.list('initial-population')).toEqual(OFFICE_PATIENTS);
    // Clinical summaries count visits: the patient seen twice contributes two, 10 in all.
    expect(reports.get('clinical-summary-2014')!.denominator).toBe(10);
    expect(reports.get('clinical-summary-2014')!.list('initial-population')).toEqual(OFFICE_VISITS);
    // Nobody had two office visits with the EP in the 24 months before 2014-04-01.
    expect(reports.get('reminders-2014')!.denominator).toBe(0);
    // The EP had office visits in the period: nothing excluded.
    for (const [measure, report] of reports) {
      if (measure !== 'reminders-2014') {
        expect(report.exclusion, measure).toBeUndefined();
        expect(report.exclusionCount, measure).toBe(0);
      }
    }
  });

  it("counts a colleague's visits for the colleague only", async () => {
    const report = await evaluate(server.request, 'secure-messaging-2014', { ...PERIOD, practitioner: colleague, reportType: 'subject-list' });
    // The colleague saw two patients: the one only they saw, and the one they saw with the EP.
    expect(report.denominator).toBe(2);
    expect(report.list('initial-population')).toEqual(sorted([otherEp, shared]));
  });

  it('counts nobody for an EP whose only visit lies outside the period', async () => {
    const report = await evaluate(server.request, 'vdt-use-2014', { ...PERIOD, practitioner: lonely });
    expect(report.denominator).toBe(0);
  });

  it('moves the boundaries with the period: the visit starting 23:30 on 2014-03-31 belongs to a period ending that day', async () => {
    const report = await evaluate(server.request, 'vdt-use-2014', { periodStart: '2014-03-31', periodEnd: '2014-03-31', practitioner: ep, reportType: 'subject-list' });
    expect(report.list('initial-population')).toEqual([before]);
  });
});

describe('the seen-by policy excluding consultative-only services', () => {
  it('leaves out encounters of kind consultative, for every measure, and prints the policy', async () => {
    const reports = await attestation({ ...PERIOD, practitioner: ep, organization: strict });
    // The consult-only patient drops out; the patient who also had an ordinary visit stays.
    const seen = SEEN.filter((x) => x !== consult);
    for (const measure of ['secure-messaging-2014', 'vdt-access-2014', 'vdt-use-2014']) {
      expect(reports.get(measure)!.list('initial-population'), measure).toEqual(seen);
    }
    expect(reports.get('education-2014')!.list('initial-population')).toEqual(OFFICE_PATIENTS.filter((x) => x !== consult));
    // Both consultative encounters stop being office visits: 10 − 2 = 8.
    const visits = OFFICE_VISITS.filter((v) => v !== 'Encounter/seen-e-consult' && v !== 'Encounter/seen-e-consult-2');
    expect(reports.get('clinical-summary-2014')!.denominator).toBe(8);
    expect(reports.get('clinical-summary-2014')!.list('initial-population')).toEqual(visits);
    for (const report of reports.values()) {
      expect(report.policies.join('\n')).toMatch(/seen by the EP: consultative-only services .* excluded/);
    }
  });

  it('prints the default when no organization is given', async () => {
    const report = await evaluate(server.request, 'secure-messaging-2014', { ...PERIOD, practitioner: ep });
    expect(report.policies.join('\n')).toMatch(/seen by the EP: all services, including consultative-only/);
  });
});
