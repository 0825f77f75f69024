//! The hash chain and the Merkle tree over it.
//!
//! Each event's `hash = SHA-256(prev_hash ‖ canonical bytes of the envelope
//! without hash)`, where `prev_hash` is the hash of the previous event of the
//! same stream (32 zero bytes for the first). The canonical bytes are a
//! domain tag followed by every envelope field as a length-prefixed UTF-8
//! string, in a fixed order: no JSON re-serialization is involved, so what
//! is hashed is exactly what is stored (the payload text included).
//!
//! The global `position` is part of the hashed envelope, so moving an event
//! to another place in the log breaks its hash too.

use sha2::{Digest, Sha256};
use witness_schemas::RecordedEvent;

/// The `prev_hash` of the first event of a stream.
pub const GENESIS: [u8; 32] = [0; 32];

const EVENT_DOMAIN: &[u8] = b"witness-event-v1";

fn field(h: &mut Sha256, bytes: &[u8]) {
    h.update((bytes.len() as u64).to_le_bytes());
    h.update(bytes);
}

/// Time as hashed: RFC 3339, UTC, microseconds, e.g. `2026-11-25T14:58:32.123456Z`.
pub fn time_text(t: &chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// A file's size and SHA-256 (hex), read through once: how recordings and
/// exported files are fingerprinted.
pub fn sha256_file(path: &std::path::Path) -> std::io::Result<(u64, String)> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let bytes = std::io::copy(&mut file, &mut hasher)?;
    Ok((bytes, hex::encode(hasher.finalize())))
}

/// The hash an event must have, given its envelope (its own `hash` field is
/// ignored).
pub fn event_hash(e: &RecordedEvent) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(e.prev_hash);
    field(&mut h, EVENT_DOMAIN);
    field(&mut h, e.position.to_string().as_bytes());
    field(&mut h, e.event_id.as_hyphenated().to_string().as_bytes());
    field(&mut h, e.tenant_id.as_str().as_bytes());
    field(&mut h, e.stream_id.to_string().as_bytes());
    field(&mut h, e.stream_version.to_string().as_bytes());
    field(&mut h, e.event_type.as_bytes());
    field(&mut h, e.schema_version.to_string().as_bytes());
    field(&mut h, time_text(&e.occurred_at).as_bytes());
    field(&mut h, time_text(&e.recorded_at).as_bytes());
    field(&mut h, e.actor.kind.as_str().as_bytes());
    field(&mut h, e.actor.id.as_deref().unwrap_or("").as_bytes());
    field(&mut h, e.correlation_id.as_hyphenated().to_string().as_bytes());
    field(&mut h, e.causation_id.map(|c| c.as_hyphenated().to_string()).unwrap_or_default().as_bytes());
    field(&mut h, e.payload.as_bytes());
    h.finalize().into()
}

/// The Merkle tree hash of RFC 6962 (Certificate Transparency) over event
/// hashes: leaves are `SHA-256(0x00 ‖ hash)`, inner nodes
/// `SHA-256(0x01 ‖ left ‖ right)`, split at the largest power of two below
/// the leaf count. The empty tree hashes to `SHA-256("")`.
pub fn merkle_root(leaves: &[[u8; 32]]) -> [u8; 32] {
    match leaves {
        [] => Sha256::digest([]).into(),
        [leaf] => {
            let mut h = Sha256::new();
            h.update([0u8]);
            h.update(leaf);
            h.finalize().into()
        }
        _ => {
            let split = leaves.len().next_power_of_two() / 2;
            let (l, r) = leaves.split_at(split);
            let mut h = Sha256::new();
            h.update([1u8]);
            h.update(merkle_root(l));
            h.update(merkle_root(r));
            h.finalize().into()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merkle_root_depends_on_every_leaf_and_their_order() {
        let leaves: Vec<[u8; 32]> = (0..7u8).map(|i| [i; 32]).collect();
        let root = merkle_root(&leaves);
        for i in 0..leaves.len() {
            let mut changed = leaves.clone();
            changed[i][0] ^= 1;
            assert_ne!(merkle_root(&changed), root, "leaf {i} not covered");
        }
        let mut swapped = leaves.clone();
        swapped.swap(2, 3);
        assert_ne!(merkle_root(&swapped), root);
        assert_ne!(merkle_root(&leaves[..6]), root, "a dropped leaf changes the root");
    }

    #[test]
    fn split_is_at_the_largest_power_of_two_below_the_count() {
        // 5 leaves: MTH(0..4) and MTH(4..5)
        let leaves: Vec<[u8; 32]> = (0..5u8).map(|i| [i; 32]).collect();
        let mut h = Sha256::new();
        h.update([1u8]);
        h.update(merkle_root(&leaves[..4]));
        h.update(merkle_root(&leaves[4..]));
        assert_eq!(merkle_root(&leaves), <[u8; 32]>::from(h.finalize()));
    }
}
