//! Verification of a store: hash chains, then signed checkpoints; and of
//! the recording files the log describes.

use std::collections::HashMap;

use ed25519_dalek::VerifyingKey;
use witness_engine::chain::{event_hash, merkle_root, GENESIS};
use witness_engine::{Checkpoint, EventStore, StoreError};
use witness_schemas::{Cursor, StreamId};

const BATCH: usize = 5_000;

/// Keep the report readable when a whole store was damaged.
const MAX_PROBLEMS: usize = 100;

/// One thing found wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The global position of the bad event, when one can be named.
    pub position: Option<u64>,
    pub message: String,
}

/// What `verify` found.
#[derive(Debug, Default)]
pub struct VerifyReport {
    pub events: u64,
    pub streams: u64,
    pub checkpoints: u64,
    /// Events after the last checkpoint: covered by their hash chains only.
    pub unchecked_tail: u64,
    /// Whether checkpoints were checked against a trusted public key (rather
    /// than the key stored beside them, which only guards against accidents).
    pub trusted_key: bool,
    pub problems: Vec<Problem>,
}

impl VerifyReport {
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }

    /// The problem at the lowest position (chain problems come first; then
    /// checkpoint problems, which cannot name a single position).
    pub fn first_problem(&self) -> Option<&Problem> {
        self.problems.iter().min_by_key(|p| p.position.unwrap_or(u64::MAX))
    }

    fn push(&mut self, position: Option<u64>, message: String) {
        if self.problems.len() < MAX_PROBLEMS {
            self.problems.push(Problem { position, message });
        }
    }
}

/// Verifies every event and checkpoint in `store`. `trusted_key` is the
/// checkpoint public key to trust (see [`VerifyReport::trusted_key`]);
/// `progress` is called with the number of events checked so far.
pub async fn verify_store(
    store: &EventStore,
    trusted_key: Option<VerifyingKey>,
    mut progress: impl FnMut(u64),
) -> Result<VerifyReport, StoreError> {
    let mut report = VerifyReport { trusted_key: trusted_key.is_some(), ..Default::default() };
    verify_chains(store, &mut report, &mut progress).await?;
    verify_checkpoints(store, trusted_key, &mut report).await?;
    Ok(report)
}

async fn verify_chains(
    store: &EventStore,
    report: &mut VerifyReport,
    progress: &mut impl FnMut(u64),
) -> Result<(), StoreError> {
    // Last (version, hash) seen per stream. The stored hash, not the
    // recomputed one, is carried forward, so one altered event is reported
    // once rather than breaking every later link of its stream.
    let mut heads: HashMap<StreamId, (u64, [u8; 32])> = HashMap::new();
    let mut after = 0;
    loop {
        let batch = match store.scan_positions(after, BATCH).await {
            Ok(batch) => batch,
            Err(StoreError::CorruptRow { position, message }) => {
                report.push(Some(position), format!("row cannot be read: {message}"));
                break;
            }
            Err(e) => return Err(e),
        };
        let Some(last) = batch.last() else { break };
        after = last.position;
        for e in &batch {
            let (version, prev) = heads.get(&e.stream_id).copied().unwrap_or((0, GENESIS));
            if e.stream_version != version + 1 {
                report.push(
                    Some(e.position),
                    format!(
                        "{}: version {} follows version {version} (order altered or event removed)",
                        e.stream_id, e.stream_version
                    ),
                );
            } else if e.prev_hash != prev {
                report.push(
                    Some(e.position),
                    format!("{}: prev_hash does not match the previous event's hash", e.stream_id),
                );
            }
            if event_hash(e) != e.hash {
                report.push(
                    Some(e.position),
                    format!("{} v{}: hash mismatch (envelope or payload altered)", e.stream_id, e.stream_version),
                );
            }
            heads.insert(e.stream_id.clone(), (e.stream_version, e.hash));
        }
        report.events += batch.len() as u64;
        progress(report.events);
    }
    report.streams = heads.len() as u64;
    Ok(())
}

async fn verify_checkpoints(
    store: &EventStore,
    trusted_key: Option<VerifyingKey>,
    report: &mut VerifyReport,
) -> Result<(), StoreError> {
    let checkpoints = store.checkpoints().await?;
    let mut expected_from = Cursor::START;
    for cp in &checkpoints {
        let label = format!("checkpoint #{} over ({}, {}]", cp.id, cp.from, cp.to);
        if cp.from != expected_from {
            report.push(None, format!("{label} does not start where the previous one ended ({expected_from})"));
        }
        expected_from = cp.to;
        check_signature(cp, trusted_key, &label, report);
        let leaves = leaves_in(store, cp.from, cp.to).await?;
        if leaves.len() as u64 != cp.event_count {
            report.push(
                None,
                format!(
                    "{label} covered {} events, {} are there now (events removed or added)",
                    cp.event_count,
                    leaves.len()
                ),
            );
        } else if merkle_root(&leaves) != cp.merkle_root {
            report.push(None, format!("{label}: Merkle root differs (an event in this range was rewritten or moved)"));
        }
    }
    report.checkpoints = checkpoints.len() as u64;
    let end = Cursor { commit: u64::MAX, position: u64::MAX };
    report.unchecked_tail = leaves_in(store, expected_from, end).await?.len() as u64;
    Ok(())
}

fn check_signature(cp: &Checkpoint, trusted_key: Option<VerifyingKey>, label: &str, report: &mut VerifyReport) {
    let key = match trusted_key {
        Some(key) if key.to_bytes() != cp.public_key => {
            report.push(None, format!("{label} is signed by {}, not by the trusted key", hex::encode(cp.public_key)));
            return;
        }
        Some(key) => key,
        None => match VerifyingKey::from_bytes(&cp.public_key) {
            Ok(key) => key,
            Err(_) => {
                report.push(None, format!("{label} carries an invalid public key"));
                return;
            }
        },
    };
    if !cp.signature_valid(&key) {
        report.push(None, format!("{label}: signature does not match its range and root"));
    }
}

/// The event hashes in `(from, to]` of the global order.
async fn leaves_in(store: &EventStore, from: Cursor, to: Cursor) -> Result<Vec<[u8; 32]>, StoreError> {
    let mut leaves = Vec::new();
    let mut cursor = from;
    loop {
        let batch = store.read_all(cursor, BATCH).await?;
        let Some(last) = batch.last() else { break };
        cursor = last.cursor();
        leaves.extend(batch.iter().filter(|e| e.cursor() <= to).map(|e| e.hash));
        if cursor >= to {
            break;
        }
    }
    Ok(leaves)
}

/// The file a recording event (`RecordingSegmentClosed`,
/// `RecordingComposited`) names: its path under the recordings directory,
/// its size and its SHA-256.
pub fn recording_file(e: &witness_schemas::Event) -> Option<(&str, u64, &witness_schemas::Sha256Hex)> {
    match e {
        witness_schemas::Event::RecordingSegmentClosed(s) => Some((&s.file, s.bytes, &s.sha256)),
        witness_schemas::Event::RecordingComposited(c) => Some((&c.file, c.bytes, &c.sha256)),
        _ => None,
    }
}

/// Where `file`, as the log names it, is under the recordings directory
/// `dir` — if it stays inside it (no absolute path, no `..`).
pub fn recording_path(dir: &std::path::Path, file: &str) -> Option<std::path::PathBuf> {
    let relative = std::path::Path::new(file);
    relative.components().all(|c| matches!(c, std::path::Component::Normal(_))).then(|| dir.join(relative))
}

/// What `verify --recordings` found.
#[derive(Debug, Default)]
pub struct RecordingsReport {
    /// `RecordingSegmentClosed` and `RecordingComposited` events read.
    pub segments: u64,
    /// Their files that were there with the recorded size and hash.
    pub intact: u64,
    /// Their files deleted under a retention policy (a `MediaDeleted` names them).
    pub deleted: u64,
    /// One per missing or altered file: the event's position and what is wrong.
    pub problems: Vec<Problem>,
}

impl RecordingsReport {
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Re-hashes every recording segment the log names against its file under
/// `dir`, but those a `MediaDeleted` event says were deleted under a
/// retention policy (counted in `deleted`). `progress` is called with the
/// number of segments checked so far.
pub async fn verify_recordings(
    store: &EventStore,
    dir: &std::path::Path,
    mut progress: impl FnMut(u64),
) -> Result<RecordingsReport, StoreError> {
    let mut report = RecordingsReport::default();
    let mut after = 0;
    let (mut named, mut deleted) = (Vec::new(), std::collections::HashSet::new());
    loop {
        let batch = match store.scan_positions(after, BATCH).await {
            Ok(batch) => batch,
            Err(StoreError::CorruptRow { position, message }) => {
                report
                    .problems
                    .push(Problem { position: Some(position), message: format!("row cannot be read: {message}") });
                break;
            }
            Err(e) => return Err(e),
        };
        let Some(last) = batch.last() else { break };
        after = last.position;
        for e in batch.iter() {
            match e.event_type.as_str() {
                "RecordingSegmentClosed" | "RecordingComposited" => named.push(e.clone()),
                "MediaDeleted" => match e.decode() {
                    Ok(witness_schemas::Event::MediaDeleted(d)) => _ = deleted.insert((e.tenant_id.clone(), d.file)),
                    _ => report
                        .problems
                        .push(Problem { position: Some(e.position), message: "MediaDeleted cannot be decoded".into() }),
                },
                _ => {}
            }
        }
    }
    // A file is checked once the whole log has been read: its deletion comes after it.
    for e in named {
        report.segments += 1;
        let position = Some(e.position);
        let decoded = e.decode();
        let Some((name, bytes, sha256)) = decoded.as_ref().ok().and_then(recording_file) else {
            report.problems.push(Problem { position, message: "the recording event cannot be decoded".into() });
            continue;
        };
        if deleted.contains(&(e.tenant_id.clone(), name.to_owned())) {
            report.deleted += 1;
            progress(report.segments);
            continue;
        }
        let Some(path) = recording_path(dir, name) else {
            report
                .problems
                .push(Problem { position, message: format!("{name}: not a path inside the recordings directory") });
            continue;
        };
        match witness_engine::chain::sha256_file(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                report.problems.push(Problem { position, message: format!("{name}: missing") })
            }
            Err(e) => report.problems.push(Problem { position, message: format!("{name}: cannot be read: {e}") }),
            Ok((found, _)) if found != bytes => report
                .problems
                .push(Problem { position, message: format!("{name}: altered ({found} bytes, {bytes} recorded)") }),
            Ok((_, found)) if found != sha256.as_str() => report.problems.push(Problem {
                position,
                message: format!("{name}: altered (SHA-256 {found}, {} recorded)", sha256.as_str()),
            }),
            Ok(_) => report.intact += 1,
        }
        progress(report.segments);
    }
    Ok(report)
}
