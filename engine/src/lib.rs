//! The Witness engine: where events are decided and stored.
//!
//! It holds the event store (SQLite, PostgreSQL), the hash chain and signed
//! checkpoints, crypto-shredding, the deciders (`domain`), the command
//! executor, routing, and the Kafka relay and feed (see
//! docs/ARCHITECTURE.md; issue 31 moves the deciders to a crate of their own).
//!
//! * [`EventStore`] — `append(tenant, stream, expected_version, events)`
//!   with optimistic concurrency ([`StoreError::Concurrency`]) and
//!   idempotency on `event_id`; `read_stream`; `read_all(after, limit)` in
//!   one gap-free global order; `subscribe(after)` = catch-up then live.
//!   Backends: SQLite (`sqlite://PATH`, the default) and PostgreSQL
//!   (`postgres://…`), chosen by URL.
//! * [`chain`] — the per-stream hash chain computed in the append
//!   transaction, and the Merkle root used by signed [`checkpoint`]s.
//!
//! Every append validates its events against the schema registry
//! ([`witness_schemas::validate_new`]) before touching the database: an
//! unknown type, an old or future schema version or a malformed payload is
//! refused and nothing is written.
//!
//! ```no_run
//! # async fn demo() -> Result<(), witness_engine::StoreError> {
//! use witness_engine::EventStore;
//! use witness_schemas::Cursor;
//!
//! let store = EventStore::connect("sqlite://data/witness.db").await?;
//! let mut feed = store.subscribe(Cursor::START);
//! loop {
//!     let event = feed.next().await?;
//!     println!("{} {} {}", event.position, event.stream_id, event.event_type);
//! }
//! # }
//! ```

pub mod chain;
pub mod checkpoint;
pub mod domain;
mod error;
pub mod executor;
pub mod kafka;
mod postgres;
pub mod qa;
pub mod routing;
mod rows;
pub mod shred;
mod sqlite;
mod store;
mod subscription;
pub mod workload;

pub use checkpoint::{Checkpoint, CheckpointSigner};
pub use error::StoreError;
pub use sqlite::wait_when_busy;
pub use store::{AppendResult, EventStore, ExpectedVersion, DEFAULT_DATABASE_URL, MAX_BATCH};
pub use subscription::Subscription;
