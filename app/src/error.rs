//! What a use case refuses, with no HTTP in it: a [`Kind`] (which the API
//! maps to a status) and a [`Refusal`] a person may read (which the API
//! translates). The store's and the deciders' errors become these here, in
//! one place, whoever called.

use std::fmt;

use witness_domain::{refusal, DomainError, Refusal};
use witness_engine::executor::ExecuteError;
use witness_engine::StoreError;

/// What kind of refusal, for the caller to act on (the API's status).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The request itself is wrong (a program's mistake).
    Malformed,
    Forbidden,
    /// Also what another tenant's id gets: its existence is not confirmed.
    NotFound,
    /// Not in the state the thing is in now.
    Conflict,
    /// Well-formed, but breaks a rule.
    Unprocessable,
    TooLarge,
    UnsupportedType,
    /// A limit was reached; [`Error::retry_after`] says when to try again.
    TooMany,
    InsufficientStorage,
    /// A part Witness needs (the store, the read models) is not there now.
    Unavailable,
    /// A fault of Witness's, logged where it happened.
    Internal,
}

#[derive(Debug, Clone)]
pub struct Error {
    pub kind: Kind,
    pub refusal: Refusal,
    /// Values that are catalog keys themselves (a state, a kind of thing),
    /// by name: the API writes them in the error's language; the refusal
    /// carries their English.
    pub keyed: Vec<(&'static str, &'static str)>,
    /// Seconds after which trying again may succeed.
    pub retry_after: Option<u64>,
}

impl Error {
    pub fn new(kind: Kind, refusal: Refusal) -> Self {
        Self { kind, refusal, keyed: vec![], retry_after: None }
    }

    pub fn keyed(kind: Kind, refusal: Refusal, keyed: &[(&'static str, &'static str)]) -> Self {
        Self { keyed: keyed.to_vec(), ..Self::new(kind, refusal) }
    }

    pub fn not_found(refusal: Refusal) -> Self {
        Self::new(Kind::NotFound, refusal)
    }

    pub fn too_many(refusal: Refusal, seconds: u64) -> Self {
        Self { retry_after: Some(seconds.max(1)), ..Self::new(Kind::TooMany, refusal) }
    }

    /// A request that does not parse, with what the parser said (technical,
    /// English: a program's mistake, not a person's).
    pub fn malformed(detail: impl fmt::Display) -> Self {
        Self::new(Kind::Malformed, refusal!("malformed", "the request is malformed: {detail}", detail = detail))
    }

    /// A stored event no longer decodes (a server fault, logged by the caller).
    pub fn event_unreadable() -> Self {
        Self::new(Kind::Internal, refusal!("event_unreadable", "a stored event cannot be read"))
    }
}

/// The English text.
impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.refusal.fmt(f)
    }
}

impl std::error::Error for Error {}

/// Decodes a stream read from the store; a stored event that no longer
/// decodes is a server fault, logged, and `what` (e.g. "the session")
/// cannot be read.
pub fn decode_stream(
    events: &[witness_schemas::RecordedEvent],
    what: &str,
) -> Result<Vec<witness_schemas::Event>, Error> {
    events.iter().map(|e| e.decode()).collect::<Result<_, _>>().map_err(|e| {
        tracing::error!(error = %e, "{what}: stored event cannot be decoded");
        Error::event_unreadable()
    })
}

impl From<witness_projections::ProjectionError> for Error {
    fn from(e: witness_projections::ProjectionError) -> Self {
        tracing::error!(error = %e, "read model error");
        Self::new(Kind::Unavailable, refusal!("read_models_unavailable", "the read models are unavailable"))
    }
}

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Self {
        match e {
            // Lost every retry to concurrent writers: the caller may try again.
            StoreError::Concurrency { .. } => {
                Self::new(Kind::Conflict, refusal!("changed_meanwhile", "the session changed meanwhile; try again"))
            }
            e @ (StoreError::InvalidEvent { .. } | StoreError::InvalidAppend(_)) => Self::malformed(e),
            // The API checks tenants before it writes; reaching this is a bug,
            // and the caller learns nothing about the other tenant.
            StoreError::WrongTenant { .. } => {
                tracing::error!("append to another tenant's stream refused by the store");
                Self::not_found(refusal!("no_stream", "no such stream"))
            }
            e => {
                tracing::error!(error = %e, "store error");
                Self::new(Kind::Unavailable, refusal!("store_unavailable", "the event store is unavailable"))
            }
        }
    }
}

/// The catalog key of an aggregate's state as [`DomainError::NotAllowed`]
/// names it, if the catalog has one.
fn state_key(aggregate: &str, state: &str) -> Option<&'static str> {
    Some(match (aggregate, state) {
        ("session", "not started") => "common.status_not_started",
        ("session", "with the bot") => "common.status_with_bot",
        ("session", "queued") => "common.status_queued",
        ("session", "offered to an agent") => "common.status_offered",
        ("session", "assigned") => "common.status_assigned",
        ("session", "in a call") => "common.status_in_call",
        ("session", "in wrap-up") => "common.status_wrap_up",
        ("session", "closed") => "common.status_closed",
        ("ticket", "not created") => "common.ticket_not_created",
        ("ticket", "open") => "common.ticket_open",
        ("ticket", "inprogress") => "common.ticket_in_progress",
        ("ticket", "resolved") => "common.ticket_resolved",
        ("ticket", "closed") => "common.ticket_closed",
        _ => return None,
    })
}

/// The rules' refusals, in the request's language: a state the session or
/// ticket is in (named in that language too), an offer someone else took, a
/// field's rule.
impl From<DomainError> for Error {
    fn from(e: DomainError) -> Self {
        match e {
            DomainError::NotAllowed { aggregate, command, state } => {
                let noun = match aggregate {
                    "session" => Some("common.noun_session"),
                    "ticket" => Some("common.noun_ticket"),
                    _ => None,
                };
                match (noun, state_key(aggregate, &state)) {
                    // `what` and `state` are also catalog keys: the API
                    // writes them in the error's language.
                    (Some(noun), Some(key)) => Self::keyed(
                        Kind::Conflict,
                        refusal!(
                            "not_allowed",
                            "{command} is not allowed while the {what} is {state}",
                            command = command,
                            what = aggregate,
                            state = state
                        ),
                        &[("what", noun), ("state", key)],
                    ),
                    _ => Self::new(
                        Kind::Conflict,
                        refusal!(
                            "not_allowed_now",
                            "{command} is not allowed while the {aggregate} is {state}",
                            command = command,
                            aggregate = aggregate,
                            state = state
                        ),
                    ),
                }
            }
            DomainError::NotTheAssignedAgent { .. } => {
                Self::new(Kind::Forbidden, refusal!("not_your_session", "you are not this session's agent"))
            }
            DomainError::UnknownOffer { .. } => Self::new(
                Kind::Conflict,
                refusal!(
                    "offer_gone",
                    "this offer is no longer open: another agent took the session, or it was withdrawn"
                ),
            ),
            DomainError::OfferExpired { .. } => Self::new(
                Kind::Conflict,
                refusal!("offer_expired", "this offer has expired: the session went back to the queue"),
            ),
            DomainError::Invalid(refusal) => Self::new(Kind::Unprocessable, refusal),
        }
    }
}

impl From<ExecuteError> for Error {
    fn from(e: ExecuteError) -> Self {
        match e {
            ExecuteError::Domain(e) => e.into(),
            ExecuteError::Store(e) => e.into(),
            ExecuteError::Decode(e) => {
                tracing::error!(error = %e, "stored event cannot be decoded");
                Self::event_unreadable()
            }
        }
    }
}
