//! Runs one controller: its storage, its Raft node, the `RaftPeer` server on
//! the Raft port and the `Metadata`/`Admin` servers on the metadata port.
//!
//! Bootstrap: a controller whose storage is pristine and that is one of the
//! configured initial voters initializes the cluster with exactly that voter
//! set, after waiting [`NodeConfig::bootstrap_grace`] for a leader to
//! contact it first (which it does when the cluster already exists). Every
//! initial voter may do so: openraft makes simultaneous initialization with
//! the same voters safe, and no single voter has to be up for the cluster
//! to form. A controller configured with no initial voters (or not among
//! them) waits to be added with `AddController`.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::server::{Router, TcpIncoming};

use super::access::Access;
use super::network::{Channels, GrpcNetwork};
use super::proto::admin_server::AdminServer;
use super::proto::metadata_server::MetadataServer;
use super::proto::raft_peer_server::RaftPeerServer;
use super::service::{ApiService, PeerService};
use super::tls::{Tls, HANDSHAKE_TIMEOUT};
use super::{MAX_MESSAGE_BYTES, MAX_STATE_BYTES};
use crate::raft::{open_storage, ControllerNode, NodeId, Raft, StateMachine};

/// How one controller runs.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub id: NodeId,
    /// Where this node's Raft and metadata addresses are advertised to the
    /// others (the initial voters list has this node's own entry too).
    pub advertised: ControllerNode,
    /// The voters the cluster starts with; empty to join an existing
    /// cluster through `AddController`.
    pub initial_voters: BTreeMap<NodeId, ControllerNode>,
    /// The Raft log, vote and snapshot live here.
    pub data_dir: PathBuf,
    /// openraft's timing and snapshot settings.
    pub raft: openraft::Config,
    /// How long a pristine initial voter waits for an existing leader
    /// before it initializes the cluster.
    pub bootstrap_grace: Duration,
    /// Broker leases granted by this controller while it leads.
    pub leases: super::service::LeaseConfig,
    /// Automatic rebalancing by this controller while it leads.
    pub balancer: super::service::BalancerConfig,
    /// Mutual TLS on both ports and towards the peers; plaintext when
    /// `None`. Every controller of a cluster must agree.
    pub tls: Option<Tls>,
    /// Which certificate names may speak Raft to this controller (needs
    /// `tls`); by default any certificate of the authority.
    pub access: Access,
}

/// openraft settings for controllers: heartbeats every 100 ms, elections
/// after 0.6–1.2 s of silence, a snapshot every 10,000 entries.
pub fn default_raft_config(
    cluster_name: &str,
) -> Result<openraft::Config, Box<openraft::ConfigError>> {
    openraft::Config {
        cluster_name: cluster_name.to_owned(),
        heartbeat_interval: 100,
        election_timeout_min: 600,
        election_timeout_max: 1_200,
        install_snapshot_timeout: 10_000,
        // A Raft entry holds up to 1 MiB of batched commands: 32 entries per
        // AppendEntries keep a replication message well under the gRPC limit.
        max_payload_entries: 32,
        snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(10_000),
        max_in_snapshot_log_to_keep: 1_000,
        ..openraft::Config::default()
    }
    .validate()
    .map_err(Box::new)
}

/// The two listening sockets of a controller, bound before it starts (so
/// that port 0 can be used and the real ports advertised).
#[derive(Debug)]
pub struct Listeners {
    pub raft: TcpListener,
    pub api: TcpListener,
}

impl Listeners {
    /// Binds both.
    pub async fn bind(raft: SocketAddr, api: SocketAddr) -> std::io::Result<Listeners> {
        Ok(Listeners {
            raft: TcpListener::bind(raft).await?,
            api: TcpListener::bind(api).await?,
        })
    }

    /// The bound addresses, as `(raft, api)`.
    pub fn addrs(&self) -> std::io::Result<(SocketAddr, SocketAddr)> {
        Ok((self.raft.local_addr()?, self.api.local_addr()?))
    }
}

/// Why a controller did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("controller storage in {dir}: {source}")]
    Storage {
        dir: PathBuf,
        source: Box<crate::raft::StorageError>,
    },
    #[error("Raft: {0}")]
    Raft(String),
    #[error("listener: {0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Config(String),
}

/// A running controller.
pub struct RunningController {
    pub id: NodeId,
    pub raft: Raft,
    pub sm: StateMachine,
    pub raft_addr: SocketAddr,
    pub api_addr: SocketAddr,
    stop: watch::Sender<bool>,
    servers: Vec<JoinHandle<Result<(), tonic::transport::Error>>>,
    /// The TLS accept loops, which own the listeners.
    acceptors: Vec<JoinHandle<()>>,
    bootstrap: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for RunningController {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningController")
            .field("id", &self.id)
            .field("raft_addr", &self.raft_addr)
            .field("api_addr", &self.api_addr)
            .finish()
    }
}

/// Starts a controller on `listeners`.
pub async fn start(
    config: NodeConfig,
    listeners: Listeners,
) -> Result<RunningController, StartError> {
    let (raft_addr, api_addr) = listeners.addrs()?;
    if config.access.restricts() && config.tls.is_none() {
        return Err(StartError::Config(
            "limiting which certificate names may speak Raft needs TLS \
             (the --controller-tls-* files)"
                .into(),
        ));
    }
    // The TLS material was checked when it was loaded; the servers make
    // their own handshakes with it (see `tls_incoming`).
    let (mut peer_server, mut api_server) = (
        tonic::transport::Server::builder(),
        tonic::transport::Server::builder(),
    );
    let (log, sm) = open_storage(&config.data_dir)
        .await
        .map_err(|source| StartError::Storage {
            dir: config.data_dir.clone(),
            source: Box::new(source),
        })?;
    let network = GrpcNetwork::new(config.id, Channels::new(config.tls.clone()));
    let raft = Raft::new(
        config.id,
        Arc::new(config.raft.clone()),
        network,
        log,
        sm.clone(),
    )
    .await
    .map_err(|e| StartError::Raft(e.to_string()))?;

    let (stop, stopped) = watch::channel(false);
    let shutdown = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let peer = peer_server.add_service(InterceptedService::new(
        RaftPeerServer::new(PeerService::new(raft.clone()))
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES),
        config.access.peer_gate(),
    ));
    let mut acceptors = Vec::new();
    let peer = serve(
        peer,
        listeners.raft,
        config.tls.as_ref(),
        shutdown(stopped.clone()),
        &mut acceptors,
    );
    let api_service = ApiService::new(
        config.id,
        raft.clone(),
        sm.clone(),
        stopped.clone(),
        config.leases,
        config.balancer,
    );
    let api = api_server
        .add_service(
            MetadataServer::new(api_service.clone())
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_STATE_BYTES),
        )
        .add_service(
            AdminServer::new(api_service)
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
        );
    let api = serve(
        api,
        listeners.api,
        config.tls.as_ref(),
        shutdown(stopped),
        &mut acceptors,
    );
    let servers = vec![tokio::spawn(peer), tokio::spawn(api)];

    let bootstrap = if config.initial_voters.contains_key(&config.id) {
        Some(tokio::spawn(bootstrap(
            raft.clone(),
            config.initial_voters.clone(),
            config.bootstrap_grace,
        )))
    } else {
        None
    };
    tracing::info!(id = config.id, %raft_addr, %api_addr, "controller started");
    Ok(RunningController {
        id: config.id,
        raft,
        sm,
        raft_addr,
        api_addr,
        stop,
        servers,
        acceptors,
        bootstrap,
    })
}

/// Initializes the cluster if this node is still pristine after the grace.
async fn bootstrap(raft: Raft, voters: BTreeMap<NodeId, ControllerNode>, grace: Duration) {
    tokio::time::sleep(grace).await;
    match raft.is_initialized().await {
        Ok(true) => return,
        Ok(false) => {}
        Err(e) => {
            tracing::warn!(error = %e, "cannot tell whether the cluster is initialized");
            return;
        }
    }
    match raft.initialize(voters.clone()).await {
        Ok(()) => {
            tracing::info!(voters = ?voters.keys().collect::<Vec<_>>(), "controller cluster initialized")
        }
        // Someone else initialized first, or a leader contacted us: fine.
        Err(e) => tracing::debug!(error = %e, "initialization not needed"),
    }
}

impl RunningController {
    /// Stops serving and shuts Raft down (what its peers see as a crash,
    /// minus the lost in-flight writes: the log is fsynced per append).
    pub async fn shutdown(self) -> Result<(), String> {
        if let Some(b) = &self.bootstrap {
            b.abort();
        }
        let _ = self.stop.send(true);
        let result = self.raft.shutdown().await.map_err(|e| e.to_string());
        for server in self.servers {
            server.abort();
            let _ = server.await;
        }
        // Their listeners are closed once this returns: the same ports can
        // be bound again at once.
        for acceptor in self.acceptors {
            acceptor.abort();
            let _ = acceptor.await;
        }
        result
    }
}

/// Accepted connections of a gRPC server, with `TCP_NODELAY` set.
///
/// `Server::tcp_nodelay` does not apply to `serve_with_incoming`; the
/// accepted sockets get it only from here. Without it, a reply that h2
/// writes in more than one segment waits for the peer's delayed ACK: every
/// proposal from another process took ~40 ms instead of ~1 ms.
fn incoming(listener: TcpListener) -> TcpIncoming {
    TcpIncoming::from(listener).with_nodelay(Some(true))
}

/// A server's future, whichever way it accepts connections.
type Serving = Pin<Box<dyn Future<Output = Result<(), tonic::transport::Error>> + Send>>;

/// Serves `router` on `listener` until `stop`: over TLS when `tls` is
/// given (its accept loop goes into `acceptors`), plaintext otherwise.
fn serve(
    router: Router,
    listener: TcpListener,
    tls: Option<&Tls>,
    stop: impl Future<Output = ()> + Send + 'static,
    acceptors: &mut Vec<JoinHandle<()>>,
) -> Serving {
    match tls {
        Some(tls) => {
            let (accepted, acceptor) = tls_incoming(listener, tls.clone());
            acceptors.push(acceptor);
            Box::pin(router.serve_with_incoming_shutdown(accepted, stop))
        }
        None => Box::pin(router.serve_with_incoming_shutdown(incoming(listener), stop)),
    }
}

/// Accepted connections after their TLS handshake, each made with the
/// material current when the connection arrived (so renewed certificates
/// are used without a restart). Handshakes run concurrently, each bounded
/// by [`HANDSHAKE_TIMEOUT`], so a caller that stalls one holds up no other;
/// a failed handshake is logged and dropped. Accepting stops when the
/// server drops the stream, or when the returned task (which owns the
/// listener) is aborted.
fn tls_incoming(
    listener: TcpListener,
    tls: Tls,
) -> (
    ReceiverStream<std::io::Result<tokio_rustls::server::TlsStream<TcpStream>>>,
    JoinHandle<()>,
) {
    let (tx, rx) = mpsc::channel(16);
    let acceptor = tokio::spawn(async move {
        loop {
            let (tcp, from) = tokio::select! {
                _ = tx.closed() => return,
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of file descriptors and the like: wait, go on.
                        tracing::warn!(error = %e, "cannot accept a connection");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            // See `incoming`: replies must not wait for delayed ACKs.
            if let Err(e) = tcp.set_nodelay(true) {
                tracing::debug!(error = %e, %from, "cannot set TCP_NODELAY");
            }
            let acceptor = tokio_rustls::TlsAcceptor::from(tls.server_config());
            let tx = tx.clone();
            tokio::spawn(async move {
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(Ok(stream)) => {
                        let _ = tx.send(Ok(stream)).await;
                    }
                    Ok(Err(e)) => tracing::debug!(error = %e, %from, "TLS handshake refused"),
                    Err(_) => tracing::debug!(%from, "TLS handshake timed out"),
                }
            });
        }
    });
    (ReceiverStream::new(rx), acceptor)
}

#[cfg(test)]
mod tests {
    use tokio_stream::StreamExt;

    use super::*;

    #[tokio::test]
    async fn accepted_connections_do_not_wait_for_delayed_acks() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut accepted = incoming(listener);
        let _client = tokio::net::TcpStream::connect(addr).await.unwrap();
        let stream = accepted.next().await.unwrap().unwrap();
        assert!(
            stream.nodelay().unwrap(),
            "TCP_NODELAY not set on an accepted connection"
        );
    }
}
