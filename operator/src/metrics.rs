//! The operator's Prometheus instruments. Label values come from fixed
//! tables ([`Outcome`] and [`crate::controller::Error::metric_label`]), never
//! from object names or error messages, so the series count stays bounded.

use std::sync::atomic::{AtomicBool, Ordering};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// Labels of the reconcile counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReconcileLabels {
    /// `ok`, `invalid_spec`, or an error class.
    pub result: &'static str,
}

/// How one reconcile ended, for the counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Children applied and status written.
    Ok,
    /// The spec was invalid; status written, nothing applied.
    InvalidSpec,
    /// An error of this class (see `Error::metric_label`).
    Error(&'static str),
}

impl Outcome {
    fn label(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::InvalidSpec => "invalid_spec",
            Outcome::Error(class) => class,
        }
    }
}

/// The operator's metrics and readiness.
pub struct Metrics {
    registry: Registry,
    reconciles: Family<ReconcileLabels, Counter>,
    reconcile_seconds: Histogram,
    leader: Gauge,
    ready: AtomicBool,
    /// The spot watchers' counters, served with the rest.
    pub spot: crate::spot::SpotMetrics,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Fresh instruments, registered under the `floe_operator` prefix.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("floe_operator");
        let reconciles = Family::<ReconcileLabels, Counter>::default();
        let reconcile_seconds = Histogram::new(exponential_buckets(0.005, 2.0, 14));
        let leader = Gauge::default();
        registry.register(
            "reconciles",
            "Reconciles of KafkaClusters by result",
            reconciles.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Duration of one reconcile",
            reconcile_seconds.clone(),
        );
        registry.register(
            "leader",
            "1 while this replica holds the leader Lease and runs the controller",
            leader.clone(),
        );
        let spot = crate::spot::SpotMetrics::new();
        spot.register(&mut registry);
        Metrics {
            spot,
            registry,
            reconciles,
            reconcile_seconds,
            leader,
            ready: AtomicBool::new(false),
        }
    }

    /// Count one reconcile and its duration.
    pub fn reconciled(&self, outcome: Outcome, seconds: f64) {
        self.reconciles
            .get_or_create(&ReconcileLabels {
                result: outcome.label(),
            })
            .inc();
        self.reconcile_seconds.observe(seconds);
    }

    /// How many reconciles ended with `outcome`.
    pub fn reconcile_count(&self, outcome: Outcome) -> u64 {
        self.reconciles
            .get_or_create(&ReconcileLabels {
                result: outcome.label(),
            })
            .get()
    }

    /// Whether this replica leads.
    pub fn set_leader(&self, leader: bool) {
        self.leader.set(i64::from(leader));
    }

    /// Mark the process ready (`/readyz`): it reached the API server.
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }

    /// Whether `/readyz` answers 200.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    /// The OpenMetrics text of every instrument.
    pub fn render(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::Metrics;

    #[test]
    fn the_spot_drain_counter_is_served_with_the_rest() {
        let m = Metrics::new();
        m.spot.drained("spot-interruption");
        let text = m.render();
        assert!(
            text.contains("floe_operator_spot_drains_total{reason=\"spot-interruption\"} 1"),
            "{text}"
        );
        assert!(text.contains("floe_operator_leader"), "{text}");
    }
}
