/**
 * Where the CPU went during a measurement: the server's event-loop utilization (near 1.0
 * means the one JavaScript thread is the limit), this process's CPU (server and, for
 * PGlite, the database), the local PostgreSQL processes' CPU, and the whole machine's busy
 * CPU (from /proc), so that load from anything else running shows up beside the figures.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import { performance } from 'node:perf_hooks';
import type { EventLoopUtilization } from 'node:perf_hooks';

export interface CpuSnapshot {
  at: number;
  elu: EventLoopUtilization;
  process: NodeJS.CpuUsage;
  postgresTicks?: number;
  machineTicks?: number;
}

export interface CpuReport {
  /** Share of wall time the server's event loop was busy (0..1). */
  serverEventLoop: number;
  /** Cores used by this process (server + in-process database). */
  serverProcessCores: number;
  /** Cores used by PostgreSQL processes, when they run on this machine. */
  postgresCores?: number;
  /** Busy cores of the whole machine (every process and the kernel). */
  machineCores?: number;
}

let ticksPerSecond: number | undefined;

function clockTicks(): number {
  if (ticksPerSecond === undefined) {
    try {
      ticksPerSecond = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
    } catch {
      ticksPerSecond = 100;
    }
  }
  return ticksPerSecond;
}

/** CPU ticks (user + system) of every process named `postgres` we can see. */
function postgresTicks(): number | undefined {
  let entries: string[];
  try {
    entries = fs.readdirSync('/proc').filter((e) => /^\d+$/.test(e));
  } catch {
    return undefined;
  }
  let total = 0;
  let found = false;
  for (const pid of entries) {
    try {
      const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
      const close = stat.lastIndexOf(')');
      if (stat.slice(stat.indexOf('(') + 1, close) !== 'postgres') {
        continue;
      }
      const fields = stat.slice(close + 2).split(' ');
      // Fields 14 and 15 of stat (utime, stime), counted from the state field (3).
      total += Number(fields[11]) + Number(fields[12]);
      found = true;
    } catch {
      // The process ended between listing and reading.
    }
  }
  return found ? total : undefined;
}

/** Busy CPU ticks of the whole machine: everything but idle and I/O wait. */
function machineTicks(): number | undefined {
  try {
    const fields = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
    // user nice system idle iowait irq softirq steal (guest time is already in user)
    const [user, nice, system, idle, iowait, irq, softirq, steal] = fields;
    void idle;
    void iowait;
    return user + nice + system + irq + softirq + steal;
  } catch {
    return undefined;
  }
}

export function cpuSnapshot(withPostgres: boolean): CpuSnapshot {
  return {
    at: performance.now(),
    elu: performance.eventLoopUtilization(),
    process: process.cpuUsage(),
    postgresTicks: withPostgres ? postgresTicks() : undefined,
    machineTicks: machineTicks(),
  };
}

export function cpuBetween(start: CpuSnapshot, end: CpuSnapshot): CpuReport {
  const seconds = (end.at - start.at) / 1000;
  const used = (end.process.user - start.process.user + end.process.system - start.process.system) / 1e6;
  const report: CpuReport = {
    serverEventLoop: performance.eventLoopUtilization(end.elu, start.elu).utilization,
    serverProcessCores: used / seconds,
  };
  if (start.postgresTicks !== undefined && end.postgresTicks !== undefined) {
    report.postgresCores = (end.postgresTicks - start.postgresTicks) / clockTicks() / seconds;
  }
  if (start.machineTicks !== undefined && end.machineTicks !== undefined) {
    report.machineCores = (end.machineTicks - start.machineTicks) / clockTicks() / seconds;
  }
  return report;
}

export interface QuietWait {
  /** Seconds spent waiting for the machine to go quiet. */
  waitedSeconds: number;
  /** Busy cores of the machine over the last second before measuring (our processes idle). */
  backgroundCores?: number;
}

/**
 * Waits (up to `maxSeconds`) until the machine is nearly idle while our own processes are,
 * so a test suite or build running beside the benchmark does not end up in its figures.
 */
export async function waitForQuiet(maxSeconds: number, thresholdCores = 0.25): Promise<QuietWait> {
  const started = performance.now();
  let busy: number | undefined;
  for (;;) {
    const before = machineTicks();
    await new Promise((resolve) => setTimeout(resolve, 1000));
    const after = machineTicks();
    if (before === undefined || after === undefined) {
      return { waitedSeconds: 0 };
    }
    busy = (after - before) / clockTicks();
    const waited = (performance.now() - started) / 1000;
    if (busy <= thresholdCores || waited >= maxSeconds) {
      return { waitedSeconds: Math.max(0, waited - 1), backgroundCores: busy };
    }
  }
}
