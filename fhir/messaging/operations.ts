/**
 * Messaging operations on the FHIR API:
 * - `GET Communication/$inbox?practitioner=&category=&pool=&_count=`: open threads for a
 *   provider and their pools, unread first, each with unread and message counts, urgency,
 *   due time and owner (entry `search.extension`), and the practice pools they belong to
 *   (Bundle `extension` `#pool`, for filtering and forwarding);
 * - `GET Communication/$response-times?start=&end=`: per provider and pool, messages
 *   received, median and 90th percentile hours to the first reply, open threads past due;
 * - `GET Communication/{id}/$delivery-status`: where each delivery of the message stands.
 */
import type { Parameters } from '@medplum/fhirtypes';
import type { AccessContext } from '../access.js';
import { permit } from '../access.js';
import type { Database } from '../db/database.js';
import { badRequest, forbidden } from '../errors.js';
import type { Operation, RestRequest } from '../rest/dispatch.js';
import type { ResourceStore } from '../store/store.js';
import { dateRange } from '../search/dates.js';
import { CANONICAL_BASE } from './codes.js';
import type { Inbox } from './inbox.js';

const EXT = `${CANONICAL_BASE.replace('/CodeSystem', '/StructureDefinition')}/inbox`;

export function messagingOperations(fhirBase: string, inbox: Inbox, store: ResourceStore, db: Database): Record<string, Operation> {
  return {
    'Communication/$inbox': async (ctx, req) => {
      requireGet(req);
      if (permit(ctx, 'Communication', 's').restrictions) {
        // The inbox query does not apply scope restrictions; like type history, it is refused.
        throw forbidden('The inbox is not available under a query-restricted scope');
      }
      const query = new Map(req.query);
      const practitioner = query.get('practitioner') ?? ctx.fhirUser;
      if (!practitioner?.startsWith('Practitioner/')) {
        throw badRequest('$inbox needs practitioner=Practitioner/… (or a practitioner’s own token)', ['practitioner']);
      }
      const count = Math.min(Number(query.get('_count') ?? 50) || 50, 500);
      const threads = await inbox.threadsFor(ctx, practitioner, { category: query.get('category'), pool: query.get('pool'), count });
      const entries = threads.map((t) => {
        const extension = [
          { url: `${EXT}#unread`, valueInteger: t.unread },
          { url: `${EXT}#messages`, valueInteger: t.messages },
          { url: `${EXT}#urgent`, valueBoolean: t.urgent },
          ...(t.lastSent ? [{ url: `${EXT}#last-sent`, valueDateTime: new Date(t.lastSent).toISOString() }] : []),
          ...(t.due ? [{ url: `${EXT}#due`, valueDateTime: t.due }] : []),
          ...(t.owner ? [{ url: `${EXT}#owner`, valueReference: { reference: t.owner } }] : []),
        ];
        return `{"fullUrl":${JSON.stringify(`${fhirBase}/Communication/${t.id}`)},"resource":${t.content},"search":${JSON.stringify({ mode: 'match', extension })}}`;
      });
      const unread = threads.reduce((n, t) => n + t.unread, 0);
      const pools = (await inbox.poolsOf(practitioner)).map((p) => ({ url: `${EXT}#pool`, valueReference: { reference: p.reference, ...(p.name ? { display: p.name } : {}) } }));
      const head = { resourceType: 'Bundle', type: 'searchset', total: threads.length, extension: [{ url: `${EXT}#unread-total`, valueInteger: unread }, ...pools] };
      return { status: 200, body: `${JSON.stringify(head).slice(0, -1)},"entry":[${entries.join(',')}]}` };
    },

    'Communication/$response-times': async (ctx, req) => {
      requireGet(req);
      requireStaff(ctx);
      const query = new Map(req.query);
      // Date.parse takes values PostgreSQL does not (e.g. "0"): accept FHIR dates and instants only.
      const start = dateRange(query.get('start') ?? new Date(Date.now() - 30 * 86_400_000).toISOString())?.low;
      const end = dateRange(query.get('end') ?? new Date().toISOString())?.low;
      if (!start || !end) {
        throw badRequest('start and end must be dates or instants');
      }
      const rows = await inbox.responseTimes(start, end);
      const parameters: Parameters = {
        resourceType: 'Parameters',
        parameter: rows.map((r) => ({
          name: 'recipient',
          part: [
            { name: 'recipient', valueReference: { reference: String(r.recipient) } },
            { name: 'received', valueInteger: r.received as number },
            ...(r.medianHoursToFirstReply === null ? [] : [{ name: 'medianHoursToFirstReply', valueDecimal: r.medianHoursToFirstReply as number }]),
            ...(r.p90HoursToFirstReply === null ? [] : [{ name: 'p90HoursToFirstReply', valueDecimal: r.p90HoursToFirstReply as number }]),
            { name: 'unanswered', valueInteger: r.unanswered as number },
            { name: 'openPastDue', valueInteger: r.openPastDue as number },
          ],
        })),
      };
      return { status: 200, body: JSON.stringify(parameters) };
    },

    'Communication/id/$delivery-status': async (ctx, req, id) => {
      requireGet(req);
      await store.read(ctx, 'Communication', id!);
      const rows = await db.query(
        `SELECT kind, status, attempts, last_error, created_at, delivered_at FROM outbox WHERE subject = $1 ORDER BY id`,
        [`Communication/${id}`]
      );
      const parameters: Parameters = {
        resourceType: 'Parameters',
        parameter: rows.map((r) => ({
          name: 'delivery',
          part: [
            { name: 'kind', valueCode: r.kind },
            { name: 'status', valueCode: r.status },
            { name: 'attempts', valueInteger: r.attempts },
            { name: 'queued', valueInstant: new Date(r.created_at).toISOString() },
            ...(r.delivered_at ? [{ name: 'delivered', valueInstant: new Date(r.delivered_at).toISOString() }] : []),
            // Errors can carry a receiver's words; the patient side sees only the state.
            ...(r.last_error && ctx.role !== 'patient' && ctx.role !== 'representative' ? [{ name: 'lastError', valueString: r.last_error }] : []),
          ],
        })),
      };
      return { status: 200, body: JSON.stringify(parameters) };
    },
  };
}

function requireGet(req: RestRequest): void {
  if (req.method !== 'GET') {
    throw badRequest('This operation is read-only: use GET');
  }
}

function requireStaff(ctx: AccessContext): void {
  if (!ctx.system && ctx.role !== 'practitioner' && ctx.role !== 'client' && ctx.role !== 'auditor') {
    throw forbidden('Response-time figures are for staff and auditors');
  }
}
