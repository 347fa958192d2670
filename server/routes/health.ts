/** Liveness (`/healthz`: the process answers) and readiness (`/readyz`: the database does). */
import express from 'express';
import type { Router } from 'express';
import type { AppContext } from '../context.js';

export function healthRouter(app: AppContext): Router {
  const router = express.Router();
  router.get('/healthz', (_req, res) => {
    res.json({ status: 'ok' });
  });
  router.get('/readyz', async (_req, res) => {
    try {
      await app.db.query('SELECT 1');
      res.json({ status: 'ready', database: app.db.engine });
    } catch {
      res.status(503).json({ status: 'unavailable', database: app.db.engine });
    }
  });
  return router;
}
