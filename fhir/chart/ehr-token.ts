/**
 * Access tokens for the EHR's FHIR server. A static bearer token is used as it is;
 * otherwise SMART Backend Services: the token endpoint from the EHR's
 * `.well-known/smart-configuration`, then client_credentials, the client authenticating with
 * HTTP Basic (client_secret_basic) or a signed assertion (private_key_jwt: RS384 or ES384
 * by the key's type). A token is kept until shortly before it expires, and dropped at once
 * when the EHR answers 401.
 */
import { randomUUID } from 'node:crypto';
import { importJWK, SignJWT } from 'jose';
import type { JWK } from 'jose';
import { EhrDeliveryError, networkProblem } from './ehr-errors.js';

/** Creating messages and their Provenance; reading and searching to find earlier copies. */
export const DEFAULT_EHR_SCOPE = 'system/Communication.crus system/Provenance.cs';

const ASSERTION_TYPE = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';
/** Renew this long before expiry, so a token never lapses mid-delivery. */
const RENEW_BEFORE_MS = 60_000;

export interface EhrEndpoint {
  /** The EHR's FHIR base URL. */
  fhirUrl: string;
  clientId?: string;
  clientSecret?: string;
  /** A private JWK, as JSON text. */
  privateKey?: string;
  bearerToken?: string;
  /** Scopes to ask for (default DEFAULT_EHR_SCOPE). */
  scope?: string;
}

interface SigningKey {
  key: CryptoKey | Uint8Array;
  alg: 'RS384' | 'ES384';
  kid?: string;
}

export class EhrTokens {
  private cached: { token: string; renewAt: number } | undefined;
  private inFlight: Promise<string> | undefined;
  private tokenUrl: string | undefined;
  private signingKey: Promise<SigningKey> | undefined;

  constructor(
    private readonly endpoint: EhrEndpoint,
    private readonly timeoutMs: number
  ) {
    if (!endpoint.bearerToken && !(endpoint.clientId && (endpoint.clientSecret || endpoint.privateKey))) {
      throw new Error('EHR delivery needs a bearer token, or a client id with a secret or a private key');
    }
  }

  /** Whether a 401 can be cured by asking for a new token. */
  get renewable(): boolean {
    return !this.endpoint.bearerToken;
  }

  async current(): Promise<string> {
    if (this.endpoint.bearerToken) {
      return this.endpoint.bearerToken;
    }
    if (this.cached && Date.now() < this.cached.renewAt) {
      return this.cached.token;
    }
    this.inFlight ??= this.request().finally(() => {
      this.inFlight = undefined;
    });
    return this.inFlight;
  }

  /** The EHR refused this token: the next `current()` asks for a new one. */
  forget(token: string): void {
    if (this.cached?.token === token) {
      this.cached = undefined;
    }
  }

  private async request(): Promise<string> {
    const tokenUrl = await this.discover();
    const { clientId, clientSecret } = this.endpoint;
    const form = new URLSearchParams({ grant_type: 'client_credentials', scope: this.endpoint.scope ?? DEFAULT_EHR_SCOPE });
    const headers: Record<string, string> = { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' };
    if (clientSecret) {
      headers.authorization = `Basic ${Buffer.from(`${encodeURIComponent(clientId!)}:${encodeURIComponent(clientSecret)}`).toString('base64')}`;
    } else {
      form.set('client_assertion_type', ASSERTION_TYPE);
      form.set('client_assertion', await this.assertion(tokenUrl));
    }
    const started = Date.now();
    const response = await this.fetch(tokenUrl, { method: 'POST', headers, body: form.toString() });
    const body = (await response.json().catch(() => ({}))) as { access_token?: unknown; expires_in?: unknown; error?: unknown };
    if (!response.ok || typeof body.access_token !== 'string') {
      if (response.status === 404) {
        this.tokenUrl = undefined;
      }
      const code = typeof body.error === 'string' && /^[a-z_]{1,40}$/.test(body.error) ? ` ${body.error}` : '';
      // Refused credentials are an operator's to fix; the entry waits and retries meanwhile.
      throw new EhrDeliveryError(`EHR token endpoint answered ${response.status}${code}`);
    }
    const lifetimeMs = (typeof body.expires_in === 'number' && body.expires_in > 0 ? body.expires_in : 300) * 1000;
    this.cached = { token: body.access_token, renewAt: started + Math.max(lifetimeMs - RENEW_BEFORE_MS, lifetimeMs / 2) };
    return body.access_token;
  }

  private async discover(): Promise<string> {
    if (this.tokenUrl) {
      return this.tokenUrl;
    }
    const response = await this.fetch(`${this.endpoint.fhirUrl}/.well-known/smart-configuration`, { headers: { accept: 'application/json' } });
    const body = (await response.json().catch(() => ({}))) as { token_endpoint?: unknown };
    if (!response.ok || typeof body.token_endpoint !== 'string' || !/^https?:\/\//.test(body.token_endpoint)) {
      throw new EhrDeliveryError(`EHR SMART discovery answered ${response.status}${response.ok ? ' without a token_endpoint' : ''}`);
    }
    this.tokenUrl = body.token_endpoint;
    return this.tokenUrl;
  }

  private async assertion(tokenUrl: string): Promise<string> {
    this.signingKey ??= importSigningKey(this.endpoint.privateKey!);
    const { key, alg, kid } = await this.signingKey;
    const clientId = this.endpoint.clientId!;
    return new SignJWT({ jti: randomUUID() })
      .setProtectedHeader({ alg, typ: 'JWT', ...(kid ? { kid } : {}) })
      .setIssuer(clientId)
      .setSubject(clientId)
      .setAudience(tokenUrl)
      .setIssuedAt()
      .setExpirationTime('5m')
      .sign(key);
  }

  private async fetch(url: string, init: RequestInit): Promise<Response> {
    try {
      return await fetch(url, { ...init, signal: AbortSignal.timeout(this.timeoutMs) });
    } catch (err) {
      throw new EhrDeliveryError(networkProblem(err));
    }
  }
}

/** RS384 for an RSA key, ES384 for an EC (P-384) key; the kid travels in the assertion header. */
export async function importSigningKey(json: string): Promise<SigningKey> {
  const jwk = JSON.parse(json) as JWK;
  const alg = jwk.kty === 'RSA' ? 'RS384' : jwk.kty === 'EC' && jwk.crv === 'P-384' ? 'ES384' : undefined;
  if (!alg || !jwk.d) {
    throw new Error('The EHR private key must be a private RSA or EC P-384 JWK');
  }
  return { key: await importJWK(jwk, alg), alg, kid: jwk.kid };
}
