/**
 * openapi.yaml against the running server: it is served, it is a well-formed OpenAPI 3
 * document, its `type` enum is the CapabilityStatement's set of types, and every documented
 * operation exists: a concrete request answers with a documented status, content type and
 * headers, never with "No endpoint". Methods a documented path does not list must not
 * succeed, so the document cannot silently miss an interaction either. The documented
 * security holds too: operations that need a bearer token answer 401 without one, public
 * ones answer without one, and the OAuth flows give the documented shapes.
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Response, Test } from 'supertest';
import { parse } from 'yaml';
import { startTestServer } from './support/server.js';
import type { TestServer } from './support/server.js';

type Json = Record<string, any>;
type HttpMethod = 'get' | 'post' | 'put' | 'patch' | 'delete';

const METHODS: HttpMethod[] = ['get', 'post', 'put', 'patch', 'delete'];
const FHIR_JSON = 'application/fhir+json';

const text = fs.readFileSync(new URL('../openapi.yaml', import.meta.url), 'utf8');
const doc = parse(text) as Json;

/** Resolves a local `$ref` (`#/components/...`); anything else is returned as is. */
function deref(node: Json): Json {
  let current = node;
  for (let guard = 0; current && typeof current.$ref === 'string'; guard++) {
    if (guard > 20 || !current.$ref.startsWith('#/')) {
      throw new Error(`Unresolvable $ref ${current.$ref}`);
    }
    current = pointer(current.$ref);
  }
  return current;
}

function pointer(ref: string): Json {
  let target: any = doc;
  for (const raw of ref.slice(2).split('/')) {
    const key = raw.replace(/~1/g, '/').replace(/~0/g, '~');
    target = target?.[key];
  }
  if (target === undefined) {
    throw new Error(`$ref ${ref} points at nothing`);
  }
  return target;
}

function allRefs(node: unknown, found: string[] = []): string[] {
  if (Array.isArray(node)) {
    node.forEach((n) => allRefs(n, found));
  } else if (node && typeof node === 'object') {
    for (const [key, value] of Object.entries(node)) {
      if (key === '$ref' && typeof value === 'string') {
        found.push(value);
      } else {
        allRefs(value, found);
      }
    }
  }
  return found;
}

interface Operation {
  path: string;
  method: HttpMethod;
  op: Json;
}

const operations: Operation[] = Object.entries(doc.paths ?? {}).flatMap(([path, item]) =>
  METHODS.filter((m) => (item as Json)[m]).map((method) => ({ path, method, op: (item as Json)[method] as Json }))
);

/** Path and operation parameters of an operation, resolved. */
function parametersOf(path: string, op: Json): Json[] {
  return [...((doc.paths[path] as Json).parameters ?? []), ...(op.parameters ?? [])].map(deref);
}

/** Security schemes that need a bearer token (as opposed to public or client-authenticated operations). */
const BEARER_SCHEMES = ['smartBearer', 'smartOAuth'];

function needsBearer(op: Json): boolean {
  return ((op.security ?? []) as Json[]).some((requirement) => Object.keys(requirement).some((s) => BEARER_SCHEMES.includes(s)));
}

/** Checks that `body` has every property its documented schema requires. */
function expectRequired(body: Json, schemaRef: string): void {
  for (const property of (pointer(schemaRef).required ?? []) as string[]) {
    expect(body, `${schemaRef} requires ${property}`).toHaveProperty(property);
  }
}

let server: TestServer;
type Client = TestServer['request'];
/** A Patient the GET/PUT/PATCH/history examples use, and one that DELETE removes. */
let patientId: string;
let deleteId: string;
let practitionerId: string;
let messageId: string;

/** A public SMART app, a patient who signs in to it, and the pages of one authorization in progress. */
const APP_REDIRECT = 'https://app.example.org/callback';
const PATIENT_LOGIN = { username: 'openapi.patient', password: 'openapi-password-1' };
const CODE_VERIFIER = 'openapi-test-code-verifier-0123456789-abcdefghij';
const CODE_CHALLENGE = createHash('sha256').update(CODE_VERIFIER).digest('base64url');
let appClientId: string;
let loginPending: string;
let consentPending: string;
/** A token the revocation example revokes. */
let spareToken: string;

async function createResource(resource: Json): Promise<string> {
  const res = await server.request.post(`/fhir/${resource.resourceType}`).set('content-type', FHIR_JSON).send(resource);
  expect(res.status, res.text).toBe(201);
  return res.body.id as string;
}

function authorizeParams(extra: Record<string, string> = {}): Record<string, string> {
  return {
    response_type: 'code',
    client_id: appClientId,
    redirect_uri: APP_REDIRECT,
    scope: 'openid fhirUser launch/patient patient/*.rs',
    state: 'openapi-state',
    aud: server.fhirBase,
    code_challenge: CODE_CHALLENGE,
    code_challenge_method: 'S256',
    ...extra,
  };
}

/** The hidden `pending` field of a sign-in or consent page. */
function pendingOf(html: string): string {
  const match = /name="pending" value="([^"]+)"/.exec(html);
  expect(match, html).not.toBeNull();
  return match![1];
}

function consentForm(pending: string): string {
  const form = new URLSearchParams({ pending, decision: 'approve' });
  for (const scope of authorizeParams().scope.split(' ')) {
    form.append('scope', scope);
  }
  return form.toString();
}

function adminToken(scope: string): Promise<Response> {
  return server.anonymous.post('/auth/token').auth(server.admin.clientId, server.admin.clientSecret).type('form').send({ grant_type: 'client_credentials', scope });
}

beforeAll(async () => {
  // An SMTP relay for $transmit to queue for (nothing listens: deliveries just wait).
  server = await startTestServer({ env: { SMTP_URL: 'smtp://127.0.0.1:9' } });
  patientId = await createResource({ resourceType: 'Patient', name: [{ family: 'Openapi' }] });
  deleteId = await createResource({ resourceType: 'Patient', name: [{ family: 'Deletable' }] });
  practitionerId = await createResource({ resourceType: 'Practitioner', name: [{ family: 'Openapi' }] });
  messageId = await createResource({
    resourceType: 'Communication',
    status: 'completed',
    subject: { reference: `Patient/${patientId}` },
    recipient: [{ reference: `Practitioner/${practitionerId}` }],
    payload: [{ contentString: 'An example message' }],
  });
  const registered = await server.request
    .post('/auth/register')
    .send({ client_name: 'OpenAPI test app', token_endpoint_auth_method: 'none', redirect_uris: [APP_REDIRECT], scope: 'openid fhirUser launch launch/patient patient/*.rs user/*.rs' });
  expect(registered.status, registered.text).toBe(201);
  appClientId = registered.body.client_id;
  const user = await server.request.post('/auth/users').send({ ...PATIENT_LOGIN, fhirUser: `Patient/${patientId}` });
  expect(user.status, user.text).toBe(201);
  const signIn = await server.anonymous.get('/auth/authorize').query(authorizeParams());
  expect(signIn.status, signIn.text).toBe(200);
  loginPending = pendingOf(signIn.text);
  const consent = await server.anonymous.post('/auth/login').type('form').send({ pending: loginPending, ...PATIENT_LOGIN });
  expect(consent.status, consent.text).toBe(200);
  consentPending = pendingOf(consent.text);
  const spare = await adminToken('system/Patient.rs');
  expect(spare.status, spare.text).toBe(200);
  spareToken = spare.body.access_token;
});
afterAll(async () => {
  await server?.stop({ dropDatabase: true });
});

/** The concrete URL of a documented path: type Patient, the example ids, version 1. */
function concretePath(path: string, method: HttpMethod): string {
  return path
    .replace('{type}', 'Patient')
    .replace('{id}', method === 'delete' ? deleteId : patientId)
    .replace('{vid}', '1');
}

/**
 * A request that should succeed for each documented operation, keyed `METHOD path`. The
 * client carries the administrator's bearer token when the operation's security needs one,
 * and no credentials otherwise.
 */
const EXAMPLES: Record<string, (client: Client, url: string) => Test> = {
  'GET /healthz': (client, url) => client.get(url),
  'GET /readyz': (client, url) => client.get(url),
  'GET /openapi.yaml': (client, url) => client.get(url),
  'GET /metrics': (client, url) => client.get(url),
  'GET /fhir/metadata': (client, url) => client.get(url),
  'POST /fhir': (client, url) =>
    client
      .post(url)
      .set('content-type', FHIR_JSON)
      .send({ resourceType: 'Bundle', type: 'batch', entry: [{ request: { method: 'GET', url: `Patient/${patientId}` } }] }),
  'GET /fhir/{type}': (client, url) => client.get(`${url}?family=openapi&_count=5&_total=accurate`),
  'POST /fhir/{type}': (client, url) =>
    client
      .post(url)
      .set('content-type', 'application/json')
      .set('If-None-Exist', 'family=nobody-has-this-name')
      .send({ resourceType: 'Patient', name: [{ family: 'Created' }] }),
  'POST /fhir/{type}/_search': (client, url) => client.post(url).type('form').send({ family: 'openapi', _count: '5' }),
  'GET /fhir/{type}/_history': (client, url) => client.get(`${url}?_count=2`),
  'GET /fhir/{type}/{id}': (client, url) => client.get(url),
  'PUT /fhir/{type}/{id}': (client, url) =>
    client
      .put(url)
      .set('content-type', FHIR_JSON)
      .set('If-Match', 'W/"1"')
      .send({ resourceType: 'Patient', id: patientId, name: [{ family: 'Openapi', given: ['Put'] }] }),
  'PATCH /fhir/{type}/{id}': (client, url) =>
    client
      .patch(url)
      .set('content-type', 'application/json-patch+json')
      .set('Prefer', 'return=minimal')
      .send([{ op: 'add', path: '/active', value: true }]),
  'DELETE /fhir/{type}/{id}': (client, url) => client.delete(url),
  'GET /fhir/{type}/{id}/_history': (client, url) => client.get(`${url}?_count=10`),
  'GET /fhir/{type}/{id}/_history/{vid}': (client, url) => client.get(url),
  'GET /fhir/{type}/{id}/$notification-preference': (client, url) => client.get(url),
  'POST /fhir/{type}/{id}/$notification-preference': (client, url) =>
    client
      .post(url)
      .set('content-type', FHIR_JSON)
      .send({ resourceType: 'Parameters', parameter: [{ name: 'channel', valueCode: 'none' }] }),
  'GET /fhir/Patient/{id}/$health-record': (client, url) => client.get(url),
  'GET /fhir/Patient/{id}/$download': (client, url) => client.get(url).query({ format: 'json' }),
  'POST /fhir/Patient/{id}/$transmit': (client, url) =>
    client
      .post(url)
      .set('content-type', FHIR_JSON)
      .send({ resourceType: 'Parameters', parameter: [{ name: 'to', valueString: 'records@clinic.example.org' }] }),
  'GET /fhir/Patient/{id}/$activity': (client, url) => client.get(url),
  'GET /fhir/Communication/$inbox': (client, url) => client.get(url).query({ practitioner: `Practitioner/${practitionerId}`, _count: '5' }),
  'GET /fhir/Communication/$response-times': (client, url) => client.get(url).query({ start: '2026-01-01', end: '2027-01-01' }),
  'GET /fhir/Communication/{id}/$delivery-status': (client) => client.get(`/fhir/Communication/${messageId}/$delivery-status`),
  'GET /web/config.json': (client, url) => client.get(url),
  'GET /apps/provider/launch': (client, url) => client.get(url).query({ iss: `${server.fhirBase}`, launch: 'example' }),
  'GET /apps/provider/': (client, url) => client.get(url),
  'GET /portal/': (client, url) => client.get(url),
  'GET /auditor/': (client, url) => client.get(url),
  'GET /fhir/.well-known/smart-configuration': (client, url) => client.get(url).set('accept', 'text/html'),
  'GET /fhir/.well-known/openid-configuration': (client, url) => client.get(url),
  'GET /fhir/Measure/{id}/$evaluate-measure': (client) =>
    client.get('/fhir/Measure/secure-messaging-2014/$evaluate-measure').query({ practitioner: `Practitioner/${practitionerId}`, periodStart: '2014-01-01', periodEnd: '2014-03-31', reportType: 'subject-list' }),
  'POST /fhir/Measure/{id}/$evaluate-measure': (client) =>
    client
      .post('/fhir/Measure/vdt-use-2014/$evaluate-measure')
      .set('content-type', FHIR_JSON)
      .send({
        resourceType: 'Parameters',
        parameter: [
          { name: 'practitioner', valueReference: { reference: `Practitioner/${practitionerId}` } },
          { name: 'periodStart', valueDate: '2014-01-01' },
          { name: 'periodEnd', valueDate: '2014-03-31' },
          { name: 'sign', valueBoolean: true },
        ],
      }),
  'GET /fhir/Measure/$attestation': (client, url) =>
    client.get(url).set('accept', 'text/csv').query({ year: '2014', practitioner: `Practitioner/${practitionerId}`, periodStart: '2014-01-01', periodEnd: '2014-03-31' }),
  // An unsigned report: a valid question, answered `valid: false`.
  'POST /fhir/MeasureReport/$verify': (client, url) =>
    client
      .post(url)
      .set('content-type', FHIR_JSON)
      .send({ resourceType: 'MeasureReport', status: 'complete', type: 'summary', measure: 'https://carethread.dev/fhir/Measure/vdt-use-2014', period: { start: '2014-01-01', end: '2014-03-31' } }),
  'GET /fhir/AuditEvent/$chain-head': (client, url) => client.get(url),
  'GET /fhir/AuditEvent/$verify-chain': (client, url) => client.get(url),
  'GET /auth/jwks': (client, url) => client.get(url),
  'GET /auth/report-keys': (client, url) => client.get(url),
  'GET /auth/smart-style.json': (client, url) => client.get(url),
  'GET /auth/authorize': (client, url) => client.get(url).query(authorizeParams()),
  'POST /auth/authorize': (client, url) => client.post(url).type('form').send(authorizeParams()),
  'POST /auth/login': (client, url) => client.post(url).type('form').send({ pending: loginPending, ...PATIENT_LOGIN }),
  'POST /auth/consent': (client, url) => client.post(url).type('form').send(consentForm(consentPending)),
  'POST /auth/token': (client, url) =>
    client.post(url).auth(server.admin.clientId, server.admin.clientSecret).type('form').send({ grant_type: 'client_credentials', scope: 'system/Patient.rs' }),
  'POST /auth/introspect': (client, url) =>
    client.post(url).auth(server.admin.clientId, server.admin.clientSecret).type('form').send({ token: server.admin.token }),
  'POST /auth/revoke': (client, url) => client.post(url).auth(server.admin.clientId, server.admin.clientSecret).type('form').send({ token: spareToken }),
  'POST /auth/register': (client, url) =>
    client.post(url).send({ client_name: 'Example EHR', token_endpoint_auth_method: 'client_secret_basic', scope: 'system/*.rs' }),
  'POST /auth/users': (client, url) =>
    client.post(url).send({ username: 'openapi.practitioner', password: 'openapi-password-2', fhirUser: `Practitioner/${practitionerId}` }),
  'POST /auth/launch': (client, url) =>
    client.post(url).send({ fhirUser: `Practitioner/${practitionerId}`, patient: `Patient/${patientId}`, client_id: appClientId }),
};

const key = (o: Pick<Operation, 'method' | 'path'>) => `${o.method.toUpperCase()} ${o.path}`;

function isNoEndpoint(res: Response): boolean {
  const issueText = String(res.body?.issue?.[0]?.details?.text ?? '');
  return res.status === 404 && /No (FHIR )?endpoint/.test(issueText);
}

describe('openapi.yaml', () => {
  it('is served at GET /openapi.yaml', async () => {
    const res = await server.request.get('/openapi.yaml').buffer(true).parse((r, done) => {
      let body = '';
      r.setEncoding('utf8');
      r.on('data', (chunk: string) => (body += chunk));
      r.on('end', () => done(null, body));
    });
    expect(res.status).toBe(200);
    expect(res.headers['content-type']).toMatch(/^application\/yaml/);
    expect(res.body).toBe(text);
  });

  it('is a well-formed OpenAPI 3 document', () => {
    expect(doc.openapi).toMatch(/^3\.0\.\d+$/);
    expect(doc.info?.title).toEqual(expect.any(String));
    expect(doc.info?.version).toEqual(expect.any(String));
    expect(doc.info?.description).toMatch(/4\.0\.1/);
    expect(Object.keys(doc.paths ?? {}).length).toBeGreaterThan(0);
    for (const ref of allRefs(doc)) {
      expect(() => pointer(ref), ref).not.toThrow();
    }
    const operationIds = new Set<string>();
    for (const { path, method, op } of operations) {
      const where = key({ path, method });
      expect(path.startsWith('/'), where).toBe(true);
      expect(Object.keys(op.responses ?? {}).length, where).toBeGreaterThan(0);
      expect(operationIds.has(op.operationId), `duplicate operationId ${op.operationId}`).toBe(false);
      operationIds.add(op.operationId);
      // Every template variable is a declared, required path parameter, and nothing more.
      const declared = parametersOf(path, op)
        .filter((p) => p.in === 'path')
        .map((p) => {
          expect(p.required, `${where} ${p.name}`).toBe(true);
          return p.name as string;
        });
      const templated = [...path.matchAll(/\{([^}]+)\}/g)].map((m) => m[1]);
      expect(declared.sort(), where).toEqual(templated.sort());
      for (const [status, response] of Object.entries(op.responses as Json)) {
        expect(status, where).toMatch(/^[1-5]\d\d$/);
        expect(deref(response as Json).description, `${where} ${status}`).toEqual(expect.any(String));
      }
    }
  });

  it('lists in the `type` enum exactly the types of the CapabilityStatement', async () => {
    const metadata = await server.request.get('/fhir/metadata');
    expect(metadata.status).toBe(200);
    const served = (metadata.body.rest[0].resource as { type: string }[]).map((r) => r.type);
    const documented = pointer('#/components/parameters/type').schema.enum as string[];
    expect(documented.length).toBe(new Set(documented).size);
    expect([...documented].sort()).toEqual([...served].sort());
  });

  it('has an example request for every documented operation', () => {
    expect(operations.map(key).sort()).toEqual(Object.keys(EXAMPLES).sort());
  });

  /** Checks a response against the operation's documented answer for its status. */
  function expectDocumented(op: Json, res: Response): void {
    const response = op.responses[String(res.status)] as Json | undefined;
    expect(response, `status ${res.status} is not documented`).toBeDefined();
    const documented = deref(response!);
    for (const header of Object.keys(documented.headers ?? {})) {
      expect(res.headers[header.toLowerCase()], `header ${header}`).toBeDefined();
    }
    const contentType = (res.headers['content-type'] ?? '').split(';')[0];
    // A redirect's body is a courtesy of the framework; only its Location is documented.
    if (contentType && !(res.status >= 300 && res.status < 400)) {
      const types = Object.keys(documented.content ?? {});
      expect(types.includes(contentType) || types.includes('*/*'), `${contentType} not in ${types.join(', ')}`).toBe(true);
    }
  }

  describe.each(operations.map((o) => [key(o), o] as const))('%s', (_name, { path, method, op }) => {
    it('exists and answers as documented', async () => {
      const example = EXAMPLES[key({ path, method })];
      expect(example, 'no example request').toBeDefined();
      const client = needsBearer(op) ? server.request : server.anonymous;
      const res = await example(client, concretePath(path, method)).set('X-Request-Id', 'openapi-test');
      expect(isNoEndpoint(res), `${res.status} ${res.text}`).toBe(false);
      expect(res.status, res.text).toBeLessThan(400);
      expectDocumented(op, res);
      expect(res.headers['x-request-id']).toBe('openapi-test');
    });
  });

  it('declares the security of every operation: a bearer token for the FHIR API except metadata and discovery', () => {
    for (const { path, method, op } of operations) {
      const where = key({ path, method });
      expect(Array.isArray(op.security), `${where} declares no security`).toBe(true);
      for (const requirement of op.security as Json[]) {
        for (const scheme of Object.keys(requirement)) {
          expect(doc.components.securitySchemes?.[scheme], `${where}: ${scheme}`).toBeDefined();
        }
      }
      const isFhir = path === '/fhir' || path.startsWith('/fhir/');
      const isPublicFhir = path === '/fhir/metadata' || path.startsWith('/fhir/.well-known/');
      if (isFhir) {
        expect(needsBearer(op), where).toBe(!isPublicFhir);
      }
      if (needsBearer(op)) {
        expect(op.responses['401'], `${where} 401`).toBeDefined();
        expect(op.responses['403'], `${where} 403`).toBeDefined();
      }
    }
    const { authorizationCode, clientCredentials } = doc.components.securitySchemes.smartOAuth.flows;
    expect([authorizationCode.authorizationUrl, authorizationCode.tokenUrl, clientCredentials.tokenUrl]).toEqual(['/auth/authorize', '/auth/token', '/auth/token']);
    expect(Object.keys(doc.paths)).toEqual(expect.arrayContaining(['/auth/authorize', '/auth/token']));
  });

  describe.each(operations.filter((o) => needsBearer(o.op)).map((o) => [key(o), o] as const))('%s without a token', (_name, { path, method, op }) => {
    it('answers 401 as documented', async () => {
      const res = await EXAMPLES[key({ path, method })](server.anonymous, concretePath(path, method));
      expect(res.status, res.text).toBe(401);
      expect(res.headers['www-authenticate']).toMatch(/^Bearer realm="CareThread"/);
      expectDocumented(op, res);
    });
  });

  it('the authorization-code flow gives the documented tokens, which the FHIR API accepts until revoked', async () => {
    const signIn = await server.anonymous.get('/auth/authorize').query(authorizeParams());
    expect(signIn.status, signIn.text).toBe(200);
    const consent = await server.anonymous.post('/auth/login').type('form').send({ pending: pendingOf(signIn.text), ...PATIENT_LOGIN });
    expect(consent.status, consent.text).toBe(200);
    const approved = await server.anonymous.post('/auth/consent').type('form').send(consentForm(pendingOf(consent.text)));
    expect(approved.status, approved.text).toBe(302);
    const callback = new URL(approved.headers.location);
    expect(callback.origin + callback.pathname).toBe(APP_REDIRECT);
    expect(callback.searchParams.get('state')).toBe('openapi-state');
    const token = await server.anonymous
      .post('/auth/token')
      .type('form')
      .send({ grant_type: 'authorization_code', code: callback.searchParams.get('code'), redirect_uri: APP_REDIRECT, code_verifier: CODE_VERIFIER, client_id: appClientId });
    expect(token.status, token.text).toBe(200);
    expect(token.headers['cache-control']).toBe('no-store');
    expectRequired(token.body, '#/components/schemas/TokenResponse');
    expect(token.body).toMatchObject({ token_type: 'Bearer', patient: patientId });
    expect(token.body.id_token).toEqual(expect.any(String));
    const bearer = `Bearer ${token.body.access_token}`;
    expect((await server.anonymous.get(`/fhir/Patient/${patientId}`).set('Authorization', bearer)).status).toBe(200);
    const introspected = await server.anonymous.post('/auth/introspect').type('form').send({ token: token.body.access_token, client_id: appClientId });
    expectRequired(introspected.body, '#/components/schemas/Introspection');
    expect(introspected.body).toMatchObject({ active: true, client_id: appClientId, patient: patientId, fhirUser: `Patient/${patientId}` });
    const revoked = await server.anonymous.post('/auth/revoke').type('form').send({ token: token.body.access_token, client_id: appClientId });
    expect(revoked.status).toBe(200);
    const refused = await server.anonymous.get(`/fhir/Patient/${patientId}`).set('Authorization', bearer);
    expect(refused.status).toBe(401);
    expect(refused.headers['www-authenticate']).toMatch(/error="invalid_token"/);
    expect((await server.anonymous.post('/auth/introspect').type('form').send({ token: token.body.access_token, client_id: appClientId })).body).toEqual({ active: false });
  });

  it('an EHR launch skips sign-in and puts its context into the token', async () => {
    const launch = await server.request.post('/auth/launch').send({ fhirUser: `Practitioner/${practitionerId}`, patient: `Patient/${patientId}`, client_id: appClientId });
    expect(launch.status, launch.text).toBe(201);
    expectRequired(launch.body, '#/components/schemas/Launch');
    const redirect = await server.anonymous.get('/auth/authorize').query(authorizeParams({ scope: 'launch openid fhirUser patient/*.rs', launch: launch.body.launch }));
    expect(redirect.status, redirect.text).toBe(302);
    const code = new URL(redirect.headers.location).searchParams.get('code');
    const token = await server.anonymous
      .post('/auth/token')
      .type('form')
      .send({ grant_type: 'authorization_code', code, redirect_uri: APP_REDIRECT, code_verifier: CODE_VERIFIER, client_id: appClientId });
    expect(token.status, token.text).toBe(200);
    expect(token.body).toMatchObject({ patient: patientId, scope: 'launch openid fhirUser patient/*.rs' });
    const reused = await server.anonymous.get('/auth/authorize').query(authorizeParams({ launch: launch.body.launch }));
    expect(new URL(reused.headers.location).searchParams.get('error')).toBe('invalid_request');
  });

  it('answers OAuth errors with the documented error object', async () => {
    const errorCodes = pointer('#/components/schemas/OAuthError').properties.error.enum as string[];
    const unsupported = await server.anonymous.post('/auth/token').type('form').send({ grant_type: 'password' });
    const badSecret = await server.anonymous.post('/auth/token').auth(server.admin.clientId, 'not-the-secret').type('form').send({ grant_type: 'client_credentials' });
    const notForm = await server.anonymous.post('/auth/token').send({ grant_type: 'client_credentials' });
    const registered = await server.request.post('/auth/register').send({ token_endpoint_auth_method: 'client_secret_basic', scope: 'system/Patient.rs' });
    const plainToken = await server.anonymous
      .post('/auth/token')
      .auth(registered.body.client_id, registered.body.client_secret)
      .type('form')
      .send({ grant_type: 'client_credentials', scope: 'system/Patient.rs' });
    expect(plainToken.status, plainToken.text).toBe(200);
    const notAdmin = await server.anonymous.post('/auth/users').set('Authorization', `Bearer ${plainToken.body.access_token}`).send({});
    const badMetadata = await server.request.post('/auth/register').send({ redirect_uris: ['not a url'] });
    const cases: [Response, number, string][] = [
      [unsupported, 400, 'unsupported_grant_type'],
      [badSecret, 401, 'invalid_client'],
      [notForm, 400, 'invalid_request'],
      [notAdmin, 403, 'access_denied'],
      [badMetadata, 400, 'invalid_redirect_uri'],
    ];
    for (const [res, status, error] of cases) {
      expect(res.status, res.text).toBe(status);
      expect(res.headers['content-type']).toMatch(/^application\/json/);
      expect(res.body).toEqual({ error, error_description: expect.any(String) });
      expect(errorCodes).toContain(error);
    }
    expect(badSecret.headers['www-authenticate']).toMatch(/^Basic /);
  });

  it('Binary: raw upload, raw download, and FHIR JSON on request, as documented', async () => {
    // A PNG signature: attachments must be what their content type says.
    const bytes = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0, 1, 2, 3]);
    const created = await server.request.post('/fhir/Binary').set('content-type', 'image/png').send(bytes);
    expect(created.status, created.text).toBe(201);
    expect(created.body).toMatchObject({ resourceType: 'Binary', contentType: 'image/png' });
    const raw = await server.request.get(`/fhir/Binary/${created.body.id}`).buffer(true).parse((r, done) => {
      const chunks: Buffer[] = [];
      r.on('data', (chunk: Buffer) => chunks.push(chunk));
      r.on('end', () => done(null, Buffer.concat(chunks)));
    });
    expect(raw.status).toBe(200);
    expect(raw.headers['content-type']).toBe('image/png');
    expect(raw.headers['content-disposition']).toBe('attachment');
    expect(raw.headers.etag).toBe('W/"1"');
    expect(Buffer.compare(raw.body as Buffer, bytes)).toBe(0);
    const json = await server.request.get(`/fhir/Binary/${created.body.id}`).set('accept', FHIR_JSON);
    expect(json.headers['content-type']).toMatch(/^application\/fhir\+json/);
    expect(json.body.data).toBe(bytes.toString('base64'));
  });

  it('answers errors with an OperationOutcome, as documented', async () => {
    const requests = [
      server.request.get('/no/such/path'),
      server.request.get('/fhir'),
      server.request.get('/fhir/NotAType'),
      server.request.put(`/fhir/Patient/${patientId}`).set('content-type', FHIR_JSON).set('If-Match', 'nonsense').send({ resourceType: 'Patient', id: patientId }),
      server.request.post('/fhir/Patient').set('content-type', 'text/plain').send('x'),
    ];
    const statuses: number[] = [];
    for (const res of await Promise.all(requests)) {
      statuses.push(res.status);
      expect(res.headers['content-type']).toMatch(/^application\/fhir\+json/);
      expect(res.body.resourceType).toBe('OperationOutcome');
    }
    expect(statuses).toEqual([404, 405, 404, 400, 415]);
  });

  describe('undocumented methods on documented paths', () => {
    const undocumented = Object.keys(doc.paths).flatMap((path) =>
      METHODS.filter((m) => !(doc.paths[path] as Json)[m]).map((method) => [`${method.toUpperCase()} ${path}`, path, method] as const)
    );
    it.each(undocumented)('%s does not succeed', async (_name, path, method) => {
      let req = server.request[method](concretePath(path, method));
      if (method === 'post' || method === 'put' || method === 'patch') {
        req = req.set('content-type', FHIR_JSON).send({ resourceType: 'Patient', id: patientId });
      }
      const res = await req;
      expect(res.status, res.text).toBeGreaterThanOrEqual(400);
      expect(res.status, res.text).toBeLessThan(500);
    });
  });
});
