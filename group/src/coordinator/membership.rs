//! JoinGroup, SyncGroup, Heartbeat and LeaveGroup handlers: validate the group id, hand the request to the group's task, shape its answer for the request version.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{
    HeartbeatRequest, HeartbeatResponse, JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest,
    LeaveGroupResponse, SyncGroupRequest, SyncGroupResponse,
};

use super::{ClientInfo, Command, GroupCoordinator};
use crate::group::{JoinOutcome, MemberRef, SyncOutcome};
use crate::wire;

impl GroupCoordinator {
    /// JoinGroup v0-9. May wait up to the group's rebalance timeout (or the
    /// initial rebalance delay) before answering.
    #[tracing::instrument(level = "debug", skip_all, fields(group = %req.group_id.as_str(), version = version))]
    pub async fn join_group(
        &self,
        req: JoinGroupRequest,
        version: i16,
        client: &ClientInfo,
    ) -> JoinGroupResponse {
        let params = wire::join_params(&req, version, client);
        let group = req.group_id.to_string();
        if group.is_empty() {
            let outcome = JoinOutcome::error(ResponseError::InvalidGroupId, params.member_id);
            return wire::join_response(outcome, version);
        }
        // Only a member without an id can bring a group into being; an id
        // names a member of a group that must already exist.
        let create = params.member_id.is_empty();
        let outcome = self
            .ask(&group, create, |reply| Command::Join {
                params: params.clone(),
                reply,
            })
            .await
            .unwrap_or_else(|| {
                let error = if create {
                    ResponseError::CoordinatorNotAvailable
                } else {
                    ResponseError::UnknownMemberId
                };
                JoinOutcome::error(error, params.member_id.clone())
            });
        wire::join_response(outcome, version)
    }

    /// SyncGroup v0-5. A follower waits here until the leader's assignments
    /// arrive.
    #[tracing::instrument(level = "debug", skip_all, fields(group = %req.group_id.as_str(), version = version))]
    pub async fn sync_group(&self, req: SyncGroupRequest, version: i16) -> SyncGroupResponse {
        let group = req.group_id.to_string();
        if group.is_empty() {
            return wire::sync_response(SyncOutcome::error(ResponseError::InvalidGroupId), version);
        }
        let params = wire::sync_params(req, version);
        let outcome = self
            .ask(&group, false, |reply| Command::Sync {
                params: params.clone(),
                reply,
            })
            .await
            .unwrap_or_else(|| SyncOutcome::error(ResponseError::UnknownMemberId));
        wire::sync_response(outcome, version)
    }

    /// Heartbeat v0-4.
    #[tracing::instrument(level = "trace", skip_all, fields(group = %req.group_id.as_str(), version = version))]
    pub async fn heartbeat(&self, req: HeartbeatRequest, version: i16) -> HeartbeatResponse {
        let group = req.group_id.to_string();
        if group.is_empty() {
            return wire::heartbeat_response(Err(ResponseError::InvalidGroupId));
        }
        let member = MemberRef {
            member_id: req.member_id.to_string(),
            instance_id: (version >= 3)
                .then(|| req.group_instance_id.as_ref().map(|i| i.to_string()))
                .flatten(),
        };
        let result = self
            .ask(&group, false, |reply| Command::Heartbeat {
                member: member.clone(),
                generation: req.generation_id,
                reply,
            })
            .await
            .unwrap_or(Err(ResponseError::UnknownMemberId));
        wire::heartbeat_response(result)
    }

    /// LeaveGroup v0-5: v0-2 name one member, v3+ a list with per-member
    /// errors.
    #[tracing::instrument(level = "debug", skip_all, fields(group = %req.group_id.as_str(), version = version))]
    pub async fn leave_group(&self, req: LeaveGroupRequest, version: i16) -> LeaveGroupResponse {
        let group = req.group_id.to_string();
        let leaving = wire::leave_members(&req, version);
        if group.is_empty() {
            return wire::leave_response(leaving, Err(ResponseError::InvalidGroupId), version);
        }
        let results = self
            .ask(&group, false, |reply| Command::Leave {
                members: leaving.clone(),
                reply,
            })
            .await
            .unwrap_or_else(|| Ok(vec![Err(ResponseError::UnknownMemberId); leaving.len()]));
        wire::leave_response(leaving, results, version)
    }
}
