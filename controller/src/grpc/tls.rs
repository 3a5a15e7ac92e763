//! Mutual TLS on the controllers' ports: every party (controllers, brokers,
//! the operator, `floe admin`) holds a certificate signed by the cluster's
//! certificate authority and trusts only that authority. Controllers ask
//! every caller for its certificate on both ports, so nothing without one
//! reaches Raft or the metadata services; callers check that the
//! controller's certificate names the host they dialled (a DNS name or an
//! IP address in its subject alternative names).
//!
//! The files are PEM, as cert-manager and `kubernetes.io/tls` Secrets hold
//! them (`ca.crt`, `tls.crt`, `tls.key`). They are read at start, and read
//! again before a handshake once [`RELOAD_CHECK`] has passed since the last
//! look: a renewed certificate, key or authority (kubelet swaps a mounted
//! Secret's files at once) is used by every connection made after that,
//! in both directions, without a restart. Connections already open keep
//! the certificates they were made with. Files that cannot be used (half
//! written by hand, a key that does not belong to the certificate) are
//! refused with a warning, and the previous material stays in use.
//!
//! The rustls configurations are built here, on ring, with ALPN `h2`; the
//! servers run their own handshakes ([`super::node`]) and the clients dial
//! through [`TlsConnector`], so that each handshake takes the material
//! current at that moment.

use std::fmt;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use tokio::net::TcpStream;
use tonic::transport::Uri;

/// How long a TLS handshake may take on a controller's port.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// How often, at most, the files are read again (before a handshake).
pub const RELOAD_CHECK: Duration = Duration::from_secs(1);

const ALPN_H2: &[u8] = b"h2";

/// Where the PEM files are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The certificate authority whose certificates are trusted (one or
    /// more PEM certificates: during a change of authority, both).
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
    #[error("the TLS {what} cannot be used: {reason}")]
    Invalid { what: String, reason: String },
}

/// The rustls configurations made from one set of PEM files.
struct Configs {
    server: Arc<ServerConfig>,
    client: Arc<ClientConfig>,
}

/// The PEM bytes the current configurations were made from.
#[derive(PartialEq, Eq)]
struct Pem {
    ca: Vec<u8>,
    cert: Vec<u8>,
    key: Vec<u8>,
}

struct Current {
    configs: Configs,
    pem: Pem,
    /// When the files were last read.
    checked: Instant,
    /// Files last refused, not to be tried (and warned about) again.
    refused: Option<Pem>,
    /// Why the files could not be read at the last look (warned once).
    unreadable: Option<String>,
}

struct Inner {
    /// Read again from time to time; `None` for material given in memory.
    files: Option<TlsFiles>,
    current: Mutex<Current>,
}

/// TLS material for the controllers' ports and their clients; cheap to
/// clone (clones share the material and its reloading).
#[derive(Clone)]
pub struct Tls {
    inner: Arc<Inner>,
}

impl fmt::Debug for Tls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tls")
            .field("files", &self.inner.files)
            .finish_non_exhaustive()
    }
}

impl Tls {
    /// Reads and checks the three files; they are read again later (see
    /// the module documentation).
    pub fn load(files: &TlsFiles) -> Result<Tls, TlsError> {
        let pem = read_files(files)?;
        let configs = build(&pem, Some(files))?;
        Ok(Tls::new(Some(files.clone()), pem, configs))
    }

    /// TLS material already in memory (a Secret read through the API):
    /// the authority's certificate, this party's certificate (chain) and
    /// its private key, PEM. It never changes.
    pub fn from_pem(ca: &[u8], cert: &[u8], key: &[u8]) -> Result<Tls, TlsError> {
        for (bytes, what, expected) in [
            (ca, "CA certificate", "CERTIFICATE"),
            (cert, "certificate", "CERTIFICATE"),
            (key, "private key", "PRIVATE KEY"),
        ] {
            if !is_pem(bytes, expected) {
                return Err(TlsError::NotPemData { what, expected });
            }
        }
        let pem = Pem {
            ca: ca.to_vec(),
            cert: cert.to_vec(),
            key: key.to_vec(),
        };
        let configs = build(&pem, None)?;
        Ok(Tls::new(None, pem, configs))
    }

    fn new(files: Option<TlsFiles>, pem: Pem, configs: Configs) -> Tls {
        // Other users of rustls in the process (tonic's own TLS, kube, S3)
        // ask for the process's crypto provider, which rustls cannot choose
        // by itself when more than one is compiled in (object_store brings
        // aws-lc-rs): ring, unless one is installed. The configurations
        // here name ring themselves.
        let _ = rustls::crypto::ring::default_provider().install_default();
        Tls {
            inner: Arc::new(Inner {
                files,
                current: Mutex::new(Current {
                    configs,
                    pem,
                    checked: Instant::now(),
                    refused: None,
                    unreadable: None,
                }),
            }),
        }
    }

    /// A controller's servers: present its certificate, require a client
    /// certificate signed by the authority.
    pub fn server_config(&self) -> Arc<ServerConfig> {
        self.current(|c| c.server.clone())
    }

    /// A client of the controllers: trust only the authority, present this
    /// party's certificate.
    pub fn client_config(&self) -> Arc<ClientConfig> {
        self.current(|c| c.client.clone())
    }

    fn current<T>(&self, pick: impl FnOnce(&Configs) -> T) -> T {
        let mut current = self.inner.current.lock().unwrap_or_else(|p| p.into_inner());
        self.refresh(&mut current);
        pick(&current.configs)
    }

    /// Takes changed files, if [`RELOAD_CHECK`] has passed since the last look.
    fn refresh(&self, current: &mut Current) {
        let Some(files) = &self.inner.files else {
            return;
        };
        if current.checked.elapsed() < RELOAD_CHECK {
            return;
        }
        current.checked = Instant::now();
        let pem = match read_files(files) {
            Ok(pem) => pem,
            Err(e) => {
                // A hand edit half done, or the files gone: keep what works,
                // and say so once per cause.
                let why = e.to_string();
                if current.unreadable.as_ref() != Some(&why) {
                    tracing::warn!(error = %why, "cannot read the controller TLS files; keeping the current certificates");
                    current.unreadable = Some(why);
                }
                return;
            }
        };
        current.unreadable = None;
        if pem == current.pem || current.refused.as_ref() == Some(&pem) {
            return;
        }
        match build(&pem, Some(files)) {
            Ok(configs) => {
                current.configs = configs;
                current.pem = pem;
                current.refused = None;
                tracing::info!(cert = %files.cert.display(), "controller TLS certificates reloaded; new connections use them");
            }
            Err(e) => {
                tracing::warn!(error = %e, "the changed controller TLS files cannot be used; keeping the current certificates");
                current.refused = Some(pem);
            }
        }
    }
}

fn read_files(files: &TlsFiles) -> Result<Pem, TlsError> {
    Ok(Pem {
        ca: read(&files.ca, "CA certificate", "CERTIFICATE")?,
        cert: read(&files.cert, "certificate", "CERTIFICATE")?,
        key: read(&files.key, "private key", "PRIVATE KEY")?,
    })
}

/// The server and client configurations for `pem`; `files` name the
/// sources in errors.
fn build(pem: &Pem, files: Option<&TlsFiles>) -> Result<Configs, TlsError> {
    let name = |what: &str, path: Option<&PathBuf>| match path {
        Some(p) => format!("{what} {}", p.display()),
        None => what.to_owned(),
    };
    let ca_name = name("CA certificate", files.map(|f| &f.ca));
    let cert_name = name("certificate", files.map(|f| &f.cert));
    let key_name = name("private key", files.map(|f| &f.key));
    let invalid = |what: &str, reason: String| TlsError::Invalid {
        what: what.to_owned(),
        reason,
    };
    let certs = |bytes: &[u8], what: &str| {
        CertificateDer::pem_slice_iter(bytes)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| invalid(what, e.to_string()))
    };
    let mut roots = RootCertStore::empty();
    for ca in certs(&pem.ca, &ca_name)? {
        roots
            .add(ca)
            .map_err(|e| invalid(&ca_name, e.to_string()))?;
    }
    let roots = Arc::new(roots);
    let chain = certs(&pem.cert, &cert_name)?;
    let key =
        PrivateKeyDer::from_pem_slice(&pem.key).map_err(|e| invalid(&key_name, e.to_string()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let pair = format!("{cert_name} and {key_name}");
    let verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
        .build()
        .map_err(|e| invalid(&ca_name, e.to_string()))?;
    let mut server = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid(&pair, e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain.clone(), key.clone_key())
        .map_err(|e| {
            invalid(
                &pair,
                format!("{e} (do the certificate and key belong together?)"),
            )
        })?;
    server.alpn_protocols = vec![ALPN_H2.to_vec()];
    let mut client = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid(&pair, e.to_string()))?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .map_err(|e| {
            invalid(
                &pair,
                format!("{e} (do the certificate and key belong together?)"),
            )
        })?;
    client.alpn_protocols = vec![ALPN_H2.to_vec()];
    Ok(Configs {
        server: Arc::new(server),
        client: Arc::new(client),
    })
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

/// Dials a controller over TCP and makes a TLS handshake with the material
/// current at that moment, checking the certificate against the host in the
/// URI (a channel's endpoint is `http://host:port`: the TLS is this
/// connector's, not tonic's).
#[derive(Clone, Debug)]
pub struct TlsConnector {
    tls: Tls,
}

impl TlsConnector {
    pub fn new(tls: Tls) -> TlsConnector {
        TlsConnector { tls }
    }
}

type Connecting = Pin<
    Box<
        dyn Future<
                Output = Result<
                    TokioIo<tokio_rustls::client::TlsStream<TcpStream>>,
                    std::io::Error,
                >,
            > + Send,
    >,
>;

impl tower_service::Service<Uri> for TlsConnector {
    type Response = TokioIo<tokio_rustls::client::TlsStream<TcpStream>>;
    type Error = std::io::Error;
    type Future = Connecting;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let tls = self.tls.clone();
        Box::pin(async move {
            let invalid =
                |what: String| std::io::Error::new(std::io::ErrorKind::InvalidInput, what);
            let host = uri
                .host()
                .ok_or_else(|| invalid(format!("no host in {uri}")))?;
            let port = uri
                .port_u16()
                .ok_or_else(|| invalid(format!("no port in {uri}")))?;
            // An IPv6 address is bracketed in a URI, not in a server name.
            let host = host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned();
            let name = ServerName::try_from(host.clone())
                .map_err(|e| invalid(format!("{host} is not a valid server name: {e}")))?;
            let tcp = TcpStream::connect((host.as_str(), port)).await?;
            tcp.set_nodelay(true)?;
            let stream = tokio_rustls::TlsConnector::from(tls.client_config())
                .connect(name, tcp)
                .await?;
            Ok(TokioIo::new(stream))
        })
    }
}
