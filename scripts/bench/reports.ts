/**
 * `npm run bench -- reports` (or `npm run bench:reports`): the engagement reports over a
 * large practice on PostgreSQL (issue 5): 100,000 patients, 50 EPs, 300,000 encounters,
 * 1,000,000 messages and 200,000 portal events, loaded with bulk SQL
 * (reports-dataset.ts), then every 2014 EP measure for one EP and for all 50, through
 * MeasureEvaluator in-process (no HTTP; the counting is SQL, nothing is loaded into Node).
 * Targets: one EP's full report under 1 s, all 50 EPs under 10 s.
 *
 * Settings (BENCH_REPORTS_*): DATABASE_URL (dropped and recreated unless REUSE=1 finds the
 * same practice there), PATIENTS, EPS, ENCOUNTERS, MESSAGES, PORTAL_EVENTS, PERIOD
 * (start..end), ROUNDS, CONCURRENCY (of the extra parallel all-EP run), EXPLAIN=1 (query
 * plans of EP 1's measures). Writes `.bench/reports.json`.
 */
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import type { Resource } from '@medplum/fhirtypes';
import type { Database, Queryable } from '../../fhir/db/database.js';
import { MEASURES } from '../../fhir/measures/catalog.js';
import { MeasureEvaluator } from '../../fhir/measures/evaluate.js';
import type { Evaluated } from '../../fhir/measures/evaluate.js';
import { typeCatalog } from '../../fhir/search/catalog.js';
import { indexResource } from '../../fhir/store/rows.js';
import { loadConfig } from '../../server/config.js';
import { AppContext, SOFTWARE_VERSION } from '../../server/context.js';
import { createLogger } from '../../server/logger.js';
import { prepareDatabase } from './databases.js';
import { datasetStatements, dropIndexes, epReference, LOADED_TABLES } from './reports-dataset.js';
import type { ReportDatasetSize } from './reports-dataset.js';
import { describeMachine } from './report.js';
import { SettingError } from './settings.js';

const RESULTS = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '.bench', 'reports.json');
const YEAR = '2014';
const TARGET_ONE_EP_MS = 1000;
const TARGET_ALL_EPS_MS = 10_000;

interface ReportsSettings {
  databaseUrl: string;
  size: ReportDatasetSize;
  periodStart: string;
  periodEnd: string;
  rounds: number;
  concurrency: number;
  reuse: boolean;
  explain: boolean;
}

type Env = Record<string, string | undefined>;

function readSettings(env: Env): ReportsSettings {
  const value = (name: string) => env[name]?.trim() || undefined;
  const integer = (name: string, fallback: number, min: number, max: number) => {
    const raw = value(name);
    if (raw === undefined) {
      return fallback;
    }
    if (!/^\d+$/.test(raw) || Number(raw) < min || Number(raw) > max) {
      throw new SettingError(name, `must be a whole number from ${min} to ${max} (got "${raw}")`);
    }
    return Number(raw);
  };
  const flag = (name: string) => ['1', 'true'].includes(value(name) ?? '');
  const databaseUrl = value('BENCH_REPORTS_DATABASE_URL') ?? 'postgres://postgres@127.0.0.1:5432/carethread_bench_reports';
  if (!/^postgres(ql)?:\/\/.+\/[A-Za-z_][A-Za-z0-9_]*$/.test(databaseUrl.replace(/\?.*$/, ''))) {
    throw new SettingError('BENCH_REPORTS_DATABASE_URL', 'must be a postgres:// URL ending in a plain database name');
  }
  const period = value('BENCH_REPORTS_PERIOD') ?? '2014-01-01..2014-12-31';
  const match = /^(\d{4}-\d{2}-\d{2})\.\.(\d{4}-\d{2}-\d{2})$/.exec(period);
  if (!match || match[1] > match[2]) {
    throw new SettingError('BENCH_REPORTS_PERIOD', `must be start..end as YYYY-MM-DD..YYYY-MM-DD (got "${period}")`);
  }
  return {
    databaseUrl,
    size: {
      patients: integer('BENCH_REPORTS_PATIENTS', 100_000, 20, 10_000_000),
      eps: integer('BENCH_REPORTS_EPS', 50, 1, 10_000),
      encounters: integer('BENCH_REPORTS_ENCOUNTERS', 300_000, 1, 100_000_000),
      messages: integer('BENCH_REPORTS_MESSAGES', 1_000_000, 1, 100_000_000),
      portalEvents: integer('BENCH_REPORTS_PORTAL_EVENTS', 200_000, 1, 100_000_000),
    },
    periodStart: match[1],
    periodEnd: match[2],
    rounds: integer('BENCH_REPORTS_ROUNDS', 3, 1, 100),
    concurrency: integer('BENCH_REPORTS_CONCURRENCY', 4, 1, 64),
    reuse: flag('BENCH_REPORTS_REUSE'),
    explain: flag('BENCH_REPORTS_EXPLAIN'),
  };
}

const say = (text: string) => process.stdout.write(`${text}\n`);
const seconds = (since: number) => (performance.now() - since) / 1000;

/** Loads the practice unless REUSE finds the same one already there; returns the load time (0 when reused). */
async function loadPractice(settings: ReportsSettings): Promise<{ seconds: number; reused: boolean }> {
  if (settings.reuse) {
    const client = new pg.Client({ connectionString: settings.databaseUrl });
    const found = await client
      .connect()
      .then(() => client.query<{ size: ReportDatasetSize }>('SELECT size FROM bench_reports_dataset'))
      .then((r) => r.rows[0]?.size)
      .catch(() => undefined)
      .finally(() => client.end().catch(() => undefined));
    if (found && (Object.keys(settings.size) as (keyof ReportDatasetSize)[]).every((k) => found[k] === settings.size[k])) {
      say('Reusing the practice already loaded (BENCH_REPORTS_REUSE=1).');
      return { seconds: 0, reused: true };
    }
  }
  await prepareDatabase('postgres', settings.databaseUrl).then((db) => db.cleanup());
  // The schema comes from the real migrations: open (and close) the application once.
  const app = await AppContext.fromConfig(loadConfig({ DATABASE_URL: settings.databaseUrl, LOG_LEVEL: 'warn', DATA_DIR: '/nonexistent' }), { logger: createLogger('warn') });
  await app.close();

  const started = performance.now();
  const client = new pg.Client({ connectionString: settings.databaseUrl });
  await client.connect();
  try {
    await client.query(`SET synchronous_commit = off; SET maintenance_work_mem = '512MB'`);
    const tables = [...LOADED_TABLES, ...LOADED_TABLES.map((t) => `${t}_History`), 'Communication_by_recipient_sent', 'Communication_by_part_of_sent', 'Communication_by_subject_sent'];
    const indexes: string[] = [];
    for (const table of tables) {
      indexes.push(...(await dropIndexes(client, table)));
    }
    for (const { label, sql } of datasetStatements(settings.size)) {
      const t = performance.now();
      await client.query(sql);
      say(`  ${label}: ${seconds(t).toFixed(1)} s`);
    }
    const t = performance.now();
    for (const definition of indexes) {
      await client.query(definition);
    }
    say(`  ${indexes.length} indexes rebuilt: ${seconds(t).toFixed(1)} s`);
    const a = performance.now();
    await client.query('VACUUM ANALYZE');
    say(`  VACUUM ANALYZE: ${seconds(a).toFixed(1)} s`);
    await client.query('CREATE TABLE bench_reports_dataset (size jsonb NOT NULL)');
    await client.query('INSERT INTO bench_reports_dataset (size) VALUES ($1)', [JSON.stringify(settings.size)]);
  } finally {
    await client.end();
  }
  return { seconds: seconds(started), reused: false };
}

/**
 * The practice must look to the measures exactly as the store would have written it: for a
 * sample of every type, the search columns and compartments the store's own extractor
 * derives from the stored content must equal the bulk-loaded ones.
 */
async function checkRows(db: Queryable, fhirBase: string): Promise<number> {
  let checked = 0;
  for (const type of LOADED_TABLES) {
    const catalog = typeCatalog(type);
    const rows = await db.query(`SELECT * FROM "${type}" WHERE id LIKE 'b%' ORDER BY md5(id) LIMIT 200`);
    for (const row of rows) {
      const resource = JSON.parse(row.content) as Resource;
      const { values, compartments } = indexResource(catalog, resource, fhirBase);
      const expected: Record<string, unknown> = { compartments: compartments.length ? compartments : null };
      for (const [column, v] of values) {
        expected[column] = v ?? null;
      }
      for (const [column, want] of Object.entries(expected)) {
        if (normalize(row[column]) !== normalize(want)) {
          throw new Error(`${type}/${row.id}: column ${column} is ${JSON.stringify(row[column])}, the store would write ${JSON.stringify(want)}`);
        }
      }
      checked++;
    }
  }
  return checked;
}

function normalize(value: unknown): string {
  if (value === null || value === undefined) {
    return 'null';
  }
  if (Array.isArray(value)) {
    return JSON.stringify([...value].map(String).sort());
  }
  if (typeof value === 'string' && /^[-\d]{10}[ T][\d:.]+(Z|[+-]\d\d(:?\d\d)?)$/.test(value)) {
    return new Date(value.replace(' ', 'T').replace(/([+-]\d\d)$/, '$1:00')).toISOString();
  }
  return String(value);
}

interface Timed {
  ms: number;
  results: Evaluated[];
}

const EP_MEASURES = MEASURES.filter((m) => !m.hospital && m.thresholds[YEAR]).map((m) => `${m.id}-${YEAR}`);

/** One EP's full 2014 report, measure after measure as `$attestation` runs it. */
async function fullReport(evaluator: MeasureEvaluator, settings: ReportsSettings, ep: number, perMeasure?: Map<string, number[]>): Promise<Timed> {
  const started = performance.now();
  const results: Evaluated[] = [];
  for (const measureId of EP_MEASURES) {
    const t = performance.now();
    results.push(
      await evaluator.evaluate({ measureId, practitioner: epReference(ep), organization: 'Organization/bench-practice', periodStart: settings.periodStart, periodEnd: settings.periodEnd, reportType: 'summary' })
    );
    if (perMeasure) {
      perMeasure.set(measureId, [...(perMeasure.get(measureId) ?? []), performance.now() - t]);
    }
  }
  return { ms: performance.now() - started, results };
}

async function allEps(evaluator: MeasureEvaluator, settings: ReportsSettings, concurrency: number, perMeasure?: Map<string, number[]>): Promise<number> {
  const started = performance.now();
  let next = 1;
  const worker = async () => {
    while (next <= settings.size.eps) {
      await fullReport(evaluator, settings, next++, perMeasure);
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, settings.size.eps) }, worker));
  return performance.now() - started;
}

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];
const fmt = (ms: number) => (ms >= 1000 ? `${(ms / 1000).toFixed(2)} s` : `${ms.toFixed(0)} ms`);

/** EXPLAIN ANALYZE of the counting statement behind each of EP 1's measures. */
async function explainMeasures(app: AppContext, settings: ReportsSettings): Promise<void> {
  const captured: { sql: string; params?: readonly unknown[] }[] = [];
  const record = (q: Queryable): Queryable => ({
    query: (sql, params) => {
      if (sql.startsWith('WITH days')) {
        captured.push({ sql, params });
      }
      return q.query(sql, params);
    },
  });
  const recording: Database = { ...app.db, query: record(app.db).query, transaction: (fn) => app.db.transaction((tx) => fn(record(tx))) };
  const evaluator = new MeasureEvaluator(recording, app.store, { name: 'CareThread', version: SOFTWARE_VERSION });
  await fullReport(evaluator, settings, 1);
  for (const [i, { sql, params }] of captured.entries()) {
    // As the evaluator runs it: without JIT.
    const plan = await app.db.transaction(async (tx) => {
      await tx.query('SET LOCAL jit = off');
      return tx.query<{ 'QUERY PLAN': string }>(`EXPLAIN (ANALYZE, BUFFERS) ${sql}`, params);
    });
    say(`\n--- ${EP_MEASURES[i]} ---\n${plan.map((r) => r['QUERY PLAN']).join('\n')}`);
  }
}

export async function runReportsBench(env: Env = process.env): Promise<void> {
  const settings = readSettings(env);
  const machine = describeMachine();
  say(
    `CareThread engagement-report benchmark on ${machine.cores} × ${machine.cpuModel}, ${machine.memoryGiB} GiB, Node ${machine.node}; load average at start ${machine.loadAverageAtStart.join(' / ')}`
  );
  const { size } = settings;
  say(
    `Practice: ${size.patients.toLocaleString('en-US')} patients, ${size.eps} EPs, ${size.encounters.toLocaleString('en-US')} encounters, ` +
      `${size.messages.toLocaleString('en-US')} messages, ${size.portalEvents.toLocaleString('en-US')} portal events (2012–2014), on ${settings.databaseUrl.replace(/\/\/[^@]*@/, '//')}`
  );
  const load = await loadPractice(settings);
  if (!load.reused) {
    say(`Loaded in ${load.seconds.toFixed(1)} s.`);
  }

  const app = await AppContext.fromConfig(loadConfig({ DATABASE_URL: settings.databaseUrl, LOG_LEVEL: 'warn', DATA_DIR: '/nonexistent', DATABASE_POOL_SIZE: String(Math.max(4, settings.concurrency)) }), {
    logger: createLogger('warn'),
  });
  try {
    const [{ version }] = await app.db.query<{ version: string }>('SELECT version()');
    const checked = await checkRows(app.db, app.fhirBase);
    say(`Checked ${checked} sampled rows: their search columns are what the store would write.`);
    const evaluator = new MeasureEvaluator(app.db, app.store, { name: 'CareThread', version: SOFTWARE_VERSION });
    say(`\nAll ${EP_MEASURES.length} ${YEAR} EP measures (${EP_MEASURES.join(', ')}), period ${settings.periodStart}..${settings.periodEnd}:`);

    const cold = await fullReport(evaluator, settings, 1);
    const oneEp: number[] = [];
    for (let round = 0; round < settings.rounds; round++) {
      oneEp.push((await fullReport(evaluator, settings, 1 + ((round + 1) % size.eps))).ms);
    }
    const perMeasure = new Map<string, number[]>();
    const sequential: number[] = [];
    for (let round = 0; round < settings.rounds; round++) {
      sequential.push(await allEps(evaluator, settings, 1, round === 0 ? perMeasure : undefined));
    }
    const parallel = settings.concurrency > 1 ? await allEps(evaluator, settings, settings.concurrency) : undefined;

    const figures = {
      oneEpColdMs: cold.ms,
      oneEpMedianMs: median(oneEp),
      allEpsSequentialMedianMs: median(sequential),
      allEpsParallelMs: parallel,
      perMeasureMedianMs: Object.fromEntries([...perMeasure].map(([m, v]) => [m, median(v)])),
    };
    const line = (label: string, ms: number, target?: number) =>
      say(`  ${label.padEnd(44)} ${fmt(ms).padStart(8)}${target ? `   target < ${fmt(target)}: ${ms < target ? 'met' : 'NOT met'}` : ''}`);
    say('');
    line("EP 1's full report, first run (cold)", cold.ms);
    line(`one EP's full report, median of ${settings.rounds}`, figures.oneEpMedianMs, TARGET_ONE_EP_MS);
    line(`all ${size.eps} EPs one after another, median of ${settings.rounds}`, figures.allEpsSequentialMedianMs, TARGET_ALL_EPS_MS);
    if (parallel !== undefined) {
      line(`all ${size.eps} EPs, ${settings.concurrency} at a time`, parallel);
    }
    say('\nmedian per measure over the EPs, and EP 1\'s numbers:');
    for (const r of cold.results) {
      const id = `${r.definition.id}-${r.year}`;
      say(`  ${id.padEnd(24)} ${fmt(figures.perMeasureMedianMs[id] ?? 0).padStart(7)}   ${String(r.numerator).padStart(5)} / ${String(r.denominator).padEnd(5)} ${r.percentage ? `${r.percentage}%` : '-'} ${r.met === 'excluded' ? 'excluded' : r.met ? 'met' : 'not met'}`);
    }
    fs.mkdirSync(path.dirname(RESULTS), { recursive: true });
    fs.writeFileSync(
      RESULTS,
      `${JSON.stringify({ startedAt: new Date().toISOString(), machine, database: version, settings: { ...settings, databaseUrl: undefined }, load, figures, ep1: cold.results.map((r) => ({ measure: `${r.definition.id}-${r.year}`, numerator: r.numerator, denominator: r.denominator })) }, null, 2)}\n`
    );
    say(`\nResults: ${path.relative(process.cwd(), RESULTS)}`);
    if (settings.explain) {
      await explainMeasures(app, settings);
    }
  } finally {
    await app.close();
  }
}
