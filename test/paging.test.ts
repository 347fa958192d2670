/**
 * Paging through search results and type history: following `next` links visits every
 * match exactly once, `previous` links return the same pages, links are absolute and carry
 * only the query and a cursor, and a walk stays exact while other clients write.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestServer } from './support/server.js';
import type { TestServer } from './support/server.js';

const CATEGORY = 'http://carethread.example/CodeSystem/message-category';
const BASE_TIME = Date.UTC(2024, 0, 1);

let server: TestServer;
/** The latest version of every Communication this file wrote, for the history walk. */
const versions = new Map<string, number>();

beforeAll(async () => {
  server = await startTestServer();
  await putAll([
    { resourceType: 'Practitioner', id: 'pr-inbox', name: [{ family: 'Inbox' }] },
    { resourceType: 'Practitioner', id: 'pr-other', name: [{ family: 'Other' }] },
    { resourceType: 'Patient', id: 'pat-1', name: [{ family: 'Paging' }] },
    communication('thread-1', { status: 'in-progress', recipient: [{ reference: 'Practitioner/pr-inbox' }] }),
  ]);
  // 25 messages in one thread to pr-inbox: pairs share a sent time (so page boundaries fall
  // inside ties) and two have none. Five more to someone else are noise.
  const inbox = Array.from({ length: 25 }, (_, i) =>
    communication(inboxId(i), {
      category: [{ coding: [{ system: CATEGORY, code: 'paging-inbox' }] }],
      recipient: [{ reference: 'Practitioner/pr-inbox' }],
      partOf: [{ reference: 'Communication/thread-1' }],
      ...(i >= 2 ? { sent: hoursAfterBase(Math.floor(i / 2)) } : {}),
    })
  );
  const noise = Array.from({ length: 5 }, (_, i) =>
    communication(`noise-${pad(i)}`, { recipient: [{ reference: 'Practitioner/pr-other' }], sent: hoursAfterBase(i) })
  );
  await putAll([...inbox, ...noise]);
});

afterAll(async () => {
  await server?.stop({ dropDatabase: true });
});

// ---- helpers ----------------------------------------------------------------------------

function pad(i: number): string {
  return String(i).padStart(2, '0');
}

function inboxId(i: number): string {
  return `inbox-${pad(i)}`;
}

function hoursAfterBase(hours: number): string {
  return new Date(BASE_TIME + hours * 3_600_000).toISOString();
}

function communication(id: string, fields: Record<string, unknown>): Record<string, unknown> {
  return {
    resourceType: 'Communication',
    id,
    status: 'completed',
    subject: { reference: 'Patient/pat-1' },
    payload: [{ contentString: `SECRET-TEXT-${id}` }],
    ...fields,
  };
}

async function putAll(resources: Record<string, unknown>[]): Promise<void> {
  const res = await server.request
    .post('/fhir')
    .set('content-type', 'application/fhir+json')
    .send({
      resourceType: 'Bundle',
      type: 'transaction',
      entry: resources.map((resource) => ({ resource, request: { method: 'PUT', url: `${resource.resourceType}/${resource.id}` } })),
    });
  expect(res.status, JSON.stringify(res.body)).toBe(200);
  for (const resource of resources) {
    if (resource.resourceType === 'Communication') {
      versions.set(resource.id as string, (versions.get(resource.id as string) ?? 0) + 1);
    }
  }
}

interface Link {
  relation: string;
  url: string;
}

interface Page {
  ids: string[];
  links: Link[];
  url: string;
}

/** Fetches an absolute link URL of this server. */
async function fetchPage(url: string): Promise<Page> {
  expect(url.startsWith(`${server.fhirBase}/`), url).toBe(true);
  const res = await server.request.get(url.slice(server.baseUrl.length));
  expect(res.status, `${url}: ${JSON.stringify(res.body)}`).toBe(200);
  const entries = (res.body.entry ?? []) as { resource: { id: string }; search?: { mode: string } }[];
  return { ids: entries.map((e) => e.resource.id), links: res.body.link, url };
}

function link(page: Page, relation: string): string | undefined {
  return page.links.find((l) => l.relation === relation)?.url;
}

/** Follows `next` links from the first page to the end; `between` runs after each page. */
async function walkForward(query: string, between?: (page: Page, index: number) => Promise<void>): Promise<Page[]> {
  const pages: Page[] = [];
  let url: string | undefined = `${server.fhirBase}/${query}`;
  while (url) {
    const page = await fetchPage(url);
    pages.push(page);
    expect(pages.length, 'the walk does not end').toBeLessThan(50);
    await between?.(page, pages.length - 1);
    url = link(page, 'next');
  }
  return pages;
}

/** Every sort of message in the inbox fixture, in `_sort=-sent` order (no sent first). */
function inboxOrderNewestFirst(): string[] {
  const ids = Array.from({ length: 25 }, (_, i) => i);
  const sent = (i: number) => (i >= 2 ? Math.floor(i / 2) : Infinity);
  return ids.sort((a, b) => sent(b) - sent(a) || b - a).map(inboxId);
}

function expectEachOnce(ids: string[], expected: string[]): void {
  expect(new Set(ids).size, `duplicates in ${ids.join(',')}`).toBe(ids.length);
  expect([...ids].sort()).toEqual([...expected].sort());
}

/** The link carries the query as sent plus a cursor naming a boundary row — nothing else. */
function expectLinkShape(url: string, query: string, pageIds: string[], relation: string): void {
  expect(url.startsWith(`${server.fhirBase}/Communication?`), url).toBe(true);
  expect(url).not.toContain('SECRET-TEXT');
  expect(url).not.toContain('2024');
  const params = [...new URL(url).searchParams];
  const original = [...new URLSearchParams(query.slice(query.indexOf('?') + 1))];
  expect(params.filter(([name]) => name !== '_cursor')).toEqual(original);
  const cursors = params.filter(([name]) => name === '_cursor').map(([, value]) => value);
  if (relation === 'self') {
    expect(cursors.length).toBeLessThanOrEqual(1);
    return;
  }
  expect(cursors).toHaveLength(1);
  const boundary = relation === 'next' ? `after:${pageIds[pageIds.length - 1]}` : `before:${pageIds[0]}`;
  expect(cursors[0]).toBe(boundary);
}

// ---- walks over a fixed dataset ---------------------------------------------------------

// The inbox and thread searches are served by the sorted index tables; the category search
// by the generic path. All must page the same way.
const walks = [
  { name: 'provider inbox', query: 'Communication?recipient=Practitioner/pr-inbox&sent:missing=false&_sort=-sent&_count=10', order: () => inboxOrderNewestFirst().filter((id) => id !== 'inbox-00' && id !== 'inbox-01') },
  { name: 'provider inbox with undated messages', query: 'Communication?recipient=Practitioner/pr-inbox&_sort=-sent&_count=10', order: () => [...inboxOrderNewestFirst(), 'thread-1'].sort(newestFirstWithThread) },
  { name: 'thread, oldest first', query: 'Communication?part-of=Communication/thread-1&_sort=sent&_count=10', order: () => [...inboxOrderNewestFirst()].reverse() },
  { name: 'category (generic path)', query: `Communication?category=${encodeURIComponent(`${CATEGORY}|paging-inbox`)}&_sort=-sent&_count=10`, order: inboxOrderNewestFirst },
  { name: 'two sort keys', query: `Communication?category=paging-inbox&_sort=-sent,_id&_count=7`, order: () => inboxOrderNewestFirstIdAscending() },
];

/** thread-1 has no sent time, like inbox-00/01; among them ids descend. */
function newestFirstWithThread(a: string, b: string): number {
  const order = inboxOrderNewestFirst();
  const undated = ['thread-1', 'inbox-01', 'inbox-00'];
  const rank = (id: string) => (undated.includes(id) ? undated.indexOf(id) : 3 + order.indexOf(id));
  return rank(a) - rank(b);
}

function inboxOrderNewestFirstIdAscending(): string[] {
  const ids = Array.from({ length: 25 }, (_, i) => i);
  const sent = (i: number) => (i >= 2 ? Math.floor(i / 2) : Infinity);
  return ids.sort((a, b) => sent(b) - sent(a) || a - b).map(inboxId);
}

describe.each(walks)('paging the $name', ({ query, order }) => {
  let pages: Page[];

  beforeAll(async () => {
    pages = await walkForward(query);
  });

  it('visits every match exactly once, in sort order', () => {
    const visited = pages.flatMap((p) => p.ids);
    expect(visited).toEqual(order());
    const pageSize = Number(/_count=(\d+)/.exec(query)![1]);
    for (const page of pages.slice(0, -1)) {
      expect(page.ids).toHaveLength(pageSize);
    }
    expect(link(pages[pages.length - 1], 'next')).toBeUndefined();
  });

  it('previous links go back through the same pages', async () => {
    let page = pages[pages.length - 1];
    for (let i = pages.length - 2; i >= 0; i--) {
      const previous = link(page, 'previous');
      expect(previous, `page ${i + 1} has a previous link`).toBeDefined();
      page = await fetchPage(previous!);
      expect(page.ids).toEqual(pages[i].ids);
      // And from there, next leads forward to the page we came from.
      expect((await fetchPage(link(page, 'next')!)).ids).toEqual(pages[i + 1].ids);
    }
    expect(link(page, 'previous')).toBeUndefined();
    expect(link(pages[0], 'previous')).toBeUndefined();
  });

  it('links are absolute URLs under the FHIR base that carry the query and a cursor only', () => {
    for (const page of pages) {
      for (const { relation, url } of page.links) {
        expect(['self', 'next', 'previous']).toContain(relation);
        expectLinkShape(url, query, page.ids, relation);
      }
      const self = new URL(link(page, 'self')!);
      const fetched = new URL(page.url);
      expect(self.pathname).toBe(fetched.pathname);
      expect([...self.searchParams]).toEqual([...fetched.searchParams]);
    }
  });
});

// ---- walks while others write -----------------------------------------------------------

/**
 * Seeds 25 messages for `label` (sent one minute apart), walks them newest first ten at a
 * time, and writes between pages: new messages that sort before the cursor (already passed:
 * must not appear), after it (still ahead: must appear once), ties with the cursor on either
 * side, and updates of visited and unvisited messages.
 */
async function walkWhileWriting(label: string, query: (recipient: string) => string) {
  const recipient = `Practitioner/pr-${label}`;
  const minute = (m: number) => new Date(BASE_TIME + m * 60_000).toISOString();
  const message = (id: string, sent: string, text = id) =>
    communication(id, {
      category: [{ coding: [{ system: CATEGORY, code: `busy-${label}` }] }],
      recipient: [{ reference: recipient }],
      sent,
      payload: [{ contentString: `SECRET-TEXT-${text}` }],
    });
  const id = (i: number) => `${label}-${pad(i)}`;
  const sentOf = (i: number) => minute(100 + i);
  await putAll([{ resourceType: 'Practitioner', id: `pr-${label}`, name: [{ family: label }] }]);
  await putAll(Array.from({ length: 25 }, (_, i) => message(id(i), sentOf(i))));
  const originals = Array.from({ length: 25 }, (_, i) => id(i));

  const pages = await walkForward(query(recipient), async (page, index) => {
    const cursor = page.ids[page.ids.length - 1];
    const cursorIndex = Number(cursor.slice(label.length + 1));
    if (index === 0) {
      await putAll([
        message(`${label}-newest`, minute(10_000)), // before the cursor: already passed
        message(`${label}-oldest`, minute(0)), // after the cursor: still ahead
        message(`${cursor}x`, sentOf(cursorIndex)), // tie, larger id: before the cursor
        message(`${id(cursorIndex - 1)}x`, sentOf(cursorIndex - 1)), // ahead, between originals
        message(id(24), sentOf(24), 'edited'), // a visited message changes
        message(id(3), sentOf(3), 'edited'), // a message still ahead changes
      ]);
    } else if (index === 1) {
      await putAll([message(`${label}-later`, minute(50)), message(`${label}-newer`, minute(9_000))]);
    }
  });
  return { pages, originals, visited: pages.flatMap((p) => p.ids) };
}

describe('paging while others write', () => {
  for (const [name, query] of [
    // One typed reference and one date sort key: the sorted index table serves it.
    ['busyidx', (recipient: string) => `Communication?recipient=${recipient}&_sort=-sent&_count=10`],
    // A token filter: the generic path over the resource table.
    ['busygen', () => `Communication?category=busy-busygen&_sort=-sent&_count=10`],
  ] as const) {
    it(`returns each original match exactly once, and only new matches still ahead (${name})`, async () => {
      const { visited, originals, pages } = await walkWhileWriting(name, query);
      const firstPageCursor = pages[0].ids[9];
      const cursorIndex = Number(firstPageCursor.slice(name.length + 1));
      const aheadTie = `${name}-${pad(cursorIndex - 1)}x`;
      expectEachOnce(visited, [...originals, `${name}-oldest`, `${name}-later`, aheadTie]);
      expect(visited).not.toContain(`${firstPageCursor}x`);
      expect(visited).not.toContain(`${name}-newest`);
      expect(visited).not.toContain(`${name}-newer`);
      // Still in sort order: the walk is one consistent ordering, not a shuffle.
      expect(visited.slice(-2)).toEqual([`${name}-later`, `${name}-oldest`]);
      expect(visited.indexOf(aheadTie)).toBe(visited.indexOf(`${name}-${pad(cursorIndex - 1)}`) - 1);
    });
  }
});

// ---- history ----------------------------------------------------------------------------

describe('type history paging', () => {
  it('returns every version exactly once, and not versions written during the walk', async () => {
    // Give a few resources more versions first.
    await putAll([
      communication(inboxId(5), { recipient: [{ reference: 'Practitioner/pr-inbox' }], sent: hoursAfterBase(40) }),
      communication(inboxId(6), { recipient: [{ reference: 'Practitioner/pr-inbox' }], sent: hoursAfterBase(41) }),
    ]);
    const deleted = await server.request.delete(`/fhir/Communication/${inboxId(7)}`);
    expect(deleted.status).toBe(204);
    versions.set(inboxId(7), versions.get(inboxId(7))! + 1);
    const expected = [...versions].flatMap(([id, latest]) => Array.from({ length: latest }, (_, v) => `${id}/${v + 1}`));

    const seen: string[] = [];
    let url: string | undefined = `${server.fhirBase}/Communication/_history?_count=5`;
    let pagesFetched = 0;
    while (url) {
      expect(url.startsWith(`${server.fhirBase}/Communication/_history?`), url).toBe(true);
      const res = await server.request.get(url.slice(server.baseUrl.length));
      expect(res.status).toBe(200);
      expect(res.body.type).toBe('history');
      const entries = (res.body.entry ?? []) as { fullUrl: string; response: { etag: string } }[];
      expect(entries.length).toBeLessThanOrEqual(5);
      for (const entry of entries) {
        const entryId = entry.fullUrl.split('/').pop();
        seen.push(`${entryId}/${/W\/"(\d+)"/.exec(entry.response.etag)![1]}`);
      }
      if (pagesFetched++ === 0) {
        // Written after the walk began: newer than its start, so not part of it.
        await server.request
          .put(`/fhir/Communication/${inboxId(8)}`)
          .set('content-type', 'application/fhir+json')
          .send(communication(inboxId(8), { recipient: [{ reference: 'Practitioner/pr-inbox' }] }))
          .expect(200);
      }
      const next: string | undefined = (res.body.link as Link[]).find((l) => l.relation === 'next')?.url;
      expect(next ?? '').not.toContain('SECRET-TEXT');
      url = next;
    }
    expect(pagesFetched).toBe(Math.ceil(expected.length / 5));
    expectEachOnce(seen, expected);
  });
});
