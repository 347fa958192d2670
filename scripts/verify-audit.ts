/**
 * `npm run verify-audit [-- --grace <seconds>] [--json]`: checks the audit trail in the
 * database the environment names (DATABASE_URL or DATA_DIR, like `npm start`) against its
 * hash chain: every entry's hash recomputed from the start, every AuditEvent chained once.
 * Prints the first altered, removed or inserted entry, if any. Rows younger than the grace
 * period (default 60 s) that the sealer has not reached yet are pending, not a problem.
 * Exits 0 when the trail is intact, 1 when it is not (or cannot be checked), 2 for a usage
 * error. PGlite is single-process: stop the server before checking its data directory.
 */
import { parseArgs } from 'node:util';
import { openDatabase } from '../fhir/db/database.js';
import { verifyAuditChain } from '../fhir/audit/verify.js';
import { ConfigError, loadConfig } from '../server/config.js';

const USAGE = 'Usage: npm run verify-audit -- [--grace <seconds>] [--json]';

async function main(): Promise<number> {
  let graceMs: number | undefined;
  let json = false;
  try {
    const { values } = parseArgs({ args: process.argv.slice(2), options: { grace: { type: 'string' }, json: { type: 'boolean' }, help: { type: 'boolean' } } });
    if (values.help) {
      process.stdout.write(`${USAGE}\n`);
      return 0;
    }
    if (values.grace !== undefined) {
      if (!/^\d+$/.test(values.grace)) {
        throw new Error('--grace must be a whole number of seconds');
      }
      graceMs = Number(values.grace) * 1000;
    }
    json = Boolean(values.json);
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n\n${USAGE}\n`);
    return 2;
  }
  const config = loadConfig();
  const db = await openDatabase({ databaseUrl: config.databaseUrl, dataDir: config.dataDir, poolSize: 1 });
  try {
    const result = await verifyAuditChain(db, { graceMs });
    if (json) {
      process.stdout.write(`${JSON.stringify(result)}\n`);
    } else if (result.valid) {
      process.stdout.write(`intact: ${result.checked} chained entries verified, ${result.pending} pending\n`);
    } else {
      const p = result.firstProblem!;
      const where = [p.position !== undefined ? `position ${p.position}` : '', p.id ? `AuditEvent/${p.id}` : ''].filter(Boolean).join(', ');
      process.stdout.write(`NOT intact: ${p.kind}${where ? ` at ${where}` : ''}: ${p.detail} (${result.checked} entries verified before it)\n`);
    }
    return result.valid ? 0 : 1;
  } finally {
    await db.close();
  }
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`${err instanceof ConfigError ? err.message : `Could not verify the audit trail: ${(err as Error)?.message ?? String(err)}`}\n`);
    process.exit(1);
  }
);
