-- 0004: conversations survive outages and crashes (issue 7, "Outages").
-- Applied inside one transaction by voicestream.store.migrate; never edit once released,
-- add a new numbered file instead.

-- The process holding a conversation's socket refreshes this while the socket is open; an
-- `active` row nobody has refreshed for a while belongs to a process that died, and the sweep
-- closes it as `abandoned`. Existing rows start from the migration time: a live holder keeps
-- them fresh, the others are swept once they go stale.
ALTER TABLE conversations ADD COLUMN last_seen_at timestamptz NOT NULL DEFAULT now();
CREATE INDEX conversations_active_idx ON conversations (last_seen_at) WHERE status = 'active';

-- Each turn write carries a unique id, so a write replayed from the outbox after an outage
-- (or retried after a lost acknowledgement) is stored once, not twice.
ALTER TABLE conversation_turns ADD COLUMN write_id uuid;
CREATE UNIQUE INDEX conversation_turns_write_id_idx
    ON conversation_turns (write_id) WHERE write_id IS NOT NULL;
