//! `rebalance_plan` against the straightforward version it replaced (one
//! pass over every partition per planned move): the same moves, in the same
//! order, on random states. `Rebalance` applies the plan inside the state
//! machine, so any difference would make controllers of the two versions
//! disagree.

use std::collections::{BTreeMap, BTreeSet};

use super::moves::weights;
use super::placement::{less, Load};
use crate::model::fixture::{create_topic_on, register, Driver, Rng};
use crate::model::{Command, MetadataState, Move, PartitionId};

/// The plan as first written: for each move, every partition of the heavy
/// broker is looked at.
fn reference_plan(state: &MetadataState) -> Vec<Move> {
    let weight = weights(state);
    let mut live = Load::of(state);
    let mut totals: BTreeMap<i32, u64> = live.live().map(|b| (b, 0)).collect();
    let mut plan = Vec::new();
    if totals.len() < 2 {
        return plan;
    }
    let mut any_load = false;
    for p in state.topics.values().flat_map(|t| &t.partitions) {
        any_load |= p.load > 0;
        if let Some(t) = totals.get_mut(&p.target.unwrap_or(p.leader)) {
            *t += weight(p.load);
        }
    }
    let brokers = totals.len() as u64;
    let mean = totals.values().sum::<u64>() / brokers;
    let tolerance = if any_load { mean / 10 } else { 0 };
    let mut planned: BTreeSet<PartitionId> = BTreeSet::new();
    let limit = state
        .topics
        .values()
        .map(|t| t.partitions.len())
        .sum::<usize>();
    for _ in 0..limit {
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
        // then the one whose topic leans most to the heavy broker's zone.
        let mut best: Option<(u64, (usize, usize), PartitionId, u64)> = None;
        for topic in state.topics.values() {
            let lean = if heavy_zone == light_zone {
                (0, 1)
            } else {
                let (hc, hn) = live.topic_share(topic.id, &heavy_zone);
                let (lc, ln) = live.topic_share(topic.id, &light_zone);
                // heavy share − light share, as a fraction (negative → 0).
                ((hc * ln).saturating_sub(lc * hn), hn * ln)
            };
            for (index, p) in topic.partitions.iter().enumerate().rev() {
                let id = PartitionId {
                    topic_id: topic.id,
                    partition: index as i32,
                };
                if p.leader != heavy || p.target.is_some() || planned.contains(&id) {
                    continue;
                }
                let w = weight(p.load);
                let after = (h - w).max(l + w);
                if after >= h {
                    continue;
                }
                let better = match &best {
                    None => true,
                    Some((b, b_lean, _, _)) => after < *b || (after == *b && less(*b_lean, lean)),
                };
                if better {
                    best = Some((after, lean, id, w));
                }
            }
        }
        let Some((_, _, id, w)) = best else {
            break;
        };
        planned.insert(id);
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

/// A random cluster: 2–6 brokers (some in zones, some fenced or draining),
/// 1–5 topics of 1–40 partitions led anywhere (unregistered brokers too),
/// some with pending moves, loads reported or not, equal or not.
fn random_state(seed: u64) -> MetadataState {
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let mut d = Driver::default();
    let brokers = 2 + rng.below(5) as i32;
    let zones = rng.below(4);
    for id in 1..=brokers {
        let cmd = match (zones, register(id)) {
            (0, cmd) => cmd,
            (
                z,
                Command::RegisterBroker {
                    id,
                    host,
                    port,
                    volume_wal,
                    ..
                },
            ) => Command::RegisterBroker {
                id,
                host,
                port,
                rack: Some(format!("z{}", rng.below(z + 1))),
                volume_wal,
            },
            (_, cmd) => cmd,
        };
        d.ok(cmd);
    }
    for id in 1..=brokers {
        match rng.below(8) {
            0 => d.state.brokers.get_mut(&id).unwrap().fenced = true,
            1 => d.state.brokers.get_mut(&id).unwrap().draining = true,
            _ => {}
        }
    }
    let topics = 1 + rng.below(5);
    for t in 0..topics {
        let partitions = 1 + rng.below(40) as i32;
        d.ok(create_topic_on(
            &format!("t{t}"),
            u128::from(t) + 1,
            partitions,
            1,
        ));
    }
    let loads = rng.below(3);
    for topic in d.state.topics.values_mut() {
        for p in &mut topic.partitions {
            let p = std::sync::Arc::make_mut(p);
            // Mostly one broker, so there is something to even out.
            p.leader = if rng.below(3) == 0 {
                1 + rng.below(brokers as u64 + 1) as i32
            } else {
                1
            };
            p.target = (rng.below(10) == 0).then(|| 1 + rng.below(brokers as u64) as i32);
            p.load = match loads {
                0 => 0,
                1 => 1_000,
                _ => rng.below(4) * rng.below(1_000_000),
            };
        }
    }
    d.state
}

#[test]
fn the_plan_is_the_reference_plan_on_random_states() {
    let mut moved = 0;
    for seed in 0..2_000 {
        let state = random_state(seed);
        let plan = super::moves::rebalance_plan(&state);
        assert_eq!(plan, reference_plan(&state), "seed {seed}");
        assert_eq!(
            super::moves::rebalance_would_move(&state),
            !plan.is_empty(),
            "seed {seed}"
        );
        moved += plan.len();
    }
    // The states are not all balanced already.
    assert!(moved > 2_000, "only {moved} moves planned in 2,000 states");
}

/// At scale the plan no longer costs a pass over every partition per move:
/// 100,000 partitions on one of four brokers plan 75,000 moves here (the
/// old version did 7.5 billion partition checks for this).
#[test]
fn a_large_plan_evens_out_partition_counts() {
    let mut d = Driver::default();
    for id in 1..=4 {
        d.ok(register(id));
    }
    d.ok(create_topic_on("big", 1, 100_000, 1));
    let plan = super::moves::rebalance_plan(&d.state);
    assert_eq!(plan.len(), 75_000);
    let mut per_broker: BTreeMap<i32, usize> = BTreeMap::new();
    for m in &plan {
        *per_broker.entry(m.to).or_default() += 1;
    }
    assert_eq!(
        per_broker,
        BTreeMap::from([(2, 25_000), (3, 25_000), (4, 25_000)])
    );
    let distinct: BTreeSet<PartitionId> = plan.iter().map(|m| m.partition).collect();
    assert_eq!(distinct.len(), plan.len());
}
