/**
 * The SQL behind each hot request and how PostgreSQL runs it, for the identity that sends
 * it. A search's page query comes from the search code itself (`parseSearch` +
 * `buildPageQuery`, under the caller's confinement); every interaction is also run through
 * the real store (or `Inbox`, or `Messaging` for a create, rolled back) with a recording
 * handle, which counts the statements it sends and confirms the page query is the one
 * explained. Each is run under EXPLAIN (ANALYZE, BUFFERS) for a few random picks.
 */
import type { Database, Queryable } from '../../fhir/index.js';
import { Inbox } from '../../fhir/messaging/index.js';
import { buildPageQuery } from '../../fhir/search/execute.js';
import { AccessGuard } from '../../fhir/store/guard.js';
import type { AppContext } from '../../server/context.js';
import { contextOf } from './identities.js';
import type { Tokens } from './identities.js';
import type { LoadData, ScenarioName } from './scenarios.js';
import { SCENARIOS } from './scenarios.js';

export interface CapturedStatement {
  sql: string;
  params: readonly unknown[];
}

export interface PlanSummary {
  scenario: ScenarioName;
  /** The statement explained (the page query for searches). */
  sql: string;
  /** Statements the interaction sends in all. */
  statements: number;
  /** Whether the store sent exactly the statement explained (false would mean a scope or rewrite). */
  matchesStore: boolean;
  /** Plan shape, outermost node first. */
  plan: string;
  indexes: string[];
  usesIndex: boolean;
  seqScans: string[];
  /** Execution times (ms) of the samples, sorted. */
  executionMs: number[];
  planningMs: number[];
  /** Heap/index rows the plan touched, largest over the samples. */
  rowsVisited: number;
}

export interface CreateStatements {
  statements: number;
  summary: string[];
}

interface PlanNode {
  'Node Type': string;
  'Relation Name'?: string;
  'Index Name'?: string;
  'Actual Rows'?: number;
  'Actual Loops'?: number;
  'Sort Method'?: string;
  'Rows Removed by Filter'?: number;
  'Rows Removed by Index Recheck'?: number;
  Plans?: PlanNode[];
}

/** A transaction handle that records every statement before passing it on. */
function recording(target: Queryable): { tx: Queryable; statements: CapturedStatement[] } {
  const statements: CapturedStatement[] = [];
  return {
    statements,
    tx: {
      query(sql, params) {
        statements.push({ sql, params: params ?? [] });
        return target.query(sql, params);
      },
    },
  };
}

/**
 * One request of the scenario, as the identity that would send it: the statement to explain
 * (a search's page query from `buildPageQuery` under the caller's confinement, the read's
 * own statement, the `$inbox` query) and every statement the store sent for it.
 */
async function hotStatement(
  app: AppContext,
  scenario: ScenarioName,
  data: LoadData,
  tokens: Tokens,
  random: () => number
): Promise<{ explained: CapturedStatement; sent: CapturedStatement[] }> {
  const request = SCENARIOS[scenario].request(data, tokens, random, 0);
  const ctx = await contextOf(app, request.headers.authorization.replace(/^Bearer /, ''), 'bench-explain');
  const url = new URL(request.path, 'http://bench');
  const [, , type, id] = url.pathname.split('/');
  const recorder = recording(app.db);
  if (id === '$inbox') {
    const inbox = new Inbox(recordingDatabase(app.db, recorder.statements), app.store, app.audit);
    await inbox.threadsFor(ctx, url.searchParams.get('practitioner')!, { count: Number(url.searchParams.get('_count')) });
    return { explained: recorder.statements[recorder.statements.length - 1], sent: recorder.statements };
  }
  if (id) {
    await app.store.read(ctx, type, id, { tx: recorder.tx });
    return { explained: recorder.statements[0], sent: recorder.statements };
  }
  const search = app.store.parseSearch(type, [...url.searchParams] as [string, string][], false);
  const { sql, params } = buildPageQuery(search, new AccessGuard(app.fhirBase).searchScope(ctx));
  await app.store.search(ctx, search, { tx: recorder.tx });
  return { explained: { sql, params }, sent: recorder.statements };
}

export async function explainHotQueries(app: AppContext, data: LoadData, tokens: Tokens, samples = 5): Promise<PlanSummary[]> {
  const summaries: PlanSummary[] = [];
  let seed = 1;
  const random = () => {
    seed = (seed * 16807) % 2147483647;
    return seed / 2147483647;
  };
  for (const scenario of ['read', 'inbox', 'thread', 'inbox-threads'] as ScenarioName[]) {
    let summary: PlanSummary | undefined;
    for (let i = 0; i < samples; i++) {
      const { explained: page, sent } = await hotStatement(app, scenario, data, tokens, random);
      const [row] = await app.db.query<{ 'QUERY PLAN': unknown }>(`EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) ${page.sql}`, page.params);
      const explained = (typeof row['QUERY PLAN'] === 'string' ? JSON.parse(row['QUERY PLAN']) : row['QUERY PLAN']) as {
        Plan: PlanNode;
        'Execution Time': number;
        'Planning Time': number;
      }[];
      const { Plan: plan, 'Execution Time': execution, 'Planning Time': planning } = explained[0];
      const nodes = flatten(plan);
      summary ??= {
        scenario,
        sql: page.sql,
        statements: sent.length,
        matchesStore: sent.some((statement) => statement.sql === page.sql && JSON.stringify(statement.params) === JSON.stringify(page.params)),
        plan: describe(plan),
        indexes: [...new Set(nodes.map((n) => n['Index Name']).filter((n): n is string => Boolean(n)))],
        usesIndex: nodes.some((n) => /Index/.test(n['Node Type'])),
        seqScans: [...new Set(nodes.filter((n) => n['Node Type'] === 'Seq Scan').map((n) => n['Relation Name'] ?? '?'))],
        executionMs: [],
        planningMs: [],
        rowsVisited: 0,
      };
      summary.executionMs.push(execution);
      summary.planningMs.push(planning);
      summary.rowsVisited = Math.max(summary.rowsVisited, rowsVisited(nodes));
    }
    summary!.executionMs.sort((a, b) => a - b);
    summary!.planningMs.sort((a, b) => a - b);
    summaries.push(summary!);
  }
  return summaries;
}

/** The statements one create sends (captured inside a transaction that is rolled back). */
export async function captureCreate(app: AppContext, data: LoadData, tokens: Tokens): Promise<CreateStatements> {
  const request = SCENARIOS.create.request(data, tokens, Math.random, 0);
  const ctx = await contextOf(app, request.headers.authorization.replace(/^Bearer /, ''), 'bench-explain');
  let captured: CapturedStatement[] = [];
  const rollback = new Error('rollback');
  await app.db
    .transaction(async (tx) => {
      const recorder = recording(tx);
      await app.messaging.create(ctx, JSON.parse(request.body!), { tx: recorder.tx });
      captured = recorder.statements;
      throw rollback;
    })
    .catch((err: unknown) => {
      if (err !== rollback) {
        throw err;
      }
    });
  return {
    statements: captured.length,
    summary: captured.map((s) => s.sql.replace(/\s+/g, ' ').slice(0, 100)),
  };
}

/** The database with every statement recorded (for code that takes a Database, not a handle). */
function recordingDatabase(db: Database, statements: CapturedStatement[]): Database {
  return {
    ...db,
    query(sql, params) {
      statements.push({ sql, params: params ?? [] });
      return db.query(sql, params);
    },
  };
}

function flatten(node: PlanNode): PlanNode[] {
  return [node, ...(node.Plans ?? []).flatMap(flatten)];
}

function rowsVisited(nodes: PlanNode[]): number {
  return nodes
    .filter((n) => /Scan/.test(n['Node Type']) && !/Bitmap Index/.test(n['Node Type']))
    .reduce((sum, n) => sum + ((n['Actual Rows'] ?? 0) + (n['Rows Removed by Filter'] ?? 0) + (n['Rows Removed by Index Recheck'] ?? 0)) * (n['Actual Loops'] ?? 1), 0);
}

/** `Limit > Sort (top-N heapsort) > Bitmap Heap Scan on Communication > Bitmap Index Scan using Communication_r_recipient` */
function describe(node: PlanNode): string {
  let text = node['Node Type'];
  if (node['Sort Method']) {
    text += ` (${node['Sort Method']})`;
  }
  if (node['Index Name']) {
    text += ` using ${node['Index Name']}`;
  } else if (node['Relation Name']) {
    text += ` on ${node['Relation Name']}`;
  }
  text += ` [rows ${node['Actual Rows'] ?? '?'}${node['Rows Removed by Filter'] ? `, filtered ${node['Rows Removed by Filter']}` : ''}]`;
  const children = (node.Plans ?? []).map(describe);
  if (!children.length) {
    return text;
  }
  return children.length === 1 ? `${text} > ${children[0]}` : `${text} > (${children.join(' ; ')})`;
}
