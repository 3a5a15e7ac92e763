//! `LocalStore`: the durable single-node metadata store of the one-process
//! local mode. A Raft quorum takes its place in a cluster.
//!
//! Contract: a command's outcome is returned only after its log record is
//! fsynced, so an acknowledged command survives any crash; a refused command
//! is never logged. The state changes only through [`apply`], in log order.
//! After any failed write or fsync the store is poisoned: memory may be ahead
//! of disk and an fsync is never retried (its failure can drop dirty pages
//! for good), so every later call fails until the process restarts and
//! recovers from disk.
//!
//! The store is synchronous and blocks on fsync: async callers must call it
//! from `tokio::task::spawn_blocking`. One process at a time may open a
//! directory; nothing here locks it.
//!
//! On disk, in the store's directory:
//! - `log`: records appended since the last snapshot (framing in
//!   `store/log.rs`), then zeros: records are written over a zero-filled
//!   region so that each `fdatasync` skips the filesystem journal;
//! - `snapshot.json`: the state as of its `last_applied`, replaced atomically.
//!
//! Recovery loads the snapshot, then applies the log records after its
//! `last_applied`; older records are skipped, which is what makes a crash
//! between writing a snapshot and truncating the log harmless.

pub(crate) mod log;
pub(crate) mod snapshot;
#[cfg(test)]
mod tests;

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use crate::model::{apply, decide, ApplyError, Command, MetadataState, Outcome};

const LOG_FILE: &str = "log";
const SNAPSHOT_FILE: &str = "snapshot.json";
const SNAPSHOT_TMP_FILE: &str = "snapshot.json.tmp";

/// Why the store failed. `Apply` is a refused command (nothing changed); the
/// open-time variants name the file and byte offset at fault.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Apply(#[from] ApplyError),
    #[error(
        "cannot create the metadata directory {path}: {source}; check the path and its permissions"
    )]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read the metadata snapshot {path}: {source}")]
    ReadSnapshot {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "the metadata snapshot {path} cannot be decoded: {source}; it is damaged or was written \
         by another version of Floe: restore the directory from a backup"
    )]
    DecodeSnapshot {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error(
        "the metadata snapshot {path} has format version {version} but this Floe reads only \
         version {supported}; run the Floe version that wrote it"
    )]
    UnsupportedSnapshot {
        path: PathBuf,
        version: u32,
        supported: u32,
    },
    #[error(
        "cannot write the metadata snapshot {path}: {source}; the log still holds every command"
    )]
    WriteSnapshot {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot open or read the metadata log {path}: {source}")]
    ReadLog {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "the metadata log {path} is corrupt at byte {offset}: that record fails its checksum \
         but a valid record follows at byte {next_valid}, so this is not a torn final write. \
         Restore the directory from a backup; or, accepting the loss of every command from \
         byte {offset} on, truncate the file to {offset} bytes"
    )]
    CorruptLog {
        path: PathBuf,
        offset: u64,
        next_valid: u64,
    },
    #[error(
        "the record at byte {offset} of the metadata log {path} passes its checksum but cannot \
         be decoded: {source}; was it written by a newer Floe?"
    )]
    DecodeRecord {
        path: PathBuf,
        offset: u64,
        source: serde_json::Error,
    },
    #[error(
        "the record at byte {offset} of the metadata log {path} has index {found} where \
         {expected} was due: commands are missing or out of order; restore the directory \
         from a backup"
    )]
    LogGap {
        path: PathBuf,
        offset: u64,
        expected: u64,
        found: u64,
    },
    #[error(
        "replaying command {index} (byte {offset} of the metadata log {path}) failed: {source}; \
         the log was written under different rules: run the Floe version that wrote it"
    )]
    ReplayCommand {
        path: PathBuf,
        index: u64,
        offset: u64,
        source: ApplyError,
    },
    #[error("cannot cut the torn tail off the metadata log {path} at byte {offset}: {source}")]
    TruncateTornTail {
        path: PathBuf,
        offset: u64,
        source: std::io::Error,
    },
    #[error("command cannot be serialized for the log: {source}")]
    EncodeCommand { source: serde_json::Error },
    #[error("command is {len} bytes serialized, more than a log record holds; split it")]
    CommandTooLarge { len: usize },
    #[error("appending to the metadata log {path} failed: {source}; the store is poisoned: restart the process")]
    AppendLog {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "emptying the metadata log {path} after a snapshot failed: {source}; the store is \
         poisoned: restart the process"
    )]
    TruncateLog {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "the metadata store in {dir} stopped after an earlier failure ({reason}); its memory \
         may be ahead of its disk: restart the process, which recovers from disk"
    )]
    Poisoned { dir: PathBuf, reason: String },
}

/// Tuning for [`LocalStore`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreOptions {
    /// Snapshot and empty the log once it grows past this many bytes.
    pub snapshot_threshold: u64,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            snapshot_threshold: 64 * 1024 * 1024,
        }
    }
}

/// The durable single-node metadata store. `Send + Sync`; share it in an `Arc`.
#[derive(Debug)]
pub struct LocalStore {
    dir: PathBuf,
    log_path: PathBuf,
    options: StoreOptions,
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    state: MetadataState,
    /// Records end at `log_len`; zeros follow up to `log_filled`.
    log: File,
    log_len: u64,
    log_filled: u64,
    /// The log length at which to try the next snapshot; pushed back after a
    /// failed attempt so that a full disk does not make every command retry.
    next_snapshot_at: u64,
    /// Why the store stopped, once it has.
    poisoned: Option<String>,
}

impl LocalStore {
    /// Opens (creating if needed) the store in `dir` with default options.
    pub fn open(dir: &Path) -> Result<LocalStore, StoreError> {
        LocalStore::open_with(dir, StoreOptions::default())
    }

    /// Opens the store in `dir`: loads the snapshot, replays the log after it,
    /// and cuts off a torn final record (one that was never acknowledged).
    /// Refuses interior corruption and commands that no longer apply.
    pub fn open_with(dir: &Path, options: StoreOptions) -> Result<LocalStore, StoreError> {
        let created = !dir.exists();
        let create_error = |source| StoreError::CreateDir {
            path: dir.to_owned(),
            source,
        };
        fs::create_dir_all(dir).map_err(create_error)?;
        if created {
            snapshot::sync_parent(dir).map_err(create_error)?;
        }
        let tmp = dir.join(SNAPSHOT_TMP_FILE);
        match fs::remove_file(&tmp) {
            Err(e) if e.kind() != ErrorKind::NotFound => return Err(create_error(e)),
            _ => {}
        }

        let mut state = snapshot::load(&dir.join(SNAPSHOT_FILE))?.unwrap_or_default();
        let log_path = dir.join(LOG_FILE);
        let (log, log_len, log_filled) = replay(&log_path, &mut state)?;
        tracing::info!(
            dir = %dir.display(),
            last_applied = state.last_applied,
            log_bytes = log_len,
            "metadata store opened"
        );
        let store = LocalStore {
            dir: dir.to_owned(),
            log_path,
            inner: Mutex::new(Inner {
                state,
                log,
                log_len,
                log_filled,
                next_snapshot_at: options.snapshot_threshold,
                poisoned: None,
            }),
            options,
        };
        store.maybe_snapshot(&mut *store.lock()?);
        Ok(store)
    }

    /// The directory the store lives in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Applies `cmd` and returns its outcome once it is durable. A refused
    /// command returns [`StoreError::Apply`] and changes nothing.
    pub fn propose(&self, cmd: Command) -> Result<Outcome, StoreError> {
        let mut results = self.propose_batch(std::slice::from_ref(&cmd))?;
        results
            .pop()
            .unwrap_or_else(|| unreachable!("one result per command"))
    }

    /// Applies the commands in order with one log write and one fsync. The
    /// outer error means none of them is durable (and the store is
    /// poisoned, or was); otherwise each command has its own result, an
    /// `Err` being [`StoreError::Apply`] (or `EncodeCommand`/`CommandTooLarge`)
    /// for a command that was refused and not logged.
    pub fn propose_many(
        &self,
        cmds: Vec<Command>,
    ) -> Result<Vec<Result<Outcome, StoreError>>, StoreError> {
        self.propose_batch(&cmds)
    }

    /// Runs `f` on the current state.
    pub fn read<R>(&self, f: impl FnOnce(&MetadataState) -> R) -> Result<R, StoreError> {
        Ok(f(&self.lock()?.state))
    }

    /// Writes a snapshot and empties the log now, whatever the log's size.
    pub fn snapshot_now(&self) -> Result<(), StoreError> {
        self.snapshot(&mut *self.lock()?)
    }

    fn propose_batch(
        &self,
        cmds: &[Command],
    ) -> Result<Vec<Result<Outcome, StoreError>>, StoreError> {
        let mut inner = self.lock()?;
        let mut records = Vec::new();
        let mut results = Vec::with_capacity(cmds.len());
        for cmd in cmds {
            let index = inner.state.last_applied + 1;
            // Placement decided now and logged with the command, so that a
            // restart under another version replays the same placement.
            let decided = decide(&inner.state, cmd);
            let cmd = decided.as_ref().unwrap_or(cmd);
            // Everything fallible but the write happens before `apply`, so a
            // refused command leaves both memory and disk untouched.
            let record = match serde_json::to_vec(cmd) {
                Err(source) => Err(StoreError::EncodeCommand { source }),
                Ok(json) => {
                    log::encode(index, &json).ok_or(StoreError::CommandTooLarge { len: json.len() })
                }
            };
            let result = record.and_then(|record| {
                let outcome = apply(&mut inner.state, index, cmd)?;
                records.extend_from_slice(&record);
                Ok(outcome)
            });
            results.push(result);
        }
        if !records.is_empty() {
            self.append(&mut inner, &records)?;
        }
        self.maybe_snapshot(&mut inner);
        Ok(results)
    }

    /// Appends and fsyncs, or poisons the store: the records are already
    /// applied in memory and cannot be taken back.
    fn append(&self, inner: &mut Inner, records: &[u8]) -> Result<(), StoreError> {
        let keep = records.len() as u64 + log::ZERO_LOW;
        let written = log::fill_ahead(&inner.log, &mut inner.log_filled, inner.log_len, keep)
            .and_then(|()| inner.log.write_all_at(records, inner.log_len))
            .and_then(|()| inner.log.sync_data());
        match written {
            Ok(()) => {
                inner.log_len += records.len() as u64;
                Ok(())
            }
            Err(source) => {
                let err = StoreError::AppendLog {
                    path: self.log_path.clone(),
                    source,
                };
                Err(self.poison(inner, err))
            }
        }
    }

    /// Snapshots if the log has grown past the threshold. The commands are
    /// already durable in the log, so a failure here fails no command: it is
    /// logged and retried after the log grows by another threshold.
    fn maybe_snapshot(&self, inner: &mut Inner) {
        if inner.poisoned.is_some() || inner.log_len < inner.next_snapshot_at {
            return;
        }
        if let Err(err) = self.snapshot(inner) {
            tracing::error!(error = %err, "metadata snapshot failed");
            inner.next_snapshot_at = inner.log_len + self.options.snapshot_threshold;
        }
    }

    /// Makes the snapshot durable first, then empties the log: a crash in
    /// between leaves log records the snapshot already holds, which replay
    /// skips.
    fn snapshot(&self, inner: &mut Inner) -> Result<(), StoreError> {
        snapshot::write(
            &inner.state,
            &self.dir.join(SNAPSHOT_TMP_FILE),
            &self.dir.join(SNAPSHOT_FILE),
        )?;
        // Truncation must be durable before the first new record lands at
        // byte 0, or a crash could leave new records spliced onto old ones.
        inner.log_filled = 0;
        let emptied = inner
            .log
            .set_len(0)
            .and_then(|()| inner.log.sync_all())
            .and_then(|()| log::fill_ahead(&inner.log, &mut inner.log_filled, 0, log::ZERO_LOW));
        if let Err(source) = emptied {
            let err = StoreError::TruncateLog {
                path: self.log_path.clone(),
                source,
            };
            return Err(self.poison(inner, err));
        }
        tracing::debug!(
            last_applied = inner.state.last_applied,
            log_bytes = inner.log_len,
            "metadata snapshot written, log emptied"
        );
        inner.log_len = 0;
        inner.next_snapshot_at = self.options.snapshot_threshold;
        Ok(())
    }

    fn poison(&self, inner: &mut Inner, err: StoreError) -> StoreError {
        tracing::error!(error = %err, "metadata store poisoned");
        inner.poisoned = Some(err.to_string());
        err
    }

    /// The lock, unless the store is poisoned (a panic while holding the lock
    /// also poisons it: `apply` may have stopped half-way).
    fn lock(&self) -> Result<MutexGuard<'_, Inner>, StoreError> {
        let poisoned = |reason: String| StoreError::Poisoned {
            dir: self.dir.clone(),
            reason,
        };
        let inner = self
            .inner
            .lock()
            .map_err(|_| poisoned("a panic while the store was locked".to_owned()))?;
        match &inner.poisoned {
            Some(reason) => Err(poisoned(reason.clone())),
            None => Ok(inner),
        }
    }
}

/// Applies the log at `path` to `state` (opening or creating the log) and
/// returns the log, the length of its records and how far it is zero-filled.
fn replay(path: &Path, state: &mut MetadataState) -> Result<(File, u64, u64), StoreError> {
    let read_error = |source| StoreError::ReadLog {
        path: path.to_owned(),
        source,
    };
    let created = !path.exists();
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(read_error)?;
    if created {
        snapshot::sync_parent(path).map_err(read_error)?;
    }
    // The log stays below the snapshot threshold (64 MiB by default), so it
    // is read whole: the corruption check needs to look past a bad record.
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).map_err(read_error)?;

    let (frames, valid_len) = log::frames(&bytes);
    // Checked before anything is applied: corruption refuses the whole log.
    if valid_len < bytes.len() {
        if let Some(next_valid) = log::next_valid_frame(&bytes, valid_len + 1) {
            return Err(StoreError::CorruptLog {
                path: path.to_owned(),
                offset: valid_len as u64,
                next_valid: next_valid as u64,
            });
        }
    }
    let mut previous: Option<u64> = None;
    for frame in frames {
        let record: log::Record =
            serde_json::from_slice(frame.payload).map_err(|source| StoreError::DecodeRecord {
                path: path.to_owned(),
                offset: frame.offset,
                source,
            })?;
        // Records run in steps of one; the first may be one the snapshot holds.
        let expected = previous.map_or(record.index.min(state.last_applied + 1), |p| p + 1);
        if record.index != expected {
            return Err(StoreError::LogGap {
                path: path.to_owned(),
                offset: frame.offset,
                expected,
                found: record.index,
            });
        }
        previous = Some(record.index);
        if record.index <= state.last_applied {
            continue;
        }
        apply(state, record.index, &record.command).map_err(|source| {
            StoreError::ReplayCommand {
                path: path.to_owned(),
                index: record.index,
                offset: frame.offset,
                source,
            }
        })?;
    }

    let valid_len = valid_len as u64;
    let mut filled = bytes.len() as u64;
    if !log::only_zeros(&bytes[valid_len as usize..]) {
        tracing::warn!(
            path = %path.display(),
            offset = valid_len,
            dropped_bytes = bytes.len() as u64 - valid_len,
            "cutting a torn, never-acknowledged record off the metadata log"
        );
        let cut_error = |source| StoreError::TruncateTornTail {
            path: path.to_owned(),
            offset: valid_len,
            source,
        };
        file.set_len(valid_len).map_err(cut_error)?;
        file.sync_all().map_err(cut_error)?;
        filled = valid_len;
    }
    log::fill_ahead(&file, &mut filled, valid_len, log::ZERO_LOW).map_err(read_error)?;
    Ok((file, valid_len, filled))
}
