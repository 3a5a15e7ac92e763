//! The instance metadata watcher against a loopback stand-in of the
//! metadata service (moto does not serve it): IMDSv2 token handling, the
//! spot interruption notice and the rebalance recommendation, and a notice
//! through the watcher and responder to a drain call for exactly the broker
//! on that node.

#[path = "support/imds_server.rs"]
mod imds_server;

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use floe_spot::imds::{Imds, ImdsSource, INSTANCE_ACTION_PATH, REBALANCE_PATH};
use floe_spot::respond::{ClusterView, DrainError, DrainSink, Responder};
use floe_spot::{BrokerId, Budget, SignalKind, Target, Watcher};
use imds_server::ImdsServer;
use k8s_openapi::api::core::v1::Pod;

#[tokio::test]
async fn no_notice_is_no_signal_and_needs_a_token() {
    let server = ImdsServer::start().await;
    let mut imds = Imds::new(&server.endpoint()).unwrap();
    let signals = imds.signals(SystemTime::now()).await.unwrap();
    assert!(signals.is_empty());
    // One token for both GETs, fetched first.
    assert_eq!(server.tokens_issued(), 1);
    assert_eq!(
        server.requests(),
        [
            "PUT /latest/api/token",
            &format!("GET {INSTANCE_ACTION_PATH}"),
            &format!("GET {REBALANCE_PATH}"),
        ]
    );
}

#[tokio::test]
async fn interruption_and_rebalance_notices_are_signals() {
    let server = ImdsServer::start().await;
    let mut imds = Imds::new(&server.endpoint()).unwrap();
    server.set(
        INSTANCE_ACTION_PATH,
        Some(r#"{"action": "stop", "time": "2030-01-01T00:02:00Z"}"#),
    );
    server.set(
        REBALANCE_PATH,
        Some(r#"{"noticeTime": "2030-01-01T00:00:00Z"}"#),
    );
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_893_456_000); // 2030-01-01T00:00:00Z
    let signals = imds.signals(now).await.unwrap();
    assert_eq!(signals.len(), 2);
    assert_eq!(signals[0].kind, SignalKind::SpotInterruption);
    assert_eq!(signals[0].deadline, now + Duration::from_secs(120));
    assert_eq!(signals[1].kind, SignalKind::RebalanceRecommendation);
    // A notice that is not the documented JSON is an error, not silence.
    server.set(INSTANCE_ACTION_PATH, Some("garbage"));
    assert!(imds.signals(now).await.is_err());
}

#[tokio::test]
async fn an_expired_token_is_renewed_once() {
    let server = ImdsServer::start().await;
    let mut imds = Imds::new(&server.endpoint()).unwrap();
    imds.signals(SystemTime::now()).await.unwrap();
    server.revoke_token();
    server.set(
        INSTANCE_ACTION_PATH,
        Some(r#"{"action": "terminate", "time": "2030-01-01T00:02:00Z"}"#),
    );
    let signals = imds.signals(SystemTime::now()).await.unwrap();
    assert_eq!(signals.len(), 1);
    assert_eq!(server.tokens_issued(), 2);
}

#[tokio::test]
async fn an_unreachable_service_is_an_error_that_says_what_to_check() {
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut imds = Imds::new(&format!("http://127.0.0.1:{port}")).unwrap();
    let err = imds
        .signals(SystemTime::now())
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("hop limit"), "{err}");
}

/// Drain calls: the brokers and the deadline of each.
type Calls = Vec<(Vec<BrokerId>, SystemTime)>;

/// Records drain calls.
#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Calls>>);

impl DrainSink for Recorder {
    async fn drain(&self, brokers: &[BrokerId], deadline: SystemTime) -> Result<(), DrainError> {
        self.0.lock().unwrap().push((brokers.to_vec(), deadline));
        Ok(())
    }
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

#[tokio::test]
async fn a_notice_drains_exactly_the_broker_on_this_node_once() {
    let server = ImdsServer::start().await;
    let imds = Imds::new(&server.endpoint()).unwrap();
    let mut watcher = Watcher::new(Duration::from_millis(50))
        .with_source(ImdsSource::new(imds, "ip-10-0-1-7".to_string()));
    let view = ClusterView {
        nodes: vec![],
        pods: vec![broker_pod(3, "ip-10-0-1-7"), broker_pod(4, "ip-10-0-2-9")],
        budget: Budget { min_serving: 1 },
    };
    let sink = Recorder::default();
    let mut responder = Responder::new("events", sink.clone());

    // Nothing posted: nothing drained.
    assert!(watcher.poll_once(SystemTime::now()).await.is_empty());
    let plan = responder
        .respond(&watcher.active(), &view, SystemTime::now())
        .await
        .unwrap();
    assert!(plan.drain.is_empty());

    server.set(
        INSTANCE_ACTION_PATH,
        Some(r#"{"action": "terminate", "time": "2030-01-01T00:02:00Z"}"#),
    );
    let fresh = watcher.poll_once(SystemTime::now()).await;
    assert_eq!(fresh.len(), 1);
    assert_eq!(fresh[0].target, Target::Node("ip-10-0-1-7".into()));
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_893_456_000);
    responder
        .respond(&watcher.active(), &view, now)
        .await
        .unwrap();
    // Polling again sees the same notice: not new, and not drained twice.
    assert!(watcher.poll_once(SystemTime::now()).await.is_empty());
    responder
        .respond(&watcher.active(), &view, now)
        .await
        .unwrap();
    let calls = sink.0.lock().unwrap().clone();
    assert_eq!(
        calls,
        [(
            vec![3],
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_893_456_120)
        )]
    );
}
