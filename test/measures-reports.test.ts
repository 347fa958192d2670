/**
 * The report as an auditor receives it (MEASURES.md, "What an auditor expects"): who it is
 * for, the system, program year, period, measure text, counts, percentage to 2 decimals,
 * threshold, met, exclusion, policies, generation time and on request the patient lists;
 * a whole program year as a Bundle or CSV; the same numbers when regenerated; signatures
 * anyone holding the server's public keys can check and that break on any change; only
 * auditors and administrators may run reports, and every run is audited.
 */
import type { AuditEvent, Bundle, MeasureReport, Parameters } from '@medplum/fhirtypes';
import { compactVerify, createLocalJWKSet, decodeProtectedHeader } from 'jose';
import type { JSONWebKeySet } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { meets, percent } from '../fhir/measures/evaluate.js';
import { FHIR_JSON, NPI_SYSTEM, PracticeBuilder, REPORT_EXTENSION, evaluate, patients, readReport } from './support/measures.js';
import { startTestServer } from './support/server.js';
import type { TestServer } from './support/server.js';
import { backendToken, createUser, registerPublicClient, userToken } from './support/tokens.js';
import type { IssuedToken } from './support/tokens.js';

let server: TestServer;
const practice = new PracticeBuilder();
const PERIOD = { periodStart: '2014-04-01', periodEnd: '2014-06-30' };
const IN_PERIOD = '2014-05-15T14:00:00Z';
const SIGNATURE_URL = `${REPORT_EXTENSION}#signature`;

// Dr Rachel Reyes (NPI 1234567893) of Riverside Family Practice (TIN 12-3456789) saw 8 patients
// in the second quarter of 2014, one of them twice; 3 wrote to her, 2 viewed their record,
// 4 had access within 4 business days (all on the day after the visit), 1 was given education
// and the first visit of the patient seen twice got a clinical summary the same day.
const ep = practice.add({
  resourceType: 'Practitioner',
  id: 'rp-ep',
  name: [{ prefix: ['Dr'], given: ['Rachel'], family: 'Reyes' }],
  identifier: [{ system: NPI_SYSTEM, value: '1234567893' }],
});
const clinic = practice.organization('rp-clinic', undefined, '12-3456789');
const cohort = patients(practice, 'rp-p', 8);
practice.visits('rp-e', cohort, ep, '2014-04-08T15:00:00Z'); // Tuesday: access is due Monday 2014-04-14
const secondVisit = practice.encounter({ id: 'rp-e-second', patient: cohort[0], with: [ep], start: '2014-05-06T15:00:00Z' });
cohort.slice(0, 3).forEach((p, i) => practice.message({ id: `rp-m-${i}`, patient: p, from: p, to: [ep], sent: IN_PERIOD }));
cohort.slice(0, 2).forEach((p, i) => practice.portalEvent(`rp-view-${i}`, 'view', p, p, IN_PERIOD));
cohort.slice(0, 4).forEach((p, i) => practice.portalEvent(`rp-access-${i}`, 'access-granted', p, p, '2014-04-09T10:00:00Z'));
practice.message({ id: 'rp-education', patient: cohort[0], from: ep, to: [cohort[0]], sent: IN_PERIOD, category: 'education' });
practice.message({ id: 'rp-summary', patient: cohort[0], from: ep, to: [cohort[0]], sent: '2014-04-08T17:00:00Z', category: 'clinical-summary', encounter: 'Encounter/rp-e-0' });

// People who may or may not run reports.
const PASSWORD = 'correct horse battery staple';
const patientUser = cohort[0];
const practitionerUser = practice.practitioner('rp-colleague');
const auditorUser = practice.practitioner('rp-auditor');
const adminUser = practice.practitioner('rp-admin');
let patientToken: IssuedToken;
let practitionerToken: IssuedToken;
let auditorToken: IssuedToken;
let adminToken: IssuedToken;

beforeAll(async () => {
  server = await startTestServer();
  await practice.load(server);
  const users: [string, string, string[]][] = [
    ['rp-patient', patientUser, []],
    ['rp-colleague', practitionerUser, []],
    ['rp-auditor', auditorUser, ['auditor']],
    ['rp-admin', adminUser, ['admin']],
  ];
  for (const [username, fhirUser, roles] of users) {
    await createUser(server, { username, fhirUser, password: PASSWORD, roles });
  }
  const clientId = await registerPublicClient(server);
  const token = (username: string, scope: string) => userToken(server, { username, password: PASSWORD, scope, clientId });
  patientToken = await token('rp-patient', 'openid fhirUser launch/patient patient/*.cruds');
  practitionerToken = await token('rp-colleague', 'openid fhirUser user/*.cruds');
  auditorToken = await token('rp-auditor', 'openid fhirUser user/*.rs');
  adminToken = await token('rp-admin', 'openid fhirUser user/*.cruds');
});
afterAll(async () => {
  await server?.stop({ dropDatabase: true });
});

const attestation = (agent: typeof server.request, query: Record<string, string>, accept?: string) => {
  const req = agent.get('/fhir/Measure/$attestation').query({ year: '2014', ...PERIOD, practitioner: ep, ...query });
  return accept ? req.set('accept', accept) : req;
};

describe('what the report carries', () => {
  it('names the EP, identifiers, practice, system, program year, period, measure text, threshold, policies and time', async () => {
    const before = Date.now();
    const report = await evaluate(server.request, 'secure-messaging-2014', { ...PERIOD, practitioner: ep, organization: clinic });
    const r = report.report;
    expect(r.subject?.reference).toBe(ep);
    expect(report.extension('subject-name')).toBe('Dr Rachel Reyes');
    expect(report.extension('npi')).toBe('1234567893');
    expect(report.extension('tin')).toBe('12-3456789');
    expect(report.extension('software')).toMatch(/^CareThread \d+\.\d+\.\d+/);
    expect(report.extension('program-year')).toBe('2014');
    expect(r.period).toEqual({ start: '2014-04-01', end: '2014-06-30' });
    expect(r.measure).toBe('https://carethread.dev/fhir/Measure/secure-messaging-2014');
    expect(report.extension('measure-text')).toMatch(/Denominator: Unique patients seen by the EP/);
    expect(report.extension('threshold')).toBe('more than 5%');
    expect(report.policies.length).toBeGreaterThanOrEqual(5);
    expect(Date.parse(r.date!)).toBeGreaterThanOrEqual(before - 1000);
    // 3 of 8 patients wrote to the EP: 37.50%, and the score as a decimal fraction.
    expect([report.numerator, report.denominator, report.percentage, report.met]).toEqual([3, 8, '37.50%', 'met']);
    expect(r.group![0].measureScore!.value).toBeCloseTo(0.375, 6);
  });

  it('the Measure resource states the definition and threshold', async () => {
    const res = await server.request.get('/fhir/Measure/vdt-access-stage3');
    expect(res.status).toBe(200);
    expect(res.body.description).toMatch(/4 business days/);
    expect(res.body.description).toMatch(/more than 80%/);
  });

  it('drill-down: subject-list reports reference contained Lists of exactly the patients (or visits) behind each population', async () => {
    const report = await evaluate(server.request, 'vdt-use-2014', { ...PERIOD, practitioner: ep, reportType: 'subject-list' });
    expect(report.report.type).toBe('subject-list');
    expect(report.list('initial-population')).toEqual([...cohort].sort());
    expect(report.list('numerator')).toEqual(cohort.slice(0, 2).sort());
    const summaries = await evaluate(server.request, 'clinical-summary-2014', { ...PERIOD, practitioner: ep, reportType: 'subject-list' });
    // 9 visits (8 first visits and the second one); the summary covers rp-e-0 only.
    expect(summaries.list('initial-population')).toEqual([...cohort.map((_, i) => `Encounter/rp-e-${i}`), secondVisit].sort());
    expect(summaries.list('numerator')).toEqual(['Encounter/rp-e-0']);
    // A summary report carries no lists.
    const summary = await evaluate(server.request, 'vdt-use-2014', { ...PERIOD, practitioner: ep });
    expect(summary.report.contained).toBeUndefined();
  });

  it('runs as POST with a Parameters body', async () => {
    const body: Parameters = {
      resourceType: 'Parameters',
      parameter: [
        { name: 'periodStart', valueDate: PERIOD.periodStart },
        { name: 'periodEnd', valueDate: PERIOD.periodEnd },
        { name: 'practitioner', valueString: ep },
      ],
    };
    const res = await server.request.post('/fhir/Measure/education-2014/$evaluate-measure').set('content-type', FHIR_JSON).send(JSON.stringify(body));
    expect(res.status).toBe(200);
    // 1 of 8 = 12.50% > 10%.
    const report = readReport(res.body);
    expect([report.numerator, report.denominator, report.percentage, report.met]).toEqual([1, 8, '12.50%', 'met']);
  });

  it('refuses bad input with 4xx', async () => {
    const run = (id: string, query: Record<string, string>) => server.request.get(`/fhir/Measure/${id}/$evaluate-measure`).query(query);
    expect((await run('secure-messaging-2014', { ...PERIOD, practitioner: ep, periodEnd: '2014-03-01' })).status).toBe(400);
    expect((await run('secure-messaging-2014', { ...PERIOD, practitioner: ep, periodStart: 'last spring' })).status).toBe(400);
    expect((await run('secure-messaging-2014', PERIOD)).status).toBe(400);
    expect((await run('secure-messaging-2014', { ...PERIOD, practitioner: ep, reportType: 'everything' })).status).toBe(400);
    expect((await run('secure-messaging-2013', { ...PERIOD, practitioner: ep })).status).toBe(404);
    expect((await run('secure-messaging-2014', { ...PERIOD, practitioner: 'Practitioner/nobody' })).status).toBe(404);
    expect((await attestation(server.request, { year: '2012' })).status).toBe(400);
  });
});

describe('attestation: a whole program year', () => {
  // The expected rows, from the story above: 8 patients seen, 9 office visits, nobody with two
  // office visits before 2014-04-01 (so no reminder denominator; the EP had no office visits
  // in the 24 months before, so reminders are excluded).
  const EXPECTED: [string, number, number, string, string, string][] = [
    ['secure-messaging-2014', 3, 8, '37.50', 'more than 5%', 'yes'],
    ['vdt-access-2014', 4, 8, '50.00', 'more than 50%', 'no'],
    ['vdt-use-2014', 2, 8, '25.00', 'more than 5%', 'yes'],
    ['reminders-2014', 0, 0, '', 'more than 10%', 'excluded'],
    ['education-2014', 1, 8, '12.50', 'more than 10%', 'yes'],
    ['clinical-summary-2014', 1, 9, '11.11', 'more than 50%', 'no'],
  ];

  it('returns a Bundle of MeasureReports, one per measure of the year', async () => {
    const res = await attestation(server.request, {});
    expect(res.status).toBe(200);
    const reports = ((res.body as Bundle).entry ?? []).map((e) => readReport(e.resource as MeasureReport));
    const rows = reports.map((r) => [r.report.measure.split('/').pop(), r.numerator, r.denominator]);
    expect(rows).toEqual(EXPECTED.map(([m, num, den]) => [m, num, den]));
  });

  for (const [how, query, accept] of [
    ['_format=csv', { _format: 'csv' }, undefined],
    ['Accept: text/csv', {}, 'text/csv'],
  ] as const) {
    it(`answers CSV with ${how}: one row per measure, percentages to 2 decimals`, async () => {
      const res = await attestation(server.request, query, accept);
      expect(res.status).toBe(200);
      expect(res.headers['content-type']).toMatch(/^text\/csv/);
      const [header, ...rows] = res.text.trim().split(/\r?\n/);
      expect(header).toBe('measure,program_year,name,npi,period_start,period_end,numerator,denominator,percentage,threshold,met,exclusion');
      expect(rows).toHaveLength(EXPECTED.length);
      rows.forEach((line, i) => {
        const [measure, num, den, pct, threshold, met] = EXPECTED[i];
        const cells = line.split(',');
        expect(cells.slice(0, 11), measure).toEqual([measure, '2014', 'Dr Rachel Reyes', '1234567893', '2014-04-01', '2014-06-30', String(num), String(den), pct, threshold, met]);
        expect(cells[8]).toMatch(/^(\d+\.\d{2})?$/);
      });
      expect(rows[3]).toMatch(/,excluded,derived: no office visits with the EP in the 24 months before the reporting period$/);
    });
  }

  it('regenerated over the same data, gives the same report (all but its generation time)', async () => {
    const params = { ...PERIOD, practitioner: ep, organization: clinic, reportType: 'subject-list' };
    for (const measure of ['secure-messaging-2014', 'vdt-access-2014', 'clinical-summary-2014']) {
      const first = (await evaluate(server.request, measure, params)).report;
      const second = (await evaluate(server.request, measure, params)).report;
      expect({ ...second, date: undefined }, measure).toEqual({ ...first, date: undefined });
    }
    const csv1 = await attestation(server.request, { _format: 'csv' });
    const csv2 = await attestation(server.request, { _format: 'csv' });
    expect(csv2.text).toBe(csv1.text);
  });
});

describe('signed reports', () => {
  const signed = async (extra: Record<string, string> = {}) => {
    const res = await server.request
      .get('/fhir/Measure/secure-messaging-2014/$evaluate-measure')
      .query({ ...PERIOD, practitioner: ep, organization: clinic, sign: 'true', ...extra });
    expect(res.status).toBe(200);
    return res.body as MeasureReport;
  };
  const verifyOnServer = async (agent: typeof server.request, report: MeasureReport) => {
    const res = await agent.post('/fhir/MeasureReport/$verify').set('content-type', FHIR_JSON).send(JSON.stringify(report));
    expect(res.status).toBe(200);
    return (res.body as Parameters).parameter!.find((p) => p.name === 'valid')!.valueBoolean;
  };
  /** What an outside auditor does: check the JWS against the published keys, then that it covers this report. */
  const verifyWithJose = async (report: MeasureReport): Promise<boolean> => {
    const jwks = (await server.anonymous.get('/auth/report-keys')).body as JSONWebKeySet;
    const jws = report.extension!.find((e) => e.url === SIGNATURE_URL)!.valueString!;
    try {
      const { payload } = await compactVerify(jws, createLocalJWKSet(jwks));
      const { id: _id, meta: _meta, ...content } = report;
      const unsigned = { ...content, extension: content.extension!.filter((e) => e.url !== SIGNATURE_URL) };
      return JSON.stringify(sortKeys(JSON.parse(new TextDecoder().decode(payload)))) === JSON.stringify(sortKeys(unsigned));
    } catch {
      return false;
    }
  };

  it('verifies through MeasureReport/$verify and with jose against /auth/report-keys', async () => {
    const report = await signed();
    const jws = report.extension!.find((e) => e.url === SIGNATURE_URL)!.valueString!;
    expect(decodeProtectedHeader(jws).alg).toBe('RS256');
    expect(await verifyOnServer(server.request, report)).toBe(true);
    expect(await verifyOnServer(auditorToken.request, report)).toBe(true);
    expect(await verifyWithJose(report)).toBe(true);
  });

  it('fails after any change to the report', async () => {
    const report = await signed();
    const changes: ((r: MeasureReport) => void)[] = [
      (r) => (r.group![0].population!.find((p) => p.code!.coding![0].code === 'numerator')!.count = 4),
      (r) => (r.period.end = '2014-09-30'),
      (r) => (r.extension!.find((e) => e.url === `${REPORT_EXTENSION}#met`)!.valueString = 'not met'),
      (r) => (r.extension!.find((e) => e.url === `${REPORT_EXTENSION}#npi`)!.valueString = '1234567890'),
      (r) => r.extension!.push({ url: `${REPORT_EXTENSION}#exclusion`, valueString: 'attested: broadband' }),
      (r) => (r.subject = { reference: 'Practitioner/rp-colleague' }),
    ];
    for (const change of changes) {
      const tampered = structuredClone(report);
      change(tampered);
      expect(await verifyOnServer(server.request, tampered), change.toString()).toBe(false);
      expect(await verifyWithJose(tampered), change.toString()).toBe(false);
    }
    // A signature swapped in from another report fails too.
    const other = await signed({ periodEnd: '2014-05-31' });
    const swapped = structuredClone(report);
    swapped.extension!.find((e) => e.url === SIGNATURE_URL)!.valueString = other.extension!.find((e) => e.url === SIGNATURE_URL)!.valueString;
    expect(await verifyOnServer(server.request, swapped)).toBe(false);
    // An unsigned report is not valid.
    const unsigned = { ...report, extension: report.extension!.filter((e) => e.url !== SIGNATURE_URL) };
    expect(await verifyOnServer(server.request, unsigned)).toBe(false);
  });

  it('a saved signed report verifies as stored, and after the server rotates its key', async () => {
    const saved = await signed({ save: 'true' });
    expect(saved.id).toBeTruthy();
    const stored = (await server.request.get(`/fhir/MeasureReport/${saved.id}`)).body as MeasureReport;
    expect(await verifyOnServer(server.request, stored)).toBe(true);
    expect(await verifyWithJose(stored)).toBe(true);
    await server.app.auth.keys.rotate();
    expect(await verifyOnServer(server.request, stored)).toBe(true);
    expect(await verifyWithJose(stored)).toBe(true);
  });
});

describe('who may run reports', () => {
  const runAs = (agent: typeof server.request, query: Record<string, string> = {}) =>
    agent.get('/fhir/Measure/secure-messaging-2014/$evaluate-measure').query({ ...PERIOD, practitioner: ep, ...query });

  it('refuses patients, practitioners and plain backend clients with 403', async () => {
    const backend = await backendToken(server, { registeredScope: 'system/*.rs' });
    for (const [who, token] of [
      ['patient', patientToken],
      ['practitioner', practitionerToken],
      ['backend client', backend],
    ] as const) {
      expect((await runAs(token.request)).status, who).toBe(403);
      expect((await attestation(token.request, {})).status, who).toBe(403);
      expect((await token.request.post('/fhir/MeasureReport/$verify').set('content-type', FHIR_JSON).send('{"resourceType":"MeasureReport"}')).status, who).toBe(403);
    }
  });

  it('lets an auditor and an administrator run them, with the same numbers', async () => {
    for (const token of [auditorToken, adminToken]) {
      const res = await runAs(token.request);
      expect(res.status).toBe(200);
      const report = readReport(res.body);
      expect([report.numerator, report.denominator]).toEqual([3, 8]);
    }
    expect((await attestation(auditorToken.request, { _format: 'csv' })).status).toBe(200);
  });

  it('audits every run: who, which measure, which period', async () => {
    expect((await runAs(auditorToken.request, { periodStart: '2014-04-02' })).status).toBe(200);
    let events: AuditEvent[] = [];
    for (let attempt = 0; attempt < 50 && !events.length; attempt++) {
      await new Promise((resolve) => setTimeout(resolve, 100));
      const res = await server.request.get('/fhir/AuditEvent').query({ entity: 'Measure/secure-messaging-2014', _count: '100' });
      events = ((res.body as Bundle).entry ?? [])
        .map((e) => e.resource as AuditEvent)
        .filter((e) => e.outcomeDesc?.includes('2014-04-02..2014-06-30'));
    }
    expect(events).toHaveLength(1);
    expect(events[0].agent?.[0]?.who?.reference).toBe(auditorUser);
    expect(events[0].outcomeDesc).toBe('$evaluate-measure 2014-04-02..2014-06-30');
    expect(events[0].outcome).toBe('0');
  });
});

describe('strict thresholds, compared in integers (pure)', () => {
  it('5.00% is not more than 5%; 5.01% is; 50.00% is not more than 50%; 50.01% is', () => {
    const fivePercent = { kind: 'percent', percent: 5 } as const;
    const half = { kind: 'percent', percent: 50 } as const;
    // 1/20 = 0.05 exactly; 21/419 = 0.050119… shows as 5.01%.
    expect([meets(fivePercent, 1, 20), percent(1, 20)]).toEqual([false, '5.00']);
    expect([meets(fivePercent, 21, 419), percent(21, 419)]).toEqual([true, '5.01']);
    expect([meets(half, 5000, 10000), percent(5000, 10000)]).toEqual([false, '50.00']);
    expect([meets(half, 5001, 10000), percent(5001, 10000)]).toEqual([true, '50.01']);
    // 7/140 = 0.05 also in floating point; integers make it exact either way.
    expect(meets(fivePercent, 7, 140)).toBe(false);
    // 2/3 = 66.666…% rounds half up to 66.67; 1/8 = 12.5% exactly.
    expect([percent(2, 3), percent(1, 8)]).toEqual(['66.67', '12.50']);
  });
});

function sortKeys(value: unknown): unknown {
  if (Array.isArray(value)) {
    return value.map(sortKeys);
  }
  if (value && typeof value === 'object') {
    return Object.fromEntries(
      Object.entries(value as Record<string, unknown>)
        .filter(([, v]) => v !== undefined)
        .sort(([a], [b]) => (a < b ? -1 : 1))
        .map(([k, v]) => [k, sortKeys(v)])
    );
  }
  return value;
}
