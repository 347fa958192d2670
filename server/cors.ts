/**
 * CORS for the APIs browser apps call from other origins: discovery and metadata (SMART
 * requires any origin), the FHIR API and the token endpoints. Access is by bearer token,
 * never cookies, so allowing any origin exposes nothing a token holder could not do anyway.
 */
import type { NextFunction, Request, Response } from 'express';

export function openCors(req: Request, res: Response, next: NextFunction): void {
  res.setHeader('Access-Control-Allow-Origin', '*');
  res.setHeader('Access-Control-Expose-Headers', 'ETag, Location, Last-Modified, Content-Location, X-Request-Id, Retry-After');
  if (req.method === 'OPTIONS') {
    res.setHeader('Access-Control-Allow-Methods', 'GET, POST, PUT, PATCH, DELETE, OPTIONS');
    res.setHeader('Access-Control-Allow-Headers', 'Authorization, Content-Type, Accept, Prefer, If-Match, If-None-Exist, X-Request-Id');
    res.setHeader('Access-Control-Max-Age', '600');
    res.status(204).end();
    return;
  }
  next();
}
