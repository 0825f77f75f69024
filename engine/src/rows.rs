//! Turning a stored row back into a [`RecordedEvent`], for both backends.

use chrono::{DateTime, Utc};
use uuid::Uuid;
use witness_schemas::{Actor, RecordedEvent};

use crate::StoreError;

/// The envelope columns, in the SELECT order both backends use.
pub(crate) const COLUMNS: &str = "position, event_id, tenant_id, stream_id, stream_version, event_type, \
     schema_version, occurred_at, recorded_at, actor_kind, actor_id, correlation_id, causation_id, payload, \
     prev_hash, hash";

/// One row as read, before its text fields are parsed.
pub(crate) struct RawRow {
    pub position: i64,
    pub commit: i64,
    pub event_id: Uuid,
    pub tenant_id: String,
    pub stream_id: String,
    pub stream_version: i64,
    pub event_type: String,
    pub schema_version: i32,
    pub occurred_at: DateTime<Utc>,
    pub recorded_at: DateTime<Utc>,
    pub actor_kind: String,
    pub actor_id: Option<String>,
    pub correlation_id: Uuid,
    pub causation_id: Option<Uuid>,
    pub payload: String,
    pub prev_hash: Vec<u8>,
    pub hash: Vec<u8>,
}

impl RawRow {
    /// Parses the row. A row altered into something unparseable (an invalid
    /// tenant, a 31-byte hash) is reported with its position.
    pub fn into_event(self) -> Result<RecordedEvent, StoreError> {
        let position = self.position as u64;
        let corrupt = |message: String| StoreError::CorruptRow { position, message };
        let hash32 = |name: &str, v: Vec<u8>| -> Result<[u8; 32], StoreError> {
            v.try_into().map_err(|v: Vec<u8>| corrupt(format!("{name} has {} bytes, not 32", v.len())))
        };
        Ok(RecordedEvent {
            position,
            commit: self.commit as u64,
            event_id: self.event_id,
            tenant_id: self.tenant_id.parse().map_err(|e| corrupt(format!("{e}")))?,
            stream_id: self.stream_id.parse().map_err(|e| corrupt(format!("{e}")))?,
            stream_version: u64::try_from(self.stream_version)
                .map_err(|_| corrupt("negative stream_version".into()))?,
            event_type: self.event_type,
            schema_version: u32::try_from(self.schema_version)
                .map_err(|_| corrupt("negative schema_version".into()))?,
            occurred_at: self.occurred_at,
            recorded_at: self.recorded_at,
            actor: Actor { kind: self.actor_kind.parse().map_err(|e| corrupt(format!("{e}")))?, id: self.actor_id },
            correlation_id: self.correlation_id,
            causation_id: self.causation_id,
            payload: self.payload,
            prev_hash: hash32("prev_hash", self.prev_hash)?,
            hash: hash32("hash", self.hash)?,
        })
    }
}
