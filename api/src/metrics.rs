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
//!   it (by `projection`); with `--kafka`, the relay's lag and the Kafka
//!   errors met.
//! - Sessions by state, agents by presence, and the longest wait in the
//!   queues now (the read models, the same from every node); the waits of
//!   the sessions this node assigned, from queued to assigned.
//! - The SFU: calls (rooms), participants and tracks now; packets and bytes
//!   forwarded, the latency the SFU adds to each, packets retransmitted on
//!   NACK, NACKs and PLIs sent, keyframe requests relayed; media threads
//!   alive.
//! - The recorders: packets queued to be written and dropped, segments
//!   closed, recordings interrupted.
//! - Retention sweeps by outcome and what they deleted; face checks by
//!   decision and how long each took.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use witness_schemas::metrics::{family, label, Counter, Histogram};
use witness_schemas::FaceDecision;

use crate::auth::Caller;
use crate::AppState;

/// What this process counts itself (the rest is read from the store, the
/// read models and the media server when `/metrics` is asked).
#[derive(Debug, Default)]
pub struct Metrics {
    /// HTTP requests seen, by (method, route, status).
    requests: Mutex<BTreeMap<(String, String, u16), u64>>,
    /// Their latencies by (method, route).
    latency: Mutex<BTreeMap<(String, String), Arc<Histogram>>>,
    /// How long the sessions this node assigned waited in their queue.
    pub queue_wait: Histogram,
    /// Background retention sweeps that finished and that failed.
    pub retention_sweeps: Counter,
    pub retention_failures: Counter,
    /// Sessions' files and personal data they deleted.
    pub retention_deleted: Counter,
    /// Face checks by decision, in [`FACE_DECISIONS`]' order.
    face_checks: [Counter; 3],
    /// How long a face check took, from its frames received to its
    /// decision (faces found, compared, liveness judged, frames stored).
    face_latency: Histogram,
}

/// The face checks' decisions and their labels.
const FACE_DECISIONS: [(FaceDecision, &str); 3] =
    [(FaceDecision::Match, "match"), (FaceDecision::NoMatch, "no_match"), (FaceDecision::Inconclusive, "inconclusive")];

impl Metrics {
    /// A face check decided `decision` after `took`.
    pub fn face_check(&self, decision: FaceDecision, took: std::time::Duration) {
        if let Some(i) = FACE_DECISIONS.iter().position(|(d, _)| *d == decision) {
            self.face_checks[i].add(1);
        }
        self.face_latency.observe(took);
    }
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
    let http = &state.metrics;
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
            refusal!(
                "metrics_token",
                "metrics need `Authorization: Bearer` with the metrics token or an admin's token"
            ),
        )
        .into_response();
    }
    open(State(state)).await
}

/// Compares two secrets in time that does not depend on where they differ.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A family of one unlabelled sample.
fn one(out: &mut String, name: &str, kind: &str, help: &str, value: impl std::fmt::Display) {
    family(out, name, kind, help);
    let _ = writeln!(out, "{name} {value}");
}

/// `GET /metrics` with no token: what `--metrics-listen` serves.
pub async fn open(State(state): State<AppState>) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], render(&state).await).into_response()
}

pub(crate) async fn render(state: &AppState) -> String {
    let mut out = String::new();
    {
        family(
            &mut out,
            "witness_http_requests_total",
            "counter",
            "HTTP requests answered, by method, route and status.",
        );
        for ((method, route, status), n) in state.metrics.requests.lock().expect("metrics").iter() {
            let _ = writeln!(
                out,
                "witness_http_requests_total{{method=\"{}\",route=\"{}\",status=\"{status}\"}} {n}",
                label(method),
                label(route)
            );
        }
        family(&mut out, "witness_http_request_duration_seconds", "histogram", "Time to answer HTTP requests.");
        for ((method, route), h) in state.metrics.latency.lock().expect("metrics").iter() {
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
        if let Ok(lags) = state.projector.lags(head).await {
            family(&mut out, "witness_projection_lag_events", "gauge", "Events each read model has yet to project.");
            for (projection, lag) in lags {
                let _ = writeln!(out, "witness_projection_lag_events{{projection=\"{projection}\"}} {lag}");
            }
        }
        if state.readiness.relay {
            if let Ok(at) = state.store.subscription_position(witness_engine::kafka::RELAY_CHECKPOINT).await {
                family(&mut out, "witness_kafka_relay_lag_events", "gauge", "Events not yet relayed to Kafka.");
                let _ = writeln!(out, "witness_kafka_relay_lag_events {}", head.saturating_sub(at));
            }
        }
    }
    if let Ok(witness_projections::Census { sessions, agents, longest_wait }) = state.projector.census().await {
        family(&mut out, "witness_sessions", "gauge", "Sessions by state, all tenants (the read model).");
        for (status, n) in sessions {
            let _ = writeln!(out, "witness_sessions{{state=\"{}\"}} {n}", label(&status));
        }
        family(&mut out, "witness_agents", "gauge", "Agents by presence, all tenants (the read model).");
        for (presence, n) in agents {
            let _ = writeln!(out, "witness_agents{{presence=\"{}\"}} {n}", label(&presence));
        }
        let longest = longest_wait.map_or(0.0, |w| w.as_secs_f64());
        one(
            &mut out,
            "witness_queue_longest_wait_seconds",
            "gauge",
            "How long the longest waiting has waited.",
            longest,
        );
    }

    family(&mut out, "witness_queue_wait_seconds", "histogram", "How long sessions this node assigned had waited.");
    state.metrics.queue_wait.write(&mut out, "witness_queue_wait_seconds", "");

    let media = &state.media;
    let census = media.census();
    one(&mut out, "witness_calls", "gauge", "Calls (SFU rooms) open now.", census.rooms);
    one(&mut out, "witness_call_participants", "gauge", "Participants in the calls now.", census.participants);
    one(&mut out, "witness_call_tracks", "gauge", "Tracks published in the calls now.", census.tracks);
    let c = media.counters();
    for (name, help, counter) in [
        ("witness_sfu_forwarded_packets_total", "RTP packets the SFU forwarded.", &c.forwarded),
        ("witness_sfu_forwarded_bytes_total", "Payload bytes the SFU forwarded.", &c.forwarded_bytes),
        ("witness_sfu_retransmitted_packets_total", "Packets resent on a receiver's NACK.", &c.retransmitted),
        ("witness_sfu_nacks_sent_total", "NACKs the SFU sent to senders.", &c.nacks_sent),
        ("witness_sfu_plis_sent_total", "Picture loss indications the SFU sent to senders.", &c.plis_sent),
        (
            "witness_sfu_keyframe_requests_relayed_total",
            "Receivers' keyframe requests relayed to the SFU's core.",
            &c.relayed_keyframe_requests,
        ),
    ] {
        one(&mut out, name, "counter", help, counter.get());
    }
    family(
        &mut out,
        "witness_sfu_added_latency_seconds",
        "histogram",
        "Time from a packet's arrival in the SFU's socket to its departure to a subscriber.",
    );
    c.added_latency.write(&mut out, "witness_sfu_added_latency_seconds", "");
    let (alive, started) = media.threads_alive();
    family(&mut out, "witness_media_threads", "gauge", "Media threads, by whether they still run.");
    let _ = writeln!(out, "witness_media_threads{{state=\"alive\"}} {alive}");
    let _ = writeln!(out, "witness_media_threads{{state=\"stopped\"}} {}", started - alive);

    let r = &witness_media::recorder::COUNTERS;
    one(&mut out, "witness_recorder_queued_packets", "gauge", "Packets waiting to be written.", r.feed_queue.get());
    for (name, help, counter) in [
        ("witness_recorder_dropped_packets_total", "Packets dropped because recording fell behind.", &r.dropped),
        ("witness_recorder_segments_closed_total", "Recording segment files closed.", &r.segments_closed),
        ("witness_recorder_interruptions_total", "Recordings interrupted by an error.", &r.interruptions),
    ] {
        one(&mut out, name, "counter", help, counter.get());
    }

    if state.readiness.relay {
        let k = &witness_engine::kafka::ERRORS;
        family(&mut out, "witness_kafka_errors_total", "counter", "Kafka errors met, by who met them.");
        let _ = writeln!(out, "witness_kafka_errors_total{{by=\"relay\"}} {}", k.relay.get());
        let _ = writeln!(out, "witness_kafka_errors_total{{by=\"consumer\"}} {}", k.consumer.get());
    }

    let m = &state.metrics;
    family(&mut out, "witness_retention_sweeps_total", "counter", "Background retention sweeps, by outcome.");
    let _ = writeln!(out, "witness_retention_sweeps_total{{outcome=\"done\"}} {}", m.retention_sweeps.get());
    let _ = writeln!(out, "witness_retention_sweeps_total{{outcome=\"failed\"}} {}", m.retention_failures.get());
    one(
        &mut out,
        "witness_retention_deleted_total",
        "counter",
        "Files and personal data the sweeps deleted.",
        m.retention_deleted.get(),
    );
    family(&mut out, "witness_face_checks_total", "counter", "Face checks, by decision.");
    for ((_, decision), n) in FACE_DECISIONS.iter().zip(&m.face_checks) {
        let _ = writeln!(out, "witness_face_checks_total{{decision=\"{decision}\"}} {}", n.get());
    }
    family(
        &mut out,
        "witness_face_check_duration_seconds",
        "histogram",
        "Time a face check took, frames received to decision.",
    );
    m.face_latency.write(&mut out, "witness_face_check_duration_seconds", "");
    out
}
