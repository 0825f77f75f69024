//! A session's call recordings: the list, and playback or download of a
//! segment file with HTTP range requests. Staff who may see the session's
//! recordings — its agent, supervisors, compliance officers, admins — of its
//! tenant only; customers never. Every file request, whole or partial, is a
//! `RecordingAccessed` event in the session (its audit trail).

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use witness_engine::domain::session::SessionCommand;
use witness_schemas::{Event, RecordingAccessKind, RecordingId, Role};

use crate::auth::{Caller, Claims};
use crate::sessions::{load, run, Loaded};
use crate::{ApiError, AppState};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/sessions/{id}/recordings", get(list))
        .route("/api/sessions/{id}/recordings/{recording}/{track}/{segment}", get(file))
}

/// Loads the session if the caller may see its recordings.
async fn allowed(state: &AppState, caller: &Claims, id: &str) -> Result<Loaded, ApiError> {
    let s = load(state, caller, id).await?;
    match caller.r {
        Role::Supervisor | Role::Compliance | Role::Admin => Ok(s),
        Role::Agent if s.state.agent.is_some() && s.state.agent == caller.user_id().ok() => Ok(s),
        _ => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "only the session's agent and supervising staff hear its recordings",
        )),
    }
}

#[derive(Serialize)]
struct RecordingView {
    recording_id: RecordingId,
    reason: witness_schemas::RecordingReason,
    stopped: bool,
    segments: Vec<SegmentView>,
}

#[derive(Serialize)]
struct SegmentView {
    track_id: String,
    segment_index: u32,
    file: String,
    bytes: u64,
    duration_ms: u64,
    sha256: String,
    /// This segment's address under the API (add `?download=true` for an attachment).
    url: String,
}

async fn list(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> Result<Json<Vec<RecordingView>>, ApiError> {
    let s = allowed(&state, &caller, &id).await?;
    let decoded = crate::error::decode_stream(&s.events, "the session")?;
    let mut recordings: Vec<RecordingView> = Vec::new();
    for event in decoded {
        match event {
            Event::RecordingStarted(e) => recordings.push(RecordingView {
                recording_id: e.recording_id,
                reason: e.reason,
                stopped: false,
                segments: Vec::new(),
            }),
            Event::RecordingStopped(e) => {
                if let Some(r) = recordings.iter_mut().find(|r| r.recording_id == e.recording_id) {
                    r.stopped = true;
                }
            }
            Event::RecordingSegmentClosed(e) => {
                if let Some(r) = recordings.iter_mut().find(|r| r.recording_id == e.recording_id) {
                    r.segments.push(SegmentView {
                        url: format!("/api/sessions/{}/recordings/{}", s.id, e.file),
                        track_id: e.track_id,
                        segment_index: e.segment_index,
                        file: e.file,
                        bytes: e.bytes,
                        duration_ms: e.duration_ms,
                        sha256: e.sha256.as_str().to_owned(),
                    });
                }
            }
            _ => {}
        }
    }
    Ok(Json(recordings))
}

#[derive(Deserialize)]
struct FileQuery {
    #[serde(default)]
    download: bool,
}

async fn file(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path((id, recording, track, segment)): Path<(String, String, String, String)>,
    Query(q): Query<FileQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let s = allowed(&state, &caller, &id).await?;
    // Only a file the session's record names: the path never comes from
    // the caller alone.
    let wanted = format!("{recording}/{track}/{segment}");
    let decoded = crate::error::decode_stream(&s.events, "the session")?;
    let Some(closed) = decoded.into_iter().find_map(|e| match e {
        Event::RecordingSegmentClosed(c) if c.file == wanted => Some(c),
        _ => None,
    }) else {
        return Err(ApiError::not_found("recording segment"));
    };
    let path = state.media.recordings_dir().join(&closed.file);
    let bytes =
        tokio::fs::read(&path).await.map_err(|_| ApiError::new(StatusCode::GONE, "the segment file is missing"))?;
    let total = bytes.len() as u64;
    let range = headers.get(header::RANGE).and_then(|v| v.to_str().ok());
    let span = match range.map(|r| parse_range(r, total)) {
        None | Some(Ok(None)) => None,
        Some(Ok(Some(span))) => Some(span),
        Some(Err(())) => {
            let mut response = StatusCode::RANGE_NOT_SATISFIABLE.into_response();
            response.headers_mut().insert(header::CONTENT_RANGE, header_value(&format!("bytes */{total}")));
            return Ok(response);
        }
    };
    let access = if q.download { RecordingAccessKind::Download } else { RecordingAccessKind::Playback };
    let command = SessionCommand::AccessRecording {
        recording_id: closed.recording_id,
        access,
        user_id: caller.user_id()?,
        range: span.map(|(a, b)| format!("bytes={a}-{b}")),
    };
    run(&state, &caller, s.id, command).await?;

    let mut response = match span {
        Some((start, end)) => {
            let mut r = bytes[start as usize..=end as usize].to_vec().into_response();
            *r.status_mut() = StatusCode::PARTIAL_CONTENT;
            r.headers_mut().insert(header::CONTENT_RANGE, header_value(&format!("bytes {start}-{end}/{total}")));
            r
        }
        None => bytes.into_response(),
    };
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("video/webm"));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("private, no-store"));
    if q.download {
        let name = format!("{}-{}", track, segment).replace(['"', '\\'], "_");
        h.insert(header::CONTENT_DISPOSITION, header_value(&format!("attachment; filename=\"{name}\"")));
    }
    Ok(response)
}

fn header_value(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).expect("ASCII header value")
}

/// One `Range: bytes=…` span of a `total`-byte file as inclusive offsets.
/// `Ok(None)`: serve the whole file (several ranges, or another unit);
/// `Err`: not satisfiable (416).
fn parse_range(range: &str, total: u64) -> Result<Option<(u64, u64)>, ()> {
    let Some(spec) = range.trim().strip_prefix("bytes=") else { return Ok(None) };
    if spec.contains(',') {
        return Ok(None);
    }
    let (first, last) = spec.split_once('-').ok_or(())?;
    let (first, last) = (first.trim(), last.trim());
    let span = match (first.is_empty(), last.is_empty()) {
        // The last N bytes.
        (true, false) => {
            let n: u64 = last.parse().map_err(|_| ())?;
            if n == 0 || total == 0 {
                return Err(());
            }
            (total.saturating_sub(n), total - 1)
        }
        (false, _) => {
            let start: u64 = first.parse().map_err(|_| ())?;
            let end: u64 = if last.is_empty() { total.saturating_sub(1) } else { last.parse().map_err(|_| ())? };
            if start >= total || end < start {
                return Err(());
            }
            (start, end.min(total - 1))
        }
        (true, true) => return Err(()),
    };
    Ok(Some(span))
}

#[cfg(test)]
mod tests {
    use super::parse_range;

    #[test]
    fn byte_ranges_are_read_as_http_says() {
        assert_eq!(parse_range("bytes=0-99", 1000), Ok(Some((0, 99))));
        assert_eq!(parse_range("bytes=900-", 1000), Ok(Some((900, 999))));
        assert_eq!(parse_range("bytes=-100", 1000), Ok(Some((900, 999))));
        assert_eq!(parse_range("bytes=990-2000", 1000), Ok(Some((990, 999))), "clamped to the end");
        assert_eq!(parse_range("bytes=0-1,5-9", 1000), Ok(None), "several ranges: the whole file");
        assert_eq!(parse_range("items=0-1", 1000), Ok(None));
        assert_eq!(parse_range("bytes=1000-", 1000), Err(()));
        assert_eq!(parse_range("bytes=5-1", 1000), Err(()));
        assert_eq!(parse_range("bytes=abc", 1000), Err(()));
        assert_eq!(parse_range("bytes=-", 1000), Err(()));
        assert_eq!(parse_range("bytes=-0", 1000), Err(()));
    }
}
