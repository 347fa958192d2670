/**
 * The points CMS left open, as recorded policies (MEASURES.md "Points CMS left open"). Each
 * organization may set its own on its Organization resource (extension below); otherwise
 * the defaults apply. Every report prints the policies it used.
 */
import type { Extension, Organization } from '@medplum/fhirtypes';

export interface MeasurePolicies {
  /** Messages to a pool count for an EP who belongs to it, or only messages addressed to the EP. */
  pools: 'member-pools' | 'personal-only';
  /** 2015+: also count patient-sent messages (strict provider-sent by default). */
  countPatientSent: boolean;
  /** Whether consultative-only services and staff/NP/PA visits count as "seen by the EP". */
  seenBy: 'all-services' | 'exclude-consultative-and-staff';
  /** Reminders' two prior visits: with this EP, or with the practice. */
  reminderVisits: 'with-ep' | 'with-practice';
  /** Practice-specific holidays on top of US federal holidays (YYYY-MM-DD). */
  practiceHolidays: string[];
}

export const DEFAULT_POLICIES: MeasurePolicies = {
  pools: 'member-pools',
  countPatientSent: false,
  seenBy: 'all-services',
  reminderVisits: 'with-ep',
  practiceHolidays: [],
};

export const POLICY_EXTENSION = 'https://carethread.dev/fhir/StructureDefinition/measure-policy';

/** The policies an Organization records (extension `measure-policy`), over the defaults. */
export function policiesOf(organization: Organization | undefined, fallbackHolidays: string[] = []): MeasurePolicies {
  const policy = organization?.extension?.find((e) => e.url === POLICY_EXTENSION);
  const parts = policy?.extension ?? [];
  const code = (url: string) => parts.find((e) => e.url === url)?.valueCode;
  const pools = code('pools');
  const seenBy = code('seen-by');
  const reminderVisits = code('reminder-visits');
  const holidays = parts.filter((e) => e.url === 'holiday' && e.valueDate).map((e) => e.valueDate!);
  return {
    pools: pools === 'personal-only' ? 'personal-only' : DEFAULT_POLICIES.pools,
    countPatientSent: parts.find((e) => e.url === 'count-patient-sent')?.valueBoolean ?? DEFAULT_POLICIES.countPatientSent,
    seenBy: seenBy === 'exclude-consultative-and-staff' ? seenBy : DEFAULT_POLICIES.seenBy,
    reminderVisits: reminderVisits === 'with-practice' ? reminderVisits : DEFAULT_POLICIES.reminderVisits,
    practiceHolidays: holidays.length ? holidays : fallbackHolidays,
  };
}

/** The policies as printed in a report. */
export function describePolicies(policies: MeasurePolicies): string[] {
  return [
    `pools: ${policies.pools === 'member-pools' ? "messages to a pool count for an EP who belongs to it (patient in the EP's denominator)" : 'only messages addressed to the EP personally count'}`,
    `secure messaging 2015+: ${policies.countPatientSent ? 'provider-sent, provider-replied and patient-sent messages count' : 'only provider-sent or provider-replied messages count (strict)'}`,
    `seen by the EP: ${policies.seenBy === 'all-services' ? 'all services, including consultative-only and staff/NP/PA visits' : 'consultative-only services and staff/NP/PA visits excluded'}`,
    `reminders: two or more office visits ${policies.reminderVisits === 'with-ep' ? 'with this EP' : 'with the practice'} in the 24 months before the period`,
    `business days: Monday-Friday less US federal holidays (observed)${policies.practiceHolidays.length ? ` and practice holidays ${policies.practiceHolidays.join(', ')}` : ''}`,
    'days are UTC calendar days; a visit is in the period when it starts in it; timely access counts from the first visit in the period',
  ];
}

export type { Extension };
