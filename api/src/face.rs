//! Face verification during a call: is the customer on the video the
//! person on the ID photo, and a live one?
//!
//! 1. The assigned agent asks for it with the hash of an ID photo already
//!    uploaded (`POST /api/uploads`, or an image the customer sent):
//!    `POST /api/sessions/{id}/face-verifications {"id_photo_sha256"}`. The
//!    photo must show one face; `FaceVerificationRequested` is written and
//!    the customer's page asks them to turn their head slowly to each side.
//! 2. The agent's workbench takes frames from the customer's video track as
//!    it arrives and sends them:
//!    `POST /api/sessions/{id}/face-verifications/{vid}/frames {"frames": [JPEG or PNG, base64]}`.
//!    Every frame is stored by hash beside the uploads; the most frontal
//!    face is compared with the photo ([`witness_face`]) and the liveness
//!    check judged across all of them; `FaceVerificationCompleted` records
//!    the score, decision, model, frames and what the check saw.
//!
//! Without the models (`witness serve --face-models DIR`) both routes
//! answer 503 and write nothing.

use std::sync::Arc;
use witness_domain::Refusal;

use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use base64::Engine as _;
use witness_domain::session::SessionCommand;
use witness_face::{FaceModel, DEFAULT_THRESHOLD};
use witness_schemas::*;

use crate::auth::Caller;
use crate::error::Body;
use crate::{ApiError, AppState};
use witness_app::session::{load, run};

/// Frames one verification takes, at least and at most.
pub const MIN_FRAMES: usize = 3;
pub const MAX_FRAMES: usize = 16;
/// One frame's size at most (decoded from base64).
pub const MAX_FRAME_BYTES: usize = 2 * 1024 * 1024;
/// What the customer is asked to do.
pub const PROMPT: &str = "head_turn";

pub(crate) fn router() -> Router<AppState> {
    Router::new().route("/api/sessions/{id}/face-verifications", post(request)).route(
        "/api/sessions/{id}/face-verifications/{verification}/frames",
        // Base64 makes 16 frames of 2 MiB about 43 MiB of JSON.
        post(frames).layer(DefaultBodyLimit::max(MAX_FRAMES * MAX_FRAME_BYTES * 4 / 3 + 64 * 1024)),
    )
}

fn model(state: &AppState) -> Result<Arc<FaceModel>, ApiError> {
    state.face.clone().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            refusal!(
                "face_not_set_up",
                "face verification is not set up on this server: start it with --face-models DIR"
            ),
        )
    })
}

/// Runs the models on a blocking thread: an image takes a few hundred ms.
async fn faces_of(
    model: Arc<FaceModel>,
    images: Vec<image::RgbImage>,
) -> Result<Vec<Vec<witness_face::Face>>, ApiError> {
    tokio::task::spawn_blocking(move || images.iter().map(|img| model.faces(img)).collect::<Result<Vec<_>, _>>())
        .await
        .expect("face analysis task")
        .map_err(|e| {
            tracing::error!(error = %e, "face analysis");
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, refusal!("face_analysis_failed", "face analysis failed"))
        })
}

fn decode(bytes: &[u8], unreadable: impl FnOnce(String) -> Refusal) -> Result<image::RgbImage, ApiError> {
    witness_face::decode(bytes).map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, unreadable(e.to_string())))
}

/// The ID photo's one face.
async fn id_photo_face(
    state: &AppState,
    model: Arc<FaceModel>,
    tenant: &TenantId,
    hash: &Sha256Hex,
) -> Result<witness_face::Face, ApiError> {
    let bytes = state.uploads.read(tenant, hash).await.ok_or_else(|| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            refusal!("no_id_photo", "no upload {hash}: upload the ID photo first", hash = hash.as_str()),
        )
    })?;
    let img = decode(&bytes, |detail| refusal!("id_photo_unreadable", "the ID photo: {detail}", detail = detail))?;
    let mut faces = faces_of(model, vec![img]).await?.pop().expect("one image");
    match faces.len() {
        1 => Ok(faces.pop().expect("one face")),
        0 => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            refusal!("no_face_in_photo", "no face found in the ID photo"),
        )),
        n => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            refusal!("faces_in_photo", "{n} faces in the ID photo; it must show one", n = n),
        )),
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RequestBody {
    id_photo_sha256: Sha256Hex,
}

async fn request(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    Body(body): Body<RequestBody>,
) -> Result<(StatusCode, Json<FaceVerificationRequested>), ApiError> {
    let session = load(&state.store, &caller, &id).await?;
    session.require_assigned_agent(
        &caller,
        refusal!("agent_verifies_face", "only the session's agent verifies its customer"),
    )?;
    let model = model(&state)?;
    if session.state.call().is_none() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            refusal!("face_needs_video", "a face is verified during a video call"),
        ));
    }
    if let Some(open) = session.state.face_verification() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            refusal!("face_check_open", "face verification {open} is still open", open = open),
        ));
    }
    id_photo_face(&state, model, &caller.t, &body.id_photo_sha256).await?;
    let request = FaceVerificationRequested {
        verification_id: VerificationId::new(),
        id_photo_sha256: body.id_photo_sha256,
        frame_sha256: None,
    };
    run(&state.store, &caller, session.id, SessionCommand::RequestFaceVerification { request: request.clone() })
        .await?;
    Ok((StatusCode::CREATED, Json(request)))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct FramesBody {
    /// JPEG or PNG, base64 (a `data:` URL prefix is allowed).
    frames: Vec<String>,
}

async fn frames(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path((id, verification)): Path<(String, String)>,
    Body(body): Body<FramesBody>,
) -> Result<Json<FaceVerificationCompleted>, ApiError> {
    let session = load(&state.store, &caller, &id).await?;
    session.require_assigned_agent(
        &caller,
        refusal!("agent_verifies_face", "only the session's agent verifies its customer"),
    )?;
    let model = model(&state)?;
    let verification_id: VerificationId = verification
        .parse()
        .map_err(|_| ApiError::not_found(refusal!("no_face_check", "no such face verification")))?;
    if session.state.face_verification() != Some(verification_id) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            refusal!("face_check_not_open", "this face verification is not open"),
        ));
    }
    let id_photo = requested_photo(&session.events(&state.store).await?, verification_id)?;
    if !(MIN_FRAMES..=MAX_FRAMES).contains(&body.frames.len()) {
        return Err(ApiError::bad_request(refusal!(
            "frame_count",
            "send {min} to {max} frames",
            min = MIN_FRAMES,
            max = MAX_FRAMES
        )));
    }
    // Everything is checked before anything is written.
    let mut raw = Vec::with_capacity(body.frames.len());
    let mut images = Vec::with_capacity(body.frames.len());
    for (i, frame) in body.frames.iter().enumerate() {
        let b64 = frame.split_once(";base64,").map_or(frame.as_str(), |(_, data)| data);
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|_| ApiError::bad_request(refusal!("frame_not_base64", "frame {i} is not base64", i = i)))?;
        if bytes.len() > MAX_FRAME_BYTES {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                refusal!(
                    "frame_too_large",
                    "frame {i} is over {mib} MiB",
                    i = i,
                    mib = MAX_FRAME_BYTES / (1024 * 1024)
                ),
            ));
        }
        images.push(decode(&bytes, |detail| {
            refusal!("frame_unreadable", "frame {i}: {detail}", i = i, detail = detail)
        })?);
        raw.push(bytes);
    }
    let began = std::time::Instant::now();
    let photo = id_photo_face(&state, model.clone(), &caller.t, &id_photo).await?;
    let live = faces_of(model.clone(), images).await?;

    let judged = witness_face::judge_liveness(&live, DEFAULT_THRESHOLD);
    let compared = witness_face::most_frontal(&live).map(|i| (i, score(witness_face::distance(&photo, &live[i][0]))));
    let mut hashes = Vec::with_capacity(raw.len());
    for bytes in raw {
        hashes.push(state.uploads.put(&caller.t, bytes.into()).await?.0);
    }
    let threshold = score(DEFAULT_THRESHOLD);
    let (score, decision) = match compared {
        None => (0.0, FaceDecision::Inconclusive),
        Some((_, s)) if s < threshold => (s, FaceDecision::NoMatch),
        Some((_, s)) if !judged.passed => (s, FaceDecision::Inconclusive),
        Some((_, s)) => (s, FaceDecision::Match),
    };
    state.metrics.face_check(decision, began.elapsed());
    let result = FaceVerificationCompleted {
        verification_id,
        score,
        threshold,
        decision,
        model_name: witness_face::MODEL_NAME.into(),
        model_version: model.version().into(),
        liveness_passed: judged.passed,
        compared_frame_sha256: compared.map(|(i, _)| hashes[i].clone()),
        frame_sha256s: hashes,
        liveness: Some(LivenessCheck {
            prompt: PROMPT.into(),
            frames: judged.frames as u32,
            frames_with_face: judged.frames_with_face as u32,
            same_person: judged.same_person,
            yaw_min: f64::from(judged.yaw_min),
            yaw_max: f64::from(judged.yaw_max),
            reason: judged.reason,
        }),
    };
    run(
        &state.store,
        &caller,
        session.id,
        SessionCommand::CompleteFaceVerification { result: Box::new(result.clone()) },
    )
    .await?;
    Ok(Json(result))
}

/// The ID photo of the open request.
fn requested_photo(events: &[RecordedEvent], verification_id: VerificationId) -> Result<Sha256Hex, ApiError> {
    events
        .iter()
        .rev()
        .filter(|e| e.event_type == "FaceVerificationRequested")
        .find_map(|e| match e.decode() {
            Ok(Event::FaceVerificationRequested(r)) if r.verification_id == verification_id => Some(r.id_photo_sha256),
            _ => None,
        })
        .ok_or_else(|| ApiError::not_found(refusal!("no_face_check", "no such face verification")))
}

/// Similarity in [0, 1] from a descriptor distance, to 4 decimals: what
/// the event records, and what the decision compares.
fn score(distance: f32) -> f64 {
    ((1.0 - f64::from(distance)).clamp(0.0, 1.0) * 10_000.0).round() / 10_000.0
}
