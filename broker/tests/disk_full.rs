//! A full WAL volume: the WAL directory sits on a 2 MiB tmpfs, uploads are
//! held back (huge size threshold, 60 s interval), and several writers append
//! until the volume is full.
//!
//! Proves: appends then fail with a clear `AppendError::Storage` that names
//! the WAL and the lack of space — never a panic or a hang; the failed write
//! poisons the WAL, so every later append fails too; the failure never
//! exposes an unacknowledged record to readers; and every append that was
//! acknowledged before the failure is recovered, exactly once and at its
//! acknowledged offset, by a fresh engine opened on a copy of the WAL
//! directory (the full volume itself has no room for recovery to work in).
//!
//! Needs root to mount the tmpfs. Without root (or where `mount` is refused)
//! the test is skipped loudly, except when `CI` is set: then it fails.

#[path = "support/records.rs"]
mod records;

use std::collections::HashSet;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use floe_broker::cluster::Cluster;
use floe_broker::storage::objects::Objects;
use floe_broker::storage::{AppendError, Storage, StorageConfig, WalMode};
use floe_controller::model::{Command as MetaCommand, PartitionId};

const PARTITIONS: i32 = 4;
/// Appends a writer keeps trying after its first failure (all must fail).
const AFTER_FAILURE: usize = 3;
/// A writer that gets this far never saw the volume fill: a test bug.
const MAX_APPENDS: usize = 2_000;

/// A tmpfs mounted on a directory, unmounted on drop (also on a panic).
struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    /// `Err(stderr)` when `mount` fails.
    fn mount(dir: &Path, size: &str) -> Result<Tmpfs, String> {
        fs::create_dir_all(dir).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        Ok(Tmpfs {
            dir: dir.to_owned(),
        })
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let ok = Command::new("umount")
            .arg(&self.dir)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            // Something still holds a file open: detach it anyway, so no
            // mount outlives the test.
            let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
        }
    }
}

/// Skip loudly outside CI; in CI a missing prerequisite fails the test.
fn skip(why: &str) {
    if std::env::var_os("CI").is_some() {
        panic!("disk_full cannot run and CI is set: {why}");
    }
    eprintln!("\n!!! SKIPPING disk_full: {why} !!!\n");
}

fn config(wal_dir: PathBuf) -> StorageConfig {
    StorageConfig {
        wal_mode: WalMode::Volume,
        wal_dir,
        // Several segments fit, so rotation runs before the volume fills.
        wal_segment_bytes: 384 << 10,
        broker_id: 1,
        // Nothing is uploaded (and trimmed from the WAL) during the test.
        upload_bytes: 1 << 30,
        upload_interval: Duration::from_secs(60),
        hot_tail_bytes: 0,
        cache_bytes: 1 << 20,
        max_pending_bytes: 1 << 30,
    }
}

/// What one writer saw.
#[derive(Default)]
struct Outcome {
    /// (base offset, values) of every acknowledged append, in order.
    acked: Vec<(i64, Vec<Bytes>)>,
    /// The values of the first failed append (it may or may not have landed).
    first_failed: Vec<Bytes>,
    /// Every error, in order.
    errors: Vec<String>,
}

fn values(p: i32, seq: usize) -> Vec<Vec<u8>> {
    (0..2)
        .map(|k| {
            let mut v = format!("p{p}-s{seq}-k{k}-").into_bytes();
            v.resize(
                1_500 + (seq * 97 + k * 389) % 2_500,
                b'a' + (seq % 26) as u8,
            );
            v
        })
        .collect()
}

/// Append to `id` until appends fail, then a few more (which must fail too).
async fn writer(storage: Arc<Storage>, id: PartitionId) -> Outcome {
    let mut out = Outcome::default();
    for seq in 0..MAX_APPENDS {
        let vals = values(id.partition, seq);
        let batch = records::make_batch(&vals, seq as i64);
        let r = tokio::time::timeout(Duration::from_secs(10), storage.append(id, &batch))
            .await
            .unwrap_or_else(|_| panic!("append {seq} to {id:?} hung for 10 s"));
        match r {
            Ok(a) if out.errors.is_empty() => {
                assert!(!a.duplicate);
                out.acked
                    .push((a.base_offset, vals.into_iter().map(Bytes::from).collect()));
            }
            Ok(a) => panic!(
                "append {seq} to {id:?} was acknowledged at {} after an earlier failure ({:?}): the WAL must stay poisoned",
                a.base_offset, out.errors
            ),
            Err(e) => {
                assert!(
                    matches!(e, AppendError::Storage(_)),
                    "append {seq} to {id:?} failed with {e:?}, not a storage error"
                );
                if out.errors.is_empty() {
                    out.first_failed = vals.into_iter().map(Bytes::from).collect();
                }
                out.errors.push(e.to_string());
                if out.errors.len() > AFTER_FAILURE {
                    return out;
                }
            }
        }
    }
    panic!("{MAX_APPENDS} appends to {id:?} never filled the 2 MiB WAL volume");
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

#[test]
fn full_wal_volume_fails_appends_and_keeps_every_acknowledged_record() {
    let uid = fs::metadata("/proc/self").map(|m| m.uid()).unwrap_or(1);
    if uid != 0 {
        return skip("not root, cannot mount a tmpfs");
    }
    let dir = tempfile::tempdir().unwrap();
    let volume = dir.path().join("wal-volume");
    let tmpfs = match Tmpfs::mount(&volume, "2m") {
        Ok(t) => t,
        Err(e)
            if ["permission denied", "not permitted", "superuser"]
                .iter()
                .any(|m| e.to_lowercase().contains(m)) =>
        {
            return skip(&format!("mount of a tmpfs was refused: {}", e.trim()));
        }
        Err(e) => panic!("mount -t tmpfs failed: {e}"),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let started = Instant::now();
    rt.block_on(async {
        tokio::time::timeout(
            Duration::from_secs(45),
            fill_and_recover(dir.path(), &volume.join("wal")),
        )
        .await
        .expect("the disk-full test did not finish within 45 s")
    });
    eprintln!("disk_full done in {:?}", started.elapsed());
    // The engine (and its WAL thread, holding files on the tmpfs) goes with
    // the runtime; then the tmpfs can be unmounted.
    drop(rt);
    drop(tmpfs);
}

async fn fill_and_recover(root: &Path, wal_dir: &Path) {
    let cluster = Arc::new(Cluster::open(&root.join("metadata")).unwrap());
    cluster
        .propose(MetaCommand::CreateTopic {
            name: "full".into(),
            id: uuid::Uuid::new_v4(),
            partitions: PARTITIONS,
            configs: Default::default(),
            leader: 1,
        })
        .await
        .unwrap();
    let topic = cluster.topic("full").unwrap();
    let ids: Vec<PartitionId> = (0..PARTITIONS)
        .map(|p| topic.partition_id(p).unwrap())
        .collect();
    let objects = Objects::from_url(&format!("file://{}", root.join("objects").display())).unwrap();
    let storage = Storage::open(
        config(wal_dir.to_owned()),
        objects.clone(),
        cluster.clone(),
        cluster.partition_metas(),
    )
    .await
    .unwrap();

    // Concurrent writers, so the failing group commit holds several appends.
    let tasks: Vec<_> = ids
        .iter()
        .map(|&id| tokio::spawn(writer(storage.clone(), id)))
        .collect();
    let mut outcomes = Vec::new();
    for t in tasks {
        outcomes.push(t.await.expect("a writer panicked"));
    }

    let total_acked: usize = outcomes.iter().map(|o| o.acked.len()).sum();
    let all_errors: Vec<&String> = outcomes.iter().flat_map(|o| &o.errors).collect();
    eprintln!(
        "{total_acked} appends acknowledged before the WAL volume filled; first errors: {:#?}",
        outcomes.iter().map(|o| &o.errors[0]).collect::<Vec<_>>()
    );
    assert!(total_acked > 50, "only {total_acked} appends fit in 2 MiB");
    // Every error names the WAL and the cause, also once the WAL is poisoned.
    for e in &all_errors {
        assert!(
            e.contains("WAL") && e.contains("No space left on device"),
            "the error does not say the WAL volume is full: {e}"
        );
    }
    for o in &outcomes {
        for e in &o.errors[1..] {
            assert!(e.contains("poisoned"), "not a poisoned-WAL error: {e}");
        }
    }
    // Poisoned: still failing after every writer stopped, on any partition.
    let late = tokio::time::timeout(
        Duration::from_secs(10),
        storage.append(ids[0], &records::make_batch(&[b"late".to_vec()], 0)),
    )
    .await
    .expect("a late append hung");
    let late = late.expect_err("an append after the WAL failed must fail");
    assert!(
        matches!(late, AppendError::Storage(_)) && late.to_string().contains("poisoned"),
        "a late append must fail as a poisoned WAL: {late}"
    );

    // Readers see exactly the acknowledged records: nothing of a failed
    // append is below the high watermark.
    for (id, o) in ids.iter().zip(&outcomes) {
        check_log(&storage, *id, o, false).await;
    }

    // Recover from a copy of the WAL (the full volume has no room to spare).
    let copy = root.join("wal-copy");
    copy_dir(wal_dir, &copy);
    let segments = fs::read_dir(&copy).unwrap().count();
    let fresh = Storage::open(
        config(copy.clone()),
        objects.clone(),
        cluster.clone(),
        cluster.partition_metas(),
    )
    .await
    .unwrap_or_else(|e| panic!("recovery from the full WAL ({segments} segments) failed: {e}"));
    for (id, o) in ids.iter().zip(&outcomes) {
        check_log(&fresh, *id, o, true).await;
    }
    // The recovered engine works: it acknowledges and uploads again.
    let hw = fresh.watermarks(ids[0]).unwrap().high_watermark;
    let a = tokio::time::timeout(
        Duration::from_secs(10),
        fresh.append(ids[0], &records::make_batch(&[b"after".to_vec()], 1)),
    )
    .await
    .expect("append after recovery hung")
    .expect("append after recovery");
    assert_eq!(a.base_offset, hw);
    tokio::time::timeout(Duration::from_secs(20), fresh.shutdown())
        .await
        .expect("flush after recovery hung");
    assert!(
        !cluster.read(|s| s.objects.is_empty()),
        "nothing was uploaded after recovery"
    );
}

/// `id`'s log holds every acknowledged record of `o` once, at its
/// acknowledged offset, in order. A recovered log may also end with the
/// first failed append if its bytes landed whole before the volume filled
/// (it was never acknowledged, so either way is correct); nothing else.
async fn check_log(storage: &Storage, id: PartitionId, o: &Outcome, recovered: bool) {
    let back = tokio::time::timeout(Duration::from_secs(20), records::read_all(storage, id))
        .await
        .expect("read back hung");
    let mut at = 0;
    for (base, vals) in &o.acked {
        for (k, v) in vals.iter().enumerate() {
            let Some((off, got)) = back.records.get(at) else {
                panic!(
                    "{id:?} (recovered: {recovered}): acknowledged record at offset {} is missing; the log ends at {}",
                    base + k as i64,
                    back.records.len()
                );
            };
            assert_eq!(*off, base + k as i64, "{id:?}: acknowledged offset moved");
            assert!(
                got == v,
                "{id:?}: the record at offset {off} differs from the one acknowledged there"
            );
            at += 1;
        }
    }
    let rest: Vec<&Bytes> = back.records[at..].iter().map(|(_, v)| v).collect();
    let unacked_landed = recovered && rest.len() == o.first_failed.len() && {
        rest.iter().zip(&o.first_failed).all(|(a, b)| *a == b)
    };
    assert!(
        rest.is_empty() || unacked_landed,
        "{id:?} (recovered: {recovered}): {} records beyond the acknowledged ones",
        rest.len()
    );
    let unique: HashSet<&Bytes> = back.records.iter().map(|(_, v)| v).collect();
    assert_eq!(
        unique.len(),
        back.records.len(),
        "{id:?}: a record is duplicated"
    );
}
