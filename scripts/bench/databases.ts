/**
 * Where each engine's data lives for a run: a PostgreSQL database dropped and recreated at
 * the start (so every run starts from the same state), or a fresh temporary directory for
 * PGlite. Both are removed or left for inspection by the caller.
 */
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import type { Engine } from './settings.js';

export interface BenchDatabase {
  engine: Engine;
  databaseUrl?: string;
  dataDir: string;
  /** Removes the temporary directory (the PostgreSQL database stays for inspection). */
  cleanup(): Promise<void>;
}

export async function prepareDatabase(engine: Engine, databaseUrl: string): Promise<BenchDatabase> {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), `carethread-bench-${engine}-`));
  const cleanup = async () => fs.rmSync(dataDir, { recursive: true, force: true });
  if (engine === 'pglite') {
    return { engine, dataDir, cleanup };
  }
  const url = new URL(databaseUrl);
  const name = decodeURIComponent(url.pathname.slice(1));
  const admin = new URL(databaseUrl);
  admin.pathname = '/postgres';
  const client = new pg.Client({ connectionString: admin.toString() });
  await client.connect();
  try {
    // The name was checked to be a plain identifier when the settings were read.
    await client.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
    await client.query(`CREATE DATABASE "${name}"`);
  } finally {
    await client.end();
  }
  return { engine, databaseUrl, dataDir, cleanup };
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
    server.on('error', reject);
  });
}
