/**
 * Batch and transaction Bundles. A batch runs each entry on its own and reports each
 * outcome. A transaction runs every entry in one database transaction (DELETE, then POST,
 * then PUT/PATCH, then GET, as R4 orders them), resolves `urn:uuid:` references to the ids
 * the server assigns, and either all of it commits or nothing does.
 */
import { randomUUID } from 'node:crypto';
import type { Bundle, BundleEntry, Resource } from '@medplum/fhirtypes';
import type { AccessContext } from '../access.js';
import type { Queryable } from '../db/database.js';
import { badRequest, FhirError, toFhirError } from '../errors.js';
import { dispatch } from './dispatch.js';
import type { Method, RestEnvironment, RestRequest, RestResponse } from './dispatch.js';

const METHODS = new Set<Method>(['GET', 'POST', 'PUT', 'PATCH', 'DELETE']);
const ORDER: Record<Method, number> = { DELETE: 0, POST: 1, PUT: 2, PATCH: 2, GET: 3 };
export const MAX_BUNDLE_ENTRIES = 1000;

interface PreparedEntry {
  index: number;
  request: RestRequest;
  fullUrl?: string;
}

export async function processBundle(env: RestEnvironment, ctx: AccessContext, body: unknown): Promise<string> {
  const bundle = body as Bundle;
  if (!bundle || typeof bundle !== 'object' || bundle.resourceType !== 'Bundle') {
    throw badRequest('POST to the FHIR base takes a batch or transaction Bundle', ['resourceType']);
  }
  if (bundle.type !== 'batch' && bundle.type !== 'transaction') {
    throw badRequest(`Bundle.type must be batch or transaction (got ${String(bundle.type)})`, ['Bundle.type']);
  }
  const entries = Array.isArray(bundle.entry) ? bundle.entry : [];
  if (entries.length > MAX_BUNDLE_ENTRIES) {
    throw new FhirError(413, {
      resourceType: 'OperationOutcome',
      issue: [{ severity: 'error', code: 'too-costly', details: { text: `A Bundle may hold at most ${MAX_BUNDLE_ENTRIES} entries` } }],
    });
  }
  if (bundle.type === 'batch') {
    return renderResponse('batch-response', await runBatch(env, ctx, entries));
  }
  return renderResponse('transaction-response', await runTransaction(env, ctx, entries));
}

async function runBatch(env: RestEnvironment, ctx: AccessContext, entries: BundleEntry[]): Promise<string[]> {
  const responses: string[] = [];
  for (let i = 0; i < entries.length; i++) {
    try {
      const prepared = prepareEntry(entries[i], i);
      responses.push(entryResponse(await dispatch(env, ctx, prepared.request)));
    } catch (err) {
      const error = toFhirError(err);
      responses.push(JSON.stringify({ response: { status: String(error.status), outcome: error.outcome } }));
    }
  }
  return responses;
}

async function runTransaction(env: RestEnvironment, ctx: AccessContext, entries: BundleEntry[]): Promise<string[]> {
  const prepared = entries.map((entry, i) => prepareEntry(entry, i));
  const ordered = [...prepared].sort((a, b) => ORDER[a.request.method] - ORDER[b.request.method] || a.index - b.index);
  const responses: string[] = new Array(entries.length);
  await env.store.transaction(async (tx) => {
    await assignIds(env, ctx, tx, prepared);
    for (const entry of ordered) {
      try {
        responses[entry.index] = entryResponse(await dispatch(env, ctx, { ...entry.request, tx }));
      } catch (err) {
        const error = toFhirError(err);
        const text = `Transaction entry ${entry.index} (${entry.request.method} ${entry.request.path.join('/')}) failed: ${
          error.outcome.issue?.[0]?.details?.text ?? error.message
        }`;
        throw new FhirError(error.status, {
          ...error.outcome,
          issue: [{ ...(error.outcome.issue?.[0] ?? { severity: 'error', code: 'processing' }), details: { text } }, ...(error.outcome.issue?.slice(1) ?? [])],
        });
      }
    }
  });
  return responses;
}

function prepareEntry(entry: BundleEntry, index: number): PreparedEntry {
  const request = entry?.request;
  const method = request?.method as Method | undefined;
  if (!method || !METHODS.has(method) || typeof request?.url !== 'string') {
    throw badRequest(`Bundle entry ${index} needs request.method and request.url`, [`Bundle.entry[${index}].request`]);
  }
  const url = new URL(request.url.replace(/^\/+/, ''), 'http://bundle.invalid/');
  const path = url.pathname.split('/').filter(Boolean).map(decodeURIComponent);
  return {
    index,
    fullUrl: entry.fullUrl,
    request: {
      method,
      path,
      query: [...url.searchParams],
      body: method === 'PATCH' ? patchBody(entry, index) : entry.resource,
      ifMatch: request.ifMatch,
      ifNoneExist: request.ifNoneExist,
    },
  };
}

/** PATCH entries carry their JSON Patch as a Binary resource, as R4 specifies. */
function patchBody(entry: BundleEntry, index: number): unknown {
  const binary = entry.resource as (Resource & { data?: string }) | undefined;
  if (binary?.resourceType !== 'Binary' || typeof binary.data !== 'string') {
    throw badRequest(`Bundle entry ${index}: a PATCH entry carries its JSON Patch as a Binary resource`, [`Bundle.entry[${index}].resource`]);
  }
  try {
    return JSON.parse(Buffer.from(binary.data, 'base64').toString('utf8'));
  } catch {
    throw badRequest(`Bundle entry ${index}: the patch is not valid JSON`, [`Bundle.entry[${index}].resource`]);
  }
}

/**
 * Gives every created resource its id up front, so `urn:uuid:` references anywhere in the
 * Bundle can be rewritten to `Type/id` before anything is written.
 */
async function assignIds(env: RestEnvironment, ctx: AccessContext, tx: Queryable, entries: PreparedEntry[]): Promise<void> {
  const mapping = new Map<string, string>();
  for (const entry of entries) {
    const { request } = entry;
    if (request.method === 'POST' && request.path.length === 1 && entry.fullUrl?.startsWith('urn:uuid:')) {
      const type = request.path[0];
      // A conditional create that matches refers to the existing resource instead.
      const existing = request.ifNoneExist ? await env.store.findConditional(tx, type, request.ifNoneExist, ctx) : undefined;
      const id = existing?.id ?? randomUUID();
      mapping.set(entry.fullUrl, `${type}/${id}`);
      request.assignedId = existing ? undefined : id;
    }
  }
  if (!mapping.size) {
    return;
  }
  for (const entry of entries) {
    entry.request.body = rewriteReferences(entry.request.body, mapping);
  }
}

function rewriteReferences(value: unknown, mapping: Map<string, string>): unknown {
  if (Array.isArray(value)) {
    return value.map((v) => rewriteReferences(v, mapping));
  }
  if (value && typeof value === 'object') {
    const result: Record<string, unknown> = {};
    for (const [key, inner] of Object.entries(value)) {
      result[key] = key === 'reference' && typeof inner === 'string' && mapping.has(inner) ? mapping.get(inner) : rewriteReferences(inner, mapping);
    }
    return result;
  }
  return value;
}

function entryResponse(response: RestResponse): string {
  const { stored } = response;
  const body: Record<string, unknown> = {
    status: String(response.status),
    ...(response.location ? { location: response.location } : {}),
    ...(stored ? { etag: `W/"${stored.version}"`, lastModified: stored.lastUpdated } : {}),
  };
  const fullUrl = stored ? `,"fullUrl":${JSON.stringify(response.location?.replace(/\/_history\/\d+$/, '') ?? '')}` : '';
  const resource = response.body ? `,"resource":${response.body}` : '';
  return `{"response":${JSON.stringify(body)}${stored && response.location ? fullUrl : ''}${resource}}`;
}

function renderResponse(type: string, entries: string[]): string {
  return `{"resourceType":"Bundle","type":"${type}","entry":[${entries.join(',')}]}`;
}
