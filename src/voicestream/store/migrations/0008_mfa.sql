-- 0008: second factors for people signing in (issue 9, item 1): TOTP, recovery codes, the
-- short-lived challenges between the first factor and the second, and passkeys (WebAuthn).
-- Nothing secret is stored in clear: the TOTP secret is AES-GCM sealed under a key derived from
-- the server secret (store/secrets.py), recovery codes and challenge tokens as SHA-256.

CREATE TABLE totp_factors (
    user_id         uuid PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    -- SecretBox-sealed base32 secret, bound to this user's row.
    secret_sealed   text NOT NULL CHECK (secret_sealed LIKE 'enc:%'),
    created_at      timestamptz NOT NULL DEFAULT now(),
    -- NULL until a first code proves the authenticator holds the secret; only then does
    -- sign-in ask for it.
    confirmed_at    timestamptz,
    -- Replay protection: the time step of the last code accepted; a code of that step or an
    -- earlier one is refused.
    last_used_step  bigint
);

CREATE TABLE recovery_codes (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id     uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    code_hash   bytea NOT NULL CHECK (octet_length(code_hash) = 32),
    created_at  timestamptz NOT NULL DEFAULT now(),
    used_at     timestamptz,
    UNIQUE (user_id, code_hash)
);

CREATE TABLE mfa_challenges (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id       uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    token_hash    bytea NOT NULL UNIQUE CHECK (octet_length(token_hash) = 32),
    -- How the first factor was shown (password, magic_link), for the audit entry.
    first_factor  text NOT NULL CHECK (char_length(first_factor) BETWEEN 1 AND 32),
    attempts      integer NOT NULL DEFAULT 0,
    created_at    timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz NOT NULL,
    used_at       timestamptz
);

CREATE INDEX mfa_challenges_user_idx ON mfa_challenges (user_id);

-- Passkeys (WebAuthn): a credential's public key is not secret, so it is stored as it is.
CREATE TABLE passkeys (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id       uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    -- WebAuthn §5.8.3: at most 1023 bytes; unique across all users (an authenticator's own).
    credential_id bytea NOT NULL UNIQUE CHECK (octet_length(credential_id) BETWEEN 1 AND 1023),
    public_key    bytea NOT NULL,  -- COSE_Key
    -- The authenticator's signature counter; one that goes backwards suggests a cloned key.
    sign_count    bigint NOT NULL DEFAULT 0 CHECK (sign_count >= 0),
    created_at    timestamptz NOT NULL DEFAULT now(),
    last_used_at  timestamptz
);

CREATE INDEX passkeys_user_idx ON passkeys (user_id);

-- A ceremony's challenge, single use: deleted when it is answered.
CREATE TABLE webauthn_challenges (
    challenge   bytea PRIMARY KEY CHECK (octet_length(challenge) = 32),
    purpose     text NOT NULL CHECK (purpose IN ('register', 'login')),
    -- The user registering a passkey; NULL for sign-in, where the passkey says who it is.
    user_id     uuid REFERENCES users (id) ON DELETE CASCADE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL
);

CREATE INDEX webauthn_challenges_expiry_idx ON webauthn_challenges (expires_at);
