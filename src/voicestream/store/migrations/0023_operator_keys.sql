-- Keys of the server's operator: server-wide, in no workspace (so not a workspace's data, and
-- no workspace_id), minted only from the command line. They read the cross-workspace views
-- (/v1/operator/...) and nothing else; identity/policy.py refuses them everywhere else.
CREATE TABLE operator_keys (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name          text CHECK (name IS NULL OR length(name) <= 200),
    -- Same shape and lookup as api_keys.prefix: a key is recognised without its secret.
    prefix        text NOT NULL UNIQUE,
    key_hash      bytea NOT NULL UNIQUE CHECK (octet_length(key_hash) = 32),
    created_at    timestamptz NOT NULL DEFAULT now(),
    last_used_at  timestamptz,
    revoked_at    timestamptz,
    expires_at    timestamptz
);
