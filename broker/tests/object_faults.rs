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

#[path = "support/records.rs"]
mod records;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use floe_broker::cluster::Cluster;
use floe_broker::storage::objects::Objects;
use floe_broker::storage::{Storage, StorageConfig, WalMode};
use floe_controller::model::{Command, PartitionId};
use futures::stream::BoxStream;
use futures::StreamExt;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, GetResultPayload, ListResult, MultipartUpload, ObjectMeta,
    ObjectStore, PutMultipartOptions, PutOptions, PutPayload, PutResult,
};

type BoxFut<'a, T> = Pin<Box<dyn Future<Output = object_store::Result<T>> + Send + 'a>>;

#[derive(Debug, Default)]
struct Faults {
    /// Fail this many PUTs without writing anything.
    fail_puts: u32,
    /// Write this many PUTs, then report an error ("succeeded but errored").
    ghost_puts: u32,
    /// Delay every PUT by this much.
    put_delay: Duration,
    /// Block the calling thread this long in every PUT, as building a
    /// request does (S3 hashes the whole body to sign it).
    put_busy: Duration,
    /// Return only the first half of this many ranged GET bodies.
    truncate_gets: u32,
    /// Flip one bit in the middle of this many ranged GET bodies (a bad
    /// read: the stored object is intact).
    corrupt_gets: u32,
    /// PUT attempts seen (data objects only; probes excluded).
    data_puts: u32,
    /// Hold PUTs made from background PUT threads until this is cleared, as
    /// a machine whose CPUs never idle would.
    hold_idle_puts: bool,
    /// PUTs seen from background PUT threads, and the scheduling policy of
    /// the thread of each.
    idle_puts: Vec<Option<i32>>,
    /// Background PUTs held right now.
    held: u32,
}

/// Counts a held PUT until its future ends or is dropped.
struct Held<'a>(&'a FaultyStore);

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.0.faults().held -= 1;
    }
}

/// An `InMemory` store with injectable faults.
#[derive(Debug, Default)]
struct FaultyStore {
    inner: InMemory,
    faults: Mutex<Faults>,
}

impl fmt::Display for FaultyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FaultyStore({})", self.inner)
    }
}

impl FaultyStore {
    fn faults(&self) -> std::sync::MutexGuard<'_, Faults> {
        self.faults.lock().unwrap()
    }
}

fn injected(what: &str) -> object_store::Error {
    object_store::Error::Generic {
        store: "FaultyStore",
        source: format!("injected fault: {what}").into(),
    }
}

// `ObjectStore` is an `async_trait`; this is its expansion, written out so the
// test needs no extra dependency.
impl ObjectStore for FaultyStore {
    fn put_opts<'a, 'b, 'c>(
        &'a self,
        location: &'b Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> BoxFut<'c, PutResult>
    where
        'a: 'c,
        'b: 'c,
        Self: 'c,
    {
        Box::pin(async move {
            if std::thread::current().name() == Some("floe-put-idle") {
                self.faults()
                    .idle_puts
                    .push(floe_broker::sched::current_policy());
                self.faults().held += 1;
                let _held = Held(self);
                while self.faults().hold_idle_puts {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
            let (fail, ghost, delay) = {
                let mut f = self.faults();
                if location.as_ref().starts_with("data/") {
                    f.data_puts += 1;
                }
                let fail = f.fail_puts > 0;
                let ghost = !fail && f.ghost_puts > 0;
                if fail {
                    f.fail_puts -= 1;
                } else if ghost {
                    f.ghost_puts -= 1;
                }
                (fail, ghost, f.put_delay)
            };
            let busy = self.faults().put_busy;
            if !busy.is_zero() {
                std::thread::sleep(busy);
            }
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            if fail {
                return Err(injected("PUT refused"));
            }
            let r = self.inner.put_opts(location, payload, opts).await?;
            if ghost {
                return Err(injected("PUT landed but the response was lost"));
            }
            Ok(r)
        })
    }

    fn put_multipart_opts<'a, 'b, 'c>(
        &'a self,
        location: &'b Path,
        opts: PutMultipartOptions,
    ) -> BoxFut<'c, Box<dyn MultipartUpload>>
    where
        'a: 'c,
        'b: 'c,
        Self: 'c,
    {
        Box::pin(async move { self.inner.put_multipart_opts(location, opts).await })
    }

    fn get_opts<'a, 'b, 'c>(
        &'a self,
        location: &'b Path,
        options: GetOptions,
    ) -> BoxFut<'c, GetResult>
    where
        'a: 'c,
        'b: 'c,
        Self: 'c,
    {
        Box::pin(async move {
            let ranged = options.range.is_some() && !options.head;
            let r = self.inner.get_opts(location, options).await?;
            let (truncate, corrupt) = if ranged {
                let mut f = self.faults();
                let t = f.truncate_gets > 0;
                if t {
                    f.truncate_gets -= 1;
                }
                let c = !t && f.corrupt_gets > 0;
                if c {
                    f.corrupt_gets -= 1;
                }
                (t, c)
            } else {
                (false, false)
            };
            if !truncate && !corrupt {
                return Ok(r);
            }
            // Keep the metadata (and the claimed range); cut the body short,
            // as a proxy or a buggy server closing the stream early would.
            let GetResult {
                payload,
                meta,
                range,
                attributes,
                extensions,
            } = r;
            let body = GetResult {
                payload,
                meta: meta.clone(),
                range: range.clone(),
                attributes: attributes.clone(),
                extensions: extensions.clone(),
            }
            .bytes()
            .await?;
            let served = if truncate {
                body.slice(..body.len() / 2)
            } else {
                let mut flipped = body.to_vec();
                let at = flipped.len() / 2;
                flipped[at] ^= 0x10;
                Bytes::from(flipped)
            };
            Ok(GetResult {
                payload: GetResultPayload::Stream(
                    futures::stream::once(async move { Ok(served) }).boxed(),
                ),
                meta,
                range,
                attributes,
                extensions,
            })
        })
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    fn list_with_delimiter<'a, 'b, 'c>(&'a self, prefix: Option<&'b Path>) -> BoxFut<'c, ListResult>
    where
        'a: 'c,
        'b: 'c,
        Self: 'c,
    {
        Box::pin(async move { self.inner.list_with_delimiter(prefix).await })
    }

    fn copy_opts<'a, 'b, 'c, 'd>(
        &'a self,
        from: &'b Path,
        to: &'c Path,
        options: CopyOptions,
    ) -> BoxFut<'d, ()>
    where
        'a: 'd,
        'b: 'd,
        'c: 'd,
        Self: 'd,
    {
        Box::pin(async move { self.inner.copy_opts(from, to, options).await })
    }
}

/// A metadata store with one topic, plus the store, in a temp directory.
struct Fixture {
    dir: tempfile::TempDir,
    cluster: Arc<Cluster>,
    store: Arc<FaultyStore>,
    ids: Vec<PartitionId>,
}

impl Fixture {
    async fn new(partitions: i32) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let cluster = Arc::new(Cluster::open(&dir.path().join("metadata")).unwrap());
        cluster
            .propose(Command::CreateTopic {
                name: "t".into(),
                id: uuid::Uuid::new_v4(),
                partitions,
                configs: Default::default(),
                leader: 1,
            })
            .await
            .unwrap();
        let topic = cluster.topic("t").unwrap();
        let ids = (0..partitions)
            .map(|p| topic.partition_id(p).unwrap())
            .collect();
        Fixture {
            dir,
            cluster,
            store: Arc::new(FaultyStore::default()),
            ids,
        }
    }

    fn wal_dir(&self, name: &str) -> std::path::PathBuf {
        self.dir.path().join(name)
    }

    async fn open(&self, cfg: StorageConfig) -> Arc<Storage> {
        Storage::open(
            cfg,
            Objects::new(self.store.clone(), ""),
            self.cluster.clone(),
            self.cluster.partition_metas(),
        )
        .await
        .unwrap()
    }

    fn committed_objects(&self) -> Vec<String> {
        self.cluster.read(|s| s.objects.keys().cloned().collect())
    }

    async fn stored_objects(&self) -> Vec<String> {
        Objects::new(self.store.clone(), "")
            .list("data")
            .await
            .unwrap()
            .into_iter()
            .map(|(k, _)| k)
            .collect()
    }
}

/// Drop an engine and wait until its background uploader has let go of it,
/// so a successor never shares the WAL directory or the index with it.
async fn close(storage: Arc<Storage>) {
    let weak = Arc::downgrade(&storage);
    drop(storage);
    within(Duration::from_secs(10), "the old engine to stop", async {
        while weak.upgrade().is_some() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
}

async fn within<T>(limit: Duration, what: &str, f: impl Future<Output = T>) -> T {
    tokio::time::timeout(limit, f)
        .await
        .unwrap_or_else(|_| panic!("timed out after {limit:?} waiting for {what}"))
}

/// Append `count` one-to-three-record batches round-robin over `ids`;
/// returns the values in append order per partition.
async fn append_some(
    storage: &Storage,
    ids: &[PartitionId],
    count: usize,
    tag: &str,
) -> Vec<Vec<Bytes>> {
    let mut expected = vec![Vec::new(); ids.len()];
    for i in 0..count {
        let p = i % ids.len();
        let values: Vec<Vec<u8>> = (0..1 + i % 3)
            .map(|k| format!("{tag}-{i}-{k}-{}", "x".repeat(i * 7 % 300)).into_bytes())
            .collect();
        let batch = records::make_batch(&values, 1_000 + i as i64);
        let a = within(
            Duration::from_secs(10),
            "an append",
            storage.append(ids[p], &batch),
        )
        .await
        .unwrap();
        assert!(!a.duplicate);
        expected[p].extend(values.into_iter().map(Bytes::from));
    }
    expected
}

async fn assert_log(storage: &Storage, ids: &[PartitionId], expected: &[Vec<Bytes>]) -> Vec<Bytes> {
    let mut logs = Vec::new();
    for (id, want) in ids.iter().zip(expected) {
        let back = records::read_all(storage, *id).await;
        let got: Vec<Bytes> = back.records.into_iter().map(|(_, v)| v).collect();
        assert_eq!(got.len(), want.len(), "{id:?}: record count");
        assert!(
            got == *want,
            "{id:?}: records differ from what was appended"
        );
        logs.push(back.bytes);
    }
    logs
}

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

/// A background PUT runs on a thread of the idle scheduling class; while it
/// runs, other background PUTs go at normal priority; once its caller says
/// it is urgent, the same PUT is issued at normal priority and the starved
/// one is dropped, which frees the background thread for the next PUT.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_starved_background_put_is_issued_again_when_urgent() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let store = Arc::new(FaultyStore::default());
    store.faults().hold_idle_puts = true;
    let objects = Objects::new(store.clone(), "");
    let urgent = Arc::new(AtomicBool::new(false));
    let first = vec![Bytes::from_static(b"first "), Bytes::from_static(b"copy")];
    let starved = tokio::spawn({
        let (objects, urgent, first) = (objects.clone(), urgent.clone(), first.clone());
        async move {
            objects
                .put_new_parts_background("data/bg.floe", first, || urgent.load(Ordering::Relaxed))
                .await
        }
    });
    within(
        Duration::from_secs(10),
        "the background PUT to start",
        async {
            while store.faults().idle_puts.is_empty() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        },
    )
    .await;
    #[cfg(target_os = "linux")]
    assert_eq!(store.faults().idle_puts, vec![Some(libc::SCHED_IDLE)]);

    // Held: it does not land by itself...
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!starved.is_finished());
    assert!(objects.get_range("data/bg.floe", 0..4).await.is_err());
    // ...and meanwhile another background PUT runs at normal priority.
    within(
        Duration::from_secs(10),
        "a second background PUT",
        objects
            .put_new_parts_background("data/other.floe", vec![Bytes::from_static(b"x")], || false),
    )
    .await
    .unwrap();
    assert_eq!(store.faults().idle_puts.len(), 1);

    // Urgent: issued again at normal priority, and it lands.
    urgent.store(true, Ordering::Relaxed);
    within(Duration::from_secs(10), "the urgent PUT", starved)
        .await
        .unwrap()
        .unwrap();
    let stats = &objects.stats;
    assert_eq!(stats.background_puts.load(Ordering::Relaxed), 1);
    assert_eq!(stats.escalated_puts.load(Ordering::Relaxed), 1);
    assert_eq!(
        &objects.get_range("data/bg.floe", 0..10).await.unwrap()[..],
        b"first copy"
    );

    // The starved PUT is dropped, though the store still holds it.
    within(
        Duration::from_secs(10),
        "the starved PUT to be dropped",
        async {
            while store.faults().held > 0 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        },
    )
    .await;
    // The background thread is free for the next PUT.
    store.faults().hold_idle_puts = false;
    within(
        Duration::from_secs(10),
        "the background thread to be free",
        async {
            loop {
                objects
                    .put_new_parts_background(
                        "data/next.floe",
                        vec![Bytes::from_static(b"y")],
                        || false,
                    )
                    .await
                    .unwrap();
                if stats.background_puts.load(Ordering::Relaxed) == 2 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        },
    )
    .await;
    assert_eq!(
        &objects.get_range("data/bg.floe", 0..10).await.unwrap()[..],
        b"first copy"
    );
    assert_eq!(store.faults().idle_puts.len(), 2);
}

/// In `volume` mode uploads are background PUTs. One that never gets CPU
/// time holds back neither a flush (nor so a fence) nor, without one, the
/// data's upload beyond about an upload interval.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_starved_background_upload_holds_back_neither_a_flush_nor_the_interval() {
    use std::sync::atomic::Ordering;
    let fx = Fixture::new(2).await;
    fx.store.faults().hold_idle_puts = true;
    let mut cfg = records::small_config(WalMode::Volume, fx.wal_dir("wal"));
    // Only size starts an upload here, and half an interval is far away.
    cfg.upload_interval = Duration::from_secs(60);
    let storage = fx.open(cfg).await;
    let expected = append_some(&storage, &fx.ids, 60, "a").await;
    within(Duration::from_secs(10), "a background upload", async {
        while fx.store.faults().idle_puts.is_empty() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    assert!(fx.committed_objects().is_empty());
    let started = std::time::Instant::now();
    within(Duration::from_secs(10), "flush", storage.flush()).await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "a flush waited {:?} behind a starved upload",
        started.elapsed()
    );
    assert!(!fx.committed_objects().is_empty());
    let escalated = |s: &Storage| s.objects().stats.escalated_puts.load(Ordering::Relaxed);
    assert!(escalated(&storage) >= 1);
    close(storage).await;

    // Without a flush: half an interval after the round began, its data is
    // PUT at normal priority.
    let mut cfg = records::small_config(WalMode::Volume, fx.wal_dir("wal2"));
    cfg.upload_interval = Duration::from_millis(400);
    cfg.upload_bytes = 64 << 20;
    let before = fx.committed_objects().len();
    let storage = fx.open(cfg).await;
    let more = append_some(&storage, &fx.ids, 6, "b").await;
    within(Duration::from_secs(10), "the interval's upload", async {
        while fx.committed_objects().len() == before {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(escalated(&storage) >= 1);
    fx.store.faults().hold_idle_puts = false;
    within(Duration::from_secs(10), "flush", storage.flush()).await;
    close(storage).await;

    // Everything is in objects exactly once: a fresh engine with an empty
    // WAL reads both runs' records back.
    let cold = fx
        .open(records::small_config(WalMode::Volume, fx.wal_dir("empty")))
        .await;
    let all: Vec<Vec<Bytes>> = expected
        .into_iter()
        .zip(more)
        .map(|(mut a, b)| {
            a.extend(b);
            a
        })
        .collect();
    assert_log(&cold, &fx.ids, &all).await;
}
