//! Files sent in chat: content-addressed (SHA-256) on local disk, one
//! folder per tenant, `ROOT/<tenant>/<aa>/<sha256>`, with a 256-pixel PNG
//! thumbnail beside each image (`<sha256>.thumb.png`).
//!
//! A file's type is sniffed from its first bytes, never taken from the
//! name or the `Content-Type` header, and must be on [`ALLOWED`]. Messages
//! reference files by hash; the message route fills the type and size from
//! the stored file. A customer downloads only files referenced in their own
//! session; staff download their tenant's files.

use std::path::{Path, PathBuf};

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path as UrlPath, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use witness_schemas::{Attachment, MessageContent, Role, Sha256Hex, TenantId};

use crate::auth::Caller;
use crate::{ApiError, AppState};

/// The default size limit of one file.
pub const DEFAULT_LIMIT: usize = 20 * 1024 * 1024;
/// What may be uploaded, by sniffed type.
pub const ALLOWED: &[&str] = &["image/png", "image/jpeg", "image/gif", "image/webp", "application/pdf", "text/plain"];
const THUMB: u32 = 256;

/// Where files live, and how big one may be.
#[derive(Debug, Clone)]
pub struct UploadStore {
    root: PathBuf,
    pub limit: usize,
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
        Self { root: root.into(), limit }
    }

    fn path(&self, tenant: &TenantId, hash: &str) -> PathBuf {
        self.root.join(tenant.as_str()).join(&hash[..2]).join(hash)
    }

    /// Stores `bytes` for `tenant`; the same content twice is one file.
    pub async fn put(&self, tenant: &TenantId, bytes: Bytes) -> Result<(Sha256Hex, &'static str), ApiError> {
        if bytes.len() > self.limit {
            return Err(too_large(self.limit));
        }
        let media_type = sniff(&bytes).filter(|t| ALLOWED.contains(t)).ok_or_else(|| {
            ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!("this kind of file is not accepted; send one of {}", ALLOWED.join(", ")),
            )
        })?;
        let hash = hex::encode(Sha256::digest(&bytes));
        let path = self.path(tenant, &hash);
        tokio::task::spawn_blocking(move || write_once(&path, &bytes, media_type))
            .await
            .expect("upload task")
            .map_err(|e| {
                tracing::error!(error = %e, "writing an upload");
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "the upload store is unavailable")
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

    /// `tenant`'s file `hash`, if it has it.
    pub async fn read(&self, tenant: &TenantId, hash: &Sha256Hex) -> Option<Vec<u8>> {
        tokio::fs::read(self.path(tenant, hash.as_str())).await.ok()
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

fn too_large(limit: usize) -> ApiError {
    ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, format!("a file may be at most {} MiB", limit / (1024 * 1024)))
}

/// Writes the file (and an image's thumbnail) through a temporary name, so
/// that a reader never sees half a file.
fn write_once(path: &Path, bytes: &[u8], media_type: &str) -> std::io::Result<()> {
    if path.exists() {
        return Ok(());
    }
    std::fs::create_dir_all(path.parent().expect("a parent"))?;
    if media_type.starts_with("image/") {
        // An image the decoder cannot read still uploads; it has no thumbnail.
        if let Ok(image) = image::load_from_memory(bytes) {
            let thumb = image.thumbnail(THUMB, THUMB);
            let mut png = std::io::Cursor::new(Vec::new());
            if thumb.write_to(&mut png, image::ImageFormat::Png).is_ok() {
                atomic_write(&thumb_path(path), png.get_ref())?;
            }
        }
    }
    atomic_write(path, bytes)
}

fn thumb_path(path: &Path) -> PathBuf {
    path.with_extension("thumb.png")
}

fn atomic_write(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(tmp, path)
}

/// The attachments of a message, completed from the store: the client
/// names the hash and the file name; size and type come from the file.
pub(crate) async fn complete(
    state: &AppState,
    tenant: &TenantId,
    content: &mut MessageContent,
) -> Result<(), ApiError> {
    let attachments: Vec<&mut Attachment> = match content {
        MessageContent::Image { attachment, .. } | MessageContent::File { attachment } => vec![attachment],
        MessageContent::RichText { attachments, .. } => attachments.iter_mut().collect(),
        MessageContent::Text { .. } => vec![],
    };
    for a in attachments {
        let (bytes, media_type) = state.uploads.kind(tenant, &a.sha256).await.ok_or_else(|| {
            let message = format!("no upload {}: upload the file first", a.sha256.as_str());
            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, message)
        })?;
        a.media_type = media_type.to_owned();
        a.bytes = bytes;
        if a.file_name.trim().is_empty() || a.file_name.chars().count() > 255 || a.file_name.contains(['/', '\\']) {
            return Err(ApiError::bad_request("`file_name`: 1 to 255 characters, no slashes"));
        }
    }
    Ok(())
}

pub(crate) fn router(limit: usize) -> Router<AppState> {
    Router::new()
        // The body limit is the store's plus a little, so that the store
        // answers an oversized file with its own clear 413.
        .route("/api/uploads", post(upload).layer(DefaultBodyLimit::max(limit + 1)))
        .route("/api/uploads/{sha256}", get(download))
}

async fn upload(
    State(state): State<AppState>,
    Caller(caller): Caller,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let body = body.map_err(|_| too_large(state.uploads.limit))?;
    let size = body.len();
    let (sha256, media_type) = state.uploads.put(&caller.t, body).await?;
    Ok((StatusCode::CREATED, Json(serde_json::json!({ "sha256": sha256, "media_type": media_type, "bytes": size }))))
}

#[derive(Deserialize)]
struct DownloadQuery {
    /// A customer names the session the file was sent in.
    session: Option<String>,
    #[serde(default)]
    thumb: bool,
}

async fn download(
    State(state): State<AppState>,
    Caller(caller): Caller,
    UrlPath(sha256): UrlPath<String>,
    query: Result<Query<DownloadQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let hash = Sha256Hex::try_from(sha256).map_err(|_| ApiError::not_found("upload"))?;
    if caller.r == Role::Customer {
        let id = q.session.ok_or_else(|| ApiError::not_found("upload"))?;
        let session = crate::sessions::load(&state, &caller, &id).await?;
        if !session.events(&state).await?.iter().any(|e| e.payload.contains(hash.as_str())) {
            return Err(ApiError::not_found("upload"));
        }
    }
    let path = state.uploads.path(&caller.t, hash.as_str());
    let path = if q.thumb { thumb_path(&path) } else { path };
    let bytes = tokio::fs::read(&path).await.map_err(|_| ApiError::not_found("upload"))?;
    let media_type = sniff(&bytes).unwrap_or("application/octet-stream");
    let mut headers = HeaderMap::new();
    headers.insert(header::CONTENT_TYPE, media_type.parse().expect("a media type"));
    // Never rendered inline as a page of this origin.
    headers.insert(header::CONTENT_DISPOSITION, "attachment".parse().expect("a header value"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, "nosniff".parse().expect("a header value"));
    headers.insert(header::CACHE_CONTROL, "private, max-age=31536000, immutable".parse().expect("a header value"));
    Ok((headers, bytes))
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
