use super::*;

#[test]
fn vp8_keyframes_are_recognised_with_and_without_extensions() {
    // S bit, partition 0, then a frame header with P clear: keyframe.
    assert!(vp8_keyframe(&[0x10, 0x00]));
    assert!(!vp8_keyframe(&[0x10, 0x01]), "P set: interframe");
    assert!(!vp8_keyframe(&[0x00, 0x00]), "not the first packet of a frame");
    // X, I with a 15-bit picture id (M set), then the frame header.
    assert!(vp8_keyframe(&[0x90, 0x80, 0x81, 0x23, 0x00]));
    assert!(!vp8_keyframe(&[0x90, 0x80, 0x81, 0x23, 0x01]));
    // X, I (7-bit id), L and T present.
    assert!(vp8_keyframe(&[0x90, 0xe0, 0x05, 0x01, 0x20, 0x00]));
    assert!(!vp8_keyframe(&[0x90, 0xe0]), "truncated");
    assert!(!vp8_keyframe(&[]));
}

#[test]
fn a_vp8_keyframe_states_its_picture_size() {
    // Descriptor with a 15-bit picture id, frame tag, start code, 640 × 480.
    let key = [0x90, 0x80, 0x81, 0x23, 0x50, 0x42, 0x00, 0x9d, 0x01, 0x2a, 0x80, 0x02, 0xe0, 0x01];
    assert_eq!(vp8_keyframe_size(&key), Some((640, 480)));
    // The top two bits of each are the scaling mode, not the size.
    let scaled = [0x10, 0x50, 0x42, 0x00, 0x9d, 0x01, 0x2a, 0x40, 0x41, 0xf0, 0x40];
    assert_eq!(vp8_keyframe_size(&scaled), Some((320, 240)));
    let mut delta = key;
    delta[4] |= 0x01;
    assert_eq!(vp8_keyframe_size(&delta), None, "an interframe states no size");
    let mut garbled = key;
    garbled[8] = 0;
    assert_eq!(vp8_keyframe_size(&garbled), None, "no start code");
    assert_eq!(vp8_keyframe_size(&key[..10]), None, "truncated");
}

#[test]
fn the_tracks_an_offer_still_sends_are_read_from_its_sections() {
    let sdp = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\n\
        m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=sendrecv\r\na=msid:s mic\r\n\
        m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=sendonly\r\na=msid:s cam\r\n\
        m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=recvonly\r\n\
        m=video 0 UDP/TLS/RTP/SAVPF 96\r\na=sendonly\r\na=msid:t old\r\n\
        m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=inactive\r\na=msid:t screen\r\n";
    let mut sending: Vec<String> = sending_tracks(sdp).into_iter().collect();
    sending.sort();
    assert_eq!(sending, ["cam", "mic"]);
}

#[tokio::test]
async fn a_join_the_sfu_cannot_serve_is_refused_and_leaves_nothing_behind() {
    let (signals, _) = mpsc::unbounded_channel();
    // 0.0.0.0 cannot be told to a browser.
    let config = MediaConfig { ip: IpAddr::V4(Ipv4Addr::UNSPECIFIED), ..Default::default() };
    let (server, _reports) = MediaServer::new(config);
    for _ in 0..2 {
        // Twice: the first left no participant behind (else "already in").
        let refused = server.join("room", "alice", ParticipantRole::Customer, signals.clone()).await;
        assert!(matches!(&refused, Err(MediaError::WebRtc(e)) if e.contains("cannot be announced")), "{refused:?}");
    }
    // Every port of the range taken.
    let taken = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let (server, _reports) = MediaServer::new(MediaConfig { ports: (port, port), ..Default::default() });
    for _ in 0..2 {
        let refused = server.join("room", "alice", ParticipantRole::Customer, signals.clone()).await;
        assert!(matches!(refused, Err(MediaError::NoPort(p, q)) if p == port && q == port), "{refused:?}");
    }
    let refused = server.publish("room", "alice", "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n", Vec::new()).await;
    assert!(matches!(refused, Err(MediaError::NotJoined)), "{refused:?}");
}

#[test]
fn a_lost_packet_is_asked_for_a_bounded_number_of_times() {
    use rtc::interceptor::{AttributedPacket, Interceptor, Packet, StreamInfo, TaggedPacket};
    use rtc::rtcp::transport_feedbacks::transport_layer_nack::TransportLayerNack;
    use rtc::sansio::Protocol;
    let mut chain = feedback_interceptors().build();
    let ssrc = 0x5eed;
    chain.bind_remote_stream(&StreamInfo {
        ssrc,
        clock_rate: 90_000,
        mime_type: "video/VP8".into(),
        payload_type: VP8_PT,
        rtcp_feedback: vec![rtc::interceptor::RTCPFeedback { typ: "nack".into(), parameter: String::new() }],
        ..Default::default()
    });
    let start = Instant::now();
    // Sequence number 3 never comes.
    for sequence_number in [0u16, 1, 2, 4, 5] {
        let packet = rtc::rtp::Packet {
            header: rtc::rtp::header::Header { ssrc, sequence_number, payload_type: VP8_PT, ..Default::default() },
            payload: vec![0u8; 100].into(),
        };
        let message = AttributedPacket::new(Packet::Rtp(packet));
        chain.handle_read(TaggedPacket { now: start, transport: Default::default(), message }).unwrap();
    }
    while chain.poll_read().is_some() {}
    // Five seconds of the chain's timers: unbounded, fifty requests.
    let mut asked = 0;
    for tick in 1..=500u32 {
        chain.handle_timeout(start + Duration::from_millis(10) * tick).unwrap();
        while let Some(out) = chain.poll_write() {
            let Packet::Rtcp(packets) = &out.message.packet else { continue };
            for nack in packets.iter().filter_map(|p| p.as_any().downcast_ref::<TransportLayerNack>()) {
                assert_eq!(nack.media_ssrc, ssrc);
                asked += nack.nacks.iter().filter(|pair| pair.packet_list().contains(&3)).count();
            }
        }
    }
    assert_eq!(asked, usize::from(NACKS_PER_LOST_PACKET));
}

#[test]
fn only_rtp_is_taken_for_media() {
    let mut rtp = vec![0x80, 96, 0, 1, 0, 0, 0, 0, 0x12, 0x34, 0x56, 0x78];
    assert_eq!(rtp_ssrc(&rtp), Some(0x1234_5678));
    rtp[1] = 96 | 0x80; // the marker bit
    assert_eq!(rtp_ssrc(&rtp), Some(0x1234_5678));
    let sender_report = [0x80, 200, 0, 6, 0x12, 0x34, 0x56, 0x78, 0, 0, 0, 0];
    assert_eq!(rtp_ssrc(&sender_report), None, "RTCP");
    assert_eq!(rtp_ssrc(&[0, 1, 0, 0, 0x21, 0x12, 0xa4, 0x42, 0, 0, 0, 0]), None, "STUN");
    assert_eq!(rtp_ssrc(&[22, 254, 253, 0, 0, 0, 0, 0, 0, 0, 0, 0]), None, "DTLS");
    assert_eq!(rtp_ssrc(&rtp[..11]), None, "too short");
}

#[test]
fn what_is_not_an_sdp_is_refused() {
    assert!(matches!(check_sdp("hello"), Err(MediaError::InvalidSdp(_))));
    assert!(matches!(check_sdp("v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\n"), Err(MediaError::InvalidSdp(_))));
    assert!(check_sdp("v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n").is_ok());
}
