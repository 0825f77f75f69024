//! The session decider, given / when / then.

use chrono::{DateTime, Duration, Utc};

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
        BotMessage { message_id: ids.m2, content: text("free the first year"), faq_id: None, score: Some(0.8) }.into(),
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
    h.push(AgentOffered { offer_id: ids.offer, agent_id: ids.agent, expires_at: t0() + Duration::seconds(20) }.into());
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
    assert_eq!(Session::fold(&[started(&ids)]).status(), SessionStatus::WithBot);
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
        .when(SessionCommand::AcceptOffer { offer_id: ids.offer, agent_id: ids.agent, at: t0() + Duration::seconds(5) })
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
    assert_eq!((Session::fold(&h).status(), Session::fold(&h).agent()), (SessionStatus::Assigned, Some(agent_id)));
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
    assert_eq!(Session::fold(&h).status(), SessionStatus::Queued);
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
    assert_eq!(Session::fold(&h).status(), SessionStatus::Closed, "no agent: no wrap-up");
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
    assert_eq!(Session::fold(&h).face_verification(), None);
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
    Given::given(h.clone()).when(SessionCommand::End { ended_by: EndedBy::Agent, reason: EndReason::Resolved }).then([
        CallEnded { call_id: call, reason: Some("session ended".into()) }.into(),
        SessionEnded { ended_by: EndedBy::Agent, reason: EndReason::Resolved }.into(),
    ]);
    h.push(CallEnded { call_id: call, reason: None }.into());
    h.push(SessionEnded { ended_by: EndedBy::Agent, reason: EndReason::Resolved }.into());
    assert_eq!(Session::fold(&h).status(), SessionStatus::WrapUp);
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
    assert_eq!((state.status(), state.agent()), (SessionStatus::Queued, None));
}

#[test]
fn a_message_is_left_only_while_waiting_and_is_not_abandonment() {
    let ids = ids();
    let left = || SessionCommand::End { ended_by: EndedBy::Customer, reason: EndReason::LeftMessage };
    Given::given(assigned(&ids)).when(left()).refused();
    let mut queued = assigned(&ids);
    queued.truncate(queued.iter().position(|e| matches!(e, Event::AgentOffered(_))).unwrap());
    assert_eq!(Session::fold(&queued).status(), SessionStatus::Queued);
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
    h.push(RecordingStarted { recording_id: RecordingId::new(), call_id, reason: RecordingReason::OnDemand }.into());
    let running = Session::fold(&h).recording().unwrap();
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
    assert_eq!(err, DomainError::NotAllowed { aggregate: "session", command: "CustomerSays", state: "closed".into() });
}

#[test]
fn the_session_remembers_only_the_most_recent_messages() {
    let ids = ids();
    let mut h = vec![started(&ids)];
    h.extend(
        (0..30).map(|i| Event::from(CustomerMessage { message_id: MessageId::new(), content: text(&format!("m{i}")) })),
    );
    let state = Session::fold(&h);
    assert_eq!(state.recent.len(), RECENT_MESSAGES);
    assert_eq!(state.recent.back().unwrap().text, "m29");
    assert_eq!(state.recent.front().unwrap().text, "m10");
}

/// "Only the session's agent may …" is the decider's rule: decided on the
/// state the append is checked against, it holds when the session was
/// transferred after the caller looked.
#[test]
fn what_only_the_sessions_agent_may_do_is_refused_to_anyone_else_when_decided() {
    let ids = ids();
    let mut h = assigned(&ids);
    let end = || SessionCommand::End { ended_by: EndedBy::Agent, reason: EndReason::Resolved };
    // Theirs: allowed.
    let ended = Given::given(h.clone()).when(end().by_agent(ids.agent)).events();
    assert!(matches!(ended.as_slice(), [Event::SessionEnded(_)]));
    // Another agent: refused.
    let other = UserId::new();
    Given::given(h.clone())
        .when(end().by_agent(other))
        .then_error(DomainError::NotTheAssignedAgent { agent: other.to_string() });
    // The first agent transferred it and it waits again: ending it now would
    // be read as the customer abandoning the queue. Refused, and so is every
    // other command wrapped the same way.
    h.extend(
        Given::given(h.clone())
            .when(SessionCommand::Transfer {
                agent_id: ids.agent,
                to: TransferTarget::Human,
                reason: "billing".into(),
                context_summary: String::new(),
            })
            .events(),
    );
    assert_eq!(Session::fold(&h).agent(), None);
    Given::given(h.clone())
        .when(end().by_agent(ids.agent))
        .then_error(DomainError::NotTheAssignedAgent { agent: ids.agent.to_string() });
    // Unwrapped, the same command is the queue's abandonment.
    let abandoned = Given::given(h).when(end()).events();
    assert!(matches!(&abandoned[..], [Event::SessionEnded(e)] if e.reason == EndReason::Abandoned));
}

/// The phase carries what exists only in it: no call without an agent, no
/// call id once the call ended, no open offer once it was taken.
#[test]
fn impossible_states_are_not_built_from_any_history() {
    let ids = ids();
    let call_id = CallId::new();
    let call = CallStarted { call_id, kind: CallKind::Video };
    // A call reported before anyone was assigned does not make a call.
    let early = Session::fold(&[started(&ids), call.clone().into()]);
    assert_eq!((early.status(), early.call()), (SessionStatus::WithBot, None));
    let mut h = assigned(&ids);
    assert_eq!(Session::fold(&h).offer(), None);
    h.push(call.into());
    let in_call = Session::fold(&h);
    assert_eq!(in_call.call().map(|c| c.call_id), Some(call_id));
    assert_eq!(in_call.agent(), Some(ids.agent));
    h.push(CallEnded { call_id, reason: None }.into());
    let after = Session::fold(&h);
    assert_eq!((after.status(), after.call(), after.last_call), (SessionStatus::Assigned, None, Some(call_id)));
    h.push(SessionEnded { ended_by: EndedBy::Agent, reason: EndReason::Resolved }.into());
    h.push(WrapUpCompleted { agent_id: ids.agent, disposition: "resolved".into(), notes: None }.into());
    let closed = Session::fold(&h);
    assert_eq!((closed.status(), closed.agent(), closed.ended()), (SessionStatus::Closed, Some(ids.agent), true));
}
