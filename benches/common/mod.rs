//! Shared by the benches (each includes it with `mod common;` and uses
//! part of it, hence the allowance below).
#![allow(dead_code)]

use std::time::Instant;

use chrono::DateTime;
use witness_engine::EventStore;
use witness_workload::{run_day, DayPlan};

/// The median of `v` (the upper one of an even count).
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

/// A SQLite log of scripted days (3,000 customers and 75 agents each,
/// seeds 42…, tenant `bench`) holding at least `target` events: at the path
/// in the environment variable `keep` if set — a log already there is
/// counted and only topped up — else in a temporary directory, returned to
/// be kept alive. Days, not one long day: one very long day would mostly
/// measure a huge router.
pub async fn scripted_log(keep: &str, target: u64) -> (tempfile::TempDir, String, EventStore) {
    let dir = tempfile::tempdir().unwrap();
    let path = std::env::var(keep).unwrap_or_else(|_| format!("{}/bench.db", dir.path().display()));
    let url = format!("sqlite://{path}");
    let store = EventStore::connect(&url).await.unwrap();
    let mut events = store.count().await.unwrap();
    let before = events;
    // A day holds more than 40,000 events: a kept log's days are all below this.
    let first = if events == 0 { 0 } else { events / 40_000 + 1 };
    let (mut day, mut sessions) = (first, 0);
    let t = Instant::now();
    while events < target {
        let plan = DayPlan {
            tenant: "bench".parse().unwrap(),
            sessions: 3_000,
            agents: 75,
            seed: 42 + day,
            start: DateTime::from_timestamp(1_790_000_000 + 86_400 * day as i64, 0).unwrap(),
            language: witness_workload::Language::Chinese,
        };
        let report = run_day(&store, &plan, |_| {}).await.unwrap();
        sessions += report.sessions;
        events = store.count().await.unwrap();
        day += 1;
    }
    if day > first {
        let secs = t.elapsed().as_secs_f64();
        println!(
            "seeded {} days, {sessions} sessions, {} events in {secs:.1} s ({:.0} events/s through deciders, \
             routing and the store)",
            day - first,
            events - before,
            (events - before) as f64 / secs
        );
    }
    (dir, url, store)
}
