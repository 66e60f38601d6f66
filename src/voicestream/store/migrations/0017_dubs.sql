-- 0017: dubs (issue 11). A dub is a source media file of a workspace, what the dubbing job
-- learnt from it (the plan: segments, speakers, translations) and its outputs per language.
-- The bytes live in files (0014); the work is done by "dubbing" jobs (0013).

CREATE TABLE dubs (
    id                 uuid PRIMARY KEY,
    workspace_id       uuid NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    name               text NOT NULL CHECK (length(name) BETWEEN 1 AND 255),
    -- ElevenLabs' words, which the native API shows too.
    status             text NOT NULL DEFAULT 'dubbing'
                       CHECK (status IN ('dubbing', 'dubbed', 'failed')),
    source_file_id     uuid REFERENCES files(id) ON DELETE SET NULL,
    background_file_id uuid REFERENCES files(id) ON DELETE SET NULL,
    foreground_file_id uuid REFERENCES files(id) ON DELETE SET NULL,
    -- Whether the dub owns its source (uploaded with it) or borrowed an uploaded file_id:
    -- deleting the dub deletes only what it owns.
    owns_source        boolean NOT NULL DEFAULT true,
    options            jsonb NOT NULL,          -- dubbing.model.DubOptions
    -- Supplied translations: {"lines": [SuppliedLine], "subtitles": {lang: [[start, end, text]]}}
    supplied           jsonb NOT NULL DEFAULT '{}',
    -- What the upload is: {"content_type", "duration", "has_video"}
    media              jsonb NOT NULL DEFAULT '{}',
    plan               jsonb,                   -- dubbing.model.DubPlan, once analysed
    -- language -> {"file_id", "format", "content_type", "duration", "srt", "vtt", ...}
    outputs            jsonb NOT NULL DEFAULT '{}',
    error              text,
    job_id             uuid REFERENCES jobs(id) ON DELETE SET NULL,
    version            integer NOT NULL DEFAULT 1,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now()
);

-- Listing: newest first, keyset paging on (created_at, id).
CREATE INDEX dubs_workspace_created_idx ON dubs (workspace_id, created_at DESC, id DESC);
