//! Bare forwarders: the `sfu_load` benchmark's yardsticks for what
//! forwarding a packet costs on a WebRTC stack without Witness's SFU
//! around it (`SFU_STACK=str0m` or `SFU_STACK=rtc`).
//!
//! One thread, one UDP socket for every connection, driving sans-I/O
//! connections directly — no tasks, channels or locks between a packet's
//! arrival and its forwarding. Each serves the same [`TestPeer`]s as
//! Witness's `MediaServer` and forwards RTP between the participants of a
//! room unchanged but for SSRC and payload type (sequence numbers and
//! timestamps kept, so the bench's send→receive matching works). Nothing
//! else: no recording, simulcast, keyframe or bandwidth relay, events, or
//! leaving. A measurement, not a product.
//!
//! - [`str0m`]: the `str0m` crate (rust-crypto backend).
//! - [`rtc`]: the sans-I/O `rtc` crate Witness's SFU drives (and the
//!   `webrtc` crate wraps in tokio tasks): the same protocol stack and
//!   interceptors, without the SFU's rooms, recording and signaling.
//!
//! [`TestPeer`]: witness_media::loopback::TestPeer

pub mod rtc;
pub mod str0m;

use std::collections::HashMap;
use std::hash::Hash;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc as std_mpsc, Arc};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};
use witness_media::loopback::Signaling;
use witness_media::server::{MediaError, Signal};
use witness_schemas::ParticipantRole;

/// Audio or video: what a forwarded track is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Audio,
    Video,
}

/// What a connection reports when drained.
pub enum Happening<C: Connection> {
    /// The remote started sending a track.
    Published(C::Remote, Kind),
    /// A packet of a remote's track.
    Rtp(C::Remote, C::Packet),
}

/// One sans-I/O connection of a stack.
pub trait Connection: Sized {
    /// A received track, as the connection names it.
    type Remote: Clone + Eq + Hash;
    /// A sending track, as the connection names it.
    type Local: Copy;
    type Packet: Clone;

    /// A publishing connection answering `offer`; with its answer.
    fn publishing(local: SocketAddr, offer: &str) -> Result<(Self, String), MediaError>;
    /// A receiving connection: the forwarder offers it tracks.
    fn receiving(local: SocketAddr) -> Self;
    /// Whether a datagram from an unknown address is for this connection
    /// (its ICE credentials).
    fn accepts(&self, local: SocketAddr, source: SocketAddr, datagram: &[u8]) -> bool;
    fn receive(&mut self, now: Instant, local: SocketAddr, source: SocketAddr, datagram: &[u8]);
    fn timeout(&mut self, now: Instant);
    /// Sends what it has to send; reports what happened; returns when it
    /// wants [`Connection::timeout`].
    fn drain(&mut self, socket: &UdpSocket, happened: &mut Vec<Happening<Self>>) -> Instant;
    /// Adds sending tracks; returns the offer, the tracks' local names.
    fn offer(&mut self, tracks: &[Kind]) -> Option<(String, Vec<Self::Local>)>;
    fn answer(&mut self, sdp: &str) -> Result<(), MediaError>;
    /// Sends `packet` on `local`; whether it was taken.
    fn send(&mut self, local: Self::Local, kind: Kind, packet: Self::Packet) -> bool;
}

enum Command {
    Join { room: String, name: String, signals: mpsc::UnboundedSender<Signal> },
    Publish { room: String, name: String, sdp: String, reply: oneshot::Sender<Result<String, MediaError>> },
    Answer { room: String, name: String, sdp: String, reply: oneshot::Sender<Result<(), MediaError>> },
}

/// A forwarder's handle; its thread ends when the last handle is dropped.
#[derive(Clone)]
pub struct BareSfu {
    commands: std_mpsc::Sender<Command>,
    forwarded: Arc<AtomicU64>,
}

impl BareSfu {
    /// Binds `addr` and starts forwarding with connections of type `C` on a
    /// thread named `sfu` (`setup` runs first on it, e.g. to pin it).
    pub fn start<C: Connection + 'static>(
        addr: SocketAddr,
        setup: impl FnOnce() + Send + 'static,
    ) -> std::io::Result<BareSfu> {
        let socket = UdpSocket::bind(addr)?;
        // Every connection's packets queue in this one socket, as in
        // Witness's SFU.
        witness_media::server::widen_receive_buffer(&socket)?;
        // The loop wakes at least this often for commands and timeouts.
        socket.set_read_timeout(Some(Duration::from_millis(1)))?;
        let (commands, receiver) = std_mpsc::channel();
        let forwarded = Arc::new(AtomicU64::new(0));
        let count = forwarded.clone();
        std::thread::Builder::new().name("sfu".into()).spawn(move || {
            setup();
            Forwarder::<C>::new(socket, count).run(receiver)
        })?;
        Ok(BareSfu { commands, forwarded })
    }

    pub fn forwarded_packets(&self) -> u64 {
        self.forwarded.load(Ordering::Relaxed)
    }

    fn send(&self, command: Command) -> Result<(), MediaError> {
        self.commands.send(command).map_err(|_| MediaError::WebRtc("forwarder stopped".into()))
    }

    async fn ask<T>(
        &self,
        command: impl FnOnce(oneshot::Sender<Result<T, MediaError>>) -> Command,
    ) -> Result<T, MediaError> {
        let (reply, answer) = oneshot::channel();
        self.send(command(reply))?;
        answer.await.map_err(|_| MediaError::WebRtc("forwarder stopped".into()))?
    }
}

impl Signaling for BareSfu {
    async fn join(
        &self,
        room: &str,
        name: &str,
        _role: ParticipantRole,
        signals: mpsc::UnboundedSender<Signal>,
    ) -> Result<(), MediaError> {
        self.send(Command::Join { room: room.to_owned(), name: name.to_owned(), signals })
    }

    async fn publish(&self, room: &str, name: &str, sdp: &str) -> Result<String, MediaError> {
        self.ask(|reply| Command::Publish { room: room.to_owned(), name: name.to_owned(), sdp: sdp.to_owned(), reply })
            .await
    }

    async fn subscriber_answer(&self, room: &str, name: &str, sdp: &str) -> Result<(), MediaError> {
        self.ask(|reply| Command::Answer { room: room.to_owned(), name: name.to_owned(), sdp: sdp.to_owned(), reply })
            .await
    }
}

type Key = (String, String);

/// Where a track goes: (receiving connection, its local track, kind).
type Route<C> = (usize, <C as Connection>::Local, Kind);

struct Slot<C: Connection> {
    connection: C,
    timeout: Instant,
    /// The (room, participant) publishing on it, for publishing connections.
    publisher: Option<Key>,
    routes: HashMap<C::Remote, Vec<Route<C>>>,
}

impl<C: Connection> Slot<C> {
    fn new(connection: C, publisher: Option<Key>) -> Slot<C> {
        Slot { connection, timeout: far(), publisher, routes: HashMap::new() }
    }
}

struct Participant<C: Connection> {
    signals: mpsc::UnboundedSender<Signal>,
    /// Index of its receiving connection.
    receiving: usize,
    /// Published tracks (connection, track, kind) not yet offered to it.
    queued: Vec<(usize, C::Remote, Kind)>,
    /// An offer is out; waiting for the answer.
    offer_out: bool,
}

struct Forwarder<C: Connection> {
    socket: UdpSocket,
    local: SocketAddr,
    slots: Vec<Slot<C>>,
    participants: HashMap<Key, Participant<C>>,
    /// Published tracks by room: (connection, track, kind).
    published: HashMap<String, Vec<(usize, C::Remote, Kind)>>,
    /// Which connection a remote address talks to.
    by_address: HashMap<SocketAddr, usize>,
    earliest: Instant,
    forwarded: Arc<AtomicU64>,
    happened: Vec<Happening<C>>,
}

impl<C: Connection> Forwarder<C> {
    fn new(socket: UdpSocket, forwarded: Arc<AtomicU64>) -> Forwarder<C> {
        let local = socket.local_addr().expect("a bound socket");
        Forwarder {
            socket,
            local,
            slots: Vec::new(),
            participants: HashMap::new(),
            published: HashMap::new(),
            by_address: HashMap::new(),
            earliest: Instant::now(),
            forwarded,
            happened: Vec::new(),
        }
    }

    fn run(mut self, commands: std_mpsc::Receiver<Command>) {
        let mut buf = vec![0u8; 2000];
        loop {
            loop {
                match commands.try_recv() {
                    Ok(command) => self.command(command),
                    Err(std_mpsc::TryRecvError::Empty) => break,
                    Err(std_mpsc::TryRecvError::Disconnected) => return,
                }
            }
            if Instant::now() >= self.earliest {
                self.timeouts();
            }
            let Ok((n, source)) = self.socket.recv_from(&mut buf) else { continue }; // the read timeout
            let datagram = &buf[..n];
            let index = match self.by_address.get(&source) {
                Some(&index) => index,
                None => match self.slots.iter().position(|s| s.connection.accepts(self.local, source, datagram)) {
                    Some(index) => {
                        self.by_address.insert(source, index);
                        index
                    }
                    None => continue,
                },
            };
            self.slots[index].connection.receive(Instant::now(), self.local, source, datagram);
            self.drain(index);
        }
    }

    fn command(&mut self, command: Command) {
        match command {
            Command::Join { room, name, signals } => {
                self.slots.push(Slot::new(C::receiving(self.local), None));
                let receiving = self.slots.len() - 1;
                let queued = self.published.get(&room).cloned().unwrap_or_default();
                let key = (room, name);
                self.participants.insert(key.clone(), Participant { signals, receiving, queued, offer_out: false });
                self.negotiate(&key);
            }
            Command::Publish { room, name, sdp, reply } => {
                let published = C::publishing(self.local, &sdp).map(|(connection, answer)| {
                    self.slots.push(Slot::new(connection, Some((room, name))));
                    let index = self.slots.len() - 1;
                    self.drain(index);
                    answer
                });
                let _ = reply.send(published);
            }
            Command::Answer { room, name, sdp, reply } => {
                let _ = reply.send(self.answer((room, name), &sdp));
            }
        }
    }

    /// Connection `index` publishes `track`: queued for the room's others.
    fn published(&mut self, index: usize, track: C::Remote, kind: Kind) {
        let Some((room, name)) = self.slots[index].publisher.clone() else { return };
        self.published.entry(room.clone()).or_default().push((index, track.clone(), kind));
        let others: Vec<Key> = self.participants.keys().filter(|(r, n)| *r == room && *n != name).cloned().collect();
        for key in others {
            if let Some(p) = self.participants.get_mut(&key) {
                p.queued.push((index, track.clone(), kind));
            }
            self.negotiate(&key);
        }
    }

    /// Offers the participant's receiving connection what is queued for it,
    /// unless an offer is already out.
    fn negotiate(&mut self, key: &Key) {
        let Some(p) = self.participants.get_mut(key) else { return };
        if p.offer_out || p.queued.is_empty() {
            return;
        }
        let kinds: Vec<Kind> = p.queued.iter().map(|(_, _, kind)| *kind).collect();
        let receiving = p.receiving;
        if let Some((sdp, locals)) = self.slots[receiving].connection.offer(&kinds) {
            let _ = p.signals.send(Signal::Offer { sdp });
            p.offer_out = true;
            for ((from, track, kind), local) in p.queued.drain(..).zip(locals) {
                self.slots[from].routes.entry(track).or_default().push((receiving, local, kind));
            }
        }
        self.drain(receiving);
    }

    fn answer(&mut self, key: Key, sdp: &str) -> Result<(), MediaError> {
        let p = self.participants.get_mut(&key).ok_or(MediaError::NotJoined)?;
        if !std::mem::replace(&mut p.offer_out, false) {
            return Err(MediaError::WebRtc("no offer out".into()));
        }
        let receiving = p.receiving;
        self.slots[receiving].connection.answer(sdp)?;
        self.drain(receiving);
        self.negotiate(&key);
        Ok(())
    }

    fn timeouts(&mut self) {
        let now = Instant::now();
        self.earliest = far();
        for index in 0..self.slots.len() {
            let due = self.slots[index].timeout;
            if due <= now {
                self.slots[index].connection.timeout(now);
                self.drain(index);
            } else {
                self.earliest = self.earliest.min(due);
            }
        }
    }

    /// Sends what connection `index` has to send and forwards what it
    /// received.
    fn drain(&mut self, index: usize) {
        let mut happened = std::mem::take(&mut self.happened);
        let timeout = self.slots[index].connection.drain(&self.socket, &mut happened);
        self.slots[index].timeout = timeout;
        self.earliest = self.earliest.min(timeout);
        for happening in happened.drain(..) {
            match happening {
                Happening::Published(track, kind) => self.published(index, track, kind),
                Happening::Rtp(track, packet) => self.forward(index, &track, packet),
            }
        }
        self.happened = happened;
    }

    fn forward(&mut self, index: usize, track: &C::Remote, packet: C::Packet) {
        let targets = self.slots[index].routes.get(track).map_or(0, Vec::len);
        let mut packet = Some(packet);
        for n in 0..targets {
            let (to, local, kind) = self.slots[index].routes[track][n];
            // The last target takes the packet, the others a copy.
            let Some(packet) = (if n + 1 == targets { packet.take() } else { packet.clone() }) else { return };
            if self.slots[to].connection.send(local, kind, packet) {
                self.forwarded.fetch_add(1, Ordering::Relaxed);
            }
            self.drain(to);
        }
    }
}

/// An instant nothing waits for.
fn far() -> Instant {
    Instant::now() + Duration::from_secs(3600)
}
