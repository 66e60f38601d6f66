-- 0016: the credits ledger (issue 10 §6): append-only, double-entry, one set of accounts per
-- workspace. Applied inside one transaction by voicestream.store.migrate; never edit once
-- released, add a new numbered file instead.
--
-- Accounts of a workspace (an entry's amount adds to its account's balance):
--   grants     where credits come from (command-line grants, the opening grant, and the free
--              top-ups of a server that does not enforce credits); only ever <= 0
--   available  what new work may use
--   reserved   held for submitted jobs until they finish
--   spent      used by finished jobs and streams
-- Every transaction's entries sum to zero, so grants + available + reserved + spent = 0.

CREATE TABLE ledger_transactions (
    id            bigserial PRIMARY KEY,
    workspace_id  uuid NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    -- What makes a posting happen once: 'job:<id>:reserve', 'job:<id>:resolve' (a job is
    -- settled or voided, never both), 'usage:<record id>', 'grant:<id>', 'opening'.
    ref           text NOT NULL CHECK (length(ref) BETWEEN 1 AND 200),
    kind          text NOT NULL
                  CHECK (kind IN ('grant', 'reserve', 'settle', 'void', 'usage', 'refund')),
    job_id        uuid,  -- the job's, for reserve / settle / void (no FK: jobs may be purged)
    details       jsonb NOT NULL DEFAULT '{}',
    created_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (workspace_id, ref)
);

-- GET /v1/credits pages newest first; a job's postings are found by its id.
CREATE INDEX ledger_transactions_workspace_idx ON ledger_transactions (workspace_id, id DESC);
CREATE INDEX ledger_transactions_job_idx ON ledger_transactions (workspace_id, job_id)
    WHERE job_id IS NOT NULL;

CREATE TABLE ledger_entries (
    id              bigserial PRIMARY KEY,
    workspace_id    uuid NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    transaction_id  bigint NOT NULL REFERENCES ledger_transactions (id) ON DELETE CASCADE,
    account         text NOT NULL CHECK (account IN ('grants', 'available', 'reserved', 'spent')),
    amount          bigint NOT NULL CHECK (amount <> 0),
    created_at      timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX ledger_entries_transaction_idx ON ledger_entries (transaction_id);

-- The balances, kept by the trigger below from each entry, in the entry's own transaction. The
-- row is also the workspace's ledger lock (SELECT … FOR UPDATE before deciding anything), and
-- the CHECKs are the backstop should code ever decide wrongly: no account but grants goes
-- below zero. (That the four sum to zero follows from every transaction balancing.)
CREATE TABLE ledger_balances (
    workspace_id  uuid PRIMARY KEY REFERENCES workspaces (id) ON DELETE CASCADE,
    grants        bigint NOT NULL DEFAULT 0 CHECK (grants <= 0),
    available     bigint NOT NULL DEFAULT 0 CHECK (available >= 0),
    reserved      bigint NOT NULL DEFAULT 0 CHECK (reserved >= 0),
    spent         bigint NOT NULL DEFAULT 0 CHECK (spent >= 0)
);

-- Jobs holding credits now: written with a job's reserve transaction and removed with its
-- settle or void, in the same transactions. A cache of what the ledger says, like the balances,
-- so listing a workspace's open reservations never scans its whole history.
CREATE TABLE ledger_holds (
    workspace_id  uuid NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    job_id        uuid NOT NULL,
    credits       bigint NOT NULL CHECK (credits >= 0),
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (workspace_id, job_id)
);

CREATE FUNCTION ledger_apply_entry() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO ledger_balances (workspace_id) VALUES (NEW.workspace_id)
        ON CONFLICT (workspace_id) DO NOTHING;
    UPDATE ledger_balances SET
        grants = grants + CASE WHEN NEW.account = 'grants' THEN NEW.amount ELSE 0 END,
        available = available + CASE WHEN NEW.account = 'available' THEN NEW.amount ELSE 0 END,
        reserved = reserved + CASE WHEN NEW.account = 'reserved' THEN NEW.amount ELSE 0 END,
        spent = spent + CASE WHEN NEW.account = 'spent' THEN NEW.amount ELSE 0 END
    WHERE workspace_id = NEW.workspace_id;
    RETURN NULL;
END
$$;

CREATE TRIGGER ledger_entries_apply
    AFTER INSERT ON ledger_entries
    FOR EACH ROW EXECUTE FUNCTION ledger_apply_entry();

-- Double entry: at commit, each transaction's entries sum to zero.
CREATE FUNCTION ledger_check_balanced() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    total numeric;
BEGIN
    SELECT coalesce(sum(amount), 0) INTO total
    FROM ledger_entries WHERE transaction_id = NEW.transaction_id;
    IF total <> 0 THEN
        RAISE EXCEPTION 'ledger transaction % does not balance: its entries sum to %',
            NEW.transaction_id, total
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END
$$;

CREATE CONSTRAINT TRIGGER ledger_entries_balanced
    AFTER INSERT ON ledger_entries
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION ledger_check_balanced();

-- Append-only: UPDATE, DELETE and TRUNCATE fail, so no bug (or a careless hand with psql) can
-- rewrite what was posted; corrections are new, reversing transactions. One exception: the
-- rows go with their workspace (ON DELETE CASCADE), which is gone by the time the cascade
-- deletes them.
CREATE FUNCTION ledger_refuse_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        IF NOT EXISTS (SELECT 1 FROM workspaces WHERE id = OLD.workspace_id) THEN
            RETURN OLD;
        END IF;
    END IF;
    RAISE EXCEPTION '% is append-only: % is not allowed', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;

CREATE TRIGGER ledger_transactions_no_update_delete
    BEFORE UPDATE OR DELETE ON ledger_transactions
    FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();
CREATE TRIGGER ledger_entries_no_update_delete
    BEFORE UPDATE OR DELETE ON ledger_entries
    FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();
CREATE TRIGGER ledger_transactions_no_truncate
    BEFORE TRUNCATE ON ledger_transactions
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change();
CREATE TRIGGER ledger_entries_no_truncate
    BEFORE TRUNCATE ON ledger_entries
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change();
