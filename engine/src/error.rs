use witness_schemas::{SchemaError, StreamId, TenantId};

use crate::ExpectedVersion;

/// Why the event store refused or failed an operation. On every error of an
/// append, nothing was written.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The stream moved on since the caller read it: reload and decide again.
    #[error("concurrency conflict on {stream}: expected version {expected}, stream is at {actual}")]
    Concurrency { stream: StreamId, expected: ExpectedVersion, actual: u64 },
    /// An event in the batch is not a valid event (unknown type, wrong
    /// version, malformed payload).
    #[error("event {index} ({event_type}) refused: {source}")]
    InvalidEvent {
        index: usize,
        event_type: String,
        #[source]
        source: SchemaError,
    },
    #[error("{stream} belongs to another tenant than {tenant}")]
    WrongTenant { stream: StreamId, tenant: TenantId },
    /// Some, but not all, of the batch's event ids are already stored: the
    /// batch is neither new nor a retry of a stored one.
    #[error("event id {event_id} is already stored, but the batch differs from the stored one")]
    IdempotencyConflict { event_id: uuid::Uuid },
    #[error("invalid append: {0}")]
    InvalidAppend(String),
    #[error("unsupported database URL {0:?}: use sqlite://PATH or postgres://…")]
    UnsupportedUrl(String),
    /// What this backend does not do, and what to use instead.
    #[error("{0}")]
    NotOnThisBackend(String),
    #[error("stored row at position {position} cannot be read: {message}")]
    CorruptRow { position: u64, message: String },
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("SQLite error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("io error: {0}")]
    Io(#[from] std::io::Error),
    #[error("signing key {path}: {message}")]
    Key { path: String, message: String },
}
