-- 0014: files (issue 10): uploads a job reads and the outputs jobs write. The bytes live in
-- object storage (store/object_storage.py) under storage_key; this row is what the API knows.

CREATE TABLE files (
    id            uuid PRIMARY KEY,
    workspace_id  uuid NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    name          text NOT NULL CHECK (length(name) BETWEEN 1 AND 255),
    content_type  text NOT NULL CHECK (length(content_type) BETWEEN 1 AND 255),
    -- NULL while a signed upload URL is out and nothing has arrived at it yet.
    bytes         bigint CHECK (bytes >= 0),
    sha256        text CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    storage_key   text NOT NULL UNIQUE,
    purpose       text NOT NULL CHECK (purpose IN ('input', 'output')),
    -- An output belongs to its job, once per name: a job that runs twice replaces its output.
    job_id        uuid REFERENCES jobs(id) ON DELETE SET NULL,
    output_name   text CHECK (length(output_name) BETWEEN 1 AND 255),
    created_at    timestamptz NOT NULL DEFAULT now(),
    -- A pending upload's URL stops working then; the row is only a reservation until.
    upload_expires_at timestamptz,
    CHECK (purpose = 'input' OR output_name IS NOT NULL),
    UNIQUE (job_id, output_name)
);

CREATE INDEX files_workspace_created_idx ON files (workspace_id, created_at DESC, id DESC);
