//! Kafka record batches (magic v2) as opaque bytes: parse and check the
//! 61-byte header, patch the base offset and leader epoch in place, and walk a
//! buffer of concatenated batches. Records are never decoded or re-encoded, so
//! every compression codec is stored exactly as the producer sent it.

use bytes::{Bytes, BytesMut};

/// Size of the v2 batch header (up to and including the record count).
pub const HEADER_LEN: usize = 61;
/// Bytes before the `batchLength` field's coverage starts (baseOffset + batchLength).
pub const LOG_OVERHEAD: usize = 12;

const MAGIC_V2: i8 = 2;
const CRC_START: usize = 21;
const ATTR_TRANSACTIONAL: i16 = 0x10;
const ATTR_CONTROL: i16 = 0x20;
const ATTR_TIMESTAMP_TYPE: i16 = 0x08;

/// The fields of a v2 record batch header that the broker acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: i64,
    /// Length of the whole batch in bytes, header included.
    pub total_len: usize,
    pub partition_leader_epoch: i32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub record_count: i32,
}

impl BatchHeader {
    /// Number of offsets the batch occupies.
    pub fn offset_count(&self) -> i64 {
        i64::from(self.last_offset_delta) + 1
    }

    pub fn last_offset(&self) -> i64 {
        self.base_offset + i64::from(self.last_offset_delta)
    }

    pub fn is_transactional(&self) -> bool {
        self.attributes & ATTR_TRANSACTIONAL != 0
    }

    pub fn is_control(&self) -> bool {
        self.attributes & ATTR_CONTROL != 0
    }

    pub fn uses_log_append_time(&self) -> bool {
        self.attributes & ATTR_TIMESTAMP_TYPE != 0
    }

    pub fn is_idempotent(&self) -> bool {
        self.producer_id >= 0
    }

    /// Sequence number of the last record, wrapping as Kafka does.
    pub fn last_sequence(&self) -> i32 {
        if self.base_sequence < 0 {
            return -1;
        }
        let last = i64::from(self.base_sequence) + i64::from(self.last_offset_delta);
        (last % (i64::from(i32::MAX) + 1)) as i32
    }
}

/// Why a batch was refused. Maps to `CORRUPT_MESSAGE` / `INVALID_RECORD` at the edge.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    #[error("record batch truncated: need {needed} bytes, have {have}")]
    Truncated { needed: usize, have: usize },
    #[error("unsupported record batch magic {magic}: only v2 (Kafka 0.11+) batches are accepted")]
    UnsupportedMagic { magic: i8 },
    #[error("record batch length {len} is invalid")]
    InvalidLength { len: i32 },
    #[error("record batch CRC mismatch (stored {stored:#010x}, computed {computed:#010x})")]
    CrcMismatch { stored: u32, computed: u32 },
    #[error("record batch has lastOffsetDelta {last_offset_delta} but {record_count} records")]
    InvalidCount {
        last_offset_delta: i32,
        record_count: i32,
    },
    #[error("empty record set")]
    Empty,
}

fn i16_at(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([b[at], b[at + 1]])
}
fn i32_at(b: &[u8], at: usize) -> i32 {
    i32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
fn i64_at(b: &[u8], at: usize) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    i64::from_be_bytes(a)
}

/// Parse the header of the batch at the start of `buf` without checking the CRC.
pub fn parse_header(buf: &[u8]) -> Result<BatchHeader, BatchError> {
    if buf.len() < HEADER_LEN {
        return Err(BatchError::Truncated {
            needed: HEADER_LEN,
            have: buf.len(),
        });
    }
    let batch_len = i32_at(buf, 8);
    let magic = buf[16] as i8;
    if magic != MAGIC_V2 {
        return Err(BatchError::UnsupportedMagic { magic });
    }
    if batch_len < (HEADER_LEN - LOG_OVERHEAD) as i32 {
        return Err(BatchError::InvalidLength { len: batch_len });
    }
    let total_len = batch_len as usize + LOG_OVERHEAD;
    if buf.len() < total_len {
        return Err(BatchError::Truncated {
            needed: total_len,
            have: buf.len(),
        });
    }
    Ok(BatchHeader {
        base_offset: i64_at(buf, 0),
        total_len,
        partition_leader_epoch: i32_at(buf, 12),
        attributes: i16_at(buf, 21),
        last_offset_delta: i32_at(buf, 23),
        base_timestamp: i64_at(buf, 27),
        max_timestamp: i64_at(buf, 35),
        producer_id: i64_at(buf, 43),
        producer_epoch: i16_at(buf, 51),
        base_sequence: i32_at(buf, 53),
        record_count: i32_at(buf, 57),
    })
}

/// Parse and fully validate one batch (header, CRC, counts).
pub fn validate(buf: &[u8]) -> Result<BatchHeader, BatchError> {
    let h = parse_header(buf)?;
    let stored = i32_at(buf, 17) as u32;
    let computed = crc32c::crc32c(&buf[CRC_START..h.total_len]);
    if stored != computed {
        return Err(BatchError::CrcMismatch { stored, computed });
    }
    // In i64: lastOffsetDelta may be i32::MAX (found by fuzz/record_batch).
    if h.last_offset_delta < 0 || h.record_count < 0 || i64::from(h.record_count) > h.offset_count()
    {
        return Err(BatchError::InvalidCount {
            last_offset_delta: h.last_offset_delta,
            record_count: h.record_count,
        });
    }
    Ok(h)
}

/// Validate a produce request's record set: one or more whole batches, nothing trailing.
pub fn validate_all(buf: &[u8]) -> Result<Vec<BatchHeader>, BatchError> {
    if buf.is_empty() {
        return Err(BatchError::Empty);
    }
    let mut out = Vec::with_capacity(1);
    let mut at = 0;
    while at < buf.len() {
        let h = validate(&buf[at..])?;
        at += h.total_len;
        out.push(h);
    }
    Ok(out)
}

/// Set the base offset and partition leader epoch of the batch at the start
/// of `buf`. Neither field is covered by the CRC, so the batch stays valid.
pub fn patch(buf: &mut BytesMut, base_offset: i64, leader_epoch: i32) {
    buf[0..8].copy_from_slice(&base_offset.to_be_bytes());
    buf[12..16].copy_from_slice(&leader_epoch.to_be_bytes());
}

/// Walk a buffer of concatenated, already-validated batches.
pub fn iter(buf: &Bytes) -> BatchIter {
    BatchIter {
        buf: buf.clone(),
        at: 0,
    }
}

/// Iterator over `(header, bytes)` of each batch in a buffer; stops at the
/// first malformed or partial batch.
pub struct BatchIter {
    buf: Bytes,
    at: usize,
}

impl Iterator for BatchIter {
    type Item = (BatchHeader, Bytes);

    fn next(&mut self) -> Option<Self::Item> {
        let h = parse_header(&self.buf[self.at..]).ok()?;
        let bytes = self.buf.slice(self.at..self.at + h.total_len);
        self.at += h.total_len;
        Some((h, bytes))
    }
}

/// Encode an uncompressed v2 record batch holding `values` (null keys, no
/// headers) at base offset 0, optionally from an idempotent producer
/// `(producer id, epoch, base sequence)`. For tools, tests and benchmarks:
/// the broker itself never re-encodes what clients send.
pub fn encode_uncompressed<V: AsRef<[u8]>>(
    values: &[V],
    producer: Option<(i64, i16, i32)>,
    ts: i64,
) -> BytesMut {
    let mut records = Vec::new();
    for (i, value) in values.iter().enumerate() {
        let value = value.as_ref();
        let mut body = Vec::with_capacity(value.len() + 8);
        body.push(0u8); // attributes
        put_varlong(&mut body, 0); // timestamp delta
        put_varlong(&mut body, i as i64); // offset delta
        put_varlong(&mut body, -1); // null key
        put_varlong(&mut body, value.len() as i64);
        body.extend_from_slice(value);
        put_varlong(&mut body, 0); // no headers
        put_varlong(&mut records, body.len() as i64);
        records.extend_from_slice(&body);
    }
    let n = values.len() as i32;
    let (pid, epoch, seq) = producer.unwrap_or((-1, -1, -1));
    let mut b = BytesMut::with_capacity(HEADER_LEN + records.len());
    b.extend_from_slice(&0i64.to_be_bytes()); // base offset
    b.extend_from_slice(&0i32.to_be_bytes()); // batch length, set below
    b.extend_from_slice(&(-1i32).to_be_bytes()); // partition leader epoch
    b.extend_from_slice(&[MAGIC_V2 as u8]);
    b.extend_from_slice(&0u32.to_be_bytes()); // crc, set below
    b.extend_from_slice(&0i16.to_be_bytes()); // attributes
    b.extend_from_slice(&(n - 1).to_be_bytes()); // last offset delta
    b.extend_from_slice(&ts.to_be_bytes()); // base timestamp
    b.extend_from_slice(&ts.to_be_bytes()); // max timestamp
    b.extend_from_slice(&pid.to_be_bytes());
    b.extend_from_slice(&epoch.to_be_bytes());
    b.extend_from_slice(&seq.to_be_bytes());
    b.extend_from_slice(&n.to_be_bytes()); // record count
    b.extend_from_slice(&records);
    let len = (b.len() - LOG_OVERHEAD) as i32;
    b[8..12].copy_from_slice(&len.to_be_bytes());
    let crc = crc32c::crc32c(&b[CRC_START..]);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    b
}

/// Zig-zag varint, as Kafka's record fields use.
fn put_varlong(out: &mut Vec<u8>, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        out.push((z as u8 & 0x7f) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

#[cfg(test)]
pub mod tests {
    use super::*;

    /// A valid uncompressed v2 batch with `n` small records.
    pub fn make_batch(n: i32, producer: Option<(i64, i16, i32)>, ts: i64) -> BytesMut {
        let values: Vec<String> = (0..n).map(|i| format!("value-{i}")).collect();
        encode_uncompressed(&values, producer, ts)
    }

    #[test]
    fn parses_and_validates_a_batch() {
        let b = make_batch(3, Some((7, 1, 10)), 1_000);
        let h = validate(&b).unwrap();
        assert_eq!(h.record_count, 3);
        assert_eq!(h.offset_count(), 3);
        assert_eq!(h.producer_id, 7);
        assert_eq!(h.base_sequence, 10);
        assert_eq!(h.last_sequence(), 12);
        assert_eq!(h.max_timestamp, 1_000);
        assert_eq!(h.total_len, b.len());
    }

    #[test]
    fn patch_keeps_crc_valid() {
        let mut b = make_batch(2, None, 5);
        patch(&mut b, 42, 3);
        let h = validate(&b).unwrap();
        assert_eq!(h.base_offset, 42);
        assert_eq!(h.partition_leader_epoch, 3);
        assert_eq!(h.last_offset(), 43);
    }

    #[test]
    fn refuses_corruption_truncation_and_trailing_bytes() {
        let b = make_batch(2, None, 5);
        let mut bad = b.clone();
        let last = bad.len() - 1;
        bad[last] ^= 0xff;
        assert!(matches!(
            validate(&bad),
            Err(BatchError::CrcMismatch { .. })
        ));
        assert!(matches!(
            validate(&b[..b.len() - 1]),
            Err(BatchError::Truncated { .. })
        ));
        let mut two = b.clone();
        two.extend_from_slice(&b);
        assert_eq!(validate_all(&two).unwrap().len(), 2);
        two.extend_from_slice(&[0, 1, 2]);
        assert!(validate_all(&two).is_err());
        let mut magic = b.clone();
        magic[16] = 1;
        assert!(matches!(
            validate(&magic),
            Err(BatchError::UnsupportedMagic { magic: 1 })
        ));
        assert_eq!(validate_all(&[]), Err(BatchError::Empty));
    }

    #[test]
    fn iterates_concatenated_batches() {
        let mut buf = make_batch(1, None, 1);
        patch(&mut buf, 0, 0);
        let mut second = make_batch(4, None, 2);
        patch(&mut second, 1, 0);
        buf.extend_from_slice(&second);
        let all: Vec<_> = iter(&buf.freeze()).map(|(h, _)| h.base_offset).collect();
        assert_eq!(all, vec![0, 1]);
    }
}
