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
        .route("/api/sessions/{id}/recordings/{recording}/composite", axum::routing::post(composite_now))
        .route("/api/sessions/{id}/recordings/{recording}/{track}/{segment}", get(file))
        .route("/api/sessions/{id}/recordings/{recording}/{file}", get(composite_file))
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
    /// The rendered dual recording, once there is one.
    composite: Option<SegmentView>,
    /// While a composite is being rendered: the fraction done.
    composite_progress: Option<f64>,
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
    let decoded = crate::error::decode_stream(&s.events(&state).await?, "the session")?;
    let mut recordings: Vec<RecordingView> = Vec::new();
    for event in decoded {
        match event {
            Event::RecordingStarted(e) => recordings.push(RecordingView {
                recording_id: e.recording_id,
                reason: e.reason,
                stopped: false,
                segments: Vec::new(),
                composite: None,
                composite_progress: state.composites.progress(e.recording_id),
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
            Event::RecordingComposited(e) => {
                if let Some(r) = recordings.iter_mut().find(|r| r.recording_id == e.recording_id) {
                    r.composite = Some(SegmentView {
                        url: format!("/api/sessions/{}/recordings/{}", s.id, e.file),
                        track_id: "composite".into(),
                        segment_index: 0,
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

/// Composites running, by recording, with the fraction done.
#[derive(Debug, Clone, Default)]
pub struct Composites(std::sync::Arc<std::sync::Mutex<std::collections::HashMap<RecordingId, f64>>>);

impl Composites {
    fn progress(&self, recording: RecordingId) -> Option<f64> {
        self.0.lock().expect("composites poisoned").get(&recording).copied()
    }
}

/// Renders (again) the composite of one of the session's recordings, in the
/// background: 202 at once; progress in the recordings list.
async fn composite_now(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path((id, recording)): Path<(String, String)>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let s = allowed(&state, &caller, &id).await?;
    let recording: RecordingId = recording.parse().map_err(|_| ApiError::not_found("recording"))?;
    if !s.state.recordings.contains(&recording) {
        return Err(ApiError::not_found("recording"));
    }
    if s.state.recording == Some(recording) {
        return Err(ApiError::new(StatusCode::CONFLICT, "the recording is still running"));
    }
    if state.composites.progress(recording).is_some() {
        return Err(ApiError::new(StatusCode::CONFLICT, "this composite is already being rendered"));
    }
    tokio::spawn(render_composite(state.clone(), s.id, recording));
    Ok((StatusCode::ACCEPTED, Json(serde_json::json!({ "recording_id": recording, "progress": 0.0 }))))
}

/// Renders the composite of `recording` from its segment files and records
/// it as `RecordingComposited`. Failures are logged; the segments stay the
/// record.
pub(crate) async fn render_composite(state: AppState, session: witness_schemas::SessionId, recording: RecordingId) {
    use witness_media::composite::{render, Input, Side};
    let stream = witness_schemas::StreamId::session(session);
    let events = match state.store.read_stream(&stream, 1).await {
        Ok(events) => events,
        Err(e) => return tracing::warn!(error = %e, "composite: the session cannot be read"),
    };
    let Some(tenant) = events.first().map(|e| e.tenant_id.clone()) else { return };
    let Ok(decoded) = crate::error::decode_stream(&events, "the session") else { return };
    // When each track started, and whether it is a camera, a screen or a microphone.
    let mut started = None;
    let mut tracks = Vec::new();
    for (event, raw) in decoded.iter().zip(&events) {
        match event {
            Event::RecordingStarted(e) if e.recording_id == recording => started = Some(raw.occurred_at),
            Event::TrackPublished(e) => {
                tracks.push((e.track_id.clone(), e.participant_id.clone(), e.kind, raw.occurred_at))
            }
            _ => {}
        }
    }
    let Some(started) = started else { return };
    let dir = state.media.recordings_dir().join(recording.to_string());
    let mut inputs = Vec::new();
    let mut starts = Vec::new();
    for (track, participant, kind, at) in tracks {
        let track_dir = dir.join(witness_media::server::track_dir_name(&track));
        if kind == witness_schemas::TrackKind::Screen || !track_dir.is_dir() {
            continue;
        }
        let side = if participant == "customer" { Side::Right } else { Side::Left };
        starts.push(at.max(started));
        inputs.push(Input {
            dir: track_dir,
            video: kind == witness_schemas::TrackKind::Video,
            side,
            offset: Default::default(),
        });
    }
    let Some(first) = starts.iter().min().copied() else { return };
    for (input, at) in inputs.iter_mut().zip(&starts) {
        input.offset = (*at - first).to_std().unwrap_or_default();
    }
    let expected = events.last().map(|e| (e.occurred_at - first).to_std().unwrap_or_default()).unwrap_or_default();
    let out = dir.join("composite.webm");
    let jobs = state.composites.clone();
    jobs.0.lock().expect("composites poisoned").insert(recording, 0.0);
    let progress_jobs = jobs.clone();
    let rendered = tokio::task::spawn_blocking(move || {
        render(&inputs, &out, expected, |p| {
            progress_jobs.0.lock().expect("composites poisoned").insert(recording, p);
        })
    })
    .await;
    jobs.0.lock().expect("composites poisoned").remove(&recording);
    let made = match rendered {
        Ok(Ok(made)) => made,
        Ok(Err(e)) => return tracing::warn!(error = %e, "composite failed"),
        Err(e) => return tracing::warn!(error = %e, "composite failed"),
    };
    let Ok(sha256) = witness_schemas::Sha256Hex::try_from(made.sha256) else { return };
    let composite = witness_schemas::RecordingComposited {
        recording_id: recording,
        file: format!("{recording}/composite.webm"),
        bytes: made.bytes,
        duration_ms: made.duration_ms,
        sha256,
    };
    let command = SessionCommand::Composite { composite };
    let actor = witness_schemas::Actor::system();
    if let Err(e) = witness_engine::executor::execute::<witness_engine::domain::session::Session>(
        &state.store,
        &tenant,
        &stream,
        &actor,
        chrono::Utc::now(),
        command,
    )
    .await
    {
        tracing::warn!(error = %e, "composite not recorded");
    }
}

#[derive(Deserialize)]
struct FileQuery {
    #[serde(default)]
    download: bool,
}

async fn file(
    state: State<AppState>,
    caller: Caller,
    Path((id, recording, track, segment)): Path<(String, String, String, String)>,
    query: Query<FileQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    serve_file(state, caller, id, format!("{recording}/{track}/{segment}"), query, headers).await
}

async fn serve_file(
    State(state): State<AppState>,
    Caller(caller): Caller,
    id: String,
    wanted: String,
    Query(q): Query<FileQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let s = allowed(&state, &caller, &id).await?;
    // Only a file the session's record names: the path never comes from
    // the caller alone.
    let decoded = crate::error::decode_stream(&s.events(&state).await?, "the session")?;
    let Some((recording_id, file)) = decoded.into_iter().find_map(|e| match e {
        Event::RecordingSegmentClosed(c) if c.file == wanted => Some((c.recording_id, c.file)),
        Event::RecordingComposited(c) if c.file == wanted => Some((c.recording_id, c.file)),
        _ => None,
    }) else {
        return Err(ApiError::not_found("recording segment"));
    };
    let path = state.media.recordings_dir().join(&file);
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
        recording_id,
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
        let name = wanted.replace(['/', '"', '\\'], "_");
        h.insert(header::CONTENT_DISPOSITION, header_value(&format!("attachment; filename=\"{name}\"")));
    }
    Ok(response)
}

/// `RECORDING/composite.webm`: the same as a segment, one level up.
async fn composite_file(
    state: State<AppState>,
    caller: Caller,
    Path((id, recording, file_name)): Path<(String, String, String)>,
    query: Query<FileQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if file_name != "composite.webm" {
        return Err(ApiError::not_found("recording file"));
    }
    serve_file(state, caller, id, format!("{recording}/{file_name}"), query, headers).await
}

fn header_value(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).expect("ASCII header value")
}

/// One `Range: bytes=…` span of a `total`-byte file as inclusive offsets.
/// `Ok(None)`: serve the whole file (several ranges, or another unit);
/// `Err`: not satisfiable (416).
pub(crate) fn parse_range(range: &str, total: u64) -> Result<Option<(u64, u64)>, ()> {
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
