//! status(): observed StatefulSets and pods → conditions. Scenarios walk a
//! cluster through its life (creation, ready, quorum loss, scaling, rollout,
//! invalid spec, reassignment) feeding each status back as the previous one,
//! the way the reconciler does.

use floe_crds::{
    CapacityType, KafkaCluster, KafkaClusterStatus, ReassignmentOutcome, ReassignmentStatus,
    ReassignmentTrigger,
};
use floe_operator::reconcile::dereference::Referenced;
use floe_operator::reconcile::status::{status, Observed};
use floe_operator::reconcile::validate::validate;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use serde_json::json;

fn cluster(replicas: i32) -> KafkaCluster {
    let mut c: KafkaCluster = serde_json::from_value(json!({
        "apiVersion": "floe.dev/v1alpha1",
        "kind": "KafkaCluster",
        "metadata": {"name": "events", "namespace": "streaming", "uid": "u-1", "generation": 1},
        "spec": {"objectStorage": {"bucket": "floe-data"}},
    }))
    .unwrap();
    c.spec.brokers.replicas = replicas;
    c
}

fn at(seconds: i64) -> Time {
    serde_json::from_value(json!(format!(
        "2026-01-01T00:{:02}:{:02}Z",
        seconds / 60,
        seconds % 60
    )))
    .unwrap()
}

/// A StatefulSet as the API server reports it.
fn sts(
    name: &str,
    replicas: i32,
    existing: i32,
    ready: i32,
    revisions: (&str, &str),
) -> StatefulSet {
    serde_json::from_value(json!({
        "metadata": {"name": name, "generation": 1},
        "spec": {
            "replicas": replicas,
            "selector": {},
            "template": {},
        },
        "status": {
            "observedGeneration": 1,
            "replicas": existing,
            "readyReplicas": ready,
            "updatedReplicas": existing,
            "currentRevision": revisions.0,
            "updateRevision": revisions.1,
        },
    }))
    .unwrap()
}

fn pod(name: &str, ordinal: i32, capacity: &str, ready: bool) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {
            "apps.kubernetes.io/pod-index": ordinal.to_string(),
            "floe.dev/capacity": capacity,
        }},
        "spec": {"containers": [], "nodeName": format!("node-{ordinal}")},
        "status": {"conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]},
    }))
    .unwrap()
}

const SAME: (&str, &str) = ("r1", "r1");

/// Run status() the way the reconciler does and store it as the previous one.
fn reconcile(c: &mut KafkaCluster, observed: Observed<'_>, now: Time) -> KafkaClusterStatus {
    let validated = validate(c, &Referenced::default());
    let s = status(c, validated.as_ref(), &observed, &now);
    c.status = Some(s.clone());
    s
}

fn condition<'a>(s: &'a KafkaClusterStatus, type_: &str) -> &'a Condition {
    s.conditions.iter().find(|c| c.type_ == type_).unwrap()
}

fn summary(s: &KafkaClusterStatus) -> Vec<(String, String, String)> {
    s.conditions
        .iter()
        .map(|c| (c.type_.clone(), c.status.clone(), c.reason.clone()))
        .collect()
}

fn expect(s: &KafkaClusterStatus, expected: [(&str, &str, &str); 3]) {
    let expected: Vec<(String, String, String)> = expected
        .iter()
        .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
        .collect();
    assert_eq!(summary(s), expected, "{:#?}", s.conditions);
}

#[test]
fn a_new_cluster_is_creating_not_degraded() {
    let mut c = cluster(3);
    let s = reconcile(&mut c, Observed::default(), at(0));
    expect(
        &s,
        [
            ("Ready", "False", "ControllersNotReady"),
            ("Progressing", "True", "Creating"),
            ("Degraded", "False", "AsExpected"),
        ],
    );
    assert_eq!(s.observed_generation, Some(1));
    assert!(s
        .conditions
        .iter()
        .all(|c| c.observed_generation == Some(1)));
    assert_eq!(s.replicas, 0);
    assert_eq!(
        s.selector.as_deref(),
        Some("app.kubernetes.io/component=broker,app.kubernetes.io/instance=events,app.kubernetes.io/name=floe")
    );
    // Pods starting: still creating, quorum not yet formed is not degradation.
    let controller = sts("events-controller", 3, 3, 1, SAME);
    let brokers = [sts("events-broker", 3, 3, 0, SAME)];
    let s = reconcile(
        &mut c,
        Observed {
            controller_statefulset: Some(&controller),
            broker_statefulsets: &brokers,
            ..Observed::default()
        },
        at(10),
    );
    expect(
        &s,
        [
            ("Ready", "False", "ControllersNotReady"),
            ("Progressing", "True", "Creating"),
            ("Degraded", "False", "AsExpected"),
        ],
    );
    assert_eq!(s.replicas, 3);
    assert_eq!(
        condition(&s, "Ready").message,
        "1/3 controllers and 0/3 brokers ready"
    );
}

#[test]
fn a_ready_cluster_rerun_changes_nothing_and_losing_quorum_degrades_it() {
    let mut c = cluster(3);
    let controller = sts("events-controller", 3, 3, 3, SAME);
    let brokers = [sts("events-broker", 3, 3, 3, SAME)];
    let pods = [
        pod("events-broker-2", 2, "on-demand", true),
        pod("events-broker-0", 0, "on-demand", true),
        pod("events-broker-1", 1, "on-demand", false),
    ];
    let observed = Observed {
        controller_statefulset: Some(&controller),
        broker_statefulsets: &brokers,
        broker_pods: &pods,
        partitions: Some(48),
        last_reassignment: None,
        moving: &[],
    };
    let first = reconcile(&mut c, observed, at(20));
    expect(
        &first,
        [
            ("Ready", "True", "AllReplicasReady"),
            ("Progressing", "False", "Stable"),
            ("Degraded", "False", "AsExpected"),
        ],
    );
    assert_eq!(first.partitions, Some(48));
    let names: Vec<(&str, bool, Option<&str>)> = first
        .brokers
        .iter()
        .map(|b| (b.name.as_str(), b.ready, b.node_name.as_deref()))
        .collect();
    assert_eq!(
        names,
        [
            ("events-broker-0", true, Some("node-0")),
            ("events-broker-1", false, Some("node-1")),
            ("events-broker-2", true, Some("node-2")),
        ]
    );

    // The same observation later: byte-for-byte the same status, so the
    // reconciler writes nothing and GitOps tools see no churn.
    let again = reconcile(
        &mut c,
        Observed {
            partitions: None,
            ..observed
        },
        at(50),
    );
    assert_eq!(again, first);
    assert_eq!(
        serde_json::to_string(&again).unwrap(),
        serde_json::to_string(&first).unwrap()
    );

    // Two controllers go down after the cluster was ready: quorum lost.
    let down = sts("events-controller", 3, 3, 1, SAME);
    let lost = reconcile(
        &mut c,
        Observed {
            controller_statefulset: Some(&down),
            ..observed
        },
        at(90),
    );
    expect(
        &lost,
        [
            ("Ready", "False", "ControllersNotReady"),
            ("Progressing", "False", "Stable"),
            ("Degraded", "True", "QuorumLost"),
        ],
    );
    assert_eq!(condition(&lost, "Ready").last_transition_time, at(90));
    assert_eq!(condition(&lost, "Degraded").last_transition_time, at(90));
    // Progressing did not change status: its transition time stays.
    assert_eq!(condition(&lost, "Progressing").last_transition_time, at(20));
    assert_eq!(
        condition(&lost, "Degraded").message,
        "1/3 controllers ready; the metadata quorum needs 2"
    );

    // Still down on the next pass: still degraded, times unchanged.
    let still = reconcile(
        &mut c,
        Observed {
            controller_statefulset: Some(&down),
            ..observed
        },
        at(120),
    );
    assert_eq!(still.conditions, lost.conditions);

    // Recovered.
    let back = reconcile(&mut c, observed, at(150));
    expect(
        &back,
        [
            ("Ready", "True", "AllReplicasReady"),
            ("Progressing", "False", "Stable"),
            ("Degraded", "False", "AsExpected"),
        ],
    );
    assert_eq!(condition(&back, "Degraded").last_transition_time, at(150));
}

#[test]
fn scaling_and_rollouts_are_progressing() {
    let controller = sts("events-controller", 3, 3, 3, SAME);
    let mut c = cluster(3);
    let ready = [sts("events-broker", 3, 3, 3, SAME)];
    reconcile(
        &mut c,
        Observed {
            controller_statefulset: Some(&controller),
            broker_statefulsets: &ready,
            ..Observed::default()
        },
        at(0),
    );

    // kubectl scale / HPA to 5: the StatefulSet still has 3.
    c.spec.brokers.replicas = 5;
    let s = reconcile(
        &mut c,
        Observed {
            controller_statefulset: Some(&controller),
            broker_statefulsets: &ready,
            ..Observed::default()
        },
        at(5),
    );
    expect(
        &s,
        [
            ("Ready", "False", "BrokersNotReady"),
            ("Progressing", "True", "ScalingOut"),
            ("Degraded", "False", "AsExpected"),
        ],
    );
    assert_eq!(condition(&s, "Progressing").message, "3 of 5 brokers exist");

    // Down to 2 while 3 still exist (draining): serving, scaling in.
    c.spec.brokers.replicas = 2;
    let s = reconcile(
        &mut c,
        Observed {
            controller_statefulset: Some(&controller),
            broker_statefulsets: &ready,
            ..Observed::default()
        },
        at(10),
    );
    expect(
        &s,
        [
            ("Ready", "True", "AllReplicasReady"),
            ("Progressing", "True", "ScalingIn"),
            ("Degraded", "False", "AsExpected"),
        ],
    );

    // A rollout: new revision not yet everywhere.
    c.spec.brokers.replicas = 3;
    let rolling = [sts("events-broker", 3, 3, 3, ("r1", "r2"))];
    let s = reconcile(
        &mut c,
        Observed {
            controller_statefulset: Some(&controller),
            broker_statefulsets: &rolling,
            ..Observed::default()
        },
        at(15),
    );
    assert_eq!(
        summary(&s)[1],
        ("Progressing".into(), "True".into(), "RollingOut".into())
    );

    // The StatefulSet controller has not seen the latest spec yet.
    let mut stale = sts("events-broker", 3, 3, 3, SAME);
    stale.metadata.generation = Some(2);
    let stale = [stale];
    let s = reconcile(
        &mut c,
        Observed {
            controller_statefulset: Some(&controller),
            broker_statefulsets: &stale,
            ..Observed::default()
        },
        at(20),
    );
    assert_eq!(
        summary(&s)[1],
        ("Progressing".into(), "True".into(), "RollingOut".into())
    );
}

#[test]
fn spot_and_on_demand_sets_add_up() {
    let mut c = cluster(5);
    let controller = sts("events-controller", 3, 3, 3, SAME);
    let sets = [
        sts("events-broker", 2, 2, 2, SAME),
        sts("events-broker-spot", 3, 3, 3, SAME),
    ];
    let pods = [
        pod("events-broker-spot-2", 2, "spot", true),
        pod("events-broker-0", 0, "on-demand", true),
    ];
    let s = reconcile(
        &mut c,
        Observed {
            controller_statefulset: Some(&controller),
            broker_statefulsets: &sets,
            broker_pods: &pods,
            ..Observed::default()
        },
        at(0),
    );
    assert_eq!(s.replicas, 5);
    assert_eq!(condition(&s, "Ready").status, "True");
    let capacities: Vec<CapacityType> = s.brokers.iter().map(|b| b.capacity).collect();
    assert_eq!(capacities, [CapacityType::OnDemand, CapacityType::Spot]);
}

#[test]
fn an_invalid_spec_is_degraded_and_waits() {
    let mut c = cluster(3);
    let controller = sts("events-controller", 3, 3, 3, SAME);
    let brokers = [sts("events-broker", 3, 3, 3, SAME)];
    let observed = Observed {
        controller_statefulset: Some(&controller),
        broker_statefulsets: &brokers,
        ..Observed::default()
    };
    reconcile(&mut c, observed, at(0));
    c.spec.controllers.replicas = 4;
    c.metadata.generation = Some(2);
    let s = reconcile(&mut c, observed, at(30));
    expect(
        &s,
        [
            ("Ready", "False", "InvalidSpec"),
            ("Progressing", "False", "InvalidSpec"),
            ("Degraded", "True", "InvalidSpec"),
        ],
    );
    assert!(condition(&s, "Degraded")
        .message
        .contains("spec.controllers.replicas: 4 is not a Raft quorum size"));
    assert!(s
        .conditions
        .iter()
        .all(|c| c.observed_generation == Some(2)));
    assert_eq!(s.observed_generation, Some(2));
    // The running brokers are still counted for /scale.
    assert_eq!(s.replicas, 3);
    // Fixed: back to normal.
    c.spec.controllers.replicas = 3;
    let s = reconcile(&mut c, observed, at(60));
    assert_eq!(condition(&s, "Degraded").status, "False");
    assert_eq!(condition(&s, "Ready").status, "True");
}

#[test]
fn reassignments_show_in_progressing_and_degraded() {
    let mut c = cluster(3);
    let controller = sts("events-controller", 3, 3, 3, SAME);
    let brokers = [sts("events-broker", 3, 3, 3, SAME)];
    let mut r = ReassignmentStatus {
        trigger: ReassignmentTrigger::ScaleOut,
        outcome: ReassignmentOutcome::InProgress,
        brokers: vec!["events-broker-2".into()],
        moved_partitions: 7,
        started_at: at(0),
        finished_at: None,
        message: String::new(),
    };
    let s = reconcile(
        &mut c,
        Observed {
            controller_statefulset: Some(&controller),
            broker_statefulsets: &brokers,
            last_reassignment: Some(&r),
            ..Observed::default()
        },
        at(1),
    );
    assert_eq!(
        summary(&s)[1],
        ("Progressing".into(), "True".into(), "Reassigning".into())
    );
    assert_eq!(
        condition(&s, "Progressing").message,
        "ScaleOut: 7 partitions moved so far"
    );

    r.outcome = ReassignmentOutcome::Failed;
    r.message = "controller unreachable".into();
    let s = reconcile(
        &mut c,
        Observed {
            controller_statefulset: Some(&controller),
            broker_statefulsets: &brokers,
            last_reassignment: Some(&r),
            ..Observed::default()
        },
        at(2),
    );
    assert_eq!(
        summary(&s)[2],
        (
            "Degraded".into(),
            "True".into(),
            "ReassignmentFailed".into()
        )
    );
    // Not observed this time: the last outcome is kept, not forgotten.
    let s = reconcile(
        &mut c,
        Observed {
            controller_statefulset: Some(&controller),
            broker_statefulsets: &brokers,
            ..Observed::default()
        },
        at(3),
    );
    assert_eq!(
        s.last_reassignment.as_ref().map(|r| r.outcome),
        Some(ReassignmentOutcome::Failed)
    );
}

#[test]
fn brokers_moving_between_statefulsets_show_in_progressing() {
    let mut c = cluster(3);
    let controller = sts("events-controller", 3, 3, 3, SAME);
    let settled = [sts("events-broker", 3, 3, 3, SAME)];
    let ready = Observed {
        controller_statefulset: Some(&controller),
        broker_statefulsets: &settled,
        ..Observed::default()
    };
    reconcile(&mut c, ready, at(0));
    // Broker 2 left the on-demand set on its way to spot: two pods exist.
    let brokers = [sts("events-broker", 2, 2, 2, SAME)];
    let s = reconcile(
        &mut c,
        Observed {
            controller_statefulset: Some(&controller),
            broker_statefulsets: &brokers,
            moving: &[2, 1],
            ..Observed::default()
        },
        at(1),
    );
    assert_eq!(
        summary(&s)[1],
        ("Progressing".into(), "True".into(), "MovingBrokers".into())
    );
    assert!(condition(&s, "Progressing")
        .message
        .starts_with("brokers 2, 1 move between"));
}
