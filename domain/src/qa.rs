//! Automatic QA: a tenant's rules ([`QaRulesSet`]) checked over one
//! session's events. Pure — the same events give the same findings, today
//! or in a replay — so findings are computed when asked for, not stored;
//! what a supervisor concludes from them is a `QaEvaluated` event.
//!
//! Long silences are checked in the conversation's transcript — its
//! messages — while an agent has the session and no call runs. A call's
//! own silences are not: Witness makes no transcript of calls.

use chrono::{DateTime, Utc};
use witness_schemas::*;

/// One rule's verdict on a session.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct QaFinding {
    /// greeting, forbidden_words, response_time, silence or dual_recording_steps.
    pub rule: &'static str,
    pub passed: bool,
    pub detail: String,
}

fn text(content: &MessageContent) -> Option<&str> {
    match content {
        MessageContent::Text { text } => Some(text),
        MessageContent::RichText { markdown, .. } => Some(markdown),
        MessageContent::Image { caption, .. } => caption.as_deref(),
        MessageContent::File { .. } => None,
    }
}

fn hms(t: DateTime<Utc>) -> String {
    t.format("%H:%M:%S").to_string()
}

/// The findings of `rules` over a session's events, in order. A rule that
/// does not apply (no agent ever took the session; no dual recording) gives
/// no finding.
pub fn check(rules: &QaRulesSet, events: &[RecordedEvent]) -> Vec<QaFinding> {
    let decoded: Vec<(DateTime<Utc>, Event)> =
        events.iter().filter_map(|e| e.decode().ok().map(|d| (e.occurred_at, d))).collect();
    let assigned = decoded.iter().find_map(|(t, e)| matches!(e, Event::AgentAssigned(_)).then_some(*t));
    let agent_messages: Vec<(DateTime<Utc>, &AgentMessage)> = decoded
        .iter()
        .filter_map(|(t, e)| match e {
            Event::AgentMessage(m) => Some((*t, m)),
            _ => None,
        })
        .collect();
    let mut findings = Vec::new();

    if let (Some(limit), Some(assigned)) = (rules.greeting_within_secs, assigned) {
        let first = agent_messages.iter().find(|(t, _)| *t >= assigned).map(|(t, _)| *t);
        findings.push(match first {
            Some(t) => {
                let secs = (t - assigned).num_seconds();
                QaFinding {
                    rule: "greeting",
                    passed: secs <= limit as i64,
                    detail: format!("first agent message {secs} s after assignment (limit {limit} s)"),
                }
            }
            None => QaFinding { rule: "greeting", passed: false, detail: "the agent never wrote".into() },
        });
    }

    if !rules.forbidden_words.is_empty() && assigned.is_some() {
        let words: Vec<String> = rules.forbidden_words.iter().map(|w| w.to_lowercase()).collect();
        let hits: Vec<String> = agent_messages
            .iter()
            .filter_map(|(t, m)| {
                let said = text(&m.content)?.to_lowercase();
                let word = words.iter().find(|w| said.contains(w.as_str()))?;
                Some(format!("{word:?} at {}", hms(*t)))
            })
            .collect();
        findings.push(QaFinding {
            rule: "forbidden_words",
            passed: hits.is_empty(),
            detail: if hits.is_empty() { "none used".into() } else { hits.join(", ") },
        });
    }

    if let (Some(limit), Some(assigned)) = (rules.response_sla_secs, assigned) {
        let end = decoded.iter().find_map(|(t, e)| matches!(e, Event::SessionEnded(_)).then_some(*t));
        let (mut asked, mut late, mut worst) = (0, 0, 0i64);
        for (t, e) in &decoded {
            if !matches!(e, Event::CustomerMessage(_)) || *t < assigned || end.is_some_and(|end| *t >= end) {
                continue;
            }
            asked += 1;
            match agent_messages.iter().find(|(a, _)| a >= t) {
                Some((answered, _)) => {
                    let wait = (*answered - *t).num_seconds();
                    worst = worst.max(wait);
                    late += (wait > limit as i64) as u32;
                }
                None => late += 1,
            }
        }
        findings.push(QaFinding {
            rule: "response_time",
            passed: late == 0,
            detail: format!("{late} of {asked} customer messages answered later than {limit} s or not at all (longest wait {worst} s)"),
        });
    }

    if let (Some(limit), Some(assigned)) = (rules.silence_secs, assigned) {
        // From the assignment to the end: the time since the last message
        // (or the assignment, or a call's end); a call stops the clock.
        let (mut last, mut silences, mut longest) = (Some(assigned), 0, (0i64, assigned));
        for (t, e) in decoded.iter().filter(|(t, _)| *t >= assigned) {
            let speaks = matches!(e, Event::CustomerMessage(_) | Event::AgentMessage(_) | Event::SessionEnded(_));
            if speaks {
                if let Some(since) = last {
                    let gap = (*t - since).num_seconds();
                    silences += (gap > limit as i64) as u32;
                    if gap > longest.0 {
                        longest = (gap, since);
                    }
                }
                last = Some(*t);
            }
            match e {
                Event::CallStarted(_) => last = None,
                Event::CallEnded(_) => last = Some(*t),
                Event::SessionEnded(_) => break,
                _ => {}
            }
        }
        findings.push(QaFinding {
            rule: "silence",
            passed: silences == 0,
            detail: format!(
                "{silences} silence(s) longer than {limit} s in the conversation (longest {} s, from {}); calls are not checked",
                longest.0,
                hms(longest.1)
            ),
        });
    }

    let started: Vec<(String, u32)> = decoded
        .iter()
        .filter_map(|(_, e)| match e {
            Event::DualRecordingStepStarted(s) => Some((s.script_id.clone(), s.step_index)),
            _ => None,
        })
        .collect();
    if !started.is_empty() {
        let missing: Vec<String> = started
            .iter()
            .filter(|(script, step)| {
                !decoded.iter().any(|(_, e)| {
                    matches!(e, Event::DualRecordingStepCompleted(c) if &c.script_id == script && c.step_index == *step)
                })
            })
            .map(|(script, step)| format!("{script} step {step}"))
            .collect();
        findings.push(QaFinding {
            rule: "dual_recording_steps",
            passed: missing.is_empty(),
            detail: if missing.is_empty() {
                format!("all {} steps completed", started.len())
            } else {
                format!("not completed: {}", missing.join(", "))
            },
        });
    }
    findings
}
