//! [`Connection`] on `str0m`, in its RTP mode (packets in and out as they
//! are, no depacketizing).

use std::net::{SocketAddr, UdpSocket};
use std::time::Instant;

use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::format::Codec;
use str0m::media::{Direction, MediaKind, Mid, Pt};
use str0m::net::{Protocol, Receive};
use str0m::rtp::{ExtensionValues, SeqNo};
use str0m::{Candidate, Event, Input, Output, Rtc};
use witness_media::server::MediaError;

use super::{far, Connection, Happening, Kind};

pub struct Str0m {
    rtc: Rtc,
    /// Its first offer/answer is done: str0m's DTLS panics when polled before.
    negotiated: bool,
    pending: Option<SdpPendingOffer>,
}

impl Str0m {
    /// An `Rtc` in RTP mode with a host candidate on `local`.
    fn rtc(local: SocketAddr) -> Rtc {
        let mut rtc = Rtc::builder().set_rtp_mode(true).build();
        rtc.add_local_candidate(Candidate::host(local, "udp").expect("a host candidate"));
        rtc
    }

    fn payload_type(&self, kind: Kind) -> Option<Pt> {
        let codec = if kind == Kind::Audio { Codec::Opus } else { Codec::Vp8 };
        self.rtc.codec_config().params().iter().find(|p| p.spec().codec == codec).map(|p| p.pt())
    }

    fn input(&mut self, input: Input) {
        if self.negotiated {
            let _ = self.rtc.handle_input(input);
        }
    }
}

/// What of a received packet is sent on (`str0m`'s `RtpPacket` is not `Clone`).
#[derive(Clone)]
pub struct Packet {
    seq_no: SeqNo,
    timestamp: u32,
    arrived: Instant,
    marker: bool,
    payload: Vec<u8>,
}

fn kind(kind: MediaKind) -> Kind {
    if kind == MediaKind::Audio {
        Kind::Audio
    } else {
        Kind::Video
    }
}

impl Connection for Str0m {
    type Remote = Mid;
    /// The mid, and the payload type it was offered with.
    type Local = (Mid, Pt);
    type Packet = Packet;

    fn publishing(local: SocketAddr, offer: &str) -> Result<(Self, String), MediaError> {
        let offer = SdpOffer::from_sdp_string(offer).map_err(|e| MediaError::InvalidSdp(e.to_string()))?;
        let mut rtc = Self::rtc(local);
        let answer = rtc.sdp_api().accept_offer(offer).map_err(|e| MediaError::WebRtc(e.to_string()))?;
        let mut connection = Str0m { rtc, negotiated: true, pending: None };
        connection.input(Input::Timeout(Instant::now()));
        Ok((connection, answer.to_sdp_string()))
    }

    fn receiving(local: SocketAddr) -> Self {
        Str0m { rtc: Self::rtc(local), negotiated: false, pending: None }
    }

    fn accepts(&self, local: SocketAddr, source: SocketAddr, datagram: &[u8]) -> bool {
        Receive::new(Protocol::Udp, source, local, datagram)
            .is_ok_and(|r| self.rtc.accepts(&Input::Receive(Instant::now(), r)))
    }

    fn receive(&mut self, now: Instant, local: SocketAddr, source: SocketAddr, datagram: &[u8]) {
        if let Ok(receive) = Receive::new(Protocol::Udp, source, local, datagram) {
            self.input(Input::Receive(now, receive));
        }
    }

    fn timeout(&mut self, now: Instant) {
        self.input(Input::Timeout(now));
    }

    fn drain(&mut self, socket: &UdpSocket, happened: &mut Vec<Happening<Self>>) -> Instant {
        if !self.negotiated {
            return far();
        }
        loop {
            match self.rtc.poll_output() {
                Ok(Output::Timeout(t)) => return t,
                Ok(Output::Transmit(t)) => {
                    let _ = socket.send_to(&t.contents, t.destination);
                }
                Ok(Output::Event(Event::RtpPacket(packet))) => {
                    let ssrc = packet.header.ssrc;
                    if let Some(mid) = self.rtc.direct_api().stream_rx(&ssrc).map(|s| s.mid()) {
                        let packet = Packet {
                            seq_no: packet.seq_no,
                            timestamp: packet.header.timestamp,
                            arrived: packet.timestamp,
                            marker: packet.header.marker,
                            payload: packet.payload,
                        };
                        happened.push(Happening::Rtp(mid, packet));
                    }
                }
                Ok(Output::Event(Event::MediaAdded(m))) => {
                    happened.push(Happening::Published(m.mid, kind(m.kind)));
                }
                Ok(Output::Event(_)) => {}
                Err(_) => return far(),
            }
        }
    }

    fn offer(&mut self, tracks: &[Kind]) -> Option<(String, Vec<Self::Local>)> {
        let (audio, video) = (self.payload_type(Kind::Audio)?, self.payload_type(Kind::Video)?);
        let mut api = self.rtc.sdp_api();
        let locals = tracks
            .iter()
            .map(|&k| {
                let media = if k == Kind::Audio { MediaKind::Audio } else { MediaKind::Video };
                let mid = api.add_media(media, Direction::SendOnly, None, None, None);
                (mid, if k == Kind::Audio { audio } else { video })
            })
            .collect();
        let (offer, pending) = api.apply()?;
        self.pending = Some(pending);
        Some((offer.to_sdp_string(), locals))
    }

    fn answer(&mut self, sdp: &str) -> Result<(), MediaError> {
        let answer = SdpAnswer::from_sdp_string(sdp).map_err(|e| MediaError::InvalidSdp(e.to_string()))?;
        let pending = self.pending.take().ok_or_else(|| MediaError::WebRtc("no offer out".into()))?;
        self.rtc.sdp_api().accept_answer(pending, answer).map_err(|e| MediaError::WebRtc(e.to_string()))?;
        self.negotiated = true;
        self.input(Input::Timeout(Instant::now()));
        Ok(())
    }

    fn send(&mut self, (mid, pt): Self::Local, kind: Kind, packet: Packet) -> bool {
        let mut direct = self.rtc.direct_api();
        let Some(stream) = direct.stream_tx_by_mid(mid, None) else { return false };
        stream
            .write_rtp(
                pt,
                packet.seq_no,
                packet.timestamp,
                packet.arrived,
                packet.marker,
                ExtensionValues::default(),
                kind == Kind::Video,
                packet.payload,
            )
            .is_ok()
    }
}
