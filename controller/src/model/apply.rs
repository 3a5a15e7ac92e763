//! Applying one [`Command`] to the [`MetadataState`].
//!
//! Contract: every handler checks everything first and mutates only once
//! nothing can fail any more, so a refused command leaves the state exactly as
//! it was. The same state and command always give the same result: no clocks,
//! no randomness, no hash-ordered iteration.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

mod decide;
mod moves;
mod objects;
mod placement;

pub use decide::decide;
pub use moves::{rebalance_plan, rebalance_would_move};
use objects::{commit_object, delete_object, release, replace_index_entries, trim_partition};
use placement::Choice;

use super::{Broker, Command, CommittedOffset, MetadataState, Move, Partition, PartitionId, Topic};

/// The most partitions one topic may have.
pub const MAX_PARTITIONS: i32 = 100_000;
/// The most producer ids one `AllocateProducerIds` may hand out.
pub const MAX_PRODUCER_ID_BLOCK: i64 = 1_000_000;
/// Ids below this are never handed out: 0 and small ids are what a buggy or
/// hand-written client would send by accident, and keeping them free lets
/// tests and tools use them without colliding with real producers.
const FIRST_PRODUCER_ID: i64 = 1000;
/// Kafka's limit, so that every Kafka client accepts every name we store.
const MAX_TOPIC_NAME_LEN: usize = 249;

/// What a successfully applied command produced, for the proposer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    Done,
    TopicCreated {
        id: Uuid,
    },
    /// The broker's new epoch; it fences every older incarnation.
    BrokerRegistered {
        epoch: i64,
    },
    /// The broker is fenced; `moved` partitions have a new leader (or none,
    /// `-1`, when no live broker is left), each with a bumped leader epoch.
    BrokerFenced {
        moved: u32,
    },
    /// Moves now pending (set, retargeted or cancelled).
    MovesRequested {
        requested: u32,
    },
    /// Partitions handed to their new leaders (or reopened under a new epoch
    /// by the same broker when their move was cancelled meanwhile); the
    /// others of the batch were no longer the proposer's to hand off.
    MovesCompleted {
        moved: u32,
        skipped: u32,
    },
    /// The block `first .. first + count` now belongs to the proposer.
    ProducerIds {
        first: i64,
    },
    /// Objects that no index entry names any more, sorted. They are gone from
    /// the state; the proposer deletes them from the object store.
    ObjectsReleased {
        keys: Vec<String>,
    },
}

/// Why a command was refused. The state is unchanged whenever one is returned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum ApplyError {
    #[error(
        "command index {index} is not after the last applied index {last_applied}; \
         apply commands in log order, each once"
    )]
    StaleIndex { index: u64, last_applied: u64 },
    #[error(
        "proposal {seq} of client {client} was already answered (the client's floor is {floor}); \
         a late duplicate is not applied"
    )]
    StaleProposal { client: Uuid, seq: u64, floor: u64 },
    #[error("broker {id} cannot register at {host}:{port}: {reason}")]
    InvalidBroker {
        id: i32,
        host: String,
        port: i32,
        reason: String,
    },
    #[error(
        "broker {id} epoch {epoch} is not the current live incarnation (current epoch {current:?}); \
         a stale fence is ignored"
    )]
    StaleBrokerEpoch {
        id: i32,
        epoch: i64,
        current: Option<i64>,
    },
    #[error("topic name {name:?} is invalid: {reason}")]
    InvalidTopicName { name: String, reason: String },
    #[error("topic {name:?} already exists; choose another name or delete the topic first")]
    TopicExists { name: String },
    #[error("topic id {id} is already used by topic {existing:?}; generate a fresh id for every new topic")]
    TopicIdExists { id: Uuid, existing: String },
    #[error("topic {name:?} does not exist; create it first or refresh metadata")]
    UnknownTopic { name: String },
    #[error("topic {topic:?} has no partition {partition}; refresh metadata")]
    UnknownTopicPartition { topic: String, partition: i32 },
    #[error(
        "partition {partition} does not exist (its topic may have been deleted); \
         refresh metadata and drop its data"
    )]
    UnknownPartition { partition: PartitionId },
    #[error(
        "topic {name:?} cannot have {requested} partitions: the count must be more than \
         the current {current} and at most {max}"
    )]
    InvalidPartitionCount {
        name: String,
        current: i32,
        requested: i32,
        max: i32,
    },
    #[error("commit of object {key:?} names no index entries; delete the object instead")]
    EmptyCommit { key: String },
    #[error("object {key:?} is already committed; upload new data under a fresh key")]
    ObjectExists { key: String },
    #[error(
        "commit for partition {partition} carries leader epoch {committed_epoch} but the \
         partition is at leader epoch {current_epoch}; this broker is no longer its leader: \
         stop acknowledging writes for it and refresh metadata"
    )]
    StaleLeaderEpoch {
        partition: PartitionId,
        committed_epoch: i32,
        current_epoch: i32,
    },
    #[error(
        "commit for partition {partition} starts at offset {got_base} but its committed data \
         ends at {expected_base}; commit each partition's objects in offset order, without gaps \
         or overlaps"
    )]
    NonContiguousCommit {
        partition: PartitionId,
        expected_base: i64,
        got_base: i64,
    },
    #[error(
        "commit for partition {partition} has the empty offset range \
         [{base_offset}, {end_offset}); commit only entries that hold records"
    )]
    EmptyOffsetRange {
        partition: PartitionId,
        base_offset: i64,
        end_offset: i64,
    },
    #[error(
        "commit entry for partition {partition} names object {entry_key:?} but the commit is \
         for object {object_key:?}; every entry must name the committed object"
    )]
    ObjectKeyMismatch {
        partition: PartitionId,
        object_key: String,
        entry_key: String,
    },
    #[error(
        "commit entry for partition {partition} has bytes {byte_start}+{byte_len}, which is \
         empty or outside object {key:?} of {size} bytes; fix the uploader's byte ranges"
    )]
    InvalidByteRange {
        partition: PartitionId,
        key: String,
        byte_start: u64,
        byte_len: u64,
        size: u64,
    },
    #[error(
        "cannot move the log start offset of partition {partition} to {requested}: it must \
         be between 0 and the committed end {committed_end}; wait until that data is committed"
    )]
    InvalidOffset {
        partition: PartitionId,
        requested: i64,
        committed_end: i64,
    },
    #[error(
        "object {key:?} is still named by {live_entries} index entries; trim or delete \
         those partitions first"
    )]
    ObjectInUse { key: String, live_entries: u64 },
    #[error("cannot move partition {partition} to broker {to}: {reason}")]
    InvalidMove {
        partition: PartitionId,
        to: i32,
        reason: String,
    },
    #[error("broker {id} is not registered")]
    UnknownBroker { id: i32 },
    #[error("broker {id} cannot be drained: {reason}")]
    CannotDrain { id: i32, reason: String },
    #[error("cannot give up on broker {id}: {reason}")]
    CannotGiveUp { id: i32, reason: String },
    #[error("cannot allocate {count} producer ids; ask for 1 to {max} at a time")]
    InvalidProducerIdCount { count: i64, max: i64 },
    #[error("compaction of partition {partition} is stale: the entry at offset {base_offset} changed since it was read; compact again from the current index")]
    ReplacedEntryChanged {
        partition: PartitionId,
        base_offset: i64,
    },
    #[error("compaction of partition {partition} is invalid: {reason}")]
    InvalidReplacement {
        partition: PartitionId,
        reason: String,
    },
    #[error("a {command} command places no partitions: only its undecided form may be proposed")]
    InvalidDecision { command: String },
    #[error("producer ids are exhausted: {count} more after {next} would overflow")]
    ProducerIdsExhausted { next: i64, count: i64 },
}

/// Applies `cmd` as log entry `index` (which must be after
/// `state.last_applied`). On success `state.last_applied == index`; on error
/// the state is unchanged.
pub fn apply(state: &mut MetadataState, index: u64, cmd: &Command) -> Result<Outcome, ApplyError> {
    if index <= state.last_applied {
        return Err(ApplyError::StaleIndex {
            index,
            last_applied: state.last_applied,
        });
    }
    let outcome = match cmd {
        Command::RequestMoves { moves } => moves::request_moves(state, moves),
        // Logged before placement was decided at proposal time: the rules
        // run here (ADR 0013).
        Command::CompleteMoves { .. }
        | Command::DrainBroker { .. }
        | Command::FenceBroker { .. }
        | Command::GiveUpBroker { .. }
        | Command::CreateTopic { .. }
        | Command::CreatePartitions { .. } => decide::apply_placing(state, cmd, None),
        Command::Rebalance => moves::rebalance(state),
        Command::ReportLoad {
            broker,
            broker_epoch,
            loads,
        } => moves::report_load(state, *broker, *broker_epoch, loads),
        Command::RegisterBroker {
            id,
            host,
            port,
            rack,
            volume_wal,
        } => register_broker(state, *id, host, *port, rack, *volume_wal),
        Command::DeleteTopic { name } => delete_topic(state, name),
        Command::AlterTopicConfigs { name, set, delete } => {
            alter_topic_configs(state, name, set, delete)
        }
        Command::CommitObject { object, entries } => commit_object(state, object, entries),
        Command::TrimPartition {
            partition,
            log_start_offset,
        } => trim_partition(state, *partition, *log_start_offset),
        Command::ReplaceIndexEntries {
            partition,
            replaced,
            replacement,
            object,
        } => replace_index_entries(state, *partition, replaced, replacement, object),
        Command::DeleteObject { key } => delete_object(state, key),
        Command::CommitOffsets { group, offsets } => commit_offsets(state, group, offsets),
        Command::DeleteGroup { group } => {
            state.groups.remove(group);
            Ok(Outcome::Done)
        }
        Command::DeleteGroupOffsets {
            group,
            topic,
            partitions,
        } => delete_group_offsets(state, group, topic, partitions),
        Command::AllocateProducerIds { count } => allocate_producer_ids(state, *count),
        Command::Decided { command, placed } => decide::apply_decided(state, command, placed),
    }?;
    state.last_applied = index;
    Ok(outcome)
}

/// Inserts or updates the broker and bumps its epoch, so that requests from
/// an older incarnation of the same id can be told apart and refused.
fn register_broker(
    state: &mut MetadataState,
    id: i32,
    host: &str,
    port: i32,
    rack: &Option<String>,
    volume_wal: bool,
) -> Result<Outcome, ApplyError> {
    let refuse = |reason: &str| ApplyError::InvalidBroker {
        id,
        host: host.to_owned(),
        port,
        reason: reason.to_owned(),
    };
    if id < 0 {
        return Err(refuse("broker ids must not be negative"));
    }
    if host.is_empty() {
        return Err(refuse("the advertised host must not be empty"));
    }
    if !(1..=65535).contains(&port) {
        return Err(refuse(
            "the port must be 1 to 65535 (register the bound port, not 0)",
        ));
    }
    // 2^63 registrations cannot happen; saturating keeps this total anyway.
    let epoch = state
        .brokers
        .get(&id)
        .map_or(1, |broker| broker.epoch.saturating_add(1));
    state.brokers.insert(
        id,
        Broker {
            id,
            host: host.to_owned(),
            port,
            rack: rack.clone(),
            epoch,
            fenced: false,
            volume_wal,
            draining: false,
        },
    );
    // Partitions left without a leader by earlier fences go to the broker
    // that just (re)joined, with a new leader epoch.
    for topic in state.topics.values_mut() {
        for partition in &mut topic.partitions {
            if partition.leader < 0 {
                let partition = Arc::make_mut(partition);
                partition.leader = id;
                partition.leader_epoch = partition.leader_epoch.saturating_add(1);
            }
        }
    }
    Ok(Outcome::BrokerRegistered { epoch })
}

/// Fences incarnation `epoch` of broker `id`. A broker whose WAL is in
/// object storage may have acknowledged only what is committed, so each
/// partition it leads moves to the live broker leading the fewest (lowest id
/// on ties; `-1` when none is left) with a bumped leader epoch, which makes
/// the fenced incarnation's late commits be refused. A `volume`-WAL broker
/// keeps its partitions: records it acknowledged may exist only on its
/// volume, so they wait for it to register again.
fn fence_broker(
    state: &mut MetadataState,
    id: i32,
    epoch: i64,
    placed: Option<&[Move]>,
) -> Result<Outcome, ApplyError> {
    let current = state
        .brokers
        .get(&id)
        .filter(|b| !b.fenced)
        .map(|b| b.epoch);
    if current != Some(epoch) {
        return Err(ApplyError::StaleBrokerEpoch { id, epoch, current });
    }
    let mut volume_wal = false;
    if let Some(broker) = state.brokers.get_mut(&id) {
        broker.fenced = true;
        volume_wal = broker.volume_wal;
    }
    if volume_wal {
        return Ok(Outcome::BrokerFenced { moved: 0 });
    }
    let moved = place_elsewhere(state, id, placed);
    Ok(Outcome::BrokerFenced { moved })
}

/// Gives broker `id`'s partitions (and moves targeting it) to the live
/// brokers, each under a bumped leader epoch: a pending move's target takes
/// its partition, the others go where `placed` decides ([`decide::plan_elsewhere`]'s
/// when `None`); returns how many moved. Broker `id` is no longer live.
fn place_elsewhere(state: &mut MetadataState, id: i32, placed: Option<&[Move]>) -> u32 {
    let planned;
    let placed = match placed {
        Some(placed) => placed,
        None => {
            planned = decide::plan_elsewhere(state, id);
            &planned
        }
    };
    let choice = Choice::new(state, placed);
    let mut moved = 0u32;
    for topic in state.topics.values_mut() {
        let topic_id = topic.id;
        for (index, partition) in topic.partitions.iter_mut().enumerate() {
            if partition.target != Some(id) && partition.leader != id {
                continue;
            }
            let partition = Arc::make_mut(partition);
            if partition.target == Some(id) {
                partition.target = None;
            }
            if partition.leader != id {
                continue;
            }
            partition.leader = match partition.target.take() {
                Some(t) if choice.is_live(t) => t,
                _ => choice.leader(PartitionId {
                    topic_id,
                    partition: index as i32,
                }),
            };
            partition.leader_epoch = partition.leader_epoch.saturating_add(1);
            moved += 1;
        }
    }
    moved
}

/// An operator gives up on fenced broker `id` (a `volume`-WAL broker whose
/// volume is lost): its partitions go to the live brokers under a bumped
/// leader epoch, opening from what it uploaded. Records it acknowledged
/// after its last upload are lost; the epoch bump refuses anything it
/// commits if it ever comes back. Refused while its lease holds.
fn give_up_broker(
    state: &mut MetadataState,
    id: i32,
    placed: Option<&[Move]>,
) -> Result<Outcome, ApplyError> {
    let broker = state
        .brokers
        .get(&id)
        .ok_or(ApplyError::UnknownBroker { id })?;
    if !broker.fenced {
        return Err(ApplyError::CannotGiveUp {
            id,
            reason: "it is live (its lease holds): drain it instead".to_owned(),
        });
    }
    let moved = place_elsewhere(state, id, placed);
    Ok(Outcome::BrokerFenced { moved })
}

/// A negative `leader` leaves each partition's leader to the controller:
/// `placed` decides ([`decide::plan_new`] when `None`).
fn create_topic(
    state: &mut MetadataState,
    name: &str,
    id: Uuid,
    partitions: i32,
    configs: &BTreeMap<String, String>,
    leader: i32,
    placed: Option<&[Move]>,
) -> Result<Outcome, ApplyError> {
    validate_topic_name(name)?;
    if state.topics.contains_key(name) {
        return Err(ApplyError::TopicExists {
            name: name.to_owned(),
        });
    }
    if let Some(existing) = state.topic_names.get(&id) {
        return Err(ApplyError::TopicIdExists {
            id,
            existing: existing.clone(),
        });
    }
    if !(1..=MAX_PARTITIONS).contains(&partitions) {
        return Err(ApplyError::InvalidPartitionCount {
            name: name.to_owned(),
            current: 0,
            requested: partitions,
            max: MAX_PARTITIONS,
        });
    }
    let leaders = new_leaders(state, id, 0, partitions, leader, placed);
    let topic = Topic {
        id,
        name: name.to_owned(),
        configs: configs.clone(),
        partitions: leaders
            .into_iter()
            .map(|leader| Arc::new(new_partition(leader)))
            .collect(),
    };
    state.topics.insert(name.to_owned(), topic);
    state.topic_names.insert(id, name.to_owned());
    Ok(Outcome::TopicCreated { id })
}

/// Kafka's topic-name rules, so that every stored name is one that every
/// Kafka client can use.
fn validate_topic_name(name: &str) -> Result<(), ApplyError> {
    let reason = if name.is_empty() {
        "it must not be empty"
    } else if name == "." || name == ".." {
        "it must not be \".\" or \"..\""
    } else if name.len() > MAX_TOPIC_NAME_LEN {
        "it must be at most 249 characters long"
    } else if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        "it may contain only ASCII letters, digits, '.', '_' and '-'"
    } else {
        return Ok(());
    };
    Err(ApplyError::InvalidTopicName {
        name: name.to_owned(),
        reason: reason.to_owned(),
    })
}

fn new_partition(leader: i32) -> Partition {
    Partition {
        leader,
        leader_epoch: 0,
        log_start_offset: 0,
        committed_end: 0,
        index: BTreeMap::new(),
        producers: BTreeMap::new(),
        target: None,
        load: 0,
    }
}

/// Removes the topic, releases the objects only it named, and forgets the
/// groups' offsets for it (a later topic of the same name starts afresh, as
/// in Kafka).
fn delete_topic(state: &mut MetadataState, name: &str) -> Result<Outcome, ApplyError> {
    let topic = state
        .topics
        .remove(name)
        .ok_or_else(|| ApplyError::UnknownTopic {
            name: name.to_owned(),
        })?;
    state.topic_names.remove(&topic.id);
    let named = topic
        .partitions
        .iter()
        .flat_map(|partition| partition.index.values());
    let keys = release(&mut state.objects, named);
    for offsets in state.groups.values_mut() {
        offsets.offsets.remove(name);
    }
    state.groups.retain(|_, group| !group.offsets.is_empty());
    Ok(Outcome::ObjectsReleased { keys })
}

/// Leaders of partitions `from..to` of topic `topic_id`: `leader`, or
/// where `placed` decides when it is negative ([`decide::plan_new`] when `None`).
fn new_leaders(
    state: &MetadataState,
    topic_id: Uuid,
    from: i32,
    to: i32,
    leader: i32,
    placed: Option<&[Move]>,
) -> Vec<i32> {
    if leader >= 0 {
        return (from..to).map(|_| leader).collect();
    }
    let planned;
    let placed = match placed {
        Some(placed) => placed,
        None => {
            planned = decide::plan_new(state, topic_id, from, to, leader);
            &planned
        }
    };
    let choice = Choice::new(state, placed);
    (from..to)
        .map(|partition| {
            choice.leader(PartitionId {
                topic_id,
                partition,
            })
        })
        .collect()
}

fn create_partitions(
    state: &mut MetadataState,
    name: &str,
    total: i32,
    leader: i32,
    placed: Option<&[Move]>,
) -> Result<Outcome, ApplyError> {
    let topic = state
        .topics
        .get(name)
        .ok_or_else(|| ApplyError::UnknownTopic {
            name: name.to_owned(),
        })?;
    let topic_id = topic.id;
    // At most MAX_PARTITIONS partitions exist, so the count fits an i32.
    let current = i32::try_from(topic.partitions.len()).unwrap_or(i32::MAX);
    if total <= current || total > MAX_PARTITIONS {
        return Err(ApplyError::InvalidPartitionCount {
            name: name.to_owned(),
            current,
            requested: total,
            max: MAX_PARTITIONS,
        });
    }
    let leaders = new_leaders(state, topic_id, current, total, leader, placed);
    if let Some(topic) = state.topics.get_mut(name) {
        topic.partitions.extend(
            leaders
                .into_iter()
                .map(|leader| Arc::new(new_partition(leader))),
        );
    }
    Ok(Outcome::Done)
}

/// Sets, then deletes: a key in both lists ends up deleted.
fn alter_topic_configs(
    state: &mut MetadataState,
    name: &str,
    set: &BTreeMap<String, String>,
    delete: &[String],
) -> Result<Outcome, ApplyError> {
    let topic = state
        .topics
        .get_mut(name)
        .ok_or_else(|| ApplyError::UnknownTopic {
            name: name.to_owned(),
        })?;
    topic
        .configs
        .extend(set.iter().map(|(k, v)| (k.clone(), v.clone())));
    for key in delete {
        topic.configs.remove(key);
    }
    Ok(Outcome::Done)
}

/// Stores offsets for existing partitions only, so that offsets cannot
/// outlive their topic (deleting a topic removes them).
fn commit_offsets(
    state: &mut MetadataState,
    group: &str,
    offsets: &[(String, i32, CommittedOffset)],
) -> Result<Outcome, ApplyError> {
    for (topic, partition, _) in offsets {
        let found = state
            .topics
            .get(topic)
            .ok_or_else(|| ApplyError::UnknownTopic {
                name: topic.clone(),
            })?;
        let exists = usize::try_from(*partition).is_ok_and(|p| p < found.partitions.len());
        if !exists {
            return Err(ApplyError::UnknownTopicPartition {
                topic: topic.clone(),
                partition: *partition,
            });
        }
    }
    if offsets.is_empty() {
        return Ok(Outcome::Done);
    }
    let stored = state.groups.entry(group.to_owned()).or_default();
    for (topic, partition, offset) in offsets {
        stored
            .offsets
            .entry(topic.clone())
            .or_default()
            .insert(*partition, offset.clone());
    }
    Ok(Outcome::Done)
}

/// Removes the offsets; a group left with none is removed, like an unknown
/// group is simply nothing to do.
fn delete_group_offsets(
    state: &mut MetadataState,
    group: &str,
    topic: &str,
    partitions: &[i32],
) -> Result<Outcome, ApplyError> {
    let Some(stored) = state.groups.get_mut(group) else {
        return Ok(Outcome::Done);
    };
    if let Some(by_partition) = stored.offsets.get_mut(topic) {
        for partition in partitions {
            by_partition.remove(partition);
        }
        if by_partition.is_empty() {
            stored.offsets.remove(topic);
        }
    }
    if stored.offsets.is_empty() {
        state.groups.remove(group);
    }
    Ok(Outcome::Done)
}

fn allocate_producer_ids(state: &mut MetadataState, count: i64) -> Result<Outcome, ApplyError> {
    if !(1..=MAX_PRODUCER_ID_BLOCK).contains(&count) {
        return Err(ApplyError::InvalidProducerIdCount {
            count,
            max: MAX_PRODUCER_ID_BLOCK,
        });
    }
    let first = state.next_producer_id.max(FIRST_PRODUCER_ID);
    let next = first
        .checked_add(count)
        .ok_or(ApplyError::ProducerIdsExhausted { next: first, count })?;
    state.next_producer_id = next;
    Ok(Outcome::ProducerIds { first })
}

#[cfg(test)]
mod decide_tests;
#[cfg(test)]
mod moves_tests;
#[cfg(test)]
mod plan_tests;
#[cfg(test)]
mod soup_tests;
#[cfg(test)]
mod tests;
