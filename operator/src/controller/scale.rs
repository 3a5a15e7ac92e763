//! The scaling half of a reconcile: carry out the action of the pure
//! [`crate::reconcile::placement`] plan (scaling steps and moves between the
//! on-demand and spot StatefulSets) through the cluster's
//! [`ClusterAdmin`], report it as `status.lastReassignment`, publish the
//! Events a user should see, and choose when to come back.

use floe_crds::{KafkaCluster, ReassignmentOutcome, ReassignmentStatus, ReassignmentTrigger};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;

use super::{now, publish, Context, ADMIN_RETRY, RESYNC, SCALING_POLL};
use crate::admin::ClusterAdmin;
use crate::names;
use crate::reconcile::placement::Plan;
use crate::reconcile::scaling::{self, Wait};

/// Ask the controller for what the plan needs; returns the reassignment to
/// report (if this step started or ended one) and when to come back.
pub(super) async fn carry_out(
    plan: &Plan,
    admin: &dyn ClusterAdmin,
    cluster: &KafkaCluster,
    ctx: &Context,
) -> (Option<ReassignmentStatus>, Action) {
    let previous = cluster
        .status
        .as_ref()
        .and_then(|s| s.last_reassignment.clone());
    let ids = |ids: &[i32]| ids.iter().map(i32::to_string).collect::<Vec<_>>();
    match &plan.action {
        scaling::Action::Nothing => (None, Action::requeue(RESYNC)),
        scaling::Action::Wait(Wait::Registering(_) | Wait::Draining(_) | Wait::Terminating(_)) => {
            (None, Action::requeue(SCALING_POLL))
        }
        scaling::Action::Wait(Wait::AdminUnavailable) => {
            let current = plan.layout.count();
            let desired = cluster.spec.brokers.replicas;
            // Brokers at or above the desired count go before any moves.
            let scaling_in = plan.layout.top() > desired;
            if !plan.moving.is_empty() && !scaling_in {
                publish(
                    ctx,
                    cluster,
                    EventType::Warning,
                    "MoveHeld",
                    "Move",
                    format!(
                        "brokers {} must change StatefulSet, but the metadata controllers cannot be asked to drain them; the StatefulSets keep their layout; check that the controller pods are ready",
                        ids(&moving_ids(plan)).join(", ")
                    ),
                )
                .await;
            } else if scaling_in {
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
            let message = format!(
                "draining brokers {} before the StatefulSet shrinks",
                ids(brokers).join(", ")
            );
            let why = (ReassignmentTrigger::ScaleIn, "DrainStarted", "Scale");
            drain(admin, cluster, ctx, brokers, why, message).await
        }
        scaling::Action::Move(brokers) => {
            let message = format!(
                "draining broker {} before it moves to StatefulSet {}; brokers still to move: {}",
                ids(brokers).join(", "),
                destination(plan, cluster),
                ids(&moving_ids(plan)).join(", ")
            );
            let why = (
                ReassignmentTrigger::PlacementChange,
                "MoveDrainStarted",
                "Move",
            );
            drain(admin, cluster, ctx, brokers, why, message).await
        }
        scaling::Action::Vacate(brokers) => {
            publish(
                ctx,
                cluster,
                EventType::Normal,
                "MoveVacated",
                "Move",
                format!(
                    "broker {} drained and taken out of its StatefulSet; it starts in {} once its old pod is gone",
                    ids(brokers).join(", "),
                    destination(plan, cluster)
                ),
            )
            .await;
            (None, Action::requeue(SCALING_POLL))
        }
        scaling::Action::Place(brokers) => {
            publish(
                ctx,
                cluster,
                EventType::Normal,
                "BrokersPlaced",
                "Move",
                format!(
                    "brokers {} start in the StatefulSet the spec puts them in",
                    ids(brokers).join(", ")
                ),
            )
            .await;
            let done = previous
                .filter(|p| {
                    p.trigger == ReassignmentTrigger::PlacementChange
                        && p.outcome == ReassignmentOutcome::InProgress
                })
                .map(|p| ReassignmentStatus {
                    outcome: ReassignmentOutcome::Succeeded,
                    finished_at: Some(now()),
                    ..p
                });
            (done, Action::requeue(SCALING_POLL))
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

/// Asks the controllers to drain `brokers` for `why` (the reassignment
/// trigger, the Event's reason and action); reports the reassignment as
/// started, or failed with a Warning Event and a later retry.
async fn drain(
    admin: &dyn ClusterAdmin,
    cluster: &KafkaCluster,
    ctx: &Context,
    brokers: &[i32],
    why: (ReassignmentTrigger, &str, &str),
    message: String,
) -> (Option<ReassignmentStatus>, Action) {
    let (trigger, reason, action) = why;
    let started = reassignment(trigger, brokers.iter().map(i32::to_string).collect());
    match admin.drain(brokers).await {
        Ok(()) => {
            publish(ctx, cluster, EventType::Normal, reason, action, message).await;
            (Some(started), Action::requeue(SCALING_POLL))
        }
        Err(error) => {
            publish(
                ctx,
                cluster,
                EventType::Warning,
                "DrainFailed",
                action,
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

fn moving_ids(plan: &Plan) -> Vec<i32> {
    plan.moving.iter().map(|(id, _)| *id).collect()
}

/// The StatefulSet the next moving broker goes to.
fn destination(plan: &Plan, cluster: &KafkaCluster) -> String {
    let name = cluster.metadata.name.as_deref().unwrap_or_default();
    plan.moving
        .first()
        .map(|(_, to)| names::broker_statefulset(name, *to))
        .unwrap_or_default()
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
