//! The Kafka wire protocol, sans I/O: framing, the table of supported APIs
//! and versions, and record-batch handling. Message bodies are decoded and
//! encoded by the `kafka-protocol` crate (generated from Kafka's schemas).

pub mod api;
pub mod batch;
pub mod frame;
