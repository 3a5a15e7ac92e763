//! The object-index commands: committing an uploaded object, trimming a
//! partition's log start, and forgetting an object.
//!
//! Contract: as for every command, all checks come before any change, and
//! an object's `live_entries` always equals the number of index entries
//! naming it; an object leaves the state when that count reaches zero.

use std::collections::{BTreeMap, BTreeSet};

use super::{ApplyError, Outcome};
use crate::model::{IndexCommit, IndexEntry, MetadataState, ObjectMeta, PartitionId};

/// Records the object and its entries. Each entry must carry the partition's
/// current leader epoch (this is where a deposed leader is fenced) and start
/// exactly where the partition's committed data ends, so offsets are never
/// reused or skipped. An entry can never start below `log_start_offset`:
/// trims stop at `committed_end`, where the next entry must begin.
pub(super) fn commit_object(
    state: &mut MetadataState,
    object: &ObjectMeta,
    entries: &[IndexCommit],
) -> Result<Outcome, ApplyError> {
    if entries.is_empty() {
        return Err(ApplyError::EmptyCommit {
            key: object.key.clone(),
        });
    }
    if state.objects.contains_key(&object.key) {
        return Err(ApplyError::ObjectExists {
            key: object.key.clone(),
        });
    }
    // Where each partition's next entry must start, following earlier
    // entries of this same commit.
    let mut next_base: BTreeMap<PartitionId, i64> = BTreeMap::new();
    for commit in entries {
        let id = commit.partition;
        let partition = state
            .partition(id)
            .ok_or(ApplyError::UnknownPartition { partition: id })?;
        let entry = &commit.entry;
        if entry.leader_epoch != partition.leader_epoch {
            return Err(ApplyError::StaleLeaderEpoch {
                partition: id,
                committed_epoch: entry.leader_epoch,
                current_epoch: partition.leader_epoch,
            });
        }
        let expected_base = next_base
            .get(&id)
            .copied()
            .unwrap_or(partition.committed_end);
        if entry.base_offset != expected_base {
            return Err(ApplyError::NonContiguousCommit {
                partition: id,
                expected_base,
                got_base: entry.base_offset,
            });
        }
        if entry.end_offset <= entry.base_offset {
            return Err(ApplyError::EmptyOffsetRange {
                partition: id,
                base_offset: entry.base_offset,
                end_offset: entry.end_offset,
            });
        }
        if entry.object_key != object.key {
            return Err(ApplyError::ObjectKeyMismatch {
                partition: id,
                object_key: object.key.clone(),
                entry_key: entry.object_key.clone(),
            });
        }
        let byte_end = entry.byte_start.checked_add(entry.byte_len);
        if entry.byte_len == 0 || byte_end.is_none_or(|end| end > object.size) {
            return Err(ApplyError::InvalidByteRange {
                partition: id,
                key: object.key.clone(),
                byte_start: entry.byte_start,
                byte_len: entry.byte_len,
                size: object.size,
            });
        }
        next_base.insert(id, entry.end_offset);
    }

    for commit in entries {
        // Every partition was found above and nothing has been removed since.
        let Some(partition) = state.partition_mut(commit.partition) else {
            continue;
        };
        let entry = &commit.entry;
        partition.index.insert(entry.base_offset, entry.clone());
        partition.committed_end = entry.end_offset;
        partition.producers = commit
            .producers
            .iter()
            .map(|snapshot| (snapshot.producer_id, snapshot.clone()))
            .collect();
    }
    state.objects.insert(
        object.key.clone(),
        ObjectMeta {
            // The proposer's count is ignored: the entries are the truth.
            live_entries: entries.len() as u64,
            ..object.clone()
        },
    );
    Ok(Outcome::Done)
}

/// Raises the log start offset and drops the entries wholly below it.
/// Asking for an offset below the current start keeps the current start (a
/// retried or reordered trim must not fail), but still drops entries below it.
pub(super) fn trim_partition(
    state: &mut MetadataState,
    id: PartitionId,
    requested: i64,
) -> Result<Outcome, ApplyError> {
    let partition = state
        .partition(id)
        .ok_or(ApplyError::UnknownPartition { partition: id })?;
    if requested < 0 || requested > partition.committed_end {
        return Err(ApplyError::InvalidOffset {
            partition: id,
            requested,
            committed_end: partition.committed_end,
        });
    }
    let Some(partition) = state.partition_mut(id) else {
        return Ok(Outcome::ObjectsReleased { keys: Vec::new() });
    };
    let start = partition.log_start_offset.max(requested);
    partition.log_start_offset = start;
    let mut dropped = Vec::new();
    while let Some(first) = partition.index.first_entry() {
        if first.get().end_offset > start {
            break;
        }
        dropped.push(first.remove());
    }
    let keys = release(&mut state.objects, &dropped);
    Ok(Outcome::ObjectsReleased { keys })
}

/// Replaces a contiguous run of entries by one entry in a new object
/// (compaction). Conditional: every replaced entry must still be in the index
/// exactly as given, so a compaction that raced with a trim, a delete or
/// another compaction is refused and its object becomes an orphan.
pub(super) fn replace_index_entries(
    state: &mut MetadataState,
    id: PartitionId,
    replaced: &[IndexEntry],
    replacement: &IndexEntry,
    object: &ObjectMeta,
) -> Result<Outcome, ApplyError> {
    let invalid = |reason: String| ApplyError::InvalidReplacement {
        partition: id,
        reason,
    };
    let partition = state
        .partition(id)
        .ok_or(ApplyError::UnknownPartition { partition: id })?;
    let (Some(first), Some(last)) = (replaced.first(), replaced.last()) else {
        return Err(invalid("no entries to replace".into()));
    };
    if state.objects.contains_key(&object.key) {
        return Err(ApplyError::ObjectExists {
            key: object.key.clone(),
        });
    }
    for pair in replaced.windows(2) {
        if pair[0].end_offset != pair[1].base_offset {
            return Err(invalid(format!(
                "replaced entries are not contiguous at offset {}",
                pair[0].end_offset
            )));
        }
    }
    for entry in replaced {
        if partition.index.get(&entry.base_offset) != Some(entry) {
            return Err(ApplyError::ReplacedEntryChanged {
                partition: id,
                base_offset: entry.base_offset,
            });
        }
    }
    if replacement.base_offset != first.base_offset || replacement.end_offset != last.end_offset {
        return Err(invalid(format!(
            "replacement covers {}..{} but the replaced entries cover {}..{}",
            replacement.base_offset, replacement.end_offset, first.base_offset, last.end_offset
        )));
    }
    if replacement.object_key != object.key {
        return Err(ApplyError::ObjectKeyMismatch {
            partition: id,
            object_key: object.key.clone(),
            entry_key: replacement.object_key.clone(),
        });
    }
    let byte_end = replacement.byte_start.checked_add(replacement.byte_len);
    if replacement.byte_len == 0 || byte_end.is_none_or(|end| end > object.size) {
        return Err(ApplyError::InvalidByteRange {
            partition: id,
            key: object.key.clone(),
            byte_start: replacement.byte_start,
            byte_len: replacement.byte_len,
            size: object.size,
        });
    }
    let Some(partition) = state.partition_mut(id) else {
        return Ok(Outcome::ObjectsReleased { keys: Vec::new() });
    };
    for entry in replaced {
        partition.index.remove(&entry.base_offset);
    }
    partition
        .index
        .insert(replacement.base_offset, replacement.clone());
    let keys = release(&mut state.objects, replaced);
    state.objects.insert(
        object.key.clone(),
        ObjectMeta {
            live_entries: 1,
            ..object.clone()
        },
    );
    Ok(Outcome::ObjectsReleased { keys })
}

/// Forgets an object nothing names; absent objects are already forgotten.
pub(super) fn delete_object(state: &mut MetadataState, key: &str) -> Result<Outcome, ApplyError> {
    match state.objects.get(key) {
        Some(object) if object.live_entries > 0 => Err(ApplyError::ObjectInUse {
            key: key.to_owned(),
            live_entries: object.live_entries,
        }),
        Some(_) => {
            state.objects.remove(key);
            Ok(Outcome::Done)
        }
        None => Ok(Outcome::Done),
    }
}

/// Drops one reference per entry and removes the objects that reach zero;
/// returns their keys, sorted.
pub(super) fn release<'a>(
    objects: &mut BTreeMap<String, ObjectMeta>,
    entries: impl IntoIterator<Item = &'a IndexEntry>,
) -> Vec<String> {
    let mut released = BTreeSet::new();
    for entry in entries {
        let key = entry.object_key.as_str();
        if let Some(object) = objects.get_mut(key) {
            object.live_entries = object.live_entries.saturating_sub(1);
            if object.live_entries == 0 {
                objects.remove(key);
                released.insert(key.to_owned());
            }
        }
    }
    released.into_iter().collect()
}

#[cfg(test)]
#[path = "compaction_tests.rs"]
mod compaction_tests;
