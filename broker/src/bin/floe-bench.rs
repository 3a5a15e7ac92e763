//! `floe-bench`: measures the storage engine on this machine and prints one
//! line of JSON to stdout (logs go to stderr). See `docs/benchmarks.md`.
//!
//! Phases, all under one scratch directory on the filesystem being measured:
//! 1. raw write + `fdatasync` of `--raw-write-bytes` (the floor any durable
//!    append pays) and of `--raw-large-write-bytes` (the disk's durable
//!    bandwidth with large groups);
//! 2. `volume` mode: one appender (latency without queueing); appends at a
//!    fixed offered load (`--rate-mb-s`, latency at that load); concurrent
//!    appenders each waiting for its ack (throughput at saturation), ack
//!    latency, PUTs per GB; then
//!    tail reads of just-appended data, then catch-up reads of everything
//!    through a freshly opened engine with no hot tail and a cold cache, so
//!    every byte comes from object range reads;
//! 3. `object` mode: the same append measurements.

#[path = "floe-bench/baselines.rs"]
mod baselines;
#[path = "floe-bench/report.rs"]
mod report;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use floe_broker::cluster::Cluster;
use floe_broker::storage::objects::Objects;
use floe_broker::storage::{Storage, StorageConfig, WalMode};
use floe_controller::model::{Command, PartitionId};
use serde::Serialize;

use baselines::{measure_fsync, measure_group_commit, measure_paced_group_commit};
use report::{AppendResult, PacedResult, PutCounts, RawFsync, ReadResult, Report};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
enum ObjectsKind {
    File,
    Memory,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Mode {
    Volume,
    Object,
    All,
}

/// Storage-engine benchmark: durable append throughput and latency, PUTs per
/// GB, tail and catch-up read throughput.
#[derive(Debug, Parser)]
#[command(name = "floe-bench", version)]
struct Args {
    /// Which WAL mode(s) to measure (reads run with `volume`).
    #[arg(long, env = "FLOE_BENCH_MODE", value_enum, default_value = "all")]
    mode: Mode,
    /// Seconds of appending per mode.
    #[arg(long, env = "FLOE_BENCH_DURATION_SECS", default_value_t = 10.0)]
    duration_secs: f64,
    /// Stop appending earlier once this many GB were appended (per mode).
    #[arg(long, env = "FLOE_BENCH_MAX_GB", default_value_t = 4.0)]
    max_gb: f64,
    /// Concurrent appenders in `volume` mode (each waits for its ack).
    #[arg(long, env = "FLOE_BENCH_CONCURRENCY", default_value_t = 16)]
    concurrency: usize,
    /// Concurrent appenders in `object` mode (default: --concurrency).
    #[arg(long, env = "FLOE_BENCH_OBJECT_CONCURRENCY")]
    object_concurrency: Option<usize>,
    /// Partitions the appenders spread over.
    #[arg(long, env = "FLOE_BENCH_PARTITIONS", default_value_t = 16)]
    partitions: i32,
    /// Approximate size of each appended record batch.
    #[arg(long, env = "FLOE_BENCH_BATCH_BYTES", default_value_t = 16 << 10)]
    batch_bytes: usize,
    /// Value size of each record in a batch.
    #[arg(long, env = "FLOE_BENCH_RECORD_BYTES", default_value_t = 1024)]
    record_bytes: usize,
    /// Size of each write in the raw fsync baseline.
    #[arg(long, env = "FLOE_BENCH_RAW_WRITE_BYTES", default_value_t = 64 << 10)]
    raw_write_bytes: usize,
    /// Size of each write in a second raw baseline: the disk's durable bandwidth
    /// with large groups (the ceiling for any group-committing WAL here).
    #[arg(long, env = "FLOE_BENCH_RAW_LARGE_WRITE_BYTES", default_value_t = 1 << 20)]
    raw_large_write_bytes: usize,
    /// Seconds of raw write + fdatasync (each size).
    #[arg(long, env = "FLOE_BENCH_RAW_SECS", default_value_t = 3.0)]
    raw_secs: f64,
    /// Offered load of the paced `volume` phase in MB/s: appends issued on a
    /// fixed schedule, not waiting for acks (latency at a given load, as
    /// produce benchmarks measure it); 0 skips.
    #[arg(long, env = "FLOE_BENCH_RATE_MB_S", default_value_t = 250.0)]
    rate_mb_s: f64,
    /// Offered load of the paced `object` phase in MB/s (appends on a fixed
    /// schedule, as for `--rate-mb-s`): PUTs per GB and ack latency of
    /// `object` mode at a producer's load. Each upload window closes into
    /// one PUT, so PUTs per GB is about (1000 / window ms) / (GB/s); 0
    /// skips.
    #[arg(long, env = "FLOE_BENCH_OBJECT_RATE_MB_S", default_value_t = 100.0)]
    object_rate_mb_s: f64,
    /// Seconds of single-appender `volume` appends (latency without queueing); 0 skips.
    #[arg(long, env = "FLOE_BENCH_PROBE_SECS", default_value_t = 3.0)]
    probe_secs: f64,
    /// Seconds of tail reads.
    #[arg(long, env = "FLOE_BENCH_READ_SECS", default_value_t = 3.0)]
    read_secs: f64,
    /// Upload once this many bytes are pending (as `floe local --upload-bytes`).
    #[arg(long, env = "FLOE_BENCH_UPLOAD_BYTES", default_value_t = 32 << 20)]
    upload_bytes: usize,
    /// Upload interval in ms (default as `floe local`: 1000 volume, 100 object).
    #[arg(long, env = "FLOE_BENCH_UPLOAD_INTERVAL_MS")]
    upload_interval_ms: Option<u64>,
    /// WAL segment size (as `floe local`: 64 MiB).
    #[arg(long, env = "FLOE_BENCH_WAL_SEGMENT_BYTES", default_value_t = 64 << 20)]
    wal_segment_bytes: u64,
    /// Hot tail per partition during the append phases.
    #[arg(long, env = "FLOE_BENCH_HOT_TAIL_BYTES", default_value_t = 8 << 20)]
    hot_tail_bytes: usize,
    /// Block cache for the catch-up phase.
    #[arg(long, env = "FLOE_BENCH_CACHE_BYTES", default_value_t = 256 << 20)]
    cache_bytes: usize,
    /// max_bytes of each read call.
    #[arg(long, env = "FLOE_BENCH_READ_MAX_BYTES", default_value_t = 1 << 20)]
    read_max_bytes: usize,
    /// Object store: `file` (a directory beside the WAL: same disk) or `memory`
    /// (no object I/O on the disk, isolating the WAL).
    #[arg(long, env = "FLOE_BENCH_OBJECTS", value_enum, default_value = "file")]
    objects: ObjectsKind,
    /// Parent of the scratch directory (must be on the filesystem to measure).
    #[arg(long, env = "FLOE_BENCH_DIR")]
    dir: Option<PathBuf>,
    /// Keep the scratch directory afterwards.
    #[arg(long, env = "FLOE_BENCH_KEEP", default_value_t = false)]
    keep: bool,
}

impl Args {
    fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(self.concurrency > 0, "--concurrency must be at least 1");
        anyhow::ensure!(
            self.object_concurrency != Some(0),
            "--object-concurrency must be at least 1"
        );
        anyhow::ensure!(
            (1..=10_000).contains(&self.partitions),
            "--partitions must be between 1 and 10000"
        );
        anyhow::ensure!(
            self.batch_bytes >= 128 && self.batch_bytes <= 64 << 20,
            "--batch-bytes must be between 128 B and 64 MiB"
        );
        anyhow::ensure!(self.record_bytes > 0, "--record-bytes must be at least 1");
        anyhow::ensure!(
            self.duration_secs > 0.0 && self.max_gb > 0.0,
            "--duration-secs and --max-gb must be positive"
        );
        anyhow::ensure!(
            self.rate_mb_s >= 0.0 && self.rate_mb_s.is_finite(),
            "--rate-mb-s must be 0 (skip) or positive"
        );
        anyhow::ensure!(
            self.object_rate_mb_s >= 0.0 && self.object_rate_mb_s.is_finite(),
            "--object-rate-mb-s must be 0 (skip) or positive"
        );
        anyhow::ensure!(
            self.raw_write_bytes > 0,
            "--raw-write-bytes must be positive"
        );
        Ok(())
    }
}

/// The most appends the paced phase keeps in flight; reaching it shows up
/// as schedule lag.
const PACED_MAX_IN_FLIGHT: usize = 4096;

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("FLOE_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    args.validate()?;
    let parent = args.dir.clone().unwrap_or_else(std::env::temp_dir);
    let scratch = parent.join(format!("floe-bench-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&scratch)
        .with_context(|| format!("cannot create scratch directory {}", scratch.display()))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let result = runtime.block_on(run(&args, &scratch));
    drop(runtime);
    if !args.keep {
        if let Err(e) = std::fs::remove_dir_all(&scratch) {
            eprintln!("cannot remove {}: {e}", scratch.display());
        }
    }
    let report = result?;
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}

async fn run(args: &Args, scratch: &Path) -> anyhow::Result<Report> {
    let loadavg_start = loadavg();
    eprintln!("raw write+fdatasync baseline in {}", scratch.display());
    let raw_dir = scratch.to_owned();
    let (bytes, secs) = (args.raw_write_bytes, args.raw_secs);
    let (raw_fsync, raw_fsync_overwrite) =
        both_ways(move |overwrite| measure_fsync(&raw_dir, bytes, secs, overwrite)).await?;
    let raw_dir = scratch.to_owned();
    let bytes = args.raw_large_write_bytes;
    let raw_fsync_large =
        tokio::task::spawn_blocking(move || measure_fsync(&raw_dir, bytes, secs, false)).await??;
    let mut report = Report {
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        loadavg_start,
        loadavg_end: 0.0,
        dir: scratch.display().to_string(),
        objects: args.objects,
        partitions: args.partitions,
        batch_bytes: batch(args.batch_bytes, args.record_bytes).len(),
        raw_fsync,
        raw_fsync_overwrite,
        raw_fsync_large,
        raw_group_commit: None,
        raw_group_commit_overwrite: None,
        volume_over_overwrite_group_commit_p99_us: None,
        volume_probe: None,
        paced_group_commit: None,
        paced_group_commit_overwrite: None,
        volume_paced: None,
        paced_broker_added_p99_us: None,
        paced_over_group_commit_p99_us: None,
        paced_over_overwrite_group_commit_p99_us: None,
        volume: None,
        volume_broker_added_p99_us: None,
        volume_p99_over_fsync_p99: None,
        volume_over_group_commit_p99_us: None,
        volume_p99_over_group_commit_p99: None,
        probe_broker_added_p99_us: None,
        tail_read: None,
        catchup_read: None,
        object: None,
        object_paced: None,
    };
    let fsync_p99 = report.raw_fsync.latency.p99_us;
    if matches!(args.mode, Mode::Volume | Mode::All) {
        if args.probe_secs > 0.0 {
            eprintln!("volume mode, 1 appender, {} s", args.probe_secs);
            let engine = Engine::open(args, &scratch.join("probe"), WalMode::Volume, None).await?;
            let r = engine.append_phase(args, 1, args.probe_secs).await?;
            report.probe_broker_added_p99_us = Some(r.ack.p99_us as i64 - fsync_p99 as i64);
            report.volume_probe = Some(r);
            engine.close().await;
        }
        if args.rate_mb_s > 0.0 {
            let (rate, bytes, secs) = (args.rate_mb_s, report.batch_bytes, args.raw_secs);
            eprintln!("bare group commit at {rate} MB/s, {secs} s");
            let raw_dir = scratch.to_owned();
            let (appending, overwriting) = both_ways(move |overwrite| {
                measure_paced_group_commit(&raw_dir, bytes, rate, secs, overwrite)
            })
            .await?;
            let floors = [appending.latency.p99_us, overwriting.latency.p99_us].map(|us| us as i64);
            report.paced_group_commit = Some(appending);
            report.paced_group_commit_overwrite = Some(overwriting);
            eprintln!("volume mode at {rate} MB/s, {} s", args.duration_secs);
            let dir = scratch.join("paced");
            let engine = Engine::open(args, &dir, WalMode::Volume, None).await?;
            let r = engine
                .paced_phase(args, args.rate_mb_s, args.duration_secs)
                .await?;
            let p99 = r.result.ack.p99_us as i64;
            report.paced_broker_added_p99_us = Some(p99 - fsync_p99 as i64);
            report.paced_over_group_commit_p99_us = Some(p99 - floors[0]);
            report.paced_over_overwrite_group_commit_p99_us = Some(p99 - floors[1]);
            report.volume_paced = Some(r);
            engine.close().await;
            // Its WAL and objects are not read again; give the disk back.
            std::fs::remove_dir_all(&dir)?;
        }
        eprintln!(
            "bare group commit, {} writers, {} s",
            args.concurrency, args.raw_secs
        );
        let raw_dir = scratch.to_owned();
        let (writers, bytes, secs) = (args.concurrency, report.batch_bytes, args.raw_secs);
        let (group, overwriting) = both_ways(move |overwrite| {
            measure_group_commit(&raw_dir, writers, bytes, secs, overwrite)
        })
        .await?;
        let (group_p99, overwrite_p99) = (group.latency.p99_us, overwriting.latency.p99_us);
        report.raw_group_commit = Some(group);
        report.raw_group_commit_overwrite = Some(overwriting);
        eprintln!("volume mode, {} appenders", args.concurrency);
        let dir = scratch.join("volume");
        let engine = Engine::open(args, &dir, WalMode::Volume, None).await?;
        let r = engine
            .append_phase(args, args.concurrency, args.duration_secs)
            .await?;
        report.volume_broker_added_p99_us = Some(r.ack.p99_us as i64 - fsync_p99 as i64);
        report.volume_p99_over_fsync_p99 = Some(r.ack.p99_us as f64 / fsync_p99.max(1) as f64);
        report.volume_over_group_commit_p99_us = Some(r.ack.p99_us as i64 - group_p99 as i64);
        report.volume_over_overwrite_group_commit_p99_us =
            Some(r.ack.p99_us as i64 - overwrite_p99 as i64);
        report.volume_p99_over_group_commit_p99 =
            Some(r.ack.p99_us as f64 / group_p99.max(1) as f64);
        report.volume = Some(r);
        eprintln!("tail reads");
        report.tail_read = Some(engine.tail_phase(args).await?);
        let reuse = (engine.cluster.clone(), engine.objects.clone());
        engine.close().await;
        eprintln!("catch-up reads through objects");
        // Object mode: no WAL to share with the closed engine; reads are the same.
        let engine = Engine::open(args, &dir, WalMode::Object, Some(reuse)).await?;
        report.catchup_read = Some(engine.catchup_phase(args).await?);
        engine.close().await;
    }
    if matches!(args.mode, Mode::Object | Mode::All) {
        let concurrency = args.object_concurrency.unwrap_or(args.concurrency);
        eprintln!("object mode, {concurrency} appenders");
        let engine = Engine::open(args, &scratch.join("object"), WalMode::Object, None).await?;
        report.object = Some(
            engine
                .append_phase(args, concurrency, args.duration_secs)
                .await?,
        );
        engine.close().await;
        if args.object_rate_mb_s > 0.0 {
            let rate = args.object_rate_mb_s;
            eprintln!("object mode at {rate} MB/s, {} s", args.duration_secs);
            let dir = scratch.join("object-paced");
            let engine = Engine::open(args, &dir, WalMode::Object, None).await?;
            report.object_paced = Some(engine.paced_phase(args, rate, args.duration_secs).await?);
            engine.close().await;
        }
    }
    report.loadavg_end = loadavg();
    Ok(report)
}

/// A disk baseline measured twice on a blocking thread: appending to a new
/// file, then overwriting one written out beforehand.
async fn both_ways<F>(measure: F) -> anyhow::Result<(RawFsync, RawFsync)>
where
    F: Fn(bool) -> anyhow::Result<RawFsync> + Send + Sync + 'static,
{
    let measure = Arc::new(measure);
    let m = measure.clone();
    let appending = tokio::task::spawn_blocking(move || m(false)).await??;
    let overwriting = tokio::task::spawn_blocking(move || measure(true)).await??;
    Ok((appending, overwriting))
}

/// The 1-minute load average (0 where /proc is missing).
fn loadavg() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0)
}

struct Engine {
    cluster: Arc<Cluster>,
    storage: Arc<Storage>,
    objects: Objects,
    partitions: Vec<PartitionId>,
}

impl Engine {
    /// Open an engine as `floe local` does; create the topic on a fresh cluster.
    /// Reopening (`reuse` given) uses no hot tail, so reads go to objects.
    async fn open(
        args: &Args,
        dir: &Path,
        mode: WalMode,
        reuse: Option<(Arc<Cluster>, Objects)>,
    ) -> anyhow::Result<Engine> {
        let reopen = reuse.is_some();
        let (cluster, objects) = match reuse {
            Some(r) => r,
            None => {
                std::fs::create_dir_all(dir)?;
                let c = Arc::new(Cluster::open(&dir.join("metadata"))?);
                c.propose(Command::CreateTopic {
                    name: "bench".into(),
                    id: uuid::Uuid::new_v4(),
                    partitions: args.partitions,
                    configs: BTreeMap::new(),
                    leader: 1,
                })
                .await?;
                let objects = match args.objects {
                    ObjectsKind::File => {
                        Objects::from_url(&format!("file://{}", dir.join("objects").display()))?
                    }
                    ObjectsKind::Memory => Objects::from_url("memory://")?,
                };
                (c, objects)
            }
        };
        let topic = cluster.topic("bench").context("bench topic missing")?;
        let partitions = (0..args.partitions)
            .filter_map(|i| topic.partition_id(i))
            .collect();
        let interval = args.upload_interval_ms.unwrap_or(match mode {
            WalMode::Volume => 1_000,
            WalMode::Object => 100,
        });
        let cfg = StorageConfig {
            wal_mode: mode,
            wal_dir: dir.join("wal"),
            wal_segment_bytes: args.wal_segment_bytes,
            broker_id: 1,
            upload_bytes: args.upload_bytes,
            upload_interval: Duration::from_millis(interval),
            hot_tail_bytes: if reopen { 0 } else { args.hot_tail_bytes },
            cache_bytes: args.cache_bytes,
            max_pending_bytes: (args.upload_bytes * 8).max(256 << 20),
        };
        let storage = Storage::open(
            cfg,
            objects.clone(),
            cluster.clone(),
            cluster.partition_metas(),
        )
        .await?;
        Ok(Engine {
            cluster,
            storage,
            objects,
            partitions,
        })
    }

    async fn close(self) {
        self.storage.shutdown().await;
    }

    async fn append_phase(
        &self,
        args: &Args,
        concurrency: usize,
        secs: f64,
    ) -> anyhow::Result<AppendResult> {
        let records = batch(args.batch_bytes, args.record_bytes);
        let per_task = (args.max_gb * 1e9 / concurrency as f64 / records.len() as f64).ceil();
        let per_task = per_task.max(1.0) as u64;
        let deadline = Instant::now() + Duration::from_secs_f64(secs);
        let before = PutCounts::now(&self.objects);
        let start = Instant::now();
        let mut tasks = Vec::new();
        for i in 0..concurrency {
            let storage = self.storage.clone();
            let id = self.partitions[i % self.partitions.len()];
            let records = records.clone();
            tasks.push(tokio::spawn(async move {
                let mut us = Vec::new();
                while Instant::now() < deadline && (us.len() as u64) < per_task {
                    let t = Instant::now();
                    storage.append(id, &records).await?;
                    us.push(t.elapsed().as_micros() as u64);
                }
                anyhow::Ok(us)
            }));
        }
        let mut us = Vec::new();
        for t in tasks {
            us.extend(t.await??);
        }
        let seconds = start.elapsed().as_secs_f64();
        let bytes = (us.len() * records.len()) as u64;
        // Upload what is still pending so PUTs per GB covers every appended byte.
        self.storage.flush().await;
        Ok(before.result(&self.objects, concurrency, seconds, bytes, us))
    }

    /// Appends of `--batch-bytes` issued every `batch / rate` seconds, round
    /// robin over the partitions, each in its own task, for `secs` (or
    /// `--max-gb`). The issuer never waits for acks (up to
    /// [`PACED_MAX_IN_FLIGHT`]), so a slow engine cannot slow the schedule
    /// down and hide its own latency; each latency counts from the moment
    /// its append was issued. The timer ticks every millisecond, so appends
    /// leave in bursts of about a millisecond's worth.
    async fn paced_phase(
        &self,
        args: &Args,
        rate_mb_s: f64,
        secs: f64,
    ) -> anyhow::Result<PacedResult> {
        let records = batch(args.batch_bytes, args.record_bytes);
        let interval = records.len() as f64 / (rate_mb_s * 1e6);
        let max_appends = (args.max_gb * 1e9 / records.len() as f64).ceil().max(1.0) as u64;
        let in_flight = Arc::new(tokio::sync::Semaphore::new(PACED_MAX_IN_FLIGHT));
        let before = PutCounts::now(&self.objects);
        let start = Instant::now();
        let deadline = start + Duration::from_secs_f64(secs);
        let mut tasks = tokio::task::JoinSet::new();
        let mut us = Vec::new();
        let (mut issued, mut max_lag, mut peak) = (0u64, Duration::ZERO, 0usize);
        while issued < max_appends {
            let due = start + Duration::from_secs_f64(issued as f64 * interval);
            if due >= deadline {
                break;
            }
            if Instant::now() < due {
                tokio::time::sleep_until(due.into()).await;
            }
            let permit = in_flight.clone().acquire_owned().await?;
            max_lag = max_lag.max(Instant::now().saturating_duration_since(due));
            peak = peak.max(PACED_MAX_IN_FLIGHT - in_flight.available_permits());
            let storage = self.storage.clone();
            let id = self.partitions[issued as usize % self.partitions.len()];
            let records = records.clone();
            tasks.spawn(async move {
                let t = Instant::now();
                storage.append(id, &records).await?;
                drop(permit);
                anyhow::Ok(t.elapsed().as_micros() as u64)
            });
            issued += 1;
            // Reap finished appends as we go, so errors surface early.
            while let Some(done) = tasks.try_join_next() {
                us.push(done??);
            }
        }
        while let Some(done) = tasks.join_next().await {
            us.push(done??);
        }
        let seconds = start.elapsed().as_secs_f64();
        let bytes = issued * records.len() as u64;
        self.storage.flush().await;
        Ok(PacedResult {
            target_mb_s: rate_mb_s,
            max_schedule_lag_us: max_lag.as_micros() as u64,
            result: before.result(&self.objects, peak, seconds, bytes, us),
        })
    }

    /// Re-read the newest data of every partition, which the hot tail holds.
    async fn tail_phase(&self, args: &Args) -> anyhow::Result<ReadResult> {
        let records = batch(args.batch_bytes, args.record_bytes);
        let offsets_per_batch =
            i64::from(floe_broker::protocol::batch::parse_header(&records)?.record_count);
        // Half the hot budget: what committing can never have evicted.
        let batches_in_tail = (args.hot_tail_bytes / 2 / records.len()).max(1) as i64;
        let window = batches_in_tail * offsets_per_batch;
        self.read_phase(args, Duration::from_secs_f64(args.read_secs), |hw| {
            (hw - window).max(0)
        })
        .await
    }

    /// Read every committed byte once from the start (after a reopen with no hot tail).
    async fn catchup_phase(&self, args: &Args) -> anyhow::Result<ReadResult> {
        self.read_phase(args, Duration::MAX, |_| 0).await
    }

    /// Readers, one per partition, from `from(hw)` to hw; tail readers wrap
    /// around until `limit`, catch-up readers stop at hw.
    async fn read_phase(
        &self,
        args: &Args,
        limit: Duration,
        from: impl Fn(i64) -> i64,
    ) -> anyhow::Result<ReadResult> {
        let gets_before = self.objects.stats.gets.load(Ordering::Relaxed);
        let get_bytes_before = self.objects.stats.get_bytes.load(Ordering::Relaxed);
        let start = Instant::now();
        let mut tasks = Vec::new();
        for &id in &self.partitions {
            let storage = self.storage.clone();
            let wm = storage.watermarks(id).context("partition missing")?;
            let (first, hw) = (from(wm.high_watermark).max(wm.log_start), wm.high_watermark);
            let max_bytes = args.read_max_bytes;
            let wrap = limit != Duration::MAX;
            tasks.push(tokio::spawn(async move {
                let mut bytes = 0u64;
                let mut offset = first;
                while offset < hw {
                    let chunk = storage.read(id, offset, max_bytes).await?;
                    let last = floe_broker::protocol::batch::iter(&chunk)
                        .last()
                        .map(|(h, _)| h.base_offset + h.offset_count())
                        .context("read returned no batch below the high watermark")?;
                    bytes += chunk.len() as u64;
                    offset = last;
                    if wrap && offset >= hw {
                        if start.elapsed() >= limit {
                            break;
                        }
                        offset = first;
                    }
                }
                anyhow::Ok(bytes)
            }));
        }
        let mut bytes = 0;
        for t in tasks {
            bytes += t.await??;
        }
        let seconds = start.elapsed().as_secs_f64();
        Ok(ReadResult {
            seconds,
            bytes,
            mb_s: bytes as f64 / seconds / 1e6,
            gets: self.objects.stats.gets.load(Ordering::Relaxed) - gets_before,
            get_mb: (self.objects.stats.get_bytes.load(Ordering::Relaxed) - get_bytes_before)
                as f64
                / 1e6,
        })
    }
}

/// A valid uncompressed v2 batch of about `target` bytes of `value`-byte records.
fn batch(target: usize, value: usize) -> bytes::Bytes {
    // ~16 bytes of record framing per value, 61 of batch header.
    let n = ((target.saturating_sub(61)) / (value + 16)).max(1);
    let values: Vec<Vec<u8>> = (0..n)
        .map(|r| (0..value).map(|i| (i * 131 + r) as u8).collect())
        .collect();
    floe_broker::protocol::batch::encode_uncompressed(&values, None, 1_700_000_000_000).freeze()
}
