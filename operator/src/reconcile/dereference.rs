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
    /// `spec.controllers.tls.secretName`, if the spec names one and it exists.
    pub tls_secret: Option<Secret>,
    /// `spec.controllers.tls.brokerSecretName`, likewise.
    pub broker_tls_secret: Option<Secret>,
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
    let get = |name: String| {
        let api: Api<Secret> = Api::namespaced(client.clone(), &namespace);
        let namespace = namespace.clone();
        async move {
            if name.is_empty() || namespace.is_empty() {
                return Ok(None);
            }
            api.get_opt(&name).await.map_err(|source| DereferenceError {
                namespace,
                name,
                source,
            })
        }
    };
    let spec = &cluster.spec;
    Ok(Referenced {
        credentials_secret: match &spec.object_storage.credentials_secret {
            Some(secret) => get(secret.name.clone()).await?,
            None => None,
        },
        tls_secret: match &spec.controllers.tls {
            Some(tls) => get(tls.secret_name.clone()).await?,
            None => None,
        },
        broker_tls_secret: match spec
            .controllers
            .tls
            .as_ref()
            .and_then(|t| t.broker_secret_name.clone())
        {
            Some(name) => get(name).await?,
            None => None,
        },
    })
}

/// The Secret names a KafkaCluster references (for mapping Secret events
/// back to the clusters that use them).
pub fn referenced_secrets(cluster: &KafkaCluster) -> impl Iterator<Item = &str> {
    let spec = &cluster.spec;
    spec.object_storage
        .credentials_secret
        .iter()
        .map(|s| s.name.as_str())
        .chain(spec.controllers.tls.iter().map(|t| t.secret_name.as_str()))
        .chain(
            spec.controllers
                .tls
                .iter()
                .filter_map(|t| t.broker_secret_name.as_deref()),
        )
}
