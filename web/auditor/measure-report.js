// Reading CareThread's MeasureReports the way the README documents them: the population
// counts coded with the measure-population system, and the rest (threshold, met, percentage,
// exclusion, names) in extensions of …/measure-report#<name>.
export const REPORT_EXTENSION = 'https://carethread.dev/fhir/StructureDefinition/measure-report';

export const PROGRAM_YEARS = [
  { value: '2014', label: '2014 (Stage 2)' },
  { value: '2015', label: '2015' },
  { value: '2016', label: '2016' },
  { value: '2017', label: '2017' },
  { value: 'stage3', label: 'Stage 3' },
];

export function extension(report, name) {
  const found = (report.extension ?? []).find((e) => e.url === `${REPORT_EXTENSION}#${name}`);
  return found?.valueString ?? found?.valueDecimal;
}

export function population(report, code) {
  return (report.group?.[0]?.population ?? []).find((p) => p.code?.coding?.some((c) => c.code === code));
}

/** `secure-messaging-2014` from the report's canonical `…/Measure/secure-messaging-2014`. */
export function measureId(report) {
  return String(report.measure ?? '').split('/').pop();
}

/** The measure's title, from "#measure-text": "<title> (<citation>). Denominator: …". */
export function measureTitle(report) {
  const text = String(extension(report, 'measure-text') ?? '');
  const head = text.split('. Denominator:')[0];
  // The citation is the last balanced "(…)", and may hold parentheses itself.
  let depth = 0;
  for (let i = head.length - 1; i >= 0 && head.endsWith(')'); i--) {
    depth += head[i] === ')' ? 1 : head[i] === '(' ? -1 : 0;
    if (depth === 0) {
      return head.slice(0, i).trim();
    }
  }
  return head || measureId(report);
}

/** One table row's worth of a report. */
export function summarize(report) {
  const numerator = population(report, 'numerator')?.count ?? 0;
  const denominator = population(report, 'denominator')?.count ?? 0;
  return {
    id: measureId(report),
    title: measureTitle(report),
    numerator,
    denominator,
    score: denominator > 0 ? numerator / denominator : undefined,
    percentage: extension(report, 'percentage') ?? '',
    threshold: extension(report, 'threshold') ?? '',
    thresholdFraction: extension(report, 'threshold-fraction'),
    met: extension(report, 'met') ?? '',
    exclusion: extension(report, 'exclusion') ?? '',
    subjectName: extension(report, 'subject-name') ?? '',
    npi: extension(report, 'npi') ?? '',
    tin: extension(report, 'tin') ?? '',
    policies: (report.extension ?? []).filter((e) => e.url === `${REPORT_EXTENSION}#policy`).map((e) => e.valueString),
  };
}

/** References in a population's drill-down List (subject-list reports). */
export function subjectList(report, code) {
  const target = population(report, code)?.subjectResults?.reference;
  const list = (report.contained ?? []).find((r) => r.resourceType === 'List' && `#${r.id}` === target);
  return (list?.entry ?? []).map((e) => e.item?.reference).filter(Boolean);
}
