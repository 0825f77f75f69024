//! Witness replay tools: look back at the log and prove it is intact.
//!
//! Today: [`verify::verify_store`], behind `witness verify`, which walks the
//! whole log re-computing every per-stream hash chain link, then re-computes
//! the Merkle root of every signed checkpoint and checks its signature.
//! Replaying a session as of a time, rebuilding projections and exporting
//! audit trails join it in later work.
//!
//! ```no_run
//! # async fn demo() -> Result<(), witness_engine::StoreError> {
//! let store = witness_engine::EventStore::connect("sqlite://data/witness.db").await?;
//! let report = witness_replay::verify::verify_store(&store, None, |_| {}).await?;
//! match report.first_problem() {
//!     None => println!("{} events intact", report.events),
//!     Some(p) => println!("first bad position: {:?}: {}", p.position, p.message),
//! }
//! # Ok(()) }
//! ```

pub mod verify;
