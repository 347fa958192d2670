/**
 * Who may be messaged about a patient, and who belongs to which pool. A patient's care team
 * is every practitioner with an encounter or care-team link to them; pools are CareTeams
 * (the patient's own, or practice-wide ones without a subject) and Groups of practitioners.
 */
import type { Queryable } from '../db/database.js';

/** The recipients (`Practitioner/…`, `PractitionerRole/…`, `CareTeam/…`, `Group/…`) allowed for a patient. */
export async function allowedRecipients(db: Queryable, patient: string, candidates: string[]): Promise<Set<string>> {
  const practitioners = candidates.filter((c) => c.startsWith('Practitioner/'));
  const roles = candidates.filter((c) => c.startsWith('PractitionerRole/')).map((c) => c.slice('PractitionerRole/'.length));
  const careTeams = candidates.filter((c) => c.startsWith('CareTeam/')).map((c) => c.slice('CareTeam/'.length));
  const groups = candidates.filter((c) => c.startsWith('Group/')).map((c) => c.slice('Group/'.length));
  const allowed = new Set<string>();
  // Practitioners (directly or through one of their roles) on the patient's care team.
  const roleRows = roles.length
    ? await db.query<{ id: string; practitioner: string[] }>(
        `SELECT id, r_practitioner AS practitioner FROM "PractitionerRole" WHERE id = ANY($1::text[]) AND NOT deleted`,
        [roles]
      )
    : [];
  const people = [...new Set([...practitioners, ...roleRows.flatMap((r) => r.practitioner ?? [])])];
  if (people.length) {
    const rows = await db.query<{ ref: string }>(
      `SELECT DISTINCT ref FROM (
         SELECT unnest(r_participant || COALESCE(r_practitioner, '{}')) AS ref FROM "Encounter" WHERE r_subject @> ARRAY[$1::text] AND NOT deleted
         UNION ALL SELECT unnest(r_participant) FROM "CareTeam" WHERE r_subject @> ARRAY[$1::text] AND NOT deleted
       ) team WHERE ref = ANY($2::text[])`,
      [patient, people]
    );
    const onTeam = new Set(rows.map((r) => r.ref));
    practitioners.filter((p) => onTeam.has(p)).forEach((p) => allowed.add(p));
    roleRows.filter((r) => (r.practitioner ?? []).some((p) => onTeam.has(p))).forEach((r) => allowed.add(`PractitionerRole/${r.id}`));
  }
  if (careTeams.length) {
    const rows = await db.query<{ id: string }>(
      `SELECT id FROM "CareTeam" WHERE id = ANY($1::text[]) AND NOT deleted AND (r_subject IS NULL OR r_subject @> ARRAY[$2::text])
         AND t_status && ARRAY['active', 'proposed']`,
      [careTeams, patient]
    );
    rows.forEach((r) => allowed.add(`CareTeam/${r.id}`));
  }
  if (groups.length) {
    const rows = await db.query<{ id: string }>(
      `SELECT id FROM "Group" WHERE id = ANY($1::text[]) AND NOT deleted AND t_type && ARRAY['practitioner']`,
      [groups]
    );
    rows.forEach((r) => allowed.add(`Group/${r.id}`));
  }
  return allowed;
}

/** The pools (CareTeam/Group references) a practitioner belongs to, and their own roles. */
export async function identitiesOf(db: Queryable, practitioner: string): Promise<string[]> {
  const rows = await db.query<{ ref: string }>(
    `WITH me AS (
       SELECT $1::text AS ref
       UNION SELECT 'PractitionerRole/' || id FROM "PractitionerRole" WHERE r_practitioner @> ARRAY[$1::text] AND NOT deleted
     )
     SELECT ref FROM me
     UNION SELECT 'CareTeam/' || id FROM "CareTeam" WHERE r_participant && ARRAY(SELECT ref FROM me) AND NOT deleted
     UNION SELECT 'Group/' || id FROM "Group" WHERE r_member && ARRAY(SELECT ref FROM me) AND NOT deleted`,
    [practitioner]
  );
  return rows.map((r) => r.ref);
}

/** Whether two practitioners share a pool (a staff member may then write on the other's behalf). */
export async function sharePool(db: Queryable, a: string, b: string): Promise<boolean> {
  const [mine, theirs] = await Promise.all([identitiesOf(db, a), identitiesOf(db, b)]);
  const pools = (refs: string[]) => refs.filter((r) => r.startsWith('CareTeam/') || r.startsWith('Group/'));
  const theirPools = new Set(pools(theirs));
  return pools(mine).some((p) => theirPools.has(p));
}
