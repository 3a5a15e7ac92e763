//! The operator's `Controller` wiring (`floe_operator::controller::run`)
//! against the in-memory fake API server (`support/fake_api.rs`) with its
//! watches: what triggers a reconcile — the KafkaCluster itself, a change of
//! a Secret it references, its deletion — and a clean shutdown.

use std::sync::Arc;
use std::time::Duration;

use floe_crds::KafkaCluster;
use floe_operator::controller::{run, Context, FINALIZER};
use floe_operator::metrics::Metrics;
use kube::api::DeleteParams;
use kube::runtime::events::{Recorder, Reporter};
use kube::Api;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

#[path = "support/doubles.rs"]
mod doubles;
#[path = "support/fake_api.rs"]
mod fake_api;
#[path = "support/fixtures.rs"]
mod fixtures;

use doubles::{MemoryAdmin, RecordingReclaimer};
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

#[tokio::test]
async fn the_controller_reconciles_on_watch_events_and_cleans_up_on_delete() {
    let clock = Clock::default();
    let (fake, client) = FakeApi::start(clock.clone());
    // Invalid until its credentials Secret exists.
    let (cluster, _) = fixtures::load("invalid-missing-secret");
    fake.seed(serde_json::to_value(&cluster).unwrap());
    let admin = MemoryAdmin::new(clock);
    admin.register(0..3, 1);
    let ctx = Arc::new(Context {
        recorder: Recorder::new(
            client.clone(),
            Reporter {
                controller: "floe-operator".into(),
                instance: None,
            },
        ),
        client: client.clone(),
        admin: Arc::new(admin),
        reclaimer: Arc::new(RecordingReclaimer::default()),
        metrics: Arc::new(Metrics::new()),
    });
    let shutdown = CancellationToken::new();
    let token = shutdown.clone();
    let controller = tokio::spawn(run(ctx, async move { token.cancelled().await }));

    let cluster_now = || fake.get("floe.dev/v1alpha1", "kafkaclusters", "streaming", "events");
    let degraded = |kc: &Value| {
        kc["status"]["conditions"]
            .as_array()?
            .iter()
            .find(|c| c["type"] == "Degraded")
            .map(|c| c["reason"].as_str().unwrap_or_default().to_string())
    };

    // Watched: the finalizer goes on, then the invalid spec is reported.
    let reason = eventually("the invalid spec in the status", || {
        cluster_now().and_then(|kc| degraded(&kc))
    })
    .await;
    assert_eq!(reason, "InvalidSpec");
    assert_eq!(
        cluster_now().unwrap()["metadata"]["finalizers"],
        json!([FINALIZER])
    );
    assert!(fake.list("apps/v1", "statefulsets", "streaming").is_empty());

    // Creating the Secret triggers a reconcile through the Secret watch
    // (the missing-Secret requeue is a minute away).
    fake.seed(json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "minio-credentials", "namespace": "streaming"},
        "stringData": {"AWS_ACCESS_KEY_ID": "floe", "AWS_SECRET_ACCESS_KEY": "secret"},
    }));
    eventually("the StatefulSets", || {
        (fake.list("apps/v1", "statefulsets", "streaming").len() == 2).then_some(())
    })
    .await;
    eventually("Degraded=False", || {
        cluster_now()
            .and_then(|kc| degraded(&kc))
            .filter(|r| r == "AsExpected")
    })
    .await;

    // A spec change is picked up from the KafkaCluster watch.
    fake.edit(
        "floe.dev/v1alpha1",
        "kafkaclusters",
        "streaming",
        "events",
        |kc| kc["spec"]["image"] = json!("floe:0.2.0"),
    );
    eventually("the new image", || {
        let sts = fake.get("apps/v1", "statefulsets", "streaming", "events-broker")?;
        (sts["spec"]["template"]["spec"]["containers"][0]["image"] == "floe:0.2.0").then_some(())
    })
    .await;

    // Deleting runs the finalizer (Retain) and lets the cluster go.
    let api: Api<KafkaCluster> = Api::namespaced(client, "streaming");
    api.delete("events", &DeleteParams::default())
        .await
        .unwrap();
    eventually("the cluster to be gone", || {
        cluster_now().is_none().then_some(())
    })
    .await;
    assert!(fake.event_reasons().contains(&"DataRetained".to_string()));

    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(10), controller)
        .await
        .expect("the controller stops on shutdown")
        .unwrap();
}
