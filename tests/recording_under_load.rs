//! Recording on a machine whose cores are all busy (issue 28, item 4):
//! `witness media loopback` through the real SFU and recorders while
//! `stress-ng` keeps twice as many CPU hogs as there are cores running.
//! Before the recorder kept each track's time moving forward, a track's
//! recorder died at its first cut ("Queued GOP time is negative") in three
//! runs of three, and the rest of the track was lost.
//!
//! Its own test binary, so that no other test runs beside the load.

mod common;

use std::path::Path;
use std::process::Command;

use common::Load;

/// Each track's segments as printed: `(track, [duration_ms])`.
fn segments(printed: &str) -> std::collections::BTreeMap<String, Vec<u64>> {
    let mut tracks: std::collections::BTreeMap<String, Vec<u64>> = Default::default();
    for line in printed.lines().map(str::trim).filter(|l| l.starts_with("loopback/")) {
        // loopback/TRACK/00000.webm  BYTES bytes  MS ms recorded, MS ms read back
        let mut words = line.split_whitespace();
        let file = words.next().unwrap();
        let track = file.split('/').nth(1).unwrap().to_owned();
        let ms: u64 = words.nth(2).unwrap().parse().unwrap();
        tracks.entry(track).or_default().push(ms);
    }
    tracks
}

#[test]
fn every_track_is_recorded_whole_through_its_cuts_while_the_machine_is_busy() {
    let dir = tempfile::tempdir().unwrap();
    let (seconds, segment) = (16, 5);
    let load = Load::start(seconds + 20);
    let out = Command::new(env!("CARGO_BIN_EXE_witness"))
        .current_dir(dir.path())
        .args(["media", "loopback", "--media-ports", "52400-52499", "--out", "rec"])
        .args(["--seconds", &seconds.to_string(), "--segment-seconds", &segment.to_string()])
        .output()
        .unwrap();
    drop(load);
    let printed = String::from_utf8_lossy(&out.stdout);
    let logged = String::from_utf8_lossy(&out.stderr);
    assert!(!printed.contains("recorder failed"), "{printed}");
    assert_eq!(out.status.code(), Some(0), "{printed}{logged}");
    let tracks = segments(&printed);
    assert_eq!(tracks.len(), 4, "two cameras and two microphones: {tracks:?}");
    for (track, durations) in &tracks {
        assert!(durations.len() >= 3, "{track}: {seconds} s in {segment} s segments: {durations:?}");
        let total: u64 = durations.iter().sum();
        // The call's first and last moments (joining, the keyframe a camera
        // starts with, hanging up) are not recorded; the rest is.
        assert!(total >= u64::from(seconds - 3) * 1000, "{track}: {total} ms of a {seconds} s call: {durations:?}");
    }
    assert!(Path::new(&dir.path().join("rec")).is_dir());
}
