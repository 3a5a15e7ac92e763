//! The controllers over the network (feature `grpc`, tonic): the Raft
//! network between controllers, the metadata and admin services, a client
//! that finds the leader, and a runner for one controller process.
//!
//! - [`network`]: openraft's `RaftNetwork` over gRPC (service `RaftPeer` on
//!   the Raft port), one HTTP/2 channel per peer, created once and reused.
//! - [`service`]: the servers: `RaftPeer` (controllers only), `Metadata`
//!   (propose, watch the applied log, linearizable reads) and `Admin`
//!   (status, membership changes, typed topic and placement changes, move
//!   progress) on the metadata port.
//! - [`client`]: [`ControllerClient`] for brokers, the operator and tools:
//!   follows leader hints, proposes exactly once (sessions), watches.
//! - [`node`]: [`node::start`] runs one controller: storage, Raft, both
//!   servers, and the one-time bootstrap of the initial voters.
//! - [`tls`]: mutual TLS on both ports (optional; plaintext without it).
//! - [`access`]: which certificate names may speak Raft.
//!
//! The leader hint: a follower answers a leader-only call with
//! `FAILED_PRECONDITION` and the response metadata [`LEADER_ID_HEADER`] and
//! [`LEADER_ADDRESS_HEADER`] (the leader's metadata address), so a client
//! goes straight to the leader.

pub mod access;
pub mod client;
pub mod network;
pub mod node;
pub mod service;
pub mod tls;

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

/// Response metadata key on a typed `Admin` call the metadata model refused:
/// the refusal's kind (`CannotDrain`, `UnknownTopic`, ...). It tells a
/// refusal apart from a follower's `FAILED_PRECONDITION`: retrying a refusal
/// elsewhere gets the same answer.
pub const REFUSED_HEADER: &str = "floe-refused";

/// The largest gRPC request a controller accepts (and clients send): a
/// proposal or a Raft message. Raft snapshots travel in chunks of openraft's
/// `snapshot_max_chunk_size`, and batches are cut at 1 MiB, so this only
/// bounds what a broken or hostile peer can make a controller buffer.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

/// The largest gRPC response: a whole-state snapshot for a watcher or a
/// linearizable read is one message (170 MB of JSON at 100,000 partitions
/// and a million index entries, see docs/benchmarks.md).
pub const MAX_STATE_BYTES: usize = 1024 * 1024 * 1024;
