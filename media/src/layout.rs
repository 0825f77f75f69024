//! Where a recording's files are, relative to the recordings directory
//! ([`crate::server::MediaConfig::recordings_dir`]) — the one place that
//! says so; the recorder writes there, the API serves from there, review
//! packages and backups copy from there, and the events name files by
//! these paths (`/`-separated):
//!
//! ```text
//! RECORDING/                  the recording's id
//!   TRACK/00000.webm          a track's segments, numbered from 0 (TRACK: track_dir_name)
//!   TRACK/00001.webm
//!   composite.webm            the rendered composite
//! ```

use std::fmt::Display;

/// The composite's file name, in its recording's directory.
pub const COMPOSITE: &str = "composite.webm";

/// The directory a track's segments go in, under its recording's: the
/// track id with anything but letters, digits and `-` made `_`.
pub fn track_dir_name(track: &str) -> String {
    track.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' }).collect()
}

/// `RECORDING/TRACK`: a track's directory.
pub fn track_dir(recording: impl Display, track: &str) -> String {
    format!("{recording}/{}", track_dir_name(track))
}

/// A segment's file name in its track's directory.
pub fn segment_file_name(index: u32) -> String {
    format!("{index:05}.webm")
}

/// `RECORDING/composite.webm`.
pub fn composite(recording: impl Display) -> String {
    format!("{recording}/{COMPOSITE}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_the_recording_then_the_track_then_the_numbered_segment() {
        assert_eq!(track_dir("r1", "{a b}/c"), "r1/_a_b__c");
        assert_eq!(segment_file_name(7), "00007.webm");
        assert_eq!(segment_file_name(123_456), "123456.webm");
        assert_eq!(composite("r1"), "r1/composite.webm");
    }
}
