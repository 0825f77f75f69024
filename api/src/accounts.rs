//! Tenants, users, logins and visitor tokens.
//!
//! The directory (a tenant and its users) is the `tenant-<slug>` stream,
//! decided by [`witness_domain::tenant::Tenant`]; password hashes
//! are in the store's credentials table. [`create_tenant`] and
//! [`create_user`] are what `witness admin` and the demo start call.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::Utc;
use serde::{Deserialize, Serialize};
use uuid::Uuid;
use witness_domain::tenant::{Tenant, TenantCommand};
use witness_engine::executor::execute;
use witness_engine::EventStore;
use witness_schemas::{Actor, Channel, Role, StreamId, TenantId, UserId};

use crate::auth::{Caller, Claims};
use crate::server::Peer;
use crate::{ApiError, AppState, Body};
use witness_app::credentials::{random_password, verify_password};
use witness_app::tenant::{create_tenant, create_user};

pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/api/login", post(login))
        .route("/api/visitors", post(visitor))
        .route("/api/links", post(links))
        .route("/api/logout", post(logout))
        .route("/api/admin/users", get(list_users).post(add_user))
        .route("/api/agents", get(list_agents))
        .route("/api/admin/users/{id}/revoke", post(revoke_user))
}

/// The demo tenant's FAQ, in Chinese and in English.
const DEMO_FAQ: [&str; 2] = [include_str!("../../examples/faq-zh.md"), include_str!("../../examples/faq.md")];

/// The logins the demo start prints.
#[derive(Debug, Clone)]
pub struct DemoLogin {
    pub login: &'static str,
    pub role: Role,
    pub password: String,
}

/// On an empty store (a fresh data dir), creates the tenant `demo` with one
/// user per staff role and the FAQ in `examples/faq-zh.md` and
/// `examples/faq.md`, and returns the logins; otherwise does nothing.
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
    let entries = DEMO_FAQ
        .iter()
        .flat_map(|faq| crate::kb::parse(crate::kb::Format::Markdown, faq).expect("the demo FAQ parses"))
        .collect();
    let command = TenantCommand::ImportFaq { entries };
    witness_app::tenant::on_tenant_stream(store, &tenant, &Actor::system(), command).await?;
    Ok(logins)
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
    /// The tenant's time zone, as minutes east of UTC: the pages show
    /// every time in it.
    utc_offset_minutes: i32,
    /// The tenant's default language (`zh-CN`, `en`): the pages switch to
    /// it unless the person chose one.
    locale: String,
}

/// One answer for every failure, so that a caller cannot probe which
/// tenants or logins exist.
fn bad_login() -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, refusal!("bad_login", "wrong tenant, login or password"))
}

/// Logs a user in. Throttled per address (attempts) and per login
/// (failures), and a login that does not exist costs one password check
/// like one that does, so neither guessing nor timing tells which exist.
async fn login(
    State(state): State<AppState>,
    Peer(peer): Peer,
    Body(req): Body<LoginRequest>,
) -> Result<Json<LoginAnswer>, ApiError> {
    let throttles = &state.throttles;
    if let Some(ip) = peer {
        throttles.logins.take(&ip).map_err(|s| crate::limits::refuse(crate::limits::Limited::Logins, s))?;
    }
    let (tenant, user, utc_offset_minutes, locale) = match req.tenant.parse::<TenantId>() {
        Ok(tenant) => {
            let known = witness_app::tenant::directory(&state.store, &tenant).await?;
            (Some(tenant), known.users.get(&req.login).cloned(), known.utc_offset_minutes(), known.locale().to_owned())
        }
        Err(_) => (None, None, 0, String::new()),
    };
    let failures_key = tenant.clone().map(|t| (t, req.login.clone()));
    if let Some(key) = &failures_key {
        throttles
            .login_failures
            .check(key)
            .map_err(|s| crate::limits::refuse(crate::limits::Limited::LoginFailures, s))?;
    }
    let hash = match &user {
        Some(user) => state.store.credential(user.user_id).await?,
        None => None,
    };
    let password = req.password;
    throttles.password_checks.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    // argon2 takes tens of milliseconds of CPU: off the async workers.
    let ok = tokio::task::spawn_blocking(move || match hash {
        Some(hash) => verify_password(&password, &hash),
        None => {
            verify_password(&password, crate::auth::decoy_hash());
            false
        }
    })
    .await
    .unwrap_or(false);
    let (Some(tenant), Some(user), true) = (tenant, user, ok) else {
        if let Some(key) = &failures_key {
            let _ = throttles.login_failures.take(key);
        }
        return Err(bad_login());
    };
    if let Some(key) = &failures_key {
        throttles.login_failures.forget(key);
    }
    let claims = Claims { t: tenant, s: user.user_id.to_string(), r: user.role, c: None, e: 0, i: 0 };
    Ok(Json(LoginAnswer {
        token: state.keys.issue(claims, Utc::now()),
        user_id: user.user_id,
        role: user.role,
        display_name: user.display_name.clone(),
        utc_offset_minutes,
        locale,
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LinksRequest {
    urls: Vec<String>,
}

/// Whether a link may be made for `path`: files a browser loads without
/// headers (uploads, recordings, review packages), nothing else.
fn linkable(path: &str) -> bool {
    let session = |rest: &str| rest.contains("/recordings/") || rest.ends_with("/review/package");
    path.starts_with("/api/uploads/") || path.strip_prefix("/api/sessions/").is_some_and(session)
}

/// `POST /api/links {urls}` (any caller): each URL with a link appended
/// (`?link=…`, see [`crate::auth`]) that opens it as the caller for
/// [`crate::auth::LINK_TTL`]. Making a link grants nothing: the file's
/// route checks the caller when the link is used.
async fn links(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Body(req): Body<LinksRequest>,
) -> Result<Json<serde_json::Value>, ApiError> {
    if req.urls.is_empty() || req.urls.len() > 100 {
        return Err(ApiError::bad_request(refusal!("link_count", "`urls`: 1 to 100 of them")));
    }
    let now = Utc::now();
    let urls = req
        .urls
        .iter()
        .map(|url| {
            let (path, query) = url.split_once('?').map_or((url.as_str(), None), |(p, q)| (p, Some(q)));
            let carries = |name: &str| query.is_some_and(|q| q.split('&').any(|kv| kv.starts_with(name)));
            if url.len() > 1024 || !linkable(path) || carries("link=") || carries("token=") {
                return Err(ApiError::bad_request(refusal!(
                    "no_link_for",
                    "no link for {url}: links are made for uploads, recordings and review packages",
                    url = format!("{url:?}")
                )));
            }
            let separator = if query.is_some() { '&' } else { '?' };
            Ok(format!("{url}{separator}link={}", state.keys.link(&caller, path, now)))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Json(serde_json::json!({ "urls": urls, "expires_in_s": crate::auth::LINK_TTL.num_seconds() })))
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
    Peer(peer): Peer,
    cross: Option<axum::Extension<crate::embed::CrossOrigin>>,
    Body(req): Body<VisitorRequest>,
) -> Result<(StatusCode, Json<VisitorAnswer>), ApiError> {
    if let Some(ip) = peer {
        state.throttles.visitors.take(&ip).map_err(|s| crate::limits::refuse(crate::limits::Limited::Visitors, s))?;
    }
    let tenant: TenantId =
        req.tenant.parse().map_err(|_| ApiError::not_found(refusal!("no_tenant", "no such tenant")))?;
    crate::embed::same_tenant(cross.as_deref(), &tenant)?;
    if !witness_app::tenant::directory(&state.store, &tenant).await?.exists() {
        return Err(ApiError::not_found(refusal!("no_tenant", "no such tenant")));
    }
    let visitor_id = format!("visitor-{}", Uuid::now_v7());
    let claims = Claims { t: tenant, s: visitor_id.clone(), r: Role::Customer, c: Some(req.channel), e: 0, i: 0 };
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

/// `POST /api/logout` (staff): signs the caller out everywhere. Every token
/// of theirs issued until now is refused from now on, on every node, and
/// the sockets opened with them are closed (`UserTokensRevoked`).
async fn logout(State(state): State<AppState>, Caller(caller): Caller) -> Result<StatusCode, ApiError> {
    caller.require(&[Role::Agent, Role::Supervisor, Role::Compliance, Role::Admin])?;
    revoke(&state, &caller, caller.user_id()?, "signed out").await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /api/admin/users/{id}/revoke` (admins): as a sign-out of that
/// user, for a lost phone or a departure.
async fn revoke_user(
    State(state): State<AppState>,
    Caller(caller): Caller,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Result<StatusCode, ApiError> {
    caller.require(&[Role::Admin])?;
    let user: UserId = id.parse().map_err(|_| ApiError::not_found(refusal!("no_user", "no such user")))?;
    if witness_app::tenant::directory(&state.store, &caller.t).await?.user(user).is_none() {
        return Err(ApiError::not_found(refusal!("no_user", "no such user")));
    }
    revoke(&state, &caller, user, "revoked by an admin").await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn revoke(state: &AppState, by: &Claims, user_id: UserId, reason: &str) -> Result<(), ApiError> {
    let before = Utc::now();
    let command = TenantCommand::RevokeTokens { user_id, before, reason: reason.to_owned() };
    execute::<Tenant>(&state.store, &by.t, &StreamId::tenant(&by.t), &by.actor(), before, command).await?;
    state.revocations.note(&witness_schemas::UserTokensRevoked { user_id, before, reason: reason.to_owned() });
    Ok(())
}

async fn list_users(State(state): State<AppState>, Caller(caller): Caller) -> Result<Json<Vec<UserView>>, ApiError> {
    caller.require(&[Role::Admin])?;
    Ok(Json(users(&state, &caller, |_| true).await?))
}

/// `GET /api/agents`: the tenant's agents by name (supervisors,
/// compliance, admins), to pick one by name rather than by id.
async fn list_agents(State(state): State<AppState>, Caller(caller): Caller) -> Result<Json<Vec<UserView>>, ApiError> {
    caller.require(&[Role::Supervisor, Role::Compliance, Role::Admin])?;
    Ok(Json(users(&state, &caller, |u| u.role == Role::Agent).await?))
}

async fn users(
    state: &AppState,
    caller: &Claims,
    wanted: impl Fn(&witness_domain::tenant::User) -> bool,
) -> Result<Vec<UserView>, ApiError> {
    let dir = witness_app::tenant::directory(&state.store, &caller.t).await?;
    Ok(dir
        .users
        .into_values()
        .filter(|u| wanted(u))
        .map(|u| UserView { user_id: u.user_id, login: u.login, role: u.role, display_name: u.display_name })
        .collect())
}
