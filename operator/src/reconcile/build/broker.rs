//! A broker StatefulSet. In `volume` mode each broker has a WAL claim; in
//! `object` mode produce is acknowledged after the object PUT and the data
//! directory is an emptyDir capped at the WAL size. Brokers start in parallel
//! (a scale-out should add all new brokers at once); on SIGTERM a broker
//! drains itself, which must finish inside a spot interruption notice.

use floe_crds::WalMode;
use k8s_openapi::api::apps::v1::{
    StatefulSet, StatefulSetOrdinals, StatefulSetPersistentVolumeClaimRetentionPolicy,
    StatefulSetSpec,
};
use k8s_openapi::api::core::v1::{
    EmptyDirVolumeSource, EnvVar, EnvVarSource, SecretKeySelector, Volume,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use super::controller::retention;
use super::metadata;
use super::pod::{self, ContainerParts, PodParts};
use crate::labels::{self, Component};
use crate::names;
use crate::reconcile::validate::{BrokerSet, ValidatedCluster, BROKER_ID_ENV, POD_NAME_ENV};

/// Seconds a broker gets to drain after SIGTERM; below the two-minute spot
/// interruption notice of the large clouds.
pub const BROKER_TERMINATION_GRACE_SECONDS: i64 = 90;
/// Of that, the time a broker spends moving its partitions away; the rest
/// covers the final upload and the process exit.
pub const BROKER_DRAIN_BUDGET_SECONDS: i64 = 60;

pub(super) fn statefulset(
    cluster: &ValidatedCluster,
    set: &BrokerSet,
    config_hash: &str,
) -> StatefulSet {
    let c = &cluster.name;
    let brokers = &cluster.brokers;
    let mut env = vec![
        pod::field_env(POD_NAME_ENV, "metadata.name"),
        // The broker id is the pod's ordinal, unique across the on-demand
        // and spot StatefulSets (the spot one starts after the on-demand range).
        pod::ordinal_env(BROKER_ID_ENV),
        pod::value_env(
            "FLOE_ADVERTISED_LISTENER",
            &format!(
                "{}:{}",
                cluster.listener.advertised_host, cluster.listener.port
            ),
        ),
        pod::value_env("FLOE_CAPACITY_TYPE", set.capacity.as_str()),
        // On SIGTERM the broker drains itself for at most this long, then
        // uploads what is left: well inside the termination grace period.
        pod::value_env(
            "FLOE_DRAIN_BUDGET_MS",
            &(BROKER_DRAIN_BUDGET_SECONDS * 1000).to_string(),
        ),
    ];
    if let Some(creds) = &cluster.object_store.credentials {
        env.push(secret_env(
            "AWS_ACCESS_KEY_ID",
            &creds.name,
            &creds.access_key_id_key,
        ));
        env.push(secret_env(
            "AWS_SECRET_ACCESS_KEY",
            &creds.name,
            &creds.secret_access_key_key,
        ));
    }
    let container = pod::container(
        cluster,
        ContainerParts {
            name: names::BROKER_CONTAINER,
            subcommand: "broker",
            env,
            ports: vec![pod::container_port(
                names::KAFKA_PORT,
                cluster.listener.port,
            )],
            resources: brokers.resources.clone(),
            data_volume: names::WAL_VOLUME,
        },
    );
    let (volumes, claims, claim_retention) = match brokers.wal_mode {
        WalMode::Volume => (
            Vec::new(),
            Some(vec![pod::claim_template(
                cluster,
                names::WAL_VOLUME,
                Component::Broker,
                &brokers.wal_volume,
            )]),
            // Scale-in drains a broker (its WAL is uploaded) before its pod
            // goes, so its claim is not needed afterwards.
            Some(StatefulSetPersistentVolumeClaimRetentionPolicy {
                when_deleted: Some(retention(cluster.reclaim_policy).to_string()),
                when_scaled: Some("Delete".to_string()),
            }),
        ),
        WalMode::Object => (
            vec![Volume {
                name: names::WAL_VOLUME.to_string(),
                empty_dir: Some(EmptyDirVolumeSource {
                    size_limit: Some(Quantity(brokers.wal_volume.size.0.clone())),
                    ..EmptyDirVolumeSource::default()
                }),
                ..Volume::default()
            }],
            None,
            None,
        ),
    };
    let template = pod::template(
        cluster,
        PodParts {
            component: Component::Broker,
            capacity: Some(set.capacity),
            container,
            volumes,
            node_selector: set.node_selector.clone(),
            tolerations: set.tolerations.clone(),
            termination_grace_period_seconds: BROKER_TERMINATION_GRACE_SECONDS,
        },
        config_hash,
    );
    let mut meta = metadata(
        cluster,
        names::broker_statefulset(c, set.capacity),
        Some(Component::Broker),
    );
    if let Some(labels) = meta.labels.as_mut() {
        labels.insert(
            labels::CAPACITY.to_string(),
            set.capacity.as_str().to_string(),
        );
    }
    StatefulSet {
        metadata: meta,
        spec: StatefulSetSpec {
            replicas: Some(set.replicas),
            ordinals: (set.first_ordinal > 0).then_some(StatefulSetOrdinals {
                start: Some(set.first_ordinal),
            }),
            service_name: Some(names::broker_headless_service(c)),
            selector: LabelSelector {
                match_labels: Some(labels::broker_set_selector(c, set.capacity)),
                ..LabelSelector::default()
            },
            pod_management_policy: Some("Parallel".to_string()),
            persistent_volume_claim_retention_policy: claim_retention,
            volume_claim_templates: claims,
            template,
            ..StatefulSetSpec::default()
        },
        ..StatefulSet::default()
    }
}

fn secret_env(name: &str, secret: &str, key: &str) -> EnvVar {
    EnvVar {
        name: name.to_string(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: secret.to_string(),
                key: key.to_string(),
                optional: Some(false),
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }
}
