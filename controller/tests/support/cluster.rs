//! Test support: controllers in one process on loopback ports, talking
//! real gRPC (the same servers and network as `floe controller`).
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, ensure, Context};
use floe_controller::grpc::access::Access;
use floe_controller::grpc::client::ClientOptions;
use floe_controller::grpc::network::Channels;
use floe_controller::grpc::node::{self, Listeners, NodeConfig, RunningController};
use floe_controller::grpc::service::{BalancerConfig, LeaseConfig};
use floe_controller::grpc::tls::Tls;
use floe_controller::grpc::ControllerClient;
use floe_controller::model::{Command, HandOff, Outcome, PartitionId};
use floe_controller::raft::{ControllerNode, NodeId};

pub const WAIT: Duration = Duration::from_secs(15);
/// Broker leases in these tests: short, so fencing is quick to observe.
pub const LEASE: Duration = Duration::from_millis(1_000);
pub const LEASE_GRACE: Duration = Duration::from_millis(300);

pub struct Cluster {
    pub root: PathBuf,
    pub voters: BTreeMap<NodeId, ControllerNode>,
    pub nodes: BTreeMap<NodeId, RunningController>,
    /// Automatic balancing of the nodes started from now on.
    pub balancer: Option<BalancerConfig>,
    /// Mutual TLS on every controller, and for [`Cluster::client`].
    pub tls: Option<Tls>,
    /// Who may speak Raft or call Admin on the nodes started from now on.
    pub access: Access,
}

pub fn config(
    root: &Path,
    id: NodeId,
    voters: &BTreeMap<NodeId, ControllerNode>,
) -> anyhow::Result<NodeConfig> {
    let mut raft = node::default_raft_config("floe-test")?;
    // Snapshot often, so that restarts and lagging nodes use snapshots.
    raft.snapshot_policy = openraft::SnapshotPolicy::LogsSinceLast(50);
    raft.max_in_snapshot_log_to_keep = 5;
    Ok(NodeConfig {
        id,
        advertised: voters.get(&id).cloned().unwrap_or_default(),
        initial_voters: voters.clone(),
        data_dir: root.join(format!("controller-{id}")),
        raft: raft.validate()?,
        bootstrap_grace: Duration::from_millis(50),
        leases: LeaseConfig {
            lease: LEASE,
            grace: LEASE_GRACE,
        },
        tls: None,
        access: Default::default(),
        // Off unless a test turns it on (`Cluster::balancer`).
        balancer: BalancerConfig {
            interval: None,
            ..BalancerConfig::default()
        },
    })
}

impl Cluster {
    /// Binds three controllers on loopback and starts them.
    pub async fn start(root: &Path) -> anyhow::Result<Cluster> {
        Cluster::start_with(root, None).await
    }

    /// Like [`Cluster::start`], with automatic balancing configured.
    pub async fn start_with(
        root: &Path,
        balancer: Option<BalancerConfig>,
    ) -> anyhow::Result<Cluster> {
        Cluster::start_configured(root, balancer, None, Access::default()).await
    }

    /// Like [`Cluster::start`], every controller speaking mutual TLS.
    pub async fn start_tls(root: &Path, tls: Tls) -> anyhow::Result<Cluster> {
        Cluster::start_configured(root, None, Some(tls), Access::default()).await
    }

    /// Like [`Cluster::start_tls`], with access limited to some names.
    pub async fn start_tls_access(
        root: &Path,
        tls: Tls,
        access: Access,
    ) -> anyhow::Result<Cluster> {
        Cluster::start_configured(root, None, Some(tls), access).await
    }

    async fn start_configured(
        root: &Path,
        balancer: Option<BalancerConfig>,
        tls: Option<Tls>,
        access: Access,
    ) -> anyhow::Result<Cluster> {
        let mut listeners = BTreeMap::new();
        let mut voters = BTreeMap::new();
        for id in 1..=3 {
            let l = Listeners::bind("127.0.0.1:0".parse()?, "127.0.0.1:0".parse()?).await?;
            let (raft, api) = l.addrs()?;
            voters.insert(id, ControllerNode::new(raft.to_string(), api.to_string()));
            listeners.insert(id, l);
        }
        let mut cluster = Cluster {
            root: root.to_owned(),
            voters,
            nodes: BTreeMap::new(),
            balancer,
            tls,
            access,
        };
        for (id, l) in listeners {
            cluster.start_node(id, l).await?;
        }
        Ok(cluster)
    }

    pub async fn start_node(&mut self, id: NodeId, listeners: Listeners) -> anyhow::Result<()> {
        let mut config = config(&self.root, id, &self.voters)?;
        if let Some(balancer) = self.balancer {
            config.balancer = balancer;
        }
        config.tls = self.tls.clone();
        config.access = self.access.clone();
        let running = node::start(config, listeners).await?;
        self.nodes.insert(id, running);
        Ok(())
    }

    /// Restarts a stopped node on its old addresses.
    pub async fn restart(&mut self, id: NodeId) -> anyhow::Result<()> {
        let addr = self.voters.get(&id).context("unknown node")?.clone();
        let listeners = Listeners::bind(addr.raft_addr.parse()?, addr.api_addr.parse()?).await?;
        self.start_node(id, listeners).await
    }

    pub async fn stop(&mut self, id: NodeId) -> anyhow::Result<()> {
        let node = self.nodes.remove(&id).context("not running")?;
        node.shutdown().await.map_err(anyhow::Error::msg)
    }

    pub fn client(&self) -> ControllerClient {
        ControllerClient::with_channels(
            self.endpoints(),
            ClientOptions {
                deadline: WAIT,
                attempt_timeout: Duration::from_secs(3),
            },
            Channels::new(self.tls.clone()),
        )
    }

    /// The controllers' metadata addresses.
    pub fn endpoints(&self) -> Vec<String> {
        self.voters.values().map(|n| n.api_addr.clone()).collect()
    }

    pub async fn leader(&self) -> anyhow::Result<NodeId> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            for node in self.nodes.values() {
                let leader = node.raft.metrics().borrow().current_leader;
                if let Some(l) = leader {
                    if self.nodes.contains_key(&l)
                        && self.nodes[&l].raft.metrics().borrow().current_leader == Some(l)
                    {
                        return Ok(l);
                    }
                }
            }
            if tokio::time::Instant::now() > deadline {
                bail!("no leader among {:?}", self.nodes.keys());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until every running node applied `index`, then returns each
    /// node's state as JSON.
    pub async fn states_at(
        &self,
        index: u64,
    ) -> anyhow::Result<BTreeMap<NodeId, serde_json::Value>> {
        let mut out = BTreeMap::new();
        for (id, node) in &self.nodes {
            let mut rx = node.sm.subscribe();
            tokio::time::timeout(WAIT, rx.wait_for(|a| *a >= index))
                .await
                .with_context(|| format!("node {id} never applied {index}"))??;
            let (at, json) = node.sm.state_json().await?;
            ensure!(at >= index);
            out.insert(*id, serde_json::from_slice(&json)?);
        }
        Ok(out)
    }
}

/// What broker `from` (incarnation `broker_epoch`) proposes once it has
/// fenced and flushed the partitions it is asked to move: every partition
/// of `topic` it leads with a move pending, under their current epochs.
/// Returns `(moved, skipped)`.
pub async fn complete_moves(
    client: &ControllerClient,
    from: i32,
    broker_epoch: i64,
    topic: &str,
) -> anyhow::Result<(u32, u32)> {
    let (_, state) = client.read_state().await?;
    let t = state.topics.get(topic).context("topic")?;
    let handoffs = t
        .partitions
        .iter()
        .enumerate()
        .filter(|(_, p)| p.leader == from && p.target.is_some())
        .map(|(i, p)| HandOff {
            partition: PartitionId {
                topic_id: t.id,
                partition: i as i32,
            },
            leader_epoch: p.leader_epoch,
            committed_end: p.committed_end,
        })
        .collect();
    let done = client
        .propose(&Command::CompleteMoves {
            from,
            broker_epoch,
            handoffs,
        })
        .await?;
    match done.answer {
        Ok(Outcome::MovesCompleted { moved, skipped }) => Ok((moved, skipped)),
        other => bail!("CompleteMoves answered {other:?}"),
    }
}
