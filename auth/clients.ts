/**
 * Registered OAuth clients and how they prove who they are at the token endpoint: public
 * clients (PKCE only), symmetric ones (HTTP Basic with a secret, stored as a SHA-256 hash),
 * and asymmetric ones (a private_key_jwt assertion signed RS384 or ES384, verified against
 * the registered JWKS or JWKS URL, each assertion id accepted once).
 */
import { createHash, randomBytes, randomUUID, timingSafeEqual } from 'node:crypto';
import { createLocalJWKSet, createRemoteJWKSet, decodeProtectedHeader, jwtVerify } from 'jose';
import type { JSONWebKeySet } from 'jose';
import type { Database } from '../fhir/db/database.js';
import { invalidClient, OAuthError } from './errors.js';

export type AuthMethod = 'none' | 'client_secret_basic' | 'private_key_jwt';

export interface Client {
  clientId: string;
  clientName?: string;
  authMethod: AuthMethod;
  redirectUris: string[];
  /** Scopes the client may be granted (patterns such as `patient/*.rs`). */
  scopes: string[];
  jwks?: JSONWebKeySet;
  jwksUri?: string;
  /** May register clients, create users and create EHR launches. */
  admin: boolean;
}

export interface ClientRegistration {
  clientName?: string;
  authMethod: AuthMethod;
  redirectUris: string[];
  scopes: string[];
  jwks?: JSONWebKeySet;
  jwksUri?: string;
  admin?: boolean;
  /** Fixed id and secret (the bootstrap administrator); generated otherwise. */
  clientId?: string;
  secret?: string;
}

export const ASSERTION_TYPE = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';
const ASSERTION_ALGS = ['RS384', 'ES384'];
const MAX_ASSERTION_SECONDS = 300;

export class ClientRegistry {
  private remoteJwks = new Map<string, ReturnType<typeof createRemoteJWKSet>>();

  constructor(
    private readonly db: Database,
    /** The token endpoint URL: the audience client assertions must name. */
    private readonly tokenUrl: string
  ) {}

  async register(registration: ClientRegistration): Promise<{ client: Client; secret?: string }> {
    const clientId = registration.clientId ?? randomUUID();
    const secret =
      registration.authMethod === 'client_secret_basic' ? (registration.secret ?? randomBytes(32).toString('base64url')) : undefined;
    await this.db.query(
      `INSERT INTO auth_clients (client_id, client_name, auth_method, secret_hash, jwks, jwks_uri, redirect_uris, scopes, admin)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
       ON CONFLICT (client_id) DO UPDATE SET client_name = EXCLUDED.client_name, auth_method = EXCLUDED.auth_method,
         secret_hash = EXCLUDED.secret_hash, jwks = EXCLUDED.jwks, jwks_uri = EXCLUDED.jwks_uri,
         redirect_uris = EXCLUDED.redirect_uris, scopes = EXCLUDED.scopes, admin = EXCLUDED.admin`,
      [
        clientId,
        registration.clientName ?? null,
        registration.authMethod,
        secret ? sha256(secret) : null,
        registration.jwks ? JSON.stringify(registration.jwks) : null,
        registration.jwksUri ?? null,
        registration.redirectUris,
        registration.scopes,
        registration.admin ?? false,
      ]
    );
    const client = (await this.get(clientId))!;
    return { client, secret };
  }

  async get(clientId: string): Promise<Client | undefined> {
    if (!clientId || clientId.length > 200) {
      return undefined;
    }
    const rows = await this.db.query('SELECT * FROM auth_clients WHERE client_id = $1', [clientId]);
    const row = rows[0];
    if (!row) {
      return undefined;
    }
    return {
      clientId: row.client_id,
      clientName: row.client_name ?? undefined,
      authMethod: row.auth_method,
      redirectUris: row.redirect_uris ?? [],
      scopes: row.scopes ?? [],
      jwks: row.jwks ? JSON.parse(row.jwks) : undefined,
      jwksUri: row.jwks_uri ?? undefined,
      admin: row.admin,
    };
  }

  /**
   * Authenticates the client of a token request from its Authorization header and form
   * fields; throws invalid_client (401 when Basic was used) when it cannot.
   */
  async authenticate(authorization: string | undefined, form: Record<string, string | undefined>): Promise<Client> {
    if (authorization?.startsWith('Basic ')) {
      return this.authenticateBasic(authorization);
    }
    if (form.client_assertion_type !== undefined || form.client_assertion !== undefined) {
      if (form.client_assertion_type !== ASSERTION_TYPE || !form.client_assertion) {
        throw invalidClient(`client_assertion_type must be ${ASSERTION_TYPE} with a client_assertion`);
      }
      return this.authenticateAssertion(form.client_assertion);
    }
    const client = form.client_id ? await this.get(form.client_id) : undefined;
    if (!client) {
      throw invalidClient('Unknown client');
    }
    if (client.authMethod !== 'none') {
      throw invalidClient('This client must authenticate');
    }
    return client;
  }

  private async authenticateBasic(authorization: string): Promise<Client> {
    const decoded = Buffer.from(authorization.slice(6), 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    if (colon < 0) {
      throw invalidClient('Malformed Basic credentials', true);
    }
    const clientId = safeDecode(decoded.slice(0, colon));
    const secret = safeDecode(decoded.slice(colon + 1));
    const rows = await this.db.query('SELECT secret_hash FROM auth_clients WHERE client_id = $1 AND auth_method = $2', [
      clientId,
      'client_secret_basic',
    ]);
    const expected = rows[0]?.secret_hash as string | undefined;
    const given = sha256(secret);
    if (!expected || !timingSafeEqual(Buffer.from(expected), Buffer.from(given))) {
      throw invalidClient('Client authentication failed', true);
    }
    return (await this.get(clientId))!;
  }

  private async authenticateAssertion(assertion: string): Promise<Client> {
    let header: ReturnType<typeof decodeProtectedHeader>;
    let issuer: unknown;
    try {
      header = decodeProtectedHeader(assertion);
      issuer = JSON.parse(Buffer.from(assertion.split('.')[1] ?? '', 'base64url').toString('utf8')).iss;
    } catch {
      throw invalidClient('The client assertion is not a JWT');
    }
    if (!ASSERTION_ALGS.includes(header.alg ?? '')) {
      throw invalidClient('Client assertions must be signed with RS384 or ES384');
    }
    const client = typeof issuer === 'string' ? await this.get(issuer) : undefined;
    if (!client || client.authMethod !== 'private_key_jwt') {
      throw invalidClient('Unknown client');
    }
    if (header.jku !== undefined && header.jku !== client.jwksUri) {
      throw invalidClient('The assertion jku is not the client’s registered JWKS URL');
    }
    const keys = this.keysOf(client);
    let payload;
    try {
      ({ payload } = await jwtVerify(assertion, keys, {
        algorithms: ASSERTION_ALGS,
        issuer: client.clientId,
        subject: client.clientId,
        audience: this.tokenUrl,
        clockTolerance: 30,
      }));
    } catch (err) {
      throw invalidClient(`The client assertion is not valid (${(err as Error).message})`);
    }
    const now = Math.floor(Date.now() / 1000);
    if (typeof payload.exp !== 'number' || payload.exp > now + MAX_ASSERTION_SECONDS + 30) {
      throw invalidClient('The client assertion must expire within 5 minutes');
    }
    if (typeof payload.jti !== 'string' || !payload.jti) {
      throw invalidClient('The client assertion needs a jti');
    }
    await this.db.query('DELETE FROM auth_assertion_ids WHERE expires_at < now()');
    const fresh = await this.db.query(
      'INSERT INTO auth_assertion_ids (client_id, jti, expires_at) VALUES ($1, $2, to_timestamp($3)) ON CONFLICT DO NOTHING RETURNING jti',
      [client.clientId, payload.jti, payload.exp]
    );
    if (!fresh.length) {
      throw invalidClient('This client assertion has been used before');
    }
    return client;
  }

  private keysOf(client: Client) {
    if (client.jwks) {
      return createLocalJWKSet(client.jwks);
    }
    if (client.jwksUri) {
      let remote = this.remoteJwks.get(client.jwksUri);
      if (!remote) {
        remote = createRemoteJWKSet(new URL(client.jwksUri), { timeoutDuration: 5000, cooldownDuration: 30_000 });
        this.remoteJwks.set(client.jwksUri, remote);
      }
      return remote;
    }
    throw new OAuthError('invalid_client', 'The client has no registered keys');
  }
}

export function sha256(value: string): string {
  return createHash('sha256').update(value).digest('base64url');
}

function safeDecode(value: string): string {
  try {
    return decodeURIComponent(value.replace(/\+/g, ' '));
  } catch {
    return value;
  }
}
