//! Acting on signals: the cluster as the operator sees it ([`ClusterView`]),
//! the node-object source that reads signals from it, and the
//! [`Responder`] that turns the watcher's active signals into drain calls on
//! a [`DrainSink`], most urgent first, each broker once, within the budget.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::{Node, Pod};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::node::{node_instance, node_signals};
use crate::plan::{broker_pods, plan_drain, BrokerId, Budget, DrainPlan};
use crate::signal::Signal;
use crate::watcher::{Notice, PollError, Source, Target, Watcher};

/// The Kubernetes objects draining decisions are made from, as the
/// operator's watches last saw them.
#[derive(Clone, Debug, Default)]
pub struct ClusterView {
    /// Every node (or at least every node a broker can run on).
    pub nodes: Vec<Node>,
    /// The pods of the cluster (at least its broker pods).
    pub pods: Vec<Pod>,
    /// The brokers' disruption budget ([`Budget::from_pdb`]).
    pub budget: Budget,
}

impl ClusterView {
    /// Instance id → node name, through the nodes' `spec.providerID`.
    pub fn instance_nodes(&self) -> BTreeMap<String, String> {
        self.nodes
            .iter()
            .filter_map(|n| Some((node_instance(n)?.instance_id, n.metadata.name.clone()?)))
            .collect()
    }
}

/// Reads signals from the Node objects of a [`ClusterView`] (taints,
/// cordons, deletions).
pub struct NodeSource {
    view: watch::Receiver<Arc<ClusterView>>,
}

impl NodeSource {
    /// Reads the latest view from `view` on every poll.
    pub fn new(view: watch::Receiver<Arc<ClusterView>>) -> NodeSource {
        NodeSource { view }
    }
}

impl Source for NodeSource {
    fn name(&self) -> &'static str {
        "nodes"
    }

    fn poll(&mut self, now: SystemTime) -> BoxFuture<'_, Result<Vec<Notice>, PollError>> {
        let view = self.view.borrow().clone();
        Box::pin(async move {
            Ok(view
                .nodes
                .iter()
                .filter_map(|n| Some((n.metadata.name.clone()?, node_signals(n, now))))
                .flat_map(|(name, signals)| {
                    signals.into_iter().map(move |signal| Notice {
                        target: Target::Node(name.clone()),
                        signal,
                    })
                })
                .collect())
        })
    }
}

/// Where drain requests go: the operator implements it with a call to the
/// controller's drain API.
pub trait DrainSink: Send + Sync {
    /// Drains `brokers` (most urgent first): move their partitions away and
    /// stop them taking new ones, finishing before `deadline`. Must be
    /// idempotent: the same broker may be asked again after a restart.
    fn drain(
        &self,
        brokers: &[BrokerId],
        deadline: SystemTime,
    ) -> impl Future<Output = Result<(), DrainError>> + Send;
}

/// A drain request was not accepted.
#[derive(Debug, thiserror::Error)]
#[error("drain of brokers {brokers:?} was not accepted: {reason}; it is retried on the next poll")]
pub struct DrainError {
    /// The brokers of the failed call.
    pub brokers: Vec<BrokerId>,
    /// Why (the sink's own words).
    pub reason: String,
}

/// Turns active signals into drain calls.
pub struct Responder<S> {
    cluster: String,
    sink: S,
    /// Brokers whose drain was accepted, with the node they were on: a
    /// broker whose pod now runs on a node that is not doomed (its
    /// replacement) is forgotten, so it can be drained again later.
    draining: BTreeMap<BrokerId, String>,
    horizon: Duration,
}

/// Signals due later than this are not acted on yet: a scheduled retirement
/// days away drains its brokers when it comes near, not at once.
pub const DEFAULT_HORIZON: Duration = Duration::from_secs(600);

impl<S: DrainSink> Responder<S> {
    /// A responder for the KafkaCluster named `cluster`.
    pub fn new(cluster: &str, sink: S) -> Responder<S> {
        Responder {
            cluster: cluster.to_string(),
            sink,
            draining: BTreeMap::new(),
            horizon: DEFAULT_HORIZON,
        }
    }

    /// Acts on signals due within `horizon` (default [`DEFAULT_HORIZON`]).
    pub fn with_horizon(mut self, horizon: Duration) -> Responder<S> {
        self.horizon = horizon;
        self
    }

    /// The brokers whose drain has been accepted and is still relevant.
    pub fn draining(&self) -> BTreeSet<BrokerId> {
        self.draining.keys().copied().collect()
    }

    /// The sink (tests and callers inspect it).
    pub fn sink(&self) -> &S {
        &self.sink
    }

    /// Plans against `active` signals due before `now` + the horizon and
    /// `view`, and asks the sink to drain
    /// the brokers not yet draining: one call per deadline, most urgent
    /// first. Returns the plan (including brokers held back by the budget).
    /// A failed call leaves its brokers undrained so the next call retries.
    pub async fn respond(
        &mut self,
        active: &[Notice],
        view: &ClusterView,
        now: SystemTime,
    ) -> Result<DrainPlan, DrainError> {
        let due: Vec<Notice> = active
            .iter()
            .filter(|n| n.signal.deadline <= now + self.horizon)
            .cloned()
            .collect();
        let doomed = doomed_nodes(&due, view);
        let brokers = broker_pods(&self.cluster, &view.pods);
        self.draining.retain(|id, _| {
            brokers
                .iter()
                .filter(|b| b.id == *id)
                .all(|b| b.node.as_ref().is_none_or(|n| doomed.contains_key(n)))
        });
        let plan = plan_drain(&brokers, &doomed, &self.draining(), view.budget);
        for (i, group) in plan
            .drain
            .chunk_by(|a, b| a.signal.deadline == b.signal.deadline)
            .enumerate()
        {
            let ids: Vec<BrokerId> = group.iter().map(|d| d.broker).collect();
            let deadline = group[0].signal.deadline;
            tracing::info!(cluster = %self.cluster, brokers = ?ids, kind = %group[0].signal.kind, call = i, "draining brokers on doomed nodes");
            self.sink.drain(&ids, deadline).await?;
            for d in group {
                self.draining.insert(d.broker, d.node.clone());
            }
        }
        for held in &plan.held {
            tracing::warn!(cluster = %self.cluster, broker = held.broker, node = %held.node, min_serving = view.budget.min_serving, "broker on a doomed node held back by the disruption budget");
        }
        Ok(plan)
    }
}

/// Node name → its active signals. Instance signals are resolved through
/// the nodes' provider IDs; signals for instances no node maps to are
/// dropped (they are not this cluster's).
pub fn doomed_nodes(active: &[Notice], view: &ClusterView) -> BTreeMap<String, Vec<Signal>> {
    let instances = view.instance_nodes();
    let mut doomed: BTreeMap<String, Vec<Signal>> = BTreeMap::new();
    for n in active {
        let node = match &n.target {
            Target::Node(name) => Some(name.clone()),
            Target::Instance(id) => instances.get(id).cloned(),
        };
        if let Some(node) = node {
            doomed.entry(node).or_default().push(n.signal.clone());
        }
    }
    doomed
}

/// Runs `watcher` and `responder` until `cancel` fires: every interval,
/// poll, then respond against the latest view. Drain failures are logged and
/// retried on the next round.
pub async fn run<S: DrainSink>(
    mut watcher: Watcher,
    mut responder: Responder<S>,
    view: watch::Receiver<Arc<ClusterView>>,
    cancel: CancellationToken,
) {
    let interval = watcher.interval();
    while !cancel.is_cancelled() {
        watcher.poll_once(SystemTime::now()).await;
        let snapshot = view.borrow().clone();
        if let Err(e) = responder
            .respond(&watcher.active(), &snapshot, SystemTime::now())
            .await
        {
            tracing::warn!(error = %e, "drain request failed");
        }
        tokio::select! {
            _ = cancel.cancelled() => {}
            _ = tokio::time::sleep(interval) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::signal::{Origin, SignalKind};

    #[derive(Default)]
    struct Recorder {
        calls: Mutex<Vec<(Vec<BrokerId>, SystemTime)>>,
        fail: Mutex<bool>,
    }

    impl DrainSink for Recorder {
        async fn drain(
            &self,
            brokers: &[BrokerId],
            deadline: SystemTime,
        ) -> Result<(), DrainError> {
            if *self.fail.lock().unwrap() {
                return Err(DrainError {
                    brokers: brokers.to_vec(),
                    reason: "controller unavailable".into(),
                });
            }
            self.calls
                .lock()
                .unwrap()
                .push((brokers.to_vec(), deadline));
            Ok(())
        }
    }

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn view(yaml: &str) -> ClusterView {
        #[derive(serde::Deserialize)]
        struct Objects {
            nodes: Vec<Node>,
            pods: Vec<Pod>,
        }
        let o: Objects = serde_norway::from_str(yaml).unwrap();
        ClusterView {
            nodes: o.nodes,
            pods: o.pods,
            budget: Budget::default(),
        }
    }

    const VIEW: &str = r#"
nodes:
  - metadata: {name: a}
    spec: {providerID: "aws:///us-east-1a/i-0aaa"}
  - metadata: {name: b}
    spec: {providerID: "aws:///us-east-1b/i-0bbb"}
pods:
  - metadata:
      name: events-broker-0
      labels: {app.kubernetes.io/name: floe, app.kubernetes.io/instance: events, app.kubernetes.io/component: broker}
    spec: {nodeName: a, containers: []}
    status: {conditions: [{type: Ready, status: "True"}]}
  - metadata:
      name: events-broker-1
      labels: {app.kubernetes.io/name: floe, app.kubernetes.io/instance: events, app.kubernetes.io/component: broker}
    spec: {nodeName: b, containers: []}
    status: {conditions: [{type: Ready, status: "True"}]}
"#;

    fn notice(target: Target, kind: SignalKind, seen: u64) -> Notice {
        Notice {
            target,
            signal: Signal::seen_at(kind, Origin::Ec2Api, at(seen), String::new()),
        }
    }

    #[tokio::test]
    async fn instance_signals_reach_brokers_through_provider_ids() {
        let v = view(VIEW);
        let mut r = Responder::new("events", Recorder::default());
        let active = [
            notice(
                Target::Instance("i-0bbb".into()),
                SignalKind::SpotInterruption,
                100,
            ),
            // Not one of this cluster's instances.
            notice(
                Target::Instance("i-0ccc".into()),
                SignalKind::InstanceGoing,
                100,
            ),
        ];
        let plan = r.respond(&active, &v, at(100)).await.unwrap();
        assert_eq!(plan.broker_ids(), [1]);
        assert_eq!(*r.sink().calls.lock().unwrap(), [(vec![1], at(220))]);
    }

    #[tokio::test]
    async fn one_call_per_deadline_most_urgent_first_and_retried_after_failure() {
        let v = view(VIEW);
        let mut r = Responder::new("events", Recorder::default());
        let active = [
            notice(Target::Node("a".into()), SignalKind::Cordon, 0),
            notice(Target::Node("b".into()), SignalKind::InstanceGoing, 0),
        ];
        *r.sink().fail.lock().unwrap() = true;
        assert!(r.respond(&active, &v, at(0)).await.is_err());
        assert!(r.draining().is_empty());
        *r.sink().fail.lock().unwrap() = false;
        r.respond(&active, &v, at(0)).await.unwrap();
        assert_eq!(
            *r.sink().calls.lock().unwrap(),
            [(vec![1], at(0)), (vec![0], at(300))]
        );
        // Nothing new: no more calls.
        r.respond(&active, &v, at(1)).await.unwrap();
        assert_eq!(r.sink().calls.lock().unwrap().len(), 2);
    }

    /// A sink shared with the test while `run` owns the responder.
    #[derive(Clone, Default)]
    struct Shared(std::sync::Arc<Recorder>);

    impl DrainSink for Shared {
        async fn drain(
            &self,
            brokers: &[BrokerId],
            deadline: SystemTime,
        ) -> Result<(), DrainError> {
            self.0.drain(brokers, deadline).await
        }
    }

    #[tokio::test]
    async fn run_drains_when_a_taint_appears_in_the_view() {
        let calm = view(VIEW);
        let (tx, rx) = watch::channel(Arc::new(calm.clone()));
        let watcher =
            Watcher::new(Duration::from_millis(10)).with_source(NodeSource::new(rx.clone()));
        let sink = Shared::default();
        let cancel = CancellationToken::new();
        let task = tokio::spawn(run(
            watcher,
            Responder::new("events", sink.clone()),
            rx,
            cancel.clone(),
        ));
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(sink.0.calls.lock().unwrap().is_empty());
        // Karpenter taints node b.
        let mut tainted = calm;
        tainted.nodes[1].spec.as_mut().unwrap().taints =
            Some(vec![k8s_openapi::api::core::v1::Taint {
                key: "karpenter.sh/disrupted".into(),
                effect: "NoSchedule".into(),
                ..Default::default()
            }]);
        tx.send(Arc::new(tainted)).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while sink.0.calls.lock().unwrap().is_empty() {
            assert!(std::time::Instant::now() < deadline, "no drain within 5 s");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        cancel.cancel();
        task.await.unwrap();
        let calls = sink.0.calls.lock().unwrap().clone();
        assert_eq!(calls.len(), 1, "drained once across rounds: {calls:?}");
        assert_eq!(calls[0].0, [1]);
    }

    #[tokio::test]
    async fn far_deadlines_wait_and_replaced_brokers_are_forgotten() {
        let mut v = view(VIEW);
        let mut r = Responder::new("events", Recorder::default());
        let mut retirement = notice(Target::Node("a".into()), SignalKind::ScheduledEvent, 0);
        retirement.signal.deadline = at(86_400);
        let plan = r
            .respond(std::slice::from_ref(&retirement), &v, at(0))
            .await
            .unwrap();
        assert!(plan.drain.is_empty(), "a retirement a day away waits");
        let plan = r
            .respond(std::slice::from_ref(&retirement), &v, at(86_000))
            .await
            .unwrap();
        assert_eq!(plan.broker_ids(), [0]);
        assert_eq!(r.draining(), BTreeSet::from([0]));
        // Broker 0's replacement pod runs on node b, which is fine: forgotten.
        v.pods[0].spec.as_mut().unwrap().node_name = Some("b".into());
        r.respond(std::slice::from_ref(&retirement), &v, at(86_001))
            .await
            .unwrap();
        assert!(r.draining().is_empty());
    }
}
