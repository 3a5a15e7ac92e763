//! openraft's network over gRPC: the client side of service `RaftPeer`.
//!
//! Contract: one tonic [`Channel`] per peer address (HTTP/2, multiplexed),
//! created lazily once and shared by every connection openraft opens to
//! that peer, so a replication stream reset does not reconnect. Requests
//! carry openraft's types as JSON; snapshot chunks travel raw. A peer that
//! cannot be connected to is `Unreachable` (openraft backs off); a call that
//! times out is `Timeout`; any other transport failure is `Network`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Timeout, Unreachable,
};
use openraft::network::{RPCOption, RPCTypes, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::transport::{Channel, Endpoint};

use super::proto::raft_peer_client::RaftPeerClient;
use super::proto::RaftPayload;
use super::tls::{Tls, TlsConnector};
use super::MAX_MESSAGE_BYTES;
use crate::raft::{ControllerNode, NodeId, TypeConfig};

/// How long connecting to a peer may take before it counts as unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// Channels by address, shared by all users in one process.
#[derive(Debug, Clone, Default)]
pub struct Channels {
    by_addr: Arc<Mutex<HashMap<String, Channel>>>,
    /// Mutual TLS towards the controllers, or plaintext.
    tls: Option<Tls>,
}

impl Channels {
    /// Channels that speak mutual TLS (see [`super::tls`]) when `tls` is
    /// given, plaintext HTTP/2 otherwise.
    pub fn new(tls: Option<Tls>) -> Channels {
        Channels {
            by_addr: Arc::default(),
            tls,
        }
    }

    /// Whether these channels speak TLS.
    pub fn tls(&self) -> bool {
        self.tls.is_some()
    }

    /// What to check when no controller answers through these channels.
    pub fn unreachable_hint(&self) -> &'static str {
        if self.tls() {
            "check the addresses, that the controllers speak TLS, that their \
             certificate names the address dialled, and that both sides trust \
             the same authority"
        } else {
            "check the addresses; controllers that speak TLS need \
             --controller-tls-ca, --controller-tls-cert and --controller-tls-key"
        }
    }

    /// The channel to `addr` (`host:port`), created on first use.
    pub fn get(&self, addr: &str) -> Result<Channel, tonic::transport::Error> {
        let mut map = self.by_addr.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(channel) = map.get(addr) {
            return Ok(channel.clone());
        }
        // With TLS the scheme stays `http`: the handshake is the connector's,
        // made with the certificates current when (re)connecting.
        let endpoint = Endpoint::from_shared(format!("http://{addr}"))?
            .connect_timeout(CONNECT_TIMEOUT)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(10))
            .keep_alive_timeout(Duration::from_secs(5))
            .keep_alive_while_idle(true);
        let channel = match &self.tls {
            Some(tls) => endpoint.connect_with_connector_lazy(TlsConnector::new(tls.clone())),
            None => endpoint.connect_lazy(),
        };
        map.insert(addr.to_owned(), channel.clone());
        Ok(channel)
    }
}

/// The [`RaftNetworkFactory`] of one controller.
#[derive(Debug, Clone, Default)]
pub struct GrpcNetwork {
    from: NodeId,
    channels: Channels,
}

impl GrpcNetwork {
    /// Controller `from`'s network, its channels shared with `channels`.
    pub fn new(from: NodeId, channels: Channels) -> GrpcNetwork {
        GrpcNetwork { from, channels }
    }
}

/// One controller's connection to one peer.
#[derive(Debug, Clone)]
pub struct GrpcConnection {
    from: NodeId,
    target: NodeId,
    addr: String,
    client: Option<RaftPeerClient<Channel>>,
}

impl RaftNetworkFactory<TypeConfig> for GrpcNetwork {
    type Network = GrpcConnection;

    async fn new_client(&mut self, target: NodeId, node: &ControllerNode) -> Self::Network {
        let client = match self.channels.get(&node.raft_addr) {
            Ok(channel) => Some(
                RaftPeerClient::new(channel)
                    .max_decoding_message_size(MAX_MESSAGE_BYTES)
                    .max_encoding_message_size(MAX_MESSAGE_BYTES),
            ),
            Err(e) => {
                tracing::warn!(target, addr = %node.raft_addr, error = %e, "invalid controller address");
                None
            }
        };
        GrpcConnection {
            from: self.from,
            target,
            addr: node.raft_addr.clone(),
            client,
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("controller {target} at {addr}: {what}")]
struct PeerError {
    target: NodeId,
    addr: String,
    what: String,
}

impl GrpcConnection {
    fn error(&self, what: impl std::fmt::Display) -> PeerError {
        PeerError {
            target: self.target,
            addr: self.addr.clone(),
            what: what.to_string(),
        }
    }

    /// Sends one request and decodes `Result<Resp, E>` from the reply.
    async fn call<Req, Resp, E>(
        &mut self,
        method: Method,
        request: &Req,
        data: Vec<u8>,
        option: &RPCOption,
    ) -> Result<Resp, RPCError<NodeId, ControllerNode, E>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let json = serde_json::to_vec(request)
            .map_err(|e| RPCError::Network(NetworkError::new(&self.error(e))))?;
        let Some(client) = self.client.as_mut() else {
            let e = self.error("invalid address");
            return Err(RPCError::Unreachable(Unreachable::new(&e)));
        };
        let mut req = tonic::Request::new(RaftPayload { json, data });
        let ttl = option.hard_ttl();
        req.set_timeout(ttl);
        let reply = match method {
            Method::Append => client.append_entries(req).await,
            Method::Vote => client.vote(req).await,
            Method::Snapshot => client.install_snapshot(req).await,
        };
        let reply = reply.map_err(|status| self.transport_error(status, method, ttl))?;
        let result: Result<Resp, E> = serde_json::from_slice(&reply.into_inner().json)
            .map_err(|e| RPCError::Network(NetworkError::new(&self.error(e))))?;
        result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }

    fn transport_error<E: std::error::Error>(
        &self,
        status: tonic::Status,
        method: Method,
        ttl: Duration,
    ) -> RPCError<NodeId, ControllerNode, E> {
        match status.code() {
            tonic::Code::DeadlineExceeded | tonic::Code::Cancelled => RPCError::Timeout(Timeout {
                action: match method {
                    Method::Append => RPCTypes::AppendEntries,
                    Method::Vote => RPCTypes::Vote,
                    Method::Snapshot => RPCTypes::InstallSnapshot,
                },
                id: self.from,
                target: self.target,
                timeout: ttl,
            }),
            tonic::Code::Unavailable => {
                RPCError::Unreachable(Unreachable::new(&self.error(status.message())))
            }
            _ => RPCError::Network(NetworkError::new(&self.error(format!(
                "{:?}: {}",
                status.code(),
                status.message()
            )))),
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Method {
    Append,
    Vote,
    Snapshot,
}

impl RaftNetwork<TypeConfig> for GrpcConnection {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, ControllerNode, RaftError<NodeId>>>
    {
        self.call(Method::Append, &rpc, Vec::new(), &option).await
    }

    async fn install_snapshot(
        &mut self,
        mut rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, ControllerNode, RaftError<NodeId, InstallSnapshotError>>,
    > {
        let data = std::mem::take(&mut rpc.data);
        self.call(Method::Snapshot, &rpc, data, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, ControllerNode, RaftError<NodeId>>> {
        self.call(Method::Vote, &rpc, Vec::new(), &option).await
    }
}
