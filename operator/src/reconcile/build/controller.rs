//! The controllers' StatefulSet: the Raft quorum, each voter with its log on
//! a PVC. Pods start in parallel — a voter only turns ready once a quorum
//! exists, so ordered start-up would deadlock.

use floe_crds::ReclaimPolicy;
use k8s_openapi::api::apps::v1::{
    StatefulSet, StatefulSetPersistentVolumeClaimRetentionPolicy, StatefulSetSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use super::pod::{self, ContainerParts, PodParts};
use super::{metadata, METADATA_PORT, RAFT_PORT};
use crate::labels::{self, Component};
use crate::names;
use crate::reconcile::validate::{ValidatedCluster, POD_NAME_ENV};

pub(super) fn statefulset(cluster: &ValidatedCluster, config_hash: &str) -> StatefulSet {
    let c = &cluster.name;
    let container = pod::container(
        cluster,
        ContainerParts {
            name: names::CONTROLLER_CONTAINER,
            subcommand: "controller",
            env: vec![
                pod::field_env(POD_NAME_ENV, "metadata.name"),
                // The Raft node id is the pod's ordinal (see FLOE_RAFT_PEERS).
                pod::ordinal_env("FLOE_NODE_ID"),
                pod::value_env("FLOE_RAFT_LISTEN", &format!("0.0.0.0:{RAFT_PORT}")),
                pod::value_env("FLOE_METADATA_LISTEN", &format!("0.0.0.0:{METADATA_PORT}")),
                pod::value_env(
                    "FLOE_REBALANCE_INTERVAL_S",
                    &cluster.controllers.rebalance.interval_seconds.to_string(),
                ),
                pod::value_env(
                    "FLOE_REBALANCE_COOLDOWN_S",
                    &cluster.controllers.rebalance.cooldown_seconds.to_string(),
                ),
            ],
            ports: vec![
                pod::container_port(names::RAFT_PORT, RAFT_PORT),
                pod::container_port(names::METADATA_PORT, METADATA_PORT),
            ],
            resources: cluster.controllers.resources.clone(),
            data_volume: names::RAFT_LOG_VOLUME,
        },
    );
    let template = pod::template(
        cluster,
        PodParts {
            component: Component::Controller,
            capacity: None,
            container,
            volumes: Vec::new(),
            node_selector: Default::default(),
            tolerations: Vec::new(),
            termination_grace_period_seconds: 30,
        },
        config_hash,
    );
    StatefulSet {
        metadata: metadata(
            cluster,
            names::controller_statefulset(c),
            Some(Component::Controller),
        ),
        spec: StatefulSetSpec {
            replicas: Some(cluster.controllers.replicas),
            service_name: Some(names::controller_headless_service(c)),
            selector: LabelSelector {
                match_labels: Some(labels::selector(c, Component::Controller)),
                ..LabelSelector::default()
            },
            pod_management_policy: Some("Parallel".to_string()),
            persistent_volume_claim_retention_policy: Some(
                StatefulSetPersistentVolumeClaimRetentionPolicy {
                    when_deleted: Some(retention(cluster.reclaim_policy).to_string()),
                    when_scaled: Some("Retain".to_string()),
                },
            ),
            volume_claim_templates: Some(vec![pod::claim_template(
                cluster,
                names::RAFT_LOG_VOLUME,
                Component::Controller,
                &cluster.controllers.storage,
            )]),
            template,
            ..StatefulSetSpec::default()
        },
        ..StatefulSet::default()
    }
}

/// `whenDeleted` of a StatefulSet's claims under a reclaim policy.
pub(super) fn retention(policy: ReclaimPolicy) -> &'static str {
    match policy {
        ReclaimPolicy::Retain => "Retain",
        ReclaimPolicy::Delete => "Delete",
    }
}
