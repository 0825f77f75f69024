//! A ticket: follow-up work opened from a session. Open → in progress →
//! resolved → closed; a resolved ticket may be reopened (back to in
//! progress), a closed one is final.

use witness_schemas::*;

use super::session::{SessionState, Speaker};
use super::{Decider, DomainError};
use crate::refusal;

#[derive(Debug, Clone, PartialEq, Default)]
pub struct TicketState {
    pub ticket_id: Option<TicketId>,
    pub session_id: Option<SessionId>,
    pub status: Option<TicketStatus>,
}

#[derive(Debug, Clone)]
pub enum TicketCommand {
    Create { ticket_id: TicketId, session_id: SessionId, title: String, description: String, priority: TicketPriority },
    ChangeStatus { status: TicketStatus, note: Option<String> },
}

/// A ticket draft filled from a session's context, for the agent to edit:
/// the title from the business type and the customer's last words, the
/// description from the recent conversation.
pub fn draft_from_session(session: &SessionState) -> (String, String) {
    let last_customer = session.recent.iter().rev().find(|m| m.from == Speaker::Customer).map(|m| m.text.as_str());
    let mut title = match last_customer {
        Some(text) => format!("[{}] {}", session.business_type, text),
        None => format!("[{}] follow-up", session.business_type),
    };
    if title.chars().count() > 80 {
        title = title.chars().take(79).collect::<String>() + "…";
    }
    let description = session
        .recent
        .iter()
        .map(|m| {
            let who = match m.from {
                Speaker::Customer => "customer",
                Speaker::Bot => "bot",
                Speaker::Agent => "agent",
            };
            format!("{who}: {}", m.text)
        })
        .collect::<Vec<_>>()
        .join("\n");
    (title, description)
}

#[derive(Debug)]
pub struct Ticket;

impl Decider for Ticket {
    type State = TicketState;
    type Command = TicketCommand;

    fn decide(state: &TicketState, command: TicketCommand) -> Result<Vec<Event>, DomainError> {
        use TicketStatus as S;
        let refuse = |command: &'static str| DomainError::NotAllowed {
            aggregate: "ticket",
            command,
            state: state.status.map_or("not created".into(), |s| format!("{s:?}").to_lowercase()),
        };
        match command {
            TicketCommand::Create { ticket_id, session_id, title, description, priority } => {
                if state.status.is_some() {
                    return Err(refuse("Create"));
                }
                if title.trim().is_empty() {
                    return Err(DomainError::Invalid(refusal!("ticket_title", "a ticket needs a title")));
                }
                Ok(vec![TicketCreated { ticket_id, session_id, title, description, priority }.into()])
            }
            TicketCommand::ChangeStatus { status, note } => {
                let allowed = matches!(
                    (state.status, status),
                    (Some(S::Open), S::InProgress | S::Resolved | S::Closed)
                        | (Some(S::InProgress), S::Resolved | S::Closed)
                        | (Some(S::Resolved), S::InProgress | S::Closed)
                );
                if !allowed {
                    return Err(refuse("ChangeStatus"));
                }
                let ticket_id = state.ticket_id.expect("created tickets have an id");
                Ok(vec![TicketStatusChanged { ticket_id, status, note }.into()])
            }
        }
    }

    fn evolve(mut state: TicketState, event: &Event) -> TicketState {
        match event {
            Event::TicketCreated(e) => {
                state.ticket_id = Some(e.ticket_id);
                state.session_id = Some(e.session_id);
                state.status = Some(TicketStatus::Open);
            }
            Event::TicketStatusChanged(e) => state.status = Some(e.status),
            _ => {}
        }
        state
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::harness::TestHarness;
    use crate::session::{Session, SessionCommand};

    fn created(ticket_id: TicketId) -> Event {
        TicketCreated {
            ticket_id,
            session_id: SessionId::new(),
            title: "t".into(),
            description: "d".into(),
            priority: TicketPriority::Normal,
        }
        .into()
    }

    fn status(ticket_id: TicketId, status: TicketStatus) -> Event {
        TicketStatusChanged { ticket_id, status, note: None }.into()
    }

    #[test]
    fn a_ticket_moves_from_open_to_closed() {
        let id = TicketId::new();
        let mut history = vec![created(id)];
        for next in [TicketStatus::InProgress, TicketStatus::Resolved, TicketStatus::Closed] {
            TestHarness::<Ticket>::given(history.clone())
                .when(TicketCommand::ChangeStatus { status: next, note: None })
                .then([status(id, next)]);
            history.push(status(id, next));
        }
    }

    #[test]
    fn a_closed_ticket_stays_closed_and_a_ticket_is_created_once() {
        let id = TicketId::new();
        let err = TestHarness::<Ticket>::given([created(id), status(id, TicketStatus::Closed)])
            .when(TicketCommand::ChangeStatus { status: TicketStatus::InProgress, note: None })
            .refused();
        assert!(matches!(err, DomainError::NotAllowed { .. }));
        TestHarness::<Ticket>::given([created(id)])
            .when(TicketCommand::Create {
                ticket_id: id,
                session_id: SessionId::new(),
                title: "again".into(),
                description: String::new(),
                priority: TicketPriority::Low,
            })
            .refused();
    }

    #[test]
    fn a_resolved_ticket_can_be_reopened() {
        let id = TicketId::new();
        TestHarness::<Ticket>::given([created(id), status(id, TicketStatus::Resolved)])
            .when(TicketCommand::ChangeStatus {
                status: TicketStatus::InProgress,
                note: Some("customer called back".into()),
            })
            .then([TicketStatusChanged {
                ticket_id: id,
                status: TicketStatus::InProgress,
                note: Some("customer called back".into()),
            }
            .into()]);
    }

    #[test]
    fn the_draft_is_filled_from_the_session_context() {
        let session_id = SessionId::new();
        let mut state = Session::fold(&[Event::from(SessionStarted {
            session_id,
            channel: Channel::App,
            business_type: "cards".into(),
            customer_ref: "v".into(),
            locale: None,
        })]);
        for (cmd_text, bot) in [("my card was charged twice", false), ("Sorry to hear that.", true)] {
            let content = MessageContent::Text { text: cmd_text.into() };
            let cmd = if bot {
                SessionCommand::BotAnswers { message_id: MessageId::new(), content, faq_id: None, score: None }
            } else {
                SessionCommand::CustomerSays { message_id: MessageId::new(), content }
            };
            for e in Session::decide(&state, cmd).unwrap() {
                state = Session::evolve(state, &e);
            }
        }
        let (title, description) = draft_from_session(&state);
        assert_eq!(title, "[cards] my card was charged twice");
        assert_eq!(description, "customer: my card was charged twice\nbot: Sorry to hear that.");
    }
}
