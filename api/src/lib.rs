//! The Witness HTTP API (axum): REST for commands and reads, a WebSocket
//! for live events, documented in `api/openapi.json` (served at
//! `GET /api/openapi.json`).
//!
//! Every route but `/healthz`, `/api/openapi.json`, `/api/login` and
//! `/api/visitors` takes a bearer token ([`auth`]) that names the caller's
//! tenant and role. Each route checks the role, and loads what it touches
//! only from the caller's tenant: another tenant's id is a 404, exactly as
//! an id that does not exist. Commands go through the deciders
//! ([`witness_engine::executor::execute`]); a refused command writes
//! nothing and answers 409 or 422 with the decider's reason.
//!
//! The modules, one per area: [`accounts`] (login, visitors, users),
//! [`sessions`] (the customer's and agent's session routes, the bot's turn),
//! [`tickets`], [`supervision`] (queues, audit trail, event log), [`live`]
//! (the routing process and the WebSocket feed).
//!
//! [`app`] builds the router; serving it is the binary's job, so tests drive
//! it with `oneshot`:
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let url = "sqlite://data/witness.db";
//! let store = witness_engine::EventStore::connect(url).await?;
//! let keys = witness_api::auth::TokenKeys::random();
//! let uploads = witness_app::uploads::UploadStore::new("data/uploads", witness_app::uploads::DEFAULT_LIMIT);
//! let state = witness_api::AppState::new(store, url, keys, uploads).await?;
//! tokio::spawn(witness_api::live::run(state.store.clone(), state.hub.clone(), Default::default()));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! axum::serve(listener, witness_api::app(state)).await?;
//! # Ok(()) }
//! ```

// `refusal!` in every module: each error is made with it (see `error`).
#[macro_use]
extern crate witness_domain;

pub mod accounts;
pub mod auth;
pub mod bot;
pub mod calls;
pub(crate) mod cursor;
pub mod dispositions;
pub mod dual;
mod embed;
mod error;
pub mod face;
pub mod fields;
pub mod groups;
pub mod i18n;
pub mod kb;
pub mod limits;
pub mod live;
pub mod metrics;
pub mod qa;
pub mod recordings;
pub mod reports;
pub mod retention;
pub mod review;
pub mod server;
pub mod sessions;
pub mod settings;
mod streaming;
pub mod supervision;
pub mod tickets;
pub mod tls;
pub mod uploads;
mod views;

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use witness_engine::EventStore;
use witness_projections::Projector;
use witness_schemas::TenantId;

pub use error::{ApiError, Body};

/// The OpenAPI document of every route.
pub const OPENAPI: &str = include_str!("../openapi.json");

/// The pages, served by the API itself (no build step: plain HTML and JS).
const CUSTOMER_PAGE: &str = include_str!("../web/customer.html");
const AGENT_PAGE: &str = include_str!("../web/agent.html");
const ADMIN_PAGE: &str = include_str!("../web/admin.html");
const SUPERVISOR_PAGE: &str = include_str!("../web/supervisor.html");
const STYLE: &str = include_str!("../web/style.css");
const COMMON_JS: &str = include_str!("../web/common.js");
const CALL_JS: &str = include_str!("../web/call.js");
const FAVICON: &str = include_str!("../web/favicon.svg");
/// Each page's own script: no page has inline script, so the pages' CSP
/// allows scripts from this origin only.
const SCRIPTS: &[(&str, &str)] = &[
    ("/web/customer.js", include_str!("../web/customer.js")),
    ("/web/agent.js", include_str!("../web/agent.js")),
    ("/web/admin.js", include_str!("../web/admin.js")),
    ("/web/supervisor.js", include_str!("../web/supervisor.js")),
    ("/web/common.js", COMMON_JS),
    ("/web/call.js", CALL_JS),
];
/// Chart.js from npm, committed by `scripts/vendor-web.sh` (MIT, see
/// `web/vendor/chart.js-LICENSE.md`): the supervisor dashboard's charts.
const CHART_JS: &str = include_str!("../web/vendor/chart.umd.min.js");

/// A page: its template, the catalog keys its scripts use, and the tenant
/// whose language it is in when `?tenant=` names none: the customer page's
/// `demo`, as its script assumes; staff pages learn their tenant at sign-in
/// (then follow its language). Only the customer page may be framed, by
/// the web sites its tenant lists ([`embed`]).
struct Page {
    template: &'static str,
    prefixes: &'static [&'static str],
    tenant: Option<&'static str>,
    embeddable: bool,
}

const CUSTOMER: Page = Page {
    template: CUSTOMER_PAGE,
    prefixes: &["common.", "call.", "customer."],
    tenant: Some("demo"),
    embeddable: true,
};
const AGENT: Page =
    Page { template: AGENT_PAGE, prefixes: &["common.", "call.", "agent."], tenant: None, embeddable: false };
const ADMIN: Page = Page {
    template: ADMIN_PAGE,
    prefixes: &["common.", "timeline.", "event.", "admin."],
    tenant: None,
    embeddable: false,
};
const SUPERVISOR: Page = Page {
    template: SUPERVISOR_PAGE,
    prefixes: &["common.", "timeline.", "event.", "supervisor."],
    tenant: None,
    embeddable: false,
};

#[derive(Deserialize)]
struct PageQuery {
    lang: Option<String>,
    tenant: Option<String>,
}

/// `GET` of `page`.
fn page_route(page: &'static Page) -> axum::routing::MethodRouter<AppState> {
    get(move |State(state): State<AppState>, Query(query), headers: HeaderMap| async move {
        self::page(&state, page, query, &headers).await
    })
}

/// Serves `page` in the language asked for (`?lang=`), else the tenant's
/// (`?tenant=`, else the page's own), else the browser's
/// (`Accept-Language`), else Simplified Chinese.
async fn page(state: &AppState, page: &Page, query: PageQuery, headers: &HeaderMap) -> Response {
    let asked = query.lang.as_deref().and_then(i18n::Lang::from_tag);
    let known = match query.tenant.as_deref().or(page.tenant).and_then(|t| t.parse::<TenantId>().ok()) {
        Some(tenant) => witness_app::tenant::directory(&state.store, &tenant).await.ok().filter(|known| known.exists()),
        None => None,
    };
    let browser = || i18n::Lang::from_accept_language(headers.get(header::ACCEPT_LANGUAGE)?.to_str().ok()?);
    let lang = asked.or(known.as_ref().map(i18n::Lang::of_tenant)).or_else(browser).unwrap_or_default();
    let html = i18n::render_page(page.template, lang, page.prefixes);
    let mut response =
        ([(header::CONTENT_TYPE, "text/html; charset=utf-8"), (header::CACHE_CONTROL, "no-cache")], html)
            .into_response();
    if let Some(known) = known.filter(|known| page.embeddable && !known.embed_origins.is_empty()) {
        response.extensions_mut().insert(embed::FrameAncestors(known.embed_origins));
    }
    response
}

/// The raw value of `name` in a URL's query (`tenant=demo&lang=en`), where
/// a typed `Query` extractor does not fit (layers, extractors of their own).
pub(crate) fn query_value<'q>(query: Option<&'q str>, name: &str) -> Option<&'q str> {
    query?.split('&').find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
}

/// The largest JSON body a route takes (uploads and FAQ imports have their own limits).
pub const MAX_JSON_BODY: usize = 64 * 1024;

#[derive(Debug, Clone)]
pub struct AppState {
    pub store: EventStore,
    /// Reads the projections (queues, audit trail).
    pub projector: Arc<Projector>,
    pub keys: Arc<auth::TokenKeys>,
    pub hub: live::Hub,
    pub kb: kb::KnowledgeBase,
    pub uploads: witness_app::uploads::UploadStore,
    /// The knowledge-base confidence below which the bot is "not sure".
    pub bot_threshold: f64,
    /// The SFU carrying the calls.
    pub media: witness_media::server::MediaServer,
    /// Record every call from its start (else only on the agent's demand),
    /// for tenants that set no policy of their own.
    pub record_calls: bool,
    /// Composite renderings in progress.
    pub composites: recordings::Composites,
    /// Who fetched which recording file lately: which fetches are new
    /// accesses to record ([`recordings::Accesses`]).
    pub accesses: recordings::Accesses,
    /// Where `witness export --format parquet` writes: what reports query.
    pub export_dir: std::path::PathBuf,
    /// Where report queries run: in this process (the default), or in a
    /// worker process each (what `witness serve` sets).
    pub reports: witness_projections::reports::worker::Runner,
    /// How long a report query may run before it is stopped.
    pub report_timeout: std::time::Duration,
    /// Signs review packages (the instance's checkpoint key); without one,
    /// packages cannot be exported.
    pub package_signer: Option<Arc<witness_engine::CheckpointSigner>>,
    /// Face verification's models; without them its routes answer 503.
    pub face: Option<Arc<witness_face::FaceModel>>,
    /// Limits on visitor tokens and logins ([`limits`]).
    pub throttles: Arc<limits::Throttles>,
    /// Signed-out users' tokens, refused ([`auth::Revocations`]).
    pub revocations: Arc<auth::Revocations>,
    /// What `/readyz` checks against.
    pub readiness: Readiness,
    /// What `/metrics` counts in this process.
    pub metrics: Arc<metrics::Metrics>,
    /// A bearer token that reads `/metrics` (besides admins' tokens).
    pub metrics_token: Option<String>,
}

/// What `/readyz` holds this node to: the read models (and, with Kafka,
/// the relay) at most `max_lag` events behind the log's end.
#[derive(Debug, Clone, Copy)]
pub struct Readiness {
    pub max_lag: u64,
    /// Whether this node relays the log to Kafka (checked when so).
    pub relay: bool,
}

impl Default for Readiness {
    fn default() -> Self {
        Self { max_lag: 1_000, relay: false }
    }
}

impl AppState {
    /// State over `store`, reading projections from `url` (the store's own database).
    pub async fn new(
        store: EventStore,
        url: &str,
        keys: auth::TokenKeys,
        uploads: witness_app::uploads::UploadStore,
    ) -> Result<Self, witness_projections::ProjectionError> {
        let projector = Projector::connect(url, vec![]).await?;
        let (media, media_events) = witness_media::server::MediaServer::new(Default::default());
        let state = Self {
            store,
            projector: Arc::new(projector),
            keys: Arc::new(keys),
            hub: live::Hub::default(),
            kb: kb::KnowledgeBase::default(),
            uploads,
            bot_threshold: 0.4,
            media,
            record_calls: false,
            composites: Default::default(),
            accesses: Default::default(),
            export_dir: "data/export".into(),
            reports: Default::default(),
            report_timeout: reports::TIMEOUT,
            package_signer: None,
            face: None,
            throttles: Default::default(),
            revocations: Default::default(),
            readiness: Default::default(),
            metrics: Default::default(),
            metrics_token: None,
        };
        tokio::spawn(witness_app::media::record(state.store.clone(), media_events));
        tokio::spawn(live::follow_revocations(state.hub.clone(), state.revocations.clone()));
        Ok(state)
    }

    /// The same state with an SFU configured by `config` (ports, addresses,
    /// STUN/TURN) instead of the default (loopback, UDP 50000-50999).
    pub fn with_media(mut self, config: witness_media::server::MediaConfig) -> Self {
        let (media, media_events) = witness_media::server::MediaServer::new(config);
        self.media = media;
        tokio::spawn(witness_app::media::record(self.store.clone(), media_events));
        self
    }
}

/// What a page may load and do: scripts and styles from this origin only
/// (inline styles allowed, inline script not), media and images also as
/// `blob:` and `data:`, connections to this origin (its WebSocket
/// included), no plugins, no framing (the customer page: by its tenant's
/// web sites only, [`embed`]).
pub const PAGE_CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
    img-src 'self' data: blob:; media-src 'self' blob:; connect-src 'self'; object-src 'none'; \
    base-uri 'none'; form-action 'self'; frame-ancestors 'none'";
/// Everything that is not a page (JSON, uploads, recordings) is never a
/// document: opened directly, it runs nothing and is framed nowhere.
pub const RESOURCE_CSP: &str = "default-src 'none'; frame-ancestors 'none'; sandbox";

/// The headers every response carries (issue 27, L4): a CSP by kind, no
/// MIME sniffing, no referrer leaving the site, the camera, microphone
/// and screen for this origin only.
async fn security_headers(mut response: axum::response::Response) -> axum::response::Response {
    use axum::http::HeaderValue;
    let html = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/html"));
    let framers = response.extensions().get::<embed::FrameAncestors>().map(|f| f.0.join(" "));
    let headers = response.headers_mut();
    match framers {
        // The origins were checked when they were set: nothing but
        // `scheme://host[:port]` reaches the header.
        Some(framers) if html => {
            let csp = PAGE_CSP.replace("frame-ancestors 'none'", &format!("frame-ancestors 'self' {framers}"));
            headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_str(&csp).expect("a CSP of origins"));
        }
        _ => {
            let csp = if html { PAGE_CSP } else { RESOURCE_CSP };
            headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(csp));
            headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
        }
    }
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    headers.insert(
        header::HeaderName::from_static("permissions-policy"),
        HeaderValue::from_static(
            "camera=(self), microphone=(self), display-capture=(self), geolocation=(), payment=(), usb=()",
        ),
    );
    response
}

/// The whole HTTP surface.
pub fn app(state: AppState) -> Router {
    let scripts = SCRIPTS.iter().fold(Router::new(), |router, (path, script)| {
        router.route(
            path,
            get(move || async move { ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8")], *script) }),
        )
    });
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics::guarded))
        .route("/api/openapi.json", get(|| async { ([(header::CONTENT_TYPE, "application/json")], OPENAPI) }))
        .route("/api/ws", get(live::ws))
        .route("/", page_route(&CUSTOMER))
        .route("/agent", page_route(&AGENT))
        .route("/admin", page_route(&ADMIN))
        .route("/supervisor", page_route(&SUPERVISOR))
        .route("/web/style.css", get(|| async { ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], STYLE) }))
        .route("/web/favicon.svg", get(|| async { ([(header::CONTENT_TYPE, "image/svg+xml")], FAVICON) }))
        .merge(scripts)
        .route(
            "/web/vendor/chart.umd.min.js",
            get(|| async {
                let headers = [
                    (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
                    (header::CACHE_CONTROL, "public, max-age=3600"),
                ];
                (headers, CHART_JS)
            }),
        )
        .merge(accounts::router())
        .merge(sessions::router())
        .merge(groups::router())
        .merge(dispositions::router())
        .merge(settings::router())
        .merge(calls::router())
        .merge(recordings::router())
        .merge(tickets::router())
        .merge(kb::router())
        .merge(uploads::router(state.uploads.limit))
        .merge(supervision::router())
        .merge(reports::router())
        .merge(retention::router())
        .merge(qa::router())
        .merge(dual::router())
        .merge(face::router())
        .merge(review::router())
        .merge(embed::router())
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, refusal!("no_route", "no such route")) })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                refusal!("wrong_method", "this route does not take that method"),
            )
        })
        .layer(DefaultBodyLimit::max(MAX_JSON_BODY))
        .layer(axum::middleware::from_fn_with_state(state.clone(), embed::cross_origin))
        .layer(axum::middleware::map_response(security_headers))
        .layer(axum::middleware::from_fn(error::localize))
        .layer(axum::middleware::from_fn_with_state(state.clone(), metrics::count))
        .with_state(state)
}

#[derive(Serialize)]
struct Health {
    status: &'static str,
    backend: &'static str,
}

/// Liveness: the process answers. Unauthenticated, so it says nothing about
/// the data (no event count: that told anyone every tenant's volume).
async fn healthz(State(state): State<AppState>) -> Json<Health> {
    Json(Health { status: "ok", backend: state.store.backend_name() })
}

/// One readiness check: passed, or why not.
#[derive(Serialize)]
struct Check {
    ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<String>,
}

#[derive(Serialize)]
struct Ready {
    status: &'static str,
    checks: std::collections::BTreeMap<&'static str, Check>,
}

/// Readiness, for a load balancer: 200 when the store answers, its schema
/// is this build's, the read models (and with Kafka the relay) are within
/// [`Readiness::max_lag`] events of the log's end, and every media thread
/// runs; else 503 naming what failed. Unauthenticated like `/healthz`: it
/// tells no volumes (a lag only when it is too long). Each database check
/// gets 2 s.
async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Ready>) {
    const WITHIN: std::time::Duration = std::time::Duration::from_secs(2);
    let late = || "did not answer within 2 s".to_owned();
    let mut checks = std::collections::BTreeMap::new();
    let mut check = |name, result: Result<(), String>| {
        checks.insert(name, Check { ok: result.is_ok(), detail: result.err() });
    };
    let head = match tokio::time::timeout(WITHIN, state.store.last_position()).await {
        Ok(Ok(head)) => Ok(head),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(late()),
    };
    check("store", head.as_ref().map(|_| ()).map_err(Clone::clone));
    let migrations = match tokio::time::timeout(WITHIN, state.store.migrations()).await {
        Ok(Ok((applied, known))) if applied == known => Ok(()),
        Ok(Ok((applied, known))) => Err(format!("the database has {applied} migrations, this build knows {known}")),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(late()),
    };
    check("migrations", migrations);
    let max = state.readiness.max_lag;
    let within = |what: &str, lag: u64| {
        if lag <= max {
            Ok(())
        } else {
            Err(format!("{what} {lag} events behind the log (at most {max})"))
        }
    };
    if let Ok(head) = head {
        let projections = match tokio::time::timeout(WITHIN, state.projector.lag(head)).await {
            Ok(Ok(lag)) => within("the read models are", lag),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(late()),
        };
        check("projections", projections);
        if state.readiness.relay {
            let relay = witness_engine::kafka::RELAY_CHECKPOINT;
            let relayed = match tokio::time::timeout(WITHIN, state.store.subscription_position(relay)).await {
                Ok(Ok(at)) => within("the Kafka relay is", head.saturating_sub(at)),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err(late()),
            };
            check("kafka_relay", relayed);
        }
    }
    let (alive, started) = state.media.threads_alive();
    check(
        "media",
        if alive == started { Ok(()) } else { Err(format!("{} of {started} media threads stopped", started - alive)) },
    );
    let ready = checks.values().all(|c| c.ok);
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(Ready { status: if ready { "ready" } else { "not ready" }, checks }))
}

#[cfg(test)]
mod tests;
