/**
 * Signatures on engagement reports: a compact JWS (RS256, with `kid`) whose payload is the
 * report's canonical JSON, made with the server's signing key. Anyone holding the server's
 * report keys (`/auth/report-keys`, every key it ever signed with) can verify one offline.
 */
import { CompactSign, compactVerify, createLocalJWKSet } from 'jose';
import type { JSONWebKeySet } from 'jose';
import type { MeasureReport } from '@medplum/fhirtypes';
import { signatureOf, signedContent } from '../fhir/measures/canonical.js';
import { SIGNING_ALG } from './keys.js';
import type { KeyStore } from './keys.js';

export const REPORT_JWS_TYPE = 'carethread-measure-report+jws';

export function reportSigner(keys: KeyStore) {
  return async (report: MeasureReport): Promise<string> => {
    const { kid, key } = keys.signingKey;
    return new CompactSign(new TextEncoder().encode(signedContent(report)))
      .setProtectedHeader({ alg: SIGNING_ALG, kid, typ: REPORT_JWS_TYPE })
      .sign(key);
  };
}

export interface ReportVerification {
  valid: boolean;
  kid?: string;
  reason?: string;
}

/** Checks a signed report: the signature verifies and covers exactly this report's content. */
export async function verifyReport(report: MeasureReport, jwks: JSONWebKeySet): Promise<ReportVerification> {
  const jws = signatureOf(report);
  if (!jws) {
    return { valid: false, reason: 'the report carries no signature' };
  }
  try {
    const { payload, protectedHeader } = await compactVerify(jws, createLocalJWKSet(jwks), { algorithms: [SIGNING_ALG] });
    if (protectedHeader.typ !== REPORT_JWS_TYPE) {
      return { valid: false, kid: protectedHeader.kid, reason: 'the signature is not a report signature' };
    }
    if (new TextDecoder().decode(payload) !== signedContent(report)) {
      return { valid: false, kid: protectedHeader.kid, reason: 'the report was changed after it was signed' };
    }
    return { valid: true, kid: protectedHeader.kid };
  } catch (err) {
    return { valid: false, reason: `the signature does not verify (${(err as Error).message})` };
  }
}
