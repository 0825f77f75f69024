//! Witness's rules, pure: no IO, no clock, no database. Depends on
//! `witness-schemas` (the events) only.
//!
//! * Deciders — each aggregate (a [`session`], an [`agent`], a [`ticket`],
//!   a [`tenant`]) is a [`Decider`]: `decide(&state, command) ->
//!   Result<Vec<Event>, DomainError>` says what happens, `evolve(state,
//!   &event) -> state` says what it means. Time arrives inside commands
//!   (`at`). Loading a stream, folding it, deciding and appending is
//!   `witness_engine::executor`'s job; because the decision is made on the
//!   state the append is checked against, a rule written here (such as
//!   "only the session's agent may …") holds under races.
//! * [`routing`] — which agent is offered which waiting session, as a pure
//!   state machine over the agents' and sessions' events.
//! * [`qa`] — a tenant's automatic QA rules checked over a session's events.
//! * [`harness`] — given / when / then for deciders' tests.
//! * [`Refusal`] and [`refusal!`] — a refusal a person may read, with a
//!   stable code the API translates.
//!
//! ```
//! use witness_domain::session::{Session, SessionCommand, SessionStatus};
//! use witness_domain::Decider;
//! use witness_schemas::{Channel, SessionId};
//!
//! let start = SessionCommand::Start {
//!     session_id: SessionId::new(),
//!     channel: Channel::Web,
//!     business_type: "cards".into(),
//!     customer_ref: "visitor-1".into(),
//!     locale: None,
//! };
//! let events = Session::decide(&Default::default(), start).unwrap();
//! let state = Session::fold(&events);
//! assert_eq!(state.status(), SessionStatus::WithBot);
//! // Nobody has it yet: an agent's command is refused.
//! assert!(Session::decide(&state, SessionCommand::TimeOut.by_agent(witness_schemas::UserId::new())).is_err());
//! ```

pub mod agent;
pub mod harness;
pub mod qa;
pub mod routing;
pub mod session;
pub mod tenant;
pub mod ticket;

use witness_schemas::Event;

/// Why a command was refused. Nothing is appended when a decider refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    #[error("{command} is not allowed while the {aggregate} is {state}")]
    NotAllowed { aggregate: &'static str, command: &'static str, state: String },
    #[error("agent {agent} is not the agent of this session")]
    NotTheAssignedAgent { agent: String },
    #[error("offer {offer} is not the session's open offer")]
    UnknownOffer { offer: String },
    #[error("offer {offer} expired at {expires_at}")]
    OfferExpired { offer: String, expires_at: String },
    #[error("{0}")]
    Invalid(Refusal),
}

/// A refusal a person may read (a field's rule, a state the data is in):
/// a stable `code` — what programs match, and the key `error.CODE` under
/// which the message catalogs other than English translate it
/// (`api/i18n/`) — the English text, written where the refusal is made,
/// with `{name}` for each value, and the values. Made with [`refusal!`],
/// which checks at compile time that the text names exactly its values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub code: &'static str,
    /// The English text, `{name}` for each value.
    pub template: &'static str,
    pub values: Vec<(&'static str, String)>,
}

impl Refusal {
    /// This refusal with `name` set to `value`: for a value known only
    /// where the refusal is passed on (the field a checker was given).
    pub fn with(mut self, name: &'static str, value: impl std::fmt::Display) -> Self {
        self.values.retain(|(n, _)| *n != name);
        self.values.push((name, value.to_string()));
        self
    }

    /// `template` (this refusal's, or a translation of it) with each
    /// `{name}` replaced by its value.
    pub fn fill(&self, template: &str) -> String {
        self.values.iter().fold(template.to_owned(), |text, (name, value)| text.replace(&format!("{{{name}}}"), value))
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.fill(self.template))
    }
}

/// A [`Refusal`]: `refusal!("code", "English text naming {a} and {b}", a =
/// …, b = …)`. The text must be one string literal naming each value as
/// `{name}` (no format specs): the compiler refuses a text that names a
/// value not given or leaves one unused, and `api`'s tests check that every
/// code has its translations with the same names.
#[macro_export]
macro_rules! refusal {
    ($code:literal, $template:literal $(, $name:ident = $value:expr)* $(,)?) => {{
        // Compile-time check only: the names in the text are the values.
        let _ = || format!($template $(, $name = $value)*);
        $crate::Refusal {
            code: $code,
            template: $template,
            values: vec![$((stringify!($name), ($value).to_string())),*],
        }
    }};
}

/// The rules of one kind of aggregate.
pub trait Decider {
    type State: Default + Clone + std::fmt::Debug;
    type Command: std::fmt::Debug;

    fn decide(state: &Self::State, command: Self::Command) -> Result<Vec<Event>, DomainError>;
    fn evolve(state: Self::State, event: &Event) -> Self::State;

    /// The state after `events`, from the default.
    fn fold<'a>(events: impl IntoIterator<Item = &'a Event>) -> Self::State {
        events.into_iter().fold(Self::State::default(), Self::evolve)
    }
}
