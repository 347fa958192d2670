/**
 * Two CareThread processes on one PostgreSQL behave as one, as behind a load balancer (one
 * public BASE_URL): started at the same moment on a fresh database they run the migrations
 * once between them; messages written through either are delivered exactly once though both
 * outbox workers poll (rest-hook notifications and notice e-mails counted at real
 * receivers); and a websocket bound on one instance is pinged for a message written
 * through the other (LISTEN/NOTIFY). Real child processes (test/support/processes.ts).
 */
import pg from 'pg';
import WebSocket from 'ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openDatabase } from '../fhir/db/database.js';
import type { Database } from '../fhir/db/database.js';
import { listMigrations } from '../fhir/schema/migrate.js';
import { checkInvariants } from '../scripts/chaos/check.js';
import { CHAOS_IDENTIFIER_SYSTEM } from '../scripts/chaos/load.js';
import type { SentRequest } from '../scripts/chaos/load.js';
import { seedChaosPractice } from '../scripts/chaos/practice.js';
import type { ChaosPractice } from '../scripts/chaos/practice.js';
import { startReceivers } from '../scripts/chaos/receivers.js';
import type { Receivers } from '../scripts/chaos/receivers.js';
import { createTestDatabase, testEngine } from './support/database.js';
import type { TestDatabase } from './support/database.js';
import { Api, freePort, sleep, spawnServer, waitReady } from './support/processes.js';
import type { ServerProcess } from './support/processes.js';

const category = [{ coding: [{ system: 'https://carethread.dev/fhir/CodeSystem/message-category', code: 'medical-question' }] }];

describe.runIf(testEngine === 'postgres')('several instances on one PostgreSQL', () => {
  let database: TestDatabase;
  let receivers: Receivers;
  let a: ServerProcess;
  let b: ServerProcess;
  let apiA: Api;
  let apiB: Api;
  let db: Database;
  let practice: ChaosPractice;

  beforeAll(async () => {
    database = await createTestDatabase();
    receivers = await startReceivers();
    const [portA, portB] = [await freePort(), await freePort()];
    const baseUrl = `http://127.0.0.1:${portA}`;
    const env = { DATABASE_URL: database.databaseUrl, SMTP_URL: receivers.smtpUrl, OUTBOX_POLL_MS: '20', OUTBOX_BASE_BACKOFF_MS: '200' };
    // Both at the same moment, on a database with no tables yet.
    a = spawnServer({ port: portA, baseUrl, env });
    b = spawnServer({ port: portB, baseUrl, env });
    await Promise.all([waitReady(a, 45_000), waitReady(b, 45_000)]);
    apiA = new Api(a.url, baseUrl);
    apiB = new Api(b.url, baseUrl);
    db = await openDatabase({ databaseUrl: database.databaseUrl, dataDir: database.dataDir, poolSize: 1 });
    practice = await seedChaosPractice(apiA, { patients: 2, practitioners: 2, hookUrl: receivers.hookUrl });
  }, 90_000);

  afterAll(async () => {
    await db?.close();
    await Promise.all([a?.kill('SIGTERM'), b?.kill('SIGTERM')]);
    await receivers?.close();
    await database?.drop();
  });

  it('runs the migrations once, and agrees on one signing key, when two instances start together', async () => {
    const applied = await db.query<{ name: string }>('SELECT name FROM ct_migrations ORDER BY name');
    expect(applied.map((r) => r.name)).toEqual(listMigrations().map((m) => m.name));
    // One instance applied them under the advisory lock; the other found nothing to do.
    const appliers = [a, b].filter((s) => s.logs.some((line) => line.includes('applied database migrations')));
    expect(appliers).toHaveLength(1);
    for (const api of [apiA, apiB]) {
      expect((await fetch(`${api.url}/readyz`)).status).toBe(200);
    }
    // A token either instance issues is good at the other (behind a load balancer, it will be used there).
    for (const [issuer, other] of [[apiA, apiB], [apiB, apiA]]) {
      const res = await other.fhir('GET', 'Patient?_count=1', await issuer.adminToken());
      expect(res.status, JSON.stringify(res.body)).toBe(200);
    }
    expect(await db.query('SELECT kid FROM auth_keys')).toHaveLength(1);
  });

  it('delivers what either instance queued exactly once, though both poll the outbox', async () => {
    const sent: SentRequest[] = [];
    const threads: string[] = [];
    for (let i = 0; i < 24; i++) {
      // Alternate instances; each patient starts a thread, then writes and is answered.
      const api = i % 2 ? apiB : apiA;
      const patient = practice.patients[i % 2];
      const practitioner = practice.practitioners[0];
      const key = `instances-${i}-${Date.now()}`;
      const identifier = [{ system: CHAOS_IDENTIFIER_SYSTEM, value: key }];
      const thread = threads[i % 2];
      const kind = !thread ? 'header' : i % 4 < 2 ? 'patient-message' : 'reply';
      const body = !thread
        ? { resourceType: 'Communication', status: 'in-progress', identifier, subject: { reference: patient.reference }, recipient: [{ reference: practitioner.reference }], topic: { text: 'A question' }, category }
        : { resourceType: 'Communication', status: 'completed', identifier, subject: { reference: patient.reference }, partOf: [{ reference: thread }], payload: [{ contentString: 'More' }] };
      const res = await api.fhir('POST', 'Communication', kind === 'reply' ? practitioner.token : patient.token, body);
      expect(res.status, JSON.stringify(res.body)).toBe(201);
      if (!thread) {
        threads[i % 2] = `Communication/${res.body.id}`;
      }
      sent.push({ key, kind, patient: patient.reference, outcome: 'ok', status: res.status, id: res.body.id, at: Date.now() });
    }
    const deadline = Date.now() + 20_000;
    while (Date.now() < deadline && (await db.query(`SELECT 1 FROM outbox WHERE status <> 'delivered'`)).length) {
      await sleep(100);
    }
    // Time for a second, wrongful delivery to arrive.
    await sleep(500);
    const { counts, violations } = await checkInvariants(db, sent, receivers, 0);
    expect(violations).toEqual([]);
    expect(counts.ok).toBe(24);
    // One rest-hook notification per message, one notice per reply.
    expect(receivers.hooks.size).toBe(24);
    expect(receivers.mails.size).toBe(sent.filter((s) => s.kind === 'reply').length);
    expect(counts.deliveriesArrived).toBe(counts.deliveriesExpected);
    expect(counts.duplicated).toBe(0);
  });

  it('pings a websocket bound on one instance for a message written through the other', async () => {
    await pingAcross(practice.practitioners[1]);
  });

  it('pings across instances again once the database dropped every connection', async () => {
    const admin = new URL(database.databaseUrl!);
    const name = admin.pathname.slice(1);
    admin.pathname = '/postgres';
    const client = new pg.Client({ connectionString: admin.toString() });
    await client.connect();
    try {
      const result = await client.query('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()', [name]);
      expect(result.rowCount).toBeGreaterThan(2);
    } finally {
      await client.end();
    }
    await db.query('SELECT 1').catch(() => undefined);
    // Each instance's LISTEN connection reconnects after a second; neither restarts.
    await sleep(1500);
    await pingAcross(practice.practitioners[0]);
    expect(a.child.exitCode).toBeNull();
    expect(b.child.exitCode).toBeNull();
  });

  /** Binds a socket on instance A to `practitioner`'s messages, writes one through B, expects one ping. */
  async function pingAcross(practitioner: ChaosPractice['practitioners'][number]): Promise<void> {
    const [patient] = practice.patients;
    const subscription = await apiA.fhir('POST', 'Subscription', practitioner.token, {
      resourceType: 'Subscription',
      status: 'requested',
      reason: 'Provider app inbox',
      criteria: `Communication?recipient=${practitioner.reference}`,
      channel: { type: 'websocket' },
    });
    expect(subscription.status, JSON.stringify(subscription.body)).toBe(201);
    const id = subscription.body.id as string;
    const ws = new WebSocket(`${a.url.replace(/^http/, 'ws')}/fhir/websocket`);
    const frames: string[] = [];
    ws.on('message', (data) => frames.push(data.toString()));
    try {
      await new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject));
      ws.send(`bind ${id} ${practitioner.token}`);
      await until(() => frames.includes(`bound ${id}`), 'bound on instance A');
      const written = await apiB.fhir('POST', 'Communication', patient.token, {
        resourceType: 'Communication',
        status: 'in-progress',
        subject: { reference: patient.reference },
        recipient: [{ reference: practitioner.reference }],
        topic: { text: 'For the other doctor' },
        category,
      });
      expect(written.status).toBe(201);
      await until(() => frames.includes(`ping ${id}`), 'the ping on instance A');
      await sleep(300);
      expect(frames.filter((f) => f === `ping ${id}`)).toHaveLength(1);
    } finally {
      ws.close();
    }
  }
});

async function until(probe: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!probe()) {
    if (Date.now() > deadline) {
      throw new Error(`Timed out waiting for ${what}`);
    }
    await sleep(25);
  }
}
