//! The pure stages of one reconcile of a `KafkaCluster`: what the spec points
//! at ([`dereference`]), whether it is acceptable ([`validate`]), the child
//! objects it implies ([`build`]) and the status the observed children imply
//! ([`status`]). None of them performs I/O.

pub mod build;
pub mod dereference;
pub mod status;
pub mod validate;
