/**
 * Load and limits through the real server: per-user and per-client rate limits (429 with
 * Retry-After and an OperationOutcome, other callers unaffected, recovery, nothing written),
 * the request timeout and PostgreSQL's statement timeout (503 with Retry-After, never a
 * 500), load shedding by requests in flight and by event-loop delay (503 at once, health and
 * metrics still answer), the caps that bound memory (page size, Binary size), and /metrics
 * without METRICS_TOKEN (loopback only).
 */
import pg from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { testEngine } from './support/database.js';
import { adminCreate, expectRefused, FHIR_JSON } from './support/messaging.js';
import { startTestServer } from './support/server.js';
import type { TestServer } from './support/server.js';
import { backendToken, createUser, registerPublicClient, userToken } from './support/tokens.js';
import type { IssuedToken } from './support/tokens.js';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function expectOutcome(res: { status: number; body: { resourceType?: string; issue?: { code: string }[] }; headers: Record<string, string> }, status: number, code: string): void {
  expect(res.status, JSON.stringify(res.body)).toBe(status);
  expect(res.headers['content-type']).toMatch(/application\/fhir\+json/);
  expect(res.body.resourceType).toBe('OperationOutcome');
  expect(res.body.issue?.[0].code).toBe(code);
  expect(Number(res.headers['retry-after'])).toBeGreaterThan(0);
}

describe('rate limits on the FHIR API', () => {
  let server: TestServer;
  let alice: IssuedToken;
  let bob: IssuedToken;
  let alicePatient: string;
  let bobPatient: string;

  beforeAll(async () => {
    server = await startTestServer({ env: { API_REQUESTS_PER_MINUTE_PER_USER: '5', API_REQUESTS_PER_MINUTE_PER_CLIENT: '8' } });
    alicePatient = await adminCreate(server, { resourceType: 'Patient', name: [{ family: 'Limit', given: ['Alice'] }] });
    bobPatient = await adminCreate(server, { resourceType: 'Patient', name: [{ family: 'Limit', given: ['Bob'] }] });
    const clientId = await registerPublicClient(server);
    await createUser(server, { username: 'alice', password: 'alice-password-1', fhirUser: alicePatient });
    await createUser(server, { username: 'bob', password: 'bob-password-1', fhirUser: bobPatient });
    const scope = 'openid fhirUser launch/patient patient/*.cruds';
    alice = await userToken(server, { username: 'alice', password: 'alice-password-1', scope, clientId });
    bob = await userToken(server, { username: 'bob', password: 'bob-password-1', scope, clientId });
  });
  afterAll(async () => {
    vi.useRealTimers();
    await server?.stop({ dropDatabase: true });
  });

  it('answers a user over the limit 429 with Retry-After, and other users go on', async () => {
    for (let i = 0; i < 5; i++) {
      expect((await alice.request.get(`/fhir/${alicePatient}`)).status).toBe(200);
    }
    const refused = await alice.request.get(`/fhir/${alicePatient}`);
    expectOutcome(refused, 429, 'throttled');
    // Five a minute: the next token is 12 s away.
    expect(Number(refused.headers['retry-after'])).toBeLessThanOrEqual(12);
    // Bob signed in through the same app, but the limit is per user.
    expect((await bob.request.get(`/fhir/${bobPatient}`)).status).toBe(200);
  });

  it('writes nothing for a refused request', async () => {
    await expectRefused(
      server,
      429,
      () =>
        alice.request
          .post('/fhir/Communication')
          .set('content-type', FHIR_JSON)
          .send({ resourceType: 'Communication', status: 'in-progress', subject: { reference: alicePatient }, topic: { text: 'Refused' } }),
      /Too many requests/
    );
  });

  it('admits the user again once the bucket refills', async () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    vi.setSystemTime(Date.now() + 13_000);
    expect((await alice.request.get(`/fhir/${alicePatient}`)).status).toBe(200);
    expect((await alice.request.get(`/fhir/${alicePatient}`)).status).toBe(429);
    vi.useRealTimers();
  });

  it('limits a backend client acting for no user by its client id', async () => {
    const backend = await backendToken(server, { registeredScope: 'system/Patient.rs' });
    for (let i = 0; i < 8; i++) {
      expect((await backend.request.get(`/fhir/${bobPatient}`)).status).toBe(200);
    }
    expectOutcome(await backend.request.get(`/fhir/${bobPatient}`), 429, 'throttled');
    expect((await bob.request.get(`/fhir/${bobPatient}`)).status).toBe(200);
  });
});

describe('timeouts, load shedding and bounded sizes', () => {
  let server: TestServer;
  let patient: string;

  beforeAll(async () => {
    server = await startTestServer({
      env: { REQUEST_TIMEOUT_MS: '1500', MAX_IN_FLIGHT: '3', MAX_PAGE_SIZE: '5', DEFAULT_PAGE_SIZE: '5', MAX_BINARY_BYTES: '2048', DATABASE_POOL_SIZE: '2' },
    });
    patient = await adminCreate(server, { resourceType: 'Patient', name: [{ family: 'Slow' }] });
  });
  afterAll(async () => {
    await server?.stop({ dropDatabase: true });
  });

  /** Keeps every database connection of the server busy for `ms` (PGlite has one, the pool two). */
  function holdDatabase(ms: number): Promise<unknown> {
    const holders = testEngine === 'pglite' ? 1 : 2;
    return Promise.all(Array.from({ length: holders }, () => server.app.db.transaction(() => sleep(ms))));
  }

  it('answers 503 with Retry-After when a request outlives REQUEST_TIMEOUT_MS, and health still answers', async () => {
    const held = holdDatabase(3500);
    await sleep(50);
    const started = Date.now();
    const [slow, health] = await Promise.all([server.request.get(`/fhir/${patient}`), server.anonymous.get('/healthz')]);
    expectOutcome(slow, 503, 'timeout');
    expect(Date.now() - started).toBeLessThan(3500);
    expect(health.status).toBe(200);
    await held;
    // The abandoned handler finishes later with nobody to answer: a warning, not a 500.
    await vi.waitFor(() => expect(server.logs.some((l) => l.includes('request finished after its timeout'))).toBe(true), { timeout: 5000 });
    expect(server.logs.filter((l) => /"level":50/.test(l))).toEqual([]);
  });

  it('sheds new requests at MAX_IN_FLIGHT with 503 at once; health and metrics are never shed', async () => {
    const held = holdDatabase(1200);
    await sleep(50);
    const waiting = Array.from({ length: 3 }, () => server.request.get(`/fhir/${patient}`).then((r) => r.status));
    await vi.waitFor(() => expect(server.app.shedder.inFlight).toBe(3), { timeout: 1000 });
    const shed = await server.request.get(`/fhir/${patient}`);
    expectOutcome(shed, 503, 'transient');
    expect(Number(shed.headers['retry-after'])).toBe(1);
    expect((await server.anonymous.get('/healthz')).status).toBe(200);
    // Without METRICS_TOKEN, /metrics answers loopback clients, and nobody the local proxy forwards.
    const metrics = await server.anonymous.get('/metrics');
    expect(metrics.status).toBe(200);
    expect(metrics.text).toMatch(/^carethread_shed_requests_total\{reason="in_flight"\} 1$/m);
    expect((await server.anonymous.get('/metrics').set('X-Forwarded-For', '203.0.113.7')).status).toBe(403);
    await held;
    expect(await Promise.all(waiting)).toEqual([200, 200, 200]);
    expect((await server.request.get(`/fhir/${patient}`)).status).toBe(200);
  });

  it('caps a search page at MAX_PAGE_SIZE and links the next page', async () => {
    for (let i = 0; i < 6; i++) {
      await adminCreate(server, { resourceType: 'Patient', name: [{ family: `Paged${i}` }] });
    }
    const res = await server.request.get('/fhir/Patient?_count=1000');
    expect(res.status).toBe(200);
    expect(res.body.entry).toHaveLength(5);
    expect(res.body.link.some((l: { relation: string }) => l.relation === 'next')).toBe(true);
  });

  it('refuses a Binary over MAX_BINARY_BYTES with 413 and stores nothing', async () => {
    await expectRefused(server, 413, () => server.request.post('/fhir/Binary').set('content-type', 'application/pdf').send(Buffer.alloc(4096, 1)));
  });
});

describe('event-loop delay', () => {
  let server: TestServer;

  beforeAll(async () => {
    server = await startTestServer({ env: { MAX_EVENT_LOOP_DELAY_MS: '300' } });
  });
  afterAll(async () => {
    await server?.stop({ dropDatabase: true });
  });

  it('sheds requests while the event loop lags past MAX_EVENT_LOOP_DELAY_MS, then recovers', async () => {
    expect((await server.request.get('/fhir/Patient')).status).toBe(200);
    // Block this process's event loop (the server shares it) as a runaway handler would.
    const until = Date.now() + 1000;
    while (Date.now() < until) {
      // busy
    }
    await vi.waitFor(() => expect(server.app.shedder.overloaded()).toBe('event_loop'), { timeout: 1500, interval: 20 });
    expectOutcome(await server.request.get('/fhir/Patient'), 503, 'transient');
    expect((await server.anonymous.get('/healthz')).status).toBe(200);
    await vi.waitFor(() => expect(server.app.shedder.overloaded()).toBeUndefined(), { timeout: 3000, interval: 50 });
    expect((await server.request.get('/fhir/Patient')).status).toBe(200);
  });
});

describe.runIf(testEngine === 'postgres')('statement timeout (PostgreSQL)', () => {
  let server: TestServer;
  let locker: pg.Client;
  let patient: string;

  beforeAll(async () => {
    const first = await startTestServer();
    patient = await adminCreate(first, { resourceType: 'Patient', name: [{ family: 'Locked' }] });
    await first.stop();
    // Restarted over the migrated database: no migration has to fit the short timeout.
    server = await startTestServer({ database: first.database, env: { STATEMENT_TIMEOUT_MS: '300' } });
    locker = new pg.Client({ connectionString: server.database.databaseUrl });
    await locker.connect();
  });
  afterAll(async () => {
    await locker?.end();
    await server?.stop({ dropDatabase: true });
  });
  afterEach(async () => {
    await locker.query('ROLLBACK');
  });

  it('answers 503 with Retry-After when a statement is cancelled, and the write is not applied', async () => {
    await locker.query('BEGIN');
    await locker.query('LOCK TABLE "Patient" IN ACCESS EXCLUSIVE MODE');
    expectOutcome(await server.request.get(`/fhir/${patient}`), 503, 'timeout');
    const update = await server.request.put(`/fhir/${patient}`).set('content-type', FHIR_JSON).send({ resourceType: 'Patient', id: patient.split('/')[1], name: [{ family: 'Changed' }] });
    expectOutcome(update, 503, 'timeout');
    await locker.query('ROLLBACK');
    const read = await server.request.get(`/fhir/${patient}`);
    expect(read.status).toBe(200);
    expect(read.body.meta.versionId).toBe('1');
    expect(read.body.name[0].family).toBe('Locked');
  });
});
