//! The EC2 watcher against a real EC2 API endpoint (moto) through
//! aws-sdk-ec2, not a fake of the SDK.
//!
//! Spot instances are created with `RequestSpotInstances`; an interruption
//! is driven the way EC2 carries it out, through the instance's state:
//! `TerminateInstances` (interruption behaviour *terminate*) and
//! `StopInstances` (behaviour *stop*). moto cannot set a spot request's
//! status code (it stays `fulfilled`) nor post scheduled events, so those
//! classifications are tested on SDK values in `src/ec2.rs`; here the
//! `fulfilled` requests are checked to raise nothing.
#![cfg(feature = "ec2")]

#[path = "support/moto.rs"]
mod moto;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use aws_sdk_ec2::types::{InstanceType, RequestSpotLaunchSpecification, SpotPlacement};
use floe_spot::ec2::{client, Ec2Config, Ec2Source};
use floe_spot::respond::{ClusterView, DrainError, DrainSink, NodeSource, Responder};
use floe_spot::{BrokerId, Budget, SignalKind, Target, Watcher};
use k8s_openapi::api::core::v1::{Node, Pod};
use tokio::sync::watch;

#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<Vec<BrokerId>>>>);

impl DrainSink for Recorder {
    async fn drain(&self, brokers: &[BrokerId], _deadline: SystemTime) -> Result<(), DrainError> {
        self.0.lock().unwrap().push(brokers.to_vec());
        Ok(())
    }
}

fn node(name: &str, instance: &str) -> Node {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name},
        "spec": {"providerID": format!("aws:///us-east-1a/{instance}")}
    }))
    .unwrap()
}

fn broker_pod(ordinal: i32, node: &str) -> Pod {
    serde_json::from_value(serde_json::json!({
        "metadata": {
            "name": format!("events-broker-spot-{ordinal}"),
            "labels": {
                "app.kubernetes.io/name": "floe",
                "app.kubernetes.io/instance": "events",
                "app.kubernetes.io/component": "broker",
                "apps.kubernetes.io/pod-index": ordinal.to_string(),
            }
        },
        "spec": {"nodeName": node, "containers": []},
        "status": {"conditions": [{"type": "Ready", "status": "True"}]}
    }))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_spot_instance_drains_exactly_its_brokers() {
    let Some(moto) = moto::start() else { return };
    // The standard chain reads these; moto accepts any credentials.
    std::env::set_var("AWS_ACCESS_KEY_ID", "testing");
    std::env::set_var("AWS_SECRET_ACCESS_KEY", "testing");
    let ec2 = client(&Ec2Config {
        endpoint: Some(moto.endpoint.clone()),
        region: Some("us-east-1".into()),
    })
    .await;

    // Three spot instances and one on-demand instance.
    let spot = ec2
        .request_spot_instances()
        .instance_count(3)
        .launch_specification(
            RequestSpotLaunchSpecification::builder()
                .image_id("ami-03cf127a")
                .instance_type(InstanceType::M5Large)
                .placement(
                    SpotPlacement::builder()
                        .availability_zone("us-east-1a")
                        .build(),
                )
                .build(),
        )
        .send()
        .await
        .expect("RequestSpotInstances");
    let spot_ids: Vec<String> = spot
        .spot_instance_requests()
        .iter()
        .map(|r| r.instance_id().expect("moto fulfils at once").to_string())
        .collect();
    assert_eq!(spot_ids.len(), 3);
    let on_demand = ec2
        .run_instances()
        .image_id("ami-03cf127a")
        .instance_type(InstanceType::M5Large)
        .min_count(1)
        .max_count(1)
        .send()
        .await
        .expect("RunInstances");
    let on_demand_id = on_demand.instances()[0].instance_id().unwrap().to_string();

    // Brokers 0 on the on-demand node; 1 and 2 on spot-a; 3 on spot-b; 4 on spot-c.
    let view = ClusterView {
        nodes: vec![
            node("on-demand", &on_demand_id),
            node("spot-a", &spot_ids[0]),
            node("spot-b", &spot_ids[1]),
            node("spot-c", &spot_ids[2]),
        ],
        pods: vec![
            broker_pod(0, "on-demand"),
            broker_pod(1, "spot-a"),
            broker_pod(2, "spot-a"),
            broker_pod(3, "spot-b"),
            broker_pod(4, "spot-c"),
        ],
        budget: Budget { min_serving: 2 },
    };
    let (_view_tx, view_rx) = watch::channel(Arc::new(view.clone()));
    let mut watcher = Watcher::new(Duration::from_secs(1))
        .with_source(NodeSource::new(view_rx.clone()))
        .with_source(Ec2Source::new(ec2.clone(), view_rx));
    let sink = Recorder::default();
    let mut responder = Responder::new("events", sink.clone());

    // Everything running, every spot request `fulfilled`: nothing to do.
    assert_eq!(watcher.poll_once(SystemTime::now()).await, []);
    let plan = responder
        .respond(&watcher.active(), &view, SystemTime::now())
        .await
        .unwrap();
    assert!(plan.drain.is_empty() && plan.held.is_empty());

    // EC2 reclaims spot-a (terminate behaviour).
    ec2.terminate_instances()
        .instance_ids(&spot_ids[0])
        .send()
        .await
        .expect("TerminateInstances");
    let fresh = watcher.poll_once(SystemTime::now()).await;
    assert_eq!(fresh.len(), 1, "{fresh:?}");
    assert_eq!(fresh[0].target, Target::Instance(spot_ids[0].clone()));
    assert_eq!(fresh[0].signal.kind, SignalKind::InstanceGoing);
    assert!(
        fresh[0].signal.detail.contains("terminated"),
        "{}",
        fresh[0].signal.detail
    );
    let plan = responder
        .respond(&watcher.active(), &view, SystemTime::now())
        .await
        .unwrap();
    assert_eq!(plan.broker_ids(), [1, 2]);
    assert_eq!(sink.0.lock().unwrap().clone(), [vec![1, 2]]);

    // spot-b is stopped (stop behaviour): three still serve, one may go.
    ec2.stop_instances()
        .instance_ids(&spot_ids[1])
        .send()
        .await
        .expect("StopInstances");
    // spot-c too: now the budget (two serving) holds broker 4 back.
    ec2.terminate_instances()
        .instance_ids(&spot_ids[2])
        .send()
        .await
        .expect("TerminateInstances");
    let fresh = watcher.poll_once(SystemTime::now()).await;
    let targets: BTreeSet<_> = fresh.iter().map(|n| n.target.clone()).collect();
    assert_eq!(
        targets,
        BTreeSet::from([
            Target::Instance(spot_ids[1].clone()),
            Target::Instance(spot_ids[2].clone())
        ])
    );
    let plan = responder
        .respond(&watcher.active(), &view, SystemTime::now())
        .await
        .unwrap();
    assert_eq!(plan.drain.len(), 1, "{plan:?}");
    assert_eq!(plan.held.len(), 1, "{plan:?}");
    let drained = plan.drain[0].broker;
    assert!(drained == 3 || drained == 4);
    // Each broker asked for once, across all rounds; the on-demand broker never.
    let calls = sink.0.lock().unwrap().clone();
    assert_eq!(calls, [vec![1, 2], vec![drained]]);
    assert_eq!(responder.draining(), BTreeSet::from([1, 2, drained]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_endpoint_keeps_the_last_signals() {
    let Some(moto) = moto::start() else { return };
    std::env::set_var("AWS_ACCESS_KEY_ID", "testing");
    std::env::set_var("AWS_SECRET_ACCESS_KEY", "testing");
    let ec2 = client(&Ec2Config {
        endpoint: Some(moto.endpoint.clone()),
        region: Some("us-east-1".into()),
    })
    .await;
    let run = ec2
        .run_instances()
        .image_id("ami-03cf127a")
        .min_count(1)
        .max_count(1)
        .send()
        .await
        .expect("RunInstances");
    let id = run.instances()[0].instance_id().unwrap().to_string();
    ec2.stop_instances()
        .instance_ids(&id)
        .send()
        .await
        .expect("StopInstances");
    let view = ClusterView {
        nodes: vec![node("n", &id)],
        ..Default::default()
    };
    let (_tx, rx) = watch::channel(Arc::new(view));
    let mut watcher = Watcher::new(Duration::from_secs(1)).with_source(Ec2Source::new(ec2, rx));
    assert_eq!(watcher.poll_once(SystemTime::now()).await.len(), 1);
    drop(moto);
    // The endpoint is gone: the poll fails, the stop is still active and not new.
    assert!(watcher.poll_once(SystemTime::now()).await.is_empty());
    assert_eq!(watcher.active().len(), 1);
}
