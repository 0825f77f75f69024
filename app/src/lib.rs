//! Witness's application layer: the use cases over the store that more
//! than one front calls — the HTTP API (`witness-api`) and the command line
//! (`witness`) — as plain async functions that take typed inputs and return
//! typed results or an [`Error`]. No HTTP here: `api` maps an [`Error`]'s
//! [`Kind`] to a status and translates its refusal; the CLI prints it.
//!
//! * [`tenant`] — a tenant's directory, the commands on its stream, its
//!   accounts; [`credentials`] — passwords.
//! * [`session`] — a session as a party to it may see it, and commands
//!   run on it as them (an agent's only as the session's agent).
//! * [`retention`] — the sweep: what retention no longer keeps is deleted,
//!   recorded first, and personal data erased.
//! * [`uploads`] — the content-addressed store of files sent in chat.
//! * [`media`] — what the media server reports, written into sessions.
//! * [`audit`] — the tenant's access log.
//! * [`error`] — what a use case refuses; the store's and the deciders'
//!   errors worded once.
//!
//! The use cases built on [`session`] (a session's messages, hand-overs,
//! the bot's turn, calls, dual recordings, face checks) still live in
//! `api`'s handlers; docs/ARCHITECTURE.md says which way they move.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let store = witness_engine::EventStore::connect("sqlite://data/witness.db").await?;
//! let tenant: witness_schemas::TenantId = "demo".parse().expect("a tenant id");
//! let directory = witness_app::tenant::directory(&store, &tenant).await?;
//! println!("{} users", directory.users.len());
//! # Ok(()) }
//! ```

pub mod audit;
pub mod credentials;
pub mod error;
pub mod media;
pub mod retention;
pub mod session;
pub mod tenant;
pub mod uploads;

pub use error::{Error, Kind};
