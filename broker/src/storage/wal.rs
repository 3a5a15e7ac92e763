//! The `volume`-mode write-ahead log: append-only, checksummed segments in a
//! local directory, written by one dedicated thread with group commit.
//!
//! Contract: a submission's completion fires only after its bytes are
//! fsynced (`File::sync_data`), and completions fire in submission order. A
//! failed write or fsync poisons the log: every pending and later submission
//! fails, and the broker must restart and recover (fsync is never retried).
//! Recovery truncates a torn tail of the newest segment and refuses to start
//! on corruption anywhere else. Segments whose records are all committed to
//! object storage are deleted by [`Wal::trim`].

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread;

use bytes::{Bytes, BytesMut};
use floe_controller::model::PartitionId;
use tokio::sync::oneshot;
use uuid::Uuid;

const SEGMENT_MAGIC: &[u8; 8] = b"FLOEWAL1";
const SEGMENT_HEADER_LEN: usize = 16;
/// len(4) + crc(4)
const RECORD_PREFIX: usize = 8;
/// topic id(16) + partition(4) + base offset(8) + leader epoch(4)
const RECORD_FIXED: usize = 32;
/// Group commit stops gathering at this many bytes so one fsync stays bounded.
const MAX_GROUP_BYTES: usize = 16 << 20;

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

/// Handle to the WAL writer thread.
pub struct Wal {
    tx: mpsc::Sender<Request>,
    thread: Option<thread::JoinHandle<()>>,
}

enum Request {
    Append {
        records: Vec<WalRecord>,
        done: oneshot::Sender<Result<(), WalError>>,
    },
    /// Delete closed segments all of whose records are below these committed ends.
    /// Partitions missing from the map no longer exist.
    Trim {
        committed: HashMap<PartitionId, i64>,
    },
}

/// What a segment holds, to decide when it can be deleted.
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
        let (records, mut segments) = recover(dir)?;
        let next_seq = segments.last().map_or(1, |s| s.seq + 1);
        let active = open_segment(dir, next_seq)?;
        segments.push(SegmentInfo {
            seq: next_seq,
            path: active.1.clone(),
            max_end: HashMap::new(),
        });
        let (tx, rx) = mpsc::channel();
        let (unlinker, unlink_rx) = mpsc::channel::<Vec<PathBuf>>();
        let unlink_dir = dir.to_owned();
        thread::Builder::new()
            .name("floe-wal-trim".into())
            .spawn(move || {
                // Ends when the writer (the only sender) is gone.
                while let Ok(paths) = unlink_rx.recv() {
                    for path in paths {
                        if let Err(e) = fs::remove_file(&path) {
                            tracing::warn!(path = %path.display(), error = %e, "cannot delete trimmed WAL segment");
                        }
                    }
                    sync_dir(&unlink_dir);
                }
            })
            .map_err(|source| WalError::Write {
                path: dir.to_owned(),
                source,
            })?;
        // The next segment is created (header written, file and directory
        // synced) on a thread of its own while the current one fills, so a
        // rotation does not stall the group commit behind those fsyncs.
        let (spare_jobs, spare_rx) = mpsc::channel::<u64>();
        let (spare_tx, spares) = mpsc::channel::<Spare>();
        let spare_dir = dir.to_owned();
        thread::Builder::new()
            .name("floe-wal-next".into())
            .spawn(move || {
                // Ends when the writer (the only sender) is gone.
                while let Ok(seq) = spare_rx.recv() {
                    if spare_tx.send((seq, open_segment(&spare_dir, seq))).is_err() {
                        return;
                    }
                }
            })
            .map_err(|source| WalError::Write {
                path: dir.to_owned(),
                source,
            })?;
        let _ = spare_jobs.send(next_seq + 1);
        let mut writer = Writer {
            unlinker,
            spare_jobs,
            spares,
            dir: dir.to_owned(),
            file: active.0,
            size: SEGMENT_HEADER_LEN as u64,
            segment_bytes,
            segments,
            poisoned: None,
        };
        let thread = thread::Builder::new()
            .name("floe-wal".into())
            .spawn(move || writer.run(rx))
            .map_err(|source| WalError::Write {
                path: dir.to_owned(),
                source,
            })?;
        Ok((
            Wal {
                tx,
                thread: Some(thread),
            },
            records,
        ))
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

    /// Ask the writer to delete segments that object storage now covers.
    pub fn trim(&self, committed: HashMap<PartitionId, i64>) {
        let _ = self.tx.send(Request::Trim { committed });
    }
}

impl Drop for Wal {
    fn drop(&mut self) {
        // Closing the channel ends the thread after it drains what is queued.
        let (tx, _) = mpsc::channel();
        drop(std::mem::replace(&mut self.tx, tx));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A segment created ahead: its sequence number, and the open file and its
/// path (or why it could not be created).
type Spare = (u64, Result<(File, PathBuf), WalError>);

struct Writer {
    /// Deletes trimmed segments on a thread of its own.
    unlinker: mpsc::Sender<Vec<PathBuf>>,
    /// Asks for the segment after the active one to be created ahead.
    spare_jobs: mpsc::Sender<u64>,
    /// Segments created ahead: `(seq, the open file and its path)`.
    spares: mpsc::Receiver<Spare>,
    dir: PathBuf,
    file: File,
    size: u64,
    segment_bytes: u64,
    segments: Vec<SegmentInfo>,
    /// Why the log is poisoned, once a write, fsync or rotation failed.
    poisoned: Option<String>,
}

impl Writer {
    fn run(&mut self, rx: mpsc::Receiver<Request>) {
        let mut buf = Vec::with_capacity(1 << 20);
        while let Ok(first) = rx.recv() {
            let mut group = Vec::new();
            let mut bytes = 0usize;
            let mut next = Some(first);
            // Gather everything already queued: one write + one fsync for the group.
            while let Some(req) = next.take() {
                match req {
                    Request::Trim { committed } => self.trim(&committed),
                    Request::Append { records, done } => {
                        bytes += records.iter().map(|r| r.batch.len()).sum::<usize>();
                        group.push((records, done));
                    }
                }
                if bytes < MAX_GROUP_BYTES {
                    next = rx.try_recv().ok();
                }
            }
            if group.is_empty() {
                continue;
            }
            if let Some(cause) = &self.poisoned {
                for (_, done) in group {
                    let _ = done.send(Err(WalError::Poisoned {
                        cause: cause.clone(),
                    }));
                }
                continue;
            }
            buf.clear();
            for (records, _) in &group {
                for r in records {
                    encode_record(&mut buf, r);
                }
            }
            match self.write_durably(&buf) {
                Ok(()) => {
                    let info = self.segments.last_mut().expect("active segment");
                    for (records, _) in &group {
                        for r in records {
                            let e = info.max_end.entry(r.partition).or_insert(0);
                            *e = (*e).max(r.end_offset);
                        }
                    }
                    for (_, done) in group {
                        let _ = done.send(Ok(()));
                    }
                    if self.size >= self.segment_bytes {
                        if let Err(e) = self.rotate() {
                            tracing::error!(error = %e, "WAL segment rotation failed; poisoning the WAL");
                            self.poisoned = Some(e.to_string());
                        }
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "WAL write failed; poisoning the WAL");
                    self.poisoned = Some(e.to_string());
                    for (_, done) in group {
                        let _ = done.send(Err(e.for_waiter()));
                    }
                }
            }
        }
    }

    fn write_durably(&mut self, buf: &[u8]) -> Result<(), WalError> {
        let path = &self.segments.last().expect("active segment").path;
        let err = |source| WalError::Write {
            path: path.clone(),
            source,
        };
        self.file.write_all(buf).map_err(err)?;
        self.file.sync_data().map_err(err)?;
        self.size += buf.len() as u64;
        Ok(())
    }

    fn rotate(&mut self) -> Result<(), WalError> {
        let seq = self.segments.last().map_or(1, |s| s.seq + 1);
        let (file, path) = self.next_segment(seq)?;
        let _ = self.spare_jobs.send(seq + 1);
        self.file = file;
        self.size = SEGMENT_HEADER_LEN as u64;
        self.segments.push(SegmentInfo {
            seq,
            path,
            max_end: HashMap::new(),
        });
        Ok(())
    }

    fn trim(&mut self, committed: &HashMap<PartitionId, i64>) {
        let active = self.segments.len().saturating_sub(1);
        // Delete oldest-first and stop at the first segment still needed, so
        // recovery never sees a gap in front of live records.
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
            // Unlinking a large segment takes milliseconds: do it off the
            // writer thread so it never delays a group commit. Covered
            // segments hold only committed records, which recovery skips, so
            // a crash before the unlink is harmless.
            let paths = self.segments.drain(..removed).map(|s| s.path).collect();
            let _ = self.unlinker.send(paths);
        }
    }
}

impl Writer {
    /// Segment `seq`, created ahead by the spare thread (normally ready long
    /// before: it was asked for when the active segment started).
    fn next_segment(&mut self, seq: u64) -> Result<(File, PathBuf), WalError> {
        loop {
            match self.spares.recv() {
                Ok((s, made)) if s == seq => return made,
                Ok(_) => continue,
                // The spare thread is gone (it cannot be while the writer
                // holds its sender): create the segment here.
                Err(_) => return open_segment(&self.dir, seq),
            }
        }
    }
}

fn segment_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("{seq:020}.wal"))
}

/// Create a segment and make its existence durable before anything is acked in it.
fn open_segment(dir: &Path, seq: u64) -> Result<(File, PathBuf), WalError> {
    let path = segment_path(dir, seq);
    let err = |source| WalError::Write {
        path: path.clone(),
        source,
    };
    let mut file = OpenOptions::new()
        .create_new(true)
        .append(true)
        .open(&path)
        .map_err(err)?;
    let mut header = Vec::with_capacity(SEGMENT_HEADER_LEN);
    header.extend_from_slice(SEGMENT_MAGIC);
    header.extend_from_slice(&seq.to_be_bytes());
    file.write_all(&header).map_err(err)?;
    file.sync_all().map_err(err)?;
    sync_dir(dir);
    Ok((file, path))
}

fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

fn encode_record(out: &mut Vec<u8>, r: &WalRecord) {
    let len = (RECORD_FIXED + r.batch.len()) as u32;
    let start = out.len();
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(r.partition.topic_id.as_bytes());
    out.extend_from_slice(&r.partition.partition.to_be_bytes());
    out.extend_from_slice(&r.base_offset.to_be_bytes());
    out.extend_from_slice(&r.leader_epoch.to_be_bytes());
    out.extend_from_slice(&r.batch);
    let crc = crc32c::crc32c(&out[start + RECORD_PREFIX..]);
    out[start + 4..start + 8].copy_from_slice(&crc.to_be_bytes());
}

/// Read every segment in order. Returns records and per-segment info.
fn recover(dir: &Path) -> Result<(Vec<WalRecord>, Vec<SegmentInfo>), WalError> {
    let mut seqs = Vec::new();
    let entries = fs::read_dir(dir).map_err(|source| WalError::ReadSegment {
        path: dir.to_owned(),
        source,
    })?;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if let Some(seq) = name
            .strip_suffix(".wal")
            .and_then(|s| s.parse::<u64>().ok())
        {
            seqs.push(seq);
        }
    }
    seqs.sort_unstable();
    // Segments after the newest one that holds more than a header were
    // created ahead and never written (or torn while being created): they
    // hold nothing, so they go, and the newest segment with records is the
    // one whose tail may be torn.
    let written = seqs
        .iter()
        .rposition(|&seq| {
            fs::metadata(segment_path(dir, seq))
                .map_or(true, |m| m.len() > SEGMENT_HEADER_LEN as u64)
        })
        .map_or(1, |i| i + 1);
    if written < seqs.len() {
        for &seq in &seqs[written..] {
            let path = segment_path(dir, seq);
            fs::remove_file(&path).map_err(|source| WalError::Write { path, source })?;
        }
        sync_dir(dir);
        seqs.truncate(written);
    }
    let mut records = Vec::new();
    let mut segments = Vec::new();
    for (i, &seq) in seqs.iter().enumerate() {
        let path = segment_path(dir, seq);
        let is_last = i + 1 == seqs.len();
        let mut data = Vec::new();
        File::open(&path)
            .and_then(|mut f| f.read_to_end(&mut data))
            .map_err(|source| WalError::ReadSegment {
                path: path.clone(),
                source,
            })?;
        let (recs, valid_len) = scan_segment(&path, &data, is_last)?;
        if valid_len < SEGMENT_HEADER_LEN {
            // Crashed while creating the newest segment: nothing in it was
            // acknowledged. Remove it rather than truncate it, or the next
            // recovery would find a headerless segment that is no longer the
            // newest and refuse to start.
            tracing::warn!(path = %path.display(), file_len = data.len(), "removing WAL segment with a torn header");
            fs::remove_file(&path).map_err(|source| WalError::Write {
                path: path.clone(),
                source,
            })?;
            sync_dir(dir);
            continue;
        }
        if valid_len < data.len() {
            tracing::warn!(path = %path.display(), valid_len, file_len = data.len(), "truncating torn WAL tail");
            let f = OpenOptions::new()
                .write(true)
                .open(&path)
                .map_err(|source| WalError::Write {
                    path: path.clone(),
                    source,
                })?;
            f.set_len(valid_len as u64)
                .and_then(|_| f.sync_all())
                .map_err(|source| WalError::Write {
                    path: path.clone(),
                    source,
                })?;
        }
        let mut max_end = HashMap::new();
        for r in &recs {
            let e = max_end.entry(r.partition).or_insert(0);
            *e = i64::max(*e, r.end_offset);
        }
        segments.push(SegmentInfo { seq, path, max_end });
        records.extend(recs);
    }
    Ok((records, segments))
}

/// Parse one segment. A bad record in the newest segment that runs to the end
/// of the file (or is followed only by zeros) is a torn write: everything from
/// it on was never acknowledged. Anything else is corruption.
fn scan_segment(
    path: &Path,
    data: &[u8],
    is_last: bool,
) -> Result<(Vec<WalRecord>, usize), WalError> {
    let corrupt = |at: usize, reason: String| WalError::Corrupt {
        path: path.to_owned(),
        at: at as u64,
        reason,
    };
    if data.len() < SEGMENT_HEADER_LEN {
        if is_last {
            // Crashed while creating the segment: nothing in it was acknowledged.
            return Ok((Vec::new(), 0));
        }
        return Err(corrupt(0, "segment header truncated".into()));
    }
    if &data[..8] != SEGMENT_MAGIC {
        return Err(corrupt(0, "bad segment magic".into()));
    }
    let data_bytes = Bytes::copy_from_slice(data);
    let mut at = SEGMENT_HEADER_LEN;
    let mut out = Vec::new();
    while at < data.len() {
        match parse_record(&data_bytes, at) {
            Ok((rec, next)) => {
                out.push(rec);
                at = next;
            }
            Err(reason) => {
                let torn = is_last && (reason.reaches_end || data[at..].iter().all(|&b| b == 0));
                if torn {
                    return Ok((out, at));
                }
                return Err(corrupt(at, reason.what));
            }
        }
    }
    Ok((out, at))
}

struct BadRecord {
    what: String,
    /// The record's claimed extent reaches (or passes) the end of the file.
    reaches_end: bool,
}

fn parse_record(data: &Bytes, at: usize) -> Result<(WalRecord, usize), BadRecord> {
    let rest = &data[at..];
    if rest.len() < RECORD_PREFIX {
        return Err(BadRecord {
            what: "record prefix truncated".into(),
            reaches_end: true,
        });
    }
    let len = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
    let end = RECORD_PREFIX + len;
    if len < RECORD_FIXED || end > rest.len() {
        return Err(BadRecord {
            what: format!("record length {len} does not fit"),
            reaches_end: end >= rest.len(),
        });
    }
    let stored = u32::from_be_bytes([rest[4], rest[5], rest[6], rest[7]]);
    let computed = crc32c::crc32c(&rest[RECORD_PREFIX..end]);
    if stored != computed {
        return Err(BadRecord {
            what: format!("record CRC mismatch (stored {stored:#010x}, computed {computed:#010x})"),
            reaches_end: end == rest.len(),
        });
    }
    let body = &rest[RECORD_PREFIX..end];
    let mut id = [0u8; 16];
    id.copy_from_slice(&body[..16]);
    let partition = i32::from_be_bytes([body[16], body[17], body[18], body[19]]);
    let mut b8 = [0u8; 8];
    b8.copy_from_slice(&body[20..28]);
    let base_offset = i64::from_be_bytes(b8);
    let leader_epoch = i32::from_be_bytes([body[28], body[29], body[30], body[31]]);
    let batch = data.slice(at + RECORD_PREFIX + RECORD_FIXED..at + end);
    let header = crate::protocol::batch::parse_header(&batch).map_err(|e| BadRecord {
        what: format!("logged batch unreadable: {e}"),
        reaches_end: false,
    })?;
    // The writer only logs validated batches at assigned offsets; anything
    // else passed the CRC yet is not ours, and must not wrap or run backwards.
    let end_offset = Some(base_offset)
        .filter(|&b| b >= 0 && header.last_offset_delta >= 0)
        .and_then(|b| b.checked_add(header.offset_count()))
        .ok_or_else(|| BadRecord {
            what: format!(
                "logged batch has impossible offsets (base {base_offset}, lastOffsetDelta {})",
                header.last_offset_delta
            ),
            reaches_end: false,
        })?;
    Ok((
        WalRecord {
            partition: PartitionId {
                topic_id: Uuid::from_bytes(id),
                partition,
            },
            base_offset,
            end_offset,
            leader_epoch,
            batch,
        },
        at + end,
    ))
}

/// Encode records exactly as the WAL stores them (for format tests and tools).
pub fn encode_for_test(records: &[WalRecord]) -> BytesMut {
    let mut v = Vec::new();
    for r in records {
        encode_record(&mut v, r);
    }
    BytesMut::from(&v[..])
}

#[cfg(test)]
mod tests;
