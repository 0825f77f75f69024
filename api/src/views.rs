//! What the API answers with, shared by several routes: a command's
//! result ([`Done`]) and an event as a caller sees it ([`EventView`]).

use serde::Serialize;
use witness_schemas::{mask_personal, Actor, RecordedEvent};

/// What a command route answers: the session's version after it.
#[derive(Serialize)]
pub(crate) struct Done {
    version: u64,
}

impl Done {
    pub(crate) fn new(version: u64) -> Self {
        Done { version }
    }
}

/// One event of a session as a caller sees it: `stream` and `version`
/// identify it. Its position in the log is left out, for staff too: it
/// counts every tenant's events, so comparing two would tell the whole
/// service's volume (issue 27, L6; see [`crate::cursor`]).
#[derive(Serialize)]
pub(crate) struct EventView {
    /// `session-<id>`, `agent-<id>`, `ticket-<id>`, `tenant-<slug>`.
    stream: String,
    version: u64,
    event_type: String,
    occurred_at: String,
    pub(crate) actor: Actor,
    pub(crate) payload: serde_json::Value,
}

impl EventView {
    pub fn new(e: &RecordedEvent, unmasked: bool) -> Self {
        let mut payload: serde_json::Value = serde_json::from_str(&e.payload).unwrap_or_default();
        if !unmasked {
            mask_personal(&mut payload);
        }
        Self {
            stream: e.stream_id.to_string(),
            version: e.stream_version,
            event_type: e.event_type.clone(),
            occurred_at: witness_engine::chain::time_text(&e.occurred_at),
            actor: e.actor.clone(),
            payload,
        }
    }
}
