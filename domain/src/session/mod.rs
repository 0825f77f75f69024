//! A customer-service session, from the bot's greeting to the closed record.
//!
//! ```text
//!            RequestHuman            Offer              AcceptOffer          StartCall
//!  WithBot ───────────────▶ Queued ─────────▶ Offered ─────────────▶ Assigned ────────▶ InCall
//!     │                       ▲  ▲  Decline/Expire │                   │  ▲   EndCall     │
//!     │                       │  └─────────────────┘                   │  └───────────────┘
//!     │                       └──────────── Transfer ──────────────────┤ (also from InCall)
//!     │ End / TimeOut                                                  │ End
//!     ▼                                                                ▼
//!   Closed ◀──────────── End (abandoned) / TimeOut from Queued, Offered   WrapUp ──CompleteWrapUp──▶ Closed
//! ```
//!
//! The customer may rate once the conversation has ended.//!
//! The decider is split by concern: [`conversation`] (the bot, the queue,
//! offers, transfers, ending, wrap-up, rating), [`call`] (calls, what the
//! media server reports, recordings and who heard them) and [`compliance`]
//! (dual-recording steps and their review, face verification, QA
//! evaluations, retention). [`state`] is what a session is and how each
//! event changes it.

mod call;
mod command;
mod compliance;
mod conversation;
mod state;
#[cfg(test)]
mod tests;

pub use command::{CallFact, SessionCommand};
pub use state::{
    DualProgress, OnCall, OpenOffer, Phase, RecentMessage, SessionState, SessionStatus, Speaker, RECENT_MESSAGES,
    TRANSFER_CONTEXT,
};
use witness_schemas::*;

use crate::{Decider, DomainError};

/// The session decider.
#[derive(Debug)]
pub struct Session;

impl Session {
    /// `command` is not something the session does in its state.
    fn refuse(state: &SessionState, command: &'static str) -> DomainError {
        DomainError::NotAllowed { aggregate: "session", command, state: state.status().to_string() }
    }

    fn check_agent(state: &SessionState, agent_id: UserId) -> Result<(), DomainError> {
        if state.agent() == Some(agent_id) {
            Ok(())
        } else {
            Err(DomainError::NotTheAssignedAgent { agent: agent_id.to_string() })
        }
    }

    /// The events that end the running call: its recording stops with it.
    fn end_call(call: &OnCall, reason: Option<String>) -> Vec<Event> {
        let mut events: Vec<Event> = Vec::new();
        if let Some(recording_id) = call.recording {
            events.push(RecordingStopped { recording_id }.into());
        }
        events.push(CallEnded { call_id: call.call_id, reason }.into());
        events
    }
}

impl Decider for Session {
    type State = SessionState;
    type Command = SessionCommand;

    fn decide(state: &SessionState, command: SessionCommand) -> Result<Vec<Event>, DomainError> {
        use SessionCommand as C;
        match command {
            C::ByAgent { agent_id, command } => {
                Self::check_agent(state, agent_id)?;
                Self::decide(state, *command)
            }
            C::StartCall { .. }
            | C::EndCall { .. }
            | C::CallMedia { .. }
            | C::StartRecording { .. }
            | C::CloseSegment { .. }
            | C::InterruptRecording { .. }
            | C::StopRecording { .. }
            | C::Composite { .. }
            | C::AccessRecording { .. } => call::decide(state, command),
            C::StartStep { .. }
            | C::CompleteStep { .. }
            | C::RequestFaceVerification { .. }
            | C::CompleteFaceVerification { .. }
            | C::ReviewStep { .. }
            | C::Review { .. }
            | C::RecordDeletion { .. }
            | C::RecordErasure { .. }
            | C::Evaluate { .. } => compliance::decide(state, command),
            C::Start { .. }
            | C::CustomerSays { .. }
            | C::BotAnswers { .. }
            | C::AgentSays { .. }
            | C::RequestHuman { .. }
            | C::Transfer { .. }
            | C::Offer { .. }
            | C::Assign { .. }
            | C::Requeue { .. }
            | C::AcceptOffer { .. }
            | C::DeclineOffer { .. }
            | C::ExpireOffer { .. }
            | C::End { .. }
            | C::TimeOut
            | C::CompleteWrapUp { .. }
            | C::Rate { .. } => conversation::decide(state, command),
        }
    }

    fn evolve(state: SessionState, event: &Event) -> SessionState {
        state.apply(event)
    }
}
