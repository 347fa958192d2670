/**
 * The authorization server's brakes, on a server started with low limits: after
 * MAX_FAILED_LOGINS wrong passwords an account is refused even the right one (with the same
 * answer as a wrong password, so the lockout reveals nothing), and /auth answers 429 with
 * Retry-After past AUTH_REQUESTS_PER_MINUTE.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestServer } from './support/server.js';
import type { TestServer } from './support/server.js';
import { alertOf, expectNoSecrets, pendingOf, REDIRECT_URI, SmartFlows } from './support/smart-flows.js';
import type { RegisteredClient } from './support/smart-flows.js';

const MAX_FAILED_LOGINS = 3;
const AUTH_REQUESTS_PER_MINUTE = 20;

let server: TestServer;
let flows: SmartFlows;
let app: RegisteredClient;
const victim = { username: `victim-${randomBytes(4).toString('hex')}`, password: 'the right password 1' };
const bystander = { username: `bystander-${randomBytes(4).toString('hex')}`, password: 'the right password 2' };

beforeAll(async () => {
  server = await startTestServer({ env: { MAX_FAILED_LOGINS: String(MAX_FAILED_LOGINS), AUTH_REQUESTS_PER_MINUTE: String(AUTH_REQUESTS_PER_MINUTE) } });
  flows = new SmartFlows(server);
  flows.remember(server.admin.token, server.admin.clientSecret);
  const patient = await flows.createResource({ resourceType: 'Patient', name: [{ family: 'Limits' }] });
  await flows.createUser(victim.username, victim.password, `Patient/${patient.id}`);
  await flows.createUser(bystander.username, bystander.password, `Patient/${patient.id}`);
  app = await flows.register({ token_endpoint_auth_method: 'none', redirect_uris: [REDIRECT_URI], scope: 'openid fhirUser patient/*.rs' });
});
afterAll(async () => {
  await server?.stop({ dropDatabase: true });
});

describe('login lockout', () => {
  it(`refuses the right password after ${MAX_FAILED_LOGINS} failures, with the wrong-password answer`, async () => {
    const pending = pendingOf((await flows.authorize(flows.params(app))).text);
    const failures = [];
    for (let i = 0; i < MAX_FAILED_LOGINS; i++) {
      failures.push(await flows.login(pending, victim.username, `wrong password ${i}`));
    }
    const locked = await flows.login(pending, victim.username, victim.password);
    for (const res of [...failures, locked]) {
      expect(res.status).toBe(failures[0].status);
      expect(alertOf(res.text)).toBe(alertOf(failures[0].text));
    }
    expect(alertOf(locked.text)).toBeTruthy();
    expect(locked.text).not.toContain('name="decision"');
    // Another account from the same address still signs in.
    const other = await flows.login(pending, bystander.username, bystander.password);
    expect(other.status).toBe(200);
    expect(other.text).toContain('name="decision"');
  });
});

describe('rate limit', () => {
  it(`answers 429 with Retry-After past ${AUTH_REQUESTS_PER_MINUTE} requests a minute`, async () => {
    let limited: Awaited<ReturnType<typeof server.anonymous.get>> | undefined;
    let admitted = 0;
    // The window may have begun during start-up, or roll over once: allow for two windows.
    for (let i = 0; i < 2 * AUTH_REQUESTS_PER_MINUTE + 2 && !limited; i++) {
      const res = await server.anonymous.get('/auth/jwks');
      if (res.status === 429) {
        limited = res;
      } else {
        expect(res.status).toBe(200);
        admitted++;
      }
    }
    expect(limited, 'no 429 was answered').toBeDefined();
    expect(admitted).toBeLessThanOrEqual(AUTH_REQUESTS_PER_MINUTE);
    const retryAfter = Number(limited!.headers['retry-after']);
    expect(Number.isInteger(retryAfter)).toBe(true);
    expect(retryAfter).toBeGreaterThan(0);
    expect(retryAfter).toBeLessThanOrEqual(60);
    // Every /auth endpoint is behind the same limit, sign-in and token included.
    expect((await server.anonymous.post('/auth/token').type('form').send('grant_type=client_credentials')).status).toBe(429);
    expect((await server.anonymous.get('/auth/authorize')).status).toBe(429);
    // The FHIR API is not.
    expect((await server.anonymous.get('/fhir/metadata')).status).toBe(200);
  });

  it('kept the passwords out of the log', () => {
    expectNoSecrets(server.logs, flows.secrets, 'the server log');
  });
});
