/**
 * A patient's own activity history, as the view/download/transmit certification criterion
 * asks: every portal event on their record (online access granted, viewed, downloaded,
 * transmitted), who did it and when, newest first; for a transmission, whether it has
 * been delivered. The events are found by a search under
 * the caller's access context, so they come from the caller's reach only.
 */
import type { AuditEvent, HumanName, Parameters, ParametersParameter } from '@medplum/fhirtypes';
import type { AccessContext } from '../access.js';
import type { Queryable } from '../db/database.js';
import { PORTAL_EVENT_SYSTEM, PORTAL_EVENTS } from '../messaging/codes.js';
import type { ResourceStore } from '../store/store.js';

const MAX_EVENTS = 500;

export async function activityOf(store: ResourceStore, db: Queryable, ctx: AccessContext, patientId: string): Promise<Parameters> {
  const patient = `Patient/${patientId}`;
  // The patient must be reachable, as for a read: anyone else's history is a 404.
  await store.read(ctx, 'Patient', patientId);
  const subtypes = Object.keys(PORTAL_EVENTS).map((code) => `${PORTAL_EVENT_SYSTEM}|${code}`).join(',');
  const request = store.parseSearch('AuditEvent', [['entity', patient], ['subtype', subtypes], ['_sort', '-date'], ['_count', String(Math.min(MAX_EVENTS, store.options.maxPageSize))]], false);
  const result = await store.search(ctx, request);
  const events = result.matches.map((m) => JSON.parse(m.content) as AuditEvent);
  const names = await namesOf(db, events.flatMap((e) => (e.agent ?? []).map((a) => a.who?.reference ?? '')));
  const deliveries = await deliveriesOf(db, events.map((e) => e.id!));
  const parameter: ParametersParameter[] = events.map((event) => {
    const code = event.subtype?.find((s) => s.system === PORTAL_EVENT_SYSTEM)?.code ?? 'unknown';
    const agent = event.agent?.find((a) => a.requestor) ?? event.agent?.[0];
    const who = agent?.who?.reference;
    return {
      name: 'event',
      part: [
        { name: 'action', valueCode: code },
        { name: 'description', valueString: PORTAL_EVENTS[code] ?? code },
        { name: 'who', valueReference: { ...(who ? { reference: who } : {}), display: agent?.who?.display ?? (who ? names.get(who) : undefined) ?? who ?? 'unknown' } },
        { name: 'when', valueInstant: event.recorded },
        // Where a transmission stands: pending (being sent or retried), delivered or failed.
        ...(deliveries.has(event.id!) ? [{ name: 'delivery', valueCode: deliveries.get(event.id!) }] : []),
      ],
    };
  });
  return { resourceType: 'Parameters', parameter };
}

/** The outbox state of the transmissions queued with these events (keyed by event id). */
async function deliveriesOf(db: Queryable, eventIds: string[]): Promise<Map<string, string>> {
  if (!eventIds.length) {
    return new Map();
  }
  const rows = await db.query<{ key: string; status: string }>(`SELECT idempotency_key AS key, status FROM outbox WHERE idempotency_key = ANY($1::text[])`, [
    eventIds.map((id) => `transmit:${id}`),
  ]);
  return new Map(rows.map((r) => [r.key.slice('transmit:'.length), r.status]));
}

/** Names of the people who acted (Patient, RelatedPerson, Practitioner), by reference. */
async function namesOf(db: Queryable, references: string[]): Promise<Map<string, string>> {
  const names = new Map<string, string>();
  for (const type of ['Patient', 'RelatedPerson', 'Practitioner']) {
    const ids = [...new Set(references.filter((r) => r.startsWith(`${type}/`)).map((r) => r.slice(type.length + 1)))];
    if (!ids.length) {
      continue;
    }
    const rows = await db.query<{ id: string; content: string }>(`SELECT id, content FROM "${type}" WHERE id = ANY($1::text[]) AND NOT deleted`, [ids]);
    for (const row of rows) {
      const name = (JSON.parse(row.content) as { name?: HumanName[] }).name?.[0];
      const text = name?.text ?? [...(name?.given ?? []), name?.family].filter(Boolean).join(' ');
      if (text) {
        names.set(`${type}/${row.id}`, text);
      }
    }
  }
  return names;
}
