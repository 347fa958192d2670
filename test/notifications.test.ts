/**
 * Notifications without PHI, through the real thing: a CareThread server configured with a
 * real SMTP server (`smtp-server`) and a local HTTP server standing in for the SMS webhook;
 * messages written with real tokens; notices checked at the receiving end — exactly one per
 * message, through the person's channel, carrying the portal link and nothing about the
 * message, its sender, its category or topic, or the patient. Also: the SMTP server down
 * for a while, appointment reminders, and who may read and set a preference.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Appointment, Communication, Parameters, Resource } from '@medplum/fhirtypes';
import { SMTPServer } from 'smtp-server';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decideChannel, describePreference } from '../fhir/notifications/index.js';
import { startTestServer } from './support/server.js';
import type { TestServer } from './support/server.js';
import { createUser, registerPublicClient, userToken } from './support/tokens.js';
import type { IssuedToken } from './support/tokens.js';

const FHIR_JSON = 'application/fhir+json';
const CATEGORY_SYSTEM = 'https://carethread.dev/fhir/CodeSystem/message-category';
const PORTAL_URL = 'https://portal.example.test/sign-in';
const TIME_ZONE = 'America/New_York';
const PASSWORD = 'notification test password';
const PATIENT_EMAIL = 'inbox-7731@example.test';
const PATIENT_PHONE = '+15555550100';
const REPRESENTATIVE_EMAIL = 'proxy-4410@example.test';
/** Words that must never reach a notice: names, specialty, category, topic, message texts. */
const PHI = ['Zelda', 'Quorrington', 'Ursula', 'Housewright', 'Gregory', 'Oncology', 'symptom', 'Chemotherapy', 'nausea', 'biopsy', 'lymphoma', 'Main Street'];

interface Mail {
  to: string[];
  raw: string;
  /** The headers and every body part, decoded (quoted-printable or base64 could hide a word). */
  text: string;
}
interface Sms {
  to: string;
  body: string;
  idempotencyKey?: string;
}

let server: TestServer;
let smtp: SMTPServer;
let smtpPort: number;
let smsServer: http.Server;
const mails: Mail[] = [];
const texts: Sms[] = [];

let zelda: string;
let ursula: string;
let other: string;
let doctor: string;
let header: string;
let question: string;
let zeldaToken: IssuedToken;
let ursulaToken: IssuedToken;
let doctorToken: IssuedToken;
let nobodyToken: IssuedToken;

// ---- receivers ------------------------------------------------------------------------

function startSmtp(port: number): Promise<SMTPServer> {
  const receiver = new SMTPServer({
    authOptional: true,
    disabledCommands: ['STARTTLS', 'AUTH'],
    logger: false,
    onData(stream, session, done) {
      const chunks: Buffer[] = [];
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('end', () => {
        const raw = Buffer.concat(chunks).toString('utf8');
        mails.push({ to: session.envelope.rcptTo.map((r) => r.address), raw, text: decodeMail(raw) });
        done();
      });
    },
  });
  return new Promise((resolve, reject) => {
    receiver.on('error', reject);
    receiver.listen(port, '127.0.0.1', () => resolve(receiver));
  });
}

/** The top-level headers plus each MIME part's body, decoded by its transfer encoding. */
function decodeMail(raw: string): string {
  const text = raw.replace(/\r\n/g, '\n');
  const headers = text.slice(0, text.indexOf('\n\n'));
  // A part's body ends at the next boundary line (or, in a single-part mail, at the end).
  const bodies = [...`${text}\n--`.matchAll(/^Content-Transfer-Encoding: ([\w-]+)\n(?:[^\n]+\n)*\n([\s\S]*?)(?=\n--)/gim)].map(([, encoding, body]) => {
    switch (encoding.toLowerCase()) {
      case 'base64':
        return Buffer.from(body, 'base64').toString('utf8');
      case 'quoted-printable':
        return Buffer.from(body.replace(/=\n/g, '').replace(/=([0-9A-F]{2})/gi, (_, hex: string) => String.fromCharCode(parseInt(hex, 16))), 'latin1').toString('utf8');
      default:
        return body;
    }
  });
  if (!bodies.length) {
    throw new Error('A notice without a body part');
  }
  return [headers, ...bodies].join('\n');
}

function stopSmtp(receiver: SMTPServer): Promise<void> {
  return new Promise((resolve) => receiver.close(() => resolve()));
}

function startSmsWebhook(): Promise<http.Server> {
  const webhook = http.createServer((req, res) => {
    let body = '';
    req.on('data', (c) => (body += c));
    req.on('end', () => {
      const parsed = JSON.parse(body) as { to: string; body: string };
      texts.push({ ...parsed, idempotencyKey: req.headers['idempotency-key'] as string | undefined });
      res.writeHead(202).end();
    });
  });
  return new Promise((resolve) => webhook.listen(0, '127.0.0.1', () => resolve(webhook)));
}

// ---- helpers --------------------------------------------------------------------------

async function adminCreate<T extends Resource>(resource: T): Promise<string> {
  const res = await server.request.post(`/fhir/${resource.resourceType}`).set('content-type', FHIR_JSON).send(JSON.stringify(resource));
  expect(res.status, res.text).toBe(201);
  return `${resource.resourceType}/${res.body.id}`;
}

async function post(token: IssuedToken, resource: Resource): Promise<string> {
  const res = await token.request.post(`/fhir/${resource.resourceType}`).set('content-type', FHIR_JSON).send(JSON.stringify(resource));
  expect(res.status, res.text).toBe(201);
  return `${resource.resourceType}/${res.body.id}`;
}

const ref = (reference: string) => ({ reference });
const idOf = (reference: string) => reference.split('/')[1];

/** The provider answers in a thread; the reply goes to the patient side by default. */
function reply(thread: string, answered: string, text: string): Promise<string> {
  return post(doctorToken, {
    resourceType: 'Communication',
    status: 'completed',
    partOf: [ref(thread)],
    inResponseTo: [ref(answered)],
    subject: ref(zelda),
    payload: [{ contentString: text }],
  } as Communication);
}

async function until<T>(check: () => Promise<T | undefined | false>, what: string, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value) {
      return value;
    }
    if (Date.now() > deadline) {
      throw new Error(`Timed out waiting for ${what}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}

type Delivery = Record<string, string | number>;

/** The `notify` deliveries of a message, as `$delivery-status` shows them to staff. */
async function notices(message: string): Promise<Delivery[]> {
  const res = await server.request.get(`/fhir/${message}/$delivery-status`);
  expect(res.status, res.text).toBe(200);
  return ((res.body as Parameters).parameter ?? [])
    .map((p) => Object.fromEntries((p.part ?? []).map((x) => [x.name, x.valueCode ?? x.valueInteger ?? x.valueString ?? x.valueInstant ?? ''])) as Delivery)
    .filter((d) => d.kind === 'notify');
}

/** Waits until every notice of the message is delivered or failed; then a moment more, so a duplicate would show. */
async function settled(message: string, expected = 1): Promise<Delivery[]> {
  const done = await until(async () => {
    const found = await notices(message);
    return found.length === expected && found.every((d) => d.status !== 'pending') && found;
  }, `the notices of ${message}`);
  await new Promise((r) => setTimeout(r, 300));
  return done;
}

function expectNoPhi(text: string): void {
  for (const word of PHI) {
    expect(text.toLowerCase(), `a notice contains "${word}"`).not.toContain(word.toLowerCase());
  }
  expect(text).not.toContain(idOf(zelda));
}

type Agent = TestServer['request'];

function setPreference(agent: Agent, person: string, channel: string) {
  return agent
    .post(`/fhir/${person}/$notification-preference`)
    .set('content-type', FHIR_JSON)
    .send(JSON.stringify({ resourceType: 'Parameters', parameter: [{ name: 'channel', valueCode: channel }] }));
}

function preferenceOf(body: Parameters): { channel?: string; chosen?: boolean; effective?: string; available: string[]; reason?: string } {
  const p = body.parameter ?? [];
  return {
    channel: p.find((x) => x.name === 'channel')?.valueCode,
    chosen: p.find((x) => x.name === 'chosen')?.valueBoolean,
    effective: p.find((x) => x.name === 'effectiveChannel')?.valueCode,
    available: p.filter((x) => x.name === 'availableChannel').map((x) => x.valueCode!),
    reason: p.find((x) => x.name === 'unavailableReason')?.valueString,
  };
}

// ---- set-up ---------------------------------------------------------------------------

beforeAll(async () => {
  smtp = await startSmtp(0);
  smtpPort = (smtp.server.address() as AddressInfo).port;
  smsServer = await startSmsWebhook();
  server = await startTestServer({
    env: {
      SMTP_URL: `smtp://127.0.0.1:${smtpPort}`,
      MAIL_FROM: 'Clinic <no-reply@clinic.example.test>',
      SMS_WEBHOOK_URL: `http://127.0.0.1:${(smsServer.address() as AddressInfo).port}/sms`,
      PORTAL_URL,
      OUTBOX_POLL_MS: '50',
      OUTBOX_BASE_BACKOFF_MS: '100',
      APPOINTMENT_REMINDER_HOURS: '4',
      PRACTICE_TIME_ZONE: TIME_ZONE,
    },
  });

  doctor = await adminCreate({ resourceType: 'Practitioner', name: [{ family: 'Housewright', given: ['Gregory'] }] });
  await adminCreate({
    resourceType: 'PractitionerRole',
    active: true,
    practitioner: ref(doctor),
    specialty: [{ coding: [{ system: 'http://snomed.info/sct', code: '394593009', display: 'Oncology' }], text: 'Oncology' }],
  });
  zelda = await adminCreate({
    resourceType: 'Patient',
    name: [{ family: 'Quorrington', given: ['Zelda'] }],
    telecom: [
      { system: 'email', value: PATIENT_EMAIL },
      { system: 'phone', value: PATIENT_PHONE, use: 'mobile' },
    ],
  });
  other = await adminCreate({ resourceType: 'Patient', name: [{ family: 'Elsewhere' }], telecom: [{ system: 'email', value: 'other-1@example.test' }] });
  ursula = await adminCreate({ resourceType: 'RelatedPerson', active: true, patient: ref(zelda), name: [{ family: 'Quorrington', given: ['Ursula'] }], telecom: [{ system: 'email', value: REPRESENTATIVE_EMAIL }] });
  await adminCreate({ resourceType: 'Encounter', status: 'finished', class: { code: 'AMB' }, subject: ref(zelda), participant: [{ individual: ref(doctor) }] });
  const nobody = await adminCreate({ resourceType: 'Practitioner', name: [{ family: 'Nobody' }] });

  for (const [username, fhirUser] of [
    ['zelda', zelda],
    ['ursula', ursula],
    ['dr-housewright', doctor],
    ['dr-nobody', nobody],
  ]) {
    await createUser(server, { username, password: PASSWORD, fhirUser });
  }
  const clientId = await registerPublicClient(server);
  const token = (username: string, scope: string, patient?: string) => userToken(server, { username, password: PASSWORD, scope, patient, clientId });
  zeldaToken = await token('zelda', 'openid fhirUser launch/patient patient/*.cruds');
  ursulaToken = await token('ursula', 'openid fhirUser launch/patient patient/*.cruds', zelda);
  doctorToken = await token('dr-housewright', 'openid fhirUser user/*.cruds');
  nobodyToken = await token('dr-nobody', 'openid fhirUser user/*.cruds');

  // Zelda starts a thread with her doctor and asks a question.
  header = await post(zeldaToken, {
    resourceType: 'Communication',
    status: 'in-progress',
    subject: ref(zelda),
    category: [{ coding: [{ system: CATEGORY_SYSTEM, code: 'symptom-report' }] }],
    topic: { text: 'Chemotherapy nausea' },
    recipient: [ref(doctor)],
  } as Communication);
  question = await post(zeldaToken, {
    resourceType: 'Communication',
    status: 'completed',
    partOf: [ref(header)],
    subject: ref(zelda),
    payload: [{ contentString: 'I feel queasy since the chemotherapy started' }],
  } as Communication);
});

afterAll(async () => {
  await server?.stop({ dropDatabase: true });
  if (smtp) {
    await stopSmtp(smtp);
  }
  await new Promise((r) => smsServer?.close(r));
});

// ---- the notices ----------------------------------------------------------------------

describe('a provider’s reply notifies the patient without PHI', () => {
  it('by e-mail (the default when the patient has an address): exactly one, with the portal link and nothing else', async () => {
    const before = mails.length;
    const answer = await reply(header, question, 'Your biopsy shows an early lymphoma; let us talk Monday.');
    const [delivery] = await settled(answer);
    expect(delivery.status).toBe('delivered');
    const arrived = mails.slice(before);
    expect(arrived).toHaveLength(1);
    expect(arrived[0].to).toEqual([PATIENT_EMAIL]);
    expect(arrived[0].text).toContain(`Sign in to read it: ${PORTAL_URL}`);
    expect(arrived[0].text).toContain(`<a href="${PORTAL_URL}">`);
    expect(arrived[0].raw).toMatch(/^Subject: You have a new secure message$/m);
    expect(arrived[0].raw).toMatch(/^Message-ID: <[0-9a-f]{40}@clinic\.example\.test>$/im);
    expectNoPhi(arrived[0].text);
    expect(arrived[0].raw).not.toContain(idOf(answer));
    expect(texts).toHaveLength(0);
  });

  it('by SMS when the patient chose it: one webhook call instead, just as bare', async () => {
    expect((await setPreference(zeldaToken.request, zelda, 'sms')).status).toBe(200);
    const mailsBefore = mails.length;
    const textsBefore = texts.length;
    const answer = await reply(header, question, 'The biopsy results for your lymphoma are in.');
    expect((await settled(answer))[0].status).toBe('delivered');
    const arrived = texts.slice(textsBefore);
    expect(arrived).toHaveLength(1);
    expect(arrived[0].to).toBe(PATIENT_PHONE);
    expect(arrived[0].body).toContain(PORTAL_URL);
    expect(arrived[0].idempotencyKey).toMatch(/^[0-9a-f]{40}$/);
    expectNoPhi(arrived[0].body);
    expect(mails.length).toBe(mailsBefore);
  });

  it('not at all when the patient chose none', async () => {
    expect((await setPreference(zeldaToken.request, zelda, 'none')).status).toBe(200);
    const mailsBefore = mails.length;
    const textsBefore = texts.length;
    const answer = await reply(header, question, 'Please book a follow-up for the biopsy.');
    expect((await settled(answer))[0].status).toBe('delivered');
    expect(mails.length).toBe(mailsBefore);
    expect(texts.length).toBe(textsBefore);
  });

  it('each person on the patient side at their own address: the patient and the representative who wrote', async () => {
    expect((await setPreference(zeldaToken.request, zelda, 'email')).status).toBe(200);
    const thread = await post(ursulaToken, {
      resourceType: 'Communication',
      status: 'in-progress',
      subject: ref(zelda),
      category: [{ coding: [{ system: CATEGORY_SYSTEM, code: 'symptom-report' }] }],
      topic: { text: 'Chemotherapy nausea at night' },
      recipient: [ref(doctor)],
    } as Communication);
    const asked = await post(ursulaToken, {
      resourceType: 'Communication',
      status: 'completed',
      partOf: [ref(thread)],
      subject: ref(zelda),
      payload: [{ contentString: 'My mother has nausea every night' }],
    } as Communication);
    const before = mails.length;
    const answer = await reply(thread, asked, 'Nausea after chemotherapy is common with lymphoma treatment.');
    const deliveries = await settled(answer, 2);
    expect(deliveries.map((d) => d.status)).toEqual(['delivered', 'delivered']);
    const arrived = mails.slice(before);
    expect(arrived.map((m) => m.to[0]).sort()).toEqual([PATIENT_EMAIL, REPRESENTATIVE_EMAIL].sort());
    for (const mail of arrived) {
      expect(mail.text).toContain(PORTAL_URL);
      expectNoPhi(mail.text);
    }
  });

  it('arrives exactly once when the mail server was down for a while (the outbox retries)', async () => {
    await stopSmtp(smtp);
    const before = mails.length;
    const answer = await reply(header, question, 'Biopsy follow-up: lymphoma clinic on Monday.');
    // Refused at least twice while the server is down, and still pending, not failed.
    const waiting = await until(async () => {
      const [d] = await notices(answer);
      return d && Number(d.attempts) >= 2 && d;
    }, 'failed attempts');
    expect(waiting.status).toBe('pending');
    expect(String(waiting.lastError)).toMatch(/^SMTP delivery failed/);
    expect(String(waiting.lastError)).not.toContain(PATIENT_EMAIL);
    expect(mails.length).toBe(before);
    smtp = await startSmtp(smtpPort);
    const [delivery] = await settled(answer);
    expect(delivery.status).toBe('delivered');
    const arrived = mails.slice(before);
    expect(arrived).toHaveLength(1);
    expect(arrived[0].to).toEqual([PATIENT_EMAIL]);
    expectNoPhi(arrived[0].text);
  });

  it('a notice that cannot go is failed at once, visibly, with a reason that names no address', async () => {
    const silent = await adminCreate({ resourceType: 'Patient', name: [{ family: 'Silent' }], telecom: [{ system: 'email', value: 'silent-1@example.test' }] });
    expect((await setPreference(server.request, silent, 'email')).status).toBe(200);
    // The address is removed afterwards; the choice stays.
    const current = (await server.request.get(`/fhir/${silent}`)).body;
    expect((await server.request.put(`/fhir/${silent}`).set('content-type', FHIR_JSON).send(JSON.stringify({ ...current, telecom: [] }))).status).toBe(200);
    // A message an integrating EHR records for the patient is notified like any other.
    const message = await adminCreate({
      resourceType: 'Communication',
      status: 'completed',
      subject: ref(silent),
      recipient: [ref(silent)],
      sender: ref(doctor),
      sent: new Date().toISOString(),
      payload: [{ contentString: 'Your lab results are ready.' }],
    } as Communication);
    const [delivery] = await settled(message);
    expect(delivery.status).toBe('failed');
    expect(delivery.attempts).toBe(1);
    expect(delivery.lastError).toBe('E-mail notices were chosen but there is no e-mail address on record');
  });

  it('logs name neither addresses, numbers nor message text', () => {
    const logs = server.logs.join('\n');
    expect(logs).toContain('notice sent');
    for (const secret of [PATIENT_EMAIL, PATIENT_PHONE, REPRESENTATIVE_EMAIL, 'lymphoma', 'biopsy']) {
      expect(logs).not.toContain(secret);
    }
  });
});

// ---- appointment reminders ------------------------------------------------------------

describe('appointment reminders', () => {
  const inHours = (h: number) => new Date(Date.now() + h * 3_600_000);
  const PLACE = 'Main Street Clinic, Suite 4';

  function appointment(start: Date, status: Appointment['status'] = 'booked'): Appointment {
    return {
      resourceType: 'Appointment',
      status,
      start: start.toISOString(),
      end: new Date(start.getTime() + 30 * 60_000).toISOString(),
      description: 'Discuss lymphoma staging after the biopsy',
      comment: 'Chemotherapy cycle 3',
      reasonCode: [{ text: 'Chemotherapy follow-up' }],
      serviceType: [{ text: 'Oncology infusion' }],
      specialty: [{ text: 'Oncology' }],
      participant: [
        { actor: ref(zelda), status: 'accepted' },
        { actor: { reference: doctor, display: 'Dr Gregory Housewright' }, status: 'accepted' },
        { actor: { reference: 'Location/main-street', display: PLACE }, status: 'accepted' },
      ],
    };
  }

  async function remindersOf(appt: string): Promise<Communication[]> {
    const res = await server.request.get(`/fhir/Communication?based-on=${appt}`);
    expect(res.status, res.text).toBe(200);
    return (res.body.entry ?? []).map((e: { resource: Communication }) => e.resource);
  }

  it('an appointment two hours ahead gets one reminder (date, time and place only) and one notice, however often the job runs', async () => {
    expect((await setPreference(zeldaToken.request, zelda, 'email')).status).toBe(200);
    const start = inHours(2);
    const soon = await adminCreate(appointment(start));
    const later = await adminCreate(appointment(inHours(10)));
    const cancelled = await adminCreate(appointment(inHours(1), 'cancelled'));
    const before = mails.length;

    const jobs = server.app.reminders;
    const created = (await Promise.all([jobs.runOnce(), jobs.runOnce()])).reduce((a, b) => a + b, 0) + (await jobs.runOnce());
    expect(created).toBe(1);

    const reminders = await remindersOf(soon);
    expect(reminders).toHaveLength(1);
    const [reminder] = reminders;
    expect(reminder.category?.[0].coding?.[0]).toMatchObject({ system: CATEGORY_SYSTEM, code: 'reminder' });
    expect(reminder.subject?.reference).toBe(zelda);
    expect(reminder.recipient?.map((r) => r.reference)).toEqual([zelda]);
    const text = reminder.payload?.[0].contentString ?? '';
    const date = new Intl.DateTimeFormat('en-US', { timeZone: TIME_ZONE, weekday: 'long', year: 'numeric', month: 'long', day: 'numeric' }).format(start);
    const time = new Intl.DateTimeFormat('en-US', { timeZone: TIME_ZONE, hour: 'numeric', minute: '2-digit', timeZoneName: 'short' }).format(start);
    expect(text).toBe(`Reminder: you have an appointment on ${date} at ${time}, at ${PLACE}.`);
    for (const word of ['lymphoma', 'biopsy', 'Chemotherapy', 'Oncology', 'infusion', 'Housewright', 'Zelda']) {
      expect(JSON.stringify(reminder)).not.toContain(word);
    }
    // Recorded like any message: with its Provenance, and readable by the patient.
    const provenance = await server.request.get(`/fhir/Provenance?target=Communication/${reminder.id}`);
    expect(provenance.body.entry).toHaveLength(1);
    const mine = await zeldaToken.request.get(`/fhir/Communication/${reminder.id}`);
    expect(mine.status).toBe(200);

    const [delivery] = await settled(`Communication/${reminder.id}`);
    expect(delivery.status).toBe('delivered');
    const arrived = mails.slice(before);
    expect(arrived).toHaveLength(1);
    expect(arrived[0].to).toEqual([PATIENT_EMAIL]);
    expectNoPhi(arrived[0].text);

    expect(await remindersOf(later)).toHaveLength(0);
    expect(await remindersOf(cancelled)).toHaveLength(0);
  });

  it('a rescheduled appointment is reminded again for its new time', async () => {
    const appt = await adminCreate(appointment(inHours(3)));
    expect(await server.app.reminders.runOnce()).toBe(1);
    const current = (await server.request.get(`/fhir/${appt}`)).body as Appointment;
    const moved = inHours(3.5);
    const updated = await server.request
      .put(`/fhir/${appt}`)
      .set('content-type', FHIR_JSON)
      .send(JSON.stringify({ ...current, start: moved.toISOString(), end: new Date(moved.getTime() + 1_800_000).toISOString() }));
    expect(updated.status, updated.text).toBe(200);
    expect(await server.app.reminders.runOnce()).toBe(1);
    expect(await server.app.reminders.runOnce()).toBe(0);
    expect(await remindersOf(appt)).toHaveLength(2);
  });
});

// ---- the preference through the API ---------------------------------------------------

describe('$notification-preference', () => {
  const path = (person: string) => `/fhir/${person}/$notification-preference`;

  it('the patient reads their own: the default is e-mail when they have an address', async () => {
    const fresh = await adminCreate({ resourceType: 'Patient', name: [{ family: 'Fresh' }], telecom: [{ system: 'email', value: 'fresh-1@example.test' }] });
    const res = await server.request.get(path(fresh));
    expect(res.status, res.text).toBe(200);
    expect(res.body.resourceType).toBe('Parameters');
    expect(preferenceOf(res.body)).toEqual({ channel: 'email', chosen: false, effective: 'email', available: ['email', 'none'] });

    const own = await zeldaToken.request.get(path(zelda));
    expect(own.status, own.text).toBe(200);
    expect(preferenceOf(own.body).available).toEqual(['email', 'sms', 'none']);
  });

  it('the patient sets their own, and reads back the choice', async () => {
    expect((await setPreference(zeldaToken.request, zelda, 'sms')).status).toBe(200);
    const res = await zeldaToken.request.get(path(zelda));
    expect(preferenceOf(res.body)).toMatchObject({ channel: 'sms', chosen: true, effective: 'sms' });
    // The change is in the audit trail, as a write about the patient.
    const audit = await server.request.get(`/fhir/AuditEvent?entity=${zelda}&subtype=operation&outcome=0`);
    expect(audit.status, audit.text).toBe(200);
    expect(audit.body.entry?.length).toBeGreaterThan(0);
  });

  it('another patient’s preference is a 404, exactly like a patient that does not exist', async () => {
    const res = await zeldaToken.request.get(path(other));
    expect(res.status).toBe(404);
    expect(res.body.resourceType).toBe('OperationOutcome');
    expect((await setPreference(zeldaToken.request, other, 'none')).status).toBe(404);
    expect((await zeldaToken.request.get(path('Patient/no-such-patient'))).status).toBe(404);
  });

  it('the patient may not read or set their representative’s', async () => {
    expect((await zeldaToken.request.get(path(ursula))).status).toBe(403);
    expect((await setPreference(zeldaToken.request, ursula, 'none')).status).toBe(403);
  });

  it('a representative reads and sets the patient’s, and their own', async () => {
    expect((await ursulaToken.request.get(path(zelda))).status).toBe(200);
    expect((await setPreference(ursulaToken.request, zelda, 'email')).status).toBe(200);
    expect(preferenceOf((await zeldaToken.request.get(path(zelda))).body)).toMatchObject({ channel: 'email', chosen: true });
    const own = await ursulaToken.request.get(path(ursula));
    expect(own.status, own.text).toBe(200);
    expect(preferenceOf(own.body)).toMatchObject({ channel: 'email', chosen: false, available: ['email', 'none'] });
    expect((await setPreference(ursulaToken.request, ursula, 'none')).status).toBe(200);
  });

  it('the care team reads but cannot set; a practitioner without a care relationship sees nothing', async () => {
    expect((await doctorToken.request.get(path(zelda))).status).toBe(200);
    const refused = await setPreference(doctorToken.request, zelda, 'none');
    expect(refused.status).toBe(403);
    expect(refused.body.resourceType).toBe('OperationOutcome');
    expect((await nobodyToken.request.get(path(zelda))).status).toBe(404);
  });

  it('an integrating system sets it', async () => {
    const res = await setPreference(server.request, zelda, 'none');
    expect(res.status, res.text).toBe(200);
    expect(preferenceOf(res.body)).toMatchObject({ channel: 'none', chosen: true, effective: 'none' });
  });

  it('a token without write access cannot set it', async () => {
    const readOnly = await userToken(server, { username: 'zelda', password: PASSWORD, scope: 'launch/patient patient/*.rs' });
    expect((await readOnly.request.get(path(zelda))).status).toBe(200);
    expect((await setPreference(readOnly.request, zelda, 'email')).status).toBe(403);
  });

  it('bad input is a 400; a channel the person cannot be reached by is a 422', async () => {
    for (const body of [
      { resourceType: 'Parameters', parameter: [{ name: 'channel', valueCode: 'pigeon' }] },
      { resourceType: 'Parameters', parameter: [] },
      { resourceType: 'Patient' },
    ]) {
      const res = await zeldaToken.request.post(path(zelda)).set('content-type', FHIR_JSON).send(JSON.stringify(body));
      expect(res.status, res.text).toBe(400);
      expect(res.body.resourceType).toBe('OperationOutcome');
    }
    const noPhone = await setPreference(ursulaToken.request, ursula, 'sms');
    expect(noPhone.status).toBe(422);
    expect(noPhone.body.issue[0].details.text).toMatch(/no phone number on record/);
  });

  it('other methods are 405, and a request without a token 401', async () => {
    expect((await zeldaToken.request.put(path(zelda)).set('content-type', FHIR_JSON).send('{"resourceType":"Parameters"}')).status).toBe(405);
    expect((await zeldaToken.request.delete(path(zelda))).status).toBe(405);
    expect((await server.anonymous.get(path(zelda))).status).toBe(401);
  });
});

// ---- the choice itself (pure) ---------------------------------------------------------

describe('channel choice', () => {
  const both = { email: true, sms: true };
  it('defaults to e-mail with an address, else none', () => {
    expect(decideChannel(undefined, { email: 'a@b.test' }, both)).toEqual({ kind: 'send', channel: 'email', address: 'a@b.test' });
    expect(decideChannel(undefined, { phone: '+1555' }, both)).toEqual({ kind: 'none' });
  });
  it('never swaps a chosen channel for another', () => {
    expect(decideChannel('sms', { email: 'a@b.test' }, both)).toMatchObject({ kind: 'unavailable', channel: 'sms' });
    expect(decideChannel('email', { email: 'a@b.test', phone: '+1555' }, { email: false, sms: true })).toMatchObject({
      kind: 'unavailable',
      reason: expect.stringMatching(/SMTP_URL/),
    });
    expect(describePreference('sms', { email: 'a@b.test' }, both)).toMatchObject({ channel: 'sms', effective: 'none', available: ['email', 'none'] });
  });
});
