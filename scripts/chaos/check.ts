/**
 * The invariants a chaos run checks, read straight from the database once the outbox has
 * drained: every acknowledged message is there whole (Communication, Provenance, the Task of
 * a thread a patient started, its create AuditEvent, its outbox entries), every other
 * request is whole or absent, never half-written, and every delivery reached its receiver,
 * a repeat only where a crash or dropped connection fell between sending it and recording
 * it sent (at most one per fault, carrying the same identity so the receiver can tell).
 */
import type { Queryable } from '../../fhir/db/database.js';
import { noticeToken } from '../../fhir/notifications/notice.js';
import { CHAOS_IDENTIFIER_SYSTEM } from './load.js';
import type { SentRequest } from './load.js';
import type { Receivers } from './receivers.js';

export interface ChaosCounts {
  requests: number;
  ok: number;
  refused: number;
  /** The statuses of the refused requests, e.g. `{ 500: 2 }`. */
  refusedStatuses: Record<string, number>;
  unanswered: number;
  /** Of the refused and unanswered, how many were stored whole anyway (committed, answer lost). */
  storedWithoutOk: number;
  deliveriesExpected: number;
  deliveriesArrived: number;
  /** Deliveries that arrived more than once (extra copies in all). */
  duplicated: number;
  outboxNotDelivered: number;
}

export interface ChaosCheck {
  counts: ChaosCounts;
  violations: string[];
}

const MAIL_DOMAIN = 'carethread.invalid';

/** Without `receivers` (PGlite runs) only what is stored is checked, not what was delivered. */
export async function checkInvariants(db: Queryable, sent: SentRequest[], receivers: Receivers | undefined, faults: number): Promise<ChaosCheck> {
  const violations: string[] = [];
  const byKey = new Map<string, string[]>();
  const versions = new Map<string, string>();
  for (const row of await db.query<{ id: string; content: string }>(`SELECT id, content FROM "Communication"`)) {
    const resource = JSON.parse(row.content) as { identifier?: { system?: string; value?: string }[]; meta?: { versionId?: string } };
    const key = resource.identifier?.find((i) => i.system === CHAOS_IDENTIFIER_SYSTEM)?.value;
    versions.set(row.id, resource.meta?.versionId ?? '1');
    if (key) {
      byKey.set(key, [...(byKey.get(key) ?? []), row.id]);
    }
  }
  const count = (map: Map<string, number>, key: string) => map.set(key, (map.get(key) ?? 0) + 1);
  const provenances = new Map<string, number>();
  for (const row of await db.query<{ content: string }>(`SELECT content FROM "Provenance"`)) {
    for (const target of (JSON.parse(row.content) as { target?: { reference?: string }[] }).target ?? []) {
      if (target.reference?.startsWith('Communication/')) {
        count(provenances, target.reference);
      }
    }
  }
  const tasks = new Map<string, number>();
  for (const row of await db.query<{ content: string }>(`SELECT content FROM "Task"`)) {
    const focus = (JSON.parse(row.content) as { focus?: { reference?: string } }).focus?.reference;
    if (focus) {
      count(tasks, focus);
    }
  }
  const audits = new Map<string, number>();
  for (const row of await db.query<{ content: string }>(`SELECT content FROM "AuditEvent" WHERE content LIKE '%"Communication/%' AND content LIKE '%"code":"create"%'`)) {
    const event = JSON.parse(row.content) as { entity?: { what?: { reference?: string } }[]; subtype?: { code?: string }[] };
    if (event.subtype?.some((s) => s.code === 'create')) {
      const target = event.entity?.[0]?.what?.reference;
      if (target?.startsWith('Communication/')) {
        count(audits, target);
      }
    }
  }
  const outbox = await db.query<{ kind: string; idempotency_key: string; status: string; subject: string | null }>(`SELECT kind, idempotency_key, status, subject FROM outbox`);
  const entries = new Map<string, { kind: string; key: string }[]>();
  for (const row of outbox) {
    const subject = row.kind === 'rest-hook' ? `Communication/${/:Communication\/([^/]+)\//.exec(row.idempotency_key)?.[1]}` : row.subject ?? '';
    entries.set(subject, [...(entries.get(subject) ?? []), { kind: row.kind, key: row.idempotency_key }]);
  }

  let storedWithoutOk = 0;
  for (const request of sent) {
    const ids = byKey.get(request.key) ?? [];
    if (ids.length > 1) {
      violations.push(`${request.kind} ${request.key}: stored ${ids.length} times`);
      continue;
    }
    if (!ids.length) {
      if (request.outcome === 'ok') {
        violations.push(`${request.kind} ${request.key}: answered ${request.status} but not stored`);
      }
      continue;
    }
    const reference = `Communication/${ids[0]}`;
    if (request.outcome === 'ok' && request.id !== ids[0]) {
      violations.push(`${request.kind} ${request.key}: answered with id ${request.id}, stored as ${ids[0]}`);
    }
    if (request.outcome !== 'ok') {
      storedWithoutOk++;
    }
    const missing: string[] = [];
    if (provenances.get(reference) !== 1) {
      missing.push(`${provenances.get(reference) ?? 0} Provenance`);
    }
    if (request.kind === 'header' && tasks.get(reference) !== 1) {
      missing.push(`${tasks.get(reference) ?? 0} Task`);
    }
    if (audits.get(reference) !== 1) {
      missing.push(`${audits.get(reference) ?? 0} create AuditEvent`);
    }
    const queued = entries.get(reference) ?? [];
    if (receivers && queued.filter((e) => e.kind === 'rest-hook').length !== 1) {
      missing.push(`${queued.filter((e) => e.kind === 'rest-hook').length} rest-hook outbox entries`);
    }
    const notices = queued.filter((e) => e.kind === 'notify').length;
    if (notices !== (request.kind === 'reply' ? 1 : 0)) {
      missing.push(`${notices} notify outbox entries`);
    }
    if (missing.length) {
      violations.push(`${request.kind} ${request.key} (${request.outcome}): half-written: ${missing.join(', ')}`);
    }
  }

  // Deliveries: every outbox entry of a chaos message reached its receiver.
  const expected: { kind: string; identity: string }[] = [];
  let outboxNotDelivered = 0;
  for (const row of receivers ? outbox : []) {
    if (row.status !== 'delivered') {
      outboxNotDelivered++;
      violations.push(`outbox ${row.idempotency_key}: ${row.status}, not delivered`);
    }
    if (row.kind === 'notify') {
      expected.push({ kind: 'e-mail', identity: `${noticeToken(row.idempotency_key)}@${MAIL_DOMAIN}` });
    } else if (row.kind === 'rest-hook') {
      const [, id, version] = /:Communication\/([^/]+)\/(\d+)$/.exec(row.idempotency_key) ?? [];
      expected.push({ kind: 'rest-hook', identity: `Communication/${id}/_history/${version ?? versions.get(id)}` });
    }
  }
  let arrived = 0;
  let duplicated = 0;
  for (const { kind, identity } of expected) {
    const n = (kind === 'e-mail' ? receivers!.mails : receivers!.hooks).get(identity) ?? 0;
    if (n === 0) {
      violations.push(`${kind} ${identity}: never arrived`);
    } else {
      arrived++;
      duplicated += n - 1;
    }
  }
  const known = new Set(expected.map((e) => e.identity));
  for (const identity of receivers ? [...receivers.mails.keys(), ...receivers.hooks.keys()] : []) {
    if (!known.has(identity)) {
      violations.push(`delivery ${identity}: arrived but was never queued`);
    }
  }
  if (duplicated > faults) {
    violations.push(`${duplicated} repeated deliveries for ${faults} faults: more than one per fault`);
  }
  return {
    counts: {
      requests: sent.length,
      ok: sent.filter((s) => s.outcome === 'ok').length,
      refused: sent.filter((s) => s.outcome === 'refused').length,
      refusedStatuses: sent.filter((s) => s.outcome === 'refused').reduce<Record<string, number>>((all, s) => ({ ...all, [String(s.status)]: (all[String(s.status)] ?? 0) + 1 }), {}),
      unanswered: sent.filter((s) => s.outcome === 'unanswered').length,
      storedWithoutOk,
      deliveriesExpected: expected.length,
      deliveriesArrived: arrived,
      duplicated,
      outboxNotDelivered,
    },
    violations,
  };
}
