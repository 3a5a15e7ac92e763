//! Every label and annotation key the operator sets, and the label sets built
//! from them, in one place. Selectors use only the stable keys (name,
//! instance, component), never anything that changes over a cluster's life.

use std::collections::BTreeMap;

use floe_crds::CapacityType;

/// `app.kubernetes.io/name`: always [`APP`].
pub const NAME: &str = "app.kubernetes.io/name";
/// `app.kubernetes.io/instance`: the KafkaCluster's name.
pub const INSTANCE: &str = "app.kubernetes.io/instance";
/// `app.kubernetes.io/component`: `controller` or `broker`.
pub const COMPONENT: &str = "app.kubernetes.io/component";
/// `app.kubernetes.io/managed-by`: always [`MANAGER`].
pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
/// `floe.dev/capacity` on broker pods: `spot` or `on-demand`.
pub const CAPACITY: &str = "floe.dev/capacity";
/// Label the StatefulSet controller puts on each pod with its ordinal
/// (Kubernetes >= 1.28); read through the downward API.
pub const POD_INDEX: &str = "apps.kubernetes.io/pod-index";

/// Pod-template annotation holding a hash of the shared ConfigMap, so that a
/// configuration change rolls the pods that read it through `envFrom`.
pub const CONFIG_HASH_ANNOTATION: &str = "floe.dev/config-hash";

/// Value of [`NAME`].
pub const APP: &str = "floe";
/// Value of [`MANAGED_BY`]; also the server-side apply field manager.
pub const MANAGER: &str = "floe-operator";

/// Which part of a cluster an object belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Component {
    /// The Raft metadata quorum.
    Controller,
    /// The brokers.
    Broker,
}

impl Component {
    /// The [`COMPONENT`] label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Component::Controller => "controller",
            Component::Broker => "broker",
        }
    }
}

/// Selects the pods of one component of one cluster (StatefulSet, Service,
/// PDB and topology-spread selectors; `status.selector` for brokers).
pub fn selector(cluster: &str, component: Component) -> BTreeMap<String, String> {
    BTreeMap::from([
        (NAME.to_string(), APP.to_string()),
        (INSTANCE.to_string(), cluster.to_string()),
        (COMPONENT.to_string(), component.as_str().to_string()),
    ])
}

/// Selects the pods of one broker StatefulSet: the broker selector narrowed
/// by placement, so the on-demand and spot StatefulSets never select each
/// other's pods.
pub fn broker_set_selector(cluster: &str, capacity: CapacityType) -> BTreeMap<String, String> {
    let mut labels = selector(cluster, Component::Broker);
    labels.insert(CAPACITY.to_string(), capacity.as_str().to_string());
    labels
}

/// Selects everything the operator created for one cluster; the orphan sweep
/// lists by it.
pub fn cluster_selector(cluster: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (NAME.to_string(), APP.to_string()),
        (INSTANCE.to_string(), cluster.to_string()),
        (MANAGED_BY.to_string(), MANAGER.to_string()),
    ])
}

/// Labels of a child object: the cluster selector, plus the component when
/// the object belongs to one.
pub fn object_labels(cluster: &str, component: Option<Component>) -> BTreeMap<String, String> {
    let mut labels = cluster_selector(cluster);
    if let Some(component) = component {
        labels.insert(COMPONENT.to_string(), component.as_str().to_string());
    }
    labels
}

/// Labels of a pod template: the user's extra labels, then the operator's
/// (the operator's win; validation refuses user keys under its prefixes).
pub fn pod_labels(
    cluster: &str,
    component: Component,
    capacity: Option<CapacityType>,
    extra: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut labels = extra.clone();
    labels.extend(object_labels(cluster, Some(component)));
    if let Some(capacity) = capacity {
        labels.insert(CAPACITY.to_string(), capacity.as_str().to_string());
    }
    labels
}

/// A label selector in its string form (`k=v,k=v`), as `/scale` expects.
pub fn selector_string(selector: &BTreeMap<String, String>) -> String {
    selector
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Whether a label or annotation key belongs to the operator.
pub fn is_reserved_key(key: &str) -> bool {
    key.starts_with("app.kubernetes.io/") || key.starts_with("floe.dev/")
}

/// A stable digest of `parts` (64-bit FNV-1a over each part followed by a
/// zero byte, hex): the same on every build and every Rust version, unlike
/// `std`'s `DefaultHasher`. The config hash and the TLS digest.
pub fn stable_digest<'a>(parts: impl IntoIterator<Item = &'a [u8]>) -> String {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0100_0000_01b3;
    let mut hash = OFFSET;
    for part in parts {
        for &byte in part.iter().chain(&[0]) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(PRIME);
        }
    }
    format!("{hash:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_broker_selector_string_is_sorted_and_stable() {
        assert_eq!(
            selector_string(&selector("events", Component::Broker)),
            "app.kubernetes.io/component=broker,app.kubernetes.io/instance=events,app.kubernetes.io/name=floe"
        );
    }

    #[test]
    fn pod_labels_keep_the_operators_keys_over_the_users() {
        let extra = BTreeMap::from([
            ("team".to_string(), "data".to_string()),
            (INSTANCE.to_string(), "other".to_string()),
        ]);
        let labels = pod_labels(
            "events",
            Component::Broker,
            Some(CapacityType::Spot),
            &extra,
        );
        assert_eq!(labels["team"], "data");
        assert_eq!(labels[INSTANCE], "events");
        assert_eq!(labels[CAPACITY], "spot");
        // Every selector label is on the pod, so the selector matches it.
        for (k, v) in selector("events", Component::Broker) {
            assert_eq!(labels[&k], v);
        }
    }
}
