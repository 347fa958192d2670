/**
 * Secure messages: the rules for creating a thread header or a message, and everything that
 * must happen with it in the same transaction — Provenance (who, on whose behalf, when),
 * the thread's Task, the urgent auto-reply, PHI-free notifications, subscription and EHR
 * deliveries through the outbox. Either all of it commits or none of it does.
 */
import { randomUUID } from 'node:crypto';
import type { Communication, Reference } from '@medplum/fhirtypes';
import type { AccessContext } from '../access.js';
import { canSee, permit, systemContext } from '../access.js';
import type { Queryable } from '../db/database.js';
import { forbidden, notFound, unprocessable } from '../errors.js';
import type { ResourceStore, WriteResult } from '../store/store.js';
import { validateIncoming } from '../validate.js';
import { allowedRecipients, identitiesOf, sharePool } from './care-team.js';
import { AUTO_REPLY_TAG, IMPORTED_TAG, MESSAGE_CATEGORY_SYSTEM, PATIENT_CATEGORIES, THREAD_TAG } from './codes.js';
import { confidentialityOf, withLabels } from './confidentiality.js';
import type { MessageEffects } from './effects.js';
import { URGENT_AUTO_REPLY } from './urgency.js';
import type { UrgencyScreen } from './urgency.js';

export const AUTO_REPLY_SENDER = 'Organization/carethread';

export interface MessagingOptions {
  urgency: UrgencyScreen;
}

type Kind = 'header' | 'message' | 'standalone';

export class Messaging {
  constructor(
    private readonly store: ResourceStore,
    private readonly effects: MessageEffects,
    private readonly options: MessagingOptions
  ) {}

  /** POST Communication: a thread header, a message in a thread, or a practice message. */
  async create(ctx: AccessContext, input: unknown, options: { tx?: Queryable; id?: string; ifNoneExist?: string } = {}): Promise<WriteResult> {
    if (ctx.system) {
      return this.store.create(ctx, input, 'Communication', options);
    }
    // Scopes first: a caller who may not write messages learns nothing of the messaging rules.
    permit(ctx, 'Communication', 'c');
    const comm = validateIncoming(input, 'Communication') as Communication;
    const { tx } = options;
    if (hasTag(comm, IMPORTED_TAG)) {
      return this.importMessage(ctx, comm, options);
    }
    if (ctx.role === 'client') {
      return this.integrate(ctx, comm, options);
    }
    const run = async (t: Queryable) => {
      if (options.ifNoneExist !== undefined) {
        const existing = await this.store.findConditional(t, 'Communication', options.ifNoneExist, ctx);
        if (existing) {
          return { outcome: 'existing' as const, stored: existing };
        }
      }
      const prepared = await this.prepare(t, ctx, comm);
      const result = await this.store.create(ctx, prepared.message, 'Communication', { tx: t, id: options.id });
      const message = JSON.parse(result.stored.content) as Communication;
      await this.effects.recorded(t, ctx, message, prepared);
      if (prepared.urgent) {
        await this.autoReply(t, message, prepared.header!);
      }
      return result;
    };
    // (A conditional create that found its match has nothing to announce.)
    const result = tx ? await run(tx) : await this.store.transaction(run);
    this.effects.committed();
    return result;
  }

  /** Records from a previous portal keep their sent time and sender; nobody is notified. */
  private async importMessage(ctx: AccessContext, comm: Communication, options: { tx?: Queryable; id?: string; ifNoneExist?: string }): Promise<WriteResult> {
    if (ctx.role !== 'client') {
      throw forbidden('Only a system client may import messages');
    }
    if (!comm.sent || !comm.sender?.reference) {
      throw unprocessable('An imported message keeps its original sent time and sender: both are required', ['Communication.sent']);
    }
    const run = async (t: Queryable) => {
      const result = await this.store.create(ctx, comm, 'Communication', { ...options, tx: t });
      if (result.outcome === 'existing') {
        return result;
      }
      await this.effects.provenance(t, ctx, JSON.parse(result.stored.content), { activity: 'create', author: comm.sender!.reference!, recorded: comm.sent! });
      return result;
    };
    return options.tx ? run(options.tx) : this.store.transaction(run);
  }

  /**
   * An integrating system (an EHR) writes Communications as they are in its chart: nothing
   * is stamped or checked against the patient-side policy, but the message is recorded,
   * notified and delivered like any other.
   */
  private async integrate(ctx: AccessContext, comm: Communication, options: { tx?: Queryable; id?: string; ifNoneExist?: string }): Promise<WriteResult> {
    const run = async (t: Queryable) => {
      const result = await this.store.create(ctx, comm, 'Communication', { ...options, tx: t });
      if (result.outcome === 'existing') {
        return result;
      }
      const message = JSON.parse(result.stored.content) as Communication;
      const partOf = message.partOf?.[0]?.reference;
      const header = partOf?.startsWith('Communication/')
        ? await t.query(`SELECT content FROM "Communication" WHERE id = $1 AND NOT deleted`, [partOf.slice('Communication/'.length)])
        : [];
      const sender = message.sender?.reference ?? ctx.clientId ?? 'unknown';
      await this.effects.recorded(t, ctx, message, {
        message,
        kind: kindOf(message),
        header: header[0] ? (JSON.parse(header[0].content) as Communication) : undefined,
        sender,
        actor: ctx.clientId ?? sender,
        onBehalfOf: message.sender?.reference,
        urgent: false,
        fromPatientSide: sender.startsWith('Patient/') || sender.startsWith('RelatedPerson/'),
      });
      return result;
    };
    const result = options.tx ? await run(options.tx) : await this.store.transaction(run);
    this.effects.committed();
    return result;
  }

  private async prepare(tx: Queryable, ctx: AccessContext, comm: Communication): Promise<PreparedMessage> {
    const actor = ctx.fhirUser;
    const fromPatientSide = ctx.role === 'patient' || ctx.role === 'representative';
    let sender = comm.sender?.reference;
    let onBehalfOf: string | undefined;
    if (fromPatientSide) {
      if (sender && sender !== actor) {
        throw unprocessable('A message is sent as the signed-in person; it cannot name another sender', ['Communication.sender']);
      }
      sender = actor;
    } else if (ctx.role === 'practitioner') {
      if (!sender) {
        sender = actor;
      } else if (sender !== actor) {
        if (!actor || !sender.startsWith('Practitioner/') || !(await sharePool(tx, actor, sender))) {
          throw unprocessable('Staff may send on behalf of a provider only when they share a pool', ['Communication.sender']);
        }
        onBehalfOf = sender;
      }
    }
    const subject = comm.subject?.reference;
    if (!subject?.startsWith('Patient/')) {
      throw unprocessable('A message needs a subject: the patient it is about', ['Communication.subject']);
    }
    if (ctx.role === 'patient' && subject !== actor) {
      throw unprocessable('A patient may write only about themselves', ['Communication.subject']);
    }
    if (ctx.role === 'representative' && !ctx.compartments?.includes(subject)) {
      throw unprocessable('A representative may write only about patients they represent', ['Communication.subject']);
    }
    const kind = kindOf(comm);
    if (kind === 'standalone' && fromPatientSide) {
      throw unprocessable('Start a thread first: a header (topic, category, recipients, no payload), then messages with partOf', ['Communication.partOf']);
    }
    const message: Communication = { ...comm, sender: { ...comm.sender, reference: sender }, sent: new Date().toISOString() };
    let header: Communication | undefined;
    if (kind === 'header') {
      await this.prepareHeader(tx, message, subject, fromPatientSide);
    } else if (kind === 'message') {
      header = await this.threadOf(tx, ctx, comm, subject);
      await this.prepareMessage(tx, message, header, subject, fromPatientSide);
    } else {
      message.status = 'completed';
      requireRecipients(message);
    }
    const urgent = kind === 'message' && fromPatientSide && this.options.urgency.isUrgent(textsOf(message));
    if (urgent) {
      message.priority = 'urgent';
    }
    return { message, kind, header, sender: sender!, actor: actor ?? ctx.clientId ?? 'unknown', onBehalfOf, urgent, fromPatientSide };
  }

  private async prepareHeader(tx: Queryable, header: Communication, subject: string, fromPatientSide: boolean): Promise<void> {
    if (header.inResponseTo?.length) {
      throw unprocessable('A thread header does not answer a message', ['Communication.inResponseTo']);
    }
    requireRecipients(header);
    if (fromPatientSide) {
      const category = header.category?.flatMap((c) => c.coding ?? []).find((c) => c.system === MESSAGE_CATEGORY_SYSTEM);
      if (!category?.code || !PATIENT_CATEGORIES[category.code]) {
        throw unprocessable(`A new thread needs a category from ${MESSAGE_CATEGORY_SYSTEM}: ${Object.keys(PATIENT_CATEGORIES).join(', ')}`, [
          'Communication.category',
        ]);
      }
      await this.checkRecipients(tx, header, subject);
    }
    header.status = 'in-progress';
    header.meta = { ...header.meta, tag: [...(header.meta?.tag ?? []).filter((t) => t.code !== THREAD_TAG.code), THREAD_TAG] };
  }

  private async prepareMessage(tx: Queryable, message: Communication, header: Communication, subject: string, fromPatientSide: boolean): Promise<void> {
    if (fromPatientSide && header.status !== 'in-progress') {
      throw unprocessable('This thread is closed; start a new thread', ['Communication.partOf']);
    }
    const answered = message.inResponseTo?.[0]?.reference;
    if (answered && answered !== `Communication/${header.id}`) {
      const rows = await tx.query(`SELECT 1 FROM "Communication" WHERE id = $1 AND r_part_of @> ARRAY[$2::text] AND NOT deleted`, [
        answered.replace(/^Communication\//, ''),
        `Communication/${header.id}`,
      ]);
      if (!rows.length) {
        throw unprocessable('inResponseTo must name a message of the same thread', ['Communication.inResponseTo']);
      }
    }
    if (!message.recipient?.length) {
      message.recipient = fromPatientSide ? header.recipient : (defaultPatientSide(header, subject) as Communication['recipient']);
    } else if (fromPatientSide) {
      await this.checkRecipients(tx, message, subject);
    }
    message.category ??= header.category;
    message.topic ??= header.topic;
    message.status = 'completed';
    message.meta = withLabels(message, confidentialityOf(header)).meta;
  }

  private async threadOf(tx: Queryable, ctx: AccessContext, comm: Communication, subject: string): Promise<Communication> {
    const reference = comm.partOf![0].reference ?? '';
    const id = reference.replace(/^Communication\//, '');
    // Held until the message commits: a thread being closed (by staff or by the auto-close)
    // at this moment either closes first, and this message is refused, or waits and sees it.
    const rows = await tx.query(`SELECT content, deleted, compartments FROM "Communication" WHERE id = $1 FOR KEY SHARE`, [id]);
    const header = rows[0] && !rows[0].deleted ? (JSON.parse(rows[0].content) as Communication) : undefined;
    const labels = (header?.meta?.security ?? []).map((c) => `${c.system ?? ''}|${c.code ?? ''}`);
    // A thread the writer may not see (another patient's; a confidential one, for a proxy)
    // gets the very answer a missing one does: any other would reveal that it exists, and a
    // message in it would carry its topic to the writer.
    if (
      !header ||
      !reference.startsWith('Communication/') ||
      !hasTag(header, THREAD_TAG) ||
      header.subject?.reference !== subject ||
      !canSee(ctx, 'Communication', rows[0].compartments ?? [], labels)
    ) {
      throw unprocessable('partOf must name the header of an existing thread about the same patient', ['Communication.partOf']);
    }
    return header;
  }

  private async checkRecipients(tx: Queryable, comm: Communication, subject: string): Promise<void> {
    const recipients = (comm.recipient ?? []).map((r) => r.reference ?? '');
    const allowed = await allowedRecipients(tx, subject, recipients);
    const refused = recipients.filter((r) => !allowed.has(r));
    if (refused.length) {
      throw unprocessable(
        `Messages can go only to the patient's care team (practitioners with a visit or care-team link) and practice pools; not allowed: ${refused.join(', ')}`,
        ['Communication.recipient']
      );
    }
  }

  /** The emergency guidance, itself a message in the thread, sent the moment it is needed. */
  private async autoReply(tx: Queryable, message: Communication, header: Communication): Promise<void> {
    const reply: Communication = {
      resourceType: 'Communication',
      meta: { tag: [AUTO_REPLY_TAG], ...(confidentialityOf(header).length ? { security: confidentialityOf(header) } : {}) },
      status: 'completed',
      priority: 'urgent',
      partOf: [{ reference: `Communication/${header.id}` }],
      inResponseTo: [{ reference: `Communication/${message.id}` }],
      subject: header.subject,
      topic: header.topic,
      category: header.category,
      sender: { reference: AUTO_REPLY_SENDER, display: 'Automatic reply' },
      recipient: [message.sender as NonNullable<Communication['recipient']>[number]],
      sent: new Date().toISOString(),
      payload: [{ contentString: URGENT_AUTO_REPLY }],
    };
    const system = systemContext();
    const result = await this.store.create(system, reply, 'Communication', { tx, id: randomUUID() });
    const stored = JSON.parse(result.stored.content) as Communication;
    await this.effects.recorded(tx, system, stored, {
      message: stored,
      kind: 'message',
      header,
      sender: AUTO_REPLY_SENDER,
      actor: AUTO_REPLY_SENDER,
      urgent: false,
      fromPatientSide: false,
      autoReply: true,
    });
  }

  /** Identities (self, roles, pools) of a practitioner, for inbox and receipts. */
  identities(tx: Queryable, practitioner: string): Promise<string[]> {
    return identitiesOf(tx, practitioner);
  }
}

export interface PreparedMessage {
  message: Communication;
  kind: Kind;
  header?: Communication;
  sender: string;
  /** Who acted (the signed-in user, or the client). */
  actor: string;
  onBehalfOf?: string;
  urgent: boolean;
  fromPatientSide: boolean;
  autoReply?: boolean;
}

function kindOf(comm: Communication): Kind {
  if (comm.partOf?.length) {
    return 'message';
  }
  return comm.payload?.length ? 'standalone' : 'header';
}

function requireRecipients(comm: Communication): void {
  if (!comm.recipient?.length || comm.recipient.some((r) => !r.reference)) {
    throw unprocessable('A message needs recipients (references)', ['Communication.recipient']);
  }
}

/** A provider's reply goes to the patient, and to the representative who started the thread. */
function defaultPatientSide(header: Communication, subject: string): Reference[] {
  const starter = header.sender?.reference;
  const recipients: Reference[] = [{ reference: subject }];
  if (starter?.startsWith('RelatedPerson/')) {
    recipients.push({ reference: starter });
  }
  return recipients;
}

function textsOf(comm: Communication): string[] {
  return [comm.topic?.text, ...(comm.payload ?? []).map((p) => p.contentString)].filter((t): t is string => typeof t === 'string');
}

export function hasTag(resource: { meta?: { tag?: { system?: string; code?: string }[] } }, tag: { system: string; code: string }): boolean {
  return (resource.meta?.tag ?? []).some((t) => t.system === tag.system && t.code === tag.code);
}

export { notFound };
