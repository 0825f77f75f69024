//! Projection rebuild throughput: scripted days of 3,000 customers each
//! until the log holds a million events (SQLite, `common::scripted_log`), then `reset` + `catch_up`
//! of every read model, timed.
//! Baseline in the same run: reading and decoding the same log without
//! projecting it (`read_all` + decode), i.e. the cost a rebuild cannot avoid.
//!
//!   cargo bench --bench rebuild                       # ≥ 1,000,000 events
//!   REBUILD_EVENTS=100000 cargo bench --bench rebuild # smaller
//!   REBUILD_DB=/tmp/r.db cargo bench --bench rebuild  # keep the seeded log there, reuse it next time

mod common;

use std::time::Instant;

use witness_projections::{models, Projector};
use witness_schemas::Cursor;

use common::{median, scripted_log};

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("rebuild bench: run with `cargo bench --bench rebuild`");
        return;
    }
    let target: u64 = std::env::var("REBUILD_EVENTS").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    let runs: usize = std::env::var("BENCH_RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(3);
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let (_dir, url, store) = scripted_log("REBUILD_DB", target).await;
        let events = store.count().await.unwrap();
        let projector = Projector::connect(&url, models::all()).await.unwrap();
        let (mut rebuild, mut baseline) = (vec![], vec![]);
        for _ in 0..runs {
            let t = Instant::now();
            let mut cursor = Cursor::START;
            let mut n = 0u64;
            loop {
                let page = store.read_all(cursor, 1000).await.unwrap();
                let Some(last) = page.last() else { break };
                cursor = last.cursor();
                for e in &page {
                    std::hint::black_box(e.decode().unwrap());
                }
                n += page.len() as u64;
            }
            baseline.push(n as f64 / t.elapsed().as_secs_f64());

            let t = Instant::now();
            projector.reset().await.unwrap();
            let read = projector.catch_up(&store, |_| {}).await.unwrap();
            assert_eq!(read, events);
            rebuild.push(read as f64 / t.elapsed().as_secs_f64());
        }
        println!("| measure (median of {runs}) | events/s |");
        println!("|---|---|");
        println!("| rebuild all read models (reset + catch_up) | {:.0} |", median(rebuild.clone()));
        println!("| baseline: read_all + decode only | {:.0} |", median(baseline.clone()));
        println!("| ratio | {:.2} |", median(rebuild) / median(baseline));
    });
}
