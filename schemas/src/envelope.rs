//! The envelope around a payload: what a writer submits ([`NewEvent`]) and
//! what the store records ([`RecordedEvent`]).

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, SubsecRound, Utc};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use uuid::Uuid;

use crate::{decode, Actor, Event, SchemaError, StreamId, TenantId};

/// An event as a writer submits it. The store adds the tenant, stream,
/// version, position, recording time and hashes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewEvent {
    /// Idempotency key: appending the same `event_id` twice stores it once.
    pub event_id: Uuid,
    pub event_type: String,
    pub schema_version: u32,
    pub occurred_at: DateTime<Utc>,
    pub actor: Actor,
    pub correlation_id: Uuid,
    #[serde(default)]
    pub causation_id: Option<Uuid>,
    pub payload: serde_json::Value,
}

impl NewEvent {
    /// A new event at the current schema version, occurring now, correlated
    /// with itself. Use [`NewEvent::caused_by`] to link it to what caused it.
    pub fn new(event: impl Into<Event>, actor: Actor) -> Self {
        let event = event.into();
        let event_id = Uuid::now_v7();
        Self {
            event_id,
            event_type: event.event_type().to_owned(),
            schema_version: event.schema_version(),
            occurred_at: now(),
            actor,
            correlation_id: event_id,
            causation_id: None,
            payload: event.payload(),
        }
    }

    /// Sets correlation and causation from the event that caused this one.
    pub fn caused_by(mut self, cause: &RecordedEvent) -> Self {
        self.correlation_id = cause.correlation_id;
        self.causation_id = Some(cause.event_id);
        self
    }

    pub fn with_id(mut self, event_id: Uuid) -> Self {
        self.event_id = event_id;
        self
    }

    pub fn at(mut self, occurred_at: DateTime<Utc>) -> Self {
        self.occurred_at = occurred_at.trunc_subsecs(6);
        self
    }
}

/// The current time at the store's precision (microseconds), so that a time
/// read back from either database is equal to the one hashed.
pub fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

/// A place in the global log. Events are totally ordered by
/// `(commit, position)`: on SQLite `commit` equals `position`; on PostgreSQL
/// it is the writing transaction's id, because positions are taken from a
/// sequence before commit and so become visible out of order (see
/// docs/ARCHITECTURE.md, "Global order without skips"). Written `commit-position`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Cursor {
    pub commit: u64,
    pub position: u64,
}

impl Cursor {
    /// Before the first event.
    pub const START: Cursor = Cursor { commit: 0, position: 0 };
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.commit, self.position)
    }
}

impl FromStr for Cursor {
    type Err = SchemaError;
    fn from_str(s: &str) -> Result<Self, SchemaError> {
        let invalid = || SchemaError::InvalidId {
            kind: "cursor",
            value: s.to_owned(),
            expected: "<commit>-<position> as returned in `next`, or 0 for the start",
        };
        if s == "0" {
            return Ok(Self::START);
        }
        let (c, p) = s.split_once('-').ok_or_else(invalid)?;
        Ok(Self { commit: c.parse().map_err(|_| invalid())?, position: p.parse().map_err(|_| invalid())? })
    }
}

impl Serialize for Cursor {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Cursor {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
    }
}

/// A stored event: the whole envelope. `payload` is the exact JSON text that
/// was hashed; [`RecordedEvent::decode`] gives the typed event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedEvent {
    pub position: u64,
    pub commit: u64,
    pub event_id: Uuid,
    pub tenant_id: TenantId,
    pub stream_id: StreamId,
    pub stream_version: u64,
    pub event_type: String,
    pub schema_version: u32,
    pub occurred_at: DateTime<Utc>,
    pub recorded_at: DateTime<Utc>,
    pub actor: Actor,
    pub correlation_id: Uuid,
    pub causation_id: Option<Uuid>,
    #[serde(serialize_with = "raw_json_out", deserialize_with = "raw_json_in")]
    pub payload: String,
    #[serde(with = "hex32")]
    pub prev_hash: [u8; 32],
    #[serde(with = "hex32")]
    pub hash: [u8; 32],
}

impl RecordedEvent {
    pub fn cursor(&self) -> Cursor {
        Cursor { commit: self.commit, position: self.position }
    }

    /// The typed payload, upcast to the current version.
    pub fn decode(&self) -> Result<Event, SchemaError> {
        decode(&self.event_type, self.schema_version, &self.payload)
    }
}

fn raw_json_out<S: serde::Serializer>(payload: &str, s: S) -> Result<S::Ok, S::Error> {
    let raw: &RawValue = serde_json::from_str(payload).map_err(serde::ser::Error::custom)?;
    raw.serialize(s)
}

fn raw_json_in<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let raw = Box::<RawValue>::deserialize(d)?;
    Ok(raw.get().to_owned())
}

mod hex32 {
    use serde::{Deserialize, Deserializer, Serializer};

    /// Every event serialised carries two of these (the relay, the API,
    /// exports): no formatting machinery, no allocation.
    pub fn serialize<S: Serializer>(bytes: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut out = [0u8; 64];
        for (pair, b) in out.chunks_exact_mut(2).zip(bytes) {
            pair[0] = DIGITS[usize::from(b >> 4)];
            pair[1] = DIGITS[usize::from(b & 0x0f)];
        }
        s.serialize_str(std::str::from_utf8(&out).expect("hex digits are ASCII"))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let s = String::deserialize(d)?;
        let err = || serde::de::Error::custom("expected 64 hex digits");
        // Bytes, not string slices: text from a package or a Kafka message
        // may hold any character (slicing one in half panicked), and
        // `from_str_radix` would also take a sign (`+f`).
        let digit = |c: u8| match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        };
        let bytes = s.as_bytes();
        if bytes.len() != 64 {
            return Err(err());
        }
        let mut out = [0u8; 32];
        for (byte, pair) in out.iter_mut().zip(bytes.chunks_exact(2)) {
            *byte = digit(pair[0]).zip(digit(pair[1])).map(|(hi, lo)| hi << 4 | lo).ok_or_else(err)?;
        }
        Ok(out)
    }
}
