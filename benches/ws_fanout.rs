//! WebSocket fan-out: 2,000 connected clients (a tenant's supervisors, who
//! each receive every event of the tenant), while customers send messages
//! at a steady 20 per second for 10 s. Each delivery's latency is the time
//! from the event's `occurred_at` (stamped when the command runs) to its
//! arrival at a client, on the same clock.
//! Baseline in the same run: the same load with a single client.
//!
//!   cargo bench --bench ws_fanout            # WS_CLIENTS=500 for fewer

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::http::Request;
use chrono::Utc;
use futures_util::{SinkExt, StreamExt};
use tower::ServiceExt;
use witness_api::auth::{Claims, TokenKeys};
use witness_api::{app, live, AppState};
use witness_schemas::*;

const RATE: u64 = 20;
const SECONDS: u64 = 10;

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

/// Connects `clients` sockets, sends RATE×SECONDS messages, and returns the
/// delivery latencies in milliseconds and how many deliveries were expected.
async fn run(state: &AppState, port: u16, clients: usize, customer: &str, session: &str) -> (Vec<f64>, usize) {
    let tenant: TenantId = "bench".parse().unwrap();
    let latencies = Arc::new(Mutex::new(Vec::new()));
    let mut readers = vec![];
    for i in 0..clients {
        let claims =
            Claims { t: tenant.clone(), s: UserId::new().to_string(), r: Role::Supervisor, c: None, e: 0, i: 0 };
        let token = state.keys.issue(claims, Utc::now());
        let (mut socket, _) = tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{port}/api/ws"))
            .await
            .unwrap_or_else(|e| panic!("client {i}: {e}"));
        // The token is the socket's first message.
        let auth = serde_json::json!({ "type": "auth", "token": token }).to_string();
        socket.send(tokio_tungstenite::tungstenite::Message::Text(auth.into())).await.unwrap();
        let latencies = latencies.clone();
        readers.push(tokio::spawn(async move {
            let (_, mut read) = socket.split();
            while let Some(Ok(frame)) = read.next().await {
                let now = Utc::now();
                let Ok(text) = frame.into_text() else { continue };
                let frame: serde_json::Value = serde_json::from_str(&text).unwrap();
                if frame["event"]["event_type"] != "CustomerMessage" {
                    continue;
                }
                let at: chrono::DateTime<Utc> = frame["event"]["occurred_at"].as_str().unwrap().parse().unwrap();
                latencies.lock().unwrap().push((now - at).num_microseconds().unwrap() as f64 / 1000.0);
            }
        }));
    }
    let mut tick = tokio::time::interval(Duration::from_millis(1000 / RATE));
    let sent = (RATE * SECONDS) as usize;
    for _ in 0..sent {
        tick.tick().await;
        let request = Request::post(format!("/api/sessions/{session}/messages"))
            .header("authorization", format!("Bearer {customer}"))
            .header("content-type", "application/json")
            .body(Body::from(r#"{"kind":"text","text":"Is my transfer through yet?"}"#))
            .unwrap();
        let answer = app(state.clone()).oneshot(request).await.unwrap();
        assert!(answer.status().is_success());
    }
    // Let the last deliveries arrive.
    tokio::time::sleep(Duration::from_secs(2)).await;
    for r in readers {
        r.abort();
    }
    let mut all = latencies.lock().unwrap().clone();
    all.sort_by(f64::total_cmp);
    (all, sent * clients)
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("ws_fanout bench: run with `cargo bench --bench ws_fanout`");
        return;
    }
    let clients: usize = std::env::var("WS_CLIENTS").ok().and_then(|v| v.parse().ok()).unwrap_or(2_000);
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/bench.db", dir.path().display());
        let store = witness_engine::EventStore::connect(&url).await.unwrap();
        let uploads =
            witness_app::uploads::UploadStore::new(dir.path().join("uploads"), witness_app::uploads::DEFAULT_LIMIT);
        let state = AppState::new(store.clone(), &url, TokenKeys::random(), uploads).await.unwrap();
        let tenant: TenantId = "bench".parse().unwrap();
        witness_app::tenant::create_tenant(&store, &tenant, "Bench").await.unwrap();
        tokio::spawn(live::run(store.clone(), state.hub.clone(), Default::default()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let router = app(state.clone());
        tokio::spawn(async move { axum::serve(listener, router).await });
        // One queued session (no bot turn) whose customer keeps writing.
        let claims = Claims { t: tenant.clone(), s: "visitor-bench".into(), r: Role::Customer, c: None, e: 0, i: 0 };
        let customer = state.keys.issue(claims, Utc::now());
        let post = |uri: String| {
            Request::post(uri)
                .header("authorization", format!("Bearer {customer}"))
                .header("content-type", "application/json")
                .body(Body::from("{}"))
                .unwrap()
        };
        let started = app(state.clone()).oneshot(post("/api/sessions".into())).await.unwrap();
        let bytes = http_body_util::BodyExt::collect(started.into_body()).await.unwrap().to_bytes();
        let session =
            serde_json::from_slice::<serde_json::Value>(&bytes).unwrap()["session_id"].as_str().unwrap().to_owned();
        app(state.clone()).oneshot(post(format!("/api/sessions/{session}/human"))).await.unwrap();

        let (one, one_expected) = run(&state, port, 1, &customer, &session).await;
        let (many, many_expected) = run(&state, port, clients, &customer, &session).await;
        println!("| measure ({RATE} messages/s for {SECONDS} s) | deliveries | p50 | p99 | max |");
        println!("|---|---|---|---|---|");
        for (name, l, expected) in [
            (format!("{clients} clients"), &many, many_expected),
            ("baseline: 1 client".to_owned(), &one, one_expected),
        ] {
            println!(
                "| {name} | {} of {expected} | {:.1} ms | {:.1} ms | {:.1} ms |",
                l.len(),
                percentile(l, 0.5),
                percentile(l, 0.99),
                l.last().copied().unwrap_or(f64::NAN)
            );
        }
    });
}
