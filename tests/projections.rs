//! Read models on both backends: a scripted day of sessions is projected
//! while it happens (live), then every projection is rebuilt from position 0,
//! and the rebuilt tables must equal the live ones row for row.

mod common;

use chrono::DateTime;
use common::*;
use witness_projections::{models, AuditRow, Projector, SessionQuery};
use witness_schemas::{Role, StreamKind};
use witness_workload::{run_day, DayPlan};

async fn live_then_rebuilt(t: TestStore) {
    let projector = Projector::connect(&t.url, models::all()).await.unwrap();
    let plan = DayPlan {
        tenant: tenant(),
        sessions: 60,
        agents: 8,
        seed: 7,
        start: DateTime::from_timestamp(1_790_000_000, 0).unwrap(),
        language: witness_workload::Language::English,
    };
    // Live: project after every few customers, while the day runs.
    let store = t.store.clone();
    let live = async move { run_day(&store, &plan, |_| {}).await.unwrap() };
    let report = tokio::select! {
        report = live => report,
        _ = async { loop { projector.catch_up(&t.store, |_| {}).await.unwrap(); tokio::task::yield_now().await; } } => unreachable!(),
    };
    // On PostgreSQL the last events may not be visible yet (xmin horizon).
    let mut projected = 0;
    for _ in 0..300 {
        projector.catch_up(&t.store, |_| {}).await.unwrap();
        projected = projector.dump("audit_trail").await.unwrap().len() as u64;
        if projected == t.store.count().await.unwrap() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(projected, report.events, "every event is in the audit trail");
    assert!(report.assigned > 20 && report.bot_resolved > 5 && report.tickets > 0, "{report:?}");

    let sessions = projector.dump("sessions").await.unwrap();
    assert_eq!(sessions.len(), 60);
    let agents = projector.dump("queue_agents").await.unwrap();
    assert_eq!(agents.len(), 8);
    assert!(projector.dump("queue_waiting").await.unwrap().is_empty(), "nobody is left waiting at the end of the day");
    assert_eq!(projector.dump("tickets").await.unwrap().len(), report.tickets);

    // The audit trail: tenant-scoped, personal fields masked by role.
    let events = t.store.count().await.unwrap() as usize;
    let full = projector.audit(&t.store, &tenant(), Role::Compliance, 0, 100_000).await.unwrap();
    assert_eq!(full.len(), events);
    let masked = projector.audit(&t.store, &tenant(), Role::Supervisor, 0, 100_000).await.unwrap();
    let shows = |rows: &[AuditRow], s: &str| rows.iter().any(|r| r.detail.to_string().contains(s));
    assert!(shows(&full, "I was charged twice") && !shows(&masked, "I was charged twice"));
    assert!(masked.iter().all(|r| r.masked) && full.iter().all(|r| !r.masked));
    assert_eq!(
        masked.iter().map(|r| r.position).collect::<Vec<_>>(),
        full.iter().map(|r| r.position).collect::<Vec<_>>()
    );
    // Each row's detail is its event, read from the log by position.
    let logged = t.store.read_all(witness_schemas::Cursor::START, 100_000).await.unwrap();
    for (row, event) in full.iter().zip(&logged) {
        assert_eq!(row.position, event.position);
        assert_eq!(row.detail, serde_json::from_str::<serde_json::Value>(&event.payload).unwrap());
    }
    // The session timeline is the trail's session rows, by session.
    let timeline = projector.dump("session_timeline").await.unwrap();
    let in_sessions: Vec<_> = logged.iter().filter(|e| e.stream_id.kind == StreamKind::Session).collect();
    assert_eq!(timeline.len(), in_sessions.len());
    // (Rows are dumped as text and sorted as text: find the first event's.)
    let first = &in_sessions[0];
    let row = timeline
        .iter()
        .find(|r| {
            // PostgreSQL's rows dump as JSON, SQLite's as typed columns.
            let p = first.position;
            r.contains(&format!("\"position\":{p},")) || r.starts_with(&format!("Integer({p}) "))
        })
        .unwrap_or_else(|| panic!("no row for position {} among {:?}", first.position, &timeline[..3]));
    assert!(row.contains(&first.stream_id.id) && !row.contains("session-"), "{row}");
    let other: witness_schemas::TenantId = "globex".parse().unwrap();
    assert!(projector.audit(&t.store, &other, Role::Compliance, 0, 100).await.unwrap().is_empty());
    assert_eq!(
        projector.audit(&t.store, &tenant(), Role::Compliance, full[9].position, 5).await.unwrap(),
        full[10..15].to_vec()
    );

    // The readers the API uses, on this backend.
    let queue = projector.queue(&tenant()).await.unwrap();
    assert!(queue.waiting.is_empty());
    assert_eq!(queue.agents.len(), 8);
    assert!(queue.agents.iter().all(|a| !a.presence.is_empty() && a.capacity > 0), "{queue:?}");
    let all = SessionQuery { limit: 1000, ..SessionQuery::default() };
    let found = projector.find_sessions(&tenant(), &all).await.unwrap();
    assert_eq!(found.len(), 60);
    assert!(found.windows(2).all(|w| w[0].started_at >= w[1].started_at), "newest first");
    let abandoned = SessionQuery { outcome: Some("abandoned".into()), ..all.clone() };
    let expected = found.iter().filter(|s| s.outcome.as_deref() == Some("abandoned")).count();
    assert_eq!(projector.find_sessions(&tenant(), &abandoned).await.unwrap().len(), expected);
    let agent = found.iter().find_map(|s| s.agent_id.clone()).unwrap();
    let by_agent = SessionQuery { agent: Some(agent.clone()), ..all.clone() };
    let theirs = projector.find_sessions(&tenant(), &by_agent).await.unwrap();
    assert!(!theirs.is_empty() && theirs.iter().all(|s| s.agent_id.as_deref() == Some(agent.as_str())));
    let later = SessionQuery { since: Some("2999-01-01T00:00:00.000000Z".into()), ..all };
    assert!(projector.find_sessions(&tenant(), &later).await.unwrap().is_empty());

    let mut before = Vec::new();
    for table in projector.tables() {
        before.push((table, projector.dump(table).await.unwrap()));
    }
    projector.reset().await.unwrap();
    assert!(projector.dump("sessions").await.unwrap().is_empty());
    let read = projector.catch_up(&t.store, |_| {}).await.unwrap();
    assert_eq!(read, report.events);
    for (table, rows) in before {
        assert_eq!(projector.dump(table).await.unwrap(), rows, "{table} differs after rebuild");
    }
}

/// Two projectors on one database (two `serve` nodes, or a commit that
/// lands after its caller gave up) race over the same log: every event still
/// counts once, so the tables equal a single projector's rebuild.
async fn racing_projectors_count_every_event_once(t: TestStore) {
    let plan = DayPlan {
        tenant: tenant(),
        sessions: 40,
        agents: 6,
        seed: 11,
        start: DateTime::from_timestamp(1_790_000_000, 0).unwrap(),
        language: witness_workload::Language::English,
    };
    run_day(&t.store, &plan, |_| {}).await.unwrap();
    let (a, b) = (
        Projector::connect(&t.url, models::all()).await.unwrap(),
        Projector::connect(&t.url, models::all()).await.unwrap(),
    );
    let (ra, rb) = tokio::join!(a.catch_up(&t.store, |_| {}), b.catch_up(&t.store, |_| {}));
    ra.unwrap();
    rb.unwrap();
    let mut raced = Vec::new();
    for table in a.tables() {
        raced.push((table, a.dump(table).await.unwrap()));
    }
    a.reset().await.unwrap();
    a.catch_up(&t.store, |_| {}).await.unwrap();
    for (table, rows) in raced {
        assert_eq!(a.dump(table).await.unwrap(), rows, "{table}: the race counted some events twice");
    }
}

#[tokio::test]
async fn sqlite_racing_projectors_count_every_event_once() {
    racing_projectors_count_every_event_once(sqlite().await).await;
}

#[tokio::test]
async fn postgres_racing_projectors_count_every_event_once() {
    racing_projectors_count_every_event_once(postgres().await).await;
}

#[tokio::test]
async fn sqlite_rebuilt_projections_equal_the_live_ones() {
    live_then_rebuilt(sqlite().await).await;
}

#[tokio::test]
async fn postgres_rebuilt_projections_equal_the_live_ones() {
    live_then_rebuilt(postgres().await).await;
}

/// The compliance read models on both backends: a dual recording walked,
/// evaluated and reviewed lands in `dual_recordings` (steps, verdict) and
/// `qa_evaluations` (score in percent), and a rebuild gives the same rows.
async fn compliance_read_models(t: TestStore) {
    use chrono::{Duration, Utc};
    use witness_domain::session::{Session, SessionCommand};
    use witness_engine::executor::execute;
    use witness_schemas::*;
    let (id, agent, offer_id, call_id, recording_id) =
        (SessionId::new(), UserId::new(), OfferId::new(), CallId::new(), RecordingId::new());
    let t0 = Utc::now() - Duration::hours(2);
    let step = |i: u32| DualRecordingStepStarted {
        script_id: "wealth".into(),
        script_version: 1,
        step_index: i,
        step_kind: DualRecordingStepKind::RiskDisclosure,
        recording_offset_ms: 1_000 * i as u64,
    };
    let done = |i: u32| DualRecordingStepCompleted {
        script_id: "wealth".into(),
        script_version: 1,
        step_index: i,
        outcome: StepOutcome::Completed,
        recording_offset_ms: 1_000 * i as u64 + 500,
    };
    let review = |i: u32| DualRecordingStepReviewed {
        script_id: "wealth".into(),
        script_version: 1,
        step_index: i,
        passed: true,
        comment: None,
    };
    let evaluation = QaEvaluated {
        evaluation_id: EvaluationId::new(),
        session_id: id,
        evaluator_id: UserId::new(),
        total_score: 7.0,
        max_score: 8.0,
        criteria: vec![QaCriterionScore { criterion: "greeting".into(), weight: 1.0, score: 7.0, comment: None }],
    };
    let commands = vec![
        SessionCommand::Start {
            session_id: id,
            channel: Channel::App,
            business_type: "wealth".into(),
            customer_ref: "visitor-5".into(),
            locale: None,
        },
        SessionCommand::RequestHuman {
            group: "wealth".into(),
            reason: "r".into(),
            context_summary: "c".into(),
            priority: 0,
        },
        SessionCommand::Offer { offer_id, agent_id: agent, expires_at: t0 + Duration::seconds(20) },
        SessionCommand::AcceptOffer { offer_id, agent_id: agent, at: t0 },
        SessionCommand::StartCall { agent_id: agent, call_id, kind: CallKind::Video },
        SessionCommand::StartRecording { recording_id, reason: RecordingReason::DualRecording },
        SessionCommand::StartStep { step: step(0), steps: 2 },
        SessionCommand::CompleteStep { step: done(0) },
        SessionCommand::StartStep { step: step(1), steps: 2 },
        SessionCommand::CompleteStep { step: done(1) },
        SessionCommand::End { ended_by: EndedBy::Agent, reason: EndReason::Resolved },
        SessionCommand::Evaluate { evaluation },
        SessionCommand::ReviewStep { review: review(0) },
        SessionCommand::ReviewStep { review: review(1) },
        SessionCommand::Review { verdict: DualRecordingReviewed { passed: true, comment: None } },
    ];
    let stream = StreamId::session(id);
    let projector = Projector::connect(&t.url, models::all()).await.unwrap();
    for (i, command) in commands.into_iter().enumerate() {
        let at = t0 + Duration::seconds(i as i64);
        let ends = matches!(command, SessionCommand::End { .. });
        if ends {
            // Recorded, not yet ended: not yet to review (but listed with `all`).
            projector.catch_up(&t.store, |_| {}).await.unwrap();
            assert!(projector.reviews(&tenant(), false, 10).await.unwrap().is_empty(), "listed while the call runs");
            assert_eq!(projector.reviews(&tenant(), true, 10).await.unwrap().len(), 1);
        }
        execute::<Session>(&t.store, &tenant(), &stream, &Actor::system(), at, command).await.unwrap();
        if ends {
            projector.catch_up(&t.store, |_| {}).await.unwrap();
            assert_eq!(projector.reviews(&tenant(), false, 10).await.unwrap().len(), 1, "to review once ended");
        }
    }
    projector.catch_up(&t.store, |_| {}).await.unwrap();
    /// The two read models' rows, as text.
    async fn read(p: &Projector) -> (Vec<Vec<String>>, Vec<Vec<String>>) {
        let columns = ["session_id", "script_id", "script_version", "steps", "verdict"];
        let dual = p.rows("dual_recordings", &columns, None).await.unwrap();
        let qa = p.rows("qa_evaluations", &["session_id", "score"], None).await.unwrap();
        let text = |rows: Vec<Vec<witness_projections::Value>>| {
            rows.iter().map(|r| r.iter().map(|v| v.text()).collect::<Vec<_>>()).collect::<Vec<_>>()
        };
        (text(dual), text(qa))
    }
    let live = read(&projector).await;
    assert_eq!(live.0, vec![vec![id.to_string(), "wealth".into(), "1".into(), "2".into(), "passed".into()]]);
    assert_eq!(live.1, vec![vec![id.to_string(), "88".into()]], "7 of 8 is 88 %");
    let pending = projector.reviews(&tenant(), false, 10).await.unwrap();
    assert!(pending.is_empty(), "reviewed: {pending:?}");
    // Rebuilt from position 0, the two read models hold the same rows.
    for name in ["qa", "dual_recordings"] {
        let one = Projector::connect(&t.url, models::all()).await.unwrap().only(name).unwrap();
        one.reset().await.unwrap();
        assert_ne!(read(&one).await, live, "{name}: reset empties its table");
        one.catch_up(&t.store, |_| {}).await.unwrap();
    }
    assert_eq!(read(&projector).await, live);
}

#[tokio::test]
async fn sqlite_compliance_read_models_project_and_rebuild() {
    compliance_read_models(sqlite().await).await;
}

#[tokio::test]
async fn postgres_compliance_read_models_project_and_rebuild() {
    compliance_read_models(postgres().await).await;
}
