//! Witness projections: the read models built from the event log.
//!
//! Nothing lives here yet. This crate will hold the projection trait and its
//! checkpointing (checkpoint written in the same transaction as the rows), the
//! read models (agent queues, session timeline, `sessions`, audit trail, QA
//! views, tickets), `rebuild`, and the Arrow/DataFusion reports and Parquet
//! export. See `ARCHITECTURE.md` ("Crates and folders").
