//! A cluster broker's side of the controller contract: its lease (renewed
//! by heartbeats, lapsing when the quorum is out of reach) and the partitions
//! it leads (the storage engine opens exactly those the metadata names).
//!
//! Safety rests on two rules (see `docs/controller.md`, "Broker leases"):
//! - a write is acknowledged only while the lease is valid, and the lease
//!   runs from the time a renewal was *sent*, so it always lapses here before
//!   the controller leader (which waits lease + grace from *receipt*) fences
//!   this broker and gives its partitions away;
//! - every index commit carries the partition's leader epoch, so whatever
//!   this broker uploads after a move is refused by the controller and
//!   dropped here ([`crate::storage::CommitError::LeadershipLost`]).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use floe_controller::grpc::client::{ClientError, ControllerClient};
use floe_controller::model::{Command, HandOff, MetadataState, Outcome, PartitionId};
use tokio_util::sync::CancellationToken;

use crate::cluster::Cluster;
use crate::storage::{PartitionMeta, Storage};

/// How this broker registers itself.
#[derive(Debug, Clone)]
pub struct Registration {
    pub id: i32,
    pub host: String,
    pub port: i32,
    pub rack: Option<String>,
    pub volume_wal: bool,
}

impl Registration {
    fn command(&self) -> Command {
        Command::RegisterBroker {
            id: self.id,
            host: self.host.clone(),
            port: self.port,
            rack: self.rack.clone(),
            volume_wal: self.volume_wal,
        }
    }
}

/// This incarnation's registration epoch and how long it may acknowledge.
#[derive(Debug, Default)]
pub struct Lease {
    /// The registration epoch (0: not registered).
    epoch: AtomicI64,
    valid_until: Mutex<Option<Instant>>,
}

impl Lease {
    /// Whether writes may be acknowledged now.
    pub fn valid(&self) -> bool {
        self.deadline().is_some_and(|d| Instant::now() < d)
    }

    fn deadline(&self) -> Option<Instant> {
        *self.valid_until.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The incarnation this broker runs as (0 before registration).
    pub fn epoch(&self) -> i64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// A renewal sent at `sent` was granted for `lease`.
    pub(crate) fn renewed(&self, sent: Instant, lease: Duration) {
        let mut until = self.valid_until.lock().unwrap_or_else(|p| p.into_inner());
        let new = sent + lease;
        // Renewals may complete out of order: never move the deadline back.
        if until.is_none_or(|u| u < new) {
            *until = Some(new);
        }
    }

    /// The controller refused this incarnation: stop acknowledging at once.
    fn revoke(&self) {
        *self.valid_until.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// Runs as incarnation `epoch` from now on (no lease until renewed).
    pub fn registered(&self, epoch: i64) {
        self.revoke();
        self.epoch.store(epoch, Ordering::Release);
    }
}

/// Registers (a new incarnation) and returns its epoch.
pub async fn register(cluster: &Cluster, me: &Registration) -> anyhow::Result<i64> {
    match cluster.propose(me.command()).await? {
        Outcome::BrokerRegistered { epoch } => Ok(epoch),
        other => anyhow::bail!("registration answered {other:?}"),
    }
}

/// Renews the lease every fifth of the lease granted (200 ms until the first
/// grant) until `stop`; re-registers when the controller says this
/// incarnation was fenced. `heartbeats` should be a client with a short
/// deadline: a renewal that takes a whole lease is useless.
pub async fn run_lease(
    heartbeats: ControllerClient,
    cluster: Arc<Cluster>,
    lease: Arc<Lease>,
    me: Registration,
    stop: CancellationToken,
) {
    let mut lapsed_logged = false;
    let mut interval = Duration::from_millis(200);
    loop {
        let epoch = lease.epoch();
        let sent = Instant::now();
        let renewal = tokio::select! {
            _ = stop.cancelled() => return,
            r = heartbeats.heartbeat(me.id, epoch) => r,
        };
        match renewal {
            Ok(granted) => {
                lease.renewed(sent, granted);
                interval = (granted / 5).clamp(Duration::from_millis(20), Duration::from_secs(2));
                if lapsed_logged {
                    tracing::info!(broker = me.id, epoch, "controller lease renewed again");
                    lapsed_logged = false;
                }
            }
            Err(ClientError::Refused {
                code: tonic::Code::Aborted,
                message,
            }) => {
                lease.revoke();
                tracing::warn!(broker = me.id, epoch, %message, "this incarnation was fenced; registering again");
                match register(&cluster, &me).await {
                    Ok(epoch) => {
                        lease.registered(epoch);
                        tracing::info!(broker = me.id, epoch, "registered as a new incarnation");
                        continue;
                    }
                    Err(e) => tracing::warn!(error = %e, "registration failed; retrying"),
                }
            }
            Err(e) => {
                if !lease.valid() && !lapsed_logged {
                    tracing::warn!(broker = me.id, epoch, error = %e, "controller lease lapsed: refusing to acknowledge writes until it is renewed");
                    lapsed_logged = true;
                } else {
                    tracing::debug!(error = %e, "lease renewal failed");
                }
            }
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
    }
}

/// What the storage engine should change to match the metadata.
#[derive(Debug, Default, PartialEq)]
pub struct Plan {
    /// Led here and not open (or open under an older leader epoch).
    pub open: Vec<(PartitionId, PartitionMeta)>,
    /// Open here but led elsewhere, or deleted.
    pub close: Vec<PartitionId>,
}

/// Partitions broker `id` (incarnation `epoch`) should serve, given what is
/// open now (`open`: partition → the leader epoch it was opened at).
///
/// A partition is opened only while this incarnation is live, and closed
/// only when its leader is another broker or it is gone. A fenced
/// volume-WAL broker thus keeps its partitions open (its lease stops its
/// acknowledgements; its WAL still holds what it acknowledged), and
/// reopening happens only when the leader epoch moved on.
pub fn plan(state: &MetadataState, id: i32, epoch: i64, open: &HashMap<PartitionId, i32>) -> Plan {
    let live = state
        .brokers
        .get(&id)
        .is_some_and(|b| b.epoch == epoch && !b.fenced);
    let mut plan = Plan::default();
    let mut led = HashSet::new();
    for topic in state.topics.values() {
        for (i, p) in topic.partitions.iter().enumerate() {
            if p.leader != id {
                continue;
            }
            let pid = PartitionId {
                topic_id: topic.id,
                partition: i as i32,
            };
            led.insert(pid);
            let stale = open.get(&pid).is_some_and(|e| *e != p.leader_epoch);
            if stale {
                plan.close.push(pid);
            }
            if live && (stale || !open.contains_key(&pid)) {
                plan.open.push((pid, crate::cluster::meta(p)));
            }
        }
    }
    plan.close
        .extend(open.keys().filter(|pid| !led.contains(pid)).copied());
    plan.close.sort_by_key(|p| (p.topic_id, p.partition));
    plan.close.dedup();
    plan
}

/// How long a hand-off may take to upload what the partitions accepted.
const HANDOFF_FLUSH_TIMEOUT: Duration = Duration::from_secs(10);

fn open_partitions(storage: &Storage) -> HashMap<PartitionId, i32> {
    storage
        .partition_ids()
        .into_iter()
        .filter_map(|pid| storage.watermarks(pid).map(|w| (pid, w.leader_epoch)))
        .collect()
}

/// Partitions this live incarnation leads, has open, and should hand to
/// another broker (a pending move), with the leader epoch they are led at.
pub fn handoffs(
    state: &MetadataState,
    id: i32,
    epoch: i64,
    open: &HashMap<PartitionId, i32>,
) -> Vec<(PartitionId, i32)> {
    let live = state
        .brokers
        .get(&id)
        .is_some_and(|b| b.epoch == epoch && !b.fenced);
    if !live {
        return Vec::new();
    }
    let mut out = Vec::new();
    for topic in state.topics.values() {
        for (i, p) in topic.partitions.iter().enumerate() {
            let pid = PartitionId {
                topic_id: topic.id,
                partition: i as i32,
            };
            if p.leader == id
                && p.target.is_some_and(|t| t != id)
                && open.get(&pid) == Some(&p.leader_epoch)
            {
                out.push((pid, p.leader_epoch));
            }
        }
    }
    out
}

/// Fences the partitions (appends are refused from now on: clients hear
/// NOT_LEADER_OR_FOLLOWER), uploads and commits everything they accepted in
/// one shared round, then tells the controller they can move. The new
/// leaders open them from the committed index; nothing is copied.
async fn hand_off(
    cluster: &Cluster,
    storage: &Storage,
    id: i32,
    broker_epoch: i64,
    partitions: Vec<(PartitionId, i32)>,
) {
    let started = Instant::now();
    let epochs: HashMap<PartitionId, i32> = partitions.iter().copied().collect();
    let ids: Vec<PartitionId> = partitions.iter().map(|(p, _)| *p).collect();
    let ends = match storage.fence(&ids, HANDOFF_FLUSH_TIMEOUT).await {
        Ok(ends) => ends,
        Err(e) => {
            // They stay fenced and are tried again; their data stays put.
            tracing::warn!(error = %e, partitions = ids.len(), "hand-off flush failed; retrying");
            tokio::time::sleep(Duration::from_millis(200)).await;
            return;
        }
    };
    let flushed = started.elapsed();
    let handoffs: Vec<HandOff> = ends
        .iter()
        .map(|(pid, end)| HandOff {
            partition: *pid,
            leader_epoch: epochs[pid],
            committed_end: *end,
        })
        .collect();
    let cmd = Command::CompleteMoves {
        from: id,
        broker_epoch,
        handoffs,
    };
    match cluster.propose(cmd).await {
        Ok(Outcome::MovesCompleted { moved, skipped }) => {
            tracing::info!(
                moved,
                skipped,
                flush_ms = flushed.as_millis() as u64,
                total_ms = started.elapsed().as_millis() as u64,
                "handed partitions off"
            );
            if skipped > 0 {
                reopen_kept(cluster, storage, id, &partitions);
            }
        }
        Ok(other) => tracing::warn!(?other, "unexpected answer to a hand-off"),
        // Maybe committed, maybe not: the partitions stay fenced (never
        // acknowledging under an epoch that may be over) and the next pass
        // proposes the hand-off again.
        Err(e) => {
            tracing::warn!(error = %e, "hand-off not committed; retrying");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// Partitions a committed hand-off skipped are still led here under the
/// same epoch but fenced in storage: reopen them from the metadata, which
/// holds everything they accepted (the mirror includes the hand-off).
fn reopen_kept(cluster: &Cluster, storage: &Storage, id: i32, partitions: &[(PartitionId, i32)]) {
    let Some(mirror) = cluster.mirror() else {
        return;
    };
    for (pid, leader_epoch) in partitions {
        let kept = mirror.read(|s| {
            s.partition(*pid)
                .filter(|p| p.leader == id && p.leader_epoch == *leader_epoch)
                .map(crate::cluster::meta)
        });
        if let Some(meta) = kept {
            storage.remove_partition(*pid);
            storage.open_partition(*pid, meta);
        }
    }
}

/// How often partition loads are measured.
const LOAD_PERIOD: Duration = Duration::from_secs(10);
/// A load is reported again at least this often while it is not zero.
const LOAD_REFRESH: Duration = Duration::from_secs(60);

/// Whether a newly measured load differs enough from the last reported one
/// to be worth a controller command (25% and 16 KiB/s).
fn load_changed(reported: u64, now: u64) -> bool {
    let diff = reported.abs_diff(now);
    diff > 16 * 1024 && diff * 4 > reported.max(now)
}

/// Measures the bytes per second (in + out) of every partition led here and
/// reports those that changed to the controller (`ReportLoad`), which
/// weighs partitions by them when it rebalances. Until `stop`.
pub async fn report_loads(
    cluster: Arc<Cluster>,
    storage: Arc<Storage>,
    lease: Arc<Lease>,
    id: i32,
    stop: CancellationToken,
) {
    let mut last: HashMap<PartitionId, (u64, u64)> = HashMap::new();
    let mut reported: HashMap<PartitionId, u64> = HashMap::new();
    let mut last_at = Instant::now();
    let mut refreshed = Instant::now();
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(LOAD_PERIOD) => {}
        }
        let now = Instant::now();
        let secs = now.duration_since(last_at).as_secs_f64().max(0.001);
        last_at = now;
        let mut current = HashMap::new();
        let mut loads = Vec::new();
        let refresh = now.duration_since(refreshed) >= LOAD_REFRESH;
        for (pid, bytes_in, bytes_out) in storage.traffic() {
            let (prev_in, prev_out) = last.get(&pid).copied().unwrap_or((0, 0));
            // Counters restart when a partition is reopened.
            let d_in = if bytes_in >= prev_in {
                bytes_in - prev_in
            } else {
                bytes_in
            };
            let d_out = if bytes_out >= prev_out {
                bytes_out - prev_out
            } else {
                bytes_out
            };
            current.insert(pid, (bytes_in, bytes_out));
            let rate = ((d_in + d_out) as f64 / secs) as u64;
            let before = reported.get(&pid).copied().unwrap_or(0);
            if load_changed(before, rate) || (refresh && rate > 0) {
                loads.push((pid, rate));
            }
        }
        last = current;
        if refresh {
            refreshed = now;
        }
        if loads.is_empty() || !lease.valid() {
            continue;
        }
        let cmd = Command::ReportLoad {
            broker: id,
            broker_epoch: lease.epoch(),
            loads: loads.clone(),
        };
        match cluster.propose(cmd).await {
            Ok(_) => reported.extend(loads),
            Err(e) => tracing::debug!(error = %e, "load report not committed; measuring again"),
        }
    }
}

/// Applies [`plan`] whenever the mirror moves, the incarnation changes, or
/// every second, until `stop`.
pub async fn follow(
    cluster: Arc<Cluster>,
    storage: Arc<Storage>,
    lease: Arc<Lease>,
    id: i32,
    stop: CancellationToken,
) {
    let Some(mirror) = cluster.mirror().cloned() else {
        return;
    };
    let mut changes = mirror.subscribe();
    loop {
        let open = open_partitions(&storage);
        let epoch = lease.epoch();
        let handoffs = mirror.read(|s| handoffs(s, id, epoch, &open));
        // A broker without a valid lease may already be fenced: it hands off
        // nothing (the controller moves its partitions if it is).
        if !handoffs.is_empty() && lease.valid() {
            hand_off(&cluster, &storage, id, epoch, handoffs).await;
            continue;
        }
        let plan = mirror.read(|s| plan(s, id, epoch, &open));
        for pid in &plan.close {
            tracing::info!(partition = ?pid, "no longer led here: closing");
            storage.remove_partition(*pid);
        }
        for (pid, meta) in plan.open {
            tracing::info!(partition = ?pid, leader_epoch = meta.leader_epoch, committed_end = meta.committed_end, "leading: opening");
            storage.open_partition(pid, meta);
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            r = changes.changed() => if r.is_err() { return },
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use floe_controller::model::{apply, Command};
    use std::collections::BTreeMap;
    use uuid::Uuid;

    struct S {
        state: MetadataState,
        index: u64,
    }

    impl S {
        fn new() -> S {
            S {
                state: MetadataState::default(),
                index: 0,
            }
        }
        fn apply(&mut self, cmd: Command) -> Outcome {
            self.index += 1;
            apply(&mut self.state, self.index, &cmd).expect("applies")
        }
        fn register(&mut self, id: i32, volume_wal: bool) -> i64 {
            match self.apply(Command::RegisterBroker {
                id,
                host: "h".into(),
                port: 9092,
                rack: None,
                volume_wal,
            }) {
                Outcome::BrokerRegistered { epoch } => epoch,
                o => panic!("{o:?}"),
            }
        }
        fn topic(&mut self, n: u128, partitions: i32) -> Uuid {
            let id = Uuid::from_u128(n);
            self.apply(Command::CreateTopic {
                name: format!("t{n}"),
                id,
                partitions,
                configs: BTreeMap::new(),
                leader: -1,
            });
            id
        }
    }

    fn pid(topic_id: Uuid, partition: i32) -> PartitionId {
        PartitionId {
            topic_id,
            partition,
        }
    }

    fn opened(p: &Plan) -> Vec<PartitionId> {
        p.open.iter().map(|(id, _)| *id).collect()
    }

    #[test]
    fn a_live_broker_opens_what_it_leads_and_closes_what_moved() {
        let mut s = S::new();
        let e1 = s.register(1, false);
        s.register(2, false);
        let t = s.topic(1, 4); // 1, 2, 1, 2
        let p = plan(&s.state, 1, e1, &HashMap::new());
        assert_eq!(opened(&p), vec![pid(t, 0), pid(t, 2)]);
        assert!(p.close.is_empty());
        // Opened: nothing to do.
        let open: HashMap<_, _> = [(pid(t, 0), 0), (pid(t, 2), 0)].into();
        assert_eq!(plan(&s.state, 1, e1, &open), Plan::default());
        // Broker 1 is fenced (object WAL): both move to 2, so 1 closes them.
        s.apply(Command::FenceBroker { id: 1, epoch: e1 });
        let p = plan(&s.state, 1, e1, &open);
        assert!(p.open.is_empty());
        assert_eq!(p.close, vec![pid(t, 0), pid(t, 2)]);
        // Broker 2 opens them at the bumped epoch.
        let p = plan(&s.state, 2, 1, &[(pid(t, 1), 0), (pid(t, 3), 0)].into());
        assert_eq!(opened(&p), vec![pid(t, 0), pid(t, 2)]);
        assert!(p.open.iter().all(|(_, m)| m.leader_epoch == 1));
    }

    #[test]
    fn a_stale_incarnation_opens_nothing_and_a_deleted_topic_closes() {
        let mut s = S::new();
        let e1 = s.register(1, false);
        let t = s.topic(1, 2);
        // An older incarnation number (restarted broker not yet re-registered).
        assert!(plan(&s.state, 1, e1 - 1, &HashMap::new()).open.is_empty());
        let open: HashMap<_, _> = [(pid(t, 0), 0), (pid(t, 1), 0)].into();
        s.apply(Command::DeleteTopic { name: "t1".into() });
        assert_eq!(
            plan(&s.state, 1, e1, &open).close,
            vec![pid(t, 0), pid(t, 1)]
        );
    }

    #[test]
    fn a_fenced_volume_broker_keeps_its_partitions_open() {
        let mut s = S::new();
        let e1 = s.register(1, true);
        s.register(2, false);
        let t = s.topic(1, 2);
        let open: HashMap<_, _> = [(pid(t, 0), 0)].into();
        s.apply(Command::FenceBroker { id: 1, epoch: e1 });
        // Not closed (its WAL holds acknowledged data), not reopened.
        assert_eq!(plan(&s.state, 1, e1, &open), Plan::default());
        // Back as a new incarnation: same partition, same epoch, still open.
        let e2 = s.register(1, true);
        assert_eq!(plan(&s.state, 1, e2, &open), Plan::default());
    }

    #[test]
    fn a_partition_that_came_back_under_a_newer_epoch_is_reopened() {
        let mut s = S::new();
        let e1 = s.register(1, false);
        let t = s.topic(1, 1);
        s.apply(Command::FenceBroker { id: 1, epoch: e1 }); // leaderless, epoch 1
        let e2 = s.register(1, false); // takes it back at epoch 2
        let open: HashMap<_, _> = [(pid(t, 0), 0)].into();
        let p = plan(&s.state, 1, e2, &open);
        assert_eq!(p.close, vec![pid(t, 0)]);
        assert_eq!(opened(&p), vec![pid(t, 0)]);
        assert_eq!(p.open[0].1.leader_epoch, 2);
    }

    #[test]
    fn only_real_load_changes_are_reported() {
        assert!(!load_changed(0, 0));
        assert!(!load_changed(0, 10_000), "below 16 KiB/s");
        assert!(load_changed(0, 100_000));
        assert!(!load_changed(1_000_000, 1_100_000), "10%");
        assert!(load_changed(1_000_000, 1_500_000));
        assert!(load_changed(1_000_000, 0));
    }

    #[test]
    fn the_lease_runs_from_the_send_time_and_never_moves_back() {
        let lease = Lease::default();
        assert!(!lease.valid(), "no renewal yet");
        let now = Instant::now();
        lease.renewed(now, Duration::from_secs(60));
        assert!(lease.valid());
        lease.renewed(now - Duration::from_secs(120), Duration::from_secs(60));
        assert!(lease.valid(), "an older renewal does not shorten the lease");
        lease.renewed(now - Duration::from_secs(10), Duration::from_secs(1));
        assert!(lease.valid());
        lease.revoke();
        assert!(!lease.valid());
        let lapsed = Lease::default();
        lapsed.renewed(now - Duration::from_secs(2), Duration::from_secs(1));
        assert!(!lapsed.valid(), "sent 2 s ago with a 1 s lease");
    }
}
