//! DescribeGroups, ListGroups and DeleteGroups: the admin view, which also covers groups that exist only as committed offsets (as after a broker restart).

use std::collections::BTreeMap;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::{
    DeleteGroupsRequest, DeleteGroupsResponse, DescribeGroupsRequest, DescribeGroupsResponse,
    GroupId, ListGroupsRequest, ListGroupsResponse,
};

use super::{blocking, Command, GroupCoordinator};
use crate::group::{GroupState, GroupSummary};
use crate::wire::{self, str_bytes};

/// ListGroups v5 group type of every group here: the classic protocol.
const CLASSIC_GROUP_TYPE: &str = "classic";

impl GroupCoordinator {
    /// DescribeGroups v0-6.
    #[tracing::instrument(level = "debug", skip_all, fields(version = version))]
    pub async fn describe_groups(
        &self,
        req: DescribeGroupsRequest,
        version: i16,
    ) -> DescribeGroupsResponse {
        let mut resp = DescribeGroupsResponse::default();
        for group_id in &req.groups {
            let summary = self.summary(group_id.as_str()).await;
            resp.groups
                .push(wire::described_group(group_id, summary, version));
        }
        resp
    }

    /// The group as DescribeGroups shows it; a group known only by its
    /// committed offsets is Empty with no protocol, `None` if unknown.
    async fn summary(&self, group: &str) -> Option<GroupSummary> {
        if let Some(summary) = self
            .ask(group, false, |reply| Command::Describe { reply })
            .await
        {
            return Some(summary);
        }
        let store = self.store();
        let owned = group.to_owned();
        let has_offsets = blocking(move || !store.fetch(&owned).is_empty())
            .await
            .unwrap_or(false);
        has_offsets.then(|| GroupSummary {
            state: GroupState::Empty,
            protocol_type: String::new(),
            protocol: String::new(),
            members: Vec::new(),
        })
    }

    /// ListGroups v0-5, with the v4 state filter and the v5 type filter.
    #[tracing::instrument(level = "debug", skip_all, fields(version = version))]
    pub async fn list_groups(&self, req: ListGroupsRequest, version: i16) -> ListGroupsResponse {
        let mut listed: BTreeMap<String, (GroupState, String)> = BTreeMap::new();
        for (id, handle) in self.handles() {
            if let Some(summary) = handle.ask(|reply| Command::Describe { reply }).await {
                if summary.state != GroupState::Dead {
                    listed.insert(id, (summary.state, summary.protocol_type));
                }
            }
        }
        let store = self.store();
        let mut resp = ListGroupsResponse::default();
        match blocking(move || store.groups_with_offsets()).await {
            Ok(stored) => {
                for id in stored {
                    listed
                        .entry(id)
                        .or_insert_with(|| (GroupState::Empty, String::new()));
                }
            }
            Err(error) => resp.error_code = error.code(),
        }

        let states: Vec<Option<GroupState>> = if version >= 4 {
            req.states_filter
                .iter()
                .map(|s| GroupState::parse(s.as_str()))
                .collect()
        } else {
            Vec::new()
        };
        let classic_wanted = version < 5
            || req.types_filter.is_empty()
            || req
                .types_filter
                .iter()
                .any(|t| t.eq_ignore_ascii_case(CLASSIC_GROUP_TYPE));
        if !classic_wanted {
            return resp;
        }
        for (id, (state, protocol_type)) in listed {
            if !states.is_empty() && !states.contains(&Some(state)) {
                continue;
            }
            let mut group = ListedGroup::default();
            group.group_id = GroupId(str_bytes(id));
            group.protocol_type = str_bytes(protocol_type);
            if version >= 4 {
                group.group_state = str_bytes(state.name());
            }
            if version >= 5 {
                group.group_type = str_bytes(CLASSIC_GROUP_TYPE);
            }
            resp.groups.push(group);
        }
        resp
    }

    /// DeleteGroups v0-2: only groups without members; their committed
    /// offsets go too.
    #[tracing::instrument(level = "debug", skip_all, fields(version = version))]
    pub async fn delete_groups(
        &self,
        req: DeleteGroupsRequest,
        version: i16,
    ) -> DeleteGroupsResponse {
        let mut resp = DeleteGroupsResponse::default();
        for group_id in req.groups_names {
            let result = self.delete_group(group_id.as_str()).await;
            let mut entry = DeletableGroupResult::default();
            entry.group_id = group_id;
            entry.error_code = wire::code(result);
            resp.results.push(entry);
        }
        resp
    }

    async fn delete_group(&self, group: &str) -> Result<(), ResponseError> {
        if let Some(handle) = self.handle(group, false) {
            let _no_commits_meanwhile = handle.offset_writes.lock().await;
            match handle.ask(|reply| Command::Delete { reply }).await {
                Some(Ok(())) => {
                    // The task stays Dead (turning joins away) until its
                    // offsets are gone, then is forgotten.
                    let result = self.delete_stored_group(group).await;
                    self.forget(group, &handle);
                    return result;
                }
                Some(Err(error)) => return Err(error),
                // Retired meanwhile: it had no members, so it is known
                // only by its offsets, if any.
                None => self.forget(group, &handle),
            }
        }
        let store = self.store();
        let owned = group.to_owned();
        if blocking(move || store.fetch(&owned).is_empty()).await? {
            return Err(ResponseError::GroupIdNotFound);
        }
        self.delete_stored_group(group).await
    }

    async fn delete_stored_group(&self, group: &str) -> Result<(), ResponseError> {
        let store = self.store();
        let owned = group.to_owned();
        blocking(move || store.delete_group(&owned))
            .await?
            .map_err(|error| {
                tracing::warn!(%error, "deleting group offsets failed");
                ResponseError::CoordinatorNotAvailable
            })
    }
}
