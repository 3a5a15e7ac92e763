//! Every command, accepted and refused; refusals must leave the state as it was.

use std::collections::BTreeMap;

use crate::model::fixture::{
    check_invariants, commit, create_topic, pid, register, released, topic_id, trim, Driver,
};
use crate::model::{
    apply, ApplyError, Command, CommittedOffset, IndexEntry, MetadataState, ObjectMeta, Outcome,
};

fn with_topic(name: &str, id: u128, partitions: i32) -> Driver {
    let mut d = Driver::default();
    d.ok(create_topic(name, id, partitions));
    d
}

fn offset(offset: i64) -> CommittedOffset {
    CommittedOffset {
        offset,
        leader_epoch: 0,
        metadata: None,
        commit_ms: 5,
    }
}

#[test]
fn apply_refuses_an_index_at_or_before_the_last_applied() {
    let mut state = MetadataState::default();
    assert_eq!(
        apply(&mut state, 0, &register(1)),
        Err(ApplyError::StaleIndex {
            index: 0,
            last_applied: 0
        })
    );
    assert_eq!(
        apply(&mut state, 7, &register(1)),
        Ok(Outcome::BrokerRegistered { epoch: 1 })
    );
    assert_eq!(state.last_applied, 7);
    let before = state.clone();
    assert!(matches!(
        apply(&mut state, 7, &register(2)),
        Err(ApplyError::StaleIndex { index: 7, .. })
    ));
    assert_eq!(state, before);
}

#[test]
fn register_broker_inserts_then_bumps_the_epoch() {
    let mut d = Driver::default();
    assert_eq!(d.ok(register(1)), Outcome::BrokerRegistered { epoch: 1 });
    assert_eq!(d.ok(register(2)), Outcome::BrokerRegistered { epoch: 1 });
    let moved = Command::RegisterBroker {
        id: 1,
        host: "10.0.0.9".to_owned(),
        port: 19092,
        rack: Some("az-1".to_owned()),
        volume_wal: false,
    };
    assert_eq!(d.ok(moved), Outcome::BrokerRegistered { epoch: 2 });
    let broker = &d.state.brokers[&1];
    assert_eq!(
        (broker.host.as_str(), broker.port, broker.rack.as_deref()),
        ("10.0.0.9", 19092, Some("az-1"))
    );
}

#[test]
fn register_broker_refuses_bad_ids_hosts_and_ports() {
    let mut d = Driver::default();
    d.ok(register(1));
    let bad = |id: i32, host: &str, port: i32| Command::RegisterBroker {
        id,
        host: host.to_owned(),
        port,
        rack: None,
        volume_wal: false,
    };
    for cmd in [
        bad(-1, "h", 1),
        bad(1, "", 1),
        bad(1, "h", 0),
        bad(1, "h", 65536),
    ] {
        assert!(matches!(d.refused(cmd), ApplyError::InvalidBroker { .. }));
    }
}

#[test]
fn create_topic_builds_empty_partitions_led_by_the_given_broker() {
    let mut d = Driver::default();
    let mut configs = BTreeMap::new();
    configs.insert("retention.ms".to_owned(), "1000".to_owned());
    let cmd = Command::CreateTopic {
        name: "orders".to_owned(),
        id: topic_id(7),
        partitions: 3,
        configs: configs.clone(),
        leader: 4,
    };
    assert_eq!(d.ok(cmd), Outcome::TopicCreated { id: topic_id(7) });
    let topic = d.state.topic_by_id(topic_id(7)).expect("created topic");
    assert_eq!((topic.name.as_str(), &topic.configs), ("orders", &configs));
    assert_eq!(topic.partitions.len(), 3);
    for partition in &topic.partitions {
        assert_eq!((partition.leader, partition.leader_epoch), (4, 0));
        assert_eq!(
            (partition.log_start_offset, partition.committed_end),
            (0, 0)
        );
        assert!(partition.index.is_empty() && partition.producers.is_empty());
    }
    assert!(d.state.partition(pid(7, 2)).is_some());
    assert!(d.state.partition(pid(7, 3)).is_none());
    assert!(d.state.partition(pid(7, -1)).is_none());
    assert!(d.state.topic_by_id(topic_id(8)).is_none());
}

#[test]
fn create_topic_refuses_duplicates_bad_counts_and_bad_names() {
    let mut d = with_topic("a", 1, 1);
    assert_eq!(
        d.refused(create_topic("a", 2, 1)),
        ApplyError::TopicExists { name: "a".into() }
    );
    assert_eq!(
        d.refused(create_topic("b", 1, 1)),
        ApplyError::TopicIdExists {
            id: topic_id(1),
            existing: "a".into()
        }
    );
    for count in [0, -3, 100_001] {
        assert!(matches!(
            d.refused(create_topic("b", 2, count)),
            ApplyError::InvalidPartitionCount { current: 0, .. }
        ));
    }
    let long = "x".repeat(250);
    for name in ["", ".", "..", "has space", "slash/y", "é", long.as_str()] {
        assert!(matches!(
            d.refused(create_topic(name, 2, 1)),
            ApplyError::InvalidTopicName { .. }
        ));
    }
    d.ok(create_topic(&"x".repeat(249), 2, 1));
    d.ok(create_topic("Az09._-", 3, 1));
}

#[test]
fn create_partitions_appends_and_refuses_shrinking() {
    let mut d = with_topic("a", 1, 2);
    d.ok(Command::CreatePartitions {
        name: "a".into(),
        total: 4,
        leader: 9,
    });
    let topic = d.state.topic_by_id(topic_id(1)).expect("topic");
    let leaders: Vec<i32> = topic.partitions.iter().map(|p| p.leader).collect();
    assert_eq!(leaders, [1, 1, 9, 9]);
    for total in [4, 3, 100_001] {
        let err = d.refused(Command::CreatePartitions {
            name: "a".into(),
            total,
            leader: 1,
        });
        assert!(matches!(
            err,
            ApplyError::InvalidPartitionCount { current: 4, .. }
        ));
    }
    assert!(matches!(
        d.refused(Command::CreatePartitions {
            name: "nope".into(),
            total: 5,
            leader: 1
        }),
        ApplyError::UnknownTopic { .. }
    ));
}

#[test]
fn alter_topic_configs_sets_then_deletes() {
    let mut d = with_topic("a", 1, 1);
    let set = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    };
    d.ok(Command::AlterTopicConfigs {
        name: "a".into(),
        set: set(&[("x", "1"), ("y", "2")]),
        delete: vec![],
    });
    d.ok(Command::AlterTopicConfigs {
        name: "a".into(),
        set: set(&[("y", "3"), ("z", "4")]),
        delete: vec!["x".into(), "z".into(), "absent".into()],
    });
    assert_eq!(d.state.topics["a"].configs, set(&[("y", "3")]));
    assert!(matches!(
        d.refused(Command::AlterTopicConfigs {
            name: "b".into(),
            set: set(&[("x", "1")]),
            delete: vec![],
        }),
        ApplyError::UnknownTopic { .. }
    ));
}

#[test]
fn commit_object_records_entries_producers_and_the_object() {
    let mut d = with_topic("a", 1, 2);
    let p0 = pid(1, 0);
    let p1 = pid(1, 1);
    // Two chained entries for p0 and one for p1 in one object.
    let cmd = commit("o1", &[(p0, 0, 5, 0), (p1, 0, 3, 0), (p0, 5, 9, 0)]);
    assert_eq!(d.ok(cmd), Outcome::Done);
    let part0 = d.state.partition(p0).expect("p0");
    assert_eq!(part0.committed_end, 9);
    assert_eq!(part0.index.keys().copied().collect::<Vec<_>>(), [0, 5]);
    // The last entry's snapshot is the partition's state as of committed_end.
    assert_eq!(part0.producers.keys().copied().collect::<Vec<_>>(), [9]);
    assert_eq!(d.state.partition(p1).expect("p1").committed_end, 3);
    assert_eq!(
        d.state.objects["o1"],
        ObjectMeta {
            key: "o1".into(),
            size: 30,
            created_ms: 1,
            live_entries: 3
        }
    );
    d.ok(commit("o2", &[(p0, 9, 10, 0)]));
    assert_eq!(d.state.partition(p0).expect("p0").committed_end, 10);
}

#[test]
fn commit_object_refuses_stale_and_future_leader_epochs() {
    let mut d = with_topic("a", 1, 2);
    let p0 = pid(1, 0);
    // No command moves leadership yet; simulate a reassignment.
    let Some(partition) = d.state.partition_mut(p0) else {
        panic!("no partition");
    };
    partition.leader_epoch = 3;
    for epoch in [2, 4] {
        assert_eq!(
            d.refused(commit("o", &[(pid(1, 1), 0, 1, 0), (p0, 0, 1, epoch)])),
            ApplyError::StaleLeaderEpoch {
                partition: p0,
                committed_epoch: epoch,
                current_epoch: 3
            }
        );
    }
    d.ok(commit("o", &[(p0, 0, 1, 3)]));
}

#[test]
fn commit_object_refuses_gaps_overlaps_and_unchained_entries() {
    let mut d = with_topic("a", 1, 2);
    let p0 = pid(1, 0);
    d.ok(commit("o1", &[(p0, 0, 10, 0)]));
    for (parts, expected, got) in [
        (vec![(p0, 11, 12, 0)], 10, 11),
        (vec![(p0, 9, 12, 0)], 10, 9),
        (vec![(p0, 10, 12, 0), (p0, 13, 14, 0)], 12, 13),
        (vec![(p0, 10, 12, 0), (p0, 10, 14, 0)], 12, 10),
    ] {
        assert_eq!(
            d.refused(commit("o2", &parts)),
            ApplyError::NonContiguousCommit {
                partition: p0,
                expected_base: expected,
                got_base: got
            }
        );
    }
}

#[test]
fn commit_object_refuses_malformed_entries() {
    let mut d = with_topic("a", 1, 1);
    let p0 = pid(1, 0);
    assert!(matches!(
        d.refused(commit("o", &[(p0, 0, 0, 0)])),
        ApplyError::EmptyOffsetRange { .. }
    ));
    assert!(matches!(
        d.refused(commit("o", &[])),
        ApplyError::EmptyCommit { .. }
    ));
    for missing in [pid(2, 0), pid(1, 1), pid(1, -1)] {
        assert_eq!(
            d.refused(commit("o", &[(p0, 0, 1, 0), (missing, 0, 1, 0)])),
            ApplyError::UnknownPartition { partition: missing }
        );
    }
    let Command::CommitObject {
        object,
        entries: good,
    } = commit("o", &[(p0, 0, 1, 0)])
    else {
        panic!("not a commit");
    };
    let with = |edit: &dyn Fn(&mut IndexEntry)| {
        let mut entries = good.clone();
        edit(&mut entries[0].entry);
        Command::CommitObject {
            object: object.clone(),
            entries,
        }
    };
    assert!(matches!(
        d.refused(with(&|e| e.object_key = "other".into())),
        ApplyError::ObjectKeyMismatch { .. }
    ));
    let edits: [fn(&mut IndexEntry); 4] = [
        |e| e.byte_len = 0,
        |e| e.byte_start = 1,
        |e| e.byte_len = 11,
        |e| e.byte_start = u64::MAX,
    ];
    for edit in edits {
        assert!(matches!(
            d.refused(with(&edit)),
            ApplyError::InvalidByteRange { size: 10, .. }
        ));
    }
    d.ok(with(&|_| {}));
    assert_eq!(
        d.refused(commit("o", &[(p0, 1, 2, 0)])),
        ApplyError::ObjectExists { key: "o".into() }
    );
}

#[test]
fn trim_drops_whole_entries_and_releases_unnamed_objects() {
    let mut d = with_topic("a", 1, 2);
    let (p0, p1) = (pid(1, 0), pid(1, 1));
    d.ok(commit("shared", &[(p0, 0, 10, 0), (p1, 0, 10, 0)]));
    d.ok(commit("own", &[(p0, 10, 20, 0)]));
    // Inside the first entry: nothing is wholly below, nothing dropped.
    assert_eq!(d.ok(trim(p0, 5)), released(&[]));
    assert_eq!(d.state.partition(p0).expect("p0").index.len(), 2);
    // The shared object is still named by p1.
    assert_eq!(d.ok(trim(p0, 15)), released(&[]));
    assert_eq!(d.state.objects["shared"].live_entries, 1);
    assert_eq!(d.ok(trim(p1, 10)), released(&["shared"]));
    assert!(!d.state.objects.contains_key("shared"));
    // A trim below the current start keeps the start.
    assert_eq!(d.ok(trim(p0, 3)), released(&[]));
    assert_eq!(d.state.partition(p0).expect("p0").log_start_offset, 15);
    assert_eq!(d.ok(trim(p0, 20)), released(&["own"]));
    let part0 = d.state.partition(p0).expect("p0");
    assert!(part0.index.is_empty());
    assert_eq!((part0.log_start_offset, part0.committed_end), (20, 20));
    // The next commit continues at committed_end, not at 0.
    d.ok(commit("next", &[(p0, 20, 21, 0)]));
}

#[test]
fn trim_refuses_offsets_outside_the_committed_log() {
    let mut d = with_topic("a", 1, 1);
    let p0 = pid(1, 0);
    d.ok(commit("o", &[(p0, 0, 10, 0)]));
    for requested in [-1, 11] {
        assert_eq!(
            d.refused(trim(p0, requested)),
            ApplyError::InvalidOffset {
                partition: p0,
                requested,
                committed_end: 10
            }
        );
    }
    assert!(matches!(
        d.refused(trim(pid(1, 1), 0)),
        ApplyError::UnknownPartition { .. }
    ));
}

#[test]
fn delete_topic_releases_its_objects_and_forgets_its_offsets() {
    let mut d = with_topic("a", 1, 1);
    d.ok(create_topic("b", 2, 1));
    d.ok(commit(
        "shared",
        &[(pid(1, 0), 0, 1, 0), (pid(2, 0), 0, 1, 0)],
    ));
    d.ok(commit("only-a", &[(pid(1, 0), 1, 2, 0)]));
    d.ok(Command::CommitOffsets {
        group: "g".into(),
        offsets: vec![("a".into(), 0, offset(1)), ("b".into(), 0, offset(1))],
    });
    d.ok(Command::CommitOffsets {
        group: "only-a".into(),
        offsets: vec![("a".into(), 0, offset(1))],
    });
    assert_eq!(
        d.ok(Command::DeleteTopic { name: "a".into() }),
        released(&["only-a"])
    );
    assert!(d.state.topic_by_id(topic_id(1)).is_none());
    assert_eq!(d.state.objects["shared"].live_entries, 1);
    assert_eq!(d.state.groups.keys().collect::<Vec<_>>(), ["g"]);
    assert!(!d.state.groups["g"].offsets.contains_key("a"));
    assert_eq!(
        d.refused(Command::DeleteTopic { name: "a".into() }),
        ApplyError::UnknownTopic { name: "a".into() }
    );
    // The name, but not the id, may be reused.
    assert!(matches!(
        d.refused(create_topic("a", 2, 1)),
        ApplyError::TopicIdExists { .. }
    ));
    d.ok(create_topic("a", 3, 1));
    assert_eq!(
        d.ok(Command::DeleteTopic { name: "b".into() }),
        released(&["shared"])
    );
    assert!(d.state.objects.is_empty());
}

#[test]
fn delete_object_refuses_live_objects_and_ignores_absent_ones() {
    let mut d = with_topic("a", 1, 1);
    d.ok(commit("o", &[(pid(1, 0), 0, 1, 0)]));
    assert_eq!(
        d.refused(Command::DeleteObject { key: "o".into() }),
        ApplyError::ObjectInUse {
            key: "o".into(),
            live_entries: 1
        }
    );
    assert_eq!(
        d.ok(Command::DeleteObject { key: "gone".into() }),
        Outcome::Done
    );
    // Unreachable through commits (a commit needs entries), but must work.
    let mut state = d.state.clone();
    state.objects.insert(
        "idle".into(),
        ObjectMeta {
            key: "idle".into(),
            size: 1,
            created_ms: 0,
            live_entries: 0,
        },
    );
    let index = state.last_applied + 1;
    let cmd = Command::DeleteObject { key: "idle".into() };
    assert_eq!(apply(&mut state, index, &cmd), Ok(Outcome::Done));
    assert!(!state.objects.contains_key("idle"));
}

#[test]
fn group_offsets_are_committed_and_deleted() {
    let mut d = with_topic("a", 1, 2);
    d.ok(Command::CommitOffsets {
        group: "g".into(),
        offsets: vec![("a".into(), 0, offset(1)), ("a".into(), 1, offset(2))],
    });
    d.ok(Command::CommitOffsets {
        group: "g".into(),
        offsets: vec![("a".into(), 1, offset(7))],
    });
    assert_eq!(d.state.groups["g"].offsets["a"][&1], offset(7));
    for (topic, partition) in [("b", 0), ("a", 2), ("a", -1)] {
        let err = d.refused(Command::CommitOffsets {
            group: "g".into(),
            offsets: vec![
                ("a".into(), 0, offset(9)),
                (topic.into(), partition, offset(9)),
            ],
        });
        assert!(matches!(
            err,
            ApplyError::UnknownTopic { .. } | ApplyError::UnknownTopicPartition { .. }
        ));
    }
    d.ok(Command::CommitOffsets {
        group: "empty".into(),
        offsets: vec![],
    });
    assert!(!d.state.groups.contains_key("empty"));
    let delete_offsets = |group: &str, partitions: Vec<i32>| Command::DeleteGroupOffsets {
        group: group.into(),
        topic: "a".into(),
        partitions,
    };
    d.ok(delete_offsets("g", vec![0, 5]));
    assert_eq!(d.state.groups["g"].offsets["a"].len(), 1);
    d.ok(delete_offsets("unknown", vec![0]));
    d.ok(delete_offsets("g", vec![1]));
    assert!(d.state.groups.is_empty());
    d.ok(Command::CommitOffsets {
        group: "h".into(),
        offsets: vec![("a".into(), 0, offset(1))],
    });
    d.ok(Command::DeleteGroup { group: "h".into() });
    d.ok(Command::DeleteGroup { group: "h".into() });
    assert!(d.state.groups.is_empty());
}

#[test]
fn producer_ids_come_in_disjoint_blocks_from_1000() {
    let mut d = Driver::default();
    let alloc = |count| Command::AllocateProducerIds { count };
    assert_eq!(d.ok(alloc(10)), Outcome::ProducerIds { first: 1000 });
    assert_eq!(d.ok(alloc(1)), Outcome::ProducerIds { first: 1010 });
    assert_eq!(d.state.next_producer_id, 1011);
    for count in [0, -1, 1_000_001] {
        assert!(matches!(
            d.refused(alloc(count)),
            ApplyError::InvalidProducerIdCount { .. }
        ));
    }
    d.state.next_producer_id = i64::MAX - 5;
    assert!(matches!(
        d.refused(alloc(6)),
        ApplyError::ProducerIdsExhausted { .. }
    ));
    assert_eq!(
        d.ok(alloc(5)),
        Outcome::ProducerIds {
            first: i64::MAX - 5
        }
    );
}

#[test]
fn fencing_a_broker_moves_its_partitions_to_the_least_loaded_live_broker() {
    let mut d = Driver::default();
    d.ok(register(1));
    d.ok(register(2));
    d.ok(register(3));
    // Topic "a" (4 partitions) is led by broker 1; broker 3 already leads one.
    d.ok(create_topic("a", 1, 4));
    d.ok(Command::CreateTopic {
        name: "b".to_owned(),
        id: topic_id(2),
        partitions: 1,
        configs: BTreeMap::new(),
        leader: 3,
    });
    // A stale or unknown incarnation is refused and changes nothing.
    let before = d.state.clone();
    assert!(matches!(
        d.refused(Command::FenceBroker { id: 1, epoch: 7 }),
        ApplyError::StaleBrokerEpoch {
            id: 1,
            epoch: 7,
            current: Some(1)
        }
    ));
    assert!(matches!(
        d.refused(Command::FenceBroker { id: 9, epoch: 1 }),
        ApplyError::StaleBrokerEpoch { current: None, .. }
    ));
    assert_eq!(d.state, before);

    assert_eq!(
        d.ok(Command::FenceBroker { id: 1, epoch: 1 }),
        Outcome::BrokerFenced { moved: 4 }
    );
    assert!(d.state.brokers[&1].fenced);
    let leaders: Vec<(i32, i32)> = d.state.topics["a"]
        .partitions
        .iter()
        .map(|p| (p.leader, p.leader_epoch))
        .collect();
    // Broker 2 led nothing, broker 3 one: 2, 2, 3, then the tie goes to 2.
    assert_eq!(leaders, vec![(2, 1), (2, 1), (3, 1), (2, 1)]);
    // Fencing twice is refused: the incarnation is no longer live.
    assert!(matches!(
        d.refused(Command::FenceBroker { id: 1, epoch: 1 }),
        ApplyError::StaleBrokerEpoch { current: None, .. }
    ));
    // A commit by the fenced leader's epoch is refused.
    assert!(matches!(
        d.refused(commit("late", &[(pid(1, 0), 0, 10, 0)])),
        ApplyError::StaleLeaderEpoch { .. }
    ));
    check_invariants(&d.state);
}

#[test]
fn partitions_with_no_live_broker_wait_for_the_next_registration() {
    let mut d = Driver::default();
    d.ok(register(1));
    d.ok(create_topic("a", 1, 2));
    assert_eq!(
        d.ok(Command::FenceBroker { id: 1, epoch: 1 }),
        Outcome::BrokerFenced { moved: 2 }
    );
    assert!(d.state.topics["a"]
        .partitions
        .iter()
        .all(|p| p.leader == -1 && p.leader_epoch == 1));
    // The broker comes back as a new incarnation and takes them, epoch 2.
    assert_eq!(d.ok(register(1)), Outcome::BrokerRegistered { epoch: 2 });
    assert!(!d.state.brokers[&1].fenced);
    assert!(d.state.topics["a"]
        .partitions
        .iter()
        .all(|p| p.leader == 1 && p.leader_epoch == 2));
    check_invariants(&d.state);
}

#[test]
fn a_fenced_volume_wal_broker_keeps_its_partitions_until_it_returns() {
    let mut d = Driver::default();
    d.ok(register(2));
    d.ok(Command::RegisterBroker {
        id: 1,
        host: "b1".to_owned(),
        port: 9092,
        rack: None,
        volume_wal: true,
    });
    d.ok(create_topic("a", 1, 3));
    // Acknowledged records may be only on broker 1's volume: nothing moves.
    assert_eq!(
        d.ok(Command::FenceBroker { id: 1, epoch: 1 }),
        Outcome::BrokerFenced { moved: 0 }
    );
    assert!(d.state.brokers[&1].fenced);
    assert!(d.state.topics["a"]
        .partitions
        .iter()
        .all(|p| p.leader == 1 && p.leader_epoch == 0));
    // New partitions go to live brokers only.
    d.ok(Command::CreatePartitions {
        name: "a".to_owned(),
        total: 4,
        leader: -1,
    });
    assert_eq!(d.state.topics["a"].partitions[3].leader, 2);
    // Back with its volume: it leads them again and replays its WAL.
    d.ok(Command::RegisterBroker {
        id: 1,
        host: "b1".to_owned(),
        port: 9092,
        rack: None,
        volume_wal: true,
    });
    assert!(!d.state.brokers[&1].fenced);
    assert_eq!(
        d.state.topics["a"]
            .partitions
            .iter()
            .map(|p| p.leader)
            .collect::<Vec<_>>(),
        vec![1, 1, 1, 2]
    );
    check_invariants(&d.state);
}

#[test]
fn partitions_of_new_topics_spread_over_the_least_loaded_live_brokers() {
    let mut d = Driver::default();
    d.ok(register(1));
    d.ok(register(2));
    d.ok(register(3));
    d.ok(create_topic("a", 1, 2));
    // "a" sits on broker 1; a topic for any broker (-1) fills 2 and 3 first.
    d.ok(Command::CreateTopic {
        name: "b".to_owned(),
        id: topic_id(2),
        partitions: 5,
        configs: BTreeMap::new(),
        leader: -1,
    });
    let leaders: Vec<i32> = d.state.topics["b"]
        .partitions
        .iter()
        .map(|p| p.leader)
        .collect();
    assert_eq!(leaders, vec![2, 3, 2, 3, 1]);
    d.ok(Command::FenceBroker { id: 3, epoch: 1 });
    d.ok(Command::CreatePartitions {
        name: "b".to_owned(),
        total: 7,
        leader: -1,
    });
    let leaders: Vec<i32> = d.state.topics["b"].partitions[5..]
        .iter()
        .map(|p| p.leader)
        .collect();
    // Before: 1 led 3, 2 and 3 led 2 each. Broker 3's two went to 2 (then
    // 3 each, tie to 1): 1 leads 4, 2 leads 3, so the new ones go 2, then 1.
    assert_eq!(leaders, vec![2, 1]);
    // With no live broker at all, new partitions are leaderless.
    let mut empty = Driver::default();
    empty.ok(Command::CreateTopic {
        name: "c".to_owned(),
        id: topic_id(3),
        partitions: 2,
        configs: BTreeMap::new(),
        leader: -1,
    });
    assert!(empty.state.topics["c"]
        .partitions
        .iter()
        .all(|p| p.leader == -1));
    check_invariants(&d.state);
}
