//! Test helpers shared by the storage integration tests: build valid v2
//! record batches, and read a partition back through `Storage::read`,
//! checking CRCs, offset contiguity and decoding every record.
#![allow(dead_code)]

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use floe_broker::protocol::batch;
use floe_broker::storage::{Storage, StorageConfig, WalMode};
use floe_controller::model::PartitionId;
use kafka_protocol::records::RecordBatchDecoder;

/// A valid uncompressed v2 record batch (no producer id) holding `values`.
pub fn make_batch(values: &[Vec<u8>], ts: i64) -> Bytes {
    batch::encode_uncompressed(values, None, ts).freeze()
}

/// A partition read back from offset 0 to its high watermark.
pub struct ReadBack {
    /// Every batch, concatenated, exactly as `Storage::read` returned them.
    pub bytes: Bytes,
    /// `(offset, value)` of every record, in offset order.
    pub records: Vec<(i64, Bytes)>,
}

/// Read `id` from its log start to the high watermark, asserting that every
/// batch has a valid CRC, that batches tile the offsets with no gap or
/// overlap, and that record offsets inside each batch are contiguous.
pub async fn read_all(storage: &Storage, id: PartitionId) -> ReadBack {
    let wm = storage.watermarks(id).expect("partition is open");
    let mut offset = wm.log_start;
    let mut all = BytesMut::new();
    let mut records = Vec::new();
    while offset < wm.high_watermark {
        let chunk =
            tokio::time::timeout(Duration::from_secs(10), storage.read(id, offset, 256 << 10))
                .await
                .expect("read timed out")
                .unwrap_or_else(|e| panic!("read of {id:?} at {offset} failed: {e}"));
        assert!(
            !chunk.is_empty(),
            "read of {id:?} at {offset} returned nothing below the high watermark {}",
            wm.high_watermark
        );
        let mut at = 0;
        while at < chunk.len() {
            let h = batch::validate(&chunk[at..]).unwrap_or_else(|e| {
                panic!("bad batch in {id:?} at offset {offset} (byte {at}): {e}")
            });
            assert_eq!(
                h.base_offset, offset,
                "{id:?}: batch starts at {} but the log continues at {offset} (gap or overlap)",
                h.base_offset
            );
            let mut one = chunk.slice(at..at + h.total_len);
            let set = RecordBatchDecoder::decode(&mut one).expect("batch decodes");
            assert_eq!(
                set.records.len() as i64,
                h.offset_count(),
                "{id:?}: record count"
            );
            for (i, r) in set.records.iter().enumerate() {
                assert_eq!(r.offset, offset + i as i64, "{id:?}: record offset");
                records.push((r.offset, r.value.clone().unwrap_or_default()));
            }
            offset += h.offset_count();
            at += h.total_len;
        }
        all.extend_from_slice(&chunk);
    }
    assert_eq!(
        offset, wm.high_watermark,
        "{id:?}: the last batch overruns the high watermark"
    );
    ReadBack {
        bytes: all.freeze(),
        records,
    }
}

/// Engine settings for small, fast tests: tiny objects, short intervals.
pub fn small_config(mode: WalMode, wal_dir: std::path::PathBuf) -> StorageConfig {
    StorageConfig {
        wal_mode: mode,
        wal_dir,
        wal_segment_bytes: 256 << 10,
        broker_id: 1,
        upload_bytes: 16 << 10,
        upload_interval: Duration::from_millis(20),
        hot_tail_bytes: 0,
        cache_bytes: 1 << 20,
        max_pending_bytes: 8 << 20,
    }
}
