//! Requesting, completing, cancelling moves; draining; rebalancing.

use crate::model::fixture::{
    check_invariants, commit, create_topic, create_topic_on, pid, register, register_volume, Driver,
};
use crate::model::{ApplyError, Command, HandOff, Move, Outcome};

fn leaders(d: &Driver, topic: &str) -> Vec<(i32, i32, Option<i32>)> {
    d.state.topics[topic]
        .partitions
        .iter()
        .map(|p| (p.leader, p.leader_epoch, p.target))
        .collect()
}

fn handoff(partition: i32, leader_epoch: i32, committed_end: i64) -> HandOff {
    HandOff {
        partition: pid(1, partition),
        leader_epoch,
        committed_end,
    }
}

fn three_brokers_topic_on_1(partitions: i32) -> Driver {
    let mut d = Driver::default();
    d.ok(register(1));
    d.ok(register(2));
    d.ok(register(3));
    d.ok(create_topic("a", 1, partitions)); // leader 1
    d
}

#[test]
fn a_requested_move_completes_when_the_old_leader_hands_off() {
    let mut d = three_brokers_topic_on_1(2);
    d.ok(commit("o1", &[(pid(1, 0), 0, 10, 0)]));
    let moves = vec![Move {
        partition: pid(1, 0),
        to: 2,
    }];
    assert_eq!(
        d.ok(Command::RequestMoves { moves }),
        Outcome::MovesRequested { requested: 1 }
    );
    assert_eq!(leaders(&d, "a"), vec![(1, 0, Some(2)), (1, 0, None)]);
    // A hand-off that does not match (stale committed end) is skipped; a
    // stale broker incarnation is refused outright.
    assert_eq!(
        d.ok(Command::CompleteMoves {
            from: 1,
            broker_epoch: 1,
            handoffs: vec![handoff(0, 0, 5)],
        }),
        Outcome::MovesCompleted {
            moved: 0,
            skipped: 1
        }
    );
    assert!(matches!(
        d.refused(Command::CompleteMoves {
            from: 1,
            broker_epoch: 9,
            handoffs: vec![handoff(0, 0, 10)],
        }),
        ApplyError::StaleBrokerEpoch { .. }
    ));
    assert_eq!(
        d.ok(Command::CompleteMoves {
            from: 1,
            broker_epoch: 1,
            handoffs: vec![handoff(0, 0, 10)],
        }),
        Outcome::MovesCompleted {
            moved: 1,
            skipped: 0
        }
    );
    assert_eq!(leaders(&d, "a"), vec![(2, 1, None), (1, 0, None)]);
    // The old leader's late commit is refused; the new leader continues at 10.
    assert!(matches!(
        d.refused(commit("late", &[(pid(1, 0), 10, 12, 0)])),
        ApplyError::StaleLeaderEpoch { .. }
    ));
    d.ok(commit("o2", &[(pid(1, 0), 10, 12, 1)]));
    check_invariants(&d.state);
}

#[test]
fn bad_targets_are_refused_and_a_move_to_the_leader_cancels() {
    let mut d = three_brokers_topic_on_1(2);
    let before = d.state.clone();
    for (to, partition) in [(9, 0), (2, 7)] {
        let moves = vec![
            Move {
                partition: pid(1, 1),
                to: 2,
            },
            Move {
                partition: pid(1, partition),
                to,
            },
        ];
        d.refused(Command::RequestMoves { moves });
        assert_eq!(d.state, before, "a refused batch changes nothing");
    }
    let to = |to| {
        vec![Move {
            partition: pid(1, 0),
            to,
        }]
    };
    d.ok(Command::RequestMoves { moves: to(3) });
    d.ok(Command::RequestMoves { moves: to(1) });
    assert_eq!(leaders(&d, "a")[0], (1, 0, None));
    // A hand-off of a cancelled move reopens it at the same broker, new epoch.
    d.ok(Command::CompleteMoves {
        from: 1,
        broker_epoch: 1,
        handoffs: vec![handoff(0, 0, 0)],
    });
    assert_eq!(leaders(&d, "a")[0], (1, 1, None));
    // A fenced target is not live.
    d.ok(Command::FenceBroker { id: 3, epoch: 1 });
    assert!(matches!(
        d.refused(Command::RequestMoves { moves: to(3) }),
        ApplyError::InvalidMove { to: 3, .. }
    ));
}

#[test]
fn draining_targets_every_partition_elsewhere_and_places_nothing_there() {
    let mut d = three_brokers_topic_on_1(4);
    assert_eq!(
        d.ok(Command::DrainBroker { id: 1 }),
        Outcome::MovesRequested { requested: 4 }
    );
    assert!(d.state.brokers[&1].draining);
    let targets: Vec<Option<i32>> = leaders(&d, "a").iter().map(|l| l.2).collect();
    assert_eq!(targets, vec![Some(2), Some(3), Some(2), Some(3)]);
    // New partitions avoid the draining broker; it cannot be a target.
    d.ok(Command::CreateTopic {
        name: "b".to_owned(),
        id: crate::model::fixture::topic_id(2),
        partitions: 2,
        configs: Default::default(),
        leader: -1,
    });
    assert!(d.state.topics["b"].partitions.iter().all(|p| p.leader != 1));
    assert!(matches!(
        d.refused(Command::RequestMoves {
            moves: vec![Move {
                partition: pid(2, 0),
                to: 1
            }]
        }),
        ApplyError::InvalidMove { .. }
    ));
    // If a target dies before the hand-off, the partition goes to a live one.
    d.ok(Command::FenceBroker { id: 3, epoch: 1 });
    d.ok(Command::CompleteMoves {
        from: 1,
        broker_epoch: 1,
        handoffs: (0..4).map(|p| handoff(p, 0, 0)).collect(),
    });
    assert!(leaders(&d, "a").iter().all(|l| l.0 == 2 && l.1 == 1));
    // Registering again ends the drain.
    d.ok(register(1));
    assert!(!d.state.brokers[&1].draining);
    check_invariants(&d.state);
}

#[test]
fn the_last_broker_with_partitions_cannot_be_drained() {
    let mut d = Driver::default();
    d.ok(register(1));
    d.ok(create_topic("a", 1, 1));
    assert!(matches!(
        d.refused(Command::DrainBroker { id: 1 }),
        ApplyError::CannotDrain { id: 1, .. }
    ));
    assert!(matches!(
        d.refused(Command::DrainBroker { id: 4 }),
        ApplyError::UnknownBroker { id: 4 }
    ));
    // A broker that leads nothing can always drain.
    d.ok(register(2));
    assert_eq!(
        d.ok(Command::DrainBroker { id: 2 }),
        Outcome::MovesRequested { requested: 0 }
    );
}

#[test]
fn rebalancing_evens_out_partition_counts() {
    let mut d = three_brokers_topic_on_1(7);
    assert_eq!(
        d.ok(Command::Rebalance),
        Outcome::MovesRequested { requested: 4 }
    );
    let mut count = std::collections::BTreeMap::new();
    for (leader, _, target) in leaders(&d, "a") {
        *count.entry(target.unwrap_or(leader)).or_insert(0) += 1;
    }
    assert_eq!(count.into_values().collect::<Vec<_>>(), vec![3, 2, 2]);
    // Balanced (counting pending moves): nothing more to do.
    assert_eq!(
        d.ok(Command::Rebalance),
        Outcome::MovesRequested { requested: 0 }
    );
}

#[test]
fn the_rebalance_plan_is_what_rebalancing_requests_and_reads_only() {
    let mut d = three_brokers_topic_on_1(7);
    let before = d.state.clone();
    let plan = crate::model::rebalance_plan(&d.state);
    assert_eq!(d.state, before, "planning changes nothing");
    assert_eq!(plan.len(), 4);
    assert_eq!(
        d.ok(Command::Rebalance),
        Outcome::MovesRequested { requested: 4 }
    );
    for m in &plan {
        let p = d.state.partition(m.partition).unwrap();
        assert_eq!(p.target, Some(m.to), "{m:?}");
    }
    let targeted = d.state.topics["a"]
        .partitions
        .iter()
        .filter(|p| p.target.is_some())
        .count();
    assert_eq!(targeted, plan.len(), "nothing beyond the plan moves");
    assert!(crate::model::rebalance_plan(&d.state).is_empty());
}

#[test]
fn reported_loads_weigh_in_rebalancing() {
    let mut d = Driver::default();
    d.ok(register(1));
    d.ok(register(2));
    d.ok(register(3));
    for (name, id, leader) in [("hot", 1, 1), ("b", 2, 2), ("c", 3, 3)] {
        d.ok(create_topic_on(name, id, 2, leader));
    }
    // Two partitions each: balanced by count, nothing to do.
    assert_eq!(
        d.ok(Command::Rebalance),
        Outcome::MovesRequested { requested: 0 }
    );
    // Broker 1's two partitions carry all the traffic.
    let report = |broker: i32, loads: Vec<(crate::model::PartitionId, u64)>| Command::ReportLoad {
        broker,
        broker_epoch: 1,
        loads,
    };
    d.ok(report(
        1,
        vec![(pid(1, 0), 50_000_000), (pid(1, 1), 50_000_000)],
    ));
    // A report for a partition led elsewhere is ignored; a stale one refused.
    d.ok(report(2, vec![(pid(1, 0), 1)]));
    assert_eq!(d.state.topics["hot"].partitions[0].load, 50_000_000);
    assert!(matches!(
        d.refused(Command::ReportLoad {
            broker: 1,
            broker_epoch: 7,
            loads: vec![]
        }),
        ApplyError::StaleBrokerEpoch { .. }
    ));
    let requested = match d.ok(Command::Rebalance) {
        Outcome::MovesRequested { requested } => requested,
        o => panic!("{o:?}"),
    };
    assert!(requested >= 1, "a hot partition moves");
    let at = |topic: &str, i: usize| {
        let p = &d.state.topics[topic].partitions[i];
        p.target.unwrap_or(p.leader)
    };
    assert_ne!(
        at("hot", 0),
        at("hot", 1),
        "the two hot partitions end on different brokers"
    );
    check_invariants(&d.state);
}

fn register_in(id: i32, zone: &str) -> Command {
    match register(id) {
        Command::RegisterBroker {
            id,
            host,
            port,
            volume_wal,
            ..
        } => Command::RegisterBroker {
            id,
            host,
            port,
            rack: Some(zone.to_owned()),
            volume_wal,
        },
        c => c,
    }
}

fn placed_topic(name: &str, id: u128, partitions: i32) -> Command {
    create_topic_on(name, id, partitions, -1)
}

/// The zone of each partition's (pending) leader.
fn zones_of(d: &Driver, topic: &str) -> Vec<String> {
    d.state.topics[topic]
        .partitions
        .iter()
        .map(|p| {
            let at = p.target.unwrap_or(p.leader);
            d.state.brokers[&at].rack.clone().unwrap_or_default()
        })
        .collect()
}

#[test]
fn placement_spreads_a_topic_over_zones_among_equally_loaded_brokers() {
    let mut d = Driver::default();
    d.ok(register_in(1, "a"));
    d.ok(register_in(2, "a"));
    d.ok(register_in(3, "b"));
    d.ok(register_in(4, "c"));
    // Least-loaded first, then the zone with the fewest of the topic's
    // partitions: not brokers 1 and 2 (both in zone a).
    d.ok(placed_topic("t", 1, 3));
    assert_eq!(zones_of(&d, "t"), vec!["a", "b", "c"]);
    // A second topic balances counts first (broker 2 is idle), then zones.
    d.ok(placed_topic("u", 2, 2));
    let leaders: Vec<i32> = d.state.topics["u"]
        .partitions
        .iter()
        .map(|p| p.leader)
        .collect();
    assert_eq!(leaders[0], 2, "the idle broker takes the first");
    assert_ne!(zones_of(&d, "u")[1], "a", "the second goes to another zone");
    // Draining broker 3 (zone b, the only one there) spreads its partitions
    // where the topics are thinnest, still evenly by count.
    d.ok(Command::DrainBroker { id: 3 });
    let mut count = std::collections::BTreeMap::new();
    for topic in ["t", "u"] {
        for p in &d.state.topics[topic].partitions {
            *count.entry(p.target.unwrap_or(p.leader)).or_insert(0) += 1;
        }
    }
    assert!(!count.contains_key(&3), "{count:?}");
    assert!(count.values().all(|n| *n <= 2), "{count:?}");
    check_invariants(&d.state);
}

#[test]
fn rebalancing_prefers_moves_that_spread_a_topic_over_zones() {
    let mut d = Driver::default();
    d.ok(register_in(1, "a"));
    d.ok(register_in(2, "b"));
    // Topics x and y: both partitions on broker 1 (zone a).
    for (name, id) in [("x", 1), ("y", 2)] {
        d.ok(create_topic_on(name, id, 2, 1));
    }
    // Broker 2 leads one of x's (moved there by hand earlier).
    d.ok(Command::RequestMoves {
        moves: vec![Move {
            partition: pid(1, 0),
            to: 2,
        }],
    });
    // 3 on broker 1, 1 on broker 2: one moves, and it is one of y's (all
    // of y is in zone a; x is already split), though x comes first.
    assert_eq!(
        d.ok(Command::Rebalance),
        Outcome::MovesRequested { requested: 1 }
    );
    let mut zones = zones_of(&d, "y");
    zones.sort();
    assert_eq!(zones, vec!["a", "b"]);
    assert_eq!(zones_of(&d, "x"), vec!["b", "a"]);
    check_invariants(&d.state);
}

#[test]
fn small_load_differences_do_not_move_partitions() {
    let mut d = Driver::default();
    d.ok(register(1));
    d.ok(register(2));
    for (name, id, leader, partitions) in [("p", 1, 1, 3), ("q", 2, 2, 2)] {
        d.ok(create_topic_on(name, id, partitions, leader));
    }
    let report = |broker: i32, loads: Vec<(crate::model::PartitionId, u64)>| Command::ReportLoad {
        broker,
        broker_epoch: 1,
        loads,
    };
    // Within a tenth of the mean of each other, nothing moves (no flapping
    // on noise), though moving one of p's small partitions would even
    // them out a little.
    d.ok(report(
        1,
        vec![
            (pid(1, 0), 1_000_000),
            (pid(1, 1), 50_000),
            (pid(1, 2), 50_000),
        ],
    ));
    d.ok(report(2, vec![(pid(2, 0), 1_000_000), (pid(2, 1), 1_000)]));
    assert_eq!(
        d.ok(Command::Rebalance),
        Outcome::MovesRequested { requested: 0 }
    );
    // Far apart: partitions move, and then it is stable.
    d.ok(report(
        1,
        vec![
            (pid(1, 0), 3_000_000),
            (pid(1, 1), 3_000_000),
            (pid(1, 2), 3_000_000),
        ],
    ));
    let requested = match d.ok(Command::Rebalance) {
        Outcome::MovesRequested { requested } => requested,
        o => panic!("{o:?}"),
    };
    assert!(requested >= 1);
    assert_eq!(
        d.ok(Command::Rebalance),
        Outcome::MovesRequested { requested: 0 }
    );
    check_invariants(&d.state);
}

#[test]
fn giving_up_on_a_lost_volume_wal_broker_moves_its_partitions_under_a_new_epoch() {
    let mut d = Driver::default();
    d.ok(register(2));
    d.ok(register(3));
    d.ok(register_volume(1));
    d.ok(create_topic("a", 1, 4)); // all on broker 1
    d.ok(commit("o1", &[(pid(1, 0), 0, 10, 0)]));
    // While its lease holds, giving up is refused (drain it instead).
    assert!(matches!(
        d.refused(Command::GiveUpBroker { id: 1 }),
        ApplyError::CannotGiveUp { id: 1, .. }
    ));
    assert!(matches!(
        d.refused(Command::GiveUpBroker { id: 9 }),
        ApplyError::UnknownBroker { id: 9 }
    ));
    // Fenced: it keeps its partitions (its volume may hold acknowledged data).
    d.ok(Command::FenceBroker { id: 1, epoch: 1 });
    assert!(leaders(&d, "a").iter().all(|(l, e, _)| *l == 1 && *e == 0));
    // Given up: they spread over the live brokers, one epoch on, from what
    // broker 1 committed.
    assert_eq!(
        d.ok(Command::GiveUpBroker { id: 1 }),
        Outcome::BrokerFenced { moved: 4 }
    );
    let after = leaders(&d, "a");
    assert!(
        after.iter().all(|(l, e, _)| *l != 1 && *e == 1),
        "{after:?}"
    );
    assert_eq!(d.state.topics["a"].partitions[0].committed_end, 10);
    // If it comes back, what it still holds at the old epoch is refused.
    d.ok(register_volume(1));
    assert!(matches!(
        d.refused(commit("late", &[(pid(1, 0), 10, 12, 0)])),
        ApplyError::StaleLeaderEpoch { .. }
    ));
    check_invariants(&d.state);
}
