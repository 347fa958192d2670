/**
 * Measure operations on the FHIR API, for auditors and administrators only (and audited):
 * - `GET|POST Measure/{id}/$evaluate-measure` — one measure; `reportType=summary|subject-list`,
 *   `save=true` stores the MeasureReport, `sign=true` adds a JWS signature;
 * - `GET Measure/$attestation?year=&practitioner=|organization=&periodStart=&periodEnd=` —
 *   every measure of a program year as a Bundle of MeasureReports, or CSV
 *   (`_format=csv` or `Accept: text/csv`).
 */
import type { Bundle, MeasureReport, Parameters } from '@medplum/fhirtypes';
import type { AccessContext } from '../access.js';
import { systemContext } from '../access.js';
import type { AuditLog } from '../audit/audit-log.js';
import { badRequest, forbidden } from '../errors.js';
import type { Operation, RestRequest } from '../rest/dispatch.js';
import type { ResourceStore } from '../store/store.js';
import { MEASURES, PROGRAM_YEARS } from './catalog.js';
import type { ProgramYear } from './catalog.js';
import { withSignature } from './canonical.js';
import { attestationCsv } from './csv.js';
import type { EvaluateInput, Evaluated, MeasureEvaluator } from './evaluate.js';

export type ReportSigner = (report: MeasureReport) => Promise<string>;
export type ReportVerifier = (report: MeasureReport) => Promise<{ valid: boolean; kid?: string; reason?: string }>;

export function measureOperations(
  evaluator: MeasureEvaluator,
  store: ResourceStore,
  audit: AuditLog,
  sign: ReportSigner,
  verify: ReportVerifier
): Record<string, Operation> {
  const finish = async (ctx: AccessContext, evaluated: Evaluated, params: Map<string, string>): Promise<MeasureReport> => {
    let report = evaluated.report;
    if (params.get('sign') === 'true') {
      report = withSignature(report, await sign(report));
    }
    if (params.get('save') === 'true') {
      const saved = await store.create(systemContext(ctx.requestId), report, 'MeasureReport');
      report = JSON.parse(saved.stored.content) as MeasureReport;
    }
    return report;
  };
  return {
    /** `POST MeasureReport/$verify` with a signed report: is the signature ours, and the report unchanged? */
    'MeasureReport/$verify': async (ctx, req) => {
      requireReporter(ctx);
      const report = req.body as MeasureReport;
      if (req.method !== 'POST' || report?.resourceType !== 'MeasureReport') {
        throw badRequest('POST a signed MeasureReport to $verify');
      }
      const result = await verify(report);
      const out: Parameters = {
        resourceType: 'Parameters',
        parameter: [
          { name: 'valid', valueBoolean: result.valid },
          ...(result.kid ? [{ name: 'kid', valueString: result.kid }] : []),
          ...(result.reason ? [{ name: 'reason', valueString: result.reason }] : []),
        ],
      };
      return { status: 200, body: JSON.stringify(out) };
    },
    'Measure/id/$evaluate-measure': async (ctx, req, id) => {
      requireReporter(ctx);
      const params = parameters(req);
      const evaluated = await evaluator.evaluate({ ...reportInput(params), measureId: id! });
      audit.enqueue(ctx, { interaction: 'operation', target: `Measure/${id}`, outcome: '0', detail: `$evaluate-measure ${params.get('periodStart')}..${params.get('periodEnd')}` });
      return { status: 200, body: JSON.stringify(await finish(ctx, evaluated, params)) };
    },
    'Measure/$attestation': async (ctx, req) => {
      requireReporter(ctx);
      const params = parameters(req);
      const year = params.get('year') as ProgramYear;
      if (!PROGRAM_YEARS.includes(year)) {
        throw badRequest(`year must be one of ${PROGRAM_YEARS.join(', ')}`, ['year']);
      }
      const input = reportInput(params);
      const hospital = Boolean(input.organization && !input.practitioner);
      const evaluated: Evaluated[] = [];
      for (const measure of MEASURES.filter((m) => m.hospital === hospital && m.thresholds[year])) {
        evaluated.push(await evaluator.evaluate({ ...input, measureId: `${measure.id}-${year}` }));
      }
      audit.enqueue(ctx, { interaction: 'operation', target: 'Measure', outcome: '0', detail: `$attestation ${year} ${params.get('periodStart')}..${params.get('periodEnd')}` });
      if (params.get('_format') === 'csv' || /text\/csv/.test(req.accept ?? '')) {
        return { status: 200, body: attestationCsv(evaluated), contentType: 'text/csv; charset=utf-8' };
      }
      const reports: MeasureReport[] = [];
      for (const e of evaluated) {
        reports.push(await finish(ctx, e, params));
      }
      const bundle: Bundle = { resourceType: 'Bundle', type: 'collection', timestamp: new Date().toISOString(), entry: reports.map((resource) => ({ resource })) };
      return { status: 200, body: JSON.stringify(bundle) };
    },
  };
}

function requireReporter(ctx: AccessContext): void {
  if (!ctx.system && ctx.role !== 'auditor' && !ctx.admin) {
    throw forbidden('Only an auditor or an administrator may run engagement reports');
  }
}

/** Operation parameters from the query, or from a Parameters body (POST). */
function parameters(req: RestRequest): Map<string, string> {
  const params = new Map(req.query);
  const body = req.body as Parameters | undefined;
  if (req.method === 'POST' && body?.resourceType === 'Parameters') {
    for (const p of body.parameter ?? []) {
      const value = p.valueDate ?? p.valueDateTime ?? p.valueString ?? p.valueCode ?? p.valueReference?.reference ?? (p.valueBoolean === undefined ? undefined : String(p.valueBoolean));
      if (value !== undefined) {
        params.set(p.name, value);
      }
    }
  } else if (req.method !== 'GET' && req.method !== 'POST') {
    throw badRequest('Use GET or POST');
  }
  return params;
}

function reportInput(params: Map<string, string>): Omit<EvaluateInput, 'measureId'> {
  const subject = params.get('subject');
  const practitioner = params.get('practitioner') ?? (subject?.startsWith('Practitioner/') ? subject : undefined);
  const organization = params.get('organization') ?? (subject?.startsWith('Organization/') ? subject : undefined);
  const reportType = params.get('reportType') ?? 'summary';
  if (reportType !== 'summary' && reportType !== 'subject-list') {
    throw badRequest('reportType must be summary or subject-list', ['reportType']);
  }
  return {
    periodStart: params.get('periodStart') ?? '',
    periodEnd: params.get('periodEnd') ?? '',
    practitioner,
    organization,
    reportType,
    exclusion: params.get('exclusion'),
  };
}
