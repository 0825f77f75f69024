//! The Parquet export an analyst takes away: partitioned by tenant and day,
//! masked, incremental, refused cleanly when it would leave holes, and
//! readable by pyarrow and DuckDB (not just by the crate that wrote it).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use arrow_array::{Array, Int64Array, StringArray, TimestampMicrosecondArray};
use chrono::DateTime;
use common::*;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use witness_projections::export::{export_events, export_read_models, ExportError, STATE_FILE};
use witness_projections::{models, Projector};
use witness_schemas::{Cursor, TenantId, MASK};
use witness_workload::{run_day, DayPlan};

fn day(seed: u64, n: i64) -> DayPlan {
    DayPlan {
        tenant: tenant(),
        sessions: 40,
        agents: 6,
        seed,
        start: DateTime::from_timestamp(1_790_000_000 + 86_400 * n, 0).unwrap(),
        language: witness_workload::Language::Chinese,
    }
}

/// Waits until the global order shows all `n` events: on PostgreSQL the
/// last ones stay held back while any older transaction of the cluster is
/// open (another test's, say), and an export reads the global order.
async fn visible(t: &TestStore, n: u64) {
    for _ in 0..500 {
        if t.store.read_all(Cursor::START, 1_000_000).await.unwrap().len() as u64 == n {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("the log never showed {n} events");
}

/// Every part file under `dir`, with its bytes.
fn parts(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    fn walk(dir: &Path, root: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, root, out);
            } else {
                out.insert(path.strip_prefix(root).unwrap().to_owned(), std::fs::read(&path).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    if dir.join("events").exists() {
        walk(&dir.join("events"), dir, &mut out);
    }
    out
}

/// (position, event_type, day of occurred_at, payload) of every row of a part file.
fn rows(file: &Path) -> Vec<(i64, String, String, String)> {
    let reader = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(file).unwrap()).unwrap().build().unwrap();
    let mut out = Vec::new();
    for batch in reader {
        let batch = batch.unwrap();
        let col = |name: &str| batch.column_by_name(name).unwrap().clone();
        let position = col("position");
        let position = position.as_any().downcast_ref::<Int64Array>().unwrap();
        let kind = col("event_type");
        let kind = kind.as_any().downcast_ref::<StringArray>().unwrap();
        let at = col("occurred_at");
        let at = at.as_any().downcast_ref::<TimestampMicrosecondArray>().unwrap();
        let payload = col("payload");
        let payload = payload.as_any().downcast_ref::<StringArray>().unwrap();
        for i in 0..batch.num_rows() {
            let day = DateTime::from_timestamp_micros(at.value(i)).unwrap().format("%Y-%m-%d").to_string();
            out.push((position.value(i), kind.value(i).to_owned(), day, payload.value(i).to_owned()));
        }
        assert_eq!(batch.column_by_name("hash").unwrap().null_count(), 0);
    }
    out
}

async fn days_export_then_a_second_run_adds_only_what_is_new(t: TestStore) {
    let out = tempfile::tempdir().unwrap();
    let first = run_day(&t.store, &day(1, 0), |_| {}).await.unwrap();
    visible(&t, first.events).await;
    let report = export_events(&t.store, out.path(), None, |_| {}).await.unwrap();
    assert_eq!(report.events, first.events);
    let before = parts(out.path());
    assert_eq!(before.keys().cloned().collect::<Vec<_>>(), report.files);

    // Every row sits in its tenant's and day's directory; no customer words.
    let mut positions = BTreeSet::new();
    let mut masked = 0;
    for file in before.keys() {
        let dirs: Vec<String> = file.iter().map(|c| c.to_string_lossy().into_owned()).collect();
        assert_eq!(dirs[1], format!("tenant_id={}", tenant()), "{file:?}");
        for (position, kind, day, payload) in rows(&out.path().join(file)) {
            assert_eq!(dirs[2], format!("day={day}"), "{file:?}");
            assert!(positions.insert(position), "position {position} exported twice");
            if kind == "CustomerMessage" {
                let text = serde_json::from_str::<serde_json::Value>(&payload).unwrap()["content"]["text"].clone();
                assert_eq!(text, MASK, "{payload}");
                masked += 1;
            }
        }
    }
    assert_eq!(positions.len() as u64, first.events);
    assert!(masked > 0, "the day has customer messages");

    // A second day: new files only, the old ones untouched.
    let second = run_day(&t.store, &day(2, 1), |_| {}).await.unwrap();
    visible(&t, first.events + second.events).await;
    let report = export_events(&t.store, out.path(), None, |_| {}).await.unwrap();
    assert_eq!(report.events, second.events);
    let after = parts(out.path());
    for (file, bytes) in &before {
        assert_eq!(after.get(file), Some(bytes), "{file:?} changed");
    }
    let new: Vec<PathBuf> = after.keys().filter(|f| !before.contains_key(*f)).cloned().collect();
    assert_eq!(new, report.files);
    for file in &new {
        for (position, ..) in rows(&out.path().join(file)) {
            assert!(positions.insert(position), "position {position} exported twice");
        }
    }
    assert_eq!(positions.len() as u64, first.events + second.events);
    let all = t.store.read_all(Cursor::START, 1_000_000).await.unwrap();
    assert_eq!(positions, all.iter().map(|e| e.position as i64).collect());

    // Nothing new: nothing written.
    let report = export_events(&t.store, out.path(), None, |_| {}).await.unwrap();
    assert_eq!((report.events, report.files.len()), (0, 0));
    assert_eq!(parts(out.path()), after);
}

#[tokio::test]
async fn sqlite_days_export_to_partitioned_parquet_and_a_second_run_adds_only_what_is_new() {
    days_export_then_a_second_run_adds_only_what_is_new(sqlite().await).await
}

#[tokio::test]
async fn postgres_days_export_to_partitioned_parquet_and_a_second_run_adds_only_what_is_new() {
    days_export_then_a_second_run_adds_only_what_is_new(postgres().await).await
}

#[tokio::test]
async fn a_week_exports_one_partition_per_day_with_more_days_than_open_files() {
    let t = sqlite().await;
    let mut total = 0;
    for n in 0..7 {
        total += run_day(&t.store, &day(10 + n as u64, n), |_| {}).await.unwrap().events;
    }
    let out = tempfile::tempdir().unwrap();
    let report = export_events(&t.store, out.path(), None, |_| {}).await.unwrap();
    assert_eq!(report.events, total);
    let mut days = BTreeSet::new();
    let mut positions = BTreeSet::new();
    for file in parts(out.path()).keys() {
        let partition = file.iter().nth(2).unwrap().to_string_lossy().into_owned();
        for (position, _, day, _) in rows(&out.path().join(file)) {
            assert_eq!(partition, format!("day={day}"), "{file:?}");
            assert!(positions.insert(position));
            days.insert(day);
        }
    }
    assert_eq!(positions.len() as u64, total);
    assert!(days.len() >= 7, "{days:?}");
}

#[tokio::test]
async fn an_export_that_would_leave_holes_or_cannot_read_its_state_is_refused_and_writes_nothing() {
    let t = sqlite().await;
    run_day(&t.store, &day(3, 0), |_| {}).await.unwrap();
    let out = tempfile::tempdir().unwrap();
    export_events(&t.store, out.path(), Some(&tenant()), |_| {}).await.unwrap();
    let files = parts(out.path());
    let state = std::fs::read(out.path().join(STATE_FILE)).unwrap();

    let other: TenantId = "other".parse().unwrap();
    for asked in [None, Some(&other)] {
        let err = export_events(&t.store, out.path(), asked, |_| {}).await.unwrap_err();
        assert!(matches!(err, ExportError::OtherTenant { .. }), "{err}");
        assert!(err.to_string().contains("use another directory"), "{err}");
    }
    std::fs::write(out.path().join(STATE_FILE), b"{\"cursor\": \"not a cursor\"}").unwrap();
    let err = export_events(&t.store, out.path(), Some(&tenant()), |_| {}).await.unwrap_err();
    assert!(matches!(err, ExportError::State { .. }), "{err}");
    assert_eq!(parts(out.path()), files);
    std::fs::write(out.path().join(STATE_FILE), &state).unwrap();

    // A part an interrupted run left behind is removed, not published.
    let leftover = files.keys().next().unwrap().with_extension("parquet.tmp");
    std::fs::write(out.path().join(&leftover), b"half a file").unwrap();
    let report = export_events(&t.store, out.path(), Some(&tenant()), |_| {}).await.unwrap();
    assert_eq!(report.events, 0);
    assert_eq!(parts(out.path()), files);
}

/// pyarrow and DuckDB, from PyPI (scripts/test.sh installs them into a
/// virtualenv and sets WITNESS_TEST_PYTHON), read the export with its
/// partitions as columns and count what the store holds.
#[tokio::test]
async fn pyarrow_and_duckdb_read_the_export_with_its_partitions() {
    let python = std::env::var("WITNESS_TEST_PYTHON").expect(
        "WITNESS_TEST_PYTHON is not set: run the tests with scripts/test.sh, which installs pyarrow and duckdb",
    );
    let t = sqlite().await;
    let first = run_day(&t.store, &day(4, 0), |_| {}).await.unwrap();
    let out = tempfile::tempdir().unwrap();
    export_events(&t.store, out.path(), None, |_| {}).await.unwrap();
    let second = run_day(&t.store, &day(5, 1), |_| {}).await.unwrap();
    export_events(&t.store, out.path(), None, |_| {}).await.unwrap();
    let projector = Projector::connect(&t.url, models::all()).await.unwrap();
    projector.catch_up(&t.store, |_| {}).await.unwrap();
    export_read_models(&projector, out.path(), None).await.unwrap();

    let script = r#"
import json, sys
import duckdb, pyarrow.dataset as ds
root = sys.argv[1] + "/events"
table = ds.dataset(root, format="parquet", partitioning="hive").to_table()
by_day = duckdb.sql(
    f"SELECT tenant_id, day, count(*) AS n, count(DISTINCT position) AS d, min(occurred_at)::DATE::VARCHAR AS first "
    f"FROM read_parquet('{root}/*/*/*.parquet', hive_partitioning = true) GROUP BY ALL ORDER BY day").fetchall()
sessions = duckdb.sql(
    f"SELECT count(*), count(DISTINCT session_id), min(tenant_id) FROM read_parquet('{sys.argv[1]}/sessions/*/*.parquet', "
    f"hive_partitioning = true)").fetchall()[0]
print(json.dumps({"pyarrow_rows": table.num_rows, "pyarrow_columns": table.column_names,
                  "duckdb": [list(map(str, r)) for r in by_day], "sessions": list(sessions)}))
"#;
    let output = std::process::Command::new(python).args(["-c", script]).arg(out.path()).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let seen: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(seen["pyarrow_rows"], first.events + second.events);
    let columns = seen["pyarrow_columns"].as_array().unwrap();
    assert!(columns.contains(&"tenant_id".into()) && columns.contains(&"day".into()), "{columns:?}");
    assert_eq!(seen["sessions"], serde_json::json!([80, 80, tenant().to_string()]));
    let days = seen["duckdb"].as_array().unwrap();
    assert_eq!(days.len(), 2, "{days:?}");
    let counts: Vec<u64> = days.iter().map(|d| d[2].as_str().unwrap().parse().unwrap()).collect();
    assert_eq!(counts, [first.events, second.events]);
    for d in days {
        assert_eq!(d[0], tenant().to_string());
        assert_eq!(d[2], d[3], "duplicate positions in {d}");
        assert_eq!(d[1], d[4], "rows of another day in the partition {d}");
    }
}
