/**
 * `npm run report` and `npm run verify-report`, run as the separate processes a practice
 * runs (npx tsx scripts/…) over a real server's database: the command line gives the same
 * numbers and CSV as the API, signs with the server's key, audits its runs as CareThread's
 * system context, and its signatures verify offline, from the published key URL and through
 * `MeasureReport/$verify`, while a changed report or a foreign key fails.
 *
 * PGlite is single-process, so the server is stopped while the command line uses its data
 * directory, then started again over the same database (PostgreSQL runs the same way).
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { exportJWK, generateKeyPair } from 'jose';
import type { Bundle, MeasureReport, Parameters, Resource } from '@medplum/fhirtypes';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestServer } from './support/server.js';
import type { TestServer } from './support/server.js';
import type { TestDatabase } from './support/database.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const FHIR_JSON = 'application/fhir+json';
const SIGNATURE = 'https://carethread.dev/fhir/StructureDefinition/measure-report#signature';
const REPORT_EXTENSION = 'https://carethread.dev/fhir/StructureDefinition/measure-report';
const PORTAL = 'https://carethread.dev/fhir/CodeSystem/portal-event';
const CLI_TIMEOUT = 240_000;
const PERIOD = { start: '2014-01-01', end: '2014-03-31' };
const EP = 'Practitioner/cli-ep';
const PRACTICE = 'Organization/cli-practice';

let server: TestServer | undefined;
let database: TestDatabase;
let dir: string;
let keysFile: string;
let apiBundle: Bundle;
let apiCsv: string;

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a script the way a practice does, over the test database, and waits for it. */
function run(script: string, args: string[]): Promise<Run> {
  // A clean environment, as a shell gives it: the test runner's own variables (its BASE_URL) stay out.
  const env: NodeJS.ProcessEnv = { PATH: process.env.PATH, HOME: process.env.HOME, DATA_DIR: database.dataDir, LOG_LEVEL: 'warn' };
  if (database.databaseUrl) {
    env.DATABASE_URL = database.databaseUrl;
  }
  return new Promise((resolve) => {
    execFile('npx', ['tsx', `scripts/${script}.ts`, ...args], { cwd: ROOT, env, timeout: CLI_TIMEOUT - 10_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : -1) : 0, stdout, stderr });
    });
  });
}

const report = (...args: string[]) => run('report', ['--practitioner', EP, '--organization', PRACTICE, '--start', PERIOD.start, '--end', PERIOD.end, ...args]);
const readJson = <T>(file: string): T => JSON.parse(fs.readFileSync(file, 'utf8')) as T;
const populations = (r: MeasureReport) => r.group?.[0]?.population?.map((p) => [p.code?.coding?.[0]?.code, p.count]);
const ext = (r: MeasureReport, name: string) => r.extension?.find((e) => e.url === `${REPORT_EXTENSION}#${name}`)?.valueString;
/** A report without what differs from one run to the next: when it was made, and its signature. */
const stable = (r: MeasureReport) => ({ ...r, date: undefined, extension: r.extension?.filter((e) => e.url !== SIGNATURE) });

/**
 * Three patients seen by the EP in 2014 Q1 (a fourth only by a colleague). Patient a sent the
 * EP a message and got online access the next day; b viewed their record.
 */
function practice(): Resource[] {
  const visit = (id: string, patient: string, who: string, start: string): Resource => ({
    resourceType: 'Encounter',
    id,
    status: 'finished',
    class: { system: 'http://terminology.hl7.org/CodeSystem/v3-ActCode', code: 'AMB' },
    subject: { reference: patient },
    participant: [{ individual: { reference: who } }],
    period: { start, end: new Date(Date.parse(start) + 30 * 60_000).toISOString() },
  });
  const portal = (id: string, code: string, patient: string, recorded: string): Resource => ({
    resourceType: 'AuditEvent',
    id,
    type: { system: 'http://dicom.nema.org/resources/ontology/DCM', code: '110110' },
    subtype: [{ system: PORTAL, code }],
    action: 'R',
    recorded,
    outcome: '0',
    agent: [{ who: { reference: patient }, requestor: true }],
    source: { observer: { display: 'portal' } },
    entity: [{ what: { reference: patient } }],
  });
  return [
    { resourceType: 'Organization', id: 'cli-practice', name: 'Riverside Family Practice', identifier: [{ system: 'urn:oid:2.16.840.1.113883.4.4', value: '12-3456789' }] },
    { resourceType: 'Practitioner', id: 'cli-ep', name: [{ given: ['Ada'], family: 'Reyes' }], identifier: [{ system: 'http://hl7.org/fhir/sid/us-npi', value: '1234567893' }] },
    { resourceType: 'Practitioner', id: 'cli-colleague', name: [{ family: 'Cole' }] },
    ...['a', 'b', 'c', 'd'].map((x): Resource => ({ resourceType: 'Patient', id: `cli-${x}`, name: [{ family: `Patient ${x}` }] })),
    visit('cli-e-a', 'Patient/cli-a', EP, '2014-01-14T15:00:00Z'),
    visit('cli-e-b', 'Patient/cli-b', EP, '2014-02-11T15:00:00Z'),
    visit('cli-e-c', 'Patient/cli-c', EP, '2014-03-04T15:00:00Z'),
    visit('cli-e-d', 'Patient/cli-d', 'Practitioner/cli-colleague', '2014-03-05T15:00:00Z'),
    {
      resourceType: 'Communication',
      id: 'cli-m-a',
      status: 'completed',
      subject: { reference: 'Patient/cli-a' },
      sender: { reference: 'Patient/cli-a' },
      recipient: [{ reference: EP }],
      sent: '2014-01-20T10:00:00Z',
      payload: [{ contentString: 'A question' }],
    },
    portal('cli-p-a', 'access-granted', 'Patient/cli-a', '2014-01-15T09:00:00Z'),
    portal('cli-p-b', 'view', 'Patient/cli-b', '2014-02-20T09:00:00Z'),
  ];
}

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'carethread-report-cli-'));
  server = await startTestServer();
  database = server.database;
  const bundle: Bundle = {
    resourceType: 'Bundle',
    type: 'transaction',
    entry: practice().map((resource) => ({ resource, request: { method: 'PUT', url: `${resource.resourceType}/${resource.id}` } })),
  };
  const loaded = await server.request.post('/fhir').set('content-type', FHIR_JSON).send(JSON.stringify(bundle));
  expect(loaded.status, JSON.stringify(loaded.body).slice(0, 1000)).toBe(200);
  // What the API says, to hold the command line to.
  const query = { year: '2014', practitioner: EP, organization: PRACTICE, periodStart: PERIOD.start, periodEnd: PERIOD.end };
  const json = await server.request.get('/fhir/Measure/$attestation').query(query);
  expect(json.status).toBe(200);
  apiBundle = json.body as Bundle;
  const csv = await server.request.get('/fhir/Measure/$attestation').query({ ...query, _format: 'csv' });
  expect(csv.status).toBe(200);
  apiCsv = csv.text;
  // An auditor keeps the published keys to verify reports offline later.
  const keys = await server.anonymous.get('/auth/report-keys');
  expect(keys.status).toBe(200);
  keysFile = path.join(dir, 'report-keys.json');
  fs.writeFileSync(keysFile, JSON.stringify(keys.body));
  await server.stop();
  server = undefined;
}, 120_000);

afterAll(async () => {
  if (server) {
    await server.stop({ dropDatabase: true });
  } else {
    await database?.drop();
  }
  fs.rmSync(dir, { recursive: true, force: true });
});

describe('npm run report', () => {
  it(
    'writes the whole attestation as signed reports and CSV, with the numbers and CSV the API gives, and prints a table',
    async () => {
      const out = path.join(dir, 'q1');
      const result = await report('--year', '2014', '--out', out);
      expect(result.code, result.stderr).toBe(0);
      const bundle = readJson<Bundle>(`${out}.json`);
      expect(bundle.resourceType).toBe('Bundle');
      const reports = (bundle.entry ?? []).map((e) => e.resource as MeasureReport);
      const apiReports = (apiBundle.entry ?? []).map((e) => e.resource as MeasureReport);
      expect(reports.map((r) => r.measure)).toEqual(apiReports.map((r) => r.measure));
      expect(reports).toHaveLength(6);
      for (const [i, r] of reports.entries()) {
        expect(r.extension?.find((e) => e.url === SIGNATURE)?.valueString, r.measure).toMatch(/^[\w-]+\.[\w-]+\.[\w-]+$/);
        expect(stable(r), r.measure).toEqual(stable(apiReports[i]));
      }
      // The worked numbers: 3 patients seen; a sent a message and had access in time; b viewed.
      const byMeasure = new Map(reports.map((r) => [r.measure.split('/').pop(), r]));
      expect(populations(byMeasure.get('secure-messaging-2014')!)).toEqual([
        ['initial-population', 3],
        ['denominator', 3],
        ['denominator-exclusion', 0],
        ['numerator', 1],
      ]);
      expect(ext(byMeasure.get('vdt-use-2014')!, 'percentage')).toBe('33.33%');
      expect(ext(byMeasure.get('vdt-use-2014')!, 'npi')).toBe('1234567893');
      expect(ext(byMeasure.get('vdt-use-2014')!, 'tin')).toBe('12-3456789');
      // The CSV carries no generation time: byte for byte the API's.
      expect(fs.readFileSync(`${out}.csv`, 'utf8')).toBe(apiCsv);
      expect(apiCsv).toContain('secure-messaging-2014,2014,Ada Reyes,1234567893,2014-01-01,2014-03-31,1,3,33.33,more than 5%,yes,');
      // The table names every measure with its result.
      expect(result.stdout).toMatch(/Program year 2014 for Practitioner\/cli-ep \(Ada Reyes, NPI 1234567893, TIN 12-3456789\), 2014-01-01\.\.2014-03-31/);
      expect(result.stdout).toMatch(/secure-messaging-2014\s+1\s+3\s+33\.33%\s+more than 5%\s+met/);
      expect(result.stdout).toMatch(/vdt-access-2014\s+1\s+3\s+33\.33%\s+more than 50%\s+not met/);
      expect(result.stdout).toMatch(/clinical-summary-2014\s+0\s+3\s+0\.00%/);
      expect(result.stdout).toContain(`Wrote ${path.relative(ROOT, `${out}.json`)}`);
    },
    CLI_TIMEOUT
  );

  it(
    'writes one measure with its patient lists and an attested exclusion',
    async () => {
      const out = path.join(dir, 'sm');
      const result = await report('--measure', 'secure-messaging-2014', '--subject-list', '--exclusion', 'broadband: 50% of encounters in a county without 3 Mbps', '--out', out);
      expect(result.code, result.stderr).toBe(0);
      const r = readJson<MeasureReport>(`${out}.json`);
      expect(r.resourceType).toBe('MeasureReport');
      expect(r.type).toBe('subject-list');
      const lists = new Map((r.contained ?? []).map((c) => [c.id, (c as { entry?: { item: { reference?: string } }[] }).entry?.map((e) => e.item.reference)]));
      expect(lists.get('initial-population-list')).toEqual(['Patient/cli-a', 'Patient/cli-b', 'Patient/cli-c']);
      expect(lists.get('numerator-list')).toEqual(['Patient/cli-a']);
      expect(ext(r, 'met')).toBe('excluded');
      expect(ext(r, 'exclusion')).toBe('attested: broadband: 50% of encounters in a county without 3 Mbps');
      const csv = fs.readFileSync(`${out}.csv`, 'utf8').trim().split('\r\n');
      expect(csv).toHaveLength(2);
      expect(csv[1]).toMatch(/^secure-messaging-2014,.*,excluded,attested: broadband: 50% of encounters in a county without 3 Mbps$/);
      expect(result.stdout).toMatch(/secure-messaging-2014\s+1\s+3\s+33\.33%\s+more than 5%\s+excluded/);
    },
    CLI_TIMEOUT
  );

  it(
    'refuses bad input with a message that names it',
    async () => {
      const bad = await report('--measure', 'secure-messaging-2014', '--end', '2013-12-31');
      expect(bad.code).toBe(1);
      expect(bad.stderr).toContain('periodEnd must not be before periodStart');
      const unknown = await run('report', ['--measure', 'nothing-2014', '--practitioner', EP, '--start', PERIOD.start, '--end', PERIOD.end]);
      expect(unknown.code).toBe(1);
      expect(unknown.stderr).toContain('No measure nothing-2014');
      const usage = await run('report', ['--practitioner', EP]);
      expect(usage.code).toBe(2);
      expect(usage.stderr).toContain('Give either --measure <id> or --year <program year>');
    },
    CLI_TIMEOUT
  );
});

describe('npm run verify-report', () => {
  it(
    'accepts a signed report and each report of a signed attestation, offline, with the saved keys',
    async () => {
      const single = await run('verify-report', [path.join(dir, 'sm.json'), '--keys', keysFile]);
      expect(single.code, single.stdout + single.stderr).toBe(0);
      expect(single.stdout).toMatch(/^valid\s+secure-messaging-2014 Practitioner\/cli-ep 2014-01-01\.\.2014-03-31 \(signed with key [\w-]+\)$/m);
      const bundle = await run('verify-report', [path.join(dir, 'q1.json'), '--keys', keysFile]);
      expect(bundle.code, bundle.stdout + bundle.stderr).toBe(0);
      expect(bundle.stdout.match(/^valid /gm)).toHaveLength(6);
      expect(bundle.stdout).toContain('6 report(s) valid');
      // Without --keys: the public keys of the database the environment names.
      const local = await run('verify-report', [path.join(dir, 'sm.json')]);
      expect(local.code, local.stdout + local.stderr).toBe(0);
    },
    CLI_TIMEOUT
  );

  it(
    'rejects a report changed after signing, a Bundle with one changed report, and a key that did not sign it',
    async () => {
      const original = readJson<MeasureReport>(path.join(dir, 'sm.json'));
      const tampered = structuredClone(original);
      tampered.group![0].population!.find((p) => p.code?.coding?.[0]?.code === 'numerator')!.count = 3;
      fs.writeFileSync(path.join(dir, 'tampered.json'), JSON.stringify(tampered));
      const changed = await run('verify-report', [path.join(dir, 'tampered.json'), '--keys', keysFile]);
      expect(changed.code).toBe(1);
      expect(changed.stdout).toMatch(/^invalid\s+secure-messaging-2014 .*: the report was changed after it was signed$/m);

      const bundle = readJson<Bundle>(path.join(dir, 'q1.json'));
      (bundle.entry![2].resource as MeasureReport).period.end = '2014-06-30';
      fs.writeFileSync(path.join(dir, 'tampered-bundle.json'), JSON.stringify(bundle));
      const one = await run('verify-report', [path.join(dir, 'tampered-bundle.json'), '--keys', keysFile]);
      expect(one.code).toBe(1);
      expect(one.stdout.match(/^valid /gm)).toHaveLength(5);
      expect(one.stdout.match(/^invalid .*changed after it was signed$/gm)).toHaveLength(1);
      expect(one.stdout).toContain('1 of 6 report(s) NOT valid');

      const { publicKey } = await generateKeyPair('RS256', { extractable: true });
      const foreign = path.join(dir, 'foreign-keys.json');
      fs.writeFileSync(foreign, JSON.stringify({ keys: [{ ...(await exportJWK(publicKey)), kid: 'someone-else', alg: 'RS256' }] }));
      const wrongKey = await run('verify-report', [path.join(dir, 'sm.json'), '--keys', foreign]);
      expect(wrongKey.code).toBe(1);
      expect(wrongKey.stdout).toMatch(/^invalid .*the signature does not verify/m);

      const unsigned = path.join(dir, 'unsigned.json');
      fs.writeFileSync(unsigned, JSON.stringify({ ...original, extension: original.extension?.filter((e) => e.url !== SIGNATURE) }));
      const none = await run('verify-report', [unsigned, '--keys', keysFile]);
      expect(none.code).toBe(1);
      expect(none.stdout).toContain('the report carries no signature');
    },
    CLI_TIMEOUT
  );

  it(
    'verifies against the running server: its published key URL and MeasureReport/$verify; the runs are in its audit trail',
    async () => {
      server = await startTestServer({ database });
      const fromUrl = await run('verify-report', [path.join(dir, 'q1.json'), '--keys', `${server.baseUrl}/auth/report-keys`]);
      expect(fromUrl.code, fromUrl.stdout + fromUrl.stderr).toBe(0);
      expect(fromUrl.stdout).toContain(`from ${server.baseUrl}/auth/report-keys`);
      const tamperedFromUrl = await run('verify-report', [path.join(dir, 'tampered.json'), '--keys', `${server.baseUrl}/auth/report-keys`]);
      expect(tamperedFromUrl.code).toBe(1);

      const verify = async (file: string) => {
        const res = await server!.request.post('/fhir/MeasureReport/$verify').set('content-type', FHIR_JSON).send(fs.readFileSync(path.join(dir, file), 'utf8'));
        expect(res.status).toBe(200);
        return (res.body as Parameters).parameter?.find((p) => p.name === 'valid')?.valueBoolean;
      };
      expect(await verify('sm.json')).toBe(true);
      expect(await verify('tampered.json')).toBe(false);

      // Each run was audited as CareThread itself, failures included.
      const audit = await server.request.get('/fhir/AuditEvent').query({ entity: 'Measure/secure-messaging-2014', _count: '50' });
      expect(audit.status).toBe(200);
      const events = ((audit.body as Bundle).entry ?? []).map((e) => e.resource as { outcome?: string; outcomeDesc?: string; agent?: { who?: { display?: string } }[] });
      const cli = events.filter((e) => e.outcomeDesc?.includes('(npm run report)'));
      expect(cli.map((e) => e.outcome).sort()).toEqual(['0', '4']);
      expect(cli.every((e) => e.agent?.[0]?.who?.display === 'carethread')).toBe(true);
      const attestations = await server.request.get('/fhir/AuditEvent').query({ subtype: 'http://hl7.org/fhir/restful-interaction|operation', _count: '200' });
      expect(attestations.status).toBe(200);
      expect(JSON.stringify(attestations.body)).toContain('$attestation 2014 2014-01-01..2014-03-31 (npm run report)');
    },
    CLI_TIMEOUT
  );
});
