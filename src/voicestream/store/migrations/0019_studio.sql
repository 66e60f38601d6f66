-- 0019: ElevenLabs Studio projects (issue 11). A studio project is a document: chapters of
-- blocks (a paragraph or a heading) of TTS nodes (a voice and its text). Not the timeline
-- projects of 0018: a different shape, kept apart. Conversion is a "studio_convert" job (0013);
-- its audio lives in files (0014) and is named by snapshots.
-- Ids are ElevenLabs-like opaque strings (20 hex characters).

CREATE TABLE studio_projects (
    id                          text PRIMARY KEY,
    workspace_id                uuid NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    name                        text NOT NULL CHECK (length(name) BETWEEN 1 AND 255),
    default_title_voice_id      text NOT NULL,
    default_paragraph_voice_id  text NOT NULL,
    default_model_id            text NOT NULL,
    quality_preset              text NOT NULL DEFAULT 'standard',
    volume_normalization        boolean NOT NULL DEFAULT false,
    acx_volume_normalization    boolean NOT NULL DEFAULT false,
    -- {"title", "author", "description", "language", "isbn_number", ...}: shown as given.
    metadata                    jsonb NOT NULL DEFAULT '{}',
    -- The last job converting the whole project: "converting" while it runs.
    job_id                      uuid REFERENCES jobs(id) ON DELETE SET NULL,
    last_conversion_at          timestamptz,
    created_at                  timestamptz NOT NULL DEFAULT now(),
    updated_at                  timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX studio_projects_workspace_idx ON studio_projects (workspace_id, created_at DESC);

CREATE TABLE studio_chapters (
    id                  text PRIMARY KEY,
    project_id          text NOT NULL REFERENCES studio_projects(id) ON DELETE CASCADE,
    position            integer NOT NULL,
    name                text NOT NULL CHECK (length(name) BETWEEN 1 AND 255),
    -- {"blocks": [{"block_id", "sub_type", "nodes": [{"type": "tts_node", "voice_id", "text"}]}]}
    content             jsonb NOT NULL,
    -- The last job converting this chapter (alone or with its project).
    job_id              uuid REFERENCES jobs(id) ON DELETE SET NULL,
    last_conversion_at  timestamptz,
    -- Characters of the content as it was last converted (statistics).
    converted_characters integer NOT NULL DEFAULT 0,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX studio_chapters_project_idx ON studio_chapters (project_id, position);

-- A converted chapter's audio (chapter_id set), or the whole project's (chapter_id null).
-- Written by the job once its file is saved, with an id derived from the job: a rerun of the
-- job writes the same row.
CREATE TABLE studio_snapshots (
    id           text PRIMARY KEY,
    project_id   text NOT NULL REFERENCES studio_projects(id) ON DELETE CASCADE,
    chapter_id   text REFERENCES studio_chapters(id) ON DELETE CASCADE,
    job_id       uuid REFERENCES jobs(id) ON DELETE SET NULL,
    name         text NOT NULL,
    file_id      uuid REFERENCES files(id) ON DELETE SET NULL,
    duration     double precision NOT NULL DEFAULT 0,
    created_at   timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX studio_snapshots_project_idx ON studio_snapshots (project_id, created_at DESC);
CREATE INDEX studio_snapshots_chapter_idx ON studio_snapshots (chapter_id, created_at DESC);
