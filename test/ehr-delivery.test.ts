/**
 * Recording in the chart: every message and its Provenance reach the EHR's FHIR server
 * exactly once and in thread order, whatever happens on the way. The "EHR" is a second real
 * CareThread; CareThread delivers to it through the outbox with fhir-kit-client, after SMART
 * Backend Services authorization against the EHR's own token endpoint.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Bundle, Communication, Parameters, Provenance } from '@medplum/fhirtypes';
import { exportJWK, generateKeyPair } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CARETHREAD_IDENTIFIER_SYSTEM, MESSAGE_CATEGORY_SYSTEM } from '../fhir/messaging/codes.js';
import { freePort, startTestServer } from './support/server.js';
import type { TestServer } from './support/server.js';
import { backendToken, createUser, userToken } from './support/tokens.js';
import type { IssuedToken } from './support/tokens.js';

const FHIR_JSON = 'application/fhir+json';
/** What CareThread asks of the EHR (DEFAULT_EHR_SCOPE), registered for its client there. */
const EHR_SCOPE = 'system/Communication.crus system/Provenance.cs';
const FAST_OUTBOX = { OUTBOX_POLL_MS: '50', OUTBOX_BASE_BACKOFF_MS: '100' };

let ehr: TestServer;
let ehrPort: number;
const started: TestServer[] = [];

beforeAll(async () => {
  ehrPort = await freePort();
  ehr = await startTestServer({ port: ehrPort });
});

afterAll(async () => {
  for (const server of started) {
    await server.stop({ dropDatabase: true }).catch(() => undefined);
  }
  // (The EHR may be the one a failed test left stopped.)
  await ehr?.stop({ dropDatabase: true }).catch(() => ehr.database.drop());
});

/** A CareThread that delivers to the EHR, stopped and dropped after the file. */
async function startCareThread(env: Record<string, string>, options: { port?: number } = {}): Promise<TestServer> {
  const server = await startTestServer({ ...options, env: { ...FAST_OUTBOX, ...env } });
  started.push(server);
  return server;
}

/** Stops a CareThread and starts it again over the same database, at the same URL. */
async function restartCareThread(server: TestServer, env: Record<string, string>): Promise<TestServer> {
  await server.stop();
  const again = await startTestServer({ port: Number(new URL(server.baseUrl).port), database: server.database, env: { ...FAST_OUTBOX, ...env } });
  started.splice(started.indexOf(server), 1, again);
  return again;
}

/** Waits until every EHR delivery queued so far is done. */
async function allDelivered(server: TestServer): Promise<void> {
  await eventually(async () => {
    const rows = await server.app.db.query(`SELECT count(*)::int AS n FROM outbox WHERE kind = 'ehr' AND status <> 'delivered'`);
    expect(rows[0].n).toBe(0);
  });
}

/** Registers CareThread as a backend client of the EHR. */
async function registerOnEhr(metadata: Record<string, unknown>): Promise<{ client_id: string; client_secret?: string }> {
  const res = await ehr.request.post('/auth/register').send({ client_name: 'CareThread chart delivery', redirect_uris: [], scope: EHR_SCOPE, ...metadata });
  expect(res.status, res.text).toBe(201);
  return res.body;
}

interface CareTeam {
  patient: string;
  practitioner: string;
  patientSide: IssuedToken;
  provider: IssuedToken;
}

/**
 * A patient and their practitioner, pushed by the EHR to CareThread with the EHR's ids (so
 * both sides hold them under the same ids), a visit linking them, and both signed in.
 */
async function careTeam(ours: TestServer, name: string): Promise<CareTeam> {
  const patient = `${name}-patient`;
  const practitioner = `${name}-doctor`;
  for (const server of [ehr, ours]) {
    await put(server, { resourceType: 'Patient', id: patient, name: [{ family: 'Chart', given: [name] }] });
    await put(server, { resourceType: 'Practitioner', id: practitioner, name: [{ family: 'Welby', given: ['Marcus'] }] });
  }
  const visit = await ours.request
    .post('/fhir/Encounter')
    .set('content-type', FHIR_JSON)
    .send(
      JSON.stringify({
        resourceType: 'Encounter',
        status: 'finished',
        class: { system: 'http://terminology.hl7.org/CodeSystem/v3-ActCode', code: 'AMB' },
        subject: { reference: `Patient/${patient}` },
        participant: [{ individual: { reference: `Practitioner/${practitioner}` } }],
      })
    );
  expect(visit.status, visit.text).toBe(201);
  const password = 'a long enough passphrase 42';
  await createUser(ours, { username: `${name}-pat`, password, fhirUser: `Patient/${patient}` });
  await createUser(ours, { username: `${name}-doc`, password, fhirUser: `Practitioner/${practitioner}` });
  return {
    patient: `Patient/${patient}`,
    practitioner: `Practitioner/${practitioner}`,
    patientSide: await userToken(ours, { username: `${name}-pat`, password, scope: 'openid fhirUser launch/patient patient/*.cruds' }),
    provider: await userToken(ours, { username: `${name}-doc`, password, scope: 'openid fhirUser user/*.cruds' }),
  };
}

async function put(server: TestServer, resource: { resourceType: string; id: string; [field: string]: unknown }): Promise<void> {
  const res = await server.request.put(`/fhir/${resource.resourceType}/${resource.id}`).set('content-type', FHIR_JSON).send(JSON.stringify(resource));
  expect(res.status, res.text).toBeLessThan(300);
}

/** Sends a Communication through the API with a user's token. */
async function send(as: IssuedToken, message: Communication): Promise<Communication> {
  const res = await as.request.post('/fhir/Communication').set('content-type', FHIR_JSON).send(JSON.stringify(message));
  expect(res.status, res.text).toBe(201);
  return res.body;
}

function startThread(team: CareTeam, topic: string): Promise<Communication> {
  return send(team.patientSide, {
    resourceType: 'Communication',
    status: 'in-progress',
    subject: { reference: team.patient },
    recipient: [{ reference: team.practitioner }],
    topic: { text: topic },
    category: [{ coding: [{ system: MESSAGE_CATEGORY_SYSTEM, code: 'medical-question' }] }],
  });
}

function write(as: IssuedToken, team: CareTeam, header: Communication, text: string, answers?: Communication): Promise<Communication> {
  return send(as, {
    resourceType: 'Communication',
    status: 'completed',
    subject: { reference: team.patient },
    partOf: [{ reference: `Communication/${header.id}` }],
    ...(answers ? { inResponseTo: [{ reference: `Communication/${answers.id}` }] } : {}),
    payload: [{ contentString: text }],
  });
}

interface Delivery {
  kind: string;
  status: string;
  attempts: number;
  lastError?: string;
}

/** The EHR delivery of a message, as `$delivery-status` shows it to staff. */
async function ehrDelivery(server: TestServer, message: Communication): Promise<Delivery> {
  const res = await server.request.get(`/fhir/Communication/${message.id}/$delivery-status`);
  expect(res.status, res.text).toBe(200);
  const deliveries = ((res.body as Parameters).parameter ?? []).map((p) =>
    Object.fromEntries((p.part ?? []).map((part) => [part.name, part.valueCode ?? part.valueInteger ?? part.valueString ?? part.valueInstant]))
  ) as unknown as Delivery[];
  const ehrDeliveries = deliveries.filter((d) => d.kind === 'ehr');
  expect(ehrDeliveries).toHaveLength(1);
  return ehrDeliveries[0];
}

/** Retries an assertion until it passes or time runs out. */
async function eventually<T>(check: () => Promise<T>, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await check();
    } catch (err) {
      if (Date.now() > deadline) {
        throw err;
      }
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
}

/** Every copy of one of our resources the EHR holds, found by our identifier (or tag). */
async function copiesInEhr<T>(type: 'Communication' | 'Provenance', id: string): Promise<T[]> {
  const key = `${CARETHREAD_IDENTIFIER_SYSTEM}|${type}/${id}`;
  const res = await ehr.request.get(`/fhir/${type}`).query({ [type === 'Provenance' ? '_tag' : 'identifier']: key, _count: 10 });
  expect(res.status, res.text).toBe(200);
  return ((res.body as Bundle).entry ?? []).map((e) => e.resource as T);
}

/** Our thread: the header, then its messages in the order they were sent. */
async function threadOf(server: TestServer, header: Communication): Promise<Communication[]> {
  const res = await server.request.get('/fhir/Communication').query({ 'part-of': `Communication/${header.id}`, _count: 100 });
  expect(res.status, res.text).toBe(200);
  const messages = ((res.body as Bundle).entry ?? []).map((e) => e.resource as Communication);
  return [header, ...messages.sort((a, b) => (a.sent! < b.sent! ? -1 : 1))];
}

async function provenanceOf(server: TestServer, message: Communication): Promise<Provenance> {
  const res = await server.request.get('/fhir/Provenance').query({ target: `Communication/${message.id}` });
  expect(res.status, res.text).toBe(200);
  const entries = (res.body as Bundle).entry ?? [];
  expect(entries).toHaveLength(1);
  return entries[0].resource as Provenance;
}

/**
 * The whole thread is in the EHR: each message and each Provenance exactly once, their
 * references translated to the EHR's ids, written in thread order; and our side says so.
 */
async function expectThreadInEhr(ours: TestServer, header: Communication): Promise<void> {
  const thread = await threadOf(ours, header);
  const ehrIds = new Map<string, string>();
  let previous = '';
  for (const message of thread) {
    const copies = await copiesInEhr<Communication>('Communication', message.id!);
    expect(copies, `copies of Communication/${message.id}`).toHaveLength(1);
    const [copy] = copies;
    ehrIds.set(message.id!, copy.id!);
    expect(copy.id).not.toBe(message.id);
    expect(copy.payload).toEqual(message.payload);
    expect(copy.subject).toEqual(message.subject);
    expect(copy.sent).toBe(message.sent);
    if (message.partOf) {
      expect(copy.partOf).toEqual([{ reference: `Communication/${ehrIds.get(header.id!)}` }]);
    }
    if (message.inResponseTo) {
      const answered = message.inResponseTo[0].reference!.replace('Communication/', '');
      expect(ehrIds.has(answered), 'the answered message was delivered first').toBe(true);
      expect(copy.inResponseTo).toEqual([{ reference: `Communication/${ehrIds.get(answered)}` }]);
    }
    expect(copy.meta!.lastUpdated! >= previous, 'delivered in thread order').toBe(true);

    const provenance = await provenanceOf(ours, message);
    const provenanceCopies = await copiesInEhr<Provenance>('Provenance', provenance.id!);
    expect(provenanceCopies, `copies of Provenance/${provenance.id}`).toHaveLength(1);
    const [provenanceCopy] = provenanceCopies;
    expect(provenanceCopy.target).toContainEqual({ reference: `Communication/${copy.id}` });
    expect(provenanceCopy.target).toContainEqual({ reference: message.subject!.reference });
    expect(provenanceCopy.activity).toEqual(provenance.activity);
    expect(provenanceCopy.meta!.lastUpdated! >= copy.meta!.lastUpdated!).toBe(true);
    previous = provenanceCopy.meta!.lastUpdated!;

    const delivery = await ehrDelivery(ours, message);
    expect(delivery.status).toBe('delivered');
    expect(delivery.lastError).toBeUndefined();
  }
}

describe('delivery with client_secret_basic, through EHR outages and our restarts', () => {
  let ours: TestServer;
  let env: Record<string, string>;
  let team: CareTeam;
  let header: Communication;
  let answered: Communication;

  beforeAll(async () => {
    const client = await registerOnEhr({ token_endpoint_auth_method: 'client_secret_basic' });
    env = { EHR_FHIR_URL: ehr.fhirBase, EHR_CLIENT_ID: client.client_id, EHR_CLIENT_SECRET: client.client_secret! };
    ours = await startCareThread(env, { port: await freePort() });
    team = await careTeam(ours, 'basic');
  });

  it('puts every message and its Provenance into the EHR once, in thread order', async () => {
    header = await startThread(team, 'Knee after the marathon');
    const m1 = await write(team.patientSide, team, header, 'My knee still hurts two weeks after the run.');
    const r1 = await write(team.provider, team, header, 'Rest it for a week and use ice.', m1);
    // An urgent message: the automatic reply is a message of the thread too, sent by us.
    const m2 = await write(team.patientSide, team, header, 'Now I also have chest pain when climbing stairs.', r1);
    answered = await write(team.provider, team, header, 'Please call 911 now; I will follow up tomorrow.', m2);

    const thread = await threadOf(ours, header);
    expect(thread).toHaveLength(6);
    await eventually(async () => {
      for (const message of thread) {
        expect((await ehrDelivery(ours, message)).status).toBe('delivered');
      }
    });
    await expectThreadInEhr(ours, header);

    // Our own sender (the automatic reply) is not in the EHR: it is referred to at our base.
    const autoReply = thread.find((m) => m.sender?.reference === 'Organization/carethread')!;
    const [copy] = await copiesInEhr<Communication>('Communication', autoReply.id!);
    expect(copy.sender?.reference).toBe(`${ours.fhirBase}/Organization/carethread`);
    expect(copy.identifier).toContainEqual({ system: CARETHREAD_IDENTIFIER_SYSTEM, value: `Communication/${autoReply.id}` });
  }, 120_000);

  it('keeps messages pending while the EHR is down, across our restart, and delivers each once when it returns', async () => {
    await ehr.stop();
    const m3 = await write(team.patientSide, team, header, 'The knee is swollen again this morning.', answered);
    const r3 = await write(team.provider, team, header, 'Come in on Thursday at nine.', m3);

    const pending = await eventually(async () => {
      const delivery = await ehrDelivery(ours, m3);
      expect(delivery.status).toBe('pending');
      expect(delivery.attempts).toBeGreaterThanOrEqual(2);
      expect(delivery.lastError).toMatch(/^EHR unreachable/);
      return delivery;
    });
    expect(pending.lastError).not.toMatch(/knee|swollen/i);
    // The reply waits behind the message it answers: not even tried yet.
    const waiting = await ehrDelivery(ours, r3);
    expect(waiting).toMatchObject({ status: 'pending', attempts: 0 });

    // Our server restarts (same database, same URL) while the EHR is still down.
    ours = await restartCareThread(ours, env);
    const m4 = await write(team.patientSide, team, header, 'Thursday works, thank you.', r3);
    await eventually(async () => {
      const delivery = await ehrDelivery(ours, m3);
      expect(delivery.attempts).toBeGreaterThan(pending.attempts);
      expect(delivery.status).toBe('pending');
    });
    expect((await ehrDelivery(ours, m4)).status).toBe('pending');

    // The EHR comes back, over the same database, at the same URL.
    ehr = await startTestServer({ port: ehrPort, database: ehr.database });
    await eventually(async () => {
      for (const message of [m3, r3, m4]) {
        expect((await ehrDelivery(ours, message)).status).toBe('delivered');
      }
    }, 60_000);
    await expectThreadInEhr(ours, header);
  }, 180_000);

  it('sends nothing twice when a delivery is repeated (its acknowledgement lost)', async () => {
    // As if every delivery had reached the EHR but our record of it had not been written.
    const reset = await ours.app.db.query(`UPDATE outbox SET status = 'pending', next_attempt_at = now() WHERE kind = 'ehr' RETURNING id`);
    expect(reset.length).toBe(18);
    await allDelivered(ours);
    await expectThreadInEhr(ours, header);
  }, 60_000);
});

describe('delivery with private_key_jwt', () => {
  it('authorizes with a signed assertion and delivers the thread', async () => {
    const { privateKey, publicKey } = await generateKeyPair('ES384', { extractable: true });
    const kid = 'carethread-chart-1';
    const publicJwk = { ...(await exportJWK(publicKey)), kid, alg: 'ES384', use: 'sig' };
    const client = await registerOnEhr({ token_endpoint_auth_method: 'private_key_jwt', jwks: { keys: [publicJwk] } });
    const ours = await startCareThread({
      EHR_FHIR_URL: ehr.fhirBase,
      EHR_CLIENT_ID: client.client_id,
      EHR_PRIVATE_KEY: JSON.stringify({ ...(await exportJWK(privateKey)), kid }),
    });
    const team = await careTeam(ours, 'jwt');
    const header = await startThread(team, 'Refill question');
    const m1 = await write(team.patientSide, team, header, 'May I get a refill before my trip?');
    const r1 = await write(team.provider, team, header, 'Yes, sent to your pharmacy.', m1);
    await eventually(async () => {
      for (const message of [header, m1, r1]) {
        expect((await ehrDelivery(ours, message)).status).toBe('delivered');
      }
    });
    await expectThreadInEhr(ours, header);
  }, 120_000);
});

describe('a token the EHR no longer accepts', () => {
  it('is replaced at once: the delivery succeeds in the same attempt', async () => {
    const client = await registerOnEhr({ token_endpoint_auth_method: 'client_secret_basic' });
    // A pass-through in front of the EHR's FHIR API, to see which token each request carried.
    const proxy = await passThrough(ehr.baseUrl);
    try {
      const ours = await startCareThread({ EHR_FHIR_URL: `${proxy.url}/fhir`, EHR_CLIENT_ID: client.client_id, EHR_CLIENT_SECRET: client.client_secret! });
      const team = await careTeam(ours, 'revoked');
      const header = await startThread(team, 'Lab results');
      await allDelivered(ours);
      const used = proxy.seen.at(-1)!.authorization!;

      // The EHR revokes the token CareThread holds.
      const revoked = await ehr.anonymous.post('/auth/revoke').auth(client.client_id, client.client_secret!).type('form').send({ token: used.slice('Bearer '.length) });
      expect(revoked.status).toBe(200);
      const before = proxy.seen.length;
      const m1 = await write(team.patientSide, team, header, 'Are my lab results back yet?');
      await eventually(async () => expect((await ehrDelivery(ours, m1)).status).toBe('delivered'));

      const after = proxy.seen.slice(before);
      expect(after[0]).toMatchObject({ authorization: used, status: 401 });
      expect(after.slice(1).every((r) => r.authorization !== used && r.status < 300)).toBe(true);
      expect((await ehrDelivery(ours, m1)).attempts).toBe(1);
      await expectThreadInEhr(ours, header);
    } finally {
      await proxy.close();
    }
  }, 120_000);
});

describe('an EHR that refuses a resource', () => {
  it('marks that delivery failed with a short, PHI-free error, and holds the rest of the thread', async () => {
    // A static token that may write Communications but not Provenance.
    const token = await backendToken(ehr, { registeredScope: 'system/Communication.crus' });
    const ours = await startCareThread({ EHR_FHIR_URL: ehr.fhirBase, EHR_BEARER_TOKEN: token.accessToken });
    const team = await careTeam(ours, 'refused');
    const header = await startThread(team, 'Billing question about my colonoscopy');
    const m1 = await write(team.patientSide, team, header, 'Why was I billed twice for the colonoscopy?');
    const provenance = await provenanceOf(ours, header);

    const failed = await eventually(async () => {
      const rows = await ours.app.db.query(`SELECT status, attempts, last_error FROM outbox WHERE subject = $1`, [`Provenance/${provenance.id}`]);
      expect(rows[0]?.status).toBe('failed');
      return rows[0];
    });
    expect(failed.attempts).toBe(1);
    expect(failed.last_error).toBe('EHR refused the Provenance (403 forbidden)');
    expect((await ehrDelivery(ours, header)).status).toBe('delivered');
    // Thread order holds: the message waits behind the failed delivery, for an operator.
    expect(await ehrDelivery(ours, m1)).toMatchObject({ status: 'pending', attempts: 0 });
    expect(await copiesInEhr('Communication', m1.id!)).toHaveLength(0);
  }, 120_000);
});

/** An HTTP pass-through to `target` that records each request's Authorization and answer. */
async function passThrough(target: string): Promise<{ url: string; seen: { authorization?: string; status: number }[]; close(): Promise<void> }> {
  const seen: { authorization?: string; status: number }[] = [];
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', async () => {
      const headers = Object.fromEntries(
        Object.entries(req.headers).filter(([name, value]) => typeof value === 'string' && !['host', 'connection', 'content-length', 'keep-alive'].includes(name))
      ) as Record<string, string>;
      const body = chunks.length ? Buffer.concat(chunks) : undefined;
      try {
        const answer = await fetch(`${target}${req.url}`, { method: req.method, headers, body });
        if (req.url?.startsWith('/fhir/') && !req.url.includes('.well-known')) {
          seen.push({ authorization: req.headers.authorization, status: answer.status });
        }
        res.writeHead(answer.status, { 'content-type': answer.headers.get('content-type') ?? 'application/json' });
        res.end(Buffer.from(await answer.arrayBuffer()));
      } catch {
        res.writeHead(502).end();
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    seen,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
