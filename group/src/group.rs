//! The classic consumer-group state machine (Empty → PreparingRebalance → CompletingRebalance → Stable, and Dead), free of I/O: callers pass the time in and park JoinGroup/SyncGroup replies in it.
//!
//! Kafka's `GroupCoordinator`/`ClassicGroup` is the reference; comments name
//! the places where Floe differs.

mod join;
mod member;
mod membership;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::config::GroupConfig;
use member::Member;
pub(crate) use member::Protocol;
pub(crate) use membership::OffsetDeleteScope;

pub(crate) type JoinReply = oneshot::Sender<JoinOutcome>;
pub(crate) type SyncReply = oneshot::Sender<SyncOutcome>;

/// The classic group states, with the names DescribeGroups and ListGroups use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum GroupState {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
    Dead,
}

impl GroupState {
    pub const ALL: [GroupState; 5] = [
        GroupState::Empty,
        GroupState::PreparingRebalance,
        GroupState::CompletingRebalance,
        GroupState::Stable,
        GroupState::Dead,
    ];

    pub fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
            GroupState::Dead => "Dead",
        }
    }

    /// Parses a ListGroups state filter; Kafka matches these case-insensitively.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|state| state.name().eq_ignore_ascii_case(name))
    }
}

/// A JoinGroup request, version differences already resolved.
#[derive(Clone, Debug)]
pub(crate) struct JoinParams {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout: Duration,
    pub rebalance_timeout: Duration,
    pub protocol_type: String,
    pub protocols: Vec<Protocol>,
    /// JoinGroup v4+: a new dynamic member must first fetch its id
    /// (MEMBER_ID_REQUIRED) so a retried join cannot add it twice.
    pub require_known_member_id: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct JoinedMember {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub metadata: Bytes,
}

/// The answer to a JoinGroup, before it is shaped for a request version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct JoinOutcome {
    pub error: Option<ResponseError>,
    pub generation_id: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub leader: String,
    pub member_id: String,
    /// Filled for the leader only: it computes everyone's assignment.
    pub members: Vec<JoinedMember>,
}

impl JoinOutcome {
    pub fn error(error: ResponseError, member_id: String) -> Self {
        Self {
            error: Some(error),
            generation_id: -1,
            protocol_type: None,
            protocol_name: None,
            leader: String::new(),
            member_id,
            members: Vec::new(),
        }
    }
}

#[derive(Clone, Debug)]
pub(crate) struct SyncParams {
    pub member: MemberRef,
    pub generation: i32,
    /// SyncGroup v5+: must match the group's, if given.
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    /// Sent by the leader only.
    pub assignments: Vec<(String, Bytes)>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SyncOutcome {
    pub error: Option<ResponseError>,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub assignment: Bytes,
}

impl SyncOutcome {
    pub fn error(error: ResponseError) -> Self {
        Self {
            error: Some(error),
            protocol_type: None,
            protocol_name: None,
            assignment: Bytes::new(),
        }
    }
}

/// How a request names a member: its id and, for static members, its
/// `group.instance.id`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct MemberRef {
    pub member_id: String,
    pub instance_id: Option<String>,
}

/// What DescribeGroups shows of a group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct GroupSummary {
    pub state: GroupState,
    pub protocol_type: String,
    /// The selected protocol while Stable, else "" (as Kafka reports it).
    pub protocol: String,
    pub members: Vec<MemberSummary>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct MemberSummary {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub metadata: Bytes,
    pub assignment: Bytes,
}

/// When the pending rebalance completes.
#[derive(Clone, Copy, Debug)]
enum RebalanceTimer {
    /// The first rebalance of an Empty group: completes only when the delay
    /// passes without a new member, and never early, so consumers started
    /// together land in one generation.
    Initial {
        deadline: Instant,
        remaining: Duration,
    },
    /// Completes when every member has rejoined, or at the deadline.
    Regular { deadline: Instant },
}

impl RebalanceTimer {
    fn deadline(self) -> Instant {
        match self {
            RebalanceTimer::Initial { deadline, .. } | RebalanceTimer::Regular { deadline } => {
                deadline
            }
        }
    }
}

/// One classic group's membership, in memory only: after a restart clients
/// simply rejoin.
#[derive(Debug)]
pub(crate) struct Group {
    id: String,
    config: GroupConfig,
    state: GroupState,
    generation: i32,
    protocol_type: Option<String>,
    protocol_name: Option<String>,
    leader: Option<String>,
    members: BTreeMap<String, Member>,
    /// Ids handed out with MEMBER_ID_REQUIRED, until the member rejoins with
    /// it or this deadline passes. A rebalance waits for them.
    pending_members: HashMap<String, Instant>,
    /// `group.instance.id` → member id.
    static_members: HashMap<String, String>,
    rebalance: Option<RebalanceTimer>,
    /// A member joined during the initial delay, which earns another delay.
    new_member_added: bool,
    /// Members answered by the last rebalance that have not sent SyncGroup;
    /// they are removed at `sync_deadline` so a silent leader cannot stall
    /// the group.
    pending_sync: HashSet<String>,
    sync_deadline: Option<Instant>,
}

/// Delivers a parked reply. The requester may have gone (its client
/// disconnected), which needs no handling: the member's timers deal with it.
fn answer<T>(reply: oneshot::Sender<T>, value: T) {
    let _ = reply.send(value);
}

impl Group {
    pub fn new(id: String, config: GroupConfig) -> Self {
        Self {
            id,
            config,
            state: GroupState::Empty,
            generation: 0,
            protocol_type: None,
            protocol_name: None,
            leader: None,
            members: BTreeMap::new(),
            pending_members: HashMap::new(),
            static_members: HashMap::new(),
            rebalance: None,
            new_member_added: false,
            pending_sync: HashSet::new(),
            sync_deadline: None,
        }
    }

    #[cfg(test)]
    pub fn state(&self) -> GroupState {
        self.state
    }

    /// Empty with nobody about to join: safe to forget, since committed
    /// offsets live in the offset store.
    pub fn is_idle(&self) -> bool {
        self.state == GroupState::Empty
            && self.members.is_empty()
            && self.pending_members.is_empty()
    }

    pub fn summary(&self) -> GroupSummary {
        let stable = self.state == GroupState::Stable;
        let protocol = if stable {
            self.protocol_name.clone().unwrap_or_default()
        } else {
            String::new()
        };
        let members = self
            .members
            .values()
            .map(|m| MemberSummary {
                member_id: m.id.clone(),
                instance_id: m.instance_id.clone(),
                client_id: m.client_id.clone(),
                client_host: m.client_host.clone(),
                // Metadata and assignment only mean something once the
                // generation is settled.
                metadata: if stable {
                    m.metadata_for(&protocol)
                } else {
                    Bytes::new()
                },
                assignment: if stable {
                    m.assignment.clone()
                } else {
                    Bytes::new()
                },
            })
            .collect();
        GroupSummary {
            state: self.state,
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            protocol,
            members,
        }
    }

    /// The earliest instant at which [`Group::tick`] has something to do.
    pub fn next_deadline(&self) -> Option<Instant> {
        let members = self
            .members
            .values()
            .filter_map(|m| m.expires_at(self.config.new_member_join_timeout));
        let pending = self.pending_members.values().copied();
        let rebalance = self.rebalance.map(RebalanceTimer::deadline);
        members
            .chain(pending)
            .chain(rebalance)
            .chain(self.sync_deadline)
            .min()
    }

    /// Fires every timer due at `now`. Each fired timer is cleared or moved
    /// past `now`, so the caller's sleep loop cannot spin.
    pub fn tick(&mut self, now: Instant) {
        if let Some(timer) = self.rebalance.filter(|t| t.deadline() <= now) {
            match timer {
                RebalanceTimer::Initial { remaining, .. }
                    if self.new_member_added && !remaining.is_zero() =>
                {
                    self.new_member_added = false;
                    let delay = self.config.initial_rebalance_delay.min(remaining);
                    self.rebalance = Some(RebalanceTimer::Initial {
                        deadline: now + delay,
                        remaining: remaining - delay,
                    });
                }
                _ => self.complete_join(now),
            }
        }

        let expired: Vec<String> = self
            .members
            .values()
            .filter(|m| {
                m.expires_at(self.config.new_member_join_timeout)
                    .is_some_and(|at| at <= now)
            })
            .map(|m| m.id.clone())
            .collect();
        for id in expired {
            tracing::info!(group = %self.id, member = %id, "member session expired");
            self.remove_member_and_update(&id, now);
        }

        let before = self.pending_members.len();
        self.pending_members.retain(|_, deadline| *deadline > now);
        if self.pending_members.len() != before {
            self.try_complete_join(now);
        }

        if self.sync_deadline.is_some_and(|at| at <= now) {
            self.sync_deadline = None;
            let silent: Vec<String> = self.pending_sync.drain().collect();
            for id in silent {
                tracing::info!(group = %self.id, member = %id, "member never sent SyncGroup");
                self.remove_member_and_update(&id, now);
            }
        }
    }

    fn is_leader(&self, member_id: &str) -> bool {
        self.leader.as_deref() == Some(member_id)
    }

    /// The longest rebalance timeout among the members: the rebalance waits
    /// that long for everyone to rejoin.
    fn rebalance_timeout(&self) -> Duration {
        self.members
            .values()
            .map(|m| m.rebalance_timeout)
            .max()
            .unwrap_or(self.config.min_session_timeout)
    }

    fn maybe_prepare_rebalance(&mut self, now: Instant) {
        if matches!(
            self.state,
            GroupState::Empty | GroupState::Stable | GroupState::CompletingRebalance
        ) {
            self.prepare_rebalance(now);
        }
    }

    fn prepare_rebalance(&mut self, now: Instant) {
        if self.state == GroupState::CompletingRebalance {
            // Assignments of the generation being abandoned must not be handed
            // out; parked followers rejoin instead.
            for member in self.members.values_mut() {
                member.assignment = Bytes::new();
                if let Some(reply) = member.awaiting_sync.take() {
                    answer(
                        reply,
                        SyncOutcome::error(ResponseError::RebalanceInProgress),
                    );
                    // It was alive, waiting on us; its session restarts now.
                    member.last_heartbeat = now;
                }
            }
        }
        self.pending_sync.clear();
        self.sync_deadline = None;
        let timeout = self.rebalance_timeout();
        let delay = self.config.initial_rebalance_delay;
        self.rebalance = Some(if self.state == GroupState::Empty && !delay.is_zero() {
            RebalanceTimer::Initial {
                deadline: now + delay,
                remaining: timeout.saturating_sub(delay),
            }
        } else {
            RebalanceTimer::Regular {
                deadline: now + timeout,
            }
        });
        self.new_member_added = false;
        tracing::debug!(group = %self.id, from = self.state.name(), "preparing rebalance");
        self.state = GroupState::PreparingRebalance;
        // Nobody left to wait for (the last member just left): finish now.
        self.try_complete_join(now);
    }

    fn all_members_joined(&self) -> bool {
        self.pending_members.is_empty() && self.members.values().all(|m| m.awaiting_join.is_some())
    }

    fn try_complete_join(&mut self, now: Instant) {
        if self.state == GroupState::PreparingRebalance
            && matches!(self.rebalance, Some(RebalanceTimer::Regular { .. }))
            && self.all_members_joined()
        {
            self.complete_join(now);
        }
    }

    /// Ends the join phase: drops members that did not rejoin, starts the next
    /// generation and answers every parked JoinGroup.
    fn complete_join(&mut self, now: Instant) {
        self.rebalance = None;
        let absent: Vec<String> = self
            .members
            .values()
            .filter(|m| m.awaiting_join.is_none())
            .map(|m| m.id.clone())
            .collect();
        for id in absent {
            tracing::info!(group = %self.id, member = %id, "member did not rejoin in time");
            self.remove_member(&id);
        }
        self.generation += 1;
        if self.members.is_empty() {
            self.protocol_name = None;
            self.state = GroupState::Empty;
            tracing::info!(group = %self.id, generation = self.generation, "group is empty");
            return;
        }
        self.protocol_name = member::select_protocol(&self.members);
        if self
            .leader
            .as_ref()
            .is_none_or(|l| !self.members.contains_key(l))
        {
            self.leader = self.members.keys().next().cloned();
        }
        self.state = GroupState::CompletingRebalance;
        self.pending_sync = self.members.keys().cloned().collect();
        self.sync_deadline = Some(now + self.rebalance_timeout());
        tracing::info!(
            group = %self.id,
            generation = self.generation,
            members = self.members.len(),
            protocol = self.protocol_name.as_deref().unwrap_or(""),
            "rebalance completed"
        );

        let leader_view = self.member_list();
        let ids: Vec<String> = self.members.keys().cloned().collect();
        for id in ids {
            let outcome = self.current_join_outcome(&id, &leader_view);
            if let Some(member) = self.members.get_mut(&id) {
                member.is_new = false;
                member.last_heartbeat = now;
                if let Some(reply) = member.awaiting_join.take() {
                    answer(reply, outcome);
                }
            }
        }
    }

    /// The members with their metadata for the selected protocol, as the
    /// leader receives them.
    fn member_list(&self) -> Vec<JoinedMember> {
        let protocol = self.protocol_name.clone().unwrap_or_default();
        self.members
            .values()
            .map(|m| JoinedMember {
                member_id: m.id.clone(),
                instance_id: m.instance_id.clone(),
                metadata: m.metadata_for(&protocol),
            })
            .collect()
    }

    /// The current generation as seen by `member_id`.
    fn current_join_outcome(&self, member_id: &str, leader_view: &[JoinedMember]) -> JoinOutcome {
        JoinOutcome {
            error: None,
            generation_id: self.generation,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol_name.clone(),
            leader: self.leader.clone().unwrap_or_default(),
            member_id: member_id.to_owned(),
            members: if self.is_leader(member_id) {
                leader_view.to_vec()
            } else {
                Vec::new()
            },
        }
    }

    /// Removes a member without touching the group state. Parked replies are
    /// answered so no requester waits forever.
    fn remove_member(&mut self, member_id: &str) {
        let Some(member) = self.members.remove(member_id) else {
            return;
        };
        if let Some(reply) = member.awaiting_join {
            answer(
                reply,
                JoinOutcome::error(ResponseError::UnknownMemberId, member.id.clone()),
            );
        }
        if let Some(reply) = member.awaiting_sync {
            answer(reply, SyncOutcome::error(ResponseError::UnknownMemberId));
        }
        if let Some(instance) = &member.instance_id {
            if self.static_members.get(instance) == Some(&member.id) {
                self.static_members.remove(instance);
            }
        }
        self.pending_sync.remove(member_id);
        if self.is_leader(member_id) {
            self.leader = self.members.keys().next().cloned();
        }
    }

    /// Removes a member and lets the others know: a settled group rebalances,
    /// a rebalancing one may now have everyone it waits for.
    fn remove_member_and_update(&mut self, member_id: &str, now: Instant) {
        self.remove_member(member_id);
        match self.state {
            GroupState::Stable | GroupState::CompletingRebalance => {
                self.maybe_prepare_rebalance(now)
            }
            GroupState::PreparingRebalance => self.try_complete_join(now),
            GroupState::Empty | GroupState::Dead => {}
        }
    }
}
