-- 0012: the web pages (origins) a workspace lets use its browser sockets, WebRTC calls and
-- widget, besides the server's own and VOICESTREAM_ALLOWED_ORIGINS.

ALTER TABLE workspaces
    -- Normalized scheme://host[:port], no wildcard (identity/page_origins.py checks them).
    ADD COLUMN allowed_origins text[] NOT NULL DEFAULT '{}'
        CHECK (cardinality(allowed_origins) <= 100);

-- "Does any workspace list this origin?": the widget script and the WebRTC preflight, which
-- name no workspace.
CREATE INDEX workspaces_allowed_origins_idx ON workspaces USING gin (allowed_origins);
