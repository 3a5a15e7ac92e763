//! Mutual TLS on the controllers' ports: every party (controllers, brokers,
//! the operator, `floe admin`) holds a certificate signed by the cluster's
//! certificate authority and trusts only that authority. Controllers ask
//! every caller for its certificate on both ports, so nothing without one
//! reaches Raft or the metadata services; callers check that the
//! controller's certificate names the host they dialled (a DNS name or an
//! IP address in its subject alternative names).
//!
//! The files are PEM, as cert-manager and `kubernetes.io/tls` Secrets hold
//! them (`ca.crt`, `tls.crt`, `tls.key`). They are read once, at start: a
//! rotated certificate takes effect when the process restarts.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};

/// How long a TLS handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// Where the PEM files are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The certificate authority whose certificates are trusted.
    pub ca: PathBuf,
    /// This party's certificate chain.
    pub cert: PathBuf,
    /// Its private key.
    pub key: PathBuf,
}

/// Why the TLS files cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read the TLS {what} {path}: {source}")]
    Read {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the TLS {what} {path} holds no PEM {expected} (it must contain a \"-----BEGIN {expected}\" block)")]
    NotPem {
        what: &'static str,
        path: PathBuf,
        expected: &'static str,
    },
    #[error("the TLS {what} is not a PEM {expected} (it must contain a \"-----BEGIN {expected}\" block)")]
    NotPemData {
        what: &'static str,
        expected: &'static str,
    },
}

/// Loaded TLS material; cheap to clone.
#[derive(Debug, Clone)]
pub struct Tls {
    ca: Certificate,
    identity: Identity,
}

impl Tls {
    /// Reads and checks the three files.
    pub fn load(files: &TlsFiles) -> Result<Tls, TlsError> {
        // tonic's server asks rustls for the process's crypto provider, which
        // rustls cannot choose by itself when more than one is compiled in
        // (object_store brings aws-lc-rs): ring, unless one is installed.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let ca = read(&files.ca, "CA certificate", "CERTIFICATE")?;
        let cert = read(&files.cert, "certificate", "CERTIFICATE")?;
        let key = read(&files.key, "private key", "PRIVATE KEY")?;
        Ok(Tls {
            ca: Certificate::from_pem(ca),
            identity: Identity::from_pem(cert, key),
        })
    }

    /// TLS material already in memory (a Secret read through the API):
    /// the authority's certificate, this party's certificate (chain) and
    /// its private key, PEM.
    pub fn from_pem(ca: &[u8], cert: &[u8], key: &[u8]) -> Result<Tls, TlsError> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        for (bytes, what, expected) in [
            (ca, "CA certificate", "CERTIFICATE"),
            (cert, "certificate", "CERTIFICATE"),
            (key, "private key", "PRIVATE KEY"),
        ] {
            if !is_pem(bytes, expected) {
                return Err(TlsError::NotPemData { what, expected });
            }
        }
        Ok(Tls {
            ca: Certificate::from_pem(ca),
            identity: Identity::from_pem(cert, key),
        })
    }

    /// A controller's servers: present its certificate, require a client
    /// certificate signed by the authority.
    pub fn server(&self) -> ServerTlsConfig {
        ServerTlsConfig::new()
            .identity(self.identity.clone())
            .client_ca_root(self.ca.clone())
            .timeout(HANDSHAKE_TIMEOUT)
    }

    /// A client of the controllers: trust only the authority, present this
    /// party's certificate.
    pub fn client(&self) -> ClientTlsConfig {
        ClientTlsConfig::new()
            .ca_certificate(self.ca.clone())
            .identity(self.identity.clone())
            .timeout(HANDSHAKE_TIMEOUT)
    }
}

fn read(path: &Path, what: &'static str, expected: &'static str) -> Result<Vec<u8>, TlsError> {
    let bytes = std::fs::read(path).map_err(|source| TlsError::Read {
        what,
        path: path.to_owned(),
        source,
    })?;
    if !is_pem(&bytes, expected) {
        return Err(TlsError::NotPem {
            what,
            path: path.to_owned(),
            expected,
        });
    }
    Ok(bytes)
}

/// Whether `bytes` hold a PEM block of `kind` (`CERTIFICATE`, or `PRIVATE
/// KEY`, which also matches `RSA PRIVATE KEY` and `EC PRIVATE KEY`).
pub fn is_pem(bytes: &[u8], kind: &str) -> bool {
    String::from_utf8_lossy(bytes)
        .lines()
        .any(|line| line.starts_with("-----BEGIN ") && line.contains(kind))
}
