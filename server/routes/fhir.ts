/**
 * The FHIR REST endpoint at `/fhir`: reads the HTTP request into a RestRequest, hands it to
 * the domain dispatcher (or the Bundle processor), and writes the result with the headers
 * FHIR clients expect. No FHIR rule lives here.
 */
import express from 'express';
import type { NextFunction, Request, Response, Router } from 'express';
import { capabilityStatement, dispatch, FhirError, outcome, processBundle, unsupportedMediaType } from '../../fhir/index.js';
import type { AccessContext, Method, RestResponse } from '../../fhir/index.js';
import { capabilitySecurity } from '../../auth/discovery.js';
import type { AppContext } from '../context.js';
import { openCors } from '../cors.js';
import { SOFTWARE_VERSION } from '../context.js';

const FHIR_JSON = 'application/fhir+json';
const JSON_TYPES = ['application/fhir+json', 'application/json', 'application/json-patch+json'];

export interface FhirRouterOptions {
  /** Builds the access context of a request (the auth layer supplies it). */
  accessContext: (req: Request, res: Response) => Promise<AccessContext>;
}

export function fhirRouter(app: AppContext, options: FhirRouterOptions): Router {
  const router = express.Router();
  const { config } = app;
  const env = app.rest;
  const metadata = JSON.stringify(
    capabilityStatement({
      fhirBase: app.fhirBase,
      softwareVersion: SOFTWARE_VERSION,
      security: capabilitySecurity(app.auth.settings),
      operations: Object.keys(env.operations ?? {}),
    })
  );

  router.get('/metadata', openCors, (_req, res) => {
    res.type(FHIR_JSON).send(metadata);
  });

  const jsonBody = express.json({ limit: config.maxBodyBytes, type: JSON_TYPES, strict: false });
  // Binary JSON carries base64 (4/3 of the bytes) plus a little structure.
  const binaryJsonBody = express.json({ limit: Math.ceil(config.maxBinaryBytes * 1.34) + 65536, type: JSON_TYPES, strict: false });
  const rawBinaryBody = express.raw({ limit: config.maxBinaryBytes, type: () => true });
  const formBody = express.urlencoded({ limit: config.maxBodyBytes, extended: false, type: 'application/x-www-form-urlencoded' });

  router.use((req, res, next) => {
    if (!['POST', 'PUT', 'PATCH'].includes(req.method)) {
      next();
      return;
    }
    const binary = req.path.startsWith('/Binary');
    const contentType = (req.headers['content-type'] ?? '').split(';')[0].trim().toLowerCase();
    if (req.path.endsWith('/_search') && req.method === 'POST') {
      if (contentType && contentType !== 'application/x-www-form-urlencoded') {
        next(unsupportedMediaType('POST _search takes application/x-www-form-urlencoded'));
        return;
      }
      formBody(req, res, next);
      return;
    }
    if (JSON_TYPES.includes(contentType)) {
      if ((req.method === 'PATCH') !== (contentType === 'application/json-patch+json')) {
        next(unsupportedMediaType(req.method === 'PATCH' ? 'PATCH takes application/json-patch+json' : `Content-Type must be ${FHIR_JSON}`));
        return;
      }
      (binary ? binaryJsonBody : jsonBody)(req, res, next);
      return;
    }
    if (binary && req.method !== 'PATCH' && contentType) {
      rawBinaryBody(req, res, (err?: unknown) => {
        if (!err && Buffer.isBuffer(req.body)) {
          const id = req.path.split('/')[2];
          req.body = { resourceType: 'Binary', ...(id ? { id } : {}), contentType, data: (req.body as Buffer).toString('base64') };
        }
        next(err);
      });
      return;
    }
    next(unsupportedMediaType(`Content-Type must be ${FHIR_JSON} (got ${contentType || 'none'})`));
  });

  const handle = async (req: Request, res: Response, next: NextFunction) => {
    try {
      const ctx = await options.accessContext(req, res);
      const path = req.path.split('/').filter(Boolean).map(decodeURIComponent);
      const method = req.method as Method;
      if (path.length === 0) {
        if (method !== 'POST') {
          throw new FhirError(405, outcome('not-supported', `${method} is not allowed on the FHIR base`));
        }
        res.status(200).type(FHIR_JSON).send(await processBundle(env, ctx, req.body));
        return;
      }
      const query = queryPairs(req);
      const response = await dispatch(env, ctx, {
        method,
        path,
        query,
        body: req.body,
        ifMatch: header(req, 'if-match'),
        ifNoneExist: header(req, 'if-none-exist'),
        accept: header(req, 'accept'),
        lenient: /handling=lenient/.test(header(req, 'prefer') ?? ''),
      });
      send(req, res, response);
    } catch (err) {
      next(err);
    }
  };
  router.all('/{*path}', handle);
  return router;
}

/** Query pairs of a search: from the URL, plus the form body of POST `_search`. */
function queryPairs(req: Request): [string, string][] {
  const raw = req.originalUrl.includes('?') ? req.originalUrl.slice(req.originalUrl.indexOf('?') + 1) : '';
  const pairs = [...new URLSearchParams(raw)] as [string, string][];
  if (req.method === 'POST' && req.path.endsWith('/_search') && req.body && typeof req.body === 'object') {
    for (const [name, value] of Object.entries(req.body as Record<string, string | string[]>)) {
      for (const v of Array.isArray(value) ? value : [value]) {
        pairs.push([name, String(v)]);
      }
    }
  }
  return pairs;
}

function header(req: Request, name: string): string | undefined {
  const value = req.headers[name];
  return Array.isArray(value) ? value[0] : value;
}

function send(req: Request, res: Response, response: RestResponse): void {
  const { stored } = response;
  if (stored) {
    res.setHeader('ETag', `W/"${stored.version}"`);
    res.setHeader('Last-Modified', new Date(stored.lastUpdated).toUTCString());
  }
  if (response.location) {
    res.setHeader('Location', response.location);
  }
  for (const [name, value] of Object.entries(response.headers ?? {})) {
    res.setHeader(name, value);
  }
  res.status(response.status);
  if (response.data) {
    res.type(response.contentType ?? 'application/octet-stream').send(response.data);
    return;
  }
  if (stored?.type === 'Binary' && req.method === 'GET' && response.body) {
    sendBinary(req, res, response.body, stored.data);
    return;
  }
  if (!response.body) {
    res.end();
    return;
  }
  if (response.contentType) {
    res.type(response.contentType).send(response.body);
    return;
  }
  // Prefer: return=… applies to the answers of writes, not to searches.
  const prefer = stored && req.method !== 'GET' ? (header(req, 'prefer') ?? '') : '';
  if (/return=minimal/.test(prefer)) {
    res.end();
    return;
  }
  if (/return=OperationOutcome/.test(prefer)) {
    res.type(FHIR_JSON).send(JSON.stringify(outcome('informational', `${stored?.type ?? 'Request'} ${response.status === 201 ? 'created' : 'processed'}`, undefined, 'information')));
    return;
  }
  res.type(FHIR_JSON).send(response.body);
}

/** A Binary is served as its own bytes unless the client asks for FHIR JSON. */
function sendBinary(req: Request, res: Response, content: string, data: Buffer | undefined): void {
  const accept = header(req, 'accept') ?? '';
  const binary = JSON.parse(content) as { contentType?: string };
  if (/application\/(fhir\+)?json/.test(accept)) {
    const withData = data ? { ...binary, data: data.toString('base64') } : binary;
    res.type(FHIR_JSON).send(JSON.stringify(withData));
    return;
  }
  res.setHeader('Content-Security-Policy', "sandbox; default-src 'none'");
  res.setHeader('Content-Disposition', 'attachment');
  res.type(binary.contentType ?? 'application/octet-stream').send(data ?? Buffer.alloc(0));
}
