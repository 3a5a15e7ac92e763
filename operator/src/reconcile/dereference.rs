//! Dereference (I/O only): read the objects a `KafkaCluster` spec points at —
//! one `get` per reference, a missing object becomes `None`. Validation
//! decides what a missing reference means; the controller watches the
//! referenced Secrets so that creating or fixing one triggers a reconcile.

use floe_crds::KafkaCluster;
use k8s_openapi::api::core::v1::Secret;
use kube::{Api, Client};

/// Referenced objects, read before validation.
#[derive(Clone, Debug, Default)]
pub struct Referenced {
    /// `spec.objectStorage.credentialsSecret`, if the spec names one and it exists.
    pub credentials_secret: Option<Secret>,
}

/// Reading a referenced object failed (other than it not existing).
#[derive(Debug, thiserror::Error)]
#[error("reading Secret {namespace}/{name} failed: {source}; the operator needs `get` on Secrets in this namespace")]
pub struct DereferenceError {
    /// Namespace of the Secret.
    pub namespace: String,
    /// Name of the Secret.
    pub name: String,
    /// The API error.
    #[source]
    pub source: kube::Error,
}

/// Read the objects `cluster` references.
pub async fn dereference(
    client: &Client,
    cluster: &KafkaCluster,
) -> Result<Referenced, DereferenceError> {
    let namespace = cluster.metadata.namespace.clone().unwrap_or_default();
    let mut referenced = Referenced::default();
    if let Some(secret) = &cluster.spec.object_storage.credentials_secret {
        if !secret.name.is_empty() && !namespace.is_empty() {
            let api: Api<Secret> = Api::namespaced(client.clone(), &namespace);
            referenced.credentials_secret =
                api.get_opt(&secret.name)
                    .await
                    .map_err(|source| DereferenceError {
                        namespace: namespace.clone(),
                        name: secret.name.clone(),
                        source,
                    })?;
        }
    }
    Ok(referenced)
}

/// The Secret names a KafkaCluster references (for mapping Secret events
/// back to the clusters that use them).
pub fn referenced_secrets(cluster: &KafkaCluster) -> impl Iterator<Item = &str> {
    cluster
        .spec
        .object_storage
        .credentials_secret
        .iter()
        .map(|s| s.name.as_str())
}
