//! DescribeGroups, ListGroups and DeleteGroups through the coordinator, including groups known only by their committed offsets.

use kafka_protocol::messages::{
    DeleteGroupsRequest, DescribeGroupsRequest, ListGroupsRequest, ListGroupsResponse,
};

use super::*;
use crate::store::OffsetStore;

async fn list(c: &GroupCoordinator, version: i16, states: &[&str]) -> ListGroupsResponse {
    let mut req = ListGroupsRequest::default();
    if version >= 4 {
        req.states_filter = states.iter().map(|s| str_bytes(*s)).collect();
    }
    let resp = c.list_groups(req, version).await;
    encodes(&resp, version);
    resp
}

fn listed(resp: &ListGroupsResponse) -> Vec<(String, String, String)> {
    resp.groups
        .iter()
        .map(|g| {
            (
                g.group_id.to_string(),
                g.group_state.to_string(),
                g.protocol_type.to_string(),
            )
        })
        .collect()
}

async fn delete(c: &GroupCoordinator, groups: &[&str]) -> Vec<i16> {
    let mut req = DeleteGroupsRequest::default();
    req.groups_names = groups.iter().map(|g| GroupId(str_bytes(*g))).collect();
    let resp = c.delete_groups(req, 2).await;
    encodes(&resp, 2);
    resp.results.iter().map(|r| r.error_code).collect()
}

async fn simple_commit(c: &GroupCoordinator, group: &str) {
    let mut req = kafka_protocol::messages::OffsetCommitRequest::default();
    req.group_id = GroupId(str_bytes(group));
    let mut topic =
        kafka_protocol::messages::offset_commit_request::OffsetCommitRequestTopic::default();
    topic.name = kafka_protocol::messages::TopicName(str_bytes("orders"));
    topic.partitions = vec![Default::default()];
    req.topics = vec![topic];
    let resp = c.offset_commit(req, 2).await;
    assert_eq!(resp.topics[0].partitions[0].error_code, 0);
}

#[tokio::test(start_paused = true)]
async fn list_and_describe_show_live_and_offset_only_groups() {
    let (c, store) = coordinator();
    let (leader, follower) = stable_pair(&c, "live").await;
    // A group that exists only as offsets, as after a broker restart.
    store
        .commit(
            "restored",
            vec![crate::store::OffsetCommitEntry {
                topic: "orders".to_owned(),
                partition: 0,
                offset: 1,
                leader_epoch: -1,
                metadata: String::new(),
                commit_ms: 0,
            }],
        )
        .expect("commit");

    let all = list(&c, 4, &[]).await;
    assert_eq!(
        listed(&all),
        vec![
            (
                "live".to_owned(),
                "Stable".to_owned(),
                "consumer".to_owned()
            ),
            ("restored".to_owned(), "Empty".to_owned(), String::new()),
        ]
    );
    let stable = list(&c, 4, &["stable"]).await;
    assert_eq!(listed(&stable).len(), 1);
    assert_eq!(listed(&stable)[0].0, "live");
    let empty = list(&c, 5, &["Empty"]).await;
    assert_eq!(empty.groups.len(), 1);
    assert_eq!(empty.groups[0].group_type.as_str(), "classic");
    assert_eq!(list(&c, 0, &[]).await.groups.len(), 2);

    let mut req = DescribeGroupsRequest::default();
    req.groups = ["live", "restored", "missing"]
        .iter()
        .map(|g| GroupId(str_bytes(*g)))
        .collect();
    let resp = c.describe_groups(req.clone(), 5).await;
    encodes(&resp, 5);
    let live = &resp.groups[0];
    assert_eq!(
        (
            live.error_code,
            live.group_state.as_str(),
            live.protocol_type.as_str()
        ),
        (0, "Stable", "consumer")
    );
    assert_eq!(live.protocol_data.as_str(), "range");
    let mut members: Vec<(String, Bytes)> = live
        .members
        .iter()
        .map(|m| (m.member_id.to_string(), m.member_assignment.clone()))
        .collect();
    members.sort();
    let mut expected = vec![
        (leader.clone(), Bytes::from_static(b"L")),
        (follower.clone(), Bytes::from_static(b"F")),
    ];
    expected.sort();
    assert_eq!(members, expected);
    assert_eq!(live.members[0].client_id.as_str(), "rdkafka");
    assert_eq!(live.members[0].client_host.as_str(), "/10.0.0.7");
    assert_eq!(resp.groups[1].group_state.as_str(), "Empty");
    assert_eq!(
        (
            resp.groups[2].error_code,
            resp.groups[2].group_state.as_str()
        ),
        (0, "Dead")
    );
    let v6 = c.describe_groups(req, 6).await;
    encodes(&v6, 6);
    assert_eq!(
        v6.groups[2].error_code,
        code(ResponseError::GroupIdNotFound)
    );
}

#[tokio::test(start_paused = true)]
async fn only_groups_without_members_can_be_deleted() {
    let (c, _) = coordinator();
    let (leader, follower) = stable_pair(&c, "live").await;
    simple_commit(&c, "offsets-only").await;
    assert_eq!(
        delete(&c, &["live", "offsets-only", "missing"]).await,
        vec![
            code(ResponseError::NonEmptyGroup),
            0,
            code(ResponseError::GroupIdNotFound)
        ]
    );
    assert_eq!(
        listed(&list(&c, 4, &[]).await).len(),
        1,
        "offsets-only is gone"
    );

    let mut leave = LeaveGroupRequest::default();
    leave.group_id = GroupId(str_bytes("live"));
    leave.members = [&leader, &follower]
        .iter()
        .map(|m| {
            let mut identity = MemberIdentity::default();
            identity.member_id = str_bytes((*m).clone());
            identity
        })
        .collect();
    assert_eq!(c.leave_group(leave, 4).await.error_code, 0);
    simple_commit(&c, "live").await;
    assert_eq!(delete(&c, &["live"]).await, vec![0]);
    assert!(listed(&list(&c, 4, &[]).await).is_empty());
    assert_eq!(
        delete(&c, &["live"]).await,
        vec![code(ResponseError::GroupIdNotFound)]
    );
    // The group can form again from scratch.
    let again = joined(spawn_join(&c, join_req("live", "", &["orders"]), 3)).await;
    assert_eq!((again.error_code, again.generation_id), (0, 1));
}
