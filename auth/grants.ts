/**
 * Grants and the credentials derived from them. A grant is what a user (or a client for
 * itself) authorized: client, user, scopes, patient and encounter context. Authorization
 * codes (single use, 60 s, bound to client, redirect URI and PKCE challenge) and refresh
 * tokens (rotated on every use) point at a grant; replaying a used code or a rotated-out
 * refresh token revokes the whole grant, and every access token issued from it dies too.
 */
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import type { Database } from '../fhir/db/database.js';
import { invalidGrant } from './errors.js';
import { sha256 } from './clients.js';

export interface Grant {
  id: string;
  clientId: string;
  fhirUser?: string;
  /** The login account that granted it (EHR launches have none). */
  userId?: string;
  scope: string;
  patient?: string;
  encounter?: string;
  /** False when the launching EHR already shows the patient banner. */
  needPatientBanner: boolean;
}

export interface RedeemedCode {
  grant: Grant;
  nonce?: string;
}

const CODE_SECONDS = 60;
/** How often other instances' revocations are picked up. */
const REVOCATION_REFRESH_MS = 2000;

export class GrantStore {
  private revokedGrants = new Set<string>();
  private revokedTokens = new Set<string>();
  private lastRefresh = 0;
  private refreshing: Promise<void> | undefined;

  constructor(
    private readonly db: Database,
    private readonly refreshTokenSeconds: number
  ) {}

  async create(grant: Omit<Grant, 'id'>): Promise<Grant> {
    const id = randomUUID();
    await this.db.query(
      'INSERT INTO auth_grants (id, client_id, fhir_user, user_id, scope, patient, encounter, need_patient_banner) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)',
      [id, grant.clientId, grant.fhirUser ?? null, grant.userId ?? null, grant.scope, grant.patient ?? null, grant.encounter ?? null, grant.needPatientBanner]
    );
    return { id, ...grant };
  }

  async issueCode(grant: Grant, redirectUri: string, codeChallenge: string, nonce?: string): Promise<string> {
    const code = randomBytes(32).toString('base64url');
    await this.db.query(
      `INSERT INTO auth_codes (code_hash, grant_id, client_id, redirect_uri, code_challenge, nonce, expires_at)
       VALUES ($1, $2, $3, $4, $5, $6, now() + make_interval(secs => $7))`,
      [sha256(code), grant.id, grant.clientId, redirectUri, codeChallenge, nonce ?? null, CODE_SECONDS]
    );
    return code;
  }

  /** Exchanges a code; a second use revokes what the first one issued. */
  async redeemCode(code: string, clientId: string, redirectUri: string | undefined, verifier: string | undefined): Promise<RedeemedCode> {
    if (!verifier || !/^[A-Za-z0-9\-._~]{43,128}$/.test(verifier)) {
      throw invalidGrant('A code_verifier of 43-128 characters is required');
    }
    const { rows, used } = await this.db.transaction(async (tx) => {
      const found = await tx.query(
        `SELECT c.*, g.fhir_user, g.user_id, g.scope, g.patient, g.encounter, g.need_patient_banner, g.revoked_at FROM auth_codes c JOIN auth_grants g ON g.id = c.grant_id
         WHERE c.code_hash = $1 FOR UPDATE OF c`,
        [sha256(code)]
      );
      const wasUsed = Boolean(found[0]?.used_at);
      if (found[0] && !wasUsed) {
        await tx.query('UPDATE auth_codes SET used_at = now() WHERE code_hash = $1', [sha256(code)]);
      }
      return { rows: found, used: wasUsed };
    });
    const row = rows[0];
    if (!row) {
      throw invalidGrant('Unknown authorization code');
    }
    if (used) {
      await this.revokeGrant(row.grant_id);
      throw invalidGrant('This authorization code was already used; the tokens issued for it are revoked');
    }
    if (row.client_id !== clientId) {
      throw invalidGrant('The code was issued to another client');
    }
    if (Date.parse(row.expires_at) < Date.now()) {
      throw invalidGrant('The authorization code has expired');
    }
    if (redirectUri !== row.redirect_uri) {
      throw invalidGrant('redirect_uri does not match the authorization request');
    }
    const challenge = createHash('sha256').update(verifier).digest('base64url');
    if (challenge !== row.code_challenge) {
      throw invalidGrant('code_verifier does not match the code_challenge');
    }
    if (row.revoked_at) {
      throw invalidGrant('The grant has been revoked');
    }
    return { grant: grantOf(row, row.grant_id), nonce: row.nonce ?? undefined };
  }

  async issueRefreshToken(grant: Grant, scope: string): Promise<string> {
    const token = randomBytes(32).toString('base64url');
    await this.db.query(
      `INSERT INTO auth_refresh_tokens (token_hash, grant_id, client_id, scope, expires_at)
       VALUES ($1, $2, $3, $4, now() + make_interval(secs => $5))`,
      [sha256(token), grant.id, grant.clientId, scope, this.refreshTokenSeconds]
    );
    return token;
  }

  /**
   * Uses a refresh token once; replaying a rotated-out one revokes the grant. A request that
   * is refused for another reason (another client, a scope `check` that throws) leaves the
   * token unused, so a mistaken or hostile request cannot make the owner's next refresh look
   * like a replay.
   */
  async useRefreshToken(token: string, clientId: string, check?: (scope: string) => void): Promise<{ grant: Grant; scope: string }> {
    const hash = sha256(token);
    const rows = await this.db.query(
      `SELECT t.*, g.fhir_user, g.user_id, g.patient, g.encounter, g.need_patient_banner, g.revoked_at, g.scope AS grant_scope FROM auth_refresh_tokens t
       JOIN auth_grants g ON g.id = t.grant_id WHERE t.token_hash = $1`,
      [hash]
    );
    const row = rows[0];
    if (!row) {
      throw invalidGrant('Unknown refresh token');
    }
    if (row.client_id !== clientId) {
      throw invalidGrant('The refresh token was issued to another client');
    }
    const replay = async () => {
      await this.revokeGrant(row.grant_id);
      return invalidGrant('This refresh token was already used; the grant is revoked');
    };
    if (row.rotated_at) {
      throw await replay();
    }
    if (row.revoked_at || Date.parse(row.expires_at) < Date.now()) {
      throw invalidGrant('The refresh token has expired or been revoked');
    }
    check?.(row.scope);
    const rotated = await this.db.query(`UPDATE auth_refresh_tokens SET rotated_at = now() WHERE token_hash = $1 AND rotated_at IS NULL RETURNING grant_id`, [hash]);
    if (!rotated.length) {
      // Another request used it between our read and this update.
      throw await replay();
    }
    return { grant: grantOf({ ...row, scope: row.grant_scope }, row.grant_id), scope: row.scope };
  }

  /** Revokes a refresh token (RFC 7009); answers whether it was one. */
  async revokeRefreshToken(token: string, clientId: string): Promise<boolean> {
    const rows = await this.db.query('SELECT grant_id FROM auth_refresh_tokens WHERE token_hash = $1 AND client_id = $2', [sha256(token), clientId]);
    if (!rows.length) {
      return false;
    }
    await this.revokeGrant(rows[0].grant_id);
    return true;
  }

  async revokeGrant(grantId: string): Promise<void> {
    await this.db.query('UPDATE auth_grants SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL', [grantId]);
    this.revokedGrants.add(grantId);
  }

  /** The client a refresh token was issued to, if it is one of ours. */
  async refreshTokenClient(token: string): Promise<string | undefined> {
    const rows = await this.db.query<{ client_id: string }>('SELECT client_id FROM auth_refresh_tokens WHERE token_hash = $1', [sha256(token)]);
    return rows[0]?.client_id;
  }

  async revokeAccessToken(jti: string, expiresAt: number): Promise<void> {
    await this.db.query('INSERT INTO auth_revoked_tokens (jti, expires_at) VALUES ($1, to_timestamp($2)) ON CONFLICT DO NOTHING', [jti, expiresAt]);
    this.revokedTokens.add(jti);
  }

  /** Whether an access token (by jti and grant) has been revoked, here or on another instance. */
  async isRevoked(jti: string | undefined, grantId: string | undefined): Promise<boolean> {
    if (Date.now() - this.lastRefresh > REVOCATION_REFRESH_MS) {
      this.refreshing ??= this.refreshRevocations().finally(() => (this.refreshing = undefined));
      await this.refreshing;
    }
    return (jti !== undefined && this.revokedTokens.has(jti)) || (grantId !== undefined && this.revokedGrants.has(grantId));
  }

  private async refreshRevocations(): Promise<void> {
    const [grants, tokens] = await Promise.all([
      this.db.query<{ id: string }>("SELECT id FROM auth_grants WHERE revoked_at > now() - interval '1 day'"),
      this.db.query<{ jti: string }>('SELECT jti FROM auth_revoked_tokens WHERE expires_at > now()'),
    ]);
    this.revokedGrants = new Set(grants.map((g) => g.id));
    this.revokedTokens = new Set(tokens.map((t) => t.jti));
    this.lastRefresh = Date.now();
  }
}

function grantOf(row: Record<string, any>, id: string): Grant {
  return {
    id,
    clientId: row.client_id,
    fhirUser: row.fhir_user ?? undefined,
    userId: row.user_id ?? undefined,
    scope: row.scope,
    patient: row.patient ?? undefined,
    encounter: row.encounter ?? undefined,
    needPatientBanner: row.need_patient_banner ?? true,
  };
}
