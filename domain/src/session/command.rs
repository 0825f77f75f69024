//! What can be asked of a session, and what the media server reports.

use chrono::{DateTime, Utc};
use witness_schemas::*;

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
    /// `command`, only if `agent_id` is the session's agent when it is
    /// decided: for what only the session's agent may do (start a dual
    /// recording's step, verify the customer's face, record, end). The rule
    /// is the decider's, so it holds when the session is transferred
    /// between the caller's check and the append.
    ByAgent {
        agent_id: UserId,
        command: Box<SessionCommand>,
    },
}

impl SessionCommand {
    /// This command, allowed only to `agent_id` as the session's agent.
    pub fn by_agent(self, agent_id: UserId) -> Self {
        Self::ByAgent { agent_id, command: Box::new(self) }
    }

    pub(super) fn name(&self) -> &'static str {
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
            Self::ByAgent { command, .. } => command.name(),
        }
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
    pub(super) fn after_end(&self) -> bool {
        matches!(self, Self::ParticipantLeft { .. } | Self::TrackUnpublished { .. })
    }

    pub(super) fn event(self, call_id: CallId) -> Event {
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
