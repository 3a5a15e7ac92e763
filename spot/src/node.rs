//! Interruption signals read from Kubernetes Node objects: the taints the
//! usual handlers set (AWS Node Termination Handler, Karpenter, the cluster
//! autoscaler, the node lifecycle controller), cordons and deletions; and
//! the node ↔ EC2 instance mapping through `spec.providerID`.
//!
//! Pure functions over k8s-openapi types: the operator feeds them from its
//! watches, tests feed them from YAML.

use std::time::SystemTime;

use k8s_openapi::api::core::v1::{Node, Taint};

use crate::signal::{Origin, Signal, SignalKind};

/// Taint keys and what each one means. The Node Termination Handler's keys
/// are from its `pkg/node/node.go`; Karpenter's from `pkg/apis/v1/taints.go`
/// (v1) and its v1beta1 API; the autoscaler's from `utils/taints`.
pub mod taints {
    /// NTH: spot interruption notice received (IMDS or queue mode).
    pub const NTH_SPOT_ITN: &str = "aws-node-termination-handler/spot-itn";
    /// NTH: spot rebalance recommendation received.
    pub const NTH_REBALANCE: &str = "aws-node-termination-handler/rebalance-recommendation";
    /// NTH: a scheduled maintenance event is due.
    pub const NTH_SCHEDULED_MAINTENANCE: &str =
        "aws-node-termination-handler/scheduled-maintenance";
    /// NTH (queue mode): an Auto Scaling group lifecycle hook is terminating the instance.
    pub const NTH_ASG_TERMINATION: &str = "aws-node-termination-handler/asg-lifecycle-termination";
    /// Kubernetes (set by NTH and by operators): the node is shut down and
    /// its pods may be force-deleted.
    pub const OUT_OF_SERVICE: &str = "node.kubernetes.io/out-of-service";
    /// Karpenter v1: the node is being disrupted.
    pub const KARPENTER_DISRUPTED: &str = "karpenter.sh/disrupted";
    /// Karpenter v1beta1 (v0.32–v0.37): key of `karpenter.sh/disruption=disrupting`.
    pub const KARPENTER_DISRUPTION: &str = "karpenter.sh/disruption";
    /// Value of [`KARPENTER_DISRUPTION`] that means the node is being disrupted.
    pub const KARPENTER_DISRUPTING: &str = "disrupting";
    /// The cluster autoscaler is deleting the node (value: a Unix timestamp).
    pub const AUTOSCALER_TO_BE_DELETED: &str = "ToBeDeletedByClusterAutoscaler";
    /// The node lifecycle controller mirrors `spec.unschedulable` as this taint.
    pub const UNSCHEDULABLE: &str = "node.kubernetes.io/unschedulable";
}

/// Converts a Kubernetes timestamp.
fn system_time(t: &k8s_openapi::apimachinery::pkg::apis::meta::v1::Time) -> SystemTime {
    SystemTime::from(t.0)
}

/// The signal one taint carries, if any. `now` stands for the moment the
/// taint was first seen when the taint has no `timeAdded` (the API server
/// sets it only on `NoExecute` taints).
pub fn taint_signal(taint: &Taint, now: SystemTime) -> Option<Signal> {
    use taints::*;
    let kind = match taint.key.as_str() {
        NTH_SPOT_ITN => SignalKind::SpotInterruption,
        NTH_REBALANCE => SignalKind::RebalanceRecommendation,
        NTH_SCHEDULED_MAINTENANCE => SignalKind::ScheduledEvent,
        NTH_ASG_TERMINATION => SignalKind::AsgTermination,
        OUT_OF_SERVICE => SignalKind::InstanceGoing,
        KARPENTER_DISRUPTED => SignalKind::KarpenterDisruption,
        KARPENTER_DISRUPTION if taint.value.as_deref() == Some(KARPENTER_DISRUPTING) => {
            SignalKind::KarpenterDisruption
        }
        AUTOSCALER_TO_BE_DELETED => SignalKind::AutoscalerScaleDown,
        UNSCHEDULABLE => SignalKind::Cordon,
        _ => return None,
    };
    let seen = taint.time_added.as_ref().map(system_time).unwrap_or(now);
    let detail = match &taint.value {
        Some(v) if !v.is_empty() => format!("taint {}={}:{}", taint.key, v, taint.effect),
        _ => format!("taint {}:{}", taint.key, taint.effect),
    };
    Some(Signal::seen_at(kind, Origin::NodeObject, seen, detail))
}

/// Every interruption signal a Node object carries: its taints, its cordon
/// and its deletion. Several taints for one cause (a cordon shows both as
/// `spec.unschedulable` and as the `unschedulable` taint) give one signal per
/// kind, the most pressing.
pub fn node_signals(node: &Node, now: SystemTime) -> Vec<Signal> {
    let mut signals: Vec<Signal> = Vec::new();
    let mut push = |s: Signal| match signals.iter_mut().find(|o| o.kind == s.kind) {
        Some(o) if s.priority() < o.priority() => *o = s,
        Some(_) => {}
        None => signals.push(s),
    };
    if let Some(spec) = &node.spec {
        for taint in spec.taints.iter().flatten() {
            if let Some(s) = taint_signal(taint, now) {
                push(s);
            }
        }
        if spec.unschedulable == Some(true) {
            push(Signal::seen_at(
                SignalKind::Cordon,
                Origin::NodeObject,
                now,
                "spec.unschedulable".to_string(),
            ));
        }
    }
    if let Some(deleted) = &node.metadata.deletion_timestamp {
        push(Signal::seen_at(
            SignalKind::NodeDeleting,
            Origin::NodeObject,
            system_time(deleted),
            "metadata.deletionTimestamp".to_string(),
        ));
    }
    signals.sort_by_key(Signal::priority);
    signals
}

/// An EC2 instance, as named by a node's `spec.providerID`
/// (`aws:///<zone>/<instance-id>`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InstanceRef {
    /// Availability zone, e.g. `us-east-1a` (empty when the ID leaves it out).
    pub zone: String,
    /// Instance id, e.g. `i-0123456789abcdef0`.
    pub instance_id: String,
}

/// Parses an AWS provider ID. Other clouds' IDs, and malformed ones, are `None`.
pub fn parse_provider_id(provider_id: &str) -> Option<InstanceRef> {
    let rest = provider_id.strip_prefix("aws://")?;
    // `aws:///zone/i-…`, and the older `aws://zone/i-…` form.
    let rest = rest.strip_prefix('/').unwrap_or(rest);
    let (zone, id) = match rest.rsplit_once('/') {
        Some((zone, id)) => (zone, id),
        None => ("", rest),
    };
    let valid =
        id.len() > 2 && id.starts_with("i-") && id[2..].chars().all(|c| c.is_ascii_hexdigit());
    valid.then(|| InstanceRef {
        zone: zone.to_string(),
        instance_id: id.to_string(),
    })
}

/// The EC2 instance behind a node, if it runs on EC2.
pub fn node_instance(node: &Node) -> Option<InstanceRef> {
    parse_provider_id(node.spec.as_ref()?.provider_id.as_deref()?)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::signal::Urgency;

    fn node(yaml: &str) -> Node {
        serde_norway::from_str(yaml).expect("node YAML")
    }

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn node_termination_handler_taints_are_classified() {
        let n = node(
            r#"
metadata: {name: ip-10-0-1-7}
spec:
  providerID: aws:///us-east-1a/i-0abc123
  taints:
    - {key: aws-node-termination-handler/spot-itn, value: spot-itn-8f2a, effect: NoSchedule}
    - {key: aws-node-termination-handler/rebalance-recommendation, value: rbr-1, effect: NoSchedule}
    - {key: example.com/dedicated, value: kafka, effect: NoSchedule}
"#,
        );
        let signals = node_signals(&n, at(1000));
        let kinds: Vec<_> = signals.iter().map(|s| s.kind).collect();
        assert_eq!(
            kinds,
            [
                SignalKind::SpotInterruption,
                SignalKind::RebalanceRecommendation
            ]
        );
        assert_eq!(signals[0].deadline, at(1120));
        assert_eq!(signals[0].urgency, Urgency::Imminent);
        assert_eq!(
            signals[0].detail,
            "taint aws-node-termination-handler/spot-itn=spot-itn-8f2a:NoSchedule"
        );
        assert_eq!(signals[1].urgency, Urgency::Advisory);
    }

    #[test]
    fn scheduled_maintenance_and_asg_termination_taints() {
        let n = node(
            r#"
metadata: {name: n}
spec:
  taints:
    - {key: aws-node-termination-handler/scheduled-maintenance, effect: NoSchedule}
    - {key: aws-node-termination-handler/asg-lifecycle-termination, value: hook-1, effect: NoSchedule}
"#,
        );
        let kinds: Vec<_> = node_signals(&n, at(0)).iter().map(|s| s.kind).collect();
        assert!(kinds.contains(&SignalKind::ScheduledEvent));
        assert!(kinds.contains(&SignalKind::AsgTermination));
        assert_eq!(kinds.len(), 2);
    }

    #[test]
    fn karpenter_v1_and_v1beta1_disruption_taints() {
        let v1 = node(
            "metadata: {name: a}\nspec:\n  taints: [{key: karpenter.sh/disrupted, effect: NoSchedule}]\n",
        );
        let v1beta1 = node(
            "metadata: {name: b}\nspec:\n  taints: [{key: karpenter.sh/disruption, value: disrupting, effect: NoSchedule}]\n",
        );
        // Karpenter's other taints are not disruptions.
        let other = node(
            "metadata: {name: c}\nspec:\n  taints: [{key: karpenter.sh/unregistered, effect: NoExecute}, {key: karpenter.sh/disruption, value: other, effect: NoSchedule}]\n",
        );
        for n in [&v1, &v1beta1] {
            let s = node_signals(n, at(0));
            assert_eq!(s.len(), 1);
            assert_eq!(s[0].kind, SignalKind::KarpenterDisruption);
        }
        assert!(node_signals(&other, at(0)).is_empty());
    }

    #[test]
    fn a_cordon_is_one_signal_however_it_shows() {
        let n = node(
            r#"
metadata: {name: n}
spec:
  unschedulable: true
  taints:
    - {key: node.kubernetes.io/unschedulable, effect: NoSchedule, timeAdded: "1970-01-01T00:10:00Z"}
"#,
        );
        let s = node_signals(&n, at(1000));
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].kind, SignalKind::Cordon);
        // The taint's timeAdded (600 s) is older than `now`, so its deadline wins.
        assert_eq!(s[0].deadline, at(600 + 300));
    }

    #[test]
    fn deletion_out_of_service_and_autoscaler() {
        let n = node(
            r#"
metadata: {name: n, deletionTimestamp: "1970-01-01T00:16:40Z"}
spec:
  taints:
    - {key: node.kubernetes.io/out-of-service, value: nodeshutdown, effect: NoExecute}
    - {key: ToBeDeletedByClusterAutoscaler, value: "1000", effect: NoSchedule}
"#,
        );
        let s = node_signals(&n, at(2000));
        assert_eq!(s[0].kind, SignalKind::NodeDeleting);
        assert_eq!(s[0].deadline, at(1000 + 120));
        assert_eq!(s[1].kind, SignalKind::InstanceGoing);
        assert_eq!(s[1].deadline, at(2000));
        assert_eq!(s[2].kind, SignalKind::AutoscalerScaleDown);
    }

    #[test]
    fn a_healthy_node_has_no_signals() {
        let n = node(
            "metadata: {name: n}\nspec: {providerID: 'aws:///eu-west-1b/i-0123456789abcdef0'}\n",
        );
        assert!(node_signals(&n, at(0)).is_empty());
        assert_eq!(
            node_instance(&n),
            Some(InstanceRef {
                zone: "eu-west-1b".into(),
                instance_id: "i-0123456789abcdef0".into()
            })
        );
    }

    #[test]
    fn provider_ids() {
        assert_eq!(
            parse_provider_id("aws://us-east-1a/i-0abc").map(|r| r.instance_id),
            Some("i-0abc".to_string())
        );
        assert_eq!(
            parse_provider_id("aws:///i-0abc").map(|r| (r.zone, r.instance_id)),
            Some((String::new(), "i-0abc".to_string()))
        );
        for bad in [
            "gce://project/zone/vm",
            "aws:///us-east-1a/",
            "aws:///us-east-1a/i-",
            "aws:///us-east-1a/fargate-ip-10-0-0-1",
            "kind://docker/kind/kind-worker",
            "",
        ] {
            assert_eq!(parse_provider_id(bad), None, "{bad}");
        }
    }
}
