//! The driver of the SFU: sans-I/O WebRTC peer connections (the `rtc`
//! crate) around the sans-I/O [`Sfu`](crate::sfu::Sfu) core, on a thread
//! per core.
//!
//! A [`MediaServer`] is shared by every call of the process. Signaling comes
//! in through its methods ([`MediaServer::join`], [`MediaServer::publish`],
//! [`MediaServer::subscriber_answer`], [`MediaServer::leave`]) and goes out as
//! [`Signal`]s on the channel each participant joined with; what the record
//! should say (joins, tracks, leaves) comes out of the receiver
//! [`MediaServer::new`] returns.
//!
//! ## Media threads
//!
//! Rooms are spread over the media threads ([`MediaConfig::threads`], one
//! per core by default, each named `sfu`) by a hash of the room id. Every
//! connection of a room's calls lives on its room's thread, which has a
//! UDP socket of its own: a datagram is read, handed to its connection (found by
//! source address, or by the ICE username of a STUN request from a new
//! address), and its media goes through the core and out to the
//! subscribers before the next datagram is read — no task or channel
//! between a packet's arrival and its forwarding.
//!
//! ## Media past the connections' pipelines
//!
//! Media does not go through `rtc`'s per-connection pipeline (its
//! demultiplexer, ICE statistics, SRTP handler, interceptors and a queue
//! per stage), which cost nearly half of the media thread per forwarded
//! packet (BENCHMARKS.md, "Media past the connections' pipelines"). Once a
//! publisher's stream has opened (its first packets go through the
//! connection, which names the track), the media thread decrypts its
//! packets with the connection's SRTP context; a forwarded packet is
//! encrypted with the subscriber connection's and sent to that
//! connection's remote address. What the pipeline's interceptors did for
//! that media is done beside it: a chain of `rtc`'s own receiving
//! interceptors per publisher connection (`Incoming`: NACKs, receiver
//! reports, transport-wide congestion-control feedback) sees every media
//! packet and the publisher's sender reports; per forwarded stream the
//! thread keeps the packets it sent, to answer NACKs, and sends sender
//! reports (`sent.rs`). The connections carry everything else: ICE,
//! DTLS, RTCP both ways, and the chains they hold are only the SFU's tap.
//!
//! The methods of [`MediaServer`] are commands to the room's thread.
//! Recorders (and their GStreamer pipelines) are built on the caller's
//! tokio runtime's blocking threads and fed from the media thread without
//! waiting.
//!
//! The `webrtc` crate, which wraps the same `rtc` connections in tokio tasks
//! (a task and channels per connection and per track), cost about 1.7 times
//! the CPU per forwarded packet and queued packets between its tasks
//! (BENCHMARKS.md, "Where the SFU's CPU goes"); it is kept for the test
//! peers ([`crate::loopback`]).

use std::collections::HashMap;
use std::io::IoSliceMut;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use rtc::interceptor::Registry;
use rtc::interceptor::TaggedPacket;
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::configuration::interceptor_registry::{
    configure_simulcast_extension_headers, configure_twcc_receiver_only,
};
use rtc::peer_connection::configuration::media_engine::MediaEngine;
use rtc::peer_connection::event::{RTCPeerConnectionEvent, RTCTrackEvent, RTCTrackEventInit};
use rtc::peer_connection::message::{RTCMessage, TaggedRTCMessage};
use rtc::peer_connection::sdp::RTCSessionDescription;
use rtc::peer_connection::state::RTCPeerConnectionState;
use rtc::peer_connection::transport::{CandidateConfig, CandidateHostConfig, RTCIceCandidate};
use rtc::peer_connection::{RTCPeerConnection, RTCPeerConnectionBuilder};
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtcp::transport_feedbacks::transport_layer_nack::TransportLayerNack;
use rtc::rtp_transceiver::rtp_sender::{
    RTCPFeedback, RTCRtpCodec, RTCRtpCodecParameters, RTCRtpCodingParameters, RTCRtpEncodingParameters, RtpCodecKind,
};
use rtc::rtp_transceiver::{RTCRtpReceiverId, RTCRtpSenderId};
use rtc::sansio::Protocol;
use rtc::shared::{TaggedBytesMut, TransportContext, TransportProtocol};
use tokio::sync::{mpsc, oneshot};
use witness_schemas::metrics::{Counter, Histogram};
use witness_schemas::{ParticipantRole, TrackKind};

use crate::recorder::{RecorderError, Segment, SegmentNumbers, TrackRecorder};
use crate::sent::SentStream;
use crate::sfu::{Census, Input, MediaEvent, Output, Sfu, SfuError};

/// A trickled ICE candidate, as the browser's `RTCIceCandidateInit` (JSON).
pub use rtc::peer_connection::transport::RTCIceCandidateInit as IceCandidateInit;

/// Payload types the server uses towards subscribers (it writes the offers
/// on those connections, so these are the negotiated ones).
pub const OPUS_PT: u8 = 111;
pub const VP8_PT: u8 = 96;
/// How often the core is given [`Input::Timeout`] (keyframe requests owed,
/// stalled tracks) when nothing else wakes the thread.
const TICK: Duration = Duration::from_millis(100);
/// How often each forwarded stream's sender report goes out.
const REPORT: Duration = Duration::from_secs(1);
/// Datagrams read in one go before commands and timeouts get a turn.
const READ_BATCH: usize = 256;

/// Where the SFU listens and what browsers are told about reaching it.
#[derive(Debug, Clone)]
pub struct MediaConfig {
    /// Address the UDP socket binds to and announces (unless `public_ip`).
    pub ip: IpAddr,
    /// Inclusive UDP port range: each media thread takes the first free
    /// port in it; every connection of its calls shares that port.
    pub ports: (u16, u16),
    /// Media threads: each drives the calls of its share of the rooms (a
    /// room's connections all on one) with a socket of its own.
    pub threads: usize,
    /// Announced instead of `ip` when the server sits behind a 1:1 NAT.
    pub public_ip: Option<IpAddr>,
    /// STUN/TURN servers handed to browsers. The server itself gathers no
    /// candidates: it announces its host address (or `public_ip`).
    pub ice_servers: Vec<IceServer>,
    /// Where recordings are written: `RECORDING/TRACK/00000.webm`, …
    pub recordings_dir: PathBuf,
    /// The length of a recording segment.
    pub segment: Duration,
    /// Benchmarks: time each forwarded packet through the SFU (see
    /// [`AddedLatency`]). Off in service.
    pub latency: Option<Arc<AddedLatency>>,
    /// Which remote ICE candidates the SFU sends checks to; the default,
    /// for a server on loopback, admits local peers. `witness serve` sets
    /// its own ([`crate::candidates`]).
    pub candidates: crate::candidates::CandidatePolicy,
}

/// The latency the SFU adds to each packet it forwards: from the
/// datagram's arrival in the media thread's socket (the kernel's receive
/// timestamp) until the packet, encrypted for its subscriber, has been
/// handed back to the kernel. That is the wait in the socket while the
/// thread is busy, decryption, the SFU's own work and encryption: all
/// the SFU adds on its machine; the network and the peers are not in it.
#[derive(Debug, Default)]
pub struct AddedLatency {
    /// One per forwarded packet, in µs.
    pub delays_us: Mutex<Vec<u64>>,
}

/// One media thread per core.
pub fn default_media_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

impl Default for MediaConfig {
    fn default() -> Self {
        MediaConfig {
            ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            ports: (50_000, 50_999),
            threads: default_media_threads(),
            public_ip: None,
            ice_servers: Vec::new(),
            recordings_dir: PathBuf::from("data/recordings"),
            segment: crate::recorder::DEFAULT_SEGMENT,
            latency: None,
            candidates: crate::candidates::CandidatePolicy::LOCAL,
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
    /// A track's recorder failed or could not start (the call goes on).
    /// `resumed`: it was restarted and the track goes on in a new segment
    /// after a gap; else the rest of the track is not recorded.
    RecordingFailed { room: String, recording: String, track: String, error: String, resumed: bool },
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

    fn padding_only(&self) -> bool {
        self.payload.is_empty()
    }
}

struct Recording {
    id: String,
    tracks: HashMap<String, TrackState>,
    /// Per video track, the picture size its current file holds.
    sizes: HashMap<String, (u16, u16)>,
    /// Per track, its files' numbers, shared by the recorders it has had.
    numbers: HashMap<String, SegmentNumbers>,
}

impl Recording {
    /// Closes every track's last file (and the files before it, a
    /// recorder's start waiting for the previous recorder's close);
    /// returns once all are reported.
    async fn finish(self) {
        let closing: Vec<_> = self.tracks.into_values().map(|track| tokio::spawn(track.close())).collect();
        for task in closing {
            let _ = task.await;
        }
    }
}

/// A recorded track's recorder.
enum TrackState {
    /// Being built off the forwarding path (it takes milliseconds); the
    /// packets that come meanwhile wait here. `start` tells this start from
    /// a later one of the same track. The task yields the recorder if it
    /// found its place taken (the track stopped or went on in a new file
    /// meanwhile): then [`TrackState::close`] gives it what waited.
    Starting {
        start: u64,
        pending: Vec<bytes::BytesMut>,
        task: tokio::task::JoinHandle<Option<Arc<TrackRecorder>>>,
    },
    Running(Arc<TrackRecorder>),
    /// Could not start (reported); not retried for every packet.
    Failed,
}

impl TrackState {
    /// Closes the track's file; returns once it is reported. A recorder
    /// still starting is waited for and writes the packets that waited
    /// for it first: they are the call's, whatever happened meanwhile.
    async fn close(self) {
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

fn webrtc_error(e: impl std::fmt::Display) -> MediaError {
    MediaError::WebRtc(e.to_string())
}

type Key = (String, String);

/// What the media thread shares with the [`MediaServer`] handles and the
/// threads that build recorders.
struct Shared {
    config: MediaConfig,
    /// Each media thread's core (only the test accessor
    /// [`MediaServer::forwarded_layer`] takes one from outside its thread).
    cores: Vec<Mutex<Sfu<rtc::rtp::Packet>>>,
    events: mpsc::UnboundedSender<Report>,
    /// Rooms being recorded: the recording's id and a recorder per track
    /// (made on the track's first packet, when its payload type is known).
    recordings: Mutex<HashMap<String, Recording>>,
    /// Numbers each recorder start (`TrackState::Starting`).
    recorder_starts: AtomicU64,
    /// The runtime [`MediaServer::new`] was called on: recorders are built
    /// and closed on it.
    runtime: tokio::runtime::Handle,
    counters: MediaCounters,
}

/// What the media threads count, since the server started, over all calls
/// (`/metrics` shows them).
#[derive(Debug, Default)]
pub struct MediaCounters {
    /// RTP packets sent to subscribers, and their payload bytes.
    pub forwarded: Counter,
    pub forwarded_bytes: Counter,
    /// Forwarded packets sent again because a subscriber's NACK asked.
    pub retransmitted: Counter,
    /// NACKs sent to publishers for packets lost on the way in.
    pub nacks_sent: Counter,
    /// Keyframe requests (PLI, FIR) from subscribers, relayed to the core
    /// (which throttles them).
    pub relayed_keyframe_requests: Counter,
    /// PLIs sent to publishers: the core's requests, a new subscriber's or
    /// a recorder's.
    pub plis_sent: Counter,
    /// What the SFU adds to each forwarded packet: from the datagram's
    /// arrival in the socket (the kernel's timestamp) until it is handed
    /// back to the kernel for its subscriber (as [`AddedLatency`]).
    pub added_latency: Histogram,
}

/// Tasks closing recordings, for the caller of a command to wait on.
type Closing = Vec<tokio::task::JoinHandle<()>>;

/// What the [`MediaServer`] handles ask of the media thread.
enum Command {
    Join {
        key: Key,
        role: ParticipantRole,
        signals: mpsc::UnboundedSender<Signal>,
        reply: Reply<()>,
    },
    Publish {
        key: Key,
        sdp: String,
        screens: Vec<String>,
        reply: Reply<String>,
    },
    Answer {
        key: Key,
        sdp: String,
        reply: Reply<()>,
    },
    Candidate {
        key: Key,
        subscriber: bool,
        candidate: IceCandidateInit,
        reply: Reply<()>,
    },
    Leave {
        key: Key,
        reason: Option<String>,
        reply: oneshot::Sender<Result<Closing, MediaError>>,
    },
    CloseRoom {
        room: String,
        reason: String,
        reply: oneshot::Sender<Closing>,
    },
    /// Start or stop handing `room`'s media to its recording.
    Recording {
        room: String,
        on: bool,
    },
    /// A recorder needs a keyframe of `track` to start a file.
    KeyframeWanted {
        room: String,
        track: String,
    },
}

type Reply<T> = oneshot::Sender<Result<T, MediaError>>;

/// The process's SFU. Cheap to clone; the media threads end with the last
/// clone.
#[derive(Clone)]
pub struct MediaServer {
    shared: Arc<Shared>,
    /// One per media thread.
    commands: Vec<mpsc::UnboundedSender<Command>>,
}

impl std::fmt::Debug for MediaServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MediaServer").field("config", &self.shared.config).finish_non_exhaustive()
    }
}

fn stopped() -> MediaError {
    MediaError::WebRtc("the media thread stopped".into())
}

impl MediaServer {
    /// Starts the server's media threads (each binds its UDP socket at its
    /// first join); the receiver yields what the record should say. Must
    /// be called on a tokio runtime: recorders are built on it.
    pub fn new(config: MediaConfig) -> (MediaServer, mpsc::UnboundedReceiver<Report>) {
        let (events, rx) = mpsc::unbounded_channel();
        let threads = config.threads.max(1);
        let shared = Arc::new(Shared {
            config,
            cores: (0..threads).map(|_| Mutex::new(Sfu::new(Instant::now()))).collect(),
            events,
            recordings: Default::default(),
            recorder_starts: AtomicU64::new(0),
            runtime: tokio::runtime::Handle::current(),
            counters: MediaCounters::default(),
        });
        let commands = (0..threads)
            .map(|shard| {
                let (commands, receiver) = mpsc::unbounded_channel();
                let engine = Engine::new(shared.clone(), shard, commands.downgrade());
                std::thread::Builder::new()
                    .name("sfu".into())
                    .spawn(move || engine.run(receiver))
                    .expect("a media thread starts");
                commands
            })
            .collect();
        (MediaServer { shared, commands }, rx)
    }

    /// Media threads still running, of how many started (a thread that
    /// panicked or stopped has dropped its end of the command channel).
    pub fn threads_alive(&self) -> (usize, usize) {
        (self.commands.iter().filter(|c| !c.is_closed()).count(), self.commands.len())
    }

    pub fn recordings_dir(&self) -> &std::path::Path {
        &self.shared.config.recordings_dir
    }

    pub fn ice_servers(&self) -> &[IceServer] {
        &self.shared.config.ice_servers
    }

    /// What the media threads counted since start, over all calls.
    pub fn counters(&self) -> &MediaCounters {
        &self.shared.counters
    }

    /// Rooms (calls) open now, their participants and published tracks,
    /// over every media thread.
    pub fn census(&self) -> Census {
        self.shared.cores.iter().fold(Census::default(), |sum, core| {
            let c = core.lock().expect("SFU core poisoned").census();
            Census {
                rooms: sum.rooms + c.rooms,
                participants: sum.participants + c.participants,
                tracks: sum.tracks + c.tracks,
            }
        })
    }

    /// The simulcast layer of `track` that `subscriber` receives now.
    pub fn forwarded_layer(&self, room: &str, subscriber: &str, track: &str) -> Option<u8> {
        let core = self.shared.cores[self.shard(room)].lock().expect("SFU core poisoned");
        core.forwarded_layer(room, subscriber, track)
    }

    /// The media thread that drives `room`.
    pub(crate) fn shard(&self, room: &str) -> usize {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::hash::DefaultHasher::new();
        room.hash(&mut hasher);
        (hasher.finish() % self.commands.len() as u64) as usize
    }

    /// The channel to the media thread that drives `room`.
    fn thread(&self, room: &str) -> &mpsc::UnboundedSender<Command> {
        &self.commands[self.shard(room)]
    }

    /// Sends `room`'s media thread a command and waits for its reply.
    async fn ask<T>(&self, room: &str, command: impl FnOnce(oneshot::Sender<T>) -> Command) -> Result<T, MediaError> {
        let (reply, answer) = oneshot::channel();
        self.thread(room).send(command(reply)).map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())
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
        let key = key(room, participant);
        self.ask(room, |reply| Command::Join { key, role, signals, reply }).await?
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
        let (key, sdp) = (key(room, participant), self.shared.config.candidates.filter_sdp(sdp));
        self.ask(room, |reply| Command::Publish { key, sdp, screens, reply }).await?
    }

    /// The participant's answer to the server's last [`Signal::Offer`].
    pub async fn subscriber_answer(&self, room: &str, participant: &str, sdp: &str) -> Result<(), MediaError> {
        check_sdp(sdp)?;
        let (key, sdp) = (key(room, participant), self.shared.config.candidates.filter_sdp(sdp));
        self.ask(room, |reply| Command::Answer { key, sdp, reply }).await?
    }

    /// A trickled ICE candidate from the browser, for its publishing
    /// (`subscriber == false`) or receiving connection. One whose address
    /// the [`MediaConfig::candidates`] policy refuses is dropped.
    pub async fn add_candidate(
        &self,
        room: &str,
        participant: &str,
        subscriber: bool,
        candidate: IceCandidateInit,
    ) -> Result<(), MediaError> {
        if !self.shared.config.candidates.admits_candidate(&candidate.candidate) {
            tracing::debug!("a remote candidate's address is refused by the policy; dropped");
            return Ok(());
        }
        let key = key(room, participant);
        self.ask(room, |reply| Command::Candidate { key, subscriber, candidate, reply }).await?
    }

    /// Removes `participant` from `room`: its connections close, its tracks
    /// end for the others (and their recordings' last files are written
    /// before this returns).
    pub async fn leave(&self, room: &str, participant: &str, reason: Option<String>) -> Result<(), MediaError> {
        let key = key(room, participant);
        let closing = self.ask(room, |reply| Command::Leave { key, reason, reply }).await??;
        wait(closing).await;
        Ok(())
    }

    /// Records every track of `room` (those published now and later) as
    /// `recording`, until [`MediaServer::stop_recording`] or the room closes.
    pub fn start_recording(&self, room: &str, recording: &str) -> Result<(), MediaError> {
        crate::recorder::init().map_err(|e| MediaError::Recording(e.to_string()))?;
        let mut recordings = self.shared.recordings.lock().expect("recordings poisoned");
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
            },
        );
        drop(recordings);
        self.thread(room).send(Command::Recording { room: room.to_owned(), on: true }).map_err(|_| stopped())
    }

    /// Stops recording `room`; returns once every track's last segment is
    /// written and reported. `false` if it was not being recorded.
    pub async fn stop_recording(&self, room: &str) -> bool {
        let Some(recording) = self.shared.recordings.lock().expect("recordings poisoned").remove(room) else {
            return false;
        };
        let _ = self.thread(room).send(Command::Recording { room: room.to_owned(), on: false });
        recording.finish().await;
        true
    }

    pub fn is_recording(&self, room: &str) -> bool {
        self.shared.recordings.lock().expect("recordings poisoned").contains_key(room)
    }

    /// Ends the call for everyone in `room` (each is sent [`Signal::Left`]).
    pub async fn close_room(&self, room: &str, reason: &str) {
        let (owned, reason) = (room.to_owned(), reason.to_owned());
        if let Ok(closing) = self.ask(room, |reply| Command::CloseRoom { room: owned, reason, reply }).await {
            wait(closing).await;
        }
    }
}

fn key(room: &str, participant: &str) -> Key {
    (room.to_owned(), participant.to_owned())
}

async fn wait(closing: Closing) {
    for task in closing {
        let _ = task.await;
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Publisher,
    Subscriber,
}

/// One peer connection on the media thread.
struct Connection {
    pc: RTCPeerConnection,
    key: Key,
    side: Side,
    /// Its ICE username fragment, once its local description is set.
    ufrag: String,
    /// When it wants `handle_timeout`.
    timeout: Instant,
    /// Where it sends media: the remote address of its own DTLS, SRTP and
    /// SRTCP datagrams (the selected ICE pair's), as last seen.
    remote: Option<SocketAddr>,
    /// A publisher's connection: the feedback its media is owed.
    incoming: Option<Incoming>,
}

/// The receiving side of a publisher's connection past `rtc`'s pipeline:
/// the interceptors that owe the publisher feedback — NACKs, receiver
/// reports, transport-wide congestion control, which the browser's
/// bandwidth estimate runs on — in a chain of their own, fed every media
/// packet the connection receives, whichever way it came in.
struct Incoming {
    chain: Box<dyn rtc::interceptor::Interceptor>,
    /// Streams opened on the connection, by SSRC: its track id (as the
    /// connection names it), its receiver, and how the chain knows it.
    streams: HashMap<u32, (String, RTCRtpReceiverId, rtc::interceptor::StreamInfo)>,
}

impl Incoming {
    fn new() -> Incoming {
        Incoming { chain: Box::new(feedback_interceptors().build()), streams: HashMap::new() }
    }

    /// Shows the chain a packet that arrived `now` (RTP, or RTCP such as
    /// the publisher's sender reports); returns it as it came through
    /// (unchanged: these interceptors only take note).
    fn observe(&mut self, now: Instant, packet: rtc::interceptor::Packet) -> Option<rtc::interceptor::Packet> {
        let message = rtc::interceptor::AttributedPacket::new(packet);
        let _ = self.chain.handle_read(TaggedPacket { now, transport: TransportContext::default(), message });
        let through = self.chain.poll_read().map(|m| m.message.packet);
        while self.chain.poll_read().is_some() {}
        through
    }

    /// The RTCP the chain has to send.
    fn feedback(&mut self) -> Vec<Box<dyn rtc::rtcp::Packet>> {
        let mut out = Vec::new();
        while let Some(message) = self.chain.poll_write() {
            if let rtc::interceptor::Packet::Rtcp(packets) = message.message.packet {
                out.extend(packets);
            }
        }
        out
    }
}

/// A participant: its two connections (indexes into `Engine::connections`).
struct Peer {
    publisher: usize,
    subscriber: usize,
    signals: mpsc::UnboundedSender<Signal>,
    /// The sender on its receiving connection of each track it receives.
    senders: HashMap<String, RTCRtpSenderId>,
    /// Track ids (as the browser names them) the participant said are a
    /// screen share rather than a camera.
    screens: Vec<String>,
    /// An offer is out and unanswered; `again` if the tracks changed since.
    offering: bool,
    again: bool,
    /// Its receiving connection reported a bandwidth estimate (logged once).
    estimated: bool,
}

/// A sender on a subscriber's connection, how packets are rewritten for
/// it, and what was sent on it.
struct Forward {
    connection: usize,
    sender: RTCRtpSenderId,
    ssrc: u32,
    payload_type: u8,
    sent: SentStream,
}

/// A track a participant publishes.
struct Published {
    connection: usize,
    receiver: RTCRtpReceiverId,
    codec: RTCRtpCodec,
    vp8: bool,
    /// Simulcast layer of each stream seen so far (one for a single stream).
    layers: HashMap<u32, u8>,
}

/// A media thread's UDP socket.
struct Socket {
    io: tokio::net::UdpSocket,
    /// Batched reads with the kernel's receive timestamps.
    state: quinn_udp::UdpSocketState,
}

impl Socket {
    /// A full socket buffer drops the datagram, as a congested link would.
    fn send(&self, datagram: &[u8], to: SocketAddr) {
        let _ = self.io.try_send_to(datagram, to);
    }
}

/// The media thread's state: every connection, and what connects them.
struct Engine {
    shared: Arc<Shared>,
    /// Which of the media threads this is (its core in `Shared::cores`).
    shard: usize,
    /// For recorders' keyframe requests; weak, so that the thread ends
    /// when the last [`MediaServer`] does.
    commands: mpsc::WeakUnboundedSender<Command>,
    /// Bound at the first join.
    socket: Option<Socket>,
    /// When the datagram being handled arrived (the kernel's timestamp).
    arrived: Option<Duration>,
    /// The address announced to browsers (the host candidate) — which is
    /// also what the connections are told packets arrive on.
    announced: SocketAddr,
    connections: Vec<Option<Connection>>,
    by_address: HashMap<SocketAddr, usize>,
    by_ufrag: HashMap<String, usize>,
    peers: HashMap<Key, Peer>,
    /// Hot path: (room, subscriber, track) → sender.
    forwards: HashMap<(String, String, String), Forward>,
    /// (room, track) → the publishing side.
    published: HashMap<Key, Published>,
    /// (publishing connection, its track id) → (room, track).
    tracks: HashMap<(usize, String), Key>,
    /// The earliest connection timeout.
    earliest: Instant,
    next_tick: Instant,
    next_report: Instant,
    /// Recordings closing because of what the current command did.
    closing: Closing,
}

impl Engine {
    fn new(shared: Arc<Shared>, shard: usize, commands: mpsc::WeakUnboundedSender<Command>) -> Engine {
        let now = Instant::now();
        Engine {
            shared,
            shard,
            commands,
            socket: None,
            arrived: None,
            announced: SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0),
            connections: Vec::new(),
            by_address: HashMap::new(),
            by_ufrag: HashMap::new(),
            peers: HashMap::new(),
            forwards: HashMap::new(),
            published: HashMap::new(),
            tracks: HashMap::new(),
            earliest: now + TICK,
            next_tick: now + TICK,
            next_report: now + REPORT,
            closing: Vec::new(),
        }
    }

    fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
        runtime.block_on(async move {
            let mut buffers = Vec::new();
            loop {
                let wake = self.earliest.min(self.next_tick);
                tokio::select! {
                    biased;
                    command = commands.recv() => match command {
                        Some(command) => self.command(command),
                        None => break,
                    },
                    readable = readable(self.socket.as_ref()) => {
                        if readable.is_ok() {
                            self.read(&mut buffers);
                        }
                    }
                    _ = tokio::time::sleep_until(wake.into()) => {}
                }
                let now = Instant::now();
                if now >= self.earliest {
                    self.timeouts(now);
                }
                if now >= self.next_tick {
                    self.next_tick = now + TICK;
                    self.input(Input::Timeout);
                }
                if now >= self.next_report {
                    self.next_report = now + REPORT;
                    self.report(now);
                }
                // What no command waits for closes on its own.
                self.closing.clear();
            }
            for index in 0..self.connections.len() {
                self.close_connection(index);
            }
        });
    }

    /// Reads what the socket has: up to [`READ_BATCH`] datagrams, a batch
    /// per system call (`recvmmsg`), each with its arrival time.
    fn read(&mut self, buffers: &mut Vec<Vec<u8>>) {
        let Some(socket) = &self.socket else { return };
        if buffers.is_empty() {
            // Room for what the kernel may hand over as one (GRO: a run
            // of same-sized datagrams from one sender).
            let size = (socket.state.gro_segments() * 1500).max(2048);
            buffers.resize_with(quinn_udp::BATCH_SIZE, || vec![0; size]);
        }
        let mut meta = [quinn_udp::RecvMeta::default(); quinn_udp::BATCH_SIZE];
        let mut slices: Vec<IoSliceMut<'_>> = buffers.iter_mut().map(|b| IoSliceMut::new(b)).collect();
        let mut taken = 0;
        while taken < READ_BATCH {
            let Some(socket) = &self.socket else { return };
            let read = socket.io.try_io(tokio::io::Interest::READABLE, || {
                socket.state.recv((&socket.io).into(), &mut slices, &mut meta)
            });
            let count = match read {
                Ok(count) => count,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                // (An ICMP error from a peer that went away, on Linux.)
                Err(e) => {
                    tracing::debug!(error = %e, "UDP receive");
                    taken += 1;
                    continue;
                }
            };
            for (slice, meta) in slices.iter().zip(&meta[..count]) {
                self.arrived = meta.timestamp;
                for datagram in slice[..meta.len].chunks(meta.stride.max(1)) {
                    self.datagram(meta.addr, datagram);
                    taken += 1;
                }
            }
            self.arrived = None;
        }
    }

    fn datagram(&mut self, source: SocketAddr, datagram: &[u8]) {
        // A STUN request names the connection it is for; anything else
        // comes from an address a STUN request came from first.
        let index = match stun_username(datagram) {
            Some(username) => {
                let ours = username.split(|&b| b == b':').next().unwrap_or_default();
                let Some(&index) = std::str::from_utf8(ours).ok().and_then(|u| self.by_ufrag.get(u)) else { return };
                self.by_address.insert(source, index);
                index
            }
            None => match self.by_address.get(&source) {
                Some(&index) => index,
                None => return,
            },
        };
        if self.read_media(index, datagram) {
            return;
        }
        let Some(connection) = self.connections[index].as_mut() else { return };
        read_datagram(&mut connection.pc, Instant::now(), self.announced, source, datagram);
        self.drain(index);
    }

    /// Media on a publisher's connection, from a stream already opened:
    /// decrypted with the connection's SRTP context and handled here, past
    /// the connection's pipeline (`rtc`'s demultiplexing, ICE statistics,
    /// SRTP handler, interceptors, queues). False if it is not such a
    /// packet (then the connection takes it).
    fn read_media(&mut self, index: usize, datagram: &[u8]) -> bool {
        let Some(Connection { pc, incoming: Some(incoming), .. }) = self.connections[index].as_mut() else {
            return false;
        };
        let Some(ssrc) = rtp_ssrc(datagram) else { return false };
        let Some((track, _, _)) = incoming.streams.get(&ssrc) else { return false };
        let Some((_, remote)) = pc.srtp_contexts_mut() else { return false };
        // What does not decrypt (a replay, a forgery) is dropped, as the
        // connection would drop it.
        use rtc::shared::marshal::Unmarshal;
        let Ok(plain) = remote.decrypt_rtp(datagram) else { return true };
        let Ok(packet) = rtc::rtp::Packet::unmarshal(&mut plain.freeze()) else { return true };
        let track = track.clone();
        self.inbound(index, &track, packet);
        true
    }

    /// A media packet a publisher's connection received, either way: the
    /// feedback chain sees it, then the core.
    fn inbound(&mut self, index: usize, track: &str, packet: rtc::rtp::Packet) {
        let packet = match self.connections[index].as_mut().and_then(|c| c.incoming.as_mut()) {
            Some(incoming) => match incoming.observe(Instant::now(), rtc::interceptor::Packet::Rtp(packet)) {
                Some(rtc::interceptor::Packet::Rtp(packet)) => packet,
                _ => return,
            },
            None => packet,
        };
        self.media(index, track, packet);
    }

    /// Writes the feedback connection `index`'s chain has for its publisher
    /// into the connection (the caller's `drain` sends it).
    fn send_feedback(&mut self, index: usize) {
        let Some(Connection { pc, incoming: Some(incoming), .. }) = self.connections[index].as_mut() else { return };
        let packets = incoming.feedback();
        let Some(&(_, receiver, _)) = incoming.streams.values().next() else { return };
        if packets.is_empty() {
            return;
        }
        let nacks = packets.iter().filter(|p| p.as_any().is::<TransportLayerNack>()).count();
        self.shared.counters.nacks_sent.add(nacks as u64);
        if let Some(mut receiver) = pc.rtp_receiver(receiver) {
            let _ = receiver.write_rtcp(Instant::now(), packets);
        }
    }

    fn timeouts(&mut self, now: Instant) {
        self.earliest = now + TICK;
        for index in 0..self.connections.len() {
            let Some(connection) = self.connections[index].as_mut() else { continue };
            if connection.timeout <= now {
                let _ = connection.pc.handle_timeout(now);
                if let Some(incoming) = connection.incoming.as_mut() {
                    let _ = incoming.chain.handle_timeout(now);
                }
                self.send_feedback(index);
                self.drain(index);
            } else {
                self.earliest = self.earliest.min(connection.timeout);
            }
        }
    }

    /// Sends what connection `index` has to send and acts on what it
    /// received: tracks opening, media, subscribers' feedback, failure.
    fn drain(&mut self, index: usize) {
        let mut opened = Vec::new();
        let mut received = Vec::new();
        let mut failed = false;
        {
            let Some(connection) = self.connections[index].as_mut() else { return };
            loop {
                let mut busy = send_pending(self.socket.as_ref(), connection);
                while let Some(event) = connection.pc.poll_event() {
                    match event {
                        RTCPeerConnectionEvent::OnTrack(RTCTrackEvent::OnOpen(init)) => opened.push(init),
                        RTCPeerConnectionEvent::OnConnectionStateChangeEvent(RTCPeerConnectionState::Failed) => {
                            failed = true
                        }
                        _ => {}
                    }
                    busy = true;
                }
                while let Some(TaggedRTCMessage { message, .. }) = connection.pc.poll_read() {
                    received.push(message);
                    busy = true;
                }
                if !busy {
                    break;
                }
            }
            let chain = connection.incoming.as_mut().and_then(|i| i.chain.poll_timeout());
            let timeout = connection.pc.poll_timeout().into_iter().chain(chain).min();
            connection.timeout = timeout.unwrap_or_else(|| Instant::now() + TICK);
            self.earliest = self.earliest.min(connection.timeout);
        }
        for init in opened {
            self.opened(index, init);
        }
        for message in received {
            match message {
                RTCMessage::RtpPacket(track, packet) => self.inbound(index, &track, packet),
                RTCMessage::RtcpPacket(track, packets) => self.feedback(index, &track, &packets),
                _ => {}
            }
        }
        if failed {
            if let Some(key) = self.connections[index].as_ref().map(|c| c.key.clone()) {
                tracing::info!(room = key.0, participant = key.1, "a participant's connection failed");
                self.remove(key, "connection failed");
            }
        }
    }

    fn command(&mut self, command: Command) {
        match command {
            Command::Join { key, role, signals, reply } => {
                let _ = reply.send(self.join(key, role, signals));
            }
            Command::Publish { key, sdp, screens, reply } => {
                let _ = reply.send(self.publish(&key, &sdp, screens));
            }
            Command::Answer { key, sdp, reply } => {
                let _ = reply.send(self.answer(&key, &sdp));
            }
            Command::Candidate { key, subscriber, candidate, reply } => {
                let _ = reply.send(self.candidate(&key, subscriber, candidate));
            }
            Command::Leave { key, reason, reply } => {
                let left = self.leave(key, reason);
                let _ = reply.send(left.map(|()| std::mem::take(&mut self.closing)));
            }
            Command::CloseRoom { room, reason, reply } => {
                let keys: Vec<Key> = self.peers.keys().filter(|k| k.0 == room).cloned().collect();
                for key in keys {
                    self.remove(key, &reason);
                }
                let _ = reply.send(std::mem::take(&mut self.closing));
            }
            Command::Recording { room, on } => self.input(Input::Recording { room, on }),
            Command::KeyframeWanted { room, track } => self.input(Input::KeyframeWanted { room, track }),
        }
    }

    /// Binds the socket if it is not yet: the first free port of the range.
    fn bind(&mut self) -> Result<(), MediaError> {
        if self.socket.is_some() {
            return Ok(());
        }
        let config = &self.shared.config;
        let announce = config.public_ip.unwrap_or(config.ip);
        if announce.is_unspecified() {
            return Err(MediaError::WebRtc(format!(
                "the media address {announce} cannot be announced to browsers: set the public address too"
            )));
        }
        let (first, last) = config.ports;
        for port in first..=last {
            let Ok(socket) = std::net::UdpSocket::bind(SocketAddr::new(config.ip, port)) else { continue };
            if let Ok(size) = widen_receive_buffer(&socket) {
                let _ = socket2::SockRef::from(&socket).set_send_buffer_size(size);
            }
            socket.set_nonblocking(true).map_err(webrtc_error)?;
            // (Also turns on the kernel's receive timestamps.)
            let state = quinn_udp::UdpSocketState::new((&socket).into()).map_err(webrtc_error)?;
            let io = tokio::net::UdpSocket::from_std(socket).map_err(webrtc_error)?;
            self.socket = Some(Socket { io, state });
            self.announced = SocketAddr::new(announce, port);
            tracing::info!(port, announced = %self.announced, "the SFU listens");
            return Ok(());
        }
        Err(MediaError::NoPort(first, last))
    }

    fn connect(&mut self, key: &Key, side: Side) -> Result<usize, MediaError> {
        let mut media_engine = MediaEngine::default();
        register_codecs(&mut media_engine)?;
        register_extensions(&mut media_engine)?;
        // Nothing else in the connections' own chains: media goes in and
        // out past them, and the feedback it is owed is `Incoming`'s and
        // `SentStream`'s.
        let tap = SfuTap { read: Default::default(), write: Default::default() };
        let registry = Registry::new().with(rtc::interceptor::Slot::from(14_000), tap);
        let mut pc = RTCPeerConnectionBuilder::new()
            .with_media_engine(media_engine)
            .with_interceptor_registry(registry)
            .build(Instant::now())
            .map_err(webrtc_error)?;
        add_host_candidate(&mut pc, self.announced)?;
        let incoming = (side == Side::Publisher).then(Incoming::new);
        let connection = Connection {
            pc,
            key: key.clone(),
            side,
            ufrag: String::new(),
            timeout: Instant::now(),
            remote: None,
            incoming,
        };
        let index = match self.connections.iter().position(Option::is_none) {
            Some(free) => {
                self.connections[free] = Some(connection);
                free
            }
            None => {
                self.connections.push(Some(connection));
                self.connections.len() - 1
            }
        };
        Ok(index)
    }

    /// Sets `description` as connection `index`'s local one; returns its SDP.
    fn set_local(&mut self, index: usize, description: RTCSessionDescription) -> Result<String, MediaError> {
        let connection = self.connections[index].as_mut().ok_or(MediaError::NotJoined)?;
        connection.pc.set_local_description(Instant::now(), description).map_err(webrtc_error)?;
        let sdp =
            connection.pc.local_description().map(|d| d.sdp).ok_or_else(|| webrtc_error("no local description"))?;
        if let Some(ufrag) = sdp.lines().find_map(|l| l.strip_prefix("a=ice-ufrag:")) {
            let ufrag = ufrag.trim().to_owned();
            if connection.ufrag != ufrag {
                self.by_ufrag.remove(&connection.ufrag);
                self.by_ufrag.insert(ufrag.clone(), index);
                connection.ufrag = ufrag;
            }
        }
        Ok(sdp)
    }

    fn close_connection(&mut self, index: usize) {
        let Some(mut connection) = self.connections[index].take() else { return };
        let _ = connection.pc.close();
        while let Some(out) = connection.pc.poll_write() {
            if let Some(socket) = &self.socket {
                socket.send(&out.message, out.transport.peer_addr);
            }
        }
        self.by_ufrag.remove(&connection.ufrag);
        self.by_address.retain(|_, &mut i| i != index);
        self.tracks.retain(|(i, _), _| *i != index);
    }

    fn join(
        &mut self,
        key: Key,
        role: ParticipantRole,
        signals: mpsc::UnboundedSender<Signal>,
    ) -> Result<(), MediaError> {
        if self.peers.contains_key(&key) {
            return Err(MediaError::AlreadyJoined);
        }
        self.bind()?;
        let publisher = self.connect(&key, Side::Publisher)?;
        let joined = self.connect(&key, Side::Subscriber).and_then(|subscriber| {
            // The core refuses a third participant, a closed room.
            let join = Input::Join { room: key.0.clone(), participant: key.1.clone(), role };
            match self.core_input(join) {
                Ok(out) => Ok((subscriber, out)),
                Err(e) => {
                    self.close_connection(subscriber);
                    Err(e.into())
                }
            }
        });
        let (subscriber, out) = match joined {
            Ok(joined) => joined,
            Err(e) => {
                self.close_connection(publisher);
                return Err(e);
            }
        };
        let peer = Peer {
            publisher,
            subscriber,
            signals,
            senders: HashMap::new(),
            screens: Vec::new(),
            offering: false,
            again: false,
            estimated: false,
        };
        self.peers.insert(key, peer);
        self.act(out);
        Ok(())
    }

    fn publish(&mut self, key: &Key, sdp: &str, screens: Vec<String>) -> Result<String, MediaError> {
        let peer = self.peers.get_mut(key).ok_or(MediaError::NotJoined)?;
        peer.screens.extend(screens);
        let index = peer.publisher;
        let offer = RTCSessionDescription::offer(sdp.to_owned()).map_err(|e| MediaError::InvalidSdp(e.to_string()))?;
        let connection = self.connections[index].as_mut().ok_or(MediaError::NotJoined)?;
        connection
            .pc
            .set_remote_description(Instant::now(), offer)
            .map_err(|e| MediaError::InvalidSdp(e.to_string()))?;
        // A track the browser stopped sending (a screen share ended) is
        // gone from the offer's sending sections; its packets simply stop,
        // so this is where it ends.
        let sending = sending_tracks(sdp);
        let (room, participant) = key;
        let prefix = format!("{participant}/");
        let ended: Vec<String> = self
            .published
            .keys()
            .filter(|(r, t)| r == room && t.strip_prefix(&prefix).is_some_and(|id| !sending.contains(id)))
            .map(|(_, t)| t.clone())
            .collect();
        for track in ended {
            self.end_track(room, participant, &track);
        }
        let connection = self.connections[index].as_mut().ok_or(MediaError::NotJoined)?;
        let answer = connection.pc.create_answer(None).map_err(webrtc_error)?;
        let sdp = self.set_local(index, answer)?;
        self.drain(index);
        Ok(sdp)
    }

    fn answer(&mut self, key: &Key, sdp: &str) -> Result<(), MediaError> {
        let peer = self.peers.get_mut(key).ok_or(MediaError::NotJoined)?;
        let index = peer.subscriber;
        let answer =
            RTCSessionDescription::answer(sdp.to_owned()).map_err(|e| MediaError::InvalidSdp(e.to_string()))?;
        let connection = self.connections[index].as_mut().ok_or(MediaError::NotJoined)?;
        connection
            .pc
            .set_remote_description(Instant::now(), answer)
            .map_err(|e| MediaError::InvalidSdp(e.to_string()))?;
        peer.offering = false;
        let again = std::mem::take(&mut peer.again);
        let receiving: Vec<String> = peer.senders.keys().cloned().collect();
        self.drain(index);
        // Packets sent before this answer went nowhere (the senders were not
        // bound yet), keyframes included: ask for fresh ones.
        for track in receiving {
            self.input(Input::KeyframeWanted { room: key.0.clone(), track });
        }
        if again {
            self.negotiate(key);
        }
        Ok(())
    }

    fn candidate(&mut self, key: &Key, subscriber: bool, candidate: IceCandidateInit) -> Result<(), MediaError> {
        let peer = self.peers.get(key).ok_or(MediaError::NotJoined)?;
        let index = if subscriber { peer.subscriber } else { peer.publisher };
        let connection = self.connections[index].as_mut().ok_or(MediaError::NotJoined)?;
        connection.pc.add_remote_candidate(candidate).map_err(webrtc_error)?;
        self.drain(index);
        Ok(())
    }

    fn leave(&mut self, key: Key, reason: Option<String>) -> Result<(), MediaError> {
        let peer = self.peers.remove(&key).ok_or(MediaError::NotJoined)?;
        self.forwards.retain(|(room, to, _), _| !(room == &key.0 && to == &key.1));
        self.close_connection(peer.publisher);
        self.close_connection(peer.subscriber);
        let out = self.core_input(Input::Leave { room: key.0, participant: key.1, reason })?;
        self.act(out);
        Ok(())
    }

    /// Removes a participant the server ends (call closed, connection
    /// failed) and tells its browser.
    fn remove(&mut self, key: Key, reason: &str) {
        let signals = self.peers.get(&key).map(|p| p.signals.clone());
        if self.leave(key, Some(reason.to_owned())).is_ok() {
            if let Some(signals) = signals {
                let _ = signals.send(Signal::Left { reason: reason.to_owned() });
            }
        }
    }

    /// A stream of a track on publishing connection `index` sent its first
    /// packet: a new track (published to the core), or another simulcast
    /// layer of one.
    fn opened(&mut self, index: usize, init: RTCTrackEventInit) {
        let Some(connection) = self.connections[index].as_mut() else { return };
        if connection.side != Side::Publisher {
            return;
        }
        let Some(mut receiver) = connection.pc.rtp_receiver(init.receiver_id) else { return };
        let codec = receiver.track().codec(init.ssrc).cloned();
        let info = stream_info(init.ssrc, codec.as_ref(), receiver.get_parameters());
        if let (Some(incoming), Some(info)) = (connection.incoming.as_mut(), info) {
            incoming.chain.bind_remote_stream(&info);
            incoming.streams.insert(init.ssrc, (init.track_id.clone(), init.receiver_id, info));
        }
        let remote = receiver.track();
        let layer = simulcast_layer(init.rid.as_deref(), remote.codings());
        if let Some(published) =
            self.tracks.get(&(index, init.track_id.clone())).and_then(|k| self.published.get_mut(k))
        {
            published.layers.insert(init.ssrc, layer);
            return;
        }
        let Some(codec) = remote.codec(init.ssrc).cloned() else { return };
        let audio = remote.kind() == RtpCodecKind::Audio;
        let (room, participant) = connection.key.clone();
        let screen = self.peers.get(&connection.key).is_some_and(|p| p.screens.contains(&init.track_id));
        let kind = if audio {
            TrackKind::Audio
        } else if screen {
            TrackKind::Screen
        } else {
            TrackKind::Video
        };
        // Scoped by participant: one browser cannot take over another's id.
        let track = format!("{participant}/{}", init.track_id);
        let key = (room.clone(), track.clone());
        let publish = Input::Publish { room, participant, track, kind, codec: codec.mime_type.clone() };
        let out = match self.core_input(publish) {
            Ok(out) => out,
            Err(e) => {
                tracing::warn!(error = %e, "track not published");
                return;
            }
        };
        let vp8 = codec.mime_type.eq_ignore_ascii_case("video/vp8");
        self.published.insert(
            key.clone(),
            Published {
                connection: index,
                receiver: init.receiver_id,
                codec,
                vp8,
                layers: HashMap::from([(init.ssrc, layer)]),
            },
        );
        self.tracks.insert((index, init.track_id), key);
        self.act(out);
    }

    /// A packet of a published track, for the core.
    fn media(&mut self, index: usize, track: &str, packet: rtc::rtp::Packet) {
        let Some(key) = self.tracks.get(&(index, track.to_owned())) else { return };
        let Some(published) = self.published.get(key) else { return };
        // (A stream's packets come after its opening, which is drained first.)
        let Some(&layer) = published.layers.get(&packet.header.ssrc) else { return };
        let keyframe = published.vp8 && vp8_keyframe(&packet.payload);
        let (room, track) = key.clone();
        self.input(Input::Media { room, track, layer, packet, keyframe });
    }

    /// RTCP the tap handed over. From a subscriber's receiver, about
    /// `track`: packets it lost (sent again, `retransmit`), its decoder
    /// lost the picture (ask the publisher, through the core, which
    /// throttles, for a keyframe), or how much it can receive (a REMB).
    /// From a publisher: its sender reports, for the feedback chain.
    fn feedback(&mut self, index: usize, track: &str, packets: &[Box<dyn rtc::rtcp::Packet>]) {
        use rtc::rtcp::payload_feedbacks::receiver_estimated_maximum_bitrate::ReceiverEstimatedMaximumBitrate;
        let Some(connection) = self.connections[index].as_mut() else { return };
        if let Some(incoming) = connection.incoming.as_mut() {
            // A publisher's sender reports: its receiver reports refer to them.
            incoming.observe(Instant::now(), rtc::interceptor::Packet::Rtcp(packets.to_vec()));
            return;
        }
        let (room, subscriber) = connection.key.clone();
        for nack in packets.iter().filter_map(|p| p.as_any().downcast_ref::<TransportLayerNack>()) {
            self.retransmit(index, track, nack);
        }
        let estimate = packets.iter().rev().find_map(|p| p.as_any().downcast_ref::<ReceiverEstimatedMaximumBitrate>());
        if let Some(remb) = estimate {
            let bps = remb.bitrate as u64;
            let key = (room.clone(), subscriber);
            let first = self.peers.get_mut(&key).is_some_and(|p| !std::mem::replace(&mut p.estimated, true));
            if first {
                tracing::info!(room, participant = key.1, bps, "a receiver's first bandwidth estimate");
            }
            self.input(Input::Bandwidth { room: room.clone(), participant: key.1, bps });
        }
        if packets.iter().any(|p| is_keyframe_request(p.as_ref())) {
            self.shared.counters.relayed_keyframe_requests.add(1);
            self.input(Input::KeyframeWanted { room, track: track.to_owned() });
        }
    }

    /// Feeds one input to the core; returns what it asked for.
    fn core_input(&self, input: Input<rtc::rtp::Packet>) -> Result<Vec<Output<rtc::rtp::Packet>>, SfuError> {
        let mut core = self.shared.cores[self.shard].lock().expect("SFU core poisoned");
        core.handle_input(Instant::now(), input)?;
        let mut out = Vec::new();
        loop {
            match core.poll_output() {
                Output::Timeout(_) => return Ok(out),
                o => out.push(o),
            }
        }
    }

    /// Feeds one input to the core and carries out what it asks for (an
    /// input it refuses — about a room that closed meanwhile — is dropped).
    fn input(&mut self, input: Input<rtc::rtp::Packet>) {
        if let Ok(out) = self.core_input(input) {
            self.act(out);
        }
    }

    /// Carries out the core's outputs.
    fn act(&mut self, outputs: Vec<Output<rtc::rtp::Packet>>) {
        for output in outputs {
            match output {
                Output::Transmit { room, to, track, packet } => self.transmit((room, to, track), packet),
                Output::Record { room, track, packet } => self.record(&room, &track, &packet),
                Output::Event(event) => self.on_event(event),
                Output::Timeout(_) => {}
            }
        }
    }

    /// Sends `packet` to a subscriber: rewritten for its sender, encrypted
    /// with the connection's SRTP context and sent straight to its remote
    /// address, past the connection's pipeline (the module's doc).
    fn transmit(&mut self, to: (String, String, String), mut packet: rtc::rtp::Packet) {
        use rtc::shared::marshal::Marshal;
        // No sender yet: the subscriber's connection is still being
        // renegotiated; the keyframe request after it catches the picture up.
        let Some(forward) = self.forwards.get_mut(&to) else { return };
        let Some(connection) = self.connections[forward.connection].as_mut() else { return };
        let Some(socket) = &self.socket else { return };
        packet.header.ssrc = forward.ssrc;
        packet.header.payload_type = forward.payload_type;
        // Extension ids were negotiated on the publisher's connection, not
        // this one.
        packet.header.extension = false;
        packet.header.extensions.clear();
        // Before DTLS is done there are no keys: dropped, as the
        // connection would drop it.
        let (Some(remote), Some((local, _))) = (connection.remote, connection.pc.srtp_contexts_mut()) else { return };
        let Ok(protected) = packet.marshal().and_then(|plain| local.encrypt_rtp_with_header(&plain, &packet.header))
        else {
            return;
        };
        socket.send(&protected, remote);
        let header = &packet.header;
        forward.sent.sent(
            Instant::now(),
            header.sequence_number,
            header.timestamp,
            packet.payload.len(),
            protected.freeze(),
        );
        let counters = &self.shared.counters;
        counters.forwarded.add(1);
        counters.forwarded_bytes.add(packet.payload.len() as u64);
        if let Some(arrived) = self.arrived {
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
            let took = now.saturating_sub(arrived);
            counters.added_latency.observe(took);
            if let Some(latency) = &self.shared.config.latency {
                latency.delays_us.lock().expect("latency poisoned").push(took.as_micros() as u64);
            }
        }
    }

    /// A subscriber's NACK for `track`: the packets it lost, sent again as
    /// they went out, those still kept.
    fn retransmit(&mut self, index: usize, track: &str, nack: &TransportLayerNack) {
        let Some(connection) = self.connections[index].as_ref() else { return };
        let to = (connection.key.0.clone(), connection.key.1.clone(), track.to_owned());
        let (Some(forward), Some(remote), Some(socket)) = (self.forwards.get(&to), connection.remote, &self.socket)
        else {
            return;
        };
        if forward.ssrc != nack.media_ssrc {
            return;
        }
        for pair in &nack.nacks {
            for sequence in pair.packet_list() {
                if let Some(datagram) = forward.sent.resend(sequence) {
                    socket.send(datagram, remote);
                    self.shared.counters.retransmitted.add(1);
                }
            }
        }
    }

    /// Sends every forwarded stream's sender report (on [`REPORT`]).
    fn report(&mut self, now: Instant) {
        let wall = std::time::SystemTime::now();
        for forward in self.forwards.values() {
            let Some(report) = forward.sent.report(forward.ssrc, now, wall) else { continue };
            let Some(connection) = self.connections[forward.connection].as_mut() else { continue };
            if let Some(mut sender) = connection.pc.rtp_sender(forward.sender) {
                let _ = sender.write_rtcp(now, vec![Box::new(report)]);
            }
            send_pending(self.socket.as_ref(), connection);
        }
    }

    fn on_event(&mut self, event: MediaEvent) {
        match &event {
            MediaEvent::Subscribed { room, subscriber, track, kind, .. } => {
                self.subscribe(room, subscriber, track, *kind);
            }
            MediaEvent::Unsubscribed { room, subscriber, track } => {
                self.forwards.remove(&(room.clone(), subscriber.clone(), track.clone()));
                let key = (room.clone(), subscriber.clone());
                let Some(peer) = self.peers.get_mut(&key) else { return };
                let Some(sender) = peer.senders.remove(track) else { return };
                let index = peer.subscriber;
                if let Some(connection) = self.connections[index].as_mut() {
                    let _ = connection.pc.remove_track(sender);
                }
                self.negotiate(&key);
            }
            MediaEvent::KeyframeRequested { room, track } => self.send_pli(room, track),
            MediaEvent::TrackUnpublished { room, track, .. } => {
                if let Some(published) = self.published.remove(&(room.clone(), track.clone())) {
                    self.tracks.retain(|(index, _), key| *index != published.connection || key.1 != *track);
                }
            }
            MediaEvent::RoomClosed { room } => {
                tracing::info!(
                    forwarded_packets = self.shared.counters.forwarded.get(),
                    keyframe_requests_relayed = self.shared.counters.relayed_keyframe_requests.get(),
                    "a call's room closed (counts since start)"
                );
                let recording = self.shared.recordings.lock().expect("recordings poisoned").remove(room);
                if let Some(recording) = recording {
                    self.closing.push(self.shared.runtime.spawn(recording.finish()));
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
            let _ = self.shared.events.send(Report::Media(event));
        }
    }

    fn subscribe(&mut self, room: &str, subscriber: &str, track: &str, kind: TrackKind) {
        let Some(codec) = self.published.get(&(room.to_owned(), track.to_owned())).map(|p| p.codec.clone()) else {
            return;
        };
        let key = (room.to_owned(), subscriber.to_owned());
        let Some(peer) = self.peers.get_mut(&key) else { return };
        let index = peer.subscriber;
        let Some(connection) = self.connections[index].as_mut() else { return };
        let ssrc = rand_ssrc();
        let clock_rate = codec.clock_rate;
        let (payload_type, codec_kind) =
            if kind == TrackKind::Audio { (OPUS_PT, RtpCodecKind::Audio) } else { (VP8_PT, RtpCodecKind::Video) };
        // The track id is the published track's: a subscriber's feedback
        // about it comes back under that name.
        let local = MediaStreamTrack::new(
            format!("{room}-{track}"),
            track.to_owned(),
            format!("{kind:?}"),
            codec_kind,
            vec![RTCRtpEncodingParameters {
                rtp_coding_parameters: RTCRtpCodingParameters { ssrc: Some(ssrc), ..Default::default() },
                codec: RTCRtpCodec { rtcp_feedback: Vec::new(), ..codec },
                ..Default::default()
            }],
        );
        let sender = match connection.pc.add_track(local) {
            Ok(sender) => sender,
            Err(e) => {
                tracing::warn!(error = %e, "could not add a track to a subscriber");
                return;
            }
        };
        peer.senders.insert(track.to_owned(), sender);
        self.forwards.insert(
            (room.to_owned(), subscriber.to_owned(), track.to_owned()),
            // NACKs are negotiated for video only (`register_codecs`).
            Forward {
                connection: index,
                sender,
                ssrc,
                payload_type,
                sent: SentStream::new(clock_rate, kind == TrackKind::Video),
            },
        );
        self.negotiate(&key);
    }

    /// Asks the publisher of `track` for a keyframe.
    fn send_pli(&mut self, room: &str, track: &str) {
        let Some(published) = self.published.get(&(room.to_owned(), track.to_owned())) else { return };
        let requests: Vec<Box<dyn rtc::rtcp::Packet>> = published
            .layers
            .keys()
            .map(|&media_ssrc| Box::new(PictureLossIndication { sender_ssrc: 0, media_ssrc }) as _)
            .collect();
        let (index, receiver) = (published.connection, published.receiver);
        let Some(connection) = self.connections[index].as_mut() else { return };
        if let Some(mut receiver) = connection.pc.rtp_receiver(receiver) {
            self.shared.counters.plis_sent.add(requests.len() as u64);
            let _ = receiver.write_rtcp(Instant::now(), requests);
        }
        self.drain(index);
    }

    /// Offers the subscriber connection's current tracks, unless an offer
    /// is already out (then once its answer is in).
    fn negotiate(&mut self, key: &Key) {
        let Some(peer) = self.peers.get_mut(key) else { return };
        if peer.offering {
            peer.again = true;
            return;
        }
        let (index, signals) = (peer.subscriber, peer.signals.clone());
        let Some(connection) = self.connections[index].as_mut() else { return };
        let offer = connection.pc.create_offer(None).map_err(webrtc_error).and_then(|o| self.set_local(index, o));
        match offer {
            Ok(sdp) => {
                if let Some(peer) = self.peers.get_mut(key) {
                    peer.offering = true;
                }
                let _ = signals.send(Signal::Offer { sdp });
            }
            Err(e) => tracing::warn!(error = %e, "subscriber offer failed"),
        }
        self.drain(index);
    }

    /// A published track ended: its recording closes, subscribers drop it.
    fn end_track(&mut self, room: &str, participant: &str, track: &str) {
        // Its streams are owed no more feedback.
        if let Some(published) = self.published.get(&(room.to_owned(), track.to_owned())) {
            if let Some(incoming) = self.connections[published.connection].as_mut().and_then(|c| c.incoming.as_mut()) {
                for ssrc in published.layers.keys() {
                    if let Some((_, _, info)) = incoming.streams.remove(ssrc) {
                        incoming.chain.unbind_remote_stream(&info);
                    }
                }
            }
        }
        let recorder = self
            .shared
            .recordings
            .lock()
            .expect("recordings poisoned")
            .get_mut(room)
            .and_then(|r| r.tracks.remove(track));
        if let Some(recorder) = recorder {
            self.closing.push(self.shared.runtime.spawn(recorder.close()));
        }
        self.input(Input::Unpublish {
            room: room.to_owned(),
            participant: participant.to_owned(),
            track: track.to_owned(),
        });
    }

    /// Hands a packet to the track's recorder, starting one on the track's
    /// first packet (its payload type known then) and anew when a video
    /// keyframe changes the picture size (another simulcast layer, or the
    /// browser scaling its camera down under load): a WebM file holds one
    /// size, so the track goes on in its next file. A recorder is built on
    /// a blocking thread ([`Shared::recorder_started`]), never here: this is
    /// the forwarding path.
    fn record(&mut self, room: &str, track: &str, packet: &rtc::rtp::Packet) {
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

/// Sends what `pc` has to send (dropped before the socket is bound);
/// whether it had anything.
fn send_pending(socket: Option<&Socket>, connection: &mut Connection) -> bool {
    let mut any = false;
    while let Some(out) = connection.pc.poll_write() {
        // DTLS (first byte 20–63) and SRTP/SRTCP (128–191, RFC 7983) go to
        // the selected ICE pair; STUN answers whoever asked.
        if matches!(out.message.first(), Some(20..=63 | 128..=191)) {
            connection.remote = Some(out.transport.peer_addr);
        }
        if let Some(socket) = socket {
            socket.send(&out.message, out.transport.peer_addr);
        }
        any = true;
    }
    any
}

/// Resolves once `socket` is readable; never without one.
async fn readable(socket: Option<&Socket>) -> std::io::Result<()> {
    match socket {
        Some(socket) => socket.io.readable().await,
        None => std::future::pending().await,
    }
}

/// Gives a socket shared by many connections, whose packets queue in it
/// while its thread is busy, as much receive buffer as the kernel allows
/// without privileges (`net.core.rmem_max`, else 4 MiB); returns the size
/// asked for.
pub fn widen_receive_buffer(socket: &std::net::UdpSocket) -> std::io::Result<usize> {
    let max = std::fs::read_to_string("/proc/sys/net/core/rmem_max").ok().and_then(|m| m.trim().parse().ok());
    let size = max.unwrap_or(4 << 20);
    socket2::SockRef::from(socket).set_recv_buffer_size(size)?;
    Ok(size)
}

/// Hands `pc` a UDP datagram that came from `source` to `local`.
pub fn read_datagram(pc: &mut RTCPeerConnection, now: Instant, local: SocketAddr, source: SocketAddr, datagram: &[u8]) {
    let _ = pc.handle_read(TaggedBytesMut {
        now,
        transport: TransportContext {
            local_addr: local,
            peer_addr: source,
            ecn: None,
            transport_protocol: TransportProtocol::UDP,
        },
        message: BytesMut::from(datagram),
    });
}

/// Gives `pc` its one local candidate: a UDP host candidate at `addr`
/// (the server gathers nothing else).
pub fn add_host_candidate(pc: &mut RTCPeerConnection, addr: SocketAddr) -> Result<(), MediaError> {
    let host = CandidateHostConfig {
        base_config: CandidateConfig {
            network: "udp".to_owned(),
            address: addr.ip().to_string(),
            port: addr.port(),
            component: 1,
            ..Default::default()
        },
        ..Default::default()
    }
    .new_candidate_host()
    .map_err(webrtc_error)?;
    pc.add_local_candidate(RTCIceCandidate::from(&host).to_json().map_err(webrtc_error)?).map_err(webrtc_error)
}

/// The USERNAME of a STUN message ("receiver's ufrag:sender's ufrag"):
/// which connection of a shared socket a request from a new address is for.
pub fn stun_username(datagram: &[u8]) -> Option<&[u8]> {
    // RFC 5389: 20-byte header (type, length, magic cookie, id), then TLVs.
    if datagram.len() < 20 || datagram[0] & 0xc0 != 0 || datagram[4..8] != [0x21, 0x12, 0xa4, 0x42] {
        return None;
    }
    let mut at = 20;
    while at + 4 <= datagram.len() {
        let kind = u16::from_be_bytes([datagram[at], datagram[at + 1]]);
        let len = usize::from(u16::from_be_bytes([datagram[at + 2], datagram[at + 3]]));
        let value = datagram.get(at + 4..at + 4 + len)?;
        if kind == 0x0006 {
            return Some(value);
        }
        at += 4 + len.div_ceil(4) * 4;
    }
    None
}

impl Shared {
    /// Builds a track's recorder (blocking) and puts it to work with the
    /// packets that came meanwhile — unless the track's recording was
    /// stopped or went on in a new file in the meantime: then the recorder
    /// is returned, for whoever closes the start ([`TrackState::close`]).
    #[allow(clippy::too_many_arguments)]
    fn recorder_started(
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
    fn start_recorder(
        &self,
        room: &str,
        recording: &str,
        track: &str,
        codec: &RTCRtpCodec,
        payload_type: u8,
        numbers: &SegmentNumbers,
        commands: mpsc::WeakUnboundedSender<Command>,
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

/// The SFU's place in each connection's interceptor chain — the only
/// interceptor there: media goes past the connections (the module's doc).
///
/// Inbound RTCP: hands subscribers' keyframe requests (PLI, FIR),
/// bandwidth estimates (REMB) and NACKs, and publishers' sender reports,
/// to the application — inbound RTCP otherwise ends in the chain — so the
/// SFU can relay the requests to the publisher, pick simulcast layers
/// (`Engine::feedback`), answer NACKs from what it sent past the chain
/// (`Engine::retransmit`) and show the sender reports to the feedback
/// chain (`Incoming`); drops the rest (receiver reports and the like).
struct SfuTap {
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
        if let rtc::interceptor::Packet::Rtcp(packets) = &msg.message.packet {
            let wanted: Vec<Box<dyn rtc::rtcp::Packet>> = packets
                .iter()
                .filter(|p| {
                    let any = p.as_any();
                    is_keyframe_request(p.as_ref())
                        || is_remb(p.as_ref())
                        || any.is::<TransportLayerNack>()
                        || any.is::<rtc::rtcp::sender_report::SenderReport>()
                })
                .cloned()
                .collect();
            if wanted.is_empty() {
                return Ok(());
            }
            msg.message.packet = rtc::interceptor::Packet::Rtcp(wanted);
            msg.message.add(rtc::interceptor::Attribute::DeliverToApplication);
        }
        self.read.push_back(msg);
        Ok(())
    }

    fn poll_read(&mut self) -> Option<Self::Rout> {
        self.read.pop_front()
    }

    fn handle_write(&mut self, msg: rtc::interceptor::TaggedPacket) -> Result<(), Self::Error> {
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

/// Which simulcast layer (0, the smallest, up) a stream is: by its RID —
/// `q`, `h`, `f` (quarter, half, full size) as the pages name them, else
/// its place among the track's encodings. A track sent as one stream has
/// only layer 0.
fn simulcast_layer(rid: Option<&str>, codings: &[RTCRtpEncodingParameters]) -> u8 {
    match rid {
        None | Some("") => 0,
        Some("q") => 0,
        Some("h") => 1,
        Some("f") => 2,
        Some(rid) => codings.iter().position(|c| c.rtp_coding_parameters.rid == rid).unwrap_or(0) as u8,
    }
}

/// The SSRC of an RTP (not RTCP) datagram (RFC 7983: first byte 128–191;
/// RFC 5761: RTCP packet types 192–223 in the second).
fn rtp_ssrc(datagram: &[u8]) -> Option<u32> {
    let (&[first, second], rest) = datagram.split_first_chunk::<2>()?;
    if !(128..=191).contains(&first) || (192..=223).contains(&second) {
        return None;
    }
    let ssrc = rest.get(6..10)?;
    Some(u32::from_be_bytes(ssrc.try_into().ok()?))
}

/// How a feedback chain knows the stream `ssrc` a receiver receives (as
/// `rtc` tells its own interceptors): the codec negotiated for it, with
/// its feedback, and the header extensions.
fn stream_info(
    ssrc: u32,
    codec: Option<&RTCRtpCodec>,
    parameters: &rtc::rtp_transceiver::rtp_sender::RTCRtpReceiveParameters,
) -> Option<rtc::interceptor::StreamInfo> {
    let codec = codec?;
    let negotiated = parameters
        .rtp_parameters
        .codecs
        .iter()
        .find(|c| c.rtp_codec.mime_type.eq_ignore_ascii_case(&codec.mime_type))?;
    let rtp_codec = &negotiated.rtp_codec;
    Some(rtc::interceptor::StreamInfo {
        ssrc,
        payload_type: negotiated.payload_type,
        rtp_header_extensions: parameters
            .rtp_parameters
            .header_extensions
            .iter()
            .map(|h| rtc::interceptor::RTPHeaderExtension { id: h.id, uri: h.uri.clone() })
            .collect(),
        mime_type: rtp_codec.mime_type.clone(),
        clock_rate: rtp_codec.clock_rate,
        channels: rtp_codec.channels,
        sdp_fmtp_line: rtp_codec.sdp_fmtp_line.clone(),
        rtcp_feedback: rtp_codec
            .rtcp_feedback
            .iter()
            .map(|f| rtc::interceptor::RTCPFeedback { typ: f.typ.clone(), parameter: f.parameter.clone() })
            .collect(),
        ..Default::default()
    })
}

/// Witness's codec for a track of `kind`: Opus for audio, VP8 for video
/// (what [`register_codecs`] negotiates, without its parameters).
pub fn codec(kind: RtpCodecKind) -> RTCRtpCodec {
    let (mime, clock_rate, channels) =
        if kind == RtpCodecKind::Audio { ("audio/opus", 48_000, 2) } else { ("video/VP8", 90_000, 0) };
    RTCRtpCodec { mime_type: mime.into(), clock_rate, channels, ..Default::default() }
}

/// How a local track of `kind` is sent: as the stream `ssrc`, simulcast
/// layer `rid` ("" for a track sent as one stream), in [`codec`]`(kind)`.
pub fn encoding(kind: RtpCodecKind, rid: &str, ssrc: u32) -> RTCRtpEncodingParameters {
    RTCRtpEncodingParameters {
        rtp_coding_parameters: RTCRtpCodingParameters { rid: rid.to_owned(), ssrc: Some(ssrc), ..Default::default() },
        codec: codec(kind),
        ..Default::default()
    }
}

/// The codecs Witness's SFU negotiates — Opus, and VP8 with NACK, PLI,
/// FIR and REMB feedback — on a connection's media engine.
pub fn register_codecs(media_engine: &mut MediaEngine) -> Result<(), MediaError> {
    let feedback = |typ: &str, parameter: &str| RTCPFeedback { typ: typ.into(), parameter: parameter.into() };
    let opus = RTCRtpCodecParameters {
        rtp_codec: RTCRtpCodec { sdp_fmtp_line: "minptime=10;useinbandfec=1".into(), ..codec(RtpCodecKind::Audio) },
        payload_type: OPUS_PT,
    };
    let vp8 = RTCRtpCodecParameters {
        rtp_codec: RTCRtpCodec {
            rtcp_feedback: vec![
                feedback("nack", ""),
                feedback("nack", "pli"),
                feedback("ccm", "fir"),
                // Receivers send their bandwidth estimate (REMB): it picks
                // the simulcast layer they get.
                feedback("goog-remb", ""),
            ],
            ..codec(RtpCodecKind::Video)
        },
        payload_type: VP8_PT,
    };
    media_engine.register_codec(opus, RtpCodecKind::Audio).map_err(webrtc_error)?;
    // (The header extensions simulcast needs, mid and RID, come with the
    // interceptors: `register_interceptors`.)
    media_engine.register_codec(vp8, RtpCodecKind::Video).map_err(webrtc_error)
}

/// How many times a lost packet is asked for again (NACK), 100 ms apart.
/// Unbounded (the interceptors' default), every loss is asked for every
/// 100 ms for as long as the sequence number stays in the receive log
/// (512 packets, seconds of video): once a socket overflows, the
/// retransmissions that answer those requests overflow it more, and the
/// load collapses into a retransmission storm. A browser stops too (Chrome
/// after 10 tries, an RTT apart). Three covers what a call can still use:
/// a packet older than 300 ms has missed its playout and the recorder's
/// jitter buffer (200 ms).
pub const NACKS_PER_LOST_PACKET: u16 = 3;

/// The RTP header extensions and feedback Witness's connections negotiate
/// beyond the codecs' (`register_codecs`): simulcast's mid and RID, and
/// transport-wide congestion control (its sequence numbers, its feedback).
pub fn register_extensions(media_engine: &mut MediaEngine) -> Result<(), MediaError> {
    configure_simulcast_extension_headers(media_engine).map_err(webrtc_error)?;
    // (For what it registers on the media engine; the interceptor it adds
    // to a registry is `feedback_interceptors`'.)
    configure_twcc_receiver_only(Registry::new(), media_engine).map_err(webrtc_error)?;
    Ok(())
}

/// What a receiver of media owes its sender, as `rtc`'s interceptors: NACKs
/// (a lost packet asked for at most [`NACKS_PER_LOST_PACKET`] times),
/// receiver reports, transport-wide congestion-control feedback.
pub fn feedback_interceptors() -> Registry {
    use rtc::interceptor::{NackGeneratorBuilder, ReceiverReportBuilder, Slot, TwccReceiverBuilder};
    // (The NACK feedback itself is in the codecs: `register_codecs`.)
    Registry::new()
        .with(Slot::NackGenerator, NackGeneratorBuilder::new().with_max_nacks_per_packet(NACKS_PER_LOST_PACKET).build())
        .with(Slot::ReceiverReport, ReceiverReportBuilder::new().build())
        .with(Slot::TwccReceiver, TwccReceiverBuilder::new().build())
}

/// The interceptors of the test peers, whose media goes through their
/// connections: [`feedback_interceptors`] and the sender's (answering
/// NACKs, sender reports) — the `rtc` defaults, with NACKs bounded. (The
/// SFU's connections carry none: its media goes past them.)
pub fn register_interceptors(media_engine: &mut MediaEngine) -> Result<Registry, MediaError> {
    use rtc::interceptor::{NackResponderBuilder, SenderReportBuilder, Slot};
    register_extensions(media_engine)?;
    Ok(feedback_interceptors()
        .with(Slot::NackResponder, NackResponderBuilder::new().build())
        .with(Slot::SenderReport, SenderReportBuilder::new().build()))
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
pub fn rand_ssrc() -> u32 {
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

    #[tokio::test]
    async fn a_join_the_sfu_cannot_serve_is_refused_and_leaves_nothing_behind() {
        let (signals, _) = mpsc::unbounded_channel();
        // 0.0.0.0 cannot be told to a browser.
        let config = MediaConfig { ip: IpAddr::V4(Ipv4Addr::UNSPECIFIED), ..Default::default() };
        let (server, _reports) = MediaServer::new(config);
        for _ in 0..2 {
            // Twice: the first left no participant behind (else "already in").
            let refused = server.join("room", "alice", ParticipantRole::Customer, signals.clone()).await;
            assert!(matches!(&refused, Err(MediaError::WebRtc(e)) if e.contains("cannot be announced")), "{refused:?}");
        }
        // Every port of the range taken.
        let taken = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = taken.local_addr().unwrap().port();
        let (server, _reports) = MediaServer::new(MediaConfig { ports: (port, port), ..Default::default() });
        for _ in 0..2 {
            let refused = server.join("room", "alice", ParticipantRole::Customer, signals.clone()).await;
            assert!(matches!(refused, Err(MediaError::NoPort(p, q)) if p == port && q == port), "{refused:?}");
        }
        let refused = server.publish("room", "alice", "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n", Vec::new()).await;
        assert!(matches!(refused, Err(MediaError::NotJoined)), "{refused:?}");
    }

    #[test]
    fn a_lost_packet_is_asked_for_a_bounded_number_of_times() {
        use rtc::interceptor::{AttributedPacket, Interceptor, Packet, StreamInfo, TaggedPacket};
        use rtc::rtcp::transport_feedbacks::transport_layer_nack::TransportLayerNack;
        use rtc::sansio::Protocol;
        let mut chain = feedback_interceptors().build();
        let ssrc = 0x5eed;
        chain.bind_remote_stream(&StreamInfo {
            ssrc,
            clock_rate: 90_000,
            mime_type: "video/VP8".into(),
            payload_type: VP8_PT,
            rtcp_feedback: vec![rtc::interceptor::RTCPFeedback { typ: "nack".into(), parameter: String::new() }],
            ..Default::default()
        });
        let start = Instant::now();
        // Sequence number 3 never comes.
        for sequence_number in [0u16, 1, 2, 4, 5] {
            let packet = rtc::rtp::Packet {
                header: rtc::rtp::header::Header { ssrc, sequence_number, payload_type: VP8_PT, ..Default::default() },
                payload: vec![0u8; 100].into(),
            };
            let message = AttributedPacket::new(Packet::Rtp(packet));
            chain.handle_read(TaggedPacket { now: start, transport: Default::default(), message }).unwrap();
        }
        while chain.poll_read().is_some() {}
        // Five seconds of the chain's timers: unbounded, fifty requests.
        let mut asked = 0;
        for tick in 1..=500u32 {
            chain.handle_timeout(start + Duration::from_millis(10) * tick).unwrap();
            while let Some(out) = chain.poll_write() {
                let Packet::Rtcp(packets) = &out.message.packet else { continue };
                for nack in packets.iter().filter_map(|p| p.as_any().downcast_ref::<TransportLayerNack>()) {
                    assert_eq!(nack.media_ssrc, ssrc);
                    asked += nack.nacks.iter().filter(|pair| pair.packet_list().contains(&3)).count();
                }
            }
        }
        assert_eq!(asked, usize::from(NACKS_PER_LOST_PACKET));
    }

    #[test]
    fn only_rtp_is_taken_for_media() {
        let mut rtp = vec![0x80, 96, 0, 1, 0, 0, 0, 0, 0x12, 0x34, 0x56, 0x78];
        assert_eq!(rtp_ssrc(&rtp), Some(0x1234_5678));
        rtp[1] = 96 | 0x80; // the marker bit
        assert_eq!(rtp_ssrc(&rtp), Some(0x1234_5678));
        let sender_report = [0x80, 200, 0, 6, 0x12, 0x34, 0x56, 0x78, 0, 0, 0, 0];
        assert_eq!(rtp_ssrc(&sender_report), None, "RTCP");
        assert_eq!(rtp_ssrc(&[0, 1, 0, 0, 0x21, 0x12, 0xa4, 0x42, 0, 0, 0, 0]), None, "STUN");
        assert_eq!(rtp_ssrc(&[22, 254, 253, 0, 0, 0, 0, 0, 0, 0, 0, 0]), None, "DTLS");
        assert_eq!(rtp_ssrc(&rtp[..11]), None, "too short");
    }

    #[test]
    fn what_is_not_an_sdp_is_refused() {
        assert!(matches!(check_sdp("hello"), Err(MediaError::InvalidSdp(_))));
        assert!(matches!(check_sdp("v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\n"), Err(MediaError::InvalidSdp(_))));
        assert!(check_sdp("v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n").is_ok());
    }
}
