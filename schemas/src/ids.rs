//! Identifiers: tenants, streams, actors and the domain ids carried in payloads.

use std::fmt;
use std::str::FromStr;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::SchemaError;

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
        #[serde(transparent)]
        pub struct $name(pub Uuid);

        impl $name {
            /// A fresh, time-ordered (UUID v7) id.
            pub fn new() -> Self {
                Self(Uuid::now_v7())
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl FromStr for $name {
            type Err = uuid::Error;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s).map(Self)
            }
        }
    };
}

uuid_id!(
    /// A customer-service session, from the first bot message to the rating.
    SessionId
);
uuid_id!(
    /// A person: agent, supervisor, compliance officer or admin.
    UserId
);
uuid_id!(
    /// A ticket opened from a session.
    TicketId
);
uuid_id!(
    /// A chat message inside a session.
    MessageId
);
uuid_id!(
    /// An offer of a session to one agent.
    OfferId
);
uuid_id!(
    /// An audio/video call inside a session.
    CallId
);
uuid_id!(
    /// A recording of a call (per-track segments plus an optional composite).
    RecordingId
);
uuid_id!(
    /// One face verification attempt.
    VerificationId
);
uuid_id!(
    /// A QA evaluation of a session.
    EvaluationId
);

/// A tenant: one organisation using Witness. A short slug (`[a-z0-9_-]`, 1 to 64
/// characters) so that it reads well in URLs, logs and partition paths.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[serde(try_from = "String", into = "String")]
pub struct TenantId(String);

impl TenantId {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for TenantId {
    type Error = SchemaError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        let ok = !s.is_empty()
            && s.len() <= 64
            && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if ok {
            Ok(Self(s))
        } else {
            Err(SchemaError::InvalidId {
                kind: "tenant",
                value: s,
                expected: "1 to 64 characters of a-z, 0-9, '-' or '_'",
            })
        }
    }
}

impl FromStr for TenantId {
    type Err = SchemaError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::try_from(s.to_owned())
    }
}

impl From<TenantId> for String {
    fn from(t: TenantId) -> Self {
        t.0
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What kind of aggregate a stream belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum StreamKind {
    Session,
    Agent,
    Ticket,
    Tenant,
    /// A tenant's access log for one day (`access-<tenant>.<YYYY-MM-DD>`):
    /// who read personal data unmasked, who exported the log. Kept off the
    /// tenant stream, which every login folds, and cut by day so that no
    /// stream grows without end.
    Access,
}

impl StreamKind {
    pub const ALL: [StreamKind; 5] = [Self::Session, Self::Agent, Self::Ticket, Self::Tenant, Self::Access];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Session => "session",
            Self::Agent => "agent",
            Self::Ticket => "ticket",
            Self::Tenant => "tenant",
            Self::Access => "access",
        }
    }
}

/// A stream: one aggregate's ordered events, written `kind-id` (`session-0193…`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamId {
    pub kind: StreamKind,
    pub id: String,
}

impl StreamId {
    pub fn new(kind: StreamKind, id: impl fmt::Display) -> Self {
        Self { kind, id: id.to_string() }
    }

    pub fn session(id: SessionId) -> Self {
        Self::new(StreamKind::Session, id)
    }

    pub fn agent(id: UserId) -> Self {
        Self::new(StreamKind::Agent, id)
    }

    pub fn ticket(id: TicketId) -> Self {
        Self::new(StreamKind::Ticket, id)
    }

    /// The tenant's own stream: its creation and its user directory.
    pub fn tenant(id: &TenantId) -> Self {
        Self::new(StreamKind::Tenant, id)
    }

    /// The tenant's access log for `day` (UTC).
    pub fn access(tenant: &TenantId, day: chrono::NaiveDate) -> Self {
        Self::new(StreamKind::Access, format!("{tenant}.{day}"))
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.kind.as_str(), self.id)
    }
}

impl FromStr for StreamId {
    type Err = SchemaError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = || SchemaError::InvalidId {
            kind: "stream",
            value: s.to_owned(),
            expected: "<kind>-<id> with kind one of session, agent, ticket, tenant, access",
        };
        let (kind, id) = s.split_once('-').ok_or_else(invalid)?;
        let kind = StreamKind::ALL.into_iter().find(|k| k.as_str() == kind).ok_or_else(invalid)?;
        if id.is_empty() || id.len() > 128 {
            return Err(invalid());
        }
        Ok(Self { kind, id: id.to_owned() })
    }
}

impl Serialize for StreamId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for StreamId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Who caused an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ActorKind {
    Customer,
    Agent,
    Bot,
    System,
    Supervisor,
    Compliance,
    Admin,
}

impl ActorKind {
    pub const ALL: [ActorKind; 7] =
        [Self::Customer, Self::Agent, Self::Bot, Self::System, Self::Supervisor, Self::Compliance, Self::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Customer => "customer",
            Self::Agent => "agent",
            Self::Bot => "bot",
            Self::System => "system",
            Self::Supervisor => "supervisor",
            Self::Compliance => "compliance",
            Self::Admin => "admin",
        }
    }
}

impl FromStr for ActorKind {
    type Err = SchemaError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL.into_iter().find(|k| k.as_str() == s).ok_or_else(|| SchemaError::InvalidId {
            kind: "actor kind",
            value: s.to_owned(),
            expected: "customer, agent, bot, system, supervisor, compliance or admin",
        })
    }
}

/// The actor of an event: a kind and, where there is one, the id of the
/// person or visitor (an opaque reference, never a name or phone number).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub struct Actor {
    pub kind: ActorKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

impl Actor {
    pub fn system() -> Self {
        Self { kind: ActorKind::System, id: None }
    }

    pub fn bot() -> Self {
        Self { kind: ActorKind::Bot, id: None }
    }

    pub fn new(kind: ActorKind, id: impl Into<String>) -> Self {
        Self { kind, id: Some(id.into()) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_id_round_trips_through_text() {
        let s = StreamId::session(SessionId::new());
        let parsed: StreamId = s.to_string().parse().unwrap();
        assert_eq!(parsed, s);
        assert_eq!(serde_json::from_value::<StreamId>(serde_json::to_value(&s).unwrap()).unwrap(), s);
    }

    #[test]
    fn stream_id_rejects_unknown_kinds_and_empty_ids() {
        assert!("widget-1".parse::<StreamId>().is_err());
        assert!("session-".parse::<StreamId>().is_err());
        assert!("session".parse::<StreamId>().is_err());
    }

    #[test]
    fn tenant_id_accepts_slugs_only() {
        assert!("acme-bank_1".parse::<TenantId>().is_ok());
        for bad in ["", "Acme", "a b", "x/y", &"a".repeat(65)] {
            assert!(bad.parse::<TenantId>().is_err(), "{bad:?} accepted");
        }
        assert!(serde_json::from_str::<TenantId>("\"UPPER\"").is_err());
    }
}
