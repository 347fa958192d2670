/**
 * The load generator, run as its own process (forked by load-generator.ts) so that
 * autocannon's work does not share the server's event loop. It receives the seeded ids
 * once, then runs one scenario per request and answers with latency percentiles computed
 * from every response (autocannon itself reports no p95).
 */
import autocannon from 'autocannon';
import type { Request as CannonRequest } from 'autocannon';
import type { Tokens } from './identities.js';
import { SCENARIOS } from './scenarios.js';
import type { LoadData, ScenarioName } from './scenarios.js';

export interface RunCommand {
  type: 'run';
  url: string;
  /** Bearer tokens of the actors for this run. */
  tokens: Tokens;
  scenario: ScenarioName;
  seconds: number;
  connections: number;
  /** Open loop: this many requests a second from all connections together (autocannon's overallRate). */
  overallRate?: number;
  /** Probe GET /healthz on a new connection this often (ms) during the run, as an orchestrator would. */
  healthProbeMs?: number;
}

/** The /healthz probe of an overload run: latency of each probe, and those that failed or took over 2 s. */
export interface HealthProbe {
  probes: number;
  failed: number;
  latencyMs: { p50: number; p99: number; max: number };
}

export type LoadCommand = { type: 'data'; data: LoadData } | RunCommand;

export interface LoadResult {
  requests: number;
  seconds: number;
  requestsPerSecond: number;
  latencyMs: { p50: number; p95: number; p99: number; max: number; mean: number };
  non2xx: number;
  statusCodes: Record<string, number>;
  errors: number;
  timeouts: number;
  bytesPerResponse: number;
  /** CPU seconds the load generator itself used (user + system). */
  cpuSeconds: number;
  /** Latency percentiles of the 2xx responses alone (overload runs, where the rest are fast 503s). */
  latency2xxMs?: { p50: number; p99: number };
  health?: HealthProbe;
}

let data: LoadData | undefined;
/** Requests drawn per scenario so far, across runs (warm-up, then measure). */
const drawn = new Map<ScenarioName, number>();

process.on('message', (command: LoadCommand) => {
  if (command.type === 'data') {
    data = command.data;
    process.send!({ type: 'ready' });
    return;
  }
  run(command).then(
    (result) => process.send!({ type: 'result', result }),
    (err: unknown) => process.send!({ type: 'error', message: err instanceof Error ? err.message : String(err) })
  );
});

async function run(command: RunCommand): Promise<LoadResult> {
  if (!data) {
    throw new Error('no load data');
  }
  const loadData = data;
  const scenario = SCENARIOS[command.scenario];
  const draw = () => {
    const ordinal = drawn.get(command.scenario) ?? 0;
    drawn.set(command.scenario, ordinal + 1);
    return scenario.request(loadData, command.tokens, Math.random, ordinal);
  };
  const first = draw();
  const template: CannonRequest = {
    method: first.method,
    path: first.path,
    headers: first.headers,
    setupRequest: (request) => {
      const next = draw();
      return { ...request, method: next.method, path: next.path, headers: next.headers, body: next.body };
    },
  };
  const latencies: number[] = [];
  const latencies2xx: number[] = [];
  const cpuBefore = process.cpuUsage();
  const started = performance.now();
  const probe = command.healthProbeMs ? probeHealth(command.url, command.healthProbeMs) : undefined;
  const result = await new Promise<autocannon.Result>((resolve, reject) => {
    const instance = autocannon(
      {
        url: command.url,
        connections: command.connections,
        duration: command.seconds,
        requests: [template],
        ...(command.overallRate ? { overallRate: command.overallRate } : {}),
      },
      (err, finished) => (err ? reject(err) : resolve(finished))
    );
    instance.on('response', (_client, status, _bytes, responseTime) => {
      latencies.push(responseTime);
      if (status >= 200 && status < 300) {
        latencies2xx.push(responseTime);
      }
    });
  });
  const health = await probe?.stop();
  const seconds = (performance.now() - started) / 1000;
  const cpu = process.cpuUsage(cpuBefore);
  const sorted = Float64Array.from(latencies).sort();
  const at = (p: number) => percentile(sorted, p);
  const sorted2xx = Float64Array.from(latencies2xx).sort();
  const statusCodes: Record<string, number> = {};
  for (const [code, stats] of Object.entries(result.statusCodeStats ?? {})) {
    statusCodes[code] = (stats as { count: number }).count;
  }
  return {
    requests: sorted.length,
    seconds,
    requestsPerSecond: sorted.length / seconds,
    latencyMs: {
      p50: at(0.5),
      p95: at(0.95),
      p99: at(0.99),
      max: sorted.length ? sorted[sorted.length - 1] : NaN,
      mean: sorted.reduce((a, b) => a + b, 0) / (sorted.length || 1),
    },
    non2xx: result.non2xx,
    statusCodes,
    errors: result.errors,
    timeouts: result.timeouts,
    bytesPerResponse: result.throughput.total / (sorted.length || 1),
    cpuSeconds: (cpu.user + cpu.system) / 1e6,
    ...(command.overallRate || command.healthProbeMs ? { latency2xxMs: { p50: percentile(sorted2xx, 0.5), p99: percentile(sorted2xx, 0.99) } } : {}),
    ...(health ? { health } : {}),
  };
}

function percentile(sorted: Float64Array, p: number): number {
  return sorted.length ? sorted[Math.min(sorted.length - 1, Math.ceil(p * sorted.length) - 1)] : NaN;
}

/**
 * GET /healthz every `everyMs` on a fresh connection (as a load balancer's or orchestrator's
 * probe does) until stopped; a probe that fails or takes over 2 s counts as failed.
 */
function probeHealth(url: string, everyMs: number): { stop(): Promise<HealthProbe> } {
  const latencies: number[] = [];
  const pending = new Set<Promise<void>>();
  let failed = 0;
  let probes = 0;
  const once = () => {
    probes++;
    const started = performance.now();
    const done = fetch(`${url}/healthz`, { signal: AbortSignal.timeout(2000), headers: { connection: 'close' } })
      .then(async (res) => {
        await res.arrayBuffer();
        if (res.status !== 200) {
          failed++;
        }
        latencies.push(performance.now() - started);
      })
      .catch(() => {
        failed++;
      })
      .finally(() => pending.delete(done));
    pending.add(done);
  };
  const timer = setInterval(once, everyMs);
  return {
    async stop() {
      clearInterval(timer);
      await Promise.all(pending);
      const sorted = Float64Array.from(latencies).sort();
      return {
        probes,
        failed,
        latencyMs: { p50: percentile(sorted, 0.5), p99: percentile(sorted, 0.99), max: sorted.length ? sorted[sorted.length - 1] : NaN },
      };
    },
  };
}
