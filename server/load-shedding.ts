/**
 * Load shedding: when the server already holds `MAX_IN_FLIGHT` requests, or its event loop
 * stalled longer than `MAX_EVENT_LOOP_DELAY_MS` in the last second (the longest delay of a
 * 10 ms timer, sampled once a second), a new request
 * is refused at once with 503, Retry-After and an OperationOutcome. Answering "busy" costs
 * microseconds; queueing would make every request slow until all of them time out. Health
 * and metrics are never shed (an orchestrator must see a busy instance as alive, and its
 * metrics are how anyone sees it is busy).
 */
import type { IntervalHistogram } from 'node:perf_hooks';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import type { NextFunction, Request, Response } from 'express';
import { outcome } from '../fhir/index.js';
import type { LimitsConfig } from './config.js';
import type { Metrics } from './metrics.js';

export type ShedReason = 'in_flight' | 'event_loop';

const NEVER_SHED = new Set(['/healthz', '/readyz', '/metrics']);
const BUSY = JSON.stringify(outcome('transient', 'The server is busy; retry in a moment'));
const BUSY_HEADERS = {
  'Content-Type': 'application/fhir+json; charset=utf-8',
  'Content-Length': String(Buffer.byteLength(BUSY)),
  'Retry-After': '1',
  'Cache-Control': 'no-store',
  'X-Content-Type-Options': 'nosniff',
};

export class LoadShedder {
  private count = 0;
  private lagMs = 0;
  private readonly delay?: IntervalHistogram;
  private readonly timer?: NodeJS.Timeout;

  constructor(private readonly limits: Pick<LimitsConfig, 'maxInFlight' | 'maxEventLoopDelayMs'>) {
    if (limits.maxEventLoopDelayMs > 0) {
      const delay = monitorEventLoopDelay({ resolution: 10 });
      delay.enable();
      this.delay = delay;
      this.timer = setInterval(() => {
        this.lagMs = delay.max / 1e6;
        delay.reset();
      }, 1000);
      this.timer.unref();
    }
  }

  /** Requests admitted and not yet answered. */
  get inFlight(): number {
    return this.count;
  }

  /** Why a request arriving now would be refused, if it would. */
  overloaded(): ShedReason | undefined {
    if (this.limits.maxInFlight > 0 && this.count >= this.limits.maxInFlight) {
      return 'in_flight';
    }
    if (this.limits.maxEventLoopDelayMs > 0 && this.lagMs > this.limits.maxEventLoopDelayMs) {
      return 'event_loop';
    }
    return undefined;
  }

  /**
   * Mounted first, before helmet, logging and routing: a shed request costs only its HTTP
   * parse and a fixed answer (the overload bench showed the full middleware stack on every
   * refusal eating the capacity the refusals were meant to protect). Shed requests are
   * counted in `carethread_shed_requests_total`, not logged.
   */
  middleware(metrics: Metrics) {
    return (req: Request, res: Response, next: NextFunction) => {
      if (NEVER_SHED.has(req.path)) {
        next();
        return;
      }
      const reason = this.overloaded();
      if (reason) {
        metrics.shed.inc({ reason });
        res.writeHead(503, BUSY_HEADERS);
        res.end(BUSY);
        return;
      }
      this.count++;
      let released = false;
      const release = () => {
        if (!released) {
          released = true;
          this.count--;
        }
      };
      // 'close' covers clients that hang up before the answer is finished.
      res.once('finish', release);
      res.once('close', release);
      next();
    };
  }

  close(): void {
    clearInterval(this.timer);
    this.delay?.disable();
  }
}
