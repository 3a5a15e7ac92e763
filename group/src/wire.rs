//! Translation between kafka-protocol messages and the group core's types, field by field per API version, so every response encodes at the version it answers.

use std::time::Duration;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::{
    GroupId, HeartbeatResponse, JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest,
    LeaveGroupResponse, SyncGroupRequest, SyncGroupResponse,
};
use kafka_protocol::protocol::StrBytes;

use crate::coordinator::ClientInfo;
use crate::group::{
    GroupState, GroupSummary, JoinOutcome, JoinParams, MemberRef, Protocol, SyncOutcome, SyncParams,
};

pub(crate) fn str_bytes(s: impl Into<String>) -> StrBytes {
    StrBytes::from_string(s.into())
}

pub(crate) fn code(result: Result<(), ResponseError>) -> i16 {
    result.err().map_or(0, |e| e.code())
}

fn millis(ms: i32) -> Duration {
    // A negative timeout becomes zero, which the range check then rejects.
    Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

pub(crate) fn join_params(req: &JoinGroupRequest, version: i16, client: &ClientInfo) -> JoinParams {
    let session_timeout = millis(req.session_timeout_ms);
    // v0 has no rebalance timeout; Kafka uses the session timeout for it.
    let rebalance_timeout = if version >= 1 && req.rebalance_timeout_ms > 0 {
        millis(req.rebalance_timeout_ms)
    } else {
        session_timeout
    };
    JoinParams {
        member_id: req.member_id.to_string(),
        instance_id: (version >= 5)
            .then(|| req.group_instance_id.as_ref().map(|i| i.to_string()))
            .flatten(),
        client_id: client.client_id.clone(),
        client_host: client.client_host.clone(),
        session_timeout,
        rebalance_timeout,
        protocol_type: req.protocol_type.to_string(),
        protocols: req
            .protocols
            .iter()
            .map(|p| Protocol {
                name: p.name.to_string(),
                metadata: p.metadata.clone(),
            })
            .collect(),
        require_known_member_id: version >= 4,
    }
}

pub(crate) fn join_response(outcome: JoinOutcome, version: i16) -> JoinGroupResponse {
    let mut resp = JoinGroupResponse::default();
    resp.error_code = outcome.error.map_or(0, |e| e.code());
    resp.generation_id = outcome.generation_id;
    // Before v7 the protocol name is not nullable: Java clients reject a null.
    resp.protocol_name = if version >= 7 {
        outcome.protocol_name.map(str_bytes)
    } else {
        Some(str_bytes(outcome.protocol_name.unwrap_or_default()))
    };
    resp.protocol_type = if version >= 7 {
        outcome.protocol_type.map(str_bytes)
    } else {
        None
    };
    resp.leader = str_bytes(outcome.leader);
    resp.member_id = str_bytes(outcome.member_id);
    resp.members = outcome
        .members
        .into_iter()
        .map(|m| {
            let mut member = JoinGroupResponseMember::default();
            member.member_id = str_bytes(m.member_id);
            member.group_instance_id = if version >= 5 {
                m.instance_id.map(str_bytes)
            } else {
                None
            };
            member.metadata = m.metadata;
            member
        })
        .collect();
    resp
}

pub(crate) fn sync_params(req: SyncGroupRequest, version: i16) -> SyncParams {
    SyncParams {
        member: MemberRef {
            member_id: req.member_id.to_string(),
            instance_id: (version >= 3)
                .then(|| req.group_instance_id.map(|i| i.to_string()))
                .flatten(),
        },
        generation: req.generation_id,
        protocol_type: (version >= 5)
            .then(|| req.protocol_type.map(|p| p.to_string()))
            .flatten(),
        protocol_name: (version >= 5)
            .then(|| req.protocol_name.map(|p| p.to_string()))
            .flatten(),
        assignments: req
            .assignments
            .into_iter()
            .map(|a| (a.member_id.to_string(), a.assignment))
            .collect(),
    }
}

pub(crate) fn sync_response(outcome: SyncOutcome, version: i16) -> SyncGroupResponse {
    let mut resp = SyncGroupResponse::default();
    resp.error_code = outcome.error.map_or(0, |e| e.code());
    if version >= 5 {
        resp.protocol_type = outcome.protocol_type.map(str_bytes);
        resp.protocol_name = outcome.protocol_name.map(str_bytes);
    }
    resp.assignment = outcome.assignment;
    resp
}

pub(crate) fn heartbeat_response(result: Result<(), ResponseError>) -> HeartbeatResponse {
    let mut resp = HeartbeatResponse::default();
    resp.error_code = code(result);
    resp
}

/// v0-2 name one member by id; v3+ carry a list that may use instance ids.
pub(crate) fn leave_members(req: &LeaveGroupRequest, version: i16) -> Vec<MemberRef> {
    if version < 3 {
        return vec![MemberRef {
            member_id: req.member_id.to_string(),
            instance_id: None,
        }];
    }
    req.members
        .iter()
        .map(|m| MemberRef {
            member_id: m.member_id.to_string(),
            instance_id: m.group_instance_id.as_ref().map(|i| i.to_string()),
        })
        .collect()
}

pub(crate) fn leave_response(
    leaving: Vec<MemberRef>,
    results: Result<Vec<Result<(), ResponseError>>, ResponseError>,
    version: i16,
) -> LeaveGroupResponse {
    let mut resp = LeaveGroupResponse::default();
    let per_member = match results {
        Err(error) => {
            resp.error_code = error.code();
            return resp;
        }
        Ok(per_member) => per_member,
    };
    if version < 3 {
        // One member, so its error is the request's (as Kafka reports it).
        resp.error_code = per_member.first().map_or(0, |r| code(*r));
        return resp;
    }
    resp.members = leaving
        .into_iter()
        .zip(per_member)
        .map(|(member, result)| {
            let mut m = MemberResponse::default();
            m.member_id = str_bytes(member.member_id);
            m.group_instance_id = member.instance_id.map(str_bytes);
            m.error_code = code(result);
            m
        })
        .collect();
    resp
}

/// A DescribeGroups entry; `None` means the group does not exist.
pub(crate) fn described_group(
    group_id: &GroupId,
    summary: Option<GroupSummary>,
    version: i16,
) -> DescribedGroup {
    let mut group = DescribedGroup::default();
    group.group_id = group_id.clone();
    let Some(summary) = summary else {
        group.group_state = str_bytes(GroupState::Dead.name());
        // v6 reports a missing group as an error; older versions only as a
        // Dead group, which clients understand as "no such group".
        if version >= 6 {
            group.error_code = ResponseError::GroupIdNotFound.code();
            group.error_message =
                Some(str_bytes(format!("Group {} not found.", group_id.as_str())));
        }
        return group;
    };
    group.group_state = str_bytes(summary.state.name());
    group.protocol_type = str_bytes(summary.protocol_type);
    group.protocol_data = str_bytes(summary.protocol);
    group.members = summary
        .members
        .into_iter()
        .map(|m| {
            let mut member = DescribedGroupMember::default();
            member.member_id = str_bytes(m.member_id);
            member.group_instance_id = if version >= 4 {
                m.instance_id.map(str_bytes)
            } else {
                None
            };
            member.client_id = str_bytes(m.client_id);
            member.client_host = str_bytes(m.client_host);
            member.member_metadata = m.metadata;
            member.member_assignment = m.assignment;
            member
        })
        .collect();
    group
}
