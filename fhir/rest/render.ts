/**
 * Bundle JSON for searches and histories, assembled as text around the stored resource
 * JSON so a page is never parsed and re-serialized on its way out.
 */
import type { SearchResult } from '../search/execute.js';
import type { SearchRequest } from '../search/parse.js';
import type { HistoryPage } from '../store/store.js';

export interface BundleLink {
  relation: string;
  url: string;
}

export function searchLinks(fhirBase: string, request: SearchRequest, result: SearchResult, cursor?: string): BundleLink[] {
  const url = (extra?: [string, string]) => {
    const params = new URLSearchParams(request.echo);
    if (extra) {
      params.append(...extra);
    }
    const query = params.toString();
    return `${fhirBase}/${request.type}${query ? `?${query}` : ''}`;
  };
  const links: BundleLink[] = [{ relation: 'self', url: url(cursor ? ['_cursor', cursor] : undefined) }];
  if (result.nextAfter) {
    links.push({ relation: 'next', url: url(['_cursor', `after:${result.nextAfter}`]) });
  }
  if (result.previousBefore) {
    links.push({ relation: 'previous', url: url(['_cursor', `before:${result.previousBefore}`]) });
  }
  return links;
}

export function renderSearchBundle(fhirBase: string, request: SearchRequest, result: SearchResult, links: BundleLink[], warnings: string[]): string {
  const entries: string[] = [];
  for (const match of result.matches) {
    entries.push(entry(fhirBase, match.type, match.id, match.content, '"search":{"mode":"match"}'));
  }
  for (const included of result.included) {
    entries.push(entry(fhirBase, included.type, included.id, included.content, '"search":{"mode":"include"}'));
  }
  if (warnings.length) {
    const outcome = {
      resourceType: 'OperationOutcome',
      issue: warnings.map((text) => ({ severity: 'warning', code: 'not-supported', details: { text } })),
    };
    entries.push(`{"resource":${JSON.stringify(outcome)},"search":{"mode":"outcome"}}`);
  }
  const head: Record<string, unknown> = { resourceType: 'Bundle', type: 'searchset' };
  if (result.total !== undefined) {
    head.total = result.total;
  }
  head.link = links;
  return `${JSON.stringify(head).slice(0, -1)}${entries.length ? `,"entry":[${entries.join(',')}]` : ''}}`;
}

export function renderHistoryBundle(fhirBase: string, type: string, page: HistoryPage, links: BundleLink[]): string {
  const entries = page.entries.map((e) => {
    const fullUrl = JSON.stringify(`${fhirBase}/${type}/${e.id}`);
    const method = e.deleted ? 'DELETE' : e.first ? 'POST' : 'PUT';
    const url = JSON.stringify(e.first && !e.deleted ? type : `${type}/${e.id}`);
    const status = e.deleted ? '204' : e.first ? '201' : '200';
    const response = JSON.stringify({ status, etag: `W/"${e.version}"`, lastModified: e.lastUpdated });
    const resource = e.deleted ? '' : `"resource":${e.content},`;
    return `{"fullUrl":${fullUrl},${resource}"request":{"method":"${method}","url":${url}},"response":${response}}`;
  });
  const head: Record<string, unknown> = { resourceType: 'Bundle', type: 'history' };
  if (page.total !== undefined) {
    head.total = page.total;
  }
  head.link = links;
  return `${JSON.stringify(head).slice(0, -1)}${entries.length ? `,"entry":[${entries.join(',')}]` : ''}}`;
}

function entry(fhirBase: string, type: string, id: string, content: string, extra: string): string {
  return `{"fullUrl":${JSON.stringify(`${fhirBase}/${type}/${id}`)},"resource":${content},${extra}}`;
}
