//! The real reconciler (`floe_operator::controller::reconcile`) against API
//! traffic: a `kube::Client` over kube's `tower-test` mock service, answered
//! by the in-memory fake API server of `support/fake_api.rs` (what it does and
//! does not model is written there), with an in-memory metadata controller
//! and a recording object-store reclaimer.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use floe_crds::KafkaCluster;
use floe_operator::controller::{reconcile, Context, Error, FINALIZER, MISSING_SECRET_RETRY};
use floe_operator::metrics::{Metrics, Outcome};
use floe_operator::reconcile::build::build;
use floe_operator::reconcile::validate::validate;
use kube::api::DeleteParams;
use kube::runtime::controller::Action;
use kube::runtime::events::{Recorder, Reporter};
use kube::Api;
use serde_json::{json, Value};

#[path = "support/doubles.rs"]
mod doubles;
#[path = "support/fake_api.rs"]
mod fake_api;
#[path = "support/fixtures.rs"]
mod fixtures;

use doubles::{AdminCall, MemoryAdmin, RecordingReclaimer};
use fake_api::{Clock, FakeApi};

const KC: &str = "floe.dev/v1alpha1";
const KCS: &str = "kafkaclusters";

struct Harness {
    fake: FakeApi,
    ctx: Arc<Context>,
    admin: MemoryAdmin,
    reclaimer: RecordingReclaimer,
    namespace: String,
    name: String,
}

impl Harness {
    /// A fake API server holding the fixture's KafkaCluster (and Secret);
    /// `edit` adjusts the cluster before it is stored.
    fn new(fixture: &str, edit: impl FnOnce(&mut Value)) -> Harness {
        let clock = Clock::default();
        let (fake, client) = FakeApi::start(clock.clone());
        let (cluster, referenced) = fixtures::load(fixture);
        let mut object = serde_json::to_value(&cluster).unwrap();
        edit(&mut object);
        fake.seed(object);
        if let Some(secret) = referenced.credentials_secret {
            fake.seed(serde_json::to_value(secret).unwrap());
        }
        let admin = MemoryAdmin::new(clock);
        let reclaimer = RecordingReclaimer::default();
        let ctx = Arc::new(Context {
            recorder: Recorder::new(
                client.clone(),
                Reporter {
                    controller: "floe-operator".into(),
                    instance: None,
                },
            ),
            client,
            admin: Arc::new(admin.clone()),
            reclaimer: Arc::new(reclaimer.clone()),
            metrics: Arc::new(Metrics::new()),
        });
        Harness {
            fake,
            ctx,
            admin,
            reclaimer,
            namespace: cluster.metadata.namespace.unwrap(),
            name: cluster.metadata.name.unwrap(),
        }
    }

    fn cluster_value(&self) -> Option<Value> {
        self.fake.get(KC, KCS, &self.namespace, &self.name)
    }

    fn cluster(&self) -> KafkaCluster {
        serde_json::from_value(self.cluster_value().expect("the KafkaCluster exists")).unwrap()
    }

    async fn reconcile(&self) -> Result<Action, Error> {
        reconcile(Arc::new(self.cluster()), self.ctx.clone()).await
    }

    /// The first reconcile only adds the finalizer; the second does the work.
    async fn create(&self) -> Action {
        assert_eq!(self.reconcile().await.unwrap(), Action::await_change());
        assert_eq!(
            self.cluster_value().unwrap()["metadata"]["finalizers"],
            json!([FINALIZER])
        );
        self.reconcile().await.unwrap()
    }

    fn edit_cluster(&self, f: impl FnOnce(&mut Value)) {
        self.fake.edit(KC, KCS, &self.namespace, &self.name, f);
    }

    fn statefulset(&self, name: &str) -> Option<Value> {
        self.fake
            .get("apps/v1", "statefulsets", &self.namespace, name)
    }

    fn broker_replicas(&self) -> i64 {
        let sts = self
            .statefulset(&format!("{}-broker", self.name))
            .expect("broker StatefulSet");
        sts["spec"]["replicas"].as_i64().unwrap()
    }

    /// `Kind/name` of every child the current spec builds, in apply order.
    fn built(&self) -> Vec<String> {
        let cluster = self.cluster();
        let mut referenced = floe_operator::reconcile::dereference::Referenced::default();
        if let Some(secret) = &cluster.spec.object_storage.credentials_secret {
            referenced.credentials_secret = self
                .fake
                .get("v1", "secrets", &self.namespace, &secret.name)
                .map(|s| serde_json::from_value(s).unwrap());
        }
        build(&validate(&cluster, &referenced).expect("a valid spec"))
            .in_apply_order()
            .iter()
            .map(|c| format!("{}/{}", c.kind(), c.name()))
            .collect()
    }

    fn applied(&self) -> Vec<String> {
        self.fake
            .calls()
            .iter()
            .filter_map(|c| c.applied())
            .collect()
    }

    fn status_writes(&self) -> usize {
        self.fake
            .calls()
            .iter()
            .filter(|c| c.is_status_write())
            .count()
    }

    fn deletes(&self) -> Vec<String> {
        self.fake
            .calls()
            .iter()
            .filter(|c| c.method == "DELETE")
            .map(|c| c.path.clone())
            .collect()
    }

    fn condition(&self, type_: &str) -> Value {
        let status = &self.cluster_value().unwrap()["status"];
        status["conditions"]
            .as_array()
            .expect("conditions")
            .iter()
            .find(|c| c["type"] == type_)
            .cloned()
            .unwrap_or_else(|| panic!("condition {type_} in {status}"))
    }

    /// `resourceVersion` of every object in the namespace.
    fn versions(&self) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        for (gv, plural) in [
            (KC, KCS),
            ("v1", "serviceaccounts"),
            ("v1", "configmaps"),
            ("v1", "services"),
            ("policy/v1", "poddisruptionbudgets"),
            ("apps/v1", "statefulsets"),
        ] {
            for o in self.fake.list(gv, plural, &self.namespace) {
                out.insert(
                    format!("{plural}/{}", o["metadata"]["name"].as_str().unwrap()),
                    o["metadata"]["resourceVersion"]
                        .as_str()
                        .unwrap()
                        .to_string(),
                );
            }
        }
        out
    }

    async fn delete_cluster(&self) {
        let api: Api<KafkaCluster> = Api::namespaced(self.ctx.client.clone(), &self.namespace);
        api.delete(&self.name, &DeleteParams::default())
            .await
            .unwrap();
        assert!(
            !self.cluster_value().unwrap()["metadata"]["deletionTimestamp"].is_null(),
            "the finalizer holds the deleted cluster"
        );
    }
}

#[tokio::test]
async fn create_applies_every_child_in_order_and_writes_status() {
    let h = Harness::new("full", |_| {});
    h.create().await;

    let (cluster, referenced) = fixtures::load("full");
    let expected: Vec<String> = build(&validate(&cluster, &referenced).unwrap())
        .in_apply_order()
        .iter()
        .map(|c| format!("{}/{}", c.kind(), c.name()))
        .collect();
    assert_eq!(h.applied(), expected);
    for call in h.fake.calls().iter().filter(|c| c.applied().is_some()) {
        assert_eq!(
            call.query.get("fieldManager").map(String::as_str),
            Some("floe-operator")
        );
        assert_eq!(call.query.get("force").map(String::as_str), Some("true"));
    }
    assert_eq!(h.broker_replicas(), 4);
    assert_eq!(h.status_writes(), 1);

    let kc = h.cluster_value().unwrap();
    let generation = kc["metadata"]["generation"].clone();
    assert_eq!(kc["status"]["observedGeneration"], generation);
    assert_eq!(
        kc["status"]["selector"],
        "app.kubernetes.io/component=broker,app.kubernetes.io/instance=payments,app.kubernetes.io/name=floe"
    );
    for type_ in ["Ready", "Progressing", "Degraded"] {
        assert_eq!(h.condition(type_)["observedGeneration"], generation);
    }
    assert_eq!(h.condition("Progressing")["reason"], "Creating");
    assert_eq!(h.condition("Degraded")["status"], "False");
    // The spec is left to its owner: the status went through /status only.
    assert!(h
        .fake
        .calls()
        .iter()
        .filter(|c| c.path.ends_with("/kafkaclusters/payments"))
        .all(|c| c.content_type.starts_with("application/json-patch")));
    assert_eq!(h.ctx.metrics.reconcile_count(Outcome::Ok), 2);
}

/// The requests of one reconcile of a new, valid cluster, in order (the
/// scenario the kube-rs mock tests spell out call by call).
#[tokio::test]
async fn a_reconcile_makes_exactly_these_requests_in_this_order() {
    let h = Harness::new("full", |_| {});
    assert_eq!(h.reconcile().await.unwrap(), Action::await_change());
    h.fake.clear_calls();
    h.reconcile().await.unwrap();

    let ns = "/namespaces/kafka";
    let mut expected = vec![
        format!("GET /api/v1{ns}/secrets/minio-credentials"),
        format!("GET /apis/apps/v1{ns}/statefulsets"),
        format!("GET /api/v1{ns}/pods"),
    ];
    for child in h.built() {
        let (kind, name) = child.split_once('/').unwrap();
        let prefix = match kind {
            "StatefulSet" => "/apis/apps/v1",
            "PodDisruptionBudget" => "/apis/policy/v1",
            _ => "/api/v1",
        };
        expected.push(format!(
            "PATCH {prefix}{ns}/{}/{name}",
            fake_api::plural_of(kind)
        ));
    }
    for list in [
        "/apis/apps/v1{ns}/statefulsets",
        "/apis/policy/v1{ns}/poddisruptionbudgets",
        "/api/v1{ns}/services",
        "/api/v1{ns}/configmaps",
        "/api/v1{ns}/serviceaccounts",
        "/apis/apps/v1{ns}/statefulsets",
        "/api/v1{ns}/pods",
    ] {
        expected.push(format!("GET {}", list.replace("{ns}", ns)));
    }
    expected.push(format!(
        "PATCH /apis/floe.dev/v1alpha1{ns}/kafkaclusters/payments/status"
    ));
    let calls: Vec<String> = h
        .fake
        .calls()
        .iter()
        .map(|c| format!("{} {}", c.method, c.path))
        .collect();
    assert_eq!(calls, expected);
    // Lists select the cluster's objects by label.
    let selector = "app.kubernetes.io/instance=payments,app.kubernetes.io/managed-by=floe-operator,app.kubernetes.io/name=floe";
    let lists: Vec<_> = h
        .fake
        .calls()
        .into_iter()
        .filter(|c| c.method == "GET" && !c.path.contains("/secrets/"))
        .collect();
    let broker_pods = "app.kubernetes.io/component=broker,app.kubernetes.io/instance=payments,app.kubernetes.io/name=floe";
    for (i, list) in lists.iter().enumerate() {
        let want = if list.path.ends_with("/pods") {
            broker_pods
        } else {
            selector
        };
        assert_eq!(list.query["labelSelector"], want, "{i}: {}", list.path);
    }
    assert_eq!(lists.len(), 9);
}

#[tokio::test]
async fn a_rerun_over_an_unchanged_cluster_changes_nothing() {
    let h = Harness::new("full", |_| {});
    h.create().await;
    let before = h.versions();
    h.fake.clear_calls();

    h.reconcile().await.unwrap();

    assert_eq!(h.versions(), before, "no object changed");
    assert_eq!(h.status_writes(), 0, "an unchanged status is not written");
    assert!(h.deletes().is_empty());
    assert_eq!(
        h.applied(),
        h.built(),
        "every child is still applied (a no-op for the server)"
    );
}

#[tokio::test]
async fn a_spec_change_is_applied_and_observed() {
    let h = Harness::new("minimal", |_| {});
    h.create().await;
    let before = h.versions();
    h.edit_cluster(|kc| kc["spec"]["image"] = json!("registry.example.com/floe:0.2.0"));
    assert_eq!(h.cluster_value().unwrap()["metadata"]["generation"], 2);

    h.reconcile().await.unwrap();

    let after = h.versions();
    for sts in [
        "statefulsets/events-controller",
        "statefulsets/events-broker",
    ] {
        assert_ne!(before[sts], after[sts], "{sts} changed");
        let image = &h
            .statefulset(sts.trim_start_matches("statefulsets/"))
            .unwrap()["spec"]["template"]["spec"]["containers"][0]["image"];
        assert_eq!(image, "registry.example.com/floe:0.2.0");
    }
    assert_eq!(
        before["configmaps/events-config"],
        after["configmaps/events-config"]
    );
    assert_eq!(
        h.cluster_value().unwrap()["status"]["observedGeneration"],
        2
    );
    assert_eq!(h.condition("Ready")["observedGeneration"], 2);
}

#[tokio::test]
async fn children_the_spec_no_longer_needs_are_deleted() {
    let h = Harness::new("spot", |_| {});
    h.create().await;
    assert!(h.statefulset("clicks-broker-spot").is_some());
    // Labelled like a child but not owned by the cluster: left alone.
    h.fake.seed(json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "clicks-notes", "namespace": "streaming", "labels": {
            "app.kubernetes.io/name": "floe", "app.kubernetes.io/instance": "clicks",
            "app.kubernetes.io/managed-by": "floe-operator"}},
        "data": {"note": "kept"},
    }));
    h.fake.clear_calls();

    h.edit_cluster(|kc| kc["spec"]["spot"] = json!({"enabled": false}));
    // No broker registered and no pod: each spot broker moves in two
    // reconciles (out of the spot set, into the on-demand one), then the
    // empty spot set goes.
    for _ in 0..8 {
        h.reconcile().await.unwrap();
    }

    assert_eq!(
        h.deletes(),
        vec!["/apis/apps/v1/namespaces/streaming/statefulsets/clicks-broker-spot".to_string()]
    );
    assert!(h.statefulset("clicks-broker-spot").is_none());
    assert_eq!(h.broker_replicas(), 5);
    assert!(h
        .fake
        .get("v1", "configmaps", "streaming", "clicks-notes")
        .is_some());
    assert!(h
        .fake
        .event_reasons()
        .contains(&"OrphansDeleted".to_string()));
}

#[tokio::test]
async fn an_invalid_spec_writes_status_only_and_waits_for_a_change() {
    let h = Harness::new("invalid-even-quorum", |_| {});
    let action = h.create().await;

    assert_eq!(
        action,
        Action::await_change(),
        "an invalid spec is not retried"
    );
    assert!(h.applied().is_empty(), "no child applied");
    assert!(h.deletes().is_empty());
    assert_eq!(h.status_writes(), 1);
    let degraded = h.condition("Degraded");
    assert_eq!(degraded["status"], "True");
    assert_eq!(degraded["reason"], "InvalidSpec");
    assert!(degraded["message"]
        .as_str()
        .unwrap()
        .contains("spec.controllers.replicas"));
    assert_eq!(
        degraded["observedGeneration"],
        h.cluster_value().unwrap()["metadata"]["generation"]
    );
    assert_eq!(h.fake.event_reasons(), vec!["InvalidSpec"]);
    assert_eq!(h.ctx.metrics.reconcile_count(Outcome::InvalidSpec), 1);

    // Fixing the spec is the change it waits for.
    h.edit_cluster(|kc| kc["spec"]["controllers"]["replicas"] = json!(3));
    h.reconcile().await.unwrap();
    assert_eq!(h.applied(), h.built());
    assert_eq!(h.condition("Degraded")["status"], "False");
}

#[tokio::test]
async fn a_missing_secret_warns_requeues_and_recovers_when_created() {
    let h = Harness::new("invalid-missing-secret", |_| {});
    let action = h.create().await;

    assert_eq!(action, Action::requeue(MISSING_SECRET_RETRY));
    assert_eq!(h.fake.event_reasons(), vec!["SecretMissing"]);
    assert!(h.applied().is_empty());
    assert_eq!(h.condition("Degraded")["reason"], "InvalidSpec");

    h.fake.seed(json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "minio-credentials", "namespace": "streaming"},
        "stringData": {"AWS_ACCESS_KEY_ID": "floe", "AWS_SECRET_ACCESS_KEY": "secret"},
    }));
    h.reconcile().await.unwrap();
    assert_eq!(h.applied(), h.built());
    assert_eq!(h.condition("Degraded")["status"], "False");
}

#[tokio::test]
async fn deleting_with_reclaim_policy_delete_removes_the_data_then_the_finalizer() {
    let h = Harness::new("full", |_| {});
    h.create().await;
    h.delete_cluster().await;

    // A failed deletion keeps the finalizer and is retried.
    *h.reclaimer.fail.lock().unwrap() = true;
    let error = h.reconcile().await.unwrap_err();
    assert_eq!(error.requeue_after(), Duration::from_secs(60));
    assert!(error.to_string().contains("access denied"), "{error}");
    assert_eq!(
        h.cluster_value().unwrap()["metadata"]["finalizers"],
        json!([FINALIZER])
    );
    assert!(h
        .fake
        .event_reasons()
        .contains(&"ReclaimFailed".to_string()));

    *h.reclaimer.fail.lock().unwrap() = false;
    h.reconcile().await.unwrap();
    let deleted = h.reclaimer.deleted.lock().unwrap().clone();
    assert_eq!(deleted.len(), 1);
    assert_eq!(deleted[0].0, "s3://acme-kafka/prod/payments");
    let credentials = deleted[0].1.as_ref().expect("credentials from the Secret");
    assert_eq!(credentials.access_key_id, "floe");
    assert_eq!(credentials.secret_access_key, "s3cr3t-s3cr3t");
    assert!(
        h.cluster_value().is_none(),
        "finalizer removed, cluster gone"
    );
    assert!(h.fake.event_reasons().contains(&"DataDeleted".to_string()));
}

#[tokio::test]
async fn deleting_with_reclaim_policy_retain_keeps_the_data() {
    let h = Harness::new("minimal", |_| {});
    h.create().await;
    h.delete_cluster().await;

    h.reconcile().await.unwrap();

    assert!(h.reclaimer.deleted.lock().unwrap().is_empty());
    assert!(
        h.cluster_value().is_none(),
        "finalizer removed, cluster gone"
    );
    assert!(h.fake.event_reasons().contains(&"DataRetained".to_string()));
}

#[tokio::test]
async fn scale_in_drains_the_leaving_brokers_before_the_statefulset_shrinks() {
    let h = Harness::new("minimal", |kc| {
        kc["spec"]["brokers"] = json!({"replicas": 5})
    });
    h.admin.register(0..5, 2);
    h.create().await;
    assert_eq!(h.broker_replicas(), 5);

    h.edit_cluster(|kc| kc["spec"]["brokers"]["replicas"] = json!(2));
    h.reconcile().await.unwrap();
    assert_eq!(h.admin.calls().len(), 1);
    let (drain_seq, drain) = h.admin.calls()[0].clone();
    assert_eq!(drain, AdminCall::Drain(vec![4, 3, 2]));
    assert_eq!(h.broker_replicas(), 5, "held while draining");
    let status = &h.cluster_value().unwrap()["status"];
    assert_eq!(status["lastReassignment"]["trigger"], "ScaleIn");
    assert_eq!(status["lastReassignment"]["outcome"], "InProgress");

    // Still draining: no second drain, no shrink.
    h.reconcile().await.unwrap();
    assert_eq!(h.admin.calls().len(), 1);
    assert_eq!(h.broker_replicas(), 5);

    h.admin.finish_drains();
    h.reconcile().await.unwrap();
    assert_eq!(h.broker_replicas(), 2);
    let shrink = h
        .fake
        .calls()
        .into_iter()
        .find(|c| {
            c.applied().as_deref() == Some("StatefulSet/events-broker")
                && c.body["spec"]["replicas"] == 2
        })
        .expect("the StatefulSet was lowered");
    assert!(
        shrink.seq > drain_seq,
        "drain before the StatefulSet shrinks"
    );
    let status = &h.cluster_value().unwrap()["status"];
    assert_eq!(status["lastReassignment"]["outcome"], "Succeeded");
    assert_eq!(
        status["lastReassignment"]["brokers"],
        json!(["4", "3", "2"])
    );
    let reasons = h.fake.event_reasons();
    assert!(
        reasons.contains(&"DrainStarted".to_string()) && reasons.contains(&"ScaledIn".to_string())
    );
}

#[tokio::test]
async fn scale_in_is_held_while_the_controllers_cannot_be_asked() {
    let h = Harness::new("minimal", |kc| {
        kc["spec"]["brokers"] = json!({"replicas": 4})
    });
    h.admin.register(0..4, 1);
    h.create().await;
    h.admin.set_unavailable(true);

    h.edit_cluster(|kc| kc["spec"]["brokers"]["replicas"] = json!(3));
    h.reconcile().await.unwrap();

    assert_eq!(h.broker_replicas(), 4);
    assert!(h.admin.calls().is_empty());
    assert!(h.fake.event_reasons().contains(&"ScaleInHeld".to_string()));
}

#[tokio::test]
async fn scale_out_raises_at_once_and_rebalances_once_new_brokers_registered() {
    let h = Harness::new("minimal", |_| {});
    h.admin.register(0..3, 4);
    h.create().await;
    assert!(
        h.admin.calls().is_empty(),
        "a balanced cluster is left alone"
    );

    h.edit_cluster(|kc| kc["spec"]["brokers"]["replicas"] = json!(5));
    h.reconcile().await.unwrap();
    assert_eq!(h.broker_replicas(), 5);
    assert!(
        h.admin.calls().is_empty(),
        "no rebalance before the new brokers registered"
    );

    h.admin.register(3..5, 0);
    h.reconcile().await.unwrap();
    assert_eq!(
        h.admin
            .calls()
            .iter()
            .map(|(_, c)| c.clone())
            .collect::<Vec<_>>(),
        vec![AdminCall::Rebalance]
    );
    let status = &h.cluster_value().unwrap()["status"];
    assert_eq!(status["lastReassignment"]["trigger"], "ScaleOut");
    assert_eq!(status["lastReassignment"]["outcome"], "Succeeded");
    assert_eq!(status["partitions"], 12);

    h.reconcile().await.unwrap();
    assert_eq!(
        h.admin.calls().len(),
        1,
        "balanced now: no second rebalance"
    );
}
