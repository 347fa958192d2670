/**
 * The provider's side of messaging: read receipts (the first time a recipient opens a
 * message, `received` is set and the read is audited), the inbox (open threads addressed to
 * them or their pools, unread first, with counts), and response-time figures per provider
 * and pool.
 */
import type { Communication } from '@medplum/fhirtypes';
import type { AccessContext } from '../access.js';
import { systemContext } from '../access.js';
import type { AuditLog } from '../audit/audit-log.js';
import type { Database } from '../db/database.js';
import { forbidden } from '../errors.js';
import type { ResourceStore, StoredResource } from '../store/store.js';
import { identitiesOf } from './care-team.js';
import { THREAD_TAG } from './codes.js';

const THREAD = `${THREAD_TAG.system}|${THREAD_TAG.code}`;

export interface InboxThread {
  id: string;
  content: string;
  unread: number;
  messages: number;
  lastSent: string | null;
  urgent: boolean;
  due: string | null;
  owner: string | null;
}

export class Inbox {
  constructor(
    private readonly db: Database,
    private readonly store: ResourceStore,
    private readonly audit: AuditLog
  ) {}

  /** Reads a message; a recipient's first read sets `received` and is recorded. */
  async read(ctx: AccessContext, id: string): Promise<StoredResource> {
    const stored = await this.store.read(ctx, 'Communication', id);
    if (ctx.system || ctx.role === 'client' || ctx.role === 'auditor' || !ctx.fhirUser) {
      return stored;
    }
    const message = JSON.parse(stored.content) as Communication;
    if (message.received || !message.recipient?.length || message.meta?.tag?.some((t) => t.system === THREAD_TAG.system && t.code === THREAD_TAG.code)) {
      return stored;
    }
    const mine = ctx.fhirUser.startsWith('Practitioner/') ? await identitiesOf(this.db, ctx.fhirUser) : [ctx.fhirUser];
    if (!message.recipient.some((r) => r.reference && mine.includes(r.reference))) {
      return stored;
    }
    return this.store.transaction(async (tx) => {
      const current = await tx.query(`SELECT content FROM "Communication" WHERE id = $1 FOR UPDATE`, [id]);
      const latest = JSON.parse(current[0].content) as Communication;
      if (latest.received) {
        return stored;
      }
      const updated = { ...latest, received: new Date().toISOString() };
      const result = await this.store.update(systemContext(ctx.requestId), updated, 'Communication', id, { tx });
      await this.audit.write(tx, ctx, {
        interaction: 'read',
        target: `Communication/${id}`,
        patients: latest.subject?.reference ? [latest.subject.reference] : [],
        outcome: '0',
        detail: 'read receipt: first read by a recipient',
      });
      return result.stored;
    });
  }

  /** Open threads addressed to the practitioner or their pools: unread first, then latest. */
  async threadsFor(ctx: AccessContext, practitioner: string, options: { category?: string; pool?: string; count: number }): Promise<InboxThread[]> {
    if (!ctx.system && ctx.fhirUser !== practitioner && ctx.role !== 'client') {
      throw forbidden('An inbox is shown to its own practitioner');
    }
    let mine = await identitiesOf(this.db, practitioner);
    if (options.pool) {
      mine = mine.filter((r) => r === options.pool);
    }
    const params: unknown[] = [mine, [THREAD], options.count];
    let categoryFilter = '';
    if (options.category) {
      params.push([options.category]);
      categoryFilter = `AND h.t_category && $${params.length}::text[]`;
    }
    const rows = await this.db.query(
      `SELECT h.id, h.content, t.content AS task,
              count(m.id) AS messages,
              count(m.id) FILTER (WHERE m.d_received_lo IS NULL AND m.r_recipient && $1::text[]) AS unread,
              max(m.d_sent_lo) AS last_sent
         FROM "Communication" h
         LEFT JOIN "Communication_by_part_of_sent" x ON x.target = 'Communication/' || h.id
         LEFT JOIN "Communication" m ON m.id = x.id AND NOT m.deleted
         LEFT JOIN LATERAL (SELECT content FROM "Task" WHERE r_focus @> ARRAY['Communication/' || h.id] AND NOT deleted LIMIT 1) t ON true
        WHERE NOT h.deleted AND h.r_recipient && $1::text[] AND h.t__tag && $2::text[] AND h.t_status && ARRAY['in-progress'] ${categoryFilter}
        GROUP BY h.id, h.content, t.content
        ORDER BY (count(m.id) FILTER (WHERE m.d_received_lo IS NULL AND m.r_recipient && $1::text[]) > 0) DESC,
                 max(m.d_sent_lo) DESC NULLS LAST, h.id
        LIMIT $3`,
      params
    );
    return rows.map((r) => {
      const task = r.task ? JSON.parse(r.task) : undefined;
      return {
        id: r.id,
        content: r.content,
        unread: Number(r.unread),
        messages: Number(r.messages),
        lastSent: r.last_sent,
        urgent: task?.priority === 'urgent',
        due: task?.restriction?.period?.end ?? null,
        owner: task?.owner?.reference ?? null,
      };
    });
  }

  /**
   * The practice pools a practitioner belongs to (Groups, and CareTeams about no one patient),
   * with their names: what their inbox can be filtered by and threads forwarded to. A pool
   * has no patient, so the practitioner's own searches, confined to their patients, miss it.
   */
  async poolsOf(practitioner: string): Promise<{ reference: string; name?: string }[]> {
    const pools = (await identitiesOf(this.db, practitioner)).filter((r) => r.startsWith('CareTeam/') || r.startsWith('Group/'));
    const ids = (type: string) => pools.filter((r) => r.startsWith(`${type}/`)).map((r) => r.slice(type.length + 1));
    const rows = await this.db.query(
      `SELECT 'CareTeam/' || id AS reference, content FROM "CareTeam" WHERE id = ANY($1::text[]) AND r_subject IS NULL AND NOT deleted
       UNION ALL SELECT 'Group/' || id, content FROM "Group" WHERE id = ANY($2::text[]) AND NOT deleted
       ORDER BY 1`,
      [ids('CareTeam'), ids('Group')]
    );
    return rows.map((r) => ({ reference: r.reference, name: (JSON.parse(r.content) as { name?: string }).name }));
  }

  /**
   * Per provider or pool: messages received from the patient side, median and 90th
   * percentile time to the first reply (hours), and open threads past due.
   */
  async responseTimes(since: string, until: string): Promise<Record<string, unknown>[]> {
    const rows = await this.db.query(
      `WITH patient_messages AS (
         SELECT m.id, m.d_sent_lo AS sent, m.r_part_of[1] AS thread, unnest(m.r_recipient) AS recipient
           FROM "Communication" m
          WHERE NOT m.deleted AND m.r_part_of IS NOT NULL AND m.d_sent_lo >= $1::timestamptz AND m.d_sent_lo < $2::timestamptz
            AND EXISTS (SELECT 1 FROM unnest(m.r_sender) s WHERE s LIKE 'Patient/%' OR s LIKE 'RelatedPerson/%')
       ), first_replies AS (
         SELECT p.recipient, p.id, (
           SELECT min(r.d_sent_lo) FROM "Communication_by_part_of_sent" x JOIN "Communication" r ON r.id = x.id
            WHERE x.target = p.thread AND x.sort > p.sent AND NOT r.deleted
              AND EXISTS (SELECT 1 FROM unnest(r.r_sender) s WHERE s LIKE 'Practitioner/%' OR s LIKE 'PractitionerRole/%')
         ) AS replied, p.sent
         FROM patient_messages p
       )
       SELECT recipient, count(*) AS received,
              percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM replied - sent)) FILTER (WHERE replied IS NOT NULL) AS median_seconds,
              percentile_cont(0.9) WITHIN GROUP (ORDER BY extract(epoch FROM replied - sent)) FILTER (WHERE replied IS NOT NULL) AS p90_seconds,
              count(*) FILTER (WHERE replied IS NULL) AS unanswered
         FROM first_replies GROUP BY recipient ORDER BY recipient`,
      [since, until]
    );
    const overdue = await this.db.query(
      `SELECT o AS owner, count(*) AS past_due FROM "Task" t, unnest(COALESCE(t.r_owner, '{}')) o
        WHERE NOT t.deleted AND t.t_status && ARRAY['requested', 'accepted', 'in-progress']
          AND (t.content::jsonb #>> '{restriction,period,end}')::timestamptz < now()
        GROUP BY o`
    );
    const pastDue = new Map(overdue.map((r) => [r.owner as string, Number(r.past_due)]));
    return rows.map((r) => ({
      recipient: r.recipient,
      received: Number(r.received),
      medianHoursToFirstReply: r.median_seconds === null ? null : round(Number(r.median_seconds) / 3600),
      p90HoursToFirstReply: r.p90_seconds === null ? null : round(Number(r.p90_seconds) / 3600),
      unanswered: Number(r.unanswered),
      openPastDue: pastDue.get(r.recipient) ?? 0,
    }));
  }
}

function round(value: number): number {
  return Math.round(value * 100) / 100;
}
