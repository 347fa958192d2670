/**
 * The tamper-evident audit trail, on the engine of the run (PGlite, or PostgreSQL with
 * TEST_DATABASE=postgres): interactions leave AuditEvents that the sealer chains moments
 * later and the verifier accepts; then, as the table owner would (triggers disabled for the
 * edit, as only the owner can), one entry is altered, one removed and one forged row
 * inserted, and each is reported at the right place, the trail restored between them so each
 * is caught on its own. The API refuses to change AuditEvents for every caller, the database
 * refuses UPDATE and DELETE, the signed chain head verifies with the published report keys,
 * and `npm run verify-audit` exits 0 on an intact trail and 1 on a tampered one.
 */
import { execFile } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { compactVerify, createLocalJWKSet, decodeProtectedHeader } from 'jose';
import type { JSONWebKeySet } from 'jose';
import type { Parameters } from '@medplum/fhirtypes';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { systemContext } from '../fhir/access.js';
import { chainHead } from '../fhir/audit/chain.js';
import { AuditSealer } from '../fhir/audit/sealer.js';
import { verifyAuditChain } from '../fhir/audit/verify.js';
import { openDatabase } from '../fhir/db/database.js';
import type { Database } from '../fhir/db/database.js';
import { dispatch } from '../fhir/rest/dispatch.js';
import { FhirError } from '../fhir/errors.js';
import { startTestServer } from './support/server.js';
import type { TestServer } from './support/server.js';
import { testEngine } from './support/database.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const FHIR_JSON = 'application/fhir+json';

let server: TestServer;
let db: Database;

/** Runs `sql` as the table owner with the append-only triggers of `tables` off, then on again. */
async function asOwner(tables: string[], statements: [string, unknown[]?][]): Promise<void> {
  await db.transaction(async (tx) => {
    for (const table of tables) {
      await tx.query(`ALTER TABLE ${table} DISABLE TRIGGER USER`);
    }
    for (const [sql, params] of statements) {
      await tx.query(sql, params);
    }
    for (const table of tables) {
      await tx.query(`ALTER TABLE ${table} ENABLE TRIGGER USER`);
    }
  });
}

/** Writes queued read audits and seals everything committed. */
async function settle(): Promise<void> {
  await server.app.audit.flush();
  await server.app.auditSealer.sealNow();
}

/** The chain entry at `position` with its row. */
async function entryAt(position: number): Promise<{ audit_id: string; content: string }> {
  const [row] = await db.query<{ audit_id: string; content: string }>(
    'SELECT c.audit_id, a.content FROM audit_chain c JOIN "AuditEvent" a ON a.id = c.audit_id WHERE c.position = $1',
    [position]
  );
  return row;
}

const param = (p: Parameters, name: string) => p.parameter?.find((x) => x.name === name);

beforeAll(async () => {
  server = await startTestServer();
  db = server.app.db;
  // Some traffic: writes (audited in their transaction) and reads (audited by the queue).
  for (let i = 0; i < 4; i++) {
    const created = await server.request
      .post('/fhir/Patient')
      .set('Content-Type', FHIR_JSON)
      .send({ resourceType: 'Patient', name: [{ family: `Chain${i}` }] });
    expect(created.status).toBe(201);
    expect((await server.request.get(`/fhir/Patient/${created.body.id}`)).status).toBe(200);
  }
  await settle();
}, 120_000);

afterAll(async () => {
  await server?.stop({ dropDatabase: true });
});

describe('the sealed audit trail', () => {
  it('chains every committed AuditEvent and verifies intact', async () => {
    const [{ rows, chained }] = await db.query<{ rows: string; chained: string }>(
      'SELECT (SELECT count(*) FROM "AuditEvent") AS rows, (SELECT count(*) FROM audit_chain) AS chained'
    );
    expect(Number(rows)).toBeGreaterThanOrEqual(8);
    expect(Number(chained)).toBe(Number(rows));
    const result = await verifyAuditChain(db);
    expect(result).toEqual({ valid: true, checked: Number(chained), pending: 0 });
  });

  it('appends rows written later, after the head', async () => {
    const before = await chainHead(db);
    await server.request.get('/fhir/Patient?family=Chain1');
    await settle();
    const after = await chainHead(db);
    expect(after!.position).toBeGreaterThan(before!.position);
    expect((await verifyAuditChain(db)).valid).toBe(true);
  });

  it('the API refuses to update, patch or delete an AuditEvent, whoever asks', async () => {
    const { audit_id: id, content } = await entryAt(1);
    const put = await server.request.put(`/fhir/AuditEvent/${id}`).set('Content-Type', FHIR_JSON).send({ ...JSON.parse(content), outcome: '8' });
    const patch = await server.request
      .patch(`/fhir/AuditEvent/${id}`)
      .set('Content-Type', 'application/json-patch+json')
      .send([{ op: 'replace', path: '/outcome', value: '8' }]);
    const del = await server.request.delete(`/fhir/AuditEvent/${id}`);
    for (const response of [put, patch, del]) {
      expect(response.status).toBe(405);
      expect(response.body.resourceType).toBe('OperationOutcome');
      expect(JSON.stringify(response.body)).toContain('append-only');
    }
    // CareThread's own system context, through the same interaction layer.
    const attempt = dispatch(server.app.rest, systemContext(), { method: 'DELETE', path: ['AuditEvent', id], query: [] });
    await expect(attempt).rejects.toBeInstanceOf(FhirError);
    await expect(attempt).rejects.toMatchObject({ status: 405 });
    // A transaction Bundle gets no further.
    const bundle = await server.request
      .post('/fhir')
      .set('Content-Type', FHIR_JSON)
      .send({ resourceType: 'Bundle', type: 'transaction', entry: [{ request: { method: 'DELETE', url: `AuditEvent/${id}` } }] });
    expect(bundle.status).toBeGreaterThanOrEqual(400);
    expect(bundle.status).toBeLessThan(500);
    expect((await entryAt(1)).content).toBe(content);
  });

  it("a PUT may still create an AuditEvent with the sender's id (the portal's events), once", async () => {
    const event = {
      resourceType: 'AuditEvent',
      id: 'portal-view-1',
      type: { system: 'http://terminology.hl7.org/CodeSystem/audit-event-type', code: 'rest' },
      recorded: '2026-01-05T10:00:00Z',
      agent: [{ requestor: true, who: { display: 'portal' } }],
      source: { observer: { display: 'portal' } },
    };
    const created = await server.request.put('/fhir/AuditEvent/portal-view-1').set('Content-Type', FHIR_JSON).send(event);
    expect(created.status).toBe(201);
    const again = await server.request.put('/fhir/AuditEvent/portal-view-1').set('Content-Type', FHIR_JSON).send({ ...event, outcome: '8' });
    expect(again.status).toBe(405);
    await settle();
    expect(await verifyAuditChain(db)).toMatchObject({ valid: true, pending: 0 });
  });

  it('the database refuses UPDATE, DELETE and TRUNCATE on the audit tables', async () => {
    const { audit_id: id } = await entryAt(1);
    const refused = [
      ['UPDATE "AuditEvent" SET content = content WHERE id = $1', [id]],
      ['DELETE FROM "AuditEvent" WHERE id = $1', [id]],
      ['UPDATE "AuditEvent_History" SET content = content WHERE id = $1', [id]],
      ['DELETE FROM "AuditEvent_History" WHERE id = $1', [id]],
      ["UPDATE audit_chain SET hash = 'x' WHERE audit_id = $1", [id]],
      ['DELETE FROM audit_chain WHERE audit_id = $1', [id]],
      ['TRUNCATE audit_chain', []],
      ['TRUNCATE "AuditEvent"', []],
    ] as const;
    for (const [sql, params] of refused) {
      await expect(db.query(sql, params), sql).rejects.toThrow(/audit trail is append-only/);
    }
    expect((await verifyAuditChain(db)).valid).toBe(true);
  });

  it('reports an altered entry at its position', async () => {
    const position = 3;
    const { audit_id: id, content } = await entryAt(position);
    const edited = JSON.stringify({ ...JSON.parse(content), outcome: '8' });
    await asOwner(['"AuditEvent"'], [['UPDATE "AuditEvent" SET content = $2 WHERE id = $1', [id, edited]]]);
    const result = await verifyAuditChain(db);
    expect(result.valid).toBe(false);
    expect(result.firstProblem).toMatchObject({ kind: 'altered', position, id });
    expect(result.checked).toBe(position - 1);
    await asOwner(['"AuditEvent"'], [['UPDATE "AuditEvent" SET content = $2 WHERE id = $1', [id, content]]]);
    expect((await verifyAuditChain(db)).valid).toBe(true);
  });

  it('reports a removed entry at its position', async () => {
    const position = 4;
    const { audit_id: id } = await entryAt(position);
    // Kept aside (in a table, not the test's memory) so the trail can be put back exactly.
    await db.query(`CREATE TABLE removed_audit AS SELECT * FROM "AuditEvent" WHERE id = '${id}'`);
    await db.query(`CREATE TABLE removed_audit_history AS SELECT * FROM "AuditEvent_History" WHERE id = '${id}'`);
    await asOwner(['"AuditEvent"', '"AuditEvent_History"'], [
      ['DELETE FROM "AuditEvent" WHERE id = $1', [id]],
      ['DELETE FROM "AuditEvent_History" WHERE id = $1', [id]],
    ]);
    const result = await verifyAuditChain(db);
    expect(result.valid).toBe(false);
    expect(result.firstProblem).toMatchObject({ kind: 'removed', position, id });
    await db.query('INSERT INTO "AuditEvent" SELECT * FROM removed_audit');
    await db.query('INSERT INTO "AuditEvent_History" SELECT * FROM removed_audit_history');
    await db.query('DROP TABLE removed_audit');
    await db.query('DROP TABLE removed_audit_history');
    expect((await verifyAuditChain(db)).valid).toBe(true);
  });

  it('reports a removed chain entry as a gap at its position', async () => {
    const position = 2;
    await db.query(`CREATE TABLE removed_link AS SELECT * FROM audit_chain WHERE position = ${position}`);
    await asOwner(['audit_chain'], [['DELETE FROM audit_chain WHERE position = $1', [position]]]);
    const result = await verifyAuditChain(db);
    expect(result.firstProblem).toMatchObject({ kind: 'removed', position });
    await db.query('INSERT INTO audit_chain SELECT * FROM removed_link');
    await db.query('DROP TABLE removed_link');
    expect((await verifyAuditChain(db)).valid).toBe(true);
  });

  it('reports a forged row recorded an hour ago, and the sealer does not chain it', async () => {
    const forged = '00000000-0000-4000-8000-00000000f04d';
    const recorded = new Date(Date.now() - 3_600_000).toISOString();
    const content = JSON.stringify({ resourceType: 'AuditEvent', id: forged, meta: { versionId: '1', lastUpdated: recorded }, recorded, action: 'R', outcome: '0' });
    await db.query('INSERT INTO "AuditEvent" (id, version, last_updated, content) VALUES ($1, 1, $2, $3)', [forged, recorded, content]);
    await settle();
    const [{ n }] = await db.query<{ n: string }>('SELECT count(*) AS n FROM audit_chain WHERE audit_id = $1', [forged]);
    expect(Number(n)).toBe(0);
    const result = await verifyAuditChain(db);
    expect(result.valid).toBe(false);
    expect(result.firstProblem).toMatchObject({ kind: 'inserted', id: forged });
    await asOwner(['"AuditEvent"'], [['DELETE FROM "AuditEvent" WHERE id = $1', [forged]]]);
    expect((await verifyAuditChain(db)).valid).toBe(true);
  });

  it('counts a fresh unsealed row as pending, not as a problem', async () => {
    await server.app.auditSealer.stop();
    try {
      await server.request.get('/fhir/Patient?family=Pending');
      await server.app.audit.flush();
      const result = await verifyAuditChain(db);
      expect(result.valid).toBe(true);
      expect(result.pending).toBeGreaterThanOrEqual(1);
      // With no grace at all the same row is an insertion.
      expect((await verifyAuditChain(db, { graceMs: 0 })).firstProblem?.kind).toBe('inserted');
    } finally {
      server.app.auditSealer.start();
    }
    await settle();
    expect(await verifyAuditChain(db)).toMatchObject({ valid: true, pending: 0 });
  });
});

describe('sealing beside requests', () => {
  it('two sealers on one database chain every row once', async () => {
    // PGlite is one process: the second sealer shares its database; on PostgreSQL it has its own pool, like another instance.
    const other = testEngine === 'postgres' ? await openDatabase({ databaseUrl: server.database.databaseUrl, dataDir: server.database.dataDir, poolSize: 2 }) : undefined;
    const second = new AuditSealer(other ?? db, { intervalMs: 60_000 });
    try {
      await Promise.all(Array.from({ length: 6 }, (_, i) => server.request.get(`/fhir/Patient?family=Two${i}`)));
      await server.app.audit.flush();
      await Promise.all([server.app.auditSealer.sealNow(), second.sealNow(), server.app.auditSealer.sealNow(), second.sealNow()]);
      await settle();
      expect(await verifyAuditChain(db)).toMatchObject({ valid: true, pending: 0 });
    } finally {
      await other?.close();
    }
  });

  it.runIf(testEngine === 'postgres')('a row committed after later rows were sealed is appended, not lost', async () => {
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    let inserted!: () => void;
    const written = new Promise<void>((resolve) => (inserted = resolve));
    // A request transaction that takes its seq first and commits last.
    const slow = db.transaction(async (tx) => {
      await server.app.audit.write(tx, systemContext(), { interaction: 'create', target: 'Patient/slow', outcome: '0' });
      inserted();
      await held;
    });
    await written;
    await server.request.get('/fhir/Patient?family=Later');
    await settle();
    const before = await chainHead(db);
    release();
    await slow;
    await settle();
    const [late] = await db.query<{ position: string; seq: string; max_seq: string }>(
      `SELECT c.position, c.seq, c.max_seq FROM audit_chain c JOIN "AuditEvent" a ON a.id = c.audit_id WHERE a.content LIKE '%Patient/slow%'`
    );
    expect(Number(late.position)).toBeGreaterThan(before!.position);
    expect(BigInt(late.seq)).toBeLessThan(BigInt(late.max_seq));
    expect((await verifyAuditChain(db)).valid).toBe(true);
  });
});

describe('the chain on the FHIR API', () => {
  it('exports the head, signed with a key published at /auth/report-keys', async () => {
    const response = await server.request.get('/fhir/AuditEvent/$chain-head');
    expect(response.status).toBe(200);
    const head = response.body as Parameters;
    const current = await chainHead(db);
    expect(param(head, 'position')?.valueInteger).toBe(current!.position);
    expect(param(head, 'hash')?.valueString).toBe(current!.hash);
    expect(param(head, 'sealedAt')?.valueInstant).toBe(current!.sealedAt);
    const jws = param(head, 'signature')!.valueString!;
    const keys = (await server.anonymous.get('/auth/report-keys')).body as JSONWebKeySet;
    const { payload, protectedHeader } = await compactVerify(jws, createLocalJWKSet(keys), { algorithms: ['RS256'] });
    expect(protectedHeader.typ).toBe('carethread-audit-chain-head+jws');
    expect(JSON.parse(new TextDecoder().decode(payload))).toEqual({ position: current!.position, hash: current!.hash });
    expect(keys.keys.map((k) => k.kid)).toContain(decodeProtectedHeader(jws).kid);
  });

  it('verifies the chain on request', async () => {
    const response = await server.request.get('/fhir/AuditEvent/$verify-chain');
    expect(response.status).toBe(200);
    const result = response.body as Parameters;
    expect(param(result, 'valid')?.valueBoolean).toBe(true);
    expect(param(result, 'checked')?.valueInteger).toBeGreaterThan(0);
    expect(param(result, 'firstProblem')).toBeUndefined();
  });

  it('is for auditors and administrators only', async () => {
    expect((await server.anonymous.get('/fhir/AuditEvent/$chain-head')).status).toBe(401);
  });
});

describe('the audit report', () => {
  it('searches the trail by period, user, patient, action and outcome, sorted by date', async () => {
    const patient = await server.request.post('/fhir/Patient').set('Content-Type', FHIR_JSON).send({ resourceType: 'Patient', name: [{ family: 'Report' }] });
    await server.request.get(`/fhir/Patient/${patient.body.id}`);
    await server.request.get('/fhir/Patient/no-such-patient');
    await server.app.audit.flush();
    const since = new Date(Date.now() - 60_000).toISOString();
    const res = await server.request
      .get('/fhir/AuditEvent')
      .query({ date: `ge${since}`, patient: `Patient/${patient.body.id}`, action: 'R', outcome: '0', _sort: '-date' });
    expect(res.status, res.text).toBe(200);
    type Event = { action: string; outcome: string; recorded: string; entity?: { what?: { reference?: string } }[] };
    const events: Event[] = (res.body.entry ?? []).map((e: { resource: Event }) => e.resource);
    expect(events.length).toBeGreaterThanOrEqual(1);
    expect(events.every((e) => e.action === 'R' && e.outcome === '0')).toBe(true);
    expect(events.every((e) => e.entity?.some((x) => x.what?.reference === `Patient/${patient.body.id}`))).toBe(true);
    // Failures by this client (the user), oldest first.
    const failed = await server.request.get('/fhir/AuditEvent').query({ date: `ge${since}`, outcome: '4', 'agent-name': server.admin.clientId, _sort: 'date' });
    expect(failed.status, failed.text).toBe(200);
    const failures: Event[] = (failed.body.entry ?? []).map((e: { resource: Event }) => e.resource);
    expect(failures.some((e) => e.entity?.some((x) => x.what?.reference === 'Patient/no-such-patient'))).toBe(true);
    const recorded = failures.map((e) => e.recorded);
    expect(recorded).toEqual([...recorded].sort());
  });
});

describe('npm run verify-audit', () => {
  const run = (): Promise<{ code: number; stdout: string }> => {
    const env: NodeJS.ProcessEnv = { PATH: process.env.PATH, HOME: process.env.HOME, DATA_DIR: server.database.dataDir, LOG_LEVEL: 'warn' };
    if (server.database.databaseUrl) {
      env.DATABASE_URL = server.database.databaseUrl;
    }
    return new Promise((resolve) => {
      execFile('npx', ['tsx', 'scripts/verify-audit.ts'], { cwd: ROOT, env, timeout: 90_000 }, (err, stdout) => {
        resolve({ code: err ? (typeof err.code === 'number' ? err.code : -1) : 0, stdout });
      });
    });
  };

  it('exits 0 on the intact trail and 1 with the first problem once an entry is altered', async () => {
    // PGlite is single-process: the server lets go of the data directory first.
    const { database } = server;
    await server.stop();
    const intact = await run();
    expect(intact.stdout).toMatch(/^intact: \d+ chained entries verified/);
    expect(intact.code).toBe(0);

    try {
      db = await openDatabase({ databaseUrl: database.databaseUrl, dataDir: database.dataDir, poolSize: 1 });
      const { audit_id: id, content } = await entryAt(2);
      const edited = JSON.stringify({ ...JSON.parse(content), outcomeDesc: 'edited by hand' });
      await asOwner(['"AuditEvent"'], [['UPDATE "AuditEvent" SET content = $2 WHERE id = $1', [id, edited]]]);
      await db.close();
      const tampered = await run();
      expect(tampered.code).toBe(1);
      expect(tampered.stdout).toContain(`NOT intact: altered at position 2, AuditEvent/${id}`);
    } finally {
      server = await startTestServer({ database });
      db = server.app.db;
    }
  }, 240_000);
});
