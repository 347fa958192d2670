/**
 * Secure messaging through HTTP with real user tokens (a patient, a representative, a
 * doctor, a staff member sharing the doctor's pools): what the server stamps, whom a
 * patient may write about and to, categories, closing threads (by staff and by itself),
 * Provenance per message, the thread's Task (owner, priority, due in business days, claim,
 * reassign, completion, reopening), the urgency screen, read receipts, the inbox,
 * response-time figures and imported messages. Every refused write is checked to have
 * stored nothing.
 */
import type { AuditEvent, Bundle, CodeSystem, Communication, Provenance, Task } from '@medplum/fhirtypes';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { systemContext } from '../fhir/access.js';
import {
  ACTIVITY_SYSTEM,
  adminCreate,
  adminRead,
  adminSearch,
  AUTO_REPLY_TAG,
  category,
  CATEGORY_SYSTEM,
  expectRefused,
  header,
  IMPORTED_TAG,
  idOf,
  message,
  patch,
  post,
  ref,
  seedPractice,
  send,
  THREAD_TAG,
} from './support/messaging.js';
import type { Agent, Practice } from './support/messaging.js';
import { testEngine } from './support/database.js';
import { startTestServer } from './support/server.js';
import type { TestServer } from './support/server.js';

const AUTO_CLOSE_DAYS = 3;
const DAY = 86_400_000;
const INBOX_EXT = 'https://carethread.dev/fhir/StructureDefinition/inbox';
const RECEIPT = 'read receipt: first read by a recipient';
const CONFIDENTIAL = { system: 'http://terminology.hl7.org/CodeSystem/v3-Confidentiality', code: 'R' };

let server: TestServer;
let p: Practice;

beforeAll(async () => {
  server = await startTestServer({ env: { THREAD_AUTO_CLOSE_DAYS: String(AUTO_CLOSE_DAYS) } });
  p = await seedPractice(server);
});

afterAll(async () => {
  await server?.stop({ dropDatabase: true });
});

// ---- helpers ------------------------------------------------------------------------

/** A thread the patient starts (header) with a first message; returns both references. */
async function patientThread(agent: Agent, recipients: string[], code = 'medical-question', text = 'A question about my medication'): Promise<{ thread: string; first: string }> {
  const h = await post(agent, header(p.patient, recipients, code));
  const m = await post(agent, message(p.patient, `Communication/${h.id}`, text));
  return { thread: `Communication/${h.id}`, first: `Communication/${m.id}` };
}

async function taskOf(thread: string): Promise<Task> {
  const tasks = await adminSearch<Task>(server, `Task?focus=${thread}`);
  expect(tasks).toHaveLength(1);
  return tasks[0];
}

async function provenanceOf(reference: string): Promise<Provenance[]> {
  return adminSearch<Provenance>(server, `Provenance?target=${reference}`);
}

async function messagesIn(thread: string): Promise<Communication[]> {
  return adminSearch<Communication>(server, `Communication?part-of=${thread}&_sort=sent&_count=100`);
}

async function receiptsFor(reference: string): Promise<AuditEvent[]> {
  const events = await adminSearch<AuditEvent>(server, `AuditEvent?entity=${reference}&_count=100`);
  return events.filter((e) => e.outcomeDesc === RECEIPT);
}

const iso = (ms: number) => new Date(ms).toISOString();

// ---- stamping and who may write -------------------------------------------------------

describe('what the server stamps', () => {
  it('sets sent, status and sender from the token, whatever the app wrote', async () => {
    const before = Date.now();
    const h = await post(p.alice.request, { ...header(p.patient, [p.doctor]), status: 'completed', sent: '2001-01-01T00:00:00Z' });
    expect(h.status).toBe('in-progress');
    expect(h.sender?.reference).toBe(p.patient);
    expect(Date.parse(h.sent!)).toBeGreaterThanOrEqual(before - 1000);
    expect(Date.parse(h.sent!)).toBeLessThanOrEqual(Date.now() + 1000);
    expect(h.meta?.tag).toContainEqual(THREAD_TAG);

    const thread = `Communication/${h.id}`;
    const m = await post(p.alice.request, message(p.patient, thread, 'Can I take it with food?', { status: 'preparation', sent: '2001-01-01T00:00:00Z' }));
    expect(m.status).toBe('completed');
    expect(m.sender?.reference).toBe(p.patient);
    expect(Date.parse(m.sent!)).toBeGreaterThanOrEqual(before - 1000);
    // A message without recipients goes to the thread's; it carries the thread's topic and category.
    expect(m.recipient).toEqual([ref(p.doctor)]);
    expect(m.topic).toEqual(h.topic);
    expect(m.category).toEqual(h.category);

    const fromRep = await post(p.rep.request, message(p.patient, thread, 'Her mother here: she is better today'));
    expect(fromRep.sender?.reference).toBe(p.relatedPerson);
    expect(fromRep.subject?.reference).toBe(p.patient);
  });

  it('refuses a patient or representative who names another sender (422), storing nothing', async () => {
    const h = await post(p.alice.request, header(p.patient, [p.doctor]));
    const thread = `Communication/${h.id}`;
    for (const [agent, sender] of [
      [p.alice.request, p.doctor],
      [p.alice.request, p.otherPatient],
      [p.alice.request, p.relatedPerson],
      [p.rep.request, p.patient],
    ] as const) {
      await expectRefused(server, 422, () => send(agent, 'post', 'Communication', message(p.patient, thread, 'Spoofed words', { sender: ref(sender) })), /signed-in person/);
    }
    await expectRefused(server, 422, () => send(p.alice.request, 'post', 'Communication', { ...header(p.patient, [p.doctor]), sender: ref(p.doctor) }), /signed-in person/);
    expect((await adminSearch<Communication>(server, `Communication?part-of=${thread}`)).length).toBe(0);
  });

  it('refuses a message about another patient, or into another patient’s thread, storing nothing', async () => {
    await expectRefused(server, 422, () => send(p.alice.request, 'post', 'Communication', header(p.otherPatient, [p.outsider])), /only about themselves/);
    await expectRefused(server, 422, () => send(p.alice.request, 'post', 'Communication', message(p.otherPatient, p.otherThread, 'About Bob')), /only about themselves/);
    // Into Bob's thread under her own name: the same answer as a thread that does not exist.
    const intoBob = await expectRefused(server, 422, () => send(p.alice.request, 'post', 'Communication', message(p.patient, p.otherThread, 'Hi Bob')), /partOf/);
    const missing = await expectRefused(server, 422, () => send(p.alice.request, 'post', 'Communication', message(p.patient, 'Communication/no-such-thread', 'Hi')), /partOf/);
    expect(intoBob.body.issue).toEqual(missing.body.issue);
    await expectRefused(server, 422, () => send(p.rep.request, 'post', 'Communication', header(p.otherPatient, [p.outsider])), /represent/);
  });

  it('refuses recipients outside the patient’s care team with a clear message, storing nothing', async () => {
    const res = await expectRefused(server, 422, () => send(p.alice.request, 'post', 'Communication', header(p.patient, [p.doctor, p.outsider])), /care team/);
    const text = JSON.stringify(res.body.issue);
    expect(text).toContain(p.outsider);
    expect(text).not.toContain(p.doctor);
    const people = await adminCreate(server, { resourceType: 'Group', type: 'person', actual: true, member: [{ entity: ref(p.doctor) }] });
    await expectRefused(server, 422, () => send(p.alice.request, 'post', 'Communication', header(p.patient, [people])), /care team/);
    // Naming someone else inside an existing thread is checked too.
    const { thread } = await patientThread(p.alice.request, [p.doctor]);
    await expectRefused(server, 422, () => send(p.alice.request, 'post', 'Communication', message(p.patient, thread, 'Forward this', { recipient: [ref(p.outsider)] })), /care team/);
    // Roles and pools are fine.
    for (const recipient of [p.doctorRole, p.practicePool, p.groupPool]) {
      await post(p.alice.request, header(p.patient, [recipient]));
    }
  });

  it('requires a category from the published CodeSystem when the patient side starts a thread', async () => {
    const bare = { ...header(p.patient, [p.doctor]), category: undefined };
    const res = await expectRefused(server, 422, () => send(p.alice.request, 'post', 'Communication', bare), /category/);
    expect(JSON.stringify(res.body.issue)).toContain(CATEGORY_SYSTEM);
    await expectRefused(server, 422, () => send(p.alice.request, 'post', 'Communication', { ...bare, category: category('medical-question', 'http://example.test/other') }), /category/);
    await expectRefused(server, 422, () => send(p.alice.request, 'post', 'Communication', { ...bare, category: category('gossip') }), /category/);
    await expectRefused(server, 422, () => send(p.rep.request, 'post', 'Communication', bare), /category/);
    // The practice may start one without.
    const fromDoctor = await post(p.doctorToken.request, { ...bare, recipient: [ref(p.patient)] });
    expect(fromDoctor.sender?.reference).toBe(p.doctor);

    const codes = await p.alice.request.get('/fhir/CodeSystem/message-category');
    expect(codes.status).toBe(200);
    const system = codes.body as CodeSystem;
    expect(system.url).toBe(CATEGORY_SYSTEM);
    expect(system.concept?.map((c) => c.code)).toEqual(
      expect.arrayContaining(['medical-question', 'prescription-renewal', 'appointment-request', 'referral', 'billing', 'test-results', 'symptom-report'])
    );
  });
});

// ---- closing a thread ---------------------------------------------------------------

describe('closing a thread', () => {
  it('staff close it with PATCH or PUT of the header; the patient side gets 403; posting into it is refused', async () => {
    const { thread, first } = await patientThread(p.alice.request, [p.doctor]);
    const close = [{ op: 'replace', path: '/status', value: 'completed' }];
    for (const agent of [p.alice.request, p.rep.request]) {
      await expectRefused(server, 403, () => patch(agent, thread, close));
      const current = await adminRead<Communication>(server, thread);
      await expectRefused(server, 403, () => send(agent, 'put', thread, { ...current, status: 'completed' }));
      await expectRefused(server, 403, () => agent.delete(`/fhir/${first}`));
      await expectRefused(server, 403, () => send(agent, 'put', first, { ...(current as Communication), id: idOf(first), payload: [{ contentString: 'edited' }] }));
    }
    expect((await adminRead<Communication>(server, thread)).status).toBe('in-progress');

    const closed = await patch(p.staffToken.request, thread, close);
    expect(closed.status, JSON.stringify(closed.body)).toBe(200);
    expect(closed.body.status).toBe('completed');
    for (const agent of [p.alice.request, p.rep.request]) {
      await expectRefused(server, 422, () => send(agent, 'post', 'Communication', message(p.patient, thread, 'One more thing')), /closed/);
    }

    // Reopened with a PUT, the patient may write again.
    const current = await adminRead<Communication>(server, thread);
    const reopened = await send(p.doctorToken.request, 'put', thread, { ...current, status: 'in-progress' });
    expect(reopened.status).toBe(200);
    await post(p.alice.request, message(p.patient, thread, 'One more thing'));
  });
});

// ---- Provenance ---------------------------------------------------------------------

describe('Provenance', () => {
  it('records each message: author, activity, time, patient; on-behalf-of for staff writing for a provider', async () => {
    const { thread, first } = await patientThread(p.alice.request, [p.doctor]);
    const [headerProvenance] = await provenanceOf(thread);
    expect(headerProvenance.agent[0].who?.reference).toBe(p.patient);

    const patientMessage = await adminRead<Communication>(server, first);
    const [fromPatient, ...extra] = await provenanceOf(first);
    expect(extra).toEqual([]);
    expect(fromPatient.target).toEqual(expect.arrayContaining([ref(first), ref(p.patient)]));
    expect(fromPatient.recorded).toBe(patientMessage.sent);
    expect(fromPatient.agent).toHaveLength(1);
    expect(fromPatient.agent[0].who?.reference).toBe(p.patient);
    expect(fromPatient.agent[0].onBehalfOf).toBeUndefined();
    expect(fromPatient.activity?.coding).toEqual([{ system: ACTIVITY_SYSTEM, code: 'create' }]);

    const reply = await post(p.doctorToken.request, message(p.patient, thread, 'Yes, with food.', { inResponseTo: [ref(first)] }));
    expect(reply.recipient).toEqual([ref(p.patient)]);
    const [fromDoctor] = await provenanceOf(`Communication/${reply.id}`);
    expect(fromDoctor.agent[0].who?.reference).toBe(p.doctor);
    expect(fromDoctor.agent[0].onBehalfOf).toBeUndefined();
    expect(fromDoctor.activity?.coding?.[0].code).toBe('reply');

    const onBehalf = await post(p.staffToken.request, message(p.patient, thread, 'Dr Doyle asks you to come in.', { sender: ref(p.doctor) }));
    expect(onBehalf.sender?.reference).toBe(p.doctor);
    const [fromStaff] = await provenanceOf(`Communication/${onBehalf.id}`);
    expect(fromStaff.agent[0].who?.reference).toBe(p.staff);
    expect(fromStaff.agent[0].onBehalfOf?.reference).toBe(p.doctor);
    expect(fromStaff.activity?.coding?.[0].code).toBe('reply');
  });

  it('refuses staff writing on behalf of a provider they share no pool with, storing nothing', async () => {
    const { thread } = await patientThread(p.alice.request, [p.doctor]);
    await expectRefused(server, 422, () => send(p.staffToken.request, 'post', 'Communication', message(p.patient, thread, 'Signed: Dr Inman', { sender: ref(p.inboxDoctor) })), /pool/);
  });
});

// ---- the thread's Task --------------------------------------------------------------

describe('the Task of a patient-started thread', () => {
  it('is owned by the first recipient, routine, due by category in business days (a Friday before a Monday holiday)', async () => {
    // Friday 17 January 2025; Monday the 20th is Martin Luther King Jr. Day.
    vi.useFakeTimers({ toFake: ['Date'], now: new Date('2025-01-17T15:00:00Z') });
    let h: Communication;
    try {
      h = await post(p.alice.request, header(p.patient, [p.doctor, p.groupPool], 'appointment-request'));
    } finally {
      vi.useRealTimers();
    }
    expect(h.sent).toBe('2025-01-17T15:00:00.000Z');
    const task = await taskOf(`Communication/${h.id}`);
    expect(task.status).toBe('requested');
    expect(task.priority).toBe('routine');
    expect(task.owner).toEqual(ref(p.doctor));
    expect(task.for).toEqual(ref(p.patient));
    expect(task.requester?.reference).toBe(p.patient);
    // One business day: Saturday, Sunday and the holiday do not count.
    expect(task.restriction?.period?.end).toBe('2025-01-21T23:59:59Z');
  });

  it('counts business days across weekends and federal holidays, observed ones included', async () => {
    const cases: [sent: string, code: string, due: string][] = [
      // Friday, two business days: Monday is MLK Day, so Tuesday and Wednesday.
      ['2025-01-17T20:00:00Z', 'medical-question', '2025-01-22T23:59:59Z'],
      // Friday, five: Veterans Day (Tuesday 11 November) is skipped.
      ['2025-11-07T10:00:00Z', 'billing', '2025-11-17T23:59:59Z'],
      // Wednesday before Thanksgiving, three: Friday, Monday, Tuesday.
      ['2025-11-26T10:00:00Z', 'referral', '2025-12-02T23:59:59Z'],
      // Thursday 2 July 2026, one: Independence Day falls on a Saturday and is observed on Friday the 3rd.
      ['2026-07-02T10:00:00Z', 'symptom-report', '2026-07-06T23:59:59Z'],
    ];
    for (const [sent, code, due] of cases) {
      // An integrating system writes the thread as it happened, so its time is the real one.
      const h = await adminCreate(server, { ...header(p.patient, [p.doctor], code), meta: { tag: [THREAD_TAG] }, sender: ref(p.patient), sent });
      expect((await taskOf(h)).restriction?.period?.end, `${code} from ${sent}`).toBe(due);
    }
  });

  it('waits in a Group pool without an owner, is claimed and reassigned through Task.owner, completes on the owner’s reply, reopens on the patient’s next message', async () => {
    const { thread } = await patientThread(p.alice.request, [p.groupPool], 'test-results');
    const waiting = await taskOf(thread);
    expect(waiting.owner).toBeUndefined();
    expect(waiting.restriction?.recipient).toEqual([ref(p.groupPool)]);

    // The patient side cannot touch the work item.
    await expectRefused(server, 403, () => send(p.alice.request, 'put', `Task/${waiting.id}`, { ...waiting, status: 'completed' }));
    await expectRefused(server, 403, () => send(p.alice.request, 'post', 'Task', { ...waiting, id: undefined, meta: undefined }));

    const claimed = await send(p.staffToken.request, 'put', `Task/${waiting.id}`, { ...waiting, status: 'accepted', owner: ref(p.staff) });
    expect(claimed.status, JSON.stringify(claimed.body)).toBe(200);
    const reassigned = await send(p.staffToken.request, 'put', `Task/${waiting.id}`, { ...claimed.body, owner: ref(p.doctor) });
    expect(reassigned.status, JSON.stringify(reassigned.body)).toBe(200);
    expect((await taskOf(thread)).owner).toEqual(ref(p.doctor));

    // A colleague's answer does not complete the doctor's work; the doctor's does.
    await post(p.staffToken.request, message(p.patient, thread, 'The doctor will look at it.'));
    expect((await taskOf(thread)).status).toBe('accepted');
    const reply = await post(p.doctorToken.request, message(p.patient, thread, 'All normal.'));
    const done = await taskOf(thread);
    expect(done.status).toBe('completed');
    expect(done.lastModified).toBe(reply.sent);

    const again = await post(p.alice.request, message(p.patient, thread, 'Thanks! One more question.'));
    const reopened = await taskOf(thread);
    expect(reopened.status).toBe('requested');
    expect(reopened.owner).toEqual(ref(p.doctor));
    expect(Date.parse(reopened.restriction!.period!.end!)).toBeGreaterThan(Date.parse(again.sent!));
  });

  it('completes when staff reply on behalf of the owner', async () => {
    const { thread } = await patientThread(p.alice.request, [p.doctor]);
    await post(p.staffToken.request, message(p.patient, thread, 'Dr Doyle says: fine.', { sender: ref(p.doctor) }));
    expect((await taskOf(thread)).status).toBe('completed');
  });
});

// ---- the urgency screen -------------------------------------------------------------

describe('the urgency screen', () => {
  it('flags an urgent message and its Task, and answers at once with emergency guidance in the thread', async () => {
    const { thread } = await patientThread(p.alice.request, [p.doctor]);
    const urgent = await post(p.alice.request, message(p.patient, thread, 'I have had CHEST PAIN since this morning.'));
    expect(urgent.priority).toBe('urgent');
    const task = await taskOf(thread);
    expect(task.priority).toBe('urgent');
    expect(task.status).toBe('requested');

    const replies = (await messagesIn(thread)).filter((m) => m.inResponseTo?.[0]?.reference === `Communication/${urgent.id}`);
    expect(replies).toHaveLength(1);
    const [auto] = replies;
    expect(auto.meta?.tag).toContainEqual(AUTO_REPLY_TAG);
    expect(auto.partOf).toEqual([ref(thread)]);
    expect(auto.recipient).toEqual([ref(p.patient)]);
    expect(auto.priority).toBe('urgent');
    expect(auto.sender?.reference).toBe('Organization/carethread');
    expect(auto.payload?.[0].contentString).toMatch(/911/);
    expect(auto.payload?.[0].contentString).toMatch(/emergency/i);
    // The patient reads it like any other message in her thread.
    expect((await p.alice.request.get(`/fhir/Communication/${auto.id}`)).status).toBe(200);
  });

  it('answers the representative who wrote, and matches curly apostrophes; ordinary words do not trigger it', async () => {
    const { thread } = await patientThread(p.alice.request, [p.doctor]);
    const calm = await post(p.alice.request, message(p.patient, thread, 'Is the pain in my chest after the flu normal?'));
    expect(calm.priority).toBeUndefined();
    expect((await taskOf(thread)).priority).toBe('routine');
    const urgent = await post(p.rep.request, message(p.patient, thread, 'She says she can’t breathe'));
    expect(urgent.priority).toBe('urgent');
    const autos = (await messagesIn(thread)).filter((m) => m.meta?.tag?.some((t) => t.code === AUTO_REPLY_TAG.code));
    expect(autos).toHaveLength(1);
    expect(autos[0].recipient).toEqual([ref(p.relatedPerson)]);
  });
});

// ---- confidential threads -----------------------------------------------------------

describe('a confidential thread', () => {
  it('makes every message in it confidential, the automatic reply included: hidden from the proxy, seen by patient and doctor', async () => {
    const secret = await post(p.alice.request, { ...header(p.patient, [p.doctor], 'medical-question', 'Private matter'), meta: { security: [CONFIDENTIAL] } });
    const thread = `Communication/${secret.id}`;
    const mine = await post(p.alice.request, message(p.patient, thread, 'Something I do not want my mother to read'));
    const reply = await post(p.doctorToken.request, message(p.patient, thread, 'Understood.'));
    await post(p.alice.request, message(p.patient, thread, 'Now I have chest pain'));
    const all = await messagesIn(thread);
    expect(all.length).toBe(4);
    for (const m of all) {
      expect(m.meta?.security, m.id).toContainEqual(expect.objectContaining(CONFIDENTIAL));
    }
    for (const reference of [thread, ...all.map((m) => `Communication/${m.id}`)]) {
      expect((await p.rep.request.get(`/fhir/${reference}`)).status, reference).toBe(404);
      expect((await p.alice.request.get(`/fhir/${reference}`)).status, reference).toBe(200);
    }
    expect((await p.doctorToken.request.get(`/fhir/Communication/${reply.id}`)).status).toBe(200);
    const search = await p.rep.request.get(`/fhir/Communication?part-of=${thread}`);
    expect(search.status).toBe(200);
    expect((search.body as Bundle).entry ?? []).toEqual([]);
    expect(JSON.stringify((await p.rep.request.get(`/fhir/Communication?subject=${p.patient}&_count=500`)).body)).not.toContain(mine.id);
  });
});

// ---- read receipts ------------------------------------------------------------------

describe('read receipts', () => {
  it('a recipient’s first read sets received and is audited once; others’ reads change nothing', async () => {
    const { thread, first } = await patientThread(p.alice.request, [p.doctor]);
    // The staff member may read it (care team) but is not a recipient.
    expect((await p.staffToken.request.get(`/fhir/${first}`)).status).toBe(200);
    expect((await adminRead<Communication>(server, first)).received).toBeUndefined();
    expect(await receiptsFor(first)).toEqual([]);

    const before = Date.now();
    const opened = await p.doctorToken.request.get(`/fhir/${first}`);
    expect(opened.status).toBe(200);
    const received = (await adminRead<Communication>(server, first)).received!;
    expect(Date.parse(received)).toBeGreaterThanOrEqual(before - 1000);
    expect(opened.body.received).toBe(received);
    const receipts = await receiptsFor(first);
    expect(receipts).toHaveLength(1);
    expect(receipts[0].agent[0].who?.reference).toBe(p.doctor);
    expect(receipts[0].entity?.map((e) => e.what?.reference)).toEqual(expect.arrayContaining([first, p.patient]));

    await p.doctorToken.request.get(`/fhir/${first}`);
    expect((await adminRead<Communication>(server, first)).received).toBe(received);
    expect(await receiptsFor(first)).toHaveLength(1);

    // The reply is the patient's to open, not her representative's.
    const reply = await post(p.doctorToken.request, message(p.patient, thread, 'Noted.'));
    const replyRef = `Communication/${reply.id}`;
    expect((await p.rep.request.get(`/fhir/${replyRef}`)).status).toBe(200);
    expect((await adminRead<Communication>(server, replyRef)).received).toBeUndefined();
    await p.alice.request.get(`/fhir/${replyRef}`);
    expect((await adminRead<Communication>(server, replyRef)).received).toBeDefined();
    expect((await receiptsFor(replyRef))[0].agent[0].who?.reference).toBe(p.patient);
  });

  it('counts a pool member or a role’s practitioner as a recipient', async () => {
    const pooled = await patientThread(p.alice.request, [p.groupPool]);
    await p.staffToken.request.get(`/fhir/${pooled.first}`);
    expect((await adminRead<Communication>(server, pooled.first)).received).toBeDefined();
    const viaRole = await patientThread(p.alice.request, [p.doctorRole]);
    await p.doctorToken.request.get(`/fhir/${viaRole.first}`);
    expect((await adminRead<Communication>(server, viaRole.first)).received).toBeDefined();
  });
});

// ---- the inbox ----------------------------------------------------------------------

describe('$inbox', () => {
  interface Row {
    id: string;
    unread: number;
    messages: number;
    owner?: string;
    due?: string;
  }
  const rows = (bundle: Bundle): Row[] =>
    (bundle.entry ?? []).map((e) => {
      const ext = (name: string) => e.search?.extension?.find((x) => x.url === `${INBOX_EXT}#${name}`);
      return {
        id: `Communication/${e.resource!.id}`,
        unread: ext('unread')!.valueInteger!,
        messages: ext('messages')!.valueInteger!,
        owner: ext('owner')?.valueReference?.reference,
        due: ext('due')?.valueDateTime,
      };
    });
  const inbox = async (query = '') => {
    const res = await p.inboxToken.request.get(`/fhir/Communication/$inbox${query}`);
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    return res.body as Bundle;
  };

  it('lists open threads addressed to the provider, their role and pools: unread first, with counts and filters', async () => {
    const viaRole = await patientThread(p.alice.request, [p.inboxRole], 'medical-question', 'First');
    const second = await post(p.alice.request, message(p.patient, viaRole.thread, 'Second'));
    const direct = await patientThread(p.alice.request, [p.inboxDoctor], 'prescription-renewal', 'Refill please');
    await p.inboxToken.request.get(`/fhir/${direct.first}`);
    const pooled = await patientThread(p.alice.request, [p.inboxPool], 'billing', 'About my bill');
    const elsewhere = await patientThread(p.alice.request, [p.doctor]);
    const closed = await patientThread(p.alice.request, [p.inboxDoctor]);
    expect((await patch(p.staffToken.request, closed.thread, [{ op: 'replace', path: '/status', value: 'completed' }])).status).toBe(200);

    const bundle = await inbox();
    expect(bundle.total).toBe(3);
    // (The unread total rides on the Bundle, which FHIR's typings do not give extensions.)
    const totals = (bundle as Bundle & { extension?: { url: string; valueInteger?: number }[] }).extension;
    expect(totals?.find((x) => x.url === `${INBOX_EXT}#unread-total`)?.valueInteger).toBe(3);
    const listed = rows(bundle);
    expect(listed.map((r) => r.id)).toEqual([pooled.thread, viaRole.thread, direct.thread]);
    expect(listed.map((r) => [r.unread, r.messages])).toEqual([
      [1, 1],
      [2, 2],
      [0, 1],
    ]);
    expect(listed[1].owner).toBe(p.inboxRole);
    expect(listed[2].owner).toBe(p.inboxDoctor);
    expect(listed[0].owner).toBeUndefined();
    expect(listed.every((r) => r.due)).toBe(true);
    expect(listed.map((r) => r.id)).not.toContain(elsewhere.thread);
    expect(listed.map((r) => r.id)).not.toContain(closed.thread);

    expect(rows(await inbox('?category=billing')).map((r) => r.id)).toEqual([pooled.thread]);
    expect(rows(await inbox(`?category=${encodeURIComponent(`${CATEGORY_SYSTEM}|prescription-renewal`)}`)).map((r) => r.id)).toEqual([direct.thread]);
    expect(rows(await inbox(`?pool=${p.inboxPool}`)).map((r) => r.id)).toEqual([pooled.thread]);

    // Reading both messages and answering moves the thread below the unread one.
    await p.inboxToken.request.get(`/fhir/${viaRole.first}`);
    await p.inboxToken.request.get(`/fhir/Communication/${second.id}`);
    await post(p.inboxToken.request, message(p.patient, viaRole.thread, 'Answer'));
    const after = rows(await inbox());
    expect(after.map((r) => [r.id, r.unread, r.messages])).toEqual([
      [pooled.thread, 1, 1],
      [viaRole.thread, 0, 3],
      [direct.thread, 0, 1],
    ]);
  });

  it('is shown only to its own practitioner', async () => {
    expect((await p.doctorToken.request.get(`/fhir/Communication/$inbox?practitioner=${p.inboxDoctor}`)).status).toBe(403);
    expect((await p.alice.request.get(`/fhir/Communication/$inbox?practitioner=${p.inboxDoctor}`)).status).toBe(403);
    expect((await p.alice.request.get('/fhir/Communication/$inbox')).status).toBe(400);
  });
});

// ---- response-time figures ----------------------------------------------------------

describe('$response-times', () => {
  it('gives per provider and pool: received, median and 90th percentile hours to first reply, unanswered, past due', async () => {
    // Written by an integrating system, so the times are exactly these.
    const t0 = Date.parse('2025-03-03T09:00:00Z');
    const hour = 3_600_000;
    const integrate = (body: Communication) => adminCreate(server, body);
    const thread = await integrate({ ...header(p.patient, [p.responder]), meta: { tag: [THREAD_TAG] }, sender: ref(p.patient), sent: iso(t0) });
    const exchange: [asked: number, answeredAfter?: number][] = [
      [0, 1],
      [2, 2],
      [5, 3],
      [9, 10],
      [20, undefined],
    ];
    for (const [asked, after] of exchange) {
      const question = await integrate(message(p.patient, thread, 'Question', { sender: ref(p.patient), recipient: [ref(p.responder)], sent: iso(t0 + asked * hour) }));
      if (after !== undefined) {
        await integrate(message(p.patient, thread, 'Answer', { sender: ref(p.responder), recipient: [ref(p.patient)], inResponseTo: [ref(question)], sent: iso(t0 + (asked + after) * hour) }));
      }
    }
    const poolThread = await integrate({ ...header(p.patient, [p.responsePool]), meta: { tag: [THREAD_TAG] }, sender: ref(p.patient), sent: iso(t0) });
    await integrate(message(p.patient, poolThread, 'Question', { sender: ref(p.patient), recipient: [ref(p.responsePool)], sent: iso(t0 + hour) }));
    await integrate(message(p.patient, poolThread, 'Answer', { sender: ref(p.responder), recipient: [ref(p.patient)], sent: iso(t0 + 1.5 * hour) }));

    const res = await p.doctorToken.request.get('/fhir/Communication/$response-times?start=2025-03-01&end=2025-03-10');
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    const figures = (recipient: string) => {
      const entry = (res.body.parameter as { part: { name: string; valueReference?: { reference: string }; valueInteger?: number; valueDecimal?: number }[] }[]).find(
        (e) => e.part.find((x) => x.name === 'recipient')?.valueReference?.reference === recipient
      );
      expect(entry, recipient).toBeDefined();
      return Object.fromEntries(entry!.part.filter((x) => x.name !== 'recipient').map((x) => [x.name, x.valueInteger ?? x.valueDecimal]));
    };
    // Answered after 1, 2, 3 and 10 hours: median (2+3)/2; the 90th percentile lies 0.7 of the
    // way from 3 to 10 (linear interpolation at 0.9 × 3 = 2.7). The last question waits, and
    // its Task, due two business days after 4 March, is past due.
    expect(figures(p.responder)).toEqual({ received: 5, medianHoursToFirstReply: 2.5, p90HoursToFirstReply: 7.9, unanswered: 1, openPastDue: 1 });
    // The pool's thread was answered by a member, through the EHR: its Task is done.
    expect((await taskOf(poolThread)).status).toBe('completed');
    expect(figures(p.responsePool)).toEqual({ received: 1, medianHoursToFirstReply: 0.5, p90HoursToFirstReply: 0.5, unanswered: 0, openPastDue: 0 });

    expect((await p.alice.request.get('/fhir/Communication/$response-times')).status).toBe(403);
  });
});

// ---- imported messages --------------------------------------------------------------

describe('imported messages', () => {
  it('keep their sent time and sender, get a Provenance and no Task; only a system client may import', async () => {
    const imported = { meta: { tag: [IMPORTED_TAG] } };
    const h = await adminCreate(server, { ...header(p.patient, [p.doctor]), ...imported, meta: { tag: [IMPORTED_TAG, THREAD_TAG] }, sender: ref(p.patient), sent: '2019-05-01T08:00:00Z' });
    const m = await adminCreate(server, message(p.patient, h, 'Old question', { ...imported, sender: ref(p.patient), recipient: [ref(p.doctor)], sent: '2019-05-01T08:05:00Z' }));
    const r = await adminCreate(server, message(p.patient, h, 'Old answer', { ...imported, sender: ref(p.doctor), recipient: [ref(p.patient)], sent: '2019-05-02T10:00:00Z' }));
    const stored = await adminRead<Communication>(server, r);
    expect(stored.sent).toBe('2019-05-02T10:00:00Z');
    expect(stored.sender?.reference).toBe(p.doctor);
    expect((await adminRead<Communication>(server, m)).sender?.reference).toBe(p.patient);
    expect(await adminSearch<Task>(server, `Task?focus=${h}`)).toEqual([]);
    const [provenance] = await provenanceOf(r);
    expect(provenance.recorded).toBe('2019-05-02T10:00:00Z');
    expect(provenance.agent[0].who?.reference).toBe(p.doctor);

    const old = await adminCreate(server, { ...header(p.patient, [p.doctor]), meta: { tag: [THREAD_TAG] }, sender: ref(p.patient), sent: new Date().toISOString() });
    await expectRefused(server, 403, () =>
      send(p.alice.request, 'post', 'Communication', message(p.patient, old, 'Backdated', { ...imported, sender: ref(p.patient), sent: '2019-01-01T00:00:00Z' }))
    );
    await expectRefused(server, 422, () => send(server.request, 'post', 'Communication', message(p.patient, h, 'No time', { ...imported, sender: ref(p.patient) })), /sent/);
  });
});

// ---- a thread closing while the patient writes --------------------------------------

describe('closing and writing at the same moment', () => {
  // PGlite has one connection: a transaction held open here would hold up the request itself.
  it.runIf(testEngine === 'postgres')('a message racing a close waits for it, then is refused; nothing lands in the closed thread', async () => {
    const { thread } = await patientThread(p.alice.request, [p.doctor]);
    const current = await adminRead<Communication>(server, thread);
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    let locked!: () => void;
    const holding = new Promise<void>((resolve) => (locked = resolve));
    const closing = server.app.store.transaction(async (tx) => {
      await server.app.store.update(systemContext('test'), { ...current, status: 'completed' }, 'Communication', idOf(thread), { tx });
      locked();
      await gate;
    });
    await holding;
    const before = (await messagesIn(thread)).length;
    let answered = false;
    const writing = send(p.alice.request, 'post', 'Communication', message(p.patient, thread, 'Just in time?')).then((res) => {
      answered = true;
      return res;
    });
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(answered).toBe(false);
    release();
    await closing;
    const res = await writing;
    expect(res.status, JSON.stringify(res.body)).toBe(422);
    expect(JSON.stringify(res.body.issue)).toMatch(/closed/);
    expect((await messagesIn(thread)).length).toBe(before);
  });
});

// ---- auto-close (last: it closes every thread that is stale at the time it is given) --

describe('threads close themselves', () => {
  it(`after ${AUTO_CLOSE_DAYS} days without a patient message, unless the patient is still waiting for an answer`, async () => {
    const now = Date.now();
    const answered = await patientThread(p.alice.request, [p.doctor]);
    await post(p.doctorToken.request, message(p.patient, answered.thread, 'Answered.'));
    expect((await taskOf(answered.thread)).status).toBe('completed');
    const waiting = await patientThread(p.alice.request, [p.doctor]);
    const headerOnly = `Communication/${(await post(p.alice.request, header(p.patient, [p.doctor]))).id}`;
    const fromPractice = `Communication/${(await post(p.doctorToken.request, { ...header(p.patient, [p.patient]), category: category('education') })).id}`;
    await post(p.doctorToken.request, message(p.patient, fromPractice, 'Please book your flu shot.'));
    const closedByStaff = await patientThread(p.alice.request, [p.doctor]);
    expect((await patch(p.staffToken.request, closedByStaff.thread, [{ op: 'replace', path: '/status', value: 'completed' }])).status).toBe(200);
    // Written with its real (older) times by an integrating system.
    const integrate = (body: Communication) => adminCreate(server, body);
    const old = await integrate({ ...header(p.patient, [p.doctor]), meta: { tag: [THREAD_TAG] }, sender: ref(p.patient), sent: iso(now - 10 * DAY) });
    await integrate(message(p.patient, old, 'Old question', { sender: ref(p.patient), recipient: [ref(p.doctor)], sent: iso(now - 10 * DAY) }));
    await integrate(message(p.patient, old, 'Old answer', { sender: ref(p.doctor), recipient: [ref(p.patient)], sent: iso(now - 9 * DAY) }));
    const recent = await integrate({ ...header(p.patient, [p.doctor]), meta: { tag: [THREAD_TAG] }, sender: ref(p.patient), sent: iso(now - 10 * DAY) });
    await integrate(message(p.patient, recent, 'Old question', { sender: ref(p.patient), recipient: [ref(p.doctor)], sent: iso(now - 10 * DAY) }));
    await integrate(message(p.patient, recent, 'Old answer', { sender: ref(p.doctor), recipient: [ref(p.patient)], sent: iso(now - 9 * DAY) }));
    await integrate(message(p.patient, recent, 'Follow-up', { sender: ref(p.patient), recipient: [ref(p.doctor)], sent: iso(now - 2 * DAY) }));
    await integrate(message(p.patient, recent, 'Answer', { sender: ref(p.doctor), recipient: [ref(p.patient)], sent: iso(now - 1 * DAY) }));

    const status = async (thread: string) => (await adminRead<Communication>(server, thread)).status;
    const today = (await server.app.threadAutoClose.closeStaleThreads(new Date(now))).map((id) => `Communication/${id}`);
    expect(today).toContain(old);
    expect(today).not.toContain(recent);
    expect(await status(old)).toBe('completed');
    expect((await adminRead<Communication>(server, old)).statusReason?.text).toMatch(new RegExp(`${AUTO_CLOSE_DAYS} days`));
    // The staff-closed thread's open Task goes with it.
    const staffTask = await taskOf(closedByStaff.thread);
    expect(staffTask.status).toBe('cancelled');
    expect(staffTask.statusReason?.text).toBeTruthy();

    // Two days on, the threads of today are not stale yet (the one whose patient wrote two days ago is).
    const fresh = [answered.thread, waiting.thread, headerOnly, fromPractice];
    const soon = await server.app.threadAutoClose.closeStaleThreads(new Date(now + (AUTO_CLOSE_DAYS - 1) * DAY));
    expect(soon.map((id) => `Communication/${id}`).filter((t) => fresh.includes(t))).toEqual([]);
    expect(soon.map((id) => `Communication/${id}`)).toContain(recent);

    const later = (await server.app.threadAutoClose.closeStaleThreads(new Date(now + (AUTO_CLOSE_DAYS + 1) * DAY))).map((id) => `Communication/${id}`);
    expect(later).toEqual(expect.arrayContaining([answered.thread, headerOnly, fromPractice]));
    expect(later).not.toContain(waiting.thread);
    expect(await status(answered.thread)).toBe('completed');
    expect(await status(waiting.thread)).toBe('in-progress');
    expect((await taskOf(waiting.thread)).status).toBe('requested');
    expect((await taskOf(answered.thread)).status).toBe('completed');
    const cancelled = await taskOf(headerOnly);
    expect(cancelled.status).toBe('cancelled');
    expect(cancelled.statusReason?.text).toMatch(/without a message from the patient/);

    await expectRefused(server, 422, () => send(p.alice.request, 'post', 'Communication', message(p.patient, answered.thread, 'Hello?')), /closed/);

    // Reopened by staff, the thread's Task is work again when the patient writes.
    const current = await adminRead<Communication>(server, headerOnly);
    expect((await send(p.staffToken.request, 'put', headerOnly, { ...current, status: 'in-progress' })).status).toBe(200);
    await post(p.alice.request, message(p.patient, headerOnly, 'Still there?'));
    const reopened = await taskOf(headerOnly);
    expect(reopened.status).toBe('requested');
    expect(reopened.statusReason).toBeUndefined();
  });
});
