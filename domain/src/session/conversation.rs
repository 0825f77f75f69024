//! The conversation: the bot, the queue and its offers, transfers, ending,
//! wrap-up and rating.

use witness_schemas::*;

use super::{Session, SessionCommand as C, SessionState, SessionStatus as S, TRANSFER_CONTEXT};
use crate::{refusal, DomainError};

pub(super) fn decide(state: &SessionState, command: C) -> Result<Vec<Event>, DomainError> {
    let name = command.name();
    let recent_context = || state.recent.iter().rev().take(TRANSFER_CONTEXT).rev().map(|m| m.id).collect();
    let events: Vec<Event> = match (state.status(), command) {
        (S::NotStarted, C::Start { session_id, channel, business_type, customer_ref, locale }) => {
            if business_type.trim().is_empty() {
                return Err(DomainError::Invalid(refusal!("business_type_empty", "business_type is empty")));
            }
            vec![SessionStarted { session_id, channel, business_type, customer_ref, locale }.into()]
        }
        (S::WithBot | S::Queued | S::Offered | S::Assigned | S::InCall, C::CustomerSays { message_id, content }) => {
            vec![CustomerMessage { message_id, content }.into()]
        }
        (S::WithBot, C::BotAnswers { message_id, content, faq_id, score }) => {
            vec![BotMessage { message_id, content, faq_id, score }.into()]
        }
        (S::Assigned | S::InCall, C::AgentSays { agent_id, message_id, content }) => {
            Session::check_agent(state, agent_id)?;
            vec![AgentMessage { message_id, agent_id, content }.into()]
        }
        (S::WithBot, C::RequestHuman { group, reason, context_summary, priority }) => {
            vec![
                TransferRequested {
                    from: TransferSource::Bot,
                    to: TransferTarget::Human,
                    reason,
                    context_summary,
                    recent_messages: recent_context(),
                }
                .into(),
                SessionQueued { group, priority }.into(),
            ]
        }
        (S::Assigned | S::InCall, C::Transfer { agent_id, to, reason, context_summary }) => {
            Session::check_agent(state, agent_id)?;
            let group = match &to {
                TransferTarget::Group { group } => group.clone(),
                TransferTarget::Human | TransferTarget::Agent { .. } => state.group.clone().unwrap_or_default(),
            };
            if to == (TransferTarget::Agent { agent_id }) {
                return Err(DomainError::Invalid(refusal!(
                    "transfer_to_self",
                    "an agent cannot transfer a session to themselves"
                )));
            }
            let mut events: Vec<Event> = Vec::new();
            if let Some(call) = state.call() {
                events.extend(Session::end_call(call, Some("transferred".into())));
            }
            events.push(
                TransferRequested {
                    from: TransferSource::Agent { agent_id },
                    to,
                    reason,
                    context_summary,
                    recent_messages: recent_context(),
                }
                .into(),
            );
            // A transferred customer has already waited once: they go ahead.
            events.push(SessionQueued { group, priority: 1 }.into());
            events
        }
        (S::Queued, C::Offer { offer_id, agent_id, expires_at }) => {
            vec![AgentOffered { offer_id, agent_id, expires_at }.into()]
        }
        (S::Queued, C::Assign { offer_id, agent_id, at }) => {
            let group = state.group.clone().unwrap_or_default();
            vec![
                AgentOffered { offer_id, agent_id, expires_at: at }.into(),
                OfferAccepted { offer_id, agent_id }.into(),
                AgentAssigned { agent_id, group }.into(),
            ]
        }
        (S::Queued, C::Requeue { group }) => {
            let group = group.trim().to_owned();
            if group.is_empty() {
                return Err(DomainError::Invalid(refusal!("move_needs_group", "a session is moved to a named group")));
            }
            if state.group.as_deref() == Some(group.as_str()) {
                return Err(DomainError::Invalid(refusal!(
                    "already_in_group",
                    "the session already waits in {group}",
                    group = format!("{group:?}")
                )));
            }
            // It has waited once already: it goes ahead in its new queue.
            vec![SessionQueued { group, priority: 1 }.into()]
        }
        (S::Offered, C::AcceptOffer { offer_id, agent_id, at }) => {
            let offer = open_offer(state, offer_id, Some(agent_id))?;
            if at >= offer.expires_at {
                return Err(DomainError::OfferExpired {
                    offer: offer_id.to_string(),
                    expires_at: offer.expires_at.to_rfc3339(),
                });
            }
            let group = state.group.clone().unwrap_or_default();
            vec![OfferAccepted { offer_id, agent_id }.into(), AgentAssigned { agent_id, group }.into()]
        }
        (S::Offered, C::DeclineOffer { offer_id, agent_id, reason }) => {
            open_offer(state, offer_id, Some(agent_id))?;
            vec![OfferDeclined { offer_id, agent_id, reason }.into()]
        }
        (S::Offered, C::ExpireOffer { offer_id, at }) => {
            let offer = open_offer(state, offer_id, None)?;
            if at < offer.expires_at {
                return Err(DomainError::Invalid(refusal!(
                    "offer_not_expired",
                    "offer {offer_id} has not expired yet",
                    offer_id = offer_id
                )));
            }
            vec![OfferExpired { offer_id, agent_id: offer.agent_id }.into()]
        }
        // A message is left instead of waiting: not once someone serves.
        (S::WithBot | S::Assigned | S::InCall, C::End { reason: EndReason::LeftMessage, .. }) => {
            return Err(Session::refuse(state, "End (left a message)"))
        }
        (S::WithBot | S::Assigned, C::End { ended_by, reason }) => {
            vec![SessionEnded { ended_by, reason }.into()]
        }
        // Leaving before an agent took the session is abandonment, whatever the caller says.
        // …unless they left a message for later.
        (S::Queued | S::Offered, C::End { ended_by, reason }) => {
            let reason = if reason == EndReason::LeftMessage { reason } else { EndReason::Abandoned };
            vec![SessionEnded { ended_by, reason }.into()]
        }
        (S::InCall, C::End { ended_by, reason }) => {
            let mut events =
                state.call().map(|call| Session::end_call(call, Some("session ended".into()))).unwrap_or_default();
            events.push(SessionEnded { ended_by, reason }.into());
            events
        }
        (S::WithBot | S::Queued | S::Offered, C::TimeOut) => {
            vec![SessionEnded { ended_by: EndedBy::System, reason: EndReason::Timeout }.into()]
        }
        (S::WrapUp, C::CompleteWrapUp { agent_id, disposition, notes }) => {
            Session::check_agent(state, agent_id)?;
            vec![WrapUpCompleted { agent_id, disposition, notes }.into()]
        }
        (S::WrapUp | S::Closed, C::Rate { rating, comment }) if !state.rated => {
            vec![SatisfactionRated { rating, comment }.into()]
        }
        _ => return Err(Session::refuse(state, name)),
    };
    Ok(events)
}

/// The open offer if it is `offer_id` (made to `agent`, when one is named).
fn open_offer(
    state: &SessionState,
    offer_id: OfferId,
    agent: Option<UserId>,
) -> Result<&super::OpenOffer, DomainError> {
    state
        .offer()
        .filter(|o| o.offer_id == offer_id && agent.is_none_or(|a| a == o.agent_id))
        .ok_or_else(|| DomainError::UnknownOffer { offer: offer_id.to_string() })
}
