-- The tamper-evident audit trail. AuditEvent rows get a sequence number at insert (requests
-- only insert; nothing waits on a shared lock). A sealer, apart from requests, appends each
-- committed row to audit_chain, where every entry's hash commits to the one before it.
-- Positions are assigned by the sealer (head + 1) rather than by a sequence, so a rolled-back
-- sealing pass leaves no gap and a gap always means a removed entry.
-- The audit tables refuse UPDATE, DELETE and TRUNCATE for everyone, the table owner included
-- (only disabling the triggers, which a verifier then catches, gets around them). The store
-- writes with INSERT … ON CONFLICT DO UPDATE; AuditEvents always have new ids, so only the
-- BEFORE UPDATE trigger of a real change ever fires.
ALTER TABLE "AuditEvent" ADD COLUMN seq bigserial;
CREATE UNIQUE INDEX "AuditEvent_seq" ON "AuditEvent" (seq);
CREATE TABLE audit_chain (
  position bigint PRIMARY KEY,
  audit_id text UNIQUE NOT NULL,
  seq bigint NOT NULL,
  hash text NOT NULL,
  prev_hash text NOT NULL,
  sealed_at timestamptz NOT NULL DEFAULT now(),
  -- The highest seq sealed up to this entry: bounds the sealer's scan for unsealed rows.
  max_seq bigint NOT NULL
);
CREATE INDEX audit_chain_sealed_at ON audit_chain (sealed_at);
CREATE FUNCTION audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'The audit trail is append-only: % on % refused', TG_OP, TG_TABLE_NAME USING ERRCODE = 'insufficient_privilege'; END $$;
CREATE TRIGGER audit_event_append_only BEFORE UPDATE OR DELETE ON "AuditEvent" FOR EACH ROW EXECUTE FUNCTION audit_append_only();
CREATE TRIGGER audit_event_no_truncate BEFORE TRUNCATE ON "AuditEvent" FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only();
CREATE TRIGGER audit_event_history_append_only BEFORE UPDATE OR DELETE ON "AuditEvent_History" FOR EACH ROW EXECUTE FUNCTION audit_append_only();
CREATE TRIGGER audit_event_history_no_truncate BEFORE TRUNCATE ON "AuditEvent_History" FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only();
CREATE TRIGGER audit_chain_append_only BEFORE UPDATE OR DELETE ON audit_chain FOR EACH ROW EXECUTE FUNCTION audit_append_only();
CREATE TRIGGER audit_chain_no_truncate BEFORE TRUNCATE ON audit_chain FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only();
