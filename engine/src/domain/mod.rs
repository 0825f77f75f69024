//! Deciders: the pure rules of the workflow.
//!
//! Each aggregate (a session, an agent, a ticket) is a [`Decider`]:
//! `decide(&state, command) -> Result<Vec<Event>, DomainError>` says what
//! happens, `evolve(state, &event) -> state` says what it means. Neither does
//! IO or reads a clock; time arrives inside commands (`at`). Loading a
//! stream, folding it with `evolve`, deciding and appending is the
//! [`crate::executor`]'s job.

pub mod agent;
pub mod session;
pub mod tenant;
pub mod ticket;

#[cfg(test)]
pub(crate) mod harness;

use witness_schemas::Event;

/// Why a command was refused. Nothing is appended when a decider refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    #[error("{command} is not allowed while the {aggregate} is {state}")]
    NotAllowed { aggregate: &'static str, command: &'static str, state: String },
    #[error("agent {agent} is not the agent of this session")]
    NotTheAssignedAgent { agent: String },
    #[error("offer {offer} is not the session's open offer")]
    UnknownOffer { offer: String },
    #[error("offer {offer} expired at {expires_at}")]
    OfferExpired { offer: String, expires_at: String },
    #[error("invalid command: {0}")]
    Invalid(String),
}

/// The rules of one kind of aggregate.
pub trait Decider {
    type State: Default + Clone + std::fmt::Debug;
    type Command: std::fmt::Debug;

    fn decide(state: &Self::State, command: Self::Command) -> Result<Vec<Event>, DomainError>;
    fn evolve(state: Self::State, event: &Event) -> Self::State;

    /// The state after `events`, from the default.
    fn fold<'a>(events: impl IntoIterator<Item = &'a Event>) -> Self::State {
        events.into_iter().fold(Self::State::default(), Self::evolve)
    }
}
