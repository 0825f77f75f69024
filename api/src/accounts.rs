//! Tenants, users, logins and visitor tokens.
//!
//! The directory (a tenant and its users) is the `tenant-<slug>` stream,
//! decided by [`witness_engine::domain::tenant::Tenant`]; password hashes
//! are in the store's credentials table. [`create_tenant`] and
//! [`create_user`] are what `witness admin` and the demo start call.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::Utc;
use serde::{Deserialize, Serialize};
use uuid::Uuid;
use witness_engine::domain::tenant::{Tenant, TenantCommand, TenantState};
use witness_engine::domain::Decider;
use witness_engine::executor::execute;
use witness_engine::EventStore;
use witness_schemas::{Actor, Channel, Role, StreamId, TenantId, UserId};

use crate::auth::{hash_password, verify_password, Caller, Claims};
use crate::{ApiError, AppState, Body};

/// The shortest password an account may have.
pub const MIN_PASSWORD: usize = 10;

pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/api/login", post(login))
        .route("/api/visitors", post(visitor))
        .route("/api/admin/users", get(list_users).post(add_user))
}

/// A fresh password for a generated account (the demo start, `witness
/// admin user create` without one): 16 characters from 96 random bits.
pub fn random_password() -> String {
    use base64::Engine;
    use rand_core::RngCore;
    let mut bytes = [0u8; 12];
    rand_core::OsRng.fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The demo tenant's FAQ.
const DEMO_FAQ: &str = include_str!("../../examples/faq.md");

/// The logins the demo start prints.
#[derive(Debug, Clone)]
pub struct DemoLogin {
    pub login: &'static str,
    pub role: Role,
    pub password: String,
}

/// On an empty store (a fresh data dir), creates the tenant `demo` with one
/// user per staff role and the FAQ in `examples/faq.md`, and returns the
/// logins; otherwise does nothing.
pub async fn demo_start(store: &EventStore) -> Result<Vec<DemoLogin>, ApiError> {
    if store.count().await? > 0 {
        return Ok(vec![]);
    }
    let tenant: TenantId = "demo".parse().expect("valid slug");
    create_tenant(store, &tenant, "Witness demo").await?;
    let mut logins = vec![];
    for (login, role, name) in [
        ("agent", Role::Agent, "Demo Agent"),
        ("supervisor", Role::Supervisor, "Demo Supervisor"),
        ("compliance", Role::Compliance, "Demo Compliance Officer"),
        ("admin", Role::Admin, "Demo Admin"),
    ] {
        let password = random_password();
        create_user(store, &tenant, &Actor::system(), login, role, name, &password).await?;
        logins.push(DemoLogin { login, role, password });
    }
    let entries = crate::kb::parse(crate::kb::Format::Markdown, DEMO_FAQ).expect("the demo FAQ parses");
    let command = TenantCommand::ImportFaq { entries };
    execute::<Tenant>(store, &tenant, &StreamId::tenant(&tenant), &Actor::system(), Utc::now(), command).await?;
    Ok(logins)
}

/// The tenant's directory as of now.
pub async fn directory(store: &EventStore, tenant: &TenantId) -> Result<TenantState, ApiError> {
    let events = store.read_stream(&StreamId::tenant(tenant), 1).await?;
    let events = crate::error::decode_stream(&events, "the tenant directory")?;
    Ok(Tenant::fold(&events))
}

pub async fn create_tenant(store: &EventStore, tenant: &TenantId, name: &str) -> Result<(), ApiError> {
    let command = TenantCommand::Create { name: name.to_owned() };
    execute::<Tenant>(store, tenant, &StreamId::tenant(tenant), &Actor::system(), Utc::now(), command).await?;
    Ok(())
}

/// Adds a user and sets their password. Returns their id.
pub async fn create_user(
    store: &EventStore,
    tenant: &TenantId,
    by: &Actor,
    login: &str,
    role: Role,
    display_name: &str,
    password: &str,
) -> Result<UserId, ApiError> {
    if password.chars().count() < MIN_PASSWORD {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("a password needs at least {MIN_PASSWORD} characters"),
        ));
    }
    let user_id = UserId::new();
    let command =
        TenantCommand::AddUser { user_id, login: login.to_owned(), role, display_name: display_name.to_owned() };
    execute::<Tenant>(store, tenant, &StreamId::tenant(tenant), by, Utc::now(), command).await?;
    store.save_credential(user_id, &hash_password(password)).await?;
    Ok(user_id)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginRequest {
    tenant: String,
    login: String,
    password: String,
}

#[derive(Serialize)]
pub(crate) struct LoginAnswer {
    token: String,
    user_id: UserId,
    role: Role,
    display_name: String,
}

/// One answer for every failure, so that a caller cannot probe which
/// tenants or logins exist.
fn bad_login() -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, "wrong tenant, login or password")
}

async fn login(State(state): State<AppState>, Body(req): Body<LoginRequest>) -> Result<Json<LoginAnswer>, ApiError> {
    let tenant: TenantId = req.tenant.parse().map_err(|_| bad_login())?;
    let dir = directory(&state.store, &tenant).await?;
    let user = dir.users.get(&req.login).ok_or_else(bad_login)?;
    let hash = state.store.credential(user.user_id).await?.ok_or_else(bad_login)?;
    let password = req.password;
    // argon2 takes tens of milliseconds of CPU: off the async workers.
    let ok = tokio::task::spawn_blocking(move || verify_password(&password, &hash)).await.unwrap_or(false);
    if !ok {
        return Err(bad_login());
    }
    let claims = Claims { t: tenant, s: user.user_id.to_string(), r: user.role, c: None, e: 0 };
    Ok(Json(LoginAnswer {
        token: state.keys.issue(claims, Utc::now()),
        user_id: user.user_id,
        role: user.role,
        display_name: user.display_name.clone(),
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VisitorRequest {
    tenant: String,
    #[serde(default = "web")]
    channel: Channel,
}

fn web() -> Channel {
    Channel::Web
}

#[derive(Serialize)]
struct VisitorAnswer {
    token: String,
    visitor_id: String,
}

/// A customer's token: anonymous, per channel, tied to a fresh visitor id.
async fn visitor(
    State(state): State<AppState>,
    Body(req): Body<VisitorRequest>,
) -> Result<(StatusCode, Json<VisitorAnswer>), ApiError> {
    let tenant: TenantId = req.tenant.parse().map_err(|_| ApiError::not_found("tenant"))?;
    if !directory(&state.store, &tenant).await?.exists() {
        return Err(ApiError::not_found("tenant"));
    }
    let visitor_id = format!("visitor-{}", Uuid::now_v7());
    let claims = Claims { t: tenant, s: visitor_id.clone(), r: Role::Customer, c: Some(req.channel), e: 0 };
    Ok((StatusCode::CREATED, Json(VisitorAnswer { token: state.keys.issue(claims, Utc::now()), visitor_id })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewUser {
    login: String,
    role: Role,
    display_name: String,
    password: String,
}

#[derive(Serialize)]
struct UserView {
    user_id: UserId,
    login: String,
    role: Role,
    display_name: String,
}

async fn add_user(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Body(req): Body<NewUser>,
) -> Result<(StatusCode, Json<UserView>), ApiError> {
    caller.require(&[Role::Admin])?;
    let user_id =
        create_user(&state.store, &caller.t, &caller.actor(), &req.login, req.role, &req.display_name, &req.password)
            .await?;
    Ok((
        StatusCode::CREATED,
        Json(UserView { user_id, login: req.login, role: req.role, display_name: req.display_name }),
    ))
}

async fn list_users(State(state): State<AppState>, Caller(caller): Caller) -> Result<Json<Vec<UserView>>, ApiError> {
    caller.require(&[Role::Admin])?;
    let dir = directory(&state.store, &caller.t).await?;
    Ok(Json(
        dir.users
            .into_values()
            .map(|u| UserView { user_id: u.user_id, login: u.login, role: u.role, display_name: u.display_name })
            .collect(),
    ))
}
