//! Every name the operator gives a Kubernetes object (and the named parts of
//! pods: containers, volumes, ports), in one place. Names derive from the
//! KafkaCluster's name only, so a rebuilt object always lands on the same name.

use floe_crds::CapacityType;

/// Suffix of the broker StatefulSet on on-demand nodes (all brokers when spot is off).
const BROKER: &str = "broker";
/// Suffix of the broker StatefulSet on spot nodes.
const BROKER_SPOT: &str = "broker-spot";

/// The controllers' StatefulSet (pods `<cluster>-controller-<i>`).
pub fn controller_statefulset(cluster: &str) -> String {
    format!("{cluster}-controller")
}

/// The controllers' headless Service: stable DNS names for Raft peers.
pub fn controller_headless_service(cluster: &str) -> String {
    format!("{cluster}-controller-headless")
}

/// A controller pod.
pub fn controller_pod(cluster: &str, ordinal: i32) -> String {
    format!("{}-{ordinal}", controller_statefulset(cluster))
}

/// The stable DNS name of a controller pod.
pub fn controller_host(cluster: &str, namespace: &str, ordinal: i32) -> String {
    format!(
        "{}.{}.{namespace}.svc",
        controller_pod(cluster, ordinal),
        controller_headless_service(cluster)
    )
}

/// A broker StatefulSet: `<cluster>-broker` on on-demand nodes,
/// `<cluster>-broker-spot` on spot nodes.
pub fn broker_statefulset(cluster: &str, capacity: CapacityType) -> String {
    match capacity {
        CapacityType::OnDemand => format!("{cluster}-{BROKER}"),
        CapacityType::Spot => format!("{cluster}-{BROKER_SPOT}"),
    }
}

/// The brokers' headless Service (both StatefulSets): per-broker DNS names.
pub fn broker_headless_service(cluster: &str) -> String {
    format!("{cluster}-broker-headless")
}

/// The Service clients bootstrap from.
pub fn bootstrap_service(cluster: &str) -> String {
    format!("{cluster}-bootstrap")
}

/// The ConfigMap with the settings controllers and brokers share.
pub fn config_map(cluster: &str) -> String {
    format!("{cluster}-config")
}

/// The controllers' PodDisruptionBudget.
pub fn controller_pdb(cluster: &str) -> String {
    controller_statefulset(cluster)
}

/// The brokers' PodDisruptionBudget (both StatefulSets).
pub fn broker_pdb(cluster: &str) -> String {
    format!("{cluster}-{BROKER}")
}

/// The ServiceAccount Floe pods run as.
pub fn service_account(cluster: &str) -> String {
    format!("{cluster}-floe")
}

/// Container name in controller pods.
pub const CONTROLLER_CONTAINER: &str = "controller";
/// Container name in broker pods.
pub const BROKER_CONTAINER: &str = "broker";
/// Volume (and claim template) holding a controller's Raft log.
pub const RAFT_LOG_VOLUME: &str = "raft-log";
/// Volume (claim template in `volume` mode, emptyDir in `object` mode) of a broker.
pub const WAL_VOLUME: &str = "wal";
/// Volume of the controllers' TLS Secret (controllers and brokers).
pub const CONTROLLER_TLS_VOLUME: &str = "controller-tls";
/// Port name of the Kafka listener.
pub const KAFKA_PORT: &str = "kafka";
/// Port name of Raft peer traffic between controllers.
pub const RAFT_PORT: &str = "raft";
/// Port name of the controllers' metadata API (brokers and the operator).
pub const METADATA_PORT: &str = "metadata";
/// Port name of `/healthz`, `/readyz` and `/metrics`.
pub const HEALTH_PORT: &str = "health";

#[cfg(test)]
mod tests {
    use super::*;
    use floe_crds::MAX_CLUSTER_NAME_LEN;

    #[test]
    fn the_longest_allowed_cluster_name_fits_every_limit() {
        let c = "a".repeat(MAX_CLUSTER_NAME_LEN);
        // Services are DNS-1035 labels.
        for svc in [
            controller_headless_service(&c),
            broker_headless_service(&c),
            bootstrap_service(&c),
        ] {
            assert!(svc.len() <= 63, "{svc} is {} characters", svc.len());
        }
        // A StatefulSet's pods carry `controller-revision-hash: <name>-<10 chars>`,
        // a label value of at most 63 characters.
        for sts in [
            controller_statefulset(&c),
            broker_statefulset(&c, CapacityType::OnDemand),
            broker_statefulset(&c, CapacityType::Spot),
        ] {
            assert!(sts.len() + 11 <= 63, "{sts} is {} characters", sts.len());
        }
        // ... and one character more would not fit.
        let c = "a".repeat(MAX_CLUSTER_NAME_LEN + 1);
        assert!(broker_statefulset(&c, CapacityType::Spot).len() + 11 > 63);
    }

    #[test]
    fn controller_hosts_are_stable_pod_dns_names() {
        assert_eq!(
            controller_host("events", "streaming", 2),
            "events-controller-2.events-controller-headless.streaming.svc"
        );
    }
}
