/**
 * The searches every screen runs (a provider's inbox, a thread, a patient's messages, a
 * read by id) must be answered from an index, never by scanning the Communication table.
 * Checked with EXPLAIN on PostgreSQL over a few thousand messages, using the same SQL the
 * search executes (`buildPageQuery`). PGlite plans the same way but is not what we deploy.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildPageQuery } from '../fhir/search/execute.js';
import { testEngine } from './support/database.js';
import { startTestServer } from './support/server.js';
import type { TestServer } from './support/server.js';

const MESSAGES = 3000;
const PRACTITIONERS = 5;
const THREADS = 30;
const PATIENTS = 20;
const BASE_TIME = Date.UTC(2024, 0, 1);

interface PlanNode {
  'Node Type': string;
  'Relation Name'?: string;
  'Index Name'?: string;
  Plans?: PlanNode[];
}

function nodes(plan: PlanNode): PlanNode[] {
  return [plan, ...(plan.Plans ?? []).flatMap(nodes)];
}

describe.skipIf(testEngine !== 'postgres')('query plans of the hot searches (PostgreSQL)', () => {
  let server: TestServer;

  beforeAll(async () => {
    server = await startTestServer();
    for (let start = 0; start < MESSAGES; start += 1000) {
      const entry = Array.from({ length: Math.min(1000, MESSAGES - start) }, (_, k) => {
        const i = start + k;
        const id = `c-${String(i).padStart(5, '0')}`;
        const resource = {
          resourceType: 'Communication',
          id,
          status: 'completed',
          subject: { reference: `Patient/p-${i % PATIENTS}` },
          recipient: [{ reference: `Practitioner/pr-${i % PRACTITIONERS}` }],
          partOf: [{ reference: `Communication/t-${i % THREADS}` }],
          sent: new Date(BASE_TIME + i * 60_000).toISOString(),
          payload: [{ contentString: `message ${i}` }],
        };
        return { resource, request: { method: 'PUT', url: `Communication/${id}` } };
      });
      const res = await server.request
        .post('/fhir')
        .set('content-type', 'application/fhir+json')
        .send({ resourceType: 'Bundle', type: 'transaction', entry });
      expect(res.status, JSON.stringify(res.body).slice(0, 500)).toBe(200);
    }
    await server.app.db.query('ANALYZE');
  }, 120_000);

  afterAll(async () => {
    await server?.stop({ dropDatabase: true });
  });

  async function planOf(sql: string, params: readonly unknown[]): Promise<PlanNode[]> {
    const rows = await server.app.db.query<{ 'QUERY PLAN': [{ Plan: PlanNode }] }>(`EXPLAIN (FORMAT JSON) ${sql}`, params);
    return nodes(rows[0]['QUERY PLAN'][0].Plan);
  }

  async function searchPlan(query: string): Promise<PlanNode[]> {
    const request = server.app.store.parseSearch('Communication', [...new URLSearchParams(query)] as [string, string][], false);
    const { sql, params } = buildPageQuery(request);
    return planOf(sql, params);
  }

  function describePlan(plan: PlanNode[]): string {
    return plan.map((n) => `${n['Node Type']}${n['Relation Name'] ? ` on ${n['Relation Name']}` : ''}${n['Index Name'] ? ` using ${n['Index Name']}` : ''}`).join(' / ');
  }

  /** No sequential scan of the Communication table or its index tables; an index is used. */
  function expectIndexed(plan: PlanNode[]): void {
    const scans = plan.filter((n) => n['Node Type'] === 'Seq Scan' && n['Relation Name']?.startsWith('Communication'));
    expect(scans, describePlan(plan)).toEqual([]);
    expect(plan.some((n) => /Index/.test(n['Node Type'])), describePlan(plan)).toBe(true);
  }

  /** Served in index order: the page is read, not sorted. */
  function expectNoSort(plan: PlanNode[]): void {
    expect(plan.filter((n) => /Sort/.test(n['Node Type'])), describePlan(plan)).toEqual([]);
  }

  it('provider inbox: first page and a later page come from an index, unsorted', async () => {
    const first = await searchPlan('recipient=Practitioner/pr-2&_sort=-sent&_count=20');
    expectIndexed(first);
    expectNoSort(first);
    const later = await searchPlan('recipient=Practitioner/pr-2&_sort=-sent&_count=20&_cursor=after:c-01002');
    expectIndexed(later);
    expectNoSort(later);
  });

  it('thread: first page and a later page come from an index, unsorted', async () => {
    const first = await searchPlan('part-of=Communication/t-12&_sort=sent&_count=20');
    expectIndexed(first);
    expectNoSort(first);
    const later = await searchPlan('part-of=Communication/t-12&_sort=sent&_count=20&_cursor=after:c-00912');
    expectIndexed(later);
    expectNoSort(later);
  });

  it('a later page of the inbox reads only its own index entries, not those of earlier pages', async () => {
    // Walk a few pages in, then measure what the next page's query actually reads.
    let cursor: string | undefined;
    for (let page = 0; page < 5; page++) {
      const query: [string, string][] = [['recipient', 'Practitioner/pr-2'], ['_sort', '-sent'], ['_count', '20']];
      if (cursor) query.push(['_cursor', cursor]);
      const res = await server.request.get(`/fhir/Communication?${new URLSearchParams(query)}`);
      const next = res.body.link.find((l: { relation: string }) => l.relation === 'next')?.url as string;
      cursor = new URL(next).searchParams.get('_cursor')!;
    }
    const request = server.app.store.parseSearch(
      'Communication',
      [['recipient', 'Practitioner/pr-2'], ['_sort', '-sent'], ['_count', '20'], ['_cursor', cursor!]],
      false
    );
    const id = cursor!.split(':')[1];
    const [{ sort }] = await server.app.db.query<{ sort: string }>('SELECT d_sent_lo AS sort FROM "Communication" WHERE id = $1', [id]);
    const { sql, params } = buildPageQuery(request, undefined, sort);
    const rows = await server.app.db.query<{ 'QUERY PLAN': [{ Plan: PlanNode }] }>(`EXPLAIN (ANALYZE, FORMAT JSON) ${sql}`, params);
    const scan = nodes(rows[0]['QUERY PLAN'][0].Plan).find((n) => n['Relation Name'] === 'Communication_by_recipient_sent');
    expect(scan, 'the sorted index table is scanned').toBeDefined();
    // One page plus the look-ahead row, not the 100 entries of the pages before it.
    expect((scan as PlanNode & { 'Actual Rows': number })['Actual Rows']).toBeLessThanOrEqual(21);
  });

  it("patient's messages come from an index, unsorted", async () => {
    const plan = await searchPlan('subject=Patient/p-7&_sort=-sent&_count=20');
    expectIndexed(plan);
    expectNoSort(plan);
  });

  it('read by id and _id search use the primary key', async () => {
    // The statement ResourceStore.read runs.
    expectIndexed(await planOf('SELECT version, last_updated, deleted, content, compartments FROM "Communication" WHERE id = $1', ['c-01234']));
    expectIndexed(await searchPlan('_id=c-01234'));
  });

  it('the searches return what the plans were checked for', async () => {
    const inbox = await server.request.get('/fhir/Communication?recipient=Practitioner/pr-2&_sort=-sent&_count=20');
    expect(inbox.status).toBe(200);
    const ids = (inbox.body.entry as { resource: { id: string } }[]).map((e) => e.resource.id);
    // Messages to pr-2 are every 5th, newest (largest index) first.
    const expected = Array.from({ length: 20 }, (_, k) => `c-${String(2997 - 5 * k).padStart(5, '0')}`);
    expect(ids).toEqual(expected);
  });
});
