/**
 * One small interface over the two PostgreSQL engines CareThread runs on: a PostgreSQL
 * server through `pg` (production) and PGlite, PostgreSQL compiled to WebAssembly and run
 * in-process (the embedded default). The same SQL runs on both.
 */
import fs from 'node:fs';
import path from 'node:path';
import pg from 'pg';
import { PGlite } from '@electric-sql/pglite';
import { assertChannel, listenPostgres } from './listener.js';
import type { NotifyHandler } from './listener.js';
import { isConnectionLoss } from '../errors.js';

export type Row = Record<string, any>;

export interface Queryable {
  query<T extends Row = Row>(sql: string, params?: readonly unknown[]): Promise<T[]>;
}

export interface Database extends Queryable {
  readonly engine: 'postgres' | 'pglite';
  /** Runs `fn` in one transaction: committed if it resolves, rolled back if it throws. */
  transaction<T>(fn: (tx: Queryable) => Promise<T>): Promise<T>;
  /**
   * Calls `onNotify` with the payload of every NOTIFY on `channel` (sent by any instance on this
   * database, delivered once its transaction commits) until the returned function is called.
   */
  listen(channel: string, onNotify: NotifyHandler): Promise<() => Promise<void>>;
  close(): Promise<void>;
}

export interface DatabaseOptions {
  databaseUrl?: string;
  dataDir: string;
  poolSize?: number;
  /** Per-statement timeout in milliseconds (PostgreSQL only). */
  statementTimeoutMs?: number;
}

export async function openDatabase(options: DatabaseOptions): Promise<Database> {
  if (options.databaseUrl) {
    return openPostgres(options.databaseUrl, options.poolSize ?? 16, options.statementTimeoutMs);
  }
  return openPglite(path.join(options.dataDir, 'pgdata'));
}

// Timestamps and bigints come back as strings so they round-trip exactly.
pg.types.setTypeParser(pg.types.builtins.TIMESTAMPTZ, (v) => v);
pg.types.setTypeParser(pg.types.builtins.INT8, (v) => v);

async function openPostgres(url: string, max: number, statementTimeoutMs?: number): Promise<Database> {
  const pool = new pg.Pool({
    connectionString: url,
    max,
    statement_timeout: statementTimeoutMs,
    idleTimeoutMillis: 30_000,
    // A request waiting for a connection fails (503) instead of waiting forever.
    connectionTimeoutMillis: 10_000,
  });
  // A dropped connection surfaces here; the pool replaces it on the next checkout.
  pool.on('error', () => undefined);
  return {
    engine: 'postgres',
    async query(sql, params) {
      const result = await pool.query(sql, params as unknown[]);
      return result.rows;
    },
    async transaction(fn) {
      const client = await pool.connect();
      // A checked-out client is not watched by the pool: without a listener, a connection
      // dropped mid-transaction emits an unhandled 'error' and takes the process down. The
      // failure reaches the caller through the pending query; the dead client is discarded
      // on release.
      let broken: Error | undefined;
      const onError = (err: Error) => (broken = err);
      client.on('error', onError);
      try {
        await client.query('BEGIN');
        const tx: Queryable = {
          async query(sql, params) {
            return (await client.query(sql, params as unknown[])).rows;
          },
        };
        const result = await fn(tx);
        await client.query('COMMIT');
        return result;
      } catch (err) {
        if (isConnectionLoss(err)) {
          // The transaction died with its connection; a ROLLBACK there may never be answered.
          broken ??= err as Error;
        } else {
          await rollback(client).catch((rollbackErr: Error) => (broken ??= rollbackErr));
        }
        throw err;
      } finally {
        client.off('error', onError);
        client.release(broken);
      }
    },
    listen(channel, onNotify) {
      return listenPostgres(url, channel, onNotify);
    },
    async close() {
      await pool.end();
    },
  };
}

/** ROLLBACK, given up after a few seconds: a client whose rollback hangs is discarded, not reused. */
async function rollback(client: pg.PoolClient): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error('ROLLBACK was not answered')), ROLLBACK_TIMEOUT_MS);
  });
  try {
    await Promise.race([client.query('ROLLBACK'), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

const ROLLBACK_TIMEOUT_MS = 5000;

async function openPglite(dir: string): Promise<Database> {
  fs.mkdirSync(dir, { recursive: true });
  const db = await PGlite.create({ dataDir: dir });
  const parse = { [1184]: (v: string) => v, [20]: (v: string) => v };
  return {
    engine: 'pglite',
    async query(sql, params) {
      return (await db.query(sql, params as unknown[], { parsers: parse })).rows as any[];
    },
    async transaction(fn) {
      return db.transaction(async (tx) =>
        fn({
          async query(sql, params) {
            return (await tx.query(sql, params as unknown[], { parsers: parse })).rows as any[];
          },
        })
      );
    },
    async listen(channel, onNotify) {
      assertChannel(channel);
      const unlisten = await db.listen(channel, onNotify);
      return () => unlisten();
    },
    async close() {
      await db.close();
    },
  };
}
