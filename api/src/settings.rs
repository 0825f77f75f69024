//! The tenant's settings every page needs (`GET /api/settings`): its time
//! zone (an admin sets it with `PUT /api/admin/time-zone`, a `TimeZoneSet`
//! event; until then Beijing time) and its default language (`PUT
//! /api/admin/locale`, a `TenantLocaleSet` event; until then `zh-CN`).

use axum::extract::State;
use axum::routing::{get, put};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use witness_domain::tenant::TenantCommand;
use witness_schemas::{Role, TenantId};

use crate::auth::Caller;
use crate::{ApiError, AppState, Body};

pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/api/settings", get(show))
        .route("/api/admin/time-zone", put(set_time_zone))
        .route("/api/admin/locale", put(set_locale))
        .route("/api/admin/embed-origins", put(set_embed_origins))
}

#[derive(Serialize)]
struct Settings {
    /// The caller's tenant, as `data-tenant` of the widget names it.
    tenant: TenantId,
    /// Minutes east of UTC.
    utc_offset_minutes: i32,
    /// The zone's label, `UTC+08:00`.
    time_zone: String,
    /// False while the tenant has set none (Beijing time).
    time_zone_set_by_tenant: bool,
    /// The tenant's default language: `zh-CN` (until set) or `en`.
    locale: String,
    /// The web sites that may embed the customer page (`/widget.js`).
    embed_origins: Vec<String>,
}

/// `UTC+08:00` for 480 minutes east of UTC.
pub fn zone_label(utc_offset_minutes: i32) -> String {
    let sign = if utc_offset_minutes < 0 { '-' } else { '+' };
    let minutes = utc_offset_minutes.unsigned_abs();
    format!("UTC{sign}{:02}:{:02}", minutes / 60, minutes % 60)
}

async fn of(state: &AppState, tenant: &TenantId) -> Result<Settings, ApiError> {
    let known = witness_app::tenant::directory(&state.store, tenant).await?;
    let utc_offset_minutes = known.utc_offset_minutes();
    Ok(Settings {
        tenant: tenant.clone(),
        utc_offset_minutes,
        time_zone: zone_label(utc_offset_minutes),
        time_zone_set_by_tenant: known.time_zone.is_some(),
        locale: known.locale().to_owned(),
        embed_origins: known.embed_origins,
    })
}

/// `GET /api/settings` (staff).
async fn show(State(state): State<AppState>, Caller(caller): Caller) -> Result<Json<Settings>, ApiError> {
    caller.require(&[Role::Agent, Role::Supervisor, Role::Admin, Role::Compliance])?;
    Ok(Json(of(&state, &caller.t).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SetTimeZone {
    utc_offset_minutes: i32,
}

/// `PUT /api/admin/time-zone {utc_offset_minutes}` (admins).
async fn set_time_zone(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Body(body): Body<SetTimeZone>,
) -> Result<Json<Settings>, ApiError> {
    caller.require(&[Role::Admin])?;
    let command = TenantCommand::SetTimeZone(body.utc_offset_minutes);
    witness_app::tenant::on_tenant_stream(&state.store, &caller.t, &caller.actor(), command).await?;
    Ok(Json(of(&state, &caller.t).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SetLocale {
    locale: String,
}

/// `PUT /api/admin/locale {locale}` (admins): `zh-CN` or `en`.
async fn set_locale(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Body(body): Body<SetLocale>,
) -> Result<Json<Settings>, ApiError> {
    caller.require(&[Role::Admin])?;
    let command = TenantCommand::SetLocale(body.locale);
    witness_app::tenant::on_tenant_stream(&state.store, &caller.t, &caller.actor(), command).await?;
    Ok(Json(of(&state, &caller.t).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SetEmbedOrigins {
    origins: Vec<String>,
}

/// `PUT /api/admin/embed-origins {origins}` (admins): the web sites that
/// may embed the customer page, all of them (`https://www.bank.example`).
async fn set_embed_origins(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Body(body): Body<SetEmbedOrigins>,
) -> Result<Json<Settings>, ApiError> {
    caller.require(&[Role::Admin])?;
    let command = TenantCommand::SetEmbedOrigins(body.origins);
    witness_app::tenant::on_tenant_stream(&state.store, &caller.t, &caller.actor(), command).await?;
    Ok(Json(of(&state, &caller.t).await?))
}

#[cfg(test)]
mod tests {
    #[test]
    fn zones_are_labelled_with_sign_hours_and_minutes() {
        assert_eq!(super::zone_label(480), "UTC+08:00");
        assert_eq!(super::zone_label(0), "UTC+00:00");
        assert_eq!(super::zone_label(-210), "UTC-03:30");
        assert_eq!(super::zone_label(345), "UTC+05:45");
    }
}
