/**
 * The resource server's side of SMART: turn a bearer token into the access context every
 * FHIR interaction runs under. The token's scopes become scope rules; who the user is
 * decides which patients they reach:
 * - a patient: their own compartment;
 * - a representative (RelatedPerson): the patients they represent, confidential resources hidden;
 * - a practitioner: patients they have a care relationship with (an encounter with them, a
 *   care team they are on, a message thread addressed to them or to one of their pools),
 *   or the launch patient when every scope is a patient/ scope;
 * - an auditor (a user with the auditor role): measures, reports, the audit trail and the
 *   patient list behind a report, never message contents;
 * - a backend client: what its registered system/ scopes allow.
 */
import type { AccessContext, Role } from '../fhir/access.js';
import { systemContext } from '../fhir/access.js';
import { OAuthError } from './errors.js';
import { rulesOf } from './scopes.js';
import type { AuthServices } from './services.js';
import type { AccessClaims } from './tokens.js';

export interface RequestCredentials {
  authorization?: string;
  /** Set when the client tried `?access_token=` (refused: tokens belong in the header). */
  queryToken?: boolean;
  address?: string;
  requestId?: string;
}

/** Raised for missing or unusable tokens: the HTTP layer answers 401 with WWW-Authenticate. */
export class TokenRequired extends OAuthError {
  constructor(
    description: string,
    readonly invalid: boolean
  ) {
    super('invalid_token', description, 401);
  }
}

const RELATIONSHIP_CACHE_MS = 30_000;

export class ResourceServer {
  private relationships = new Map<string, { patients: string[]; at: number }>();

  constructor(private readonly services: AuthServices) {}

  async contextFor(credentials: RequestCredentials): Promise<AccessContext> {
    if (credentials.queryToken) {
      throw new TokenRequired('Access tokens must be sent in the Authorization header, not the URL', true);
    }
    const header = credentials.authorization;
    if (!header) {
      throw new TokenRequired('An access token is required', false);
    }
    const match = /^Bearer\s+([A-Za-z0-9\-._~+/]+=*)$/i.exec(header);
    if (!match) {
      throw new TokenRequired('The Authorization header must be "Bearer <token>"', true);
    }
    const claims = await this.services.tokens.verify(match[1]);
    if (!claims) {
      throw new TokenRequired('The access token is invalid, expired or revoked', true);
    }
    return this.contextOf(claims, credentials);
  }

  private async contextOf(claims: AccessClaims, credentials: RequestCredentials): Promise<AccessContext> {
    const rules = rulesOf(claims.scope);
    const base = {
      system: false,
      clientId: claims.client_id,
      fhirUser: claims.fhirUser,
      address: credentials.address,
      requestId: credentials.requestId,
      rules,
      patient: claims.patient,
      encounter: claims.encounter,
      admin: claims.iss === this.services.settings.fhirBase && (claims.roles?.includes('admin') ?? false),
    };
    const fhirUser = claims.fhirUser;
    const patientContext = claims.patient ? [`Patient/${claims.patient}`] : undefined;
    if (!fhirUser) {
      return { ...base, role: 'client' satisfies Role };
    }
    if (fhirUser.startsWith('Patient/')) {
      return { ...base, role: 'patient', compartments: [fhirUser] };
    }
    if (fhirUser.startsWith('RelatedPerson/')) {
      const represented = await this.representedPatients(fhirUser);
      const compartments = patientContext ? patientContext.filter((p) => represented.includes(p)) : represented;
      return { ...base, role: 'representative', compartments, hideConfidential: true };
    }
    if (fhirUser.startsWith('Practitioner/')) {
      if (claims.roles?.includes('auditor')) {
        return { ...base, role: 'auditor' };
      }
      const onlyPatientScopes = rules.length > 0 && rules.every((r) => r.context === 'patient');
      if (onlyPatientScopes) {
        return { ...base, role: 'practitioner', compartments: patientContext ?? [] };
      }
      const related = await this.careRelationships(fhirUser);
      return { ...base, role: 'practitioner', compartments: [...new Set([...related, ...(patientContext ?? [])])] };
    }
    // Any other kind of user reaches no patient data.
    return { ...base, role: 'practitioner', compartments: [] };
  }

  /** Patients a representative acts for: their RelatedPerson's patient and any further ones. */
  private async representedPatients(fhirUser: string): Promise<string[]> {
    const user = await this.services.users.byFhirUser(fhirUser);
    const references = [fhirUser, ...(user?.represents ?? [])];
    const ids = references.filter((r) => r.startsWith('RelatedPerson/')).map((r) => r.slice('RelatedPerson/'.length));
    const rows = await this.services.db.query<{ patient: string }>(
      `SELECT DISTINCT unnest(r_patient) AS patient FROM "RelatedPerson" WHERE id = ANY($1::text[]) AND NOT deleted`,
      [ids]
    );
    return rows.map((r) => r.patient).filter((p) => p.startsWith('Patient/'));
  }

  /**
   * Patients a practitioner has a care relationship with. Cached briefly: it is asked on
   * every request and changes only when encounters, care teams or threads do.
   */
  async careRelationships(practitioner: string): Promise<string[]> {
    const cached = this.relationships.get(practitioner);
    if (cached && Date.now() - cached.at < RELATIONSHIP_CACHE_MS) {
      return cached.patients;
    }
    const rows = await this.services.db.query<{ patient: string }>(
      `WITH me AS (
         SELECT $1::text AS ref
         UNION SELECT 'PractitionerRole/' || id FROM "PractitionerRole" WHERE r_practitioner @> ARRAY[$1::text] AND NOT deleted
       ), pools AS (
         SELECT 'CareTeam/' || id AS ref FROM "CareTeam" WHERE r_participant && ARRAY(SELECT ref FROM me) AND NOT deleted
         UNION SELECT 'Group/' || id FROM "Group" WHERE r_member && ARRAY(SELECT ref FROM me) AND NOT deleted
       )
       SELECT DISTINCT patient FROM (
         SELECT unnest(compartments) AS patient FROM "Encounter"
           WHERE (r_participant && ARRAY(SELECT ref FROM me) OR r_practitioner && ARRAY(SELECT ref FROM me)) AND NOT deleted
         UNION ALL SELECT unnest(compartments) FROM "CareTeam" WHERE r_participant && ARRAY(SELECT ref FROM me) AND NOT deleted
         UNION ALL SELECT unnest(compartments) FROM "Communication"
           WHERE (r_recipient && ARRAY(SELECT ref FROM me UNION SELECT ref FROM pools) OR r_sender && ARRAY(SELECT ref FROM me)) AND NOT deleted
       ) related WHERE patient IS NOT NULL`,
      [practitioner]
    );
    const patients = rows.map((r) => r.patient);
    this.relationships.set(practitioner, { patients, at: Date.now() });
    return patients;
  }
}

export { systemContext };
