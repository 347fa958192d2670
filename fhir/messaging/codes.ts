/**
 * CareThread's own CodeSystems, published as CodeSystem resources at start-up: message
 * categories (which drive routing, due times and the engagement measures), portal events
 * (which the view/download/transmit measures count), security events, and message
 * activities (create, reply, forward) used in Provenance.
 */
import type { CodeSystem } from '@medplum/fhirtypes';

export const CANONICAL_BASE = 'https://carethread.dev/fhir/CodeSystem';
export const MESSAGE_CATEGORY_SYSTEM = `${CANONICAL_BASE}/message-category`;
export const PORTAL_EVENT_SYSTEM = `${CANONICAL_BASE}/portal-event`;
export const MESSAGE_ACTIVITY_SYSTEM = `${CANONICAL_BASE}/message-activity`;
export const TAG_SYSTEM = `${CANONICAL_BASE}/tag`;
/** Tag of records loaded from a previous system: kept as they were (sent time, sender). */
export const IMPORTED_TAG = { system: TAG_SYSTEM, code: 'imported' };
/** Tag of a thread header (the Communication that opens a thread; not itself a message). */
export const THREAD_TAG = { system: TAG_SYSTEM, code: 'thread' };
/** Tag of the automatic reply the urgency screen sends. */
export const AUTO_REPLY_TAG = { system: TAG_SYSTEM, code: 'auto-reply' };
/** Identifier system of CareThread's own resources, as delivered to an EHR. */
export const CARETHREAD_IDENTIFIER_SYSTEM = 'urn:carethread:resource';

/** Categories a patient may start a thread with, and their reply due times in business days. */
export const PATIENT_CATEGORIES: Record<string, { display: string; dueBusinessDays: number }> = {
  'medical-question': { display: 'Medical question', dueBusinessDays: 2 },
  'prescription-renewal': { display: 'Prescription renewal', dueBusinessDays: 2 },
  'appointment-request': { display: 'Appointment request', dueBusinessDays: 1 },
  referral: { display: 'Referral', dueBusinessDays: 3 },
  billing: { display: 'Billing', dueBusinessDays: 5 },
  'test-results': { display: 'Test results', dueBusinessDays: 2 },
  'symptom-report': { display: 'Symptom report', dueBusinessDays: 1 },
};

/** Categories of messages the practice sends (counted by the engagement measures). */
export const PRACTICE_CATEGORIES: Record<string, string> = {
  reminder: 'Reminder (preventive or follow-up care, appointment)',
  education: 'Patient-specific education resource',
  'clinical-summary': 'Clinical summary of an office visit',
};

export const PORTAL_EVENTS: Record<string, string> = {
  'access-granted': 'Online access provided (credentials, URL and instructions given)',
  view: 'Health information viewed online',
  download: 'Health information downloaded',
  transmit: 'Health information transmitted to a third party',
};

/** Concept properties of the message-category CodeSystem, for apps to read. */
export const CATEGORY_PROPERTIES = {
  /** `patient` (a patient may start a thread with it) or `practice` (the practice sends it). */
  sentBy: 'sent-by',
  /** Business days within which the practice answers a patient's thread of this category. */
  replyWithin: 'reply-within-business-days',
} as const;

type Concept = NonNullable<CodeSystem['concept']>[number];

export function codeSystems(): CodeSystem[] {
  const system = (id: string, url: string, name: string, title: string, description: string, concepts: (Concept | [string, string])[], property?: CodeSystem['property']): CodeSystem => ({
    resourceType: 'CodeSystem',
    id,
    url,
    version: '1.0.0',
    name,
    title,
    status: 'active',
    experimental: false,
    publisher: 'CareThread',
    description,
    caseSensitive: true,
    content: 'complete',
    count: concepts.length,
    ...(property ? { property } : {}),
    concept: concepts.map((c) => (Array.isArray(c) ? { code: c[0], display: c[1] } : c)),
  });
  const sentBy = (code: string): NonNullable<Concept['property']>[number] => ({ code: CATEGORY_PROPERTIES.sentBy, valueCode: code });
  return [
    system(
      'message-category',
      MESSAGE_CATEGORY_SYSTEM,
      'CareThreadMessageCategory',
      'CareThread message categories',
      'Categories of secure messages. Patient-started threads use the first seven; the practice sends reminders, education and clinical summaries.',
      [
        ...Object.entries(PATIENT_CATEGORIES).map(([code, v]) => ({
          code,
          display: v.display,
          property: [sentBy('patient'), { code: CATEGORY_PROPERTIES.replyWithin, valueInteger: v.dueBusinessDays }],
        })),
        ...Object.entries(PRACTICE_CATEGORIES).map(([code, display]) => ({ code, display, property: [sentBy('practice')] })),
      ],
      [
        { code: CATEGORY_PROPERTIES.sentBy, type: 'code', description: 'patient: a patient may start a thread in this category; practice: only the practice sends it' },
        { code: CATEGORY_PROPERTIES.replyWithin, type: 'integer', description: 'Business days within which the practice answers (the due time of the thread\'s Task)' },
      ]
    ),
    system(
      'portal-event',
      PORTAL_EVENT_SYSTEM,
      'CareThreadPortalEvent',
      'CareThread patient portal events',
      'AuditEvent subtypes the patient portal records; the view/download/transmit engagement measures count them.',
      Object.entries(PORTAL_EVENTS)
    ),
    system('message-activity', MESSAGE_ACTIVITY_SYSTEM, 'CareThreadMessageActivity', 'CareThread message activities', 'Provenance activities of secure messages.', [
      ['create', 'Started a thread or wrote a message'],
      ['reply', 'Replied to a message'],
      ['forward', 'Forwarded a thread to a colleague or pool'],
    ]),
    system('security-event', `${CANONICAL_BASE}/security-event`, 'CareThreadSecurityEvent', 'CareThread authorization events', 'AuditEvent subtypes of the authorization server.', [
      ['login', 'A user signed in (or failed to)'],
      ['launch', 'An EHR launch was redeemed'],
      ['token', 'An access token was issued'],
      ['revoke', 'A token was revoked'],
    ]),
    system('tag', TAG_SYSTEM, 'CareThreadTag', 'CareThread tags', 'Tags CareThread puts on resources.', [
      ['thread', 'Header of a message thread (not itself a message)'],
      ['imported', 'Loaded from a previous system; original times and authors kept'],
      ['auto-reply', 'Sent automatically by CareThread'],
    ]),
  ];
}
