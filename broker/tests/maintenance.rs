//! Retention and compaction on the real engine (file:// objects, volume WAL):
//! many small multi-partition uploads are merged into per-partition objects
//! with byte-identical reads, the upload objects are released, and
//! `retention.bytes` / `retention.ms` raise the log start.

#[path = "support/records.rs"]
mod records;

use std::collections::BTreeMap;
use std::sync::Arc;

use floe_broker::cluster::Cluster;
use floe_broker::storage::compactor::CompactionConfig;
use floe_broker::storage::objects::Objects;
use floe_broker::storage::{ReadError, Storage, WalMode};
use floe_controller::model::{Command, PartitionId};
use uuid::Uuid;

struct Fixture {
    _dir: tempfile::TempDir,
    cluster: Arc<Cluster>,
    storage: Arc<Storage>,
    objects: Objects,
    parts: Vec<PartitionId>,
}

async fn fixture(configs: BTreeMap<String, String>) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let cluster = Arc::new(Cluster::open(&dir.path().join("meta")).unwrap());
    let id = Uuid::new_v4();
    cluster
        .propose(Command::CreateTopic {
            name: "t".into(),
            id,
            partitions: 2,
            configs,
            leader: 1,
        })
        .await
        .unwrap();
    let objects =
        Objects::from_url(&format!("file://{}", dir.path().join("objects").display())).unwrap();
    let mut cfg = records::small_config(WalMode::Volume, dir.path().join("wal"));
    // Only `fill`'s flushes upload: a timed upload between the appends of
    // one round (a loaded machine) would split it into two objects.
    cfg.upload_interval = std::time::Duration::from_secs(3600);
    cfg.upload_bytes = 64 << 20;
    let storage = Storage::open(
        cfg,
        objects.clone(),
        cluster.clone(),
        cluster.partition_metas(),
    )
    .await
    .unwrap();
    let parts = (0..2)
        .map(|p| PartitionId {
            topic_id: id,
            partition: p,
        })
        .collect();
    Fixture {
        _dir: dir,
        cluster,
        storage,
        objects,
        parts,
    }
}

/// Append `rounds` small batches to both partitions, flushing after each
/// round so every round becomes its own two-partition object.
async fn fill(f: &Fixture, rounds: usize, ts: i64) {
    for round in 0..rounds {
        for &p in &f.parts {
            let values: Vec<Vec<u8>> = (0..5)
                .map(|i| format!("r{round}-p{}-{i}", p.partition).into_bytes())
                .collect();
            f.storage
                .append(p, &records::make_batch(&values, ts))
                .await
                .unwrap();
        }
        f.storage.flush().await;
    }
}

fn entry_count(f: &Fixture, p: PartitionId) -> usize {
    f.cluster
        .read(|s| s.partition(p).map(|x| x.index.len()).unwrap_or(0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_merges_small_objects_and_reads_stay_identical() {
    let f = fixture(BTreeMap::new()).await;
    fill(&f, 12, records_now()).await;
    let before: Vec<_> = futures_read(&f).await;
    assert_eq!(entry_count(&f, f.parts[0]), 12);
    let objects_before = f.cluster.read(|s| s.objects.len());
    assert_eq!(objects_before, 12);

    let m = f
        .storage
        .maintain(CompactionConfig::default())
        .await
        .unwrap();
    assert_eq!(m.compacted_runs, 2, "one run per partition");
    assert_eq!(m.trimmed_partitions, 0);
    // Each upload object was shared by both partitions: released only once
    // both partitions were compacted, so all 12 are released in this pass.
    assert_eq!(m.released.len(), 12);
    assert_eq!(entry_count(&f, f.parts[0]), 1);
    assert_eq!(entry_count(&f, f.parts[1]), 1);
    assert_eq!(f.cluster.read(|s| s.objects.len()), 2);
    // Reads come from the new per-partition objects and are byte-identical.
    assert_eq!(futures_read(&f).await, before);
    // The released objects still exist until the caller's grace period ends.
    let listed = f.objects.list("data/").await.unwrap();
    assert_eq!(listed.len(), 14);
    // A second pass has nothing to do.
    let again = f
        .storage
        .maintain(CompactionConfig::default())
        .await
        .unwrap();
    assert_eq!((again.compacted_runs, again.released.len()), (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_bytes_raises_the_log_start() {
    let mut configs = BTreeMap::new();
    configs.insert("retention.bytes".to_owned(), "300".to_owned());
    let f = fixture(configs).await;
    fill(&f, 6, records_now()).await;
    let no_compaction = CompactionConfig {
        small_entry_bytes: 0,
        target_bytes: 0,
    };
    let m = f.storage.maintain(no_compaction).await.unwrap();
    assert_eq!(m.trimmed_partitions, 2);
    assert_eq!(
        m.released.len(),
        6 - kept_entries(&f),
        "trimmed objects are released"
    );
    let wm = f.storage.watermarks(f.parts[0]).unwrap();
    assert!(
        wm.log_start > 0 && wm.log_start < wm.high_watermark,
        "{wm:?}"
    );
    let size: u64 = f.cluster.read(|s| {
        s.partition(f.parts[0])
            .map(|p| p.index.values().map(|e| e.byte_len).sum())
            .unwrap_or(0)
    });
    assert!(size <= 300, "{size} bytes kept");
    // Below the log start is out of range; from it on everything reads.
    assert!(matches!(
        f.storage.read(f.parts[0], 0, 1 << 20).await,
        Err(ReadError::OffsetOutOfRange { .. })
    ));
    records::read_all(&f.storage, f.parts[0]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_ms_trims_expired_prefix_only() {
    let configs = [("retention.ms".to_owned(), "60000".to_owned())].into();
    let f = fixture(configs).await;
    // Three rounds stamped an hour ago, then two recent rounds, then one old
    // round again: like Kafka, time retention stops at the first entry that
    // has not expired, so the last old round stays.
    fill(&f, 3, records_now() - 3_600_000).await;
    let old_end = f.storage.watermarks(f.parts[0]).unwrap().high_watermark;
    fill(&f, 2, records_now()).await;
    fill(&f, 1, records_now() - 3_600_000).await;
    let no_compaction = CompactionConfig {
        small_entry_bytes: 0,
        target_bytes: 0,
    };
    let m = f.storage.maintain(no_compaction).await.unwrap();
    assert_eq!(m.trimmed_partitions, 2);
    assert_eq!(m.released.len(), 3, "the three expired shared objects");
    let wm = f.storage.watermarks(f.parts[0]).unwrap();
    assert_eq!(wm.log_start, old_end);
    let back = records::read_all(&f.storage, f.parts[0]).await;
    assert_eq!(
        back.records.len(),
        15,
        "three rounds of five records remain"
    );
}

fn kept_entries(f: &Fixture) -> usize {
    // Objects are shared by the two partitions; count objects still named.
    f.cluster.read(|s| s.objects.len())
}

fn records_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

async fn futures_read(f: &Fixture) -> Vec<bytes::Bytes> {
    let mut out = Vec::new();
    for &p in &f.parts {
        out.push(records::read_all(&f.storage, p).await.bytes);
    }
    out
}
