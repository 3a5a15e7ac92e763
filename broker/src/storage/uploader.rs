//! The uploader: packs the durable-but-unuploaded data of many partitions into
//! one object, PUTs it under a fresh unique key, commits the index entries,
//! and then lets the WAL drop what the object now covers.
//!
//! Order matters for the durability argument: PUT → index commit → mark
//! committed → WAL trim. A crash between any two steps leaves the data in the
//! WAL (replayed and uploaded again under a new key); the earlier object is
//! an orphan that no index entry names.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use floe_controller::model::{IndexCommit, IndexEntry, ObjectMeta};

use super::partition::Partition;
use super::producer::ProducerStates;
use super::{CommitError, Storage, WalMode};

/// An object never grows past this; the rest waits for the next round.
const MAX_OBJECT_BYTES: usize = 64 << 20;
/// One index entry (one range GET for a catch-up reader) never exceeds this.
pub const MAX_ENTRY_BYTES: usize = 8 << 20;

pub(crate) async fn run(storage: Weak<Storage>) {
    let mut backoff = Duration::from_millis(50);
    let mut last_round = tokio::time::Instant::now();
    loop {
        // Wait without holding the storage, so dropping it ends this task.
        let Some((wake, interval)) = storage
            .upgrade()
            .map(|s| (s.upload_wake.clone(), s.cfg.upload_interval))
        else {
            return;
        };
        let timer = tokio::time::sleep_until(last_round + interval);
        let timed_out = tokio::select! {
            _ = wake.notified() => false,
            _ = timer => true,
        };
        let Some(s) = storage.upgrade() else { return };
        // Wakes that arrived during the last round leave a permit behind; only
        // a full object's worth, a flush or the interval justifies a PUT, so
        // objects stay large (few PUTs per GB).
        let flush = s.flush_requested.swap(false, Ordering::AcqRel);
        let due =
            timed_out || flush || s.pending_bytes.load(Ordering::Relaxed) >= s.cfg.upload_bytes;
        if !due {
            continue;
        }
        last_round = tokio::time::Instant::now();
        loop {
            match round(&s, flush).await {
                Ok(more) => {
                    backoff = Duration::from_millis(50);
                    if !more {
                        break;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "upload failed; data stays in the WAL and will be retried");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    break;
                }
            }
        }
        s.uploaded.send_modify(|v| *v += 1);
    }
}

struct Part {
    partition: Arc<Partition>,
    end: i64,
    bytes: usize,
    producers: ProducerStates,
}

/// What one partition contributes to an upload, taken under its lock.
struct Pending {
    batches: Vec<super::partition::TailBatch>,
    committed_end: i64,
    leader_epoch: i32,
    producers: ProducerStates,
}

/// One upload; `flush` when someone waits for it. Returns whether more data
/// is waiting (the object was full).
async fn round(s: &Storage, flush: bool) -> Result<bool, String> {
    let partitions: Vec<Arc<Partition>> = s
        .partitions
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .values()
        .cloned()
        .collect();
    let mut parts_bytes: Vec<Bytes> = Vec::new();
    let mut size = 0usize;
    let mut entries = Vec::new();
    let mut parts = Vec::new();
    let mut full = false;
    let key = object_key(s.cfg.broker_id);
    for p in partitions {
        if size >= MAX_OBJECT_BYTES {
            full = true;
            break;
        }
        // Only cheap handle clones under the lock: appenders must not wait
        // for the copy of an upload.
        let pending = {
            let st = p.lock();
            let limit = match s.cfg.wal_mode {
                WalMode::Volume => st.durable_end,
                WalMode::Object => st.next_offset,
            };
            Pending {
                batches: st.pending_upload(limit),
                committed_end: st.committed_end,
                leader_epoch: st.leader_epoch,
                producers: st.committed_producers.clone(),
            }
        };
        if pending.batches.is_empty() {
            continue;
        }
        let mut producers = pending.producers;
        let mut base = pending.committed_end;
        let mut end = base;
        let mut entry_start = size;
        let mut max_timestamp = -1;
        let part_start = size;
        let close_entry = |entries: &mut Vec<IndexCommit>,
                           producers: &ProducerStates,
                           base: i64,
                           end: i64,
                           from: usize,
                           to: usize,
                           max_ts: i64| {
            entries.push(IndexCommit {
                partition: p.id,
                entry: IndexEntry {
                    base_offset: base,
                    end_offset: end,
                    leader_epoch: pending.leader_epoch,
                    object_key: key.clone(),
                    byte_start: from as u64,
                    byte_len: (to - from) as u64,
                    max_timestamp: max_ts,
                },
                producers: producers.snapshots(),
            });
        };
        for b in &pending.batches {
            if size >= MAX_OBJECT_BYTES {
                full = true;
                break;
            }
            // Bounded entries keep catch-up reads to bounded range GETs.
            if size > entry_start && size - entry_start + b.bytes.len() > MAX_ENTRY_BYTES {
                close_entry(
                    &mut entries,
                    &producers,
                    base,
                    end,
                    entry_start,
                    size,
                    max_timestamp,
                );
                base = end;
                entry_start = size;
                max_timestamp = -1;
            }
            producers.observe(&b.header, b.base);
            parts_bytes.push(b.bytes.clone());
            size += b.bytes.len();
            end = b.end;
            max_timestamp = max_timestamp.max(b.max_timestamp);
        }
        if size > entry_start {
            close_entry(
                &mut entries,
                &producers,
                base,
                end,
                entry_start,
                size,
                max_timestamp,
            );
        }
        parts.push(Part {
            partition: p,
            end,
            bytes: size - part_start,
            producers,
        });
    }
    if entries.is_empty() {
        return Ok(false);
    }
    let started = std::time::Instant::now();
    let put = match s.cfg.wal_mode {
        // The data is durable in the WAL: its upload can use CPU time the
        // appends leave over (ADR 0017), until someone waits for it (a
        // flush or fence), the backlog nears the point where appends wait,
        // or it has waited half an upload interval.
        WalMode::Volume => {
            let urgent = || {
                flush
                    || s.flush_requested.load(Ordering::Acquire)
                    || s.pending_bytes.load(Ordering::Relaxed) > s.cfg.max_pending_bytes / 2
                    || started.elapsed() >= s.cfg.upload_interval / 2
            };
            s.objects
                .put_new_parts_background(&key, parts_bytes, urgent)
                .await
        }
        // Acks wait for this PUT.
        WalMode::Object => s.objects.put_new_parts(&key, parts_bytes).await,
    };
    put.map_err(|e| e.to_string())?;
    let entries_len = entries.len();
    let meta = ObjectMeta {
        key: key.clone(),
        size: size as u64,
        created_ms: now_ms(),
        live_entries: entries.len() as u64,
    };
    let put_ms = started.elapsed().as_secs_f64() * 1e3;
    let t_commit = std::time::Instant::now();
    let index = s.index.clone();
    let committed = tokio::task::spawn_blocking(move || index.commit(meta, entries))
        .await
        .map_err(|e| e.to_string())?;
    match committed {
        Ok(()) => {}
        Err(CommitError::LeadershipLost { partition, reason }) => {
            // The object stays an orphan (the sweep deletes it); the other
            // partitions go again in the next round, right away.
            tracing::warn!(?partition, %reason, "leadership lost: dropping the partition's uncommitted data (never acknowledged)");
            s.remove_partition(partition);
            return Ok(true);
        }
        Err(CommitError::Failed(e)) => return Err(format!("index commit of {key} failed: {e}")),
    }
    let commit_ms = t_commit.elapsed().as_secs_f64() * 1e3;
    let mut uploaded = 0;
    for part in parts {
        let mut st = part.partition.lock();
        st.committed(part.end, part.producers, s.cfg.hot_tail_bytes);
        if s.cfg.wal_mode == WalMode::Object && part.end > st.durable_end {
            st.durable_end = part.end;
            part.partition.hw.send_replace(part.end);
        }
        uploaded += part.bytes;
    }
    let _ = s
        .pending_bytes
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
            Some(v.saturating_sub(uploaded))
        });
    if let Some(wal) = &s.wal {
        let committed: HashMap<_, _> = s
            .partitions
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .map(|p| (p.id, p.lock().committed_end))
            .collect();
        wal.trim(committed);
    }
    tracing::debug!(
        key,
        size,
        partitions = entries_len,
        put_ms = format_args!("{put_ms:.1}"),
        commit_ms = format_args!("{commit_ms:.2}"),
        total_ms = format_args!("{:.1}", started.elapsed().as_secs_f64() * 1e3),
        "uploaded object"
    );
    Ok(full)
}

/// Keys are never reused: broker id, time and a random id. Time first keeps
/// listings roughly ordered, which helps the orphan sweep.
fn object_key(broker_id: i32) -> String {
    format!(
        "data/{broker_id}/{:013}-{}.floe",
        now_ms(),
        uuid::Uuid::new_v4().simple()
    )
}

pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
