/**
 * `GET /metrics`: the AppContext's Prometheus registry in the text format. With
 * `METRICS_TOKEN` set it takes `Authorization: Bearer <METRICS_TOKEN>`; without, it answers
 * loopback addresses only (a scraper on the same host, or behind the local proxy that
 * `trust proxy` names: then the forwarded client address is what counts).
 */
import { timingSafeEqual } from 'node:crypto';
import express from 'express';
import type { Router } from 'express';
import { FhirError, outcome } from '../../fhir/index.js';
import type { AppContext } from '../context.js';
import { sendOutcome } from '../errors.js';

export function metricsRouter(app: AppContext): Router {
  const router = express.Router();
  const { metricsToken } = app.config.limits;
  router.get('/metrics', async (req, res, next) => {
    if (metricsToken) {
      const presented = /^Bearer\s+(\S+)$/i.exec(req.headers.authorization ?? '')?.[1] ?? '';
      if (!sameSecret(presented, metricsToken)) {
        res.setHeader('WWW-Authenticate', 'Bearer realm="CareThread metrics"');
        sendOutcome(res, new FhirError(401, outcome('login', 'GET /metrics needs the metrics bearer token')));
        return;
      }
    } else if (!isLoopback(req.ip)) {
      sendOutcome(res, new FhirError(403, outcome('forbidden', 'Metrics are served to loopback addresses only unless METRICS_TOKEN is set')));
      return;
    }
    try {
      const text = await app.metrics.registry.metrics();
      res.setHeader('Cache-Control', 'no-store');
      res.type(app.metrics.registry.contentType).send(text);
    } catch (err) {
      next(err);
    }
  });
  return router;
}

function sameSecret(presented: string, expected: string): boolean {
  const a = Buffer.from(presented);
  const b = Buffer.from(expected);
  return a.length === b.length && timingSafeEqual(a, b);
}

function isLoopback(address: string | undefined): boolean {
  return !!address && (address === '::1' || /^(::ffff:)?127\./.test(address));
}
