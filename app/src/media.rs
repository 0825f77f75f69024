//! What the media server saw and recorded, written into each call's
//! session: joins, leaves and tracks (`CallMedia`), closed segments with
//! their hashes (`CloseSegment`) and recorders that failed
//! (`InterruptRecording`). Run beside the server (`witness serve`) and the
//! media self-test (`witness media loopback`).

use chrono::Utc;
use tokio::sync::mpsc;
use witness_domain::session::{CallFact, Session, SessionCommand};
use witness_engine::executor::execute;
use witness_media::server::Report;
use witness_media::sfu::MediaEvent;
use witness_schemas::*;

/// Writes what the media server saw and recorded into each session's
/// record, until the server is dropped.
pub async fn record(store: witness_engine::EventStore, mut reports: mpsc::UnboundedReceiver<Report>) {
    // A session's tenant never changes: read it once per call's session,
    // not once per report (the command reads the stream anyway).
    let mut tenants: std::collections::HashMap<SessionId, witness_schemas::TenantId> = Default::default();
    while let Some(report) = reports.recv().await {
        if let Report::Media(MediaEvent::RoomClosed { room }) = &report {
            // Segments flushed after this read the tenant again.
            if let Ok(session) = room.parse::<SessionId>() {
                tenants.remove(&session);
            }
            continue;
        }
        let (room, command) = match report {
            Report::Media(event) => {
                let (room, fact) = match event {
                    MediaEvent::ParticipantJoined { room, participant, role } => {
                        (room, CallFact::ParticipantJoined { participant_id: participant, role })
                    }
                    MediaEvent::ParticipantLeft { room, participant, reason } => {
                        (room, CallFact::ParticipantLeft { participant_id: participant, reason })
                    }
                    MediaEvent::TrackPublished { room, participant, track, kind, codec } => {
                        (room, CallFact::TrackPublished { participant_id: participant, track_id: track, kind, codec })
                    }
                    MediaEvent::TrackUnpublished { room, participant, track } => {
                        (room, CallFact::TrackUnpublished { participant_id: participant, track_id: track })
                    }
                    _ => continue,
                };
                (room, SessionCommand::CallMedia { fact })
            }
            Report::SegmentClosed { room, recording, track, index, file, bytes, duration_ms, sha256 } => {
                let (Ok(recording_id), Ok(sha256)) = (recording.parse::<RecordingId>(), Sha256Hex::try_from(sha256))
                else {
                    continue;
                };
                let segment = RecordingSegmentClosed {
                    recording_id,
                    track_id: track,
                    segment_index: index,
                    file,
                    bytes,
                    duration_ms,
                    sha256,
                };
                (room, SessionCommand::CloseSegment { segment })
            }
            Report::RecordingFailed { room, recording, track, error, resumed } => {
                tracing::error!(recording = %recording, error = %error, resumed, "a track's recorder failed");
                let Ok(recording_id) = recording.parse::<RecordingId>() else { continue };
                let error: String = error.chars().take(500).collect();
                let interruption = RecordingInterrupted { recording_id, track_id: track, error, resumed };
                (room, SessionCommand::InterruptRecording { interruption })
            }
        };
        let Ok(session) = room.parse::<SessionId>() else { continue };
        let stream = StreamId::session(session);
        let tenant = match tenants.get(&session) {
            Some(tenant) => tenant.clone(),
            None => match store.read_stream(&stream, 1).await {
                Ok(events) => match events.first() {
                    Some(first) => tenants.entry(session).or_insert_with(|| first.tenant_id.clone()).clone(),
                    None => continue,
                },
                Err(e) => {
                    tracing::warn!(error = %e, "could not read a call's session");
                    continue;
                }
            },
        };
        if let Err(e) = execute::<Session>(&store, &tenant, &stream, &Actor::system(), Utc::now(), command).await {
            tracing::warn!(error = %e, "media report not recorded");
        }
    }
}
