//! The operator end to end without Kubernetes: the real reconciler
//! (`controller::run`) against the fake API server (`support/fake_api.rs`),
//! whose StatefulSets a process kubelet (`support/kubelet.rs`) runs as local
//! `floe controller` / `floe broker` processes, with objects on a moto S3
//! server and the operator's real admin path (gRPC to the controllers, on
//! their loopback addresses). Real Kafka clients (confluent-kafka, through
//! `e2e/cluster.py`: an idempotent producer and a consumer group) run the
//! whole time while:
//!
//! 1. `spec.brokers.replicas` goes 3 → 5: the StatefulSet grows, the new
//!    brokers register and the operator's rebalance gives them partitions;
//! 2. 5 → 2: the operator drains brokers 2, 3, 4 through the controller and
//!    lowers the StatefulSet only once they are drained; their processes
//!    then exit 0 on SIGTERM;
//! 3. the broker pod template changes (resources): the pods are replaced one
//!    at a time from the highest ordinal, each draining itself on SIGTERM.
//!
//! At the end every acknowledged record was consumed exactly once per
//! partition, in offset order (`check_data`), and by the group.
//!
//! Needs the `floe` binary (`cargo build --bin floe`; found next to this test
//! executable's target dir, or `FLOE_BIN`), a Python with confluent-kafka
//! (`FLOE_E2E_PYTHON`, `python3` on PATH, or `e2e/.venv`) and `moto_server`.
//! A missing Python or moto skips the test loudly, except when `CI` is set.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use floe_controller::grpc::client::{ClientOptions, ControllerClient};
use floe_operator::admin::{AdminConnector, AdminError, BrokerInfo, BrokerState, ClusterAdmin};
use floe_operator::admin_grpc::{GrpcAdmin, GrpcConnector};
use floe_operator::controller::{run, Context};
use floe_operator::metrics::Metrics;
use floe_operator::reconcile::build::METADATA_PORT;
use floe_operator::reconcile::validate::ValidatedCluster;
use futures::future::BoxFuture;
use kube::runtime::events::{Recorder, Reporter};
use serde_json::json;
use tokio_util::sync::CancellationToken;

#[path = "support/doubles.rs"]
mod doubles;
#[path = "support/fake_api.rs"]
mod fake_api;
#[path = "support/kubelet.rs"]
mod kubelet;
#[path = "support/pod_env.rs"]
mod pod_env;
#[path = "support/prerequisites.rs"]
mod prerequisites;

use doubles::RecordingReclaimer;
use fake_api::{Clock, FakeApi};
use kubelet::{Kubelet, What};
use prerequisites::{floe_binary, on_path, python, required, start_moto, Clients, LogsOnFailure};

const NS: &str = "streaming";
const CLUSTER: &str = "events";
const BROKERS: &str = "events-broker";
const BUCKET: &str = "floe-local";
const TOPIC: &str = "orders";
const PARTITIONS: u32 = 12;
const KAFKA_PORT: u16 = 9092;

/// One admin call of the operator, stamped with the shared [`Clock`] when
/// it returned.
#[derive(Clone, Debug)]
enum Logged {
    Brokers(Vec<BrokerInfo>),
    Drain(Vec<i32>),
    Rebalance(u32),
}

type AdminLog = Arc<Mutex<Vec<(u64, Instant, Logged)>>>;

/// The operator's admin connector here: [`GrpcAdmin`] (the real gRPC path)
/// on the controllers' loopback addresses, logging every call.
#[derive(Clone)]
struct Loopback {
    kubelet: Kubelet,
    clock: Clock,
    log: AdminLog,
    client: Arc<Mutex<Option<ControllerClient>>>,
}

impl Loopback {
    fn client(&self, cluster: &ValidatedCluster) -> ControllerClient {
        let mut cached = self.client.lock().unwrap();
        cached
            .get_or_insert_with(|| {
                let endpoints = GrpcConnector::endpoints(cluster)
                    .iter()
                    .map(|e| {
                        let (host, port) = e.rsplit_once(':').unwrap();
                        let pod = host.split('.').next().unwrap();
                        self.kubelet.address(pod, port.parse().unwrap())
                    })
                    .collect();
                ControllerClient::new(
                    endpoints,
                    ClientOptions {
                        deadline: Duration::from_secs(10),
                        attempt_timeout: Duration::from_secs(3),
                    },
                )
            })
            .clone()
    }
}

impl AdminConnector for Loopback {
    fn connect(&self, cluster: &ValidatedCluster) -> Box<dyn ClusterAdmin> {
        Box::new(Logging {
            inner: GrpcAdmin::new(self.client(cluster)),
            clock: self.clock.clone(),
            log: self.log.clone(),
        })
    }
}

struct Logging {
    inner: GrpcAdmin,
    clock: Clock,
    log: AdminLog,
}

impl Logging {
    fn push(&self, call: Logged) {
        let seq = self.clock.tick();
        self.log.lock().unwrap().push((seq, Instant::now(), call));
    }
}

impl ClusterAdmin for Logging {
    fn brokers(&self) -> BoxFuture<'_, Result<Vec<BrokerInfo>, AdminError>> {
        Box::pin(async move {
            let brokers = self.inner.brokers().await?;
            self.push(Logged::Brokers(brokers.clone()));
            Ok(brokers)
        })
    }
    fn drain(&self, ids: &[i32]) -> BoxFuture<'_, Result<(), AdminError>> {
        let ids = ids.to_vec();
        Box::pin(async move {
            self.inner.drain(&ids).await?;
            self.push(Logged::Drain(ids));
            Ok(())
        })
    }
    fn rebalance(&self) -> BoxFuture<'_, Result<u32, AdminError>> {
        Box::pin(async move {
            let moved = self.inner.rebalance().await?;
            self.push(Logged::Rebalance(moved));
            Ok(moved)
        })
    }
}

/// Poll `f` every 200 ms until it returns `Some`, for at most `secs`.
async fn until<T, F, Fut>(what: &str, secs: u64, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {secs} s waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn edit_cluster(fake: &FakeApi, f: impl FnOnce(&mut serde_json::Value)) {
    fake.edit("floe.dev/v1alpha1", "kafkaclusters", NS, CLUSTER, f);
}

fn broker_replicas(fake: &FakeApi) -> Option<i64> {
    fake.get("apps/v1", "statefulsets", NS, BROKERS)?["spec"]["replicas"].as_i64()
}

/// The Lifecycle events of `pod` since `from`.
fn events_of(kubelet: &Kubelet, pod: &str, from: Instant) -> Vec<What> {
    kubelet
        .events()
        .into_iter()
        .filter(|e| e.pod == pod && e.at >= from)
        .map(|e| e.what)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scaling_and_a_rolling_change_under_load_lose_nothing() {
    let floe = floe_binary();
    let Some(python) = python().or_else(|| {
        required("no Python with confluent-kafka (FLOE_E2E_PYTHON, python3, e2e/.venv)")?;
        None
    }) else {
        return;
    };
    let Some(moto_bin) = on_path("moto_server").or_else(|| {
        required("moto_server is not on PATH (pip install 'moto[server]')")?;
        None
    }) else {
        return;
    };
    let t_test = Instant::now();
    let moto = start_moto(&moto_bin, BUCKET);
    let work = tempfile::tempdir().unwrap();
    let _logs = LogsOnFailure(work.path().to_path_buf());

    let clock = Clock::default();
    let (fake, client) = FakeApi::start(clock.clone());
    let kubelet = Kubelet::start(client.clone(), NS, work.path(), floe);
    fake.seed(json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "s3-credentials", "namespace": NS},
        "data": {"AWS_ACCESS_KEY_ID": "ZmxvZQ==", "AWS_SECRET_ACCESS_KEY": "c2VjcmV0"},
    }));
    fake.seed(json!({
        "apiVersion": "floe.dev/v1alpha1", "kind": "KafkaCluster",
        "metadata": {"name": CLUSTER, "namespace": NS},
        "spec": {
            "controllers": {"replicas": 3},
            "brokers": {"replicas": 3, "walMode": "object"},
            "objectStorage": {
                "bucket": BUCKET, "prefix": "events/", "region": "us-east-1",
                "endpoint": moto.endpoint, "credentialsSecret": {"name": "s3-credentials"},
            },
            "zoneSpread": {"enabled": false},
        },
    }));

    let log = AdminLog::default();
    let admin = Loopback {
        kubelet: kubelet.clone(),
        clock: clock.clone(),
        log: log.clone(),
        client: Arc::default(),
    };
    let ctx = Arc::new(Context {
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
    });
    let shutdown = CancellationToken::new();
    let token = shutdown.clone();
    let operator = tokio::spawn(run(ctx, async move { token.cancelled().await }));

    // The test's own view of the brokers: the same admin client, its own
    // connection.
    let observer = GrpcAdmin::new(ControllerClient::new(
        (0..3)
            .map(|i| {
                let port = u16::try_from(METADATA_PORT).unwrap();
                kubelet.address(&format!("{CLUSTER}-controller-{i}"), port)
            })
            .collect(),
        ClientOptions {
            deadline: Duration::from_secs(5),
            attempt_timeout: Duration::from_secs(2),
        },
    ));
    let brokers = || async { observer.brokers().await.ok() };
    let active_leading = |list: &[BrokerInfo], ids: &[i32]| {
        ids.iter().all(|id| {
            list.iter()
                .any(|b| b.id == *id && b.state == BrokerState::Active && b.partitions > 0)
        })
    };

    until("3 brokers registered", 120, || async {
        let list = brokers().await?;
        (0..3)
            .all(|id| {
                list.iter()
                    .any(|b| b.id == id && b.state == BrokerState::Active)
            })
            .then_some(())
    })
    .await;
    eprintln!("TIMING cluster up: {:.1} s", t_test.elapsed().as_secs_f64());

    let bootstrap = [0, 1]
        .map(|i| kubelet.address(&format!("{BROKERS}-{i}"), KAFKA_PORT))
        .join(",");
    let acks_file = work.path().join("acks.jsonl");
    let mut clients = Clients::start(&python, &bootstrap, TOPIC, PARTITIONS, &acks_file);
    until("the clients to produce and consume", 90, || {
        let running = clients.line("RUNNING").is_some();
        async move { running.then_some(()) }
    })
    .await;
    until("partitions on brokers 0, 1, 2", 30, || async {
        active_leading(&brokers().await?, &[0, 1, 2]).then_some(())
    })
    .await;

    // 1. Scale out, 3 → 5, as `kubectl scale` would.
    let t_out = Instant::now();
    edit_cluster(&fake, |kc| kc["spec"]["brokers"]["replicas"] = json!(5));
    until("the broker StatefulSet at 5", 30, || {
        let at = broker_replicas(&fake);
        async move { (at == Some(5)).then_some(()) }
    })
    .await;
    let t_sts = t_out.elapsed();
    let list = until("brokers 3 and 4 leading partitions", 90, || async {
        let list = brokers().await?;
        active_leading(&list, &[3, 4]).then_some(list)
    })
    .await;
    let t_lead = t_out.elapsed();
    assert!(
        log.lock()
            .unwrap()
            .iter()
            .any(|(_, _, c)| matches!(c, Logged::Rebalance(n) if *n > 0)),
        "the partitions moved without the operator's rebalance: {list:?}"
    );
    eprintln!(
        "TIMING scale-out 3→5: StatefulSet at 5 after {:.1} s, brokers 3 and 4 leading after {:.1} s ({list:?})",
        t_sts.as_secs_f64(),
        t_lead.as_secs_f64()
    );
    let acked = clients.acked();
    until("acks after the scale-out", 30, || {
        let more = clients.acked() > acked;
        async move { more.then_some(()) }
    })
    .await;

    // 2. Scale in, 5 → 2: drained through the controller, then lowered.
    let t_in = Instant::now();
    let seq_in = clock.tick();
    edit_cluster(&fake, |kc| kc["spec"]["brokers"]["replicas"] = json!(2));
    let leaving = ["events-broker-2", "events-broker-3", "events-broker-4"];
    // Meanwhile: when the controller first reports the three drained.
    let drained_at = std::cell::Cell::new(None);
    until("brokers 2, 3, 4 to exit", 120, || async {
        if drained_at.get().is_none() {
            let list = brokers().await.unwrap_or_default();
            let leaving_drained = (2..5).all(|id| {
                list.iter()
                    .any(|b| b.id == id && b.state == BrokerState::Drained)
            });
            if leaving_drained {
                drained_at.set(Some(t_in.elapsed()));
            }
        }
        leaving
            .iter()
            .all(|pod| {
                events_of(&kubelet, pod, t_in)
                    .iter()
                    .any(|w| matches!(w, What::Exited { .. }))
            })
            .then_some(())
    })
    .await;
    let t_scaled_in = t_in.elapsed();
    for pod in leaving {
        let events = events_of(&kubelet, pod, t_in);
        assert!(
            events.contains(&What::Terminating {
                reason: "scale-down"
            }) && events.contains(&What::Exited {
                code: Some(0),
                killed: false
            }),
            "{pod}: {events:?}"
        );
    }
    // The order: drains, the controller reporting them drained, then the
    // StatefulSet lowered (straight from 5 to 2).
    let applies: Vec<(u64, i64)> = fake
        .calls()
        .iter()
        .filter(|c| c.seq > seq_in && c.applied().as_deref() == Some("StatefulSet/events-broker"))
        .filter_map(|c| Some((c.seq, c.body["spec"]["replicas"].as_i64()?)))
        .collect();
    let shrink = applies
        .iter()
        .find(|(_, r)| *r != 5)
        .map(|(seq, r)| {
            assert_eq!(*r, 2, "the StatefulSet went from 5 to {r}: {applies:?}");
            *seq
        })
        .expect("an apply lowering the broker StatefulSet");
    let calls: Vec<(u64, Instant, Logged)> = log
        .lock()
        .unwrap()
        .iter()
        .filter(|(seq, _, _)| *seq > seq_in && *seq < shrink)
        .cloned()
        .collect();
    let drained: Vec<i32> = calls
        .iter()
        .filter_map(|(_, _, c)| match c {
            Logged::Drain(ids) => Some(ids.clone()),
            _ => None,
        })
        .flatten()
        .collect();
    assert!(
        [2, 3, 4].iter().all(|id| drained.contains(id)),
        "brokers 2, 3, 4 were not all drained before the StatefulSet shrank: {calls:?}"
    );
    let last_view = calls
        .iter()
        .rev()
        .find_map(|(_, _, c)| match c {
            Logged::Brokers(list) => Some(list.clone()),
            _ => None,
        })
        .expect("a broker list before the shrink");
    assert!(
        last_view
            .iter()
            .filter(|b| b.id >= 2)
            .all(|b| b.state == BrokerState::Drained && b.partitions == 0),
        "the StatefulSet shrank while the controller reported {last_view:?}"
    );
    // When: the drain asked, the three drained (as the test saw it, and as
    // the operator's next poll did), the StatefulSet lowered (the kubelet's
    // first SIGTERM), the processes gone.
    let since = |at: Instant| at.duration_since(t_in).as_secs_f64();
    let asked = calls
        .iter()
        .find(|(_, _, c)| matches!(c, Logged::Drain(_)))
        .map(|(_, at, _)| since(*at))
        .unwrap();
    let reported = calls
        .iter()
        .find(|(_, _, c)| {
            matches!(c, Logged::Brokers(list) if list.iter().filter(|b| b.id >= 2).all(|b| b.state == BrokerState::Drained))
        })
        .map(|(_, at, _)| since(*at))
        .unwrap();
    let drained = drained_at
        .get()
        .map_or("?".into(), |d| format!("{:.1}", d.as_secs_f64()));
    let lowered = kubelet
        .events()
        .iter()
        .find(|e| e.at >= t_in && matches!(e.what, What::Terminating { .. }))
        .map(|e| since(e.at))
        .unwrap();
    eprintln!(
        "TIMING scale-in 5→2: drain asked after {asked:.1} s, drained after {drained} s (seen by \
         the operator after {reported:.1} s), StatefulSet lowered after {lowered:.1} s, the three \
         brokers exited 0 after {:.1} s",
        t_scaled_in.as_secs_f64()
    );

    // 3. A rolling change of the broker pod template.
    let t_roll = Instant::now();
    edit_cluster(&fake, |kc| {
        kc["spec"]["brokers"]["resources"] = json!({"requests": {"cpu": "100m", "memory": "256Mi"}})
    });
    let rolled = |pod: &str| {
        let events = events_of(&kubelet, pod, t_roll);
        let ready_again = events
            .iter()
            .skip_while(|w| !matches!(w, What::Started { .. }))
            .any(|w| *w == What::Ready);
        ready_again.then_some(())
    };
    until("broker 1 replaced and ready", 120, || {
        let done = rolled("events-broker-1");
        async move { done }
    })
    .await;
    let t_first = t_roll.elapsed();
    until("broker 0 replaced and ready", 120, || {
        let done = rolled("events-broker-0");
        async move { done }
    })
    .await;
    let t_second = t_roll.elapsed();
    let order: Vec<(String, What)> = kubelet
        .events()
        .into_iter()
        .filter(|e| e.at >= t_roll)
        .map(|e| (e.pod, e.what))
        .collect();
    let position = |pod: &str, f: &dyn Fn(&What) -> bool| {
        order
            .iter()
            .position(|(p, w)| p == pod && f(w))
            .unwrap_or_else(|| panic!("{pod}: {order:?}"))
    };
    let is_ready = |w: &What| *w == What::Ready;
    let is_term = |w: &What| {
        matches!(
            w,
            What::Terminating {
                reason: "rolling-update"
            }
        )
    };
    assert!(
        position("events-broker-1", &is_term) < position("events-broker-1", &is_ready)
            && position("events-broker-1", &is_ready) < position("events-broker-0", &is_term),
        "not one pod at a time from the highest ordinal: {order:?}"
    );
    for pod in ["events-broker-0", "events-broker-1"] {
        assert!(
            events_of(&kubelet, pod, t_roll).contains(&What::Exited {
                code: Some(0),
                killed: false
            }),
            "{pod} did not exit 0 inside its grace period: {order:?}"
        );
        // It moved its partitions away itself before exiting.
        let log = std::fs::read_to_string(work.path().join(format!("{pod}.log"))).unwrap();
        assert!(
            log.contains("drained: this broker leads no partition"),
            "{pod} did not drain itself on SIGTERM"
        );
    }
    assert!(
        order.iter().all(|(p, _)| p.starts_with(BROKERS)),
        "a broker template change touched other pods: {order:?}"
    );
    let list = until("brokers 0 and 1 leading partitions again", 60, || async {
        let list = brokers().await?;
        active_leading(&list, &[0, 1]).then_some(list)
    })
    .await;
    eprintln!(
        "TIMING rolling change: broker 1 replaced after {:.1} s, broker 0 after {:.1} s, both leading after {:.1} s ({list:?})",
        t_first.as_secs_f64(),
        t_second.as_secs_f64(),
        t_roll.elapsed().as_secs_f64()
    );
    // The operator's view: Ready, both brokers listed ready.
    let status = until("the cluster Ready with 2 brokers", 60, || {
        let kc = fake.get("floe.dev/v1alpha1", "kafkaclusters", NS, CLUSTER);
        async move {
            let status = kc?["status"].clone();
            let ready = status["conditions"]
                .as_array()?
                .iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True");
            let brokers = status["brokers"].as_array()?;
            (ready && brokers.len() == 2 && brokers.iter().all(|b| b["ready"] == true))
                .then_some(status)
        }
    })
    .await;
    eprintln!("status: {status}");
    let acked = clients.acked();
    until("acks after the rolling change", 30, || {
        let more = clients.acked() > acked;
        async move { more.then_some(()) }
    })
    .await;

    // The clients stop and check every acknowledged record.
    assert!(clients.alive(), "the clients died");
    writeln!(clients.stdin.as_mut().unwrap(), "stop").unwrap();
    let result = until("the clients' data check", 150, || {
        let result = clients.line("RESULT");
        async move { result }
    })
    .await;
    assert!(result.starts_with("RESULT ok"), "{result}");
    let crashes: Vec<_> = kubelet
        .events()
        .into_iter()
        .filter(|e| matches!(e.what, What::Crashed { .. }))
        .collect();
    assert!(crashes.is_empty(), "pods crashed: {crashes:?}");
    let asked: Vec<String> = log
        .lock()
        .unwrap()
        .iter()
        .filter_map(|(seq, _, c)| match c {
            Logged::Brokers(_) => None,
            other => Some(format!("#{seq} {other:?}")),
        })
        .collect();
    eprintln!("the operator asked the controllers: {}", asked.join(", "));
    eprintln!("TIMING total {:.1} s", t_test.elapsed().as_secs_f64());

    shutdown.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(10), operator).await;
    kubelet.shutdown().await;
}
