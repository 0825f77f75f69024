use std::collections::BTreeSet;

use proptest::prelude::*;
use serde_json::json;

use super::*;

#[test]
fn examples_cover_every_event_type() {
    let covered: BTreeSet<_> = examples::one_of_each().iter().map(|e| e.event_type()).collect();
    let all: BTreeSet<_> = EVENT_TYPES.iter().map(|(t, _)| *t).collect();
    assert_eq!(covered, all, "add an example for every new event type");
}

#[test]
fn every_event_type_round_trips_through_json() {
    for event in examples::one_of_each() {
        let text = event.payload().to_string();
        let back = decode(event.event_type(), event.schema_version(), &text).unwrap();
        assert_eq!(back, event, "{} did not round trip", event.event_type());
        // and through the stricter append-time check
        assert_eq!(validate_new(event.event_type(), event.schema_version(), &event.payload()).unwrap(), event);
    }
}

#[test]
fn recorded_event_envelope_round_trips_with_raw_payload() {
    let event = examples::one_of_each().remove(2);
    let new = NewEvent::new(event.clone(), Actor::new(ActorKind::Customer, "visitor-1"));
    let recorded = RecordedEvent {
        position: 7,
        commit: 7,
        event_id: new.event_id,
        tenant_id: "acme".parse().unwrap(),
        stream_id: "session-abc".parse().unwrap(),
        stream_version: 3,
        event_type: new.event_type.clone(),
        schema_version: new.schema_version,
        occurred_at: new.occurred_at,
        recorded_at: now(),
        actor: new.actor.clone(),
        correlation_id: new.correlation_id,
        causation_id: None,
        payload: new.payload.to_string(),
        prev_hash: [1; 32],
        hash: std::array::from_fn(|i| i as u8 * 8 + 3),
    };
    let json = serde_json::to_value(&recorded).unwrap();
    assert!(json["payload"].is_object(), "payload is embedded as JSON, not as a string");
    let hex: String = recorded.hash.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(json["hash"], json!(hex));
    assert_eq!(json["prev_hash"], json!("01".repeat(32)));
    let back: RecordedEvent = serde_json::from_value(json).unwrap();
    assert_eq!(back, recorded);
    assert_eq!(back.decode().unwrap(), event);
}

#[test]
fn session_started_v1_is_upcast_to_v2() {
    let id = SessionId::new();
    let v1 = json!({"session_id": id, "source": "mobile_web", "customer_ref": "visitor-9"}).to_string();
    let event = decode("SessionStarted", 1, &v1).unwrap();
    assert_eq!(
        event,
        Event::SessionStarted(SessionStarted {
            session_id: id,
            channel: Channel::H5,
            business_type: "general".into(),
            customer_ref: "visitor-9".into(),
            locale: None,
        })
    );
    let v1_wechat = json!({"session_id": id, "source": "wechat", "customer_ref": "v"}).to_string();
    let Event::SessionStarted(s) = decode("SessionStarted", 1, &v1_wechat).unwrap() else { panic!() };
    assert_eq!(s.channel, Channel::Wechat);
}

#[test]
fn face_verification_completed_v1_reads_as_v2_without_frames() {
    let id = VerificationId::new();
    let v1 = json!({
        "verification_id": id, "score": 0.7, "threshold": 0.4, "decision": "match",
        "model_name": "m", "model_version": "1", "liveness_passed": true
    })
    .to_string();
    let Event::FaceVerificationCompleted(c) = decode("FaceVerificationCompleted", 1, &v1).unwrap() else { panic!() };
    assert_eq!((c.verification_id, c.decision, c.liveness_passed), (id, FaceDecision::Match, true));
    assert!(c.frame_sha256s.is_empty() && c.compared_frame_sha256.is_none() && c.liveness.is_none());
    // v2 without its frames is malformed: the list is required from v2 on.
    let err = decode("FaceVerificationCompleted", 2, &v1).unwrap_err();
    assert!(err.to_string().contains("frame_sha256s"), "{err}");
}

#[test]
fn qa_rules_v1_read_as_v2_without_a_silence_rule() {
    let v1 = json!({ "greeting_within_secs": 30, "forbidden_words": ["x"] }).to_string();
    let Event::QaRulesSet(rules) = decode("QaRulesSet", 1, &v1).unwrap() else { panic!() };
    assert_eq!((rules.greeting_within_secs, rules.silence_secs), (Some(30), None));
    let v1_with_v2_field = json!({ "silence_secs": 5 }).to_string();
    assert!(matches!(decode("QaRulesSet", 1, &v1_with_v2_field), Err(SchemaError::Upcast { .. })));
}

#[test]
fn upcast_of_a_broken_v1_payload_says_why() {
    let err = decode("SessionStarted", 1, r#"{"session_id":"x"}"#).unwrap_err();
    assert!(matches!(err, SchemaError::Upcast { from_version: 1, .. }), "{err}");
}

#[test]
fn append_check_refuses_old_future_and_unknown() {
    let event = examples::one_of_each().remove(1); // SessionStarted, current v2
    let payload = event.payload();
    let err = validate_new("SessionStarted", 1, &payload).unwrap_err();
    assert_eq!(err, SchemaError::WrongSchemaVersion { event_type: "SessionStarted".into(), got: 1, current: 2 });
    assert!(err.to_string().contains("current version is 2"));
    assert!(matches!(validate_new("SessionStarted", 3, &payload), Err(SchemaError::WrongSchemaVersion { .. })));
    assert_eq!(
        validate_new("SessionExploded", 1, &payload).unwrap_err(),
        SchemaError::UnknownEventType("SessionExploded".into())
    );
    assert!(matches!(
        decode("SessionStarted", 9, "{}"),
        Err(SchemaError::UnsupportedVersion { got: 9, current: 2, .. })
    ));
}

#[test]
fn malformed_payloads_are_refused_with_the_reason() {
    let cases = [
        ("CustomerMessage", json!({"message_id": MessageId::new()})),
        ("CustomerMessage", json!({"message_id": "not-a-uuid", "content": {"kind": "text", "text": "hi"}})),
        ("SatisfactionRated", json!({"rating": 6})),
        ("SessionQueued", json!({"group": "cards", "priority": 0, "extra": true})),
        ("SessionStarted", json!([1, 2, 3])),
    ];
    for (event_type, payload) in cases {
        let err = validate_new(event_type, current_version(event_type).unwrap(), &payload).unwrap_err();
        let SchemaError::MalformedPayload { message, .. } = &err else { panic!("{event_type}: {err:?}") };
        assert!(!message.is_empty());
    }
}

#[test]
fn json_schemas_exist_for_every_type_and_describe_fields() {
    let schemas = json_schemas();
    assert_eq!(schemas.len(), EVENT_TYPES.len());
    let (_, version, started) = schemas.iter().find(|(t, _, _)| *t == "SessionStarted").unwrap();
    assert_eq!(*version, 2);
    let text = serde_json::to_string(started).unwrap();
    assert!(text.contains("business_type") && text.contains("mini_program"), "{text}");
}

#[test]
fn cursor_parses_what_it_prints() {
    let c = Cursor { commit: 812, position: 40 };
    assert_eq!(c.to_string().parse::<Cursor>().unwrap(), c);
    assert_eq!("0".parse::<Cursor>().unwrap(), Cursor::START);
    for bad in ["", "x-1", "1-", "-1", "1.2"] {
        assert!(bad.parse::<Cursor>().is_err(), "{bad:?}");
    }
}

/// A recorded event as JSON, with `hash` replaced by `text`.
fn with_hash(text: &str) -> serde_json::Value {
    let new = NewEvent::new(examples::one_of_each().remove(2), Actor::new(ActorKind::Customer, "visitor-1"));
    json!({ "position": 1, "commit": 1, "event_id": new.event_id, "tenant_id": "acme", "stream_id": "session-abc",
        "stream_version": 1, "event_type": new.event_type, "schema_version": new.schema_version,
        "occurred_at": new.occurred_at, "recorded_at": new.occurred_at, "actor": new.actor,
        "correlation_id": new.correlation_id, "payload": new.payload, "prev_hash": "00".repeat(32), "hash": text })
}

#[test]
fn hashes_are_read_as_64_hex_digits_only() {
    let ok: RecordedEvent = serde_json::from_value(with_hash(&"aB".repeat(32))).unwrap();
    assert_eq!(ok.hash, [0xab; 32]);
    // 64 bytes of text that are not 64 hex digits: a character cut in two
    // panicked here once; a sign was taken as a digit.
    for bad in ["é".repeat(32), format!("é{}", "0".repeat(62)), "+f".repeat(32), "0".repeat(63), " 1".repeat(32)] {
        assert!(serde_json::from_value::<RecordedEvent>(with_hash(&bad)).is_err(), "{bad:?}");
    }
}

proptest! {
    // Hashes arrive in review packages and Kafka messages: any text.
    #[test]
    fn reading_an_arbitrary_hash_never_panics(text in "\\PC{0,70}") {
        let read = serde_json::from_value::<RecordedEvent>(with_hash(&text));
        prop_assert_eq!(read.is_ok(), text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()));
    }

    // The payload decoder sees untrusted input (API, Kafka): it must never panic.
    #[test]
    fn decoding_arbitrary_text_never_panics(event_type in "[A-Za-z]{0,24}", version in 0u32..4, text in "\\PC{0,200}") {
        let _ = decode(&event_type, version, &text);
        for (t, _) in EVENT_TYPES {
            let _ = decode(t, version, &text);
        }
    }

    #[test]
    fn text_messages_round_trip(text in "\\PC{0,300}") {
        let event = Event::from(CustomerMessage { message_id: MessageId::new(), content: MessageContent::Text { text } });
        let back = decode(event.event_type(), 1, &event.payload().to_string()).unwrap();
        prop_assert_eq!(back, event);
    }
}
