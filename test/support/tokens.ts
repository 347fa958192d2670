/**
 * Real access tokens for test suites, obtained the way an app obtains them: a user token
 * through the SMART authorization-code flow (authorize with PKCE S256 → sign-in page →
 * consent page → code → token endpoint), a backend token through client_credentials with
 * HTTP Basic. Clients and users are created with the test administrator's token.
 */
import { createHash, randomBytes } from 'node:crypto';
import supertest from 'supertest';
import type { TestServer } from './server.js';

export const REDIRECT_URI = 'http://127.0.0.1:9/cb';

/** Everything a public test app may ask for. */
export const PUBLIC_CLIENT_SCOPE = 'openid fhirUser launch/patient offline_access patient/*.cruds user/*.cruds';

export interface IssuedToken {
  accessToken: string;
  /** The scope the server granted. */
  scope: string;
  /** The patient context (`id`, without `Patient/`), when there is one. */
  patient?: string;
  /** The whole token response. */
  body: Record<string, unknown>;
  /** Requests carrying this token. */
  request: ReturnType<typeof supertest.agent>;
}

export interface NewUser {
  username: string;
  password: string;
  /** `Patient/…`, `RelatedPerson/…` or `Practitioner/…`. */
  fhirUser: string;
  roles?: string[];
  /** Further RelatedPerson references a representative acts through. */
  represents?: string[];
}

/** Creates a login account (POST /auth/users) with the administrator's token. */
export async function createUser(server: TestServer, user: NewUser): Promise<void> {
  const response = await server.request.post('/auth/users').send(user);
  if (response.status !== 201) {
    throw new Error(`Could not create user ${user.username}: ${response.status} ${JSON.stringify(response.body)}`);
  }
}

/** Registers a public (PKCE-only) client and returns its client_id. */
export async function registerPublicClient(server: TestServer, scope = PUBLIC_CLIENT_SCOPE): Promise<string> {
  const response = await server.request.post('/auth/register').send({
    client_name: 'Test app',
    redirect_uris: [REDIRECT_URI],
    token_endpoint_auth_method: 'none',
    scope,
  });
  if (response.status !== 201) {
    throw new Error(`Could not register a public client: ${response.status} ${JSON.stringify(response.body)}`);
  }
  return response.body.client_id as string;
}

export interface UserTokenOptions {
  username: string;
  password: string;
  /** Space-separated scopes to ask for (and approve at consent). */
  scope: string;
  /** `Patient/…` to pick on the consent page (representatives of several patients). */
  patient?: string;
  /** A registered public client; one is registered when omitted. */
  clientId?: string;
}

/** A user's access token through the full authorization-code flow. */
export async function userToken(server: TestServer, options: UserTokenOptions): Promise<IssuedToken> {
  const clientId = options.clientId ?? (await registerPublicClient(server));
  const verifier = randomBytes(32).toString('base64url');
  const challenge = createHash('sha256').update(verifier).digest('base64url');
  const state = randomBytes(8).toString('hex');
  const browser = server.anonymous;

  const authorize = await browser.get('/auth/authorize').query({
    response_type: 'code',
    client_id: clientId,
    redirect_uri: REDIRECT_URI,
    scope: options.scope,
    state,
    aud: server.fhirBase,
    code_challenge: challenge,
    code_challenge_method: 'S256',
  });
  const loginPending = pendingField(authorize.text, 'authorize', authorize.status);

  const login = await browser
    .post('/auth/login')
    .type('form')
    .send(new URLSearchParams({ pending: loginPending, username: options.username, password: options.password }).toString());
  const consentPending = pendingField(login.text, 'login', login.status);

  const consent = new URLSearchParams({ pending: consentPending, decision: 'approve' });
  for (const scope of options.scope.split(/\s+/).filter(Boolean)) {
    consent.append('scope', scope);
  }
  if (options.patient) {
    consent.set('patient', options.patient);
  }
  const decision = await browser.post('/auth/consent').type('form').send(consent.toString());
  if (decision.status !== 302) {
    throw new Error(`Consent did not redirect: ${decision.status} ${decision.text.slice(0, 300)}`);
  }
  const location = new URL(decision.headers.location as string);
  const code = location.searchParams.get('code');
  if (!code || location.searchParams.get('state') !== state) {
    throw new Error(`Consent answered without a code: ${location.search}`);
  }

  const token = await browser.post('/auth/token').type('form').send(
    new URLSearchParams({ grant_type: 'authorization_code', code, redirect_uri: REDIRECT_URI, code_verifier: verifier, client_id: clientId }).toString()
  );
  if (token.status !== 200) {
    throw new Error(`The token endpoint refused the code: ${token.status} ${JSON.stringify(token.body)}`);
  }
  return issued(server, token.body);
}

export interface BackendTokenOptions {
  /** Scopes the client is registered for. */
  registeredScope: string;
  /** Scopes to ask for; the registered ones when omitted. */
  scope?: string;
}

/** A SMART Backend Services token for a newly registered client_secret_basic client. */
export async function backendToken(server: TestServer, options: BackendTokenOptions): Promise<IssuedToken & { clientId: string }> {
  const registration = await server.request.post('/auth/register').send({
    client_name: 'Test backend',
    redirect_uris: [],
    token_endpoint_auth_method: 'client_secret_basic',
    scope: options.registeredScope,
  });
  if (registration.status !== 201) {
    throw new Error(`Could not register a backend client: ${registration.status} ${JSON.stringify(registration.body)}`);
  }
  const { client_id: clientId, client_secret: secret } = registration.body as { client_id: string; client_secret: string };
  const token = await server.anonymous
    .post('/auth/token')
    .auth(clientId, secret)
    .type('form')
    .send({ grant_type: 'client_credentials', scope: options.scope ?? options.registeredScope });
  if (token.status !== 200) {
    throw new Error(`The token endpoint refused client_credentials: ${token.status} ${JSON.stringify(token.body)}`);
  }
  return { ...issued(server, token.body), clientId };
}

function issued(server: TestServer, body: Record<string, unknown>): IssuedToken {
  const accessToken = body.access_token as string;
  return {
    accessToken,
    scope: body.scope as string,
    patient: body.patient as string | undefined,
    body,
    request: supertest.agent(server.baseUrl).set('Authorization', `Bearer ${accessToken}`),
  };
}

/** The hidden `pending` field of the sign-in or consent page. */
function pendingField(html: string, step: string, status: number): string {
  const match = /name="pending" value="([^"]+)"/.exec(html);
  if (!match) {
    throw new Error(`No sign-in or consent form after ${step} (${status}): ${html.slice(0, 300)}`);
  }
  return match[1].replace(/&amp;/g, '&');
}
