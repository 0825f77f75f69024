//! `witness backup` and `witness restore` (issue 29): the embedded store
//! and everything needed to use it elsewhere, in one tar file.
//!
//! ```text
//! witness.db                  the store, as of one moment (SQLite's VACUUM INTO, taken while serving)
//! keys/witness-signing.key    the checkpoint and review-package signing key
//! keys/witness-signing.pub    its public key (also keep a copy apart from the data)
//! keys/witness-token.key      the API token keys
//! recordings/…                every recording file the copied log names
//! uploads/…                   every uploaded file (content-addressed)
//! MANIFEST.json               every file above with its size and SHA-256, and the log's last position
//! ```
//!
//! The per-session keys that crypto-shredding erases live in the database,
//! so they travel with it. A backup is written to `FILE.partial` and
//! renamed when complete; a restore unpacks into a directory of its own
//! beside the target, checks every file against the manifest, and only then
//! moves the files into place: a broken or altered backup writes nothing.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use witness_engine::EventStore;

/// Where the files that go with the store are.
#[derive(Debug, Clone)]
pub struct Sources {
    pub key_file: PathBuf,
    pub token_key_file: PathBuf,
    pub recordings_dir: PathBuf,
    pub uploads_dir: PathBuf,
}

/// The manifest's entry for one file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub bytes: u64,
    pub sha256: String,
}

/// `MANIFEST.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    pub created_at: String,
    /// The last event's position in the copied store.
    pub last_position: u64,
    pub files: BTreeMap<String, Entry>,
}

const FORMAT: &str = "witness-backup/1";
const MANIFEST: &str = "MANIFEST.json";
const DATABASE: &str = "witness.db";

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("{0}: {1}")]
    Io(PathBuf, std::io::Error),
    #[error(transparent)]
    Store(#[from] witness_engine::StoreError),
    #[error("{0} already exists: a backup never overwrites")]
    Exists(PathBuf),
    #[error("{0} is missing: a backup needs it ({1})")]
    Missing(PathBuf, &'static str),
    #[error("not a Witness backup: {0}")]
    NotABackup(String),
    #[error("the backup is damaged: {0}")]
    Damaged(String),
    #[error("{0} already holds a Witness store or keys ({1}): restore into an empty directory")]
    NotEmpty(PathBuf, String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> BackupError + '_ {
    move |e| BackupError::Io(path.to_owned(), e)
}

/// What a backup holds.
#[derive(Debug, Clone)]
pub struct Report {
    pub last_position: u64,
    pub files: usize,
    pub bytes: u64,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} files ({} bytes), the log up to position {}", self.files, self.bytes, self.last_position)
    }
}

impl Report {
    fn of(manifest: &Manifest) -> Self {
        Report {
            last_position: manifest.last_position,
            files: manifest.files.len(),
            bytes: manifest.files.values().map(|e| e.bytes).sum(),
        }
    }
}

/// Every regular file under `dir`, as paths relative to it, sorted.
fn files_under(dir: &Path) -> Result<Vec<PathBuf>, BackupError> {
    let mut found = Vec::new();
    let mut pending = vec![PathBuf::new()];
    while let Some(rel) = pending.pop() {
        let here = dir.join(&rel);
        let entries = match std::fs::read_dir(&here) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && rel.as_os_str().is_empty() => return Ok(found),
            Err(e) => return Err(BackupError::Io(here, e)),
        };
        for entry in entries {
            let entry = entry.map_err(io(&here))?;
            let kind = entry.file_type().map_err(io(&here))?;
            let path = rel.join(entry.file_name());
            if kind.is_dir() {
                pending.push(path);
            } else if kind.is_file() {
                found.push(path);
            }
        }
    }
    found.sort();
    Ok(found)
}

/// Appends `path` to `tar` as `name`, hashing it on the way.
fn add_file<W: Write>(tar: &mut tar::Builder<W>, path: &Path, name: &str) -> Result<Entry, BackupError> {
    let mut file = std::fs::File::open(path).map_err(io(path))?;
    let bytes = file.metadata().map_err(io(path))?.len();
    let mut header = tar::Header::new_gnu();
    header.set_size(bytes);
    header.set_mode(if name.starts_with("keys/") && !name.ends_with(".pub") { 0o600 } else { 0o644 });
    header.set_mtime(0);
    // As long as it was when opened: a segment still being recorded grows
    // meanwhile (the copied log does not name it yet).
    let mut hashing = HashingReader { inner: (&mut file).take(bytes), hash: Sha256::new(), read: 0 };
    tar.append_data(&mut header, name, &mut hashing).map_err(io(path))?;
    if hashing.read != bytes {
        return Err(BackupError::Io(
            path.to_owned(),
            std::io::Error::other(format!("shrank while copied: {bytes} bytes became {}", hashing.read)),
        ));
    }
    Ok(Entry { bytes, sha256: hex::encode(hashing.hash.finalize()) })
}

struct HashingReader<R> {
    inner: R,
    hash: Sha256,
    read: u64,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        self.read += n as u64;
        Ok(n)
    }
}

/// Backs up `store` (the embedded one) with the files in `sources` to
/// `out` (a new file); `progress` gets each file's name as it is added.
pub async fn backup(
    store: &EventStore,
    sources: &Sources,
    out: &Path,
    mut progress: impl FnMut(&str),
) -> Result<Report, BackupError> {
    if out.exists() {
        return Err(BackupError::Exists(out.to_owned()));
    }
    for (path, what) in [(&sources.key_file, "the signing key"), (&sources.token_key_file, "the token key")] {
        if !path.is_file() {
            return Err(BackupError::Missing(path.clone(), what));
        }
    }
    let public = witness_engine::checkpoint::public_key_path(&sources.key_file);
    // The copy of the database first: the files it names exist by then
    // (a recording's file is closed before its event is written).
    let work = work_dir(out.parent())?;
    let copy = work.path().join(DATABASE);
    progress(DATABASE);
    let last_position = store.backup_to(&copy).await?;

    let partial = out.with_extension("partial");
    let result = (|| {
        let file = std::fs::File::create(&partial).map_err(io(&partial))?;
        let mut tar = tar::Builder::new(std::io::BufWriter::new(file));
        let mut files = BTreeMap::new();
        files.insert(DATABASE.to_owned(), add_file(&mut tar, &copy, DATABASE)?);
        for (path, name) in [
            (&sources.key_file, "keys/witness-signing.key"),
            (&public, "keys/witness-signing.pub"),
            (&sources.token_key_file, "keys/witness-token.key"),
        ] {
            if path.is_file() {
                progress(name);
                files.insert(name.to_owned(), add_file(&mut tar, path, name)?);
            }
        }
        for (dir, prefix) in [(&sources.recordings_dir, "recordings"), (&sources.uploads_dir, "uploads")] {
            for rel in files_under(dir)? {
                let name = format!("{prefix}/{}", rel.to_string_lossy());
                progress(&name);
                files.insert(name.clone(), add_file(&mut tar, &dir.join(&rel), &name)?);
            }
        }
        let manifest =
            Manifest { format: FORMAT.into(), created_at: chrono::Utc::now().to_rfc3339(), last_position, files };
        let text = serde_json::to_vec_pretty(&manifest).expect("a manifest serializes");
        let mut header = tar::Header::new_gnu();
        header.set_size(text.len() as u64);
        header.set_mode(0o644);
        tar.append_data(&mut header, MANIFEST, text.as_slice()).map_err(io(&partial))?;
        let mut writer = tar.into_inner().map_err(io(&partial))?;
        writer.flush().map_err(io(&partial))?;
        writer
            .into_inner()
            .map_err(|e| BackupError::Io(partial.clone(), e.into_error()))?
            .sync_all()
            .map_err(io(&partial))?;
        std::fs::rename(&partial, out).map_err(io(out))?;
        Ok(Report::of(&manifest))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&partial);
    }
    result
}

/// A fresh working directory in `parent` (the same file system as the
/// result, so that files are renamed into place), removed when dropped.
fn work_dir(parent: Option<&Path>) -> Result<tempfile::TempDir, BackupError> {
    let parent = parent.filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    tempfile::Builder::new().prefix(".witness-").tempdir_in(parent).map_err(io(parent))
}

/// Where each backed-up name goes under the data directory.
fn target(name: &str) -> Option<PathBuf> {
    let path = Path::new(name);
    if !path.components().all(|c| matches!(c, Component::Normal(_))) {
        return None;
    }
    Some(match name {
        DATABASE => PathBuf::from(DATABASE),
        "keys/witness-signing.key" => PathBuf::from("witness-signing.key"),
        "keys/witness-signing.pub" => PathBuf::from("witness-signing.pub"),
        "keys/witness-token.key" => PathBuf::from("witness-token.key"),
        _ if name.starts_with("recordings/") || name.starts_with("uploads/") => path.to_owned(),
        _ => return None,
    })
}

/// Restores `file` into `data_dir` (created if missing; must hold no store,
/// keys, recordings or uploads yet): `witness.db`, the keys beside it,
/// `recordings/`, `uploads/` — the layout `witness serve` uses by default.
/// Every file is checked against the manifest before any is put in place.
pub fn restore(file: &Path, data_dir: &Path, mut progress: impl FnMut(&str)) -> Result<Report, BackupError> {
    let taken: Vec<String> = [DATABASE, "witness-signing.key", "witness-token.key", "recordings", "uploads"]
        .iter()
        .filter(|n| data_dir.join(n).exists())
        .map(|n| n.to_string())
        .collect();
    if !taken.is_empty() {
        return Err(BackupError::NotEmpty(data_dir.to_owned(), taken.join(", ")));
    }
    let archive = std::fs::File::open(file).map_err(io(file))?;
    std::fs::create_dir_all(data_dir).map_err(io(data_dir))?;
    let work = work_dir(Some(data_dir))?;
    let work = work.path();
    let mut unpacked: BTreeMap<String, Entry> = BTreeMap::new();
    let mut manifest: Option<Manifest> = None;
    let mut tar = tar::Archive::new(std::io::BufReader::new(archive));
    for entry in tar.entries().map_err(|e| BackupError::NotABackup(e.to_string()))? {
        let mut entry = entry.map_err(|e| BackupError::Damaged(e.to_string()))?;
        let name = entry.path().map_err(|e| BackupError::Damaged(e.to_string()))?.to_string_lossy().into_owned();
        if name == MANIFEST {
            let mut text = Vec::new();
            entry.read_to_end(&mut text).map_err(|e| BackupError::Damaged(e.to_string()))?;
            let read: Manifest = serde_json::from_slice(&text)
                .map_err(|e| BackupError::NotABackup(format!("its manifest does not read: {e}")))?;
            if read.format != FORMAT {
                return Err(BackupError::NotABackup(format!("format {:?}, not {FORMAT}", read.format)));
            }
            manifest = Some(read);
            continue;
        }
        let Some(to) = target(&name) else {
            return Err(BackupError::NotABackup(format!("it holds {name:?}, which no backup holds")));
        };
        progress(&name);
        let path = work.join(&to);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io(parent))?;
        }
        let mut out = std::fs::File::create(&path).map_err(io(&path))?;
        let mut hashing = HashingReader { inner: &mut entry, hash: Sha256::new(), read: 0 };
        std::io::copy(&mut hashing, &mut out).map_err(|e| BackupError::Damaged(format!("{name}: {e}")))?;
        out.sync_all().map_err(io(&path))?;
        #[cfg(unix)]
        if name.starts_with("keys/") && !name.ends_with(".pub") {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).map_err(io(&path))?;
        }
        unpacked.insert(name, Entry { bytes: hashing.read, sha256: hex::encode(hashing.hash.finalize()) });
    }
    let manifest = manifest.ok_or_else(|| BackupError::NotABackup("no MANIFEST.json".into()))?;
    for (name, wanted) in &manifest.files {
        match unpacked.get(name) {
            None => return Err(BackupError::Damaged(format!("{name} is in the manifest but not in the file"))),
            Some(got) if got != wanted => {
                return Err(BackupError::Damaged(format!(
                    "{name}: {} bytes with SHA-256 {}, the manifest says {} bytes with {}",
                    got.bytes, got.sha256, wanted.bytes, wanted.sha256
                )))
            }
            Some(_) => {}
        }
    }
    if let Some(extra) = unpacked.keys().find(|n| !manifest.files.contains_key(*n)) {
        return Err(BackupError::Damaged(format!("{extra} is not in the manifest")));
    }
    if !manifest.files.contains_key(DATABASE) {
        return Err(BackupError::NotABackup("it holds no witness.db".into()));
    }
    // Everything checks: into place.
    for entry in std::fs::read_dir(work).map_err(io(work))? {
        let entry = entry.map_err(io(work))?;
        let to = data_dir.join(entry.file_name());
        std::fs::rename(entry.path(), &to).map_err(io(&to))?;
    }
    Ok(Report::of(&manifest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_backups_own_names_are_restored_and_never_outside_the_directory() {
        assert_eq!(target("witness.db"), Some(PathBuf::from("witness.db")));
        assert_eq!(target("keys/witness-token.key"), Some(PathBuf::from("witness-token.key")));
        assert_eq!(target("recordings/r1/t1/00000.webm"), Some(PathBuf::from("recordings/r1/t1/00000.webm")));
        for bad in ["../etc/passwd", "/etc/passwd", "recordings/../../x", "other.txt", "keys/ssh.key"] {
            assert_eq!(target(bad), None, "{bad}");
        }
    }
}
