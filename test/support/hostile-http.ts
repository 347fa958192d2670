/**
 * The sending and checking half of the hostile-input suites: a raw HTTP/1.1 client (over
 * node:net, so bodies, paths and headers go out byte for byte, however wrong), forged
 * access tokens, a fingerprint of the stored data to prove a refused request changed
 * nothing, the assertions every answer must pass, and the harness each suite starts: a
 * server with an admin, a signed-in patient, live sign-in and consent forms, and `check`.
 */
import { createHmac, generateKeyPairSync } from 'node:crypto';
import net from 'node:net';
import fc from 'fast-check';
import { SignJWT } from 'jose';
import { expect } from 'vitest';
import { SCRIPT_INJECTIONS } from './hostile.js';
import { startTestServer } from './server.js';
import type { TestServer } from './server.js';
import { createUser, registerPublicClient, REDIRECT_URI, userToken } from './tokens.js';

// ---------------------------------------------------------------- raw HTTP

export interface RawResponse {
  status: number;
  headers: Record<string, string>;
  body: Buffer;
  text: string;
}

export interface RawRequest {
  method: string;
  /** Sent as is: nothing is encoded or normalized. */
  path: string;
  headers?: [string, string][];
  body?: Buffer | string;
  /** Leave out Content-Length (e.g. for a lying or missing length). */
  noLength?: boolean;
}

/** One request on its own TCP connection, written byte for byte; the whole answer parsed. */
export function rawRequest(server: TestServer, request: RawRequest): Promise<RawResponse> {
  const url = new URL(server.baseUrl);
  const body = request.body === undefined ? Buffer.alloc(0) : Buffer.isBuffer(request.body) ? request.body : Buffer.from(request.body, 'utf8');
  const lines = [`${request.method} ${request.path} HTTP/1.1`, `Host: ${url.host}`, 'Connection: close'];
  for (const [name, value] of request.headers ?? []) {
    lines.push(`${name}: ${value}`);
  }
  if (!request.noLength && (body.length > 0 || ['POST', 'PUT', 'PATCH'].includes(request.method))) {
    lines.push(`Content-Length: ${body.length}`);
  }
  const head = Buffer.from(`${lines.join('\r\n')}\r\n\r\n`, 'latin1');
  return new Promise((resolve, reject) => {
    const socket = net.connect(Number(url.port), url.hostname);
    const chunks: Buffer[] = [];
    socket.setTimeout(20_000, () => socket.destroy(new Error(`No answer to ${request.method} ${request.path.slice(0, 200)}`)));
    socket.on('data', (chunk) => chunks.push(chunk));
    // The server may answer (413, 431) and close before it has read everything we send.
    socket.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'ECONNRESET' || err.code === 'EPIPE') {
        finish();
      } else {
        reject(err);
      }
    });
    socket.on('end', finish);
    let done = false;
    function finish() {
      if (done) return;
      done = true;
      socket.destroy();
      try {
        resolve(parseResponse(Buffer.concat(chunks)));
      } catch (err) {
        reject(err);
      }
    }
    // No half-close: a server may drop a connection whose client stopped sending. `Connection:
    // close` makes it end the connection once it has answered.
    socket.write(Buffer.concat([head, body]));
  });
}

function parseResponse(raw: Buffer): RawResponse {
  const split = raw.indexOf('\r\n\r\n');
  if (split < 0) {
    throw new Error(`The server closed the connection without a complete answer (${raw.length} bytes)`);
  }
  const [statusLine, ...headerLines] = raw.subarray(0, split).toString('latin1').split('\r\n');
  const status = Number(statusLine.split(' ')[1]);
  const headers: Record<string, string> = {};
  for (const line of headerLines) {
    const colon = line.indexOf(':');
    headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
  }
  let body = raw.subarray(split + 4);
  if (/chunked/i.test(headers['transfer-encoding'] ?? '')) {
    const parts: Buffer[] = [];
    let at = 0;
    for (;;) {
      const eol = body.indexOf('\r\n', at);
      const size = parseInt(body.subarray(at, eol).toString('latin1'), 16);
      if (!size) break;
      parts.push(body.subarray(eol + 2, eol + 2 + size));
      at = eol + 2 + size + 2;
    }
    body = Buffer.concat(parts);
  } else if (headers['content-length']) {
    body = body.subarray(0, Number(headers['content-length']));
  }
  return { status, headers, body, text: body.toString('utf8') };
}

// ---------------------------------------------------------------- tokens

/** Kinds of forged or broken bearer tokens. */
export type ForgeryKind = 'alg-none' | 'hs256-public-key' | 'wrong-issuer' | 'wrong-audience' | 'expired' | 'not-yet-valid' | 'foreign-key' | 'garbage' | 'truncated' | 'hostile-claims' | 'tampered-payload';

export const FORGERY_KINDS: ForgeryKind[] = ['alg-none', 'hs256-public-key', 'wrong-issuer', 'wrong-audience', 'expired', 'not-yet-valid', 'foreign-key', 'garbage', 'truncated', 'hostile-claims', 'tampered-payload'];

/** A well-formed RSA key the server has never seen (made once: key generation is slow). */
const FOREIGN_KEY = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;

const b64 = (value: unknown) => Buffer.from(typeof value === 'string' ? value : JSON.stringify(value)).toString('base64url');

/**
 * A token that must be refused. Signed ones use the server's own signing key (so only the
 * forged claim is wrong), a key of our own, or the public key as an HMAC secret.
 */
export async function forgedToken(server: TestServer, kind: ForgeryKind, claim: string, validToken: string): Promise<string> {
  const { kid, key } = server.app.auth.keys.signingKey;
  const issuer = server.fhirBase;
  const now = Math.floor(Date.now() / 1000);
  const claims = { client_id: 'test-admin', scope: 'system/*.cruds', fhirUser: 'Practitioner/x' };
  const sign = (payload: Record<string, unknown>, signingKey: CryptoKey | Uint8Array | import('node:crypto').KeyObject = key) =>
    new SignJWT(payload).setProtectedHeader({ alg: 'RS256', kid, typ: 'at+jwt' }).sign(signingKey);
  switch (kind) {
    case 'alg-none':
      return `${b64({ alg: 'none', typ: 'at+jwt', kid })}.${b64({ ...claims, iss: issuer, aud: issuer, exp: now + 600, iat: now })}.`;
    case 'hs256-public-key': {
      const publicJwk = server.app.auth.keys.jwks().keys[0];
      const secret = JSON.stringify(publicJwk);
      const signingInput = `${b64({ alg: 'HS256', typ: 'at+jwt', kid })}.${b64({ ...claims, iss: issuer, aud: issuer, exp: now + 600, iat: now })}`;
      return `${signingInput}.${createHmac('sha256', secret).update(signingInput).digest('base64url')}`;
    }
    case 'wrong-issuer':
      return sign({ ...claims, iss: claim || 'https://evil.example', aud: issuer, exp: now + 600, iat: now });
    case 'wrong-audience':
      return sign({ ...claims, iss: issuer, aud: claim || 'https://evil.example', exp: now + 600, iat: now });
    case 'expired':
      return sign({ ...claims, iss: issuer, aud: issuer, exp: now - 3600, iat: now - 7200 });
    case 'not-yet-valid':
      return sign({ ...claims, iss: issuer, aud: issuer, exp: now + 7200, iat: now, nbf: now + 3600 });
    case 'foreign-key':
      return sign({ ...claims, iss: issuer, aud: issuer, exp: now + 600, iat: now }, FOREIGN_KEY);
    case 'garbage':
      return claim;
    case 'truncated':
      return validToken.slice(0, Math.max(1, Math.floor(validToken.length * (0.3 + (claim.length % 7) / 10))));
    case 'hostile-claims':
      // Correctly signed by the server's key, but its claims are hostile values of wrong types.
      return sign({ iss: issuer, aud: issuer, exp: now + 600, iat: now, client_id: [claim], scope: { claim }, fhirUser: claim, patient: claim, gid: claim, roles: claim });
    case 'tampered-payload': {
      const [header, , signature] = validToken.split('.');
      return `${header}.${b64({ ...claims, iss: issuer, aud: issuer, exp: now + 600, scope: 'system/*.cruds' })}.${signature}`;
    }
  }
}

// ---------------------------------------------------------------- data fingerprint

/** Tables a refused request may legitimately write: the audit trail records failures by design. */
const AUDIT_TABLES = new Set(['AuditEvent', 'AuditEvent_History', 'audit_chain']);

/**
 * Every table but the audit trail, folded into one string per table: for resource tables
 * (and their history) the row count, version sum, latest last_updated and deleted count; for
 * the others (auth, outbox, preferences) the row count and an md5 of the rows' text. Outbox
 * rows are fingerprinted by identity only: the delivery worker updates them in the background.
 */
export async function fingerprint(server: TestServer): Promise<Record<string, string>> {
  const tables = await server.app.db.query<{ table_name: string; versioned: boolean }>(
    `SELECT t.table_name, EXISTS (SELECT 1 FROM information_schema.columns c WHERE c.table_schema = t.table_schema AND c.table_name = t.table_name AND c.column_name = 'version') AS versioned
       FROM information_schema.tables t WHERE t.table_schema = current_schema() AND t.table_type = 'BASE TABLE' ORDER BY t.table_name`
  );
  const parts = tables
    .filter((t) => !AUDIT_TABLES.has(t.table_name))
    .map(({ table_name: name, versioned }) => {
      // Resource tables: every write adds a row or bumps a version and last_updated. Other
      // tables are small: hash their rows.
      const summary = versioned
        ? `count(*)::text || ':' || coalesce(sum(x.version), 0)::text || ':' || coalesce(max(x.last_updated)::text, '') || ':' || count(*) FILTER (WHERE x.deleted)::text`
        : `count(*)::text || ':' || coalesce(md5(string_agg(${name === 'outbox' ? '(x.id, x.kind, x.idempotency_key)::text' : 'x::text'}, '|' ORDER BY x::text)), '')`;
      return `SELECT '${name}' AS t, ${summary} AS h FROM "${name}" x`;
    });
  const rows = await server.app.db.query<{ t: string; h: string }>(parts.join(' UNION ALL '));
  return Object.fromEntries(rows.map((r) => [r.t, r.h]));
}

// ---------------------------------------------------------------- assertions

/** What every answer to hostile input must be; `label` says which request it was. */
export function expectSafeAnswer(res: RawResponse, kind: 'fhir' | 'oauth' | 'any', label: string): void {
  expect(res.status, `${label} → ${res.status} ${res.text.slice(0, 300)}`).toBeLessThan(500);
  expect(res.status, label).toBeGreaterThanOrEqual(200);
  if (res.status < 400 || label.startsWith('HEAD ')) return;
  // 'any': a path no endpoint owns (e.g. under /auth/): either kind of error will do.
  if (kind === 'fhir' || (kind === 'any' && /fhir\+json/.test(res.headers['content-type'] ?? ''))) {
    expect(res.headers['content-type'] ?? 'none', `${label} → ${res.status} ${res.text.slice(0, 200)}`).toMatch(/^application\/fhir\+json/);
    expect(JSON.parse(res.text).resourceType, label).toBe('OperationOutcome');
  } else if (kind === 'oauth' || kind === 'any') {
    expect(res.headers['content-type'] ?? 'none', `${label} → ${res.status} ${res.text.slice(0, 200)}`).toMatch(/^application\/json/);
    const body = JSON.parse(res.text) as { error?: unknown; error_description?: unknown };
    expect(typeof body.error, `${label}: ${res.text.slice(0, 200)}`).toBe('string');
    expect(typeof body.error_description, `${label}: ${res.text.slice(0, 200)}`).toBe('string');
  }
  expectNoReflectedScript(res, label);
}

/** An HTML answer must not carry generated markup back unescaped. */
export function expectNoReflectedScript(res: RawResponse, label: string): void {
  if (!/html/.test(res.headers['content-type'] ?? '')) return;
  // Escaped text may still spell `onload=…`; what must never appear is a tag or URL we wrote.
  for (const injection of SCRIPT_INJECTIONS.filter((s) => /[<>"']/.test(s))) {
    expect(res.text.includes(injection), `${label}: reflected ${injection}`).toBe(false);
  }
  expect(/<(script|svg|img|iframe)\b[^>]*hostile-xss/i.test(res.text), `${label}: reflected markup`).toBe(false);
  expect(/\s(href|src|action|formaction)=["']?javascript:/i.test(res.text), `${label}: reflected javascript: URL`).toBe(false);
}

/** The seed every run uses unless told otherwise, so a red run is the code's doing, not the draw's. */
const DEFAULT_SEED = 20261202;

/**
 * The seed of this run: `HOSTILE_SEED=<n>` replays one, `HOSTILE_SEED=random` explores a new
 * one (printed), and otherwise the fixed default.
 */
function runSeed(suite: string): number {
  const setting = process.env.HOSTILE_SEED;
  const seed = setting === 'random' ? Math.floor(Math.random() * 2 ** 31) : Number.isInteger(Number(setting)) && setting ? Number(setting) : DEFAULT_SEED;
  console.log(`${suite}: seed ${seed} (replay with HOSTILE_SEED=${seed})`);
  return seed;
}

// ---------------------------------------------------------------- harness

/** Small, so bodies beyond the limit are cheap to send. */
export const MAX_BODY_BYTES = 64 * 1024;
const PASSWORD = 'correct horse battery staple';

export type Caller = 'admin' | 'patient' | 'anonymous' | 'garbage';
export const caller = fc.constantFrom<Caller>('admin', 'admin', 'patient', 'anonymous', 'garbage');

/** How a refusal must look at a path: 'any' for paths no endpoint owns. */
export type AnswerKind = 'fhir' | 'oauth' | 'auth-page' | 'any';

export function answerKind(path: string): AnswerKind {
  if (/^\/auth\/(authorize|login|consent)/.test(path)) return 'auth-page';
  if (path.startsWith('/auth/')) return 'oauth';
  return 'fhir';
}

export interface HostileHarness {
  server: TestServer;
  patientId: string;
  practitionerId: string;
  /** The `pending` field of a live sign-in page, and of a consent page after signing in. */
  loginPending: string;
  consentPending: string;
  /** fast-check settings: the run's seed, verbose counterexamples. */
  settings(numRuns: number): fc.Parameters<unknown>;
  authorization(who: Caller): [string, string][];
  /**
   * Sends one hostile request and checks the answer and, if it was refused, that nothing
   * but the audit trail changed.
   */
  check(request: RawRequest, kind?: AnswerKind): Promise<RawResponse>;
  /** Takes a new baseline after a change made on purpose. */
  rebase(): Promise<void>;
  stop(): Promise<void>;
}

export async function startHostileHarness(suite: string): Promise<HostileHarness> {
  const seed = runSeed(suite);
  const server = await startTestServer({
    env: {
      MAX_BODY_BYTES: String(MAX_BODY_BYTES),
      // The generators, not load, are what these suites are about: no rate limits or
      // shedding (a 10,000-level body lags the shared event loop of this in-process server).
      AUTH_REQUESTS_PER_MINUTE: '1000000',
      API_REQUESTS_PER_MINUTE_PER_USER: '0',
      API_REQUESTS_PER_MINUTE_PER_CLIENT: '0',
      MAX_IN_FLIGHT: '0',
      MAX_EVENT_LOOP_DELAY_MS: '0',
    },
  });
  const create = (resource: Record<string, unknown>) =>
    server.request.post(`/fhir/${resource.resourceType}`).set('content-type', 'application/fhir+json').send(JSON.stringify(resource));
  const patient = await create({ resourceType: 'Patient', name: [{ family: 'Hostile' }] });
  const practitioner = await create({ resourceType: 'Practitioner', name: [{ family: 'Doctor' }] });
  expect([patient.status, practitioner.status]).toEqual([201, 201]);
  const patientId = patient.body.id as string;
  await createUser(server, { username: 'hostile-patient', password: PASSWORD, fhirUser: `Patient/${patientId}` });
  const patientToken = (await userToken(server, { username: 'hostile-patient', password: PASSWORD, scope: 'openid fhirUser launch/patient patient/*.cruds' })).accessToken;
  // A real sign-in page and consent page, so hostile form fields get past the `pending` check.
  const clientId = await registerPublicClient(server);
  const authorize = await rawRequest(server, {
    method: 'GET',
    path: `/auth/authorize?${new URLSearchParams({ response_type: 'code', client_id: clientId, redirect_uri: REDIRECT_URI, scope: 'openid fhirUser launch/patient patient/*.cruds', state: 's', aud: server.fhirBase, code_challenge: 'x'.repeat(43), code_challenge_method: 'S256' })}`,
  });
  const loginPending = pendingOf(authorize.text);
  const login = await rawRequest(server, {
    method: 'POST',
    path: '/auth/login',
    headers: [['Content-Type', 'application/x-www-form-urlencoded']],
    body: new URLSearchParams({ pending: loginPending, username: 'hostile-patient', password: PASSWORD }).toString(),
  });
  const consentPending = pendingOf(login.text);

  let stored = await fingerprint(server);
  const tally = { requests: 0, byStatus: {} as Record<number, number> };
  const authorization = (who: Caller): [string, string][] => {
    switch (who) {
      case 'admin':
        return [['Authorization', `Bearer ${server.admin.token}`]];
      case 'patient':
        return [['Authorization', `Bearer ${patientToken}`]];
      case 'garbage':
        return [['Authorization', 'Bearer not.a.token']];
      case 'anonymous':
        return [];
    }
  };
  return {
    server,
    patientId,
    practitionerId: practitioner.body.id as string,
    loginPending,
    consentPending,
    settings: (numRuns) => ({ numRuns, seed, verbose: true, endOnFailure: true }),
    authorization,
    async check(request, kind = answerKind(request.path)) {
      tally.requests++;
      const label = `${request.method} ${request.path.slice(0, 300)}`;
      const res = await rawRequest(server, request);
      tally.byStatus[res.status] = (tally.byStatus[res.status] ?? 0) + 1;
      if (kind === 'auth-page') {
        expect(res.status, `${label} → ${res.status} ${res.text.slice(0, 300)}`).toBeLessThan(500);
        if (/html/.test(res.headers['content-type'] ?? '')) {
          expectNoReflectedScript(res, label);
        } else if (res.status >= 400) {
          expectSafeAnswer(res, 'oauth', label);
        }
      } else {
        expectSafeAnswer(res, kind, label);
      }
      const now = await fingerprint(server);
      if (res.status >= 400) {
        expect(now, `${label} → ${res.status} changed stored data`).toEqual(stored);
      }
      stored = now;
      return res;
    },
    async rebase() {
      stored = await fingerprint(server);
    },
    async stop() {
      console.log(`${suite}: ${tally.requests} requests sent (seed ${seed}); answers by status: ${JSON.stringify(tally.byStatus)}`);
      await server.stop({ dropDatabase: true });
    },
  };
}

function pendingOf(html: string): string {
  const match = /name="pending" value="([^"]+)"/.exec(html);
  if (!match) throw new Error(`No pending field in ${html.slice(0, 200)}`);
  return match[1].replace(/&amp;/g, '&');
}
