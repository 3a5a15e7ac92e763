//! The objects a `KafkaCluster` spec points at, as the dereference step reads
//! them. This slice has only the data: the reconciler (next) fills it from the
//! API server — one `get` per reference, a missing object becomes `None` —
//! and watches the referenced Secrets so that creating or fixing one triggers
//! a new reconcile. Validation decides what a missing reference means.

use k8s_openapi::api::core::v1::Secret;

/// Referenced objects, read before validation.
#[derive(Clone, Debug, Default)]
pub struct Referenced {
    /// `spec.objectStorage.credentialsSecret`, if the spec names one and it exists.
    pub credentials_secret: Option<Secret>,
}
