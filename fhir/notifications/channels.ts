/**
 * Which channel a notice goes through: the person's stored choice, or by default e-mail when
 * they have an e-mail address (else none). A chosen channel is never swapped for another —
 * someone who picked SMS may share their mailbox — so a channel that cannot be used is
 * reported as unavailable, with a reason that names no address.
 */
import type { ContactPoint, Patient, RelatedPerson } from '@medplum/fhirtypes';

export const CHANNELS = ['email', 'sms', 'none'] as const;
export type Channel = (typeof CHANNELS)[number];

export function isChannel(value: unknown): value is Channel {
  return typeof value === 'string' && (CHANNELS as readonly string[]).includes(value);
}

/** Where a person can be reached. */
export interface Contact {
  email?: string;
  /** A number that can take text messages (an `sms` contact point, else a mobile, else any phone). */
  phone?: string;
}

/** Which transports this server has configured. */
export interface Transports {
  email: boolean;
  sms: boolean;
}

export type ChannelDecision =
  | { kind: 'send'; channel: 'email' | 'sms'; address: string }
  /** Nothing to send: the person chose no notices, or has no address and made no choice. */
  | { kind: 'none' }
  /** The channel the person chose (or the default) cannot be used; `reason` says why. */
  | { kind: 'unavailable'; channel: 'email' | 'sms'; reason: string };

export interface PreferenceView {
  /** The chosen channel, or the default when nothing was chosen. */
  channel: Channel;
  chosen: boolean;
  /** What a notice would go through right now. */
  effective: Channel;
  /** Channels the person could choose and be reached by ('none' is always one). */
  available: Channel[];
  unavailableReason?: string;
}

export function contactOf(person: Patient | RelatedPerson, now = new Date()): Contact {
  const usable = (person.telecom ?? []).filter((t) => t.value && t.use !== 'old' && !ended(t, now));
  const byRank = (a: ContactPoint, b: ContactPoint) => (a.rank ?? Number.MAX_SAFE_INTEGER) - (b.rank ?? Number.MAX_SAFE_INTEGER);
  const emails = usable.filter((t) => t.system === 'email').sort(byRank);
  const phones = [
    ...usable.filter((t) => t.system === 'sms').sort(byRank),
    ...usable.filter((t) => t.system === 'phone' && t.use === 'mobile').sort(byRank),
    ...usable.filter((t) => t.system === 'phone' && t.use !== 'mobile').sort(byRank),
  ];
  return { email: emails[0]?.value?.trim() || undefined, phone: phones[0]?.value?.trim() || undefined };
}

/** Whether the person can be notified at all (an inactive record or a deceased patient is not). */
export function reachable(person: Patient | RelatedPerson): boolean {
  if (person.active === false) {
    return false;
  }
  const patient = person as Patient;
  return !(patient.deceasedBoolean === true || patient.deceasedDateTime);
}

export function defaultChannel(contact: Contact): Channel {
  return contact.email ? 'email' : 'none';
}

export function decideChannel(preference: Channel | undefined, contact: Contact, transports: Transports): ChannelDecision {
  const channel = preference ?? defaultChannel(contact);
  if (channel === 'none') {
    return { kind: 'none' };
  }
  const problem = unavailability(channel, contact, transports);
  if (problem) {
    return { kind: 'unavailable', channel, reason: problem };
  }
  return { kind: 'send', channel, address: (channel === 'email' ? contact.email : contact.phone)! };
}

export function describePreference(preference: Channel | undefined, contact: Contact, transports: Transports): PreferenceView {
  const decision = decideChannel(preference, contact, transports);
  return {
    channel: preference ?? defaultChannel(contact),
    chosen: preference !== undefined,
    effective: decision.kind === 'send' ? decision.channel : 'none',
    available: CHANNELS.filter((c) => c === 'none' || !unavailability(c, contact, transports)),
    ...(decision.kind === 'unavailable' ? { unavailableReason: decision.reason } : {}),
  };
}

/** Why `channel` cannot reach this person on this server; undefined when it can. */
export function unavailability(channel: 'email' | 'sms', contact: Contact, transports: Transports): string | undefined {
  if (channel === 'email') {
    if (!contact.email) {
      return 'E-mail notices were chosen but there is no e-mail address on record';
    }
    return transports.email ? undefined : 'E-mail notices are not configured on this server (SMTP_URL is not set)';
  }
  if (!contact.phone) {
    return 'SMS notices were chosen but there is no phone number on record';
  }
  return transports.sms ? undefined : 'SMS notices are not configured on this server (SMS_WEBHOOK_URL is not set)';
}

function ended(point: ContactPoint, now: Date): boolean {
  const end = point.period?.end;
  return Boolean(end && Date.parse(end) < now.getTime());
}
