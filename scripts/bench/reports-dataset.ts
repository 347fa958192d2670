/**
 * The engagement-report benchmark's practice, written straight into PostgreSQL with bulk
 * `INSERT … SELECT generate_series` statements (a million messages through the store would
 * take hours): patients, EPs with roles and shared pools, representatives, three years of
 * encounters (2012–2014), messages of every kind the measures count, and portal events.
 *
 * Every row carries the search columns the store would write for its content (the same
 * token forms, references, date bounds with the exclusive upper second, compartments),
 * and `checkRows` re-derives them with the store's own extractor for a sample of each
 * type, so the measures' SQL runs over the same data it would in production. Randomness
 * is a hash of the row number: the same settings always give the same practice.
 */
import type pg from 'pg';

export interface ReportDatasetSize {
  patients: number;
  eps: number;
  encounters: number;
  messages: number;
  portalEvents: number;
}

const V3 = 'http://terminology.hl7.org/CodeSystem/v3-ActCode';
const KIND = 'https://carethread.dev/fhir/CodeSystem/encounter-kind';
const INFO = 'https://carethread.dev/fhir/StructureDefinition/information-available';
const CATEGORY = 'https://carethread.dev/fhir/CodeSystem/message-category';
const TAG = 'https://carethread.dev/fhir/CodeSystem/tag';
const PORTAL = 'https://carethread.dev/fhir/CodeSystem/portal-event';
const DCM = 'http://dicom.nema.org/resources/ontology/DCM';
const NPI = 'http://hl7.org/fhir/sid/us-npi';
const TIN = 'urn:oid:2.16.840.1.113883.4.4';
/** The data spans 2012-01-01 up to (not including) 2015-01-01. */
const FIRST_DAY = '2012-01-01';
const DAYS = 1096;
const LOADED_AT = '2015-01-02T00:00:00Z';
/** Every 20th patient has a representative (a parent, a guardian) with portal access. */
const REP_EVERY = 20;
/** EPs share pools five at a time. */
const POOL_SIZE = 5;

/** The tables the practice fills (their indexes are dropped during the load and rebuilt after). */
export const LOADED_TABLES = ['Patient', 'Practitioner', 'PractitionerRole', 'CareTeam', 'Organization', 'RelatedPerson', 'Encounter', 'Communication', 'AuditEvent'];

export const epReference = (k: number) => `Practitioner/bep${k}`;

const q = (text: string) => `'${text.replace(/'/g, "''")}'`;
const iso = (column: string) => `to_char(${column} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')`;
const token = (system: string, code: string) => `ARRAY[${code}, ${q(system)} || '|' || ${code}, ${q(`${system}|`)}]`;
const meta = `jsonb_build_object('versionId', '1', 'lastUpdated', ${q(LOADED_AT.replace('Z', '.000Z'))})`;
const rowStart = `id, version, last_updated, deleted, content, compartments`;
const rowValues = (id: string, content: string, compartments: string) => `${id}, 1, ${q(LOADED_AT)}::timestamptz, false, (${content})::text, ${compartments}`;

/** The statements that load the practice, in order, each with what it does. */
export function datasetStatements(size: ReportDatasetSize): { label: string; sql: string }[] {
  const { patients: P, eps: E, encounters: N, messages: M, portalEvents: A } = size;
  const pools = Math.ceil(E / POOL_SIZE);
  const primary = (n: string) => `((${n} - 1) % ${E}) + 1`;
  const r = (i: string, salt: number) => `pg_temp.r(${i}, ${salt})`;
  const anyTime = (i: string, salt: number) =>
    `(timestamptz ${q(`${FIRST_DAY}T00:00:00Z`)} + floor(${r(i, salt)} * ${DAYS}) * interval '1 day' + floor(${r(i, salt + 1)} * 86400) * interval '1 second')`;
  const statements: { label: string; sql: string }[] = [];
  const add = (label: string, sql: string) => statements.push({ label, sql });

  add(
    'helpers',
    `CREATE FUNCTION pg_temp.r(i bigint, salt int) RETURNS double precision IMMUTABLE LANGUAGE sql
       AS $$ SELECT (hashint8(i * 1000003 + salt) & 2147483647)::double precision / 2147483648.0 $$`
  );

  add(
    'organizations',
    `INSERT INTO "Organization" (${rowStart}, s_name, s_name_exact, s_phonetic, s_phonetic_exact, t_identifier)
     SELECT ${rowValues('id', `jsonb_build_object('resourceType', 'Organization', 'id', id, 'name', name, 'identifier', jsonb_build_array(jsonb_build_object('system', ${q(TIN)}, 'value', tin)), 'meta', ${meta})`, 'NULL')},
       ARRAY[lower(name)], ARRAY[name], ARRAY[lower(name)], ARRAY[name], ${token(TIN, 'tin')}
     FROM (VALUES ('bench-practice', 'Bench Family Practice', '12-3456789'), ('bench-hospital', 'Bench General Hospital', '98-7654321')) AS o(id, name, tin)`
  );

  add(
    `${E} EPs, their roles and ${pools} pools`,
    `WITH eps AS (SELECT k, 'bep' || k AS id, 'Ep' || k AS family, lpad((1000000000 + k)::text, 10, '0') AS npi FROM generate_series(1, ${E}) AS k),
     practitioners AS (
       INSERT INTO "Practitioner" (${rowStart}, s_family, s_family_exact, s_given, s_given_exact, s_name, s_name_exact, s_phonetic, s_phonetic_exact, t_identifier)
       SELECT ${rowValues(
         'id',
         `jsonb_build_object('resourceType', 'Practitioner', 'id', id, 'name', jsonb_build_array(jsonb_build_object('family', family, 'given', jsonb_build_array('Dana'))), 'identifier', jsonb_build_array(jsonb_build_object('system', ${q(NPI)}, 'value', npi)), 'meta', ${meta})`,
         'NULL'
       )},
         ARRAY[lower(family)], ARRAY[family], ARRAY['dana'], ARRAY['Dana'],
         ARRAY[lower(family), 'dana', 'dana ' || lower(family)], ARRAY[family, 'Dana', 'Dana ' || family],
         ARRAY[lower(family), 'dana', 'dana ' || lower(family)], ARRAY[family, 'Dana', 'Dana ' || family], ${token(NPI, 'npi')}
       FROM eps RETURNING 1)
     INSERT INTO "PractitionerRole" (${rowStart}, t_active, r_practitioner)
     SELECT ${rowValues(
       `'bepr' || k`,
       `jsonb_build_object('resourceType', 'PractitionerRole', 'id', 'bepr' || k, 'active', true, 'practitioner', jsonb_build_object('reference', 'Practitioner/' || id), 'meta', ${meta})`,
       'NULL'
     )}, ARRAY['true', '|true'], ARRAY['Practitioner/' || id]
     FROM eps`
  );
  add(
    'pools',
    `INSERT INTO "CareTeam" (${rowStart}, r_participant, t_status)
     SELECT ${rowValues(
       `'bpool' || j`,
       `jsonb_build_object('resourceType', 'CareTeam', 'id', 'bpool' || j, 'status', 'active', 'name', 'Pool ' || j,
          'participant', (SELECT jsonb_agg(jsonb_build_object('member', jsonb_build_object('reference', 'Practitioner/bep' || k)) ORDER BY k) FROM generate_series((j - 1) * ${POOL_SIZE} + 1, least(j * ${POOL_SIZE}, ${E})) AS k),
          'meta', ${meta})`,
       'NULL'
     )},
       ARRAY(SELECT 'Practitioner/bep' || k FROM generate_series((j - 1) * ${POOL_SIZE} + 1, least(j * ${POOL_SIZE}, ${E})) AS k ORDER BY k), ARRAY['active', '|active']
     FROM generate_series(1, ${pools}) AS j`
  );

  add(
    `${P.toLocaleString('en-US')} patients`,
    `INSERT INTO "Patient" (${rowStart}, t_deceased, s_family, s_family_exact, s_name, s_name_exact, s_phonetic, s_phonetic_exact)
     SELECT ${rowValues(`'bp' || n`, `jsonb_build_object('resourceType', 'Patient', 'id', 'bp' || n, 'name', jsonb_build_array(jsonb_build_object('family', 'Patient' || n)), 'meta', ${meta})`, `ARRAY['Patient/bp' || n]`)},
       ARRAY['false', '|false'], ARRAY['patient' || n], ARRAY['Patient' || n], ARRAY['patient' || n], ARRAY['Patient' || n], ARRAY['patient' || n], ARRAY['Patient' || n]
     FROM generate_series(1, ${P}) AS n`
  );
  add(
    'representatives',
    `INSERT INTO "RelatedPerson" (${rowStart}, t_active, s_name, s_name_exact, s_phonetic, s_phonetic_exact, r_patient)
     SELECT ${rowValues(
       `'brp' || n`,
       `jsonb_build_object('resourceType', 'RelatedPerson', 'id', 'brp' || n, 'active', true, 'patient', jsonb_build_object('reference', 'Patient/bp' || n), 'name', jsonb_build_array(jsonb_build_object('family', 'Parent' || n)), 'meta', ${meta})`,
       `ARRAY['Patient/bp' || n]`
     )},
       ARRAY['true', '|true'], ARRAY['parent' || n], ARRAY['Parent' || n], ARRAY['parent' || n], ARRAY['Parent' || n], ARRAY['Patient/bp' || n]
     FROM generate_series(${REP_EVERY}, ${P}, ${REP_EVERY}) AS n`
  );

  // Encounters: 90% with the patient's own EP; 85% office (AMB), 7% telehealth (VR), 3% home
  // health, 3% inpatient, 2% ED; 95% finished; 2% consultative-only; 10% of finished visits
  // carry the time the EHR marked their information available.
  add(
    'encounter plan',
    `CREATE TEMP TABLE enc AS
     SELECT i, n, ep, cls, status, consultative, start_at, end_at,
       CASE WHEN status = 'finished' AND ${r('i', 10)} < 0.1 THEN end_at + floor(${r('i', 11)} * 72 * 3600) * interval '1 second' END AS info_at
     FROM (
       SELECT i, n, CASE WHEN ${r('i', 2)} < 0.9 THEN ${primary('n')} ELSE 1 + floor(${r('i', 3)} * ${E})::int END AS ep, cls, status, ${r('i', 8)} < 0.02 AS consultative, start_at,
         CASE WHEN status = 'in-progress' THEN NULL
              WHEN cls = 'IMP' THEN start_at + (1 + floor(${r('i', 9)} * 5)) * interval '1 day'
              WHEN cls = 'EMER' THEN start_at + (2 + floor(${r('i', 9)} * 6)) * interval '1 hour'
              ELSE start_at + interval '30 minutes' END AS end_at
       FROM (
         SELECT i, 1 + floor(${r('i', 1)} * ${P})::int AS n,
           timestamptz ${q(`${FIRST_DAY}T00:00:00Z`)} + floor(${r('i', 4)} * ${DAYS}) * interval '1 day' + (8 * 3600 + floor(${r('i', 5)} * 9 * 3600)) * interval '1 second' AS start_at,
           CASE WHEN ${r('i', 6)} < 0.85 THEN 'AMB' WHEN ${r('i', 6)} < 0.92 THEN 'VR' WHEN ${r('i', 6)} < 0.95 THEN 'HH' WHEN ${r('i', 6)} < 0.98 THEN 'IMP' ELSE 'EMER' END AS cls,
           CASE WHEN ${r('i', 7)} < 0.95 THEN 'finished' WHEN ${r('i', 7)} < 0.98 THEN 'cancelled' ELSE 'in-progress' END AS status
         FROM generate_series(1, ${N}) AS i) plan) with_ep`
  );
  add(
    `${N.toLocaleString('en-US')} encounters`,
    `INSERT INTO "Encounter" (${rowStart}, t_class, d_date_lo, d_date_hi, r_participant, r_patient, r_practitioner, r_service_provider, t_status, r_subject, t_type)
     SELECT ${rowValues(
       `'be' || i`,
       `jsonb_build_object('resourceType', 'Encounter', 'id', 'be' || i, 'status', status,
          'class', jsonb_build_object('system', ${q(V3)}, 'code', cls),
          'subject', jsonb_build_object('reference', 'Patient/bp' || n),
          'participant', jsonb_build_array(jsonb_build_object('individual', jsonb_build_object('reference', 'Practitioner/bep' || ep))),
          'period', CASE WHEN end_at IS NULL THEN jsonb_build_object('start', ${iso('start_at')}) ELSE jsonb_build_object('start', ${iso('start_at')}, 'end', ${iso('end_at')}) END,
          'meta', ${meta})
        || CASE WHEN consultative THEN jsonb_build_object('type', jsonb_build_array(jsonb_build_object('coding', jsonb_build_array(jsonb_build_object('system', ${q(KIND)}, 'code', 'consultative'))))) ELSE '{}'::jsonb END
        || CASE WHEN cls IN ('IMP', 'EMER') THEN jsonb_build_object('serviceProvider', jsonb_build_object('reference', 'Organization/bench-hospital')) ELSE '{}'::jsonb END
        || CASE WHEN info_at IS NOT NULL THEN jsonb_build_object('extension', jsonb_build_array(jsonb_build_object('url', ${q(INFO)}, 'valueDateTime', ${iso('info_at')}))) ELSE '{}'::jsonb END`,
       `ARRAY['Patient/bp' || n]`
     )},
       ${token(V3, 'cls')}, start_at, COALESCE(end_at + interval '1 second', 'infinity'),
       ARRAY['Practitioner/bep' || ep], ARRAY['Patient/bp' || n], ARRAY['Practitioner/bep' || ep],
       CASE WHEN cls IN ('IMP', 'EMER') THEN ARRAY['Organization/bench-hospital'] END,
       ARRAY[status, '|' || status], ARRAY['Patient/bp' || n],
       CASE WHEN consultative THEN ${token(KIND, "'consultative'")} END
     FROM enc`
  );

  // Messages: 8% thread headers and 40% patient messages (to their EP, another EP or a pool;
  // 30% of a represented patient's written by the representative), 30% EP messages to the
  // patient (or representative), 4% EP-to-colleague notes about a patient, 8% reminders,
  // 6% education, 4% clinical summaries tied to an encounter and sent 0–3 days after it.
  add(
    'message plan',
    `CREATE TEMP TABLE msg AS
     SELECT i, kind, n, ep, sent, encounter,
       CASE kind WHEN 'header' THEN 'medical-question' WHEN 'patient' THEN 'medical-question' WHEN 'provider' THEN 'medical-question' WHEN 'colleague' THEN 'medical-question' ELSE kind END AS category,
       CASE WHEN kind IN ('header', 'patient') THEN
              CASE WHEN n % ${REP_EVERY} = 0 AND ${r('i', 23)} < 0.3 THEN 'RelatedPerson/brp' || n ELSE 'Patient/bp' || n END
            ELSE 'Practitioner/bep' || ep END AS sender,
       CASE WHEN kind IN ('header', 'patient') THEN
              CASE WHEN ${r('i', 24)} < 0.1 THEN 'CareTeam/bpool' || ((ep - 1) / ${POOL_SIZE} + 1) ELSE 'Practitioner/bep' || ep END
            WHEN kind = 'colleague' THEN 'Practitioner/bep' || (ep % ${E} + 1)
            ELSE CASE WHEN n % ${REP_EVERY} = 0 AND ${r('i', 25)} < 0.3 THEN 'RelatedPerson/brp' || n ELSE 'Patient/bp' || n END END AS recipient
     FROM (
       SELECT m.i, m.kind, COALESCE(e.n, m.n) AS n, COALESCE(e.ep, CASE WHEN ${r('m.i', 21)} < 0.85 THEN ${primary('m.n')} ELSE 1 + floor(${r('m.i', 22)} * ${E})::int END) AS ep,
         CASE WHEN e.i IS NOT NULL THEN date_trunc('second', e.start_at + floor(${r('m.i', 26)} * 3 * 86400) * interval '1 second') ELSE ${anyTime('m.i', 27)} END AS sent,
         CASE WHEN e.i IS NOT NULL THEN 'Encounter/be' || e.i END AS encounter
       FROM (
         SELECT i, 1 + floor(${r('i', 20)} * ${P})::int AS n,
           CASE WHEN ${r('i', 29)} < 0.08 THEN 'header' WHEN ${r('i', 29)} < 0.48 THEN 'patient' WHEN ${r('i', 29)} < 0.78 THEN 'provider'
                WHEN ${r('i', 29)} < 0.82 THEN 'colleague' WHEN ${r('i', 29)} < 0.90 THEN 'reminder' WHEN ${r('i', 29)} < 0.96 THEN 'education'
                ELSE 'clinical-summary' END AS kind
         FROM generate_series(1, ${M}) AS i) m
       LEFT JOIN enc e ON m.kind = 'clinical-summary' AND e.i = 1 + floor(${r('m.i', 30)} * ${N})::int) planned`
  );
  add(
    `${M.toLocaleString('en-US')} messages`,
    `INSERT INTO "Communication" (${rowStart}, t__tag, t_category, r_encounter, r_patient, r_recipient, r_sender, d_sent_lo, d_sent_hi, t_status, r_subject)
     SELECT ${rowValues(
       `'bm' || i`,
       `jsonb_build_object('resourceType', 'Communication', 'id', 'bm' || i, 'status', CASE WHEN kind = 'header' THEN 'in-progress' ELSE 'completed' END,
          'category', jsonb_build_array(jsonb_build_object('coding', jsonb_build_array(jsonb_build_object('system', ${q(CATEGORY)}, 'code', category)))),
          'subject', jsonb_build_object('reference', 'Patient/bp' || n),
          'sender', jsonb_build_object('reference', sender),
          'recipient', jsonb_build_array(jsonb_build_object('reference', recipient)),
          'sent', ${iso('sent')},
          'meta', CASE WHEN kind = 'header' THEN ${meta} || jsonb_build_object('tag', jsonb_build_array(jsonb_build_object('system', ${q(TAG)}, 'code', 'thread'))) ELSE ${meta} END)
        || CASE WHEN kind = 'header' THEN jsonb_build_object('topic', jsonb_build_object('text', 'A question')) ELSE jsonb_build_object('payload', jsonb_build_array(jsonb_build_object('contentString', 'Message text'))) END
        || CASE WHEN encounter IS NOT NULL THEN jsonb_build_object('encounter', jsonb_build_object('reference', encounter)) ELSE '{}'::jsonb END`,
       `ARRAY(SELECT DISTINCT x FROM unnest(ARRAY['Patient/bp' || n, sender, recipient]) AS x WHERE x LIKE 'Patient/%')`
     )},
       CASE WHEN kind = 'header' THEN ${token(TAG, "'thread'")} END,
       ${token(CATEGORY, 'category')}, CASE WHEN encounter IS NOT NULL THEN ARRAY[encounter] END,
       ARRAY['Patient/bp' || n], ARRAY[recipient], ARRAY[sender], sent, sent + interval '1 second',
       CASE WHEN kind = 'header' THEN ARRAY['in-progress', '|in-progress'] ELSE ARRAY['completed', '|completed'] END, ARRAY['Patient/bp' || n]
     FROM msg`
  );

  // Portal events: access granted once to 30% of them (a permutation of the patients), the
  // rest view (70%), download (20%) or transmit (10%); a represented patient's by the
  // representative 30% of the time.
  const granted = Math.min(P, Math.round(A * 0.3));
  add(
    'portal event plan',
    `CREATE TEMP TABLE portal AS
     SELECT i, n, code, at, CASE WHEN n % ${REP_EVERY} = 0 AND ${r('i', 43)} < 0.3 THEN 'RelatedPerson/brp' || n ELSE 'Patient/bp' || n END AS who
     FROM (
       SELECT i,
         CASE WHEN i <= ${granted} THEN 1 + ((i - 1) * 7919) % ${P} ELSE 1 + floor(${r('i', 40)} * ${P})::int END AS n,
         CASE WHEN i <= ${granted} THEN 'access-granted' WHEN ${r('i', 41)} < 0.7 THEN 'view' WHEN ${r('i', 41)} < 0.9 THEN 'download' ELSE 'transmit' END AS code,
         ${anyTime('i', 44)} AS at
       FROM generate_series(1, ${A}) AS i) planned`
  );
  add(
    `${A.toLocaleString('en-US')} portal events`,
    `INSERT INTO "AuditEvent" (${rowStart}, t_action, r_agent, d_date_lo, d_date_hi, r_entity, t_outcome, r_patient, t_subtype, t_type)
     SELECT ${rowValues(
       `'bpe' || i`,
       `jsonb_build_object('resourceType', 'AuditEvent', 'id', 'bpe' || i,
          'type', jsonb_build_object('system', ${q(DCM)}, 'code', '110110'),
          'subtype', jsonb_build_array(jsonb_build_object('system', ${q(PORTAL)}, 'code', code)),
          'action', CASE WHEN code = 'access-granted' THEN 'C' ELSE 'R' END, 'recorded', ${iso('at')}, 'outcome', '0',
          'agent', jsonb_build_array(jsonb_build_object('who', jsonb_build_object('reference', who), 'requestor', true)),
          'source', jsonb_build_object('observer', jsonb_build_object('display', 'CareThread portal')),
          'entity', jsonb_build_array(jsonb_build_object('what', jsonb_build_object('reference', 'Patient/bp' || n))),
          'meta', ${meta})`,
       `ARRAY['Patient/bp' || n]`
     )},
       CASE WHEN code = 'access-granted' THEN ARRAY['C', '|C'] ELSE ARRAY['R', '|R'] END, ARRAY[who], at, at + interval '1 second',
       ARRAY['Patient/bp' || n], ARRAY['0', '|0'], ARRAY['Patient/bp' || n], ${token(PORTAL, 'code')}, ${token(DCM, "'110110'")}
     FROM portal`
  );

  // What the store writes beside each row: its history version and the sorted reference indexes.
  for (const table of LOADED_TABLES) {
    add(`${table} history`, `INSERT INTO "${table}_History" (id, version, last_updated, deleted, content) SELECT id, version, last_updated, deleted, content FROM "${table}" WHERE last_updated = ${q(LOADED_AT)}`);
  }
  for (const [param, column] of [
    ['recipient', 'r_recipient'],
    ['part_of', 'r_part_of'],
    ['subject', 'r_subject'],
  ]) {
    add(
      `Communication_by_${param}_sent`,
      `INSERT INTO "Communication_by_${param}_sent" (target, sort, id) SELECT t.target, r.d_sent_lo, r.id FROM "Communication" r, unnest(r.${column}) AS t(target) WHERE NOT r.deleted AND r.last_updated = ${q(LOADED_AT)}`
    );
  }
  add('cleanup', 'DROP TABLE enc, msg, portal');
  return statements;
}

/** Drops a table's secondary indexes (returning their definitions) so a bulk load does not maintain them row by row. */
export async function dropIndexes(client: pg.Client, table: string): Promise<string[]> {
  const { rows } = await client.query<{ indexname: string; indexdef: string }>(
    `SELECT i.indexname, i.indexdef FROM pg_indexes i
       WHERE i.schemaname = 'public' AND i.tablename = $1
         AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conname = i.indexname)`,
    [table]
  );
  for (const row of rows) {
    await client.query(`DROP INDEX "${row.indexname}"`);
  }
  return rows.map((r) => r.indexdef);
}
