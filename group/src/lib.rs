//! Floe's Kafka consumer-group coordinator: the classic group protocol (JoinGroup/SyncGroup/Heartbeat/LeaveGroup), the admin group APIs, and committed offsets made durable through an [`OffsetStore`] the broker provides.
//!
//! The broker decodes a request, calls the matching [`GroupCoordinator`]
//! handler with the request and its API version, and encodes the returned
//! response at that version. Group membership lives in memory only (clients
//! rejoin after a restart); committed offsets live in the [`OffsetStore`].
//!
//! Known limits, each a deliberate simplification:
//! - single node: this broker coordinates every group;
//! - after a restart, commits carrying a generation get ILLEGAL_GENERATION
//!   (the group is gone from memory) and the consumer rejoins, as after a
//!   Kafka coordinator failover without the group's metadata;
//! - a static member rejoining keeps its member id rather than being fenced
//!   with a fresh one;
//! - KIP-848 (ConsumerGroupHeartbeat) groups and transactional offset commits
//!   are not handled here.
//!
//! Layout: `group` is the pure state machine, `coordinator` runs one task per
//! group around it and talks to the store, `wire` maps kafka-protocol
//! messages to and from the core's types.

mod config;
mod coordinator;
mod group;
mod store;
mod subscription;
mod wire;

pub use config::{ConfigError, GroupConfig};
pub use coordinator::{ClientInfo, GroupCoordinator};
pub use store::{MemoryOffsetStore, OffsetCommitEntry, OffsetStore, OffsetStoreError};
