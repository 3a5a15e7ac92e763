//! The Raft quorum that replicates the metadata log (openraft 0.9, feature
//! `raft`; see `docs/adr/0005-openraft-version.md`).
//!
//! Contract: every controller applies the same committed commands, in Raft
//! log order, with the pure [`crate::apply`] (the Raft log index is the
//! command index), so every replica reaches the same
//! [`MetadataState`](crate::MetadataState). The
//! pieces are separate, as openraft's examples keep them:
//! - [`LogStore`]: the durable Raft log and vote, CRC-framed on local disk;
//!   an append is fsynced before openraft hears it is flushed;
//! - [`StateMachine`]: applies committed entries and builds/installs
//!   snapshots (JSON of the state, its last applied log id and membership);
//! - [`Router`]: an in-process network between nodes of one process, with
//!   fault injection (isolate a node), for tests and benchmarks;
//! - [`sessions`]: exactly-once proposals: a client numbers its proposals,
//!   and a retried number is answered from the state machine's memory
//!   instead of being applied twice.
//!
//! With feature `grpc`, [`crate::grpc`] runs this over the network.
//!
//! Blocking file I/O runs on `tokio::task::spawn_blocking`, never on the
//! reactor. Both stores keep what they serve in memory (the log after the
//! last purge, the whole state): a metadata log is compacted by snapshots,
//! so it stays small.
//!
//! Not here yet: broker leases (registration, renewal, fencing a lapsed
//! broker before its partitions are reassigned), which need commands in the
//! model and a leader-side clock.

mod feed;
mod files;
mod log_store;
mod router;
pub mod sessions;
mod state_machine;

use std::io::Cursor;

use serde::{Deserialize, Serialize};

use crate::model::{ApplyError, Outcome};

pub use feed::{FeedEvent, FeedRead, FEED_CAPACITY};
pub use log_store::LogStore;
pub use router::{Router, RouterConnection, RouterNetwork};
pub use sessions::{Answered, Batch, Proposal, SessionId};
pub use state_machine::{StateMachine, ENCODING_KEPT};

/// What applying one committed entry answers the proposer: the pure
/// `apply`'s own result (a refusal is deterministic, so it is a normal
/// answer, not a Raft failure). Blank and membership entries answer `Done`.
pub type Response = Result<Outcome, ApplyError>;

/// A controller as the Raft membership names it: where its peers reach it
/// (Raft traffic) and where brokers and tools reach it (the metadata and
/// admin services, and the leader hint that points clients there).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControllerNode {
    /// `host:port` of the Raft peer service.
    pub raft_addr: String,
    /// `host:port` of the metadata and admin services.
    pub api_addr: String,
}

impl ControllerNode {
    /// A node reached at these two addresses.
    pub fn new(raft_addr: impl Into<String>, api_addr: impl Into<String>) -> ControllerNode {
        ControllerNode {
            raft_addr: raft_addr.into(),
            api_addr: api_addr.into(),
        }
    }
}

impl std::fmt::Display for ControllerNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "raft {} / api {}", self.raft_addr, self.api_addr)
    }
}

openraft::declare_raft_types!(
    /// Floe's openraft types: `u64` node ids, nodes named by their two
    /// addresses; each log entry a [`Batch`] of [`Proposal`]s (a
    /// [`Command`](crate::model::Command) and its session number), answered
    /// with one [`Answered`] per proposal.
    pub TypeConfig:
        D = Batch,
        R = Vec<Answered>,
        NodeId = u64,
        Node = ControllerNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

/// A running controller replica.
pub type Raft = openraft::Raft<TypeConfig>;
/// The node id of a controller.
pub type NodeId = u64;
/// What a controller reports about itself (term, leader, log, membership).
pub type RaftMetrics = openraft::RaftMetrics<NodeId, ControllerNode>;
/// openraft's storage error for [`TypeConfig`].
pub type StorageError = openraft::StorageError<NodeId>;

/// Opens the log store and state machine in `dir` (created if needed):
/// the pair that `openraft::Raft::new` takes.
pub async fn open_storage(dir: &std::path::Path) -> Result<(LogStore, StateMachine), StorageError> {
    let log = LogStore::open(dir.to_owned()).await?;
    let sm = StateMachine::open(dir.to_owned()).await?;
    Ok((log, sm))
}
