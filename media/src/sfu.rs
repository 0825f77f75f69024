//! The SFU core: rooms, participants and tracks, without sockets, locks or
//! clocks.
//!
//! Feed it [`Input`]s with the time they happened ([`Sfu::handle_input`]),
//! then drain [`Sfu::poll_output`] until it returns [`Output::Timeout`]: the
//! instant at which it wants [`Input::Timeout`] next. Every forwarding
//! decision (who receives which packet, when a publisher is asked for a
//! keyframe, when a silent track is reported stalled) is made here, so it is
//! tested on simulated time; the driver only moves bytes and SDP.
//!
//! The core is generic over the packet it forwards (`P`): the driver passes
//! `rtp::Packet`s (whose payload is reference-counted, so a clone per
//! subscriber copies no media), tests pass small values.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use witness_schemas::{ParticipantRole, TrackKind};

/// A keyframe request to a publisher is sent at most this often per track:
/// a burst of subscribers or lost packets must not make the encoder emit a
/// keyframe per request (each is many times a delta frame's size).
pub const KEYFRAME_REQUEST_INTERVAL: Duration = Duration::from_millis(500);

/// A published track that carries no packet for this long is reported
/// stalled (the customer's network dropped, the tab was suspended).
pub const STALL_AFTER: Duration = Duration::from_secs(5);

/// What happened, as the driver saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input<P> {
    /// A participant's connection is up in `room`.
    Join { room: String, participant: String, role: ParticipantRole },
    /// A participant hung up or its connection failed; its tracks go with it.
    Leave { room: String, participant: String, reason: Option<String> },
    /// A participant started sending a track.
    Publish { room: String, participant: String, track: String, kind: TrackKind, codec: String },
    /// A participant stopped sending a track (screen share ended).
    Unpublish { room: String, participant: String, track: String },
    /// One media packet of a published track; `keyframe` if it starts one.
    Media { room: String, track: String, packet: P, keyframe: bool },
    /// A subscriber lost the picture (its decoder asked for a keyframe).
    KeyframeWanted { room: String, track: String },
    /// The instant [`Output::Timeout`] asked for (or any later one).
    Timeout,
}

/// What the driver must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output<P> {
    /// Send `packet` of `track` to participant `to`.
    Transmit { room: String, to: String, track: String, packet: P },
    /// Something the session's record should say.
    Event(MediaEvent),
    /// Nothing more now; call again with [`Input::Timeout`] at this instant
    /// (`None`: nothing is pending).
    Timeout(Option<Instant>),
}

/// Changes worth recording (as session events) or showing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaEvent {
    ParticipantJoined {
        room: String,
        participant: String,
        role: ParticipantRole,
    },
    ParticipantLeft {
        room: String,
        participant: String,
        reason: Option<String>,
    },
    TrackPublished {
        room: String,
        participant: String,
        track: String,
        kind: TrackKind,
        codec: String,
    },
    TrackUnpublished {
        room: String,
        participant: String,
        track: String,
    },
    /// Start sending `track` to `subscriber` (the driver adds a sender and
    /// renegotiates the subscriber's connection).
    Subscribed {
        room: String,
        subscriber: String,
        track: String,
        kind: TrackKind,
        codec: String,
    },
    /// Stop sending `track` to `subscriber`.
    Unsubscribed {
        room: String,
        subscriber: String,
        track: String,
    },
    /// Ask the publisher of `track` for a keyframe (an RTCP PLI).
    KeyframeRequested {
        room: String,
        track: String,
    },
    /// `track` carried no packet for [`STALL_AFTER`].
    TrackStalled {
        room: String,
        track: String,
    },
    /// A stalled track carries packets again.
    TrackResumed {
        room: String,
        track: String,
    },
    /// The last participant left; the room is gone.
    RoomClosed {
        room: String,
    },
}

/// Why an input was refused. Refused inputs change nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SfuError {
    #[error("no room `{0}`")]
    NoRoom(String),
    #[error("`{participant}` is not in room `{room}`")]
    NotInRoom { room: String, participant: String },
    #[error("`{participant}` is already in room `{room}`")]
    AlreadyJoined { room: String, participant: String },
    #[error("track `{track}` is already published in room `{room}`")]
    TrackExists { room: String, track: String },
    #[error("no track `{track}` in room `{room}`")]
    NoTrack { room: String, track: String },
}

/// Counters of one track, for stats and benchmarks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TrackStats {
    pub received_packets: u64,
    pub forwarded_packets: u64,
    pub keyframe_requests: u64,
}

#[derive(Debug)]
struct Track {
    owner: String,
    kind: TrackKind,
    codec: String,
    stats: TrackStats,
    last_packet: Instant,
    stalled: bool,
    /// When the last keyframe request went out, and whether another is
    /// owed once the interval has passed.
    last_keyframe_request: Option<Instant>,
    keyframe_owed: bool,
    /// Subscribers that have not yet seen a keyframe: a video decoder
    /// cannot start on delta frames, so they get nothing until one comes.
    waiting_for_keyframe: Vec<String>,
}

#[derive(Debug, Default)]
struct Room {
    participants: BTreeMap<String, ParticipantRole>,
    tracks: BTreeMap<String, Track>,
}

/// The SFU state machine. See the module documentation for the run loop.
#[derive(Debug)]
pub struct Sfu<P> {
    rooms: BTreeMap<String, Room>,
    out: VecDeque<Output<P>>,
    now: Instant,
}

impl<P: Clone> Sfu<P> {
    pub fn new(now: Instant) -> Self {
        Sfu { rooms: BTreeMap::new(), out: VecDeque::new(), now }
    }

    /// Applies one input that happened at `now`. On error nothing changed.
    pub fn handle_input(&mut self, now: Instant, input: Input<P>) -> Result<(), SfuError> {
        self.now = self.now.max(now);
        match input {
            Input::Join { room, participant, role } => self.join(room, participant, role),
            Input::Leave { room, participant, reason } => self.leave(&room, &participant, reason),
            Input::Publish { room, participant, track, kind, codec } => {
                self.publish(room, participant, track, kind, codec)
            }
            Input::Unpublish { room, participant, track } => self.unpublish(&room, &participant, &track),
            Input::Media { room, track, packet, keyframe } => self.media(&room, &track, packet, keyframe),
            Input::KeyframeWanted { room, track } => {
                self.track_mut(&room, &track)?;
                self.request_keyframe(&room, &track);
                Ok(())
            }
            Input::Timeout => {
                self.timeout();
                Ok(())
            }
        }
    }

    /// The next thing to do; ends each batch with [`Output::Timeout`].
    pub fn poll_output(&mut self) -> Output<P> {
        self.out.pop_front().unwrap_or_else(|| Output::Timeout(self.next_timeout()))
    }

    /// Participants of `room`, by id.
    pub fn participants(&self, room: &str) -> Vec<(String, ParticipantRole)> {
        self.rooms
            .get(room)
            .map(|r| r.participants.iter().map(|(p, role)| (p.clone(), *role)).collect())
            .unwrap_or_default()
    }

    pub fn track_stats(&self, room: &str, track: &str) -> Option<TrackStats> {
        self.rooms.get(room)?.tracks.get(track).map(|t| t.stats)
    }

    pub fn room_count(&self) -> usize {
        self.rooms.len()
    }

    fn emit(&mut self, event: MediaEvent) {
        self.out.push_back(Output::Event(event));
    }

    fn track_mut(&mut self, room: &str, track: &str) -> Result<&mut Track, SfuError> {
        let r = self.rooms.get_mut(room).ok_or_else(|| SfuError::NoRoom(room.to_owned()))?;
        r.tracks.get_mut(track).ok_or_else(|| SfuError::NoTrack { room: room.to_owned(), track: track.to_owned() })
    }

    fn join(&mut self, room: String, participant: String, role: ParticipantRole) -> Result<(), SfuError> {
        let r = self.rooms.entry(room.clone()).or_default();
        if r.participants.contains_key(&participant) {
            return Err(SfuError::AlreadyJoined { room, participant });
        }
        r.participants.insert(participant.clone(), role);
        // The newcomer receives every track already published.
        let existing: Vec<(String, TrackKind, String)> =
            r.tracks.iter().map(|(id, t)| (id.clone(), t.kind, t.codec.clone())).collect();
        self.emit(MediaEvent::ParticipantJoined { room: room.clone(), participant: participant.clone(), role });
        for (track, kind, codec) in existing {
            self.subscribe(&room, &participant, &track, kind, codec);
        }
        Ok(())
    }

    fn subscribe(&mut self, room: &str, subscriber: &str, track: &str, kind: TrackKind, codec: String) {
        if kind != TrackKind::Audio {
            if let Some(t) = self.rooms.get_mut(room).and_then(|r| r.tracks.get_mut(track)) {
                t.waiting_for_keyframe.push(subscriber.to_owned());
            }
        }
        self.emit(MediaEvent::Subscribed {
            room: room.to_owned(),
            subscriber: subscriber.to_owned(),
            track: track.to_owned(),
            kind,
            codec,
        });
        if kind != TrackKind::Audio {
            self.request_keyframe(room, track);
        }
    }

    fn leave(&mut self, room: &str, participant: &str, reason: Option<String>) -> Result<(), SfuError> {
        let r = self.rooms.get_mut(room).ok_or_else(|| SfuError::NoRoom(room.to_owned()))?;
        if r.participants.remove(participant).is_none() {
            return Err(SfuError::NotInRoom { room: room.to_owned(), participant: participant.to_owned() });
        }
        let owned: Vec<String> =
            r.tracks.iter().filter(|(_, t)| t.owner == participant).map(|(id, _)| id.clone()).collect();
        for t in r.tracks.values_mut() {
            t.waiting_for_keyframe.retain(|s| s != participant);
        }
        for track in owned {
            self.remove_track(room, &track);
        }
        self.emit(MediaEvent::ParticipantLeft { room: room.to_owned(), participant: participant.to_owned(), reason });
        if self.rooms.get(room).is_some_and(|r| r.participants.is_empty()) {
            self.rooms.remove(room);
            self.emit(MediaEvent::RoomClosed { room: room.to_owned() });
        }
        Ok(())
    }

    fn publish(
        &mut self,
        room: String,
        participant: String,
        track: String,
        kind: TrackKind,
        codec: String,
    ) -> Result<(), SfuError> {
        let now = self.now;
        let r = self.rooms.get_mut(&room).ok_or_else(|| SfuError::NoRoom(room.clone()))?;
        if !r.participants.contains_key(&participant) {
            return Err(SfuError::NotInRoom { room, participant });
        }
        if r.tracks.contains_key(&track) {
            return Err(SfuError::TrackExists { room, track });
        }
        let others: Vec<String> = r.participants.keys().filter(|p| **p != participant).cloned().collect();
        r.tracks.insert(
            track.clone(),
            Track {
                owner: participant.clone(),
                kind,
                codec: codec.clone(),
                stats: TrackStats::default(),
                last_packet: now,
                stalled: false,
                last_keyframe_request: None,
                keyframe_owed: false,
                waiting_for_keyframe: Vec::new(),
            },
        );
        self.emit(MediaEvent::TrackPublished {
            room: room.clone(),
            participant,
            track: track.clone(),
            kind,
            codec: codec.clone(),
        });
        for subscriber in others {
            self.subscribe(&room, &subscriber, &track, kind, codec.clone());
        }
        Ok(())
    }

    fn unpublish(&mut self, room: &str, participant: &str, track: &str) -> Result<(), SfuError> {
        let t = self.track_mut(room, track)?;
        if t.owner != participant {
            return Err(SfuError::NoTrack { room: room.to_owned(), track: track.to_owned() });
        }
        self.remove_track(room, track);
        Ok(())
    }

    fn remove_track(&mut self, room: &str, track: &str) {
        let Some(r) = self.rooms.get_mut(room) else { return };
        let Some(t) = r.tracks.remove(track) else { return };
        let subscribers: Vec<String> = r.participants.keys().filter(|p| **p != t.owner).cloned().collect();
        for subscriber in subscribers {
            self.emit(MediaEvent::Unsubscribed { room: room.to_owned(), subscriber, track: track.to_owned() });
        }
        self.emit(MediaEvent::TrackUnpublished {
            room: room.to_owned(),
            participant: t.owner,
            track: track.to_owned(),
        });
    }

    fn media(&mut self, room: &str, track: &str, packet: P, keyframe: bool) -> Result<(), SfuError> {
        let now = self.now;
        let r = self.rooms.get_mut(room).ok_or_else(|| SfuError::NoRoom(room.to_owned()))?;
        let t = r
            .tracks
            .get_mut(track)
            .ok_or_else(|| SfuError::NoTrack { room: room.to_owned(), track: track.to_owned() })?;
        t.stats.received_packets += 1;
        t.last_packet = now;
        let resumed = std::mem::replace(&mut t.stalled, false);
        if keyframe {
            t.waiting_for_keyframe.clear();
        }
        let mut sent = 0;
        for to in r.participants.keys() {
            if *to == t.owner || t.waiting_for_keyframe.contains(to) {
                continue;
            }
            self.out.push_back(Output::Transmit {
                room: room.to_owned(),
                to: to.clone(),
                track: track.to_owned(),
                packet: packet.clone(),
            });
            sent += 1;
        }
        t.stats.forwarded_packets += sent;
        if resumed {
            self.emit(MediaEvent::TrackResumed { room: room.to_owned(), track: track.to_owned() });
        }
        Ok(())
    }

    fn request_keyframe(&mut self, room: &str, track: &str) {
        let now = self.now;
        let Some(t) = self.rooms.get_mut(room).and_then(|r| r.tracks.get_mut(track)) else { return };
        if t.kind == TrackKind::Audio {
            return;
        }
        match t.last_keyframe_request {
            Some(at) if now < at + KEYFRAME_REQUEST_INTERVAL => t.keyframe_owed = true,
            _ => {
                t.last_keyframe_request = Some(now);
                t.keyframe_owed = false;
                t.stats.keyframe_requests += 1;
                self.emit(MediaEvent::KeyframeRequested { room: room.to_owned(), track: track.to_owned() });
            }
        }
    }

    fn timeout(&mut self) {
        let now = self.now;
        let mut owed = Vec::new();
        let mut stalled = Vec::new();
        for (room_id, r) in &mut self.rooms {
            for (track_id, t) in &mut r.tracks {
                if t.keyframe_owed && t.last_keyframe_request.is_some_and(|at| now >= at + KEYFRAME_REQUEST_INTERVAL) {
                    owed.push((room_id.clone(), track_id.clone()));
                }
                if !t.stalled && now >= t.last_packet + STALL_AFTER {
                    t.stalled = true;
                    stalled.push((room_id.clone(), track_id.clone()));
                }
            }
        }
        for (room, track) in owed {
            self.request_keyframe(&room, &track);
        }
        for (room, track) in stalled {
            self.emit(MediaEvent::TrackStalled { room, track });
        }
    }

    fn next_timeout(&self) -> Option<Instant> {
        self.rooms
            .values()
            .flat_map(|r| r.tracks.values())
            .flat_map(|t| {
                let owed =
                    t.keyframe_owed.then(|| t.last_keyframe_request.map(|at| at + KEYFRAME_REQUEST_INTERVAL)).flatten();
                let stall = (!t.stalled).then_some(t.last_packet + STALL_AFTER);
                owed.into_iter().chain(stall)
            })
            .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(x: &str) -> String {
        x.to_owned()
    }

    /// Runs inputs at their instants and collects every non-timeout output.
    struct Sim {
        sfu: Sfu<u32>,
        start: Instant,
    }

    impl Sim {
        fn new() -> Self {
            let start = Instant::now();
            Sim { sfu: Sfu::new(start), start }
        }
        fn at(&mut self, ms: u64, input: Input<u32>) -> Vec<Output<u32>> {
            self.sfu.handle_input(self.start + Duration::from_millis(ms), input).expect("input accepted");
            self.drain()
        }
        fn drain(&mut self) -> Vec<Output<u32>> {
            let mut out = Vec::new();
            loop {
                match self.sfu.poll_output() {
                    Output::Timeout(_) => return out,
                    o => out.push(o),
                }
            }
        }
        fn call(&mut self) {
            self.at(0, Input::Join { room: s("r"), participant: s("customer"), role: ParticipantRole::Customer });
            self.at(0, Input::Join { room: s("r"), participant: s("agent"), role: ParticipantRole::Agent });
        }
        fn publish(&mut self, ms: u64, who: &str, track: &str, kind: TrackKind) -> Vec<Output<u32>> {
            self.at(ms, Input::Publish { room: s("r"), participant: s(who), track: s(track), kind, codec: s("codec") })
        }
        fn media(&mut self, ms: u64, track: &str, packet: u32, keyframe: bool) -> Vec<Output<u32>> {
            self.at(ms, Input::Media { room: s("r"), track: s(track), packet, keyframe })
        }
    }

    fn transmits(out: &[Output<u32>]) -> Vec<(String, u32)> {
        out.iter()
            .filter_map(|o| match o {
                Output::Transmit { to, packet, .. } => Some((to.clone(), *packet)),
                _ => None,
            })
            .collect()
    }

    fn events(out: &[Output<u32>]) -> Vec<MediaEvent> {
        out.iter()
            .filter_map(|o| match o {
                Output::Event(e) => Some(e.clone()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_published_track_is_forwarded_to_the_other_participant_only() {
        let mut sim = Sim::new();
        sim.call();
        let out = sim.publish(10, "customer", "mic", TrackKind::Audio);
        assert!(events(&out).contains(&MediaEvent::Subscribed {
            room: s("r"),
            subscriber: s("agent"),
            track: s("mic"),
            kind: TrackKind::Audio,
            codec: s("codec"),
        }));
        assert_eq!(transmits(&sim.media(20, "mic", 7, false)), vec![(s("agent"), 7)]);
        assert_eq!(sim.sfu.track_stats("r", "mic").unwrap().forwarded_packets, 1);
    }

    #[test]
    fn a_late_joiner_receives_tracks_already_published() {
        let mut sim = Sim::new();
        sim.at(0, Input::Join { room: s("r"), participant: s("customer"), role: ParticipantRole::Customer });
        sim.publish(5, "customer", "mic", TrackKind::Audio);
        assert!(transmits(&sim.media(6, "mic", 1, false)).is_empty(), "nobody to send to yet");
        let out = sim.at(10, Input::Join { room: s("r"), participant: s("agent"), role: ParticipantRole::Agent });
        assert!(matches!(&events(&out)[1], MediaEvent::Subscribed { subscriber, .. } if subscriber == "agent"));
        assert_eq!(transmits(&sim.media(20, "mic", 2, false)), vec![(s("agent"), 2)]);
    }

    #[test]
    fn video_waits_for_a_keyframe_and_asks_the_publisher_for_one() {
        let mut sim = Sim::new();
        sim.call();
        let out = sim.publish(0, "customer", "cam", TrackKind::Video);
        assert!(events(&out).contains(&MediaEvent::KeyframeRequested { room: s("r"), track: s("cam") }));
        assert!(transmits(&sim.media(10, "cam", 1, false)).is_empty(), "a delta frame is useless to a new decoder");
        assert_eq!(transmits(&sim.media(20, "cam", 2, true)), vec![(s("agent"), 2)]);
        assert_eq!(transmits(&sim.media(30, "cam", 3, false)), vec![(s("agent"), 3)]);
    }

    #[test]
    fn keyframe_requests_are_throttled_and_the_owed_one_goes_out_after_the_interval() {
        let mut sim = Sim::new();
        sim.call();
        sim.publish(0, "customer", "cam", TrackKind::Video);
        for ms in [100, 200, 300] {
            let out = sim.at(ms, Input::KeyframeWanted { room: s("r"), track: s("cam") });
            assert!(events(&out).is_empty(), "request at {ms} ms should wait");
        }
        assert_eq!(sim.sfu.poll_output(), Output::Timeout(Some(sim.start + KEYFRAME_REQUEST_INTERVAL)));
        assert!(events(&sim.at(499, Input::Timeout)).is_empty());
        let out = sim.at(500, Input::Timeout);
        assert_eq!(events(&out), vec![MediaEvent::KeyframeRequested { room: s("r"), track: s("cam") }]);
        assert_eq!(sim.sfu.track_stats("r", "cam").unwrap().keyframe_requests, 2);
        assert!(events(&sim.at(900, Input::Timeout)).is_empty(), "nothing owed any more");
    }

    #[test]
    fn audio_tracks_never_ask_for_keyframes() {
        let mut sim = Sim::new();
        sim.call();
        let out = sim.publish(0, "customer", "mic", TrackKind::Audio);
        assert!(!events(&out).iter().any(|e| matches!(e, MediaEvent::KeyframeRequested { .. })));
        let out = sim.at(1, Input::KeyframeWanted { room: s("r"), track: s("mic") });
        assert!(events(&out).is_empty());
    }

    #[test]
    fn a_silent_track_is_reported_stalled_then_resumed() {
        let mut sim = Sim::new();
        sim.call();
        sim.publish(0, "customer", "mic", TrackKind::Audio);
        sim.media(1_000, "mic", 1, false);
        assert!(events(&sim.at(5_999, Input::Timeout)).is_empty());
        assert_eq!(
            events(&sim.at(6_000, Input::Timeout)),
            vec![MediaEvent::TrackStalled { room: s("r"), track: s("mic") }]
        );
        assert!(events(&sim.at(9_000, Input::Timeout)).is_empty(), "reported once");
        let out = sim.media(9_500, "mic", 2, false);
        assert_eq!(events(&out), vec![MediaEvent::TrackResumed { room: s("r"), track: s("mic") }]);
    }

    #[test]
    fn leaving_unpublishes_the_tracks_and_the_last_one_out_closes_the_room() {
        let mut sim = Sim::new();
        sim.call();
        sim.publish(0, "customer", "cam", TrackKind::Video);
        let out = sim.at(10, Input::Leave { room: s("r"), participant: s("customer"), reason: Some(s("hung up")) });
        assert_eq!(
            events(&out),
            vec![
                MediaEvent::Unsubscribed { room: s("r"), subscriber: s("agent"), track: s("cam") },
                MediaEvent::TrackUnpublished { room: s("r"), participant: s("customer"), track: s("cam") },
                MediaEvent::ParticipantLeft { room: s("r"), participant: s("customer"), reason: Some(s("hung up")) },
            ]
        );
        let out = sim.at(20, Input::Leave { room: s("r"), participant: s("agent"), reason: None });
        assert!(events(&out).contains(&MediaEvent::RoomClosed { room: s("r") }));
        assert_eq!(sim.sfu.room_count(), 0);
        assert_eq!(sim.sfu.poll_output(), Output::Timeout(None));
    }

    #[test]
    fn refused_inputs_change_nothing() {
        let mut sim = Sim::new();
        sim.call();
        sim.publish(0, "customer", "mic", TrackKind::Audio);
        let now = sim.start;
        let bad: Vec<(Input<u32>, SfuError)> = vec![
            (
                Input::Join { room: s("r"), participant: s("agent"), role: ParticipantRole::Agent },
                SfuError::AlreadyJoined { room: s("r"), participant: s("agent") },
            ),
            (
                Input::Publish {
                    room: s("r"),
                    participant: s("agent"),
                    track: s("mic"),
                    kind: TrackKind::Audio,
                    codec: s("c"),
                },
                SfuError::TrackExists { room: s("r"), track: s("mic") },
            ),
            (
                Input::Publish {
                    room: s("r"),
                    participant: s("stranger"),
                    track: s("x"),
                    kind: TrackKind::Audio,
                    codec: s("c"),
                },
                SfuError::NotInRoom { room: s("r"), participant: s("stranger") },
            ),
            (
                Input::Unpublish { room: s("r"), participant: s("agent"), track: s("mic") },
                SfuError::NoTrack { room: s("r"), track: s("mic") },
            ),
            (
                Input::Media { room: s("nope"), track: s("mic"), packet: 1, keyframe: false },
                SfuError::NoRoom(s("nope")),
            ),
            (
                Input::Leave { room: s("r"), participant: s("stranger"), reason: None },
                SfuError::NotInRoom { room: s("r"), participant: s("stranger") },
            ),
        ];
        for (input, error) in bad {
            assert_eq!(sim.sfu.handle_input(now, input), Err(error));
            assert!(sim.drain().is_empty());
        }
        assert_eq!(sim.sfu.participants("r").len(), 2);
        assert_eq!(transmits(&sim.media(1, "mic", 9, false)), vec![(s("agent"), 9)]);
    }

    #[test]
    fn screen_share_is_published_and_unpublished_mid_call() {
        let mut sim = Sim::new();
        sim.call();
        sim.publish(0, "agent", "mic", TrackKind::Audio);
        let out = sim.publish(1_000, "agent", "screen", TrackKind::Screen);
        assert!(events(&out).iter().any(|e| matches!(e, MediaEvent::Subscribed { subscriber, track, kind: TrackKind::Screen, .. } if subscriber == "customer" && track == "screen")));
        assert_eq!(transmits(&sim.media(1_010, "screen", 1, true)), vec![(s("customer"), 1)]);
        let out = sim.at(6_000, Input::Unpublish { room: s("r"), participant: s("agent"), track: s("screen") });
        assert_eq!(
            events(&out)[1],
            MediaEvent::TrackUnpublished { room: s("r"), participant: s("agent"), track: s("screen") }
        );
        assert!(sim
            .sfu
            .handle_input(
                now_plus(&sim, 6_001),
                Input::Media { room: s("r"), track: s("screen"), packet: 2, keyframe: false }
            )
            .is_err());
    }

    fn now_plus(sim: &Sim, ms: u64) -> Instant {
        sim.start + Duration::from_millis(ms)
    }
}
