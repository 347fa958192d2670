/**
 * Canonical JSON (RFC 8785 style: object keys sorted, no whitespace, JSON number text) of a
 * MeasureReport, the bytes a report signature covers. The server-assigned `id` and `meta`
 * and the signature itself are left out, so a saved report verifies like the one signed.
 */
import type { MeasureReport } from '@medplum/fhirtypes';

export const SIGNATURE_EXTENSION = 'https://carethread.dev/fhir/StructureDefinition/measure-report#signature';

export function canonicalJson(value: unknown): string {
  if (value === null || typeof value !== 'object') {
    return JSON.stringify(value);
  }
  if (Array.isArray(value)) {
    return `[${value.map(canonicalJson).join(',')}]`;
  }
  const entries = Object.entries(value as Record<string, unknown>)
    .filter(([, v]) => v !== undefined)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`;
}

/** The bytes a report's signature covers. */
export function signedContent(report: MeasureReport): string {
  const { id: _id, meta: _meta, ...rest } = report;
  return canonicalJson({ ...rest, extension: (rest.extension ?? []).filter((e) => e.url !== SIGNATURE_EXTENSION) });
}

export function withSignature(report: MeasureReport, jws: string): MeasureReport {
  return { ...report, extension: [...(report.extension ?? []).filter((e) => e.url !== SIGNATURE_EXTENSION), { url: SIGNATURE_EXTENSION, valueString: jws }] };
}

export function signatureOf(report: MeasureReport): string | undefined {
  return report.extension?.find((e) => e.url === SIGNATURE_EXTENSION)?.valueString;
}
