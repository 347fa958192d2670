/**
 * One chaos run, for `npm run chaos` and test/crash-safety.test.ts: a fresh database, a
 * CareThread server as a child process with real SMTP and rest-hook receivers, a seeded
 * practice, the message load, and meanwhile faults at random moments: SIGKILL of the server
 * (then a restart over the same database) and, on PostgreSQL, every server connection
 * terminated (the server must recover by itself). Then the outbox drains and the invariants
 * are checked (check.ts).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { openDatabase } from '../../fhir/db/database.js';
import type { Queryable } from '../../fhir/db/database.js';
import { Api, freePort, sleep, spawnServer, startServer, waitReady } from '../../test/support/processes.js';
import type { ServerProcess } from '../../test/support/processes.js';
import { checkInvariants } from './check.js';
import type { ChaosCounts } from './check.js';
import { runLoad } from './load.js';
import type { SentRequest } from './load.js';
import { seedChaosPractice } from './practice.js';
import { startReceivers } from './receivers.js';

export interface ChaosOptions {
  engine: 'postgres' | 'pglite';
  /** Server to create the run's database on (PostgreSQL). */
  adminUrl: string;
  durationMs: number;
  /** At most this many requests. */
  maxRequests: number;
  kills: number;
  /** Connection drops (PostgreSQL only). */
  drops: number;
  patients: number;
  practitioners: number;
  /** Longest wait for the draining outbox to make progress after the load. */
  drainMs: number;
  keepDatabase: boolean;
  /** Requests per second across all workers (0: as fast as answers come). */
  rate: number;
  /** More settings for the server (e.g. DATABASE_POOL_SIZE). */
  serverEnv?: Record<string, string>;
  log: (line: string) => void;
}

export interface ChaosResult {
  counts: ChaosCounts & { kills: number; drops: number; connectionsTerminated: number; restartMs: number[]; recoveryMs: number[]; drainMs: number; seconds: number };
  violations: string[];
}

export async function runChaos(options: ChaosOptions): Promise<ChaosResult> {
  const deliveries = options.engine === 'postgres';
  const database = await createDatabase(options);
  const receivers = await startReceivers();
  const port = await freePort();
  const env: Record<string, string | undefined> = {
    ...(database.url ? { DATABASE_URL: database.url } : { DATA_DIR: database.dataDir }),
    SMTP_URL: receivers.smtpUrl,
    OUTBOX_POLL_MS: '50',
    OUTBOX_BASE_BACKOFF_MS: '200',
    // A delivery cut off by a kill is retried after the lease; keep the run short.
    OUTBOX_LEASE_MS: '3000',
    LOG_LEVEL: 'warn',
    ...options.serverEnv,
  };
  let server: ServerProcess | undefined;
  const violations: string[] = [];
  const restartMs: number[] = [];
  const recoveryMs: number[] = [];
  let kills = 0;
  let drops = 0;
  let terminated = 0;
  const started = Date.now();
  // A server that exits without being killed is a failure in itself.
  let killing = false;
  const watch = (process: ServerProcess) => {
    void process.exited.then((code) => {
      if (!killing) {
        violations.push(`the server exited on its own (code ${code}): ${process.logs.slice(-5).join(' | ').slice(0, 2000)}`);
        options.log(`the server exited on its own (code ${code}):\n${process.logs.slice(-30).join('\n')}`);
      }
    });
    return process;
  };
  try {
    server = watch(await startServer({ port, env }));
    const api = new Api(server.url, server.baseUrl);
    const practice = await seedChaosPractice(api, { patients: options.patients, practitioners: options.practitioners, hookUrl: deliveries ? receivers.hookUrl : undefined });
    options.log(`seeded ${options.patients} patients and ${options.practitioners} practitioners; load for ${Math.round(options.durationMs / 1000)} s with ${options.kills} kills and ${options.drops} connection drops`);

    // The gate workers wait at while the server is down.
    let open: () => void = () => undefined;
    let gate: Promise<void> = Promise.resolve();
    const deadline = Date.now() + options.durationMs;
    const sent: SentRequest[] = [];
    const load = runLoad(api, practice, { available: () => gate, done: () => Date.now() > deadline, intervalMs: options.rate ? (1000 * options.patients) / options.rate : 0 }, options.maxRequests, sent);

    const faults = [...Array(options.kills).fill('kill'), ...Array(options.engine === 'postgres' ? options.drops : 0).fill('drop')] as ('kill' | 'drop')[];
    const slot = options.durationMs / (faults.length + 1);
    for (const [i, fault] of faults.entries()) {
      // A random moment in the fault's slot (restarts take from it).
      const at = started + slot * (i + 0.5 + Math.random() * 0.8);
      await sleep(Math.max(0, at - Date.now()));
      if (fault === 'kill') {
        gate = new Promise((resolve) => (open = resolve));
        killing = true;
        await server!.kill('SIGKILL');
        killing = false;
        kills++;
        const restarting = Date.now();
        server = watch(spawnServer({ port, env }));
        await waitReady(server);
        restartMs.push(Date.now() - restarting);
        options.log(`kill ${kills}: SIGKILL, restarted in ${Date.now() - restarting} ms`);
        open();
      } else {
        const count = await terminateConnections(options.adminUrl, database.name!);
        terminated += count;
        drops++;
        const dropped = Date.now();
        // The load may have spent its budget before this drop: then a write of our own (a
        // Patient, which queues no delivery) shows whether the server writes again.
        const loadOver = () => sent.length >= options.maxRequests || Date.now() > deadline;
        const recovered = await firstWrite(sent, dropped, 15_000, loadOver, () => api.create(practice.admin, { resourceType: 'Patient' }));
        if (recovered === undefined) {
          violations.push(`connection drop ${drops}: no successful write within 15 s${server!.child.exitCode !== null ? ` (the server exited with ${server!.child.exitCode})` : ''}`);
          options.log(server!.logs.slice(-15).join('\n'));
        } else {
          recoveryMs.push(recovered - dropped);
        }
        options.log(`drop ${drops}: ${count} connections terminated, writing again after ${recovered === undefined ? 'never' : `${recovered - dropped} ms`}`);
      }
    }
    await load;
    options.log(`load done: ${sent.length} requests; waiting for the outbox`);

    const drainStart = Date.now();
    let checked: Awaited<ReturnType<typeof checkInvariants>>;
    if (deliveries) {
      const db = await openDatabase({ databaseUrl: database.url, dataDir: database.dataDir, poolSize: 1 });
      try {
        await drained(db, receivers, options.drainMs);
        checked = await checkInvariants(db, sent, receivers, kills + drops);
      } finally {
        await db.close();
      }
    } else {
      // PGlite's directory belongs to one process: stop the server, then read it.
      killing = true;
      await server.kill('SIGTERM');
      const db = await openDatabase({ dataDir: database.dataDir });
      try {
        checked = await checkInvariants(db, sent, undefined, kills);
      } finally {
        await db.close();
      }
    }
    return {
      counts: { ...checked.counts, kills, drops, connectionsTerminated: terminated, restartMs, recoveryMs, drainMs: Date.now() - drainStart, seconds: Math.round((Date.now() - started) / 1000) },
      violations: [...violations, ...checked.violations],
    };
  } catch (err) {
    if (server) {
      options.log(server.logs.slice(-30).join('\n'));
    }
    throw err;
  } finally {
    killing = true;
    await server?.kill('SIGTERM');
    await receivers.close();
    if (!options.keepDatabase) {
      await database.drop();
    }
  }
}

interface ChaosDatabase {
  name?: string;
  url?: string;
  dataDir: string;
  drop(): Promise<void>;
}

async function createDatabase(options: ChaosOptions): Promise<ChaosDatabase> {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'carethread-chaos-'));
  if (options.engine === 'pglite') {
    return { dataDir, drop: async () => fs.rmSync(dataDir, { recursive: true, force: true }) };
  }
  const name = `ct_chaos_${randomBytes(6).toString('hex')}`;
  await adminQuery(options.adminUrl, `CREATE DATABASE ${name}`);
  const url = new URL(options.adminUrl);
  url.pathname = `/${name}`;
  return {
    name,
    url: url.toString(),
    dataDir,
    async drop() {
      await adminQuery(options.adminUrl, `DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      fs.rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

async function adminQuery(adminUrl: string, sql: string, params: unknown[] = []): Promise<pg.QueryResult> {
  const client = new pg.Client({ connectionString: adminUrl });
  await client.connect();
  try {
    return await client.query(sql, params);
  } finally {
    await client.end();
  }
}

/** Terminates every connection to the database (the server's pool and its LISTEN connection). */
export async function terminateConnections(adminUrl: string, database: string): Promise<number> {
  const result = await adminQuery(adminUrl, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()`, [database]);
  return result.rowCount ?? 0;
}

/** When a write after `since` was first acknowledged again: a message of the load, or a probe once the load is over. */
async function firstWrite(sent: SentRequest[], since: number, timeoutMs: number, loadOver: () => boolean, probe: () => Promise<unknown>): Promise<number | undefined> {
  const deadline = since + timeoutMs;
  while (Date.now() < deadline) {
    const ok = sent.find((s) => s.outcome === 'ok' && s.at > since);
    if (ok) {
      return ok.at;
    }
    if (loadOver()) {
      const written = await probe().then(
        () => true,
        () => false
      );
      if (written) {
        return Date.now();
      }
    }
    await sleep(20);
  }
  return undefined;
}

/**
 * Waits until no outbox entry is pending and the receivers have been quiet for a moment;
 * gives up after `stallMs` without progress.
 */
async function drained(db: Queryable, receivers: { mails: Map<string, number>; hooks: Map<string, number> }, stallMs: number): Promise<void> {
  let deadline = Date.now() + stallMs;
  let left = Infinity;
  const total = () => [...receivers.mails.values(), ...receivers.hooks.values()].reduce((a, b) => a + b, 0);
  while (Date.now() < deadline) {
    const [{ n }] = await db.query<{ n: string }>(`SELECT count(*) AS n FROM outbox WHERE status = 'pending'`);
    if (Number(n) === 0) {
      const before = total();
      await sleep(500);
      if (total() === before) {
        return;
      }
    } else {
      if (Number(n) < left) {
        left = Number(n);
        deadline = Date.now() + stallMs;
      }
      await sleep(200);
    }
  }
}
