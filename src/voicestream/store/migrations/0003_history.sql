-- 0003: speech history (ElevenLabs' /v1/history): past generations with their audio.
-- Applied inside one transaction by voicestream.store.migrate; never edit once released,
-- add a new numbered file instead.

CREATE TABLE history_items (
    -- ElevenLabs-style opaque ids (20 alphanumerics), made by the server before the audio.
    id                           text PRIMARY KEY CHECK (id ~ '^[A-Za-z0-9]{1,64}$'),
    workspace_id                 uuid NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    -- Kept when the key is deleted: the generation still belongs to the workspace.
    api_key_id                   uuid REFERENCES api_keys (id) ON DELETE SET NULL,
    request_id                   text,
    voice_id                     text NOT NULL,
    voice_name                   text,
    voice_category               text,
    model_id                     text,
    text                         text NOT NULL,
    -- The workspace's billed TTS characters before and after this generation.
    character_count_change_from  bigint NOT NULL CHECK (character_count_change_from >= 0),
    character_count_change_to    bigint NOT NULL
                                 CHECK (character_count_change_to >= character_count_change_from),
    output_format                text NOT NULL,
    content_type                 text NOT NULL,
    source                       text NOT NULL DEFAULT 'TTS' CHECK (source <> ''),
    settings                     jsonb CHECK (settings IS NULL OR jsonb_typeof(settings) = 'object'),
    audio_bytes                  integer NOT NULL CHECK (audio_bytes >= 0),
    created_at                   timestamptz NOT NULL DEFAULT now()
);

-- Listing pages newest first (or oldest first) within a workspace; id breaks ties.
CREATE INDEX history_items_workspace_time_idx ON history_items (workspace_id, created_at, id);
CREATE INDEX history_items_workspace_voice_idx
    ON history_items (workspace_id, voice_id, created_at, id);

-- The audio lives apart so that listings never read (or detoast) it.
CREATE TABLE history_audio (
    history_item_id  text PRIMARY KEY REFERENCES history_items (id) ON DELETE CASCADE,
    audio            bytea NOT NULL
);
