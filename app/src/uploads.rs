//! Files sent in chat: content-addressed (SHA-256) on local disk, one
//! folder per tenant, `ROOT/<tenant>/<aa>/<sha256>`, with a 256-pixel PNG
//! thumbnail beside each image (`<sha256>.thumb.png`).
//!
//! A file's type is sniffed from its first bytes, never taken from the
//! name or the `Content-Type` header, and must be on [`ALLOWED`]. Messages
//! reference files by hash; the message route fills the type and size from
//! the stored file. A customer uploads only into a session of their own
//! that has not ended (`?session=ID`), within a per-session quota, and
//! downloads only files sent in it as attachments; staff download their
//! tenant's files.
//!
//! Images are measured before they are decoded: one declaring more than
//! [`MAX_IMAGE_PIXELS`] is refused (a small file can declare gigabytes of
//! pixels), decoding is bounded by [`DECODE_MEMORY`], and at most
//! [`THUMBNAILERS`] thumbnails are made at a time.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use sha2::{Digest, Sha256};
use witness_domain::refusal;
use witness_schemas::{SessionId, Sha256Hex, TenantId};

use crate::{Error, Kind};

/// The default size limit of one file.
pub const DEFAULT_LIMIT: usize = 20 * 1024 * 1024;
/// What may be uploaded, by sniffed type.
pub const ALLOWED: &[&str] = &["image/png", "image/jpeg", "image/gif", "image/webp", "application/pdf", "text/plain"];
const THUMB: u32 = 256;
/// The most pixels an uploaded image may have (a 48-megapixel phone photo
/// is 8000×6000).
pub const MAX_IMAGE_PIXELS: u64 = 50_000_000;
/// The most memory decoding one image for its thumbnail may take; an image
/// that needs more is stored without a thumbnail.
pub const DECODE_MEMORY: u64 = 256 << 20;
/// Thumbnails made at once; further uploads of images wait their turn.
pub const THUMBNAILERS: usize = 2;
/// The most files, and bytes, a customer may upload into one session,
/// unless [`UploadStore::with_session_quota`] says otherwise.
pub const SESSION_QUOTA: (u32, u64) = (50, 200 << 20);

/// Where files live, and how big one may be.
#[derive(Debug, Clone)]
pub struct UploadStore {
    root: PathBuf,
    pub limit: usize,
    /// Files and bytes per session for a customer.
    quota: (u32, u64),
    thumbnailers: std::sync::Arc<tokio::sync::Semaphore>,
    /// What customers uploaded per session, since this process started.
    sessions: std::sync::Arc<std::sync::Mutex<std::collections::HashMap<SessionId, SessionUploads>>>,
}

/// A session's uploads by its customer.
#[derive(Debug, Default)]
struct SessionUploads {
    files: u32,
    bytes: u64,
    /// What the customer may attach to a message: only what they uploaded.
    hashes: std::collections::HashSet<String>,
}

/// The type of `bytes` from their content, if Witness recognises it.
pub fn sniff(bytes: &[u8]) -> Option<&'static str> {
    let starts = |magic: &[u8]| bytes.starts_with(magic);
    if starts(b"\x89PNG\r\n\x1a\n") {
        Some("image/png")
    } else if starts(b"\xFF\xD8\xFF") {
        Some("image/jpeg")
    } else if starts(b"GIF87a") || starts(b"GIF89a") {
        Some("image/gif")
    } else if bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
        Some("image/webp")
    } else if starts(b"%PDF-") {
        Some("application/pdf")
    } else if !bytes.is_empty() && is_text(bytes) {
        Some("text/plain")
    } else {
        None
    }
}

/// UTF-8 without control characters but tab and line breaks. A character
/// cut off at the end is fine: [`UploadStore::kind`] reads only the head.
fn is_text(bytes: &[u8]) -> bool {
    let valid = match std::str::from_utf8(bytes) {
        Ok(text) => text,
        Err(e) if e.error_len().is_none() => std::str::from_utf8(&bytes[..e.valid_up_to()]).expect("valid prefix"),
        Err(_) => return false,
    };
    !valid.chars().any(|c| c.is_control() && !"\t\r\n".contains(c))
}

/// How much of a stored file is read to tell its type again.
const HEAD: u64 = 8 * 1024;

impl UploadStore {
    pub fn new(root: impl Into<PathBuf>, limit: usize) -> Self {
        Self {
            root: root.into(),
            limit,
            quota: SESSION_QUOTA,
            thumbnailers: std::sync::Arc::new(tokio::sync::Semaphore::new(THUMBNAILERS)),
            sessions: Default::default(),
        }
    }

    /// The same store with another per-session quota for customers.
    pub fn with_session_quota(self, files: u32, bytes: u64) -> Self {
        Self { quota: (files, bytes), ..self }
    }

    /// Stores `bytes` uploaded by `session`'s customer, within the session's
    /// quota (429 past it, nothing counted or stored), and remembers it as
    /// theirs to attach.
    pub async fn put_into_session(
        &self,
        tenant: &TenantId,
        session: SessionId,
        bytes: Bytes,
    ) -> Result<(Sha256Hex, &'static str), Error> {
        let size = bytes.len();
        self.charge(session, size)?;
        let stored = self.put(tenant, bytes).await;
        let mut sessions = self.sessions.lock().expect("uploads by session");
        let used = sessions.entry(session).or_default();
        match &stored {
            Ok((sha256, _)) => _ = used.hashes.insert(sha256.as_str().to_owned()),
            Err(_) => {
                used.files = used.files.saturating_sub(1);
                used.bytes = used.bytes.saturating_sub(size as u64);
            }
        }
        stored
    }

    /// Counts `bytes` more against `session`'s quota, or refuses (429)
    /// without counting them.
    fn charge(&self, session: SessionId, bytes: usize) -> Result<(), Error> {
        let mut sessions = self.sessions.lock().expect("uploads by session");
        let used = sessions.entry(session).or_default();
        let (files, total) = self.quota;
        if used.files >= files || used.bytes + bytes as u64 > total {
            let mib = total / (1024 * 1024);
            return Err(Error::too_many(
                refusal!(
                    "upload_quota",
                    "a session may send at most {files} files and {mib} MiB in all",
                    files = files,
                    mib = mib
                ),
                3600,
            ));
        }
        used.files += 1;
        used.bytes += bytes as u64;
        Ok(())
    }

    /// Whether `hash` was uploaded into `session` by its customer.
    pub fn uploaded_into(&self, session: SessionId, hash: &str) -> bool {
        let sessions = self.sessions.lock().expect("uploads by session");
        sessions.get(&session).is_some_and(|s| s.hashes.contains(hash))
    }

    fn path(&self, tenant: &TenantId, hash: &str) -> PathBuf {
        self.root.join(tenant.as_str()).join(&hash[..2]).join(hash)
    }

    /// Stores `bytes` for `tenant`; the same content twice is one file.
    pub async fn put(&self, tenant: &TenantId, bytes: Bytes) -> Result<(Sha256Hex, &'static str), Error> {
        if bytes.len() > self.limit {
            return Err(too_large(self.limit));
        }
        let media_type = sniff(&bytes).filter(|t| ALLOWED.contains(t)).ok_or_else(|| {
            Error::new(
                Kind::UnsupportedType,
                refusal!(
                    "upload_kind",
                    "this kind of file is not accepted; send one of {kinds}",
                    kinds = ALLOWED.join(", ")
                ),
            )
        })?;
        if media_type.starts_with("image/") {
            check_dimensions(&bytes)?;
        }
        let hash = hex::encode(Sha256::digest(&bytes));
        let path = self.path(tenant, &hash);
        // Only images take a turn at the thumbnailers.
        let _turn = match media_type.starts_with("image/") {
            true => Some(self.thumbnailers.acquire().await.expect("never closed")),
            false => None,
        };
        tokio::task::spawn_blocking(move || write_once(&path, &bytes, media_type))
            .await
            .expect("upload task")
            .map_err(|e| {
                tracing::error!(error = %e, "writing an upload");
                match e.kind() {
                    std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded => Error::new(
                        Kind::InsufficientStorage,
                        refusal!(
                            "storage_full",
                            "the server's storage is full: the file was not stored (the conversation goes on)"
                        ),
                    ),
                    _ => Error::new(
                        Kind::Unavailable,
                        refusal!("uploads_unavailable", "the upload store is unavailable"),
                    ),
                }
            })?;
        Ok((Sha256Hex::try_from(hash).expect("a SHA-256 in hex"), media_type))
    }

    /// Removes `tenant`'s file `hash` and its thumbnail; `Ok(false)` if it
    /// was not there.
    pub fn remove(&self, tenant: &TenantId, hash: &str) -> std::io::Result<bool> {
        let path = self.path(tenant, hash);
        match std::fs::remove_file(thumb_path(&path)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Removes the files of every tenant that `referenced` does not name,
    /// last uploaded before `before` (with their thumbnails, and temporary
    /// files left by a crash); with `dry_run`, only counts them. Returns how
    /// many files were (or would be) removed.
    pub fn remove_orphans(
        &self,
        referenced: &std::collections::BTreeMap<TenantId, std::collections::BTreeSet<String>>,
        before: std::time::SystemTime,
        dry_run: bool,
    ) -> std::io::Result<usize> {
        let Ok(tenants) = std::fs::read_dir(&self.root) else { return Ok(0) };
        let mut removed = 0;
        for tenant_dir in tenants {
            let tenant_dir = tenant_dir?.path();
            let Some(tenant) = tenant_dir.file_name().and_then(|n| n.to_str()?.parse::<TenantId>().ok()) else {
                continue;
            };
            let named = referenced.get(&tenant);
            for shard in std::fs::read_dir(&tenant_dir)? {
                let shard = shard?.path();
                if !shard.is_dir() {
                    continue;
                }
                for file in std::fs::read_dir(&shard)? {
                    let file = file?;
                    let name = file.file_name().to_string_lossy().into_owned();
                    // The content itself, or a temporary copy; thumbnails go with their file.
                    let hash = name.split('.').next().unwrap_or_default();
                    let temporary = name.contains(".tmp");
                    if name.ends_with(".thumb.png") || (!temporary && name != hash) {
                        continue;
                    }
                    if !temporary && named.is_some_and(|n| n.contains(hash)) {
                        continue;
                    }
                    if file.metadata()?.modified()? >= before {
                        continue;
                    }
                    if !dry_run {
                        if temporary {
                            std::fs::remove_file(file.path())?;
                        } else {
                            self.remove(&tenant, hash)?;
                        }
                    }
                    removed += 1;
                }
            }
        }
        Ok(removed)
    }

    /// `tenant`'s file `hash`, if it has it.
    pub async fn read(&self, tenant: &TenantId, hash: &Sha256Hex) -> Option<Vec<u8>> {
        tokio::fs::read(self.path(tenant, hash.as_str())).await.ok()
    }

    /// `tenant`'s file `hash` (or its thumbnail) to send, with the type
    /// sniffed from it.
    pub async fn download(&self, tenant: &TenantId, hash: &Sha256Hex, thumb: bool) -> Option<(Vec<u8>, &'static str)> {
        let path = self.path(tenant, hash.as_str());
        let path = if thumb { thumb_path(&path) } else { path };
        let bytes = tokio::fs::read(&path).await.ok()?;
        let media_type = sniff(&bytes).unwrap_or("application/octet-stream");
        Some((bytes, media_type))
    }

    /// Whether `tenant` has the file `hash`.
    pub fn has(&self, tenant: &TenantId, hash: &str) -> bool {
        self.path(tenant, hash).exists()
    }

    /// The stored file's size and type, if `tenant` has it.
    pub async fn kind(&self, tenant: &TenantId, hash: &Sha256Hex) -> Option<(u64, &'static str)> {
        use tokio::io::AsyncReadExt;
        let file = tokio::fs::File::open(self.path(tenant, hash.as_str())).await.ok()?;
        let size = file.metadata().await.ok()?.len();
        let mut head = Vec::new();
        file.take(HEAD).read_to_end(&mut head).await.ok()?;
        Some((size, sniff(&head).unwrap_or("application/octet-stream")))
    }
}

/// Refuses an image whose header declares more than [`MAX_IMAGE_PIXELS`],
/// before anything is decoded; one whose header cannot be read passes (it
/// is stored without a thumbnail).
pub fn check_dimensions(bytes: &[u8]) -> Result<(), Error> {
    let reader = image::ImageReader::new(std::io::Cursor::new(bytes)).with_guessed_format();
    let Ok((w, h)) = reader.map_err(image::ImageError::from).and_then(|r| r.into_dimensions()) else {
        return Ok(());
    };
    if u64::from(w) * u64::from(h) > MAX_IMAGE_PIXELS {
        let most = MAX_IMAGE_PIXELS / 1_000_000;
        return Err(Error::new(
            Kind::TooLarge,
            refusal!(
                "image_too_large",
                "the image is {width}×{height} pixels; at most {megapixels} megapixels are accepted",
                width = w,
                height = h,
                megapixels = most
            ),
        ));
    }
    Ok(())
}

/// A body over the store's limit of `limit` bytes.
pub fn too_large(limit: usize) -> Error {
    Error::new(
        Kind::TooLarge,
        refusal!("file_too_large", "a file may be at most {mib} MiB", mib = limit / (1024 * 1024)),
    )
}

/// Writes the file (and an image's thumbnail) through a temporary name, so
/// that a reader never sees half a file. Content already stored is only
/// marked as uploaded now, so that the orphan sweep gives it its time again.
fn write_once(path: &Path, bytes: &[u8], media_type: &str) -> std::io::Result<()> {
    if path.exists() {
        return std::fs::File::options().write(true).open(path)?.set_modified(std::time::SystemTime::now());
    }
    std::fs::create_dir_all(path.parent().expect("a parent"))?;
    if media_type.starts_with("image/") {
        // An image the decoder cannot read, or only with more memory than
        // allowed, still uploads; it has no thumbnail.
        let mut reader = image::ImageReader::new(std::io::Cursor::new(bytes)).with_guessed_format()?;
        let mut limits = image::Limits::default();
        limits.max_alloc = Some(DECODE_MEMORY);
        reader.limits(limits);
        if let Ok(image) = reader.decode() {
            let thumb = image.thumbnail(THUMB, THUMB);
            let mut png = std::io::Cursor::new(Vec::new());
            if thumb.write_to(&mut png, image::ImageFormat::Png).is_ok() {
                atomic_write(&thumb_path(path), png.get_ref())?;
            }
        }
    }
    atomic_write(path, bytes).inspect_err(|_| {
        // A thumbnail without its file would be an orphan no sweep finds.
        let _ = std::fs::remove_file(thumb_path(path));
    })
}

fn thumb_path(path: &Path) -> PathBuf {
    path.with_extension("thumb.png")
}

/// Writes `bytes` to a temporary name, flushes them to the disk, then
/// renames: a crash leaves the whole file or none, and a failed write (a
/// full disk) leaves nothing behind.
fn atomic_write(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let written = std::fs::File::create(&tmp).and_then(|mut file| {
        file.write_all(bytes)?;
        file.sync_all()
    });
    match written.and_then(|()| std::fs::rename(&tmp, path)) {
        Ok(()) => Ok(()),
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_are_sniffed_from_content_not_names() {
        assert_eq!(sniff(b"\x89PNG\r\n\x1a\n...."), Some("image/png"));
        assert_eq!(sniff(b"\xFF\xD8\xFF\xE0"), Some("image/jpeg"));
        assert_eq!(sniff(b"%PDF-1.7"), Some("application/pdf"));
        assert_eq!(sniff("账单 bill\n".as_bytes()), Some("text/plain"));
        assert_eq!(sniff(b"MZ\x90\x00\x03"), None, "a Windows executable");
        assert_eq!(sniff(b"\x7fELF\x02"), None);
        assert_eq!(sniff(b""), None);
        let cut = "账单".as_bytes();
        assert_eq!(sniff(&cut[..4]), Some("text/plain"), "a character cut at the end of the head");
        assert_eq!(sniff(b"ok\xFF\xFEok"), None);
    }
}
