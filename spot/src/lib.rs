//! Floe's interruption watchers: they read interruption signals for the
//! machines brokers run on — Kubernetes node taints, cordons and deletions,
//! the EC2 API (feature `ec2`), the instance metadata service — and turn them
//! into drain requests for exactly the brokers on doomed nodes, most urgent
//! first, never draining more serving brokers than the disruption budget
//! allows.
//!
//! - [`signal`]: what a signal is (kind, urgency, deadline);
//! - [`node`]: signals from Node objects, and node ↔ EC2 instance;
//! - [`plan`]: doomed nodes → broker pods → a drain plan within the budget;
//! - [`imds`]: the instance metadata service of the local node;
//! - `ec2`: the EC2 API (feature `ec2`);
//! - [`watcher`]: merging sources into new-or-escalated notices;
//! - [`respond`]: the cluster view, and drain calls on a [`respond::DrainSink`].
//!
//! See docs/spot.md.

#[cfg(feature = "ec2")]
pub mod ec2;
pub mod imds;
pub mod node;
pub mod plan;
pub mod respond;
pub mod signal;
pub mod watcher;

pub use plan::{BrokerId, Budget, DrainPlan};
pub use respond::{ClusterView, DrainError, DrainSink, NodeSource, Responder};
pub use signal::{Origin, Signal, SignalKind, Urgency};
pub use watcher::{Notice, Source, Target, Watcher};
