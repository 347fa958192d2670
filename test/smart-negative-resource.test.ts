/**
 * SMART Backend Services (client_credentials with private_key_jwt assertions) and the
 * resource server's side of SMART, through HTTP: which assertions and which bearer tokens
 * are refused, and how (401 with a Bearer challenge, 403 for scope), v1 and query-restricted
 * scopes, batch entries authorized one by one, tokens of trusted external issuers, and that
 * no credential reaches the logs or Bundle links.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { randomBytes, randomUUID } from 'node:crypto';
import { exportJWK, generateKeyPair, importJWK, SignJWT } from 'jose';
import type { CryptoKey, JWK } from 'jose';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { startTestServer } from './support/server.js';
import type { TestServer } from './support/server.js';
import { expectNoSecrets, expectOAuthError, expectOutcome, SmartFlows } from './support/smart-flows.js';
import type { RegisteredClient } from './support/smart-flows.js';

const ASSERTION_TYPE = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';

interface SigningKey {
  kid: string;
  alg: string;
  privateKey: CryptoKey;
  publicJwk: JWK;
}

async function signingKey(alg: string, kid: string = randomUUID()): Promise<SigningKey> {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true });
  return { kid, alg, privateKey, publicJwk: { ...(await exportJWK(publicKey)), kid, alg, use: 'sig' } };
}

let server: TestServer;
let flows: SmartFlows;
/** Serves the JWKS of the jwks_uri client and of the trusted EHR issuer. */
let keyServer: http.Server;
let keyBase: string;
let rs384: SigningKey;
let es384: SigningKey;
let rs256: SigningKey;
let remoteKey: SigningKey;
let ehrKey: SigningKey;
/** A backend client with inline JWKS, and one with a jwks_uri. */
let backend: RegisteredClient;
let remote: RegisteredClient;
let patientId: string;

beforeAll(async () => {
  [rs384, es384, rs256, remoteKey, ehrKey] = await Promise.all([
    signingKey('RS384'),
    signingKey('ES384'),
    signingKey('RS256'),
    signingKey('ES384'),
    signingKey('RS256'),
  ]);
  keyServer = http.createServer((req, res) => {
    const keys = req.url === '/client-jwks' ? [remoteKey.publicJwk] : req.url === '/ehr/jwks' ? [ehrKey.publicJwk] : undefined;
    res.writeHead(keys ? 200 : 404, { 'content-type': 'application/json' }).end(JSON.stringify(keys ? { keys } : {}));
  });
  await new Promise<void>((resolve) => keyServer.listen(0, '127.0.0.1', resolve));
  keyBase = `http://127.0.0.1:${(keyServer.address() as AddressInfo).port}`;
  server = await startTestServer({
    env: {
      AUTH_REQUESTS_PER_MINUTE: '100000',
      TRUSTED_ISSUERS: JSON.stringify([{ issuer: `${keyBase}/ehr`, jwksUri: `${keyBase}/ehr/jwks` }]),
    },
  });
  flows = new SmartFlows(server);
  flows.remember(server.admin.token, server.admin.clientSecret);
  patientId = (await flows.createResource({ resourceType: 'Patient', name: [{ family: 'Resource', given: ['Rita'] }] })).id;
  backend = await flows.register({
    token_endpoint_auth_method: 'private_key_jwt',
    jwks: { keys: [rs384.publicJwk, es384.publicJwk, rs256.publicJwk] },
    scope: 'system/Patient.rs system/Encounter.cruds',
    client_name: 'Backend',
  });
  remote = await flows.register({ token_endpoint_auth_method: 'private_key_jwt', jwks_uri: `${keyBase}/client-jwks`, scope: 'system/Patient.rs' });
});
afterAll(async () => {
  await server?.stop({ dropDatabase: true });
  await new Promise((resolve) => keyServer?.close(resolve));
});

interface AssertionOptions {
  key?: SigningKey;
  alg?: string;
  kid?: string;
  iss?: string;
  sub?: string;
  aud?: string;
  /** Seconds from now. */
  expiresIn?: number | null;
  jti?: string;
  jku?: string;
}

async function assertion(client: RegisteredClient, options: AssertionOptions = {}): Promise<string> {
  const key = options.key ?? rs384;
  const jwt = new SignJWT({ jti: options.jti ?? randomUUID() })
    .setProtectedHeader({ alg: options.alg ?? key.alg, kid: options.kid ?? key.kid, typ: 'JWT', ...(options.jku ? { jku: options.jku } : {}) })
    .setIssuer(options.iss ?? client.client_id)
    .setSubject(options.sub ?? client.client_id)
    .setAudience(options.aud ?? `${server.baseUrl}/auth/token`)
    .setIssuedAt();
  if (options.expiresIn !== null) {
    jwt.setExpirationTime(Math.floor(Date.now() / 1000) + (options.expiresIn ?? 240));
  }
  return jwt.sign(key.privateKey);
}

function backendToken(clientAssertion: string, scope = 'system/Patient.rs', assertionType = ASSERTION_TYPE) {
  return flows.token({ grant_type: 'client_credentials', scope, client_assertion_type: assertionType, client_assertion: clientAssertion });
}

/** A JWT signed by no key anyone registered (for `alg: none` and HMAC forgeries). */
function unsignedJwt(header: Record<string, unknown>, payload: Record<string, unknown>): string {
  const part = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url');
  return `${part(header)}.${part(payload)}.`;
}

const now = () => Math.floor(Date.now() / 1000);
const bearer = (token: string) => ({ Authorization: `Bearer ${token}` });

describe('backend services: client assertions', () => {
  it('grants RS384 and ES384 assertions a short-lived token without a refresh token', async () => {
    for (const key of [rs384, es384]) {
      const res = await backendToken(await assertion(backend, { key }));
      expect(res.status, res.text).toBe(200);
      expect(res.headers['cache-control']).toBe('no-store');
      expect(res.headers.pragma).toBe('no-cache');
      expect(res.body.token_type).toBe('Bearer');
      expect(typeof res.body.expires_in).toBe('number');
      expect(res.body.expires_in).toBeLessThanOrEqual(300);
      expect(res.body.scope).toBe('system/Patient.rs');
      expect(res.body.refresh_token).toBeUndefined();
      expect((await server.anonymous.get(`/fhir/Patient/${patientId}`).set(bearer(res.body.access_token))).status).toBe(200);
    }
  });

  it('refuses assertions signed with other algorithms (HS256, RS256, none)', async () => {
    const hs256 = await new SignJWT({ jti: randomUUID() })
      .setProtectedHeader({ alg: 'HS256', kid: rs384.kid })
      .setIssuer(backend.client_id)
      .setSubject(backend.client_id)
      .setAudience(`${server.baseUrl}/auth/token`)
      .setExpirationTime(now() + 120)
      .sign(randomBytes(32));
    const none = unsignedJwt(
      { alg: 'none', kid: rs384.kid },
      { iss: backend.client_id, sub: backend.client_id, aud: `${server.baseUrl}/auth/token`, exp: now() + 120, jti: randomUUID() }
    );
    // rs256's public key is registered: only its algorithm is wrong.
    for (const jwt of [hs256, await assertion(backend, { key: rs256 }), none]) {
      expectOAuthError(await backendToken(jwt), 'invalid_client');
    }
  });

  it('refuses an assertion expiring more than five minutes ahead, already expired, or without exp', async () => {
    for (const expiresIn of [600, 24 * 3600, -120, null]) {
      expectOAuthError(await backendToken(await assertion(backend, { expiresIn })), 'invalid_client');
    }
  });

  it('refuses a replayed jti', async () => {
    const jwt = await assertion(backend);
    expect((await backendToken(jwt)).status).toBe(200);
    expectOAuthError(await backendToken(jwt), 'invalid_client');
    const jti = randomUUID();
    expect((await backendToken(await assertion(backend, { jti }))).status).toBe(200);
    expectOAuthError(await backendToken(await assertion(backend, { jti, key: es384 })), 'invalid_client');
  });

  it('refuses an audience other than the token URL', async () => {
    for (const aud of [server.fhirBase, `${server.baseUrl}/auth/token/`, `${server.baseUrl}/auth/authorize`, 'https://evil.example/token']) {
      expectOAuthError(await backendToken(await assertion(backend, { aud })), 'invalid_client');
    }
  });

  it('requires iss = sub = a registered client whose keys signed it', async () => {
    expectOAuthError(await backendToken(await assertion(backend, { sub: remote.client_id })), 'invalid_client');
    expectOAuthError(await backendToken(await assertion(backend, { sub: 'someone-else' })), 'invalid_client');
    // The other client's identity with this client's key.
    expectOAuthError(await backendToken(await assertion(remote, { key: rs384 })), 'invalid_client');
    expectOAuthError(await backendToken(await assertion({ ...backend, client_id: 'no-such-client' })), 'invalid_client');
    // A key nobody registered, even under a registered kid.
    const stranger = await signingKey('RS384', rs384.kid);
    expectOAuthError(await backendToken(await assertion(backend, { key: stranger })), 'invalid_client');
    expectOAuthError(await backendToken(await assertion(backend, { kid: 'unknown-kid' })), 'invalid_client');
  });

  it('refuses a jku header other than the registered JWKS URL', async () => {
    expect((await backendToken(await assertion(remote, { key: remoteKey }))).status).toBe(200);
    expect((await backendToken(await assertion(remote, { key: remoteKey, jku: `${keyBase}/client-jwks` }))).status).toBe(200);
    expectOAuthError(await backendToken(await assertion(remote, { key: remoteKey, jku: `${keyBase}/ehr/jwks` })), 'invalid_client');
    expectOAuthError(await backendToken(await assertion(remote, { key: remoteKey, jku: 'https://evil.example/jwks' })), 'invalid_client');
    expectOAuthError(await backendToken(await assertion(backend, { jku: `${keyBase}/client-jwks` })), 'invalid_client');
  });

  it('refuses a wrong client_assertion_type and public clients', async () => {
    expectOAuthError(await backendToken(await assertion(backend), 'system/Patient.rs', 'urn:ietf:params:oauth:client-assertion-type:saml2-bearer'), 'invalid_client');
    expectOAuthError(await flows.token({ grant_type: 'client_credentials', scope: 'system/Patient.rs', client_assertion_type: ASSERTION_TYPE }), 'invalid_client');
    const publicApp = await flows.register({ token_endpoint_auth_method: 'none', redirect_uris: ['https://app.example.test/callback'], scope: 'system/Patient.rs' });
    expectOAuthError(await flows.token({ grant_type: 'client_credentials', scope: 'system/Patient.rs', client_id: publicApp.client_id }), 'unauthorized_client');
  });

  it('grants only scopes within the registration, narrowed, in the form asked for', async () => {
    const granted = async (scope: string) => {
      const res = await backendToken(await assertion(backend), scope);
      expect(res.status, res.text).toBe(200);
      return res.body.scope as string;
    };
    expect(await granted('system/Patient.rs system/Practitioner.rs')).toBe('system/Patient.rs');
    expect(await granted('system/Patient.cruds')).toBe('system/Patient.rs');
    expect(await granted('system/Patient.read')).toBe('system/Patient.read');
    expect(await granted('system/Patient.*')).toBe('system/Patient.read');
    expect(await granted('system/Encounter.write')).toBe('system/Encounter.write');
    for (const scope of ['system/Practitioner.rs', 'system/*.rs', 'patient/Patient.rs user/Patient.rs', 'openid fhirUser', '']) {
      expectOAuthError(await backendToken(await assertion(backend), scope), 'invalid_scope');
    }
  });
});

describe('resource server: bearer tokens', () => {
  let validToken: string;
  beforeAll(async () => {
    validToken = (await backendToken(await assertion(backend))).body.access_token;
  });

  const expectInvalidToken = (res: Awaited<ReturnType<typeof server.anonymous.get>>) => {
    expectOutcome(res, 401);
    expect(res.headers['www-authenticate']).toMatch(/^Bearer .*error="invalid_token"/);
  };

  it('answers a request without a token with exactly 401, a Bearer challenge and an OperationOutcome', async () => {
    for (const req of [
      server.anonymous.get('/fhir/Patient'),
      server.anonymous.get(`/fhir/Patient/${patientId}`),
      server.anonymous.post('/fhir/Patient').set('content-type', 'application/fhir+json').send('{"resourceType":"Patient"}'),
    ]) {
      const res = await req;
      expectOutcome(res, 401);
      expect(res.headers['www-authenticate']).toMatch(/^Bearer\b/);
      expect(res.headers['www-authenticate']).not.toMatch(/error=/);
    }
  });

  it('refuses malformed tokens and other schemes with error="invalid_token"', async () => {
    for (const authorization of ['Bearer not-a-jwt', 'Bearer a.b.c', 'Bearer', `Basic ${Buffer.from('a:b').toString('base64')}`, `Bearer ${validToken} extra`, `Token ${validToken}`]) {
      expectInvalidToken(await server.anonymous.get('/fhir/Patient').set('Authorization', authorization));
    }
  });

  it('refuses forged tokens: another key, alg none, HMAC, a foreign audience or issuer', async () => {
    const jwks = (await server.anonymous.get('/auth/jwks')).body.keys as JWK[];
    const kid = jwks[0].kid!;
    const claims = { scope: 'system/*.cruds', client_id: server.admin.clientId, sub: server.admin.clientId, roles: ['admin'] };
    const sign = (key: CryptoKey, alg: string, overrides: { iss?: string; aud?: string } = {}) =>
      new SignJWT(claims)
        .setProtectedHeader({ alg, kid, typ: 'at+jwt' })
        .setIssuer(overrides.iss ?? server.fhirBase)
        .setAudience(overrides.aud ?? server.fhirBase)
        .setIssuedAt()
        .setExpirationTime(now() + 300)
        .setJti(randomUUID())
        .sign(key);
    const otherKey = await signingKey('RS256', kid);
    // The server's own private key, to show that audience and issuer are checked on their own.
    const [row] = await server.app.db.query<{ private_jwk: string }>('SELECT private_jwk FROM auth_keys WHERE retired_at IS NULL');
    const serverKey = (await importJWK(JSON.parse(row.private_jwk), 'RS256')) as CryptoKey;
    const forgeries = [
      await sign(otherKey.privateKey, 'RS256'),
      unsignedJwt({ alg: 'none', typ: 'at+jwt' }, { ...claims, iss: server.fhirBase, aud: server.fhirBase, exp: now() + 300 }),
      await sign(new TextEncoder().encode(JSON.stringify(jwks[0])) as never, 'HS256'),
      await sign(serverKey, 'RS256', { aud: 'https://other.example/fhir' }),
      await sign(serverKey, 'RS256', { iss: 'https://other.example/fhir' }),
    ];
    expect((await server.anonymous.get('/fhir/Patient').set(bearer(await sign(serverKey, 'RS256')))).status).toBe(200);
    for (const token of forgeries) {
      expectInvalidToken(await server.anonymous.get('/fhir/Patient').set(bearer(token)));
    }
  });

  it('refuses an expired token', async () => {
    const expired = await server.app.auth.tokens.accessToken({ sub: backend.client_id, client_id: backend.client_id, scope: 'system/Patient.rs' }, -60);
    flows.remember(expired);
    expectInvalidToken(await server.anonymous.get(`/fhir/Patient/${patientId}`).set(bearer(expired)));
  });

  it('refuses a token once it expires, though it was accepted (and remembered) before', async () => {
    const shortLived = await server.app.auth.tokens.accessToken({ sub: backend.client_id, client_id: backend.client_id, scope: 'system/Patient.rs' }, 2);
    flows.remember(shortLived);
    expect((await server.anonymous.get(`/fhir/Patient/${patientId}`).set(bearer(shortLived))).status).toBe(200);
    // Past exp and the five seconds of clock tolerance; the server's clock, not a sleep.
    vi.useFakeTimers({ toFake: ['Date'], now: Date.now() + 10_000 });
    try {
      expectInvalidToken(await server.anonymous.get(`/fhir/Patient/${patientId}`).set(bearer(shortLived)));
    } finally {
      vi.useRealTimers();
    }
  });

  it('refuses a token in the query string, even a valid one', async () => {
    expectOutcome(await server.anonymous.get(`/fhir/Patient?access_token=${validToken}`), 401);
    expectOutcome(await server.anonymous.get(`/fhir/Patient/${patientId}?access_token=${validToken}`).set(bearer(validToken)), 401);
  });
});

describe('resource server: scopes', () => {
  /** A patient's token that may only read and search their own Patient resource. */
  let patientOnly: string;
  beforeAll(async () => {
    patientOnly = await server.app.auth.tokens.accessToken(
      { sub: 'u1', client_id: backend.client_id, scope: 'patient/Patient.rs', fhirUser: `Patient/${patientId}`, patient: patientId },
      300
    );
    flows.remember(patientOnly);
  });
  const asPatient = (method: 'get' | 'post' | 'put' | 'delete', path: string) => server.anonymous[method](`/fhir/${path}`).set(bearer(patientOnly));

  it('lets the granted interactions through', async () => {
    expect((await asPatient('get', `Patient/${patientId}`)).status).toBe(200);
    expect((await asPatient('get', 'Patient')).status).toBe(200);
  });

  it('answers 403 to a Communication create without a create scope, before any messaging rule', async () => {
    // Scope is checked first: a 422 about thread structure would tell a client without
    // access how the messaging rules work.
    const message = {
      resourceType: 'Communication',
      status: 'completed',
      subject: { reference: `Patient/${patientId}` },
      payload: [{ contentString: 'hello' }],
    };
    expectOutcome(await asPatient('post', 'Communication').set('content-type', 'application/fhir+json').send(JSON.stringify(message)), 403);
  });

  it('answers 403 with an OperationOutcome for interactions the scopes do not grant', async () => {
    const encounter = { resourceType: 'Encounter', status: 'planned', class: { code: 'AMB' }, subject: { reference: `Patient/${patientId}` } };
    expectOutcome(await asPatient('post', 'Encounter').set('content-type', 'application/fhir+json').send(JSON.stringify(encounter)), 403);
    const patient = { resourceType: 'Patient', id: patientId, name: [{ family: 'Changed' }] };
    expectOutcome(await asPatient('put', `Patient/${patientId}`).set('content-type', 'application/fhir+json').send(JSON.stringify(patient)), 403);
    expectOutcome(await asPatient('delete', `Patient/${patientId}`), 403);
  });

  it('answers 403, never an empty Bundle, for a search of a type not granted', async () => {
    for (const path of ['Communication', `Communication?subject=Patient/${patientId}`, 'Encounter', 'AuditEvent']) {
      expectOutcome(await asPatient('get', path), 403);
    }
    expectOutcome(await asPatient('post', 'Encounter/_search').type('form').send(`patient=Patient/${patientId}`), 403);
  });

  it('confines a query-restricted scope to matching resources', async () => {
    const encounter = (status: string) =>
      flows.createResource({ resourceType: 'Encounter', status, class: { code: 'AMB' }, subject: { reference: `Patient/${patientId}` } });
    const finished = await encounter('finished');
    const planned = await encounter('planned');
    const restricted = await server.app.auth.tokens.accessToken(
      { sub: 'u1', client_id: backend.client_id, scope: 'patient/Patient.rs patient/Encounter.rs?status=finished', fhirUser: `Patient/${patientId}`, patient: patientId },
      300
    );
    flows.remember(restricted);
    const get = (path: string) => server.anonymous.get(`/fhir/${path}`).set(bearer(restricted));
    expect((await get(`Encounter/${finished.id}`)).status).toBe(200);
    const refused = await get(`Encounter/${planned.id}`);
    expect(refused.status).toBeGreaterThanOrEqual(400);
    expect(refused.status).toBeLessThan(500);
    const search = await get('Encounter');
    expect(search.status).toBe(200);
    const ids = (JSON.parse(search.text).entry ?? []).map((e: { resource: { id: string } }) => e.resource.id);
    expect(ids).toEqual([finished.id]);
    const asked = await get('Encounter?status=planned');
    expect(JSON.parse(asked.text).entry ?? []).toEqual([]);
  });

  it('authorizes each batch entry on its own', async () => {
    const bundle = {
      resourceType: 'Bundle',
      type: 'batch',
      entry: [
        { request: { method: 'GET', url: `Patient/${patientId}` } },
        { request: { method: 'GET', url: 'Encounter' } },
        {
          request: { method: 'POST', url: 'Encounter' },
          resource: { resourceType: 'Encounter', status: 'planned', class: { code: 'AMB' }, subject: { reference: `Patient/${patientId}` } },
        },
      ],
    };
    const res = await server.anonymous.post('/fhir').set(bearer(patientOnly)).set('content-type', 'application/fhir+json').send(JSON.stringify(bundle));
    expect(res.status, res.text).toBe(200);
    const statuses = JSON.parse(res.text).entry.map((e: { response: { status: string } }) => e.response.status.slice(0, 3));
    expect(statuses).toEqual(['200', '403', '403']);
  });
});

describe('resource server: trusted external issuers', () => {
  const ehrToken = (overrides: { iss?: string; aud?: string; key?: SigningKey; roles?: string[] } = {}) => {
    const key = overrides.key ?? ehrKey;
    return new SignJWT({ scope: 'system/Patient.rs', client_id: 'ehr-app', ...(overrides.roles ? { roles: overrides.roles } : {}) })
      .setProtectedHeader({ alg: key.alg, kid: key.kid })
      .setIssuer(overrides.iss ?? `${keyBase}/ehr`)
      .setAudience(overrides.aud ?? server.fhirBase)
      .setSubject('ehr-app')
      .setIssuedAt()
      .setExpirationTime(now() + 300)
      .setJti(randomUUID())
      .sign(key.privateKey);
  };

  it('accepts a trusted issuer’s token for this server only, signed by that issuer’s keys', async () => {
    const good = await ehrToken();
    flows.remember(good);
    expect((await server.anonymous.get(`/fhir/Patient/${patientId}`).set(bearer(good))).status).toBe(200);
    const stranger = await signingKey('RS256', ehrKey.kid);
    for (const token of [
      await ehrToken({ aud: 'https://other.example/fhir' }),
      await ehrToken({ key: stranger }),
      await ehrToken({ iss: `${keyBase}/not-trusted` }),
    ]) {
      const res = await server.anonymous.get(`/fhir/Patient/${patientId}`).set(bearer(token));
      expectOutcome(res, 401);
    }
  });

  it('never makes an external token an administrator', async () => {
    const token = await ehrToken({ roles: ['admin'] });
    flows.remember(token);
    const res = await server.anonymous
      .post('/auth/register')
      .set(bearer(token))
      .send({ token_endpoint_auth_method: 'none', redirect_uris: ['https://app.example.test/callback'], scope: 'patient/*.rs' });
    expect(res.status).toBe(403);
  });
});

describe('credentials stay secret', () => {
  it('never appear in logs or Bundle links', async () => {
    const token = (await backendToken(await assertion(backend))).body.access_token as string;
    const page = await server.anonymous.get('/fhir/Patient?_count=1&_total=accurate').set(bearer(token));
    expect(page.status).toBe(200);
    flows.remember(token);
    await flows.createResource({ resourceType: 'Patient', name: [{ family: 'Second' }] });
    const links = JSON.parse((await server.anonymous.get('/fhir/Patient?_count=1').set(bearer(token))).text).link as { relation: string; url: string }[];
    expect(links.some((l) => l.relation === 'next')).toBe(true);
    expectNoSecrets(links.map((l) => l.url), flows.secrets, 'Bundle links');
    await server.app.audit.flush();
    expect(flows.secrets.size).toBeGreaterThan(20);
    expectNoSecrets(server.logs, flows.secrets, 'the server log');
    expectNoSecrets([(await server.request.get('/fhir/AuditEvent?_count=1000')).text], flows.secrets, 'the audit trail');
  });
});
