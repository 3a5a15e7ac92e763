//! Fence-and-flush on the real engine: hundreds of partitions fenced at once
//! are uploaded in shared objects and committed, appends racing the fence are
//! either acknowledged-and-committed or refused, never lost, and nothing is
//! accepted afterwards.

#[path = "support/records.rs"]
mod records;

use std::sync::Arc;
use std::time::{Duration, Instant};

use floe_broker::cluster::Cluster;
use floe_broker::storage::objects::Objects;
use floe_broker::storage::{AppendError, Storage, WalMode};
use floe_controller::model::{Command, PartitionId};
use uuid::Uuid;

const PARTITIONS: i32 = 300;

async fn fence_round(mode: WalMode) {
    let dir = tempfile::tempdir().unwrap();
    let cluster = Arc::new(Cluster::open(&dir.path().join("meta")).unwrap());
    let id = Uuid::new_v4();
    cluster
        .propose(Command::CreateTopic {
            name: "t".into(),
            id,
            partitions: PARTITIONS,
            configs: Default::default(),
            leader: 1,
        })
        .await
        .unwrap();
    let objects =
        Objects::from_url(&format!("file://{}", dir.path().join("objects").display())).unwrap();
    let mut cfg = records::small_config(mode, dir.path().join("wal"));
    // Uploads happen only because of the fence (object mode still needs a window).
    cfg.upload_bytes = 1 << 30;
    cfg.upload_interval = Duration::from_secs(if mode == WalMode::Volume { 3600 } else { 1 });
    let storage = Storage::open(
        cfg,
        objects.clone(),
        cluster.clone(),
        cluster.partition_metas(),
    )
    .await
    .unwrap();
    let parts: Vec<PartitionId> = (0..PARTITIONS)
        .map(|p| PartitionId {
            topic_id: id,
            partition: p,
        })
        .collect();
    if mode == WalMode::Volume {
        for &p in &parts {
            storage
                .append(p, &records::make_batch(&[b"before".to_vec()], 1))
                .await
                .unwrap();
        }
    }
    // Appends racing the fence, on every partition.
    let mut racers = Vec::new();
    for &p in &parts {
        let s = storage.clone();
        racers.push(tokio::spawn(async move {
            s.append(p, &records::make_batch(&[b"racing".to_vec()], 2))
                .await
        }));
    }
    tokio::task::yield_now().await;
    let puts_before = objects
        .stats
        .puts
        .load(std::sync::atomic::Ordering::Relaxed);
    let started = Instant::now();
    let ends = storage
        .fence(&parts, Duration::from_secs(20))
        .await
        .unwrap();
    let took = started.elapsed();
    let puts = objects
        .stats
        .puts
        .load(std::sync::atomic::Ordering::Relaxed)
        - puts_before;
    eprintln!("{mode:?}: fenced and flushed {PARTITIONS} partitions in {took:?} with {puts} PUTs");
    assert_eq!(ends.len(), PARTITIONS as usize);
    assert!(puts <= 3, "{puts} PUTs: partitions must share uploads");
    for r in racers {
        match r.await.unwrap() {
            Ok(_) | Err(AppendError::Fenced) => {}
            Err(e) => panic!("unexpected append error: {e}"),
        }
    }
    for (p, end) in &ends {
        let committed = cluster.read(|s| s.partition(*p).map(|x| x.committed_end).unwrap_or(-1));
        assert_eq!(committed, *end, "{p:?} committed end");
        let wm = storage.watermarks(*p).unwrap();
        assert_eq!(wm.high_watermark, *end);
        // Everything up to the returned end reads back from objects alone.
        let back = records::read_all(&storage, *p).await;
        assert_eq!(back.records.len() as i64, *end);
    }
    let after = storage
        .append(parts[0], &records::make_batch(&[b"after".to_vec()], 3))
        .await;
    assert!(matches!(after, Err(AppendError::Fenced)), "{after:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fence_flushes_hundreds_of_partitions_volume_mode() {
    fence_round(WalMode::Volume).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fence_flushes_hundreds_of_partitions_object_mode() {
    fence_round(WalMode::Object).await;
}
