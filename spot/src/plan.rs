//! From doomed nodes to a drain request: which broker pods run on the doomed
//! nodes, and how many of them may be drained now without the number of
//! serving brokers falling below the disruption budget. Pure: the caller
//! passes the pods, the signals and the budget.
//!
//! Broker pods are recognised by the labels the operator puts on them
//! (`operator/src/labels.rs`); a broker's id is its StatefulSet ordinal
//! (the `apps.kubernetes.io/pod-index` label, or the pod name's suffix).

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::policy::v1::PodDisruptionBudgetSpec;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::signal::{most_urgent, Signal};

/// A broker's id: the ordinal of its StatefulSet pod.
pub type BrokerId = i32;

/// Label keys and values of broker pods, as the operator sets them
/// (`operator/src/labels.rs`; repeated here so that this crate does not
/// depend on the operator).
pub mod labels {
    /// `app.kubernetes.io/name`, always [`APP`].
    pub const NAME: &str = "app.kubernetes.io/name";
    /// `app.kubernetes.io/instance`: the KafkaCluster's name.
    pub const INSTANCE: &str = "app.kubernetes.io/instance";
    /// `app.kubernetes.io/component`: [`BROKER`] on broker pods.
    pub const COMPONENT: &str = "app.kubernetes.io/component";
    /// The pod's StatefulSet ordinal (set by Kubernetes >= 1.28).
    pub const POD_INDEX: &str = "apps.kubernetes.io/pod-index";
    /// Value of [`NAME`].
    pub const APP: &str = "floe";
    /// Value of [`COMPONENT`] on broker pods.
    pub const BROKER: &str = "broker";
}

/// A broker pod, as far as draining cares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BrokerPod {
    /// The broker id (StatefulSet ordinal).
    pub id: BrokerId,
    /// The pod's name.
    pub pod: String,
    /// The node it is scheduled on (`spec.nodeName`), if scheduled.
    pub node: Option<String>,
    /// Whether the pod is Ready: only ready brokers serve, and only draining
    /// a serving broker spends the disruption budget.
    pub ready: bool,
}

/// The broker pods of one KafkaCluster among `pods`, ordered by id. Pods of
/// other clusters or components, pods being deleted and pods without an
/// ordinal are left out.
pub fn broker_pods<'a>(cluster: &str, pods: impl IntoIterator<Item = &'a Pod>) -> Vec<BrokerPod> {
    let mut brokers: Vec<BrokerPod> = pods
        .into_iter()
        .filter_map(|pod| broker_pod(cluster, pod))
        .collect();
    brokers.sort_by(|a, b| (a.id, &a.pod).cmp(&(b.id, &b.pod)));
    brokers
}

fn broker_pod(cluster: &str, pod: &Pod) -> Option<BrokerPod> {
    let meta = &pod.metadata;
    let labels = meta.labels.as_ref()?;
    let is = |k: &str, v: &str| labels.get(k).map(String::as_str) == Some(v);
    if !(is(labels::NAME, labels::APP)
        && is(labels::INSTANCE, cluster)
        && is(labels::COMPONENT, labels::BROKER))
    {
        return None;
    }
    let name = meta.name.clone()?;
    let id = labels
        .get(labels::POD_INDEX)
        .and_then(|i| i.parse().ok())
        .or_else(|| name.rsplit_once('-').and_then(|(_, i)| i.parse().ok()))
        .filter(|id: &BrokerId| *id >= 0)?;
    let ready = meta.deletion_timestamp.is_none()
        && pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
    Some(BrokerPod {
        id,
        pod: name,
        node: pod.spec.as_ref().and_then(|s| s.node_name.clone()),
        ready,
    })
}

/// How many brokers must keep serving: a PodDisruptionBudget's promise.
/// The default promises nothing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Budget {
    /// The minimum number of ready, undrained brokers.
    pub min_serving: usize,
}

impl Budget {
    /// The promise of a PodDisruptionBudget over `expected` brokers (the
    /// cluster's replica count), rounded as the disruption controller rounds:
    /// percentages up, for `minAvailable` and for `maxUnavailable` alike.
    /// A spec with neither field promises nothing; a malformed percentage
    /// promises every broker, so a typo never lets a drain through.
    pub fn from_pdb(spec: &PodDisruptionBudgetSpec, expected: usize) -> Budget {
        let scaled = |v: &IntOrString| -> Option<usize> {
            match v {
                IntOrString::Int(i) => Some((*i).max(0) as usize),
                IntOrString::String(s) => {
                    let pct: usize = s.strip_suffix('%')?.parse().ok()?;
                    Some((expected * pct).div_ceil(100))
                }
            }
        };
        let min_serving = match (&spec.min_available, &spec.max_unavailable) {
            (Some(min), _) => scaled(min).unwrap_or(expected),
            (None, Some(max)) => scaled(max).map_or(expected, |m| expected.saturating_sub(m)),
            (None, None) => 0,
        };
        Budget { min_serving }
    }
}

/// One broker to drain, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BrokerDrain {
    /// The broker.
    pub broker: BrokerId,
    /// The doomed node it runs on.
    pub node: String,
    /// The most pressing signal for that node.
    pub signal: Signal,
    /// Whether the broker was serving (so draining it spends budget).
    pub serving: bool,
}

/// The outcome of planning: brokers to drain now, most urgent first, and
/// brokers on doomed nodes held back by the budget (to be drained once
/// replacements serve).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DrainPlan {
    /// Drain these now, in this order.
    pub drain: Vec<BrokerDrain>,
    /// On doomed nodes but over budget, most urgent first.
    pub held: Vec<BrokerDrain>,
}

impl DrainPlan {
    /// The ids to drain now, most urgent first.
    pub fn broker_ids(&self) -> Vec<BrokerId> {
        self.drain.iter().map(|d| d.broker).collect()
    }
}

/// Plans the drain of the brokers on doomed nodes.
///
/// `doomed` maps node names to their signals (any number per node, any
/// order). `draining` are brokers already being drained: they are neither
/// planned again nor counted as serving. A broker that is not ready costs no
/// budget, so it is always drained; serving brokers are drained most urgent
/// first while more than `budget.min_serving` brokers would still serve.
pub fn plan_drain(
    brokers: &[BrokerPod],
    doomed: &BTreeMap<String, Vec<Signal>>,
    draining: &BTreeSet<BrokerId>,
    budget: Budget,
) -> DrainPlan {
    let mut serving = brokers
        .iter()
        .filter(|b| b.ready && !draining.contains(&b.id) && !is_doomed(b, doomed))
        .count();
    // Brokers on doomed nodes, each once (a StatefulSet has one pod per
    // ordinal, but a replaced pod and its predecessor can briefly coexist in
    // a list: keep the entry on the most urgent node).
    let mut candidates: BTreeMap<BrokerId, BrokerDrain> = BTreeMap::new();
    for b in brokers.iter().filter(|b| !draining.contains(&b.id)) {
        let Some(node) = &b.node else { continue };
        let Some(signal) = doomed.get(node).and_then(most_urgent) else {
            continue;
        };
        let entry = BrokerDrain {
            broker: b.id,
            node: node.clone(),
            signal: signal.clone(),
            serving: b.ready,
        };
        match candidates.get(&b.id) {
            Some(old) if old.signal.priority() <= entry.signal.priority() => {}
            _ => {
                candidates.insert(b.id, entry);
            }
        }
    }
    let mut ordered: Vec<BrokerDrain> = candidates.into_values().collect();
    ordered.sort_by_key(|d| (d.signal.priority(), d.broker));
    // Serving doomed brokers still serve until drained; count them in.
    serving += ordered.iter().filter(|d| d.serving).count();
    let mut plan = DrainPlan::default();
    for d in ordered {
        if !d.serving {
            plan.drain.push(d);
        } else if serving > budget.min_serving {
            serving -= 1;
            plan.drain.push(d);
        } else {
            plan.held.push(d);
        }
    }
    plan
}

fn is_doomed(b: &BrokerPod, doomed: &BTreeMap<String, Vec<Signal>>) -> bool {
    b.node
        .as_ref()
        .is_some_and(|n| doomed.get(n).is_some_and(|s| !s.is_empty()))
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::*;
    use crate::signal::{Origin, SignalKind};

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn signal(kind: SignalKind, seen: u64) -> Signal {
        Signal::seen_at(kind, Origin::NodeObject, at(seen), String::new())
    }

    fn broker(id: BrokerId, node: &str, ready: bool) -> BrokerPod {
        BrokerPod {
            id,
            pod: format!("events-broker-{id}"),
            node: Some(node.to_string()),
            ready,
        }
    }

    fn doomed(entries: &[(&str, Signal)]) -> BTreeMap<String, Vec<Signal>> {
        let mut m: BTreeMap<String, Vec<Signal>> = BTreeMap::new();
        for (n, s) in entries {
            m.entry(n.to_string()).or_default().push(s.clone());
        }
        m
    }

    #[test]
    fn exactly_the_brokers_on_doomed_nodes_most_urgent_first() {
        let brokers = [
            broker(0, "a", true),
            broker(1, "b", true),
            broker(2, "c", true),
            broker(3, "b", true),
            broker(4, "d", true),
        ];
        let d = doomed(&[
            ("b", signal(SignalKind::Cordon, 0)),
            ("c", signal(SignalKind::SpotInterruption, 0)),
            ("c", signal(SignalKind::RebalanceRecommendation, 0)),
            ("z", signal(SignalKind::SpotInterruption, 0)),
        ]);
        let plan = plan_drain(&brokers, &d, &BTreeSet::new(), Budget { min_serving: 0 });
        assert_eq!(plan.broker_ids(), [2, 1, 3]);
        assert_eq!(plan.drain[0].signal.kind, SignalKind::SpotInterruption);
        assert_eq!(plan.drain[0].node, "c");
        assert!(plan.held.is_empty());
    }

    #[test]
    fn the_budget_holds_back_the_least_urgent_serving_brokers() {
        let brokers = [
            broker(0, "a", true),
            broker(1, "a", true),
            broker(2, "b", true),
            broker(3, "c", true),
        ];
        let d = doomed(&[
            ("a", signal(SignalKind::Cordon, 0)),
            ("b", signal(SignalKind::SpotInterruption, 0)),
        ]);
        // Four serve; at least two must keep serving: two may go, the
        // interrupted one first.
        let plan = plan_drain(&brokers, &d, &BTreeSet::new(), Budget { min_serving: 2 });
        assert_eq!(plan.broker_ids(), [2, 0]);
        assert_eq!(plan.held.iter().map(|h| h.broker).collect::<Vec<_>>(), [1]);
        // Brokers already draining no longer serve: the budget is spent.
        let plan = plan_drain(
            &brokers,
            &d,
            &BTreeSet::from([2]),
            Budget { min_serving: 2 },
        );
        assert_eq!(plan.broker_ids(), [0]);
        assert_eq!(plan.held.len(), 1);
    }

    #[test]
    fn brokers_that_do_not_serve_cost_no_budget() {
        let brokers = [
            broker(0, "a", false),
            broker(1, "b", true),
            broker(2, "c", true),
        ];
        let d = doomed(&[
            ("a", signal(SignalKind::InstanceGoing, 0)),
            ("b", signal(SignalKind::SpotInterruption, 0)),
        ]);
        let plan = plan_drain(&brokers, &d, &BTreeSet::new(), Budget { min_serving: 2 });
        // Broker 0 is not ready: drained regardless. Broker 1 would leave
        // one serving, below two: held.
        assert_eq!(plan.broker_ids(), [0]);
        assert_eq!(plan.held[0].broker, 1);
    }

    #[test]
    fn a_broker_listed_twice_is_drained_once_for_its_most_urgent_node() {
        let mut replaced = broker(1, "a", false);
        replaced.pod = "events-broker-1-old".into();
        let brokers = [replaced, broker(1, "b", true)];
        let d = doomed(&[
            ("a", signal(SignalKind::Cordon, 0)),
            ("b", signal(SignalKind::SpotInterruption, 0)),
        ]);
        let plan = plan_drain(&brokers, &d, &BTreeSet::new(), Budget { min_serving: 0 });
        assert_eq!(plan.broker_ids(), [1]);
        assert_eq!(plan.drain[0].node, "b");
    }

    #[test]
    fn budgets_from_pod_disruption_budgets() {
        let spec = |min: Option<IntOrString>, max: Option<IntOrString>| PodDisruptionBudgetSpec {
            min_available: min,
            max_unavailable: max,
            ..Default::default()
        };
        let s = |v: &str| Some(IntOrString::String(v.to_string()));
        let i = |v: i32| Some(IntOrString::Int(v));
        assert_eq!(Budget::from_pdb(&spec(i(2), None), 5).min_serving, 2);
        assert_eq!(Budget::from_pdb(&spec(s("50%"), None), 5).min_serving, 3);
        assert_eq!(Budget::from_pdb(&spec(None, i(1)), 5).min_serving, 4);
        // maxUnavailable 30% of 5 rounds up to 2: 3 must serve.
        assert_eq!(Budget::from_pdb(&spec(None, s("30%")), 5).min_serving, 3);
        assert_eq!(Budget::from_pdb(&spec(None, None), 5).min_serving, 0);
        assert_eq!(Budget::from_pdb(&spec(s("half"), None), 5).min_serving, 5);
        assert_eq!(Budget::from_pdb(&spec(None, i(9)), 5).min_serving, 0);
    }

    #[test]
    fn broker_pods_are_found_by_label_and_ordinal() {
        let pods: Vec<Pod> = serde_norway::from_str(
            r#"
- metadata:
    name: events-broker-spot-3
    labels: {app.kubernetes.io/name: floe, app.kubernetes.io/instance: events, app.kubernetes.io/component: broker, apps.kubernetes.io/pod-index: "3"}
  spec: {nodeName: ip-10-0-1-7, containers: []}
  status: {conditions: [{type: Ready, status: "True"}]}
- metadata:
    name: events-broker-0
    labels: {app.kubernetes.io/name: floe, app.kubernetes.io/instance: events, app.kubernetes.io/component: broker}
  spec: {nodeName: ip-10-0-2-9, containers: []}
  status: {conditions: [{type: Ready, status: "False"}]}
- metadata:
    name: events-controller-0
    labels: {app.kubernetes.io/name: floe, app.kubernetes.io/instance: events, app.kubernetes.io/component: controller}
  spec: {nodeName: ip-10-0-1-7, containers: []}
- metadata:
    name: other-broker-1
    labels: {app.kubernetes.io/name: floe, app.kubernetes.io/instance: other, app.kubernetes.io/component: broker}
  spec: {nodeName: ip-10-0-1-7, containers: []}
- metadata:
    name: events-broker-x
    labels: {app.kubernetes.io/name: floe, app.kubernetes.io/instance: events, app.kubernetes.io/component: broker}
  spec: {containers: []}
"#,
        )
        .unwrap();
        let brokers = broker_pods("events", &pods);
        assert_eq!(
            brokers,
            [
                BrokerPod {
                    id: 0,
                    pod: "events-broker-0".into(),
                    node: Some("ip-10-0-2-9".into()),
                    ready: false
                },
                BrokerPod {
                    id: 3,
                    pod: "events-broker-spot-3".into(),
                    node: Some("ip-10-0-1-7".into()),
                    ready: true
                },
            ]
        );
    }
}
