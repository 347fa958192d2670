/**
 * What the SMART authorization server refuses, and the promises it keeps while refusing
 * (SMART App Launch 2.2, RFC 6749/7009/7591/7636/7662, the checks Inferno runs): discovery,
 * the authorize endpoint, sign-in and consent, the token endpoint, refresh rotation,
 * introspection and revocation, EHR launches, client registration, the audit trail, and
 * that no credential leaks into logs, redirects or the audit trail. All through HTTP.
 * Backend Services and the resource server are in smart-negative-resource.test.ts; login
 * lockout and rate limits, which need their own settings, in smart-negative-limits.test.ts.
 */
import { createHash, randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestServer } from './support/server.js';
import type { TestServer } from './support/server.js';
import {
  alertOf,
  expectNoSecrets,
  expectOAuthError,
  expectOutcome,
  form,
  pendingOf,
  pkce,
  REDIRECT_URI,
  redirectQuery,
  SmartFlows,
  waitForAuditEvents,
} from './support/smart-flows.js';
import type { RegisteredClient } from './support/smart-flows.js';

let server: TestServer;
let flows: SmartFlows;
let patientId: string;
let practitioner: string;
/** Public apps A and B, and a confidential (client_secret_basic) app C. */
let appA: RegisteredClient;
let appB: RegisteredClient;
let appC: RegisteredClient;
const QUERY_REDIRECT = 'https://app.example.test/cb?tenant=1';
const user = { username: `pat-${randomBytes(4).toString('hex')}`, password: 'correct horse battery staple' };
const APP_SCOPES = 'openid fhirUser profile launch launch/patient offline_access patient/*.rs patient/*.read';

beforeAll(async () => {
  // The suite makes many /auth calls in a few seconds; the limiter has its own suite.
  server = await startTestServer({ env: { AUTH_REQUESTS_PER_MINUTE: '100000' } });
  flows = new SmartFlows(server);
  flows.remember(server.admin.token, server.admin.clientSecret);
  patientId = (await flows.createResource({ resourceType: 'Patient', name: [{ family: 'Negative', given: ['Nora'] }] })).id;
  practitioner = `Practitioner/${(await flows.createResource({ resourceType: 'Practitioner', name: [{ family: 'Doc' }] })).id}`;
  await flows.createUser(user.username, user.password, `Patient/${patientId}`);
  const publicApp = { token_endpoint_auth_method: 'none', redirect_uris: [REDIRECT_URI, QUERY_REDIRECT], scope: APP_SCOPES };
  appA = await flows.register({ ...publicApp, client_name: 'App A' });
  appB = await flows.register({ ...publicApp, client_name: 'App B' });
  appC = await flows.register({ token_endpoint_auth_method: 'client_secret_basic', redirect_uris: [REDIRECT_URI], scope: APP_SCOPES, client_name: 'App C' });
});
afterAll(async () => {
  await server?.stop({ dropDatabase: true });
});

const basicC = () => ({ id: appC.client_id, secret: appC.client_secret! });
const launchA = () => flows.launchCode(appA, { fhirUser: practitioner, patient: `Patient/${patientId}` });
const fhirRead = (token: string) => server.anonymous.get(`/fhir/Patient/${patientId}`).set('Authorization', `Bearer ${token}`);

describe('discovery', () => {
  it('serves smart-configuration as JSON to any origin, whatever Accept says', async () => {
    for (const accept of ['text/html', 'application/fhir+json', 'application/xml', '*/*']) {
      const res = await server.anonymous.get('/fhir/.well-known/smart-configuration').set('Accept', accept).set('Origin', 'https://elsewhere.example');
      expect(res.status).toBe(200);
      expect(res.headers['content-type']).toMatch(/^application\/json/);
      expect(res.headers['access-control-allow-origin']).toBe('*');
    }
    const preflight = await server.anonymous
      .options('/fhir/.well-known/smart-configuration')
      .set('Origin', 'https://elsewhere.example')
      .set('Access-Control-Request-Method', 'GET');
    expect(preflight.headers['access-control-allow-origin']).toBe('*');
  });

  it('lists the required fields with absolute URLs, S256 only, and the asymmetric algorithms', async () => {
    const config = (await server.anonymous.get('/fhir/.well-known/smart-configuration')).body;
    for (const field of ['authorization_endpoint', 'token_endpoint', 'introspection_endpoint', 'revocation_endpoint', 'registration_endpoint', 'jwks_uri', 'issuer']) {
      expect(typeof config[field], field).toBe('string');
      expect(new URL(config[field]).href.startsWith(server.baseUrl), field).toBe(true);
    }
    expect(config.issuer).toBe(server.fhirBase);
    expect(config.code_challenge_methods_supported).toEqual(['S256']);
    expect(config.grant_types_supported).toEqual(expect.arrayContaining(['authorization_code', 'refresh_token', 'client_credentials']));
    expect(config.response_types_supported).toContain('code');
    expect(config.token_endpoint_auth_methods_supported).toEqual(expect.arrayContaining(['client_secret_basic', 'private_key_jwt']));
    expect(config.token_endpoint_auth_signing_alg_values_supported).toEqual(expect.arrayContaining(['RS384', 'ES384']));
    expect(config.capabilities).toEqual(
      expect.arrayContaining([
        'launch-ehr', 'launch-standalone', 'authorize-post', 'client-public', 'client-confidential-symmetric',
        'client-confidential-asymmetric', 'sso-openid-connect', 'context-banner', 'context-style', 'context-ehr-patient',
        'context-ehr-encounter', 'context-standalone-patient', 'permission-offline', 'permission-patient',
        'permission-user', 'permission-v1', 'permission-v2',
      ])
    );
    // Only scopes really supported: the registration endpoint accepts every one of them.
    expect(config.scopes_supported.length).toBeGreaterThan(0);
    const registered = await server.request.post('/auth/register').send({ token_endpoint_auth_method: 'none', redirect_uris: [REDIRECT_URI], scope: config.scopes_supported.join(' ') });
    expect(registered.status, registered.text).toBe(201);
  });

  it('publishes the same endpoints in the public CapabilityStatement', async () => {
    const config = (await server.anonymous.get('/fhir/.well-known/smart-configuration')).body;
    const res = await server.anonymous.get('/fhir/metadata').set('Origin', 'https://elsewhere.example');
    expect(res.status).toBe(200);
    expect(res.headers['access-control-allow-origin']).toBe('*');
    const security = JSON.parse(res.text).rest[0].security;
    const uris = security.extension.find((e: { url: string }) => e.url === 'http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris');
    const uri = (name: string) => uris.extension.find((e: { url: string }) => e.url === name)?.valueUri;
    expect(uri('authorize')).toBe(config.authorization_endpoint);
    expect(uri('token')).toBe(config.token_endpoint);
    expect(uri('introspect')).toBe(config.introspection_endpoint);
    expect(uri('revoke')).toBe(config.revocation_endpoint);
    expect(uri('register')).toBe(config.registration_endpoint);
  });

  it('serves openid-configuration at the issuer and a public-only JWKS', async () => {
    const issuer = new URL(server.fhirBase);
    const res = await server.anonymous.get(`${issuer.pathname}/.well-known/openid-configuration`).set('Accept', 'text/html');
    expect(res.status).toBe(200);
    expect(res.headers['content-type']).toMatch(/^application\/json/);
    expect(res.headers['access-control-allow-origin']).toBe('*');
    expect(res.body.issuer).toBe(server.fhirBase);
    expect(res.body.id_token_signing_alg_values_supported).toContain('RS256');
    expect(res.body.response_types_supported).toEqual(['code']);
    const jwks = await server.anonymous.get(new URL(res.body.jwks_uri).pathname);
    expect(jwks.status).toBe(200);
    expect(jwks.headers['access-control-allow-origin']).toBe('*');
    expect(jwks.body.keys.length).toBeGreaterThan(0);
    for (const key of jwks.body.keys) {
      expect(key.kid).toBeTruthy();
      expect(key.alg).toBe('RS256');
      for (const secretPart of ['d', 'p', 'q', 'dp', 'dq', 'qi']) {
        expect(key[secretPart], `JWKS publishes ${secretPart}`).toBeUndefined();
      }
    }
  });
});

describe('authorize', () => {
  const expectErrorPage = (res: Awaited<ReturnType<typeof flows.authorize>>) => {
    expect(res.status, res.text).toBe(400);
    expect(res.headers['content-type']).toMatch(/^text\/html/);
    expect(res.headers.location).toBeUndefined();
  };

  it('shows an error page, never a redirect, for an unknown client_id', async () => {
    for (const method of ['GET', 'POST'] as const) {
      expectErrorPage(await flows.authorize(flows.params({ ...appA, client_id: 'no-such-client' }), method));
      expectErrorPage(await flows.authorize(flows.params(appA, { client_id: undefined }), method));
    }
  });

  it('shows an error page, never a redirect, for a redirect_uri that is not an exact registered string', async () => {
    for (const redirect of [
      `${REDIRECT_URI}/`,
      'https://app.example.test:8443/callback',
      `${REDIRECT_URI}?extra=1`,
      'https://APP.example.test/callback',
      'http://app.example.test/callback',
      'https://app.example.test/cb',
      'https://evil.example/callback',
      undefined,
    ]) {
      expectErrorPage(await flows.authorize(flows.params(appA, { redirect_uri: redirect })));
    }
  });

  it('redirects with the error and state, and no code, when aud is not this FHIR server', async () => {
    for (const aud of ['https://evil.example/fhir', `${server.baseUrl}/fhir/Patient`, server.baseUrl, undefined]) {
      const params = flows.params(appA, { aud });
      const query = redirectQuery(await flows.authorize(params));
      expect(query.get('error')).toBe('invalid_request');
      expect(query.get('state')).toBe(params.state);
      expect(query.get('code')).toBeNull();
    }
  });

  it('accepts aud with a trailing slash', async () => {
    const res = await flows.authorize(flows.params(appA, { aud: `${server.fhirBase}/` }));
    expect(res.status, res.text).toBe(200);
    pendingOf(res.text);
  });

  it('refuses a request without S256 PKCE', async () => {
    const { challenge } = pkce();
    for (const overrides of [
      { code_challenge: undefined, code_challenge_method: undefined },
      { code_challenge: undefined },
      { code_challenge_method: 'plain' },
      { code_challenge_method: undefined },
      { code_challenge: 'short' },
    ]) {
      const params = flows.params(appA, overrides, challenge);
      const query = redirectQuery(await flows.authorize(params));
      expect(query.get('error'), JSON.stringify(overrides)).toBe('invalid_request');
      expect(query.get('state')).toBe(params.state);
      expect(query.get('code')).toBeNull();
    }
  });

  it('refuses response types other than code', async () => {
    for (const responseType of ['token', 'code id_token', 'id_token', undefined]) {
      const params = flows.params(appA, { response_type: responseType });
      const query = redirectQuery(await flows.authorize(params));
      expect(query.get('error')).toBe('unsupported_response_type');
      expect(query.get('state')).toBe(params.state);
      expect(query.get('code')).toBeNull();
    }
  });

  it('requires state, and refuses a request whose scopes are none the app may have', async () => {
    expect(redirectQuery(await flows.authorize(flows.params(appA, { state: undefined }))).get('error')).toBe('invalid_request');
    const params = flows.params(appA, { scope: 'system/*.cruds user/Communication.cruds' });
    const query = redirectQuery(await flows.authorize(params));
    expect(query.get('error')).toBe('invalid_scope');
    expect(query.get('state')).toBe(params.state);
  });

  it('echoes state exactly, special characters included, on errors and on success', async () => {
    const state = `a b+c&d=e/f?g#h%20ü"'<>;,~`;
    const failed = redirectQuery(await flows.authorize(flows.params(appA, { state, aud: 'https://evil.example/fhir' })));
    expect(failed.get('state')).toBe(state);
    const issued = await flows.standaloneCode(appA, user, { state });
    expect(issued.state).toBe(state);
  });

  it('keeps the query of a registered redirect_uri and adds only code and state', async () => {
    const issued = await flows.standaloneCode(appA, user, { redirect_uri: QUERY_REDIRECT });
    const last = flows.locations.at(-1)!.location;
    expect(last.startsWith(`${QUERY_REDIRECT}&`)).toBe(true);
    const query = new URL(last).searchParams;
    expect([...query.keys()].sort()).toEqual(['code', 'state', 'tenant']);
    expect(query.get('tenant')).toBe('1');
    expect(query.get('code')).toBe(issued.code);
  });

  it('answers POST (form) like GET', async () => {
    const res = await flows.authorize(flows.params(appA), 'POST');
    expect(res.status, res.text).toBe(200);
    pendingOf(res.text);
    const params = flows.params(appA, { aud: 'https://evil.example/fhir' });
    const query = redirectQuery(await flows.authorize(params, 'POST'));
    expect(query.get('error')).toBe('invalid_request');
    expect(query.get('state')).toBe(params.state);
  });
});

describe('sign-in page', () => {
  it('has fields named username and password', async () => {
    const res = await flows.authorize(flows.params(appA));
    expect(res.status).toBe(200);
    expect(res.headers['content-type']).toMatch(/^text\/html/);
    expect(res.text).toMatch(/<input[^>]*type="text"[^>]*name="username"/);
    expect(res.text).toMatch(/<input[^>]*type="password"[^>]*name="password"/);
  });

  it('answers a wrong password and an unknown username alike', async () => {
    const pending = pendingOf((await flows.authorize(flows.params(appA))).text);
    const wrongPassword = await flows.login(pending, user.username, 'not the password at all');
    const unknownUser = await flows.login(pending, `nobody-${randomBytes(4).toString('hex')}`, user.password);
    expect(wrongPassword.status).toBe(unknownUser.status);
    expect(wrongPassword.status).toBeGreaterThanOrEqual(400);
    expect(alertOf(wrongPassword.text)).toBeTruthy();
    expect(alertOf(wrongPassword.text)).toBe(alertOf(unknownUser.text));
    const strip = (html: string) => html.replace(/name="pending" value="[^"]+"/, '');
    expect(strip(wrongPassword.text)).toBe(strip(unknownUser.text));
    // The page stays usable: the right password then gets through.
    const signedIn = await flows.login(pendingOf(wrongPassword.text), user.username, user.password);
    expect(signedIn.status).toBe(200);
    expect(signedIn.text).toContain('name="decision"');
  });

  it('refuses a tampered or foreign pending value', async () => {
    const pending = pendingOf((await flows.authorize(flows.params(appA))).text);
    const [header, payload, signature] = pending.split('.');
    const claims = JSON.parse(Buffer.from(payload, 'base64url').toString());
    claims.pending.scopes = ['patient/*.cruds'];
    const tampered = `${header}.${Buffer.from(JSON.stringify(claims)).toString('base64url')}.${signature}`;
    for (const value of [tampered, 'garbage', server.admin.token]) {
      const res = await flows.login(value, user.username, user.password);
      expect(res.status).toBe(400);
      expect(res.text).not.toContain('name="decision"');
    }
  });
});

describe('consent', () => {
  it('redirects a denial with access_denied and the state', async () => {
    const params = flows.params(appA);
    const pending = pendingOf((await flows.authorize(params)).text);
    const consentPage = await flows.login(pending, user.username, user.password);
    const query = redirectQuery(await flows.consent(pendingOf(consentPage.text), 'deny', ['patient/*.rs']));
    expect(query.get('error')).toBe('access_denied');
    expect(query.get('state')).toBe(params.state);
    expect(query.get('code')).toBeNull();
  });

  it('redirects access_denied when nothing is approved', async () => {
    const params = flows.params(appA);
    const consentPage = await flows.login(pendingOf((await flows.authorize(params)).text), user.username, user.password);
    const query = redirectQuery(await flows.consent(pendingOf(consentPage.text), 'approve', []));
    expect(query.get('error')).toBe('access_denied');
    expect(query.get('state')).toBe(params.state);
  });

  it('grants only what the user left ticked, never more than was asked', async () => {
    const issued = await flows.standaloneCode(
      appA,
      user,
      { scope: 'openid fhirUser patient/*.rs offline_access' },
      // Ticked: one scope; forged: scopes that were never offered.
      ['patient/*.rs', 'patient/*.cruds', 'system/*.cruds', 'user/*.rs']
    );
    const res = await flows.exchange(appA, issued);
    expect(res.status, res.text).toBe(200);
    expect(res.body.scope).toBe('patient/*.rs');
    expect(res.body.patient).toBe(patientId);
    // Without offline_access or openid there is no refresh token and no id_token.
    expect(res.body.refresh_token).toBeUndefined();
    expect(res.body.id_token).toBeUndefined();
  });

  it('answers v1 scopes in v1 form', async () => {
    const issued = await flows.standaloneCode(appA, user, { scope: 'patient/*.read patient/Communication.read' });
    const res = await flows.exchange(appA, issued);
    expect(res.status, res.text).toBe(200);
    expect(res.body.scope.split(' ').sort()).toEqual(['patient/*.read', 'patient/Communication.read']);
    expect((await fhirRead(res.body.access_token)).status).toBe(200);
  });
});

describe('token endpoint: authorization_code', () => {
  it('answers Bearer tokens with a numeric expires_in of at most an hour, never cached', async () => {
    const res = await flows.exchange(appA, await launchA());
    expect(res.status, res.text).toBe(200);
    expect(res.headers['cache-control']).toBe('no-store');
    expect(res.headers.pragma).toBe('no-cache');
    expect(res.body.token_type).toBe('Bearer');
    expect(typeof res.body.expires_in).toBe('number');
    expect(res.body.expires_in).toBeGreaterThan(0);
    expect(res.body.expires_in).toBeLessThanOrEqual(3600);
    expect(typeof res.body.scope).toBe('string');
    expect(res.body.patient).toBe(patientId);
    expect((await fhirRead(res.body.access_token)).status).toBe(200);
  });

  it('issues codes that live about 60 seconds', async () => {
    const { code } = await launchA();
    const rows = await server.app.db.query<{ seconds: number }>(
      'SELECT EXTRACT(EPOCH FROM expires_at - now())::float AS seconds FROM auth_codes WHERE code_hash = $1',
      [sha256(code)]
    );
    expect(Number(rows[0].seconds)).toBeGreaterThan(30);
    expect(Number(rows[0].seconds)).toBeLessThanOrEqual(61);
  });

  it('refuses a missing, plain or wrong code_verifier with invalid_grant', async () => {
    const missing = await launchA();
    const res = await flows.exchange(appA, { ...missing, verifier: undefined as never });
    expectOAuthError(res, 'invalid_grant');
    expect(res.headers['cache-control']).toBe('no-store');
    expect(res.headers.pragma).toBe('no-cache');
    const plain = await launchA();
    const challenge = createHash('sha256').update(plain.verifier).digest('base64url');
    expectOAuthError(await flows.exchange(appA, { ...plain, verifier: challenge }), 'invalid_grant');
    const wrong = await launchA();
    expectOAuthError(await flows.exchange(appA, { ...wrong, verifier: pkce().verifier }), 'invalid_grant');
  });

  it('refuses a redirect_uri that differs from the one at authorize', async () => {
    for (const redirectUri of [`${REDIRECT_URI}/`, QUERY_REDIRECT, undefined]) {
      const issued = await launchA();
      expectOAuthError(await flows.exchange(appA, { ...issued, redirectUri: redirectUri as string }), 'invalid_grant');
    }
  });

  it('refuses a code issued to another client', async () => {
    const issued = await launchA();
    expectOAuthError(await flows.exchange(appB, issued), 'invalid_grant');
  });

  it('refuses a reused code and revokes the tokens issued with it', async () => {
    const issued = await launchA();
    const first = await flows.exchange(appA, issued);
    expect(first.status).toBe(200);
    expect((await fhirRead(first.body.access_token)).status).toBe(200);
    expectOAuthError(await flows.exchange(appA, issued), 'invalid_grant');
    const after = await fhirRead(first.body.access_token);
    expectOutcome(after, 401);
    expect(after.headers['www-authenticate']).toMatch(/^Bearer .*error="invalid_token"/);
    expectOAuthError(await flows.token({ grant_type: 'refresh_token', refresh_token: first.body.refresh_token, client_id: appA.client_id }), 'invalid_grant');
  });

  it('refuses an expired code', async () => {
    const issued = await launchA();
    // Instead of waiting a minute: move the code's expiry into the past.
    await server.app.db.query("UPDATE auth_codes SET expires_at = now() - interval '1 second' WHERE code_hash = $1", [sha256(issued.code)]);
    expectOAuthError(await flows.exchange(appA, issued), 'invalid_grant');
  });

  it('refuses unknown codes and requests without a code', async () => {
    expectOAuthError(await flows.exchange(appA, { code: randomBytes(32).toString('base64url'), verifier: pkce().verifier, redirectUri: REDIRECT_URI }), 'invalid_grant');
    expectOAuthError(await flows.token({ grant_type: 'authorization_code', client_id: appA.client_id, redirect_uri: REDIRECT_URI, code_verifier: pkce().verifier }), 'invalid_request');
  });

  it('authenticates confidential clients with Basic and refuses them without it', async () => {
    const issued = await flows.launchCode(appC, { fhirUser: practitioner, patient: `Patient/${patientId}` });
    const fields = { grant_type: 'authorization_code', code: issued.code, redirect_uri: issued.redirectUri, code_verifier: issued.verifier };
    expectOAuthError(await flows.token({ ...fields, client_id: appC.client_id }), 'invalid_client');
    const wrongSecret = await flows.token(fields, { id: appC.client_id, secret: 'wrong-secret' });
    expectOAuthError(wrongSecret, 'invalid_client', 401);
    expect(wrongSecret.headers['www-authenticate']).toMatch(/^Basic/);
    const ok = await flows.token(fields, basicC());
    expect(ok.status, ok.text).toBe(200);
  });

  it('answers invalid_client for unknown clients: 401 with WWW-Authenticate when Basic was used', async () => {
    expectOAuthError(await flows.token({ grant_type: 'authorization_code', code: 'x', client_id: 'no-such-client' }), 'invalid_client');
    expectOAuthError(await flows.token({ grant_type: 'authorization_code', code: 'x' }), 'invalid_client');
    const basic = await flows.token({ grant_type: 'authorization_code', code: 'x' }, { id: 'no-such-client', secret: 'whatever-secret' });
    expectOAuthError(basic, 'invalid_client', 401);
    expect(basic.headers['www-authenticate']).toMatch(/^Basic/);
    // A public client cannot pass itself off as confidential.
    const publicBasic = await flows.token({ grant_type: 'authorization_code', code: 'x' }, { id: appA.client_id, secret: '' });
    expectOAuthError(publicBasic, 'invalid_client', 401);
  });

  it('refuses unsupported grant types, a missing grant_type and non-form bodies', async () => {
    for (const grantType of ['password', 'implicit', 'urn:ietf:params:oauth:grant-type:device_code', 'token']) {
      expectOAuthError(await flows.token({ grant_type: grantType, client_id: appA.client_id }), 'unsupported_grant_type');
    }
    expectOAuthError(await flows.token({ client_id: appA.client_id }), 'invalid_request');
    const json = await server.anonymous.post('/auth/token').send({ grant_type: 'client_credentials' });
    expectOAuthError(json, 'invalid_request');
  });
});

describe('token endpoint: refresh_token', () => {
  async function offlineTokens() {
    const res = await flows.exchange(appA, await launchA());
    expect(res.status, res.text).toBe(200);
    expect(res.body.refresh_token).toBeTruthy();
    return res.body as { access_token: string; refresh_token: string; scope: string };
  }
  const refresh = (refreshToken: string, extra: Record<string, string> = {}) =>
    flows.token({ grant_type: 'refresh_token', refresh_token: refreshToken, client_id: appA.client_id, ...extra });

  it('is bound to its client, and a wrong client does not use it up', async () => {
    const tokens = await offlineTokens();
    expectOAuthError(await flows.token({ grant_type: 'refresh_token', refresh_token: tokens.refresh_token, client_id: appB.client_id }), 'invalid_grant');
    expectOAuthError(await flows.token({ grant_type: 'refresh_token', refresh_token: tokens.refresh_token }, basicC()), 'invalid_grant');
    const owner = await refresh(tokens.refresh_token);
    expect(owner.status, owner.text).toBe(200);
  });

  it('refuses scopes not granted originally, without using the token up, and may narrow', async () => {
    const tokens = await offlineTokens();
    expectOAuthError(await refresh(tokens.refresh_token, { scope: 'patient/*.cruds' }), 'invalid_scope');
    expectOAuthError(await refresh(tokens.refresh_token, { scope: `${tokens.scope} user/*.rs` }), 'invalid_scope');
    const narrowed = await refresh(tokens.refresh_token, { scope: 'patient/*.rs offline_access' });
    expect(narrowed.status, narrowed.text).toBe(200);
    expect(narrowed.body.scope).toBe('patient/*.rs offline_access');
    expect(narrowed.headers['cache-control']).toBe('no-store');
    expect(narrowed.body.expires_in).toBeLessThanOrEqual(3600);
  });

  it('rotates, and a rotated-out token presented again revokes the whole grant', async () => {
    const first = await offlineTokens();
    const second = await refresh(first.refresh_token);
    expect(second.status, second.text).toBe(200);
    expect(second.body.refresh_token).toBeTruthy();
    expect(second.body.refresh_token).not.toBe(first.refresh_token);
    expect((await fhirRead(second.body.access_token)).status).toBe(200);
    expectOAuthError(await refresh(first.refresh_token), 'invalid_grant');
    expectOutcome(await fhirRead(second.body.access_token), 401);
    expectOutcome(await fhirRead(first.access_token), 401);
    expectOAuthError(await refresh(second.body.refresh_token), 'invalid_grant');
  });

  it('refuses unknown refresh tokens', async () => {
    expectOAuthError(await refresh(randomBytes(32).toString('base64url')), 'invalid_grant');
    expectOAuthError(await flows.token({ grant_type: 'refresh_token', client_id: appA.client_id }), 'invalid_request');
  });
});

describe('introspection and revocation', () => {
  const introspect = (token: string, clientId = appA.client_id) =>
    server.anonymous.post('/auth/introspect').type('form').send(form({ token, client_id: clientId }));
  const revoke = (token: string, clientId = appA.client_id) => server.anonymous.post('/auth/revoke').type('form').send(form({ token, client_id: clientId }));

  it('describes a live token and answers exactly {"active": false} for anything else', async () => {
    const tokens = (await flows.exchange(appA, await launchA())).body;
    const live = await introspect(tokens.access_token);
    expect(live.status).toBe(200);
    expect(live.headers['cache-control']).toBe('no-store');
    expect(live.body).toMatchObject({ active: true, scope: tokens.scope, client_id: appA.client_id, fhirUser: practitioner, patient: patientId });
    expect(typeof live.body.exp).toBe('number');
    expect(live.body.sub).toBeTruthy();
    const expired = await server.app.auth.tokens.accessToken({ sub: 'x', client_id: appA.client_id, scope: 'patient/*.rs' }, -60);
    for (const token of [randomBytes(32).toString('base64url'), 'a.b.c', tokens.refresh_token, tokens.id_token, expired]) {
      const res = await introspect(token);
      expect(res.status).toBe(200);
      expect(res.body).toEqual({ active: false });
    }
    expectOAuthError(await server.anonymous.post('/auth/introspect').type('form').send(form({ token: tokens.access_token })), 'invalid_client');
  });

  it('kills a revoked access token at the FHIR API and in introspection', async () => {
    const tokens = (await flows.exchange(appA, await launchA())).body;
    expect((await fhirRead(tokens.access_token)).status).toBe(200);
    const res = await revoke(tokens.access_token);
    expect(res.status).toBe(200);
    expect(res.headers['cache-control']).toBe('no-store');
    const after = await fhirRead(tokens.access_token);
    expectOutcome(after, 401);
    expect(after.headers['www-authenticate']).toMatch(/error="invalid_token"/);
    expect((await introspect(tokens.access_token)).body).toEqual({ active: false });
  });

  it('refuses a revoked refresh token with invalid_grant and ends its grant', async () => {
    const tokens = (await flows.exchange(appA, await launchA())).body;
    expect((await revoke(tokens.refresh_token)).status).toBe(200);
    expectOAuthError(await flows.token({ grant_type: 'refresh_token', refresh_token: tokens.refresh_token, client_id: appA.client_id }), 'invalid_grant');
    expectOutcome(await fhirRead(tokens.access_token), 401);
  });

  it('lets no client revoke another client’s tokens, and answers 200 for unknown ones', async () => {
    const tokens = (await flows.exchange(appA, await launchA())).body;
    expect((await revoke(tokens.access_token, appB.client_id)).status).toBe(200);
    expect((await revoke(tokens.refresh_token, appB.client_id)).status).toBe(200);
    expect((await fhirRead(tokens.access_token)).status).toBe(200);
    expect((await flows.token({ grant_type: 'refresh_token', refresh_token: tokens.refresh_token, client_id: appA.client_id })).status).toBe(200);
    expect((await revoke(randomBytes(32).toString('base64url'))).status).toBe(200);
    expectOAuthError(await server.anonymous.post('/auth/revoke').type('form').send(form({ client_id: appA.client_id })), 'invalid_request');
  });

  it('refuses an id_token or a sign-in page value as an access token', async () => {
    const issued = await flows.standaloneCode(appA, user, { scope: 'openid fhirUser patient/*.rs' });
    const tokens = (await flows.exchange(appA, issued)).body;
    expect(tokens.id_token).toBeTruthy();
    const pending = pendingOf((await flows.authorize(flows.params(appA))).text);
    for (const token of [tokens.id_token, pending]) {
      const res = await fhirRead(token);
      expectOutcome(res, 401);
      expect(res.headers['www-authenticate']).toMatch(/error="invalid_token"/);
    }
  });
});

describe('EHR launch', () => {
  it('is single use', async () => {
    const launch = await flows.launch({ fhirUser: practitioner, patient: `Patient/${patientId}`, client_id: appA.client_id });
    const first = redirectQuery(await flows.authorize(flows.params(appA, { launch, scope: 'launch patient/*.rs' })));
    expect(first.get('code')).toBeTruthy();
    flows.remember(first.get('code')!);
    const params = flows.params(appA, { launch, scope: 'launch patient/*.rs' });
    const second = redirectQuery(await flows.authorize(params));
    expect(second.get('error')).toBe('invalid_request');
    expect(second.get('state')).toBe(params.state);
    expect(second.get('code')).toBeNull();
  });

  it('is bound to the client it was made for', async () => {
    const launch = await flows.launch({ fhirUser: practitioner, patient: `Patient/${patientId}`, client_id: appA.client_id });
    const params = flows.params(appB, { launch, scope: 'launch patient/*.rs' });
    const other = redirectQuery(await flows.authorize(params));
    expect(other.get('error')).toBe('invalid_request');
    expect(other.get('state')).toBe(params.state);
    expect(other.get('code')).toBeNull();
    // The other client's attempt did not use it up.
    expect(redirectQuery(await flows.authorize(flows.params(appA, { launch, scope: 'launch patient/*.rs' }))).get('code')).toBeTruthy();
  });

  it('is short-lived and refused once expired, like an unknown launch', async () => {
    const res = await server.request.post('/auth/launch').send({ fhirUser: practitioner, patient: `Patient/${patientId}`, client_id: appA.client_id });
    expect(res.status).toBe(201);
    flows.remember(res.body.launch);
    expect(res.body.expires_in).toBeGreaterThan(0);
    expect(res.body.expires_in).toBeLessThanOrEqual(600);
    await server.app.db.query("UPDATE auth_launches SET expires_at = now() - interval '1 second' WHERE launch_hash = $1", [sha256(res.body.launch)]);
    for (const launch of [res.body.launch, randomBytes(24).toString('base64url')]) {
      const query = redirectQuery(await flows.authorize(flows.params(appA, { launch, scope: 'launch patient/*.rs' })));
      expect(query.get('error')).toBe('invalid_request');
      expect(query.get('code')).toBeNull();
    }
  });
});

describe('administration endpoints', () => {
  let userToken: string;
  beforeAll(async () => {
    userToken = (await flows.exchange(appA, await launchA())).body.access_token;
  });

  const bodies: Record<string, Record<string, unknown>> = {
    '/auth/register': { token_endpoint_auth_method: 'none', redirect_uris: [REDIRECT_URI], scope: 'patient/*.rs' },
    '/auth/users': { username: `x-${randomBytes(4).toString('hex')}`, password: 'long enough password', fhirUser: 'Patient/nobody' },
    '/auth/launch': { fhirUser: 'Practitioner/nobody' },
  };

  for (const [path, body] of Object.entries(bodies)) {
    it(`${path} needs an administrator's token: 401 without one, 403 for anyone else`, async () => {
      const none = await server.anonymous.post(path).send(body);
      expect(none.status).toBe(401);
      expect(none.headers['www-authenticate']).toMatch(/^Bearer/);
      expect(none.headers['www-authenticate']).not.toMatch(/error=/);
      const invalid = await server.anonymous.post(path).set('Authorization', 'Bearer not-a-token').send(body);
      expect(invalid.status).toBe(401);
      expect(invalid.headers['www-authenticate']).toMatch(/^Bearer .*error="invalid_token"/);
      const nonAdmin = await server.anonymous.post(path).set('Authorization', `Bearer ${userToken}`).send(body);
      expect(nonAdmin.status).toBe(403);
    });
  }

  it('refuses invalid client metadata (RFC 7591)', async () => {
    const cases: [Record<string, unknown>, string][] = [
      [{ token_endpoint_auth_method: 'client_secret_post', redirect_uris: [REDIRECT_URI] }, 'invalid_client_metadata'],
      [{ token_endpoint_auth_method: 'none', redirect_uris: ['not a url'] }, 'invalid_redirect_uri'],
      [{ token_endpoint_auth_method: 'none', redirect_uris: [`${REDIRECT_URI}#fragment`] }, 'invalid_redirect_uri'],
      [{ token_endpoint_auth_method: 'none', redirect_uris: ['javascript:alert(1)'] }, 'invalid_redirect_uri'],
      [{ token_endpoint_auth_method: 'none', redirect_uris: 'https://app.example.test/callback' }, 'invalid_redirect_uri'],
      [{ token_endpoint_auth_method: 'none', redirect_uris: [REDIRECT_URI], scope: 'patient/NoSuchType.rs' }, 'invalid_client_metadata'],
      [{ token_endpoint_auth_method: 'none', redirect_uris: [REDIRECT_URI], scope: 'patient/*.xyz' }, 'invalid_client_metadata'],
      [{ token_endpoint_auth_method: 'private_key_jwt', scope: 'system/*.rs' }, 'invalid_client_metadata'],
      [{ token_endpoint_auth_method: 'private_key_jwt', jwks: { keys: [] }, scope: 'system/*.rs' }, 'invalid_client_metadata'],
      [{ token_endpoint_auth_method: 'none', redirect_uris: [REDIRECT_URI], jwks_uri: 'https://keys.example/jwks' }, 'invalid_client_metadata'],
    ];
    for (const [metadata, error] of cases) {
      const res = await server.request.post('/auth/register').send(metadata);
      expectOAuthError(res, error);
    }
    expectOAuthError(await server.request.post('/auth/register').send([]), 'invalid_request');
    expectOAuthError(await server.request.post('/auth/register').set('content-type', 'application/json').send('{not json'), 'invalid_request');
  });
});

describe('audit trail', () => {
  const agentName = (event: Record<string, any>) => event.agent?.[0]?.name;

  it('records sign-ins that succeed and fail', async () => {
    const client = await flows.register({ token_endpoint_auth_method: 'none', redirect_uris: [REDIRECT_URI], scope: APP_SCOPES });
    const pending = pendingOf((await flows.authorize(flows.params(client))).text);
    await flows.login(pending, user.username, 'wrong password here');
    await flows.login(pending, user.username, user.password);
    const events = await waitForAuditEvents(server, 'login', (e) => agentName(e) === client.client_id, 2);
    expect(events.map((e) => e.outcome).sort()).toEqual(['0', '4']);
    expect(events.find((e) => e.outcome === '0')!.agent[0].who.reference).toBe(`Patient/${patientId}`);
  });

  it('records launches, token issue and revocation', async () => {
    const client = await flows.register({ token_endpoint_auth_method: 'none', redirect_uris: [REDIRECT_URI], scope: APP_SCOPES });
    const tokens = (await flows.exchange(client, await flows.launchCode(client, { fhirUser: practitioner, patient: `Patient/${patientId}` }))).body;
    await server.anonymous.post('/auth/revoke').type('form').send(form({ token: tokens.refresh_token, client_id: client.client_id }));
    const ofClient = (e: Record<string, any>) => agentName(e) === client.client_id;
    const [launch] = await waitForAuditEvents(server, 'launch', ofClient);
    expect(launch?.agent[0].who.reference).toBe(practitioner);
    expect(launch?.entity?.[0]?.what?.reference).toBe(`Patient/${patientId}`);
    expect(await waitForAuditEvents(server, 'token', ofClient)).toHaveLength(1);
    expect(await waitForAuditEvents(server, 'revoke', ofClient)).toHaveLength(1);
  });
});

describe('credentials stay secret', () => {
  it('never appear in logs, the audit trail, redirects or Bundle links', async () => {
    await server.app.audit.flush();
    expect(flows.secrets.size).toBeGreaterThan(20);
    expectNoSecrets(server.logs, flows.secrets, 'the server log');

    const audit = await server.request.get('/fhir/AuditEvent?_count=1000');
    expect(audit.status).toBe(200);
    expectNoSecrets([audit.text], flows.secrets, 'the audit trail');

    for (const { location, code } of flows.locations) {
      const query = new URL(location).searchParams;
      expect([...query.keys()].every((k) => ['code', 'state', 'error', 'error_description', 'tenant'].includes(k)), location).toBe(true);
      expectNoSecrets([location.replace(code ?? '\u0000', '')], flows.secrets, `the redirect ${location}`);
    }

    const search = await server.request.get('/fhir/AuditEvent?_count=1');
    const links = JSON.parse(search.text).link as { relation: string; url: string }[];
    expect(links.some((l) => l.relation === 'next')).toBe(true);
    expectNoSecrets(links.map((l) => l.url), flows.secrets, 'Bundle links');
  });
});

function sha256(value: string): string {
  return createHash('sha256').update(value).digest('base64url');
}
