-- Indexes for the engagement measures (fhir/measures/populations.ts), which look up the
-- portal events of a thousand patients at once, and the clinical summaries of a thousand
-- visits. The full GIN indexes answer such lookups slowly: the server audits every request,
-- so a patient's entries in AuditEvent.r_entity are mostly REST interactions, not portal
-- events; and with fastupdate every lookup also scans the index's pending list, once per
-- looked-up key, and on tables written all day (AuditEvent, Communication) that list is
-- never empty (180 ms for one EP's seen patients on the benchmark practice).
-- These partial indexes hold only the rows a measure counts, take no pending entries
-- (fastupdate off), and are not touched by ordinary audit events and messages. A query uses
-- one by stating its predicate; populations.ts spells each exactly as here.
CREATE INDEX "AuditEvent_access_granted_entity" ON "AuditEvent" USING gin (r_entity) WITH (fastupdate = off)
  WHERE t_subtype && '{https://carethread.dev/fhir/CodeSystem/portal-event|access-granted}'::text[];
CREATE INDEX "AuditEvent_vdt_entity" ON "AuditEvent" USING gin (r_entity) WITH (fastupdate = off)
  WHERE t_subtype && '{https://carethread.dev/fhir/CodeSystem/portal-event|view,https://carethread.dev/fhir/CodeSystem/portal-event|download,https://carethread.dev/fhir/CodeSystem/portal-event|transmit}'::text[];
CREATE INDEX "Communication_summary_encounter" ON "Communication" USING gin (r_encounter) WITH (fastupdate = off)
  WHERE t_category && '{https://carethread.dev/fhir/CodeSystem/message-category|clinical-summary}'::text[];
