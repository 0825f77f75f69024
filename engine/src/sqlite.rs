//! SQLite backend: one file, WAL, writers serialised by `BEGIN IMMEDIATE`.
//!
//! Because writers are serialised, `position` is simply `max + 1`: gap-free
//! and in commit order, so a cursor's `commit` is the position itself.

use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{Connection, QueryBuilder, Row, SqliteConnection};
use tokio::sync::Mutex;
use uuid::Uuid;
use witness_schemas::{Cursor, RecordedEvent, StreamId, TenantId};

use crate::checkpoint::Checkpoint;
use crate::rows::{RawRow, COLUMNS};
use crate::store::{
    as_retry, check_head, event_ids, seal, AppendResult, ExpectedVersion, Head, Prepared,
};
use crate::StoreError;

#[derive(Debug)]
pub(crate) struct SqliteBackend {
    /// The one writing connection: appends queue here in process, and
    /// `BEGIN IMMEDIATE` serialises them against other processes.
    writer: Mutex<SqliteConnection>,
    readers: SqlitePool,
}

fn micros(t: &DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

fn from_micros(position: i64, us: i64) -> Result<DateTime<Utc>, StoreError> {
    DateTime::from_timestamp_micros(us).ok_or_else(|| StoreError::CorruptRow {
        position: position as u64,
        message: format!("time {us} out of range"),
    })
}

fn row_to_event(row: &SqliteRow) -> Result<RecordedEvent, StoreError> {
    let position: i64 = row.try_get(0)?;
    RawRow {
        position,
        commit: position,
        event_id: row.try_get(1)?,
        tenant_id: row.try_get(2)?,
        stream_id: row.try_get(3)?,
        stream_version: row.try_get(4)?,
        event_type: row.try_get(5)?,
        schema_version: row.try_get(6)?,
        occurred_at: from_micros(position, row.try_get(7)?)?,
        recorded_at: from_micros(position, row.try_get(8)?)?,
        actor_kind: row.try_get(9)?,
        actor_id: row.try_get(10)?,
        correlation_id: row.try_get(11)?,
        causation_id: row.try_get(12)?,
        payload: row.try_get(13)?,
        prev_hash: row.try_get(14)?,
        hash: row.try_get(15)?,
    }
    .into_event()
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.is_unique_violation())
}

impl SqliteBackend {
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let path = url
            .trim_start_matches("sqlite://")
            .trim_start_matches("sqlite:");
        let path = path.split('?').next().unwrap_or_default();
        if let Some(parent) = std::path::Path::new(path).parent() {
            if !parent.as_os_str().is_empty() && path != ":memory:" {
                std::fs::create_dir_all(parent)?;
            }
        }
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // NORMAL in WAL mode: a commit is durable against a process crash,
            // and the database is never corrupted; the last commits before a
            // power loss may be lost. Pass `?synchronous=full` to pay an fsync
            // per commit instead.
            .synchronous(if url.contains("synchronous=full") {
                SqliteSynchronous::Full
            } else {
                SqliteSynchronous::Normal
            })
            .busy_timeout(Duration::from_secs(10));
        let mut writer = SqliteConnection::connect_with(&options).await?;
        sqlx::migrate!("../migrations/sqlite")
            .run(&mut writer)
            .await?;
        let readers = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options.read_only(true))
            .await?;
        Ok(Self {
            writer: Mutex::new(writer),
            readers,
        })
    }

    pub async fn append(
        &self,
        tenant: &TenantId,
        stream: &StreamId,
        expected: ExpectedVersion,
        prepared: &[Prepared],
    ) -> Result<AppendResult, StoreError> {
        let mut conn = self.writer.lock().await;
        // Dropping `tx` without commit rolls back, also when this future is
        // cancelled half-way: the writer connection is never left mid-transaction.
        let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;
        let head = head(&mut tx, stream).await?;
        if let Err(refused) = check_head(head.as_ref(), tenant, stream, expected) {
            return match as_retry(find(&mut tx, &event_ids(prepared)).await?, prepared, stream)? {
                Some(stored) => Ok(stored),
                None => Err(refused),
            };
        }
        let last: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(position), 0) FROM events")
            .fetch_one(&mut *tx)
            .await?;
        let positions: Vec<(u64, u64)> = (1..=prepared.len() as u64)
            .map(|i| (last as u64 + i, last as u64 + i))
            .collect();
        let events = seal(prepared, tenant, stream, head.as_ref(), &positions);
        match insert(&mut tx, &events).await {
            Ok(()) => {
                tx.commit().await?;
                Ok(AppendResult {
                    events,
                    deduplicated: false,
                })
            }
            Err(e) if is_unique_violation(&e) => {
                // Only event_id can collide: the stream head was checked under the lock.
                let stored = find(&mut tx, &event_ids(prepared)).await?;
                as_retry(stored, prepared, stream)?.ok_or(StoreError::Database(e))
            }
            Err(e) => Err(e.into()),
        }
    }

    pub async fn read_stream(
        &self,
        stream: &StreamId,
        from_version: u64,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM events WHERE stream_id = ? AND stream_version >= ? ORDER BY stream_version");
        let rows = sqlx::query(&sql)
            .bind(stream.to_string())
            .bind(from_version as i64)
            .fetch_all(&self.readers)
            .await?;
        rows.iter().map(row_to_event).collect()
    }

    pub async fn read_all(
        &self,
        after: Cursor,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        self.scan_positions(after.position, limit).await
    }

    pub async fn scan_positions(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let sql =
            format!("SELECT {COLUMNS} FROM events WHERE position > ? ORDER BY position LIMIT ?");
        let rows = sqlx::query(&sql)
            .bind(after as i64)
            .bind(limit as i64)
            .fetch_all(&self.readers)
            .await?;
        rows.iter().map(row_to_event).collect()
    }

    pub async fn checkpoints(&self) -> Result<Vec<Checkpoint>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, from_commit, from_position, to_commit, to_position, event_count, merkle_root, public_key, \
             signature, created_at FROM checkpoints ORDER BY id",
        )
        .fetch_all(&self.readers)
        .await?;
        rows.iter()
            .map(|r| {
                let created: i64 = r.try_get(9)?;
                Checkpoint::from_parts(
                    r.try_get(0)?,
                    Cursor {
                        commit: r.try_get::<i64, _>(1)? as u64,
                        position: r.try_get::<i64, _>(2)? as u64,
                    },
                    Cursor {
                        commit: r.try_get::<i64, _>(3)? as u64,
                        position: r.try_get::<i64, _>(4)? as u64,
                    },
                    r.try_get::<i64, _>(5)? as u64,
                    r.try_get(6)?,
                    r.try_get(7)?,
                    r.try_get(8)?,
                    DateTime::from_timestamp_micros(created).unwrap_or_default(),
                )
            })
            .collect()
    }

    pub async fn insert_checkpoint(&self, cp: &Checkpoint) -> Result<(), StoreError> {
        let mut conn = self.writer.lock().await;
        sqlx::query(
            "INSERT INTO checkpoints (from_commit, from_position, to_commit, to_position, event_count, merkle_root, \
             public_key, signature, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(cp.from.commit as i64)
        .bind(cp.from.position as i64)
        .bind(cp.to.commit as i64)
        .bind(cp.to.position as i64)
        .bind(cp.event_count as i64)
        .bind(cp.merkle_root.as_slice())
        .bind(cp.public_key.as_slice())
        .bind(cp.signature.as_slice())
        .bind(micros(&cp.created_at))
        .execute(&mut *conn)
        .await?;
        Ok(())
    }

    pub async fn execute_raw(&self, sql: &str) -> Result<u64, StoreError> {
        let mut conn = self.writer.lock().await;
        Ok(sqlx::raw_sql(sql)
            .execute(&mut *conn)
            .await?
            .rows_affected())
    }

    pub async fn count(&self) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM events")
            .fetch_one(&self.readers)
            .await?;
        Ok(n as u64)
    }
}

async fn head(conn: &mut SqliteConnection, stream: &StreamId) -> Result<Option<Head>, StoreError> {
    let row = sqlx::query(
        "SELECT stream_version, hash, tenant_id FROM events WHERE stream_id = ? ORDER BY stream_version DESC LIMIT 1",
    )
    .bind(stream.to_string())
    .fetch_optional(&mut *conn)
    .await?;
    row.map(|r| {
        let hash: Vec<u8> = r.try_get(1)?;
        Ok(Head {
            version: r.try_get::<i64, _>(0)? as u64,
            hash: hash.try_into().map_err(|_| StoreError::CorruptRow {
                position: 0,
                message: "head hash".into(),
            })?,
            tenant: r.try_get(2)?,
        })
    })
    .transpose()
}

async fn find(conn: &mut SqliteConnection, ids: &[Uuid]) -> Result<Vec<RecordedEvent>, StoreError> {
    let mut q = QueryBuilder::new(format!("SELECT {COLUMNS} FROM events WHERE event_id IN ("));
    let mut list = q.separated(", ");
    for id in ids {
        list.push_bind(*id);
    }
    q.push(") ORDER BY position");
    let rows = q.build().fetch_all(&mut *conn).await?;
    rows.iter().map(row_to_event).collect()
}

async fn insert(conn: &mut SqliteConnection, events: &[RecordedEvent]) -> Result<(), sqlx::Error> {
    // One multi-row INSERT per append: 16 binds a row, so MAX_BATCH rows
    // stay under SQLite's limit of 32,766 parameters.
    let mut q = QueryBuilder::new(format!("INSERT INTO events ({COLUMNS}) "));
    q.push_values(events, |mut b, e| {
        b.push_bind(e.position as i64)
            .push_bind(e.event_id)
            .push_bind(e.tenant_id.as_str())
            .push_bind(e.stream_id.to_string())
            .push_bind(e.stream_version as i64)
            .push_bind(e.event_type.as_str())
            .push_bind(e.schema_version as i64)
            .push_bind(micros(&e.occurred_at))
            .push_bind(micros(&e.recorded_at))
            .push_bind(e.actor.kind.as_str())
            .push_bind(e.actor.id.as_deref())
            .push_bind(e.correlation_id)
            .push_bind(e.causation_id)
            .push_bind(e.payload.as_str())
            .push_bind(e.prev_hash.as_slice())
            .push_bind(e.hash.as_slice());
    });
    q.build().execute(&mut *conn).await?;
    Ok(())
}
