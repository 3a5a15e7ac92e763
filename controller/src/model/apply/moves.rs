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

use super::placement::{less, Load};
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
/// live, to the least-loaded live broker; if the move was cancelled, back
/// to the proposer under a new epoch so it reopens it, unless the proposer
/// is draining). Hand-offs that no
/// longer match the state are skipped, not refused: the rest of the batch
/// still moves.
pub(super) fn complete_moves(
    state: &mut MetadataState,
    from: i32,
    broker_epoch: i64,
    handoffs: &[HandOff],
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
    let draining = state.brokers.get(&from).is_some_and(|b| b.draining);
    let mut load = Load::of(state);
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
            Some(t) if load.is_live(t) => t,
            Some(_) => load.place(h.partition.topic_id),
            // Cancelled (or its target was fenced): a draining broker still
            // gives it away, any other keeps it.
            None if draining => load.place(h.partition.topic_id),
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

/// Marks broker `id` draining and targets each partition it leads (or is
/// about to lead) at the least-loaded other live broker.
pub(super) fn drain_broker(state: &mut MetadataState, id: i32) -> Result<Outcome, ApplyError> {
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
    if let Some(b) = state.brokers.get_mut(&id) {
        b.draining = true;
    }
    let mut load = Load::of(state);
    let mut requested = 0u32;
    for topic in state.topics.values_mut() {
        let topic_id = topic.id;
        for partition in &mut topic.partitions {
            if partition.leader == id || partition.target == Some(id) {
                let to = load.place(topic_id);
                let partition = Arc::make_mut(partition);
                partition.target = (to != partition.leader).then_some(to);
                requested += 1;
            }
        }
    }
    Ok(Outcome::MovesRequested { requested })
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
    let mut live = Load::of(state);
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
        let (heavy_zone, light_zone) = (live.zone(heavy).to_owned(), live.zone(light).to_owned());
        // The candidate that leaves the pair most even, if it helps at all;
        // then the one whose topic leans most to the heavy broker's zone;
        // then the first topic's.
        let best = if heavy_zone == light_zone {
            // Every topic leans alike: the best over all of them at once.
            candidates.most_even_any_topic(heavy, h, l)
        } else {
            let mut best: Option<Pick> = None;
            for (&t, by_weight) in candidates.by_topic(heavy) {
                let Some((after, index, w)) = most_even(by_weight, h, l) else {
                    continue;
                };
                let (hc, hn) = live.topic_share(topics[t].id, &heavy_zone);
                let (lc, ln) = live.topic_share(topics[t].id, &light_zone);
                // heavy share − light share, as a fraction (negative → 0).
                let lean = ((hc * ln).saturating_sub(lc * hn), hn * ln);
                let better = match &best {
                    None => true,
                    Some(b) => after < b.after || (after == b.after && less(b.lean, lean)),
                };
                if better {
                    best = Some(Pick {
                        after,
                        lean,
                        topic: t,
                        index,
                        weight: w,
                    });
                }
            }
            best
        };
        let Some(Pick {
            topic: t,
            index,
            weight: w,
            ..
        }) = best
        else {
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
        live.remove(id.topic_id, heavy);
        live.add(id.topic_id, light);
        *totals.entry(heavy).or_default() -= w;
        *totals.entry(light).or_default() += w;
    }
    plan
}

/// The best candidate so far: how even it leaves the pair, its topic's
/// lean, where it is, its weight.
struct Pick {
    after: u64,
    lean: (usize, usize),
    topic: usize,
    index: i32,
    weight: u64,
}

/// One broker's candidates in one topic: partition indexes by weight.
type ByWeight = BTreeMap<u64, BTreeSet<i32>>;

/// The candidate of one topic that leaves the heavy (`h`) and the light
/// (`l`) broker most even, if moving it lowers the heavy one: the smallest
/// `max(h − w, l + w)`, among equals the highest index. That maximum falls
/// as `w` grows up to `(h − l) / 2` and rises after it, so the best weight
/// is the nearest present one on either side. Returns (that maximum,
/// index, weight).
fn most_even(by_weight: &ByWeight, h: u64, l: u64) -> Option<(u64, i32, u64)> {
    let (least, hits) = nearest_half(by_weight, h, l)?;
    hits.into_iter()
        .filter_map(|(w, indexes)| Some((*indexes.last()?, w)))
        .max_by_key(|&(index, _)| index)
        .map(|(index, w)| (least, index, w))
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

/// Each live broker's candidates, indexed two ways: per topic (in state
/// order), then weight, then index, for a topic's best when zones make
/// topics lean differently; and per weight, then topic, then index, for
/// the best over all topics at once when they do not.
#[derive(Default)]
struct Candidates {
    per_topic: BTreeMap<i32, BTreeMap<usize, ByWeight>>,
    per_weight: BTreeMap<i32, BTreeMap<u64, BTreeMap<usize, BTreeSet<i32>>>>,
}

impl Candidates {
    fn insert(&mut self, broker: i32, topic: usize, weight: u64, index: i32) {
        let per_topic = self.per_topic.entry(broker).or_default();
        let by_weight = per_topic.entry(topic).or_default();
        by_weight.entry(weight).or_default().insert(index);
        let per_weight = self.per_weight.entry(broker).or_default();
        let by_topic = per_weight.entry(weight).or_default();
        by_topic.entry(topic).or_default().insert(index);
    }

    /// A planned partition is no longer a candidate.
    fn remove(&mut self, broker: i32, topic: usize, weight: u64, index: i32) {
        fn take<K: Ord + Copy, J: Ord + Copy>(
            map: &mut BTreeMap<K, BTreeMap<J, BTreeSet<i32>>>,
            outer: K,
            inner: J,
            index: i32,
        ) {
            let Some(by_inner) = map.get_mut(&outer) else {
                return;
            };
            if let Some(indexes) = by_inner.get_mut(&inner) {
                indexes.remove(&index);
                if indexes.is_empty() {
                    by_inner.remove(&inner);
                }
            }
            if by_inner.is_empty() {
                map.remove(&outer);
            }
        }
        if let Some(per_topic) = self.per_topic.get_mut(&broker) {
            take(per_topic, topic, weight, index);
        }
        if let Some(per_weight) = self.per_weight.get_mut(&broker) {
            take(per_weight, weight, topic, index);
        }
    }

    fn by_topic(&self, broker: i32) -> impl Iterator<Item = (&usize, &ByWeight)> {
        self.per_topic.get(&broker).into_iter().flatten()
    }

    /// What the per-topic search finds when every topic leans alike: the
    /// smallest `max(h − w, l + w)` over all topics, then the first topic
    /// with a candidate of that evenness, then its highest index.
    fn most_even_any_topic(&self, broker: i32, h: u64, l: u64) -> Option<Pick> {
        let (least, hits) = nearest_half(self.per_weight.get(&broker)?, h, l)?;
        let topic = hits.iter().filter_map(|(_, t)| t.keys().next()).min()?;
        let (index, weight) = hits
            .iter()
            .filter_map(|&(w, t)| Some((*t.get(topic)?.last()?, w)))
            .max_by_key(|&(index, _)| index)?;
        Some(Pick {
            after: least,
            lean: (0, 1),
            topic: *topic,
            index,
            weight,
        })
    }
}
