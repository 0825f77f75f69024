//! SQLite backend: one file, WAL, writers serialised by `BEGIN IMMEDIATE`.
//!
//! Because writers are serialised, `position` is simply `max + 1`: gap-free
//! and in commit order, so a cursor's `commit` is the position itself.
//!
//! This backend talks to SQLite through rusqlite on blocking threads rather
//! than through sqlx (which it still uses for migrations only): sqlx-sqlite
//! hands every statement to a worker thread and back, and profiling showed
//! those thread wake-ups, not SQLite, dominating appends and reads. Here one
//! append or one page of reads is one hop, and statements are prepared once
//! per connection (`prepare_cached`).
//!
//! Appends are committed in groups: one writer thread takes every append
//! waiting for it, runs each in a savepoint of one transaction (so each is
//! checked, and refused, on its own) and commits them together. A lone
//! append is committed at once; under load, concurrent appends share one
//! `COMMIT` and the WAL pages they touch, instead of queueing on a lock.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{mpsc, Arc, Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, Utc};
use rusqlite::{params, Connection, OpenFlags, OptionalExtension, TransactionBehavior};
use sqlx::Connection as _;
use uuid::Uuid;
use witness_schemas::{Cursor, RecordedEvent, StreamId, TenantId};

use crate::checkpoint::Checkpoint;
use crate::rows::{RawRow, COLUMNS};
use crate::shred::{new_key_hex, KeyState};
use crate::store::{as_retry, check_head, event_ids, seal, AppendResult, ExpectedVersion, Head, Prepared};
use crate::StoreError;

const BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// How often a connection that found the database locked tries again.
const BUSY_POLL: Duration = Duration::from_micros(100);

/// Makes `conn` wait for a lock held by another connection by trying again
/// every 100 µs, for up to 10 s. SQLite's own busy timeout sleeps 1, 2, 5,
/// 10, 15, 20… ms between tries, so an append that found the projector
/// mid-transaction waited 18 ms after four tries even when the lock was
/// free again after a fraction of a millisecond.
pub fn wait_when_busy(conn: &Connection) -> rusqlite::Result<()> {
    const TRIES: i32 = (BUSY_TIMEOUT.as_micros() / BUSY_POLL.as_micros()) as i32;
    conn.busy_handler(Some(|tries: i32| {
        std::thread::sleep(BUSY_POLL);
        tries < TRIES
    }))
}

/// The most appends one group commit takes.
const GROUP_MAX: usize = 256;

#[derive(Debug)]
pub(crate) struct SqliteBackend {
    /// The one writing connection, shared by the append thread and the
    /// other (rare) writes; `BEGIN IMMEDIATE` serialises it against other
    /// processes.
    writer: Arc<Mutex<Connection>>,
    /// Appends waiting for the writer thread, which ends when this drops.
    appends: mpsc::Sender<AppendRequest>,
    readers: Arc<ReaderPool>,
}

/// One append handed to the writer thread.
struct AppendRequest {
    tenant: TenantId,
    stream: StreamId,
    expected: ExpectedVersion,
    prepared: Arc<Vec<Prepared>>,
    reply: tokio::sync::oneshot::Sender<Result<AppendResult, StoreError>>,
}

impl std::fmt::Debug for AppendRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppendRequest").field("stream", &self.stream).field("events", &self.prepared.len()).finish()
    }
}

/// Read-only connections, opened on demand and kept for reuse.
#[derive(Debug)]
struct ReaderPool {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
}

impl ReaderPool {
    fn with<T>(&self, f: impl FnOnce(&Connection) -> Result<T, StoreError>) -> Result<T, StoreError> {
        let conn = match lock(&self.idle).pop() {
            Some(conn) => conn,
            None => {
                let conn = Connection::open_with_flags(
                    &self.path,
                    OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI,
                )?;
                wait_when_busy(&conn)?;
                conn
            }
        };
        let result = f(&conn);
        lock(&self.idle).push(conn);
        result
    }
}

/// A poisoned lock only means another thread panicked while holding it; the
/// connection inside is still sound (an open transaction was rolled back
/// when its guard dropped during unwinding).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Runs blocking SQLite work off the async runtime.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| StoreError::Io(std::io::Error::other(e)))?
}

fn from_micros(position: i64, us: i64) -> Result<DateTime<Utc>, StoreError> {
    DateTime::from_timestamp_micros(us)
        .ok_or_else(|| StoreError::CorruptRow { position: position as u64, message: format!("time {us} out of range") })
}

fn row_to_event(row: &rusqlite::Row<'_>) -> Result<RecordedEvent, StoreError> {
    let position: i64 = row.get(0)?;
    RawRow {
        position,
        commit: position,
        event_id: row.get(1)?,
        tenant_id: row.get(2)?,
        stream_id: row.get(3)?,
        stream_version: row.get(4)?,
        event_type: row.get(5)?,
        schema_version: row.get(6)?,
        occurred_at: from_micros(position, row.get(7)?)?,
        recorded_at: from_micros(position, row.get(8)?)?,
        actor_kind: row.get(9)?,
        actor_id: row.get(10)?,
        correlation_id: row.get(11)?,
        causation_id: row.get(12)?,
        payload: row.get(13)?,
        prev_hash: row.get(14)?,
        hash: row.get(15)?,
    }
    .into_event()
}

fn query_events(conn: &Connection, sql: &str, params: impl rusqlite::Params) -> Result<Vec<RecordedEvent>, StoreError> {
    let mut stmt = conn.prepare_cached(sql)?;
    let mut rows = stmt.query(params)?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        out.push(row_to_event(row)?);
    }
    Ok(out)
}

fn is_unique_violation(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _) if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE)
}

impl SqliteBackend {
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let rest = url.trim_start_matches("sqlite://").trim_start_matches("sqlite:");
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        if path.is_empty() || path.contains(":memory:") || query.contains("mode=memory") {
            return Err(StoreError::UnsupportedUrl(format!(
                "{url} (in-memory SQLite cannot be shared by readers; use a file)"
            )));
        }
        let path = PathBuf::from(path);
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)?;
        }
        // Migrations stay with sqlx's embedded migrator, as on PostgreSQL.
        let options = sqlx::sqlite::SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))?
            .create_if_missing(true)
            .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
            .busy_timeout(BUSY_TIMEOUT);
        let mut migrator = sqlx::SqliteConnection::connect_with(&options).await?;
        sqlx::migrate!("../migrations/sqlite").run(&mut migrator).await?;
        migrator.close().await?;

        // FULL: an acknowledged append survives a power loss (the WAL is
        // synced at each commit; the writer groups waiting appends into one
        // commit, so one fsync serves many). A compliance log must not lose
        // what it acknowledged. `?synchronous=normal` trades that for speed:
        // a commit still survives a process crash and the file is never
        // corrupted, but the last commits before a power loss may be lost
        // (BENCHMARKS.md measures the difference).
        let synchronous = if query.contains("synchronous=normal") { "NORMAL" } else { "FULL" };
        let writer = Connection::open(&path)?;
        wait_when_busy(&writer)?;
        writer.pragma_update(None, "journal_mode", "WAL")?;
        writer.pragma_update(None, "synchronous", synchronous)?;
        let writer = Arc::new(Mutex::new(writer));
        let (appends, queue) = mpsc::channel();
        let thread_writer = writer.clone();
        std::thread::Builder::new().name("sqlite-appends".into()).spawn(move || append_loop(&thread_writer, &queue))?;
        Ok(Self { writer, appends, readers: Arc::new(ReaderPool { path, idle: Mutex::new(Vec::new()) }) })
    }

    pub async fn append(
        &self,
        tenant: &TenantId,
        stream: &StreamId,
        expected: ExpectedVersion,
        prepared: &Arc<Vec<Prepared>>,
    ) -> Result<AppendResult, StoreError> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let request = AppendRequest {
            tenant: tenant.clone(),
            stream: stream.clone(),
            expected,
            prepared: prepared.clone(),
            reply,
        };
        let stopped = || StoreError::Io(std::io::Error::other("the SQLite writer thread stopped"));
        self.appends.send(request).map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }

    async fn read(
        &self,
        f: impl FnOnce(&Connection) -> Result<Vec<RecordedEvent>, StoreError> + Send + 'static,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let readers = self.readers.clone();
        blocking(move || readers.with(f)).await
    }

    pub async fn read_stream(&self, stream: &StreamId, from_version: u64) -> Result<Vec<RecordedEvent>, StoreError> {
        let stream = stream.to_string();
        self.read(move |c| {
            let sql = format!(
                "SELECT {COLUMNS} FROM events WHERE stream_id = ?1 AND stream_version >= ?2 ORDER BY stream_version"
            );
            query_events(c, &sql, params![stream, from_version as i64])
        })
        .await
    }

    pub async fn read_all(&self, after: Cursor, limit: usize) -> Result<Vec<RecordedEvent>, StoreError> {
        self.scan_positions(after.position, limit).await
    }

    pub async fn read_tenant(
        &self,
        tenant: &str,
        after: Cursor,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let tenant = tenant.to_owned();
        self.read(move |c| {
            let sql = format!(
                "SELECT {COLUMNS} FROM events WHERE tenant_id = ?1 AND position > ?2 ORDER BY position LIMIT ?3"
            );
            query_events(c, &sql, params![tenant, after.position as i64, limit as i64])
        })
        .await
    }

    pub async fn scan_positions(&self, after: u64, limit: usize) -> Result<Vec<RecordedEvent>, StoreError> {
        self.read(move |c| {
            let sql = format!("SELECT {COLUMNS} FROM events WHERE position > ?1 ORDER BY position LIMIT ?2");
            query_events(c, &sql, params![after as i64, limit as i64])
        })
        .await
    }

    pub async fn read_positions(&self, positions: &[u64]) -> Result<Vec<RecordedEvent>, StoreError> {
        let positions = serde_json::to_string(positions).expect("integers serialise");
        self.read(move |c| {
            let sql = format!(
                "SELECT {COLUMNS} FROM events WHERE position IN (SELECT value FROM json_each(?1)) ORDER BY position"
            );
            query_events(c, &sql, params![positions])
        })
        .await
    }

    pub async fn checkpoints(&self) -> Result<Vec<Checkpoint>, StoreError> {
        let readers = self.readers.clone();
        blocking(move || {
            readers.with(|c| {
                let mut stmt = c.prepare_cached(
                    "SELECT id, from_commit, from_position, to_commit, to_position, event_count, merkle_root, \
                     public_key, signature, created_at FROM checkpoints ORDER BY id",
                )?;
                let mut rows = stmt.query([])?;
                let mut out = Vec::new();
                while let Some(r) = rows.next()? {
                    let n = |i: usize| r.get::<_, i64>(i).map(|v| v as u64);
                    out.push(Checkpoint::from_parts(
                        r.get(0)?,
                        Cursor { commit: n(1)?, position: n(2)? },
                        Cursor { commit: n(3)?, position: n(4)? },
                        n(5)?,
                        r.get(6)?,
                        r.get(7)?,
                        r.get(8)?,
                        DateTime::from_timestamp_micros(r.get(9)?).unwrap_or_default(),
                    )?);
                }
                Ok(out)
            })
        })
        .await
    }

    pub async fn insert_checkpoint(&self, cp: &Checkpoint) -> Result<(), StoreError> {
        let (writer, cp) = (self.writer.clone(), cp.clone());
        blocking(move || {
            lock(&writer).execute(
                "INSERT INTO checkpoints (from_commit, from_position, to_commit, to_position, event_count, \
                 merkle_root, public_key, signature, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![
                    cp.from.commit as i64,
                    cp.from.position as i64,
                    cp.to.commit as i64,
                    cp.to.position as i64,
                    cp.event_count as i64,
                    cp.merkle_root.as_slice(),
                    cp.public_key.as_slice(),
                    cp.signature.as_slice(),
                    cp.created_at.timestamp_micros(),
                ],
            )?;
            Ok(())
        })
        .await
    }

    pub async fn subscription_checkpoint(&self, name: &str) -> Result<Cursor, StoreError> {
        let (readers, name) = (self.readers.clone(), name.to_owned());
        blocking(move || {
            readers.with(|c| {
                let row = c
                    .prepare_cached("SELECT commit_id, position FROM subscription_checkpoints WHERE name = ?1")?
                    .query_row([name], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)))
                    .optional()?;
                Ok(row.map_or(Cursor::START, |(c, p)| Cursor { commit: c as u64, position: p as u64 }))
            })
        })
        .await
    }

    pub async fn save_subscription_checkpoint(&self, name: &str, at: Cursor) -> Result<(), StoreError> {
        let (writer, name) = (self.writer.clone(), name.to_owned());
        blocking(move || {
            lock(&writer).execute(
                "INSERT INTO subscription_checkpoints (name, commit_id, position) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (name) DO UPDATE SET commit_id = excluded.commit_id, position = excluded.position",
                params![name, at.commit as i64, at.position as i64],
            )?;
            Ok(())
        })
        .await
    }

    pub async fn credential(&self, user: &str) -> Result<Option<String>, StoreError> {
        let (readers, user) = (self.readers.clone(), user.to_owned());
        blocking(move || {
            readers.with(|c| {
                Ok(c.prepare_cached("SELECT password_hash FROM credentials WHERE user_id = ?1")?
                    .query_row([user], |r| r.get(0))
                    .optional()?)
            })
        })
        .await
    }

    pub async fn save_credential(&self, user: &str, hash: &str) -> Result<(), StoreError> {
        let (writer, user, hash) = (self.writer.clone(), user.to_owned(), hash.to_owned());
        blocking(move || {
            lock(&writer).execute(
                "INSERT INTO credentials (user_id, password_hash) VALUES (?1, ?2) \
                 ON CONFLICT (user_id) DO UPDATE SET password_hash = excluded.password_hash",
                params![user, hash],
            )?;
            Ok(())
        })
        .await
    }

    /// A subject's key; with `create`, one is made if it has none.
    pub async fn subject_key(&self, tenant: &str, subject: &str, create: bool) -> Result<KeyState, StoreError> {
        fn read(c: &Connection, tenant: &str, subject: &str) -> Result<KeyState, StoreError> {
            let found: Option<Option<String>> = c
                .prepare_cached("SELECT key_hex FROM subject_keys WHERE tenant_id = ?1 AND subject = ?2")?
                .query_row([tenant, subject], |r| r.get(0))
                .optional()?;
            Ok(found.map_or(KeyState::Missing, KeyState::from_hex))
        }
        let (tenant, subject) = (tenant.to_owned(), subject.to_owned());
        if !create {
            let readers = self.readers.clone();
            return blocking(move || readers.with(|c| read(c, &tenant, &subject))).await;
        }
        let writer = self.writer.clone();
        blocking(move || {
            let conn = lock(&writer);
            conn.prepare_cached(
                "INSERT INTO subject_keys (tenant_id, subject, key_hex) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (tenant_id, subject) DO NOTHING",
            )?
            .execute(params![tenant, subject, new_key_hex()])?;
            read(&conn, &tenant, &subject)
        })
        .await
    }

    /// Erases a subject's key (recording an erased one if it had none);
    /// `true` if a key was erased now.
    pub async fn erase_subject_key(&self, tenant: &str, subject: &str, at: &str) -> Result<bool, StoreError> {
        let (writer, tenant, subject, at) = (self.writer.clone(), tenant.to_owned(), subject.to_owned(), at.to_owned());
        blocking(move || {
            let conn = lock(&writer);
            let erased = conn.execute(
                "INSERT INTO subject_keys (tenant_id, subject, key_hex, erased_at) VALUES (?1, ?2, NULL, ?3) \
                 ON CONFLICT (tenant_id, subject) DO UPDATE SET key_hex = NULL, erased_at = excluded.erased_at \
                 WHERE subject_keys.key_hex IS NOT NULL",
                params![tenant, subject, at],
            )?;
            Ok(erased > 0)
        })
        .await
    }

    pub async fn count(&self) -> Result<u64, StoreError> {
        let readers = self.readers.clone();
        blocking(move || {
            readers.with(|c| Ok(c.query_row("SELECT COUNT(*) FROM events", [], |r| r.get::<_, i64>(0))? as u64))
        })
        .await
    }

    /// A consistent copy of the whole database as of one moment, written to
    /// `out` (which must not exist): SQLite's `VACUUM INTO`, on a connection
    /// of its own in one read transaction, so appends go on meanwhile.
    /// Returns the copy's last event position.
    pub async fn backup_to(&self, out: &Path) -> Result<u64, StoreError> {
        let (path, out) = (self.readers.path.clone(), out.to_owned());
        blocking(move || {
            let conn = Connection::open(&path)?;
            wait_when_busy(&conn)?;
            conn.execute("VACUUM INTO ?1", [out.to_string_lossy()])?;
            let copy = Connection::open_with_flags(&out, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
            Ok(max_position(&copy)?)
        })
        .await
    }

    /// The last event's position (0: none), by the primary key: no scan.
    pub async fn last_position(&self) -> Result<u64, StoreError> {
        let readers = self.readers.clone();
        blocking(move || readers.with(|c| Ok(max_position(c)?))).await
    }

    /// The migrations applied, and those this build knows.
    pub async fn migrations(&self) -> Result<(usize, usize), StoreError> {
        let readers = self.readers.clone();
        let known = sqlx::migrate!("../migrations/sqlite").iter().count();
        let applied = blocking(move || {
            readers.with(|c| {
                Ok(c.query_row("SELECT COUNT(*) FROM _sqlx_migrations WHERE success", [], |r| r.get::<_, i64>(0))?
                    as usize)
            })
        })
        .await?;
        Ok((applied, known))
    }
}

/// The last event's position in `conn`'s database (0: none), by the
/// primary key: no scan.
fn max_position(conn: &Connection) -> rusqlite::Result<u64> {
    conn.query_row("SELECT COALESCE(MAX(position), 0) FROM events", [], |r| r.get::<_, i64>(0)).map(|n| n as u64)
}

/// The writer thread: takes the appends waiting (up to [`GROUP_MAX`]),
/// commits them as one transaction and answers each.
fn append_loop(writer: &Mutex<Connection>, queue: &mpsc::Receiver<AppendRequest>) {
    while let Ok(first) = queue.recv() {
        let mut group = vec![first];
        while group.len() < GROUP_MAX {
            match queue.try_recv() {
                Ok(request) => group.push(request),
                Err(_) => break,
            }
        }
        let results = commit_group(&mut lock(writer), &group);
        for (request, result) in group.into_iter().zip(results) {
            // The caller may have gone (its future dropped); what was
            // committed stays committed, as for any append.
            let _ = request.reply.send(result);
        }
    }
}

/// One transaction for the whole group, one savepoint per append: an append
/// refused or failed is rolled back alone. If the transaction itself cannot
/// begin or commit, every append of the group fails and nothing is written.
fn commit_group(conn: &mut Connection, group: &[AppendRequest]) -> Vec<Result<AppendResult, StoreError>> {
    let failed_all = |e: rusqlite::Error| {
        let message = e.to_string();
        group.iter().map(|_| Err(StoreError::Io(std::io::Error::other(format!("group commit: {message}"))))).collect()
    };
    let mut tx = match conn.transaction_with_behavior(TransactionBehavior::Immediate) {
        Ok(tx) => tx,
        Err(e) => return failed_all(e),
    };
    let mut last = match tx
        .prepare_cached("SELECT COALESCE(MAX(position), 0) FROM events")
        .and_then(|mut s| s.query_row([], |r| r.get::<_, i64>(0)))
    {
        Ok(last) => last as u64,
        Err(e) => return failed_all(e),
    };
    let mut results = Vec::with_capacity(group.len());
    for request in group {
        let result = tx.savepoint().map_err(StoreError::from).and_then(|sp| append_one(sp, request, last));
        if let Ok(r) = &result {
            if !r.deduplicated {
                last += r.events.len() as u64;
            }
        }
        results.push(result);
    }
    match tx.commit() {
        Ok(()) => results,
        Err(e) => failed_all(e),
    }
}

/// One append in its savepoint of the group's transaction; `last` is the
/// log's last position so far (earlier appends of the group included). The
/// savepoint is released only if the append wrote; otherwise it is rolled
/// back, so a refused or failed append leaves nothing.
fn append_one(mut sp: rusqlite::Savepoint<'_>, request: &AppendRequest, last: u64) -> Result<AppendResult, StoreError> {
    let AppendRequest { tenant, stream, expected, prepared, .. } = request;
    let head = head(&sp, stream)?;
    if let Err(refused) = check_head(head.as_ref(), tenant, stream, *expected) {
        return match as_retry(find(&sp, &event_ids(prepared))?, prepared, stream)? {
            Some(stored) => Ok(stored),
            None => Err(refused),
        };
    }
    let positions: Vec<(u64, u64)> = (1..=prepared.len() as u64).map(|i| (last + i, last + i)).collect();
    let events = seal(prepared, tenant, stream, head.as_ref(), &positions);
    match insert(&sp, &events) {
        Ok(()) => {
            sp.commit()?;
            Ok(AppendResult { events, deduplicated: false })
        }
        Err(e) if is_unique_violation(&e) => {
            // Only event_id can collide: the head was checked in this
            // transaction. Roll back first, so that the rows of this batch
            // inserted before the collision do not look stored.
            sp.rollback()?;
            let stored = find(&sp, &event_ids(prepared))?;
            as_retry(stored, prepared, stream)?.ok_or(StoreError::Sqlite(e))
        }
        Err(e) => Err(e.into()),
    }
}

fn head(conn: &Connection, stream: &StreamId) -> Result<Option<Head>, StoreError> {
    let row = conn
        .prepare_cached(
            "SELECT stream_version, hash, tenant_id FROM events WHERE stream_id = ?1 \
             ORDER BY stream_version DESC LIMIT 1",
        )?
        .query_row([stream.to_string()], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?, r.get::<_, String>(2)?)))
        .optional()?;
    row.map(|(version, hash, tenant)| {
        Ok(Head {
            version: version as u64,
            hash: hash.try_into().map_err(|_| StoreError::CorruptRow { position: 0, message: "head hash".into() })?,
            tenant,
        })
    })
    .transpose()
}

fn find(conn: &Connection, ids: &[Uuid]) -> Result<Vec<RecordedEvent>, StoreError> {
    let mut out = Vec::new();
    let sql = format!("SELECT {COLUMNS} FROM events WHERE event_id = ?1");
    for id in ids {
        out.extend(query_events(conn, &sql, [id])?);
    }
    out.sort_by_key(|e| e.position);
    Ok(out)
}

fn insert(conn: &Connection, events: &[RecordedEvent]) -> Result<(), rusqlite::Error> {
    // One cached single-row statement, stepped per event: with rusqlite a
    // step costs about a microsecond, so this beats building a multi-row
    // statement per batch.
    let mut stmt = conn.prepare_cached(&format!(
        "INSERT INTO events ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)"
    ))?;
    for e in events {
        stmt.execute(params![
            e.position as i64,
            e.event_id,
            e.tenant_id.as_str(),
            e.stream_id.to_string(),
            e.stream_version as i64,
            e.event_type,
            e.schema_version,
            e.occurred_at.timestamp_micros(),
            e.recorded_at.timestamp_micros(),
            e.actor.kind.as_str(),
            e.actor.id,
            e.correlation_id,
            e.causation_id,
            e.payload,
            e.prev_hash.as_slice(),
            e.hash.as_slice(),
        ])?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 29, item 6: an acknowledged append must survive a power loss
    /// unless the operator chose otherwise.
    #[tokio::test]
    async fn the_store_syncs_every_commit_unless_told_normal() {
        let dir = tempfile::tempdir().unwrap();
        let level = |b: &SqliteBackend| {
            b.writer.lock().unwrap().query_row("PRAGMA synchronous", [], |r| r.get::<_, i64>(0)).unwrap()
        };
        let full = SqliteBackend::connect(&format!("sqlite://{}/a.db", dir.path().display())).await.unwrap();
        assert_eq!(level(&full), 2, "FULL by default");
        let normal = SqliteBackend::connect(&format!("sqlite://{}/b.db?synchronous=normal", dir.path().display()))
            .await
            .unwrap();
        assert_eq!(level(&normal), 1, "NORMAL when asked");
    }
}
