/**
 * The portal events the view/download/transmit measures count: an AuditEvent with a
 * `portal-event` subtype, `agent.who` the Patient or RelatedPerson who acted and
 * `entity.what` the Patient, written through the store like an import from a previous
 * portal, so the measures' queries (over `t_subtype`, `r_agent`, `r_entity`, `recorded`)
 * find it exactly as they find imported ones.
 */
import { randomUUID } from 'node:crypto';
import type { AuditEvent } from '@medplum/fhirtypes';
import type { AccessContext } from '../access.js';
import { systemContext } from '../access.js';
import type { Queryable } from '../db/database.js';
import { PORTAL_EVENT_SYSTEM, PORTAL_EVENTS } from '../messaging/codes.js';
import type { ResourceStore } from '../store/store.js';

export type PortalAction = 'view' | 'download' | 'transmit';

/** Whether the caller is the patient side (the people whose portal use the measures count). */
export function isPatientSide(ctx: AccessContext): boolean {
  return (ctx.role === 'patient' || ctx.role === 'representative') && Boolean(ctx.fhirUser);
}

/**
 * Records `action` on `patient`'s record by the signed-in patient or representative.
 * `detail` is PHI-free (the format of a download); a transmission's address is never in it.
 * Returns the new event's id.
 */
export async function recordPortalEvent(
  store: ResourceStore,
  tx: Queryable,
  ctx: AccessContext,
  action: PortalAction,
  patient: string,
  detail?: string
): Promise<string> {
  const id = randomUUID();
  const event: AuditEvent = {
    resourceType: 'AuditEvent',
    id,
    type: { system: 'http://dicom.nema.org/resources/ontology/DCM', code: '110110', display: 'Patient Record' },
    subtype: [{ system: PORTAL_EVENT_SYSTEM, code: action, display: PORTAL_EVENTS[action] }],
    action: 'R',
    recorded: new Date().toISOString(),
    outcome: '0',
    ...(detail ? { outcomeDesc: detail } : {}),
    agent: [
      {
        who: { reference: ctx.fhirUser! },
        requestor: true,
        ...(ctx.clientId ? { name: ctx.clientId } : {}),
        ...(ctx.address ? { network: { address: ctx.address, type: '2' as const } } : {}),
      },
    ],
    source: { observer: { display: 'CareThread patient portal' } },
    entity: [{ what: { reference: patient } }],
  };
  // Written as CareThread: the patient side may not write AuditEvents through the API.
  await store.create(systemContext(ctx.requestId), event, 'AuditEvent', { tx, id });
  return id;
}
