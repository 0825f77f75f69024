//! The composite "dual recording": the agent and the customer side by side,
//! the screen share under them while it runs, their audio mixed, and what
//! makes it evidence burned into a band below the pictures — the date and
//! time of every frame in the tenant's zone, the session, the agents (with
//! work numbers) and the dual-recording step being read. Rendered after the
//! call from the per-track segments (so live calls pay nothing for it).
//!
//! ```text
//! splitmuxsrc (a camera's segments) ! decodebin ! videoscale ─▶ compositor ─▶ textoverlay ─▶ vp8enc ─┐
//! splitmuxsrc (a screen's segments) ! decodebin ! videoscale ─┘                                       │
//! splitmuxsrc (a microphone's segments) ! decodebin ! audioconvert ─▶ audiomixer ─▶ opusenc ───────────┴▶ webmmux
//! ```
//!
//! Each picture keeps the size it was sent at (the largest of its segments,
//! at most [`CAMERA_MAX`] for a camera and [`SCREEN_MAX`] for a screen), so
//! a reviewer sees what the agent saw. Each input is offset by when its
//! track started, relative to the first, so lips and voices line up as
//! they did in the call.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, FixedOffset, Utc};
use gstreamer as gst;
use gstreamer::prelude::*;

use crate::recorder::{sha256_file, RecorderError};

/// The largest a camera is shown (width, height); a larger one is scaled down.
pub const CAMERA_MAX: (u32, u32) = (1280, 720);
/// The largest a screen share is shown.
pub const SCREEN_MAX: (u32, u32) = (1920, 1080);
/// The narrowest composite: the band's text must fit.
const MIN_WIDTH: u32 = 640;

/// Where an input goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The agent's camera (left) and microphone.
    Left,
    /// The customer's camera (right) and microphone.
    Right,
    /// A screen share, under the cameras.
    Screen,
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

/// What is burned into every frame, under the pictures.
#[derive(Debug, Clone, PartialEq)]
pub struct Stamp {
    /// The wall time of the composite's start (its earliest input's start).
    pub starts_at: DateTime<Utc>,
    /// The zone the time is shown in, labelled with it (`UTC+08:00`).
    pub utc_offset_minutes: i32,
    /// The lines under the time: the session, the agents.
    pub lines: Vec<String>,
    /// Texts shown for a while, e.g. the dual-recording step being read.
    pub captions: Vec<Caption>,
}

/// A text shown from `from` until `until` into the composite.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caption {
    pub from: Duration,
    pub until: Duration,
    pub text: String,
}

/// Lines of a caption at most: a longer one ends in "…".
const CAPTION_LINES: usize = 2;

impl Stamp {
    /// The band's text `at` into the composite, its lines at most `width`
    /// ems wide.
    pub fn text_at(&self, at: Duration, width: f32) -> String {
        let zone =
            FixedOffset::east_opt(self.utc_offset_minutes * 60).unwrap_or(FixedOffset::east_opt(0).expect("UTC"));
        let now = self.starts_at + chrono::Duration::from_std(at).unwrap_or_default();
        let mut lines = vec![now.with_timezone(&zone).format("%Y-%m-%d %H:%M:%S UTC%:z").to_string()];
        lines.extend(self.lines.iter().cloned());
        if let Some(caption) = self.captions.iter().rev().find(|c| c.from <= at && at < c.until) {
            lines.extend(wrap(&caption.text, width, CAPTION_LINES));
        }
        lines.join("\n")
    }
}

/// `text` cut into at most `max` lines of at most `width` ems (a Chinese
/// character one em, other characters about half); what does not fit
/// ends in "…".
fn wrap(text: &str, width: f32, max: usize) -> Vec<String> {
    let ems = |c: char| if c.is_ascii() { 0.55 } else { 1.0 };
    let mut lines = vec![String::new()];
    let mut used = 0.0;
    for c in text.chars().filter(|c| !c.is_control()) {
        if used + ems(c) > width {
            if lines.len() == max {
                let last = lines.last_mut().expect("one line at least");
                last.pop();
                last.push('…');
                return lines;
            }
            lines.push(String::new());
            used = 0.0;
        }
        lines.last_mut().expect("one line at least").push(c);
        used += ems(c);
    }
    lines
}

/// Where each picture goes on the canvas, and the band under them.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Layout {
    width: u32,
    height: u32,
    /// Each input's place (x, y, width, height); `None` for audio.
    cells: Vec<Option<(i32, i32, u32, u32)>>,
    /// Where the band starts, and its font's size in pixels.
    band_top: u32,
    font_px: u32,
}

/// `(width, height)` scaled down to fit in `max`, keeping its shape; even.
fn fit((width, height): (u32, u32), max: (u32, u32)) -> (u32, u32) {
    let scale = (max.0 as f64 / width.max(1) as f64).min(max.1 as f64 / height.max(1) as f64).min(1.0);
    let even = |v: f64| ((v as u32).max(2) + 1) & !1;
    (even(width as f64 * scale), even(height as f64 * scale))
}

/// Lays out inputs given their sides and picture sizes (`None`: audio):
/// the agent's camera left of the customer's, both at their own size, the
/// screen share under them, the band under everything.
fn layout(inputs: &[(Side, Option<(u32, u32)>)]) -> Layout {
    let sized: Vec<(Side, Option<(u32, u32)>)> = inputs
        .iter()
        .map(|&(side, size)| (side, size.map(|s| fit(s, if side == Side::Screen { SCREEN_MAX } else { CAMERA_MAX }))))
        .collect();
    // Each column as wide and tall as its largest picture.
    let column = |wanted: Side| {
        sized
            .iter()
            .filter(|(side, _)| *side == wanted)
            .filter_map(|(_, s)| *s)
            .fold((0, 0), |(w, h), (a, b)| (w.max(a), h.max(b)))
    };
    let (left, right, screen) = (column(Side::Left), column(Side::Right), column(Side::Screen));
    let cameras = (left.0 + right.0, left.1.max(right.1));
    let width = cameras.0.max(screen.0).max(MIN_WIDTH);
    let font_px = (width / 48).clamp(14, 32);
    let band_top = cameras.1 + screen.1;
    // Time, session, agents and a caption of two lines, with some air.
    let band = font_px * 8;
    let height = (band_top + band + 1) & !1;
    let cells = sized
        .iter()
        .map(|&(side, size)| {
            let (w, h) = size?;
            let x0 = (width - cameras.0) / 2;
            let (x, y) = match side {
                Side::Left => (x0 + (left.0 - w) / 2, (cameras.1 - h) / 2),
                Side::Right => (x0 + left.0 + (right.0 - w) / 2, (cameras.1 - h) / 2),
                Side::Screen => ((width - w) / 2, cameras.1 + (screen.1 - h) / 2),
            };
            Some((x as i32, y as i32, w, h))
        })
        .collect();
    Layout { width, height, cells, band_top, font_px }
}

/// The rendered file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Composite {
    pub path: PathBuf,
    pub bytes: u64,
    pub duration_ms: u64,
    pub sha256: String,
    /// The picture's size, if it has one (a call without video has none).
    pub size: Option<(u32, u32)>,
}

/// Renders `inputs` into `out` (WebM) with `stamp` burned in; `progress`
/// gets the fraction done (0..=1) about twice a second. Blocks until the
/// file is written. A call without video gives a file of sound alone.
pub fn render(
    inputs: &[Input],
    stamp: &Stamp,
    out: &Path,
    expected: Duration,
    mut progress: impl FnMut(f64),
) -> Result<Composite, RecorderError> {
    crate::recorder::init()?;
    for element in ["compositor", "textoverlay", "vp8enc", "audiomixer", "opusenc"] {
        if gst::ElementFactory::find(element).is_none() {
            return Err(RecorderError::Gstreamer(format!(
                "the GStreamer element `{element}` is missing: install gstreamer1.0-plugins-base, -good and gstreamer1.0-x"
            )));
        }
    }
    // Each input with its readable segments; an input with none is left out.
    let inputs: Vec<(&Input, Vec<Segment>)> =
        inputs.iter().map(|i| (i, segments(&i.dir))).filter(|(_, files)| !files.is_empty()).collect();
    let has_video = inputs.iter().any(|(i, _)| i.video);
    let has_audio = inputs.iter().any(|(i, _)| !i.video);
    if !has_video && !has_audio {
        return Err(RecorderError::Gstreamer("nothing to composite: no recorded tracks".into()));
    }
    let placed = layout(
        &inputs
            .iter()
            .map(|(i, files)| {
                let largest = files.iter().filter_map(|s| s.size).max_by_key(|(w, h)| w * h);
                (i.side, if i.video { Some(largest.unwrap_or(CAMERA_MAX)) } else { None })
            })
            .collect::<Vec<_>>(),
    );
    let mut description = String::from("webmmux name=mux ! filesink name=file ");
    if has_video {
        // About 0.07 bits a pixel: faces and screen text stay legible.
        let bitrate = (u64::from(placed.width) * u64::from(placed.height) * 15 * 7 / 100).clamp(300_000, 4_000_000);
        description += &format!(
            "compositor name=mix background=black ! video/x-raw,width={},height={},framerate=15/1 ! videoconvert \
             ! textoverlay name=stamp valignment=top halignment=left line-alignment=left wrap-mode=none \
               auto-resize=false draw-shadow=false draw-outline=false xpad={} ypad={} \
             ! videoconvert ! vp8enc deadline=1 cpu-used=8 target-bitrate={bitrate} ! queue ! mux. ",
            placed.width,
            placed.height,
            placed.font_px,
            placed.band_top + placed.font_px / 2,
        );
    }
    if has_audio {
        description += "audiomixer name=amix ! audioconvert ! audioresample ! opusenc ! queue ! mux. ";
    }
    for (i, (_, cell)) in inputs.iter().zip(&placed.cells).enumerate() {
        match cell {
            Some((_, _, width, height)) => {
                description += &format!(
                    "splitmuxsrc name=src{i} ! decodebin ! videoconvert ! videoscale add-borders=true \
                     ! video/x-raw,width={width},height={height},pixel-aspect-ratio=1/1 ! videorate ! queue name=in{i} ! mix. "
                )
            }
            None => {
                description += &format!(
                    "splitmuxsrc name=src{i} ! decodebin ! audioconvert ! audioresample ! queue name=in{i} ! amix. "
                )
            }
        }
    }
    let pipeline = gst::parse::launch(&description)
        .map_err(|e| RecorderError::Gstreamer(e.to_string()))?
        .downcast::<gst::Pipeline>()
        .map_err(|_| RecorderError::Gstreamer("not a pipeline".into()))?;
    pipeline.by_name("file").expect("named").set_property("location", out.to_string_lossy().as_ref());
    // Give each input its files; place it: its cell of the picture, its
    // start in time.
    for (i, ((input, files), cell)) in inputs.iter().zip(&placed.cells).enumerate() {
        let files: Vec<String> = files.iter().map(|s| s.path.to_string_lossy().into_owned()).collect();
        let src = pipeline.by_name(&format!("src{i}")).expect("named");
        src.connect("format-location", false, move |_| Some(files.to_value()));
        let queue = pipeline.by_name(&format!("in{i}")).expect("named");
        let src = queue.static_pad("src").expect("a queue has a src pad");
        src.set_offset(input.offset.as_nanos() as i64);
        if let (Some((x, y, _, _)), Some(peer)) = (cell, src.peer()) {
            peer.set_property("xpos", x);
            peer.set_property("ypos", y);
        }
    }
    if let Some(overlay) = pipeline.by_name("stamp") {
        overlay.set_property("font-desc", format!("Noto Sans CJK SC, Sans {}px", placed.font_px));
        stamp_frames(&overlay, stamp.clone(), (placed.width - 2 * placed.font_px) as f32 / placed.font_px as f32);
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
        .map(|(i, files)| i.offset.as_millis() as u64 + files.iter().map(|s| s.duration_ms).sum::<u64>())
        .max()
        .unwrap_or(0);
    let size = has_video.then_some((placed.width, placed.height));
    Ok(Composite { path: out.to_owned(), bytes, duration_ms, sha256: sha256_file(out)?, size })
}

/// Sets `overlay`'s text for each frame from its time: the clock moves on
/// every second, captions come and go.
fn stamp_frames(overlay: &gst::Element, stamp: Stamp, width_ems: f32) {
    let pad = overlay.static_pad("video_sink").expect("textoverlay has a video_sink pad");
    let overlay = overlay.downgrade();
    let shown = Mutex::new(String::new());
    pad.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
        if let Some(gst::PadProbeData::Buffer(buffer)) = &info.data {
            if let (Some(pts), Some(overlay)) = (buffer.pts(), overlay.upgrade()) {
                let text = stamp.text_at(Duration::from_nanos(pts.nseconds()), width_ems);
                let mut shown = shown.lock().expect("stamp poisoned");
                if *shown != text {
                    overlay.set_property("text", &text);
                    *shown = text;
                }
            }
        }
        gst::PadProbeReturn::Ok
    });
}

/// A readable segment file.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Segment {
    path: PathBuf,
    duration_ms: u64,
    /// Its picture's size, if it holds video.
    size: Option<(u32, u32)>,
}

/// A track's segment files in `dir`, in order, as GStreamer's discoverer
/// reads them — leaving out any it cannot read or that holds nothing: a
/// segment opened as the recording stopped can be a header without a
/// stream, and `splitmuxsrc` fails the whole track on it.
fn segments(dir: &Path) -> Vec<Segment> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "webm"))
        .collect();
    files.sort();
    files
        .into_iter()
        .filter_map(|path| {
            let info = discover(&path)?;
            let duration_ms = info.duration().map(|d| d.mseconds()).filter(|&ms| ms > 0)?;
            let size = info.video_streams().first().map(|v| (v.width(), v.height())).filter(|&(w, h)| w > 0 && h > 0);
            Some(Segment { path, duration_ms, size })
        })
        .collect()
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

    /// Records `seconds` of synthetic tracks into `root/name-…`: a picture
    /// of `size` if given, and a tone if `audio`.
    fn record(root: &Path, name: &str, side: Side, size: Option<(u32, u32)>, audio: bool, seconds: f64) -> Vec<Input> {
        let mut inputs = Vec::new();
        let tracks = size.map(|s| (Some(s), "cam")).into_iter().chain(audio.then_some((None, "mic")));
        for (pattern, (size, what)) in tracks.enumerate() {
            let dir = root.join(format!("{name}-{what}"));
            let (codec, pt) = if size.is_some() { ("video/VP8", 96) } else { ("audio/opus", 111) };
            let recorder = Arc::new(
                TrackRecorder::new(&dir, codec, pt, &SegmentNumbers::new(), Duration::from_secs(1), |_| {}, || {})
                    .unwrap(),
            );
            let feed = recorder.clone();
            let pattern = pattern as u32 + if side == Side::Left { 0 } else { 1 };
            let source =
                SyntheticSource::start_sized(size, pt, 300, 15, pattern, move |rtp| feed.push(rtp.to_vec())).unwrap();
            inputs.push((dir, size.is_some(), source, recorder));
        }
        std::thread::sleep(Duration::from_secs_f64(seconds));
        inputs
            .into_iter()
            .map(|(dir, video, source, recorder)| {
                drop(source);
                Arc::try_unwrap(recorder).unwrap().stop();
                Input { dir, video, side, offset: Duration::ZERO }
            })
            .collect()
    }

    fn record_side(root: &Path, name: &str, seconds: f64) -> Vec<Input> {
        let side = if name == "agent" { Side::Left } else { Side::Right };
        record(root, name, side, Some((320, 240)), true, seconds)
    }

    fn stamp() -> Stamp {
        Stamp {
            starts_at: "2026-12-07T06:03:20Z".parse().unwrap(),
            utc_offset_minutes: 480,
            lines: vec!["会话 SESSION 4711".into(), "坐席 张三（工号 A1001）".into()],
            captions: vec![Caption {
                from: Duration::from_secs(1),
                until: Duration::from_secs(2),
                text: "风险提示：本产品不保本".into(),
            }],
        }
    }

    #[test]
    fn the_band_says_when_in_the_tenants_zone_what_and_who_and_the_step_while_it_runs() {
        let stamp = stamp();
        let at = |ms| stamp.text_at(Duration::from_millis(ms), 40.0);
        assert_eq!(at(0), "2026-12-07 14:03:20 UTC+08:00\n会话 SESSION 4711\n坐席 张三（工号 A1001）");
        assert_eq!(
            at(1_500),
            format!(
                "2026-12-07 14:03:21 UTC+08:00\n会话 SESSION 4711\n坐席 张三（工号 A1001）\n风险提示：本产品不保本"
            )
        );
        assert!(!at(2_000).contains("风险"), "the caption ends with its step");
        let utc = Stamp { utc_offset_minutes: 0, ..stamp.clone() };
        assert!(utc.text_at(Duration::ZERO, 40.0).starts_with("2026-12-07 06:03:20 UTC+00:00"));
    }

    #[test]
    fn a_long_caption_wraps_into_two_lines_and_ends_in_an_ellipsis() {
        assert_eq!(wrap("一二三四五六", 4.0, 2), ["一二三四", "五六"]);
        assert_eq!(wrap("一二三四五六七八九十", 4.0, 2), ["一二三四", "五六七…"]);
        // Latin letters are about half as wide.
        assert_eq!(wrap("abcdefg", 2.0, 1), ["ab…"]);
        assert_eq!(wrap("", 4.0, 2), [""]);
    }

    #[test]
    fn each_picture_keeps_its_size_the_screen_goes_under_the_cameras_and_the_band_under_all() {
        // An agent's 640×480 camera, a customer's 320×240 phone, a
        // 1024×768 screen share and a microphone.
        let placed = layout(&[
            (Side::Left, Some((640, 480))),
            (Side::Right, Some((320, 240))),
            (Side::Screen, Some((1024, 768))),
            (Side::Left, None),
        ]);
        assert_eq!((placed.width, placed.font_px), (1024, 21));
        // The cameras' row (960 wide) centred, the customer's picture
        // centred in its height.
        assert_eq!(placed.cells[0], Some((32, 0, 640, 480)));
        assert_eq!(placed.cells[1], Some((672, 120, 320, 240)));
        assert_eq!(placed.cells[2], Some((0, 480, 1024, 768)));
        assert_eq!(placed.cells[3], None);
        assert_eq!(placed.band_top, 480 + 768);
        assert_eq!(placed.height, 480 + 768 + 21 * 8);
        // A 4K screen is scaled down to fit, keeping its shape; a single
        // small camera still gets a band wide enough for its text.
        let big = layout(&[(Side::Screen, Some((3840, 2160)))]);
        assert_eq!(big.cells[0], Some((0, 0, 1920, 1080)));
        let small = layout(&[(Side::Right, Some((176, 144)))]);
        assert_eq!((small.width, small.cells[0]), (640, Some((232, 0, 176, 144))));
        assert_eq!(fit((641, 481), (1280, 720)), (642, 482), "even sizes for the encoder");
    }

    #[test]
    fn two_sides_are_rendered_into_one_file_as_long_as_the_call_with_progress() {
        let root = tempfile::tempdir().unwrap();
        let mut inputs = record_side(root.path(), "agent", 2.5);
        inputs.extend(record_side(root.path(), "customer", 2.5));
        let out = root.path().join("composite.webm");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let made =
            render(&inputs, &stamp(), &out, Duration::from_millis(2500), move |p| log.lock().unwrap().push(p)).unwrap();
        assert_eq!(made.sha256, sha256_file(&out).unwrap());
        assert_eq!(made.bytes, std::fs::metadata(&out).unwrap().len());
        let probed = duration_ms(&out).expect("the composite reads back");
        assert!((probed as i64 - 2500).abs() < 700, "composite of 2.5 s is {probed} ms");
        assert_eq!(seen.lock().unwrap().last(), Some(&1.0));
    }

    /// The frame `at` seconds into `file`, cropped to `(x, y, w, h)`, as
    /// Tesseract reads it.
    fn read_back(file: &Path, at: f64, (x, y, w, h): (u32, u32, u32, u32)) -> String {
        let png = std::env::temp_dir().join(format!("composite-band-{at}.png"));
        let ffmpeg = std::process::Command::new("ffmpeg")
            .args(["-v", "error", "-y", "-ss", &at.to_string(), "-i"])
            .arg(file)
            .args(["-frames:v", "1", "-vf", &format!("crop={w}:{h}:{x}:{y},scale=iw*2:ih*2")])
            .arg(&png)
            .status()
            .expect("ffmpeg runs (scripts/deps.sh need_gstreamer installs it)");
        assert!(ffmpeg.success());
        let read = std::process::Command::new("tesseract")
            .arg(&png)
            .args(["-", "-l", "chi_sim+eng", "--psm", "6"])
            .output()
            .expect("tesseract runs (scripts/deps.sh need_ocr installs it)");
        assert!(read.status.success(), "{}", String::from_utf8_lossy(&read.stderr));
        String::from_utf8_lossy(&read.stdout).into_owned()
    }

    #[test]
    fn the_evidence_composite_keeps_each_size_shows_the_screen_and_burns_in_time_session_and_steps() {
        let root = tempfile::tempdir().unwrap();
        // The screen share starts a second after the cameras.
        let screen = std::thread::scope(|s| {
            let screen = s.spawn(|| {
                std::thread::sleep(Duration::from_secs(1));
                record(root.path(), "screen", Side::Screen, Some((800, 600)), false, 1.5)
            });
            let mut inputs = record(root.path(), "agent", Side::Left, Some((640, 480)), true, 3.0);
            inputs.extend(record(root.path(), "customer", Side::Right, Some((320, 240)), true, 3.0));
            let mut screen = screen.join().unwrap();
            screen[0].offset = Duration::from_secs(1);
            inputs.extend(screen);
            inputs
        });
        let out = root.path().join("composite.webm");
        let made = render(&screen, &stamp(), &out, Duration::from_secs(3), |_| {}).unwrap();
        let placed = layout(&[
            (Side::Left, Some((640, 480))),
            (Side::Right, Some((320, 240))),
            (Side::Screen, Some((800, 600))),
        ]);
        assert_eq!(made.size, Some((placed.width, placed.height)));
        let info = discover(&out).expect("the composite reads back");
        let video = &info.video_streams()[0];
        assert_eq!(
            (video.width(), video.height()),
            (960, 480 + 600 + placed.font_px * 8),
            "each picture at its own size"
        );

        let band = (0, placed.band_top, placed.width, placed.height - placed.band_top);
        let early = read_back(&out, 0.5, band);
        assert!(early.contains("2026-12-07 14:03:20"), "the time half a second in: {early:?}");
        assert!(early.contains("4711"), "the session: {early:?}");
        assert!(!early.contains("风险"), "no step yet: {early:?}");
        let during = read_back(&out, 1.5, band);
        assert!(during.contains("14:03:21"), "the time 1.5 s in: {during:?}");
        let squeezed: String = during.chars().filter(|c| !c.is_whitespace()).collect();
        assert!(squeezed.contains("风险提示"), "the step's text as a caption: {during:?}");
        assert!(squeezed.contains("张三"), "the agent's name: {during:?}");
        // The screen share's tile: the test picture (not black) while it runs.
        let frame = |at: f64| {
            let raw = std::process::Command::new("ffmpeg")
                .args(["-v", "error", "-ss", &at.to_string(), "-i"])
                .arg(&out)
                .args([
                    "-frames:v",
                    "1",
                    "-vf",
                    "crop=800:600:80:480,scale=8:6",
                    "-f",
                    "rawvideo",
                    "-pix_fmt",
                    "gray",
                    "-",
                ])
                .output()
                .unwrap();
            raw.stdout.iter().map(|&v| u32::from(v)).sum::<u32>() / raw.stdout.len().max(1) as u32
        };
        assert!(frame(0.5) < 20, "no screen tile before the share starts: {}", frame(0.5));
        assert!(frame(2.0) > 40, "the screen tile while the share runs: {}", frame(2.0));
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
        let mut inputs = record_side(root.path(), "agent", 2.0);
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
        assert!(
            !kept.is_empty() && kept.iter().all(|s| !s.path.ends_with("99999.webm") && s.duration_ms > 0),
            "{kept:?}"
        );

        let out = root.path().join("composite.webm");
        let made = render(&inputs, &stamp(), &out, Duration::from_secs(2), |_| {}).unwrap();
        let probed = duration_ms(&out).expect("the composite reads back");
        assert!((probed as i64 - 2000).abs() < 700, "composite of 2 s is {probed} ms");
        assert!((made.duration_ms as i64 - 2000).abs() < 700, "reported {} ms", made.duration_ms);
    }
}
