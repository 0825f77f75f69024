//! What a session is: its phase, typed so that an impossible state cannot
//! be built (a call's id exists only while the call runs, an agent only
//! once one was assigned), and what it remembers; and how each event
//! changes it ([`SessionState::apply`]).

use std::collections::VecDeque;
use std::fmt;

use chrono::{DateTime, Utc};
use witness_schemas::*;

/// How many recent messages a session keeps for transfers and ticket drafts.
pub const RECENT_MESSAGES: usize = 20;
/// How many of those travel with a transfer as context.
pub const TRANSFER_CONTEXT: usize = 10;

/// The phase's name, for messages, the API and the read models.
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

/// Where the session is, with what exists only there.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum Phase {
    #[default]
    NotStarted,
    WithBot,
    Queued,
    Offered(OpenOffer),
    Assigned {
        agent: UserId,
    },
    InCall {
        agent: UserId,
        call: OnCall,
    },
    WrapUp {
        agent: UserId,
    },
    /// Ended; `agent` is who served it, if anyone did.
    Closed {
        agent: Option<UserId>,
    },
}

/// A running call and what lives only while it runs.
#[derive(Debug, Clone, PartialEq)]
pub struct OnCall {
    pub call_id: CallId,
    /// The recording running, if any.
    pub recording: Option<RecordingId>,
    /// A face verification requested and not yet completed: its frames
    /// come from this call's video.
    pub face_verification: Option<VerificationId>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct SessionState {
    pub phase: Phase,
    pub session_id: Option<SessionId>,
    /// Who the customer is (their visitor token's subject), as started.
    pub customer_ref: String,
    pub channel: Option<Channel>,
    pub business_type: String,
    pub group: Option<String>,
    /// The latest call, kept after it ended: the media server reports
    /// leaves and ended tracks that happen as it closes.
    pub last_call: Option<CallId>,
    /// The latest recording, kept after it stopped: its last segments are
    /// written as the recorder flushes.
    pub last_recording: Option<RecordingId>,
    /// Every recording the session had, in order.
    pub recordings: Vec<RecordingId>,
    pub recent: VecDeque<RecentMessage>,
    pub rated: bool,
    /// The dual-recording script followed, if one was started.
    pub dual: Option<DualProgress>,
    /// Its personal data erased (`PersonalDataErased`).
    pub erased: bool,
}

impl SessionState {
    pub fn status(&self) -> SessionStatus {
        match self.phase {
            Phase::NotStarted => SessionStatus::NotStarted,
            Phase::WithBot => SessionStatus::WithBot,
            Phase::Queued => SessionStatus::Queued,
            Phase::Offered(_) => SessionStatus::Offered,
            Phase::Assigned { .. } => SessionStatus::Assigned,
            Phase::InCall { .. } => SessionStatus::InCall,
            Phase::WrapUp { .. } => SessionStatus::WrapUp,
            Phase::Closed { .. } => SessionStatus::Closed,
        }
    }

    /// The agent who has the session; once it ended, who served it.
    pub fn agent(&self) -> Option<UserId> {
        match self.phase {
            Phase::Assigned { agent } | Phase::InCall { agent, .. } | Phase::WrapUp { agent } => Some(agent),
            Phase::Closed { agent } => agent,
            Phase::NotStarted | Phase::WithBot | Phase::Queued | Phase::Offered(_) => None,
        }
    }

    /// The open offer, while one is.
    pub fn offer(&self) -> Option<&OpenOffer> {
        match &self.phase {
            Phase::Offered(offer) => Some(offer),
            _ => None,
        }
    }

    /// The running call, while one runs.
    pub fn call(&self) -> Option<&OnCall> {
        match &self.phase {
            Phase::InCall { call, .. } => Some(call),
            _ => None,
        }
    }

    fn call_mut(&mut self) -> Option<&mut OnCall> {
        match &mut self.phase {
            Phase::InCall { call, .. } => Some(call),
            _ => None,
        }
    }

    /// The recording running, if any.
    pub fn recording(&self) -> Option<RecordingId> {
        self.call().and_then(|c| c.recording)
    }

    /// The open face verification, if any.
    pub fn face_verification(&self) -> Option<VerificationId> {
        self.call().and_then(|c| c.face_verification)
    }

    /// Whether the conversation has ended (in wrap-up or closed).
    pub fn ended(&self) -> bool {
        matches!(self.phase, Phase::WrapUp { .. } | Phase::Closed { .. })
    }

    /// What `event` means for the session.
    pub fn apply(mut self, event: &Event) -> Self {
        let remember = |state: &mut Self, id: MessageId, from: Speaker, content: &MessageContent| {
            state.recent.push_back(RecentMessage { id, from, text: summary_text(content) });
            if state.recent.len() > RECENT_MESSAGES {
                state.recent.pop_front();
            }
        };
        match event {
            Event::SessionStarted(e) => {
                self.phase = Phase::WithBot;
                self.session_id = Some(e.session_id);
                self.customer_ref = e.customer_ref.clone();
                self.channel = Some(e.channel);
                self.business_type = e.business_type.clone();
            }
            Event::CustomerMessage(e) => remember(&mut self, e.message_id, Speaker::Customer, &e.content),
            Event::BotMessage(e) => remember(&mut self, e.message_id, Speaker::Bot, &e.content),
            Event::AgentMessage(e) => remember(&mut self, e.message_id, Speaker::Agent, &e.content),
            // The session is queued next, in the same append; a call still
            // running (the decider ends it first) cannot go with it.
            Event::TransferRequested(_) => {
                if let Phase::InCall { agent, .. } = self.phase {
                    self.phase = Phase::Assigned { agent };
                }
            }
            Event::SessionQueued(e) => {
                self.phase = Phase::Queued;
                self.group = Some(e.group.clone());
            }
            Event::AgentOffered(e) => {
                self.phase =
                    Phase::Offered(OpenOffer { offer_id: e.offer_id, agent_id: e.agent_id, expires_at: e.expires_at });
            }
            Event::OfferDeclined(_) | Event::OfferExpired(_) => self.phase = Phase::Queued,
            // `AgentAssigned` follows in the same append.
            Event::OfferAccepted(_) => {}
            Event::AgentAssigned(e) => self.phase = Phase::Assigned { agent: e.agent_id },
            Event::CallStarted(e) => {
                if let Phase::Assigned { agent } = self.phase {
                    let call = OnCall { call_id: e.call_id, recording: None, face_verification: None };
                    self.phase = Phase::InCall { agent, call };
                }
                self.last_call = Some(e.call_id);
            }
            Event::DualRecordingStepStarted(e) => {
                let dual = self.dual.get_or_insert_with(|| DualProgress {
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
                if let Some(dual) = self.dual.as_mut() {
                    dual.step_reviews.insert(e.step_index, e.passed);
                }
            }
            Event::DualRecordingReviewed(e) => {
                if let Some(dual) = self.dual.as_mut() {
                    dual.verdict = Some(e.passed);
                }
            }
            Event::FaceVerificationRequested(e) => {
                if let Some(call) = self.call_mut() {
                    call.face_verification = Some(e.verification_id);
                }
            }
            Event::FaceVerificationCompleted(_) => {
                if let Some(call) = self.call_mut() {
                    call.face_verification = None;
                }
            }
            Event::PersonalDataErased(_) => self.erased = true,
            Event::DualRecordingStepCompleted(e) => {
                if let Some(dual) = self.dual.as_mut() {
                    dual.open = None;
                    dual.done.push((e.step_index, e.outcome));
                }
            }
            Event::RecordingStarted(e) => {
                if let Some(call) = self.call_mut() {
                    call.recording = Some(e.recording_id);
                }
                self.last_recording = Some(e.recording_id);
                self.recordings.push(e.recording_id);
            }
            Event::RecordingStopped(_) => {
                if let Some(call) = self.call_mut() {
                    call.recording = None;
                }
            }
            // With the call go its recording and face verification (its
            // frames can no longer be taken).
            Event::CallEnded(_) => {
                if let Phase::InCall { agent, .. } = self.phase {
                    self.phase = Phase::Assigned { agent };
                }
            }
            Event::SessionEnded(_) => {
                self.phase = match self.agent() {
                    Some(agent) => Phase::WrapUp { agent },
                    None => Phase::Closed { agent: None },
                };
            }
            Event::WrapUpCompleted(_) => self.phase = Phase::Closed { agent: self.agent() },
            Event::SatisfactionRated(_) => self.rated = true,
            _ => {}
        }
        self
    }
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

fn summary_text(content: &MessageContent) -> String {
    match content {
        MessageContent::Text { text } => text.clone(),
        MessageContent::Image { attachment, .. } => format!("[image {}]", attachment.file_name),
        MessageContent::File { attachment } => format!("[file {}]", attachment.file_name),
        MessageContent::RichText { markdown, .. } => markdown.clone(),
    }
}
