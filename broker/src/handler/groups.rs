//! Which broker coordinates a consumer group, and the NOT_COORDINATOR
//! answers of the others. Groups are spread over the live brokers by
//! rendezvous hashing (each group goes to the broker with the highest
//! stable hash of group and broker id), so a broker joining or leaving
//! moves only the groups it gains or had. Clients of a moved group hear
//! NOT_COORDINATOR, look the coordinator up again and rejoin there
//! (committed offsets live in the controller, so nothing is lost).

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::describe_groups_response::DescribedGroup;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_fetch_response::OffsetFetchResponseGroup;
use kafka_protocol::messages::{
    DeleteGroupsRequest, DescribeGroupsRequest, GroupId, HeartbeatResponse, JoinGroupResponse,
    LeaveGroupResponse, OffsetCommitRequest, OffsetCommitResponse, OffsetDeleteResponse,
    OffsetFetchRequest, OffsetFetchResponse, SyncGroupResponse,
};

use super::code;
use crate::broker::Broker;
use crate::cluster::BrokerView;

/// FNV-1a: stable across processes and versions (unlike std's hasher).
fn stable_hash(key: &str) -> u32 {
    key.bytes().fold(0x811c_9dc5u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

/// The broker coordinating `group`, among the live brokers that are not
/// draining (a draining broker is about to leave): this one when there is
/// none.
pub fn coordinator(b: &Broker, group: &str) -> BrokerView {
    let mut live = b.cluster.live_brokers();
    live.retain(|l| !l.draining);
    if live.is_empty() {
        return BrokerView {
            id: b.config.node_id,
            host: b.config.advertised_host.clone(),
            port: b.config.advertised_port,
            rack: None,
            draining: false,
        };
    }
    live.into_iter()
        .max_by_key(|l| (weight(group, l.id), l.id))
        .expect("at least one live broker")
}

/// The rendezvous weight of `broker` for `group`.
fn weight(group: &str, broker: i32) -> u32 {
    let key = format!("{group}\0{broker}");
    // FNV-1a's bits mix poorly for similar keys: finish with murmur3's mix.
    let mut h = stable_hash(&key);
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^ (h >> 16)
}

pub fn is_coordinator(b: &Broker, group: &str) -> bool {
    coordinator(b, group).id == b.config.node_id
}

const NOT_COORDINATOR: ResponseError = ResponseError::NotCoordinator;

pub fn join(b: &Broker, group: &GroupId) -> Option<JoinGroupResponse> {
    (!is_coordinator(b, group)).then(|| {
        let mut r = JoinGroupResponse::default();
        r.error_code = code(NOT_COORDINATOR);
        r.generation_id = -1;
        r
    })
}

pub fn sync(b: &Broker, group: &GroupId) -> Option<SyncGroupResponse> {
    (!is_coordinator(b, group)).then(|| {
        let mut r = SyncGroupResponse::default();
        r.error_code = code(NOT_COORDINATOR);
        r
    })
}

pub fn heartbeat(b: &Broker, group: &GroupId) -> Option<HeartbeatResponse> {
    (!is_coordinator(b, group)).then(|| {
        let mut r = HeartbeatResponse::default();
        r.error_code = code(NOT_COORDINATOR);
        r
    })
}

pub fn leave(b: &Broker, group: &GroupId) -> Option<LeaveGroupResponse> {
    (!is_coordinator(b, group)).then(|| {
        let mut r = LeaveGroupResponse::default();
        r.error_code = code(NOT_COORDINATOR);
        r
    })
}

pub fn offset_delete(b: &Broker, group: &GroupId) -> Option<OffsetDeleteResponse> {
    (!is_coordinator(b, group)).then(|| {
        let mut r = OffsetDeleteResponse::default();
        r.error_code = code(NOT_COORDINATOR);
        r
    })
}

/// OffsetCommit has no group-level error: every partition says it.
pub fn offset_commit(b: &Broker, req: &OffsetCommitRequest) -> Option<OffsetCommitResponse> {
    (!is_coordinator(b, &req.group_id)).then(|| {
        let mut r = OffsetCommitResponse::default();
        r.topics = req
            .topics
            .iter()
            .map(|t| {
                let mut rt = OffsetCommitResponseTopic::default();
                rt.name = t.name.clone();
                rt.topic_id = t.topic_id;
                rt.partitions = t
                    .partitions
                    .iter()
                    .map(|p| {
                        let mut rp = OffsetCommitResponsePartition::default();
                        rp.partition_index = p.partition_index;
                        rp.error_code = code(NOT_COORDINATOR);
                        rp
                    })
                    .collect();
                rt
            })
            .collect();
        r
    })
}

/// Splits a multi-group request: the groups coordinated elsewhere are
/// taken out of `req` and answered NOT_COORDINATOR.
pub fn describe_elsewhere(b: &Broker, req: &mut DescribeGroupsRequest) -> Vec<DescribedGroup> {
    let (here, elsewhere) = split(b, std::mem::take(&mut req.groups), |g| g);
    req.groups = here;
    elsewhere
        .into_iter()
        .map(|g| {
            let mut d = DescribedGroup::default();
            d.group_id = g;
            d.error_code = code(NOT_COORDINATOR);
            d
        })
        .collect()
}

pub fn delete_elsewhere(b: &Broker, req: &mut DeleteGroupsRequest) -> Vec<DeletableGroupResult> {
    let (here, elsewhere) = split(b, std::mem::take(&mut req.groups_names), |g| g);
    req.groups_names = here;
    elsewhere
        .into_iter()
        .map(|g| {
            let mut d = DeletableGroupResult::default();
            d.group_id = g;
            d.error_code = code(NOT_COORDINATOR);
            d
        })
        .collect()
}

/// OffsetFetch: v0-7 name one group, v8+ a list.
pub enum FetchRoute {
    Here,
    /// A whole answer (single group coordinated elsewhere).
    Answer(OffsetFetchResponse),
    /// Some groups of a batched request are elsewhere: append these.
    Append(Vec<OffsetFetchResponseGroup>),
}

pub fn offset_fetch(b: &Broker, req: &mut OffsetFetchRequest, version: i16) -> FetchRoute {
    if version < 8 {
        if is_coordinator(b, &req.group_id) {
            return FetchRoute::Here;
        }
        let mut r = OffsetFetchResponse::default();
        r.error_code = code(NOT_COORDINATOR);
        return FetchRoute::Answer(r);
    }
    let (here, elsewhere) = split(b, std::mem::take(&mut req.groups), |g| &g.group_id);
    req.groups = here;
    if elsewhere.is_empty() {
        return FetchRoute::Here;
    }
    FetchRoute::Append(
        elsewhere
            .into_iter()
            .map(|g| {
                let mut r = OffsetFetchResponseGroup::default();
                r.group_id = g.group_id;
                r.error_code = code(NOT_COORDINATOR);
                r
            })
            .collect(),
    )
}

fn split<T>(b: &Broker, items: Vec<T>, id: impl Fn(&T) -> &GroupId) -> (Vec<T>, Vec<T>) {
    items
        .into_iter()
        .partition(|item| is_coordinator(b, id(item)))
}

#[cfg(test)]
mod tests {
    use super::{stable_hash, weight};

    /// The coordinator among `brokers` (the same rule as `coordinator`).
    fn pick(group: &str, brokers: &[i32]) -> i32 {
        *brokers
            .iter()
            .max_by_key(|b| (weight(group, **b), **b))
            .unwrap()
    }

    #[test]
    fn a_leaving_broker_moves_only_its_own_groups() {
        let groups: Vec<String> = (0..1000).map(|i| format!("group-{i}")).collect();
        let before: Vec<i32> = groups.iter().map(|g| pick(g, &[1, 2, 3, 4])).collect();
        let after: Vec<i32> = groups.iter().map(|g| pick(g, &[1, 2, 4])).collect();
        for (b, a) in before.iter().zip(&after) {
            if *b != 3 {
                assert_eq!(a, b, "a group of a staying broker moved");
            }
        }
        // Spread: every broker coordinates a fair share (within 30%).
        for broker in [1, 2, 3, 4] {
            let n = before.iter().filter(|b| **b == broker).count();
            assert!(
                (175..=325).contains(&n),
                "broker {broker} coordinates {n} of 1000"
            );
        }
    }

    #[test]
    fn the_group_hash_is_stable_fnv1a() {
        // Reference values of 32-bit FNV-1a: coordinators must not move
        // between versions of Floe.
        assert_eq!(stable_hash(""), 0x811c_9dc5);
        assert_eq!(stable_hash("a"), 0xe40c_292c);
        assert_eq!(stable_hash("foobar"), 0xbf9c_f968);
    }
}
