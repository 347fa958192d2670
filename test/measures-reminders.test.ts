/**
 * Patient reminders (MEASURES.md `reminders`, 2014 only): of unique patients with two or more
 * office visits with the EP in the 24 months *before the start* of the period, those sent a
 * reminder in the period (to them or their representative); >10%. The reminder-visits
 * policy may count both prior visits with the practice instead of this EP. The exclusion
 * CMS gives for this measure — no office visits in the 24 months before the period — is
 * one the report can derive. This suite has its own database: under the with-practice
 * policy every patient of the practice with two prior office visits is a candidate, so
 * the only ones here are those listed below.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PracticeBuilder, evaluate, patients } from './support/measures.js';
import type { MessageSpec } from './support/measures.js';
import { startTestServer } from './support/server.js';
import type { TestServer } from './support/server.js';

let server: TestServer;
const practice = new PracticeBuilder();
const sorted = (refs: string[]) => [...refs].sort();
let n = 0;
const message = (spec: Omit<MessageSpec, 'id'>) => practice.message({ id: `rm-m-${++n}`, ...spec });

// Period: third quarter of 2014. The look-back is the 24 months before 2014-07-01:
// from 2012-07-01 00:00 up to (not including) 2014-07-01 00:00.
const Q3 = { periodStart: '2014-07-01', periodEnd: '2014-09-30' };
const IN_Q3 = '2014-08-01T12:00:00Z';
const ep = practice.practitioner('rm-ep');
const colleague = practice.practitioner('rm-colleague');
const withPractice = practice.organization('rm-with-practice', { reminderVisits: 'with-practice' });

let v = 0;
const visit = (patient: string, start: string, extra: { class?: string; status?: 'finished' | 'cancelled'; who?: string } = {}) =>
  practice.encounter({ id: `rm-e-${++v}`, patient, with: [extra.who ?? ep], start, class: extra.class, status: extra.status });
const remind = (patient: string, to = patient, sent = IN_Q3, category = 'reminder') => message({ patient, from: ep, to: [to], sent, category });
const p = (id: string) => practice.patient(`rm-${id}`);

const twoPrior = p('two-prior'); // two office visits in the look-back, reminded → ✓
visit(twoPrior, '2013-03-04T15:00:00Z');
visit(twoPrior, '2014-01-13T15:00:00Z');
remind(twoPrior);
const telePrior = p('tele-prior'); // one of them telehealth; the reminder went to the representative → ✓
visit(telePrior, '2013-05-06T15:00:00Z');
visit(telePrior, '2014-02-03T15:00:00Z', { class: 'VR' });
remind(telePrior, practice.representative('rm-rep', telePrior));
const tooOld = p('too-old'); // one visit inside, one 25 months before the start → not in the denominator
visit(tooOld, '2012-06-01T15:00:00Z');
visit(tooOld, '2014-02-03T15:00:00Z');
remind(tooOld);
const firstDay = p('first-day'); // a visit at 2012-07-01 00:00, exactly 24 months before → in the denominator, not reminded
visit(firstDay, '2012-07-01T00:00:00Z');
visit(firstDay, '2013-01-07T15:00:00Z');
const splitVisits = p('split-visits'); // one visit with the EP, one with a colleague → ✗ with-ep, ✓ with-practice
visit(splitVisits, '2013-04-01T15:00:00Z');
visit(splitVisits, '2013-10-01T15:00:00Z', { who: colleague });
remind(splitVisits);
const cancelled = p('cancelled'); // the second visit was cancelled → not in the denominator
visit(cancelled, '2013-04-01T15:00:00Z');
visit(cancelled, '2013-10-01T15:00:00Z', { status: 'cancelled' });
remind(cancelled);
const inpatient = p('inpatient'); // the second was an inpatient stay, not an office visit → not in the denominator
visit(inpatient, '2013-04-01T15:00:00Z');
visit(inpatient, '2013-10-01T15:00:00Z', { class: 'IMP' });
remind(inpatient);
const remindedEarly = p('reminded-early'); // reminded before the period → in the denominator, ✗
visit(remindedEarly, '2013-04-01T15:00:00Z');
visit(remindedEarly, '2013-10-01T15:00:00Z');
remind(remindedEarly, remindedEarly, '2014-06-30T12:00:00Z');
const educated = p('educated'); // given education, not a reminder → in the denominator, ✗
visit(educated, '2013-04-01T15:00:00Z');
visit(educated, '2013-10-01T15:00:00Z');
remind(educated, educated, IN_Q3, 'education');
const onlyInPeriod = p('only-in-period'); // two visits, both in the period → not in the denominator
visit(onlyInPeriod, '2014-07-15T15:00:00Z');
visit(onlyInPeriod, '2014-08-15T15:00:00Z');
remind(onlyInPeriod);

const WITH_EP = sorted([twoPrior, telePrior, firstDay, remindedEarly, educated]);
const REMINDED_WITH_EP = sorted([twoPrior, telePrior]);

// 10% boundary, period 2014-01-01..2014-03-31 (look-back 2012-01-01..2013-12-31; these
// visits fall before the Q3 look-back above): `rm-t10` had two visits with each of 10
// patients, `rm-t9` with the first 9; patient 1 was reminded.
const Q1 = { periodStart: '2014-01-01', periodEnd: '2014-03-31' };
const t10 = practice.practitioner('rm-t10');
const t9 = practice.practitioner('rm-t9');
const cohort = patients(practice, 'rm-c', 10);
cohort.forEach((patient, i) => {
  visit(patient, '2012-03-05T15:00:00Z', { who: t10 });
  visit(patient, '2012-05-07T15:00:00Z', { who: t10 });
  if (i < 9) {
    visit(patient, '2012-03-06T15:00:00Z', { who: t9 });
    visit(patient, '2012-05-08T15:00:00Z', { who: t9 });
  }
});
message({ patient: cohort[0], from: t10, to: [cohort[0]], sent: '2014-02-03T12:00:00Z', category: 'reminder' });

// Exclusions: `rm-new` started seeing patients in the period (no office visits before it);
// `rm-retiring` saw patients in the look-back but not in the period.
const newEp = practice.practitioner('rm-new');
visit(p('new-patient'), '2014-07-10T15:00:00Z', { who: newEp });
// (The retiring EP's patient is `firstDay`, already in rm-ep's denominator and not reminded.)
const retiring = practice.practitioner('rm-retiring');
visit(firstDay, '2013-02-04T15:00:00Z', { who: retiring });
visit(firstDay, '2013-08-05T15:00:00Z', { who: retiring });

beforeAll(async () => {
  server = await startTestServer();
  await practice.load(server);
});
afterAll(async () => {
  await server?.stop({ dropDatabase: true });
});

describe('reminders', () => {
  it('counts patients with two office visits with the EP in the 24 months before the start, reminded in the period', async () => {
    const report = await evaluate(server.request, 'reminders-2014', { ...Q3, practitioner: ep, reportType: 'subject-list' });
    expect(report.list('initial-population')).toEqual(WITH_EP);
    expect(report.list('numerator')).toEqual(REMINDED_WITH_EP);
    // 2 of 5 = 40.00% > 10%.
    expect([report.numerator, report.denominator, report.percentage, report.met]).toEqual([2, 5, '40.00%', 'met']);
    expect(report.policies.join('\n')).toMatch(/reminders: two or more office visits with this EP in the 24 months before the period/);
  });

  it('under the with-practice policy, a visit with a colleague counts as one of the two', async () => {
    const report = await evaluate(server.request, 'reminders-2014', { ...Q3, practitioner: ep, organization: withPractice, reportType: 'subject-list' });
    // The split-visits patient joins, and was reminded: 3 of 6 = 50.00%. (The cohort below had
    // its visits in 2012-03/05, before this look-back.)
    expect(report.list('initial-population')).toEqual(sorted([...WITH_EP, splitVisits]));
    expect(report.list('numerator')).toEqual(sorted([...REMINDED_WITH_EP, splitVisits]));
    expect([report.numerator, report.denominator, report.percentage]).toEqual([3, 6, '50.00%']);
    expect(report.policies.join('\n')).toMatch(/reminders: two or more office visits with the practice/);
  });

  it('is strict at 10%: 1 of 10 is not met, 1 of 9 is', async () => {
    const atBoundary = await evaluate(server.request, 'reminders-2014', { ...Q1, practitioner: t10 });
    expect([atBoundary.numerator, atBoundary.denominator, atBoundary.percentage, atBoundary.met]).toEqual([1, 10, '10.00%', 'not met']);
    const over = await evaluate(server.request, 'reminders-2014', { ...Q1, practitioner: t9 });
    expect([over.numerator, over.denominator, over.percentage, over.met]).toEqual([1, 9, '11.11%', 'met']);
  });

  it('exists in 2014 only', async () => {
    const res = await server.request.get('/fhir/Measure/reminders-2015/$evaluate-measure').query({ ...Q3, practitioner: ep });
    expect(res.status).toBe(404);
  });
});

describe('the reminders exclusion: no office visits in the 24 months before the period', () => {
  it('is derived for an EP whose office visits all fall in the period', async () => {
    const report = await evaluate(server.request, 'reminders-2014', { ...Q3, practitioner: newEp });
    expect(report.met).toBe('excluded');
    expect(report.exclusion).toBe('derived: no office visits with the EP in the 24 months before the reporting period');
    // Education, in the same period, is not excluded: the EP had an office visit in it.
    expect((await evaluate(server.request, 'education-2014', { ...Q3, practitioner: newEp })).exclusion).toBeUndefined();
  });

  it('is not derived for an EP with office visits in the look-back but none in the period', async () => {
    const report = await evaluate(server.request, 'reminders-2014', { ...Q3, practitioner: retiring });
    expect(report.exclusion).toBeUndefined();
    // 1 patient in the denominator, not reminded: 0.00%, not met.
    expect([report.numerator, report.denominator, report.met]).toEqual([0, 1, 'not met']);
    // Education is excluded for that EP: no office visits in the period.
    expect((await evaluate(server.request, 'education-2014', { ...Q3, practitioner: retiring })).met).toBe('excluded');
  });
});
