/**
 * `npm run report -- …`: the engagement report from the command line, the same one the API
 * gives (`Measure/{id}/$evaluate-measure`, or `Measure/$attestation` for a whole program
 * year), for a practice that wants the file without an HTTP client or a token. It builds the
 * application context from the environment like `npm start` (DATABASE_URL, or DATA_DIR for
 * the embedded database — stop the server first, PGlite is single-process), signs every
 * report with the server's key, writes `<out>.json` (a signed MeasureReport, or a Bundle of
 * them for a year) and `<out>.csv`, prints a short table, and audits the run as CareThread's
 * system context.
 *
 *   npm run report -- --year 2014 --practitioner Practitioner/dr-a --start 2014-01-01 --end 2014-03-31 --out q1
 *   npm run report -- --measure vdt-access-eh-2014 --organization Organization/general --start 2013-10-01 --end 2014-09-30
 */
import fs from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import type { Bundle, MeasureReport } from '@medplum/fhirtypes';
import { reportSigner } from '../auth/report-signing.js';
import { systemContext } from '../fhir/access.js';
import { FhirError } from '../fhir/errors.js';
import { MEASURES, PROGRAM_YEARS } from '../fhir/measures/catalog.js';
import type { ProgramYear } from '../fhir/measures/catalog.js';
import { withSignature } from '../fhir/measures/canonical.js';
import { attestationCsv } from '../fhir/measures/csv.js';
import { MeasureEvaluator } from '../fhir/measures/evaluate.js';
import type { EvaluateInput, Evaluated } from '../fhir/measures/evaluate.js';
import { ConfigError, loadConfig } from '../server/config.js';
import { AppContext, SOFTWARE_VERSION } from '../server/context.js';
import { createLogger } from '../server/logger.js';

const USAGE = `Usage: npm run report -- (--measure <id> | --year <2014|2015|2016|2017|stage3>)
         (--practitioner Practitioner/<id> [--organization Organization/<id>] | --organization Organization/<id>)
         --start YYYY-MM-DD --end YYYY-MM-DD [--subject-list] [--exclusion "<attested basis>"] [--out <file prefix>]
Reads DATABASE_URL (PostgreSQL) or DATA_DIR (embedded database; stop the server first) like npm start.
Writes <prefix>.json (signed MeasureReport, or a Bundle of them for --year) and <prefix>.csv.`;

class UsageError extends Error {}

interface ReportArgs {
  measure?: string;
  year?: ProgramYear;
  input: Omit<EvaluateInput, 'measureId'>;
  out: string;
}

function readArgs(argv: string[]): ReportArgs {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      measure: { type: 'string' },
      year: { type: 'string' },
      practitioner: { type: 'string' },
      organization: { type: 'string' },
      start: { type: 'string' },
      end: { type: 'string' },
      'subject-list': { type: 'boolean', default: false },
      exclusion: { type: 'string' },
      out: { type: 'string' },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) {
    throw new UsageError('');
  }
  if (positionals.length) {
    throw new UsageError(`Unexpected argument ${positionals[0]}`);
  }
  if (Boolean(values.measure) === Boolean(values.year)) {
    throw new UsageError('Give either --measure <id> or --year <program year>');
  }
  if (values.year && !PROGRAM_YEARS.includes(values.year as ProgramYear)) {
    throw new UsageError(`--year must be one of ${PROGRAM_YEARS.join(', ')}`);
  }
  if (!values.practitioner && !values.organization) {
    throw new UsageError('Give --practitioner Practitioner/<id> (EP measures) or --organization Organization/<id> (hospital measures)');
  }
  if (values.practitioner && !values.practitioner.startsWith('Practitioner/')) {
    throw new UsageError('--practitioner must be a reference Practitioner/<id>');
  }
  if (values.organization && !values.organization.startsWith('Organization/')) {
    throw new UsageError('--organization must be a reference Organization/<id>');
  }
  if (!values.start || !values.end) {
    throw new UsageError('Give the reporting period: --start YYYY-MM-DD --end YYYY-MM-DD');
  }
  const who = (values.practitioner ?? values.organization!).split('/')[1];
  return {
    measure: values.measure,
    year: values.year as ProgramYear | undefined,
    input: {
      periodStart: values.start,
      periodEnd: values.end,
      practitioner: values.practitioner,
      organization: values.organization,
      reportType: values['subject-list'] ? 'subject-list' : 'summary',
      exclusion: values.exclusion,
    },
    out: values.out ?? `report-${values.measure ?? `attestation-${values.year}`}-${who}-${values.start}-${values.end}`.replace(/[^A-Za-z0-9._-]/g, '_'),
  };
}

/** The measure ids a run covers: one, or (like `$attestation`) every measure of the year for an EP or a hospital. */
function measureIds(args: ReportArgs): string[] {
  if (args.measure) {
    return [args.measure];
  }
  const hospital = Boolean(args.input.organization && !args.input.practitioner);
  return MEASURES.filter((m) => m.hospital === hospital && m.thresholds[args.year!]).map((m) => `${m.id}-${args.year}`);
}

function table(rows: Evaluated[]): string {
  const cells = rows.map((r) => [
    `${r.definition.id}-${r.year}`,
    String(r.numerator),
    String(r.denominator),
    r.percentage ? `${r.percentage}%` : '-',
    r.report.extension?.find((e) => e.url.endsWith('#threshold'))?.valueString ?? '',
    r.met === 'excluded' ? 'excluded' : r.met ? 'met' : 'not met',
  ]);
  const header = ['measure', 'numerator', 'denominator', 'percent', 'threshold', 'result'];
  const widths = header.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i].length)));
  const line = (c: string[]) => c.map((v, i) => (i >= 1 && i <= 3 ? v.padStart(widths[i]) : v.padEnd(widths[i]))).join('  ').trimEnd();
  return [line(header), ...cells.map(line)].join('\n');
}

async function main(): Promise<number> {
  let args: ReportArgs;
  try {
    args = readArgs(process.argv.slice(2));
  } catch (err) {
    const message = (err as Error).message;
    process.stderr.write(`${message ? `${message}\n\n` : ''}${USAGE}\n`);
    return message ? 2 : 0;
  }
  // A command line wants warnings only, on stderr, unless LOG_LEVEL says otherwise.
  const config = loadConfig({ LOG_LEVEL: 'warn', ...process.env });
  const app = await AppContext.fromConfig(config, { logger: createLogger(config.logLevel, process.stderr) });
  try {
    const evaluator = new MeasureEvaluator(app.db, app.store, { name: 'CareThread', version: SOFTWARE_VERSION });
    const sign = reportSigner(app.auth.keys);
    const ctx = systemContext();
    const period = `${args.input.periodStart}..${args.input.periodEnd}`;
    const audited = (outcome: '0' | '4') =>
      app.audit.enqueue(ctx, {
        interaction: 'operation',
        target: args.measure ? `Measure/${args.measure}` : 'Measure',
        outcome,
        detail: `${args.measure ? '$evaluate-measure' : `$attestation ${args.year}`} ${period} (npm run report)`,
      });
    const evaluated: Evaluated[] = [];
    try {
      for (const measureId of measureIds(args)) {
        evaluated.push(await evaluator.evaluate({ ...args.input, measureId }));
      }
    } catch (err) {
      // A refused run is on the record too (bad period, unknown measure or subject).
      if (err instanceof FhirError) {
        audited('4');
      }
      throw err;
    }
    audited('0');
    const reports: MeasureReport[] = [];
    for (const e of evaluated) {
      reports.push(withSignature(e.report, await sign(e.report)));
    }
    const json: MeasureReport | Bundle = args.measure
      ? reports[0]
      : { resourceType: 'Bundle', type: 'collection', timestamp: new Date().toISOString(), entry: reports.map((resource) => ({ resource })) };
    const jsonFile = path.resolve(`${args.out}.json`);
    const csvFile = path.resolve(`${args.out}.csv`);
    fs.mkdirSync(path.dirname(jsonFile), { recursive: true });
    fs.writeFileSync(jsonFile, `${JSON.stringify(json, null, 2)}\n`);
    fs.writeFileSync(csvFile, attestationCsv(evaluated));
    const first = evaluated[0];
    const who = [first.subjectName, first.npi ? `NPI ${first.npi}` : undefined, first.tin ? `TIN ${first.tin}` : undefined].filter(Boolean).join(', ');
    process.stdout.write(
      `${args.measure ? args.measure : `Program year ${args.year}`} for ${args.input.practitioner ?? args.input.organization}${who ? ` (${who})` : ''}, ${period}\n\n` +
        `${table(evaluated)}\n\n` +
        `Signed with key ${app.auth.keys.signingKey.kid}. Wrote ${path.relative(process.cwd(), jsonFile)} and ${path.relative(process.cwd(), csvFile)}.\n`
    );
    return 0;
  } finally {
    await app.close();
  }
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    if (err instanceof FhirError || err instanceof ConfigError) {
      process.stderr.write(`${err.message}\n`);
    } else {
      process.stderr.write(`The report failed: ${(err as Error)?.stack ?? String(err)}\n`);
    }
    process.exit(1);
  }
);
