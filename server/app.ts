/**
 * Assembles the Express application from an AppContext: security headers, request ids and
 * logs, the health endpoints, the API description and the FHIR endpoint.
 */
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import express from 'express';
import type { Express, Request, Response } from 'express';
import helmet from 'helmet';
import type { AppContext } from './context.js';
import { errorHandler, notFoundHandler } from './errors.js';
import { openCors } from './cors.js';
import { authRouter, discoveryRouter } from './routes/auth.js';
import { fhirRouter } from './routes/fhir.js';
import { healthRouter } from './routes/health.js';
import { webRouter } from './routes/web.js';

const OPENAPI_PATH = new URL('../openapi.yaml', import.meta.url);

export function createApp(app: AppContext): Express {
  const server = express();
  server.disable('x-powered-by');
  server.set('trust proxy', 'loopback');
  server.set('etag', false);
  server.set('query parser', 'simple');
  server.use(helmet({ crossOriginResourcePolicy: { policy: 'cross-origin' } }));
  server.use(requestLog(app));
  server.use(healthRouter(app));
  server.get('/openapi.yaml', (_req, res) => {
    res.type('application/yaml').send(fs.readFileSync(OPENAPI_PATH, 'utf8'));
  });
  server.use(webRouter(app));
  server.use('/fhir', openCors, discoveryRouter(app));
  server.use('/auth', authRouter(app));
  server.use(
    '/fhir',
    fhirRouter(app, {
      accessContext: (req, res) =>
        app.resourceServer.contextFor({
          authorization: req.headers.authorization,
          queryToken: typeof req.query.access_token === 'string',
          address: req.ip,
          requestId: res.locals.requestId,
        }),
    })
  );
  server.use(notFoundHandler);
  server.use(errorHandler(app.logger));
  return server;
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
          path: req.originalUrl.split("?")[0],
          status: res.statusCode,
          ms: Number(process.hrtime.bigint() - started) / 1e6,
        },
        'request'
      );
    });
    next();
  };
}
