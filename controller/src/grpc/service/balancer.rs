//! Automatic balancing: while a controller leads, it proposes `Rebalance`
//! by itself when the live brokers are out of balance (by partition count,
//! or by the bytes per second their leaders report) and placement has been
//! quiet for the cool-down.
//!
//! "Quiet" means no partition changed leader: every completed move and
//! every failover bumps a leader epoch, so the sum of all leader epochs is
//! a cheap fingerprint of placement. Any change to it, whoever made it (a
//! drain, a hand-made reassignment, a failover, this balancer), restarts
//! the cool-down; so does gaining leadership. Balancing therefore never
//! chases moves still in flight or loads measured before the last move,
//! and partitions cannot flap faster than once per cool-down. Within a
//! round, [`crate::model::rebalance_plan`]'s band (a tenth of the mean
//! broker weight) keeps measurement noise from moving anything.

use std::time::Duration;

use tokio::time::Instant;

use super::ApiService;
use crate::model::{rebalance_would_move, Command, MetadataState, Outcome};
use crate::raft::Proposal;

/// When the leader balances by itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BalancerConfig {
    /// How often the leader looks at the balance; `None` turns automatic
    /// balancing off (`Rebalance` is then only proposed on request).
    pub interval: Option<Duration>,
    /// How long placement must stay unchanged (and this controller lead)
    /// before an automatic rebalance.
    pub cooldown: Duration,
}

impl Default for BalancerConfig {
    fn default() -> BalancerConfig {
        BalancerConfig {
            interval: Some(Duration::from_secs(30)),
            cooldown: Duration::from_secs(300),
        }
    }
}

/// What the balancer sees in the state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Look {
    /// Sum of every partition's leader epoch: changes with every move and
    /// failover.
    placement: u64,
    /// Moves requested but not completed yet.
    pending: usize,
    /// A `Rebalance` now would move something.
    would_move: bool,
}

fn look(state: &MetadataState) -> Look {
    let mut placement = 0u64;
    let mut pending = 0usize;
    for p in state.topics.values().flat_map(|t| &t.partitions) {
        placement = placement.wrapping_add(u64::from(p.leader_epoch.unsigned_abs()));
        pending += usize::from(p.target.is_some());
    }
    Look {
        placement,
        pending,
        would_move: pending == 0 && rebalance_would_move(state),
    }
}

/// The balancer's memory between looks.
#[derive(Debug, Default)]
struct Quiet {
    /// The placement fingerprint last seen and since when it holds.
    since: Option<(u64, Instant)>,
}

impl Quiet {
    /// Whether to propose a rebalance now: something to move, nothing in
    /// flight, and placement unchanged for `cooldown`.
    fn due(&mut self, look: Look, now: Instant, cooldown: Duration) -> bool {
        let since = match self.since {
            Some((placement, since)) if placement == look.placement && look.pending == 0 => since,
            _ => {
                self.since = Some((look.placement, now));
                now
            }
        };
        look.would_move && now.duration_since(since) >= cooldown
    }

    /// Forget everything (leadership lost): a new term starts the cool-down
    /// again.
    fn reset(&mut self) {
        self.since = None;
    }
}

/// While this controller leads: every `interval`, proposes `Rebalance`
/// when [`Quiet::due`] says so.
pub(super) async fn run_balancer(
    service: ApiService,
    config: BalancerConfig,
    mut stopping: tokio::sync::watch::Receiver<bool>,
) {
    let Some(interval) = config.interval else {
        return;
    };
    let mut quiet = Quiet::default();
    loop {
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            _ = stopping.wait_for(|s| *s) => return,
        }
        let leading = service.raft.metrics().borrow().current_leader == Some(service.id);
        if !leading {
            quiet.reset();
            continue;
        }
        let seen = service.sm.read(|state, _| look(state));
        if !quiet.due(seen, Instant::now(), config.cooldown) {
            continue;
        }
        let proposal = Proposal {
            session: None,
            command: Command::Rebalance,
        };
        match service.commit(proposal, 16).await {
            Ok(answered) => match answered.response {
                Ok(Outcome::MovesRequested { requested }) => {
                    tracing::info!(
                        requested,
                        index = answered.seq,
                        cooldown = ?config.cooldown,
                        "automatic rebalance: moves requested"
                    );
                }
                other => tracing::warn!(?other, "automatic rebalance: unexpected answer"),
            },
            Err(status) => {
                tracing::warn!(%status, "automatic rebalance not committed; next look in an interval");
            }
        }
        // The moves change placement; the cool-down restarts when they do.
        quiet.reset();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::fixture::{create_topic_on, register, Driver};

    const COOL: Duration = Duration::from_secs(300);

    #[test]
    fn looks_see_placement_pending_moves_and_the_plan() {
        let mut d = Driver::default();
        d.ok(register(1));
        d.ok(register(2));
        d.ok(create_topic_on("a", 1, 4, 1));
        let first = look(&d.state);
        assert_eq!(first.pending, 0);
        assert!(first.would_move, "broker 1 leads all four partitions");
        d.ok(Command::Rebalance);
        let moving = look(&d.state);
        assert_eq!(moving.pending, 2);
        assert!(
            !moving.would_move,
            "nothing is planned while moves are in flight"
        );
        assert_eq!(moving.placement, first.placement, "not moved yet");

        let mut e = Driver::default();
        e.ok(register(1));
        e.ok(register(2));
        e.ok(create_topic_on("b", 1, 4, -1));
        assert!(!look(&e.state).would_move, "placement spreads a new topic");
    }

    #[test]
    fn due_only_after_a_quiet_cooldown_with_something_to_move() {
        let t0 = Instant::now();
        let unbalanced = Look {
            placement: 10,
            pending: 0,
            would_move: true,
        };
        let mut q = Quiet::default();
        assert!(
            !q.due(unbalanced, t0, COOL),
            "the first look starts the clock"
        );
        assert!(!q.due(unbalanced, t0 + COOL / 2, COOL));
        assert!(q.due(unbalanced, t0 + COOL, COOL));

        // A placement change (a move or failover by anyone) restarts it.
        let mut q = Quiet::default();
        q.due(unbalanced, t0, COOL);
        let moved = Look {
            placement: 11,
            ..unbalanced
        };
        assert!(!q.due(moved, t0 + COOL, COOL));
        assert!(!q.due(moved, t0 + COOL + COOL / 2, COOL));
        assert!(q.due(moved, t0 + 2 * COOL, COOL));

        // Moves in flight hold it, and restart it.
        let mut q = Quiet::default();
        q.due(unbalanced, t0, COOL);
        let in_flight = Look {
            pending: 1,
            would_move: false,
            ..unbalanced
        };
        assert!(!q.due(in_flight, t0 + COOL, COOL));
        assert!(!q.due(unbalanced, t0 + COOL + Duration::from_secs(1), COOL));
        assert!(q.due(unbalanced, t0 + 2 * COOL + Duration::from_secs(1), COOL));

        // Balanced: never due, however long it stays quiet.
        let mut q = Quiet::default();
        let balanced = Look {
            would_move: false,
            ..unbalanced
        };
        q.due(balanced, t0, COOL);
        assert!(!q.due(balanced, t0 + 10 * COOL, COOL));

        // Losing leadership forgets the quiet time.
        let mut q = Quiet::default();
        q.due(unbalanced, t0, COOL);
        q.reset();
        assert!(!q.due(unbalanced, t0 + COOL, COOL));
    }
}
