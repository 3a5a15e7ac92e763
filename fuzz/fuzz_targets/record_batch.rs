//! Untrusted record batches (produce requests) and WAL segments (recovery
//! after a crash or a disk fault): `batch::validate_all`, `batch::iter` and
//! `Wal::open` must return a value or a clean error, never panic.
//!
//! Input: one flags byte, then the bytes.
//! - bit 0: fix up checksums first (batch CRCs for the batch functions, WAL
//!   record CRCs for the segment), so the fuzzer reaches the checks behind them;
//! - bit 1: prepend a valid segment header;
//! - bit 2: add a newer segment holding one (empty) group, so this one is
//!   not the last (a torn tail is then corruption, not something to truncate);
//! - bit 3: make it a segment of the current format: the header block, then
//!   the bytes as one group (bit 0 also fixes the records' CRCs and count),
//!   then the bytes again as what an earlier use of the file left behind.
#![no_main]

use bytes::Bytes;
use floe_broker::protocol::batch;
use floe_broker::storage::wal::{segment_for_test, Wal};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let Some((&flags, data)) = input.split_first() else {
        return;
    };
    let fix_crcs = flags & 1 != 0;

    let mut batches = data.to_vec();
    if fix_crcs {
        fix_batch_crcs(&mut batches);
    }
    let valid = batch::validate_all(&batches);
    let buf = Bytes::from(batches);
    let mut at = 0;
    for (h, bytes) in batch::iter(&buf) {
        assert_eq!(bytes.len(), h.total_len);
        assert_eq!(&bytes[..], &buf[at..at + h.total_len]);
        at += h.total_len;
        let _ = (h.offset_count(), h.last_sequence(), h.is_idempotent());
    }
    if let Ok(headers) = valid {
        // Whatever validates must also walk to the end.
        assert_eq!(at, buf.len());
        assert_eq!(headers.len(), batch::iter(&buf).count());
    }

    if flags & 8 != 0 {
        let mut records = data.to_vec();
        let count = if fix_crcs {
            fix_wal_crcs(&mut records, 0)
        } else {
            0
        };
        let mut segment = segment_for_test(1, &[(&records, count)]);
        segment.extend_from_slice(data);
        recover(&segment, flags & 4 != 0);
        return;
    }
    let mut segment = Vec::with_capacity(data.len() + 16);
    if flags & 2 != 0 {
        segment.extend_from_slice(b"FLOEWAL1");
        segment.extend_from_slice(&1u64.to_be_bytes());
    }
    segment.extend_from_slice(data);
    if fix_crcs {
        fix_wal_crcs(&mut segment, 16);
    }
    recover(&segment, flags & 4 != 0);
});

/// Open a WAL over `segment`; whatever recovery accepts, a second recovery
/// (after it truncated a torn tail) must accept too, with the same records.
fn recover(segment: &[u8], newer: bool) {
    // tmpfs when available: recovery fsyncs, and fsync on a disk is slow.
    let shm = std::path::Path::new("/dev/shm");
    let dir = if shm.is_dir() {
        tempfile::tempdir_in(shm)
    } else {
        tempfile::tempdir()
    }
    .expect("temp dir");
    std::fs::write(dir.path().join(format!("{:020}.wal", 1)), segment).expect("write segment");
    if newer {
        let empty = segment_for_test(2, &[(&[], 0)]);
        std::fs::write(dir.path().join(format!("{:020}.wal", 2)), empty).expect("write segment");
    }
    let first = match Wal::open(dir.path(), 64 << 20) {
        Ok((wal, records)) => {
            drop(wal);
            records
        }
        Err(_) => return,
    };
    let (wal, again) = Wal::open(dir.path(), 64 << 20).expect("recovery accepted the log once");
    drop(wal);
    assert_eq!(first, again, "recovery is not idempotent");
}

/// Recompute each batch's CRC, walking by the length fields.
fn fix_batch_crcs(buf: &mut [u8]) {
    let mut at = 0;
    while at + batch::HEADER_LEN <= buf.len() {
        let len = i32::from_be_bytes(buf[at + 8..at + 12].try_into().unwrap());
        let Some(total) = usize::try_from(len).ok().map(|l| l + batch::LOG_OVERHEAD) else {
            return;
        };
        if total < batch::HEADER_LEN || at + total > buf.len() {
            return;
        }
        let crc = crc32c::crc32c(&buf[at + 21..at + total]);
        buf[at + 17..at + 21].copy_from_slice(&crc.to_be_bytes());
        at += total;
    }
}

/// Recompute each WAL record's CRC (len u32, crc u32, body of len bytes)
/// from `at` on; returns how many records it walked.
fn fix_wal_crcs(seg: &mut [u8], mut at: usize) -> u32 {
    let mut count = 0;
    while at + 8 <= seg.len() {
        let len = u32::from_be_bytes(seg[at..at + 4].try_into().unwrap()) as usize;
        let end = at + 8 + len;
        if end > seg.len() {
            break;
        }
        let crc = crc32c::crc32c(&seg[at + 8..end]);
        seg[at + 4..at + 8].copy_from_slice(&crc.to_be_bytes());
        at = end;
        count += 1;
    }
    count
}
