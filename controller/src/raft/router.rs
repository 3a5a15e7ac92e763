//! `Router`: an in-process Raft network between the nodes of one process,
//! with fault injection, for tests and benchmarks.
//!
//! Contract: an RPC from node `a` to node `b` reaches `b`'s [`Raft`] handle
//! (itself a channel into `b`'s Raft core, one per peer, reused) unless `a`
//! or `b` is isolated or `b` is not registered; then it fails as
//! `Unreachable`, as a dropped connection would. A reply that arrives after
//! either side was isolated is dropped too, so isolation is a clean cut.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};

use openraft::error::{InstallSnapshotError, RPCError, RaftError, RemoteError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};

use super::{ControllerNode, NodeId, Raft, TypeConfig};

/// The switchboard shared by every node of one in-process cluster.
#[derive(Debug, Clone, Default)]
pub struct Router {
    inner: Arc<Mutex<Switchboard>>,
}

#[derive(Default)]
struct Switchboard {
    nodes: BTreeMap<NodeId, Raft>,
    isolated: BTreeSet<NodeId>,
}

impl std::fmt::Debug for Switchboard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Switchboard")
            .field("nodes", &self.nodes.keys().collect::<Vec<_>>())
            .field("isolated", &self.isolated)
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
#[error("node {node} is unreachable from node {from} (isolated or not running)")]
struct Unrouted {
    from: NodeId,
    node: NodeId,
}

impl Router {
    /// A router with no nodes.
    pub fn new() -> Router {
        Router::default()
    }

    fn board(&self) -> MutexGuard<'_, Switchboard> {
        // Every edit is one map operation: a poisoned lock holds consistent data.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The network factory that node `from` passes to `Raft::new`.
    pub fn network(&self, from: NodeId) -> RouterNetwork {
        RouterNetwork {
            router: self.clone(),
            from,
        }
    }

    /// Makes `raft` reachable as node `id` (replacing a stopped incarnation).
    pub fn add(&self, id: NodeId, raft: Raft) {
        self.board().nodes.insert(id, raft);
    }

    /// Makes node `id` unreachable, as a stopped process would be.
    pub fn remove(&self, id: NodeId) -> Option<Raft> {
        self.board().nodes.remove(&id)
    }

    /// Cuts node `id` off from every other node, in both directions.
    pub fn isolate(&self, id: NodeId) {
        self.board().isolated.insert(id);
    }

    /// Reconnects an isolated node.
    pub fn heal(&self, id: NodeId) {
        self.board().isolated.remove(&id);
    }

    /// The target's handle, if `from` may reach it now.
    fn route(&self, from: NodeId, target: NodeId) -> Result<Raft, Unrouted> {
        let board = self.board();
        let cut = board.isolated.contains(&from) || board.isolated.contains(&target);
        match board.nodes.get(&target) {
            Some(raft) if !cut => Ok(raft.clone()),
            _ => Err(Unrouted { from, node: target }),
        }
    }

    /// Runs `call` on the target's handle, failing as unreachable when the
    /// route is cut before the call or before the reply.
    async fn call<T, E, F>(
        &self,
        from: NodeId,
        target: NodeId,
        call: impl FnOnce(Raft) -> F,
    ) -> Result<T, RPCError<NodeId, ControllerNode, E>>
    where
        E: std::error::Error,
        F: std::future::Future<Output = Result<T, E>>,
    {
        let raft = self
            .route(from, target)
            .map_err(|e| RPCError::Unreachable(Unreachable::new(&e)))?;
        let reply = call(raft).await;
        self.route(from, target)
            .map_err(|e| RPCError::Unreachable(Unreachable::new(&e)))?;
        reply.map_err(|e| RPCError::RemoteError(RemoteError::new(target, e)))
    }
}

/// The [`RaftNetworkFactory`] of one node: connections from `from`.
#[derive(Debug, Clone)]
pub struct RouterNetwork {
    router: Router,
    from: NodeId,
}

/// One node's connection to one peer.
#[derive(Debug, Clone)]
pub struct RouterConnection {
    router: Router,
    from: NodeId,
    target: NodeId,
}

impl RaftNetworkFactory<TypeConfig> for RouterNetwork {
    type Network = RouterConnection;

    async fn new_client(&mut self, target: NodeId, _node: &ControllerNode) -> Self::Network {
        RouterConnection {
            router: self.router.clone(),
            from: self.from,
            target,
        }
    }
}

impl RaftNetwork<TypeConfig> for RouterConnection {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, ControllerNode, RaftError<NodeId>>>
    {
        self.router
            .call(self.from, self.target, |raft| async move {
                raft.append_entries(rpc).await
            })
            .await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, ControllerNode, RaftError<NodeId, InstallSnapshotError>>,
    > {
        self.router
            .call(self.from, self.target, |raft| async move {
                raft.install_snapshot(rpc).await
            })
            .await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        _option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, ControllerNode, RaftError<NodeId>>> {
        self.router
            .call(self.from, self.target, |raft| async move {
                raft.vote(rpc).await
            })
            .await
    }
}
