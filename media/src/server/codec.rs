//! What the SFU speaks: its codecs, payload types, header extensions and
//! feedback interceptors, the checks on a browser's SDP, and VP8 payload
//! helpers (keyframes and their picture size).

use super::*;

/// Payload types the server uses towards subscribers (it writes the offers
/// on those connections, so these are the negotiated ones).
pub const OPUS_PT: u8 = 111;
pub const VP8_PT: u8 = 96;

/// Which simulcast layer (0, the smallest, up) a stream is: by its RID —
/// `q`, `h`, `f` (quarter, half, full size) as the pages name them, else
/// its place among the track's encodings. A track sent as one stream has
/// only layer 0.
pub(super) fn simulcast_layer(rid: Option<&str>, codings: &[RTCRtpEncodingParameters]) -> u8 {
    match rid {
        None | Some("") => 0,
        Some("q") => 0,
        Some("h") => 1,
        Some("f") => 2,
        Some(rid) => codings.iter().position(|c| c.rtp_coding_parameters.rid == rid).unwrap_or(0) as u8,
    }
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
pub(super) fn vp8_frame_start(payload: &[u8]) -> Option<usize> {
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
pub(super) fn check_sdp(sdp: &str) -> Result<(), MediaError> {
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
pub(super) fn sending_tracks(sdp: &str) -> std::collections::HashSet<String> {
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
