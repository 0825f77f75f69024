//! Review packages: one session's dual recording as a single tar file that
//! can be checked offline, on another machine, with nothing but the file and
//! the instance's public key (`witness verify --package FILE --public-key K`).
//!
//! ```text
//! manifest.json        what the package holds: every file with its size and SHA-256
//! manifest.sig         Ed25519 signature (hex) over "witness-review-package-v1" ‖ manifest.json,
//!                      by the instance's checkpoint key
//! timeline.json        the session's events as stored, whole envelopes with their hashes
//!                      (personal fields encrypted with the session's key: engine/src/shred.rs)
//! conversation.json    the same events with their personal fields readable (or
//!                      "[erased]" once the session's key is erased)
//! review.json          the reviewer's view: steps, offsets, reviews, verdict (if given)
//! recordings/…         the composite and every segment the events name
//! ```
//!
//! The verifier checks the signature with the key it is given (never one
//! the package carries), every listed file's size and hash, that nothing
//! unlisted is there, that each event's hash is what its envelope hashes to,
//! that `conversation.json` is `timeline.json` but for the personal fields'
//! values, and that each recording event's file is in the package with the
//! hash the event recorded. Events are a session's, not the whole log: their
//! `prev_hash` links point into the rest of the log and are not followed.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use ed25519_dalek::{Signature, Verifier, VerifyingKey};
use sha2::{Digest, Sha256};
use witness_engine::checkpoint::{package_message, CheckpointSigner};
use witness_engine::{EventStore, StoreError};
use witness_schemas::{RecordedEvent, SessionId, StreamId, TenantId};

use crate::verify::{recording_file, recording_path};

pub const FORMAT: &str = "witness-review-package/1";

#[derive(Debug, thiserror::Error)]
pub enum PackageError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("no such session")]
    NoSession,
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("the package cannot be read: {0}")]
    Unreadable(String),
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PackedFile {
    pub path: String,
    pub bytes: u64,
    pub sha256: String,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Manifest {
    pub format: String,
    pub tenant: String,
    pub session_id: String,
    pub created_at: chrono::DateTime<chrono::Utc>,
    /// The signer's public key (hex), for information: verify with a key you trust.
    pub public_key: String,
    pub files: Vec<PackedFile>,
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The package of `session` (of `tenant`), signed by `signer`, written as
/// tar to `out`, which is handed back. `review` is the reviewer's view to
/// include. A recording file the log names but the disk has lost (deleted
/// under retention, say) is left out; the verifier reports it.
///
/// Recordings are never held in memory: each is hashed as it is read for
/// the manifest, which comes first in the tar, then copied into it as it
/// is read again. (Closed segments and composites do not change; one that
/// did in between would fail the package's verification, not pass it.)
pub async fn write_package<W: std::io::Write + Send + 'static>(
    store: &EventStore,
    recordings: &Path,
    tenant: &TenantId,
    session: SessionId,
    review: &serde_json::Value,
    signer: &CheckpointSigner,
    out: W,
) -> Result<W, PackageError> {
    let stream = StreamId::session(session);
    let stored = store.read_stream_stored(&stream, 1).await?;
    if stored.first().is_none_or(|e| &e.tenant_id != tenant) {
        return Err(PackageError::NoSession);
    }
    // One read for both files, so that they hold the same events.
    let mut events = stored.clone();
    store.decrypt(&mut events).await?;
    let documents: Vec<(String, Vec<u8>)> = vec![
        ("timeline.json".into(), serde_json::to_vec_pretty(&stored).expect("events serialise")),
        ("conversation.json".into(), serde_json::to_vec_pretty(&events).expect("events serialise")),
        ("review.json".into(), serde_json::to_vec_pretty(review).expect("a review serialises")),
    ];
    let files: Vec<(String, PathBuf)> = events
        .iter()
        .filter_map(|e| {
            let decoded = e.decode().ok()?;
            let (file, _, _) = recording_file(&decoded)?;
            Some((format!("recordings/{file}"), recording_path(recordings, file)?))
        })
        .collect();
    let mut packed: Vec<PackedFile> = documents
        .iter()
        .map(|(path, bytes)| PackedFile { path: path.clone(), bytes: bytes.len() as u64, sha256: sha256_hex(bytes) })
        .collect();
    let found = tokio::task::spawn_blocking(move || hash_recordings(files)).await.expect("hashing does not panic")?;
    packed.extend(found.iter().map(|(file, _)| file.clone()));
    let manifest = Manifest {
        format: FORMAT.into(),
        tenant: tenant.to_string(),
        session_id: session.to_string(),
        created_at: chrono::Utc::now(),
        public_key: hex::encode(signer.verifying_key().to_bytes()),
        files: packed,
    };
    let manifest_bytes = serde_json::to_vec_pretty(&manifest).expect("a manifest serialises");
    let signature = hex::encode(signer.sign_package(&manifest_bytes)).into_bytes();
    let mtime = manifest.created_at.timestamp().max(0) as u64;
    let first = [("manifest.json".to_owned(), manifest_bytes), ("manifest.sig".to_owned(), signature)];
    let small: Vec<(String, Vec<u8>)> = first.into_iter().chain(documents).collect();
    tokio::task::spawn_blocking(move || write_tar(out, mtime, small, found)).await.expect("writing does not panic")
}

/// Each recording file that is there, with its size and hash, read through
/// once; the ones the disk has lost are left out.
fn hash_recordings(files: Vec<(String, PathBuf)>) -> Result<Vec<(PackedFile, PathBuf)>, PackageError> {
    let mut found = Vec::new();
    for (name, path) in files {
        match witness_engine::chain::sha256_file(&path) {
            Ok((bytes, sha256)) => found.push((PackedFile { path: name, bytes, sha256 }, path)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(PackageError::Io { path: path.display().to_string(), source }),
        }
    }
    Ok(found)
}

/// The tar: the small files from memory, in order, then the recordings as
/// they are read from disk.
fn write_tar<W: std::io::Write>(
    out: W,
    mtime: u64,
    small: Vec<(String, Vec<u8>)>,
    recordings: Vec<(PackedFile, PathBuf)>,
) -> Result<W, PackageError> {
    let mut tar = tar::Builder::new(out);
    let mut add = |path: &str, size: u64, data: &mut dyn Read| {
        let mut header = tar::Header::new_gnu();
        header.set_size(size);
        header.set_mode(0o644);
        header.set_mtime(mtime);
        header.set_cksum();
        tar.append_data(&mut header, path, data).map_err(|source| PackageError::Io { path: path.into(), source })
    };
    for (path, bytes) in &small {
        add(path, bytes.len() as u64, &mut bytes.as_slice())?;
    }
    for (file, path) in recordings {
        let io = |source| PackageError::Io { path: path.display().to_string(), source };
        let opened = std::fs::File::open(&path).map_err(io)?;
        add(&file.path, file.bytes, &mut opened.take(file.bytes))?;
    }
    tar.into_inner().map_err(|source| PackageError::Io { path: "package".into(), source })
}

/// What `verify --package` found.
#[derive(Debug, Default)]
pub struct PackageReport {
    pub session_id: String,
    pub files: usize,
    pub events: usize,
    pub recordings: usize,
    pub problems: Vec<String>,
}

impl PackageReport {
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Checks a package (tar bytes from `reader`) against `key`, as described
/// in the module docs. An unreadable archive is an error; everything else
/// found wrong is a problem in the report.
pub fn verify_package(reader: impl Read, key: &VerifyingKey) -> Result<PackageReport, PackageError> {
    let mut entries: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut archive = tar::Archive::new(reader);
    for entry in archive.entries().map_err(|e| PackageError::Unreadable(e.to_string()))? {
        let mut entry = entry.map_err(|e| PackageError::Unreadable(e.to_string()))?;
        let path = entry.path().map_err(|e| PackageError::Unreadable(e.to_string()))?.display().to_string();
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes).map_err(|e| PackageError::Unreadable(e.to_string()))?;
        entries.insert(path, bytes);
    }
    let mut report = PackageReport::default();
    let manifest_bytes =
        entries.remove("manifest.json").ok_or_else(|| PackageError::Unreadable("no manifest.json".into()))?;
    let signature = entries.remove("manifest.sig").ok_or_else(|| PackageError::Unreadable("no manifest.sig".into()))?;
    let signed = hex::decode(String::from_utf8_lossy(&signature).trim())
        .ok()
        .and_then(|s| <[u8; 64]>::try_from(s).ok())
        .is_some_and(|s| key.verify(&package_message(&manifest_bytes), &Signature::from_bytes(&s)).is_ok());
    if !signed {
        report.problems.push("manifest.json: the signature does not verify with this public key".into());
    }
    let manifest: Manifest =
        serde_json::from_slice(&manifest_bytes).map_err(|e| PackageError::Unreadable(format!("manifest.json: {e}")))?;
    if manifest.format != FORMAT {
        report.problems.push(format!("manifest.json: format {:?}, expected {FORMAT:?}", manifest.format));
    }
    report.session_id = manifest.session_id.clone();
    for f in &manifest.files {
        match entries.get(&f.path) {
            None => report.problems.push(format!("{}: listed but missing", f.path)),
            Some(bytes) if bytes.len() as u64 != f.bytes || sha256_hex(bytes) != f.sha256 => {
                report.problems.push(format!("{}: altered (its size or SHA-256 is not the listed one)", f.path))
            }
            Some(_) => report.files += 1,
        }
    }
    for path in entries.keys().filter(|p| !manifest.files.iter().any(|f| &f.path == *p)) {
        report.problems.push(format!("{path}: in the package but not in the manifest"));
    }
    let Some(timeline) = entries.get("timeline.json") else {
        report.problems.push("timeline.json: missing".into());
        return Ok(report);
    };
    let events: Vec<RecordedEvent> = match serde_json::from_slice(timeline) {
        Ok(events) => events,
        Err(e) => {
            report.problems.push(format!("timeline.json: not a list of events: {e}"));
            return Ok(report);
        }
    };
    match entries.get("conversation.json").map(|c| serde_json::from_slice::<Vec<RecordedEvent>>(c)) {
        None => report.problems.push("conversation.json: missing".into()),
        Some(Err(e)) => report.problems.push(format!("conversation.json: not a list of events: {e}")),
        Some(Ok(readable)) => {
            if let Some(problem) = same_but_personal(&events, &readable) {
                report.problems.push(format!("conversation.json: {problem}"));
            }
        }
    }
    for e in &events {
        report.events += 1;
        if witness_engine::chain::event_hash(e) != e.hash {
            report.problems.push(format!("timeline.json: event at position {} does not hash to its hash", e.position));
        }
        if e.stream_id.to_string() != format!("session-{}", manifest.session_id) {
            report.problems.push(format!("timeline.json: event at position {} is not the session's", e.position));
        }
        let Ok(decoded) = e.decode() else {
            report.problems.push(format!("timeline.json: event at position {} cannot be decoded", e.position));
            continue;
        };
        if let Some((file, _, sha256)) = recording_file(&decoded) {
            match entries.get(&format!("recordings/{file}")) {
                None => report.problems.push(format!("recordings/{file}: named by the log but not in the package")),
                Some(bytes) if sha256_hex(bytes) != sha256.as_str() => {
                    report.problems.push(format!("recordings/{file}: not the file the log recorded"))
                }
                Some(_) => report.recordings += 1,
            }
        }
    }
    Ok(report)
}

/// Why `readable` is not `stored` with its personal fields' values opened,
/// if it is not: the same envelopes, and payloads equal once every personal
/// field is masked.
fn same_but_personal(stored: &[RecordedEvent], readable: &[RecordedEvent]) -> Option<String> {
    if stored.len() != readable.len() {
        return Some(format!("{} events, the timeline has {}", readable.len(), stored.len()));
    }
    let masked = |e: &RecordedEvent| {
        let mut payload: serde_json::Value = serde_json::from_str(&e.payload).unwrap_or_default();
        witness_schemas::mask_personal(&mut payload);
        payload
    };
    stored.iter().zip(readable).find_map(|(s, r)| {
        let same = (s.position, s.event_id, s.hash, &s.event_type) == (r.position, r.event_id, r.hash, &r.event_type)
            && masked(s) == masked(r);
        (!same).then(|| format!("the event at position {} differs from the timeline's", s.position))
    })
}
