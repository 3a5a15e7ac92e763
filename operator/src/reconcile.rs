//! One reconcile of a `KafkaCluster`, stage by stage: what the spec points
//! at ([`dereference`], I/O), whether it is acceptable ([`validate`], pure),
//! the child objects it implies ([`build`], pure), the next safe placement and
//! scaling step ([`placement`], [`scaling`], pure), applying the children and sweeping orphans
//! ([`apply`], I/O), and the status the observed children imply ([`status`],
//! pure). [`crate::controller`] runs them in that order.

pub mod apply;
pub mod build;
pub mod dereference;
pub mod placement;
pub mod scaling;
pub mod status;
pub mod validate;
