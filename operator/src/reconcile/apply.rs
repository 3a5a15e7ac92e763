//! Apply (I/O): server-side apply of every built child, in the fixed order of
//! [`Children::in_apply_order`], under the one field manager
//! [`labels::MANAGER`] with `force` (the operator owns these fields; a
//! conflicting manager loses them), then the orphan sweep: children carrying
//! the cluster's labels and owned by it that the build no longer produces are
//! deleted.
//!
//! Re-applying an unchanged child is a no-op for the API server (same
//! `resourceVersion`), so a re-run under GitOps changes nothing.

use std::collections::BTreeSet;
use std::fmt::Debug;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Service, ServiceAccount};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::NamespaceResourceScope;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::build::{Child, Children};
use crate::labels;

/// A failed API call of the apply stage.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// Server-side apply of a child failed.
    #[error("applying {kind} {namespace}/{name} failed: {source}")]
    Apply {
        /// Kind of the child.
        kind: &'static str,
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// Listing children for the orphan sweep failed.
    #[error("listing {kind}s of cluster {namespace}/{cluster} failed: {source}")]
    List {
        /// Kind listed.
        kind: &'static str,
        /// Namespace.
        namespace: String,
        /// The cluster.
        cluster: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// Deleting an orphan failed.
    #[error("deleting orphaned {kind} {namespace}/{name} failed: {source}")]
    Delete {
        /// Kind of the orphan.
        kind: &'static str,
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
}

impl ApplyError {
    /// The underlying API error.
    pub fn api_error(&self) -> &kube::Error {
        match self {
            ApplyError::Apply { source, .. }
            | ApplyError::List { source, .. }
            | ApplyError::Delete { source, .. } => source,
        }
    }
}

/// Apply every child in order, then delete the orphans of `cluster`;
/// returns `Kind/name` of every orphan deleted.
pub async fn apply(
    client: &Client,
    namespace: &str,
    cluster: &str,
    children: &Children,
) -> Result<Vec<String>, ApplyError> {
    for child in children.in_apply_order() {
        match child {
            Child::ServiceAccount(o) => ssa(client, namespace, o).await?,
            Child::ConfigMap(o) => ssa(client, namespace, o).await?,
            Child::Service(o) => ssa(client, namespace, o).await?,
            Child::PodDisruptionBudget(o) => ssa(client, namespace, o).await?,
            Child::StatefulSet(o) => ssa(client, namespace, o).await?,
        }
    }
    let wanted = |kind: &str| -> BTreeSet<String> {
        children
            .in_apply_order()
            .iter()
            .filter(|c| c.kind() == kind)
            .map(|c| c.name().to_string())
            .collect()
    };
    let owner = &children.service_account.metadata.owner_references;
    let owner_uid = owner
        .as_ref()
        .and_then(|o| o.first())
        .map(|o| o.uid.clone())
        .unwrap_or_default();
    let sweep = Sweep {
        client,
        namespace,
        cluster,
        owner_uid: &owner_uid,
    };
    let mut deleted = Vec::new();
    let d = &mut deleted;
    // Reverse apply order: pods' owners before what the pods use.
    sweep
        .run::<StatefulSet>("StatefulSet", &wanted("StatefulSet"), d)
        .await?;
    sweep
        .run::<PodDisruptionBudget>("PodDisruptionBudget", &wanted("PodDisruptionBudget"), d)
        .await?;
    sweep
        .run::<Service>("Service", &wanted("Service"), d)
        .await?;
    sweep
        .run::<ConfigMap>("ConfigMap", &wanted("ConfigMap"), d)
        .await?;
    sweep
        .run::<ServiceAccount>("ServiceAccount", &wanted("ServiceAccount"), d)
        .await?;
    Ok(deleted)
}

/// Server-side apply of one object under the operator's field manager.
async fn ssa<K>(client: &Client, namespace: &str, object: &K) -> Result<(), ApplyError>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + k8s_openapi::Resource
        + Clone
        + Serialize
        + DeserializeOwned
        + Debug,
{
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    let name = object.meta().name.clone().unwrap_or_default();
    let params = PatchParams::apply(labels::MANAGER).force();
    api.patch(&name, &params, &Patch::Apply(object))
        .await
        .map_err(|source| ApplyError::Apply {
            kind: <K as k8s_openapi::Resource>::KIND,
            namespace: namespace.to_string(),
            name,
            source,
        })?;
    Ok(())
}

struct Sweep<'a> {
    client: &'a Client,
    namespace: &'a str,
    cluster: &'a str,
    owner_uid: &'a str,
}

impl Sweep<'_> {
    /// Delete the objects of one kind that carry the cluster's labels, are
    /// owned by it, and are not in `wanted`. Objects a user labelled by hand
    /// but that the cluster does not own are left alone.
    async fn run<K>(
        &self,
        kind: &'static str,
        wanted: &BTreeSet<String>,
        deleted: &mut Vec<String>,
    ) -> Result<(), ApplyError>
    where
        K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
            + Clone
            + DeserializeOwned
            + Debug,
    {
        let api: Api<K> = Api::namespaced(self.client.clone(), self.namespace);
        let selector = labels::selector_string(&labels::cluster_selector(self.cluster));
        let list = api
            .list(&ListParams::default().labels(&selector))
            .await
            .map_err(|source| ApplyError::List {
                kind,
                namespace: self.namespace.to_string(),
                cluster: self.cluster.to_string(),
                source,
            })?;
        for object in list.items {
            let name = object.name_any();
            let owned = object
                .owner_references()
                .iter()
                .any(|o| o.uid == self.owner_uid);
            if !owned || wanted.contains(&name) {
                continue;
            }
            match api.delete(&name, &DeleteParams::background()).await {
                Ok(_) => deleted.push(format!("{kind}/{name}")),
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(source) => {
                    return Err(ApplyError::Delete {
                        kind,
                        namespace: self.namespace.to_string(),
                        name,
                        source,
                    })
                }
            }
        }
        Ok(())
    }
}
