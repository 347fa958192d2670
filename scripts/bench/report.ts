/**
 * Turns the results into the printed tables and the machine-readable JSON file.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { EngineResult, ScenarioResult } from './run-engine.js';
import type { BenchSettings } from './settings.js';

export interface Machine {
  cpuModel: string;
  cores: number;
  memoryGiB: number;
  os: string;
  node: string;
  /** 1, 5 and 15 minute load averages when the run started (other work on the machine). */
  loadAverageAtStart: number[];
}

/** The code measured: the commit, and whether the working tree differed from it. */
export interface CodeVersion {
  commit?: string;
  /** Files with uncommitted changes when the run started (others may be editing). */
  uncommittedFiles?: number;
}

export interface BenchResults {
  startedAt: string;
  code: CodeVersion;
  machine: Machine;
  settings: BenchSettings;
  engines: EngineResult[];
  totalSeconds: number;
}

export function describeMachine(): Machine {
  return {
    cpuModel: os.cpus()[0]?.model.trim() ?? 'unknown',
    cores: os.availableParallelism(),
    memoryGiB: Math.round(os.totalmem() / 2 ** 30),
    os: `${os.type()} ${os.release()} ${os.arch()}`,
    node: process.version,
    loadAverageAtStart: os.loadavg().map((l) => Math.round(l * 100) / 100),
  };
}

export function describeCode(): CodeVersion {
  try {
    const commit = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { encoding: 'utf8' }).trim();
    const status = execFileSync('git', ['status', '--porcelain', '--untracked-files=no'], { encoding: 'utf8' });
    return { commit, uncommittedFiles: status.split('\n').filter(Boolean).length };
  } catch {
    return {};
  }
}

export function writeResults(file: string, results: BenchResults): void {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, JSON.stringify(results, null, 2) + '\n');
}

export function formatEngine(result: EngineResult): string {
  const size = result.dataset;
  const lines = [
    `## ${result.engine === 'postgres' ? 'PostgreSQL' : 'PGlite'} — ${result.databaseVersion.split(' on ')[0]}`,
    `dataset: ${n(size.patients)} Patients, ${n(size.practitioners)} Practitioners, ${n(size.communications)} Communications in ${n(size.threads)} threads; ` +
      `seeded in ${result.seed.seconds.toFixed(1)} s (${n(Math.round(result.seed.perSecond))} resources/s) + VACUUM ANALYZE ${result.seed.vacuumSeconds.toFixed(1)} s`,
    `load: ${result.connections} connections, ${result.warmupSeconds} s warm-up + ${result.seconds} s measured per scenario`,
    '',
    table(
      ['scenario', 'req/s', 'p50 ms', 'p95 ms', 'p99 ms', 'non-2xx', 'target', 'met'],
      result.scenarios.map((s) => [
        s.label,
        n(Math.round(s.requestsPerSecond)),
        ms(s.latencyMs.p50),
        ms(s.latencyMs.p95),
        ms(s.latencyMs.p99),
        n(s.non2xx + s.errors + s.timeouts),
        s.target ? `≥${n(s.target.requestsPerSecond)}/s, p99≤${s.target.p99Ms}` : '(diagnostic)',
        (s.met === undefined ? '' : s.met ? 'yes' : 'NO') + (otherWork(s) > BUSY_CORES ? ' *' : ''),
      ]),
      [false, true, true, true, true, true, false, false]
    ),
    ...(result.scenarios.some((s) => otherWork(s) > BUSY_CORES)
      ? [
          `* other work on the machine used ${result.scenarios
            .filter((s) => otherWork(s) > BUSY_CORES)
            .map((s) => `${otherWork(s).toFixed(1)} cores during ${s.scenario}`)
            .join(', ')}: those figures understate the server.`,
        ]
      : []),
    '',
    'where the time went (measured window):',
    table(
      ['scenario', 'server event loop', 'server process', 'postgres', 'load generator', 'rest of machine', 'audit events', 'bytes/resp'],
      result.scenarios.map((s) => [
        s.scenario,
        `${Math.round(s.cpu.serverEventLoop * 100)}%`,
        cores(s.cpu.serverProcessCores),
        s.cpu.postgresCores === undefined ? (result.engine === 'pglite' ? '(in process)' : 'n/a') : cores(s.cpu.postgresCores),
        cores(s.cpuSeconds / s.seconds),
        s.cpu.machineCores === undefined ? 'n/a' : cores(otherWork(s)),
        `${n(s.auditEvents)} (${(s.auditEvents / Math.max(1, s.requests)).toFixed(2)}/req)`,
        n(Math.round(s.bytesPerResponse)),
      ]),
      [false, true, true, true, true, true, true, true]
    ),
    '("rest of machine": other processes, and kernel work not charged to a process; above ~0.3 cores something else was running)',
    ...result.scenarios
      .filter((s) => s.firstReads !== undefined)
      .map((s) => `${s.scenario}: ${n(s.firstReads!)} of the ${n(s.requests)} measured requests were first reads (received set, a new version written)`),
  ];
  if (result.overload?.length) {
    const base = result.overload[0];
    lines.push('', `overload: ${base.scenario} at 4× the ${n(Math.round(base.baselineRequestsPerSecond))} req/s measured above, ${base.seconds.toFixed(0)} s each; /healthz probed every 100 ms on a new connection:`);
    lines.push(
      table(
        ['run', 'connections', 'offered/s', 'answers/s', '2xx/s', '503/s', 'other', 'p99 2xx ms', 'p99 all ms', '/healthz p50 / p99 / max ms', 'probes failed'],
        result.overload.map((r) => {
          const count = (status: string) => r.statusCodes[status] ?? 0;
          const ok = Object.entries(r.statusCodes).filter(([code]) => code.startsWith('2')).reduce((sum, [, c]) => sum + c, 0);
          return [
            r.mode,
            n(r.connections),
            r.offeredRate ? n(r.offeredRate) : '(closed loop)',
            n(Math.round(r.requestsPerSecond)),
            n(Math.round(ok / r.seconds)),
            n(Math.round(count('503') / r.seconds)),
            n(r.requests - ok - count('503') + r.errors + r.timeouts),
            ms(r.latency2xxMs?.p99 ?? NaN),
            ms(r.latencyMs.p99),
            r.health ? `${ms(r.health.latencyMs.p50)} / ${ms(r.health.latencyMs.p99)} / ${ms(r.health.latencyMs.max)}` : 'n/a',
            r.health ? `${n(r.health.failed)} of ${n(r.health.probes)}` : 'n/a',
          ];
        }),
        [false, true, true, true, true, true, true, true, true, true, true]
      )
    );
  }
  if (result.plans.length) {
    lines.push('', 'query plans (EXPLAIN ANALYZE of the page query from parseSearch + buildPageQuery, or the read statement; 5 random picks each):');
    for (const plan of result.plans) {
      const median = plan.executionMs[Math.floor(plan.executionMs.length / 2)];
      lines.push(
        `- ${plan.scenario}: ${plan.usesIndex ? `index used (${plan.indexes.join(', ')})` : 'NO INDEX'}` +
          `${plan.seqScans.length ? `; seq scan on ${plan.seqScans.join(', ')}` : ''}; ` +
          `execution ${ms(plan.executionMs[0])}–${ms(plan.executionMs[plan.executionMs.length - 1])} ms (median ${ms(median)}), ` +
          `planning median ${ms(plan.planningMs[Math.floor(plan.planningMs.length / 2)])} ms, up to ${n(plan.rowsVisited)} rows visited; ` +
          `${plan.statements} statement(s) per request${plan.matchesStore ? '' : ' (WARNING: the store sent different SQL than buildPageQuery)'}`,
        `    ${plan.plan}`
      );
    }
  }
  if (result.createStatements) {
    lines.push('', `a create sends ${result.createStatements.statements} statements inside its transaction (+ BEGIN/COMMIT):`);
    lines.push(...result.createStatements.summary.map((s) => `    ${s}`));
  }
  for (const s of result.scenarios.filter((s) => s.profile)) {
    lines.push('', `server CPU profile, ${s.scenario} (${s.profile!.file}):`);
    lines.push(`    by area: ${s.profile!.byArea.map((a) => `${a.area} ${pct(a.share)}`).join(', ')}`);
    lines.push(...s.profile!.topFunctions.slice(0, 10).map((f) => `    ${pct(f.share).padStart(5)}  ${f.name}`));
  }
  const unaudited = result.scenarios.find((s) => s.scenario === 'read-unaudited');
  const read = result.scenarios.find((s) => s.scenario === 'read');
  if (unaudited && read) {
    lines.push('', auditCost(read, unaudited));
  }
  return lines.join('\n');
}

/** Above this many cores of other work during a measurement, its figures are flagged. */
const BUSY_CORES = 0.3;

/** Cores the rest of the machine used while the scenario was measured. */
function otherWork(s: ScenarioResult): number {
  if (s.cpu.machineCores === undefined) {
    return 0;
  }
  return Math.max(0, s.cpu.machineCores - s.cpu.serverProcessCores - (s.cpu.postgresCores ?? 0) - s.cpuSeconds / s.seconds);
}

function auditCost(read: ScenarioResult, unaudited: ScenarioResult): string {
  const change = (read.requestsPerSecond / unaudited.requestsPerSecond - 1) * 100;
  return (
    `audit cost on reads: ${n(Math.round(read.requestsPerSecond))} req/s audited vs ${n(Math.round(unaudited.requestsPerSecond))} req/s with the ` +
    `audit queue disabled (${change >= 0 ? '+' : ''}${change.toFixed(0)}%); p99 ${ms(read.latencyMs.p99)} vs ${ms(unaudited.latencyMs.p99)} ms. ` +
    `The targets are judged on the audited figure.`
  );
}

function table(header: string[], rows: string[][], rightAligned: boolean[]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells: string[]) => `| ${cells.map((c, i) => (rightAligned[i] ? c.padStart(widths[i]) : c.padEnd(widths[i]))).join(' | ')} |`;
  const rule = `|${widths.map((w, i) => (rightAligned[i] ? `${'-'.repeat(w + 1)}:` : `${'-'.repeat(w + 2)}`)).join('|')}|`;
  return [line(header), rule, ...rows.map(line)].join('\n');
}

function n(value: number): string {
  return value.toLocaleString('en-US');
}

function ms(value: number): string {
  return Number.isFinite(value) ? value.toFixed(1) : '-';
}

function cores(value: number): string {
  return `${value.toFixed(2)} cores`;
}

function pct(share: number): string {
  return `${Math.round(share * 100)}%`;
}
