/**
 * The audit trail: every interaction becomes an AuditEvent resource (who, what, action,
 * outcome, when, from where). Writes record their event inside their own transaction, so a
 * change and its audit entry commit together. Reads and searches, which change nothing,
 * queue theirs and a flusher writes them in batches moments later (flushed on shutdown),
 * keeping the cost on the read path to building one object.
 */
import { randomUUID } from 'node:crypto';
import type { AuditEvent } from '@medplum/fhirtypes';
import type { AccessContext } from '../access.js';
import type { Database, Queryable } from '../db/database.js';
import { typeCatalog } from '../search/catalog.js';
import { indexResource, writeVersion } from '../store/rows.js';

export type Interaction =
  | 'read'
  | 'vread'
  | 'update'
  | 'patch'
  | 'delete'
  | 'history-instance'
  | 'history-type'
  | 'create'
  | 'search-type'
  | 'batch'
  | 'transaction'
  | 'operation'
  | SecurityInteraction;

/** Events of the authorization server. */
export type SecurityInteraction = 'login' | 'launch' | 'token' | 'revoke';

const SECURITY_INTERACTIONS = new Set<string>(['login', 'launch', 'token', 'revoke']);

/** CareThread's CodeSystem for authorization-server events. */
export const SECURITY_EVENT_SYSTEM = 'https://carethread.dev/fhir/CodeSystem/security-event';

const ACTIONS: Record<Interaction, AuditEvent['action']> = {
  read: 'R',
  vread: 'R',
  'history-instance': 'R',
  'history-type': 'R',
  'search-type': 'E',
  create: 'C',
  update: 'U',
  patch: 'U',
  delete: 'D',
  batch: 'E',
  transaction: 'E',
  operation: 'E',
  login: 'E',
  launch: 'E',
  token: 'E',
  revoke: 'E',
};

/** Outcome codes of AuditEvent: success, minor failure (the client's), serious failure (ours). */
export type AuditOutcome = '0' | '4' | '8';

export interface AuditRecord {
  interaction: Interaction;
  /** `Type` or `Type/id` the interaction concerned. */
  target?: string;
  /** Patients whose data was involved (`Patient/id`). */
  patients?: string[];
  outcome: AuditOutcome;
  /** A short, PHI-free description (e.g. the HTTP status of a failure). */
  detail?: string;
}

export interface AuditLogOptions {
  fhirBaseUrl: string;
  /** How long queued entries may wait before they are written. */
  flushIntervalMs?: number;
  /** Queue length that triggers an immediate flush. */
  flushSize?: number;
}

export class AuditLog {
  private queue: AuditEvent[] = [];
  private timer: NodeJS.Timeout | undefined;
  private flushing: Promise<void> = Promise.resolve();

  constructor(
    private readonly db: Database,
    private readonly options: AuditLogOptions
  ) {}

  /** Builds the AuditEvent for an interaction by `ctx`. */
  event(ctx: AccessContext, record: AuditRecord, recorded = new Date().toISOString()): AuditEvent {
    const agentWho = ctx.fhirUser ? { reference: ctx.fhirUser } : { display: ctx.clientId ?? 'anonymous' };
    const entity: NonNullable<AuditEvent['entity']> = [];
    if (record.target) {
      entity.push(
        record.target.includes('/')
          ? { what: { reference: record.target }, type: domainResource }
          : { what: { display: record.target }, type: domainResource }
      );
    }
    for (const patient of record.patients ?? []) {
      if (patient !== record.target) {
        entity.push({ what: { reference: patient }, type: patientEntity, role: patientRole });
      }
    }
    return {
      resourceType: 'AuditEvent',
      id: randomUUID(),
      meta: { versionId: '1', lastUpdated: recorded },
      ...(SECURITY_INTERACTIONS.has(record.interaction)
        ? {
            type: { system: 'http://dicom.nema.org/resources/ontology/DCM', code: '110114', display: 'User Authentication' },
            subtype: [{ system: SECURITY_EVENT_SYSTEM, code: record.interaction }],
          }
        : {
            type: { system: 'http://terminology.hl7.org/CodeSystem/audit-event-type', code: 'rest', display: 'RESTful Operation' },
            subtype: [{ system: 'http://hl7.org/fhir/restful-interaction', code: record.interaction }],
          }),
      action: ACTIONS[record.interaction],
      recorded,
      outcome: record.outcome,
      ...(record.detail ? { outcomeDesc: record.detail } : {}),
      agent: [
        {
          who: agentWho,
          requestor: true,
          ...(ctx.clientId ? { name: ctx.clientId } : {}),
          ...(ctx.address ? { network: { address: ctx.address, type: '2' as const } } : {}),
        },
      ],
      source: { observer: { display: 'CareThread' }, type: [{ system: 'http://terminology.hl7.org/CodeSystem/security-source-type', code: '4' }] },
      ...(entity.length ? { entity } : {}),
    };
  }

  /** Writes the event inside the caller's transaction. */
  async write(tx: Queryable, ctx: AccessContext, record: AuditRecord): Promise<void> {
    await this.insert(tx, this.event(ctx, record));
  }

  /** Queues the event; it is written within the flush interval. */
  enqueue(ctx: AccessContext, record: AuditRecord): void {
    this.queue.push(this.event(ctx, record));
    if (this.queue.length >= (this.options.flushSize ?? 200)) {
      void this.flush();
    } else if (!this.timer) {
      this.timer = setTimeout(() => void this.flush(), this.options.flushIntervalMs ?? 50);
    }
  }

  /** Writes everything queued so far. */
  flush(): Promise<void> {
    clearTimeout(this.timer);
    this.timer = undefined;
    const batch = this.queue;
    this.queue = [];
    this.flushing = this.flushing.then(async () => {
      if (!batch.length) {
        return;
      }
      try {
        await this.db.transaction(async (tx) => {
          if (this.db.engine === 'postgres') {
            // Read audits are written after the response; waiting for the WAL flush buys nothing.
            await tx.query('SET LOCAL synchronous_commit = off');
          }
          for (const event of batch) {
            await this.insert(tx, event);
          }
        });
      } catch {
        // The database is unavailable: keep the entries and try again on the next flush.
        this.queue.unshift(...batch);
        this.timer ??= setTimeout(() => void this.flush(), 1000);
      }
    });
    return this.flushing;
  }

  async close(): Promise<void> {
    await this.flush();
    await this.flushing;
  }

  private async insert(tx: Queryable, event: AuditEvent): Promise<void> {
    const content = JSON.stringify(event);
    const catalog = typeCatalog('AuditEvent');
    await writeVersion(
      tx,
      catalog,
      { id: event.id!, version: 1, lastUpdated: event.recorded, deleted: false, content },
      indexResource(catalog, event, this.options.fhirBaseUrl)
    );
  }
}

const domainResource = { system: 'http://terminology.hl7.org/CodeSystem/audit-entity-type', code: '2', display: 'System Object' };
const patientEntity = { system: 'http://terminology.hl7.org/CodeSystem/audit-entity-type', code: '1', display: 'Person' };
const patientRole = { system: 'http://terminology.hl7.org/CodeSystem/object-role', code: '1', display: 'Patient' };
