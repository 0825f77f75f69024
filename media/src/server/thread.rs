//! A media thread: its loop (commands, the socket, timeouts), the core's
//! inputs and outputs, and the room's signaling — participants joining,
//! publishing, answering, leaving, and the tracks each subscriber gets.

use super::*;

impl MediaThread {
    pub(super) fn new(shared: Arc<Shared>, shard: usize, commands: mpsc::WeakUnboundedSender<Command>) -> MediaThread {
        let now = Instant::now();
        MediaThread {
            shared,
            shard,
            commands,
            socket: None,
            arrived: None,
            announced: SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0),
            connections: Vec::new(),
            by_address: HashMap::new(),
            by_ufrag: HashMap::new(),
            peers: HashMap::new(),
            forwards: HashMap::new(),
            published: HashMap::new(),
            tracks: HashMap::new(),
            earliest: now + IDLE_CHECK,
            core_wake: None,
            next_report: now + REPORT,
            closing: Vec::new(),
        }
    }

    pub(super) fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
        runtime.block_on(async move {
            let mut buffers = Vec::new();
            loop {
                let wake = self.core_wake.map_or(self.earliest, |at| at.min(self.earliest)).min(self.next_report);
                tokio::select! {
                    biased;
                    command = commands.recv() => match command {
                        Some(command) => self.command(command),
                        None => break,
                    },
                    readable = readable(self.socket.as_ref()) => {
                        if readable.is_ok() {
                            self.read(&mut buffers);
                        }
                    }
                    _ = tokio::time::sleep_until(wake.into()) => {}
                }
                let now = Instant::now();
                if now >= self.earliest {
                    self.timeouts(now);
                }
                if self.core_wake.is_some_and(|at| now >= at) {
                    self.input(Input::Timeout);
                }
                if now >= self.next_report {
                    self.next_report = now + REPORT;
                    self.report(now);
                }
                // What no command waits for closes on its own.
                self.closing.clear();
            }
            for index in 0..self.connections.len() {
                self.close_connection(index);
            }
        });
    }

    pub(super) fn command(&mut self, command: Command) {
        match command {
            Command::Join { key, role, signals, reply } => {
                let _ = reply.send(self.join(key, role, signals));
            }
            Command::Publish { key, sdp, screens, reply } => {
                let _ = reply.send(self.publish(&key, &sdp, screens));
            }
            Command::Answer { key, sdp, reply } => {
                let _ = reply.send(self.answer(&key, &sdp));
            }
            Command::Candidate { key, subscriber, candidate, reply } => {
                let _ = reply.send(self.candidate(&key, subscriber, candidate));
            }
            Command::Leave { key, reason, reply } => {
                let left = self.leave(key, reason);
                let _ = reply.send(left.map(|()| std::mem::take(&mut self.closing)));
            }
            Command::CloseRoom { room, reason, reply } => {
                let keys: Vec<Key> = self.peers.keys().filter(|k| k.0 == room).cloned().collect();
                for key in keys {
                    self.remove(key, &reason);
                }
                let _ = reply.send(std::mem::take(&mut self.closing));
            }
            Command::Recording { room, on } => self.input(Input::Recording { room, on }),
            Command::KeyframeWanted { room, track } => self.input(Input::KeyframeWanted { room, track }),
        }
    }

    /// Feeds one input to the core; its outputs, up to the
    /// [`Output::Timeout`] that ends them, which says when it wants
    /// [`Input::Timeout`] next.
    pub(super) fn core_input(
        &mut self,
        input: Input<rtc::rtp::Packet>,
    ) -> Result<Vec<Output<rtc::rtp::Packet>>, SfuError> {
        let mut core = self.shared.cores[self.shard].lock().expect("SFU core poisoned");
        core.handle_input(Instant::now(), input)?;
        let mut out = Vec::new();
        loop {
            match core.poll_output() {
                Output::Timeout(at) => {
                    self.core_wake = at;
                    return Ok(out);
                }
                o => out.push(o),
            }
        }
    }

    /// Feeds one input to the core and carries out what it asks for (an
    /// input it refuses — about a room that closed meanwhile — is dropped).
    pub(super) fn input(&mut self, input: Input<rtc::rtp::Packet>) {
        if let Ok(out) = self.core_input(input) {
            self.act(out);
        }
    }

    /// Carries out the core's outputs.
    pub(super) fn act(&mut self, outputs: Vec<Output<rtc::rtp::Packet>>) {
        for output in outputs {
            match output {
                Output::Transmit { room, to, track, packet } => self.transmit((room, to, track), packet),
                Output::Record { room, track, packet } => self.record(&room, &track, &packet),
                Output::Event(event) => self.on_event(event),
                Output::Timeout(_) => {}
            }
        }
    }

    pub(super) fn on_event(&mut self, event: MediaEvent) {
        match &event {
            MediaEvent::Subscribed { room, subscriber, track, kind, .. } => {
                self.subscribe(room, subscriber, track, *kind);
            }
            MediaEvent::Unsubscribed { room, subscriber, track } => {
                self.forwards.remove(&(room.clone(), subscriber.clone(), track.clone()));
                let key = (room.clone(), subscriber.clone());
                let Some(peer) = self.peers.get_mut(&key) else { return };
                let Some(sender) = peer.senders.remove(track) else { return };
                let index = peer.subscriber;
                if let Some(connection) = self.connections[index].as_mut() {
                    let _ = connection.pc.remove_track(sender);
                }
                self.negotiate(&key);
            }
            MediaEvent::KeyframeRequested { room, track } => self.send_pli(room, track),
            MediaEvent::TrackUnpublished { room, track, .. } => {
                if let Some(published) = self.published.remove(&(room.clone(), track.clone())) {
                    self.tracks.retain(|(index, _), key| *index != published.connection || key.1 != *track);
                }
            }
            MediaEvent::RoomClosed { room } => {
                tracing::info!(
                    forwarded_packets = self.shared.counters.forwarded.get(),
                    keyframe_requests_relayed = self.shared.counters.relayed_keyframe_requests.get(),
                    "a call's room closed (counts since start)"
                );
                let recording = self.shared.recordings.lock().expect("recordings poisoned").remove(room);
                if let Some(recording) = recording {
                    self.closing.push(self.shared.runtime.spawn(recording.finish()));
                }
            }
            _ => {}
        }
        if matches!(
            event,
            MediaEvent::ParticipantJoined { .. }
                | MediaEvent::ParticipantLeft { .. }
                | MediaEvent::TrackPublished { .. }
                | MediaEvent::TrackUnpublished { .. }
                | MediaEvent::RoomClosed { .. }
        ) {
            let _ = self.shared.events.send(Report::Media(event));
        }
    }

    pub(super) fn connect(&mut self, key: &Key, side: Side) -> Result<usize, MediaError> {
        let mut media_engine = MediaEngine::default();
        register_codecs(&mut media_engine)?;
        register_extensions(&mut media_engine)?;
        // Nothing else in the connections' own chains: media goes in and
        // out past them, and the feedback it is owed is `Incoming`'s and
        // `SentStream`'s.
        let tap = SfuTap::default();
        let registry = Registry::new().with(rtc::interceptor::Slot::from(14_000), tap);
        let mut pc = RTCPeerConnectionBuilder::new()
            .with_media_engine(media_engine)
            .with_interceptor_registry(registry)
            .build(Instant::now())
            .map_err(webrtc_error)?;
        add_host_candidate(&mut pc, self.announced)?;
        let incoming = (side == Side::Publisher).then(Incoming::new);
        let connection = Connection {
            pc,
            key: key.clone(),
            side,
            ufrag: String::new(),
            timeout: Instant::now(),
            remote: None,
            incoming,
        };
        let index = match self.connections.iter().position(Option::is_none) {
            Some(free) => {
                self.connections[free] = Some(connection);
                free
            }
            None => {
                self.connections.push(Some(connection));
                self.connections.len() - 1
            }
        };
        Ok(index)
    }

    /// Sets `description` as connection `index`'s local one; returns its SDP.
    pub(super) fn set_local(&mut self, index: usize, description: RTCSessionDescription) -> Result<String, MediaError> {
        let connection = self.connections[index].as_mut().ok_or(MediaError::NotJoined)?;
        connection.pc.set_local_description(Instant::now(), description).map_err(webrtc_error)?;
        let sdp =
            connection.pc.local_description().map(|d| d.sdp).ok_or_else(|| webrtc_error("no local description"))?;
        if let Some(ufrag) = sdp.lines().find_map(|l| l.strip_prefix("a=ice-ufrag:")) {
            let ufrag = ufrag.trim().to_owned();
            if connection.ufrag != ufrag {
                self.by_ufrag.remove(&connection.ufrag);
                self.by_ufrag.insert(ufrag.clone(), index);
                connection.ufrag = ufrag;
            }
        }
        Ok(sdp)
    }

    pub(super) fn close_connection(&mut self, index: usize) {
        let Some(mut connection) = self.connections[index].take() else { return };
        let _ = connection.pc.close();
        while let Some(out) = connection.pc.poll_write() {
            if let Some(socket) = &self.socket {
                socket.send(&out.message, out.transport.peer_addr);
            }
        }
        self.by_ufrag.remove(&connection.ufrag);
        self.by_address.retain(|_, &mut i| i != index);
        self.tracks.retain(|(i, _), _| *i != index);
    }

    pub(super) fn join(
        &mut self,
        key: Key,
        role: ParticipantRole,
        signals: mpsc::UnboundedSender<Signal>,
    ) -> Result<(), MediaError> {
        if self.peers.contains_key(&key) {
            return Err(MediaError::AlreadyJoined);
        }
        self.bind()?;
        let publisher = self.connect(&key, Side::Publisher)?;
        let joined = self.connect(&key, Side::Subscriber).and_then(|subscriber| {
            // The core refuses a third participant, a closed room.
            let join = Input::Join { room: key.0.clone(), participant: key.1.clone(), role };
            match self.core_input(join) {
                Ok(out) => Ok((subscriber, out)),
                Err(e) => {
                    self.close_connection(subscriber);
                    Err(e.into())
                }
            }
        });
        let (subscriber, out) = match joined {
            Ok(joined) => joined,
            Err(e) => {
                self.close_connection(publisher);
                return Err(e);
            }
        };
        let peer = Peer {
            publisher,
            subscriber,
            signals,
            senders: HashMap::new(),
            screens: Vec::new(),
            offering: false,
            again: false,
            estimated: false,
        };
        self.peers.insert(key, peer);
        self.act(out);
        Ok(())
    }

    pub(super) fn publish(&mut self, key: &Key, sdp: &str, screens: Vec<String>) -> Result<String, MediaError> {
        let peer = self.peers.get_mut(key).ok_or(MediaError::NotJoined)?;
        peer.screens.extend(screens);
        let index = peer.publisher;
        let offer = RTCSessionDescription::offer(sdp.to_owned()).map_err(|e| MediaError::InvalidSdp(e.to_string()))?;
        let connection = self.connections[index].as_mut().ok_or(MediaError::NotJoined)?;
        connection
            .pc
            .set_remote_description(Instant::now(), offer)
            .map_err(|e| MediaError::InvalidSdp(e.to_string()))?;
        // A track the browser stopped sending (a screen share ended) is
        // gone from the offer's sending sections; its packets simply stop,
        // so this is where it ends.
        let sending = sending_tracks(sdp);
        let (room, participant) = key;
        let prefix = format!("{participant}/");
        let ended: Vec<String> = self
            .published
            .keys()
            .filter(|(r, t)| r == room && t.strip_prefix(&prefix).is_some_and(|id| !sending.contains(id)))
            .map(|(_, t)| t.clone())
            .collect();
        for track in ended {
            self.end_track(room, participant, &track);
        }
        let connection = self.connections[index].as_mut().ok_or(MediaError::NotJoined)?;
        let answer = connection.pc.create_answer(None).map_err(webrtc_error)?;
        let sdp = self.set_local(index, answer)?;
        self.drain(index);
        Ok(sdp)
    }

    pub(super) fn answer(&mut self, key: &Key, sdp: &str) -> Result<(), MediaError> {
        let peer = self.peers.get_mut(key).ok_or(MediaError::NotJoined)?;
        let index = peer.subscriber;
        let answer =
            RTCSessionDescription::answer(sdp.to_owned()).map_err(|e| MediaError::InvalidSdp(e.to_string()))?;
        let connection = self.connections[index].as_mut().ok_or(MediaError::NotJoined)?;
        connection
            .pc
            .set_remote_description(Instant::now(), answer)
            .map_err(|e| MediaError::InvalidSdp(e.to_string()))?;
        peer.offering = false;
        let again = std::mem::take(&mut peer.again);
        let receiving: Vec<String> = peer.senders.keys().cloned().collect();
        self.drain(index);
        // Packets sent before this answer went nowhere (the senders were not
        // bound yet), keyframes included: ask for fresh ones.
        for track in receiving {
            self.input(Input::KeyframeWanted { room: key.0.clone(), track });
        }
        if again {
            self.negotiate(key);
        }
        Ok(())
    }

    pub(super) fn candidate(
        &mut self,
        key: &Key,
        subscriber: bool,
        candidate: IceCandidateInit,
    ) -> Result<(), MediaError> {
        let peer = self.peers.get(key).ok_or(MediaError::NotJoined)?;
        let index = if subscriber { peer.subscriber } else { peer.publisher };
        let connection = self.connections[index].as_mut().ok_or(MediaError::NotJoined)?;
        connection.pc.add_remote_candidate(candidate).map_err(webrtc_error)?;
        self.drain(index);
        Ok(())
    }

    pub(super) fn leave(&mut self, key: Key, reason: Option<String>) -> Result<(), MediaError> {
        let peer = self.peers.remove(&key).ok_or(MediaError::NotJoined)?;
        self.forwards.retain(|(room, to, _), _| !(room == &key.0 && to == &key.1));
        self.close_connection(peer.publisher);
        self.close_connection(peer.subscriber);
        let out = self.core_input(Input::Leave { room: key.0, participant: key.1, reason })?;
        self.act(out);
        Ok(())
    }

    /// Removes a participant the server ends (call closed, connection
    /// failed) and tells its browser.
    pub(super) fn remove(&mut self, key: Key, reason: &str) {
        let signals = self.peers.get(&key).map(|p| p.signals.clone());
        if self.leave(key, Some(reason.to_owned())).is_ok() {
            if let Some(signals) = signals {
                let _ = signals.send(Signal::Left { reason: reason.to_owned() });
            }
        }
    }

    /// A stream of a track on publishing connection `index` sent its first
    /// packet: a new track (published to the core), or another simulcast
    /// layer of one.
    pub(super) fn opened(&mut self, index: usize, init: RTCTrackEventInit) {
        let Some(connection) = self.connections[index].as_mut() else { return };
        if connection.side != Side::Publisher {
            return;
        }
        let Some(mut receiver) = connection.pc.rtp_receiver(init.receiver_id) else { return };
        let codec = receiver.track().codec(init.ssrc).cloned();
        let info = stream_info(init.ssrc, codec.as_ref(), receiver.get_parameters());
        if let (Some(incoming), Some(info)) = (connection.incoming.as_mut(), info) {
            incoming.chain.bind_remote_stream(&info);
            incoming.streams.insert(init.ssrc, (init.track_id.clone(), init.receiver_id, info));
        }
        let remote = receiver.track();
        let layer = simulcast_layer(init.rid.as_deref(), remote.codings());
        if let Some(published) =
            self.tracks.get(&(index, init.track_id.clone())).and_then(|k| self.published.get_mut(k))
        {
            published.layers.insert(init.ssrc, layer);
            return;
        }
        let Some(codec) = remote.codec(init.ssrc).cloned() else { return };
        let audio = remote.kind() == RtpCodecKind::Audio;
        let (room, participant) = connection.key.clone();
        let screen = self.peers.get(&connection.key).is_some_and(|p| p.screens.contains(&init.track_id));
        let kind = if audio {
            TrackKind::Audio
        } else if screen {
            TrackKind::Screen
        } else {
            TrackKind::Video
        };
        // Scoped by participant: one browser cannot take over another's id.
        let track = format!("{participant}/{}", init.track_id);
        let key = (room.clone(), track.clone());
        let publish = Input::Publish { room, participant, track, kind, codec: codec.mime_type.clone() };
        let out = match self.core_input(publish) {
            Ok(out) => out,
            Err(e) => {
                tracing::warn!(error = %e, "track not published");
                return;
            }
        };
        let vp8 = codec.mime_type.eq_ignore_ascii_case("video/vp8");
        self.published.insert(
            key.clone(),
            Published {
                connection: index,
                receiver: init.receiver_id,
                codec,
                vp8,
                layers: HashMap::from([(init.ssrc, layer)]),
            },
        );
        self.tracks.insert((index, init.track_id), key);
        self.act(out);
    }

    /// Offers the subscriber connection's current tracks, unless an offer
    /// is already out (then once its answer is in).
    pub(super) fn negotiate(&mut self, key: &Key) {
        let Some(peer) = self.peers.get_mut(key) else { return };
        if peer.offering {
            peer.again = true;
            return;
        }
        let (index, signals) = (peer.subscriber, peer.signals.clone());
        let Some(connection) = self.connections[index].as_mut() else { return };
        let offer = connection.pc.create_offer(None).map_err(webrtc_error).and_then(|o| self.set_local(index, o));
        match offer {
            Ok(sdp) => {
                if let Some(peer) = self.peers.get_mut(key) {
                    peer.offering = true;
                }
                let _ = signals.send(Signal::Offer { sdp });
            }
            Err(e) => tracing::warn!(error = %e, "subscriber offer failed"),
        }
        self.drain(index);
    }

    pub(super) fn subscribe(&mut self, room: &str, subscriber: &str, track: &str, kind: TrackKind) {
        let Some(codec) = self.published.get(&(room.to_owned(), track.to_owned())).map(|p| p.codec.clone()) else {
            return;
        };
        let key = (room.to_owned(), subscriber.to_owned());
        let Some(peer) = self.peers.get_mut(&key) else { return };
        let index = peer.subscriber;
        let Some(connection) = self.connections[index].as_mut() else { return };
        let ssrc = rand_ssrc();
        let clock_rate = codec.clock_rate;
        let (payload_type, codec_kind) =
            if kind == TrackKind::Audio { (OPUS_PT, RtpCodecKind::Audio) } else { (VP8_PT, RtpCodecKind::Video) };
        // The track id is the published track's: a subscriber's feedback
        // about it comes back under that name.
        let local = MediaStreamTrack::new(
            format!("{room}-{track}"),
            track.to_owned(),
            format!("{kind:?}"),
            codec_kind,
            vec![RTCRtpEncodingParameters {
                rtp_coding_parameters: RTCRtpCodingParameters { ssrc: Some(ssrc), ..Default::default() },
                codec: RTCRtpCodec { rtcp_feedback: Vec::new(), ..codec },
                ..Default::default()
            }],
        );
        let sender = match connection.pc.add_track(local) {
            Ok(sender) => sender,
            Err(e) => {
                tracing::warn!(error = %e, "could not add a track to a subscriber");
                return;
            }
        };
        peer.senders.insert(track.to_owned(), sender);
        self.forwards.insert(
            (room.to_owned(), subscriber.to_owned(), track.to_owned()),
            // NACKs are negotiated for video only (`register_codecs`).
            Forward {
                connection: index,
                sender,
                ssrc,
                payload_type,
                sent: SentStream::new(clock_rate, kind == TrackKind::Video),
            },
        );
        self.negotiate(&key);
    }

    /// A published track ended: its recording closes, subscribers drop it.
    pub(super) fn end_track(&mut self, room: &str, participant: &str, track: &str) {
        // Its streams are owed no more feedback.
        if let Some(published) = self.published.get(&(room.to_owned(), track.to_owned())) {
            if let Some(incoming) = self.connections[published.connection].as_mut().and_then(|c| c.incoming.as_mut()) {
                for ssrc in published.layers.keys() {
                    if let Some((_, _, info)) = incoming.streams.remove(ssrc) {
                        incoming.chain.unbind_remote_stream(&info);
                    }
                }
            }
        }
        let recorder = self
            .shared
            .recordings
            .lock()
            .expect("recordings poisoned")
            .get_mut(room)
            .and_then(|r| r.tracks.remove(track));
        if let Some(recorder) = recorder {
            self.closing.push(self.shared.runtime.spawn(recorder.close()));
        }
        self.input(Input::Unpublish {
            room: room.to_owned(),
            participant: participant.to_owned(),
            track: track.to_owned(),
        });
    }
}
