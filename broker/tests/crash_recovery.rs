//! Crash recovery with real processes: `floe-crashtest` appends from several
//! writers while uploads, index commits and WAL trims run constantly; this
//! test SIGKILLs it at a random moment, restarts it on the same directory,
//! many times over, then recovers the engine once more in-process and reads
//! every partition back through `Storage::read`.
//!
//! It proves that every acknowledged record survives every crash exactly once,
//! at the offset it was acknowledged at; that offsets are contiguous with no
//! gap or reuse; that each writer's records keep their order and form a
//! prefix of what it sent (nothing after a lost append); and that after a
//! clean shutdown everything is in object storage (an empty WAL suffices).
//!
//! `FLOE_CRASH_ITERATIONS` (default 60) sets the number of kills;
//! `FLOE_CRASH_SEED` replays a run's kill timings.

#[path = "support/records.rs"]
mod records;

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use floe_broker::cluster::Cluster;
use floe_broker::storage::objects::Objects;
use floe_broker::storage::{Storage, StorageConfig, WalMode};
use floe_controller::model::PartitionId;

/// The same settings as `floe-crashtest` (recovery must not depend on them,
/// but the WAL directory must match).
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

/// (run, writer, seq): the unique id in every record value.
type Id = (u64, u32, u64);
/// Where a writer's records ended up: (seq, partition, offset).
type Placement = Vec<(u64, i32, i64)>;

#[derive(Debug, Clone, Copy)]
struct Ack {
    partition: i32,
    base: i64,
    run: u64,
    writer: u32,
    first_seq: u64,
    count: u64,
}

#[test]
fn acknowledged_appends_survive_sigkill() {
    let iterations: u64 = std::env::var("FLOE_CRASH_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60);
    let seed: u64 = std::env::var("FLOE_CRASH_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    eprintln!("crash_recovery: {iterations} kills, FLOE_CRASH_SEED={seed}");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let mut rng = Rng(seed);
    let mut acks = Vec::new();
    let mut ready_runs = 0;
    let started = Instant::now();
    for run in 0..iterations {
        let out_path = logs.join(format!("{run}.out"));
        let err_path = logs.join(format!("{run}.err"));
        let mut child = Command::new(env!("CARGO_BIN_EXE_floe-crashtest"))
            .arg(&data)
            .arg(run.to_string())
            .stdin(Stdio::null())
            .stdout(File::create(&out_path).unwrap())
            .stderr(File::create(&err_path).unwrap())
            .spawn()
            .expect("start floe-crashtest");
        std::thread::sleep(Duration::from_millis(20 + rng.below(281)));
        if let Some(status) = child.try_wait().unwrap() {
            panic!(
                "run {run}: floe-crashtest exited on its own ({status}) before the kill:\n{}\n{}",
                std::fs::read_to_string(&out_path).unwrap_or_default(),
                std::fs::read_to_string(&err_path).unwrap_or_default()
            );
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let out = std::fs::read_to_string(&out_path).unwrap();
        // A line without its newline was cut by the kill: ignore it.
        let complete = match out.rfind('\n') {
            Some(i) => &out[..=i],
            None => "",
        };
        for line in complete.lines() {
            let f: Vec<&str> = line.split(' ').collect();
            match f[0] {
                "READY" => ready_runs += 1,
                "ACK" => acks.push(Ack {
                    partition: f[1].parse().unwrap(),
                    base: f[2].parse().unwrap(),
                    run: f[3].parse().unwrap(),
                    writer: f[4].parse().unwrap(),
                    first_seq: f[5].parse().unwrap(),
                    count: f[6].parse().unwrap(),
                }),
                _ => panic!("run {run}: unexpected output {line:?}"),
            }
        }
    }
    let elapsed = started.elapsed();
    eprintln!(
        "crash_recovery: {iterations} runs in {elapsed:?}, {ready_runs} reached the write loop, {} acknowledged appends",
        acks.len()
    );
    assert!(
        ready_runs * 2 >= iterations,
        "only {ready_runs} of {iterations} runs got past recovery: the test is not exercising crashes during writes"
    );
    assert!(!acks.is_empty(), "nothing was acknowledged");

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (wal_files, wal_bytes) = dir_usage(&data.join("wal"));
    let (objects, object_bytes) = dir_usage(&data.join("objects").join("data"));
    eprintln!(
        "crash_recovery: WAL {wal_files} segments / {wal_bytes} bytes; {objects} objects / {object_bytes} bytes"
    );
    assert!(objects > iterations, "uploads are not happening");
    let compacted = count_compacted(&data.join("objects").join("data"));
    eprintln!("crash_recovery: {compacted} compacted objects");
    assert!(
        compacted > 0,
        "compaction is not happening, so no kill landed mid-compaction"
    );
    // Trimming keeps up: what is left in the WAL is a small part of the data.
    assert!(
        wal_bytes * 4 < object_bytes,
        "the WAL is not being trimmed ({wal_bytes} bytes left, {object_bytes} bytes uploaded)"
    );
    runtime.block_on(verify(&data, &acks));
}

/// Objects written by compaction (their keys end in `-c.floe`), recursively.
fn count_compacted(dir: &Path) -> u64 {
    let mut n = 0;
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.metadata().unwrap().is_dir() {
                n += count_compacted(&e.path());
            } else if e.file_name().to_string_lossy().ends_with("-c.floe") {
                n += 1;
            }
        }
    }
    n
}

/// Files and bytes under `dir`, recursively.
fn dir_usage(dir: &Path) -> (u64, u64) {
    let mut files = 0;
    let mut bytes = 0;
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let meta = e.metadata().unwrap();
            if meta.is_dir() {
                let (f, b) = dir_usage(&e.path());
                files += f;
                bytes += b;
            } else {
                files += 1;
                bytes += meta.len();
            }
        }
    }
    (files, bytes)
}

async fn verify(data: &Path, acks: &[Ack]) {
    let cluster = Arc::new(Cluster::open(&data.join("metadata")).unwrap());
    let objects_url = format!("file://{}", data.join("objects").display());
    let topic = cluster.topic("crash").expect("topic exists");
    let ids: Vec<PartitionId> = (0..topic.partitions.len() as i32)
        .map(|p| topic.partition_id(p).unwrap())
        .collect();

    // Recover from the WAL as the crashed process left it.
    let storage = Storage::open(
        storage_config(data),
        Objects::from_url(&objects_url).unwrap(),
        cluster.clone(),
        cluster.partition_metas(),
    )
    .await
    .expect("recovery after the last kill");
    let mut found: HashMap<Id, (i32, i64)> = HashMap::new();
    let mut logs = Vec::new();
    for id in &ids {
        let back = records::read_all(&storage, *id).await;
        for (offset, value) in &back.records {
            let rid = parse_id(value);
            if let Some(prev) = found.insert(rid, (id.partition, *offset)) {
                panic!(
                    "record {rid:?} appears twice: at {prev:?} and at ({}, {offset})",
                    id.partition
                );
            }
        }
        logs.push(back.bytes);
    }

    // Every acknowledged record is there, at the acknowledged offset.
    let mut acked_records = 0;
    for a in acks {
        for k in 0..a.count {
            let rid = (a.run, a.writer, a.first_seq + k);
            let at = found.get(&rid).unwrap_or_else(|| {
                panic!("acknowledged record {rid:?} (ack {a:?}) is missing after recovery")
            });
            assert_eq!(
                *at,
                (a.partition, a.base + k as i64),
                "acknowledged record {rid:?} moved"
            );
            acked_records += 1;
        }
    }

    // Per writer: one partition, increasing offsets, and seqs 0..n with no
    // hole (a writer only sends after the previous append was acknowledged).
    let mut by_writer: BTreeMap<(u64, u32), Placement> = BTreeMap::new();
    for (&(run, w, seq), &(p, off)) in &found {
        by_writer.entry((run, w)).or_default().push((seq, p, off));
    }
    for (writer, mut recs) in by_writer {
        recs.sort_unstable();
        for (i, win) in recs.windows(2).enumerate() {
            assert_eq!(win[0].1, win[1].1, "writer {writer:?} switched partition");
            assert!(
                win[0].2 < win[1].2,
                "writer {writer:?}: seq {} at {} but seq {} at {}",
                win[0].0,
                win[0].2,
                win[1].0,
                win[1].2
            );
            assert_eq!(win[1].0, i as u64 + 1, "writer {writer:?}: hole in seqs");
        }
        assert_eq!(recs[0].0, 0, "writer {writer:?}: first records lost");
    }
    eprintln!(
        "crash_recovery: {} records recovered, {acked_records} of them acknowledged",
        found.len()
    );

    // A clean shutdown uploads everything: a fresh engine with an empty WAL
    // must read the same bytes from object storage alone.
    storage.shutdown().await;
    drop(storage);
    let empty_wal = data.join("empty-wal");
    let mut cfg = storage_config(data);
    cfg.wal_dir = empty_wal;
    let cold = Storage::open(
        cfg,
        Objects::from_url(&objects_url).unwrap(),
        cluster.clone(),
        cluster.partition_metas(),
    )
    .await
    .unwrap();
    for (id, before) in ids.iter().zip(&logs) {
        let after = records::read_all(&cold, *id).await;
        assert!(
            after.bytes == *before,
            "{id:?}: object storage after shutdown differs from the recovered log"
        );
    }
}

fn parse_id(value: &[u8]) -> Id {
    let s = std::str::from_utf8(value).expect("utf-8 value");
    let mut parts = s.splitn(4, ':');
    let mut next = || parts.next().expect("id field");
    let run = next().parse().expect("run");
    let writer = next().parse().expect("writer");
    let seq = next().parse().expect("seq");
    (run, writer, seq)
}

/// splitmix64, for reproducible kill timings.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        (z ^ (z >> 31)) % n
    }
}
