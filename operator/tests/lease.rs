//! Leader election against API traffic: two electors sharing a Lease in the
//! in-memory fake API server (`support/fake_api.rs`), with the real
//! `create`/`replace` calls and `resourceVersion` conflicts.

use std::time::Duration;

use std::sync::Arc;

use floe_operator::lease::{run_elected, LeaderElector, LeaseConfig};
use floe_operator::metrics::Metrics;
use k8s_openapi::jiff::Timestamp;
use serde_json::json;
use tokio_util::sync::CancellationToken;

#[path = "support/fake_api.rs"]
mod fake_api;

use fake_api::{Clock, FakeApi};

fn elector(client: kube::Client, identity: &str) -> LeaderElector {
    LeaderElector::new(
        client,
        LeaseConfig {
            name: "floe-operator".into(),
            namespace: "floe-system".into(),
            identity: identity.into(),
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            renew_every: Duration::from_secs(2),
        },
    )
}

fn holder(fake: &FakeApi) -> serde_json::Value {
    fake.get(
        "coordination.k8s.io/v1",
        "leases",
        "floe-system",
        "floe-operator",
    )
    .expect("the Lease exists")["spec"]["holderIdentity"]
        .clone()
}

#[tokio::test]
async fn one_leader_renews_and_a_follower_takes_over_an_expired_lease() {
    let (fake, client) = FakeApi::start(Clock::default());
    let a = elector(client.clone(), "operator-a");
    let b = elector(client, "operator-b");

    assert!(
        a.try_acquire_or_renew().await.unwrap(),
        "a creates the Lease"
    );
    assert_eq!(holder(&fake), "operator-a");
    assert!(
        !b.try_acquire_or_renew().await.unwrap(),
        "b follows a live holder"
    );
    assert!(a.try_acquire_or_renew().await.unwrap(), "a renews");
    assert_eq!(holder(&fake), "operator-a");

    // a stops renewing: its last renewal is long past.
    fake.edit(
        "coordination.k8s.io/v1",
        "leases",
        "floe-system",
        "floe-operator",
        |l| {
            l["spec"]["renewTime"] = json!("2020-01-01T00:00:00.000000Z");
        },
    );
    assert!(
        b.try_acquire_or_renew().await.unwrap(),
        "b takes the expired Lease over"
    );
    let lease = fake
        .get(
            "coordination.k8s.io/v1",
            "leases",
            "floe-system",
            "floe-operator",
        )
        .unwrap();
    assert_eq!(lease["spec"]["holderIdentity"], "operator-b");
    assert_eq!(lease["spec"]["leaseTransitions"], 1);
    assert!(
        !a.try_acquire_or_renew().await.unwrap(),
        "a sees b and follows"
    );

    // b releases on shutdown; a takes over without waiting for expiry.
    b.release().await.unwrap();
    assert!(a.try_acquire_or_renew().await.unwrap());
    assert_eq!(holder(&fake), "operator-a");
}

#[tokio::test]
async fn a_stale_read_loses_the_race_with_a_conflict() {
    let (fake, client) = FakeApi::start(Clock::default());
    let a = elector(client.clone(), "operator-a");
    let b = elector(client, "operator-b");
    assert!(a.try_acquire_or_renew().await.unwrap());
    fake.edit(
        "coordination.k8s.io/v1",
        "leases",
        "floe-system",
        "floe-operator",
        |l| {
            l["spec"]["renewTime"] = json!("2020-01-01T00:00:00.000000Z");
        },
    );

    // Both read the expired Lease; a writes first (renewing), b's takeover
    // carries the old resourceVersion.
    let stale = b.observe().await.unwrap();
    assert!(a.try_acquire_or_renew().await.unwrap());
    assert!(
        !b.act(stale, Timestamp::now()).await.unwrap(),
        "409: b follows"
    );
    assert_eq!(holder(&fake), "operator-a");
    let puts = fake.calls().iter().filter(|c| c.method == "PUT").count();
    assert_eq!(puts, 2, "a's renewal and b's refused takeover");
}

#[tokio::test]
async fn two_electors_creating_at_once_yield_one_holder() {
    let (fake, client) = FakeApi::start(Clock::default());
    let a = elector(client.clone(), "operator-a");
    let b = elector(client, "operator-b");
    let (none_a, none_b) = (a.observe().await.unwrap(), b.observe().await.unwrap());
    assert!(none_a.is_none() && none_b.is_none());
    assert!(a.act(none_a, Timestamp::now()).await.unwrap());
    assert!(
        !b.act(none_b, Timestamp::now()).await.unwrap(),
        "AlreadyExists: b follows"
    );
    assert_eq!(holder(&fake), "operator-a");
}

#[tokio::test]
async fn the_controller_runs_only_while_the_lease_is_held() {
    let (fake, client) = FakeApi::start(Clock::default());
    let config = LeaseConfig {
        name: "floe-operator".into(),
        namespace: "floe-system".into(),
        identity: "operator-a".into(),
        lease_duration: Duration::from_secs(15),
        renew_deadline: Duration::from_secs(10),
        renew_every: Duration::from_millis(20),
    };
    let elector = LeaderElector::new(client, config);
    let metrics = Arc::new(Metrics::new());
    let shutdown = CancellationToken::new();
    let (started, mut started_rx) = tokio::sync::mpsc::unbounded_channel();
    let (stopped, mut stopped_rx) = tokio::sync::mpsc::unbounded_channel();
    let run = {
        let metrics = metrics.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            run_elected(
                &elector,
                &metrics,
                shutdown,
                move |token: CancellationToken| {
                    let (started, stopped) = (started.clone(), stopped.clone());
                    async move {
                        started.send(()).unwrap();
                        token.cancelled().await;
                        stopped.send(()).unwrap();
                    }
                },
            )
            .await;
        })
    };
    within5(started_rx.recv()).await.unwrap().unwrap();
    assert!(metrics.render().contains("floe_operator_leader 1"));

    // Another replica holds a fresh Lease (e.g. after a partition): step down.
    fake.edit(
        "coordination.k8s.io/v1",
        "leases",
        "floe-system",
        "floe-operator",
        |l| {
            l["spec"]["holderIdentity"] = json!("operator-b");
            l["spec"]["renewTime"] = json!(Timestamp::now().to_string());
        },
    );
    within5(stopped_rx.recv()).await.unwrap().unwrap();
    assert!(metrics.render().contains("floe_operator_leader 0"));

    // Released by b: elected again; shutdown stops the work and releases.
    fake.edit(
        "coordination.k8s.io/v1",
        "leases",
        "floe-system",
        "floe-operator",
        |l| {
            l["spec"]["holderIdentity"] = json!("");
        },
    );
    within5(started_rx.recv()).await.unwrap().unwrap();
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(5), run)
        .await
        .unwrap()
        .unwrap();
    assert!(stopped_rx.recv().await.is_some());
    assert_eq!(
        holder(&fake),
        serde_json::Value::Null,
        "released on shutdown"
    );
}

async fn within5<F: std::future::Future>(f: F) -> Result<F::Output, tokio::time::error::Elapsed> {
    tokio::time::timeout(Duration::from_secs(5), f).await
}
