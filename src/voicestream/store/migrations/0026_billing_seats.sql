-- 0026: seats billed once per billing period (billing/reconciliation.py). A row is claimed
-- before Stripe is called and keyed by the period, so a retried charge re-sends the same
-- Idempotency-Key and a period's seats are never billed twice; invoice_item_id is set once
-- Stripe has answered. Never edit once released.
CREATE TABLE billing_seat_charges (
    workspace_id     uuid NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    period_start     timestamptz NOT NULL,
    seats            integer NOT NULL CHECK (seats > 0),
    amount_cents     bigint NOT NULL CHECK (amount_cents > 0),
    invoice_item_id  text CHECK (length(invoice_item_id) BETWEEN 1 AND 255),
    created_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (workspace_id, period_start)
);
