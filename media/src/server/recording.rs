//! Recording orchestration: a recorded room's tracks each get a recorder
//! (built off the forwarding path, on the runtime's blocking threads), fed
//! from the media thread without waiting, rotated into a new file when a
//! video's picture size changes, and closed when the recording stops.
//! Where the files go is [`crate::layout`]'s.

use super::*;

impl Recording {
    /// Closes every track's last file (and the files before it, a
    /// recorder's start waiting for the previous recorder's close);
    /// returns once all are reported.
    pub(super) async fn finish(self) {
        let closing: Vec<_> = self.tracks.into_values().map(|track| tokio::spawn(track.close())).collect();
        for task in closing {
            let _ = task.await;
        }
    }
}

impl TrackState {
    /// Closes the track's file; returns once it is reported. A recorder
    /// still starting is waited for and writes the packets that waited
    /// for it first: they are the call's, whatever happened meanwhile.
    pub(super) async fn close(self) {
        match self {
            TrackState::Running(recorder) => stop_recorders(vec![recorder]).await,
            TrackState::Starting { task, pending, .. } => {
                if let Ok(Some(recorder)) = task.await {
                    for bytes in pending {
                        recorder.push(bytes);
                    }
                    stop_recorders(vec![recorder]).await;
                }
            }
            TrackState::Failed => {}
        }
    }
}

impl MediaThread {
    /// Hands a packet to the track's recorder, starting one on the track's
    /// first packet (its payload type known then) and anew when a video
    /// keyframe changes the picture size (another simulcast layer, or the
    /// browser scaling its camera down under load): a WebM file holds one
    /// size, so the track goes on in its next file. A recorder is built on
    /// a blocking thread ([`Shared::recorder_started`]), never here: this is
    /// the forwarding path.
    pub(super) fn record(&mut self, room: &str, track: &str, packet: &rtc::rtp::Packet) {
        use rtc::shared::marshal::Marshal;
        let Ok(bytes) = packet.marshal() else { return };
        let shared = &self.shared;
        let mut recordings = shared.recordings.lock().expect("recordings poisoned");
        let Some(recording) = recordings.get_mut(room) else { return };
        let size = vp8_keyframe_size(&packet.payload);
        // The recorder of the previous file, if the picture size changed.
        let mut previous = None;
        if let (Some(current), Some(new)) = (recording.sizes.get_mut(track), size) {
            if *current != new {
                tracing::info!(track, from = ?*current, to = ?new, "picture size changed: the track's recording goes on in a new file");
                *current = new;
                previous = recording.tracks.remove(track);
            }
        }
        match recording.tracks.get_mut(track) {
            Some(TrackState::Running(recorder)) => {
                let recorder = recorder.clone();
                drop(recordings);
                recorder.push(bytes);
            }
            Some(TrackState::Starting { pending, .. }) => pending.push(bytes),
            Some(TrackState::Failed) => {}
            None => {
                let Some(codec) = self.published.get(&(room.to_owned(), track.to_owned())).map(|p| p.codec.clone())
                else {
                    return;
                };
                if codec.mime_type.eq_ignore_ascii_case("video/vp8") {
                    // (The core hands a recorder a keyframe first.)
                    recording.sizes.entry(track.to_owned()).or_insert(size.unwrap_or_default());
                }
                let start = shared.recorder_starts.fetch_add(1, Ordering::Relaxed);
                let numbers = recording.numbers.entry(track.to_owned()).or_default().clone();
                let (builder, room, id, track_id) =
                    (shared.clone(), room.to_owned(), recording.id.clone(), track.to_owned());
                let payload_type = packet.header.payload_type;
                let commands = self.commands.clone();
                let task = shared.runtime.spawn(async move {
                    // The previous file is closed first, so that it has the
                    // lower number even when its recorder was still starting.
                    if let Some(previous) = previous {
                        previous.close().await;
                    }
                    // Waits for `recordings`, held here until the track is marked.
                    tokio::task::spawn_blocking(move || {
                        builder.recorder_started(&room, &id, &track_id, start, &codec, payload_type, &numbers, commands)
                    })
                    .await
                    .ok()
                    .flatten()
                });
                recording.tracks.insert(track.to_owned(), TrackState::Starting { start, pending: vec![bytes], task });
            }
        }
    }
}

impl Shared {
    /// Builds a track's recorder (blocking) and puts it to work with the
    /// packets that came meanwhile — unless the track's recording was
    /// stopped or went on in a new file in the meantime: then the recorder
    /// is returned, for whoever closes the start ([`TrackState::close`]).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn recorder_started(
        &self,
        room: &str,
        recording: &str,
        track: &str,
        start: u64,
        codec: &RTCRtpCodec,
        payload_type: u8,
        numbers: &SegmentNumbers,
        commands: mpsc::WeakUnboundedSender<Command>,
    ) -> Option<Arc<TrackRecorder>> {
        let recorder = self.start_recorder(room, recording, track, codec, payload_type, numbers, commands);
        let mut recordings = self.recordings.lock().expect("recordings poisoned");
        let slot = recordings
            .get_mut(room)
            .and_then(|r| r.tracks.get_mut(track))
            .filter(|state| matches!(state, TrackState::Starting { start: s, .. } if *s == start));
        match (slot, recorder) {
            (Some(slot), Some(recorder)) => {
                if let TrackState::Starting { pending, .. } =
                    std::mem::replace(slot, TrackState::Running(recorder.clone()))
                {
                    // In order, before any later packet (`recordings` is held).
                    for bytes in pending {
                        recorder.push(bytes);
                    }
                }
                None
            }
            (Some(slot), None) => {
                *slot = TrackState::Failed;
                None
            }
            (None, recorder) => recorder,
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn start_recorder(
        &self,
        room: &str,
        recording: &str,
        track: &str,
        codec: &RTCRtpCodec,
        payload_type: u8,
        numbers: &SegmentNumbers,
        commands: mpsc::WeakUnboundedSender<Command>,
    ) -> Option<Arc<TrackRecorder>> {
        let relative = crate::layout::track_dir(recording, track);
        let dir = self.config.recordings_dir.join(&relative);
        let (events, root) = (self.events.clone(), self.config.recordings_dir.clone());
        let (room_id, recording_id, track_id) = (room.to_owned(), recording.to_owned(), track.to_owned());
        let on_segment = move |segment: Result<Segment, RecorderError>| {
            let report = match segment {
                Ok(s) => Report::SegmentClosed {
                    room: room_id.clone(),
                    recording: recording_id.clone(),
                    track: track_id.clone(),
                    index: s.index,
                    file: s
                        .path
                        .strip_prefix(&root)
                        .unwrap_or(&s.path)
                        .components()
                        .map(|c| c.as_os_str().to_string_lossy())
                        .collect::<Vec<_>>()
                        .join("/"),
                    bytes: s.bytes,
                    duration_ms: s.duration_ms,
                    sha256: s.sha256,
                },
                Err(e) => Report::RecordingFailed {
                    room: room_id.clone(),
                    recording: recording_id.clone(),
                    track: track_id.clone(),
                    resumed: matches!(e, RecorderError::Interrupted { resumed: true, .. }),
                    error: e.to_string(),
                },
            };
            let _ = events.send(report);
        };
        let (room_id, track_id) = (room.to_owned(), track.to_owned());
        let keyframe_wanted = move || {
            if let Some(commands) = commands.upgrade() {
                let _ = commands.send(Command::KeyframeWanted { room: room_id.clone(), track: track_id.clone() });
            }
        };
        // (Its first video packet starts a keyframe: the core's recording
        // forwarder waits for one.)
        match TrackRecorder::new(
            &dir,
            &codec.mime_type,
            payload_type,
            numbers,
            self.config.segment,
            on_segment,
            keyframe_wanted,
        ) {
            Ok(r) => Some(Arc::new(r)),
            Err(e) => {
                let _ = self.events.send(Report::RecordingFailed {
                    room: room.to_owned(),
                    recording: recording.to_owned(),
                    track: track.to_owned(),
                    error: e.to_string(),
                    resumed: false,
                });
                None
            }
        }
    }
}

/// Stops recorders off the runtime (each waits for its last segment).
pub(super) async fn stop_recorders(recorders: Vec<Arc<TrackRecorder>>) {
    let stopping: Vec<_> = recorders
        .into_iter()
        .map(|recorder| {
            tokio::task::spawn_blocking(move || {
                // The packet loop may still hold a clone for a moment.
                let mut recorder = recorder;
                for _ in 0..100 {
                    match Arc::try_unwrap(recorder) {
                        Ok(r) => return r.stop(),
                        Err(shared) => recorder = shared,
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
                tracing::warn!("a recorder was still in use when stopped; its last segment is lost");
            })
        })
        .collect();
    for task in stopping {
        let _ = task.await;
    }
}
