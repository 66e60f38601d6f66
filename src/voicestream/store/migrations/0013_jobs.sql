-- 0013: background jobs (issue 10). PostgreSQL is the truth about every job; Redis Streams
-- only carry "look at job X" (jobs/queue.py). A worker runs a job while it holds the row's
-- lease; a lapsed lease (a dead worker) lets another worker take the job over.

CREATE TABLE jobs (
    id                  uuid PRIMARY KEY,
    workspace_id        uuid NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    type                text NOT NULL CHECK (length(type) BETWEEN 1 AND 64),
    input               jsonb NOT NULL,
    status              text NOT NULL DEFAULT 'queued'
                        CHECK (status IN ('queued', 'running', 'completed', 'failed', 'cancelled')),
    progress            smallint NOT NULL DEFAULT 0 CHECK (progress BETWEEN 0 AND 100),
    result              jsonb,
    error               jsonb,  -- {"code", "message"}: the last attempt's error
    attempts            integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    max_attempts        integer NOT NULL CHECK (max_attempts >= 1),
    -- Not claimed before this: a retry's backoff.
    run_after           timestamptz NOT NULL DEFAULT now(),
    -- The running attempt's token and how long it holds the job without a heartbeat.
    lease_token         uuid,
    lease_until         timestamptz,
    -- When a relay last put the job on the stream: a queued job whose message was lost
    -- (Redis lost its data) is put there again once this is old.
    published_at        timestamptz,
    cancel_requested_at timestamptz,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    started_at          timestamptz,
    finished_at         timestamptz,
    idempotency_key     text CHECK (length(idempotency_key) BETWEEN 1 AND 255),
    request_hash        bytea,  -- sha256 of the canonical request: same key, other body = 422
    created_by_user     uuid,
    created_by_key      uuid,
    CHECK (status <> 'running' OR (lease_token IS NOT NULL AND lease_until IS NOT NULL)),
    UNIQUE (workspace_id, idempotency_key)
);

-- GET /v1/jobs: newest first, keyset paging on (created_at, id).
CREATE INDEX jobs_workspace_created_idx ON jobs (workspace_id, created_at DESC, id DESC);
-- The sweeper: queued jobs that are due, running jobs whose lease lapsed.
CREATE INDEX jobs_queued_idx ON jobs (run_after) WHERE status = 'queued';
CREATE INDEX jobs_running_idx ON jobs (lease_until) WHERE status = 'running';

-- Written in the transaction that makes a job runnable (submission, a retry, a lapsed lease);
-- the relay moves due rows to the stream and deletes them.
CREATE TABLE job_outbox (
    id            bigserial PRIMARY KEY,
    job_id        uuid NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    deliver_after timestamptz NOT NULL DEFAULT now(),
    created_at    timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX job_outbox_due_idx ON job_outbox (deliver_after, id);
CREATE INDEX job_outbox_job_idx ON job_outbox (job_id);
