//! The controllers over the network (feature `grpc`, tonic): the Raft
//! network between controllers, the metadata and admin services, a client
//! that finds the leader, and a runner for one controller process.
//!
//! - [`network`]: openraft's `RaftNetwork` over gRPC (service `RaftPeer` on
//!   the Raft port), one HTTP/2 channel per peer, created once and reused.
//! - [`service`]: the servers: `RaftPeer` (controllers only), `Metadata`
//!   (propose, watch the applied log, linearizable reads) and `Admin`
//!   (status, membership changes) on the metadata port.
//! - [`client`]: [`ControllerClient`] for brokers, the operator and tools:
//!   follows leader hints, proposes exactly once (sessions), watches.
//! - [`node`]: [`node::start`] runs one controller: storage, Raft, both
//!   servers, and the one-time bootstrap of the initial voters.
//!
//! The leader hint: a follower answers a leader-only call with
//! `FAILED_PRECONDITION` and the response metadata [`LEADER_ID_HEADER`] and
//! [`LEADER_ADDRESS_HEADER`] (the leader's metadata address), so a client
//! goes straight to the leader.

pub mod client;
pub mod network;
pub mod node;
pub mod service;

pub use client::{ClientError, ControllerClient, Mirror};

/// Code generated from `controller/proto/floe/controller/v1/controller.proto`
/// (committed; the `proto_drift` test regenerates and compares it).
#[allow(clippy::all, missing_docs)]
pub mod proto {
    include!("grpc/floe.controller.v1.rs");
}

/// Response metadata key: the id of the controller a follower believes leads.
pub const LEADER_ID_HEADER: &str = "floe-leader-id";
/// Response metadata key: that leader's metadata address (`host:port`).
pub const LEADER_ADDRESS_HEADER: &str = "floe-leader-address";

/// The largest gRPC message controllers accept and send: a state snapshot
/// with a million index entries is a few hundred MiB of JSON, so snapshots
/// travel in chunks of openraft's `snapshot_max_chunk_size`; this bounds
/// everything else.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;
