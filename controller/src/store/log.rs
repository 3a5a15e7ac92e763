//! The command log's record framing and the scan that recovers it.
//!
//! Contract: a record is `[u32 LE payload length][u32 LE crc32c(payload)]
//! [payload]`, the payload being the JSON `{"index": u64, "command": Command}`.
//! [`frames`] returns the checksummed prefix of a log; [`next_valid_frame`]
//! tells a torn tail (nothing valid follows the first bad byte: an append that
//! was never acknowledged) from interior corruption (a valid record follows).
//!
//! Both logs (this store's and the Raft log) keep their file zero-filled a
//! few MiB past the last record ([`fill_zeros`]) and write records over the
//! zeros, so an append's `fdatasync` commits no size change to the
//! filesystem journal. A zero length never starts a valid record, so the
//! records end where the zeros begin; zeros after them are not a torn tail
//! ([`only_zeros`]).

use std::fs::File;
use std::os::unix::fs::FileExt;

use serde::Deserialize;

use crate::model::Command;

/// Length and checksum, each a little-endian u32.
pub(crate) const HEADER_LEN: usize = 8;
/// How far past its records a log file is zero-filled when it is filled.
pub(crate) const ZERO_AHEAD: u64 = 4 << 20;
/// A log is filled again once less than this is left after its records.
pub(crate) const ZERO_LOW: u64 = 1 << 20;

/// Write zeros over `from..to` of `file` and sync it (size included).
pub(crate) fn fill_zeros(file: &File, from: u64, to: u64) -> std::io::Result<()> {
    let zeros = vec![0u8; 1 << 20];
    let mut at = from;
    while at < to {
        let n = (to - at).min(zeros.len() as u64) as usize;
        file.write_all_at(&zeros[..n], at)?;
        at += n as u64;
    }
    file.sync_all()
}

/// Make sure zeros follow the records (which end at `end`) for at least
/// `keep` bytes; when they do not, zero-fill up to `ZERO_AHEAD` past that
/// (a size change, so the file is synced; once every few MiB of log).
pub(crate) fn fill_ahead(
    file: &File,
    filled: &mut u64,
    end: u64,
    keep: u64,
) -> std::io::Result<()> {
    if *filled >= end + keep {
        return Ok(());
    }
    let target = end + keep + ZERO_AHEAD;
    fill_zeros(file, *filled, target)?;
    *filled = target;
    Ok(())
}

/// True if `tail` (what follows the valid records) is zero fill only.
pub(crate) fn only_zeros(tail: &[u8]) -> bool {
    tail.iter().all(|&b| b == 0)
}

/// One decoded log record.
#[derive(Deserialize)]
pub(super) struct Record {
    pub index: u64,
    pub command: Command,
}

/// A checksummed record payload and the byte offset of its header.
pub(crate) struct Frame<'a> {
    pub offset: u64,
    pub payload: &'a [u8],
}

/// Frames log entry `index` around an already serialized command, or `None`
/// if the payload would not fit the u32 length field.
///
/// The payload is spliced rather than serialized whole so that the command is
/// serialized (the only fallible step) before the store applies it.
pub(super) fn encode(index: u64, command_json: &[u8]) -> Option<Vec<u8>> {
    let prefix = format!("{{\"index\":{index},\"command\":");
    frame(&[prefix.as_bytes(), command_json, b"}"])
}

/// Frames the concatenation of `parts` as one record (the Raft log store
/// frames its entries this way too), or `None` if it would not fit the u32
/// length field or is empty (an empty payload never reads back as valid).
pub(crate) fn frame(parts: &[&[u8]]) -> Option<Vec<u8>> {
    let payload_len: usize = parts.iter().map(|part| part.len()).sum();
    let len = u32::try_from(payload_len).ok().filter(|&len| len > 0)?;
    let mut record = Vec::with_capacity(HEADER_LEN + payload_len);
    record.extend_from_slice(&len.to_le_bytes());
    record.extend_from_slice(&[0; 4]);
    for part in parts {
        record.extend_from_slice(part);
    }
    let crc = crc32c::crc32c(&record[HEADER_LEN..]);
    record[4..HEADER_LEN].copy_from_slice(&crc.to_le_bytes());
    Some(record)
}

/// The frames of `log` up to the first byte that does not start a valid
/// frame, and the length of that valid prefix.
pub(crate) fn frames(log: &[u8]) -> (Vec<Frame<'_>>, usize) {
    let mut found = Vec::new();
    let mut pos = 0;
    while let Some(payload) = frame_at(log, pos) {
        found.push(Frame {
            offset: pos as u64,
            payload,
        });
        pos += HEADER_LEN + payload.len();
    }
    (found, pos)
}

/// The first offset at or after `from` where a valid frame starts.
///
/// Searching byte by byte is what makes a corrupted length field detectable
/// too. It is cheap: JSON text and zero fill both decode as lengths that
/// cannot fit (or are 0), so a checksum is computed almost nowhere, and the
/// search runs only when a log does not end cleanly.
pub(crate) fn next_valid_frame(log: &[u8], from: usize) -> Option<usize> {
    let mut pos = from;
    while pos < log.len() {
        if frame_at(log, pos).is_some() {
            return Some(pos);
        }
        if log[pos] == 0 {
            // Skip zero fill at once: no frame starts where its four length
            // bytes are all zero, so the next candidate is at most three
            // bytes before the next non-zero byte.
            let nonzero = pos + log[pos..].iter().position(|&b| b != 0)?;
            pos = nonzero.saturating_sub(3).max(pos + 1);
        } else {
            pos += 1;
        }
    }
    None
}

/// The payload of the frame at `pos`, if a complete one with a matching
/// checksum starts there. Payloads are JSON, so an empty one is invalid.
fn frame_at(log: &[u8], pos: usize) -> Option<&[u8]> {
    let header = log.get(pos..pos.checked_add(HEADER_LEN)?)?;
    let (len, crc) = header.split_at(4);
    let len = usize::try_from(u32::from_le_bytes(len.try_into().ok()?)).ok()?;
    let crc = u32::from_le_bytes(crc.try_into().ok()?);
    if len == 0 {
        return None;
    }
    let start = pos + HEADER_LEN;
    let payload = log.get(start..start.checked_add(len)?)?;
    (crc32c::crc32c(payload) == crc).then_some(payload)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::fixture::register;

    fn record(index: u64) -> Vec<u8> {
        let json = serde_json::to_vec(&register(1)).expect("serialize");
        encode(index, &json).expect("fits")
    }

    #[test]
    fn encoded_records_decode_back() {
        let mut log = record(1);
        log.extend(record(2));
        let (found, valid) = frames(&log);
        assert_eq!(valid, log.len());
        let indexes: Vec<u64> = found
            .iter()
            .map(|f| {
                serde_json::from_slice::<Record>(f.payload)
                    .expect("decode")
                    .index
            })
            .collect();
        assert_eq!(indexes, [1, 2]);
        assert_eq!(found[1].offset, record(1).len() as u64);
    }

    #[test]
    fn a_bad_tail_is_told_apart_from_a_bad_middle() {
        let one = record(1);
        let mut log = one.clone();
        log.extend(record(2));
        // Torn: the second record is cut short.
        let torn = &log[..log.len() - 3];
        assert_eq!(frames(torn).1, one.len());
        assert_eq!(next_valid_frame(torn, one.len() + 1), None);
        // Zero fill after a crash is torn too, not a run of empty records.
        let mut zeros = one.clone();
        zeros.extend([0; 100]);
        assert_eq!(frames(&zeros).1, one.len());
        assert_eq!(next_valid_frame(&zeros, one.len() + 1), None);
        // A flipped payload byte or length byte in the first record.
        for at in [HEADER_LEN + 3, 1] {
            let mut bad = log.clone();
            bad[at] ^= 0x40;
            assert_eq!(frames(&bad).1, 0);
            assert_eq!(next_valid_frame(&bad, 1), Some(one.len()));
        }
    }

    #[test]
    fn a_record_after_zero_fill_is_found_even_when_its_length_starts_with_zeros() {
        // Payloads of 256 and 65,536 bytes: little-endian lengths whose
        // first one or two bytes are zero.
        for payload_len in [256usize, 1 << 16] {
            let record = frame(&[&vec![b'x'; payload_len]]).expect("fits");
            assert_eq!(record[0], 0);
            for gap in [0usize, 1, 3, 4, 5, 4096] {
                let mut log = vec![0x11; 7];
                log.extend(vec![0; gap]);
                let at = log.len();
                log.extend(&record);
                log.extend([0; 64]);
                assert_eq!(next_valid_frame(&log, 1), Some(at), "gap {gap}");
            }
        }
    }
}
