//! Analytics: the Parquet export's throughput, and each standard report's
//! median time in DataFusion against DuckDB (PyPI) on the same files.
//!
//!   WITNESS_TEST_PYTHON=… cargo bench --bench reports             # seeds ≥ 1,000,000 events
//!   REPORTS_EVENTS=10000000 REPORTS_DB=/tmp/r.db cargo bench --bench reports
//!
//! `REPORTS_DB` keeps the seeded SQLite log (and its read models) for the
//! next run; a log that already holds enough events is not seeded again.
//! Baseline in the same run: DuckDB, through its Python API, running the
//! same reports (written in its dialect) over the same export.

mod common;

use std::time::Instant;

use witness_projections::export::{export_events, export_read_models};
use witness_projections::reports::{Reports, STANDARD};
use witness_projections::{models, Projector};

use common::{median, scripted_log};

/// The standard reports in DuckDB's dialect, by name: the same question
/// asked of the same files.
const DUCKDB: &[(&str, &str)] = &[
    (
        "sessions-by-channel",
        "SELECT channel, business_type, count(*) AS sessions FROM sessions \
         GROUP BY channel, business_type ORDER BY sessions DESC, channel, business_type",
    ),
    (
        "sessions-by-hour",
        "SELECT CAST(date_part('hour', started_at + INTERVAL 480 MINUTE) AS BIGINT) AS hour, count(*) AS sessions \
         FROM sessions WHERE started_at IS NOT NULL GROUP BY 1 ORDER BY 1",
    ),
    (
        "wait-time",
        "SELECT group_name, count(*) AS assigned, approx_quantile(wait, 0.5), approx_quantile(wait, 0.9), \
         approx_quantile(wait, 0.99) FROM (SELECT group_name, epoch(assigned_at) - epoch(queued_at) AS wait \
         FROM sessions WHERE assigned_at IS NOT NULL AND queued_at IS NOT NULL) GROUP BY group_name ORDER BY 1",
    ),
    (
        "handle-time",
        "SELECT agent_id, count(*) AS sessions, avg(epoch(ended_at) - epoch(assigned_at)), \
         approx_quantile(epoch(ended_at) - epoch(assigned_at), 0.5) FROM sessions \
         WHERE assigned_at IS NOT NULL AND ended_at IS NOT NULL GROUP BY agent_id ORDER BY agent_id",
    ),
    (
        "bot-containment",
        "SELECT count(*), sum(CASE WHEN outcome = 'bot_resolved' THEN 1 ELSE 0 END), \
         sum(CASE WHEN queued_at IS NOT NULL THEN 1 ELSE 0 END), sum(CASE WHEN outcome = 'abandoned' THEN 1 ELSE 0 END), \
         sum(CASE WHEN outcome = 'bot_resolved' THEN 1 ELSE 0 END) / count(*), \
         sum(CASE WHEN queued_at IS NOT NULL THEN 1 ELSE 0 END) / count(*), \
         sum(CASE WHEN outcome = 'abandoned' THEN 1 ELSE 0 END) \
           / nullif(sum(CASE WHEN queued_at IS NOT NULL THEN 1 ELSE 0 END), 0) \
         FROM sessions WHERE ended_at IS NOT NULL",
    ),
    (
        "satisfaction",
        "SELECT satisfaction AS rating, count(*) AS sessions FROM sessions \
         WHERE satisfaction IS NOT NULL GROUP BY satisfaction ORDER BY satisfaction",
    ),
    (
        "qa-scores",
        "SELECT (score // 10) * 10 AS band, count(*) AS evaluations FROM qa_evaluations GROUP BY 1 ORDER BY 1",
    ),
    (
        "recording-coverage",
        "SELECT count(*), count(r.session_id), count(r.session_id) / count(*) \
         FROM (SELECT DISTINCT stream_id AS session_id FROM events WHERE event_type = 'CallStarted') c \
         LEFT JOIN (SELECT DISTINCT stream_id AS session_id FROM events \
                    WHERE event_type = 'RecordingSegmentClosed') r ON c.session_id = r.session_id",
    ),
];

const DUCKDB_SCRIPT: &str = r#"
import glob, json, statistics, sys, time
import duckdb
root, runs = sys.argv[1], int(sys.argv[2])
queries = json.load(sys.stdin)
con = duckdb.connect()
con.sql(f"CREATE VIEW events AS SELECT * FROM read_parquet('{root}/events/*/*/*.parquet', hive_partitioning = true)")
con.sql(f"CREATE VIEW sessions AS SELECT * FROM read_parquet('{root}/sessions/*/*.parquet', hive_partitioning = true)")
qa = f"{root}/qa_evaluations/*/*.parquet"
if glob.glob(qa):
    con.sql(f"CREATE VIEW qa_evaluations AS SELECT * FROM read_parquet('{qa}', hive_partitioning = true)")
else:
    con.sql("CREATE TABLE qa_evaluations (score BIGINT)")
out = {}
for name, sql in queries:
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        con.sql(sql).fetchall()
        times.append((time.perf_counter() - t) * 1000)
    out[name] = statistics.median(times)
print(json.dumps(out))
"#;

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("reports bench: run with `cargo bench --bench reports`");
        return;
    }
    let python = std::env::var("WITNESS_TEST_PYTHON")
        .expect("WITNESS_TEST_PYTHON: a python with duckdb (scripts/bench.sh installs one)");
    let target: u64 = std::env::var("REPORTS_EVENTS").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    let runs: usize = std::env::var("BENCH_RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(7);
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let (_dir, url, store) = scripted_log("REPORTS_DB", target).await;
        let projector = Projector::connect(&url, models::all()).await.unwrap();
        projector.catch_up(&store, |_| {}).await.unwrap();

        let out = tempfile::tempdir().unwrap();
        let t = Instant::now();
        let report = export_events(&store, out.path(), None, |_| {}).await.unwrap();
        let export_secs = t.elapsed().as_secs_f64();
        export_read_models(&projector, out.path(), None).await.unwrap();
        println!(
            "exported {} events in {export_secs:.2} s ({:.0} events/s) into {} files",
            report.events,
            report.events as f64 / export_secs,
            report.files.len()
        );

        let tables = Reports::open(out.path(), None).await.unwrap();
        let mut ours = Vec::new();
        for r in STANDARD {
            let mut times = Vec::new();
            for _ in 0..runs {
                let t = Instant::now();
                tables.standard(r.name, 480, usize::MAX, std::time::Duration::from_secs(600)).await.unwrap();
                times.push(t.elapsed().as_secs_f64() * 1000.0);
            }
            ours.push((r.name, median(times)));
        }
        let queries: Vec<(&str, &str)> = STANDARD
            .iter()
            .map(|r| *DUCKDB.iter().find(|(name, _)| *name == r.name).expect("every report has a DuckDB twin"))
            .collect();
        let mut child = std::process::Command::new(python)
            .args(["-c", DUCKDB_SCRIPT])
            .arg(out.path())
            .arg(runs.to_string())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        serde_json::to_writer(child.stdin.take().unwrap(), &queries).unwrap();
        let output = child.wait_with_output().unwrap();
        assert!(output.status.success(), "duckdb failed");
        let theirs: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        println!("| report | DataFusion p50 ms | DuckDB p50 ms | ratio |");
        println!("|---|---|---|---|");
        for (name, ms) in ours {
            let duck = theirs[name].as_f64().unwrap();
            println!("| {name} | {ms:.1} | {duck:.1} | {:.2} |", ms / duck);
        }
    });
}
