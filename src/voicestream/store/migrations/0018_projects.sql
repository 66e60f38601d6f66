-- 0018: studio projects (issue 11): a project and every version of its timeline. A version is
-- never changed once written: an edit or a restore adds the next one, so a render of version n
-- is the same render tomorrow.

CREATE TABLE projects (
    id               uuid PRIMARY KEY,
    workspace_id     uuid NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    name             text NOT NULL CHECK (char_length(name) BETWEEN 1 AND 200),
    -- The newest version's number; the optimistic-concurrency token of a change.
    current_version  integer NOT NULL CHECK (current_version >= 1),
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX projects_workspace_idx ON projects (workspace_id, created_at DESC, id DESC);

CREATE TABLE project_versions (
    project_id       uuid NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    version          integer NOT NULL CHECK (version >= 1),
    -- The whole timeline (projects/timeline.py's Timeline as JSON).
    timeline         jsonb NOT NULL,
    -- Who made it: a person's id, or NULL for an API key (author_key_id then).
    author_user_id   uuid,
    author_key_id    uuid,
    summary          text NOT NULL DEFAULT '' CHECK (char_length(summary) <= 500),
    created_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (project_id, version)
);
