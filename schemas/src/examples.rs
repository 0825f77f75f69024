//! One realistic example of every event type, for this crate's tests (the
//! schema registry, upcasting, which fields are personal). Ids are fresh on each call; the customer reference is
//! an opaque visitor id, never personal data.

use chrono::Duration;

use crate::*;

fn text(t: &str) -> MessageContent {
    MessageContent::Text { text: t.to_owned() }
}

fn attachment(name: &str, media_type: &str) -> Attachment {
    Attachment {
        sha256: Sha256Hex::try_from("9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08".to_owned())
            .expect("valid digest"),
        file_name: name.to_owned(),
        media_type: media_type.to_owned(),
        bytes: 48_213,
    }
}

/// One event of every type in [`EVENT_TYPES`], in the order a session might
/// produce them.
pub fn one_of_each() -> Vec<Event> {
    let session_id = SessionId::new();
    let agent_id = UserId::new();
    let offer_id = OfferId::new();
    let call_id = CallId::new();
    let recording_id = RecordingId::new();
    let verification_id = VerificationId::new();
    let first_message = MessageId::new();
    let ticket_id = TicketId::new();
    let digest = attachment("id.jpg", "image/jpeg").sha256;
    vec![
        TenantCreated { name: "Acme Bank".into() }.into(),
        UserCreated { user_id: agent_id, login: "li.na".into(), role: Role::Agent, display_name: "Li Na".into() }
            .into(),
        UserTokensRevoked { user_id: agent_id, before: now(), reason: "signed out".into() }.into(),
        FaqImported {
            entries: vec![FaqEntry {
                id: "credit-limit".into(),
                question: "信用额度怎么提高？How do I raise my credit limit?".into(),
                answer: "Ask in the app under Cards › Limit; we answer within two working days.".into(),
            }],
        }
        .into(),
        RecordingPolicySet { record_calls: true }.into(),
        PersonalDataViewed { view: "session".into(), session_id: Some(session_id), items: 12 }.into(),
        RetentionSet { class: DataClass::Recordings, days: Some(365) }.into(),
        DualRecordingStepReviewed {
            script_id: "wealth-product".into(),
            script_version: 1,
            step_index: 0,
            passed: false,
            comment: Some("the disclosure was read too fast".into()),
        }
        .into(),
        DualRecordingReviewed { passed: false, comment: Some("step 1 must be recorded again".into()) }.into(),
        DualRecordingScriptSet {
            script_id: "wealth-product".into(),
            version: 1,
            title: "Wealth product sale".into(),
            steps: vec![ScriptStep {
                kind: DualRecordingStepKind::RiskDisclosure,
                text: "本产品不保本，过往业绩不代表未来表现。".into(),
                evidence: vec![Evidence::AgentReadsAloud, Evidence::CustomerSpeaks],
            }],
        }
        .into(),
        QaFormSet { criteria: vec![QaCriterion { name: "greeting".into(), weight: 2.0, max_score: 5.0 }] }.into(),
        DispositionsSet { dispositions: vec!["已解决 resolved".into(), "需回访 follow-up".into()] }.into(),
        TimeZoneSet { utc_offset_minutes: 480 }.into(),
        TenantLocaleSet { locale: "zh-CN".into() }.into(),
        EmbedOriginsSet { origins: vec!["https://www.bank.example".into()] }.into(),
        CallOptionsSet { beauty_filter: true }.into(),
        SkillGroupsSet {
            groups: vec![
                SkillGroup {
                    name: "cards".into(),
                    label: "信用卡 Credit cards".into(),
                    when_nobody_online: NobodyOnline::Queue,
                    hours: None,
                    message_after_secs: Some(180),
                },
                SkillGroup {
                    name: "loans".into(),
                    label: "贷款 Loans".into(),
                    when_nobody_online: NobodyOnline::Refuse,
                    hours: Some(BusinessHours {
                        utc_offset_minutes: 480,
                        days: vec![1, 2, 3, 4, 5],
                        open: "09:00".into(),
                        close: "17:30".into(),
                        closed_message: "贷款专线工作日 9:00–17:30 服务。".into(),
                    }),
                    message_after_secs: None,
                },
            ],
        }
        .into(),
        QaRulesSet {
            greeting_within_secs: Some(30),
            forbidden_words: vec!["保证收益".into()],
            response_sla_secs: Some(60),
            silence_secs: Some(120),
        }
        .into(),
        LegalHoldPlaced { session_id: Some(session_id), reason: "case 2026-117".into() }.into(),
        LegalHoldReleased { session_id: Some(session_id), reason: "case closed".into() }.into(),
        MediaDeleted {
            class: DataClass::Recordings,
            file: "01a2/customer-audio/00000.webm".into(),
            sha256: Sha256Hex::try_from("9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08".to_owned())
                .expect("hex"),
            reason: "retention: 365 days".into(),
        }
        .into(),
        PersonalDataErased { class: DataClass::Messages, reason: "retention: 180 days".into() }.into(),
        AuditExported {
            format: "jsonl".into(),
            from: Some("2026-11-01T00:00:00Z".parse().expect("a time")),
            to: None,
            events: 1234,
            unmasked: true,
            sha256: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08".into(),
        }
        .into(),
        Event::from(AgentPresenceChanged {
            agent_id,
            presence: Presence::Online,
            capacity: 3,
            skill_groups: vec!["cards".into()],
        }),
        SessionStarted {
            session_id,
            channel: Channel::H5,
            business_type: "credit_card".into(),
            customer_ref: "visitor-7f3a".into(),
            locale: Some("zh-CN".into()),
        }
        .into(),
        CustomerMessage { message_id: first_message, content: text("信用卡年费怎么收？") }.into(),
        BotMessage {
            message_id: MessageId::new(),
            content: text("首年免年费，刷卡满6次免次年年费。"),
            faq_id: Some("faq-annual-fee".into()),
            score: Some(0.82),
        }
        .into(),
        CustomerMessage {
            message_id: MessageId::new(),
            content: MessageContent::Image { attachment: attachment("bill.png", "image/png"), caption: None },
        }
        .into(),
        TransferRequested {
            from: TransferSource::Bot,
            to: TransferTarget::Human,
            reason: "customer asked for a human".into(),
            context_summary: "Annual fee question; customer disputes a charge on the bill.".into(),
            recent_messages: vec![first_message],
        }
        .into(),
        SessionQueued { group: "cards".into(), priority: 0 }.into(),
        AgentOffered { offer_id, agent_id, expires_at: now() + Duration::seconds(20) }.into(),
        OfferDeclined { offer_id, agent_id, reason: Some("on break".into()) }.into(),
        OfferExpired { offer_id, agent_id }.into(),
        OfferAccepted { offer_id, agent_id }.into(),
        AgentAssigned { agent_id, group: "cards".into() }.into(),
        AgentMessage {
            message_id: MessageId::new(),
            agent_id,
            content: MessageContent::RichText {
                markdown: "您好，我是客服小王。请看**账单明细**：".into(),
                attachments: vec![attachment("statement.pdf", "application/pdf")],
            },
        }
        .into(),
        CustomerMessage {
            message_id: MessageId::new(),
            content: MessageContent::File { attachment: attachment("contract.pdf", "application/pdf") },
        }
        .into(),
        CallStarted { call_id, kind: CallKind::Video }.into(),
        ParticipantJoined { call_id, participant_id: "p-customer".into(), role: ParticipantRole::Customer }.into(),
        TrackPublished {
            call_id,
            participant_id: "p-customer".into(),
            track_id: "t-cam".into(),
            kind: TrackKind::Video,
            codec: "VP8".into(),
        }
        .into(),
        MediaStateChanged {
            call_id,
            participant_id: "p-customer".into(),
            device: MediaDevice::Camera,
            enabled: false,
            blocked: true,
        }
        .into(),
        RecordingStarted { recording_id, call_id, reason: RecordingReason::DualRecording }.into(),
        FaceVerificationRequested {
            verification_id,
            id_photo_sha256: digest.clone(),
            frame_sha256: Some(digest.clone()),
        }
        .into(),
        FaceVerificationCompleted {
            verification_id,
            score: 0.71,
            threshold: 0.4,
            decision: FaceDecision::Match,
            model_name: "dlib_face_recognition_resnet_model_v1".into(),
            model_version: "dlib 19.24; sha256:55533b28a95800a5".into(),
            liveness_passed: true,
            frame_sha256s: vec![digest.clone(), digest.clone()],
            compared_frame_sha256: Some(digest.clone()),
            liveness: Some(LivenessCheck {
                prompt: "head_turn".into(),
                frames: 2,
                frames_with_face: 2,
                same_person: true,
                yaw_min: -0.12,
                yaw_max: 0.14,
                reason: String::new(),
            }),
        }
        .into(),
        DualRecordingStepStarted {
            script_id: "wealth-risk".into(),
            script_version: 3,
            step_index: 1,
            step_kind: DualRecordingStepKind::RiskDisclosure,
            recording_offset_ms: 12_400,
        }
        .into(),
        DualRecordingStepCompleted {
            script_id: "wealth-risk".into(),
            script_version: 3,
            step_index: 1,
            outcome: StepOutcome::Completed,
            recording_offset_ms: 71_050,
        }
        .into(),
        RecordingSegmentClosed {
            recording_id,
            track_id: "t-cam".into(),
            segment_index: 0,
            file: format!("{recording_id}/t-cam/00000.webm"),
            bytes: 1_204_511,
            duration_ms: 10_000,
            sha256: digest,
        }
        .into(),
        RecordingInterrupted {
            recording_id,
            track_id: "t-mic".into(),
            error: "Timestamping error on input streams".into(),
            resumed: true,
        }
        .into(),
        TrackUnpublished { call_id, participant_id: "p-customer".into(), track_id: "t-cam".into() }.into(),
        RecordingStopped { recording_id }.into(),
        RecordingComposited {
            recording_id,
            file: format!("{recording_id}/composite.webm"),
            bytes: 3_100_200,
            duration_ms: 15_200,
            sha256: Sha256Hex::try_from("cd".repeat(32)).unwrap(),
        }
        .into(),
        ParticipantLeft { call_id, participant_id: "p-customer".into(), reason: Some("hung up".into()) }.into(),
        CallEnded { call_id, reason: Some("customer hung up".into()) }.into(),
        SessionEnded { ended_by: EndedBy::Customer, reason: EndReason::Resolved }.into(),
        WrapUpCompleted { agent_id, disposition: "resolved".into(), notes: None }.into(),
        SatisfactionRated { rating: Rating::try_from(5).expect("in range"), comment: Some("很快".into()) }.into(),
        TicketCreated {
            ticket_id,
            session_id,
            title: "Dispute on annual fee".into(),
            description: "Customer disputes the annual fee on the October bill.".into(),
            priority: TicketPriority::Normal,
        }
        .into(),
        TicketStatusChanged { ticket_id, status: TicketStatus::InProgress, note: Some("calling the branch".into()) }
            .into(),
        QaEvaluated {
            evaluation_id: EvaluationId::new(),
            session_id,
            evaluator_id: UserId::new(),
            total_score: 87.5,
            max_score: 100.0,
            criteria: vec![QaCriterionScore { criterion: "greeting".into(), weight: 0.2, score: 1.0, comment: None }],
        }
        .into(),
        RecordingAccessed {
            recording_id,
            access: RecordingAccessKind::Playback,
            user_id: UserId::new(),
            range: Some("bytes=0-1023".into()),
        }
        .into(),
    ]
}
