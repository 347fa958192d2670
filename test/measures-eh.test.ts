/**
 * Hospital measures (MEASURES.md, "Eligible hospitals"): of unique patients discharged from
 * the inpatient (IMP) or emergency department (EMER) in the period, >50% have their
 * information online within 36 hours of discharge (vdt-access-eh), >5% view, download or
 * transmit it themselves or through a representative, access before discharge counting
 * (vdt-use-eh); of unique patients admitted in the period, >10% are given education
 * (education-eh). Only the hospital's own stays (serviceProvider) count.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PracticeBuilder, evaluate, patients } from './support/measures.js';
import type { EncounterSpec } from './support/measures.js';
import { startTestServer } from './support/server.js';
import type { TestServer } from './support/server.js';

let server: TestServer;
const practice = new PracticeBuilder();
const sorted = (refs: string[]) => [...refs].sort();
const Q2 = { periodStart: '2014-04-01', periodEnd: '2014-06-30' };
const hospital = practice.organization('eh-general');
const otherHospital = practice.organization('eh-other');
const doctor = practice.practitioner('eh-doctor');
const HOUR = 3_600_000;
const hoursAfter = (iso: string, hours: number) => new Date(Date.parse(iso) + hours * HOUR).toISOString();

let n = 0;
const stay = (patient: string, start: string, end: string | null, extra: Partial<EncounterSpec> = {}) =>
  practice.encounter({ id: `eh-e-${++n}`, patient, start, end, class: 'IMP', serviceProvider: hospital, ...extra });
const event = (code: string, patient: string, who: string, at: string) => practice.portalEvent(`eh-ev-${++n}`, code, patient, who, at);
const educate = (patient: string, sent: string) =>
  practice.message({ id: `eh-m-${++n}`, patient, from: doctor, to: [patient], sent, category: 'education' });
const p = (id: string) => practice.patient(`eh-${id}`);

// Discharged 2014-04-12 10:00; access 35 hours later (04-13 21:00) → in time; viewed later in the period.
const at35h = p('35h');
const discharged35 = '2014-04-12T10:00:00Z';
stay(at35h, '2014-04-10T08:00:00Z', discharged35);
event('access-granted', at35h, at35h, hoursAfter(discharged35, 35));
event('view', at35h, at35h, '2014-04-20T10:00:00Z');
educate(at35h, '2014-04-11T10:00:00Z');
// ED visit, discharged 2014-04-20 12:00; access 37 hours later → too late.
const at37h = p('37h');
const discharged37 = '2014-04-20T12:00:00Z';
stay(at37h, '2014-04-20T08:00:00Z', discharged37, { class: 'EMER' });
event('access-granted', at37h, at37h, hoursAfter(discharged37, 37));
// Portal access granted months before the stay → in time.
const hadAccess = p('had-access');
stay(hadAccess, '2014-05-01T08:00:00Z', '2014-05-03T10:00:00Z');
event('access-granted', hadAccess, hadAccess, '2014-01-10T10:00:00Z');
// Admitted before the period (03-25), discharged in it (04-02): in the discharge
// denominators, not in the admissions one. Access given and used during the stay, before
// discharge (and before the period started): both count.
const admittedBefore = p('admitted-before');
stay(admittedBefore, '2014-03-25T10:00:00Z', '2014-04-02T10:00:00Z');
event('access-granted', admittedBefore, admittedBefore, '2014-03-26T10:00:00Z');
event('view', admittedBefore, admittedBefore, '2014-03-28T10:00:00Z');
educate(admittedBefore, '2014-03-30T10:00:00Z');
// Two stays in the period, counted once.
const twice = p('twice');
stay(twice, '2014-05-05T08:00:00Z', '2014-05-10T10:00:00Z');
stay(twice, '2014-05-18T08:00:00Z', '2014-05-20T10:00:00Z', { class: 'EMER' });
event('access-granted', twice, twice, '2014-05-09T10:00:00Z');
// Downloaded by the representative after discharge.
const repUsed = p('rep-used');
stay(repUsed, '2014-06-01T08:00:00Z', '2014-06-03T10:00:00Z');
event('download', repUsed, practice.representative('eh-rep', repUsed), '2014-06-10T10:00:00Z');
// Viewed by hospital staff: not the patient.
const staffViewed = p('staff-viewed');
stay(staffViewed, '2014-06-01T08:00:00Z', '2014-06-03T10:00:00Z');
event('view', staffViewed, doctor, '2014-06-04T10:00:00Z');
// Viewed, but after the period.
const viewedLate = p('viewed-late');
stay(viewedLate, '2014-06-01T08:00:00Z', '2014-06-03T10:00:00Z');
event('view', viewedLate, viewedLate, '2014-07-02T10:00:00Z');
// Admitted in the period, discharged after it: admissions only. Education after the period end.
const dischargedAfter = p('discharged-after');
stay(dischargedAfter, '2014-06-28T08:00:00Z', '2014-07-02T10:00:00Z');
educate(dischargedAfter, '2014-07-01T10:00:00Z');
// Still in the hospital: admitted, not discharged. Given education.
const inHouse = p('in-house');
stay(inHouse, '2014-06-20T08:00:00Z', null, { status: 'in-progress' });
educate(inHouse, '2014-06-21T10:00:00Z');
// Not stays of this hospital, or not stays at all.
const elsewhere = p('elsewhere');
stay(elsewhere, '2014-05-01T08:00:00Z', '2014-05-02T10:00:00Z', { serviceProvider: otherHospital });
event('view', elsewhere, elsewhere, '2014-05-03T10:00:00Z');
const outpatient = p('outpatient');
stay(outpatient, '2014-05-01T08:00:00Z', '2014-05-01T09:00:00Z', { class: 'AMB' });
event('view', outpatient, outpatient, '2014-05-03T10:00:00Z');
const cancelled = p('cancelled');
stay(cancelled, '2014-05-01T08:00:00Z', null, { status: 'cancelled' });
educate(cancelled, '2014-05-01T10:00:00Z');

const DISCHARGED = sorted([at35h, at37h, hadAccess, admittedBefore, twice, repUsed, staffViewed, viewedLate]);
const ONLINE_IN_36H = sorted([at35h, hadAccess, admittedBefore, twice]);
const USED = sorted([at35h, admittedBefore, repUsed]);
const ADMITTED = sorted([at35h, at37h, hadAccess, twice, repUsed, staffViewed, viewedLate, dischargedAfter, inHouse]);
const EDUCATED = sorted([at35h, inHouse]);

// Boundaries: hospital `eh-t20` discharged 20 patients, `eh-t19` the first 19 of them;
// patient 1 viewed, patients 1 and 2 were given education.
const t20 = practice.organization('eh-t20');
const t19 = practice.organization('eh-t19');
const cohort = patients(practice, 'eh-c', 20);
cohort.forEach((patient, i) => {
  stay(patient, '2014-05-05T08:00:00Z', '2014-05-06T10:00:00Z', { serviceProvider: t20 });
  if (i < 19) {
    stay(patient, '2014-05-12T08:00:00Z', '2014-05-13T10:00:00Z', { serviceProvider: t19 });
  }
});
event('view', cohort[0], cohort[0], '2014-05-20T10:00:00Z');
educate(cohort[0], '2014-05-20T10:00:00Z');
educate(cohort[1], '2014-05-20T10:00:00Z');

beforeAll(async () => {
  server = await startTestServer();
  await practice.load(server);
});
afterAll(async () => {
  await server?.stop({ dropDatabase: true });
});

const run = (measure: string, organization = hospital) => evaluate(server.request, measure, { ...Q2, organization, reportType: 'subject-list' });

describe('vdt-access-eh: online within 36 hours of discharge', () => {
  it('counts unique patients discharged from inpatient or ED in the period; 35 hours is in time, 37 is not', async () => {
    const report = await run('vdt-access-eh-2014');
    expect(report.list('initial-population')).toEqual(DISCHARGED);
    expect(report.list('numerator')).toEqual(ONLINE_IN_36H);
    // 4 of 8 = 50.00%: not more than 50%.
    expect([report.numerator, report.denominator, report.percentage, report.met]).toEqual([4, 8, '50.00%', 'not met']);
  });

  it('one more patient online in time makes 5 of 8, met', async () => {
    event('access-granted', repUsed, repUsed, '2014-06-04T09:00:00Z'); // 23 hours after discharge
    await practice.load(server);
    const report = await run('vdt-access-eh-2014');
    expect([report.numerator, report.denominator, report.percentage, report.met]).toEqual([5, 8, '62.50%', 'met']);
  });

  it('takes the hospital as subject too', async () => {
    const report = await evaluate(server.request, 'vdt-access-eh-2017', { ...Q2, subject: hospital });
    expect(report.denominator).toBe(8);
    expect(report.extension('threshold')).toBe('more than 50%');
  });
});

describe('vdt-use-eh: view, download or transmit', () => {
  it('counts patients or representatives who used the portal, access before discharge included', async () => {
    const report = await run('vdt-use-eh-2014');
    expect(report.list('initial-population')).toEqual(DISCHARGED);
    expect(report.list('numerator')).toEqual(USED);
    // 3 of 8 = 37.50% > 5%.
    expect([report.numerator, report.percentage, report.met]).toEqual([3, '37.50%', 'met']);
  });

  it('is strict at 5%: 1 of 20 is not met, 1 of 19 is; 2015 needs at least one patient', async () => {
    const atBoundary = await run('vdt-use-eh-2014', t20);
    expect([atBoundary.numerator, atBoundary.denominator, atBoundary.percentage, atBoundary.met]).toEqual([1, 20, '5.00%', 'not met']);
    const over = await run('vdt-use-eh-2014', t19);
    expect([over.numerator, over.denominator, over.percentage, over.met]).toEqual([1, 19, '5.26%', 'met']);
    expect((await run('vdt-use-eh-2015', t20)).met).toBe('met');
  });
});

describe('education-eh', () => {
  it('counts unique patients admitted in the period given education during or after their stay, in the period', async () => {
    const report = await run('education-eh-2014');
    expect(report.list('initial-population')).toEqual(ADMITTED);
    expect(report.list('numerator')).toEqual(EDUCATED);
    // 2 of 9 = 22.22% > 10%.
    expect([report.numerator, report.denominator, report.percentage, report.met]).toEqual([2, 9, '22.22%', 'met']);
  });

  it('is strict at 10%: 2 of 20 is not met, 2 of 19 is', async () => {
    const atBoundary = await run('education-eh-2014', t20);
    expect([atBoundary.numerator, atBoundary.denominator, atBoundary.percentage, atBoundary.met]).toEqual([2, 20, '10.00%', 'not met']);
    const over = await run('education-eh-2014', t19);
    expect([over.numerator, over.denominator, over.percentage, over.met]).toEqual([2, 19, '10.53%', 'met']);
  });
});

describe('hospital inputs', () => {
  it('a hospital measure needs the hospital; there is no hospital secure-messaging measure', async () => {
    const missing = await server.request.get('/fhir/Measure/vdt-access-eh-2014/$evaluate-measure').query(Q2);
    expect(missing.status).toBe(400);
    const res = await server.request.get('/fhir/Measure/$attestation').query({ year: '2014', ...Q2, organization: hospital });
    expect(res.status).toBe(200);
    const measures = (res.body.entry as { resource: { measure: string } }[]).map((e) => e.resource.measure.split('/').pop()).sort();
    expect(measures).toEqual(['education-eh-2014', 'vdt-access-eh-2014', 'vdt-use-eh-2014']);
  });
});
