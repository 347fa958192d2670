/**
 * A fresh database for one test suite, on the engine the run is for: `TEST_DATABASE=postgres`
 * creates a new database on the PostgreSQL server (`TEST_DATABASE_URL`, default the local
 * server) and drops it afterwards; anything else uses PGlite in a new temporary directory.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import pg from 'pg';

export interface TestDatabase {
  engine: 'postgres' | 'pglite';
  /** Set for PostgreSQL. */
  databaseUrl?: string;
  /** Data directory (PGlite files live under it). */
  dataDir: string;
  drop(): Promise<void>;
}

export const testEngine: 'postgres' | 'pglite' = process.env.TEST_DATABASE === 'postgres' ? 'postgres' : 'pglite';

const ADMIN_URL = process.env.TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';

export async function createTestDatabase(): Promise<TestDatabase> {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'carethread-test-'));
  if (testEngine === 'pglite') {
    return {
      engine: 'pglite',
      dataDir,
      async drop() {
        fs.rmSync(dataDir, { recursive: true, force: true });
      },
    };
  }
  const name = `ct_test_${randomBytes(6).toString('hex')}`;
  await adminQuery(`CREATE DATABASE ${name}`);
  const url = new URL(ADMIN_URL);
  url.pathname = `/${name}`;
  return {
    engine: 'postgres',
    databaseUrl: url.toString(),
    dataDir,
    async drop() {
      await adminQuery(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      fs.rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

async function adminQuery(sql: string): Promise<void> {
  const client = new pg.Client({ connectionString: ADMIN_URL });
  await client.connect();
  try {
    await client.query(sql);
  } finally {
    await client.end();
  }
}
