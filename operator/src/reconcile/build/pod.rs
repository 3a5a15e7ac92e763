//! What controller and broker pods share: the hardened pod and container
//! settings, health probes, placement (user overrides, spot, zone spread),
//! and the environment helpers.

use std::collections::BTreeMap;

use floe_crds::CapacityType;
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMapEnvSource, Container, ContainerPort, EnvFromSource, EnvVar,
    EnvVarSource, HTTPGetAction, ObjectFieldSelector, PersistentVolumeClaim,
    PersistentVolumeClaimSpec, PodSecurityContext, PodSpec, PodTemplateSpec, Probe, SeccompProfile,
    SecretVolumeSource, SecurityContext, Toleration, TopologySpreadConstraint, Volume, VolumeMount,
    VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{CONTROLLER_TLS_DIR, DATA_DIR};
use crate::labels::{self, Component};
use crate::names;
use crate::reconcile::validate::ValidatedCluster;
use floe_crds::VolumeSpec;

/// UID/GID the containers run as (no root, no privilege escalation).
pub(super) const RUN_AS: i64 = 65532;

/// The role-specific parts of a pod.
pub(super) struct PodParts {
    pub component: Component,
    pub capacity: Option<CapacityType>,
    pub container: Container,
    pub volumes: Vec<Volume>,
    pub node_selector: BTreeMap<String, String>,
    pub tolerations: Vec<Toleration>,
    pub termination_grace_period_seconds: i64,
}

/// A pod template: the user's overrides, then the role's parts, then the
/// operator's labels and the config hash.
pub(super) fn template(
    cluster: &ValidatedCluster,
    parts: PodParts,
    config_hash: &str,
) -> PodTemplateSpec {
    let user = &cluster.pod_template;
    let mut annotations = user.annotations.clone();
    annotations.insert(
        labels::CONFIG_HASH_ANNOTATION.to_string(),
        config_hash.to_string(),
    );
    let mut node_selector = user.node_selector.clone();
    node_selector.extend(parts.node_selector);
    let mut tolerations = user.tolerations.clone();
    tolerations.extend(parts.tolerations);
    let mut container = parts.container;
    let mut volumes = parts.volumes;
    if let Some(tls) = &cluster.controllers.tls {
        // Brokers hold their own certificate when the spec names one.
        let secret_name = match (parts.component, &tls.broker_secret_name) {
            (Component::Broker, Some(brokers)) => brokers,
            _ => &tls.secret_name,
        };
        volumes.push(Volume {
            name: names::CONTROLLER_TLS_VOLUME.to_string(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(secret_name.clone()),
                // Readable by the pod's group (fsGroup) only: it holds a key.
                default_mode: Some(0o440),
                ..SecretVolumeSource::default()
            }),
            ..Volume::default()
        });
        container
            .volume_mounts
            .get_or_insert_with(Vec::new)
            .push(VolumeMount {
                name: names::CONTROLLER_TLS_VOLUME.to_string(),
                mount_path: CONTROLLER_TLS_DIR.to_string(),
                read_only: Some(true),
                ..VolumeMount::default()
            });
    }
    let spread = cluster.zone_spread.as_ref().map(|z| {
        vec![TopologySpreadConstraint {
            max_skew: z.max_skew,
            topology_key: z.topology_key.clone(),
            when_unsatisfiable: z.when_unsatisfiable.as_str().to_string(),
            label_selector: Some(LabelSelector {
                match_labels: Some(labels::selector(&cluster.name, parts.component)),
                ..LabelSelector::default()
            }),
            ..TopologySpreadConstraint::default()
        }]
    });
    PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(labels::pod_labels(
                &cluster.name,
                parts.component,
                parts.capacity,
                &user.labels,
            )),
            annotations: Some(annotations),
            ..ObjectMeta::default()
        }),
        spec: Some(PodSpec {
            service_account_name: Some(names::service_account(&cluster.name)),
            automount_service_account_token: Some(false),
            security_context: Some(PodSecurityContext {
                run_as_non_root: Some(true),
                run_as_user: Some(RUN_AS),
                run_as_group: Some(RUN_AS),
                fs_group: Some(RUN_AS),
                fs_group_change_policy: Some("OnRootMismatch".to_string()),
                seccomp_profile: Some(SeccompProfile {
                    type_: "RuntimeDefault".to_string(),
                    ..SeccompProfile::default()
                }),
                ..PodSecurityContext::default()
            }),
            termination_grace_period_seconds: Some(parts.termination_grace_period_seconds),
            node_selector: (!node_selector.is_empty()).then_some(node_selector),
            tolerations: (!tolerations.is_empty()).then_some(tolerations),
            affinity: user.affinity.clone(),
            topology_spread_constraints: spread,
            priority_class_name: user.priority_class_name.clone(),
            image_pull_secrets: (!user.image_pull_secrets.is_empty())
                .then(|| user.image_pull_secrets.clone()),
            containers: vec![container],
            volumes: (!volumes.is_empty()).then_some(volumes),
            ..PodSpec::default()
        }),
    }
}

/// The parts of a container both roles share.
pub(super) struct ContainerParts {
    pub name: &'static str,
    pub subcommand: &'static str,
    pub env: Vec<EnvVar>,
    pub ports: Vec<ContainerPort>,
    pub resources: Option<k8s_openapi::api::core::v1::ResourceRequirements>,
    pub data_volume: &'static str,
}

pub(super) fn container(cluster: &ValidatedCluster, parts: ContainerParts) -> Container {
    let probe = |path: &str, period: i32, failures: i32| Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.to_string()),
            port: IntOrString::String(names::HEALTH_PORT.to_string()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period),
        failure_threshold: Some(failures),
        ..Probe::default()
    };
    let mut ports = parts.ports;
    ports.push(container_port(names::HEALTH_PORT, floe_crds::HEALTH_PORT));
    let mut env = parts.env;
    env.push(value_env("FLOE_DATA_DIR", DATA_DIR));
    env.push(value_env(
        "FLOE_HEALTH_LISTEN",
        &format!("0.0.0.0:{}", floe_crds::HEALTH_PORT),
    ));
    Container {
        name: parts.name.to_string(),
        image: Some(cluster.image.clone()),
        image_pull_policy: cluster.image_pull_policy.map(|p| p.as_str().to_string()),
        command: Some(vec!["floe".to_string()]),
        args: Some(vec![parts.subcommand.to_string()]),
        env_from: Some(vec![EnvFromSource {
            config_map_ref: Some(ConfigMapEnvSource {
                name: names::config_map(&cluster.name),
                optional: Some(false),
            }),
            ..EnvFromSource::default()
        }]),
        env: Some(env),
        ports: Some(ports),
        resources: parts.resources,
        volume_mounts: Some(vec![VolumeMount {
            name: parts.data_volume.to_string(),
            mount_path: DATA_DIR.to_string(),
            ..VolumeMount::default()
        }]),
        // Recovery (WAL replay, Raft log load) may take minutes; only then
        // does liveness start counting.
        startup_probe: Some(probe("/healthz", 5, 120)),
        liveness_probe: Some(probe("/healthz", 10, 3)),
        readiness_probe: Some(probe("/readyz", 5, 2)),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".to_string()]),
                ..Capabilities::default()
            }),
            ..SecurityContext::default()
        }),
        ..Container::default()
    }
}

pub(super) fn container_port(name: &str, port: i32) -> ContainerPort {
    ContainerPort {
        name: Some(name.to_string()),
        container_port: port,
        protocol: Some("TCP".to_string()),
        ..ContainerPort::default()
    }
}

pub(super) fn value_env(name: &str, value: &str) -> EnvVar {
    EnvVar {
        name: name.to_string(),
        value: Some(value.to_string()),
        ..EnvVar::default()
    }
}

/// An environment variable from the pod's own metadata (downward API).
pub(super) fn field_env(name: &str, field_path: &str) -> EnvVar {
    EnvVar {
        name: name.to_string(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: field_path.to_string(),
                ..ObjectFieldSelector::default()
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }
}

/// The pod's ordinal, from the label the StatefulSet controller sets.
pub(super) fn ordinal_env(name: &str) -> EnvVar {
    field_env(name, &format!("metadata.labels['{}']", labels::POD_INDEX))
}

/// A per-pod ReadWriteOnce claim template.
pub(super) fn claim_template(
    cluster: &ValidatedCluster,
    name: &str,
    component: Component,
    volume: &VolumeSpec,
) -> PersistentVolumeClaim {
    PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            // Claims carry the cluster's labels so that `reclaimPolicy: Delete`
            // can find them.
            labels: Some(labels::object_labels(&cluster.name, Some(component))),
            ..ObjectMeta::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".to_string()]),
            storage_class_name: volume.storage_class_name.clone(),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([(
                    "storage".to_string(),
                    Quantity(volume.size.0.clone()),
                )])),
                ..VolumeResourceRequirements::default()
            }),
            ..PersistentVolumeClaimSpec::default()
        }),
        ..PersistentVolumeClaim::default()
    }
}
