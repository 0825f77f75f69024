-- The event log. Append-only: rows are never updated or deleted by Witness.
-- Times are microseconds since the Unix epoch (UTC); ids are 16-byte UUIDs.
CREATE TABLE events (
    position        INTEGER PRIMARY KEY,      -- global, gap-free (writers are serialised)
    event_id        BLOB    NOT NULL UNIQUE,  -- idempotency key
    tenant_id       TEXT    NOT NULL,
    stream_id       TEXT    NOT NULL,
    stream_version  INTEGER NOT NULL,
    event_type      TEXT    NOT NULL,
    schema_version  INTEGER NOT NULL,
    occurred_at     INTEGER NOT NULL,
    recorded_at     INTEGER NOT NULL,
    actor_kind      TEXT    NOT NULL,
    actor_id        TEXT,
    correlation_id  BLOB    NOT NULL,
    causation_id    BLOB,
    payload         TEXT    NOT NULL,         -- the exact JSON text that was hashed
    prev_hash       BLOB    NOT NULL,
    hash            BLOB    NOT NULL,
    UNIQUE (stream_id, stream_version)
);

-- Signed Merkle checkpoints over ranges of the global order (from, to].
CREATE TABLE checkpoints (
    id            INTEGER PRIMARY KEY,
    from_commit   INTEGER NOT NULL,
    from_position INTEGER NOT NULL,
    to_commit     INTEGER NOT NULL,
    to_position   INTEGER NOT NULL,
    event_count   INTEGER NOT NULL,
    merkle_root   BLOB    NOT NULL,
    public_key    BLOB    NOT NULL,
    signature     BLOB    NOT NULL,
    created_at    INTEGER NOT NULL
);
