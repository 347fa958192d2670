/**
 * Crash safety, in the short form of `npm run chaos` (scripts/chaos/): a real server
 * process under a sustained message load is killed with SIGKILL at random moments and
 * restarted over the same database and, on PostgreSQL, has every database connection
 * terminated under it. Afterwards every acknowledged message is there whole (Communication,
 * Provenance, Task, AuditEvent, outbox entries), every other request is whole or absent,
 * and, on PostgreSQL, every notice e-mail and rest-hook notification arrived, a repeat
 * only where a fault cut in between sending and recording it.
 */
import { describe, expect, it } from 'vitest';
import { runChaos } from '../scripts/chaos/run.js';
import type { ChaosOptions } from '../scripts/chaos/run.js';
import { testEngine } from './support/database.js';

const base: Omit<ChaosOptions, 'engine' | 'durationMs' | 'kills' | 'drops' | 'maxRequests'> = {
  adminUrl: process.env.TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres',
  patients: 3,
  rate: 0,
  practitioners: 2,
  drainMs: 20_000,
  keepDatabase: false,
  log: () => undefined,
};

describe.runIf(testEngine === 'postgres')('crash safety on PostgreSQL', () => {
  it('loses, half-writes and double-delivers nothing across SIGKILLs and dropped connections', async () => {
    const { counts, violations } = await runChaos({ ...base, engine: 'postgres', durationMs: 12_000, maxRequests: 150, kills: 2, drops: 1 });
    expect(violations).toEqual([]);
    expect(counts.kills).toBe(2);
    expect(counts.drops).toBe(1);
    expect(counts.connectionsTerminated).toBeGreaterThan(0);
    // The server wrote again after the drop, without a restart.
    expect(counts.recoveryMs).toHaveLength(1);
    expect(counts.ok).toBeGreaterThan(20);
    expect(counts.deliveriesExpected).toBeGreaterThan(counts.ok);
    expect(counts.deliveriesArrived).toBe(counts.deliveriesExpected);
    // A request cut off by the drop is told to retry (503), never answered as our fault (500).
    expect(Object.keys(counts.refusedStatuses).filter((status) => status !== '503')).toEqual([]);
  }, 70_000);
});

describe.runIf(testEngine === 'pglite')('crash safety on PGlite', () => {
  it('keeps every acknowledged write across a SIGKILL mid-write', async () => {
    const { counts, violations } = await runChaos({ ...base, engine: 'pglite', durationMs: 8_000, maxRequests: 120, kills: 1, drops: 0 });
    expect(violations).toEqual([]);
    expect(counts.kills).toBe(1);
    expect(counts.ok).toBeGreaterThan(10);
  }, 60_000);
});
