//! Exactly-once proposals over an at-least-once network.
//!
//! A proposal whose answer was lost (a leader change, a dropped connection)
//! may have been committed anyway; a client cannot tell, so it retries. To
//! keep a retried command from being applied twice, a client numbers its
//! proposals within a session ([`SessionId`]: a random client id and a
//! sequence number, the same on every retry) and the state machine
//! remembers the answers of each session's recent proposals: a number it has
//! seen is answered from memory, not applied again.
//!
//! Many proposals of one client may be in flight at once and commit in any
//! order, so the state machine keeps a set of answers, not only the last
//! one. The client says with every proposal which answers it still waits
//! for (`floor`: every number below it was answered to the client), and
//! the state machine forgets answers below the floor. A number below the
//! floor is refused as [`ApplyError::StaleProposal`]: it can only be a
//! duplicate delivered after its answer was.
//!
//! Memory is bounded and deterministic (every replica evicts the same
//! entries, chosen by log index): at most [`MAX_SESSIONS`] clients (the least
//! recently active is dropped) and [`MAX_ANSWERS`] answers per client (the
//! oldest is dropped, and the floor raised past it, so that a late retry of
//! it is refused rather than applied again). A client silent for longer than
//! [`MAX_SESSIONS`] other clients' proposals loses its answers: its retries
//! are then applied again, so clients give up retrying long before that.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::Response;
use crate::model::{ApplyError, Command};

/// Clients remembered at most.
pub const MAX_SESSIONS: usize = 10_000;
/// Answers remembered per client at most (proposals in flight per client).
pub const MAX_ANSWERS: usize = 1_024;

/// Names one proposal of one client, the same on every retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionId {
    /// The client, random per client process.
    pub client: Uuid,
    /// This proposal's number, increasing per client.
    pub seq: u64,
    /// Every number below this one has been answered to the client.
    pub floor: u64,
}

/// The Raft log payload: a command and, for exactly-once delivery, the
/// session number it was proposed under.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Proposal {
    /// `None` for proposals made inside the controller (no retries).
    pub session: Option<SessionId>,
    pub command: Command,
}

impl From<Command> for Proposal {
    fn from(command: Command) -> Proposal {
        Proposal {
            session: None,
            command,
        }
    }
}

/// One Raft log entry's payload: proposals committed together (many
/// clients' concurrent proposals share one log write and one fsync).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Batch(pub Vec<Proposal>);

impl From<Command> for Batch {
    fn from(command: Command) -> Batch {
        Batch(vec![command.into()])
    }
}

impl From<Proposal> for Batch {
    fn from(proposal: Proposal) -> Batch {
        Batch(vec![proposal])
    }
}

impl std::fmt::Display for Batch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "batch of {}", self.0.len())
    }
}

/// What one proposal of a batch answered, and its metadata sequence number:
/// the position of its command in the applied metadata log (watchers and
/// mirrors count in these numbers, not in Raft log indexes, because one Raft
/// entry holds many commands).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Answered {
    pub seq: u64,
    pub response: Response,
}

impl std::fmt::Display for Proposal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.session {
            Some(s) => write!(f, "{:?} (client {} seq {})", self.command, s.client, s.seq),
            None => write!(f, "{:?}", self.command),
        }
    }
}

/// The answers every replica remembers, part of the replicated state (and of
/// snapshots).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Sessions {
    clients: BTreeMap<Uuid, Session>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct Session {
    floor: u64,
    /// The log index of this client's latest proposal: eviction order.
    last_index: u64,
    answers: BTreeMap<u64, Response>,
}

/// What to do with a proposal, decided before applying it.
#[derive(Debug, PartialEq)]
pub enum Admission {
    /// New: apply it, then [`Sessions::record`] the answer.
    Apply,
    /// Already applied (or refused as stale): answer this, apply nothing.
    Answered(Response),
}

impl Sessions {
    /// Number of clients remembered.
    pub fn len(&self) -> usize {
        self.clients.len()
    }

    /// Whether no client is remembered.
    pub fn is_empty(&self) -> bool {
        self.clients.is_empty()
    }

    /// Whether the proposal at `index` must be applied, and forgets the
    /// answers its client no longer waits for.
    pub fn admit(&mut self, session: &SessionId, index: u64) -> Admission {
        let entry = self.clients.entry(session.client).or_default();
        entry.last_index = index;
        if session.floor > entry.floor {
            entry.floor = session.floor;
            entry.answers = entry.answers.split_off(&session.floor);
        }
        if session.seq < entry.floor {
            return Admission::Answered(Err(ApplyError::StaleProposal {
                client: session.client,
                seq: session.seq,
                floor: entry.floor,
            }));
        }
        match entry.answers.get(&session.seq) {
            Some(answer) => Admission::Answered(answer.clone()),
            None => Admission::Apply,
        }
    }

    /// Remembers the answer of an applied proposal, evicting as the bounds
    /// require.
    pub fn record(&mut self, session: &SessionId, answer: &Response) {
        if let Some(entry) = self.clients.get_mut(&session.client) {
            entry.answers.insert(session.seq, answer.clone());
            while entry.answers.len() > MAX_ANSWERS {
                // Raising the floor past a forgotten answer makes a late
                // retry of it a refusal, never a second application.
                if let Some((seq, _)) = entry.answers.pop_first() {
                    entry.floor = entry.floor.max(seq + 1);
                }
            }
        }
        while self.clients.len() > MAX_SESSIONS {
            let oldest = self
                .clients
                .iter()
                .min_by_key(|(id, s)| (s.last_index, **id))
                .map(|(id, _)| *id);
            match oldest {
                Some(id) => self.clients.remove(&id),
                None => break,
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Outcome;

    fn id(client: Uuid, seq: u64, floor: u64) -> SessionId {
        SessionId { client, seq, floor }
    }

    #[test]
    fn a_retried_number_is_answered_from_memory() {
        let mut s = Sessions::default();
        let c = Uuid::new_v4();
        assert_eq!(s.admit(&id(c, 1, 1), 10), Admission::Apply);
        s.record(&id(c, 1, 1), &Ok(Outcome::Done));
        assert_eq!(s.admit(&id(c, 2, 1), 11), Admission::Apply);
        s.record(&id(c, 2, 1), &Ok(Outcome::Done));
        // Retry of 1, arriving after 2: same answer, not applied.
        assert_eq!(
            s.admit(&id(c, 1, 1), 12),
            Admission::Answered(Ok(Outcome::Done))
        );
    }

    #[test]
    fn answers_below_the_floor_are_forgotten_and_duplicates_refused() {
        let mut s = Sessions::default();
        let c = Uuid::new_v4();
        for seq in 1..=3 {
            assert_eq!(s.admit(&id(c, seq, 1), seq), Admission::Apply);
            s.record(&id(c, seq, 1), &Ok(Outcome::Done));
        }
        // The client got answers 1..=3: floor 4.
        assert_eq!(s.admit(&id(c, 4, 4), 4), Admission::Apply);
        s.record(&id(c, 4, 4), &Ok(Outcome::Done));
        assert_eq!(s.clients[&c].answers.len(), 1);
        match s.admit(&id(c, 2, 4), 5) {
            Admission::Answered(Err(ApplyError::StaleProposal {
                seq: 2, floor: 4, ..
            })) => {}
            other => panic!("expected a stale refusal, got {other:?}"),
        }
    }

    #[test]
    fn memory_is_bounded_by_evicting_the_least_recent_client() {
        let mut s = Sessions::default();
        let first = Uuid::new_v4();
        let mut index = 0;
        let mut propose = |s: &mut Sessions, c: Uuid| {
            index += 1;
            assert_eq!(s.admit(&id(c, 1, 0), index), Admission::Apply);
            s.record(&id(c, 1, 0), &Ok(Outcome::Done));
        };
        propose(&mut s, first);
        for _ in 0..MAX_SESSIONS {
            propose(&mut s, Uuid::new_v4());
        }
        assert_eq!(s.len(), MAX_SESSIONS);
        assert!(!s.clients.contains_key(&first));
    }

    #[test]
    fn answers_per_client_are_bounded() {
        let mut s = Sessions::default();
        let c = Uuid::new_v4();
        for seq in 0..(MAX_ANSWERS as u64 + 10) {
            assert_eq!(s.admit(&id(c, seq, 0), seq), Admission::Apply);
            s.record(&id(c, seq, 0), &Ok(Outcome::Done));
        }
        assert_eq!(s.clients[&c].answers.len(), MAX_ANSWERS);
        assert!(!s.clients[&c].answers.contains_key(&0));
        assert!(matches!(
            s.admit(&id(c, 0, 0), 10_000),
            Admission::Answered(Err(ApplyError::StaleProposal { .. }))
        ));
    }
}
