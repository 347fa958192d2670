/**
 * A small in-process rate limiter (fixed one-minute windows per key). Over the limit, the
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
