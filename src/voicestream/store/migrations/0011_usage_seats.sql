-- 0011: usage per seat (issue 9, quotas): each usage record names the member who caused it,
-- and a member may have quotas of their own within the workspace's.
-- Applied inside one transaction by voicestream.store.migrate; never edit once released,
-- add a new numbered file instead.

-- The signed-in user, or the member who made the API key; NULL for keys made on the command
-- line and for work nobody signed in for (a widget's ticket). Kept when the user goes, so the
-- workspace's totals do not change.
ALTER TABLE usage_records ADD COLUMN user_id uuid REFERENCES users (id) ON DELETE SET NULL;

-- A seat's monthly total, and the usage listing grouped by seat.
CREATE INDEX usage_records_seat_idx
    ON usage_records (workspace_id, user_id, kind, created_at) WHERE user_id IS NOT NULL;

-- A member's own monthly quotas, in the unit usage is recorded in; NULL: the server's default
-- seat quota (``seat_quota_*`` settings), itself unlimited unless set.
ALTER TABLE memberships
    ADD COLUMN quota_tts_characters numeric CHECK (quota_tts_characters >= 0),
    ADD COLUMN quota_stt_seconds numeric CHECK (quota_stt_seconds >= 0),
    ADD COLUMN quota_conversation_seconds numeric CHECK (quota_conversation_seconds >= 0);
