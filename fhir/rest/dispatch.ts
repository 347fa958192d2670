/**
 * The FHIR RESTful interactions, independent of the HTTP framework: a request (method, path
 * below the FHIR base, query pairs, body, conditional headers) maps to one interaction on
 * the store, and its result to a status, headers and body. The Express routes and the
 * entries of batch and transaction Bundles both go through here, so they behave alike.
 */
import type { AccessContext } from '../access.js';
import type { Queryable } from '../db/database.js';
import { badRequest, methodNotAllowed, notFound } from '../errors.js';
import type { ResourceStore, StoredResource, WriteResult } from '../store/store.js';
import { renderHistoryBundle, renderSearchBundle, searchLinks } from './render.js';
import { dateRange } from '../search/dates.js';

export type Method = 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';

export interface RestRequest {
  method: Method;
  /** Path segments below the FHIR base, e.g. ['Patient', '123', '_history', '2']. */
  path: string[];
  query: [string, string][];
  body?: unknown;
  ifMatch?: string;
  ifNoneExist?: string;
  /** The Accept header (operations that can answer other formats, e.g. CSV). */
  accept?: string;
  /** `Prefer: handling=lenient`: unknown search parameters are ignored with a warning. */
  lenient?: boolean;
  /** A transaction in progress: the interaction joins it. */
  tx?: Queryable;
  /** The id a transaction Bundle assigned up front to a created resource. */
  assignedId?: string;
}

export interface RestResponse {
  status: number;
  /** JSON body (a resource or Bundle), if any. */
  body?: string;
  /** Media type of `body` (or `data`) when it is not FHIR JSON. */
  contentType?: string;
  /** Raw bytes sent instead of `body` (with `contentType`), e.g. a PDF. */
  data?: Buffer;
  /** Further response headers (e.g. Content-Disposition of a download). */
  headers?: Record<string, string>;
  /** The stored resource behind the body, for ETag / Last-Modified / Location. */
  stored?: StoredResource;
  location?: string;
}

/** Type-specific behaviour layered over the store (messaging rules for Communication, …). */
export interface TypeHandlers {
  create?: (ctx: AccessContext, body: unknown, options: { tx?: Queryable; id?: string; ifNoneExist?: string }) => Promise<WriteResult>;
  read?: (ctx: AccessContext, id: string, tx?: Queryable) => Promise<StoredResource>;
  /** PUT (and update-as-create); for types whose writes are checked or completed by the server. */
  update?: (ctx: AccessContext, body: unknown, id: string, options: { ifMatch?: number; tx?: Queryable }) => Promise<WriteResult>;
  patch?: (ctx: AccessContext, id: string, operations: unknown, options: { ifMatch?: number; tx?: Queryable }) => Promise<WriteResult>;
  /** Throws when `ctx` may not update, patch or delete this resource. */
  checkChange?: (ctx: AccessContext, id: string, method: Method, body: unknown) => Promise<void>;
}

/** A FHIR operation: `$name` on a type (`id` undefined) or an instance. */
export type Operation = (ctx: AccessContext, req: RestRequest, id?: string) => Promise<RestResponse>;

export interface RestEnvironment {
  store: ResourceStore;
  fhirBase: string;
  handlers?: Record<string, TypeHandlers>;
  /** Keyed `Type/$name` (type level) or `Type/id/$name` (instance level, with a literal `id`). */
  operations?: Record<string, Operation>;
}

export async function dispatch(env: RestEnvironment, ctx: AccessContext, req: RestRequest): Promise<RestResponse> {
  const [type, second, third, fourth, ...rest] = req.path;
  if (!type || rest.length) {
    throw notFound(`No FHIR endpoint at /${req.path.join('/')}`);
  }
  const { store } = env;
  const handlers = env.handlers?.[type];
  const operation = second?.startsWith('$') ? env.operations?.[`${type}/${second}`] : third?.startsWith('$') ? env.operations?.[`${type}/id/${third}`] : undefined;
  if (operation && fourth === undefined && (third === undefined || second !== undefined)) {
    return operation(ctx, req, third?.startsWith('$') ? second : undefined);
  }
  if (second?.startsWith('$') || third?.startsWith('$')) {
    throw notFound(`Unknown operation ${second?.startsWith('$') ? second : third} on ${type}`);
  }
  if (second === undefined) {
    if (req.method === 'GET') {
      return search(env, ctx, type, req);
    }
    if (req.method === 'POST') {
      const options = { ifNoneExist: req.ifNoneExist, tx: req.tx, id: req.assignedId };
      const result = handlers?.create ? await handlers.create(ctx, req.body, options) : await store.create(ctx, req.body, type, options);
      return written(env, result);
    }
    throw methodNotAllowed(`${req.method} is not allowed on /${type}`);
  }
  if (second === '_search' && third === undefined && req.method === 'POST') {
    return search(env, ctx, type, req);
  }
  if (second === '_history' && third === undefined && req.method === 'GET') {
    return history(env, ctx, type, undefined, req);
  }
  const id = second;
  if (third === undefined) {
    if (handlers?.checkChange && req.method !== 'GET') {
      await handlers.checkChange(ctx, id, req.method, req.body);
    }
    switch (req.method) {
      case 'GET': {
        const stored = handlers?.read && !req.tx ? await handlers.read(ctx, id) : await store.read(ctx, type, id, { tx: req.tx });
        return { status: 200, body: stored.content, stored };
      }
      case 'PUT': {
        const options = { ifMatch: parseETag(req.ifMatch), tx: req.tx };
        return written(env, handlers?.update ? await handlers.update(ctx, req.body, id, options) : await store.update(ctx, req.body, type, id, options));
      }
      case 'PATCH': {
        const options = { ifMatch: parseETag(req.ifMatch), tx: req.tx };
        return written(env, handlers?.patch ? await handlers.patch(ctx, id, req.body, options) : await store.patch(ctx, type, id, req.body, options));
      }
      case 'DELETE': {
        await store.delete(ctx, type, id, { tx: req.tx });
        return { status: 204 };
      }
      default:
        throw methodNotAllowed(`${req.method} is not allowed on /${type}/${id}`);
    }
  }
  if (third === '_history' && req.method === 'GET') {
    if (fourth === undefined) {
      return history(env, ctx, type, id, req);
    }
    const stored = await store.vread(ctx, type, id, fourth, { tx: req.tx });
    return { status: 200, body: stored.content, stored };
  }
  throw notFound(`No FHIR endpoint at /${req.path.join('/')}`);
}

async function search(env: RestEnvironment, ctx: AccessContext, type: string, req: RestRequest): Promise<RestResponse> {
  const request = env.store.parseSearch(type, req.query, req.lenient ?? false);
  const result = await env.store.search(ctx, request, { tx: req.tx });
  const cursor = request.cursor ? `${request.cursor.direction}:${request.cursor.id}` : undefined;
  const links = searchLinks(env.fhirBase, request, result, cursor);
  return { status: 200, body: renderSearchBundle(env.fhirBase, request, result, links, request.warnings) };
}

async function history(env: RestEnvironment, ctx: AccessContext, type: string, id: string | undefined, req: RestRequest): Promise<RestResponse> {
  let count: number | undefined;
  let since: string | undefined;
  let before: string | undefined;
  for (const [name, value] of req.query) {
    if (name === '_count') {
      if (!/^\d+$/.test(value)) {
        throw badRequest('_count must be a non-negative whole number', ['_count']);
      }
      count = Number(value);
    } else if (name === '_since') {
      // Date.parse takes values PostgreSQL does not (e.g. "0"): accept FHIR instants only.
      since = dateRange(value)?.low;
      if (!since) {
        throw badRequest('_since must be an instant', ['_since']);
      }
    } else if (name === '_cursor') {
      if (!/^\d{1,18}$/.test(value)) {
        throw badRequest('Invalid history cursor', ['_cursor']);
      }
      before = value;
    } else if (!req.lenient && !['_format', '_pretty'].includes(name)) {
      throw badRequest(`Unknown history parameter "${name}"`, [name]);
    }
  }
  const page = await env.store.history(ctx, type, id, { count, since, before }, { tx: req.tx });
  const base = `${env.fhirBase}/${type}${id ? `/${id}` : ''}/_history`;
  const query = (extra?: string) => {
    const params = new URLSearchParams();
    if (count !== undefined) params.set('_count', String(count));
    if (since) params.set('_since', since);
    if (extra) params.set('_cursor', extra);
    const text = params.toString();
    return text ? `${base}?${text}` : base;
  };
  const links = [{ relation: 'self', url: query(before) }];
  if (page.nextBefore) {
    links.push({ relation: 'next', url: query(page.nextBefore) });
  }
  return { status: 200, body: renderHistoryBundle(env.fhirBase, type, page, links) };
}

function written(env: RestEnvironment, result: WriteResult): RestResponse {
  const { stored } = result;
  const status = result.outcome === 'created' ? 201 : 200;
  return {
    status,
    body: stored.content,
    stored,
    location: status === 201 ? `${env.fhirBase}/${stored.type}/${stored.id}/_history/${stored.version}` : undefined,
  };
}

/** `W/"3"` or `3` → 3; anything else is a 400. */
export function parseETag(value: string | undefined): number | undefined {
  if (value === undefined) {
    return undefined;
  }
  const match = /^(?:W\/)?"?(\d{1,9})"?$/.exec(value.trim());
  if (!match) {
    throw badRequest(`If-Match must be a version ETag such as W/"3" (got ${value.slice(0, 40)})`);
  }
  return Number(match[1]);
}
