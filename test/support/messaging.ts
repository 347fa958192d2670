/**
 * A small practice for the messaging suites: two patients, a representative, a doctor with
 * a role, a staff member who shares the doctor's pools, a practitioner on no one's care
 * team, dedicated practitioners for the inbox and response-time figures, and pools (a
 * practice-wide CareTeam, Groups of practitioners). Every user signs in through the SMART
 * authorization-code flow. Also: writing helpers and the "nothing was stored" check.
 */
import type { Bundle, Communication, Resource } from '@medplum/fhirtypes';
import type supertest from 'supertest';
import { expect } from 'vitest';
import type { TestServer } from './server.js';
import { createUser, registerPublicClient, userToken } from './tokens.js';
import type { IssuedToken } from './tokens.js';

export const FHIR_JSON = 'application/fhir+json';
export const CATEGORY_SYSTEM = 'https://carethread.dev/fhir/CodeSystem/message-category';
export const TAG_SYSTEM = 'https://carethread.dev/fhir/CodeSystem/tag';
export const THREAD_TAG = { system: TAG_SYSTEM, code: 'thread' };
export const IMPORTED_TAG = { system: TAG_SYSTEM, code: 'imported' };
export const AUTO_REPLY_TAG = { system: TAG_SYSTEM, code: 'auto-reply' };
export const ACTIVITY_SYSTEM = 'https://carethread.dev/fhir/CodeSystem/message-activity';
const PASSWORD = 'correct horse battery staple';

export type Agent = ReturnType<typeof supertest.agent>;

export const ref = (reference: string): { reference: string } => ({ reference });
export const idOf = (reference: string): string => reference.split('/')[1];
export const category = (code: string, system = CATEGORY_SYSTEM) => [{ coding: [{ system, code }] }];

export function send(agent: Agent, method: 'post' | 'put', path: string, body: unknown) {
  return agent[method](`/fhir/${path}`).set('content-type', FHIR_JSON).send(JSON.stringify(body));
}

export function patch(agent: Agent, path: string, operations: unknown[]) {
  return agent.patch(`/fhir/${path}`).set('content-type', 'application/json-patch+json').send(JSON.stringify(operations));
}

/** Creates a resource with the administrator's (system/*.cruds) token; returns `Type/id`. */
export async function adminCreate<T extends Resource>(server: TestServer, resource: T): Promise<string> {
  const res = await send(server.request, 'post', resource.resourceType, resource);
  if (res.status !== 201) {
    throw new Error(`Could not create ${resource.resourceType}: ${res.status} ${JSON.stringify(res.body)}`);
  }
  return `${resource.resourceType}/${res.body.id}`;
}

/** A resource as it is stored now, read with the administrator's token (no read receipt). */
export async function adminRead<T extends Resource>(server: TestServer, reference: string): Promise<T> {
  const res = await server.request.get(`/fhir/${reference}`).set('accept', FHIR_JSON);
  expect(res.status, `${reference}: ${JSON.stringify(res.body)}`).toBe(200);
  return res.body as T;
}

export async function adminSearch<T extends Resource>(server: TestServer, query: string): Promise<T[]> {
  const res = await server.request.get(`/fhir/${query}`);
  expect(res.status, JSON.stringify(res.body)).toBe(200);
  return ((res.body as Bundle).entry ?? []).map((e) => e.resource as T);
}

/** Rows that a refused write must not have added: resources, and deliveries queued for them. */
export async function storedCounts(server: TestServer): Promise<Record<string, number>> {
  const counts: Record<string, number> = {};
  for (const type of ['Communication', 'Provenance', 'Task', 'Binary']) {
    const rows = await server.app.db.query<{ n: string | number }>(`SELECT count(*) AS n FROM "${type}"`);
    counts[type] = Number(rows[0].n);
  }
  const outbox = await server.app.db.query<{ n: string | number }>('SELECT count(*) AS n FROM outbox');
  counts.outbox = Number(outbox[0].n);
  return counts;
}

/** Runs a write that must be refused with `status`, and checks that it stored nothing at all. */
export async function expectRefused(server: TestServer, status: number | number[], write: () => Promise<supertest.Response>, message?: RegExp): Promise<supertest.Response> {
  const before = await storedCounts(server);
  const res = await write();
  expect([status].flat(), `${res.status} ${JSON.stringify(res.body)}`).toContain(res.status);
  expect(res.body.resourceType).toBe('OperationOutcome');
  if (message) {
    expect(JSON.stringify(res.body.issue)).toMatch(message);
  }
  expect(await storedCounts(server)).toEqual(before);
  return res;
}

export interface Practice {
  patient: string;
  otherPatient: string;
  relatedPerson: string;
  doctor: string;
  doctorRole: string;
  staff: string;
  /** On the other patient's care team only. */
  outsider: string;
  /** Owns the inbox the inbox tests look at; `inboxRole` is their role, `inboxPool` a Group with only them. */
  inboxDoctor: string;
  inboxRole: string;
  inboxPool: string;
  /** Receives the messages the response-time figures are computed from; `responsePool` is their Group. */
  responder: string;
  responsePool: string;
  /** Practice-wide CareTeam (no subject) of the doctor and the staff member. */
  practicePool: string;
  /** Group (type practitioner) of the doctor and the staff member. */
  groupPool: string;
  /** The other patient's thread header. */
  otherThread: string;
  alice: IssuedToken;
  bob: IssuedToken;
  rep: IssuedToken;
  doctorToken: IssuedToken;
  staffToken: IssuedToken;
  inboxToken: IssuedToken;
}

/** Seeds the practice; every care relationship exists before the first token is used (they are cached). */
export async function seedPractice(server: TestServer): Promise<Practice> {
  const create = <T extends Resource>(resource: T) => adminCreate(server, resource);
  const patient = await create({ resourceType: 'Patient', name: [{ family: 'Ames', given: ['Alice'] }], telecom: [{ system: 'email', value: 'alice@example.test' }] });
  const otherPatient = await create({ resourceType: 'Patient', name: [{ family: 'Brown', given: ['Bob'] }] });
  const relatedPerson = await create({ resourceType: 'RelatedPerson', active: true, patient: ref(patient), name: [{ family: 'Ames', given: ['Rita'] }] });
  const practitioner = (family: string) => create({ resourceType: 'Practitioner', name: [{ family }] });
  const doctor = await practitioner('Doyle');
  const staff = await practitioner('Stone');
  const outsider = await practitioner('Outis');
  const inboxDoctor = await practitioner('Inman');
  const responder = await practitioner('Reyes');
  const doctorRole = await create({ resourceType: 'PractitionerRole', active: true, practitioner: ref(doctor) });
  const inboxRole = await create({ resourceType: 'PractitionerRole', active: true, practitioner: ref(inboxDoctor) });
  for (const [subject, who] of [
    [patient, doctor],
    [patient, inboxDoctor],
    [patient, responder],
    [otherPatient, outsider],
    [otherPatient, doctor],
  ]) {
    await create({ resourceType: 'Encounter', status: 'finished', class: { code: 'AMB' }, subject: ref(subject), participant: [{ individual: ref(who) }] });
  }
  // The staff member is on the patient's own care team.
  await create({ resourceType: 'CareTeam', status: 'active', subject: ref(patient), participant: [{ member: ref(staff) }] });
  const practicePool = await create({ resourceType: 'CareTeam', status: 'active', name: 'Front desk', participant: [{ member: ref(doctor) }, { member: ref(staff) }] });
  const group = (name: string, members: string[]) =>
    create({ resourceType: 'Group', type: 'practitioner', actual: true, name, member: members.map((m) => ({ entity: ref(m) })) });
  const groupPool = await group('Nurses', [doctor, staff]);
  const inboxPool = await group('Inbox pool', [inboxDoctor]);
  const responsePool = await group('Response pool', [responder]);
  const otherThread = await create({
    resourceType: 'Communication',
    meta: { tag: [THREAD_TAG] },
    status: 'in-progress',
    subject: ref(otherPatient),
    sender: ref(otherPatient),
    recipient: [ref(outsider)],
    topic: { text: 'Bob asks' },
    category: category('medical-question'),
    sent: new Date().toISOString(),
  } as Communication);

  const users: [string, string][] = [
    ['alice', patient],
    ['bob', otherPatient],
    ['rep', relatedPerson],
    ['doctor', doctor],
    ['staff', staff],
    ['inbox', inboxDoctor],
  ];
  for (const [username, fhirUser] of users) {
    await createUser(server, { username, fhirUser, password: PASSWORD });
  }
  const clientId = await registerPublicClient(server);
  const token = (username: string, scope: string, forPatient?: string) => userToken(server, { username, password: PASSWORD, scope, patient: forPatient, clientId });
  const patientScope = 'openid fhirUser launch/patient patient/*.cruds';
  return {
    patient,
    otherPatient,
    relatedPerson,
    doctor,
    doctorRole,
    staff,
    outsider,
    inboxDoctor,
    inboxRole,
    inboxPool,
    responder,
    responsePool,
    practicePool,
    groupPool,
    otherThread,
    alice: await token('alice', patientScope),
    bob: await token('bob', patientScope),
    rep: await token('rep', patientScope, patient),
    doctorToken: await token('doctor', 'openid fhirUser user/*.cruds'),
    staffToken: await token('staff', 'openid fhirUser user/*.cruds'),
    inboxToken: await token('inbox', 'openid fhirUser user/*.cruds'),
  };
}

/** A thread header as a patient-side app writes it. */
export function header(subject: string, recipients: string[], code = 'medical-question', topic = 'A question'): Communication {
  return { resourceType: 'Communication', status: 'in-progress', subject: ref(subject), recipient: recipients.map(ref), topic: { text: topic }, category: category(code) };
}

/** A message in a thread. */
export function message(subject: string, thread: string, text: string, extra: Partial<Communication> = {}): Communication {
  return { resourceType: 'Communication', status: 'completed', subject: ref(subject), partOf: [ref(thread)], payload: [{ contentString: text }], ...extra };
}

/** Posts a Communication and returns it as stored (201 expected). */
export async function post(agent: Agent, body: Communication): Promise<Communication> {
  const res = await send(agent, 'post', 'Communication', body);
  expect(res.status, JSON.stringify(res.body)).toBe(201);
  return res.body as Communication;
}
