//! The spot watchers (`floe_operator::spot::run`) against the in-memory fake
//! API server (`support/fake_api.rs`, whose list and watch serve Nodes and
//! PodDisruptionBudgets like any other resource): a Node Termination Handler
//! taint on a node drains exactly the brokers on it through the cluster's
//! admin API, a node without the cluster's brokers drains nothing, and the
//! brokers' PodDisruptionBudget holds back a second broker until a
//! replacement serves.

use std::sync::Arc;
use std::time::Duration;

use floe_operator::spot::{run, SpotConfig, SpotContext, SpotMetrics};
use floe_spot::node::taints;
use kube::runtime::events::{Recorder, Reporter};
use serde_json::{json, Value};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

#[path = "support/doubles.rs"]
mod doubles;
#[path = "support/fake_api.rs"]
mod fake_api;
#[path = "support/fixtures.rs"]
mod fixtures;

use doubles::{AdminCall, MemoryAdmin};
use fake_api::{Clock, FakeApi};

/// Poll `f` until it returns `Some`, for at most 20 s.
async fn eventually<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    for _ in 0..400 {
        if let Some(v) = f() {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

fn node(name: &str, taint: Option<&str>) -> Value {
    let taints: Vec<Value> = taint
        .map(|key| json!({"key": key, "effect": "NoSchedule"}))
        .into_iter()
        .collect();
    json!({
        "apiVersion": "v1", "kind": "Node",
        // Cluster-scoped: the fake keys it under the empty namespace.
        "metadata": {"name": name, "namespace": ""},
        "spec": {"providerID": format!("aws:///us-east-1a/i-{name}"), "taints": taints},
    })
}

fn broker_pod(namespace: &str, cluster: &str, ordinal: i32, node: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": format!("{cluster}-broker-{ordinal}"),
            "namespace": namespace,
            "labels": {
                "app.kubernetes.io/name": "floe",
                "app.kubernetes.io/instance": cluster,
                "app.kubernetes.io/component": "broker",
                "app.kubernetes.io/managed-by": "floe-operator",
                "apps.kubernetes.io/pod-index": ordinal.to_string(),
            },
        },
        "spec": {"nodeName": node, "containers": [{"name": "broker", "image": "floe"}]},
        "status": {"conditions": [{"type": "Ready", "status": "True"}]},
    })
}

fn broker_pdb(namespace: &str, cluster: &str, spec: Value) -> Value {
    json!({
        "apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
        "metadata": {
            "name": format!("{cluster}-broker"),
            "namespace": namespace,
            "labels": {
                "app.kubernetes.io/name": "floe",
                "app.kubernetes.io/instance": cluster,
                "app.kubernetes.io/component": "broker",
                "app.kubernetes.io/managed-by": "floe-operator",
            },
        },
        "spec": spec,
    })
}

fn taint(fake: &FakeApi, node: &str, key: &str) {
    fake.edit("v1", "nodes", "", node, |n| {
        n["spec"]["taints"] = json!([{"key": key, "effect": "NoSchedule"}]);
    });
}

/// The KafkaCluster `streaming/events` with three brokers, on nodes a, b
/// and c; node d runs none of its brokers. Nodes are given tainted as
/// `tainted` says.
fn seed(fake: &FakeApi, tainted: &[&str]) {
    let (cluster, _) = fixtures::load("minimal");
    let mut cluster = serde_json::to_value(&cluster).unwrap();
    cluster["spec"]["brokers"]["replicas"] = json!(3);
    fake.seed(cluster);
    for name in ["a", "b", "c", "d"] {
        let taint = tainted.contains(&name).then_some(taints::NTH_SPOT_ITN);
        fake.seed(node(name, taint));
    }
    for (ordinal, node) in [(0, "a"), (1, "b"), (2, "c")] {
        fake.seed(broker_pod("streaming", "events", ordinal, node));
    }
    // The operator's own budget: one broker at a time.
    fake.seed(broker_pdb(
        "streaming",
        "events",
        json!({"maxUnavailable": 1, "selector": {"matchLabels": {"app.kubernetes.io/component": "broker"}}}),
    ));
}

struct Running {
    fake: FakeApi,
    admin: MemoryAdmin,
    ctx: Arc<SpotContext>,
    cancel: CancellationToken,
    task: JoinHandle<()>,
}

impl Running {
    fn start(fake: FakeApi, client: kube::Client, clock: Clock) -> Running {
        let admin = MemoryAdmin::new(clock);
        admin.register(0..3, 4);
        let ctx = Arc::new(SpotContext {
            recorder: Some(Recorder::new(
                client.clone(),
                Reporter {
                    controller: "floe-operator".into(),
                    instance: None,
                },
            )),
            client,
            admin: Arc::new(admin.clone()),
            metrics: SpotMetrics::new(),
            config: SpotConfig {
                interval: Duration::from_millis(20),
                ..SpotConfig::default()
            },
            extra_sources: Vec::new(),
        });
        let cancel = CancellationToken::new();
        let task = tokio::spawn(run(ctx.clone(), cancel.clone()));
        Running {
            fake,
            admin,
            ctx,
            cancel,
            task,
        }
    }

    fn drains(&self) -> Vec<Vec<i32>> {
        self.admin
            .calls()
            .into_iter()
            .map(|(_, call)| match call {
                AdminCall::Drain(ids) => ids,
                other => panic!("unexpected admin call {other:?}"),
            })
            .collect()
    }

    /// Waits until the watches have listed everything, by waiting for the
    /// list requests and then for a few polls.
    async fn settled(&self) {
        eventually("the spot watches", || {
            let calls = self.fake.calls();
            let watched = |path: &str| {
                calls
                    .iter()
                    .any(|c| c.path == path && c.query.get("watch").is_some_and(|w| w == "true"))
            };
            (watched("/api/v1/nodes")
                && watched("/api/v1/pods")
                && watched("/apis/policy/v1/poddisruptionbudgets")
                && watched("/apis/floe.dev/v1alpha1/kafkaclusters"))
            .then_some(())
        })
        .await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    async fn stop(self) {
        self.cancel.cancel();
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("the spot watchers stop when cancelled")
            .unwrap();
    }
}

#[tokio::test]
async fn a_spot_interruption_taint_drains_exactly_the_broker_on_that_node() {
    let clock = Clock::default();
    let (fake, client) = FakeApi::start(clock.clone());
    seed(&fake, &[]);
    let r = Running::start(fake.clone(), client, clock);
    r.settled().await;
    assert!(r.drains().is_empty(), "no signal, no drain");

    taint(&fake, "b", taints::NTH_SPOT_ITN);
    eventually("a drain", || (!r.drains().is_empty()).then_some(())).await;
    // More polls see the same taint: still one call.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(r.drains(), vec![vec![1]]);
    assert!(fake.event_reasons().contains(&"SpotDrain".to_string()));
    assert_eq!(r.ctx.metrics.drain_count("spot-interruption"), 1);
    assert!(r
        .ctx
        .metrics
        .render()
        .contains(r#"floe_operator_spot_drains_total{reason="spot-interruption"} 1"#));
    r.stop().await;
}

#[tokio::test]
async fn a_doomed_node_without_the_clusters_brokers_drains_nothing() {
    let clock = Clock::default();
    let (fake, client) = FakeApi::start(clock.clone());
    seed(&fake, &[]);
    // A broker of a same-named cluster in another namespace, on node d,
    // with no KafkaCluster of its own there: not this cluster's broker.
    fake.seed(broker_pod("elsewhere", "events", 1, "d"));
    let r = Running::start(fake.clone(), client, clock);
    r.settled().await;

    taint(&fake, "d", taints::NTH_SPOT_ITN);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert!(r.drains().is_empty(), "drained {:?}", r.drains());
    assert!(!fake.event_reasons().contains(&"SpotDrain".to_string()));
    // The watcher was live all along: a taint on node b drains broker 1,
    // and node d still drains nothing.
    taint(&fake, "b", taints::NTH_SPOT_ITN);
    eventually("a drain", || (!r.drains().is_empty()).then_some(())).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(r.drains(), vec![vec![1]]);
    r.stop().await;
}

#[tokio::test]
async fn the_disruption_budget_holds_the_second_broker_until_a_replacement_serves() {
    let clock = Clock::default();
    let (fake, client) = FakeApi::start(clock.clone());
    // Nodes a and b are both going when the watcher starts: maxUnavailable 1
    // of three brokers lets one be drained.
    seed(&fake, &["a", "b"]);
    let r = Running::start(fake.clone(), client, clock);
    eventually("a drain", || (!r.drains().is_empty()).then_some(())).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(r.drains(), vec![vec![0]], "same deadline: lowest id first");

    // Broker 0's replacement runs and serves on node d: broker 1 may go.
    fake.edit("v1", "pods", "streaming", "events-broker-0", |p| {
        p["spec"]["nodeName"] = json!("d");
    });
    eventually("the second drain", || (r.drains().len() == 2).then_some(())).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(r.drains(), vec![vec![0], vec![1]]);
    r.stop().await;
}

#[tokio::test]
async fn a_refused_drain_is_reported_and_retried() {
    let clock = Clock::default();
    let (fake, client) = FakeApi::start(clock.clone());
    seed(&fake, &[]);
    let r = Running::start(fake.clone(), client, clock);
    r.settled().await;
    r.admin.set_unavailable(true);
    taint(&fake, "c", taints::KARPENTER_DISRUPTED);
    eventually("a warning", || {
        fake.event_reasons()
            .contains(&"SpotDrainFailed".to_string())
            .then_some(())
    })
    .await;
    assert!(r.drains().is_empty());
    r.admin.set_unavailable(false);
    eventually("the retried drain", || {
        (!r.drains().is_empty()).then_some(())
    })
    .await;
    assert_eq!(r.drains(), vec![vec![2]]);
    assert_eq!(r.ctx.metrics.drain_count("karpenter-disruption"), 1);
    r.stop().await;
}
