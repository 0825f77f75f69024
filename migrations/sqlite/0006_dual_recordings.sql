-- Sessions with a dual recording, for the review console: the script they
-- followed, how many steps were started, and the reviewer's verdict.
CREATE TABLE dual_recordings (
    session_id     TEXT PRIMARY KEY,
    tenant_id      TEXT NOT NULL,
    script_id      TEXT NOT NULL,
    script_version INTEGER NOT NULL,
    steps          INTEGER NOT NULL DEFAULT 0,
    recorded_at    TEXT NOT NULL,
    -- 'passed' or 'failed' once reviewed.
    verdict        TEXT,
    reviewed_at    TEXT
);
CREATE INDEX dual_recordings_pending ON dual_recordings (tenant_id, verdict, recorded_at);
