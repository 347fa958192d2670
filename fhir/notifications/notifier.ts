/**
 * The `notify` outbox deliverer: tells a patient or representative that a message waits for
 * them, through their channel. The person's record and choice are looked up at delivery
 * time, so an address changed after the message was queued is the one used.
 *
 * Outcomes, as the outbox records them:
 * - sent → delivered;
 * - nothing to send (the person chose none; no address and no choice; an inactive record or
 *   a deceased patient) → delivered, since that is the notice's correct fate;
 * - the channel cannot be used (no address for the chosen channel, or the server has no
 *   SMTP_URL / SMS_WEBHOOK_URL) → failed at once with the reason in `last_error`: retrying
 *   cannot help, and the failed state shows staff (through `$delivery-status`) and operators
 *   that the person was not told. Once fixed, an operator can set it pending again;
 * - the mail server or webhook is down → retried with backoff.
 * Logs name the outbox entry and channel only, never an address.
 */
import type { Patient, RelatedPerson } from '@medplum/fhirtypes';
import { systemContext } from '../access.js';
import type { Queryable } from '../db/database.js';
import { FhirError } from '../errors.js';
import { PermanentFailure } from '../outbox/outbox.js';
import type { Deliverer, OutboxEntry } from '../outbox/outbox.js';
import type { ResourceStore } from '../store/store.js';
import { contactOf, decideChannel, describePreference, reachable } from './channels.js';
import type { PreferenceView, Transports } from './channels.js';
import { EmailSender } from './email.js';
import { storedPreference } from './preferences.js';
import { SmsSender } from './sms.js';

export type Person = Patient | RelatedPerson;

/** The part of a logger the notifier uses (a pino logger fits). */
export interface NoticeLog {
  info(fields: object, message: string): void;
  warn(fields: object, message: string): void;
}

export interface NotifierOptions {
  /** The sign-in link every notice carries. */
  portalUrl: string;
  smtpUrl?: string;
  mailFrom: string;
  smsWebhookUrl?: string;
  log?: NoticeLog;
}

const PERSON_REFERENCE = /^(Patient|RelatedPerson)\/([A-Za-z0-9\-.]{1,64})$/;

export class Notifier {
  private readonly email?: EmailSender;
  private readonly sms?: SmsSender;

  constructor(
    private readonly store: ResourceStore,
    private readonly db: Queryable,
    private readonly options: NotifierOptions
  ) {
    const { portalUrl } = options;
    this.email = options.smtpUrl ? new EmailSender({ smtpUrl: options.smtpUrl, mailFrom: options.mailFrom, portalUrl }) : undefined;
    this.sms = options.smsWebhookUrl ? new SmsSender({ webhookUrl: options.smsWebhookUrl, portalUrl }) : undefined;
  }

  get transports(): Transports {
    return { email: Boolean(this.email), sms: Boolean(this.sms) };
  }

  /** The outbox deliverer of kind `notify`. */
  readonly deliver: Deliverer = async (entry: OutboxEntry) => {
    const recipient = (entry.payload as { recipient?: unknown } | null)?.recipient;
    if (typeof recipient !== 'string' || !PERSON_REFERENCE.test(recipient)) {
      throw new PermanentFailure('A notice needs a Patient or RelatedPerson recipient');
    }
    const person = await this.load(recipient, `outbox-${entry.id}`);
    if (!reachable(person)) {
      this.options.log?.info({ entry: entry.id, channel: 'none' }, 'notice not sent: record inactive');
      return;
    }
    const decision = decideChannel(await storedPreference(this.db, recipient), contactOf(person), this.transports);
    if (decision.kind === 'none') {
      return;
    }
    if (decision.kind === 'unavailable') {
      this.options.log?.warn({ entry: entry.id, channel: decision.channel }, 'notice not sent: channel unavailable');
      throw new PermanentFailure(decision.reason);
    }
    if (decision.channel === 'email') {
      await this.email!.send(decision.address, entry.idempotencyKey);
    } else {
      await this.sms!.send(decision.address, entry.idempotencyKey);
    }
    this.options.log?.info({ entry: entry.id, channel: decision.channel }, 'notice sent');
  };

  /** Where a person's notices go, as the preference operation shows it. */
  async preferenceOf(reference: string, person: Person, db: Queryable = this.db): Promise<PreferenceView> {
    return describePreference(await storedPreference(db, reference), contactOf(person), this.transports);
  }

  close(): void {
    this.email?.close();
  }

  private async load(reference: string, requestId: string): Promise<Person> {
    const [type, id] = reference.split('/');
    try {
      return JSON.parse((await this.store.read(systemContext(requestId), type, id)).content) as Person;
    } catch (err) {
      if (err instanceof FhirError && (err.status === 404 || err.status === 410)) {
        throw new PermanentFailure('The recipient no longer exists');
      }
      throw err;
    }
  }
}
