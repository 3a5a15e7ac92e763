//! The deletion half: what the finalizer runs before it lets a deleted
//! KafkaCluster go — delete its object-store data (`reclaimPolicy: Delete`)
//! or keep it (`Retain`).

use floe_crds::KafkaCluster;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;

use super::{publish, Context, Error};
use crate::reclaim::Credentials;
use crate::reconcile::dereference::{dereference, Referenced};
use crate::reconcile::validate::{validate, ObjectStore};

/// A deleted cluster: reclaim or retain the data, then let the finalizer go.
pub(super) async fn cleanup(cluster: &KafkaCluster, ctx: &Context) -> Result<Action, Error> {
    match cluster.spec.reclaim_policy {
        floe_crds::ReclaimPolicy::Retain => {
            publish(
                ctx,
                cluster,
                EventType::Normal,
                "DataRetained",
                "Delete",
                "reclaimPolicy is Retain: the object-store data and the volumes are kept".into(),
            )
            .await;
        }
        floe_crds::ReclaimPolicy::Delete => {
            let referenced = dereference(&ctx.client, cluster).await?;
            let validated = match validate(cluster, &referenced) {
                Ok(v) => v,
                Err(invalid) => {
                    let error = Error::ReclaimBlocked(invalid);
                    publish(
                        ctx,
                        cluster,
                        EventType::Warning,
                        "ReclaimFailed",
                        "Delete",
                        error.to_string(),
                    )
                    .await;
                    return Err(error);
                }
            };
            let credentials = credentials(&validated.object_store, &referenced);
            match ctx
                .reclaimer
                .delete_all(&validated.object_store, credentials.as_ref())
                .await
            {
                Ok(count) => {
                    publish(
                        ctx,
                        cluster,
                        EventType::Normal,
                        "DataDeleted",
                        "Delete",
                        format!(
                            "reclaimPolicy is Delete: deleted {count} objects under {}",
                            validated.object_store.url()
                        ),
                    )
                    .await;
                }
                Err(error) => {
                    publish(
                        ctx,
                        cluster,
                        EventType::Warning,
                        "ReclaimFailed",
                        "Delete",
                        error.to_string(),
                    )
                    .await;
                    return Err(error.into());
                }
            }
        }
    }
    Ok(Action::await_change())
}

/// The static credentials of a validated object store, from its Secret.
pub fn credentials(store: &ObjectStore, referenced: &Referenced) -> Option<Credentials> {
    let reference = store.credentials.as_ref()?;
    let secret = referenced.credentials_secret.as_ref()?;
    let value = |key: &str| -> Option<String> {
        if let Some(v) = secret.data.as_ref().and_then(|d| d.get(key)) {
            return String::from_utf8(v.0.clone()).ok();
        }
        secret
            .string_data
            .as_ref()
            .and_then(|d| d.get(key))
            .cloned()
    };
    Some(Credentials {
        access_key_id: value(&reference.access_key_id_key)?,
        secret_access_key: value(&reference.secret_access_key_key)?,
    })
}
