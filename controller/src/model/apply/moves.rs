//! Moving partition leadership without moving data: a move is requested
//! (`RequestMoves`, `DrainBroker`, `Rebalance` set a partition's `target`),
//! then completed by the old leader (`CompleteMoves`) once it has fenced the
//! partition and committed everything it accepted, so the new leader opens
//! it from the object index and the producer state with nothing missing.
//! Every completed move bumps the leader epoch: a late commit by the old
//! leader is refused.
//!
//! Contract: as for every command, all checks come before any change.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use super::placement::{less, plan_away, Choice, Load};
use super::{ApplyError, Outcome};
use crate::model::{HandOff, MetadataState, Move, PartitionId};

/// Sets (or, for a move to the current leader, cancels) each move's target.
/// Every target must be a live broker that is not being drained.
pub(super) fn request_moves(
    state: &mut MetadataState,
    moves: &[Move],
) -> Result<Outcome, ApplyError> {
    let load = Load::of(state);
    for m in moves {
        let partition = state
            .partition(m.partition)
            .ok_or(ApplyError::UnknownPartition {
                partition: m.partition,
            })?;
        if m.to != partition.leader && !load.is_live(m.to) {
            return Err(ApplyError::InvalidMove {
                partition: m.partition,
                to: m.to,
                reason: "the target is not a live broker (unregistered, fenced or draining)"
                    .to_owned(),
            });
        }
    }
    let mut requested = 0u32;
    for m in moves {
        if let Some(partition) = state.partition_mut(m.partition) {
            partition.target = (m.to != partition.leader).then_some(m.to);
            requested += 1;
        }
    }
    Ok(Outcome::MovesRequested { requested })
}

/// Hands each partition the proposer still leads, under the epoch and
/// committed end it names, to its target (or, if the target is no longer
/// live, to the broker `placed` decides; if the move was cancelled, back
/// to the proposer under a new epoch so it reopens it, unless the proposer
/// is draining). Hand-offs that no longer match the state are skipped, not
/// refused: the rest of the batch still moves. Without decisions
/// (`placed` `None`: a command logged before they were made at proposal
/// time), [`plan_complete`] makes them now.
pub(super) fn complete_moves(
    state: &mut MetadataState,
    from: i32,
    broker_epoch: i64,
    handoffs: &[HandOff],
    placed: Option<&[Move]>,
) -> Result<Outcome, ApplyError> {
    let current = state
        .brokers
        .get(&from)
        .filter(|b| !b.fenced)
        .map(|b| b.epoch);
    if current != Some(broker_epoch) {
        return Err(ApplyError::StaleBrokerEpoch {
            id: from,
            epoch: broker_epoch,
            current,
        });
    }
    let planned;
    let placed = match placed {
        Some(placed) => placed,
        None => {
            planned = plan_complete(state, from, handoffs);
            &planned
        }
    };
    let draining = state.brokers.get(&from).is_some_and(|b| b.draining);
    let choice = Choice::new(state, placed);
    let (mut moved, mut skipped) = (0u32, 0u32);
    for h in handoffs {
        let Some(partition) = state.partition_mut(h.partition) else {
            skipped += 1;
            continue;
        };
        if partition.leader != from
            || partition.leader_epoch != h.leader_epoch
            || partition.committed_end != h.committed_end
        {
            skipped += 1;
            continue;
        }
        partition.leader = match partition.target.take() {
            Some(t) if choice.is_live(t) => t,
            Some(_) => choice.leader(h.partition),
            // Cancelled (or its target was fenced): a draining broker still
            // gives it away, any other keeps it.
            None if draining => choice.leader(h.partition),
            None => from,
        };
        if partition.leader < 0 {
            partition.leader = from;
        }
        partition.leader_epoch = partition.leader_epoch.saturating_add(1);
        moved += 1;
    }
    Ok(Outcome::MovesCompleted { moved, skipped })
}

/// Where `CompleteMoves` from `from` places the partitions whose target is
/// gone (or, from a draining broker, whose move was cancelled), by the
/// placement rules, as [`complete_moves`] would meet them in order.
pub(super) fn plan_complete(state: &MetadataState, from: i32, handoffs: &[HandOff]) -> Vec<Move> {
    let draining = state.brokers.get(&from).is_some_and(|b| b.draining);
    let mut load = Load::of(state);
    let mut placed = Vec::new();
    // What each handled partition looks like after its hand-off: (leader,
    // leader epoch), its target taken.
    let mut after: BTreeMap<PartitionId, (i32, i32)> = BTreeMap::new();
    for h in handoffs {
        let Some(partition) = state.partition(h.partition) else {
            continue;
        };
        let (leader, epoch, target) = match after.get(&h.partition) {
            Some(&(leader, epoch)) => (leader, epoch, None),
            None => (partition.leader, partition.leader_epoch, partition.target),
        };
        if leader != from || epoch != h.leader_epoch || partition.committed_end != h.committed_end {
            continue;
        }
        let mut to = match target {
            Some(t) if load.is_live(t) => t,
            None if !draining => from,
            _ => {
                let to = load.place(h.partition.topic_id);
                placed.push(Move {
                    partition: h.partition,
                    to,
                });
                to
            }
        };
        if to < 0 {
            to = from;
        }
        after.insert(h.partition, (to, epoch.saturating_add(1)));
    }
    placed
}

/// Marks broker `id` draining and targets each partition it leads (or is
/// about to lead) at the broker `placed` decides for it ([`plan_drain`]'s
/// when `None`).
pub(super) fn drain_broker(
    state: &mut MetadataState,
    id: i32,
    placed: Option<&[Move]>,
) -> Result<Outcome, ApplyError> {
    let broker = state
        .brokers
        .get(&id)
        .ok_or(ApplyError::UnknownBroker { id })?;
    if broker.fenced {
        return Err(ApplyError::CannotDrain {
            id,
            reason: "it is fenced: its partitions move when it is, or wait for it (volume WAL)"
                .to_owned(),
        });
    }
    let others = state
        .brokers
        .values()
        .any(|b| b.id != id && !b.fenced && !b.draining);
    let leads_any = state
        .topics
        .values()
        .flat_map(|t| &t.partitions)
        .any(|p| p.leader == id || p.target == Some(id));
    if leads_any && !others {
        return Err(ApplyError::CannotDrain {
            id,
            reason: "no other live broker can take its partitions".to_owned(),
        });
    }
    let planned;
    let placed = match placed {
        Some(placed) => placed,
        None => {
            planned = plan_drain(state, id);
            &planned
        }
    };
    if let Some(b) = state.brokers.get_mut(&id) {
        b.draining = true;
    }
    let choice = Choice::new(state, placed);
    let mut requested = 0u32;
    for topic in state.topics.values_mut() {
        let topic_id = topic.id;
        for (index, partition) in topic.partitions.iter_mut().enumerate() {
            if partition.leader == id || partition.target == Some(id) {
                let to = choice.leader(PartitionId {
                    topic_id,
                    partition: index as i32,
                });
                let partition = Arc::make_mut(partition);
                partition.target = (to >= 0 && to != partition.leader).then_some(to);
                requested += 1;
            }
        }
    }
    Ok(Outcome::MovesRequested { requested })
}

/// Where a drain of broker `id` sends each partition it leads or is about
/// to lead, by the placement rules.
pub(super) fn plan_drain(state: &MetadataState, id: i32) -> Vec<Move> {
    plan_away(state, id, |partition, _| {
        partition.leader == id || partition.target == Some(id)
    })
}

/// Records the loads broker `broker` measured on the partitions it leads
/// (others are ignored: a report can race a move).
pub(super) fn report_load(
    state: &mut MetadataState,
    broker: i32,
    broker_epoch: i64,
    loads: &[(PartitionId, u64)],
) -> Result<Outcome, ApplyError> {
    let current = state
        .brokers
        .get(&broker)
        .filter(|b| !b.fenced)
        .map(|b| b.epoch);
    if current != Some(broker_epoch) {
        return Err(ApplyError::StaleBrokerEpoch {
            id: broker,
            epoch: broker_epoch,
            current,
        });
    }
    for (id, load) in loads {
        if let Some(p) = state.partition_mut(*id).filter(|p| p.leader == broker) {
            p.load = *load;
        }
    }
    Ok(Outcome::Done)
}

/// A partition's weight in balancing: 100 for being a partition, plus 1,000
/// times its reported bytes per second over the mean of all partitions. With
/// no loads reported every partition weighs the same and balancing evens out
/// partition counts; with loads, hot partitions spread out first.
pub(super) fn weights(state: &MetadataState) -> impl Fn(u64) -> u64 {
    let (n, total) = state
        .topics
        .values()
        .flat_map(|t| &t.partitions)
        .fold((0u128, 0u128), |(n, total), p| {
            (n + 1, total + u128::from(p.load))
        });
    move |load| {
        if total == 0 {
            return 100;
        }
        let relative = u128::from(load) * n * 1_000 / total;
        100 + u64::try_from(relative).unwrap_or(u64::MAX / 4)
    }
}

/// Moves partitions from the most to the least loaded live brokers (the
/// moves of [`rebalance_plan`]).
pub(super) fn rebalance(state: &mut MetadataState) -> Result<Outcome, ApplyError> {
    let plan = rebalance_plan(state);
    for m in &plan {
        if let Some(partition) = state.partition_mut(m.partition) {
            partition.target = Some(m.to);
        }
    }
    Ok(Outcome::MovesRequested {
        requested: plan.len() as u32,
    })
}

/// A rebalance planned when it was proposed: each planned move whose
/// target is live, is not the leader, and whose partition has no move
/// pending (one requested since the plan was made wins) sets the
/// partition's target; the others are dropped, to be planned again.
pub(super) fn rebalance_decided(state: &mut MetadataState, planned: &[Move]) -> Outcome {
    let live: BTreeSet<i32> = state
        .brokers
        .values()
        .filter(|b| !b.fenced && !b.draining)
        .map(|b| b.id)
        .collect();
    let mut requested = 0u32;
    for m in planned {
        if let Some(p) = state.partition(m.partition) {
            if !live.contains(&m.to) || m.to == p.leader || p.target.is_some() {
                continue;
            }
        } else {
            continue;
        }
        if let Some(p) = state.partition_mut(m.partition) {
            p.target = Some(m.to);
            requested += 1;
        }
    }
    Outcome::MovesRequested { requested }
}

/// The moves `Rebalance` would request now, in order; empty when the live
/// brokers are balanced. Moves partitions from the most to the least loaded
/// live brokers while a move lowers the higher of the two: partitions weigh
/// by their reported bytes per second relative to the mean ([`weights`]),
/// so with no loads reported this evens out partition counts (no two
/// brokers differ by more than one). With loads reported, brokers within a
/// tenth of the mean broker weight of it count as balanced, so measurement
/// noise does not make partitions flap. Among equally good candidates the
/// partition whose topic is most concentrated in the heavy broker's zone
/// relative to the light broker's moves (a topic spreads over the zones),
/// then the highest-numbered partition of the first topic (deterministic).
/// Partitions with a pending move stay as they are (and count at their
/// target).
pub fn rebalance_plan(state: &MetadataState) -> Vec<Move> {
    plan(state, usize::MAX)
}

/// Whether [`rebalance_plan`] would move anything (it plans one move).
pub fn rebalance_would_move(state: &MetadataState) -> bool {
    !plan(state, 1).is_empty()
}

/// The first `max_moves` moves of the plan.
fn plan(state: &MetadataState, max_moves: usize) -> Vec<Move> {
    let weight = weights(state);
    let live = Load::of(state);
    let mut totals: BTreeMap<i32, u64> = live.live().map(|b| (b, 0)).collect();
    let mut plan = Vec::new();
    if totals.len() < 2 {
        return plan;
    }
    // Each live broker's candidates (partitions it leads with no pending
    // move), indexed in one pass here, so that a planned move looks at
    // weights or topics, not at partitions.
    let topics: Vec<_> = state.topics.values().collect();
    let mut candidates = Candidates::default();
    let mut any_load = false;
    let mut limit = 0usize;
    for (t, topic) in topics.iter().enumerate() {
        for (index, p) in topic.partitions.iter().enumerate() {
            limit += 1;
            any_load |= p.load > 0;
            let w = weight(p.load);
            if let Some(total) = totals.get_mut(&p.target.unwrap_or(p.leader)) {
                *total += w;
            }
            if p.target.is_none() && totals.contains_key(&p.leader) {
                candidates.insert(p.leader, t, w, index as i32);
            }
        }
    }
    // Partitions per (topic, zone) on live brokers and live brokers per
    // zone, by position, so that weighing a topic's lean is two array
    // reads; kept up to date as moves are planned.
    let zones: Vec<&str> = {
        let mut z: Vec<&str> = live.live().map(|b| live.zone(b)).collect();
        z.sort_unstable();
        z.dedup();
        z
    };
    let zone_index = |broker: i32| {
        zones
            .binary_search(&live.zone(broker))
            .expect("a live broker's zone")
    };
    let broker_zone: BTreeMap<i32, usize> = totals.keys().map(|&b| (b, zone_index(b))).collect();
    let zone_size: Vec<usize> = zones.iter().map(|z| live.zone_size(z)).collect();
    let mut topic_zone: Vec<Vec<usize>> = topics
        .iter()
        .map(|t| zones.iter().map(|z| live.topic_share(t.id, z).0).collect())
        .collect();
    let brokers = totals.len() as u64;
    let mean = totals.values().sum::<u64>() / brokers;
    let tolerance = if any_load { mean / 10 } else { 0 };
    for _ in 0..limit.min(max_moves) {
        let (&heavy, &h) = totals
            .iter()
            .max_by_key(|(b, w)| (**w, std::cmp::Reverse(**b)))
            .expect("two or more brokers");
        let (&light, &l) = totals
            .iter()
            .min_by_key(|(b, w)| (**w, **b))
            .expect("two or more brokers");
        if h <= mean + tolerance {
            break;
        }
        let (hz, lz) = (broker_zone[&heavy], broker_zone[&light]);
        // The candidate that leaves the pair most even, if it helps at all;
        // then the one whose topic leans most to the heavy broker's zone;
        // then the first topic's.
        let best = if hz == lz {
            // Every topic leans alike.
            candidates.most_even(heavy, h, l, |_| (0, 1))
        } else {
            let (hn, ln) = (zone_size[hz], zone_size[lz]);
            candidates.most_even(heavy, h, l, |t| {
                let (hc, lc) = (topic_zone[t][hz], topic_zone[t][lz]);
                // heavy share − light share, as a fraction (negative → 0).
                ((hc * ln).saturating_sub(lc * hn), hn * ln)
            })
        };
        let Some((t, index, w)) = best else {
            break;
        };
        candidates.remove(heavy, t, w, index);
        let id = PartitionId {
            topic_id: topics[t].id,
            partition: index,
        };
        plan.push(Move {
            partition: id,
            to: light,
        });
        topic_zone[t][hz] = topic_zone[t][hz].saturating_sub(1);
        topic_zone[t][lz] += 1;
        *totals.entry(heavy).or_default() -= w;
        *totals.entry(light).or_default() += w;
    }
    plan
}

/// Each live broker's candidates: per weight, then topic (in state order),
/// then partition index.
#[derive(Default)]
struct Candidates {
    per_weight: BTreeMap<i32, BTreeMap<u64, BTreeMap<usize, BTreeSet<i32>>>>,
}

impl Candidates {
    fn insert(&mut self, broker: i32, topic: usize, weight: u64, index: i32) {
        let per_weight = self.per_weight.entry(broker).or_default();
        let by_topic = per_weight.entry(weight).or_default();
        by_topic.entry(topic).or_default().insert(index);
    }

    /// A planned partition is no longer a candidate.
    fn remove(&mut self, broker: i32, topic: usize, weight: u64, index: i32) {
        let Some(per_weight) = self.per_weight.get_mut(&broker) else {
            return;
        };
        if let Some(by_topic) = per_weight.get_mut(&weight) {
            if let Some(indexes) = by_topic.get_mut(&topic) {
                indexes.remove(&index);
                if indexes.is_empty() {
                    by_topic.remove(&topic);
                }
            }
            if by_topic.is_empty() {
                per_weight.remove(&weight);
            }
        }
        if per_weight.is_empty() {
            self.per_weight.remove(&broker);
        }
    }

    /// The candidate of `broker` (heavy, weighing `h`) whose move to the
    /// light broker (`l`) leaves the two most even, if it lowers the heavy
    /// one: the smallest `max(h − w, l + w)`. Among equals the one whose
    /// topic leans most (`lean`, a fraction), then the first topic, then
    /// its highest index. Returns (topic, index, weight).
    ///
    /// Every topic's own best evenness is at least the best over all
    /// topics, and equals it exactly when the topic has a candidate of one
    /// of the (one or two) weights that give it; so only the topics under
    /// those weights are weighed.
    fn most_even(
        &self,
        broker: i32,
        h: u64,
        l: u64,
        lean: impl Fn(usize) -> (usize, usize),
    ) -> Option<(usize, i32, u64)> {
        let (_, hits) = nearest_half(self.per_weight.get(&broker)?, h, l)?;
        let mut best: Option<(usize, (usize, usize))> = None;
        for (_, by_topic) in &hits {
            for &t in by_topic.keys() {
                let lean = lean(t);
                let better = match best {
                    None => true,
                    Some((bt, bl)) => less(bl, lean) || (!less(lean, bl) && t < bt),
                };
                if better {
                    best = Some((t, lean));
                }
            }
        }
        let (topic, _) = best?;
        hits.iter()
            .filter_map(|&(w, by_topic)| Some((*by_topic.get(&topic)?.last()?, w)))
            .max_by_key(|&(index, _)| index)
            .map(|(index, w)| (topic, index, w))
    }
}

/// The weights in `by_weight` whose move leaves the heavy (`h`) and the
/// light (`l`) broker most even, if that lowers the heavy one: the
/// smallest `max(h − w, l + w)` and the (one or two) weights giving it,
/// the nearest present on either side of `(h − l) / 2`.
fn nearest_half<V>(by_weight: &BTreeMap<u64, V>, h: u64, l: u64) -> Option<(u64, Vec<(u64, &V)>)> {
    let half = h.saturating_sub(l) / 2;
    let after = |w: u64| (h - w).max(l + w);
    let below = by_weight.range(..=half).next_back();
    let above = by_weight.range(half + 1..).next();
    let least = below
        .iter()
        .chain(above.iter())
        .map(|(&w, _)| after(w))
        .min()?;
    if least >= h {
        return None;
    }
    let hits = below
        .into_iter()
        .chain(above)
        .filter(|(&w, _)| after(w) == least)
        .map(|(&w, v)| (w, v))
        .collect();
    Some((least, hits))
}
