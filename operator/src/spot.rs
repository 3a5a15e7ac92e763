//! Spot interruptions: the operator runs `floe-spot`'s node watcher for
//! every KafkaCluster, so that the brokers on a node that is about to go
//! (a Node Termination Handler or Karpenter taint, a cordon, a deletion) are
//! drained through the cluster's metadata controllers before the node's pods
//! are evicted.
//!
//! One set of reflectors per operator process — KafkaClusters, Nodes
//! (cluster-wide), broker Pods and broker PodDisruptionBudgets (every
//! namespace, by label) — feeds one [`ClusterView`] per cluster
//! ([`cluster_view`], pure). Each cluster gets a [`Watcher`] with a
//! [`NodeSource`] reading its view and a [`Responder`] whose [`DrainSink`] is
//! [`AdminSink`]: it dereferences and validates the cluster, opens its
//! [`ClusterAdmin`](crate::admin::ClusterAdmin) through the
//! [`AdminConnector`] and calls `drain`, then publishes an Event, a log line
//! and `floe_operator_spot_drains_total{reason}` per broker. Deciding which
//! brokers to drain (budget, urgency, each broker once) is `floe-spot`'s.
//!
//! Only the Lease holder runs [`run`] (the binary starts it next to the
//! controller); a new leader drains again whatever is still doomed, which the
//! controllers' drain treats as a no-op.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Debug;
use std::hash::Hash;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use floe_crds::KafkaCluster;
use floe_spot::node::node_signals;
use floe_spot::plan::broker_pods;
use floe_spot::respond::DEFAULT_HORIZON;
use floe_spot::signal::most_urgent;
use floe_spot::watcher::{Notice, Source};
use floe_spot::{
    BrokerId, Budget, ClusterView, DrainError, DrainSink, NodeSource, Responder, Watcher,
};
use futures::{Future, StreamExt};
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::runtime::events::{Event, EventType, Recorder};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client, Resource, ResourceExt};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use serde::de::DeserializeOwned;
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::admin::AdminConnector;
use crate::labels::{self, Component};
use crate::names;
use crate::reconcile::dereference::dereference;
use crate::reconcile::validate::validate;

/// How the spot watchers run.
#[derive(Clone, Debug)]
pub struct SpotConfig {
    /// Every cluster's watcher polls its view this often (a poll reads
    /// memory only; the view itself follows the watches as they change).
    pub interval: Duration,
    /// Signals due later than this are not acted on yet.
    pub horizon: Duration,
    /// The views are recomputed at least this often, even without watch
    /// events.
    pub resync: Duration,
}

impl Default for SpotConfig {
    fn default() -> Self {
        SpotConfig {
            interval: Duration::from_secs(2),
            horizon: DEFAULT_HORIZON,
            resync: Duration::from_secs(60),
        }
    }
}

/// Labels of the drain counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DrainLabels {
    /// The signal kind that doomed the broker's node (`spot-interruption`,
    /// `karpenter-disruption`, `cordon`, … as `floe-spot` names them), or
    /// `unknown` when the node no longer shows one.
    pub reason: &'static str,
}

/// The spot watchers' instruments.
#[derive(Clone, Default)]
pub struct SpotMetrics {
    drains: Family<DrainLabels, Counter>,
}

impl SpotMetrics {
    /// Fresh, unregistered instruments.
    pub fn new() -> SpotMetrics {
        SpotMetrics::default()
    }

    /// Registers `spot_drains` (exposed as `<prefix>_spot_drains_total`)
    /// in `registry`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "spot_drains",
            "Brokers whose drain the spot watcher requested, by the signal that doomed their node",
            self.drains.clone(),
        );
    }

    /// Count one requested broker drain.
    pub fn drained(&self, reason: &'static str) {
        self.drains.get_or_create(&DrainLabels { reason }).inc();
    }

    /// How many broker drains were requested for `reason`.
    pub fn drain_count(&self, reason: &'static str) -> u64 {
        self.drains.get_or_create(&DrainLabels { reason }).get()
    }

    /// The OpenMetrics text of these instruments alone, under the
    /// operator's `floe_operator` prefix.
    pub fn render(&self) -> String {
        let mut registry = Registry::with_prefix("floe_operator");
        self.register(&mut registry);
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &registry)
            .expect("writing to a String cannot fail");
        out
    }
}

/// What the spot watchers share.
pub struct SpotContext {
    /// The API client (watches, and the Secret read of validation).
    pub client: Client,
    /// Reaches each cluster's metadata controllers.
    pub admin: Arc<dyn AdminConnector>,
    /// Publishes an Event on the KafkaCluster per drain request.
    pub recorder: Option<Recorder>,
    /// Instruments.
    pub metrics: SpotMetrics,
    /// Timings.
    pub config: SpotConfig,
    /// Interruption sources besides the Node objects, made per cluster from
    /// its view (the EC2 API with the `ec2` feature).
    pub extra_sources: Vec<SourceFactory>,
}

/// Makes one cluster's extra interruption source from its view.
pub type SourceFactory =
    Arc<dyn Fn(watch::Receiver<Arc<ClusterView>>) -> Box<dyn Source> + Send + Sync>;

/// A boxed source, as a source.
struct Boxed(Box<dyn Source>);

impl Source for Boxed {
    fn name(&self) -> &'static str {
        self.0.name()
    }

    fn poll(
        &mut self,
        now: SystemTime,
    ) -> futures::future::BoxFuture<'_, Result<Vec<Notice>, floe_spot::watcher::PollError>> {
        self.0.poll(now)
    }
}

/// Polls `inner` at most once per `every` and answers its last notices in
/// between: the watcher looks every couple of seconds, which is right for
/// Node objects (memory) but too often for a rate-limited cloud API.
pub struct Throttled<S> {
    inner: S,
    every: Duration,
    next: Option<std::time::Instant>,
    last: Vec<Notice>,
}

impl<S: Source> Throttled<S> {
    pub fn new(inner: S, every: Duration) -> Throttled<S> {
        Throttled {
            inner,
            every,
            next: None,
            last: Vec::new(),
        }
    }
}

impl<S: Source> Source for Throttled<S> {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    fn poll(
        &mut self,
        now: SystemTime,
    ) -> futures::future::BoxFuture<'_, Result<Vec<Notice>, floe_spot::watcher::PollError>> {
        Box::pin(async move {
            let due = self.next.is_none_or(|n| std::time::Instant::now() >= n);
            if due {
                self.next = Some(std::time::Instant::now() + self.every);
                self.last = self.inner.poll(now).await?;
            }
            Ok(self.last.clone())
        })
    }
}

/// The label selector of every broker pod and broker PDB the operator made.
pub fn broker_selector() -> String {
    format!(
        "{}={},{}={}",
        labels::NAME,
        labels::APP,
        labels::COMPONENT,
        Component::Broker.as_str()
    )
}

/// The view of one cluster (pure): its broker pods in its namespace, the
/// nodes they are scheduled on, and the budget of its broker
/// PodDisruptionBudget over `max(spec.brokers.replicas, broker pods)`. A
/// missing PDB counts as the one the operator creates (`maxUnavailable: 1`),
/// so a view built before the PDB exists never drains more.
pub fn cluster_view(
    cluster: &KafkaCluster,
    nodes: &[Arc<Node>],
    pods: &[Arc<Pod>],
    pdbs: &[Arc<PodDisruptionBudget>],
) -> ClusterView {
    let name = cluster.name_any();
    let namespace = cluster.namespace().unwrap_or_default();
    let pods: Vec<Pod> = pods
        .iter()
        .filter(|p| p.namespace().as_deref() == Some(namespace.as_str()))
        .filter(|p| p.labels().get(labels::INSTANCE) == Some(&name))
        .map(|p| p.as_ref().clone())
        .collect();
    let on: BTreeSet<&str> = pods
        .iter()
        .filter_map(|p| p.spec.as_ref()?.node_name.as_deref())
        .collect();
    let nodes: Vec<Node> = nodes
        .iter()
        .filter(|n| n.metadata.name.as_deref().is_some_and(|n| on.contains(n)))
        .map(|n| n.as_ref().clone())
        .collect();
    let expected = usize::try_from(cluster.spec.brokers.replicas)
        .unwrap_or(0)
        .max(broker_pods(&name, &pods).len());
    let pdb_name = names::broker_pdb(&name);
    let operator_default = PodDisruptionBudgetSpec {
        max_unavailable: Some(IntOrString::Int(1)),
        ..PodDisruptionBudgetSpec::default()
    };
    let spec = pdbs
        .iter()
        .find(|p| {
            p.namespace().as_deref() == Some(namespace.as_str())
                && p.metadata.name.as_deref() == Some(pdb_name.as_str())
        })
        .and_then(|p| p.spec.clone())
        .unwrap_or(operator_default);
    ClusterView {
        nodes,
        pods,
        budget: Budget::from_pdb(&spec, expected),
    }
}

/// The reason label for a drain of `broker`: the kind of the most urgent
/// signal on the node its pod runs on, per `view`.
pub fn drain_reason(cluster: &str, view: &ClusterView, broker: BrokerId) -> &'static str {
    let now = SystemTime::now();
    broker_pods(cluster, &view.pods)
        .into_iter()
        .filter(|b| b.id == broker)
        .filter_map(|b| b.node)
        .filter_map(|node| {
            view.nodes
                .iter()
                .find(|n| n.metadata.name.as_deref() == Some(&node))
        })
        .filter_map(|n| most_urgent(&node_signals(n, now)).map(|s| s.kind.as_str()))
        .next()
        .unwrap_or("unknown")
}

/// The [`DrainSink`] of one cluster: `ClusterAdmin::drain` through the
/// connector, with an Event, a log line and the metric.
pub struct AdminSink {
    ctx: Arc<SpotContext>,
    clusters: Store<KafkaCluster>,
    cluster: ObjectRef<KafkaCluster>,
    view: watch::Receiver<Arc<ClusterView>>,
}

impl AdminSink {
    /// The sink of the cluster `cluster`, read from `clusters` at each call.
    pub fn new(
        ctx: Arc<SpotContext>,
        clusters: Store<KafkaCluster>,
        cluster: ObjectRef<KafkaCluster>,
        view: watch::Receiver<Arc<ClusterView>>,
    ) -> AdminSink {
        AdminSink {
            ctx,
            clusters,
            cluster,
            view,
        }
    }

    async fn try_drain(&self, cluster: &KafkaCluster, brokers: &[BrokerId]) -> Result<(), String> {
        let referenced = dereference(&self.ctx.client, cluster)
            .await
            .map_err(|e| e.to_string())?;
        let validated =
            validate(cluster, &referenced).map_err(|e| format!("the spec is invalid: {e}"))?;
        let admin = self.ctx.admin.connect(&validated);
        admin.drain(brokers).await.map_err(|e| e.to_string())
    }

    async fn publish(&self, cluster: &KafkaCluster, type_: EventType, reason: &str, note: String) {
        let Some(recorder) = &self.ctx.recorder else {
            return;
        };
        let event = Event {
            type_,
            reason: reason.into(),
            note: Some(note),
            action: "SpotDrain".into(),
            secondary: None,
        };
        if let Err(error) = recorder.publish(&event, &cluster.object_ref(&())).await {
            tracing::warn!(%error, reason, "publishing an event failed");
        }
    }
}

impl DrainSink for AdminSink {
    async fn drain(&self, brokers: &[BrokerId], deadline: SystemTime) -> Result<(), DrainError> {
        let failed = |reason: String| DrainError {
            brokers: brokers.to_vec(),
            reason,
        };
        let Some(cluster) = self.clusters.get(&self.cluster) else {
            return Err(failed(format!("KafkaCluster {} is gone", self.cluster)));
        };
        let view = self.view.borrow().clone();
        let name = cluster.name_any();
        let reasons: Vec<(BrokerId, &'static str)> = brokers
            .iter()
            .map(|b| (*b, drain_reason(&name, &view, *b)))
            .collect();
        let within = deadline
            .duration_since(SystemTime::now())
            .unwrap_or_default()
            .as_secs();
        let why = reasons
            .iter()
            .map(|(b, r)| format!("broker {b}: {r}"))
            .collect::<Vec<_>>()
            .join(", ");
        match self.try_drain(&cluster, brokers).await {
            Ok(()) => {
                for (_, reason) in &reasons {
                    self.ctx.metrics.drained(reason);
                }
                tracing::info!(cluster = %self.cluster, ?brokers, %why, within_secs = within, "spot: drain requested for brokers on doomed nodes");
                self.publish(
                    &cluster,
                    EventType::Normal,
                    "SpotDrain",
                    format!(
                        "draining brokers on nodes that are going ({why}); due within {within}s"
                    ),
                )
                .await;
                Ok(())
            }
            Err(reason) => {
                tracing::warn!(cluster = %self.cluster, ?brokers, %why, %reason, "spot: drain request failed; retried on the next poll");
                self.publish(
                    &cluster,
                    EventType::Warning,
                    "SpotDrainFailed",
                    format!("could not drain brokers on nodes that are going ({why}): {reason}"),
                )
                .await;
                Err(failed(reason))
            }
        }
    }
}

/// A reflector over `api`, with `strip` applied to every object before it
/// is stored; each event wakes `changed`.
fn reflect<K>(
    api: Api<K>,
    config: watcher::Config,
    strip: fn(&mut K),
    changed: Arc<Notify>,
) -> (Store<K>, impl Future<Output = ()> + Send)
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + Hash + Clone,
{
    let (reader, writer) = reflector::store();
    let stream = watcher(api, config).default_backoff().modify(strip);
    let run = reflector::reflector(writer, stream).for_each(move |event| {
        match event {
            Ok(_) => changed.notify_one(),
            Err(error) => tracing::warn!(%error, "spot: watch failed; retrying"),
        }
        futures::future::ready(())
    });
    (reader, run)
}

fn strip_node(node: &mut Node) {
    // Images and conditions are most of a Node; signals come from the spec
    // and metadata only.
    node.status = None;
    node.metadata.managed_fields = None;
}

fn strip_pod(pod: &mut Pod) {
    pod.metadata.managed_fields = None;
}

fn strip_pdb(pdb: &mut PodDisruptionBudget) {
    pdb.metadata.managed_fields = None;
}

fn strip_cluster(cluster: &mut KafkaCluster) {
    cluster.metadata.managed_fields = None;
}

struct ClusterTask {
    view: watch::Sender<Arc<ClusterView>>,
    cancel: CancellationToken,
    task: JoinHandle<()>,
}

/// Runs the spot watchers of every KafkaCluster until `cancel` fires.
pub async fn run(ctx: Arc<SpotContext>, cancel: CancellationToken) {
    let client = ctx.client.clone();
    let changed = Arc::new(Notify::new());
    let selector = broker_selector();
    let (clusters, clusters_run) = reflect(
        Api::<KafkaCluster>::all(client.clone()),
        watcher::Config::default(),
        strip_cluster,
        changed.clone(),
    );
    let (nodes, nodes_run) = reflect(
        Api::<Node>::all(client.clone()),
        watcher::Config::default(),
        strip_node,
        changed.clone(),
    );
    let (pods, pods_run) = reflect(
        Api::<Pod>::all(client.clone()),
        watcher::Config::default().labels(&selector),
        strip_pod,
        changed.clone(),
    );
    let (pdbs, pdbs_run) = reflect(
        Api::<PodDisruptionBudget>::all(client),
        watcher::Config::default().labels(&selector),
        strip_pdb,
        changed.clone(),
    );
    let watches = async {
        tokio::join!(clusters_run, nodes_run, pods_run, pdbs_run);
    };
    let views = async {
        // A view from a partial cache could show brokers without their
        // budget: wait for every initial list.
        let ready = async {
            let _ = clusters.wait_until_ready().await;
            let _ = nodes.wait_until_ready().await;
            let _ = pods.wait_until_ready().await;
            let _ = pdbs.wait_until_ready().await;
        };
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = ready => {}
        }
        tracing::info!("spot: watching nodes for interruptions");
        let mut tasks: HashMap<ObjectRef<KafkaCluster>, ClusterTask> = HashMap::new();
        loop {
            sync(&ctx, &clusters, &nodes, &pods, &pdbs, &mut tasks, &cancel);
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = changed.notified() => {}
                _ = tokio::time::sleep(ctx.config.resync) => {}
            }
        }
        for (_, t) in tasks.drain() {
            t.cancel.cancel();
            let _ = t.task.await;
        }
    };
    tokio::select! {
        _ = watches => {}
        _ = views => {}
    }
}

/// Brings the per-cluster views and tasks in line with the caches.
fn sync(
    ctx: &Arc<SpotContext>,
    clusters: &Store<KafkaCluster>,
    nodes: &Store<Node>,
    pods: &Store<Pod>,
    pdbs: &Store<PodDisruptionBudget>,
    tasks: &mut HashMap<ObjectRef<KafkaCluster>, ClusterTask>,
    cancel: &CancellationToken,
) {
    let (nodes, pods, pdbs) = (nodes.state(), pods.state(), pdbs.state());
    let mut live: BTreeMap<String, ObjectRef<KafkaCluster>> = BTreeMap::new();
    for cluster in clusters.state() {
        // A cluster being deleted is going anyway: no drains for it.
        if cluster.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let key = ObjectRef::from_obj(cluster.as_ref());
        live.insert(key.to_string(), key.clone());
        let view = Arc::new(cluster_view(&cluster, &nodes, &pods, &pdbs));
        match tasks.get(&key) {
            Some(t) => {
                t.view.send_replace(view);
            }
            None => {
                let (tx, rx) = watch::channel(view);
                let token = cancel.child_token();
                let mut watcher =
                    Watcher::new(ctx.config.interval).with_source(NodeSource::new(rx.clone()));
                for make in &ctx.extra_sources {
                    watcher = watcher.with_source(Boxed(make(rx.clone())));
                }
                let sink = AdminSink::new(ctx.clone(), clusters.clone(), key.clone(), rx.clone());
                let responder =
                    Responder::new(&cluster.name_any(), sink).with_horizon(ctx.config.horizon);
                tracing::debug!(cluster = %key, "spot: watching the nodes of a cluster");
                let task = tokio::spawn(floe_spot::respond::run(
                    watcher,
                    responder,
                    rx,
                    token.clone(),
                ));
                tasks.insert(
                    key,
                    ClusterTask {
                        view: tx,
                        cancel: token,
                        task,
                    },
                );
            }
        }
    }
    tasks.retain(|key, t| {
        let keep = live.contains_key(&key.to_string());
        if !keep {
            t.cancel.cancel();
        }
        keep
    });
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// Counts its polls; answers one notice per poll.
    struct Counting(Arc<std::sync::atomic::AtomicUsize>);

    impl Source for Counting {
        fn name(&self) -> &'static str {
            "counting"
        }
        fn poll(
            &mut self,
            now: SystemTime,
        ) -> futures::future::BoxFuture<'_, Result<Vec<Notice>, floe_spot::watcher::PollError>>
        {
            let n = self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Box::pin(async move {
                Ok(vec![Notice {
                    target: floe_spot::Target::Node(format!("n{n}")),
                    signal: floe_spot::Signal {
                        kind: floe_spot::SignalKind::Cordon,
                        urgency: floe_spot::Urgency::Advisory,
                        deadline: now,
                        origin: floe_spot::Origin::NodeObject,
                        detail: String::new(),
                    },
                }])
            })
        }
    }

    #[tokio::test]
    async fn a_throttled_source_is_polled_once_per_period_and_repeats_its_notices() {
        let polls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut s = Throttled::new(Counting(polls.clone()), Duration::from_millis(200));
        let first = s.poll(SystemTime::now()).await.unwrap();
        let again = s.poll(SystemTime::now()).await.unwrap();
        assert_eq!(first, again, "the cached notices, not a new poll");
        assert_eq!(polls.load(std::sync::atomic::Ordering::SeqCst), 1);
        tokio::time::sleep(Duration::from_millis(250)).await;
        let later = s.poll(SystemTime::now()).await.unwrap();
        assert_ne!(later, first);
        assert_eq!(polls.load(std::sync::atomic::Ordering::SeqCst), 2);
    }

    fn arc<T: DeserializeOwned>(v: serde_json::Value) -> Arc<T> {
        Arc::new(serde_json::from_value(v).unwrap())
    }

    fn pod(namespace: &str, cluster: &str, i: i32, node: &str) -> Arc<Pod> {
        arc(json!({
            "metadata": {"name": format!("{cluster}-broker-{i}"), "namespace": namespace,
                "labels": {"app.kubernetes.io/name": "floe", "app.kubernetes.io/instance": cluster,
                           "app.kubernetes.io/component": "broker"}},
            "spec": {"nodeName": node, "containers": []},
            "status": {"conditions": [{"type": "Ready", "status": "True"}]},
        }))
    }

    fn cluster(namespace: &str, name: &str, replicas: i32) -> KafkaCluster {
        serde_json::from_value(json!({
            "apiVersion": "floe.dev/v1alpha1", "kind": "KafkaCluster",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"objectStorage": {"bucket": "b"}, "brokers": {"replicas": replicas}},
        }))
        .unwrap()
    }

    fn node(name: &str, taint: Option<&str>) -> Arc<Node> {
        let taints: Vec<_> = taint
            .map(|k| json!({"key": k, "effect": "NoSchedule"}))
            .into_iter()
            .collect();
        arc(json!({"metadata": {"name": name}, "spec": {"taints": taints}}))
    }

    #[test]
    fn a_view_holds_the_clusters_pods_their_nodes_and_its_budget() {
        let nodes = [node("a", None), node("b", None), node("c", None)];
        let pods = [
            pod("streaming", "events", 0, "a"),
            pod("streaming", "events", 1, "b"),
            // Same name, other namespace; other cluster, same namespace.
            pod("other", "events", 0, "c"),
            pod("streaming", "logs", 0, "c"),
        ];
        let pdb: Arc<PodDisruptionBudget> = arc(json!({
            "metadata": {"name": "events-broker", "namespace": "streaming"},
            "spec": {"minAvailable": "50%"},
        }));
        let other_pdb: Arc<PodDisruptionBudget> = arc(json!({
            "metadata": {"name": "events-broker", "namespace": "other"},
            "spec": {"minAvailable": 0},
        }));
        let v = cluster_view(
            &cluster("streaming", "events", 3),
            &nodes,
            &pods,
            &[other_pdb, pdb],
        );
        let names = |it: Vec<Option<String>>| it.into_iter().flatten().collect::<Vec<_>>();
        assert_eq!(
            names(v.pods.iter().map(|p| p.metadata.name.clone()).collect()),
            ["events-broker-0", "events-broker-1"]
        );
        assert_eq!(
            names(v.nodes.iter().map(|n| n.metadata.name.clone()).collect()),
            ["a", "b"]
        );
        // 50% of 3, rounded up.
        assert_eq!(v.budget.min_serving, 2);
        // Without its PDB: the operator's maxUnavailable 1.
        let v = cluster_view(&cluster("streaming", "events", 3), &nodes, &pods, &[]);
        assert_eq!(v.budget.min_serving, 2);
        let v = cluster_view(&cluster("streaming", "events", 5), &nodes, &pods, &[]);
        assert_eq!(v.budget.min_serving, 4);
    }

    #[test]
    fn the_reason_is_the_most_urgent_signal_of_the_brokers_node() {
        let nodes = [
            node("a", Some("aws-node-termination-handler/spot-itn")),
            node("b", None),
        ];
        let pods = [
            pod("streaming", "events", 0, "a"),
            pod("streaming", "events", 1, "b"),
        ];
        let v = cluster_view(&cluster("streaming", "events", 2), &nodes, &pods, &[]);
        assert_eq!(drain_reason("events", &v, 0), "spot-interruption");
        assert_eq!(drain_reason("events", &v, 1), "unknown");
        assert_eq!(drain_reason("events", &v, 7), "unknown");
    }

    #[test]
    fn the_counter_is_exposed_with_its_reason() {
        let m = SpotMetrics::new();
        m.drained("spot-interruption");
        m.drained("spot-interruption");
        assert_eq!(m.drain_count("spot-interruption"), 2);
        let text = m.render();
        assert!(
            text.contains(r#"floe_operator_spot_drains_total{reason="spot-interruption"} 2"#),
            "{text}"
        );
    }
}
