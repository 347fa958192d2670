/**
 * Small in-process rate limiters. `rateLimit`: fixed one-minute windows per key. Over the limit, the
 * answer is 429 with Retry-After. Per instance: N instances admit N times the limit, which
 * bounds abuse well enough for login and token endpoints.
 */
import type { NextFunction, Request, Response } from 'express';

export function rateLimit(options: { perMinute: number; key: (req: Request) => string; onLimit: (res: Response, retryAfter: number) => void }) {
  const windows = new Map<string, { count: number; start: number }>();
  let sweep = Date.now();
  return (req: Request, res: Response, next: NextFunction) => {
    const now = Date.now();
    if (now - sweep > 60_000) {
      for (const [key, w] of windows) {
        if (now - w.start >= 60_000) windows.delete(key);
      }
      sweep = now;
    }
    const key = options.key(req);
    let window = windows.get(key);
    if (!window || now - window.start >= 60_000) {
      window = { count: 0, start: now };
      windows.set(key, window);
    }
    window.count++;
    if (window.count > options.perMinute) {
      const retryAfter = Math.max(1, Math.ceil((window.start + 60_000 - now) / 1000));
      res.setHeader('Retry-After', String(retryAfter));
      options.onLimit(res, retryAfter);
      return;
    }
    next();
  };
}

/**
 * A token bucket per key for the FHIR API: each key holds up to a minute's allowance and
 * regains it continuously, so a burst is admitted up to the limit and a steady client is
 * throttled to its rate (not refused for the rest of a fixed window). Per instance, like
 * the limiter above. Idle buckets are dropped once they would be full again.
 */
export class TokenBuckets {
  private readonly buckets = new Map<string, { tokens: number; at: number }>();
  private sweptAt = Date.now();

  constructor(private readonly perMinute: number) {}

  /** Takes one token for `key`: 0 when admitted, else the seconds until one is available. */
  take(key: string): number {
    const now = Date.now();
    const perMs = this.perMinute / 60_000;
    if (now - this.sweptAt > 60_000) {
      for (const [k, b] of this.buckets) {
        if (b.tokens + (now - b.at) * perMs >= this.perMinute) this.buckets.delete(k);
      }
      this.sweptAt = now;
    }
    const bucket = this.buckets.get(key) ?? { tokens: this.perMinute, at: now };
    bucket.tokens = Math.min(this.perMinute, bucket.tokens + Math.max(0, now - bucket.at) * perMs);
    bucket.at = now;
    this.buckets.set(key, bucket);
    if (bucket.tokens >= 1) {
      bucket.tokens -= 1;
      return 0;
    }
    return Math.max(1, Math.ceil((1 - bucket.tokens) / perMs / 1000));
  }
}

/**
 * The FHIR API's limits, checked once the access context is known (so before any work on
 * the request): a signed-in user's requests count against their own bucket wherever they
 * come from; a client acting for no user (a backend service) against the client's.
 */
export class ApiRateLimits {
  private readonly users?: TokenBuckets;
  private readonly clients?: TokenBuckets;

  constructor(limits: { apiRequestsPerMinutePerUser: number; apiRequestsPerMinutePerClient: number }) {
    this.users = limits.apiRequestsPerMinutePerUser > 0 ? new TokenBuckets(limits.apiRequestsPerMinutePerUser) : undefined;
    this.clients = limits.apiRequestsPerMinutePerClient > 0 ? new TokenBuckets(limits.apiRequestsPerMinutePerClient) : undefined;
  }

  /** Undefined when admitted; else which limit refused it and the seconds to wait. */
  check(who: { fhirUser?: string; clientId?: string }): { limit: 'user' | 'client'; retryAfter: number } | undefined {
    if (who.fhirUser) {
      const retryAfter = this.users?.take(who.fhirUser) ?? 0;
      return retryAfter ? { limit: 'user', retryAfter } : undefined;
    }
    const retryAfter = who.clientId ? (this.clients?.take(who.clientId) ?? 0) : 0;
    return retryAfter ? { limit: 'client', retryAfter } : undefined;
  }
}
