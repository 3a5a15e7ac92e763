//! The durable home of committed offsets: a small blocking trait the broker implements over the controller, and an in-memory implementation for tests.

mod memory;

pub use memory::MemoryOffsetStore;

/// One committed offset of a group for one partition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OffsetCommitEntry {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    /// The leader epoch the client saw with this offset, or -1 if unknown.
    pub leader_epoch: i32,
    /// Client metadata; a null from the client is stored as "" as Kafka does,
    /// so every client reads back a string.
    pub metadata: String,
    /// Wall-clock commit time, milliseconds since the Unix epoch.
    pub commit_ms: i64,
}

/// A write to the offset store that did not become durable.
///
/// The coordinator answers these with COORDINATOR_NOT_AVAILABLE, which every
/// client treats as retriable: it rediscovers the coordinator and retries.
#[derive(Debug, thiserror::Error)]
pub enum OffsetStoreError {
    #[error(
        "committing {count} offsets of group {group:?} failed: {reason}; the client will retry"
    )]
    CommitOffsets {
        group: String,
        count: usize,
        reason: String,
    },
    #[error("deleting the offsets of group {group:?} failed: {reason}; retry the deletion")]
    DeleteGroup { group: String, reason: String },
    #[error(
        "deleting offsets of topic {topic:?} for group {group:?} failed: {reason}; retry the deletion"
    )]
    DeleteOffsets {
        group: String,
        topic: String,
        reason: String,
    },
}

/// Durable committed offsets, implemented by the broker over the controller.
///
/// Every method may block (the coordinator calls them all from
/// `spawn_blocking`), and must be safe to call from several threads at once.
/// Writes return only once durable: a client told its commit succeeded must
/// never see it vanish after a broker restart.
pub trait OffsetStore: Send + Sync + 'static {
    /// Durably stores `offsets` for `group`, replacing earlier commits of the
    /// same partitions.
    fn commit(&self, group: &str, offsets: Vec<OffsetCommitEntry>) -> Result<(), OffsetStoreError>;
    /// Every committed offset of `group`; empty if it has none.
    fn fetch(&self, group: &str) -> Vec<OffsetCommitEntry>;
    /// Durably removes every committed offset of `group`.
    fn delete_group(&self, group: &str) -> Result<(), OffsetStoreError>;
    /// Durably removes `group`'s offsets for the given partitions of `topic`.
    fn delete_offsets(
        &self,
        group: &str,
        topic: &str,
        partitions: &[i32],
    ) -> Result<(), OffsetStoreError>;
    /// Every group with at least one committed offset, so groups survive in
    /// ListGroups after a restart even though membership does not.
    fn groups_with_offsets(&self) -> Vec<String>;
    /// Whether `topic` exists; commits to unknown topics get
    /// UNKNOWN_TOPIC_OR_PARTITION.
    fn topic_exists(&self, topic: &str) -> bool;
}
