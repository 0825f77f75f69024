//! The read models. Each is a pure function from an event to row
//! operations; the [`crate::Projector`] applies them with the checkpoint.

use witness_engine::chain::time_text;
use witness_schemas::*;

use crate::rows::{Merge, RowOp, Value};

/// A read model: its name (for checkpoints and `witness rebuild NAME`), its
/// tables (emptied by a rebuild), and how an event changes them.
pub trait Projection: Send + Sync {
    fn name(&self) -> &'static str;
    fn tables(&self) -> &'static [&'static str];
    fn apply(&self, recorded: &RecordedEvent, event: &Event, out: &mut Vec<RowOp>);
}

/// Every read model Witness keeps.
pub fn all() -> Vec<Box<dyn Projection>> {
    vec![
        Box::new(Sessions),
        Box::new(AuditTrail),
        Box::new(Queues),
        Box::new(Tickets),
        Box::new(Qa),
        Box::new(DualRecordings),
    ]
}

fn session_key(e: &RecordedEvent) -> Option<(&'static str, Value)> {
    (e.stream_id.kind == StreamKind::Session).then(|| ("session_id", Value::from(e.stream_id.id.clone())))
}

fn text(v: impl ToString) -> Value {
    Value::from(v.to_string())
}

/// A snake_case name of a serde enum value (`Channel::MiniProgram` → `mini_program`).
fn enum_text(v: impl serde::Serialize) -> Value {
    Value::from(serde_json::to_value(v).ok().and_then(|j| j.as_str().map(str::to_owned)))
}

/// `sessions`: one row per session.
#[derive(Debug)]
pub struct Sessions;

impl Projection for Sessions {
    fn name(&self) -> &'static str {
        "sessions"
    }

    fn tables(&self) -> &'static [&'static str] {
        &["sessions"]
    }

    fn apply(&self, r: &RecordedEvent, event: &Event, out: &mut Vec<RowOp>) {
        let Some(key) = session_key(r) else { return };
        let at = || text(time_text(&r.occurred_at));
        let set = |columns: Vec<(&'static str, Value, Merge)>| {
            let mut all = vec![("tenant_id", text(&r.tenant_id), Merge::Set)];
            all.extend(columns);
            RowOp::Upsert { table: "sessions", key: key.clone(), columns: all }
        };
        let add = |column| RowOp::Add { table: "sessions", key: key.clone(), column, delta: 1 };
        match event {
            Event::SessionStarted(e) => out.push(set(vec![
                ("channel", enum_text(e.channel), Merge::Set),
                ("business_type", text(&e.business_type), Merge::Set),
                ("customer_ref", text(&e.customer_ref), Merge::Set),
                ("started_at", at(), Merge::Set),
            ])),
            Event::SessionQueued(e) => {
                out.push(set(vec![("queued_at", at(), Merge::KeepFirst), ("group_name", text(&e.group), Merge::Set)]))
            }
            Event::AgentAssigned(e) => {
                out.push(set(vec![("assigned_at", at(), Merge::KeepFirst), ("agent_id", text(e.agent_id), Merge::Set)]))
            }
            Event::TransferRequested(_) => out.push(add("transfers")),
            Event::CustomerMessage(_) | Event::BotMessage(_) | Event::AgentMessage(_) => out.push(add("messages")),
            Event::SessionEnded(e) => out.push(set(vec![
                ("ended_at", at(), Merge::Set),
                ("ended_by", enum_text(e.ended_by), Merge::Set),
                ("outcome", enum_text(e.reason), Merge::Set),
            ])),
            Event::SatisfactionRated(e) => {
                out.push(set(vec![("satisfaction", Value::from(e.rating.get() as i64), Merge::Set)]))
            }
            _ => {}
        }
    }
}

/// One line of a session's story, for timelines.
pub fn summarize(event: &Event) -> String {
    fn content(c: &MessageContent) -> String {
        let s = match c {
            MessageContent::Text { text } => text.clone(),
            MessageContent::Image { attachment, .. } => format!("[image {}]", attachment.file_name),
            MessageContent::File { attachment } => format!("[file {}]", attachment.file_name),
            MessageContent::RichText { markdown, .. } => markdown.clone(),
        };
        if s.chars().count() > 200 {
            s.chars().take(199).collect::<String>() + "…"
        } else {
            s
        }
    }
    match event {
        Event::SessionStarted(e) => format!("session started on {:?}, {}", e.channel, e.business_type),
        Event::CustomerMessage(e) => format!("customer: {}", content(&e.content)),
        Event::BotMessage(e) => format!("bot: {}", content(&e.content)),
        Event::AgentMessage(e) => format!("agent: {}", content(&e.content)),
        Event::TransferRequested(e) => format!("transfer requested ({}): {}", e.reason, e.context_summary),
        Event::SessionQueued(e) => format!("queued in {} (priority {})", e.group, e.priority),
        Event::AgentOffered(e) => format!("offered to agent {}", e.agent_id),
        Event::OfferAccepted(e) => format!("agent {} accepted", e.agent_id),
        Event::OfferDeclined(e) => format!("agent {} declined", e.agent_id),
        Event::OfferExpired(e) => format!("offer to agent {} expired", e.agent_id),
        Event::AgentAssigned(e) => format!("assigned to agent {} ({})", e.agent_id, e.group),
        Event::CallStarted(e) => format!("{:?} call started", e.kind),
        Event::CallEnded(_) => "call ended".into(),
        Event::SessionEnded(e) => format!("ended by {:?}: {:?}", e.ended_by, e.reason),
        Event::WrapUpCompleted(e) => format!("wrap-up completed: {}", e.disposition),
        Event::SatisfactionRated(e) => format!("rated {}/5", e.rating.get()),
        Event::RecordingSegmentClosed(e) => format!("recording segment {} of {} closed", e.segment_index, e.track_id),
        Event::RecordingInterrupted(e) => format!(
            "recording of {} interrupted ({}): {}",
            e.track_id,
            if e.resumed { "resumed in a new segment" } else { "not resumed" },
            e.error
        ),
        other => other.event_type().to_owned(),
    }
}

/// `audit_trail`: every event of every stream — who did what to which stream
/// and when — indexing the log rather than copying it: the event itself is
/// read from the store by position when the trail is shown
/// ([`crate::Projector::audit`]), decrypted, then masked by the reader's
/// role. `session_timeline` is a view of its session rows
/// (`migrations/*/0008_audit_trail_indexes_the_log.sql`).
#[derive(Debug)]
pub struct AuditTrail;

impl Projection for AuditTrail {
    fn name(&self) -> &'static str {
        "audit_trail"
    }

    fn tables(&self) -> &'static [&'static str] {
        &["audit_trail"]
    }

    fn apply(&self, r: &RecordedEvent, _: &Event, out: &mut Vec<RowOp>) {
        out.push(RowOp::Insert {
            table: "audit_trail",
            key: ("position", Value::from(r.position as i64)),
            columns: vec![
                ("tenant_id", text(&r.tenant_id)),
                ("stream_id", text(&r.stream_id)),
                ("occurred_at", text(time_text(&r.occurred_at))),
                ("actor_kind", text(r.actor.kind.as_str())),
                ("actor_id", Value::from(r.actor.id.clone())),
                ("action", text(&r.event_type)),
            ],
        });
    }
}

/// `queue_waiting` (sessions waiting per group, since when) and
/// `queue_agents` (presence, capacity, skills, load).
#[derive(Debug)]
pub struct Queues;

impl Projection for Queues {
    fn name(&self) -> &'static str {
        "queues"
    }

    fn tables(&self) -> &'static [&'static str] {
        &["queue_waiting", "queue_agents"]
    }

    fn apply(&self, r: &RecordedEvent, event: &Event, out: &mut Vec<RowOp>) {
        let load = |agent: UserId, delta| RowOp::Add {
            table: "queue_agents",
            key: ("agent_id", text(agent)),
            column: "load",
            delta,
        };
        match (session_key(r), event) {
            (Some(key), Event::SessionQueued(e)) => out.push(RowOp::Upsert {
                table: "queue_waiting",
                key,
                columns: vec![
                    ("tenant_id", text(&r.tenant_id), Merge::Set),
                    ("group_name", text(&e.group), Merge::Set),
                    ("priority", Value::from(e.priority as i64), Merge::Set),
                    ("queued_at", text(time_text(&r.occurred_at)), Merge::Set),
                ],
            }),
            (Some(key), Event::OfferAccepted(_) | Event::SessionEnded(_)) => {
                out.push(RowOp::Delete { table: "queue_waiting", key })
            }
            (Some(_), Event::AgentAssigned(e)) => out.push(load(e.agent_id, 1)),
            (Some(_), Event::WrapUpCompleted(e)) => out.push(load(e.agent_id, -1)),
            (Some(_), Event::TransferRequested(TransferRequested { from: TransferSource::Agent { agent_id }, .. })) => {
                out.push(load(*agent_id, -1))
            }
            (_, Event::AgentPresenceChanged(e)) => out.push(RowOp::Upsert {
                table: "queue_agents",
                key: ("agent_id", text(e.agent_id)),
                columns: vec![
                    ("tenant_id", text(&r.tenant_id), Merge::Set),
                    ("presence", enum_text(e.presence), Merge::Set),
                    ("capacity", Value::from(e.capacity as i64), Merge::Set),
                    ("skill_groups", text(e.skill_groups.join(",")), Merge::Set),
                    ("updated_at", text(time_text(&r.occurred_at)), Merge::Set),
                ],
            }),
            _ => {}
        }
    }
}

/// `qa_evaluations`: one row per QA evaluation, its score in percent of the
/// form's maximum.
#[derive(Debug)]
pub struct Qa;

impl Projection for Qa {
    fn name(&self) -> &'static str {
        "qa"
    }

    fn tables(&self) -> &'static [&'static str] {
        &["qa_evaluations"]
    }

    fn apply(&self, r: &RecordedEvent, event: &Event, out: &mut Vec<RowOp>) {
        let Event::QaEvaluated(e) = event else { return };
        let score = if e.max_score > 0.0 { (e.total_score / e.max_score * 100.0).round() as i64 } else { 0 };
        out.push(RowOp::Insert {
            table: "qa_evaluations",
            key: ("evaluation_id", text(e.evaluation_id)),
            columns: vec![
                ("tenant_id", text(&r.tenant_id)),
                ("session_id", text(e.session_id)),
                ("evaluator_id", text(e.evaluator_id)),
                ("score", Value::from(score)),
                ("evaluated_at", text(time_text(&r.occurred_at))),
            ],
        });
    }
}

/// `dual_recordings`: one row per session with a dual recording, for the
/// review console: its script, steps started, and the verdict once given.
#[derive(Debug)]
pub struct DualRecordings;

impl Projection for DualRecordings {
    fn name(&self) -> &'static str {
        "dual_recordings"
    }

    fn tables(&self) -> &'static [&'static str] {
        &["dual_recordings"]
    }

    fn apply(&self, r: &RecordedEvent, event: &Event, out: &mut Vec<RowOp>) {
        let Some(key) = session_key(r) else { return };
        let at = || text(time_text(&r.occurred_at));
        match event {
            Event::DualRecordingStepStarted(e) => {
                out.push(RowOp::Upsert {
                    table: "dual_recordings",
                    key: key.clone(),
                    columns: vec![
                        ("tenant_id", text(&r.tenant_id), Merge::Set),
                        ("script_id", text(&e.script_id), Merge::Set),
                        ("script_version", Value::from(e.script_version as i64), Merge::Set),
                        ("recorded_at", at(), Merge::KeepFirst),
                    ],
                });
                out.push(RowOp::Add { table: "dual_recordings", key, column: "steps", delta: 1 });
            }
            Event::DualRecordingReviewed(e) => out.push(RowOp::Update {
                table: "dual_recordings",
                key,
                columns: vec![("verdict", text(if e.passed { "passed" } else { "failed" })), ("reviewed_at", at())],
            }),
            _ => {}
        }
    }
}

/// `tickets`: one row per ticket with its current status.
#[derive(Debug)]
pub struct Tickets;

impl Projection for Tickets {
    fn name(&self) -> &'static str {
        "tickets"
    }

    fn tables(&self) -> &'static [&'static str] {
        &["tickets"]
    }

    fn apply(&self, r: &RecordedEvent, event: &Event, out: &mut Vec<RowOp>) {
        let at = text(time_text(&r.occurred_at));
        match event {
            Event::TicketCreated(e) => out.push(RowOp::Upsert {
                table: "tickets",
                key: ("ticket_id", text(e.ticket_id)),
                columns: vec![
                    ("tenant_id", text(&r.tenant_id), Merge::Set),
                    ("session_id", text(e.session_id), Merge::Set),
                    ("title", text(&e.title), Merge::Set),
                    ("priority", enum_text(e.priority), Merge::Set),
                    ("status", text("open"), Merge::Set),
                    ("created_at", at.clone(), Merge::Set),
                    ("updated_at", at, Merge::Set),
                ],
            }),
            Event::TicketStatusChanged(e) => out.push(RowOp::Update {
                table: "tickets",
                key: ("ticket_id", text(e.ticket_id)),
                columns: vec![("status", enum_text(e.status)), ("updated_at", at)],
            }),
            _ => {}
        }
    }
}
