//! The Witness event vocabulary: what can happen in a customer-service
//! session, as immutable, versioned events.
//!
//! * [`Event`] is the typed payload of every event type (`SessionStarted`,
//!   `CustomerMessage`, `AgentAssigned`, `RecordingSegmentClosed`, …), each at
//!   its current `schema_version` ([`EVENT_TYPES`]).
//! * [`NewEvent`] is what a writer hands to the event store; [`RecordedEvent`]
//!   is what the store gives back: the full envelope (global position, stream
//!   version, hash chain) with the payload kept as the JSON text it was
//!   written with.
//! * [`decode`] turns a stored `(event_type, schema_version, payload)` into an
//!   [`Event`], running the [`upcast`] chain for old versions. [`validate_new`]
//!   is the stricter check on append: only current versions, no unknown
//!   fields.
//!
//! This crate does no IO.
//!
//! ```
//! use witness_schemas::*;
//!
//! let started = SessionStarted {
//!     session_id: SessionId::new(),
//!     channel: Channel::Web,
//!     business_type: "credit_card".into(),
//!     customer_ref: "visitor-42".into(),
//!     locale: None,
//! };
//! let new = NewEvent::new(started.clone(), Actor::new(ActorKind::Customer, "visitor-42"));
//! assert_eq!(new.event_type, "SessionStarted");
//! let back = decode(&new.event_type, new.schema_version, &new.payload.to_string()).unwrap();
//! assert_eq!(back, Event::SessionStarted(started));
//! ```

mod envelope;
mod events;
#[cfg(test)]
mod examples;
mod ids;
pub mod metrics;
mod personal;
pub mod upcast;

pub use envelope::*;
pub use events::*;
pub use ids::*;
pub use personal::*;

/// Why an event or id was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SchemaError {
    #[error("unknown event type {0:?}")]
    UnknownEventType(String),
    #[error("{event_type} schema_version {got} is not accepted on append: the current version is {current}")]
    WrongSchemaVersion { event_type: String, got: u32, current: u32 },
    #[error("{event_type} schema_version {got} is unknown: versions 1 to {current} exist")]
    UnsupportedVersion { event_type: String, got: u32, current: u32 },
    #[error("malformed {event_type} payload: {message}")]
    MalformedPayload { event_type: String, message: String },
    #[error("cannot upcast {event_type} from v{from_version}: {message}")]
    Upcast { event_type: String, from_version: u32, message: String },
    #[error("invalid {kind} {value:?}: expected {expected}")]
    InvalidId { kind: &'static str, value: String, expected: &'static str },
}

fn version_of(event_type: &str) -> Result<u32, SchemaError> {
    current_version(event_type).ok_or_else(|| SchemaError::UnknownEventType(event_type.to_owned()))
}

/// Decodes a stored payload of any known version into the current typed event.
pub fn decode(event_type: &str, schema_version: u32, payload: &str) -> Result<Event, SchemaError> {
    let current = version_of(event_type)?;
    if schema_version == current {
        return Event::from_current_str(event_type, payload);
    }
    if schema_version == 0 || schema_version > current {
        return Err(SchemaError::UnsupportedVersion {
            event_type: event_type.to_owned(),
            got: schema_version,
            current,
        });
    }
    let mut value: serde_json::Value = serde_json::from_str(payload)
        .map_err(|e| SchemaError::MalformedPayload { event_type: event_type.to_owned(), message: e.to_string() })?;
    for from_version in schema_version..current {
        let upcaster = upcast::find(event_type, from_version).ok_or_else(|| SchemaError::UnsupportedVersion {
            event_type: event_type.to_owned(),
            got: schema_version,
            current,
        })?;
        value = (upcaster.lift)(value).map_err(|message| SchemaError::Upcast {
            event_type: event_type.to_owned(),
            from_version,
            message,
        })?;
    }
    Event::from_current_value(event_type, value)
}

/// The check made on append: the type is known, the version is the current
/// one (old versions are for reading history, never for writing it), and the
/// payload decodes with no unknown fields. Returns the typed event.
pub fn validate_new(event_type: &str, schema_version: u32, payload: &serde_json::Value) -> Result<Event, SchemaError> {
    let current = version_of(event_type)?;
    if schema_version != current {
        return Err(SchemaError::WrongSchemaVersion {
            event_type: event_type.to_owned(),
            got: schema_version,
            current,
        });
    }
    Event::from_current_ref(event_type, payload)
}

#[cfg(test)]
mod tests;
