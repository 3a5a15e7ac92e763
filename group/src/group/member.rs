//! One member of a classic group: what it supports, what it was assigned, which reply it is waiting for, and when it expires.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

use super::{JoinParams, JoinReply, SyncReply};

/// One (name, metadata) entry of a member's JoinGroup protocols, in the
/// member's order of preference.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Protocol {
    pub name: String,
    pub metadata: Bytes,
}

#[derive(Debug)]
pub(super) struct Member {
    pub id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout: Duration,
    pub rebalance_timeout: Duration,
    pub protocols: Vec<Protocol>,
    pub assignment: Bytes,
    /// The parked JoinGroup reply while the member waits for the rebalance.
    pub awaiting_join: Option<JoinReply>,
    /// The parked SyncGroup reply while the member waits for the leader.
    pub awaiting_sync: Option<SyncReply>,
    /// Joined but never answered: it has no generation yet, so it cannot
    /// heartbeat, and only the new-member timeout bounds its stay.
    pub is_new: bool,
    pub last_heartbeat: Instant,
}

impl Member {
    pub fn new(params: JoinParams, reply: JoinReply, now: Instant) -> Self {
        Self {
            id: params.member_id,
            instance_id: params.instance_id,
            client_id: params.client_id,
            client_host: params.client_host,
            session_timeout: params.session_timeout,
            rebalance_timeout: params.rebalance_timeout,
            protocols: params.protocols,
            assignment: Bytes::new(),
            awaiting_join: Some(reply),
            awaiting_sync: None,
            is_new: true,
            last_heartbeat: now,
        }
    }

    /// Takes the rejoin's timeouts and protocols; the member may have been
    /// reconfigured or resubscribed.
    pub fn update(&mut self, params: JoinParams) {
        self.client_id = params.client_id;
        self.client_host = params.client_host;
        self.session_timeout = params.session_timeout;
        self.rebalance_timeout = params.rebalance_timeout;
        self.protocols = params.protocols;
    }

    pub fn supports(&self, protocol: &str) -> bool {
        self.protocols.iter().any(|p| p.name == protocol)
    }

    /// Whether a rejoin carries exactly what the member sent before; if so
    /// nothing changed and no rebalance is needed.
    pub fn matches(&self, protocols: &[Protocol]) -> bool {
        self.protocols == protocols
    }

    pub fn metadata_for(&self, protocol: &str) -> Bytes {
        self.protocols
            .iter()
            .find(|p| p.name == protocol)
            .map(|p| p.metadata.clone())
            .unwrap_or_default()
    }

    /// When the coordinator gives up on this member, if it is not parked.
    ///
    /// A member parked in JoinGroup or SyncGroup cannot heartbeat (its
    /// connection is waiting on us), so the rebalance and sync deadlines bound
    /// it instead; only a brand-new member that keeps a JoinGroup open forever
    /// needs its own limit.
    pub fn expires_at(&self, new_member_join_timeout: Duration) -> Option<Instant> {
        if self.awaiting_join.is_some() {
            self.is_new
                .then(|| self.last_heartbeat + new_member_join_timeout)
        } else if self.awaiting_sync.is_some() {
            None
        } else {
            Some(self.last_heartbeat + self.session_timeout)
        }
    }
}

/// Picks the protocol for the next generation as Kafka does: among the
/// protocols every member supports, each member votes for its most preferred
/// one and the most votes win; ties go to the first member's preference.
pub(super) fn select_protocol(members: &BTreeMap<String, Member>) -> Option<String> {
    let first = members.values().next()?;
    let candidates: Vec<&str> = first
        .protocols
        .iter()
        .map(|p| p.name.as_str())
        .filter(|name| members.values().all(|m| m.supports(name)))
        .collect();
    let mut votes: HashMap<&str, usize> = HashMap::new();
    for member in members.values() {
        let choice = member
            .protocols
            .iter()
            .map(|p| p.name.as_str())
            .find(|name| candidates.contains(name));
        if let Some(choice) = choice {
            *votes.entry(choice).or_default() += 1;
        }
    }
    let mut best: Option<(&str, usize)> = None;
    for candidate in &candidates {
        let count = votes.get(candidate).copied().unwrap_or(0);
        if best.is_none_or(|(_, most)| count > most) {
            best = Some((candidate, count));
        }
    }
    best.map(|(name, _)| name.to_owned())
}
