/**
 * The token endpoint's grants (authorization_code with PKCE, refresh_token with rotation,
 * client_credentials for SMART Backend Services), plus introspection (RFC 7662) and
 * revocation (RFC 7009).
 */
import type { AccessContext } from '../fhir/access.js';
import type { Client } from './clients.js';
import { invalidGrant, invalidRequest, invalidScope, OAuthError } from './errors.js';
import type { Grant } from './grants.js';
import { grantable, splitScope } from './scopes.js';
import type { AuthServices } from './services.js';

export type TokenForm = Record<string, string | undefined>;

export interface TokenResponse {
  access_token: string;
  token_type: 'Bearer';
  expires_in: number;
  scope: string;
  refresh_token?: string;
  id_token?: string;
  patient?: string;
  encounter?: string;
  fhirContext?: { reference: string }[];
  need_patient_banner?: boolean;
  smart_style_url?: string;
}

/** SMART Backend Services tokens live at most five minutes. */
const BACKEND_TOKEN_SECONDS = 300;

export class TokenEndpoint {
  constructor(private readonly services: AuthServices) {}

  async exchange(form: TokenForm, authorization: string | undefined, address?: string): Promise<TokenResponse> {
    const grantType = form.grant_type;
    if (!grantType) {
      throw invalidRequest('grant_type is required');
    }
    if (!['authorization_code', 'refresh_token', 'client_credentials'].includes(grantType)) {
      throw new OAuthError('unsupported_grant_type', `grant_type ${grantType.slice(0, 40)} is not supported`);
    }
    let client: Client | undefined;
    try {
      client = await this.clientOf(grantType, form, authorization);
      const response = await this.grant(grantType, client, form);
      this.audit(client, response, address);
      return response;
    } catch (err) {
      // Refusals are security events too (the error code only: descriptions may quote input).
      const code = err instanceof OAuthError ? err.error : 'server_error';
      this.services.audit.enqueue(
        { system: false, clientId: client?.clientId ?? 'unauthenticated', address },
        { interaction: 'token', outcome: '4', detail: `token refused (${grantType}): ${code}` }
      );
      throw err;
    }
  }

  /**
   * The requesting client. SMART's refresh request names no client (fhirclient sends only
   * grant_type and refresh_token), so a public client, which has nothing to present anyway,
   * is the one its refresh token was issued to. Confidential clients always authenticate.
   */
  private async clientOf(grantType: string, form: TokenForm, authorization: string | undefined): Promise<Client> {
    const { clients, grants } = this.services;
    const presentsNothing = !authorization && !form.client_id && form.client_assertion === undefined && form.client_assertion_type === undefined;
    if (grantType === 'refresh_token' && presentsNothing && form.refresh_token) {
      const owner = await grants.refreshTokenClient(form.refresh_token);
      const client = owner ? await clients.get(owner) : undefined;
      if (client?.authMethod === 'none') {
        return client;
      }
    }
    return clients.authenticate(authorization, form);
  }

  private async grant(grantType: string, client: Client, form: TokenForm): Promise<TokenResponse> {
    switch (grantType) {
      case 'authorization_code': {
        if (!form.code) {
          throw invalidRequest('code is required');
        }
        const { grant, nonce } = await this.services.grants.redeemCode(form.code, client.clientId, form.redirect_uri, form.code_verifier);
        return this.userTokens(client, grant, grant.scope, nonce);
      }
      case 'refresh_token': {
        if (!form.refresh_token) {
          throw invalidRequest('refresh_token is required');
        }
        let requested: string[] = [];
        // Checked before the token is used up: asking too much must not cost the client its grant.
        const { grant } = await this.services.grants.useRefreshToken(form.refresh_token, client.clientId, (scope) => {
          const original = splitScope(scope);
          requested = form.scope ? splitScope(form.scope) : original;
          if (requested.some((s) => !original.includes(s))) {
            throw invalidScope('A refresh may only ask for scopes granted originally');
          }
        });
        return this.userTokens(client, grant, requested.join(' '), undefined);
      }
      default:
        return this.backendToken(client, form);
    }
  }

  private async userTokens(client: Client, grant: Grant, scope: string, nonce: string | undefined): Promise<TokenResponse> {
    const { settings, tokens, grants, users } = this.services;
    const scopes = splitScope(scope);
    // The account that signed in; an EHR launch vouches for a user who may have no account here.
    const user = grant.userId ? await users.byId(grant.userId) : undefined;
    const accessToken = await tokens.accessToken(
      {
        sub: user?.id ?? grant.fhirUser ?? client.clientId,
        client_id: client.clientId,
        scope,
        ...(grant.fhirUser ? { fhirUser: grant.fhirUser } : {}),
        ...(grant.patient ? { patient: grant.patient } : {}),
        ...(grant.encounter ? { encounter: grant.encounter } : {}),
        ...(user?.roles.length ? { roles: user.roles } : {}),
        gid: grant.id,
      },
      settings.accessTokenSeconds
    );
    const response: TokenResponse = {
      access_token: accessToken,
      token_type: 'Bearer',
      expires_in: settings.accessTokenSeconds,
      scope,
      smart_style_url: settings.smartStyleUrl,
    };
    if (scopes.includes('offline_access') || scopes.includes('online_access')) {
      response.refresh_token = await grants.issueRefreshToken(grant, scope);
    }
    if (scopes.includes('openid') && grant.fhirUser && (scopes.includes('fhirUser') || scopes.includes('profile'))) {
      response.id_token = await tokens.idToken(client.clientId, grant.fhirUser, user?.id ?? grant.fhirUser, nonce, settings.accessTokenSeconds);
    }
    if (grant.patient) {
      response.patient = grant.patient;
      response.need_patient_banner = grant.needPatientBanner;
    }
    if (grant.encounter) {
      response.encounter = grant.encounter;
      response.fhirContext = [{ reference: `Encounter/${grant.encounter}` }];
    }
    return response;
  }

  private async backendToken(client: Client, form: TokenForm): Promise<TokenResponse> {
    if (client.authMethod === 'none') {
      throw new OAuthError('unauthorized_client', 'client_credentials requires a confidential client');
    }
    const requested = splitScope(form.scope).filter((s) => s.startsWith('system/'));
    const scopes = grantable(requested, client.scopes);
    if (!scopes.length) {
      throw invalidScope('None of the requested system scopes are registered for this client');
    }
    const scope = scopes.join(' ');
    const accessToken = await this.services.tokens.accessToken(
      { sub: client.clientId, client_id: client.clientId, scope, ...(client.admin ? { roles: ['admin'] } : {}) },
      BACKEND_TOKEN_SECONDS
    );
    return { access_token: accessToken, token_type: 'Bearer', expires_in: BACKEND_TOKEN_SECONDS, scope };
  }

  /** RFC 7662: `{ active: false }` for anything not a live token of this server. */
  async introspect(form: TokenForm, authorization: string | undefined): Promise<Record<string, unknown>> {
    const caller = await this.services.clients.authenticate(authorization, form);
    const claims = form.token ? await this.services.tokens.verify(form.token) : undefined;
    if (!claims || claims.iss !== this.services.settings.fhirBase) {
      return { active: false };
    }
    // A public client proves nothing but its id: it may ask only about its own tokens.
    if (caller.authMethod === 'none' && claims.client_id !== caller.clientId) {
      return { active: false };
    }
    return {
      active: true,
      scope: claims.scope,
      client_id: claims.client_id,
      exp: claims.exp,
      iat: claims.iat,
      sub: claims.sub,
      iss: claims.iss,
      aud: claims.aud,
      token_type: 'Bearer',
      ...(claims.fhirUser ? { fhirUser: claims.fhirUser } : {}),
      ...(claims.patient ? { patient: claims.patient } : {}),
      ...(claims.encounter ? { encounter: claims.encounter } : {}),
    };
  }

  /** RFC 7009: revoke a refresh token (its grant) or an access token; always answers 200. */
  async revoke(form: TokenForm, authorization: string | undefined, address?: string): Promise<void> {
    const client = await this.services.clients.authenticate(authorization, form);
    const token = form.token;
    if (!token) {
      throw invalidRequest('token is required');
    }
    if (await this.services.grants.revokeRefreshToken(token, client.clientId)) {
      this.auditRevoke(client, address);
      return;
    }
    const claims = await this.services.tokens.verify(token);
    if (claims && claims.client_id === client.clientId && claims.jti && claims.exp) {
      await this.services.grants.revokeAccessToken(claims.jti, claims.exp);
      this.auditRevoke(client, address);
    }
  }

  private audit(client: Client, response: TokenResponse, address: string | undefined): void {
    const ctx: AccessContext = { system: false, clientId: client.clientId, address };
    this.services.audit.enqueue(ctx, {
      interaction: 'token',
      outcome: '0',
      patients: response.patient ? [`Patient/${response.patient}`] : [],
      detail: `token issued: ${response.scope}`,
    });
  }

  private auditRevoke(client: Client, address: string | undefined): void {
    this.services.audit.enqueue({ system: false, clientId: client.clientId, address }, { interaction: 'revoke', outcome: '0', detail: 'token revoked' });
  }
}

export { invalidGrant };
