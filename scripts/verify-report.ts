/**
 * `npm run verify-report -- <file> [--keys <jwks.json | URL>]`: checks the signature of a
 * signed engagement report (a MeasureReport, or each MeasureReport of a Bundle) the way an
 * auditor would, without trusting the server that made it: the JWS must verify with one of
 * the server's published report keys and cover exactly the report's content.
 *
 * Keys: a JWKS file saved from `/auth/report-keys` (offline), that URL itself, or, with no
 * `--keys`, the public keys in the database the environment names (DATABASE_URL or
 * DATA_DIR, like `npm start`). Prints `valid` or `invalid` with the reason per report;
 * exits 0 when every report is valid, 1 otherwise (2 for a usage error).
 */
import fs from 'node:fs';
import { parseArgs } from 'node:util';
import type { JSONWebKeySet, JWK } from 'jose';
import type { Bundle, MeasureReport } from '@medplum/fhirtypes';
import { verifyReport } from '../auth/report-signing.js';
import { openDatabase } from '../fhir/db/database.js';
import { ConfigError, loadConfig } from '../server/config.js';

const USAGE = `Usage: npm run verify-report -- <report.json> [--keys <jwks.json | https://…/auth/report-keys>]
Without --keys, the public keys come from the database in DATABASE_URL or DATA_DIR.`;

class UsageError extends Error {}

async function loadKeys(source: string | undefined): Promise<{ jwks: JSONWebKeySet; from: string }> {
  if (!source) {
    const config = loadConfig();
    const db = await openDatabase({ databaseUrl: config.databaseUrl, dataDir: config.dataDir, poolSize: 1 });
    try {
      const rows = await db.query<{ public_jwk: string }>('SELECT public_jwk FROM auth_keys ORDER BY created_at');
      return { jwks: { keys: rows.map((r) => JSON.parse(r.public_jwk) as JWK) }, from: config.databaseUrl ? 'the PostgreSQL database' : config.dataDir };
    } finally {
      await db.close();
    }
  }
  let parsed: unknown;
  if (/^https?:\/\//.test(source)) {
    const res = await fetch(source, { headers: { accept: 'application/json' } });
    if (!res.ok) {
      throw new Error(`${source} answered ${res.status}`);
    }
    parsed = await res.json();
  } else {
    parsed = JSON.parse(fs.readFileSync(source, 'utf8'));
  }
  // A key set, or a single key.
  const jwks = (parsed as JSONWebKeySet)?.keys ? (parsed as JSONWebKeySet) : { keys: [parsed as JWK] };
  if (!Array.isArray(jwks.keys) || !jwks.keys.every((k) => k && typeof k === 'object' && 'kty' in k)) {
    throw new Error(`${source} holds no JSON Web Key Set`);
  }
  return { jwks, from: source };
}

/** The reports a file holds: one MeasureReport, or every MeasureReport entry of a Bundle. */
function reportsIn(document: unknown): MeasureReport[] {
  const resource = document as MeasureReport | Bundle;
  if (resource?.resourceType === 'MeasureReport') {
    return [resource];
  }
  if (resource?.resourceType === 'Bundle') {
    return (resource.entry ?? []).map((e) => e.resource).filter((r): r is MeasureReport => r?.resourceType === 'MeasureReport');
  }
  return [];
}

function describe(report: MeasureReport): string {
  const measure = report.measure?.split('/').pop() ?? 'MeasureReport';
  return `${measure} ${report.subject?.reference ?? report.reporter?.reference ?? ''} ${report.period?.start ?? '?'}..${report.period?.end ?? '?'}`;
}

async function main(): Promise<number> {
  let file: string;
  let keysSource: string | undefined;
  try {
    const { values, positionals } = parseArgs({ args: process.argv.slice(2), allowPositionals: true, options: { keys: { type: 'string' }, help: { type: 'boolean' } } });
    if (values.help) {
      throw new UsageError('');
    }
    if (positionals.length !== 1) {
      throw new UsageError('Give one report file');
    }
    [file] = positionals;
    keysSource = values.keys;
  } catch (err) {
    const message = (err as Error).message;
    process.stderr.write(`${message ? `${message}\n\n` : ''}${USAGE}\n`);
    return message ? 2 : 0;
  }
  let document: unknown;
  try {
    document = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (err) {
    process.stdout.write(`invalid: ${file} is not a readable JSON file (${(err as Error).message})\n`);
    return 1;
  }
  const reports = reportsIn(document);
  if (!reports.length) {
    process.stdout.write(`invalid: ${file} holds no MeasureReport\n`);
    return 1;
  }
  const { jwks, from } = await loadKeys(keysSource);
  let invalid = 0;
  for (const report of reports) {
    const result = await verifyReport(report, jwks);
    invalid += result.valid ? 0 : 1;
    process.stdout.write(
      result.valid ? `valid    ${describe(report)} (signed with key ${result.kid})\n` : `invalid  ${describe(report)}: ${result.reason}\n`
    );
  }
  const verdict = invalid ? `${invalid} of ${reports.length} report(s) NOT valid` : `${reports.length} report(s) valid`;
  process.stdout.write(`${verdict}, checked against ${jwks.keys.length} key(s) from ${from}.\n`);
  return invalid ? 1 : 0;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`${err instanceof ConfigError ? err.message : `Could not verify: ${(err as Error)?.message ?? String(err)}`}\n`);
    process.exit(1);
  }
);
