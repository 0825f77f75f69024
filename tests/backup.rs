//! `witness backup` and `witness restore` as an operator runs them (issue
//! 29, item 4): a store with a recorded call, backed up while `witness
//! serve` takes new sessions over HTTP, restored on "another machine"
//! (another directory), where `verify` and `verify --recordings` pass and
//! the sessions read the same. A second backup to the same file, a restore
//! over a store, and a damaged backup are refused, writing nothing.

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

fn witness(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_witness"))
        .current_dir(dir)
        .args(args)
        .env("WITNESS_DATABASE_URL", "sqlite://data/witness.db")
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// POSTs JSON; the answer's JSON body.
fn post(addr: &str, path: &str, token: Option<&str>, body: &str) -> serde_json::Value {
    common::http(addr, "POST", path, token, body).1
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    names.sort();
    names
}

#[test]
fn a_backup_taken_while_serving_restores_elsewhere_verifies_and_reads_the_same_sessions() {
    let here = tempfile::tempdir().unwrap();
    let dir = here.path();
    let base = 47_000 + std::process::id() % 500 * 4;
    let (ports, call_ports) = (format!("{base}-{}", base + 1), format!("{}-{}", base + 2, base + 3));
    // Serving a fresh store (the demo tenant), with customers arriving all along.
    let mut server = Command::new(env!("CARGO_BIN_EXE_witness"))
        .current_dir(dir)
        .args(["serve", "--listen", "127.0.0.1:0", "--media-ports", &ports, "--visitors-per-minute", "100000"])
        .env("WITNESS_DATABASE_URL", "sqlite://data/witness.db")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let addr = common::listening_address(&mut server);
    let (stop, arrived) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicUsize::new(0)));
    let customers = {
        let (stop, arrived, addr) = (stop.clone(), arrived.clone(), addr.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let visitor = post(&addr, "/api/visitors", None, r#"{"tenant":"demo","channel":"web"}"#);
                let token =
                    visitor["token"].as_str().unwrap_or_else(|| panic!("a visitor token: {visitor}")).to_owned();
                let session = post(&addr, "/api/sessions", Some(&token), r#"{"business_type":"cards"}"#);
                let id = session["session_id"].as_str().expect("a session").to_owned();
                post(
                    &addr,
                    &format!("/api/sessions/{id}/messages"),
                    Some(&token),
                    r#"{"kind":"text","text":"年费怎么收？"}"#,
                );
                arrived.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    while arrived.load(Ordering::Relaxed) < 3 {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // A recorded call into the same store meanwhile: its segments are named
    // in the log with their hashes.
    let call = witness(
        dir,
        &["media", "loopback", "--seconds", "3", "--out", "data/recordings", "--media-ports", &call_ports],
    );
    assert!(call.status.success(), "{}", text(&call));
    let backed = witness(dir, &["backup", "--out", "backup.tar"]);
    let during = arrived.load(Ordering::Relaxed);
    assert!(backed.status.success(), "{}", text(&backed));
    assert!(text(&backed).contains("backed up"), "{}", text(&backed));
    // Never over an earlier backup.
    let before = std::fs::read(dir.join("backup.tar")).unwrap();
    let again = witness(dir, &["backup", "--out", "backup.tar"]);
    assert_eq!(again.status.code(), Some(2), "{}", text(&again));
    assert!(text(&again).contains("already exists"), "{}", text(&again));
    assert_eq!(std::fs::read(dir.join("backup.tar")).unwrap(), before, "the earlier backup untouched");
    std::thread::sleep(std::time::Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    customers.join().unwrap();
    let _ = server.kill();
    let _ = server.wait();
    assert!(arrived.load(Ordering::Relaxed) > during, "customers kept arriving after the backup");

    // Another machine.
    let there = tempfile::tempdir().unwrap();
    std::fs::copy(dir.join("backup.tar"), there.path().join("backup.tar")).unwrap();
    let restored = witness(there.path(), &["restore", "backup.tar"]);
    assert!(restored.status.success(), "{}", text(&restored));
    let position: u64 = text(&restored)
        .split("up to position ")
        .nth(1)
        .and_then(|r| r.split(',').next())
        .and_then(|n| n.trim().parse().ok())
        .expect("the position restored");
    let verified = witness(there.path(), &["verify"]);
    assert_eq!(verified.status.code(), Some(0), "{}", text(&verified));
    let recordings = witness(there.path(), &["verify", "--recordings"]);
    assert_eq!(recordings.status.code(), Some(0), "{}", text(&recordings));
    // The same sessions: every restored one is the original's, event for
    // event, and the original has the later arrivals too.
    let list = |d: &Path| -> Vec<serde_json::Value> {
        serde_json::from_slice(&witness(d, &["replay", "list", "--json"]).stdout).unwrap()
    };
    let started = |d: &Path| -> i64 {
        let db = rusqlite::Connection::open(d.join("data/witness.db")).unwrap();
        db.query_row("SELECT COUNT(*) FROM events WHERE event_type = 'SessionStarted'", [], |r| r.get(0)).unwrap()
    };
    let (in_original, in_copy) = (started(dir), started(there.path()));
    assert!(in_copy > 3, "the call and the customers before the backup: {in_copy}");
    assert!(in_original > in_copy, "customers arrived after the backup: {in_original} against {in_copy}");
    // (`replay list` shows the newest sessions.)
    let copy = list(there.path());
    assert!(!copy.is_empty());
    for session in copy.iter().step_by(5) {
        let id = session["session_id"].as_str().unwrap();
        let replay = |d: &Path| witness(d, &["replay", "session", id, "--json"]).stdout;
        let (a, b): (serde_json::Value, serde_json::Value) =
            (serde_json::from_slice(&replay(dir)).unwrap(), serde_json::from_slice(&replay(there.path())).unwrap());
        let events = |v: &serde_json::Value| v["timeline"].as_array().unwrap().len();
        // Sessions still open at the backup have events after it in the original.
        assert!(events(&b) <= events(&a) && b["timeline"][0] == a["timeline"][0], "{id}");
    }
    let db = rusqlite::Connection::open(there.path().join("data/witness.db")).unwrap();
    let last: i64 = db.query_row("SELECT MAX(position) FROM events", [], |r| r.get(0)).unwrap();
    assert_eq!(last as u64, position, "the manifest's position is the copy's last event");

    // A restore over a store is refused and changes nothing.
    let files = files_in(&there.path().join("data"));
    let over = witness(there.path(), &["restore", "backup.tar"]);
    assert_eq!(over.status.code(), Some(2), "{}", text(&over));
    assert!(text(&over).contains("restore into an empty directory"), "{}", text(&over));
    assert_eq!(files_in(&there.path().join("data")), files);

    // One altered byte in the middle of the file: refused, nothing written.
    let mut bytes = std::fs::read(there.path().join("backup.tar")).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(there.path().join("damaged.tar"), bytes).unwrap();
    let damaged = witness(there.path(), &["restore", "damaged.tar", "--data-dir", "elsewhere"]);
    assert_eq!(damaged.status.code(), Some(2), "{}", text(&damaged));
    assert!(
        text(&damaged).contains("damaged") || text(&damaged).contains("not a Witness backup"),
        "{}",
        text(&damaged)
    );
    assert!(files_in(&there.path().join("elsewhere")).is_empty(), "{:?}", files_in(&there.path().join("elsewhere")));
}
