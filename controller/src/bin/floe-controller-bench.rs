//! `floe-controller-bench`: commit latency and throughput of a 3-controller
//! quorum on loopback (real gRPC, real fsynced Raft logs in a temporary
//! directory), printed as one JSON line, beside the cost of one fsync in the
//! same directory on the same run (the floor a durable commit cannot beat).
//!
//! ```text
//! cargo run --release -p floe-controller --features grpc --bin floe-controller-bench -- \
//!     [sequential commits, default 1000] [concurrent proposers, default 64] [seconds, default 5]
//! ```
//!
//! With `scale [partitions, default 100000] [index entries, default 1000000]`
//! it measures instead one controller's state machine at that size: applying
//! the topics and object commits through the Raft state machine, building a
//! snapshot (JSON, written and fsynced), and reopening it as a restart does.
//!
//! With `FLOE_BENCH_TLS_DIR` naming a directory that holds `ca.crt`,
//! `tls.crt` and `tls.key` (a certificate for `127.0.0.1`, see
//! docs/controller.md, "TLS"), the controllers and the client speak mutual
//! TLS: the same numbers with TLS's cost in them.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use floe_controller::grpc::client::ClientOptions;
use floe_controller::grpc::network::Channels;
use floe_controller::grpc::node::{self, Listeners, NodeConfig};
use floe_controller::grpc::tls::{Tls, TlsFiles};
use floe_controller::grpc::ControllerClient;
use floe_controller::model::Command;
use floe_controller::raft::ControllerNode;

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1e3
}

/// A probe file for `n` 4 KiB writes: appended to (each `fdatasync` also
/// commits the new size to the filesystem journal), or, with `overwrite`,
/// zero-filled beforehand and overwritten in place, as the Raft log writes.
struct Probe {
    file: std::fs::File,
    next: u64,
    overwrite: bool,
}

impl Probe {
    fn create(path: PathBuf, n: usize, overwrite: bool) -> std::io::Result<Probe> {
        let mut file = std::fs::File::create(path)?;
        if overwrite {
            file.write_all(&vec![0u8; n * 4096])?;
            file.sync_all()?;
        }
        Ok(Probe {
            file,
            next: 0,
            overwrite,
        })
    }

    fn write_block(&mut self, block: &[u8]) -> std::io::Result<()> {
        use std::os::unix::fs::FileExt;
        if self.overwrite {
            self.file.write_all_at(block, self.next)?;
            self.next += block.len() as u64;
        } else {
            self.file.write_all(block)?;
        }
        self.file.sync_data()
    }
}

/// Latency of a 4 KiB write + fdatasync in `dir`, `n` times.
fn fsync_baseline(
    dir: &std::path::Path,
    n: usize,
    overwrite: bool,
) -> std::io::Result<Vec<Duration>> {
    let mut probe = Probe::create(dir.join(format!("fsync-probe-{overwrite}")), n, overwrite)?;
    let block = vec![7u8; 4096];
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        probe.write_block(&block)?;
        out.push(t.elapsed());
    }
    Ok(out)
}

/// The quorum's fsync floor when the three controllers share one disk, as
/// they do here: three threads each append 4 KiB + `fdatasync` to their own
/// file at the same instant (one per controller directory), `n` times; the
/// time until the second finishes is when a majority has its entry durable.
/// On separate disks (a real deployment) this is one fsync.
fn quorum_fsync_baseline(
    dir: &std::path::Path,
    n: usize,
    overwrite: bool,
) -> std::io::Result<Vec<Duration>> {
    use std::sync::Barrier;
    let start = Arc::new(Barrier::new(4));
    let end = Arc::new(Barrier::new(4));
    let finished: Arc<std::sync::Mutex<Vec<Instant>>> = Arc::default();
    let mut threads = Vec::new();
    for i in 0..3 {
        let mut probe = Probe::create(
            dir.join(format!("quorum-fsync-probe-{i}-{overwrite}")),
            n,
            overwrite,
        )?;
        let (start, end, finished) = (start.clone(), end.clone(), finished.clone());
        threads.push(std::thread::spawn(move || -> std::io::Result<()> {
            let block = vec![7u8; 4096];
            for _ in 0..n {
                start.wait();
                probe.write_block(&block)?;
                finished
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(Instant::now());
                end.wait();
            }
            Ok(())
        }));
    }
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        start.wait();
        let t = Instant::now();
        end.wait();
        let mut done = std::mem::take(&mut *finished.lock().unwrap_or_else(|p| p.into_inner()));
        done.sort_unstable();
        out.push(done[1].saturating_duration_since(t));
    }
    for t in threads {
        t.join()
            .map_err(|_| std::io::Error::other("probe thread panicked"))??;
    }
    Ok(out)
}

/// One controller's state machine holding `partitions` partitions (100 per
/// topic) and `entries` index entries, built through `apply`.
async fn scale(partitions: usize, entries: usize) -> anyhow::Result<()> {
    use floe_controller::model::{IndexCommit, IndexEntry, ObjectMeta, PartitionId};
    use floe_controller::raft::{Batch, StateMachine, TypeConfig};
    use openraft::storage::RaftStateMachine;
    use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId, RaftSnapshotBuilder};

    let root = std::env::temp_dir().join(format!("floe-controller-scale-{}", uuid::Uuid::new_v4()));
    let mut sm = StateMachine::open(root.clone()).await?;
    let per_topic = 100usize;
    let topics = partitions.div_ceil(per_topic);
    let mut index = 0u64;
    let mut entry = |batch: Batch| {
        index += 1;
        Entry::<TypeConfig> {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
            payload: EntryPayload::Normal(batch),
        }
    };
    let started = Instant::now();
    let mut ids = Vec::with_capacity(topics);
    let mut creates = Vec::new();
    for t in 0..topics {
        let id = uuid::Uuid::new_v4();
        ids.push(id);
        creates.push(entry(Batch(vec![Command::CreateTopic {
            name: format!("topic-{t:05}"),
            id,
            partitions: per_topic as i32,
            configs: BTreeMap::new(),
            leader: 0,
        }
        .into()])));
    }
    sm.apply(creates).await?;
    // Objects of 100 partitions each, one entry per partition per object,
    // round-robin over the partitions so every partition's log grows.
    let per_object = 100usize;
    let objects = entries.div_ceil(per_object);
    let mut next_offset = vec![0i64; topics * per_topic];
    let mut batch = Vec::new();
    for o in 0..objects {
        let key = format!("objects/{o:010}");
        let commits = (0..per_object)
            .map(|k| {
                let p = (o * per_object + k) % (topics * per_topic);
                let base = next_offset[p];
                next_offset[p] += 100;
                IndexCommit {
                    partition: PartitionId {
                        topic_id: ids[p / per_topic],
                        partition: (p % per_topic) as i32,
                    },
                    entry: IndexEntry {
                        base_offset: base,
                        end_offset: base + 100,
                        leader_epoch: 0,
                        object_key: key.clone(),
                        byte_start: (k * 4096) as u64,
                        byte_len: 4096,
                        max_timestamp: 1_700_000_000_000 + o as i64,
                    },
                    producers: Vec::new(),
                }
            })
            .collect();
        let object = ObjectMeta {
            key: key.clone(),
            size: (per_object * 4096) as u64,
            created_ms: 1_700_000_000_000,
            live_entries: 0,
        };
        batch.push(entry(Batch(vec![Command::CommitObject {
            object,
            entries: commits,
        }
        .into()])));
        if batch.len() == 256 {
            sm.apply(std::mem::take(&mut batch)).await?;
        }
    }
    sm.apply(batch).await?;
    let applied_s = started.elapsed().as_secs_f64();
    let held = sm.read(|state, _| {
        let partitions: usize = state.topics.values().map(|t| t.partitions.len()).sum();
        let entries: usize = state
            .topics
            .values()
            .flat_map(|t| &t.partitions)
            .map(|p| p.index.len())
            .sum();
        (partitions, entries)
    });

    // How long one small command waits to be applied while a watcher's
    // state snapshot and a Raft snapshot are being built.
    let probe = |name: String, index: u64| Entry::<TypeConfig> {
        log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
        payload: EntryPayload::Normal(Batch(vec![Command::CreateTopic {
            name,
            id: uuid::Uuid::new_v4(),
            partitions: 1,
            configs: BTreeMap::new(),
            leader: 0,
        }
        .into()])),
    };
    let t = Instant::now();
    let json = sm.state_json().await?;
    let state_json_s = t.elapsed().as_secs_f64();
    drop(json);
    index += 1;
    sm.apply([probe("probe-before".into(), index)]).await?;
    let reader = {
        let sm = sm.clone();
        tokio::spawn(async move { Ok(sm.state_json().await.map(|_| ())?) })
    };
    index += 1;
    let apply_during_state_json_ms =
        apply_during(&mut sm, probe("probe-watch".into(), index), reader).await?;
    // Sixteen watchers that all fell behind the feed (a leader change).
    let fillers = floe_controller::raft::FEED_CAPACITY + 1;
    let filler: Vec<_> = (0..fillers)
        .map(|i| {
            index += 1;
            probe(format!("filler-{i}"), index)
        })
        .collect();
    sm.apply(filler).await?;
    let t = Instant::now();
    let watchers: Vec<_> = (0..16)
        .map(|_| {
            let sm = sm.clone();
            tokio::spawn(async move { sm.watch_snapshot().await })
        })
        .collect();
    let mut seqs = std::collections::BTreeSet::new();
    for w in watchers {
        seqs.insert(w.await??.0);
    }
    let watch_resync_16_s = t.elapsed().as_secs_f64();
    anyhow::ensure!(seqs.len() == 1, "watchers got different snapshots");
    let builder = {
        let mut b = sm.get_snapshot_builder().await;
        tokio::spawn(async move { Ok(b.build_snapshot().await.map(|_| ())?) })
    };
    index += 1;
    let apply_during_snapshot_ms =
        apply_during(&mut sm, probe("probe-snapshot".into(), index), builder).await?;

    let t = Instant::now();
    let snapshot = sm.get_snapshot_builder().await.build_snapshot().await?;
    let snapshot_s = t.elapsed().as_secs_f64();
    let snapshot_bytes = snapshot.snapshot.get_ref().len();
    drop(snapshot);
    drop(sm);
    let t = Instant::now();
    let reopened = StateMachine::open(root.clone()).await?;
    let restart_s = t.elapsed().as_secs_f64();
    let reheld = reopened.read(|state, _| state.topics.len());
    anyhow::ensure!(reheld == topics + 3 + fillers, "restart lost topics");
    let _ = std::fs::remove_dir_all(&root);
    let flat = rebalance_at_scale(topics, per_topic, false)?;
    let zoned = rebalance_at_scale(topics, per_topic, true)?;
    println!(
        "{}",
        serde_json::json!({
            "bench": "controller_state_scale",
            "rebalance_plan_s": flat.plan_s,
            "rebalance_moves": flat.moves,
            "rebalance_plan_zones_s": zoned.plan_s,
            "drain_apply_s": flat.drain_s,
            "failover_apply_s": flat.fence_s,
            "rebalance_apply_s": flat.rebalance_s,
            "decided": {
                "drain": flat.drain.json(),
                "failover": flat.fence.json(),
                "rebalance": flat.rebalance.json(),
            },
            "partitions": held.0,
            "index_entries": held.1,
            "raft_entries_applied": index,
            "apply_s": applied_s,
            "snapshot_build_s": snapshot_s,
            "state_json_s": state_json_s,
            "apply_during_state_json_ms": apply_during_state_json_ms,
            "watch_resync_16_s": watch_resync_16_s,
            "apply_during_snapshot_ms": apply_during_snapshot_ms,
            "snapshot_bytes": snapshot_bytes,
            "restart_s": restart_s,
        })
    );
    Ok(())
}

/// Milliseconds `entry` takes to apply while `work` (started 20 ms
/// earlier, so that it is under way) runs; then waits for `work`.
async fn apply_during(
    sm: &mut floe_controller::raft::StateMachine,
    entry: openraft::Entry<floe_controller::raft::TypeConfig>,
    work: tokio::task::JoinHandle<anyhow::Result<()>>,
) -> anyhow::Result<f64> {
    use openraft::storage::RaftStateMachine;

    tokio::time::sleep(Duration::from_millis(20)).await;
    let t = Instant::now();
    sm.apply([entry]).await?;
    let ms = t.elapsed().as_secs_f64() * 1e3;
    work.await??;
    Ok(ms)
}

/// The rebalance plan when a fourth broker joins three that lead
/// `topics × per_topic` partitions evenly, as the balancer computes it
/// on the leader, and `Rebalance` again in every state machine: seconds
/// and moves planned; then a drain and a failover of broker 1, applied.
/// With `zones`, the brokers are in zones a, b, c, a (topics then lean
/// differently, and the plan weighs them one by one).
fn rebalance_at_scale(topics: usize, per_topic: usize, zones: bool) -> anyhow::Result<AtScale> {
    use anyhow::Context;
    use floe_controller::model::{apply, decide, rebalance_plan, MetadataState};

    let mut state = MetadataState::default();
    let mut index = 0u64;
    let mut run = |state: &mut MetadataState, cmd: Command| {
        index += 1;
        apply(state, index, &cmd).map_err(|e| anyhow::anyhow!("{e}"))
    };
    for id in 1..=4 {
        run(
            &mut state,
            Command::RegisterBroker {
                id,
                host: format!("b{id}"),
                port: 9092,
                rack: zones.then(|| ["a", "b", "c", "a"][id as usize - 1].to_owned()),
                volume_wal: false,
            },
        )?;
    }
    for t in 0..topics {
        run(
            &mut state,
            Command::CreateTopic {
                name: format!("topic-{t:05}"),
                id: uuid::Uuid::new_v4(),
                partitions: per_topic as i32,
                configs: BTreeMap::new(),
                leader: 1 + (t % 3) as i32,
            },
        )?;
    }
    let t = Instant::now();
    let moves = rebalance_plan(&state).len();
    let plan_s = t.elapsed().as_secs_f64();
    // A drain and a failover of broker 1 move its third of the partitions.
    let timed = |cmd: &Command| -> anyhow::Result<f64> {
        let mut state = state.clone();
        let t = Instant::now();
        apply(&mut state, index + 1, cmd).map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(t.elapsed().as_secs_f64())
    };
    // What the proposing controller decides (once), and what every replica
    // and broker mirror then applies (ADR 0013), against the undecided
    // command each of them used to run the rules for.
    let decided = |cmd: &Command| -> anyhow::Result<Decided> {
        let t = Instant::now();
        let logged = decide(&state, cmd).context("a placing command is decided")?;
        let decide_s = t.elapsed().as_secs_f64();
        Ok(Decided {
            decide_s,
            apply_s: timed(&logged)?,
            bytes: serde_json::to_vec(&logged)?.len(),
        })
    };
    let drain = Command::DrainBroker { id: 1 };
    let fence = Command::FenceBroker { id: 1, epoch: 1 };
    Ok(AtScale {
        plan_s,
        moves,
        drain_s: timed(&drain)?,
        fence_s: timed(&fence)?,
        rebalance_s: timed(&Command::Rebalance)?,
        drain: decided(&drain)?,
        fence: decided(&fence)?,
        rebalance: decided(&Command::Rebalance)?,
    })
}

/// What [`rebalance_at_scale`] measured.
struct AtScale {
    plan_s: f64,
    moves: usize,
    /// Applying the undecided commands (the rules run inside apply).
    drain_s: f64,
    fence_s: f64,
    rebalance_s: f64,
    /// The same decided at proposal time.
    drain: Decided,
    fence: Decided,
    rebalance: Decided,
}

/// A command decided by the proposer, then applied by a replica.
struct Decided {
    decide_s: f64,
    apply_s: f64,
    /// The logged command's JSON size.
    bytes: usize,
}

impl Decided {
    fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "decide_s": self.decide_s,
            "apply_s": self.apply_s,
            "log_bytes": self.bytes,
        })
    }
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("scale") {
        let partitions: usize = args.get(1).map_or(Ok(100_000), |s| s.parse())?;
        let entries: usize = args.get(2).map_or(Ok(1_000_000), |s| s.parse())?;
        return scale(partitions, entries).await;
    }
    let sequential: usize = args.first().map_or(Ok(1_000), |s| s.parse())?;
    let proposers: usize = args.get(1).map_or(Ok(64), |s| s.parse())?;
    let seconds: u64 = args.get(2).map_or(Ok(5), |s| s.parse())?;

    let root: PathBuf =
        std::env::temp_dir().join(format!("floe-controller-bench-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&root)?;
    let mut fsyncs = fsync_baseline(&root, 1_000, false)?;
    fsyncs.sort_unstable();
    let mut overwrite_fsyncs = fsync_baseline(&root, 1_000, true)?;
    overwrite_fsyncs.sort_unstable();
    let mut overwrite_quorum_fsyncs = quorum_fsync_baseline(&root, 1_000, true)?;
    overwrite_quorum_fsyncs.sort_unstable();
    let mut quorum_fsyncs = quorum_fsync_baseline(&root, 1_000, false)?;
    quorum_fsyncs.sort_unstable();

    let tls = match std::env::var_os("FLOE_BENCH_TLS_DIR") {
        Some(dir) => {
            let dir = PathBuf::from(dir);
            Some(Tls::load(&TlsFiles {
                ca: dir.join("ca.crt"),
                cert: dir.join("tls.crt"),
                key: dir.join("tls.key"),
            })?)
        }
        None => None,
    };
    let mut listeners = BTreeMap::new();
    let mut voters = BTreeMap::new();
    for id in 1..=3u64 {
        let l = Listeners::bind("127.0.0.1:0".parse()?, "127.0.0.1:0".parse()?).await?;
        let (raft, api) = l.addrs()?;
        voters.insert(id, ControllerNode::new(raft.to_string(), api.to_string()));
        listeners.insert(id, l);
    }
    let mut nodes = Vec::new();
    for (id, l) in listeners {
        let config = NodeConfig {
            id,
            advertised: voters[&id].clone(),
            initial_voters: voters.clone(),
            data_dir: root.join(format!("controller-{id}")),
            raft: node::default_raft_config("floe-bench").map_err(|e| anyhow::anyhow!("{e}"))?,
            bootstrap_grace: Duration::from_millis(50),
            leases: Default::default(),
            tls: tls.clone(),
            access: Default::default(),
            balancer: floe_controller::grpc::service::BalancerConfig {
                interval: None,
                ..Default::default()
            },
        };
        nodes.push(node::start(config, l).await?);
    }
    let client = ControllerClient::with_channels(
        voters.values().map(|n| n.api_addr.clone()).collect(),
        ClientOptions::default(),
        Channels::new(tls.clone()),
    );
    let command = Command::AllocateProducerIds { count: 1 };
    // Warm up: elect, connect.
    for _ in 0..50 {
        client.propose(&command).await?;
    }

    // One gRPC round trip to a controller, no disk: the network floor.
    let mut rtts = Vec::with_capacity(200);
    for _ in 0..200 {
        let t = Instant::now();
        client.cluster_status().await?;
        rtts.push(t.elapsed());
    }
    rtts.sort_unstable();

    let mut latencies = Vec::with_capacity(sequential);
    for _ in 0..sequential {
        let t = Instant::now();
        client.propose(&command).await?;
        latencies.push(t.elapsed());
    }
    latencies.sort_unstable();

    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..proposers {
        let client = client.clone();
        let (stop, done, command) = (stop.clone(), done.clone(), command.clone());
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                client.propose(&command).await?;
                done.fetch_add(1, Ordering::Relaxed);
            }
            anyhow::Ok(())
        }));
    }
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await??;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let throughput = done.load(Ordering::Relaxed) as f64 / elapsed;

    for n in nodes {
        let _ = n.shutdown().await;
    }
    let _ = std::fs::remove_dir_all(&root);

    let fsync_p50 = percentile(&fsyncs, 0.5);
    let fsync_p99 = percentile(&fsyncs, 0.99);
    let p50 = percentile(&latencies, 0.5);
    let p99 = percentile(&latencies, 0.99);
    let rtt_p50 = percentile(&rtts, 0.5);
    let rtt_p99 = percentile(&rtts, 0.99);
    // The floor of a durable commit: a client round trip to the leader, and
    // a follower's round trip plus its fsync (the leader's own fsync runs
    // alongside).
    let floor_p99 = 2.0 * rtt_p99 + fsync_p99;
    // The same with the majority's fsyncs contending for this one disk.
    let quorum_fsync_p50 = percentile(&quorum_fsyncs, 0.5);
    let quorum_fsync_p99 = percentile(&quorum_fsyncs, 0.99);
    let shared_disk_floor_p99 = 2.0 * rtt_p99 + quorum_fsync_p99;
    // The same floors for writes that overwrite blocks the file already has
    // (what the Raft log does): the cheapest durable write on this disk.
    let overwrite_fsync_p50 = percentile(&overwrite_fsyncs, 0.5);
    let overwrite_fsync_p99 = percentile(&overwrite_fsyncs, 0.99);
    let overwrite_floor_p99 = 2.0 * rtt_p99 + overwrite_fsync_p99;
    let overwrite_quorum_fsync_p99 = percentile(&overwrite_quorum_fsyncs, 0.99);
    let overwrite_shared_floor_p99 = 2.0 * rtt_p99 + overwrite_quorum_fsync_p99;
    let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { 0.0 };
    println!(
        "{}",
        serde_json::json!({
            "bench": "controller_commit",
            "quorum": 3,
            "transport": if tls.is_some() { "grpc-loopback-mtls" } else { "grpc-loopback" },
            "fsync_ms_p50": fsync_p50,
            "fsync_ms_p99": fsync_p99,
            "commit_ms_p50": p50,
            "commit_ms_p99": p99,
            "grpc_rtt_ms_p50": rtt_p50,
            "grpc_rtt_ms_p99": rtt_p99,
            "commit_p99_over_fsync_plus_network_p99": if floor_p99 > 0.0 { p99 / floor_p99 } else { 0.0 },
            "quorum_fsync_ms_p50": quorum_fsync_p50,
            "quorum_fsync_ms_p99": quorum_fsync_p99,
            "commit_p99_over_shared_disk_floor_p99": ratio(p99, shared_disk_floor_p99),
            "overwrite_fsync_ms_p50": overwrite_fsync_p50,
            "overwrite_fsync_ms_p99": overwrite_fsync_p99,
            "commit_p99_over_overwrite_fsync_plus_network_p99": ratio(p99, overwrite_floor_p99),
            "overwrite_quorum_fsync_ms_p99": overwrite_quorum_fsync_p99,
            "commit_p99_over_overwrite_shared_disk_floor_p99": ratio(p99, overwrite_shared_floor_p99),
            "sequential_commits": sequential,
            "proposers": proposers,
            "commits_per_sec": throughput,
        })
    );
    Ok(())
}
