//! In-process WebRTC peers that call each other through a [`MediaServer`]:
//! the operator's self-test (`witness media loopback`) and the load
//! generator's building block. Each [`TestPeer`] is what a browser is to the
//! SFU — a publishing and a receiving peer connection over real UDP on
//! loopback, DTLS and SRTP included — sending synthetic Opus and VP8 from
//! GStreamer test sources (or any RTP it is handed).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
use rtc::shared::marshal::Unmarshal;
use tokio::sync::{mpsc, watch};
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::media_stream::MediaStreamTrack;
use webrtc::peer_connection::{
    MediaEngine, PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler, RTCIceGatheringState,
    RTCSessionDescription,
};
use witness_schemas::ParticipantRole;

use crate::recorder::SyntheticSource;
use crate::server::{register_codecs, register_interceptors, MediaError, MediaServer, Report, Signal};

/// What one peer received through the SFU.
#[derive(Debug, Default)]
pub struct Received {
    pub audio_packets: AtomicU64,
    pub video_packets: AtomicU64,
    pub bytes: AtomicU64,
    /// Video bytes (payload) received: what a layer switch changes.
    pub video_bytes: AtomicU64,
    /// Times a received stream's sequence number jumped (by more than 100)
    /// rather than went on: a layer switch the SFU failed to renumber.
    pub sequence_jumps: AtomicU64,
    /// The sequence number of the last video packet received (as the SFU
    /// numbered it), once one was.
    pub last_video_sequence: Mutex<Option<u16>>,
    /// Send-to-receive delays of packets stamped by [`TestPeer::send`], in µs.
    pub delays_us: Mutex<Vec<u64>>,
}

/// What a [`TestPeer`] needs of an SFU: [`MediaServer`]'s signaling, or
/// another forwarder's under the same load (the `sfu_load` benchmark
/// compares WebRTC stacks this way).
pub trait Signaling: Clone + Send + Sync + 'static {
    /// Enters `room`; offers for the receiving connection come on `signals`.
    fn join(
        &self,
        room: &str,
        name: &str,
        role: ParticipantRole,
        signals: mpsc::UnboundedSender<Signal>,
    ) -> impl std::future::Future<Output = Result<(), MediaError>> + Send;
    /// The publishing connection's offer in, the SFU's answer out.
    fn publish(
        &self,
        room: &str,
        name: &str,
        sdp: &str,
    ) -> impl std::future::Future<Output = Result<String, MediaError>> + Send;
    /// The receiving connection's answer to the SFU's last offer.
    fn subscriber_answer(
        &self,
        room: &str,
        name: &str,
        sdp: &str,
    ) -> impl std::future::Future<Output = Result<(), MediaError>> + Send;
}

impl Signaling for MediaServer {
    async fn join(
        &self,
        room: &str,
        name: &str,
        role: ParticipantRole,
        signals: mpsc::UnboundedSender<Signal>,
    ) -> Result<(), MediaError> {
        MediaServer::join(self, room, name, role, signals).await
    }

    async fn publish(&self, room: &str, name: &str, sdp: &str) -> Result<String, MediaError> {
        MediaServer::publish(self, room, name, sdp, Vec::new()).await
    }

    async fn subscriber_answer(&self, room: &str, name: &str, sdp: &str) -> Result<(), MediaError> {
        MediaServer::subscriber_answer(self, room, name, sdp).await
    }
}

/// A participant made of code.
pub struct TestPeer {
    pub name: String,
    publisher: Arc<dyn PeerConnection>,
    subscriber: Arc<dyn PeerConnection>,
    audio: LocalStream,
    video: LocalStream,
    /// Simulcast: each layer's RID and SSRC (empty: one stream), and the
    /// video section's mid, which its packets carry.
    layers: Vec<(&'static str, u32)>,
    video_mid: String,
    pub received: Arc<Received>,
    remotes: Remotes,
    sources: Vec<SyntheticSource>,
}

impl std::fmt::Debug for TestPeer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestPeer").field("name", &self.name).finish_non_exhaustive()
    }
}

/// Remote video tracks a peer receives, kept for keyframe requests.
type Remotes = Arc<Mutex<Vec<Arc<dyn TrackRemote>>>>;

struct Handler {
    gathered: watch::Sender<bool>,
    /// For the receiving connection: where to count and time what arrives.
    received: Option<(Arc<Received>, Remotes, Arc<SendTimes>)>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        let _ = self.gathered.send(state == RTCIceGatheringState::Complete);
    }

    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        let Some((received, remotes, sent)) = self.received.clone() else { return };
        let video = track.kind().await == RtpCodecKind::Video;
        if video {
            remotes.lock().expect("remotes poisoned").push(track.clone());
        }
        tokio::spawn(async move {
            let mut last_sequence: Option<u16> = None;
            while let Some(event) = track.poll().await {
                if let TrackRemoteEvent::OnRtpPacket(packet) = event {
                    let now = Instant::now();
                    let counter = if video { &received.video_packets } else { &received.audio_packets };
                    counter.fetch_add(1, Ordering::Relaxed);
                    received.bytes.fetch_add(packet.payload.len() as u64, Ordering::Relaxed);
                    if video {
                        received.video_bytes.fetch_add(packet.payload.len() as u64, Ordering::Relaxed);
                    }
                    let sequence = packet.header.sequence_number;
                    if video {
                        *received.last_video_sequence.lock().expect("sequence poisoned") = Some(sequence);
                    }
                    if let Some(last) = last_sequence.replace(sequence) {
                        let step = sequence.wrapping_sub(last);
                        if step > 100 && step < 0xff00 {
                            received.sequence_jumps.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    if let Some(at) = sent.take(packet.header.timestamp, packet.header.sequence_number) {
                        received.delays_us.lock().expect("delays poisoned").push((now - at).as_micros() as u64);
                    }
                }
            }
        });
    }
}

/// When stamped packets were sent, by (RTP timestamp, sequence number):
/// the receiver looks its packets up to measure the delay through the SFU.
#[derive(Debug, Default)]
pub struct SendTimes(Mutex<std::collections::HashMap<(u32, u16), Instant>>);

impl SendTimes {
    /// Notes that the packet with this (RTP timestamp, sequence number) was
    /// sent `at`.
    pub fn put(&self, key: (u32, u16), at: Instant) {
        let mut map = self.0.lock().expect("send times poisoned");
        if map.len() > 100_000 {
            map.clear();
        }
        map.insert(key, at);
    }

    /// When the packet with this RTP timestamp and sequence number was sent
    /// (once: the entry is removed).
    pub fn take(&self, timestamp: u32, sequence: u16) -> Option<Instant> {
        self.0.lock().expect("send times poisoned").remove(&(timestamp, sequence))
    }
}

async fn client(handler: Handler) -> Result<(Arc<dyn PeerConnection>, watch::Receiver<bool>), MediaError> {
    let mut media_engine = MediaEngine::default();
    register_codecs(&mut media_engine)?;
    let registry = register_interceptors(&mut media_engine)?;
    let rx = handler.gathered.subscribe();
    let pc = PeerConnectionBuilder::new()
        .with_media_engine(media_engine)
        .with_interceptor_registry(registry)
        .with_setting_engine(
            webrtc::peer_connection::SettingEngineBuilder::new().with_include_loopback_candidate(true).build(),
        )
        .with_handler(Arc::new(handler))
        .with_udp_addrs(vec!["127.0.0.1:0"])
        .build()
        .await
        .map_err(|e| MediaError::WebRtc(e.to_string()))?;
    Ok((Arc::new(pc), rx))
}

async fn gathered(rx: &mut watch::Receiver<bool>) {
    let _ = tokio::time::timeout(Duration::from_secs(5), rx.wait_for(|d| *d)).await;
}

/// A local track and the SSRC its packets carry.
type LocalStream = (Arc<TrackLocalStaticRTP>, u32);

/// A local track sent as one stream (`rids` empty) or as one simulcast
/// layer per RID; returns it with its first stream's SSRC and each layer's.
fn local_track(kind: RtpCodecKind, name: &str, rids: &[&'static str]) -> (LocalStream, Vec<(&'static str, u32)>) {
    let layers: Vec<(&'static str, u32)> = rids.iter().map(|rid| (*rid, crate::server::rand_ssrc())).collect();
    let streams = if layers.is_empty() { vec![("", crate::server::rand_ssrc())] } else { layers.clone() };
    let encodings = streams.iter().map(|(rid, ssrc)| crate::server::encoding(kind, rid, *ssrc)).collect();
    let track = TrackLocalStaticRTP::new(MediaStreamTrack::new(
        format!("{name}-stream"),
        format!("{name}-{}", if kind == RtpCodecKind::Audio { "mic" } else { "cam" }),
        name.to_owned(),
        kind,
        encodings,
    ));
    ((Arc::new(track), streams[0].1), layers)
}

/// An RTP header extension's value as raw bytes (a mid or a RID).
struct Sdes(&'static str, String);

impl rtc::shared::marshal::MarshalSize for Sdes {
    fn marshal_size(&self) -> usize {
        self.1.len()
    }
}

impl rtc::shared::marshal::Marshal for Sdes {
    fn marshal_to(&self, buf: &mut [u8]) -> rtc::shared::error::Result<usize> {
        buf[..self.1.len()].copy_from_slice(self.1.as_bytes());
        Ok(self.1.len())
    }
}

impl Sdes {
    fn extension(self) -> rtc::rtp::extension::HeaderExtension {
        rtc::rtp::extension::HeaderExtension::Custom { uri: self.0.into(), extension: Box::new(self) }
    }
}

/// The `a=mid` of an SDP's first video section.
fn video_mid(sdp: &str) -> Option<String> {
    let section = sdp.split("\nm=").find(|s| s.starts_with("video"))?;
    section.lines().find_map(|l| l.trim_end().strip_prefix("a=mid:")).map(str::to_owned)
}

impl TestPeer {
    /// Joins `room` as `name`, publishes an audio and a video track, and
    /// answers whatever the server offers. Sends nothing until
    /// [`TestPeer::start_sources`] or [`TestPeer::send`].
    pub async fn join(
        server: &impl Signaling,
        room: &str,
        name: &str,
        role: ParticipantRole,
        sent: Arc<SendTimes>,
    ) -> Result<TestPeer, MediaError> {
        Self::join_with_layers(server, room, name, role, sent, &[]).await
    }

    /// [`TestPeer::join`], its camera sent as one simulcast layer per RID
    /// (smallest first, e.g. `["q", "f"]`); send on them with
    /// [`TestPeer::send_layer`].
    pub async fn join_with_layers(
        server: &impl Signaling,
        room: &str,
        name: &str,
        role: ParticipantRole,
        sent: Arc<SendTimes>,
        rids: &[&'static str],
    ) -> Result<TestPeer, MediaError> {
        let received = Arc::new(Received::default());
        let remotes = Arc::new(Mutex::new(Vec::new()));
        let (signals_tx, mut signals) = mpsc::unbounded_channel();
        server.join(room, name, role, signals_tx).await?;

        let (publisher, mut pub_gathered) =
            client(Handler { gathered: watch::channel(false).0, received: None }).await?;
        let (subscriber, sub_gathered) = client(Handler {
            gathered: watch::channel(false).0,
            received: Some((received.clone(), remotes.clone(), sent)),
        })
        .await?;

        // Answer the server's offers on the receiving connection.
        let (answering, server_for_answers, room_id, me) =
            (subscriber.clone(), server.clone(), room.to_owned(), name.to_owned());
        tokio::spawn(async move {
            let mut sub_gathered = sub_gathered;
            while let Some(signal) = signals.recv().await {
                let Signal::Offer { sdp } = signal else { return };
                let Ok(offer) = RTCSessionDescription::offer(sdp) else { continue };
                if answering.set_remote_description(offer).await.is_err() {
                    continue;
                }
                let Ok(answer) = answering.create_answer(None).await else { continue };
                if answering.set_local_description(answer).await.is_err() {
                    continue;
                }
                gathered(&mut sub_gathered).await;
                if let Some(local) = answering.local_description().await {
                    let _ = server_for_answers.subscriber_answer(&room_id, &me, &local.sdp).await;
                }
            }
        });

        let (audio, _) = local_track(RtpCodecKind::Audio, name, &[]);
        let (video, layers) = local_track(RtpCodecKind::Video, name, rids);
        for track in [&audio.0, &video.0] {
            publisher
                .add_track(track.clone() as Arc<dyn TrackLocal>)
                .await
                .map_err(|e| MediaError::WebRtc(e.to_string()))?;
        }
        let offer = publisher.create_offer(None).await.map_err(|e| MediaError::WebRtc(e.to_string()))?;
        publisher.set_local_description(offer).await.map_err(|e| MediaError::WebRtc(e.to_string()))?;
        gathered(&mut pub_gathered).await;
        let local = publisher.local_description().await.ok_or_else(|| MediaError::WebRtc("no offer".into()))?;
        let video_mid = video_mid(&local.sdp).unwrap_or_default();
        let answer = server.publish(room, name, &local.sdp).await?;
        let answer = RTCSessionDescription::answer(answer).map_err(|e| MediaError::InvalidSdp(e.to_string()))?;
        publisher.set_remote_description(answer).await.map_err(|e| MediaError::WebRtc(e.to_string()))?;
        Ok(TestPeer {
            name: name.to_owned(),
            publisher,
            subscriber,
            audio,
            video,
            layers,
            video_mid,
            received,
            remotes,
            sources: Vec::new(),
        })
    }

    /// Starts GStreamer test sources (a tone, a moving picture at
    /// `video_kbps`) feeding this peer's tracks.
    pub fn start_sources(&mut self, pattern: u32, video_kbps: u32) -> Result<(), MediaError> {
        for video in [false, true] {
            let (track, ssrc) = if video { self.video.clone() } else { self.audio.clone() };
            let (tx, mut rx) = mpsc::unbounded_channel::<Vec<u8>>();
            tokio::spawn(async move {
                while let Some(bytes) = rx.recv().await {
                    let mut buf = bytes.as_slice();
                    if let Ok(mut packet) = rtc::rtp::Packet::unmarshal(&mut buf) {
                        packet.header.ssrc = ssrc;
                        let _ = track.write_rtp(packet).await;
                    }
                }
            });
            let (pt, kbps) = if video { (96, video_kbps) } else { (111, 32) };
            let source = SyntheticSource::start(video, pt, kbps, 30, pattern, move |rtp| {
                let _ = tx.send(rtp.to_vec());
            })
            .map_err(|e| MediaError::Recording(e.to_string()))?;
            self.sources.push(source);
        }
        Ok(())
    }

    /// Sends one RTP packet on the video (or audio) track, stamped so the
    /// receivers measure its delay through the SFU.
    pub async fn send(&self, video: bool, mut packet: rtc::rtp::Packet, sent: &SendTimes) {
        let (track, ssrc) = if video { &self.video } else { &self.audio };
        packet.header.ssrc = *ssrc;
        sent.put((packet.header.timestamp, packet.header.sequence_number), Instant::now());
        let _ = track.write_rtp(packet).await;
    }

    /// Sends one RTP packet on simulcast layer `layer` of the camera (see
    /// [`TestPeer::join_with_layers`]), with the mid and RID a browser puts
    /// on it.
    pub async fn send_layer(&self, layer: usize, mut packet: rtc::rtp::Packet) -> Result<(), MediaError> {
        let (rid, ssrc) = *self.layers.get(layer).ok_or_else(|| MediaError::WebRtc(format!("no layer {layer}")))?;
        packet.header.ssrc = ssrc;
        let extensions = [
            Sdes("urn:ietf:params:rtp-hdrext:sdes:mid", self.video_mid.clone()).extension(),
            Sdes("urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id", rid.to_owned()).extension(),
        ];
        self.video.0.write_rtp_with_extensions(packet, &extensions).await.map_err(|e| MediaError::WebRtc(e.to_string()))
    }

    /// Tells the SFU this peer can receive `bps` (an RTCP REMB, as a
    /// browser's receiver sends).
    pub async fn send_bandwidth(&self, bps: u64) {
        use rtc::rtcp::payload_feedbacks::receiver_estimated_maximum_bitrate::ReceiverEstimatedMaximumBitrate;
        let remotes: Vec<_> = self.remotes.lock().expect("remotes poisoned").clone();
        for remote in remotes {
            let ssrcs = remote.ssrcs().await;
            if ssrcs.is_empty() {
                continue;
            }
            let remb = ReceiverEstimatedMaximumBitrate { sender_ssrc: 0, bitrate: bps as f32, ssrcs };
            let _ = remote.write_rtcp(vec![Box::new(remb)]).await;
        }
    }

    /// Asks the SFU for a keyframe of every video this peer receives, as a
    /// browser's decoder does after a loss.
    pub async fn request_keyframes(&self) {
        use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
        let remotes: Vec<_> = self.remotes.lock().expect("remotes poisoned").clone();
        for remote in remotes {
            if let Some(&media_ssrc) = remote.ssrcs().await.first() {
                let _ = remote.write_rtcp(vec![Box::new(PictureLossIndication { sender_ssrc: 0, media_ssrc })]).await;
            }
        }
    }

    /// Asks the SFU to send again the video packets numbered `sequences`
    /// (an RTCP NACK, as a browser's receiver sends after a loss).
    pub async fn request_retransmission(&self, sequences: &[u16]) {
        use rtc::rtcp::transport_feedbacks::transport_layer_nack::{
            nack_pairs_from_sequence_numbers, TransportLayerNack,
        };
        let remotes: Vec<_> = self.remotes.lock().expect("remotes poisoned").clone();
        for remote in remotes {
            if let Some(&media_ssrc) = remote.ssrcs().await.first() {
                let nacks = nack_pairs_from_sequence_numbers(sequences);
                let _ =
                    remote.write_rtcp(vec![Box::new(TransportLayerNack { sender_ssrc: 0, media_ssrc, nacks })]).await;
            }
        }
    }

    pub async fn close(self) {
        drop(self.sources);
        let _ = self.publisher.close().await;
        let _ = self.subscriber.close().await;
    }
}

/// What [`run`] saw.
#[derive(Debug)]
pub struct LoopbackReport {
    pub forwarded_packets: u64,
    /// What the server carried just before the peers hung up.
    pub census: crate::sfu::Census,
    pub keyframe_requests_relayed: u64,
    /// Per peer: (name, audio packets, video packets received).
    pub received: Vec<(String, u64, u64)>,
    /// Closed recording segments: (file, bytes, duration in ms).
    pub segments: Vec<(String, u64, u64)>,
    pub failures: Vec<String>,
}

/// Where [`run`] calls and what it hands on.
#[derive(Debug)]
pub struct LoopbackCall {
    /// The room (a session id when the call is written to a store).
    pub room: String,
    /// The recording's id: its segments go under `RECORDING/TRACK/`.
    pub recording: String,
    pub duration: Duration,
    /// Every report of the media server is passed on here as it comes (to
    /// be written to a store), besides being summed up in the result.
    pub forward: Option<mpsc::UnboundedSender<Report>>,
}

/// Two peers call each other through `server` in `call.room` for
/// `call.duration` with synthetic audio and video, recorded as
/// `call.recording`. `reports` is the receiver [`MediaServer::new`]
/// returned; `progress` gets the seconds done.
pub async fn run(
    server: &MediaServer,
    mut reports: mpsc::UnboundedReceiver<Report>,
    call: LoopbackCall,
    mut progress: impl FnMut(u64),
) -> Result<LoopbackReport, MediaError> {
    let LoopbackCall { room, recording, duration, forward } = call;
    let room = room.as_str();
    let mut segments = Vec::new();
    let mut failures = Vec::new();
    let mut drain = |reports: &mut mpsc::UnboundedReceiver<Report>| {
        while let Ok(report) = reports.try_recv() {
            match &report {
                Report::SegmentClosed { file, bytes, duration_ms, .. } => {
                    segments.push((file.clone(), *bytes, *duration_ms))
                }
                Report::RecordingFailed { track, error, .. } => failures.push(format!("{track}: {error}")),
                Report::Media(_) => {}
            }
            if let Some(forward) = &forward {
                let _ = forward.send(report);
            }
        }
    };
    let sent = Arc::new(SendTimes::default());
    let mut customer = TestPeer::join(server, room, "customer", ParticipantRole::Customer, sent.clone()).await?;
    let mut agent = TestPeer::join(server, room, "agent", ParticipantRole::Agent, sent.clone()).await?;
    server.start_recording(room, &recording)?;
    customer.start_sources(0, 300)?;
    agent.start_sources(1, 300)?;
    let start = Instant::now();
    while start.elapsed() < duration {
        tokio::time::sleep(Duration::from_secs(1).min(duration.saturating_sub(start.elapsed()))).await;
        progress(start.elapsed().as_secs());
        drain(&mut reports);
        // As a browser does after a loss: exercises the keyframe relay.
        customer.request_keyframes().await;
    }
    let census = server.census();
    // Hang up first, as a call does: the recorders then close on what arrived.
    drop(std::mem::take(&mut customer.sources));
    drop(std::mem::take(&mut agent.sources));
    tokio::time::sleep(Duration::from_millis(500)).await;
    server.stop_recording(room).await;
    let received = [&customer, &agent]
        .iter()
        .map(|p| {
            (
                p.name.clone(),
                p.received.audio_packets.load(Ordering::Relaxed),
                p.received.video_packets.load(Ordering::Relaxed),
            )
        })
        .collect();
    customer.close().await;
    agent.close().await;
    let _ = server.leave(room, "customer", None).await;
    let _ = server.leave(room, "agent", None).await;
    drain(&mut reports);
    segments.sort();
    Ok(LoopbackReport {
        forwarded_packets: server.counters().forwarded.get(),
        census,
        keyframe_requests_relayed: server.counters().relayed_keyframe_requests.get(),
        received,
        segments,
        failures,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::MediaConfig;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_peers_hear_and_see_each_other_through_the_sfu_and_are_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let latency = Arc::new(crate::server::AddedLatency::default());
        let config = MediaConfig {
            ports: (52_000, 52_199),
            recordings_dir: dir.path().to_owned(),
            segment: Duration::from_secs(1),
            latency: Some(latency.clone()),
            ..Default::default()
        };
        let (server, reports) = MediaServer::new(config);
        let (forward, mut forwarded) = mpsc::unbounded_channel();
        let call = LoopbackCall {
            room: "loopback".into(),
            recording: "rec".into(),
            duration: Duration::from_secs(4),
            forward: Some(forward),
        };
        let report = run(&server, reports, call, |_| {}).await.unwrap();
        for (name, audio, video) in &report.received {
            assert!(*audio > 100, "{name} received {audio} audio packets in 4 s");
            assert!(*video > 30, "{name} received {video} video packets in 4 s");
        }
        assert!(report.forwarded_packets > 300, "{report:?}");
        // What /metrics shows: the call while it ran, none after; bytes,
        // the added latency of every packet, PLIs to the publishers (the
        // recorders' and the subscribers' keyframes).
        assert_eq!(report.census, crate::sfu::Census { rooms: 1, participants: 2, tracks: 4 });
        assert_eq!(server.census(), crate::sfu::Census::default());
        let counters = server.counters();
        assert!(counters.forwarded_bytes.get() > 100 * report.forwarded_packets, "{counters:?}");
        assert_eq!(counters.added_latency.count(), report.forwarded_packets);
        assert!(counters.plis_sent.get() >= 1, "{counters:?}");
        // Every forwarded packet was timed from its arrival in the SFU's
        // socket (the kernel's timestamp) to its departure: some time,
        // each well under a second.
        let mut delays = latency.delays_us.lock().unwrap().clone();
        assert!(delays.len() as u64 >= report.forwarded_packets, "{} of {}", delays.len(), report.forwarded_packets);
        delays.sort_unstable();
        assert!(delays[delays.len() / 2] > 0, "the median packet took no time: {:?}", &delays[..10]);
        assert!(delays.iter().all(|&us| us < 1_000_000), "{:?}", delays.last());
        assert!(report.keyframe_requests_relayed >= 1, "the subscribers' PLIs reach the SFU: {report:?}");
        assert!(report.failures.is_empty(), "{:?}", report.failures);
        let tracks: std::collections::HashSet<&str> =
            report.segments.iter().map(|(file, _, _)| file.rsplit_once('/').unwrap().0).collect();
        assert_eq!(tracks.len(), 4, "two audio and two video tracks recorded: {:?}", report.segments);
        for (file, bytes, _) in &report.segments {
            assert!(file.starts_with("rec/"), "{file}");
            assert_eq!(std::fs::metadata(dir.path().join(file)).unwrap().len(), *bytes);
        }
        // Everything summed up was also handed on, in order, joins first.
        let mut passed_on = Vec::new();
        while let Ok(report) = forwarded.try_recv() {
            passed_on.push(report);
        }
        let closed = passed_on.iter().filter(|r| matches!(r, Report::SegmentClosed { .. })).count();
        assert_eq!(closed, report.segments.len());
        assert!(
            matches!(passed_on.first(), Some(Report::Media(crate::sfu::MediaEvent::ParticipantJoined { .. }))),
            "{:?}",
            passed_on.first()
        );
    }

    /// RTP packets of `frames` frames of a GStreamer test `source`, encoded
    /// and payloaded by `then`, as fast as GStreamer can.
    fn encoded(source: &str, frames: u32, then: &str) -> Vec<rtc::rtp::Packet> {
        use gstreamer::prelude::*;
        crate::recorder::init().unwrap();
        let description = format!("{source} num-buffers={frames} ! {then} ! appsink name=out sync=false");
        let pipeline = gstreamer::parse::launch(&description).unwrap().downcast::<gstreamer::Pipeline>().unwrap();
        let sink = pipeline.by_name("out").unwrap().downcast::<gstreamer_app::AppSink>().unwrap();
        pipeline.set_state(gstreamer::State::Playing).unwrap();
        let mut packets = Vec::new();
        while let Ok(sample) = sink.pull_sample() {
            let map = sample.buffer().unwrap().map_readable().unwrap();
            packets.push(rtc::rtp::Packet::unmarshal(&mut map.as_slice()).unwrap());
        }
        pipeline.set_state(gstreamer::State::Null).unwrap();
        packets
    }

    /// A picture size change (Chrome's camera settling, a simulcast layer
    /// switch) starts a new file. When it comes while the first file's
    /// recorder is still being built, the packets that waited for that
    /// recorder are still written, in the file before the new one.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_picture_size_change_while_the_recorder_starts_loses_no_frame() {
        let dir = tempfile::tempdir().unwrap();
        let config =
            MediaConfig { ports: (52_800, 52_899), recordings_dir: dir.path().to_owned(), ..Default::default() };
        let (server, mut reports) = MediaServer::new(config);
        let sent = Arc::new(SendTimes::default());
        let room = "resize";
        let customer =
            TestPeer::join(&server, room, "customer", ParticipantRole::Customer, sent.clone()).await.unwrap();
        let agent = TestPeer::join(&server, room, "agent", ParticipantRole::Agent, sent.clone()).await.unwrap();
        server.start_recording(room, "rec").unwrap();

        // Audio until the call is up (the agent hears it).
        let audio = encoded("audiotestsrc", 500, "opusenc ! rtpopuspay pt=111");
        let up = Instant::now() + Duration::from_secs(10);
        for packet in audio {
            customer.send(false, packet, &sent).await;
            tokio::time::sleep(Duration::from_millis(20)).await;
            if agent.received.audio_packets.load(Ordering::Relaxed) > 0 || Instant::now() > up {
                break;
            }
        }
        assert!(agent.received.audio_packets.load(Ordering::Relaxed) > 0, "the call came up");

        // Five frames at 320 × 240, then five at 640 × 480, back to back:
        // the second keyframe comes while the first recorder is being built
        // (which takes milliseconds; without the fix this test failed in
        // every run).
        let vp8 = |width, height| {
            let then = format!("video/x-raw,width={width},height={height},framerate=30/1 ! vp8enc deadline=1 ! rtpvp8pay pt=96 mtu=1200");
            encoded("videotestsrc", 5, &then)
        };
        let (mut sequence, mut base) = (0u16, 0u32);
        for clip in [vp8(320, 240), vp8(640, 480)] {
            // One stream: numbered on, each clip's frames after the last's.
            let first = clip[0].header.timestamp;
            let span = clip.last().unwrap().header.timestamp.wrapping_sub(first);
            for mut packet in clip {
                packet.header.sequence_number = sequence;
                packet.header.timestamp = base + packet.header.timestamp.wrapping_sub(first);
                sequence += 1;
                customer.send(true, packet, &sent).await;
            }
            base += span + 3_000;
        }
        // Stopped while the second recorder may still wait for the first's
        // close: every file is reported by the time the stop returns.
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(server.stop_recording(room).await);

        let mut files = Vec::new();
        while let Ok(report) = reports.try_recv() {
            if let Report::SegmentClosed { track, index, file, .. } = report {
                if track.ends_with("-cam") {
                    files.push((index, file));
                }
            }
        }
        files.sort();
        let width = |file: &str| {
            let info = crate::composite::discover(&dir.path().join(file))?;
            info.video_streams().first().map(|v| v.width())
        };
        let widths: Vec<Option<u32>> = files.iter().map(|(_, file)| width(file)).collect();
        assert_eq!(widths, [Some(320), Some(640)], "one file per picture size, in order: {files:?}");
        customer.close().await;
        agent.close().await;
    }

    /// Rooms are spread over the media threads; each thread takes a port of
    /// its own, and the calls on both flow.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn calls_on_two_media_threads_each_get_a_port_and_both_flow() {
        let first = 52_600;
        let config = MediaConfig { ports: (first, first + 9), threads: 2, ..Default::default() };
        let (server, _reports) = MediaServer::new(config);
        let one = "room-0".to_owned();
        let other = (1..100)
            .map(|i| format!("room-{i}"))
            .find(|room| server.shard(room) != server.shard(&one))
            .expect("a room on the other thread");
        let sent = Arc::new(SendTimes::default());
        let mut peers = Vec::new();
        for room in [&one, &other] {
            for (phase, name, role) in
                [(0, "customer", ParticipantRole::Customer), (1, "agent", ParticipantRole::Agent)]
            {
                let mut peer = TestPeer::join(&server, room, name, role, sent.clone()).await.unwrap();
                peer.start_sources(phase, 300).unwrap();
                peers.push((room.clone(), peer));
            }
        }
        let taken = |port: u16| std::net::UdpSocket::bind(("127.0.0.1", port)).is_err();
        assert!(taken(first) && taken(first + 1), "each media thread bound a port");
        assert!(!taken(first + 2), "and only one");
        tokio::time::sleep(Duration::from_secs(3)).await;
        for (room, peer) in &peers {
            let audio = peer.received.audio_packets.load(Ordering::Relaxed);
            let video = peer.received.video_packets.load(Ordering::Relaxed);
            assert!(audio > 50 && video > 20, "{room}/{}: {audio} audio, {video} video packets in 3 s", peer.name);
        }
        for (room, peer) in peers {
            let name = peer.name.clone();
            peer.close().await;
            let _ = server.leave(&room, &name, None).await;
        }
    }

    /// The SFU reads a publisher's media past its connection's pipeline, so
    /// it runs the NACK generator itself: a packet missing from the stream
    /// is asked for; none is while nothing is missing.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_packet_a_publisher_never_delivered_is_asked_for() {
        let config = MediaConfig { ports: (52_630, 52_639), ..Default::default() };
        let (server, _reports) = MediaServer::new(config);
        let sent = Arc::new(SendTimes::default());
        let customer =
            TestPeer::join(&server, "loss", "customer", ParticipantRole::Customer, sent.clone()).await.unwrap();
        let agent = TestPeer::join(&server, "loss", "agent", ParticipantRole::Agent, sent.clone()).await.unwrap();
        let mut replay = Replay::new(Arc::new(Clip::capture(true, 300, 1.0).unwrap()), Duration::ZERO);
        let mut stream = |seconds: u64, skip: Option<usize>| {
            let until = Instant::now() + Duration::from_secs(seconds);
            let mut packets = Vec::new();
            while replay.due() < until {
                packets.push((replay.due(), replay.take()));
            }
            if let Some(skip) = skip {
                packets.remove(skip);
            }
            packets
        };
        for (due, packet) in stream(2, None) {
            tokio::time::sleep_until(due.into()).await;
            customer.send(true, packet, &sent).await;
        }
        assert_eq!(server.counters().nacks_sent.get(), 0, "nothing lost, nothing asked for");
        for (due, packet) in stream(1, Some(10)) {
            tokio::time::sleep_until(due.into()).await;
            customer.send(true, packet, &sent).await;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(server.counters().nacks_sent.get() > 0, "the lost packet was never asked for");

        customer.close().await;
        agent.close().await;
        let _ = server.leave("loss", "customer", None).await;
        let _ = server.leave("loss", "agent", None).await;
    }

    /// The SFU sends forwarded media past the subscriber connection's
    /// interceptors, so it answers a receiver's NACKs itself: with the
    /// packets it still has, and nothing for what it never sent.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_receivers_nack_is_answered_with_the_packets_it_names() {
        let config = MediaConfig { ports: (52_620, 52_629), ..Default::default() };
        let (server, _reports) = MediaServer::new(config);
        let sent = Arc::new(SendTimes::default());
        let mut customer =
            TestPeer::join(&server, "nack", "customer", ParticipantRole::Customer, sent.clone()).await.unwrap();
        let agent = TestPeer::join(&server, "nack", "agent", ParticipantRole::Agent, sent).await.unwrap();
        customer.start_sources(0, 300).unwrap();
        tokio::time::sleep(Duration::from_secs(2)).await;
        let last = agent.received.last_video_sequence.lock().unwrap().expect("video received");
        // How many packets the SFU sends again in answer to a NACK for `sequences`.
        let answered = |sequences: Vec<u16>| {
            let (server, agent) = (&server, &agent);
            async move {
                let before = server.counters().retransmitted.get();
                agent.request_retransmission(&sequences).await;
                tokio::time::sleep(Duration::from_millis(500)).await;
                server.counters().retransmitted.get() - before
            }
        };

        // Never sent (far ahead of the stream): nothing to send again.
        assert_eq!(answered((1..=5).map(|i| last.wrapping_add(10_000 + i)).collect()).await, 0);

        // The last six packets the agent got: each sent again, once.
        assert_eq!(answered((0..6).map(|i| last.wrapping_sub(i)).collect()).await, 6);

        customer.close().await;
        agent.close().await;
        let _ = server.leave("nack", "customer", None).await;
        let _ = server.leave("nack", "agent", None).await;
    }
}

#[cfg(test)]
mod simulcast_tests {
    use super::*;
    use crate::server::MediaConfig;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_simulcast_camera_reaches_the_receiver_at_the_layer_its_bandwidth_allows() {
        let config = MediaConfig { ports: (52_400, 52_499), ..Default::default() };
        let (server, _reports) = MediaServer::new(config);
        let sent = Arc::new(SendTimes::default());
        let (room, cam) = ("sc", "customer/customer-cam");
        let customer =
            TestPeer::join_with_layers(&server, room, "customer", ParticipantRole::Customer, sent.clone(), &["q", "h"])
                .await
                .unwrap();
        let agent = TestPeer::join(&server, room, "agent", ParticipantRole::Agent, sent.clone()).await.unwrap();
        // Each clip starts with a keyframe, so each layer has one every 2 s.
        let small = Arc::new(Clip::capture(true, 150, 2.0).unwrap());
        let large = Arc::new(Clip::capture(true, 900, 2.0).unwrap());
        let customer = Arc::new(customer);
        let until = Instant::now() + Duration::from_secs(10);
        for (layer, clip) in [(0, small), (1, large)] {
            let (customer, sent) = (customer.clone(), sent.clone());
            tokio::spawn(async move { customer.stream_on(clip, true, Some(layer), Duration::ZERO, until, sent).await });
        }
        let rate = |seconds: u64| {
            let received = agent.received.clone();
            async move {
                let before = received.video_bytes.load(Ordering::Relaxed);
                tokio::time::sleep(Duration::from_secs(seconds)).await;
                (received.video_bytes.load(Ordering::Relaxed) - before) * 8 / seconds
            }
        };

        // No estimate from the agent: the large layer.
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert_eq!(server.forwarded_layer(room, "agent", cam), Some(1));
        let unlimited = rate(2).await;

        // The agent's receiver says 400 kbit/s: the small layer, from its
        // next keyframe on.
        agent.send_bandwidth(400_000).await;
        tokio::time::sleep(Duration::from_millis(2_500)).await;
        assert_eq!(server.forwarded_layer(room, "agent", cam), Some(0));
        let limited = rate(2).await;
        eprintln!("video received: {unlimited} bit/s unlimited, {limited} bit/s limited");
        assert!(limited * 2 < unlimited, "{limited} bit/s limited, {unlimited} bit/s unlimited");
        assert!(limited > 50_000, "the small layer still flows: {limited} bit/s");
        assert_eq!(agent.received.sequence_jumps.load(Ordering::Relaxed), 0, "one continuous stream");
    }
}

/// Pre-encoded RTP for load generation: a few seconds of synthetic media,
/// replayed in a loop with fresh sequence numbers and timestamps, so a
/// thousand streams cost no encoder.
#[derive(Debug)]
pub struct Clip {
    /// Each packet with its time after the first.
    packets: Vec<(Duration, rtc::rtp::Packet)>,
    span: Duration,
    span_ts: u32,
    pub bytes_per_second: u64,
}

impl Clip {
    /// Captures `seconds` of live synthetic media (VP8 at `kbps`, or Opus).
    pub fn capture(video: bool, kbps: u32, seconds: f64) -> Result<Clip, MediaError> {
        let captured = Arc::new(Mutex::new(Vec::new()));
        let sink = captured.clone();
        let start = Instant::now();
        let pt = if video { 96 } else { 111 };
        let source = SyntheticSource::start(video, pt, kbps, 30, 0, move |rtp| {
            let mut buf = rtp;
            if let Ok(packet) = rtc::rtp::Packet::unmarshal(&mut buf) {
                sink.lock().expect("capture poisoned").push((start.elapsed(), packet));
            }
        })
        .map_err(|e| MediaError::Recording(e.to_string()))?;
        std::thread::sleep(Duration::from_secs_f64(seconds));
        drop(source);
        let mut packets = std::mem::take(&mut *captured.lock().expect("capture poisoned"));
        let Some((t0, first)) = packets.first().map(|(t, p)| (*t, p.header.timestamp)) else {
            return Err(MediaError::Recording("the synthetic source made no packets".into()));
        };
        for (t, _) in &mut packets {
            *t -= t0;
        }
        let (last_t, last_ts) = packets.last().map(|(t, p)| (*t, p.header.timestamp)).expect("not empty");
        let frame = Duration::from_millis(if video { 33 } else { 20 });
        let clock = if video { 90_000 } else { 48_000 };
        let span = last_t + frame;
        let span_ts = last_ts.wrapping_sub(first).wrapping_add((clock as u64 * frame.as_millis() as u64 / 1000) as u32);
        let bytes: u64 = packets.iter().map(|(_, p)| p.payload.len() as u64 + 12).sum();
        Ok(Clip { packets, span, span_ts, bytes_per_second: (bytes as f64 / span.as_secs_f64()) as u64 })
    }
}

/// A [`Clip`] replayed in real time from `phase` into it: each packet with
/// when it is due, with fresh sequence numbers and timestamps (looping).
#[derive(Debug)]
pub struct Replay {
    clip: Arc<Clip>,
    start: Instant,
    round: u32,
    index: usize,
    sent: u32,
    seq_base: u16,
    ts_base: u32,
}

impl Replay {
    /// Starts now, `phase` into the clip (streams started together with
    /// the same phase send their frames in step, which independent calls
    /// never do); packets due before now are skipped.
    pub fn new(clip: Arc<Clip>, phase: Duration) -> Replay {
        let phase = Duration::from_nanos((phase.as_nanos() % clip.span.as_nanos().max(1)) as u64);
        let now = Instant::now();
        let start = now.checked_sub(phase).unwrap_or(now);
        let index = clip.packets.iter().position(|(offset, _)| start + *offset >= now).unwrap_or(clip.packets.len());
        let mut replay = Replay {
            clip,
            start,
            round: 0,
            index,
            sent: 0,
            seq_base: crate::server::rand_ssrc() as u16,
            ts_base: crate::server::rand_ssrc(),
        };
        replay.wrap();
        replay
    }

    /// Past the clip's last packet: the next round.
    fn wrap(&mut self) {
        if self.index >= self.clip.packets.len() {
            self.index = 0;
            self.round += 1;
        }
    }

    /// When the next packet is due.
    pub fn due(&self) -> Instant {
        self.start + self.clip.span * self.round + self.clip.packets[self.index].0
    }

    /// The next packet, renumbered; moves on.
    pub fn take(&mut self) -> rtc::rtp::Packet {
        let mut packet = self.clip.packets[self.index].1.clone();
        packet.header.sequence_number = self.seq_base.wrapping_add(self.sent as u16);
        packet.header.timestamp =
            self.ts_base.wrapping_add(packet.header.timestamp).wrapping_add(self.clip.span_ts.wrapping_mul(self.round));
        self.sent += 1;
        self.index += 1;
        self.wrap();
        packet
    }
}

impl TestPeer {
    /// Sends `clip` on the video (or audio) track in real time until
    /// `until`, each packet stamped for the delay measurement, beginning
    /// `phase` into the clip (see [`Replay`]).
    pub async fn stream(&self, clip: Arc<Clip>, video: bool, phase: Duration, until: Instant, sent: Arc<SendTimes>) {
        self.stream_on(clip, video, None, phase, until, sent).await
    }

    /// [`TestPeer::stream`] on simulcast layer `layer` if given.
    pub async fn stream_on(
        &self,
        clip: Arc<Clip>,
        video: bool,
        layer: Option<usize>,
        phase: Duration,
        until: Instant,
        sent: Arc<SendTimes>,
    ) {
        let mut replay = Replay::new(clip, phase);
        while replay.due() < until {
            tokio::time::sleep_until(replay.due().into()).await;
            let packet = replay.take();
            match layer {
                Some(layer) => {
                    let _ = self.send_layer(layer, packet).await;
                }
                None => self.send(video, packet, &sent).await,
            }
        }
    }
}

/// `p` (0..=1) of sorted values.
pub fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

#[cfg(test)]
mod replay_tests {
    use super::*;

    /// A clip of three 20 ms Opus packets (960 ticks apart at 48 kHz).
    fn clip() -> Arc<Clip> {
        let packets = (0..3u32)
            .map(|i| {
                let mut packet = rtc::rtp::Packet::default();
                packet.header.timestamp = 1_000 + 960 * i;
                packet.header.sequence_number = 7;
                (Duration::from_millis(20 * u64::from(i)), packet)
            })
            .collect();
        Arc::new(Clip { packets, span: Duration::from_millis(60), span_ts: 2_880, bytes_per_second: 0 })
    }

    #[test]
    fn a_replay_starts_at_its_phase_and_loops_with_fresh_numbers() {
        let before = Instant::now();
        // 30 ms in: the first two packets (0 and 20 ms) are behind.
        let mut replay = Replay::new(clip(), Duration::from_millis(30));
        let due = replay.due();
        assert!(due >= before + Duration::from_millis(5) && due <= Instant::now() + Duration::from_millis(10));
        let packets: Vec<_> = (0..4).map(|_| (replay.due(), replay.take())).collect();
        // The clip's third packet, then the next round's first three.
        let offsets: Vec<u32> =
            packets.iter().map(|(_, p)| p.header.timestamp.wrapping_sub(packets[0].1.header.timestamp)).collect();
        assert_eq!(offsets, [0, 960, 1_920, 2_880], "timestamps go on across the loop");
        let sequences: Vec<u16> = packets
            .iter()
            .map(|(_, p)| p.header.sequence_number.wrapping_sub(packets[0].1.header.sequence_number))
            .collect();
        assert_eq!(sequences, [0, 1, 2, 3], "fresh consecutive sequence numbers");
        let gaps: Vec<Duration> = packets.windows(2).map(|w| w[1].0 - w[0].0).collect();
        assert_eq!(gaps, [Duration::from_millis(20); 3], "in real time, round after round");
    }

    #[test]
    fn a_phase_longer_than_the_clip_wraps() {
        let short = Replay::new(clip(), Duration::from_millis(10));
        let long = Replay::new(clip(), Duration::from_millis(70));
        // Both next send the clip's second packet (20 ms in), 10 ms from now.
        let (a, b) = (short.due(), long.due());
        assert!(a.max(b) - a.min(b) < Duration::from_millis(5));
        assert_eq!(short.clip.packets[short.index].1.header.timestamp, 1_960);
        assert_eq!(long.clip.packets[long.index].1.header.timestamp, 1_960);
    }
}
