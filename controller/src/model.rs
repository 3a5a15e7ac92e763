//! The metadata model: the replicated state and the commands that change it.
//!
//! Contract: [`apply`] is pure and deterministic. It either applies a command
//! completely or refuses it with an [`ApplyError`] and leaves the state
//! untouched, so every replica (and every restart) that applies the same
//! command sequence reaches the same state. The read helpers on
//! [`MetadataState`] answer the broker's lookups (topic by id, index entry by
//! offset or timestamp) without scanning every topic.
//!
//! Change the state only through [`apply`]: it also maintains a private
//! topic-id lookup that direct edits of the public maps would leave stale.

mod apply;
#[cfg(test)]
pub(crate) mod fixture;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub use apply::{
    apply, decide, rebalance_plan, rebalance_would_move, ApplyError, Outcome, MAX_PARTITIONS,
    MAX_PRODUCER_ID_BLOCK,
};

/// A partition, named by the topic's immutable id (never its name, which can be reused).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PartitionId {
    pub topic_id: Uuid,
    pub partition: i32,
}

impl fmt::Display for PartitionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.topic_id, self.partition)
    }
}

/// The whole replicated metadata state.
///
/// Deserializing rebuilds (and checks) the topic-id lookup, so a snapshot
/// cannot smuggle in two topics with one id. Equality ignores that lookup: it
/// is derived data.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(try_from = "StateFields")]
pub struct MetadataState {
    /// Topics by name.
    pub topics: BTreeMap<String, Topic>,
    /// Registered brokers by id.
    pub brokers: BTreeMap<i32, Broker>,
    /// Objects that the index may name, by key.
    pub objects: BTreeMap<String, ObjectMeta>,
    /// Committed consumer-group offsets: group -> "topic/partition" is avoided;
    /// a vector keeps JSON simple and order deterministic.
    pub groups: BTreeMap<String, GroupOffsets>,
    /// The next producer id to hand out.
    pub next_producer_id: i64,
    /// Index of the last applied command (the store's log position).
    pub last_applied: u64,
    /// Topic id -> topic name, so commits and fetches (which name partitions
    /// by id) find their topic in O(log n). Maintained by [`apply`].
    #[serde(skip)]
    topic_names: BTreeMap<Uuid, String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Broker {
    pub id: i32,
    pub host: String,
    pub port: i32,
    pub rack: Option<String>,
    /// Bumped on every registration; fences an older incarnation.
    pub epoch: i64,
    /// Its lease lapsed: it acknowledges nothing until it registers again.
    #[serde(default)]
    pub fenced: bool,
    /// Its write-ahead log is on a local volume (`volume` WAL mode): data it
    /// acknowledged may be only there, so fencing it leaves its partitions
    /// with it (unavailable) until it comes back with its volume.
    #[serde(default)]
    pub volume_wal: bool,
    /// Being drained: its partitions are moving away and none are placed on
    /// it until it registers again.
    #[serde(default)]
    pub draining: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Topic {
    pub id: Uuid,
    pub name: String,
    /// Topic-level config overrides (`retention.ms`, `cleanup.policy`, ...).
    pub configs: BTreeMap<String, String>,
    /// Shared with copies of the state (watch and Raft snapshots): a copy
    /// costs one reference per partition, and `apply` copies a partition
    /// (`Arc::make_mut`) only when it changes one still shared.
    pub partitions: Vec<Arc<Partition>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Partition {
    pub leader: i32,
    pub leader_epoch: i32,
    /// First offset still readable (retention and DeleteRecords move it up).
    pub log_start_offset: i64,
    /// One past the last offset whose data is in a committed object.
    pub committed_end: i64,
    /// Object index: base offset -> entry. Entries are contiguous: each entry's
    /// `base_offset` equals the previous entry's `end_offset`.
    pub index: BTreeMap<i64, IndexEntry>,
    /// Idempotent-producer state as of `committed_end`.
    pub producers: BTreeMap<i64, ProducerSnapshot>,
    /// A requested move: the leader hands the partition to this broker once
    /// it has fenced it and committed everything it accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<i32>,
    /// Bytes per second in and out, as its leader last reported (0: idle or
    /// unknown). Balancing weighs partitions by it.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub load: u64,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

/// Where a contiguous range of a partition's record batches lives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexEntry {
    pub base_offset: i64,
    /// Exclusive.
    pub end_offset: i64,
    pub leader_epoch: i32,
    pub object_key: String,
    pub byte_start: u64,
    pub byte_len: u64,
    /// Largest record timestamp in the range (for ListOffsets by time and retention.ms).
    pub max_timestamp: i64,
}

/// The state of one idempotent producer on one partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProducerSnapshot {
    pub producer_id: i64,
    pub producer_epoch: i16,
    /// Recent batches, oldest first (at most 5): (first sequence, last sequence, base offset).
    pub batches: Vec<(i32, i32, i64)>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectMeta {
    pub key: String,
    pub size: u64,
    pub created_ms: i64,
    /// How many index entries name this object; 0 means it can be deleted.
    pub live_entries: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GroupOffsets {
    pub offsets: BTreeMap<String, BTreeMap<i32, CommittedOffset>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommittedOffset {
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: Option<String>,
    pub commit_ms: i64,
}

/// One partition's part of an uploaded object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IndexCommit {
    pub partition: PartitionId,
    pub entry: IndexEntry,
    /// Producer state of this partition as of `entry.end_offset`.
    pub producers: Vec<ProducerSnapshot>,
}

/// A requested move of one partition's leadership.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Move {
    pub partition: PartitionId,
    pub to: i32,
}

/// A partition its old leader has fenced and flushed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HandOff {
    pub partition: PartitionId,
    /// The leader epoch it was led under.
    pub leader_epoch: i32,
    /// Everything it accepted is committed up to here.
    pub committed_end: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Command {
    /// Ask the leaders of these partitions to hand them over (a move to the
    /// current leader cancels a pending move).
    RequestMoves {
        moves: Vec<Move>,
    },
    /// Broker `from` (incarnation `broker_epoch`) fenced these partitions
    /// and committed all they accepted: their new leaders take over.
    CompleteMoves {
        from: i32,
        broker_epoch: i64,
        handoffs: Vec<HandOff>,
    },
    /// Move every partition of broker `id` away and place nothing on it.
    DrainBroker {
        id: i32,
    },
    /// Even out the load (partitions, weighted by reported bytes per
    /// second) each live broker leads.
    Rebalance,
    /// Broker `broker` (incarnation `broker_epoch`) measured these bytes per
    /// second (in + out) on partitions it leads.
    ReportLoad {
        broker: i32,
        broker_epoch: i64,
        loads: Vec<(PartitionId, u64)>,
    },
    RegisterBroker {
        id: i32,
        host: String,
        port: i32,
        rack: Option<String>,
        /// The broker acknowledges after a local WAL fsync (`volume` mode).
        #[serde(default)]
        volume_wal: bool,
    },
    /// The controller leader saw broker `id`'s lease lapse: fence that
    /// incarnation and give its partitions to the live brokers.
    FenceBroker {
        id: i32,
        epoch: i64,
    },
    /// An operator gives up on fenced broker `id` (a `volume`-WAL broker
    /// whose volume is lost for good): its partitions go to the live brokers,
    /// losing what it acknowledged after its last upload.
    GiveUpBroker {
        id: i32,
    },
    CreateTopic {
        name: String,
        id: Uuid,
        partitions: i32,
        configs: BTreeMap<String, String>,
        leader: i32,
    },
    DeleteTopic {
        name: String,
    },
    CreatePartitions {
        name: String,
        total: i32,
        leader: i32,
    },
    AlterTopicConfigs {
        name: String,
        set: BTreeMap<String, String>,
        delete: Vec<String>,
    },
    /// Record an uploaded object and the index entries naming it, atomically.
    CommitObject {
        object: ObjectMeta,
        entries: Vec<IndexCommit>,
    },
    /// Raise a partition's log start offset (DeleteRecords, retention).
    /// Index entries wholly below it are dropped.
    TrimPartition {
        partition: PartitionId,
        log_start_offset: i64,
    },
    /// Compaction: replace a contiguous run of a partition's index entries by
    /// one entry in a new object, atomically, and only if every replaced entry
    /// is still exactly as the compactor read it.
    ReplaceIndexEntries {
        partition: PartitionId,
        replaced: Vec<IndexEntry>,
        replacement: IndexEntry,
        object: ObjectMeta,
    },
    /// Forget an object that no index entry names any more.
    DeleteObject {
        key: String,
    },
    CommitOffsets {
        group: String,
        offsets: Vec<(String, i32, CommittedOffset)>,
    },
    DeleteGroup {
        group: String,
    },
    DeleteGroupOffsets {
        group: String,
        topic: String,
        partitions: Vec<i32>,
    },
    AllocateProducerIds {
        count: i64,
    },
    /// A placing command (`CreateTopic`, `CreatePartitions`, `FenceBroker`,
    /// `GiveUpBroker`, `DrainBroker`, `CompleteMoves`, `Rebalance`) with the placement
    /// decisions made when it was proposed: each partition the command
    /// places goes to the broker `placed` names for it if that broker is
    /// live when the command applies, else to the live broker with the
    /// lowest id (ADR 0013); a rebalance's move whose target is not live,
    /// or whose partition got a move meanwhile, is dropped. Proposals are
    /// logged in this form
    /// ([`crate::model::decide`]).
    Decided {
        command: Box<Command>,
        #[serde(with = "compact_moves")]
        placed: Vec<Move>,
    },
}

/// Placement decisions in the log, by topic: `{"<topic id>": [[partition,
/// broker], ...]}`, about 10 bytes per placed partition instead of the 90
/// of a list of [`Move`]s, so that a fence of a broker leading tens of
/// thousands of partitions stays a few hundred KB (a Raft entry is sized
/// for about 1 MiB). Order within a topic is kept.
mod compact_moves {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use uuid::Uuid;

    use super::{Move, PartitionId};

    pub fn serialize<S: Serializer>(moves: &[Move], s: S) -> Result<S::Ok, S::Error> {
        let mut by_topic: BTreeMap<Uuid, Vec<(i32, i32)>> = BTreeMap::new();
        for m in moves {
            by_topic
                .entry(m.partition.topic_id)
                .or_default()
                .push((m.partition.partition, m.to));
        }
        by_topic.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Move>, D::Error> {
        let by_topic = BTreeMap::<Uuid, Vec<(i32, i32)>>::deserialize(d)?;
        Ok(by_topic
            .into_iter()
            .flat_map(|(topic_id, pairs)| {
                pairs.into_iter().map(move |(partition, to)| Move {
                    partition: PartitionId {
                        topic_id,
                        partition,
                    },
                    to,
                })
            })
            .collect())
    }
}

impl Command {
    /// Whether the command places partitions by the placement rules when it
    /// is proposed undecided: what [`crate::model::decide`] turns into a
    /// `Decided` command.
    pub fn places(&self) -> bool {
        match self {
            Command::Rebalance
            | Command::FenceBroker { .. }
            | Command::GiveUpBroker { .. }
            | Command::DrainBroker { .. }
            | Command::CompleteMoves { .. } => true,
            Command::CreateTopic { leader, .. } | Command::CreatePartitions { leader, .. } => {
                *leader < 0
            }
            _ => false,
        }
    }

    /// The variant's name, for messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Command::RequestMoves { .. } => "RequestMoves",
            Command::CompleteMoves { .. } => "CompleteMoves",
            Command::DrainBroker { .. } => "DrainBroker",
            Command::Rebalance => "Rebalance",
            Command::ReportLoad { .. } => "ReportLoad",
            Command::RegisterBroker { .. } => "RegisterBroker",
            Command::FenceBroker { .. } => "FenceBroker",
            Command::GiveUpBroker { .. } => "GiveUpBroker",
            Command::CreateTopic { .. } => "CreateTopic",
            Command::DeleteTopic { .. } => "DeleteTopic",
            Command::CreatePartitions { .. } => "CreatePartitions",
            Command::AlterTopicConfigs { .. } => "AlterTopicConfigs",
            Command::CommitObject { .. } => "CommitObject",
            Command::TrimPartition { .. } => "TrimPartition",
            Command::ReplaceIndexEntries { .. } => "ReplaceIndexEntries",
            Command::DeleteObject { .. } => "DeleteObject",
            Command::CommitOffsets { .. } => "CommitOffsets",
            Command::DeleteGroup { .. } => "DeleteGroup",
            Command::DeleteGroupOffsets { .. } => "DeleteGroupOffsets",
            Command::AllocateProducerIds { .. } => "AllocateProducerIds",
            Command::Decided { .. } => "Decided",
        }
    }
}

impl PartialEq for MetadataState {
    fn eq(&self, other: &Self) -> bool {
        // Destructured so that a new field cannot be forgotten here.
        let MetadataState {
            topics,
            brokers,
            objects,
            groups,
            next_producer_id,
            last_applied,
            topic_names: _,
        } = self;
        *topics == other.topics
            && *brokers == other.brokers
            && *objects == other.objects
            && *groups == other.groups
            && *next_producer_id == other.next_producer_id
            && *last_applied == other.last_applied
    }
}

impl MetadataState {
    /// The topic with this id, if it exists (ids are never reused, names can be).
    pub fn topic_by_id(&self, id: Uuid) -> Option<&Topic> {
        let name = self.topic_names.get(&id)?;
        self.topics.get(name).filter(|topic| topic.id == id)
    }

    /// The partition, if its topic exists and has that many partitions.
    pub fn partition(&self, id: PartitionId) -> Option<&Partition> {
        let index = usize::try_from(id.partition).ok()?;
        self.topic_by_id(id.topic_id)?
            .partitions
            .get(index)
            .map(|p| &**p)
    }

    /// The index entry holding `offset`, or `None` when the offset is not
    /// readable from objects: below `log_start_offset` (trimmed), at or past
    /// `committed_end` (not uploaded yet, or never written), or the partition
    /// does not exist. The entry may start below `log_start_offset`; readers
    /// skip the batches before it.
    pub fn index_entry_at(&self, id: PartitionId, offset: i64) -> Option<&IndexEntry> {
        let partition = self.partition(id)?;
        if offset < partition.log_start_offset || offset >= partition.committed_end {
            return None;
        }
        let (_, entry) = partition.index.range(..=offset).next_back()?;
        (offset < entry.end_offset).then_some(entry)
    }

    /// The first index entry (in offset order) holding a record with a
    /// timestamp at or after `timestamp`: where ListOffsets-by-time starts
    /// scanning batches.
    ///
    /// Linear in the partition's entries: `max_timestamp` is not monotonic
    /// across entries (producers choose timestamps), so no ordered lookup
    /// applies. ListOffsets by time is rare enough for that to be fine.
    pub fn offset_for_timestamp(&self, id: PartitionId, timestamp: i64) -> Option<&IndexEntry> {
        self.partition(id)?
            .index
            .values()
            .find(|entry| entry.max_timestamp >= timestamp)
    }

    /// The mutable partition; private so that only [`apply`] changes state.
    pub(crate) fn partition_mut(&mut self, id: PartitionId) -> Option<&mut Partition> {
        let index = usize::try_from(id.partition).ok()?;
        let name = self.topic_names.get(&id.topic_id)?;
        self.topics
            .get_mut(name)
            .filter(|topic| topic.id == id.topic_id)?
            .partitions
            .get_mut(index)
            .map(Arc::make_mut)
    }
}

/// The serialized shape of [`MetadataState`]: every field but the derived
/// topic-id lookup, which is rebuilt and checked on the way in.
#[derive(Deserialize)]
struct StateFields {
    topics: BTreeMap<String, Topic>,
    brokers: BTreeMap<i32, Broker>,
    objects: BTreeMap<String, ObjectMeta>,
    groups: BTreeMap<String, GroupOffsets>,
    next_producer_id: i64,
    last_applied: u64,
}

/// Why a serialized state was refused: its topics contradict each other.
#[derive(Debug)]
struct InconsistentState(String);

impl fmt::Display for InconsistentState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "inconsistent metadata state: {}", self.0)
    }
}

impl TryFrom<StateFields> for MetadataState {
    type Error = InconsistentState;

    fn try_from(fields: StateFields) -> Result<Self, Self::Error> {
        let mut topic_names = BTreeMap::new();
        for (name, topic) in &fields.topics {
            if *name != topic.name {
                return Err(InconsistentState(format!(
                    "topic stored under {name:?} is named {:?}",
                    topic.name
                )));
            }
            if let Some(other) = topic_names.insert(topic.id, name.clone()) {
                return Err(InconsistentState(format!(
                    "topics {other:?} and {name:?} share the id {}",
                    topic.id
                )));
            }
        }
        Ok(MetadataState {
            topics: fields.topics,
            brokers: fields.brokers,
            objects: fields.objects,
            groups: fields.groups,
            next_producer_id: fields.next_producer_id,
            last_applied: fields.last_applied,
            topic_names,
        })
    }
}
