//! The read path of [`Storage`]: the hot tail from memory, older data by
//! range reads of committed objects through the block cache, and lookups
//! by timestamp.

use std::sync::atomic::Ordering;

use bytes::Bytes;
use floe_controller::model::{IndexEntry, PartitionId};

use super::objects::{Objects, ObjectsError};
use super::partition::Partition;
use super::{ReadError, Storage};
use crate::protocol::batch;

impl Storage {
    /// Read batches from the one containing `offset`, up to about `max_bytes`.
    /// Returns empty bytes at the high watermark.
    pub async fn read(
        &self,
        id: PartitionId,
        offset: i64,
        max_bytes: usize,
    ) -> Result<Bytes, ReadError> {
        let p = self.partition(id).ok_or(ReadError::UnknownPartition)?;
        let read = self.read_from(&p, id, offset, max_bytes).await;
        if let Ok(bytes) = &read {
            p.bytes_out.fetch_add(bytes.len() as u64, Ordering::Relaxed);
        }
        read
    }

    async fn read_from(
        &self,
        p: &Partition,
        id: PartitionId,
        offset: i64,
        max_bytes: usize,
    ) -> Result<Bytes, ReadError> {
        let hw = {
            let s = p.lock();
            if offset < s.log_start || offset > s.durable_end {
                return Err(ReadError::OffsetOutOfRange {
                    offset,
                    log_start: s.log_start,
                    high_watermark: s.durable_end,
                });
            }
            if offset == s.durable_end {
                return Ok(Bytes::new());
            }
            if let Some(bytes) = s.read_tail(offset, s.durable_end, max_bytes) {
                return Ok(bytes);
            }
            s.durable_end
        };
        self.read_objects(id, offset, hw, max_bytes).await
    }

    async fn read_objects(
        &self,
        id: PartitionId,
        offset: i64,
        hw: i64,
        max_bytes: usize,
    ) -> Result<Bytes, ReadError> {
        let entry = self.lookup(id, offset).await?;
        let chunk = self.load_chunk(&entry).await?;
        // Read ahead: warm the next chunk for sequential catch-up readers.
        if entry.end_offset < hw {
            if let Ok(next) = self.lookup(id, entry.end_offset).await {
                if !self.cache.contains(&next.object_key, next.byte_start) {
                    let me = self.me.clone();
                    tokio::spawn(async move {
                        if let Some(me) = me.upgrade() {
                            // A failed read-ahead only costs a later miss.
                            let _ = me.load_chunk(&next).await;
                        }
                    });
                }
            }
        }
        let mut start = None;
        let mut end = 0;
        let mut at = 0usize;
        for (h, b) in batch::iter(&chunk) {
            let len = b.len();
            if h.base_offset + h.offset_count() > offset && h.base_offset < hw {
                if start.is_none() {
                    start = Some(at);
                } else if at + len - start.unwrap_or(0) > max_bytes {
                    break;
                }
                end = at + len;
            }
            at += len;
        }
        match start {
            Some(s) => Ok(chunk.slice(s..end)),
            None => Ok(Bytes::new()),
        }
    }

    async fn lookup(&self, id: PartitionId, offset: i64) -> Result<IndexEntry, ReadError> {
        let index = self.index.clone();
        tokio::task::spawn_blocking(move || index.entry_at(id, offset))
            .await
            .map_err(|e| ReadError::Objects(e.to_string()))?
            .ok_or_else(|| ReadError::Objects(format!("no object holds offset {offset}")))
    }

    async fn load_chunk(&self, e: &IndexEntry) -> Result<Bytes, ReadError> {
        self.cache
            .get_or_load(&e.object_key, e.byte_start, || {
                let objects = self.objects.clone();
                let entry = e.clone();
                async move { fetch_entry(&objects, &entry).await }
            })
            .await
            .map_err(|e| ReadError::Objects(e.to_string()))
    }

    /// First offset whose record timestamp reaches `ts`, with that timestamp.
    pub async fn offset_for_timestamp(
        &self,
        id: PartitionId,
        ts: i64,
    ) -> Result<Option<(i64, i64)>, ReadError> {
        let p = self.partition(id).ok_or(ReadError::UnknownPartition)?;
        let index = self.index.clone();
        let entry = tokio::task::spawn_blocking(move || index.entry_for_timestamp(id, ts))
            .await
            .map_err(|e| ReadError::Objects(e.to_string()))?;
        let log_start = p.lock().log_start;
        let live = |h: &batch::BatchHeader| h.base_offset + h.offset_count() > log_start;
        if let Some(e) = entry {
            let chunk = self.load_chunk(&e).await?;
            if let Some((h, b)) =
                batch::iter(&chunk).find(|(h, _)| h.max_timestamp >= ts && live(h))
            {
                return Ok(Some(clamp(
                    record_at_or_after(&b, ts).unwrap_or((h.base_offset, h.max_timestamp)),
                    log_start,
                )));
            }
        }
        let s = p.lock();
        let found = s
            .tail
            .iter()
            .filter(|b| b.end <= s.durable_end && live(&b.header))
            .find(|b| b.max_timestamp >= ts)
            .map(|b| record_at_or_after(&b.bytes, ts).unwrap_or((b.base, b.max_timestamp)));
        Ok(found.map(|f| clamp(f, log_start)))
    }

    /// The offset and timestamp of the record with the largest timestamp.
    pub async fn max_timestamp(&self, id: PartitionId) -> Result<Option<(i64, i64)>, ReadError> {
        let p = self.partition(id).ok_or(ReadError::UnknownPartition)?;
        let index = self.index.clone();
        let entry = tokio::task::spawn_blocking(move || index.entry_with_max_timestamp(id))
            .await
            .map_err(|e| ReadError::Objects(e.to_string()))?;
        let tail_best = {
            let s = p.lock();
            s.tail
                .iter()
                .filter(|b| b.end <= s.durable_end && b.end > s.committed_end)
                .max_by_key(|b| b.max_timestamp)
                .map(|b| (b.max_timestamp, b.bytes.clone()))
        };
        let mut best: Option<(i64, Bytes)> = tail_best;
        if let Some(e) = entry {
            if best.as_ref().is_none_or(|(ts, _)| e.max_timestamp > *ts) {
                let chunk = self.load_chunk(&e).await?;
                if let Some((h, b)) = batch::iter(&chunk).max_by_key(|(h, _)| h.max_timestamp) {
                    best = Some((h.max_timestamp, b));
                }
            }
        }
        Ok(best.and_then(|(ts, b)| {
            let h = batch::parse_header(&b).ok()?;
            Some(record_at_or_after(&b, ts).unwrap_or((h.last_offset(), ts)))
        }))
    }
}

/// The bytes index entry `e` names, checked batch by batch (CRC-32C,
/// framing, offsets from the entry's base to its end, nothing trailing)
/// before anyone serves, caches or rewrites them. A chunk that fails the
/// check is fetched once more (a bad read is not a bad object); failing
/// again, it is an error, so a consumer gets `KAFKA_STORAGE_ERROR` and
/// retries instead of garbage, and compaction never copies it.
pub(super) async fn fetch_entry(objects: &Objects, e: &IndexEntry) -> Result<Bytes, ObjectsError> {
    let range = e.byte_start..e.byte_start + e.byte_len;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let chunk = objects.get_range(&e.object_key, range.clone()).await?;
        let checked = if chunk.len() <= CHECK_INLINE_BYTES {
            check_entry(&chunk, e)
        } else {
            let (chunk, entry) = (chunk.clone(), e.clone());
            tokio::task::spawn_blocking(move || check_entry(&chunk, &entry))
                .await
                .unwrap_or_else(|join| Err(format!("the check did not finish: {join}")))
        };
        match checked {
            Ok(()) => return Ok(chunk),
            Err(reason) if attempt < 2 => {
                tracing::warn!(key = %e.object_key, start = range.start, end = range.end, %reason, "object range failed its check; reading it again");
            }
            Err(reason) => {
                tracing::error!(key = %e.object_key, start = range.start, end = range.end, %reason, "object range is corrupt");
                return Err(ObjectsError::Corrupt {
                    key: e.object_key.clone(),
                    start: range.start,
                    end: range.end,
                    reason,
                });
            }
        }
    }
}

/// Chunks up to this size are checked on the runtime (a CRC-32C of 256 KiB
/// takes tens of microseconds); larger ones on a blocking thread.
const CHECK_INLINE_BYTES: usize = 256 * 1024;

/// Whether `chunk` is exactly index entry `e`'s batches.
pub(super) fn check_entry(chunk: &[u8], e: &IndexEntry) -> Result<(), String> {
    let headers = batch::validate_all(chunk).map_err(|err| err.to_string())?;
    let mut expected = e.base_offset;
    for h in &headers {
        if h.base_offset != expected {
            return Err(format!(
                "a batch at offset {} where {expected} was expected",
                h.base_offset
            ));
        }
        expected = h.base_offset + h.offset_count();
    }
    if expected != e.end_offset {
        return Err(format!(
            "the batches end at offset {expected}, the index entry at {}",
            e.end_offset
        ));
    }
    Ok(())
}

fn clamp((offset, ts): (i64, i64), log_start: i64) -> (i64, i64) {
    (offset.max(log_start), ts)
}

/// Decode a batch's records (decompressing if needed) and find the first
/// whose timestamp reaches `ts`. `None` if the batch cannot be decoded.
fn record_at_or_after(batch_bytes: &Bytes, ts: i64) -> Option<(i64, i64)> {
    let h = batch::parse_header(batch_bytes).ok()?;
    // Refuse absurd counts before the decoder allocates for them.
    if h.record_count < 0 || h.record_count > 1_000_000 {
        return None;
    }
    let mut buf = batch_bytes.clone();
    let set = kafka_protocol::records::RecordBatchDecoder::decode(&mut buf).ok()?;
    set.records
        .iter()
        .find(|r| r.timestamp >= ts)
        .map(|r| (r.offset, r.timestamp))
}
