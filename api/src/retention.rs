//! Retention over HTTP: the tenant's policy and legal holds. The sweep
//! itself is the application layer's (`witness_app::retention`).

use std::collections::BTreeMap;

use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use witness_domain::tenant::TenantCommand;

use crate::auth::Caller;
use crate::error::Body;
use crate::{ApiError, AppState};
use witness_app::tenant::on_tenant_stream;
use witness_schemas::*;

pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/api/admin/retention", get(show).put(set))
        .route("/api/legal-holds", post(place))
        .route("/api/legal-holds/release", post(release))
}

#[derive(serde::Serialize)]
struct Hold {
    session_id: Option<SessionId>,
    reason: String,
}

#[derive(serde::Serialize)]
struct Policy {
    /// Days kept after a session ends, by class; absent: forever.
    retention: BTreeMap<DataClass, u32>,
    holds: Vec<Hold>,
}

async fn policy_of(state: &AppState, tenant: &TenantId) -> Result<Policy, ApiError> {
    let t = witness_app::tenant::directory(&state.store, tenant).await?;
    let holds = t.holds.into_iter().map(|(session_id, reason)| Hold { session_id, reason }).collect();
    Ok(Policy { retention: t.retention, holds })
}

/// `GET /api/admin/retention`: the tenant's retention periods and legal
/// holds (admins and compliance).
async fn show(State(state): State<AppState>, Caller(caller): Caller) -> Result<Json<Policy>, ApiError> {
    caller.require(&[Role::Admin, Role::Compliance])?;
    Ok(Json(policy_of(&state, &caller.t).await?))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct SetRetention {
    class: DataClass,
    /// Absent or null: keep forever.
    days: Option<u32>,
}

/// `PUT /api/admin/retention` `{class, days}` (admins): a `RetentionSet` event.
async fn set(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Body(body): Body<SetRetention>,
) -> Result<Json<Policy>, ApiError> {
    caller.require(&[Role::Admin])?;
    let command = TenantCommand::SetRetention { class: body.class, days: body.days };
    on_tenant_stream(&state.store, &caller.t, &caller.actor(), command).await?;
    Ok(Json(policy_of(&state, &caller.t).await?))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct HoldRequest {
    /// Absent: the whole tenant.
    session_id: Option<String>,
    reason: crate::fields::Line<{ crate::fields::LINE }>,
}

async fn hold_target(
    state: &AppState,
    caller: &crate::auth::Claims,
    id: Option<&str>,
) -> Result<Option<SessionId>, ApiError> {
    match id {
        None => Ok(None),
        // Another tenant's session is a 404, as one that does not exist.
        Some(id) => Ok(Some(witness_app::session::load(&state.store, caller, id).await?.id)),
    }
}

/// `POST /api/legal-holds` `{session_id?, reason}` (compliance, admins):
/// nothing of the session (or the tenant) is deleted until released.
async fn place(state: State<AppState>, caller: Caller, body: Body<HoldRequest>) -> Result<Json<Policy>, ApiError> {
    hold(state, caller, body, true).await
}

/// `POST /api/legal-holds/release` `{session_id?, reason}` (compliance, admins).
async fn release(state: State<AppState>, caller: Caller, body: Body<HoldRequest>) -> Result<Json<Policy>, ApiError> {
    hold(state, caller, body, false).await
}

async fn hold(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Body(body): Body<HoldRequest>,
    place: bool,
) -> Result<Json<Policy>, ApiError> {
    caller.require(&[Role::Compliance, Role::Admin])?;
    let session_id = hold_target(&state, &caller, body.session_id.as_deref()).await?;
    let command = if place {
        TenantCommand::PlaceLegalHold { session_id, reason: body.reason.into_inner() }
    } else {
        TenantCommand::ReleaseLegalHold { session_id, reason: body.reason.into_inner() }
    };
    on_tenant_stream(&state.store, &caller.t, &caller.actor(), command).await?;
    Ok(Json(policy_of(&state, &caller.t).await?))
}
