//! Prometheus metrics at `/metrics` (issue 29), in the text exposition
//! format. Readable with `--metrics-token`'s token or an admin's, or with no
//! token on `--metrics-listen`'s address (keep that one off public
//! networks). The figures are the whole instance's: in a deployment shared
//! by several tenants, give the operators the metrics token rather than the
//! tenants' admins.
//!
//! What is counted:
//!
//! - HTTP: requests by method, route (its template, never the ids in the
//!   path) and status; their latency by method and route.
//! - WebSocket connections open now.
//! - The store: events appended by this process, the appends' latency in
//!   the database, the log's last position; each read model's lag behind
//!   it, and the Kafka relay's with `--kafka`.
//! - Sessions by state and agents by presence (the read models).
//! - The SFU: packets forwarded, retransmitted on NACK, NACKs sent,
//!   keyframe requests relayed; media threads alive.
//!
//! Not yet: recorder queues and drops, the SFU's added latency, PLIs, Kafka
//! errors, retention sweeps, face checks (issue 29 leaves them open).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use witness_engine::metrics::{family, label, Histogram};

use crate::auth::Caller;
use crate::AppState;

/// HTTP requests seen, by (method, route, status), and their latencies by
/// (method, route).
#[derive(Debug, Default)]
pub struct Http {
    requests: Mutex<BTreeMap<(String, String, u16), u64>>,
    latency: Mutex<BTreeMap<(String, String), Arc<Histogram>>>,
}

/// Counts every request the router answers (a middleware).
pub(crate) async fn count(State(state): State<AppState>, request: Request, next: Next) -> Response {
    // Known methods only: a client inventing methods must not grow the table.
    let method = match *request.method() {
        axum::http::Method::GET => "GET",
        axum::http::Method::POST => "POST",
        axum::http::Method::PUT => "PUT",
        axum::http::Method::DELETE => "DELETE",
        axum::http::Method::PATCH => "PATCH",
        axum::http::Method::HEAD => "HEAD",
        axum::http::Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
    .to_owned();
    // The route's template (`/api/sessions/{id}`), so ids never become labels.
    let route = request.extensions().get::<MatchedPath>().map_or("unmatched", |p| p.as_str()).to_owned();
    let began = Instant::now();
    let response = next.run(request).await;
    let http = &state.http_metrics;
    let status = response.status().as_u16();
    *http.requests.lock().expect("metrics").entry((method.clone(), route.clone(), status)).or_default() += 1;
    let histogram = http.latency.lock().expect("metrics").entry((method, route)).or_default().clone();
    histogram.observe(began.elapsed());
    response
}

/// `GET /metrics` on the API's address: the metrics token or an admin's.
pub(crate) async fn guarded(
    State(state): State<AppState>,
    headers: HeaderMap,
    caller: Result<Caller, crate::ApiError>,
) -> Response {
    let bearer =
        headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    let by_token = bearer.zip(state.metrics_token.as_deref()).is_some_and(|(given, token)| same(token, given));
    let by_admin = caller.is_ok_and(|Caller(c)| c.r == witness_schemas::Role::Admin);
    if !(by_token || by_admin) {
        return crate::ApiError::new(
            StatusCode::UNAUTHORIZED,
            "metrics need `Authorization: Bearer` with the metrics token or an admin's token",
        )
        .into_response();
    }
    open(State(state)).await
}

/// Compares two secrets in time that does not depend on where they differ.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `GET /metrics` with no token: what `--metrics-listen` serves.
pub async fn open(State(state): State<AppState>) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], render(&state).await).into_response()
}

async fn render(state: &AppState) -> String {
    let mut out = String::new();
    {
        family(
            &mut out,
            "witness_http_requests_total",
            "counter",
            "HTTP requests answered, by method, route and status.",
        );
        for ((method, route, status), n) in state.http_metrics.requests.lock().expect("metrics").iter() {
            let _ = writeln!(
                out,
                "witness_http_requests_total{{method=\"{}\",route=\"{}\",status=\"{status}\"}} {n}",
                label(method),
                label(route)
            );
        }
        family(&mut out, "witness_http_request_duration_seconds", "histogram", "Time to answer HTTP requests.");
        for ((method, route), h) in state.http_metrics.latency.lock().expect("metrics").iter() {
            let labels = format!("method=\"{}\",route=\"{}\"", label(method), label(route));
            h.write(&mut out, "witness_http_request_duration_seconds", &labels);
        }
    }
    family(&mut out, "witness_websocket_connections", "gauge", "Live-feed WebSocket connections open now.");
    let _ = writeln!(out, "witness_websocket_connections {}", state.hub.sockets());

    let backend = state.store.backend_name();
    let (appends, appended) = state.store.append_metrics();
    family(&mut out, "witness_store_appended_events_total", "counter", "Events this process appended to the log.");
    let _ = writeln!(out, "witness_store_appended_events_total{{backend=\"{backend}\"}} {appended}");
    family(&mut out, "witness_store_append_duration_seconds", "histogram", "Time an append took in the database.");
    appends.write(&mut out, "witness_store_append_duration_seconds", &format!("backend=\"{backend}\""));
    if let Ok(head) = state.store.last_position().await {
        family(&mut out, "witness_store_last_position", "gauge", "The log's last event position.");
        let _ = writeln!(out, "witness_store_last_position {head}");
        if let Ok(lag) = state.projector.lag(head).await {
            family(
                &mut out,
                "witness_projection_lag_events",
                "gauge",
                "Events the furthest-behind read model has yet to project.",
            );
            let _ = writeln!(out, "witness_projection_lag_events {lag}");
        }
        if state.readiness.relay {
            if let Ok(at) = state.store.subscription_position(witness_engine::kafka::RELAY_CHECKPOINT).await {
                family(&mut out, "witness_kafka_relay_lag_events", "gauge", "Events not yet relayed to Kafka.");
                let _ = writeln!(out, "witness_kafka_relay_lag_events {}", head.saturating_sub(at));
            }
        }
    }
    if let Ok((sessions, agents)) = state.projector.census().await {
        family(&mut out, "witness_sessions", "gauge", "Sessions by state, all tenants (the read model).");
        for (status, n) in sessions {
            let _ = writeln!(out, "witness_sessions{{state=\"{}\"}} {n}", label(&status));
        }
        family(&mut out, "witness_agents", "gauge", "Agents by presence, all tenants (the read model).");
        for (presence, n) in agents {
            let _ = writeln!(out, "witness_agents{{presence=\"{}\"}} {n}", label(&presence));
        }
    }

    let media = &state.media;
    for (name, help, value) in [
        ("witness_sfu_forwarded_packets_total", "RTP packets the SFU forwarded.", media.forwarded_packets()),
        (
            "witness_sfu_retransmitted_packets_total",
            "Packets resent on a receiver's NACK.",
            media.retransmitted_packets(),
        ),
        ("witness_sfu_nacks_sent_total", "NACKs the SFU sent to senders.", media.nacks_sent()),
        (
            "witness_sfu_keyframe_requests_relayed_total",
            "Keyframe requests relayed to senders.",
            media.relayed_keyframe_requests(),
        ),
    ] {
        family(&mut out, name, "counter", help);
        let _ = writeln!(out, "{name} {value}");
    }
    let (alive, started) = media.threads_alive();
    family(&mut out, "witness_media_threads", "gauge", "Media threads, by whether they still run.");
    let _ = writeln!(out, "witness_media_threads{{state=\"alive\"}} {alive}");
    let _ = writeln!(out, "witness_media_threads{{state=\"stopped\"}} {}", started - alive);
    out
}
