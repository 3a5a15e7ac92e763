//! The storage engine: partitions with an in-memory tail, a WAL for
//! durability, and object storage plus a committed index for everything else.
//!
//! Interface (all that the Kafka layer uses): [`Storage::append`] returns once
//! the batches are durable; [`Storage::read`] serves from the tail or from
//! objects; [`Storage::flush`] uploads and commits everything durable;
//! [`Storage::open`] recovers. See `docs/storage.md` for the formats and the
//! durability argument.

pub mod cache;
pub mod compactor;
pub mod objects;
pub mod partition;
pub mod producer;
mod read;
pub mod uploader;
pub mod wal;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use floe_controller::model::{IndexCommit, IndexEntry, ObjectMeta, PartitionId, ProducerSnapshot};
use tokio::sync::{watch, Notify};

use crate::protocol::batch::{self, BatchError};
use cache::BlockCache;
use objects::Objects;
use partition::{Assigned, Partition};
use producer::SequenceCheck;
use wal::{Wal, WalRecord};

/// How long a newly opened partition's appends upload at once (object mode).
const EAGER_AFTER_OPEN: Duration = Duration::from_secs(2);

/// Where producers are acknowledged: see `docs/storage.md`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum WalMode {
    /// Local WAL volume, acknowledged after fsync (group commit).
    Volume,
    /// No local state: acknowledged after the object PUT and index commit.
    Object,
}

#[derive(Debug, Clone)]
pub struct StorageConfig {
    pub wal_mode: WalMode,
    pub wal_dir: PathBuf,
    pub wal_segment_bytes: u64,
    pub broker_id: i32,
    /// Upload once this many bytes are pending...
    pub upload_bytes: usize,
    /// ...or once the oldest pending data is this old.
    pub upload_interval: Duration,
    /// Committed bytes each partition keeps in memory for hot readers.
    pub hot_tail_bytes: usize,
    /// Capacity of the object-range cache for catch-up readers.
    pub cache_bytes: usize,
    /// Appends wait while this many bytes are not yet in object storage.
    pub max_pending_bytes: usize,
}

/// The committed index, as the engine needs it (the controller implements it).
pub trait ObjectIndex: Send + Sync + 'static {
    /// Commit an object and its entries atomically. Blocking.
    fn commit(&self, object: ObjectMeta, entries: Vec<IndexCommit>) -> Result<(), CommitError>;
    /// The entry containing `offset`.
    fn entry_at(&self, partition: PartitionId, offset: i64) -> Option<IndexEntry>;
    /// The first entry whose max timestamp reaches `ts`.
    fn entry_for_timestamp(&self, partition: PartitionId, ts: i64) -> Option<IndexEntry>;
    /// The entry holding the partition's largest timestamp.
    fn entry_with_max_timestamp(&self, partition: PartitionId) -> Option<IndexEntry>;
    /// The partition's committed entries from its log start, in offset order.
    fn entries(&self, partition: PartitionId) -> Vec<IndexEntry>;
    /// The partition's log start offset, or `None` if it no longer exists.
    fn log_start(&self, partition: PartitionId) -> Option<i64>;
    /// The partition's retention limits (topic configs).
    fn retention(&self, partition: PartitionId) -> compactor::Retention;
    /// Raise the log start; returns objects no entry names any more. Blocking.
    fn trim(&self, partition: PartitionId, log_start: i64) -> Result<Vec<String>, String>;
    /// Swap a run of entries for one entry in a new object, if the run is
    /// unchanged; returns released objects. Blocking.
    fn replace(
        &self,
        partition: PartitionId,
        replaced: Vec<IndexEntry>,
        replacement: IndexEntry,
        object: ObjectMeta,
    ) -> Result<Vec<String>, String>;
}

/// Why an index commit failed.
#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    /// This broker no longer leads the partition (or it was deleted): its
    /// uncommitted data can never be committed, so the partition is dropped
    /// here and its waiting producers are told to find the new leader.
    #[error("partition {partition:?} is no longer led here: {reason}")]
    LeadershipLost {
        partition: PartitionId,
        reason: String,
    },
    /// Anything else (the controller unreachable, ...): retried.
    #[error("{0}")]
    Failed(String),
}

/// What the engine needs to open a partition.
#[derive(Debug, Clone, PartialEq)]
pub struct PartitionMeta {
    pub leader_epoch: i32,
    pub log_start_offset: i64,
    pub committed_end: i64,
    pub producers: Vec<ProducerSnapshot>,
}

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error(transparent)]
    Wal(#[from] wal::WalError),
    #[error("cannot recover partition {partition:?} from the WAL: {reason}")]
    Replay {
        partition: PartitionId,
        reason: String,
    },
    #[error(transparent)]
    Objects(#[from] objects::ObjectsError),
}

/// Why an append was refused; mapped to a Kafka error code per partition.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    #[error("unknown partition")]
    UnknownPartition,
    #[error("invalid record batch: {0}")]
    InvalidBatch(#[from] BatchError),
    #[error("partition is fenced: leadership moved")]
    Fenced,
    #[error("out of order sequence: expected {expected}, got {got}")]
    OutOfOrderSequence { expected: i32, got: i32 },
    #[error("producer epoch {got} is older than {current}")]
    StaleProducerEpoch { current: i16, got: i16 },
    #[error("unknown producer id")]
    UnknownProducer,
    #[error("the write-ahead log failed: {0}")]
    Storage(String),
    #[error("storage is shutting down")]
    ShuttingDown,
}

#[derive(Debug, thiserror::Error)]
pub enum FenceError {
    #[error("{behind} fenced partitions were not uploaded within {timeout:?}; the object store or the WAL is failing, and their data stays in the WAL")]
    FlushTimedOut { behind: usize, timeout: Duration },
}

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("unknown partition")]
    UnknownPartition,
    #[error("offset {offset} is out of range [{log_start}, {high_watermark}]")]
    OffsetOutOfRange {
        offset: i64,
        log_start: i64,
        high_watermark: i64,
    },
    #[error("object read failed: {0}")]
    Objects(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    pub base_offset: i64,
    pub log_start_offset: i64,
    pub duplicate: bool,
}

/// An append whose offsets are assigned; [`PendingAppend::durable`] waits
/// until it is durable (WAL fsync, or upload and index commit).
pub struct PendingAppend {
    partition: Arc<Partition>,
    base: i64,
    end: i64,
    duplicate: bool,
    /// `volume` mode, new data: the WAL write's outcome.
    wal_outcome: Option<tokio::sync::oneshot::Receiver<Result<(), String>>>,
}

impl PendingAppend {
    pub async fn durable(self) -> Result<Appended, AppendError> {
        let p = self.partition;
        if let Some(outcome) = self.wal_outcome {
            match outcome.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(AppendError::Storage(e)),
                Err(_) => return Err(AppendError::Storage("WAL completion task stopped".into())),
            }
        } else {
            // Object mode, or a retried batch: wait until `end` is durable.
            let mut hw = p.hw.subscribe();
            loop {
                if *hw.borrow_and_update() >= self.end {
                    break;
                }
                // A fenced partition still uploads what it accepted (fence
                // flushes), so keep waiting; a removed one never will.
                if p.lock().removed {
                    return Err(AppendError::UnknownPartition);
                }
                if hw.changed().await.is_err() {
                    return Err(AppendError::ShuttingDown);
                }
            }
        }
        let log_start = p.lock().log_start;
        Ok(Appended {
            base_offset: self.base,
            log_start_offset: log_start,
            duplicate: self.duplicate,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Watermarks {
    pub log_start: i64,
    pub high_watermark: i64,
    pub leader_epoch: i32,
}

pub struct Storage {
    cfg: StorageConfig,
    objects: Objects,
    index: Arc<dyn ObjectIndex>,
    wal: Option<Wal>,
    partitions: RwLock<HashMap<PartitionId, Arc<Partition>>>,
    cache: BlockCache,
    /// Bytes appended but not yet committed to object storage.
    pending_bytes: AtomicUsize,
    /// Wakes the uploader (size threshold, flush requests).
    upload_wake: Arc<Notify>,
    /// Bumped after every upload round; flush waits on it.
    uploaded: watch::Sender<u64>,
    shutting_down: AtomicBool,
    /// Set by flush and fence: upload now, whatever the size.
    flush_requested: AtomicBool,
    /// A weak handle to itself, for background work it spawns (read-ahead).
    me: Weak<Storage>,
}

impl Storage {
    /// Recover the WAL, open the given partitions and start the uploader.
    pub async fn open(
        cfg: StorageConfig,
        objects: Objects,
        index: Arc<dyn ObjectIndex>,
        partitions: Vec<(PartitionId, PartitionMeta)>,
    ) -> Result<Arc<Storage>, StorageError> {
        let mut map: HashMap<PartitionId, Arc<Partition>> = partitions
            .into_iter()
            .map(|(id, m)| {
                let p = Partition::new(
                    id,
                    m.leader_epoch,
                    m.log_start_offset,
                    m.committed_end,
                    m.producers,
                );
                (id, Arc::new(p))
            })
            .collect();
        let mut pending = 0usize;
        let wal = match cfg.wal_mode {
            WalMode::Object => None,
            WalMode::Volume => {
                let dir = cfg.wal_dir.clone();
                let seg = cfg.wal_segment_bytes;
                let (wal, records) = tokio::task::spawn_blocking(move || Wal::open(&dir, seg))
                    .await
                    .map_err(|e| {
                        StorageError::Wal(wal::WalError::Write {
                            path: cfg.wal_dir.clone(),
                            source: std::io::Error::other(e.to_string()),
                        })
                    })??;
                let found = records.len();
                pending += replay(&mut map, records)?;
                tracing::info!(
                    wal_records = found,
                    replayed_bytes = pending,
                    partitions = map.len(),
                    "recovered the WAL: records not yet in object storage are served again and will be uploaded"
                );
                Some(wal)
            }
        };
        let storage = Arc::new_cyclic(|me| Storage {
            me: me.clone(),
            cache: BlockCache::new(cfg.cache_bytes),
            cfg,
            objects,
            index,
            wal,
            partitions: RwLock::new(map),
            pending_bytes: AtomicUsize::new(pending),
            upload_wake: Arc::new(Notify::new()),
            uploaded: watch::channel(0).0,
            shutting_down: AtomicBool::new(false),
            flush_requested: AtomicBool::new(false),
        });
        tokio::spawn(uploader::run(Arc::downgrade(&storage)));
        Ok(storage)
    }

    pub fn config(&self) -> &StorageConfig {
        &self.cfg
    }

    pub fn objects(&self) -> &Objects {
        &self.objects
    }

    fn partition(&self, id: PartitionId) -> Option<Arc<Partition>> {
        self.partitions
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&id)
            .cloned()
    }

    /// Open a partition (topic created, or leadership gained). Idempotent.
    pub fn open_partition(&self, id: PartitionId, meta: PartitionMeta) {
        let mut map = self.partitions.write().unwrap_or_else(|e| e.into_inner());
        map.entry(id).or_insert_with(|| {
            let mut p = Partition::new(
                id,
                meta.leader_epoch,
                meta.log_start_offset,
                meta.committed_end,
                meta.producers,
            );
            p.eager_until = Some(std::time::Instant::now() + EAGER_AFTER_OPEN);
            Arc::new(p)
        });
    }

    /// Forget a partition (topic deleted). Its un-uploaded data is dropped.
    pub fn remove_partition(&self, id: PartitionId) {
        let removed = self
            .partitions
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id);
        if let Some(p) = removed {
            let mut s = p.lock();
            s.fenced = true;
            s.removed = true;
            p.hw.send_modify(|_| {});
            let dropped = s.next_offset.saturating_sub(s.committed_end);
            if dropped > 0 {
                let bytes: usize = s
                    .pending_upload(i64::MAX)
                    .iter()
                    .map(|b| b.bytes.len())
                    .sum();
                self.pending_bytes.fetch_sub(
                    bytes.min(self.pending_bytes.load(Ordering::Relaxed)),
                    Ordering::Relaxed,
                );
            }
        }
    }

    /// Each open partition's bytes appended and read since it was opened.
    pub fn traffic(&self) -> Vec<(PartitionId, u64, u64)> {
        self.partitions
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .map(|p| {
                (
                    p.id,
                    p.bytes_in.load(Ordering::Relaxed),
                    p.bytes_out.load(Ordering::Relaxed),
                )
            })
            .collect()
    }

    pub fn partition_ids(&self) -> Vec<PartitionId> {
        self.partitions
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .copied()
            .collect()
    }

    /// Append a produce request's record set; returns once durable.
    pub async fn append(&self, id: PartitionId, records: &[u8]) -> Result<Appended, AppendError> {
        self.begin_append(id, records).await?.durable().await
    }

    /// The ordered half of an append: validates the batches, waits for
    /// upload room, assigns offsets (and submits them to the WAL) under the
    /// partition lock. Appends begun in some order get offsets in that
    /// order; waiting for durability ([`PendingAppend::durable`]) can then
    /// overlap with later appends. Dropping the result does not undo it.
    pub async fn begin_append(
        &self,
        id: PartitionId,
        records: &[u8],
    ) -> Result<PendingAppend, AppendError> {
        if self.shutting_down.load(Ordering::Relaxed) {
            return Err(AppendError::ShuttingDown);
        }
        let headers = batch::validate_all(records)?;
        let p = self.partition(id).ok_or(AppendError::UnknownPartition)?;
        self.wait_for_upload_room().await;
        let (assigned, durable) = {
            let mut s = p.lock();
            let assigned = s.assign(records, &headers);
            // Submit to the WAL under the partition lock so WAL order is offset order.
            let durable = match (&assigned, &self.wal) {
                (Assigned::Appended { batches, .. }, Some(wal)) => {
                    let recs = batches
                        .iter()
                        .map(|b| WalRecord {
                            partition: id,
                            base_offset: b.base,
                            end_offset: b.end,
                            leader_epoch: s.leader_epoch,
                            batch: b.bytes.clone(),
                        })
                        .collect();
                    Some(wal.submit(recs))
                }
                _ => None,
            };
            (assigned, durable)
        };
        let (base, end, duplicate) = match assigned {
            Assigned::Appended { base, end, batches } => {
                let bytes: usize = batches.iter().map(|b| b.bytes.len()).sum();
                p.bytes_in.fetch_add(bytes as u64, Ordering::Relaxed);
                let total = self.pending_bytes.fetch_add(bytes, Ordering::Relaxed) + bytes;
                let eager = self.wal.is_none()
                    && p.eager_until.is_some_and(|t| std::time::Instant::now() < t);
                if eager {
                    self.flush_requested.store(true, Ordering::Release);
                }
                if total >= self.cfg.upload_bytes || eager {
                    self.upload_wake.notify_one();
                }
                (base, end, false)
            }
            Assigned::Duplicate { base, end } => (base, end, true),
            Assigned::Fenced => return Err(AppendError::Fenced),
            Assigned::Rejected(check) => {
                return Err(match check {
                    SequenceCheck::OutOfOrder { expected, got } => {
                        AppendError::OutOfOrderSequence { expected, got }
                    }
                    SequenceCheck::StaleEpoch { current, got } => {
                        AppendError::StaleProducerEpoch { current, got }
                    }
                    _ => AppendError::UnknownProducer,
                })
            }
        };
        // The watermark is raised by a task of its own, so a caller that
        // gives up (timeout, disconnect) cannot leave the partition's high
        // watermark behind data that is already durable.
        let wal_outcome = durable.map(|rx| {
            let part = p.clone();
            let (done, outcome) = tokio::sync::oneshot::channel();
            tokio::spawn(async move {
                let result = match rx.await {
                    Ok(Ok(())) => {
                        part.mark_durable(end);
                        Ok(())
                    }
                    Ok(Err(e)) => Err(e.to_string()),
                    Err(_) => Err("WAL writer stopped".to_owned()),
                };
                let _ = done.send(result);
            });
            outcome
        });
        Ok(PendingAppend {
            partition: p,
            base,
            end,
            duplicate,
            wal_outcome,
        })
    }

    async fn wait_for_upload_room(&self) {
        while self.pending_bytes.load(Ordering::Relaxed) > self.cfg.max_pending_bytes {
            let mut rx = self.uploaded.subscribe();
            self.upload_wake.notify_one();
            let _ = tokio::time::timeout(Duration::from_millis(100), rx.changed()).await;
        }
    }

    /// Bytes appended but not yet committed to object storage.
    pub fn pending_bytes(&self) -> usize {
        self.pending_bytes.load(Ordering::Relaxed)
    }

    pub fn watermarks(&self, id: PartitionId) -> Option<Watermarks> {
        let p = self.partition(id)?;
        let s = p.lock();
        Some(Watermarks {
            log_start: s.log_start,
            high_watermark: s.durable_end,
            leader_epoch: s.leader_epoch,
        })
    }

    /// A receiver of the partition's high watermark, for long polls.
    pub fn subscribe(&self, id: PartitionId) -> Option<watch::Receiver<i64>> {
        self.partition(id).map(|p| p.hw.subscribe())
    }

    /// Raise a partition's log start offset (after the controller committed it).
    pub fn set_log_start(&self, id: PartitionId, offset: i64) {
        if let Some(p) = self.partition(id) {
            let mut s = p.lock();
            s.log_start = s.log_start.max(offset);
        }
    }

    /// Upload and commit everything that is durable now; returns when done.
    pub async fn flush(&self) {
        let target: Vec<(Arc<Partition>, i64)> = self
            .partitions
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .map(|p| {
                let end = p.lock().durable_end;
                (p.clone(), end)
            })
            .collect();
        loop {
            let done = {
                let live = self.partitions.read().unwrap_or_else(|e| e.into_inner());
                target
                    .iter()
                    .all(|(p, end)| p.lock().committed_end >= *end || !live.contains_key(&p.id))
            };
            if done {
                return;
            }
            let mut rx = self.uploaded.subscribe();
            self.flush_requested.store(true, Ordering::Release);
            self.upload_wake.notify_one();
            let _ = tokio::time::timeout(Duration::from_millis(200), rx.changed()).await;
        }
    }

    /// Fence partitions and flush them: appends are refused from now on
    /// (clients get NOT_LEADER_OR_FOLLOWER and refresh metadata), in-flight
    /// appends finish, and everything appended is uploaded and committed in
    /// shared objects. Returns each partition's committed end offset — the
    /// offset a new leader continues from. Unknown partitions are skipped.
    pub async fn fence(
        &self,
        ids: &[PartitionId],
        timeout: Duration,
    ) -> Result<Vec<(PartitionId, i64)>, FenceError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let fenced: Vec<(Arc<Partition>, i64)> = ids
            .iter()
            .filter_map(|id| self.partition(*id))
            .map(|p| {
                let end = {
                    let mut s = p.lock();
                    s.fenced = true;
                    s.next_offset
                };
                // Wake appenders waiting for durability so they see the fence.
                p.hw.send_modify(|_| {});
                (p, end)
            })
            .collect();
        loop {
            let done = fenced.iter().all(|(p, end)| p.lock().committed_end >= *end);
            if done {
                break;
            }
            if tokio::time::Instant::now() >= deadline {
                let behind = fenced
                    .iter()
                    .filter(|(p, end)| p.lock().committed_end < *end)
                    .count();
                return Err(FenceError::FlushTimedOut { behind, timeout });
            }
            let mut rx = self.uploaded.subscribe();
            self.flush_requested.store(true, Ordering::Release);
            self.upload_wake.notify_one();
            let _ = tokio::time::timeout(Duration::from_millis(50), rx.changed()).await;
        }
        Ok(fenced.into_iter().map(|(p, end)| (p.id, end)).collect())
    }

    /// Stop accepting appends and upload everything (graceful shutdown).
    pub async fn shutdown(&self) {
        self.shutting_down.store(true, Ordering::Relaxed);
        self.flush().await;
    }
}

/// Re-apply WAL records above each partition's committed end. Returns the
/// number of bytes now pending upload.
fn replay(
    map: &mut HashMap<PartitionId, Arc<Partition>>,
    records: Vec<WalRecord>,
) -> Result<usize, StorageError> {
    let mut pending = 0;
    let mut skipped_unknown = 0usize;
    for r in records {
        let Some(p) = map.get(&r.partition) else {
            // The topic was deleted after this was logged.
            skipped_unknown += 1;
            continue;
        };
        let mut s = p.lock();
        if r.end_offset <= s.committed_end {
            continue;
        }
        if r.base_offset < s.committed_end {
            return Err(StorageError::Replay {
                partition: r.partition,
                reason: format!(
                    "WAL batch {}..{} straddles the committed end {}",
                    r.base_offset, r.end_offset, s.committed_end
                ),
            });
        }
        pending += r.batch.len();
        s.replay(r.batch).map_err(|reason| StorageError::Replay {
            partition: r.partition,
            reason,
        })?;
        let end = s.next_offset;
        s.durable_end = end;
        p.hw.send_replace(end);
    }
    if skipped_unknown > 0 {
        tracing::info!(skipped_unknown, "skipped WAL records of deleted partitions");
    }
    Ok(pending)
}
