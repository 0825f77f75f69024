//! Upcasters: lift a stored payload from an old schema version to the next.
//!
//! History is never rewritten. A stored event keeps the JSON and version it
//! was written with; every read runs the payload through the chain
//! `v(n) → v(n+1) → … → current` before decoding it into the typed [`Event`].
//! Adding a version means: bump the number in the registry
//! (`events.rs`), change the struct, and add one [`Upcaster`] here.
//!
//! [`Event`]: crate::Event

use serde_json::{Map, Value};

/// Lifts one event type's payload from `from_version` to `from_version + 1`.
#[derive(Debug, Clone, Copy)]
pub struct Upcaster {
    pub event_type: &'static str,
    pub from_version: u32,
    /// Returns the lifted payload, or why the old payload cannot be lifted.
    pub lift: fn(Value) -> Result<Value, String>,
}

/// Every upcaster Witness ships.
pub static UPCASTERS: &[Upcaster] = &[
    Upcaster { event_type: "SessionStarted", from_version: 1, lift: session_started_v1_to_v2 },
    Upcaster { event_type: "FaceVerificationCompleted", from_version: 1, lift: face_verification_completed_v1_to_v2 },
    Upcaster { event_type: "QaRulesSet", from_version: 1, lift: qa_rules_set_v1_to_v2 },
];

/// The upcaster for `event_type` at `from_version`, if any.
pub fn find(event_type: &str, from_version: u32) -> Option<&'static Upcaster> {
    UPCASTERS.iter().find(|u| u.event_type == event_type && u.from_version == from_version)
}

/// `SessionStarted` v1 called the channel `source`, spelled the mobile web
/// channel `mobile_web`, and had no business type (every tenant had one line).
/// v2 renames the field, uses `h5`, and fills `business_type = "general"`.
fn session_started_v1_to_v2(v1: Value) -> Result<Value, String> {
    let Value::Object(mut fields) = v1 else {
        return Err("payload is not a JSON object".into());
    };
    let source = fields.remove("source").ok_or("v1 payload has no `source`")?;
    let channel = match source.as_str() {
        Some("mobile_web") => Value::from("h5"),
        Some(_) => source,
        None => return Err("`source` is not a string".into()),
    };
    let mut v2 = Map::new();
    v2.insert("channel".into(), channel);
    v2.insert("business_type".into(), Value::from("general"));
    v2.extend(fields);
    Ok(Value::Object(v2))
}

/// `FaceVerificationCompleted` v1 recorded no frames: v2 reads it with an
/// empty list (and no compared frame or liveness detail).
fn face_verification_completed_v1_to_v2(v1: Value) -> Result<Value, String> {
    let Value::Object(mut fields) = v1 else {
        return Err("payload is not a JSON object".into());
    };
    fields.insert("frame_sha256s".into(), Value::Array(vec![]));
    Ok(Value::Object(fields))
}

/// `QaRulesSet` v1 had no silence rule: v2 reads it with none (the field is
/// optional, so the payload is unchanged).
fn qa_rules_set_v1_to_v2(v1: Value) -> Result<Value, String> {
    match v1 {
        Value::Object(fields) if !fields.contains_key("silence_secs") => Ok(Value::Object(fields)),
        Value::Object(_) => Err("a v1 payload has no `silence_secs`".into()),
        _ => Err("payload is not a JSON object".into()),
    }
}
