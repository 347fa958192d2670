/**
 * One engine's run: fresh database, seed, explain the hot queries (PostgreSQL), start the
 * real HTTP server over the same AppContext, check each scenario answers correctly, then
 * warm up and measure every scenario.
 */
import { randomBytes } from 'node:crypto';
import type { Server } from 'node:http';
import path from 'node:path';
import { createApp } from '../../server/app.js';
import { loadConfig } from '../../server/config.js';
import { AppContext } from '../../server/context.js';
import { buildDataset, randomSource } from './dataset.js';
import type { DatasetSize } from './dataset.js';
import { freePort, prepareDatabase } from './databases.js';
import { captureCreate, explainHotQueries } from './explain.js';
import type { CreateStatements, PlanSummary } from './explain.js';
import { cpuBetween, cpuSnapshot, waitForQuiet } from './cpu.js';
import type { CpuReport, QuietWait } from './cpu.js';
import { BENCH_CLIENT_ID, clientToken, patientTokens, practitionerTokens } from './identities.js';
import type { Identity, Tokens } from './identities.js';
import type { LoadGenerator } from './load-generator.js';
import type { LoadResult } from './load-process.js';
import { runOverload } from './overload.js';
import type { OverloadRun } from './overload.js';
import { ServerProfiler } from './profile.js';
import type { ProfileSummary } from './profile.js';
import { MEASURED_ORDER, SCENARIOS } from './scenarios.js';
import type { LoadData, ScenarioName, Target } from './scenarios.js';
import { seedDataset } from './seed.js';
import type { SeedReport } from './seed.js';
import type { BenchSettings, Engine } from './settings.js';

export interface ScenarioResult extends LoadResult {
  scenario: ScenarioName;
  label: string;
  target?: Target;
  met?: boolean;
  cpu: CpuReport;
  /** How long the run waited for a quiet machine, and how busy it still was. */
  quiet: QuietWait;
  /** AuditEvents stored while the scenario ran (reads are audited through a queue). */
  auditEvents: number;
  /** mark-read: messages whose `received` the measured requests set (each a first read). */
  firstReads?: number;
  profile?: ProfileSummary;
}

export interface EngineResult {
  engine: Engine;
  identity: Identity;
  databaseVersion: string;
  dataset: DatasetSize & { threads: number; openThreads: number };
  seed: SeedReport;
  seconds: number;
  warmupSeconds: number;
  connections: number;
  plans: PlanSummary[];
  createStatements?: CreateStatements;
  scenarios: ScenarioResult[];
  /** `BENCH_OVERLOAD=1`: one scenario at 4× its measured throughput. */
  overload?: OverloadRun[];
  /** Wall time of this engine's whole run, seconds. */
  totalSeconds: number;
}

export async function runEngine(engine: Engine, settings: BenchSettings, load: LoadGenerator, resultsDir: string): Promise<EngineResult> {
  const started = performance.now();
  const database = await prepareDatabase(engine, settings.databaseUrl);
  const port = await freePort();
  const baseUrl = `http://127.0.0.1:${port}`;
  // The integrating-client identity is the bootstrap client, with a secret made up per run.
  const clientSecret = randomBytes(24).toString('hex');
  const config = loadConfig({
    PORT: String(port),
    BASE_URL: baseUrl,
    DATA_DIR: database.dataDir,
    DATABASE_URL: database.databaseUrl,
    LOG_LEVEL: settings.serverLogLevel,
    BOOTSTRAP_CLIENT_ID: BENCH_CLIENT_ID,
    BOOTSTRAP_CLIENT_SECRET: clientSecret,
  });
  const app = await AppContext.fromConfig(config);
  let server: Server | undefined;
  try {
    const [{ version }] = await app.db.query<{ version: string }>('SELECT version()');
    const dataset = buildDataset(settings.dataset[engine]);
    const seed = await seedDataset(app, dataset, { label: engine, parallel: settings.seedParallel, batchSize: settings.seedBatch });
    log(`${engine}: seeded ${seed.resources.toLocaleString('en-US')} resources in ${seed.seconds.toFixed(1)} s (${Math.round(seed.perSecond)}/s), VACUUM ANALYZE ${seed.vacuumSeconds.toFixed(1)} s`);
    const data: LoadData = {
      identity: settings.identity,
      practitionerIds: dataset.practitioners.map((p) => p.id),
      threads: dataset.threads,
      openThreads: dataset.threads.filter((t) => t.open),
      unread: shuffled(
        dataset.threads.flatMap((t) => t.unreadIds.map((id) => ({ id, practitionerId: t.practitionerId }))),
        randomSource(11)
      ),
    };

    server = createApp(app).listen(port, '127.0.0.1');
    await new Promise<void>((resolve, reject) => {
      server!.once('listening', resolve);
      server!.once('error', reject);
    });
    // Tokens are made per scenario: backend-service tokens live only minutes.
    const tokensFor = async (needsPatients: boolean): Promise<Tokens> =>
      settings.identity === 'client'
        ? { client: await clientToken(baseUrl, clientSecret) }
        : {
            practitioners: await practitionerTokens(app, data.practitionerIds),
            patients: needsPatients ? await patientTokens(app, data.openThreads.map((t) => t.patientId)) : undefined,
          };
    const checkTokens = await tokensFor(true);
    const plans = engine === 'postgres' ? await explainHotQueries(app, data, checkTokens) : [];
    const createStatements = await captureCreate(app, data, checkTokens);
    await checkScenarios(baseUrl, data, checkTokens);
    await load.setData(data);

    const profiler = settings.cpuProfile ? await ServerProfiler.open() : undefined;
    const scenarios: ScenarioResult[] = [];
    const order: ScenarioName[] = settings.auditDiagnostic ? [...MEASURED_ORDER, 'read-unaudited'] : MEASURED_ORDER;
    for (const name of order) {
      const scenario = SCENARIOS[name];
      const restore = name === 'read-unaudited' ? silenceReadAudit(app) : () => undefined;
      try {
        // Wait out other work on the machine first, then warm up and measure straight after.
        const quiet = settings.quietWaitSeconds ? await waitForQuiet(settings.quietWaitSeconds) : { waitedSeconds: 0 };
        if (quiet.backgroundCores !== undefined && quiet.backgroundCores > 0.25) {
          log(`${engine}: ${name}: the machine is still busy (${quiet.backgroundCores.toFixed(2)} cores used by other work); measuring anyway`);
        }
        const tokens = await tokensFor(scenario.needsPatients ?? false);
        const run = { url: baseUrl, tokens, scenario: name, connections: settings.connections };
        if (settings.warmupSeconds) {
          await load.run({ ...run, seconds: settings.warmupSeconds });
        }
        await app.audit.flush();
        const auditBefore = await countAuditEvents(app);
        const unreadBefore = name === 'mark-read' ? await countUnread(app) : 0;
        await profiler?.start();
        const before = cpuSnapshot(engine === 'postgres');
        const result = await load.run({ ...run, seconds: settings.seconds[engine] });
        const cpu = cpuBetween(before, cpuSnapshot(engine === 'postgres'));
        const profile = await profiler?.stop(path.join(resultsDir, `${engine}-${name}.cpuprofile`));
        await app.audit.flush();
        const auditEvents = (await countAuditEvents(app)) - auditBefore;
        const firstReads = name === 'mark-read' ? unreadBefore - (await countUnread(app)) : undefined;
        const met = scenario.target
          ? result.requestsPerSecond >= scenario.target.requestsPerSecond && result.latencyMs.p99 <= scenario.target.p99Ms && result.non2xx === 0 && result.errors === 0
          : undefined;
        scenarios.push({ scenario: name, label: scenario.label, target: scenario.target, met, cpu, quiet, auditEvents, firstReads, profile, ...result });
        log(
          `${engine}: ${name}: ${Math.round(result.requestsPerSecond)} req/s, p99 ${result.latencyMs.p99.toFixed(1)} ms` +
            (result.non2xx ? `, ${result.non2xx} non-2xx ${JSON.stringify(result.statusCodes)}` : '')
        );
      } finally {
        restore();
      }
    }
    profiler?.close();
    const measured = scenarios.find((s) => s.scenario === settings.overloadScenario);
    const overload =
      settings.overload && measured
        ? await runOverload({
            load,
            url: baseUrl,
            tokens: await tokensFor(false),
            scenario: settings.overloadScenario,
            baselineRequestsPerSecond: measured.requestsPerSecond,
            connections: settings.connections,
            seconds: settings.seconds[engine],
            beforeEach: async () => {
              if (settings.quietWaitSeconds) {
                await waitForQuiet(settings.quietWaitSeconds);
              }
            },
          })
        : undefined;
    for (const run of overload ?? []) {
      log(`${engine}: overload (${run.mode}): ${Math.round(run.requestsPerSecond)} answers/s, status ${JSON.stringify(run.statusCodes)}, p99 of 2xx ${run.latency2xxMs?.p99.toFixed(1)} ms, /healthz p99 ${run.health?.latencyMs.p99.toFixed(1)} ms (${run.health?.failed} failed of ${run.health?.probes})`);
    }
    return {
      engine,
      identity: settings.identity,
      databaseVersion: version,
      dataset: { ...settings.dataset[engine], threads: dataset.threads.length, openThreads: data.openThreads.length },
      seed,
      seconds: settings.seconds[engine],
      warmupSeconds: settings.warmupSeconds,
      connections: settings.connections,
      plans,
      createStatements,
      scenarios,
      overload,
      totalSeconds: (performance.now() - started) / 1000,
    };
  } finally {
    if (server) {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server!.close(() => resolve()));
    }
    await app.close();
    await database.cleanup();
  }
}

/**
 * One request of every scenario through HTTP, checked against the dataset, so a fast but
 * wrong answer (an empty inbox, a 403) cannot pass for performance.
 */
async function checkScenarios(baseUrl: string, data: LoadData, tokens: Tokens): Promise<void> {
  const random = randomSource(7);
  const send = async (name: ScenarioName, expected: number, ordinal = 0) => {
    const request = SCENARIOS[name].request(data, tokens, random, ordinal);
    const response = await fetch(`${baseUrl}${request.path}`, { method: request.method, headers: request.headers, body: request.body });
    const text = await response.text();
    if (response.status !== expected) {
      throw new Error(`check failed: ${name}: ${request.method} ${request.path} answered ${response.status}: ${text.slice(0, 300)}`);
    }
    return { url: new URL(request.path, baseUrl), body: JSON.parse(text) as { id?: string; entry?: { resource: { id: string; sent?: string } }[] } };
  };
  // The last unread message (the load reaches it only after all the others): the first read
  // by its recipient must stamp `received`.
  const opened = await send('mark-read', 200, data.unread.length - 1);
  if (!(opened.body as { received?: string }).received) {
    throw new Error('check failed: mark-read: the first read by the recipient did not set received');
  }
  const read = await send('read', 200);
  if (read.body.id !== read.url.pathname.split('/').pop()) {
    throw new Error('check failed: read by id returned another resource');
  }
  const page = await send('thread', 200);
  const thread = data.threads.find((t) => `Communication/${t.headerId}` === page.url.searchParams.get('part-of'))!;
  const ids = (page.body.entry ?? []).map((e) => e.resource.id);
  if (ids.join() !== thread.messageIds.slice(0, 20).join()) {
    throw new Error(`check failed: thread page returned ${ids.length} messages, expected ${Math.min(20, thread.messageIds.length)} in order`);
  }
  const inbox = await send('inbox', 200);
  const practitioner = inbox.url.searchParams.get('recipient')!.replace('Practitioner/', '');
  // Headers and patient-sent messages (every other one, from the first) reach the practitioner.
  const received = data.threads
    .filter((t) => t.practitionerId === practitioner)
    .reduce((sum, t) => sum + 1 + Math.ceil(t.messageIds.length / 2), 0);
  const sent = (inbox.body.entry ?? []).map((e) => e.resource.sent ?? '');
  if (sent.length !== Math.min(20, received) || sent.some((s, i) => i > 0 && s > sent[i - 1])) {
    throw new Error(`check failed: inbox returned ${sent.length} entries (expected ${Math.min(20, received)}, newest first)`);
  }
  const threads = await send('inbox-threads', 200);
  if (!(threads.body.entry ?? []).length && data.openThreads.length >= data.practitionerIds.length * 5) {
    throw new Error('check failed: $inbox returned no open threads');
  }
  // Both sides of a conversation: draw until one reply of each kind has been accepted.
  await send('create', 201);
  await send('create', 201);
  await send('create', 201);
}

/** Turns off the read audit queue for a diagnostic run; returns the undo. */
function silenceReadAudit(app: AppContext): () => void {
  app.audit.enqueue = () => undefined;
  return () => {
    delete (app.audit as { enqueue?: unknown }).enqueue;
  };
}

async function countUnread(app: AppContext): Promise<number> {
  const [{ n }] = await app.db.query<{ n: string | number }>('SELECT count(*) AS n FROM "Communication" WHERE d_received_lo IS NULL AND NOT deleted');
  return Number(n);
}

/** A copy in a fixed random order (Fisher–Yates). */
function shuffled<T>(items: T[], random: () => number): T[] {
  const copy = [...items];
  for (let i = copy.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [copy[i], copy[j]] = [copy[j], copy[i]];
  }
  return copy;
}

async function countAuditEvents(app: AppContext): Promise<number> {
  const [{ n }] = await app.db.query<{ n: string | number }>('SELECT count(*) AS n FROM "AuditEvent"');
  return Number(n);
}

function log(message: string): void {
  process.stderr.write(`${message}\n`);
}
