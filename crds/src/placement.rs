//! Where Floe pods run: zone spread, spot placement for brokers, and the
//! user's pod template overrides.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Affinity, LocalObjectReference, Toleration};
use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The well-known zone label.
pub const DEFAULT_ZONE_TOPOLOGY_KEY: &str = "topology.kubernetes.io/zone";

/// Spread controllers and brokers evenly over a topology domain (zones by
/// default), through `topologySpreadConstraints`.
#[derive(KubeSchema, Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ZoneSpreadSpec {
    /// Add the spread constraints.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Node label that names the domain.
    #[serde(default = "default_topology_key")]
    #[schemars(length(min = 1))]
    pub topology_key: String,
    /// Largest allowed difference in pod count between two domains.
    #[serde(default = "default_max_skew")]
    #[schemars(range(min = 1))]
    pub max_skew: i32,
    /// `ScheduleAnyway` (default) prefers an even spread but still schedules on
    /// clusters without zones; `DoNotSchedule` enforces it.
    #[serde(default)]
    pub when_unsatisfiable: WhenUnsatisfiable,
}

impl Default for ZoneSpreadSpec {
    fn default() -> Self {
        Self {
            enabled: true,
            topology_key: default_topology_key(),
            max_skew: default_max_skew(),
            when_unsatisfiable: WhenUnsatisfiable::default(),
        }
    }
}

fn default_true() -> bool {
    true
}

fn default_topology_key() -> String {
    DEFAULT_ZONE_TOPOLOGY_KEY.into()
}

fn default_max_skew() -> i32 {
    1
}

/// What the scheduler does when the spread cannot be met.
#[derive(JsonSchema, Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
pub enum WhenUnsatisfiable {
    /// Keep the pod pending.
    DoNotSchedule,
    /// Schedule it, preferring the least loaded domain.
    #[default]
    ScheduleAnyway,
}

impl WhenUnsatisfiable {
    /// The Kubernetes spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            WhenUnsatisfiable::DoNotSchedule => "DoNotSchedule",
            WhenUnsatisfiable::ScheduleAnyway => "ScheduleAnyway",
        }
    }
}

/// Run brokers on spot (preemptible) nodes. The first `onDemandBrokers`
/// brokers stay on regular nodes in their own StatefulSet; the rest get the
/// spot node selector and tolerations. Controllers never run on spot nodes.
#[derive(KubeSchema, Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!self.enabled || (has(self.nodeSelector) && size(self.nodeSelector) > 0)")
    .message("spot.nodeSelector is required when spot.enabled is true, e.g. karpenter.sh/capacity-type: spot or eks.amazonaws.com/capacityType: SPOT")
    .field_path(".nodeSelector"))]
pub struct SpotSpec {
    /// Place brokers beyond `onDemandBrokers` on spot nodes.
    #[serde(default)]
    pub enabled: bool,
    /// Node labels that select spot nodes.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    /// Tolerations for the spot nodes' taints.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
    /// How many brokers stay on on-demand nodes (capped at `brokers.replicas`).
    #[serde(default)]
    #[schemars(range(min = 0))]
    pub on_demand_brokers: i32,
}

/// Additions to every Floe pod (controllers and brokers). Spot placement is
/// added on top for spot brokers.
#[derive(KubeSchema, Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PodTemplateOverrides {
    /// Extra pod labels. Keys under `app.kubernetes.io/` and `floe.dev/` are the
    /// operator's.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 64))]
    #[x_kube(validation = Rule::new("self.all(k, !k.startsWith('app.kubernetes.io/') && !k.startsWith('floe.dev/'))")
        .message("podTemplate.labels must not use the app.kubernetes.io/ or floe.dev/ prefixes: the operator selects pods by them"))]
    pub labels: BTreeMap<String, String>,
    /// Extra pod annotations. Keys under `floe.dev/` are the operator's.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 64))]
    #[x_kube(validation = Rule::new("self.all(k, !k.startsWith('floe.dev/'))")
        .message("podTemplate.annotations must not use the floe.dev/ prefix: the operator sets those"))]
    pub annotations: BTreeMap<String, String>,
    /// Node labels every Floe pod requires.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    /// Tolerations for every Floe pod.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
    /// Affinity for every Floe pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,
    /// PriorityClass of every Floe pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority_class_name: Option<String>,
    /// Secrets for pulling the image.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub image_pull_secrets: Vec<LocalObjectReference>,
}
