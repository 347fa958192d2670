/**
 * `npm run chaos`: crash safety under load, against a real server process on PostgreSQL.
 * Sends a sustained mix of messages while killing the server with SIGKILL and dropping its
 * database connections at random moments, then checks that nothing acknowledged was lost,
 * nothing was half-written, and every notice and rest-hook delivery arrived (scripts/chaos/).
 * Prints the counts; exits 1 if an invariant failed.
 *
 * Settings: CHAOS_DATABASE_URL (server to create the run's database on, default
 * postgres://postgres@127.0.0.1:5432/postgres), CHAOS_ENGINE (postgres | pglite),
 * CHAOS_SECONDS (60), CHAOS_MAX_REQUESTS (100000), CHAOS_KILLS (5), CHAOS_DROPS (2),
 * CHAOS_PATIENTS (4: one worker each), CHAOS_PRACTITIONERS (2), CHAOS_RATE (15 requests/s in all;
 * 0: unpaced), CHAOS_POOL_SIZE (the server's DATABASE_POOL_SIZE, default 4), CHAOS_DRAIN_SECONDS (30: longest wait without progress), CHAOS_KEEP (1: keep the database).
 */
import { runChaos } from './chaos/run.js';

function setting(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') {
    return fallback;
  }
  if (!/^\d+$/.test(raw)) {
    console.error(`${name} must be a whole number (got "${raw}")`);
    process.exit(2);
  }
  return Number(raw);
}

const engine = process.env.CHAOS_ENGINE === 'pglite' ? 'pglite' : 'postgres';
const result = await runChaos({
  engine,
  adminUrl: process.env.CHAOS_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres',
  durationMs: setting('CHAOS_SECONDS', 60) * 1000,
  maxRequests: setting('CHAOS_MAX_REQUESTS', 100_000),
  kills: setting('CHAOS_KILLS', 5),
  drops: setting('CHAOS_DROPS', 2),
  patients: Math.max(1, setting('CHAOS_PATIENTS', 4)),
  practitioners: Math.max(1, setting('CHAOS_PRACTITIONERS', 2)),
  drainMs: setting('CHAOS_DRAIN_SECONDS', 30) * 1000,
  keepDatabase: process.env.CHAOS_KEEP === '1',
  rate: setting('CHAOS_RATE', 15),
  serverEnv: process.env.CHAOS_POOL_SIZE ? { DATABASE_POOL_SIZE: String(setting('CHAOS_POOL_SIZE', 4)) } : undefined,
  log: (line) => console.log(line),
});
const c = result.counts;
console.log(`
engine                  ${engine}
run                     ${c.seconds} s
requests sent           ${c.requests}
  2xx                   ${c.ok}
  refused (non-2xx)     ${c.refused}${c.refused ? `   (${Object.entries(c.refusedStatuses).map(([status, n]) => `${n}× ${status}`).join(', ')})` : ''}
  unanswered            ${c.unanswered}
  stored without a 2xx  ${c.storedWithoutOk}
kills (SIGKILL)         ${c.kills}   restarts took ${c.restartMs.join(', ')} ms
connection drops        ${c.drops}   (${c.connectionsTerminated} connections terminated; writing again after ${c.recoveryMs.join(', ')} ms)
deliveries expected     ${c.deliveriesExpected}
  arrived               ${c.deliveriesArrived}
  repeated              ${c.duplicated}
  outbox not delivered  ${c.outboxNotDelivered}
drain                   ${c.drainMs} ms
violations              ${result.violations.length}`);
for (const violation of result.violations.slice(0, 50)) {
  console.log(`  ${violation}`);
}
process.exit(result.violations.length ? 1 : 0);
