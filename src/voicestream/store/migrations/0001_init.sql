-- 0001: workspaces, API keys and usage accounting.
-- Applied inside one transaction by voicestream.store.migrate; never edit once released,
-- add a new numbered file instead.

CREATE TABLE workspaces (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name        text NOT NULL UNIQUE CHECK (name <> ''),
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE api_keys (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    workspace_id  uuid NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    name          text,
    -- First characters of the key, kept in clear so a key can be recognised and looked up
    -- without storing the secret part.
    prefix        text NOT NULL UNIQUE,
    -- SHA-256 of the whole key; the plaintext is never stored.
    key_hash      bytea NOT NULL UNIQUE CHECK (octet_length(key_hash) = 32),
    role          text NOT NULL DEFAULT 'owner'
                  CHECK (role IN ('owner', 'admin', 'editor', 'viewer')),
    created_at    timestamptz NOT NULL DEFAULT now(),
    last_used_at  timestamptz,
    revoked_at    timestamptz
);

CREATE INDEX api_keys_workspace_idx ON api_keys (workspace_id, created_at);

CREATE TABLE usage_records (
    id            bigserial PRIMARY KEY,
    workspace_id  uuid NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    -- Kept when a key is deleted so the workspace's totals do not change.
    api_key_id    uuid REFERENCES api_keys (id) ON DELETE SET NULL,
    kind          text NOT NULL CHECK (kind IN ('tts_characters', 'stt_seconds')),
    quantity      numeric NOT NULL CHECK (quantity >= 0),
    created_at    timestamptz NOT NULL DEFAULT now()
);

-- Totals are per workspace and kind over a time range.
CREATE INDEX usage_records_workspace_kind_time_idx
    ON usage_records (workspace_id, kind, created_at);
CREATE INDEX usage_records_api_key_idx
    ON usage_records (api_key_id) WHERE api_key_id IS NOT NULL;
