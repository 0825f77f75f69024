//! A session's call recordings: the list, and playback or download of a
//! segment file with HTTP range requests. Staff who may see the session's
//! recordings — its agent, supervisors, compliance officers, admins — of its
//! tenant only; customers never. An access is a `RecordingAccessed` event
//! in the session (its audit trail): every download, a person starting to
//! play a file, and each seek in it — not every range request a player
//! makes, nor a page listing the files ([`Accesses`]).

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use tokio::io::AsyncSeekExt;
use witness_domain::session::SessionCommand;
use witness_media::layout;
use witness_schemas::{Event, RecordingAccessKind, RecordingId, Role};

use crate::auth::{Caller, Claims};
use crate::{ApiError, AppState};
use witness_app::session::{load, run, Loaded};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/sessions/{id}/recordings", get(list))
        .route("/api/sessions/{id}/recordings/{recording}/composite", axum::routing::post(composite_now))
        .route("/api/sessions/{id}/recordings/{recording}/{track}/{segment}", get(file))
        .route("/api/sessions/{id}/recordings/{recording}/{file}", get(composite_file))
}

/// Loads the session if the caller may see its recordings.
async fn allowed(state: &AppState, caller: &Claims, id: &str) -> Result<Loaded, ApiError> {
    let s = load(&state.store, caller, id).await?;
    match caller.r {
        Role::Supervisor | Role::Compliance | Role::Admin => Ok(s),
        Role::Agent if s.state.agent().is_some_and(|a| caller.user_id().is_ok_and(|me| me == a)) => Ok(s),
        _ => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            refusal!("recordings_forbidden", "only the session's agent and supervising staff hear its recordings"),
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
    /// What the track was (`audio`, `video`, `screen`), whose (`agent`,
    /// `customer`, `supervisor`) and their name (staff: display name and
    /// login, the work number), when the session's record says.
    #[serde(skip_serializing_if = "Option::is_none")]
    kind: Option<witness_schemas::TrackKind>,
    #[serde(skip_serializing_if = "Option::is_none")]
    participant_role: Option<witness_schemas::ParticipantRole>,
    #[serde(skip_serializing_if = "Option::is_none")]
    participant_name: Option<String>,
}

async fn list(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> Result<Json<Vec<RecordingView>>, ApiError> {
    let s = allowed(&state, &caller, &id).await?;
    let decoded = witness_app::error::decode_stream(&s.events(&state.store).await?, "the session")?;
    let directory = witness_app::tenant::directory(&state.store, &caller.t).await?;
    // Participant → role, track → (kind, participant), from the call's record.
    let mut roles = std::collections::HashMap::new();
    let mut tracks = std::collections::HashMap::new();
    for event in &decoded {
        match event {
            Event::ParticipantJoined(e) => {
                roles.insert(e.participant_id.clone(), e.role);
            }
            Event::TrackPublished(e) => {
                tracks.insert(e.track_id.clone(), (e.kind, e.participant_id.clone()));
            }
            _ => {}
        }
    }
    let name = |participant: &str| {
        let user = participant.parse::<witness_schemas::UserId>().ok()?;
        Some(directory.user(user)?.name_and_login())
    };
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
                    let (kind, participant) = tracks.get(&e.track_id).cloned().unzip();
                    r.segments.push(SegmentView {
                        kind,
                        participant_role: participant.as_ref().and_then(|p| roles.get(p).copied()),
                        participant_name: participant.as_deref().and_then(name),
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
                        kind: None,
                        participant_role: None,
                        participant_name: None,
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

/// Which of a person's fetches of a recording file are accesses to record.
///
/// A player fetches a file in ranges as it plays: recording each one put
/// dozens of rows in the audit trail per review (53 of 109 after one). An
/// access is recorded for every download; for playback, for a person's
/// first fetch of the file in [`Accesses::FRESH`], and for each fetch
/// after that which is a seek: one that does not go on from where the last
/// ended, and is not for the file's last [`Accesses::TAIL`] bytes (where a
/// WebM's index is, read when playing starts) — at most one a second.
/// Kept per node, in memory: a restart or another node records the next
/// fetch afresh, never one fewer.
#[derive(Debug, Clone, Default)]
pub struct Accesses(
    std::sync::Arc<std::sync::Mutex<std::collections::HashMap<(witness_schemas::UserId, String), Fetched>>>,
);

#[derive(Debug, Clone, Copy)]
struct Fetched {
    /// When an access was last recorded.
    recorded: std::time::Instant,
    /// The byte after the last one served.
    next: u64,
}

impl Accesses {
    /// How long a person's playing of a file counts as one access.
    pub const FRESH: std::time::Duration = std::time::Duration::from_secs(600);
    /// The end of a file a player reads for its index.
    pub const TAIL: u64 = 64 * 1024;
    const SEEKS_APART: std::time::Duration = std::time::Duration::from_secs(1);

    /// Notes that `user` is served `span` (inclusive; `None`: all) of the
    /// `total` bytes of `file`; true if that is an access to record.
    pub fn served(
        &self,
        user: witness_schemas::UserId,
        file: &str,
        span: Option<(u64, u64)>,
        total: u64,
        download: bool,
    ) -> bool {
        self.served_at(std::time::Instant::now(), user, file, span, total, download)
    }

    fn served_at(
        &self,
        now: std::time::Instant,
        user: witness_schemas::UserId,
        file: &str,
        span: Option<(u64, u64)>,
        total: u64,
        download: bool,
    ) -> bool {
        let (start, end) = span.unwrap_or((0, total.saturating_sub(1)));
        let mut seen = self.0.lock().expect("accesses poisoned");
        seen.retain(|_, f| now.duration_since(f.recorded) < Self::FRESH);
        let key = (user, file.to_owned());
        let record = match seen.get(&key) {
            _ if download => true,
            None => true,
            Some(f) => {
                let seek = start != f.next && start < total.saturating_sub(Self::TAIL) && start != 0;
                seek && now.duration_since(f.recorded) >= Self::SEEKS_APART
            }
        };
        let recorded = match seen.get(&key) {
            Some(f) if !record => f.recorded,
            _ => now,
        };
        seen.insert(key, Fetched { recorded, next: end + 1 });
        record
    }

    /// Forgets `user`'s fetches of `file`: the next one is recorded.
    fn forget(&self, user: witness_schemas::UserId, file: &str) {
        self.0.lock().expect("accesses poisoned").remove(&(user, file.to_owned()));
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
    let recording: RecordingId =
        recording.parse().map_err(|_| ApiError::not_found(refusal!("no_recording", "no such recording")))?;
    if !s.state.recordings.contains(&recording) {
        return Err(ApiError::not_found(refusal!("no_recording", "no such recording")));
    }
    if s.state.recording() == Some(recording) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            refusal!("recording_running", "the recording is still running"),
        ));
    }
    if state.composites.progress(recording).is_some() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            refusal!("composite_running", "this composite is already being rendered"),
        ));
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
    let Ok(decoded) = witness_app::error::decode_stream(&events, "the session") else { return };
    let directory = match witness_app::tenant::directory(&state.store, &tenant).await {
        Ok(directory) => directory,
        Err(e) => return tracing::warn!(error = %e, "composite: the tenant cannot be read"),
    };
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
    let mut inputs = Vec::new();
    let mut starts = Vec::new();
    for (track, participant, kind, at) in tracks {
        let track_dir = state.media.recordings_dir().join(layout::track_dir(recording, &track));
        if !track_dir.is_dir() {
            continue;
        }
        let side = match (kind, participant == "customer") {
            (witness_schemas::TrackKind::Screen, _) => Side::Screen,
            (_, true) => Side::Right,
            (_, false) => Side::Left,
        };
        starts.push(at.max(started));
        inputs.push(Input {
            dir: track_dir,
            video: kind != witness_schemas::TrackKind::Audio,
            side,
            offset: Default::default(),
        });
    }
    let Some(first) = starts.iter().min().copied() else { return };
    for (input, at) in inputs.iter_mut().zip(&starts) {
        input.offset = (*at - first).to_std().unwrap_or_default();
    }
    let stamp = composite_stamp(&decoded, &directory, session, recording, started, first);
    let expected = events.last().map(|e| (e.occurred_at - first).to_std().unwrap_or_default()).unwrap_or_default();
    let out = state.media.recordings_dir().join(layout::composite(recording));
    let jobs = state.composites.clone();
    jobs.0.lock().expect("composites poisoned").insert(recording, 0.0);
    let progress_jobs = jobs.clone();
    let rendered = tokio::task::spawn_blocking(move || {
        render(&inputs, &stamp, &out, expected, |p| {
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
        file: layout::composite(recording),
        bytes: made.bytes,
        duration_ms: made.duration_ms,
        sha256,
    };
    let command = SessionCommand::Composite { composite };
    let actor = witness_schemas::Actor::system();
    if let Err(e) = witness_engine::executor::execute::<witness_domain::session::Session>(
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

/// What the composite of `recording` burns in: the time in the tenant's
/// zone, the session, the agents with their work numbers (logins), and
/// each dual-recording step's text while it runs, then its outcome for a
/// few seconds. `started` is the recording's start, `first` the
/// composite's (its earliest track).
fn composite_stamp(
    decoded: &[Event],
    directory: &witness_domain::tenant::TenantState,
    session: witness_schemas::SessionId,
    recording: RecordingId,
    started: chrono::DateTime<chrono::Utc>,
    first: chrono::DateTime<chrono::Utc>,
) -> witness_media::composite::Stamp {
    use witness_media::composite::{Caption, Stamp};
    use witness_schemas::StepOutcome;
    const OUTCOME_SHOWN: std::time::Duration = std::time::Duration::from_secs(3);
    let mut agents = Vec::new();
    let mut captions: Vec<Caption> = Vec::new();
    let mut recorded = false;
    // Composite time of a step event's recording offset.
    let at = |offset_ms: u64| {
        (started + chrono::Duration::milliseconds(offset_ms as i64) - first).to_std().unwrap_or_default()
    };
    for event in decoded {
        match event {
            Event::AgentAssigned(e) if !agents.contains(&e.agent_id) => agents.push(e.agent_id),
            Event::RecordingStarted(e) => recorded = e.recording_id == recording,
            Event::RecordingStopped(e) if e.recording_id == recording => recorded = false,
            Event::DualRecordingStepStarted(e) if recorded => {
                let steps = directory.script(&e.script_id, e.script_version).map(|s| s.steps.as_slice()).unwrap_or(&[]);
                let text = steps.get(e.step_index as usize).map(|s| s.text.as_str()).unwrap_or("");
                let number = format!("步骤 {}/{}", e.step_index + 1, steps.len());
                let from = at(e.recording_offset_ms);
                if let Some(before) = captions.last_mut() {
                    before.until = before.until.min(from);
                }
                captions.push(Caption { from, until: std::time::Duration::MAX, text: format!("{number}：{text}") });
            }
            Event::DualRecordingStepCompleted(e) if recorded => {
                let from = at(e.recording_offset_ms);
                if let Some(before) = captions.last_mut() {
                    before.until = before.until.min(from);
                }
                let outcome = match e.outcome {
                    StepOutcome::Completed => "完成",
                    StepOutcome::Skipped => "跳过",
                    StepOutcome::Failed => "未通过",
                };
                let text = format!("步骤 {}：{outcome}", e.step_index + 1);
                captions.push(Caption { from, until: from + OUTCOME_SHOWN, text });
            }
            _ => {}
        }
    }
    let names: Vec<String> = agents
        .iter()
        .map(|id| match directory.user(*id) {
            Some(u) => format!("{}（工号 {}）", u.display_name, u.login),
            None => id.to_string(),
        })
        .collect();
    let mut lines = vec![format!("会话 {session}")];
    if !names.is_empty() {
        lines.push(format!("坐席 {}", names.join("、")));
    }
    Stamp { starts_at: first, utc_offset_minutes: directory.utc_offset_minutes(), lines, captions }
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
    let decoded = witness_app::error::decode_stream(&s.events(&state.store).await?, "the session")?;
    let Some((recording_id, file)) = decoded.into_iter().find_map(|e| match e {
        Event::RecordingSegmentClosed(c) if c.file == wanted => Some((c.recording_id, c.file)),
        Event::RecordingComposited(c) if c.file == wanted => Some((c.recording_id, c.file)),
        _ => None,
    }) else {
        return Err(ApiError::not_found(refusal!("no_segment", "no such recording segment")));
    };
    let path = state.media.recordings_dir().join(&file);
    let gone = |_| ApiError::new(StatusCode::GONE, refusal!("segment_missing", "the segment file is missing"));
    let mut opened = tokio::fs::File::open(&path).await.map_err(gone)?;
    let total = opened.metadata().await.map_err(gone)?.len();
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
    let user_id = caller.user_id()?;
    if state.accesses.served(user_id, &file, span, total, q.download) {
        let range = span.map(|(a, b)| format!("bytes={a}-{b}"));
        let command = SessionCommand::AccessRecording { recording_id, access, user_id, range };
        if let Err(e) = run(&state.store, &caller, s.id, command).await {
            // Served only once on the record: the next fetch tries again.
            state.accesses.forget(user_id, &file);
            return Err(e.into());
        }
    }

    let (start, length) = span.map_or((0, total), |(start, end)| (start, end - start + 1));
    opened.seek(std::io::SeekFrom::Start(start)).await.map_err(gone)?;
    let mut response = crate::streaming::body(opened, length, ()).into_response();
    if let Some((start, end)) = span {
        *response.status_mut() = StatusCode::PARTIAL_CONTENT;
        response.headers_mut().insert(header::CONTENT_RANGE, header_value(&format!("bytes {start}-{end}/{total}")));
    }
    let h = response.headers_mut();
    h.insert(header::CONTENT_LENGTH, length.into());
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
    if file_name != layout::COMPOSITE {
        return Err(ApiError::not_found(refusal!("no_recording_file", "no such recording file")));
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
    use super::*;
    use std::time::{Duration, Instant};

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

    /// One review as Chromium fetches it: the file from its start, its
    /// index at the end, the rest as it plays; then a seek, a second seek
    /// at once, a download, and the same again much later.
    #[test]
    fn a_play_a_seek_and_a_download_are_accesses_and_a_players_other_fetches_are_not() {
        let accesses = Accesses::default();
        let (officer, agent) = (witness_schemas::UserId::new(), witness_schemas::UserId::new());
        let (file, total) = ("r/t/00000.webm", 1_000_000);
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_millis(s);
        let fetch = |t, user, span, download| accesses.served_at(at(t), user, file, span, total, download);
        assert!(fetch(0, officer, Some((0, 65_535)), false), "starting to play");
        assert!(!fetch(10, officer, Some((990_000, 999_999)), false), "the index at the end");
        assert!(!fetch(20, officer, Some((65_536, 999_999)), false), "playing on");
        assert!(!fetch(30, officer, None, false), "the whole file again, from its start");
        assert!(fetch(2_000, officer, Some((500_000, 999_999)), false), "a seek");
        assert!(!fetch(2_500, officer, Some((200_000, 999_999)), false), "a second seek within a second");
        assert!(fetch(4_000, officer, Some((300_000, 999_999)), false), "a seek later");
        assert!(fetch(4_100, officer, None, true), "a download");
        assert!(fetch(4_200, officer, None, true), "another download");
        assert!(fetch(4_300, agent, Some((0, 99)), false), "another person");
        assert!(accesses.served_at(at(4_400), officer, "r/t/00001.webm", None, total, false), "another file");
        let later = Accesses::FRESH.as_millis() as u64 + 5_000;
        assert!(fetch(later, officer, Some((0, 65_535)), false), "playing it again, much later");
        accesses.forget(officer, file);
        assert!(fetch(later + 10, officer, Some((65_536, 999_999)), false), "forgotten: recorded afresh");
    }
}
