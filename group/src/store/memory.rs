//! An [`OffsetStore`] held in memory, for tests and single-process experiments; it can be told to fail writes.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};

use super::{OffsetCommitEntry, OffsetStore, OffsetStoreError};

/// Offsets per group, keyed by (topic, partition).
type Offsets = BTreeMap<String, BTreeMap<(String, i32), OffsetCommitEntry>>;

/// In-memory [`OffsetStore`]; "durable" for the life of the value.
#[derive(Debug, Default)]
pub struct MemoryOffsetStore {
    offsets: Mutex<Offsets>,
    topics: Mutex<BTreeSet<String>>,
    fail_writes: AtomicBool,
}

impl MemoryOffsetStore {
    /// A store that knows the given topics.
    pub fn with_topics<I, S>(topics: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let store = Self::default();
        for topic in topics {
            store.add_topic(topic);
        }
        store
    }

    pub fn add_topic(&self, topic: impl Into<String>) {
        lock(&self.topics).insert(topic.into());
    }

    /// Makes every later write fail (or succeed again), to exercise the
    /// coordinator's error mapping.
    pub fn fail_writes(&self, fail: bool) {
        self.fail_writes.store(fail, Ordering::SeqCst);
    }

    fn failing(&self) -> bool {
        self.fail_writes.load(Ordering::SeqCst)
    }
}

/// A panic while holding the lock cannot leave the maps half-updated (each
/// update is a single insert or remove), so a poisoned lock is still usable.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

const INJECTED: &str = "injected failure (MemoryOffsetStore::fail_writes)";

impl OffsetStore for MemoryOffsetStore {
    fn commit(&self, group: &str, offsets: Vec<OffsetCommitEntry>) -> Result<(), OffsetStoreError> {
        if self.failing() {
            return Err(OffsetStoreError::CommitOffsets {
                group: group.to_owned(),
                count: offsets.len(),
                reason: INJECTED.to_owned(),
            });
        }
        let mut all = lock(&self.offsets);
        let group_offsets = all.entry(group.to_owned()).or_default();
        for entry in offsets {
            group_offsets.insert((entry.topic.clone(), entry.partition), entry);
        }
        Ok(())
    }

    fn fetch(&self, group: &str) -> Vec<OffsetCommitEntry> {
        lock(&self.offsets)
            .get(group)
            .map(|offsets| offsets.values().cloned().collect())
            .unwrap_or_default()
    }

    fn delete_group(&self, group: &str) -> Result<(), OffsetStoreError> {
        if self.failing() {
            return Err(OffsetStoreError::DeleteGroup {
                group: group.to_owned(),
                reason: INJECTED.to_owned(),
            });
        }
        lock(&self.offsets).remove(group);
        Ok(())
    }

    fn delete_offsets(
        &self,
        group: &str,
        topic: &str,
        partitions: &[i32],
    ) -> Result<(), OffsetStoreError> {
        if self.failing() {
            return Err(OffsetStoreError::DeleteOffsets {
                group: group.to_owned(),
                topic: topic.to_owned(),
                reason: INJECTED.to_owned(),
            });
        }
        let mut all = lock(&self.offsets);
        if let Some(offsets) = all.get_mut(group) {
            for partition in partitions {
                offsets.remove(&(topic.to_owned(), *partition));
            }
            if offsets.is_empty() {
                all.remove(group);
            }
        }
        Ok(())
    }

    fn groups_with_offsets(&self) -> Vec<String> {
        lock(&self.offsets).keys().cloned().collect()
    }

    fn topic_exists(&self, topic: &str) -> bool {
        lock(&self.topics).contains(topic)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(topic: &str, partition: i32, offset: i64) -> OffsetCommitEntry {
        OffsetCommitEntry {
            topic: topic.to_owned(),
            partition,
            offset,
            leader_epoch: -1,
            metadata: String::new(),
            commit_ms: 0,
        }
    }

    #[test]
    fn commits_replace_and_deletes_remove() {
        let store = MemoryOffsetStore::with_topics(["t"]);
        assert!(store.topic_exists("t"));
        assert!(!store.topic_exists("u"));
        store
            .commit("g", vec![entry("t", 0, 5), entry("t", 1, 7)])
            .expect("commit");
        store.commit("g", vec![entry("t", 0, 9)]).expect("commit");
        let offsets: Vec<_> = store
            .fetch("g")
            .iter()
            .map(|e| (e.partition, e.offset))
            .collect();
        assert_eq!(offsets, vec![(0, 9), (1, 7)]);
        assert_eq!(store.groups_with_offsets(), vec!["g".to_owned()]);

        store
            .delete_offsets("g", "t", &[0])
            .expect("delete offsets");
        assert_eq!(store.fetch("g").len(), 1);
        store
            .delete_offsets("g", "t", &[1])
            .expect("delete offsets");
        assert!(
            store.groups_with_offsets().is_empty(),
            "a group with no offsets is gone"
        );

        store.fail_writes(true);
        assert!(matches!(
            store.commit("g", vec![entry("t", 0, 1)]),
            Err(OffsetStoreError::CommitOffsets { count: 1, .. })
        ));
        assert!(store.fetch("g").is_empty());
    }
}
