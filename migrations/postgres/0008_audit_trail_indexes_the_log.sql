-- The audit trail indexes the event log instead of copying it: each row is
-- who did what to which stream and when, and the event itself (its payload)
-- is read from the log by position when the trail is shown. Copies of
-- payloads were most of the bytes a rebuild wrote, and personal data held
-- in the clear outside the log, which erasure had to find and rewrite;
-- read from the log, erased fields read `[erased]` with nothing to rewrite.
--
-- The session timeline held a subset of the same columns for session
-- streams (and each message's text again, in its summary): it is now a
-- view of the audit trail. Summaries are made from the events when shown
-- (`witness replay session`).
ALTER TABLE audit_trail DROP COLUMN detail;
DROP TABLE session_timeline;
DELETE FROM projection_checkpoints WHERE name = 'session_timeline';
CREATE VIEW session_timeline AS
    SELECT position, tenant_id, substr(stream_id, 9) AS session_id, occurred_at,
           action AS event_type, actor_kind, actor_id
    FROM audit_trail
    WHERE stream_id LIKE 'session-%';
