/**
 * The patient record on the FHIR API (Patient instance operations):
 * - `GET Patient/{id}/$health-record`: view - the record as a `collection` Bundle;
 * - `GET Patient/{id}/$download?format=pdf|json`: download - a readable PDF or the FHIR
 *   JSON Bundle, as an attachment;
 * - `POST Patient/{id}/$transmit` with Parameters `to` (an e-mail or Direct address):
 *   transmit - queued for SMTP delivery with both attached;
 * - `GET Patient/{id}/$activity`: the portal events on the record (who, what, when).
 * Each runs under the caller's access context: a patient reaches only their own record, a
 * representative only the patients they represent and never a confidential resource, and
 * an unreachable patient is a 404. When the patient or a representative views, downloads
 * or transmits, the portal event the VDT measures count is recorded as them; staff and
 * integrations reading a record leave the ordinary audit entries only.
 */
import { randomUUID } from 'node:crypto';
import type { Parameters } from '@medplum/fhirtypes';
import type { AccessContext } from '../access.js';
import type { Database } from '../db/database.js';
import { badRequest, forbidden, methodNotAllowed, unprocessable } from '../errors.js';
import { enqueue } from '../outbox/outbox.js';
import type { Operation, RestRequest, RestResponse } from '../rest/dispatch.js';
import type { ResourceStore } from '../store/store.js';
import { activityOf } from './activity.js';
import { healthRecordOf } from './health-record.js';
import { isPatientSide, recordPortalEvent } from './portal-events.js';
import type { PortalAction } from './portal-events.js';
import { recordPdf } from './record-pdf.js';
import { summarize } from './record-summary.js';
import { isMailAddress, TRANSMIT_KIND } from './transmit.js';
import type { TransmitPayload } from './transmit.js';

export interface PortalOptions {
  /** Whether SMTP is configured (transmissions are refused up front without it). */
  canTransmit: boolean;
  /** Called after a transmission committed, to have the outbox deliver it soon. */
  queued: () => void;
}

const FORMAT_PARAMS = ['_format', '_pretty'];

export function portalOperations(store: ResourceStore, db: Database, options: PortalOptions): Record<string, Operation> {
  /** Records the event for the patient side (in its own transaction: the read changed nothing). */
  const recorded = async (ctx: AccessContext, action: PortalAction, patient: string, detail?: string) => {
    if (isPatientSide(ctx)) {
      await db.transaction((tx) => recordPortalEvent(store, tx, ctx, action, patient, detail));
    }
  };

  return {
    'Patient/id/$health-record': async (ctx, req, id) => {
      requireMethod(req, 'GET');
      onlyParams(req, []);
      const record = await healthRecordOf(store, ctx, id!);
      await recorded(ctx, 'view', record.patient);
      return { status: 200, body: JSON.stringify(record.bundle) };
    },

    'Patient/id/$download': async (ctx, req, id) => {
      requireMethod(req, 'GET');
      onlyParams(req, ['format']);
      const format = new Map(req.query).get('format') ?? 'pdf';
      if (format !== 'pdf' && format !== 'json') {
        throw badRequest('format must be pdf or json', ['format']);
      }
      const record = await healthRecordOf(store, ctx, id!);
      const response: RestResponse =
        format === 'pdf'
          ? { status: 200, data: await recordPdf(summarize(record.bundle)), contentType: 'application/pdf' }
          : { status: 200, body: JSON.stringify(record.bundle, null, 2), contentType: 'application/fhir+json; charset=utf-8' };
      await recorded(ctx, 'download', record.patient, format);
      return { ...response, headers: { 'Content-Disposition': `attachment; filename="health-record.${format}"`, 'Cache-Control': 'no-store' } };
    },

    'Patient/id/$transmit': async (ctx, req, id) => {
      requireMethod(req, 'POST');
      // The address is checked before anything is read, so a bad one leaves no trace.
      const to = addressOf(req);
      if (!isPatientSide(ctx) && !ctx.system && ctx.role !== 'client') {
        throw forbidden('Only the patient, their representative or an integrating system may transmit a record');
      }
      if (!options.canTransmit) {
        throw unprocessable('This server cannot send e-mail (SMTP_URL is not set), so it cannot transmit records');
      }
      const record = await healthRecordOf(store, ctx, id!);
      const payload: TransmitPayload = { to, record: JSON.stringify(record.bundle) };
      const eventId = await db.transaction(async (tx) => {
        const event = isPatientSide(ctx) ? await recordPortalEvent(store, tx, ctx, 'transmit', record.patient) : undefined;
        await enqueue(tx, { kind: TRANSMIT_KIND, idempotencyKey: `transmit:${event ?? randomUUID()}`, payload, subject: record.patient });
        return event;
      });
      options.queued();
      const answer: Parameters = {
        resourceType: 'Parameters',
        parameter: [{ name: 'status', valueCode: 'queued' }, ...(eventId ? [{ name: 'event', valueReference: { reference: `AuditEvent/${eventId}` } }] : [])],
      };
      return { status: 202, body: JSON.stringify(answer) };
    },

    'Patient/id/$activity': async (ctx, req, id) => {
      requireMethod(req, 'GET');
      onlyParams(req, []);
      return { status: 200, body: JSON.stringify(await activityOf(store, db, ctx, id!)) };
    },
  };
}

function requireMethod(req: RestRequest, method: 'GET' | 'POST'): void {
  if (req.method !== method) {
    throw methodNotAllowed(`Use ${method} (not ${req.method})`);
  }
}

function onlyParams(req: RestRequest, allowed: string[]): void {
  for (const [name] of req.query) {
    if (!allowed.includes(name) && !FORMAT_PARAMS.includes(name)) {
      throw badRequest(`Unknown parameter "${name}"`, [name]);
    }
  }
}

/** The one `to` address of a `$transmit` Parameters body. */
function addressOf(req: RestRequest): string {
  const body = req.body as Parameters | undefined;
  if (!body || typeof body !== 'object' || body.resourceType !== 'Parameters') {
    throw badRequest('Send a Parameters resource with a "to" parameter (an e-mail or Direct address)');
  }
  const to = (Array.isArray(body.parameter) ? body.parameter : []).filter((p) => p?.name === 'to');
  if (to.length !== 1) {
    throw badRequest('Send exactly one "to" parameter (an e-mail or Direct address)', ['Parameters.parameter']);
  }
  const raw = to[0].valueString ?? to[0].valueUri ?? to[0].valueUrl;
  const address = typeof raw === 'string' ? raw.trim().replace(/^mailto:/i, '') : '';
  if (!isMailAddress(address)) {
    throw badRequest('"to" must be one e-mail or Direct address, such as records@clinic.example.org', ['Parameters.parameter']);
  }
  return address;
}
