//! Per-track recording: RTP in, WebM segments out, no transcoding.
//!
//! One GStreamer pipeline per recorded track:
//!
//! ```text
//! appsrc (RTP, timestamped on arrival) → rtpjitterbuffer → rtpvp8depay | rtpopusdepay ! opusparse
//!   → splitmuxsink (webmmux, a new file every `segment`)
//! ```
//!
//! Each closed file is hashed (SHA-256) and reported as a [`Segment`]; the
//! caller records it as a `RecordingSegmentClosed` event. Video can only be
//! cut at a keyframe, so `splitmuxsink` asks upstream for one shortly before
//! each cut; the recorder turns that request (and the depayloader's after a
//! loss) into [`TrackRecorder::new`]'s `keyframe_wanted` callback, which the
//! SFU turns into a PLI to the publisher.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use sha2::{Digest, Sha256};
use witness_schemas::metrics::{Counter, Gauge};

/// The default length of a segment.
pub const DEFAULT_SEGMENT: Duration = Duration::from_secs(10);

/// How long stopping waits for the last segment to be written.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum RecorderError {
    #[error("GStreamer: {0}")]
    Gstreamer(String),
    #[error("cannot record codec {0}")]
    Codec(String),
    #[error("{0}: {1}")]
    Io(PathBuf, std::io::Error),
    /// The track's pipeline failed; `resumed`: it was restarted and the
    /// track goes on in a new segment.
    #[error("recording interrupted: {error}; {}", if *.resumed { "resumed in a new segment" } else { "not resumed" })]
    Interrupted { error: String, resumed: bool },
}

fn gst_error(e: impl std::fmt::Display) -> RecorderError {
    RecorderError::Gstreamer(e.to_string())
}

/// A closed segment file of one track.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    /// From 0, in the order written.
    pub index: u32,
    /// The file, under the recorder's directory.
    pub path: PathBuf,
    pub bytes: u64,
    pub duration_ms: u64,
    /// SHA-256 of the file, lower-case hex.
    pub sha256: String,
}

/// Initialises GStreamer once; checks that the elements recording needs
/// are installed (Debian: gstreamer1.0-plugins-{base,good,bad}).
pub fn init() -> Result<(), RecorderError> {
    gst::init().map_err(gst_error)?;
    for element in ["appsrc", "rtpjitterbuffer", "rtpvp8depay", "rtpopusdepay", "opusparse", "splitmuxsink", "webmmux"]
    {
        if gst::ElementFactory::find(element).is_none() {
            return Err(RecorderError::Gstreamer(format!(
                "the GStreamer element `{element}` is missing: install gstreamer1.0-plugins-base, -good and -bad"
            )));
        }
    }
    Ok(())
}

/// The SHA-256 of a file, lower-case hex.
pub fn sha256_file(path: &Path) -> Result<String, RecorderError> {
    let mut file = std::fs::File::open(path).map_err(|e| RecorderError::Io(path.to_owned(), e))?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher).map_err(|e| RecorderError::Io(path.to_owned(), e))?;
    Ok(hex::encode(hasher.finalize()))
}

/// Records one track. Dropping it without [`TrackRecorder::stop`] loses
/// the open segment.
#[derive(Debug)]
pub struct TrackRecorder {
    pipeline: gst::Pipeline,
    /// Where its segments go (named in the log when it lost packets).
    dir: PathBuf,
    source: Arc<Source>,
    clock: gst::Clock,
    base_time: gst::ClockTime,
    timing: Arc<Timing>,
    bus_thread: Option<std::thread::JoinHandle<()>>,
    alive: Arc<AtomicBool>,
}

/// The file numbers of one track's segments, shared by every recorder the
/// track has: a file takes its number when it is opened, so a recorder that
/// takes over the track while the replaced one still writes out what it had
/// queued (and may open one more file for it) never picks the same name.
#[derive(Debug, Clone, Default)]
pub struct SegmentNumbers(Arc<AtomicU32>);

impl SegmentNumbers {
    pub fn new() -> Self {
        Self::default()
    }

    /// The number the next file opened will take (at least).
    pub fn next(&self) -> u32 {
        self.0.load(Ordering::SeqCst)
    }

    fn take(&self) -> u32 {
        self.0.fetch_add(1, Ordering::SeqCst)
    }
}

impl TrackRecorder {
    /// Starts recording into `dir` (created if needed): `00000.webm`,
    /// `00001.webm`, … every `segment`, each file taking the next of
    /// `numbers` when it is opened, after the files already there (a track
    /// recorded anew after a change of picture size goes on in the same
    /// directory: pass the replaced recorder's numbers). `codec` is the RTP codec's MIME type
    /// (`audio/opus`, `video/VP8`; their RTP clocks are fixed), `payload_type`
    /// as negotiated. Closed segments go to `on_segment`, keyframe requests to
    /// `keyframe_wanted`; both are called from GStreamer's threads.
    ///
    /// Takes a few milliseconds (a pipeline and its threads are built, on a
    /// thread of background priority so that every thread the pipeline
    /// starts inherits it): keep it off paths that forward media.
    pub fn new(
        dir: &Path,
        codec: &str,
        payload_type: u8,
        numbers: &SegmentNumbers,
        segment: Duration,
        on_segment: impl Fn(Result<Segment, RecorderError>) + Send + 'static,
        keyframe_wanted: impl Fn() + Send + Sync + 'static,
    ) -> Result<Self, RecorderError> {
        on_a_background_thread(move || {
            init()?;
            let (media, encoding, clock_rate, depay, pad) = match codec.to_ascii_lowercase().as_str() {
                "audio/opus" => ("audio", "OPUS", 48_000, "rtpopusdepay ! opusparse name=last", "audio_%u"),
                // A segment must start at a keyframe to be playable: drop what comes
                // before the first one (and after a loss), and ask for one then.
                "video/vp8" => (
                    "video",
                    "VP8",
                    90_000,
                    "rtpvp8depay name=last wait-for-keyframe=true request-keyframe=true",
                    "video",
                ),
                other => return Err(RecorderError::Codec(other.to_owned())),
            };
            std::fs::create_dir_all(dir).map_err(|e| RecorderError::Io(dir.to_owned(), e))?;
            numbers.0.fetch_max(next_free_index(dir), Ordering::SeqCst);
            let description =
                format!("appsrc name=src is-live=true format=time ! rtpjitterbuffer latency=200 ! {depay}");
            let pipeline = gst::parse::launch(&description)
                .map_err(gst_error)?
                .downcast::<gst::Pipeline>()
                .map_err(|_| RecorderError::Gstreamer("not a pipeline".into()))?;
            // Every file's time starts at 0. Without `offset-to-zero` a
            // track's second file began at 10 s (the time it was cut), and
            // Chromium, asked to seek into it, found no frame there
            // (`PIPELINE_ERROR_DECODE`, or a jump to its first frame). The
            // muxer is set before the sink's pad is asked for, so it is
            // built here, not in the description.
            let muxer =
                gst::ElementFactory::make("webmmux").property("offset-to-zero", true).build().map_err(gst_error)?;
            let sink = gst::ElementFactory::make("splitmuxsink")
                .name("sink")
                .property("send-keyframe-requests", true)
                .property("max-size-time", segment.as_nanos() as u64)
                .property("muxer", &muxer)
                .build()
                .map_err(gst_error)?;
            pipeline.add(&sink).map_err(gst_error)?;
            let into = sink.request_pad_simple(pad).ok_or_else(|| RecorderError::Gstreamer(format!("no {pad} pad")))?;
            let last = pipeline.by_name("last").expect("named in the description");
            last.static_pad("src").expect("the element has a src pad").link(&into).map_err(gst_error)?;
            let (naming, dir_owned) = (numbers.clone(), dir.to_owned());
            sink.connect("format-location", false, move |_| {
                Some(
                    dir_owned
                        .join(crate::layout::segment_file_name(naming.take()))
                        .to_string_lossy()
                        .into_owned()
                        .to_value(),
                )
            });
            let appsrc = pipeline
                .by_name("src")
                .expect("named in the description")
                .downcast::<gst_app::AppSrc>()
                .map_err(|_| RecorderError::Gstreamer("appsrc is not an AppSrc".into()))?;
            let caps = gst::Caps::builder("application/x-rtp")
                .field("media", media)
                .field("clock-rate", clock_rate)
                .field("encoding-name", encoding)
                .field("payload", i32::from(payload_type))
                .build();
            appsrc.set_caps(Some(&caps));
            // The source never blocks the feeding thread, which keeps its
            // queue under SOURCE_QUEUE_BYTES (`Source::push`).
            appsrc.set_max_bytes(SOURCE_QUEUE_BYTES);

            // splitmuxsink's and the depayloader's keyframe requests travel
            // upstream as GstForceKeyUnit events and end at the appsrc.
            let keyframe_wanted = Arc::new(keyframe_wanted);
            let src_pad = appsrc.static_pad("src").expect("appsrc has a src pad");
            src_pad.add_probe(gst::PadProbeType::EVENT_UPSTREAM, move |_, info| {
                if let Some(gst::PadProbeData::Event(event)) = &info.data {
                    if event.structure().is_some_and(|s| s.name() == "GstForceKeyUnit") {
                        keyframe_wanted();
                    }
                }
                gst::PadProbeReturn::Ok
            });

            let timing = Arc::new(Timing::default());
            keep_time_moving(&last, timing.clone());
            give_frames_durations(&last);
            let frames = count_frames(&last);

            let bus = pipeline.bus().expect("a pipeline has a bus");
            bus.set_sync_handler(|_, message| match message.view() {
                gst::MessageView::StreamStatus(status) => {
                    in_the_background(status);
                    gst::BusSyncReply::Drop
                }
                _ => gst::BusSyncReply::Pass,
            });
            let alive = Arc::new(AtomicBool::new(true));
            let watching = alive.clone();
            let bus_thread = std::thread::Builder::new()
                .name("witness-recorder".into())
                .spawn({
                    let (pipeline, timing) = (pipeline.clone(), timing.clone());
                    move || watch_bus(bus, &pipeline, &watching, &frames, &timing, on_segment)
                })
                .map_err(|e| RecorderError::Gstreamer(e.to_string()))?;
            // Packets are stamped with their arrival (running) time by `push`,
            // on this clock from this base: not when the recorder's threads,
            // which run behind the calls, get to them.
            let clock = gst::SystemClock::obtain();
            let base_time = clock.time();
            pipeline.use_clock(Some(&clock));
            pipeline.set_start_time(gst::ClockTime::NONE);
            pipeline.set_base_time(base_time);
            if let Err(e) = pipeline.set_state(gst::State::Playing) {
                alive.store(false, Ordering::Relaxed);
                let _ = pipeline.set_state(gst::State::Null);
                return Err(gst_error(e));
            }
            let source = Arc::new(Source { appsrc, dropped: AtomicU64::new(0) });
            let dir = dir.to_owned();
            Ok(TrackRecorder { pipeline, dir, source, clock, base_time, timing, bus_thread: Some(bus_thread), alive })
        })
    }

    /// Queues one RTP packet (header and payload, as received), stamped
    /// with the time it arrived; never waits. The recorders' feeding
    /// thread ([`feeder`]) wraps it in a GStreamer buffer (not copied) and
    /// hands it over, so the caller — the SFU's forwarding path — takes
    /// none of GStreamer's or GLib's locks: those are shared with the
    /// recorders' threads, which run at the lowest priority, and a media
    /// thread waiting for one of them waits for them to be scheduled. If
    /// the feeding thread is more than [`FEED_QUEUE`] packets behind, or
    /// this recorder's pipeline [`SOURCE_QUEUE_BYTES`] behind (a slow
    /// disk), the packet is dropped and counted
    /// ([`TrackRecorder::dropped_packets`], [`COUNTERS`]): a machine
    /// too busy to record loses media from its recordings, not from its
    /// calls.
    pub fn push(&self, rtp: impl Into<bytes::Bytes>) {
        self.push_arrived(rtp, self.clock.time().saturating_sub(self.base_time));
    }

    /// [`TrackRecorder::push`] with the arrival time given: how tests
    /// replay a machine whose timestamps jump.
    fn push_arrived(&self, rtp: impl Into<bytes::Bytes>, arrived: gst::ClockTime) {
        match feeder().try_send(Feed::Packet(self.source.clone(), rtp.into(), arrived)) {
            Ok(()) => COUNTERS.feed_queue.add(1),
            Err(_) => self.source.count_dropped(1),
        }
    }

    /// Frames whose time was moved later to keep the recording's time
    /// moving on ([`keep_time_moving`]).
    pub fn retimed_frames(&self) -> u64 {
        self.timing.retimed.load(Ordering::Relaxed)
    }

    /// Packets this recorder dropped (recording too far behind).
    pub fn dropped_packets(&self) -> u64 {
        self.source.dropped.load(Ordering::Relaxed)
    }

    /// Ends the recording: the open segment is closed (and reported) before
    /// this returns. Blocks; call it off the async runtime.
    pub fn stop(mut self) {
        // After the packets still queued for it.
        if feeder().send(Feed::End(self.source.clone())).is_err() {
            let _ = self.source.appsrc.end_of_stream();
        }
        if let Some(thread) = self.bus_thread.take() {
            let deadline = std::time::Instant::now() + STOP_TIMEOUT;
            while !thread.is_finished() && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            if !thread.is_finished() {
                tracing::warn!("a recorder did not finish its last segment in time");
            }
            self.alive.store(false, Ordering::Relaxed);
            let _ = thread.join();
        }
        let _ = self.pipeline.set_state(gst::State::Null);
        let dropped = self.dropped_packets();
        if dropped > 0 {
            tracing::warn!(dropped, dir = %self.dir.display(), "packets were dropped from a track's recording: recording was behind");
        }
    }
}

impl Drop for TrackRecorder {
    fn drop(&mut self) {
        self.alive.store(false, Ordering::Relaxed);
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}

/// How many packets the recorders' feeding thread may be behind.
pub const FEED_QUEUE: usize = 32_768;

/// How far a recorder's pipeline may be behind its source, in bytes of
/// RTP: about a minute of a 500 kbit/s track.
pub const SOURCE_QUEUE_BYTES: u64 = 4 * 1024 * 1024;

/// What every recorder in this process counts (`/metrics` shows it).
#[derive(Debug)]
pub struct RecorderCounters {
    /// Packets dropped because recording was too far behind (the feeding
    /// thread [`FEED_QUEUE`] packets, or a pipeline [`SOURCE_QUEUE_BYTES`]).
    pub dropped: Counter,
    /// Packets waiting in the feeding thread's queue now.
    pub feed_queue: Gauge,
    /// Segment files closed and reported.
    pub segments_closed: Counter,
    /// Recordings interrupted by an error (each resumed in a new segment or not).
    pub interruptions: Counter,
}

pub static COUNTERS: RecorderCounters = RecorderCounters {
    dropped: Counter::new(),
    feed_queue: Gauge::new(),
    segments_closed: Counter::new(),
    interruptions: Counter::new(),
};

/// A recorder's source and what it lost.
#[derive(Debug)]
struct Source {
    appsrc: gst_app::AppSrc,
    dropped: AtomicU64,
}

impl Source {
    /// Counts `packets` dropped from this recording (and logs the first
    /// drop in the process).
    fn count_dropped(&self, packets: u64) {
        self.dropped.fetch_add(packets, Ordering::Relaxed);
        if COUNTERS.dropped.add(packets) == 0 {
            tracing::warn!(
                "recording is behind: packets are being dropped from recordings (the machine is too busy to record every call)"
            );
        }
    }

    /// Hands `list` to the pipeline, unless that would put its queue over
    /// [`SOURCE_QUEUE_BYTES`]: then the list is dropped and counted.
    fn push(&self, list: gst::BufferList) {
        if self.appsrc.current_level_bytes() + list.calculate_size() as u64 > SOURCE_QUEUE_BYTES {
            self.count_dropped(list.len() as u64);
            return;
        }
        let packets = list.len() as u64;
        // Refused while a failed pipeline restarts: part of its gap.
        if self.appsrc.push_buffer_list(list).is_err() {
            self.count_dropped(packets);
        }
    }
}

enum Feed {
    /// A packet and when it arrived, on the recorder's clock.
    Packet(Arc<Source>, bytes::Bytes, gst::ClockTime),
    End(Arc<Source>),
}

/// How long the feeding thread gathers packets before it hands each
/// recorder its share as one list: the recorder's threads then wake once
/// per list, not once per packet.
const FEED_BATCH: Duration = Duration::from_millis(20);

/// The recorders' feeding thread: hands each recorder's packets to its
/// source, in the order pushed, every [`FEED_BATCH`], at background
/// priority.
fn feeder() -> &'static std::sync::mpsc::SyncSender<Feed> {
    static FEEDER: std::sync::OnceLock<std::sync::mpsc::SyncSender<Feed>> = std::sync::OnceLock::new();
    FEEDER.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::sync_channel(FEED_QUEUE);
        let feeding = move || {
            lower_priority();
            // Per source (by address), the packets gathered for it.
            let mut lists: std::collections::HashMap<usize, (Arc<Source>, gst::BufferList)> = Default::default();
            while let Ok(first) = rx.recv() {
                std::thread::sleep(FEED_BATCH);
                for feed in std::iter::once(first).chain(rx.try_iter()) {
                    match feed {
                        Feed::Packet(source, rtp, arrived) => {
                            COUNTERS.feed_queue.add(-1);
                            let mut buffer = gst::Buffer::from_slice(rtp);
                            let meta = buffer.get_mut().expect("a new buffer is writable");
                            meta.set_pts(arrived);
                            meta.set_dts(arrived);
                            let key = Arc::as_ptr(&source) as usize;
                            let (_, list) = lists.entry(key).or_insert_with(|| (source, gst::BufferList::new()));
                            list.get_mut().expect("a list only this thread holds").add(buffer);
                        }
                        Feed::End(source) => {
                            if let Some((_, list)) = lists.remove(&(Arc::as_ptr(&source) as usize)) {
                                source.push(list);
                            }
                            let _ = source.appsrc.end_of_stream();
                        }
                    }
                }
                for (_, (source, list)) in lists.drain() {
                    source.push(list);
                }
            }
        };
        if let Err(e) = std::thread::Builder::new().name("witness-recorder-feed".into()).spawn(feeding) {
            // Then every push is dropped and counted; stop still ends the stream.
            tracing::error!(error = %e, "could not start the recorders' feeding thread");
        }
        tx
    })
}

/// Runs `work` on a new thread of background priority and waits for it:
/// the threads it starts inherit that priority.
fn on_a_background_thread<T: Send>(work: impl FnOnce() -> Result<T, RecorderError> + Send) -> Result<T, RecorderError> {
    std::thread::scope(|scope| {
        std::thread::Builder::new()
            .name("witness-recorder-start".into())
            .spawn_scoped(scope, || {
                lower_priority();
                work()
            })
            .map_err(|e| RecorderError::Gstreamer(e.to_string()))?
            .join()
            .map_err(|_| RecorderError::Gstreamer("starting a recorder panicked".into()))?
    })
}

/// Lowers the calling thread's priority to the lowest (nice 19).
fn lower_priority() {
    // On Linux a nice value belongs to a thread: given its id, only this one.
    let tid = rustix::thread::gettid();
    if let Err(e) = rustix::process::setpriority_process(Some(tid), 19) {
        tracing::debug!(error = %e, "a recorder thread kept its priority");
    }
}

/// Runs the recorder's streaming threads behind the calls: each of its
/// tasks (the source's, the jitterbuffer's, the muxer's queues') takes a
/// thread from a pool only recorders use, and that thread lowers its own
/// priority (nice 19) when it starts (the threads a recorder starts itself
/// inherit nice 19 from the thread that builds it, [`TrackRecorder::new`]).
/// Forwarding a packet is late if it waits; writing it to a file is not —
/// packets wait in the feeding queue and the source's
/// [`SOURCE_QUEUE_BYTES`] — so when the cores are busy the calls go first
/// and the recorders catch up after (BENCHMARKS.md, "SFU load").
///
/// Called in the thread that posts `status`: a task's CREATE comes from the
/// thread starting it, its ENTER from the task's own new thread.
fn in_the_background(status: &gst::message::StreamStatus) {
    static POOL: std::sync::OnceLock<Option<gst::TaskPool>> = std::sync::OnceLock::new();
    match status.get().0 {
        gst::StreamStatusType::Create => {
            let pool = POOL.get_or_init(|| {
                let pool = gst::TaskPool::new();
                pool.prepare().map_err(|e| tracing::warn!(error = %e, "no thread pool for the recorders")).ok()?;
                Some(pool)
            });
            let task = status.stream_status_object().and_then(|v| v.get::<gst::Task>().ok());
            if let (Some(pool), Some(task)) = (pool, task) {
                task.set_pool(pool);
            }
        }
        gst::StreamStatusType::Enter => lower_priority(),
        _ => {}
    }
}

/// What [`keep_time_moving`] did to a track's frames.
#[derive(Debug, Default)]
struct Timing {
    /// Frames moved later than their own time.
    retimed: AtomicU64,
    /// Where the last frame sent on ends (running time, ns).
    end: AtomicU64,
}

/// How much closer to its own time each re-timed Opus frame is placed
/// than right after the one before: a track pushed later by a jump back
/// returns to its own times at 1 ms a frame (50 ms a second).
const CATCH_UP: gst::ClockTime = gst::ClockTime::from_mseconds(1);

/// Keeps the time of every frame `element` sends on (to the muxer) later
/// than the frame's before it, whatever the arrival times did.
///
/// Frames are stamped with their arrival and the jitterbuffer turns that
/// into a time per frame; on a busy machine those times can jump back (the
/// jitterbuffer resetting its estimate of the sender's clock after a stall).
/// `splitmuxsink` refuses a stream whose time goes back past what it has
/// written ("Queued GOP time is negative") and that ended the track's
/// recording. Instead, a frame earlier than the one before it is placed
/// right after it — an Opus frame its length on, less [`CATCH_UP`], so the
/// track returns to its own times; a VP8 frame, which states no length,
/// 1 ms on, so the picture catches up at once — and counted (if moved by
/// more than the length); its decoding time is its presentation
/// time (neither VP8 nor Opus reorders frames). A frame without any time
/// takes the next slot; one before any timed frame is dropped and counted.
fn keep_time_moving(element: &gst::Element, timing: Arc<Timing>) {
    // (the last frame's time as sent, its length)
    let last = std::sync::Mutex::new(None::<(gst::ClockTime, gst::ClockTime)>);
    let pad = element.static_pad("src").expect("the element has a src pad");
    pad.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
        let Some(gst::PadProbeData::Buffer(buffer)) = &mut info.data else {
            return gst::PadProbeReturn::Ok;
        };
        let mut last = last.lock().expect("timing poisoned");
        let own = buffer.pts().or(buffer.dts());
        let earliest =
            last.map(|(time, length)| time + gst::ClockTime::from_mseconds(1).max(length.saturating_sub(CATCH_UP)));
        let time = match (own, earliest) {
            // (Not seen: the jitterbuffer times every packet.)
            (None, None) => return gst::PadProbeReturn::Drop,
            (Some(own), Some(earliest)) if own < earliest => {
                // A jitter of less than a frame is not worth counting.
                if earliest - own > last.map_or(gst::ClockTime::ZERO, |(_, length)| length) {
                    timing.retimed.fetch_add(1, Ordering::Relaxed);
                }
                earliest
            }
            (Some(own), _) => own,
            (None, Some(earliest)) => earliest,
        };
        // Only a length the frame states: the interval between video
        // frames (which have none here) varies, and spacing late frames by
        // the last one stretched a busy camera's recording by seconds.
        let length = buffer.duration().unwrap_or(gst::ClockTime::ZERO);
        *last = Some((time, length));
        timing.end.store((time + length).nseconds(), Ordering::Relaxed);
        if own != Some(time) || buffer.dts() != Some(time) {
            let buffer = buffer.make_mut();
            buffer.set_pts(time);
            buffer.set_dts(time);
        }
        gst::PadProbeReturn::Ok
    });
}

/// Gives each buffer `element` sends on that has no duration one: the
/// interval since the buffer before it (a frame's duration, as far as can be
/// known before the next frame arrives), 1/30 s for the first.
///
/// The VP8 depayloader stamps frames with a time but no duration, so the
/// muxer's file duration is the span from the first frame's start to the
/// last one's *start*: a segment holding a single frame (the first file of
/// a camera whose picture size changes at its next keyframe) had none at all,
/// and players and ffprobe could not time it. Opus frames come from
/// `opusparse` with durations and are left alone.
fn give_frames_durations(element: &gst::Element) {
    // (the previous buffer's time, the last interval)
    let last = std::sync::Mutex::new((None::<gst::ClockTime>, gst::ClockTime::from_nseconds(1_000_000_000 / 30)));
    let pad = element.static_pad("src").expect("the element has a src pad");
    pad.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
        if let Some(gst::PadProbeData::Buffer(buffer)) = &mut info.data {
            if let (None, Some(pts)) = (buffer.duration(), buffer.pts()) {
                let mut last = last.lock().expect("durations poisoned");
                if let Some(before) = last.0.filter(|&before| pts > before) {
                    last.1 = pts - before;
                }
                last.0 = Some(pts);
                buffer.make_mut().set_duration(last.1);
            }
        }
        gst::PadProbeReturn::Ok
    });
}

/// Counts the frames `element` sends on (to the muxer).
fn count_frames(element: &gst::Element) -> Arc<AtomicU64> {
    let frames = Arc::new(AtomicU64::new(0));
    let counter = frames.clone();
    let pad = element.static_pad("src").expect("the element has a src pad");
    pad.add_probe(gst::PadProbeType::BUFFER, move |_, _| {
        counter.fetch_add(1, Ordering::Relaxed);
        gst::PadProbeReturn::Ok
    });
    frames
}

/// One more than the highest `NNNNN.webm` in `dir` (0 if none).
fn next_free_index(dir: &Path) -> u32 {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|entry| file_index(&entry.ok()?.path()))
        .map(|index| index + 1)
        .max()
        .unwrap_or(0)
}

/// The `N` of a segment file `NNNNN.webm`.
fn file_index(path: &Path) -> Option<u32> {
    path.file_name()?.to_str()?.strip_suffix(".webm")?.parse().ok()
}

/// How many times a track's pipeline is restarted after it failed before
/// the track is left unrecorded.
const MAX_RESTARTS: u32 = 5;

/// Reports closed fragments until end of stream or shutdown.
/// A recorder stopped before any frame reached the muxer (a camera whose
/// picture size changed while its recorder was being built) leaves a file
/// of headers and no stream, which nothing can play: it is deleted, not
/// reported. `frames` counts the frames sent to the muxer.
///
/// A pipeline that fails is restarted (up to [`MAX_RESTARTS`] times), its
/// next frames going to a new file: what the failed file holds is reported
/// as a segment like any other, then the interruption as
/// [`RecorderError::Interrupted`] — so the gap is on the record, and a
/// recording is never lost whole, nor silently in part.
fn watch_bus(
    bus: gst::Bus,
    pipeline: &gst::Pipeline,
    alive: &AtomicBool,
    frames: &AtomicU64,
    timing: &Timing,
    on_segment: impl Fn(Result<Segment, RecorderError>),
) {
    let mut opened_at: u64 = 0;
    // The open file and how many frames the muxer had had when it opened.
    let mut open: Option<(PathBuf, u64)> = None;
    // splitmuxsink may say a file closed twice (seen once in CI: a file of
    // one frame, its end of stream right behind it): each file is one segment.
    let mut last_closed: Option<PathBuf> = None;
    // The last fragment's "closed" message may come after EOS: after EOS,
    // wait a little for it rather than lose the last segment's report.
    let mut eos_at: Option<std::time::Instant> = None;
    let mut restarts = 0;
    while alive.load(Ordering::Relaxed) {
        if eos_at.is_some_and(|at| open.is_none() || at.elapsed() > Duration::from_secs(2)) {
            return;
        }
        let Some(message) = bus.timed_pop(gst::ClockTime::from_mseconds(50)) else {
            continue;
        };
        use gst::MessageView;
        match message.view() {
            MessageView::Element(element) => {
                let Some(s) = element.structure() else { continue };
                let running_time = s.get::<u64>("running-time").unwrap_or(opened_at);
                let Ok(location) = s.get::<String>("location") else { continue };
                match s.name().as_str() {
                    "splitmuxsink-fragment-opened" => {
                        opened_at = running_time;
                        open = Some((PathBuf::from(location), frames.load(Ordering::Relaxed)));
                    }
                    "splitmuxsink-fragment-closed" => {
                        open = None;
                        let path = PathBuf::from(location);
                        if last_closed.as_ref() == Some(&path) {
                            continue;
                        }
                        last_closed = Some(path.clone());
                        if frames.load(Ordering::Relaxed) == 0 {
                            let _ = std::fs::remove_file(&path);
                            continue;
                        }
                        on_segment(closed_segment(path, running_time.saturating_sub(opened_at)));
                    }
                    _ => {}
                }
            }
            MessageView::Eos(_) => eos_at = Some(std::time::Instant::now()),
            MessageView::Error(e) => {
                let error = format!("{} ({:?})", e.error(), e.debug());
                // The muxer and file are closed: what the file holds stays.
                let _ = pipeline.set_state(gst::State::Null);
                if let Some((path, before)) = open.take() {
                    // (Frames still queued in splitmuxsink, a GOP, never reached the file.)
                    let written = std::fs::metadata(&path).is_ok_and(|m| m.len() > 0);
                    if written && frames.load(Ordering::Relaxed) > before {
                        let end = timing.end.load(Ordering::Relaxed);
                        on_segment(closed_segment(path, end.saturating_sub(opened_at)));
                    } else {
                        let _ = std::fs::remove_file(&path);
                    }
                }
                let resumed = restarts < MAX_RESTARTS
                    && eos_at.is_none()
                    && alive.load(Ordering::Relaxed)
                    && forget_last_file(pipeline)
                    && pipeline.set_state(gst::State::Playing).is_ok();
                restarts += 1;
                COUNTERS.interruptions.add(1);
                on_segment(Err(RecorderError::Interrupted { error, resumed }));
                if !resumed {
                    return;
                }
            }
            _ => {}
        }
    }
}

/// Points the muxer's file sink away from the file it last wrote: started
/// again, it opens (and empties) that name before the muxer names the next
/// file. False if the pipeline has no file sink.
fn forget_last_file(pipeline: &gst::Pipeline) -> bool {
    let sink = pipeline
        .iterate_recurse()
        .into_iter()
        .flatten()
        .find(|element| element.factory().is_some_and(|f| f.name() == "filesink"));
    sink.map(|sink| sink.set_property("location", "/dev/null")).is_some()
}

/// A closed file of `duration` nanoseconds as a [`Segment`]: its size and hash.
fn closed_segment(path: PathBuf, duration: u64) -> Result<Segment, RecorderError> {
    let bytes = std::fs::metadata(&path).map_err(|e| RecorderError::Io(path.clone(), e))?.len();
    COUNTERS.segments_closed.add(1);
    Ok(Segment {
        index: file_index(&path).unwrap_or_default(),
        bytes,
        duration_ms: duration / 1_000_000,
        sha256: sha256_file(&path)?,
        path,
    })
}

/// Live synthetic RTP from GStreamer test sources: a tone as Opus, or a
/// moving test picture as VP8, packetised with payload type `payload_type`
/// and handed to `on_packet` as they are made. For self-tests and load
/// generators; stops when dropped.
#[derive(Debug)]
pub struct SyntheticSource {
    pipeline: gst::Pipeline,
}

impl SyntheticSource {
    /// `video`: VP8 at `kbps` (a keyframe every `keyframe_every` frames at
    /// 30 fps); else Opus. `pattern` picks the picture or the tone, so two
    /// sources can be told apart.
    pub fn start(
        video: bool,
        payload_type: u8,
        kbps: u32,
        keyframe_every: u32,
        pattern: u32,
        on_packet: impl Fn(&[u8]) + Send + Sync + 'static,
    ) -> Result<Self, RecorderError> {
        let size = video.then_some((320, 240));
        Self::start_sized(size, payload_type, kbps, keyframe_every, pattern, on_packet)
    }

    /// As [`SyntheticSource::start`], a picture of `size` (width, height)
    /// if given, else Opus.
    pub fn start_sized(
        size: Option<(u32, u32)>,
        payload_type: u8,
        kbps: u32,
        keyframe_every: u32,
        pattern: u32,
        on_packet: impl Fn(&[u8]) + Send + Sync + 'static,
    ) -> Result<Self, RecorderError> {
        gst::init().map_err(gst_error)?;
        let description = if let Some((width, height)) = size {
            format!(
                "videotestsrc is-live=true pattern={} ! video/x-raw,width={width},height={height},framerate=30/1 \
                 ! vp8enc deadline=1 cpu-used=8 end-usage=cbr target-bitrate={} keyframe-max-dist={keyframe_every} \
                 ! rtpvp8pay pt={payload_type} mtu=1200 ! appsink name=out sync=false emit-signals=false",
                pattern % 25,
                kbps * 1000
            )
        } else {
            format!(
                "audiotestsrc is-live=true freq={} ! audio/x-raw,rate=48000,channels=1 ! opusenc bitrate={} \
                 ! rtpopuspay pt={payload_type} ! appsink name=out sync=false emit-signals=false",
                300 + 100 * pattern,
                kbps * 1000
            )
        };
        let pipeline = gst::parse::launch(&description)
            .map_err(gst_error)?
            .downcast::<gst::Pipeline>()
            .map_err(|_| RecorderError::Gstreamer("not a pipeline".into()))?;
        let sink = pipeline
            .by_name("out")
            .expect("named in the description")
            .downcast::<gst_app::AppSink>()
            .map_err(|_| RecorderError::Gstreamer("appsink is not an AppSink".into()))?;
        sink.set_callbacks(
            gst_app::AppSinkCallbacks::builder()
                .new_sample(move |sink| {
                    let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                    if let Some(map) = sample.buffer().and_then(|b| b.map_readable().ok()) {
                        on_packet(map.as_slice());
                    }
                    Ok(gst::FlowSuccess::Ok)
                })
                .build(),
        );
        pipeline.set_state(gst::State::Playing).map_err(gst_error)?;
        Ok(SyntheticSource { pipeline })
    }
}

impl Drop for SyntheticSource {
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    /// Everything a recorder reported, in order.
    type Reported = Arc<Mutex<Vec<Result<Segment, RecorderError>>>>;

    /// A recorder of a synthetic track (VP8 or Opus) into `dir` in
    /// `segment`s, everything it reports kept in order.
    fn reporting_recorder(dir: &Path, video: bool, segment: Duration) -> (Arc<TrackRecorder>, Reported) {
        let reported = Arc::new(Mutex::new(Vec::new()));
        let sink = reported.clone();
        let (codec, pt) = if video { ("video/VP8", 96) } else { ("audio/opus", 111) };
        let on_segment = move |s| sink.lock().unwrap().push(s);
        let recorder = TrackRecorder::new(dir, codec, pt, &SegmentNumbers::new(), segment, on_segment, || {}).unwrap();
        (Arc::new(recorder), reported)
    }

    /// Records `seconds` of a synthetic track in 1-second segments.
    fn record(video: bool, seconds: f64) -> (tempfile::TempDir, Vec<Segment>) {
        record_with(video, seconds, 15)
    }

    fn record_with(video: bool, seconds: f64, keyframe_every: u32) -> (tempfile::TempDir, Vec<Segment>) {
        let dir = tempfile::tempdir().unwrap();
        let closed_before = COUNTERS.segments_closed.get();
        let (recorder, reported) = reporting_recorder(dir.path(), video, Duration::from_secs(1));
        let feeding = recorder.clone();
        let pt = if video { 96 } else { 111 };
        let source =
            SyntheticSource::start(video, pt, 300, keyframe_every, 0, move |rtp| feeding.push(rtp.to_vec())).unwrap();
        std::thread::sleep(Duration::from_secs_f64(seconds));
        drop(source);
        Arc::try_unwrap(recorder).expect("the source let go").stop();
        let segments = std::mem::take(&mut *reported.lock().unwrap());
        // Counted for /metrics (other tests' recorders count too).
        assert!(COUNTERS.segments_closed.get() - closed_before >= segments.len() as u64);
        (dir, segments.into_iter().map(|s| s.expect("segment written")).collect())
    }

    fn check(dir: &Path, segments: &[Segment], seconds: f64) {
        assert!(segments.len() >= 3, "1-second segments of {seconds} s: {segments:?}");
        let total: u64 = segments.iter().map(|s| s.duration_ms).sum();
        assert!((total as f64 - seconds * 1000.0).abs() < 1000.0, "durations add up to {total} ms of {seconds} s");
        for (i, s) in segments.iter().enumerate() {
            assert_eq!(s.index as usize, i);
            assert_eq!(s.path, dir.join(format!("{i:05}.webm")));
            assert_eq!(s.bytes, std::fs::metadata(&s.path).unwrap().len());
            assert_eq!(s.sha256, sha256_file(&s.path).unwrap());
            assert!(s.bytes > 100, "{s:?}");
            // Each file's time starts at 0, or a player seeking into a
            // file that starts at 10 s finds nothing there.
            let probed = std::process::Command::new("ffprobe")
                .args(["-v", "error", "-show_entries", "stream=start_time", "-of", "default=nw=1:nk=1"])
                .arg(&s.path)
                .output()
                .expect("ffprobe (scripts/test.sh installs it)");
            let start: f64 = String::from_utf8_lossy(&probed.stdout).trim().parse().unwrap();
            assert!(start < 0.05, "{} starts at {start} s", s.path.display());
        }
    }

    #[test]
    fn opus_is_recorded_in_segments_whose_durations_add_up_and_whose_hashes_match() {
        let (dir, segments) = record(false, 3.5);
        check(dir.path(), &segments, 3.5);
    }

    #[test]
    fn vp8_is_recorded_in_segments_cut_at_keyframes() {
        let (dir, segments) = record(true, 3.5);
        check(dir.path(), &segments, 3.5);
    }

    /// A pipeline that stops taking packets (a stalled disk) holds at
    /// most SOURCE_QUEUE_BYTES of them; the rest are dropped and counted,
    /// on the recorder and in the process's total.
    #[test]
    fn a_stalled_recorder_drops_and_counts_what_does_not_fit() {
        let dir = tempfile::tempdir().unwrap();
        let recorder = TrackRecorder::new(
            dir.path(),
            "audio/opus",
            111,
            &SegmentNumbers::new(),
            Duration::from_secs(1),
            |_| {},
            || {},
        )
        .unwrap();
        // A live source sends nothing downstream while paused.
        recorder.pipeline.set_state(gst::State::Paused).unwrap();
        let before = COUNTERS.dropped.get();
        let (size, packets) = (1_000usize, 6_000u64);
        for n in 0..packets {
            let mut rtp = vec![0u8; size];
            rtp[0] = 0x80;
            rtp[1] = 111;
            rtp[2..4].copy_from_slice(&(n as u16).to_be_bytes());
            recorder.push(rtp);
            if n % 500 == 0 {
                std::thread::sleep(FEED_BATCH * 2); // the feeder hands over lists as it goes
            }
        }
        // Every packet is queued in the source or dropped — but for the one
        // the source's thread may have taken out before it paused.
        let taken_out = 1;
        let accounted = || recorder.source.appsrc.current_level_bytes() / size as u64 + recorder.dropped_packets();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while accounted() < packets - taken_out && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let (dropped, queued) = (recorder.dropped_packets(), recorder.source.appsrc.current_level_bytes());
        let accounted = queued / size as u64 + dropped;
        assert!(accounted + taken_out >= packets && accounted <= packets, "{queued} bytes queued, {dropped} dropped");
        assert!(queued <= SOURCE_QUEUE_BYTES, "{queued} bytes queued");
        assert!(dropped >= packets - SOURCE_QUEUE_BYTES / size as u64, "dropped {dropped} of {packets}");
        assert!(COUNTERS.dropped.get() - before >= dropped);
    }

    /// A recorder taking over a track while the replaced one still writes
    /// (as after a change of picture size): the two share the track's
    /// numbers, so no file is written twice and none is overwritten.
    #[test]
    fn recorders_sharing_a_track_never_write_the_same_file() {
        let dir = tempfile::tempdir().unwrap();
        let numbers = SegmentNumbers::new();
        let segments = Arc::new(Mutex::new(Vec::new()));
        let start = |pattern: u32| {
            let sink = segments.clone();
            let recorder = Arc::new(
                TrackRecorder::new(
                    dir.path(),
                    "video/VP8",
                    96,
                    &numbers,
                    Duration::from_millis(500),
                    move |s| sink.lock().unwrap().push(s.expect("segment written")),
                    || {},
                )
                .unwrap(),
            );
            let feeding = recorder.clone();
            let source = SyntheticSource::start(true, 96, 300, 15, pattern, move |rtp| feeding.push(rtp.to_vec()));
            (recorder, source.unwrap())
        };
        let (first, first_source) = start(0);
        std::thread::sleep(Duration::from_millis(1200));
        let (second, second_source) = start(1);
        std::thread::sleep(Duration::from_millis(1200));
        for (recorder, source) in [(first, first_source), (second, second_source)] {
            drop(source);
            Arc::try_unwrap(recorder).expect("the source let go").stop();
        }
        let segments = segments.lock().unwrap().clone();
        assert!(segments.len() >= 4, "two recorders of 1.2 s or more in 0.5 s segments: {segments:?}");
        let mut indexes: Vec<u32> = segments.iter().map(|s| s.index).collect();
        indexes.sort();
        indexes.dedup();
        assert_eq!(indexes.len(), segments.len(), "a file number was taken twice: {segments:?}");
        for s in &segments {
            assert_eq!(s.path, dir.path().join(format!("{:05}.webm", s.index)));
            assert_eq!(s.sha256, sha256_file(&s.path).unwrap(), "{} was overwritten", s.path.display());
        }
        assert_eq!(numbers.next(), *indexes.last().unwrap() + 1);

        // A recorder starting on a directory with files numbers after them.
        let later = SegmentNumbers::new();
        std::fs::write(dir.path().join("00040.webm"), b"earlier").unwrap();
        drop(TrackRecorder::new(dir.path(), "video/VP8", 96, &later, DEFAULT_SEGMENT, |_| {}, || {}).unwrap());
        assert_eq!(later.next(), 41);
    }

    /// A VP8 recorder into `dir` and the segments it reports.
    fn vp8_recorder(dir: &Path) -> (TrackRecorder, Arc<Mutex<Vec<Segment>>>) {
        let segments = Arc::new(Mutex::new(Vec::new()));
        let sink = segments.clone();
        let recorder = TrackRecorder::new(
            dir,
            "video/VP8",
            96,
            &SegmentNumbers::new(),
            DEFAULT_SEGMENT,
            move |s| sink.lock().unwrap().push(s.expect("segment written")),
            || {},
        )
        .unwrap();
        (recorder, segments)
    }

    #[test]
    fn a_recorder_stopped_before_any_frame_leaves_no_segment() {
        let dir = tempfile::tempdir().unwrap();
        let (recorder, segments) = vp8_recorder(dir.path());
        recorder.stop();
        assert!(segments.lock().unwrap().is_empty(), "reported: {:?}", segments.lock().unwrap());
        let files: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().path()).collect();
        assert!(files.is_empty(), "left behind: {files:?}");
    }

    /// A file holding one frame (as when a camera's picture size changes at
    /// its second keyframe) still states how long it lasts. Without
    /// durations on the frames the muxer wrote none and ffprobe said "N/A".
    #[test]
    fn a_segment_of_a_single_frame_has_a_duration() {
        let first_frame = Arc::new(Mutex::new((Vec::<Vec<u8>>::new(), false)));
        let collecting = first_frame.clone();
        let source = SyntheticSource::start(true, 96, 300, 15, 0, move |rtp| {
            let mut frame = collecting.lock().unwrap();
            if !frame.1 {
                frame.0.push(rtp.to_vec());
                // The RTP marker bit ends a VP8 frame.
                frame.1 = rtp[1] & 0x80 != 0;
            }
        })
        .unwrap();
        while !first_frame.lock().unwrap().1 {
            std::thread::sleep(Duration::from_millis(10));
        }
        drop(source);
        let packets = std::mem::take(&mut first_frame.lock().unwrap().0);

        let dir = tempfile::tempdir().unwrap();
        let (recorder, segments) = vp8_recorder(dir.path());
        for packet in packets {
            recorder.push(packet);
        }
        recorder.stop();
        let segments = segments.lock().unwrap().clone();
        assert_eq!(segments.len(), 1, "{segments:?}");
        let probed = std::process::Command::new("ffprobe")
            .args(["-v", "error", "-show_entries", "format=duration", "-of", "default=nw=1:nk=1"])
            .arg(&segments[0].path)
            .output()
            .expect("ffprobe (scripts/test.sh installs it)");
        let text = String::from_utf8_lossy(&probed.stdout);
        let seconds: f64 = text.trim().parse().unwrap_or_else(|_| panic!("ffprobe gave no duration: {text}"));
        assert!((seconds - 1.0 / 30.0).abs() < 0.005, "one frame lasts {seconds} s");
    }

    /// The nice value in a thread's `/proc/…/stat`: "tid (name) state ppid
    /// …", the 19th field.
    fn nice(stat: &str) -> i32 {
        stat[stat.rfind(')').unwrap() + 1..].split_whitespace().nth(16).unwrap().parse().unwrap()
    }

    /// The nice value of each of this process's threads, with its name.
    fn threads() -> Vec<(String, i32)> {
        let mut threads = Vec::new();
        for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
            let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else { continue };
            let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else { continue };
            threads.push((stat[open + 1..close].to_owned(), nice(&stat)));
        }
        threads
    }

    /// A recorder's threads (its jitterbuffer's task and timer, the muxer's
    /// queue) yield to the calls; the thread that starts it keeps its priority.
    #[test]
    fn a_recorders_threads_run_behind_the_calls() {
        let own_nice = || nice(&std::fs::read_to_string("/proc/thread-self/stat").unwrap());
        let before = own_nice();
        let dir = tempfile::tempdir().unwrap();
        let recorder =
            TrackRecorder::new(dir.path(), "video/VP8", 96, &SegmentNumbers::new(), DEFAULT_SEGMENT, |_| {}, || {})
                .unwrap();
        // A task names its thread once it runs there.
        let kinds = ["rtpjitterbuffer", "timer", "queue_video"];
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let recorders = loop {
            let recorders: Vec<_> =
                threads().into_iter().filter(|(name, _)| kinds.iter().any(|k| name.starts_with(k))).collect();
            let all = kinds.iter().all(|k| recorders.iter().any(|(name, _)| name.starts_with(k)));
            if all || std::time::Instant::now() > deadline {
                break recorders;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        for kind in kinds {
            assert!(recorders.iter().any(|(name, _)| name.starts_with(kind)), "no {kind} thread: {recorders:?}");
        }
        assert!(recorders.iter().all(|&(_, nice)| nice == 19), "{recorders:?}");
        assert_eq!(own_nice(), before);
        recorder.stop();
    }

    /// Arrival times that jump back (a busy machine: the jitterbuffer's
    /// clock estimate reset, or a packet stamped late) must not stop the
    /// recording: splitmuxsink refused such a stream at the next cut with
    /// "Queued GOP time is negative" and the track's recording ended.
    #[test]
    fn a_track_whose_times_jump_back_is_still_recorded_whole() {
        for video in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let (recorder, reported) = reporting_recorder(dir.path(), video, Duration::from_secs(1));
            let pt = if video { 96 } else { 111 };
            let feeding = recorder.clone();
            let started = std::time::Instant::now();
            // From 1.5 s on, every packet is stamped 900 ms earlier than it arrived.
            let source = SyntheticSource::start(video, pt, 300, 15, 0, move |rtp| {
                let now = feeding.clock.time().saturating_sub(feeding.base_time);
                let back = if started.elapsed() > Duration::from_millis(1500) { 900 } else { 0 };
                feeding.push_arrived(rtp.to_vec(), now.saturating_sub(gst::ClockTime::from_mseconds(back)));
            })
            .unwrap();
            std::thread::sleep(Duration::from_secs(4));
            drop(source);
            let recorder = Arc::try_unwrap(recorder).expect("the source let go");
            let retimed = recorder.retimed_frames();
            recorder.stop();
            let reported = std::mem::take(&mut *reported.lock().unwrap());
            let failures: Vec<_> = reported.iter().filter_map(|r| r.as_ref().err()).collect();
            assert!(failures.is_empty(), "video {video}: {failures:?}");
            let segments: Vec<Segment> = reported.into_iter().filter_map(Result::ok).collect();
            assert!(segments.len() >= 3, "video {video}: 1 s segments of 4 s: {segments:?}");
            let total: u64 = segments.iter().map(|s| s.duration_ms).sum();
            // (Before, the recording ended at the first cut after the jump, at 1.5 s.)
            assert!(total > 2000, "video {video}: {total} ms of 4 s recorded: {segments:?}");
            assert!(retimed > 0, "video {video}: no frame was re-timed");
        }
    }

    /// A pipeline that fails mid-recording (here: its muxer posts an
    /// error, as on a full disk or a refused stream) is restarted: what the
    /// failed file holds is reported as a segment, the interruption is
    /// reported, and the track goes on in new files numbered after it.
    #[test]
    fn a_failed_pipeline_is_restarted_and_its_gap_reported() {
        let dir = tempfile::tempdir().unwrap();
        let (recorder, reported) = reporting_recorder(dir.path(), true, Duration::from_secs(1));
        let feeding = recorder.clone();
        let source = SyntheticSource::start(true, 96, 300, 15, 0, move |rtp| feeding.push(rtp.to_vec())).unwrap();
        std::thread::sleep(Duration::from_millis(1500));
        let muxing = recorder.pipeline.by_name("sink").unwrap();
        let failure = gst::message::Error::builder(gst::ResourceError::NoSpaceLeft, "the disk is full (a test)")
            .src(&muxing)
            .build();
        assert!(muxing.post_message(failure).is_ok());
        std::thread::sleep(Duration::from_millis(2500));
        drop(source);
        Arc::try_unwrap(recorder).expect("the source let go").stop();

        let reported = std::mem::take(&mut *reported.lock().unwrap());
        let gap = reported.iter().position(|r| r.is_err()).expect("the interruption is reported");
        match &reported[gap] {
            Err(RecorderError::Interrupted { error, resumed: true }) => {
                assert!(error.contains("the disk is full"), "{error}")
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(reported.iter().filter(|r| r.is_err()).count(), 1, "{reported:?}");
        let (before, after) = (&reported[..gap], &reported[gap + 1..]);
        let segments: Vec<&Segment> = reported.iter().filter_map(|r| r.as_ref().ok()).collect();
        // (What the failed file held is reported too, when the muxer had
        // written any of it: on a busy machine it may not have.)
        assert!(before.iter().all(|s| s.is_ok()), "{before:?}");
        assert!(!after.is_empty(), "the track went on in new files: {after:?}");
        for (i, s) in segments.iter().enumerate() {
            assert_eq!(s.index as usize, i, "files are numbered on: {segments:?}");
            assert_eq!(s.sha256, sha256_file(&s.path).unwrap(), "{reported:?}");
            assert!(s.duration_ms > 0, "{s:?}");
        }
        let after_ms: u64 = after.iter().filter_map(|s| s.as_ref().ok()).map(|s| s.duration_ms).sum();
        assert!(after_ms > 1000, "{after_ms} ms recorded in the 2.5 s after the restart: {after:?}");
    }

    #[test]
    fn an_unknown_codec_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let made =
            TrackRecorder::new(dir.path(), "video/H265", 100, &SegmentNumbers::new(), DEFAULT_SEGMENT, |_| {}, || {});
        assert!(matches!(made, Err(RecorderError::Codec(_))));
    }
}
