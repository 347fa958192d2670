/**
 * `GET /metrics` through the real server: Prometheus text from the server's own registry;
 * request counters and latency histograms move with traffic and are labelled by route
 * pattern (never an id or a search value); outbox depth and failures follow the outbox
 * table; rate-limited requests are counted; the endpoint needs METRICS_TOKEN when one is set
 * (without one it answers loopback clients only: test/limits.test.ts checks that).
 */
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { enqueue } from '../fhir/outbox/outbox.js';
import { adminCreate } from './support/messaging.js';
import { startTestServer } from './support/server.js';
import type { TestServer } from './support/server.js';
import { createUser, registerPublicClient, userToken } from './support/tokens.js';

const METRICS_TOKEN = 'metrics-token-0123456789abcdef';

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

function parse(text: string): Sample[] {
  return text
    .split('\n')
    .filter((line) => line && !line.startsWith('#'))
    .map((line) => {
      const match = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
      expect(match, line).not.toBeNull();
      const labels: Record<string, string> = {};
      for (const [, key, value] of (match![2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) {
        labels[key] = value;
      }
      return { name: match![1], labels, value: Number(match![3]) };
    });
}

function value(samples: Sample[], name: string, labels: Record<string, string>): number {
  const found = samples.find((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
  return found?.value ?? 0;
}

describe('GET /metrics', () => {
  let server: TestServer;
  let patient: string;

  const scrape = async () => {
    const res = await server.anonymous.get('/metrics').set('Authorization', `Bearer ${METRICS_TOKEN}`);
    expect(res.status).toBe(200);
    expect(res.headers['content-type']).toMatch(/^text\/plain; version=0\.0\.4/);
    return { text: res.text, samples: parse(res.text) };
  };

  beforeAll(async () => {
    server = await startTestServer({ env: { METRICS_TOKEN, API_REQUESTS_PER_MINUTE_PER_USER: '2', OUTBOX_POLL_MS: '3600000' } });
    patient = await adminCreate(server, { resourceType: 'Patient', name: [{ family: 'Metricson' }] });
  });
  afterAll(async () => {
    await server?.stop({ dropDatabase: true });
  });

  it('needs the metrics token when one is configured', async () => {
    const none = await server.anonymous.get('/metrics');
    expect(none.status).toBe(401);
    expect(none.body.resourceType).toBe('OperationOutcome');
    expect((await server.anonymous.get('/metrics').set('Authorization', 'Bearer wrong-token-0123456789abcdef')).status).toBe(401);
    // An access token of the API is no metrics token.
    expect((await server.request.get('/metrics')).status).toBe(401);
  });

  it('counts and times requests by route pattern and status class, with no ids in any label', async () => {
    const before = (await scrape()).samples;
    const read = { name: 'carethread_http_requests_total', labels: { method: 'GET', route: '/fhir/Patient/{id}', status_class: '2xx' } };
    const missing = { name: 'carethread_http_requests_total', labels: { method: 'GET', route: '/fhir/Patient/{id}', status_class: '4xx' } };
    for (let i = 0; i < 3; i++) {
      expect((await server.request.get(`/fhir/${patient}`)).status).toBe(200);
    }
    expect((await server.request.get('/fhir/Patient/no-such-patient-4711')).status).toBe(404);
    expect((await server.request.get('/fhir/Patient?family=Metricson')).status).toBe(200);
    const { text, samples } = await scrape();
    expect(value(samples, read.name, read.labels) - value(before, read.name, read.labels)).toBe(3);
    expect(value(samples, missing.name, missing.labels) - value(before, missing.name, missing.labels)).toBe(1);
    expect(value(samples, 'carethread_http_request_duration_seconds_count', read.labels) - value(before, 'carethread_http_request_duration_seconds_count', read.labels)).toBe(3);
    expect(value(samples, 'carethread_http_requests_total', { method: 'GET', route: '/fhir/Patient', status_class: '2xx' })).toBeGreaterThanOrEqual(1);
    // Process metrics from prom-client's collectors.
    expect(samples.some((s) => s.name === 'process_cpu_seconds_total')).toBe(true);
    expect(samples.some((s) => s.name === 'nodejs_eventloop_lag_p99_seconds')).toBe(true);
    for (const secret of [patient.split('/')[1], 'no-such-patient-4711', 'Metricson', server.admin.token]) {
      expect(text).not.toContain(secret);
    }
    const routes = new Set(samples.filter((s) => s.name === 'carethread_http_requests_total').map((s) => s.labels.route));
    for (const route of routes) {
      expect(route).toMatch(/^(\/[A-Za-z.$_{}*-]*)+$|^other$/);
    }
  });

  it('shows outbox depth by kind and status, and counts delivery failures', async () => {
    // A kind with no deliverer: the worker marks it failed on its first attempt.
    await enqueue(server.app.db, { kind: 'metrics-test', idempotencyKey: 'metrics-test-1', payload: {} });
    let { samples } = await scrape();
    expect(value(samples, 'carethread_outbox_entries', { kind: 'metrics-test', status: 'pending' })).toBe(1);
    expect(value(samples, 'carethread_outbox_delivery_failures_total', { kind: 'metrics-test' })).toBe(0);
    server.app.outbox.wake();
    await vi.waitFor(async () => {
      samples = (await scrape()).samples;
      expect(value(samples, 'carethread_outbox_entries', { kind: 'metrics-test', status: 'failed' })).toBe(1);
    });
    expect(value(samples, 'carethread_outbox_entries', { kind: 'metrics-test', status: 'pending' })).toBe(0);
    expect(value(samples, 'carethread_outbox_delivery_failures_total', { kind: 'metrics-test' })).toBe(1);
  });

  it('counts rate-limited requests by limit', async () => {
    await createUser(server, { username: 'metrics.user', password: 'metrics-password-1', fhirUser: patient });
    const user = await userToken(server, { username: 'metrics.user', password: 'metrics-password-1', scope: 'openid fhirUser launch/patient patient/*.rs', clientId: await registerPublicClient(server) });
    const statuses = [];
    for (let i = 0; i < 3; i++) {
      statuses.push((await user.request.get(`/fhir/${patient}`)).status);
    }
    expect(statuses).toEqual([200, 200, 429]);
    const { samples } = await scrape();
    expect(value(samples, 'carethread_rate_limited_requests_total', { limit: 'user' })).toBe(1);
    expect(value(samples, 'carethread_http_requests_total', { method: 'GET', route: '/fhir/Patient/{id}', status_class: '4xx' })).toBeGreaterThanOrEqual(2);
    expect(samples.some((s) => s.name === 'carethread_http_requests_in_flight')).toBe(true);
  });
});
