-- 0025: content moderation (issue 12): each workspace's policy, and its review queue of texts
-- that were borderline (held for a person) or decided (an approved text passes from then on).

CREATE TABLE moderation_policies (
    workspace_id      uuid PRIMARY KEY REFERENCES workspaces (id) ON DELETE CASCADE,
    block_terms       text[] NOT NULL DEFAULT '{}',
    review_terms      text[] NOT NULL DEFAULT '{}',
    -- The endpoint's categories that count; empty: all of them.
    categories        text[] NOT NULL DEFAULT '{}',
    review_threshold  double precision NOT NULL DEFAULT 0.5
                      CHECK (review_threshold BETWEEN 0 AND 1),
    block_threshold   double precision NOT NULL DEFAULT 0.8
                      CHECK (block_threshold BETWEEN 0 AND 1 AND block_threshold >= review_threshold),
    -- NULL: the server's VOICESTREAM_MODERATION_FAIL_OPEN decides.
    fail_open         boolean,
    updated_at        timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE moderation_items (
    id            uuid PRIMARY KEY,
    workspace_id  uuid NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    -- sha256 of the normalized text: the same text asked again finds its item (and, once
    -- approved, passes).
    text_sha256   text NOT NULL,
    -- Kept for the reviewer, who has to read it to decide.
    text          text NOT NULL,
    source        text NOT NULL CHECK (source IN ('tts', 'agent')),
    category      text NOT NULL,
    score         double precision,
    status        text NOT NULL DEFAULT 'pending'
                  CHECK (status IN ('pending', 'approved', 'rejected')),
    created_at    timestamptz NOT NULL DEFAULT now(),
    decided_at    timestamptz,
    decided_by    text,
    UNIQUE (workspace_id, text_sha256)
);

CREATE INDEX moderation_items_queue ON moderation_items (workspace_id, status, created_at DESC, id);
