//! The placement step as a table: observed layout, spec, pods and broker
//! states → the layout to apply and the action. Each `walk` drives a whole
//! transition the way reconciles would, with a stand-in controller and
//! StatefulSet controller, and checks at every step that no id runs twice
//! and that a broker leaves its set only once drained.

use std::collections::BTreeMap;

use floe_crds::CapacityType::{OnDemand, Spot};

use super::*;

fn broker(id: i32, state: BrokerState, partitions: u32) -> BrokerInfo {
    BrokerInfo {
        id,
        state,
        partitions,
        incoming: 0,
    }
}

fn active(ids: Range<i32>) -> Vec<BrokerInfo> {
    ids.map(|id| broker(id, BrokerState::Active, 2)).collect()
}

/// The broker sets validation builds: spot off (`None`), or spot on with
/// `Some(onDemandBrokers)`.
fn sets(spot: Option<i32>, replicas: i32) -> Vec<BrokerSet> {
    let set = |capacity, replicas, first_ordinal| BrokerSet {
        capacity,
        replicas,
        first_ordinal,
        node_selector: BTreeMap::new(),
        tolerations: Vec::new(),
    };
    match spot {
        None => vec![set(OnDemand, replicas, 0)],
        Some(0) => vec![set(Spot, replicas, 0)],
        Some(k) => vec![
            set(OnDemand, k.min(replicas), 0),
            set(Spot, replicas - k.min(replicas), k),
        ],
    }
}

fn layout(on_demand: Option<Range<i32>>, spot: Option<Range<i32>>) -> Layout {
    Layout { on_demand, spot }
}

fn pods_of(l: &Layout) -> Vec<BrokerPod> {
    l.assignment().into_iter().map(|(id, c)| (c, id)).collect()
}

#[test]
fn a_settled_cluster_takes_the_scaling_path() {
    let current = layout(Some(0..2), Some(2..5));
    let brokers = active(0..5);
    let plan = next(
        &sets(Some(2), 5),
        5,
        &current,
        &pods_of(&current),
        Some(&brokers),
    );
    assert_eq!(plan.layout, current);
    assert_eq!(plan.action, Action::Nothing);
    assert!(plan.moving.is_empty());
    // Scale-out keeps the boundary and grows the spot set.
    let plan = next(&sets(Some(2), 7), 7, &current, &[], Some(&brokers));
    assert_eq!(plan.layout, layout(Some(0..2), Some(2..7)));
    assert_eq!(plan.action, Action::Wait(Wait::Registering(vec![5, 6])));
    // Creation applies the spec's layout.
    let plan = next(&sets(Some(2), 5), 5, &Layout::default(), &[], Some(&[]));
    assert_eq!(plan.layout, layout(Some(0..2), Some(2..5)));
}

#[test]
fn turning_spot_on_drains_the_top_on_demand_broker_first_and_holds_the_layout() {
    let current = layout(Some(0..4), None);
    let brokers = active(0..4);
    let plan = next(
        &sets(Some(1), 4),
        4,
        &current,
        &pods_of(&current),
        Some(&brokers),
    );
    assert_eq!(plan.layout, current, "nothing changes set while it drains");
    assert_eq!(plan.action, Action::Move(vec![3]));
    assert_eq!(plan.moving, vec![(3, Spot), (2, Spot), (1, Spot)]);
    // The spot set is built, empty, at its start.
    let built = broker_sets(
        &plan.layout,
        &sets(Some(1), 4),
        &SpotSpec::default(),
        &current,
        &[],
    );
    let ranges: Vec<_> = built
        .iter()
        .map(|s| (s.capacity, s.first_ordinal, s.replicas))
        .collect();
    assert_eq!(ranges, vec![(OnDemand, 0, 4), (Spot, 1, 0)]);
}

#[test]
fn each_step_of_a_move_follows_the_brokers_state_and_the_old_pod() {
    let spec = sets(Some(1), 4);
    let current = layout(Some(0..4), Some(1..1));
    let mut brokers = active(0..4);
    brokers[3].state = BrokerState::Draining;
    let plan = next(&spec, 4, &current, &pods_of(&current), Some(&brokers));
    assert_eq!(plan.action, Action::Wait(Wait::Draining(vec![3])));
    assert_eq!(plan.layout, current);

    brokers[3] = broker(3, BrokerState::Drained, 0);
    let plan = next(&spec, 4, &current, &pods_of(&current), Some(&brokers));
    assert_eq!(plan.action, Action::Vacate(vec![3]));
    assert_eq!(plan.layout, layout(Some(0..3), Some(1..1)));

    // After a restart: the on-demand set no longer runs 3, but its pod is
    // still terminating, so 3 may not start in the spot set.
    let vacated = plan.layout;
    let mut pods = pods_of(&vacated);
    pods.push((OnDemand, 3));
    let plan = next(&spec, 4, &vacated, &pods, Some(&brokers));
    assert_eq!(plan.action, Action::Wait(Wait::Terminating(vec![3])));
    assert_eq!(plan.layout, vacated);
    // Even without the controllers.
    let plan = next(&spec, 4, &vacated, &pods, None);
    assert_eq!(plan.action, Action::Wait(Wait::Terminating(vec![3])));

    let plan = next(&spec, 4, &vacated, &pods_of(&vacated), Some(&brokers));
    assert_eq!(plan.action, Action::Place(vec![3]));
    assert_eq!(plan.layout, layout(Some(0..3), Some(3..4)));

    // The next move waits until 3 registered again in its new set.
    let placed = plan.layout;
    let plan = next(&spec, 4, &placed, &pods_of(&placed), Some(&brokers));
    assert_eq!(plan.action, Action::Wait(Wait::Registering(vec![3])));
    brokers[3] = broker(3, BrokerState::Active, 0);
    let plan = next(&spec, 4, &placed, &pods_of(&placed), Some(&brokers));
    assert_eq!(plan.action, Action::Move(vec![2]));
    assert_eq!(plan.moving, vec![(2, Spot), (1, Spot)]);
}

#[test]
fn moves_are_held_without_the_controllers() {
    let current = layout(Some(0..3), Some(3..5));
    let plan = next(&sets(None, 5), 5, &current, &pods_of(&current), None);
    assert_eq!(plan.action, Action::Wait(Wait::AdminUnavailable));
    assert_eq!(plan.layout, current);
    assert_eq!(plan.moving, vec![(3, OnDemand), (4, OnDemand)]);
}

#[test]
fn a_set_the_spec_no_longer_wants_stays_at_zero_until_its_pods_are_gone() {
    let spec = sets(None, 3);
    let current = layout(Some(0..3), Some(3..3));
    let plan = next(&spec, 3, &current, &[(Spot, 3)], Some(&active(0..3)));
    assert_eq!(plan.action, Action::Nothing);
    let kept = broker_sets(
        &plan.layout,
        &spec,
        &SpotSpec::default(),
        &current,
        &[(Spot, 3)],
    );
    assert_eq!(
        kept.iter()
            .map(|s| (s.capacity, s.first_ordinal, s.replicas))
            .collect::<Vec<_>>(),
        vec![(OnDemand, 0, 3), (Spot, 3, 0)]
    );
    let gone = broker_sets(&plan.layout, &spec, &SpotSpec::default(), &current, &[]);
    assert_eq!(gone.len(), 1, "left to the orphan sweep");
}

/// A stand-in world: the applied layout, the pods of the StatefulSets
/// (removed one step after their id leaves a set, like a pod in its grace
/// period), and the controllers (drains finish one step after they start; a
/// new pod registers one step after it started).
struct World {
    layout: Layout,
    pods: Vec<BrokerPod>,
    leaving: Vec<BrokerPod>,
    brokers: Vec<BrokerInfo>,
    starting: Vec<i32>,
}

impl World {
    fn settled(spot: Option<i32>, replicas: i32) -> World {
        let layout = Layout::distributed(&sets(spot, replicas), replicas);
        World {
            pods: pods_of(&layout),
            layout,
            leaving: Vec::new(),
            brokers: active(0..replicas),
            starting: Vec::new(),
        }
    }

    fn state(&self, id: i32) -> Option<BrokerState> {
        self.brokers.iter().find(|b| b.id == id).map(|b| b.state)
    }

    /// One reconcile and what the world does until the next; returns the plan.
    fn step(&mut self, spec: &[BrokerSet], replicas: i32) -> Plan {
        let plan = next(
            spec,
            replicas,
            &self.layout,
            &self.pods,
            Some(&self.brokers),
        );
        assert_eq!(
            plan,
            next(
                spec,
                replicas,
                &self.layout,
                &self.pods,
                Some(&self.brokers)
            ),
            "pure"
        );
        let built = broker_sets(
            &plan.layout,
            spec,
            &SpotSpec::default(),
            &self.layout,
            &self.pods,
        );
        let mut applied = Layout::default();
        for set in &built {
            *applied.slot(set.capacity) = Some(set.first_ordinal..set.first_ordinal + set.replicas);
        }
        // Ids never overlap, and only drained brokers leave a set.
        for (id, c) in self.layout.assignment() {
            if applied.runs(id) != Some(c) {
                assert_ne!(
                    self.state(id),
                    Some(BrokerState::Active),
                    "{id} left {c:?} undrained: {plan:?}"
                );
                assert_ne!(self.state(id), Some(BrokerState::Draining));
            }
        }
        let mut seen = applied.assignment();
        seen.dedup_by_key(|(id, _)| *id);
        assert_eq!(seen, applied.assignment(), "an id in two sets: {applied:?}");

        // The controllers.
        for b in self.brokers.iter_mut() {
            if b.state == BrokerState::Draining {
                b.state = BrokerState::Drained;
                b.partitions = 0;
            }
        }
        for id in self.starting.drain(..) {
            self.brokers.retain(|b| b.id != id);
            self.brokers.push(broker(id, BrokerState::Active, 0));
        }
        match &plan.action {
            Action::Drain(ids) | Action::Move(ids) => {
                for b in self.brokers.iter_mut().filter(|b| ids.contains(&b.id)) {
                    b.state = BrokerState::Draining;
                }
            }
            Action::Rebalance => {
                for b in self.brokers.iter_mut() {
                    b.partitions = 2;
                }
            }
            _ => {}
        }
        // The StatefulSet controller: pods out of range go (after a step),
        // pods in range are created — never beside another set's pod.
        self.pods.retain(|p| !self.leaving.contains(p));
        self.leaving = self
            .pods
            .iter()
            .filter(|(c, id)| applied.runs(*id) != Some(*c))
            .copied()
            .collect();
        for (id, c) in applied.assignment() {
            if !self.pods.contains(&(c, id)) {
                assert!(
                    !self.pods.iter().any(|(_, o)| *o == id),
                    "{id} started in {c:?} while another pod has it: {:?}",
                    self.pods
                );
                self.pods.push((c, id));
                self.starting.push(id);
            }
        }
        self.layout = applied;
        plan
    }

    /// Reconcile until nothing is left to do; returns every plan.
    fn walk(&mut self, spot: Option<i32>, replicas: i32) -> Vec<Plan> {
        let spec = sets(spot, replicas);
        let mut plans = Vec::new();
        for _ in 0..200 {
            let plan = self.step(&spec, replicas);
            let done = plan.action == Action::Nothing;
            plans.push(plan);
            if done && self.leaving.is_empty() {
                let last = self.step(&spec, replicas);
                assert_eq!(last.action, Action::Nothing);
                let want = Layout::distributed(&spec, replicas);
                assert_eq!(self.layout.assignment(), want.assignment());
                return plans;
            }
        }
        panic!("no end: {:?}", &plans[plans.len() - 5..]);
    }
}

fn moves(plans: &[Plan]) -> Vec<i32> {
    plans
        .iter()
        .filter_map(|p| match &p.action {
            Action::Move(ids) => Some(ids[0]),
            _ => None,
        })
        .collect()
}

fn drains(plans: &[Plan]) -> Vec<Vec<i32>> {
    plans
        .iter()
        .filter_map(|p| match &p.action {
            Action::Drain(ids) => Some(ids.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn spot_on_moves_every_broker_above_on_demand_one_by_one() {
    let mut w = World::settled(None, 5);
    let plans = w.walk(Some(2), 5);
    assert_eq!(moves(&plans), vec![4, 3, 2]);
    assert_eq!(w.layout, layout(Some(0..2), Some(2..5)));
    assert!(plans.iter().any(|p| p.action == Action::Rebalance));
}

#[test]
fn spot_on_with_no_on_demand_brokers_empties_and_drops_the_on_demand_set() {
    let mut w = World::settled(None, 3);
    let plans = w.walk(Some(0), 3);
    assert_eq!(moves(&plans), vec![2, 1, 0]);
    assert_eq!(w.layout, layout(None, Some(0..3)));
}

#[test]
fn spot_off_moves_the_lowest_spot_broker_first_and_drops_the_spot_set() {
    let mut w = World::settled(Some(2), 5);
    let plans = w.walk(None, 5);
    assert_eq!(moves(&plans), vec![2, 3, 4]);
    assert_eq!(w.layout, layout(Some(0..5), None));

    let mut w = World::settled(Some(0), 3);
    let plans = w.walk(None, 3);
    assert_eq!(moves(&plans), vec![0, 1, 2]);
    assert_eq!(w.layout, layout(Some(0..3), None));
}

#[test]
fn on_demand_brokers_up_and_down() {
    let mut w = World::settled(Some(1), 5);
    assert_eq!(moves(&w.walk(Some(3), 5)), vec![1, 2]);
    assert_eq!(w.layout, layout(Some(0..3), Some(3..5)));
    assert_eq!(moves(&w.walk(Some(2), 5)), vec![2]);
    assert_eq!(w.layout, layout(Some(0..2), Some(2..5)));
    // Above the broker count: every broker on-demand, the spot set empty.
    assert_eq!(moves(&w.walk(Some(7), 5)), vec![2, 3, 4]);
    assert_eq!(w.layout, layout(Some(0..5), Some(7..7)));
}

#[test]
fn a_scale_in_with_a_placement_change_removes_brokers_before_moving_any() {
    let mut w = World::settled(None, 5);
    let plans = w.walk(Some(1), 3);
    assert_eq!(drains(&plans), vec![vec![4, 3]]);
    assert_eq!(moves(&plans), vec![2, 1]);
    let first_move = plans
        .iter()
        .position(|p| matches!(p.action, Action::Move(_)))
        .unwrap();
    let lowered = plans
        .iter()
        .position(|p| p.action == Action::Lower(3))
        .unwrap();
    assert!(lowered < first_move);
    assert_eq!(w.layout, layout(Some(0..1), Some(1..3)));
}

#[test]
fn a_scale_out_with_a_placement_change_ends_with_every_broker_in_place() {
    // New spot brokers start above the spot range at once.
    let mut w = World::settled(None, 3);
    let plans = w.walk(Some(1), 5);
    assert_eq!(plans[0].action, Action::Place(vec![3, 4]));
    assert_eq!(moves(&plans), vec![2, 1]);
    assert_eq!(w.layout, layout(Some(0..1), Some(1..5)));

    // New on-demand brokers wait until the spot brokers below them moved.
    let mut w = World::settled(Some(0), 2);
    let plans = w.walk(None, 4);
    assert_eq!(moves(&plans), vec![0, 1]);
    assert_eq!(w.layout, layout(Some(0..4), None));
}

#[test]
fn a_change_of_mind_halfway_keeps_the_broker_where_it_is() {
    let mut w = World::settled(None, 4);
    let spec = sets(Some(1), 4);
    while moves(&[w.step(&spec, 4)]).is_empty() {}
    // Broker 3 is draining for its move to spot; spot is turned off again.
    let back = sets(None, 4);
    for _ in 0..5 {
        let plan = w.step(&back, 4);
        assert!(moves(std::slice::from_ref(&plan)).is_empty(), "{plan:?}");
        assert!(plan.moving.is_empty());
    }
    assert_eq!(w.layout.assignment(), layout(Some(0..4), None).assignment());
    // It stays drained until its pod restarts (as after a reverted scale-in).
    let plan = w.step(&back, 4);
    assert_eq!(plan.action, Action::Wait(Wait::Registering(vec![3])));
    w.brokers[3] = broker(3, BrokerState::Active, 0);
    let plan = w.step(&back, 4);
    assert_eq!(plan.action, Action::Rebalance);
}

#[test]
fn a_restart_at_any_step_resumes_from_what_it_observes() {
    // Replay a whole transition, and at every step start a fresh world
    // from the observed state only: it always finishes the same way.
    let mut w = World::settled(Some(2), 5);
    let spec = sets(None, 5);
    for _ in 0..40 {
        let mut resumed = World {
            layout: w.layout.clone(),
            pods: w.pods.clone(),
            leaving: Vec::new(),
            brokers: w.brokers.clone(),
            // Pods register by themselves; only the operator forgets.
            starting: w.starting.clone(),
        };
        resumed.walk(None, 5);
        assert_eq!(resumed.layout, layout(Some(0..5), None));
        if w.step(&spec, 5).action == Action::Nothing && w.leaving.is_empty() {
            break;
        }
    }
}
