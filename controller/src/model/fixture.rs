//! Test support: command builders, a state driver that checks every refusal
//! leaves the state untouched, and the invariants every reachable state keeps.

use std::collections::BTreeMap;

use uuid::Uuid;

use super::{
    apply, ApplyError, Command, IndexCommit, IndexEntry, MetadataState, ObjectMeta, Outcome,
    PartitionId, ProducerSnapshot,
};

pub fn topic_id(n: u128) -> Uuid {
    Uuid::from_u128(n)
}

pub fn pid(topic: u128, partition: i32) -> PartitionId {
    PartitionId {
        topic_id: topic_id(topic),
        partition,
    }
}

pub fn create_topic(name: &str, id: u128, partitions: i32) -> Command {
    Command::CreateTopic {
        name: name.to_owned(),
        id: topic_id(id),
        partitions,
        configs: BTreeMap::new(),
        leader: 1,
    }
}

/// `CreateTopic` with its partitions led by `leader` (`-1`: placed).
pub fn create_topic_on(name: &str, id: u128, partitions: i32, leader: i32) -> Command {
    Command::CreateTopic {
        name: name.to_owned(),
        id: topic_id(id),
        partitions,
        configs: BTreeMap::new(),
        leader,
    }
}

/// A `volume`-WAL broker's registration.
pub fn register_volume(id: i32) -> Command {
    Command::RegisterBroker {
        id,
        host: format!("b{id}"),
        port: 9092,
        rack: None,
        volume_wal: true,
    }
}

pub fn register(id: i32) -> Command {
    Command::RegisterBroker {
        id,
        host: "127.0.0.1".to_owned(),
        port: 9092,
        rack: None,
        volume_wal: false,
    }
}

/// One entry of a commit: partition, offsets `[base, end)`, leader epoch.
pub type Part = (PartitionId, i64, i64, i32);

/// A commit of object `key` holding `parts`, each 10 bytes in turn, with a
/// producer snapshot per entry naming producer `end` (so tests can see which
/// snapshot won).
pub fn commit(key: &str, parts: &[Part]) -> Command {
    let entries = parts
        .iter()
        .zip(0u64..)
        .map(|(&(partition, base, end, epoch), i)| IndexCommit {
            partition,
            entry: IndexEntry {
                base_offset: base,
                end_offset: end,
                leader_epoch: epoch,
                object_key: key.to_owned(),
                byte_start: i * 10,
                byte_len: 10,
                max_timestamp: end * 100,
            },
            producers: vec![ProducerSnapshot {
                producer_id: end,
                producer_epoch: 0,
                batches: vec![(0, 0, base)],
            }],
        })
        .collect();
    Command::CommitObject {
        object: ObjectMeta {
            key: key.to_owned(),
            size: 10 * parts.len() as u64,
            created_ms: 1,
            live_entries: 0,
        },
        entries,
    }
}

pub fn trim(partition: PartitionId, log_start_offset: i64) -> Command {
    Command::TrimPartition {
        partition,
        log_start_offset,
    }
}

pub fn released(keys: &[&str]) -> Outcome {
    Outcome::ObjectsReleased {
        keys: keys.iter().map(|k| (*k).to_owned()).collect(),
    }
}

/// Drives a state through commands, checking invariants after each success
/// and that each refusal changes nothing.
#[derive(Default)]
pub struct Driver {
    pub state: MetadataState,
}

impl Driver {
    /// Applies `cmd` as the next command: an accepted one must leave the
    /// invariants intact, a refused one (with a message) the state untouched.
    pub fn apply(&mut self, cmd: &Command) -> Result<Outcome, ApplyError> {
        let before = self.state.clone();
        let names_before = self.state.topic_names.clone();
        let index = self.state.last_applied + 1;
        let result = apply(&mut self.state, index, cmd);
        match &result {
            Ok(_) => {
                assert_eq!(self.state.last_applied, index);
                check_invariants(&self.state);
            }
            Err(err) => {
                assert_eq!(self.state, before, "refused {cmd:?} changed the state");
                assert_eq!(self.state.topic_names, names_before);
                assert!(!err.to_string().is_empty());
            }
        }
        result
    }

    pub fn ok(&mut self, cmd: Command) -> Outcome {
        self.apply(&cmd)
            .unwrap_or_else(|e| panic!("{cmd:?} was refused: {e}"))
    }

    pub fn refused(&mut self, cmd: Command) -> ApplyError {
        let Err(err) = self.apply(&cmd) else {
            panic!("{cmd:?} was accepted");
        };
        err
    }
}

/// What every state reachable through `apply` satisfies.
pub fn check_invariants(state: &MetadataState) {
    let ids: BTreeMap<Uuid, String> = state
        .topics
        .iter()
        .map(|(name, topic)| (topic.id, name.clone()))
        .collect();
    assert_eq!(ids, state.topic_names, "topic-id lookup out of date");
    let mut references: BTreeMap<&str, u64> = BTreeMap::new();
    for (name, topic) in &state.topics {
        assert_eq!(*name, topic.name);
        for partition in &topic.partitions {
            assert!(0 <= partition.log_start_offset);
            assert!(partition.log_start_offset <= partition.committed_end);
            let mut previous_end = None;
            for (base, entry) in &partition.index {
                assert_eq!(*base, entry.base_offset);
                assert!(entry.base_offset < entry.end_offset);
                assert!(entry.end_offset > partition.log_start_offset, "untrimmed");
                if let Some(end) = previous_end {
                    assert_eq!(end, entry.base_offset, "index not contiguous");
                }
                previous_end = Some(entry.end_offset);
                *references.entry(&entry.object_key).or_default() += 1;
            }
            if let Some(end) = previous_end {
                assert_eq!(end, partition.committed_end);
            }
        }
    }
    let live: BTreeMap<&str, u64> = state
        .objects
        .iter()
        .map(|(key, object)| (key.as_str(), object.live_entries))
        .collect();
    assert_eq!(live, references, "live_entries disagree with the index");
}

/// xorshift64*: a small deterministic generator, so a failure names its seed.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}
