//! Floe's metadata controller: the replicated metadata model and the store
//! that makes it durable.
//!
//! [`model`] holds the state, the commands and the pure [`apply`] that is the
//! only way the state changes; [`store`] persists the command log and
//! snapshots for the single-node local mode (a Raft quorum takes its place in
//! a cluster, applying the same commands with the same [`apply`]).

#[cfg(feature = "grpc")]
pub mod grpc;
pub mod model;
#[cfg(feature = "raft")]
pub mod raft;
pub mod store;

pub use model::{apply, ApplyError, Command, MetadataState, Outcome, PartitionId};
pub use store::{LocalStore, StoreError, StoreOptions};
