//! Where partitions go: new partitions, a fenced broker's partitions, a
//! drained broker's, and moves whose target went away.
//!
//! The least-loaded live broker (by partition count) takes a partition; among
//! equally loaded brokers, the one whose zone (its `rack`; brokers without
//! one share a zone) holds the fewest of the topic's partitions per broker,
//! so a topic's partitions — and its producers' and consumers' traffic —
//! spread over the zones, and a zone's outage moves only its share. Lowest
//! id last, so placement is deterministic.
//!
//! These rules run when a command is proposed ([`super::decide`]), not when
//! it applies: the command carries the decisions ([`Choice`]), so that
//! controllers and broker mirrors of different versions, whose rules may
//! differ, apply it alike (ADR 0013). Only commands logged without
//! decisions run them at apply time.

use std::collections::{BTreeMap, BTreeSet};

use uuid::Uuid;

use crate::model::{MetadataState, Move, Partition, PartitionId};

/// The live (unfenced, not draining) brokers' loads, and where each
/// topic's partitions are by zone.
pub(super) struct Load {
    /// Partitions per live broker.
    brokers: BTreeMap<i32, usize>,
    /// Each live broker's zone (`""` without a rack).
    zone_of: BTreeMap<i32, String>,
    /// Live brokers per zone.
    zone_size: BTreeMap<String, usize>,
    /// Partitions per (topic, zone), on live brokers.
    topic_zone: BTreeMap<Uuid, BTreeMap<String, usize>>,
}

impl Load {
    /// Counts each partition at its pending move's target, if any.
    pub(super) fn of(state: &MetadataState) -> Load {
        Load::of_except(state, None)
    }

    /// As [`Load::of`], with broker `except` (if any) counted as not live:
    /// the load a fence or drain of it leaves.
    pub(super) fn of_except(state: &MetadataState, except: Option<i32>) -> Load {
        let mut load = Load {
            brokers: BTreeMap::new(),
            zone_of: BTreeMap::new(),
            zone_size: BTreeMap::new(),
            topic_zone: BTreeMap::new(),
        };
        for b in state
            .brokers
            .values()
            .filter(|b| !b.fenced && !b.draining && Some(b.id) != except)
        {
            let zone = b.rack.clone().unwrap_or_default();
            load.brokers.insert(b.id, 0);
            *load.zone_size.entry(zone.clone()).or_default() += 1;
            load.zone_of.insert(b.id, zone);
        }
        for topic in state.topics.values() {
            for partition in &topic.partitions {
                load.add(topic.id, partition.target.unwrap_or(partition.leader));
            }
        }
        load
    }

    pub(super) fn is_live(&self, broker: i32) -> bool {
        self.brokers.contains_key(&broker)
    }

    /// The live brokers, ascending.
    pub(super) fn live(&self) -> impl Iterator<Item = i32> + '_ {
        self.brokers.keys().copied()
    }

    /// The zone of live broker `broker` (`""` without a rack).
    pub(super) fn zone(&self, broker: i32) -> &str {
        self.zone_of.get(&broker).map_or("", String::as_str)
    }

    /// How concentrated `topic` is in `zone`: its partitions there per live
    /// broker there, as a fraction `(count, brokers)`.
    pub(super) fn topic_share(&self, topic: Uuid, zone: &str) -> (usize, usize) {
        let count = self
            .topic_zone
            .get(&topic)
            .and_then(|zones| zones.get(zone))
            .copied()
            .unwrap_or(0);
        (count, self.zone_size(zone))
    }

    /// Live brokers in `zone` (at least 1, as a denominator).
    pub(super) fn zone_size(&self, zone: &str) -> usize {
        self.zone_size.get(zone).copied().unwrap_or(1).max(1)
    }

    /// Records one more partition of `topic` at `broker` (if it is live).
    pub(super) fn add(&mut self, topic: Uuid, broker: i32) {
        if let Some(n) = self.brokers.get_mut(&broker) {
            *n += 1;
            let zone = self.zone_of.get(&broker).map_or("", String::as_str);
            let zones = self.topic_zone.entry(topic).or_default();
            match zones.get_mut(zone) {
                Some(c) => *c += 1,
                None => {
                    zones.insert(zone.to_owned(), 1);
                }
            }
        }
    }

    /// Records one partition of `topic` fewer at `broker` (if it is live).
    #[cfg(test)]
    pub(super) fn remove(&mut self, topic: Uuid, broker: i32) {
        if let Some(n) = self.brokers.get_mut(&broker) {
            *n = n.saturating_sub(1);
            let zone = self.zone_of.get(&broker).map_or("", String::as_str);
            if let Some(c) = self
                .topic_zone
                .get_mut(&topic)
                .and_then(|zones| zones.get_mut(zone))
            {
                *c = c.saturating_sub(1);
            }
        }
    }

    /// Where a partition of `topic` goes (see the module doc), now counted
    /// there; `-1` when no broker is live.
    pub(super) fn place(&mut self, topic: Uuid) -> i32 {
        let Some(least) = self.brokers.values().min().copied() else {
            return -1;
        };
        let mut best: Option<(i32, (usize, usize))> = None;
        for (&broker, _) in self.brokers.iter().filter(|(_, n)| **n == least) {
            let share = self.topic_share(topic, self.zone(broker));
            // Fewer per broker wins; ids ascend, so the first of equals stays.
            if best.is_none_or(|(_, b)| less(share, b)) {
                best = Some((broker, share));
            }
        }
        let target = best.map_or(-1, |(b, _)| b);
        self.add(topic, target);
        target
    }
}

/// Placement decisions as a command carries them, applied (ADR 0013): a
/// partition goes to the broker decided for it if that broker is live when
/// the command applies, else to the live broker with the lowest id (`-1`
/// when none is). This fallback is part of the log's meaning and never
/// changes, so every version applies a decided command alike.
pub(super) struct Choice {
    placed: BTreeMap<PartitionId, i32>,
    live: BTreeSet<i32>,
}

impl Choice {
    /// The decisions `placed`, against the brokers live in `state` now.
    pub(super) fn new(state: &MetadataState, placed: &[Move]) -> Choice {
        Choice {
            placed: placed.iter().map(|m| (m.partition, m.to)).collect(),
            live: state
                .brokers
                .values()
                .filter(|b| !b.fenced && !b.draining)
                .map(|b| b.id)
                .collect(),
        }
    }

    /// Whether `broker` is registered, not fenced and not draining.
    pub(super) fn is_live(&self, broker: i32) -> bool {
        self.live.contains(&broker)
    }

    /// Where `partition` goes.
    pub(super) fn leader(&self, partition: PartitionId) -> i32 {
        match self.placed.get(&partition) {
            Some(&broker) if self.is_live(broker) => broker,
            _ => self.live.first().copied().unwrap_or(-1),
        }
    }
}

/// Partitions `pick` selects (in state order), each placed by the rules
/// with broker `id` counted as not live: what a fence, give-up or drain of
/// `id` decides. `pick` sees the load as placed so far.
pub(super) fn plan_away(
    state: &MetadataState,
    id: i32,
    pick: impl Fn(&Partition, &Load) -> bool,
) -> Vec<Move> {
    let mut load = Load::of_except(state, Some(id));
    let mut placed = Vec::new();
    for topic in state.topics.values() {
        for (index, partition) in topic.partitions.iter().enumerate() {
            if pick(partition, &load) {
                placed.push(Move {
                    partition: PartitionId {
                        topic_id: topic.id,
                        partition: index as i32,
                    },
                    to: load.place(topic.id),
                });
            }
        }
    }
    placed
}

/// `a < b` for fractions `(numerator, denominator)` with positive
/// denominators.
pub(super) fn less(a: (usize, usize), b: (usize, usize)) -> bool {
    (a.0 as u128) * (b.1 as u128) < (b.0 as u128) * (a.1 as u128)
}
