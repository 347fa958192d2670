/**
 * The patient record operations through the real HTTP API with real user tokens: view
 * ($health-record), download ($download, PDF and JSON), transmit ($transmit, delivered by
 * a real SMTP server) and the activity history ($activity). Checked: each records the
 * portal event the VDT measures count, as the person who acted; one patient never reaches
 * another's record; a representative's copy leaves out confidential messages; bad input is
 * a 4xx with nothing recorded.
 */
import type { AuditEvent, Bundle, Communication, Parameters } from '@medplum/fhirtypes';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { adminCreate, adminSearch, FHIR_JSON, header, message, post, seedPractice } from './support/messaging.js';
import type { Practice } from './support/messaging.js';
import { attachment, startMailbox } from './support/mailbox.js';
import type { Mailbox } from './support/mailbox.js';
import { startTestServer } from './support/server.js';
import type { TestServer } from './support/server.js';

const PORTAL = 'https://carethread.dev/fhir/CodeSystem/portal-event';
const CONFIDENTIAL = { system: 'http://terminology.hl7.org/CodeSystem/v3-Confidentiality', code: 'R' };

let server: TestServer;
let mailbox: Mailbox | undefined;
let p: Practice;
let secretText: string;
let openText: string;

async function portalEvents(code: string, who?: string): Promise<AuditEvent[]> {
  const events = await adminSearch<AuditEvent>(server, `AuditEvent?subtype=${encodeURIComponent(`${PORTAL}|${code}`)}&entity=${p.patient}&_count=100`);
  return who ? events.filter((e) => e.agent?.some((a) => a.who?.reference === who)) : events;
}

async function eventCounts(): Promise<Record<string, number>> {
  const counts: Record<string, number> = {};
  for (const code of ['view', 'download', 'transmit']) {
    counts[code] = (await portalEvents(code)).length;
  }
  const outbox = await server.app.db.query<{ n: string | number }>(`SELECT count(*) AS n FROM outbox WHERE kind = 'record-transmit'`);
  counts.outbox = Number(outbox[0].n);
  return counts;
}

beforeAll(async () => {
  mailbox = await startMailbox();
  const smtpPort = mailbox.port;
  server = await startTestServer({ env: { SMTP_URL: `smtp://127.0.0.1:${smtpPort}`, MAIL_FROM: 'CareThread <records@carethread.test>', OUTBOX_POLL_MS: '100' } });
  p = await seedPractice(server);
  // An open thread and a confidential one (hidden from the representative).
  const open = await post(p.alice.request, header(p.patient, [p.doctor], 'medical-question', 'Knee pain'));
  openText = 'My knee hurts when I climb stairs – since Tuesday';
  await post(p.alice.request, message(p.patient, `Communication/${open.id}`, openText));
  const secret = await post(p.alice.request, { ...header(p.patient, [p.doctor], 'medical-question', 'Private matter'), meta: { security: [CONFIDENTIAL] } } as Communication);
  secretText = 'Something my mother must not read';
  await post(p.alice.request, message(p.patient, `Communication/${secret.id}`, secretText));
  // A visit today, so the patient is in the VDT measure's denominator for this month.
  const now = new Date();
  await adminCreate(server, { resourceType: 'Encounter', status: 'finished', class: { code: 'AMB' }, subject: { reference: p.patient }, participant: [{ individual: { reference: p.doctor } }], period: { start: new Date(now.getTime() - 3_600_000).toISOString(), end: new Date(now.getTime() - 1_800_000).toISOString() } });
  await adminCreate(server, { resourceType: 'Appointment', status: 'booked', start: '2026-12-20T15:00:00Z', end: '2026-12-20T15:30:00Z', description: 'Follow-up', participant: [{ actor: { reference: p.patient }, status: 'accepted' }] });
});

afterAll(async () => {
  await server?.stop({ dropDatabase: true });
  await mailbox?.stop();
});

describe('view: GET Patient/{id}/$health-record', () => {
  it('gives the patient their whole record and records a view as them', async () => {
    const before = (await portalEvents('view', p.patient)).length;
    const res = await p.alice.request.get(`/fhir/${p.patient}/$health-record`);
    expect(res.status, res.text).toBe(200);
    const bundle = res.body as Bundle;
    expect(bundle.resourceType).toBe('Bundle');
    expect(bundle.type).toBe('collection');
    const types = new Set(bundle.entry!.map((e) => e.resource!.resourceType));
    // With the people it names (the doctor), so it reads with names.
    expect([...types]).toEqual(expect.arrayContaining(['Patient', 'Encounter', 'Communication', 'Appointment', 'Practitioner']));
    expect(JSON.stringify(bundle)).toContain(secretText);
    expect(JSON.stringify(bundle)).not.toContain(p.otherPatient);
    const events = await portalEvents('view', p.patient);
    expect(events.length).toBe(before + 1);
    const event = events[0];
    expect(event.entity?.[0]?.what?.reference).toBe(p.patient);
    expect(event.recorded).toEqual(expect.any(String));
  });

  it('is a 404 for another patient’s record, with nothing recorded', async () => {
    const before = await eventCounts();
    for (const op of ['$health-record', '$download', '$activity']) {
      const res = await p.bob.request.get(`/fhir/${p.patient}/${op}`);
      expect(res.status, op).toBe(404);
      expect(res.body.resourceType).toBe('OperationOutcome');
    }
    const transmit = await p.bob.request.post(`/fhir/${p.patient}/$transmit`).set('content-type', FHIR_JSON).send({ resourceType: 'Parameters', parameter: [{ name: 'to', valueString: 'thief@elsewhere.example.org' }] });
    expect(transmit.status).toBe(404);
    expect(await eventCounts()).toEqual(before);
  });

  it('gives a representative the record without confidential messages, recorded as the representative', async () => {
    const res = await p.rep.request.get(`/fhir/${p.patient}/$health-record`);
    expect(res.status, res.text).toBe(200);
    const text = JSON.stringify(res.body);
    expect(text).toContain(openText);
    expect(text).not.toContain(secretText);
    expect(text).not.toContain('Private matter');
    expect((await portalEvents('view', p.relatedPerson)).length).toBe(1);
  });

  it('lets the care team read the record without recording a portal event (those are the patient side’s)', async () => {
    const before = await eventCounts();
    const res = await p.doctorToken.request.get(`/fhir/${p.patient}/$health-record`);
    expect(res.status, res.text).toBe(200);
    expect(JSON.stringify(res.body)).toContain(openText);
    expect(await eventCounts()).toEqual(before);
  });

  it('refuses unknown parameters and other methods with an OperationOutcome, recording nothing', async () => {
    const before = await eventCounts();
    const unknown = await p.alice.request.get(`/fhir/${p.patient}/$health-record?since=2020`);
    expect(unknown.status).toBe(400);
    expect(unknown.body.resourceType).toBe('OperationOutcome');
    const post = await p.alice.request.post(`/fhir/${p.patient}/$health-record`).set('content-type', FHIR_JSON).send({ resourceType: 'Parameters' });
    expect(post.status).toBe(405);
    const format = await p.alice.request.get(`/fhir/${p.patient}/$download?format=docx`);
    expect(format.status).toBe(400);
    expect(await eventCounts()).toEqual(before);
  });
});

describe('download: GET Patient/{id}/$download', () => {
  it('gives a PDF attachment and records a download as the patient', async () => {
    const before = (await portalEvents('download', p.patient)).length;
    const res = await p.alice.request.get(`/fhir/${p.patient}/$download?format=pdf`).buffer(true).parse((r, done) => {
      const chunks: Buffer[] = [];
      r.on('data', (c: Buffer) => chunks.push(c));
      r.on('end', () => done(null, Buffer.concat(chunks)));
    });
    expect(res.status).toBe(200);
    expect(res.headers['content-type']).toMatch(/^application\/pdf/);
    expect(res.headers['content-disposition']).toMatch(/^attachment; filename="health-record\.pdf"/);
    expect((res.body as Buffer).subarray(0, 5).toString('latin1')).toBe('%PDF-');
    expect((await portalEvents('download', p.patient)).length).toBe(before + 1);
  });

  it('gives the FHIR JSON Bundle as an attachment', async () => {
    const res = await p.alice.request.get(`/fhir/${p.patient}/$download?format=json`);
    expect(res.status).toBe(200);
    expect(res.headers['content-disposition']).toMatch(/filename="health-record\.json"/);
    const bundle = JSON.parse(res.text) as Bundle;
    expect(bundle.type).toBe('collection');
    expect(bundle.entry!.some((e) => e.resource?.resourceType === 'Patient' && `Patient/${e.resource.id}` === p.patient)).toBe(true);
  });
});

describe('transmit: POST Patient/{id}/$transmit', () => {
  const transmit = (agent: Practice['alice']['request'], to: unknown) =>
    agent.post(`/fhir/${p.patient}/$transmit`).set('content-type', FHIR_JSON).send({ resourceType: 'Parameters', parameter: [{ name: 'to', valueString: to }] });

  it('mails the record, PDF and JSON attached, to the address given, and records a transmit as the patient', async () => {
    const res = await transmit(p.alice.request, 'records@specialist.example.org');
    expect(res.status, res.text).toBe(202);
    const event = (res.body as Parameters).parameter?.find((x) => x.name === 'event')?.valueReference?.reference;
    expect(event).toMatch(/^AuditEvent\//);
    const mail = await mailbox!.mailTo('records@specialist.example.org');
    expect(attachment(mail.raw, 'health-record.pdf').subarray(0, 5).toString('latin1')).toBe('%PDF-');
    const json = JSON.parse(attachment(mail.raw, 'health-record.json').toString('utf8')) as Bundle;
    expect(JSON.stringify(json)).toContain(openText);
    // The subject and body say nothing about the patient.
    expect(mail.raw).not.toMatch(/Ames|Alice/);
    const events = await portalEvents('transmit', p.patient);
    expect(events.map((e) => `AuditEvent/${e.id}`)).toContain(event);
    // The outbox marks it delivered once the mail server has taken it.
    const key = `transmit:${event!.split('/')[1]}`;
    for (let i = 0; i < 100; i++) {
      const [row] = await server.app.db.query<{ status: string }>('SELECT status FROM outbox WHERE idempotency_key = $1', [key]);
      if (row?.status === 'delivered') {
        break;
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    // The address is in no log line.
    expect(server.logs.join('\n')).not.toContain('specialist.example.org');
  });

  it('refuses a bad address with a 400 and records nothing', async () => {
    for (const bad of ['not-an-address', 'a@b', 'two@one.example.org, three@one.example.org', 'Name <x@y.example.org>', '', 42]) {
      const before = await eventCounts();
      const res = await transmit(p.alice.request, bad);
      expect(res.status, String(bad)).toBe(400);
      expect(res.body.resourceType).toBe('OperationOutcome');
      expect(await eventCounts()).toEqual(before);
    }
    const noBody = await p.alice.request.post(`/fhir/${p.patient}/$transmit`).set('content-type', FHIR_JSON).send({ resourceType: 'Patient' });
    expect(noBody.status).toBe(400);
  });

  it('refuses practitioners (the patient decides where their record goes)', async () => {
    const res = await transmit(p.doctorToken.request, 'records@specialist.example.org');
    expect(res.status).toBe(403);
  });
});

describe('activity: GET Patient/{id}/$activity', () => {
  it('lists who viewed, downloaded and transmitted the record, and when, newest first', async () => {
    const res = await p.alice.request.get(`/fhir/${p.patient}/$activity`);
    expect(res.status, res.text).toBe(200);
    const events = ((res.body as Parameters).parameter ?? []).map((e) => Object.fromEntries((e.part ?? []).map((x) => [x.name, x.valueCode ?? x.valueString ?? x.valueInstant ?? x.valueReference])));
    const actions = events.map((e) => e.action);
    expect(actions).toEqual(expect.arrayContaining(['view', 'download', 'transmit']));
    const repView = events.find((e) => e.action === 'view' && (e.who as { reference: string }).reference === p.relatedPerson);
    expect((repView!.who as { display: string }).display).toBe('Rita Ames');
    const mine = events.find((e) => (e.who as { reference: string }).reference === p.patient);
    expect((mine!.who as { display: string }).display).toBe('Alice Ames');
    // The transmission was delivered (the mail arrived in the test above).
    expect(events.find((e) => e.action === 'transmit')?.delivery).toBe('delivered');
    const times = events.map((e) => e.when as string);
    expect([...times].sort().reverse()).toEqual(times);
  });
});

describe('the VDT measure', () => {
  it('counts the patient whose record was viewed through the portal', async () => {
    expect((await p.alice.request.get(`/fhir/${p.patient}/$health-record`)).status).toBe(200);
    const day = (d: Date) => d.toISOString().slice(0, 10);
    const now = new Date();
    const res = await server.request.get('/fhir/Measure/vdt-use-2014/$evaluate-measure').query({
      practitioner: p.doctor,
      periodStart: day(new Date(now.getTime() - 86_400_000)),
      periodEnd: day(new Date(now.getTime() + 86_400_000)),
      reportType: 'subject-list',
    });
    expect(res.status, res.text).toBe(200);
    const population = (code: string) => res.body.group[0].population.find((x: { code: { coding: { code: string }[] } }) => x.code.coding[0].code === code);
    expect(population('denominator').count).toBe(1);
    expect(population('numerator').count, JSON.stringify(res.body.group[0].population)).toBe(1);
    expect(JSON.stringify(res.body)).toContain(p.patient.split('/')[1]);
  });
});
