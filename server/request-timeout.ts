/**
 * Request timeouts. A handler still working after `REQUEST_TIMEOUT_MS` gets its answer
 * replaced by 503 + Retry-After (OperationOutcome `timeout`) and the connection is closed;
 * the work itself is bounded by PostgreSQL's `statement_timeout` and ends on its own (a write
 * that commits after the 503 stays committed: clients retry with conditional creates).
 * Node's own limits stop clients that are too slow to send a request at all.
 */
import type { Server } from 'node:http';
import type { NextFunction, Request, Response } from 'express';
import { FhirError, outcome } from '../fhir/index.js';
import type { LimitsConfig } from './config.js';
import { sendOutcome } from './errors.js';
import type { Metrics } from './metrics.js';

export function requestTimeout(timeoutMs: number, metrics: Metrics) {
  return (_req: Request, res: Response, next: NextFunction) => {
    const timer = setTimeout(() => {
      if (res.headersSent) {
        return;
      }
      metrics.timeouts.inc({ kind: 'request' });
      res.locals.timedOut = true;
      res.setHeader('Retry-After', '5');
      res.setHeader('Connection', 'close');
      sendOutcome(res, new FhirError(503, outcome('timeout', `The request was not answered within ${timeoutMs} ms; try again shortly`)));
    }, timeoutMs);
    const clear = () => clearTimeout(timer);
    res.once('finish', clear);
    res.once('close', clear);
    next();
  };
}

/** Node's limits on receiving a request: all of it within the request timeout, headers within 20 s. */
export function applyHttpTimeouts(server: Server, limits: Pick<LimitsConfig, 'requestTimeoutMs'>): void {
  server.requestTimeout = limits.requestTimeoutMs;
  server.headersTimeout = Math.min(20_000, limits.requestTimeoutMs);
}
