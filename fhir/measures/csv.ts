/**
 * The attestation as CSV: one row per measure with EP (or hospital) name, NPI, period,
 * numerator, denominator, percentage to two decimals, threshold, met and exclusion.
 */
import type { Evaluated } from './evaluate.js';

const HEADER = ['measure', 'program_year', 'name', 'npi', 'period_start', 'period_end', 'numerator', 'denominator', 'percentage', 'threshold', 'met', 'exclusion'];

export function attestationCsv(rows: Evaluated[]): string {
  const lines = [HEADER.join(',')];
  for (const r of rows) {
    const threshold = r.report.extension?.find((e) => e.url.endsWith('#threshold'))?.valueString ?? '';
    lines.push(
      [
        `${r.definition.id}-${r.year}`,
        r.year,
        r.subjectName ?? '',
        r.npi ?? '',
        r.report.period.start,
        r.report.period.end,
        r.numerator,
        r.denominator,
        r.percentage ?? '',
        threshold,
        r.met === 'excluded' ? 'excluded' : r.met ? 'yes' : 'no',
        r.exclusion ?? '',
      ]
        .map(cell)
        .join(',')
    );
  }
  return `${lines.join('\r\n')}\r\n`;
}

/** RFC 4180 quoting; a leading = + - @ is neutralized so a spreadsheet never runs it. */
function cell(value: unknown): string {
  let text = String(value ?? '');
  if (/^[=+\-@]/.test(text) && Number.isNaN(Number(text))) {
    text = `'${text}`;
  }
  return /[",\r\n]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
}
