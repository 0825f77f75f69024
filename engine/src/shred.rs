//! Crypto-shredding of a session's personal data.
//!
//! Every session has a key of its own (AES-256-GCM, kept in the store's
//! `subject_keys` table, outside the log). When a session event is
//! appended, the string value of every personal field in its payload (the
//! fields [`witness_schemas::PERSONAL_FIELDS`] names: message text,
//! captions, file names, the customer's reference, comments…) is stored
//! encrypted with that key, as `"enc:v1:<base64url(nonce ‖ ciphertext)>"`;
//! the hash chain covers what is stored, the ciphertext. Reads decrypt, so
//! every reader above the store sees the payload exactly as it was written,
//! byte for byte. Erasing the key ([`crate::EventStore::erase_subject`])
//! makes those values unreadable forever: reads give [`ERASED`] in their
//! place, and the log, its hashes and its signed checkpoints stay whole.
//!
//! What is encrypted is the field's JSON string token as written (escapes
//! included), so decryption puts back exactly the original bytes. The
//! ciphertext is bound to its tenant and session (the AEAD's associated
//! data): moved to another session's event it does not decrypt.
//!
//! Events stored before this existed hold their personal fields in clear
//! and cannot be shredded; `witness verify` and the review packages read
//! what is stored ([`crate::EventStore::scan_positions`],
//! [`crate::EventStore::read_stream_stored`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};
use witness_schemas::{StreamId, StreamKind, PERSONAL_FIELDS};

/// How an encrypted value starts.
pub const ENCRYPTED: &str = "enc:v1:";
/// What an erased value reads.
pub const ERASED: &str = "[erased]";

/// Whose key a stream's events use: sessions only.
pub fn subject(stream: &StreamId) -> Option<&str> {
    (stream.kind == StreamKind::Session).then_some(stream.id.as_str())
}

/// A subject's key as stored.
#[derive(Clone)]
pub enum KeyState {
    /// No key yet (no event of the subject was written since keys exist).
    Missing,
    /// The key, ready to use (its AES key schedule made once, when read).
    Live(Arc<LessSafeKey>),
    Erased,
}

impl std::fmt::Debug for KeyState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Missing => "Missing",
            Self::Live(_) => "Live(…)",
            Self::Erased => "Erased",
        })
    }
}

impl KeyState {
    pub(crate) fn live(key: &[u8; 32]) -> Self {
        Self::Live(Arc::new(LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key).expect("a 32-byte AES key"))))
    }

    pub(crate) fn is_missing(&self) -> bool {
        matches!(self, Self::Missing)
    }

    pub(crate) fn from_hex(key: Option<String>) -> Self {
        match key.as_deref().map(hex::decode) {
            None => Self::Erased,
            Some(Ok(bytes)) if bytes.len() == 32 => Self::live(&bytes.try_into().expect("32 bytes")),
            Some(_) => Self::Erased,
        }
    }
}

/// A fresh random key, hex-encoded as stored.
pub(crate) fn new_key_hex() -> String {
    let mut key = [0u8; 32];
    SystemRandom::new().fill(&mut key).expect("the system's random source");
    hex::encode(key)
}

fn aad(tenant: &str, subject: &str) -> Vec<u8> {
    format!("{tenant}/{subject}").into_bytes()
}

/// Calls `f(key, raw)` for every string value of a JSON text (`key`: the
/// member name it is the value of, if any; `raw`: the token's content as
/// written, escapes included); where `f` answers, the token's content is
/// replaced by the answer (which must be valid JSON string content).
/// `None` if nothing changed, or if the text is not JSON (a stored payload
/// always is, unless someone altered the row: `witness verify` names it).
fn rewrite(json: &str, mut f: impl FnMut(Option<&str>, &str) -> Option<String>) -> Option<String> {
    enum Frame {
        Object { expect_key: bool },
        Array,
    }
    let bytes = json.as_bytes();
    let mut stack: Vec<Frame> = Vec::new();
    let mut key: Option<(usize, usize)> = None;
    let mut out: Option<String> = None;
    let mut copied = 0;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'{' => stack.push(Frame::Object { expect_key: true }),
            b'[' => stack.push(Frame::Array),
            b'}' | b']' => _ = stack.pop(),
            b',' => {
                if let Some(Frame::Object { expect_key }) = stack.last_mut() {
                    *expect_key = true;
                }
            }
            b'"' => {
                let start = i + 1;
                let mut end = start;
                while end < bytes.len() && bytes[end] != b'"' {
                    end += if bytes[end] == b'\\' { 2 } else { 1 };
                }
                if end >= bytes.len() {
                    // An unterminated string: not JSON, so not rewritten.
                    return None;
                }
                match stack.last_mut() {
                    Some(Frame::Object { expect_key }) if *expect_key => {
                        *expect_key = false;
                        key = Some((start, end));
                    }
                    frame => {
                        let name = match frame {
                            Some(Frame::Object { .. }) => key.map(|(s, e)| &json[s..e]),
                            _ => None,
                        };
                        if let Some(new) = f(name, &json[start..end]) {
                            let out = out.get_or_insert_with(|| String::with_capacity(json.len() + 64));
                            out.push_str(&json[copied..start]);
                            out.push_str(&new);
                            copied = end;
                        }
                    }
                }
                i = end;
            }
            _ => {}
        }
        i += 1;
    }
    out.map(|mut out| {
        out.push_str(&json[copied..]);
        out
    })
}

/// `payload` with every personal field's string value encrypted for
/// `tenant`'s `subject` under `key` — or replaced by [`ERASED`] when the
/// key is gone (personal data written after erasure is not kept). `None`:
/// no personal field.
pub(crate) fn seal(payload: &str, tenant: &str, subject: &str, key: &KeyState) -> Option<String> {
    let (cipher, aad, rng) = match key {
        KeyState::Live(k) => (Some(k), aad(tenant, subject), SystemRandom::new()),
        _ => (None, vec![], SystemRandom::new()),
    };
    rewrite(payload, |name, raw| {
        if !name.is_some_and(|n| PERSONAL_FIELDS.contains(&n)) {
            return None;
        }
        let Some(cipher) = &cipher else { return Some(ERASED.to_owned()) };
        let mut nonce = [0u8; NONCE_LEN];
        rng.fill(&mut nonce).expect("the system's random source");
        let mut sealed = raw.as_bytes().to_vec();
        cipher
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(&aad), &mut sealed)
            .expect("AES-GCM sealing");
        let mut token = nonce.to_vec();
        token.extend_from_slice(&sealed);
        Some(format!("{ENCRYPTED}{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(token)))
    })
}

/// Whether a stored `payload` holds a personal value in clear (written
/// before keys existed): erasing the key would not erase it.
pub fn has_clear_personal(payload: &str) -> bool {
    let mut clear = false;
    rewrite(payload, |name, raw| {
        if name.is_some_and(|n| PERSONAL_FIELDS.contains(&n)) && !raw.starts_with(ENCRYPTED) && raw != ERASED {
            clear = true;
        }
        None
    });
    clear
}

/// Whether `payload` holds encrypted values (a cheap test before [`open`]).
pub(crate) fn is_sealed(payload: &str) -> bool {
    payload.contains("\"enc:v1:")
}

/// `payload` with every encrypted value decrypted (or [`ERASED`] when the
/// key is gone or the value does not decrypt under it). `None`: nothing
/// was encrypted.
pub(crate) fn open(payload: &str, tenant: &str, subject: &str, key: &KeyState) -> Option<String> {
    let cipher = match key {
        KeyState::Live(k) => Some(k),
        _ => None,
    };
    let aad = aad(tenant, subject);
    rewrite(payload, |_, raw| {
        let token = raw.strip_prefix(ENCRYPTED)?;
        let opened = cipher.as_ref().and_then(|cipher| {
            let mut token = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(token).ok()?;
            if token.len() < NONCE_LEN {
                return None;
            }
            let (nonce, sealed) = token.split_at_mut(NONCE_LEN);
            let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
            let plain = cipher.open_in_place(nonce, Aad::from(&aad), sealed).ok()?;
            std::str::from_utf8(plain).ok().map(str::to_owned)
        });
        Some(opened.unwrap_or_else(|| ERASED.to_owned()))
    })
}

/// Subjects' keys as last read, for a minute: another node's erasure is
/// seen within that time. By tenant, then subject, so that a lookup
/// allocates nothing.
#[derive(Debug, Default)]
pub(crate) struct KeyCache {
    keys: Mutex<Cached>,
}

/// How many entries, and the entries: tenant → subject → (key, read at).
type Cached = (usize, HashMap<String, HashMap<String, (KeyState, Instant)>>);

const KEEP: Duration = Duration::from_secs(60);
const MAX_CACHED: usize = 100_000;

impl KeyCache {
    pub(crate) fn get(&self, tenant: &str, subject: &str) -> Option<KeyState> {
        let keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        let (state, at) = keys.1.get(tenant)?.get(subject)?;
        (at.elapsed() < KEEP).then(|| state.clone())
    }

    pub(crate) fn put(&self, tenant: &str, subject: &str, state: KeyState) {
        let mut keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        if keys.0 >= MAX_CACHED {
            *keys = (0, HashMap::new());
        }
        let fresh = keys.1.entry(tenant.to_owned()).or_default().insert(subject.to_owned(), (state, Instant::now()));
        if fresh.is_none() {
            keys.0 += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static KEY: std::sync::LazyLock<KeyState> = std::sync::LazyLock::new(|| KeyState::live(&[7; 32]));

    #[test]
    fn personal_values_are_encrypted_and_come_back_byte_for_byte() {
        let payload = r#"{"message_id":"m1","content":{"kind":"text","text":"my card \"4242\" é\\n"},"customer_ref":"v-9","n":3,"tags":["text","x"]}"#;
        let sealed = seal(payload, "acme", "s1", &KEY).unwrap();
        assert!(!sealed.contains("4242") && !sealed.contains("v-9"), "{sealed}");
        assert!(sealed.contains(r#""message_id":"m1""#) && sealed.contains(r#""kind":"text""#), "{sealed}");
        assert!(sealed.contains(r#""tags":["text","x"]"#), "array values are not fields: {sealed}");
        assert_eq!(sealed.matches(ENCRYPTED).count(), 2);
        serde_json::from_str::<serde_json::Value>(&sealed).unwrap();
        assert!(is_sealed(&sealed));
        assert_eq!(open(&sealed, "acme", "s1", &KEY).unwrap(), payload);
        // Twice the same text: two different ciphertexts (random nonces).
        assert_ne!(seal(payload, "acme", "s1", &KEY), Some(sealed.clone()));
    }

    #[test]
    fn without_the_key_or_elsewhere_the_values_read_erased() {
        let payload = r#"{"text":"hello","comment":"fine"}"#;
        let sealed = seal(payload, "acme", "s1", &KEY).unwrap();
        let erased = r#"{"text":"[erased]","comment":"[erased]"}"#;
        assert_eq!(open(&sealed, "acme", "s1", &KeyState::Erased).unwrap(), erased);
        assert_eq!(open(&sealed, "acme", "s2", &KEY).unwrap(), erased, "bound to its session");
        assert_eq!(open(&sealed, "globex", "s1", &KEY).unwrap(), erased, "bound to its tenant");
        assert_eq!(open(&sealed, "acme", "s1", &KeyState::live(&[8; 32])).unwrap(), erased);
        // Written after erasure: not kept at all.
        assert_eq!(seal(payload, "acme", "s1", &KeyState::Erased).unwrap(), erased);
    }

    #[test]
    fn payloads_without_personal_fields_are_left_alone() {
        let payload = r#"{"session_id":"s","channel":"web","nested":{"a":[1,{"b":"c"}]}}"#;
        assert_eq!(seal(payload, "acme", "s1", &KEY), None);
        assert_eq!(open(payload, "acme", "s1", &KEY), None);
        assert!(!is_sealed(payload));
    }

    #[test]
    fn an_altered_row_that_is_not_json_is_left_as_it_is() {
        let sealed = seal(r#"{"text":"hello"}"#, "acme", "s1", &KEY).unwrap();
        let cut = &sealed[..sealed.len() - 3];
        assert_eq!(open(cut, "acme", "s1", &KEY), None);
        assert_eq!(open(r#"{"text":"enc:v1:abc\"#, "acme", "s1", &KEY), None);
    }

    #[test]
    fn a_payload_written_before_keys_is_told_apart() {
        let payload = r#"{"text":"hello","n":1}"#;
        assert!(has_clear_personal(payload));
        assert!(!has_clear_personal(&seal(payload, "acme", "s1", &KEY).unwrap()));
        assert!(!has_clear_personal(&seal(payload, "acme", "s1", &KeyState::Erased).unwrap()));
        assert!(!has_clear_personal(r#"{"session_id":"s"}"#));
    }
}
