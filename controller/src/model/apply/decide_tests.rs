//! Placement decided at proposal time (ADR 0013): the decisions a command
//! carries are what every replica applies, whatever its own rules; a stale
//! decision falls back the same way everywhere; malformed decisions are
//! refused with nothing changed.

use crate::model::fixture::{create_topic_on, pid, register, Driver};
use crate::model::{decide, ApplyError, Command, HandOff, Move, Outcome};

fn leaders(d: &Driver, topic: &str) -> Vec<i32> {
    d.state.topics[topic]
        .partitions
        .iter()
        .map(|p| p.leader)
        .collect()
}

fn three_brokers() -> Driver {
    let mut d = Driver::default();
    for id in 1..=3 {
        d.ok(register(id));
    }
    d
}

fn placed(topic: u128, leaders: &[i32]) -> Vec<Move> {
    leaders
        .iter()
        .enumerate()
        .map(|(i, &to)| Move {
            partition: pid(topic, i as i32),
            to,
        })
        .collect()
}

#[test]
fn a_proposed_placement_is_decided_once_and_carried_in_the_command() {
    let d = three_brokers();
    let create = create_topic_on("a", 1, 6, -1);
    let Some(Command::Decided { command, placed }) = decide(&d.state, &create) else {
        panic!("a placing command is decided");
    };
    assert_eq!(*command, create);
    // The rules spread the topic over the live brokers.
    let mut to: Vec<i32> = placed.iter().map(|m| m.to).collect();
    to.sort_unstable();
    assert_eq!(to, vec![1, 1, 2, 2, 3, 3]);
    // Commands that place nothing are logged as they are.
    assert_eq!(decide(&d.state, &register(4)), None);
    assert_eq!(decide(&d.state, &create_topic_on("b", 2, 2, 3)), None);
}

#[test]
fn a_decided_command_applies_its_decisions_not_the_rules_of_the_applier() {
    // A controller whose rules differ (another version) decided all six
    // partitions for broker 3; every replica applies exactly that.
    let mut d = three_brokers();
    let decided = Command::Decided {
        command: Box::new(create_topic_on("a", 1, 6, -1)),
        placed: placed(1, &[3, 3, 3, 3, 3, 3]),
    };
    d.ok(decided);
    assert_eq!(leaders(&d, "a"), vec![3; 6]);

    // Fencing broker 3 with decisions to move everything to broker 2.
    let epoch = d.state.brokers[&3].epoch;
    let fence = Command::Decided {
        command: Box::new(Command::FenceBroker { id: 3, epoch }),
        placed: placed(1, &[2, 2, 2, 2, 2, 2]),
    };
    assert_eq!(d.ok(fence), Outcome::BrokerFenced { moved: 6 });
    assert_eq!(leaders(&d, "a"), vec![2; 6]);
    assert!(d.state.topics["a"]
        .partitions
        .iter()
        .all(|p| p.leader_epoch == 1));
}

#[test]
fn a_decision_gone_stale_falls_back_to_the_lowest_live_broker() {
    let mut d = three_brokers();
    let proposed = decide(&d.state, &create_topic_on("a", 1, 3, -1)).expect("decided");
    // Between the decision and its apply, broker 1 is fenced and broker 2
    // starts draining: what was decided for them goes to broker 3.
    let epoch = d.state.brokers[&1].epoch;
    d.ok(Command::FenceBroker { id: 1, epoch });
    d.ok(Command::DrainBroker { id: 2 });
    d.ok(proposed);
    assert_eq!(leaders(&d, "a"), vec![3, 3, 3]);

    // With no live broker left at all, new partitions have no leader until
    // one registers.
    let mut d = three_brokers();
    let proposed = decide(&d.state, &create_topic_on("a", 1, 2, -1)).expect("decided");
    for id in 1..=3 {
        let epoch = d.state.brokers[&id].epoch;
        d.ok(Command::FenceBroker { id, epoch });
    }
    d.ok(proposed);
    assert_eq!(leaders(&d, "a"), vec![-1, -1]);
    d.ok(register(2));
    assert_eq!(leaders(&d, "a"), vec![2, 2]);
}

#[test]
fn partitions_the_decision_does_not_name_fall_back_too() {
    // Broker 1 took a partition after the fence was decided: the decision
    // does not name it, so it goes to the lowest live broker; decisions
    // for partitions it no longer leads are ignored.
    let mut d = three_brokers();
    d.ok(create_topic_on("a", 1, 2, 1));
    let epoch = d.state.brokers[&1].epoch;
    let fence = Command::Decided {
        command: Box::new(Command::FenceBroker { id: 1, epoch }),
        placed: vec![
            Move {
                partition: pid(1, 1),
                to: 3,
            },
            Move {
                partition: pid(9, 0),
                to: 3,
            },
        ],
    };
    assert_eq!(d.ok(fence), Outcome::BrokerFenced { moved: 2 });
    assert_eq!(leaders(&d, "a"), vec![2, 3]);
}

#[test]
fn rebalance_is_proposed_with_its_plan_and_applied_without_planning() {
    let mut d = three_brokers();
    d.ok(create_topic_on("a", 1, 6, 1));
    let Some(Command::Decided { command, placed }) = decide(&d.state, &Command::Rebalance) else {
        panic!("a rebalance is decided");
    };
    assert_eq!(*command, Command::Rebalance);
    assert_eq!(placed.len(), 4);
    // Before it applies: broker 3 is fenced, and partition 5 (planned to
    // move) gets a move of its own. Those planned moves are dropped; the
    // rest apply as planned, without planning again.
    let epoch = d.state.brokers[&3].epoch;
    d.ok(Command::FenceBroker { id: 3, epoch });
    let own = Move {
        partition: placed
            .iter()
            .find(|m| m.to == 2)
            .expect("a move to 2")
            .partition,
        to: 2,
    };
    d.ok(Command::RequestMoves { moves: vec![own] });
    let expected = placed
        .iter()
        .filter(|m| m.to == 2 && m.partition != own.partition)
        .count() as u32;
    assert_eq!(
        d.ok(Command::Decided {
            command: Box::new(Command::Rebalance),
            placed: placed.clone(),
        }),
        Outcome::MovesRequested {
            requested: expected
        }
    );
    let targets: Vec<Option<i32>> = d.state.topics["a"]
        .partitions
        .iter()
        .map(|p| p.target)
        .collect();
    assert_eq!(targets.iter().filter(|t| **t == Some(3)).count(), 0);
    assert_eq!(
        targets.iter().filter(|t| **t == Some(2)).count() as u32,
        expected + 1
    );
}

#[test]
fn decisions_are_logged_compactly_and_read_back_in_order() {
    let placed: Vec<Move> = (0..1000)
        .map(|i| Move {
            partition: pid(1 + (i % 3) as u128, i / 3),
            to: i % 7,
        })
        .collect();
    let cmd = Command::Decided {
        command: Box::new(Command::Rebalance),
        placed: placed.clone(),
    };
    let json = serde_json::to_vec(&cmd).unwrap();
    assert!(json.len() < 20 * placed.len(), "{} bytes", json.len());
    let Command::Decided { placed: back, .. } = serde_json::from_slice(&json).unwrap() else {
        panic!("decoded as another command");
    };
    // Grouped by topic, in order within each topic.
    let mut expected = placed;
    expected.sort_by_key(|m| m.partition.topic_id);
    assert_eq!(back, expected);
}

#[test]
fn a_completed_move_whose_target_is_gone_goes_where_the_proposal_decided() {
    let mut d = three_brokers();
    d.ok(create_topic_on("a", 1, 1, 1));
    // Broker 1 drains (the partition targets broker 2), then broker 2 is
    // fenced, which cancels the move: broker 1 still gives it away.
    d.ok(Command::DrainBroker { id: 1 });
    assert_eq!(d.state.topics["a"].partitions[0].target, Some(2));
    let epoch = d.state.brokers[&2].epoch;
    d.ok(Command::FenceBroker { id: 2, epoch });
    assert_eq!(d.state.topics["a"].partitions[0].target, None);
    let complete = Command::CompleteMoves {
        from: 1,
        broker_epoch: d.state.brokers[&1].epoch,
        handoffs: vec![HandOff {
            partition: pid(1, 0),
            leader_epoch: 0,
            committed_end: 0,
        }],
    };
    let Some(Command::Decided { placed, .. }) = decide(&d.state, &complete) else {
        panic!("decided");
    };
    assert_eq!(placed, placed_on(&[3]));
    assert_eq!(
        d.ok(Command::Decided {
            command: Box::new(complete),
            placed,
        }),
        Outcome::MovesCompleted {
            moved: 1,
            skipped: 0
        }
    );
    assert_eq!(leaders(&d, "a"), vec![3]);
    assert_eq!(d.state.topics["a"].partitions[0].leader_epoch, 1);
}

fn placed_on(leaders: &[i32]) -> Vec<Move> {
    placed(1, leaders)
}

#[test]
fn decisions_around_commands_that_place_nothing_are_refused() {
    let mut d = three_brokers();
    for inner in [
        register(4),
        Command::RequestMoves { moves: vec![] },
        Command::Decided {
            command: Box::new(create_topic_on("a", 1, 1, -1)),
            placed: vec![],
        },
    ] {
        let err = d.refused(Command::Decided {
            command: Box::new(inner),
            placed: vec![],
        });
        assert!(matches!(err, ApplyError::InvalidDecision { .. }), "{err}");
    }
    assert!(d.state.topics.is_empty());
}
