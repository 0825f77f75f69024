//! Who is calling: signed bearer tokens, password hashes, role checks.
//!
//! A token is `v1.<claims>.<mac>`: the claims as base64url JSON and an
//! HMAC-SHA-256 over `v1.<claims>` with the server's token key. Tokens are
//! short-lived ([`TokenKeys::staff_ttl`], [`TokenKeys::visitor_ttl`]) and
//! carry the tenant and role, so that a request is authorised without a
//! database read. A visitor (customer) token also carries its channel.

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
        self.s.parse().map_err(|_| ApiError::new(StatusCode::FORBIDDEN, "this needs a staff account"))
    }

    /// Refuses unless the caller has one of `roles`.
    pub fn require(&self, roles: &[Role]) -> Result<(), ApiError> {
        if roles.contains(&self.r) {
            Ok(())
        } else {
            let names: Vec<String> = roles.iter().map(|r| format!("{r:?}").to_lowercase()).collect();
            Err(ApiError::new(StatusCode::FORBIDDEN, format!("this needs the role {}", names.join(" or "))))
        }
    }
}

/// The token key and lifetimes.
#[derive(Clone)]
pub struct TokenKeys {
    key: [u8; 32],
    pub staff_ttl: Duration,
    pub visitor_ttl: Duration,
}

impl std::fmt::Debug for TokenKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenKeys").field("staff_ttl", &self.staff_ttl).finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("token key file {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("token key file {path} must hold 64 hex digits")]
    Malformed { path: String },
}

impl TokenKeys {
    pub fn new(key: [u8; 32]) -> Self {
        Self { key, staff_ttl: Duration::hours(8), visitor_ttl: Duration::hours(24) }
    }

    /// A fresh random key (tests, or a server that may forget its tokens).
    pub fn random() -> Self {
        let mut key = [0; 32];
        OsRng.fill_bytes(&mut key);
        Self::new(key)
    }

    /// Loads the key at `path`, creating it (mode 0600) on first use, so
    /// that tokens survive a restart.
    pub fn load_or_create(path: &Path) -> Result<Self, KeyError> {
        let io = |source| KeyError::Io { path: path.display().to_string(), source };
        match std::fs::read_to_string(path) {
            Ok(text) => {
                let bytes = hex::decode(text.trim()).ok().and_then(|b| <[u8; 32]>::try_from(b).ok());
                bytes.map(Self::new).ok_or_else(|| KeyError::Malformed { path: path.display().to_string() })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let keys = Self::random();
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir).map_err(io)?;
                }
                write_private(path, &hex::encode(keys.key)).map_err(io)?;
                Ok(keys)
            }
            Err(e) => Err(io(e)),
        }
    }

    fn mac(&self, data: &[u8]) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("any key length");
        mac.update(data);
        mac
    }

    /// A token for `claims` (its `e` is set from the role's lifetime).
    pub fn issue(&self, mut claims: Claims, now: DateTime<Utc>) -> String {
        let ttl = if claims.r == Role::Customer { self.visitor_ttl } else { self.staff_ttl };
        claims.e = (now + ttl).timestamp();
        let body = format!("v1.{}", B64.encode(serde_json::to_vec(&claims).expect("claims serialise")));
        let mac = B64.encode(self.mac(body.as_bytes()).finalize().into_bytes());
        format!("{body}.{mac}")
    }

    /// The claims of a valid, unexpired token.
    pub fn verify(&self, token: &str, now: DateTime<Utc>) -> Result<Claims, ApiError> {
        let invalid = || ApiError::new(StatusCode::UNAUTHORIZED, "invalid token");
        let (body, mac) = token.rsplit_once('.').ok_or_else(invalid)?;
        let mac = B64.decode(mac).map_err(|_| invalid())?;
        self.mac(body.as_bytes()).verify_slice(&mac).map_err(|_| invalid())?;
        let claims = body.strip_prefix("v1.").ok_or_else(invalid)?;
        let claims: Claims =
            serde_json::from_slice(&B64.decode(claims).map_err(|_| invalid())?).map_err(|_| invalid())?;
        if claims.e <= now.timestamp() {
            return Err(ApiError::new(StatusCode::UNAUTHORIZED, "token expired: log in again"));
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

/// An argon2id hash of `password` (PHC string).
pub fn hash_password(password: &str) -> String {
    use argon2::password_hash::{PasswordHasher, SaltString};
    let salt = SaltString::generate(&mut OsRng);
    argon2::Argon2::default().hash_password(password.as_bytes(), &salt).expect("argon2 with default params").to_string()
}

/// Whether `password` matches the PHC string `hash`.
pub fn verify_password(password: &str, hash: &str) -> bool {
    use argon2::password_hash::{PasswordHash, PasswordVerifier};
    PasswordHash::new(hash).is_ok_and(|h| argon2::Argon2::default().verify_password(password.as_bytes(), &h).is_ok())
}

/// The authenticated caller of a route: `Authorization: Bearer TOKEN`, or
/// `?token=TOKEN` (browsers cannot set headers on a WebSocket).
#[derive(Debug, Clone)]
pub struct Caller(pub Claims);

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let header = parts.headers.get(axum::http::header::AUTHORIZATION).and_then(|v| v.to_str().ok());
        let token = match header {
            Some(value) => value
                .strip_prefix("Bearer ")
                .ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, "use `Authorization: Bearer TOKEN`"))?
                .to_owned(),
            None => parts
                .uri
                .query()
                .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("token=")))
                .map(str::to_owned)
                .ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, "no token: log in first"))?,
        };
        Ok(Caller(state.keys.verify(&token, Utc::now())?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(role: Role) -> Claims {
        Claims { t: "acme".parse().unwrap(), s: "u1".into(), r: role, c: None, e: 0 }
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
        for bad in
            [format!("v1.{forged_claims}.{mac}"), TokenKeys::random().issue(claims(Role::Agent), now), "x".into()]
        {
            assert!(keys.verify(&bad, now).is_err(), "{bad}");
        }
    }

    #[test]
    fn passwords_verify_against_their_hash_only() {
        let hash = hash_password("correct horse");
        assert!(hash.starts_with("$argon2id$"));
        assert!(verify_password("correct horse", &hash));
        assert!(!verify_password("wrong horse", &hash));
        assert!(!verify_password("correct horse", "not a hash"));
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
