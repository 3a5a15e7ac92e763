//! Validate (pure): a `KafkaCluster` and the objects it references → a
//! [`ValidatedCluster`] with every default resolved, or an [`InvalidSpec`]
//! listing *every* problem at once, each with its field path and what to do.
//!
//! The CRD schema already refuses most bad specs at admission (enums, ranges,
//! CEL rules); these checks repeat them, so an object that bypassed a stale
//! CRD still cannot produce broken children, and add what the schema cannot
//! see. The rules:
//!
//! - `metadata.name` is a DNS-1035 label of at most 40 characters (it prefixes
//!   Service names; the longest child name must still fit); `namespace` and
//!   `uid` are present (owner references need the uid).
//! - `controllers.replicas` is 1, 3 or 5; `brokers.replicas >= 1` and
//!   `minReplicas <= replicas <= maxReplicas` when the bounds are set.
//! - Volume sizes are well-formed positive quantities; for `resources`,
//!   every request is at most its limit (else the pods, not the StatefulSet,
//!   would be refused).
//! - `objectStorage.bucket` follows S3 bucket naming; the prefix has no empty,
//!   `.` or `..` segments and defaults to `<namespace>/<name>`, so clusters
//!   sharing a bucket never share keys; an `endpoint` is an `http(s)://` URL.
//! - Credentials: with an `endpoint` (MinIO, Ceph, R2, ...) a
//!   `credentialsSecret` is required, since such servers have no ambient
//!   identity. Without one (AWS S3) the Secret is optional and the pods use
//!   ambient credentials (IRSA via `serviceAccount.annotations`, EKS Pod
//!   Identity, instance profile). A named Secret must exist and hold both keys.
//! - `listeners.port` is not the health port (8080); `advertisedHost` uses only
//!   `{pod}`, `{ordinal}`, `{service}`, `{namespace}` and `{cluster}`, contains
//!   `{pod}` or `{ordinal}`, and expands to a DNS name.
//! - `spot.enabled` needs a `spot.nodeSelector` that does not contradict
//!   `podTemplate.nodeSelector`; `podTemplate` labels and annotations stay out
//!   of the `app.kubernetes.io/` and `floe.dev/` keys the operator owns, and
//!   are syntactically valid label keys and values.

use std::collections::BTreeMap;

use floe_crds::{
    BrokerSpec, CapacityType, ControllerSpec, CredentialsSecretRef, KafkaCluster,
    ObjectStorageSpec, PodTemplateOverrides, VolumeSpec, HEALTH_PORT, MAX_CLUSTER_NAME_LEN,
};
use k8s_openapi::api::core::v1::{ResourceRequirements, Secret};
use kube::Resource;

use super::dereference::Referenced;
use crate::{labels, names, quantity};
use syntax::{
    check_bucket, expand_template, is_dns_label, is_dns_subdomain, is_label_key, is_label_value,
};

mod syntax;
mod validated;

pub use validated::{
    BrokerSet, Brokers, ControllerTls, Controllers, Listener, ObjectStore, ValidatedCluster,
    ZoneSpread, BROKER_ID_ENV, DEFAULT_IMAGE, POD_NAME_ENV,
};

/// One thing wrong with a spec.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// Path of the offending field, e.g. `spec.objectStorage.bucket`.
    pub field: String,
    /// What is wrong and what to do about it.
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// A spec the operator will not act on. The reconciler reports it in the
/// `Degraded` condition and as an Event, and waits for the next change.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("KafkaCluster {cluster} is invalid; fix the spec and the operator continues on the next change: {}", list(.problems))]
pub struct InvalidSpec {
    /// `namespace/name` of the KafkaCluster.
    pub cluster: String,
    /// Every problem found, in spec order.
    pub problems: Vec<Problem>,
}

fn list(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// Check a KafkaCluster and resolve its defaults.
pub fn validate(
    cluster: &KafkaCluster,
    referenced: &Referenced,
) -> Result<ValidatedCluster, InvalidSpec> {
    let mut c = Checker::default();
    let meta = &cluster.metadata;
    let name = meta.name.clone().unwrap_or_default();
    let namespace = meta.namespace.clone().unwrap_or_default();
    c.check_name(&name);
    if namespace.is_empty() {
        c.problem(
            "metadata.namespace",
            "missing; KafkaCluster is a namespaced resource",
        );
    }
    let owner = cluster.controller_owner_ref(&());
    if owner.is_none() {
        c.problem(
            "metadata.uid",
            "missing; the operator only reconciles objects read from the API server",
        );
    }
    let spec = &cluster.spec;
    let image = match &spec.image {
        Some(image) if image.trim().is_empty() => {
            c.problem(
                "spec.image",
                "must not be empty; omit it to use the operator's default",
            );
            String::new()
        }
        Some(image) => image.clone(),
        None => DEFAULT_IMAGE.to_string(),
    };
    let controllers = c.controllers(&spec.controllers, &namespace, referenced);
    let brokers = c.brokers(&spec.brokers, &spec.spot, &spec.pod_template);
    let object_store = c.object_store(&spec.object_storage, &namespace, &name, referenced);
    let listener = c.listener(
        spec.listeners.port,
        &spec.listeners.advertised_host,
        &name,
        &namespace,
    );
    let zone_spread = spec.zone_spread.enabled.then(|| {
        let z = &spec.zone_spread;
        if !is_label_key(&z.topology_key) {
            c.problem(
                "spec.zoneSpread.topologyKey",
                format!("{:?} is not a valid node label key", z.topology_key),
            );
        }
        if z.max_skew < 1 {
            c.problem("spec.zoneSpread.maxSkew", "must be at least 1");
        }
        ZoneSpread {
            topology_key: z.topology_key.clone(),
            max_skew: z.max_skew,
            when_unsatisfiable: z.when_unsatisfiable,
        }
    });
    c.pod_template(&spec.pod_template);
    for key in spec.service_account.annotations.keys() {
        if !is_label_key(key) {
            c.problem(
                "spec.serviceAccount.annotations",
                format!("{key:?} is not a valid annotation key"),
            );
        }
    }
    if !c.problems.is_empty() {
        return Err(InvalidSpec {
            cluster: format!("{namespace}/{name}"),
            problems: c.problems,
        });
    }
    Ok(ValidatedCluster {
        name,
        namespace,
        generation: meta.generation,
        owner: owner.expect("checked above"),
        image,
        image_pull_policy: spec.image_pull_policy,
        controllers,
        brokers,
        object_store,
        listener,
        zone_spread,
        pod_template: spec.pod_template.clone(),
        service_account_annotations: spec.service_account.annotations.clone(),
        reclaim_policy: spec.reclaim_policy,
    })
}

#[derive(Default)]
struct Checker {
    problems: Vec<Problem>,
}

impl Checker {
    fn problem(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.problems.push(Problem {
            field: field.into(),
            message: message.into(),
        });
    }

    fn check_name(&mut self, name: &str) {
        if name.is_empty() {
            self.problem("metadata.name", "missing");
        } else if name.len() > MAX_CLUSTER_NAME_LEN
            || !is_dns_label(name)
            || name.starts_with(|c: char| c.is_ascii_digit())
        {
            self.problem(
                "metadata.name",
                format!(
                    "{name:?} must be at most {MAX_CLUSTER_NAME_LEN} lowercase letters, digits and '-', \
                     starting with a letter: it prefixes Service and StatefulSet names"
                ),
            );
        }
    }

    fn volume(&mut self, field: &str, volume: &VolumeSpec) {
        match quantity::parse(&volume.size) {
            Ok(bytes) if bytes > 0.0 => {}
            Ok(_) => self.problem(format!("{field}.size"), "must be positive"),
            Err(e) => self.problem(format!("{field}.size"), e.to_string()),
        }
        if volume.storage_class_name.as_deref() == Some("") {
            self.problem(
                format!("{field}.storageClassName"),
                "must not be empty; omit it to use the cluster's default StorageClass",
            );
        }
    }

    fn resources(&mut self, field: &str, resources: Option<&ResourceRequirements>) {
        let Some(r) = resources else { return };
        let empty = BTreeMap::new();
        let requests = r.requests.as_ref().unwrap_or(&empty);
        let limits = r.limits.as_ref().unwrap_or(&empty);
        for (kind, map) in [("requests", requests), ("limits", limits)] {
            for (resource, value) in map {
                if let Err(e) = quantity::parse(value) {
                    self.problem(format!("{field}.{kind}.{resource}"), e.to_string());
                }
            }
        }
        for (resource, request) in requests {
            let Some(limit) = limits.get(resource) else {
                continue;
            };
            if let (Ok(req), Ok(lim)) = (quantity::parse(request), quantity::parse(limit)) {
                if req > lim {
                    self.problem(
                        format!("{field}.requests.{resource}"),
                        format!(
                            "{} is above limits.{resource} ({}); Kubernetes refuses such pods",
                            request.0, limit.0
                        ),
                    );
                }
            }
        }
    }

    fn controllers(
        &mut self,
        spec: &ControllerSpec,
        namespace: &str,
        referenced: &Referenced,
    ) -> Controllers {
        if ![1, 3, 5].contains(&spec.replicas) {
            self.problem(
                "spec.controllers.replicas",
                format!(
                    "{} is not a Raft quorum size: use 1 (development), 3 or 5",
                    spec.replicas
                ),
            );
        }
        self.volume("spec.controllers.storage", &spec.storage);
        self.resources("spec.controllers.resources", spec.resources.as_ref());
        for (field, value) in [
            (
                "spec.controllers.rebalance.intervalSeconds",
                spec.rebalance.interval_seconds,
            ),
            (
                "spec.controllers.rebalance.cooldownSeconds",
                spec.rebalance.cooldown_seconds,
            ),
        ] {
            if value < 0 {
                self.problem(field, format!("{value} is negative"));
            }
        }
        let tls = spec
            .tls
            .as_ref()
            .and_then(|tls| self.controller_tls(tls, namespace, referenced));
        Controllers {
            replicas: spec.replicas,
            storage: spec.storage.clone(),
            resources: spec.resources.clone(),
            rebalance: spec.rebalance.clone(),
            tls,
        }
    }

    /// A TLS Secret's three PEM files (`ca.crt`, `tls.crt`, `tls.key`),
    /// or problems under `field`.
    fn tls_secret(
        &mut self,
        field: &str,
        name: &str,
        namespace: &str,
        secret: Option<&Secret>,
    ) -> Option<(Vec<u8>, Vec<u8>, Vec<u8>)> {
        if name.is_empty() {
            self.problem(field, "must name a Secret");
            return None;
        }
        let Some(secret) = secret.filter(|s| s.metadata.name.as_deref() == Some(name)) else {
            self.problem(
                field,
                format!(
                    "Secret {name:?} not found in namespace {namespace:?}: create it (a \
                     cert-manager Certificate, or `kubectl create secret generic`) with the \
                     keys ca.crt, tls.crt and tls.key"
                ),
            );
            return None;
        };
        let value = |key: &str| -> Vec<u8> {
            secret
                .data
                .as_ref()
                .and_then(|d| d.get(key))
                .map(|v| v.0.clone())
                .filter(|v| !v.is_empty())
                .or_else(|| {
                    secret
                        .string_data
                        .as_ref()
                        .and_then(|d| d.get(key))
                        .map(|v| v.as_bytes().to_vec())
                })
                .unwrap_or_default()
        };
        let (ca, cert, key) = (value("ca.crt"), value("tls.crt"), value("tls.key"));
        let mut ok = true;
        for (key, bytes, kind) in [
            ("ca.crt", &ca, "CERTIFICATE"),
            ("tls.crt", &cert, "CERTIFICATE"),
            ("tls.key", &key, "PRIVATE KEY"),
        ] {
            if !floe_controller::grpc::tls::is_pem(bytes, kind) {
                ok = false;
                self.problem(
                    field,
                    if bytes.is_empty() {
                        format!("Secret {name:?} has no non-empty key {key:?}")
                    } else {
                        format!("Secret {name:?} key {key:?} is not a PEM {kind}")
                    },
                );
            }
        }
        ok.then_some((ca, cert, key))
    }

    /// The controllers' TLS Secret and, when named, the brokers' own.
    fn controller_tls(
        &mut self,
        spec: &floe_crds::ControllerTlsSpec,
        namespace: &str,
        referenced: &Referenced,
    ) -> Option<ControllerTls> {
        let own = self.tls_secret(
            "spec.controllers.tls.secretName",
            &spec.secret_name,
            namespace,
            referenced.tls_secret.as_ref(),
        );
        let brokers = match &spec.broker_secret_name {
            None => Some(None),
            Some(name) if *name == spec.secret_name => {
                self.problem(
                    "spec.controllers.tls.brokerSecretName",
                    "must differ from secretName: the brokers would hold the controllers' \
                     certificate (leave it unset for one certificate for all)",
                );
                None
            }
            Some(name) => self
                .tls_secret(
                    "spec.controllers.tls.brokerSecretName",
                    name,
                    namespace,
                    referenced.broker_tls_secret.as_ref(),
                )
                .map(|_| Some(name.clone())),
        };
        let ((ca, cert, key), broker_secret_name) = (own?, brokers?);
        Some(ControllerTls {
            secret_name: spec.secret_name.clone(),
            ca,
            cert,
            key,
            broker_secret_name,
        })
    }

    fn brokers(
        &mut self,
        spec: &BrokerSpec,
        spot: &floe_crds::SpotSpec,
        pod_template: &PodTemplateOverrides,
    ) -> Brokers {
        if spec.replicas < 1 {
            self.problem("spec.brokers.replicas", "must be at least 1");
        }
        if let Some(min) = spec.min_replicas {
            if min < 1 {
                self.problem("spec.brokers.minReplicas", "must be at least 1");
            } else if spec.replicas < min {
                self.problem(
                    "spec.brokers.replicas",
                    format!("{} is below brokers.minReplicas ({min})", spec.replicas),
                );
            }
        }
        if let Some(max) = spec.max_replicas {
            if spec.replicas > max {
                self.problem(
                    "spec.brokers.replicas",
                    format!("{} is above brokers.maxReplicas ({max})", spec.replicas),
                );
            }
        }
        self.volume("spec.brokers.walVolume", &spec.wal_volume);
        self.resources("spec.brokers.resources", spec.resources.as_ref());

        let mut sets = Vec::new();
        if spot.enabled {
            if spot.node_selector.is_empty() {
                self.problem(
                    "spec.spot.nodeSelector",
                    "required when spot.enabled is true, e.g. karpenter.sh/capacity-type: spot \
                     or eks.amazonaws.com/capacityType: SPOT",
                );
            }
            for (key, value) in &spot.node_selector {
                if let Some(other) = pod_template.node_selector.get(key).filter(|v| *v != value) {
                    self.problem(
                        "spec.spot.nodeSelector",
                        format!(
                            "{key}={value} contradicts podTemplate.nodeSelector {key}={other}; \
                             no node could run a spot broker"
                        ),
                    );
                }
            }
            self.label_map("spec.spot.nodeSelector", &spot.node_selector);
            if spot.on_demand_brokers < 0 {
                self.problem("spec.spot.onDemandBrokers", "must not be negative");
            }
            let on_demand = spot.on_demand_brokers.clamp(0, spec.replicas.max(0));
            if spot.on_demand_brokers > 0 {
                sets.push(BrokerSet {
                    capacity: CapacityType::OnDemand,
                    replicas: on_demand,
                    first_ordinal: 0,
                    node_selector: BTreeMap::new(),
                    tolerations: Vec::new(),
                });
            }
            sets.push(BrokerSet {
                capacity: CapacityType::Spot,
                replicas: spec.replicas.max(0) - on_demand,
                first_ordinal: spot.on_demand_brokers.max(0),
                node_selector: spot.node_selector.clone(),
                tolerations: spot.tolerations.clone(),
            });
        } else {
            sets.push(BrokerSet {
                capacity: CapacityType::OnDemand,
                replicas: spec.replicas,
                first_ordinal: 0,
                node_selector: BTreeMap::new(),
                tolerations: Vec::new(),
            });
        }
        Brokers {
            replicas: spec.replicas,
            resources: spec.resources.clone(),
            wal_mode: spec.wal_mode,
            wal_volume: spec.wal_volume.clone(),
            sets,
        }
    }

    fn object_store(
        &mut self,
        spec: &ObjectStorageSpec,
        namespace: &str,
        name: &str,
        referenced: &Referenced,
    ) -> ObjectStore {
        if let Err(why) = check_bucket(&spec.bucket) {
            self.problem(
                "spec.objectStorage.bucket",
                format!("{:?} is not an S3 bucket name: {why}", spec.bucket),
            );
        }
        let prefix = match &spec.prefix {
            None => format!("{namespace}/{name}"),
            Some(p) => {
                let trimmed = p.trim_matches('/');
                let bad_segment = !trimmed.is_empty()
                    && trimmed
                        .split('/')
                        .any(|s| s.is_empty() || s == "." || s == "..");
                if bad_segment || trimmed.chars().any(char::is_control) {
                    self.problem(
                        "spec.objectStorage.prefix",
                        format!(
                            "{p:?} must be '/'-separated segments without empty, '.' or '..' segments"
                        ),
                    );
                }
                trimmed.to_string()
            }
        };
        if let Some(region) = &spec.region {
            if region.is_empty() || region.chars().any(char::is_whitespace) {
                self.problem(
                    "spec.objectStorage.region",
                    format!("{region:?} must be a non-empty region name such as eu-west-1; omit it for the default"),
                );
            }
        }
        if let Some(endpoint) = &spec.endpoint {
            let host = endpoint
                .strip_prefix("https://")
                .or_else(|| endpoint.strip_prefix("http://"));
            if host.is_none_or(|h| h.is_empty() || h.starts_with('/')) {
                self.problem(
                    "spec.objectStorage.endpoint",
                    format!("{endpoint:?} must be an http:// or https:// URL such as http://minio.storage:9000"),
                );
            }
            if spec.credentials_secret.is_none() {
                self.problem(
                    "spec.objectStorage.credentialsSecret",
                    "required when objectStorage.endpoint is set: S3-compatible servers have no \
                     ambient (IAM) credentials",
                );
            }
        }
        if let Some(creds) = &spec.credentials_secret {
            self.credentials(creds, namespace, referenced);
        }
        ObjectStore {
            bucket: spec.bucket.clone(),
            prefix,
            region: spec.region.clone(),
            endpoint: spec.endpoint.clone(),
            credentials: spec.credentials_secret.clone(),
        }
    }

    fn credentials(
        &mut self,
        creds: &CredentialsSecretRef,
        namespace: &str,
        referenced: &Referenced,
    ) {
        let field = "spec.objectStorage.credentialsSecret";
        if creds.name.is_empty() {
            self.problem(format!("{field}.name"), "must name a Secret");
            return;
        }
        for (key_field, key) in [
            ("accessKeyIdKey", &creds.access_key_id_key),
            ("secretAccessKeyKey", &creds.secret_access_key_key),
        ] {
            if key.is_empty() {
                self.problem(
                    format!("{field}.{key_field}"),
                    "must name a key of the Secret",
                );
            }
        }
        let secret = referenced
            .credentials_secret
            .as_ref()
            .filter(|s| s.metadata.name.as_deref() == Some(creds.name.as_str()));
        let Some(secret) = secret else {
            self.problem(
                format!("{field}.name"),
                format!(
                    "Secret {:?} not found in namespace {namespace:?}: create it with the keys {:?} and {:?}",
                    creds.name, creds.access_key_id_key, creds.secret_access_key_key
                ),
            );
            return;
        };
        let mut present: Vec<&str> = Vec::new();
        if let Some(data) = &secret.data {
            present.extend(
                data.iter()
                    .filter(|(_, v)| !v.0.is_empty())
                    .map(|(k, _)| k.as_str()),
            );
        }
        if let Some(data) = &secret.string_data {
            present.extend(
                data.iter()
                    .filter(|(_, v)| !v.is_empty())
                    .map(|(k, _)| k.as_str()),
            );
        }
        for (key_field, key) in [
            ("accessKeyIdKey", &creds.access_key_id_key),
            ("secretAccessKeyKey", &creds.secret_access_key_key),
        ] {
            if !key.is_empty() && !present.contains(&key.as_str()) {
                self.problem(
                    format!("{field}.{key_field}"),
                    format!(
                        "Secret {:?} has no non-empty key {key:?} (it has: {}); add the key or set {key_field}",
                        creds.name,
                        if present.is_empty() { "none".to_string() } else { present.join(", ") }
                    ),
                );
            }
        }
    }

    fn listener(&mut self, port: i32, template: &str, cluster: &str, namespace: &str) -> Listener {
        if !(1..=65535).contains(&port) {
            self.problem(
                "spec.listeners.port",
                format!("{port} is not a TCP port (1-65535)"),
            );
        } else if port == HEALTH_PORT {
            self.problem(
                "spec.listeners.port",
                format!("{port} is the port Floe pods serve health and metrics on; pick another"),
            );
        }
        let service = names::broker_headless_service(cluster);
        // A missing namespace is reported on its own; do not let it make the
        // template look broken too.
        let namespace = if namespace.is_empty() {
            "default"
        } else {
            namespace
        };
        let expand = |pod: &str, ordinal: &str| {
            expand_template(
                template,
                &[
                    ("pod", pod),
                    ("ordinal", ordinal),
                    ("service", &service),
                    ("namespace", namespace),
                    ("cluster", cluster),
                ],
            )
        };
        let advertised_host = match expand(
            &format!("$({POD_NAME_ENV})"),
            &format!("$({BROKER_ID_ENV})"),
        ) {
            Err(why) => {
                self.problem("spec.listeners.advertisedHost", why);
                String::new()
            }
            Ok(host) => {
                if !template.contains("{pod}") && !template.contains("{ordinal}") {
                    self.problem(
                        "spec.listeners.advertisedHost",
                        "must contain {pod} or {ordinal} so that every broker advertises its own address",
                    );
                }
                // Check the shape with the longest pod name this cluster can have.
                let sample_pod = format!(
                    "{}-99999",
                    names::broker_statefulset(cluster, CapacityType::Spot)
                );
                if let Ok(sample) = expand(&sample_pod, "99999") {
                    if !is_dns_subdomain(&sample) {
                        self.problem(
                            "spec.listeners.advertisedHost",
                            format!(
                                "{template:?} expands to {sample:?}, which is not a DNS name \
                                 (lowercase letters, digits, '-' and '.', labels of at most 63 characters)"
                            ),
                        );
                    }
                }
                host
            }
        };
        Listener {
            port,
            advertised_host,
        }
    }

    fn pod_template(&mut self, t: &PodTemplateOverrides) {
        for key in t.labels.keys() {
            if labels::is_reserved_key(key) {
                self.problem(
                    "spec.podTemplate.labels",
                    format!("{key:?} uses a prefix the operator owns (app.kubernetes.io/, floe.dev/); choose another key"),
                );
            }
        }
        self.label_map("spec.podTemplate.labels", &t.labels);
        for key in t.annotations.keys() {
            if key.starts_with("floe.dev/") {
                self.problem(
                    "spec.podTemplate.annotations",
                    format!(
                        "{key:?} uses the floe.dev/ prefix the operator owns; choose another key"
                    ),
                );
            } else if !is_label_key(key) {
                self.problem(
                    "spec.podTemplate.annotations",
                    format!("{key:?} is not a valid annotation key"),
                );
            }
        }
        self.label_map("spec.podTemplate.nodeSelector", &t.node_selector);
        if t.priority_class_name.as_deref() == Some("") {
            self.problem(
                "spec.podTemplate.priorityClassName",
                "must not be empty; omit it for the default priority",
            );
        }
    }

    fn label_map(&mut self, field: &str, map: &BTreeMap<String, String>) {
        for (key, value) in map {
            if !is_label_key(key) {
                self.problem(field, format!("{key:?} is not a valid label key"));
            }
            if !is_label_value(value) {
                self.problem(
                    field,
                    format!("{key}={value:?}: a label value has at most 63 letters, digits, '-', '_' and '.', starting and ending with a letter or digit"),
                );
            }
        }
    }
}
