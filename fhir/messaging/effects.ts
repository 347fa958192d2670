/**
 * What every message brings with it, inside the message's transaction: its Provenance, the
 * thread's Task (opened when a patient starts a thread, due by category in business days;
 * raised to urgent; completed when its owner replies; reopened when the patient writes
 * again), PHI-free notifications to the patient side, and the outbox entries that deliver
 * it to the EHR's chart and to subscribers.
 */
import { EventEmitter } from 'node:events';
import type { Communication, Provenance, Task } from '@medplum/fhirtypes';
import type { AccessContext } from '../access.js';
import { systemContext } from '../access.js';
import type { HolidayCalendar } from '../calendar/business-days.js';
import type { Queryable } from '../db/database.js';
import { enqueue } from '../outbox/outbox.js';
import type { ResourceStore } from '../store/store.js';
import { identitiesOf } from './care-team.js';
import { CANONICAL_BASE, MESSAGE_ACTIVITY_SYSTEM, MESSAGE_CATEGORY_SYSTEM, PATIENT_CATEGORIES } from './codes.js';
import type { PreparedMessage } from './messages.js';

export const TASK_CODE = { system: `${CANONICAL_BASE}/task-code`, code: 'respond', display: 'Respond to the patient’s message' };

export interface EffectsOptions {
  calendar: HolidayCalendar;
  /** Deliver every message and its Provenance to the EHR's FHIR server. */
  ehrDelivery: boolean;
  /** Finds the subscriptions a new resource matches and queues their notifications. */
  subscriptions?: (tx: Queryable, type: string, id: string, version: string) => Promise<void>;
}

export class MessageEffects {
  /** 'committed' after a transaction that queued deliveries; 'resource' with {type, id} per new message. */
  readonly events = new EventEmitter();
  private pending: { type: string; id: string }[] = [];

  constructor(
    private readonly store: ResourceStore,
    private readonly options: EffectsOptions
  ) {}

  async recorded(tx: Queryable, ctx: AccessContext, message: Communication, prepared: PreparedMessage): Promise<void> {
    const activity = prepared.kind === 'message' && !prepared.fromPatientSide && !prepared.autoReply ? 'reply' : message.inResponseTo?.length ? 'reply' : 'create';
    const recorded = message.sent ?? message.meta?.lastUpdated ?? new Date().toISOString();
    const provenance = await this.provenance(tx, ctx, message, { activity, author: prepared.actor, onBehalfOf: prepared.onBehalfOf, recorded });
    if (!prepared.autoReply) {
      await this.updateTask(tx, message, prepared);
    }
    await this.notifyPatientSide(tx, message);
    const thread = prepared.header?.id ?? message.id!;
    // What an integrating system (the EHR itself, typically) wrote is already in its chart:
    // sending it back would file a duplicate.
    if (this.options.ehrDelivery && ctx.role !== 'client') {
      for (const [type, id] of [
        ['Communication', message.id!],
        ['Provenance', provenance],
      ]) {
        await enqueue(tx, { kind: 'ehr', idempotencyKey: `ehr:${type}/${id}`, orderingKey: `thread:${thread}`, payload: { type, id }, subject: `${type}/${id}` });
      }
    }
    await this.options.subscriptions?.(tx, 'Communication', message.id!, message.meta?.versionId ?? '1');
    this.pending.push({ type: 'Communication', id: message.id! });
  }

  /** Called after the transaction committed: wake the outbox and tell live listeners. */
  committed(): void {
    const resources = this.pending;
    this.pending = [];
    this.events.emit('committed');
    for (const resource of resources) {
      this.events.emit('resource', resource);
    }
  }

  async provenance(
    tx: Queryable,
    ctx: AccessContext,
    message: Communication,
    details: { activity: 'create' | 'reply' | 'forward'; author: string; onBehalfOf?: string; recorded: string }
  ): Promise<string> {
    const agent: Provenance['agent'][number] = {
      type: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/provenance-participant-type', code: 'author', display: 'Author' }] },
      who: details.author.includes('/') ? { reference: details.author } : { display: details.author },
      ...(details.onBehalfOf ? { onBehalfOf: { reference: details.onBehalfOf } } : {}),
    };
    const provenance: Provenance = {
      resourceType: 'Provenance',
      target: [{ reference: `Communication/${message.id}` }, ...(message.subject ? [message.subject] : [])],
      recorded: details.recorded,
      activity: { coding: [{ system: MESSAGE_ACTIVITY_SYSTEM, code: details.activity }] },
      agent: [agent],
    };
    const result = await this.store.create(withRequest(ctx), provenance, 'Provenance', { tx });
    return result.stored.id;
  }

  private async updateTask(tx: Queryable, message: Communication, prepared: PreparedMessage): Promise<void> {
    const system = withRequest(systemContext());
    if (prepared.kind === 'header' && prepared.fromPatientSide) {
      const category = message.category?.flatMap((c) => c.coding ?? []).find((c) => c.system === MESSAGE_CATEGORY_SYSTEM)?.code ?? 'medical-question';
      const pool = message.recipient?.[0]?.reference;
      const task: Task = {
        resourceType: 'Task',
        status: 'requested',
        intent: 'order',
        priority: 'routine',
        code: { coding: [TASK_CODE] },
        focus: { reference: `Communication/${message.id}` },
        for: message.subject,
        authoredOn: message.sent ?? message.meta?.lastUpdated,
        requester: message.sender as Task['requester'],
        // A Group pool cannot own a Task: the thread waits in the pool until someone claims it.
        ...(pool?.startsWith('Group/') ? {} : { owner: message.recipient?.[0] as Task['owner'] }),
        restriction: {
          period: { end: this.dueTime(message.sent ?? new Date().toISOString(), category) },
          recipient: (message.recipient ?? []).filter((r) => !r.reference?.startsWith('CareTeam/')) as NonNullable<Task['restriction']>['recipient'],
        },
      };
      await this.store.create(system, task, 'Task', { tx });
      return;
    }
    if (prepared.kind !== 'message' || !prepared.header) {
      return;
    }
    const rows = await tx.query(`SELECT id, content FROM "Task" WHERE r_focus @> ARRAY[$1::text] AND NOT deleted LIMIT 1`, [`Communication/${prepared.header.id}`]);
    if (!rows.length) {
      return;
    }
    const task = JSON.parse(rows[0].content) as Task;
    // The practitioner who answered: the signed-in one, or the sender of a reply an
    // integrating EHR writes as it is in its chart (acting client, sender as on-behalf-of).
    const replier = prepared.actor.startsWith('Practitioner/') ? prepared.actor : prepared.onBehalfOf;
    let changed = false;
    if (prepared.fromPatientSide) {
      // A cancelled Task (its thread closed, then reopened by staff) is work again too.
      if (task.status === 'completed' || task.status === 'cancelled') {
        const category = prepared.header.category?.flatMap((c) => c.coding ?? []).find((c) => c.system === MESSAGE_CATEGORY_SYSTEM)?.code;
        task.status = 'requested';
        delete task.statusReason;
        task.restriction = { ...task.restriction, period: { end: this.dueTime(message.sent ?? new Date().toISOString(), category ?? 'medical-question') } };
        changed = true;
      }
      if (prepared.urgent && task.priority !== 'urgent') {
        task.priority = 'urgent';
        changed = true;
      }
    } else if (task.status !== 'completed' && replier?.startsWith('Practitioner/')) {
      const owner = task.owner?.reference;
      const mine = await identitiesOf(tx, replier);
      const pools = (task.restriction?.recipient ?? []).map((r) => r.reference ?? '');
      if (owner ? mine.includes(owner) || owner === prepared.onBehalfOf : pools.some((p) => mine.includes(p))) {
        task.status = 'completed';
        task.lastModified = message.sent;
        changed = true;
      }
    }
    if (changed) {
      await this.store.update(system, task, 'Task', task.id!, { tx });
    }
  }

  /** The end of the business day the reply is due on (UTC days). */
  private dueTime(sent: string, category: string): string {
    const days = PATIENT_CATEGORIES[category]?.dueBusinessDays ?? 2;
    return `${this.options.calendar.addBusinessDays(sent.slice(0, 10), days)}T23:59:59Z`;
  }

  /** One notice per patient-side recipient; the address and channel are looked up at delivery. */
  private async notifyPatientSide(tx: Queryable, message: Communication): Promise<void> {
    for (const recipient of message.recipient ?? []) {
      const reference = recipient.reference ?? '';
      if (reference.startsWith('Patient/') || reference.startsWith('RelatedPerson/')) {
        await enqueue(tx, {
          kind: 'notify',
          idempotencyKey: `notify:Communication/${message.id}:${reference}`,
          payload: { recipient: reference, reason: 'message' },
          subject: `Communication/${message.id}`,
        });
      }
    }
  }
}

/** Side records are written by CareThread itself, under the request's id and address. */
function withRequest(ctx: AccessContext): AccessContext {
  return { ...systemContext(ctx.requestId), address: ctx.address };
}
