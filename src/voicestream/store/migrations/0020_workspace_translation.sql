-- 0020: a workspace's own translator for dubbing: an OpenAI-compatible chat-completions
-- endpoint, used before the server's (VOICESTREAM_TRANSLATION_*). One per workspace.

CREATE TABLE workspace_translators (
    workspace_id     uuid PRIMARY KEY REFERENCES workspaces (id) ON DELETE CASCADE,
    base_url         text NOT NULL CHECK (char_length(base_url) BETWEEN 1 AND 2000),
    model            text NOT NULL CHECK (char_length(model) BETWEEN 1 AND 200),
    -- The endpoint's API key sealed with the server's key (store/secrets.py), bound to this
    -- workspace's row; NULL when the endpoint takes none.
    api_key_sealed   text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);
