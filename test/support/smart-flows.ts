/**
 * Drives the authorization server through HTTP the way a browser and a SMART app would,
 * without a browser: authorize → sign-in page → consent page → redirect with a code, the
 * token endpoint, EHR launches and client registration. Every credential these helpers see
 * is remembered in `secrets`, so a suite can check none of them leaked into logs.
 */
import { createHash, randomBytes } from 'node:crypto';
import { expect } from 'vitest';
import type { Response } from 'supertest';
import type { TestServer } from './server.js';

export const REDIRECT_URI = 'https://app.example.test/callback';

export interface Pkce {
  verifier: string;
  challenge: string;
}

export function pkce(): Pkce {
  const verifier = randomBytes(32).toString('base64url');
  return { verifier, challenge: createHash('sha256').update(verifier).digest('base64url') };
}

/** A form body that may repeat a field (`scope` on the consent page). */
export function form(fields: Record<string, string | string[] | undefined>): string {
  const body = new URLSearchParams();
  for (const [name, value] of Object.entries(fields)) {
    for (const v of value === undefined ? [] : Array.isArray(value) ? value : [value]) {
      body.append(name, v);
    }
  }
  return body.toString();
}

/** The hidden `pending` field of a sign-in or consent page. */
export function pendingOf(html: string): string {
  const match = /name="pending" value="([^"]+)"/.exec(html);
  expect(match, 'the page carries a pending field').toBeTruthy();
  return match![1];
}

/** The alert text of a page, if any. */
export function alertOf(html: string): string | undefined {
  return /role="alert">([^<]*)</.exec(html)?.[1];
}

/** The query parameters of a redirect answer (asserting it is one, to `redirectUri`). */
export function redirectQuery(res: Response, redirectUri = REDIRECT_URI): URLSearchParams {
  expect(res.status, res.text).toBe(302);
  const location = res.headers.location as string;
  expect(location.startsWith(`${redirectUri}?`) || location.startsWith(`${redirectUri}&`)).toBe(true);
  return new URL(location).searchParams;
}

export interface RegisteredClient {
  client_id: string;
  client_secret?: string;
  redirect_uris: string[];
  scope: string;
}

export class SmartFlows {
  /** Every token, code, secret, password and launch handed out or used. */
  readonly secrets = new Set<string>();
  /** Every Location header answered, with the code it was allowed to carry. */
  readonly locations: { location: string; code?: string }[] = [];

  constructor(private readonly server: TestServer) {}

  remember(...values: (string | undefined)[]): void {
    for (const v of values) {
      if (v) this.secrets.add(v);
    }
  }

  async register(metadata: Record<string, unknown>): Promise<RegisteredClient> {
    const res = await this.server.request.post('/auth/register').send(metadata);
    expect(res.status, res.text).toBe(201);
    this.remember(res.body.client_secret);
    return res.body as RegisteredClient;
  }

  async createUser(username: string, password: string, fhirUser: string): Promise<void> {
    const res = await this.server.request.post('/auth/users').send({ username, password, fhirUser });
    expect(res.status, res.text).toBe(201);
    this.remember(password);
  }

  async createResource(resource: { resourceType: string; [field: string]: unknown }): Promise<{ id: string; [field: string]: unknown }> {
    const res = await this.server.request.post(`/fhir/${resource.resourceType}`).set('content-type', 'application/fhir+json').send(JSON.stringify(resource));
    expect(res.status, res.text).toBe(201);
    return res.body as { id: string };
  }

  /** Authorization parameters a well-behaved app sends; override any of them. */
  params(client: RegisteredClient, overrides: Record<string, string | undefined> = {}, challenge = pkce().challenge): Record<string, string | undefined> {
    return {
      response_type: 'code',
      client_id: client.client_id,
      redirect_uri: client.redirect_uris[0],
      scope: 'openid fhirUser patient/*.rs',
      state: randomBytes(8).toString('hex'),
      aud: this.server.fhirBase,
      code_challenge: challenge,
      code_challenge_method: 'S256',
      ...overrides,
    };
  }

  async authorize(params: Record<string, string | undefined>, method: 'GET' | 'POST' = 'GET'): Promise<Response> {
    const res =
      method === 'GET'
        ? await this.server.anonymous.get(`/auth/authorize?${form(params)}`)
        : await this.server.anonymous.post('/auth/authorize').type('form').send(form(params));
    this.track(res);
    return res;
  }

  async login(pending: string, username: string, password: string): Promise<Response> {
    this.remember(pending);
    return this.server.anonymous.post('/auth/login').type('form').send(form({ pending, username, password }));
  }

  async consent(pending: string, decision: 'approve' | 'deny', scopes: string[], patient?: string): Promise<Response> {
    this.remember(pending);
    const res = await this.server.anonymous.post('/auth/consent').type('form').send(form({ pending, decision, scope: scopes, patient }));
    this.track(res);
    return res;
  }

  /**
   * A standalone launch through the sign-in and consent pages. `approve` lists the scopes
   * the user leaves ticked (all of them by default). Answers the code and what it is bound to.
   */
  async standaloneCode(
    client: RegisteredClient,
    user: { username: string; password: string },
    overrides: Record<string, string | undefined> = {},
    approve?: string[]
  ): Promise<{ code: string; verifier: string; redirectUri: string; state: string }> {
    const { verifier, challenge } = pkce();
    const params = this.params(client, overrides, challenge);
    const start = await this.authorize(params);
    expect(start.status, start.text).toBe(200);
    const signedIn = await this.login(pendingOf(start.text), user.username, user.password);
    expect(signedIn.status, signedIn.text).toBe(200);
    const offered = [...signedIn.text.matchAll(/name="scope" value="([^"]+)"/g)].map((m) => m[1]);
    const answer = await this.consent(pendingOf(signedIn.text), 'approve', approve ?? offered);
    const query = redirectQuery(answer, params.redirect_uri);
    expect(query.get('state')).toBe(params.state);
    const code = query.get('code')!;
    expect(code).toMatch(/^[A-Za-z0-9_-]{20,}$/);
    this.remember(code, verifier);
    return { code, verifier, redirectUri: params.redirect_uri!, state: params.state! };
  }

  /** An EHR launch made by the administrator for `client`, and its value. */
  async launch(body: Record<string, unknown>): Promise<string> {
    const res = await this.server.request.post('/auth/launch').send(body);
    expect(res.status, res.text).toBe(201);
    this.remember(res.body.launch);
    return res.body.launch as string;
  }

  /** A code from an EHR launch (no sign-in page: the EHR vouches for its user). */
  async launchCode(
    client: RegisteredClient,
    context: { fhirUser: string; patient?: string },
    overrides: Record<string, string | undefined> = {}
  ): Promise<{ code: string; verifier: string; redirectUri: string }> {
    const launch = await this.launch({ ...context, client_id: client.client_id });
    const { verifier, challenge } = pkce();
    const params = this.params(client, { scope: 'launch openid fhirUser patient/*.rs offline_access', launch, ...overrides }, challenge);
    const query = redirectQuery(await this.authorize(params), params.redirect_uri);
    const code = query.get('code');
    expect(code, query.toString()).toBeTruthy();
    this.remember(code!, verifier);
    return { code: code!, verifier, redirectUri: params.redirect_uri! };
  }

  /** POST /auth/token with a form; `basic` authenticates a confidential client. */
  async token(fields: Record<string, string | undefined>, basic?: { id: string; secret: string }): Promise<Response> {
    let req = this.server.anonymous.post('/auth/token').type('form');
    if (basic) {
      req = req.auth(basic.id, basic.secret);
    }
    const res = await req.send(form(fields));
    this.remember(res.body?.access_token, res.body?.refresh_token, res.body?.id_token, fields.client_assertion, fields.refresh_token, fields.code);
    return res;
  }

  /** Exchanges a code as a public client. */
  async exchange(client: RegisteredClient, issued: { code: string; verifier: string; redirectUri: string }): Promise<Response> {
    return this.token({
      grant_type: 'authorization_code',
      code: issued.code,
      redirect_uri: issued.redirectUri,
      code_verifier: issued.verifier,
      client_id: client.client_id,
    });
  }

  private track(res: Response): void {
    const location = res.headers.location as string | undefined;
    if (location) {
      this.locations.push({ location, code: new URL(location).searchParams.get('code') ?? undefined });
    }
  }
}

/** Asserts an OAuth error answer: status, JSON `{error, error_description}`, no caching. */
export function expectOAuthError(res: Response, error: string, status = 400): void {
  expect(res.status, res.text).toBe(status);
  expect(res.headers['content-type']).toMatch(/^application\/json/);
  expect(res.body.error).toBe(error);
  expect(typeof res.body.error_description).toBe('string');
}

/** Asserts a FHIR answer is an OperationOutcome with this status. */
export function expectOutcome(res: Response, status: number): void {
  expect(res.status, res.text).toBe(status);
  expect(res.headers['content-type']).toMatch(/^application\/fhir\+json/);
  expect(JSON.parse(res.text).resourceType).toBe('OperationOutcome');
}

/** Polls the audit trail (entries are queued and flushed moments later). */
export async function waitForAuditEvents(
  server: TestServer,
  subtype: string,
  match: (event: Record<string, any>) => boolean,
  count = 1
): Promise<Record<string, any>[]> {
  const deadline = Date.now() + 3000;
  for (;;) {
    const res = await server.request.get(`/fhir/AuditEvent?subtype=${subtype}&_count=1000`);
    expect(res.status, res.text).toBe(200);
    const found = (JSON.parse(res.text).entry ?? []).map((e: { resource: Record<string, any> }) => e.resource).filter(match);
    if (found.length >= count || Date.now() > deadline) {
      return found;
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** Asserts none of the secrets appear in any of the texts. */
export function expectNoSecrets(texts: string[], secrets: Iterable<string>, where: string): void {
  const joined = texts.join('\n');
  for (const secret of secrets) {
    if (secret.length >= 8) {
      expect(joined.includes(secret), `a credential (${secret.slice(0, 6)}…) appears in ${where}`).toBe(false);
    }
  }
}
