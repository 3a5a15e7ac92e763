//! Heartbeats, departures, the generation check guarding offset commits, and the checks before deleting a group or its offsets.

use std::collections::BTreeSet;

use kafka_protocol::error::ResponseError;
use tokio::time::Instant;

use super::{Group, GroupState, MemberRef};
use crate::subscription;

/// Which committed offsets of a group OffsetDelete may remove.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum OffsetDeleteScope {
    /// Nobody consumes: every offset may go.
    Any,
    /// Active consumer group: offsets of topics it is subscribed to stay
    /// (GROUP_SUBSCRIBED_TO_TOPIC), others may go.
    ExceptTopics(BTreeSet<String>),
}

/// Kafka only understands subscriptions of the standard consumer protocol.
const CONSUMER_PROTOCOL_TYPE: &str = "consumer";

impl Group {
    /// Handles a Heartbeat: keeps the member alive and, during a rebalance,
    /// tells it to rejoin with REBALANCE_IN_PROGRESS.
    pub fn heartbeat(
        &mut self,
        member: &MemberRef,
        generation: i32,
        now: Instant,
    ) -> Result<(), ResponseError> {
        match self.state {
            GroupState::Dead => return Err(ResponseError::CoordinatorNotAvailable),
            GroupState::Empty => return Err(ResponseError::UnknownMemberId),
            _ => {}
        }
        self.check_generation(member, generation)?;
        if let Some(m) = self.members.get_mut(&member.member_id) {
            m.last_heartbeat = now;
        }
        match self.state {
            GroupState::PreparingRebalance => Err(ResponseError::RebalanceInProgress),
            _ => Ok(()),
        }
    }

    /// Member known, not fenced, and of the current generation.
    fn check_generation(&self, member: &MemberRef, generation: i32) -> Result<(), ResponseError> {
        if !self.members.contains_key(&member.member_id) {
            return Err(ResponseError::UnknownMemberId);
        }
        self.check_instance(&member.member_id, member.instance_id.as_deref())?;
        if generation != self.generation {
            return Err(ResponseError::IllegalGeneration);
        }
        Ok(())
    }

    /// Handles a LeaveGroup: the outer error is for the whole request, the
    /// inner ones per member, in request order.
    pub fn leave(
        &mut self,
        leaving: &[MemberRef],
        now: Instant,
    ) -> Result<Vec<Result<(), ResponseError>>, ResponseError> {
        if self.state == GroupState::Dead {
            return Err(ResponseError::CoordinatorNotAvailable);
        }
        Ok(leaving.iter().map(|m| self.leave_one(m, now)).collect())
    }

    fn leave_one(&mut self, leaving: &MemberRef, now: Instant) -> Result<(), ResponseError> {
        let member_id = match &leaving.instance_id {
            // A static member may be removed by instance id alone (the admin
            // API does this); a member id, if given, must be the holder's.
            Some(instance) => match self.static_members.get(instance) {
                None => return Err(ResponseError::UnknownMemberId),
                Some(owner) if !leaving.member_id.is_empty() && *owner != leaving.member_id => {
                    return Err(ResponseError::FencedInstanceId)
                }
                Some(owner) => owner.clone(),
            },
            None => leaving.member_id.clone(),
        };
        if self.pending_members.remove(&member_id).is_some() {
            self.try_complete_join(now);
            return Ok(());
        }
        if !self.members.contains_key(&member_id) {
            return Err(ResponseError::UnknownMemberId);
        }
        tracing::info!(group = %self.id, member = %member_id, "member left");
        self.remove_member_and_update(&member_id, now);
        Ok(())
    }

    /// Decides whether an OffsetCommit may be written, and counts it as a
    /// heartbeat of the committing member.
    ///
    /// Generation < 0 on an Empty group is a "simple" commit from a client
    /// that assigns partitions itself. Otherwise the committer must be a
    /// member of the current generation; during the sync phase it must wait
    /// (REBALANCE_IN_PROGRESS), but during the join phase it may still commit
    /// what it consumed before rejoining.
    pub fn validate_commit(
        &mut self,
        member: &MemberRef,
        generation: i32,
        now: Instant,
    ) -> Result<(), ResponseError> {
        match self.state {
            GroupState::Dead => return Err(ResponseError::CoordinatorNotAvailable),
            GroupState::Empty if generation < 0 => return Ok(()),
            _ => {}
        }
        self.check_generation(member, generation)?;
        if self.state == GroupState::CompletingRebalance {
            return Err(ResponseError::RebalanceInProgress);
        }
        if let Some(m) = self.members.get_mut(&member.member_id) {
            m.last_heartbeat = now;
        }
        Ok(())
    }

    /// Marks the group Dead if nobody is in it; the caller then deletes its
    /// offsets and forgets it.
    pub fn delete(&mut self) -> Result<(), ResponseError> {
        match self.state {
            GroupState::Dead => Err(ResponseError::GroupIdNotFound),
            GroupState::Empty => {
                self.state = GroupState::Dead;
                // Ids handed out with MEMBER_ID_REQUIRED die with the group;
                // their owners get COORDINATOR_NOT_AVAILABLE and start over.
                self.pending_members.clear();
                tracing::info!(group = %self.id, "group deleted");
                Ok(())
            }
            _ => Err(ResponseError::NonEmptyGroup),
        }
    }

    /// Which offsets OffsetDelete may remove. An active group that does not
    /// use the consumer protocol, or whose subscriptions cannot be read, is
    /// refused outright (NON_EMPTY_GROUP), as Kafka does.
    pub fn offset_delete_scope(&self) -> Result<OffsetDeleteScope, ResponseError> {
        match self.state {
            GroupState::Dead => return Err(ResponseError::GroupIdNotFound),
            GroupState::Empty => return Ok(OffsetDeleteScope::Any),
            _ => {}
        }
        if self.protocol_type.as_deref() != Some(CONSUMER_PROTOCOL_TYPE) {
            return Err(ResponseError::NonEmptyGroup);
        }
        let mut topics = BTreeSet::new();
        for member in self.members.values() {
            // Before the first generation settles no protocol is selected;
            // the member's preferred one says what it wants to consume.
            let metadata = match &self.protocol_name {
                Some(protocol) => member.metadata_for(protocol),
                None => member
                    .protocols
                    .first()
                    .map(|p| p.metadata.clone())
                    .unwrap_or_default(),
            };
            match subscription::subscribed_topics(&metadata) {
                Ok(subscribed) => topics.extend(subscribed),
                Err(error) => {
                    tracing::debug!(group = %self.id, member = %member.id, %error, "unreadable subscription");
                    return Err(ResponseError::NonEmptyGroup);
                }
            }
        }
        Ok(OffsetDeleteScope::ExceptTopics(topics))
    }
}
