//! The typed payloads of every event in a session's life, and the registry
//! that maps `(event_type, schema_version)` to them.
//!
//! Payload structs reject unknown fields: an append that misspells a field is
//! refused instead of silently dropping data. Old versions of a payload are
//! never rewritten in the store; [`crate::upcast`] lifts them on read.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::ids::*;
use crate::personal::Role;
use crate::SchemaError;

// ---------------------------------------------------------------- value types

/// Where a session came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    Web,
    H5,
    App,
    MiniProgram,
    Wechat,
    Api,
}

impl Channel {
    pub const ALL: [Channel; 6] = [Self::Web, Self::H5, Self::App, Self::MiniProgram, Self::Wechat, Self::Api];
}

/// A lowercase hex SHA-256 digest: how attachments, recordings and images are
/// referenced (content-addressed storage).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(try_from = "String", into = "String")]
pub struct Sha256Hex(String);

impl Sha256Hex {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Sha256Hex {
    type Error = SchemaError;
    fn try_from(s: String) -> Result<Self, SchemaError> {
        if s.len() == 64 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            Ok(Self(s))
        } else {
            Err(SchemaError::InvalidId { kind: "sha256", value: s, expected: "64 lowercase hex digits" })
        }
    }
}

impl From<Sha256Hex> for String {
    fn from(h: Sha256Hex) -> Self {
        h.0
    }
}

/// A file carried by a message, stored by its hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Attachment {
    pub sha256: Sha256Hex,
    pub file_name: String,
    pub media_type: String,
    pub bytes: u64,
}

/// What a chat message says.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum MessageContent {
    Text {
        text: String,
    },
    Image {
        attachment: Attachment,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        caption: Option<String>,
    },
    File {
        attachment: Attachment,
    },
    /// Markdown with optional inline attachments.
    RichText {
        markdown: String,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        attachments: Vec<Attachment>,
    },
}

impl MessageContent {
    /// The files the message carries.
    pub fn attachments(&self) -> Vec<&Attachment> {
        match self {
            MessageContent::Image { attachment, .. } | MessageContent::File { attachment } => vec![attachment],
            MessageContent::RichText { attachments, .. } => attachments.iter().collect(),
            MessageContent::Text { .. } => vec![],
        }
    }

    /// The files the message carries, to complete.
    pub fn attachments_mut(&mut self) -> Vec<&mut Attachment> {
        match self {
            MessageContent::Image { attachment, .. } | MessageContent::File { attachment } => vec![attachment],
            MessageContent::RichText { attachments, .. } => attachments.iter_mut().collect(),
            MessageContent::Text { .. } => vec![],
        }
    }
}

/// Who hands a session over.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TransferSource {
    Bot,
    Agent { agent_id: UserId },
}

/// Where a session is handed to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TransferTarget {
    /// Any human agent of the default group.
    Human,
    Group {
        group: String,
    },
    Agent {
        agent_id: UserId,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CallKind {
    Audio,
    Video,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ParticipantRole {
    Customer,
    Agent,
    Supervisor,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TrackKind {
    Audio,
    Video,
    Screen,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum MediaDevice {
    Mic,
    Camera,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FaceDecision {
    Match,
    NoMatch,
    Inconclusive,
}

/// What a liveness check saw across the frames of the live video.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LivenessCheck {
    /// What the customer was asked to do, e.g. `head_turn`.
    pub prompt: String,
    pub frames: u32,
    /// Frames with exactly one face.
    pub frames_with_face: u32,
    /// One person throughout.
    pub same_person: bool,
    /// The head's turn, least and most (−0.5 … 0.5; 0 faces the camera).
    pub yaw_min: f64,
    pub yaw_max: f64,
    /// Why it failed; empty when it passed.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
}

/// What a retention policy applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DataClass {
    /// Recording segments and composites (files under the recordings directory).
    Recordings,
    /// Images and files sent in sessions (the upload store).
    Attachments,
    /// What was written in sessions. The text is in the hash-chained log and
    /// cannot be deleted from it; a policy can be set, nothing sweeps it yet.
    Messages,
}

impl DataClass {
    pub const ALL: [DataClass; 3] = [DataClass::Recordings, DataClass::Attachments, DataClass::Messages];
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RecordingReason {
    TenantPolicy,
    OnDemand,
    DualRecording,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DualRecordingStepKind {
    IdentityCheck,
    RiskDisclosure,
    CustomerConfirmation,
    DocumentShown,
}

/// What a dual-recording step must leave on the record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Evidence {
    /// The agent reads the step's text aloud (on the recording).
    AgentReadsAloud,
    /// The customer says they agree (on the recording).
    CustomerSpeaks,
    /// The customer presses "I confirm" on their page (the step is completed by the customer).
    CustomerClicks,
    /// A document is held to the camera.
    DocumentShown,
}

/// One step of a dual-recording script.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ScriptStep {
    pub kind: DualRecordingStepKind,
    /// What is read aloud or shown; the customer's page shows it during the step.
    pub text: String,
    pub evidence: Vec<Evidence>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum StepOutcome {
    Completed,
    Skipped,
    Failed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum EndedBy {
    Customer,
    Agent,
    Bot,
    System,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    Resolved,
    /// The customer left while waiting in the queue.
    Abandoned,
    Timeout,
    /// The bot answered and the customer left content (bot containment).
    BotResolved,
    Error,
    /// The customer left a message (a ticket) instead of waiting on.
    LeftMessage,
}

/// A satisfaction score from 1 (very unhappy) to 5 (very happy).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(try_from = "u8", into = "u8")]
pub struct Rating(u8);

impl Rating {
    pub fn get(self) -> u8 {
        self.0
    }
}

impl TryFrom<u8> for Rating {
    type Error = SchemaError;
    fn try_from(v: u8) -> Result<Self, SchemaError> {
        if (1..=5).contains(&v) {
            Ok(Self(v))
        } else {
            Err(SchemaError::InvalidId { kind: "rating", value: v.to_string(), expected: "an integer from 1 to 5" })
        }
    }
}

impl From<Rating> for u8 {
    fn from(r: Rating) -> u8 {
        r.0
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TicketPriority {
    Low,
    Normal,
    High,
    Urgent,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct QaCriterionScore {
    pub criterion: String,
    pub weight: f64,
    pub score: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TicketStatus {
    Open,
    InProgress,
    Resolved,
    Closed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RecordingAccessKind {
    Playback,
    Download,
}

/// What a transfer to a skill group with nobody online does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum NobodyOnline {
    /// The customer waits in the group's queue, and is told so.
    #[default]
    Queue,
    /// The transfer is refused; the customer stays with their agent.
    Refuse,
}

/// One of a tenant's skill groups: where sessions queue and transfers go.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SkillGroup {
    /// What agents list in their skills and sessions name (`cards`).
    pub name: String,
    /// What people read (`信用卡 Credit cards`).
    pub label: String,
    #[serde(default)]
    pub when_nobody_online: NobodyOnline,
    /// When it serves; absent: always.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hours: Option<BusinessHours>,
    /// After this long waiting a customer is offered to leave a message
    /// (they always are while nobody is online or out of hours).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_after_secs: Option<u32>,
}

/// When a skill group serves, on its own clock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct BusinessHours {
    /// The group's clock, minutes east of UTC (China: 480).
    pub utc_offset_minutes: i32,
    /// ISO weekdays it is open, 1 = Monday … 7 = Sunday.
    pub days: Vec<u8>,
    /// Local `HH:MM` it opens and closes (close after open).
    pub open: String,
    pub close: String,
    /// What a customer reads out of hours.
    pub closed_message: String,
}

impl BusinessHours {
    /// `HH:MM` as minutes after midnight.
    pub fn minutes(text: &str) -> Option<u32> {
        let (h, m) = text.split_once(':')?;
        let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
        (h < 24 && m < 60 && text.len() == 5).then_some(h * 60 + m)
    }

    /// Whether the group is open at `now`.
    pub fn is_open(&self, now: chrono::DateTime<chrono::Utc>) -> bool {
        use chrono::{Datelike, Timelike};
        let local = now + chrono::Duration::minutes(i64::from(self.utc_offset_minutes));
        let day = local.weekday().number_from_monday() as u8;
        let minute = local.hour() * 60 + local.minute();
        let (Some(open), Some(close)) = (Self::minutes(&self.open), Self::minutes(&self.close)) else { return false };
        self.days.contains(&day) && (open..close).contains(&minute)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Presence {
    Online,
    Away,
    Offline,
}

// ------------------------------------------------------------------ payloads

macro_rules! payload {
    ($(#[$doc:meta])* $name:ident { $($(#[$fdoc:meta])* $field:ident : $ty:ty),* $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
        #[serde(deny_unknown_fields)]
        pub struct $name { $($(#[$fdoc])* pub $field: $ty,)* }
    };
}

payload!(
    /// A customer opened a session on some channel (v2: `source` became
    /// `channel`, `business_type` added).
    SessionStarted {
        session_id: SessionId,
        channel: Channel,
        /// The tenant's business line, e.g. `credit_card`, `wealth`, `general`.
        business_type: String,
        /// An opaque reference to the customer (visitor id); never a name.
        customer_ref: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        locale: Option<String>,
    }
);
payload!(CustomerMessage { message_id: MessageId, content: MessageContent });
payload!(
    /// A knowledge-base answer. `score` is the retrieval score of the FAQ it came
    /// from; `None` for canned replies.
    BotMessage {
        message_id: MessageId,
        content: MessageContent,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        faq_id: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        score: Option<f64>,
    }
);
payload!(AgentMessage { message_id: MessageId, agent_id: UserId, content: MessageContent });
payload!(
    /// A hand-over, bot→human or human→group/agent, with the context the next
    /// handler needs.
    TransferRequested {
        from: TransferSource,
        to: TransferTarget,
        reason: String,
        context_summary: String,
        /// The messages the next handler sees first.
        #[serde(default)]
        recent_messages: Vec<MessageId>,
    }
);
payload!(SessionQueued { group: String, priority: i32 });
payload!(AgentOffered { offer_id: OfferId, agent_id: UserId, expires_at: DateTime<Utc> });
payload!(OfferAccepted { offer_id: OfferId, agent_id: UserId });
payload!(OfferDeclined {
    offer_id: OfferId,
    agent_id: UserId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
});
payload!(OfferExpired { offer_id: OfferId, agent_id: UserId });
payload!(AgentAssigned { agent_id: UserId, group: String });
payload!(CallStarted { call_id: CallId, kind: CallKind });
payload!(ParticipantJoined { call_id: CallId, participant_id: String, role: ParticipantRole });
payload!(ParticipantLeft {
    call_id: CallId,
    participant_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
});
payload!(CallEnded {
    call_id: CallId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
});
payload!(TrackPublished { call_id: CallId, participant_id: String, track_id: String, kind: TrackKind, codec: String });
payload!(TrackUnpublished { call_id: CallId, participant_id: String, track_id: String });
payload!(
    /// A participant's microphone or camera went on or off; `blocked`: off
    /// because the browser was refused it (permission denied, no device,
    /// in use elsewhere), not by choice.
    MediaStateChanged {
        call_id: CallId,
        participant_id: String,
        device: MediaDevice,
        enabled: bool,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        blocked: bool,
    }
);
payload!(FaceVerificationRequested {
    verification_id: VerificationId,
    id_photo_sha256: Sha256Hex,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    frame_sha256: Option<Sha256Hex>,
});
payload!(
    /// The live face compared with the ID photo. `score` is a similarity in
    /// [0, 1] (1 − the descriptors' distance) and `decision` is `match` when
    /// it reaches `threshold` and the liveness check passed, `no_match` when
    /// it does not reach it, `inconclusive` when a face was missing or the
    /// same face was not shown to be live.
    ///
    /// v2 added the frames (stored by hash), the one compared, and what the
    /// liveness check saw; a v1 payload reads with none of them.
    FaceVerificationCompleted {
        verification_id: VerificationId,
        score: f64,
        threshold: f64,
        decision: FaceDecision,
        model_name: String,
        model_version: String,
        liveness_passed: bool,
        /// Every frame taken from the customer's video, in order.
        frame_sha256s: Vec<Sha256Hex>,
        /// The frame compared with the ID photo (the most frontal face).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        compared_frame_sha256: Option<Sha256Hex>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        liveness: Option<LivenessCheck>,
    }
);
payload!(RecordingStarted { recording_id: RecordingId, call_id: CallId, reason: RecordingReason });
payload!(
    /// One closed per-track segment file and its SHA-256.
    RecordingSegmentClosed {
        recording_id: RecordingId,
        track_id: String,
        segment_index: u32,
        /// Path relative to the recordings directory.
        file: String,
        bytes: u64,
        duration_ms: u64,
        sha256: Sha256Hex,
    }
);
payload!(
    /// A track's recorder failed mid-call (or could not start): the track
    /// has a gap from here. `resumed`: it was restarted and goes on in a
    /// new segment; else the rest of the track is not recorded.
    RecordingInterrupted { recording_id: RecordingId, track_id: String, error: String, resumed: bool }
);
payload!(RecordingStopped { recording_id: RecordingId });
payload!(
    /// The dual recording rendered from the per-track segments: agent and
    /// customer side by side, their audio mixed, one WebM file.
    RecordingComposited {
        recording_id: RecordingId,
        /// Path relative to the recordings directory.
        file: String,
        bytes: u64,
        duration_ms: u64,
        sha256: Sha256Hex,
    }
);
payload!(
    /// A dual-recording (双录) step began; `recording_offset_ms` is the time
    /// since the recording started, for jumping to the step on playback.
    DualRecordingStepStarted {
        script_id: String,
        script_version: u32,
        step_index: u32,
        step_kind: DualRecordingStepKind,
        recording_offset_ms: u64,
    }
);
payload!(DualRecordingStepCompleted {
    script_id: String,
    script_version: u32,
    step_index: u32,
    outcome: StepOutcome,
    recording_offset_ms: u64,
});
payload!(SessionEnded { ended_by: EndedBy, reason: EndReason });
payload!(
    /// The agent finished the after-call work and is free for the next session.
    WrapUpCompleted {
        agent_id: UserId,
        /// The tenant's outcome code, e.g. `resolved`, `follow_up`, `complaint`.
        disposition: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        notes: Option<String>,
    }
);
payload!(SatisfactionRated {
    rating: Rating,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    comment: Option<String>,
});
payload!(TicketCreated {
    ticket_id: TicketId,
    session_id: SessionId,
    title: String,
    description: String,
    priority: TicketPriority,
});
payload!(TicketStatusChanged {
    ticket_id: TicketId,
    status: TicketStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    note: Option<String>,
});
payload!(QaEvaluated {
    evaluation_id: EvaluationId,
    session_id: SessionId,
    evaluator_id: UserId,
    total_score: f64,
    max_score: f64,
    criteria: Vec<QaCriterionScore>,
});
payload!(RecordingAccessed {
    recording_id: RecordingId,
    access: RecordingAccessKind,
    user_id: UserId,
    /// The HTTP byte range served, if partial (`bytes=0-1023`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    range: Option<String>,
});
payload!(
    /// A tenant (an organisation using Witness) was set up. Its stream,
    /// `tenant-<slug>`, also holds its user directory.
    TenantCreated {
        /// The name shown to people, e.g. `Acme Bank`.
        name: String,
    }
);
payload!(
    /// A user account was created in the tenant. Credentials are not events:
    /// the password hash lives in the store's `credentials` table, so that it
    /// never reaches the log, Kafka or an audit export.
    UserCreated {
        user_id: UserId,
        /// Unique within the tenant.
        login: String,
        role: Role,
        display_name: String,
    }
);
payload!(
    /// Every token of a user issued up to `before` is refused from now on,
    /// and the sockets opened with them are closed: the user signed out
    /// (`reason` "signed out") or an admin revoked them.
    UserTokensRevoked {
        user_id: UserId,
        before: DateTime<Utc>,
        reason: String,
    }
);
/// One question and answer of a tenant's knowledge base.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FaqEntry {
    /// Stable within the tenant: importing an entry with a known id replaces it.
    pub id: String,
    pub question: String,
    pub answer: String,
}

payload!(
    /// FAQ entries imported into the tenant's knowledge base (on the tenant
    /// stream), replacing entries with the same ids. The bot's answers cite
    /// an entry id, so the audit trail shows which version it answered from.
    FaqImported {
        entries: Vec<FaqEntry>,
    }
);
payload!(
    /// Whether the tenant's calls are recorded from their start (on the
    /// tenant stream). Without one, the server's default applies.
    RecordingPolicySet {
        record_calls: bool,
    }
);
payload!(
    /// Part of the tenant's event log was exported for audit (`witness
    /// export audit`, `GET /api/audit/export`), in the tenant's access log
    /// (`access-<tenant>.<day>`): the envelope's actor is who exported it. `unmasked`: personal fields were
    /// left in, as the exporter's role allows.
    AuditExported {
        /// parquet, jsonl or csv.
        format: String,
        /// The bounds of `occurred_at` exported, if any (from inclusive, to exclusive).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        from: Option<DateTime<Utc>>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        to: Option<DateTime<Utc>>,
        /// How many events the file holds.
        events: u64,
        unmasked: bool,
        /// SHA-256 of the exported file, hex.
        sha256: String,
    }
);
payload!(
    /// Someone read personal data unmasked that is not theirs to handle — a
    /// compliance officer or admin opening a session, a page of the audit
    /// trail or of the event log, or the live feed (in the tenant's access
    /// log, `access-<tenant>.<day>`; the envelope's actor is who). A session's own customer and agent are
    /// not recorded: the conversation is theirs.
    PersonalDataViewed {
        /// session, audit_trail, event_log or live_feed.
        view: String,
        /// The session read, if one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        session_id: Option<SessionId>,
        /// How many events (or rows) the view showed.
        items: u64,
    }
);
payload!(
    /// How long the tenant keeps a class of data after a session ends (on
    /// the tenant stream); `days: None` keeps it forever (the default).
    RetentionSet {
        class: DataClass,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        days: Option<u32>,
    }
);
payload!(
    /// Nothing of the session (or, without one, of the whole tenant) may be
    /// deleted until the hold is released (on the tenant stream).
    LegalHoldPlaced {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        session_id: Option<SessionId>,
        reason: String,
    }
);
payload!(LegalHoldReleased {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    session_id: Option<SessionId>,
    reason: String,
});
payload!(
    /// A file of the session was deleted under the tenant's retention policy
    /// (on the session stream). The events that named the file stay, and so
    /// does the hash chain: `verify --recordings` counts the file as deleted,
    /// not missing.
    MediaDeleted {
        class: DataClass,
        /// A recording's path under the recordings directory, or an
        /// attachment's SHA-256.
        file: String,
        sha256: Sha256Hex,
        /// `retention: N days`.
        reason: String,
    }
);
payload!(
    /// The session's key was erased under the tenant's retention policy:
    /// the personal fields of its events (messages' text, captions, file
    /// names, the customer's reference, comments) read `[erased]` from now
    /// on. Nothing in the log changed; see `engine/src/shred.rs`.
    PersonalDataErased {
        class: DataClass,
        /// `retention: N days`.
        reason: String,
    }
);
/// One criterion of a tenant's QA evaluation form.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct QaCriterion {
    /// Unique within the form, e.g. `greeting`, `accuracy`.
    pub name: String,
    /// How much the criterion counts in the total.
    pub weight: f64,
    /// The most an evaluator may give it.
    pub max_score: f64,
}

payload!(
    /// The tenant's QA evaluation form (on the tenant stream); each new one
    /// replaces the last, and evaluations carry the weights they used.
    QaFormSet {
        criteria: Vec<QaCriterion>,
    }
);
payload!(
    /// The tenant's automatic QA rules (on the tenant stream), checked over
    /// each session's events: the first agent message within
    /// `greeting_within_secs` of assignment, agents' messages free of
    /// `forbidden_words`, every customer message answered within
    /// `response_sla_secs`, every dual-recording step started also completed,
    /// no silence longer than `silence_secs` in the conversation's transcript
    /// (v2; a v1 payload reads with none).
    QaRulesSet {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        greeting_within_secs: Option<u32>,
        #[serde(default)]
        forbidden_words: Vec<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        response_sla_secs: Option<u32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        silence_secs: Option<u32>,
    }
);
payload!(
    /// The outcomes an agent chooses from at wrap-up (on the tenant
    /// stream), replacing any before.
    DispositionsSet { dispositions: Vec<String> }
);
payload!(
    /// The tenant's time zone (on the tenant stream): every time the pages
    /// and the composites show is in it, labelled (`UTC+08:00`). Until a
    /// tenant sets one, Beijing time.
    TimeZoneSet { utc_offset_minutes: i32 }
);
payload!(
    /// The tenant's default language (on the tenant stream): what its pages,
    /// bot and notices speak unless a person chooses otherwise (`zh-CN` or
    /// `en`). Until a tenant sets one, Simplified Chinese.
    TenantLocaleSet { locale: String }
);
payload!(
    /// The web sites allowed to embed the tenant's customer page (on the
    /// tenant stream), replacing any before: origins like
    /// `https://www.bank.example`. The customer page may be framed by them
    /// (`frame-ancestors`) and the API answers their browsers (CORS); an
    /// empty list allows no other site.
    EmbedOriginsSet { origins: Vec<String> }
);
payload!(
    /// What the tenant's calls offer (on the tenant stream): the beauty
    /// filter (美颜: the camera smoothed and brightened in the customer's
    /// browser before it is sent), off until set.
    CallOptionsSet { beauty_filter: bool }
);
payload!(
    /// The tenant's skill groups (on the tenant stream), replacing any
    /// before: the only groups sessions are transferred or moved to.
    SkillGroupsSet { groups: Vec<SkillGroup> }
);
payload!(
    /// A version of one of the tenant's dual-recording (双录) scripts (on
    /// the tenant stream): ordered steps, each with the evidence it needs.
    /// Versions count up from 1 per `script_id`; sessions name the version
    /// they followed.
    DualRecordingScriptSet {
        script_id: String,
        version: u32,
        title: String,
        steps: Vec<ScriptStep>,
    }
);
payload!(
    /// A reviewer passed or failed one completed step of the session's dual
    /// recording (on the session stream; the envelope's actor is who).
    DualRecordingStepReviewed {
        script_id: String,
        script_version: u32,
        step_index: u32,
        passed: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        comment: Option<String>,
    }
);
payload!(
    /// The reviewer's overall verdict on the session's dual recording, once
    /// every completed step was reviewed; final.
    DualRecordingReviewed {
        passed: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        comment: Option<String>,
    }
);
payload!(AgentPresenceChanged {
    agent_id: UserId,
    presence: Presence,
    capacity: u32,
    #[serde(default)]
    skill_groups: Vec<String>,
});

// ------------------------------------------------------------------ registry

macro_rules! registry {
    ($($variant:ident => $version:literal),* $(,)?) => {
        /// Every event Witness knows, at its current schema version.
        #[derive(Debug, Clone, PartialEq)]
        pub enum Event {
            $($variant($variant),)*
        }

        $(impl From<$variant> for Event {
            fn from(p: $variant) -> Self {
                Event::$variant(p)
            }
        })*

        /// `(event_type, current schema_version)` of every event type.
        pub const EVENT_TYPES: &[(&str, u32)] = &[$((stringify!($variant), $version),)*];

        impl Event {
            pub fn event_type(&self) -> &'static str {
                match self {
                    $(Event::$variant(_) => stringify!($variant),)*
                }
            }

            /// The current schema version of this event's type.
            pub fn schema_version(&self) -> u32 {
                match self {
                    $(Event::$variant(_) => $version,)*
                }
            }

            /// The payload as a JSON value (keys sorted).
            pub fn payload(&self) -> serde_json::Value {
                let value = match self {
                    $(Event::$variant(p) => serde_json::to_value(p),)*
                };
                value.expect("payload types serialize infallibly")
            }

            /// Decodes a payload that is already at the current version.
            pub(crate) fn from_current_str(event_type: &str, json: &str) -> Result<Event, SchemaError> {
                let malformed = |e: serde_json::Error| SchemaError::MalformedPayload {
                    event_type: event_type.to_owned(),
                    message: e.to_string(),
                };
                match event_type {
                    $(stringify!($variant) => serde_json::from_str::<$variant>(json).map(Event::$variant).map_err(malformed),)*
                    other => Err(SchemaError::UnknownEventType(other.to_owned())),
                }
            }

            /// The payload as compact JSON text, fields in declaration order:
            /// the canonical text the store writes and hashes.
            pub fn payload_json(&self) -> String {
                let text = match self {
                    $(Event::$variant(p) => serde_json::to_string(p),)*
                };
                text.expect("payload types serialize infallibly")
            }

            /// Decodes a current-version payload without taking it apart.
            pub(crate) fn from_current_ref(event_type: &str, value: &serde_json::Value) -> Result<Event, SchemaError> {
                let malformed = |e: serde_json::Error| SchemaError::MalformedPayload {
                    event_type: event_type.to_owned(),
                    message: e.to_string(),
                };
                match event_type {
                    $(stringify!($variant) => <$variant as serde::Deserialize>::deserialize(value).map(Event::$variant).map_err(malformed),)*
                    other => Err(SchemaError::UnknownEventType(other.to_owned())),
                }
            }

            pub(crate) fn from_current_value(event_type: &str, value: serde_json::Value) -> Result<Event, SchemaError> {
                let malformed = |e: serde_json::Error| SchemaError::MalformedPayload {
                    event_type: event_type.to_owned(),
                    message: e.to_string(),
                };
                match event_type {
                    $(stringify!($variant) => serde_json::from_value::<$variant>(value).map(Event::$variant).map_err(malformed),)*
                    other => Err(SchemaError::UnknownEventType(other.to_owned())),
                }
            }
        }

        /// The JSON Schema of every event type's current payload.
        pub fn json_schemas() -> Vec<(&'static str, u32, schemars::schema::RootSchema)> {
            vec![$((stringify!($variant), $version, schemars::schema_for!($variant)),)*]
        }
    };
}

registry! {
    SessionStarted => 2,
    CustomerMessage => 1,
    BotMessage => 1,
    AgentMessage => 1,
    TransferRequested => 1,
    SessionQueued => 1,
    AgentOffered => 1,
    OfferAccepted => 1,
    OfferDeclined => 1,
    OfferExpired => 1,
    AgentAssigned => 1,
    CallStarted => 1,
    CallEnded => 1,
    ParticipantJoined => 1,
    ParticipantLeft => 1,
    TrackPublished => 1,
    TrackUnpublished => 1,
    MediaStateChanged => 1,
    FaceVerificationRequested => 1,
    FaceVerificationCompleted => 2,
    RecordingStarted => 1,
    RecordingSegmentClosed => 1,
    RecordingInterrupted => 1,
    RecordingStopped => 1,
    RecordingComposited => 1,
    DualRecordingStepStarted => 1,
    DualRecordingStepCompleted => 1,
    SessionEnded => 1,
    WrapUpCompleted => 1,
    SatisfactionRated => 1,
    TicketCreated => 1,
    TicketStatusChanged => 1,
    QaEvaluated => 1,
    RecordingAccessed => 1,
    AgentPresenceChanged => 1,
    TenantCreated => 1,
    UserCreated => 1,
    UserTokensRevoked => 1,
    FaqImported => 1,
    RecordingPolicySet => 1,
    AuditExported => 1,
    PersonalDataViewed => 1,
    RetentionSet => 1,
    LegalHoldPlaced => 1,
    LegalHoldReleased => 1,
    MediaDeleted => 1,
    PersonalDataErased => 1,
    QaFormSet => 1,
    QaRulesSet => 2,
    SkillGroupsSet => 1,
    DispositionsSet => 1,
    TimeZoneSet => 1,
    TenantLocaleSet => 1,
    EmbedOriginsSet => 1,
    CallOptionsSet => 1,
    DualRecordingScriptSet => 1,
    DualRecordingStepReviewed => 1,
    DualRecordingReviewed => 1,
}

/// The current schema version of `event_type`, if Witness knows it.
pub fn current_version(event_type: &str) -> Option<u32> {
    EVENT_TYPES.iter().find(|(t, _)| *t == event_type).map(|(_, v)| *v)
}
