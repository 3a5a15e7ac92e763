//! The broker's view of the metadata controller. In the one-process local
//! mode this is the durable single-node store; every change goes through
//! `propose` (a command applied by the controller's pure `apply`), and reads
//! see the applied state.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use floe_controller::model::{
    ApplyError, Command, IndexCommit, IndexEntry, MetadataState, ObjectMeta, Outcome, PartitionId,
};
use floe_controller::store::{LocalStore, StoreError};
use uuid::Uuid;

use crate::storage::compactor::Retention;
use crate::storage::{ObjectIndex, PartitionMeta};

/// Kafka's default `retention.ms`: seven days.
const DEFAULT_RETENTION_MS: i64 = 7 * 24 * 3600 * 1000;

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("metadata task failed: {0}")]
    Task(String),
}

impl ClusterError {
    /// The refused command's reason, if this was a refusal (nothing changed).
    pub fn apply_error(&self) -> Option<&ApplyError> {
        match self {
            ClusterError::Store(StoreError::Apply(e)) => Some(e),
            _ => None,
        }
    }
}

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
    store: Arc<LocalStore>,
    routes: std::sync::RwLock<std::collections::HashMap<String, TopicRoute>>,
}

impl Cluster {
    pub fn open(dir: &Path) -> Result<Cluster, ClusterError> {
        let cluster = Cluster {
            store: Arc::new(LocalStore::open(dir)?),
            routes: Default::default(),
        };
        cluster.rebuild_routes();
        Ok(cluster)
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
        let store = self.store.clone();
        let outcome = tokio::task::spawn_blocking(move || store.propose(cmd))
            .await
            .map_err(|e| ClusterError::Task(e.to_string()))?
            .map_err(ClusterError::from)?;
        if changes_topics {
            self.rebuild_routes();
        }
        Ok(outcome)
    }

    /// The routing table is rebuilt only after a durable topic change.
    fn rebuild_routes(&self) {
        let routes = self.read(|s| {
            s.topics
                .values()
                .map(|t| {
                    let max_message_bytes = t
                        .configs
                        .get("max.message.bytes")
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(DEFAULT_MAX_MESSAGE_BYTES);
                    let route = TopicRoute {
                        id: t.id,
                        partitions: t.partitions.len() as i32,
                        max_message_bytes,
                    };
                    (t.name.clone(), route)
                })
                .collect()
        });
        *self.routes.write().unwrap_or_else(|e| e.into_inner()) = routes;
    }

    /// Route a data-path request (Produce, Fetch, ListOffsets, ...).
    pub fn route(&self, topic: &str) -> Option<TopicRoute> {
        self.routes
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(topic)
            .copied()
    }

    /// Read the applied state. A poisoned store (after a failed fsync) reads
    /// as empty; every write fails and tells the operator to restart.
    pub fn read<R: Default>(&self, f: impl FnOnce(&MetadataState) -> R) -> R {
        match self.store.read(f) {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "metadata store unavailable");
                R::default()
            }
        }
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

fn meta(p: &floe_controller::model::Partition) -> PartitionMeta {
    PartitionMeta {
        leader_epoch: p.leader_epoch,
        log_start_offset: p.log_start_offset,
        committed_end: p.committed_end,
        producers: p.producers.values().cloned().collect(),
    }
}

impl ObjectIndex for Cluster {
    fn commit(&self, object: ObjectMeta, entries: Vec<IndexCommit>) -> Result<(), String> {
        self.store
            .propose(Command::CommitObject { object, entries })
            .map(|_| ())
            .map_err(|e| e.to_string())
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
        match self.store.propose(Command::TrimPartition {
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
        match self.store.propose(Command::ReplaceIndexEntries {
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
            .store
            .propose(Command::CommitOffsets {
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
            .store
            .propose(Command::DeleteGroup {
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
            .store
            .propose(Command::DeleteGroupOffsets {
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
