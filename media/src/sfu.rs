//! The SFU core: rooms, participants and tracks, without sockets, locks or
//! clocks.
//!
//! Feed it [`Input`]s with the time they happened ([`Sfu::handle_input`]),
//! then drain [`Sfu::poll_output`] until it returns [`Output::Timeout`]: the
//! instant at which it wants [`Input::Timeout`] next. Every forwarding
//! decision (who receives which packet, which simulcast layer each receiver
//! gets, when a publisher is asked for a keyframe, when a silent track is
//! reported stalled) is made here, so it is tested on simulated time; the
//! driver only moves bytes and SDP.
//!
//! The core is generic over the packet it forwards (`P`, see
//! [`RtpPacket`]): the driver passes `rtp::Packet`s (whose payload is
//! reference-counted, so a clone per subscriber copies no media), tests
//! pass small values.
//!
//! ## Simulcast
//!
//! A video track may arrive as several *layers* (the same picture encoded
//! at different sizes, numbered from 0, the smallest). Every receiver of a
//! video track — each subscriber, and the recorder — has a forwarder that
//! sends it one layer at a time: the best layer that fits the receiver's
//! bandwidth (its estimate, [`Input::Bandwidth`], shared among the video
//! tracks it receives; the recorder has no limit). A forwarder changes
//! layer only at a keyframe of the new layer (a decoder cannot start on a
//! delta frame of another stream), asking the publisher for one, and
//! rewrites sequence numbers and timestamps so the receiver sees one
//! continuous stream. A track sent as a single stream is a track of one
//! layer: its receivers start at a keyframe and get packets unchanged.

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

/// A simulcast layer with no packet for this long is off (the browser
/// stops sending its larger layers when its own uplink is short).
pub const LAYER_IDLE: Duration = Duration::from_secs(1);

/// How often a layer's bitrate is measured.
const LAYER_WINDOW: Duration = Duration::from_millis(500);

/// A receiver moves up a layer only when its share of bandwidth exceeds
/// the layer's bitrate by this many percent (so it does not flap).
const UP_HEADROOM_PERCENT: u64 = 15;

/// Video RTP clock (VP8): timestamps advance 90 per millisecond.
const VIDEO_CLOCK_PER_MS: u32 = 90;

/// What the core needs of a media packet to forward it.
pub trait RtpPacket: Clone {
    /// Bytes on the wire, for bitrates.
    fn size(&self) -> usize;
    fn sequence(&self) -> u16;
    fn timestamp(&self) -> u32;
    /// Renumbers the packet for a receiver that switched layers.
    fn renumber(&mut self, sequence: u16, timestamp: u32);
    /// No media: only padding (a sender's bandwidth probe).
    fn padding_only(&self) -> bool;
}

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
    /// One media packet of a published track's simulcast `layer` (0 for a
    /// track sent as one stream); `keyframe` if it starts one.
    Media { room: String, track: String, layer: u8, packet: P, keyframe: bool },
    /// A subscriber lost the picture (its decoder asked for a keyframe).
    KeyframeWanted { room: String, track: String },
    /// What `participant` can receive, in bits per second (its receiver's
    /// estimate, e.g. an RTCP REMB).
    Bandwidth { room: String, participant: String, bps: u64 },
    /// Start or stop handing the room's media to the recorder
    /// ([`Output::Record`]), one layer per track.
    Recording { room: String, on: bool },
    /// The instant [`Output::Timeout`] asked for (or any later one).
    Timeout,
}

/// What the driver must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output<P> {
    /// Send `packet` of `track` to participant `to`.
    Transmit { room: String, to: String, track: String, packet: P },
    /// Hand `packet` of `track` to the room's recorder.
    Record { room: String, track: String, packet: P },
    /// Something the session's record should say.
    Event(MediaEvent),
    /// Nothing more now; call again with [`Input::Timeout`] at this instant
    /// (`None`: nothing is pending). It may be early — after media packets
    /// it is not recomputed over every track — and a timeout with nothing
    /// due does nothing.
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
    /// Ask the publisher of `track` for a keyframe (an RTCP PLI; on every
    /// layer of a simulcast track).
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
    /// Times a receiver moved to another simulcast layer.
    pub layer_switches: u64,
}

/// One simulcast layer as received: its bitrate, measured per
/// [`LAYER_WINDOW`], and when it last carried a packet.
#[derive(Debug, Clone, Copy, Default)]
struct Layer {
    bps: u64,
    window: Option<(Instant, u64)>,
    last_packet: Option<Instant>,
}

impl Layer {
    fn count(&mut self, now: Instant, bytes: usize) {
        self.last_packet = Some(now);
        let (start, sum) = self.window.get_or_insert((now, 0));
        *sum += bytes as u64;
        let elapsed = now.saturating_duration_since(*start);
        if elapsed >= LAYER_WINDOW {
            self.bps = *sum * 8 * 1000 / elapsed.as_millis().max(1) as u64;
            self.window = Some((now, 0));
        }
    }

    fn active(&self, now: Instant) -> bool {
        self.last_packet.is_some_and(|at| now < at + LAYER_IDLE)
    }
}

/// The best layer for a receiver with `budget` bits per second (`None`:
/// unlimited): the largest active layer whose bitrate fits, else the
/// smallest active one. Moving up needs [`UP_HEADROOM_PERCENT`] to spare.
fn choose_layer(layers: &[Layer], now: Instant, budget: Option<u64>, current: Option<u8>) -> Option<u8> {
    let active = || (0..layers.len() as u8).filter(|&i| layers[i as usize].active(now));
    let smallest = active().next()?;
    let Some(budget) = budget else { return active().next_back() };
    let fits = |i: u8| {
        let bps = layers[i as usize].bps;
        let needed = if current.is_some_and(|c| i > c) { bps * (100 + UP_HEADROOM_PERCENT) / 100 } else { bps };
        bps > 0 && needed <= budget
    };
    Some(active().rev().find(|&i| fits(i)).unwrap_or(smallest))
}

/// Sends one receiver one layer of a video track (see the module docs).
#[derive(Debug, Default)]
struct Forwarder {
    /// The layer being sent; `None` until the first keyframe.
    current: Option<u8>,
    /// Added to each packet's sequence number and timestamp.
    sequence_offset: u16,
    timestamp_offset: u32,
    /// The newest packet sent: its sequence number, timestamp and when.
    last: Option<(u16, u32, Instant)>,
    /// The highest sequence number, as the publisher numbered it, of the
    /// current layer's packets.
    newest_in: Option<u16>,
}

/// What a forwarder made of one packet.
struct Forwarded<P> {
    packet: Option<P>,
    /// The receiver waits for a keyframe of its target layer.
    wants_keyframe: bool,
    switched: bool,
}

impl Forwarder {
    fn forward<P: RtpPacket>(
        &mut self,
        now: Instant,
        target: u8,
        layer: u8,
        keyframe: bool,
        packet: &P,
    ) -> Forwarded<P> {
        let mut switched = false;
        if layer == target && self.current != Some(layer) && keyframe {
            if let Some((sequence, timestamp, at)) = self.last {
                // Continue where the old layer stopped: the next sequence
                // number, and a timestamp as far on as time has gone.
                let gap = (now.saturating_duration_since(at).as_millis() as u32).max(1) * VIDEO_CLOCK_PER_MS;
                self.sequence_offset = sequence.wrapping_add(1).wrapping_sub(packet.sequence());
                self.timestamp_offset = timestamp.wrapping_add(gap).wrapping_sub(packet.timestamp());
                switched = true;
            }
            self.current = Some(layer);
        }
        let wants_keyframe = self.current != Some(target);
        if self.current != Some(layer) {
            return Forwarded { packet: None, wants_keyframe, switched };
        }
        let newest = match self.newest_in {
            Some(newest) if !switched => newest,
            _ => packet.sequence().wrapping_sub(1),
        };
        let next = packet.sequence() == newest.wrapping_add(1);
        if packet.sequence().wrapping_sub(newest) < 0x8000 {
            self.newest_in = Some(packet.sequence());
        }
        // Padding carries nothing to show: browsers ignore it, but a
        // receiver that assembles frames by timestamp (aiortc) made an
        // empty frame of it, which ended its decoder for good. Dropped, and
        // the numbers after it close up. (One that is not the next leaves a
        // gap, which the receiver may ask for in vain; a late media packet
        // from before a dropped padding one would share a number.)
        if packet.padding_only() {
            if next {
                self.sequence_offset = self.sequence_offset.wrapping_sub(1);
            }
            return Forwarded { packet: None, wants_keyframe, switched };
        }
        let sequence = packet.sequence().wrapping_add(self.sequence_offset);
        let timestamp = packet.timestamp().wrapping_add(self.timestamp_offset);
        let mut out = packet.clone();
        if self.sequence_offset != 0 || self.timestamp_offset != 0 {
            out.renumber(sequence, timestamp);
        }
        // A late packet (lower sequence number) does not move `last` back.
        if self.last.is_none_or(|(last, _, _)| sequence.wrapping_sub(last) < 0x8000) {
            self.last = Some((sequence, timestamp, now));
        }
        Forwarded { packet: Some(out), wants_keyframe, switched }
    }
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
    /// Video: the layers seen so far, and a forwarder per subscriber and
    /// one for the recorder.
    layers: Vec<Layer>,
    forwarders: BTreeMap<String, Forwarder>,
    recorder: Forwarder,
}

impl Track {
    /// When the track next needs [`Input::Timeout`]: a keyframe request
    /// owed, or being reported stalled.
    fn deadline(&self) -> Option<Instant> {
        let owed = self.keyframe_owed.then(|| self.last_keyframe_request.map(|at| at + KEYFRAME_REQUEST_INTERVAL));
        let stall = (!self.stalled).then_some(self.last_packet + STALL_AFTER);
        owed.flatten().into_iter().chain(stall).min()
    }
}

#[derive(Debug)]
struct Member {
    role: ParticipantRole,
    /// What its receiver says it can take, in bits per second.
    bandwidth: Option<u64>,
}

#[derive(Debug, Default)]
struct Room {
    participants: BTreeMap<String, Member>,
    tracks: BTreeMap<String, Track>,
    recording: bool,
}

/// How much an SFU carries now ([`Sfu::census`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Census {
    pub rooms: usize,
    pub participants: usize,
    pub tracks: usize,
}

/// The SFU state machine. See the module documentation for the run loop.
#[derive(Debug)]
pub struct Sfu<P> {
    rooms: BTreeMap<String, Room>,
    out: VecDeque<Output<P>>,
    now: Instant,
    /// What [`Output::Timeout`] asks for: the earliest deadline of any
    /// track, or earlier (a wake-up with nothing due does nothing). Found by
    /// a scan of every track after any input but media; a media packet only
    /// moves its own track's deadlines, so it can only bring this closer —
    /// scanning every track per packet made the SFU's work per packet grow
    /// with the number of calls.
    wake_at: Option<Instant>,
}

impl<P: RtpPacket> Sfu<P> {
    pub fn new(now: Instant) -> Self {
        Sfu { rooms: BTreeMap::new(), out: VecDeque::new(), now, wake_at: None }
    }

    /// Applies one input that happened at `now`. On error nothing changed.
    pub fn handle_input(&mut self, now: Instant, input: Input<P>) -> Result<(), SfuError> {
        self.now = self.now.max(now);
        let done = match input {
            Input::Join { room, participant, role } => self.join(room, participant, role),
            Input::Leave { room, participant, reason } => self.leave(&room, &participant, reason),
            Input::Publish { room, participant, track, kind, codec } => {
                self.publish(room, participant, track, kind, codec)
            }
            Input::Unpublish { room, participant, track } => self.unpublish(&room, &participant, &track),
            Input::Media { room, track, layer, packet, keyframe } => {
                let done = self.media(&room, &track, layer, packet, keyframe);
                let due = self.rooms.get(&room).and_then(|r| r.tracks.get(&track)).and_then(Track::deadline);
                self.wake_at = self.wake_at.into_iter().chain(due).min();
                return done;
            }
            Input::KeyframeWanted { room, track } => {
                self.track_mut(&room, &track)?;
                self.request_keyframe(&room, &track);
                Ok(())
            }
            Input::Bandwidth { room, participant, bps } => {
                let r = self.rooms.get_mut(&room).ok_or_else(|| SfuError::NoRoom(room.clone()))?;
                let member = r.participants.get_mut(&participant).ok_or(SfuError::NotInRoom { room, participant })?;
                member.bandwidth = Some(bps);
                Ok(())
            }
            Input::Recording { room, on } => {
                self.recording(room, on);
                Ok(())
            }
            Input::Timeout => {
                self.timeout();
                Ok(())
            }
        };
        self.wake_at = self.earliest_deadline();
        done
    }

    /// The next thing to do; ends each batch with [`Output::Timeout`].
    pub fn poll_output(&mut self) -> Output<P> {
        self.out.pop_front().unwrap_or(Output::Timeout(self.wake_at))
    }

    /// Participants of `room`, by id.
    pub fn participants(&self, room: &str) -> Vec<(String, ParticipantRole)> {
        self.rooms
            .get(room)
            .map(|r| r.participants.iter().map(|(p, m)| (p.clone(), m.role)).collect())
            .unwrap_or_default()
    }

    pub fn track_stats(&self, room: &str, track: &str) -> Option<TrackStats> {
        self.rooms.get(room)?.tracks.get(track).map(|t| t.stats)
    }

    /// The layer of `track` that `subscriber` receives now (`None`: nothing
    /// yet, waiting for a keyframe).
    pub fn forwarded_layer(&self, room: &str, subscriber: &str, track: &str) -> Option<u8> {
        self.rooms.get(room)?.tracks.get(track)?.forwarders.get(subscriber)?.current
    }

    pub fn room_count(&self) -> usize {
        self.rooms.len()
    }

    /// Rooms open now, their participants and their published tracks.
    pub fn census(&self) -> Census {
        Census {
            rooms: self.rooms.len(),
            participants: self.rooms.values().map(|r| r.participants.len()).sum(),
            tracks: self.rooms.values().map(|r| r.tracks.len()).sum(),
        }
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
        r.participants.insert(participant.clone(), Member { role, bandwidth: None });
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
        self.emit(MediaEvent::Subscribed {
            room: room.to_owned(),
            subscriber: subscriber.to_owned(),
            track: track.to_owned(),
            kind,
            codec,
        });
        if kind != TrackKind::Audio {
            if let Some(t) = self.rooms.get_mut(room).and_then(|r| r.tracks.get_mut(track)) {
                t.forwarders.insert(subscriber.to_owned(), Forwarder::default());
            }
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
            t.forwarders.remove(participant);
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

    /// A room may be marked for recording before anyone has joined it; an
    /// empty room unmarked is forgotten.
    fn recording(&mut self, room: String, on: bool) {
        let r = self.rooms.entry(room.clone()).or_default();
        r.recording = on;
        for t in r.tracks.values_mut() {
            t.recorder = Forwarder::default();
        }
        let video: Vec<String> =
            r.tracks.iter().filter(|(_, t)| t.kind != TrackKind::Audio).map(|(id, _)| id.clone()).collect();
        if !on && r.participants.is_empty() {
            self.rooms.remove(&room);
            return;
        }
        if on {
            // A recording can only begin at a keyframe: ask now rather
            // than lose seconds.
            for track in video {
                self.request_keyframe(&room, &track);
            }
        }
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
                layers: Vec::new(),
                forwarders: BTreeMap::new(),
                recorder: Forwarder::default(),
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

    fn media(&mut self, room: &str, track: &str, layer: u8, packet: P, keyframe: bool) -> Result<(), SfuError> {
        let now = self.now;
        let r = self.rooms.get_mut(room).ok_or_else(|| SfuError::NoRoom(room.to_owned()))?;
        let video = match r.tracks.get(track) {
            Some(t) => t.kind != TrackKind::Audio,
            None => return Err(SfuError::NoTrack { room: room.to_owned(), track: track.to_owned() }),
        };
        // Each participant's bandwidth, shared among the video it receives.
        let budgets: Vec<Option<u64>> = if video {
            r.participants
                .iter()
                .map(|(p, m)| {
                    let receives = r.tracks.values().filter(|t| t.kind != TrackKind::Audio && t.owner != *p).count();
                    m.bandwidth.map(|bps| bps / receives.max(1) as u64)
                })
                .collect()
        } else {
            Vec::new()
        };
        let t = r.tracks.get_mut(track).expect("looked up above");
        t.stats.received_packets += 1;
        t.last_packet = now;
        let resumed = std::mem::replace(&mut t.stalled, false);
        let mut sent = 0;
        let mut wants_keyframe = false;
        if !video {
            for to in r.participants.keys().filter(|p| **p != t.owner) {
                self.out.push_back(Output::Transmit {
                    room: room.to_owned(),
                    to: to.clone(),
                    track: track.to_owned(),
                    packet: packet.clone(),
                });
                sent += 1;
            }
            if r.recording {
                self.out.push_back(Output::Record { room: room.to_owned(), track: track.to_owned(), packet });
            }
        } else {
            if t.layers.len() <= layer as usize {
                t.layers.resize(layer as usize + 1, Layer::default());
            }
            t.layers[layer as usize].count(now, packet.size());
            for ((to, _), budget) in r.participants.iter().zip(&budgets) {
                let Some(f) = t.forwarders.get_mut(to) else { continue };
                let target = choose_layer(&t.layers, now, *budget, f.current).unwrap_or(layer);
                let done = f.forward(now, target, layer, keyframe, &packet);
                wants_keyframe |= done.wants_keyframe;
                t.stats.layer_switches += u64::from(done.switched);
                if let Some(packet) = done.packet {
                    self.out.push_back(Output::Transmit {
                        room: room.to_owned(),
                        to: to.clone(),
                        track: track.to_owned(),
                        packet,
                    });
                    sent += 1;
                }
            }
            if r.recording {
                let target = choose_layer(&t.layers, now, None, t.recorder.current).unwrap_or(layer);
                let done = t.recorder.forward(now, target, layer, keyframe, &packet);
                wants_keyframe |= done.wants_keyframe;
                if let Some(packet) = done.packet {
                    self.out.push_back(Output::Record { room: room.to_owned(), track: track.to_owned(), packet });
                }
            }
        }
        t.stats.forwarded_packets += sent;
        if resumed {
            self.emit(MediaEvent::TrackResumed { room: room.to_owned(), track: track.to_owned() });
        }
        if wants_keyframe {
            self.request_keyframe(room, track);
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

    fn earliest_deadline(&self) -> Option<Instant> {
        self.rooms.values().flat_map(|r| r.tracks.values()).filter_map(Track::deadline).min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(x: &str) -> String {
        x.to_owned()
    }

    /// A packet: `id` names it in assertions.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    struct Pkt {
        id: u32,
        seq: u16,
        ts: u32,
        size: usize,
        padding: bool,
    }

    impl RtpPacket for Pkt {
        fn size(&self) -> usize {
            self.size
        }
        fn sequence(&self) -> u16 {
            self.seq
        }
        fn timestamp(&self) -> u32 {
            self.ts
        }
        fn renumber(&mut self, sequence: u16, timestamp: u32) {
            (self.seq, self.ts) = (sequence, timestamp);
        }
        fn padding_only(&self) -> bool {
            self.padding
        }
    }

    fn pkt(id: u32) -> Pkt {
        Pkt { id, seq: id as u16, ts: id * 3000, size: 100, padding: false }
    }

    /// Runs inputs at their instants and collects every non-timeout output.
    struct Sim {
        sfu: Sfu<Pkt>,
        start: Instant,
    }

    impl Sim {
        fn new() -> Self {
            let start = Instant::now();
            Sim { sfu: Sfu::new(start), start }
        }
        fn at(&mut self, ms: u64, input: Input<Pkt>) -> Vec<Output<Pkt>> {
            self.sfu.handle_input(self.start + Duration::from_millis(ms), input).expect("input accepted");
            self.drain()
        }
        fn drain(&mut self) -> Vec<Output<Pkt>> {
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
        fn publish(&mut self, ms: u64, who: &str, track: &str, kind: TrackKind) -> Vec<Output<Pkt>> {
            self.at(ms, Input::Publish { room: s("r"), participant: s(who), track: s(track), kind, codec: s("codec") })
        }
        fn media(&mut self, ms: u64, track: &str, packet: u32, keyframe: bool) -> Vec<Output<Pkt>> {
            self.at(ms, Input::Media { room: s("r"), track: s(track), layer: 0, packet: pkt(packet), keyframe })
        }
    }

    fn transmits(out: &[Output<Pkt>]) -> Vec<(String, u32)> {
        out.iter()
            .filter_map(|o| match o {
                Output::Transmit { to, packet, .. } => Some((to.clone(), packet.id)),
                _ => None,
            })
            .collect()
    }

    fn events(out: &[Output<Pkt>]) -> Vec<MediaEvent> {
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
        let mut sim = Sim::camera_call();
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
        let mut sim = Sim::camera_call();
        assert_eq!(sim.sfu.census(), Census { rooms: 1, participants: 2, tracks: 1 });
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
        assert_eq!(sim.sfu.census(), Census::default());
        assert_eq!(sim.sfu.poll_output(), Output::Timeout(None));
    }

    #[test]
    fn refused_inputs_change_nothing() {
        let mut sim = Sim::new();
        sim.call();
        sim.publish(0, "customer", "mic", TrackKind::Audio);
        let now = sim.start;
        let bad: Vec<(Input<Pkt>, SfuError)> = vec![
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
                Input::Media { room: s("nope"), track: s("mic"), layer: 0, packet: pkt(1), keyframe: false },
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
                Input::Media { room: s("r"), track: s("screen"), layer: 0, packet: pkt(2), keyframe: false }
            )
            .is_err());
    }

    fn now_plus(sim: &Sim, ms: u64) -> Instant {
        sim.start + Duration::from_millis(ms)
    }

    /// Two layers of one camera, 20 ms apart: layer 0 at 100 kbit/s
    /// (250-byte packets), layer 1 at 800 kbit/s (2,000 bytes), each with
    /// its own sequence numbers and timestamps, keyframes every second.
    fn simulcast_packet(layer: u8, n: u32) -> Pkt {
        let (seq0, ts0, size) = if layer == 0 { (1_000, 10_000, 250) } else { (50_000, 900_000, 2_000) };
        Pkt { id: u32::from(layer) * 100_000 + n, seq: (seq0 + n) as u16, ts: ts0 + n * 1_800, size, padding: false }
    }

    impl Sim {
        /// Sends packets `from..to` of both layers (layer 1 only while
        /// `high` says so); returns what came of them.
        fn simulcast_outputs(&mut self, from: u32, to: u32, high: impl Fn(u32) -> bool) -> Vec<Output<Pkt>> {
            let mut out = Vec::new();
            for n in from..to {
                for layer in [0u8, 1] {
                    if layer == 1 && !high(n) {
                        continue;
                    }
                    let packet = simulcast_packet(layer, n);
                    let input = Input::Media { room: s("r"), track: s("cam"), layer, packet, keyframe: n % 50 == 0 };
                    out.extend(self.at(u64::from(n) * 20, input));
                }
            }
            out
        }

        /// A call in which the customer publishes a camera.
        fn camera_call() -> Sim {
            let mut sim = Sim::new();
            sim.call();
            sim.publish(0, "customer", "cam", TrackKind::Video);
            sim
        }

        /// [`Sim::simulcast_outputs`]: what the agent received.
        fn simulcast(&mut self, from: u32, to: u32, high: impl Fn(u32) -> bool) -> Vec<Pkt> {
            let out = self.simulcast_outputs(from, to, high);
            to_agent(out)
        }
    }

    /// The packets among `outputs` sent to the agent.
    fn to_agent(outputs: Vec<Output<Pkt>>) -> Vec<Pkt> {
        outputs
            .into_iter()
            .filter_map(|o| match o {
                Output::Transmit { to, packet, .. } if to == "agent" => Some(packet),
                _ => None,
            })
            .collect()
    }

    /// The agent's stream is one stream: each packet's sequence number one
    /// more than the last, timestamps never going back.
    fn assert_continuous(got: &[Pkt]) {
        for pair in got.windows(2) {
            assert_eq!(pair[1].seq, pair[0].seq.wrapping_add(1), "{:?} then {:?}", pair[0], pair[1]);
            assert!(pair[1].ts.wrapping_sub(pair[0].ts) < 0x8000_0000, "{:?} then {:?}", pair[0], pair[1]);
        }
    }

    fn layers(got: &[Pkt]) -> Vec<u32> {
        let mut seen: Vec<u32> = got.iter().map(|p| p.id / 100_000).collect();
        seen.dedup();
        seen
    }

    #[test]
    fn a_receiver_gets_the_largest_layer_its_bandwidth_allows_and_switches_at_keyframes() {
        let mut sim = Sim::camera_call();
        // No estimate: it starts on the first keyframe there is (layer 0's
        // comes first) and moves to the largest layer at its next one.
        let got = sim.simulcast(0, 100, |_| true);
        assert_eq!(layers(&got), [0, 1]);
        assert_eq!(got.iter().find(|p| p.id >= 100_000).unwrap().id, 100_000, "layer 1 starts on a keyframe too");
        assert_continuous(&got);
        assert_eq!(sim.sfu.forwarded_layer("r", "agent", "cam"), Some(1));

        // The agent's receiver can take 300 kbit/s: down to layer 0, at
        // layer 0's next keyframe (packet 150), not before.
        sim.simulcast(100, 105, |_| true);
        sim.at(2_100, Input::Bandwidth { room: s("r"), participant: s("agent"), bps: 300_000 });
        let out = sim.simulcast(105, 200, |_| true);
        assert_eq!(layers(&out), [1, 0]);
        let first_small = out.iter().find(|p| p.id < 100_000).unwrap();
        assert_eq!(first_small.id, 150, "switched at a keyframe of the new layer");
        assert_continuous(&out);

        // 2 Mbit/s: back up at layer 1's next keyframe.
        sim.at(4_000, Input::Bandwidth { room: s("r"), participant: s("agent"), bps: 2_000_000 });
        let out = sim.simulcast(200, 300, |_| true);
        assert_eq!(layers(&out), [0, 1]);
        assert_continuous(&out);
        assert_eq!(sim.sfu.track_stats("r", "cam").unwrap().layer_switches, 3);
    }

    /// Padding-only packets (a browser probing its bandwidth) are not
    /// forwarded, and the packets after them close up: what the receiver
    /// gets stays one numbered stream. One out of order leaves its gap.
    #[test]
    fn padding_is_not_forwarded_and_the_stream_stays_continuous() {
        let mut sim = Sim::camera_call();
        let send = |sim: &mut Sim, packet: Pkt, keyframe: bool| {
            let input = Input::Media { room: s("r"), track: s("cam"), layer: 0, packet, keyframe };
            to_agent(sim.at(u64::from(packet.id) * 20, input))
        };
        let mut got = vec![];
        for n in 0..20u32 {
            // Packets 5, 6 and 12 are padding (no payload, the last frame's timestamp).
            let padding = [5, 6, 12].contains(&n);
            let packet = Pkt { id: n, seq: 500 + n as u16, ts: 3000 * (n / 2), size: 100, padding };
            got.extend(send(&mut sim, packet, n == 0));
        }
        assert_eq!(
            got.iter().map(|p| p.id).collect::<Vec<_>>(),
            [0, 1, 2, 3, 4, 7, 8, 9, 10, 11, 13, 14, 15, 16, 17, 18, 19]
        );
        assert!(got.iter().all(|p| !p.padding));
        assert_continuous(&got);
        assert_eq!(got[0].seq, 500, "unchanged until the first padding");
        // Late: padding 21 arrives after 22; 22 and 23 keep their numbers.
        let mut late = vec![];
        for (n, padding) in [(20, false), (22, false), (21, true), (23, false)] {
            let packet = Pkt { id: n, seq: 500 + n as u16, ts: 3000 * (n / 2), size: 100, padding };
            late.extend(send(&mut sim, packet, false));
        }
        let seqs: Vec<u16> = late.iter().map(|p| p.seq).collect();
        let after = got.last().unwrap().seq;
        assert_eq!(seqs, [after + 1, after + 3, after + 4], "a gap where the late padding was");
    }

    #[test]
    fn when_the_large_layer_stops_the_receiver_moves_to_one_that_flows() {
        let mut sim = Sim::camera_call();
        sim.simulcast(0, 60, |_| true);
        assert_eq!(sim.sfu.forwarded_layer("r", "agent", "cam"), Some(1));
        // The browser stops sending layer 1 after packet 60 (its uplink is short).
        let out = sim.simulcast(60, 200, |n| n < 60);
        assert_eq!(sim.sfu.forwarded_layer("r", "agent", "cam"), Some(0));
        assert_continuous(&out);
    }

    #[test]
    fn a_switch_asks_the_publisher_for_a_keyframe() {
        let mut sim = Sim::camera_call();
        sim.simulcast(0, 60, |_| true);
        sim.at(1_300, Input::Bandwidth { room: s("r"), participant: s("agent"), bps: 300_000 });
        let packet = simulcast_packet(0, 70);
        let out = sim.at(1_400, Input::Media { room: s("r"), track: s("cam"), layer: 0, packet, keyframe: false });
        assert!(events(&out).contains(&MediaEvent::KeyframeRequested { room: s("r"), track: s("cam") }), "{out:?}");
    }

    #[test]
    fn the_recorder_gets_the_largest_layer_whatever_the_receivers_bandwidth() {
        let mut sim = Sim::new();
        // Recording is switched on before anyone joins (the call starts recorded).
        sim.at(0, Input::Recording { room: s("r"), on: true });
        sim.call();
        sim.publish(0, "customer", "cam", TrackKind::Video);
        sim.publish(0, "customer", "mic", TrackKind::Audio);
        sim.at(0, Input::Bandwidth { room: s("r"), participant: s("agent"), bps: 100_000 });
        let recorded: Vec<Pkt> = sim
            .simulcast_outputs(0, 120, |_| true)
            .into_iter()
            .filter_map(|o| match o {
                Output::Record { track, packet, .. } if track == "cam" => Some(packet),
                _ => None,
            })
            .collect();
        assert_eq!(layers(&recorded), [0, 1], "the recording moves to the large layer and keeps it");
        assert_continuous(&recorded);
        assert_eq!(sim.sfu.forwarded_layer("r", "agent", "cam"), Some(0), "the agent is held to the small one");
        let out = sim.media(2_500, "mic", 7, false);
        assert!(out
            .iter()
            .any(|o| matches!(o, Output::Record { track, packet, .. } if track == "mic" && packet.id == 7)));

        sim.at(2_600, Input::Recording { room: s("r"), on: false });
        let out = sim.media(2_700, "mic", 8, false);
        assert!(!out.iter().any(|o| matches!(o, Output::Record { .. })), "{out:?}");
    }

    #[test]
    fn a_room_marked_for_recording_and_unmarked_before_anyone_joined_is_forgotten() {
        let mut sim = Sim::new();
        sim.at(0, Input::Recording { room: s("r"), on: true });
        assert_eq!(sim.sfu.room_count(), 1);
        sim.at(1, Input::Recording { room: s("r"), on: false });
        assert_eq!(sim.sfu.room_count(), 0);
    }

    #[test]
    fn bandwidth_from_a_stranger_is_refused() {
        let mut sim = Sim::new();
        sim.call();
        let refused =
            sim.sfu.handle_input(sim.start, Input::Bandwidth { room: s("r"), participant: s("stranger"), bps: 1 });
        assert_eq!(refused, Err(SfuError::NotInRoom { room: s("r"), participant: s("stranger") }));
    }
}
