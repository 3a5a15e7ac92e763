//! Status (pure): the outcome of validation and the observed StatefulSets and
//! broker pods → the `KafkaCluster` status, with `Ready`, `Progressing` and
//! `Degraded` conditions stamped with `observedGeneration`.
//!
//! A condition's `lastTransitionTime` moves only when its `status` changes, so
//! re-running a reconcile over an unchanged cluster yields an identical
//! status (no flapping, no status writes for nothing). A cluster that has
//! never been ready is `Progressing/Creating`, not `Degraded`: missing quorum
//! during the first start is expected, losing it later is not.

use floe_crds::condition::{DEGRADED, FALSE, PROGRESSING, READY, TRUE};
use floe_crds::{
    BrokerStatus, CapacityType, KafkaCluster, KafkaClusterStatus, ReassignmentOutcome,
    ReassignmentStatus,
};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use super::validate::{InvalidSpec, ValidatedCluster};
use crate::labels::{self, Component};

/// What the reconciler observed after applying the children.
#[derive(Clone, Copy, Debug, Default)]
pub struct Observed<'a> {
    /// The controllers' StatefulSet, if it exists.
    pub controller_statefulset: Option<&'a StatefulSet>,
    /// The broker StatefulSets that exist.
    pub broker_statefulsets: &'a [StatefulSet],
    /// The broker pods (selected by the broker selector).
    pub broker_pods: &'a [Pod],
    /// Partition count from the controller, when it answered.
    pub partitions: Option<i32>,
    /// The reassignment the scaling logic ran or is running, if any.
    pub last_reassignment: Option<&'a ReassignmentStatus>,
    /// Brokers still to move between the on-demand and spot StatefulSets
    /// (the placement step's list; empty when the layout is settled).
    pub moving: &'a [i32],
}

/// Readiness of one role, summed over its StatefulSets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Workload {
    desired: i32,
    existing: i32,
    ready: i32,
    rolling: bool,
}

impl Workload {
    fn observe<'a>(desired: Option<i32>, sets: impl IntoIterator<Item = &'a StatefulSet>) -> Self {
        let mut w = Workload::default();
        let mut spec_replicas = 0;
        for sts in sets {
            spec_replicas += sts.spec.replicas.unwrap_or(1);
            let Some(s) = &sts.status else {
                w.rolling = true;
                continue;
            };
            w.existing += s.replicas;
            w.ready += s.ready_replicas.unwrap_or(0);
            let stale = match (s.observed_generation, sts.metadata.generation) {
                (Some(seen), Some(current)) => seen < current,
                (None, Some(_)) => true,
                _ => false,
            };
            let revisions_differ = matches!(
                (&s.current_revision, &s.update_revision),
                (Some(a), Some(b)) if a != b
            );
            let not_updated = s.updated_replicas.unwrap_or(0) < s.replicas;
            w.rolling |= stale || revisions_differ || not_updated;
        }
        w.desired = desired.unwrap_or(spec_replicas);
        w
    }

    fn all_ready(&self) -> bool {
        self.ready >= self.desired
    }
}

/// A condition before merging with the previous ones.
struct Next {
    type_: &'static str,
    status: &'static str,
    reason: &'static str,
    message: String,
}

/// Compute the status of `cluster` from the validation outcome and what was
/// observed; `now` stamps conditions whose status changed.
pub fn status(
    cluster: &KafkaCluster,
    validated: Result<&ValidatedCluster, &InvalidSpec>,
    observed: &Observed<'_>,
    now: &Time,
) -> KafkaClusterStatus {
    let name = cluster.metadata.name.as_deref().unwrap_or_default();
    let generation = cluster.metadata.generation;
    let previous = cluster.status.as_ref();
    let previous_conditions = previous.map(|s| s.conditions.as_slice()).unwrap_or(&[]);

    let valid = validated.ok();
    let controllers = Workload::observe(
        valid.map(|v| v.controllers.replicas),
        observed.controller_statefulset,
    );
    let brokers = Workload::observe(
        valid.map(|v| v.brokers.replicas),
        observed.broker_statefulsets,
    );
    let reassignment = observed
        .last_reassignment
        .cloned()
        .or_else(|| previous.and_then(|p| p.last_reassignment.clone()));

    let next = match validated {
        Err(invalid) => invalid_conditions(invalid),
        Ok(_) => conditions(
            controllers,
            brokers,
            has_been_ready(previous_conditions),
            reassignment.as_ref(),
            observed.moving,
        ),
    };

    let mut broker_list: Vec<BrokerStatus> =
        observed.broker_pods.iter().map(broker_status).collect();
    broker_list.sort_by_key(|b| (ordinal(observed.broker_pods, &b.name), b.name.clone()));

    KafkaClusterStatus {
        observed_generation: generation,
        replicas: brokers.existing,
        selector: Some(labels::selector_string(&labels::selector(
            name,
            Component::Broker,
        ))),
        conditions: merge(previous_conditions, next, generation, now),
        brokers: broker_list,
        partitions: observed
            .partitions
            .or_else(|| previous.and_then(|p| p.partitions)),
        last_reassignment: reassignment,
    }
}

fn invalid_conditions(invalid: &InvalidSpec) -> Vec<Next> {
    vec![
        Next {
            type_: READY,
            status: FALSE,
            reason: "InvalidSpec",
            message: "the spec is invalid (see Degraded); the cluster keeps running its last applied configuration".into(),
        },
        Next {
            type_: PROGRESSING,
            status: FALSE,
            reason: "InvalidSpec",
            message: "waiting for a valid spec".into(),
        },
        Next {
            type_: DEGRADED,
            status: TRUE,
            reason: "InvalidSpec",
            message: invalid.to_string(),
        },
    ]
}

fn conditions(
    controllers: Workload,
    brokers: Workload,
    established: bool,
    reassignment: Option<&ReassignmentStatus>,
    moving: &[i32],
) -> Vec<Next> {
    let counts = format!(
        "{}/{} controllers and {}/{} brokers ready",
        controllers.ready.min(controllers.desired),
        controllers.desired,
        brokers.ready.min(brokers.desired),
        brokers.desired
    );
    let ready = if !controllers.all_ready() {
        Next {
            type_: READY,
            status: FALSE,
            reason: "ControllersNotReady",
            message: counts.clone(),
        }
    } else if !brokers.all_ready() {
        Next {
            type_: READY,
            status: FALSE,
            reason: "BrokersNotReady",
            message: counts.clone(),
        }
    } else {
        Next {
            type_: READY,
            status: TRUE,
            reason: "AllReplicasReady",
            message: counts.clone(),
        }
    };

    let all_ready = controllers.all_ready() && brokers.all_ready();
    let reassigning = reassignment.filter(|r| r.outcome == ReassignmentOutcome::InProgress);
    let progressing = if !moving.is_empty() {
        let ids: Vec<String> = moving.iter().map(i32::to_string).collect();
        Next {
            type_: PROGRESSING,
            status: TRUE,
            reason: "MovingBrokers",
            message: format!(
                "brokers {} move between the on-demand and spot StatefulSets, one at a time, each drained first",
                ids.join(", ")
            ),
        }
    } else if !established && !all_ready {
        Next {
            type_: PROGRESSING,
            status: TRUE,
            reason: "Creating",
            message: counts,
        }
    } else if controllers.rolling || brokers.rolling {
        Next {
            type_: PROGRESSING,
            status: TRUE,
            reason: "RollingOut",
            message: "pods are being updated to the current spec".into(),
        }
    } else if brokers.existing < brokers.desired {
        Next {
            type_: PROGRESSING,
            status: TRUE,
            reason: "ScalingOut",
            message: format!("{} of {} brokers exist", brokers.existing, brokers.desired),
        }
    } else if brokers.existing > brokers.desired {
        Next {
            type_: PROGRESSING,
            status: TRUE,
            reason: "ScalingIn",
            message: format!(
                "{} brokers exist, {} wanted",
                brokers.existing, brokers.desired
            ),
        }
    } else if let Some(r) = reassigning {
        Next {
            type_: PROGRESSING,
            status: TRUE,
            reason: "Reassigning",
            message: format!(
                "{:?}: {} partitions moved so far",
                r.trigger, r.moved_partitions
            ),
        }
    } else {
        Next {
            type_: PROGRESSING,
            status: FALSE,
            reason: "Stable",
            message: "no rollout, scaling or reassignment in progress".into(),
        }
    };

    let majority = controllers.desired / 2 + 1;
    let failed = reassignment.filter(|r| r.outcome == ReassignmentOutcome::Failed);
    let degraded = if established && controllers.ready < majority {
        Next {
            type_: DEGRADED,
            status: TRUE,
            reason: "QuorumLost",
            message: format!(
                "{}/{} controllers ready; the metadata quorum needs {majority}",
                controllers.ready, controllers.desired
            ),
        }
    } else if established && brokers.desired > 0 && brokers.ready == 0 {
        Next {
            type_: DEGRADED,
            status: TRUE,
            reason: "NoBrokersReady",
            message: format!(
                "0/{} brokers ready; clients cannot connect",
                brokers.desired
            ),
        }
    } else if let Some(r) = failed {
        Next {
            type_: DEGRADED,
            status: TRUE,
            reason: "ReassignmentFailed",
            message: format!("{:?} reassignment failed: {}", r.trigger, r.message),
        }
    } else {
        Next {
            type_: DEGRADED,
            status: FALSE,
            reason: "AsExpected",
            message: "all is well".into(),
        }
    };
    vec![ready, progressing, degraded]
}

/// Whether the cluster was ever ready: it was Ready, or it already lost
/// quorum or brokers after having been ready.
fn has_been_ready(previous: &[Condition]) -> bool {
    previous.iter().any(|c| {
        (c.type_ == READY && c.status == TRUE)
            || (c.type_ == DEGRADED
                && c.status == TRUE
                && matches!(c.reason.as_str(), "QuorumLost" | "NoBrokersReady"))
    })
}

/// New conditions, keeping a previous `lastTransitionTime` when the status did
/// not change.
fn merge(
    previous: &[Condition],
    next: Vec<Next>,
    generation: Option<i64>,
    now: &Time,
) -> Vec<Condition> {
    next.into_iter()
        .map(|n| {
            let last_transition_time = previous
                .iter()
                .find(|p| p.type_ == n.type_ && p.status == n.status)
                .map_or_else(|| now.clone(), |p| p.last_transition_time.clone());
            Condition {
                type_: n.type_.to_string(),
                status: n.status.to_string(),
                reason: n.reason.to_string(),
                message: n.message,
                observed_generation: generation,
                last_transition_time,
            }
        })
        .collect()
}

fn broker_status(pod: &Pod) -> BrokerStatus {
    let ready = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == TRUE));
    let capacity = match pod_label(pod, labels::CAPACITY) {
        Some("spot") => CapacityType::Spot,
        _ => CapacityType::OnDemand,
    };
    BrokerStatus {
        name: pod.metadata.name.clone().unwrap_or_default(),
        ready,
        capacity,
        node_name: pod.spec.as_ref().and_then(|s| s.node_name.clone()),
    }
}

fn pod_label<'a>(pod: &'a Pod, key: &str) -> Option<&'a str> {
    pod.metadata.labels.as_ref()?.get(key).map(String::as_str)
}

/// A pod's StatefulSet ordinal (its broker id), for ordering the list.
fn ordinal(pods: &[Pod], name: &str) -> i64 {
    pods.iter()
        .find(|p| p.metadata.name.as_deref() == Some(name))
        .and_then(|p| pod_label(p, labels::POD_INDEX))
        .and_then(|i| i.parse().ok())
        .unwrap_or(i64::MAX)
}
