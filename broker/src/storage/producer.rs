//! Idempotent-producer bookkeeping for one partition: which sequence numbers
//! each producer id has written, so retried batches are answered with their
//! original offsets instead of being written twice.
//!
//! The state is rebuilt by folding batch headers over the snapshot committed
//! with the object index, so it survives restarts and partition moves.

use std::collections::BTreeMap;

use floe_controller::model::ProducerSnapshot;

use crate::protocol::batch::BatchHeader;

/// Kafka keeps the last five batches per producer for duplicate detection.
const RECENT_BATCHES: usize = 5;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProducerStates {
    by_id: BTreeMap<i64, ProducerSnapshot>,
}

/// The verdict on an incoming batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SequenceCheck {
    /// Not idempotent, or the next expected sequence: append it.
    Append,
    /// A retry of a batch already written at `base_offset`.
    Duplicate { base_offset: i64 },
    /// A gap or reordering: `OUT_OF_ORDER_SEQUENCE_NUMBER`.
    OutOfOrder { expected: i32, got: i32 },
    /// An older producer epoch: `INVALID_PRODUCER_EPOCH`.
    StaleEpoch { current: i16, got: i16 },
    /// No state for this producer and the batch does not start a sequence.
    UnknownProducer,
}

impl ProducerStates {
    pub fn from_snapshots(snapshots: impl IntoIterator<Item = ProducerSnapshot>) -> Self {
        ProducerStates {
            by_id: snapshots.into_iter().map(|s| (s.producer_id, s)).collect(),
        }
    }

    pub fn snapshots(&self) -> Vec<ProducerSnapshot> {
        self.by_id.values().cloned().collect()
    }

    pub fn check(&self, h: &BatchHeader) -> SequenceCheck {
        if !h.is_idempotent() || h.base_sequence < 0 {
            return SequenceCheck::Append;
        }
        let Some(state) = self.by_id.get(&h.producer_id) else {
            return if h.base_sequence == 0 {
                SequenceCheck::Append
            } else {
                SequenceCheck::UnknownProducer
            };
        };
        if h.producer_epoch < state.producer_epoch {
            return SequenceCheck::StaleEpoch {
                current: state.producer_epoch,
                got: h.producer_epoch,
            };
        }
        if h.producer_epoch > state.producer_epoch {
            // A bumped epoch restarts the sequence.
            return if h.base_sequence == 0 {
                SequenceCheck::Append
            } else {
                SequenceCheck::OutOfOrder {
                    expected: 0,
                    got: h.base_sequence,
                }
            };
        }
        if let Some(&(_, _, base)) = state
            .batches
            .iter()
            .find(|(first, last, _)| *first == h.base_sequence && *last == h.last_sequence())
        {
            return SequenceCheck::Duplicate { base_offset: base };
        }
        let expected = match state.batches.last() {
            Some(&(_, last, _)) => next_sequence(last),
            None => 0,
        };
        if h.base_sequence == expected {
            SequenceCheck::Append
        } else {
            SequenceCheck::OutOfOrder {
                expected,
                got: h.base_sequence,
            }
        }
    }

    /// Record a batch written at `base_offset` (after [`check`](Self::check) said Append).
    pub fn observe(&mut self, h: &BatchHeader, base_offset: i64) {
        if !h.is_idempotent() || h.base_sequence < 0 {
            return;
        }
        let state = self
            .by_id
            .entry(h.producer_id)
            .or_insert_with(|| ProducerSnapshot {
                producer_id: h.producer_id,
                producer_epoch: h.producer_epoch,
                batches: Vec::new(),
            });
        if h.producer_epoch != state.producer_epoch {
            state.producer_epoch = h.producer_epoch;
            state.batches.clear();
        }
        state
            .batches
            .push((h.base_sequence, h.last_sequence(), base_offset));
        if state.batches.len() > RECENT_BATCHES {
            state.batches.remove(0);
        }
    }
}

fn next_sequence(last: i32) -> i32 {
    if last == i32::MAX {
        0
    } else {
        last + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::batch::{parse_header, tests::make_batch};

    fn header(pid: i64, epoch: i16, seq: i32, n: i32) -> BatchHeader {
        parse_header(&make_batch(n, Some((pid, epoch, seq)), 0)).unwrap()
    }

    #[test]
    fn accepts_in_order_and_detects_retries() {
        let mut s = ProducerStates::default();
        let a = header(1, 0, 0, 3);
        assert_eq!(s.check(&a), SequenceCheck::Append);
        s.observe(&a, 100);
        let b = header(1, 0, 3, 2);
        assert_eq!(s.check(&b), SequenceCheck::Append);
        s.observe(&b, 103);
        assert_eq!(s.check(&a), SequenceCheck::Duplicate { base_offset: 100 });
        assert_eq!(s.check(&b), SequenceCheck::Duplicate { base_offset: 103 });
        assert_eq!(
            s.check(&header(1, 0, 9, 1)),
            SequenceCheck::OutOfOrder {
                expected: 5,
                got: 9
            }
        );
    }

    #[test]
    fn epochs_and_unknown_producers() {
        let mut s = ProducerStates::default();
        s.observe(&header(1, 2, 0, 1), 0);
        assert_eq!(
            s.check(&header(1, 1, 1, 1)),
            SequenceCheck::StaleEpoch { current: 2, got: 1 }
        );
        assert_eq!(s.check(&header(1, 3, 0, 1)), SequenceCheck::Append);
        assert_eq!(s.check(&header(2, 0, 5, 1)), SequenceCheck::UnknownProducer);
    }

    #[test]
    fn keeps_five_batches_and_round_trips_snapshots() {
        let mut s = ProducerStates::default();
        for i in 0..7 {
            s.observe(&header(1, 0, i, 1), i64::from(i));
        }
        let snaps = s.snapshots();
        assert_eq!(snaps[0].batches.len(), 5);
        assert_eq!(snaps[0].batches[0], (2, 2, 2));
        assert_eq!(ProducerStates::from_snapshots(snaps), s);
    }
}
