//! The reconcile loop: `kube::runtime::Controller` over `KafkaCluster`,
//! owning the children it builds and watching the Secrets clusters reference,
//! running the pipeline of [`crate::reconcile`] behind a finalizer.
//!
//! One reconcile of a live cluster: dereference → validate → placement and
//! scaling step (`reconcile::placement`) → build → server-side apply in
//! order → orphan sweep → scaling action → `/status`. An invalid spec writes only the status (`Degraded=True`,
//! reason `InvalidSpec`) and an Event, applies nothing and is not retried: the
//! next change of the cluster, or of a Secret it references, triggers the
//! next reconcile (a missing Secret is also re-checked every minute). The
//! status is written only when it changed, and re-applying unchanged children
//! is a no-op, so a re-run over an unchanged cluster changes nothing.
//!
//! Deletion: the finalizer [`FINALIZER`] runs `controller/cleanup.rs` first —
//! `reclaimPolicy: Delete` deletes the object-store data under the prefix,
//! `Retain` keeps it — and is removed only after that succeeded. Children go
//! with the KafkaCluster through their owner references; the StatefulSets'
//! PVC retention policy follows the same `reclaimPolicy`.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use floe_crds::KafkaCluster;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret, Service, ServiceAccount};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{ListParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder};
use kube::runtime::finalizer::{finalizer, Event as Finalized};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{watcher, Controller};
use kube::{Api, Client, Resource, ResourceExt};
use serde_json::json;

use crate::admin::AdminConnector;
use crate::labels::{self, Component};
use crate::metrics::{Metrics, Outcome};
use crate::names;
use crate::reclaim::{DataReclaimer, ReclaimError};
use crate::reconcile::apply::{apply, ApplyError};
use crate::reconcile::build::build;
use crate::reconcile::dereference::{
    dereference, referenced_secrets, DereferenceError, Referenced,
};
use crate::reconcile::placement;
use crate::reconcile::status::{status, Observed};
use crate::reconcile::validate::{validate, InvalidSpec};

/// The finalizer that holds a deleted KafkaCluster until its data is
/// reclaimed (or retained).
pub const FINALIZER: &str = "floe.dev/reclaim";

/// Requeue of a healthy, settled cluster: a periodic re-check.
pub const RESYNC: Duration = Duration::from_secs(300);
/// Requeue while brokers register, drain or move between sets: a drain
/// takes milliseconds to seconds, so a scale-in finishes soon after it, at
/// the cost of one broker-list read and one apply pass per poll.
pub const SCALING_POLL: Duration = Duration::from_secs(2);
/// Requeue while the controllers' admin API cannot be asked, or refused.
pub const ADMIN_RETRY: Duration = Duration::from_secs(30);
/// Requeue of a cluster whose credentials Secret does not exist (on top of
/// the Secret watch).
pub const MISSING_SECRET_RETRY: Duration = Duration::from_secs(60);

/// What every reconcile shares.
pub struct Context {
    /// The API client.
    pub client: Client,
    /// Publishes Events about KafkaClusters.
    pub recorder: Recorder,
    /// Reaches each cluster's metadata controllers.
    pub admin: Arc<dyn AdminConnector>,
    /// Deletes object-store data on `reclaimPolicy: Delete`.
    pub reclaimer: Arc<dyn DataReclaimer>,
    /// Instruments.
    pub metrics: Arc<Metrics>,
}

/// A reconcile that failed and is retried per [`Error::requeue_after`].
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading a referenced Secret failed.
    #[error(transparent)]
    Dereference(#[from] DereferenceError),
    /// Applying children or sweeping orphans failed.
    #[error(transparent)]
    Apply(#[from] ApplyError),
    /// Listing the cluster's StatefulSets or pods failed.
    #[error("observing the {kind}s of KafkaCluster {cluster} failed: {source}")]
    Observe {
        /// Kind listed.
        kind: &'static str,
        /// `namespace/name`.
        cluster: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// Writing `/status` failed.
    #[error("writing the status of KafkaCluster {cluster} failed: {source}")]
    WriteStatus {
        /// `namespace/name`.
        cluster: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// Deleting object-store data failed; the finalizer stays.
    #[error(transparent)]
    Reclaim(#[from] ReclaimError),
    /// `reclaimPolicy: Delete` but the spec is invalid, so the data's
    /// location or credentials are unknown; the finalizer stays.
    #[error("cannot delete the data of a deleted cluster: {0}; fix the spec or set reclaimPolicy: Retain")]
    ReclaimBlocked(InvalidSpec),
    /// Adding or removing the finalizer failed.
    #[error("finalizer {FINALIZER}: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
}

impl Error {
    /// How long to wait before retrying: a conflict is retried at once, rate
    /// limits and server errors after a while, what needs a human (RBAC, a
    /// refused object) rarely.
    pub fn requeue_after(&self) -> Duration {
        use kube::runtime::finalizer::Error as F;
        match self {
            Error::Dereference(e) => api_requeue(&e.source),
            Error::Apply(e) => api_requeue(e.api_error()),
            Error::Observe { source, .. } | Error::WriteStatus { source, .. } => {
                api_requeue(source)
            }
            Error::Reclaim(_) | Error::ReclaimBlocked(_) => Duration::from_secs(60),
            Error::Finalizer(e) => match e.as_ref() {
                F::ApplyFailed(inner) | F::CleanupFailed(inner) => inner.requeue_after(),
                F::AddFinalizer(source) | F::RemoveFinalizer(source) => api_requeue(source),
                F::UnnamedObject | F::InvalidFinalizer => Duration::from_secs(300),
            },
        }
    }

    /// A bounded label for the reconcile counter.
    pub fn metric_label(&self) -> &'static str {
        use kube::runtime::finalizer::Error as F;
        match self {
            Error::Dereference(_) => "dereference_error",
            Error::Apply(_) => "apply_error",
            Error::Observe { .. } => "observe_error",
            Error::WriteStatus { .. } => "status_error",
            Error::Reclaim(_) | Error::ReclaimBlocked(_) => "reclaim_error",
            Error::Finalizer(e) => match e.as_ref() {
                F::ApplyFailed(inner) | F::CleanupFailed(inner) => inner.metric_label(),
                _ => "finalizer_error",
            },
        }
    }
}

/// The retry delay for an API error.
pub fn api_requeue(error: &kube::Error) -> Duration {
    match error {
        kube::Error::Api(status) => match status.code {
            409 => Duration::from_secs(1),
            404 => Duration::from_secs(5),
            429 => Duration::from_secs(10),
            401 | 403 => Duration::from_secs(300),
            400 | 422 => Duration::from_secs(300),
            _ => Duration::from_secs(15),
        },
        _ => Duration::from_secs(15),
    }
}

/// Run the controller until `shutdown` completes.
pub async fn run(ctx: Arc<Context>, shutdown: impl Future<Output = ()> + Send + Sync + 'static) {
    let client = ctx.client.clone();
    let clusters: Api<KafkaCluster> = Api::all(client.clone());
    let controller = Controller::new(clusters, watcher::Config::default().any_semantic());
    let store = controller.store();
    let owned = || {
        watcher::Config::default().labels(&format!("{}={}", labels::MANAGED_BY, labels::MANAGER))
    };
    controller
        .owns(Api::<StatefulSet>::all(client.clone()), owned())
        .owns(Api::<Service>::all(client.clone()), owned())
        .owns(Api::<ConfigMap>::all(client.clone()), owned())
        .owns(Api::<PodDisruptionBudget>::all(client.clone()), owned())
        .owns(Api::<ServiceAccount>::all(client.clone()), owned())
        .watches(
            Api::<Secret>::all(client),
            watcher::Config::default(),
            move |secret| clusters_referencing(&store.state(), &secret),
        )
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            match result {
                Ok((object, _)) => tracing::debug!(cluster = %object, "reconciled"),
                Err(error) => tracing::warn!(%error, "reconcile failed"),
            }
        })
        .await;
}

/// The clusters to reconcile when `secret` changes: those in its namespace
/// that name it as their credentials or controller TLS Secret.
pub fn clusters_referencing(
    clusters: &[Arc<KafkaCluster>],
    secret: &Secret,
) -> Vec<ObjectRef<KafkaCluster>> {
    let namespace = secret.namespace();
    let name = secret.name_any();
    clusters
        .iter()
        .filter(|c| c.namespace() == namespace && referenced_secrets(c).any(|s| s == name))
        .map(|c| ObjectRef::from_obj(c.as_ref()))
        .collect()
}

/// Reconcile one KafkaCluster (the function the Controller runs; tests call
/// it directly against a mock API server).
#[tracing::instrument(skip_all, fields(cluster = %format!("{}/{}", cluster.namespace().unwrap_or_default(), cluster.name_any())))]
pub async fn reconcile(cluster: Arc<KafkaCluster>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    let namespace = cluster.namespace().unwrap_or_default();
    let api: Api<KafkaCluster> = Api::namespaced(ctx.client.clone(), &namespace);
    let mut outcome = Outcome::Ok;
    let result = finalizer(&api, FINALIZER, cluster, |event| async {
        match event {
            Finalized::Apply(cluster) => {
                let (action, invalid) = reconcile_live(&cluster, &ctx).await?;
                if invalid {
                    outcome = Outcome::InvalidSpec;
                }
                Ok(action)
            }
            Finalized::Cleanup(cluster) => cleanup::cleanup(&cluster, &ctx).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)));
    if let Err(e) = &result {
        outcome = Outcome::Error(e.metric_label());
    }
    ctx.metrics
        .reconciled(outcome, started.elapsed().as_secs_f64());
    result
}

/// What the Controller does with a failed reconcile.
pub fn error_policy(cluster: Arc<KafkaCluster>, error: &Error, _ctx: Arc<Context>) -> Action {
    let after = error.requeue_after();
    tracing::warn!(cluster = %cluster.name_any(), %error, retry_in = ?after, "reconcile failed");
    Action::requeue(after)
}

/// The pipeline for a cluster that is not being deleted; the flag says the
/// spec was invalid.
async fn reconcile_live(cluster: &KafkaCluster, ctx: &Context) -> Result<(Action, bool), Error> {
    let referenced = dereference(&ctx.client, cluster).await?;
    let validated = match validate(cluster, &referenced) {
        Ok(v) => v,
        Err(invalid) => {
            let action = reconcile_invalid(cluster, &referenced, &invalid, ctx).await?;
            return Ok((action, true));
        }
    };

    let observed = observe(&ctx.client, &validated.namespace, &validated.name).await?;
    let current = placement::Layout::observe(&validated.name, &observed.brokers);
    let pods = placement::broker_pods(&validated.name, &observed.pods);
    let admin = ctx.admin.connect(&validated);
    let brokers = match admin.brokers().await {
        Ok(brokers) => Some(brokers),
        Err(error) => {
            tracing::info!(%error, "broker list unavailable");
            None
        }
    };
    let plan = placement::next(
        &validated.brokers.sets,
        validated.brokers.replicas,
        &current,
        &pods,
        brokers.as_deref(),
    );

    let mut held = validated.clone();
    held.brokers.sets = placement::broker_sets(
        &plan.layout,
        &validated.brokers.sets,
        &cluster.spec.spot,
        &current,
        &pods,
    );
    let children = build(&held);
    let deleted = apply(
        &ctx.client,
        &validated.namespace,
        &validated.name,
        &children,
    )
    .await?;
    if !deleted.is_empty() {
        publish(
            ctx,
            cluster,
            EventType::Normal,
            "OrphansDeleted",
            "Apply",
            format!(
                "deleted objects the spec no longer needs: {}",
                deleted.join(", ")
            ),
        )
        .await;
    }

    let (reassignment, requeue) = scale::carry_out(&plan, admin.as_ref(), cluster, ctx).await;
    let moving: Vec<i32> = plan.moving.iter().map(|(id, _)| *id).collect();

    let observed = observe(&ctx.client, &validated.namespace, &validated.name).await?;
    let partitions = brokers
        .as_ref()
        .map(|b| b.iter().map(|b| b.partitions as i32).sum());
    let next = status(
        cluster,
        Ok(&validated),
        &Observed {
            controller_statefulset: observed.controller.as_ref(),
            broker_statefulsets: &observed.brokers,
            broker_pods: &observed.pods,
            partitions,
            last_reassignment: reassignment.as_ref(),
            moving: &moving,
        },
        &now(),
    );
    write_status(ctx, cluster, next).await?;
    Ok((requeue, false))
}

/// An invalid spec: status and an Event, nothing applied.
async fn reconcile_invalid(
    cluster: &KafkaCluster,
    referenced: &Referenced,
    invalid: &InvalidSpec,
    ctx: &Context,
) -> Result<Action, Error> {
    let secret_missing = (cluster.spec.object_storage.credentials_secret.is_some()
        && referenced.credentials_secret.is_none())
        || (cluster.spec.controllers.tls.is_some() && referenced.tls_secret.is_none())
        || (cluster
            .spec
            .controllers
            .tls
            .as_ref()
            .is_some_and(|t| t.broker_secret_name.is_some())
            && referenced.broker_tls_secret.is_none());
    let reason = if secret_missing {
        "SecretMissing"
    } else {
        "InvalidSpec"
    };
    publish(
        ctx,
        cluster,
        EventType::Warning,
        reason,
        "Validate",
        invalid.to_string(),
    )
    .await;
    let namespace = cluster.namespace().unwrap_or_default();
    let observed = observe(&ctx.client, &namespace, &cluster.name_any()).await?;
    let next = status(
        cluster,
        Err(invalid),
        &Observed {
            controller_statefulset: observed.controller.as_ref(),
            broker_statefulsets: &observed.brokers,
            broker_pods: &observed.pods,
            partitions: None,
            last_reassignment: None,
            moving: &[],
        },
        &now(),
    );
    write_status(ctx, cluster, next).await?;
    Ok(if secret_missing {
        Action::requeue(MISSING_SECRET_RETRY)
    } else {
        Action::await_change()
    })
}
/// The cluster's StatefulSets and broker pods as they are now.
struct Current {
    controller: Option<StatefulSet>,
    brokers: Vec<StatefulSet>,
    pods: Vec<Pod>,
}

/// The cluster's StatefulSets and its broker pods (the placement step and
/// the status need both).
async fn observe(client: &Client, namespace: &str, cluster: &str) -> Result<Current, Error> {
    let failed = |kind| {
        let cluster = format!("{namespace}/{cluster}");
        move |source| Error::Observe {
            kind,
            cluster,
            source,
        }
    };
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), namespace);
    let selector = labels::selector_string(&labels::cluster_selector(cluster));
    let list = sets
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(failed("StatefulSet"))?;
    let controller_name = names::controller_statefulset(cluster);
    let broker_selector = labels::selector(cluster, Component::Broker);
    let mut current = Current {
        controller: None,
        brokers: Vec::new(),
        pods: Vec::new(),
    };
    for sts in list.items {
        if sts.metadata.name.as_deref() == Some(controller_name.as_str()) {
            current.controller = Some(sts);
        } else if broker_selector
            .iter()
            .all(|(k, v)| sts.labels().get(k) == Some(v))
        {
            current.brokers.push(sts);
        }
    }
    current.brokers.sort_by_key(|s| s.name_any());
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    current.pods = pods
        .list(&ListParams::default().labels(&labels::selector_string(&broker_selector)))
        .await
        .map_err(failed("Pod"))?
        .items;
    Ok(current)
}

/// Write `.status` through `/status` with server-side apply, unless it is
/// what the cluster already has.
async fn write_status(
    ctx: &Context,
    cluster: &KafkaCluster,
    next: floe_crds::KafkaClusterStatus,
) -> Result<(), Error> {
    if cluster.status.as_ref() == Some(&next) {
        return Ok(());
    }
    let namespace = cluster.namespace().unwrap_or_default();
    let name = cluster.name_any();
    let api: Api<KafkaCluster> = Api::namespaced(ctx.client.clone(), &namespace);
    let patch = json!({
        "apiVersion": KafkaCluster::api_version(&()),
        "kind": KafkaCluster::kind(&()),
        "status": next,
    });
    api.patch_status(
        &name,
        &PatchParams::apply(labels::MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await
    .map_err(|source| Error::WriteStatus {
        cluster: format!("{namespace}/{name}"),
        source,
    })?;
    Ok(())
}

/// Publish an Event about `cluster`; a failure is logged, not fatal (Events
/// are advice, the status is the record).
pub(super) async fn publish(
    ctx: &Context,
    cluster: &KafkaCluster,
    type_: EventType,
    reason: &str,
    action: &str,
    note: String,
) {
    let mut note = note;
    if note.len() > 1000 {
        let mut end = 1000;
        while !note.is_char_boundary(end) {
            end -= 1;
        }
        note.truncate(end);
    }
    let event = Event {
        type_,
        reason: reason.into(),
        note: Some(note),
        action: action.into(),
        secondary: None,
    };
    if let Err(error) = ctx.recorder.publish(&event, &cluster.object_ref(&())).await {
        tracing::warn!(%error, reason, "publishing an event failed");
    }
}

pub(super) fn now() -> Time {
    Time(k8s_openapi::jiff::Timestamp::now())
}

mod cleanup;
mod scale;

pub use cleanup::credentials;

#[cfg(test)]
mod tests {
    use kube::core::Status;

    use super::*;

    fn api(code: u16) -> kube::Error {
        kube::Error::Api(Status::failure("x", "y").with_code(code).boxed())
    }

    fn cluster(namespace: &str, name: &str, secret: Option<&str>) -> Arc<KafkaCluster> {
        let mut c: KafkaCluster = serde_json::from_value(json!({
            "apiVersion": "floe.dev/v1alpha1", "kind": "KafkaCluster",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"objectStorage": {"bucket": "b"}},
        }))
        .unwrap();
        c.spec.object_storage.credentials_secret =
            secret.map(|s| floe_crds::CredentialsSecretRef {
                name: s.into(),
                access_key_id_key: "AWS_ACCESS_KEY_ID".into(),
                secret_access_key_key: "AWS_SECRET_ACCESS_KEY".into(),
            });
        Arc::new(c)
    }

    #[test]
    fn a_secret_change_triggers_the_clusters_that_name_it() {
        let clusters = [
            cluster("a", "one", Some("creds")),
            cluster("a", "two", Some("other")),
            cluster("a", "three", None),
            cluster("b", "four", Some("creds")),
        ];
        let secret = Secret {
            metadata: kube::api::ObjectMeta {
                name: Some("creds".into()),
                namespace: Some("a".into()),
                ..Default::default()
            },
            ..Default::default()
        };
        let triggered: Vec<String> = clusters_referencing(&clusters, &secret)
            .iter()
            .map(|r| r.name.clone())
            .collect();
        assert_eq!(triggered, vec!["one"]);
    }

    #[test]
    fn requeue_depends_on_the_error() {
        assert_eq!(api_requeue(&api(409)), Duration::from_secs(1));
        assert_eq!(api_requeue(&api(429)), Duration::from_secs(10));
        assert_eq!(api_requeue(&api(503)), Duration::from_secs(15));
        assert_eq!(api_requeue(&api(403)), Duration::from_secs(300));
        let status = Error::WriteStatus {
            cluster: "a/b".into(),
            source: api(409),
        };
        assert_eq!(status.requeue_after(), Duration::from_secs(1));
        assert_eq!(status.metric_label(), "status_error");
        let reclaim = Error::Finalizer(Box::new(kube::runtime::finalizer::Error::CleanupFailed(
            Error::Reclaim(ReclaimError {
                url: "s3://b".into(),
                message: "denied".into(),
            }),
        )));
        assert_eq!(reclaim.requeue_after(), Duration::from_secs(60));
        assert_eq!(reclaim.metric_label(), "reclaim_error");
    }
}
