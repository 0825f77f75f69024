//! Who is calling: signed bearer tokens, password hashes, role checks.
//!
//! A token is `v1.<claims>.<mac>`: the claims as base64url JSON and an
//! HMAC-SHA-256 over `v1.<claims>` with the server's token key. Tokens are
//! short-lived ([`TokenKeys::staff_ttl`], [`TokenKeys::visitor_ttl`]) and
//! carry the tenant and role, so that a request is authorised without a
//! database read. A visitor (customer) token also carries its channel.
//!
//! Tokens travel in the `Authorization` header only, never in a URL (where
//! browser history and proxy logs keep them). What a browser loads without
//! headers — an `<img>`, a `<video>`, a download — gets a *link* instead
//! (`POST /api/links`): `l1.<body>.<mac>` in `?link=`, good for one path
//! and [`LINK_TTL`], carrying the same claims, so the route checks the
//! caller as it would for the token. A link is never a token: its MAC
//! covers its own prefix.

use std::path::Path;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::StatusCode;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use chrono::{DateTime, Duration, Utc};
use hmac::{Hmac, Mac};
use rand_core::{OsRng, RngCore};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use witness_schemas::{Actor, ActorKind, Channel, Role, TenantId};

use crate::{ApiError, AppState};
use witness_app::credentials::hash_password;
use witness_app::session::Acting;

/// What a token says about its bearer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Claims {
    /// Tenant.
    pub t: TenantId,
    /// Subject: a user id, or a visitor id (`visitor-…`) for customers.
    pub s: String,
    /// Role.
    pub r: Role,
    /// The channel a visitor came in on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub c: Option<Channel>,
    /// Expiry, Unix seconds.
    pub e: i64,
    /// Issued at, Unix milliseconds (set by [`TokenKeys::issue`]): a
    /// sign-out refuses the user's tokens issued up to its time.
    #[serde(default)]
    pub i: i64,
}

impl Claims {
    pub fn actor(&self) -> Actor {
        let kind = match self.r {
            Role::Customer => ActorKind::Customer,
            Role::Agent => ActorKind::Agent,
            Role::Supervisor => ActorKind::Supervisor,
            Role::Compliance => ActorKind::Compliance,
            Role::Admin => ActorKind::Admin,
        };
        Actor::new(kind, self.s.clone())
    }

    /// The caller's user id (staff only; visitors have none).
    pub fn user_id(&self) -> Result<witness_schemas::UserId, ApiError> {
        Ok(Acting::user_id(self)?)
    }

    /// Refuses unless the caller has one of `roles`.
    pub fn require(&self, roles: &[Role]) -> Result<(), ApiError> {
        Ok(Acting::require(self, roles)?)
    }
}

/// A caller acts in the application layer as their token says.
impl Acting for Claims {
    fn tenant(&self) -> &TenantId {
        &self.t
    }

    fn role(&self) -> Role {
        self.r
    }

    fn subject(&self) -> &str {
        &self.s
    }

    fn actor(&self) -> Actor {
        Claims::actor(self)
    }
}

/// The token keys and lifetimes. The first key signs; every key verifies,
/// so that after a rotation ([`TokenKeys::rotate`]) the tokens signed with
/// the previous key stay good until they expire. Each key is known by its
/// id, the first 8 hex digits of its SHA-256, which a token names:
/// `v2.<kid>.<claims>.<mac>` (a link: `l2.…`).
#[derive(Clone)]
pub struct TokenKeys {
    /// (id, key), the signing key first.
    keys: Vec<(String, [u8; 32])>,
    pub staff_ttl: Duration,
    pub visitor_ttl: Duration,
}

impl std::fmt::Debug for TokenKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ids: Vec<&str> = self.keys.iter().map(|(id, _)| id.as_str()).collect();
        f.debug_struct("TokenKeys").field("ids", &ids).field("staff_ttl", &self.staff_ttl).finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("token key file {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("token key file {path} must hold one key of 64 hex digits a line (the signing key first)")]
    Malformed { path: String },
}

/// How long a link (see the module docs) is good for: long enough to
/// watch a recording, short enough that a copied URL soon stops working.
pub const LINK_TTL: Duration = Duration::minutes(15);

/// Keys a rotation keeps besides the new one: tokens live at most a day,
/// and rotations are rarer than that.
const KEPT_AFTER_ROTATION: usize = 1;

/// A link's body: whose it is, for which path, until when.
#[derive(Serialize, Deserialize)]
struct LinkBody {
    c: Claims,
    p: String,
    e: i64,
}

fn key_id(key: &[u8; 32]) -> String {
    use sha2::Digest;
    hex::encode(&Sha256::digest(key)[..4])
}

fn random_key() -> [u8; 32] {
    let mut key = [0; 32];
    OsRng.fill_bytes(&mut key);
    key
}

impl TokenKeys {
    pub fn new(key: [u8; 32]) -> Self {
        Self::with_keys(vec![key])
    }

    fn with_keys(keys: Vec<[u8; 32]>) -> Self {
        let keys = keys.into_iter().map(|k| (key_id(&k), k)).collect();
        Self { keys, staff_ttl: Duration::hours(8), visitor_ttl: Duration::hours(24) }
    }

    /// A fresh random key (tests, or a server that may forget its tokens).
    pub fn random() -> Self {
        Self::new(random_key())
    }

    /// The signing key's id.
    pub fn key_id(&self) -> &str {
        &self.keys[0].0
    }

    fn read(path: &Path) -> Result<Option<Vec<[u8; 32]>>, KeyError> {
        let malformed = || KeyError::Malformed { path: path.display().to_string() };
        match std::fs::read_to_string(path) {
            Ok(text) => {
                let keys = text
                    .lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .map(|l| hex::decode(l).ok().and_then(|b| <[u8; 32]>::try_from(b).ok()).ok_or_else(malformed))
                    .collect::<Result<Vec<_>, _>>()?;
                if keys.is_empty() {
                    return Err(malformed());
                }
                Ok(Some(keys))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(KeyError::Io { path: path.display().to_string(), source }),
        }
    }

    fn write(path: &Path, keys: &[[u8; 32]]) -> Result<(), KeyError> {
        let io = |source| KeyError::Io { path: path.display().to_string(), source };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let text: String = keys.iter().map(|k| hex::encode(k) + "\n").collect();
        // Through a new file renamed into place: never half a key file.
        let tmp = path.with_extension("new");
        let _ = std::fs::remove_file(&tmp);
        write_private(&tmp, &text).map_err(io)?;
        std::fs::rename(&tmp, path).map_err(io)
    }

    /// Loads the keys at `path`, creating the file (mode 0600) with one key
    /// on first use, so that tokens survive a restart.
    pub fn load_or_create(path: &Path) -> Result<Self, KeyError> {
        match Self::read(path)? {
            Some(keys) => Ok(Self::with_keys(keys)),
            None => {
                let key = random_key();
                Self::write(path, &[key])?;
                Ok(Self::new(key))
            }
        }
    }

    /// Puts a new signing key first in the file at `path`, keeping the
    /// previous one to verify the tokens it signed until they expire (older
    /// ones are dropped). A running server takes it at its next start.
    /// Returns the new key's id.
    pub fn rotate(path: &Path) -> Result<String, KeyError> {
        let mut keys = Self::read(path)?.unwrap_or_default();
        keys.truncate(KEPT_AFTER_ROTATION);
        let key = random_key();
        keys.insert(0, key);
        Self::write(path, &keys)?;
        Ok(key_id(&key))
    }

    fn mac(key: &[u8; 32], data: &[u8]) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("any key length");
        mac.update(data);
        mac
    }

    /// `kind.<kid>.<payload as base64url>.<mac>`, signed with the first key.
    fn sign(&self, kind: &str, payload: &[u8]) -> String {
        let (id, key) = &self.keys[0];
        let body = format!("{kind}.{id}.{}", B64.encode(payload));
        let mac = B64.encode(Self::mac(key, body.as_bytes()).finalize().into_bytes());
        format!("{body}.{mac}")
    }

    /// The payload of a `kind` token signed by one of the keys: the key its
    /// id names, or, for a token from before key ids (`v1.`/`l1.`: no id),
    /// any key.
    fn open(&self, kind: &str, legacy: &str, token: &str) -> Option<Vec<u8>> {
        let (body, mac) = token.rsplit_once('.')?;
        let mac = B64.decode(mac).ok()?;
        let (payload, keys): (&str, Vec<&[u8; 32]>) = if let Some(rest) = body.strip_prefix(kind) {
            let (id, payload) = rest.strip_prefix('.')?.split_once('.')?;
            (payload, self.keys.iter().filter(|(k, _)| k == id).map(|(_, key)| key).collect())
        } else {
            let payload = body.strip_prefix(legacy)?.strip_prefix('.')?;
            (payload, self.keys.iter().map(|(_, key)| key).collect())
        };
        keys.into_iter().find(|key| Self::mac(key, body.as_bytes()).verify_slice(&mac).is_ok())?;
        B64.decode(payload).ok()
    }

    /// A key for another `purpose` derived from each token key, the signing
    /// key's first: HMAC-SHA-256(key, purpose). What seals page cursors
    /// ([`crate::cursor`]), so that they rotate with the tokens and every
    /// node sharing the key file opens them.
    pub fn derived(&self, purpose: &str) -> Vec<[u8; 32]> {
        self.keys.iter().map(|(_, key)| Self::mac(key, purpose.as_bytes()).finalize().into_bytes().into()).collect()
    }

    /// A token for `claims` (its `e` is set from the role's lifetime).
    pub fn issue(&self, mut claims: Claims, now: DateTime<Utc>) -> String {
        let ttl = if claims.r == Role::Customer { self.visitor_ttl } else { self.staff_ttl };
        claims.e = (now + ttl).timestamp();
        claims.i = now.timestamp_millis();
        self.sign("v2", &serde_json::to_vec(&claims).expect("claims serialise"))
    }

    /// A link for `claims` (a verified token's) to `path` alone, good for
    /// [`LINK_TTL`] or until the token expires, whichever is first.
    pub fn link(&self, claims: &Claims, path: &str, now: DateTime<Utc>) -> String {
        let e = (now + LINK_TTL).timestamp().min(claims.e);
        let body = LinkBody { c: claims.clone(), p: path.to_owned(), e };
        self.sign("l2", &serde_json::to_vec(&body).expect("links serialise"))
    }

    /// The claims of a valid, unexpired link to `path`.
    pub fn verify_link(&self, link: &str, path: &str, now: DateTime<Utc>) -> Result<Claims, ApiError> {
        let invalid = || ApiError::new(StatusCode::UNAUTHORIZED, refusal!("bad_link", "invalid link"));
        let body = self.open("l2", "l1", link).ok_or_else(invalid)?;
        let body: LinkBody = serde_json::from_slice(&body).map_err(|_| invalid())?;
        if body.p != path {
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                refusal!("link_elsewhere", "this link is for another file"),
            ));
        }
        if body.e <= now.timestamp() {
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                refusal!("link_expired", "link expired: open the file again"),
            ));
        }
        Ok(body.c)
    }

    /// The claims of a valid, unexpired token.
    pub fn verify(&self, token: &str, now: DateTime<Utc>) -> Result<Claims, ApiError> {
        let invalid = || ApiError::new(StatusCode::UNAUTHORIZED, refusal!("bad_token", "invalid token"));
        let claims = self.open("v2", "v1", token).ok_or_else(invalid)?;
        let claims: Claims = serde_json::from_slice(&claims).map_err(|_| invalid())?;
        if claims.e <= now.timestamp() {
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                refusal!("token_expired", "token expired: log in again"),
            ));
        }
        Ok(claims)
    }
}

#[cfg(unix)]
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?.write_all(text.as_bytes())
}

#[cfg(not(unix))]
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    std::fs::write(path, text)
}

/// A hash no password matches, with the parameters of real ones: checked
/// against when the tenant, login or credential does not exist, so that a
/// wrong login takes as long as a wrong password (issue 27, M4).
pub fn decoy_hash() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| hash_password(&hex::encode(random_key())))
}

/// Which users' tokens are refused up to when (issue 27, L1): what this
/// node learnt from the tenant directory the first time it saw each user,
/// kept up to date by every `UserTokensRevoked` the live feed brings, on
/// whichever node it was written.
#[derive(Debug, Default)]
pub struct Revocations(std::sync::RwLock<std::collections::HashMap<witness_schemas::UserId, Option<i64>>>);

impl Revocations {
    /// Refuses (401) a staff token issued up to its user's last sign-out or
    /// revocation. Visitors' tokens are not revoked (a visitor has no account).
    pub async fn check(&self, store: &witness_engine::EventStore, claims: &Claims) -> Result<(), ApiError> {
        if claims.r == Role::Customer {
            return Ok(());
        }
        let user = claims.user_id()?;
        let known = self.0.read().expect("revocations").get(&user).copied();
        let before = match known {
            Some(before) => before,
            None => {
                let directory = witness_app::tenant::directory(store, &claims.t).await?;
                let before = directory.user(user).and_then(|u| u.revoked_before).map(|t| t.timestamp_millis());
                self.0.write().expect("revocations").entry(user).or_insert(before);
                before
            }
        };
        if before.is_some_and(|before| claims.i <= before) {
            return Err(ApiError::new(StatusCode::UNAUTHORIZED, refusal!("signed_out", "signed out: log in again")));
        }
        Ok(())
    }

    /// Takes in a revocation (from the feed, or the route that wrote it).
    pub fn note(&self, revoked: &witness_schemas::UserTokensRevoked) {
        let mut known = self.0.write().expect("revocations");
        let before = known.entry(revoked.user_id).or_insert(None);
        *before = (*before).max(Some(revoked.before.timestamp_millis()));
    }

    /// Forgets everything (the feed lagged and may have missed some): each
    /// user is looked up again.
    pub fn forget(&self) {
        self.0.write().expect("revocations").clear();
    }
}

/// The authenticated caller of a route: `Authorization: Bearer TOKEN`, or
/// `?link=LINK` for the one path a link is for (see the module docs). A
/// token its user has since signed out of is refused.
#[derive(Debug, Clone)]
pub struct Caller(pub Claims);

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let header = parts.headers.get(axum::http::header::AUTHORIZATION).and_then(|v| v.to_str().ok());
        let param = |name: &str| crate::query_value(parts.uri.query(), name).map(str::to_owned);
        let claims = if let Some(value) = header {
            let token = value.strip_prefix("Bearer ").ok_or_else(|| {
                ApiError::new(StatusCode::UNAUTHORIZED, refusal!("bearer_only", "use `Authorization: Bearer TOKEN`"))
            })?;
            state.keys.verify(token, Utc::now())?
        } else if let Some(link) = param("link") {
            state.keys.verify_link(&link, parts.uri.path(), Utc::now())?
        } else if param("token").is_some() {
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                refusal!(
                    "token_in_url",
                    "a token is never taken from a URL: send `Authorization: Bearer TOKEN`, or open files with a link \
                     from POST /api/links"
                ),
            ));
        } else {
            return Err(ApiError::new(StatusCode::UNAUTHORIZED, refusal!("no_token", "no token: log in first")));
        };
        state.revocations.check(&state.store, &claims).await?;
        crate::embed::same_tenant(parts.extensions.get(), &claims.t)?;
        Ok(Caller(claims))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(role: Role) -> Claims {
        Claims { t: "acme".parse().unwrap(), s: "u1".into(), r: role, c: None, e: 0, i: 0 }
    }

    #[test]
    fn a_token_round_trips_until_it_expires() {
        let keys = TokenKeys::random();
        let now = Utc::now();
        let token = keys.issue(claims(Role::Agent), now);
        let back = keys.verify(&token, now).unwrap();
        assert_eq!((back.s.as_str(), back.r), ("u1", Role::Agent));
        let late = now + keys.staff_ttl + Duration::seconds(1);
        assert_eq!(keys.verify(&token, late).unwrap_err().status(), StatusCode::UNAUTHORIZED);
    }

    #[test]
    fn a_token_with_altered_claims_or_from_another_key_is_refused() {
        let keys = TokenKeys::random();
        let now = Utc::now();
        let token = keys.issue(claims(Role::Agent), now);
        let forged_claims = B64.encode(serde_json::to_vec(&claims(Role::Admin)).unwrap());
        let (_, mac) = token.rsplit_once('.').unwrap();
        let kid = keys.key_id();
        for bad in [
            format!("v1.{forged_claims}.{mac}"),
            format!("v2.{kid}.{forged_claims}.{mac}"),
            TokenKeys::random().issue(claims(Role::Agent), now),
            "x".into(),
            token.replacen(kid, "00000000", 1),
        ] {
            assert!(keys.verify(&bad, now).is_err(), "{bad}");
        }
        // A link is not a token, nor a token a link.
        let link = keys.link(&keys.verify(&token, now).unwrap(), "/api/uploads/x", now);
        assert!(keys.verify(&link, now).is_err());
        assert!(keys.verify_link(&token, "/api/uploads/x", now).is_err());
        assert!(keys.verify_link(&link, "/api/uploads/x", now).is_ok());
        assert!(keys.verify_link(&link, "/api/uploads/y", now).is_err(), "one path only");
        assert!(keys.verify_link(&link, "/api/uploads/x", now + LINK_TTL + Duration::seconds(1)).is_err());
    }

    #[test]
    fn a_rotated_key_signs_while_the_previous_one_still_verifies() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token.key");
        let first = TokenKeys::load_or_create(&path).unwrap();
        let now = Utc::now();
        let old = first.issue(claims(Role::Agent), now);
        // A token from before key ids: `v1.<claims>.<mac>` with the key itself.
        let body = format!("v1.{}", B64.encode(serde_json::to_vec(&first.verify(&old, now).unwrap()).unwrap()));
        let legacy =
            format!("{body}.{}", B64.encode(TokenKeys::mac(&first.keys[0].1, body.as_bytes()).finalize().into_bytes()));
        let id = TokenKeys::rotate(&path).unwrap();
        let second = TokenKeys::load_or_create(&path).unwrap();
        assert_eq!(second.key_id(), id);
        assert_ne!(id, first.key_id());
        let new = second.issue(claims(Role::Agent), now);
        assert!(new.starts_with(&format!("v2.{id}.")));
        for token in [&old, &legacy, &new] {
            assert!(second.verify(token, now).is_ok(), "{token}");
        }
        assert!(first.verify(&new, now).is_err(), "a server not restarted does not know the new key");
        TokenKeys::rotate(&path).unwrap();
        let third = TokenKeys::load_or_create(&path).unwrap();
        assert!(third.verify(&new, now).is_ok(), "one previous key is kept");
        assert!(third.verify(&old, now).is_err(), "the one before it is dropped");
        assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 2);
    }

    #[test]
    fn the_key_file_is_created_once_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys/token.key");
        let a = TokenKeys::load_or_create(&path).unwrap();
        let b = TokenKeys::load_or_create(&path).unwrap();
        let token = a.issue(claims(Role::Agent), Utc::now());
        assert!(b.verify(&token, Utc::now()).is_ok());
        std::fs::write(&path, "zz").unwrap();
        assert!(matches!(TokenKeys::load_or_create(&path), Err(KeyError::Malformed { .. })));
    }
}
