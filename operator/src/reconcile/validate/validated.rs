//! What validation produces: the spec with every default resolved, in the
//! shape `build` consumes.

use std::collections::BTreeMap;

use floe_crds::{
    CapacityType, CredentialsSecretRef, PodTemplateOverrides, PullPolicy, ReclaimPolicy,
    VolumeSpec, WalMode, WhenUnsatisfiable,
};
use k8s_openapi::api::core::v1::{ResourceRequirements, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

/// The image used when `spec.image` is unset: this repository's `floe`
/// binary at the operator's version.
pub const DEFAULT_IMAGE: &str = concat!("floe:", env!("CARGO_PKG_VERSION"));

/// A spec that passed validation, with every default resolved: what `build`
/// needs and nothing it would have to re-check.
#[derive(Clone, Debug, PartialEq)]
pub struct ValidatedCluster {
    /// `metadata.name`.
    pub name: String,
    /// `metadata.namespace`.
    pub namespace: String,
    /// `metadata.generation`, echoed into status conditions.
    pub generation: Option<i64>,
    /// The controller owner reference every child carries.
    pub owner: OwnerReference,
    /// Container image of controllers and brokers.
    pub image: String,
    /// Image pull policy, when set.
    pub image_pull_policy: Option<PullPolicy>,
    /// The Raft quorum.
    pub controllers: Controllers,
    /// The brokers.
    pub brokers: Brokers,
    /// The bucket.
    pub object_store: ObjectStore,
    /// The Kafka listener.
    pub listener: Listener,
    /// Zone spread, when enabled.
    pub zone_spread: Option<ZoneSpread>,
    /// The user's pod additions.
    pub pod_template: PodTemplateOverrides,
    /// Annotations of the ServiceAccount.
    pub service_account_annotations: BTreeMap<String, String>,
    /// What deleting the cluster does to its data.
    pub reclaim_policy: ReclaimPolicy,
}

/// The Raft quorum.
#[derive(Clone, Debug, PartialEq)]
pub struct Controllers {
    /// Voters: 1, 3 or 5.
    pub replicas: i32,
    /// The Raft log volume.
    pub storage: VolumeSpec,
    /// Container resources.
    pub resources: Option<ResourceRequirements>,
    /// Automatic rebalancing by the leader.
    pub rebalance: floe_crds::RebalanceSpec,
    /// Mutual TLS on the controllers' ports, when configured.
    pub tls: Option<ControllerTls>,
}

/// The certificates for mutual TLS with the controllers, as read from
/// their Secret (the operator presents them too).
#[derive(Clone, PartialEq)]
pub struct ControllerTls {
    /// The Secret pods mount.
    pub secret_name: String,
    /// `ca.crt`, `tls.crt`, `tls.key` (PEM).
    pub ca: Vec<u8>,
    pub cert: Vec<u8>,
    pub key: Vec<u8>,
    /// The brokers' own Secret, when they do not share the controllers'
    /// (then only the controllers' names may speak Raft).
    pub broker_secret_name: Option<String>,
}

impl ControllerTls {
    /// A stable digest of the three files: the operator's client to the
    /// controllers is made again when it changes (a renewal).
    pub fn digest(&self) -> String {
        crate::labels::stable_digest([&self.ca[..], &self.cert, &self.key])
    }
}

impl std::fmt::Debug for ControllerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControllerTls")
            .field("secret_name", &self.secret_name)
            .field("broker_secret_name", &self.broker_secret_name)
            .field("digest", &self.digest())
            .finish_non_exhaustive()
    }
}

impl Controllers {
    /// Voters that must be up for the quorum to make progress.
    pub fn majority(&self) -> i32 {
        self.replicas / 2 + 1
    }
}

/// The brokers, split into StatefulSets by placement.
#[derive(Clone, Debug, PartialEq)]
pub struct Brokers {
    /// Total broker count (`spec.brokers.replicas`).
    pub replicas: i32,
    /// Container resources.
    pub resources: Option<ResourceRequirements>,
    /// Where produce is acknowledged.
    pub wal_mode: WalMode,
    /// WAL volume (claim template in `volume` mode, emptyDir size limit in `object` mode).
    pub wal_volume: VolumeSpec,
    /// One entry per broker StatefulSet: on-demand first, then spot.
    pub sets: Vec<BrokerSet>,
}

/// One broker StatefulSet.
#[derive(Clone, Debug, PartialEq)]
pub struct BrokerSet {
    /// Node kind, and the StatefulSet's name suffix.
    pub capacity: CapacityType,
    /// Pods in this set (may be 0 for the spot set).
    pub replicas: i32,
    /// Ordinal of the set's first pod (`spec.ordinals.start`): on-demand
    /// brokers are `0..onDemandBrokers`, spot brokers start at
    /// `onDemandBrokers`, so ordinals — and the broker ids derived from them —
    /// are unique across both sets.
    pub first_ordinal: i32,
    /// Node selector added for this placement (the spot selector).
    pub node_selector: BTreeMap<String, String>,
    /// Tolerations added for this placement (the spot tolerations).
    pub tolerations: Vec<Toleration>,
}

/// The bucket and how to reach it.
#[derive(Clone, Debug, PartialEq)]
pub struct ObjectStore {
    /// Bucket name.
    pub bucket: String,
    /// Key prefix, without leading or trailing `/`; empty for the bucket root.
    pub prefix: String,
    /// `AWS_REGION`, when set.
    pub region: Option<String>,
    /// `AWS_ENDPOINT_URL`, when set.
    pub endpoint: Option<String>,
    /// Static credentials, when set.
    pub credentials: Option<CredentialsSecretRef>,
}

impl ObjectStore {
    /// The broker's `--object-store` URL.
    pub fn url(&self) -> String {
        if self.prefix.is_empty() {
            format!("s3://{}", self.bucket)
        } else {
            format!("s3://{}/{}", self.bucket, self.prefix)
        }
    }
}

/// The Kafka listener.
#[derive(Clone, Debug, PartialEq)]
pub struct Listener {
    /// Container and Service port.
    pub port: i32,
    /// Advertised host with Kubernetes `$(VAR)` references to the pod's
    /// environment ([`POD_NAME_ENV`], [`BROKER_ID_ENV`]) for the per-pod parts.
    pub advertised_host: String,
}

/// Environment variable holding the pod's name (downward API).
pub const POD_NAME_ENV: &str = "POD_NAME";
/// Environment variable holding the broker's id: its StatefulSet ordinal.
pub const BROKER_ID_ENV: &str = "FLOE_BROKER_ID";

/// Topology spread of controllers and brokers.
#[derive(Clone, Debug, PartialEq)]
pub struct ZoneSpread {
    /// Node label naming the domain.
    pub topology_key: String,
    /// Largest allowed imbalance.
    pub max_skew: i32,
    /// What to do when the spread cannot be met.
    pub when_unsatisfiable: WhenUnsatisfiable,
}
