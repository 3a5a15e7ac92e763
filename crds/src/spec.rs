//! The `KafkaCluster` spec: what a user declares. Doc comments here become the
//! CRD's field descriptions (`kubectl explain kafkacluster.spec`), so they are
//! written for users.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::placement::{PodTemplateOverrides, SpotSpec, ZoneSpreadSpec};
use crate::status::KafkaClusterStatus;

/// Longest `metadata.name` of a KafkaCluster: the longest child name
/// (`<name>-broker-spot`) plus the StatefulSet's `-<revision hash>` suffix
/// must fit a 63-character label value.
pub const MAX_CLUSTER_NAME_LEN: usize = 40;

/// The port every Floe pod serves `/healthz`, `/readyz` and `/metrics` on;
/// the Kafka listener may not use it.
pub const HEALTH_PORT: i32 = 8080;

/// Default advertised host: the broker pod's stable DNS name.
pub const DEFAULT_ADVERTISED_HOST: &str = "{pod}.{service}.{namespace}.svc";

/// A Floe cluster: a Raft quorum of metadata controllers and a scalable set of
/// Kafka-compatible brokers that keep their data in object storage.
#[derive(CustomResource, KubeSchema, Clone, Debug, Deserialize, Serialize, PartialEq)]
#[kube(
    group = "floe.dev",
    version = "v1alpha1",
    kind = "KafkaCluster",
    plural = "kafkaclusters",
    shortname = "kc",
    category = "floe",
    namespaced,
    status = "KafkaClusterStatus",
    derive = "PartialEq",
    doc = "A Floe cluster: Kafka-compatible brokers on object storage with a Raft metadata quorum.",
    scale(
        spec_replicas_path = ".spec.brokers.replicas",
        status_replicas_path = ".status.replicas",
        label_selector_path = ".status.selector"
    ),
    printcolumn(
        name = "Brokers",
        type_ = "integer",
        description = "Desired broker count",
        json_path = ".spec.brokers.replicas"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        description = "Whether every controller and broker is ready",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "WAL mode",
        type_ = "string",
        description = "Where produce is acknowledged: volume (WAL fsync) or object (object PUT)",
        json_path = ".spec.brokers.walMode"
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    validation = Rule::new("size(self.metadata.name) <= 40")
        .message("metadata.name must be at most 40 characters: child objects append suffixes such as -broker-spot"),
)]
#[serde(rename_all = "camelCase")]
pub struct KafkaClusterSpec {
    /// Container image for controllers and brokers. Default: the Floe image
    /// matching the operator's version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("size(self) > 0").message("image must not be empty; omit it to use the operator's default"))]
    pub image: Option<String>,
    /// Image pull policy for all Floe containers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<PullPolicy>,
    /// The Raft metadata quorum.
    #[serde(default)]
    pub controllers: ControllerSpec,
    /// The Kafka-compatible brokers. `spec.brokers.replicas` is what `/scale`
    /// (kubectl scale, HPA) changes.
    #[serde(default)]
    pub brokers: BrokerSpec,
    /// Where the data lives: an S3-compatible bucket.
    pub object_storage: ObjectStorageSpec,
    /// The Kafka client listener.
    #[serde(default)]
    pub listeners: ListenersSpec,
    /// Spread controllers and brokers across zones.
    #[serde(default)]
    pub zone_spread: ZoneSpreadSpec,
    /// Place brokers on spot (preemptible) nodes.
    #[serde(default)]
    pub spot: SpotSpec,
    /// Extra labels, annotations and scheduling constraints for every Floe pod.
    #[serde(default)]
    pub pod_template: PodTemplateOverrides,
    /// The ServiceAccount Floe pods run as (e.g. annotations for IAM roles for
    /// service accounts).
    #[serde(default)]
    pub service_account: ServiceAccountSpec,
    /// What happens to the data when the KafkaCluster is deleted: `Retain` keeps
    /// the object-store data and the metadata/WAL volumes, `Delete` removes them.
    #[serde(default)]
    pub reclaim_policy: ReclaimPolicy,
}

/// The Raft metadata quorum.
#[derive(KubeSchema, Clone, Debug, Deserialize, Serialize, PartialEq)]
#[x_kube(validation = Rule::new("has(self.tls) == has(oldSelf.tls)")
    .message("controllers.tls cannot be turned on or off in v1alpha1: controllers and brokers of both kinds could not talk while the pods roll")
    .field_path(".tls"))]
#[serde(rename_all = "camelCase")]
pub struct ControllerSpec {
    /// Number of Raft voters (the quorum size): 1 for development, 3 or 5 in
    /// production. Fixed at creation in v1alpha1.
    #[serde(default = "default_controller_replicas")]
    #[schemars(range(min = 1, max = 5))]
    #[x_kube(
        validation = Rule::new("self % 2 == 1").message("controllers.replicas is the Raft quorum size and must be odd: 1, 3 or 5"),
        validation = Rule::new("self == oldSelf").message("controllers.replicas is immutable in v1alpha1: Raft membership changes are not automated yet")
    )]
    pub replicas: i32,
    /// The volume each controller keeps its Raft log and snapshots on.
    #[serde(default = "default_controller_storage")]
    #[x_kube(validation = Rule::new("self == oldSelf").message("controllers.storage is immutable: StatefulSet volume claim templates cannot change"))]
    pub storage: VolumeSpec,
    /// CPU and memory for each controller.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Automatic rebalancing by the controller leader.
    #[serde(default)]
    pub rebalance: RebalanceSpec,
    /// Mutual TLS on the controllers' ports (Raft and metadata): controllers,
    /// brokers and the operator present certificates of one authority.
    /// Unset: plaintext, for networks that are private to the cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<ControllerTlsSpec>,
}

/// Where the certificates for mutual TLS with the controllers are.
#[derive(KubeSchema, Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ControllerTlsSpec {
    /// A Secret in the KafkaCluster's namespace with `ca.crt` (the
    /// authority), `tls.crt` and `tls.key` (PEM), as cert-manager writes
    /// them. Its certificate must name every controller pod's DNS name
    /// (`*.<cluster>-controller-headless.<namespace>.svc`, see docs/operator.md) and
    /// be usable as both server and client certificate. A renewed
    /// certificate is picked up by the running pods (no restart).
    #[schemars(length(min = 1))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("controllers.tls.secretName is immutable in v1alpha1; renew the certificate in the same Secret instead"))]
    pub secret_name: String,
    /// A Secret of the same form for the brokers, signed by the same
    /// authority, whose certificate does not carry the controllers' names.
    /// When set, brokers mount it instead of `secretName`, and only
    /// certificates named like a controller pod may speak Raft to the
    /// controllers (`*.<cluster>-controller-headless.<namespace>.svc`):
    /// a broker's certificate can then neither vote nor append entries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub broker_secret_name: Option<String>,
}

impl Default for ControllerSpec {
    fn default() -> Self {
        Self {
            replicas: default_controller_replicas(),
            storage: default_controller_storage(),
            resources: None,
            rebalance: RebalanceSpec::default(),
            tls: None,
        }
    }
}

/// When the controller leader rebalances by itself: it checks every
/// `intervalSeconds` whether the brokers' load (partitions, weighted by the
/// bytes per second their leaders measure) is out of balance, and moves
/// partitions once no partition has changed leader for `cooldownSeconds`.
/// The operator still asks for a rebalance right after a scale-out or a
/// rolling restart.
#[derive(KubeSchema, Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RebalanceSpec {
    /// Seconds between checks; 0 turns automatic rebalancing off.
    #[serde(default = "default_rebalance_interval_seconds")]
    #[schemars(range(min = 0, max = 86_400))]
    pub interval_seconds: i32,
    /// Seconds without any leader change (move or failover) before an
    /// automatic rebalance.
    #[serde(default = "default_rebalance_cooldown_seconds")]
    #[schemars(range(min = 0, max = 604_800))]
    pub cooldown_seconds: i32,
}

impl Default for RebalanceSpec {
    fn default() -> Self {
        Self {
            interval_seconds: default_rebalance_interval_seconds(),
            cooldown_seconds: default_rebalance_cooldown_seconds(),
        }
    }
}

fn default_rebalance_interval_seconds() -> i32 {
    30
}

fn default_rebalance_cooldown_seconds() -> i32 {
    300
}

fn default_controller_replicas() -> i32 {
    3
}

fn default_controller_storage() -> VolumeSpec {
    VolumeSpec {
        size: Quantity("10Gi".into()),
        storage_class_name: None,
    }
}

/// The brokers.
#[derive(KubeSchema, Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("!has(self.minReplicas) || self.minReplicas <= self.replicas")
        .message(Message::Expression("'brokers.replicas (' + string(self.replicas) + ') is below brokers.minReplicas (' + string(self.minReplicas) + ')'".into()))
        .field_path(".replicas"),
    validation = Rule::new("!has(self.maxReplicas) || self.replicas <= self.maxReplicas")
        .message(Message::Expression("'brokers.replicas (' + string(self.replicas) + ') is above brokers.maxReplicas (' + string(self.maxReplicas) + ')'".into()))
        .field_path(".replicas"),
)]
pub struct BrokerSpec {
    /// Number of brokers. Changed by `kubectl scale` and the HPA through the
    /// `/scale` subresource; the operator drains brokers before removing them.
    #[serde(default = "default_broker_replicas")]
    #[schemars(range(min = 1))]
    pub replicas: i32,
    /// Lowest broker count `/scale` may set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub min_replicas: Option<i32>,
    /// Highest broker count `/scale` may set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_replicas: Option<i32>,
    /// CPU and memory for each broker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Where produce is acknowledged: `volume` after the WAL on the broker's
    /// volume is fsynced (low latency), `object` after the object-store PUT (no
    /// volume; higher latency). Fixed at creation.
    #[serde(default)]
    #[x_kube(validation = Rule::new("self == oldSelf").message("brokers.walMode is immutable: create a new KafkaCluster to change where produce is acknowledged"))]
    pub wal_mode: WalMode,
    /// The WAL volume of each broker in `volume` mode. In `object` mode the size
    /// caps the broker's scratch emptyDir.
    #[serde(default = "default_wal_volume")]
    #[x_kube(validation = Rule::new("self == oldSelf").message("brokers.walVolume is immutable: StatefulSet volume claim templates cannot change"))]
    pub wal_volume: VolumeSpec,
}

impl Default for BrokerSpec {
    fn default() -> Self {
        Self {
            replicas: default_broker_replicas(),
            min_replicas: None,
            max_replicas: None,
            resources: None,
            wal_mode: WalMode::default(),
            wal_volume: default_wal_volume(),
        }
    }
}

fn default_broker_replicas() -> i32 {
    3
}

fn default_wal_volume() -> VolumeSpec {
    VolumeSpec {
        size: Quantity("20Gi".into()),
        storage_class_name: None,
    }
}

/// Where produce is acknowledged (the broker's `--wal-mode`).
#[derive(JsonSchema, Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum WalMode {
    /// After the local WAL fsync; needs a volume per broker.
    #[default]
    Volume,
    /// After the object-store PUT; no volume.
    Object,
}

impl WalMode {
    /// The value of the broker's `--wal-mode` flag.
    pub fn as_str(self) -> &'static str {
        match self {
            WalMode::Volume => "volume",
            WalMode::Object => "object",
        }
    }
}

/// A persistent volume claim per pod.
#[derive(JsonSchema, Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct VolumeSpec {
    /// Requested size, e.g. `20Gi`.
    pub size: Quantity,
    /// StorageClass of the claim; the cluster's default class when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class_name: Option<String>,
}

/// An S3-compatible bucket.
#[derive(KubeSchema, Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.endpoint) || has(self.credentialsSecret)")
    .message("objectStorage.credentialsSecret is required when objectStorage.endpoint is set: S3-compatible servers have no ambient (IAM) credentials")
    .field_path(".credentialsSecret"))]
pub struct ObjectStorageSpec {
    /// Bucket name (S3 naming rules: 3-63 lowercase letters, digits, dots and hyphens).
    #[schemars(
        length(min = 3, max = 63),
        regex(pattern = r"^[a-z0-9][a-z0-9.-]*[a-z0-9]$")
    )]
    pub bucket: String,
    /// Key prefix inside the bucket, so several clusters can share one bucket.
    /// Default: `<namespace>/<name>` of the KafkaCluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// Region of the bucket (`AWS_REGION`). Unset: the broker's default
    /// (`AWS_REGION` from the environment, else `us-east-1`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Endpoint of an S3-compatible server (MinIO, Ceph, R2, ...), e.g.
    /// `http://minio.storage:9000`. Unset: AWS S3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self.startsWith('http://') || self.startsWith('https://')").message("objectStorage.endpoint must be an http:// or https:// URL"))]
    pub endpoint: Option<String>,
    /// Secret with static credentials. Unset: ambient credentials (IAM roles for
    /// service accounts, EKS Pod Identity, instance profile).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret: Option<CredentialsSecretRef>,
}

/// A Secret in the KafkaCluster's namespace holding S3 credentials.
#[derive(JsonSchema, Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CredentialsSecretRef {
    /// Name of the Secret.
    #[schemars(length(min = 1))]
    pub name: String,
    /// Key holding the access key ID.
    #[serde(default = "default_access_key_id_key")]
    #[schemars(length(min = 1))]
    pub access_key_id_key: String,
    /// Key holding the secret access key.
    #[serde(default = "default_secret_access_key_key")]
    #[schemars(length(min = 1))]
    pub secret_access_key_key: String,
}

fn default_access_key_id_key() -> String {
    "AWS_ACCESS_KEY_ID".into()
}

fn default_secret_access_key_key() -> String {
    "AWS_SECRET_ACCESS_KEY".into()
}

/// The Kafka client listener.
#[derive(KubeSchema, Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ListenersSpec {
    /// Kafka port on every broker and on the bootstrap Service.
    #[serde(default = "default_kafka_port")]
    #[schemars(range(min = 1, max = 65535))]
    #[x_kube(validation = Rule::new("self != 8080").message("listeners.port must not be 8080: Floe pods serve health and metrics there"))]
    pub port: i32,
    /// Host each broker advertises to clients. Placeholders: `{pod}` (pod
    /// name), `{ordinal}` (pod index), `{service}` (the brokers' headless
    /// Service), `{namespace}`, `{cluster}`. Must contain `{pod}` or `{ordinal}`
    /// so that every broker gets its own address.
    #[serde(default = "default_advertised_host")]
    #[schemars(length(min = 1, max = 253))]
    #[x_kube(validation = Rule::new("self.contains('{pod}') || self.contains('{ordinal}')").message("listeners.advertisedHost must contain {pod} or {ordinal} so that every broker advertises its own address"))]
    pub advertised_host: String,
}

impl Default for ListenersSpec {
    fn default() -> Self {
        Self {
            port: default_kafka_port(),
            advertised_host: default_advertised_host(),
        }
    }
}

fn default_kafka_port() -> i32 {
    9092
}

fn default_advertised_host() -> String {
    DEFAULT_ADVERTISED_HOST.into()
}

/// The ServiceAccount of Floe pods.
#[derive(JsonSchema, Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ServiceAccountSpec {
    /// Annotations, e.g. `eks.amazonaws.com/role-arn` for IAM roles for service accounts.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// Image pull policy.
#[derive(JsonSchema, Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
pub enum PullPolicy {
    /// Pull on every start.
    Always,
    /// Pull when the node does not have the image.
    IfNotPresent,
    /// Never pull.
    Never,
}

impl PullPolicy {
    /// The Kubernetes spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            PullPolicy::Always => "Always",
            PullPolicy::IfNotPresent => "IfNotPresent",
            PullPolicy::Never => "Never",
        }
    }
}

/// What deleting the KafkaCluster does to its data.
#[derive(JsonSchema, Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
pub enum ReclaimPolicy {
    /// Keep the object-store data and the controllers' and brokers' volumes.
    #[default]
    Retain,
    /// Delete the object-store data under the prefix and the volumes.
    Delete,
}
