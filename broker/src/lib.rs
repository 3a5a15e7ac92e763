//! Floe's broker: a Kafka wire-protocol server over a storage engine that
//! keeps data only in a small write-ahead log and in object storage.

pub mod admin_cli;
#[allow(unsafe_code)] // see ADR 0003
pub mod alloc;
pub mod broker;
pub mod broker_node;
pub mod cluster;
pub mod controller_node;
pub mod gc;
pub mod handler;
pub mod leadership;
pub mod local;
pub mod metrics;
pub mod protocol;
#[allow(unsafe_code)] // see ADR 0017
pub mod sched;
pub mod server;
pub mod storage;
