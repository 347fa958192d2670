/**
 * Administration of the authorization server, for an administrator's token (the bootstrap
 * client, or a client registered with administrator rights): dynamic client registration
 * (RFC 7591), login accounts, and EHR launch contexts.
 */
import type { AccessContext } from '../fhir/access.js';
import { systemContext } from '../fhir/access.js';
import { isValidId } from '../fhir/validate.js';
import type { AuthMethod } from './clients.js';
import { OAuthError } from './errors.js';
import { parseScope, SPECIAL_SCOPES, splitScope } from './scopes.js';
import type { AuthServices } from './services.js';
import { USER_ROLES, UsernameTaken } from './users.js';

const AUTH_METHODS: AuthMethod[] = ['none', 'client_secret_basic', 'private_key_jwt'];

export class Administration {
  constructor(private readonly services: AuthServices) {}

  async registerClient(ctx: AccessContext, metadata: Record<string, unknown>): Promise<Record<string, unknown>> {
    requireAdmin(ctx);
    const invalid = (text: string) => new OAuthError('invalid_client_metadata', text);
    const authMethod = (metadata.token_endpoint_auth_method ?? 'client_secret_basic') as AuthMethod;
    if (!AUTH_METHODS.includes(authMethod)) {
      throw invalid(`token_endpoint_auth_method must be one of ${AUTH_METHODS.join(', ')}`);
    }
    const redirectUris = metadata.redirect_uris ?? [];
    if (!Array.isArray(redirectUris) || redirectUris.some((u) => typeof u !== 'string' || !isRedirectUri(u))) {
      throw new OAuthError('invalid_redirect_uri', 'redirect_uris must be absolute http(s) URLs without fragments');
    }
    const scopes = splitScope(typeof metadata.scope === 'string' ? metadata.scope : '');
    const unknown = scopes.filter((s) => !SPECIAL_SCOPES.has(s) && !parseScope(s));
    if (unknown.length) {
      throw invalid(`Unsupported scopes: ${unknown.join(' ')}`);
    }
    const jwks = metadata.jwks as { keys?: unknown[] } | undefined;
    const jwksUri = metadata.jwks_uri;
    if (authMethod === 'private_key_jwt') {
      if (!(jwks && Array.isArray(jwks.keys) && jwks.keys.length) && !(typeof jwksUri === 'string' && isHttpUrl(jwksUri))) {
        throw invalid('private_key_jwt clients need jwks or jwks_uri');
      }
    }
    if (authMethod !== 'private_key_jwt' && (jwks || jwksUri)) {
      throw invalid('jwks and jwks_uri are only for private_key_jwt clients');
    }
    const clientName = typeof metadata.client_name === 'string' ? metadata.client_name.slice(0, 200) : undefined;
    const { client, secret } = await this.services.clients.register({
      clientName,
      authMethod,
      redirectUris: redirectUris as string[],
      scopes,
      jwks: jwks as never,
      jwksUri: typeof jwksUri === 'string' ? jwksUri : undefined,
      admin: metadata.carethread_admin === true,
    });
    this.services.audit.enqueue(ctx, { interaction: 'operation', outcome: '0', detail: `client registered: ${client.clientId}` });
    return {
      client_id: client.clientId,
      client_id_issued_at: Math.floor(Date.now() / 1000),
      ...(secret ? { client_secret: secret, client_secret_expires_at: 0 } : {}),
      client_name: clientName,
      redirect_uris: client.redirectUris,
      token_endpoint_auth_method: authMethod,
      grant_types: authMethod === 'none' || redirectUris.length ? ['authorization_code', 'refresh_token'] : ['client_credentials'],
      scope: scopes.join(' '),
      ...(jwks ? { jwks } : {}),
      ...(typeof jwksUri === 'string' ? { jwks_uri: jwksUri } : {}),
    };
  }

  async createUser(ctx: AccessContext, body: Record<string, unknown>): Promise<Record<string, unknown>> {
    requireAdmin(ctx);
    const { fhirUser, username, password } = body;
    if (typeof username !== 'string' || !/^[A-Za-z0-9._@+-]{3,64}$/.test(username)) {
      throw invalidRequest('username must be 3-64 letters, digits or . _ @ + -');
    }
    if (typeof password !== 'string' || password.length < 10 || password.length > 200) {
      throw invalidRequest('password must be 10-200 characters');
    }
    if (typeof fhirUser !== 'string' || !/^(Patient|RelatedPerson|Practitioner)\/[A-Za-z0-9\-.]{1,64}$/.test(fhirUser)) {
      throw invalidRequest('fhirUser must reference a Patient, RelatedPerson or Practitioner');
    }
    await this.requireExisting(fhirUser);
    const roles = body.roles ?? [];
    if (!Array.isArray(roles) || roles.some((r) => !(USER_ROLES as readonly string[]).includes(r))) {
      throw invalidRequest(`roles may contain ${USER_ROLES.join(', ')}`);
    }
    if (roles.includes('auditor') && !fhirUser.startsWith('Practitioner/')) {
      throw invalidRequest('Only a Practitioner can be an auditor');
    }
    const represents = body.represents ?? [];
    if (!Array.isArray(represents) || represents.some((r) => typeof r !== 'string' || !r.startsWith('RelatedPerson/'))) {
      throw invalidRequest('represents must list RelatedPerson references');
    }
    if (represents.length && !fhirUser.startsWith('RelatedPerson/')) {
      throw invalidRequest('Only a representative (RelatedPerson) represents further patients');
    }
    for (const r of represents as string[]) {
      await this.requireExisting(r);
    }
    try {
      const account = await this.services.users.create({
        username,
        password,
        fhirUser,
        roles: roles as string[],
        represents: represents as string[],
      });
      this.services.audit.enqueue(ctx, {
        interaction: 'operation',
        outcome: '0',
        target: fhirUser,
        patients: fhirUser.startsWith('Patient/') ? [fhirUser] : [],
        detail: 'login account created',
      });
      return { id: account.id, username: account.username, fhirUser: account.fhirUser, roles: account.roles, represents: account.represents };
    } catch (err) {
      if (err instanceof UsernameTaken) {
        throw new OAuthError('invalid_request', 'That username is taken', 409);
      }
      throw err;
    }
  }

  async createLaunch(ctx: AccessContext, body: Record<string, unknown>): Promise<{ launch: string; expires_in: number }> {
    requireAdmin(ctx);
    const { patient, encounter, fhirUser, client_id: clientId, need_patient_banner: banner } = body;
    if (typeof fhirUser !== 'string' || !/^(Practitioner|PractitionerRole|Patient|RelatedPerson)\//.test(fhirUser)) {
      throw invalidRequest('fhirUser must reference the launching user (e.g. Practitioner/…)');
    }
    await this.requireExisting(fhirUser);
    if (patient !== undefined) {
      if (typeof patient !== 'string' || !patient.startsWith('Patient/')) {
        throw invalidRequest('patient must be a Patient reference');
      }
      await this.requireExisting(patient);
    }
    if (encounter !== undefined) {
      if (typeof encounter !== 'string' || !encounter.startsWith('Encounter/')) {
        throw invalidRequest('encounter must be an Encounter reference');
      }
      await this.requireExisting(encounter);
    }
    if (clientId !== undefined && (typeof clientId !== 'string' || !(await this.services.clients.get(clientId)))) {
      throw invalidRequest('client_id does not name a registered client');
    }
    if (banner !== undefined && typeof banner !== 'boolean') {
      throw invalidRequest('need_patient_banner must be true or false');
    }
    const { launch, expiresIn } = await this.services.launches.create(
      {
        fhirUser,
        patient: (patient as string | undefined)?.slice('Patient/'.length),
        encounter: (encounter as string | undefined)?.slice('Encounter/'.length),
        clientId: clientId as string | undefined,
        needPatientBanner: banner !== false,
      },
      ctx.clientId ?? 'unknown'
    );
    this.services.audit.enqueue(ctx, {
      interaction: 'launch',
      outcome: '0',
      target: fhirUser,
      patients: typeof patient === 'string' ? [patient] : [],
      detail: 'EHR launch context created',
    });
    return { launch, expires_in: expiresIn };
  }

  private async requireExisting(reference: string): Promise<void> {
    const [type, id] = reference.split('/');
    if (!id || !isValidId(id)) {
      throw invalidRequest(`${reference} is not a valid reference`);
    }
    try {
      await this.services.store.read(systemContext(), type, id);
    } catch {
      throw invalidRequest(`${reference} does not exist`);
    }
  }
}

function requireAdmin(ctx: AccessContext): void {
  if (!ctx.admin) {
    throw new OAuthError('access_denied', 'This requires an administrator’s access token', 403);
  }
}

function invalidRequest(text: string): OAuthError {
  return new OAuthError('invalid_request', text);
}

function isHttpUrl(value: string): boolean {
  try {
    const url = new URL(value);
    return url.protocol === 'https:' || url.protocol === 'http:';
  } catch {
    return false;
  }
}

function isRedirectUri(value: string): boolean {
  return isHttpUrl(value) && !value.includes('#');
}
