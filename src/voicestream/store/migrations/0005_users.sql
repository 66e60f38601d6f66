-- 0005: people who sign in, their workspace memberships, refresh tokens and e-mail tokens.
-- Secrets are never stored in clear: passwords as argon2id hashes, tokens as SHA-256.

CREATE TABLE users (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    email               text NOT NULL CHECK (email <> '' AND length(email) <= 254),
    -- argon2id PHC string; NULL for people who only ever sign in by magic link.
    password_hash       text,
    email_verified_at   timestamptz,
    created_at          timestamptz NOT NULL DEFAULT now(),
    disabled_at         timestamptz,
    -- Access tokens issued before this (password reset) are refused although unexpired.
    sessions_revoked_at timestamptz
);

-- One account per address whatever its case: Alice@x and alice@x are the same person.
CREATE UNIQUE INDEX users_email_lower_key ON users (lower(email));

CREATE TABLE memberships (
    workspace_id  uuid NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    user_id       uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role          text NOT NULL CHECK (role IN ('owner', 'admin', 'editor', 'viewer')),
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, workspace_id)
);

-- The primary key serves the per-request lookup (a user's membership); this one lists members.
CREATE INDEX memberships_workspace_idx ON memberships (workspace_id, created_at);

CREATE TABLE refresh_tokens (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    -- Every token rotated from one sign-in shares its family; reuse revokes the family.
    family_id   uuid NOT NULL,
    user_id     uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    token_hash  bytea NOT NULL UNIQUE CHECK (octet_length(token_hash) = 32),
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    used_at     timestamptz,  -- rotated: exchanged for its successor
    revoked_at  timestamptz
);

CREATE INDEX refresh_tokens_family_idx ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_user_idx ON refresh_tokens (user_id) WHERE revoked_at IS NULL;

CREATE TABLE email_tokens (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id     uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    purpose     text NOT NULL CHECK (purpose IN ('verify', 'magic', 'reset')),
    token_hash  bytea NOT NULL UNIQUE CHECK (octet_length(token_hash) = 32),
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    used_at     timestamptz
);

CREATE INDEX email_tokens_user_idx ON email_tokens (user_id, purpose);
