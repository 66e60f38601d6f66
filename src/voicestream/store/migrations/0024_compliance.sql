-- 0024: compliance and data lifecycle (issue 12, item 4): retention policies, the HIPAA mode
-- and its settings, and the tombstones of deleted workspaces.
-- Applied inside one transaction by voicestream.store.migrate; never edit once released,
-- add a new numbered file instead.

-- Days each class of a workspace's data is kept; NULL keeps it for good. No row: keep all.
CREATE TABLE workspace_retention (
    workspace_id                 uuid PRIMARY KEY REFERENCES workspaces (id) ON DELETE CASCADE,
    conversation_transcripts_days integer CHECK (conversation_transcripts_days BETWEEN 1 AND 36500),
    conversation_audio_days      integer CHECK (conversation_audio_days BETWEEN 1 AND 36500),
    tts_history_days             integer CHECK (tts_history_days BETWEEN 1 AND 36500),
    job_outputs_days             integer CHECK (job_outputs_days BETWEEN 1 AND 36500),
    uploads_days                 integer CHECK (uploads_days BETWEEN 1 AND 36500),
    updated_at                   timestamptz NOT NULL DEFAULT now()
);

-- The HIPAA mode and the settings it makes stricter. No row: the mode is off.
CREATE TABLE workspace_compliance (
    workspace_id             uuid PRIMARY KEY REFERENCES workspaces (id) ON DELETE CASCADE,
    hipaa                    boolean NOT NULL DEFAULT false,
    -- Under HIPAA, TTS history and conversation audio are kept only when these say so.
    keep_tts_history         boolean NOT NULL DEFAULT false,
    keep_conversation_audio  boolean NOT NULL DEFAULT false,
    -- Requests from other addresses are refused; empty: any address.
    ip_allow_list            cidr[] NOT NULL DEFAULT '{}',
    -- Lifetime of access tokens minted for this workspace under HIPAA.
    access_token_minutes     integer NOT NULL DEFAULT 15 CHECK (access_token_minutes BETWEEN 1 AND 60),
    updated_at               timestamptz NOT NULL DEFAULT now()
);

-- A deletion request and, once done, its tombstone. Deliberately no foreign key: the record
-- must outlive the workspace it names (like audit_log), so the column is not "workspace_id"
-- either, which keeps it out of the generic per-workspace export and deletion.
CREATE TABLE workspace_deletions (
    id                     uuid PRIMARY KEY,
    deleted_workspace_id   uuid NOT NULL,
    workspace_name         text NOT NULL,
    requested_by           text NOT NULL CHECK (char_length(requested_by) BETWEEN 1 AND 320),
    -- sha256 of the receipt handed to the requester: it reads the record after its
    -- credentials have died with the workspace.
    receipt_hash           bytea NOT NULL CHECK (octet_length(receipt_hash) = 32),
    status                 text NOT NULL DEFAULT 'pending'
                               CHECK (status IN ('pending', 'deleted', 'failed')),
    counts                 jsonb NOT NULL DEFAULT '{}'::jsonb,
    -- What the check after the deletion found left (all zero once verified).
    remaining              jsonb,
    verified               boolean NOT NULL DEFAULT false,
    error                  text,
    requested_at           timestamptz NOT NULL DEFAULT now(),
    deleted_at             timestamptz,
    verified_at            timestamptz
);

-- One deletion in flight per workspace.
CREATE UNIQUE INDEX workspace_deletions_pending_idx
    ON workspace_deletions (deleted_workspace_id) WHERE status = 'pending';
