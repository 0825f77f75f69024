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
//!
//! ## Where things are
//!
//! The types are here: the configuration, what comes out (reports,
//! signals, errors), what the handles share with the threads, and a media
//! thread's state ([`MediaThread`]: connections, peers, forwards). What
//! they do is in rooms of their own: [`handle`] (the [`MediaServer`]
//! handle and its command protocol), [`thread`] (the per-thread loop,
//! the core's inputs and outputs, signaling), [`io`] (the socket and the
//! connections' I/O), [`fastpath`] (SRTP in and out, NACKs, RTCP),
//! [`recording`] (recorders per track) and [`codec`] (codecs, SDP, VP8).

mod codec;
mod fastpath;
mod handle;
mod io;
mod recording;
#[cfg(test)]
mod tests;
mod thread;

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

pub use codec::{
    codec, encoding, feedback_interceptors, rand_ssrc, register_codecs, register_extensions, register_interceptors,
    vp8_keyframe, vp8_keyframe_size, NACKS_PER_LOST_PACKET, OPUS_PT, VP8_PT,
};
pub use handle::MediaServer;
use handle::{Closing, Command};
// What the rooms below share with each other.
use self::{codec::*, fastpath::*, io::*};
pub use io::{add_host_candidate, read_datagram, stun_username, widen_receive_buffer};

/// How often a connection that names no deadline of its own
/// (`poll_timeout`) is given `handle_timeout` anyway. The core is woken
/// when it asks ([`Output::Timeout`]), not on a tick.
const IDLE_CHECK: Duration = Duration::from_millis(100);
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

struct Recording {
    id: String,
    tracks: HashMap<String, TrackState>,
    /// Per video track, the picture size its current file holds.
    sizes: HashMap<String, (u16, u16)>,
    /// Per track, its files' numbers, shared by the recorders it has had.
    numbers: HashMap<String, SegmentNumbers>,
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

/// A participant: its two connections (indexes into `MediaThread::connections`).
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

/// The media thread's state: every connection, and what connects them.
struct MediaThread {
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
    /// When the core wants [`Input::Timeout`] (its last [`Output::Timeout`]).
    core_wake: Option<Instant>,
    next_report: Instant,
    /// Recordings closing because of what the current command did.
    closing: Closing,
}
