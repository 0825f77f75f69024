//! The fast path: media past the connections' pipelines (the module doc
//! of [`super`]). A publisher's opened streams are decrypted here with the
//! connection's SRTP context and fed to the feedback chain and the core;
//! forwarded packets are rewritten, encrypted with the subscriber's context
//! and sent; NACKs are answered from what was sent; sender reports, PLIs
//! and the SFU's tap on each connection's own chain.

use super::*;

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

impl MediaThread {
    /// Media on a publisher's connection, from a stream already opened:
    /// decrypted with the connection's SRTP context and handled here, past
    /// the connection's pipeline (`rtc`'s demultiplexing, ICE statistics,
    /// SRTP handler, interceptors, queues). False if it is not such a
    /// packet (then the connection takes it).
    pub(super) fn read_media(&mut self, index: usize, datagram: &[u8]) -> bool {
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
    pub(super) fn inbound(&mut self, index: usize, track: &str, packet: rtc::rtp::Packet) {
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
    pub(super) fn send_feedback(&mut self, index: usize) {
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

    /// A packet of a published track, for the core.
    pub(super) fn media(&mut self, index: usize, track: &str, packet: rtc::rtp::Packet) {
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
    pub(super) fn feedback(&mut self, index: usize, track: &str, packets: &[Box<dyn rtc::rtcp::Packet>]) {
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

    /// Sends `packet` to a subscriber: rewritten for its sender, encrypted
    /// with the connection's SRTP context and sent straight to its remote
    /// address, past the connection's pipeline (the module's doc).
    pub(super) fn transmit(&mut self, to: (String, String, String), mut packet: rtc::rtp::Packet) {
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
    pub(super) fn retransmit(&mut self, index: usize, track: &str, nack: &TransportLayerNack) {
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
    pub(super) fn report(&mut self, now: Instant) {
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

    /// Asks the publisher of `track` for a keyframe.
    pub(super) fn send_pli(&mut self, room: &str, track: &str) {
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
}

impl Incoming {
    pub(super) fn new() -> Incoming {
        Incoming { chain: Box::new(feedback_interceptors().build()), streams: HashMap::new() }
    }

    /// Shows the chain a packet that arrived `now` (RTP, or RTCP such as
    /// the publisher's sender reports); returns it as it came through
    /// (unchanged: these interceptors only take note).
    pub(super) fn observe(
        &mut self,
        now: Instant,
        packet: rtc::interceptor::Packet,
    ) -> Option<rtc::interceptor::Packet> {
        let message = rtc::interceptor::AttributedPacket::new(packet);
        let _ = self.chain.handle_read(TaggedPacket { now, transport: TransportContext::default(), message });
        let through = self.chain.poll_read().map(|m| m.message.packet);
        while self.chain.poll_read().is_some() {}
        through
    }

    /// The RTCP the chain has to send.
    pub(super) fn feedback(&mut self) -> Vec<Box<dyn rtc::rtcp::Packet>> {
        let mut out = Vec::new();
        while let Some(message) = self.chain.poll_write() {
            if let rtc::interceptor::Packet::Rtcp(packets) = message.message.packet {
                out.extend(packets);
            }
        }
        out
    }
}

/// The SFU's place in each connection's interceptor chain — the only
/// interceptor there: media goes past the connections (the module's doc).
///
/// Inbound RTCP: hands subscribers' keyframe requests (PLI, FIR),
/// bandwidth estimates (REMB) and NACKs, and publishers' sender reports,
/// to the application — inbound RTCP otherwise ends in the chain — so the
/// SFU can relay the requests to the publisher, pick simulcast layers
/// (`MediaThread::feedback`), answer NACKs from what it sent past the chain
/// (`MediaThread::retransmit`) and show the sender reports to the feedback
/// chain (`Incoming`); drops the rest (receiver reports and the like).
#[derive(Default)]
pub(super) struct SfuTap {
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

pub(super) fn is_keyframe_request(packet: &dyn rtc::rtcp::Packet) -> bool {
    use rtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
    let any = packet.as_any();
    any.is::<PictureLossIndication>() || any.is::<FullIntraRequest>()
}

pub(super) fn is_remb(packet: &dyn rtc::rtcp::Packet) -> bool {
    use rtc::rtcp::payload_feedbacks::receiver_estimated_maximum_bitrate::ReceiverEstimatedMaximumBitrate;
    packet.as_any().is::<ReceiverEstimatedMaximumBitrate>()
}

/// The SSRC of an RTP (not RTCP) datagram (RFC 7983: first byte 128–191;
/// RFC 5761: RTCP packet types 192–223 in the second).
pub(super) fn rtp_ssrc(datagram: &[u8]) -> Option<u32> {
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
pub(super) fn stream_info(
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
