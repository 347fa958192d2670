/**
 * Assembles the Express application from an AppContext: security headers, request ids and
 * logs, request metrics, the health and metrics endpoints, load shedding and request
 * timeouts, the API description and the FHIR endpoint (rate-limited per user or client).
 */
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import express from 'express';
import type { ErrorRequestHandler, Express, Request, Response } from 'express';
import helmet from 'helmet';
import type { AppContext } from './context.js';
import { errorHandler, httpError, notFoundHandler } from './errors.js';
import { tooManyRequests } from '../fhir/errors.js';
import { openCors } from './cors.js';
import { authRouter, discoveryRouter } from './routes/auth.js';
import { fhirRouter } from './routes/fhir.js';
import { healthRouter } from './routes/health.js';
import { metricsRouter } from './routes/metrics.js';
import { ApiRateLimits } from './rate-limit.js';
import { requestTimeout } from './request-timeout.js';
import { webRouter } from './routes/web.js';

const OPENAPI_PATH = new URL('../openapi.yaml', import.meta.url);

export function createApp(app: AppContext): Express {
  const server = express();
  server.disable('x-powered-by');
  server.set('trust proxy', 'loopback');
  server.set('etag', false);
  server.set('query parser', 'simple');
  // First: refusing a request while overloaded must cost next to nothing (health and metrics are exempt).
  server.use(app.shedder.middleware(app.metrics));
  server.use(helmet({ crossOriginResourcePolicy: { policy: 'cross-origin' } }));
  server.use(requestLog(app));
  server.use(app.metrics.middleware());
  // Health and metrics come before the request timeout: they answer at once.
  server.use(healthRouter(app));
  server.use(metricsRouter(app));
  server.use(requestTimeout(app.config.limits.requestTimeoutMs, app.metrics));
  const apiLimits = new ApiRateLimits(app.config.limits);
  server.get('/openapi.yaml', (_req, res) => {
    res.type('application/yaml').send(fs.readFileSync(OPENAPI_PATH, 'utf8'));
  });
  server.use(webRouter(app));
  server.use('/fhir', openCors, discoveryRouter(app));
  server.use('/auth', authRouter(app));
  server.use(
    '/fhir',
    fhirRouter(app, {
      accessContext: async (req, res) => {
        const ctx = await app.resourceServer.contextFor({
          authorization: req.headers.authorization,
          queryToken: typeof req.query.access_token === 'string',
          address: req.ip,
          requestId: res.locals.requestId,
        });
        // Refused before any work on the request: nothing is read, written or audited.
        const refused = apiLimits.check(ctx);
        if (refused) {
          app.metrics.rateLimited.inc({ limit: refused.limit });
          res.setHeader('Retry-After', String(refused.retryAfter));
          throw tooManyRequests(`Too many requests for this ${refused.limit === 'user' ? 'user' : 'client'}; retry after ${refused.retryAfter} s`);
        }
        return ctx;
      },
    })
  );
  server.use(notFoundHandler);
  server.use(unavailableAnswers(app));
  server.use(errorHandler(app.logger));
  return server;
}

/**
 * Before the error handler: a 503 (a statement timeout) tells the client when to retry, and
 * a handler that finishes after its request timed out has nobody left to answer.
 */
function unavailableAnswers(app: AppContext): ErrorRequestHandler {
  return (err, _req, res, next) => {
    if (res.locals.timedOut) {
      app.logger.warn({ requestId: res.locals.requestId }, 'request finished after its timeout');
      return;
    }
    const error = httpError(err);
    if (error.status === 503 && !res.headersSent) {
      if (error.outcome.issue?.[0]?.code === 'timeout') {
        app.metrics.timeouts.inc({ kind: 'statement' });
      }
      res.setHeader('Retry-After', '5');
    }
    next(err);
  };
}

function requestLog(app: AppContext) {
  return (req: Request, res: Response, next: () => void) => {
    const supplied = req.headers['x-request-id'];
    const requestId = typeof supplied === 'string' && /^[A-Za-z0-9\-_.]{1,64}$/.test(supplied) ? supplied : randomUUID();
    res.locals.requestId = requestId;
    res.setHeader('X-Request-Id', requestId);
    const started = process.hrtime.bigint();
    res.on('finish', () => {
      app.logger.info(
        {
          requestId,
          method: req.method,
          // The route pattern, not the path: ids in a path are client-chosen text too.
          route: app.metrics.routeOf(req.originalUrl),
          status: res.statusCode,
          ms: Number(process.hrtime.bigint() - started) / 1e6,
        },
        'request'
      );
    });
    next();
  };
}
