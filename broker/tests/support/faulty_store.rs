//! A fault-injecting object store for the storage integration tests (an
//! `InMemory` store behind a wrapper that fails PUTs, lands PUTs but reports
//! an error, adds latency or CPU work, holds background PUTs, and truncates or
//! corrupts ranged GET bodies), and a fixture that opens the engine over it
//! with the real metadata store as the index.
#![allow(dead_code)]

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use floe_broker::cluster::Cluster;
use floe_broker::storage::objects::Objects;
use floe_broker::storage::{Storage, StorageConfig};
use floe_controller::model::{Command, PartitionId};
use futures::stream::BoxStream;
use futures::StreamExt;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, GetResultPayload, ListResult, MultipartUpload, ObjectMeta,
    ObjectStore, PutMultipartOptions, PutOptions, PutPayload, PutResult,
};

pub type BoxFut<'a, T> = Pin<Box<dyn Future<Output = object_store::Result<T>> + Send + 'a>>;

#[derive(Debug, Default)]
pub struct Faults {
    /// Fail this many PUTs without writing anything.
    pub fail_puts: u32,
    /// Write this many PUTs, then report an error ("succeeded but errored").
    pub ghost_puts: u32,
    /// Delay every PUT by this much.
    pub put_delay: Duration,
    /// Block the calling thread this long in every PUT, as building a
    /// request does (S3 hashes the whole body to sign it).
    pub put_busy: Duration,
    /// Return only the first half of this many ranged GET bodies.
    pub truncate_gets: u32,
    /// Flip one bit in the middle of this many ranged GET bodies (a bad
    /// read: the stored object is intact).
    pub corrupt_gets: u32,
    /// PUT attempts seen (data objects only; probes excluded).
    pub data_puts: u32,
    /// Hold PUTs made from background PUT threads until this is cleared, as
    /// a machine whose CPUs never idle would.
    pub hold_idle_puts: bool,
    /// PUTs seen from background PUT threads, and the scheduling policy of
    /// the thread of each.
    pub idle_puts: Vec<Option<i32>>,
    /// Background PUTs held right now.
    pub held: u32,
}

/// Counts a held PUT until its future ends or is dropped.
pub struct Held<'a>(&'a FaultyStore);

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.0.faults().held -= 1;
    }
}

/// An `InMemory` store with injectable faults.
#[derive(Debug, Default)]
pub struct FaultyStore {
    pub inner: InMemory,
    pub faults: Mutex<Faults>,
}

impl fmt::Display for FaultyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FaultyStore({})", self.inner)
    }
}

impl FaultyStore {
    pub fn faults(&self) -> std::sync::MutexGuard<'_, Faults> {
        self.faults.lock().unwrap()
    }
}

pub fn injected(what: &str) -> object_store::Error {
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
pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub cluster: Arc<Cluster>,
    pub store: Arc<FaultyStore>,
    pub ids: Vec<PartitionId>,
}

impl Fixture {
    pub async fn new(partitions: i32) -> Fixture {
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

    pub fn wal_dir(&self, name: &str) -> std::path::PathBuf {
        self.dir.path().join(name)
    }

    pub async fn open(&self, cfg: StorageConfig) -> Arc<Storage> {
        Storage::open(
            cfg,
            Objects::new(self.store.clone(), ""),
            self.cluster.clone(),
            self.cluster.partition_metas(),
        )
        .await
        .unwrap()
    }

    pub fn committed_objects(&self) -> Vec<String> {
        self.cluster.read(|s| s.objects.keys().cloned().collect())
    }

    pub async fn stored_objects(&self) -> Vec<String> {
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
pub async fn close(storage: Arc<Storage>) {
    let weak = Arc::downgrade(&storage);
    drop(storage);
    within(Duration::from_secs(10), "the old engine to stop", async {
        while weak.upgrade().is_some() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
}

pub async fn within<T>(limit: Duration, what: &str, f: impl Future<Output = T>) -> T {
    tokio::time::timeout(limit, f)
        .await
        .unwrap_or_else(|_| panic!("timed out after {limit:?} waiting for {what}"))
}

/// Append `count` one-to-three-record batches round-robin over `ids`;
/// returns the values in append order per partition.
pub async fn append_some(
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
        let batch = crate::records::make_batch(&values, 1_000 + i as i64);
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

pub async fn assert_log(
    storage: &Storage,
    ids: &[PartitionId],
    expected: &[Vec<Bytes>],
) -> Vec<Bytes> {
    let mut logs = Vec::new();
    for (id, want) in ids.iter().zip(expected) {
        let back = crate::records::read_all(storage, *id).await;
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
