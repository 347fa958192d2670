/**
 * FHIR Subscriptions through HTTP with real tokens: a rest-hook to a real local HTTP receiver
 * gets exactly one id-only notification per matching message (with its configured headers,
 * never the message text), nothing for other messages, every notification after being down,
 * and stops on 410 Gone; invalid Subscriptions are refused and nothing is stored; a
 * websocket client (the `ws` library) binds and hears `ping <id>`; the patient side can
 * neither create nor read Subscriptions, and a practitioner may subscribe only to their own
 * messages.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Bundle, Communication, Resource, Subscription } from '@medplum/fhirtypes';
import type supertest from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { testEngine } from './support/database.js';
import { startTestServer } from './support/server.js';
import type { TestServer } from './support/server.js';
import { createUser, registerPublicClient, userToken } from './support/tokens.js';
import type { IssuedToken } from './support/tokens.js';

type Agent = ReturnType<typeof supertest.agent>;

const FHIR_JSON = 'application/fhir+json';
const CATEGORY_SYSTEM = 'https://carethread.dev/fhir/CodeSystem/message-category';
const PASSWORD = 'correct horse battery staple';
const SECRET_TEXT = 'my rash is spreading after the new pills';

/** A real HTTP endpoint that records what it is sent; can go down and come back on its port. */
class Receiver {
  readonly requests: { path: string; headers: http.IncomingHttpHeaders; body: string }[] = [];
  private server: http.Server | undefined;
  port = 0;

  async start(): Promise<void> {
    if (this.server?.listening) {
      return;
    }
    this.server = http.createServer((req, res) => {
      let body = '';
      req.setEncoding('utf8');
      req.on('data', (chunk) => (body += chunk));
      req.on('end', () => {
        this.requests.push({ path: req.url ?? '', headers: req.headers, body });
        res.writeHead(req.url === '/gone' ? 410 : 200).end();
      });
    });
    await new Promise<void>((resolve) => this.server!.listen(this.port, '127.0.0.1', resolve));
    this.port = (this.server.address() as AddressInfo).port;
  }

  async stop(): Promise<void> {
    this.server?.closeAllConnections();
    await new Promise<void>((resolve) => this.server?.close(() => resolve()) ?? resolve());
  }

  url(path: string): string {
    return `http://127.0.0.1:${this.port}${path}`;
  }

  /** Requests to `path` that name `Communication/<id>` (or, for empty bodies, all of them). */
  to(path: string): { path: string; headers: http.IncomingHttpHeaders; body: string }[] {
    return this.requests.filter((r) => r.path === path);
  }

  naming(path: string, id: string) {
    return this.to(path).filter((r) => r.body.includes(`Communication/${id}`));
  }
}

let server: TestServer;
const receiver = new Receiver();
let patient: string;
let doctorX: string;
let doctorY: string;
let alice: IssuedToken;
let drX: IssuedToken;
let drY: IssuedToken;
/** The integration's Subscription to Dr X's messages (id-only payload, two headers). */
let hook: string;

const ref = (reference: string) => ({ reference });
const idOf = (reference: string) => reference.split('/')[1];

function send(agent: Agent, method: 'post' | 'put', path: string, body: unknown) {
  return agent[method](`/fhir/${path}`).set('content-type', FHIR_JSON).send(JSON.stringify(body));
}

async function adminCreate<T extends Resource>(resource: T): Promise<string> {
  const res = await send(server.request, 'post', resource.resourceType, resource);
  if (res.status !== 201) {
    throw new Error(`Could not create ${resource.resourceType}: ${res.status} ${JSON.stringify(res.body)}`);
  }
  return `${resource.resourceType}/${res.body.id}`;
}

/** A message as an integrated EHR writes it (the integrator path of the messaging rules). */
async function messageTo(recipient: string, text = SECRET_TEXT): Promise<string> {
  return adminCreate<Communication>({
    resourceType: 'Communication',
    status: 'completed',
    subject: ref(patient),
    sender: ref(patient),
    recipient: [ref(recipient)],
    payload: [{ contentString: text }],
  });
}

function restHook(criteria: string, endpoint: string, extra: Partial<Subscription['channel']> = {}): Subscription {
  return {
    resourceType: 'Subscription',
    status: 'requested',
    reason: 'New messages for the EHR inbox',
    criteria,
    channel: { type: 'rest-hook', endpoint, ...extra },
  };
}

async function waitFor<T>(probe: () => T | Promise<T>, what: string, timeoutMs = 15_000): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    // An empty list is not there yet.
    if (value && !(Array.isArray(value) && value.length === 0)) {
      return value as NonNullable<T>;
    }
    if (Date.now() > deadline) {
      throw new Error(`Timed out waiting for ${what}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

/** The rest-hook outbox entries queued for a message (the matcher's decisions). */
async function restHookEntries(message: string) {
  return server.app.db.query<{ status: string; attempts: number; last_error: string | null; idempotency_key: string }>(
    `SELECT status, attempts, last_error, idempotency_key FROM outbox WHERE kind = 'rest-hook' AND idempotency_key LIKE $1`,
    [`%:${message}/%`]
  );
}

/** Waits until nothing is pending for the outbox, then a little longer: whatever was owed went out. */
async function settled(): Promise<void> {
  await waitFor(async () => (await server.app.db.query(`SELECT 1 FROM outbox WHERE status = 'pending' AND kind = 'rest-hook'`)).length === 0, 'an idle outbox');
  await new Promise((resolve) => setTimeout(resolve, 200));
}

async function countSubscriptions(): Promise<number> {
  const res = await server.request.get('/fhir/Subscription?_summary=count');
  expect(res.status).toBe(200);
  return (res.body as Bundle).total!;
}

beforeAll(async () => {
  await receiver.start();
  server = await startTestServer({ env: { OUTBOX_POLL_MS: '50', OUTBOX_BASE_BACKOFF_MS: '100' } });
  doctorX = await adminCreate({ resourceType: 'Practitioner', name: [{ family: 'Xu' }] });
  doctorY = await adminCreate({ resourceType: 'Practitioner', name: [{ family: 'Young' }] });
  patient = await adminCreate({ resourceType: 'Patient', name: [{ family: 'Amsel', given: ['Alice'] }] });
  await adminCreate({
    resourceType: 'Encounter',
    status: 'finished',
    class: { system: 'http://terminology.hl7.org/CodeSystem/v3-ActCode', code: 'AMB' },
    subject: ref(patient),
    participant: [{ individual: ref(doctorX) }, { individual: ref(doctorY) }],
  });
  await createUser(server, { username: 'alice', password: PASSWORD, fhirUser: patient });
  await createUser(server, { username: 'dr-x', password: PASSWORD, fhirUser: doctorX });
  await createUser(server, { username: 'dr-y', password: PASSWORD, fhirUser: doctorY });
  const clientId = await registerPublicClient(server);
  alice = await userToken(server, { username: 'alice', password: PASSWORD, scope: 'openid fhirUser launch/patient patient/*.cruds', clientId });
  drX = await userToken(server, { username: 'dr-x', password: PASSWORD, scope: 'openid fhirUser user/*.cruds', clientId });
  drY = await userToken(server, { username: 'dr-y', password: PASSWORD, scope: 'openid fhirUser user/*.cruds', clientId });

  const created = await send(
    server.request,
    'post',
    'Subscription',
    restHook(`Communication?recipient=${doctorX}`, receiver.url('/hook'), {
      payload: FHIR_JSON,
      header: ['Authorization: Bearer integration-secret', 'X-Integration: ehr-1'],
    })
  );
  expect(created.status).toBe(201);
  expect(created.body.status).toBe('active');
  hook = created.body.id;
});

afterAll(async () => {
  await server?.stop({ dropDatabase: true });
  await receiver.stop();
});

describe('rest-hook', () => {
  it('POSTs exactly one id-only notification, with the configured headers, for a matching message', async () => {
    const message = await messageTo(doctorX);
    const [notification] = await waitFor(() => receiver.naming('/hook', idOf(message)), 'the notification');
    await settled();
    expect(receiver.naming('/hook', idOf(message))).toHaveLength(1);

    expect(notification.headers['content-type']).toMatch(/^application\/fhir\+json/);
    expect(notification.headers.authorization).toBe('Bearer integration-secret');
    expect(notification.headers['x-integration']).toBe('ehr-1');
    const bundle = JSON.parse(notification.body) as Bundle;
    expect(bundle.resourceType).toBe('Bundle');
    expect(bundle.type).toBe('history');
    expect(bundle.entry).toHaveLength(1);
    const [entry] = bundle.entry!;
    expect(entry.fullUrl).toBe(`${server.fhirBase}/${message}`);
    expect(entry.request).toEqual({ method: 'POST', url: 'Communication' });
    expect(entry.response?.location).toBe(`${message}/_history/1`);
    // Id only: no resource, no message text, nothing about the patient.
    expect(entry.resource).toBeUndefined();
    expect(notification.body).not.toContain('payload');
    expect(notification.body).not.toContain('contentString');
    expect(notification.body).not.toContain('rash');
    expect(notification.body).not.toContain(patient);

    // The receiver reads the message with its own token.
    expect((await server.request.get(`/fhir/${message}`)).status).toBe(200);
  });

  it('sends nothing for a message to someone else', async () => {
    const before = receiver.to('/hook').length;
    const message = await messageTo(doctorY);
    await settled();
    expect(await restHookEntries(message)).toHaveLength(0);
    expect(receiver.to('/hook')).toHaveLength(before);
  });

  it('notifies of a message a patient sends through the portal, header and message alike', async () => {
    const header = await send(alice.request, 'post', 'Communication', {
      resourceType: 'Communication',
      status: 'in-progress',
      subject: ref(patient),
      topic: { text: 'Rash' },
      category: [{ coding: [{ system: CATEGORY_SYSTEM, code: 'medical-question' }] }],
      recipient: [ref(doctorX)],
    });
    expect(header.status).toBe(201);
    const message = await send(alice.request, 'post', 'Communication', {
      resourceType: 'Communication',
      status: 'in-progress',
      subject: ref(patient),
      partOf: [ref(`Communication/${header.body.id}`)],
      payload: [{ contentString: SECRET_TEXT }],
    });
    expect(message.status).toBe(201);
    await waitFor(() => receiver.naming('/hook', message.body.id).length === 1, 'the message notification');
    await settled();
    expect(receiver.naming('/hook', header.body.id)).toHaveLength(1);
    expect(receiver.naming('/hook', message.body.id)).toHaveLength(1);
    expect(receiver.to('/hook').every((r) => !r.body.includes('rash'))).toBe(true);
  });

  it('delivers, once, what matched while the receiver was down', async () => {
    await receiver.stop();
    try {
      const message = await messageTo(doctorX, 'sent while the EHR was down');
      // The outbox tried and failed at least once while nothing listened.
      await waitFor(async () => (await restHookEntries(message)).find((e) => e.attempts >= 1 && e.last_error), 'a failed attempt');
      expect(receiver.naming('/hook', idOf(message))).toHaveLength(0);
      await receiver.start();
      await waitFor(() => receiver.naming('/hook', idOf(message)).length > 0, 'the late notification');
      await settled();
      expect(receiver.naming('/hook', idOf(message))).toHaveLength(1);
      expect((await restHookEntries(message)).map((e) => e.status)).toEqual(['delivered']);
    } finally {
      await receiver.start().catch(() => undefined);
    }
  });

  it('POSTs an empty notification when the Subscription asks for no payload', async () => {
    const created = await send(server.request, 'post', 'Subscription', restHook(`Communication?recipient=${doctorY}`, receiver.url('/bare')));
    expect(created.status).toBe(201);
    await messageTo(doctorY);
    const [notification] = await waitFor(() => receiver.to('/bare'), 'the bare notification');
    expect(notification.body).toBe('');
    await send(server.request, 'put', `Subscription/${created.body.id}`, { ...created.body, status: 'off' });
  });

  it('sets the Subscription to error, and stops, when the endpoint answers 410 Gone', async () => {
    const created = await send(server.request, 'post', 'Subscription', restHook(`Communication?recipient=${doctorX}`, receiver.url('/gone'), { payload: FHIR_JSON }));
    expect(created.status).toBe(201);
    const first = await messageTo(doctorX);
    const failed = await waitFor(async () => (await restHookEntries(first)).find((e) => e.idempotency_key.startsWith(`sub:${created.body.id}:`) && e.status === 'failed'), 'the failed delivery');
    expect(failed.attempts).toBe(1);
    const subscription = (await server.request.get(`/fhir/Subscription/${created.body.id}`)).body as Subscription;
    expect(subscription.status).toBe('error');
    expect(subscription.error).toMatch(/410/);

    const second = await messageTo(doctorX);
    await waitFor(() => receiver.naming('/hook', idOf(second)).length > 0, 'the other Subscription still notified');
    await settled();
    expect(receiver.to('/gone')).toHaveLength(1);
    expect((await restHookEntries(second)).some((e) => e.idempotency_key.startsWith(`sub:${created.body.id}:`))).toBe(false);
  });
});

describe('what a Subscription may be', () => {
  it('refuses invalid Subscriptions with a 4xx OperationOutcome and stores nothing', async () => {
    const before = await countSubscriptions();
    const endpoint = receiver.url('/hook');
    const invalid: [string, unknown][] = [
      ['no criteria', { ...restHook('', endpoint), criteria: undefined }],
      ['an unknown search parameter', restHook('Communication?no-such-param=1', endpoint)],
      ['a type that never notifies', restHook('Patient?name=smith', endpoint)],
      ['an unknown type', restHook('Nonsense?x=1', endpoint)],
      ['a result parameter', restHook(`Communication?recipient=${doctorX}&_count=5`, endpoint)],
      ['a channel type not supported', { ...restHook(`Communication?recipient=${doctorX}`, endpoint), channel: { type: 'email', endpoint: 'mailto:a@b.example' } }],
      ['a rest-hook without endpoint', { ...restHook(`Communication?recipient=${doctorX}`, endpoint), channel: { type: 'rest-hook' } }],
      ['a non-http endpoint', restHook(`Communication?recipient=${doctorX}`, 'ftp://ehr.example/hook')],
      ['credentials in the endpoint', restHook(`Communication?recipient=${doctorX}`, 'https://user:pw@ehr.example/hook')],
      ['a full-resource payload', restHook(`Communication?recipient=${doctorX}`, endpoint, { payload: 'application/fhir+xml' })],
      ['a malformed header', restHook(`Communication?recipient=${doctorX}`, endpoint, { header: ['no colon here'] })],
      ['a reserved header', restHook(`Communication?recipient=${doctorX}`, endpoint, { header: ['Content-Type: text/plain'] })],
      ['no status', { ...restHook(`Communication?recipient=${doctorX}`, endpoint), status: undefined }],
    ];
    for (const [what, body] of invalid) {
      const res = await send(server.request, 'post', 'Subscription', body);
      expect([400, 422], what).toContain(res.status);
      expect(res.body.resourceType, what).toBe('OperationOutcome');
    }
    expect(await countSubscriptions()).toBe(before);
  });

  it('checks updates and patches too', async () => {
    const current = (await server.request.get(`/fhir/Subscription/${hook}`)).body as Subscription;
    const put = await send(server.request, 'put', `Subscription/${hook}`, { ...current, criteria: 'Patient?name=x' });
    expect(put.status).toBe(422);
    const patched = await server.request
      .patch(`/fhir/Subscription/${hook}`)
      .set('content-type', 'application/json-patch+json')
      .send(JSON.stringify([{ op: 'replace', path: '/channel/endpoint', value: 'ftp://elsewhere.example/' }]));
    expect(patched.status).toBe(422);
    const renamed = await server.request
      .patch(`/fhir/Subscription/${hook}`)
      .set('content-type', 'application/json-patch+json')
      .send(JSON.stringify([{ op: 'replace', path: '/reason', value: 'Renamed feed' }]));
    expect(renamed.status).toBe(200);
    expect(renamed.body.reason).toBe('Renamed feed');
    expect(renamed.body.channel.endpoint).toBe(receiver.url('/hook'));
  });

  it('keeps the patient side out: no create, read or search', async () => {
    const create = await send(alice.request, 'post', 'Subscription', restHook(`Communication?subject=${patient}`, receiver.url('/hook')));
    expect(create.status).toBe(403);
    expect((await alice.request.get(`/fhir/Subscription/${hook}`)).status).toBe(403);
    expect((await alice.request.get('/fhir/Subscription')).status).toBe(403);
  });

  it('lets a practitioner subscribe, by websocket, only to messages addressed to them', async () => {
    const own = await send(drX.request, 'post', 'Subscription', { ...restHook(`Communication?recipient=${doctorX}`, ''), channel: { type: 'websocket' } });
    expect(own.status).toBe(201);
    expect(own.body.status).toBe('active');
    const theirs = await send(drX.request, 'post', 'Subscription', { ...restHook(`Communication?recipient=${doctorY}`, ''), channel: { type: 'websocket' } });
    expect(theirs.status).toBe(403);
    const everything = await send(drX.request, 'post', 'Subscription', { ...restHook(`Communication?subject=${patient}`, ''), channel: { type: 'websocket' } });
    expect(everything.status).toBe(403);
    // A rest-hook has the server POST wherever it is told: integrations only.
    const hookForSelf = await send(drX.request, 'post', 'Subscription', restHook(`Communication?recipient=${doctorX}`, receiver.url('/hook')));
    expect(hookForSelf.status).toBe(403);
  });

  it('never shows staff an integration’s rest-hook, whose headers carry its credentials', async () => {
    const websocket = await send(drX.request, 'post', 'Subscription', { ...restHook(`Communication?recipient=${doctorX}`, ''), channel: { type: 'websocket' } });
    expect(websocket.status).toBe(201);
    const searched = await drX.request.get('/fhir/Subscription').query({ _count: '100' });
    expect(searched.status).toBe(200);
    const found = (searched.body.entry ?? []).map((e: { resource: { id: string; channel: { type: string } } }) => e.resource);
    expect(found.map((s: { id: string }) => s.id)).toContain(websocket.body.id);
    expect(found.every((s: { channel: { type: string } }) => s.channel.type === 'websocket')).toBe(true);
    expect(searched.text).not.toContain('integration-secret');
    const before = await server.request.get(`/fhir/Subscription/${hook}`);
    for (const attempt of [
      drX.request.get(`/fhir/Subscription/${hook}`),
      drX.request.get(`/fhir/Subscription/${hook}/_history`),
      drX.request.get('/fhir/Subscription').query({ _id: hook }),
      drX.request.get('/fhir/Subscription').query({ type: 'rest-hook' }),
      drX.request.get('/fhir/Subscription/_history'),
      send(drX.request, 'put', `Subscription/${hook}`, { ...restHook(`Communication?recipient=${doctorX}`, ''), id: hook, channel: { type: 'websocket' } }),
      drX.request.delete(`/fhir/Subscription/${hook}`),
    ]) {
      const res = await attempt;
      expect(res.text).not.toContain('integration-secret');
      if (res.status === 200) {
        expect((res.body.entry ?? []).every((e: { resource: { channel: { type: string } } }) => e.resource.channel.type === 'websocket')).toBe(true);
      } else {
        expect([403, 404]).toContain(res.status);
      }
    }
    // The integration's Subscription is untouched.
    const after = await server.request.get(`/fhir/Subscription/${hook}`);
    expect(after.body.channel.type).toBe('rest-hook');
    expect(after.body.meta.versionId).toBe(before.body.meta.versionId);
  });
});

describe('websocket', () => {
  let subscription: string;
  const wsUrl = () => `${server.baseUrl.replace(/^http/, 'ws')}/fhir/websocket`;

  beforeAll(async () => {
    const created = await send(drX.request, 'post', 'Subscription', {
      resourceType: 'Subscription',
      status: 'requested',
      reason: 'Provider app inbox',
      criteria: `Communication?recipient=${doctorX}`,
      channel: { type: 'websocket' },
    });
    expect(created.status).toBe(201);
    subscription = created.body.id;
  });

  /** Opens a socket and collects the text frames it receives. */
  async function connect(headers: Record<string, string> = {}): Promise<{ ws: WebSocket; frames: string[] }> {
    const ws = new WebSocket(wsUrl(), { headers });
    const frames: string[] = [];
    ws.on('message', (data) => frames.push(data.toString()));
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', reject);
    });
    return { ws, frames };
  }

  it('binds with the token in the bind message and pings on each matching message', async () => {
    const { ws, frames } = await connect();
    try {
      ws.send(`bind ${subscription} ${drX.accessToken}`);
      await waitFor(() => frames.includes(`bound ${subscription}`), 'bound');
      await messageTo(doctorY);
      await messageTo(doctorX);
      await waitFor(() => frames.includes(`ping ${subscription}`), 'the ping');
      await new Promise((resolve) => setTimeout(resolve, 200));
      expect(frames.filter((f) => f === `ping ${subscription}`)).toHaveLength(1);
      expect(frames.join('\n')).not.toContain('rash');
    } finally {
      ws.close();
    }
  });

  it('binds with the token in the upgrade request’s Authorization header', async () => {
    const { ws, frames } = await connect({ Authorization: `Bearer ${drX.accessToken}` });
    try {
      ws.send(`bind ${subscription}`);
      await waitFor(() => frames.includes(`bound ${subscription}`), 'bound');
      await messageTo(doctorX);
      await waitFor(() => frames.includes(`ping ${subscription}`), 'the ping');
    } finally {
      ws.close();
    }
  });

  it('refuses a bind without a valid token, by someone else, or to a rest-hook Subscription', async () => {
    const { ws, frames } = await connect();
    try {
      ws.send(`bind ${subscription}`);
      ws.send(`bind ${subscription} not-a-token`);
      ws.send(`bind ${subscription} ${drY.accessToken}`);
      ws.send(`bind ${subscription} ${alice.accessToken}`);
      ws.send(`bind ${hook} ${server.admin.token}`);
      await waitFor(() => frames.length >= 5, 'five answers');
      expect(frames.every((f) => f.startsWith('error '))).toBe(true);
      await messageTo(doctorX);
      await new Promise((resolve) => setTimeout(resolve, 300));
      expect(frames.some((f) => f.startsWith('ping') || f.startsWith('bound'))).toBe(false);
    } finally {
      ws.close();
    }
  });

  it('refuses an upgrade with a bad Authorization header or a token in the URL', async () => {
    for (const [url, headers] of [
      [wsUrl(), { Authorization: 'Bearer not-a-token' }],
      [`${wsUrl()}?access_token=${drX.accessToken}`, {}],
    ] as const) {
      const ws = new WebSocket(url, { headers });
      const status = await new Promise<number | undefined>((resolve) => {
        ws.once('unexpected-response', (_req, res) => resolve(res.statusCode));
        ws.once('open', () => resolve(101));
        ws.once('error', () => resolve(undefined));
      });
      ws.terminate();
      expect(status).toBe(401);
    }
  });

  // Two instances on one PostgreSQL behave as one behind a load balancer (same public URL):
  // a message written through one reaches a socket held by the other, through NOTIFY.
  it.runIf(testEngine === 'postgres')('pings a client connected to another instance', async () => {
    const other = await startTestServer({ database: server.database, env: { BASE_URL: server.baseUrl, OUTBOX_POLL_MS: '50' } });
    try {
      const ws = new WebSocket(`${other.baseUrl.replace(/^http/, 'ws')}/fhir/websocket`);
      const frames: string[] = [];
      ws.on('message', (data) => frames.push(data.toString()));
      await new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject));
      ws.send(`bind ${subscription} ${drX.accessToken}`);
      await waitFor(() => frames.includes(`bound ${subscription}`), 'bound on the other instance');
      await messageTo(doctorX);
      await waitFor(() => frames.includes(`ping ${subscription}`), 'the ping on the other instance');
      ws.close();
    } finally {
      await other.stop();
    }
  });
});
