//! Failure drills (issue 29, item 5): what an operator's worst days do to
//! the embedded store. The process is killed outright (SIGKILL, no chance
//! to tidy up) in the middle of a burst of appends, and in the middle of a
//! rebuild of the read models; after a restart every acknowledged event is
//! there, nothing is half-written, `verify` passes, and the read models
//! finish from where they were. PostgreSQL is restarted under a serving
//! Witness, which reconnects and carries on.

mod common;

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const URL: &str = "sqlite://data/witness.db";

fn witness(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_witness"))
        .current_dir(dir)
        .args(args)
        .env("WITNESS_DATABASE_URL", URL)
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// `witness serve` on `dir`'s store; its address once it listens.
fn serve(dir: &Path, ports: &str) -> (Child, String) {
    serve_on(dir, ports, URL)
}

/// `witness serve` on the store at `url`.
fn serve_on(dir: &Path, ports: &str, url: &str) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_witness"))
        .current_dir(dir)
        // Ready only once the read models have caught up entirely.
        .args(["serve", "--listen", "127.0.0.1:0", "--media-ports", ports, "--visitors-per-minute", "100000"])
        .args(["--ready-max-lag", "0"])
        .env("WITNESS_DATABASE_URL", url)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let addr = common::listening_address(&mut child);
    (child, addr)
}

use common::http;

fn ports() -> String {
    let base = 48_000 + std::process::id() % 500 * 2;
    format!("{base}-{}", base + 1)
}

/// Waits until `/readyz` says ready (the read models caught up), or fails.
fn wait_ready(addr: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, ready) = http(addr, "GET", "/readyz", None, "");
        if status == 200 {
            return;
        }
        assert!(Instant::now() < deadline, "never ready: {ready}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn integrity(dir: &Path) -> String {
    let db = rusqlite::Connection::open(dir.join("data/witness.db")).unwrap();
    db.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap()
}

#[test]
fn killed_during_a_burst_of_appends_every_acknowledged_message_is_there_and_the_log_verifies() {
    let here = tempfile::tempdir().unwrap();
    let dir = here.path();
    let ports = ports();
    let (mut server, addr) = serve(dir, &ports);
    // Four customers writing as fast as they can; what the server
    // acknowledged (201 with a message id) is noted.
    let (stop, acked) = (Arc::new(AtomicBool::new(false)), Arc::new(Mutex::new(Vec::<String>::new())));
    let writers: Vec<_> = (0..4)
        .map(|_| {
            let (stop, acked, addr) = (stop.clone(), acked.clone(), addr.clone());
            std::thread::spawn(move || {
                let (_, visitor) = http(&addr, "POST", "/api/visitors", None, r#"{"tenant":"demo","channel":"web"}"#);
                let token = visitor["token"].as_str().unwrap().to_owned();
                let (_, session) = http(&addr, "POST", "/api/sessions", Some(&token), r#"{"business_type":"cards"}"#);
                let id = session["session_id"].as_str().unwrap().to_owned();
                let path = format!("/api/sessions/{id}/messages");
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let body = format!(r#"{{"kind":"text","text":"第 {n} 条：我的账单"}}"#);
                    match http(&addr, "POST", &path, Some(&token), &body) {
                        (201, sent) => acked.lock().unwrap().push(sent["message_id"].as_str().unwrap().to_owned()),
                        // The server is gone: whatever was not acknowledged may be lost.
                        (0, _) => break,
                        (status, answer) => panic!("{status} {answer}"),
                    }
                }
            })
        })
        .collect();
    while acked.lock().unwrap().len() < 200 {
        std::thread::sleep(Duration::from_millis(10));
    }
    server.kill().unwrap(); // SIGKILL, mid-burst
    server.wait().unwrap();
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.join().unwrap();
    }
    let acked = acked.lock().unwrap().clone();

    // Every acknowledged message is in the log; the file is whole; the chain verifies.
    assert_eq!(integrity(dir), "ok");
    let db = rusqlite::Connection::open(dir.join("data/witness.db")).unwrap();
    let mut stored = std::collections::HashSet::new();
    let mut rows = db.prepare("SELECT payload FROM events WHERE event_type = 'CustomerMessage'").unwrap();
    for payload in rows.query_map([], |r| r.get::<_, String>(0)).unwrap() {
        let payload: serde_json::Value = serde_json::from_str(&payload.unwrap()).unwrap();
        stored.insert(payload["message_id"].as_str().unwrap().to_owned());
    }
    let lost: Vec<&String> = acked.iter().filter(|id| !stored.contains(*id)).collect();
    assert!(lost.is_empty(), "{} of {} acknowledged messages lost: {lost:?}", lost.len(), acked.len());
    let verified = witness(dir, &["verify"]);
    assert_eq!(verified.status.code(), Some(0), "{}", text(&verified));

    // Serving again: the read models catch up, and new customers are served.
    let (mut server, addr) = serve(dir, &ports);
    wait_ready(&addr);
    let (status, _) = http(&addr, "POST", "/api/visitors", None, r#"{"tenant":"demo","channel":"web"}"#);
    assert_eq!(status, 201, "a new customer served after the restart");
    server.kill().unwrap();
    server.wait().unwrap();
}

#[test]
fn killed_during_a_rebuild_the_read_models_finish_from_where_they_were_and_count_each_event_once() {
    let here = tempfile::tempdir().unwrap();
    let dir = here.path();
    let seeded = witness(dir, &["seed", "--sessions", "400", "--agents", "6", "--seed", "3"]);
    assert!(seeded.status.success(), "{}", text(&seeded));
    let sessions = |dir: &Path| -> i64 {
        let db = rusqlite::Connection::open(dir.join("data/witness.db")).unwrap();
        db.query_row("SELECT COUNT(*) FROM sessions", [], |r| r.get(0)).unwrap()
    };
    // The read models as a full rebuild makes them.
    let rebuilt = witness(dir, &["rebuild"]);
    assert!(rebuilt.status.success(), "{}", text(&rebuilt));
    assert_eq!(sessions(dir), 400);
    let whole = witness(dir, &["replay", "list", "--json"]).stdout;

    // A rebuild killed part way: some read models emptied and partly refilled.
    let mut rebuilding = Command::new(env!("CARGO_BIN_EXE_witness"))
        .current_dir(dir)
        .args(["rebuild"])
        .env("WITNESS_DATABASE_URL", URL)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Until its first batches are in (or it is done: then there is nothing to resume).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let partway = sessions(dir);
        if partway > 0 && partway < 400 || Instant::now() > deadline {
            break;
        }
        if rebuilding.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let _ = rebuilding.kill();
    rebuilding.wait().unwrap();
    let partway = sessions(dir);
    eprintln!("killed with {partway} of 400 sessions rebuilt");
    assert!(partway < 400, "the rebuild was done before it could be killed: nothing to resume");
    assert_eq!(integrity(dir), "ok");

    // Serving: the projector goes on from the read models' checkpoints.
    let (mut server, addr) = serve(dir, &ports());
    wait_ready(&addr);
    server.kill().unwrap();
    server.wait().unwrap();
    assert_eq!(sessions(dir), 400, "each session once, none lost, none twice");
    assert_eq!(witness(dir, &["replay", "list", "--json"]).stdout, whole, "the same sessions as a whole rebuild made");
    let verified = witness(dir, &["verify"]);
    assert_eq!(verified.status.code(), Some(0), "{}", text(&verified));
}

/// A customer's message, retried while the server answers 5xx (or not at
/// all) for up to `within`; the status it ended with.
fn say_until_served(addr: &str, token: &str, session: &str, text: &str, within: Duration) -> u16 {
    let deadline = Instant::now() + within;
    let body = format!(r#"{{"kind":"text","text":"{text}"}}"#);
    loop {
        let (status, _) = http(addr, "POST", &format!("/api/sessions/{session}/messages"), Some(token), &body);
        if (200..500).contains(&status) || Instant::now() > deadline {
            return status;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn postgres_restarted_while_serving_the_server_reconnects_and_carries_on() {
    let url = tokio::runtime::Runtime::new().unwrap().block_on(common::postgres()).url;
    let here = tempfile::tempdir().unwrap();
    let (mut server, addr) = serve_on(here.path(), &ports(), &url);
    let (_, visitor) = http(&addr, "POST", "/api/visitors", None, r#"{"tenant":"demo","channel":"web"}"#);
    let token = visitor["token"].as_str().unwrap().to_owned();
    let (_, session) = http(&addr, "POST", "/api/sessions", Some(&token), r#"{"business_type":"cards"}"#);
    let id = session["session_id"].as_str().unwrap().to_owned();
    assert_eq!(say_until_served(&addr, &token, &id, "before", Duration::ZERO), 201);
    wait_ready(&addr);

    // The cluster scripts/test.sh started, restarted (fast: open connections
    // are cut). Its output goes to its log: the new server must not hold
    // this test's pipes open.
    let restarted = Command::new("bash")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args([
            "-c",
            r#". scripts/deps.sh && run_pg "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/server.log" -m fast -w -t 60 restart >/dev/null 2>&1"#,
        ])
        .stdin(Stdio::null())
        .status()
        .unwrap();
    assert!(restarted.success(), "restarting PostgreSQL (PG_DIR and PG_BIN come from scripts/test.sh)");

    // The same customer goes on, and new customers are served.
    let after = say_until_served(&addr, &token, &id, "after", Duration::from_secs(30));
    assert_eq!(after, 201, "no message taken after the restart");
    let (status, _) = http(&addr, "POST", "/api/visitors", None, r#"{"tenant":"demo","channel":"web"}"#);
    assert_eq!(status, 201);
    // The read models follow again.
    wait_ready(&addr);
    let (_, view) = http(&addr, "GET", &format!("/api/sessions/{id}"), Some(&token), "");
    let said: Vec<&str> = view["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["event_type"] == "CustomerMessage")
        .filter_map(|e| e["payload"]["content"]["text"].as_str())
        .collect();
    assert_eq!(said, ["before", "after"]);
    server.kill().unwrap();
    server.wait().unwrap();
}
