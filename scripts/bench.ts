/**
 * `npm run bench`: seeds a realistic messaging dataset through the real store code, starts
 * the real HTTP server over it and measures the hot interactions (create a message, read
 * one, a provider's inbox, a thread page) with autocannon, on PostgreSQL and on PGlite.
 * Prints a table per engine with the query plans behind them; writes `.bench/results.json`.
 * Settings: BENCH_* environment variables (scripts/bench/settings.ts, BENCHMARKS.md).
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { LoadGenerator } from './bench/load-generator.js';
import { describeCode, describeMachine, formatEngine, writeResults } from './bench/report.js';
import type { BenchResults } from './bench/report.js';
import { runEngine } from './bench/run-engine.js';
import type { EngineResult } from './bench/run-engine.js';
import { readBenchSettings, SettingError } from './bench/settings.js';

const RESULTS_DIR = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '.bench');

async function main(): Promise<void> {
  const settings = readBenchSettings(process.env);
  const started = performance.now();
  const startedAt = new Date().toISOString();
  const machine = describeMachine();
  const code = describeCode();
  process.stdout.write(
    `CareThread benchmark of ${code.commit ?? 'an unknown commit'}${code.uncommittedFiles ? ` (+${code.uncommittedFiles} files with uncommitted changes)` : ''} ` +
      `on ${machine.cores} × ${machine.cpuModel}, ${machine.memoryGiB} GiB, Node ${machine.node}; load average at start ${machine.loadAverageAtStart.join(' / ')}\n`
  );
  const load = LoadGenerator.start();
  const engines: EngineResult[] = [];
  try {
    for (const engine of settings.engines) {
      const result = await runEngine(engine, settings, load, RESULTS_DIR);
      engines.push(result);
      process.stdout.write(`\n${formatEngine(result)}\n`);
    }
  } finally {
    load.stop();
  }
  const results: BenchResults = { startedAt, code, machine, settings, engines, totalSeconds: (performance.now() - started) / 1000 };
  const file = path.join(RESULTS_DIR, 'results.json');
  writeResults(file, results);
  const met = engines.flatMap((e) => e.scenarios.filter((s) => s.met !== undefined).map((s) => s.met));
  process.stdout.write(
    `\n${met.filter(Boolean).length}/${met.length} targets met; whole run ${results.totalSeconds.toFixed(0)} s ` +
      `(${engines.map((e) => `${e.engine} ${e.totalSeconds.toFixed(0)} s, seeding ${e.seed.seconds.toFixed(0)} s`).join('; ')}). Results: ${path.relative(process.cwd(), file)}\n`
  );
}

// `npm run bench -- reports`: the engagement-report benchmark instead (scripts/bench/reports.ts).
const run = process.argv[2] === 'reports' ? () => import('./bench/reports.js').then((m) => m.runReportsBench()) : main;

run().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err instanceof SettingError ? err.message : err);
    process.exit(1);
  }
);
