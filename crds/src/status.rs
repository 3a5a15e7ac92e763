//! The `KafkaCluster` status: written only by the operator, only through the
//! `/status` subresource, so GitOps tools see no drift in the spec.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Condition types and the values of `status`.
pub mod condition {
    /// Every desired controller and broker is ready.
    pub const READY: &str = "Ready";
    /// A rollout, a scale or a partition reassignment is under way.
    pub const PROGRESSING: &str = "Progressing";
    /// The cluster serves with reduced capacity or safety, or cannot be reconciled.
    pub const DEGRADED: &str = "Degraded";
    /// Condition status `True`.
    pub const TRUE: &str = "True";
    /// Condition status `False`.
    pub const FALSE: &str = "False";
    /// Condition status `Unknown`.
    pub const UNKNOWN: &str = "Unknown";
}

/// What the operator last saw of the cluster.
#[derive(JsonSchema, Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct KafkaClusterStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Broker pods that exist (the `/scale` subresource's current replicas).
    #[serde(default)]
    pub replicas: i32,
    /// Label selector of the broker pods (for the HPA, via `/scale`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    /// `Ready`, `Progressing` and `Degraded`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// The broker pods.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub brokers: Vec<BrokerStatus>,
    /// Partitions in the cluster, as reported by the controller.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partitions: Option<i32>,
    /// The most recent partition reassignment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_reassignment: Option<ReassignmentStatus>,
}

/// One broker pod.
#[derive(JsonSchema, Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BrokerStatus {
    /// Pod name.
    pub name: String,
    /// The pod's Ready condition is true.
    pub ready: bool,
    /// Spot or on-demand placement.
    pub capacity: CapacityType,
    /// Node the pod runs on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_name: Option<String>,
}

/// Kind of node a broker is placed on.
#[derive(JsonSchema, Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum CapacityType {
    /// Regular nodes.
    #[default]
    OnDemand,
    /// Spot (preemptible) nodes.
    Spot,
}

impl CapacityType {
    /// The label value (`floe.dev/capacity`).
    pub fn as_str(self) -> &'static str {
        match self {
            CapacityType::OnDemand => "on-demand",
            CapacityType::Spot => "spot",
        }
    }
}

/// A partition reassignment the operator asked the controller for.
#[derive(JsonSchema, Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ReassignmentStatus {
    /// Why it ran.
    pub trigger: ReassignmentTrigger,
    /// How it ended.
    pub outcome: ReassignmentOutcome,
    /// Brokers added (scale-out) or drained (scale-in, roll, interruption).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub brokers: Vec<String>,
    /// Partitions moved.
    #[serde(default)]
    pub moved_partitions: i32,
    /// When it started.
    pub started_at: Time,
    /// When it finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<Time>,
    /// Details, e.g. the controller's error.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
}

/// Why a reassignment ran.
#[derive(JsonSchema, Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
pub enum ReassignmentTrigger {
    /// New brokers registered.
    ScaleOut,
    /// Brokers were drained before removal.
    ScaleIn,
    /// A broker was drained before a restart during a rollout.
    Rollout,
    /// A spot interruption notice drained a broker.
    SpotInterruption,
    /// A broker was drained before it moved between the on-demand and the
    /// spot StatefulSet (`spot.enabled` or `spot.onDemandBrokers` changed).
    PlacementChange,
}

/// How a reassignment ended.
#[derive(JsonSchema, Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
pub enum ReassignmentOutcome {
    /// Still moving partitions.
    InProgress,
    /// Every partition moved.
    Succeeded,
    /// The controller gave up; see `message`.
    Failed,
}
