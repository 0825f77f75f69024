//! The Witness engine: where events are stored, and where a decision is
//! turned into appended events.
//!
//! It holds the event store (SQLite, PostgreSQL), the hash chain and signed
//! checkpoints, crypto-shredding, the command [`executor`] (load a stream,
//! fold it, let a `witness_domain` decider decide, append under optimistic
//! concurrency), and the Kafka relay and feed. The rules themselves —
//! deciders, routing, QA — are `witness_domain`'s, which does no IO; see
//! docs/ARCHITECTURE.md.
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
mod error;
pub mod executor;
pub mod kafka;
mod postgres;
mod rows;
pub mod shred;
mod sqlite;
mod store;
mod subscription;

pub use checkpoint::{Checkpoint, CheckpointSigner};
pub use error::StoreError;
pub use sqlite::wait_when_busy;
pub use store::{AppendResult, EventStore, ExpectedVersion, DEFAULT_DATABASE_URL, MAX_BATCH};
pub use subscription::Subscription;
