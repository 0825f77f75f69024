//! Witness projections: the read models built from the event log.
//!
//! A read model is a [`Projection`]: a pure function from an event to
//! [`RowOp`]s (upsert, insert, update, delete, add) on its tables. The
//! [`Projector`] reads the log in global order, asks every projection for
//! its row operations, and applies them **in the same transaction as the
//! projections' checkpoints**, in the same database as the event store — so
//! a crash between the two cannot happen, and replaying a batch is harmless.
//! Because projections hold no state outside their rows, `rebuild` is just:
//! empty the tables, forget the checkpoint, read from position 0.
//!
//! Read models today ([`models::all`]): `sessions`, `session_timeline`,
//! `audit_trail`, `queues` (`queue_waiting`, `queue_agents`), `tickets`.
//!
//! ```no_run
//! # async fn demo() -> Result<(), witness_projections::ProjectionError> {
//! let url = "sqlite://data/witness.db";
//! let store = witness_engine::EventStore::connect(url).await?;
//! let projector = witness_projections::Projector::connect(url, witness_projections::models::all()).await?;
//! projector.catch_up(&store, |n| println!("{n} events projected")).await?;
//! # Ok(()) }
//! ```

pub mod models;
pub mod rows;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use witness_engine::{EventStore, StoreError};
use witness_schemas::{mask_personal, Cursor, RecordedEvent, Role, SchemaError, TenantId};

pub use models::Projection;
pub use rows::{Merge, RowOp, Value};

#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Kafka(#[from] witness_engine::kafka::KafkaError),
    #[error("event at position {position} cannot be decoded: {source}")]
    Decode { position: u64, source: SchemaError },
    #[error("unknown projection {0:?}; known: sessions, session_timeline, audit_trail, queues, tickets")]
    Unknown(String),
    #[error("projection database: {0}")]
    Postgres(#[from] sqlx::Error),
    #[error("projection database: {0}")]
    Sqlite(#[from] rusqlite::Error),
}

/// A row of the audit trail as a reader may see it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct AuditRow {
    pub position: u64,
    pub stream_id: String,
    pub occurred_at: String,
    pub actor_kind: String,
    pub actor_id: Option<String>,
    pub action: String,
    /// The event's payload, personal fields masked unless `masked` is false.
    pub detail: serde_json::Value,
    pub masked: bool,
}

/// A tenant's queues as [`Projector::queue`] reads them.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct QueueView {
    pub waiting: Vec<WaitingRow>,
    pub agents: Vec<AgentRow>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct WaitingRow {
    pub session_id: String,
    pub group: String,
    pub priority: i64,
    /// RFC 3339.
    pub queued_at: String,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AgentRow {
    pub agent_id: String,
    pub presence: String,
    pub capacity: i64,
    pub skill_groups: Vec<String>,
    /// Sessions held now.
    pub load: i64,
}

/// A filter on the `sessions` read model; times are RFC 3339 text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionQuery {
    pub agent: Option<String>,
    pub outcome: Option<String>,
    /// Started at or after.
    pub since: Option<String>,
    /// Started before.
    pub until: Option<String>,
    pub limit: usize,
}

/// A row of the `sessions` read model.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SessionRow {
    pub session_id: String,
    pub tenant_id: String,
    pub channel: Option<String>,
    pub business_type: Option<String>,
    pub started_at: Option<String>,
    pub ended_at: Option<String>,
    pub outcome: Option<String>,
    pub agent_id: Option<String>,
    pub satisfaction: Option<i64>,
}

type SessionTuple = (
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<i64>,
);

/// Events read and projected per transaction.
const BATCH: usize = 1_000;

/// How often the live projector looks for events appended by other processes.
const POLL: Duration = Duration::from_millis(200);

#[derive(Debug, Clone)]
enum Db {
    Sqlite(Arc<Mutex<rusqlite::Connection>>),
    Postgres(sqlx::PgPool),
}

/// Keeps projections up to date with the log. See the crate docs.
pub struct Projector {
    db: Db,
    projections: Vec<Box<dyn Projection>>,
}

impl std::fmt::Debug for Projector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<_> = self.projections.iter().map(|p| p.name()).collect();
        f.debug_struct("Projector").field("projections", &names).finish()
    }
}

/// Runs `f` with the SQLite connection, on a blocking thread.
async fn on_sqlite<T: Send + 'static>(
    conn: &Arc<Mutex<rusqlite::Connection>>,
    f: impl FnOnce(&mut rusqlite::Connection) -> rusqlite::Result<T> + Send + 'static,
) -> Result<T, ProjectionError> {
    let conn = conn.clone();
    let result = tokio::task::spawn_blocking(move || f(&mut conn.lock().unwrap_or_else(|p| p.into_inner())))
        .await
        .expect("SQLite task panicked");
    Ok(result?)
}

fn to_sqlite(v: &Value) -> rusqlite::types::Value {
    match v {
        Value::Int(Some(i)) => rusqlite::types::Value::Integer(*i),
        Value::Text(Some(s)) => rusqlite::types::Value::Text(s.clone()),
        Value::Int(None) | Value::Text(None) => rusqlite::types::Value::Null,
    }
}

impl Projector {
    /// Connects to the projection tables at `url` (the store's own database:
    /// the store's migrations created them).
    pub async fn connect(url: &str, projections: Vec<Box<dyn Projection>>) -> Result<Self, ProjectionError> {
        let db = if let Some(rest) = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:")) {
            let path = rest.split('?').next().unwrap_or_default().to_owned();
            let conn = tokio::task::spawn_blocking(move || {
                let conn = rusqlite::Connection::open(path)?;
                witness_engine::wait_when_busy(&conn)?;
                conn.pragma_update(None, "synchronous", "NORMAL")?;
                // More statement shapes than rusqlite's default cache of 16:
                // with the default, every batch re-prepared most of them.
                conn.set_prepared_statement_cache_capacity(128);
                Ok::<_, rusqlite::Error>(conn)
            })
            .await
            .expect("open task")?;
            Db::Sqlite(Arc::new(Mutex::new(conn)))
        } else {
            Db::Postgres(sqlx::postgres::PgPoolOptions::new().max_connections(2).connect(url).await?)
        };
        Ok(Self { db, projections })
    }

    /// Keeps only the named projection (for `rebuild NAME`).
    pub fn only(mut self, name: &str) -> Result<Self, ProjectionError> {
        self.projections.retain(|p| p.name() == name);
        if self.projections.is_empty() {
            return Err(ProjectionError::Unknown(name.to_owned()));
        }
        Ok(self)
    }

    async fn checkpoints(&self) -> Result<HashMap<String, Cursor>, ProjectionError> {
        let rows: Vec<(String, i64, i64)> = match &self.db {
            Db::Sqlite(conn) => {
                on_sqlite(conn, move |conn| {
                    let mut stmt =
                        conn.prepare_cached("SELECT name, commit_id, position FROM projection_checkpoints")?;
                    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
                    rows.collect::<Result<Vec<_>, _>>()
                })
                .await?
            }
            Db::Postgres(pool) => {
                sqlx::query_as("SELECT name, commit_id, position FROM projection_checkpoints").fetch_all(pool).await?
            }
        };
        Ok(rows.into_iter().map(|(n, c, p)| (n, Cursor { commit: c as u64, position: p as u64 })).collect())
    }

    /// Applies `ops` and moves each checkpoint from the position it was
    /// read at to its new one, in one transaction — only if no checkpoint
    /// moved meanwhile (another projector on the same database, or an
    /// earlier commit that was interrupted but landed). Otherwise writes
    /// nothing and returns false: the ops were computed from stale positions,
    /// and applying them would count some events twice.
    async fn commit(
        &self,
        ops: Vec<RowOp>,
        moves: Vec<(&'static str, Cursor, Cursor)>,
    ) -> Result<bool, ProjectionError> {
        // Every checkpoint row exists before it is locked and compared, so
        // that two first commits cannot both find "no row".
        let ensure = "INSERT INTO projection_checkpoints (name, commit_id, position) VALUES ({1}, 0, 0) \
                      ON CONFLICT (name) DO NOTHING";
        let read = "SELECT commit_id, position FROM projection_checkpoints WHERE name = {1}";
        let all: Vec<RowOp> = ops
            .into_iter()
            .chain(moves.iter().map(|&(name, _, to)| RowOp::Upsert {
                table: "projection_checkpoints",
                key: ("name", Value::from(name)),
                columns: vec![
                    ("commit_id", Value::from(to.commit as i64), Merge::Set),
                    ("position", Value::from(to.position as i64), Merge::Set),
                ],
            }))
            .collect();
        let stored = |(c, p): (i64, i64)| Cursor { commit: c as u64, position: p as u64 };
        match &self.db {
            Db::Sqlite(conn) => {
                on_sqlite(conn, move |conn| {
                    // IMMEDIATE: the write lock is held from here, so what is
                    // read below cannot change before the commit.
                    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
                    for &(name, from, _) in &moves {
                        tx.prepare_cached(&ensure.replace("{1}", "?1"))?.execute([name])?;
                        let now = tx
                            .prepare_cached(&read.replace("{1}", "?1"))?
                            .query_row([name], |r| Ok((r.get(0)?, r.get(1)?)))?;
                        if stored(now) != from {
                            return Ok(false);
                        }
                    }
                    for op in &all {
                        let (sql, params) = rows::sql(op, |i| format!("?{i}"));
                        let params: Vec<rusqlite::types::Value> = params.iter().map(to_sqlite).collect();
                        tx.prepare_cached(&sql)?.execute(rusqlite::params_from_iter(params))?;
                    }
                    tx.commit()?;
                    Ok(true)
                })
                .await
            }
            Db::Postgres(pool) => {
                let mut tx = pool.begin().await?;
                for &(name, from, _) in &moves {
                    sqlx::query(&ensure.replace("{1}", "$1")).bind(name).execute(&mut *tx).await?;
                    let now: (i64, i64) = sqlx::query_as(&format!("{} FOR UPDATE", read.replace("{1}", "$1")))
                        .bind(name)
                        .fetch_one(&mut *tx)
                        .await?;
                    if stored(now) != from {
                        return Ok(false);
                    }
                }
                for op in &all {
                    let (sql, params) = rows::sql(op, |i| format!("${i}"));
                    let mut q = sqlx::query(&sql);
                    for p in params {
                        q = match p {
                            Value::Int(v) => q.bind(v),
                            Value::Text(v) => q.bind(v),
                        };
                    }
                    q.execute(&mut *tx).await?;
                }
                tx.commit().await?;
                Ok(true)
            }
        }
    }

    async fn positions(&self) -> Result<HashMap<&'static str, Cursor>, ProjectionError> {
        let stored = self.checkpoints().await?;
        Ok(self
            .projections
            .iter()
            .map(|p| (p.name(), stored.get(p.name()).copied().unwrap_or(Cursor::START)))
            .collect())
    }

    /// Projects `batch` (in global order) into every projection that has not
    /// seen it yet, and moves their checkpoints, in one transaction. Events
    /// at or before a projection's checkpoint are skipped: a batch delivered
    /// twice changes nothing. If another projector moved a checkpoint since
    /// `at` was read, the batch is projected again from the stored
    /// positions. Returns the new positions.
    async fn project(
        &self,
        batch: &[RecordedEvent],
        mut at: HashMap<&'static str, Cursor>,
    ) -> Result<HashMap<&'static str, Cursor>, ProjectionError> {
        let Some(last) = batch.iter().map(RecordedEvent::cursor).max() else { return Ok(at) };
        loop {
            let mut ops = Vec::new();
            for e in batch {
                let pending: Vec<&dyn Projection> =
                    self.projections.iter().map(|p| p.as_ref()).filter(|p| e.cursor() > at[p.name()]).collect();
                if pending.is_empty() {
                    continue;
                }
                let event = e.decode().map_err(|source| ProjectionError::Decode { position: e.position, source })?;
                for p in pending {
                    p.apply(e, &event, &mut ops);
                }
            }
            let moves: Vec<(&'static str, Cursor, Cursor)> = self
                .projections
                .iter()
                .filter(|p| at[p.name()] < last)
                .map(|p| (p.name(), at[p.name()], last))
                .collect();
            if moves.is_empty() {
                return Ok(at);
            }
            if self.commit(ops, moves.clone()).await? {
                at.extend(moves.into_iter().map(|(name, _, to)| (name, to)));
                return Ok(at);
            }
            at = self.positions().await?;
        }
    }

    /// Projects every event of `store` not yet projected, up to the current
    /// end of the log; `progress` gets the number of events read so far.
    /// Returns it.
    pub async fn catch_up(&self, store: &EventStore, mut progress: impl FnMut(u64)) -> Result<u64, ProjectionError> {
        let mut at = self.positions().await?;
        let mut cursor = at.values().copied().min().unwrap_or(Cursor::START);
        let mut read = 0;
        loop {
            let batch = store.read_all(cursor, BATCH).await?;
            let Some(last) = batch.last().map(|e| e.cursor()) else { break };
            at = self.project(&batch, at).await?;
            // Normally `last`; further when another projector got ahead.
            cursor = at.values().copied().min().unwrap_or(last);
            read += batch.len() as u64;
            progress(read);
        }
        Ok(read)
    }

    /// Catches up with `store`, then follows it until the task is dropped.
    pub async fn run(&self, store: &EventStore) -> Result<(), ProjectionError> {
        let mut changes = store.changes();
        loop {
            self.catch_up(store, |_| {}).await?;
            let _ = tokio::time::timeout(POLL, changes.changed()).await;
        }
    }

    /// Follows the Kafka topic instead of the store (distributed mode):
    /// each batch is projected with its checkpoint, then its offsets are
    /// committed. Redelivered events are skipped by position. `progress`
    /// gets the cursor reached after each batch.
    pub async fn run_kafka(
        &self,
        feed: &witness_engine::kafka::KafkaFeed,
        mut progress: impl FnMut(Cursor),
    ) -> Result<(), ProjectionError> {
        let mut at = self.positions().await?;
        loop {
            let batch = feed.next_batch(BATCH, Duration::from_millis(20)).await?;
            at = self.project(&batch, at).await?;
            feed.commit()?;
            progress(at.values().copied().min().unwrap_or(Cursor::START));
        }
    }

    /// Empties the projections' tables and forgets their checkpoints (one
    /// transaction); the next [`Projector::catch_up`] rebuilds from position 0.
    pub async fn reset(&self) -> Result<(), ProjectionError> {
        let mut statements: Vec<String> = Vec::new();
        for p in &self.projections {
            statements.extend(p.tables().iter().map(|t| format!("DELETE FROM {t}")));
            statements.push(format!("DELETE FROM projection_checkpoints WHERE name = '{}'", p.name()));
        }
        match &self.db {
            Db::Sqlite(conn) => {
                on_sqlite(conn, move |conn| {
                    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
                    for s in &statements {
                        tx.execute(s, [])?;
                    }
                    tx.commit()
                })
                .await?;
            }
            Db::Postgres(pool) => {
                let mut tx = pool.begin().await?;
                for s in &statements {
                    sqlx::query(s).execute(&mut *tx).await?;
                }
                tx.commit().await?;
            }
        }
        Ok(())
    }

    /// Every row of `table` as text, ordered by its first column: for
    /// comparing read models (rebuilt against live).
    pub async fn dump(&self, table: &str) -> Result<Vec<String>, ProjectionError> {
        match &self.db {
            Db::Sqlite(conn) => {
                let table = table.to_owned();
                Ok(on_sqlite(conn, move |conn| {
                    let mut stmt = conn.prepare(&format!("SELECT * FROM {table} ORDER BY 1"))?;
                    let n = stmt.column_count();
                    let rows = stmt.query_map([], |r| {
                        (0..n)
                            .map(|i| r.get::<_, rusqlite::types::Value>(i).map(|v| format!("{v:?}")))
                            .collect::<Result<Vec<_>, _>>()
                    })?;
                    rows.map(|r| r.map(|cols| cols.join(" | "))).collect::<Result<Vec<_>, _>>()
                })
                .await?)
            }
            Db::Postgres(pool) => {
                Ok(sqlx::query_scalar(&format!("SELECT row_to_json(t)::text FROM {table} t ORDER BY 1"))
                    .fetch_all(pool)
                    .await?)
            }
        }
    }

    /// The most recent sessions of the `sessions` read model, newest first.
    pub async fn sessions(&self, limit: usize) -> Result<Vec<SessionRow>, ProjectionError> {
        const COLUMNS: &str =
            "session_id, tenant_id, channel, business_type, started_at, ended_at, outcome, agent_id, satisfaction";
        // Both backends read the columns as one tuple; one place names them.
        let rows: Vec<SessionTuple> = match &self.db {
            Db::Sqlite(conn) => {
                on_sqlite(conn, move |conn| {
                    let mut stmt = conn.prepare_cached(&format!(
                        "SELECT {COLUMNS} FROM sessions ORDER BY started_at DESC, session_id LIMIT ?1"
                    ))?;
                    let rows = stmt.query_map([limit as i64], |r| {
                        Ok((
                            r.get(0)?,
                            r.get(1)?,
                            r.get(2)?,
                            r.get(3)?,
                            r.get(4)?,
                            r.get(5)?,
                            r.get(6)?,
                            r.get(7)?,
                            r.get(8)?,
                        ))
                    })?;
                    rows.collect::<Result<Vec<_>, _>>()
                })
                .await?
            }
            Db::Postgres(pool) => {
                sqlx::query_as(&format!("SELECT {COLUMNS} FROM sessions ORDER BY started_at DESC, session_id LIMIT $1"))
                    .bind(limit as i64)
                    .fetch_all(pool)
                    .await?
            }
        };
        Ok(rows
            .into_iter()
            .map(|r| SessionRow {
                session_id: r.0,
                tenant_id: r.1,
                channel: r.2,
                business_type: r.3,
                started_at: r.4,
                ended_at: r.5,
                outcome: r.6,
                agent_id: r.7,
                satisfaction: r.8,
            })
            .collect())
    }

    /// A tenant's audit trail after `after_position`, oldest first, with
    /// personal fields masked unless `role` may see them.
    pub async fn audit(
        &self,
        tenant: &TenantId,
        role: Role,
        after_position: u64,
        limit: usize,
    ) -> Result<Vec<AuditRow>, ProjectionError> {
        const SQL: &str = "SELECT position, stream_id, occurred_at, actor_kind, actor_id, action, detail \
                           FROM audit_trail WHERE tenant_id = {1} AND position > {2} ORDER BY position LIMIT {3}";
        type Row = (i64, String, String, String, Option<String>, String, String);
        let rows: Vec<Row> = match &self.db {
            Db::Sqlite(conn) => {
                let tenant = tenant.to_string();
                on_sqlite(conn, move |conn| {
                    let sql = SQL.replace("{1}", "?1").replace("{2}", "?2").replace("{3}", "?3");
                    let mut stmt = conn.prepare_cached(&sql)?;
                    let rows = stmt.query_map(rusqlite::params![tenant, after_position as i64, limit as i64], |r| {
                        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?))
                    })?;
                    rows.collect::<Result<Vec<_>, _>>()
                })
                .await?
            }
            Db::Postgres(pool) => {
                let sql = SQL.replace("{1}", "$1").replace("{2}", "$2").replace("{3}", "$3");
                sqlx::query_as(&sql)
                    .bind(tenant.as_str())
                    .bind(after_position as i64)
                    .bind(limit as i64)
                    .fetch_all(pool)
                    .await?
            }
        };
        Ok(rows
            .into_iter()
            .map(|(position, stream_id, occurred_at, actor_kind, actor_id, action, detail)| {
                let mut detail: serde_json::Value = serde_json::from_str(&detail).unwrap_or(serde_json::Value::Null);
                let masked = !role.sees_personal_data();
                if masked {
                    mask_personal(&mut detail);
                }
                AuditRow {
                    position: position as u64,
                    stream_id,
                    occurred_at,
                    actor_kind,
                    actor_id,
                    action,
                    detail,
                    masked,
                }
            })
            .collect())
    }

    /// Runs a read-only query with `{1}`, `{2}`… placeholders on either
    /// backend; each column comes back as an integer or text (or null).
    async fn select(&self, sql: &str, params: Vec<Value>) -> Result<Vec<Vec<Value>>, ProjectionError> {
        let mut text = sql.to_owned();
        let placeholder = |i: usize| if matches!(self.db, Db::Sqlite(_)) { format!("?{i}") } else { format!("${i}") };
        for i in 1..=params.len() {
            text = text.replace(&format!("{{{i}}}"), &placeholder(i));
        }
        match &self.db {
            Db::Sqlite(conn) => {
                on_sqlite(conn, move |conn| {
                    let mut stmt = conn.prepare_cached(&text)?;
                    let columns = stmt.column_count();
                    let params: Vec<rusqlite::types::Value> = params.iter().map(to_sqlite).collect();
                    let rows = stmt.query_map(rusqlite::params_from_iter(params), |r| {
                        (0..columns)
                            .map(|i| {
                                Ok(match r.get::<_, rusqlite::types::Value>(i)? {
                                    rusqlite::types::Value::Integer(v) => Value::Int(Some(v)),
                                    rusqlite::types::Value::Text(v) => Value::Text(Some(v)),
                                    _ => Value::Text(None),
                                })
                            })
                            .collect()
                    })?;
                    rows.collect::<Result<Vec<_>, _>>()
                })
                .await
            }
            Db::Postgres(pool) => {
                use sqlx::{Column, Row, TypeInfo};
                let mut q = sqlx::query(&text);
                for p in params {
                    q = match p {
                        Value::Int(v) => q.bind(v),
                        Value::Text(v) => q.bind(v),
                    };
                }
                let rows = q.fetch_all(pool).await?;
                rows.iter()
                    .map(|row| {
                        row.columns()
                            .iter()
                            .map(|c| {
                                Ok(match c.type_info().name() {
                                    "INT8" => Value::Int(row.try_get(c.ordinal())?),
                                    "INT4" => Value::Int(row.try_get::<Option<i32>, _>(c.ordinal())?.map(i64::from)),
                                    _ => Value::Text(row.try_get(c.ordinal())?),
                                })
                            })
                            .collect()
                    })
                    .collect()
            }
        }
    }

    /// A tenant's sessions matching `q`, newest first.
    pub async fn find_sessions(&self, tenant: &TenantId, q: &SessionQuery) -> Result<Vec<SessionRow>, ProjectionError> {
        let rows = self
            .select(
                "SELECT session_id, tenant_id, channel, business_type, started_at, ended_at, outcome, agent_id, \
                 satisfaction FROM sessions WHERE tenant_id = {1} AND ({2} IS NULL OR agent_id = {2}) \
                 AND ({3} IS NULL OR outcome = {3}) AND ({4} IS NULL OR started_at >= {4}) \
                 AND ({5} IS NULL OR started_at < {5}) ORDER BY started_at DESC, session_id LIMIT {6}",
                vec![
                    Value::from(tenant.as_str()),
                    Value::from(q.agent.clone()),
                    Value::from(q.outcome.clone()),
                    Value::from(q.since.clone()),
                    Value::from(q.until.clone()),
                    Value::from(q.limit as i64),
                ],
            )
            .await?;
        Ok(rows
            .into_iter()
            .map(|r| SessionRow {
                session_id: r[0].text(),
                tenant_id: r[1].text(),
                channel: r[2].opt_text(),
                business_type: r[3].opt_text(),
                started_at: r[4].opt_text(),
                ended_at: r[5].opt_text(),
                outcome: r[6].opt_text(),
                agent_id: r[7].opt_text(),
                satisfaction: match r[8] {
                    Value::Int(v) => v,
                    Value::Text(_) => None,
                },
            })
            .collect())
    }

    /// A tenant's queues: the sessions waiting, by group, oldest first, and
    /// its agents with their presence and load.
    pub async fn queue(&self, tenant: &TenantId) -> Result<QueueView, ProjectionError> {
        let tenant = Value::from(tenant.as_str());
        let waiting = self
            .select(
                "SELECT session_id, group_name, priority, queued_at FROM queue_waiting WHERE tenant_id = {1} \
                 ORDER BY group_name, priority DESC, queued_at",
                vec![tenant.clone()],
            )
            .await?;
        let agents = self
            .select(
                "SELECT agent_id, presence, capacity, skill_groups, load FROM queue_agents WHERE tenant_id = {1} \
                 ORDER BY agent_id",
                vec![tenant],
            )
            .await?;
        Ok(QueueView {
            waiting: waiting
                .into_iter()
                .map(|r| WaitingRow {
                    session_id: r[0].text(),
                    group: r[1].text(),
                    priority: r[2].int(),
                    queued_at: r[3].text(),
                })
                .collect(),
            agents: agents
                .into_iter()
                .map(|r| AgentRow {
                    agent_id: r[0].text(),
                    presence: r[1].text(),
                    capacity: r[2].int(),
                    skill_groups: r[3].text().split(',').filter(|g| !g.is_empty()).map(str::to_owned).collect(),
                    load: r[4].int(),
                })
                .collect(),
        })
    }

    /// The tables of this projector's projections.
    pub fn tables(&self) -> Vec<&'static str> {
        self.projections.iter().flat_map(|p| p.tables().iter().copied()).collect()
    }
}
