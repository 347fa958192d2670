/**
 * The access context: who is acting, through which client, from where, and what they may
 * reach. The auth layer builds it once per request and passes it explicitly into every
 * domain call; the store asks this module whether an interaction is allowed and how a
 * search must be confined. Nothing in `fhir/` looks up the caller any other way.
 */
import { forbidden } from './errors.js';
import { typeCatalog } from './search/catalog.js';

/** SMART v2 permissions: create, read, update, delete, search. */
export type Permission = 'c' | 'r' | 'u' | 'd' | 's';

/** One granted resource scope, e.g. `patient/Communication.rs?category=x`. */
export interface ScopeRule {
  context: 'patient' | 'user' | 'system';
  /** A resource type or `*`. */
  type: string;
  /** The granted subset of `cruds`. */
  permissions: string;
  /** Query restriction (`?category=x`): only resources matching it. */
  query?: [string, string][];
}

export type Role = 'patient' | 'representative' | 'practitioner' | 'auditor' | 'client' | 'system';

export interface AccessContext {
  /** The acting user as a FHIR reference (`Practitioner/…`, `Patient/…`, `RelatedPerson/…`), if any. */
  readonly fhirUser?: string;
  /** The OAuth client acting (or acting for the user). */
  readonly clientId?: string;
  /** Network address the request came from. */
  readonly address?: string;
  /** Request correlation id, for audit and logs. */
  readonly requestId?: string;
  /** CareThread itself (start-up, workers, scripts): reaches everything, no scopes apply. */
  readonly system: boolean;
  readonly role?: Role;
  /** May administer the authorization server (register clients, create users and launches). */
  readonly admin?: boolean;
  /** Granted resource scopes (ignored when `system`). */
  readonly rules?: readonly ScopeRule[];
  /** Patients (`Patient/id`) whose compartments are reachable; undefined = no confinement. */
  readonly compartments?: readonly string[];
  /** Resources labelled confidential (`meta.security` R) are hidden (representatives). */
  readonly hideConfidential?: boolean;
  /** Launch or selected patient context. */
  readonly patient?: string;
  readonly encounter?: string;
}

export const CONFIDENTIAL_LABEL = 'http://terminology.hl7.org/CodeSystem/v3-Confidentiality|R';

/** The context of CareThread itself: start-up tasks, workers and scripts. */
export function systemContext(requestId?: string): AccessContext {
  return { system: true, role: 'system', clientId: 'carethread', requestId };
}

/** Types an auditor may never read, whatever their scopes say: message contents. */
const AUDITOR_DENIED = new Set(['Communication', 'CommunicationRequest', 'Binary', 'DocumentReference']);

/**
 * Types the patient side may never read, whatever their scopes say: integrations'
 * configuration, in no patient's compartment, whose criteria name other patients and whose
 * channel headers carry the integration's credentials.
 */
const PATIENT_SIDE_DENIED = new Set(['Subscription']);

/**
 * Types that decide which patients a practitioner reaches (a role stands for its practitioner
 * in encounters, care teams and messages) and lie in no patient's compartment: a practitioner
 * who could write them could make another's patients their own. Integrations maintain them.
 */
const PRACTITIONER_READ_ONLY = new Set(['PractitionerRole']);

export interface Permit {
  /** ORed query restrictions; undefined when some granted scope is unrestricted. */
  restrictions?: [string, string][][];
}

/** Whether `ctx` may perform `permission` on `type`; throws 403 when not. */
export function permit(ctx: AccessContext, type: string, permission: Permission): Permit {
  if (ctx.system) {
    return {};
  }
  // Updates are refused per resource (a PUT may still create one; see fhir/audit/operations.ts).
  if (type === 'AuditEvent' && permission === 'd') {
    throw forbidden('The audit trail is append-only');
  }
  if (ctx.role === 'auditor' && AUDITOR_DENIED.has(type)) {
    throw forbidden(`Auditors may not access ${type} resources`);
  }
  if (ctx.role === 'practitioner' && permission !== 'r' && permission !== 's' && PRACTITIONER_READ_ONLY.has(type)) {
    throw forbidden(`Practitioners may not ${verb(permission)} ${type} resources`);
  }
  if ((ctx.role === 'patient' || ctx.role === 'representative') && PATIENT_SIDE_DENIED.has(type)) {
    throw forbidden(`Patients and representatives may not access ${type} resources`);
  }
  if ((ctx.role === 'patient' || ctx.role === 'representative') && permission !== 'r' && permission !== 's' && !isCompartmentType(type)) {
    throw forbidden(`Patients and representatives may not ${verb(permission)} ${type} resources`);
  }
  const matching = (ctx.rules ?? []).filter((r) => (r.type === '*' || r.type === type) && r.permissions.includes(permission));
  if (!matching.length) {
    throw forbidden(`The access token does not grant ${verb(permission)} on ${type}`);
  }
  if (matching.some((r) => !r.query?.length)) {
    return {};
  }
  return { restrictions: matching.map((r) => r.query!) };
}

/** Resource types whose instances belong to patient compartments (and are confined by them). */
export function isCompartmentType(type: string): boolean {
  if (type === 'Patient' || type === 'Binary') {
    return true;
  }
  try {
    return typeCatalog(type).compartmentParams.length > 0;
  } catch {
    return false;
  }
}

/** The patient compartments a search or read of `type` is confined to, if any. */
export function compartmentsFor(ctx: AccessContext, type: string): readonly string[] | undefined {
  if (ctx.system || !ctx.compartments || !isCompartmentType(type)) {
    return undefined;
  }
  return ctx.compartments;
}

/** Whether a resource in these compartments is visible to `ctx` (reads: 404 when not). */
export function canSee(ctx: AccessContext, type: string, resourceCompartments: readonly string[], security?: readonly string[]): boolean {
  if (ctx.hideConfidential && security?.includes(CONFIDENTIAL_LABEL)) {
    return false;
  }
  const allowed = compartmentsFor(ctx, type);
  return !allowed || resourceCompartments.some((c) => allowed.includes(c));
}

/**
 * Whether `ctx` may write a resource in these compartments: every patient it names must be
 * reachable, and a confined writer cannot write resources outside any compartment.
 */
export function canWrite(ctx: AccessContext, type: string, resourceCompartments: readonly string[]): boolean {
  const allowed = compartmentsFor(ctx, type);
  if (!allowed) {
    return true;
  }
  return resourceCompartments.length > 0 && resourceCompartments.every((c) => allowed.includes(c));
}

function verb(permission: Permission): string {
  return { c: 'create', r: 'read', u: 'update', d: 'delete', s: 'search' }[permission];
}
