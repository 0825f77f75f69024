//! Light load-generator peers: the `sfu_load` benchmark's synthetic
//! participants on the sans-I/O `rtc` stack (`SFU_PEERS=rtc`, the default).
//!
//! Each peer is what [`TestPeer`] is to the SFU — a publishing and a
//! receiving peer connection with ICE, DTLS and SRTP, the SFU's own media
//! engine and interceptors — but every peer's connections are driven by
//! one thread, the hub, through one UDP socket, as a load generator should
//! be: on this 2-core machine the peers share the CPU with the SFU they
//! load, so what they cost is taken from it.
//!
//! - One socket, many addresses. The socket is bound to `0.0.0.0`; each
//!   connection has an address of its own on loopback (127.0.0.2,
//!   127.0.0.3, …, all the same port), which it sends from (`IP_PKTINFO`)
//!   and which the SFU tells it apart by, as it would tell apart browsers.
//!   The hub reads what arrives in batches (`recvmmsg`) and hands each
//!   datagram to the connection its destination address names — no
//!   socket, task or wake-up per connection.
//! - The receiving side counts and times the media it gets by the RTP
//!   header, which SRTP leaves in the clear, without decrypting it: the
//!   SFU has encrypted it, and the peers' decryption measures nothing
//!   about the SFU. Everything else — STUN, DTLS, the SFU's RTCP — goes
//!   through the connection. (So these receivers send no receiver reports
//!   or NACKs; on loopback nothing is lost unless a socket overflows.)
//! - The publishing side encrypts its media with its connection's SRTP
//!   context and sends it past the connection's interceptors, each packet
//!   when the clip says it is due (`RTCPeerConnection::srtp_contexts_mut`,
//!   a patch to the vendored `rtc`: vendor/rtc/PATCHES.md). ICE, DTLS and
//!   RTCP still go through the connection.
//!
//! Against the previous peers (a task and a socket per connection, media
//! through the connections both ways) this took the whole process of a
//! 100-call run from 1.90 to 1.60 cores (BENCHMARKS.md).
//!
//! `SFU_PEERS=webrtc` runs the `webrtc` crate's `TestPeer`s instead.
//!
//! [`TestPeer`]: witness_media::loopback::TestPeer

use std::collections::HashMap;
use std::io::IoSliceMut;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::configuration::media_engine::MediaEngine;
use rtc::peer_connection::sdp::RTCSessionDescription;
use rtc::peer_connection::{RTCPeerConnection, RTCPeerConnectionBuilder};
use rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
use rtc::sansio::Protocol;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use witness_media::loopback::{Clip, Received, Replay, SendTimes, Signaling};
use witness_media::server::{
    add_host_candidate, encoding, rand_ssrc, read_datagram, register_codecs, register_interceptors,
    widen_receive_buffer, MediaError, Signal, VP8_PT,
};
use witness_schemas::ParticipantRole;

fn webrtc_error(e: impl std::fmt::Display) -> MediaError {
    MediaError::WebRtc(e.to_string())
}

/// An `rtc` connection with the SFU's media engine and interceptors and
/// one host candidate, `local`.
pub fn connection(local: SocketAddr) -> Result<RTCPeerConnection, MediaError> {
    let mut media_engine = MediaEngine::default();
    register_codecs(&mut media_engine)?;
    let registry = register_interceptors(&mut media_engine)?;
    let mut pc = RTCPeerConnectionBuilder::new()
        .with_media_engine(media_engine)
        .with_interceptor_registry(registry)
        .build(Instant::now())
        .map_err(webrtc_error)?;
    add_host_candidate(&mut pc, local)?;
    Ok(pc)
}

/// Sets `description` as `pc`'s local one; returns its SDP.
fn set_local(pc: &mut RTCPeerConnection, description: RTCSessionDescription) -> Result<String, MediaError> {
    pc.set_local_description(Instant::now(), description).map_err(webrtc_error)?;
    pc.local_description().map(|d| d.sdp).ok_or_else(|| webrtc_error("no local description"))
}

/// What a publishing peer is told to send.
#[derive(Debug)]
struct Order {
    video: Arc<Clip>,
    audio: Arc<Clip>,
    phases: [Duration; 2],
    until: Instant,
    done: oneshot::Sender<()>,
}

/// What the hub is asked to do.
enum Command {
    /// Drive this connection, at its address.
    Add(Ipv4Addr, Box<Link>),
    /// Answer an offer from the SFU on the receiving connection at this address.
    Offer(Ipv4Addr, String, oneshot::Sender<Result<String, MediaError>>),
    /// Send the clips on the publishing connection at this address.
    Stream(Ipv4Addr, Order),
    /// Close and forget these connections.
    Close(Vec<Ipv4Addr>),
}

/// One connection the hub drives.
struct Link {
    pc: RTCPeerConnection,
    side: Side,
    /// The SFU's address, once the connection has sent it something.
    remote: Option<SocketAddr>,
    /// When it next wants `handle_timeout`.
    timeout: Instant,
    /// Something happened to it since it last sent what it had to send.
    dirty: bool,
}

enum Side {
    /// Its two streams' SSRCs (video, audio); what it streams.
    Publisher { ssrcs: [u32; 2], streams: Option<Streams>, sent: Arc<SendTimes> },
    /// Where it counts and times what arrives.
    Subscriber { received: Arc<Received>, sent: Arc<SendTimes> },
}

struct Streams {
    replays: [Replay; 2],
    until: Instant,
    done: Option<oneshot::Sender<()>>,
}

/// The hub's handle: how to reach its thread, the port every connection
/// shares, and the next free address.
struct Hub {
    commands: mpsc::UnboundedSender<Command>,
    port: u16,
    next: AtomicU32,
}

impl Hub {
    /// The process's hub, started by the first peer. Its thread is spawned
    /// from the caller's, whose CPU affinity it inherits (`SFU_PIN=1`
    /// keeps the peers off the SFU's core).
    fn get() -> &'static Hub {
        static HUB: OnceLock<Hub> = OnceLock::new();
        HUB.get_or_init(|| {
            let socket = std::net::UdpSocket::bind("0.0.0.0:0").expect("the peers' socket");
            let _ = widen_receive_buffer(&socket);
            let port = socket.local_addr().expect("bound").port();
            let (commands, received) = mpsc::unbounded_channel();
            std::thread::Builder::new()
                .name("peers-hub".into())
                .spawn(move || {
                    let runtime =
                        tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
                    runtime.block_on(run(socket, port, received));
                })
                .expect("the hub's thread");
            Hub { commands, port, next: AtomicU32::new(2) }
        })
    }

    /// A loopback address no other connection has (skipping .0 and .255).
    fn address(&self) -> Ipv4Addr {
        loop {
            let n = self.next.fetch_add(1, Ordering::Relaxed);
            let last = n & 0xff;
            if last != 0 && last != 0xff {
                return Ipv4Addr::from(0x7f00_0000 | (n & 0x00ff_ffff));
            }
        }
    }

    fn send(&self, command: Command) {
        let _ = self.commands.send(command);
    }
}

/// A synthetic participant on the `rtc` stack.
#[derive(Debug)]
pub struct RtcPeer {
    pub received: Arc<Received>,
    publisher: Ipv4Addr,
    subscriber: Ipv4Addr,
    tasks: Vec<JoinHandle<()>>,
}

impl RtcPeer {
    /// Joins `room` as `name`, publishes an audio and a video track and
    /// answers whatever the SFU offers; sends nothing until
    /// [`RtcPeer::stream`].
    pub async fn join(
        server: &impl Signaling,
        room: &str,
        name: &str,
        role: ParticipantRole,
        sent: Arc<SendTimes>,
    ) -> Result<RtcPeer, MediaError> {
        let hub = Hub::get();
        let received = Arc::new(Received::default());
        let (signals_tx, mut signals) = mpsc::unbounded_channel();
        server.join(room, name, role, signals_tx).await?;

        let subscriber = hub.address();
        let pc = connection(SocketAddr::new(subscriber.into(), hub.port))?;
        let side = Side::Subscriber { received: received.clone(), sent: sent.clone() };
        hub.send(Command::Add(subscriber, Link::new(pc, side)));
        let (answers_to, room_id, me) = (server.clone(), room.to_owned(), name.to_owned());
        let tasks = vec![tokio::spawn(async move {
            while let Some(signal) = signals.recv().await {
                let Signal::Offer { sdp } = signal else { continue };
                let (reply, answer) = oneshot::channel();
                hub.send(Command::Offer(subscriber, sdp, reply));
                if let Ok(Ok(sdp)) = answer.await {
                    let _ = answers_to.subscriber_answer(&room_id, &me, &sdp).await;
                }
            }
        })];

        let publisher = hub.address();
        let mut pc = connection(SocketAddr::new(publisher.into(), hub.port))?;
        let mut ssrcs = Vec::new();
        for kind in [RtpCodecKind::Video, RtpCodecKind::Audio] {
            let ssrc = rand_ssrc();
            let track = MediaStreamTrack::new(
                format!("{name}-stream"),
                format!("{name}-{ssrc}"),
                name.to_owned(),
                kind,
                vec![encoding(kind, "", ssrc)],
            );
            pc.add_track(track).map_err(webrtc_error)?;
            ssrcs.push(ssrc);
        }
        let offer = pc.create_offer(None).map_err(webrtc_error)?;
        let sdp = set_local(&mut pc, offer)?;
        let answer = server.publish(room, name, &sdp).await?;
        let answer = RTCSessionDescription::answer(answer).map_err(|e| MediaError::InvalidSdp(e.to_string()))?;
        pc.set_remote_description(Instant::now(), answer).map_err(webrtc_error)?;
        let side = Side::Publisher { ssrcs: [ssrcs[0], ssrcs[1]], streams: None, sent };
        hub.send(Command::Add(publisher, Link::new(pc, side)));
        Ok(RtcPeer { received, publisher, subscriber, tasks })
    }

    /// Streams `video` and `audio` in real time from the given phases into
    /// them until `until`; the receiver fires when done.
    pub fn stream(
        &self,
        video: Arc<Clip>,
        audio: Arc<Clip>,
        phases: [Duration; 2],
        until: Instant,
    ) -> oneshot::Receiver<()> {
        let (done, finished) = oneshot::channel();
        Hub::get().send(Command::Stream(self.publisher, Order { video, audio, phases, until, done }));
        finished
    }

    pub fn close(self) {
        Hub::get().send(Command::Close(vec![self.publisher, self.subscriber]));
        for task in self.tasks {
            task.abort();
        }
    }
}

/// The hub's thread: every connection, its one socket.
async fn run(socket: std::net::UdpSocket, port: u16, mut commands: mpsc::UnboundedReceiver<Command>) {
    let state = quinn_udp::UdpSocketState::new((&socket).into()).expect("the peers' socket state");
    if let Ok(size) = state.recv_buffer_size((&socket).into()) {
        let _ = state.set_send_buffer_size((&socket).into(), size);
    }
    // Room for what the kernel may hand over as one (GRO).
    let size = (state.gro_segments() * 1500).max(2048);
    let io = tokio::net::UdpSocket::from_std(socket).expect("a tokio socket");
    let mut hub = Driver { socket: Socket { io, state, port }, links: HashMap::new() };
    let mut buffers: Vec<Vec<u8>> = (0..quinn_udp::BATCH_SIZE).map(|_| vec![0; size]).collect();
    loop {
        let wake = hub.next_wake();
        tokio::select! {
            biased;
            command = commands.recv() => match command {
                Some(command) => hub.command(command),
                None => return,
            },
            readable = hub.socket.io.readable() => {
                if readable.is_ok() {
                    hub.read(&mut buffers);
                }
            }
            _ = tokio::time::sleep_until(wake.into()) => {}
        }
        hub.tick(Instant::now());
    }
}

struct Driver {
    socket: Socket,
    links: HashMap<Ipv4Addr, Link>,
}

struct Socket {
    io: tokio::net::UdpSocket,
    state: quinn_udp::UdpSocketState,
    port: u16,
}

impl Driver {
    fn command(&mut self, command: Command) {
        match command {
            Command::Add(address, link) => {
                self.links.insert(address, *link);
            }
            Command::Offer(address, sdp, reply) => {
                let Some(link) = self.links.get_mut(&address) else { return };
                let _ = reply.send(answer(&mut link.pc, sdp));
                link.dirty = true;
            }
            Command::Stream(address, Order { video, audio, phases, until, done }) => {
                let Some(Link { side: Side::Publisher { streams, .. }, .. }) = self.links.get_mut(&address) else {
                    return;
                };
                let replays = [Replay::new(video, phases[0]), Replay::new(audio, phases[1])];
                *streams = Some(Streams { replays, until, done: Some(done) });
            }
            Command::Close(addresses) => {
                for address in addresses {
                    if let Some(mut link) = self.links.remove(&address) {
                        let _ = link.pc.close();
                        self.socket.flush(address, &mut link);
                    }
                }
            }
        }
    }

    /// When something is next due: a connection's timeout, a packet.
    fn next_wake(&self) -> Instant {
        let mut wake = Instant::now() + Duration::from_millis(100);
        for link in self.links.values() {
            wake = wake.min(link.timeout);
            if let Side::Publisher { streams: Some(streams), .. } = &link.side {
                wake = wake.min(streams.replays[0].due().min(streams.replays[1].due()).min(streams.until));
            }
        }
        wake
    }

    /// Reads what the socket holds, a batch per system call.
    fn read(&mut self, buffers: &mut [Vec<u8>]) {
        let Socket { io, state, port } = &self.socket;
        let mut meta = [quinn_udp::RecvMeta::default(); quinn_udp::BATCH_SIZE];
        let mut slices: Vec<IoSliceMut<'_>> = buffers.iter_mut().map(|b| IoSliceMut::new(b)).collect();
        let mut errors = 0;
        while errors < quinn_udp::BATCH_SIZE {
            let count = match io.try_io(tokio::io::Interest::READABLE, || state.recv(io.into(), &mut slices, &mut meta))
            {
                Ok(count) => count,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                // (An ICMP error from an address that went away, on Linux.)
                Err(_) => {
                    errors += 1;
                    continue;
                }
            };
            let now = Instant::now();
            for (slice, meta) in slices.iter().zip(&meta[..count]) {
                let Some(IpAddr::V4(address)) = meta.dst_ip else { continue };
                let Some(link) = self.links.get_mut(&address) else { continue };
                let local = SocketAddr::new(address.into(), *port);
                for datagram in slice[..meta.len].chunks(meta.stride.max(1)) {
                    link.datagram(now, local, meta.addr, datagram);
                }
            }
        }
    }

    /// Sends what is due, handles what timed out, and sends what the
    /// connections have to send.
    fn tick(&mut self, now: Instant) {
        for (&address, link) in self.links.iter_mut() {
            link.stream(now, &self.socket, address);
            if link.timeout <= now {
                let _ = link.pc.handle_timeout(now);
                link.dirty = true;
            }
            if link.dirty {
                self.socket.flush(address, link);
            }
        }
    }
}

impl Socket {
    /// Sends `datagram` from `address` (a full socket buffer drops it, as
    /// a congested link would).
    fn send(&self, address: Ipv4Addr, to: SocketAddr, datagram: &[u8]) {
        let transmit = quinn_udp::Transmit {
            destination: to,
            ecn: None,
            contents: datagram,
            segment_size: None,
            src_ip: Some(IpAddr::V4(address)),
        };
        let _ = self.io.try_io(tokio::io::Interest::WRITABLE, || self.state.try_send((&self.io).into(), &transmit));
    }

    /// Sends what `link` has to send, from its address; drops what it
    /// read (the hub counts media itself) and notes its next timeout.
    fn flush(&self, address: Ipv4Addr, link: &mut Link) {
        while let Some(out) = link.pc.poll_write() {
            link.remote = Some(out.transport.peer_addr);
            self.send(address, out.transport.peer_addr, &out.message);
        }
        while link.pc.poll_read().is_some() {}
        while link.pc.poll_event().is_some() {}
        link.timeout = link.pc.poll_timeout().unwrap_or_else(|| Instant::now() + Duration::from_secs(1));
        link.dirty = false;
    }
}

impl Link {
    /// Driven from its first tick on (which starts its ICE checks).
    fn new(pc: RTCPeerConnection, side: Side) -> Box<Link> {
        Box::new(Link { pc, side, remote: None, timeout: Instant::now(), dirty: true })
    }

    /// A datagram for this connection: media for a receiving one is
    /// counted and timed; anything else goes to the connection.
    fn datagram(&mut self, now: Instant, local: SocketAddr, source: SocketAddr, datagram: &[u8]) {
        if let (Side::Subscriber { received, sent }, Some(header)) = (&self.side, rtp_header(datagram)) {
            let counter = if header.payload_type == VP8_PT { &received.video_packets } else { &received.audio_packets };
            counter.fetch_add(1, Ordering::Relaxed);
            received.bytes.fetch_add(header.payload_bytes as u64, Ordering::Relaxed);
            if let Some(at) = sent.take(header.timestamp, header.sequence) {
                received.delays_us.lock().expect("delays poisoned").push((now - at).as_micros() as u64);
            }
            return;
        }
        read_datagram(&mut self.pc, now, local, source, datagram);
        self.dirty = true;
    }

    /// Sends the packets of its streams that are due: encrypted with the
    /// connection's SRTP context and sent past its interceptors (on a
    /// lossless loopback nothing is asked of them: no NACK is answered
    /// from their history, and the SFU needs no sender reports). Before
    /// DTLS is done they are dropped, as the connection would drop them.
    fn stream(&mut self, now: Instant, socket: &Socket, address: Ipv4Addr) {
        use rtc::shared::marshal::Marshal;
        let Side::Publisher { ssrcs, streams: Some(streams), sent } = &mut self.side else { return };
        for (replay, ssrc) in streams.replays.iter_mut().zip(*ssrcs) {
            while replay.due() <= now && replay.due() < streams.until {
                let mut packet = replay.take();
                packet.header.ssrc = ssrc;
                let (Some(remote), Some((local, _)), Ok(plain)) =
                    (self.remote, self.pc.srtp_contexts_mut(), packet.marshal())
                else {
                    continue;
                };
                sent.put((packet.header.timestamp, packet.header.sequence_number), Instant::now());
                if let Ok(protected) = local.encrypt_rtp(&plain) {
                    socket.send(address, remote, &protected);
                }
            }
        }
        if streams.replays.iter().all(|r| r.due() >= streams.until) {
            if let Some(done) = streams.done.take() {
                let _ = done.send(());
            }
        }
    }
}

/// What the hub reads of an SRTP packet's header (in the clear).
struct RtpHeader {
    payload_type: u8,
    sequence: u16,
    timestamp: u32,
    /// The encrypted payload's size: past the header, less the 16-byte
    /// tag of the AEAD profile the connections negotiate.
    payload_bytes: usize,
}

/// The header of an RTP packet (RFC 3550 §5.1; not RTCP, whose packet
/// types 192–223 sit where RTP's marker and payload type are: RFC 5761).
fn rtp_header(datagram: &[u8]) -> Option<RtpHeader> {
    if datagram.len() < 12 || datagram[0] >> 6 != 2 || (192..=223).contains(&datagram[1]) {
        return None;
    }
    let mut header = 12 + 4 * usize::from(datagram[0] & 0x0f);
    if datagram[0] & 0x10 != 0 {
        let words = datagram.get(header + 2..header + 4)?;
        header += 4 + 4 * usize::from(u16::from_be_bytes([words[0], words[1]]));
    }
    Some(RtpHeader {
        payload_type: datagram[1] & 0x7f,
        sequence: u16::from_be_bytes([datagram[2], datagram[3]]),
        timestamp: u32::from_be_bytes([datagram[4], datagram[5], datagram[6], datagram[7]]),
        payload_bytes: datagram.len().saturating_sub(header + 16),
    })
}

fn answer(pc: &mut RTCPeerConnection, sdp: String) -> Result<String, MediaError> {
    let offer = RTCSessionDescription::offer(sdp).map_err(|e| MediaError::InvalidSdp(e.to_string()))?;
    pc.set_remote_description(Instant::now(), offer).map_err(webrtc_error)?;
    let answer = pc.create_answer(None).map_err(webrtc_error)?;
    set_local(pc, answer)
}
