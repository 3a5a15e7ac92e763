//! One partition on its leader: the four watermarks and the in-memory tail.
//!
//! Watermarks, always `log_start <= committed_end <= durable_end <= next_offset`
//! except that `log_start` may exceed `committed_end` after DeleteRecords:
//! - `next_offset` (appended): offsets are assigned here, under the lock;
//! - `durable_end`: WAL fsynced (`volume`) or object committed (`object`);
//!   producers are acknowledged here and consumers read below it (the high
//!   watermark), so a reader never sees data that a crash could take back;
//! - `committed_end`: in an object named by the committed index.
//!
//! The tail holds every batch from `committed_end` on (not yet in object
//! storage) plus a bounded amount of committed data for hot readers.

use std::collections::VecDeque;
use std::sync::Mutex;

use bytes::{Bytes, BytesMut};
use floe_controller::model::{PartitionId, ProducerSnapshot};
use tokio::sync::watch;

use crate::protocol::batch::{self, BatchHeader};
use crate::storage::producer::{ProducerStates, SequenceCheck};

#[derive(Debug, Clone)]
pub struct TailBatch {
    pub base: i64,
    pub end: i64,
    pub max_timestamp: i64,
    pub header: BatchHeader,
    pub bytes: Bytes,
}

#[derive(Debug)]
pub struct PartitionState {
    pub leader_epoch: i32,
    pub log_start: i64,
    pub next_offset: i64,
    pub durable_end: i64,
    pub committed_end: i64,
    pub tail: VecDeque<TailBatch>,
    pub tail_bytes: usize,
    /// Producer state as of `next_offset`.
    pub producers: ProducerStates,
    /// Producer state as of `committed_end` (what the next commit builds on).
    pub committed_producers: ProducerStates,
    /// Set by fencing: appends are refused from then on.
    pub fenced: bool,
    /// The partition was dropped (topic deleted): nothing will become durable.
    pub removed: bool,
}

/// Outcome of assigning offsets to a produce request's batches.
#[derive(Debug)]
pub enum Assigned {
    /// New batches, to be made durable; `end` is exclusive.
    Appended {
        base: i64,
        end: i64,
        batches: Vec<TailBatch>,
    },
    /// A retried idempotent batch: already written at `base`.
    Duplicate {
        base: i64,
        end: i64,
    },
    Rejected(SequenceCheck),
    Fenced,
}

pub struct Partition {
    pub id: PartitionId,
    pub state: Mutex<PartitionState>,
    /// Publishes `durable_end` (the high watermark) to long-polling readers.
    pub hw: watch::Sender<i64>,
    /// Until then (a partition that just moved here), an object-mode append
    /// uploads at once instead of waiting for the batch window: producers
    /// that waited through the move are acknowledged without a second wait.
    pub eager_until: Option<std::time::Instant>,
    /// Bytes appended and bytes read since it was opened (for balancing by
    /// load).
    pub bytes_in: std::sync::atomic::AtomicU64,
    pub bytes_out: std::sync::atomic::AtomicU64,
}

impl Partition {
    pub fn new(
        id: PartitionId,
        leader_epoch: i32,
        log_start: i64,
        committed_end: i64,
        producers: Vec<ProducerSnapshot>,
    ) -> Partition {
        let producers = ProducerStates::from_snapshots(producers);
        Partition {
            id,
            state: Mutex::new(PartitionState {
                leader_epoch,
                log_start,
                next_offset: committed_end,
                durable_end: committed_end,
                committed_end,
                tail: VecDeque::new(),
                tail_bytes: 0,
                producers: producers.clone(),
                committed_producers: producers,
                fenced: false,
                removed: false,
            }),
            hw: watch::channel(committed_end).0,
            eager_until: None,
            bytes_in: Default::default(),
            bytes_out: Default::default(),
        }
    }

    pub fn lock(&self) -> std::sync::MutexGuard<'_, PartitionState> {
        // A panic while holding the lock is a bug; keep serving with the state as it is.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Raise the durable watermark (never lowers it) and wake readers.
    pub fn mark_durable(&self, end: i64) {
        let mut s = self.lock();
        if end > s.durable_end {
            s.durable_end = end;
            self.hw.send_replace(end);
        }
    }
}

impl PartitionState {
    /// Check sequences, assign offsets and push the batches onto the tail.
    /// `headers` come from [`batch::validate_all`] over `records`.
    pub fn assign(&mut self, records: &[u8], headers: &[BatchHeader]) -> Assigned {
        if self.fenced {
            return Assigned::Fenced;
        }
        if let [h] = headers {
            match self.producers.check(h) {
                SequenceCheck::Append => {}
                SequenceCheck::Duplicate { base_offset } => {
                    return Assigned::Duplicate {
                        base: base_offset,
                        end: base_offset + h.offset_count(),
                    }
                }
                other => return Assigned::Rejected(other),
            }
        } else {
            // Several batches in one request: all must be in sequence, none a retry.
            let mut scratch = self.producers.clone();
            let mut next = self.next_offset;
            for h in headers {
                match scratch.check(h) {
                    SequenceCheck::Append => scratch.observe(h, next),
                    SequenceCheck::Duplicate { .. } => {
                        return Assigned::Rejected(SequenceCheck::OutOfOrder {
                            expected: -1,
                            got: h.base_sequence,
                        })
                    }
                    other => return Assigned::Rejected(other),
                }
                next += h.offset_count();
            }
        }
        let base = self.next_offset;
        let mut at = 0;
        let mut out = Vec::with_capacity(headers.len());
        for h in headers {
            let mut bytes = BytesMut::from(&records[at..at + h.total_len]);
            at += h.total_len;
            let offset = self.next_offset;
            batch::patch(&mut bytes, offset, self.leader_epoch);
            self.producers.observe(h, offset);
            let end = offset + h.offset_count();
            let tb = TailBatch {
                base: offset,
                end,
                max_timestamp: h.max_timestamp,
                header: BatchHeader {
                    base_offset: offset,
                    ..*h
                },
                bytes: bytes.freeze(),
            };
            self.tail_bytes += tb.bytes.len();
            self.tail.push_back(tb.clone());
            out.push(tb);
            self.next_offset = end;
        }
        Assigned::Appended {
            base,
            end: self.next_offset,
            batches: out,
        }
    }

    /// Re-apply a batch recovered from the WAL (already patched with its offset).
    pub fn replay(&mut self, bytes: Bytes) -> Result<(), String> {
        let h = batch::parse_header(&bytes).map_err(|e| e.to_string())?;
        if h.base_offset != self.next_offset {
            return Err(format!(
                "WAL batch at offset {} does not continue the log at {}",
                h.base_offset, self.next_offset
            ));
        }
        self.producers.observe(&h, h.base_offset);
        let end = h.base_offset + h.offset_count();
        self.tail_bytes += bytes.len();
        self.tail.push_back(TailBatch {
            base: h.base_offset,
            end,
            max_timestamp: h.max_timestamp,
            header: h,
            bytes,
        });
        self.next_offset = end;
        Ok(())
    }

    pub fn tail_start(&self) -> i64 {
        self.tail.front().map_or(self.next_offset, |b| b.base)
    }

    /// Index of the tail batch containing `offset`.
    fn tail_position(&self, offset: i64) -> usize {
        self.tail.partition_point(|b| b.end <= offset)
    }

    /// Batches from the one containing `offset`, below `limit`, up to `max_bytes`
    /// (the first batch is always included so a large batch is never stuck).
    pub fn read_tail(&self, offset: i64, limit: i64, max_bytes: usize) -> Option<Bytes> {
        if offset < self.tail_start() || offset >= limit {
            return None;
        }
        let mut out = BytesMut::new();
        for b in self.tail.iter().skip(self.tail_position(offset)) {
            if b.end > limit || (!out.is_empty() && out.len() + b.bytes.len() > max_bytes) {
                break;
            }
            out.extend_from_slice(&b.bytes);
        }
        Some(out.freeze())
    }

    /// The batches in `[committed_end, limit)`, for the next upload.
    pub fn pending_upload(&self, limit: i64) -> Vec<TailBatch> {
        let from = self.tail_position(self.committed_end);
        self.tail
            .iter()
            .skip(from)
            .take_while(|b| b.end <= limit)
            .cloned()
            .collect()
    }

    /// Record a successful commit and drop committed batches beyond the hot budget.
    pub fn committed(&mut self, end: i64, producers: ProducerStates, hot_bytes: usize) {
        if end > self.committed_end {
            self.committed_end = end;
            self.committed_producers = producers;
        }
        while self.tail_bytes > hot_bytes {
            match self.tail.front() {
                Some(b) if b.end <= self.committed_end => {
                    self.tail_bytes -= b.bytes.len();
                    self.tail.pop_front();
                }
                _ => break,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::batch::tests::make_batch;
    use uuid::Uuid;

    fn part() -> Partition {
        Partition::new(
            PartitionId {
                topic_id: Uuid::nil(),
                partition: 0,
            },
            0,
            0,
            0,
            vec![],
        )
    }

    fn append(s: &mut PartitionState, n: i32, producer: Option<(i64, i16, i32)>) -> Assigned {
        let b = make_batch(n, producer, 10);
        let h = batch::validate_all(&b).unwrap();
        s.assign(&b, &h)
    }

    #[test]
    fn assigns_contiguous_offsets_and_patches_batches() {
        let p = part();
        let mut s = p.lock();
        assert!(matches!(
            append(&mut s, 3, None),
            Assigned::Appended {
                base: 0,
                end: 3,
                ..
            }
        ));
        match append(&mut s, 2, None) {
            Assigned::Appended { base, end, batches } => {
                assert_eq!((base, end), (3, 5));
                let h = batch::validate(&batches[0].bytes).unwrap();
                assert_eq!(h.base_offset, 3);
            }
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(s.next_offset, 5);
        // Nothing is readable before it is durable.
        assert!(s.read_tail(0, s.durable_end, 1 << 20).is_none());
        s.durable_end = 5;
        let all = s.read_tail(1, 5, 1 << 20).unwrap();
        let offsets: Vec<_> = batch::iter(&all).map(|(h, _)| h.base_offset).collect();
        assert_eq!(offsets, vec![0, 3]);
        // max_bytes still returns the first batch.
        let one = s.read_tail(3, 5, 1).unwrap();
        assert_eq!(batch::iter(&one).count(), 1);
    }

    #[test]
    fn idempotent_retry_returns_original_offsets() {
        let p = part();
        let mut s = p.lock();
        append(&mut s, 1, None);
        assert!(matches!(
            append(&mut s, 2, Some((9, 0, 0))),
            Assigned::Appended { base: 1, .. }
        ));
        assert!(matches!(
            append(&mut s, 2, Some((9, 0, 0))),
            Assigned::Duplicate { base: 1, end: 3 }
        ));
        assert!(matches!(
            append(&mut s, 1, Some((9, 0, 5))),
            Assigned::Rejected(SequenceCheck::OutOfOrder { .. })
        ));
        assert_eq!(s.next_offset, 3);
    }

    #[test]
    fn commit_keeps_uncommitted_and_hot_batches() {
        let p = part();
        let mut s = p.lock();
        for _ in 0..4 {
            append(&mut s, 1, None);
        }
        s.durable_end = 4;
        assert_eq!(s.pending_upload(4).len(), 4);
        s.committed(2, ProducerStates::default(), 0);
        // Only committed batches are evicted, even with a zero hot budget.
        assert_eq!(s.tail_start(), 2);
        assert_eq!(s.pending_upload(4).len(), 2);
        s.fenced = true;
        assert!(matches!(append(&mut s, 1, None), Assigned::Fenced));
    }
}
