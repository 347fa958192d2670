/**
 * `$evaluate-measure`: counts a measure's populations for an EP (or hospital) and period
 * and writes the MeasureReport an auditor holds the practice to: who it is for (name, NPI,
 * TIN), the system and version, program year, period, measure text, numerator,
 * denominator, score, threshold and met/not met (compared in integers, strictly), any
 * exclusion and its basis, the policies used, and on request the patient (or visit) lists.
 */
import type { Extension, List, MeasureReport, Organization, Practitioner } from '@medplum/fhirtypes';
import { systemContext } from '../access.js';
import { HolidayCalendar } from '../calendar/business-days.js';
import type { Database } from '../db/database.js';
import { badRequest, notFound } from '../errors.js';
import type { ResourceStore } from '../store/store.js';
import { MEASURE_CANONICAL, measureDefinition, thresholdText } from './catalog.js';
import type { MeasureDefinition, ProgramYear, Threshold } from './catalog.js';
import { describePolicies, policiesOf } from './policies.js';
import { countPopulations } from './populations.js';

export const REPORT_EXTENSION = 'https://carethread.dev/fhir/StructureDefinition/measure-report';
const NPI_SYSTEM = 'http://hl7.org/fhir/sid/us-npi';
const TIN_SYSTEM = 'urn:oid:2.16.840.1.113883.4.4';

export interface EvaluateInput {
  measureId: string;
  periodStart: string;
  periodEnd: string;
  /** `Practitioner/…` (EP measures). */
  practitioner?: string;
  /** `Organization/…`: the hospital (EH measures), or the EP's practice (for policies). */
  organization?: string;
  reportType: 'summary' | 'subject-list';
  /** Attested exclusion basis (e.g. broadband), if claimed. */
  exclusion?: string;
}

export interface Evaluated {
  report: MeasureReport;
  definition: MeasureDefinition;
  year: ProgramYear;
  numerator: number;
  denominator: number;
  met: boolean | 'excluded';
  percentage?: string;
  exclusion?: string;
  subjectName?: string;
  npi?: string;
  tin?: string;
}

export class MeasureEvaluator {
  constructor(
    private readonly db: Database,
    private readonly store: ResourceStore,
    private readonly software: { name: string; version: string }
  ) {}

  async evaluate(input: EvaluateInput): Promise<Evaluated> {
    const found = measureDefinition(input.measureId);
    if (!found) {
      throw notFound(`No measure ${input.measureId}`);
    }
    const { definition, year } = found;
    const start = parseDay(input.periodStart, 'periodStart');
    const endDay = parseDay(input.periodEnd, 'periodEnd');
    if (endDay < start) {
      throw badRequest('periodEnd must not be before periodStart', ['periodEnd']);
    }
    if (definition.hospital ? !input.organization : !input.practitioner) {
      throw badRequest(definition.hospital ? 'A hospital measure needs organization (or subject) = Organization/…' : 'An EP measure needs practitioner = Practitioner/…');
    }
    const practitioner = input.practitioner ? await this.read<Practitioner>(input.practitioner, 'Practitioner') : undefined;
    const organization = input.organization ? await this.read<Organization>(input.organization, 'Organization') : undefined;
    const policies = policiesOf(organization);
    const calendar = new HolidayCalendar(policies.practiceHolidays);
    const endExclusive = nextDayIso(endDay);
    const counts = await countPopulations(this.db, {
      measure: definition.id,
      year,
      practitioner: input.practitioner,
      organization: input.organization,
      start: `${start}T00:00:00Z`,
      end: `${endExclusive}T00:00:00Z`,
      policies,
      holidays: holidaysAround(calendar, start, endDay),
      lists: input.reportType === 'subject-list',
    });
    const threshold = definition.thresholds[year]!;
    const derivedExclusion =
      !definition.hospital && counts.officeVisits === 0
        ? `derived: no office visits with the EP ${definition.id === 'reminders' ? 'in the 24 months before' : 'in'} the reporting period`
        : undefined;
    const exclusion = input.exclusion ? `attested: ${input.exclusion}` : derivedExclusion;
    const met: boolean | 'excluded' = exclusion ? 'excluded' : meets(threshold, counts.numerator, counts.denominator);
    const percentage = counts.denominator > 0 ? percent(counts.numerator, counts.denominator) : undefined;
    const npi = practitioner?.identifier?.find((i) => i.system === NPI_SYSTEM)?.value;
    const tin = organization?.identifier?.find((i) => i.system === TIN_SYSTEM)?.value;
    const subjectName = practitioner ? nameOf(practitioner) : organization?.name;

    const contained: List[] = [];
    const population = (code: string, count: number, list?: string[]) => {
      let subjectResults;
      if (list) {
        const id = `${code}-list`;
        contained.push({
          resourceType: 'List',
          id,
          status: 'current',
          mode: 'snapshot',
          title: `${code} (${definition.unit})`,
          entry: list.map((reference) => ({ item: { reference } })),
        });
        subjectResults = { reference: `#${id}` };
      }
      return { code: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/measure-population', code }] }, count, ...(subjectResults ? { subjectResults } : {}) };
    };
    const extension: Extension[] = [
      { url: `${REPORT_EXTENSION}#program-year`, valueString: year },
      { url: `${REPORT_EXTENSION}#threshold`, valueString: thresholdText(threshold) },
      ...(threshold.kind === 'percent' ? [{ url: `${REPORT_EXTENSION}#threshold-fraction`, valueDecimal: threshold.percent / 100 }] : []),
      { url: `${REPORT_EXTENSION}#met`, valueString: met === 'excluded' ? 'excluded' : met ? 'met' : 'not met' },
      ...(exclusion ? [{ url: `${REPORT_EXTENSION}#exclusion`, valueString: exclusion }] : []),
      ...(percentage ? [{ url: `${REPORT_EXTENSION}#percentage`, valueString: `${percentage}%` }] : []),
      ...(threshold.kind === 'yes-no'
        ? [{ url: `${REPORT_EXTENSION}#evidence`, valueString: `Secure messaging is enabled in CareThread; ${counts.numerator} patient(s) in the denominator exchanged messages with the EP in the period.` }]
        : []),
      ...describePolicies(policies).map((text) => ({ url: `${REPORT_EXTENSION}#policy`, valueString: text })),
      { url: `${REPORT_EXTENSION}#measure-text`, valueString: `${definition.title} (${definition.citation[year]}). Denominator: ${definition.denominator} Numerator: ${definition.numerator}` },
      { url: `${REPORT_EXTENSION}#software`, valueString: `${this.software.name} ${this.software.version}` },
      ...(subjectName ? [{ url: `${REPORT_EXTENSION}#subject-name`, valueString: subjectName }] : []),
      ...(npi ? [{ url: `${REPORT_EXTENSION}#npi`, valueString: npi }] : []),
      ...(tin ? [{ url: `${REPORT_EXTENSION}#tin`, valueString: tin }] : []),
    ];
    // Built before the report: building them fills `contained` with the drill-down Lists.
    const populations = [
      population('initial-population', counts.denominator, counts.denominatorList),
      population('denominator', counts.denominator),
      population('denominator-exclusion', exclusion ? counts.denominator : 0),
      population('numerator', counts.numerator, counts.numeratorList),
    ];
    const report: MeasureReport = {
      resourceType: 'MeasureReport',
      ...(contained.length ? { contained } : {}),
      extension,
      status: 'complete',
      type: input.reportType === 'subject-list' ? 'subject-list' : 'summary',
      measure: `${MEASURE_CANONICAL}/${definition.id}-${year}`,
      ...(input.practitioner ? { subject: { reference: input.practitioner, display: subjectName } } : {}),
      date: new Date().toISOString(),
      reporter: { reference: input.practitioner ?? input.organization!, display: subjectName },
      period: { start, end: endDay },
      improvementNotation: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/measure-improvement-notation', code: 'increase' }] },
      group: [
        {
          population: populations,
          ...(counts.denominator > 0 ? { measureScore: { value: Number((counts.numerator / counts.denominator).toFixed(6)) } } : {}),
        },
      ],
    };
    return { report, definition, year, numerator: counts.numerator, denominator: counts.denominator, met, percentage, exclusion, subjectName, npi, tin };
  }

  private async read<T>(reference: string, type: string): Promise<T> {
    const [refType, id] = reference.split('/');
    if (refType !== type || !id) {
      throw badRequest(`Expected a ${type} reference, got ${reference}`);
    }
    return JSON.parse((await this.store.read(systemContext(), type, id)).content) as T;
  }
}

/** Strict thresholds compared in integers: more than 5% means numerator × 100 > 5 × denominator. */
export function meets(threshold: Threshold, numerator: number, denominator: number): boolean {
  switch (threshold.kind) {
    case 'percent':
      return denominator > 0 && numerator * 100 > threshold.percent * denominator;
    case 'at-least':
      return numerator >= threshold.count;
    case 'yes-no':
      return true;
  }
}

/** A percentage to two decimals, rounded half up, computed in integers. */
export function percent(numerator: number, denominator: number): string {
  const hundredths = Math.floor((numerator * 20000 + denominator) / (2 * denominator));
  return `${Math.floor(hundredths / 100)}.${String(hundredths % 100).padStart(2, '0')}`;
}

function parseDay(value: string, name: string): string {
  const day = value?.slice(0, 10);
  if (!day || !/^\d{4}-\d{2}-\d{2}$/.test(day) || Number.isNaN(Date.parse(`${day}T00:00:00Z`))) {
    throw badRequest(`${name} must be a date (YYYY-MM-DD)`, [name]);
  }
  return day;
}

function nextDayIso(day: string): string {
  return new Date(Date.parse(`${day}T00:00:00Z`) + 86_400_000).toISOString().slice(0, 10);
}

function holidaysAround(calendar: HolidayCalendar, start: string, end: string): string[] {
  const days = new Set<string>(calendar.practiceDays());
  // The business-day calendar runs a year past the period (see populations.ts).
  for (let year = Number(start.slice(0, 4)) - 1; year <= Number(end.slice(0, 4)) + 2; year++) {
    calendar.federalHolidays(year).forEach((d) => days.add(d));
  }
  return [...days].sort();
}

function nameOf(practitioner: Practitioner): string | undefined {
  const name = practitioner.name?.[0];
  return name?.text || [name?.prefix?.join(' '), name?.given?.join(' '), name?.family].filter(Boolean).join(' ') || undefined;
}
