/**
 * Measures built on office visits (MEASURES.md `education`, `clinical-summary`) and
 * exclusions. Education: of unique patients with an office visit (AMB or VR) with the EP in
 * the period, those given patient-specific education; >10% (Stage 3 >35%). Clinical
 * summaries count visits, not patients: a visit counts when a clinical summary pointing to
 * it was provided within 1 business day; >50%. Exclusions are attested on input, or derived
 * when the EP had no office visits in the period, and the report prints the basis.
 */
import type { Bundle, MeasureReport } from '@medplum/fhirtypes';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PracticeBuilder, evaluate, patients, readReport, weekday } from './support/measures.js';
import type { MessageSpec } from './support/measures.js';
import { startTestServer } from './support/server.js';
import type { TestServer } from './support/server.js';

let server: TestServer;
const practice = new PracticeBuilder();
const sorted = (refs: string[]) => [...refs].sort();
let n = 0;
const message = (spec: Omit<MessageSpec, 'id'>) => practice.message({ id: `vi-m-${++n}`, ...spec });
const colleague = practice.practitioner('vi-colleague');

// ---- Education: the EP `ed-ep`, second quarter of 2014.
const Q2 = { periodStart: '2014-04-01', periodEnd: '2014-06-30' };
const edEp = practice.practitioner('ed-ep');
const educate = (patient: string, to: string, sent = '2014-05-01T12:00:00Z', category = 'education') => message({ patient, from: edEp, to: [to], sent, category });
const edVisit = (id: string, cls = 'AMB', who = edEp) => {
  const patient = practice.patient(`ed-${id}`);
  practice.encounter({ id: `ed-e-${id}`, patient, with: [who], start: '2014-04-15T15:00:00Z', class: cls });
  return patient;
};
const edGiven = edVisit('given');
educate(edGiven, edGiven); // ✓
const edRep = edVisit('rep', 'VR'); // telehealth is an office visit
educate(edRep, practice.representative('ed-rep-rp', edRep)); // ✓ given to the representative
const edHome = edVisit('home', 'HH'); // seen at home: not an office visit → not in the denominator
educate(edHome, edHome);
const edEarly = edVisit('early');
educate(edEarly, edEarly, '2014-03-15T12:00:00Z'); // ✗ before the period
const edReminder = edVisit('reminder');
educate(edReminder, edReminder, '2014-05-01T12:00:00Z', 'reminder'); // ✗ a reminder is not education
const edNone = edVisit('none'); // ✗
const edOther = edVisit('other-ep', 'AMB', colleague); // the colleague's patient: not in the denominator
educate(edOther, edOther);
const ED_DENOMINATOR = sorted([edGiven, edRep, edEarly, edReminder, edNone]);
const ED_NUMERATOR = sorted([edGiven, edRep]);

// 10% boundary: `ed-t10` sees 10 patients, `ed-t9` the first 9; patient 1 was given education.
const edT10 = practice.practitioner('ed-t10');
const edT9 = practice.practitioner('ed-t9');
const edCohort = patients(practice, 'ed-c', 10);
practice.visits('ed-c10', edCohort, edT10, '2014-04-16T15:00:00Z');
practice.visits('ed-c9', edCohort.slice(0, 9), edT9, '2014-04-16T16:00:00Z');
educate(edCohort[0], edCohort[0]);

// ---- Clinical summaries: the EP `cs-ep`, first quarter of 2014.
const Q1 = { periodStart: '2014-01-01', periodEnd: '2014-03-31' };
const csEp = practice.practitioner('cs-ep');
const closedMonday10March = practice.organization('cs-closed-monday', { holidays: ['2014-03-10'] });
const summary = (patient: string, encounter: string, sent: string, category = 'clinical-summary') => message({ patient, from: csEp, to: [patient], sent, category, encounter });
const csVisit = (id: string, start: string, cls = 'AMB', who = csEp) => {
  const patient = practice.patient(`cs-${id}`);
  return { patient, encounter: practice.encounter({ id: `cs-e-${id}`, patient, with: [who], start, class: cls }) };
};
// Friday 2014-03-07 → 1 business day is Monday 2014-03-10.
const friMon = csVisit('fri-mon', '2014-03-07T15:00:00Z');
summary(friMon.patient, friMon.encounter, '2014-03-10T16:00:00Z'); // ✓
const friTue = csVisit('fri-tue', '2014-03-07T15:00:00Z');
summary(friTue.patient, friTue.encounter, '2014-03-11T09:00:00Z'); // ✗ (✓ when the practice is closed Monday 10)
// Friday 2014-02-14, before Presidents' Day (Monday 2014-02-17) → Tuesday 2014-02-18.
const holidayTue = csVisit('holiday-tue', '2014-02-14T15:00:00Z');
summary(holidayTue.patient, holidayTue.encounter, '2014-02-18T16:00:00Z'); // ✓
const holidayWed = csVisit('holiday-wed', '2014-02-14T15:00:00Z');
summary(holidayWed.patient, holidayWed.encounter, '2014-02-19T09:00:00Z'); // ✗
// Two visits (Mondays 2014-03-03 and 2014-03-17), a summary for the first only: 1 of 2 visits.
const twice = csVisit('twice', '2014-03-03T15:00:00Z');
const twiceSecond = practice.encounter({ id: 'cs-e-twice-2', patient: twice.patient, with: [csEp], start: '2014-03-17T15:00:00Z' });
summary(twice.patient, twice.encounter, '2014-03-03T17:00:00Z'); // ✓
// Telehealth on Tuesday 2014-03-04, summary on Wednesday.
const tele = csVisit('tele', '2014-03-04T15:00:00Z', 'VR');
summary(tele.patient, tele.encounter, '2014-03-05T15:00:00Z'); // ✓
// A home visit is not an office visit: not in the denominator, summary or not.
const home = csVisit('home', '2014-03-04T15:00:00Z', 'HH');
summary(home.patient, home.encounter, '2014-03-04T17:00:00Z');
// Education that points to the visit is not a clinical summary.
const wrongCategory = csVisit('wrong-category', '2014-03-04T15:00:00Z');
summary(wrongCategory.patient, wrongCategory.encounter, '2014-03-04T17:00:00Z', 'education'); // ✗
// The summary of the same-day visit with a colleague does not cover the visit with the EP.
const wrongVisit = csVisit('wrong-visit', '2014-03-04T15:00:00Z');
const colleagueVisit = practice.encounter({ id: 'cs-e-wrong-visit-colleague', patient: wrongVisit.patient, with: [colleague], start: '2014-03-04T16:00:00Z' });
summary(wrongVisit.patient, colleagueVisit, '2014-03-04T17:00:00Z'); // ✗
const CS_DENOMINATOR = sorted([friMon, friTue, holidayTue, holidayWed, twice, tele, wrongCategory, wrongVisit].map((v) => v.encounter).concat(twiceSecond));
const CS_NUMERATOR = sorted([friMon, holidayTue, twice, tele].map((v) => v.encounter));

// 50% boundary: `cs-half` saw one patient twice and gave a summary for one visit (1 of 2);
// `cs-over` had 3 visits and gave summaries for 2 (66.67%).
const csHalf = practice.practitioner('cs-half');
const csOver = practice.practitioner('cs-over');
const halfPatient = practice.patient('cs-half-patient');
const half1 = practice.encounter({ id: 'cs-half-1', patient: halfPatient, with: [csHalf], start: '2014-03-03T15:00:00Z' });
practice.encounter({ id: 'cs-half-2', patient: halfPatient, with: [csHalf], start: '2014-03-17T15:00:00Z' });
summary(halfPatient, half1, '2014-03-03T18:00:00Z');
const overPatients = patients(practice, 'cs-over-p', 3);
const over = overPatients.map((p, i) => practice.encounter({ id: `cs-over-${i}`, patient: p, with: [csOver], start: '2014-03-03T15:00:00Z' }));
summary(overPatients[0], over[0], '2014-03-03T18:00:00Z');
summary(overPatients[1], over[1], '2014-03-04T18:00:00Z');

// ---- Exclusions.
const noVisits = practice.practitioner('ex-no-visits'); // no encounters at all
const homeOnly = practice.practitioner('ex-home-only'); // one home visit in the period, no office visit
practice.encounter({ id: 'ex-e-home', patient: edNone, with: [homeOnly], start: '2014-05-01T15:00:00Z', class: 'HH' });

beforeAll(async () => {
  server = await startTestServer();
  await practice.load(server);
});
afterAll(async () => {
  await server?.stop({ dropDatabase: true });
});

describe('education', () => {
  it('counts patients with an office visit who were given education in the period, also through a representative', async () => {
    const report = await evaluate(server.request, 'education-2014', { ...Q2, practitioner: edEp, reportType: 'subject-list' });
    expect(report.list('initial-population')).toEqual(ED_DENOMINATOR);
    expect(report.list('numerator')).toEqual(ED_NUMERATOR);
    // 2 of 5 = 40.00% > 10%.
    expect([report.numerator, report.denominator, report.percentage, report.met]).toEqual([2, 5, '40.00%', 'met']);
  });

  it('is strict at 10%: 1 of 10 is not met, 1 of 9 is', async () => {
    const atBoundary = await evaluate(server.request, 'education-2014', { ...Q2, practitioner: edT10 });
    expect([atBoundary.numerator, atBoundary.denominator, atBoundary.percentage, atBoundary.met]).toEqual([1, 10, '10.00%', 'not met']);
    const over9 = await evaluate(server.request, 'education-2014', { ...Q2, practitioner: edT9 });
    expect([over9.numerator, over9.denominator, over9.percentage, over9.met]).toEqual([1, 9, '11.11%', 'met']);
  });

  it('holds Stage 3 to more than 35%', async () => {
    // 40.00% passes; 11.11% does not.
    expect((await evaluate(server.request, 'education-stage3', { ...Q2, practitioner: edEp })).met).toBe('met');
    expect((await evaluate(server.request, 'education-stage3', { ...Q2, practitioner: edT9 })).met).toBe('not met');
  });
});

describe('clinical summaries, per visit', () => {
  it('the calendar reasoning above holds', () => {
    expect(['2014-02-14', '2014-02-17', '2014-02-18', '2014-03-03', '2014-03-07', '2014-03-10', '2014-03-11'].map(weekday)).toEqual([
      'Friday',
      'Monday',
      'Tuesday',
      'Monday',
      'Friday',
      'Monday',
      'Tuesday',
    ]);
  });

  it('counts office visits with a summary within 1 business day, across weekends and federal holidays', async () => {
    const report = await evaluate(server.request, 'clinical-summary-2014', { ...Q1, practitioner: csEp, reportType: 'subject-list' });
    expect(report.list('initial-population')).toEqual(CS_DENOMINATOR);
    expect(report.list('numerator')).toEqual(CS_NUMERATOR);
    // 4 of 9 visits = 44.44%, not over 50%.
    expect([report.numerator, report.denominator, report.percentage, report.met]).toEqual([4, 9, '44.44%', 'not met']);
  });

  it("takes the practice's holidays: closed Monday 2014-03-10, a Friday visit's summary is due Tuesday", async () => {
    const report = await evaluate(server.request, 'clinical-summary-2014', { ...Q1, practitioner: csEp, organization: closedMonday10March, reportType: 'subject-list' });
    expect(report.list('numerator')).toEqual(sorted([...CS_NUMERATOR, friTue.encounter]));
    // 5 of 9 = 55.56%.
    expect([report.numerator, report.percentage, report.met]).toEqual([5, '55.56%', 'met']);
  });

  it('counts visits, not patients: one patient, two visits, one summary is 1 of 2 = 50.00%, not met', async () => {
    const report = await evaluate(server.request, 'clinical-summary-2014', { ...Q1, practitioner: csHalf, reportType: 'subject-list' });
    expect([report.numerator, report.denominator, report.percentage, report.met]).toEqual([1, 2, '50.00%', 'not met']);
    expect(report.list('numerator')).toEqual([half1]);
    const overReport = await evaluate(server.request, 'clinical-summary-2014', { ...Q1, practitioner: csOver });
    expect([overReport.numerator, overReport.denominator, overReport.percentage, overReport.met]).toEqual([2, 3, '66.67%', 'met']);
  });
});

describe('exclusions', () => {
  it('accepts an attested exclusion, prints its basis and excludes the whole denominator', async () => {
    const basis = 'more than 50% of encounters in a county with under 50% of housing units with 3 Mbps broadband';
    const report = await evaluate(server.request, 'education-2014', { ...Q2, practitioner: edEp, exclusion: basis });
    expect(report.met).toBe('excluded');
    expect(report.exclusion).toBe(`attested: ${basis}`);
    // The counts are still shown; all 5 patients are excluded.
    expect([report.numerator, report.denominator, report.exclusionCount]).toEqual([2, 5, 5]);
  });

  it('derives the exclusion for an EP with no office visits in the period', async () => {
    const res = await server.request.get('/fhir/Measure/$attestation').query({ year: '2014', ...Q2, practitioner: noVisits });
    expect(res.status).toBe(200);
    const reports = ((res.body as Bundle).entry ?? []).map((e) => readReport(e.resource as MeasureReport));
    expect(reports).toHaveLength(6);
    for (const report of reports) {
      expect(report.met, report.report.measure).toBe('excluded');
      expect(report.exclusion, report.report.measure).toMatch(/^derived: no office visits/);
    }
  });

  it('a home visit is not an office visit: education and clinical summaries are excluded, with the basis', async () => {
    for (const measure of ['education-2014', 'clinical-summary-2014', 'secure-messaging-2014']) {
      const report = await evaluate(server.request, measure, { ...Q2, practitioner: homeOnly });
      expect(report.met, measure).toBe('excluded');
      expect(report.exclusion, measure).toBe('derived: no office visits with the EP in the reporting period');
    }
    // The patient was still seen (secure messaging's denominator is patients seen).
    expect((await evaluate(server.request, 'secure-messaging-2014', { ...Q2, practitioner: homeOnly })).denominator).toBe(1);
  });

  it('an EP with office visits is not excluded', async () => {
    const report = await evaluate(server.request, 'education-2014', { ...Q2, practitioner: edEp });
    expect(report.exclusion).toBeUndefined();
    expect(report.exclusionCount).toBe(0);
  });
});
