/**
 * SMART on FHIR as the apps and backends written by others experience it. A SMART app built
 * on the real `fhirclient` library (test/support/smart-app.ts), unchanged, goes through an EHR
 * launch, a standalone patient launch (login and consent forms, narrowed scopes) and a
 * representative's launch (patient picker), then reads and writes with what it got and
 * refreshes. Backend services get tokens with signed assertions (ES384 with a registered JWKS,
 * RS384 with a JWKS URL) and with a client secret. Introspection, revocation, signing-key
 * rotation and access tokens from a trusted external issuer complete the picture.
 */
import { randomUUID } from 'node:crypto';
import { createRemoteJWKSet, decodeProtectedHeader, exportJWK, generateKeyPair, jwtVerify, SignJWT } from 'jose';
import type { CryptoKey, JWK } from 'jose';
import type { Bundle, Communication, Encounter, Patient, Practitioner, RelatedPerson, Resource } from '@medplum/fhirtypes';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestServer } from './support/server.js';
import type { TestServer } from './support/server.js';
import { Browser, JsonServer, parseForm, SmartApp } from './support/smart-app.js';
import type { Page, SmartClient } from './support/smart-app.js';

const FHIR_JSON = 'application/fhir+json';
const ASSERTION_TYPE = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';

interface SmartConfiguration {
  issuer: string;
  jwks_uri: string;
  authorization_endpoint: string;
  token_endpoint: string;
  introspection_endpoint: string;
  revocation_endpoint: string;
}

let server: TestServer;
let discovery: SmartConfiguration;
const stopLater: { stop(): Promise<void> }[] = [];

beforeAll(async () => {
  server = await startTestServer();
  const res = await server.anonymous.get('/fhir/.well-known/smart-configuration');
  expect(res.status).toBe(200);
  discovery = res.body as SmartConfiguration;
});
afterAll(async () => {
  await Promise.all(stopLater.map((s) => s.stop()));
  await server?.stop({ dropDatabase: true });
});

const unique = () => randomUUID().slice(0, 8);

/** An endpoint's path on the test server, from the absolute URL discovery gave. */
const pathOf = (url: string) => new URL(url).pathname;

async function create<T extends Resource>(resource: T): Promise<T & { id: string }> {
  const res = await server.request.post(`/fhir/${resource.resourceType}`).set('content-type', FHIR_JSON).send(JSON.stringify(resource));
  expect(res.status, JSON.stringify(res.body)).toBe(201);
  return res.body;
}

/** RFC 7591 registration with the administrator's token. */
async function register(metadata: Record<string, unknown>): Promise<{ client_id: string; client_secret?: string; scope: string }> {
  const res = await server.request.post('/auth/register').send(metadata);
  expect(res.status, JSON.stringify(res.body)).toBe(201);
  return res.body;
}

async function createUser(body: Record<string, unknown>): Promise<void> {
  const res = await server.request.post('/auth/users').send(body);
  expect(res.status, JSON.stringify(res.body)).toBe(201);
}

function tokenRequest(form: Record<string, string>, basic?: [string, string]) {
  const req = server.anonymous.post(pathOf(discovery.token_endpoint)).type('form');
  return (basic ? req.auth(basic[0], basic[1]) : req).send(form);
}

function fhirGet(token: string, path: string) {
  return server.anonymous.get(`/fhir/${path}`).set('Authorization', `Bearer ${token}`);
}

function fhirPost(token: string, resource: Resource) {
  return server.anonymous
    .post(`/fhir/${resource.resourceType}`)
    .set('Authorization', `Bearer ${token}`)
    .set('content-type', FHIR_JSON)
    .send(JSON.stringify(resource));
}

function introspect(token: string) {
  return server.anonymous.post(pathOf(discovery.introspection_endpoint)).auth(server.admin.clientId, server.admin.clientSecret).type('form').send({ token });
}

async function startApp(): Promise<SmartApp> {
  const app = await SmartApp.start();
  stopLater.push(app);
  return app;
}

/** The status a rejected fhirclient request carries. */
async function statusOf(call: Promise<unknown>): Promise<number> {
  try {
    await call;
  } catch (err) {
    return (err as { status?: number }).status ?? -1;
  }
  return 200;
}

/** fhirclient types resources its own way; ours are the same JSON. */
const send = (client: SmartClient, resource: Resource) => client.create(resource as Parameters<SmartClient['create']>[0]);

function message(subject: string, sender: string, text: string, extra: Partial<Communication> = {}): Communication {
  return {
    resourceType: 'Communication',
    status: 'completed',
    sent: new Date().toISOString(),
    subject: { reference: subject },
    sender: { reference: sender },
    recipient: [{ reference: subject }],
    payload: [{ contentString: text }],
    ...extra,
  };
}

/** A patient seen by a practitioner in an encounter. */
async function careSetting(family: string) {
  const patient = await create<Patient>({ resourceType: 'Patient', name: [{ family, given: ['Pat'] }], birthDate: '1980-02-03' });
  const practitioner = await create<Practitioner>({ resourceType: 'Practitioner', name: [{ family: `Dr${family}`, given: ['Pra'] }] });
  const encounter = await create<Encounter>({
    resourceType: 'Encounter',
    status: 'in-progress',
    class: { system: 'http://terminology.hl7.org/CodeSystem/v3-ActCode', code: 'AMB' },
    subject: { reference: `Patient/${patient.id}` },
    participant: [{ individual: { reference: `Practitioner/${practitioner.id}` } }],
  });
  return { patient, practitioner, encounter };
}

const PROVIDER_APP_SCOPES = 'launch openid fhirUser offline_access patient/*.cruds';

/**
 * Registers a provider app (public, or confidential with a secret), has the EHR create a
 * launch, and runs it through the app.
 */
async function ehrLaunch(family: string, options: { confidential?: boolean } = {}) {
  const setting = await careSetting(family);
  const app = await startApp();
  const { client_id: clientId, client_secret: clientSecret } = await register({
    client_name: 'Provider inbox',
    token_endpoint_auth_method: options.confidential ? 'client_secret_basic' : 'none',
    redirect_uris: [app.redirectUri],
    scope: PROVIDER_APP_SCOPES,
  });
  app.authorizeOptions = { clientId, clientSecret, scope: PROVIDER_APP_SCOPES };
  const launched = await server.request.post('/auth/launch').send({
    patient: `Patient/${setting.patient.id}`,
    encounter: `Encounter/${setting.encounter.id}`,
    fhirUser: `Practitioner/${setting.practitioner.id}`,
    client_id: clientId,
    need_patient_banner: false,
  });
  expect(launched.status, JSON.stringify(launched.body)).toBe(201);
  const launch = launched.body.launch as string;
  const page = await new Browser().go(`${app.launchUrl}?iss=${encodeURIComponent(server.fhirBase)}&launch=${encodeURIComponent(launch)}`);
  expect(page.status, page.body).toBe(200);
  return { ...setting, app, clientId, launch, page, client: app.clientFor(page) };
}

/** A standalone launch up to the authorization server's first page (the sign-in form). */
async function startStandalone(app: SmartApp, browser: Browser): Promise<Page> {
  const page = await browser.go(app.launchUrl);
  expect(page.status, page.body).toBe(200);
  expect(page.url.startsWith(discovery.authorization_endpoint)).toBe(true);
  expect(page.headers.get('content-type')).toMatch(/^text\/html/);
  return page;
}

function field(page: Page, name: string): string {
  const found = parseForm(page.body).fields.find((f) => f.name === name);
  expect(found, `field ${name} in ${page.url}`).toBeDefined();
  return found!.value;
}

/** Signs in on the login page; answers the consent page. */
async function signIn(browser: Browser, loginPage: Page, username: string, password: string): Promise<Page> {
  const form = parseForm(loginPage.body);
  expect(form.method).toBe('POST');
  expect(new URL(form.action, loginPage.url).toString()).toBe(`${server.baseUrl}/auth/login`);
  expect(form.fields.map((f) => [f.name, f.type])).toEqual(
    expect.arrayContaining([
      ['pending', 'hidden'],
      ['username', 'text'],
      ['password', 'password'],
    ])
  );
  const consent = await browser.submit(loginPage, [
    ['pending', field(loginPage, 'pending')],
    ['username', username],
    ['password', password],
  ]);
  expect(consent.status, consent.body).toBe(200);
  expect(new URL(parseForm(consent.body).action, consent.url).toString()).toBe(`${server.baseUrl}/auth/consent`);
  return consent;
}

const offeredScopes = (consent: Page) =>
  parseForm(consent.body)
    .fields.filter((f) => f.name === 'scope' && f.type === 'checkbox')
    .map((f) => f.value);

async function approve(browser: Browser, consent: Page, scopes: string[], patient?: string): Promise<Page> {
  const fields: [string, string][] = [['pending', field(consent, 'pending')], ...scopes.map((s): [string, string] => ['scope', s])];
  if (patient) {
    fields.push(['patient', patient]);
  }
  fields.push(['decision', 'approve']);
  const page = await browser.submit(consent, fields);
  expect(page.status, page.body).toBe(200);
  return page;
}

const sorted = (scope: string | undefined) => (scope ?? '').split(' ').filter(Boolean).sort();

describe('EHR launch with fhirclient', () => {
  it('launches from the EHR without a sign-in, hands over patient, encounter and user, and the app reads and writes with them', async () => {
    const { patient, practitioner, encounter, app, clientId, launch, page, client } = await ehrLaunch('Ehrlaunch');

    // The app went launch → authorize → its redirect URI: the EHR already knows the user.
    expect(page.hops.map((h) => [new URL(h.url).origin + new URL(h.url).pathname, h.status])).toEqual([
      [app.launchUrl, 302],
      [discovery.authorization_endpoint, 302],
      [app.redirectUri, 200],
    ]);
    const asked = new URL(page.hops[1].url).searchParams;
    expect(asked.get('launch')).toBe(launch);
    expect(asked.get('aud')).toBe(server.fhirBase);
    expect(asked.get('code_challenge_method')).toBe('S256');
    const answer = new URL(page.hops[1].location!);
    expect([...answer.searchParams.keys()].sort()).toEqual(['code', 'state']);
    expect(answer.searchParams.get('state')).toBe(asked.get('state'));

    const tokens = client.state.tokenResponse!;
    expect(tokens.token_type).toBe('Bearer');
    expect(sorted(tokens.scope)).toEqual(sorted(PROVIDER_APP_SCOPES));
    expect(tokens.expires_in).toBeGreaterThan(0);
    expect(tokens.expires_in).toBeLessThanOrEqual(3600);
    expect(tokens.patient).toBe(patient.id);
    expect(tokens.encounter).toBe(encounter.id);
    expect(tokens.fhirContext).toEqual([{ reference: `Encounter/${encounter.id}` }]);
    // The EHR said its own banner is showing.
    expect(tokens.need_patient_banner).toBe(false);
    expect(typeof tokens.refresh_token).toBe('string');
    const style = await fetch(tokens.smart_style_url!);
    expect(style.status).toBe(200);
    expect(await style.json()).toHaveProperty('color_highlight');

    // The id_token checks out against the keys OpenID discovery points at.
    const oidc = await server.anonymous.get('/fhir/.well-known/openid-configuration');
    expect(oidc.body.issuer).toBe(server.fhirBase);
    const { payload, protectedHeader } = await jwtVerify(tokens.id_token!, createRemoteJWKSet(new URL(oidc.body.jwks_uri)), {
      issuer: server.fhirBase,
      audience: clientId,
    });
    expect(protectedHeader.alg).toBe('RS256');
    expect(protectedHeader.kid).toEqual(expect.any(String));
    expect(payload.fhirUser).toBe(`Practitioner/${practitioner.id}`);
    expect(payload.sub).toEqual(expect.any(String));
    expect(payload.exp! > payload.iat!).toBe(true);

    // What the app does with its client.
    expect(client.getFhirUser()).toBe(`Practitioner/${practitioner.id}`);
    expect(client.getPatientId()).toBe(patient.id);
    expect(client.getEncounterId()).toBe(encounter.id);
    const readPatient = (await client.patient.read()) as Patient;
    expect(readPatient.name?.[0]?.family).toBe('Ehrlaunch');
    const readEncounter = (await client.encounter.read()) as Encounter;
    expect(readEncounter.subject?.reference).toBe(`Patient/${patient.id}`);
    const me = (await client.user.read()) as Practitioner;
    expect([me.resourceType, me.id]).toEqual(['Practitioner', practitioner.id]);

    const text = `Your results are in ${unique()}`;
    const sent = (await send(
      client,
      message(`Patient/${patient.id}`, `Practitioner/${practitioner.id}`, text, { encounter: { reference: `Encounter/${encounter.id}` } })
    )) as Communication;
    expect(sent.id).toEqual(expect.any(String));
    const reread = (await client.request(`Communication/${sent.id}`)) as Communication;
    expect(reread.payload?.[0]?.contentString).toBe(text);
    expect(reread.encounter?.reference).toBe(`Encounter/${encounter.id}`);
  });

  it('refreshes: a new access token (and rotated refresh token) that still reads the launch patient', async () => {
    const { patient, client } = await ehrLaunch('Refresh');
    const before = { ...client.state.tokenResponse! };
    await client.refresh();
    const after = client.state.tokenResponse!;
    expect(after.access_token).not.toBe(before.access_token);
    expect(after.refresh_token).toEqual(expect.any(String));
    expect(after.refresh_token).not.toBe(before.refresh_token);
    expect(after.patient).toBe(patient.id);
    expect(sorted(after.scope)).toEqual(sorted(before.scope));
    expect(((await client.patient.read()) as Patient).id).toBe(patient.id);
    expect((await fhirGet(after.access_token!, `Patient/${patient.id}`)).status).toBe(200);
  });

  it('lets a confidential app refresh with its secret, and not with the refresh token alone', async () => {
    const { patient, client } = await ehrLaunch('Confidential', { confidential: true });
    const refreshToken = client.state.tokenResponse!.refresh_token!;
    const bare = await tokenRequest({ grant_type: 'refresh_token', refresh_token: refreshToken });
    expect(bare.body.error).toBe('invalid_client');
    // That attempt did not use the token up: the app's own refresh (HTTP Basic) works.
    await client.refresh();
    expect(client.state.tokenResponse!.refresh_token).not.toBe(refreshToken);
    expect((await fhirGet(client.state.tokenResponse!.access_token!, `Patient/${patient.id}`)).status).toBe(200);
  });
});

describe('standalone patient launch with fhirclient', () => {
  const PATIENT_APP_SCOPES = 'launch/patient openid fhirUser offline_access patient/*.cruds';

  it('signs the patient in, lets them untick scopes, and the app reads their record and messages', async () => {
    const patient = await create<Patient>({ resourceType: 'Patient', name: [{ family: 'Standalone', given: ['Sam'] }] });
    const stranger = await create<Patient>({ resourceType: 'Patient', name: [{ family: 'Stranger' }] });
    const clinician = await create<Practitioner>({ resourceType: 'Practitioner', name: [{ family: 'Care' }] });
    const mine = await create(message(`Patient/${patient.id}`, `Practitioner/${clinician.id}`, 'About your visit'));
    const theirs = await create(message(`Patient/${stranger.id}`, `Practitioner/${clinician.id}`, 'Someone else'));
    const username = `sam.${unique()}`;
    const password = 'correct horse battery staple';
    await createUser({ fhirUser: `Patient/${patient.id}`, username, password });

    // A confidential app: fhirclient authenticates at the token endpoint with HTTP Basic.
    const app = await startApp();
    const registered = await register({
      client_name: 'Patient portal',
      token_endpoint_auth_method: 'client_secret_basic',
      redirect_uris: [app.redirectUri],
      scope: PATIENT_APP_SCOPES,
    });
    expect(registered.client_secret).toEqual(expect.any(String));
    app.authorizeOptions = { iss: server.fhirBase, clientId: registered.client_id, clientSecret: registered.client_secret, scope: PATIENT_APP_SCOPES };

    const browser = new Browser();
    const login = await startStandalone(app, browser);
    const consent = await signIn(browser, login, username, password);
    expect(sorted(offeredScopes(consent).join(' '))).toEqual(sorted(PATIENT_APP_SCOPES));
    const kept = offeredScopes(consent).filter((s) => s !== 'offline_access');
    const done = await approve(browser, consent, kept);
    expect(done.url.startsWith(app.redirectUri)).toBe(true);

    const client = app.clientFor(done);
    const tokens = client.state.tokenResponse!;
    // Narrower than asked: what the patient left ticked, and no refresh token without offline_access.
    expect(sorted(tokens.scope)).toEqual(sorted(kept.join(' ')));
    expect(tokens.refresh_token).toBeUndefined();
    expect(tokens.patient).toBe(patient.id);
    expect(tokens.need_patient_banner).toBe(true);
    expect(client.getFhirUser()).toBe(`Patient/${patient.id}`);

    expect(((await client.patient.read()) as Patient).name?.[0]?.family).toBe('Standalone');
    expect(((await client.user.read()) as Patient).id).toBe(patient.id);
    const inbox = (await client.request('Communication?_count=100')) as Bundle<Communication>;
    const ids = (inbox.entry ?? []).map((e) => e.resource!.id);
    expect(ids).toContain(mine.id);
    expect(ids).not.toContain(theirs.id);
  });

  it('answers v1 scopes in v1 form, and a read-only grant cannot change the record', async () => {
    const patient = await create<Patient>({ resourceType: 'Patient', name: [{ family: 'Versionone' }] });
    const username = `v1.${unique()}`;
    const password = 'another long password';
    await createUser({ fhirUser: `Patient/${patient.id}`, username, password });
    const app = await startApp();
    const { client_id: clientId } = await register({ token_endpoint_auth_method: 'none', redirect_uris: [app.redirectUri], scope: PATIENT_APP_SCOPES });
    const scope = 'launch/patient openid fhirUser patient/*.read';
    app.authorizeOptions = { iss: server.fhirBase, clientId, scope };

    const browser = new Browser();
    const consent = await signIn(browser, await startStandalone(app, browser), username, password);
    const client = app.clientFor(await approve(browser, consent, offeredScopes(consent)));
    expect(sorted(client.state.tokenResponse!.scope)).toEqual(sorted(scope));
    const own = (await client.patient.read()) as Patient;
    expect(own.id).toBe(patient.id);
    const changed = { ...own, name: [{ family: 'Renamed' }] };
    expect(await statusOf(client.update(changed as Parameters<SmartClient['update']>[0]))).toBe(403);
    expect(((await client.patient.read()) as Patient).name?.[0]?.family).toBe('Versionone');
  });

  it('shows a representative a patient picker, and the chosen patient becomes the token’s patient', async () => {
    const [first, second] = [
      await create<Patient>({ resourceType: 'Patient', name: [{ family: 'Elder', given: ['Ada'] }] }),
      await create<Patient>({ resourceType: 'Patient', name: [{ family: 'Younger', given: ['Bo'] }] }),
    ];
    const relation = { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-RoleCode', code: 'CHILD' }] };
    const forFirst = await create<RelatedPerson>({ resourceType: 'RelatedPerson', patient: { reference: `Patient/${first.id}` }, relationship: [relation], name: [{ family: 'Carer' }] });
    const forSecond = await create<RelatedPerson>({ resourceType: 'RelatedPerson', patient: { reference: `Patient/${second.id}` }, relationship: [relation], name: [{ family: 'Carer' }] });
    const username = `carer.${unique()}`;
    const password = 'a carer’s long password';
    await createUser({ fhirUser: `RelatedPerson/${forFirst.id}`, represents: [`RelatedPerson/${forSecond.id}`], username, password });

    // An asymmetric confidential app: fhirclient signs its token request with its private key.
    const { privateKey, publicKey } = await generateKeyPair('ES384', { extractable: true });
    const kid = `app-${unique()}`;
    const app = await startApp();
    const { client_id: clientId } = await register({
      token_endpoint_auth_method: 'private_key_jwt',
      redirect_uris: [app.redirectUri],
      jwks: { keys: [{ ...(await exportJWK(publicKey)), kid, alg: 'ES384' }] },
      scope: PATIENT_APP_SCOPES,
    });
    app.authorizeOptions = {
      iss: server.fhirBase,
      clientId,
      scope: 'launch/patient openid fhirUser patient/*.rs',
      clientPrivateJwk: { ...(await exportJWK(privateKey)), kid, alg: 'ES384' } as never,
    };

    const browser = new Browser();
    const consent = await signIn(browser, await startStandalone(app, browser), username, password);
    const choices = parseForm(consent.body).fields.filter((f) => f.name === 'patient' && f.type === 'radio');
    expect(choices.map((c) => c.value).sort()).toEqual([`Patient/${first.id}`, `Patient/${second.id}`].sort());
    expect(consent.body).toContain('Ada Elder');
    expect(consent.body).toContain('Bo Younger');

    const client = app.clientFor(await approve(browser, consent, offeredScopes(consent), `Patient/${second.id}`));
    expect(client.state.tokenResponse!.patient).toBe(second.id);
    expect(client.getFhirUser()).toBe(`RelatedPerson/${forFirst.id}`);
    expect(((await client.patient.read()) as Patient).name?.[0]?.family).toBe('Younger');
    expect(((await client.user.read()) as RelatedPerson).id).toBe(forFirst.id);
    // The token is for the chosen patient only.
    expect(await statusOf(client.request(`Patient/${first.id}`))).toBe(404);
  });
});

describe('backend services', () => {
  const REGISTERED = 'system/Patient.cruds system/Communication.rs';

  async function assertion(clientId: string, alg: 'ES384' | 'RS384', key: CryptoKey, kid: string, header: Record<string, string> = {}): Promise<string> {
    return new SignJWT({})
      .setProtectedHeader({ alg, kid, typ: 'JWT', ...header })
      .setIssuer(clientId)
      .setSubject(clientId)
      .setAudience(discovery.token_endpoint)
      .setExpirationTime(Math.floor(Date.now() / 1000) + 300)
      .setJti(randomUUID())
      .sign(key);
  }

  async function backendToken(clientAssertion: string, scope: string) {
    return tokenRequest({ grant_type: 'client_credentials', scope, client_assertion_type: ASSERTION_TYPE, client_assertion: clientAssertion });
  }

  /** Creates and reads a Patient with the token; a type outside the grant is refused. Answers the patient's id. */
  async function useToken(token: string): Promise<string> {
    const created = await fhirPost(token, { resourceType: 'Patient', name: [{ family: 'Backend' }] });
    expect(created.status, JSON.stringify(created.body)).toBe(201);
    const read = await fhirGet(token, `Patient/${created.body.id}`);
    expect(read.status).toBe(200);
    expect(read.body.name[0].family).toBe('Backend');
    expect((await fhirGet(token, 'Encounter')).status).toBe(403);
    return created.body.id;
  }

  function expectBackendTokens(body: Record<string, unknown>): void {
    expect(body.token_type).toBe('Bearer');
    expect(body.expires_in).toBeGreaterThan(0);
    expect(body.expires_in).toBeLessThanOrEqual(300);
    expect(body.refresh_token).toBeUndefined();
    expect(body.id_token).toBeUndefined();
    // Only what was registered: Encounter was asked for but never registered; Communication only rs.
    expect(sorted(body.scope as string)).toEqual(sorted(REGISTERED));
  }

  it('issues ES384 private_key_jwt clients (registered jwks) short-lived tokens within their registered scopes', async () => {
    const { privateKey, publicKey } = await generateKeyPair('ES384', { extractable: true });
    const kid = `es-${unique()}`;
    const { client_id: clientId } = await register({
      client_name: 'EHR integration (ES384)',
      token_endpoint_auth_method: 'private_key_jwt',
      jwks: { keys: [{ ...(await exportJWK(publicKey)), kid, alg: 'ES384', use: 'sig' }] },
      scope: REGISTERED,
    });
    const res = await backendToken(await assertion(clientId, 'ES384', privateKey, kid), 'system/Patient.cruds system/Communication.cruds system/Encounter.rs');
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    expect(res.headers['cache-control']).toBe('no-store');
    expectBackendTokens(res.body);
    const patientId = await useToken(res.body.access_token);
    const writeMessage = await fhirPost(res.body.access_token, message(`Patient/${patientId}`, `Patient/${patientId}`, 'not granted'));
    expect(writeMessage.status).toBe(403);
  });

  it('issues RS384 private_key_jwt clients whose keys live at a registered jwks_uri', async () => {
    const { privateKey, publicKey } = await generateKeyPair('RS384', { extractable: true, modulusLength: 2048 });
    const kid = `rs-${unique()}`;
    const keys = await JsonServer.start({ '/jwks.json': { keys: [{ ...(await exportJWK(publicKey)), kid, alg: 'RS384', use: 'sig' }] } });
    stopLater.push(keys);
    const jwksUri = `${keys.origin}/jwks.json`;
    const { client_id: clientId } = await register({
      client_name: 'EHR integration (RS384)',
      token_endpoint_auth_method: 'private_key_jwt',
      jwks_uri: jwksUri,
      scope: REGISTERED,
    });
    // A jku naming the registered URL is fine.
    const res = await backendToken(await assertion(clientId, 'RS384', privateKey, kid, { jku: jwksUri }), `${REGISTERED} system/Encounter.rs`);
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    expectBackendTokens(res.body);
    await useToken(res.body.access_token);
  });

  it('issues a client_secret_basic client a token for its registered scopes', async () => {
    const { client_id: clientId, client_secret: secret } = await register({
      client_name: 'Reporting job',
      token_endpoint_auth_method: 'client_secret_basic',
      scope: REGISTERED,
    });
    expect(secret).toEqual(expect.any(String));
    const res = await tokenRequest({ grant_type: 'client_credentials', scope: `${REGISTERED} system/Encounter.rs` }, [clientId, secret!]);
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    expectBackendTokens(res.body);
    await useToken(res.body.access_token);
    const wrong = await tokenRequest({ grant_type: 'client_credentials', scope: REGISTERED }, [clientId, `${secret}x`]);
    expect(wrong.status).toBe(401);
    expect(wrong.body.error).toBe('invalid_client');
  });
});

describe('introspection and revocation', () => {
  it('describes an active user token, and answers exactly {"active": false} for anything else', async () => {
    const { patient, practitioner, encounter, clientId, client } = await ehrLaunch('Introspect');
    const tokens = client.state.tokenResponse!;
    const res = await introspect(tokens.access_token!);
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({
      active: true,
      scope: tokens.scope,
      client_id: clientId,
      fhirUser: `Practitioner/${practitioner.id}`,
      patient: patient.id,
      encounter: encounter.id,
      sub: expect.any(String),
    });
    const now = Math.floor(Date.now() / 1000);
    expect(res.body.exp).toBeGreaterThan(now);
    expect(res.body.exp).toBeLessThanOrEqual(now + tokens.expires_in! + 5);

    expect((await introspect('not-a-token')).body).toStrictEqual({ active: false });
    // A well-formed token naming this server as issuer, but not signed by it.
    const { privateKey } = await generateKeyPair('RS256');
    const forged = await new SignJWT({ scope: 'system/*.cruds', client_id: clientId })
      .setProtectedHeader({ alg: 'RS256', kid: decodeProtectedHeader(tokens.access_token!).kid })
      .setIssuer(server.fhirBase)
      .setAudience(server.fhirBase)
      .setExpirationTime('5m')
      .sign(privateKey);
    expect((await introspect(forged)).body).toStrictEqual({ active: false });
    expect((await fhirGet(forged, `Patient/${patient.id}`)).status).toBe(401);
  });

  it('revokes an access token (401 at the FHIR API) and a refresh token (invalid_grant, and its access tokens die)', async () => {
    const { patient, clientId, client } = await ehrLaunch('Revoke');
    const revoke = (token: string) => server.anonymous.post(pathOf(discovery.revocation_endpoint)).type('form').send({ token, client_id: clientId });
    const first = client.state.tokenResponse!.access_token!;
    expect((await fhirGet(first, `Patient/${patient.id}`)).status).toBe(200);

    expect((await revoke(first)).status).toBe(200);
    const refused = await fhirGet(first, `Patient/${patient.id}`);
    expect(refused.status).toBe(401);
    expect(refused.headers['www-authenticate']).toMatch(/^Bearer .*error="invalid_token"/);
    expect(refused.body.resourceType).toBe('OperationOutcome');
    expect((await introspect(first)).body).toStrictEqual({ active: false });

    // Revoking one access token leaves the grant: the app refreshes and carries on.
    await client.refresh();
    const second = client.state.tokenResponse!.access_token!;
    expect((await fhirGet(second, `Patient/${patient.id}`)).status).toBe(200);

    const refreshToken = client.state.tokenResponse!.refresh_token!;
    expect((await revoke(refreshToken)).status).toBe(200);
    const refreshed = await tokenRequest({ grant_type: 'refresh_token', refresh_token: refreshToken, client_id: clientId });
    expect(refreshed.status).toBe(400);
    expect(refreshed.body.error).toBe('invalid_grant');
    expect((await fhirGet(second, `Patient/${patient.id}`)).status).toBe(401);
  });
});

describe('signing key rotation', () => {
  it('keeps tokens signed before a rotation valid and signs new ones with the new key', async () => {
    const { patient, clientId, client } = await ehrLaunch('Rotation');
    const before = client.state.tokenResponse!;
    const oldKid = decodeProtectedHeader(before.access_token!).kid;

    const newKid = await server.app.auth.keys.rotate();
    expect(newKid).not.toBe(oldKid);
    const jwks = await server.anonymous.get(pathOf(discovery.jwks_uri));
    expect((jwks.body.keys as JWK[]).map((k) => k.kid)).toEqual(expect.arrayContaining([oldKid, newKid]));

    expect((await fhirGet(before.access_token!, `Patient/${patient.id}`)).status).toBe(200);
    expect((await introspect(before.access_token!)).body.active).toBe(true);
    const idToken = await jwtVerify(before.id_token!, createRemoteJWKSet(new URL(discovery.jwks_uri)), { issuer: server.fhirBase, audience: clientId });
    expect(idToken.protectedHeader.kid).toBe(oldKid);

    // New tokens, by refresh or by client credentials, use the new key and work.
    await client.refresh();
    const refreshed = client.state.tokenResponse!.access_token!;
    expect(decodeProtectedHeader(refreshed).kid).toBe(newKid);
    expect((await fhirGet(refreshed, `Patient/${patient.id}`)).status).toBe(200);
    const backend = await tokenRequest({ grant_type: 'client_credentials', scope: 'system/Patient.rs' }, [server.admin.clientId, server.admin.clientSecret]);
    expect(decodeProtectedHeader(backend.body.access_token).kid).toBe(newKid);
    expect((await fhirGet(backend.body.access_token, `Patient/${patient.id}`)).status).toBe(200);
  });
});

describe('trusted external issuers', () => {
  let ehr: JsonServer;
  let trusting: TestServer;
  let ehrKey: CryptoKey;
  const kid = 'ehr-key-1';

  beforeAll(async () => {
    const pair = await generateKeyPair('RS256', { extractable: true });
    ehrKey = pair.privateKey;
    ehr = await JsonServer.start({ '/jwks': { keys: [{ ...(await exportJWK(pair.publicKey)), kid, alg: 'RS256', use: 'sig' }] } });
    trusting = await startTestServer({ env: { TRUSTED_ISSUERS: JSON.stringify([{ issuer: `${ehr.origin}/ehr`, jwksUri: `${ehr.origin}/jwks` }]) } });
  });
  afterAll(async () => {
    await trusting?.stop({ dropDatabase: true });
    await ehr?.stop();
  });

  function ehrToken(options: { key?: CryptoKey; audience?: string; issuer?: string; scope?: string } = {}): Promise<string> {
    return new SignJWT({ scope: options.scope ?? 'system/*.rs', client_id: 'ehr-backend' })
      .setProtectedHeader({ alg: 'RS256', kid, typ: 'at+jwt' })
      .setIssuer(options.issuer ?? `${ehr.origin}/ehr`)
      .setSubject('ehr-backend')
      .setAudience(options.audience ?? trusting.fhirBase)
      .setIssuedAt()
      .setExpirationTime('5m')
      .setJti(randomUUID())
      .sign(options.key ?? ehrKey);
  }

  const get = (token: string, path: string) => trusting.anonymous.get(`/fhir/${path}`).set('Authorization', `Bearer ${token}`);

  it('accepts the EHR’s own access tokens for this server, within their scopes', async () => {
    const created = await trusting.request.post('/fhir/Patient').set('content-type', FHIR_JSON).send(JSON.stringify({ resourceType: 'Patient', name: [{ family: 'Trusted' }] }));
    expect(created.status).toBe(201);
    const token = await ehrToken();
    const read = await get(token, `Patient/${created.body.id}`);
    expect(read.status, JSON.stringify(read.body)).toBe(200);
    expect(read.body.name[0].family).toBe('Trusted');
    expect((await get(token, 'Patient?family=Trusted')).body.entry).toHaveLength(1);
    // system/*.rs: no writes.
    const write = await trusting.anonymous
      .post('/fhir/Patient')
      .set('Authorization', `Bearer ${token}`)
      .set('content-type', FHIR_JSON)
      .send(JSON.stringify({ resourceType: 'Patient' }));
    expect(write.status).toBe(403);
    // An external token never administers this server, whatever it claims.
    const admin = await new SignJWT({ scope: 'system/*.cruds', roles: ['admin'] })
      .setProtectedHeader({ alg: 'RS256', kid })
      .setIssuer(`${ehr.origin}/ehr`)
      .setSubject('ehr-backend')
      .setAudience(trusting.fhirBase)
      .setExpirationTime('5m')
      .sign(ehrKey);
    const registered = await trusting.anonymous.post('/auth/register').set('Authorization', `Bearer ${admin}`).send({ token_endpoint_auth_method: 'none', redirect_uris: ['http://127.0.0.1/x'] });
    expect(registered.status).toBe(403);
  });

  it('refuses a token for another audience, signed with another key, or from an issuer it does not trust', async () => {
    const created = await trusting.request.post('/fhir/Patient').set('content-type', FHIR_JSON).send(JSON.stringify({ resourceType: 'Patient' }));
    const path = `Patient/${created.body.id}`;
    expect((await get(await ehrToken(), path)).status).toBe(200);

    const otherAudience = await get(await ehrToken({ audience: 'https://other.example/fhir' }), path);
    expect(otherAudience.status).toBe(401);
    expect(otherAudience.headers['www-authenticate']).toMatch(/error="invalid_token"/);
    const { privateKey: impostor } = await generateKeyPair('RS256');
    expect((await get(await ehrToken({ key: impostor }), path)).status).toBe(401);
    expect((await get(await ehrToken({ issuer: `${ehr.origin}/other-ehr` }), path)).status).toBe(401);
  });
});
