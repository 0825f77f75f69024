//! Witness replay tools: look back at the log and prove it is intact.
//!
//! * [`replay::replay_session`] rebuilds a session's timeline and state as
//!   of any moment (`witness replay session ID --at TIME`).
//! * [`verify::verify_store`], behind `witness verify`, walks the whole log
//!   re-computing every per-stream hash chain link, then re-computes the
//!   Merkle root of every signed checkpoint and checks its signature.
//!
//! * [`backup`], behind `witness backup` and `witness restore`, copies the
//!   embedded store with its keys and files, and brings it back.
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

pub mod backup;
pub mod package;
pub mod replay;
pub mod verify;
