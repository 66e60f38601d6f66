-- 0010: sign-in with Google, GitHub and Apple (issue 9, item 1): which provider account belongs
-- to which user, and the short-lived state of each sign-in under way.

CREATE TABLE oauth_identities (
    -- 'google', 'github', 'apple'; free text so a provider added later needs no migration.
    provider      text NOT NULL CHECK (provider ~ '^[a-z][a-z0-9_]{0,31}$'),
    -- The provider's own stable id for the account (OIDC ``sub``, GitHub's numeric id): never
    -- the e-mail address, which can change hands.
    subject       text NOT NULL CHECK (char_length(subject) BETWEEN 1 AND 255),
    user_id       uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    -- The address the provider vouched for when it was last used, for people reading the table.
    email         text CHECK (length(email) <= 254),
    created_at    timestamptz NOT NULL DEFAULT now(),
    last_used_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (provider, subject)
);

CREATE INDEX oauth_identities_user_idx ON oauth_identities (user_id);

-- One row per sign-in started and not yet finished: taken (deleted) by the callback, so a
-- state works once. Keyed by the SHA-256 of the state the browser carries; the PKCE verifier
-- and the nonce never leave the server.
CREATE TABLE oauth_states (
    state_hash     bytea PRIMARY KEY CHECK (octet_length(state_hash) = 32),
    provider       text NOT NULL,
    code_verifier  text NOT NULL CHECK (char_length(code_verifier) BETWEEN 43 AND 128),
    nonce          text NOT NULL,
    redirect_uri   text NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    expires_at     timestamptz NOT NULL
);

CREATE INDEX oauth_states_expiry_idx ON oauth_states (expires_at);
