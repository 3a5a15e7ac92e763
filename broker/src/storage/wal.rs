//! The `volume`-mode write-ahead log: checksummed segments in a local
//! directory, written with group commit by two worker threads, so one
//! group is gathered and written while the previous one is synced.
//!
//! Contract: a submission's completion fires only after its bytes are
//! fsynced (`File::sync_data`), and completions fire in submission order. A
//! failed write or fsync poisons the log: every pending and later submission
//! fails, and the broker must restart and recover (fsync is never retried).
//! Recovery truncates a torn tail of the newest segment and refuses to start
//! on corruption anywhere else. Segments whose records are all committed to
//! object storage are handed back by [`Wal::trim`]: a few are kept and
//! reused for later segments (overwriting allocated blocks keeps the
//! filesystem journal out of each `fdatasync`), the rest are deleted. The
//! format and the recovery scan are in [`format`].

mod format;

use std::collections::HashMap;
use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Condvar, Mutex, MutexGuard};
use std::thread;

use bytes::{Bytes, BytesMut};
use floe_controller::model::PartitionId;
use tokio::sync::oneshot;

use format::{begin_group, encode_record, finish_group, header_block, push_trailer, BLOCK};

/// Group commit stops gathering at this many bytes so one fsync stays bounded.
const MAX_GROUP_BYTES: usize = 16 << 20;
/// Groups being made durable at once: while one group's `fdatasync` runs,
/// the next is gathered, written and synced. Recovery relies on this bound
/// ([`format::UNACKNOWLEDGED_GROUPS`]).
const SYNCS_IN_FLIGHT: usize = format::UNACKNOWLEDGED_GROUPS;
/// Trimmed segments kept for reuse; more are deleted.
const REUSE_POOL: usize = 2;
/// The extension of a released segment kept for reuse (recovery ignores it).
const FREE_EXT: &str = "free";

/// One logged record batch of one partition.
#[derive(Debug, Clone, PartialEq)]
pub struct WalRecord {
    pub partition: PartitionId,
    pub base_offset: i64,
    /// Exclusive end offset (base + number of offsets in the batch).
    pub end_offset: i64,
    pub leader_epoch: i32,
    pub batch: Bytes,
}

#[derive(Debug, thiserror::Error)]
pub enum WalError {
    #[error("cannot create WAL directory {path}: {source}")]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read WAL segment {path}: {source}")]
    ReadSegment {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("WAL segment {path} is corrupt at byte {at}: {reason}. Acknowledged data may be at risk; move the file aside only if you accept losing what it holds")]
    Corrupt {
        path: PathBuf,
        at: u64,
        reason: String,
    },
    #[error("cannot write WAL segment {path}: {source} (check free space on the WAL volume)")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the WAL is poisoned after an earlier write or fsync failure ({cause}); fix that, then restart the broker to recover")]
    Poisoned { cause: String },
    #[error("the WAL writer has stopped")]
    Stopped,
}

impl WalError {
    /// The error for each submission of a group whose write failed: the
    /// cause itself (say, no space left), not a bare "poisoned".
    fn for_waiter(&self) -> WalError {
        match self {
            WalError::Write { path, source } => WalError::Write {
                path: path.clone(),
                source: std::io::Error::new(source.kind(), source.to_string()),
            },
            other => WalError::Poisoned {
                cause: other.to_string(),
            },
        }
    }
}

/// Handle to the WAL's worker threads.
pub struct Wal {
    tx: mpsc::Sender<Request>,
    shared: Arc<Shared>,
    workers: Vec<thread::JoinHandle<()>>,
}

enum Request {
    Append {
        records: Vec<WalRecord>,
        done: oneshot::Sender<Result<(), WalError>>,
    },
    /// Release closed segments all of whose records are below these
    /// committed ends. Partitions missing from the map no longer exist.
    Trim {
        committed: HashMap<PartitionId, i64>,
    },
}

/// What a segment holds, to decide when it can be released.
struct SegmentInfo {
    seq: u64,
    path: PathBuf,
    max_end: HashMap<PartitionId, i64>,
}

impl Wal {
    /// Recover the log in `dir` and start the writer on a fresh segment.
    /// Returns the records of every intact segment, oldest first.
    pub fn open(dir: &Path, segment_bytes: u64) -> Result<(Wal, Vec<WalRecord>), WalError> {
        fs::create_dir_all(dir).map_err(|source| WalError::CreateDir {
            path: dir.to_owned(),
            source,
        })?;
        let (records, mut segments) = format::recover(dir)?;
        let next_seq = segments.last().map_or(1, |s| s.seq + 1);
        let active = prepare_segment(dir, next_seq, None)?;
        segments.push(SegmentInfo {
            seq: next_seq,
            path: active.1.clone(),
            max_end: HashMap::new(),
        });
        // Segment files are prepared on a thread of their own while the
        // active one fills (the next one created, or a released one renamed
        // and given its new header; file and directory synced), and released
        // segments beyond the reuse pool are deleted there, so neither ever
        // stalls a group commit.
        let (keeper, jobs) = mpsc::channel::<Job>();
        let (spare_tx, spares) = mpsc::channel::<Spare>();
        let keeper_dir = dir.to_owned();
        let pool = free_segments(dir);
        let spawn_err = |source| WalError::Write {
            path: dir.to_owned(),
            source,
        };
        let keeper_thread = thread::Builder::new()
            .name("floe-wal-files".into())
            .spawn(move || keep_files(&keeper_dir, pool, jobs, spare_tx))
            .map_err(spawn_err)?;
        let _ = keeper.send(Job::Prepare(next_seq + 1));
        let (tx, rx) = mpsc::channel();
        let writer = Writer {
            rx,
            keeper,
            keeper_thread: Some(keeper_thread),
            spares,
            dir: dir.to_owned(),
            file: Arc::new(active.0),
            pos: BLOCK as u64,
            segment_bytes,
            segments,
            closed: false,
            buf: Vec::with_capacity(1 << 20),
        };
        let shared = Arc::new(Shared {
            writer: Mutex::new(writer),
            acks: Mutex::new(Acks::default()),
            acked: Condvar::new(),
        });
        let mut wal = Wal {
            tx,
            shared: shared.clone(),
            workers: Vec::new(),
        };
        for i in 0..SYNCS_IN_FLIGHT {
            let shared = shared.clone();
            let worker = thread::Builder::new()
                .name(format!("floe-wal-{i}"))
                .spawn(move || shared.work())
                .map_err(spawn_err)?;
            wal.workers.push(worker);
        }
        Ok((wal, records))
    }

    /// Queue records; the receiver fires once they are durable.
    pub fn submit(&self, records: Vec<WalRecord>) -> oneshot::Receiver<Result<(), WalError>> {
        let (done, rx) = oneshot::channel();
        if let Err(mpsc::SendError(Request::Append { done, .. })) =
            self.tx.send(Request::Append { records, done })
        {
            let _ = done.send(Err(WalError::Stopped));
        }
        rx
    }

    /// Release segments that object storage now covers.
    pub fn trim(&self, committed: HashMap<PartitionId, i64>) {
        let _ = self.tx.send(Request::Trim { committed });
    }
}

impl Drop for Wal {
    fn drop(&mut self) {
        // Closing the channel ends the workers after they drain what is
        // queued and sync what they wrote.
        let (tx, _) = mpsc::channel();
        drop(std::mem::replace(&mut self.tx, tx));
        for worker in self.workers.drain(..) {
            let _ = worker.join();
        }
        // Closing the keeper's channel ends it once its queue is done.
        let mut w = lock(&self.shared.writer);
        drop(std::mem::replace(&mut w.keeper, mpsc::channel().0));
        if let Some(t) = w.keeper_thread.take() {
            let _ = t.join();
        }
    }
}

/// A segment prepared ahead: its sequence number, and the open file and its
/// path (or why it could not be prepared).
type Spare = (u64, Result<(File, PathBuf), WalError>);

/// Work for the file keeper thread.
enum Job {
    /// Prepare segment `seq` (reusing a released file if one is pooled).
    Prepare(u64),
    /// Segments whose records are all in object storage, oldest first.
    Released(Vec<PathBuf>),
}

/// The file keeper: prepares the next segment and recycles or deletes
/// released ones. Ends when the writer (the only sender) is gone.
fn keep_files(
    dir: &Path,
    mut pool: Vec<PathBuf>,
    jobs: mpsc::Receiver<Job>,
    spares: mpsc::Sender<Spare>,
) {
    while let Ok(job) = jobs.recv() {
        match job {
            Job::Prepare(seq) => {
                let made = match pool.pop() {
                    Some(old) => prepare_segment(dir, seq, Some(&old)).or_else(|e| {
                        tracing::warn!(error = %e, "cannot reuse a WAL segment; creating a new one");
                        prepare_segment(dir, seq, None)
                    }),
                    None => prepare_segment(dir, seq, None),
                };
                if spares.send((seq, made)).is_err() {
                    return;
                }
            }
            Job::Released(paths) => {
                let mut deleted = false;
                for path in paths {
                    if pool.len() < REUSE_POOL {
                        // Out of recovery's sight, kept for reuse. Losing
                        // this rename in a crash is harmless: recovery
                        // skips committed records.
                        let free = path.with_extension(FREE_EXT);
                        match fs::rename(&path, &free) {
                            Ok(()) => pool.push(free),
                            Err(e) => {
                                tracing::warn!(path = %path.display(), error = %e, "cannot set aside released WAL segment")
                            }
                        }
                        continue;
                    }
                    match fs::remove_file(&path) {
                        Ok(()) => deleted = true,
                        Err(e) => {
                            tracing::warn!(path = %path.display(), error = %e, "cannot delete released WAL segment")
                        }
                    }
                }
                if deleted {
                    sync_dir(dir);
                }
            }
        }
    }
}

struct Writer {
    /// Appends and trims, taken by whichever worker holds the writer.
    rx: mpsc::Receiver<Request>,
    /// Prepares segment files and takes released ones, on its own thread.
    keeper: mpsc::Sender<Job>,
    /// Joined when the log is dropped, so no file work outlives it.
    keeper_thread: Option<thread::JoinHandle<()>>,
    /// Segments prepared ahead.
    spares: mpsc::Receiver<Spare>,
    dir: PathBuf,
    file: Arc<File>,
    /// Where the next group starts in the active segment (block-aligned).
    pos: u64,
    segment_bytes: u64,
    segments: Vec<SegmentInfo>,
    /// The request channel is closed and drained: workers stop.
    closed: bool,
    /// Reused encoding buffer.
    buf: Vec<u8>,
}

/// Groups written and not yet acknowledged, in write order, and whether the
/// log is poisoned. Acknowledgements leave from the front only, so they
/// fire in submission order whichever `fdatasync` returns first.
#[derive(Default)]
struct Acks {
    pending: VecDeque<Written>,
    next_id: u64,
    /// Why the log is poisoned, once a write, fsync or rotation failed.
    poisoned: Option<String>,
}

impl Acks {
    /// Queue a group written to segment `seq`; returns its id.
    fn push(
        &mut self,
        seq: u64,
        durable: bool,
        done: Vec<oneshot::Sender<Result<(), WalError>>>,
    ) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        self.pending.push_back(Written {
            id,
            seq,
            durable,
            done,
        });
        id
    }
}

struct Written {
    id: u64,
    /// The segment it was written to: an `fdatasync` covers one file.
    seq: u64,
    durable: bool,
    done: Vec<oneshot::Sender<Result<(), WalError>>>,
}

/// What the workers share: the writer (one holder at a time gathers,
/// encodes and writes a group) and the acknowledgements.
struct Shared {
    writer: Mutex<Writer>,
    acks: Mutex<Acks>,
    /// Signalled whenever the pending groups change.
    acked: Condvar,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

type Group = Vec<(Vec<WalRecord>, oneshot::Sender<Result<(), WalError>>)>;

impl Shared {
    /// One worker: take the writer, gather everything queued into a group,
    /// write it, let go of the writer, `fdatasync`. While one worker syncs,
    /// the next gathers and writes the following group, so up to
    /// [`SYNCS_IN_FLIGHT`] groups are being made durable at once, and the
    /// worker that writes a group also syncs it (no hand-off between
    /// threads on the way to the disk).
    fn work(&self) {
        loop {
            let mut w = lock(&self.writer);
            if w.closed {
                return;
            }
            let Ok(first) = w.rx.recv() else {
                w.closed = true;
                return;
            };
            let mut group: Group = Vec::new();
            let mut bytes = 0usize;
            let mut next = Some(first);
            // Gather everything already queued: one write + one fsync for the group.
            while let Some(req) = next.take() {
                match req {
                    Request::Trim { committed } => w.trim(&committed),
                    Request::Append { records, done } => {
                        bytes += records.iter().map(|r| r.batch.len()).sum::<usize>();
                        group.push((records, done));
                    }
                }
                if bytes < MAX_GROUP_BYTES {
                    next = w.rx.try_recv().ok();
                }
            }
            if group.is_empty() {
                continue;
            }
            if let Some(cause) = lock(&self.acks).poisoned.clone() {
                for (_, done) in group {
                    let _ = done.send(Err(WalError::Poisoned {
                        cause: cause.clone(),
                    }));
                }
                continue;
            }
            let seq = w.segments.last().expect("active segment").seq;
            let count: usize = group.iter().map(|(records, _)| records.len()).sum();
            if count == 0 {
                // Only empty submissions (barriers): nothing to write; they
                // are acknowledged once every group before them is.
                self.register(seq, true, group);
                continue;
            }
            let mut buf = std::mem::take(&mut w.buf);
            buf.clear();
            let start = begin_group(&mut buf);
            for (records, _) in &group {
                for r in records {
                    encode_record(&mut buf, r);
                }
            }
            finish_group(&mut buf, start, seq, count as u32);
            // The group that fills the segment closes it in the same write.
            let closes = w.pos + buf.len() as u64 >= w.segment_bytes;
            if closes {
                push_trailer(&mut buf, seq);
            }
            let written = w.write(&buf);
            w.buf = buf;
            if let Err(e) = written {
                tracing::error!(error = %e, "WAL write failed; poisoning the WAL");
                for (_, done) in group {
                    let _ = done.send(Err(e.for_waiter()));
                }
                self.poison(e.to_string());
                continue;
            }
            let info = w.segments.last_mut().expect("active segment");
            for (records, _) in &group {
                for r in records {
                    let e = info.max_end.entry(r.partition).or_insert(0);
                    *e = (*e).max(r.end_offset);
                }
            }
            let path = info.path.clone();
            let file = w.file.clone();
            let id = self.register(seq, false, group);
            if closes {
                // Sync while still holding the writer, and wait for the
                // other groups in flight: nothing is written to the next
                // segment before this one is wholly durable, so an older
                // segment never has a torn group.
                self.sync(&file, &path, id, seq);
                let mut acks = lock(&self.acks);
                while !acks.pending.is_empty() {
                    acks = self.acked.wait(acks).unwrap_or_else(|e| e.into_inner());
                }
                let poisoned = acks.poisoned.is_some();
                drop(acks);
                if !poisoned {
                    if let Err(e) = w.rotate() {
                        tracing::error!(error = %e, "WAL segment rotation failed; poisoning the WAL");
                        self.poison(e.to_string());
                    }
                }
                continue;
            }
            drop(w);
            self.sync(&file, &path, id, seq);
        }
    }

    /// Queue a written group (or a barrier) for acknowledgement; returns its id.
    fn register(&self, seq: u64, durable: bool, group: Group) -> u64 {
        let mut acks = lock(&self.acks);
        let id = acks.push(
            seq,
            durable,
            group.into_iter().map(|(_, done)| done).collect(),
        );
        ack_front(&mut acks);
        self.acked.notify_all();
        id
    }

    /// `fdatasync` the segment group `id` was written to, then acknowledge
    /// every group this made durable that has nothing unacknowledged
    /// before it. A sync that began after group `id` was written covers
    /// every earlier group of the same file too.
    fn sync(&self, file: &File, path: &Path, id: u64, seq: u64) {
        match file.sync_data() {
            Ok(()) => {
                let mut acks = lock(&self.acks);
                if acks.poisoned.is_none() {
                    synced(&mut acks, id, seq);
                }
                self.acked.notify_all();
            }
            Err(source) => {
                let e = WalError::Write {
                    path: path.to_owned(),
                    source,
                };
                tracing::error!(error = %e, "WAL fsync failed; poisoning the WAL");
                let mut acks = lock(&self.acks);
                for w in acks.pending.drain(..) {
                    for done in w.done {
                        let _ = done.send(Err(e.for_waiter()));
                    }
                }
                acks.poisoned.get_or_insert_with(|| e.to_string());
                self.acked.notify_all();
            }
        }
    }

    /// Fail every group not yet acknowledged and every later submission:
    /// after a failed write or fsync nothing unacknowledged can be trusted
    /// to be durable, and fsync is never retried.
    fn poison(&self, cause: String) {
        let mut acks = lock(&self.acks);
        for w in acks.pending.drain(..) {
            for done in w.done {
                let _ = done.send(Err(WalError::Poisoned {
                    cause: cause.clone(),
                }));
            }
        }
        acks.poisoned.get_or_insert(cause);
        self.acked.notify_all();
    }
}

/// Group `id` of segment `seq` was synced: it and every earlier group of
/// that segment are durable; acknowledge what that frees at the front.
fn synced(acks: &mut Acks, id: u64, seq: u64) {
    for w in acks.pending.iter_mut() {
        if w.id > id {
            break;
        }
        if w.seq == seq {
            w.durable = true;
        }
    }
    ack_front(acks);
}

/// Acknowledge the durable groups at the front of the queue.
fn ack_front(acks: &mut Acks) {
    while acks.pending.front().is_some_and(|w| w.durable) {
        let w = acks.pending.pop_front().expect("front");
        for done in w.done {
            let _ = done.send(Ok(()));
        }
    }
}

impl Writer {
    /// Write a group at the next position of the active segment (no sync).
    fn write(&mut self, buf: &[u8]) -> Result<(), WalError> {
        let path = &self.segments.last().expect("active segment").path;
        self.file
            .write_all_at(buf, self.pos)
            .map_err(|source| WalError::Write {
                path: path.clone(),
                source,
            })?;
        self.pos += buf.len() as u64;
        Ok(())
    }

    fn rotate(&mut self) -> Result<(), WalError> {
        let seq = self.segments.last().map_or(1, |s| s.seq + 1);
        let (file, path) = self.next_segment(seq)?;
        let _ = self.keeper.send(Job::Prepare(seq + 1));
        self.file = Arc::new(file);
        self.pos = BLOCK as u64;
        self.segments.push(SegmentInfo {
            seq,
            path,
            max_end: HashMap::new(),
        });
        Ok(())
    }

    fn trim(&mut self, committed: &HashMap<PartitionId, i64>) {
        let active = self.segments.len().saturating_sub(1);
        // Release oldest-first and stop at the first segment still needed,
        // so recovery never sees a gap in front of live records.
        let mut removed = 0;
        for seg in &self.segments[..active] {
            let done = seg
                .max_end
                .iter()
                .all(|(p, end)| committed.get(p).is_none_or(|c| c >= end));
            if !done {
                break;
            }
            removed += 1;
        }
        if removed > 0 {
            // Released segments hold only committed records, which recovery
            // skips, so a crash before they are reused or deleted is harmless.
            let paths = self.segments.drain(..removed).map(|s| s.path).collect();
            let _ = self.keeper.send(Job::Released(paths));
        }
    }

    /// Segment `seq`, prepared ahead by the keeper (normally ready long
    /// before: it was asked for when the active segment started).
    fn next_segment(&mut self, seq: u64) -> Result<(File, PathBuf), WalError> {
        loop {
            match self.spares.recv() {
                Ok((s, made)) if s == seq => return made,
                Ok(_) => continue,
                // The keeper is gone (it cannot be while the writer holds
                // its sender): create the segment here.
                Err(_) => return prepare_segment(&self.dir, seq, None),
            }
        }
    }
}

/// Released segments set aside for reuse (found again after a restart):
/// up to [`REUSE_POOL`] of them; any more are deleted.
fn free_segments(dir: &Path) -> Vec<PathBuf> {
    let mut free: Vec<PathBuf> = fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == FREE_EXT))
        .collect();
    free.sort();
    for extra in free.split_off(free.len().min(REUSE_POOL)) {
        if let Err(e) = fs::remove_file(&extra) {
            tracing::warn!(path = %extra.display(), error = %e, "cannot delete spare WAL segment");
        }
    }
    free
}

fn segment_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("{seq:020}.wal"))
}

/// Segment `seq`, its existence durable before anything is acked in it: a
/// new file, or (`reuse`) a released one renamed and given its new header.
/// A reused file's old groups name its old sequence number, so no scan of
/// `seq` reads them; a crash between the rename and the new header leaves a
/// file ahead of the newest written segment, which recovery deletes.
fn prepare_segment(
    dir: &Path,
    seq: u64,
    reuse: Option<&Path>,
) -> Result<(File, PathBuf), WalError> {
    let path = segment_path(dir, seq);
    let err = |source| WalError::Write {
        path: path.clone(),
        source,
    };
    let mut options = OpenOptions::new();
    options.read(true).write(true);
    match reuse {
        Some(old) => fs::rename(old, &path).map_err(err)?,
        None => {
            options.create_new(true);
        }
    }
    let file = options.open(&path).map_err(err)?;
    file.write_all_at(&header_block(seq), 0).map_err(err)?;
    if reuse.is_some() {
        file.sync_data().map_err(err)?;
    } else {
        file.sync_all().map_err(err)?;
    }
    sync_dir(dir);
    Ok((file, path))
}

fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

/// Encode records exactly as the WAL stores them inside a group (for format
/// tests and tools).
pub fn encode_for_test(records: &[WalRecord]) -> BytesMut {
    let mut v = Vec::new();
    for r in records {
        encode_record(&mut v, r);
    }
    BytesMut::from(&v[..])
}

/// A `FLOEWAL2` segment `seq` holding one group per `(encoded records,
/// record count)` (for format tests, tools and fuzzing).
pub fn segment_for_test(seq: u64, groups: &[(&[u8], u32)]) -> Vec<u8> {
    let mut out = header_block(seq);
    for (records, count) in groups {
        let start = begin_group(&mut out);
        out.extend_from_slice(records);
        finish_group(&mut out, start, seq, *count);
    }
    out
}

#[cfg(test)]
mod tests;
