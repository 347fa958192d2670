/**
 * Signatures on the audit chain's head: a compact JWS (RS256, with `kid`) over
 * `{"position":…,"hash":"…"}`, made with the server's signing key. Verifiable offline with
 * the server's report keys (`/auth/report-keys`), like signed reports.
 */
import { CompactSign } from 'jose';
import { SIGNING_ALG } from './keys.js';
import type { KeyStore } from './keys.js';

export const CHAIN_HEAD_JWS_TYPE = 'carethread-audit-chain-head+jws';

export function chainHeadSigner(keys: KeyStore) {
  return async (head: { position: number; hash: string }): Promise<string> => {
    const { kid, key } = keys.signingKey;
    return new CompactSign(new TextEncoder().encode(JSON.stringify({ position: head.position, hash: head.hash })))
      .setProtectedHeader({ alg: SIGNING_ALG, kid, typ: CHAIN_HEAD_JWS_TYPE })
      .sign(key);
  };
}
