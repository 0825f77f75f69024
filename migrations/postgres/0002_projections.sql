-- Read models, rebuilt from the event log at will (`witness rebuild`).
-- Times are RFC 3339 text (UTC, microseconds) in both backends, so that one
-- projection code path writes both.

CREATE TABLE projection_checkpoints (
    name       TEXT    PRIMARY KEY,
    commit_id  BIGINT  NOT NULL,
    position   BIGINT  NOT NULL
);

CREATE TABLE sessions (
    session_id    TEXT PRIMARY KEY,
    tenant_id     TEXT NOT NULL,
    channel       TEXT,
    business_type TEXT,
    customer_ref  TEXT,
    started_at    TEXT,
    queued_at     TEXT,
    assigned_at   TEXT,
    ended_at      TEXT,
    agent_id      TEXT,
    group_name    TEXT,
    ended_by      TEXT,
    outcome       TEXT,
    satisfaction  BIGINT,
    transfers     BIGINT  NOT NULL DEFAULT 0,
    messages      BIGINT  NOT NULL DEFAULT 0
);
CREATE INDEX sessions_tenant_started ON sessions (tenant_id, started_at);

CREATE TABLE session_timeline (
    position    BIGINT PRIMARY KEY,
    tenant_id   TEXT NOT NULL,
    session_id  TEXT NOT NULL,
    occurred_at TEXT NOT NULL,
    event_type  TEXT NOT NULL,
    actor_kind  TEXT NOT NULL,
    actor_id    TEXT,
    summary     TEXT NOT NULL
);
CREATE INDEX session_timeline_session ON session_timeline (session_id, position);

CREATE TABLE audit_trail (
    position    BIGINT PRIMARY KEY,
    tenant_id   TEXT NOT NULL,
    stream_id   TEXT NOT NULL,
    occurred_at TEXT NOT NULL,
    actor_kind  TEXT NOT NULL,
    actor_id    TEXT,
    action      TEXT NOT NULL,
    detail      TEXT NOT NULL
);
CREATE INDEX audit_trail_tenant ON audit_trail (tenant_id, position);

CREATE TABLE queue_waiting (
    session_id TEXT PRIMARY KEY,
    tenant_id  TEXT NOT NULL,
    group_name TEXT NOT NULL,
    priority   BIGINT  NOT NULL,
    queued_at  TEXT NOT NULL
);

CREATE TABLE queue_agents (
    agent_id     TEXT PRIMARY KEY,
    tenant_id    TEXT NOT NULL,
    presence     TEXT NOT NULL DEFAULT 'offline',
    capacity     BIGINT  NOT NULL DEFAULT 0,
    skill_groups TEXT NOT NULL DEFAULT '',
    load         BIGINT  NOT NULL DEFAULT 0,
    updated_at   TEXT
);

CREATE TABLE tickets (
    ticket_id  TEXT PRIMARY KEY,
    tenant_id  TEXT NOT NULL,
    session_id TEXT NOT NULL,
    title      TEXT NOT NULL,
    priority   TEXT NOT NULL,
    status     TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
