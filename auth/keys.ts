/**
 * The server's signing keys (RS256, for access tokens, id_tokens and signed reports). One
 * is generated on first start and kept in the database, so every instance signs with the
 * same key and tokens survive restarts. `rotate()` starts a new key; retired keys stay in the
 * JWKS until every token they signed has expired.
 */
import { randomUUID } from 'node:crypto';
import { exportJWK, generateKeyPair, importJWK } from 'jose';
import type { JWK, CryptoKey } from 'jose';
import type { Database, Queryable } from '../fhir/db/database.js';

export const SIGNING_ALG = 'RS256';
/** Arbitrary constant naming the lock under which the first signing key is created. */
const FIRST_KEY_LOCK = 7_241_905_114;

interface LoadedKey {
  kid: string;
  privateKey: CryptoKey;
  publicJwk: JWK;
  retiredAt?: number;
}

export class KeyStore {
  private keys: LoadedKey[] = [];

  private constructor(
    private readonly db: Database,
    /** How long a retired key stays published (the longest token lifetime). */
    private readonly retentionSeconds: number
  ) {}

  static async open(db: Database, retentionSeconds: number): Promise<KeyStore> {
    const store = new KeyStore(db, retentionSeconds);
    await store.load();
    if (!store.keys.some((k) => !k.retiredAt)) {
      await store.createFirstKey();
    }
    return store;
  }

  /**
   * Instances starting together on a new database must agree on one key: each rotating would
   * retire the others' key and sign with its own, which they never loaded, so their tokens
   * would be refused by each other. Under the lock only the first creates it.
   */
  private async createFirstKey(): Promise<void> {
    const key = await newKey();
    await this.db.transaction(async (tx) => {
      await tx.query('SELECT pg_advisory_xact_lock($1)', [FIRST_KEY_LOCK]);
      if (!(await tx.query('SELECT 1 FROM auth_keys WHERE retired_at IS NULL LIMIT 1')).length) {
        await insertKey(tx, key);
      }
    });
    await this.load();
  }

  /** The key new signatures use. */
  get signingKey(): { kid: string; key: CryptoKey } {
    const current = this.keys.find((k) => !k.retiredAt);
    if (!current) {
      throw new Error('No active signing key');
    }
    return { kid: current.kid, key: current.privateKey };
  }

  /** The public keys that verify tokens still in circulation. */
  jwks(): { keys: JWK[] } {
    const cutoff = Date.now() - this.retentionSeconds * 1000;
    return { keys: this.keys.filter((k) => !k.retiredAt || k.retiredAt > cutoff).map((k) => k.publicJwk) };
  }

  /**
   * Every public key this server has signed with, retired or not: signed reports are kept
   * for years and must stay verifiable (tokens are bounded by their own expiry instead).
   */
  allPublicKeys(): { keys: JWK[] } {
    return { keys: this.keys.map((k) => k.publicJwk) };
  }

  /** Retires the active key and starts signing with a new one. */
  async rotate(): Promise<string> {
    const key = await newKey();
    await this.db.transaction(async (tx) => {
      await tx.query('UPDATE auth_keys SET retired_at = now() WHERE retired_at IS NULL');
      await insertKey(tx, key);
    });
    await this.load();
    return key.kid;
  }

  /** Re-reads the keys (another instance may have rotated). */
  async load(): Promise<void> {
    const rows = await this.db.query<{ kid: string; private_jwk: string; public_jwk: string; retired_at: string | null }>(
      'SELECT kid, private_jwk, public_jwk, retired_at FROM auth_keys ORDER BY created_at DESC'
    );
    const keys: LoadedKey[] = [];
    for (const row of rows) {
      const privateKey = (await importJWK(JSON.parse(row.private_jwk), SIGNING_ALG)) as CryptoKey;
      keys.push({
        kid: row.kid,
        privateKey,
        publicJwk: JSON.parse(row.public_jwk),
        retiredAt: row.retired_at ? Date.parse(row.retired_at) : undefined,
      });
    }
    this.keys = keys;
  }
}

interface NewKey {
  kid: string;
  privateJwk: JWK;
  publicJwk: JWK;
}

async function newKey(): Promise<NewKey> {
  const kid = randomUUID();
  const { privateKey, publicKey } = await generateKeyPair(SIGNING_ALG, { extractable: true, modulusLength: 2048 });
  return {
    kid,
    privateJwk: { ...(await exportJWK(privateKey)), kid, alg: SIGNING_ALG },
    publicJwk: { ...(await exportJWK(publicKey)), kid, alg: SIGNING_ALG, use: 'sig' },
  };
}

async function insertKey(tx: Queryable, key: NewKey): Promise<void> {
  await tx.query('INSERT INTO auth_keys (kid, alg, private_jwk, public_jwk) VALUES ($1, $2, $3, $4)', [
    key.kid,
    SIGNING_ALG,
    JSON.stringify(key.privateJwk),
    JSON.stringify(key.publicJwk),
  ]);
}
