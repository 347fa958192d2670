/**
 * The measured scenarios: what each request looks like (drawn at random from the seeded
 * data, so caches see a realistic spread), who sends it, and the target it is held to.
 * Shared by the orchestrator and the load-generator process.
 */
import { messageText, pick, replyMessage } from './dataset.js';
import type { ThreadInfo } from './dataset.js';
import type { Identity, Tokens } from './identities.js';

export type ScenarioName = 'create' | 'mark-read' | 'read' | 'inbox' | 'thread' | 'inbox-threads' | 'read-unaudited';

/** What the load generator needs to draw requests: ids of the seeded data. */
export interface LoadData {
  identity: Identity;
  practitionerIds: string[];
  threads: ThreadInfo[];
  /** Threads still open: the ones replies go to. */
  openThreads: ThreadInfo[];
  /** Unread patient messages in a fixed random order: `mark-read` opens each once. */
  unread: { id: string; practitionerId: string }[];
}

export interface BenchRequest {
  method: 'GET' | 'POST';
  path: string;
  headers: Record<string, string>;
  body?: string;
}

export interface Target {
  requestsPerSecond: number;
  p99Ms: number;
}

export interface ScenarioDefinition {
  name: ScenarioName;
  label: string;
  /** Undefined for diagnostic runs that no target applies to. */
  target?: Target;
  /** Patient tokens are needed (replies from the patient side). */
  needsPatients?: boolean;
  /** `ordinal` counts this scenario's requests in the load process (warm-up included). */
  request(data: LoadData, tokens: Tokens, random: () => number, ordinal: number): BenchRequest;
}

const READ_TARGET: Target = { requestsPerSecond: 1500, p99Ms: 50 };
const CREATE_TARGET: Target = { requestsPerSecond: 800, p99Ms: 100 };

/** Who acts for a thread: its practitioner (users), or the integrating client. */
function bearer(data: LoadData, tokens: Tokens, practitionerId: string): Record<string, string> {
  const token = data.identity === 'client' ? tokens.client : tokens.practitioners?.[practitionerId];
  if (!token) {
    throw new Error(`no token for ${data.identity === 'client' ? 'the client' : `Practitioner/${practitionerId}`}`);
  }
  return { authorization: `Bearer ${token}` };
}

/** A message of a random thread that its practitioner has already read, read again by them. */
function readById(data: LoadData, tokens: Tokens, random: () => number): BenchRequest {
  const thread = pick(random, data.threads);
  const id = pick(random, [thread.headerId, ...thread.messageIds.filter((m) => !thread.unreadIds.includes(m))]);
  return { method: 'GET', path: `/fhir/Communication/${id}`, headers: bearer(data, tokens, thread.practitionerId) };
}

export const SCENARIOS: Record<ScenarioName, ScenarioDefinition> = {
  create: {
    name: 'create',
    label: 'create Communication (reply in an open thread)',
    target: CREATE_TARGET,
    needsPatients: true,
    request(data, tokens, random) {
      const thread = pick(random, data.openThreads);
      const fromPatient = random() < 0.5;
      const previous = thread.messageIds[thread.messageIds.length - 1];
      const client = data.identity === 'client';
      // An integrating system sends the message as in its chart; users get `sent` stamped.
      const message = replyMessage(thread, fromPatient, messageText(random), {
        inResponseTo: previous,
        withRecipient: client || !fromPatient,
        sent: client ? new Date().toISOString() : undefined,
      });
      const headers = fromPatient && !client ? { authorization: `Bearer ${tokens.patients?.[thread.patientId]}` } : bearer(data, tokens, thread.practitionerId);
      return { method: 'POST', path: '/fhir/Communication', headers: { ...headers, 'content-type': 'application/fhir+json' }, body: JSON.stringify(message) };
    },
  },
  'mark-read': {
    name: 'mark-read',
    label: 'mark read (a recipient opens an unread message)',
    target: READ_TARGET,
    // Each request opens the next unread message, so each is a first read (the read
    // receipt: `received` set, a new version, its AuditEvent) until the list runs out.
    request(data, tokens, _random, ordinal) {
      const message = data.unread[ordinal % data.unread.length];
      return { method: 'GET', path: `/fhir/Communication/${message.id}`, headers: bearer(data, tokens, message.practitionerId) };
    },
  },
  read: { name: 'read', label: 'read Communication by id', target: READ_TARGET, request: readById },
  inbox: {
    name: 'inbox',
    label: 'provider inbox search (recipient, _sort=-sent, _count=20)',
    target: READ_TARGET,
    request(data, tokens, random) {
      const practitioner = pick(random, data.practitionerIds);
      return {
        method: 'GET',
        path: `/fhir/Communication?recipient=Practitioner/${practitioner}&_sort=-sent&_count=20`,
        headers: bearer(data, tokens, practitioner),
      };
    },
  },
  thread: {
    name: 'thread',
    label: 'thread page (part-of, _sort=sent)',
    target: READ_TARGET,
    request(data, tokens, random) {
      const thread = pick(random, data.threads);
      return { method: 'GET', path: `/fhir/Communication?part-of=Communication/${thread.headerId}&_sort=sent`, headers: bearer(data, tokens, thread.practitionerId) };
    },
  },
  'inbox-threads': {
    name: 'inbox-threads',
    label: 'provider inbox of threads ($inbox, _count=20)',
    target: READ_TARGET,
    request(data, tokens, random) {
      const practitioner = pick(random, data.practitionerIds);
      return {
        method: 'GET',
        path: `/fhir/Communication/$inbox?practitioner=Practitioner/${practitioner}&_count=20`,
        headers: bearer(data, tokens, practitioner),
      };
    },
  },
  'read-unaudited': {
    name: 'read-unaudited',
    label: 'diagnostic: read by id, audit queue disabled',
    request: readById,
  },
};

export const MEASURED_ORDER: ScenarioName[] = ['create', 'mark-read', 'read', 'inbox', 'thread', 'inbox-threads'];
