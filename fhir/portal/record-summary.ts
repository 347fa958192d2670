/**
 * The health record as a person reads it: sections of short lines (visits, documents and
 * clinical summaries, appointments, message threads with their messages in order), built
 * from the record Bundle. The PDF download and the transmitted e-mail are made from it, so
 * they say the same thing.
 */
import type { Appointment, Bundle, Communication, DocumentReference, Encounter, HumanName, Patient, Reference, Resource } from '@medplum/fhirtypes';

export interface SummarySection {
  title: string;
  /** Entries; each is a heading line and its detail lines. */
  items: { heading: string; lines: string[] }[];
}

export interface RecordSummary {
  title: string;
  about: string[];
  sections: SummarySection[];
}

const THREAD_TAG_CODE = 'thread';

export function summarize(bundle: Bundle): RecordSummary {
  const resources = (bundle.entry ?? []).map((e) => e.resource).filter((r): r is Resource => Boolean(r));
  const of = <T extends Resource>(type: T['resourceType']) => resources.filter((r) => r.resourceType === type) as T[];
  const names = new Map<string, string>();
  for (const r of resources) {
    const name = nameOf(r);
    if (name) {
      names.set(`${r.resourceType}/${r.id}`, name);
    }
  }
  const who = (ref?: Reference) => ref?.display ?? (ref?.reference ? (names.get(ref.reference) ?? ref.reference) : 'unknown');
  const patient = of<Patient>('Patient')[0];
  const about = [
    `Name: ${patient ? (nameOf(patient) ?? 'not recorded') : 'not recorded'}`,
    ...(patient?.birthDate ? [`Date of birth: ${patient.birthDate}`] : []),
    ...(patient?.gender ? [`Gender: ${patient.gender}`] : []),
    `Prepared: ${formatInstant(bundle.timestamp)}`,
  ];

  const visits = of<Encounter>('Encounter')
    .sort(byDate((e) => e.period?.start))
    .map((e) => ({
      heading: `${formatInstant(e.period?.start)} - ${e.type?.[0]?.text ?? e.type?.[0]?.coding?.[0]?.display ?? classOf(e)}`,
      lines: [
        `Status: ${e.status}`,
        ...(e.participant ?? []).filter((p) => p.individual).map((p) => `With: ${who(p.individual)}`),
        ...(e.reasonCode ?? []).map((r) => `Reason: ${r.text ?? r.coding?.[0]?.display ?? r.coding?.[0]?.code ?? ''}`),
      ],
    }));

  const documents = of<DocumentReference>('DocumentReference')
    .sort(byDate((d) => d.date))
    .map((d) => ({
      heading: `${formatInstant(d.date)} - ${d.description ?? d.type?.text ?? d.type?.coding?.[0]?.display ?? 'Document'}`,
      lines: (d.content ?? []).map((c) => `File: ${c.attachment?.title ?? c.attachment?.contentType ?? 'attachment'}`),
    }));

  const appointments = of<Appointment>('Appointment')
    .sort(byDate((a) => a.start))
    .map((a) => ({
      heading: `${formatInstant(a.start)} - ${a.description ?? a.serviceType?.[0]?.text ?? 'Appointment'}`,
      lines: [`Status: ${a.status}`],
    }));

  const communications = of<Communication>('Communication');
  const isHeader = (c: Communication) => (c.meta?.tag ?? []).some((t) => t.code === THREAD_TAG_CODE);
  const headers = communications.filter(isHeader).sort(byDate((c) => c.sent));
  const inThread = (c: Communication) => c.partOf?.[0]?.reference?.replace(/^Communication\//, '');
  const messageLines = (c: Communication) => [
    `${formatInstant(c.sent)}, from ${who(c.sender)}:`,
    ...(c.payload ?? []).map((p) => (p.contentString !== undefined ? `  ${p.contentString}` : `  [Attachment: ${p.contentAttachment?.title ?? p.contentAttachment?.contentType ?? 'file'}]`)),
  ];
  const threads = headers.map((h) => ({
    heading: `${h.topic?.text ?? 'Conversation'} (${h.category?.[0]?.coding?.[0]?.display ?? h.category?.[0]?.coding?.[0]?.code ?? 'message'}, ${h.status === 'in-progress' ? 'open' : 'closed'})`,
    lines: communications
      .filter((c) => !isHeader(c) && inThread(c) === h.id)
      .sort(byDate((c) => c.sent))
      .flatMap(messageLines),
  }));
  const standalone = communications
    .filter((c) => !isHeader(c) && !c.partOf?.length)
    .sort(byDate((c) => c.sent))
    .map((c) => ({ heading: `${c.topic?.text ?? c.category?.[0]?.coding?.[0]?.display ?? c.category?.[0]?.coding?.[0]?.code ?? 'Message'}`, lines: messageLines(c) }));

  const sections: SummarySection[] = [
    { title: 'Visits', items: visits },
    { title: 'Documents and clinical summaries', items: documents },
    { title: 'Appointments', items: appointments },
    { title: 'Messages', items: [...threads, ...standalone] },
  ];
  return { title: `Health record: ${patient ? (nameOf(patient) ?? 'patient') : 'patient'}`, about, sections };
}

/** The summary as plain text (the e-mail body of a transmission). */
export function summaryText(summary: RecordSummary): string {
  const out = [summary.title, '', ...summary.about];
  for (const section of summary.sections) {
    out.push('', section.title.toUpperCase());
    if (!section.items.length) {
      out.push('  (none)');
    }
    for (const item of section.items) {
      out.push(`- ${item.heading}`, ...item.lines.map((l) => `    ${l}`));
    }
  }
  return out.join('\n');
}

function nameOf(resource: Resource): string | undefined {
  const named = resource as { name?: HumanName[] | string };
  if (typeof named.name === 'string') {
    return named.name;
  }
  const name = named.name?.[0];
  if (!name) {
    return undefined;
  }
  return name.text ?? [...(name.prefix ?? []), ...(name.given ?? []), name.family].filter(Boolean).join(' ');
}

function classOf(e: Encounter): string {
  const code = e.class?.code;
  return code === 'AMB' ? 'Office visit' : code === 'VR' ? 'Virtual visit' : code === 'IMP' ? 'Hospital stay' : code === 'EMER' ? 'Emergency visit' : 'Visit';
}

function byDate<T>(date: (r: T) => string | undefined): (a: T, b: T) => number {
  return (a, b) => (date(a) ?? '').localeCompare(date(b) ?? '');
}

function formatInstant(value?: string): string {
  if (!value) {
    return 'date not recorded';
  }
  // Dates without a time stay dates; instants are shown in UTC, minutes precision.
  return value.length <= 10 ? value : `${value.slice(0, 10)} ${value.slice(11, 16)} UTC`;
}
