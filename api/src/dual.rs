//! Dual recordings (双录) over HTTP: a tenant's scripts (admins write new
//! versions), and a session walking through one during a recorded call —
//! the assigned agent starts each step in order and completes it; a step
//! whose evidence is the customer's click is completed by the customer from
//! their page. Each step's start and end is an event carrying its offset
//! into the recording, for jumping to it on playback.

use axum::extract::{Path, State};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use chrono::Utc;
use witness_domain::session::SessionCommand;
use witness_domain::tenant::TenantCommand;
use witness_schemas::*;

use crate::auth::Caller;
use crate::error::Body;
use crate::{ApiError, AppState};
use witness_app::session::{load, run, Loaded};
use witness_app::tenant::on_tenant_stream;

pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/api/dual-scripts", get(scripts))
        .route("/api/admin/dual-scripts/{script_id}", put(set_script))
        .route("/api/sessions/{id}/dual", get(progress))
        .route("/api/sessions/{id}/dual/start", post(start))
        .route("/api/sessions/{id}/dual/complete", post(complete))
}

const STAFF: &[Role] = &[Role::Agent, Role::Supervisor, Role::Compliance, Role::Admin];

/// `GET /api/dual-scripts`: the latest version of each of the tenant's scripts (staff).
async fn scripts(
    State(state): State<AppState>,
    Caller(caller): Caller,
) -> Result<Json<Vec<DualRecordingScriptSet>>, ApiError> {
    caller.require(STAFF)?;
    let tenant = witness_app::tenant::directory(&state.store, &caller.t).await?;
    Ok(Json(tenant.scripts.into_values().filter_map(|mut versions| versions.pop()).collect()))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ScriptBody {
    title: crate::fields::Line<{ crate::fields::LINE }>,
    steps: Vec<ScriptStep>,
}

/// `PUT /api/admin/dual-scripts/{script_id}` `{title, steps}` (admins): the
/// script's next version.
async fn set_script(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(script_id): Path<String>,
    Body(body): Body<ScriptBody>,
) -> Result<Json<DualRecordingScriptSet>, ApiError> {
    caller.require(&[Role::Admin])?;
    let command =
        TenantCommand::SetScript { script_id: script_id.clone(), title: body.title.into_inner(), steps: body.steps };
    on_tenant_stream(&state.store, &caller.t, &caller.actor(), command).await?;
    let tenant = witness_app::tenant::directory(&state.store, &caller.t).await?;
    let latest = tenant.scripts.get(&script_id).and_then(|v| v.last()).cloned().expect("just written");
    Ok(Json(latest))
}

#[derive(serde::Serialize)]
struct Progress {
    script: Option<DualRecordingScriptSet>,
    /// `[step_index, outcome]` of each step completed, in order.
    done: Vec<(u32, StepOutcome)>,
    /// The step under way, if any, and its text (what the customer's page shows).
    open: Option<u32>,
    open_text: Option<String>,
}

/// `GET /api/sessions/{id}/dual`: the session's script and where it is
/// (its customer and staff).
async fn progress(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> Result<Json<Progress>, ApiError> {
    let session = load(&state.store, &caller, &id).await?;
    let Some(dual) = session.state.dual.clone() else {
        return Ok(Json(Progress { script: None, done: vec![], open: None, open_text: None }));
    };
    let tenant = witness_app::tenant::directory(&state.store, &caller.t).await?;
    let script = tenant.script(&dual.script_id, dual.version).cloned();
    let open_text = dual.open.and_then(|i| script.as_ref()?.steps.get(i as usize).map(|s| s.text.clone()));
    Ok(Json(Progress { script, done: dual.done, open: dual.open, open_text }))
}

/// The offset of now into the session's running recording.
async fn offset_ms(state: &AppState, session: &Loaded) -> Result<u64, ApiError> {
    let recording = session.state.recording().ok_or_else(|| {
        ApiError::new(
            axum::http::StatusCode::CONFLICT,
            refusal!("step_needs_recording", "a dual-recording step runs while the call is recorded"),
        )
    })?;
    let started = session
        .events(&state.store)
        .await?
        .iter()
        .rev()
        .filter(|e| e.event_type == "RecordingStarted")
        .find(|e| matches!(e.decode(), Ok(Event::RecordingStarted(r)) if r.recording_id == recording))
        .map(|e| e.occurred_at)
        .ok_or_else(|| {
            ApiError::new(
                axum::http::StatusCode::CONFLICT,
                refusal!("recording_start_missing", "the recording's start is not in the log"),
            )
        })?;
    Ok((Utc::now() - started).num_milliseconds().max(0) as u64)
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct StartBody {
    script_id: String,
    /// Default: the latest.
    version: Option<u32>,
    step_index: u32,
}

/// `POST /api/sessions/{id}/dual/start` `{script_id, version?, step_index}`
/// (the assigned agent, during a recorded call): the next step begins.
async fn start(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    Body(body): Body<StartBody>,
) -> Result<Json<Progress>, ApiError> {
    let session = load(&state.store, &caller, &id).await?;
    session.require_assigned_agent(
        &caller,
        refusal!("agent_leads_dual", "only the session's agent leads its dual recording"),
    )?;
    let tenant = witness_app::tenant::directory(&state.store, &caller.t).await?;
    let versions = tenant
        .scripts
        .get(&body.script_id)
        .ok_or_else(|| ApiError::not_found(refusal!("no_script", "no such dual-recording script")))?;
    let script = match body.version {
        Some(v) => versions
            .iter()
            .find(|s| s.version == v)
            .ok_or_else(|| ApiError::not_found(refusal!("no_script_version", "no such script version")))?,
        None => versions.last().expect("a script has a version"),
    };
    let kind = script.steps.get(body.step_index as usize).map(|s| s.kind).ok_or_else(|| {
        ApiError::bad_request(refusal!("script_step_count", "the script has {steps} steps", steps = script.steps.len()))
    })?;
    let step = DualRecordingStepStarted {
        script_id: script.script_id.clone(),
        script_version: script.version,
        step_index: body.step_index,
        step_kind: kind,
        recording_offset_ms: offset_ms(&state, &session).await?,
    };
    run(&state.store, &caller, session.id, SessionCommand::StartStep { step, steps: script.steps.len() as u32 })
        .await?;
    progress(State(state), Caller(caller), Path(id)).await
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct CompleteBody {
    outcome: StepOutcome,
}

/// `POST /api/sessions/{id}/dual/complete` `{outcome}`: the open step ends —
/// by the assigned agent, or by the customer ("I confirm", outcome
/// `completed`) when the step's evidence is the customer's click.
async fn complete(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    Body(body): Body<CompleteBody>,
) -> Result<Json<Progress>, ApiError> {
    let session = load(&state.store, &caller, &id).await?;
    let dual =
        session.state.dual.clone().ok_or_else(|| {
            ApiError::new(axum::http::StatusCode::CONFLICT, refusal!("no_open_step", "no step is open"))
        })?;
    let open = dual
        .open
        .ok_or_else(|| ApiError::new(axum::http::StatusCode::CONFLICT, refusal!("no_open_step", "no step is open")))?;
    let tenant = witness_app::tenant::directory(&state.store, &caller.t).await?;
    let evidence = tenant
        .script(&dual.script_id, dual.version)
        .and_then(|s| s.steps.get(open as usize))
        .map(|s| s.evidence.clone())
        .unwrap_or_default();
    if caller.r == Role::Customer {
        if !evidence.contains(&Evidence::CustomerClicks) || body.outcome != StepOutcome::Completed {
            return Err(ApiError::new(
                axum::http::StatusCode::FORBIDDEN,
                refusal!("agent_completes_step", "this step is for the agent to complete"),
            ));
        }
    } else {
        session.require_assigned_agent(
            &caller,
            refusal!("agent_leads_dual", "only the session's agent leads its dual recording"),
        )?;
    }
    let step = DualRecordingStepCompleted {
        script_id: dual.script_id,
        script_version: dual.version,
        step_index: open,
        outcome: body.outcome,
        recording_offset_ms: offset_ms(&state, &session).await?,
    };
    run(&state.store, &caller, session.id, SessionCommand::CompleteStep { step }).await?;
    progress(State(state), Caller(caller), Path(id)).await
}
