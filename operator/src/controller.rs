//! The reconcile loop: `kube::runtime::Controller` over `KafkaCluster`,
//! owning the children it builds and watching the Secrets clusters reference,
//! running the pipeline of [`crate::reconcile`] behind a finalizer.
//!
//! One reconcile of a live cluster: dereference → validate → scaling step →
//! build → server-side apply in order → orphan sweep → scaling action →
//! `/status`. An invalid spec writes only the status (`Degraded=True`,
//! reason `InvalidSpec`) and an Event, applies nothing and is not retried: the
//! next change of the cluster, or of a Secret it references, triggers the
//! next reconcile (a missing Secret is also re-checked every minute). The
//! status is written only when it changed, and re-applying unchanged children
//! is a no-op, so a re-run over an unchanged cluster changes nothing.
//!
//! Deletion: the finalizer [`FINALIZER`] runs [`cleanup`] first —
//! `reclaimPolicy: Delete` deletes the object-store data under the prefix,
//! `Retain` keeps it — and is removed only after that succeeded. Children go
//! with the KafkaCluster through their owner references; the StatefulSets'
//! PVC retention policy follows the same `reclaimPolicy`.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use floe_crds::{KafkaCluster, ReassignmentOutcome, ReassignmentStatus, ReassignmentTrigger};
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

use crate::admin::{AdminConnector, ClusterAdmin};
use crate::labels::{self, Component};
use crate::metrics::{Metrics, Outcome};
use crate::names;
use crate::reclaim::{Credentials, DataReclaimer, ReclaimError};
use crate::reconcile::apply::{apply, ApplyError};
use crate::reconcile::build::build;
use crate::reconcile::dereference::{
    dereference, referenced_secrets, DereferenceError, Referenced,
};
use crate::reconcile::scaling::{self, Step, Wait};
use crate::reconcile::status::{status, Observed};
use crate::reconcile::validate::{validate, InvalidSpec, ObjectStore};

/// The finalizer that holds a deleted KafkaCluster until its data is
/// reclaimed (or retained).
pub const FINALIZER: &str = "floe.dev/reclaim";

/// Requeue of a healthy, settled cluster: a periodic re-check.
pub const RESYNC: Duration = Duration::from_secs(300);
/// Requeue while brokers register or drain.
pub const SCALING_POLL: Duration = Duration::from_secs(10);
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
            move |secret| {
                let namespace = secret.namespace();
                let name = secret.name_any();
                store
                    .state()
                    .into_iter()
                    .filter(|c| {
                        c.namespace() == namespace && referenced_secrets(c).any(|s| s == name)
                    })
                    .map(|c| ObjectRef::from_obj(c.as_ref()))
                    .collect::<Vec<_>>()
            },
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
            Finalized::Cleanup(cluster) => cleanup(&cluster, &ctx).await,
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
    let current = (!observed.brokers.is_empty()).then(|| {
        observed
            .brokers
            .iter()
            .map(|s| s.spec.replicas.unwrap_or(1))
            .sum()
    });
    let admin = ctx.admin.connect(&validated);
    let brokers = match admin.brokers().await {
        Ok(brokers) => Some(brokers),
        Err(error) => {
            tracing::info!(%error, "broker list unavailable");
            None
        }
    };
    let step = scaling::next_step(validated.brokers.replicas, current, brokers.as_deref());

    let mut held = validated.clone();
    let counts = scaling::distribute(&validated.brokers.sets, step.replicas);
    for (set, count) in held.brokers.sets.iter_mut().zip(counts) {
        set.replicas = count;
    }
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

    let (reassignment, requeue) = carry_out(&step, admin.as_ref(), cluster, ctx).await;

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
    let secret_missing = cluster.spec.object_storage.credentials_secret.is_some()
        && referenced.credentials_secret.is_none();
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

/// Ask the controller for what the scaling step needs; returns the
/// reassignment to report (if this step started or ended one) and when to
/// come back.
async fn carry_out(
    step: &Step,
    admin: &dyn ClusterAdmin,
    cluster: &KafkaCluster,
    ctx: &Context,
) -> (Option<ReassignmentStatus>, Action) {
    let previous = cluster
        .status
        .as_ref()
        .and_then(|s| s.last_reassignment.clone());
    let ids = |ids: &[i32]| ids.iter().map(i32::to_string).collect::<Vec<_>>();
    match &step.action {
        scaling::Action::Nothing => (None, Action::requeue(RESYNC)),
        scaling::Action::Wait(Wait::Registering(_) | Wait::Draining(_)) => {
            (None, Action::requeue(SCALING_POLL))
        }
        scaling::Action::Wait(Wait::AdminUnavailable) => {
            let current: i32 = step.replicas;
            let desired = cluster.spec.brokers.replicas;
            if current > desired {
                publish(
                    ctx,
                    cluster,
                    EventType::Warning,
                    "ScaleInHeld",
                    "Scale",
                    format!(
                        "keeping {current} brokers instead of {desired}: the metadata controllers cannot be asked to drain the brokers that would go; check that the controller pods are ready"
                    ),
                )
                .await;
            }
            (None, Action::requeue(ADMIN_RETRY))
        }
        scaling::Action::Drain(brokers) => {
            let started = reassignment(ReassignmentTrigger::ScaleIn, ids(brokers));
            match admin.drain(brokers).await {
                Ok(()) => {
                    publish(
                        ctx,
                        cluster,
                        EventType::Normal,
                        "DrainStarted",
                        "Scale",
                        format!(
                            "draining brokers {} before the StatefulSet shrinks",
                            ids(brokers).join(", ")
                        ),
                    )
                    .await;
                    (Some(started), Action::requeue(SCALING_POLL))
                }
                Err(error) => {
                    publish(
                        ctx,
                        cluster,
                        EventType::Warning,
                        "DrainFailed",
                        "Scale",
                        error.to_string(),
                    )
                    .await;
                    let failed = ReassignmentStatus {
                        outcome: ReassignmentOutcome::Failed,
                        finished_at: Some(now()),
                        message: error.to_string(),
                        ..started
                    };
                    (Some(failed), Action::requeue(ADMIN_RETRY))
                }
            }
        }
        scaling::Action::Lower(count) => {
            publish(
                ctx,
                cluster,
                EventType::Normal,
                "ScaledIn",
                "Scale",
                format!("brokers drained; StatefulSets lowered to {count} brokers"),
            )
            .await;
            let done = match previous {
                Some(p)
                    if p.trigger == ReassignmentTrigger::ScaleIn
                        && p.outcome == ReassignmentOutcome::InProgress =>
                {
                    ReassignmentStatus {
                        outcome: ReassignmentOutcome::Succeeded,
                        finished_at: Some(now()),
                        ..p
                    }
                }
                _ => ReassignmentStatus {
                    outcome: ReassignmentOutcome::Succeeded,
                    finished_at: Some(now()),
                    ..reassignment(ReassignmentTrigger::ScaleIn, Vec::new())
                },
            };
            (Some(done), Action::requeue(SCALING_POLL))
        }
        scaling::Action::Rebalance => {
            let started = reassignment(ReassignmentTrigger::ScaleOut, Vec::new());
            match admin.rebalance().await {
                Ok(moved) => {
                    publish(
                        ctx,
                        cluster,
                        EventType::Normal,
                        "Rebalanced",
                        "Scale",
                        format!("{moved} partitions moved onto the new brokers"),
                    )
                    .await;
                    let done = ReassignmentStatus {
                        outcome: ReassignmentOutcome::Succeeded,
                        moved_partitions: moved as i32,
                        finished_at: Some(now()),
                        ..started
                    };
                    (Some(done), Action::requeue(SCALING_POLL))
                }
                Err(error) => {
                    publish(
                        ctx,
                        cluster,
                        EventType::Warning,
                        "RebalanceFailed",
                        "Scale",
                        error.to_string(),
                    )
                    .await;
                    let failed = ReassignmentStatus {
                        outcome: ReassignmentOutcome::Failed,
                        finished_at: Some(now()),
                        message: error.to_string(),
                        ..started
                    };
                    (Some(failed), Action::requeue(ADMIN_RETRY))
                }
            }
        }
    }
}

fn reassignment(trigger: ReassignmentTrigger, brokers: Vec<String>) -> ReassignmentStatus {
    ReassignmentStatus {
        trigger,
        outcome: ReassignmentOutcome::InProgress,
        brokers,
        moved_partitions: 0,
        started_at: now(),
        finished_at: None,
        message: String::new(),
    }
}

/// A deleted cluster: reclaim or retain the data, then let the finalizer go.
async fn cleanup(cluster: &KafkaCluster, ctx: &Context) -> Result<Action, Error> {
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

/// The cluster's StatefulSets and broker pods as they are now.
struct Current {
    controller: Option<StatefulSet>,
    brokers: Vec<StatefulSet>,
    pods: Vec<Pod>,
}

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
async fn publish(
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

fn now() -> Time {
    Time(k8s_openapi::jiff::Timestamp::now())
}

#[cfg(test)]
mod tests {
    use kube::core::Status;

    use super::*;

    fn api(code: u16) -> kube::Error {
        kube::Error::Api(Status::failure("x", "y").with_code(code).boxed())
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
