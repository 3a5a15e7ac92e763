//! `LogStore`: the durable Raft log and vote of one controller.
//!
//! Contract: `append` returns, and reports the entries flushed, only after
//! they are written and fsynced; `save_vote` returns once durable;
//! `truncate` and `purge` are durable before they return. `save_committed`
//! is kept in memory only: openraft does not need it for safety (a restarted
//! node learns the commit point from the leader, and a leader commits its
//! log again on election), and persisting it would cost fsyncs on every
//! commit. Readers
//! are served from memory (the entries after the last purge), so they never
//! wait for disk. After any failed write the store refuses every later write:
//! the file may hold a partial record, and openraft stops the node on a
//! storage error anyway; a restart recovers from disk.
//!
//! On disk, in the store's directory:
//! - `raft-log`: entries after the last purge, one CRC-framed JSON record
//!   each (the framing of the single-node store, `store/log.rs`), followed
//!   by zeros: the file is zero-filled a few MiB ahead of its records, so an
//!   append overwrites blocks the file already has and its `fdatasync`
//!   commits no size change to the filesystem journal (about half the cost
//!   of an appending one). A zero length never starts a valid record, so the
//!   records end where the zeros begin. A torn final record (never reported
//!   flushed) is cut off on open, interior corruption refuses to open;
//! - `raft-vote.json`, `raft-purged.json`: replaced
//!   atomically. The purge point is made durable before the log is rewritten
//!   without the purged prefix, so a crash in between only leaves records
//!   that open skips.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::ops::RangeBounds;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{AnyError, Entry, LogId, OptionalSend, RaftLogReader, StorageIOError, Vote};

use super::files::{blocking, create_dir, invalid, read_json, write_atomic};
use super::{NodeId, StorageError, TypeConfig};
use crate::store::log::{
    fill_ahead, fill_zeros, frame, frames, next_valid_frame, only_zeros, ZERO_AHEAD, ZERO_LOW,
};
use crate::store::snapshot::sync_parent;

const LOG_FILE: &str = "raft-log";
const LOG_TMP_FILE: &str = "raft-log.tmp";
const VOTE_FILE: &str = "raft-vote.json";
const PURGED_FILE: &str = "raft-purged.json";

/// The durable Raft log. Cloning shares the store (a clone is the log reader).
#[derive(Debug, Clone)]
pub struct LogStore {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    dir: PathBuf,
    /// What readers see; locked only briefly, never across I/O.
    cache: Mutex<Cache>,
    /// Locked only inside blocking tasks.
    file: Mutex<LogFile>,
}

#[derive(Debug, Default)]
struct Cache {
    entries: BTreeMap<u64, Entry<TypeConfig>>,
    last_purged: Option<LogId<NodeId>>,
    vote: Option<Vote<NodeId>>,
    committed: Option<LogId<NodeId>>,
}

#[derive(Debug)]
struct LogFile {
    /// Written at `len`, never past `filled` without filling first.
    file: File,
    len: u64,
    /// The file's size: everything from `len` up to here is zeros.
    filled: u64,
    /// Byte offset of each record in the file, by log index.
    offsets: BTreeMap<u64, u64>,
    /// Why writes stopped, once they have.
    failed: Option<String>,
}

fn io_error(e: impl std::fmt::Display) -> AnyError {
    AnyError::error(e)
}

impl LogStore {
    /// Opens (creating if needed) the log in `dir`.
    pub async fn open(dir: PathBuf) -> Result<LogStore, StorageError> {
        blocking(move || open_blocking(dir), StorageIOError::read_logs).await
    }

    fn cache(&self) -> MutexGuard<'_, Cache> {
        // A panic while holding this lock cannot leave the map half-edited in
        // a way a reader could observe wrongly: every edit is one call.
        self.shared.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` on the log file in a blocking task, unless writes stopped.
    async fn with_file<T: Send + 'static>(
        &self,
        what: fn(AnyError) -> StorageIOError<NodeId>,
        f: impl FnOnce(&Path, &mut LogFile) -> std::io::Result<T> + Send + 'static,
    ) -> Result<T, StorageError> {
        let shared = self.shared.clone();
        blocking(
            move || {
                let mut file = shared.file.lock().unwrap_or_else(|p| p.into_inner());
                if let Some(reason) = &file.failed {
                    return Err(std::io::Error::other(format!(
                        "the Raft log stopped after an earlier failure: {reason}; \
                         restart the controller, which recovers from disk"
                    )));
                }
                f(&shared.dir, &mut file).inspect_err(|e| {
                    file.failed = Some(e.to_string());
                    tracing::error!(error = %e, dir = %shared.dir.display(), "Raft log write failed");
                })
            },
            what,
        )
        .await
    }

    async fn write_small(
        &self,
        name: &'static str,
        bytes: Vec<u8>,
        what: fn(AnyError) -> StorageIOError<NodeId>,
    ) -> Result<(), StorageError> {
        let dir = self.shared.dir.clone();
        blocking(move || write_atomic(&dir.join(name), &bytes), what).await
    }
}

fn open_blocking(dir: PathBuf) -> std::io::Result<LogStore> {
    create_dir(&dir)?;
    let last_purged: Option<LogId<NodeId>> = read_json(&dir.join(PURGED_FILE))?;
    let vote: Option<Vote<NodeId>> = read_json(&dir.join(VOTE_FILE))?;
    let committed: Option<LogId<NodeId>> = None;

    let path = dir.join(LOG_FILE);
    let created = !path.exists();
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)?;
    if created {
        sync_parent(&path)?;
    }
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    let (found, valid_len) = frames(&bytes);
    if valid_len < bytes.len() {
        if let Some(next) = next_valid_frame(&bytes, valid_len + 1) {
            return Err(invalid(format!(
                "the Raft log {} is corrupt at byte {valid_len} (a valid record follows at byte \
                 {next}); restore the directory from a backup, or replace this controller by a \
                 new member that catches up from the leader",
                path.display()
            )));
        }
    }
    let mut entries = BTreeMap::new();
    let mut offsets = BTreeMap::new();
    let purged_index = last_purged.map(|id| id.index);
    let mut previous: Option<u64> = None;
    for f in found {
        let entry: Entry<TypeConfig> = serde_json::from_slice(f.payload).map_err(|e| {
            invalid(format!(
                "record at byte {} of {} cannot be decoded: {e}; was it written by a newer Floe?",
                f.offset,
                path.display()
            ))
        })?;
        let index = entry.log_id.index;
        if previous.is_some_and(|p| p + 1 != index) {
            return Err(invalid(format!(
                "record at byte {} of {} has index {index} after {previous:?}: entries are \
                 missing; restore the directory from a backup",
                f.offset,
                path.display()
            )));
        }
        previous = Some(index);
        offsets.insert(index, f.offset);
        if purged_index.is_none_or(|p| index > p) {
            entries.insert(index, entry);
        }
    }
    let mut filled = bytes.len() as u64;
    if !only_zeros(&bytes[valid_len..]) {
        tracing::warn!(path = %path.display(), offset = valid_len, "cutting a torn, never-flushed record off the Raft log");
        file.set_len(valid_len as u64)
            .and_then(|()| file.sync_all())?;
        filled = valid_len as u64;
    }
    tracing::info!(dir = %dir.display(), entries = entries.len(), ?last_purged, "Raft log opened");
    Ok(LogStore {
        shared: Arc::new(Shared {
            dir,
            cache: Mutex::new(Cache {
                entries,
                last_purged,
                vote,
                committed,
            }),
            file: Mutex::new({
                let mut log = LogFile {
                    file,
                    len: valid_len as u64,
                    filled,
                    offsets,
                    failed: None,
                };
                log.fill_ahead(ZERO_LOW)?;
                log
            }),
        }),
    })
}

impl LogFile {
    /// Make sure zeros follow the records for at least `need` bytes.
    fn fill_ahead(&mut self, need: u64) -> std::io::Result<()> {
        fill_ahead(&self.file, &mut self.filled, self.len, need)
    }

    /// Write `records` after the last one and make them durable.
    fn append(&mut self, records: &[u8]) -> std::io::Result<()> {
        self.fill_ahead(records.len() as u64)?;
        self.file.write_all_at(records, self.len)?;
        self.file.sync_data()
    }
}

/// Rewrites the log without the records at or below `upto`: the surviving
/// tail goes to a temporary file that replaces the log once durable.
fn drop_prefix(dir: &Path, log: &mut LogFile, upto: u64) -> std::io::Result<()> {
    let Some(&cut) = log
        .offsets
        .range(upto + 1..)
        .next()
        .map(|(_, offset)| offset)
    else {
        // Nothing survives: the log becomes empty.
        log.file.set_len(0)?;
        log.file.sync_all()?;
        log.len = 0;
        log.filled = 0;
        log.offsets.clear();
        return log.fill_ahead(ZERO_LOW);
    };
    if cut == 0 {
        return Ok(());
    }
    let path = dir.join(LOG_FILE);
    let tmp = dir.join(LOG_TMP_FILE);
    let bytes = fs::read(&path)?;
    let tail = bytes
        .get(cut as usize..log.len as usize)
        .ok_or_else(|| invalid(format!("{} is shorter than its records", path.display())))?;
    let mut out = File::create(&tmp)?;
    out.write_all(tail)?;
    // The zeros ahead come along, so the next append need not wait for them.
    let filled = tail.len() as u64 + ZERO_AHEAD;
    fill_zeros(&out, tail.len() as u64, filled)?;
    drop(out);
    fs::rename(&tmp, &path)?;
    sync_parent(&path)?;
    log.file = OpenOptions::new().read(true).write(true).open(&path)?;
    log.filled = filled;
    log.offsets = log
        .offsets
        .split_off(&(upto + 1))
        .into_iter()
        .map(|(i, o)| (i, o - cut))
        .collect();
    log.len -= cut;
    Ok(())
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, StorageError> {
        Ok(self
            .cache()
            .entries
            .range(range)
            .map(|(_, e)| e.clone())
            .collect())
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let cache = self.cache();
        let last_log_id = cache
            .entries
            .values()
            .next_back()
            .map(|e| e.log_id)
            .or(cache.last_purged);
        Ok(LogState {
            last_purged_log_id: cache.last_purged,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError> {
        let json =
            serde_json::to_vec(vote).map_err(|e| StorageIOError::write_vote(AnyError::new(&e)))?;
        self.write_small(VOTE_FILE, json, StorageIOError::write_vote)
            .await?;
        self.cache().vote = Some(*vote);
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError> {
        Ok(self.cache().vote)
    }

    async fn save_committed(
        &mut self,
        committed: Option<LogId<NodeId>>,
    ) -> Result<(), StorageError> {
        self.cache().committed = committed;
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<NodeId>>, StorageError> {
        Ok(self.cache().committed)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<Entry<TypeConfig>> = entries.into_iter().collect();
        let mut records = Vec::new();
        let mut sizes = Vec::with_capacity(entries.len());
        for entry in &entries {
            let json = serde_json::to_vec(entry)
                .map_err(|e| StorageIOError::write_log_entry(entry.log_id, AnyError::new(&e)))?;
            let record = frame(&[&json]).ok_or_else(|| {
                StorageIOError::write_log_entry(
                    entry.log_id,
                    io_error("entry larger than a log record holds (4 GiB)"),
                )
            })?;
            sizes.push((entry.log_id.index, record.len() as u64));
            records.extend_from_slice(&record);
        }
        let running_low = self
            .with_file(StorageIOError::write_logs, move |_, log| {
                log.append(&records)?;
                for (index, size) in sizes {
                    log.offsets.insert(index, log.len);
                    log.len += size;
                }
                Ok(log.filled < log.len + ZERO_LOW)
            })
            .await?;
        {
            let mut cache = self.cache();
            for entry in entries {
                cache.entries.insert(entry.log_id.index, entry);
            }
        }
        callback.log_io_completed(Ok(()));
        // Refill the zeros ahead once they run low, after the flush is
        // reported, so that no append waits for it.
        if running_low {
            let store = self.clone();
            tokio::spawn(async move {
                let _ = store
                    .with_file(StorageIOError::write_logs, |_, log| {
                        log.fill_ahead(ZERO_LOW)
                    })
                    .await;
            });
        }
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError> {
        let index = log_id.index;
        self.with_file(StorageIOError::write_logs, move |_, log| {
            if let Some(&offset) = log.offsets.get(&index) {
                // Cut, not zeroed: a crash halfway through zeroing would
                // leave valid-looking records of the removed entries.
                log.file.set_len(offset)?;
                log.file.sync_all()?;
                log.len = offset;
                log.filled = offset;
                log.offsets.split_off(&index);
                log.fill_ahead(ZERO_LOW)?;
            }
            Ok(())
        })
        .await?;
        self.cache().entries.split_off(&index);
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError> {
        let json = serde_json::to_vec(&log_id)
            .map_err(|e| StorageIOError::write_logs(AnyError::new(&e)))?;
        self.write_small(PURGED_FILE, json, StorageIOError::write_logs)
            .await?;
        {
            let mut cache = self.cache();
            cache.last_purged = Some(log_id);
            let kept = cache.entries.split_off(&(log_id.index + 1));
            cache.entries = kept;
        }
        self.with_file(StorageIOError::write_logs, move |dir, log| {
            drop_prefix(dir, log, log_id.index)
        })
        .await
    }
}
