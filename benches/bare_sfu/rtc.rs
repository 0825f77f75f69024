//! [`Connection`] on the sans-I/O `rtc` crate: the protocol stack and
//! interceptors of Witness's SFU (the same media engine and default
//! interceptors), driven directly.

use std::net::{SocketAddr, UdpSocket};
use std::time::Instant;

use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::event::{RTCPeerConnectionEvent, RTCTrackEvent};
use rtc::peer_connection::message::{RTCMessage, TaggedRTCMessage};
use rtc::peer_connection::sdp::RTCSessionDescription;
use rtc::peer_connection::RTCPeerConnection;
use rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
use rtc::rtp_transceiver::RTCRtpSenderId;
use rtc::sansio::Protocol;
use witness_media::server::{encoding, read_datagram, stun_username, MediaError, OPUS_PT, VP8_PT};

use super::{far, Connection, Happening, Kind};

pub struct Rtc {
    pc: RTCPeerConnection,
    /// Its ICE username fragment: a STUN request from an unknown address
    /// names it.
    ufrag: String,
    next_ssrc: u32,
}

fn webrtc_error(e: impl std::fmt::Display) -> MediaError {
    MediaError::WebRtc(e.to_string())
}

impl Rtc {
    fn new(local: SocketAddr) -> Result<Rtc, MediaError> {
        Ok(Rtc { pc: crate::rtc_peers::connection(local)?, ufrag: String::new(), next_ssrc: 0x5157_0000 })
    }

    /// Sets `description` as the local one; returns its SDP.
    fn set_local(&mut self, description: RTCSessionDescription) -> Result<String, MediaError> {
        self.pc.set_local_description(Instant::now(), description).map_err(webrtc_error)?;
        let sdp = self.pc.local_description().map(|d| d.sdp).ok_or_else(|| webrtc_error("no local description"))?;
        if let Some(ufrag) = sdp.lines().find_map(|l| l.strip_prefix("a=ice-ufrag:")) {
            self.ufrag = ufrag.trim().to_owned();
        }
        Ok(sdp)
    }
}

impl Connection for Rtc {
    type Remote = String;
    /// The sender, and the SSRC and payload type it sends with.
    type Local = (RTCRtpSenderId, u32, u8);
    type Packet = rtc::rtp::Packet;

    fn publishing(local: SocketAddr, offer: &str) -> Result<(Self, String), MediaError> {
        let mut connection = Rtc::new(local)?;
        let offer =
            RTCSessionDescription::offer(offer.to_owned()).map_err(|e| MediaError::InvalidSdp(e.to_string()))?;
        connection.pc.set_remote_description(Instant::now(), offer).map_err(webrtc_error)?;
        let answer = connection.pc.create_answer(None).map_err(webrtc_error)?;
        let sdp = connection.set_local(answer)?;
        Ok((connection, sdp))
    }

    fn receiving(local: SocketAddr) -> Self {
        Rtc::new(local).expect("a peer connection")
    }

    fn accepts(&self, _local: SocketAddr, _source: SocketAddr, datagram: &[u8]) -> bool {
        let Some(username) = stun_username(datagram) else { return false };
        let ours = username.split(|&b| b == b':').next().unwrap_or_default();
        !self.ufrag.is_empty() && ours == self.ufrag.as_bytes()
    }

    fn receive(&mut self, now: Instant, local: SocketAddr, source: SocketAddr, datagram: &[u8]) {
        read_datagram(&mut self.pc, now, local, source, datagram);
    }

    fn timeout(&mut self, now: Instant) {
        let _ = self.pc.handle_timeout(now);
    }

    fn drain(&mut self, socket: &UdpSocket, happened: &mut Vec<Happening<Self>>) -> Instant {
        loop {
            let mut busy = false;
            while let Some(out) = self.pc.poll_write() {
                let _ = socket.send_to(&out.message, out.transport.peer_addr);
                busy = true;
            }
            while let Some(event) = self.pc.poll_event() {
                if let RTCPeerConnectionEvent::OnTrack(RTCTrackEvent::OnOpen(init)) = event {
                    let kind = self.pc.rtp_receiver(init.receiver_id).map(|r| r.track().kind());
                    let kind = if kind == Some(RtpCodecKind::Audio) { Kind::Audio } else { Kind::Video };
                    happened.push(Happening::Published(init.track_id, kind));
                }
                busy = true;
            }
            while let Some(TaggedRTCMessage { message, .. }) = self.pc.poll_read() {
                if let RTCMessage::RtpPacket(track, packet) = message {
                    happened.push(Happening::Rtp(track, packet));
                }
                busy = true;
            }
            if !busy {
                return self.pc.poll_timeout().unwrap_or_else(far);
            }
        }
    }

    fn offer(&mut self, tracks: &[Kind]) -> Option<(String, Vec<Self::Local>)> {
        let mut locals = Vec::new();
        for &kind in tracks {
            self.next_ssrc += 1;
            let ssrc = self.next_ssrc;
            let (codec_kind, pt) = match kind {
                Kind::Audio => (RtpCodecKind::Audio, OPUS_PT),
                Kind::Video => (RtpCodecKind::Video, VP8_PT),
            };
            let track = MediaStreamTrack::new(
                format!("s{ssrc}"),
                format!("t{ssrc}"),
                format!("{kind:?}"),
                codec_kind,
                vec![encoding(codec_kind, "", ssrc)],
            );
            let sender = self.pc.add_track(track).ok()?;
            locals.push((sender, ssrc, pt));
        }
        let offer = self.pc.create_offer(None).ok()?;
        let sdp = self.set_local(offer).ok()?;
        Some((sdp, locals))
    }

    fn answer(&mut self, sdp: &str) -> Result<(), MediaError> {
        let answer =
            RTCSessionDescription::answer(sdp.to_owned()).map_err(|e| MediaError::InvalidSdp(e.to_string()))?;
        self.pc.set_remote_description(Instant::now(), answer).map_err(webrtc_error)
    }

    fn send(&mut self, (sender, ssrc, pt): Self::Local, _kind: Kind, mut packet: rtc::rtp::Packet) -> bool {
        packet.header.ssrc = ssrc;
        packet.header.payload_type = pt;
        // Extension ids were negotiated on the publisher's connection.
        packet.header.extension = false;
        packet.header.extensions.clear();
        self.pc.rtp_sender(sender).is_some_and(|mut s| s.write_rtp(Instant::now(), packet).is_ok())
    }
}
