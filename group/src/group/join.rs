//! JoinGroup and SyncGroup: admitting members, starting rebalances and handing out the leader's assignments.

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use tokio::time::Instant;
use uuid::Uuid;

use super::member::Member;
use super::{
    answer, Group, GroupState, JoinOutcome, JoinParams, JoinReply, MemberRef, SyncOutcome,
    SyncParams, SyncReply,
};

impl Group {
    /// Handles a JoinGroup. The reply is sent now (errors, MEMBER_ID_REQUIRED,
    /// an unchanged member of a settled group) or parked until the rebalance
    /// completes.
    pub fn join(&mut self, params: JoinParams, now: Instant, reply: JoinReply) {
        if let Err(error) = self.check_join(&params) {
            return answer(reply, JoinOutcome::error(error, params.member_id));
        }
        if params.member_id.is_empty() {
            self.join_new_member(params, now, reply);
        } else {
            self.join_known_member(params, now, reply);
        }
    }

    fn check_join(&self, params: &JoinParams) -> Result<(), ResponseError> {
        if self.state == GroupState::Dead {
            // Deleted under the client's feet: it rediscovers the coordinator
            // and joins a fresh group.
            return Err(ResponseError::CoordinatorNotAvailable);
        }
        if params.session_timeout < self.config.min_session_timeout
            || params.session_timeout > self.config.max_session_timeout
        {
            return Err(ResponseError::InvalidSessionTimeout);
        }
        if !self.supports(params) {
            return Err(ResponseError::InconsistentGroupProtocol);
        }
        Ok(())
    }

    /// Whether the joining member can share a generation with the others:
    /// same protocol type and at least one protocol everyone supports. The
    /// member's own earlier protocols do not count, so it may resubscribe.
    fn supports(&self, params: &JoinParams) -> bool {
        if params.protocol_type.is_empty() || params.protocols.is_empty() {
            return false;
        }
        let mut others = self
            .members
            .values()
            .filter(|m| m.id != params.member_id)
            .peekable();
        if others.peek().is_none() {
            return true;
        }
        if self.protocol_type.as_deref() != Some(params.protocol_type.as_str()) {
            return false;
        }
        let others: Vec<&Member> = others.collect();
        params
            .protocols
            .iter()
            .any(|p| others.iter().all(|m| m.supports(&p.name)))
    }

    fn join_new_member(&mut self, mut params: JoinParams, now: Instant, reply: JoinReply) {
        if let Some(instance) = &params.instance_id {
            if let Some(existing) = self.static_members.get(instance).cloned() {
                // A static member restarting: it keeps its member id, and if
                // nothing else changed the group does not rebalance for it.
                // (Kafka hands out a fresh id and fences the old one; reusing
                // it is simpler and equally invisible to the client.)
                params.member_id = existing;
                return self.join_known_member(params, now, reply);
            }
        }
        let prefix = params.instance_id.as_deref().unwrap_or(&params.client_id);
        let member_id = format!("{prefix}-{}", Uuid::new_v4());
        if params.require_known_member_id && params.instance_id.is_none() {
            // The member only learns its id now; it counts (and can hold up a
            // rebalance) once it rejoins with it, or until its session ends.
            self.pending_members
                .insert(member_id.clone(), now + params.session_timeout);
            return answer(
                reply,
                JoinOutcome::error(ResponseError::MemberIdRequired, member_id),
            );
        }
        params.member_id = member_id;
        self.add_member_and_rebalance(params, now, reply);
    }

    fn join_known_member(&mut self, params: JoinParams, now: Instant, reply: JoinReply) {
        if self.pending_members.remove(&params.member_id).is_some() {
            return self.add_member_and_rebalance(params, now, reply);
        }
        let Some(member) = self.members.get(&params.member_id) else {
            return answer(
                reply,
                JoinOutcome::error(ResponseError::UnknownMemberId, params.member_id),
            );
        };
        if let Err(error) = self.check_instance(&params.member_id, params.instance_id.as_deref()) {
            return answer(reply, JoinOutcome::error(error, params.member_id));
        }
        let unchanged = member.matches(&params.protocols);
        match self.state {
            GroupState::PreparingRebalance => self.update_member_and_rebalance(params, now, reply),
            GroupState::CompletingRebalance if unchanged => {
                // The member lost our JoinGroup answer; repeat it.
                self.answer_with_current_generation(params.member_id, now, reply)
            }
            GroupState::Stable if unchanged && !self.is_leader(&params.member_id) => {
                self.answer_with_current_generation(params.member_id, now, reply)
            }
            // A changed subscription, or the leader asking for a new
            // assignment (e.g. after a metadata change), needs a rebalance.
            GroupState::CompletingRebalance | GroupState::Stable => {
                self.update_member_and_rebalance(params, now, reply)
            }
            GroupState::Empty | GroupState::Dead => answer(
                reply,
                JoinOutcome::error(ResponseError::UnknownMemberId, params.member_id),
            ),
        }
    }

    /// A request naming a static instance must come from the member that
    /// holds it; anything else is a stale duplicate of that instance.
    pub(super) fn check_instance(
        &self,
        member_id: &str,
        instance_id: Option<&str>,
    ) -> Result<(), ResponseError> {
        match instance_id.and_then(|i| self.static_members.get(i)) {
            Some(owner) if owner != member_id => Err(ResponseError::FencedInstanceId),
            _ => Ok(()),
        }
    }

    fn answer_with_current_generation(
        &mut self,
        member_id: String,
        now: Instant,
        reply: JoinReply,
    ) {
        let leader_view = if self.is_leader(&member_id) {
            self.member_list()
        } else {
            Vec::new()
        };
        if let Some(member) = self.members.get_mut(&member_id) {
            member.last_heartbeat = now;
        }
        answer(reply, self.current_join_outcome(&member_id, &leader_view));
    }

    fn add_member_and_rebalance(&mut self, params: JoinParams, now: Instant, reply: JoinReply) {
        if self.members.is_empty() {
            self.protocol_type = Some(params.protocol_type.clone());
        }
        let member_id = params.member_id.clone();
        if let Some(instance) = &params.instance_id {
            self.static_members
                .insert(instance.clone(), member_id.clone());
        }
        if self.leader.is_none() {
            self.leader = Some(member_id.clone());
        }
        self.members
            .insert(member_id.clone(), Member::new(params, reply, now));
        tracing::debug!(group = %self.id, member = %member_id, "member added");
        if self.state == GroupState::PreparingRebalance {
            self.new_member_added = true;
        }
        self.maybe_prepare_rebalance(now);
        self.try_complete_join(now);
    }

    fn update_member_and_rebalance(&mut self, params: JoinParams, now: Instant, reply: JoinReply) {
        let Some(member) = self.members.get_mut(&params.member_id) else {
            return answer(
                reply,
                JoinOutcome::error(ResponseError::UnknownMemberId, params.member_id),
            );
        };
        member.update(params);
        member.last_heartbeat = now;
        if let Some(superseded) = member.awaiting_join.replace(reply) {
            // The client gave up on its earlier JoinGroup and sent another;
            // should the old one still be listened to, it simply retries.
            answer(
                superseded,
                JoinOutcome::error(ResponseError::RebalanceInProgress, member.id.clone()),
            );
        }
        self.maybe_prepare_rebalance(now);
        self.try_complete_join(now);
    }

    /// Handles a SyncGroup. Followers that arrive before the leader are
    /// parked until the leader's assignments arrive.
    pub fn sync(&mut self, params: SyncParams, now: Instant, reply: SyncReply) {
        match self.check_sync(&params) {
            Err(error) => answer(reply, SyncOutcome::error(error)),
            Ok(()) => self.sync_member(params, now, reply),
        }
    }

    fn check_sync(&self, params: &SyncParams) -> Result<(), ResponseError> {
        if self.state == GroupState::Dead {
            return Err(ResponseError::CoordinatorNotAvailable);
        }
        let mismatch = |asked: &Option<String>, ours: &Option<String>| {
            asked.is_some() && ours.is_some() && asked != ours
        };
        if mismatch(&params.protocol_type, &self.protocol_type)
            || mismatch(&params.protocol_name, &self.protocol_name)
        {
            return Err(ResponseError::InconsistentGroupProtocol);
        }
        let MemberRef {
            member_id,
            instance_id,
        } = &params.member;
        if !self.members.contains_key(member_id) {
            return Err(ResponseError::UnknownMemberId);
        }
        self.check_instance(member_id, instance_id.as_deref())?;
        if params.generation != self.generation {
            return Err(ResponseError::IllegalGeneration);
        }
        match self.state {
            GroupState::PreparingRebalance => Err(ResponseError::RebalanceInProgress),
            GroupState::Empty | GroupState::Dead => Err(ResponseError::UnknownMemberId),
            GroupState::CompletingRebalance | GroupState::Stable => Ok(()),
        }
    }

    fn sync_member(&mut self, params: SyncParams, now: Instant, reply: SyncReply) {
        let member_id = params.member.member_id;
        self.pending_sync.remove(&member_id);
        if self.pending_sync.is_empty() {
            self.sync_deadline = None;
        }
        let settled = self.state == GroupState::Stable;
        let protocol_type = self.protocol_type.clone();
        let protocol_name = self.protocol_name.clone();
        let Some(member) = self.members.get_mut(&member_id) else {
            return answer(reply, SyncOutcome::error(ResponseError::UnknownMemberId));
        };
        member.last_heartbeat = now;
        if settled {
            let outcome = SyncOutcome {
                error: None,
                protocol_type,
                protocol_name,
                assignment: member.assignment.clone(),
            };
            return answer(reply, outcome);
        }
        if let Some(superseded) = member.awaiting_sync.replace(reply) {
            answer(
                superseded,
                SyncOutcome::error(ResponseError::RebalanceInProgress),
            );
        }
        if self.is_leader(&member_id) {
            self.apply_assignments(params.assignments, now);
        }
    }

    /// Stores the leader's assignments (members it left out get an empty
    /// one), answers everyone parked in SyncGroup and settles the group.
    fn apply_assignments(&mut self, assignments: Vec<(String, Bytes)>, now: Instant) {
        let mut assignments: std::collections::HashMap<String, Bytes> =
            assignments.into_iter().collect();
        for member in self.members.values_mut() {
            member.assignment = assignments.remove(&member.id).unwrap_or_default();
            if let Some(reply) = member.awaiting_sync.take() {
                // Parked members could not heartbeat; their session restarts.
                member.last_heartbeat = now;
                let outcome = SyncOutcome {
                    error: None,
                    protocol_type: self.protocol_type.clone(),
                    protocol_name: self.protocol_name.clone(),
                    assignment: member.assignment.clone(),
                };
                answer(reply, outcome);
            }
        }
        self.state = GroupState::Stable;
        tracing::debug!(group = %self.id, generation = self.generation, "group is stable");
    }
}
