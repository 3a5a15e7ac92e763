//! Safe scaling (pure): desired broker count, the broker StatefulSets'
//! current count and the brokers the metadata controller reports → the one
//! next [`Step`]. The reconciler applies the step's broker count and carries
//! out its action; the next reconcile computes the next step, so the whole
//! procedure is stateless and survives operator restarts.
//!
//! - **Scale-in** removes the highest ordinals (a StatefulSet always does).
//!   Those brokers are drained through the controller first; the StatefulSet
//!   keeps its count until every leaving broker reports `Drained` (or is not
//!   registered at all, so holds nothing), and only then is lowered.
//! - **Scale-out** raises the count at once; once every broker below the new
//!   count is registered and `Active`, a rebalance is asked for if some broker
//!   holds no partition (leads none, and none is moving onto it) while
//!   another holds at least two — the shape a scale-out leaves, and one that
//!   a balanced placement never has, so the request is not repeated while
//!   the controller's moves are in flight nor once they have completed.
//! - If the controller cannot be asked, the count is never lowered (a broker
//!   that still leads partitions must not disappear); raising it is safe.
//!
//! Broker id = StatefulSet ordinal (see [`crate::admin`]); ordinals are
//! `0..count` across the on-demand and spot StatefulSets.

use super::validate::BrokerSet;
use crate::admin::{BrokerInfo, BrokerState};

/// What to do on this reconcile.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step {
    /// Broker count to apply to the StatefulSets now.
    pub replicas: i32,
    /// What to ask the controller for, or why to come back soon.
    pub action: Action,
}

/// The scaling action of one reconcile.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Nothing to do.
    Nothing,
    /// Ask the controller to drain these brokers (highest id first); keep the count.
    Drain(Vec<i32>),
    /// Come back soon; nothing to ask for now.
    Wait(Wait),
    /// Every leaving broker is drained: lower the StatefulSets to this count.
    Lower(i32),
    /// New brokers registered and hold nothing: ask the controller to rebalance.
    Rebalance,
    /// Ask the controller to drain these brokers before they change
    /// StatefulSet (see [`super::placement`]); keep the layout.
    Move(Vec<i32>),
    /// These moving brokers are drained: take them out of their old
    /// StatefulSet.
    Vacate(Vec<i32>),
    /// The old pods of these moved brokers are gone: start them in their new
    /// StatefulSet.
    Place(Vec<i32>),
}

/// Why scaling waits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Wait {
    /// These brokers are draining.
    Draining(Vec<i32>),
    /// These brokers are not registered (or not active) yet.
    Registering(Vec<i32>),
    /// The controller could not be asked; a scale-in (or a move) is held.
    AdminUnavailable,
    /// Pods of these ids still exist in the StatefulSet they left; the ids
    /// start in their new StatefulSet once those pods are gone.
    Terminating(Vec<i32>),
}

/// The next scaling step.
///
/// `current` is the sum of the broker StatefulSets' `spec.replicas` (`None`
/// before they exist); `brokers` is the controller's list, `None` when the
/// controller could not be asked.
pub fn next_step(desired: i32, current: Option<i32>, brokers: Option<&[BrokerInfo]>) -> Step {
    let current = current.unwrap_or(0);
    if current > desired {
        return scale_in(desired, current, brokers);
    }
    let action = match brokers {
        None if current < desired => Action::Wait(Wait::AdminUnavailable),
        None => Action::Nothing,
        Some(brokers) => {
            let missing: Vec<i32> = (0..desired)
                .filter(|id| {
                    !brokers
                        .iter()
                        .any(|b| b.id == *id && b.state == BrokerState::Active)
                })
                .collect();
            if !missing.is_empty() {
                Action::Wait(Wait::Registering(missing))
            } else if needs_rebalance(brokers, desired) {
                Action::Rebalance
            } else {
                Action::Nothing
            }
        }
    };
    Step {
        replicas: desired,
        action,
    }
}

/// Scale-in from `current` (one past the highest running id) to `desired`:
/// drain the ids in between, keep `current` until they are drained.
pub(super) fn scale_in(desired: i32, current: i32, brokers: Option<&[BrokerInfo]>) -> Step {
    let hold = |action| Step {
        replicas: current,
        action,
    };
    let Some(brokers) = brokers else {
        return hold(Action::Wait(Wait::AdminUnavailable));
    };
    let leaving = (desired..current).rev();
    let state = |id: i32| brokers.iter().find(|b| b.id == id).map(|b| b.state);
    let active: Vec<i32> = leaving
        .clone()
        .filter(|id| state(*id) == Some(BrokerState::Active))
        .collect();
    if !active.is_empty() {
        return hold(Action::Drain(active));
    }
    let draining: Vec<i32> = leaving
        .filter(|id| state(*id) == Some(BrokerState::Draining))
        .collect();
    if !draining.is_empty() {
        return hold(Action::Wait(Wait::Draining(draining)));
    }
    Step {
        replicas: desired,
        action: Action::Lower(desired),
    }
}

/// Some staying broker holds nothing while another holds at least two. A
/// broker that partitions are moving onto already has its share coming: a
/// rebalance asked for while the last one's moves are in flight would move
/// nothing.
fn needs_rebalance(brokers: &[BrokerInfo], desired: i32) -> bool {
    let staying = || {
        brokers
            .iter()
            .filter(|b| b.id < desired && b.state == BrokerState::Active)
    };
    let empty = staying().any(|b| b.partitions + b.incoming == 0);
    let loaded = staying().any(|b| b.partitions >= 2);
    empty && loaded
}

/// The broker StatefulSets' counts for a total of `count` brokers: ordinals
/// `0..count` fill the sets in order (on-demand, then spot), each set
/// covering the ordinals from its `first_ordinal` up to the next set's.
/// With `count` equal to the spec's replicas this is what validation built.
pub fn distribute(sets: &[BrokerSet], count: i32) -> Vec<i32> {
    sets.iter()
        .enumerate()
        .map(|(i, set)| {
            let end = sets
                .get(i + 1)
                .map_or(count, |next| next.first_ordinal.min(count));
            (end - set.first_ordinal).max(0)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use floe_crds::CapacityType;

    use super::*;

    fn broker(id: i32, state: BrokerState, partitions: u32) -> BrokerInfo {
        BrokerInfo {
            id,
            state,
            partitions,
            incoming: 0,
        }
    }

    fn active(ids: std::ops::Range<i32>, partitions: u32) -> Vec<BrokerInfo> {
        ids.map(|id| broker(id, BrokerState::Active, partitions))
            .collect()
    }

    #[test]
    fn creation_applies_the_desired_count_and_waits_for_registration() {
        let step = next_step(3, None, Some(&[]));
        assert_eq!(step.replicas, 3);
        assert_eq!(step.action, Action::Wait(Wait::Registering(vec![0, 1, 2])));
    }

    #[test]
    fn steady_and_balanced_does_nothing() {
        let brokers = active(0..3, 4);
        assert_eq!(
            next_step(3, Some(3), Some(&brokers)),
            Step {
                replicas: 3,
                action: Action::Nothing
            }
        );
        // Without the controller nothing needs it either.
        assert_eq!(next_step(3, Some(3), None).action, Action::Nothing);
    }

    #[test]
    fn scale_out_raises_at_once_then_rebalances_when_new_brokers_registered() {
        let mut brokers = active(0..3, 4);
        let step = next_step(5, Some(3), Some(&brokers));
        assert_eq!(step.replicas, 5);
        assert_eq!(step.action, Action::Wait(Wait::Registering(vec![3, 4])));

        brokers.push(broker(3, BrokerState::Active, 0));
        let step = next_step(5, Some(5), Some(&brokers));
        assert_eq!(step.action, Action::Wait(Wait::Registering(vec![4])));

        brokers.push(broker(4, BrokerState::Active, 0));
        assert_eq!(
            next_step(5, Some(5), Some(&brokers)).action,
            Action::Rebalance
        );

        // After the controller spread the partitions (12 over 5): nothing more.
        let balanced: Vec<_> = [3, 3, 2, 2, 2]
            .iter()
            .enumerate()
            .map(|(id, p)| broker(id as i32, BrokerState::Active, *p))
            .collect();
        assert_eq!(
            next_step(5, Some(5), Some(&balanced)).action,
            Action::Nothing
        );
    }

    #[test]
    fn no_second_rebalance_while_the_first_ones_moves_are_in_flight() {
        // Rebalance asked: 12 on broker 0, 3 moving to each of brokers 1..=3.
        let mut brokers = vec![broker(0, BrokerState::Active, 12)];
        for id in 1..=3 {
            brokers.push(BrokerInfo {
                incoming: 3,
                ..broker(id, BrokerState::Active, 0)
            });
        }
        assert_eq!(
            next_step(4, Some(4), Some(&brokers)).action,
            Action::Nothing
        );
        // A new broker that nothing moves to still gets a rebalance.
        brokers.push(broker(4, BrokerState::Active, 0));
        assert_eq!(
            next_step(5, Some(5), Some(&brokers)).action,
            Action::Rebalance
        );
    }

    #[test]
    fn fewer_partitions_than_brokers_is_not_an_imbalance() {
        let brokers = vec![
            broker(0, BrokerState::Active, 1),
            broker(1, BrokerState::Active, 1),
            broker(2, BrokerState::Active, 0),
        ];
        assert_eq!(
            next_step(3, Some(3), Some(&brokers)).action,
            Action::Nothing
        );
    }

    #[test]
    fn scale_out_without_the_controller_still_raises() {
        let step = next_step(5, Some(3), None);
        assert_eq!(step.replicas, 5);
        assert_eq!(step.action, Action::Wait(Wait::AdminUnavailable));
    }

    #[test]
    fn scale_in_drains_the_highest_ordinals_first_and_holds_the_count() {
        let brokers = active(0..5, 2);
        let step = next_step(2, Some(5), Some(&brokers));
        assert_eq!(
            step,
            Step {
                replicas: 5,
                action: Action::Drain(vec![4, 3, 2])
            }
        );
    }

    #[test]
    fn scale_in_waits_for_draining_brokers_then_lowers() {
        let mut brokers = active(0..2, 3);
        brokers.push(broker(2, BrokerState::Draining, 1));
        brokers.push(broker(3, BrokerState::Drained, 0));
        let step = next_step(2, Some(4), Some(&brokers));
        assert_eq!(step.replicas, 4);
        assert_eq!(step.action, Action::Wait(Wait::Draining(vec![2])));

        brokers[2] = broker(2, BrokerState::Drained, 0);
        assert_eq!(
            next_step(2, Some(4), Some(&brokers)),
            Step {
                replicas: 2,
                action: Action::Lower(2)
            }
        );
    }

    #[test]
    fn scale_in_drains_only_brokers_not_yet_asked() {
        let mut brokers = active(0..3, 1);
        brokers.push(broker(3, BrokerState::Draining, 2));
        brokers.push(broker(4, BrokerState::Active, 2));
        let step = next_step(3, Some(5), Some(&brokers));
        assert_eq!(step.action, Action::Drain(vec![4]));
        assert_eq!(step.replicas, 5);
    }

    #[test]
    fn unregistered_leaving_brokers_hold_nothing_and_may_go() {
        // Broker 3 never registered (its pod never started): nothing to drain.
        let brokers = active(0..3, 1);
        assert_eq!(
            next_step(3, Some(4), Some(&brokers)).action,
            Action::Lower(3)
        );
    }

    #[test]
    fn scale_in_without_the_controller_is_held() {
        assert_eq!(
            next_step(2, Some(5), None),
            Step {
                replicas: 5,
                action: Action::Wait(Wait::AdminUnavailable)
            }
        );
    }

    fn set(capacity: CapacityType, replicas: i32, first_ordinal: i32) -> BrokerSet {
        BrokerSet {
            capacity,
            replicas,
            first_ordinal,
            node_selector: BTreeMap::new(),
            tolerations: Vec::new(),
        }
    }

    #[test]
    fn distribute_fills_on_demand_then_spot() {
        let single = [set(CapacityType::OnDemand, 3, 0)];
        assert_eq!(distribute(&single, 5), vec![5]);
        let spot = [
            set(CapacityType::OnDemand, 2, 0),
            set(CapacityType::Spot, 1, 2),
        ];
        assert_eq!(distribute(&spot, 3), vec![2, 1]);
        assert_eq!(distribute(&spot, 6), vec![2, 4]);
        assert_eq!(distribute(&spot, 1), vec![1, 0]);
        let spot_only = [set(CapacityType::Spot, 4, 0)];
        assert_eq!(distribute(&spot_only, 2), vec![2]);
    }
}
