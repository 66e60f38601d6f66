-- 0021: billing through Stripe (issue 12 §1). Stripe is the system of record for money; these
-- tables hold what we know of it per workspace, which Stripe events were applied, what overage
-- was reported, and what reconciliation found. Never edit once released.

-- One row per workspace that ever touched billing (no row: the free plan, status 'none').
CREATE TABLE billing_accounts (
    workspace_id            uuid PRIMARY KEY REFERENCES workspaces (id) ON DELETE CASCADE,
    stripe_customer_id      text UNIQUE CHECK (length(stripe_customer_id) BETWEEN 1 AND 255),
    stripe_subscription_id  text CHECK (length(stripe_subscription_id) BETWEEN 1 AND 255),
    plan                    text NOT NULL DEFAULT 'free' CHECK (length(plan) BETWEEN 1 AND 64),
    -- Stripe's subscription status (trialing, active, past_due, canceled, incomplete, …) or
    -- 'none' before any subscription; 'past_due' refuses new paid work (billing/ledger.py).
    status                  text NOT NULL DEFAULT 'none' CHECK (length(status) BETWEEN 1 AND 64),
    cancel_at_period_end    boolean NOT NULL DEFAULT false,
    current_period_start    timestamptz,
    current_period_end      timestamptz,
    trial_end               timestamptz,
    purchase_order          text CHECK (length(purchase_order) BETWEEN 1 AND 100),
    updated_at              timestamptz NOT NULL DEFAULT now()
);

-- Each Stripe event applied once: Stripe retries deliveries and anyone may replay one.
CREATE TABLE billing_events (
    event_id      text PRIMARY KEY CHECK (length(event_id) BETWEEN 1 AND 255),
    workspace_id  uuid NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    type          text NOT NULL,
    received_at   timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX billing_events_workspace_idx ON billing_events (workspace_id, received_at DESC);

-- Overage reported to Stripe: one row per report, written before the call and keyed by the
-- ledger position it covers, so a retried report re-sends the same Idempotency-Key and never
-- bills twice; reported_at is set once Stripe has answered.
CREATE TABLE billing_usage_reports (
    id                       bigserial PRIMARY KEY,
    workspace_id             uuid NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    period_start             timestamptz NOT NULL,
    through_transaction_id   bigint NOT NULL,
    credits                  bigint NOT NULL CHECK (credits > 0),
    amount_cents             bigint NOT NULL CHECK (amount_cents >= 0),
    idempotency_key          text NOT NULL,
    stripe_item_id           text,
    created_at               timestamptz NOT NULL DEFAULT now(),
    reported_at              timestamptz,
    UNIQUE (workspace_id, idempotency_key)
);

CREATE INDEX billing_usage_reports_period_idx
    ON billing_usage_reports (workspace_id, period_start);

-- What each reconciliation found: Stripe's view against ours, field by field.
CREATE TABLE billing_reconciliations (
    id            bigserial PRIMARY KEY,
    workspace_id  uuid NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    job_id        uuid,
    drift         jsonb NOT NULL DEFAULT '[]',
    ran_at        timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX billing_reconciliations_workspace_idx
    ON billing_reconciliations (workspace_id, id DESC);
