//! The `witness` binary as a user runs it: seed, verify, schema export,
//! serve, and clear errors for bad arguments.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Output, Stdio};

fn witness(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_witness")).current_dir(dir).args(args).output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn seed_then_checkpoint_then_verify_on_the_default_store() {
    let dir = tempfile::tempdir().unwrap();
    let seeded = witness(dir.path(), &["seed", "--events", "500", "--streams", "7", "--batch", "30"]);
    assert!(seeded.status.success(), "{}", stderr(&seeded));
    assert!(stdout(&seeded).contains("seeded 500 events in 7 streams"), "{}", stdout(&seeded));
    assert!(dir.path().join("data/witness.db").exists(), "the default store lives under ./data/");

    let signed = witness(dir.path(), &["checkpoint"]);
    assert!(signed.status.success(), "{}", stderr(&signed));
    assert!(dir.path().join("data/witness-signing.pub").exists());

    let verified = witness(dir.path(), &["verify"]);
    assert_eq!(verified.status.code(), Some(0), "{}", stdout(&verified));
    let out = stdout(&verified);
    assert!(out.contains("500 events in 7 streams; 1 signed checkpoints (trusted key)"), "{out}");
}

#[test]
fn schema_export_writes_one_valid_schema_per_event_type() {
    let dir = tempfile::tempdir().unwrap();
    let out = witness(dir.path(), &["schema", "export", "schemas"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let files: Vec<_> = std::fs::read_dir(dir.path().join("schemas")).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(files.len(), witness_schemas::EVENT_TYPES.len());
    let started: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("schemas/SessionStarted.v2.schema.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(started["x-event-type"], "SessionStarted");
    assert_eq!(started["x-schema-version"], 2);
    assert!(started["properties"]["channel"].is_object(), "{started}");
}

#[test]
fn bad_arguments_get_a_clear_error_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let out = witness(dir.path(), &["verify", "--database-url", "mysql://localhost/x"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("unsupported database URL"), "{}", stderr(&out));

    let out = witness(dir.path(), &["seed", "--batch", "0"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--batch"), "{}", stderr(&out));

    let out = witness(dir.path(), &["seed", "--tenant", "Not A Slug"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("invalid tenant"), "{}", stderr(&out));

    let out = witness(dir.path(), &["export", "--format", "csv", "--out", "export"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("possible values: parquet"), "{}", stderr(&out));
    assert!(!dir.path().join("export").exists(), "a refused export created its directory");

    let out = witness(dir.path(), &["serve", "--media-threads", "0"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--media-threads"), "{}", stderr(&out));
    assert!(!dir.path().join("data").exists(), "a refused command created the store");
}

#[test]
fn serve_answers_healthz_and_creates_its_signing_key() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_witness"))
        .current_dir(dir.path())
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("NO_COLOR", "1")
        .env("WITNESS_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let addr = common::listening_address(&mut child);
    let mut stream = TcpStream::connect(&addr).unwrap();
    stream.write_all(b"GET /healthz HTTP/1.0\r\nHost: localhost\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(response.starts_with("HTTP/1.0 200") || response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains(r#""backend":"sqlite""#), "{response}");
    assert!(dir.path().join("data/witness-signing.key").exists());
}

#[test]
fn seed_a_day_then_list_and_replay_its_sessions() {
    let dir = tempfile::tempdir().unwrap();
    let seeded = witness(dir.path(), &["seed", "--sessions", "25", "--agents", "4", "--seed", "9"]);
    assert!(seeded.status.success(), "{}", stderr(&seeded));
    assert!(stdout(&seeded).starts_with("seeded 25 sessions"), "{}", stdout(&seeded));

    let listed = witness(dir.path(), &["replay", "list", "--json"]);
    assert!(listed.status.success(), "{}", stderr(&listed));
    let sessions: Vec<serde_json::Value> = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(sessions.len(), 25);
    let id = sessions[0]["session_id"].as_str().unwrap();

    let replayed = witness(dir.path(), &["replay", "session", id, "--json"]);
    assert!(replayed.status.success(), "{}", stderr(&replayed));
    let replay: serde_json::Value = serde_json::from_slice(&replayed.stdout).unwrap();
    let timeline = replay["timeline"].as_array().unwrap();
    assert_eq!(timeline[0]["event_type"], "SessionStarted");
    // A tenant not set up yet speaks Chinese: so do its seeded customers.
    let asked = timeline.iter().find(|e| e["event_type"] == "CustomerMessage").expect("the customer asks");
    assert!(asked.to_string().chars().any(|c| ('\u{4e00}'..='\u{9fff}').contains(&c)), "{asked}");
    let started = timeline[0]["occurred_at"].as_str().unwrap();

    let at_start = witness(dir.path(), &["replay", "session", id, "--at", started, "--json"]);
    let early: serde_json::Value = serde_json::from_slice(&at_start.stdout).unwrap();
    assert_eq!(early["state"]["status"], "with the bot");
    assert_eq!(
        early["later_events"].as_u64().unwrap() as usize,
        timeline.len() - early["timeline"].as_array().unwrap().len()
    );

    // Rebuilding a projection that does not exist is refused before anything is emptied.
    let refused = witness(dir.path(), &["rebuild", "sesions"]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(stderr(&refused).contains("unknown projection \"sesions\""), "{}", stderr(&refused));
    // (Read the table directly: `replay list` would re-project what was lost.)
    let db = rusqlite::Connection::open(dir.path().join("data/witness.db")).unwrap();
    let count = |sql: &str| db.query_row(sql, [], |r| r.get::<_, i64>(0)).unwrap();
    assert_eq!(count("SELECT COUNT(*) FROM sessions"), 25);
    assert_eq!(count("SELECT COUNT(*) FROM projection_checkpoints"), 6);
    let rebuilt = witness(dir.path(), &["rebuild", "sessions"]);
    assert!(stdout(&rebuilt).starts_with("rebuilt sessions from "), "{}", stdout(&rebuilt));

    // The analysts' export: everything the first time, nothing the second.
    let exported = witness(dir.path(), &["export", "--format", "parquet", "--out", "export"]);
    assert!(exported.status.success(), "{}", stderr(&exported));
    let total = count("SELECT COUNT(*) FROM events");
    assert!(stdout(&exported).starts_with(&format!("exported {total} events into ")), "{}", stdout(&exported));
    assert!(dir.path().join("export/export-state.json").exists());
    let again = witness(dir.path(), &["export", "--format", "parquet", "--out", "export"]);
    assert!(
        stdout(&again).starts_with("exported 0 events into 0 new file(s) and 2 read-model snapshot(s)"),
        "{}",
        stdout(&again)
    );

    // Reports over it.
    let report =
        witness(dir.path(), &["report", "run", "sessions-by-channel", "--export", "export", "--format", "json"]);
    assert!(report.status.success(), "{}", stderr(&report));
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&report.stdout).unwrap();
    assert_eq!(rows.iter().map(|r| r["sessions"].as_i64().unwrap()).sum::<i64>(), 25);
    let sql = witness(dir.path(), &["report", "sql", "SELECT count(*) AS n FROM events", "--export", "export"]);
    assert!(stdout(&sql).contains(&format!("| {total} ")), "{}", stdout(&sql));
    for (args, says) in [
        (&["report", "sql", "DROP VIEW messages", "--export", "export"][..], "DDL not supported"),
        (&["report", "run", "sessions-by-chanel"][..], "unknown report \"sessions-by-chanel\""),
        (&["report", "sql", "SELECT 1", "--export", "nowhere"][..], "no Parquet export at nowhere"),
    ] {
        let refused = witness(dir.path(), args);
        assert_eq!(refused.status.code(), Some(2), "{args:?}");
        assert!(stderr(&refused).contains(says), "{args:?}: {}", stderr(&refused));
    }
    assert!(!dir.path().join("nowhere").exists());

    let unknown = witness(dir.path(), &["replay", "session", "01a21369-b188-7776-94e2-000000000000"]);
    assert_eq!(unknown.status.code(), Some(2));
    assert!(stderr(&unknown).contains("no session"), "{}", stderr(&unknown));
    let bad = witness(dir.path(), &["replay", "session", "not-an-id"]);
    assert_eq!(bad.status.code(), Some(2));
}

#[test]
fn media_loopback_without_a_named_store_writes_only_its_segments() {
    let dir = tempfile::tempdir().unwrap();
    let out = witness(
        dir.path(),
        &[
            "media",
            "loopback",
            "--seconds",
            "2",
            "--segment-seconds",
            "1",
            "--media-ports",
            "52300-52399",
            "--out",
            "rec",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}{}", stdout(&out), stderr(&out));
    let printed = stdout(&out);
    assert!(printed.contains("OK: media flows through the SFU and is recorded"), "{printed}");
    assert!(printed.contains("loopback/customer_customer-cam/00000.webm"), "{printed}");
    assert!(!dir.path().join("data").exists(), "no store was named, so none is created");
    let entries: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(entries, vec![std::ffi::OsString::from("rec")]);
}

/// `witness export audit`: one tenant's slice of the log as JSON lines, CSV
/// or Parquet with a manifest; masked unless --unmasked, each export of a
/// tenant recorded in its access log; bad requests write nothing.
#[test]
fn audit_exports_are_sliced_masked_unless_asked_recorded_and_never_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| witness(dir.path(), args);
    assert!(run(&["admin", "create-tenant", "acme", "--name", "Acme"]).status.success());
    assert!(run(&["admin", "create-tenant", "globex", "--name", "Globex"]).status.success());
    for (tenant, seed) in [("acme", "1"), ("globex", "2")] {
        let seeded = run(&["seed", "--sessions", "20", "--agents", "3", "--seed", seed, "--tenant", tenant]);
        assert!(seeded.status.success(), "{}", stderr(&seeded));
    }
    let store = || {
        let conn = rusqlite::Connection::open(dir.path().join("data/witness.db")).unwrap();
        let count = |sql: &str| conn.query_row(sql, [], |r| r.get::<_, i64>(0)).unwrap();
        (
            count("SELECT count(*) FROM events"),
            count("SELECT count(*) FROM events WHERE tenant_id = 'acme'"),
            count("SELECT count(*) FROM events WHERE event_type = 'AuditExported'"),
        )
    };
    let (all_before, acme_before, _) = store();

    // Masked JSON lines of acme: every acme event, no customer's words.
    let masked = run(&["export", "audit", "--tenant", "acme", "--format", "jsonl", "--out", "audit"]);
    assert!(masked.status.success(), "{}", stderr(&masked));
    let file = dir.path().join("audit/audit-acme-start-end.jsonl");
    let text = std::fs::read_to_string(&file).unwrap();
    let rows: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(rows.len() as i64, acme_before);
    assert!(rows.iter().all(|r| r["tenant_id"] == "acme" && r["hash"].as_str().unwrap().len() == 64), "{}", rows[0]);
    let words = ["raise my card limit", "redeem my fund early", "房贷利率", "信用卡年费"];
    assert!(words.iter().all(|w| !text.contains(w)) && text.contains("CustomerMessage"), "masked");
    let manifest: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("audit/audit-acme-start-end.jsonl.manifest.json")).unwrap(),
    )
    .unwrap();
    use sha2::Digest;
    assert_eq!(manifest["sha256"], hex::encode(sha2::Sha256::digest(text.as_bytes())));
    assert_eq!((manifest["events"].as_i64(), manifest["unmasked"].as_bool()), (Some(acme_before), Some(false)));
    assert_eq!(store(), (all_before + 1, acme_before + 1, 1), "the export is recorded in acme's access log");

    // Unmasked CSV of a time slice: the customers' words, only that slice.
    let unmasked = run(&[
        "export",
        "audit",
        "--tenant",
        "acme",
        "--from",
        "2000-01-01",
        "--to",
        "2100-01-01T00:00:00Z",
        "--format",
        "csv",
        "--out",
        "audit",
        "--unmasked",
    ]);
    assert!(unmasked.status.success(), "{}", stderr(&unmasked));
    let csv =
        std::fs::read_to_string(dir.path().join("audit/audit-acme-20000101T000000Z-21000101T000000Z.csv")).unwrap();
    assert!(csv.lines().next().unwrap().starts_with("position,event_id,stream_id"), "{csv}");
    assert_eq!(csv.lines().filter(|l| l.contains(",acme,")).count() as i64, acme_before + 1, "a row per event");
    assert!(words.iter().any(|w| csv.contains(w)), "unmasked");
    let nothing_then =
        run(&["export", "audit", "--tenant", "acme", "--from", "2100-01-01", "--format", "parquet", "--out", "audit"]);
    assert!(nothing_then.status.success(), "{}", stderr(&nothing_then));
    let parquet = std::fs::File::open(dir.path().join("audit/audit-acme-21000101T000000Z-end.parquet")).unwrap();
    let rows: usize = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(parquet)
        .unwrap()
        .build()
        .unwrap()
        .map(|b| b.unwrap().num_rows())
        .sum();
    assert_eq!(rows, 0, "nothing happened after 2100");
    let (all, _, exported) = store();
    assert_eq!((all, exported), (all_before + 3, 3));

    // Refused, writing nothing: the same file again, unmasked without a
    // tenant, an unknown tenant, a bad time, a range backwards.
    let listing = || {
        let mut names: Vec<_> =
            std::fs::read_dir(dir.path().join("audit")).unwrap().map(|e| e.unwrap().file_name()).collect();
        names.sort();
        names
    };
    let files = listing();
    let cases: [(&[&str], &str); 5] = [
        (&["--tenant", "acme", "--format", "jsonl"], "exists"),
        (&["--format", "jsonl", "--unmasked"], "--tenant"),
        (&["--tenant", "initech", "--format", "jsonl"], "no tenant initech"),
        (&["--tenant", "acme", "--format", "csv", "--from", "yesterday"], "neither an RFC 3339 time"),
        (&["--tenant", "acme", "--format", "csv", "--from", "2026-02-01", "--to", "2026-01-01"], "before it starts"),
    ];
    for (args, why) in cases {
        let out = run(&[&["export", "audit", "--out", "audit"], args].concat());
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(stderr(&out).contains(why), "{args:?}: {}", stderr(&out));
    }
    assert_eq!(listing(), files, "a refused export left a file");
    assert_eq!(store().0, all_before + 3, "a refused export wrote an event");
}

/// `witness retention sweep`: nothing to delete without a policy; a bad
/// time is refused before anything runs.
#[test]
fn retention_sweep_reports_what_it_did_and_refuses_a_bad_time() {
    let dir = tempfile::tempdir().unwrap();
    assert!(witness(dir.path(), &["admin", "create-tenant", "acme", "--name", "Acme"]).status.success());
    let swept = witness(dir.path(), &["retention", "sweep", "--dry-run"]);
    assert!(swept.status.success(), "{}", stderr(&swept));
    assert!(stdout(&swept).contains("0 file(s) to delete (dry run: nothing deleted)"), "{}", stdout(&swept));
    let bad = witness(dir.path(), &["retention", "sweep", "--at", "soon"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(stderr(&bad).contains("neither an RFC 3339 time"), "{}", stderr(&bad));
}

/// `witness verify --package`: offline, with nothing but the file and the
/// public key — intact, incomplete (files the log names are missing), signed
/// by another key, or with no key at hand.
#[test]
fn verify_package_checks_a_review_package_offline() {
    let dir = tempfile::tempdir().unwrap();
    assert!(witness(dir.path(), &["admin", "create-tenant", "acme", "--name", "Acme"]).status.success());
    let seeded = witness(dir.path(), &["seed", "--sessions", "30", "--agents", "3", "--tenant", "acme"]);
    assert!(seeded.status.success(), "{}", stderr(&seeded));
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (bot_only, recorded) = runtime.block_on(async {
        let store = witness_engine::EventStore::connect(&format!("sqlite://{}/data/witness.db", dir.path().display()))
            .await
            .unwrap();
        let events = store.read_all(witness_schemas::Cursor::START, 100_000).await.unwrap();
        let with =
            |t: &str| events.iter().filter(|e| e.event_type == t).map(|e| e.stream_id.id.clone()).collect::<Vec<_>>();
        let (ended, recorded, queued) = (with("SessionEnded"), with("RecordingSegmentClosed"), with("SessionQueued"));
        let bot_only = ended.into_iter().find(|s| !queued.contains(s)).expect("a session the bot resolved");
        let signer = witness_engine::CheckpointSigner::load_or_create(&dir.path().join("keys/signing.key")).unwrap();
        let mut written = vec![];
        for id in [&bot_only, &recorded[0]] {
            let package = witness_replay::package::write_package(
                &store,
                &dir.path().join("data/recordings"),
                &"acme".parse().unwrap(),
                id.parse().unwrap(),
                &serde_json::json!({}),
                &signer,
                vec![],
            )
            .await
            .unwrap();
            let path = dir.path().join(format!("{id}.tar"));
            std::fs::write(&path, package).unwrap();
            written.push(path);
        }
        (written[0].clone(), written[1].clone())
    });
    let key = dir.path().join("keys/signing.pub");
    let run = |package: &Path, key: &Path| {
        witness(dir.path(), &["verify", "--package", package.to_str().unwrap(), "--public-key", key.to_str().unwrap()])
    };
    let ok = run(&bot_only, &key);
    assert_eq!(ok.status.code(), Some(0), "{}{}", stdout(&ok), stderr(&ok));
    assert!(stdout(&ok).contains("OK: the package is intact and signed by this key"), "{}", stdout(&ok));
    let incomplete = run(&recorded, &key);
    assert_eq!(incomplete.status.code(), Some(1));
    assert!(stdout(&incomplete).contains("named by the log but not in the package"), "{}", stdout(&incomplete));
    std::fs::create_dir_all(dir.path().join("other")).unwrap();
    witness_engine::CheckpointSigner::load_or_create(&dir.path().join("other/k.key")).unwrap();
    let stranger = run(&bot_only, &dir.path().join("other/k.pub"));
    assert_eq!(stranger.status.code(), Some(1));
    assert!(stdout(&stranger).contains("signature does not verify"), "{}", stdout(&stranger));
    let keyless = witness(dir.path(), &["verify", "--package", bot_only.to_str().unwrap()]);
    assert_eq!(keyless.status.code(), Some(2));
    assert!(stderr(&keyless).contains("--public-key"), "{}", stderr(&keyless));
}
