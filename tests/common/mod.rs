//! Shared set-up for the end-to-end tests: a fresh store per test, on
//! SQLite (a temporary file) or PostgreSQL (a new database in the server
//! that `scripts/test.sh` starts and names in `WITNESS_TEST_PG_URL`).
#![allow(dead_code)] // each test binary uses a different part of this

use sqlx::Connection;
use witness_engine::{EventStore, ExpectedVersion};
use witness_schemas::*;

/// A store and what keeps it alive (its temp dir), plus its URL for the CLI.
pub struct TestStore {
    pub store: EventStore,
    pub url: String,
    _dir: Option<tempfile::TempDir>,
}

pub async fn sqlite() -> TestStore {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/witness.db", dir.path().display());
    TestStore { store: EventStore::connect(&url).await.unwrap(), url, _dir: Some(dir) }
}

/// The PostgreSQL server for tests. Not optional: a test run without it
/// would silently test half the store.
pub fn pg_admin_url() -> String {
    std::env::var("WITNESS_TEST_PG_URL").expect(
        "WITNESS_TEST_PG_URL is not set: run the tests with scripts/test.sh, which starts a throwaway PostgreSQL",
    )
}

pub async fn postgres() -> TestStore {
    let admin = pg_admin_url();
    let name = format!("witness_test_{}", uuid::Uuid::now_v7().simple());
    let mut conn = sqlx::PgConnection::connect(&admin).await.unwrap();
    sqlx::raw_sql(&format!("CREATE DATABASE {name}")).execute(&mut conn).await.unwrap();
    let base = admin.rsplit_once('/').unwrap().0;
    let url = format!("{base}/{name}");
    TestStore { store: EventStore::connect(&url).await.unwrap(), url, _dir: None }
}

pub fn tenant() -> TenantId {
    "acme".parse().unwrap()
}

/// A customer message, the most common event.
pub fn message(text: &str) -> NewEvent {
    NewEvent::new(
        CustomerMessage { message_id: MessageId::new(), content: MessageContent::Text { text: text.into() } },
        Actor::new(ActorKind::Customer, "visitor-1"),
    )
}

pub fn started(session: SessionId) -> NewEvent {
    NewEvent::new(
        SessionStarted {
            session_id: session,
            channel: Channel::Web,
            business_type: "general".into(),
            customer_ref: "visitor-1".into(),
            locale: None,
        },
        Actor::new(ActorKind::Customer, "visitor-1"),
    )
}

/// A new session stream with `SessionStarted` and `messages` messages.
pub async fn session_with(store: &EventStore, messages: usize) -> (StreamId, Vec<RecordedEvent>) {
    let session = SessionId::new();
    let stream = StreamId::session(session);
    let mut events = vec![started(session)];
    events.extend((0..messages).map(|i| message(&format!("question {i}"))));
    let result = store.append(&tenant(), &stream, ExpectedVersion::NO_STREAM, events).await.unwrap();
    (stream, result.events)
}

/// The address a `witness serve` started with its log on a pipe is
/// listening on (`--listen 127.0.0.1:0` picks a free port); the rest of its
/// log is read and dropped, so that the server never blocks on a full pipe.
pub fn listening_address(child: &mut std::process::Child) -> String {
    use std::io::BufRead;
    let mut lines = std::io::BufReader::new(child.stderr.take().expect("serve's stderr piped")).lines();
    let addr = loop {
        let line = lines.next().expect("serve exited before listening").unwrap();
        if let Some(rest) = line.split("listening on http://").nth(1) {
            break rest.split_whitespace().next().unwrap().to_owned();
        }
    };
    std::thread::spawn(move || lines.for_each(drop));
    addr
}

/// CPU hogs (`stress-ng`, twice as many as there are cores) for
/// `seconds` or until dropped: a busy machine.
pub struct Load(std::process::Child);

impl Load {
    pub fn start(seconds: u32) -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let child = std::process::Command::new("stress-ng")
            .args(["--cpu", &(2 * cores).to_string(), "--timeout", &format!("{seconds}s"), "--quiet"])
            .spawn()
            .expect("stress-ng (scripts/test.sh installs it)");
        // The hogs are running before what is measured starts.
        std::thread::sleep(std::time::Duration::from_secs(1));
        Load(child)
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One HTTP/1.0 request; the status and the JSON body (null if none or
/// the connection broke).
pub fn http(addr: &str, method: &str, path: &str, token: Option<&str>, body: &str) -> (u16, serde_json::Value) {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect(addr) else { return (0, serde_json::Value::Null) };
    // A server that never answers is a failure, not a hang.
    stream.set_read_timeout(Some(std::time::Duration::from_secs(20))).unwrap();
    let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    let request = format!(
        "{method} {path} HTTP/1.0\r\nHost: localhost\r\nContent-Type: application/json\r\n{auth}Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    if stream.write_all(request.as_bytes()).is_err() {
        return (0, serde_json::Value::Null);
    }
    let mut response = String::new();
    if stream.read_to_string(&mut response).is_err() {
        return (0, serde_json::Value::Null);
    }
    let status = response.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let json = response.split("\r\n\r\n").nth(1).and_then(|b| serde_json::from_str(b).ok()).unwrap_or_default();
    (status, json)
}

/// Runs `sql` on the database at `url` on a connection of its own, past the
/// store (which has no way to change what it wrote): what tamper tests do
/// to the log. Returns the rows changed.
pub async fn raw_sql(url: &str, sql: &str) -> u64 {
    if let Some(path) = url.strip_prefix("sqlite://") {
        let conn = rusqlite::Connection::open(path.split_once('?').map_or(path, |(p, _)| p)).unwrap();
        conn.busy_timeout(std::time::Duration::from_secs(30)).unwrap();
        conn.execute_batch(sql).unwrap();
        conn.changes()
    } else {
        let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
        sqlx::raw_sql(sql).execute(&mut conn).await.unwrap().rows_affected()
    }
}
