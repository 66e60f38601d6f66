-- 0006: the audit log (issue 9, item 4): append-only, hash-chained records of critical actions.
-- Applied inside one transaction by voicestream.store.migrate; never edit once released,
-- add a new numbered file instead.

CREATE TABLE audit_log (
    -- Order of the chain: entries are appended under one advisory lock, so ids grow in chain
    -- order (a rolled-back append leaves a gap in the ids, never in the chain).
    id              bigserial PRIMARY KEY,
    -- No foreign keys: a record must outlive the workspace, user or key it names, and ON
    -- DELETE CASCADE / SET NULL would be a DELETE or UPDATE, which the table refuses.
    -- NULL for what happens before a workspace is chosen (signing in).
    workspace_id    uuid,
    actor_user_id   uuid,
    actor_key_id    uuid,
    -- How a reader recognises the actor: a key prefix, an e-mail, "cli".
    actor_display   text NOT NULL CHECK (char_length(actor_display) BETWEEN 1 AND 320),
    action          text NOT NULL CHECK (action ~ '^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$'),
    target_type     text CHECK (char_length(target_type) BETWEEN 1 AND 64),
    target_id       text CHECK (char_length(target_id) BETWEEN 1 AND 200),
    ip              inet,
    user_agent      text CHECK (char_length(user_agent) <= 512),
    -- Never secrets: ids, names, changed field names.
    details         jsonb NOT NULL DEFAULT '{}'::jsonb CHECK (jsonb_typeof(details) = 'object'),
    created_at      timestamptz NOT NULL,
    -- SHA-256 chain (voicestream.store.audit): prev_hash is the previous entry's hash (32 zero
    -- bytes for the first), hash covers prev_hash and every field above except id.
    prev_hash       bytea NOT NULL CHECK (octet_length(prev_hash) = 32),
    hash            bytea NOT NULL UNIQUE CHECK (octet_length(hash) = 32)
);

-- A workspace's log, newest first, and the same narrowed to one action or action family.
CREATE INDEX audit_log_workspace_idx ON audit_log (workspace_id, id DESC);
CREATE INDEX audit_log_workspace_action_idx
    ON audit_log (workspace_id, action text_pattern_ops, id DESC);

-- Append-only in the database too, so no bug (or a careless hand with psql) can rewrite
-- history: UPDATE, DELETE and TRUNCATE fail. Only dropping the triggers, which needs the table
-- owner, lifts this; `voicestream audit verify` still finds whatever was changed then.
CREATE FUNCTION audit_log_refuse_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only: % is not allowed', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;

CREATE TRIGGER audit_log_no_update_delete
    BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_refuse_change();

CREATE TRIGGER audit_log_no_truncate
    BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_refuse_change();
