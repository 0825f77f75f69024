//! HTTPS for `witness serve` (issue 29): browsers give the camera and the
//! microphone only to secure pages, so a call from anywhere but localhost
//! needs TLS.
//!
//! - `--tls-cert FILE --tls-key FILE`: PEM files (the chain, leaf first,
//!   and a PKCS#8, PKCS#1 or SEC1 key), read again on SIGHUP and when
//!   either file changes (looked at every few seconds), so a renewed
//!   certificate needs no restart. A file that does not load keeps the
//!   certificate in use, and says why in the log.
//! - `--tls-self-signed NAME`: a certificate for NAME made on first start
//!   and kept in the data directory (so browsers that were told to trust it
//!   keep trusting it), for trials on a LAN; its fingerprints are printed.
//!
//! rustls with the *ring* provider (already built for WebRTC's DTLS), TLS
//! 1.2 and 1.3, HTTP/1.1 (ALPN).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use base64::Engine;
use rcgen::PublicKeyData;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConfig;
use sha2::{Digest, Sha256};

/// Why a certificate or key could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{0}: {1}")]
    Read(PathBuf, String),
    #[error("{0}: no certificate in the file (PEM `BEGIN CERTIFICATE` expected)")]
    NoCertificate(PathBuf),
    #[error("the certificate and key do not make a TLS configuration: {0}")]
    Config(String),
    #[error("making a self-signed certificate: {0}")]
    SelfSigned(String),
}

/// Where the certificate comes from.
#[derive(Debug)]
enum Source {
    Files { cert: PathBuf, key: PathBuf, loaded: Mutex<Option<(SystemTime, SystemTime)>> },
    SelfSigned,
}

/// The TLS configuration in use, replaced whole when the files change.
#[derive(Debug)]
pub struct Tls {
    config: RwLock<Arc<ServerConfig>>,
    source: Source,
    /// SHA-256 of the certificate in use (DER), as browsers show it:
    /// `AB:CD:…`.
    fingerprint: RwLock<String>,
}

/// What a browser or a client needs to trust a self-signed certificate.
#[derive(Debug, Clone)]
pub struct Fingerprints {
    /// SHA-256 of the certificate (DER), `AB:CD:…`.
    pub certificate_sha256: String,
    /// SHA-256 of its public key (SubjectPublicKeyInfo), base64: what
    /// Chromium's `--ignore-certificate-errors-spki-list` and HPKP take.
    pub spki_sha256_base64: String,
}

fn config(certs: Vec<CertificateDer<'static>>, key: PrivateKeyDer<'static>) -> Result<ServerConfig, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// SHA-256 of a certificate (DER) as browsers show it: `AB:CD:…`.
fn fingerprint_of(cert: &CertificateDer<'_>) -> String {
    Sha256::digest(cert).iter().map(|b| format!("{b:02X}")).collect::<Vec<_>>().join(":")
}

/// Reads a PEM certificate chain and key.
fn read_pem(cert: &Path, key: &Path) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| TlsError::Read(cert.to_owned(), e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::Read(cert.to_owned(), e.to_string()))?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate(cert.to_owned()));
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| TlsError::Read(key.to_owned(), e.to_string()))?;
    Ok((certs, key))
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

impl Tls {
    /// The certificate chain and key in PEM files.
    pub fn from_files(cert: &Path, key: &Path) -> Result<Arc<Self>, TlsError> {
        let stamp = modified(cert).zip(modified(key));
        let (certs, private) = read_pem(cert, key)?;
        let fingerprint = fingerprint_of(&certs[0]);
        Ok(Arc::new(Self {
            config: RwLock::new(Arc::new(config(certs, private)?)),
            source: Source::Files { cert: cert.to_owned(), key: key.to_owned(), loaded: Mutex::new(stamp) },
            fingerprint: RwLock::new(fingerprint),
        }))
    }

    /// A self-signed certificate for `name` (a host name or an IP address),
    /// made once and kept as `dir/tls-self-signed.{crt,key}`; made again if
    /// it is for another name.
    pub fn self_signed(name: &str, dir: &Path) -> Result<(Arc<Self>, Fingerprints), TlsError> {
        let (cert_path, key_path) = (dir.join("tls-self-signed.crt"), dir.join("tls-self-signed.key"));
        let names_file = dir.join("tls-self-signed.name");
        let same_name = std::fs::read_to_string(&names_file).is_ok_and(|n| n.trim() == name);
        if !(same_name && cert_path.exists() && key_path.exists()) {
            let key_pair = rcgen::KeyPair::generate().map_err(|e| TlsError::SelfSigned(e.to_string()))?;
            let mut params = rcgen::CertificateParams::new(vec![name.to_owned()])
                .map_err(|e| TlsError::SelfSigned(format!("{name:?}: {e}")))?;
            params.distinguished_name.push(rcgen::DnType::CommonName, name);
            params.distinguished_name.push(rcgen::DnType::OrganizationName, "Witness (self-signed, for trials)");
            let cert = params.self_signed(&key_pair).map_err(|e| TlsError::SelfSigned(e.to_string()))?;
            std::fs::create_dir_all(dir).map_err(|e| TlsError::Read(dir.to_owned(), e.to_string()))?;
            write_private(&key_path, key_pair.serialize_pem().as_bytes())?;
            std::fs::write(&cert_path, cert.pem()).map_err(|e| TlsError::Read(cert_path.clone(), e.to_string()))?;
            std::fs::write(&names_file, name).map_err(|e| TlsError::Read(names_file.clone(), e.to_string()))?;
        }
        let (certs, key) = read_pem(&cert_path, &key_path)?;
        let key_pair = rcgen::KeyPair::try_from(&key).map_err(|e| TlsError::SelfSigned(e.to_string()))?;
        let fingerprints = Fingerprints {
            certificate_sha256: fingerprint_of(&certs[0]),
            spki_sha256_base64: base64::engine::general_purpose::STANDARD
                .encode(Sha256::digest(key_pair.subject_public_key_info())),
        };
        let tls = Arc::new(Self {
            config: RwLock::new(Arc::new(config(certs, key)?)),
            source: Source::SelfSigned,
            fingerprint: RwLock::new(fingerprints.certificate_sha256.clone()),
        });
        Ok((tls, fingerprints))
    }

    /// What new connections are accepted with.
    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(self.config.read().expect("tls config").clone())
    }

    /// SHA-256 of the certificate in use.
    pub fn fingerprint(&self) -> String {
        self.fingerprint.read().expect("tls fingerprint").clone()
    }

    /// Reads the files again if `always`, or if either changed since they
    /// were last read. `Ok(true)`: a new certificate is in use. An error
    /// leaves the one in use.
    pub fn reload(&self, always: bool) -> Result<bool, TlsError> {
        let Source::Files { cert, key, loaded } = &self.source else { return Ok(false) };
        let stamp = modified(cert).zip(modified(key));
        {
            let mut last = loaded.lock().expect("tls stamps");
            if !always && *last == stamp {
                return Ok(false);
            }
            // Not again for the same files, whether they load or not.
            *last = stamp;
        }
        let (certs, private) = read_pem(cert, key)?;
        let fingerprint = fingerprint_of(&certs[0]);
        *self.config.write().expect("tls config") = Arc::new(config(certs, private)?);
        *self.fingerprint.write().expect("tls fingerprint") = fingerprint;
        Ok(true)
    }

    /// Reloads on SIGHUP, and when the files change (looked at every
    /// `every`), logging what happened. Runs until the task is dropped.
    pub async fn watch(self: Arc<Self>, every: Duration) {
        #[cfg(unix)]
        let mut hangups = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
        let mut tick = tokio::time::interval(every);
        loop {
            #[cfg(unix)]
            let hangup = async {
                match hangups.as_mut() {
                    Some(h) => h.recv().await,
                    None => std::future::pending().await,
                }
            };
            #[cfg(not(unix))]
            let hangup = std::future::pending::<Option<()>>();
            let always = tokio::select! {
                _ = tick.tick() => false,
                _ = hangup => true,
            };
            match self.reload(always) {
                Ok(true) => tracing::info!(fingerprint = %self.fingerprint(), "TLS certificate reloaded"),
                Ok(false) => {}
                Err(e) => tracing::error!(error = %e, "TLS certificate not reloaded; the one in use stays"),
            }
        }
    }
}

/// Writes a private key readable by its owner only.
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), TlsError> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).map_err(|e| TlsError::Read(path.to_owned(), e.to_string()))?;
    file.write_all(bytes).map_err(|e| TlsError::Read(path.to_owned(), e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_self_signed_certificate_is_kept_for_its_name_and_made_again_for_another() {
        let dir = tempfile::tempdir().unwrap();
        let (_, first) = Tls::self_signed("witness.test", dir.path()).unwrap();
        let (_, again) = Tls::self_signed("witness.test", dir.path()).unwrap();
        assert_eq!(first.certificate_sha256, again.certificate_sha256, "kept across restarts");
        assert_eq!(first.certificate_sha256.len(), 32 * 3 - 1);
        let (_, other) = Tls::self_signed("other.test", dir.path()).unwrap();
        assert_ne!(first.certificate_sha256, other.certificate_sha256);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("tls-self-signed.key")).unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0, "the key is its owner's alone");
        }
    }

    #[test]
    fn changed_files_are_reloaded_and_bad_ones_keep_the_certificate_in_use() {
        let dir = tempfile::tempdir().unwrap();
        let make = |name: &str| {
            let sub = dir.path().join(name);
            Tls::self_signed(name, &sub).unwrap();
            (sub.join("tls-self-signed.crt"), sub.join("tls-self-signed.key"))
        };
        let (a_cert, a_key) = make("a.test");
        let (b_cert, b_key) = make("b.test");
        let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        std::fs::copy(&a_cert, &cert).unwrap();
        std::fs::copy(&a_key, &key).unwrap();
        let tls = Tls::from_files(&cert, &key).unwrap();
        let first = tls.fingerprint();
        assert!(!tls.reload(false).unwrap(), "nothing changed");
        // Renewed: a new certificate and key.
        std::fs::copy(&b_cert, &cert).unwrap();
        std::fs::copy(&b_key, &key).unwrap();
        assert!(tls.reload(true).unwrap());
        let second = tls.fingerprint();
        assert_ne!(first, second);
        // A half-written file is refused; the certificate in use stays.
        std::fs::write(&cert, "-----BEGIN CERTIFICATE-----\nnot base64\n").unwrap();
        assert!(tls.reload(true).is_err());
        assert_eq!(tls.fingerprint(), second);
        // A key that is not the certificate's is refused too.
        std::fs::copy(&a_cert, &cert).unwrap();
        assert!(matches!(tls.reload(true), Err(TlsError::Config(_))), "a's certificate with b's key");
        assert_eq!(tls.fingerprint(), second);
        assert!(matches!(Tls::from_files(&dir.path().join("none.pem"), &key), Err(TlsError::Read(..))));
    }
}
