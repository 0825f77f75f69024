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
//! Read models today ([`models::all`]): `sessions`, `audit_trail` (and
//! `session_timeline`, a view of it), `queues` (`queue_waiting`,
//! `queue_agents`), `tickets`, `qa`, `dual_recordings`.
//!
//! ```no_run
//! # async fn demo() -> Result<(), witness_projections::ProjectionError> {
//! let url = "sqlite://data/witness.db";
//! let store = witness_engine::EventStore::connect(url).await?;
//! let projector = witness_projections::Projector::connect(url, witness_projections::models::all()).await?;
//! projector.catch_up(&store, |n| println!("{n} events projected")).await?;
//! # Ok(()) }
//! ```

pub mod audit;
mod batch;
pub mod dashboard;
pub mod export;
pub mod models;
pub mod reports;
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
    #[error("unknown projection {0:?}; known: sessions, audit_trail (session_timeline is a view of it), queues, tickets, qa, dual_recordings")]
    Unknown(String),
    #[error("projection database: {0}")]
    Postgres(#[from] sqlx::Error),
    #[error("projection database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// A projection asked for something its table cannot do (an unknown
    /// column, adding to text): a bug in the projection, not in the data.
    #[error("projection table: {0}")]
    Table(String),
    /// A question the read models cannot answer as asked (e.g. an offset beyond any time zone's).
    #[error("{0}")]
    Invalid(String),
}

/// A row of the audit trail as a reader may see it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct AuditRow {
    /// The event's global log position: the operator's, never shown to a
    /// tenant's staff (it counts every tenant's events; issue 27, L6).
    #[serde(skip)]
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
    /// The agent's display name and login, filled in by the API from the
    /// tenant's directory (the read model holds ids only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// A session with a dual recording, for the review console.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ReviewRow {
    pub session_id: String,
    pub script_id: String,
    pub script_version: i64,
    /// Steps started.
    pub steps: i64,
    /// RFC 3339: when its first step started.
    pub recorded_at: String,
    /// `passed` or `failed`, once reviewed.
    pub verdict: Option<String>,
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

/// What the read models say of every tenant at once ([`Projector::census`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Census {
    /// Sessions `open` (not ended), of them `with_bot` (never queued),
    /// `waiting` in a queue, and `with_agent` (assigned at least once).
    pub sessions: Vec<(String, i64)>,
    /// Agents by presence.
    pub agents: Vec<(String, i64)>,
    /// How long the session waiting longest has waited (none waiting: `None`).
    pub longest_wait: Option<std::time::Duration>,
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

/// A row of `sessions` selected as `session_id, tenant_id, channel,
/// business_type, started_at, ended_at, outcome, agent_id, satisfaction`.
fn session_row(r: Vec<Value>) -> SessionRow {
    SessionRow {
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
    }
}

/// An event as read from the log, with its payload decoded.
type Decoded = (RecordedEvent, witness_schemas::Event);

fn decode_all(batch: Vec<RecordedEvent>) -> Result<Vec<Decoded>, ProjectionError> {
    batch
        .into_iter()
        .map(|e| match e.decode() {
            Ok(event) => Ok((e, event)),
            Err(source) => Err(ProjectionError::Decode { position: e.position, source }),
        })
        .collect()
}

/// Aborts a task when dropped.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Events read and projected per transaction.
const BATCH: usize = 1_000;

/// How often the live projector looks for events appended by other processes.
const POLL: Duration = Duration::from_millis(200);

#[derive(Debug, Clone)]
enum Db {
    Sqlite(Arc<Mutex<rusqlite::Connection>>),
    Postgres(sqlx::PgPool),
}

/// Tables' shapes (read from the database's catalog the first time a batch
/// writes to them) and statements' text. A tokio mutex: the PostgreSQL
/// writer holds it across awaits.
type SharedCatalog = Arc<tokio::sync::Mutex<batch::Catalog>>;

/// Keeps projections up to date with the log. See the crate docs.
pub struct Projector {
    db: Db,
    projections: Vec<Box<dyn Projection>>,
    catalog: SharedCatalog,
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

/// Bound without copying: a batch binds tens of thousands of values.
impl rusqlite::ToSql for Value {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, ValueRef};
        Ok(ToSqlOutput::Borrowed(match self {
            Value::Int(Some(i)) => ValueRef::Integer(*i),
            Value::Text(Some(s)) => ValueRef::Text(s.as_bytes()),
            Value::Int(None) | Value::Text(None) => ValueRef::Null,
        }))
    }
}

/// What writing a batch needs from a database, inside a transaction.
/// [`write_batch`] is the one algorithm; SQLite and PostgreSQL differ only
/// here.
trait Tables {
    /// Writes the i-th (1-based) placeholder.
    const PLACEHOLDER: fn(usize) -> String;
    /// `(name, is_integer, default SQL)` of each column of `table`, in order.
    async fn columns(&mut self, table: &str) -> Result<Vec<(String, bool, Option<String>)>, ProjectionError>;
    async fn execute(&mut self, sql: &str, params: Vec<&Value>) -> Result<(), ProjectionError>;
    /// Whole rows, typed by `shape`.
    async fn rows(
        &mut self,
        sql: &str,
        params: Vec<&Value>,
        shape: &batch::Shape,
    ) -> Result<Vec<Vec<Value>>, ProjectionError>;
}

/// SQLite's side. Nothing in it waits: its futures are ready when first
/// polled, so the blocking thread drives them with `now_or_never`.
struct SqliteTables<'a>(&'a rusqlite::Transaction<'a>);

impl Tables for SqliteTables<'_> {
    const PLACEHOLDER: fn(usize) -> String = |i| format!("?{i}");

    async fn columns(&mut self, table: &str) -> Result<Vec<(String, bool, Option<String>)>, ProjectionError> {
        let mut stmt = self.0.prepare(&format!("PRAGMA table_info({table})"))?;
        let columns = stmt.query_map([], |r| {
            Ok((r.get::<_, String>(1)?, r.get::<_, String>(2)?.to_uppercase().contains("INT"), r.get(4)?))
        })?;
        Ok(columns.collect::<Result<Vec<_>, _>>()?)
    }

    async fn execute(&mut self, sql: &str, params: Vec<&Value>) -> Result<(), ProjectionError> {
        self.0.prepare_cached(sql)?.execute(rusqlite::params_from_iter(params))?;
        Ok(())
    }

    async fn rows(
        &mut self,
        sql: &str,
        params: Vec<&Value>,
        shape: &batch::Shape,
    ) -> Result<Vec<Vec<Value>>, ProjectionError> {
        let mut stmt = self.0.prepare_cached(sql)?;
        let mut rows = stmt.query(rusqlite::params_from_iter(params))?;
        let mut out = Vec::new();
        while let Some(r) = rows.next()? {
            out.push(
                (0..shape.columns.len())
                    .map(|i| {
                        Ok(match r.get::<_, rusqlite::types::Value>(i)? {
                            rusqlite::types::Value::Integer(v) => shape.typed(i, Some(v), Some(v.to_string())),
                            rusqlite::types::Value::Text(v) => shape.typed(i, v.parse().ok(), Some(v)),
                            _ => shape.typed(i, None, None),
                        })
                    })
                    .collect::<rusqlite::Result<Vec<Value>>>()?,
            );
        }
        Ok(out)
    }
}

struct PostgresTables<'a>(&'a mut sqlx::PgConnection);

impl Tables for PostgresTables<'_> {
    const PLACEHOLDER: fn(usize) -> String = |i| format!("${i}");

    async fn columns(&mut self, table: &str) -> Result<Vec<(String, bool, Option<String>)>, ProjectionError> {
        let columns: Vec<(String, String, Option<String>)> = sqlx::query_as(
            "SELECT column_name::text, data_type::text, column_default::text FROM information_schema.columns \
             WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position",
        )
        .bind(table)
        .fetch_all(&mut *self.0)
        .await?;
        Ok(columns
            .into_iter()
            .map(|(name, kind, default)| (name, matches!(kind.as_str(), "bigint" | "integer" | "smallint"), default))
            .collect())
    }

    async fn execute(&mut self, sql: &str, params: Vec<&Value>) -> Result<(), ProjectionError> {
        pg_bind(sqlx::query(sql), params).execute(&mut *self.0).await?;
        Ok(())
    }

    async fn rows(
        &mut self,
        sql: &str,
        params: Vec<&Value>,
        shape: &batch::Shape,
    ) -> Result<Vec<Vec<Value>>, ProjectionError> {
        let rows = pg_bind(sqlx::query(sql), params).fetch_all(&mut *self.0).await?;
        let integer = |i: usize| matches!(shape.defaults[i], Value::Int(_));
        Ok(rows
            .iter()
            .map(|r| (0..shape.columns.len()).map(|i| pg_value(r, i, integer(i))).collect::<Result<Vec<_>, _>>())
            .collect::<Result<Vec<_>, _>>()?)
    }
}

type PgQuery<'q> = sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>;

fn pg_bind<'q>(mut q: PgQuery<'q>, params: impl IntoIterator<Item = &'q Value>) -> PgQuery<'q> {
    for v in params {
        q = match v {
            Value::Int(v) => q.bind(*v),
            Value::Text(v) => q.bind(v.as_deref()),
        };
    }
    q
}

/// A column of a PostgreSQL row as a value: integers of any width, or text.
fn pg_value(row: &sqlx::postgres::PgRow, i: usize, integer: bool) -> Result<Value, sqlx::Error> {
    use sqlx::{Column, Row, TypeInfo};
    Ok(match (integer, row.columns()[i].type_info().name()) {
        (_, "INT8") => Value::Int(row.try_get(i)?),
        (_, "INT4") => Value::Int(row.try_get::<Option<i32>, _>(i)?.map(i64::from)),
        (_, "INT2") => Value::Int(row.try_get::<Option<i16>, _>(i)?.map(i64::from)),
        (true, _) => Value::Int(row.try_get::<Option<String>, _>(i)?.and_then(|v| v.parse().ok())),
        (false, _) => Value::Text(row.try_get(i)?),
    })
}

/// Writes `ops` as [`batch`] groups them (see there).
async fn write_batch<T: Tables>(
    db: &mut T,
    catalog: &mut batch::Catalog,
    ops: Vec<RowOp>,
) -> Result<(), ProjectionError> {
    let p = T::PLACEHOLDER;
    let grouped = batch::Batch::new(ops);
    for ins in &grouped.inserts {
        for range in batch::chunks(ins.rows.len()) {
            let sql = catalog.insert_sql(ins, range.len(), p);
            db.execute(&sql, ins.rows[range].iter().flatten().collect()).await?;
        }
    }
    for changes in &grouped.changes {
        if !changes.foldable() {
            for op in &changes.ops {
                let (sql, params) = rows::sql(op, p);
                db.execute(&sql, params.iter().collect()).await?;
            }
            continue;
        }
        let shape = match catalog.shapes.get(changes.table) {
            Some(shape) => shape.clone(),
            None => {
                let columns = db.columns(changes.table).await?;
                let shape =
                    Arc::new(batch::Shape::from_catalog(changes.table, columns).map_err(ProjectionError::Table)?);
                catalog.shapes.insert(changes.table, shape.clone());
                shape
            }
        };
        let key_index = shape.index(changes.key).map_err(ProjectionError::Table)?;
        let keys = changes.keys();
        let mut existing = HashMap::new();
        for range in batch::chunks(keys.len()) {
            let sql = catalog.select_sql(changes, &shape, range.len(), p);
            for row in db.rows(&sql, keys[range].iter().collect(), &shape).await? {
                existing.insert(row[key_index].clone(), row);
            }
        }
        let written = batch::fold(&shape, changes, existing).map_err(ProjectionError::Table)?;
        for range in batch::chunks(written.upserts.len()) {
            let sql = catalog.upsert_sql(changes, &shape, range.len(), p);
            db.execute(&sql, written.upserts[range].iter().flatten().collect()).await?;
        }
        for range in batch::chunks(written.deletes.len()) {
            let sql = catalog.delete_sql(changes, range.len(), p);
            db.execute(&sql, written.deletes[range].iter().collect()).await?;
        }
    }
    Ok(())
}

/// [`write_batch`] on SQLite, whose writes never wait.
fn sqlite_write(
    tx: &rusqlite::Transaction,
    catalog: &mut batch::Catalog,
    ops: Vec<RowOp>,
) -> Result<(), ProjectionError> {
    use futures_util::FutureExt;
    write_batch(&mut SqliteTables(tx), catalog, ops).now_or_never().expect("SQLite writes do not wait")
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
                // A multi-row insert keeps a statement journal, in a temporary
                // file unless told otherwise; and a rebuild's working set is
                // larger than the default 2 MiB page cache.
                conn.pragma_update(None, "temp_store", "MEMORY")?;
                conn.pragma_update(None, "cache_size", -65_536)?;
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
        Ok(Self { db, projections, catalog: SharedCatalog::default() })
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
                let catalog = self.catalog.clone();
                let conn = conn.clone();
                tokio::task::spawn_blocking(move || {
                    let mut conn = conn.lock().unwrap_or_else(|p| p.into_inner());
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
                    sqlite_write(&tx, &mut catalog.blocking_lock(), all)?;
                    tx.commit()?;
                    Ok(true)
                })
                .await
                .expect("SQLite task panicked")
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
                write_batch(&mut PostgresTables(&mut tx), &mut *self.catalog.lock().await, all).await?;
                tx.commit().await?;
                Ok(true)
            }
        }
    }

    /// How far the furthest-behind read model ([`models::all`], whoever
    /// runs them) is from `head` (a position in the log), in events.
    pub async fn lag(&self, head: u64) -> Result<u64, ProjectionError> {
        Ok(self.lags(head).await?.into_iter().map(|(_, lag)| lag).max().unwrap_or(0))
    }

    /// How many events each read model has yet to project to reach `head`.
    pub async fn lags(&self, head: u64) -> Result<Vec<(&'static str, u64)>, ProjectionError> {
        let stored = self.checkpoints().await?;
        Ok(models::all()
            .iter()
            .map(|p| (p.name(), head.saturating_sub(stored.get(p.name()).map_or(0, |c| c.position))))
            .collect())
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
        batch: &[Decoded],
        mut at: HashMap<&'static str, Cursor>,
    ) -> Result<HashMap<&'static str, Cursor>, ProjectionError> {
        let Some(last) = batch.iter().map(|(e, _)| e.cursor()).max() else { return Ok(at) };
        loop {
            let mut ops = Vec::new();
            for (e, event) in batch {
                for p in &self.projections {
                    if e.cursor() > at[p.name()] {
                        p.apply(e, event, &mut ops);
                    }
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

    /// Rewrites what the read models copied of a session's personal data,
    /// from its `events` as they read now that its key is erased (their
    /// personal fields `[erased]`, see `witness_engine::shred`): the
    /// session's customer reference. (The audit trail and the timeline hold
    /// no copies: they read the events from the log.) Rows not projected yet
    /// are left to the projector, which will read the erased values.
    /// Checkpoints do not move.
    pub async fn erase_session(&self, events: &[RecordedEvent]) -> Result<(), ProjectionError> {
        let ops = events
            .iter()
            .filter_map(|r| match r.decode() {
                Ok(witness_schemas::Event::SessionStarted(s)) => Some(rows::RowOp::Update {
                    table: "sessions",
                    key: ("session_id", rows::Value::from(s.session_id.to_string())),
                    columns: vec![("customer_ref", rows::Value::from(s.customer_ref))],
                }),
                _ => None,
            })
            .collect();
        self.commit(ops, vec![]).await?;
        Ok(())
    }

    /// Projects every event of `store` not yet projected, up to the current
    /// end of the log; `progress` gets the number of events read so far.
    /// Returns it.
    ///
    /// The next batch is read and decoded by a task of its own while this
    /// one is written (on a rebuild the writing takes most of the time).
    pub async fn catch_up(&self, store: &EventStore, mut progress: impl FnMut(u64)) -> Result<u64, ProjectionError> {
        let mut at = self.positions().await?;
        let from = at.values().copied().min().unwrap_or(Cursor::START);
        let (batches, mut next) = tokio::sync::mpsc::channel(2);
        let store = store.clone();
        let reader = tokio::spawn(async move {
            let mut cursor = from;
            loop {
                let batch = match store.read_all(cursor, BATCH).await {
                    Ok(batch) => batch,
                    Err(e) => {
                        let _ = batches.send(Err(e.into())).await;
                        return;
                    }
                };
                let Some(last) = batch.last().map(|e| e.cursor()) else { return };
                cursor = last;
                // Ends when the receiver is gone (it failed, or was dropped).
                if batches.send(decode_all(batch)).await.is_err() {
                    return;
                }
            }
        });
        // The reader stops once `next` is dropped, on return or on error.
        let _reader = AbortOnDrop(reader);
        let mut read = 0;
        while let Some(batch) = next.recv().await {
            let batch = batch?;
            at = self.project(&batch, at).await?;
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
            let batch = decode_all(feed.next_batch(BATCH, Duration::from_millis(20)).await?)?;
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

    /// A tenant's audit trail after `after_position`, oldest first: the
    /// read model's rows, each with its event read from `store` (decrypted,
    /// so erased fields read `[erased]`), personal fields masked unless
    /// `role` may see them.
    pub async fn audit(
        &self,
        store: &EventStore,
        tenant: &TenantId,
        role: Role,
        after_position: u64,
        limit: usize,
    ) -> Result<Vec<AuditRow>, ProjectionError> {
        const SQL: &str = "SELECT position, stream_id, occurred_at, actor_kind, actor_id, action \
                           FROM audit_trail WHERE tenant_id = {1} AND position > {2} ORDER BY position LIMIT {3}";
        type Row = (i64, String, String, String, Option<String>, String);
        let rows: Vec<Row> = match &self.db {
            Db::Sqlite(conn) => {
                let tenant = tenant.to_string();
                on_sqlite(conn, move |conn| {
                    let sql = SQL.replace("{1}", "?1").replace("{2}", "?2").replace("{3}", "?3");
                    let mut stmt = conn.prepare_cached(&sql)?;
                    let rows = stmt.query_map(rusqlite::params![tenant, after_position as i64, limit as i64], |r| {
                        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?))
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
        let positions: Vec<u64> = rows.iter().map(|r| r.0 as u64).collect();
        let mut payloads: HashMap<u64, String> =
            store.read_positions(&positions).await?.into_iter().map(|e| (e.position, e.payload)).collect();
        let masked = !role.sees_personal_data();
        rows.into_iter()
            .map(|(position, stream_id, occurred_at, actor_kind, actor_id, action)| {
                let position = position as u64;
                let payload = payloads.remove(&position).ok_or_else(|| {
                    ProjectionError::Invalid(format!(
                        "the audit trail's row at position {position} has no event in the store: \
                         are the read models built from another log?"
                    ))
                })?;
                let mut detail: serde_json::Value = serde_json::from_str(&payload).unwrap_or(serde_json::Value::Null);
                if masked {
                    mask_personal(&mut detail);
                }
                Ok(AuditRow { position, stream_id, occurred_at, actor_kind, actor_id, action, detail, masked })
            })
            .collect()
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
                    let rows = stmt.query_map(rusqlite::params_from_iter(&params), |r| {
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
                use sqlx::Row;
                let rows = pg_bind(sqlx::query(&text), &params).fetch_all(pool).await?;
                Ok(rows
                    .iter()
                    .map(|row| (0..row.len()).map(|i| pg_value(row, i, false)).collect::<Result<Vec<_>, _>>())
                    .collect::<Result<Vec<_>, _>>()?)
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
        Ok(rows.into_iter().map(session_row).collect())
    }

    /// Sessions open and waiting, agents by presence, and the longest wait
    /// in the queues, over every tenant: what `/metrics` reports.
    pub async fn census(&self) -> Result<Census, ProjectionError> {
        let open = self
            .select(
                "SELECT COUNT(*), \
                 COALESCE(SUM(CASE WHEN queued_at IS NULL AND assigned_at IS NULL THEN 1 ELSE 0 END), 0), \
                 COALESCE(SUM(CASE WHEN assigned_at IS NOT NULL THEN 1 ELSE 0 END), 0) \
                 FROM sessions WHERE ended_at IS NULL",
                vec![],
            )
            .await?;
        let waiting = self.select("SELECT COUNT(*), MIN(queued_at) FROM queue_waiting", vec![]).await?;
        let count = |rows: &[Vec<Value>], i: usize| rows.first().map_or(0, |r| r[i].int());
        let sessions = vec![
            ("open".to_owned(), count(&open, 0)),
            ("with_bot".to_owned(), count(&open, 1)),
            ("waiting".to_owned(), count(&waiting, 0)),
            ("with_agent".to_owned(), count(&open, 2)),
        ];
        let agents = self
            .select("SELECT presence, COUNT(*) FROM queue_agents GROUP BY presence ORDER BY presence", vec![])
            .await?
            .iter()
            .map(|r| (r[0].text(), r[1].int()))
            .collect();
        let since = waiting.first().and_then(|r| r[1].opt_text());
        let longest_wait = since
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(&t).ok())
            .map(|t| (chrono::Utc::now() - t.to_utc()).to_std().unwrap_or_default());
        Ok(Census { sessions, agents, longest_wait })
    }

    /// When `session` was last queued, as the read model has it.
    pub async fn queued_at(
        &self,
        tenant: &TenantId,
        session: &str,
    ) -> Result<Option<chrono::DateTime<chrono::Utc>>, ProjectionError> {
        let rows = self
            .select(
                "SELECT queued_at FROM sessions WHERE tenant_id = {1} AND session_id = {2}",
                vec![Value::from(tenant.as_str()), Value::from(session)],
            )
            .await?;
        let text = rows.first().and_then(|r| r[0].opt_text());
        Ok(text.and_then(|t| chrono::DateTime::parse_from_rfc3339(&t).ok()).map(|t| t.to_utc()))
    }

    /// How long (seconds) the last `limit` sessions assigned from `group`
    /// waited between being queued and assigned, newest first: what an
    /// estimated wait rests on.
    pub async fn recent_waits(
        &self,
        tenant: &TenantId,
        group: &str,
        limit: usize,
    ) -> Result<Vec<i64>, ProjectionError> {
        let rows = self
            .select(
                "SELECT queued_at, assigned_at FROM sessions WHERE tenant_id = {1} AND group_name = {2} \
                 AND queued_at IS NOT NULL AND assigned_at IS NOT NULL ORDER BY assigned_at DESC LIMIT {3}",
                vec![Value::from(tenant.as_str()), Value::from(group), Value::from(limit as i64)],
            )
            .await?;
        let time = |v: &Value| v.opt_text().and_then(|t| chrono::DateTime::parse_from_rfc3339(&t).ok());
        Ok(rows.iter().filter_map(|r| Some((time(&r[1])? - time(&r[0])?).num_seconds().max(0))).collect())
    }

    /// A tenant's ended sessions that an agent handled and nobody has
    /// evaluated yet, most recently ended first: the QA queue.
    pub async fn qa_queue(&self, tenant: &TenantId, limit: usize) -> Result<Vec<SessionRow>, ProjectionError> {
        let rows = self
            .select(
                "SELECT s.session_id, s.tenant_id, s.channel, s.business_type, s.started_at, s.ended_at, s.outcome, \
                 s.agent_id, s.satisfaction FROM sessions s WHERE s.tenant_id = {1} AND s.agent_id IS NOT NULL \
                 AND s.ended_at IS NOT NULL AND NOT EXISTS \
                 (SELECT 1 FROM qa_evaluations q WHERE q.session_id = s.session_id) \
                 ORDER BY s.ended_at DESC, s.session_id LIMIT {2}",
                vec![Value::from(tenant.as_str()), Value::from(limit as i64)],
            )
            .await?;
        Ok(rows.into_iter().map(session_row).collect())
    }

    /// A tenant's dual recordings to review — those without a verdict whose
    /// session has ended (a call still running is not yet evidence) — or,
    /// with `all`, every one; oldest first.
    pub async fn reviews(&self, tenant: &TenantId, all: bool, limit: usize) -> Result<Vec<ReviewRow>, ProjectionError> {
        let rows = self
            .select(
                "SELECT d.session_id, d.script_id, d.script_version, d.steps, d.recorded_at, d.verdict \
                 FROM dual_recordings d WHERE d.tenant_id = {1} AND ({2} = 1 OR (d.verdict IS NULL AND EXISTS \
                 (SELECT 1 FROM sessions s WHERE s.session_id = d.session_id AND s.ended_at IS NOT NULL))) \
                 ORDER BY d.recorded_at, d.session_id LIMIT {3}",
                vec![Value::from(tenant.as_str()), Value::from(all as i64), Value::from(limit as i64)],
            )
            .await?;
        Ok(rows
            .into_iter()
            .map(|r| ReviewRow {
                session_id: r[0].text(),
                script_id: r[1].text(),
                script_version: r[2].int(),
                steps: r[3].int(),
                recorded_at: r[4].text(),
                verdict: r[5].opt_text(),
            })
            .collect())
    }

    /// Every row of a read model's `table` (of `tenant` only, if given), the
    /// named columns in order: for loading it into Arrow.
    pub async fn rows(
        &self,
        table: &str,
        columns: &[&str],
        tenant: Option<&TenantId>,
    ) -> Result<Vec<Vec<Value>>, ProjectionError> {
        let sql = format!("SELECT {} FROM {table} WHERE ({{1}} IS NULL OR tenant_id = {{1}})", columns.join(", "));
        self.select(&sql, vec![Value::from(tenant.map(|t| t.to_string()))]).await
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
                    name: None,
                })
                .collect(),
        })
    }

    /// The tables of this projector's projections.
    pub fn tables(&self) -> Vec<&'static str> {
        self.projections.iter().flat_map(|p| p.tables().iter().copied()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small xorshift generator: the test needs reproducible variety, not
    /// good randomness.
    struct Rng(u64);

    impl Rng {
        fn below(&mut self, n: u64) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0 % n
        }
    }

    fn random_op(rng: &mut Rng, position: &mut i64) -> RowOp {
        let key = ("k", Value::from(format!("k{}", rng.below(6))));
        let text = |rng: &mut Rng| match rng.below(4) {
            0 => Value::Text(None),
            n => Value::from(format!("v{n}")),
        };
        let int = |rng: &mut Rng| match rng.below(4) {
            0 => Value::Int(None),
            n => Value::from(n as i64),
        };
        let merge = |rng: &mut Rng| if rng.below(2) == 0 { Merge::Set } else { Merge::KeepFirst };
        match rng.below(7) {
            0 | 1 => {
                let mut columns = Vec::new();
                if rng.below(2) == 0 {
                    columns.push(("a", text(rng), merge(rng)));
                }
                if rng.below(2) == 0 {
                    columns.push(("c", Value::from(format!("c{}", rng.below(3))), merge(rng)));
                }
                if rng.below(2) == 0 {
                    columns.push(("d", int(rng), merge(rng)));
                }
                RowOp::Upsert { table: "t", key, columns }
            }
            2 => RowOp::Insert { table: "t", key, columns: vec![("a", text(rng))] },
            3 => RowOp::Update { table: "t", key, columns: vec![("d", int(rng)), ("a", text(rng))] },
            4 => RowOp::Delete { table: "t", key },
            5 => RowOp::Add {
                table: "t",
                key,
                column: if rng.below(2) == 0 { "b" } else { "d" },
                delta: rng.below(5) as i64 - 2,
            },
            _ => {
                // Append-only rows, now and then one already there.
                *position += 1;
                let at = *position - rng.below(2) as i64;
                RowOp::Insert {
                    table: "log",
                    key: ("position", Value::from(at)),
                    columns: vec![("s", Value::from(format!("s{}", rng.below(9))))],
                }
            }
        }
    }

    fn dump(conn: &rusqlite::Connection) -> Vec<String> {
        let mut out = Vec::new();
        for table in ["t", "log"] {
            let mut stmt = conn.prepare(&format!("SELECT * FROM {table} ORDER BY 1")).unwrap();
            let n = stmt.column_count();
            let rows = stmt
                .query_map([], |r| {
                    (0..n)
                        .map(|i| r.get::<_, rusqlite::types::Value>(i).map(|v| format!("{v:?}")))
                        .collect::<Result<Vec<_>, _>>()
                })
                .unwrap();
            out.extend(rows.map(|r| format!("{table}: {}", r.unwrap().join(" | "))));
        }
        out
    }

    #[test]
    fn batched_ops_leave_the_tables_as_sequential_ops_do() {
        let open = || {
            let conn = rusqlite::Connection::open_in_memory().unwrap();
            conn.execute_batch(
                "CREATE TABLE t (k TEXT PRIMARY KEY, a TEXT, b INTEGER NOT NULL DEFAULT 0, \
                 c TEXT NOT NULL DEFAULT 'it''s', d INTEGER);
                 CREATE TABLE log (position INTEGER PRIMARY KEY, s TEXT NOT NULL);",
            )
            .unwrap();
            conn
        };
        let (mut one_by_one, mut batched) = (open(), open());
        let mut catalog = batch::Catalog::default();
        let mut rng = Rng(0x5eed);
        let mut position = 0;
        let mut changed = 0;
        for round in 0..300 {
            let ops: Vec<RowOp> = (0..rng.below(40) + 1).map(|_| random_op(&mut rng, &mut position)).collect();
            let tx = one_by_one.transaction().unwrap();
            for op in &ops {
                let (sql, params) = rows::sql(op, SqliteTables::PLACEHOLDER);
                tx.execute(&sql, rusqlite::params_from_iter(&params)).unwrap();
            }
            tx.commit().unwrap();
            let tx = batched.transaction().unwrap();
            sqlite_write(&tx, &mut catalog, ops.clone()).unwrap();
            tx.commit().unwrap();
            let expected = dump(&one_by_one);
            assert_eq!(dump(&batched), expected, "round {round}, ops {ops:#?}");
            changed += usize::from(!expected.is_empty());
        }
        assert!(changed > 250, "the random ops should leave rows behind: {changed}");
    }

    #[test]
    fn an_op_on_an_unknown_column_is_refused_and_writes_nothing() {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE t (k TEXT PRIMARY KEY, a TEXT)").unwrap();
        let mut conn = conn;
        let tx = conn.transaction().unwrap();
        let ops = vec![
            RowOp::Upsert { table: "t", key: ("k", "k1".into()), columns: vec![("a", "x".into(), Merge::Set)] },
            RowOp::Upsert { table: "t", key: ("k", "k1".into()), columns: vec![("nope", "x".into(), Merge::Set)] },
        ];
        let err = sqlite_write(&tx, &mut batch::Catalog::default(), ops).unwrap_err();
        assert!(err.to_string().contains("no column nope"), "{err}");
        drop(tx);
        let rows: i64 = conn.query_row("SELECT count(*) FROM t", [], |r| r.get(0)).unwrap();
        assert_eq!(rows, 0);
    }
}
