//! Disruption budgets and the pods' ServiceAccount.

use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::metadata;
use crate::labels::{self, Component};
use crate::names;
use crate::reconcile::validate::ValidatedCluster;

fn budget(
    cluster: &ValidatedCluster,
    name: String,
    component: Component,
    min_available: Option<i32>,
    max_unavailable: Option<i32>,
) -> PodDisruptionBudget {
    PodDisruptionBudget {
        metadata: metadata(cluster, name, Some(component)),
        spec: Some(PodDisruptionBudgetSpec {
            selector: Some(LabelSelector {
                match_labels: Some(labels::selector(&cluster.name, component)),
                ..LabelSelector::default()
            }),
            min_available: min_available.map(IntOrString::Int),
            max_unavailable: max_unavailable.map(IntOrString::Int),
            // A crash-looping pod must not block node drains forever.
            unhealthy_pod_eviction_policy: Some("AlwaysAllow".to_string()),
        }),
        ..PodDisruptionBudget::default()
    }
}

/// The controllers keep a Raft majority through voluntary disruptions (a
/// single development controller gets no budget: it would block every node
/// drain). Brokers go one at a time: each eviction moves its partitions, and
/// the broker drains itself on SIGTERM.
pub(super) fn pod_disruption_budgets(cluster: &ValidatedCluster) -> Vec<PodDisruptionBudget> {
    let c = &cluster.name;
    let mut out = Vec::new();
    if cluster.controllers.replicas >= 3 {
        out.push(budget(
            cluster,
            names::controller_pdb(c),
            Component::Controller,
            Some(cluster.controllers.majority()),
            None,
        ));
    }
    out.push(budget(
        cluster,
        names::broker_pdb(c),
        Component::Broker,
        None,
        Some(1),
    ));
    out
}

/// Identity for cloud credentials only; no API token is mounted.
pub(super) fn service_account(cluster: &ValidatedCluster) -> ServiceAccount {
    let mut meta = metadata(cluster, names::service_account(&cluster.name), None);
    if !cluster.service_account_annotations.is_empty() {
        meta.annotations = Some(cluster.service_account_annotations.clone());
    }
    ServiceAccount {
        metadata: meta,
        automount_service_account_token: Some(false),
        ..ServiceAccount::default()
    }
}
