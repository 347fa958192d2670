/**
 * The authorization server's HTTP endpoints under `/auth`, and SMART discovery under
 * `/fhir/.well-known`. Handlers only translate: form or JSON in, a call to `auth/`, and
 * the answer out as a page, a redirect, or OAuth JSON.
 */
import express from 'express';
import type { NextFunction, Request, Response, Router } from 'express';
import { OAuthError } from '../../auth/errors.js';
import { consentPage, errorPage, loginPage } from '../../auth/pages.js';
import { TokenRequired } from '../../auth/resource-server.js';
import { openidConfiguration, smartConfiguration } from '../../auth/discovery.js';
import type { AuthorizeParams, AuthorizeStep } from '../../auth/authorize.js';
import type { AppContext } from '../context.js';
import { openCors } from '../cors.js';
import { rateLimit } from '../rate-limit.js';
import { httpError } from '../errors.js';

export function discoveryRouter(app: AppContext): Router {
  const router = express.Router();
  const smart = JSON.stringify(smartConfiguration(app.auth.settings));
  const openid = JSON.stringify(openidConfiguration(app.auth.settings));
  router.use('/.well-known', openCors);
  router.get('/.well-known/smart-configuration', (_req, res) => {
    res.type('application/json').send(smart);
  });
  router.get('/.well-known/openid-configuration', (_req, res) => {
    res.type('application/json').send(openid);
  });
  return router;
}

export function authRouter(app: AppContext): Router {
  const router = express.Router();
  const form = express.urlencoded({ extended: false, limit: '64kb', parameterLimit: 100 });
  const json = express.json({ limit: '256kb' });
  router.use(
    rateLimit({
      perMinute: app.config.auth.authRequestsPerMinute,
      key: (req) => req.ip ?? 'unknown',
      onLimit: (res) => void res.status(429).json({ error: 'slow_down', error_description: 'Too many requests; try again later' }),
    })
  );

  router.get('/jwks', openCors, (_req, res) => {
    res.json(app.auth.keys.jwks());
  });
  router.get('/report-keys', openCors, (_req, res) => {
    res.json(app.auth.keys.allPublicKeys());
  });
  router.get('/smart-style.json', openCors, (_req, res) => {
    res.json({ color_background: '#f3f6f9', color_highlight: '#0b5cad', color_modal_backdrop: '', color_success: '#2e7d32', color_error: '#b3261e', font_family_body: 'system-ui, sans-serif', font_family_heading: 'system-ui, sans-serif', dim_border_radius: '8px', dim_font_size: '16px', dim_spacing_size: '16px' });
  });

  const authorize = async (req: Request, res: Response, next: NextFunction) => {
    try {
      const params = ((req.method === "POST" ? req.body : req.query) ?? {}) as Record<string, unknown>;
      sendStep(res, await app.authorizeFlow.start(stringsOnly(params) as AuthorizeParams));
    } catch (err) {
      next(err);
    }
  };
  router.get('/authorize', authorize);
  router.post('/authorize', form, authorize);

  router.post('/login', form, async (req, res, next) => {
    try {
      const { pending, username, password } = stringsOnly(req.body ?? {});
      sendStep(res, await app.authorizeFlow.login(pending ?? '', username ?? '', password ?? '', req.ip ?? 'unknown'));
    } catch (err) {
      next(err);
    }
  });

  router.post('/consent', form, async (req, res, next) => {
    try {
      const body = req.body ?? {};
      const scopes = ([] as unknown[]).concat(body.scope ?? []).filter((s): s is string => typeof s === 'string');
      const step = await app.authorizeFlow.consent(String(body.pending ?? ''), body.decision === 'approve', scopes, typeof body.patient === 'string' ? body.patient : undefined);
      sendStep(res, step);
    } catch (err) {
      next(err);
    }
  });

  const tokenFamily = (handler: (form: Record<string, string | undefined>, authorization: string | undefined, address: string | undefined) => Promise<unknown>) =>
    async (req: Request, res: Response, next: NextFunction) => {
      try {
        if (!req.is('application/x-www-form-urlencoded')) {
          throw new OAuthError('invalid_request', 'The request body must be application/x-www-form-urlencoded');
        }
        res.setHeader('Cache-Control', 'no-store');
        res.setHeader('Pragma', 'no-cache');
        const result = await handler(stringsOnly(req.body ?? {}), req.headers.authorization, req.ip);
        if (result === undefined) {
          res.status(200).end();
        } else {
          res.json(result);
        }
      } catch (err) {
        next(err);
      }
    };
  router.post('/token', openCors, form, tokenFamily((f, a, ip) => app.tokenEndpoint.exchange(f, a, ip)));
  router.post('/introspect', openCors, form, tokenFamily((f, a) => app.tokenEndpoint.introspect(f, a)));
  router.post('/revoke', openCors, form, tokenFamily((f, a, ip) => app.tokenEndpoint.revoke(f, a, ip)));
  router.options(['/token', '/introspect', '/revoke', '/jwks'], openCors);

  const admin = (handler: (ctx: Awaited<ReturnType<typeof app.resourceServer.contextFor>>, body: Record<string, unknown>) => Promise<unknown>) =>
    async (req: Request, res: Response, next: NextFunction) => {
      try {
        const ctx = await app.resourceServer.contextFor({ authorization: req.headers.authorization, address: req.ip, requestId: res.locals.requestId });
        if (!req.body || typeof req.body !== 'object' || Array.isArray(req.body)) {
          throw new OAuthError('invalid_request', 'The request body must be a JSON object');
        }
        res.setHeader('Cache-Control', 'no-store');
        res.status(201).json(await handler(ctx, req.body));
      } catch (err) {
        next(err);
      }
    };
  router.post('/register', json, admin((ctx, body) => app.administration.registerClient(ctx, body)));
  router.post('/users', json, admin((ctx, body) => app.administration.createUser(ctx, body)));
  router.post('/launch', json, admin((ctx, body) => app.administration.createLaunch(ctx, body)));

  router.use(oauthErrorHandler);
  return router;
}

function sendStep(res: Response, step: AuthorizeStep): void {
  res.setHeader('Cache-Control', 'no-store');
  switch (step.kind) {
    case 'redirect':
      res.redirect(302, step.url);
      return;
    case 'error-page':
      res.status(400).type('html').send(errorPage(step.message));
      return;
    case 'login':
      res.status(step.error ? 401 : 200).type('html').send(loginPage(step));
      return;
    case 'consent': {
      // Browsers apply form-action to the redirect that answers the form: allow the app's origin.
      res.setHeader(
        'Content-Security-Policy',
        `default-src 'none'; style-src 'unsafe-inline'; form-action 'self' ${step.redirectOrigin}; frame-ancestors 'none'; base-uri 'none'`
      );
      res.status(200).type('html').send(consentPage(step));
      return;
    }
  }
}

function stringsOnly(input: Record<string, unknown>): Record<string, string | undefined> {
  const result: Record<string, string | undefined> = {};
  for (const [key, value] of Object.entries(input)) {
    result[key] = typeof value === 'string' ? value : undefined;
  }
  return result;
}

function oauthErrorHandler(err: unknown, _req: Request, res: Response, next: NextFunction): void {
  if (err instanceof OAuthError) {
    if (err.status === 401 && err.error === 'invalid_client') {
      res.setHeader('WWW-Authenticate', 'Basic realm="CareThread"');
    }
    if (err.error === 'invalid_token') {
      // RFC 6750 §3.1: a request that carried no token gets the challenge without an error code.
      const missing = err instanceof TokenRequired && !err.invalid;
      res.setHeader('WWW-Authenticate', missing ? 'Bearer realm="CareThread"' : `Bearer realm="CareThread", error="invalid_token"`);
    }
    res.status(err.status).json(err.toJSON());
    return;
  }
  // Any other client error (body parser: bad JSON, too large, unsupported charset or
  // encoding; a malformed URL) is still an OAuth error here, with the status it means.
  const error = httpError(err);
  if (error.status < 500) {
    res.status(error.status).json({ error: 'invalid_request', error_description: error.outcome.issue?.[0]?.details?.text ?? 'The request could not be processed' });
    return;
  }
  next(err);
}
