//! `floe-crashtest DATA_DIR RUN`: a crash-recovery workload for the storage
//! engine, meant to be SIGKILLed at random moments by `tests/crash_recovery.rs`.
//!
//! It recovers the engine (volume WAL, `file://` objects) from `DATA_DIR`,
//! creates the test topic if absent, then appends from several concurrent
//! writers with uploads, index commits and WAL trims happening constantly.
//! After each acknowledged append it prints, and flushes, one line:
//!
//! `ACK <partition> <base offset> <run> <writer> <first seq> <record count>`
//!
//! Record `k` of that append has the value `<run>:<writer>:<first seq + k>:`
//! followed by padding, and was acknowledged at offset `base + k`. A writer
//! waits for each acknowledgement before its next append, so at most one
//! append per writer is in flight when the process dies.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use floe_broker::cluster::Cluster;
use floe_broker::storage::compactor::CompactionConfig;
use floe_broker::storage::objects::Objects;
use floe_broker::storage::{Storage, StorageConfig, WalMode};
use floe_controller::model::{Command, PartitionId};

/// The topic the workload writes to (shared with the test).
const TOPIC: &str = "crash";
const PARTITIONS: i32 = 3;
const WRITERS: u32 = 6;
/// The process ends on its own after this long, so a lost parent never leaves it running.
const MAX_RUNTIME: Duration = Duration::from_secs(30);

/// The engine settings the workload and the verifying test both use: small
/// objects, short intervals and small segments so that uploads, commits and
/// WAL trims happen all the time.
fn storage_config(data_dir: &Path) -> StorageConfig {
    StorageConfig {
        wal_mode: WalMode::Volume,
        wal_dir: data_dir.join("wal"),
        wal_segment_bytes: 256 << 10,
        broker_id: 1,
        upload_bytes: 64 << 10,
        upload_interval: Duration::from_millis(20),
        hot_tail_bytes: 16 << 10,
        cache_bytes: 4 << 20,
        max_pending_bytes: 8 << 20,
    }
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: floe-crashtest DATA_DIR RUN";
    let data_dir = PathBuf::from(args.next().context(usage)?);
    let run: u64 = args.next().context(usage)?.parse().context(usage)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        tokio::select! {
            r = workload(&data_dir, run) => r,
            _ = tokio::time::sleep(MAX_RUNTIME) => Ok(()),
        }
    })
}

async fn workload(data_dir: &Path, run: u64) -> anyhow::Result<()> {
    std::fs::create_dir_all(data_dir)?;
    let cluster = Arc::new(Cluster::open(&data_dir.join("metadata"))?);
    let objects = Objects::from_url(&format!("file://{}", data_dir.join("objects").display()))?;
    let storage = Storage::open(
        storage_config(data_dir),
        objects,
        cluster.clone(),
        cluster.partition_metas(),
    )
    .await?;
    let topic = match cluster.topic(TOPIC) {
        Some(t) => t,
        None => {
            cluster
                .propose(Command::CreateTopic {
                    name: TOPIC.into(),
                    id: uuid::Uuid::new_v4(),
                    partitions: PARTITIONS,
                    configs: Default::default(),
                    leader: 1,
                })
                .await?;
            cluster.topic(TOPIC).context("topic vanished")?
        }
    };
    let mut ids = Vec::new();
    for p in 0..PARTITIONS {
        let id = PartitionId {
            topic_id: topic.id,
            partition: p,
        };
        let meta = cluster.partition_meta(id).context("partition meta")?;
        storage.open_partition(id, meta);
        ids.push(id);
    }
    emit("READY");
    // Compaction runs all the time too, so kills land mid-compaction (between
    // its PUT and its index swap) as well as mid-append and mid-upload.
    let compactor = storage.clone();
    tokio::spawn(async move {
        let cfg = CompactionConfig {
            small_entry_bytes: 256 << 10,
            target_bytes: 1 << 20,
        };
        loop {
            tokio::time::sleep(Duration::from_millis(30)).await;
            if let Err(e) = compactor.maintain(cfg).await {
                eprintln!("maintenance: {e}");
            }
        }
    });
    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        let storage = storage.clone();
        let id = ids[(w as usize) % ids.len()];
        tasks.push(tokio::spawn(async move {
            writer(&storage, id, run, w).await;
        }));
    }
    for t in tasks {
        t.await?;
    }
    Ok(())
}

async fn writer(storage: &Storage, id: PartitionId, run: u64, w: u32) {
    let mut rng = Rng(run.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ u64::from(w));
    let mut seq: u64 = 0;
    loop {
        // One or two batches per append, one to five records each.
        let batches = 1 + rng.below(2);
        let mut records = Vec::new();
        let first = seq;
        for _ in 0..batches {
            let n = 1 + rng.below(5);
            let values: Vec<Vec<u8>> = (0..n)
                .map(|_| {
                    let mut v = format!("{run}:{w}:{seq}:").into_bytes();
                    v.resize(v.len() + rng.below(400) as usize, b'x');
                    seq += 1;
                    v
                })
                .collect();
            records.extend_from_slice(&make_batch(&values, now_ms()));
        }
        match storage.append(id, &records).await {
            Ok(a) => emit(&format!(
                "ACK {} {} {run} {w} {first} {}",
                id.partition,
                a.base_offset,
                seq - first
            )),
            Err(e) => {
                emit(&format!("ERR {} {e}", id.partition));
                std::process::exit(3);
            }
        }
    }
}

/// One whole line per write, flushed, so a kill never leaves half an ACK
/// that looks whole.
fn emit(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(format!("{line}\n").as_bytes());
    let _ = out.flush();
}

fn make_batch(values: &[Vec<u8>], ts: i64) -> Vec<u8> {
    floe_broker::protocol::batch::encode_uncompressed(values, None, ts).to_vec()
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// splitmix64: enough randomness for sizes, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}
