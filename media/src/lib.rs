//! Witness media: the SFU that carries calls between a customer and an agent.
//!
//! - [`sfu`] is the sans-IO core: rooms (one per call), participants and
//!   their tracks. Inputs in, outputs out, time passed in; every forwarding
//!   decision is made and tested there.
//! - [`server`] is the driver: media threads that own the WebRTC peer
//!   connections (the sans-I/O `rtc` crate), feed their packets and state
//!   changes to the core, and carry out what the core says (forward a
//!   packet, add a track to a subscriber and renegotiate, ask a publisher
//!   for a keyframe).
//! - [`recorder`] writes a track's segments, [`composite`] renders a
//!   recording into one file, and [`layout`] says where both are.
//!
//! Each participant has two peer connections with the server: one it
//! *publishes* on (the browser offers, the server answers; adding a screen
//! share is a new offer on it) and one it *receives* on (the server offers
//! whenever the tracks it should receive change, the browser answers). One
//! offerer per connection means offers never cross ("glare" cannot happen),
//! and renegotiating one direction never disturbs the other.
//!
//! ```
//! use std::time::Instant;
//! use witness_media::sfu::{Input, Output, Sfu};
//! use witness_schemas::{ParticipantRole, TrackKind};
//!
//! let now = Instant::now();
//! let mut sfu = Sfu::<rtc::rtp::Packet>::new(now);
//! for (who, role) in [("customer", ParticipantRole::Customer), ("agent", ParticipantRole::Agent)] {
//!     sfu.handle_input(now, Input::Join { room: "call".into(), participant: who.into(), role }).unwrap();
//! }
//! let publish = Input::Publish {
//!     room: "call".into(), participant: "customer".into(), track: "mic".into(),
//!     kind: TrackKind::Audio, codec: "audio/opus".into(),
//! };
//! sfu.handle_input(now, publish).unwrap();
//! let packet = rtc::rtp::Packet::default();
//! sfu.handle_input(now, Input::Media { room: "call".into(), track: "mic".into(), layer: 0, packet, keyframe: false }).unwrap();
//! let forwarded: Vec<_> = std::iter::from_fn(|| match sfu.poll_output() {
//!     Output::Timeout(_) => None,
//!     other => Some(other),
//! })
//! .filter_map(|o| match o { Output::Transmit { to, .. } => Some(to), _ => None })
//! .collect();
//! assert_eq!(forwarded, ["agent"]);
//! ```

pub mod candidates;
pub mod composite;
pub mod layout;
pub mod loopback;
pub mod recorder;
mod sent;
pub mod server;
pub mod sfu;
