-- The event log. Append-only: rows are never updated or deleted by Witness.
CREATE TABLE events (
    position        BIGSERIAL   PRIMARY KEY,  -- from events_position_seq; may have gaps
    -- The writing transaction: readers only see rows below the oldest running
    -- transaction and order by (transaction_id, position); see postgres.rs.
    transaction_id  xid8        NOT NULL DEFAULT pg_current_xact_id(),
    event_id        UUID        NOT NULL UNIQUE,
    tenant_id       TEXT        NOT NULL,
    stream_id       TEXT        NOT NULL,
    stream_version  BIGINT      NOT NULL,
    event_type      TEXT        NOT NULL,
    schema_version  INTEGER     NOT NULL,
    occurred_at     TIMESTAMPTZ NOT NULL,
    recorded_at     TIMESTAMPTZ NOT NULL,
    actor_kind      TEXT        NOT NULL,
    actor_id        TEXT,
    correlation_id  UUID        NOT NULL,
    causation_id    UUID,
    payload         TEXT        NOT NULL,     -- the exact JSON text that was hashed (not jsonb: jsonb reorders keys)
    prev_hash       BYTEA       NOT NULL,
    hash            BYTEA       NOT NULL,
    UNIQUE (stream_id, stream_version)
);

CREATE INDEX events_commit_order ON events (transaction_id, position);

CREATE TABLE checkpoints (
    id            BIGSERIAL   PRIMARY KEY,
    from_commit   BIGINT      NOT NULL,
    from_position BIGINT      NOT NULL,
    to_commit     BIGINT      NOT NULL,
    to_position   BIGINT      NOT NULL,
    event_count   BIGINT      NOT NULL,
    merkle_root   BYTEA       NOT NULL,
    public_key    BYTEA       NOT NULL,
    signature     BYTEA       NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL
);
