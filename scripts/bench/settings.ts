/**
 * The benchmark's settings, read from the environment once (BENCH_* variables), typed and
 * checked; a bad value stops the run with a message that names it.
 */
import type { LogLevel } from '../../server/config.js';
import type { DatasetSize } from './dataset.js';
import type { Identity } from './identities.js';

export type Engine = 'postgres' | 'pglite';

export interface BenchSettings {
  engines: Engine[];
  /** The PostgreSQL database to drop, recreate and fill. */
  databaseUrl: string;
  /** Measured seconds per scenario, per engine. */
  seconds: Record<Engine, number>;
  warmupSeconds: number;
  connections: number;
  /** Who sends the requests: practitioners and patients with user tokens, or one system client. */
  identity: Identity;
  dataset: Record<Engine, DatasetSize>;
  /** Concurrent seeding transactions (PostgreSQL; PGlite has one connection). */
  seedParallel: number;
  /** Resources per seeding transaction. */
  seedBatch: number;
  /** Also measure reads with the audit queue disabled, to show what auditing costs. */
  auditDiagnostic: boolean;
  /** Longest wait, before each measurement, for other work on the machine to finish. */
  quietWaitSeconds: number;
  /** Write a CPU profile of the server thread per scenario into `.bench/`. */
  cpuProfile: boolean;
  serverLogLevel: LogLevel;
  /** Also drive one scenario at 4× its measured throughput (scripts/bench/overload.ts). */
  overload: boolean;
  overloadScenario: 'read' | 'inbox';
}

export class SettingError extends Error {
  constructor(setting: string, message: string) {
    super(`Invalid benchmark setting ${setting}: ${message}`);
  }
}

type Env = Record<string, string | undefined>;

export function readBenchSettings(env: Env): BenchSettings {
  const engines = (value(env, 'BENCH_ENGINES') ?? 'postgres,pglite').split(',').map((e) => e.trim()).filter(Boolean);
  for (const engine of engines) {
    if (engine !== 'postgres' && engine !== 'pglite') {
      throw new SettingError('BENCH_ENGINES', `unknown engine "${engine}" (use postgres, pglite or both, comma-separated)`);
    }
  }
  const databaseUrl = value(env, 'BENCH_DATABASE_URL') ?? 'postgres://postgres@127.0.0.1:5432/carethread_bench';
  if (!/^postgres(ql)?:\/\/.+\/[A-Za-z_][A-Za-z0-9_]*$/.test(databaseUrl.replace(/\?.*$/, ''))) {
    throw new SettingError('BENCH_DATABASE_URL', 'must be a postgres:// URL ending in a plain database name');
  }
  const seconds = integer(env, 'BENCH_SECONDS', 10, 1, 3600);
  const size: DatasetSize = {
    patients: integer(env, 'BENCH_PATIENTS', 5_000, 1, 10_000_000),
    practitioners: integer(env, 'BENCH_PRACTITIONERS', 50, 1, 100_000),
    communications: integer(env, 'BENCH_COMMUNICATIONS', 100_000, 2, 100_000_000),
    messagesPerThread: integer(env, 'BENCH_MESSAGES_PER_THREAD', 9, 1, 1000),
  };
  const identity = value(env, 'BENCH_IDENTITY') ?? 'users';
  if (identity !== 'users' && identity !== 'client') {
    throw new SettingError('BENCH_IDENTITY', 'must be users (practitioner and patient tokens) or client (one system client)');
  }
  const logLevel = value(env, 'BENCH_LOG_LEVEL') ?? 'warn';
  if (!['fatal', 'error', 'warn', 'silent'].includes(logLevel)) {
    throw new SettingError('BENCH_LOG_LEVEL', 'must be fatal, error, warn or silent (request logs would distort the figures)');
  }
  return {
    engines: [...new Set(engines)] as Engine[],
    databaseUrl,
    seconds: { postgres: seconds, pglite: integer(env, 'BENCH_PGLITE_SECONDS', Math.min(seconds, 5), 1, 3600) },
    warmupSeconds: integer(env, 'BENCH_WARMUP_SECONDS', 2, 0, 600),
    connections: integer(env, 'BENCH_CONNECTIONS', 16, 1, 1024),
    identity,
    dataset: {
      postgres: size,
      // PGlite stores a few hundred resources a second: a quarter of the threads keeps its
      // seeding to a couple of minutes (the reads it is measured on barely depend on size).
      pglite: { ...size, communications: integer(env, 'BENCH_PGLITE_COMMUNICATIONS', Math.ceil(size.communications / 4), 2, 100_000_000) },
    },
    seedParallel: integer(env, 'BENCH_SEED_PARALLEL', 2, 1, 64),
    seedBatch: integer(env, 'BENCH_SEED_BATCH', 250, 1, 10_000),
    auditDiagnostic: flag(env, 'BENCH_AUDIT_DIAGNOSTIC', true),
    quietWaitSeconds: integer(env, 'BENCH_QUIET_WAIT_SECONDS', 60, 0, 3600),
    cpuProfile: flag(env, 'BENCH_CPU_PROFILE', false),
    serverLogLevel: logLevel as LogLevel,
    overload: flag(env, 'BENCH_OVERLOAD', false),
    overloadScenario: overloadScenario(env),
  };
}

function overloadScenario(env: Env): 'read' | 'inbox' {
  const scenario = value(env, 'BENCH_OVERLOAD_SCENARIO') ?? 'read';
  if (scenario !== 'read' && scenario !== 'inbox') {
    throw new SettingError('BENCH_OVERLOAD_SCENARIO', 'must be read or inbox');
  }
  return scenario;
}

function value(env: Env, name: string): string | undefined {
  const raw = env[name]?.trim();
  return raw ? raw : undefined;
}

function integer(env: Env, name: string, fallback: number, min: number, max: number): number {
  const raw = value(env, name);
  if (raw === undefined) {
    return fallback;
  }
  if (!/^\d+$/.test(raw) || Number(raw) < min || Number(raw) > max) {
    throw new SettingError(name, `must be a whole number from ${min} to ${max} (got "${raw}")`);
  }
  return Number(raw);
}

function flag(env: Env, name: string, fallback: boolean): boolean {
  const raw = value(env, name);
  if (raw === undefined) {
    return fallback;
  }
  if (!['0', '1', 'true', 'false'].includes(raw)) {
    throw new SettingError(name, `must be 1/0 or true/false (got "${raw}")`);
  }
  return raw === '1' || raw === 'true';
}
