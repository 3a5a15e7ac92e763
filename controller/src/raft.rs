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
//!   fault injection (isolate a node), for tests and benchmarks.
//!
//! Blocking file I/O runs on `tokio::task::spawn_blocking`, never on the
//! reactor. Both stores keep what they serve in memory (the log after the
//! last purge, the whole state): a metadata log is compacted by snapshots,
//! so it stays small.
//!
//! Not here yet (next slices of issue 4):
//! - a tonic gRPC network: one channel per peer, created once and reused,
//!   carrying `append_entries`/`vote`/`install_snapshot` between
//!   controllers, peer-only and separate from the client-facing service;
//! - the broker- and operator-facing service: proposals go to the leader,
//!   and a follower answers with a leader hint (id and address from the
//!   metrics' `current_leader` and membership) so clients do not scan; reads
//!   are linearizable (`ensure_linearizable`) or explicitly stale;
//! - broker leases (registration, renewal, fencing a lapsed broker before
//!   its partitions are reassigned), which need commands in the model and a
//!   leader-side clock;
//! - membership changes (`add_learner` then `change_membership`) to add and
//!   remove voters without downtime, and the one-voter local mode.

mod files;
mod log_store;
mod router;
mod state_machine;

use std::io::Cursor;

use openraft::BasicNode;

use crate::model::{ApplyError, Command, Outcome};

pub use log_store::LogStore;
pub use router::{Router, RouterConnection, RouterNetwork};
pub use state_machine::StateMachine;

/// What applying one committed entry answers the proposer: the pure
/// `apply`'s own result (a refusal is deterministic, so it is a normal
/// answer, not a Raft failure). Blank and membership entries answer `Done`.
pub type Response = Result<Outcome, ApplyError>;

openraft::declare_raft_types!(
    /// Floe's openraft types: `u64` node ids, nodes named by their address,
    /// [`Command`]s as log payload.
    pub TypeConfig:
        D = Command,
        R = Response,
        NodeId = u64,
        Node = BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

/// A running controller replica.
pub type Raft = openraft::Raft<TypeConfig>;
/// The node id of a controller.
pub type NodeId = u64;
/// openraft's storage error for [`TypeConfig`].
pub type StorageError = openraft::StorageError<NodeId>;

/// Opens the log store and state machine in `dir` (created if needed):
/// the pair that `openraft::Raft::new` takes.
pub async fn open_storage(dir: &std::path::Path) -> Result<(LogStore, StateMachine), StorageError> {
    let log = LogStore::open(dir.to_owned()).await?;
    let sm = StateMachine::open(dir.to_owned()).await?;
    Ok((log, sm))
}
