-- Each session's key for the personal fields of its events (AES-256-GCM,
-- hex; see engine/src/shred.rs). Kept out of the event log on purpose:
-- erasing a key (key_hex NULL, erased_at set) makes those fields
-- unreadable while the log and its hash chain stay whole.
CREATE TABLE subject_keys (
    tenant_id TEXT NOT NULL,
    subject   TEXT NOT NULL,
    key_hex   TEXT,
    erased_at TEXT,
    PRIMARY KEY (tenant_id, subject)
);
