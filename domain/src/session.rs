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
//! The customer may rate once the conversation has ended.

use std::collections::VecDeque;
use std::fmt;

use chrono::{DateTime, Utc};
use witness_schemas::*;

use super::{Decider, DomainError};
use crate::refusal;

/// How many recent messages a session keeps for transfers and ticket drafts.
pub const RECENT_MESSAGES: usize = 20;
/// How many of those travel with a transfer as context.
pub const TRANSFER_CONTEXT: usize = 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SessionStatus {
    #[default]
    NotStarted,
    WithBot,
    Queued,
    Offered,
    Assigned,
    InCall,
    WrapUp,
    Closed,
}

impl fmt::Display for SessionStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            Self::NotStarted => "not started",
            Self::WithBot => "with the bot",
            Self::Queued => "queued",
            Self::Offered => "offered to an agent",
            Self::Assigned => "assigned",
            Self::InCall => "in a call",
            Self::WrapUp => "in wrap-up",
            Self::Closed => "closed",
        };
        f.write_str(s)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Speaker {
    Customer,
    Bot,
    Agent,
}

/// A message as the session remembers it: enough for context and drafts.
#[derive(Debug, Clone, PartialEq)]
pub struct RecentMessage {
    pub id: MessageId,
    pub from: Speaker,
    /// The text, or a placeholder like `[image bill.png]`.
    pub text: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct OpenOffer {
    pub offer_id: OfferId,
    pub agent_id: UserId,
    pub expires_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct SessionState {
    pub status: SessionStatus,
    pub session_id: Option<SessionId>,
    /// Who the customer is (their visitor token's subject), as started.
    pub customer_ref: String,
    pub channel: Option<Channel>,
    pub business_type: String,
    pub group: Option<String>,
    pub agent: Option<UserId>,
    pub offer: Option<OpenOffer>,
    pub call: Option<CallId>,
    /// The latest call, kept after it ended: the media server reports
    /// leaves and ended tracks that happen as it closes.
    pub last_call: Option<CallId>,
    /// The recording running, if any.
    pub recording: Option<RecordingId>,
    /// The latest recording, kept after it stopped: its last segments are
    /// written as the recorder flushes.
    pub last_recording: Option<RecordingId>,
    /// Every recording the session had, in order.
    pub recordings: Vec<RecordingId>,
    pub recent: VecDeque<RecentMessage>,
    pub ended: bool,
    pub rated: bool,
    /// The dual-recording script followed, if one was started.
    pub dual: Option<DualProgress>,
    /// A face verification requested and not yet completed.
    pub face_verification: Option<VerificationId>,
    /// Its personal data erased (`PersonalDataErased`).
    pub erased: bool,
}

/// Where a session is in its dual-recording script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DualProgress {
    pub script_id: String,
    pub version: u32,
    /// Steps completed (with any outcome), in order.
    pub done: Vec<(u32, StepOutcome)>,
    /// The step started and not yet completed.
    pub open: Option<u32>,
    /// Reviewers' verdicts on completed steps (the latest per step).
    pub step_reviews: std::collections::BTreeMap<u32, bool>,
    /// The overall verdict, once given.
    pub verdict: Option<bool>,
}

/// What can be asked of a session.
#[derive(Debug, Clone)]
pub enum SessionCommand {
    Start {
        session_id: SessionId,
        channel: Channel,
        business_type: String,
        customer_ref: String,
        locale: Option<String>,
    },
    CustomerSays {
        message_id: MessageId,
        content: MessageContent,
    },
    BotAnswers {
        message_id: MessageId,
        content: MessageContent,
        faq_id: Option<String>,
        score: Option<f64>,
    },
    AgentSays {
        agent_id: UserId,
        message_id: MessageId,
        content: MessageContent,
    },
    /// Bot → human, with the bot's summary; the recent messages go along.
    RequestHuman {
        group: String,
        reason: String,
        context_summary: String,
        priority: i32,
    },
    /// Human → a skill group or a named agent.
    Transfer {
        agent_id: UserId,
        to: TransferTarget,
        reason: String,
        context_summary: String,
    },
    Offer {
        offer_id: OfferId,
        agent_id: UserId,
        expires_at: DateTime<Utc>,
    },
    /// A waiting session taken by an agent from the queue, or given to one
    /// by a supervisor: offered and accepted at once, so that the router and
    /// every read model see the usual offer, acceptance and assignment.
    /// Only while the session waits with no offer open.
    Assign {
        offer_id: OfferId,
        agent_id: UserId,
        at: DateTime<Utc>,
    },
    /// A waiting session moved to another group's queue (a supervisor).
    Requeue {
        group: String,
    },
    AcceptOffer {
        offer_id: OfferId,
        agent_id: UserId,
        at: DateTime<Utc>,
    },
    DeclineOffer {
        offer_id: OfferId,
        agent_id: UserId,
        reason: Option<String>,
    },
    ExpireOffer {
        offer_id: OfferId,
        at: DateTime<Utc>,
    },
    StartCall {
        agent_id: UserId,
        call_id: CallId,
        kind: CallKind,
    },
    EndCall {
        call_id: CallId,
        reason: Option<String>,
    },
    /// The media server reports what happened in the call.
    CallMedia {
        fact: CallFact,
    },
    StartRecording {
        recording_id: RecordingId,
        reason: RecordingReason,
    },
    /// The recorder closed a segment file (media reports it with its hash).
    CloseSegment {
        segment: RecordingSegmentClosed,
    },
    /// A track's recorder failed (media reports whether it went on).
    InterruptRecording {
        interruption: RecordingInterrupted,
    },
    StopRecording {
        recording_id: RecordingId,
    },
    End {
        ended_by: EndedBy,
        reason: EndReason,
    },
    /// The composite of one of the session's recordings was rendered.
    Composite {
        composite: RecordingComposited,
    },
    /// Someone allowed to played or downloaded part of a recording.
    AccessRecording {
        recording_id: RecordingId,
        access: RecordingAccessKind,
        user_id: UserId,
        range: Option<String>,
    },
    /// The bot's idle limit or the queue's wait limit passed.
    TimeOut,
    CompleteWrapUp {
        agent_id: UserId,
        disposition: String,
        notes: Option<String>,
    },
    Rate {
        rating: Rating,
        comment: Option<String>,
    },
    /// A file of the ended session was deleted under the retention policy.
    RecordDeletion {
        deleted: MediaDeleted,
    },
    /// The ended session's key was erased under the retention policy.
    RecordErasure {
        erased: PersonalDataErased,
    },
    /// A QA evaluation of the ended session (scored against the tenant's form by the caller).
    Evaluate {
        evaluation: QaEvaluated,
    },
    /// The next step of a dual-recording script begins, during a recorded
    /// call; `steps` is how many the script version has (the caller looked it up).
    StartStep {
        step: DualRecordingStepStarted,
        steps: u32,
    },
    /// The open step ends.
    CompleteStep {
        step: DualRecordingStepCompleted,
    },
    /// The agent asks to verify the customer's face against an ID photo,
    /// during a call (the customer's video is what is compared).
    RequestFaceVerification {
        request: FaceVerificationRequested,
    },
    /// The requested verification's result (computed by the caller).
    CompleteFaceVerification {
        result: Box<FaceVerificationCompleted>,
    },
    /// A reviewer passes or fails a completed step of the ended session.
    ReviewStep {
        review: DualRecordingStepReviewed,
    },
    /// The reviewer's overall verdict, once every completed step is reviewed.
    Review {
        verdict: DualRecordingReviewed,
    },
}

impl SessionCommand {
    fn name(&self) -> &'static str {
        match self {
            Self::Start { .. } => "Start",
            Self::CustomerSays { .. } => "CustomerSays",
            Self::BotAnswers { .. } => "BotAnswers",
            Self::AgentSays { .. } => "AgentSays",
            Self::RequestHuman { .. } => "RequestHuman",
            Self::Transfer { .. } => "Transfer",
            Self::Offer { .. } => "Offer",
            Self::Assign { .. } => "Assign",
            Self::Requeue { .. } => "Requeue",
            Self::AcceptOffer { .. } => "AcceptOffer",
            Self::DeclineOffer { .. } => "DeclineOffer",
            Self::ExpireOffer { .. } => "ExpireOffer",
            Self::StartCall { .. } => "StartCall",
            Self::EndCall { .. } => "EndCall",
            Self::CallMedia { .. } => "CallMedia",
            Self::StartRecording { .. } => "StartRecording",
            Self::CloseSegment { .. } => "CloseSegment",
            Self::InterruptRecording { .. } => "InterruptRecording",
            Self::StopRecording { .. } => "StopRecording",
            Self::End { .. } => "End",
            Self::AccessRecording { .. } => "AccessRecording",
            Self::Composite { .. } => "Composite",
            Self::TimeOut => "TimeOut",
            Self::CompleteWrapUp { .. } => "CompleteWrapUp",
            Self::Rate { .. } => "Rate",
            Self::RecordDeletion { .. } => "RecordDeletion",
            Self::RecordErasure { .. } => "RecordErasure",
            Self::Evaluate { .. } => "Evaluate",
            Self::StartStep { .. } => "StartStep",
            Self::CompleteStep { .. } => "CompleteStep",
            Self::RequestFaceVerification { .. } => "RequestFaceVerification",
            Self::CompleteFaceVerification { .. } => "CompleteFaceVerification",
            Self::ReviewStep { .. } => "ReviewStep",
            Self::Review { .. } => "Review",
        }
    }
}

fn summary_text(content: &MessageContent) -> String {
    match content {
        MessageContent::Text { text } => text.clone(),
        MessageContent::Image { attachment, .. } => format!("[image {}]", attachment.file_name),
        MessageContent::File { attachment } => format!("[file {}]", attachment.file_name),
        MessageContent::RichText { markdown, .. } => markdown.clone(),
    }
}

/// What the media server saw in a session's call, recorded as the event of
/// the same name with the call's id.
#[derive(Debug, Clone, PartialEq)]
pub enum CallFact {
    ParticipantJoined { participant_id: String, role: ParticipantRole },
    ParticipantLeft { participant_id: String, reason: Option<String> },
    TrackPublished { participant_id: String, track_id: String, kind: TrackKind, codec: String },
    TrackUnpublished { participant_id: String, track_id: String },
    MediaStateChanged { participant_id: String, device: MediaDevice, enabled: bool, blocked: bool },
}

impl CallFact {
    /// Leaves and ended tracks may be reported after the call ended (the
    /// connections close as it ends); everything else needs a live call.
    fn after_end(&self) -> bool {
        matches!(self, Self::ParticipantLeft { .. } | Self::TrackUnpublished { .. })
    }

    fn event(self, call_id: CallId) -> Event {
        match self {
            Self::ParticipantJoined { participant_id, role } => {
                ParticipantJoined { call_id, participant_id, role }.into()
            }
            Self::ParticipantLeft { participant_id, reason } => {
                ParticipantLeft { call_id, participant_id, reason }.into()
            }
            Self::TrackPublished { participant_id, track_id, kind, codec } => {
                TrackPublished { call_id, participant_id, track_id, kind, codec }.into()
            }
            Self::TrackUnpublished { participant_id, track_id } => {
                TrackUnpublished { call_id, participant_id, track_id }.into()
            }
            Self::MediaStateChanged { participant_id, device, enabled, blocked } => {
                MediaStateChanged { call_id, participant_id, device, enabled, blocked }.into()
            }
        }
    }
}

/// The session decider.
#[derive(Debug)]
pub struct Session;

impl Session {
    fn check_offer(state: &SessionState, offer_id: OfferId) -> Result<&OpenOffer, DomainError> {
        state
            .offer
            .as_ref()
            .filter(|o| o.offer_id == offer_id)
            .ok_or_else(|| DomainError::UnknownOffer { offer: offer_id.to_string() })
    }

    /// The events that end the running call: its recording stops with it.
    fn end_call(state: &SessionState, reason: Option<String>) -> Vec<Event> {
        let call_id = state.call.expect("in a call without a call id");
        let mut events: Vec<Event> = Vec::new();
        if let Some(recording_id) = state.recording {
            events.push(RecordingStopped { recording_id }.into());
        }
        events.push(CallEnded { call_id, reason }.into());
        events
    }

    fn check_agent(state: &SessionState, agent_id: UserId) -> Result<(), DomainError> {
        if state.agent == Some(agent_id) {
            Ok(())
        } else {
            Err(DomainError::NotTheAssignedAgent { agent: agent_id.to_string() })
        }
    }
}

impl Decider for Session {
    type State = SessionState;
    type Command = SessionCommand;

    fn decide(state: &SessionState, command: SessionCommand) -> Result<Vec<Event>, DomainError> {
        use SessionCommand as C;
        use SessionStatus as S;
        let refuse = |command: &SessionCommand| DomainError::NotAllowed {
            aggregate: "session",
            command: command.name(),
            state: state.status.to_string(),
        };
        let events: Vec<Event> = match (state.status, command) {
            (S::NotStarted, C::Start { session_id, channel, business_type, customer_ref, locale }) => {
                if business_type.trim().is_empty() {
                    return Err(DomainError::Invalid(refusal!("business_type_empty", "business_type is empty")));
                }
                vec![SessionStarted { session_id, channel, business_type, customer_ref, locale }.into()]
            }
            (
                S::WithBot | S::Queued | S::Offered | S::Assigned | S::InCall,
                C::CustomerSays { message_id, content },
            ) => {
                vec![CustomerMessage { message_id, content }.into()]
            }
            (S::WithBot, C::BotAnswers { message_id, content, faq_id, score }) => {
                vec![BotMessage { message_id, content, faq_id, score }.into()]
            }
            (S::Assigned | S::InCall, C::AgentSays { agent_id, message_id, content }) => {
                Self::check_agent(state, agent_id)?;
                vec![AgentMessage { message_id, agent_id, content }.into()]
            }
            (S::WithBot, C::RequestHuman { group, reason, context_summary, priority }) => {
                let recent_messages = state.recent.iter().rev().take(TRANSFER_CONTEXT).rev().map(|m| m.id).collect();
                vec![
                    TransferRequested {
                        from: TransferSource::Bot,
                        to: TransferTarget::Human,
                        reason,
                        context_summary,
                        recent_messages,
                    }
                    .into(),
                    SessionQueued { group, priority }.into(),
                ]
            }
            (S::Assigned | S::InCall, C::Transfer { agent_id, to, reason, context_summary }) => {
                Self::check_agent(state, agent_id)?;
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
                let recent_messages = state.recent.iter().rev().take(TRANSFER_CONTEXT).rev().map(|m| m.id).collect();
                let mut events: Vec<Event> = Vec::new();
                if state.status == S::InCall {
                    events.extend(Self::end_call(state, Some("transferred".into())));
                }
                events.push(
                    TransferRequested {
                        from: TransferSource::Agent { agent_id },
                        to,
                        reason,
                        context_summary,
                        recent_messages,
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
                    return Err(DomainError::Invalid(refusal!(
                        "move_needs_group",
                        "a session is moved to a named group"
                    )));
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
                let offer = Self::check_offer(state, offer_id)?;
                if offer.agent_id != agent_id {
                    return Err(DomainError::UnknownOffer { offer: offer_id.to_string() });
                }
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
                let offer = Self::check_offer(state, offer_id)?;
                if offer.agent_id != agent_id {
                    return Err(DomainError::UnknownOffer { offer: offer_id.to_string() });
                }
                vec![OfferDeclined { offer_id, agent_id, reason }.into()]
            }
            (S::Offered, C::ExpireOffer { offer_id, at }) => {
                let offer = Self::check_offer(state, offer_id)?;
                if at < offer.expires_at {
                    return Err(DomainError::Invalid(refusal!(
                        "offer_not_expired",
                        "offer {offer_id} has not expired yet",
                        offer_id = offer_id
                    )));
                }
                vec![OfferExpired { offer_id, agent_id: offer.agent_id }.into()]
            }
            (S::Assigned, C::StartCall { agent_id, call_id, kind }) => {
                Self::check_agent(state, agent_id)?;
                vec![CallStarted { call_id, kind }.into()]
            }
            (S::InCall, C::EndCall { call_id, reason }) => {
                if state.call != Some(call_id) {
                    return Err(DomainError::Invalid(refusal!(
                        "not_this_call",
                        "call {call_id} is not this session's call",
                        call_id = call_id
                    )));
                }
                Self::end_call(state, reason)
            }
            (S::InCall, C::CallMedia { fact }) => {
                vec![fact.event(state.call.expect("in a call without a call id"))]
            }
            (_, C::CallMedia { fact }) if fact.after_end() && state.last_call.is_some() => {
                vec![fact.event(state.last_call.expect("checked"))]
            }
            (S::InCall, C::StartRecording { recording_id, reason }) if state.recording.is_none() => {
                let call_id = state.call.expect("in a call without a call id");
                vec![RecordingStarted { recording_id, call_id, reason }.into()]
            }
            // Segments close as the recorder flushes, which may be after the stop.
            (_, C::CloseSegment { segment })
                if state.recording == Some(segment.recording_id)
                    || state.last_recording == Some(segment.recording_id) =>
            {
                vec![segment.into()]
            }
            (_, C::InterruptRecording { interruption })
                if state.recording == Some(interruption.recording_id)
                    || state.last_recording == Some(interruption.recording_id) =>
            {
                vec![interruption.into()]
            }
            (_, C::StopRecording { recording_id }) if state.recording == Some(recording_id) => {
                vec![RecordingStopped { recording_id }.into()]
            }
            (_, C::Composite { composite }) => {
                if !state.recordings.contains(&composite.recording_id) {
                    return Err(DomainError::Invalid(refusal!(
                        "not_this_recording",
                        "recording {recording_id} is not this session's",
                        recording_id = composite.recording_id
                    )));
                }
                vec![composite.into()]
            }
            (S::InCall, C::StartStep { step, steps }) => {
                if state.recording.is_none() {
                    return Err(DomainError::Invalid(refusal!(
                        "step_needs_recording",
                        "a dual-recording step runs while the call is recorded"
                    )));
                }
                let expected = match &state.dual {
                    Some(d) if d.script_id != step.script_id || d.version != step.script_version => {
                        return Err(DomainError::Invalid(refusal!(
                            "other_script",
                            "this session follows script {script} v{version}",
                            script = d.script_id,
                            version = d.version
                        )))
                    }
                    Some(d) if d.open.is_some() => {
                        return Err(DomainError::Invalid(refusal!(
                            "step_still_open",
                            "the open step must be completed first"
                        )))
                    }
                    Some(d) => d.done.len() as u32,
                    None => 0,
                };
                if step.step_index != expected || step.step_index >= steps {
                    return Err(DomainError::Invalid(refusal!(
                        "wrong_step",
                        "the next step is {expected} of {steps}, not {got}",
                        expected = expected,
                        steps = steps,
                        got = step.step_index
                    )));
                }
                vec![step.into()]
            }
            (S::InCall, C::RequestFaceVerification { request }) => {
                if let Some(open) = state.face_verification {
                    return Err(DomainError::Invalid(refusal!(
                        "face_check_open",
                        "face verification {open} is still open",
                        open = open
                    )));
                }
                vec![request.into()]
            }
            (S::InCall, C::CompleteFaceVerification { result }) => {
                if state.face_verification != Some(result.verification_id) {
                    return Err(DomainError::Invalid(refusal!(
                        "not_the_open_face_check",
                        "face verification {id} is not the open one",
                        id = result.verification_id
                    )));
                }
                vec![(*result).into()]
            }
            (S::InCall, C::CompleteStep { step }) => {
                let open = state.dual.as_ref().and_then(|d| {
                    (d.script_id == step.script_id && d.version == step.script_version).then_some(d.open).flatten()
                });
                if open != Some(step.step_index) {
                    return Err(DomainError::Invalid(refusal!(
                        "not_the_open_step",
                        "step {step} is not the open step",
                        step = step.step_index
                    )));
                }
                vec![step.into()]
            }
            (S::WrapUp | S::Closed, C::ReviewStep { review }) => {
                let Some(dual) = &state.dual else {
                    return Err(DomainError::Invalid(refusal!(
                        "no_dual_recording",
                        "the session has no dual recording"
                    )));
                };
                if dual.verdict.is_some() {
                    return Err(DomainError::Invalid(refusal!(
                        "review_closed",
                        "the review is closed: its verdict was given"
                    )));
                }
                if dual.script_id != review.script_id
                    || dual.version != review.script_version
                    || !dual.done.iter().any(|(i, _)| *i == review.step_index)
                {
                    return Err(DomainError::Invalid(refusal!(
                        "step_not_completed",
                        "step {step} was not completed in this session",
                        step = review.step_index
                    )));
                }
                vec![review.into()]
            }
            (S::WrapUp | S::Closed, C::Review { verdict }) => {
                let Some(dual) = &state.dual else {
                    return Err(DomainError::Invalid(refusal!(
                        "no_dual_recording",
                        "the session has no dual recording"
                    )));
                };
                if dual.verdict.is_some() {
                    return Err(DomainError::Invalid(refusal!("verdict_given", "the verdict was already given")));
                }
                if let Some((i, _)) = dual.done.iter().find(|(i, _)| !dual.step_reviews.contains_key(i)) {
                    return Err(DomainError::Invalid(refusal!(
                        "step_not_reviewed",
                        "step {step} is not reviewed yet",
                        step = i + 1
                    )));
                }
                if verdict.passed && dual.step_reviews.values().any(|passed| !passed) {
                    return Err(DomainError::Invalid(refusal!(
                        "failed_step_cannot_pass",
                        "a recording with a failed step cannot pass"
                    )));
                }
                vec![verdict.into()]
            }
            (S::WrapUp | S::Closed, C::RecordDeletion { deleted }) => vec![deleted.into()],
            (S::WrapUp | S::Closed, C::RecordErasure { erased }) => {
                if state.erased {
                    return Err(DomainError::Invalid(refusal!(
                        "already_erased",
                        "the session's personal data is already erased"
                    )));
                }
                vec![erased.into()]
            }
            (S::WrapUp | S::Closed, C::Evaluate { evaluation }) => {
                if state.session_id != Some(evaluation.session_id) {
                    return Err(DomainError::Invalid(refusal!(
                        "evaluation_other_session",
                        "the evaluation names another session"
                    )));
                }
                let scores_ok =
                    evaluation.criteria.iter().all(|c| c.score.is_finite() && c.score >= 0.0 && c.weight > 0.0);
                let total: f64 = evaluation.criteria.iter().map(|c| c.weight * c.score).sum();
                if evaluation.criteria.is_empty()
                    || !scores_ok
                    || !evaluation.max_score.is_finite()
                    || evaluation.max_score <= 0.0
                    || (total - evaluation.total_score).abs() > 1e-6
                    || evaluation.total_score > evaluation.max_score + 1e-6
                {
                    return Err(DomainError::Invalid(refusal!(
                        "evaluation_scores",
                        "an evaluation scores at least one criterion, each from 0, and its total is their weighted sum \
                         within its maximum"
                    )));
                }
                vec![evaluation.into()]
            }
            (_, C::AccessRecording { recording_id, access, user_id, range }) => {
                if !state.recordings.contains(&recording_id) {
                    return Err(DomainError::Invalid(refusal!(
                        "not_this_recording",
                        "recording {recording_id} is not this session's",
                        recording_id = recording_id
                    )));
                }
                vec![RecordingAccessed { recording_id, access, user_id, range }.into()]
            }
            // A message is left instead of waiting: not once someone serves.
            (S::WithBot | S::Assigned | S::InCall, C::End { reason: EndReason::LeftMessage, .. }) => {
                return Err(DomainError::NotAllowed {
                    aggregate: "session",
                    command: "End (left a message)",
                    state: state.status.to_string(),
                })
            }
            (S::WithBot, C::End { ended_by, reason }) => {
                vec![SessionEnded { ended_by, reason }.into()]
            }
            // Leaving before an agent took the session is abandonment, whatever the caller says.
            // …unless they left a message for later.
            (S::Queued | S::Offered, C::End { ended_by, reason }) => {
                let reason = if reason == EndReason::LeftMessage { reason } else { EndReason::Abandoned };
                vec![SessionEnded { ended_by, reason }.into()]
            }
            (S::Assigned, C::End { ended_by, reason }) => {
                vec![SessionEnded { ended_by, reason }.into()]
            }
            (S::InCall, C::End { ended_by, reason }) => {
                let mut events = Self::end_call(state, Some("session ended".into()));
                events.push(SessionEnded { ended_by, reason }.into());
                events
            }
            (S::WithBot | S::Queued | S::Offered, C::TimeOut) => {
                vec![SessionEnded { ended_by: EndedBy::System, reason: EndReason::Timeout }.into()]
            }
            (S::WrapUp, C::CompleteWrapUp { agent_id, disposition, notes }) => {
                Self::check_agent(state, agent_id)?;
                vec![WrapUpCompleted { agent_id, disposition, notes }.into()]
            }
            (S::WrapUp | S::Closed, C::Rate { rating, comment }) if !state.rated => {
                vec![SatisfactionRated { rating, comment }.into()]
            }
            (_, command) => return Err(refuse(&command)),
        };
        Ok(events)
    }

    fn evolve(mut state: SessionState, event: &Event) -> SessionState {
        use SessionStatus as S;
        let remember = |state: &mut SessionState, id: MessageId, from: Speaker, content: &MessageContent| {
            state.recent.push_back(RecentMessage { id, from, text: summary_text(content) });
            if state.recent.len() > RECENT_MESSAGES {
                state.recent.pop_front();
            }
        };
        match event {
            Event::SessionStarted(e) => {
                state.status = S::WithBot;
                state.session_id = Some(e.session_id);
                state.customer_ref = e.customer_ref.clone();
                state.channel = Some(e.channel);
                state.business_type = e.business_type.clone();
            }
            Event::CustomerMessage(e) => remember(&mut state, e.message_id, Speaker::Customer, &e.content),
            Event::BotMessage(e) => remember(&mut state, e.message_id, Speaker::Bot, &e.content),
            Event::AgentMessage(e) => remember(&mut state, e.message_id, Speaker::Agent, &e.content),
            Event::TransferRequested(_) => {
                state.agent = None;
                state.call = None;
            }
            Event::SessionQueued(e) => {
                state.status = S::Queued;
                state.group = Some(e.group.clone());
            }
            Event::AgentOffered(e) => {
                state.status = S::Offered;
                state.offer = Some(OpenOffer { offer_id: e.offer_id, agent_id: e.agent_id, expires_at: e.expires_at });
            }
            Event::OfferDeclined(_) | Event::OfferExpired(_) => {
                state.status = S::Queued;
                state.offer = None;
            }
            Event::OfferAccepted(_) => state.offer = None,
            Event::AgentAssigned(e) => {
                state.status = S::Assigned;
                state.agent = Some(e.agent_id);
            }
            Event::CallStarted(e) => {
                state.status = S::InCall;
                state.call = Some(e.call_id);
                state.last_call = Some(e.call_id);
            }
            Event::DualRecordingStepStarted(e) => {
                let dual = state.dual.get_or_insert_with(|| DualProgress {
                    script_id: e.script_id.clone(),
                    version: e.script_version,
                    done: vec![],
                    open: None,
                    step_reviews: Default::default(),
                    verdict: None,
                });
                dual.open = Some(e.step_index);
            }
            Event::DualRecordingStepReviewed(e) => {
                if let Some(dual) = state.dual.as_mut() {
                    dual.step_reviews.insert(e.step_index, e.passed);
                }
            }
            Event::DualRecordingReviewed(e) => {
                if let Some(dual) = state.dual.as_mut() {
                    dual.verdict = Some(e.passed);
                }
            }
            Event::FaceVerificationRequested(e) => state.face_verification = Some(e.verification_id),
            Event::FaceVerificationCompleted(_) => state.face_verification = None,
            Event::PersonalDataErased(_) => state.erased = true,
            Event::DualRecordingStepCompleted(e) => {
                if let Some(dual) = state.dual.as_mut() {
                    dual.open = None;
                    dual.done.push((e.step_index, e.outcome));
                }
            }
            Event::RecordingStarted(e) => {
                state.recording = Some(e.recording_id);
                state.last_recording = Some(e.recording_id);
                state.recordings.push(e.recording_id);
            }
            Event::RecordingStopped(_) => state.recording = None,
            Event::CallEnded(_) => {
                state.call = None;
                // Its frames can no longer be taken.
                state.face_verification = None;
                if state.status == S::InCall {
                    state.status = S::Assigned;
                }
            }
            Event::SessionEnded(_) => {
                state.ended = true;
                state.offer = None;
                state.status = if state.agent.is_some() { S::WrapUp } else { S::Closed };
            }
            Event::WrapUpCompleted(_) => state.status = S::Closed,
            Event::SatisfactionRated(_) => state.rated = true,
            _ => {}
        }
        state
    }
}

#[cfg(test)]
mod tests {
    use chrono::Duration;

    use super::*;
    use crate::harness::TestHarness;

    type Given = TestHarness<Session>;

    fn text(t: &str) -> MessageContent {
        MessageContent::Text { text: t.into() }
    }

    fn t0() -> DateTime<Utc> {
        DateTime::from_timestamp(1_790_000_000, 0).unwrap()
    }

    struct Ids {
        session: SessionId,
        agent: UserId,
        offer: OfferId,
        m1: MessageId,
        m2: MessageId,
    }

    fn ids() -> Ids {
        Ids {
            session: SessionId::new(),
            agent: UserId::new(),
            offer: OfferId::new(),
            m1: MessageId::new(),
            m2: MessageId::new(),
        }
    }

    fn started(ids: &Ids) -> Event {
        SessionStarted {
            session_id: ids.session,
            channel: Channel::Web,
            business_type: "cards".into(),
            customer_ref: "visitor-1".into(),
            locale: None,
        }
        .into()
    }

    fn with_bot(ids: &Ids) -> Vec<Event> {
        vec![
            started(ids),
            CustomerMessage { message_id: ids.m1, content: text("annual fee?") }.into(),
            BotMessage { message_id: ids.m2, content: text("free the first year"), faq_id: None, score: Some(0.8) }
                .into(),
        ]
    }

    fn queued(ids: &Ids) -> Vec<Event> {
        let mut h = with_bot(ids);
        h.push(
            TransferRequested {
                from: TransferSource::Bot,
                to: TransferTarget::Human,
                reason: "asked".into(),
                context_summary: "fee".into(),
                recent_messages: vec![ids.m1, ids.m2],
            }
            .into(),
        );
        h.push(SessionQueued { group: "cards".into(), priority: 0 }.into());
        h
    }

    fn offered(ids: &Ids) -> Vec<Event> {
        let mut h = queued(ids);
        h.push(
            AgentOffered { offer_id: ids.offer, agent_id: ids.agent, expires_at: t0() + Duration::seconds(20) }.into(),
        );
        h
    }

    fn assigned(ids: &Ids) -> Vec<Event> {
        let mut h = offered(ids);
        h.push(OfferAccepted { offer_id: ids.offer, agent_id: ids.agent }.into());
        h.push(AgentAssigned { agent_id: ids.agent, group: "cards".into() }.into());
        h
    }

    #[test]
    fn a_started_session_is_with_the_bot() {
        let ids = ids();
        Given::given([])
            .when(SessionCommand::Start {
                session_id: ids.session,
                channel: Channel::Web,
                business_type: "cards".into(),
                customer_ref: "visitor-1".into(),
                locale: None,
            })
            .then([started(&ids)]);
        assert_eq!(Session::fold(&[started(&ids)]).status, SessionStatus::WithBot);
    }

    #[test]
    fn asking_for_a_human_transfers_with_the_recent_messages_and_the_bots_summary() {
        let ids = ids();
        Given::given(with_bot(&ids))
            .when(SessionCommand::RequestHuman {
                group: "cards".into(),
                reason: "asked".into(),
                context_summary: "fee".into(),
                priority: 0,
            })
            .then(queued(&ids).split_off(3));
    }

    #[test]
    fn an_accepted_offer_assigns_the_agent() {
        let ids = ids();
        Given::given(offered(&ids))
            .when(SessionCommand::AcceptOffer {
                offer_id: ids.offer,
                agent_id: ids.agent,
                at: t0() + Duration::seconds(5),
            })
            .then(assigned(&ids).split_off(offered(&ids).len()));
    }

    /// Issue 28, item 1: an agent takes a waiting session from the queue, or
    /// a supervisor gives it to one: offered and accepted at once; not while
    /// another agent's offer is open, nor once someone has it.
    #[test]
    fn a_waiting_session_is_assigned_at_once_only_while_no_offer_is_open() {
        let ids = ids();
        let queued = queued(&ids);
        let (offer_id, agent_id, at) = (OfferId::new(), UserId::new(), t0());
        let events = Given::given(queued.clone()).when(SessionCommand::Assign { offer_id, agent_id, at }).events();
        assert_eq!(
            events,
            vec![
                AgentOffered { offer_id, agent_id, expires_at: at }.into(),
                OfferAccepted { offer_id, agent_id }.into(),
                AgentAssigned { agent_id, group: "cards".into() }.into(),
            ]
        );
        let mut h = queued.clone();
        h.extend(events);
        assert_eq!((Session::fold(&h).status, Session::fold(&h).agent), (SessionStatus::Assigned, Some(agent_id)));
        for history in [offered(&ids), h] {
            let err = Given::given(history).when(SessionCommand::Assign { offer_id, agent_id, at }).refused();
            assert!(matches!(err, DomainError::NotAllowed { command: "Assign", .. }), "{err}");
        }
    }

    #[test]
    fn a_waiting_session_moves_to_another_groups_queue_ahead() {
        let ids = ids();
        let queued = queued(&ids);
        Given::given(queued.clone()).when(SessionCommand::Requeue { group: " loans ".into() }).then([SessionQueued {
            group: "loans".into(),
            priority: 1,
        }
        .into()]);
        let err = Given::given(queued).when(SessionCommand::Requeue { group: "cards".into() }).refused();
        assert!(matches!(err, DomainError::Invalid(_)), "already there: {err}");
        let err = Given::given(offered(&ids)).when(SessionCommand::Requeue { group: "loans".into() }).refused();
        assert!(matches!(err, DomainError::NotAllowed { .. }), "{err}");
    }

    #[test]
    fn agent_cannot_accept_an_offer_that_expired() {
        let ids = ids();
        let err = Given::given(offered(&ids))
            .when(SessionCommand::AcceptOffer {
                offer_id: ids.offer,
                agent_id: ids.agent,
                at: t0() + Duration::seconds(20),
            })
            .refused();
        assert!(matches!(err, DomainError::OfferExpired { .. }), "{err}");
    }

    #[test]
    fn another_agent_cannot_accept_someone_elses_offer() {
        let ids = ids();
        let err = Given::given(offered(&ids))
            .when(SessionCommand::AcceptOffer { offer_id: ids.offer, agent_id: UserId::new(), at: t0() })
            .refused();
        assert!(matches!(err, DomainError::UnknownOffer { .. }));
    }

    #[test]
    fn a_declined_or_expired_offer_puts_the_session_back_in_the_queue() {
        let ids = ids();
        Given::given(offered(&ids))
            .when(SessionCommand::DeclineOffer { offer_id: ids.offer, agent_id: ids.agent, reason: None })
            .then([OfferDeclined { offer_id: ids.offer, agent_id: ids.agent, reason: None }.into()]);
        Given::given(offered(&ids))
            .when(SessionCommand::ExpireOffer { offer_id: ids.offer, at: t0() + Duration::seconds(20) })
            .then([OfferExpired { offer_id: ids.offer, agent_id: ids.agent }.into()]);
        let mut h = offered(&ids);
        h.push(OfferExpired { offer_id: ids.offer, agent_id: ids.agent }.into());
        assert_eq!(Session::fold(&h).status, SessionStatus::Queued);
    }

    #[test]
    fn an_offer_cannot_be_expired_before_its_time() {
        let ids = ids();
        let err = Given::given(offered(&ids))
            .when(SessionCommand::ExpireOffer { offer_id: ids.offer, at: t0() + Duration::seconds(19) })
            .refused();
        assert!(matches!(err, DomainError::Invalid(_)));
    }

    #[test]
    fn a_customer_who_leaves_the_queue_has_abandoned() {
        let ids = ids();
        Given::given(queued(&ids))
            .when(SessionCommand::End { ended_by: EndedBy::Customer, reason: EndReason::Resolved })
            .then([SessionEnded { ended_by: EndedBy::Customer, reason: EndReason::Abandoned }.into()]);
        let mut h = queued(&ids);
        h.push(SessionEnded { ended_by: EndedBy::Customer, reason: EndReason::Abandoned }.into());
        assert_eq!(Session::fold(&h).status, SessionStatus::Closed, "no agent: no wrap-up");
    }

    #[test]
    fn dual_recording_steps_run_in_order_one_at_a_time_during_a_recorded_call() {
        let ids = ids();
        let (call_id, recording_id) = (CallId::new(), RecordingId::new());
        let mut h = assigned(&ids);
        h.push(CallStarted { call_id, kind: CallKind::Video }.into());
        let started = |i: u32| DualRecordingStepStarted {
            script_id: "wealth".into(),
            script_version: 2,
            step_index: i,
            step_kind: DualRecordingStepKind::RiskDisclosure,
            recording_offset_ms: 1_000 * i as u64,
        };
        let completed = |i: u32| DualRecordingStepCompleted {
            script_id: "wealth".into(),
            script_version: 2,
            step_index: i,
            outcome: StepOutcome::Completed,
            recording_offset_ms: 1_500 * (i as u64 + 1),
        };
        let start = |i: u32| SessionCommand::StartStep { step: started(i), steps: 2 };
        // Not before the call is recorded.
        Given::given(h.clone()).when(start(0)).refused();
        h.push(RecordingStarted { recording_id, call_id, reason: RecordingReason::DualRecording }.into());
        Given::given(h.clone()).when(start(1)).refused();
        Given::given(h.clone()).when(start(0)).then([started(0).into()]);
        Given::given(h.clone()).when(SessionCommand::CompleteStep { step: completed(0) }).refused();
        h.push(started(0).into());
        Given::given(h.clone()).when(start(1)).refused();
        Given::given(h.clone()).when(SessionCommand::CompleteStep { step: completed(1) }).refused();
        Given::given(h.clone()).when(SessionCommand::CompleteStep { step: completed(0) }).then([completed(0).into()]);
        h.push(completed(0).into());
        let mut other = started(1);
        other.script_version = 1;
        Given::given(h.clone()).when(SessionCommand::StartStep { step: other, steps: 2 }).refused();
        Given::given(h.clone()).when(start(1)).then([started(1).into()]);
        h.push(started(1).into());
        h.push(completed(1).into());
        Given::given(h.clone()).when(SessionCommand::StartStep { step: started(2), steps: 2 }).refused();
        let dual = Session::fold(&h).dual.unwrap();
        assert_eq!((dual.done.len(), dual.open), (2, None));
    }

    #[test]
    fn one_face_verification_at_a_time_during_a_call() {
        let ids = ids();
        let call_id = CallId::new();
        let digest = Sha256Hex::try_from("ab".repeat(32)).unwrap();
        let request = |verification_id| FaceVerificationRequested {
            verification_id,
            id_photo_sha256: digest.clone(),
            frame_sha256: None,
        };
        let result = |verification_id| FaceVerificationCompleted {
            verification_id,
            score: 0.7,
            threshold: 0.4,
            decision: FaceDecision::Match,
            model_name: "m".into(),
            model_version: "v".into(),
            liveness_passed: true,
            frame_sha256s: vec![digest.clone()],
            compared_frame_sha256: Some(digest.clone()),
            liveness: None,
        };
        let (first, second) = (VerificationId::new(), VerificationId::new());
        let mut h = assigned(&ids);
        // Not without a call: there is no video to compare.
        Given::given(h.clone()).when(SessionCommand::RequestFaceVerification { request: request(first) }).refused();
        h.push(CallStarted { call_id, kind: CallKind::Video }.into());
        Given::given(h.clone())
            .when(SessionCommand::CompleteFaceVerification { result: Box::new(result(first)) })
            .refused();
        Given::given(h.clone())
            .when(SessionCommand::RequestFaceVerification { request: request(first) })
            .then([request(first).into()]);
        h.push(request(first).into());
        Given::given(h.clone()).when(SessionCommand::RequestFaceVerification { request: request(second) }).refused();
        Given::given(h.clone())
            .when(SessionCommand::CompleteFaceVerification { result: Box::new(result(second)) })
            .refused();
        Given::given(h.clone())
            .when(SessionCommand::CompleteFaceVerification { result: Box::new(result(first)) })
            .then([result(first).into()]);
        h.push(result(first).into());
        Given::given(h.clone())
            .when(SessionCommand::CompleteFaceVerification { result: Box::new(result(first)) })
            .refused();
        Given::given(h.clone())
            .when(SessionCommand::RequestFaceVerification { request: request(second) })
            .then([request(second).into()]);
        // A call that ends closes the open verification with it.
        h.push(request(second).into());
        h.push(CallEnded { call_id, reason: None }.into());
        assert_eq!(Session::fold(&h).face_verification, None);
    }

    #[test]
    fn only_the_assigned_agent_speaks_for_the_session() {
        let ids = ids();
        let m = MessageId::new();
        Given::given(assigned(&ids))
            .when(SessionCommand::AgentSays { agent_id: ids.agent, message_id: m, content: text("hello") })
            .then([AgentMessage { message_id: m, agent_id: ids.agent, content: text("hello") }.into()]);
        let stranger = UserId::new();
        Given::given(assigned(&ids))
            .when(SessionCommand::AgentSays { agent_id: stranger, message_id: m, content: text("hi") })
            .then_error(DomainError::NotTheAssignedAgent { agent: stranger.to_string() });
    }

    #[test]
    fn ending_during_a_call_ends_the_call_then_the_session_and_leads_to_wrap_up() {
        let ids = ids();
        let call = CallId::new();
        let mut h = assigned(&ids);
        h.push(CallStarted { call_id: call, kind: CallKind::Video }.into());
        Given::given(h.clone())
            .when(SessionCommand::End { ended_by: EndedBy::Agent, reason: EndReason::Resolved })
            .then([
                CallEnded { call_id: call, reason: Some("session ended".into()) }.into(),
                SessionEnded { ended_by: EndedBy::Agent, reason: EndReason::Resolved }.into(),
            ]);
        h.push(CallEnded { call_id: call, reason: None }.into());
        h.push(SessionEnded { ended_by: EndedBy::Agent, reason: EndReason::Resolved }.into());
        assert_eq!(Session::fold(&h).status, SessionStatus::WrapUp);
        Given::given(h.clone())
            .when(SessionCommand::CompleteWrapUp { agent_id: ids.agent, disposition: "resolved".into(), notes: None })
            .then([WrapUpCompleted { agent_id: ids.agent, disposition: "resolved".into(), notes: None }.into()]);
    }

    #[test]
    fn a_transfer_to_a_group_requeues_with_context_and_priority() {
        let ids = ids();
        let events = Given::given(assigned(&ids))
            .when(SessionCommand::Transfer {
                agent_id: ids.agent,
                to: TransferTarget::Group { group: "loans".into() },
                reason: "mortgage question".into(),
                context_summary: "wants a mortgage".into(),
            })
            .events();
        assert_eq!(events.len(), 2);
        let Event::TransferRequested(t) = &events[0] else { panic!("{events:?}") };
        assert_eq!(t.recent_messages, vec![ids.m1, ids.m2]);
        assert_eq!(t.from, TransferSource::Agent { agent_id: ids.agent });
        assert_eq!(events[1], SessionQueued { group: "loans".into(), priority: 1 }.into());
        let mut h = assigned(&ids);
        h.extend(events);
        let state = Session::fold(&h);
        assert_eq!((state.status, state.agent), (SessionStatus::Queued, None));
    }

    #[test]
    fn a_message_is_left_only_while_waiting_and_is_not_abandonment() {
        let ids = ids();
        let left = || SessionCommand::End { ended_by: EndedBy::Customer, reason: EndReason::LeftMessage };
        Given::given(assigned(&ids)).when(left()).refused();
        let mut queued = assigned(&ids);
        queued.truncate(queued.iter().position(|e| matches!(e, Event::AgentOffered(_))).unwrap());
        assert_eq!(Session::fold(&queued).status, SessionStatus::Queued);
        Given::given(queued.clone()).when(left()).then([SessionEnded {
            ended_by: EndedBy::Customer,
            reason: EndReason::LeftMessage,
        }
        .into()]);
        Given::given(queued)
            .when(SessionCommand::End { ended_by: EndedBy::Customer, reason: EndReason::Resolved })
            .then([SessionEnded { ended_by: EndedBy::Customer, reason: EndReason::Abandoned }.into()]);
    }

    #[test]
    fn a_recording_runs_during_a_call_takes_its_last_segments_after_the_stop_and_ends_with_the_call() {
        let ids = ids();
        let (call_id, recording_id) = (CallId::new(), RecordingId::new());
        let mut h = assigned(&ids);
        Given::given(h.clone())
            .when(SessionCommand::StartRecording { recording_id, reason: RecordingReason::OnDemand })
            .refused();
        h.push(CallStarted { call_id, kind: CallKind::Audio }.into());
        Given::given(h.clone())
            .when(SessionCommand::StartRecording { recording_id, reason: RecordingReason::OnDemand })
            .then([RecordingStarted { recording_id, call_id, reason: RecordingReason::OnDemand }.into()]);
        h.push(RecordingStarted { recording_id, call_id, reason: RecordingReason::OnDemand }.into());
        let segment = RecordingSegmentClosed {
            recording_id,
            track_id: "customer-audio".into(),
            segment_index: 0,
            file: "r/customer-audio/00000.webm".into(),
            bytes: 81_920,
            duration_ms: 10_000,
            sha256: Sha256Hex::try_from("ab".repeat(32)).unwrap(),
        };
        Given::given(h.clone())
            .when(SessionCommand::CloseSegment { segment: segment.clone() })
            .then([segment.clone().into()]);
        let mut other = segment.clone();
        other.recording_id = RecordingId::new();
        Given::given(h.clone()).when(SessionCommand::CloseSegment { segment: other }).refused();
        // A recorder that failed leaves its gap on the record, of this recording only.
        let gap = RecordingInterrupted {
            recording_id,
            track_id: "customer-audio".into(),
            error: "Queued GOP time is negative".into(),
            resumed: true,
        };
        Given::given(h.clone())
            .when(SessionCommand::InterruptRecording { interruption: gap.clone() })
            .then([gap.clone().into()]);
        let elsewhere = RecordingInterrupted { recording_id: RecordingId::new(), ..gap };
        Given::given(h.clone()).when(SessionCommand::InterruptRecording { interruption: elsewhere }).refused();
        h.push(RecordingStopped { recording_id }.into());
        let mut last = segment.clone();
        last.segment_index = 1;
        Given::given(h.clone()).when(SessionCommand::CloseSegment { segment: last.clone() }).then([last.into()]);
        let mut stranger = segment;
        stranger.recording_id = RecordingId::new();
        Given::given(h.clone()).when(SessionCommand::CloseSegment { segment: stranger }).refused();
        // Ending the call stops a running recording with it.
        h.push(
            RecordingStarted { recording_id: RecordingId::new(), call_id, reason: RecordingReason::OnDemand }.into(),
        );
        let running = Session::fold(&h).recording.unwrap();
        Given::given(h)
            .when(SessionCommand::EndCall { call_id, reason: None })
            .then([RecordingStopped { recording_id: running }.into(), CallEnded { call_id, reason: None }.into()]);
    }

    #[test]
    fn the_media_server_records_joins_and_tracks_of_the_live_call_and_leaves_after_it() {
        let ids = ids();
        let call_id = CallId::new();
        let joined = CallFact::ParticipantJoined { participant_id: "customer".into(), role: ParticipantRole::Customer };
        Given::given(assigned(&ids)).when(SessionCommand::CallMedia { fact: joined.clone() }).refused();
        let mut h = assigned(&ids);
        h.push(CallStarted { call_id, kind: CallKind::Video }.into());
        Given::given(h.clone()).when(SessionCommand::CallMedia { fact: joined }).then([ParticipantJoined {
            call_id,
            participant_id: "customer".into(),
            role: ParticipantRole::Customer,
        }
        .into()]);
        let published = CallFact::TrackPublished {
            participant_id: "customer".into(),
            track_id: "customer/cam".into(),
            kind: TrackKind::Video,
            codec: "video/VP8".into(),
        };
        Given::given(h.clone()).when(SessionCommand::CallMedia { fact: published.clone() }).then([TrackPublished {
            call_id,
            participant_id: "customer".into(),
            track_id: "customer/cam".into(),
            kind: TrackKind::Video,
            codec: "video/VP8".into(),
        }
        .into()]);
        h.push(CallEnded { call_id, reason: None }.into());
        Given::given(h.clone()).when(SessionCommand::CallMedia { fact: published }).refused();
        let left = CallFact::ParticipantLeft { participant_id: "customer".into(), reason: Some("call ended".into()) };
        Given::given(h).when(SessionCommand::CallMedia { fact: left }).then([ParticipantLeft {
            call_id,
            participant_id: "customer".into(),
            reason: Some("call ended".into()),
        }
        .into()]);
    }

    #[test]
    fn an_access_to_one_of_the_sessions_recordings_is_recorded_and_to_another_refused() {
        let ids = ids();
        let (call_id, recording_id) = (CallId::new(), RecordingId::new());
        let mut h = assigned(&ids);
        h.push(CallStarted { call_id, kind: CallKind::Audio }.into());
        h.push(RecordingStarted { recording_id, call_id, reason: RecordingReason::OnDemand }.into());
        h.push(CallEnded { call_id, reason: None }.into());
        let access = |recording_id| SessionCommand::AccessRecording {
            recording_id,
            access: RecordingAccessKind::Playback,
            user_id: ids.agent,
            range: Some("bytes=0-99".into()),
        };
        Given::given(h.clone()).when(access(recording_id)).then([RecordingAccessed {
            recording_id,
            access: RecordingAccessKind::Playback,
            user_id: ids.agent,
            range: Some("bytes=0-99".into()),
        }
        .into()]);
        Given::given(h).when(access(RecordingId::new())).refused();
    }

    #[test]
    fn the_customer_rates_once_after_the_end() {
        let ids = ids();
        let mut h = assigned(&ids);
        let rating = Rating::try_from(4).unwrap();
        Given::given(h.clone()).when(SessionCommand::Rate { rating, comment: None }).refused();
        h.push(SessionEnded { ended_by: EndedBy::Customer, reason: EndReason::Resolved }.into());
        Given::given(h.clone()).when(SessionCommand::Rate { rating, comment: None }).then([SatisfactionRated {
            rating,
            comment: None,
        }
        .into()]);
        h.push(SatisfactionRated { rating, comment: None }.into());
        let err = Given::given(h).when(SessionCommand::Rate { rating, comment: None }).refused();
        assert!(matches!(err, DomainError::NotAllowed { command: "Rate", .. }));
    }

    #[test]
    fn timeouts_end_sessions_that_no_one_is_handling() {
        let ids = ids();
        for history in [with_bot(&ids), queued(&ids), offered(&ids)] {
            Given::given(history).when(SessionCommand::TimeOut).then([SessionEnded {
                ended_by: EndedBy::System,
                reason: EndReason::Timeout,
            }
            .into()]);
        }
        Given::given(assigned(&ids)).when(SessionCommand::TimeOut).refused();
    }

    #[test]
    fn nothing_happens_to_a_closed_session() {
        let ids = ids();
        let mut h = with_bot(&ids);
        h.push(SessionEnded { ended_by: EndedBy::Customer, reason: EndReason::BotResolved }.into());
        let err = Given::given(h)
            .when(SessionCommand::CustomerSays { message_id: MessageId::new(), content: text("hello?") })
            .refused();
        assert_eq!(
            err,
            DomainError::NotAllowed { aggregate: "session", command: "CustomerSays", state: "closed".into() }
        );
    }

    #[test]
    fn the_session_remembers_only_the_most_recent_messages() {
        let ids = ids();
        let mut h = vec![started(&ids)];
        h.extend(
            (0..30).map(|i| {
                Event::from(CustomerMessage { message_id: MessageId::new(), content: text(&format!("m{i}")) })
            }),
        );
        let state = Session::fold(&h);
        assert_eq!(state.recent.len(), RECENT_MESSAGES);
        assert_eq!(state.recent.back().unwrap().text, "m29");
        assert_eq!(state.recent.front().unwrap().text, "m10");
    }
}
