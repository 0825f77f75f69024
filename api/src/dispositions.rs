//! The outcomes an agent records at wrap-up: the tenant's list (`PUT
//! /api/admin/dispositions`, a `DispositionsSet` event), or, until it sets
//! one, [`DEFAULT`] offered in the tenant's language and any text taken.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, put};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use witness_domain::tenant::TenantCommand;
use witness_schemas::{Role, TenantId};

use crate::auth::Caller;
use crate::{ApiError, AppState, Body};

/// What the workbench offers while a tenant has set no list (catalog keys).
pub const DEFAULT: &[&str] = &[
    "server.disposition_resolved",
    "server.disposition_follow_up",
    "server.disposition_no_response",
    "server.disposition_transferred",
];

pub(crate) fn router() -> Router<AppState> {
    Router::new().route("/api/dispositions", get(list)).route("/api/admin/dispositions", put(set))
}

#[derive(Serialize)]
struct Dispositions {
    dispositions: Vec<String>,
    /// False while the tenant has set none: any text is then taken.
    set_by_tenant: bool,
}

async fn of(state: &AppState, tenant: &TenantId) -> Result<Dispositions, ApiError> {
    let known = witness_app::tenant::directory(&state.store, tenant).await?;
    Ok(match known.dispositions {
        Some(dispositions) => Dispositions { dispositions, set_by_tenant: true },
        None => {
            let lang = crate::i18n::Lang::of_tenant(&known);
            Dispositions {
                dispositions: DEFAULT.iter().map(|d| lang.text(d).to_owned()).collect(),
                set_by_tenant: false,
            }
        }
    })
}

/// Refuses (422, naming the list) a disposition the tenant's list lacks.
pub(crate) async fn check(state: &AppState, tenant: &TenantId, disposition: &str) -> Result<(), ApiError> {
    let known = of(state, tenant).await?;
    if known.set_by_tenant && !known.dispositions.iter().any(|d| d == disposition) {
        let refusal = refusal!(
            "unknown_disposition",
            "disposition {disposition} is not one of {known}",
            disposition = format!("{disposition:?}"),
            known = known.dispositions.join(", ")
        );
        return Err(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, refusal));
    }
    Ok(())
}

/// `GET /api/dispositions` (agents, supervisors, admins).
async fn list(State(state): State<AppState>, Caller(caller): Caller) -> Result<Json<Dispositions>, ApiError> {
    caller.require(&[Role::Agent, Role::Supervisor, Role::Admin])?;
    Ok(Json(of(&state, &caller.t).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SetDispositions {
    dispositions: Vec<String>,
}

/// `PUT /api/admin/dispositions {dispositions: [...]}` (admins).
async fn set(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Body(body): Body<SetDispositions>,
) -> Result<Json<Dispositions>, ApiError> {
    caller.require(&[Role::Admin])?;
    let command = TenantCommand::SetDispositions(body.dispositions);
    witness_app::tenant::on_tenant_stream(&state.store, &caller.t, &caller.actor(), command).await?;
    Ok(Json(of(&state, &caller.t).await?))
}
