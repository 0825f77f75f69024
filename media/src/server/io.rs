//! The media thread's socket: batched reads with the kernel's receive
//! timestamps, each datagram handed to its connection (by source address,
//! or by the ICE username of a STUN request from a new address), and what
//! the connections have to send.

use super::*;

impl MediaThread {
    /// Reads what the socket has: up to [`READ_BATCH`] datagrams, a batch
    /// per system call (`recvmmsg`), each with its arrival time.
    pub(super) fn read(&mut self, buffers: &mut Vec<Vec<u8>>) {
        let Some(socket) = &self.socket else { return };
        if buffers.is_empty() {
            // Room for what the kernel may hand over as one (GRO: a run
            // of same-sized datagrams from one sender).
            let size = (socket.state.gro_segments() * 1500).max(2048);
            buffers.resize_with(quinn_udp::BATCH_SIZE, || vec![0; size]);
        }
        let mut meta = [quinn_udp::RecvMeta::default(); quinn_udp::BATCH_SIZE];
        let mut slices: Vec<IoSliceMut<'_>> = buffers.iter_mut().map(|b| IoSliceMut::new(b)).collect();
        let mut taken = 0;
        while taken < READ_BATCH {
            let Some(socket) = &self.socket else { return };
            let read = socket.io.try_io(tokio::io::Interest::READABLE, || {
                socket.state.recv((&socket.io).into(), &mut slices, &mut meta)
            });
            let count = match read {
                Ok(count) => count,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                // (An ICMP error from a peer that went away, on Linux.)
                Err(e) => {
                    tracing::debug!(error = %e, "UDP receive");
                    taken += 1;
                    continue;
                }
            };
            for (slice, meta) in slices.iter().zip(&meta[..count]) {
                self.arrived = meta.timestamp;
                for datagram in slice[..meta.len].chunks(meta.stride.max(1)) {
                    self.datagram(meta.addr, datagram);
                    taken += 1;
                }
            }
            self.arrived = None;
        }
    }

    pub(super) fn datagram(&mut self, source: SocketAddr, datagram: &[u8]) {
        // A STUN request names the connection it is for; anything else
        // comes from an address a STUN request came from first.
        let index = match stun_username(datagram) {
            Some(username) => {
                let ours = username.split(|&b| b == b':').next().unwrap_or_default();
                let Some(&index) = std::str::from_utf8(ours).ok().and_then(|u| self.by_ufrag.get(u)) else { return };
                self.by_address.insert(source, index);
                index
            }
            None => match self.by_address.get(&source) {
                Some(&index) => index,
                None => return,
            },
        };
        if self.read_media(index, datagram) {
            return;
        }
        let Some(connection) = self.connections[index].as_mut() else { return };
        read_datagram(&mut connection.pc, Instant::now(), self.announced, source, datagram);
        self.drain(index);
    }

    /// Binds the socket if it is not yet: the first free port of the range.
    pub(super) fn bind(&mut self) -> Result<(), MediaError> {
        if self.socket.is_some() {
            return Ok(());
        }
        let config = &self.shared.config;
        let announce = config.public_ip.unwrap_or(config.ip);
        if announce.is_unspecified() {
            return Err(MediaError::WebRtc(format!(
                "the media address {announce} cannot be announced to browsers: set the public address too"
            )));
        }
        let (first, last) = config.ports;
        for port in first..=last {
            let Ok(socket) = std::net::UdpSocket::bind(SocketAddr::new(config.ip, port)) else { continue };
            if let Ok(size) = widen_receive_buffer(&socket) {
                let _ = socket2::SockRef::from(&socket).set_send_buffer_size(size);
            }
            socket.set_nonblocking(true).map_err(webrtc_error)?;
            // (Also turns on the kernel's receive timestamps.)
            let state = quinn_udp::UdpSocketState::new((&socket).into()).map_err(webrtc_error)?;
            let io = tokio::net::UdpSocket::from_std(socket).map_err(webrtc_error)?;
            self.socket = Some(Socket { io, state });
            self.announced = SocketAddr::new(announce, port);
            tracing::info!(port, announced = %self.announced, "the SFU listens");
            return Ok(());
        }
        Err(MediaError::NoPort(first, last))
    }

    /// Sends what connection `index` has to send and acts on what it
    /// received: tracks opening, media, subscribers' feedback, failure.
    pub(super) fn drain(&mut self, index: usize) {
        let mut opened = Vec::new();
        let mut received = Vec::new();
        let mut failed = false;
        {
            let Some(connection) = self.connections[index].as_mut() else { return };
            loop {
                let mut busy = send_pending(self.socket.as_ref(), connection);
                while let Some(event) = connection.pc.poll_event() {
                    match event {
                        RTCPeerConnectionEvent::OnTrack(RTCTrackEvent::OnOpen(init)) => opened.push(init),
                        RTCPeerConnectionEvent::OnConnectionStateChangeEvent(RTCPeerConnectionState::Failed) => {
                            failed = true
                        }
                        _ => {}
                    }
                    busy = true;
                }
                while let Some(TaggedRTCMessage { message, .. }) = connection.pc.poll_read() {
                    received.push(message);
                    busy = true;
                }
                if !busy {
                    break;
                }
            }
            let chain = connection.incoming.as_mut().and_then(|i| i.chain.poll_timeout());
            let timeout = connection.pc.poll_timeout().into_iter().chain(chain).min();
            connection.timeout = timeout.unwrap_or_else(|| Instant::now() + IDLE_CHECK);
            self.earliest = self.earliest.min(connection.timeout);
        }
        for init in opened {
            self.opened(index, init);
        }
        for message in received {
            match message {
                RTCMessage::RtpPacket(track, packet) => self.inbound(index, &track, packet),
                RTCMessage::RtcpPacket(track, packets) => self.feedback(index, &track, &packets),
                _ => {}
            }
        }
        if failed {
            if let Some(key) = self.connections[index].as_ref().map(|c| c.key.clone()) {
                tracing::info!(room = key.0, participant = key.1, "a participant's connection failed");
                self.remove(key, "connection failed");
            }
        }
    }

    pub(super) fn timeouts(&mut self, now: Instant) {
        self.earliest = now + IDLE_CHECK;
        for index in 0..self.connections.len() {
            let Some(connection) = self.connections[index].as_mut() else { continue };
            if connection.timeout <= now {
                let _ = connection.pc.handle_timeout(now);
                if let Some(incoming) = connection.incoming.as_mut() {
                    let _ = incoming.chain.handle_timeout(now);
                }
                self.send_feedback(index);
                self.drain(index);
            } else {
                self.earliest = self.earliest.min(connection.timeout);
            }
        }
    }
}

impl Socket {
    /// A full socket buffer drops the datagram, as a congested link would.
    pub(super) fn send(&self, datagram: &[u8], to: SocketAddr) {
        let _ = self.io.try_send_to(datagram, to);
    }
}

/// Sends what `pc` has to send (dropped before the socket is bound);
/// whether it had anything.
pub(super) fn send_pending(socket: Option<&Socket>, connection: &mut Connection) -> bool {
    let mut any = false;
    while let Some(out) = connection.pc.poll_write() {
        // DTLS (first byte 20–63) and SRTP/SRTCP (128–191, RFC 7983) go to
        // the selected ICE pair; STUN answers whoever asked.
        if matches!(out.message.first(), Some(20..=63 | 128..=191)) {
            connection.remote = Some(out.transport.peer_addr);
        }
        if let Some(socket) = socket {
            socket.send(&out.message, out.transport.peer_addr);
        }
        any = true;
    }
    any
}

/// Resolves once `socket` is readable; never without one.
pub(super) async fn readable(socket: Option<&Socket>) -> std::io::Result<()> {
    match socket {
        Some(socket) => socket.io.readable().await,
        None => std::future::pending().await,
    }
}

/// Gives a socket shared by many connections, whose packets queue in it
/// while its thread is busy, as much receive buffer as the kernel allows
/// without privileges (`net.core.rmem_max`, else 4 MiB); returns the size
/// asked for.
pub fn widen_receive_buffer(socket: &std::net::UdpSocket) -> std::io::Result<usize> {
    let max = std::fs::read_to_string("/proc/sys/net/core/rmem_max").ok().and_then(|m| m.trim().parse().ok());
    let size = max.unwrap_or(4 << 20);
    socket2::SockRef::from(socket).set_recv_buffer_size(size)?;
    Ok(size)
}

/// Hands `pc` a UDP datagram that came from `source` to `local`.
pub fn read_datagram(pc: &mut RTCPeerConnection, now: Instant, local: SocketAddr, source: SocketAddr, datagram: &[u8]) {
    let _ = pc.handle_read(TaggedBytesMut {
        now,
        transport: TransportContext {
            local_addr: local,
            peer_addr: source,
            ecn: None,
            transport_protocol: TransportProtocol::UDP,
        },
        message: BytesMut::from(datagram),
    });
}

/// Gives `pc` its one local candidate: a UDP host candidate at `addr`
/// (the server gathers nothing else).
pub fn add_host_candidate(pc: &mut RTCPeerConnection, addr: SocketAddr) -> Result<(), MediaError> {
    let host = CandidateHostConfig {
        base_config: CandidateConfig {
            network: "udp".to_owned(),
            address: addr.ip().to_string(),
            port: addr.port(),
            component: 1,
            ..Default::default()
        },
        ..Default::default()
    }
    .new_candidate_host()
    .map_err(webrtc_error)?;
    pc.add_local_candidate(RTCIceCandidate::from(&host).to_json().map_err(webrtc_error)?).map_err(webrtc_error)
}

/// The USERNAME of a STUN message ("receiver's ufrag:sender's ufrag"):
/// which connection of a shared socket a request from a new address is for.
pub fn stun_username(datagram: &[u8]) -> Option<&[u8]> {
    // RFC 5389: 20-byte header (type, length, magic cookie, id), then TLVs.
    if datagram.len() < 20 || datagram[0] & 0xc0 != 0 || datagram[4..8] != [0x21, 0x12, 0xa4, 0x42] {
        return None;
    }
    let mut at = 20;
    while at + 4 <= datagram.len() {
        let kind = u16::from_be_bytes([datagram[at], datagram[at + 1]]);
        let len = usize::from(u16::from_be_bytes([datagram[at + 2], datagram[at + 3]]));
        let value = datagram.get(at + 4..at + 4 + len)?;
        if kind == 0x0006 {
            return Some(value);
        }
        at += 4 + len.div_ceil(4) * 4;
    }
    None
}
