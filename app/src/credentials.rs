//! Passwords: how they are made, stored (argon2id, PHC strings) and
//! checked.

use rand_core::{OsRng, RngCore};

/// The shortest password an account may have.
pub const MIN_PASSWORD: usize = 10;

/// A fresh password for a generated account (the demo start, `witness
/// admin user create` without one): 16 characters from 96 random bits.
pub fn random_password() -> String {
    use base64::Engine;
    let mut bytes = [0u8; 12];
    OsRng.fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_verify_against_their_hash_only() {
        let hash = hash_password("correct horse");
        assert!(hash.starts_with("$argon2id$"));
        assert!(verify_password("correct horse", &hash));
        assert!(!verify_password("wrong horse", &hash));
        assert!(!verify_password("correct horse", "not a hash"));
    }

    #[test]
    fn generated_passwords_are_long_enough_and_differ() {
        let (a, b) = (random_password(), random_password());
        assert!(a.chars().count() >= MIN_PASSWORD, "{a}");
        assert_ne!(a, b);
    }
}
