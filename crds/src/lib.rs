//! Floe's Kubernetes API: the `KafkaCluster` custom resource (`floe.dev/v1alpha1`)
//! as Rust types, and the CustomResourceDefinition generated from them.
//!
//! The types are the contract between users (`kubectl apply`, Argo CD, HPA
//! through `/scale`) and the operator. Everything the API server can check on
//! its own is in the schema: enums, ranges, patterns and CEL rules (an odd
//! quorum, `minReplicas <= replicas <= maxReplicas`, immutable WAL mode and
//! volumes). The operator's pure `validate` step re-checks these and adds the
//! rules that need other objects (the credentials Secret) or string parsing.
//!
//! `crds/kafkacluster.yaml` is generated from these types; a test fails when it
//! drifts (`FLOE_UPDATE_CRDS=1 cargo test -p floe-crds` rewrites it).

pub mod placement;
pub mod spec;
pub mod status;

pub use placement::{
    PodTemplateOverrides, SpotSpec, WhenUnsatisfiable, ZoneSpreadSpec, DEFAULT_ZONE_TOPOLOGY_KEY,
};
pub use spec::{
    BrokerSpec, ControllerSpec, ControllerTlsSpec, CredentialsSecretRef, KafkaCluster,
    KafkaClusterSpec, ListenersSpec, ObjectStorageSpec, PullPolicy, RebalanceSpec, ReclaimPolicy,
    ServiceAccountSpec, VolumeSpec, WalMode, DEFAULT_ADVERTISED_HOST, HEALTH_PORT,
    MAX_CLUSTER_NAME_LEN,
};
pub use status::{
    condition, BrokerStatus, CapacityType, KafkaClusterStatus, ReassignmentOutcome,
    ReassignmentStatus, ReassignmentTrigger,
};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

/// The `KafkaCluster` CustomResourceDefinition, as committed in `crds/kafkacluster.yaml`.
pub fn crd() -> CustomResourceDefinition {
    KafkaCluster::crd()
}
