//! The coordinator driven through its public handlers with decoded requests, on a paused tokio clock; every response is also encoded at its version.

mod admin;
mod offsets;

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::{
    GroupId, HeartbeatRequest, JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest,
    SyncGroupRequest, SyncGroupResponse,
};
use kafka_protocol::protocol::Encodable;
use tokio::task::JoinHandle;
use tokio::time::sleep;

use super::{ClientInfo, GroupCoordinator};
use crate::config::GroupConfig;
use crate::store::MemoryOffsetStore;
use crate::subscription::encode_subscription;
use crate::wire::str_bytes;

const SESSION_MS: i32 = 6_000;
const REBALANCE_MS: i32 = 20_000;

fn coordinator() -> (GroupCoordinator, Arc<MemoryOffsetStore>) {
    let store = Arc::new(MemoryOffsetStore::with_topics(["orders", "payments"]));
    let config = GroupConfig {
        empty_group_retention: Duration::from_secs(60),
        ..GroupConfig::default()
    };
    let coordinator = GroupCoordinator::new(config, store.clone()).expect("valid config");
    (coordinator, store)
}

fn client() -> ClientInfo {
    ClientInfo {
        client_id: "rdkafka".to_owned(),
        client_host: "/10.0.0.7".to_owned(),
    }
}

fn code(error: ResponseError) -> i16 {
    error.code()
}

/// Encodes a response at `version`, failing the test if a field set by the
/// coordinator does not exist in that version.
fn encodes<M: Encodable>(message: &M, version: i16) {
    let mut buf = BytesMut::new();
    if let Err(error) = message.encode(&mut buf, version) {
        panic!("response does not encode at v{version}: {error}");
    }
}

fn join_req(group: &str, member_id: &str, topics: &[&str]) -> JoinGroupRequest {
    let mut protocol = JoinGroupRequestProtocol::default();
    protocol.name = str_bytes("range");
    protocol.metadata = encode_subscription(topics, 1);
    let mut req = JoinGroupRequest::default();
    req.group_id = GroupId(str_bytes(group));
    req.session_timeout_ms = SESSION_MS;
    req.rebalance_timeout_ms = REBALANCE_MS;
    req.member_id = str_bytes(member_id);
    req.protocol_type = str_bytes("consumer");
    req.protocols = vec![protocol];
    req
}

fn spawn_join(
    c: &GroupCoordinator,
    req: JoinGroupRequest,
    version: i16,
) -> JoinHandle<JoinGroupResponse> {
    let c = c.clone();
    tokio::spawn(async move {
        let resp = c.join_group(req, version, &client()).await;
        encodes(&resp, version);
        resp
    })
}

fn sync_req(
    group: &str,
    member_id: &str,
    generation: i32,
    assignments: &[(&str, &[u8])],
) -> SyncGroupRequest {
    let mut req = SyncGroupRequest::default();
    req.group_id = GroupId(str_bytes(group));
    req.generation_id = generation;
    req.member_id = str_bytes(member_id);
    req.assignments = assignments
        .iter()
        .map(|(member, assignment)| {
            let mut a = SyncGroupRequestAssignment::default();
            a.member_id = str_bytes(*member);
            a.assignment = Bytes::copy_from_slice(assignment);
            a
        })
        .collect();
    req
}

fn spawn_sync(
    c: &GroupCoordinator,
    req: SyncGroupRequest,
    version: i16,
) -> JoinHandle<SyncGroupResponse> {
    let c = c.clone();
    tokio::spawn(async move {
        let resp = c.sync_group(req, version).await;
        encodes(&resp, version);
        resp
    })
}

async fn heartbeat(c: &GroupCoordinator, group: &str, member_id: &str, generation: i32) -> i16 {
    let mut req = HeartbeatRequest::default();
    req.group_id = GroupId(str_bytes(group));
    req.member_id = str_bytes(member_id);
    req.generation_id = generation;
    let resp = c.heartbeat(req, 4).await;
    encodes(&resp, 4);
    resp.error_code
}

/// The v4+ JoinGroup dance: fetch a member id, then join with it.
fn spawn_member_id_then_join(
    c: &GroupCoordinator,
    group: &str,
    version: i16,
) -> JoinHandle<JoinGroupResponse> {
    let (c, group) = (c.clone(), group.to_owned());
    tokio::spawn(async move {
        let first = c
            .join_group(join_req(&group, "", &["orders"]), version, &client())
            .await;
        assert_eq!(first.error_code, code(ResponseError::MemberIdRequired));
        let req = join_req(&group, first.member_id.as_str(), &["orders"]);
        let resp = c.join_group(req, version, &client()).await;
        encodes(&resp, version);
        resp
    })
}

async fn joined(handle: JoinHandle<JoinGroupResponse>) -> JoinGroupResponse {
    handle.await.expect("join task")
}

/// Two members subscribed to "orders" joined and synced at generation 1;
/// returns (leader, follower).
async fn stable_pair(c: &GroupCoordinator, group: &str) -> (String, String) {
    let a = spawn_join(c, join_req(group, "", &["orders"]), 3);
    let b = spawn_join(c, join_req(group, "", &["orders"]), 3);
    let (a, b) = (joined(a).await, joined(b).await);
    assert_eq!((a.error_code, b.error_code), (0, 0));
    let (leader, follower) = if a.member_id == a.leader {
        (a, b)
    } else {
        (b, a)
    };
    let (leader, follower) = (leader.member_id.to_string(), follower.member_id.to_string());
    let f = spawn_sync(c, sync_req(group, &follower, 1, &[]), 3);
    let l = spawn_sync(
        c,
        sync_req(group, &leader, 1, &[(&leader, b"L"), (&follower, b"F")]),
        3,
    );
    assert_eq!(l.await.expect("sync").assignment, Bytes::from_static(b"L"));
    assert_eq!(f.await.expect("sync").assignment, Bytes::from_static(b"F"));
    (leader, follower)
}

#[tokio::test(start_paused = true)]
async fn two_members_share_a_generation_and_get_their_own_assignments() {
    let (c, _) = coordinator();
    let started = tokio::time::Instant::now();
    let a = spawn_member_id_then_join(&c, "g", 7);
    let b = spawn_member_id_then_join(&c, "g", 7);
    let (a, b) = (joined(a).await, joined(b).await);
    // The second joiner extended the 300 ms initial delay once.
    assert_eq!(started.elapsed(), Duration::from_millis(600));
    assert_eq!((a.error_code, b.error_code), (0, 0));
    assert_eq!((a.generation_id, b.generation_id), (1, 1));
    assert_eq!(a.leader, b.leader);
    assert!(a.member_id.starts_with("rdkafka-"), "{:?}", a.member_id);
    assert_eq!(a.protocol_type.as_deref(), Some("consumer"));
    assert_eq!(a.protocol_name.as_deref(), Some("range"));
    let (leader, follower) = if a.member_id == a.leader {
        (a, b)
    } else {
        (b, a)
    };
    assert_eq!(leader.members.len(), 2);
    assert_eq!(
        leader.members[0].metadata,
        encode_subscription(&["orders"], 1)
    );
    assert!(follower.members.is_empty());

    let f = spawn_sync(&c, sync_req("g", &follower.member_id, 1, &[]), 5);
    sleep(Duration::from_millis(50)).await;
    assert!(!f.is_finished(), "the follower waits for the leader");
    let l = spawn_sync(
        &c,
        sync_req(
            "g",
            &leader.member_id,
            1,
            &[(&leader.member_id, b"p0"), (&follower.member_id, b"p1")],
        ),
        5,
    );
    let (l, f) = (l.await.expect("sync"), f.await.expect("sync"));
    assert_eq!((l.error_code, f.error_code), (0, 0));
    assert_eq!(l.assignment, Bytes::from_static(b"p0"));
    assert_eq!(f.assignment, Bytes::from_static(b"p1"));
    assert_eq!(f.protocol_name.as_deref(), Some("range"));
    assert_eq!(heartbeat(&c, "g", &follower.member_id, 1).await, 0);
    assert_eq!(
        heartbeat(&c, "g", &follower.member_id, 0).await,
        code(ResponseError::IllegalGeneration)
    );
    assert_eq!(
        heartbeat(&c, "g", "stranger", 1).await,
        code(ResponseError::UnknownMemberId)
    );
    assert_eq!(
        heartbeat(&c, "nope", "stranger", 1).await,
        code(ResponseError::UnknownMemberId)
    );
}

#[tokio::test(start_paused = true)]
async fn a_third_member_makes_the_others_rejoin_into_the_next_generation() {
    let (c, _) = coordinator();
    let (leader, follower) = stable_pair(&c, "g").await;
    let third = spawn_join(&c, join_req("g", "", &["orders"]), 3);
    sleep(Duration::from_millis(10)).await;
    assert!(!third.is_finished());
    assert_eq!(
        heartbeat(&c, "g", &leader, 1).await,
        code(ResponseError::RebalanceInProgress)
    );
    assert_eq!(
        heartbeat(&c, "g", &follower, 1).await,
        code(ResponseError::RebalanceInProgress)
    );
    let stale = spawn_sync(&c, sync_req("g", &follower, 1, &[]), 3);
    assert_eq!(
        stale.await.expect("sync").error_code,
        code(ResponseError::RebalanceInProgress)
    );
    let l = spawn_join(&c, join_req("g", &leader, &["orders"]), 3);
    let f = spawn_join(&c, join_req("g", &follower, &["orders"]), 3);
    let (l, f, t) = (joined(l).await, joined(f).await, joined(third).await);
    assert_eq!(
        (l.generation_id, f.generation_id, t.generation_id),
        (2, 2, 2)
    );
    assert_eq!(l.leader.as_str(), leader);
    assert_eq!(l.members.len(), 3);
    assert!(f.members.is_empty() && t.members.is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_member_that_stops_heartbeating_is_expired_and_the_group_rebalances() {
    let (c, _) = coordinator();
    let (leader, follower) = stable_pair(&c, "g").await;
    let started = tokio::time::Instant::now();
    // The leader heartbeats every 2 s, as consumers do; the follower is gone.
    let mut seen = 0;
    while seen == 0 {
        sleep(Duration::from_secs(2)).await;
        seen = heartbeat(&c, "g", &leader, 1).await;
    }
    assert_eq!(seen, code(ResponseError::RebalanceInProgress));
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(SESSION_MS as u64) && waited <= Duration::from_secs(8),
        "expired after {waited:?}"
    );
    assert_eq!(
        heartbeat(&c, "g", &follower, 1).await,
        code(ResponseError::UnknownMemberId)
    );
    let l = joined(spawn_join(&c, join_req("g", &leader, &["orders"]), 3)).await;
    assert_eq!((l.error_code, l.generation_id, l.members.len()), (0, 2, 1));
}

#[tokio::test(start_paused = true)]
async fn leaving_rebalances_the_rest_and_errors_are_per_member_from_v3() {
    let (c, _) = coordinator();
    let (leader, follower) = stable_pair(&c, "g").await;

    let mut v3 = LeaveGroupRequest::default();
    v3.group_id = GroupId(str_bytes("g"));
    let mut identity = MemberIdentity::default();
    identity.member_id = str_bytes(leader.clone());
    let mut ghost = MemberIdentity::default();
    ghost.member_id = str_bytes("ghost");
    v3.members = vec![identity, ghost];
    let resp = c.leave_group(v3, 3).await;
    encodes(&resp, 3);
    assert_eq!(resp.error_code, 0);
    let codes: Vec<i16> = resp.members.iter().map(|m| m.error_code).collect();
    assert_eq!(codes, vec![0, code(ResponseError::UnknownMemberId)]);

    assert_eq!(
        heartbeat(&c, "g", &follower, 1).await,
        code(ResponseError::RebalanceInProgress)
    );
    let f = joined(spawn_join(&c, join_req("g", &follower, &["orders"]), 3)).await;
    assert_eq!((f.generation_id, f.leader.as_str()), (2, follower.as_str()));

    let mut v0 = LeaveGroupRequest::default();
    v0.group_id = GroupId(str_bytes("g"));
    v0.member_id = str_bytes("ghost");
    let resp = c.leave_group(v0, 0).await;
    encodes(&resp, 0);
    assert_eq!(resp.error_code, code(ResponseError::UnknownMemberId));
}

#[tokio::test(start_paused = true)]
async fn new_members_must_fetch_their_id_from_v4() {
    let (c, _) = coordinator();
    for version in [4, 5, 9] {
        let group = format!("g{version}");
        let first = joined(spawn_join(&c, join_req(&group, "", &["orders"]), version)).await;
        assert_eq!(first.error_code, code(ResponseError::MemberIdRequired));
        assert!(first.member_id.starts_with("rdkafka-"));
        assert_eq!(first.generation_id, -1);
        let member_id = first.member_id.to_string();
        let again = joined(spawn_join(
            &c,
            join_req(&group, &member_id, &["orders"]),
            version,
        ))
        .await;
        assert_eq!(again.error_code, 0);
        assert_eq!(again.member_id.as_str(), member_id);
        assert_eq!(
            (again.generation_id, again.leader.as_str()),
            (1, member_id.as_str())
        );
        assert_eq!(again.members.len(), 1);
    }
    // Below v4 the id comes with the first answer, and v0 has no rebalance
    // timeout of its own.
    let v0 = joined(spawn_join(&c, join_req("old", "", &["orders"]), 0)).await;
    assert_eq!((v0.error_code, v0.generation_id), (0, 1));
    assert_eq!(v0.protocol_name.as_deref(), Some("range"));
    // A made-up member id for an unknown group is refused.
    let bogus = joined(spawn_join(&c, join_req("none", "made-up", &["orders"]), 5)).await;
    assert_eq!(bogus.error_code, code(ResponseError::UnknownMemberId));
    // v0-6 must not carry a null protocol name, even on errors.
    assert_eq!(bogus.protocol_name.as_deref(), Some(""));
}

#[tokio::test(start_paused = true)]
async fn empty_group_ids_and_bad_protocols_are_refused() {
    let (c, _) = coordinator();
    let resp = joined(spawn_join(&c, join_req("", "", &["orders"]), 5)).await;
    assert_eq!(resp.error_code, code(ResponseError::InvalidGroupId));
    let mut no_protocols = join_req("g", "", &["orders"]);
    no_protocols.protocols.clear();
    let resp = joined(spawn_join(&c, no_protocols, 3)).await;
    assert_eq!(
        resp.error_code,
        code(ResponseError::InconsistentGroupProtocol)
    );
    let mut too_short = join_req("g", "", &["orders"]);
    too_short.session_timeout_ms = 10;
    let resp = joined(spawn_join(&c, too_short, 3)).await;
    assert_eq!(resp.error_code, code(ResponseError::InvalidSessionTimeout));
}

#[tokio::test(start_paused = true)]
async fn an_idle_empty_group_is_forgotten_and_can_form_again() {
    let (c, _) = coordinator();
    let (leader, follower) = stable_pair(&c, "g").await;
    for member in [&leader, &follower] {
        let mut leave = LeaveGroupRequest::default();
        leave.group_id = GroupId(str_bytes("g"));
        leave.member_id = str_bytes(member.clone());
        assert_eq!(c.leave_group(leave, 1).await.error_code, 0);
    }
    assert_eq!(c.handles().len(), 1);
    sleep(Duration::from_secs(61)).await;
    assert!(
        c.handles().is_empty(),
        "retired after empty_group_retention"
    );
    let again = joined(spawn_join(&c, join_req("g", "", &["orders"]), 3)).await;
    assert_eq!((again.error_code, again.generation_id), (0, 1));
}
