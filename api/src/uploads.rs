//! Uploads over HTTP: a customer uploads into their session, staff and
//! customers download what they may, and a message's attachments are
//! completed from the store (`witness_app::uploads`, which keeps the files).

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path as UrlPath, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use witness_schemas::{MessageContent, Role, SessionId, Sha256Hex};

use crate::auth::Caller;
use crate::{ApiError, AppState};

/// The attachments of a message, completed from the store: the client
/// names the hash and the file name; size and type come from the file.
///
/// A customer attaches only files they uploaded into this session: any
/// other hash, whether the tenant has that file or not, gets the same 422.
pub(crate) async fn complete(
    state: &AppState,
    caller: &crate::auth::Claims,
    session: SessionId,
    content: &mut MessageContent,
) -> Result<(), ApiError> {
    for a in content.attachments_mut() {
        let missing = || {
            let refusal =
                refusal!("no_such_upload", "no upload {hash}: upload the file first", hash = a.sha256.as_str());
            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, refusal)
        };
        if caller.r == Role::Customer && !state.uploads.uploaded_into(session, a.sha256.as_str()) {
            return Err(missing());
        }
        let (bytes, media_type) = state.uploads.kind(&caller.t, &a.sha256).await.ok_or_else(missing)?;
        a.media_type = media_type.to_owned();
        a.bytes = bytes;
        a.file_name = crate::fields::file_name(&a.file_name)?;
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UploadQuery {
    /// A customer names the session the file is for.
    session: Option<String>,
}

async fn upload(
    State(state): State<AppState>,
    Caller(caller): Caller,
    query: Result<Query<UploadQuery>, axum::extract::rejection::QueryRejection>,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let Query(q) = query.map_err(|e| ApiError::malformed(e.body_text()))?;
    let body = body.map_err(|_| witness_app::uploads::too_large(state.uploads.limit))?;
    let size = body.len();
    let (sha256, media_type) = if caller.r == Role::Customer {
        let id = q.session.ok_or_else(|| {
            ApiError::bad_request(refusal!(
                "upload_needs_session",
                "a customer uploads into their session: add `?session=` and its id"
            ))
        })?;
        let session = witness_app::session::load(&state.store, &caller, &id).await?;
        use witness_domain::session::SessionStatus::{Closed, WrapUp};
        if matches!(session.state.status(), WrapUp | Closed) {
            return Err(ApiError::new(StatusCode::CONFLICT, refusal!("session_ended", "the session has ended")));
        }
        state.uploads.put_into_session(&caller.t, session.id, body).await?
    } else {
        state.uploads.put(&caller.t, body).await?
    };
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
    let Query(q) = query.map_err(|e| ApiError::malformed(e.body_text()))?;
    let hash = Sha256Hex::try_from(sha256).map_err(|_| ApiError::not_found(refusal!("no_upload", "no such upload")))?;
    if caller.r == Role::Customer {
        let id = q.session.ok_or_else(|| ApiError::not_found(refusal!("no_upload", "no such upload")))?;
        let session = witness_app::session::load(&state.store, &caller, &id).await?;
        if !sent_in(&session.events(&state.store).await?, &hash) {
            return Err(ApiError::not_found(refusal!("no_upload", "no such upload")));
        }
    }
    let (bytes, media_type) = state
        .uploads
        .download(&caller.t, &hash, q.thumb)
        .await
        .ok_or_else(|| ApiError::not_found(refusal!("no_upload", "no such upload")))?;
    let mut headers = HeaderMap::new();
    headers.insert(header::CONTENT_TYPE, media_type.parse().expect("a media type"));
    // Never rendered inline as a page of this origin.
    headers.insert(header::CONTENT_DISPOSITION, "attachment".parse().expect("a header value"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, "nosniff".parse().expect("a header value"));
    headers.insert(header::CACHE_CONTROL, "private, max-age=31536000, immutable".parse().expect("a header value"));
    Ok((headers, bytes))
}

/// Whether a message among `events` carries the file `hash` as an
/// attachment (not merely names it in its text).
fn sent_in(events: &[witness_schemas::RecordedEvent], hash: &Sha256Hex) -> bool {
    use witness_schemas::Event;
    events.iter().filter_map(|e| e.decode().ok()).any(|e| {
        let content = match &e {
            Event::CustomerMessage(m) => &m.content,
            Event::AgentMessage(m) => &m.content,
            Event::BotMessage(m) => &m.content,
            _ => return false,
        };
        content.attachments().iter().any(|a| a.sha256 == *hash)
    })
}
