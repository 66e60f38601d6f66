-- 0015: outgoing webhooks (Standard Webhooks): a workspace's endpoints, one delivery per
-- (endpoint, event), and the log of every attempt to send one.

CREATE TABLE webhook_endpoints (
    id               uuid PRIMARY KEY,
    workspace_id     uuid NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    url              text NOT NULL CHECK (char_length(url) BETWEEN 1 AND 2000),
    -- Event types it receives; '*' is every event, also those added later.
    events           text[] NOT NULL CHECK (cardinality(events) BETWEEN 1 AND 50),
    -- The whsec_ signing secret, sealed with the server's key (store/secrets.py): a database
    -- dump alone cannot forge signatures.
    secret_sealed    text NOT NULL,
    description      text NOT NULL DEFAULT '' CHECK (char_length(description) <= 500),
    enabled          boolean NOT NULL DEFAULT true,
    -- Why it was disabled (the endpoint answered 410 Gone, or a person turned it off).
    disabled_reason  text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX webhook_endpoints_workspace_idx ON webhook_endpoints (workspace_id, created_at);

CREATE TABLE webhook_deliveries (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    workspace_id     uuid NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    endpoint_id      uuid NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    -- The webhook-id header: the same on every attempt, so receivers deduplicate on it.
    event_id         text NOT NULL CHECK (event_id ~ '^[A-Za-z0-9_-]{1,200}$'),
    event_type       text NOT NULL,
    -- The exact body sent on every attempt (its bytes are what the signature covers).
    payload          text NOT NULL,
    status           text NOT NULL DEFAULT 'pending'
                         CHECK (status IN ('pending', 'succeeded', 'failed')),
    -- Attempts in the current round (a redelivery starts a new round; the log keeps all).
    attempts         integer NOT NULL DEFAULT 0,
    -- When a pending delivery is next due. A sender that claims one moves this past its
    -- lease, so a sender that dies mid-send leaves it to another once the lease lapses.
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    -- The sender's claim on the attempt in flight: only that claim may record its outcome (a
    -- redelivery, or another sender after the lease lapsed, makes a new one).
    claim_id         uuid,
    last_status_code integer,
    last_error       text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    -- A job that runs twice enqueues its event twice: one delivery per endpoint all the same.
    UNIQUE (endpoint_id, event_id)
);
-- The senders' claim: due pending deliveries, oldest due first.
CREATE INDEX webhook_deliveries_due_idx ON webhook_deliveries (next_attempt_at)
    WHERE status = 'pending';
-- The delivery log of one endpoint, newest first.
CREATE INDEX webhook_deliveries_endpoint_idx ON webhook_deliveries (endpoint_id, created_at, id);

CREATE TABLE webhook_attempts (
    id               bigserial PRIMARY KEY,
    workspace_id     uuid NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    delivery_id      uuid NOT NULL REFERENCES webhook_deliveries (id) ON DELETE CASCADE,
    attempted_at     timestamptz NOT NULL DEFAULT now(),
    duration_ms      integer NOT NULL,
    status_code      integer,       -- null: no answer (refused address, timeout, connection)
    error            text,
    response_body    text           -- the first bytes of the answer, for the log
);
CREATE INDEX webhook_attempts_delivery_idx ON webhook_attempts (delivery_id, id);
