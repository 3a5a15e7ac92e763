//! What an interruption signal is: its kind (who raised it and what it
//! means), how urgent it is, and by when the brokers on the doomed machine
//! must be drained. Every source — node taints, the EC2 API, the instance
//! metadata service — reduces what it sees to a [`Signal`], so the drain
//! planner compares them on one scale.

use std::fmt;
use std::time::{Duration, SystemTime};

/// The spot interruption notice's warning window on AWS: the instance is
/// stopped or terminated two minutes after the notice.
pub const SPOT_WARNING: Duration = Duration::from_secs(120);

/// What a signal means for the machine it names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SignalKind {
    /// A spot interruption notice: terminate (or stop, or hibernate) in two
    /// minutes. EC2 `marked-for-termination`, IMDS `spot/instance-action`,
    /// the Node Termination Handler's `spot-itn` taint.
    SpotInterruption,
    /// The instance is already going: state `shutting-down`, `terminated`,
    /// `stopping` or `stopped`, a spot request in an `instance-terminated-*`
    /// or `instance-stopped-*` state, or the `out-of-service` taint.
    InstanceGoing,
    /// An Auto Scaling group is terminating the instance (lifecycle hook;
    /// the Node Termination Handler's `asg-lifecycle-termination` taint).
    AsgTermination,
    /// A scheduled instance event (reboot, retirement, stop, maintenance).
    ScheduledEvent,
    /// Karpenter is disrupting the node (consolidation, drift, expiry,
    /// interruption): `karpenter.sh/disrupted` (v1) or
    /// `karpenter.sh/disruption=disrupting` (v1beta1).
    KarpenterDisruption,
    /// The cluster autoscaler is removing the node (`ToBeDeletedByClusterAutoscaler`).
    AutoscalerScaleDown,
    /// The Node object is being deleted (a finalizer, such as Karpenter's,
    /// holds it while pods are evicted).
    NodeDeleting,
    /// A spot rebalance recommendation: the instance is at elevated risk of
    /// interruption; no deadline.
    RebalanceRecommendation,
    /// The node is cordoned (`spec.unschedulable`): usually the first step of
    /// `kubectl drain` or of a managed node group's replacement.
    Cordon,
}

impl SignalKind {
    /// How urgent a signal of this kind is when nothing more precise is known.
    pub fn urgency(self) -> Urgency {
        match self {
            SignalKind::InstanceGoing | SignalKind::NodeDeleting => Urgency::Immediate,
            SignalKind::SpotInterruption
            | SignalKind::AsgTermination
            | SignalKind::KarpenterDisruption
            | SignalKind::AutoscalerScaleDown => Urgency::Imminent,
            SignalKind::ScheduledEvent => Urgency::Scheduled,
            SignalKind::RebalanceRecommendation | SignalKind::Cordon => Urgency::Advisory,
        }
    }

    /// The warning window assumed from the moment a signal of this kind is
    /// first seen, when the source carries no deadline of its own. Handlers
    /// that taint a node evict its pods right after, so the windows are
    /// short: the drain must finish before the eviction's SIGTERM.
    pub fn default_window(self) -> Duration {
        match self {
            SignalKind::InstanceGoing => Duration::ZERO,
            SignalKind::SpotInterruption
            | SignalKind::KarpenterDisruption
            | SignalKind::AsgTermination
            | SignalKind::AutoscalerScaleDown
            | SignalKind::NodeDeleting
            | SignalKind::ScheduledEvent => SPOT_WARNING,
            SignalKind::RebalanceRecommendation | SignalKind::Cordon => Duration::from_secs(300),
        }
    }

    /// A stable name, used in logs and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            SignalKind::SpotInterruption => "spot-interruption",
            SignalKind::InstanceGoing => "instance-going",
            SignalKind::AsgTermination => "asg-termination",
            SignalKind::ScheduledEvent => "scheduled-event",
            SignalKind::KarpenterDisruption => "karpenter-disruption",
            SignalKind::AutoscalerScaleDown => "autoscaler-scale-down",
            SignalKind::NodeDeleting => "node-deleting",
            SignalKind::RebalanceRecommendation => "rebalance-recommendation",
            SignalKind::Cordon => "cordon",
        }
    }
}

impl fmt::Display for SignalKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How soon the machine goes, most urgent first (the derived order sorts
/// `Immediate` before `Advisory`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Urgency {
    /// The machine is going now or is gone.
    Immediate,
    /// The machine goes within a short, known warning window.
    Imminent,
    /// The machine goes at a known future time.
    Scheduled,
    /// The machine may go; draining early is cheap insurance.
    Advisory,
}

/// Where a signal came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Origin {
    /// A Node object's taints, `spec.unschedulable` or deletion.
    NodeObject,
    /// The EC2 API (`DescribeSpotInstanceRequests`, `DescribeInstanceStatus`).
    Ec2Api,
    /// The instance metadata service on the node itself.
    InstanceMetadata,
}

impl Origin {
    /// A stable name, used in logs and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::NodeObject => "node",
            Origin::Ec2Api => "ec2",
            Origin::InstanceMetadata => "imds",
        }
    }
}

/// One interruption signal for one machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Signal {
    /// What it means.
    pub kind: SignalKind,
    /// How urgent it is (usually `kind.urgency()`; a scheduled event whose
    /// time has come is `Imminent`).
    pub urgency: Urgency,
    /// When the machine is expected to go: the brokers on it must be drained
    /// before then.
    pub deadline: SystemTime,
    /// Where it came from.
    pub origin: Origin,
    /// The raw evidence (taint, status code, event description), for logs.
    pub detail: String,
}

impl Signal {
    /// A signal of `kind` first seen at `seen`, with the kind's default
    /// urgency and warning window.
    pub fn seen_at(kind: SignalKind, origin: Origin, seen: SystemTime, detail: String) -> Signal {
        Signal {
            kind,
            urgency: kind.urgency(),
            deadline: seen + kind.default_window(),
            origin,
            detail,
        }
    }

    /// The order in which signals are acted on: earliest deadline first,
    /// then the more urgent, then by kind so the order is total.
    pub fn priority(&self) -> (SystemTime, Urgency, SignalKind) {
        (self.deadline, self.urgency, self.kind)
    }
}

/// A time as RFC 3339, for log details.
pub(crate) fn rfc3339(t: SystemTime) -> String {
    jiff::Timestamp::try_from(t).map_or_else(|_| format!("{t:?}"), |t| t.to_string())
}

/// The most pressing of several signals (by [`Signal::priority`]).
pub fn most_urgent<'a>(signals: impl IntoIterator<Item = &'a Signal>) -> Option<&'a Signal> {
    signals.into_iter().min_by_key(|s| s.priority())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_earliest_deadline_wins_then_urgency() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let cordon = Signal::seen_at(SignalKind::Cordon, Origin::NodeObject, now, String::new());
        let itn = Signal::seen_at(
            SignalKind::SpotInterruption,
            Origin::Ec2Api,
            now,
            String::new(),
        );
        let gone = Signal::seen_at(
            SignalKind::InstanceGoing,
            Origin::Ec2Api,
            now,
            String::new(),
        );
        assert_eq!(most_urgent([&cordon, &itn]), Some(&itn));
        assert_eq!(most_urgent([&cordon, &itn, &gone]), Some(&gone));
        // A later-seen interruption notice is still ahead of a cordon seen
        // two minutes earlier: its deadline is sooner.
        let late_itn = Signal::seen_at(
            SignalKind::SpotInterruption,
            Origin::Ec2Api,
            now + Duration::from_secs(120),
            String::new(),
        );
        assert_eq!(most_urgent([&cordon, &late_itn]), Some(&late_itn));
        assert_eq!(most_urgent(std::iter::empty()), None);
    }

    #[test]
    fn urgency_orders_immediate_first() {
        assert!(Urgency::Immediate < Urgency::Imminent);
        assert!(Urgency::Imminent < Urgency::Scheduled);
        assert!(Urgency::Scheduled < Urgency::Advisory);
        assert_eq!(SignalKind::NodeDeleting.urgency(), Urgency::Immediate);
        assert_eq!(SignalKind::Cordon.urgency(), Urgency::Advisory);
    }
}
