/**
 * Every way a client can get a request wrong, through HTTP: each answer is an
 * OperationOutcome with the status that names the problem (never a 500), and a rejected
 * write leaves the data exactly as it was.
 */
import { randomUUID } from 'node:crypto';
import type { Bundle, OperationOutcome, Patient } from '@medplum/fhirtypes';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestServer } from './support/server.js';
import type { TestServer } from './support/server.js';

const FHIR_JSON = 'application/fhir+json';
const MAX_BODY_BYTES = 2048;

let server: TestServer;
let existing: Patient;

beforeAll(async () => {
  // A small body limit, so 413 is reachable with a small request; every other request here fits.
  server = await startTestServer({ env: { MAX_BODY_BYTES: String(MAX_BODY_BYTES) } });
  const res = await post('Patient', { resourceType: 'Patient', name: [{ family: 'Existing' }] });
  expect(res.status).toBe(201);
  existing = res.body;
});
afterAll(async () => {
  await server?.stop({ dropDatabase: true });
});

interface HttpResult {
  status: number;
  headers: Record<string, string>;
  body: unknown;
  text: string;
}

function post(path: string, body: unknown, headers: Record<string, string> = {}) {
  return server.request
    .post(`/fhir/${path}`)
    .set('content-type', FHIR_JSON)
    .set(headers)
    .send(typeof body === 'string' ? body : JSON.stringify(body));
}

function put(path: string, body: unknown, headers: Record<string, string> = {}) {
  return server.request
    .put(`/fhir/${path}`)
    .set('content-type', FHIR_JSON)
    .set(headers)
    .send(typeof body === 'string' ? body : JSON.stringify(body));
}

function get(path: string, headers: Record<string, string> = {}) {
  return server.request.get(`/fhir/${path}`).set(headers);
}

/** Asserts the response is an OperationOutcome error with `status`, and returns it. */
function expectOutcome(res: HttpResult, status: number, code?: string): OperationOutcome {
  expect(res.status, res.text).toBe(status);
  expect(res.headers['content-type']).toMatch(/^application\/fhir\+json/);
  const outcome = JSON.parse(res.text) as OperationOutcome;
  expect(outcome.resourceType).toBe('OperationOutcome');
  expect(outcome.issue?.length).toBeGreaterThan(0);
  expect(outcome.issue![0].severity).toMatch(/^(error|fatal)$/);
  expect(outcome.issue![0].code).toBeTruthy();
  if (code) {
    expect(outcome.issue![0].code).toBe(code);
  }
  return outcome;
}

async function count(type: string): Promise<number> {
  const res = await get(`${type}?_summary=count`);
  expect(res.status).toBe(200);
  return (res.body as Bundle).total!;
}

/**
 * Runs a write that must be rejected and checks that it changed nothing: the number of
 * Patients and Communications, and the existing Patient, are as before.
 */
async function rejectedWrite(write: () => PromiseLike<HttpResult>, status: number, code?: string): Promise<OperationOutcome> {
  const patients = await count('Patient');
  const messages = await count('Communication');
  const before = await get(`Patient/${existing.id}`);
  const outcome = expectOutcome(await write(), status, code);
  expect(await count('Patient')).toBe(patients);
  expect(await count('Communication')).toBe(messages);
  const after = await get(`Patient/${existing.id}`);
  expect(after.body).toEqual(before.body);
  expect(after.headers.etag).toBe(before.headers.etag);
  return outcome;
}

describe('malformed requests (400)', () => {
  it('rejects a body that is not JSON', async () => {
    await rejectedWrite(() => post('Patient', '{"resourceType": "Patient", "name": [', {}), 400, 'invalid');
    await rejectedWrite(() => put(`Patient/${existing.id}`, '{"resourceType": "Patient",}'), 400, 'invalid');
  });

  it('rejects JSON that is not a resource', async () => {
    await rejectedWrite(() => post('Patient', []), 400);
    await rejectedWrite(() => post('Patient', '"just a string"'), 400);
    await rejectedWrite(() => post('Patient', { name: [{ family: 'No type' }] }), 400);
    await rejectedWrite(() => post('Patient', ''), 400);
  });

  it('rejects an invalid resource and names the offending element', async () => {
    const birthDate = await rejectedWrite(() => post('Patient', { resourceType: 'Patient', birthDate: 'not-a-date' }), 400);
    expect(birthDate.issue!.some((i) => i.expression?.some((e) => e.includes('Patient.birthDate')))).toBe(true);

    const unknown = await rejectedWrite(() => post('Patient', { resourceType: 'Patient', favouriteColour: 'blue' }), 400);
    expect(JSON.stringify(unknown.issue)).toContain('favouriteColour');

    const shape = await rejectedWrite(() => post('Patient', { resourceType: 'Patient', name: 'Ann Smith' }), 400);
    expect(shape.issue!.some((i) => i.expression?.some((e) => e.includes('Patient.name')))).toBe(true);

    const missing = await rejectedWrite(() => post('Communication', { resourceType: 'Communication' }), 400);
    expect(missing.issue!.some((i) => i.expression?.some((e) => e.includes('Communication.status')))).toBe(true);

    // The same checks apply to an update of an existing resource.
    const update = await rejectedWrite(() => put(`Patient/${existing.id}`, { ...existing, birthDate: '31/12/1999' }), 400);
    expect(update.issue!.some((i) => i.expression?.some((e) => e.includes('Patient.birthDate')))).toBe(true);
  });

  it('rejects a resource of another type than the URL names', async () => {
    const outcome = await rejectedWrite(() => post('Patient', { resourceType: 'Practitioner', name: [{ family: 'Wrong' }] }), 400);
    expect(outcome.issue![0].expression).toContain('resourceType');
    expect(await count('Practitioner')).toBe(0);
    await rejectedWrite(() => put(`Patient/${existing.id}`, { resourceType: 'Practitioner', id: existing.id }), 400);
  });

  it('rejects an update whose body id does not match the URL, or has no id', async () => {
    const other = `other-${randomUUID()}`;
    await rejectedWrite(() => put(`Patient/${existing.id}`, { ...existing, id: other }), 400, 'invalid');
    await rejectedWrite(() => put(`Patient/${existing.id}`, { resourceType: 'Patient', name: [{ family: 'No id' }] }), 400, 'invalid');
    expect((await get(`Patient/${other}`)).status).toBe(404);
  });

  it('rejects ids with characters FHIR does not allow', async () => {
    await rejectedWrite(() => put('Patient/bad_id', { resourceType: 'Patient', id: 'bad_id' }), 400, 'invalid');
    await rejectedWrite(() => put('Patient/has%20space', { resourceType: 'Patient', id: 'has space' }), 400, 'invalid');
    const tooLong = 'x'.repeat(65);
    await rejectedWrite(() => put(`Patient/${tooLong}`, { resourceType: 'Patient', id: tooLong }), 400, 'invalid');
    await rejectedWrite(() => post('Patient', { resourceType: 'Patient', id: 'no/slashes' }), 400, 'invalid');
    // Reading such an id finds nothing rather than failing.
    expectOutcome(await get('Patient/bad_id'), 404, 'not-found');
    expectOutcome(await get(`Patient/${tooLong}`), 404, 'not-found');
  });

  it('rejects an If-Match that is not a version tag', async () => {
    await rejectedWrite(() => put(`Patient/${existing.id}`, { ...existing, gender: 'male' }, { 'if-match': 'yesterday' }), 400);
  });

  it('rejects a URL with broken percent-encoding', async () => {
    expectOutcome(await get('Patient/%E0%A4%A'), 400, 'invalid');
  });
});

describe('search parameters', () => {
  it('rejects a parameter the type does not have, unless the client asks for lenient handling', async () => {
    const strict = expectOutcome(await get('Patient?shoe-size=42'), 400, 'invalid');
    expect(JSON.stringify(strict)).toContain('shoe-size');

    const lenient = await get(`Patient?shoe-size=42&_id=${existing.id}`, { prefer: 'handling=lenient' });
    expect(lenient.status).toBe(200);
    const bundle = lenient.body as Bundle;
    expect(bundle.type).toBe('searchset');
    const matches = bundle.entry!.filter((e) => e.search?.mode === 'match');
    expect(matches.map((e) => e.resource!.id)).toEqual([existing.id]);
    const warning = bundle.entry!.find((e) => e.search?.mode === 'outcome')?.resource as OperationOutcome;
    expect(warning.resourceType).toBe('OperationOutcome');
    expect(warning.issue![0].severity).toBe('warning');
    expect(JSON.stringify(warning)).toContain('shoe-size');
    // The ignored parameter is not carried into the paging links.
    expect(bundle.link!.find((l) => l.relation === 'self')!.url).not.toContain('shoe-size');
  });

  it('rejects a bad _count', async () => {
    expectOutcome(await get('Patient?_count=lots'), 400, 'invalid');
    expectOutcome(await get('Patient?_count=-1'), 400, 'invalid');
    expectOutcome(await get('Patient?_count=2.5'), 400, 'invalid');
    expectOutcome(await get('Patient/_history?_count=lots'), 400, 'invalid');
    expectOutcome(await get(`Patient/${existing.id}/_history?_count=-3`), 400, 'invalid');
  });

  it('rejects malformed values, modifiers and result parameters', async () => {
    expectOutcome(await get('Patient?birthdate=yesterday'), 400);
    expectOutcome(await get('Patient?name:sounds-like=ann'), 400);
    expectOutcome(await get('Patient?_sort=shoe-size'), 400);
    expectOutcome(await get('Patient?_include=Patient:shoe'), 400);
    expectOutcome(await get('Patient?_summary=text'), 400);
    expectOutcome(await get('Patient?_total=maybe'), 400);
    expectOutcome(await get('Patient?_cursor=sideways:1'), 400);
    expectOutcome(await get('Patient?gender:missing=perhaps'), 400);
    expectOutcome(await get('Patient/_history?_since=last-week'), 400);
  });

  it('takes POST _search only as a form', async () => {
    const form = await server.request.post('/fhir/Patient/_search').type('form').send({ _id: existing.id });
    expect(form.status).toBe(200);
    expect(form.body.entry.map((e: { resource: Patient }) => e.resource.id)).toEqual([existing.id]);
    const json = await server.request.post('/fhir/Patient/_search').set('content-type', FHIR_JSON).send(JSON.stringify({ _id: existing.id }));
    expectOutcome(json, 415, 'not-supported');
  });
});

describe('unknown and gone (404, 410)', () => {
  it('answers 404 for a resource type the server does not support', async () => {
    expectOutcome(await get('Observation'), 404, 'not-found');
    expectOutcome(await get('Observation/1'), 404, 'not-found');
    expectOutcome(await get('NotAType/1/_history'), 404, 'not-found');
    await rejectedWrite(() => post('Observation', { resourceType: 'Observation', status: 'final', code: { text: 'x' } }), 404, 'not-found');
    await rejectedWrite(() => put('Observation/1', { resourceType: 'Observation', id: '1', status: 'final', code: { text: 'x' } }), 404, 'not-found');
  });

  it('answers 404 for an id that does not exist, whatever the interaction', async () => {
    const id = randomUUID();
    expectOutcome(await get(`Patient/${id}`), 404, 'not-found');
    expectOutcome(await get(`Patient/${id}/_history/1`), 404, 'not-found');
    expectOutcome(await get(`Patient/${id}/_history`), 404, 'not-found');
    expectOutcome(await get(`Patient/${existing.id}/_history/99`), 404, 'not-found');
    expectOutcome(await get(`Patient/${existing.id}/_history/latest`), 404, 'not-found');
    await rejectedWrite(() => server.request.delete(`/fhir/Patient/${id}`), 404, 'not-found');
    await rejectedWrite(
      () =>
        server.request
          .patch(`/fhir/Patient/${id}`)
          .set('content-type', 'application/json-patch+json')
          .send(JSON.stringify([{ op: 'add', path: '/gender', value: 'male' }])),
      404,
      'not-found'
    );
  });

  it('answers 410 for a deleted resource, and refuses to patch it', async () => {
    const created = await post('Patient', { resourceType: 'Patient', name: [{ family: 'ToDelete' }] });
    const id = created.body.id as string;
    expect((await server.request.delete(`/fhir/Patient/${id}`)).status).toBe(204);
    expectOutcome(await get(`Patient/${id}`), 410, 'deleted');
    expectOutcome(await get(`Patient/${id}/_history/2`), 410, 'deleted');
    await rejectedWrite(
      () =>
        server.request
          .patch(`/fhir/Patient/${id}`)
          .set('content-type', 'application/json-patch+json')
          .send(JSON.stringify([{ op: 'add', path: '/gender', value: 'male' }])),
      410,
      'deleted'
    );
    expectOutcome(await get(`Patient/${id}`), 410, 'deleted');
  });

  it('answers 404 for paths that are not FHIR endpoints, and 405 for methods they do not take', async () => {
    expectOutcome(await get(`Patient/${existing.id}/_history/1/extra`), 404, 'not-found');
    expectOutcome(await get(`Patient/${existing.id}/everything`), 404, 'not-found');
    expectOutcome(await server.request.get('/fhir'), 405);
    await rejectedWrite(() => server.request.delete('/fhir/Patient'), 405);
    await rejectedWrite(() => put('Patient', { resourceType: 'Patient' }), 405);
  });
});

describe('body size and media type (413, 415)', () => {
  it('refuses a body over the configured limit with 413', async () => {
    const big = { resourceType: 'Patient', name: [{ family: 'x'.repeat(MAX_BODY_BYTES) }] };
    expect(JSON.stringify(big).length).toBeGreaterThan(MAX_BODY_BYTES);
    await rejectedWrite(() => post('Patient', big), 413);
    await rejectedWrite(() => put(`Patient/${existing.id}`, { ...existing, ...big }), 413);
    // Just under the limit is fine.
    const fits = { resourceType: 'Patient', name: [{ family: 'y'.repeat(MAX_BODY_BYTES - 100) }] };
    expect(JSON.stringify(fits).length).toBeLessThan(MAX_BODY_BYTES);
    expect((await post('Patient', fits)).status).toBe(201);
  });

  it('refuses a resource sent as anything but JSON with 415', async () => {
    const patient = JSON.stringify({ resourceType: 'Patient', name: [{ family: 'Texty' }] });
    await rejectedWrite(() => server.request.post('/fhir/Patient').set('content-type', 'text/plain').send(patient), 415, 'not-supported');
    await rejectedWrite(() => server.request.post('/fhir/Patient').set('content-type', 'application/fhir+xml').send('<Patient/>'), 415, 'not-supported');
    await rejectedWrite(
      () => server.request.put(`/fhir/Patient/${existing.id}`).set('content-type', 'text/plain').send(JSON.stringify(existing)),
      415,
      'not-supported'
    );
    await rejectedWrite(() => server.request.post('/fhir/Patient').type('form').send({ resourceType: 'Patient' }), 415, 'not-supported');
    // No Content-Type at all is not taken as JSON either.
    await rejectedWrite(
      () => server.request.post('/fhir/Patient').send(Buffer.from(patient)).unset('content-type'),
      415,
      'not-supported'
    );
  });

  it('refuses a JSON body in a charset it cannot read with 415', async () => {
    await rejectedWrite(
      () => server.request.post('/fhir/Patient').set('content-type', 'application/fhir+json; charset=ebcdic').send('{"resourceType":"Patient"}'),
      415
    );
  });
});

describe('Bundles posted to the base', () => {
  it('refuses something that is not a batch or transaction Bundle', async () => {
    await rejectedWrite(() => post('', { resourceType: 'Patient' }), 400);
    await rejectedWrite(() => post('', { resourceType: 'Bundle', type: 'collection', entry: [] }), 400);
    await rejectedWrite(() => post('', '{"resourceType":"Bundle",'), 400);
  });
});

describe('authentication (401)', () => {
  it('answers a request without a token with an OperationOutcome, and writes nothing', async () => {
    expectOutcome(await server.anonymous.get(`/fhir/Patient/${existing.id}`), 401);
    await rejectedWrite(
      () => server.anonymous.post('/fhir/Patient').set('content-type', FHIR_JSON).send(JSON.stringify({ resourceType: 'Patient' })),
      401
    );
    await rejectedWrite(() => server.anonymous.delete(`/fhir/Patient/${existing.id}`), 401);
  });
});

describe('server logs', () => {
  it('logged no internal error for any of the bad requests above', () => {
    const errors = server.logs.filter((line) => JSON.parse(line).level >= 50);
    expect(errors).toEqual([]);
  });
});
