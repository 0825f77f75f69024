//! Event store load benchmark: append and read throughput on each backend,
//! each figure beside a baseline measured in the same run.
//!
//! The baseline is the database alone: the same rows (all 16 envelope
//! columns, pre-built and pre-hashed outside the timing), inserted with the
//! same batch size and one transaction per batch into a table made from the
//! same DDL, or for reads, the same SELECT with rows left unparsed. The
//! ratio store/baseline is what Witness itself costs: validation, the head
//! lookup, hashing, building the envelope, and decoding payloads into typed
//! events.
//!
//!   scripts/bench.sh                      # SQLite and PostgreSQL (started by the script)
//!   cargo bench --bench event_store       # SQLite only, unless WITNESS_BENCH_PG_URL is set
//!
//! BENCH_RUNS (default 5) sets how many runs each figure is the median of;
//! BENCH_SQLITE_SYNC=normal runs SQLite with `synchronous=NORMAL` (store
//! and baseline) instead of the store's default FULL.

mod common;

use std::time::{Duration, Instant};

use sqlx::{Connection, QueryBuilder, Row};
use witness_engine::{EventStore, ExpectedVersion};
use witness_schemas::*;

use common::median;

const COLUMNS: &str = "position, event_id, tenant_id, stream_id, stream_version, event_type, schema_version, \
     occurred_at, recorded_at, actor_kind, actor_id, correlation_id, causation_id, payload, prev_hash, hash";

const BATCHED_EVENTS: usize = 100_000;
const SINGLE_APPENDS: usize = 2_000;
const WRITERS: usize = 8;
const PER_WRITER: usize = 500;

fn message(i: usize) -> NewEvent {
    NewEvent::new(
        CustomerMessage {
            message_id: MessageId::new(),
            content: MessageContent::Text { text: format!("Question {i}: how do I raise the limit on my card?") },
        },
        Actor::new(ActorKind::Customer, "visitor-7f3a"),
    )
}

fn tenant() -> TenantId {
    "bench".parse().unwrap()
}

#[derive(Clone, Copy, PartialEq)]
enum Backend {
    Sqlite,
    Postgres,
}

struct Target {
    backend: Backend,
    _dir: tempfile::TempDir,
    pg_admin: Option<String>,
}

impl Target {
    /// A fresh, empty database URL.
    async fn fresh(&self) -> String {
        match self.backend {
            Backend::Sqlite => {
                let dir = self._dir.path().display();
                let name = uuid::Uuid::now_v7().simple();
                match sqlite_sync() {
                    "NORMAL" => format!("sqlite://{dir}/{name}.db?synchronous=normal"),
                    _ => format!("sqlite://{dir}/{name}.db"),
                }
            }
            Backend::Postgres => {
                let admin = self.pg_admin.as_ref().unwrap();
                let name = format!("witness_bench_{}", uuid::Uuid::now_v7().simple());
                let mut c = sqlx::PgConnection::connect(admin).await.unwrap();
                sqlx::raw_sql(&format!("CREATE DATABASE {name}")).execute(&mut c).await.unwrap();
                format!("{}/{name}", admin.rsplit_once('/').unwrap().0)
            }
        }
    }
}

/// SQLite's `synchronous` for the store and the baseline alike: FULL (the
/// store's default), or NORMAL with `BENCH_SQLITE_SYNC=normal`.
fn sqlite_sync() -> &'static str {
    match std::env::var("BENCH_SQLITE_SYNC").as_deref() {
        Ok("normal") => "NORMAL",
        _ => "FULL",
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Pre-built, pre-hashed rows for the baseline, as the store would write them.
async fn sample_rows(url: &str, n: usize) -> Vec<RecordedEvent> {
    let store = EventStore::connect(url).await.unwrap();
    let stream = StreamId::session(SessionId::new());
    let mut rows = Vec::with_capacity(n);
    while rows.len() < n {
        let k = (n - rows.len()).min(1000);
        let r = store.append(&tenant(), &stream, ExpectedVersion::Any, (0..k).map(message).collect()).await.unwrap();
        rows.extend(r.events);
    }
    Conn::open(url).await.execute("DELETE FROM events").await;
    rows
}

/// A plain connection for the baseline, of the backend under test.
enum Conn {
    /// rusqlite, as the store's SQLite backend uses.
    Sqlite(rusqlite::Connection),
    Pg(sqlx::PgConnection),
}

impl Conn {
    async fn open(url: &str) -> Conn {
        if url.starts_with("sqlite:") {
            // The store's own settings: WAL (persistent in the file), the same `synchronous`.
            let path = url.trim_start_matches("sqlite://");
            let path = path.split_once('?').map_or(path, |(p, _)| p);
            let conn = rusqlite::Connection::open(path).unwrap();
            conn.busy_timeout(Duration::from_secs(30)).unwrap();
            conn.pragma_update(None, "synchronous", sqlite_sync()).unwrap();
            Conn::Sqlite(conn)
        } else {
            Conn::Pg(sqlx::PgConnection::connect(url).await.unwrap())
        }
    }

    async fn execute(&mut self, sql: &str) {
        match self {
            Conn::Sqlite(c) => c.execute_batch(sql).unwrap(),
            Conn::Pg(c) => sqlx::raw_sql(sql).execute(c).await.map(|_| ()).unwrap(),
        }
    }

    /// `baseline_events`, from the same DDL as `events`.
    async fn create_baseline_table(&mut self) {
        let ddl = match self {
            Conn::Sqlite(_) => include_str!("../migrations/sqlite/0001_events.sql"),
            Conn::Pg(_) => include_str!("../migrations/postgres/0001_events.sql"),
        };
        let events_ddl = ddl.split("CREATE INDEX").next().unwrap().split("CREATE TABLE checkpoints").next().unwrap();
        let events_ddl = events_ddl.split("-- Signed").next().unwrap();
        let sql = events_ddl.replace("CREATE TABLE events", "CREATE TABLE baseline_events");
        self.execute(&sql).await
    }

    /// Inserts `rows` in batches of `batch`, one transaction each, as plain
    /// multi-row INSERTs with positions from `pos0`. Returns per-batch latencies.
    async fn insert(&mut self, rows: &[RecordedEvent], batch: usize, pos0: i64) -> Vec<Duration> {
        let mut latencies = Vec::with_capacity(rows.len() / batch);
        for (b, chunk) in rows.chunks(batch).enumerate() {
            let first = pos0 + (b * batch) as i64;
            let t = Instant::now();
            match self {
                Conn::Sqlite(c) => tokio::task::block_in_place(|| {
                    // The same statement technique as the store: one cached
                    // single-row INSERT stepped per row.
                    let tx = c.transaction().unwrap();
                    {
                        let mut stmt = tx
                            .prepare_cached(&format!(
                                "INSERT INTO baseline_events ({COLUMNS}) VALUES \
                                 (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)"
                            ))
                            .unwrap();
                        for (i, e) in chunk.iter().enumerate() {
                            stmt.execute(rusqlite::params![
                                first + i as i64,
                                e.event_id,
                                e.tenant_id.as_str(),
                                e.stream_id.to_string(),
                                first + i as i64,
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
                            ])
                            .unwrap();
                        }
                    }
                    tx.commit().unwrap();
                }),
                Conn::Pg(c) => {
                    let mut tx = c.begin().await.unwrap();
                    let mut q =
                        QueryBuilder::<sqlx::Postgres>::new(format!("INSERT INTO baseline_events ({COLUMNS}) "));
                    q.push_values(chunk.iter().enumerate(), |mut r, (i, e)| {
                        r.push_bind(first + i as i64)
                            .push_bind(e.event_id)
                            .push_bind(e.tenant_id.as_str())
                            .push_bind(e.stream_id.to_string())
                            .push_bind(first + i as i64)
                            .push_bind(e.event_type.as_str())
                            .push_bind(e.schema_version as i32)
                            .push_bind(e.occurred_at)
                            .push_bind(e.recorded_at)
                            .push_bind(e.actor.kind.as_str())
                            .push_bind(e.actor.id.as_deref())
                            .push_bind(e.correlation_id)
                            .push_bind(e.causation_id)
                            .push_bind(e.payload.as_str())
                            .push_bind(e.prev_hash.as_slice())
                            .push_bind(e.hash.as_slice());
                    });
                    q.build().execute(&mut *tx).await.unwrap();
                    tx.commit().await.unwrap();
                }
            }
            latencies.push(t.elapsed());
        }
        latencies
    }

    /// Reads `events` in pages of 1000 without parsing the rows; returns the count.
    async fn read_raw(&mut self) -> usize {
        let sql = format!("SELECT {COLUMNS} FROM events WHERE position > $1 ORDER BY position LIMIT 1000");
        let (mut after, mut n) = (0i64, 0);
        loop {
            let last = match self {
                Conn::Sqlite(c) => tokio::task::block_in_place(|| {
                    // Every column is touched (as a borrowed value), none parsed.
                    let mut stmt = c.prepare_cached(&sql).unwrap();
                    let mut rows = stmt.query([after]).unwrap();
                    let mut last = None;
                    while let Some(r) = rows.next().unwrap() {
                        for i in 0..16 {
                            std::hint::black_box(r.get_ref(i).unwrap());
                        }
                        last = Some(r.get::<_, i64>(0).unwrap());
                        n += 1;
                    }
                    last
                }),
                Conn::Pg(c) => {
                    let rows = sqlx::query(&sql).bind(after).fetch_all(&mut *c).await.unwrap();
                    n += rows.len();
                    rows.last().map(|r| r.get::<i64, _>(0))
                }
            };
            match last {
                Some(p) => after = p,
                None => return n,
            }
        }
    }
}

struct Figures {
    store: f64,
    baseline: f64,
}

fn row(name: &str, unit: &str, f: &Figures) {
    println!(
        "| {name:<44} | {:>12.0} {unit:<9} | {:>12.0} {unit:<9} | {:>5.2} |",
        f.store,
        f.baseline,
        f.store / f.baseline
    );
}

fn row_latency(name: &str, store: Duration, baseline: Duration) {
    println!(
        "| {name:<44} | {:>12.3} ms        | {:>12.3} ms        | {:>5.2} |",
        store.as_secs_f64() * 1e3,
        baseline.as_secs_f64() * 1e3,
        store.as_secs_f64() / baseline.as_secs_f64()
    );
}

/// One run of batched appends: events/s for the store and the baseline.
async fn batched(target: &Target, batch: usize, n: usize) -> (f64, f64) {
    let url = target.fresh().await;
    let rows = sample_rows(&url, n).await;
    let store = EventStore::connect(&url).await.unwrap();
    let batches: Vec<Vec<NewEvent>> =
        (0..n / batch).map(|b| (0..batch).map(|i| message(b * batch + i)).collect()).collect();
    let streams: Vec<StreamId> = (0..100).map(|_| StreamId::session(SessionId::new())).collect();
    let mut versions = [0u64; 100];
    let t = Instant::now();
    for (i, events) in batches.into_iter().enumerate() {
        let s = i % streams.len();
        let r = store.append(&tenant(), &streams[s], ExpectedVersion::Exact(versions[s]), events).await.unwrap();
        versions[s] = r.last_version();
    }
    let store_rate = n as f64 / t.elapsed().as_secs_f64();
    let mut conn = Conn::open(&url).await;
    conn.create_baseline_table().await;
    let t = Instant::now();
    conn.insert(&rows, batch, 1).await;
    let base_rate = n as f64 / t.elapsed().as_secs_f64();
    (store_rate, base_rate)
}

/// One run of single-event appends: sorted per-append latencies.
async fn single(target: &Target) -> (Vec<Duration>, Vec<Duration>) {
    let url = target.fresh().await;
    let rows = sample_rows(&url, SINGLE_APPENDS).await;
    let store = EventStore::connect(&url).await.unwrap();
    let stream = StreamId::session(SessionId::new());
    let mut lat = Vec::with_capacity(SINGLE_APPENDS);
    for i in 0..SINGLE_APPENDS {
        let event = message(i);
        let t = Instant::now();
        store.append(&tenant(), &stream, ExpectedVersion::Exact(i as u64), vec![event]).await.unwrap();
        lat.push(t.elapsed());
    }
    let mut conn = Conn::open(&url).await;
    conn.create_baseline_table().await;
    let mut base = conn.insert(&rows, 1, 1).await;
    lat.sort();
    base.sort();
    (lat, base)
}

/// One run of 8 writers on distinct streams, 1 event per append: events/s.
async fn concurrent(target: &Target) -> (f64, f64) {
    let url = target.fresh().await;
    let rows = sample_rows(&url, WRITERS * PER_WRITER).await;
    let store = EventStore::connect(&url).await.unwrap();
    let t = Instant::now();
    let tasks: Vec<_> = (0..WRITERS)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                let stream = StreamId::session(SessionId::new());
                for i in 0..PER_WRITER {
                    store.append(&tenant(), &stream, ExpectedVersion::Exact(i as u64), vec![message(i)]).await.unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let store_rate = (WRITERS * PER_WRITER) as f64 / t.elapsed().as_secs_f64();
    Conn::open(&url).await.create_baseline_table().await;
    let mut conns = Vec::new();
    for _ in 0..WRITERS {
        conns.push(Conn::open(&url).await);
    }
    let t = Instant::now();
    let tasks: Vec<_> = conns
        .into_iter()
        .zip(rows.chunks(PER_WRITER).map(|c| c.to_vec()))
        .enumerate()
        .map(|(w, (mut conn, chunk))| {
            tokio::spawn(async move { conn.insert(&chunk, 1, 1 + (w * PER_WRITER) as i64).await })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let base_rate = (WRITERS * PER_WRITER) as f64 / t.elapsed().as_secs_f64();
    (store_rate, base_rate)
}

/// One run of reading the whole log: events/s with decode, and raw rows/s.
async fn read_all(url: &str, total: usize) -> (f64, f64) {
    let store = EventStore::connect(url).await.unwrap();
    let t = Instant::now();
    let mut cursor = Cursor::START;
    let mut n = 0;
    loop {
        let page = store.read_all(cursor, 1000).await.unwrap();
        let Some(last) = page.last() else { break };
        cursor = last.cursor();
        for e in &page {
            std::hint::black_box(e.decode().unwrap());
        }
        n += page.len();
    }
    assert_eq!(n, total);
    let store_rate = n as f64 / t.elapsed().as_secs_f64();
    let mut conn = Conn::open(url).await;
    let t = Instant::now();
    let m = conn.read_raw().await;
    assert_eq!(m, total);
    (store_rate, m as f64 / t.elapsed().as_secs_f64())
}

async fn bench(target: &Target, runs: usize) {
    let name = if target.backend == Backend::Sqlite {
        format!("SQLite, synchronous={}", sqlite_sync())
    } else {
        "PostgreSQL".to_owned()
    };
    println!("\n### {name} (median of {runs} runs)\n");
    println!("| {:<44} | {:>22} | {:>22} | {:>5} |", "scenario", "Witness store", "baseline (plain SQL)", "ratio");
    println!("|{}|{}|{}|{}|", "-".repeat(46), "-".repeat(24), "-".repeat(24), "-".repeat(7));

    let (mut s, mut b) = (vec![], vec![]);
    for _ in 0..runs {
        let (x, y) = batched(target, 100, BATCHED_EVENTS).await;
        s.push(x);
        b.push(y);
    }
    row("append, 100 events per commit", "events/s", &Figures { store: median(s), baseline: median(b) });

    let (mut p50, mut p99, mut b50, mut b99, mut s_rate, mut b_rate) = (vec![], vec![], vec![], vec![], vec![], vec![]);
    for _ in 0..runs {
        let (lat, base) = single(target).await;
        p50.push(percentile(&lat, 0.5).as_secs_f64());
        p99.push(percentile(&lat, 0.99).as_secs_f64());
        b50.push(percentile(&base, 0.5).as_secs_f64());
        b99.push(percentile(&base, 0.99).as_secs_f64());
        s_rate.push(lat.len() as f64 / lat.iter().sum::<Duration>().as_secs_f64());
        b_rate.push(base.len() as f64 / base.iter().sum::<Duration>().as_secs_f64());
    }
    let d = Duration::from_secs_f64;
    row_latency("append, 1 event per commit: p50", d(median(p50)), d(median(b50)));
    row_latency("append, 1 event per commit: p99", d(median(p99)), d(median(b99)));
    row("append, 1 event per commit", "events/s", &Figures { store: median(s_rate), baseline: median(b_rate) });

    let (mut s, mut b) = (vec![], vec![]);
    for _ in 0..runs {
        let (x, y) = concurrent(target).await;
        s.push(x);
        b.push(y);
    }
    row(
        "append, 8 writers, distinct streams, 1/commit",
        "events/s",
        &Figures { store: median(s), baseline: median(b) },
    );

    let url = target.fresh().await;
    let store = EventStore::connect(&url).await.unwrap();
    for b in 0..BATCHED_EVENTS / 1000 {
        let stream = StreamId::session(SessionId::new());
        store
            .append(&tenant(), &stream, ExpectedVersion::NO_STREAM, (0..1000).map(|i| message(b * 1000 + i)).collect())
            .await
            .unwrap();
    }
    // On PostgreSQL the rows must be visible to readers first (xmin horizon).
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (mut s, mut b) = (vec![], vec![]);
    for _ in 0..runs {
        let (x, y) = read_all(&url, BATCHED_EVENTS).await;
        s.push(x);
        b.push(y);
    }
    row("read_all + decode, pages of 1000", "events/s", &Figures { store: median(s), baseline: median(b) });
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --all-targets` runs bench
    // targets without it, as a smoke test: keep that quick.
    let smoke = !std::env::args().any(|a| a == "--bench");
    if smoke {
        println!("event_store bench: run with `cargo bench --bench event_store` (or scripts/bench.sh)");
        return;
    }
    let runs: usize = std::env::var("BENCH_RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(5);
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        bench(&Target { backend: Backend::Sqlite, _dir: dir, pg_admin: None }, runs).await;
        if let Ok(pg) = std::env::var("WITNESS_BENCH_PG_URL") {
            let dir = tempfile::tempdir().unwrap();
            bench(&Target { backend: Backend::Postgres, _dir: dir, pg_admin: Some(pg) }, runs).await;
        } else {
            println!("\n(PostgreSQL skipped: set WITNESS_BENCH_PG_URL, or run scripts/bench.sh)");
        }
    });
}
