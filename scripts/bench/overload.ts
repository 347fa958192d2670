/**
 * The overload scenario (`BENCH_OVERLOAD=1`): drives one measured scenario at 4× what the
 * machine just sustained, twice: closed loop with 4× the connections, and open loop at 4× the
 * measured requests per second (autocannon's overallRate, with enough connections that the
 * client is never what limits the rate). Reports how many requests were served (2xx) and how
 * many were shed (503), the p99 of the served ones, and a /healthz probe every 100 ms.
 */
import type { LoadGenerator } from './load-generator.js';
import type { LoadResult } from './load-process.js';
import type { Tokens } from './identities.js';
import type { ScenarioName } from './scenarios.js';

export const OVERLOAD_FACTOR = 4;

export interface OverloadRun extends LoadResult {
  mode: 'closed loop, 4× connections' | 'open loop, 4× req/s';
  scenario: ScenarioName;
  connections: number;
  /** Requests a second asked for (open loop). */
  offeredRate?: number;
  /** What the scenario sustained in this run's measurement, req/s. */
  baselineRequestsPerSecond: number;
}

export async function runOverload(options: {
  load: LoadGenerator;
  url: string;
  tokens: Tokens;
  scenario: ScenarioName;
  baselineRequestsPerSecond: number;
  connections: number;
  seconds: number;
  /** Waits for a quiet machine before each run. */
  beforeEach: () => Promise<void>;
}): Promise<OverloadRun[]> {
  const { load, url, tokens, scenario, baselineRequestsPerSecond, seconds } = options;
  const runs: OverloadRun[] = [];
  const closedConnections = options.connections * OVERLOAD_FACTOR;
  await options.beforeEach();
  const closed = await load.run({ url, tokens, scenario, seconds, connections: closedConnections, healthProbeMs: 100 });
  runs.push({ mode: 'closed loop, 4× connections', scenario, connections: closedConnections, baselineRequestsPerSecond, ...closed });
  const offeredRate = Math.round(baselineRequestsPerSecond * OVERLOAD_FACTOR);
  // Each connection waits for its answer, so an open loop needs more of them than the
  // server admits at once (MAX_IN_FLIGHT, 64 by default).
  const openConnections = Math.max(256, closedConnections * 4);
  await options.beforeEach();
  const open = await load.run({ url, tokens, scenario, seconds, connections: openConnections, overallRate: offeredRate, healthProbeMs: 100 });
  runs.push({ mode: 'open loop, 4× req/s', scenario, connections: openConnections, offeredRate, baselineRequestsPerSecond, ...open });
  return runs;
}
