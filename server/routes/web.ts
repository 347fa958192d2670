/**
 * The browser apps: the provider SMART app (`/apps/provider/`, launched from the EHR at
 * `/apps/provider/launch`), the patient portal (`/portal/`) and the auditor dashboard
 * (`/auditor/`), served as static files from `web/`, plus what they share under `/web/`:
 * style, DOM helpers, the `fhirclient` browser build and `config.json` (the FHIR base and
 * each app's client). Nothing is fetched from elsewhere: the pages work without internet.
 *
 * Every page gets a strict Content-Security-Policy: scripts and styles only from here, no
 * inline script. Only the provider app may be framed, by the origins in FRAME_ANCESTORS.
 */
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import express from 'express';
import type { NextFunction, Request, Response, Router } from 'express';
import { WEB_APPS } from '../../auth/app-clients.js';
import type { AppContext } from '../context.js';

const WEB_ROOT = fileURLToPath(new URL('../../web/', import.meta.url));
const FHIRCLIENT_BUILD = path.join(path.dirname(createRequire(import.meta.url).resolve('fhirclient/package.json')), 'build', 'fhir-client.min.js');

export function webRouter(app: AppContext): Router {
  const router = express.Router();
  const config = JSON.stringify({
    fhirBase: app.fhirBase,
    apps: Object.fromEntries(
      Object.entries(WEB_APPS).map(([name, client]) => [name, { clientId: client.clientId, redirectUri: `${app.config.baseUrl}${client.path}`, scope: client.scope }])
    ),
  });
  const framable = ["'self'", ...app.config.web.frameAncestors].join(' ');
  const staticFiles = (dir: string) => express.static(path.join(WEB_ROOT, dir), { index: 'index.html', redirect: true, fallthrough: true });

  router.use(['/apps', '/portal', '/auditor', '/web'], (req: Request, res: Response, next: NextFunction) => {
    const embeddable = req.baseUrl === '/apps' && req.path.startsWith('/provider');
    res.setHeader('Content-Security-Policy', contentSecurityPolicy(embeddable ? framable : "'self'"));
    if (embeddable) {
      // frame-ancestors decides; X-Frame-Options cannot name another origin.
      res.removeHeader('X-Frame-Options');
    }
    res.setHeader('Cache-Control', 'no-cache');
    next();
  });
  // Browsers ask every page's origin for an icon, the sign-in pages' too: answer, not 404.
  router.get('/favicon.ico', (_req, res) => {
    res.status(204).end();
  });
  router.get('/web/config.json', (_req, res) => {
    res.type('application/json').send(config);
  });
  router.get('/web/vendor/fhir-client.js', (_req, res) => {
    res.type('text/javascript').sendFile(FHIRCLIENT_BUILD);
  });
  router.use('/web', staticFiles('shared'));
  router.get('/apps/provider/launch', (_req, res) => {
    res.sendFile(path.join(WEB_ROOT, 'provider', 'launch.html'));
  });
  router.use('/apps/provider', staticFiles('provider'));
  router.use('/portal', staticFiles('portal'));
  router.use('/auditor', staticFiles('auditor'));
  return router;
}

function contentSecurityPolicy(frameAncestors: string): string {
  return [
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data: blob:",
    "connect-src 'self'",
    "frame-src 'self' blob:",
    "object-src 'none'",
    "base-uri 'none'",
    "form-action 'self'",
    `frame-ancestors ${frameAncestors}`,
  ].join('; ');
}
