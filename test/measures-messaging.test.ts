/**
 * Secure messaging (MEASURES.md, measure `secure-messaging`): the 2014 definition counts
 * patients who (or whose representative) *sent* a message to the EP; from 2015 it counts
 * patients to whom the EP *sent* a message or replied, strictly, unless the organization's
 * count-patient-sent flag also lets patient-sent messages count. Messages to a pool count
 * for an EP who belongs to it (default) or not at all (personal-only). Thread headers are
 * not messages. Thresholds: 2014 >5%, 2015 yes/no with evidence, 2016 at least one
 * patient, 2017 >5%, all strict.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PracticeBuilder, evaluate, patients } from './support/measures.js';
import type { MessageSpec } from './support/measures.js';
import { startTestServer } from './support/server.js';
import type { TestServer } from './support/server.js';

let server: TestServer;
const practice = new PracticeBuilder();
const PERIOD = { periodStart: '2014-04-01', periodEnd: '2014-06-30' };
const IN_PERIOD = '2014-05-15T14:00:00Z';
const sorted = (refs: string[]) => [...refs].sort();

const ep = practice.practitioner('sm-ep', 'Mason');
const epRole = practice.role('sm-ep-role', ep);
const colleague = practice.practitioner('sm-colleague', 'Cole');
// A shared inbox the EP belongs to, and one the EP does not.
const frontDesk = practice.careTeamPool('sm-front-desk', [ep, colleague]);
const nurses = practice.groupPool('sm-nurses', [colleague]);
const personalOnly = practice.organization('sm-personal-only', { pools: 'personal-only' });
const patientSentToo = practice.organization('sm-patient-sent', { countPatientSent: true });
const both = practice.organization('sm-both', { pools: 'personal-only', countPatientSent: true });

let n = 0;
const message = (spec: Omit<MessageSpec, 'id' | 'sent'> & { sent?: string }) => practice.message({ id: `sm-m-${++n}`, sent: IN_PERIOD, ...spec });

// Every patient below but `unseen` has an office visit with the EP in the period.
const seen: string[] = [];
const patient = (id: string) => {
  const ref = practice.patient(`sm-${id}`);
  practice.encounter({ id: `sm-e-${id}`, patient: ref, with: [ep], start: '2014-04-20T15:00:00Z' });
  seen.push(ref);
  return ref;
};

// Patient-sent messages.
const toEp = patient('to-ep');
message({ patient: toEp, from: toEp, to: [ep] }); // to the EP personally → 2014 ✓
const withRep = patient('with-rep');
const rep = practice.representative('sm-rep', withRep);
message({ patient: withRep, from: rep, to: [ep] }); // by the representative → 2014 ✓ (counts for the patient)
const toPool = patient('to-pool');
message({ patient: toPool, from: toPool, to: [frontDesk] }); // a pool the EP belongs to → 2014 ✓ by default, ✗ personal-only
const toOtherPool = patient('to-other-pool');
message({ patient: toOtherPool, from: toOtherPool, to: [nurses] }); // a pool without the EP → ✗
const toRole = patient('to-role');
message({ patient: toRole, from: toRole, to: [epRole] }); // the EP's PractitionerRole is the EP → 2014 ✓
const early = patient('early');
message({ patient: early, from: early, to: [ep], sent: '2014-03-31T23:59:00Z' }); // before the period → ✗
const headerOnly = patient('header-only');
message({ patient: headerOnly, from: headerOnly, to: [ep], header: true }); // a thread header is not a message → ✗
const toColleague = patient('to-colleague');
message({ patient: toColleague, from: toColleague, to: [colleague] }); // another practitioner → ✗

// Provider-sent messages.
const epSent = patient('ep-sent');
message({ patient: epSent, from: ep, to: [epSent] }); // the EP wrote to the patient → 2015+ ✓
const replied = patient('replied');
const thread = message({ patient: replied, from: replied, to: [ep], header: true, sent: '2014-05-01T10:00:00Z' });
const question = message({ patient: replied, from: replied, to: [ep], partOf: thread, sent: '2014-05-01T10:00:00Z' }); // → 2014 ✓
message({ patient: replied, from: ep, to: [replied], partOf: thread, inResponseTo: question, sent: '2014-05-02T10:00:00Z' }); // the EP replied → 2015+ ✓
const toRep = patient('to-rep');
const otherRep = practice.representative('sm-rep-2', toRep);
message({ patient: toRep, from: ep, to: [otherRep] }); // to the patient's representative → 2015+ ✓
const roleSent = patient('role-sent');
message({ patient: roleSent, from: epRole, to: [roleSent] }); // sent by the EP in their role → 2015+ ✓
const aboutNotTo = patient('about-not-to');
message({ patient: aboutNotTo, from: ep, to: [colleague] }); // about the patient, to a colleague: not sent *to* the patient → ✗
const colleagueSent = patient('colleague-sent');
message({ patient: colleagueSent, from: colleague, to: [colleagueSent] }); // not the EP → ✗
const sentLate = patient('sent-late');
message({ patient: sentLate, from: ep, to: [sentLate], sent: '2014-07-01T00:00:00Z' }); // after the period → ✗
const quiet = patient('quiet');
// Someone else's representative writing about `quiet` does not act for them → ✗
const unseen = practice.patient('sm-unseen');
practice.encounter({ id: 'sm-e-unseen', patient: unseen, with: [colleague], start: '2014-04-20T15:00:00Z' });
const strangerRep = practice.representative('sm-stranger-rep', unseen);
message({ patient: quiet, from: strangerRep, to: [ep] });
// Not seen by the EP in the period: never in the numerator, whatever they exchanged.
message({ patient: unseen, from: unseen, to: [ep] });
message({ patient: unseen, from: ep, to: [unseen] });

/** 16 patients seen by the EP. */
const DENOMINATOR = sorted(seen);
const PATIENT_SENT = sorted([toEp, withRep, toPool, toRole, replied]);
const PATIENT_SENT_PERSONAL = sorted([toEp, withRep, toRole, replied]);
const PROVIDER_SENT = sorted([epSent, replied, toRep, roleSent]);

// Threshold practices. `t20` sees 20 patients, `t19` the first 19 of them; patient 1 writes to both.
const t20 = practice.practitioner('sm-t20');
const t19 = practice.practitioner('sm-t19');
const cohort20 = patients(practice, 'sm-c20', 20);
practice.visits('sm-c20-t20', cohort20, t20, '2014-04-22T15:00:00Z');
practice.visits('sm-c20-t19', cohort20.slice(0, 19), t19, '2014-04-22T16:00:00Z');
message({ patient: cohort20[0], from: cohort20[0], to: [t20, t19] });
// `t100` sees 100 patients and writes to 5 of them (a sixth message is added in a test).
const t100 = practice.practitioner('sm-t100');
const cohort100 = patients(practice, 'sm-c100', 100);
practice.visits('sm-c100', cohort100, t100, '2014-04-23T15:00:00Z');
cohort100.slice(0, 5).forEach((p) => message({ patient: p, from: t100, to: [p] }));

beforeAll(async () => {
  server = await startTestServer();
  await practice.load(server);
});
afterAll(async () => {
  await server?.stop({ dropDatabase: true });
});

const run = (measure: string, extra: Record<string, string> = {}) =>
  evaluate(server.request, measure, { ...PERIOD, practitioner: ep, reportType: 'subject-list', ...extra });

describe('2014: patient-sent messages to the EP', () => {
  it('counts patients who, or whose representative, wrote to the EP, their role or a pool the EP belongs to', async () => {
    const report = await run('secure-messaging-2014');
    expect(report.denominator).toBe(16);
    expect(report.list('initial-population')).toEqual(DENOMINATOR);
    // 5 of 16 = 31.25% > 5%.
    expect(report.numerator).toBe(5);
    expect(report.list('numerator')).toEqual(PATIENT_SENT);
    expect(report.percentage).toBe('31.25%');
    expect(report.met).toBe('met');
    expect(report.policies.join('\n')).toMatch(/pools: messages to a pool count for an EP who belongs to it/);
  });

  it('under the personal-only policy, leaves out messages addressed to a pool', async () => {
    const report = await run('secure-messaging-2014', { organization: personalOnly });
    // 4 of 16 = 25.00%.
    expect(report.list('numerator')).toEqual(PATIENT_SENT_PERSONAL);
    expect(report.percentage).toBe('25.00%');
    expect(report.policies.join('\n')).toMatch(/pools: only messages addressed to the EP personally count/);
  });

  it('is not changed by the count-patient-sent flag, which is about 2015 onward', async () => {
    const report = await run('secure-messaging-2014', { organization: patientSentToo });
    expect(report.list('numerator')).toEqual(PATIENT_SENT);
  });

  it('is strict at 5%: 1 of 20 (5.00%) is not met, 1 of 19 (5.26%) is', async () => {
    const atBoundary = await evaluate(server.request, 'secure-messaging-2014', { ...PERIOD, practitioner: t20 });
    expect([atBoundary.numerator, atBoundary.denominator, atBoundary.percentage, atBoundary.met]).toEqual([1, 20, '5.00%', 'not met']);
    const over = await evaluate(server.request, 'secure-messaging-2014', { ...PERIOD, practitioner: t19 });
    expect([over.numerator, over.denominator, over.percentage, over.met]).toEqual([1, 19, '5.26%', 'met']);
  });
});

describe('2015 onward: messages the EP sent or replied with', () => {
  it('2017 counts patients the EP (or their role) wrote to or answered, or whose representative they wrote to', async () => {
    const report = await run('secure-messaging-2017');
    expect(report.denominator).toBe(16);
    // 4 of 16 = 25.00% > 5%.
    expect(report.list('numerator')).toEqual(PROVIDER_SENT);
    expect(report.percentage).toBe('25.00%');
    expect(report.met).toBe('met');
    expect(report.policies.join('\n')).toMatch(/secure messaging 2015\+: only provider-sent or provider-replied messages count \(strict\)/);
  });

  it('2015 is a yes/no capability reported with its evidence', async () => {
    const report = await run('secure-messaging-2015');
    expect(report.extension('threshold')).toMatch(/yes\/no/);
    expect(report.met).toBe('met');
    expect(report.list('numerator')).toEqual(PROVIDER_SENT);
    expect(report.extension('evidence')).toMatch(/enabled/);
    expect(report.extension('evidence')).toMatch(/\b4 patient/);
  });

  it('the count-patient-sent flag adds patient-sent messages, and the report says so', async () => {
    const report = await run('secure-messaging-2015', { organization: patientSentToo });
    // Provider-sent ∪ patient-sent: the replied-to patient is in both, so 4 + 5 − 1 = 8.
    expect(report.list('numerator')).toEqual(sorted([...new Set([...PROVIDER_SENT, ...PATIENT_SENT])]));
    expect(report.numerator).toBe(8);
    expect(report.policies.join('\n')).toMatch(/provider-sent, provider-replied and patient-sent messages count/);
    const y2017 = await run('secure-messaging-2017', { organization: patientSentToo });
    expect(y2017.numerator).toBe(8);
    expect(y2017.percentage).toBe('50.00%');
  });

  it('with the flag and the personal-only policy, pool messages still do not count', async () => {
    const report = await run('secure-messaging-2015', { organization: both });
    expect(report.list('numerator')).toEqual(sorted([...new Set([...PROVIDER_SENT, ...PATIENT_SENT_PERSONAL])]));
    expect(report.numerator).toBe(7);
  });

  it('2016 needs at least one patient', async () => {
    const met = await run('secure-messaging-2016');
    expect([met.numerator, met.met]).toEqual([4, 'met']);
    // t20 never wrote to anyone: 0 patients.
    const notMet = await evaluate(server.request, 'secure-messaging-2016', { ...PERIOD, practitioner: t20 });
    expect([notMet.numerator, notMet.denominator, notMet.met]).toEqual([0, 20, 'not met']);
    expect(notMet.extension('threshold')).toBe('at least 1 patient');
  });

  it('2017 is strict at 5%: 5 of 100 is not met; a sixth patient written to makes 6 of 100, met', async () => {
    const before = await evaluate(server.request, 'secure-messaging-2017', { ...PERIOD, practitioner: t100 });
    expect([before.numerator, before.denominator, before.percentage, before.met]).toEqual([5, 100, '5.00%', 'not met']);
    practice.message({ id: 'sm-m-sixth', patient: cohort100[5], from: t100, to: [cohort100[5]], sent: IN_PERIOD });
    await practice.load(server);
    const after = await evaluate(server.request, 'secure-messaging-2017', { ...PERIOD, practitioner: t100 });
    expect([after.numerator, after.denominator, after.percentage, after.met]).toEqual([6, 100, '6.00%', 'met']);
  });
});
