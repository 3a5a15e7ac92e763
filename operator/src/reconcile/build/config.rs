//! The ConfigMap of settings every Floe pod reads through `envFrom`, and the
//! hash that rolls the pods when it changes.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;

use super::{metadata, CONTROLLER_TLS_DIR, METADATA_PORT, RAFT_PORT};
use crate::names;
use crate::reconcile::validate::ValidatedCluster;

/// The shared settings, named after the `floe` flags' environment variables.
pub(super) fn config_map(cluster: &ValidatedCluster) -> ConfigMap {
    let c = &cluster.name;
    let ns = &cluster.namespace;
    let controllers = 0..cluster.controllers.replicas;
    let mut data = BTreeMap::from([
        ("FLOE_CLUSTER".to_string(), c.clone()),
        ("FLOE_OBJECT_STORE".to_string(), cluster.object_store.url()),
        (
            "FLOE_WAL_MODE".to_string(),
            cluster.brokers.wal_mode.as_str().to_string(),
        ),
        (
            "FLOE_LISTEN".to_string(),
            format!("0.0.0.0:{}", cluster.listener.port),
        ),
        (
            // Brokers (and the operator) reach the metadata quorum here.
            "FLOE_CONTROLLERS".to_string(),
            controllers
                .clone()
                .map(|i| format!("{}:{METADATA_PORT}", names::controller_host(c, ns, i)))
                .collect::<Vec<_>>()
                .join(","),
        ),
        (
            // Raft voters: `<node id>=<host>:<port>`, the id being the pod ordinal.
            "FLOE_RAFT_PEERS".to_string(),
            controllers
                .map(|i| format!("{i}={}:{RAFT_PORT}", names::controller_host(c, ns, i)))
                .collect::<Vec<_>>()
                .join(","),
        ),
    ]);
    if let Some(tls) = &cluster.controllers.tls {
        for (var, file) in [
            ("FLOE_CONTROLLER_TLS_CA", "ca.crt"),
            ("FLOE_CONTROLLER_TLS_CERT", "tls.crt"),
            ("FLOE_CONTROLLER_TLS_KEY", "tls.key"),
        ] {
            data.insert(var.to_string(), format!("{CONTROLLER_TLS_DIR}/{file}"));
        }
        if tls.broker_secret_name.is_some() {
            // Brokers hold a certificate of their own: only certificates
            // named like a controller pod speak Raft (read by
            // `floe controller` alone).
            let host = names::controller_host(c, ns, 0);
            let service = host.split_once('.').map_or(host.as_str(), |(_, rest)| rest);
            data.insert(
                "FLOE_CONTROLLER_TLS_PEER_NAMES".to_string(),
                format!("*.{service},*.{service}.cluster.local"),
            );
        }
        // No digest of the files here: a renewed certificate must not roll
        // the pods. Kubelet updates the mounted files and the processes
        // read them again (see docs/controller.md, "TLS").
    }
    if let Some(region) = &cluster.object_store.region {
        data.insert("AWS_REGION".to_string(), region.clone());
    }
    if let Some(endpoint) = &cluster.object_store.endpoint {
        data.insert("AWS_ENDPOINT_URL".to_string(), endpoint.clone());
    }
    ConfigMap {
        metadata: metadata(cluster, names::config_map(c), None),
        data: Some(data),
        ..ConfigMap::default()
    }
}

/// A stable hash of the ConfigMap's data ([`crate::labels::stable_digest`] over
/// the sorted entries).
pub fn config_hash(config_map: &ConfigMap) -> String {
    crate::labels::stable_digest(
        config_map
            .data
            .iter()
            .flatten()
            .flat_map(|(k, v)| [k.as_bytes(), v.as_bytes()]),
    )
}
