//! Broker placement (pure): which StatefulSet runs which broker id, and how a
//! change of `spot.enabled` or `spot.onDemandBrokers` on a running cluster
//! moves brokers between the on-demand StatefulSet (`C-broker`, ids `0..a`)
//! and the spot one (`C-broker-spot`, ids from its `ordinals.start`) with
//! every moving broker drained first and no id ever running in both sets.
//!
//! Each reconcile observes the [`Layout`] the broker StatefulSets have now,
//! the broker pods that exist and the controllers' broker list; [`next`]
//! returns the layout to apply and one action. Nothing else is remembered, so
//! the procedure resumes from any point after an operator restart:
//!
//! 1. **Settled** — every running id is in the set the spec puts it in, ids
//!    contiguous from 0: the plain scaling step of [`super::scaling`].
//! 2. **Scale-in first** — ids at or above `replicas` are drained and removed
//!    before anything moves, so no broker is moved only to be removed.
//! 3. **Place** — ids in no StatefulSet that fit next to the range of the set
//!    the spec puts them in (a moved broker between its two sets; new brokers
//!    above the spot range) are started there.
//! 4. **Move** one broker at a time (the brokers' PodDisruptionBudget allows
//!    one unavailable), the one next to the boundary between the sets: the
//!    highest on-demand id when brokers go to spot, the lowest spot id when
//!    they come back. While it drains every set keeps its layout; once it is
//!    `Drained` (or not registered) it leaves its old set — a scale-down of
//!    the on-demand set, a raised `ordinals.start` of the spot set — and step
//!    3 starts it in the other set. The next move waits until every running
//!    broker is registered and active again.
//!
//! Whatever the path, an id never starts in a set while a pod of the other
//! set with that ordinal exists (a leaving pod may take its grace period to
//! go): the layout is held with [`Wait::Terminating`] until it is gone. A
//! replica change made together with a placement change is therefore done as
//! scale-in, moves, then scale-out (new spot brokers may start as soon as they
//! fit above the spot range).
//!
//! A StatefulSet the spec no longer wants is kept, lowered to 0 replicas,
//! until its last pod is gone ([`broker_sets`]); only then does the orphan
//! sweep delete it. So its brokers leave it by scale-down, which in `volume`
//! mode deletes their WAL claims (`whenScaled: Delete`, applied by the
//! StatefulSet controller to every ordinal outside `ordinals.start ..
//! start + replicas`) after they were drained and their WAL uploaded, and
//! `whenDeleted: Retain` never keeps a moved broker's claim behind.

use std::ops::Range;

use floe_crds::{CapacityType, SpotSpec};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;

use super::scaling::{self, distribute, Action, Wait};
use super::validate::BrokerSet;
use crate::admin::{BrokerInfo, BrokerState};
use crate::names;

/// The broker StatefulSets, in apply order.
const CAPACITIES: [CapacityType; 2] = [CapacityType::OnDemand, CapacityType::Spot];

/// The ids each broker StatefulSet runs (`ordinals.start .. start +
/// replicas`); `None` when the set does not exist.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Layout {
    /// `C-broker`.
    pub on_demand: Option<Range<i32>>,
    /// `C-broker-spot`.
    pub spot: Option<Range<i32>>,
}

/// A broker pod that exists: the set it belongs to and its ordinal.
pub type BrokerPod = (CapacityType, i32);

/// What to do on this reconcile.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// The layout to apply now.
    pub layout: Layout,
    /// What to ask the controllers for, or why to come back soon.
    pub action: Action,
    /// Brokers still to move, in move order, with the set each goes to.
    pub moving: Vec<(i32, CapacityType)>,
}

impl Layout {
    /// The range of one set.
    pub fn get(&self, capacity: CapacityType) -> Option<&Range<i32>> {
        match capacity {
            CapacityType::OnDemand => self.on_demand.as_ref(),
            CapacityType::Spot => self.spot.as_ref(),
        }
    }

    fn slot(&mut self, capacity: CapacityType) -> &mut Option<Range<i32>> {
        match capacity {
            CapacityType::OnDemand => &mut self.on_demand,
            CapacityType::Spot => &mut self.spot,
        }
    }

    /// The set running `id`.
    pub fn runs(&self, id: i32) -> Option<CapacityType> {
        CAPACITIES
            .into_iter()
            .find(|c| self.get(*c).is_some_and(|r| r.contains(&id)))
    }

    /// Every running id with its set, by id.
    pub fn assignment(&self) -> Vec<(i32, CapacityType)> {
        let mut out: Vec<(i32, CapacityType)> = CAPACITIES
            .into_iter()
            .flat_map(|c| {
                self.get(c)
                    .cloned()
                    .into_iter()
                    .flatten()
                    .map(move |id| (id, c))
            })
            .collect();
        out.sort_by_key(|(id, _)| *id);
        out
    }

    /// Brokers running.
    pub fn count(&self) -> i32 {
        CAPACITIES
            .into_iter()
            .filter_map(|c| self.get(c))
            .map(|r| r.len() as i32)
            .sum()
    }

    /// One past the highest running id (0 when none runs).
    pub fn top(&self) -> i32 {
        self.assignment().last().map_or(0, |(id, _)| id + 1)
    }

    /// The layout validation gives `sets` for `count` brokers (on-demand
    /// `0..onDemandBrokers`, spot from there).
    pub fn distributed(sets: &[BrokerSet], count: i32) -> Layout {
        let mut layout = Layout::default();
        for (set, n) in sets.iter().zip(distribute(sets, count)) {
            *layout.slot(set.capacity) = Some(set.first_ordinal..set.first_ordinal + n);
        }
        layout
    }

    /// The layout of the cluster's broker StatefulSets as they are.
    pub fn observe(cluster: &str, statefulsets: &[StatefulSet]) -> Layout {
        let mut layout = Layout::default();
        for sts in statefulsets {
            let Some(capacity) = CAPACITIES
                .into_iter()
                .find(|c| sts.name_any() == names::broker_statefulset(cluster, *c))
            else {
                continue;
            };
            let start = sts
                .spec
                .ordinals
                .as_ref()
                .and_then(|o| o.start)
                .unwrap_or(0);
            let replicas = sts.spec.replicas.unwrap_or(1).max(0);
            *layout.slot(capacity) = Some(start..start + replicas);
        }
        layout
    }

    /// Every set cut at `end`.
    fn truncated(&self, end: i32) -> Layout {
        let cut = |r: &Range<i32>| r.start..r.end.min(end).max(r.start);
        Layout {
            on_demand: self.on_demand.as_ref().map(cut),
            spot: self.spot.as_ref().map(cut),
        }
    }

    /// `id` taken out of the set running it, from whichever end it is at.
    fn without(&self, id: i32) -> Layout {
        let mut out = self.clone();
        for c in CAPACITIES {
            if let Some(r) = out.slot(c).as_mut().filter(|r| r.contains(&id)) {
                if r.start == id {
                    r.start += 1;
                } else if r.end - 1 == id {
                    r.end -= 1;
                }
            }
        }
        out
    }
}

/// The broker pods of `cluster` that exist, by set and ordinal (read from
/// the pod name, `<statefulset>-<ordinal>`).
pub fn broker_pods(cluster: &str, pods: &[Pod]) -> Vec<BrokerPod> {
    pods.iter()
        .filter_map(|pod| {
            let name = pod.name_any();
            CAPACITIES.into_iter().find_map(|c| {
                let prefix = format!("{}-", names::broker_statefulset(cluster, c));
                let ordinal = name.strip_prefix(&prefix)?.parse().ok()?;
                Some((c, ordinal))
            })
        })
        .collect()
}

/// The next step. `sets` and `replicas` are the validated spec's broker sets
/// and count, `current` the observed layout, `pods` the broker pods that
/// exist, `brokers` the controllers' list (`None` when they cannot be asked).
pub fn next(
    sets: &[BrokerSet],
    replicas: i32,
    current: &Layout,
    pods: &[BrokerPod],
    brokers: Option<&[BrokerInfo]>,
) -> Plan {
    let plan = plan(sets, replicas, current, brokers);
    // An id starts in a set only once no pod of another set holds it.
    let blocked: Vec<i32> = plan
        .layout
        .assignment()
        .into_iter()
        .filter(|(id, c)| current.runs(*id) != Some(*c))
        .filter(|(id, c)| pods.iter().any(|(pc, o)| o == id && pc != c))
        .map(|(id, _)| id)
        .collect();
    if blocked.is_empty() {
        plan
    } else {
        Plan {
            layout: current.clone(),
            action: Action::Wait(Wait::Terminating(blocked)),
            moving: plan.moving,
        }
    }
}

fn plan(
    sets: &[BrokerSet],
    replicas: i32,
    current: &Layout,
    brokers: Option<&[BrokerInfo]>,
) -> Plan {
    let settled = current.assignment() == Layout::distributed(sets, current.count()).assignment();
    if current == &Layout::default() || settled {
        let count = (current != &Layout::default()).then(|| current.count());
        let step = scaling::next_step(replicas, count, brokers);
        return Plan {
            layout: Layout::distributed(sets, step.replicas),
            action: step.action,
            moving: Vec::new(),
        };
    }
    let desired = Layout::distributed(sets, replicas);
    let moving = movers(current, &desired);
    let hold = |action| Plan {
        layout: current.clone(),
        action,
        moving: moving.clone(),
    };

    let top = current.top();
    if top > replicas {
        let step = scaling::scale_in(replicas, top, brokers);
        let layout = match step.action {
            Action::Lower(_) => current.truncated(replicas),
            _ => current.clone(),
        };
        return Plan {
            layout,
            action: step.action,
            moving,
        };
    }

    let joined = join(current, &desired);
    let placing: Vec<i32> = joined
        .assignment()
        .into_iter()
        .filter(|(id, c)| current.runs(*id) != Some(*c))
        .map(|(id, _)| id)
        .collect();
    if !placing.is_empty() {
        return Plan {
            layout: joined,
            action: Action::Place(placing),
            moving,
        };
    }

    let Some(&(next, _)) = moving.first() else {
        // Not settled, yet nothing to place or move: a layout this operator
        // does not make (edited by hand). Keep it rather than guess.
        return hold(Action::Nothing);
    };
    let Some(brokers) = brokers else {
        return hold(Action::Wait(Wait::AdminUnavailable));
    };
    let state = |id: i32| brokers.iter().find(|b| b.id == id).map(|b| b.state);
    match state(next) {
        Some(BrokerState::Draining) => hold(Action::Wait(Wait::Draining(vec![next]))),
        Some(BrokerState::Drained) | None => Plan {
            layout: current.without(next),
            action: Action::Vacate(vec![next]),
            moving,
        },
        Some(BrokerState::Active) => {
            let registering: Vec<i32> = current
                .assignment()
                .into_iter()
                .map(|(id, _)| id)
                .filter(|id| *id != next && state(*id) != Some(BrokerState::Active))
                .collect();
            if registering.is_empty() {
                hold(Action::Move(vec![next]))
            } else {
                hold(Action::Wait(Wait::Registering(registering)))
            }
        }
    }
}

/// Running ids whose set differs from the one `desired` puts them in, in
/// move order (each next to the boundary once the previous one has moved),
/// with the set each goes to.
fn movers(current: &Layout, desired: &Layout) -> Vec<(i32, CapacityType)> {
    let wrong = |from: CapacityType| {
        current
            .assignment()
            .into_iter()
            .filter(move |(_, c)| *c == from)
            .filter_map(|(id, c)| desired.runs(id).filter(|d| *d != c).map(|d| (id, d)))
    };
    let mut out: Vec<_> = wrong(CapacityType::OnDemand).rev().collect();
    out.extend(wrong(CapacityType::Spot));
    out
}

/// Extend each set the spec wants over the ids next to its range that no set
/// runs: the on-demand set upwards up to the spot set (or its desired end),
/// the spot set downwards down to the on-demand set (or its desired start)
/// and upwards to its desired end. Sets never shrink here.
fn join(current: &Layout, desired: &Layout) -> Layout {
    let mut out = current.clone();
    let od_end = current.on_demand.as_ref().map_or(0, |r| r.end);
    let spot_running = current.spot.clone().filter(|r| !r.is_empty());
    if let Some(want) = &desired.on_demand {
        let limit = spot_running
            .as_ref()
            .map_or(want.end, |s| want.end.min(s.start));
        let start = current.on_demand.as_ref().map_or(want.start, |r| r.start);
        out.on_demand = Some(start..od_end.max(limit));
    }
    if let Some(want) = &desired.spot {
        let from = want.start.max(od_end);
        out.spot = Some(match spot_running {
            // An empty wanted range (`onDemandBrokers` at or above the
            // broker count) adds nothing above the running spot brokers.
            Some(s) if want.is_empty() => s,
            Some(s) => s.start.min(from)..s.end.max(want.end),
            None if from < want.end => from..want.end,
            None => want.start..want.start,
        });
    }
    out
}

/// The broker StatefulSets to build for `layout`: every set the spec wants
/// (`wanted`, with the layout's range), and a set it no longer wants while it
/// still runs brokers or, lowered to 0, still has pods (its placement comes
/// from the spec's `spot` block, kept when spot is turned off). Once such a
/// set has neither, it is left out and the orphan sweep deletes it.
pub fn broker_sets(
    layout: &Layout,
    wanted: &[BrokerSet],
    spot: &SpotSpec,
    current: &Layout,
    pods: &[BrokerPod],
) -> Vec<BrokerSet> {
    let mut out = Vec::new();
    for capacity in CAPACITIES {
        let range = layout.get(capacity).filter(|r| !r.is_empty());
        if let Some(want) = wanted.iter().find(|s| s.capacity == capacity) {
            out.push(BrokerSet {
                first_ordinal: range.map_or(want.first_ordinal, |r| r.start),
                replicas: range.map_or(0, |r| r.len() as i32),
                ..want.clone()
            });
            continue;
        }
        let lingering = current
            .get(capacity)
            .filter(|r| !r.is_empty() || pods.iter().any(|(c, _)| *c == capacity));
        let Some(kept) = range.or(lingering) else {
            continue;
        };
        let (node_selector, tolerations) = match capacity {
            CapacityType::OnDemand => Default::default(),
            CapacityType::Spot => (spot.node_selector.clone(), spot.tolerations.clone()),
        };
        out.push(BrokerSet {
            capacity,
            first_ordinal: kept.start,
            replicas: range.map_or(0, |r| r.len() as i32),
            node_selector,
            tolerations,
        });
    }
    out
}

#[cfg(test)]
mod tests;
