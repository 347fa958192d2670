/**
 * Patient data isolation (SMART.md): with a token for patient A, nothing of patient B is
 * reachable through any route — reads, vreads, history, every kind of search, includes,
 * Binary attachments, writes, Bundles, conditional creates, paging cursors and the audit
 * trail. Then the same for a representative, a practitioner without a care relationship,
 * an auditor, a query-restricted scope, v1 scopes and batch entries. Every token here is a
 * real one, from the authorization-code flow or client_credentials.
 */
import { randomUUID } from 'node:crypto';
import type { AuditEvent, Bundle, BundleEntry, Communication, Resource } from '@medplum/fhirtypes';
import type supertest from 'supertest';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { startTestServer } from './support/server.js';
import type { TestServer } from './support/server.js';
import { backendToken, createUser, registerPublicClient, userToken } from './support/tokens.js';
import type { IssuedToken } from './support/tokens.js';

const FHIR_JSON = 'application/fhir+json';
const CATEGORY_SYSTEM = 'https://carethread.dev/fhir/CodeSystem/message-category';
const CONFIDENTIAL = { system: 'http://terminology.hl7.org/CodeSystem/v3-Confidentiality', code: 'R' };
const IDENTIFIER_SYSTEM = 'urn:test:isolation';
/** Marks a thread header (CareThread's tag system). */
const THREAD_TAG = { system: 'https://carethread.dev/fhir/CodeSystem/tag', code: 'thread' };
const PASSWORD = 'correct horse battery staple';

type Agent = ReturnType<typeof supertest.agent>;

/** One patient's records. */
interface Chart {
  patient: string;
  practitioner: string;
  encounter: string;
  careTeam: string;
  relatedPerson: string;
  header: string;
  message: string;
  reply: string;
  binary: string;
  documentReference: string;
  provenance: string;
  /** The identifier value of `message`. */
  messageIdentifier: string;
}

let server: TestServer;
let a: Chart;
let b: Chart;
/** Everything of B's (and nothing of A's): `Type/id`. */
let bResources: string[];
/** A's message filed under A but pointing at B's thread header and encounter. */
let aMisfiled: string;
/** B's message in A's thread, and B's Provenance naming A's message. */
let bInAThread: string;
let bProvenanceOnA: string;
/** A confidential message of A's, and one that was confidential and is deleted now. */
let aConfidential: string;
let aDeletedConfidential: string;
/** B's message, deleted. */
let bDeleted: string;
/** A Subscription an integrator keeps for B's messages. */
let bSubscription: string;
/** The practitioner whose only care relationship is an encounter with A. */
let doctorXReference: string;

let alice: IssuedToken;

// ---- helpers --------------------------------------------------------------------------

function send(agent: Agent, method: 'post' | 'put', path: string, body: unknown, headers: Record<string, string> = {}) {
  return agent[method](`/fhir/${path}`).set('content-type', FHIR_JSON).set(headers).send(JSON.stringify(body));
}

async function adminCreate<T extends Resource>(resource: T): Promise<string> {
  const res = await send(server.request, 'post', resource.resourceType, resource);
  if (res.status !== 201) {
    throw new Error(`Could not create ${resource.resourceType}: ${res.status} ${JSON.stringify(res.body)}`);
  }
  return `${resource.resourceType}/${res.body.id}`;
}

const idOf = (reference: string) => reference.split('/')[1];
const ref = (reference: string) => ({ reference });
const category = (code: string) => [{ coding: [{ system: CATEGORY_SYSTEM, code }] }];

/** `Type/id` of every resource in a search or history Bundle. */
function referencesIn(bundle: Bundle): string[] {
  return (bundle.entry ?? []).filter((e) => e.resource).map((e) => `${e.resource!.resourceType}/${e.resource!.id}`);
}

/** Asserts a 200 search/history answer holds nothing of B's. */
function expectNothingOfB(res: supertest.Response): string[] {
  expect(res.status, JSON.stringify(res.body)).toBe(200);
  const found = referencesIn(res.body as Bundle);
  expect(found.filter((r) => bResources.includes(r))).toEqual([]);
  expect(JSON.stringify(res.body)).not.toContain(b.patient);
  return found;
}

async function search(agent: Agent, query: string): Promise<supertest.Response> {
  return agent.get(`/fhir/${query}`);
}

function communication(subject: string, extra: Partial<Communication> = {}): Communication {
  return { resourceType: 'Communication', status: 'completed', subject: ref(subject), category: category('medical-question'), ...extra };
}

async function adminFinds(query: string): Promise<string[]> {
  const res = await server.request.get(`/fhir/${query}`);
  expect(res.status).toBe(200);
  return referencesIn(res.body as Bundle);
}

/** Writes a resource with a client-chosen id (update-as-create), as an EHR keeping its own ids does. */
async function adminPut<T extends Resource>(resource: T): Promise<string> {
  const id = `iso-${randomUUID()}`;
  const res = await send(server.request, 'put', `${resource.resourceType}/${id}`, { ...resource, id });
  if (res.status !== 201) {
    throw new Error(`Could not put ${resource.resourceType}: ${res.status} ${JSON.stringify(res.body)}`);
  }
  return `${resource.resourceType}/${id}`;
}

/** Creates one patient's chart, as an EHR integration would (messages through the messaging rules). */
async function seedChart(tag: string, family: string, encounterClass: string): Promise<Chart> {
  const practitioner = await adminCreate({ resourceType: 'Practitioner', name: [{ family: `Doctor${tag}` }] });
  const patient = await adminCreate({ resourceType: 'Patient', name: [{ family, given: [`Given${tag}`] }], identifier: [{ system: IDENTIFIER_SYSTEM, value: `mrn-${tag}` }] });
  const encounter = await adminCreate({
    resourceType: 'Encounter',
    status: 'finished',
    class: { system: 'http://terminology.hl7.org/CodeSystem/v3-ActCode', code: encounterClass },
    subject: ref(patient),
    participant: [{ individual: ref(practitioner) }],
  });
  const careTeam = await adminCreate({ resourceType: 'CareTeam', status: 'active', name: `Care team ${tag}`, subject: ref(patient), participant: [{ member: ref(practitioner) }] });
  const relatedPerson = await adminCreate({ resourceType: 'RelatedPerson', active: true, patient: ref(patient), name: [{ family: `Parent${tag}` }] });
  const header = await adminCreate(
    communication(patient, {
      meta: { tag: [THREAD_TAG] },
      status: 'in-progress',
      topic: { text: `Question of ${tag}` },
      sender: ref(patient),
      sent: '2024-03-01T09:00:00Z',
      recipient: [ref(careTeam)],
      identifier: [{ system: IDENTIFIER_SYSTEM, value: `header-${tag}` }],
    })
  );
  const messageIdentifier = `message-${tag}`;
  const message = await adminCreate(
    communication(patient, {
      partOf: [ref(header)],
      encounter: ref(encounter),
      sender: ref(patient),
      recipient: [ref(practitioner)],
      sent: '2024-03-01T10:00:00Z',
      payload: [{ contentString: `Secret words of ${tag}` }],
      identifier: [{ system: IDENTIFIER_SYSTEM, value: messageIdentifier }],
    })
  );
  const binaryRes = await send(server.request, 'post', 'Binary', {
    resourceType: 'Binary',
    contentType: 'text/plain',
    securityContext: ref(message),
    data: Buffer.from(`attachment of ${tag}`).toString('base64'),
  });
  expect(binaryRes.status).toBe(201);
  const binary = `Binary/${binaryRes.body.id}`;
  // The message now carries its attachment: version 2.
  const current = (await server.request.get(`/fhir/${message}`)).body as Communication;
  const updated = await send(server.request, 'put', message, {
    ...current,
    payload: [...current.payload!, { contentAttachment: { contentType: 'text/plain', url: binary } }],
  });
  expect(updated.status).toBe(200);
  const reply = await adminCreate(
    communication(patient, {
      partOf: [ref(header)],
      inResponseTo: [ref(message)],
      sender: ref(practitioner),
      recipient: [ref(patient)],
      category: category('test-results'),
      sent: '2024-03-02T10:00:00Z',
      payload: [{ contentString: `Results for ${tag}` }],
    })
  );
  const documentReference = await adminCreate({
    resourceType: 'DocumentReference',
    status: 'current',
    subject: ref(patient),
    description: `Letter for ${tag}`,
    content: [{ attachment: { contentType: 'text/plain', url: binary } }],
  });
  const provenance = await adminCreate({
    resourceType: 'Provenance',
    target: [ref(message), ref(patient)],
    recorded: '2024-03-01T10:00:00Z',
    agent: [{ who: ref(patient) }],
  });
  return { patient, practitioner, encounter, careTeam, relatedPerson, header, message, reply, binary, documentReference, provenance, messageIdentifier };
}

/** A new thread as a patient (or their proxy) starts one in the portal: a header to their care team. */
function newThread(chart: Chart, extra: Partial<Communication> = {}): Communication {
  return communication(chart.patient, { topic: { text: 'New question' }, recipient: [ref(chart.careTeam)], ...extra });
}

beforeAll(async () => {
  server = await startTestServer();
  a = await seedChart('A', 'Aalto', 'AMB');
  b = await seedChart('B', 'Zebulonova', 'HH');

  // Cross-links that an unconfined include or chain would follow into the other chart. The
  // messaging rules refuse them on create; an EHR writing with its own ids can still make them.
  aMisfiled = await adminPut(communication(a.patient, { sender: ref(a.patient), partOf: [ref(b.header)], encounter: ref(b.encounter), payload: [{ contentString: 'misfiled' }] }));
  bInAThread = await adminPut(communication(b.patient, { sender: ref(b.patient), partOf: [ref(a.header)], payload: [{ contentString: 'B wrote in A thread' }] }));
  bProvenanceOnA = await adminCreate({ resourceType: 'Provenance', target: [ref(a.message), ref(b.patient)], recorded: '2024-03-03T10:00:00Z', agent: [{ who: ref(b.patient) }] });
  aConfidential = await adminPut(
    communication(a.patient, { meta: { security: [CONFIDENTIAL] }, partOf: [ref(a.header)], sender: ref(a.patient), payload: [{ contentString: 'confidential words' }] })
  );
  aDeletedConfidential = await adminPut(
    communication(a.patient, { meta: { security: [CONFIDENTIAL] }, partOf: [ref(a.header)], sender: ref(a.patient), payload: [{ contentString: 'erased private words' }] })
  );
  expect((await server.request.delete(`/fhir/${aDeletedConfidential}`)).status).toBe(204);
  bDeleted = await adminPut(communication(b.patient, { sender: ref(b.patient), payload: [{ contentString: 'B deleted this' }] }));
  expect((await server.request.delete(`/fhir/${bDeleted}`)).status).toBe(204);
  bSubscription = await adminCreate({
    resourceType: 'Subscription',
    status: 'off',
    reason: 'EHR feed',
    criteria: `Communication?subject=${b.patient}`,
    channel: { type: 'rest-hook', endpoint: 'https://ehr.example/hook', header: ['Authorization: Bearer integration-secret'] },
  });

  bResources = [
    ...Object.entries(b).filter(([key]) => key !== 'messageIdentifier' && key !== 'practitioner').map(([, value]) => value),
    bInAThread,
    bProvenanceOnA,
    bDeleted,
    bSubscription,
  ];

  // Representatives: one linked to A only; one linked to A and (through B's RelatedPerson) to B.
  const twoPatientRepresentative = await adminCreate({ resourceType: 'RelatedPerson', active: true, patient: ref(a.patient), name: [{ family: 'Guardian' }] });
  // A practitioner whose only care relationship is an encounter with A, made before their
  // token is first used (relationships are cached for a while per practitioner).
  const doctorX = await adminCreate({ resourceType: 'Practitioner', name: [{ family: 'Xavier' }] });
  doctorXReference = doctorX;
  await adminCreate({ resourceType: 'Encounter', status: 'finished', class: { code: 'AMB' }, subject: ref(a.patient), participant: [{ individual: ref(doctorX) }] });
  const doctorNobody = await adminCreate({ resourceType: 'Practitioner', name: [{ family: 'Nobody' }] });
  const auditor = await adminCreate({ resourceType: 'Practitioner', name: [{ family: 'Auditor' }] });

  for (const user of [
    { username: 'alice', fhirUser: a.patient },
    { username: 'bob', fhirUser: b.patient },
    { username: 'rep-a', fhirUser: a.relatedPerson },
    { username: 'rep-two', fhirUser: twoPatientRepresentative, represents: [b.relatedPerson] },
    { username: 'dr-x', fhirUser: doctorX },
    { username: 'dr-nobody', fhirUser: doctorNobody },
    { username: 'auditor', fhirUser: auditor, roles: ['auditor'] },
  ]) {
    await createUser(server, { ...user, password: PASSWORD });
  }
  clientId = await registerPublicClient(server);
  alice = await tokenFor('alice', 'openid fhirUser launch/patient patient/*.cruds');
  expect(alice.patient).toBe(idOf(a.patient));

  // B uses the portal too, so the audit trail holds B's own events.
  const bob = await tokenFor('bob', 'launch/patient patient/*.cruds');
  expect((await bob.request.get(`/fhir/${b.message}`)).status).toBe(200);
  expect((await bob.request.get(`/fhir/Communication?subject=${b.patient}`)).status).toBe(200);
  await server.app.audit.flush();
});

afterAll(async () => {
  await server?.stop({ dropDatabase: true });
});

let clientId: string;

function tokenFor(username: string, scope: string, patient?: string): Promise<IssuedToken> {
  return userToken(server, { username, password: PASSWORD, scope, patient, clientId });
}

// ---- patient A against patient B ------------------------------------------------------

describe('a patient reaches nothing of another patient', () => {
  it('1. reads of each of B’s resources are 404, exactly like a resource that does not exist', async () => {
    const missing = await alice.request.get(`/fhir/Communication/${randomUUID()}`);
    expect(missing.status).toBe(404);
    for (const reference of bResources.filter((r) => r !== bSubscription)) {
      const res = await alice.request.get(`/fhir/${reference}`).set('accept', FHIR_JSON);
      expect(res.status, reference).toBe(404);
      expect(res.body.resourceType).toBe('OperationOutcome');
      expect(res.body.issue[0].code).toBe(missing.body.issue[0].code);
      expect(JSON.stringify(res.body)).not.toMatch(/Secret words of B|Zebulonova/);
    }
  });

  it('2. a deleted resource of B’s is 404 (not 410), so its existence is not revealed', async () => {
    expect((await alice.request.get(`/fhir/${bDeleted}`)).status).toBe(404);
    expect((await alice.request.get(`/fhir/${bDeleted}/_history/1`)).status).toBe(404);
  });

  it('3. vread of B’s message and patient record is 404', async () => {
    expect((await alice.request.get(`/fhir/${b.message}/_history/1`)).status).toBe(404);
    expect((await alice.request.get(`/fhir/${b.message}/_history/2`)).status).toBe(404);
    expect((await alice.request.get(`/fhir/${b.patient}/_history/1`)).status).toBe(404);
  });

  it('4. instance history of B’s resources is 404', async () => {
    expect((await alice.request.get(`/fhir/${b.message}/_history`)).status).toBe(404);
    expect((await alice.request.get(`/fhir/${b.patient}/_history`)).status).toBe(404);
    expect((await alice.request.get(`/fhir/${b.binary}/_history`)).status).toBe(404);
  });

  it('5. type history holds A’s versions and none of B’s', async () => {
    for (const type of ['Communication', 'Patient', 'Encounter', 'Provenance', 'Binary', 'DocumentReference', 'CareTeam', 'RelatedPerson']) {
      const found = expectNothingOfB(await alice.request.get(`/fhir/${type}/_history?_count=1000`));
      expect(found.length, type).toBeGreaterThan(0);
    }
    const communications = referencesIn((await alice.request.get('/fhir/Communication/_history?_count=1000')).body);
    expect(communications).toContain(a.message);
  });

  it('6. search by subject=Patient/B (relative, absolute and bare id) finds nothing', async () => {
    for (const value of [b.patient, `${server.fhirBase}/${b.patient}`, idOf(b.patient)]) {
      const found = expectNothingOfB(await search(alice.request, `Communication?subject=${encodeURIComponent(value)}`));
      expect(found).toEqual([]);
    }
    expect(await adminFinds(`Communication?subject=${b.patient}`)).toContain(b.message);
  });

  it('7. search by patient=B on every compartment type finds nothing', async () => {
    for (const type of ['Communication', 'Encounter', 'CareTeam', 'RelatedPerson', 'DocumentReference', 'Provenance']) {
      const found = expectNothingOfB(await search(alice.request, `${type}?patient=${idOf(b.patient)}`));
      expect(found, type).toEqual([]);
    }
  });

  it('8. search by _id of B’s resources finds nothing, even mixed with A’s own', async () => {
    for (const reference of bResources.filter((r) => r !== bSubscription)) {
      const [type, id] = reference.split('/');
      const found = expectNothingOfB(await search(alice.request, `${type}?_id=${id}`));
      expect(found, reference).toEqual([]);
    }
    const mixed = expectNothingOfB(await search(alice.request, `Communication?_id=${idOf(a.message)},${idOf(b.message)},${idOf(b.header)}`));
    expect(mixed).toEqual([a.message]);
  });

  it('8b. negated searches (_id:not, :missing, :not) stay within A’s compartment', async () => {
    for (const query of [
      `Patient?_id:not=${idOf(a.patient)}`,
      `Communication?_id:not=${idOf(a.message)}&_count=1000`,
      'Communication?encounter:missing=false&_count=1000',
      'Communication?category:not=medical-question&_count=1000',
      'Encounter?subject:missing=false',
    ]) {
      expectNothingOfB(await search(alice.request, query));
    }
    expect(referencesIn((await search(alice.request, `Patient?_id:not=${idOf(a.patient)}`)).body)).toEqual([]);
  });

  it('9. search for B’s Patient by _id, name, identifier and family finds nothing; Patient search lists only A', async () => {
    for (const query of [`_id=${idOf(b.patient)}`, 'name=Zebulonova', 'family=zeb', `identifier=${IDENTIFIER_SYSTEM}|mrn-B`, 'given:contains=B']) {
      expect(expectNothingOfB(await search(alice.request, `Patient?${query}`)), query).toEqual([]);
    }
    expect(expectNothingOfB(await search(alice.request, 'Patient'))).toEqual([a.patient]);
  });

  it('10. chained search through Patient (subject:Patient.name=B’s name) finds nothing', async () => {
    expect(expectNothingOfB(await search(alice.request, 'Communication?subject:Patient.name=Zebulonova'))).toEqual([]);
    expect(expectNothingOfB(await search(alice.request, `Communication?subject.identifier=${IDENTIFIER_SYSTEM}|mrn-B`))).toEqual([]);
    expect(expectNothingOfB(await search(alice.request, 'Communication?subject:Patient.name=Aalto'))).toContain(a.message);
    expect(await adminFinds('Communication?subject:Patient.name=Zebulonova')).toContain(b.message);
  });

  it('11. a chain from A’s own message into B’s encounter reveals nothing about that encounter', async () => {
    // aMisfiled (A's) points at B's encounter, whose class is HH: the chain must not see it.
    expect(expectNothingOfB(await search(alice.request, 'Communication?encounter:Encounter.class=HH'))).toEqual([]);
    expect(expectNothingOfB(await search(alice.request, `Communication?part-of:Communication.identifier=${IDENTIFIER_SYSTEM}|header-B`))).toEqual([]);
    expect(await adminFinds('Communication?encounter:Encounter.class=HH')).toContain(aMisfiled);
  });

  it('12. _include from A’s messages does not pull B’s thread header, encounter or patient', async () => {
    const res = await search(alice.request, `Communication?_id=${idOf(aMisfiled)}&_include=Communication:part-of&_include=Communication:encounter&_include=Communication:subject`);
    const found = expectNothingOfB(res);
    expect(found).toEqual(expect.arrayContaining([aMisfiled, a.patient]));
    const admin = await adminFinds(`Communication?_id=${idOf(aMisfiled)}&_include=Communication:part-of&_include=Communication:encounter`);
    expect(admin).toEqual(expect.arrayContaining([b.header, b.encounter]));
  });

  it('13. _revinclude on A’s resources does not pull B’s messages or Provenance', async () => {
    const thread = expectNothingOfB(await search(alice.request, `Communication?_id=${idOf(a.header)}&_revinclude=Communication:part-of`));
    expect(thread).toContain(a.message);
    const provenance = expectNothingOfB(await search(alice.request, `Communication?_id=${idOf(a.message)}&_revinclude=Provenance:target`));
    expect(provenance).toContain(a.provenance);
    const patient = expectNothingOfB(await search(alice.request, `Patient?_revinclude=Provenance:target&_revinclude=RelatedPerson:patient&_revinclude=Communication:part-of`));
    expect(patient).toContain(a.patient);
    const admin = await adminFinds(`Communication?_id=${idOf(a.header)},${idOf(a.message)}&_revinclude=Communication:part-of&_revinclude=Provenance:target`);
    expect(admin).toEqual(expect.arrayContaining([bInAThread, bProvenanceOnA]));
  });

  it('14. compartment-style URLs (Patient/B/Communication, Patient/B/$everything) expose nothing', async () => {
    for (const path of [`${b.patient}/Communication`, `${b.patient}/$everything`, `${b.patient}/*`]) {
      const res = await alice.request.get(`/fhir/${path}`);
      expect(res.status, path).toBe(404);
      expect(JSON.stringify(res.body)).not.toMatch(/Secret words of B|Zebulonova/);
    }
  });

  it('15. B’s attachment (Binary) is 404 however it is asked for; A’s own attachment is served', async () => {
    expect((await alice.request.get(`/fhir/${b.binary}`)).status).toBe(404);
    expect((await alice.request.get(`/fhir/${b.binary}`).set('accept', FHIR_JSON)).status).toBe(404);
    expect((await alice.request.get(`/fhir/${b.binary}/_history/1`)).status).toBe(404);
    expect(expectNothingOfB(await search(alice.request, `Binary?_id=${idOf(b.binary)}`))).toEqual([]);
    const own = await alice.request.get(`/fhir/${a.binary}`).buffer(true).parse((res, done) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => done(null, Buffer.concat(chunks)));
    });
    expect(own.status).toBe(200);
    expect((own.body as Buffer).toString()).toBe('attachment of A');
  });

  it('16. _summary=count and _total=accurate count only A’s resources', async () => {
    const mine = await search(alice.request, 'Communication?_summary=count');
    const adminA = await server.request.get(`/fhir/Communication?subject=${a.patient}&_summary=count`);
    const adminAll = await server.request.get('/fhir/Communication?_summary=count');
    expect(mine.body.total).toBe(adminA.body.total);
    expect(adminAll.body.total).toBeGreaterThan(mine.body.total);
    expect((await search(alice.request, `Communication?subject=${b.patient}&_summary=count`)).body.total).toBe(0);
    expect((await search(alice.request, 'Patient?_summary=count')).body.total).toBe(1);
    const accurate = await search(alice.request, 'Communication?_total=accurate&_count=1');
    expect(accurate.body.total).toBe(mine.body.total);
    expect((await search(alice.request, 'Communication?category=test-results&_total=accurate')).body.total).toBe(1);
  });

  it('17. POST _search is confined like GET', async () => {
    const bySubject = await alice.request.post('/fhir/Communication/_search').type('form').send(`subject=${b.patient}`);
    expect(expectNothingOfB(bySubject)).toEqual([]);
    const byId = await alice.request.post('/fhir/Communication/_search').type('form').send(`_id=${idOf(b.message)}&_revinclude=Provenance:target`);
    expect(expectNothingOfB(byId)).toEqual([]);
    const everything = await alice.request.post('/fhir/Communication/_search').type('form').send('_count=1000');
    expect(expectNothingOfB(everything)).toContain(a.message);
  });

  it('18. a paging cursor naming B’s resource tells nothing about it', async () => {
    const nowhere = await search(alice.request, `Communication?_cursor=after:${randomUUID()}`);
    expect(nowhere.status).toBe(200);
    for (const query of [
      `Communication?_cursor=after:${idOf(b.message)}`,
      `Communication?_cursor=before:${idOf(b.message)}`,
      `Communication?_sort=sent&_cursor=after:${idOf(b.message)}`,
      `Communication?recipient=${a.practitioner}&_sort=-sent&_cursor=after:${idOf(b.message)}`,
    ]) {
      const res = await search(alice.request, query);
      expect(referencesIn(res.body), query).toEqual(referencesIn(nowhere.body));
    }
  });

  it('19. creating a message about B, to B, or as B is refused and writes nothing', async () => {
    const marker = { system: IDENTIFIER_SYSTEM, value: `forbidden-${randomUUID()}` };
    const attempts: Communication[] = [
      newThread(b, { identifier: [marker] }),
      newThread(a, { recipient: [ref(b.patient)], identifier: [marker] }),
      newThread(a, { recipient: [ref(b.careTeam)], identifier: [marker] }),
      newThread(a, { sender: ref(b.patient), identifier: [marker] }),
      communication(b.patient, { partOf: [ref(b.header)], payload: [{ contentString: 'into B thread' }], identifier: [marker] }),
    ];
    for (const attempt of attempts) {
      const res = await send(alice.request, 'post', 'Communication', attempt);
      // 403 from access control, or 422 from the messaging rules that look first (a patient
      // writes only about themselves, to their own care team): refused either way.
      expect([403, 422], JSON.stringify(attempt)).toContain(res.status);
      expect(JSON.stringify(res.body)).not.toMatch(/Secret words of B|Zebulonova/);
    }
    for (const resource of [
      { resourceType: 'Encounter', status: 'planned', class: { code: 'AMB' }, subject: ref(b.patient) },
      { resourceType: 'DocumentReference', status: 'current', subject: ref(b.patient), content: [{ attachment: { url: 'x' } }] },
      { resourceType: 'RelatedPerson', patient: ref(b.patient) },
      { resourceType: 'Provenance', target: [ref(b.message)], recorded: '2024-01-01T00:00:00Z', agent: [{ who: ref(a.patient) }] },
    ]) {
      expect((await send(alice.request, 'post', resource.resourceType, resource)).status, resource.resourceType).toBe(403);
    }
    expect(await adminFinds(`Communication?identifier=${marker.system}|${marker.value}`)).toEqual([]);
  });

  it('19b. posting into B’s thread answers exactly as posting into a thread that does not exist', async () => {
    const into = (header: string) => send(alice.request, 'post', 'Communication', communication(a.patient, { partOf: [ref(header)], payload: [{ contentString: 'hello' }] }));
    const missing = await into(`Communication/${randomUUID()}`);
    const theirs = await into(b.header);
    expect(missing.status).toBeGreaterThanOrEqual(400);
    expect(theirs.status).toBe(missing.status);
    expect(theirs.body).toEqual(missing.body);
  });

  it('20. a Binary attached to B’s message or B’s record cannot be created; one on A’s own can', async () => {
    for (const context of [b.message, b.patient, `Communication/${randomUUID()}`]) {
      const res = await send(alice.request, 'post', 'Binary', { resourceType: 'Binary', contentType: 'text/plain', securityContext: ref(context), data: 'eA==' });
      expect(res.status, context).toBe(403);
    }
    const own = await send(alice.request, 'post', 'Binary', { resourceType: 'Binary', contentType: 'text/plain', securityContext: ref(a.message), data: 'eA==' });
    expect(own.status).toBe(201);
  });

  it('21. update, patch and delete of B’s resources answer as for a missing resource and change nothing', async () => {
    const before = (await server.request.get(`/fhir/${b.message}`)).body as Communication;
    const bEncounter = (await server.request.get(`/fhir/${b.encounter}`)).body;
    const patchBody = JSON.stringify([{ op: 'replace', path: '/status', value: 'entered-in-error' }]);
    const cases: [string, Record<string, unknown>][] = [
      [b.message, { ...before, subject: ref(a.patient), sender: ref(a.patient), recipient: [], payload: [{ contentString: 'hijacked' }] }],
      [b.encounter, { ...bEncounter, subject: ref(a.patient), status: 'cancelled' }],
      [b.patient, { resourceType: 'Patient', id: idOf(b.patient), name: [{ family: 'Renamed' }] }],
      [b.documentReference, { resourceType: 'DocumentReference', id: idOf(b.documentReference), status: 'current', subject: ref(a.patient), content: [{ attachment: { url: 'x' } }] }],
      [b.binary, { resourceType: 'Binary', contentType: 'text/plain', securityContext: ref(a.message), data: Buffer.from('overwritten').toString('base64') }],
    ];
    for (const [reference, body] of cases) {
      const [type] = reference.split('/');
      const missingId = randomUUID();
      const attempts = [
        (target: string, id: string) => send(alice.request, 'put', target, { ...body, id }),
        (target: string) => alice.request.patch(`/fhir/${target}`).set('content-type', 'application/json-patch+json').send(patchBody),
        (target: string) => alice.request.delete(`/fhir/${target}`),
      ];
      for (const attempt of attempts) {
        const theirs = await attempt(reference, idOf(reference));
        if (type === 'Communication') {
          // The patient side may not change sent messages at all: the same 403 whoever's they are.
          const missing = await attempt(`${type}/${missingId}`, missingId);
          expect(theirs.status, reference).toBeGreaterThanOrEqual(400);
          expect(theirs.status, reference).toBe(missing.status);
        } else {
          expect(theirs.status, `${reference}: ${JSON.stringify(theirs.body)}`).toBe(404);
        }
      }
    }
    expect((await server.request.get(`/fhir/${b.message}`)).body).toEqual(before);
    expect((await server.request.get(`/fhir/${b.encounter}`)).body).toEqual(bEncounter);
    expect((await server.request.get(`/fhir/${b.patient}`)).body.name[0].family).toBe('Zebulonova');
    expect((await server.request.get(`/fhir/${b.documentReference}`)).body.meta.versionId).toBe('1');
    expect((await server.request.get(`/fhir/${b.binary}`)).text).toBe('attachment of B');
  });

  it('22. A cannot move its own records into B’s compartment, nor create one there with a client id', async () => {
    const encounter = (await alice.request.get(`/fhir/${a.encounter}`)).body;
    expect((await send(alice.request, 'put', a.encounter, { ...encounter, subject: ref(b.patient) })).status).toBe(403);
    const patch = await alice.request
      .patch(`/fhir/${a.encounter}`)
      .set('content-type', 'application/json-patch+json')
      .send(JSON.stringify([{ op: 'replace', path: '/subject/reference', value: b.patient }]));
    expect(patch.status).toBe(403);
    expect((await server.request.get(`/fhir/${a.encounter}`)).body.subject.reference).toBe(a.patient);
    // An attachment of A's cannot be re-pointed at B's message.
    const binary = { resourceType: 'Binary', contentType: 'text/plain', securityContext: ref(a.message), data: Buffer.from('mine').toString('base64') };
    const created = await send(alice.request, 'post', 'Binary', binary);
    expect(created.status).toBe(201);
    const moved = await send(alice.request, 'put', `Binary/${created.body.id}`, { ...binary, id: created.body.id, securityContext: ref(b.message) });
    expect(moved.status).toBe(403);
    for (const resource of [
      { resourceType: 'Encounter', status: 'planned', class: { code: 'AMB' }, subject: ref(b.patient) },
      { ...newThread(b), sender: ref(b.patient) },
    ]) {
      const id = `iso-${randomUUID()}`;
      expect((await send(alice.request, 'put', `${resource.resourceType}/${id}`, { ...resource, id })).status, resource.resourceType).toBe(403);
      expect((await server.request.get(`/fhir/${resource.resourceType}/${id}`)).status).toBe(404);
    }
  });

  it('23. a transaction with an entry touching B fails as a whole and leaves nothing behind', async () => {
    const marker = `txn-${randomUUID()}`;
    const mine: BundleEntry = {
      fullUrl: `urn:uuid:${randomUUID()}`,
      resource: newThread(a, { identifier: [{ system: IDENTIFIER_SYSTEM, value: marker }] }),
      request: { method: 'POST', url: 'Communication' },
    };
    const touching: BundleEntry[] = [
      { resource: { ...newThread(a), id: idOf(b.message) }, request: { method: 'PUT', url: b.message } },
      { resource: newThread(b), request: { method: 'POST', url: 'Communication' } },
      { resource: { resourceType: 'Encounter', status: 'planned', class: { code: 'AMB' }, subject: ref(b.patient) }, request: { method: 'POST', url: 'Encounter' } },
      { resource: { ...((await server.request.get(`/fhir/${b.encounter}`)).body as Resource) }, request: { method: 'PUT', url: b.encounter } },
      { request: { method: 'DELETE', url: b.encounter } },
      { request: { method: 'GET', url: b.message } },
      {
        resource: { resourceType: 'Binary', contentType: 'application/json-patch+json', data: Buffer.from('[{"op":"replace","path":"/status","value":"stopped"}]').toString('base64') },
        request: { method: 'PATCH', url: b.message },
      },
    ];
    for (const entry of touching) {
      const res = await send(alice.request, 'post', '', { resourceType: 'Bundle', type: 'transaction', entry: [mine, entry] });
      expect([403, 404, 422], `${entry.request!.method} ${entry.request!.url}: ${res.status}`).toContain(res.status);
      expect(res.body.resourceType).toBe('OperationOutcome');
      expect(JSON.stringify(res.body)).not.toMatch(/Secret words of B|Zebulonova/);
    }
    expect(await adminFinds(`Communication?identifier=${IDENTIFIER_SYSTEM}|${marker}`)).toEqual([]);
    expect((await server.request.get(`/fhir/${b.encounter}`)).status).toBe(200);
    expect((await server.request.get(`/fhir/${b.message}`)).body.meta.versionId).toBe('2');
  });

  it('24. a batch refuses each entry touching B on its own and runs A’s entries', async () => {
    const res = await send(alice.request, 'post', '', {
      resourceType: 'Bundle',
      type: 'batch',
      entry: [
        { request: { method: 'GET', url: a.message } },
        { request: { method: 'GET', url: b.message } },
        { request: { method: 'GET', url: `Communication?subject=${b.patient}` } },
        { resource: newThread(b), request: { method: 'POST', url: 'Communication' } },
        { resource: newThread(a), request: { method: 'POST', url: 'Communication' } },
        { request: { method: 'DELETE', url: b.encounter } },
        { resource: { resourceType: 'Patient', id: idOf(b.patient), name: [{ family: 'Renamed' }] }, request: { method: 'PUT', url: b.patient } },
        { request: { method: 'GET', url: `${b.message}/_history` } },
        { request: { method: 'GET', url: b.binary } },
      ],
    });
    expect(res.status).toBe(200);
    const statuses = (res.body.entry as BundleEntry[]).map((e) => e.response!.status);
    expect([403, 422]).toContain(Number(statuses[3]));
    expect(statuses).toEqual(['200', '404', '200', statuses[3], '201', '404', '404', '404', '404']);
    expect(res.body.entry[2].resource.total ?? res.body.entry[2].resource.entry?.length ?? 0).toBe(0);
    expect(JSON.stringify(res.body)).not.toMatch(/Secret words of B|Zebulonova|attachment of B/);
    expect((await server.request.get(`/fhir/${b.encounter}`)).status).toBe(200);
  });

  it('25. a conditional create whose If-None-Exist matches B’s resources neither returns nor reveals them', async () => {
    for (const condition of [`identifier=${IDENTIFIER_SYSTEM}|${b.messageIdentifier}`, `subject=${b.patient}`, `_id=${idOf(b.message)}`]) {
      const res = await send(alice.request, 'post', 'Communication', newThread(a), { 'if-none-exist': condition });
      expect(res.status, condition).toBe(201);
      expect(res.body.id).not.toBe(idOf(b.message));
      expect(JSON.stringify(res.body)).not.toMatch(/Secret words of B/);
    }
    // Inside a transaction, a matched conditional create would lend its id to urn:uuid references.
    const fullUrl = `urn:uuid:${randomUUID()}`;
    const txn = await send(alice.request, 'post', '', {
      resourceType: 'Bundle',
      type: 'transaction',
      entry: [
        { fullUrl, resource: newThread(a), request: { method: 'POST', url: 'Communication', ifNoneExist: `identifier=${IDENTIFIER_SYSTEM}|${b.messageIdentifier}` } },
        { resource: communication(a.patient, { partOf: [ref(fullUrl)], payload: [{ contentString: 'first message' }] }), request: { method: 'POST', url: 'Communication' } },
      ],
    });
    expect(txn.status).toBe(200);
    expect(txn.body.entry[0].response.status).toBe('201');
    expect(txn.body.entry[1].resource.partOf[0].reference).not.toBe(b.message);
  });

  it('26. the audit trail A sees holds only events about A', async () => {
    await server.app.audit.flush();
    const eventsFor = async (query: string) => {
      const res = await search(alice.request, query);
      expect(res.status).toBe(200);
      return ((res.body as Bundle).entry ?? []).map((e) => e.resource as AuditEvent);
    };
    const involvesA = (event: AuditEvent) =>
      [...(event.agent ?? []).map((g) => g.who?.reference), ...(event.entity ?? []).map((e) => e.what?.reference)].includes(a.patient);
    const all = await eventsFor('AuditEvent?_count=1000');
    expect(all.length).toBeGreaterThan(0);
    expect(all.filter((event) => !involvesA(event))).toEqual([]);
    // B's own portal use and the integration's writes of B's chart are in the trail, not for A.
    expect(await adminFinds(`AuditEvent?agent=${b.patient}`)).not.toEqual([]);
    expect(await eventsFor(`AuditEvent?agent=${b.patient}`)).toEqual([]);
    // What A finds about B's resources is A's own (refused) attempts, nothing else.
    for (const query of [`AuditEvent?entity=${b.message}`, `AuditEvent?patient=${b.patient}`]) {
      const events = await eventsFor(query);
      expect(events.filter((event) => event.agent?.[0]?.who?.reference !== a.patient), query).toEqual([]);
      expect(events.every((event) => event.outcome !== '0'), query).toBe(true);
    }
  });

  it('27. an integrator’s Subscription about B is not readable by a patient', async () => {
    const read = await alice.request.get(`/fhir/${bSubscription}`);
    expect(read.status).not.toBe(200);
    expect(JSON.stringify(read.body)).not.toContain('integration-secret');
    const found = await search(alice.request, 'Subscription');
    expect(found.status).not.toBe(200);
    expect(JSON.stringify(found.body)).not.toContain('integration-secret');
  });
  it('28. messaging operations expose nothing of B: delivery status, B’s care team’s inbox, response times', async () => {
    expect((await alice.request.get(`/fhir/${b.message}/$delivery-status`)).status).toBe(404);
    expect((await alice.request.get(`/fhir/${a.message}/$delivery-status`)).status).toBe(200);
    const inbox = await alice.request.get(`/fhir/Communication/$inbox?practitioner=${b.practitioner}`);
    expect(inbox.status).toBe(403);
    expect(JSON.stringify(inbox.body)).not.toMatch(/Question of B|Zebulonova/);
    expect((await alice.request.get('/fhir/Communication/$response-times')).status).toBe(403);
  });
});


// ---- representatives ------------------------------------------------------------------

describe('a representative reaches only the patients they act for, without confidential messages', () => {
  let repA: IssuedToken;
  beforeAll(async () => {
    // Asking for B at consent changes nothing: A is the only patient this proxy may pick.
    repA = await tokenFor('rep-a', 'launch/patient patient/*.cruds', b.patient);
  });

  it('R1. a proxy for A gets A’s context and nothing of B’s', async () => {
    expect(repA.patient).toBe(idOf(a.patient));
    expect((await repA.request.get(`/fhir/${b.message}`)).status).toBe(404);
    expect((await repA.request.get(`/fhir/${b.patient}`)).status).toBe(404);
    expect((await repA.request.get(`/fhir/${b.binary}`)).status).toBe(404);
    expect(expectNothingOfB(await search(repA.request, `Communication?subject=${b.patient}`))).toEqual([]);
    expect(expectNothingOfB(await search(repA.request, 'Patient'))).toEqual([a.patient]);
    expect(expectNothingOfB(await search(repA.request, `Communication?_id=${idOf(a.header)}&_revinclude=Communication:part-of`))).toContain(a.message);
    expect((await repA.request.get(`/fhir/${a.message}`)).status).toBe(200);
  });

  it('R2. A’s confidential message is hidden from the proxy by every route', async () => {
    expect((await alice.request.get(`/fhir/${aConfidential}`)).status).toBe(200);
    expect((await repA.request.get(`/fhir/${aConfidential}`)).status).toBe(404);
    expect((await repA.request.get(`/fhir/${aConfidential}/_history/1`)).status).toBe(404);
    expect((await repA.request.get(`/fhir/${aConfidential}/_history`)).status).toBe(404);
    const queries = [
      'Communication?_count=1000',
      `Communication?_id=${idOf(aConfidential)}`,
      `Communication?_security=${CONFIDENTIAL.system}|R`,
      `Communication?_id=${idOf(a.header)}&_revinclude=Communication:part-of`,
      `Communication?_cursor=after:${idOf(aConfidential)}`,
      'Communication/_history?_count=1000',
    ];
    for (const query of queries) {
      const res = await search(repA.request, query);
      expect(res.status, query).toBe(200);
      expect(referencesIn(res.body), query).not.toContain(aConfidential);
      expect(JSON.stringify(res.body), query).not.toContain('confidential words');
    }
    expect((await search(repA.request, `Communication?_security=${CONFIDENTIAL.system}|R&_summary=count`)).body.total).toBe(0);
    const patch = await repA.request
      .patch(`/fhir/${aConfidential}`)
      .set('content-type', 'application/json-patch+json')
      .send(JSON.stringify([{ op: 'remove', path: '/meta/security' }]));
    // Refused like a patch of any sent message (the patient side cannot change those).
    const missing = await repA.request
      .patch(`/fhir/Communication/${randomUUID()}`)
      .set('content-type', 'application/json-patch+json')
      .send(JSON.stringify([{ op: 'remove', path: '/meta/security' }]));
    expect(patch.status).toBeGreaterThanOrEqual(400);
    expect(patch.status).toBe(missing.status);
    expect((await server.request.get(`/fhir/${aConfidential}`)).body.meta.security).toEqual([CONFIDENTIAL]);
  });

  it('R2b. a proxy cannot write into a confidential thread: it answers as a thread that does not exist', async () => {
    const header = await adminPut(
      communication(a.patient, {
        meta: { tag: [THREAD_TAG], security: [CONFIDENTIAL] },
        status: 'in-progress',
        topic: { text: 'confidential topic' },
        sender: ref(a.patient),
        sent: '2024-04-01T09:00:00Z',
        recipient: [ref(a.careTeam)],
      })
    );
    const into = (thread: string) => send(repA.request, 'post', 'Communication', communication(a.patient, { partOf: [ref(thread)], payload: [{ contentString: 'hello' }] }));
    const missing = await into(`Communication/${randomUUID()}`);
    const confidential = await into(header);
    expect(missing.status).toBeGreaterThanOrEqual(400);
    expect(confidential.status).toBe(missing.status);
    expect(confidential.body).toEqual(missing.body);
    expect(JSON.stringify(confidential.body)).not.toContain('confidential topic');
    // The patient themself may.
    expect((await send(alice.request, 'post', 'Communication', communication(a.patient, { partOf: [ref(header)], payload: [{ contentString: 'hello' }] }))).status).toBe(201);
  });

  it('R3. a confidential message that was deleted stays hidden: no old versions through vread or history', async () => {
    expect((await repA.request.get(`/fhir/${aDeletedConfidential}`)).status).toBe(404);
    expect((await repA.request.get(`/fhir/${aDeletedConfidential}/_history/1`)).status).toBe(404);
    expect((await repA.request.get(`/fhir/${aDeletedConfidential}/_history`)).status).toBe(404);
    const history = await search(repA.request, 'Communication/_history?_count=1000');
    expect(history.status).toBe(200);
    expect(JSON.stringify(history.body)).not.toContain(idOf(aDeletedConfidential));
    expect(JSON.stringify(history.body)).not.toContain('erased private words');
    // The patient themself still sees their own history.
    expect((await alice.request.get(`/fhir/${aDeletedConfidential}/_history/1`)).status).toBe(200);
  });

  it('R4. a proxy writes about A, never about B', async () => {
    for (const attempt of [newThread(b), newThread(a, { recipient: [ref(b.careTeam)] }), newThread(a, { recipient: [ref(b.patient)] })]) {
      expect([403, 422]).toContain((await send(repA.request, 'post', 'Communication', attempt)).status);
    }
    const encounter = { resourceType: 'Encounter', status: 'planned', class: { code: 'AMB' }, subject: ref(b.patient) };
    expect((await send(repA.request, 'post', 'Encounter', encounter)).status).toBe(403);
    expect((await send(repA.request, 'post', 'Communication', newThread(a))).status).toBe(201);
  });

  it('R5. a proxy for two patients acts for the one picked per token', async () => {
    const forB = await tokenFor('rep-two', 'launch/patient patient/*.cruds', b.patient);
    const forA = await tokenFor('rep-two', 'launch/patient patient/*.cruds', a.patient);
    expect(forB.patient).toBe(idOf(b.patient));
    expect(forA.patient).toBe(idOf(a.patient));
    expect((await forB.request.get(`/fhir/${b.message}`)).status).toBe(200);
    expect((await forB.request.get(`/fhir/${a.message}`)).status).toBe(404);
    expect((await forA.request.get(`/fhir/${a.message}`)).status).toBe(200);
    expect((await forA.request.get(`/fhir/${b.message}`)).status).toBe(404);
    const seenByB = referencesIn((await search(forB.request, 'Communication?_count=1000')).body);
    expect(seenByB).toContain(b.message);
    expect(seenByB).not.toContain(a.message);
    expect([403, 422]).toContain((await send(forB.request, 'post', 'Communication', newThread(a))).status);
    expect((await send(forB.request, 'post', 'Communication', newThread(b))).status).toBe(201);
  });

  it('R6. a proxy cannot pick a patient they do not act for', async () => {
    const stranger = await adminCreate({ resourceType: 'Patient', name: [{ family: 'Stranger' }] });
    await expect(tokenFor('rep-two', 'launch/patient patient/*.cruds', stranger)).rejects.toThrow(/access_denied|without a code/);
  });
});

// ---- practitioners --------------------------------------------------------------------

describe('a practitioner with user/ scopes reaches only patients they care for', () => {
  let doctorX: IssuedToken;
  let doctorNobody: IssuedToken;
  beforeAll(async () => {
    doctorX = await tokenFor('dr-x', 'openid fhirUser user/*.cruds');
    doctorNobody = await tokenFor('dr-nobody', 'user/*.cruds');
  });

  it('P1. an encounter with A opens A’s chart', async () => {
    expect((await doctorX.request.get(`/fhir/${a.patient}`)).status).toBe(200);
    expect((await doctorX.request.get(`/fhir/${a.message}`)).status).toBe(200);
    expect((await doctorX.request.get(`/fhir/${a.binary}`)).status).toBe(200);
    expect(referencesIn((await search(doctorX.request, `Communication?subject=${a.patient}`)).body)).toContain(a.message);
  });

  it('P2. nothing of B’s is reachable: reads, searches, chains, includes, history', async () => {
    for (const reference of [b.patient, b.message, b.binary, b.encounter, b.documentReference, b.provenance]) {
      expect((await doctorX.request.get(`/fhir/${reference}`)).status, reference).toBe(404);
    }
    expect((await doctorX.request.get(`/fhir/${b.message}/_history/1`)).status).toBe(404);
    for (const query of [
      `Communication?subject=${b.patient}`,
      'Patient?name=Zebulonova',
      'Communication?subject:Patient.name=Zebulonova',
      `Communication?_id=${idOf(aMisfiled)}&_include=Communication:part-of&_include=Communication:encounter`,
      `Communication?_id=${idOf(a.header)},${idOf(a.message)}&_revinclude=Communication:part-of&_revinclude=Provenance:target`,
      'Communication/_history?_count=1000',
    ]) {
      expectNothingOfB(await search(doctorX.request, query));
    }
    expect(expectNothingOfB(await search(doctorX.request, 'Patient'))).toEqual([a.patient]);
  });

  it('P3. a practitioner cannot write B’s chart, or manufacture a care relationship with B', async () => {
    expect((await send(doctorX.request, 'post', 'Communication', communication(b.patient, { recipient: [ref(b.patient)] }))).status).toBe(403);
    const encounter = { resourceType: 'Encounter', status: 'planned', class: { code: 'AMB' }, subject: ref(b.patient), participant: [{ individual: ref(doctorXReference) }] };
    expect((await send(doctorX.request, 'post', 'Encounter', encounter)).status).toBe(403);
    const careTeam = { resourceType: 'CareTeam', status: 'active', subject: ref(b.patient), participant: [{ member: ref(a.practitioner) }] };
    expect((await send(doctorX.request, 'post', 'CareTeam', careTeam)).status).toBe(403);
    expect((await send(doctorX.request, 'post', 'Communication', communication(a.patient, { recipient: [ref(b.patient)] }))).status).toBe(403);
    const moved = await doctorX.request
      .patch(`/fhir/${a.message}`)
      .set('content-type', 'application/json-patch+json')
      .send(JSON.stringify([{ op: 'replace', path: '/subject/reference', value: b.patient }]));
    expect(moved.status).toBe(403);
    expect((await doctorX.request.delete(`/fhir/${b.message}`)).status).toBe(404);
    expect((await doctorX.request.get(`/fhir/${b.message}`)).status).toBe(404);
  });

  it('P3b. the inbox operation shows a practitioner their own threads only', async () => {
    expect((await doctorX.request.get(`/fhir/Communication/$inbox?practitioner=${b.practitioner}`)).status).toBe(403);
    const own = await doctorX.request.get('/fhir/Communication/$inbox');
    expect(own.status).toBe(200);
    expect(JSON.stringify(own.body)).not.toContain(b.patient);
    expect((await doctorX.request.get(`/fhir/${b.message}/$delivery-status`)).status).toBe(404);
  });

  it('P5. a practitioner cannot take over another’s role to inherit their patients', async () => {
    // B's encounter names Dr B through a role; a new practitioner tries to make that role theirs.
    const role = await adminCreate({ resourceType: 'PractitionerRole', active: true, practitioner: ref(b.practitioner) });
    await adminCreate({ resourceType: 'Encounter', status: 'finished', class: { code: 'AMB' }, subject: ref(b.patient), participant: [{ individual: ref(role) }] });
    const doctorY = await adminCreate({ resourceType: 'Practitioner', name: [{ family: 'Ypsilon' }] });
    await createUser(server, { username: 'dr-y', fhirUser: doctorY, password: PASSWORD });
    const token = await tokenFor('dr-y', 'user/*.cruds');
    const hijack = await send(token.request, 'put', role, { resourceType: 'PractitionerRole', id: idOf(role), active: true, practitioner: ref(doctorY) });
    expect(hijack.status).toBe(403);
    const forged = await send(token.request, 'post', 'PractitionerRole', { resourceType: 'PractitionerRole', active: true, practitioner: ref(doctorY) });
    expect(forged.status).toBe(403);
    expect((await server.request.get(`/fhir/${role}`)).body.practitioner.reference).toBe(b.practitioner);
    // Past the relationship cache's lifetime, B is still out of reach.
    vi.useFakeTimers({ toFake: ['Date'], now: Date.now() + 31_000 });
    try {
      expect((await token.request.get(`/fhir/${b.message}`)).status).toBe(404);
      expect(referencesIn((await search(token.request, 'Patient')).body)).toEqual([]);
    } finally {
      vi.useRealTimers();
    }
  });

  it('P4. a practitioner with no care relationship reaches no patient at all', async () => {
    expect((await doctorNobody.request.get(`/fhir/${a.patient}`)).status).toBe(404);
    expect((await doctorNobody.request.get(`/fhir/${b.message}`)).status).toBe(404);
    expect(referencesIn((await search(doctorNobody.request, 'Patient')).body)).toEqual([]);
    expect(referencesIn((await search(doctorNobody.request, 'Communication?_count=1000')).body)).toEqual([]);
    expect((await search(doctorNobody.request, 'Encounter?_summary=count')).body.total).toBe(0);
  });
});

// ---- auditors -------------------------------------------------------------------------

describe('an auditor reads the audit trail and patients, never message contents', () => {
  let auditor: IssuedToken;
  beforeAll(async () => {
    auditor = await tokenFor('auditor', 'user/*.cruds');
  });

  it('AU1. reads AuditEvents and Patients of every patient', async () => {
    await server.app.audit.flush();
    const events = await search(auditor.request, `AuditEvent?patient=${b.patient}`);
    expect(events.status).toBe(200);
    expect(events.body.entry?.length ?? 0).toBeGreaterThan(0);
    expect((await auditor.request.get(`/fhir/${a.patient}`)).status).toBe(200);
    expect((await auditor.request.get(`/fhir/${b.patient}`)).status).toBe(200);
  });

  it('AU2. Communication, CommunicationRequest, Binary and DocumentReference are 403 by every interaction', async () => {
    for (const path of [
      'Communication',
      `Communication?subject=${a.patient}`,
      b.message,
      `${b.message}/_history`,
      `${b.message}/_history/1`,
      'Communication/_history',
      'CommunicationRequest',
      b.binary,
      'Binary',
      b.documentReference,
      'DocumentReference',
    ]) {
      const res = await auditor.request.get(`/fhir/${path}`);
      expect(res.status, path).toBe(403);
      expect(JSON.stringify(res.body)).not.toMatch(/Secret words|attachment of/);
    }
    expect((await auditor.request.post('/fhir/Communication/_search').type('form').send('')).status).toBe(403);
    expect((await auditor.request.get(`/fhir/Communication/$inbox?practitioner=${a.practitioner}`)).status).toBe(403);
    expect((await auditor.request.get(`/fhir/${a.message}/$delivery-status`)).status).toBe(403);
    expect((await send(auditor.request, 'post', 'Communication', newThread(a, { sender: ref(a.practitioner) }))).status).toBe(403);
  });

  it('AU3. includes and chains never carry message contents to an auditor', async () => {
    for (const query of [
      `AuditEvent?entity=${a.message}&_include=AuditEvent:entity`,
      `Patient?_revinclude=Communication:subject&_revinclude=DocumentReference:subject`,
      `Provenance?_include=Provenance:target`,
    ]) {
      const res = await search(auditor.request, query);
      expect(res.status, query).toBe(200);
      const types = referencesIn(res.body).map((r) => r.split('/')[0]);
      expect(types, query).not.toContain('Communication');
      expect(types, query).not.toContain('DocumentReference');
      expect(JSON.stringify(res.body)).not.toMatch(/Secret words|Letter for/);
    }
    // A chain into Communication is no oracle either.
    expect(referencesIn((await search(auditor.request, 'Provenance?target:Communication.category=medical-question')).body)).toEqual([]);
    expect(await adminFinds('Provenance?target:Communication.category=medical-question')).toContain(a.provenance);
  });

  it('AU4. in a batch, message entries are refused one by one', async () => {
    const res = await send(auditor.request, 'post', '', {
      resourceType: 'Bundle',
      type: 'batch',
      entry: [
        { request: { method: 'GET', url: a.patient } },
        { request: { method: 'GET', url: a.message } },
        { request: { method: 'GET', url: 'AuditEvent?_count=1' } },
        { request: { method: 'GET', url: b.binary } },
      ],
    });
    expect(res.status).toBe(200);
    expect((res.body.entry as BundleEntry[]).map((e) => e.response!.status)).toEqual(['200', '403', '200', '403']);
  });
});

// ---- scopes ---------------------------------------------------------------------------

describe('query-restricted scopes', () => {
  let restricted: IssuedToken;
  beforeAll(async () => {
    restricted = await tokenFor('alice', 'launch/patient patient/Communication.rs?category=medical-question patient/Patient.rs');
  });

  it('Q1. the scope is granted as asked', () => {
    expect(restricted.scope.split(' ')).toContain('patient/Communication.rs?category=medical-question');
  });

  it('Q2. searches return only that category, however they are phrased', async () => {
    const all = await search(restricted.request, 'Communication?_count=1000');
    expect(all.status).toBe(200);
    const found = referencesIn(all.body);
    expect(found).toEqual(expect.arrayContaining([a.header, a.message]));
    expect(found).not.toContain(a.reply);
    for (const entry of (all.body as Bundle).entry!) {
      expect(JSON.stringify((entry.resource as Communication).category)).toContain('medical-question');
    }
    for (const query of [
      'Communication?category=test-results',
      `Communication?_id=${idOf(a.reply)}`,
      `Communication?_id=${idOf(a.header)}&_revinclude=Communication:part-of`,
      `Communication?_id=${idOf(a.message)}&_revinclude=Communication:part-of`,
      `Communication?subject=${b.patient}`,
    ]) {
      const res = await search(restricted.request, query);
      expect(res.status, query).toBe(200);
      expect(referencesIn(res.body), query).not.toContain(a.reply);
      expectNothingOfB(res);
    }
    const count = await search(restricted.request, 'Communication?_summary=count');
    const adminCount = await server.request.get(`/fhir/Communication?subject=${a.patient}&category=medical-question&_summary=count`);
    expect(count.body.total).toBe(adminCount.body.total);
  });

  it('Q3. reads of other categories are refused with a 4xx; B’s messages of that category stay 404', async () => {
    expect((await restricted.request.get(`/fhir/${a.message}`)).status).toBe(200);
    for (const path of [a.reply, `${a.reply}/_history/1`, `${a.reply}/_history`]) {
      const res = await restricted.request.get(`/fhir/${path}`);
      expect(res.status, path).toBeGreaterThanOrEqual(400);
      expect(res.status, path).toBeLessThan(500);
      expect(JSON.stringify(res.body)).not.toContain('Results for A');
    }
    expect((await restricted.request.get(`/fhir/${b.message}`)).status).toBe(404);
  });

  it('Q4. the restricted scope grants nothing else: other types, type history, writes', async () => {
    expect((await search(restricted.request, 'Encounter')).status).toBe(403);
    expect((await restricted.request.get(`/fhir/${a.encounter}`)).status).toBe(403);
    expect((await restricted.request.get('/fhir/Communication/_history')).status).toBe(403);
    expect((await send(restricted.request, 'post', 'Communication', newThread(a))).status).toBe(403);
    const reply = (await server.request.get(`/fhir/${a.reply}`)).body as Communication;
    expect((await send(restricted.request, 'put', a.reply, { ...reply, category: category('medical-question') })).status).toBeGreaterThanOrEqual(400);
    expect((await server.request.get(`/fhir/${a.reply}`)).body.meta.versionId).toBe(reply.meta!.versionId);
  });

  it('Q4b. a practitioner’s inbox under a restricted scope shows no thread of another category', async () => {
    await createUser(server, { username: 'dr-a', fhirUser: a.practitioner, password: PASSWORD });
    const unrestricted = await tokenFor('dr-a', 'user/*.rs');
    const everything = await unrestricted.request.get('/fhir/Communication/$inbox');
    expect(everything.status).toBe(200);
    expect(referencesIn(everything.body)).toContain(a.header);
    const doctor = await tokenFor('dr-a', 'user/Communication.rs?category=test-results user/Patient.rs');
    const inbox = await doctor.request.get('/fhir/Communication/$inbox');
    // Refused outright, like type history under a restricted scope.
    expect(inbox.status).toBe(403);
    expect(JSON.stringify(inbox.body)).not.toContain('Question of A');
    expect(referencesIn((await search(doctor.request, 'Communication?_count=1000')).body)).toEqual(expect.arrayContaining([a.reply]));
  });

  it('Q5. in a batch, each entry meets the restriction on its own', async () => {
    const res = await send(restricted.request, 'post', '', {
      resourceType: 'Bundle',
      type: 'batch',
      entry: [
        { request: { method: 'GET', url: a.message } },
        { request: { method: 'GET', url: a.reply } },
        { request: { method: 'GET', url: 'Communication?category=test-results' } },
        { request: { method: 'GET', url: `Encounter?subject=${a.patient}` } },
        { resource: newThread(a), request: { method: 'POST', url: 'Communication' } },
      ],
    });
    expect(res.status).toBe(200);
    const statuses = (res.body.entry as BundleEntry[]).map((e) => e.response!.status);
    expect(statuses).toEqual(['200', '403', '200', '403', '403']);
    expect(res.body.entry[2].resource.entry ?? []).toEqual([]);
  });
});

describe('v1 and v2 scope permissions', () => {
  it('S1. patient/*.read (v1) reads and searches but cannot create, update or delete', async () => {
    const v1 = await tokenFor('alice', 'launch/patient patient/*.read');
    // With patient/*.cruds the same update is allowed: the 403 below is the scope's.
    const encounter = (await alice.request.get(`/fhir/${a.encounter}`)).body;
    expect((await send(alice.request, 'put', a.encounter, encounter)).status).toBe(200);
    expect(v1.scope.split(' ')).toContain('patient/*.read');
    expect((await v1.request.get(`/fhir/${a.message}`)).status).toBe(200);
    expect(referencesIn((await search(v1.request, 'Communication?_count=1000')).body)).toContain(a.message);
    expect((await send(v1.request, 'post', 'Communication', newThread(a))).status).toBe(403);
    expect((await send(v1.request, 'put', a.encounter, (await v1.request.get(`/fhir/${a.encounter}`)).body)).status).toBe(403);
    const own = (await v1.request.get(`/fhir/${a.reply}`)).body as Communication;
    expect((await send(v1.request, 'put', a.reply, { ...own, status: 'stopped' })).status).toBe(403);
    expect((await v1.request.delete(`/fhir/${a.reply}`)).status).toBe(403);
    expect((await v1.request.get(`/fhir/${b.message}`)).status).toBe(404);
  });

  it('S2. v2 permissions are separate: .s searches but does not read, .r reads but does not search', async () => {
    const searchOnly = await tokenFor('alice', 'launch/patient patient/Communication.s patient/Patient.r');
    const found = expectNothingOfB(await search(searchOnly.request, 'Communication?_count=1000'));
    expect(found).toContain(a.message);
    expect((await searchOnly.request.get(`/fhir/${a.message}`)).status).toBe(403);
    expect((await searchOnly.request.get(`/fhir/${a.patient}`)).status).toBe(200);
    expect((await search(searchOnly.request, 'Patient')).status).toBe(403);
    expect((await send(searchOnly.request, 'post', 'Communication', newThread(a))).status).toBe(403);
  });

  it('S3. in a batch under a read-only token, reads run and each write is refused', async () => {
    const v1 = await tokenFor('alice', 'launch/patient patient/*.read');
    const own = (await v1.request.get(`/fhir/${a.reply}`)).body as Communication;
    const res = await send(v1.request, 'post', '', {
      resourceType: 'Bundle',
      type: 'batch',
      entry: [
        { request: { method: 'GET', url: a.reply } },
        { resource: newThread(a), request: { method: 'POST', url: 'Communication' } },
        { resource: { ...own, status: 'stopped' }, request: { method: 'PUT', url: a.reply } },
        { request: { method: 'DELETE', url: a.reply } },
        { request: { method: 'GET', url: b.message } },
      ],
    });
    expect(res.status).toBe(200);
    expect((res.body.entry as BundleEntry[]).map((e) => e.response!.status)).toEqual(['200', '403', '403', '403', '404']);
    const transaction = await send(v1.request, 'post', '', { resourceType: 'Bundle', type: 'transaction', entry: [{ resource: newThread(a), request: { method: 'POST', url: 'Communication' } }] });
    expect(transaction.status).toBe(403);
  });

  it('S4. a backend client reaches only the types its registration allows', async () => {
    const backend = await backendToken(server, { registeredScope: 'system/Patient.rs system/AuditEvent.rs', scope: 'system/Patient.cruds system/AuditEvent.rs system/Communication.cruds' });
    expect(backend.scope.split(' ').sort()).toEqual(['system/AuditEvent.rs', 'system/Patient.rs']);
    expect(referencesIn((await search(backend.request, 'Patient?_count=1000')).body)).toEqual(expect.arrayContaining([a.patient, b.patient]));
    expect((await search(backend.request, 'Communication')).status).toBe(403);
    expect((await backend.request.get(`/fhir/${b.message}`)).status).toBe(403);
    expect((await send(backend.request, 'post', 'Patient', { resourceType: 'Patient' })).status).toBe(403);
  });
});
