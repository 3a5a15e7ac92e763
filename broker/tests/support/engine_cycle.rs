//! The storage engine's cycle against one object store, shared by the
//! object-store integration tests: append across partitions, upload, check
//! the store lists what the index names, read back byte-identical, then read
//! everything again from a fresh engine with an empty WAL; plus the store
//! operations the engine relies on besides (conditional put, orphan sweep).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use floe_broker::cluster::Cluster;
use floe_broker::gc::Gc;
use floe_broker::storage::objects::Objects;
use floe_broker::storage::{Storage, WalMode};
use floe_controller::model::{Command as MetaCommand, PartitionId};

use super::records;
use super::servers::within;

/// What [`append_and_upload`] left behind: the metadata, the partitions and
/// each partition's log as `Storage::read` returned it.
pub struct Uploaded {
    pub cluster: Arc<Cluster>,
    pub ids: Vec<PartitionId>,
    pub logs: Vec<Bytes>,
    /// The object keys the index names (relative to the store's prefix).
    pub committed: Vec<String>,
}

/// Create `topic` (3 partitions) in metadata under `dir`, append `batches`
/// batches across its partitions in `volume` mode through `objects`, flush,
/// and check that the store lists every object the index names and that the
/// records read back are the ones appended.
pub async fn append_and_upload(
    objects: &Objects,
    dir: &Path,
    topic: &str,
    batches: usize,
) -> Uploaded {
    let cluster = Arc::new(Cluster::open(&dir.join("metadata")).unwrap());
    cluster
        .propose(MetaCommand::CreateTopic {
            name: topic.into(),
            id: uuid::Uuid::new_v4(),
            partitions: 3,
            configs: Default::default(),
            leader: 1,
        })
        .await
        .unwrap();
    let t = cluster.topic(topic).unwrap();
    let ids: Vec<PartitionId> = (0..3).map(|p| t.partition_id(p).unwrap()).collect();
    let storage = within(
        "open",
        Storage::open(
            records::small_config(WalMode::Volume, dir.join("wal")),
            objects.clone(),
            cluster.clone(),
            cluster.partition_metas(),
        ),
    )
    .await
    .unwrap();
    let mut expected: Vec<Vec<Bytes>> = vec![Vec::new(); ids.len()];
    for i in 0..batches {
        let p = i % ids.len();
        let values: Vec<Vec<u8>> = (0..1 + i % 4)
            .map(|k| format!("{topic}-{i}-{k}-{}", "q".repeat(i * 13 % 700)).into_bytes())
            .collect();
        let a = within(
            "append",
            storage.append(ids[p], &records::make_batch(&values, i as i64)),
        )
        .await
        .unwrap();
        assert!(!a.duplicate);
        expected[p].extend(values.into_iter().map(Bytes::from));
    }
    within("flush", storage.flush()).await;

    let committed: Vec<String> = cluster.read(|s| s.objects.keys().cloned().collect());
    assert!(
        committed.len() > 1,
        "expected several objects, got {committed:?}"
    );
    let listed = listed_keys(objects, "data").await;
    for k in &committed {
        assert!(
            listed.contains(k),
            "committed object {k} is not in the store: {listed:?}"
        );
    }

    let mut logs = Vec::new();
    for (id, want) in ids.iter().zip(&expected) {
        let back = within("read", records::read_all(&storage, *id)).await;
        let got: Vec<Bytes> = back.records.iter().map(|(_, v)| v.clone()).collect();
        assert!(
            got == *want,
            "{id:?}: records differ from what was appended"
        );
        logs.push(back.bytes);
    }
    within("shutdown", storage.shutdown()).await;
    Uploaded {
        cluster,
        ids,
        logs,
        committed,
    }
}

/// The keys `objects` lists under `dir`.
pub async fn listed_keys(objects: &Objects, dir: &str) -> Vec<String> {
    within("list", objects.list(dir))
        .await
        .unwrap_or_else(|e| panic!("list {dir}: {e}"))
        .into_iter()
        .map(|(k, _)| k)
        .collect()
}

/// Open a fresh engine in `mode` with the new, empty WAL directory `wal`,
/// check every partition reads back byte-identical to `up.logs` through
/// `objects`, and return it (still open) for more checks.
pub async fn read_back_cold(
    objects: &Objects,
    up: &Uploaded,
    mode: WalMode,
    wal: PathBuf,
    what: &str,
) -> Arc<Storage> {
    assert!(!wal.exists(), "{} must be a new, empty WAL", wal.display());
    let cold = within(
        "open a cold engine",
        Storage::open(
            records::small_config(mode, wal),
            objects.clone(),
            up.cluster.clone(),
            up.cluster.partition_metas(),
        ),
    )
    .await
    .unwrap();
    for (id, before) in up.ids.iter().zip(&up.logs) {
        let back = within("read back", records::read_all(&cold, *id)).await;
        assert!(
            back.bytes == *before,
            "{id:?} ({what}, {mode:?}): bytes read back differ ({} vs {} bytes)",
            back.bytes.len(),
            before.len()
        );
    }
    cold
}

/// In `object` mode an append is acknowledged only after its conditional PUT
/// and index commit: append one record to the first partition of a cold
/// engine and read it back.
pub async fn object_mode_append(cold: &Storage, up: &Uploaded) {
    let id = up.ids[0];
    let hw = cold.watermarks(id).unwrap().high_watermark;
    let a = within(
        "object-mode append",
        cold.append(id, &records::make_batch(&[b"object-mode".to_vec()], 1)),
    )
    .await
    .unwrap();
    assert_eq!(a.base_offset, hw);
    let back = within("read", records::read_all(cold, id)).await;
    assert_eq!(
        back.records.last().unwrap().1,
        Bytes::from_static(b"object-mode")
    );
}

/// `put_new` never replaces an existing object (the engine's uploads and
/// object-WAL slots rely on put-if-absent), and a range read returns exactly
/// the range.
pub async fn put_if_absent_keeps_first(objects: &Objects) {
    let first = Bytes::from_static(b"first body, kept");
    let second = Bytes::from_static(b"SECOND BODY, LOST");
    let second = second.slice(..first.len());
    within("put_new", objects.put_new("cond/one", first.clone()))
        .await
        .expect("first put_new");
    within("put_new again", objects.put_new("cond/one", second))
        .await
        .expect("a put_new that finds the key present reports success");
    let got = within("get", objects.get_range("cond/one", 0..first.len() as u64))
        .await
        .unwrap();
    assert_eq!(got, first, "the second put_new overwrote the object");
    let mid = within("get range", objects.get_range("cond/one", 6..10))
        .await
        .unwrap();
    assert_eq!(mid, first.slice(6..10));
    within("delete", objects.delete("cond/one")).await.unwrap();
}

/// The orphan sweep (list with modification times, then delete) removes a
/// data object that no index entry names and keeps every committed one.
pub async fn sweep_removes_orphan(objects: &Objects, up: &Uploaded, orphan: &str) {
    assert!(
        listed_keys(objects, "data")
            .await
            .iter()
            .any(|k| k == orphan),
        "the orphan {orphan} is not listed"
    );
    // Older than a zero grace period by at least a clock tick.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let deleted = within(
        "sweep",
        Gc::new(objects.clone(), Duration::ZERO).sweep(&up.cluster),
    )
    .await
    .expect("sweep");
    assert_eq!(deleted, 1, "the sweep should delete exactly the orphan");
    let listed = listed_keys(objects, "data").await;
    assert!(
        !listed.iter().any(|k| k == orphan),
        "the orphan survived the sweep: {listed:?}"
    );
    for k in &up.committed {
        assert!(listed.contains(k), "the sweep deleted committed {k}");
    }
}

/// The rest of a store's cycle after [`append_and_upload`]: fresh engines
/// with no WAL read everything back in both WAL modes, the `object`-mode one
/// acknowledges a new append (a conditional PUT and an index commit), and
/// the orphan sweep removes an unindexed object and keeps the committed ones.
pub async fn cold_reads_append_and_sweep(objects: &Objects, up: Uploaded, dir: &Path, what: &str) {
    let cold = read_back_cold(objects, &up, WalMode::Volume, dir.join("empty-wal"), what).await;
    within("shutdown", cold.shutdown()).await;
    let cold = read_back_cold(objects, &up, WalMode::Object, dir.join("object-wal"), what).await;
    object_mode_append(&cold, &up).await;
    within("shutdown", cold.shutdown()).await;
    drop(cold);

    let up = Uploaded {
        committed: up.cluster.read(|s| s.objects.keys().cloned().collect()),
        ..up
    };
    let orphan = format!("data/orphan-{}", uuid::Uuid::new_v4().simple());
    within(
        "put orphan",
        objects.put_new(&orphan, Bytes::from_static(b"x")),
    )
    .await
    .unwrap();
    sweep_removes_orphan(objects, &up, &orphan).await;
}
