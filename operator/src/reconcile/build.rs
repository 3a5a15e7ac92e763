//! Build (pure): a [`ValidatedCluster`] → every child object, as k8s-openapi
//! types ready for server-side apply. Same input, same output, byte for byte:
//! maps are ordered and nothing depends on time or on the cluster's state, so
//! a re-apply under GitOps changes nothing.
//!
//! Children, in apply order ([`Children::in_apply_order`]): the ServiceAccount
//! and the shared ConfigMap (what pods need before they start), the headless
//! Services of controllers and brokers and the bootstrap Service, the
//! PodDisruptionBudgets (in place before any pod can be evicted), the
//! controller StatefulSet (Raft log on a PVC), then the broker StatefulSets
//! (WAL on a PVC in `volume` mode, an emptyDir in `object` mode; a second,
//! `-spot` StatefulSet when spot placement is on). Every child carries the
//! cluster's labels and a controller owner reference to the KafkaCluster.
//!
//! No Role or RoleBinding is built: Floe pods never call the Kubernetes API
//! (nothing in the data plane knows about Kubernetes), so the least privilege
//! is none — the ServiceAccount exists for cloud identity (IRSA, Pod Identity)
//! and mounts no token. The operator's own RBAC ships with its chart.
//!
//! # The pods' contract with the `floe` binary
//!
//! The binary's multi-node subcommands do not exist yet; the pods run
//! `floe controller` and `floe broker`, the documented future entrypoints, and
//! configure them the way `floe local` is configured today: one `FLOE_*`
//! environment variable per flag, plus the standard `AWS_*` variables for the
//! object store. Shared settings come from the ConfigMap through `envFrom`
//! (its hash in the pod template rolls the pods when it changes); per-pod
//! values (pod name, ordinal-derived ids, the advertised listener) and
//! credentials (`secretKeyRef`) are set on the container. Both serve
//! `/healthz`, `/readyz` and `/metrics` on port 8080 (`FLOE_HEALTH_LISTEN`).

mod broker;
mod config;
mod controller;
mod pod;
mod policy;
mod services;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Service, ServiceAccount};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::Value;

use super::validate::ValidatedCluster;
use crate::labels::{self, Component};

pub use config::config_hash;

/// Port of Raft traffic between controllers.
pub const RAFT_PORT: i32 = 9093;
/// Port of the controllers' metadata API (brokers, operator).
pub const METADATA_PORT: i32 = 9094;
/// Where controllers and brokers keep their state (the PVC or emptyDir).
pub const DATA_DIR: &str = "/var/lib/floe";
/// Where controllers and brokers find the TLS Secret's files.
pub const CONTROLLER_TLS_DIR: &str = "/etc/floe/controller-tls";

/// Every object the operator owns for one KafkaCluster.
#[derive(Clone, Debug, PartialEq)]
pub struct Children {
    /// Identity of Floe pods.
    pub service_account: ServiceAccount,
    /// Settings shared by controllers and brokers.
    pub config_map: ConfigMap,
    /// Controller headless, broker headless, bootstrap.
    pub services: Vec<Service>,
    /// Controllers (when there is a quorum to protect) and brokers.
    pub pod_disruption_budgets: Vec<PodDisruptionBudget>,
    /// The Raft quorum.
    pub controller_statefulset: StatefulSet,
    /// On-demand brokers, then spot brokers.
    pub broker_statefulsets: Vec<StatefulSet>,
}

/// A reference to one child, for applying them in order.
#[derive(Clone, Copy, Debug)]
pub enum Child<'a> {
    /// A ServiceAccount.
    ServiceAccount(&'a ServiceAccount),
    /// A ConfigMap.
    ConfigMap(&'a ConfigMap),
    /// A Service.
    Service(&'a Service),
    /// A PodDisruptionBudget.
    PodDisruptionBudget(&'a PodDisruptionBudget),
    /// A StatefulSet.
    StatefulSet(&'a StatefulSet),
}

impl Child<'_> {
    /// The object's kind.
    pub fn kind(&self) -> &'static str {
        match self {
            Child::ServiceAccount(_) => "ServiceAccount",
            Child::ConfigMap(_) => "ConfigMap",
            Child::Service(_) => "Service",
            Child::PodDisruptionBudget(_) => "PodDisruptionBudget",
            Child::StatefulSet(_) => "StatefulSet",
        }
    }

    /// The object's metadata.
    pub fn metadata(&self) -> &ObjectMeta {
        match self {
            Child::ServiceAccount(o) => &o.metadata,
            Child::ConfigMap(o) => &o.metadata,
            Child::Service(o) => &o.metadata,
            Child::PodDisruptionBudget(o) => &o.metadata,
            Child::StatefulSet(o) => &o.metadata,
        }
    }

    /// The object's name.
    pub fn name(&self) -> &str {
        self.metadata().name.as_deref().unwrap_or_default()
    }

    /// The object as a manifest (with `apiVersion` and `kind`), as it is applied.
    pub fn to_manifest(&self) -> Value {
        let value = match self {
            Child::ServiceAccount(o) => serde_json::to_value(o),
            Child::ConfigMap(o) => serde_json::to_value(o),
            Child::Service(o) => serde_json::to_value(o),
            Child::PodDisruptionBudget(o) => serde_json::to_value(o),
            Child::StatefulSet(o) => serde_json::to_value(o),
        };
        value.expect("k8s-openapi objects serialize to JSON")
    }
}

impl Children {
    /// The fixed apply order: identities and configuration before the pods
    /// that use them, disruption budgets before any pod exists, controllers
    /// before the brokers that register with them.
    pub fn in_apply_order(&self) -> Vec<Child<'_>> {
        let mut out = vec![
            Child::ServiceAccount(&self.service_account),
            Child::ConfigMap(&self.config_map),
        ];
        out.extend(self.services.iter().map(Child::Service));
        out.extend(
            self.pod_disruption_budgets
                .iter()
                .map(Child::PodDisruptionBudget),
        );
        out.push(Child::StatefulSet(&self.controller_statefulset));
        out.extend(self.broker_statefulsets.iter().map(Child::StatefulSet));
        out
    }

    /// Every child as a manifest, in apply order.
    pub fn manifests(&self) -> Vec<Value> {
        self.in_apply_order()
            .iter()
            .map(Child::to_manifest)
            .collect()
    }
}

/// Build every child of a validated cluster.
pub fn build(cluster: &ValidatedCluster) -> Children {
    let config_map = config::config_map(cluster);
    let hash = config_hash(&config_map);
    Children {
        service_account: policy::service_account(cluster),
        services: services::services(cluster),
        pod_disruption_budgets: policy::pod_disruption_budgets(cluster),
        controller_statefulset: controller::statefulset(cluster, &hash),
        broker_statefulsets: cluster
            .brokers
            .sets
            .iter()
            .map(|set| broker::statefulset(cluster, set, &hash))
            .collect(),
        config_map,
    }
}

/// Metadata of a child: name, namespace, the cluster's labels, and the
/// controller owner reference.
fn metadata(cluster: &ValidatedCluster, name: String, component: Option<Component>) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: Some(cluster.namespace.clone()),
        labels: Some(labels::object_labels(&cluster.name, component)),
        owner_references: Some(vec![cluster.owner.clone()]),
        ..ObjectMeta::default()
    }
}
