//! Random command sequences: `apply` never panics, a refused command
//! changes nothing, every accepted one leaves a state that keeps the
//! invariants, survives a JSON round trip, and never lowers a leader epoch;
//! the same sequence gives the same state twice. A command with its
//! placement decided at proposal time applies exactly as the undecided one,
//! and commands carrying arbitrary decisions keep all of that too.
//!
//! Commands come from a small world (brokers 1–4 and an unknown 9, topics
//! t0–t2, partitions 0–4, objects o0–o7, two groups), built mostly from the
//! current state (the right epoch, the next offset, an entry that exists)
//! so that most are accepted, and the rest near misses.

use std::collections::BTreeMap;

use uuid::Uuid;

use crate::model::fixture::{check_invariants, Driver, Rng};
use crate::model::{
    apply, decide, Command, CommittedOffset, HandOff, IndexCommit, IndexEntry, MetadataState, Move,
    ObjectMeta, PartitionId, ProducerSnapshot,
};

/// A pick of the broker ids in play (9 is never registered).
fn broker(rng: &mut Rng) -> i32 {
    [1, 2, 3, 4, 9][rng.below(5) as usize]
}

/// The broker's current epoch most of the time, else a near miss.
fn broker_epoch(rng: &mut Rng, state: &MetadataState, id: i32) -> i64 {
    match state.brokers.get(&id) {
        Some(b) if rng.below(5) > 0 => b.epoch,
        _ => rng.below(4) as i64,
    }
}

fn topic_name(rng: &mut Rng) -> String {
    format!("t{}", rng.below(3))
}

/// A partition of an existing topic mostly, else of an unknown one or past
/// the topic's end.
fn partition(rng: &mut Rng, state: &MetadataState) -> PartitionId {
    let topics: Vec<Uuid> = state.topics.values().map(|t| t.id).collect();
    let topic_id = if topics.is_empty() || rng.below(8) == 0 {
        Uuid::from_u128(1 + rng.below(4) as u128)
    } else {
        topics[rng.below(topics.len() as u64) as usize]
    };
    PartitionId {
        topic_id,
        partition: rng.below(5) as i32,
    }
}

fn object(key: &str, entries: usize) -> ObjectMeta {
    ObjectMeta {
        key: key.to_owned(),
        size: 100 * entries as u64,
        created_ms: 1,
        live_entries: 0,
    }
}

fn command(rng: &mut Rng, state: &MetadataState, serial: &mut u64) -> Command {
    *serial += 1;
    match rng.below(20) {
        0 | 1 => Command::RegisterBroker {
            id: broker(rng),
            host: "127.0.0.1".into(),
            port: 9092,
            rack: [None, Some("a".to_owned()), Some("b".to_owned())][rng.below(3) as usize].clone(),
            volume_wal: rng.below(3) == 0,
        },
        2 => {
            let id = broker(rng);
            Command::FenceBroker {
                id,
                epoch: broker_epoch(rng, state, id),
            }
        }
        3 => Command::GiveUpBroker { id: broker(rng) },
        4 => Command::DrainBroker { id: broker(rng) },
        5 => Command::Rebalance,
        6 => {
            let id = broker(rng);
            let loads = (0..rng.below(3))
                .map(|_| (partition(rng, state), rng.below(4) * 1000))
                .collect();
            Command::ReportLoad {
                broker: id,
                broker_epoch: broker_epoch(rng, state, id),
                loads,
            }
        }
        7 | 8 => Command::CreateTopic {
            name: topic_name(rng),
            id: Uuid::from_u128(1 + rng.below(4) as u128),
            partitions: rng.below(6) as i32 - 1,
            configs: BTreeMap::new(),
            leader: rng.below(6) as i32 - 1,
        },
        9 => Command::DeleteTopic {
            name: topic_name(rng),
        },
        10 => Command::CreatePartitions {
            name: topic_name(rng),
            total: rng.below(7) as i32,
            leader: rng.below(6) as i32 - 1,
        },
        11 => {
            let mut set = BTreeMap::new();
            let value = ["1000", "-1", "abc", "delete", "compact"][rng.below(5) as usize];
            let key = [
                "retention.ms",
                "retention.bytes",
                "cleanup.policy",
                "no.such",
            ][rng.below(4) as usize];
            set.insert(key.to_owned(), value.to_owned());
            Command::AlterTopicConfigs {
                name: topic_name(rng),
                set,
                delete: if rng.below(3) == 0 {
                    vec!["retention.ms".to_owned()]
                } else {
                    Vec::new()
                },
            }
        }
        12 | 13 => {
            // An upload: mostly the next offsets under the current epoch.
            let key = format!("o{}", rng.below(8));
            let mut entries = Vec::new();
            for i in 0..1 + rng.below(3) {
                let p = partition(rng, state);
                let current = state.partition(p);
                let base = match current {
                    Some(c) if rng.below(6) > 0 => c.committed_end,
                    _ => rng.below(20) as i64,
                };
                let end = base + 1 + rng.below(10) as i64;
                let epoch = match current {
                    Some(c) if rng.below(6) > 0 => c.leader_epoch,
                    _ => rng.below(3) as i32,
                };
                entries.push(IndexCommit {
                    partition: p,
                    entry: IndexEntry {
                        base_offset: base,
                        end_offset: end,
                        leader_epoch: epoch,
                        object_key: key.clone(),
                        byte_start: i * 100,
                        byte_len: 100,
                        max_timestamp: *serial as i64,
                    },
                    producers: vec![ProducerSnapshot {
                        producer_id: rng.below(3) as i64,
                        producer_epoch: 0,
                        batches: vec![(0, 0, base)],
                    }],
                });
            }
            Command::CommitObject {
                object: object(&key, entries.len()),
                entries,
            }
        }
        14 => {
            let p = partition(rng, state);
            let end = state.partition(p).map_or(5, |c| c.committed_end);
            Command::TrimPartition {
                partition: p,
                log_start_offset: rng.below(end.max(0) as u64 + 3) as i64 - 1,
            }
        }
        15 => {
            // Compaction of a run of existing entries (sometimes stale).
            let indexed: Vec<PartitionId> = state
                .topics
                .values()
                .flat_map(|t| {
                    t.partitions
                        .iter()
                        .zip(0..)
                        .filter(|(p, _)| !p.index.is_empty())
                        .map(|(_, partition)| PartitionId {
                            topic_id: t.id,
                            partition,
                        })
                })
                .collect();
            let p = if indexed.is_empty() || rng.below(5) == 0 {
                partition(rng, state)
            } else {
                indexed[rng.below(indexed.len() as u64) as usize]
            };
            let entries: Vec<IndexEntry> = state
                .partition(p)
                .map(|c| c.index.values().cloned().collect())
                .unwrap_or_default();
            let start = rng.below(entries.len().max(1) as u64) as usize;
            let left = entries.len().saturating_sub(start);
            let len = (1 + rng.below(left.max(1) as u64) as usize).min(left);
            let mut replaced = entries[start..start + len].to_vec();
            if rng.below(6) == 0 {
                if let Some(first) = replaced.first_mut() {
                    first.byte_len += 1;
                }
            }
            let key = format!("o{}", rng.below(8));
            let replacement = IndexEntry {
                base_offset: replaced.first().map_or(0, |e| e.base_offset),
                end_offset: replaced.last().map_or(1, |e| e.end_offset),
                leader_epoch: replaced.last().map_or(0, |e| e.leader_epoch),
                object_key: key.clone(),
                byte_start: 0,
                byte_len: 100,
                max_timestamp: replaced.iter().map(|e| e.max_timestamp).max().unwrap_or(0),
            };
            Command::ReplaceIndexEntries {
                partition: p,
                replaced,
                replacement,
                object: object(&key, 1),
            }
        }
        16 => Command::DeleteObject {
            key: format!("o{}", rng.below(8)),
        },
        17 => {
            // Moves requested, or completed by the current leader.
            let p = partition(rng, state);
            if rng.below(2) == 0 {
                Command::RequestMoves {
                    moves: vec![Move {
                        partition: p,
                        to: broker(rng),
                    }],
                }
            } else {
                let (from, epoch, end) = state
                    .partition(p)
                    .map_or((1, 0, 0), |c| (c.leader, c.leader_epoch, c.committed_end));
                Command::CompleteMoves {
                    from,
                    broker_epoch: broker_epoch(rng, state, from),
                    handoffs: vec![HandOff {
                        partition: p,
                        leader_epoch: epoch,
                        committed_end: end,
                    }],
                }
            }
        }
        18 => {
            let group = format!("g{}", rng.below(2));
            match rng.below(3) {
                0 => Command::CommitOffsets {
                    group,
                    offsets: vec![(
                        topic_name(rng),
                        rng.below(5) as i32,
                        CommittedOffset {
                            offset: rng.below(50) as i64 - 1,
                            leader_epoch: 0,
                            metadata: None,
                            commit_ms: *serial as i64,
                        },
                    )],
                },
                1 => Command::DeleteGroup { group },
                _ => Command::DeleteGroupOffsets {
                    group,
                    topic: topic_name(rng),
                    partitions: vec![rng.below(5) as i32],
                },
            }
        }
        _ => Command::AllocateProducerIds {
            count: rng.below(5) as i64 - 1,
        },
    }
}

/// `cmd` carrying placement decisions that no rules of ours would make:
/// random brokers (live, fenced, draining, unregistered), partitions that
/// do not exist, or none; sometimes around a command that places nothing,
/// or a decision around a decision. Another version's rules, a stale
/// decision or a broken proposer: each must apply deterministically, keep
/// the invariants or be refused with nothing changed.
fn arbitrary_decision(rng: &mut Rng, state: &MetadataState, cmd: Command) -> Command {
    let placed = (0..rng.below(6))
        .map(|_| Move {
            partition: partition(rng, state),
            to: [-1, 1, 2, 3, 4, 9][rng.below(6) as usize],
        })
        .collect();
    let command = match rng.below(8) {
        0 => Command::Decided {
            command: Box::new(cmd),
            placed: Vec::new(),
        },
        _ => cmd,
    };
    Command::Decided {
        command: Box::new(command),
        placed,
    }
}

/// Runs `steps` random commands from `seed`; returns the final state and
/// how many were accepted.
fn run(seed: u64, steps: usize) -> (MetadataState, usize) {
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let mut d = Driver::default();
    let mut serial = 0;
    let mut accepted = 0;
    for step in 0..steps {
        let mut cmd = command(&mut rng, &d.state, &mut serial);
        if rng.below(10) == 0 {
            cmd = arbitrary_decision(&mut rng, &d.state, cmd);
        }
        let before = d.state.clone();
        // Proposed, the command is logged with its placement decided (and
        // as JSON): that must apply exactly as the undecided command does
        // under the same rules.
        let decided = decide(&d.state, &cmd).map(|c| {
            let json = serde_json::to_vec(&c).unwrap();
            serde_json::from_slice::<Command>(&json).unwrap()
        });
        let by_decision = decided.as_ref().map(|c| {
            let mut state = d.state.clone();
            let index = state.last_applied + 1;
            let result = apply(&mut state, index, c);
            (state, result)
        });
        // The driver checks the invariants after an accepted command and
        // that a refused one changed nothing.
        let result = d.apply(&cmd);
        if let Some((state, decided_result)) = by_decision {
            assert_eq!(
                decided_result, result,
                "seed {seed} step {step}: {cmd:?} decided as {decided:?}"
            );
            assert!(
                state == d.state,
                "seed {seed} step {step}: {cmd:?} decided as {decided:?} applies differently"
            );
        }
        if result.is_err() {
            continue;
        }
        accepted += 1;
        let json = serde_json::to_vec(&d.state).unwrap();
        let back: MetadataState = serde_json::from_slice(&json).unwrap();
        assert!(
            back == d.state,
            "seed {seed} step {step}: {cmd:?} does not round-trip"
        );
        check_invariants(&back);
        for topic in before.topics.values() {
            let Some(now) = d.state.topic_by_id(topic.id) else {
                continue;
            };
            for (old, new) in topic.partitions.iter().zip(&now.partitions) {
                assert!(
                    new.leader_epoch >= old.leader_epoch,
                    "seed {seed} step {step}: {cmd:?} lowered a leader epoch"
                );
            }
        }
    }
    (d.state, accepted)
}

#[test]
fn random_command_sequences_keep_every_invariant_and_refusals_change_nothing() {
    let mut accepted = 0;
    let mut total = 0;
    for seed in 0..300 {
        let (state, ok) = run(seed, 200);
        accepted += ok;
        total += 200;
        // Deterministic: replicas applying the same log agree.
        assert!(
            run(seed, 200).0 == state,
            "seed {seed} is not deterministic"
        );
    }
    // The generator must keep most commands meaningful.
    assert!(
        accepted * 4 > total,
        "only {accepted} of {total} commands accepted"
    );
}
