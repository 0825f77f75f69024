//! What the SFU has sent on one forwarded stream: the bookkeeping a sender
//! owes its receiver once the packets bypass `rtc`'s interceptors
//! (`server/fastpath.rs` encrypts and sends forwarded media itself).
//!
//! - the last packets as sent (encrypted), to answer the receiver's NACKs
//!   with the very datagram it lost (RFC 4585; a repeat of an SRTP packet
//!   the receiver never got passes its replay check);
//! - the counts and the RTP clock a sender report states (RFC 3550 §6.4.1),
//!   which the receiver needs to line audio up with video.

use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use rtc::rtcp::sender_report::SenderReport;

/// Packets kept for retransmission: a power of two, so a sequence number
/// picks its slot. At 2.5 Mbit/s (about 250 packets/s) two seconds — far
/// longer than a retransmission can still reach a receiver's playout.
const KEPT: usize = 512;

/// Seconds from the NTP epoch (1900) to the Unix epoch (1970).
const NTP_UNIX_OFFSET: u64 = 2_208_988_800;

/// One forwarded stream's sending side.
#[derive(Debug)]
pub struct SentStream {
    clock_rate: u32,
    /// By sequence number modulo [`KEPT`]; empty when NACKs are not
    /// answered on this stream (audio: none negotiated).
    kept: Vec<Option<(u16, Bytes)>>,
    packets: u32,
    octets: u32,
    /// The last packet's RTP timestamp and when it was sent.
    last: Option<(u32, Instant)>,
}

impl SentStream {
    /// A stream on an RTP clock of `clock_rate` Hz; `keep`: hold packets
    /// for retransmission.
    pub fn new(clock_rate: u32, keep: bool) -> SentStream {
        let kept = if keep { vec![None; KEPT] } else { Vec::new() };
        SentStream { clock_rate, kept, packets: 0, octets: 0, last: None }
    }

    /// Notes a packet sent at `now`: its sequence number, RTP timestamp,
    /// payload size and the datagram as it went out.
    pub fn sent(&mut self, now: Instant, sequence: u16, timestamp: u32, payload: usize, datagram: Bytes) {
        self.packets = self.packets.wrapping_add(1);
        self.octets = self.octets.wrapping_add(payload as u32);
        self.last = Some((timestamp, now));
        if !self.kept.is_empty() {
            self.kept[sequence as usize % KEPT] = Some((sequence, datagram));
        }
    }

    /// The datagram sent with `sequence`, if it is still kept.
    pub fn resend(&self, sequence: u16) -> Option<&Bytes> {
        match self.kept.get(sequence as usize % KEPT)? {
            Some((kept, datagram)) if *kept == sequence => Some(datagram),
            _ => None,
        }
    }

    /// The sender report for `ssrc` at `now` (`wall`: the same instant by
    /// the wall clock): the RTP time of that instant, extrapolated from
    /// the last packet, and the counts. None before the first packet.
    pub fn report(&self, ssrc: u32, now: Instant, wall: SystemTime) -> Option<SenderReport> {
        let (timestamp, at) = self.last?;
        let elapsed = now.saturating_duration_since(at);
        let ticks = (elapsed.as_secs_f64() * self.clock_rate as f64) as u32;
        Some(SenderReport {
            ssrc,
            ntp_time: ntp(wall),
            rtp_time: timestamp.wrapping_add(ticks),
            packet_count: self.packets,
            octet_count: self.octets,
            ..Default::default()
        })
    }
}

/// `wall` as a 64-bit NTP timestamp: seconds since 1900 in the high half,
/// the fraction of a second in the low.
pub fn ntp(wall: SystemTime) -> u64 {
    let since = wall.duration_since(SystemTime::UNIX_EPOCH).unwrap_or(Duration::ZERO);
    let seconds = since.as_secs() + NTP_UNIX_OFFSET;
    let fraction = (u64::from(since.subsec_nanos()) << 32) / 1_000_000_000;
    (seconds << 32) | fraction
}

#[cfg(test)]
mod tests {
    use super::*;

    fn datagram(n: u8) -> Bytes {
        Bytes::from(vec![n; 4])
    }

    #[test]
    fn a_sent_packet_is_kept_until_its_slot_is_reused() {
        let now = Instant::now();
        let mut stream = SentStream::new(90_000, true);
        stream.sent(now, 65_535, 0, 100, datagram(1));
        stream.sent(now, 0, 0, 100, datagram(2));
        assert_eq!(stream.resend(65_535), Some(&datagram(1)));
        assert_eq!(stream.resend(0), Some(&datagram(2)));
        assert_eq!(stream.resend(1), None, "never sent");
        // KEPT packets later the slot holds another packet.
        stream.sent(now, 65_535u16.wrapping_add(KEPT as u16), 0, 100, datagram(3));
        assert_eq!(stream.resend(65_535), None, "too old");
        assert_eq!(stream.resend(65_535u16.wrapping_add(KEPT as u16)), Some(&datagram(3)));
    }

    #[test]
    fn a_stream_that_answers_no_nacks_keeps_nothing() {
        let mut stream = SentStream::new(48_000, false);
        stream.sent(Instant::now(), 7, 0, 100, datagram(1));
        assert_eq!(stream.resend(7), None);
    }

    #[test]
    fn a_sender_report_counts_and_extrapolates_the_rtp_clock() {
        let start = Instant::now();
        let wall = SystemTime::UNIX_EPOCH + Duration::from_millis(1_500);
        let mut stream = SentStream::new(90_000, false);
        assert!(stream.report(9, start, wall).is_none(), "nothing sent, nothing to report");
        stream.sent(start, 1, 4_294_967_000, 1_000, datagram(1));
        stream.sent(start, 2, 4_294_967_000, 200, datagram(2));
        let report = stream.report(9, start + Duration::from_millis(500), wall).unwrap();
        assert_eq!(report.ssrc, 9);
        assert_eq!((report.packet_count, report.octet_count), (2, 1_200));
        // Half a second at 90 kHz past the last packet, across the wrap.
        assert_eq!(report.rtp_time, 4_294_967_000u32.wrapping_add(45_000));
        assert_eq!(report.ntp_time >> 32, NTP_UNIX_OFFSET + 1);
        assert_eq!(report.ntp_time & 0xffff_ffff, 1 << 31, "half a second");
    }
}
