/**
 * What the server writes to its log, after a realistic mix through the real HTTP interface:
 * sign-ins with passwords through the authorization server (and a wrong one), tokens from
 * every grant (authorization code, refresh, client credentials), a thread with messages and
 * an attachment, a provider's reply that sends an e-mail notice through a real SMTP server,
 * searches by name, and failing requests (bad JSON, a forged token, a token in the URL).
 * No access or refresh token, password, client secret, message text, attachment content or
 * patient name may appear in any log line, and every request line carries its request id.
 */
import type { AddressInfo } from 'node:net';
import { SMTPServer } from 'smtp-server';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { FHIR_JSON, header, message, post, ref, send } from './support/messaging.js';
import { startTestServer } from './support/server.js';
import type { TestServer } from './support/server.js';
import { createUser, registerPublicClient, userToken } from './support/tokens.js';

const PATIENT_PASSWORD = 'Quillfeather-Passphrase-2231';
const DOCTOR_PASSWORD = 'Marrowbone-Passphrase-9917';
const WRONG_PASSWORD = 'Wrongturn-Passphrase-5502';
const PATIENT_NAMES = ['Zephyrine', 'Oakenshaw'];
const PATIENT_EMAIL = 'zephyrine.oakenshaw@example.test';
const MESSAGE_TEXTS = ['My sternum aches after the kumquat trial', 'Stop the kumquat trial; come in Thursday about the sternum'];
const ATTACHMENT_TEXT = 'Glucose diary: fasting 141 on the quince diet';
const TOPIC = 'Sternum and kumquats';

describe('the server log', () => {
  let server: TestServer;
  let smtp: SMTPServer;
  const mails: string[] = [];
  /** Everything that must never reach a log line. */
  const secrets = new Set<string>([PATIENT_PASSWORD, DOCTOR_PASSWORD, WRONG_PASSWORD, ...PATIENT_NAMES, PATIENT_EMAIL, ...MESSAGE_TEXTS, ATTACHMENT_TEXT, TOPIC]);

  beforeAll(async () => {
    smtp = new SMTPServer({
      authOptional: true,
      disabledCommands: ['STARTTLS', 'AUTH'],
      logger: false,
      onData(stream, _session, done) {
        let raw = '';
        stream.on('data', (chunk: Buffer) => (raw += chunk.toString('utf8')));
        stream.on('end', () => {
          mails.push(raw);
          done();
        });
      },
    });
    await new Promise<void>((resolve) => smtp.listen(0, '127.0.0.1', () => resolve()));
    const smtpPort = (smtp.server.address() as AddressInfo).port;
    server = await startTestServer({ env: { SMTP_URL: `smtp://127.0.0.1:${smtpPort}`, OUTBOX_POLL_MS: '100' } });
    secrets.add(server.admin.token).add(server.admin.clientSecret);
  });
  afterAll(async () => {
    await server?.stop({ dropDatabase: true });
    await new Promise<void>((resolve) => (smtp ? smtp.close(() => resolve()) : resolve()));
  });

  it('holds no token, password, secret, message text or patient name after a realistic mix', async () => {
    const create = async (resource: object) => {
      const res = await send(server.request, 'post', (resource as { resourceType: string }).resourceType, resource);
      expect(res.status, res.text).toBe(201);
      return `${res.body.resourceType}/${res.body.id}`;
    };
    const patient = await create({ resourceType: 'Patient', name: [{ family: PATIENT_NAMES[1], given: [PATIENT_NAMES[0]] }], telecom: [{ system: 'email', value: PATIENT_EMAIL }] });
    const doctor = await create({ resourceType: 'Practitioner', name: [{ family: 'Lindqvist' }] });
    await create({ resourceType: 'Encounter', status: 'finished', class: { code: 'AMB' }, subject: ref(patient), participant: [{ individual: ref(doctor) }] });
    await createUser(server, { username: 'zephyrine', password: PATIENT_PASSWORD, fhirUser: patient });
    await createUser(server, { username: 'lindqvist', password: DOCTOR_PASSWORD, fhirUser: doctor });
    const clientId = await registerPublicClient(server);

    // A wrong password first, then the real sign-ins (authorization code with PKCE).
    const wrong = await userToken(server, { username: 'zephyrine', password: WRONG_PASSWORD, scope: 'openid fhirUser launch/patient patient/*.cruds', clientId }).catch((err: Error) => err);
    expect(wrong).toBeInstanceOf(Error);
    const alice = await userToken(server, { username: 'zephyrine', password: PATIENT_PASSWORD, scope: 'openid fhirUser launch/patient offline_access patient/*.cruds', clientId });
    const doc = await userToken(server, { username: 'lindqvist', password: DOCTOR_PASSWORD, scope: 'openid fhirUser user/*.cruds', clientId });
    secrets.add(alice.accessToken).add(doc.accessToken).add(String(alice.body.id_token));
    const refreshToken = alice.body.refresh_token as string;
    expect(refreshToken).toBeTruthy();
    secrets.add(refreshToken);
    const refreshed = await server.anonymous.post('/auth/token').type('form').send({ grant_type: 'refresh_token', refresh_token: refreshToken, client_id: clientId });
    expect(refreshed.status, refreshed.text).toBe(200);
    secrets.add(refreshed.body.access_token).add(refreshed.body.refresh_token);

    // A backend client with a secret, and its token.
    const registration = await server.request.post('/auth/register').send({ client_name: 'Log test backend', redirect_uris: [], token_endpoint_auth_method: 'client_secret_basic', scope: 'system/Patient.rs' });
    expect(registration.status, registration.text).toBe(201);
    secrets.add(registration.body.client_secret);
    const backend = await server.anonymous.post('/auth/token').auth(registration.body.client_id, registration.body.client_secret).type('form').send({ grant_type: 'client_credentials', scope: 'system/Patient.rs' });
    expect(backend.status, backend.text).toBe(200);
    secrets.add(backend.body.access_token);
    expect((await server.anonymous.get(`/fhir/${patient}`).set('Authorization', `Bearer ${backend.body.access_token}`)).status).toBe(200);

    // The conversation: a thread, a message with an attachment, the doctor's reply (an e-mail notice).
    const thread = await post(alice.request, { ...header(patient, [doctor]), topic: { text: TOPIC } });
    const attachment = await send(alice.request, 'post', 'Binary', {
      resourceType: 'Binary',
      contentType: 'text/plain',
      securityContext: ref(`Communication/${thread.id}`),
      data: Buffer.from(ATTACHMENT_TEXT).toString('base64'),
    });
    expect(attachment.status, attachment.text).toBe(201);
    await post(
      alice.request,
      message(patient, `Communication/${thread.id}`, MESSAGE_TEXTS[0], { payload: [{ contentString: MESSAGE_TEXTS[0] }, { contentAttachment: { contentType: 'text/plain', url: `Binary/${attachment.body.id}` } }] })
    );
    const mailsBefore = mails.length;
    await post(doc.request, message(patient, `Communication/${thread.id}`, MESSAGE_TEXTS[1], { recipient: [ref(patient)] }));
    await vi.waitFor(() => expect(mails.length).toBeGreaterThan(mailsBefore), { timeout: 10_000, interval: 100 });
    expect((await doc.request.get(`/fhir/Communication?part-of=Communication/${thread.id}`)).status).toBe(200);
    expect((await doc.request.get(`/fhir/Binary/${attachment.body.id}`)).text).toBe(ATTACHMENT_TEXT);

    // Searches that name the patient, and requests that fail.
    expect((await doc.request.get(`/fhir/Patient?name=${PATIENT_NAMES[0]}&email=${PATIENT_EMAIL}`)).status).toBe(200);
    expect((await alice.request.post('/fhir/Communication').set('content-type', FHIR_JSON).send(`{"payload": [{"contentString": "${MESSAGE_TEXTS[0]}"`)).status).toBe(400);
    expect((await server.anonymous.get(`/fhir/${patient}`).set('Authorization', `Bearer ${alice.accessToken.slice(0, -4)}AAAA`)).status).toBe(401);
    expect((await server.anonymous.get(`/fhir/${patient}?access_token=${doc.accessToken}`)).status).toBe(401);
    expect((await server.anonymous.post('/auth/token').type('form').send({ grant_type: 'refresh_token', refresh_token: `${refreshToken}x`, client_id: clientId })).status).toBe(400);
    expect((await doc.request.get(`/fhir/Patient/${PATIENT_NAMES[0]}`)).status).toBe(404);
    await server.app.audit.flush();

    const logs = server.logs.join('\n');
    expect(server.logs.length).toBeGreaterThan(30);
    for (const secret of secrets) {
      expect(secret.length).toBeGreaterThan(4);
      expect(logs.includes(secret), `the log contains "${secret.slice(0, 12)}…": ${server.logs.filter((l) => l.includes(secret)).join("\n").slice(0, 2000)}`).toBe(false);
    }
    // Parts of a token are as good as the token for some uses: no signature either.
    for (const token of [alice.accessToken, doc.accessToken, backend.body.access_token as string]) {
      expect(logs).not.toContain(token.split('.')[2]);
    }
  });

  it('gives every request line its request id, and ties errors to one', () => {
    const entries = server.logs.map((line) => JSON.parse(line) as Record<string, unknown>);
    const requests = entries.filter((e) => e.msg === 'request');
    expect(requests.length).toBeGreaterThan(25);
    for (const entry of requests) {
      expect(entry.requestId, JSON.stringify(entry)).toMatch(/^[A-Za-z0-9\-_.]{1,64}$/);
      expect(entry).toEqual(expect.objectContaining({ method: expect.any(String), route: expect.any(String), status: expect.any(Number) }));
      expect(String(entry.route)).not.toContain('?');
    }
    expect(new Set(requests.map((e) => e.requestId)).size).toBe(requests.length);
    for (const entry of entries.filter((e) => e.msg === 'request failed')) {
      expect(entry.requestId).toEqual(expect.any(String));
    }
  });
});
