/**
 * `$notification-preference` on Patient and RelatedPerson instances:
 * - `GET`: Parameters `channel` (chosen, or the default), `chosen`, `effectiveChannel` (what
 *   a notice would go through now), `availableChannel` (repeating) and, when the channel
 *   cannot be used, `unavailableReason`;
 * - `POST` Parameters `channel` = email | sms | none: sets it, answers as GET.
 * Who may: the person themself, a representative for the patient they represent, and staff
 * (read) or an integrating system (set). The person must first be visible to the caller, as
 * for a read, so another patient's record is a 404 exactly like a missing one.
 */
import type { Parameters, RelatedPerson } from '@medplum/fhirtypes';
import type { AccessContext } from '../access.js';
import { permit } from '../access.js';
import type { Database } from '../db/database.js';
import { badRequest, FhirError, forbidden, methodNotAllowed, unprocessable } from '../errors.js';
import type { Operation, RestRequest } from '../rest/dispatch.js';
import type { ResourceStore } from '../store/store.js';
import { CHANNELS, contactOf, isChannel, unavailability } from './channels.js';
import type { Channel, PreferenceView } from './channels.js';
import type { Notifier, Person } from './notifier.js';
import { storePreference } from './preferences.js';

type PersonType = 'Patient' | 'RelatedPerson';

export function notificationOperations(store: ResourceStore, db: Database, notifier: Notifier): Record<string, Operation> {
  const operation =
    (type: PersonType): Operation =>
    async (ctx, req, id) => {
      if (req.method !== 'GET' && req.method !== 'POST') {
        throw methodNotAllowed(`$notification-preference takes GET (read) or POST (set), not ${req.method}`);
      }
      const reference = `${type}/${id}`;
      const person = JSON.parse((await store.read(ctx, type, id!)).content) as Person;
      try {
        return await (req.method === 'GET' ? read(ctx, type, reference, person) : change(ctx, type, reference, person, req));
      } catch (err) {
        // The read above was audited as a success; the refusal that followed is recorded too.
        if (err instanceof FhirError) {
          store.audit.enqueue(ctx, { interaction: 'operation', target: reference, patients: patientsOf(type, reference, person), outcome: '4', detail: `$notification-preference: HTTP ${err.status}` });
        }
        throw err;
      }
    };

  const read = async (ctx: AccessContext, type: PersonType, reference: string, person: Person) => {
    assertMayRead(ctx, type, reference);
    return answer(await notifier.preferenceOf(reference, person));
  };

  const change = async (ctx: AccessContext, type: PersonType, reference: string, person: Person, req: RestRequest) => {
    assertMayChange(ctx, type, reference);
    const channel = channelOf(req);
    if (channel !== 'none') {
      const problem = unavailability(channel, contactOf(person), notifier.transports);
      if (problem) {
        throw unprocessable(`${problem}; choose one of the available channels`, ['Parameters.parameter']);
      }
    }
    const view = await db.transaction(async (tx) => {
      await storePreference(tx, reference, channel);
      await store.audit.write(tx, ctx, { interaction: 'operation', target: reference, patients: patientsOf(type, reference, person), outcome: '0', detail: '$notification-preference' });
      return notifier.preferenceOf(reference, person, tx);
    });
    return answer(view);
  };

  return {
    'Patient/id/$notification-preference': operation('Patient'),
    'RelatedPerson/id/$notification-preference': operation('RelatedPerson'),
  };
}

/** The patient whose record a preference belongs to (for the audit trail). */
function patientsOf(type: PersonType, reference: string, person: Person): string[] {
  const patient = type === 'Patient' ? reference : (person as RelatedPerson).patient?.reference;
  return patient ? [patient] : [];
}

/** The person, a representative for a patient they represent, staff and integrations. */
function assertMayRead(ctx: AccessContext, type: PersonType, reference: string): void {
  if (ctx.system || ctx.role === 'practitioner' || ctx.role === 'client' || isSelfOrRepresented(ctx, type, reference)) {
    return;
  }
  throw forbidden('Only the person, their representative or their care team may read notification preferences');
}

/** The person, a representative for a patient they represent, and integrating systems. */
function assertMayChange(ctx: AccessContext, type: PersonType, reference: string): void {
  if (ctx.system) {
    return;
  }
  if (ctx.role !== 'client' && !isSelfOrRepresented(ctx, type, reference)) {
    throw forbidden('Only the person or their representative may change notification preferences');
  }
  // Changing a preference is a write about the person: the token must grant one.
  permit(ctx, type, 'u');
}

function isSelfOrRepresented(ctx: AccessContext, type: PersonType, reference: string): boolean {
  if (ctx.role !== 'patient' && ctx.role !== 'representative') {
    return false;
  }
  if (ctx.fhirUser === reference) {
    return true;
  }
  return ctx.role === 'representative' && type === 'Patient' && (ctx.compartments ?? []).includes(reference);
}

function channelOf(req: RestRequest): Channel {
  const body = req.body as Parameters | undefined;
  if (!body || typeof body !== 'object' || body.resourceType !== 'Parameters') {
    throw badRequest('Send a Parameters resource with a channel parameter');
  }
  const parameters = (Array.isArray(body.parameter) ? body.parameter : []).filter((p) => p?.name === 'channel');
  if (parameters.length !== 1) {
    throw badRequest(`Send exactly one channel parameter (${CHANNELS.join(', ')})`, ['Parameters.parameter']);
  }
  const value = parameters[0].valueCode ?? parameters[0].valueString;
  if (!isChannel(value)) {
    throw badRequest(`channel must be one of ${CHANNELS.join(', ')}`, ['Parameters.parameter']);
  }
  return value;
}

function answer(view: PreferenceView) {
  const parameters: Parameters = {
    resourceType: 'Parameters',
    parameter: [
      { name: 'channel', valueCode: view.channel },
      { name: 'chosen', valueBoolean: view.chosen },
      { name: 'effectiveChannel', valueCode: view.effective },
      ...view.available.map((c) => ({ name: 'availableChannel', valueCode: c })),
      ...(view.unavailableReason ? [{ name: 'unavailableReason', valueString: view.unavailableReason }] : []),
    ],
  };
  return { status: 200, body: JSON.stringify(parameters) };
}
