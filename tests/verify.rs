//! Tamper evidence, on both backends: `verify` (the library and the
//! `witness verify` command) passes an untouched store and names the first
//! bad position when a payload, the order, or a hash was altered directly
//! in the database, or an event was deleted after a checkpoint.

mod common;

use std::process::Command;

use common::*;
use witness_engine::{CheckpointSigner, EventStore};
use witness_replay::verify::verify_store;
use witness_schemas::RecordedEvent;

/// Three sessions of six events, all covered by a signed checkpoint.
async fn signed_log(store: &EventStore, dir: &std::path::Path) -> Vec<RecordedEvent> {
    let mut all = Vec::new();
    for _ in 0..3 {
        all.extend(session_with(store, 5).await.1);
    }
    let signer = CheckpointSigner::load_or_create(&dir.join("key")).unwrap();
    // On PostgreSQL, wait until the events are visible to readers (see
    // postgres.rs) so the checkpoint covers them all.
    let mut covered = 0;
    for _ in 0..3000 {
        covered += signer.checkpoint(store).await.unwrap().iter().map(|c| c.event_count).sum::<u64>();
        if covered == all.len() as u64 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(covered, all.len() as u64);
    all
}

fn witness_verify(url: &str, dir: &std::path::Path) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_witness"))
        .args(["verify", "--database-url", url, "--public-key"])
        .arg(dir.join("key.pub"))
        .output()
        .unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs one tampering against a fresh signed log and checks that both the
/// library and the command report it at `expect_position` (or, for a
/// deletion, as a checkpoint problem).
async fn tamper_and_verify(t: TestStore, tamper: impl Fn(&[RecordedEvent]) -> (String, Option<u64>)) {
    let dir = tempfile::tempdir().unwrap();
    let events = signed_log(&t.store, dir.path()).await;
    let key = witness_engine::checkpoint::read_public_key(&dir.path().join("key.pub")).unwrap();

    let clean = verify_store(&t.store, Some(key), |_| {}).await.unwrap();
    assert!(clean.is_ok(), "untouched store failed: {:?}", clean.problems);
    assert_eq!(clean.events, events.len() as u64);
    let (code, stdout) = witness_verify(&t.url, dir.path());
    assert_eq!(code, 0, "{stdout}");
    assert!(stdout.contains("OK"), "{stdout}");

    let (sql, expect_position) = tamper(&events);
    raw_sql(&t.url, &sql).await;

    let report = verify_store(&t.store, Some(key), |_| {}).await.unwrap();
    let first = report.first_problem().unwrap_or_else(|| panic!("tampering not detected: {sql}"));
    assert_eq!(first.position, expect_position, "{:?}", report.problems);
    let (code, stdout) = witness_verify(&t.url, dir.path());
    assert_eq!(code, 1, "{stdout}");
    match expect_position {
        Some(p) => assert!(stdout.contains(&format!("first bad position {p}:")), "{stdout}"),
        None => assert!(stdout.contains("FAILED: checkpoint"), "{stdout}"),
    }
}

fn altered_payload(events: &[RecordedEvent]) -> (String, Option<u64>) {
    let p = events[8].position;
    // A message's text is stored encrypted (engine/src/shred.rs): altering
    // it means altering its ciphertext.
    let sql = format!("UPDATE events SET payload = replace(payload, '\"text\":\"enc:v1:', '\"text\":\"enc:v1:A') WHERE position = {p}");
    (sql, Some(p))
}

fn altered_hash(events: &[RecordedEvent]) -> (String, Option<u64>) {
    let p = events[13].position;
    (format!("UPDATE events SET hash = prev_hash WHERE position = {p}"), Some(p))
}

/// Swap two events of one stream (versions 3 and 4 of the second session):
/// the earlier position now claims version 4.
fn swapped_order(events: &[RecordedEvent]) -> (String, Option<u64>) {
    let (a, b) = (&events[8], &events[9]);
    assert_eq!((a.stream_version, b.stream_version, &a.stream_id), (3, 4, &b.stream_id));
    let sql = format!(
        "UPDATE events SET stream_version = -1 WHERE position = {pa}; \
         UPDATE events SET stream_version = 3 WHERE position = {pb}; \
         UPDATE events SET stream_version = 4 WHERE position = {pa};",
        pa = a.position,
        pb = b.position
    );
    (sql, Some(a.position))
}

/// The last event of a stream leaves no broken link behind; only the signed
/// checkpoint can tell it is gone.
fn deleted_tail(events: &[RecordedEvent]) -> (String, Option<u64>) {
    (format!("DELETE FROM events WHERE position = {}", events[17].position), None)
}

macro_rules! tamper_tests {
    ($($name:ident => $tamper:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test] async fn $name() { super::tamper_and_verify(super::sqlite().await, super::$tamper).await })*
        }
        mod postgres {
            $(#[tokio::test] async fn $name() { super::tamper_and_verify(super::postgres().await, super::$tamper).await })*
        }
    };
}

tamper_tests!(
    an_altered_payload_is_named_by_position => altered_payload,
    an_altered_hash_is_named_by_position => altered_hash,
    swapped_events_are_named_by_position => swapped_order,
    a_deleted_event_fails_its_checkpoint => deleted_tail,
);

#[tokio::test]
async fn a_checkpoint_signed_by_another_key_is_refused() {
    let t = sqlite().await;
    let dir = tempfile::tempdir().unwrap();
    signed_log(&t.store, dir.path()).await;
    let stranger = CheckpointSigner::load_or_create(&dir.path().join("stranger")).unwrap();
    let report = verify_store(&t.store, Some(stranger.verifying_key()), |_| {}).await.unwrap();
    assert!(report.problems.iter().any(|p| p.message.contains("not by the trusted key")), "{:?}", report.problems);
}

/// `media loopback --database-url` records its call as a `selftest`
/// session: the record names every segment with its hash, `verify
/// --recordings` passes, and fails naming the file once a byte changes.
#[tokio::test]
async fn the_media_self_test_writes_its_call_to_the_named_store() {
    let t = postgres().await;
    let dir = tempfile::tempdir().unwrap();
    let rec = dir.path().join("rec");
    let rec_arg = rec.to_str().unwrap();
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_witness"))
            .current_dir(dir.path())
            .args(["--database-url", &t.url])
            .args(args)
            .output()
            .unwrap();
        (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let (code, out) = run(&[
        "media",
        "loopback",
        "--seconds",
        "3",
        "--segment-seconds",
        "1",
        "--media-ports",
        "52200-52299",
        "--out",
        rec_arg,
    ]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("OK: media flows through the SFU and is recorded"), "{out}");

    let mut sessions = Vec::new();
    for e in t.store.scan_positions(0, 10_000).await.unwrap() {
        assert_eq!(e.tenant_id.as_str(), "selftest", "{e:?}");
        sessions.push(e.decode().unwrap());
    }
    use witness_schemas::Event;
    let segments: Vec<_> = sessions
        .iter()
        .filter_map(|e| match e {
            Event::RecordingSegmentClosed(s) => Some(s.clone()),
            _ => None,
        })
        .collect();
    assert!(segments.len() >= 4, "two audio and two video tracks: {segments:?}");
    for kind in ["CallStarted", "RecordingStarted", "TrackPublished", "RecordingStopped", "CallEnded"] {
        assert!(sessions.iter().any(|e| e.event_type() == kind), "no {kind} in {sessions:?}");
    }
    assert!(!dir.path().join("data").exists(), "nothing written to the default store");

    let (code, out) = run(&["verify", "--recordings", "--recordings-dir", rec_arg]);
    assert_eq!(code, 0, "{out}");
    let victim = rec.join(&segments[0].file);
    let mut bytes = std::fs::read(&victim).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&victim, bytes).unwrap();
    let (code, out) = run(&["verify", "--recordings", "--recordings-dir", rec_arg]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains(&format!("{}: altered", segments[0].file)), "{out}");
}
