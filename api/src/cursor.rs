//! Page cursors that tell nothing of other tenants (issue 27, L6).
//!
//! The log's positions are global: every tenant's events share one
//! numbering, so a position handed to a tenant's staff — or the gap between
//! two of them — would tell how much the other tenants did meanwhile. The
//! routes that page through the log (`/api/events`, `/api/audit`) hand out
//! their place sealed instead: AES-256-GCM under a key derived from the
//! token keys ([`crate::auth::TokenKeys::derived`]), bound to the tenant and
//! to what is paged, so that one tenant's cursor is refused for another's
//! and a forged one is refused. The nonce is synthetic (an HMAC of what is
//! sealed, as in SIV): the same place always seals to the same cursor — a
//! page with nothing new gives back the `from` it was asked for, which is
//! how a reader knows it reached the end — and different places never share
//! a nonce. The pages read the tenant's events alone, so their lengths tell
//! nothing either; the views leave positions out.
//!
//! What stays global: exported evidence (audit exports, review packages)
//! holds the events as stored, positions included, because the hash chain
//! covers them.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use sha2::Sha256;
use witness_schemas::TenantId;

use crate::auth::TokenKeys;

/// How a sealed cursor starts (its version).
const PREFIX: &str = "c1.";

/// What a cursor pages through: a cursor for one is refused by another.
#[derive(Clone, Copy, Debug)]
pub enum Paging {
    /// `GET /api/events`: a log cursor, (commit, position).
    Events,
    /// `GET /api/audit`: an audit trail position.
    Audit,
}

impl Paging {
    fn name(self) -> &'static str {
        match self {
            Paging::Events => "events",
            Paging::Audit => "audit",
        }
    }
}

/// The nonce for `plain` under `aad`: the first bytes of its HMAC under a
/// key of its own.
fn synthetic_nonce(tokens: &TokenKeys, aad: &[u8], plain: &[u8]) -> [u8; NONCE_LEN] {
    let key = tokens.derived("witness-cursor-nonce-v1").swap_remove(0);
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("any key length");
    mac.update(aad);
    mac.update(plain);
    mac.finalize().into_bytes()[..NONCE_LEN].try_into().expect("a MAC is longer than a nonce")
}

fn keys(tokens: &TokenKeys) -> Vec<LessSafeKey> {
    tokens
        .derived("witness-cursor-v1")
        .iter()
        .map(|k| LessSafeKey::new(UnboundKey::new(&AES_256_GCM, k).expect("32-byte key")))
        .collect()
}

fn aad(paging: Paging, tenant: &TenantId) -> Vec<u8> {
    format!("{}|{tenant}", paging.name()).into_bytes()
}

/// `numbers` sealed for `tenant` and `paging`, under the signing key.
pub fn seal(tokens: &TokenKeys, paging: Paging, tenant: &TenantId, numbers: &[u64]) -> String {
    let aad = aad(paging, tenant);
    let mut sealed: Vec<u8> = numbers.iter().flat_map(|n| n.to_be_bytes()).collect();
    let nonce = synthetic_nonce(tokens, &aad, &sealed);
    keys(tokens)[0]
        .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(aad), &mut sealed)
        .expect("AES-GCM sealing");
    let mut token = nonce.to_vec();
    token.extend_from_slice(&sealed);
    format!("{PREFIX}{}", B64.encode(token))
}

/// The numbers a cursor this server sealed for `tenant` and `paging`
/// holds, under any of the token keys; `None` for anything else (another
/// tenant's cursor, another route's, a forged or damaged one, one sealed
/// under a key since dropped).
pub fn open(tokens: &TokenKeys, paging: Paging, tenant: &TenantId, cursor: &str) -> Option<Vec<u64>> {
    let token = B64.decode(cursor.strip_prefix(PREFIX)?).ok()?;
    if token.len() < NONCE_LEN {
        return None;
    }
    let (nonce, sealed) = token.split_at(NONCE_LEN);
    keys(tokens).into_iter().find_map(|key| {
        let mut sealed = sealed.to_vec();
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let plain = key.open_in_place(nonce, Aad::from(aad(paging, tenant)), &mut sealed).ok()?;
        (plain.len() % 8 == 0).then(|| plain.chunks(8).map(|c| u64::from_be_bytes(c.try_into().unwrap())).collect())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant(slug: &str) -> TenantId {
        slug.parse().unwrap()
    }

    #[test]
    fn a_cursor_opens_for_its_tenant_and_paging_only() {
        let keys = TokenKeys::random();
        let sealed = seal(&keys, Paging::Events, &tenant("acme"), &[7, 1_000_000]);
        assert_eq!(open(&keys, Paging::Events, &tenant("acme"), &sealed), Some(vec![7, 1_000_000]));
        assert_eq!(open(&keys, Paging::Events, &tenant("globex"), &sealed), None, "another tenant's");
        assert_eq!(open(&keys, Paging::Audit, &tenant("acme"), &sealed), None, "another route's");
        assert_eq!(open(&TokenKeys::random(), Paging::Events, &tenant("acme"), &sealed), None, "another server's");
        assert_eq!(sealed, seal(&keys, Paging::Events, &tenant("acme"), &[7, 1_000_000]), "one place, one cursor");
        let next = seal(&keys, Paging::Events, &tenant("acme"), &[7, 1_000_001]);
        assert_ne!(sealed[..20], next[..20], "another place, another nonce");
        let mut damaged = sealed.clone().into_bytes();
        let last = damaged.len() - 3;
        damaged[last] = if damaged[last] == b'A' { b'B' } else { b'A' };
        assert_eq!(open(&keys, Paging::Events, &tenant("acme"), std::str::from_utf8(&damaged).unwrap()), None);
        for junk in ["", "0", "12-34", "c1.", "c1.!!", "c1.AAAA"] {
            assert_eq!(open(&keys, Paging::Events, &tenant("acme"), junk), None, "{junk:?}");
        }
    }
}
