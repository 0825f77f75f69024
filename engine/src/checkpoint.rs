//! Signed checkpoints: an ed25519 signature over the Merkle root of the event
//! hashes in a range `(from, to]` of the global order.
//!
//! The per-stream hash chain shows that no stream was edited in place; a
//! checkpoint also shows that no event was removed, reordered across streams,
//! or had its whole chain recomputed, since the root was signed. The signing
//! key lives in a file created on first start (`witness serve`); anyone with
//! the public key can check the log.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use ed25519_dalek::{Signature, Signer as _, SigningKey, Verifier as _, VerifyingKey};
use witness_schemas::Cursor;

use crate::chain::merkle_root;
use crate::{EventStore, StoreError};

/// The most events one checkpoint covers; longer stretches get several.
pub const MAX_CHECKPOINT_EVENTS: usize = 100_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub id: i64,
    /// Exclusive start: the previous checkpoint's `to`, or [`Cursor::START`].
    pub from: Cursor,
    /// Inclusive end.
    pub to: Cursor,
    pub event_count: u64,
    pub merkle_root: [u8; 32],
    pub public_key: [u8; 32],
    pub signature: [u8; 64],
    pub created_at: DateTime<Utc>,
}

fn fixed<const N: usize>(name: &str, v: Vec<u8>) -> Result<[u8; N], StoreError> {
    v.try_into().map_err(|v: Vec<u8>| StoreError::CorruptRow {
        position: 0,
        message: format!("checkpoint {name} has {} bytes, not {N}", v.len()),
    })
}

impl Checkpoint {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn from_parts(
        id: i64,
        from: Cursor,
        to: Cursor,
        event_count: u64,
        merkle_root: Vec<u8>,
        public_key: Vec<u8>,
        signature: Vec<u8>,
        created_at: DateTime<Utc>,
    ) -> Result<Self, StoreError> {
        Ok(Self {
            id,
            from,
            to,
            event_count,
            merkle_root: fixed("merkle_root", merkle_root)?,
            public_key: fixed("public_key", public_key)?,
            signature: fixed("signature", signature)?,
            created_at,
        })
    }

    /// The bytes that are signed: a domain tag, the range, the count and the root.
    pub fn signed_message(from: Cursor, to: Cursor, event_count: u64, root: &[u8; 32]) -> Vec<u8> {
        let mut m = b"witness-checkpoint-v1".to_vec();
        for n in [from.commit, from.position, to.commit, to.position, event_count] {
            m.extend_from_slice(&n.to_le_bytes());
        }
        m.extend_from_slice(root);
        m
    }

    /// Whether `key` signed this checkpoint's range, count and root.
    pub fn signature_valid(&self, key: &VerifyingKey) -> bool {
        let message = Self::signed_message(self.from, self.to, self.event_count, &self.merkle_root);
        key.verify(&message, &Signature::from_bytes(&self.signature)).is_ok()
    }
}

/// The checkpoint signing key, kept in a file (hex of the 32-byte seed,
/// mode 0600) with the public key beside it (`.pub`).
#[derive(Debug)]
pub struct CheckpointSigner {
    key: SigningKey,
    path: PathBuf,
}

fn key_error(path: &Path, message: impl ToString) -> StoreError {
    StoreError::Key { path: path.display().to_string(), message: message.to_string() }
}

fn read_hex32(path: &Path) -> Result<[u8; 32], StoreError> {
    let text = std::fs::read_to_string(path).map_err(|e| key_error(path, e))?;
    let bytes = hex::decode(text.trim()).map_err(|e| key_error(path, e))?;
    bytes.try_into().map_err(|_| key_error(path, "expected 32 bytes of hex"))
}

/// The bytes signed for a review package: a domain tag, then its manifest
/// (so that a package signature can never pass for a checkpoint's).
pub fn package_message(manifest: &[u8]) -> Vec<u8> {
    let mut m = b"witness-review-package-v1".to_vec();
    m.extend_from_slice(manifest);
    m
}

/// The public key file that sits beside a signing key file.
pub fn public_key_path(key_path: &Path) -> PathBuf {
    key_path.with_extension("pub")
}

/// Reads a public key file (hex) written by [`CheckpointSigner::load_or_create`].
pub fn read_public_key(path: &Path) -> Result<VerifyingKey, StoreError> {
    VerifyingKey::from_bytes(&read_hex32(path)?).map_err(|e| key_error(path, e))
}

impl CheckpointSigner {
    /// Loads the key at `path`, or creates it (and its `.pub`) if absent.
    pub fn load_or_create(path: &Path) -> Result<Self, StoreError> {
        if path.exists() {
            return Ok(Self { key: SigningKey::from_bytes(&read_hex32(path)?), path: path.to_owned() });
        }
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let key = SigningKey::generate(&mut rand_core::OsRng);
        write_private(path, &hex::encode(key.to_bytes()))?;
        std::fs::write(public_key_path(path), hex::encode(key.verifying_key().to_bytes()) + "\n")?;
        tracing::info!(key = %path.display(), "created checkpoint signing key");
        Ok(Self { key, path: path.to_owned() })
    }

    pub fn verifying_key(&self) -> VerifyingKey {
        self.key.verifying_key()
    }

    /// Signs a review package's manifest (see [`package_message`]).
    pub fn sign_package(&self, manifest: &[u8]) -> [u8; 64] {
        self.key.sign(&package_message(manifest)).to_bytes()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Signs checkpoints over every visible event not yet covered, at most
    /// [`MAX_CHECKPOINT_EVENTS`] each. Returns the new checkpoints.
    pub async fn checkpoint(&self, store: &EventStore) -> Result<Vec<Checkpoint>, StoreError> {
        let mut from = store.checkpoints().await?.last().map_or(Cursor::START, |c| c.to);
        let mut made = Vec::new();
        loop {
            let mut leaves = Vec::new();
            let mut to = from;
            while leaves.len() < MAX_CHECKPOINT_EVENTS {
                let batch = store.read_all(to, (MAX_CHECKPOINT_EVENTS - leaves.len()).min(10_000)).await?;
                let Some(last) = batch.last() else { break };
                to = last.cursor();
                leaves.extend(batch.iter().map(|e| e.hash));
            }
            if leaves.is_empty() {
                return Ok(made);
            }
            let root = merkle_root(&leaves);
            let count = leaves.len() as u64;
            let signature = self.key.sign(&Checkpoint::signed_message(from, to, count, &root));
            let cp = Checkpoint {
                id: 0,
                from,
                to,
                event_count: count,
                merkle_root: root,
                public_key: self.key.verifying_key().to_bytes(),
                signature: signature.to_bytes(),
                created_at: witness_schemas::now(),
            };
            store.insert_checkpoint(&cp).await?;
            made.push(cp);
            from = to;
        }
    }
}

#[cfg(unix)]
fn write_private(path: &Path, text: &str) -> Result<(), StoreError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    f.write_all(text.as_bytes())?;
    f.write_all(b"\n")?;
    Ok(())
}

#[cfg(not(unix))]
fn write_private(path: &Path, text: &str) -> Result<(), StoreError> {
    std::fs::write(path, format!("{text}\n"))?;
    Ok(())
}
