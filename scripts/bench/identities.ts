/**
 * Who the load acts as. By default the people who use messaging: each practitioner with a
 * user token for their own inbox, threads and replies, and patients with theirs for their
 * replies — so every request pays for what a real one does (token check, care
 * relationships, compartment confinement, messaging rules). The alternative is one
 * integrating system client (client_credentials, `system/*.cruds`).
 *
 * User tokens are minted in-process by the server's own TokenService (same keys, claims
 * and lifetime as the token endpoint's): the interactive sign-in is not what is measured.
 */
import type { AccessContext } from '../../fhir/index.js';
import type { AppContext } from '../../server/context.js';

export type Identity = 'users' | 'client';

/** Bearer tokens for one scenario run. */
export interface Tokens {
  client?: string;
  practitioners?: Record<string, string>;
  patients?: Record<string, string>;
}

export const BENCH_CLIENT_ID = 'carethread-bench';
const PORTAL_CLIENT_ID = 'carethread-bench-portal';

export async function practitionerTokens(app: AppContext, practitionerIds: string[]): Promise<Record<string, string>> {
  const tokens: Record<string, string> = {};
  for (const id of practitionerIds) {
    tokens[id] = await userToken(app, `Practitioner/${id}`, 'openid fhirUser user/*.cruds');
  }
  return tokens;
}

export async function patientTokens(app: AppContext, patientIds: string[]): Promise<Record<string, string>> {
  const tokens: Record<string, string> = {};
  for (const id of new Set(patientIds)) {
    tokens[id] = await userToken(app, `Patient/${id}`, 'openid fhirUser patient/*.cruds', id);
  }
  return tokens;
}

function userToken(app: AppContext, fhirUser: string, scope: string, patient?: string): Promise<string> {
  return app.auth.tokens.accessToken(
    { sub: fhirUser, client_id: PORTAL_CLIENT_ID, scope, fhirUser, ...(patient ? { patient } : {}) },
    app.config.auth.accessTokenSeconds
  );
}

/** A token of the bootstrap client from the server's own token endpoint (backend services). */
export async function clientToken(baseUrl: string, clientSecret: string): Promise<string> {
  const response = await fetch(`${baseUrl}/auth/token`, {
    method: 'POST',
    headers: {
      authorization: `Basic ${Buffer.from(`${BENCH_CLIENT_ID}:${clientSecret}`).toString('base64')}`,
      'content-type': 'application/x-www-form-urlencoded',
    },
    body: new URLSearchParams({ grant_type: 'client_credentials', scope: 'system/*.cruds' }).toString(),
  });
  const body = (await response.json()) as { access_token?: string };
  if (response.status !== 200 || !body.access_token) {
    throw new Error(`the benchmark client could not get a token: ${response.status} ${JSON.stringify(body)}`);
  }
  return body.access_token;
}

/** The access context the server builds for a token, for calling the store in-process. */
export function contextOf(app: AppContext, token: string, requestId: string): Promise<AccessContext> {
  return app.resourceServer.contextFor({ authorization: `Bearer ${token}`, address: '127.0.0.1', requestId });
}

/** An integrating client's context (an importer), with a token minted like a backend token. */
export async function importerContext(app: AppContext): Promise<AccessContext> {
  const token = await app.auth.tokens.accessToken({ sub: BENCH_CLIENT_ID, client_id: BENCH_CLIENT_ID, scope: 'system/*.cruds' }, 300);
  return contextOf(app, token, 'bench-seed');
}
