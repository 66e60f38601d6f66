-- 0022: enterprise identity. SAML 2.0 single sign-on per workspace and SCIM 2.0 provisioning.

-- One identity provider per workspace; its certificate is public, so it is stored in clear.
CREATE TABLE saml_connections (
    workspace_id     uuid PRIMARY KEY REFERENCES workspaces (id) ON DELETE CASCADE,
    idp_entity_id    text NOT NULL CHECK (idp_entity_id <> '' AND length(idp_entity_id) <= 1024),
    idp_sso_url      text NOT NULL CHECK (idp_sso_url <> '' AND length(idp_sso_url) <= 2048),
    idp_certificate  text NOT NULL,  -- PEM, the key the IdP signs responses or assertions with
    -- Just-in-time members get this role; never owner.
    default_role     text NOT NULL CHECK (default_role IN ('admin', 'editor', 'viewer')),
    -- Empty: any address the IdP vouches for; otherwise the address's domain must be listed.
    allowed_domains  text[] NOT NULL DEFAULT '{}',
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);

-- AuthnRequests we sent and not yet seen answered: a Response must name one (InResponseTo),
-- and each is answered once.
CREATE TABLE saml_requests (
    request_id    text PRIMARY KEY CHECK (length(request_id) <= 200),
    workspace_id  uuid NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    relay_state   text CHECK (length(relay_state) <= 1024),
    expires_at    timestamptz NOT NULL
);

CREATE INDEX saml_requests_expiry_idx ON saml_requests (expires_at);

-- Assertion ids already consumed, kept until they would have expired anyway: a replayed
-- assertion finds its id here.
CREATE TABLE saml_assertions_seen (
    workspace_id  uuid NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    assertion_id  text NOT NULL CHECK (length(assertion_id) <= 200),
    expires_at    timestamptz NOT NULL,
    PRIMARY KEY (workspace_id, assertion_id)
);

CREATE INDEX saml_assertions_seen_expiry_idx ON saml_assertions_seen (expires_at);

-- Bearer tokens an identity provider provisions a workspace with; SHA-256 only, shown once.
CREATE TABLE scim_tokens (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    workspace_id  uuid NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    name          text NOT NULL CHECK (name <> '' AND length(name) <= 100),
    token_hash    bytea NOT NULL UNIQUE CHECK (octet_length(token_hash) = 32),
    created_at    timestamptz NOT NULL DEFAULT now(),
    last_used_at  timestamptz,
    revoked_at    timestamptz
);

CREATE INDEX scim_tokens_workspace_idx ON scim_tokens (workspace_id, created_at);

-- How SCIM groups become roles: a group whose displayName is listed gives its members that role
-- (the highest wins); members of no listed group get default_role.
CREATE TABLE scim_settings (
    workspace_id  uuid PRIMARY KEY REFERENCES workspaces (id) ON DELETE CASCADE,
    default_role  text NOT NULL CHECK (default_role IN ('admin', 'editor', 'viewer')),
    group_roles   jsonb NOT NULL DEFAULT '{}',
    updated_at    timestamptz NOT NULL DEFAULT now()
);

-- SCIM resources as the IdP sent them (the document), with the columns we filter and act on.
CREATE TABLE scim_users (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    workspace_id  uuid NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    -- The account it provisions; NULL while its address is not a usable e-mail.
    user_id       uuid REFERENCES users (id) ON DELETE SET NULL,
    user_name     text NOT NULL CHECK (user_name <> '' AND length(user_name) <= 512),
    external_id   text CHECK (length(external_id) <= 512),
    display_name  text,
    active        boolean NOT NULL DEFAULT true,
    document      jsonb NOT NULL,
    version       integer NOT NULL DEFAULT 1,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);

-- userName is unique within a workspace, case-insensitively (RFC 7643 4.1.1: caseExact false).
CREATE UNIQUE INDEX scim_users_name_key ON scim_users (workspace_id, lower(user_name));
CREATE UNIQUE INDEX scim_users_account_key ON scim_users (workspace_id, user_id);
CREATE INDEX scim_users_external_idx ON scim_users (workspace_id, external_id);

CREATE TABLE scim_groups (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    workspace_id  uuid NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    display_name  text NOT NULL CHECK (display_name <> '' AND length(display_name) <= 512),
    external_id   text CHECK (length(external_id) <= 512),
    document      jsonb NOT NULL,
    version       integer NOT NULL DEFAULT 1,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);

CREATE UNIQUE INDEX scim_groups_name_key ON scim_groups (workspace_id, display_name);

CREATE TABLE scim_group_members (
    workspace_id  uuid NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    group_id      uuid NOT NULL REFERENCES scim_groups (id) ON DELETE CASCADE,
    scim_user_id  uuid NOT NULL REFERENCES scim_users (id) ON DELETE CASCADE,
    PRIMARY KEY (group_id, scim_user_id)
);

CREATE INDEX scim_group_members_user_idx ON scim_group_members (scim_user_id);
