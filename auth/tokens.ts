/**
 * Access tokens and id_tokens as signed JWTs (RS256, with `kid`), and their verification:
 * our own tokens against our keys, and tokens of configured trusted issuers (an EHR's own
 * SMART server) against that issuer's JWKS. Every token must name this server's FHIR base
 * as its audience; revoked tokens and tokens of revoked grants are refused.
 */
import { randomUUID } from 'node:crypto';
import { createLocalJWKSet, createRemoteJWKSet, decodeJwt, jwtVerify, SignJWT } from 'jose';
import type { JWTPayload } from 'jose';
import type { GrantStore } from './grants.js';
import { SIGNING_ALG } from './keys.js';
import type { KeyStore } from './keys.js';

export interface AccessClaims extends JWTPayload {
  client_id: string;
  scope: string;
  fhirUser?: string;
  patient?: string;
  encounter?: string;
  /** The grant the token was issued from. */
  gid?: string;
  /** CareThread roles of the user (e.g. auditor). */
  roles?: string[];
}

export interface TrustedIssuerKeys {
  issuer: string;
  jwksUri: string;
}

/** Verified tokens remembered (their signature checks are the costliest step of a request). */
const VERIFIED_CACHE_SIZE = 5000;
const CLOCK_TOLERANCE_SECONDS = 5;

export class TokenService {
  private trusted = new Map<string, ReturnType<typeof createRemoteJWKSet>>();
  /**
   * Tokens whose signature, issuer and audience have been verified, by their exact text, in
   * the order first seen (the oldest is dropped when full). Expiry and revocation are still
   * checked on every use.
   */
  private verified = new Map<string, AccessClaims>();

  constructor(
    private readonly keys: KeyStore,
    private readonly grants: GrantStore,
    /** Our issuer and the audience every accepted token must carry (the FHIR base URL). */
    readonly issuer: string,
    trustedIssuers: TrustedIssuerKeys[]
  ) {
    for (const t of trustedIssuers) {
      this.trusted.set(t.issuer, createRemoteJWKSet(new URL(t.jwksUri), { timeoutDuration: 5000 }));
    }
  }

  async accessToken(claims: Omit<AccessClaims, 'iss' | 'aud' | 'exp' | 'iat' | 'jti'>, lifetimeSeconds: number): Promise<string> {
    const { kid, key } = this.keys.signingKey;
    return new SignJWT({ ...claims })
      .setProtectedHeader({ alg: SIGNING_ALG, kid, typ: 'at+jwt' })
      .setIssuer(this.issuer)
      .setAudience(this.issuer)
      .setIssuedAt()
      .setExpirationTime(Math.floor(Date.now() / 1000) + lifetimeSeconds)
      .setJti(randomUUID())
      .sign(key);
  }

  async idToken(clientId: string, fhirUser: string, subject: string, nonce: string | undefined, lifetimeSeconds: number): Promise<string> {
    const { kid, key } = this.keys.signingKey;
    return new SignJWT({ fhirUser, ...(nonce ? { nonce } : {}) })
      .setProtectedHeader({ alg: SIGNING_ALG, kid, typ: 'JWT' })
      .setIssuer(this.issuer)
      .setSubject(subject)
      .setAudience(clientId)
      .setIssuedAt()
      .setExpirationTime(Math.floor(Date.now() / 1000) + lifetimeSeconds)
      .sign(key);
  }

  /** The claims of a valid, unrevoked access token for this server; undefined otherwise. */
  async verify(token: string): Promise<AccessClaims | undefined> {
    const claims = this.verified.get(token) ?? (await this.verifySignature(token));
    if (!claims || (claims.exp ?? 0) + CLOCK_TOLERANCE_SECONDS <= Date.now() / 1000) {
      this.verified.delete(token);
      return undefined;
    }
    if (await this.grants.isRevoked(claims.jti, claims.iss === this.issuer ? claims.gid : undefined)) {
      return undefined;
    }
    return claims;
  }

  /** Checks a token's signature, issuer, audience and times, and remembers it when valid. */
  private async verifySignature(token: string): Promise<AccessClaims | undefined> {
    let issuer: unknown;
    try {
      issuer = decodeJwt(token).iss;
    } catch {
      return undefined;
    }
    const keys = issuer === this.issuer ? createLocalJWKSet(this.keys.jwks()) : typeof issuer === 'string' ? this.trusted.get(issuer) : undefined;
    if (!keys) {
      return undefined;
    }
    try {
      const { payload } = await jwtVerify(token, keys, {
        issuer: issuer as string,
        audience: [this.issuer, `${this.issuer}/`],
        algorithms: ['RS256', 'RS384', 'ES256', 'ES384'],
        clockTolerance: CLOCK_TOLERANCE_SECONDS,
        requiredClaims: ['exp'],
      });
      const claims = payload as AccessClaims;
      if (typeof claims.scope !== 'string') {
        return undefined;
      }
      claims.client_id ??= String(payload.azp ?? payload.sub ?? '');
      if (this.verified.size >= VERIFIED_CACHE_SIZE) {
        this.verified.delete(this.verified.keys().next().value!);
      }
      this.verified.set(token, Object.freeze(claims));
      return claims;
    } catch {
      return undefined;
    }
  }
}
