//! A 3-node controller quorum in one process, over the in-process router:
//! elect, commit, lose the leader (isolated, then killed), keep every
//! committed command, restart every node from disk, and check that all
//! replicas applied the same commands in the same order.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use floe_controller::model::{Command, CommittedOffset, MetadataState, Outcome};
use floe_controller::raft::{
    open_storage, ControllerNode, NodeId, Raft, Response, Router, StateMachine,
};
use floe_controller::ApplyError;
use openraft::error::{ClientWriteError, RaftError};
use openraft::{Config, LogId, ServerState, SnapshotPolicy};
use uuid::Uuid;

const NODES: [NodeId; 3] = [1, 2, 3];
/// Generous against the election timeouts below, so a slow CI box does not flake.
const WAIT: Duration = Duration::from_secs(10);

struct Node {
    raft: Raft,
    sm: StateMachine,
}

struct Cluster {
    root: PathBuf,
    router: Router,
    nodes: BTreeMap<NodeId, Node>,
}

fn config() -> anyhow::Result<Arc<Config>> {
    let config = Config {
        cluster_name: "floe-test".to_owned(),
        heartbeat_interval: 50,
        election_timeout_min: 300,
        election_timeout_max: 600,
        // Snapshot and purge often, so restarts read snapshots and a
        // lagging node is caught up by snapshot installation.
        snapshot_policy: SnapshotPolicy::LogsSinceLast(8),
        max_in_snapshot_log_to_keep: 2,
        purge_batch_size: 1,
        ..Config::default()
    };
    Ok(Arc::new(config.validate()?))
}

impl Cluster {
    fn new(root: &Path) -> Cluster {
        Cluster {
            root: root.to_owned(),
            router: Router::new(),
            nodes: BTreeMap::new(),
        }
    }

    async fn start(&mut self, id: NodeId) -> anyhow::Result<()> {
        let (log, sm) = open_storage(&self.root.join(format!("node-{id}"))).await?;
        let raft = Raft::new(id, config()?, self.router.network(id), log, sm.clone()).await?;
        self.router.add(id, raft.clone());
        self.nodes.insert(id, Node { raft, sm });
        Ok(())
    }

    /// Stops a node as a crash would, as far as its peers can tell.
    async fn kill(&mut self, id: NodeId) -> anyhow::Result<()> {
        self.router.remove(id);
        let node = self.nodes.remove(&id).context("no such node")?;
        node.raft
            .shutdown()
            .await
            .map_err(|e| anyhow!("shutdown of node {id}: {e}"))?;
        Ok(())
    }

    fn raft(&self, id: NodeId) -> anyhow::Result<&Raft> {
        Ok(&self
            .nodes
            .get(&id)
            .with_context(|| format!("node {id} is not running"))?
            .raft)
    }

    /// Waits until the nodes in `among` agree on one leader (not `except`).
    async fn leader(&self, among: &[NodeId], except: Option<NodeId>) -> anyhow::Result<NodeId> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let views: Vec<Option<NodeId>> = among
                .iter()
                .map(|id| Ok(self.raft(*id)?.metrics().borrow().current_leader))
                .collect::<anyhow::Result<_>>()?;
            if let Some(Some(leader)) = views.first() {
                let agreed = views.iter().all(|v| *v == Some(*leader));
                let is_leader = self
                    .raft(*leader)
                    .map(|r| r.metrics().borrow().state == ServerState::Leader);
                if agreed && Some(*leader) != except && is_leader.unwrap_or(false) {
                    return Ok(*leader);
                }
            }
            if tokio::time::Instant::now() > deadline {
                bail!("no agreed leader among {among:?} (excluding {except:?}) within {WAIT:?}: {views:?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Proposes through `via`, following leader hints; returns the entry's
    /// log id and the state machine's answer once committed and applied.
    async fn propose(
        &self,
        via: NodeId,
        cmd: Command,
    ) -> anyhow::Result<(LogId<NodeId>, Response)> {
        let mut target = via;
        for _ in 0..5 {
            let write = self.raft(target)?.client_write(cmd.clone().into());
            match tokio::time::timeout(WAIT, write)
                .await
                .context("proposal timed out")?
            {
                Ok(reply) => {
                    let answer = reply.data.into_iter().next().context("no answer")?;
                    return Ok((reply.log_id, answer.response));
                }
                Err(RaftError::APIError(ClientWriteError::ForwardToLeader(hint))) => {
                    target = hint
                        .leader_id
                        .with_context(|| format!("node {target} knows no leader"))?;
                }
                Err(e) => bail!("proposal via node {target} failed: {e}"),
            }
        }
        bail!("proposal kept being forwarded")
    }

    async fn wait_applied(&self, id: NodeId, index: u64) -> anyhow::Result<()> {
        self.raft(id)?
            .wait(Some(WAIT))
            .applied_index_at_least(Some(index), "catch up")
            .await?;
        Ok(())
    }

    fn state(&self, id: NodeId) -> anyhow::Result<(MetadataState, Option<LogId<NodeId>>)> {
        let node = self.nodes.get(&id).context("node not running")?;
        Ok(node.sm.read(|state, last| (state.clone(), last)))
    }
}

fn create_topic(name: &str) -> Command {
    Command::CreateTopic {
        name: name.to_owned(),
        id: Uuid::new_v4(),
        partitions: 3,
        configs: BTreeMap::new(),
        leader: 1,
    }
}

fn commit_offset(group: &str, topic: &str, offset: i64) -> Command {
    let committed = CommittedOffset {
        offset,
        leader_epoch: 0,
        metadata: None,
        commit_ms: 1_000 + offset,
    };
    Command::CommitOffsets {
        group: group.to_owned(),
        offsets: vec![(topic.to_owned(), 0, committed)],
    }
}

/// What the test proposed and was acknowledged, to check against every replica.
#[derive(Default)]
struct Acked {
    topics: BTreeMap<String, Uuid>,
    offsets: BTreeMap<String, i64>,
    last_index: u64,
}

impl Acked {
    async fn topic(&mut self, cluster: &Cluster, via: NodeId, name: &str) -> anyhow::Result<()> {
        let (log_id, response) = cluster.propose(via, create_topic(name)).await?;
        let Ok(Outcome::TopicCreated { id }) = response else {
            bail!("create {name}: {response:?}")
        };
        self.topics.insert(name.to_owned(), id);
        self.last_index = log_id.index;
        Ok(())
    }

    async fn offset(
        &mut self,
        cluster: &Cluster,
        via: NodeId,
        group: &str,
        topic: &str,
        offset: i64,
    ) -> anyhow::Result<()> {
        let (log_id, response) = cluster
            .propose(via, commit_offset(group, topic, offset))
            .await?;
        anyhow::ensure!(
            response == Ok(Outcome::Done),
            "commit {group}: {response:?}"
        );
        self.offsets.insert(group.to_owned(), offset);
        self.last_index = log_id.index;
        Ok(())
    }

    fn check(&self, state: &MetadataState) -> anyhow::Result<()> {
        for (name, id) in &self.topics {
            let topic = state
                .topics
                .get(name)
                .with_context(|| format!("acknowledged topic {name} lost"))?;
            anyhow::ensure!(topic.id == *id, "topic {name} has id {} not {id}", topic.id);
        }
        for (group, offset) in &self.offsets {
            let found = state
                .groups
                .get(group)
                .and_then(|g| g.offsets.get("orders"))
                .and_then(|p| p.get(&0));
            anyhow::ensure!(
                found.map(|c| c.offset) == Some(*offset),
                "group {group} has {found:?}, acked {offset}"
            );
        }
        Ok(())
    }
}

/// Every running node caught up to `index`, with identical state.
async fn converged(
    cluster: &Cluster,
    ids: &[NodeId],
    index: u64,
    acked: &Acked,
) -> anyhow::Result<MetadataState> {
    let mut states = Vec::new();
    for id in ids {
        cluster.wait_applied(*id, index).await?;
    }
    // Blank entries of a new term may still be in flight: compare at the
    // highest applied index any node has reached.
    let top = ids
        .iter()
        .map(|id| cluster.state(*id).map(|s| s.1.map_or(0, |l| l.index)))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let top = top.into_iter().max().unwrap_or(index);
    for id in ids {
        cluster.wait_applied(*id, top).await?;
        states.push((id, cluster.state(*id)?));
    }
    let (first_id, first) = &states[0];
    acked.check(&first.0)?;
    for (id, state) in &states[1..] {
        anyhow::ensure!(
            state == first,
            "node {id} diverged from node {first_id}: {:?} vs {:?}",
            state.1,
            first.1
        );
    }
    Ok(first.0.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_survive_leader_loss_and_a_full_restart() -> anyhow::Result<()> {
    tokio::time::timeout(Duration::from_secs(30), scenario())
        .await
        .context("scenario took over 30 s")?
}

async fn scenario() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut cluster = Cluster::new(dir.path());
    for id in NODES {
        cluster.start(id).await?;
    }
    let members: BTreeMap<NodeId, ControllerNode> = NODES
        .iter()
        .map(|id| {
            (
                *id,
                ControllerNode::new(format!("node-{id}"), format!("node-{id}")),
            )
        })
        .collect();
    cluster.raft(1)?.initialize(members).await?;
    let first = cluster.leader(&NODES, None).await?;

    let mut acked = Acked::default();
    let register = Command::RegisterBroker {
        id: 1,
        host: "b1".to_owned(),
        port: 9092,
        rack: None,
        volume_wal: false,
    };
    let (_, registered) = cluster.propose(first, register).await?;
    assert_eq!(registered, Ok(Outcome::BrokerRegistered { epoch: 1 }));
    acked.topic(&cluster, first, "orders").await?;
    for i in 0..10 {
        acked.topic(&cluster, first, &format!("t{i}")).await?;
        acked
            .offset(&cluster, first, &format!("g{}", i % 3), "orders", i)
            .await?;
    }
    // A refused command is committed too, and answered the same way everywhere.
    let (_, refused) = cluster.propose(first, create_topic("t0")).await?;
    assert_eq!(
        refused,
        Err(ApplyError::TopicExists {
            name: "t0".to_owned()
        })
    );

    // Partition the leader away: the others elect a new one and go on.
    cluster.router.isolate(first);
    let rest: Vec<NodeId> = NODES.iter().copied().filter(|id| *id != first).collect();
    let second = cluster.leader(&rest, Some(first)).await?;
    for i in 10..20 {
        acked.topic(&cluster, second, &format!("t{i}")).await?;
        acked
            .offset(&cluster, second, &format!("g{}", i % 3), "orders", i)
            .await?;
    }
    // The deposed leader cannot get a command acknowledged while cut off,
    // and the entry it appended alone is overwritten once it rejoins.
    let zombie = cluster
        .raft(first)?
        .client_write(create_topic("zombie").into());
    let zombie = tokio::time::timeout(Duration::from_secs(1), zombie).await;
    assert!(
        !matches!(zombie, Ok(Ok(_))),
        "an isolated leader acknowledged a write"
    );
    cluster.router.heal(first);
    let healed = converged(&cluster, &NODES, acked.last_index, &acked).await?;
    assert!(!healed.topics.contains_key("zombie"));

    // Kill the new leader: the two left elect a third, and go on.
    cluster.kill(second).await?;
    let rest: Vec<NodeId> = NODES.iter().copied().filter(|id| *id != second).collect();
    let third = cluster.leader(&rest, Some(second)).await?;
    for i in 20..40 {
        acked.topic(&cluster, third, &format!("t{i}")).await?;
        acked
            .offset(&cluster, third, &format!("g{}", i % 3), "orders", i)
            .await?;
    }
    // The killed node comes back from disk and is caught up by replication.
    cluster.start(second).await?;
    let before = converged(&cluster, &NODES, acked.last_index, &acked).await?;
    assert_eq!(before.topics.len(), 41);

    // Stop everything, restart everything from disk: each node reopens its
    // last snapshot and its log after it (the policy above has made both).
    for id in NODES {
        cluster.kill(id).await?;
        let node_dir = dir.path().join(format!("node-{id}"));
        anyhow::ensure!(
            node_dir.join("raft-snapshot.json").exists(),
            "node {id} never snapshotted"
        );
    }
    for id in NODES {
        cluster.start(id).await?;
    }
    let leader = cluster.leader(&NODES, None).await?;
    let after = converged(&cluster, &NODES, acked.last_index, &acked).await?;
    assert_eq!(after, before, "the restart changed the state");
    // The quorum still takes commands, with indexes after the old ones.
    let (log_id, _) = cluster
        .propose(leader, create_topic("after-restart"))
        .await?;
    assert!(log_id.index > acked.last_index);
    for id in NODES {
        cluster.kill(id).await?;
    }
    Ok(())
}
