//! The [`MediaServer`] handle and its command protocol: every method is a
//! [`Command`] to the room's media thread, answered on a oneshot channel.

use super::*;

/// Tasks closing recordings, for the caller of a command to wait on.
pub(super) type Closing = Vec<tokio::task::JoinHandle<()>>;

/// What the [`MediaServer`] handles ask of the media thread.
pub(super) enum Command {
    Join {
        key: Key,
        role: ParticipantRole,
        signals: mpsc::UnboundedSender<Signal>,
        reply: Reply<()>,
    },
    Publish {
        key: Key,
        sdp: String,
        screens: Vec<String>,
        reply: Reply<String>,
    },
    Answer {
        key: Key,
        sdp: String,
        reply: Reply<()>,
    },
    Candidate {
        key: Key,
        subscriber: bool,
        candidate: IceCandidateInit,
        reply: Reply<()>,
    },
    Leave {
        key: Key,
        reason: Option<String>,
        reply: oneshot::Sender<Result<Closing, MediaError>>,
    },
    CloseRoom {
        room: String,
        reason: String,
        reply: oneshot::Sender<Closing>,
    },
    /// Start or stop handing `room`'s media to its recording.
    Recording {
        room: String,
        on: bool,
    },
    /// A recorder needs a keyframe of `track` to start a file.
    KeyframeWanted {
        room: String,
        track: String,
    },
}

pub(super) type Reply<T> = oneshot::Sender<Result<T, MediaError>>;

/// The process's SFU. Cheap to clone; the media threads end with the last
/// clone.
#[derive(Clone)]
pub struct MediaServer {
    shared: Arc<Shared>,
    /// One per media thread.
    commands: Vec<mpsc::UnboundedSender<Command>>,
}

impl std::fmt::Debug for MediaServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MediaServer").field("config", &self.shared.config).finish_non_exhaustive()
    }
}

pub(super) fn stopped() -> MediaError {
    MediaError::WebRtc("the media thread stopped".into())
}

impl MediaServer {
    /// Starts the server's media threads (each binds its UDP socket at its
    /// first join); the receiver yields what the record should say. Must
    /// be called on a tokio runtime: recorders are built on it.
    pub fn new(config: MediaConfig) -> (MediaServer, mpsc::UnboundedReceiver<Report>) {
        let (events, rx) = mpsc::unbounded_channel();
        let threads = config.threads.max(1);
        let shared = Arc::new(Shared {
            config,
            cores: (0..threads).map(|_| Mutex::new(Sfu::new(Instant::now()))).collect(),
            events,
            recordings: Default::default(),
            recorder_starts: AtomicU64::new(0),
            runtime: tokio::runtime::Handle::current(),
            counters: MediaCounters::default(),
        });
        let commands = (0..threads)
            .map(|shard| {
                let (commands, receiver) = mpsc::unbounded_channel();
                let engine = MediaThread::new(shared.clone(), shard, commands.downgrade());
                std::thread::Builder::new()
                    .name("sfu".into())
                    .spawn(move || engine.run(receiver))
                    .expect("a media thread starts");
                commands
            })
            .collect();
        (MediaServer { shared, commands }, rx)
    }

    /// Media threads still running, of how many started (a thread that
    /// panicked or stopped has dropped its end of the command channel).
    pub fn threads_alive(&self) -> (usize, usize) {
        (self.commands.iter().filter(|c| !c.is_closed()).count(), self.commands.len())
    }

    pub fn recordings_dir(&self) -> &std::path::Path {
        &self.shared.config.recordings_dir
    }

    pub fn ice_servers(&self) -> &[IceServer] {
        &self.shared.config.ice_servers
    }

    /// What the media threads counted since start, over all calls.
    pub fn counters(&self) -> &MediaCounters {
        &self.shared.counters
    }

    /// Rooms (calls) open now, their participants and published tracks,
    /// over every media thread.
    pub fn census(&self) -> Census {
        self.shared.cores.iter().fold(Census::default(), |sum, core| {
            let c = core.lock().expect("SFU core poisoned").census();
            Census {
                rooms: sum.rooms + c.rooms,
                participants: sum.participants + c.participants,
                tracks: sum.tracks + c.tracks,
            }
        })
    }

    /// The simulcast layer of `track` that `subscriber` receives now.
    pub fn forwarded_layer(&self, room: &str, subscriber: &str, track: &str) -> Option<u8> {
        let core = self.shared.cores[self.shard(room)].lock().expect("SFU core poisoned");
        core.forwarded_layer(room, subscriber, track)
    }

    /// The media thread that drives `room`.
    pub(crate) fn shard(&self, room: &str) -> usize {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::hash::DefaultHasher::new();
        room.hash(&mut hasher);
        (hasher.finish() % self.commands.len() as u64) as usize
    }

    /// The channel to the media thread that drives `room`.
    fn thread(&self, room: &str) -> &mpsc::UnboundedSender<Command> {
        &self.commands[self.shard(room)]
    }

    /// Sends `room`'s media thread a command and waits for its reply.
    async fn ask<T>(&self, room: &str, command: impl FnOnce(oneshot::Sender<T>) -> Command) -> Result<T, MediaError> {
        let (reply, answer) = oneshot::channel();
        self.thread(room).send(command(reply)).map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())
    }

    /// Adds `participant` to `room` (a call); the server's offers for what
    /// they should receive arrive on `signals`.
    pub async fn join(
        &self,
        room: &str,
        participant: &str,
        role: ParticipantRole,
        signals: mpsc::UnboundedSender<Signal>,
    ) -> Result<(), MediaError> {
        let key = key(room, participant);
        self.ask(room, |reply| Command::Join { key, role, signals, reply }).await?
    }

    /// The participant's offer on its publishing connection (the first, or a
    /// renegotiation adding or removing a screen share); returns the answer.
    /// `screens` names the track ids that are screen shares.
    pub async fn publish(
        &self,
        room: &str,
        participant: &str,
        sdp: &str,
        screens: Vec<String>,
    ) -> Result<String, MediaError> {
        check_sdp(sdp)?;
        let (key, sdp) = (key(room, participant), self.shared.config.candidates.filter_sdp(sdp));
        self.ask(room, |reply| Command::Publish { key, sdp, screens, reply }).await?
    }

    /// The participant's answer to the server's last [`Signal::Offer`].
    pub async fn subscriber_answer(&self, room: &str, participant: &str, sdp: &str) -> Result<(), MediaError> {
        check_sdp(sdp)?;
        let (key, sdp) = (key(room, participant), self.shared.config.candidates.filter_sdp(sdp));
        self.ask(room, |reply| Command::Answer { key, sdp, reply }).await?
    }

    /// A trickled ICE candidate from the browser, for its publishing
    /// (`subscriber == false`) or receiving connection. One whose address
    /// the [`MediaConfig::candidates`] policy refuses is dropped.
    pub async fn add_candidate(
        &self,
        room: &str,
        participant: &str,
        subscriber: bool,
        candidate: IceCandidateInit,
    ) -> Result<(), MediaError> {
        if !self.shared.config.candidates.admits_candidate(&candidate.candidate) {
            tracing::debug!("a remote candidate's address is refused by the policy; dropped");
            return Ok(());
        }
        let key = key(room, participant);
        self.ask(room, |reply| Command::Candidate { key, subscriber, candidate, reply }).await?
    }

    /// Removes `participant` from `room`: its connections close, its tracks
    /// end for the others (and their recordings' last files are written
    /// before this returns).
    pub async fn leave(&self, room: &str, participant: &str, reason: Option<String>) -> Result<(), MediaError> {
        let key = key(room, participant);
        let closing = self.ask(room, |reply| Command::Leave { key, reason, reply }).await??;
        wait(closing).await;
        Ok(())
    }

    /// Records every track of `room` (those published now and later) as
    /// `recording`, until [`MediaServer::stop_recording`] or the room closes.
    pub fn start_recording(&self, room: &str, recording: &str) -> Result<(), MediaError> {
        crate::recorder::init().map_err(|e| MediaError::Recording(e.to_string()))?;
        let mut recordings = self.shared.recordings.lock().expect("recordings poisoned");
        if recordings.contains_key(room) {
            return Err(MediaError::Recording("this call is already being recorded".into()));
        }
        recordings.insert(
            room.to_owned(),
            Recording {
                id: recording.to_owned(),
                tracks: HashMap::new(),
                sizes: HashMap::new(),
                numbers: HashMap::new(),
            },
        );
        drop(recordings);
        self.thread(room).send(Command::Recording { room: room.to_owned(), on: true }).map_err(|_| stopped())
    }

    /// Stops recording `room`; returns once every track's last segment is
    /// written and reported. `false` if it was not being recorded.
    pub async fn stop_recording(&self, room: &str) -> bool {
        let Some(recording) = self.shared.recordings.lock().expect("recordings poisoned").remove(room) else {
            return false;
        };
        let _ = self.thread(room).send(Command::Recording { room: room.to_owned(), on: false });
        recording.finish().await;
        true
    }

    pub fn is_recording(&self, room: &str) -> bool {
        self.shared.recordings.lock().expect("recordings poisoned").contains_key(room)
    }

    /// Ends the call for everyone in `room` (each is sent [`Signal::Left`]).
    pub async fn close_room(&self, room: &str, reason: &str) {
        let (owned, reason) = (room.to_owned(), reason.to_owned());
        if let Ok(closing) = self.ask(room, |reply| Command::CloseRoom { room: owned, reason, reply }).await {
            wait(closing).await;
        }
    }
}

pub(super) fn key(room: &str, participant: &str) -> Key {
    (room.to_owned(), participant.to_owned())
}

pub(super) async fn wait(closing: Closing) {
    for task in closing {
        let _ = task.await;
    }
}
