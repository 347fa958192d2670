/**
 * Prometheus metrics (`GET /metrics`): one Registry per AppContext (never prom-client's
 * global one, so several servers in one process keep apart). HTTP requests are counted and
 * timed by method, route pattern and status class: the pattern is rebuilt from known
 * resource types, operations and endpoints, so no id, search value or other PHI ever
 * becomes a label (and label cardinality stays bounded). Outbox depth is read from the
 * outbox table at scrape time; deliveries and failures are counted as the worker reports them.
 */
import type { EventEmitter } from 'node:events';
import type { NextFunction, Request, Response } from 'express';
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import { RESOURCE_TYPES } from '../fhir/definitions.js';
import type { Database } from '../fhir/index.js';

const STATIC_ROUTES = new Set(['/healthz', '/readyz', '/metrics', '/openapi.yaml', '/favicon.ico']);
const AUTH_ENDPOINTS = new Set(['jwks', 'report-keys', 'smart-style.json', 'authorize', 'login', 'consent', 'token', 'introspect', 'revoke', 'register', 'users', 'launch']);
const FHIR_NAMED = new Set(['metadata', '_history', '_search']);
const WEB_PREFIXES = new Set(['apps', 'portal', 'auditor', 'web']);

export interface MetricsSources {
  db: Database;
  /** The outbox worker's events ('delivered', 'failed' with the entry). */
  outboxEvents: EventEmitter;
  /** Operation keys of the REST layer (`Communication/$inbox`, `Communication/id/$delivery-status`, …). */
  operationKeys: string[];
  /** Requests being handled right now (the load shedder's count). */
  inFlight: () => number;
}

export class Metrics {
  readonly registry = new Registry();
  readonly requests: Counter<'method' | 'route' | 'status_class'>;
  readonly duration: Histogram<'method' | 'route' | 'status_class'>;
  /** FHIR API requests refused with 429, by which limit (`user` or `client`). */
  readonly rateLimited: Counter<'limit'>;
  /** Requests refused with 503 before any work, by reason (`in_flight`, `event_loop`). */
  readonly shed: Counter<'reason'>;
  /** Requests answered 503 because they ran out of time (`request`) or a statement did (`statement`). */
  readonly timeouts: Counter<'kind'>;
  private readonly types = new Set<string>(RESOURCE_TYPES);
  private readonly operations: Set<string>;

  constructor(sources: MetricsSources) {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry });
    const labelNames = ['method', 'route', 'status_class'] as const;
    this.requests = new Counter({ name: 'carethread_http_requests_total', help: 'HTTP requests answered', labelNames, registers });
    this.duration = new Histogram({
      name: 'carethread_http_request_duration_seconds',
      help: 'Time from request to the end of the response',
      labelNames,
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers,
    });
    this.rateLimited = new Counter({ name: 'carethread_rate_limited_requests_total', help: 'FHIR API requests refused with 429', labelNames: ['limit'], registers });
    this.shed = new Counter({ name: 'carethread_shed_requests_total', help: 'Requests refused with 503 because the server was overloaded', labelNames: ['reason'], registers });
    this.timeouts = new Counter({ name: 'carethread_timeouts_total', help: 'Requests answered 503 because they or a statement timed out', labelNames: ['kind'], registers });
    new Gauge({ name: 'carethread_http_requests_in_flight', help: 'Requests being handled', registers, collect() { this.set(sources.inFlight()); } });
    const delivered = new Counter({ name: 'carethread_outbox_deliveries_total', help: 'Outbox entries delivered', labelNames: ['kind'], registers });
    const failed = new Counter({ name: 'carethread_outbox_delivery_failures_total', help: 'Outbox entries marked failed after their last attempt', labelNames: ['kind'], registers });
    sources.outboxEvents.on('delivered', (entry: { kind: string }) => delivered.inc({ kind: entry.kind }));
    sources.outboxEvents.on('failed', (entry: { kind: string }) => failed.inc({ kind: entry.kind }));
    const { db } = sources;
    new Gauge({
      name: 'carethread_outbox_entries',
      help: 'Outbox entries not yet delivered, by kind and status (pending, failed), read at scrape time',
      labelNames: ['kind', 'status'],
      registers,
      async collect() {
        this.reset();
        // Delivered entries are left out: they grow without bound, and the partial index
        // `outbox_ordering` holds exactly the others.
        const rows = await db
          .query<{ kind: string; status: string; n: number | string }>(`SELECT kind, status, count(*) AS n FROM outbox WHERE status <> 'delivered' GROUP BY kind, status`)
          .catch(() => []);
        for (const row of rows) {
          this.set({ kind: row.kind, status: row.status }, Number(row.n));
        }
      },
    });
    new Gauge({
      name: 'carethread_outbox_retrying_entries',
      help: 'Pending outbox entries that have failed at least one attempt, read at scrape time',
      labelNames: ['kind'],
      registers,
      async collect() {
        this.reset();
        const rows = await db
          .query<{ kind: string; n: number | string }>(`SELECT kind, count(*) AS n FROM outbox WHERE status = 'pending' AND attempts > 0 GROUP BY kind`)
          .catch(() => []);
        for (const row of rows) {
          this.set({ kind: row.kind }, Number(row.n));
        }
      },
    });
    this.operations = new Set(sources.operationKeys.map((key) => key.split('/').pop()!));
  }

  /** Express middleware: counts and times every response it sees finish. */
  middleware() {
    return (req: Request, res: Response, next: NextFunction) => {
      const started = process.hrtime.bigint();
      res.once('finish', () => {
        const labels = { method: methodLabel(req.method), route: this.routeOf(req.originalUrl), status_class: `${Math.floor(res.statusCode / 100)}xx` };
        this.requests.inc(labels);
        this.duration.observe(labels, Number(process.hrtime.bigint() - started) / 1e9);
      });
      next();
    };
  }

  /** The route pattern of a URL: `/fhir/Communication/{id}`, `/auth/token`, `other`. */
  routeOf(url: string): string {
    const segments = url.split('?')[0].split('/').filter(Boolean);
    const [first, second] = segments;
    const path = `/${segments.join('/')}`;
    if (STATIC_ROUTES.has(path) || path === '/') {
      return path;
    }
    if (first === 'auth' && segments.length === 2 && AUTH_ENDPOINTS.has(second)) {
      return path;
    }
    if (first === 'fhir') {
      return this.fhirRoute(segments.slice(1));
    }
    if (WEB_PREFIXES.has(first)) {
      return `/${first}/*`;
    }
    return 'other';
  }

  private fhirRoute(segments: string[]): string {
    if (segments.length === 0) {
      return '/fhir';
    }
    if (segments[0] === '.well-known') {
      return '/fhir/.well-known/*';
    }
    const parts = segments.map((segment, i) => {
      if (segment.startsWith('$')) {
        return this.operations.has(segment) ? segment : '{operation}';
      }
      if (FHIR_NAMED.has(segment)) {
        return segment;
      }
      if (i === 0) {
        return this.types.has(segment) ? segment : '{type}';
      }
      return segments[i - 1] === '_history' ? '{vid}' : '{id}';
    });
    return `/fhir/${parts.slice(0, 5).join('/')}`;
  }
}

function methodLabel(method: string): string {
  return ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'].includes(method) ? method : 'other';
}
