-- 0009: API keys as workspace resources (scopes, expiry, who made them, a project) and
-- invitations into a workspace by e-mail.

ALTER TABLE api_keys
    -- NULL: every scope. A key made before scopes existed keeps doing what it did.
    ADD COLUMN scopes text[]
        CHECK (cardinality(scopes) > 0
               AND scopes <@ ARRAY['tts', 'stt', 'convai', 'jobs', 'admin']::text[]),
    -- Past it the key fails authentication exactly as a revoked one does.
    ADD COLUMN expires_at timestamptz,
    -- The member who made it through the API: removing them from the workspace revokes it.
    ADD COLUMN created_by_user_id uuid REFERENCES users (id) ON DELETE SET NULL,
    ADD COLUMN project text CHECK (project <> '' AND length(project) <= 100);

-- What a member's removal revokes.
CREATE INDEX api_keys_creator_idx ON api_keys (workspace_id, created_by_user_id)
    WHERE created_by_user_id IS NOT NULL AND revoked_at IS NULL;

CREATE TABLE invitations (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    workspace_id        uuid NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    email               text NOT NULL CHECK (email <> '' AND length(email) <= 254),
    role                text NOT NULL CHECK (role IN ('owner', 'admin', 'editor', 'viewer')),
    -- SHA-256 of the single-use token mailed to the address; never stored in clear.
    token_hash          bytea NOT NULL UNIQUE CHECK (octet_length(token_hash) = 32),
    invited_by_user_id  uuid REFERENCES users (id) ON DELETE SET NULL,
    created_at          timestamptz NOT NULL DEFAULT now(),
    expires_at          timestamptz NOT NULL,
    accepted_at         timestamptz,
    accepted_by_user_id uuid REFERENCES users (id) ON DELETE SET NULL
);

CREATE INDEX invitations_workspace_idx ON invitations (workspace_id, created_at);
