//! PostgreSQL backend: concurrent writers, global order by visibility.
//!
//! Positions come from a sequence before commit, so they become visible out
//! of order: transaction A takes position 10, B takes 11, B commits first. A
//! reader that remembered "after 11" would skip 10 forever. Each row also
//! stores the writing transaction's id (`transaction_id xid8`), and readers
//! only return rows with `transaction_id < pg_snapshot_xmin(pg_current_snapshot())`
//! — the transactions older than every one still running — ordered by
//! `(transaction_id, position)`. Rows below that horizon can no longer
//! appear, so a cursor on that pair never skips one. No gap timeouts.
//!
//! The price: xmin is cluster-wide, so a transaction left open anywhere in
//! the PostgreSQL cluster (any database) holds back every reader until it
//! ends. Give the event store a cluster without long-running transactions.

use std::time::Duration;

use sqlx::postgres::{PgPool, PgPoolOptions, PgRow};
use sqlx::{Postgres, Row, Transaction};
use uuid::Uuid;
use witness_schemas::{Cursor, RecordedEvent, StreamId, TenantId};

use crate::checkpoint::Checkpoint;
use crate::rows::{RawRow, COLUMNS};
use crate::shred::{new_key_hex, KeyState};
use crate::store::{as_retry, check_head, event_ids, seal, AppendResult, ExpectedVersion, Head, Prepared};
use crate::StoreError;

#[derive(Debug)]
pub(crate) struct PgBackend {
    pool: PgPool,
}

const SELECT: &str = "SELECT position, event_id, tenant_id, stream_id, stream_version, event_type, schema_version, \
     occurred_at, recorded_at, actor_kind, actor_id, correlation_id, causation_id, payload, prev_hash, hash, \
     transaction_id::text::int8 AS commit FROM events";

fn row_to_event(row: &PgRow) -> Result<RecordedEvent, StoreError> {
    RawRow {
        position: row.try_get(0)?,
        commit: row.try_get(16)?,
        event_id: row.try_get(1)?,
        tenant_id: row.try_get(2)?,
        stream_id: row.try_get(3)?,
        stream_version: row.try_get(4)?,
        event_type: row.try_get(5)?,
        schema_version: row.try_get(6)?,
        occurred_at: row.try_get(7)?,
        recorded_at: row.try_get(8)?,
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

fn unique_violation_on(e: &sqlx::Error) -> Option<String> {
    match e {
        sqlx::Error::Database(db) if db.is_unique_violation() => Some(db.constraint().unwrap_or_default().to_owned()),
        _ => None,
    }
}

impl PgBackend {
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let pool =
            PgPoolOptions::new().max_connections(16).acquire_timeout(Duration::from_secs(30)).connect(url).await?;
        // Several processes may start at once against a fresh database; the
        // migrator takes an advisory lock so only one applies migrations.
        sqlx::migrate!("../migrations/postgres").run(&pool).await?;
        Ok(Self { pool })
    }

    pub async fn append(
        &self,
        tenant: &TenantId,
        stream: &StreamId,
        expected: ExpectedVersion,
        prepared: &[Prepared],
    ) -> Result<AppendResult, StoreError> {
        let mut tx = self.pool.begin().await?;
        if expected == ExpectedVersion::Any {
            // `Any` writers to one stream would otherwise race for the same
            // next version; queue them on a per-stream lock held to commit.
            // (Exact writers need no lock: the loser of a race gets
            // `Concurrency` from the unique (stream_id, stream_version).)
            sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
                .bind(stream.to_string())
                .execute(&mut *tx)
                .await?;
        }
        let head = head(&mut tx, stream).await?;
        if let Err(refused) = check_head(head.as_ref(), tenant, stream, expected) {
            drop(tx);
            return match as_retry(self.find(&event_ids(prepared)).await?, prepared, stream)? {
                Some(stored) => Ok(stored),
                None => Err(refused),
            };
        }
        // Positions are taken after the head is read: within a stream they
        // therefore grow with the version.
        let positions: Vec<(u64, u64)> = sqlx::query(
            "SELECT nextval('events_position_seq'), pg_current_xact_id()::text::int8 FROM generate_series(1, $1)",
        )
        .bind(prepared.len() as i32)
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(|r| Ok((r.try_get::<i64, _>(0)? as u64, r.try_get::<i64, _>(1)? as u64)))
        .collect::<Result<_, sqlx::Error>>()?;
        let events = seal(prepared, tenant, stream, head.as_ref(), &positions);
        let inserted = insert(&mut tx, &events).await;
        let outcome = match inserted {
            Ok(()) => tx.commit().await,
            Err(e) => Err(e),
        };
        match outcome {
            Ok(()) => Ok(AppendResult { events, deduplicated: false }),
            Err(e) => match unique_violation_on(&e) {
                // A concurrent writer got there first: either with the same
                // events (a retry racing itself) or with others (a conflict).
                Some(constraint) => {
                    if let Some(stored) = as_retry(self.find(&event_ids(prepared)).await?, prepared, stream)? {
                        return Ok(stored);
                    }
                    if constraint.contains("event_id") {
                        return Err(StoreError::Database(e));
                    }
                    let actual = self.read_head(stream).await?.map_or(0, |h| h.version);
                    Err(StoreError::Concurrency { stream: stream.clone(), expected, actual })
                }
                None => Err(e.into()),
            },
        }
    }

    async fn read_head(&self, stream: &StreamId) -> Result<Option<Head>, StoreError> {
        let mut conn = self.pool.acquire().await?;
        head(&mut conn, stream).await
    }

    async fn find(&self, ids: &[Uuid]) -> Result<Vec<RecordedEvent>, StoreError> {
        let rows = sqlx::query(&format!("{SELECT} WHERE event_id = ANY($1) ORDER BY position"))
            .bind(ids)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(row_to_event).collect()
    }

    pub async fn read_stream(&self, stream: &StreamId, from_version: u64) -> Result<Vec<RecordedEvent>, StoreError> {
        let rows =
            sqlx::query(&format!("{SELECT} WHERE stream_id = $1 AND stream_version >= $2 ORDER BY stream_version"))
                .bind(stream.to_string())
                .bind(from_version as i64)
                .fetch_all(&self.pool)
                .await?;
        rows.iter().map(row_to_event).collect()
    }

    pub async fn read_all(&self, after: Cursor, limit: usize) -> Result<Vec<RecordedEvent>, StoreError> {
        self.read_after(None, after, limit).await
    }

    pub async fn read_tenant(
        &self,
        tenant: &str,
        after: Cursor,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        self.read_after(Some(tenant), after, limit).await
    }

    /// Up to `limit` events after `after` in commit order (of `tenant`
    /// only, if given), never past an open transaction.
    async fn read_after(
        &self,
        tenant: Option<&str>,
        after: Cursor,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let only = if tenant.is_some() { "tenant_id = $4 AND " } else { "" };
        let sql = format!(
            "{SELECT} WHERE {only}(transaction_id, position) > ($1::text::xid8, $2) \
             AND transaction_id < pg_snapshot_xmin(pg_current_snapshot()) \
             ORDER BY transaction_id, position LIMIT $3"
        );
        let query = sqlx::query(&sql).bind(after.commit.to_string()).bind(after.position as i64).bind(limit as i64);
        let query = match tenant {
            Some(tenant) => query.bind(tenant),
            None => query,
        };
        let rows = query.fetch_all(&self.pool).await?;
        rows.iter().map(row_to_event).collect()
    }

    pub async fn scan_positions(&self, after: u64, limit: usize) -> Result<Vec<RecordedEvent>, StoreError> {
        let rows = sqlx::query(&format!("{SELECT} WHERE position > $1 ORDER BY position LIMIT $2"))
            .bind(after as i64)
            .bind(limit as i64)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(row_to_event).collect()
    }

    pub async fn read_positions(&self, positions: &[u64]) -> Result<Vec<RecordedEvent>, StoreError> {
        let positions: Vec<i64> = positions.iter().map(|&p| p as i64).collect();
        let rows = sqlx::query(&format!("{SELECT} WHERE position = ANY($1) ORDER BY position"))
            .bind(positions)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(row_to_event).collect()
    }

    pub async fn checkpoints(&self) -> Result<Vec<Checkpoint>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, from_commit, from_position, to_commit, to_position, event_count, merkle_root, public_key, \
             signature, created_at FROM checkpoints ORDER BY id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Checkpoint::from_parts(
                    r.try_get(0)?,
                    Cursor { commit: r.try_get::<i64, _>(1)? as u64, position: r.try_get::<i64, _>(2)? as u64 },
                    Cursor { commit: r.try_get::<i64, _>(3)? as u64, position: r.try_get::<i64, _>(4)? as u64 },
                    r.try_get::<i64, _>(5)? as u64,
                    r.try_get(6)?,
                    r.try_get(7)?,
                    r.try_get(8)?,
                    r.try_get(9)?,
                )
            })
            .collect()
    }

    pub async fn insert_checkpoint(&self, cp: &Checkpoint) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO checkpoints (from_commit, from_position, to_commit, to_position, event_count, merkle_root, \
             public_key, signature, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(cp.from.commit as i64)
        .bind(cp.from.position as i64)
        .bind(cp.to.commit as i64)
        .bind(cp.to.position as i64)
        .bind(cp.event_count as i64)
        .bind(cp.merkle_root.as_slice())
        .bind(cp.public_key.as_slice())
        .bind(cp.signature.as_slice())
        .bind(cp.created_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn subscription_checkpoint(&self, name: &str) -> Result<Cursor, StoreError> {
        let row: Option<(i64, i64)> =
            sqlx::query_as("SELECT commit_id, position FROM subscription_checkpoints WHERE name = $1")
                .bind(name)
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.map_or(Cursor::START, |(c, p)| Cursor { commit: c as u64, position: p as u64 }))
    }

    pub async fn save_subscription_checkpoint(&self, name: &str, at: Cursor) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO subscription_checkpoints (name, commit_id, position) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO UPDATE SET commit_id = excluded.commit_id, position = excluded.position",
        )
        .bind(name)
        .bind(at.commit as i64)
        .bind(at.position as i64)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn credential(&self, user: &str) -> Result<Option<String>, StoreError> {
        Ok(sqlx::query_scalar("SELECT password_hash FROM credentials WHERE user_id = $1")
            .bind(user)
            .fetch_optional(&self.pool)
            .await?)
    }

    pub async fn save_credential(&self, user: &str, hash: &str) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO credentials (user_id, password_hash) VALUES ($1, $2) \
             ON CONFLICT (user_id) DO UPDATE SET password_hash = excluded.password_hash",
        )
        .bind(user)
        .bind(hash)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// A subject's key; with `create`, one is made if it has none.
    pub async fn subject_key(&self, tenant: &str, subject: &str, create: bool) -> Result<KeyState, StoreError> {
        if create {
            sqlx::query(
                "INSERT INTO subject_keys (tenant_id, subject, key_hex) VALUES ($1, $2, $3) \
                 ON CONFLICT (tenant_id, subject) DO NOTHING",
            )
            .bind(tenant)
            .bind(subject)
            .bind(new_key_hex())
            .execute(&self.pool)
            .await?;
        }
        let found: Option<Option<String>> =
            sqlx::query_scalar("SELECT key_hex FROM subject_keys WHERE tenant_id = $1 AND subject = $2")
                .bind(tenant)
                .bind(subject)
                .fetch_optional(&self.pool)
                .await?;
        Ok(found.map_or(KeyState::Missing, KeyState::from_hex))
    }

    /// Erases a subject's key (recording an erased one if it had none);
    /// `true` if a key was erased now.
    pub async fn erase_subject_key(&self, tenant: &str, subject: &str, at: &str) -> Result<bool, StoreError> {
        let erased = sqlx::query(
            "INSERT INTO subject_keys (tenant_id, subject, key_hex, erased_at) VALUES ($1, $2, NULL, $3) \
             ON CONFLICT (tenant_id, subject) DO UPDATE SET key_hex = NULL, erased_at = excluded.erased_at \
             WHERE subject_keys.key_hex IS NOT NULL",
        )
        .bind(tenant)
        .bind(subject)
        .bind(at)
        .execute(&self.pool)
        .await?;
        Ok(erased.rows_affected() > 0)
    }

    pub async fn count(&self) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM events").fetch_one(&self.pool).await?;
        Ok(n as u64)
    }

    /// The last event's position (0: none), by the primary key: no scan.
    pub async fn last_position(&self) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(position), 0) FROM events").fetch_one(&self.pool).await?;
        Ok(n as u64)
    }

    /// The migrations applied, and those this build knows.
    pub async fn migrations(&self) -> Result<(usize, usize), StoreError> {
        let known = sqlx::migrate!("../migrations/postgres").iter().count();
        let applied: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations WHERE success").fetch_one(&self.pool).await?;
        Ok((applied as usize, known))
    }
}

async fn head(conn: &mut sqlx::PgConnection, stream: &StreamId) -> Result<Option<Head>, StoreError> {
    let row = sqlx::query(
        "SELECT stream_version, hash, tenant_id FROM events WHERE stream_id = $1 ORDER BY stream_version DESC LIMIT 1",
    )
    .bind(stream.to_string())
    .fetch_optional(&mut *conn)
    .await?;
    row.map(|r| {
        let hash: Vec<u8> = r.try_get(1)?;
        Ok(Head {
            version: r.try_get::<i64, _>(0)? as u64,
            hash: hash.try_into().map_err(|_| StoreError::CorruptRow { position: 0, message: "head hash".into() })?,
            tenant: r.try_get(2)?,
        })
    })
    .transpose()
}

async fn insert(tx: &mut Transaction<'_, Postgres>, events: &[RecordedEvent]) -> Result<(), sqlx::Error> {
    // Column arrays and UNNEST: one statement text whatever the batch size,
    // so it is prepared once per connection.
    let n = events.len();
    let mut position = Vec::with_capacity(n);
    let mut event_id = Vec::with_capacity(n);
    let mut tenant = Vec::with_capacity(n);
    let mut stream = Vec::with_capacity(n);
    let mut version = Vec::with_capacity(n);
    let mut event_type = Vec::with_capacity(n);
    let mut schema_version = Vec::with_capacity(n);
    let mut occurred = Vec::with_capacity(n);
    let mut recorded = Vec::with_capacity(n);
    let mut actor_kind = Vec::with_capacity(n);
    let mut actor_id = Vec::with_capacity(n);
    let mut correlation = Vec::with_capacity(n);
    let mut causation = Vec::with_capacity(n);
    let mut payload = Vec::with_capacity(n);
    let mut prev_hash = Vec::with_capacity(n);
    let mut hash = Vec::with_capacity(n);
    for e in events {
        position.push(e.position as i64);
        event_id.push(e.event_id);
        tenant.push(e.tenant_id.as_str());
        stream.push(e.stream_id.to_string());
        version.push(e.stream_version as i64);
        event_type.push(e.event_type.as_str());
        schema_version.push(e.schema_version as i32);
        occurred.push(e.occurred_at);
        recorded.push(e.recorded_at);
        actor_kind.push(e.actor.kind.as_str());
        actor_id.push(e.actor.id.as_deref());
        correlation.push(e.correlation_id);
        causation.push(e.causation_id);
        payload.push(e.payload.as_str());
        prev_hash.push(e.prev_hash.to_vec());
        hash.push(e.hash.to_vec());
    }
    sqlx::query(&format!(
        "INSERT INTO events ({COLUMNS}) SELECT * FROM UNNEST($1::int8[], $2::uuid[], $3::text[], $4::text[], \
         $5::int8[], $6::text[], $7::int4[], $8::timestamptz[], $9::timestamptz[], $10::text[], $11::text[], \
         $12::uuid[], $13::uuid[], $14::text[], $15::bytea[], $16::bytea[])"
    ))
    .bind(position)
    .bind(event_id)
    .bind(tenant)
    .bind(stream)
    .bind(version)
    .bind(event_type)
    .bind(schema_version)
    .bind(occurred)
    .bind(recorded)
    .bind(actor_kind)
    .bind(actor_id)
    .bind(correlation)
    .bind(causation)
    .bind(payload)
    .bind(prev_hash)
    .bind(hash)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
