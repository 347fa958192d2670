/**
 * The benchmark dataset, generated deterministically from a seed so every run stores the
 * same resources: Patients, Practitioners, and message threads as a previous portal would
 * hand them over (tagged `imported`, keeping their times and senders). A thread is a header
 * Communication (tagged `thread`; subject = the patient, sender = the patient who opened
 * it, recipient = the practitioner, category and topic, no payload) followed by messages
 * that point at it (`partOf`) and at the message before (`inResponseTo`), alternating
 * between the two parties, `sent` increasing and `received` set (they have been read),
 * except the patient's messages in the most recent fifth of the threads, which are still
 * open (`in-progress`) and wait for the practitioner to read them.
 */
import type { CodeableConcept, Communication, Patient, Practitioner, Resource } from '@medplum/fhirtypes';
import { IMPORTED_TAG, MESSAGE_CATEGORY_SYSTEM, THREAD_TAG } from '../../fhir/messaging/index.js';

export interface DatasetSize {
  patients: number;
  practitioners: number;
  /** Communications in all, headers included. */
  communications: number;
  /** Average messages per thread (header excluded). */
  messagesPerThread: number;
}

/** One thread as the load generator needs it: who talks, and the ids it may reply to. */
export interface ThreadInfo {
  headerId: string;
  patientId: string;
  practitionerId: string;
  messageIds: string[];
  /** Still `in-progress` (replies are accepted); older threads are `completed`. */
  open: boolean;
  /** The patient's messages the practitioner has not read yet (open threads only). */
  unreadIds: string[];
  category: string;
}

/** A resource to store under a given id; `resource` carries no id, as a client's POST would not. */
export interface SeedItem<T extends Resource = Resource> {
  id: string;
  resource: T;
}

export interface Dataset {
  size: DatasetSize;
  patients: SeedItem<Patient>[];
  practitioners: SeedItem<Practitioner>[];
  threads: ThreadInfo[];
  /** The Communications of one thread (header first), built on demand to keep memory flat. */
  threadResources(index: number): SeedItem<Communication>[];
}

const FAMILIES = ['Nguyen', 'Smith', 'Müller', 'García', 'Okafor', 'Kowalski', 'Tanaka', 'Rossi', 'Dubois', 'Haddad', 'Johansson', 'Silva'];
const GIVEN = ['Ana', 'Ben', 'Chloé', 'Dmitri', 'Esi', 'Farah', 'Gustav', 'Hana', 'Ivan', 'Jia', 'Kofi', 'Lena', 'Mateo', 'Noor'];
const TOPICS = ['Prescription refill', 'Lab results question', 'Appointment request', 'Billing question', 'Follow-up after visit', 'Side effects'];
const PHRASES = [
  'Thank you for getting back to me.',
  'Could you check whether the results came in?',
  'Please take the medication with food and let us know how it goes.',
  'I have had a mild headache since Tuesday.',
  'Your lab values are within the normal range.',
  'Can we move the appointment to next week?',
  'We have sent the refill to your pharmacy.',
  'The swelling has gone down a little.',
];
const CATEGORIES = ['medical-question', 'prescription-renewal', 'appointment-request', 'test-results', 'billing', 'symptom-report'];
/** Share of threads, the most recent, still open. */
const OPEN_SHARE = 0.2;
const DAY_MS = 24 * 3600 * 1000;

/** mulberry32: small, fast, good enough to spread a dataset. */
export function randomSource(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A version-4-shaped UUID drawn from `random`, so ids look like the server's own. */
export function uuidFrom(random: () => number): string {
  const hex = Array.from({ length: 32 }, () => Math.floor(random() * 16).toString(16));
  hex[12] = '4';
  hex[16] = '89ab'[Math.floor(random() * 4)];
  const s = hex.join('');
  return `${s.slice(0, 8)}-${s.slice(8, 12)}-${s.slice(12, 16)}-${s.slice(16, 20)}-${s.slice(20)}`;
}

export function pick<T>(random: () => number, list: readonly T[]): T {
  return list[Math.floor(random() * list.length)];
}

export function messageText(random: () => number): string {
  return `${pick(random, PHRASES)} ${pick(random, PHRASES)}`;
}

function categoryOf(code: string): CodeableConcept {
  return { coding: [{ system: MESSAGE_CATEGORY_SYSTEM, code }] };
}

/**
 * A new message in `thread`, as a client would POST it (no id, no meta). A patient's reply
 * names no recipient (the server sends it to the thread's recipients: naming one would be
 * checked against the care team); `to` adds explicit recipients.
 */
/** Messages alternate, the patient writing first. */
function isFromPatient(index: number): boolean {
  return index % 2 === 0;
}

export function replyMessage(
  thread: Pick<ThreadInfo, 'headerId' | 'patientId' | 'practitionerId' | 'category'>,
  fromPatient: boolean,
  text: string,
  options: { sent?: string; inResponseTo?: string; withRecipient: boolean }
): Communication {
  const patient = { reference: `Patient/${thread.patientId}` };
  const practitioner = { reference: `Practitioner/${thread.practitionerId}` };
  return {
    resourceType: 'Communication',
    status: 'completed',
    category: [categoryOf(thread.category)],
    subject: patient,
    partOf: [{ reference: `Communication/${thread.headerId}` }],
    ...(options.inResponseTo ? { inResponseTo: [{ reference: `Communication/${options.inResponseTo}` }] } : {}),
    sender: fromPatient ? patient : practitioner,
    ...(options.withRecipient ? { recipient: [fromPatient ? practitioner : patient] } : {}),
    ...(options.sent ? { sent: options.sent } : {}),
    payload: [{ contentString: text }],
  };
}

export function buildDataset(size: DatasetSize, seed = 20240611, now = Date.now()): Dataset {
  const random = randomSource(seed);
  const patients: SeedItem<Patient>[] = [];
  for (let i = 0; i < size.patients; i++) {
    const id = uuidFrom(random);
    patients.push({
      id,
      resource: {
        resourceType: 'Patient',
        identifier: [{ system: 'urn:oid:2.16.840.1.113883.3.9999.1', value: `MRN${String(i + 1).padStart(7, '0')}` }],
        active: true,
        name: [{ family: pick(random, FAMILIES), given: [pick(random, GIVEN)] }],
        gender: random() < 0.5 ? 'female' : 'male',
        birthDate: new Date(now - (18 + random() * 70) * 365.25 * DAY_MS).toISOString().slice(0, 10),
        telecom: [{ system: 'email', value: `patient${i + 1}@example.org` }],
      },
    });
  }
  const practitioners: SeedItem<Practitioner>[] = [];
  for (let i = 0; i < size.practitioners; i++) {
    const id = uuidFrom(random);
    practitioners.push({
      id,
      resource: {
        resourceType: 'Practitioner',
        identifier: [{ system: 'http://hl7.org/fhir/sid/us-npi', value: String(1_000_000_000 + i * 7919) }],
        active: true,
        name: [{ family: pick(random, FAMILIES), given: [pick(random, GIVEN)], prefix: ['Dr.'] }],
      },
    });
  }

  // Thread sizes vary (1 .. 2×average-1 messages) but add up to exactly the requested total.
  const threadCount = Math.max(1, Math.round(size.communications / (size.messagesPerThread + 1)));
  let messagesLeft = size.communications - threadCount;
  const sizes: number[] = [];
  for (let t = 0; t < threadCount; t++) {
    const threadsLeft = threadCount - t;
    const average = messagesLeft / threadsLeft;
    const n = t === threadCount - 1 ? messagesLeft : Math.max(1, Math.min(messagesLeft - (threadsLeft - 1), Math.round(1 + random() * (2 * average - 2))));
    sizes.push(n);
    messagesLeft -= n;
  }

  interface ThreadPlan extends Omit<ThreadInfo, 'unreadIds'> {
    topic: string;
    start: number;
    texts: string[];
    gaps: number[];
  }
  const plans: ThreadPlan[] = sizes.map((n) => {
    const age = random();
    return {
      headerId: uuidFrom(random),
      patientId: pick(random, patients).id,
      practitionerId: pick(random, practitioners).id,
      messageIds: Array.from({ length: n }, () => uuidFrom(random)),
      open: age < OPEN_SHARE,
      category: pick(random, CATEGORIES),
      topic: pick(random, TOPICS),
      start: now - DAY_MS - age * 365 * DAY_MS,
      texts: Array.from({ length: n }, () => messageText(random)),
      gaps: Array.from({ length: n }, () => 60_000 + random() * 6 * 3600_000),
    };
  });

  const imported = { tag: [IMPORTED_TAG] };
  return {
    size,
    patients,
    practitioners,
    threads: plans.map(({ headerId, patientId, practitionerId, messageIds, open, category }) => ({
      headerId,
      patientId,
      practitionerId,
      messageIds,
      open,
      category,
      unreadIds: open ? messageIds.filter((_, i) => isFromPatient(i)) : [],
    })),
    threadResources(index) {
      const plan = plans[index];
      const patient = { reference: `Patient/${plan.patientId}` };
      const header: Communication = {
        resourceType: 'Communication',
        meta: { tag: [THREAD_TAG, IMPORTED_TAG] },
        status: plan.open ? 'in-progress' : 'completed',
        category: [categoryOf(plan.category)],
        subject: patient,
        sender: patient,
        recipient: [{ reference: `Practitioner/${plan.practitionerId}` }],
        topic: { text: plan.topic },
        sent: new Date(plan.start).toISOString(),
      };
      const resources: SeedItem<Communication>[] = [{ id: plan.headerId, resource: header }];
      let sent = plan.start;
      plan.messageIds.forEach((id, i) => {
        sent += plan.gaps[i];
        const message = replyMessage(plan, isFromPatient(i), plan.texts[i], {
          sent: new Date(sent).toISOString(),
          inResponseTo: i > 0 ? plan.messageIds[i - 1] : undefined,
          withRecipient: true,
        });
        const unread = plan.open && isFromPatient(i);
        const received = unread ? undefined : new Date(sent + 60_000 + plan.gaps[i] / 4).toISOString();
        resources.push({ id, resource: { ...message, meta: imported, ...(received ? { received } : {}) } });
      });
      return resources;
    },
  };
}
