//! OffsetCommit/OffsetFetch/OffsetDelete through the coordinator, with the generation checks and the store's failures.

use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_delete_request::{
    OffsetDeleteRequestPartition, OffsetDeleteRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics,
};
use kafka_protocol::messages::{
    OffsetCommitRequest, OffsetDeleteRequest, OffsetFetchRequest, OffsetFetchResponse, TopicName,
};

use super::*;

fn commit_req(
    group: &str,
    member_id: &str,
    generation: i32,
    offsets: &[(&str, i32, i64)],
) -> OffsetCommitRequest {
    let mut req = OffsetCommitRequest::default();
    req.group_id = GroupId(str_bytes(group));
    req.member_id = str_bytes(member_id);
    req.generation_id_or_member_epoch = generation;
    for (topic, partition, offset) in offsets {
        let mut p = OffsetCommitRequestPartition::default();
        p.partition_index = *partition;
        p.committed_offset = *offset;
        p.committed_leader_epoch = 4;
        p.committed_metadata = Some(str_bytes(format!("m{offset}")));
        match req.topics.iter_mut().find(|t| t.name.as_str() == *topic) {
            Some(t) => t.partitions.push(p),
            None => {
                let mut t = OffsetCommitRequestTopic::default();
                t.name = TopicName(str_bytes(*topic));
                t.partitions.push(p);
                req.topics.push(t);
            }
        }
    }
    req
}

/// Commits and returns the error codes in request order.
async fn commit(
    c: &GroupCoordinator,
    version: i16,
    group: &str,
    member_id: &str,
    generation: i32,
    offsets: &[(&str, i32, i64)],
) -> Vec<i16> {
    let resp = c
        .offset_commit(commit_req(group, member_id, generation, offsets), version)
        .await;
    encodes(&resp, version);
    resp.topics
        .iter()
        .flat_map(|t| t.partitions.iter().map(|p| p.error_code))
        .collect()
}

/// (topic, partition, offset, leader epoch, metadata) from a v1-7 response.
fn flat_v7(resp: &OffsetFetchResponse) -> Vec<(String, i32, i64, i32, String)> {
    resp.topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(|p| {
                let metadata = p
                    .metadata
                    .as_ref()
                    .map(|m| m.to_string())
                    .unwrap_or_default();
                let topic = t.name.to_string();
                (
                    topic,
                    p.partition_index,
                    p.committed_offset,
                    p.committed_leader_epoch,
                    metadata,
                )
            })
        })
        .collect()
}

async fn fetch_v7(
    c: &GroupCoordinator,
    group: &str,
    topics: Option<&[(&str, &[i32])]>,
) -> OffsetFetchResponse {
    let mut req = OffsetFetchRequest::default();
    req.group_id = GroupId(str_bytes(group));
    req.topics = topics.map(|topics| {
        topics
            .iter()
            .map(|(name, partitions)| {
                let mut t = OffsetFetchRequestTopic::default();
                t.name = TopicName(str_bytes(*name));
                t.partition_indexes = partitions.to_vec();
                t
            })
            .collect()
    });
    let resp = c.offset_fetch(req, 7).await;
    encodes(&resp, 7);
    resp
}

#[tokio::test(start_paused = true)]
async fn commits_are_guarded_by_the_generation_and_fetch_round_trips() {
    let (c, _) = coordinator();
    let (leader, follower) = stable_pair(&c, "g").await;
    let ok = commit(
        &c,
        8,
        "g",
        &leader,
        1,
        &[("orders", 0, 42), ("orders", 1, 7)],
    )
    .await;
    assert_eq!(ok, vec![0, 0]);
    let stale = commit(&c, 8, "g", &follower, 0, &[("orders", 0, 1)]).await;
    assert_eq!(stale, vec![code(ResponseError::IllegalGeneration)]);
    let stranger = commit(&c, 8, "g", "stranger", 1, &[("orders", 0, 1)]).await;
    assert_eq!(stranger, vec![code(ResponseError::UnknownMemberId)]);
    let simple = commit(&c, 2, "g", "", -1, &[("orders", 0, 1)]).await;
    assert_eq!(
        simple,
        vec![code(ResponseError::UnknownMemberId)],
        "group is active"
    );
    let mixed = commit(
        &c,
        8,
        "g",
        &follower,
        1,
        &[("orders", 2, 9), ("nope", 0, 1)],
    )
    .await;
    assert_eq!(mixed, vec![0, code(ResponseError::UnknownTopicOrPartition)]);

    let resp = fetch_v7(&c, "g", Some(&[("orders", &[0, 2, 5])])).await;
    assert_eq!(resp.error_code, 0);
    assert_eq!(
        flat_v7(&resp),
        vec![
            ("orders".to_owned(), 0, 42, 4, "m42".to_owned()),
            ("orders".to_owned(), 2, 9, 4, "m9".to_owned()),
            ("orders".to_owned(), 5, -1, -1, String::new()),
        ]
    );
    let all = fetch_v7(&c, "g", None).await;
    let offsets: Vec<(i32, i64)> = flat_v7(&all).iter().map(|e| (e.1, e.2)).collect();
    assert_eq!(offsets, vec![(0, 42), (1, 7), (2, 9)]);

    // During the sync phase commits must wait; during the join phase the
    // members may still commit.
    let third = spawn_join(&c, join_req("g", "", &["orders"]), 3);
    sleep(Duration::from_millis(10)).await;
    assert_eq!(
        commit(&c, 8, "g", &leader, 1, &[("orders", 0, 43)]).await,
        vec![0]
    );
    let l = spawn_join(&c, join_req("g", &leader, &["orders"]), 3);
    let f = spawn_join(&c, join_req("g", &follower, &["orders"]), 3);
    let _ = (joined(l).await, joined(f).await, joined(third).await);
    assert_eq!(
        commit(&c, 8, "g", &leader, 2, &[("orders", 0, 44)]).await,
        vec![code(ResponseError::RebalanceInProgress)]
    );
}

#[tokio::test(start_paused = true)]
async fn simple_commits_need_no_membership_and_v8_fetches_several_groups() {
    let (c, store) = coordinator();
    assert_eq!(
        commit(&c, 2, "solo", "", -1, &[("payments", 3, 100)]).await,
        vec![0]
    );
    // A generation for a group nobody joined: Kafka says ILLEGAL_GENERATION.
    assert_eq!(
        commit(&c, 8, "ghost", "m", 5, &[("payments", 0, 1)]).await,
        vec![code(ResponseError::IllegalGeneration)]
    );
    let mut huge = commit_req("solo", "", -1, &[("payments", 0, 1)]);
    huge.topics[0].partitions[0].committed_metadata = Some(str_bytes("x".repeat(5000)));
    let resp = c.offset_commit(huge, 8).await;
    assert_eq!(
        resp.topics[0].partitions[0].error_code,
        code(ResponseError::OffsetMetadataTooLarge)
    );
    store.fail_writes(true);
    assert_eq!(
        commit(&c, 8, "solo", "", -1, &[("payments", 3, 101)]).await,
        vec![code(ResponseError::CoordinatorNotAvailable)]
    );
    store.fail_writes(false);

    let mut req = OffsetFetchRequest::default();
    let mut all = OffsetFetchRequestGroup::default();
    all.group_id = GroupId(str_bytes("solo"));
    all.topics = None;
    let mut some = OffsetFetchRequestGroup::default();
    some.group_id = GroupId(str_bytes("unknown"));
    let mut topic = OffsetFetchRequestTopics::default();
    topic.name = TopicName(str_bytes("payments"));
    topic.partition_indexes = vec![3];
    some.topics = Some(vec![topic]);
    req.groups = vec![all, some];
    let resp = c.offset_fetch(req, 9).await;
    encodes(&resp, 9);
    assert_eq!(resp.groups.len(), 2);
    let solo = &resp.groups[0];
    assert_eq!((solo.group_id.as_str(), solo.error_code), ("solo", 0));
    assert_eq!(solo.topics.len(), 1);
    let p = &solo.topics[0].partitions[0];
    assert_eq!(
        (p.partition_index, p.committed_offset),
        (3, 100),
        "failed write left no trace"
    );
    let unknown = &resp.groups[1].topics[0].partitions[0];
    assert_eq!((unknown.partition_index, unknown.committed_offset), (3, -1));

    // v1 has no group-level error field and still encodes.
    let mut v1 = OffsetFetchRequest::default();
    v1.group_id = GroupId(str_bytes("solo"));
    v1.topics = Some(Vec::new());
    let resp = c.offset_fetch(v1, 1).await;
    encodes(&resp, 1);
}

fn delete_req(group: &str, topics: &[(&str, i32)]) -> OffsetDeleteRequest {
    let mut req = OffsetDeleteRequest::default();
    req.group_id = GroupId(str_bytes(group));
    req.topics = topics
        .iter()
        .map(|(name, partition)| {
            let mut t = OffsetDeleteRequestTopic::default();
            t.name = TopicName(str_bytes(*name));
            let mut p = OffsetDeleteRequestPartition::default();
            p.partition_index = *partition;
            t.partitions = vec![p];
            t
        })
        .collect();
    req
}

#[tokio::test(start_paused = true)]
async fn offset_delete_keeps_what_an_active_group_consumes() {
    let (c, _) = coordinator();
    let (leader, _follower) = stable_pair(&c, "g").await;
    let offsets = [("orders", 0, 5), ("payments", 0, 6)];
    assert_eq!(commit(&c, 8, "g", &leader, 1, &offsets).await, vec![0, 0]);

    let resp = c
        .offset_delete(
            delete_req("g", &[("orders", 0), ("payments", 0), ("nope", 0)]),
            0,
        )
        .await;
    encodes(&resp, 0);
    assert_eq!(resp.error_code, 0);
    let codes: Vec<i16> = resp
        .topics
        .iter()
        .map(|t| t.partitions[0].error_code)
        .collect();
    assert_eq!(
        codes,
        vec![
            code(ResponseError::GroupSubscribedToTopic),
            0,
            code(ResponseError::UnknownTopicOrPartition)
        ]
    );
    let left: Vec<String> = flat_v7(&fetch_v7(&c, "g", None).await)
        .into_iter()
        .map(|e| e.0)
        .collect();
    assert_eq!(left, vec!["orders".to_owned()]);

    let resp = c
        .offset_delete(delete_req("unknown", &[("orders", 0)]), 0)
        .await;
    assert_eq!(resp.error_code, code(ResponseError::GroupIdNotFound));
}
