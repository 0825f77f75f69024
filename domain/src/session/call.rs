//! Calls: starting and ending one, what the media server reports of it,
//! its recordings, their composites and who heard them.

use witness_schemas::*;

use super::{OnCall, Phase, Session, SessionCommand as C, SessionState};
use crate::{refusal, DomainError};

pub(super) fn decide(state: &SessionState, command: C) -> Result<Vec<Event>, DomainError> {
    let name = command.name();
    // Segments close and tracks fail as the recorder flushes, which may be
    // after the recording stopped: the latest recording still takes them.
    let latest_recording = |id: RecordingId| state.last_recording == Some(id);
    let events: Vec<Event> = match (&state.phase, command) {
        (Phase::Assigned { .. }, C::StartCall { agent_id, call_id, kind }) => {
            Session::check_agent(state, agent_id)?;
            vec![CallStarted { call_id, kind }.into()]
        }
        (Phase::InCall { call, .. }, C::EndCall { call_id, reason }) => {
            if call.call_id != call_id {
                return Err(DomainError::Invalid(refusal!(
                    "not_this_call",
                    "call {call_id} is not this session's call",
                    call_id = call_id
                )));
            }
            Session::end_call(call, reason)
        }
        (Phase::InCall { call, .. }, C::CallMedia { fact }) => vec![fact.event(call.call_id)],
        // Leaves and ended tracks are reported as the call closes.
        (_, C::CallMedia { fact }) if fact.after_end() => match state.last_call {
            Some(call_id) => vec![fact.event(call_id)],
            None => return Err(Session::refuse(state, name)),
        },
        (
            Phase::InCall { call: OnCall { call_id, recording: None, .. }, .. },
            C::StartRecording { recording_id, reason },
        ) => {
            vec![RecordingStarted { recording_id, call_id: *call_id, reason }.into()]
        }
        (_, C::CloseSegment { segment }) if latest_recording(segment.recording_id) => vec![segment.into()],
        (_, C::InterruptRecording { interruption }) if latest_recording(interruption.recording_id) => {
            vec![interruption.into()]
        }
        (_, C::StopRecording { recording_id }) if state.recording() == Some(recording_id) => {
            vec![RecordingStopped { recording_id }.into()]
        }
        (_, C::Composite { composite }) => {
            if !state.recordings.contains(&composite.recording_id) {
                return Err(not_this_recording(composite.recording_id));
            }
            vec![composite.into()]
        }
        (_, C::AccessRecording { recording_id, access, user_id, range }) => {
            if !state.recordings.contains(&recording_id) {
                return Err(not_this_recording(recording_id));
            }
            vec![RecordingAccessed { recording_id, access, user_id, range }.into()]
        }
        _ => return Err(Session::refuse(state, name)),
    };
    Ok(events)
}

fn not_this_recording(recording_id: RecordingId) -> DomainError {
    DomainError::Invalid(refusal!(
        "not_this_recording",
        "recording {recording_id} is not this session's",
        recording_id = recording_id
    ))
}
