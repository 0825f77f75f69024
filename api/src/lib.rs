//! The Witness HTTP API (axum).
//!
//! Today: `GET /healthz` and a read-only view of the global event log,
//! `GET /api/events?from=CURSOR&limit=N`. Accounts, tenants, chat, WebSocket
//! signalling and the pages arrive with the API work (see ARCHITECTURE.md).
//! Until then the event view has no authentication: `witness serve` listens
//! on loopback by default.
//!
//! [`app`] builds the router from an [`AppState`]; serving it is the
//! binary's job, so tests drive the router directly:
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let store = witness_engine::EventStore::connect("sqlite://data/witness.db").await?;
//! let router = witness_api::app(witness_api::AppState { store });
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! axum::serve(listener, router).await?;
//! # Ok(()) }
//! ```

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use witness_engine::{EventStore, StoreError};
use witness_schemas::{Cursor, RecordedEvent};

/// The most events one `GET /api/events` returns.
pub const MAX_PAGE: usize = 1_000;
const DEFAULT_PAGE: usize = 100;

#[derive(Debug, Clone)]
pub struct AppState {
    pub store: EventStore,
}

/// The whole HTTP surface.
pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/api/events", get(events))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no such route") })
        .with_state(state)
}

/// An error answer: a status and a message for the caller, as
/// `{"error": "..."}`. Internal details go to the log, never to the caller.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self { status, message: message.into() }
    }

    fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        tracing::error!(error = %e, "store error");
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "the event store is unavailable")
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(serde_json::json!({ "error": self.message }))).into_response()
    }
}

#[derive(Serialize)]
struct Health {
    status: &'static str,
    backend: &'static str,
    events: u64,
}

async fn healthz(State(state): State<AppState>) -> Result<Json<Health>, ApiError> {
    let events = state.store.count().await?;
    Ok(Json(Health { status: "ok", backend: state.store.backend_name(), events }))
}

/// Query strings are taken as text and parsed here, so that a bad value gets
/// a JSON error naming it rather than axum's plain-text rejection.
#[derive(Deserialize)]
struct EventsQuery {
    from: Option<String>,
    limit: Option<String>,
}

#[derive(Serialize)]
struct EventsPage {
    events: Vec<RecordedEvent>,
    /// Pass as `from` to get the next page.
    next: Cursor,
}

async fn events(
    State(state): State<AppState>,
    query: Result<Query<EventsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<EventsPage>, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let from = match q.from.as_deref() {
        None | Some("") => Cursor::START,
        Some(text) => text.parse().map_err(|e| ApiError::bad_request(format!("`from`: {e}")))?,
    };
    let limit = match q.limit.as_deref() {
        None => DEFAULT_PAGE,
        Some(text) => match text.parse::<usize>() {
            Ok(n) if (1..=MAX_PAGE).contains(&n) => n,
            _ => {
                return Err(ApiError::bad_request(format!(
                    "`limit` must be an integer from 1 to {MAX_PAGE}, got {text:?}"
                )))
            }
        },
    };
    let events = state.store.read_all(from, limit).await?;
    let next = events.last().map_or(from, |e| e.cursor());
    Ok(Json(EventsPage { events, next }))
}

#[cfg(test)]
mod tests;
