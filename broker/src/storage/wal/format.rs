//! The WAL's on-disk format and its recovery scan.
//!
//! Segments written today (`FLOEWAL2`) start with one 4 KiB header block;
//! then come *groups*, one per group commit, each starting on a 4 KiB
//! boundary: a checksummed group header that names the segment's sequence
//! number, the group's records, and zero padding up to the next boundary. A
//! segment that was closed by a rotation ends with a trailer block.
//!
//! Segments are recycled: a segment whose records are all in object storage
//! is renamed to a later sequence number and overwritten in place, because
//! overwriting allocated blocks lets `fdatasync` skip the filesystem journal.
//! Whatever the earlier use left behind names another sequence number, so a
//! scan never mistakes it for records of this one. Segments of the earlier
//! format (`FLOEWAL1`: header, then records up to the end of the file) are
//! still read.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::Read;
use std::path::Path;

use bytes::Bytes;
use floe_controller::model::PartitionId;
use uuid::Uuid;

use super::{segment_path, sync_dir, SegmentInfo, WalError, WalRecord, FREE_EXT};

pub(super) const MAGIC_V1: &[u8; 8] = b"FLOEWAL1";
pub(super) const MAGIC: &[u8; 8] = b"FLOEWAL2";
/// magic(8) + sequence(8) (the rest of the header block is zeros).
pub(super) const HEADER_LEN: usize = 16;
/// Groups start on multiples of this; the header block is one of them.
pub(super) const BLOCK: usize = 4096;
const GROUP_MAGIC: &[u8; 4] = b"FGRP";
const TRAILER_MAGIC: &[u8; 4] = b"FEND";
/// magic(4) + crc32c of the next 16 bytes(4) + sequence(8) + payload length(4) + record count(4)
pub(super) const GROUP_HEADER: usize = 24;
/// len(4) + crc(4)
pub(super) const RECORD_PREFIX: usize = 8;
/// topic id(16) + partition(4) + base offset(8) + leader epoch(4)
const RECORD_FIXED: usize = 32;

/// The most groups of the newest segment that can be written but not yet
/// acknowledged when the broker stops: the WAL makes this many durable at
/// once. A torn group can have up to one fewer intact groups after it.
pub(super) const UNACKNOWLEDGED_GROUPS: usize = 2;

pub(super) fn align_up(n: usize) -> usize {
    n.div_ceil(BLOCK) * BLOCK
}

/// The header block of segment `seq`.
pub(super) fn header_block(seq: u64) -> Vec<u8> {
    let mut b = vec![0u8; BLOCK];
    b[..8].copy_from_slice(MAGIC);
    b[8..16].copy_from_slice(&seq.to_be_bytes());
    b
}

/// Start a group in `out` (which must be empty or end on a block boundary):
/// room for its header, filled in by [`finish_group`].
pub(super) fn begin_group(out: &mut Vec<u8>) -> usize {
    let start = out.len();
    out.resize(start + GROUP_HEADER, 0);
    start
}

/// Fill in the header of the group that began at `start` and pad it to a block.
pub(super) fn finish_group(out: &mut Vec<u8>, start: usize, seq: u64, count: u32) {
    let payload = (out.len() - start - GROUP_HEADER) as u32;
    write_header(
        &mut out[start..start + GROUP_HEADER],
        GROUP_MAGIC,
        seq,
        payload,
        count,
    );
    out.resize(align_up(out.len()), 0);
}

/// Append the trailer that closes segment `seq` (a rotation).
pub(super) fn push_trailer(out: &mut Vec<u8>, seq: u64) {
    let start = out.len();
    out.resize(start + BLOCK, 0);
    write_header(
        &mut out[start..start + GROUP_HEADER],
        TRAILER_MAGIC,
        seq,
        0,
        0,
    );
}

fn write_header(h: &mut [u8], magic: &[u8; 4], seq: u64, payload: u32, count: u32) {
    h[..4].copy_from_slice(magic);
    h[8..16].copy_from_slice(&seq.to_be_bytes());
    h[16..20].copy_from_slice(&payload.to_be_bytes());
    h[20..24].copy_from_slice(&count.to_be_bytes());
    let crc = crc32c::crc32c(&h[8..24]);
    h[4..8].copy_from_slice(&crc.to_be_bytes());
}

pub(super) fn encode_record(out: &mut Vec<u8>, r: &WalRecord) {
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

enum Block {
    Group { payload: usize, count: u32 },
    Trailer,
}

/// A group header or trailer of segment `seq` at `at`, if one is there
/// (whole, checksummed, this sequence number, its payload inside the file).
fn block_at(data: &[u8], at: usize, seq: u64) -> Option<Block> {
    let h = data.get(at..at + GROUP_HEADER)?;
    let magic = &h[..4];
    if magic != GROUP_MAGIC && magic != TRAILER_MAGIC {
        return None;
    }
    let crc = u32::from_be_bytes([h[4], h[5], h[6], h[7]]);
    if crc != crc32c::crc32c(&h[8..24]) || h[8..16] != seq.to_be_bytes() {
        return None;
    }
    if magic == TRAILER_MAGIC {
        return Some(Block::Trailer);
    }
    let payload = u32::from_be_bytes([h[16], h[17], h[18], h[19]]) as usize;
    let count = u32::from_be_bytes([h[20], h[21], h[22], h[23]]);
    (at + GROUP_HEADER + payload <= data.len()).then_some(Block::Group { payload, count })
}

/// How the scan of a segment stopped.
#[derive(Debug)]
enum Ending {
    /// Closed by a rotation.
    Trailer,
    /// The end of the file.
    Eof,
    /// No group of this segment where the next one would start: what
    /// follows is an earlier use of the file (or zeros).
    Stale,
    /// A group header of this segment whose records do not check out.
    BadGroup { at: usize, reason: String },
}

/// What a scan found in one segment.
struct Scan {
    records: Vec<WalRecord>,
    /// Groups of this segment read back whole (some may hold no records).
    groups: usize,
    /// The end of the last good group (or of the header block).
    valid_len: usize,
    ending: Ending,
    /// Groups of this segment on block boundaries past where the scan
    /// stopped. A torn write can be followed by fewer than
    /// [`UNACKNOWLEDGED_GROUPS`] of them (written while it was being
    /// synced, never acknowledged); more prove that whatever stopped the
    /// scan had been acknowledged: corruption, not a torn or stale tail.
    later_groups: usize,
}

impl Scan {
    /// Holds anything written under its own sequence number.
    fn written(&self) -> bool {
        self.groups > 0
            || self.later_groups > 0
            || !matches!(self.ending, Ending::Stale | Ending::Eof)
    }
}

/// Scan a `FLOEWAL2` segment; never fails (the caller judges the ending).
fn scan_v2(data: &Bytes, seq: u64) -> Scan {
    let mut records = Vec::new();
    let mut groups = 0;
    let mut at = if data.len() >= BLOCK && data[8..16] == seq.to_be_bytes() {
        BLOCK
    } else {
        // Renamed for reuse but not yet given its new header: nothing of
        // this sequence number can be in it.
        return Scan {
            records,
            groups: 0,
            valid_len: data.len().min(BLOCK),
            ending: Ending::Stale,
            later_groups: 0,
        };
    };
    let ending = loop {
        if at >= data.len() {
            break Ending::Eof;
        }
        match block_at(data, at, seq) {
            None => break Ending::Stale,
            Some(Block::Trailer) => break Ending::Trailer,
            Some(Block::Group { payload, count }) => {
                let end = at + GROUP_HEADER + payload;
                match parse_group(data, at + GROUP_HEADER, end, count) {
                    Ok(recs) => {
                        groups += 1;
                        records.extend(recs);
                    }
                    Err(reason) => break Ending::BadGroup { at, reason },
                }
                at = align_up(end);
            }
        }
    };
    let later_groups = match ending {
        Ending::Stale | Ending::BadGroup { .. } => (at + BLOCK..data.len())
            .step_by(BLOCK)
            .filter(|&b| matches!(block_at(data, b, seq), Some(Block::Group { .. })))
            .count(),
        Ending::Trailer | Ending::Eof => 0,
    };
    let valid_len = if matches!(ending, Ending::Trailer) {
        at + BLOCK
    } else {
        at.min(data.len())
    };
    Scan {
        records,
        groups,
        valid_len,
        ending,
        later_groups,
    }
}

fn parse_group(
    data: &Bytes,
    mut at: usize,
    end: usize,
    count: u32,
) -> Result<Vec<WalRecord>, String> {
    let mut out = Vec::new();
    let group = data.slice(..end);
    while at < end {
        let (rec, next) = parse_record(&group, at).map_err(|e| e.what)?;
        out.push(rec);
        at = next;
    }
    if out.len() != count as usize {
        return Err(format!(
            "group holds {} records, its header says {count}",
            out.len()
        ));
    }
    Ok(out)
}

/// Read every segment in order. Returns records and per-segment info.
pub(super) fn recover(dir: &Path) -> Result<(Vec<WalRecord>, Vec<SegmentInfo>), WalError> {
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
    let mut segments = Vec::with_capacity(seqs.len());
    for seq in seqs {
        let path = segment_path(dir, seq);
        let mut data = Vec::new();
        File::open(&path)
            .and_then(|mut f| f.read_to_end(&mut data))
            .map_err(|source| WalError::ReadSegment {
                path: path.clone(),
                source,
            })?;
        let data = Bytes::from(data);
        let v2 = scan_is_v2(&data).then(|| scan_v2(&data, seq));
        let written = match &v2 {
            Some(scan) => scan.written(),
            // The earlier format, a torn header, or not a segment at all
            // (refused below unless it is a torn header at the very end).
            None => data.len() > HEADER_LEN || (data.len() == HEADER_LEN && &data[..8] != MAGIC_V1),
        };
        segments.push((seq, path, data, v2, written));
    }
    // Segments after the newest one holding anything of its own were
    // created (or renamed for reuse) ahead and never written, or torn while
    // being created: they are set aside for reuse (the pool keeps a few and
    // deletes the rest), and the newest written segment is the one whose
    // tail may be torn.
    let newest = segments.iter().rposition(|s| s.4);
    let keep = newest.map_or(0, |i| i + 1);
    if keep < segments.len() {
        for (_, path, ..) in segments.drain(keep..) {
            let free = path.with_extension(FREE_EXT);
            fs::rename(&path, &free).map_err(|source| WalError::Write { path, source })?;
        }
        sync_dir(dir);
    }
    let mut records = Vec::new();
    let mut infos = Vec::new();
    let last = segments.len().saturating_sub(1);
    for (i, (seq, path, data, v2, _)) in segments.into_iter().enumerate() {
        let is_last = i == last;
        let (recs, valid_len) = match v2 {
            Some(scan) => judge_v2(&path, scan, is_last)?,
            None => scan_v1(&path, &data, is_last)?,
        };
        if is_last && valid_len < data.len() {
            // The torn (or stale) tail goes, so that once this segment is no
            // longer the newest its scan ends cleanly at the end of the file.
            tracing::warn!(path = %path.display(), valid_len, file_len = data.len(), "truncating the WAL's unacknowledged tail");
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
        infos.push(SegmentInfo { seq, path, max_end });
        records.extend(recs);
    }
    Ok((records, infos))
}

fn scan_is_v2(data: &[u8]) -> bool {
    data.len() >= HEADER_LEN && &data[..8] == MAGIC
}

/// Decide what a `FLOEWAL2` scan means for this segment's place in the log.
fn judge_v2(path: &Path, scan: Scan, is_last: bool) -> Result<(Vec<WalRecord>, usize), WalError> {
    let corrupt = |at: usize, reason: String| WalError::Corrupt {
        path: path.to_owned(),
        at: at as u64,
        reason,
    };
    // Groups are written in order, at most UNACKNOWLEDGED_GROUPS of them are
    // unacknowledged at once (acknowledged in order, each once durable), and
    // an older segment is wholly durable before the next one is written:
    // enough later groups, or any in an older segment, prove that whatever
    // stopped the scan had been acknowledged.
    if scan.later_groups >= UNACKNOWLEDGED_GROUPS || (scan.later_groups > 0 && !is_last) {
        let (at, reason) = match scan.ending {
            Ending::BadGroup { at, reason } => (at, reason),
            _ => (
                scan.valid_len,
                "unreadable group header before later groups".into(),
            ),
        };
        return Err(corrupt(at, reason));
    }
    match scan.ending {
        Ending::Trailer | Ending::Eof => {}
        // Newest segment: a torn group (never acknowledged) or the end of
        // what was written before a crash.
        Ending::BadGroup { .. } | Ending::Stale if is_last => {}
        Ending::BadGroup { at, reason } => return Err(corrupt(at, reason)),
        // An older segment was closed by a rotation (trailer) or truncated
        // by an earlier recovery (end of file); one that was never written
        // is empty.
        Ending::Stale if scan.groups == 0 => {}
        Ending::Stale => {
            return Err(corrupt(
                scan.valid_len,
                "segment ends without its trailer".into(),
            ))
        }
    }
    Ok((scan.records, scan.valid_len))
}

/// Parse a `FLOEWAL1` segment. A bad record in the newest segment that runs
/// to the end of the file (or is followed only by zeros) is a torn write:
/// everything from it on was never acknowledged. Anything else is corruption.
fn scan_v1(path: &Path, data: &Bytes, is_last: bool) -> Result<(Vec<WalRecord>, usize), WalError> {
    let corrupt = |at: usize, reason: String| WalError::Corrupt {
        path: path.to_owned(),
        at: at as u64,
        reason,
    };
    if data.len() < HEADER_LEN {
        if is_last {
            // Crashed while creating the segment: nothing in it was acknowledged.
            return Ok((Vec::new(), 0));
        }
        return Err(corrupt(0, "segment header truncated".into()));
    }
    if &data[..8] != MAGIC_V1 {
        return Err(corrupt(0, "bad segment magic".into()));
    }
    let mut at = HEADER_LEN;
    let mut out = Vec::new();
    while at < data.len() {
        match parse_record(data, at) {
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
