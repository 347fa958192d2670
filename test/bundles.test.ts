/**
 * Batch and transaction Bundles posted to the FHIR base: a batch reports each entry's own
 * outcome; a transaction resolves `urn:uuid:` references to the ids the server assigns,
 * honours conditional creates, and either commits every entry or leaves nothing behind.
 */
import { randomUUID } from 'node:crypto';
import type { Bundle, BundleEntry, Communication, OperationOutcome, Patient } from '@medplum/fhirtypes';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestServer } from './support/server.js';
import type { TestServer } from './support/server.js';

const FHIR_JSON = 'application/fhir+json';
const MRN = 'urn:test:mrn';

let server: TestServer;
beforeAll(async () => {
  server = await startTestServer();
});
afterAll(async () => {
  await server?.stop({ dropDatabase: true });
});

function postBundle(bundle: unknown) {
  return server.request.post('/fhir').set('content-type', FHIR_JSON).send(JSON.stringify(bundle));
}

function get(path: string) {
  return server.request.get(`/fhir/${path}`);
}

async function count(query: string): Promise<number> {
  const res = await get(`${query}${query.includes('?') ? '&' : '?'}_summary=count`);
  expect(res.status).toBe(200);
  return (res.body as Bundle).total!;
}

async function createPatient(patient: Partial<Patient>): Promise<Patient> {
  const res = await server.request.post('/fhir/Patient').set('content-type', FHIR_JSON).send(JSON.stringify({ resourceType: 'Patient', ...patient }));
  expect(res.status).toBe(201);
  return res.body as Patient;
}

const identifier = (value: string) => [{ system: MRN, value }];

/** `Type/id` from an entry response location (`<base>/Type/id/_history/n`). */
function locationReference(entry: BundleEntry): string {
  const match = new RegExp(`^${server.fhirBase}/([A-Za-z]+/[A-Za-z0-9\\-.]+)/_history/\\d+$`).exec(entry.response?.location ?? '');
  expect(match, entry.response?.location).not.toBeNull();
  return match![1];
}

function jsonPatch(operations: unknown[]) {
  return { resourceType: 'Binary', contentType: 'application/json-patch+json', data: Buffer.from(JSON.stringify(operations)).toString('base64') };
}

describe('batch', () => {
  it('runs every entry on its own and reports each one its own status', async () => {
    const toUpdate = await createPatient({ name: [{ family: 'BatchUpdate' }] });
    const toDelete = await createPatient({ name: [{ family: 'BatchDelete' }] });
    const toPatch = await createPatient({ name: [{ family: 'BatchPatch' }] });
    const clientId = `batch-${randomUUID()}`;
    const newMrn = randomUUID();
    const missing = randomUUID();
    const patientsBefore = await count('Patient');

    const res = await postBundle({
      resourceType: 'Bundle',
      type: 'batch',
      entry: [
        { request: { method: 'POST', url: 'Patient' }, resource: { resourceType: 'Patient', identifier: identifier(newMrn), name: [{ family: 'BatchNew' }] } },
        { request: { method: 'POST', url: 'Patient' }, resource: { resourceType: 'Patient', birthDate: 'not-a-date' } },
        { request: { method: 'GET', url: `Patient/${missing}` } },
        { request: { method: 'PUT', url: `Patient/${toUpdate.id}` }, resource: { ...toUpdate, gender: 'female' } },
        { request: { method: 'PUT', url: `Patient/${clientId}` }, resource: { resourceType: 'Patient', id: clientId } },
        { request: { method: 'DELETE', url: `Patient/${toDelete.id}` } },
        { request: { method: 'PATCH', url: `Patient/${toPatch.id}` }, resource: jsonPatch([{ op: 'add', path: '/gender', value: 'male' }]) },
        { request: { method: 'PUT', url: `Patient/${toUpdate.id}`, ifMatch: 'W/"1"' }, resource: { ...toUpdate, gender: 'other' } },
        { request: { method: 'GET', url: `Patient?identifier=${MRN}|${newMrn}` } },
        { request: { method: 'GET', url: `Patient/${toUpdate.id}` } },
        { request: { url: 'Patient' } },
      ],
    });
    expect(res.status).toBe(200);
    expect(res.headers['content-type']).toMatch(/^application\/fhir\+json/);
    const bundle = res.body as Bundle;
    expect(bundle.resourceType).toBe('Bundle');
    expect(bundle.type).toBe('batch-response');
    const entries = bundle.entry!;
    expect(entries).toHaveLength(11);
    const statuses = entries.map((e) => e.response?.status?.slice(0, 3));
    expect(statuses).toEqual(['201', '400', '404', '200', '201', '204', '200', '412', '200', '200', '400']);

    // Successes carry their resource and version; failures carry an OperationOutcome.
    const created = entries[0];
    expect(created.resource?.resourceType).toBe('Patient');
    expect(created.response?.etag).toBe('W/"1"');
    expect(locationReference(created)).toBe(`Patient/${created.resource!.id}`);
    for (const failed of [entries[1], entries[2], entries[7], entries[10]]) {
      const outcome = failed.response!.outcome as OperationOutcome;
      expect(outcome.resourceType).toBe('OperationOutcome');
      expect(outcome.issue![0].severity).toBe('error');
    }
    expect(JSON.stringify(entries[1].response!.outcome)).toContain('Patient.birthDate');
    expect(entries[3].response?.etag).toBe('W/"2"');
    expect(locationReference(entries[4])).toBe(`Patient/${clientId}`);
    expect(entries[6].response?.etag).toBe('W/"2"');
    const search = entries[8].resource as Bundle;
    expect(search.type).toBe('searchset');
    expect(search.entry?.map((e) => e.resource?.id)).toEqual([created.resource!.id]);
    // Entries run in order: the read sees the update two entries before it, not the stale one.
    expect((entries[9].resource as Patient).gender).toBe('female');

    // What succeeded is stored; what failed is not.
    expect(await count('Patient')).toBe(patientsBefore + 2 - 1);
    expect((await get(`Patient/${created.resource!.id}`)).status).toBe(200);
    expect((await get(`Patient/${toUpdate.id}`)).body.gender).toBe('female');
    expect((await get(`Patient/${clientId}`)).status).toBe(200);
    expect((await get(`Patient/${toDelete.id}`)).status).toBe(410);
    expect((await get(`Patient/${toPatch.id}`)).body.gender).toBe('male');
  });
});

describe('transaction', () => {
  it('creates resources that refer to each other by urn:uuid, rewritten to the assigned ids', async () => {
    const patientUrn = `urn:uuid:${randomUUID()}`;
    const headerUrn = `urn:uuid:${randomUUID()}`;
    const mrn = randomUUID();
    const res = await postBundle({
      resourceType: 'Bundle',
      type: 'transaction',
      entry: [
        {
          fullUrl: headerUrn,
          request: { method: 'POST', url: 'Communication' },
          resource: { resourceType: 'Communication', status: 'in-progress', subject: { reference: patientUrn }, topic: { text: 'Thread' } },
        },
        {
          request: { method: 'POST', url: 'Communication' },
          resource: {
            resourceType: 'Communication',
            status: 'completed',
            subject: { reference: patientUrn },
            partOf: [{ reference: headerUrn }],
            sender: { reference: patientUrn },
            payload: [{ contentString: 'Hello' }],
          },
        },
        {
          fullUrl: patientUrn,
          request: { method: 'POST', url: 'Patient' },
          resource: { resourceType: 'Patient', identifier: identifier(mrn), name: [{ family: 'Linked' }] },
        },
      ],
    });
    expect(res.status).toBe(200);
    const bundle = res.body as Bundle;
    expect(bundle.type).toBe('transaction-response');
    const [header, message, patient] = bundle.entry!;
    for (const entry of bundle.entry!) {
      expect(entry.response?.status).toMatch(/^201/);
      expect(entry.response?.etag).toBe('W/"1"');
      expect(entry.response?.lastModified).toBeTruthy();
      expect(entry.fullUrl).toBe(`${server.fhirBase}/${locationReference(entry)}`);
    }
    const patientRef = locationReference(patient);
    const headerRef = locationReference(header);
    expect(patientRef).toMatch(/^Patient\//);
    expect(headerRef).toMatch(/^Communication\//);

    // What is stored refers to the real ids, never to the urn:uuid placeholders.
    const storedPatient = (await get(patientRef)).body as Patient;
    expect(storedPatient.identifier?.[0].value).toBe(mrn);
    const storedHeader = (await get(headerRef)).body as Communication;
    expect(storedHeader.subject?.reference).toBe(patientRef);
    const storedMessage = (await get(locationReference(message))).body as Communication;
    expect(storedMessage.subject?.reference).toBe(patientRef);
    expect(storedMessage.sender?.reference).toBe(patientRef);
    expect(storedMessage.partOf?.[0].reference).toBe(headerRef);
    expect(JSON.stringify(storedMessage)).not.toContain('urn:uuid');

    // And the references are searchable as such.
    const thread = await get(`Communication?part-of=${headerRef}`);
    expect(thread.body.entry.map((e: BundleEntry) => `Communication/${e.resource!.id}`)).toEqual([locationReference(message)]);
    expect(await count(`Communication?subject=${patientRef}`)).toBe(2);
  });

  it('resolves a conditional create to the existing resource, and references to it', async () => {
    const mrn = randomUUID();
    const known = await createPatient({ identifier: identifier(mrn), name: [{ family: 'Known' }] });
    const freshMrn = randomUUID();
    const knownUrn = `urn:uuid:${randomUUID()}`;
    const freshUrn = `urn:uuid:${randomUUID()}`;
    const patientsBefore = await count('Patient');

    const res = await postBundle({
      resourceType: 'Bundle',
      type: 'transaction',
      entry: [
        {
          fullUrl: knownUrn,
          request: { method: 'POST', url: 'Patient', ifNoneExist: `identifier=${MRN}|${mrn}` },
          resource: { resourceType: 'Patient', identifier: identifier(mrn), name: [{ family: 'Duplicate' }] },
        },
        {
          fullUrl: freshUrn,
          request: { method: 'POST', url: 'Patient', ifNoneExist: `identifier=${MRN}|${freshMrn}` },
          resource: { resourceType: 'Patient', identifier: identifier(freshMrn), name: [{ family: 'Fresh' }] },
        },
        {
          request: { method: 'POST', url: 'Communication' },
          resource: { resourceType: 'Communication', status: 'completed', subject: { reference: knownUrn }, recipient: [{ reference: freshUrn }] },
        },
      ],
    });
    expect(res.status).toBe(200);
    const [existing, fresh, message] = (res.body as Bundle).entry!;
    expect(existing.response?.status).toMatch(/^200/);
    expect((existing.resource as Patient).id).toBe(known.id);
    expect((existing.resource as Patient).name?.[0].family).toBe('Known');
    expect(fresh.response?.status).toMatch(/^201/);
    expect(message.response?.status).toMatch(/^201/);

    expect(await count('Patient')).toBe(patientsBefore + 1);
    expect((await get(`Patient/${known.id}`)).body).toEqual(known);
    const stored = (await get(locationReference(message))).body as Communication;
    expect(stored.subject?.reference).toBe(`Patient/${known.id}`);
    expect(stored.recipient?.[0].reference).toBe(locationReference(fresh));
  });

  it('leaves nothing behind when one entry is invalid', async () => {
    const survivor = await createPatient({ name: [{ family: 'Survivor' }] });
    const victim = await createPatient({ name: [{ family: 'NotDeleted' }] });
    const mrn = randomUUID();
    const patientUrn = `urn:uuid:${randomUUID()}`;
    const patientsBefore = await count('Patient');
    const messagesBefore = await count('Communication');

    const res = await postBundle({
      resourceType: 'Bundle',
      type: 'transaction',
      entry: [
        { fullUrl: patientUrn, request: { method: 'POST', url: 'Patient' }, resource: { resourceType: 'Patient', identifier: identifier(mrn) } },
        {
          request: { method: 'POST', url: 'Communication' },
          resource: { resourceType: 'Communication', status: 'completed', subject: { reference: patientUrn }, identifier: identifier(mrn) },
        },
        { request: { method: 'PUT', url: `Patient/${survivor.id}` }, resource: { ...survivor, gender: 'female' } },
        { request: { method: 'DELETE', url: `Patient/${victim.id}` } },
        { request: { method: 'POST', url: 'Communication' }, resource: { resourceType: 'Communication', status: 'not-a-status', sent: 'later' } },
      ],
    });
    expect(res.status).toBe(400);
    const outcome = res.body as OperationOutcome;
    expect(outcome.resourceType).toBe('OperationOutcome');
    expect(outcome.issue![0].severity).toBe('error');
    expect(JSON.stringify(outcome)).toContain('entry 4');

    expect(await count('Patient')).toBe(patientsBefore);
    expect(await count('Communication')).toBe(messagesBefore);
    expect(await count(`Patient?identifier=${MRN}|${mrn}`)).toBe(0);
    expect(await count(`Communication?identifier=${MRN}|${mrn}`)).toBe(0);
    const untouched = await get(`Patient/${survivor.id}`);
    expect(untouched.body).toEqual(survivor);
    expect(untouched.headers.etag).toBe('W/"1"');
    expect((await get(`Patient/${victim.id}`)).status).toBe(200);
    expect((await get(`Patient/${survivor.id}/_history`)).body.entry).toHaveLength(1);
  });

  it('rolls back on a version conflict (412) or a missing resource (404) in any entry', async () => {
    const patient = await createPatient({ name: [{ family: 'Conflicted' }] });
    await server.request
      .put(`/fhir/Patient/${patient.id}`)
      .set('content-type', FHIR_JSON)
      .send(JSON.stringify({ ...patient, gender: 'male' }));
    const mrn = randomUUID();
    const patientsBefore = await count('Patient');
    const newPatient = { request: { method: 'POST', url: 'Patient' }, resource: { resourceType: 'Patient', identifier: identifier(mrn) } };

    const conflict = await postBundle({
      resourceType: 'Bundle',
      type: 'transaction',
      entry: [newPatient, { request: { method: 'PUT', url: `Patient/${patient.id}`, ifMatch: 'W/"1"' }, resource: { ...patient, gender: 'female' } }],
    });
    expect(conflict.status).toBe(412);
    expect(conflict.body.resourceType).toBe('OperationOutcome');

    const missing = await postBundle({
      resourceType: 'Bundle',
      type: 'transaction',
      entry: [newPatient, { request: { method: 'DELETE', url: `Patient/${randomUUID()}` } }],
    });
    expect(missing.status).toBe(404);

    expect(await count('Patient')).toBe(patientsBefore);
    expect(await count(`Patient?identifier=${MRN}|${mrn}`)).toBe(0);
    const current = await get(`Patient/${patient.id}`);
    expect(current.body.gender).toBe('male');
    expect(current.headers.etag).toBe('W/"2"');
  });

  it('runs reads after writes, so a transaction sees its own changes', async () => {
    const patient = await createPatient({ name: [{ family: 'Before' }] });
    const mrn = randomUUID();
    const res = await postBundle({
      resourceType: 'Bundle',
      type: 'transaction',
      entry: [
        { request: { method: 'GET', url: `Patient?identifier=${MRN}|${mrn}` } },
        { request: { method: 'GET', url: `Patient/${patient.id}` } },
        { request: { method: 'GET', url: `Patient/${patient.id}/_history/1` } },
        { request: { method: 'GET', url: `Patient/${patient.id}/_history` } },
        { request: { method: 'PATCH', url: `Patient/${patient.id}` }, resource: jsonPatch([{ op: 'replace', path: '/name/0/family', value: 'After' }]) },
        { request: { method: 'POST', url: 'Patient' }, resource: { resourceType: 'Patient', identifier: identifier(mrn) } },
      ],
    });
    expect(res.status).toBe(200);
    const entries = (res.body as Bundle).entry!;
    expect(entries.map((e) => e.response?.status?.slice(0, 3))).toEqual(['200', '200', '200', '200', '200', '201']);
    const search = entries[0].resource as Bundle;
    expect(search.entry?.map((e) => e.resource?.id)).toEqual([entries[5].resource!.id]);
    expect((entries[1].resource as Patient).name?.[0].family).toBe('After');
    expect((entries[2].resource as Patient).name?.[0].family).toBe('Before');
    expect((entries[3].resource as Bundle).entry?.map((e) => e.response?.etag)).toEqual(['W/"2"', 'W/"1"']);
    expect(entries[4].response?.etag).toBe('W/"2"');
  });

  it('answers each entry with status, location, etag and the resource', async () => {
    const patient = await createPatient({ name: [{ family: 'Answered' }] });
    const clientId = `tx-${randomUUID()}`;
    const res = await postBundle({
      resourceType: 'Bundle',
      type: 'transaction',
      entry: [
        { request: { method: 'PUT', url: `Patient/${patient.id}` }, resource: { ...patient, gender: 'female' } },
        { request: { method: 'PUT', url: `Patient/${clientId}` }, resource: { resourceType: 'Patient', id: clientId } },
        { request: { method: 'POST', url: 'Organization' }, resource: { resourceType: 'Organization', name: 'Clinic' } },
      ],
    });
    expect(res.status).toBe(200);
    const [updated, createdWithId, created] = (res.body as Bundle).entry!;
    expect(updated.response?.status).toMatch(/^200/);
    expect(updated.response?.etag).toBe('W/"2"');
    expect((updated.resource as Patient).meta?.versionId).toBe('2');
    expect(Date.parse(updated.response!.lastModified!)).toBe(Date.parse((updated.resource as Patient).meta!.lastUpdated!));
    expect(createdWithId.response?.status).toMatch(/^201/);
    expect(createdWithId.response?.location).toBe(`${server.fhirBase}/Patient/${clientId}/_history/1`);
    expect(created.response?.status).toMatch(/^201/);
    expect(created.response?.location).toBe(`${server.fhirBase}/Organization/${created.resource!.id}/_history/1`);
    expect(created.response?.etag).toBe('W/"1"');
    expect((await get(`Organization/${created.resource!.id}`)).body).toEqual(created.resource);
  });

  it('records an AuditEvent for each write it commits', async () => {
    const patientUrn = `urn:uuid:${randomUUID()}`;
    const res = await postBundle({
      resourceType: 'Bundle',
      type: 'transaction',
      entry: [{ fullUrl: patientUrn, request: { method: 'POST', url: 'Patient' }, resource: { resourceType: 'Patient' } }],
    });
    expect(res.status).toBe(200);
    const reference = locationReference((res.body as Bundle).entry![0]);
    const audits = await get(`AuditEvent?entity=${reference}`);
    const actions = (audits.body as Bundle).entry!.map((e) => (e.resource as { action?: string }).action);
    expect(actions).toContain('C');
  });
});

describe('malformed Bundles', () => {
  it('rejects a transaction whose entry has no request, writing nothing', async () => {
    const patientsBefore = await count('Patient');
    const res = await postBundle({
      resourceType: 'Bundle',
      type: 'transaction',
      entry: [
        { request: { method: 'POST', url: 'Patient' }, resource: { resourceType: 'Patient' } },
        { resource: { resourceType: 'Patient' } },
      ],
    });
    expect(res.status).toBe(400);
    expect(res.body.resourceType).toBe('OperationOutcome');
    expect(await count('Patient')).toBe(patientsBefore);
  });

  it('rejects a Bundle with more entries than the server accepts (413)', async () => {
    const entry = Array.from({ length: 1001 }, () => ({ request: { method: 'GET', url: 'Patient?_count=1' } }));
    const res = await postBundle({ resourceType: 'Bundle', type: 'batch', entry });
    expect(res.status).toBe(413);
    expect(res.body.resourceType).toBe('OperationOutcome');
  });
});
