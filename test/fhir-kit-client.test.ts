/**
 * CareThread driven by `fhir-kit-client`, the FHIR client an EHR integration (and our own
 * chart delivery) uses: what an integrator's code does — create, read, vread, search with
 * paging both ways, update, patch, history, transaction, delete — must work unmodified, and
 * failures must reach the caller as the HTTP status and OperationOutcome.
 */
import { randomUUID } from 'node:crypto';
import { Client } from 'fhir-kit-client';
import type { FhirResource } from 'fhir-kit-client';
import type { Bundle, CapabilityStatement, Communication, OperationOutcome, Patient } from '@medplum/fhirtypes';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestServer } from './support/server.js';
import type { TestServer } from './support/server.js';

let server: TestServer;
let client: Client;

beforeAll(async () => {
  server = await startTestServer();
  // An integrator's backend-services token (the test administrator's system/*.cruds).
  client = new Client({ baseUrl: server.fhirBase, bearerToken: server.admin.token });
});
afterAll(async () => {
  await server?.stop({ dropDatabase: true });
});

type PageBundle = Parameters<Client['nextPage']>[0]['bundle'];

/** fhir-kit-client types every answer as a bare FhirResource. */
const as = <T>(resource: FhirResource) => resource as unknown as T;

/** The HTTP status and body a rejected fhir-kit-client call carries. */
async function failure(call: Promise<unknown> | undefined): Promise<{ status: number; outcome: OperationOutcome }> {
  try {
    await call;
  } catch (err) {
    const { response } = err as { response?: { status: number; data: OperationOutcome } };
    expect(response, String(err)).toBeDefined();
    return { status: response!.status, outcome: response!.data };
  }
  throw new Error('the call succeeded');
}

/** Follows `next` links (or `previous` ones) with the client, returning every page. */
async function walk(first: Bundle, direction: 'next' | 'previous'): Promise<Bundle[]> {
  const pages = [first];
  for (;;) {
    const current = pages[pages.length - 1];
    const bundle = current as unknown as PageBundle;
    const following = direction === 'next' ? client.nextPage({ bundle }) : client.prevPage({ bundle });
    if (!following) {
      return pages;
    }
    pages.push(as<Bundle>(await following));
    expect(pages.length).toBeLessThan(50);
  }
}

const idsOf = (bundle: Bundle) => (bundle.entry ?? []).map((e) => e.resource!.id!);

describe('fhir-kit-client against CareThread', () => {
  it('reads the CapabilityStatement', async () => {
    const statement = as<CapabilityStatement>(await client.capabilityStatement());
    expect(statement.resourceType).toBe('CapabilityStatement');
    expect(statement.fhirVersion).toBe('4.0.1');
    expect(statement.rest![0].resource!.map((r) => r.type)).toContain('Communication');
  });

  it('creates, reads and vreads a patient, with the version in the response headers', async () => {
    const created = await client.create({ resourceType: 'Patient', body: { resourceType: 'Patient', name: [{ family: 'Kit', given: ['Ada'] }] } });
    const patient = as<Patient>(created);
    expect(patient.id).toBeTruthy();
    expect(patient.meta?.versionId).toBe('1');
    const { response } = Client.httpFor(created);
    expect(response?.status).toBe(201);
    expect(response?.headers.get('location')).toBe(`${server.fhirBase}/Patient/${patient.id}/_history/1`);
    expect(response?.headers.get('etag')).toBe('W/"1"');

    const read = as<Patient>(await client.read({ resourceType: 'Patient', id: patient.id! }));
    expect(read).toEqual(patient);
    const vread = as<Patient>(await client.vread({ resourceType: 'Patient', id: patient.id!, version: '1' }));
    expect(vread).toEqual(patient);
    const resolved = as<Patient>(await client.resolve({ reference: `Patient/${patient.id}` }));
    expect(resolved.id).toBe(patient.id);
  });

  it('pages a search with nextPage and prevPage, seeing every match exactly once', async () => {
    const patient = as<Patient>(await client.create({ resourceType: 'Patient', body: { resourceType: 'Patient', name: [{ family: 'Pager' }] } }));
    const subject = `Patient/${patient.id}`;
    const created: string[] = [];
    for (let i = 0; i < 10; i++) {
      const message = as<Communication>(
        await client.create({
          resourceType: 'Communication',
          body: { resourceType: 'Communication', status: 'completed', subject: { reference: subject }, payload: [{ contentString: `m${i}` }] },
        })
      );
      created.push(message.id!);
    }
    // Someone else's message must not appear.
    await client.create({ resourceType: 'Communication', body: { resourceType: 'Communication', status: 'completed' } });

    const first = as<Bundle>(await client.search({ resourceType: 'Communication', searchParams: { subject, _count: 3 } }));
    expect(first.type).toBe('searchset');
    const pages = await walk(first, 'next');
    expect(pages.map((p) => idsOf(p).length)).toEqual([3, 3, 3, 1]);
    const seen = pages.flatMap(idsOf);
    expect(new Set(seen).size).toBe(seen.length);
    expect([...seen].sort()).toEqual([...created].sort());

    // And back again from the last page: the same pages in reverse.
    const backwards = await walk(pages[pages.length - 1], 'previous');
    expect(backwards.map(idsOf)).toEqual([...pages].reverse().map(idsOf));

    // A search by POST _search (form body) finds the same first page.
    const posted = as<Bundle>(await client.search({ resourceType: 'Communication', searchParams: { subject, _count: 3 }, options: { postSearch: true } }));
    expect(idsOf(posted)).toEqual(idsOf(first));
  });

  it('updates and patches, and reads the history newest first', async () => {
    const patient = as<Patient>(await client.create({ resourceType: 'Patient', body: { resourceType: 'Patient', name: [{ family: 'Versions' }] } }));
    const updated = as<Patient>(await client.update({ resourceType: 'Patient', id: patient.id!, body: { ...patient, gender: 'female' } as FhirResource }));
    expect(updated.meta?.versionId).toBe('2');
    expect(updated.gender).toBe('female');
    const patched = as<Patient>(await client.patch({ resourceType: 'Patient', id: patient.id!, jsonPatch: [{ op: 'add', path: '/birthDate', value: '1990-05-06' }] }));
    expect(patched.meta?.versionId).toBe('3');
    expect(patched.birthDate).toBe('1990-05-06');
    expect(patched.gender).toBe('female');

    const history = as<Bundle>(await client.history({ resourceType: 'Patient', id: patient.id! }));
    expect(history.type).toBe('history');
    expect(history.entry!.map((e) => e.resource?.meta?.versionId)).toEqual(['3', '2', '1']);
    expect(history.entry!.map((e) => e.request?.method)).toEqual(['PUT', 'PUT', 'POST']);

    // A stale version in If-Match is refused and changes nothing.
    const stale = await failure(
      client.update({ resourceType: 'Patient', id: patient.id!, body: { ...patient, gender: 'male' } as FhirResource, options: { headers: { 'If-Match': 'W/"1"' } } })
    );
    expect(stale.status).toBe(412);
    expect(as<Patient>(await client.read({ resourceType: 'Patient', id: patient.id! })).gender).toBe('female');
  });

  it('pages a type history with nextPage', async () => {
    const made = new Set<string>();
    for (let i = 0; i < 5; i++) {
      const role = as<{ id: string }>(await client.create({ resourceType: 'PractitionerRole', body: { resourceType: 'PractitionerRole', active: true } }));
      made.add(`${role.id}/1`);
    }
    const first = as<Bundle>(await client.history({ resourceType: 'PractitionerRole', options: { headers: {} } }));
    expect(first.entry!.length).toBe(5);
    const paged = await walk(as<Bundle>(await client.request('PractitionerRole/_history?_count=2')), 'next');
    expect(paged.length).toBe(3);
    const seen = paged.flatMap((p) => p.entry!.map((e) => `${e.resource!.id}/${e.resource!.meta!.versionId}`));
    expect(new Set(seen)).toEqual(made);
    expect(seen.length).toBe(made.size);
  });

  it('posts a transaction whose urn:uuid references become real ids', async () => {
    const patientUrn = `urn:uuid:${randomUUID()}`;
    const response = as<Bundle>(
      await client.transaction({
        body: {
          resourceType: 'Bundle',
          type: 'transaction',
          entry: [
            { fullUrl: patientUrn, request: { method: 'POST', url: 'Patient' }, resource: { resourceType: 'Patient', name: [{ family: 'Bundled' }] } },
            {
              request: { method: 'POST', url: 'Communication' },
              resource: { resourceType: 'Communication', status: 'completed', subject: { reference: patientUrn } },
            },
          ],
        },
      })
    );
    expect(response.type).toBe('transaction-response');
    const [patientEntry, messageEntry] = response.entry!;
    const message = as<Communication>(await client.read({ resourceType: 'Communication', id: messageEntry.resource!.id! }));
    expect(message.subject?.reference).toBe(`Patient/${patientEntry.resource!.id}`);
  });

  it('deletes, after which reads fail with 410 and unknown ids with 404', async () => {
    const patient = as<Patient>(await client.create({ resourceType: 'Patient', body: { resourceType: 'Patient', name: [{ family: 'Gone' }] } }));
    await client.delete({ resourceType: 'Patient', id: patient.id! });
    const gone = await failure(client.read({ resourceType: 'Patient', id: patient.id! }));
    expect(gone.status).toBe(410);
    expect(gone.outcome.resourceType).toBe('OperationOutcome');
    const old = as<Patient>(await client.vread({ resourceType: 'Patient', id: patient.id!, version: '1' }));
    expect(old.name?.[0].family).toBe('Gone');
    const found = as<Bundle>(await client.search({ resourceType: 'Patient', searchParams: { _id: patient.id! } }));
    expect(found.entry ?? []).toHaveLength(0);

    const missing = await failure(client.read({ resourceType: 'Patient', id: randomUUID() }));
    expect(missing.status).toBe(404);
    expect(missing.outcome.issue?.[0].code).toBe('not-found');
  });

  it('surfaces a rejected create as 400 with an OperationOutcome naming the element', async () => {
    const invalid = await failure(client.create({ resourceType: 'Patient', body: { resourceType: 'Patient', birthDate: 'soon' } }));
    expect(invalid.status).toBe(400);
    expect(invalid.outcome.resourceType).toBe('OperationOutcome');
    expect(JSON.stringify(invalid.outcome.issue)).toContain('Patient.birthDate');
    const unknownParam = await failure(client.search({ resourceType: 'Patient', searchParams: { 'shoe-size': 42 } }));
    expect(unknownParam.status).toBe(400);
  });
});
