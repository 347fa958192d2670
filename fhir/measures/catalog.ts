/**
 * The engagement measures of MEASURES.md, one entry per measure and program year: what the
 * denominator and numerator are, and the threshold that year. Measure resources with ids
 * `<measure>-<year>` are generated from this table.
 */
import type { Measure } from '@medplum/fhirtypes';

export type MeasureId =
  | 'secure-messaging'
  | 'vdt-access'
  | 'vdt-use'
  | 'reminders'
  | 'education'
  | 'clinical-summary'
  | 'vdt-access-eh'
  | 'vdt-use-eh'
  | 'education-eh';

export type ProgramYear = '2014' | '2015' | '2016' | '2017' | 'stage3';
export const PROGRAM_YEARS: ProgramYear[] = ['2014', '2015', '2016', '2017', 'stage3'];

/** A threshold: strictly more than `percent` %, at least `atLeast` patients, or a yes/no capability. */
export type Threshold = { kind: 'percent'; percent: number } | { kind: 'at-least'; count: number } | { kind: 'yes-no' };

export interface MeasureDefinition {
  id: MeasureId;
  title: string;
  hospital: boolean;
  /** What is counted: patients, or (clinical summaries) visits. */
  unit: 'patients' | 'visits';
  denominator: string;
  numerator: string;
  thresholds: Partial<Record<ProgramYear, Threshold>>;
  citation: Partial<Record<ProgramYear, string>>;
}

const pct = (percent: number): Threshold => ({ kind: 'percent', percent });
const atLeastOne: Threshold = { kind: 'at-least', count: 1 };

export const MEASURES: MeasureDefinition[] = [
  {
    id: 'secure-messaging',
    title: 'Secure electronic messaging',
    hospital: false,
    unit: 'patients',
    denominator: 'Unique patients seen by the EP during the reporting period.',
    numerator:
      '2014: patients in the denominator who (or whose authorized representative) sent a secure message to the EP that was received through CareThread during the period. 2015 onward: patients in the denominator to whom the EP sent a secure message, or to whose message the EP replied, during the period.',
    thresholds: { '2014': pct(5), '2015': { kind: 'yes-no' }, '2016': atLeastOne, '2017': pct(5), stage3: pct(5) },
    citation: { '2014': 'EP core 17 (42 CFR 495.6)', '2015': 'Objective 9 (42 CFR 495.22)', '2016': 'Objective 9', '2017': 'Objective 9', stage3: 'Objective 6 measure 2 (42 CFR 495.24)' },
  },
  {
    id: 'vdt-access',
    title: 'Patient electronic access: timely online access',
    hospital: false,
    unit: 'patients',
    denominator: 'Unique patients seen by the EP during the reporting period.',
    numerator:
      'Patients in the denominator whose health information was available online no later than 4 business days after it was available to the EP (patients who opted out count when they were given the URL, credentials and instructions).',
    thresholds: { '2014': pct(50), '2015': pct(50), '2016': pct(50), '2017': pct(50), stage3: pct(80) },
    citation: { '2014': 'EP core 7 measure 1', '2015': 'Objective 8 measure 1', '2016': 'Objective 8 measure 1', '2017': 'Objective 8 measure 1', stage3: 'Objective 5 measure 1' },
  },
  {
    id: 'vdt-use',
    title: 'Patient electronic access: view, download or transmit',
    hospital: false,
    unit: 'patients',
    denominator: 'Unique patients seen by the EP during the reporting period.',
    numerator: 'Patients in the denominator who (or whose authorized representative) viewed online, downloaded or transmitted to a third party their health information during the period.',
    thresholds: { '2014': pct(5), '2015': atLeastOne, '2016': atLeastOne, '2017': pct(5), stage3: pct(5) },
    citation: { '2014': 'EP core 7 measure 2', '2015': 'Objective 8 measure 2', '2016': 'Objective 8 measure 2', '2017': 'Objective 8 measure 2', stage3: 'Objective 6 measure 1' },
  },
  {
    id: 'reminders',
    title: 'Patient reminders',
    hospital: false,
    unit: 'patients',
    denominator: 'Unique patients with two or more office visits with the EP in the 24 months before the start of the reporting period.',
    numerator: 'Patients in the denominator who were sent a reminder for preventive or follow-up care during the period.',
    thresholds: { '2014': pct(10) },
    citation: { '2014': 'EP core 12' },
  },
  {
    id: 'education',
    title: 'Patient-specific education resources',
    hospital: false,
    unit: 'patients',
    denominator: 'Unique patients with an office visit with the EP during the reporting period.',
    numerator: 'Patients in the denominator who were given patient-specific education resources identified by CareThread.',
    thresholds: { '2014': pct(10), '2015': pct(10), '2016': pct(10), '2017': pct(10), stage3: pct(35) },
    citation: { '2014': 'EP core 13', '2015': 'Objective 6', '2016': 'Objective 6', '2017': 'Objective 6', stage3: 'Objective 5 measure 2' },
  },
  {
    id: 'clinical-summary',
    title: 'Clinical summaries',
    hospital: false,
    unit: 'visits',
    denominator: 'Office visits with the EP during the reporting period.',
    numerator: 'Office visits in the denominator for which a clinical summary was provided within one business day.',
    thresholds: { '2014': pct(50) },
    citation: { '2014': 'EP core 8' },
  },
  {
    id: 'vdt-access-eh',
    title: 'Patient electronic access (hospital): online within 36 hours of discharge',
    hospital: true,
    unit: 'patients',
    denominator: 'Unique patients discharged from the inpatient or emergency department (POS 21 or 23) during the reporting period.',
    numerator: 'Patients in the denominator whose information was available online within 36 hours of discharge.',
    thresholds: { '2014': pct(50), '2015': pct(50), '2016': pct(50), '2017': pct(50) },
    citation: { '2014': 'EH core 6 measure 1', '2015': 'Objective 8 measure 1', '2016': 'Objective 8 measure 1', '2017': 'Objective 8 measure 1' },
  },
  {
    id: 'vdt-use-eh',
    title: 'Patient electronic access (hospital): view, download or transmit',
    hospital: true,
    unit: 'patients',
    denominator: 'Unique patients discharged from the inpatient or emergency department during the reporting period.',
    numerator: 'Patients in the denominator who (or whose authorized representative) viewed, downloaded or transmitted their information (access before discharge counts).',
    thresholds: { '2014': pct(5), '2015': atLeastOne, '2016': atLeastOne, '2017': pct(5) },
    citation: { '2014': 'EH core 6 measure 2', '2015': 'Objective 8 measure 2', '2016': 'Objective 8 measure 2', '2017': 'Objective 8 measure 2' },
  },
  {
    id: 'education-eh',
    title: 'Patient-specific education resources (hospital)',
    hospital: true,
    unit: 'patients',
    denominator: 'Unique patients admitted to the inpatient or emergency department during the reporting period.',
    numerator: 'Patients in the denominator who were given patient-specific education resources.',
    thresholds: { '2014': pct(10), '2015': pct(10), '2016': pct(10), '2017': pct(10) },
    citation: { '2014': 'EH core 11', '2015': 'Objective 6', '2016': 'Objective 6', '2017': 'Objective 6' },
  },
];

export function measureDefinition(id: string): { definition: MeasureDefinition; year: ProgramYear } | undefined {
  const match = /^(.+)-(2014|2015|2016|2017|stage3)$/.exec(id);
  if (!match) {
    return undefined;
  }
  const definition = MEASURES.find((m) => m.id === match[1]);
  const year = match[2] as ProgramYear;
  return definition?.thresholds[year] ? { definition, year } : undefined;
}

export function thresholdText(threshold: Threshold): string {
  switch (threshold.kind) {
    case 'percent':
      return `more than ${threshold.percent}%`;
    case 'at-least':
      return `at least ${threshold.count} patient${threshold.count === 1 ? '' : 's'}`;
    case 'yes-no':
      return 'capability fully enabled (yes/no)';
  }
}

export const MEASURE_CANONICAL = 'https://carethread.dev/fhir/Measure';

/** The Measure resources, one per measure and program year. */
export function measureResources(): Measure[] {
  const result: Measure[] = [];
  for (const m of MEASURES) {
    for (const year of PROGRAM_YEARS) {
      const threshold = m.thresholds[year];
      if (!threshold) {
        continue;
      }
      const text = `${m.title} (${year === 'stage3' ? 'Stage 3' : `program year ${year}`}, ${m.citation[year]}). Denominator: ${m.denominator} Numerator: ${m.numerator} Threshold: ${thresholdText(threshold)}.`;
      result.push({
        resourceType: 'Measure',
        id: `${m.id}-${year}`,
        url: `${MEASURE_CANONICAL}/${m.id}-${year}`,
        version: year,
        name: `${m.id}-${year}`.replace(/[^A-Za-z0-9]/g, '_'),
        title: `${m.title} — ${year === 'stage3' ? 'Stage 3' : year}`,
        status: 'active',
        publisher: 'CareThread',
        description: text,
        text: { status: 'generated', div: `<div xmlns="http://www.w3.org/1999/xhtml">${escapeXml(text)}</div>` },
        scoring: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/measure-scoring', code: threshold.kind === 'yes-no' ? 'cohort' : 'proportion' }] },
        improvementNotation: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/measure-improvement-notation', code: 'increase' }] },
        group: [
          {
            population: [
              population('initial-population', m.denominator),
              population('denominator', m.denominator),
              population('denominator-exclusion', 'Attested or derived exclusion (no office visits in the period, broadband).'),
              population('numerator', m.numerator),
            ],
          },
        ],
      });
    }
  }
  return result;
}

function population(code: string, description: string): NonNullable<NonNullable<Measure['group']>[number]['population']>[number] {
  return {
    code: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/measure-population', code }] },
    description,
    criteria: { language: 'text/plain' as never, expression: description },
  };
}

function escapeXml(text: string): string {
  return text.replace(/[&<>]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;' })[c]!);
}
