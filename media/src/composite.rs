//! The composite "dual recording": the agent and the customer side by side
//! with their audio mixed, rendered after the call from the per-track
//! segments (so live calls pay nothing for it).
//!
//! ```text
//! splitmuxsrc (a track's segments) ! decodebin ! videoscale ──▶ compositor ─▶ vp8enc ──┐
//! splitmuxsrc (a track's segments) ! decodebin ! audioconvert ▶ audiomixer ─▶ opusenc ─┴▶ webmmux ▶ file
//! ```
//!
//! Each input is offset by when its track started, relative to the first,
//! so lips and voices line up as they did in the call.

use std::path::{Path, PathBuf};
use std::time::Duration;

use gstreamer as gst;
use gstreamer::prelude::*;

use crate::recorder::{sha256_file, RecorderError};

/// Each side of the picture.
pub const SIDE_WIDTH: u32 = 320;
pub const SIDE_HEIGHT: u32 = 240;

/// Where an input goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The agent.
    Left,
    /// The customer.
    Right,
}

/// One recorded track to composite.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Input {
    /// The directory holding the track's segments (`00000.webm`, …).
    pub dir: PathBuf,
    pub video: bool,
    pub side: Side,
    /// When the track started, after the earliest input.
    pub offset: Duration,
}

/// The rendered file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Composite {
    pub path: PathBuf,
    pub bytes: u64,
    pub duration_ms: u64,
    pub sha256: String,
}

/// Renders `inputs` into `out` (WebM); `progress` gets the fraction done
/// (0..=1) about twice a second. Blocks until the file is written.
pub fn render(
    inputs: &[Input],
    out: &Path,
    expected: Duration,
    mut progress: impl FnMut(f64),
) -> Result<Composite, RecorderError> {
    crate::recorder::init()?;
    // Each input with its readable segments; an input with none is left out.
    let inputs: Vec<(&Input, Vec<(PathBuf, u64)>)> =
        inputs.iter().map(|i| (i, segments(&i.dir))).filter(|(_, files)| !files.is_empty()).collect();
    let has_video = inputs.iter().any(|(i, _)| i.video);
    let has_audio = inputs.iter().any(|(i, _)| !i.video);
    if !has_video && !has_audio {
        return Err(RecorderError::Gstreamer("nothing to composite: no recorded tracks".into()));
    }
    let mut description = String::from("webmmux name=mux ! filesink name=file ");
    if has_video {
        description += &format!(
            "compositor name=mix background=black ! video/x-raw,width={},height={SIDE_HEIGHT},framerate=15/1 \
             ! videoconvert ! vp8enc deadline=1 cpu-used=8 target-bitrate=600000 ! queue ! mux. ",
            SIDE_WIDTH * 2
        );
    }
    if has_audio {
        description += "audiomixer name=amix ! audioconvert ! audioresample ! opusenc ! queue ! mux. ";
    }
    for (i, (input, _)) in inputs.iter().enumerate() {
        if input.video {
            description += &format!(
                "splitmuxsrc name=src{i} ! decodebin ! videoconvert ! videoscale \
                 ! video/x-raw,width={SIDE_WIDTH},height={SIDE_HEIGHT} ! videorate ! queue name=in{i} ! mix. "
            );
        } else {
            description += &format!(
                "splitmuxsrc name=src{i} ! decodebin ! audioconvert ! audioresample ! queue name=in{i} ! amix. "
            );
        }
    }
    let pipeline = gst::parse::launch(&description)
        .map_err(|e| RecorderError::Gstreamer(e.to_string()))?
        .downcast::<gst::Pipeline>()
        .map_err(|_| RecorderError::Gstreamer("not a pipeline".into()))?;
    pipeline.by_name("file").expect("named").set_property("location", out.to_string_lossy().as_ref());
    // Give each input its files; place it: its side of the picture, its
    // start in time.
    for (i, (input, files)) in inputs.iter().enumerate() {
        let files: Vec<String> = files.iter().map(|(path, _)| path.to_string_lossy().into_owned()).collect();
        let src = pipeline.by_name(&format!("src{i}")).expect("named");
        src.connect("format-location", false, move |_| Some(files.to_value()));
        let queue = pipeline.by_name(&format!("in{i}")).expect("named");
        let src = queue.static_pad("src").expect("a queue has a src pad");
        src.set_offset(input.offset.as_nanos() as i64);
        if input.video {
            if let Some(peer) = src.peer() {
                let x = if input.side == Side::Left { 0 } else { SIDE_WIDTH as i32 };
                peer.set_property("xpos", x);
            }
        }
    }
    if let Some(parent) = out.parent() {
        std::fs::create_dir_all(parent).map_err(|e| RecorderError::Io(parent.to_owned(), e))?;
    }
    pipeline.set_state(gst::State::Playing).map_err(|e| RecorderError::Gstreamer(e.to_string()))?;
    let bus = pipeline.bus().expect("a pipeline has a bus");
    let result = loop {
        let message = bus
            .timed_pop_filtered(gst::ClockTime::from_mseconds(500), &[gst::MessageType::Eos, gst::MessageType::Error]);
        match message.as_ref().map(|m| m.view()) {
            Some(gst::MessageView::Eos(_)) => break Ok(()),
            Some(gst::MessageView::Error(e)) => {
                break Err(RecorderError::Gstreamer(format!("{} ({:?})", e.error(), e.debug())));
            }
            _ => {
                if let Some(position) = pipeline.query_position::<gst::ClockTime>() {
                    let done = position.nseconds() as f64 / expected.as_nanos().max(1) as f64;
                    progress(done.min(1.0));
                }
            }
        }
    };
    let _ = pipeline.set_state(gst::State::Null);
    result?;
    progress(1.0);
    let bytes = std::fs::metadata(out).map_err(|e| RecorderError::Io(out.to_owned(), e))?.len();
    let duration_ms = inputs
        .iter()
        .map(|(i, files)| i.offset.as_millis() as u64 + files.iter().map(|(_, ms)| ms).sum::<u64>())
        .max()
        .unwrap_or(0);
    Ok(Composite { path: out.to_owned(), bytes, duration_ms, sha256: sha256_file(out)? })
}

/// A track's segment files in `dir`, in order, each with its duration by
/// GStreamer's discoverer — leaving out any it cannot read or that holds
/// nothing: a segment opened as the recording stopped can be a header
/// without a stream, and `splitmuxsrc` fails the whole track on it.
fn segments(dir: &Path) -> Vec<(PathBuf, u64)> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "webm"))
        .collect();
    files.sort();
    files.into_iter().filter_map(|p| duration_ms(&p).filter(|&ms| ms > 0).map(|ms| (p, ms))).collect()
}

/// A media file's duration by GStreamer's discoverer, if it can be read.
pub fn duration_ms(path: &Path) -> Option<u64> {
    discover(path)?.duration().map(|d| d.mseconds())
}

/// What GStreamer's discoverer reads of a media file, if it can.
pub fn discover(path: &Path) -> Option<gstreamer_pbutils::DiscovererInfo> {
    crate::recorder::init().ok()?;
    let discoverer = gstreamer_pbutils::Discoverer::new(gst::ClockTime::from_seconds(10)).ok()?;
    // A file URI needs an absolute path (the server's recordings directory
    // is relative by default).
    let uri = gst::glib::filename_to_uri(std::path::absolute(path).ok()?, None).ok()?;
    discoverer.discover_uri(&uri).ok()
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::recorder::{SegmentNumbers, SyntheticSource, TrackRecorder};

    /// Records `seconds` of synthetic video and audio for one side.
    fn record_side(root: &Path, name: &str, pattern: u32, seconds: f64) -> Vec<Input> {
        let mut inputs = Vec::new();
        for video in [true, false] {
            let dir = root.join(format!("{name}-{}", if video { "cam" } else { "mic" }));
            let (codec, pt) = if video { ("video/VP8", 96) } else { ("audio/opus", 111) };
            let recorder = Arc::new(
                TrackRecorder::new(&dir, codec, pt, &SegmentNumbers::new(), Duration::from_secs(1), |_| {}, || {})
                    .unwrap(),
            );
            let feed = recorder.clone();
            let source =
                SyntheticSource::start(video, pt, 300, 15, pattern, move |rtp| feed.push(rtp.to_vec())).unwrap();
            inputs.push((dir, video, source, recorder));
        }
        std::thread::sleep(Duration::from_secs_f64(seconds));
        inputs
            .into_iter()
            .map(|(dir, video, source, recorder)| {
                drop(source);
                Arc::try_unwrap(recorder).unwrap().stop();
                let side = if name == "agent" { Side::Left } else { Side::Right };
                Input { dir, video, side, offset: Duration::ZERO }
            })
            .collect()
    }

    #[test]
    fn two_sides_are_rendered_into_one_file_as_long_as_the_call_with_progress() {
        let root = tempfile::tempdir().unwrap();
        let mut inputs = record_side(root.path(), "agent", 0, 2.5);
        inputs.extend(record_side(root.path(), "customer", 1, 2.5));
        let out = root.path().join("composite.webm");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let made = render(&inputs, &out, Duration::from_millis(2500), move |p| log.lock().unwrap().push(p)).unwrap();
        assert_eq!(made.sha256, sha256_file(&out).unwrap());
        assert_eq!(made.bytes, std::fs::metadata(&out).unwrap().len());
        let probed = duration_ms(&out).expect("the composite reads back");
        assert!((probed as i64 - 2500).abs() < 700, "composite of 2.5 s is {probed} ms");
        assert_eq!(seen.lock().unwrap().last(), Some(&1.0));
    }

    /// `path` relative to the working directory, as the server's
    /// recordings directory is by default.
    fn relative(path: &Path) -> PathBuf {
        let depth = std::env::current_dir().unwrap().components().count() - 1;
        let up: PathBuf = std::iter::repeat_n("..", depth).collect();
        up.join(path.strip_prefix("/").unwrap())
    }

    #[test]
    fn a_segment_without_a_stream_is_left_out_not_fatal() {
        let root = tempfile::tempdir().unwrap();
        let mut inputs = record_side(root.path(), "agent", 0, 2.0);
        for input in &mut inputs {
            input.dir = relative(&input.dir);
            assert!(input.dir.is_relative() && input.dir.is_dir());
        }
        // What a recorder stopped just after opening a segment can leave.
        for input in &inputs {
            std::fs::write(input.dir.join("99999.webm"), b"").unwrap();
        }
        // And a track whose only segment is such a file.
        let empty = root.path().join("customer-cam");
        std::fs::create_dir_all(&empty).unwrap();
        std::fs::write(empty.join("00000.webm"), b"").unwrap();
        inputs.push(Input { dir: empty.clone(), video: true, side: Side::Right, offset: Duration::ZERO });
        assert!(segments(&empty).is_empty());
        let kept = segments(&inputs[0].dir);
        assert!(!kept.is_empty() && kept.iter().all(|(p, ms)| !p.ends_with("99999.webm") && *ms > 0), "{kept:?}");

        let out = root.path().join("composite.webm");
        let made = render(&inputs, &out, Duration::from_secs(2), |_| {}).unwrap();
        let probed = duration_ms(&out).expect("the composite reads back");
        assert!((probed as i64 - 2000).abs() < 700, "composite of 2 s is {probed} ms");
        assert!((made.duration_ms as i64 - 2000).abs() < 700, "reported {} ms", made.duration_ms);
    }
}
