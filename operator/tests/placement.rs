//! Moving brokers between the on-demand and the spot StatefulSet on a running
//! cluster, with the real reconciler (`floe_operator::controller::reconcile`)
//! against the in-memory fake API server. The fake runs no controllers, so
//! the test stands in for two of them after every reconcile: a StatefulSet
//! controller (pods created for every ordinal in a set's range; a pod whose
//! ordinal left the range goes one round later, like a pod in its grace
//! period) and the metadata controllers (`MemoryAdmin`: drains finish, a new
//! pod registers as a new, active incarnation).
//!
//! Checked on every round: a moving broker is drained before any StatefulSet
//! changes, no ordinal is ever in both sets' ranges nor started in one while
//! a pod of the other holds it, the set the spec no longer wants is lowered
//! to 0 before it is deleted, and the end state is the spec's layout, which a
//! re-run leaves untouched.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use floe_crds::KafkaCluster;
use floe_operator::controller::{reconcile, Context};
use floe_operator::metrics::Metrics;
use k8s_openapi::api::core::v1::Pod;
use kube::api::DeleteParams;
use kube::runtime::events::{Recorder, Reporter};
use kube::{Api, Client};
use serde_json::{json, Value};

#[path = "support/doubles.rs"]
mod doubles;
#[path = "support/fake_api.rs"]
mod fake_api;
#[path = "support/fixtures.rs"]
mod fixtures;

use doubles::{AdminCall, MemoryAdmin, RecordingReclaimer};
use fake_api::{Clock, FakeApi};

const NS: &str = "streaming";

struct Harness {
    fake: FakeApi,
    client: Client,
    admin: MemoryAdmin,
    name: String,
    /// Pods whose ordinal left their set's range on the previous round.
    leaving: BTreeSet<String>,
}

/// A fresh operator process: new recorder and metrics, nothing remembered.
fn context(client: &Client, admin: &MemoryAdmin) -> Arc<Context> {
    Arc::new(Context {
        recorder: Recorder::new(
            client.clone(),
            Reporter {
                controller: "floe-operator".into(),
                instance: None,
            },
        ),
        client: client.clone(),
        admin: Arc::new(admin.clone()),
        reclaimer: Arc::new(RecordingReclaimer::default()),
        metrics: Arc::new(Metrics::new()),
    })
}

impl Harness {
    /// A running cluster from a fixture: created, its pods up and its
    /// brokers registered, each leading 3 partitions.
    async fn running(fixture: &str, edit: impl FnOnce(&mut Value)) -> Harness {
        let clock = Clock::default();
        let (fake, client) = FakeApi::start(clock.clone());
        let (cluster, _) = fixtures::load(fixture);
        let mut object = serde_json::to_value(&cluster).unwrap();
        edit(&mut object);
        fake.seed(object);
        let mut h = Harness {
            admin: MemoryAdmin::new(clock),
            fake,
            client,
            name: cluster.metadata.name.unwrap(),
            leaving: BTreeSet::new(),
        };
        let ctx = context(&h.client, &h.admin);
        h.reconcile(&ctx).await;
        h.reconcile(&ctx).await;
        let started = h.sync_pods().await;
        h.admin.register(started, 3);
        h.reconcile(&ctx).await;
        h
    }

    fn cluster(&self) -> KafkaCluster {
        let value = self
            .fake
            .get("floe.dev/v1alpha1", "kafkaclusters", NS, &self.name)
            .unwrap();
        serde_json::from_value(value).unwrap()
    }

    async fn reconcile(&self, ctx: &Arc<Context>) {
        reconcile(Arc::new(self.cluster()), ctx.clone())
            .await
            .unwrap();
    }

    fn edit(&self, f: impl FnOnce(&mut Value)) {
        self.fake
            .edit("floe.dev/v1alpha1", "kafkaclusters", NS, &self.name, f);
    }

    /// Each broker StatefulSet's name and ordinal range.
    fn ranges(&self) -> BTreeMap<String, std::ops::Range<i64>> {
        self.fake
            .list("apps/v1", "statefulsets", NS)
            .into_iter()
            .filter(|s| s["metadata"]["labels"]["app.kubernetes.io/component"] == "broker")
            .map(|s| {
                let start = s["spec"]["ordinals"]["start"].as_i64().unwrap_or(0);
                let replicas = s["spec"]["replicas"].as_i64().unwrap();
                let name = s["metadata"]["name"].as_str().unwrap().to_string();
                (name, start..start + replicas)
            })
            .collect()
    }

    /// Broker pods: name → ordinal.
    fn pods(&self) -> BTreeMap<String, i64> {
        self.fake
            .list("v1", "pods", NS)
            .into_iter()
            .map(|p| {
                let name = p["metadata"]["name"].as_str().unwrap().to_string();
                let ordinal = name.rsplit('-').next().unwrap().parse().unwrap();
                (name, ordinal)
            })
            .collect()
    }

    /// The StatefulSet controller's round: pods for every ordinal in range
    /// exist (never beside another pod with that ordinal), then pods that
    /// left their range a round ago are gone. Returns the ordinals of the
    /// pods it started.
    async fn sync_pods(&mut self) -> Vec<i32> {
        let ranges = self.ranges();
        let mut started = Vec::new();
        for (set, range) in &ranges {
            for ordinal in range.clone() {
                let name = format!("{set}-{ordinal}");
                let pods = self.pods();
                if pods.contains_key(&name) {
                    continue;
                }
                let holders: Vec<_> = pods.iter().filter(|(_, o)| **o == ordinal).collect();
                assert!(
                    holders.is_empty(),
                    "{name} would start while {holders:?} runs broker {ordinal}"
                );
                self.fake.seed(json!({
                    "apiVersion": "v1", "kind": "Pod",
                    "metadata": {"name": name, "namespace": NS, "labels": {
                        "app.kubernetes.io/name": "floe",
                        "app.kubernetes.io/instance": self.name,
                        "app.kubernetes.io/component": "broker",
                        "apps.kubernetes.io/pod-index": ordinal.to_string(),
                    }},
                    "spec": {"containers": [{"name": "broker", "image": "floe"}]},
                }));
                started.push(ordinal as i32);
            }
        }
        // Pods leave after the new ones were created: a pod in its grace
        // period is still there when the StatefulSets change again.
        let api: Api<Pod> = Api::namespaced(self.client.clone(), NS);
        for name in std::mem::take(&mut self.leaving) {
            api.delete(&name, &DeleteParams::default()).await.unwrap();
        }
        for (name, ordinal) in self.pods() {
            let set = name.trim_end_matches(&format!("-{ordinal}"));
            if !ranges.get(set).is_some_and(|r| r.contains(&ordinal)) {
                self.leaving.insert(name);
            }
        }
        started
    }

    /// Reconcile (with a fresh operator every third round) until the broker
    /// StatefulSets are `want` and the cluster is settled, checking every
    /// round. Returns the drains asked for.
    async fn transition(&mut self, want: &[(&str, std::ops::Range<i64>)]) -> Vec<Vec<i32>> {
        let want: BTreeMap<String, _> = want
            .iter()
            .map(|(n, r)| (n.to_string(), r.clone()))
            .collect();
        let before = self.ranges();
        let mut ctx = context(&self.client, &self.admin);
        for round in 0..60 {
            if round % 3 == 2 {
                ctx = context(&self.client, &self.admin);
            }
            let calls = self.admin.calls().len();
            let ranges_before = self.ranges();
            self.reconcile(&ctx).await;
            let ranges = self.ranges();
            // No ordinal in two sets.
            let mut seen = BTreeSet::new();
            for range in ranges.values() {
                for ordinal in range.clone() {
                    assert!(
                        seen.insert(ordinal),
                        "ordinal {ordinal} in two sets: {ranges:?}"
                    );
                }
            }
            // A broker leaves a set only drained (the admin double marks
            // drained brokers; unregistered ones hold nothing).
            for (set, range) in &ranges_before {
                for ordinal in range.clone() {
                    if !ranges.get(set).is_some_and(|r| r.contains(&ordinal)) {
                        let state = self
                            .admin
                            .brokers_now()
                            .into_iter()
                            .find(|b| i64::from(b.id) == ordinal)
                            .map(|b| b.state);
                        assert_eq!(
                            state,
                            Some(floe_operator::admin::BrokerState::Drained),
                            "broker {ordinal} left {set} undrained"
                        );
                    }
                }
            }
            let asked = self.admin.calls().len() > calls;
            self.admin.finish_drains();
            let started = self.sync_pods().await;
            self.admin.register(started.clone(), 0);
            if ranges == want && ranges == ranges_before && !asked && started.is_empty() {
                let done = self.leaving.is_empty()
                    && self.pods().len()
                        == want
                            .values()
                            .map(|r| (r.end - r.start) as usize)
                            .sum::<usize>();
                if done && round > 0 {
                    break;
                }
            }
            assert!(
                round < 59,
                "no end; StatefulSets {ranges:?}, started from {before:?}"
            );
        }
        self.admin
            .calls()
            .into_iter()
            .filter_map(|(_, c)| match c {
                AdminCall::Drain(ids) => Some(ids),
                AdminCall::Rebalance => None,
            })
            .collect()
    }

    /// `resourceVersion` of every StatefulSet and of the cluster.
    fn versions(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for (gv, plural) in [
            ("floe.dev/v1alpha1", "kafkaclusters"),
            ("apps/v1", "statefulsets"),
        ] {
            for o in self.fake.list(gv, plural, NS) {
                out.push((
                    o["metadata"]["name"].as_str().unwrap().to_string(),
                    o["metadata"]["resourceVersion"]
                        .as_str()
                        .unwrap()
                        .to_string(),
                ));
            }
        }
        out
    }

    /// A re-run over the settled cluster changes no object.
    async fn rerun_changes_nothing(&self) {
        let before = self.versions();
        let calls = self.admin.calls().len();
        self.fake.clear_calls();
        self.reconcile(&context(&self.client, &self.admin)).await;
        assert_eq!(self.versions(), before);
        assert!(self.fake.calls().iter().all(|c| c.method != "DELETE"));
        assert_eq!(self.admin.calls().len(), calls);
    }

    /// The sequence number of the first apply that changed a broker
    /// StatefulSet's range.
    fn first_layout_change(&self, initial: &BTreeMap<String, std::ops::Range<i64>>) -> u64 {
        self.fake
            .calls()
            .into_iter()
            .filter(|c| c.method == "PATCH" && c.path.contains("/statefulsets/"))
            .filter(|c| c.body["metadata"]["labels"]["app.kubernetes.io/component"] == "broker")
            .find(|c| {
                let name = c.path.rsplit('/').next().unwrap();
                let start = c.body["spec"]["ordinals"]["start"].as_i64().unwrap_or(0);
                let replicas = c.body["spec"]["replicas"].as_i64().unwrap_or(-1);
                initial
                    .get(name)
                    .is_some_and(|r| *r != (start..start + replicas))
                    || (!initial.contains_key(name) && replicas > 0)
            })
            .map(|c| c.seq)
            .expect("a StatefulSet changed")
    }
}

#[tokio::test]
async fn turning_spot_off_drains_each_spot_broker_before_it_moves_on_demand() {
    let mut h = Harness::running("spot", |_| {}).await;
    let initial = h.ranges();
    assert_eq!(initial["clicks-broker"], 0..2);
    assert_eq!(initial["clicks-broker-spot"], 2..5);
    h.fake.clear_calls();

    h.edit(|kc| kc["spec"]["spot"]["enabled"] = json!(false));
    let drains = h.transition(&[("clicks-broker", 0..5)]).await;

    assert_eq!(
        drains,
        vec![vec![2], vec![3], vec![4]],
        "one at a time, lowest spot first"
    );
    let first_drain = h.admin.calls()[0].0;
    assert!(
        first_drain < h.first_layout_change(&initial),
        "drained before any layout change"
    );
    // The spot set went to 0 replicas (its claims deleted by `whenScaled:
    // Delete` as its brokers left) before the orphan sweep deleted it.
    let calls = h.fake.calls();
    let deleted = calls
        .iter()
        .position(|c| c.method == "DELETE" && c.path.ends_with("/statefulsets/clicks-broker-spot"))
        .expect("the spot StatefulSet is deleted");
    let last_apply = calls[..deleted]
        .iter()
        .rev()
        .find(|c| c.applied().as_deref() == Some("StatefulSet/clicks-broker-spot"))
        .unwrap();
    assert_eq!(last_apply.body["spec"]["replicas"], 0);
    assert_eq!(
        last_apply.body["spec"]["persistentVolumeClaimRetentionPolicy"]["whenScaled"],
        "Delete"
    );
    let reasons = h.fake.event_reasons();
    for reason in [
        "MoveDrainStarted",
        "MoveVacated",
        "BrokersPlaced",
        "Rebalanced",
        "OrphansDeleted",
    ] {
        assert!(
            reasons.contains(&reason.to_string()),
            "{reason} in {reasons:?}"
        );
    }
    // Each move was reported while it drained, and ended with a rebalance.
    assert!(calls.iter().any(|c| c.is_status_write()
        && c.body["status"]["lastReassignment"]["trigger"] == "PlacementChange"
        && c.body["status"]["lastReassignment"]["outcome"] == "InProgress"));
    assert!(calls.iter().any(|c| c.is_status_write()
        && c.body["status"]["conditions"]
            .as_array()
            .is_some_and(|cs| cs.iter().any(|c| c["reason"] == "MovingBrokers"))));
    let status = h.cluster().status.unwrap();
    assert!(status
        .conditions
        .iter()
        .all(|c| c.reason != "MovingBrokers"));
    let last = status.last_reassignment.unwrap();
    assert_eq!(serde_json::to_value(last.trigger).unwrap(), "ScaleOut");
    h.rerun_changes_nothing().await;
}

#[tokio::test]
async fn turning_spot_on_with_more_brokers_starts_the_new_ones_on_spot_and_moves_the_rest() {
    let mut h = Harness::running("minimal", |_| {}).await;
    let initial = h.ranges();
    assert_eq!(initial["events-broker"], 0..3);
    h.fake.clear_calls();

    h.edit(|kc| {
        kc["spec"]["brokers"]["replicas"] = json!(4);
        kc["spec"]["spot"] = json!({
            "enabled": true, "onDemandBrokers": 1,
            "nodeSelector": {"karpenter.sh/capacity-type": "spot"},
        });
    });
    let drains = h
        .transition(&[("events-broker", 0..1), ("events-broker-spot", 1..4)])
        .await;

    assert_eq!(drains, vec![vec![2], vec![1]], "highest on-demand first");
    let reasons = h.fake.event_reasons();
    assert!(reasons.contains(&"MoveDrainStarted".to_string()));
    let spot = h
        .fake
        .get("apps/v1", "statefulsets", NS, "events-broker-spot")
        .unwrap();
    assert_eq!(
        spot["spec"]["template"]["spec"]["nodeSelector"]["karpenter.sh/capacity-type"],
        "spot"
    );
    h.rerun_changes_nothing().await;
}

#[tokio::test]
async fn lowering_on_demand_brokers_to_zero_empties_and_deletes_the_on_demand_set() {
    let mut h = Harness::running("spot", |_| {}).await;
    h.fake.clear_calls();

    h.edit(|kc| kc["spec"]["spot"]["onDemandBrokers"] = json!(0));
    let drains = h.transition(&[("clicks-broker-spot", 0..5)]).await;

    assert_eq!(drains, vec![vec![1], vec![0]]);
    assert!(h
        .fake
        .get("apps/v1", "statefulsets", NS, "clicks-broker")
        .is_none());
    h.rerun_changes_nothing().await;
}

#[tokio::test]
async fn a_move_is_held_while_the_controllers_cannot_be_asked() {
    let h = Harness::running("spot", |_| {}).await;
    let initial = h.ranges();
    h.admin.set_unavailable(true);
    h.edit(|kc| kc["spec"]["spot"]["enabled"] = json!(false));

    let ctx = context(&h.client, &h.admin);
    h.reconcile(&ctx).await;
    h.reconcile(&ctx).await;

    assert_eq!(h.ranges(), initial);
    assert!(h.admin.calls().is_empty());
    assert!(h.fake.event_reasons().contains(&"MoveHeld".to_string()));
}
