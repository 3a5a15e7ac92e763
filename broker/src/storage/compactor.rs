//! Background maintenance of committed data: retention (`retention.ms`,
//! `retention.bytes`) raises the log start, and compaction rewrites runs of
//! small index entries (typically chunks of multi-partition upload objects)
//! into one per-partition object, so old data costs fewer GETs to read and
//! upload objects can be released.
//!
//! Both are controller commands that are conditional on what was read:
//! compaction's `ReplaceIndexEntries` is refused if any replaced entry
//! changed (a trim or another compaction won the race), and its new object is
//! then deleted at once — nothing names it. Released objects are returned to
//! the caller, which deletes them after the readers' grace period.

use bytes::BytesMut;
use floe_controller::model::{IndexEntry, ObjectMeta, PartitionId};

use super::uploader::now_ms;
use super::Storage;

/// Tuning for [`Storage::maintain`].
#[derive(Debug, Clone, Copy)]
pub struct CompactionConfig {
    /// Entries at least this large are left alone.
    pub small_entry_bytes: u64,
    /// A compacted object grows to at most this size.
    pub target_bytes: u64,
}

impl Default for CompactionConfig {
    fn default() -> Self {
        CompactionConfig {
            small_entry_bytes: 2 << 20,
            // One entry per compacted object, bounded like upload entries so
            // a catch-up read is one bounded range GET.
            target_bytes: super::uploader::MAX_ENTRY_BYTES as u64,
        }
    }
}

/// Per-partition retention limits; `None` keeps data forever.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Retention {
    pub ms: Option<i64>,
    pub bytes: Option<i64>,
}

/// What one maintenance pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Maintenance {
    pub trimmed_partitions: usize,
    pub compacted_runs: usize,
    /// Objects no index entry names any more: delete after the grace period.
    pub released: Vec<String>,
}

/// The new log start that retention allows, given the committed entries in
/// offset order. Pure, so it is tested without storage.
pub fn retention_start(
    entries: &[IndexEntry],
    retention: Retention,
    now_ms: i64,
    log_start: i64,
) -> i64 {
    let mut start = log_start;
    if let Some(ms) = retention.ms {
        let cutoff = now_ms.saturating_sub(ms);
        for e in entries {
            if e.max_timestamp >= cutoff {
                break;
            }
            start = start.max(e.end_offset);
        }
    }
    if let Some(limit) = retention.bytes {
        let from = start;
        let mut total: i64 = entries
            .iter()
            .filter(|e| e.end_offset > from)
            .map(|e| e.byte_len as i64)
            .sum();
        for e in entries.iter().filter(|e| e.end_offset > from) {
            if total <= limit {
                break;
            }
            total -= e.byte_len as i64;
            start = start.max(e.end_offset);
        }
    }
    start
}

/// Runs of at least two contiguous small entries, each run within the target
/// size. Pure.
pub fn compaction_runs(entries: &[IndexEntry], cfg: CompactionConfig) -> Vec<Vec<IndexEntry>> {
    let mut runs = Vec::new();
    let mut run: Vec<IndexEntry> = Vec::new();
    let mut bytes = 0u64;
    let flush = |run: &mut Vec<IndexEntry>, runs: &mut Vec<Vec<IndexEntry>>| {
        if run.len() >= 2 {
            runs.push(std::mem::take(run));
        } else {
            run.clear();
        }
    };
    for e in entries {
        let small = e.byte_len < cfg.small_entry_bytes;
        let contiguous = run.last().is_none_or(|l| l.end_offset == e.base_offset);
        if !small || !contiguous || bytes + e.byte_len > cfg.target_bytes {
            flush(&mut run, &mut runs);
            bytes = 0;
        }
        if small {
            bytes += e.byte_len;
            run.push(e.clone());
        }
    }
    flush(&mut run, &mut runs);
    runs
}

impl Storage {
    /// One pass of retention and compaction over every partition.
    pub async fn maintain(&self, cfg: CompactionConfig) -> Result<Maintenance, String> {
        let mut out = Maintenance::default();
        for id in self.partition_ids() {
            let index = self.index.clone();
            let (entries, retention, log_start) = tokio::task::spawn_blocking(move || {
                (index.entries(id), index.retention(id), index.log_start(id))
            })
            .await
            .map_err(|e| e.to_string())?;
            let Some(log_start) = log_start else { continue };
            let start = retention_start(&entries, retention, now_ms(), log_start);
            if start > log_start {
                let index = self.index.clone();
                let released = tokio::task::spawn_blocking(move || index.trim(id, start))
                    .await
                    .map_err(|e| e.to_string())??;
                self.set_log_start(id, start);
                out.trimmed_partitions += 1;
                out.released.extend(released);
                tracing::info!(partition = %id, log_start = start, "retention raised the log start");
            }
            let live: Vec<IndexEntry> = entries
                .into_iter()
                .filter(|e| e.end_offset > start)
                .collect();
            for run in compaction_runs(&live, cfg) {
                match self.compact_run(id, run).await {
                    Ok(released) => {
                        out.compacted_runs += 1;
                        out.released.extend(released);
                    }
                    Err(e) => tracing::warn!(partition = %id, error = %e, "compaction skipped"),
                }
            }
        }
        Ok(out)
    }

    /// Rewrite one run into a new per-partition object and swap it in.
    async fn compact_run(
        &self,
        id: PartitionId,
        run: Vec<IndexEntry>,
    ) -> Result<Vec<String>, String> {
        let mut body = BytesMut::new();
        for e in &run {
            // Never write what we cannot vouch for: each chunk must hold
            // exactly its entry's offsets, in batches whose CRCs match.
            let chunk = super::read::fetch_entry(&self.objects, e)
                .await
                .map_err(|e| e.to_string())?;
            body.extend_from_slice(&chunk);
        }
        let last = &run[run.len() - 1];
        let key = format!(
            "data/{}/{:013}-{}-c.floe",
            self.cfg.broker_id,
            now_ms(),
            uuid::Uuid::new_v4().simple()
        );
        let size = body.len() as u64;
        let replacement = IndexEntry {
            base_offset: run[0].base_offset,
            end_offset: last.end_offset,
            leader_epoch: last.leader_epoch,
            object_key: key.clone(),
            byte_start: 0,
            byte_len: size,
            max_timestamp: run.iter().map(|e| e.max_timestamp).max().unwrap_or(-1),
        };
        let object = ObjectMeta {
            key: key.clone(),
            size,
            created_ms: now_ms(),
            live_entries: 1,
        };
        self.objects
            .put_new(&key, body.freeze())
            .await
            .map_err(|e| e.to_string())?;
        let index = self.index.clone();
        let result =
            tokio::task::spawn_blocking(move || index.replace(id, run, replacement, object))
                .await
                .map_err(|e| e.to_string())?;
        if let Err(e) = &result {
            // Nothing names the new object: delete it now (the sweep would too).
            let _ = self.objects.delete(&key).await;
            return Err(format!("index refused the compaction: {e}"));
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(base: i64, end: i64, len: u64, ts: i64) -> IndexEntry {
        IndexEntry {
            base_offset: base,
            end_offset: end,
            leader_epoch: 0,
            object_key: format!("o{base}"),
            byte_start: 0,
            byte_len: len,
            max_timestamp: ts,
        }
    }

    #[test]
    fn retention_by_time_and_size() {
        let entries = vec![
            e(0, 10, 100, 1_000),
            e(10, 20, 100, 2_000),
            e(20, 30, 100, 3_000),
        ];
        let keep = Retention::default();
        assert_eq!(retention_start(&entries, keep, 10_000, 0), 0);
        let by_time = Retention {
            ms: Some(7_500),
            bytes: None,
        };
        // Cutoff 2_500: the first two entries are wholly older.
        assert_eq!(retention_start(&entries, by_time, 10_000, 0), 20);
        let by_size = Retention {
            ms: None,
            bytes: Some(150),
        };
        assert_eq!(retention_start(&entries, by_size, 10_000, 0), 20);
        let exact = Retention {
            ms: None,
            bytes: Some(300),
        };
        assert_eq!(retention_start(&entries, exact, 10_000, 0), 0);
        // Never moves the start backwards.
        assert_eq!(retention_start(&entries, keep, 10_000, 15), 15);
    }

    #[test]
    fn runs_are_contiguous_small_and_bounded() {
        let cfg = CompactionConfig {
            small_entry_bytes: 50,
            target_bytes: 100,
        };
        let entries = vec![
            e(0, 1, 10, 0),
            e(1, 2, 10, 0),
            e(2, 3, 60, 0), // large: breaks the run
            e(3, 4, 40, 0),
            e(4, 5, 40, 0),
            e(5, 6, 40, 0), // would exceed the target: new run
            e(6, 7, 10, 0),
        ];
        let runs: Vec<Vec<i64>> = compaction_runs(&entries, cfg)
            .iter()
            .map(|r| r.iter().map(|e| e.base_offset).collect())
            .collect();
        assert_eq!(runs, vec![vec![0, 1], vec![3, 4], vec![5, 6]]);
        assert!(compaction_runs(&entries[..1], cfg).is_empty());
    }
}
