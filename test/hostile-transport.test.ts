/**
 * Property-based hostile input (fast-check) at the transport: path tricks on every prefix,
 * oversized, repeated and wrong headers, forged tokens of every kind, and the web pages
 * (CSP, nothing reflected). Every answer is < 500 and, when it refuses, an OperationOutcome
 * (OAuth error JSON on /auth); a refused request leaves every table but the audit trail as
 * it was.
 *
 * The seed is fixed and printed: replay one with HOSTILE_SEED=<seed>, explore with HOSTILE_SEED=random.
 */
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hostileString, PATH_TRICKS, queryPairs, queryString, SCRIPT_INJECTIONS, wellFormed } from './support/hostile.js';
import { answerKind, caller, FORGERY_KINDS, forgedToken, startHostileHarness } from './support/hostile-http.js';
import type { HostileHarness } from './support/hostile-http.js';

let h: HostileHarness;
beforeAll(async () => {
  h = await startHostileHarness('hostile transport');
}, 120_000);
afterAll(async () => {
  await h?.stop();
});

describe('hostile input: paths, headers, tokens and pages', () => {
  it('path tricks: traversal, encoded slashes, null bytes and very long paths, on every prefix', async () => {
    const prefixes = ['/fhir/', '/fhir/Patient/', `/fhir/Patient/${h.patientId}/`, '/portal/', '/auditor/', '/apps/provider/', '/web/', '/auth/', '/', '/fhir/Binary/'];
    const trick = fc.oneof(
      fc.array(fc.constantFrom(...PATH_TRICKS, 'server', 'config.ts', 'package.json', 'etc', 'passwd', '.env', 'index.html', '_history', '$everything'), { minLength: 1, maxLength: 8 }).map((parts) => parts.join('/')),
      fc.integer({ min: 1000, max: 14_000 }).map((n) => 'a'.repeat(n)),
      fc.integer({ min: 17_000, max: 40_000 }).map((n) => 'b'.repeat(n)),
      hostileString.map((s) => encodeURIComponent(wellFormed(s)))
    );
    await fc.assert(
      fc.asyncProperty(fc.constantFrom(...prefixes), trick, fc.constantFrom('GET', 'GET', 'DELETE', 'HEAD', 'OPTIONS', 'POST'), caller, async (prefix, rest, method, who) => {
        const res = await h.check({ method, path: `${prefix}${rest}`, headers: [...h.authorization(who), ['Content-Type', 'application/fhir+json']], body: method === 'POST' ? '{}' : undefined }, prefix === '/auth/' ? 'any' : answerKind(prefix));
        // Nothing outside web/ is ever served.
        expect(res.text).not.toMatch(/root:x:0:0|"devDependencies"|loadConfig|BOOTSTRAP_CLIENT_SECRET|private_jwk/);
      }),
      h.settings(100)
    );
  });

  it('oversized, repeated and wrong headers', async () => {
    const headerName = fc.constantFrom('Authorization', 'Accept', 'If-Match', 'If-None-Exist', 'If-None-Match', 'Prefer', 'X-Request-Id', 'Content-Type', 'Origin', 'Cookie', 'X-Forwarded-For', 'Range', 'Accept-Encoding', 'Accept-Charset', 'X-Custom');
    const headerValue = fc.oneof(
      hostileString.map((s) => wellFormed(s).replace(/[\r\n\u0000]/g, ' ').replace(/[^\u0020-\u00ff]/g, '?')),
      fc.integer({ min: 4000, max: 40_000 }).map((n) => 'h'.repeat(n)),
      fc.constantFrom('Bearer', 'Bearer ', 'Basic', 'Basic !!!', `Basic ${Buffer.from(':').toString('base64')}`, 'Bearer a b c', 'W/"abc"', 'W/"1"', '*', 'bytes=0-1,5-', 'bytes=99999999-', 'application/fhir+xml', 'text/html;q=0', 'return=representation', 'handling=lenient', 'identifier=x&name=y')
    );
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom(
          { method: 'GET', path: '/fhir/Patient' },
          { method: 'GET', path: `/fhir/Patient/${h.patientId}` },
          { method: 'POST', path: '/fhir/Patient', body: JSON.stringify({ resourceType: 'Patient' }) },
          { method: 'PUT', path: `/fhir/Patient/${h.patientId}`, body: JSON.stringify({ resourceType: 'Patient', id: h.patientId }) },
          { method: 'GET', path: '/fhir/metadata' },
          { method: 'GET', path: '/portal/' },
          { method: 'POST', path: '/auth/token', body: 'grant_type=client_credentials' },
          { method: 'GET', path: '/healthz' }
        ),
        fc.array(fc.tuple(headerName, headerValue), { minLength: 1, maxLength: 4 }),
        fc.boolean(),
        async (target, extra, asAdmin) => {
          const headers: [string, string][] = [];
          if (asAdmin) headers.push(...h.authorization('admin'));
          if (target.body) headers.push(['Content-Type', target.path.startsWith('/auth') ? 'application/x-www-form-urlencoded' : 'application/fhir+json']);
          headers.push(...extra);
          const res = await h.check({ method: target.method, path: target.path, headers, body: target.body });
          if (res.status === 431 || res.status === 400) {
            // The Node HTTP parser refuses these before any route: make sure it said so.
            expect(res.status).toBeGreaterThanOrEqual(400);
          }
        }
      ),
      h.settings(100)
    );
  });

  it('forged, expired, truncated and alg:none tokens are refused everywhere', async () => {
    const targets = [
      { method: 'GET', path: '/fhir/Patient', kind: 'fhir' as const },
      { method: 'GET', path: `/fhir/Patient/${h.patientId}`, kind: 'fhir' as const },
      { method: 'GET', path: '/fhir/Communication/$inbox', kind: 'fhir' as const },
      { method: 'GET', path: '/fhir/AuditEvent/$verify-chain', kind: 'fhir' as const },
      { method: 'POST', path: '/fhir/Patient', kind: 'fhir' as const, body: JSON.stringify({ resourceType: 'Patient' }) },
      { method: 'DELETE', path: `/fhir/Patient/${h.patientId}`, kind: 'fhir' as const },
      { method: 'POST', path: '/auth/register', kind: 'oauth' as const, body: JSON.stringify({ client_name: 'x', redirect_uris: [], token_endpoint_auth_method: 'client_secret_basic', scope: 'system/*.cruds' }) },
      { method: 'POST', path: '/auth/users', kind: 'oauth' as const, body: JSON.stringify({ username: 'forged', password: 'correct horse battery staple', fhirUser: `Practitioner/${h.practitionerId}` }) },
    ];
    await fc.assert(
      fc.asyncProperty(fc.constantFrom(...FORGERY_KINDS), hostileString, fc.constantFrom(...targets), fc.constantFrom('header', 'query'), async (kind, claim, target, where) => {
        const token = (await forgedToken(h.server, kind, wellFormed(claim), h.server.admin.token)).replace(/[\r\n\u0000]/g, '');
        const headers: [string, string][] = [['Content-Type', target.kind === 'oauth' ? 'application/json' : 'application/fhir+json']];
        let path = target.path;
        if (where === 'header' || target.kind === 'oauth') {
          headers.push(['Authorization', `Bearer ${token.replace(/[^\u0020-\u00ff]/g, '?')}`]);
        } else {
          path += `?access_token=${encodeURIComponent(token)}`;
        }
        const res = await h.check({ method: target.method, path, headers, body: target.body }, target.kind);
        expect([400, 401, 403, 431], `${kind} token on ${target.method} ${target.path}: ${res.status} ${res.text.slice(0, 200)}`).toContain(res.status);
      }),
      h.settings(100)
    );
  });

  it('web pages: CSP with script-src self, nothing reflected, whatever the query or path', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom('/portal/', '/apps/provider/launch', '/auditor/', '/apps/provider/', '/portal', '/auditor/index.html'),
        queryPairs,
        fc.option(fc.constantFrom(...SCRIPT_INJECTIONS).map((s) => encodeURIComponent(s)), { nil: undefined }),
        async (page, pairs, suffix) => {
          const path = `${page}${suffix && page.endsWith('/') ? suffix : ''}${queryString(pairs)}`;
          const res = await h.check({ method: 'GET', path });
          // Pages get script-src 'self'; the redirect to a page's folder gets default-src 'none'.
          expect(res.headers['content-security-policy'], `${path} → ${res.status}`).toMatch(res.status === 200 ? /script-src 'self'(;|$)/ : /script-src 'self'(;|$)|^default-src 'none'$/);
          expect(res.headers['content-security-policy'], path).not.toMatch(/unsafe-inline|unsafe-eval/);
          expect(res.text).not.toContain(SCRIPT_INJECTIONS[0]);
        }
      ),
      h.settings(100)
    );
  });

  // Inputs the generators found that got the wrong answer, fixed since; kept as fixed cases.
  describe('regressions', () => {
    it('headers over 16 KiB get 431 with an OperationOutcome (Node answered with no body)', async () => {
      const res = await h.check({ method: 'GET', path: '/fhir/Patient', headers: [...h.authorization('admin'), ['X-Custom', 'h'.repeat(20_000)]] });
      expect(res.status).toBe(431);
      expect(JSON.parse(res.text).issue[0].code).toBe('too-costly');
    });

    it('headers over 16 KiB on /auth get 431 with an OAuth error', async () => {
      const res = await h.check({ method: 'POST', path: '/auth/token', headers: [['Content-Type', 'application/x-www-form-urlencoded'], ['Origin', 'h'.repeat(20_000)]], body: 'grant_type=client_credentials' });
      expect(res.status).toBe(431);
      expect(JSON.parse(res.text).error).toBe('invalid_request');
    });

    it('a malformed request line gets 400 with an OperationOutcome', async () => {
      const res = await h.check({ method: 'GET', path: '/fhir/Patient\u0001x', headers: h.authorization('admin') });
      expect(res.status).toBe(400);
    });
  });
});
