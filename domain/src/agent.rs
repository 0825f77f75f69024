//! An agent's availability: presence, capacity (concurrent sessions) and
//! skill groups. Which sessions an agent holds is the router's business,
//! read from the session streams.

use witness_schemas::*;

use super::{Decider, DomainError};
use crate::refusal;

/// The most sessions one agent may hold at once.
pub const MAX_CAPACITY: u32 = 20;

#[derive(Debug, Clone, PartialEq, Default)]
pub struct AgentState {
    pub agent_id: Option<UserId>,
    pub presence: Option<Presence>,
    pub capacity: u32,
    pub skill_groups: Vec<String>,
}

#[derive(Debug, Clone)]
pub enum AgentCommand {
    SetPresence { agent_id: UserId, presence: Presence, capacity: u32, skill_groups: Vec<String> },
}

#[derive(Debug)]
pub struct Agent;

impl Decider for Agent {
    type State = AgentState;
    type Command = AgentCommand;

    fn decide(state: &AgentState, command: AgentCommand) -> Result<Vec<Event>, DomainError> {
        let AgentCommand::SetPresence { agent_id, presence, capacity, mut skill_groups } = command;
        if state.agent_id.is_some_and(|id| id != agent_id) {
            return Err(DomainError::Invalid(refusal!(
                "agent_stream_mismatch",
                "this stream belongs to another agent than {agent_id}",
                agent_id = agent_id
            )));
        }
        if presence != Presence::Offline {
            if !(1..=MAX_CAPACITY).contains(&capacity) {
                return Err(DomainError::Invalid(refusal!(
                    "capacity_range",
                    "capacity must be 1 to {max}, got {capacity}",
                    max = MAX_CAPACITY,
                    capacity = capacity
                )));
            }
            if skill_groups.iter().all(|g| g.trim().is_empty()) {
                return Err(DomainError::Invalid(refusal!(
                    "agent_needs_group",
                    "an available agent needs at least one skill group"
                )));
            }
        }
        skill_groups.retain(|g| !g.trim().is_empty());
        skill_groups.sort();
        skill_groups.dedup();
        // Saying what is already true changes nothing and records nothing.
        if state.presence == Some(presence) && state.capacity == capacity && state.skill_groups == skill_groups {
            return Ok(vec![]);
        }
        Ok(vec![AgentPresenceChanged { agent_id, presence, capacity, skill_groups }.into()])
    }

    fn evolve(mut state: AgentState, event: &Event) -> AgentState {
        if let Event::AgentPresenceChanged(e) = event {
            state.agent_id = Some(e.agent_id);
            state.presence = Some(e.presence);
            state.capacity = e.capacity;
            state.skill_groups = e.skill_groups.clone();
        }
        state
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::harness::TestHarness;

    fn online(agent_id: UserId, capacity: u32) -> Event {
        AgentPresenceChanged { agent_id, presence: Presence::Online, capacity, skill_groups: vec!["cards".into()] }
            .into()
    }

    #[test]
    fn an_agent_goes_online_with_capacity_and_skills() {
        let id = UserId::new();
        TestHarness::<Agent>::given([])
            .when(AgentCommand::SetPresence {
                agent_id: id,
                presence: Presence::Online,
                capacity: 3,
                skill_groups: vec!["cards".into(), "cards".into(), " ".into()],
            })
            .then([online(id, 3)]);
    }

    #[test]
    fn repeating_the_current_presence_records_nothing() {
        let id = UserId::new();
        TestHarness::<Agent>::given([online(id, 3)])
            .when(AgentCommand::SetPresence {
                agent_id: id,
                presence: Presence::Online,
                capacity: 3,
                skill_groups: vec!["cards".into()],
            })
            .then([]);
    }

    #[test]
    fn capacity_and_skills_are_checked_unless_going_offline() {
        let id = UserId::new();
        for (capacity, groups) in [(0, vec!["cards".to_string()]), (21, vec!["cards".to_string()]), (2, vec![])] {
            let err = TestHarness::<Agent>::given([])
                .when(AgentCommand::SetPresence {
                    agent_id: id,
                    presence: Presence::Away,
                    capacity,
                    skill_groups: groups,
                })
                .refused();
            assert!(matches!(err, DomainError::Invalid(_)));
        }
        TestHarness::<Agent>::given([online(id, 3)])
            .when(AgentCommand::SetPresence {
                agent_id: id,
                presence: Presence::Offline,
                capacity: 0,
                skill_groups: vec![],
            })
            .then([AgentPresenceChanged {
                agent_id: id,
                presence: Presence::Offline,
                capacity: 0,
                skill_groups: vec![],
            }
            .into()]);
    }
}
