//! The review console's API, for compliance officers: dual recordings
//! awaiting a verdict, one session's steps placed on its composite, a pass
//! or fail per step with a comment, and the overall verdict — each a
//! session event.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use witness_domain::session::SessionCommand;
use witness_projections::ReviewRow;
use witness_schemas::*;

use crate::auth::Caller;
use crate::error::Body;
use crate::{ApiError, AppState};
use witness_app::session::{load, run};

pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/api/reviews", get(pending))
        .route("/api/sessions/{id}/review", get(show).post(verdict))
        .route("/api/sessions/{id}/review/steps", post(review_step))
        .route("/api/sessions/{id}/review/package", get(package))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct PendingQuery {
    /// `all`: reviewed ones too.
    status: Option<String>,
}

/// `GET /api/reviews[?status=all]`: the tenant's dual recordings awaiting a
/// verdict (or all), oldest first (compliance).
async fn pending(
    State(state): State<AppState>,
    Caller(caller): Caller,
    query: Result<Query<PendingQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Vec<ReviewRow>>, ApiError> {
    caller.require(&[Role::Compliance])?;
    let Query(q) = query.map_err(|e| ApiError::malformed(e.body_text()))?;
    let all = match q.status.as_deref() {
        None | Some("") | Some("pending") => false,
        Some("all") => true,
        Some(other) => {
            return Err(ApiError::bad_request(refusal!(
                "review_status",
                "`status` is pending or all, got {got}",
                got = format!("{other:?}")
            )))
        }
    };
    Ok(Json(state.projector.reviews(&caller.t, all, 500).await?))
}

#[derive(serde::Serialize)]
struct StepView {
    index: u32,
    kind: DualRecordingStepKind,
    text: String,
    evidence: Vec<Evidence>,
    /// Offsets into the recording, and into its composite (whose time zero
    /// is the first camera or microphone track, not the recording's start).
    started_ms: Option<u64>,
    completed_ms: Option<u64>,
    composite_ms: Option<u64>,
    outcome: Option<StepOutcome>,
    /// The latest review: (passed, comment).
    review: Option<(bool, Option<String>)>,
}

#[derive(serde::Serialize)]
struct ReviewView {
    script: Option<DualRecordingScriptSet>,
    steps: Vec<StepView>,
    /// The overall verdict, once given: (passed, comment).
    verdict: Option<(bool, Option<String>)>,
}

/// `GET /api/sessions/{id}/review`: the script's steps with where they
/// happened in the recording, what each came to, and the reviews so far.
async fn show(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> Result<Json<ReviewView>, ApiError> {
    caller.require(&[Role::Compliance])?;
    let session = load(&state.store, &caller, &id).await?;
    let Some(dual) = session.state.dual.clone() else {
        return Ok(Json(ReviewView { script: None, steps: vec![], verdict: None }));
    };
    let tenant = witness_app::tenant::directory(&state.store, &caller.t).await?;
    let script = tenant.script(&dual.script_id, dual.version).cloned();
    let (mut started, mut completed, mut reviews) = (HashMap::new(), HashMap::new(), HashMap::new());
    let (mut verdict, mut recording_started, mut first_track) = (None, None, None);
    for e in &session.events(&state.store).await? {
        match e.decode() {
            Ok(Event::RecordingStarted(_)) => recording_started = Some(e.occurred_at),
            // The composite starts at the first camera or microphone track
            // after the recording's start (as `recordings` lays it out).
            Ok(Event::TrackPublished(t)) if t.kind != TrackKind::Screen => {
                if let Some(begun) = recording_started {
                    let at = e.occurred_at.max(begun);
                    first_track = Some(first_track.map_or(at, |f: chrono::DateTime<chrono::Utc>| f.min(at)));
                }
            }
            Ok(Event::DualRecordingStepStarted(s)) => _ = started.insert(s.step_index, s.recording_offset_ms),
            Ok(Event::DualRecordingStepCompleted(c)) => {
                _ = completed.insert(c.step_index, (c.recording_offset_ms, c.outcome))
            }
            Ok(Event::DualRecordingStepReviewed(r)) => _ = reviews.insert(r.step_index, (r.passed, r.comment)),
            Ok(Event::DualRecordingReviewed(v)) => verdict = Some((v.passed, v.comment)),
            _ => {}
        }
    }
    // How far the composite's time zero is into the recording.
    let shift = match (recording_started, first_track) {
        (Some(begun), Some(first)) => (first - begun).num_milliseconds().max(0) as u64,
        _ => 0,
    };
    let steps = script
        .iter()
        .flat_map(|s| s.steps.iter().enumerate())
        .map(|(i, step)| {
            let i = i as u32;
            let started_ms = started.get(&i).copied();
            StepView {
                index: i,
                kind: step.kind,
                text: step.text.clone(),
                evidence: step.evidence.clone(),
                started_ms,
                completed_ms: completed.get(&i).map(|c| c.0),
                composite_ms: started_ms.map(|ms| ms.saturating_sub(shift)),
                outcome: completed.get(&i).map(|c| c.1),
                review: reviews.get(&i).cloned(),
            }
        })
        .collect();
    Ok(Json(ReviewView { script, steps, verdict }))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct StepReview {
    step_index: u32,
    passed: bool,
    comment: Option<String>,
}

fn comment(text: Option<String>) -> Result<Option<String>, ApiError> {
    let text = text.map(|c| c.trim().to_owned()).filter(|c| !c.is_empty());
    if let Some(text) = &text {
        crate::fields::note("comment", text, 2_000)?;
    }
    Ok(text)
}

/// `POST /api/sessions/{id}/review/steps` `{step_index, passed, comment?}`
/// (compliance): a DualRecordingStepReviewed event. A failed step needs a comment.
async fn review_step(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    Body(body): Body<StepReview>,
) -> Result<Json<ReviewView>, ApiError> {
    caller.require(&[Role::Compliance])?;
    let session = load(&state.store, &caller, &id).await?;
    let comment = comment(body.comment)?;
    if !body.passed && comment.is_none() {
        return Err(ApiError::bad_request(refusal!(
            "failed_step_comment",
            "a failed step needs a `comment` saying why"
        )));
    }
    let dual = session
        .state
        .dual
        .clone()
        .ok_or_else(|| ApiError::not_found(refusal!("no_dual_recording", "no such dual recording")))?;
    let review = DualRecordingStepReviewed {
        script_id: dual.script_id,
        script_version: dual.version,
        step_index: body.step_index,
        passed: body.passed,
        comment,
    };
    run(&state.store, &caller, session.id, SessionCommand::ReviewStep { review }).await?;
    show(State(state), Caller(caller), Path(id)).await
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Verdict {
    passed: bool,
    comment: Option<String>,
}

/// `POST /api/sessions/{id}/review` `{passed, comment?}` (compliance): the
/// final verdict, once every completed step is reviewed.
async fn verdict(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    Body(body): Body<Verdict>,
) -> Result<Json<ReviewView>, ApiError> {
    caller.require(&[Role::Compliance])?;
    let session = load(&state.store, &caller, &id).await?;
    let verdict = DualRecordingReviewed { passed: body.passed, comment: comment(body.comment)? };
    run(&state.store, &caller, session.id, SessionCommand::Review { verdict }).await?;
    show(State(state), Caller(caller), Path(id)).await
}

/// `GET /api/sessions/{id}/review/package` (compliance): the review package
/// — composite, segments, timeline, review, signed manifest — as one tar
/// file that `witness verify --package` checks offline. Its contents are
/// unmasked, so each download is logged as a `PersonalDataViewed`.
async fn package(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> Result<axum::response::Response, ApiError> {
    use axum::http::{header, StatusCode};
    use axum::response::IntoResponse;
    caller.require(&[Role::Compliance])?;
    let session = load(&state.store, &caller, &id).await?;
    let signer = state.package_signer.clone().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            refusal!("no_package_key", "this server has no key to sign packages with"),
        )
    })?;
    let Json(view) = show(State(state.clone()), Caller(caller.clone()), Path(id.clone())).await?;
    let review = serde_json::to_value(&view).expect("a review serialises");
    let events = session.events(&state.store).await?.len();
    crate::supervision::record_view(&state, &caller, "review_package", Some(session.id), events).await?;
    let failed = |e: &dyn std::fmt::Display| {
        tracing::error!(error = %e, "writing a review package");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            refusal!("package_failed", "the review package could not be written"),
        )
    };
    // Written to a file with no name (gone when closed), then sent as it is
    // read: recordings can be hours long, and never sit whole in memory.
    let scratch = tempfile::tempfile().map_err(|e| failed(&e))?;
    let recordings = state.media.recordings_dir();
    let package = witness_replay::package::write_package(
        &state.store,
        recordings,
        &caller.t,
        session.id,
        &review,
        &signer,
        std::io::BufWriter::new(scratch),
    )
    .await
    .map_err(|e| failed(&e))?;
    let mut file = package.into_inner().map_err(|e| failed(&e.into_error()))?;
    let length = std::io::Seek::seek(&mut file, std::io::SeekFrom::End(0)).map_err(|e| failed(&e))?;
    std::io::Seek::rewind(&mut file).map_err(|e| failed(&e))?;
    let headers = [
        (header::CONTENT_TYPE, "application/x-tar".to_owned()),
        (header::CONTENT_DISPOSITION, format!("attachment; filename=\"review-{}.tar\"", session.id)),
        (header::CONTENT_LENGTH, length.to_string()),
    ];
    Ok((headers, crate::streaming::body(tokio::fs::File::from_std(file), length, ())).into_response())
}
