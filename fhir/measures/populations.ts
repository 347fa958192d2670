/**
 * The counting, in SQL: one statement per measure over the resource tables, returning the
 * denominator and numerator counts (and, for drill-down, the sorted lists behind them).
 * Nothing is pulled into Node to be counted.
 *
 * Conventions (printed as policies in every report):
 * - a visit is a finished Encounter; office visits are class AMB or VR; the EP is a
 *   participant (directly or through one of their PractitionerRoles); a visit is in the
 *   period when it starts in it; days are UTC calendar days;
 * - "available to the EP" is the Encounter's information-available extension, else its end;
 *   timely access is measured from the patient's first visit with the EP in the period;
 * - a representative is a RelatedPerson whose `patient` is the patient.
 */
import type { Database } from '../db/database.js';
import { MESSAGE_CATEGORY_SYSTEM, PORTAL_EVENT_SYSTEM, THREAD_TAG } from '../messaging/codes.js';
import type { MeasureId, ProgramYear } from './catalog.js';
import type { MeasurePolicies } from './policies.js';

export const INFORMATION_AVAILABLE_EXTENSION = 'https://carethread.dev/fhir/StructureDefinition/information-available';
export const ENCOUNTER_KIND_SYSTEM = 'https://carethread.dev/fhir/CodeSystem/encounter-kind';

export interface PopulationInput {
  measure: MeasureId;
  year: ProgramYear;
  /** `Practitioner/…` for EP measures. */
  practitioner?: string;
  /** `Organization/…` (the hospital) for EH measures. */
  organization?: string;
  /** Inclusive start instant and exclusive end instant of the period. */
  start: string;
  end: string;
  policies: MeasurePolicies;
  /** Every holiday (YYYY-MM-DD) from a month before the period to a year after it. */
  holidays: string[];
  lists: boolean;
}

export interface PopulationCounts {
  denominator: number;
  numerator: number;
  /**
   * Office visits with the EP that the derived "no office visits" exclusion looks at: in the
   * period, or for reminders in the 24 months before it (CMS's exclusion for that measure).
   */
  officeVisits: number;
  denominatorList?: string[];
  numeratorList?: string[];
}

const THREAD = `${THREAD_TAG.system}|${THREAD_TAG.code}`;
const category = (code: string) => `${MESSAGE_CATEGORY_SYSTEM}|${code}`;
const portal = (...codes: string[]) => codes.map((c) => `${PORTAL_EVENT_SYSTEM}|${c}`);
/**
 * Portal events of a kind, and clinical summaries, as SQL conditions spelled exactly like the
 * predicates of the partial indexes of migration 0006 (a literal, not a parameter: the planner
 * uses a partial index only for a query that states its predicate).
 */
const arrayLiteral = (values: string[]) => `'{${values.join(',')}}'::text[]`;
const ACCESS_GRANTED = `t_subtype && ${arrayLiteral(portal('access-granted'))}`;
const VIEW_DOWNLOAD_TRANSMIT = `t_subtype && ${arrayLiteral(portal('view', 'download', 'transmit'))}`;
const CLINICAL_SUMMARY = `t_category && ${arrayLiteral([category('clinical-summary')])}`;

export async function countPopulations(db: Database, input: PopulationInput): Promise<PopulationCounts> {
  const params: unknown[] = [];
  const p = (value: unknown, cast: string) => {
    params.push(value);
    return `$${params.length}::${cast}`;
  };
  const start = p(input.start, 'timestamptz');
  const end = p(input.end, 'timestamptz');
  const holidays = p(input.holidays, 'date[]');
  const ctes: string[] = [];
  // Business-day calendar around the period: deadline(day, n) = the n-th business day after `day`.
  // It runs a year past the period: information on a visit in the period may become available
  // to the EP weeks later (laboratory results), and its deadline still has to be found.
  ctes.push(`days AS (
      SELECT d::date AS day, (extract(isodow FROM d) < 6 AND NOT (d::date = ANY(${holidays}))) AS business
        FROM generate_series((${start} - interval '30 days')::date, (${end} + interval '1 year')::date, interval '1 day') AS d),
    ranked AS (SELECT day, business, sum(business::int) OVER (ORDER BY day) AS n FROM days),
    biz AS (SELECT n, day FROM ranked WHERE business),
    deadline AS (SELECT r.day, b1.day AS plus1, b4.day AS plus4 FROM ranked r
        LEFT JOIN biz b1 ON b1.n = r.n + 1 LEFT JOIN biz b4 ON b4.n = r.n + 4)`);
  // The patient, or a representative of theirs: a RelatedPerson named in the column whose
  // `patient` is the patient. Found by id (a primary-key probe per candidate row); a scan of
  // every RelatedPerson per row cost seconds on a large practice.
  const byRepresentative = (column: string, patient: string) =>
    `(${column} @> ARRAY[${patient}] OR EXISTS (SELECT 1 FROM unnest(${column}) AS acting(ref) JOIN "RelatedPerson" r ON r.id = substr(acting.ref, 15)
        WHERE acting.ref LIKE 'RelatedPerson/%' AND NOT r.deleted AND r.r_patient @> ARRAY[${patient}]))`;

  if (input.practitioner) {
    const practitioner = p([input.practitioner], 'text[]');
    const excludedKinds = p(
      input.policies.seenBy === 'exclude-consultative-and-staff' ? [`${ENCOUNTER_KIND_SYSTEM}|consultative`, `${ENCOUNTER_KIND_SYSTEM}|staff-visit`] : [],
      'text[]'
    );
    ctes.push(`ep AS (SELECT unnest(${practitioner}) AS ref
        UNION SELECT 'PractitionerRole/' || id FROM "PractitionerRole" WHERE r_practitioner && ${practitioner} AND NOT deleted)`);
    ctes.push(`pools AS (SELECT 'CareTeam/' || id AS ref FROM "CareTeam" WHERE r_participant && ARRAY(SELECT ref FROM ep) AND NOT deleted
        UNION SELECT 'Group/' || id FROM "Group" WHERE r_member && ARRAY(SELECT ref FROM ep) AND NOT deleted)`);
    // Every use of `visits` lies in [start - 24 months, end): the period, and the reminders'
    // look-back. Bounding it keeps a practice's older years out of the materialized rows. Only
    // timely access reads the content (the information-available extension).
    const content = input.measure === 'vdt-access' ? 'e.content' : 'NULL::text AS content';
    ctes.push(`visits AS (SELECT e.id, s.patient, e.d_date_lo AS start_at, e.d_date_hi AS end_at, e.t_class && ARRAY['AMB', 'VR'] AS office, ${content}
        FROM "Encounter" e CROSS JOIN LATERAL unnest(e.r_subject) AS s(patient)
        WHERE NOT e.deleted AND e.t_status && ARRAY['finished'] AND s.patient LIKE 'Patient/%'
          AND (e.r_participant && ARRAY(SELECT ref FROM ep) OR e.r_practitioner && ARRAY(SELECT ref FROM ep))
          AND NOT (COALESCE(e.t_type, '{}') && ${excludedKinds})
          AND e.d_date_lo >= ${start} - interval '24 months' AND e.d_date_lo < ${end})`);
    ctes.push(`pv AS (SELECT * FROM visits WHERE start_at >= ${start} AND start_at < ${end})`);
    ctes.push(`seen AS (SELECT DISTINCT patient FROM pv)`);
  } else {
    const organization = p([input.organization ?? ''], 'text[]');
    ctes.push(`stays AS (SELECT e.id, s.patient, e.d_date_lo AS start_at, e.d_date_hi AS end_at, e.t_status && ARRAY['finished'] AS finished
        FROM "Encounter" e CROSS JOIN LATERAL unnest(e.r_subject) AS s(patient)
        WHERE NOT e.deleted AND e.t_class && ARRAY['IMP', 'EMER'] AND e.r_service_provider && ${organization} AND s.patient LIKE 'Patient/%'
          AND NOT e.t_status && ARRAY['cancelled', 'entered-in-error'])`);
    ctes.push(`discharged AS (SELECT patient, min(start_at) AS admitted, min(end_at) AS discharged_at FROM stays
        WHERE finished AND end_at >= ${start} AND end_at < ${end} GROUP BY patient)`);
    ctes.push(`admitted AS (SELECT patient, min(start_at) AS admitted FROM stays WHERE start_at >= ${start} AND start_at < ${end} GROUP BY patient)`);
  }

  // Messages by reference and sent time come from the store's sorted index tables
  // (fhir/search/sorted-indexes.ts): a (reference, sent, id) row for every recipient and every
  // subject of every live Communication, written in the message's own transaction. A b-tree
  // range per reference replaces a GIN lookup of hundreds of references (100-350 ms each on a
  // practice of 100,000 patients); the rows are the same.
  const messagesTo = (targets: string) =>
    `SELECT id FROM "Communication_by_recipient_sent" WHERE target = ANY(${targets}) AND sort >= ${start} AND sort < ${end}`;
  const messagesAbout = (patients: string) =>
    `"Communication_by_subject_sent" x JOIN "Communication" c ON c.id = x.id
          WHERE x.target = ANY(${patients}) AND x.sort >= ${start} AND x.sort < ${end} AND NOT c.deleted`;

  let denominator: string;
  let numerator: string;
  switch (input.measure) {
    case 'secure-messaging': {
      const header = p([THREAD], 'text[]');
      const targets = input.policies.pools === 'member-pools' ? 'ARRAY(SELECT ref FROM ep UNION SELECT ref FROM pools)' : 'ARRAY(SELECT ref FROM ep)';
      // Messages received by the EP (or a pool) in the period.
      const patientSent = `SELECT subj FROM "Communication" c CROSS JOIN LATERAL unnest(c.r_subject) AS m(subj)
          WHERE c.id IN (${messagesTo(targets)}) AND NOT c.deleted
            AND NOT (COALESCE(c.t__tag, '{}') && ${header}) AND ${byRepresentative('c.r_sender', 'subj')}`;
      // "Sent a secure message *to* the patient": a message about the patient written to a
      // colleague is not one; the patient or their representative must be a recipient. The
      // messages about the seen patients in the period, of which the EP is the sender (only
      // seen patients count).
      const providerSent = `SELECT subj FROM "Communication" c CROSS JOIN LATERAL unnest(c.r_subject) AS m(subj)
          WHERE c.id IN (SELECT x.id FROM ${messagesAbout('ARRAY(SELECT patient FROM seen)')}) AND NOT c.deleted AND c.r_sender && ARRAY(SELECT ref FROM ep)
            AND NOT (COALESCE(c.t__tag, '{}') && ${header}) AND ${byRepresentative('c.r_recipient', 'subj')}`;
      const sent = input.year === '2014' ? patientSent : input.policies.countPatientSent ? `${providerSent} UNION ${patientSent}` : providerSent;
      denominator = 'SELECT patient FROM seen';
      numerator = `SELECT patient FROM seen WHERE patient IN (${sent})`;
      break;
    }
    case 'vdt-access': {
      const ext = p(INFORMATION_AVAILABLE_EXTENSION, 'text');
      // The JSON is parsed only for visits whose text names the extension (most do not).
      ctes.push(`avail AS (SELECT patient, min(COALESCE(
            CASE WHEN strpos(content, ${ext}) > 0 THEN
              (SELECT (x ->> 'valueDateTime')::timestamptz FROM jsonb_array_elements(content::jsonb -> 'extension') x WHERE x ->> 'url' = ${ext} LIMIT 1) END,
            CASE WHEN end_at < 'infinity' THEN end_at END, start_at)) AS at FROM pv GROUP BY patient)`);
      ctes.push(`access AS (SELECT pt AS patient, min(a.d_date_lo) AS first FROM "AuditEvent" a CROSS JOIN LATERAL unnest(a.r_entity) AS e(pt)
          WHERE NOT a.deleted AND a.${ACCESS_GRANTED} AND a.r_entity && ARRAY(SELECT patient FROM seen) GROUP BY pt)`);
      denominator = 'SELECT patient FROM seen';
      numerator = `SELECT av.patient FROM avail av JOIN access ac ON ac.patient = av.patient JOIN deadline d ON d.day = (av.at AT TIME ZONE 'UTC')::date
          WHERE ac.first < (d.plus4 + 1)::timestamp AT TIME ZONE 'UTC'`;
      break;
    }
    case 'vdt-use': {
      denominator = 'SELECT patient FROM seen';
      // `r_entity && seen` (implied by `pt IN seen`) lets the index find the seen patients'
      // events instead of scanning every portal event of the period.
      numerator = `SELECT DISTINCT pt FROM "AuditEvent" a CROSS JOIN LATERAL unnest(a.r_entity) AS e(pt)
          WHERE NOT a.deleted AND a.${VIEW_DOWNLOAD_TRANSMIT} AND a.d_date_lo >= ${start} AND a.d_date_lo < ${end}
            AND a.r_entity && ARRAY(SELECT patient FROM seen)
            AND pt IN (SELECT patient FROM seen) AND ${byRepresentative('a.r_agent', 'pt')}`;
      break;
    }
    case 'reminders': {
      const reminder = p([category('reminder')], 'text[]');
      const priorVisits =
        input.policies.reminderVisits === 'with-practice'
          ? `SELECT s.patient FROM "Encounter" e CROSS JOIN LATERAL unnest(e.r_subject) AS s(patient)
               WHERE NOT e.deleted AND e.t_status && ARRAY['finished'] AND e.t_class && ARRAY['AMB', 'VR']
                 AND e.d_date_lo >= ${start} - interval '24 months' AND e.d_date_lo < ${start}`
          : `SELECT patient FROM visits WHERE office AND start_at >= ${start} - interval '24 months' AND start_at < ${start}`;
      ctes.push(`prior AS (SELECT patient FROM (${priorVisits}) v GROUP BY patient HAVING count(*) >= 2)`);
      denominator = 'SELECT patient FROM prior';
      numerator = `SELECT DISTINCT x.target FROM ${messagesAbout('ARRAY(SELECT patient FROM prior)')}
            AND c.t_category && ${reminder} AND ${byRepresentative('c.r_recipient', 'x.target')}`;
      break;
    }
    case 'education': {
      const education = p([category('education')], 'text[]');
      ctes.push(`office_patients AS (SELECT DISTINCT patient FROM pv WHERE office)`);
      denominator = 'SELECT patient FROM office_patients';
      numerator = `SELECT DISTINCT x.target FROM ${messagesAbout('ARRAY(SELECT patient FROM office_patients)')} AND c.t_category && ${education}`;
      break;
    }
    case 'clinical-summary': {
      ctes.push(`office_visits AS (SELECT DISTINCT id, patient, start_at,
          (CASE WHEN end_at < 'infinity' THEN end_at ELSE start_at END AT TIME ZONE 'UTC')::date AS day FROM pv WHERE office)`);
      denominator = `SELECT 'Encounter/' || id FROM office_visits`;
      // The summaries of these visits, found once through the encounter index (probing every
      // summary of the practice per visit took seconds).
      ctes.push(`summaries AS MATERIALIZED (SELECT x.encounter, c.d_sent_lo AS sent FROM "Communication" c CROSS JOIN LATERAL unnest(c.r_encounter) AS x(encounter)
          WHERE NOT c.deleted AND c.${CLINICAL_SUMMARY} AND c.r_encounter && ARRAY(SELECT 'Encounter/' || id FROM office_visits))`);
      numerator = `SELECT 'Encounter/' || v.id FROM office_visits v JOIN deadline d ON d.day = v.day
          WHERE EXISTS (SELECT 1 FROM summaries s WHERE s.encounter = 'Encounter/' || v.id
            AND s.sent >= v.start_at AND s.sent < (d.plus1 + 1)::timestamp AT TIME ZONE 'UTC')`;
      break;
    }
    case 'vdt-access-eh': {
      denominator = 'SELECT patient FROM discharged';
      numerator = `SELECT d.patient FROM discharged d WHERE EXISTS (SELECT 1 FROM "AuditEvent" a
          WHERE NOT a.deleted AND a.${ACCESS_GRANTED} AND a.r_entity @> ARRAY[d.patient] AND a.d_date_lo <= d.discharged_at + interval '36 hours')`;
      break;
    }
    case 'vdt-use-eh': {
      denominator = 'SELECT patient FROM discharged';
      // The discharged patients' events are found at once through the index (a probe per patient
      // took 13 s for a hospital's year); a patient counts when their latest one before the end
      // of the period is at or after their admission.
      ctes.push(`vdt AS (SELECT pt, max(a.d_date_lo) AS latest FROM "AuditEvent" a CROSS JOIN LATERAL unnest(a.r_entity) AS e(pt)
          WHERE NOT a.deleted AND a.${VIEW_DOWNLOAD_TRANSMIT} AND a.r_entity && ARRAY(SELECT patient FROM discharged) AND a.d_date_lo < ${end}
            AND ${byRepresentative('a.r_agent', 'pt')} GROUP BY pt)`);
      numerator = `SELECT d.patient FROM discharged d JOIN vdt v ON v.pt = d.patient WHERE v.latest >= d.admitted`;
      break;
    }
    case 'education-eh': {
      const education = p([category('education')], 'text[]');
      denominator = 'SELECT patient FROM admitted';
      // Admissions lie in the period, so each patient's messages from admission to the end of
      // the period are within the period's range of the subject index (a probe per patient
      // through the GIN index ran past the statement timeout for a hospital's year).
      numerator = `SELECT DISTINCT x.target FROM ${messagesAbout('ARRAY(SELECT patient FROM admitted)')} AND c.t_category && ${education}
            AND EXISTS (SELECT 1 FROM admitted d WHERE d.patient = x.target AND d.admitted <= x.sort)`;
      break;
    }
  }
  const officeVisits = !input.practitioner
    ? `(SELECT count(*) FROM stays WHERE start_at >= ${start} AND start_at < ${end})`
    : input.measure === 'reminders'
      ? `(SELECT count(*) FROM visits WHERE office AND start_at >= ${start} - interval '24 months' AND start_at < ${start})`
      : '(SELECT count(*) FROM pv WHERE office)';
  ctes.push(`den AS (${denominator})`, `num AS (${numerator})`);
  const lists = input.lists
    ? `, (SELECT array_agg(x ORDER BY x) FROM den AS t(x)) AS den_list, (SELECT array_agg(x ORDER BY x) FROM num AS t(x)) AS num_list`
    : '';
  const sql = `WITH ${ctes.join(',\n')}
    SELECT (SELECT count(*) FROM den) AS den_count, (SELECT count(*) FROM num) AS num_count, ${officeVisits} AS office_visits${lists}`;
  // JIT compilation of this plan costs more (0.5-1.5 s) than running it: off, for this statement only.
  const [row] = await db.transaction(async (tx) => {
    await tx.query('SET LOCAL jit = off');
    return tx.query(sql, params);
  });
  return {
    denominator: Number(row.den_count),
    numerator: Number(row.num_count),
    officeVisits: Number(row.office_visits),
    ...(input.lists ? { denominatorList: row.den_list ?? [], numeratorList: row.num_list ?? [] } : {}),
  };
}
