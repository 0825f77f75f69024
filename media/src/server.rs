//! The tokio driver of the SFU: WebRTC peer connections (the `webrtc`
//! crate) around the sans-IO [`Sfu`](crate::sfu::Sfu).
//!
//! A [`MediaServer`] is shared by every call of the process. Signaling comes
//! in through its methods ([`MediaServer::join`], [`MediaServer::publish`],
//! [`MediaServer::subscriber_answer`], [`MediaServer::leave`]) and goes out as
//! [`Signal`]s on the channel each participant joined with; what the record
//! should say (joins, tracks, leaves) comes out of the receiver
//! [`MediaServer::new`] returns.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtp_transceiver::rtp_sender::{
    RTCPFeedback, RTCRtpCodec, RTCRtpCodecParameters, RTCRtpCodingParameters, RTCRtpEncodingParameters, RtpCodecKind,
};
use tokio::sync::{mpsc, watch};
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::media_stream::MediaStreamTrack;
use webrtc::peer_connection::{
    register_default_interceptors, MediaEngine, PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler,
    RTCConfigurationBuilder, RTCIceGatheringState, RTCIceServer, RTCPeerConnectionState, RTCSessionDescription,
    Registry, SettingEngineBuilder,
};
use webrtc::rtp_transceiver::RtpSender;
use witness_schemas::{ParticipantRole, TrackKind};

use crate::recorder::{RecorderError, Segment, SegmentNumbers, TrackRecorder};
use crate::sfu::{Input, MediaEvent, Output, Sfu, SfuError};

/// A trickled ICE candidate, as the browser's `RTCIceCandidateInit` (JSON).
pub use webrtc::peer_connection::RTCIceCandidateInit as IceCandidateInit;

/// Payload types the server uses towards subscribers (it writes the offers
/// on those connections, so these are the negotiated ones).
const OPUS_PT: u8 = 111;
const VP8_PT: u8 = 96;
/// How long an offer or answer waits for the server's ICE candidates.
const GATHER_TIMEOUT: Duration = Duration::from_secs(5);

/// Where the SFU listens and what browsers are told about reaching it.
#[derive(Debug, Clone)]
pub struct MediaConfig {
    /// Address the UDP sockets bind to and announce (unless `public_ip`).
    pub ip: IpAddr,
    /// Inclusive UDP port range; each peer connection takes one port.
    pub ports: (u16, u16),
    /// Announced instead of `ip` when the server sits behind a 1:1 NAT.
    pub public_ip: Option<IpAddr>,
    /// STUN/TURN servers handed to browsers (and used by the server).
    pub ice_servers: Vec<IceServer>,
    /// Where recordings are written: `RECORDING/TRACK/00000.webm`, …
    pub recordings_dir: PathBuf,
    /// The length of a recording segment.
    pub segment: Duration,
    /// Benchmarks: measure each packet's time inside the SFU (see
    /// [`Residence`]). Off in service: it costs a map entry per packet.
    pub residence: Option<Arc<Residence>>,
}

/// How long packets spend inside the SFU: from leaving the publisher
/// connection's receive chain (decrypted, past the interceptors) to
/// entering a subscriber connection's send chain (before encryption).
/// That is the SFU's own work and every queue between its tasks; the
/// SRTP and socket work on either side is not in it. Packets are matched
/// by RTP timestamp and sequence number, which forwarding keeps (single
/// streams; a simulcast switch renumbers, and such packets go unmatched).
#[derive(Debug, Default)]
pub struct Residence {
    arrived: Mutex<HashMap<(u32, u16), Instant>>,
    /// One per matched packet, in µs.
    pub delays_us: Mutex<Vec<u64>>,
}

impl Residence {
    fn arrived(&self, packet: &rtc::rtp::Packet) {
        let mut arrived = self.arrived.lock().expect("residence poisoned");
        if arrived.len() > 200_000 {
            arrived.clear();
        }
        arrived.insert((packet.header.timestamp, packet.header.sequence_number), Instant::now());
    }

    fn departed(&self, packet: &rtc::rtp::Packet) {
        let key = (packet.header.timestamp, packet.header.sequence_number);
        let Some(at) = self.arrived.lock().expect("residence poisoned").remove(&key) else { return };
        self.delays_us.lock().expect("residence poisoned").push(at.elapsed().as_micros() as u64);
    }
}

impl Default for MediaConfig {
    fn default() -> Self {
        MediaConfig {
            ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            ports: (50_000, 50_999),
            public_ip: None,
            ice_servers: Vec::new(),
            recordings_dir: PathBuf::from("data/recordings"),
            segment: crate::recorder::DEFAULT_SEGMENT,
            residence: None,
        }
    }
}

/// What the server reports for the record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Report {
    /// A join, leave or track change in a room (`MediaEvent::ParticipantJoined`,
    /// `ParticipantLeft`, `TrackPublished`, `TrackUnpublished`, `RoomClosed`).
    Media(MediaEvent),
    /// A recording segment file was closed and hashed.
    SegmentClosed {
        room: String,
        recording: String,
        track: String,
        index: u32,
        /// Relative to [`MediaConfig::recordings_dir`], `/`-separated.
        file: String,
        bytes: u64,
        duration_ms: u64,
        sha256: String,
    },
    /// A track's recorder failed (the call goes on; the gap is visible as
    /// missing segments).
    RecordingFailed { room: String, recording: String, track: String, error: String },
}

/// One STUN or TURN server, as the browser's `RTCIceServer`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct IceServer {
    pub urls: Vec<String>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub username: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub credential: String,
}

/// What the server tells one participant's browser.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signal {
    /// New SDP offer on the receiving connection; answer with
    /// [`MediaServer::subscriber_answer`].
    Offer { sdp: String },
    /// The participant was removed (connection failed, call ended).
    Left { reason: String },
}

#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    #[error("invalid SDP: {0}")]
    InvalidSdp(String),
    #[error("not in this call: join it first")]
    NotJoined,
    #[error("already in this call")]
    AlreadyJoined,
    #[error("no free UDP port in {0}-{1}")]
    NoPort(u16, u16),
    #[error("{0}")]
    Sfu(#[from] SfuError),
    #[error("WebRTC: {0}")]
    WebRtc(String),
    #[error("recording: {0}")]
    Recording(String),
}

fn webrtc_error(e: webrtc::error::Error) -> MediaError {
    MediaError::WebRtc(e.to_string())
}

type Key = (String, String);

/// A sender on a subscriber's connection, and how packets are rewritten for it.
#[derive(Clone)]
struct Forward {
    track: Arc<TrackLocalStaticRTP>,
    ssrc: u32,
    payload_type: u8,
}

struct Peer {
    publisher: Arc<dyn PeerConnection>,
    subscriber: Arc<dyn PeerConnection>,
    subscriber_gathered: watch::Receiver<bool>,
    publisher_gathered: watch::Receiver<bool>,
    signals: mpsc::UnboundedSender<Signal>,
    senders: HashMap<String, Arc<dyn RtpSender>>,
    /// Track ids (as the browser names them) the participant said are a
    /// screen share rather than a camera.
    screens: Vec<String>,
    /// An offer is out and unanswered; `again` if the tracks changed since.
    offering: bool,
    again: bool,
}

struct Published {
    remote: Arc<dyn TrackRemote>,
    codec: RTCRtpCodec,
    /// One per simulcast layer seen so far (one for a single stream).
    ssrcs: Vec<u32>,
}

impl crate::sfu::RtpPacket for rtc::rtp::Packet {
    fn size(&self) -> usize {
        // A header without extensions and CSRCs is 12 bytes.
        12 + self.payload.len()
    }

    fn sequence(&self) -> u16 {
        self.header.sequence_number
    }

    fn timestamp(&self) -> u32 {
        self.header.timestamp
    }

    fn renumber(&mut self, sequence: u16, timestamp: u32) {
        self.header.sequence_number = sequence;
        self.header.timestamp = timestamp;
    }
}

struct Recording {
    id: String,
    tracks: HashMap<String, TrackState>,
    /// Per video track, the picture size its current file holds.
    sizes: HashMap<String, (u16, u16)>,
    /// Per track, its files' numbers, shared by the recorders it has had.
    numbers: HashMap<String, SegmentNumbers>,
    /// Recorders replaced mid-call (a change of picture size), closing
    /// their files.
    replaced: Vec<tokio::task::JoinHandle<()>>,
}

impl Recording {
    /// Closes every track's last file; returns once all are reported.
    async fn finish(self) {
        let closing: Vec<_> = self.tracks.into_values().map(|track| tokio::spawn(track.close())).collect();
        for task in closing.into_iter().chain(self.replaced) {
            let _ = task.await;
        }
    }
}

/// A recorded track's recorder.
enum TrackState {
    /// Being built off the forwarding path (it takes milliseconds); the
    /// packets that come meanwhile wait here. `start` tells this start from
    /// a later one of the same track.
    Starting {
        start: u64,
        pending: Vec<bytes::BytesMut>,
        task: tokio::task::JoinHandle<()>,
    },
    Running(Arc<TrackRecorder>),
    /// Could not start (reported); not retried for every packet.
    Failed,
}

impl TrackState {
    /// Closes the track's file; returns once it is reported. A recorder
    /// still starting finds its track gone and closes itself.
    async fn close(self) {
        match self {
            TrackState::Running(recorder) => stop_recorders(vec![recorder]).await,
            TrackState::Starting { task, .. } => {
                let _ = task.await;
            }
            TrackState::Failed => {}
        }
    }
}

struct Inner {
    config: MediaConfig,
    core: Mutex<Sfu<rtc::rtp::Packet>>,
    peers: tokio::sync::Mutex<HashMap<Key, Peer>>,
    /// Hot path: (room, subscriber, track) → sender. Read per packet.
    forwards: Mutex<HashMap<(String, String, String), Forward>>,
    published: Mutex<HashMap<(String, String), Published>>,
    events: mpsc::UnboundedSender<Report>,
    /// Rooms being recorded: the recording's id and a recorder per track
    /// (made on the track's first packet, when its payload type is known).
    recordings: Mutex<HashMap<String, Recording>>,
    /// Numbers each recorder start (`TrackState::Starting`).
    recorder_starts: AtomicU64,
    runtime: tokio::runtime::Handle,
    next_port: AtomicU64,
    forwarded: AtomicU64,
    relayed_keyframe_requests: AtomicU64,
}

/// The process's SFU. Cheap to clone.
#[derive(Clone)]
pub struct MediaServer {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for MediaServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MediaServer").field("config", &self.inner.config).finish_non_exhaustive()
    }
}

impl MediaServer {
    /// Starts the server; the receiver yields what the record should say.
    pub fn new(config: MediaConfig) -> (MediaServer, mpsc::UnboundedReceiver<Report>) {
        let (events, rx) = mpsc::unbounded_channel();
        let inner = Arc::new(Inner {
            config,
            core: Mutex::new(Sfu::new(Instant::now())),
            peers: Default::default(),
            forwards: Default::default(),
            published: Default::default(),
            events,
            recordings: Default::default(),
            recorder_starts: AtomicU64::new(0),
            runtime: tokio::runtime::Handle::current(),
            next_port: AtomicU64::new(0),
            forwarded: AtomicU64::new(0),
            relayed_keyframe_requests: AtomicU64::new(0),
        });
        tokio::spawn(tick(Arc::downgrade(&inner)));
        (MediaServer { inner }, rx)
    }

    pub fn recordings_dir(&self) -> &std::path::Path {
        &self.inner.config.recordings_dir
    }

    pub fn ice_servers(&self) -> &[IceServer] {
        &self.inner.config.ice_servers
    }

    /// Packets forwarded since start, over all calls.
    pub fn forwarded_packets(&self) -> u64 {
        self.inner.forwarded.load(Ordering::Relaxed)
    }

    /// The simulcast layer of `track` that `subscriber` receives now.
    pub fn forwarded_layer(&self, room: &str, subscriber: &str, track: &str) -> Option<u8> {
        self.inner.core.lock().expect("SFU core poisoned").forwarded_layer(room, subscriber, track)
    }

    /// Keyframe requests (PLI, FIR) from subscribers relayed to the core.
    pub fn relayed_keyframe_requests(&self) -> u64 {
        self.inner.relayed_keyframe_requests.load(Ordering::Relaxed)
    }

    /// Adds `participant` to `room` (a call); the server's offers for what
    /// they should receive arrive on `signals`.
    pub async fn join(
        &self,
        room: &str,
        participant: &str,
        role: ParticipantRole,
        signals: mpsc::UnboundedSender<Signal>,
    ) -> Result<(), MediaError> {
        let key = (room.to_owned(), participant.to_owned());
        if self.inner.peers.lock().await.contains_key(&key) {
            return Err(MediaError::AlreadyJoined);
        }
        let (publisher, publisher_gathered) = self.connect_here(&key, Side::Publisher).await?;
        let (subscriber, subscriber_gathered) = match self.connect_here(&key, Side::Subscriber).await {
            Ok(pc) => pc,
            Err(e) => {
                let _ = publisher.close().await;
                return Err(e);
            }
        };
        let peer = Peer {
            publisher,
            subscriber,
            subscriber_gathered,
            publisher_gathered,
            signals,
            senders: HashMap::new(),
            screens: Vec::new(),
            offering: false,
            again: false,
        };
        {
            let mut peers = self.inner.peers.lock().await;
            if peers.contains_key(&key) {
                drop(peers);
                close(peer).await;
                return Err(MediaError::AlreadyJoined);
            }
            peers.insert(key.clone(), peer);
        }
        match self.inner.input(Input::Join { room: key.0.clone(), participant: key.1.clone(), role }) {
            Ok(out) => {
                self.inner.clone().act(out).await;
                Ok(())
            }
            Err(e) => {
                if let Some(peer) = self.inner.peers.lock().await.remove(&key) {
                    close(peer).await;
                }
                Err(e.into())
            }
        }
    }

    /// The participant's offer on its publishing connection (the first, or a
    /// renegotiation adding or removing a screen share); returns the answer.
    /// `screens` names the track ids that are screen shares.
    pub async fn publish(
        &self,
        room: &str,
        participant: &str,
        sdp: &str,
        screens: Vec<String>,
    ) -> Result<String, MediaError> {
        check_sdp(sdp)?;
        let key = (room.to_owned(), participant.to_owned());
        let (pc, mut gathered) = {
            let mut peers = self.inner.peers.lock().await;
            let peer = peers.get_mut(&key).ok_or(MediaError::NotJoined)?;
            peer.screens.extend(screens);
            (peer.publisher.clone(), peer.publisher_gathered.clone())
        };
        let offer = RTCSessionDescription::offer(sdp.to_owned()).map_err(|e| MediaError::InvalidSdp(e.to_string()))?;
        pc.set_remote_description(offer).await.map_err(|e| MediaError::InvalidSdp(e.to_string()))?;
        // A track the browser stopped sending (a screen share ended) is
        // gone from the offer's sending sections; its packets simply stop,
        // so this is where it ends.
        let sending = sending_tracks(sdp);
        let prefix = format!("{participant}/");
        let ended: Vec<String> = {
            let published = self.inner.published.lock().expect("published poisoned");
            published
                .keys()
                .filter(|(r, t)| r == room && t.strip_prefix(&prefix).is_some_and(|id| !sending.contains(id)))
                .map(|(_, t)| t.clone())
                .collect()
        };
        for track in ended {
            self.inner.clone().end_track(room, participant, &track).await;
        }
        let answer = pc.create_answer(None).await.map_err(webrtc_error)?;
        pc.set_local_description(answer).await.map_err(webrtc_error)?;
        wait_gathered(&mut gathered).await;
        let local = pc.local_description().await.ok_or_else(|| MediaError::WebRtc("no local description".into()))?;
        Ok(local.sdp)
    }

    /// The participant's answer to the server's last [`Signal::Offer`].
    pub async fn subscriber_answer(&self, room: &str, participant: &str, sdp: &str) -> Result<(), MediaError> {
        check_sdp(sdp)?;
        let key = (room.to_owned(), participant.to_owned());
        let pc = {
            let peers = self.inner.peers.lock().await;
            peers.get(&key).ok_or(MediaError::NotJoined)?.subscriber.clone()
        };
        let answer =
            RTCSessionDescription::answer(sdp.to_owned()).map_err(|e| MediaError::InvalidSdp(e.to_string()))?;
        pc.set_remote_description(answer).await.map_err(|e| MediaError::InvalidSdp(e.to_string()))?;
        let (again, receiving) = {
            let mut peers = self.inner.peers.lock().await;
            let Some(peer) = peers.get_mut(&key) else { return Ok(()) };
            peer.offering = false;
            (std::mem::take(&mut peer.again), peer.senders.keys().cloned().collect::<Vec<_>>())
        };
        // Packets sent before this answer went nowhere (the senders were not
        // bound yet), keyframes included: ask for fresh ones.
        for track in receiving {
            if let Ok(out) = self.inner.input(Input::KeyframeWanted { room: key.0.clone(), track }) {
                self.inner.clone().act(out).await;
            }
        }
        if again {
            self.inner.clone().negotiate(key).await;
        }
        Ok(())
    }

    /// A trickled ICE candidate from the browser, for its publishing
    /// (`subscriber == false`) or receiving connection.
    pub async fn add_candidate(
        &self,
        room: &str,
        participant: &str,
        subscriber: bool,
        candidate: IceCandidateInit,
    ) -> Result<(), MediaError> {
        let key = (room.to_owned(), participant.to_owned());
        let pc = {
            let peers = self.inner.peers.lock().await;
            let peer = peers.get(&key).ok_or(MediaError::NotJoined)?;
            if subscriber {
                peer.subscriber.clone()
            } else {
                peer.publisher.clone()
            }
        };
        pc.add_ice_candidate(candidate).await.map_err(webrtc_error)
    }

    /// Removes `participant` from `room`: its connections close, its tracks
    /// end for the others.
    pub async fn leave(&self, room: &str, participant: &str, reason: Option<String>) -> Result<(), MediaError> {
        self.inner.clone().leave((room.to_owned(), participant.to_owned()), reason).await
    }

    /// Records every track of `room` (those published now and later) as
    /// `recording`, until [`MediaServer::stop_recording`] or the room closes.
    pub fn start_recording(&self, room: &str, recording: &str) -> Result<(), MediaError> {
        crate::recorder::init().map_err(|e| MediaError::Recording(e.to_string()))?;
        let mut recordings = self.inner.recordings.lock().expect("recordings poisoned");
        if recordings.contains_key(room) {
            return Err(MediaError::Recording("this call is already being recorded".into()));
        }
        recordings.insert(
            room.to_owned(),
            Recording {
                id: recording.to_owned(),
                tracks: HashMap::new(),
                sizes: HashMap::new(),
                numbers: HashMap::new(),
                replaced: Vec::new(),
            },
        );
        drop(recordings);
        self.inner.set_recording(room, true);
        Ok(())
    }

    /// Stops recording `room`; returns once every track's last segment is
    /// written and reported. `false` if it was not being recorded.
    pub async fn stop_recording(&self, room: &str) -> bool {
        let Some(recording) = self.inner.recordings.lock().expect("recordings poisoned").remove(room) else {
            return false;
        };
        self.inner.set_recording(room, false);
        recording.finish().await;
        true
    }

    pub fn is_recording(&self, room: &str) -> bool {
        self.inner.recordings.lock().expect("recordings poisoned").contains_key(room)
    }

    /// Ends the call for everyone in `room`.
    pub async fn close_room(&self, room: &str, reason: &str) {
        let keys: Vec<Key> = self.inner.peers.lock().await.keys().filter(|k| k.0 == room).cloned().collect();
        for key in keys {
            let signals = self.inner.peers.lock().await.get(&key).map(|p| p.signals.clone());
            let _ = self.inner.clone().leave(key, Some(reason.to_owned())).await;
            if let Some(signals) = signals {
                let _ = signals.send(Signal::Left { reason: reason.to_owned() });
            }
        }
    }

    /// [`MediaServer::connect`] on the server's runtime, whichever runtime
    /// the caller is on: a connection's tasks run where it was made, and
    /// they belong with the SFU's (the load benchmark gives each its own
    /// cores).
    async fn connect_here(
        &self,
        key: &Key,
        side: Side,
    ) -> Result<(Arc<dyn PeerConnection>, watch::Receiver<bool>), MediaError> {
        let (server, key) = (self.clone(), key.clone());
        self.inner
            .runtime
            .spawn(async move { server.connect(&key, side).await })
            .await
            .map_err(|e| MediaError::WebRtc(e.to_string()))?
    }

    async fn connect(
        &self,
        key: &Key,
        side: Side,
    ) -> Result<(Arc<dyn PeerConnection>, watch::Receiver<bool>), MediaError> {
        let config = &self.inner.config;
        let (gathered_tx, gathered_rx) = watch::channel(false);
        let handler =
            Arc::new(Handler { inner: Arc::downgrade(&self.inner), key: key.clone(), side, gathered: gathered_tx });
        let (first, last) = config.ports;
        let span = u64::from(last.saturating_sub(first)) + 1;
        for _ in 0..span {
            let port = first + (self.inner.next_port.fetch_add(1, Ordering::Relaxed) % span) as u16;
            let mut media_engine = MediaEngine::default();
            register_codecs(&mut media_engine)?;
            let tap = SfuTap {
                side,
                residence: config.residence.clone(),
                read: Default::default(),
                write: Default::default(),
            };
            let registry = register_default_interceptors(Registry::new(), &mut media_engine)
                .map_err(webrtc_error)?
                .with(rtc::interceptor::Slot::from(14_000), tap);
            let mut settings = SettingEngineBuilder::new().with_include_loopback_candidate(config.ip.is_loopback());
            if let Some(public) = config.public_ip {
                settings = settings
                    .with_nat_1to1_ips(vec![public.to_string()], webrtc::peer_connection::RTCIceCandidateType::Host);
            }
            let rtc_config = RTCConfigurationBuilder::new()
                .with_ice_servers(
                    config
                        .ice_servers
                        .iter()
                        .map(|s| RTCIceServer {
                            urls: s.urls.clone(),
                            username: s.username.clone(),
                            credential: s.credential.clone(),
                        })
                        .collect(),
                )
                .build();
            let built = PeerConnectionBuilder::new()
                .with_configuration(rtc_config)
                .with_media_engine(media_engine)
                .with_interceptor_registry(registry)
                .with_setting_engine(settings.build())
                .with_handler(handler.clone())
                .with_udp_addrs(vec![SocketAddr::new(config.ip, port)])
                .build()
                .await;
            match built {
                Ok(pc) => return Ok((Arc::new(pc), gathered_rx)),
                Err(e) => tracing::debug!(port, error = %e, "UDP port taken, trying the next"),
            }
        }
        Err(MediaError::NoPort(first, last))
    }
}

impl Inner {
    /// Feeds one input to the core; returns what it asked for.
    fn input(&self, input: Input<rtc::rtp::Packet>) -> Result<Vec<Output<rtc::rtp::Packet>>, SfuError> {
        let mut core = self.core.lock().expect("SFU core poisoned");
        core.handle_input(Instant::now(), input)?;
        let mut out = Vec::new();
        loop {
            match core.poll_output() {
                Output::Timeout(_) => return Ok(out),
                o => out.push(o),
            }
        }
    }

    /// Carries out the core's outputs.
    async fn act(self: Arc<Self>, outputs: Vec<Output<rtc::rtp::Packet>>) {
        for output in outputs {
            match output {
                Output::Transmit { room, to, track, mut packet } => {
                    let forward = self.forwards.lock().expect("forwards poisoned").get(&(room, to, track)).cloned();
                    // No sender yet: the subscriber's connection is still
                    // being renegotiated; the keyframe request after it
                    // catches the picture up.
                    let Some(forward) = forward else { continue };
                    packet.header.ssrc = forward.ssrc;
                    packet.header.payload_type = forward.payload_type;
                    // Extension ids were negotiated on the publisher's
                    // connection, not this one.
                    packet.header.extension = false;
                    packet.header.extensions.clear();
                    if forward.track.write_rtp(packet).await.is_ok() {
                        self.forwarded.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Output::Record { room, track, packet } => self.record(&room, &track, &packet),
                Output::Event(event) => self.clone().on_event(event).await,
                Output::Timeout(_) => {}
            }
        }
    }

    async fn on_event(self: Arc<Self>, event: MediaEvent) {
        match &event {
            MediaEvent::Subscribed { room, subscriber, track, kind, .. } => {
                self.clone().subscribe(room, subscriber, track, *kind).await;
            }
            MediaEvent::Unsubscribed { room, subscriber, track } => {
                self.forwards.lock().expect("forwards poisoned").remove(&(
                    room.clone(),
                    subscriber.clone(),
                    track.clone(),
                ));
                let key = (room.clone(), subscriber.clone());
                let removed = {
                    let mut peers = self.peers.lock().await;
                    peers.get_mut(&key).and_then(|p| p.senders.remove(track).map(|s| (p.subscriber.clone(), s)))
                };
                if let Some((pc, sender)) = removed {
                    let _ = pc.remove_track(&sender).await;
                    self.clone().negotiate(key).await;
                }
            }
            MediaEvent::KeyframeRequested { room, track } => self.send_pli(room, track).await,
            MediaEvent::TrackUnpublished { room, track, .. } => {
                self.published.lock().expect("published poisoned").remove(&(room.clone(), track.clone()));
            }
            MediaEvent::RoomClosed { room } => {
                tracing::info!(
                    forwarded_packets = self.forwarded.load(Ordering::Relaxed),
                    keyframe_requests_relayed = self.relayed_keyframe_requests.load(Ordering::Relaxed),
                    "a call's room closed (counts since start)"
                );
                let recording = self.recordings.lock().expect("recordings poisoned").remove(room);
                if let Some(recording) = recording {
                    recording.finish().await;
                }
            }
            _ => {}
        }
        if matches!(
            event,
            MediaEvent::ParticipantJoined { .. }
                | MediaEvent::ParticipantLeft { .. }
                | MediaEvent::TrackPublished { .. }
                | MediaEvent::TrackUnpublished { .. }
                | MediaEvent::RoomClosed { .. }
        ) {
            let _ = self.events.send(Report::Media(event));
        }
    }

    async fn subscribe(self: Arc<Self>, room: &str, subscriber: &str, track: &str, kind: TrackKind) {
        let codec = {
            let published = self.published.lock().expect("published poisoned");
            match published.get(&(room.to_owned(), track.to_owned())) {
                Some(p) => p.codec.clone(),
                None => return,
            }
        };
        let ssrc = rand_ssrc();
        let payload_type = if kind == TrackKind::Audio { OPUS_PT } else { VP8_PT };
        let codec_kind = if kind == TrackKind::Audio { RtpCodecKind::Audio } else { RtpCodecKind::Video };
        let local = Arc::new(TrackLocalStaticRTP::new(MediaStreamTrack::new(
            format!("{room}-{track}"),
            track.to_owned(),
            format!("{kind:?}"),
            codec_kind,
            vec![RTCRtpEncodingParameters {
                rtp_coding_parameters: RTCRtpCodingParameters { ssrc: Some(ssrc), ..Default::default() },
                codec: RTCRtpCodec { rtcp_feedback: Vec::new(), ..codec },
                ..Default::default()
            }],
        )));
        let key = (room.to_owned(), subscriber.to_owned());
        let pc = match self.peers.lock().await.get(&key) {
            Some(peer) => peer.subscriber.clone(),
            None => return,
        };
        let sender = match pc.add_track(local.clone() as Arc<dyn TrackLocal>).await {
            Ok(sender) => sender,
            Err(e) => {
                tracing::warn!(error = %e, "could not add a track to a subscriber");
                return;
            }
        };
        if let Some(peer) = self.peers.lock().await.get_mut(&key) {
            peer.senders.insert(track.to_owned(), sender);
        }
        self.forwards.lock().expect("forwards poisoned").insert(
            (room.to_owned(), subscriber.to_owned(), track.to_owned()),
            Forward { track: local.clone(), ssrc, payload_type },
        );
        // Audio too: a receiver's bandwidth estimate may come addressed to
        // its audio stream.
        tokio::spawn(self.clone().relay_receiver_feedback(
            room.to_owned(),
            subscriber.to_owned(),
            track.to_owned(),
            local,
        ));
        self.negotiate(key).await;
    }

    /// Asks the publisher of `track` for a keyframe.
    async fn send_pli(&self, room: &str, track: &str) {
        let target = {
            let published = self.published.lock().expect("published poisoned");
            published.get(&(room.to_owned(), track.to_owned())).map(|p| (p.remote.clone(), p.ssrcs.clone()))
        };
        if let Some((remote, ssrcs)) = target {
            let requests: Vec<Box<dyn rtc::rtcp::Packet>> = ssrcs
                .into_iter()
                .map(|media_ssrc| Box::new(PictureLossIndication { sender_ssrc: 0, media_ssrc }) as _)
                .collect();
            let _ = remote.write_rtcp(requests).await;
        }
    }

    /// What a subscriber's receiver says about `track`: its decoder lost
    /// the picture (ask the publisher, through the core, which throttles,
    /// for a keyframe), or how much it can receive (a REMB). Ends with the
    /// sender.
    async fn relay_receiver_feedback(
        self: Arc<Self>,
        room: String,
        subscriber: String,
        track: String,
        local: Arc<TrackLocalStaticRTP>,
    ) {
        use rtc::rtcp::payload_feedbacks::receiver_estimated_maximum_bitrate::ReceiverEstimatedMaximumBitrate;
        use webrtc::media_stream::track_local::TrackLocalEvent;
        let mut estimated = false;
        while let Some(event) = local.poll().await {
            let TrackLocalEvent::OnRtcpPacket(packets) = event else { continue };
            let estimate =
                packets.iter().rev().find_map(|p| p.as_any().downcast_ref::<ReceiverEstimatedMaximumBitrate>());
            if let Some(remb) = estimate {
                if !std::mem::replace(&mut estimated, true) {
                    tracing::info!(
                        room,
                        participant = subscriber,
                        bps = remb.bitrate as u64,
                        "a receiver's first bandwidth estimate"
                    );
                }
                let bps =
                    Input::Bandwidth { room: room.clone(), participant: subscriber.clone(), bps: remb.bitrate as u64 };
                if self.input(bps).is_err() {
                    return;
                }
            }
            if packets.iter().any(|p| is_keyframe_request(p.as_ref())) {
                self.relayed_keyframe_requests.fetch_add(1, Ordering::Relaxed);
                // Only keyframe requests can come of this input (not
                // `act`, which could recurse into subscribing).
                let Ok(out) = self.input(Input::KeyframeWanted { room: room.clone(), track: track.clone() }) else {
                    return;
                };
                for o in out {
                    if let Output::Event(MediaEvent::KeyframeRequested { room, track }) = o {
                        self.send_pli(&room, &track).await;
                    }
                }
            }
        }
    }

    /// Offers the subscriber connection's current tracks, unless an offer
    /// is already out (then once its answer is in).
    async fn negotiate(self: Arc<Self>, key: Key) {
        let (pc, signals, mut gathered) = {
            let mut peers = self.peers.lock().await;
            let Some(peer) = peers.get_mut(&key) else { return };
            if peer.offering {
                peer.again = true;
                return;
            }
            peer.offering = true;
            (peer.subscriber.clone(), peer.signals.clone(), peer.subscriber_gathered.clone())
        };
        let offer = match pc.create_offer(None).await {
            Ok(offer) => offer,
            Err(e) => {
                tracing::warn!(error = %e, "subscriber offer failed");
                return;
            }
        };
        if let Err(e) = pc.set_local_description(offer).await {
            tracing::warn!(error = %e, "subscriber offer failed");
            return;
        }
        wait_gathered(&mut gathered).await;
        if let Some(local) = pc.local_description().await {
            let _ = signals.send(Signal::Offer { sdp: local.sdp });
        }
    }

    async fn on_track(self: Arc<Self>, key: Key, remote: Arc<dyn TrackRemote>) {
        let (room, participant) = key.clone();
        // A simulcast track may not know its streams before their first
        // packets: then the first packet names the first one.
        let mut first = None;
        let ssrc = match remote.ssrcs().await.first() {
            Some(&ssrc) => ssrc,
            None => loop {
                match remote.poll().await {
                    Some(TrackRemoteEvent::OnRtpPacket(packet)) => {
                        let ssrc = packet.header.ssrc;
                        first = Some(packet);
                        break ssrc;
                    }
                    Some(_) => continue,
                    None => return,
                }
            },
        };
        let Some(codec) = remote.codec(ssrc).await else { return };
        let browser_id = remote.track_id().await;
        let kind = match remote.kind().await {
            RtpCodecKind::Audio => TrackKind::Audio,
            _ => {
                let peers = self.peers.lock().await;
                match peers.get(&key) {
                    Some(p) if p.screens.contains(&browser_id) => TrackKind::Screen,
                    _ => TrackKind::Video,
                }
            }
        };
        // Scoped by participant: one browser cannot take over another's id.
        let track = format!("{participant}/{browser_id}");
        let published_key = (room.clone(), track.clone());
        self.published.lock().expect("published poisoned").insert(
            published_key.clone(),
            Published { remote: remote.clone(), codec: codec.clone(), ssrcs: Vec::new() },
        );
        let publish = Input::Publish {
            room: room.clone(),
            participant: participant.clone(),
            track: track.clone(),
            kind,
            codec: codec.mime_type.clone(),
        };
        match self.input(publish) {
            Ok(out) => self.clone().act(out).await,
            Err(e) => {
                tracing::warn!(error = %e, "track not published");
                return;
            }
        }
        let vp8 = codec.mime_type.eq_ignore_ascii_case("video/vp8");
        let mut layers: HashMap<u32, u8> = HashMap::new();
        loop {
            let packet = match first.take() {
                Some(packet) => packet,
                None => match remote.poll().await {
                    Some(TrackRemoteEvent::OnRtpPacket(packet)) => packet,
                    Some(_) => continue,
                    None => break,
                },
            };
            let ssrc = packet.header.ssrc;
            let layer = match layers.get(&ssrc) {
                Some(&layer) => layer,
                None => {
                    let layer = simulcast_layer(remote.as_ref(), ssrc).await;
                    layers.insert(ssrc, layer);
                    if let Some(p) = self.published.lock().expect("published poisoned").get_mut(&published_key) {
                        p.ssrcs.push(ssrc);
                    }
                    layer
                }
            };
            let keyframe = vp8 && vp8_keyframe(&packet.payload);
            let media = Input::Media { room: room.clone(), track: track.clone(), layer, packet, keyframe };
            match self.input(media) {
                Ok(out) => self.clone().act(out).await,
                Err(_) => break,
            }
        }
        self.end_track(&room, &participant, &track).await;
    }

    /// A published track ended: its recording closes, subscribers drop it.
    async fn end_track(self: Arc<Self>, room: &str, participant: &str, track: &str) {
        let recorder =
            self.recordings.lock().expect("recordings poisoned").get_mut(room).and_then(|r| r.tracks.remove(track));
        if let Some(recorder) = recorder {
            recorder.close().await;
        }
        let unpublish =
            Input::Unpublish { room: room.to_owned(), participant: participant.to_owned(), track: track.to_owned() };
        if let Ok(out) = self.input(unpublish) {
            self.act(out).await;
        }
    }

    /// Hands a packet to the track's recorder, starting one on the track's
    /// first packet (its payload type known then) and anew when a video
    /// keyframe changes the picture size (another simulcast layer, or the
    /// browser scaling its camera down under load): a WebM file holds one
    /// size, so the track goes on in its next file. A recorder is built on
    /// a blocking thread ([`Inner::recorder_started`]), never here: this is
    /// the forwarding path.
    fn record(self: &Arc<Self>, room: &str, track: &str, packet: &rtc::rtp::Packet) {
        use rtc::shared::marshal::Marshal;
        let Ok(bytes) = packet.marshal() else { return };
        let mut recordings = self.recordings.lock().expect("recordings poisoned");
        let Some(recording) = recordings.get_mut(room) else { return };
        let size = vp8_keyframe_size(&packet.payload);
        if let (Some(current), Some(new)) = (recording.sizes.get_mut(track), size) {
            if *current != new {
                tracing::info!(track, from = ?*current, to = ?new, "picture size changed: the track's recording goes on in a new file");
                *current = new;
                if let Some(old) = recording.tracks.remove(track) {
                    recording.replaced.push(self.runtime.spawn(old.close()));
                }
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
                let published = self.published.lock().expect("published poisoned");
                let Some(codec) = published.get(&(room.to_owned(), track.to_owned())).map(|p| p.codec.clone()) else {
                    return;
                };
                drop(published);
                if codec.mime_type.eq_ignore_ascii_case("video/vp8") {
                    // (The core hands a recorder a keyframe first.)
                    recording.sizes.entry(track.to_owned()).or_insert(size.unwrap_or_default());
                }
                let start = self.recorder_starts.fetch_add(1, Ordering::Relaxed);
                let numbers = recording.numbers.entry(track.to_owned()).or_default().clone();
                let (inner, room, id, track_id) =
                    (self.clone(), room.to_owned(), recording.id.clone(), track.to_owned());
                let payload_type = packet.header.payload_type;
                // Waits for `recordings`, held here until the track is marked.
                let task = self.runtime.spawn_blocking(move || {
                    inner.recorder_started(&room, &id, &track_id, start, &codec, payload_type, &numbers)
                });
                recording.tracks.insert(track.to_owned(), TrackState::Starting { start, pending: vec![bytes], task });
            }
        }
    }

    /// Builds a track's recorder (blocking) and puts it to work with the
    /// packets that came meanwhile — unless the track's recording was
    /// stopped or restarted in the meantime: then it is closed again.
    #[allow(clippy::too_many_arguments)]
    fn recorder_started(
        self: &Arc<Self>,
        room: &str,
        recording: &str,
        track: &str,
        start: u64,
        codec: &RTCRtpCodec,
        payload_type: u8,
        numbers: &SegmentNumbers,
    ) {
        let recorder = self.start_recorder(room, recording, track, codec, payload_type, numbers);
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
            }
            (Some(slot), None) => *slot = TrackState::Failed,
            (None, Some(recorder)) => {
                drop(recordings);
                if let Ok(recorder) = Arc::try_unwrap(recorder) {
                    recorder.stop();
                }
            }
            (None, None) => {}
        }
    }

    /// Tells the core whether `room`'s media goes to the recorder.
    fn set_recording(self: &Arc<Self>, room: &str, on: bool) {
        if let Ok(out) = self.input(Input::Recording { room: room.to_owned(), on }) {
            self.runtime.spawn(self.clone().act(out));
        }
    }

    fn start_recorder(
        self: &Arc<Self>,
        room: &str,
        recording: &str,
        track: &str,
        codec: &RTCRtpCodec,
        payload_type: u8,
        numbers: &SegmentNumbers,
    ) -> Option<Arc<TrackRecorder>> {
        let relative = format!("{recording}/{}", track_dir_name(track));
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
                    error: e.to_string(),
                },
            };
            let _ = events.send(report);
        };
        let (weak, runtime, key) = (Arc::downgrade(self), self.runtime.clone(), (room.to_owned(), track.to_owned()));
        let keyframe_wanted = move || {
            let (weak, key) = (weak.clone(), key.clone());
            runtime.spawn(async move {
                let Some(inner) = weak.upgrade() else { return };
                if let Ok(out) = inner.input(Input::KeyframeWanted { room: key.0, track: key.1 }) {
                    inner.act(out).await;
                }
            });
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
                });
                None
            }
        }
    }

    async fn leave(self: Arc<Self>, key: Key, reason: Option<String>) -> Result<(), MediaError> {
        let peer = self.peers.lock().await.remove(&key).ok_or(MediaError::NotJoined)?;
        self.forwards.lock().expect("forwards poisoned").retain(|(room, to, _), _| !(room == &key.0 && to == &key.1));
        close(peer).await;
        let out = self.input(Input::Leave { room: key.0, participant: key.1, reason })?;
        self.act(out).await;
        Ok(())
    }
}

/// The directory a track's segments go in, under its recording's: the
/// track id with anything but letters, digits and `-` made `_`.
pub fn track_dir_name(track: &str) -> String {
    track.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' }).collect()
}

/// Stops recorders off the runtime (each waits for its last segment).
async fn stop_recorders(recorders: Vec<Arc<TrackRecorder>>) {
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

async fn close(peer: Peer) {
    let _ = peer.publisher.close().await;
    let _ = peer.subscriber.close().await;
}

/// Gives the core its timeouts (keyframe requests owed, stalled tracks).
async fn tick(inner: Weak<Inner>) {
    let mut interval = tokio::time::interval(Duration::from_millis(100));
    loop {
        interval.tick().await;
        let Some(inner) = inner.upgrade() else { return };
        if let Ok(out) = inner.input(Input::Timeout) {
            inner.act(out).await;
        }
    }
}

async fn wait_gathered(gathered: &mut watch::Receiver<bool>) {
    let _ = tokio::time::timeout(GATHER_TIMEOUT, gathered.wait_for(|done| *done)).await;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Publisher,
    Subscriber,
}

struct Handler {
    inner: Weak<Inner>,
    key: Key,
    side: Side,
    gathered: watch::Sender<bool>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        let _ = self.gathered.send(state == RTCIceGatheringState::Complete);
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        if state == RTCPeerConnectionState::Failed {
            if let Some(inner) = self.inner.upgrade() {
                let signals = inner.peers.lock().await.get(&self.key).map(|p| p.signals.clone());
                if inner.leave(self.key.clone(), Some("connection failed".into())).await.is_ok() {
                    if let Some(signals) = signals {
                        let _ = signals.send(Signal::Left { reason: "connection failed".into() });
                    }
                }
            }
        }
    }

    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        if self.side != Side::Publisher {
            return;
        }
        if let Some(inner) = self.inner.upgrade() {
            tokio::spawn(inner.on_track(self.key.clone(), track));
        }
    }
}

/// The SFU's place in each connection's interceptor chain (last, so the
/// others see all inbound RTCP first).
///
/// Inbound RTCP: hands subscribers' keyframe requests (PLI, FIR) and
/// bandwidth estimates (REMB) to the application — inbound RTCP otherwise
/// ends in the chain — so the SFU can relay the requests to the publisher
/// and pick simulcast layers (`Inner::relay_receiver_feedback`); drops the
/// rest, which the interceptors before it already acted on.
///
/// Benchmarks: with a [`Residence`], stamps RTP arriving on a publishing
/// connection and leaving on a receiving one.
struct SfuTap {
    side: Side,
    residence: Option<Arc<Residence>>,
    read: std::collections::VecDeque<rtc::interceptor::TaggedPacket>,
    write: std::collections::VecDeque<rtc::interceptor::TaggedPacket>,
}

impl rtc::sansio::Protocol<rtc::interceptor::TaggedPacket, rtc::interceptor::TaggedPacket, ()> for SfuTap {
    type Rout = rtc::interceptor::TaggedPacket;
    type Wout = rtc::interceptor::TaggedPacket;
    type Eout = ();
    type Error = rtc::shared::error::Error;
    type Time = Instant;

    fn handle_read(&mut self, mut msg: rtc::interceptor::TaggedPacket) -> Result<(), Self::Error> {
        match &msg.message.packet {
            rtc::interceptor::Packet::Rtcp(packets) => {
                let wanted: Vec<Box<dyn rtc::rtcp::Packet>> = packets
                    .iter()
                    .filter(|p| is_keyframe_request(p.as_ref()) || is_remb(p.as_ref()))
                    .cloned()
                    .collect();
                if wanted.is_empty() {
                    return Ok(());
                }
                msg.message.packet = rtc::interceptor::Packet::Rtcp(wanted);
                msg.message.add(rtc::interceptor::Attribute::DeliverToApplication);
            }
            rtc::interceptor::Packet::Rtp(packet) => {
                if let (Side::Publisher, Some(residence)) = (self.side, &self.residence) {
                    residence.arrived(packet);
                }
            }
            _ => {}
        }
        self.read.push_back(msg);
        Ok(())
    }

    fn poll_read(&mut self) -> Option<Self::Rout> {
        self.read.pop_front()
    }

    fn handle_write(&mut self, msg: rtc::interceptor::TaggedPacket) -> Result<(), Self::Error> {
        if let (Side::Subscriber, Some(residence), rtc::interceptor::Packet::Rtp(packet)) =
            (self.side, &self.residence, &msg.message.packet)
        {
            residence.departed(packet);
        }
        self.write.push_back(msg);
        Ok(())
    }

    fn poll_write(&mut self) -> Option<Self::Wout> {
        self.write.pop_front()
    }
}

impl rtc::interceptor::Interceptor for SfuTap {
    fn bind_local_stream(&mut self, _info: &rtc::interceptor::StreamInfo) {}
    fn unbind_local_stream(&mut self, _info: &rtc::interceptor::StreamInfo) {}
    fn bind_remote_stream(&mut self, _info: &rtc::interceptor::StreamInfo) {}
    fn unbind_remote_stream(&mut self, _info: &rtc::interceptor::StreamInfo) {}
}

fn is_keyframe_request(packet: &dyn rtc::rtcp::Packet) -> bool {
    use rtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
    let any = packet.as_any();
    any.is::<PictureLossIndication>() || any.is::<FullIntraRequest>()
}

fn is_remb(packet: &dyn rtc::rtcp::Packet) -> bool {
    use rtc::rtcp::payload_feedbacks::receiver_estimated_maximum_bitrate::ReceiverEstimatedMaximumBitrate;
    packet.as_any().is::<ReceiverEstimatedMaximumBitrate>()
}

/// Which simulcast layer (0, the smallest, up) the stream `ssrc` of
/// `remote` is: by its RID — `q`, `h`, `f` (quarter, half, full size) as
/// the pages name them, else its place among the track's encodings. A
/// track sent as one stream has only layer 0.
async fn simulcast_layer(remote: &dyn TrackRemote, ssrc: u32) -> u8 {
    let Some(rid) = remote.rid(ssrc).await.filter(|rid| !rid.is_empty()) else { return 0 };
    match rid.as_str() {
        "q" => 0,
        "h" => 1,
        "f" => 2,
        _ => remote.codings().await.iter().position(|c| c.rtp_coding_parameters.rid == rid).unwrap_or(0) as u8,
    }
}

/// The codecs Witness's SFU negotiates — Opus, and VP8 with NACK, PLI,
/// FIR and REMB feedback — on a connection's media engine.
pub fn register_codecs(media_engine: &mut MediaEngine) -> Result<(), MediaError> {
    let feedback = |typ: &str, parameter: &str| RTCPFeedback { typ: typ.into(), parameter: parameter.into() };
    let opus = RTCRtpCodecParameters {
        rtp_codec: RTCRtpCodec {
            mime_type: "audio/opus".into(),
            clock_rate: 48_000,
            channels: 2,
            sdp_fmtp_line: "minptime=10;useinbandfec=1".into(),
            rtcp_feedback: Vec::new(),
        },
        payload_type: OPUS_PT,
    };
    let vp8 = RTCRtpCodecParameters {
        rtp_codec: RTCRtpCodec {
            mime_type: "video/VP8".into(),
            clock_rate: 90_000,
            channels: 0,
            sdp_fmtp_line: String::new(),
            rtcp_feedback: vec![
                feedback("nack", ""),
                feedback("nack", "pli"),
                feedback("ccm", "fir"),
                // Receivers send their bandwidth estimate (REMB): it picks
                // the simulcast layer they get.
                feedback("goog-remb", ""),
            ],
        },
        payload_type: VP8_PT,
    };
    media_engine.register_codec(opus, RtpCodecKind::Audio).map_err(webrtc_error)?;
    // (The header extensions simulcast needs, mid and RID, come with the
    // default interceptors.)
    media_engine.register_codec(vp8, RtpCodecKind::Video).map_err(webrtc_error)
}

/// Where the VP8 frame header is in an RTP payload that starts a frame
/// (RFC 7741 §4.2: S bit set, partition 0), past the payload descriptor.
fn vp8_frame_start(payload: &[u8]) -> Option<usize> {
    let &first = payload.first()?;
    if first & 0x10 == 0 || first & 0x07 != 0 {
        return None;
    }
    let mut at = 1;
    if first & 0x80 != 0 {
        let &x = payload.get(at)?;
        at += 1;
        if x & 0x80 != 0 {
            // PictureID: one byte, or two if its M bit is set.
            let &pid = payload.get(at)?;
            at += if pid & 0x80 != 0 { 2 } else { 1 };
        }
        if x & 0x40 != 0 {
            at += 1; // TL0PICIDX
        }
        if x & 0x30 != 0 {
            at += 1; // TID / KEYIDX
        }
    }
    (at < payload.len()).then_some(at)
}

/// Whether a VP8 RTP payload starts a keyframe: the first packet of a
/// frame whose frame header has the inverse key frame flag P clear.
pub fn vp8_keyframe(payload: &[u8]) -> bool {
    vp8_frame_start(payload).is_some_and(|at| payload[at] & 0x01 == 0)
}

/// The picture size (width, height) a VP8 keyframe's first packet states
/// (RFC 6386 §9.1: after the 3-byte frame tag, the start code 9d 01 2a,
/// then 14-bit width and height, little-endian).
pub fn vp8_keyframe_size(payload: &[u8]) -> Option<(u16, u16)> {
    let at = vp8_frame_start(payload).filter(|&at| payload[at] & 0x01 == 0)?;
    let header = payload.get(at..at + 10)?;
    if header[3..6] != [0x9d, 0x01, 0x2a] {
        return None;
    }
    let width = u16::from_le_bytes([header[6], header[7]]) & 0x3fff;
    let height = u16::from_le_bytes([header[8], header[9]]) & 0x3fff;
    Some((width, height))
}

/// Refuses what is plainly not an SDP before any WebRTC state is touched.
fn check_sdp(sdp: &str) -> Result<(), MediaError> {
    if sdp.len() > 64 * 1024 {
        return Err(MediaError::InvalidSdp("longer than 64 KiB".into()));
    }
    if !sdp.starts_with("v=0") {
        return Err(MediaError::InvalidSdp("an SDP starts with `v=0`".into()));
    }
    if !sdp.lines().any(|l| l.starts_with("m=")) {
        return Err(MediaError::InvalidSdp("no media section (`m=` line)".into()));
    }
    Ok(())
}

/// The track ids (`a=msid:STREAM TRACK`) of the media sections an SDP
/// sends on (`sendrecv` or `sendonly`, port not 0).
fn sending_tracks(sdp: &str) -> std::collections::HashSet<String> {
    let mut tracks = std::collections::HashSet::new();
    for section in sdp.split("\nm=").skip(1) {
        let rejected = section.split_whitespace().nth(1) == Some("0");
        let mut sends = true; // sendrecv is the default direction
        let mut ids = Vec::new();
        for line in section.lines().map(str::trim_end) {
            match line {
                "a=recvonly" | "a=inactive" => sends = false,
                "a=sendonly" | "a=sendrecv" => sends = true,
                _ => {
                    if let Some(msid) = line.strip_prefix("a=msid:") {
                        if let Some(track) = msid.split_whitespace().nth(1) {
                            ids.push(track.to_owned());
                        }
                    }
                }
            }
        }
        if sends && !rejected {
            tracks.extend(ids);
        }
    }
    tracks
}

/// A random SSRC (never 0).
pub(crate) fn rand_ssrc() -> u32 {
    use rand_core::RngCore;
    rand_core::OsRng.next_u32().max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vp8_keyframes_are_recognised_with_and_without_extensions() {
        // S bit, partition 0, then a frame header with P clear: keyframe.
        assert!(vp8_keyframe(&[0x10, 0x00]));
        assert!(!vp8_keyframe(&[0x10, 0x01]), "P set: interframe");
        assert!(!vp8_keyframe(&[0x00, 0x00]), "not the first packet of a frame");
        // X, I with a 15-bit picture id (M set), then the frame header.
        assert!(vp8_keyframe(&[0x90, 0x80, 0x81, 0x23, 0x00]));
        assert!(!vp8_keyframe(&[0x90, 0x80, 0x81, 0x23, 0x01]));
        // X, I (7-bit id), L and T present.
        assert!(vp8_keyframe(&[0x90, 0xe0, 0x05, 0x01, 0x20, 0x00]));
        assert!(!vp8_keyframe(&[0x90, 0xe0]), "truncated");
        assert!(!vp8_keyframe(&[]));
    }

    #[test]
    fn a_vp8_keyframe_states_its_picture_size() {
        // Descriptor with a 15-bit picture id, frame tag, start code, 640 × 480.
        let key = [0x90, 0x80, 0x81, 0x23, 0x50, 0x42, 0x00, 0x9d, 0x01, 0x2a, 0x80, 0x02, 0xe0, 0x01];
        assert_eq!(vp8_keyframe_size(&key), Some((640, 480)));
        // The top two bits of each are the scaling mode, not the size.
        let scaled = [0x10, 0x50, 0x42, 0x00, 0x9d, 0x01, 0x2a, 0x40, 0x41, 0xf0, 0x40];
        assert_eq!(vp8_keyframe_size(&scaled), Some((320, 240)));
        let mut delta = key;
        delta[4] |= 0x01;
        assert_eq!(vp8_keyframe_size(&delta), None, "an interframe states no size");
        let mut garbled = key;
        garbled[8] = 0;
        assert_eq!(vp8_keyframe_size(&garbled), None, "no start code");
        assert_eq!(vp8_keyframe_size(&key[..10]), None, "truncated");
    }

    #[test]
    fn the_tracks_an_offer_still_sends_are_read_from_its_sections() {
        let sdp = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\n\
            m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=sendrecv\r\na=msid:s mic\r\n\
            m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=sendonly\r\na=msid:s cam\r\n\
            m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=recvonly\r\n\
            m=video 0 UDP/TLS/RTP/SAVPF 96\r\na=sendonly\r\na=msid:t old\r\n\
            m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=inactive\r\na=msid:t screen\r\n";
        let mut sending: Vec<String> = sending_tracks(sdp).into_iter().collect();
        sending.sort();
        assert_eq!(sending, ["cam", "mic"]);
    }

    #[test]
    fn what_is_not_an_sdp_is_refused() {
        assert!(matches!(check_sdp("hello"), Err(MediaError::InvalidSdp(_))));
        assert!(matches!(check_sdp("v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\n"), Err(MediaError::InvalidSdp(_))));
        assert!(check_sdp("v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n").is_ok());
    }
}
