//! Chat messages over HTTP, measured with wrk against the embedded default
//! (SQLite, projections and the live router running as in `witness serve`).
//!
//! 1000 customer sessions waiting in the queue (so no bot turn and no
//! agent); wrk posts text messages to random ones with their own visitor
//! tokens. First at full speed (throughput), then paced to half of it with
//! wrk's `delay()` hook (latency at a steady load). Baseline in the same
//! run: the same command through `execute::<Session>` in process, one at a
//! time — the store and decider cost the HTTP path adds to.
//!
//!   cargo bench --bench http_messages           # needs wrk (scripts/bench.sh installs it)

use std::process::Command;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::Request;
use chrono::Utc;
use tower::ServiceExt;
use witness_api::auth::{Claims, TokenKeys};
use witness_api::{app, live, AppState};
use witness_domain::session::{Session, SessionCommand};
use witness_engine::executor::execute;
use witness_schemas::*;

const SESSIONS: usize = 1000;
const CONNECTIONS: usize = 32;
const SECONDS: u64 = 10;

struct Wrk {
    /// Responses received.
    requests: u64,
    requests_per_sec: f64,
    p50_ms: f64,
    p99_ms: f64,
    non_2xx: u64,
}

fn ms(text: &str) -> f64 {
    let text = text.trim();
    let (number, unit) = text.split_at(text.find(|c: char| c.is_alphabetic()).unwrap_or(text.len()));
    let n: f64 = number.parse().unwrap_or(f64::NAN);
    match unit {
        "us" => n / 1000.0,
        "ms" => n,
        "s" => n * 1000.0,
        _ => f64::NAN,
    }
}

fn wrk(url: &str, script: &std::path::Path) -> Wrk {
    let out = Command::new("wrk")
        .args(["-t2", &format!("-c{CONNECTIONS}"), &format!("-d{SECONDS}s"), "--latency", "-s"])
        .arg(script)
        .arg(url)
        .output()
        .expect("wrk (apt install wrk; scripts/bench.sh does)");
    let text = String::from_utf8_lossy(&out.stdout);
    let field = |prefix: &str| {
        text.lines().find_map(|l| l.trim().strip_prefix(prefix).map(|r| r.trim().to_owned())).unwrap_or_default()
    };
    // "  41234 requests in 10.00s, 8.52MB read"
    let requests = text.lines().find_map(|l| l.trim().split_once(" requests in ")?.0.parse().ok()).unwrap_or(0);
    Wrk {
        requests,
        requests_per_sec: field("Requests/sec:").parse().unwrap_or(0.0),
        p50_ms: ms(&field("50%")),
        p99_ms: ms(&field("99%")),
        non_2xx: field("Non-2xx or 3xx responses:").parse().unwrap_or(0),
    }
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("http_messages bench: run with `cargo bench --bench http_messages`");
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/bench.db", dir.path().display());
    let (port, sessions) = rt.block_on(async {
        let store = witness_engine::EventStore::connect(&url).await.unwrap();
        let uploads =
            witness_app::uploads::UploadStore::new(dir.path().join("uploads"), witness_app::uploads::DEFAULT_LIMIT);
        let state = AppState::new(store.clone(), &url, TokenKeys::random(), uploads).await.unwrap();
        let tenant: TenantId = "bench".parse().unwrap();
        witness_app::tenant::create_tenant(&store, &tenant, "Bench").await.unwrap();
        // As `witness serve` runs them.
        let projector =
            witness_projections::Projector::connect(&url, witness_projections::models::all()).await.unwrap();
        let projected = store.clone();
        tokio::spawn(async move { projector.run(&projected).await });
        tokio::spawn(live::run(store.clone(), state.hub.clone(), Default::default()));
        let mut sessions = vec![];
        for i in 0..SESSIONS {
            let visitor = format!("visitor-bench-{i}");
            let claims = Claims { t: tenant.clone(), s: visitor.clone(), r: Role::Customer, c: None, e: 0, i: 0 };
            let token = state.keys.issue(claims, Utc::now());
            let request = |uri: String, body: &str| {
                Request::post(uri)
                    .header("authorization", format!("Bearer {token}"))
                    .header("content-type", "application/json")
                    .body(Body::from(body.to_owned()))
                    .unwrap()
            };
            let started = app(state.clone()).oneshot(request("/api/sessions".into(), "{}")).await.unwrap();
            let bytes = http_body_util::BodyExt::collect(started.into_body()).await.unwrap().to_bytes();
            let id =
                serde_json::from_slice::<serde_json::Value>(&bytes).unwrap()["session_id"].as_str().unwrap().to_owned();
            let queued = app(state.clone()).oneshot(request(format!("/api/sessions/{id}/human"), "{}")).await.unwrap();
            assert!(queued.status().is_success());
            sessions.push((id, token));
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move { axum::serve(listener, app(state)).await });
        (port, sessions)
    });

    // The wrk script: a random session per request, with its own token.
    let pairs: Vec<String> = sessions.iter().map(|(id, token)| format!("{{\"{id}\",\"{token}\"}}")).collect();
    let script = |delay_ms: f64| {
        format!(
            r#"local pairs = {{ {} }}
local body = '{{"kind":"text","text":"How do I raise the limit on my card?"}}'
request = function()
  local p = pairs[math.random(#pairs)]
  return wrk.format("POST", "/api/sessions/" .. p[1] .. "/messages",
    {{ ["authorization"] = "Bearer " .. p[2], ["content-type"] = "application/json" }}, body)
end
{}
"#,
            pairs.join(","),
            if delay_ms > 0.0 { format!("delay = function() return {delay_ms:.2} end") } else { String::new() }
        )
    };
    let full_path = dir.path().join("full.lua");
    std::fs::write(&full_path, script(0.0)).unwrap();
    let target = format!("http://127.0.0.1:{port}");
    // Events in the store: a message is one (no bot and no agent answer
    // in this setup).
    let messages =
        || rt.block_on(async { witness_engine::EventStore::connect(&url).await.unwrap().count().await.unwrap() });
    let before = messages();
    let full = wrk(&target, &full_path);
    // Pace every connection so that all of them together send half the rate.
    let delay = CONNECTIONS as f64 * 1000.0 / (full.requests_per_sec / 2.0) - full.p50_ms;
    let half_path = dir.path().join("half.lua");
    std::fs::write(&half_path, script(delay.max(0.0))).unwrap();
    let half = wrk(&target, &half_path);
    // Every answered request wrote its message (those still in flight when
    // wrk stopped may have too).
    let written = messages() - before;
    assert!(
        written >= full.requests + half.requests && written <= full.requests + half.requests + 2 * CONNECTIONS as u64,
        "{written} messages written for {} answered requests",
        full.requests + half.requests
    );

    // Baseline: the same command in process, one at a time, for as long.
    let baseline = rt.block_on(async {
        let store = witness_engine::EventStore::connect(&url).await.unwrap();
        let tenant: TenantId = "bench".parse().unwrap();
        let (t, mut n) = (Instant::now(), 0u64);
        while t.elapsed() < Duration::from_secs(SECONDS) {
            let (id, _) = &sessions[n as usize % sessions.len()];
            let stream = StreamId::session(id.parse().unwrap());
            let actor = Actor::new(ActorKind::Customer, format!("visitor-bench-{}", n as usize % sessions.len()));
            let command = SessionCommand::CustomerSays {
                message_id: MessageId::new(),
                content: MessageContent::Text { text: "How do I raise the limit on my card?".into() },
            };
            execute::<Session>(&store, &tenant, &stream, &actor, Utc::now(), command).await.unwrap();
            n += 1;
        }
        n as f64 / t.elapsed().as_secs_f64()
    });

    println!("| measure ({SESSIONS} queued sessions, {CONNECTIONS} connections, {SECONDS} s each) | messages/s | p50 | p99 | non-2xx |");
    println!("|---|---|---|---|---|");
    for (name, r) in [("wrk, full speed", &full), ("wrk, paced to half of full speed", &half)] {
        println!("| {name} | {:.0} | {:.2} ms | {:.2} ms | {} |", r.requests_per_sec, r.p50_ms, r.p99_ms, r.non_2xx);
    }
    println!("| baseline: execute::<Session> in process, one at a time | {baseline:.0} | | | |");
    println!("| ratio full / baseline | {:.2} | | | |", full.requests_per_sec / baseline);
}
