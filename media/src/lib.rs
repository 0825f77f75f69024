//! Witness media: the SFU and the recorder.
//!
//! Nothing lives here yet. This crate will hold the sans-IO SFU core (rooms,
//! participants, tracks; inputs in, transmits / events / timeouts out, time
//! passed in), its thin tokio/WebRTC driver, and the GStreamer recorder
//! (per-track `splitmuxsink` segments hashed into `RecordingSegmentClosed`
//! events, composite dual recordings). See `ARCHITECTURE.md` ("Media").
