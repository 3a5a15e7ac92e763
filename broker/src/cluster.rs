//! The broker's view of the metadata controller: in the one-process local
//! mode the durable single-node store, in a cluster the controller quorum
//! (proposals over gRPC, reads from a [`Mirror`] that follows its watch).
//! Every change goes through `propose` (a command applied by the
//! controller's pure `apply`), and reads see the applied state; after a
//! proposal, reads see at least that proposal's effect.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use floe_controller::grpc::client::{ClientError, ControllerClient, Mirror};
use floe_controller::model::{
    ApplyError, Command, IndexCommit, IndexEntry, MetadataState, ObjectMeta, Outcome, PartitionId,
};
use floe_controller::store::{LocalStore, StoreError};
use uuid::Uuid;

use crate::storage::compactor::Retention;
use crate::storage::{CommitError, ObjectIndex, PartitionMeta};

/// Kafka's default `retention.ms`: seven days.
const DEFAULT_RETENTION_MS: i64 = 7 * 24 * 3600 * 1000;

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("metadata task failed: {0}")]
    Task(String),
    #[error("the controller refused the command: {0}")]
    Refused(ApplyError),
    #[error("the controller quorum is unreachable: {0}")]
    Controller(#[from] ClientError),
    #[error("the controller committed the command (index {index}) but this broker's copy of the metadata did not reach it within {waited:?}")]
    MirrorBehind { index: u64, waited: Duration },
}

impl ClusterError {
    /// The refused command's reason, if this was a refusal (nothing changed).
    pub fn apply_error(&self) -> Option<&ApplyError> {
        match self {
            ClusterError::Store(StoreError::Apply(e)) | ClusterError::Refused(e) => Some(e),
            _ => None,
        }
    }
}

/// How long a proposal's author waits for its own change to reach the mirror.
const READ_YOUR_WRITES: Duration = Duration::from_secs(10);

/// A topic as the Kafka layer sees it.
#[derive(Debug, Clone)]
pub struct TopicView {
    pub id: Uuid,
    pub name: String,
    pub partitions: Vec<(i32, i32)>,
    pub configs: BTreeMap<String, String>,
}

impl TopicView {
    pub fn partition_id(&self, partition: i32) -> Option<PartitionId> {
        (partition >= 0 && (partition as usize) < self.partitions.len()).then_some(PartitionId {
            topic_id: self.id,
            partition,
        })
    }
}

/// A registered broker that is not fenced, as clients are told about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerView {
    pub id: i32,
    pub host: String,
    pub port: i32,
    pub rack: Option<String>,
    /// Handing its partitions away (about to leave): no new work goes there.
    pub draining: bool,
}

/// What the data path needs to route a request to a partition. Read without
/// touching the metadata store, whose lock is held across fsyncs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TopicRoute {
    pub id: Uuid,
    pub partitions: i32,
    pub max_message_bytes: usize,
}

impl TopicRoute {
    pub fn partition_id(&self, partition: i32) -> Option<PartitionId> {
        (0..self.partitions)
            .contains(&partition)
            .then_some(PartitionId {
                topic_id: self.id,
                partition,
            })
    }
}

/// Kafka's default `max.message.bytes`.
const DEFAULT_MAX_MESSAGE_BYTES: usize = 1_048_588;

pub struct Cluster {
    backend: Backend,
    routes: std::sync::RwLock<std::collections::HashMap<String, TopicRoute>>,
}

enum Backend {
    /// The one-process mode's durable single-node store.
    Local(Arc<LocalStore>),
    /// The controller quorum and this broker's live copy of its state.
    Quorum {
        client: ControllerClient,
        mirror: Mirror,
        runtime: tokio::runtime::Handle,
    },
}

impl Cluster {
    pub fn open(dir: &Path) -> Result<Cluster, ClusterError> {
        let cluster = Cluster {
            backend: Backend::Local(Arc::new(LocalStore::open(dir)?)),
            routes: Default::default(),
        };
        cluster.rebuild_routes();
        Ok(cluster)
    }

    /// A broker of a cluster: proposals go to the quorum, reads to `mirror`.
    /// Call from within a Tokio runtime (blocking proposals run on it).
    pub fn quorum(client: ControllerClient, mirror: Mirror) -> Cluster {
        Cluster {
            backend: Backend::Quorum {
                client,
                mirror,
                runtime: tokio::runtime::Handle::current(),
            },
            routes: Default::default(),
        }
    }

    /// The mirror this cluster reads, if it follows a quorum.
    pub fn mirror(&self) -> Option<&Mirror> {
        match &self.backend {
            Backend::Local(_) => None,
            Backend::Quorum { mirror, .. } => Some(mirror),
        }
    }

    /// Apply a command durably (off the async reactor).
    pub async fn propose(&self, cmd: Command) -> Result<Outcome, ClusterError> {
        let changes_topics = matches!(
            cmd,
            Command::CreateTopic { .. }
                | Command::DeleteTopic { .. }
                | Command::CreatePartitions { .. }
                | Command::AlterTopicConfigs { .. }
        );
        let outcome = match &self.backend {
            Backend::Local(store) => {
                let store = store.clone();
                tokio::task::spawn_blocking(move || store.propose(cmd))
                    .await
                    .map_err(|e| ClusterError::Task(e.to_string()))?
                    .map_err(ClusterError::from)?
            }
            Backend::Quorum { client, mirror, .. } => {
                propose_to_quorum(client, mirror, &cmd).await?
            }
        };
        if changes_topics {
            self.rebuild_routes();
        }
        Ok(outcome)
    }

    /// Apply a command from a blocking thread (never from the reactor).
    fn propose_blocking(&self, cmd: Command) -> Result<Outcome, ClusterError> {
        match &self.backend {
            Backend::Local(store) => Ok(store.propose(cmd)?),
            Backend::Quorum {
                client,
                mirror,
                runtime,
            } => runtime.block_on(propose_to_quorum(client, mirror, &cmd)),
        }
    }

    /// The routing table is rebuilt only after a durable topic change.
    fn rebuild_routes(&self) {
        if matches!(self.backend, Backend::Quorum { .. }) {
            return;
        }
        let routes = self.read(|s| {
            s.topics
                .values()
                .map(|t| (t.name.clone(), route_of(t)))
                .collect()
        });
        *self.routes.write().unwrap_or_else(|e| e.into_inner()) = routes;
    }

    /// Route a data-path request (Produce, Fetch, ListOffsets, ...).
    pub fn route(&self, topic: &str) -> Option<TopicRoute> {
        if let Backend::Quorum { mirror, .. } = &self.backend {
            // Other brokers change topics too: the mirror is the truth.
            return mirror.read(|s| s.topics.get(topic).map(route_of));
        }
        self.routes
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(topic)
            .copied()
    }

    /// Read the applied state. A poisoned store (after a failed fsync) reads
    /// as empty; every write fails and tells the operator to restart.
    pub fn read<R: Default>(&self, f: impl FnOnce(&MetadataState) -> R) -> R {
        let store = match &self.backend {
            Backend::Local(store) => store,
            Backend::Quorum { mirror, .. } => return mirror.read(f),
        };
        match store.read(f) {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "metadata store unavailable");
                R::default()
            }
        }
    }

    /// Registered, unfenced brokers, by id.
    pub fn live_brokers(&self) -> Vec<BrokerView> {
        self.read(|s| {
            s.brokers
                .values()
                .filter(|b| !b.fenced)
                .map(|b| BrokerView {
                    id: b.id,
                    host: b.host.clone(),
                    port: b.port,
                    rack: b.rack.clone(),
                    draining: b.draining,
                })
                .collect()
        })
    }

    pub fn topic(&self, name: &str) -> Option<TopicView> {
        self.read(|s| s.topics.get(name).map(view))
    }

    pub fn topic_by_id(&self, id: Uuid) -> Option<TopicView> {
        self.read(|s| s.topic_by_id(id).map(view))
    }

    pub fn topics(&self) -> Vec<TopicView> {
        self.read(|s| s.topics.values().map(view).collect())
    }

    /// Everything the storage engine needs to open each partition.
    pub fn partition_metas(&self) -> Vec<(PartitionId, PartitionMeta)> {
        self.read(|s| {
            s.topics
                .values()
                .flat_map(|t| {
                    t.partitions.iter().enumerate().map(|(i, p)| {
                        (
                            PartitionId {
                                topic_id: t.id,
                                partition: i as i32,
                            },
                            meta(p),
                        )
                    })
                })
                .collect()
        })
    }

    pub fn partition_meta(&self, id: PartitionId) -> Option<PartitionMeta> {
        self.read(|s| s.partition(id).map(meta))
    }
}

/// Proposes `cmd` exactly once and waits until `mirror` includes it.
async fn propose_to_quorum(
    client: &ControllerClient,
    mirror: &Mirror,
    cmd: &Command,
) -> Result<Outcome, ClusterError> {
    let committed = client.propose(cmd).await?;
    if !mirror.wait_for(committed.index, READ_YOUR_WRITES).await {
        return Err(ClusterError::MirrorBehind {
            index: committed.index,
            waited: READ_YOUR_WRITES,
        });
    }
    committed.answer.map_err(ClusterError::Refused)
}

fn route_of(t: &floe_controller::model::Topic) -> TopicRoute {
    TopicRoute {
        id: t.id,
        partitions: t.partitions.len() as i32,
        max_message_bytes: t
            .configs
            .get("max.message.bytes")
            .and_then(|v| v.parse().ok())
            .unwrap_or(DEFAULT_MAX_MESSAGE_BYTES),
    }
}

fn view(t: &floe_controller::model::Topic) -> TopicView {
    TopicView {
        id: t.id,
        name: t.name.clone(),
        partitions: t
            .partitions
            .iter()
            .map(|p| (p.leader, p.leader_epoch))
            .collect(),
        configs: t.configs.clone(),
    }
}

pub(crate) fn meta(p: &floe_controller::model::Partition) -> PartitionMeta {
    PartitionMeta {
        leader_epoch: p.leader_epoch,
        log_start_offset: p.log_start_offset,
        committed_end: p.committed_end,
        producers: p.producers.values().cloned().collect(),
    }
}

impl ObjectIndex for Cluster {
    fn commit(&self, object: ObjectMeta, entries: Vec<IndexCommit>) -> Result<(), CommitError> {
        match self.propose_blocking(Command::CommitObject { object, entries }) {
            Ok(_) => Ok(()),
            Err(e) => Err(match e.apply_error() {
                Some(
                    ApplyError::StaleLeaderEpoch { partition, .. }
                    | ApplyError::UnknownPartition { partition }
                    | ApplyError::NonContiguousCommit { partition, .. },
                ) => CommitError::LeadershipLost {
                    partition: *partition,
                    reason: e.to_string(),
                },
                _ => CommitError::Failed(e.to_string()),
            }),
        }
    }

    fn entry_at(&self, partition: PartitionId, offset: i64) -> Option<IndexEntry> {
        self.read(|s| s.index_entry_at(partition, offset).cloned())
    }

    fn entry_for_timestamp(&self, partition: PartitionId, ts: i64) -> Option<IndexEntry> {
        self.read(|s| s.offset_for_timestamp(partition, ts).cloned())
    }

    fn entries(&self, partition: PartitionId) -> Vec<IndexEntry> {
        self.read(|s| {
            s.partition(partition)
                .map(|p| {
                    p.index
                        .values()
                        .filter(|e| e.end_offset > p.log_start_offset)
                        .cloned()
                        .collect()
                })
                .unwrap_or_default()
        })
    }

    fn log_start(&self, partition: PartitionId) -> Option<i64> {
        self.read(|s| s.partition(partition).map(|p| p.log_start_offset))
    }

    fn retention(&self, partition: PartitionId) -> Retention {
        self.read(|s| {
            let Some(t) = s.topic_by_id(partition.topic_id) else {
                return Retention::default();
            };
            let limit = |key: &str, default: i64| {
                let v = t
                    .configs
                    .get(key)
                    .and_then(|v| v.parse::<i64>().ok())
                    .unwrap_or(default);
                (v >= 0).then_some(v)
            };
            Retention {
                ms: limit("retention.ms", DEFAULT_RETENTION_MS),
                bytes: limit("retention.bytes", -1),
            }
        })
    }

    fn trim(&self, partition: PartitionId, log_start: i64) -> Result<Vec<String>, String> {
        match self.propose_blocking(Command::TrimPartition {
            partition,
            log_start_offset: log_start,
        }) {
            Ok(Outcome::ObjectsReleased { keys }) => Ok(keys),
            Ok(_) => Ok(Vec::new()),
            Err(e) => Err(e.to_string()),
        }
    }

    fn replace(
        &self,
        partition: PartitionId,
        replaced: Vec<IndexEntry>,
        replacement: IndexEntry,
        object: ObjectMeta,
    ) -> Result<Vec<String>, String> {
        match self.propose_blocking(Command::ReplaceIndexEntries {
            partition,
            replaced,
            replacement,
            object,
        }) {
            Ok(Outcome::ObjectsReleased { keys }) => Ok(keys),
            Ok(_) => Ok(Vec::new()),
            Err(e) => Err(e.to_string()),
        }
    }

    fn entry_with_max_timestamp(&self, partition: PartitionId) -> Option<IndexEntry> {
        self.read(|s| {
            let p = s.partition(partition)?;
            p.index
                .values()
                .filter(|e| e.end_offset > p.log_start_offset)
                .max_by_key(|e| e.max_timestamp)
                .cloned()
        })
    }
}

/// Committed consumer-group offsets, kept by the controller.
pub struct GroupOffsets {
    cluster: Arc<Cluster>,
}

impl GroupOffsets {
    pub fn new(cluster: Arc<Cluster>) -> GroupOffsets {
        GroupOffsets { cluster }
    }
}

impl floe_group::OffsetStore for GroupOffsets {
    fn commit(
        &self,
        group: &str,
        offsets: Vec<floe_group::OffsetCommitEntry>,
    ) -> Result<(), floe_group::OffsetStoreError> {
        let count = offsets.len();
        let offsets = offsets
            .into_iter()
            .map(|o| {
                (
                    o.topic,
                    o.partition,
                    floe_controller::model::CommittedOffset {
                        offset: o.offset,
                        leader_epoch: o.leader_epoch,
                        metadata: Some(o.metadata),
                        commit_ms: o.commit_ms,
                    },
                )
            })
            .collect();
        self.cluster
            .propose_blocking(Command::CommitOffsets {
                group: group.to_owned(),
                offsets,
            })
            .map(|_| ())
            .map_err(|e| floe_group::OffsetStoreError::CommitOffsets {
                group: group.to_owned(),
                count,
                reason: e.to_string(),
            })
    }

    fn fetch(&self, group: &str) -> Vec<floe_group::OffsetCommitEntry> {
        self.cluster.read(|s| {
            s.groups
                .get(group)
                .map(|g| {
                    g.offsets
                        .iter()
                        .flat_map(|(topic, parts)| {
                            parts
                                .iter()
                                .map(move |(p, c)| floe_group::OffsetCommitEntry {
                                    topic: topic.clone(),
                                    partition: *p,
                                    offset: c.offset,
                                    leader_epoch: c.leader_epoch,
                                    metadata: c.metadata.clone().unwrap_or_default(),
                                    commit_ms: c.commit_ms,
                                })
                        })
                        .collect()
                })
                .unwrap_or_default()
        })
    }

    fn delete_group(&self, group: &str) -> Result<(), floe_group::OffsetStoreError> {
        self.cluster
            .propose_blocking(Command::DeleteGroup {
                group: group.to_owned(),
            })
            .map(|_| ())
            .map_err(|e| floe_group::OffsetStoreError::DeleteGroup {
                group: group.to_owned(),
                reason: e.to_string(),
            })
    }

    fn delete_offsets(
        &self,
        group: &str,
        topic: &str,
        partitions: &[i32],
    ) -> Result<(), floe_group::OffsetStoreError> {
        self.cluster
            .propose_blocking(Command::DeleteGroupOffsets {
                group: group.to_owned(),
                topic: topic.to_owned(),
                partitions: partitions.to_vec(),
            })
            .map(|_| ())
            .map_err(|e| floe_group::OffsetStoreError::DeleteOffsets {
                group: group.to_owned(),
                topic: topic.to_owned(),
                reason: e.to_string(),
            })
    }

    fn groups_with_offsets(&self) -> Vec<String> {
        self.cluster.read(|s| {
            s.groups
                .iter()
                .filter(|(_, g)| !g.offsets.is_empty())
                .map(|(k, _)| k.clone())
                .collect()
        })
    }

    fn topic_exists(&self, topic: &str) -> bool {
        self.cluster.read(|s| s.topics.contains_key(topic))
    }
}
