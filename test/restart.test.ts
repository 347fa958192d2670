/**
 * Durability across a restart: everything acknowledged before the server stops (current
 * versions, every earlier version, deletions, Binary bytes, history, search indexes and the
 * audit trail) is served the same by a new server over the same database, and new writes
 * continue where the old ones left off.
 */
import type { Bundle, Patient } from '@medplum/fhirtypes';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestServer } from './support/server.js';
import type { TestServer } from './support/server.js';

const FHIR_JSON = 'application/fhir+json';

let server: TestServer;
afterAll(async () => {
  await server?.stop({ dropDatabase: true });
});

interface Snapshot {
  /** `Type/id` → the body of every version, by version number. */
  versions: Map<string, Map<number, unknown>>;
  /** `Type/id` → the full instance history Bundle entries. */
  histories: Map<string, unknown>;
  deleted: string[];
  typeHistory: unknown;
  searches: Map<string, string[]>;
  binary: { reference: string; bytes: Buffer; contentType: string };
  audit: Map<string, string[]>;
}

const bytes = Buffer.from(Array.from({ length: 512 }, (_, i) => (i * 7) % 256));
const searches = ['Patient?family=Durable&_sort=_id', 'Communication?subject:Patient.family=Durable&_sort=_id', 'Patient?gender=female&_sort=_id'];

function rawBody(res: { on: (event: string, fn: (chunk?: Buffer) => void) => void }, done: (err: Error | null, body: Buffer) => void) {
  const chunks: Buffer[] = [];
  res.on('data', (chunk) => chunks.push(chunk!));
  res.on('end', () => done(null, Buffer.concat(chunks)));
}

/** The entries of a Bundle with the server's base URL taken out (the port changes on restart). */
function portable(bundle: Bundle): unknown {
  return JSON.parse(JSON.stringify(bundle.entry ?? []).replaceAll(server.fhirBase, '<base>'));
}

async function write(method: 'post' | 'put', path: string, body: unknown) {
  const res = await server.request[method](`/fhir/${path}`).set('content-type', FHIR_JSON).send(JSON.stringify(body));
  expect(res.status, res.text).toBeLessThan(300);
  return res.body;
}

/** Writes a small, varied dataset and returns what its references are. */
async function writeDataset(): Promise<{ live: string[]; deleted: string[]; binary: string }> {
  const live: string[] = [];
  const deleted: string[] = [];
  for (let i = 0; i < 4; i++) {
    const patient = (await write('post', 'Patient', { resourceType: 'Patient', name: [{ family: 'Durable', given: [`P${i}`] }] })) as Patient;
    let current = patient;
    for (let v = 0; v < i; v++) {
      current = await write('put', `Patient/${patient.id}`, { ...current, gender: v % 2 ? 'male' : 'female', birthDate: `19${70 + v}-01-0${i + 1}` });
    }
    const message = await write('post', 'Communication', {
      resourceType: 'Communication',
      status: 'completed',
      subject: { reference: `Patient/${patient.id}` },
      payload: [{ contentString: `message ${i}` }],
    });
    live.push(`Communication/${message.id}`);
    if (i === 3) {
      const res = await server.request.delete(`/fhir/Patient/${patient.id}`);
      expect(res.status).toBe(204);
      deleted.push(`Patient/${patient.id}`);
    } else {
      live.push(`Patient/${patient.id}`);
    }
  }
  const patched = await server.request
    .patch(`/fhir/${live[1]}`)
    .set('content-type', 'application/json-patch+json')
    .send(JSON.stringify([{ op: 'add', path: '/telecom', value: [{ system: 'email', value: 'durable@example.org' }] }]));
  expect(patched.status).toBe(200);
  const clientId = 'durable-client-id';
  await write('put', `Patient/${clientId}`, { resourceType: 'Patient', id: clientId, name: [{ family: 'Durable' }], gender: 'female' });
  live.push(`Patient/${clientId}`);
  const binary = await server.request.post('/fhir/Binary').set('content-type', 'application/pdf').send(bytes);
  expect(binary.status).toBe(201);
  live.push(`Binary/${binary.body.id}`);
  return { live, deleted, binary: `Binary/${binary.body.id}` };
}

async function snapshot(dataset: { live: string[]; deleted: string[]; binary: string }): Promise<Snapshot> {
  const versions = new Map<string, Map<number, unknown>>();
  const histories = new Map<string, unknown>();
  const audit = new Map<string, string[]>();
  for (const reference of [...dataset.live, ...dataset.deleted]) {
    const history = await server.request.get(`/fhir/${reference}/_history`);
    expect(history.status).toBe(200);
    const entries = (history.body as Bundle).entry!;
    histories.set(reference, portable(history.body));
    const byVersion = new Map<number, unknown>();
    for (const entry of entries) {
      const version = Number(/W\/"(\d+)"/.exec(entry.response!.etag!)![1]);
      const res = await server.request.get(`/fhir/${reference}/_history/${version}`).set('accept', FHIR_JSON);
      byVersion.set(version, res.status === 200 ? res.body : res.status);
    }
    versions.set(reference, byVersion);
    const events = await server.request.get(`/fhir/AuditEvent?entity=${reference}&_count=1000&_sort=_id`);
    audit.set(reference, (events.body as Bundle).entry!.map((e) => e.resource!.id!));
  }
  const searchResults = new Map<string, string[]>();
  for (const query of searches) {
    const res = await server.request.get(`/fhir/${query}`);
    expect(res.status).toBe(200);
    searchResults.set(query, ((res.body as Bundle).entry ?? []).map((e) => `${e.resource!.resourceType}/${e.resource!.id}`));
  }
  const typeHistory = portable((await server.request.get('/fhir/Patient/_history?_count=100')).body);
  return {
    versions,
    histories,
    deleted: dataset.deleted,
    typeHistory,
    searches: searchResults,
    binary: { reference: dataset.binary, bytes, contentType: 'application/pdf' },
    audit,
  };
}

let dataset: { live: string[]; deleted: string[]; binary: string };
let before: Snapshot;

beforeAll(async () => {
  server = await startTestServer();
  dataset = await writeDataset();
  before = await snapshot(dataset);
  // The snapshot's reads are audited asynchronously; stopping flushes them, and they must survive too.
  const { database } = server;
  await server.stop();
  server = await startTestServer({ database });
});

describe('after a restart over the same database', () => {
  it('still had something worth checking before the restart', () => {
    expect(dataset.live.length).toBeGreaterThanOrEqual(8);
    expect([...before.versions.values()].some((v) => v.size >= 4)).toBe(true);
    for (const results of before.searches.values()) {
      expect(results.length).toBeGreaterThan(0);
    }
  });

  it('serves every current resource exactly as before', async () => {
    for (const reference of dataset.live) {
      const res = await server.request.get(`/fhir/${reference}`).set('accept', FHIR_JSON);
      expect(res.status, reference).toBe(200);
      const versions = before.versions.get(reference)!;
      const latest = Math.max(...versions.keys());
      expect(res.body, reference).toEqual(versions.get(latest));
      expect(res.headers.etag).toBe(`W/"${latest}"`);
    }
  });

  it('serves every earlier version by vread, and keeps deleted resources gone', async () => {
    for (const [reference, versions] of before.versions) {
      for (const [version, body] of versions) {
        const res = await server.request.get(`/fhir/${reference}/_history/${version}`).set('accept', FHIR_JSON);
        expect(res.status === 200 ? res.body : res.status, `${reference} v${version}`).toEqual(body);
      }
    }
    for (const reference of before.deleted) {
      expect((await server.request.get(`/fhir/${reference}`)).status).toBe(410);
    }
  });

  it('has the same instance and type histories', async () => {
    for (const [reference, entries] of before.histories) {
      const res = await server.request.get(`/fhir/${reference}/_history`);
      expect(portable(res.body), reference).toEqual(entries);
    }
    const typeHistory = await server.request.get('/fhir/Patient/_history?_count=100');
    expect(portable(typeHistory.body)).toEqual(before.typeHistory);
  });

  it('finds the same resources by search (the indexes survived)', async () => {
    for (const [query, results] of before.searches) {
      const res = await server.request.get(`/fhir/${query}`);
      expect(((res.body as Bundle).entry ?? []).map((e) => `${e.resource!.resourceType}/${e.resource!.id}`), query).toEqual(results);
    }
  });

  it('serves the Binary bytes unchanged', async () => {
    const res = await server.request.get(`/fhir/${before.binary.reference}`).buffer(true).parse(rawBody);
    expect(res.status).toBe(200);
    expect(res.headers['content-type']).toMatch(/^application\/pdf/);
    expect(Buffer.compare(res.body as Buffer, before.binary.bytes)).toBe(0);
  });

  it('keeps the audit trail, including the events of reads made just before stopping', async () => {
    for (const [reference, ids] of before.audit) {
      const res = await server.request.get(`/fhir/AuditEvent?entity=${reference}&_count=1000&_sort=_id`);
      const now = (res.body as Bundle).entry!.map((e) => e.resource!.id!);
      for (const id of ids) {
        expect(now, reference).toContain(id);
      }
      // The snapshot's own reads and vreads were audited after it looked, and flushed at stop.
      const events = (res.body as Bundle).entry!.map((e) => e.resource as { subtype?: { code?: string }[] });
      expect(events.some((e) => e.subtype?.[0]?.code === 'vread' || e.subtype?.[0]?.code === 'history-instance'), reference).toBe(true);
    }
  });

  it('continues version numbers and accepts new writes', async () => {
    const reference = dataset.live.find((r) => r.startsWith('Patient/') && (before.versions.get(r)?.size ?? 0) >= 3)!;
    const versions = before.versions.get(reference)!;
    const latest = Math.max(...versions.keys());
    const current = versions.get(latest) as Patient;
    const res = await server.request
      .put(`/fhir/${reference}`)
      .set('content-type', FHIR_JSON)
      .send(JSON.stringify({ ...current, gender: 'other' }));
    expect(res.status).toBe(200);
    expect(res.body.meta.versionId).toBe(String(latest + 1));
    const created = await server.request
      .post('/fhir/Patient')
      .set('content-type', FHIR_JSON)
      .send(JSON.stringify({ resourceType: 'Patient', name: [{ family: 'AfterRestart' }] }));
    expect(created.status).toBe(201);
    const history = await server.request.get('/fhir/Patient/_history?_count=2');
    expect((history.body as Bundle).entry!.map((e) => e.resource?.id)).toEqual([created.body.id, reference.split('/')[1]]);
  });
});
