//! Which remote ICE candidates the SFU accepts (issue 27, L3).
//!
//! A candidate names an address the SFU will send STUN connectivity checks
//! to. Taken as given, a customer could make the server send UDP to its own
//! loopback services, the cloud's metadata address (169.254.169.254) or
//! hosts on the server's private network. Candidates are therefore filtered
//! wherever they arrive — trickled one by one, or as `a=candidate` lines of
//! an offer or answer — against a [`CandidatePolicy`]: never unspecified,
//! multicast, broadcast or link-local addresses; loopback and private
//! ranges only where the deployment allows them. Host names (browsers'
//! mDNS `….local` names) are left to the ICE agent, which does not resolve
//! them.
//!
//! Dropping a candidate costs no connectivity: a browser's checks reach the
//! SFU from its real address, which the SFU then answers (a peer-reflexive
//! candidate).

use std::net::IpAddr;

/// Which remote candidate addresses the SFU sends to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CandidatePolicy {
    /// 127.0.0.0/8 and ::1: only for peers on the server's own machine
    /// (self-tests and benchmarks).
    pub loopback: bool,
    /// 10/8, 172.16/12, 192.168/16, 100.64/10 (carrier-grade NAT), fc00::/7:
    /// for a deployment whose customers reach it on a private network.
    pub private: bool,
}

impl CandidatePolicy {
    /// Every address a peer on this machine or a private network has.
    pub const LOCAL: CandidatePolicy = CandidatePolicy { loopback: true, private: true };

    /// Whether the SFU may send to `ip`.
    pub fn admits(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        if ip.is_loopback() {
            return self.loopback;
        }
        if ip.is_unspecified() || ip.is_multicast() {
            return false;
        }
        match ip {
            IpAddr::V4(v4) => {
                let [a, b, ..] = v4.octets();
                if v4.is_link_local() || v4.is_broadcast() {
                    false
                } else if v4.is_private() || (a == 100 && (64..128).contains(&b)) {
                    self.private
                } else {
                    true
                }
            }
            IpAddr::V6(v6) => {
                let first = v6.segments()[0];
                if first & 0xffc0 == 0xfe80 {
                    false // link-local
                } else if first & 0xfe00 == 0xfc00 {
                    self.private // unique local
                } else {
                    true
                }
            }
        }
    }

    /// Whether a candidate attribute (`candidate:… ADDRESS PORT typ …`, with
    /// or without `a=`) may be used: `false` for an address the policy
    /// refuses; `true` for a host name or a line that is not a candidate's.
    pub fn admits_candidate(&self, candidate: &str) -> bool {
        match address(candidate) {
            Some(ip) => self.admits(ip),
            None => true,
        }
    }

    /// `sdp` without the `a=candidate` lines the policy refuses.
    pub fn filter_sdp(&self, sdp: &str) -> String {
        let mut out = String::with_capacity(sdp.len());
        for line in sdp.split_inclusive('\n') {
            if line.starts_with("a=candidate:") && !self.admits_candidate(line.trim_end()) {
                continue;
            }
            out.push_str(line);
        }
        out
    }
}

/// The connection address of a candidate attribute: its fifth field
/// (`foundation component transport priority ADDRESS port typ …`).
fn address(candidate: &str) -> Option<IpAddr> {
    let text = candidate.strip_prefix("a=").unwrap_or(candidate);
    let text = text.strip_prefix("candidate:")?;
    text.split_ascii_whitespace().nth(4)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn candidate(address: &str) -> String {
        format!("candidate:1 1 udp 2122260223 {address} 50000 typ host generation 0")
    }

    #[test]
    fn loopback_link_local_and_private_addresses_are_refused_unless_allowed() {
        let public = CandidatePolicy::default();
        for refused in [
            "127.0.0.1",
            "::1",
            "169.254.169.254",
            "fe80::1",
            "0.0.0.0",
            "224.0.0.1",
            "10.0.0.1",
            "172.16.5.4",
            "192.168.1.1",
            "100.64.0.1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "255.255.255.255",
        ] {
            assert!(!public.admits_candidate(&candidate(refused)), "{refused}");
        }
        for admitted in ["203.0.113.7", "2001:db8::1", "8.8.8.8", "172.32.0.1", "100.128.0.1"] {
            assert!(public.admits_candidate(&candidate(admitted)), "{admitted}");
        }
        let lan = CandidatePolicy { loopback: false, private: true };
        assert!(lan.admits_candidate(&candidate("10.0.0.1")) && !lan.admits_candidate(&candidate("127.0.0.1")));
        assert!(!lan.admits_candidate(&candidate("169.254.169.254")), "link-local never");
        assert!(CandidatePolicy::LOCAL.admits_candidate(&candidate("127.0.0.1")));
        // Host names and what is not a candidate pass to the ICE agent.
        assert!(public.admits_candidate(&candidate("3f2a-11.local")));
        assert!(public.admits_candidate("garbage"));
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_candidates_and_sdp_never_panic(text in "\\PC{0,200}", address in "[0-9a-f:.]{0,40}") {
            let policy = CandidatePolicy::default();
            let _ = policy.admits_candidate(&text);
            let _ = policy.admits_candidate(&candidate(&address));
            let filtered = policy.filter_sdp(&text);
            proptest::prop_assert!(filtered.len() <= text.len());
        }
    }

    #[test]
    fn sdp_loses_only_the_refused_candidate_lines() {
        let sdp = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n\
                   a=candidate:1 1 udp 1 127.0.0.1 5000 typ host\r\n\
                   a=candidate:2 1 udp 1 203.0.113.9 5000 typ host\r\n\
                   a=candidate:3 1 udp 1 169.254.169.254 80 typ host\r\n\
                   a=end-of-candidates\r\n";
        let filtered = CandidatePolicy::default().filter_sdp(sdp);
        assert_eq!(
            filtered,
            "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=candidate:2 1 udp 1 203.0.113.9 5000 typ host\r\n\
             a=end-of-candidates\r\n"
        );
        assert_eq!(CandidatePolicy::LOCAL.filter_sdp(sdp).lines().count(), sdp.lines().count() - 1);
    }
}
