//! Replay a session as of any moment: its timeline up to then, and the
//! state the session decider gives for exactly those events — what a
//! compliance officer sees when they ask "what did the agent know at 10:42?".

use chrono::{DateTime, Utc};
use serde::Serialize;
use witness_domain::session::{Session, SessionState};
use witness_domain::Decider;
use witness_engine::{EventStore, StoreError};
use witness_projections::models::summarize;
use witness_schemas::{SchemaError, SessionId, StreamId};

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("no session {0} in the store")]
    NotFound(SessionId),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("event at position {position} cannot be decoded: {source}")]
    Decode { position: u64, source: SchemaError },
}

#[derive(Debug, Clone, Serialize)]
pub struct TimelineLine {
    pub position: u64,
    pub stream_version: u64,
    pub occurred_at: DateTime<Utc>,
    pub event_type: String,
    pub actor: String,
    pub summary: String,
}

/// The session's state as the decider sees it, in words.
#[derive(Debug, Clone, Serialize)]
pub struct StateView {
    pub status: String,
    pub channel: Option<String>,
    pub business_type: String,
    pub group: Option<String>,
    pub agent: Option<String>,
    pub open_offer_to: Option<String>,
    pub in_call: bool,
    pub ended: bool,
    pub rated: bool,
    pub recent_messages: usize,
}

impl From<&SessionState> for StateView {
    fn from(s: &SessionState) -> Self {
        StateView {
            status: s.status().to_string(),
            channel: s.channel.map(|c| format!("{c:?}")),
            business_type: s.business_type.clone(),
            group: s.group.clone(),
            agent: s.agent().map(|a| a.to_string()),
            open_offer_to: s.offer().map(|o| o.agent_id.to_string()),
            in_call: s.call().is_some(),
            ended: s.ended(),
            rated: s.rated,
            recent_messages: s.recent.len(),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct SessionReplay {
    pub session_id: SessionId,
    pub tenant_id: String,
    /// `None`: the whole history.
    pub as_of: Option<DateTime<Utc>>,
    pub timeline: Vec<TimelineLine>,
    pub state: StateView,
    /// Events after `as_of`, not shown.
    pub later_events: usize,
}

/// Replays `session` with every event that occurred at or before `at`.
pub async fn replay_session(
    store: &EventStore,
    session: SessionId,
    at: Option<DateTime<Utc>>,
) -> Result<SessionReplay, ReplayError> {
    let history = store.read_stream(&StreamId::session(session), 1).await?;
    let Some(first) = history.first() else { return Err(ReplayError::NotFound(session)) };
    let tenant_id = first.tenant_id.to_string();
    let mut state = SessionState::default();
    let mut timeline = Vec::new();
    let mut later_events = 0;
    for e in &history {
        if at.is_some_and(|at| e.occurred_at > at) {
            later_events += 1;
            continue;
        }
        let event = e.decode().map_err(|source| ReplayError::Decode { position: e.position, source })?;
        timeline.push(TimelineLine {
            position: e.position,
            stream_version: e.stream_version,
            occurred_at: e.occurred_at,
            event_type: e.event_type.clone(),
            actor: match &e.actor.id {
                Some(id) => format!("{} {id}", e.actor.kind.as_str()),
                None => e.actor.kind.as_str().to_owned(),
            },
            summary: summarize(&event),
        });
        state = Session::evolve(state, &event);
    }
    Ok(SessionReplay {
        session_id: session,
        tenant_id,
        as_of: at,
        timeline,
        state: StateView::from(&state),
        later_events,
    })
}

impl std::fmt::Display for SessionReplay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.as_of {
            Some(at) => writeln!(f, "session {} (tenant {}) as of {at}", self.session_id, self.tenant_id)?,
            None => writeln!(f, "session {} (tenant {})", self.session_id, self.tenant_id)?,
        }
        for l in &self.timeline {
            writeln!(
                f,
                "  {}  #{:<4} {:<26} {:<12} {}",
                l.occurred_at.format("%F %T"),
                l.position,
                l.event_type,
                l.actor.split(' ').next().unwrap_or(""),
                l.summary
            )?;
        }
        if self.later_events > 0 {
            writeln!(f, "  … {} later events not shown", self.later_events)?;
        }
        let s = &self.state;
        write!(f, "state: {}", s.status)?;
        if let Some(g) = &s.group {
            write!(f, ", group {g}")?;
        }
        if let Some(a) = &s.agent {
            write!(f, ", agent {a}")?;
        }
        if let Some(a) = &s.open_offer_to {
            write!(f, ", offer open to {a}")?;
        }
        if s.in_call {
            write!(f, ", in a call")?;
        }
        if s.rated {
            write!(f, ", rated")?;
        }
        writeln!(f)
    }
}

#[cfg(test)]
mod tests {
    use chrono::Duration;
    use witness_schemas::StreamKind;
    use witness_workload::{run_day, DayPlan};

    use super::*;

    #[tokio::test]
    async fn replay_as_of_a_time_shows_the_state_then() {
        let dir = tempfile::tempdir().unwrap();
        let store = EventStore::connect(&format!("sqlite://{}/w.db", dir.path().display())).await.unwrap();
        let start = DateTime::from_timestamp(1_790_000_000, 0).unwrap();
        let plan = DayPlan {
            tenant: "acme".parse().unwrap(),
            sessions: 20,
            agents: 4,
            seed: 3,
            start,
            language: witness_workload::Language::Chinese,
        };
        run_day(&store, &plan, |_| {}).await.unwrap();
        // A session that reached an agent.
        let events = store.read_all(witness_schemas::Cursor::START, 10_000).await.unwrap();
        let assigned = events
            .iter()
            .find(|e| e.event_type == "AgentAssigned" && e.stream_id.kind == StreamKind::Session)
            .expect("some session was assigned");
        let session: SessionId = assigned.stream_id.id.parse().unwrap();

        let whole = replay_session(&store, session, None).await.unwrap();
        assert_eq!(whole.later_events, 0);
        assert_eq!(whole.timeline.len(), store.read_stream(&assigned.stream_id, 1).await.unwrap().len());

        let before =
            replay_session(&store, session, Some(assigned.occurred_at - Duration::milliseconds(1))).await.unwrap();
        assert_ne!(before.state.status, "assigned");
        assert!(before.state.agent.is_none());
        let then = replay_session(&store, session, Some(assigned.occurred_at)).await.unwrap();
        let witness_schemas::Event::AgentAssigned(a) = assigned.decode().unwrap() else { panic!("not an assignment") };
        assert_eq!(then.state.agent, Some(a.agent_id.to_string()));
        assert_eq!(then.timeline.last().unwrap().event_type, "AgentAssigned");
        assert!(then.later_events > 0);
        assert!(then.to_string().contains("AgentAssigned"));

        let missing = replay_session(&store, SessionId::new(), None).await.unwrap_err();
        assert!(matches!(missing, ReplayError::NotFound(_)));
    }
}
