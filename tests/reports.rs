//! SQL over Arrow for analysts: the standard reports agree with what the
//! log says, a tenant sees only its rows, queries cannot write or read
//! files, and the bounds (rows, time) hold.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use arrow_array::{Array, Float64Array, Int64Array, RecordBatch, StringArray};
use chrono::DateTime;
use common::*;
use witness_engine::ExpectedVersion;
use witness_projections::export::{export_events, export_read_models};
use witness_projections::reports::{write, Answer, Format, ReportError, Reports, STANDARD};
use witness_projections::{models, Projector};
use witness_schemas::*;
use witness_workload::{run_day, DayPlan, DayReport};

const LIMIT: usize = 100_000;
const TIME: Duration = Duration::from_secs(30);

struct Seeded {
    t: TestStore,
    export: tempfile::TempDir,
    acme: DayReport,
    other: DayReport,
}

/// A day of 60 sessions for the test tenant and one of 20 for `other`,
/// projected and exported.
async fn seeded() -> Seeded {
    let t = sqlite().await;
    let plan = |tenant: TenantId, sessions, seed| DayPlan {
        tenant,
        sessions,
        agents: 6,
        seed,
        start: DateTime::from_timestamp(1_790_000_000, 0).unwrap(),
        language: witness_workload::Language::Chinese,
    };
    let mut acme = run_day(&t.store, &plan(tenant(), 60, 21), |_| {}).await.unwrap();
    let other = run_day(&t.store, &plan(other(), 20, 22), |_| {}).await.unwrap();
    // QA evaluations of four sessions that reached an agent, as an
    // evaluator's form would record them: 95, 87, 90 (18 of 20) and 45 %.
    let events = t.store.read_all(Cursor::START, 1_000_000).await.unwrap();
    let mut assigned: Vec<_> =
        events.iter().filter(|e| e.event_type == "AgentAssigned" && e.tenant_id == tenant()).collect();
    assigned.dedup_by_key(|e| e.stream_id.clone());
    let evaluator = UserId::new();
    for (e, (total, max)) in assigned.iter().zip([(95.0, 100.0), (87.0, 100.0), (18.0, 20.0), (45.0, 100.0)]) {
        let session_id = e.stream_id.id.parse().unwrap();
        let criteria =
            vec![QaCriterionScore { criterion: "greeting".into(), weight: 1.0, score: total, comment: None }];
        let qa = QaEvaluated {
            evaluation_id: EvaluationId::new(),
            session_id,
            evaluator_id: evaluator,
            total_score: total,
            max_score: max,
            criteria,
        };
        let actor = Actor::new(ActorKind::Supervisor, evaluator.to_string());
        t.store.append(&tenant(), &e.stream_id, ExpectedVersion::Any, vec![NewEvent::new(qa, actor)]).await.unwrap();
        acme.events += 1;
    }
    let projector = Projector::connect(&t.url, models::all()).await.unwrap();
    projector.catch_up(&t.store, |_| {}).await.unwrap();
    let export = tempfile::tempdir().unwrap();
    export_events(&t.store, export.path(), None, |_| {}).await.unwrap();
    export_read_models(&projector, export.path(), None).await.unwrap();
    Seeded { t, export, acme, other }
}

fn other() -> TenantId {
    "other".parse().unwrap()
}

fn int(a: &Answer, column: &str) -> Vec<i64> {
    a.batches
        .iter()
        .flat_map(|b| {
            let c = b.column_by_name(column).unwrap_or_else(|| panic!("no column {column}"));
            let c = c.as_any().downcast_ref::<Int64Array>().unwrap_or_else(|| panic!("{column}: {:?}", c.data_type()));
            (0..c.len()).map(|i| c.value(i)).collect::<Vec<_>>()
        })
        .collect()
}

fn one(a: &Answer, column: &str) -> i64 {
    let v = int(a, column);
    assert_eq!(v.len(), 1, "{column}: {v:?}");
    v[0]
}

#[tokio::test]
async fn standard_reports_agree_with_the_log() {
    let s = seeded().await;
    let r = Reports::open(s.export.path(), Some(&tenant())).await.unwrap();
    let events = s.t.store.read_all(Cursor::START, 1_000_000).await.unwrap();
    let acme: Vec<_> = events.iter().filter(|e| e.tenant_id == tenant()).collect();

    let count = r.sql("SELECT count(*) AS n FROM events", LIMIT, TIME).await.unwrap();
    assert_eq!(one(&count, "n") as u64, s.acme.events);
    let messages = r.sql("SELECT count(*) AS n FROM messages", LIMIT, TIME).await.unwrap();
    let expected = acme.iter().filter(|e| e.event_type.ends_with("Message")).count();
    assert_eq!(one(&messages, "n") as usize, expected);

    let by_channel = r.standard("sessions-by-channel", 0, LIMIT, TIME).await.unwrap();
    assert_eq!(int(&by_channel, "sessions").iter().sum::<i64>(), 60);
    let by_hour = r.standard("sessions-by-hour", 0, LIMIT, TIME).await.unwrap();
    assert_eq!(int(&by_hour, "sessions").iter().sum::<i64>(), 60);
    assert!(int(&by_hour, "hour").iter().all(|h| (0..24).contains(h)));
    // In a tenant's time zone (issue 30): Beijing's hours are UTC's plus 8,
    // New York's minus 5, the same sessions in each.
    let hours = |answer: &Answer| -> std::collections::BTreeMap<i64, i64> {
        int(answer, "hour").into_iter().zip(int(answer, "sessions")).collect()
    };
    for offset in [480, -300, 330] {
        let zoned = r.standard("sessions-by-hour", offset, LIMIT, TIME).await.unwrap();
        let shifted: std::collections::BTreeMap<i64, i64> = hours(&by_hour)
            .into_iter()
            .map(|(h, n)| ((h * 60 + offset as i64).rem_euclid(24 * 60) / 60, n))
            .fold(Default::default(), |mut m, (h, n)| {
                *m.entry(h).or_default() += n;
                m
            });
        if offset % 60 == 0 {
            assert_eq!(hours(&zoned), shifted, "at {offset} minutes east of UTC");
        }
        assert_eq!(int(&zoned, "sessions").iter().sum::<i64>(), 60, "at {offset}");
    }

    let bot = r.standard("bot-containment", 0, LIMIT, TIME).await.unwrap();
    assert_eq!(one(&bot, "bot_resolved") as usize, s.acme.bot_resolved);
    assert_eq!(one(&bot, "abandoned") as usize, s.acme.abandoned);
    let queued: HashSet<_> = acme.iter().filter(|e| e.event_type == "SessionQueued").map(|e| &e.stream_id).collect();
    assert_eq!(one(&bot, "transferred") as usize, queued.len());

    let ratings = r.standard("satisfaction", 0, LIMIT, TIME).await.unwrap();
    assert_eq!(int(&ratings, "sessions").iter().sum::<i64>() as usize, s.acme.ratings);
    assert!(int(&ratings, "rating").iter().all(|r| (1..=5).contains(r)));

    let wait = r.standard("wait-time", 0, LIMIT, TIME).await.unwrap();
    let assigned: HashSet<_> = acme.iter().filter(|e| e.event_type == "AgentAssigned").map(|e| &e.stream_id).collect();
    assert_eq!(int(&wait, "assigned").iter().sum::<i64>() as usize, assigned.len());
    for b in &wait.batches {
        let p = |c: &str| b.column_by_name(c).unwrap().as_any().downcast_ref::<Float64Array>().unwrap().clone();
        let (p50, p99) = (p("p50_s"), p("p99_s"));
        assert!((0..b.num_rows()).all(|i| p50.value(i) >= 0.0 && p50.value(i) <= p99.value(i)));
    }
    let handle = r.standard("handle-time", 0, LIMIT, TIME).await.unwrap();
    assert!(int(&handle, "sessions").iter().sum::<i64>() > 0);

    let coverage = r.standard("recording-coverage", 0, LIMIT, TIME).await.unwrap();
    let called: HashSet<_> = acme.iter().filter(|e| e.event_type == "CallStarted").map(|e| &e.stream_id).collect();
    let recorded: HashSet<_> =
        acme.iter().filter(|e| e.event_type == "RecordingSegmentClosed").map(|e| &e.stream_id).collect();
    assert!(!called.is_empty());
    assert_eq!(one(&coverage, "with_call") as usize, called.len());
    assert_eq!(one(&coverage, "recorded") as usize, called.intersection(&recorded).count());

    // The four evaluations, in bands of ten, each with its session's agent.
    let qa = r.standard("qa-scores", 0, LIMIT, TIME).await.unwrap();
    assert_eq!((int(&qa, "band"), int(&qa, "evaluations")), (vec![40, 80, 90], vec![1, 1, 2]));
    let agents = r
        .sql(
            "SELECT count(*) AS n FROM qa JOIN sessions s USING (session_id) WHERE qa.agent_id = s.agent_id",
            LIMIT,
            TIME,
        )
        .await
        .unwrap();
    assert_eq!(one(&agents, "n"), 4);
    assert_eq!(STANDARD.len(), 8);
}

#[tokio::test]
async fn a_tenant_sees_only_its_rows_and_the_operator_sees_all() {
    let s = seeded().await;
    let acme = Reports::open(s.export.path(), Some(&tenant())).await.unwrap();
    let sessions = acme.sql("SELECT count(*) AS n FROM sessions", LIMIT, TIME).await.unwrap();
    assert_eq!(one(&sessions, "n"), 60);
    // A tenant's tables have no tenant column: only its own files are open.
    for table in ["events", "sessions", "agents", "qa"] {
        let err = acme.sql(&format!("SELECT tenant_id FROM {table}"), LIMIT, TIME).await.unwrap_err();
        assert!(err.to_string().contains("tenant_id"), "{table}: {err}");
    }

    let all = Reports::open(s.export.path(), None).await.unwrap();
    let by_tenant = all
        .sql("SELECT tenant_id, count(*) AS n FROM events GROUP BY tenant_id ORDER BY tenant_id", LIMIT, TIME)
        .await
        .unwrap();
    assert_eq!(int(&by_tenant, "n"), [s.acme.events as i64, s.other.events as i64]);
    let sessions = all
        .sql("SELECT tenant_id, count(*) AS n FROM sessions GROUP BY tenant_id ORDER BY tenant_id", LIMIT, TIME)
        .await
        .unwrap();
    assert_eq!(int(&sessions, "n"), [60, 20]);

    // A tenant with nothing exported gets empty tables, not an error.
    let nobody: TenantId = "nobody".parse().unwrap();
    let empty = Reports::open(s.export.path(), Some(&nobody)).await.unwrap();
    assert_eq!(one(&empty.sql("SELECT count(*) AS n FROM events", LIMIT, TIME).await.unwrap(), "n"), 0);
    assert_eq!(one(&empty.sql("SELECT count(*) AS n FROM sessions", LIMIT, TIME).await.unwrap(), "n"), 0);
}

#[tokio::test]
async fn queries_cannot_write_or_read_files_and_stay_within_their_bounds() {
    let s = seeded().await;
    let r = Reports::open(s.export.path(), Some(&tenant())).await.unwrap();
    let target = s.export.path().join("written.csv");
    let refused = [
        "CREATE TABLE t AS SELECT 1".to_owned(),
        "DROP VIEW messages".to_owned(),
        "INSERT INTO sessions SELECT * FROM sessions".to_owned(),
        "SET datafusion.execution.batch_size = 1".to_owned(),
        format!("COPY (SELECT * FROM sessions) TO '{}'", target.display()),
        format!("SELECT * FROM '{}'", s.t.url.trim_start_matches("sqlite://")),
        "SELEC nonsense".to_owned(),
    ];
    for sql in &refused {
        let err = r.sql(sql, LIMIT, TIME).await.unwrap_err();
        assert!(matches!(err, ReportError::Query(_)), "{sql}: {err}");
    }
    assert!(!target.exists());
    // Still usable after all that.
    assert!(one(&r.sql("SELECT count(*) AS n FROM messages", LIMIT, TIME).await.unwrap(), "n") > 0);

    let limited = r.sql("SELECT * FROM events", 10, TIME).await.unwrap();
    assert_eq!((limited.rows(), limited.truncated), (10, true));
    let all = r.sql("SELECT * FROM sessions", LIMIT, TIME).await.unwrap();
    assert_eq!((all.rows(), all.truncated), (60, false));

    let slow =
        "SELECT count(*) FROM events a, events b, events c WHERE a.payload < b.payload AND b.payload < c.payload";
    let err = r.sql(slow, LIMIT, Duration::from_millis(50)).await.unwrap_err();
    assert!(matches!(err, ReportError::Timeout(_)), "{err}");

    // Past its memory limit a query fails; with the default it runs.
    let greedy = "SELECT payload, count(*) AS n FROM events GROUP BY payload ORDER BY n DESC, payload";
    assert!(r.sql(greedy, LIMIT, TIME).await.unwrap().rows() > 100);
    let small = Reports::open_with_memory(s.export.path(), Some(&tenant()), 32 << 10).await.unwrap();
    let err = small.sql(greedy, LIMIT, TIME).await.unwrap_err();
    assert!(matches!(err, ReportError::Query(_)) && err.to_string().contains("Resources exhausted"), "{err}");

    let err = r.standard("no-such-report", 0, LIMIT, TIME).await.unwrap_err();
    assert!(err.to_string().contains("sessions-by-channel"), "{err}");
    let nowhere = tempfile::tempdir().unwrap();
    let err = Reports::open(nowhere.path(), None).await.unwrap_err();
    assert!(matches!(err, ReportError::NoExport(_)), "{err}");
}

#[tokio::test]
async fn answers_come_as_a_table_csv_json_or_an_arrow_stream() {
    let s = seeded().await;
    let r = Reports::open(s.export.path(), Some(&tenant())).await.unwrap();
    let answer = r.standard("sessions-by-channel", 0, LIMIT, TIME).await.unwrap();
    let rows = answer.rows();
    let out = |format| {
        let mut buf = Vec::new();
        write(&answer, format, &mut buf).unwrap();
        buf
    };
    let table = String::from_utf8(out(Format::Table)).unwrap();
    assert!(table.contains("| channel") && table.contains("business_type"), "{table}");
    let csv = String::from_utf8(out(Format::Csv)).unwrap();
    assert_eq!(csv.lines().next(), Some("channel,business_type,sessions"));
    assert_eq!(csv.lines().count(), rows + 1);
    let json: Vec<serde_json::Value> = serde_json::from_slice(&out(Format::Json)).unwrap();
    assert_eq!(json.len(), rows);
    assert_eq!(json.iter().map(|r| r["sessions"].as_i64().unwrap()).sum::<i64>(), 60);
    let ipc = out(Format::Arrow);
    let read: Vec<RecordBatch> = arrow_ipc::reader::StreamReader::try_new(std::io::Cursor::new(ipc), None)
        .unwrap()
        .map(|b| b.unwrap())
        .collect();
    assert_eq!(read.iter().map(|b| b.num_rows()).sum::<usize>(), rows);
    let channels = read[0].column_by_name("channel").unwrap();
    assert!(channels.as_any().downcast_ref::<StringArray>().is_some());

    // An empty answer is still well-formed in every format.
    let none = r.sql("SELECT * FROM sessions WHERE 1 = 0", LIMIT, TIME).await.unwrap();
    let mut csv = Vec::new();
    write(&none, Format::Csv, &mut csv).unwrap();
    assert!(String::from_utf8(csv).unwrap().starts_with("session_id,"));
    let mut json = Vec::new();
    write(&none, Format::Json, &mut json).unwrap();
    assert_eq!(serde_json::from_slice::<Vec<serde_json::Value>>(&json).unwrap().len(), 0);
}
