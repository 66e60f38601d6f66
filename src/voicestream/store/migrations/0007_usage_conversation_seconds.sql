-- 0007: conversation time is metered like characters and audio seconds (issue 9, quotas).
-- Applied inside one transaction by voicestream.store.migrate; never edit once released,
-- add a new numbered file instead.

ALTER TABLE usage_records DROP CONSTRAINT usage_records_kind_check;
ALTER TABLE usage_records ADD CONSTRAINT usage_records_kind_check
    CHECK (kind IN ('tts_characters', 'stt_seconds', 'conversation_seconds'));
