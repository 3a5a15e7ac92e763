//! The storage engine over a fault-injecting object store (an `InMemory`
//! store behind a wrapper that fails PUTs, lands PUTs but reports an error,
//! adds latency, and truncates or corrupts ranged GET bodies), with the real metadata
//! store as the index.
//!
//! Proves: `volume` mode keeps acknowledging while PUTs fail and the data
//! survives a restart from the WAL; `object` mode acknowledges only after a
//! PUT succeeds; a PUT that landed but reported an error leaves an orphan,
//! never a duplicate; slow PUTs batch many appends per object; a truncated
//! GET body is an error, never short data served (or cached) as the log; a
//! corrupt one is read again, and if it stays corrupt it is an error, never
//! served, cached or compacted;
//! a PUT busy building its request leaves the runtime free.

#[path = "support/faulty_store.rs"]
mod faulty_store;
#[path = "support/records.rs"]
mod records;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use faulty_store::{append_some, assert_log, close, within, FaultyStore, Fixture};
use floe_broker::storage::objects::Objects;
use floe_broker::storage::WalMode;
use floe_controller::model::Command;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn volume_mode_acks_while_puts_fail_and_recovers_from_the_wal() {
    let fx = Fixture::new(2).await;
    fx.store.faults().fail_puts = u32::MAX;
    let storage = fx
        .open(records::small_config(WalMode::Volume, fx.wal_dir("wal")))
        .await;
    // Acknowledged from the WAL alone, well past the upload threshold.
    let expected = append_some(&storage, &fx.ids, 120, "a").await;
    assert!(fx.store.faults().data_puts > 0, "the uploader never tried");
    assert!(fx.stored_objects().await.is_empty());
    assert!(fx.committed_objects().is_empty());
    assert_log(&storage, &fx.ids, &expected).await;

    // Restart while the store is still down: the WAL alone brings it all back.
    close(storage).await;
    let storage = fx
        .open(records::small_config(WalMode::Volume, fx.wal_dir("wal")))
        .await;
    let before = assert_log(&storage, &fx.ids, &expected).await;

    // The store heals: everything is uploaded, and a fresh engine with an
    // empty WAL reads the same bytes from objects alone.
    fx.store.faults().fail_puts = 0;
    within(Duration::from_secs(15), "flush", storage.flush()).await;
    close(storage).await;
    let cold = fx
        .open(records::small_config(WalMode::Volume, fx.wal_dir("empty")))
        .await;
    let after = assert_log(&cold, &fx.ids, &expected).await;
    assert_eq!(before, after);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn object_mode_acks_only_after_a_put_succeeds() {
    let fx = Fixture::new(1).await;
    fx.store.faults().fail_puts = u32::MAX;
    let storage = fx
        .open(records::small_config(WalMode::Object, fx.wal_dir("unused")))
        .await;
    let id = fx.ids[0];
    let batch = records::make_batch(&[b"only-after-put".to_vec()], 7);
    let pending = tokio::spawn({
        let storage = storage.clone();
        async move { storage.append(id, &batch).await }
    });
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(
        !pending.is_finished(),
        "object mode acknowledged an append while every PUT failed"
    );
    assert!(
        fx.store.faults().data_puts >= 2,
        "the uploader is not retrying"
    );
    assert_eq!(storage.watermarks(id).unwrap().high_watermark, 0);
    assert!(storage.read(id, 0, 1 << 20).await.unwrap().is_empty());

    fx.store.faults().fail_puts = 0;
    let a = within(Duration::from_secs(10), "the ack after healing", pending)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(a.base_offset, 0);
    assert_eq!(fx.committed_objects().len(), 1);
    assert_eq!(fx.stored_objects().await, fx.committed_objects());
    let expected = vec![vec![Bytes::from_static(b"only-after-put")]];
    assert_log(&storage, &fx.ids, &expected).await;
}

async fn ghost_puts(mode: WalMode) {
    let fx = Fixture::new(2).await;
    // Every other upload lands but reports an error.
    fx.store.faults().ghost_puts = 3;
    let storage = fx
        .open(records::small_config(mode, fx.wal_dir("wal")))
        .await;
    let expected = append_some(&storage, &fx.ids, 60, "g").await;
    within(Duration::from_secs(15), "flush", storage.flush()).await;
    assert_eq!(fx.store.faults().ghost_puts, 0, "not all ghosts were hit");
    let stored = fx.stored_objects().await;
    let committed = fx.committed_objects();
    assert!(
        committed.iter().all(|k| stored.contains(k)),
        "a committed object is missing from the store"
    );
    assert_eq!(
        stored.len(),
        committed.len() + 3,
        "each ghost PUT should leave exactly one orphan (never indexed)"
    );
    assert_log(&storage, &fx.ids, &expected).await;
    close(storage).await;
    // After a restart with no WAL, the objects alone hold each record once.
    let cold = fx
        .open(records::small_config(mode, fx.wal_dir("empty")))
        .await;
    assert_log(&cold, &fx.ids, &expected).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn puts_that_land_but_report_errors_leave_orphans_not_duplicates_volume() {
    ghost_puts(WalMode::Volume).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn puts_that_land_but_report_errors_leave_orphans_not_duplicates_object() {
    ghost_puts(WalMode::Object).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retrying_a_landed_put_under_its_key_succeeds_without_overwriting() {
    let store = Arc::new(FaultyStore::default());
    let objects = Objects::new(store.clone(), "pfx");
    store.faults().ghost_puts = 1;
    let first = Bytes::from_static(b"first attempt");
    assert!(objects.put_new("data/k", first.clone()).await.is_err());
    // The retry finds its own key present: success, and the object is unchanged.
    objects
        .put_new("data/k", Bytes::from_static(b"second attempt"))
        .await
        .expect("AlreadyExists on a retry means an earlier attempt landed");
    assert_eq!(
        objects
            .get_range("data/k", 0..first.len() as u64)
            .await
            .unwrap(),
        first
    );
    // Keys keep their `/` structure under the prefix, so listings find them.
    let listed: Vec<String> = objects
        .list("data")
        .await
        .unwrap()
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(listed, vec!["data/k".to_owned()]);
    objects.probe().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_puts_batch_many_appends_per_object() {
    let fx = Fixture::new(2).await;
    fx.store.faults().put_delay = Duration::from_millis(150);
    let storage = fx
        .open(records::small_config(WalMode::Object, fx.wal_dir("unused")))
        .await;
    let mut tasks = Vec::new();
    for w in 0..40 {
        let storage = storage.clone();
        let id = fx.ids[w % 2];
        tasks.push(tokio::spawn(async move {
            let batch = records::make_batch(&[format!("w{w}").into_bytes()], w as i64);
            storage.append(id, &batch).await.unwrap()
        }));
    }
    let started = std::time::Instant::now();
    for t in tasks {
        within(Duration::from_secs(10), "an append", t)
            .await
            .unwrap();
    }
    assert!(started.elapsed() >= Duration::from_millis(100));
    let puts = fx.store.faults().data_puts;
    assert!(puts <= 10, "40 concurrent appends took {puts} PUTs");
    let total: i64 = fx
        .ids
        .iter()
        .map(|id| storage.watermarks(*id).unwrap().high_watermark)
        .sum();
    assert_eq!(total, 40);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_range_bodies_are_errors_not_short_logs() {
    let fx = Fixture::new(1).await;
    let storage = fx
        .open(records::small_config(WalMode::Volume, fx.wal_dir("wal")))
        .await;
    let expected = append_some(&storage, &fx.ids, 30, "t").await;
    within(Duration::from_secs(15), "flush", storage.flush()).await;
    close(storage).await;
    // An empty WAL and no hot tail: every read goes to the object store.
    let cold = fx
        .open(records::small_config(WalMode::Volume, fx.wal_dir("empty")))
        .await;
    let id = fx.ids[0];
    let hw = cold.watermarks(id).unwrap().high_watermark;
    fx.store.faults().truncate_gets = 1;
    match cold.read(id, 0, 1 << 20).await {
        Err(_) => {}
        Ok(bytes) => {
            // Acceptable only if it is whole, valid data starting at offset 0.
            let h = floe_broker::protocol::batch::validate(&bytes)
                .unwrap_or_else(|e| panic!("a truncated GET was served as the log: {e}"));
            assert_eq!(h.base_offset, 0);
            let batches = floe_broker::protocol::batch::iter(&bytes).count();
            let whole: usize = floe_broker::protocol::batch::iter(&bytes)
                .map(|(h, _)| h.total_len)
                .sum();
            assert_eq!(whole, bytes.len(), "a partial batch was served");
            assert!(batches > 0 && hw > 0);
        }
    }
    // Nothing truncated may stay cached: the next reads return the whole log.
    assert_log(&cold, &fx.ids, &expected).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_range_bodies_are_read_again_never_served_cached_or_compacted() {
    let fx = Fixture::new(1).await;
    let storage = fx
        .open(records::small_config(WalMode::Volume, fx.wal_dir("wal")))
        .await;
    // Three objects, so compaction has a run of entries to merge.
    let mut expected = vec![Vec::new(); fx.ids.len()];
    for round in 0..3 {
        let more = append_some(&storage, &fx.ids, 15, &format!("c{round}")).await;
        for (all, new) in expected.iter_mut().zip(more) {
            all.extend(new);
        }
        within(Duration::from_secs(15), "flush", storage.flush()).await;
    }
    close(storage).await;
    let cold = || fx.open(records::small_config(WalMode::Volume, fx.wal_dir("empty")));
    let id = fx.ids[0];

    // One bad read: the engine reads the range again and serves it whole.
    let engine = cold().await;
    fx.store.faults().corrupt_gets = 1;
    assert_log(&engine, &fx.ids, &expected).await;
    assert_eq!(fx.store.faults().corrupt_gets, 0, "the fault was not hit");
    close(engine).await;

    // Every read bad: an error (KAFKA_STORAGE_ERROR to a consumer), never
    // the flipped bytes; and nothing bad stays cached.
    let engine = cold().await;
    fx.store.faults().corrupt_gets = u32::MAX;
    match engine.read(id, 0, 1 << 20).await {
        Err(e) => assert!(e.to_string().contains("CRC"), "{e}"),
        Ok(bytes) => panic!("corrupt data was served: {} bytes", bytes.len()),
    }
    // Compaction reads the same way: it skips the run rather than copying
    // corrupt bytes into a new object and releasing the good ones. (The
    // records carry 1970 timestamps: keep retention out of it.)
    fx.cluster
        .propose(Command::AlterTopicConfigs {
            name: "t".into(),
            set: [("retention.ms".to_string(), "-1".to_string())].into(),
            delete: Vec::new(),
        })
        .await
        .unwrap();
    let objects_before = fx.committed_objects();
    let m = engine
        .maintain(floe_broker::storage::compactor::CompactionConfig {
            small_entry_bytes: u64::MAX,
            target_bytes: u64::MAX,
        })
        .await
        .unwrap();
    assert_eq!(m.compacted_runs, 0, "a corrupt run was compacted");
    assert_eq!(fx.committed_objects(), objects_before);
    fx.store.faults().corrupt_gets = 0;
    assert_log(&engine, &fx.ids, &expected).await;
    // The same pass with good reads compacts (so the one above had a run
    // to refuse), and the log is unchanged.
    let m = engine
        .maintain(floe_broker::storage::compactor::CompactionConfig {
            small_entry_bytes: u64::MAX,
            target_bytes: u64::MAX,
        })
        .await
        .unwrap();
    assert!(m.compacted_runs > 0, "nothing to compact: {m:?}");
    assert_log(&engine, &fx.ids, &expected).await;
}

/// Building a PUT can be long CPU work on the calling thread (S3 hashes the
/// whole body to sign it); it must not hold a runtime thread, where the
/// appends and acks run. On a one-thread runtime, a ticker keeps ticking
/// through a PUT whose request takes 300 ms of blocking work.
#[tokio::test(flavor = "current_thread")]
async fn a_put_busy_building_its_request_leaves_the_runtime_free() {
    use std::sync::atomic::{AtomicU32, Ordering};
    let store = Arc::new(FaultyStore::default());
    store.faults().put_busy = Duration::from_millis(300);
    let objects = Objects::new(store.clone(), "");
    let ticks = Arc::new(AtomicU32::new(0));
    let ticker = tokio::spawn({
        let ticks = ticks.clone();
        async move {
            loop {
                tokio::time::sleep(Duration::from_millis(5)).await;
                ticks.fetch_add(1, Ordering::Relaxed);
            }
        }
    });
    objects
        .put_new("data/busy.floe", Bytes::from_static(b"abc"))
        .await
        .unwrap();
    ticker.abort();
    let n = ticks.load(Ordering::Relaxed);
    assert!(
        n >= 10,
        "the runtime ticked {n} times (every 5 ms) during a 300 ms PUT"
    );
    let back = objects.get_range("data/busy.floe", 0..3).await.unwrap();
    assert_eq!(&back[..], b"abc");
}
