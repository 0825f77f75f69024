//! Light load-generator peers: the `sfu_load` benchmark's synthetic
//! participants on the sans-I/O `rtc` stack (`SFU_PEERS=rtc`, the default).
//!
//! Each peer is what [`TestPeer`] is to the SFU — a publishing and a
//! receiving peer connection, each with its own UDP socket on loopback,
//! ICE, DTLS and SRTP, the SFU's own media engine and interceptors — but
//! each connection is one tokio task driving an `rtc` connection directly,
//! where `TestPeer` is built on the `webrtc` crate's tasks, channels and
//! locks (which as an SFU cost 1.7 times the CPU per packet of the same
//! stack driven directly: BENCHMARKS.md). On a 2-core machine the peers
//! share the CPU with the SFU they load, so what they cost is taken from
//! it. `SFU_PEERS=webrtc` runs the `TestPeer`s instead.
//!
//! [`TestPeer`]: witness_media::loopback::TestPeer

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::configuration::media_engine::MediaEngine;
use rtc::peer_connection::event::{RTCPeerConnectionEvent, RTCTrackEvent};
use rtc::peer_connection::message::{RTCMessage, TaggedRTCMessage};
use rtc::peer_connection::sdp::RTCSessionDescription;
use rtc::peer_connection::{RTCPeerConnection, RTCPeerConnectionBuilder};
use rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
use rtc::rtp_transceiver::RTCRtpSenderId;
use rtc::sansio::Protocol;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use witness_media::loopback::{Clip, Received, Replay, SendTimes, Signaling};
use witness_media::server::{
    add_host_candidate, encoding, rand_ssrc, read_datagram, register_codecs, register_interceptors, MediaError, Signal,
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

/// One connection and its socket.
struct Link {
    pc: RTCPeerConnection,
    socket: UdpSocket,
    local: SocketAddr,
}

impl Link {
    async fn new() -> Result<Link, MediaError> {
        let socket = UdpSocket::bind("127.0.0.1:0").await.map_err(webrtc_error)?;
        let local = socket.local_addr().map_err(webrtc_error)?;
        Ok(Link { pc: connection(local)?, socket, local })
    }

    fn set_local(&mut self, description: RTCSessionDescription) -> Result<String, MediaError> {
        self.pc.set_local_description(Instant::now(), description).map_err(webrtc_error)?;
        self.pc.local_description().map(|d| d.sdp).ok_or_else(|| webrtc_error("no local description"))
    }

    fn read(&mut self, datagram: &[u8], source: SocketAddr) {
        read_datagram(&mut self.pc, Instant::now(), self.local, source, datagram);
    }

    /// Reads what the socket holds, waiting for the first datagram until
    /// `deadline`; whether anything was read.
    async fn read_until(&mut self, buf: &mut [u8], deadline: Instant) -> bool {
        let first = tokio::time::timeout_at(deadline.into(), self.socket.recv_from(buf)).await;
        let Ok(Ok((n, source))) = first else { return false };
        self.read(&buf[..n], source);
        while let Ok((n, source)) = self.socket.try_recv_from(buf) {
            self.read(&buf[..n], source);
        }
        true
    }

    /// Sends what the connection has to send; returns when it next wants
    /// [`Protocol::handle_timeout`].
    async fn flush(&mut self) -> Instant {
        // A timeout's work may leave more to send, and another timeout due.
        for _ in 0..4 {
            while let Some(out) = self.pc.poll_write() {
                let _ = self.socket.send_to(&out.message, out.transport.peer_addr).await;
            }
            let now = Instant::now();
            match self.pc.poll_timeout() {
                Some(due) if due <= now => {
                    let _ = self.pc.handle_timeout(now);
                }
                due => return due.unwrap_or(now + Duration::from_secs(1)),
            }
        }
        Instant::now()
    }
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

/// A subscriber-connection offer from the SFU, to answer.
type Offer = (String, oneshot::Sender<Result<String, MediaError>>);

/// A synthetic participant on the `rtc` stack.
#[derive(Debug)]
pub struct RtcPeer {
    pub received: Arc<Received>,
    orders: mpsc::UnboundedSender<Order>,
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
        let received = Arc::new(Received::default());
        let (signals_tx, mut signals) = mpsc::unbounded_channel();
        server.join(room, name, role, signals_tx).await?;

        let subscriber = Link::new().await?;
        let (offers, offered) = mpsc::unbounded_channel::<Offer>();
        let mut tasks = vec![tokio::spawn(receive(subscriber, offered, received.clone(), sent.clone()))];
        let (answers_to, room_id, me) = (server.clone(), room.to_owned(), name.to_owned());
        tasks.push(tokio::spawn(async move {
            while let Some(signal) = signals.recv().await {
                let Signal::Offer { sdp } = signal else { continue };
                let (reply, answer) = oneshot::channel();
                if offers.send((sdp, reply)).is_err() {
                    return;
                }
                if let Ok(Ok(sdp)) = answer.await {
                    let _ = answers_to.subscriber_answer(&room_id, &me, &sdp).await;
                }
            }
        }));

        let mut publisher = Link::new().await?;
        let mut senders = Vec::new();
        for kind in [RtpCodecKind::Video, RtpCodecKind::Audio] {
            let ssrc = rand_ssrc();
            let track = MediaStreamTrack::new(
                format!("{name}-stream"),
                format!("{name}-{ssrc}"),
                name.to_owned(),
                kind,
                vec![encoding(kind, "", ssrc)],
            );
            senders.push((publisher.pc.add_track(track).map_err(webrtc_error)?, ssrc));
        }
        let offer = publisher.pc.create_offer(None).map_err(webrtc_error)?;
        let sdp = publisher.set_local(offer)?;
        let answer = server.publish(room, name, &sdp).await?;
        let answer = RTCSessionDescription::answer(answer).map_err(|e| MediaError::InvalidSdp(e.to_string()))?;
        publisher.pc.set_remote_description(Instant::now(), answer).map_err(webrtc_error)?;
        let (orders, ordered) = mpsc::unbounded_channel();
        tasks.push(tokio::spawn(publish(publisher, [senders[0], senders[1]], ordered, sent)));
        Ok(RtcPeer { received, orders, tasks })
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
        let _ = self.orders.send(Order { video, audio, phases, until, done });
        finished
    }

    pub fn close(self) {
        for task in self.tasks {
            task.abort();
        }
    }
}

/// Drives the publishing connection: ICE, DTLS, RTCP, and the streams
/// it is ordered to send.
async fn publish(
    mut link: Link,
    senders: [(RTCRtpSenderId, u32); 2],
    mut orders: mpsc::UnboundedReceiver<Order>,
    sent: Arc<SendTimes>,
) {
    let mut buf = vec![0u8; 2048];
    // Video, audio; and when to stop.
    let mut streams: Option<([Replay; 2], Instant, oneshot::Sender<()>)> = None;
    let mut due = link.flush().await;
    loop {
        let next_packet = streams.as_ref().map(|(replays, ..)| replays[0].due().min(replays[1].due()));
        let wake = next_packet.map_or(due, |at| at.min(due));
        tokio::select! {
            biased;
            order = orders.recv() => {
                let Some(Order { video, audio, phases, until, done }) = order else { return };
                streams = Some(([Replay::new(video, phases[0]), Replay::new(audio, phases[1])], until, done));
            }
            _ = link.read_until(&mut buf, wake) => {}
        }
        if let Some((replays, until, _)) = &mut streams {
            let now = Instant::now();
            for (replay, (sender, ssrc)) in replays.iter_mut().zip(senders) {
                while replay.due() <= now && replay.due() < *until {
                    let mut packet = replay.take();
                    packet.header.ssrc = ssrc;
                    sent.put((packet.header.timestamp, packet.header.sequence_number), Instant::now());
                    if let Some(mut sender) = link.pc.rtp_sender(sender) {
                        let _ = sender.write_rtp(Instant::now(), packet);
                    }
                }
            }
            if replays.iter().all(|r| r.due() >= *until) {
                if let Some((_, _, done)) = streams.take() {
                    let _ = done.send(());
                }
            }
        }
        while link.pc.poll_read().is_some() {}
        while link.pc.poll_event().is_some() {}
        due = link.flush().await;
    }
}

/// Drives the receiving connection: answers the SFU's offers, counts and
/// times what arrives.
async fn receive(
    mut link: Link,
    mut offers: mpsc::UnboundedReceiver<Offer>,
    received: Arc<Received>,
    sent: Arc<SendTimes>,
) {
    let mut buf = vec![0u8; 2048];
    let mut video_tracks = std::collections::HashSet::new();
    let mut due = link.flush().await;
    loop {
        tokio::select! {
            biased;
            offer = offers.recv() => {
                let Some((sdp, reply)) = offer else { return };
                let _ = reply.send(answer(&mut link, sdp));
            }
            _ = link.read_until(&mut buf, due) => {}
        }
        while let Some(event) = link.pc.poll_event() {
            if let RTCPeerConnectionEvent::OnTrack(RTCTrackEvent::OnOpen(init)) = event {
                let kind = link.pc.rtp_receiver(init.receiver_id).map(|r| r.track().kind());
                if kind == Some(RtpCodecKind::Video) {
                    video_tracks.insert(init.track_id);
                }
            }
        }
        let now = Instant::now();
        while let Some(TaggedRTCMessage { message, .. }) = link.pc.poll_read() {
            let RTCMessage::RtpPacket(track, packet) = message else { continue };
            let counter = if video_tracks.contains(&track) { &received.video_packets } else { &received.audio_packets };
            counter.fetch_add(1, Ordering::Relaxed);
            received.bytes.fetch_add(packet.payload.len() as u64, Ordering::Relaxed);
            if let Some(at) = sent.take(packet.header.timestamp, packet.header.sequence_number) {
                received.delays_us.lock().expect("delays poisoned").push((now - at).as_micros() as u64);
            }
        }
        due = link.flush().await;
    }
}

fn answer(link: &mut Link, sdp: String) -> Result<String, MediaError> {
    let offer = RTCSessionDescription::offer(sdp).map_err(|e| MediaError::InvalidSdp(e.to_string()))?;
    link.pc.set_remote_description(Instant::now(), offer).map_err(webrtc_error)?;
    let answer = link.pc.create_answer(None).map_err(webrtc_error)?;
    link.set_local(answer)
}
