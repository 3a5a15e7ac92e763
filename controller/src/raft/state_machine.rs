//! `StateMachine`: applies committed Raft entries with the pure
//! [`apply`](crate::apply) and builds and installs snapshots.
//!
//! Contract: entries are applied in log order and the Raft log index is the
//! command index, so every replica that applies the same log reaches the same
//! [`MetadataState`]; a refused command is a deterministic answer
//! (`Err(ApplyError)`), not a storage failure. The state lives in memory; it
//! is made durable by the Raft log plus the last snapshot, which is written
//! (atomically, fsynced) before it is reported built or installed. On open
//! the state is the snapshot's; openraft re-applies the committed entries
//! after it.
//!
//! A snapshot (file `raft-snapshot.json`, and the bytes sent to a lagging
//! follower) is the JSON `{"version", "meta", "state"}`: the state with its
//! last applied log id and membership.

use std::io::{Cursor, ErrorKind};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};

use bytes::Bytes;
use openraft::storage::{RaftStateMachine, Snapshot, SnapshotMeta};
use openraft::{
    AnyError, Entry, EntryPayload, LogId, OptionalSend, RaftSnapshotBuilder, StorageIOError,
    StoredMembership,
};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::feed::{Feed, FeedRead};
use super::files::{blocking, create_dir, write_atomic};
use super::sessions::{Admission, Answered, Proposal, Sessions};
use super::{ControllerNode as BasicNode, NodeId, Response, StorageError, TypeConfig};
use crate::model::{apply, MetadataState};

const SNAPSHOT_FILE: &str = "raft-snapshot.json";
/// How long a state encoding is kept for more readers: long enough for the
/// brokers that reconnect together after a leader change, short enough that
/// a large state's copy does not stay in memory for nothing.
pub const ENCODING_KEPT: std::time::Duration = std::time::Duration::from_secs(30);
/// Bumped when the snapshot's shape changes incompatibly.
const FORMAT_VERSION: u32 = 1;

/// The replicated state machine of one controller. Cloning shares it.
#[derive(Debug, Clone)]
pub struct StateMachine {
    dir: PathBuf,
    applied: Arc<RwLock<Applied>>,
    /// Recently applied entries for watchers; written under `applied`'s
    /// write lock, so the two agree.
    feed: Arc<Mutex<Feed>>,
    /// The last snapshot built or installed: its meta and its bytes.
    current: Arc<Mutex<Option<StoredSnapshot>>>,
    /// The last state JSON encoded for a reader. The lock is held while a
    /// new one is encoded, so readers that arrive meanwhile wait for it
    /// instead of encoding their own.
    encoded: Arc<tokio::sync::Mutex<Encoded>>,
}

/// The last state encoding, kept for [`ENCODING_KEPT`] after it was made.
#[derive(Debug, Default)]
struct Encoded {
    /// Counts encodings, so a timer clears only the one it was set for.
    generation: u64,
    /// The metadata sequence number and the JSON.
    latest: Option<(u64, Bytes)>,
}

/// A snapshot's meta and its bytes.
type StoredSnapshot = (SnapshotMeta<NodeId, BasicNode>, Vec<u8>);

/// The state and how far it got.
#[derive(Debug, Clone, Default)]
struct Applied {
    state: MetadataState,
    /// Commands applied so far: the metadata sequence number of the last.
    seq: u64,
    sessions: Sessions,
    last_applied: Option<LogId<NodeId>>,
    membership: StoredMembership<NodeId, BasicNode>,
}

#[derive(Serialize, Deserialize)]
struct SnapshotFile {
    version: u32,
    meta: SnapshotMeta<NodeId, BasicNode>,
    state: MetadataState,
    /// The metadata sequence number of the last command in `state`.
    #[serde(default)]
    seq: u64,
    /// The exactly-once answers ([`Sessions`]): replicated state too.
    #[serde(default)]
    sessions: Sessions,
}

fn decode(bytes: &[u8]) -> std::io::Result<SnapshotFile> {
    #[derive(Deserialize)]
    struct Version {
        version: u32,
    }
    let invalid = |e: serde_json::Error| std::io::Error::new(ErrorKind::InvalidData, e);
    let Version { version } = serde_json::from_slice(bytes).map_err(invalid)?;
    if version != FORMAT_VERSION {
        return Err(std::io::Error::new(
            ErrorKind::InvalidData,
            format!(
                "snapshot format version {version}; this Floe reads only version {FORMAT_VERSION}"
            ),
        ));
    }
    serde_json::from_slice(bytes).map_err(invalid)
}

impl StateMachine {
    /// Opens the state machine in `dir`: the last snapshot's state, if any.
    pub async fn open(dir: PathBuf) -> Result<StateMachine, StorageError> {
        let path = dir.join(SNAPSHOT_FILE);
        let dir_for_task = dir.clone();
        let loaded = blocking(
            move || {
                create_dir(&dir_for_task)?;
                let bytes = match std::fs::read(&path) {
                    Ok(bytes) => bytes,
                    Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
                    Err(e) => return Err(e),
                };
                let file = decode(&bytes).map_err(|e| {
                    std::io::Error::new(e.kind(), format!("{}: {e}", path.display()))
                })?;
                Ok(Some((file, bytes)))
            },
            |e| StorageIOError::read_snapshot(None, e),
        )
        .await?;
        let (applied, current) = match loaded {
            None => (Applied::default(), None),
            Some((file, bytes)) => (
                Applied {
                    state: file.state,
                    seq: file.seq,
                    sessions: file.sessions,
                    last_applied: file.meta.last_log_id,
                    membership: file.meta.last_membership.clone(),
                },
                Some((file.meta, bytes)),
            ),
        };
        tracing::info!(dir = %dir.display(), last_applied = ?applied.last_applied, "Raft state machine opened");
        let feed = Feed::new(applied.seq);
        Ok(StateMachine {
            dir,
            feed: Arc::new(Mutex::new(feed)),
            applied: Arc::new(RwLock::new(applied)),
            current: Arc::new(Mutex::new(current)),
            encoded: Arc::default(),
        })
    }

    /// Runs `f` on the applied state and the log id of the last applied entry.
    /// This is the local replica's view: not a linearizable read.
    pub fn read<R>(&self, f: impl FnOnce(&MetadataState, Option<LogId<NodeId>>) -> R) -> R {
        let applied = self.applied();
        f(&applied.state, applied.last_applied)
    }

    /// Runs `f` on the applied state and the metadata sequence number it
    /// includes every command up to. The local replica's view, like
    /// [`StateMachine::read`].
    pub fn read_seq<R>(&self, f: impl FnOnce(&MetadataState, u64) -> R) -> R {
        let applied = self.applied();
        f(&applied.state, applied.seq)
    }

    /// JSON of the applied state as of now (every command applied before
    /// the call) and the metadata sequence number it includes every command
    /// up to.
    pub async fn state_json(&self) -> std::io::Result<(u64, Bytes)> {
        let applied = self.applied().seq;
        self.encoded(|seq| seq >= applied).await
    }

    /// JSON of the applied state for a watcher that fell behind the feed,
    /// and the metadata sequence number it restarts from: the copy encoded
    /// for an earlier reader while the feed still continues from it (so a
    /// hundred brokers catching up after a leader change cost one encoding
    /// and one copy in memory) and at most [`ENCODING_KEPT`] old, else a
    /// new one.
    pub async fn watch_snapshot(&self) -> std::io::Result<(u64, Bytes)> {
        self.encoded(|seq| !matches!(self.feed().after(seq, 0), FeedRead::Behind))
            .await
    }

    /// The shared encoding if `usable` accepts its sequence number, else a
    /// new one. The state is copied under the lock (a reference per
    /// partition, see [`Topic::partitions`](crate::model::Topic)) and
    /// encoded on the blocking pool, so `apply` never waits for an encoding.
    async fn encoded(&self, usable: impl Fn(u64) -> bool) -> std::io::Result<(u64, Bytes)> {
        let mut encoded = self.encoded.lock().await;
        if let Some((seq, bytes)) = encoded.latest.as_ref() {
            if usable(*seq) {
                return Ok((*seq, bytes.clone()));
            }
        }
        let (seq, state) = {
            let applied = self.applied();
            (applied.seq, applied.state.clone())
        };
        let json = tokio::task::spawn_blocking(move || serde_json::to_vec(&state))
            .await
            .map_err(std::io::Error::other)?
            .map_err(std::io::Error::other)?;
        let bytes = Bytes::from(json);
        encoded.generation += 1;
        encoded.latest = Some((seq, bytes.clone()));
        let (cache, generation) = (self.encoded.clone(), encoded.generation);
        tokio::spawn(async move {
            tokio::time::sleep(ENCODING_KEPT).await;
            let mut encoded = cache.lock().await;
            if encoded.generation == generation {
                encoded.latest = None;
            }
        });
        Ok((seq, bytes))
    }

    /// Up to `max` applied commands after metadata sequence number `index`,
    /// or [`FeedRead::Behind`] when they are no longer kept (read
    /// [`StateMachine::state_json`]).
    pub fn feed_after(&self, index: u64, max: usize) -> FeedRead {
        self.feed().after(index, max)
    }

    /// Changes whenever a command is applied or a snapshot installed; holds
    /// the last applied metadata sequence number.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.feed().subscribe()
    }

    fn feed(&self) -> std::sync::MutexGuard<'_, Feed> {
        // Every feed operation completes or changes nothing before it could
        // panic: a poisoned lock holds consistent data.
        self.feed.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn applied(&self) -> RwLockReadGuard<'_, Applied> {
        // `apply` never panics half-way (it checks before it mutates), so
        // the data behind a poisoned lock is consistent.
        self.applied.read().unwrap_or_else(|p| p.into_inner())
    }

    fn applied_mut(&self) -> RwLockWriteGuard<'_, Applied> {
        self.applied.write().unwrap_or_else(|p| p.into_inner())
    }

    fn set_current(&self, meta: SnapshotMeta<NodeId, BasicNode>, bytes: Vec<u8>) {
        *self.current.lock().unwrap_or_else(|p| p.into_inner()) = Some((meta, bytes));
    }

    /// Writes `bytes` as the snapshot file, durably, off the reactor.
    async fn persist(
        &self,
        meta: &SnapshotMeta<NodeId, BasicNode>,
        bytes: Vec<u8>,
    ) -> Result<Vec<u8>, StorageError> {
        let path = self.dir.join(SNAPSHOT_FILE);
        let signature = meta.signature();
        blocking(
            move || write_atomic(&path, &bytes).map(|()| bytes),
            move |e| StorageIOError::write_snapshot(Some(signature), e),
        )
        .await
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let file = {
            let applied = self.applied();
            let snapshot_id = match applied.last_applied {
                Some(id) => format!(
                    "{}-{}-{}",
                    id.leader_id.term, id.leader_id.node_id, id.index
                ),
                None => "empty".to_owned(),
            };
            SnapshotFile {
                version: FORMAT_VERSION,
                meta: SnapshotMeta {
                    last_log_id: applied.last_applied,
                    last_membership: applied.membership.clone(),
                    snapshot_id,
                },
                state: applied.state.clone(),
                seq: applied.seq,
                sessions: applied.sessions.clone(),
            }
        };
        // Encoded off the reactor: with a million index entries this takes
        // most of a second.
        let signature = file.meta.signature();
        let (meta, bytes) = blocking(
            move || {
                let bytes = serde_json::to_vec(&file).map_err(std::io::Error::other)?;
                Ok((file.meta, bytes))
            },
            move |e| StorageIOError::write_snapshot(Some(signature), e),
        )
        .await?;
        let bytes = self.persist(&meta, bytes).await?;
        self.set_current(meta.clone(), bytes.clone());
        tracing::debug!(last_log_id = ?meta.last_log_id, bytes = bytes.len(), "Raft snapshot built");
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(bytes)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = StateMachine;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<NodeId>>, StoredMembership<NodeId, BasicNode>), StorageError> {
        let applied = self.applied();
        Ok((applied.last_applied, applied.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Vec<Answered>>, StorageError>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut applied = self.applied_mut();
        let mut feed = self.feed();
        let mut responses = Vec::new();
        for entry in entries {
            let log_id = entry.log_id;
            if applied
                .last_applied
                .is_some_and(|last| log_id.index <= last.index)
            {
                let reason = format!(
                    "entry {log_id} is not after the last applied {:?}",
                    applied.last_applied
                );
                return Err(StorageIOError::apply(log_id, AnyError::error(reason)).into());
            }
            let answers = match entry.payload {
                EntryPayload::Blank => Vec::new(),
                EntryPayload::Normal(batch) => batch
                    .0
                    .into_iter()
                    .map(|proposal| {
                        applied.seq += 1;
                        let seq = applied.seq;
                        let (response, fed) = apply_proposal(&mut applied, seq, proposal);
                        feed.push(seq, fed);
                        Answered { seq, response }
                    })
                    .collect(),
                EntryPayload::Membership(membership) => {
                    applied.membership = StoredMembership::new(Some(log_id), membership);
                    Vec::new()
                }
            };
            applied.last_applied = Some(log_id);
            responses.push(answers);
        }
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let bytes = snapshot.into_inner();
        // Decoded and encoded off the reactor (most of a second each with a
        // million index entries).
        let signature = meta.signature();
        let file = blocking(
            move || decode(&bytes),
            move |e| StorageIOError::read_snapshot(Some(signature), e),
        )
        .await?;
        // The file on disk carries the meta openraft gave, whatever the
        // sender wrote into the bytes.
        let file = SnapshotFile {
            version: FORMAT_VERSION,
            meta: meta.clone(),
            state: file.state,
            seq: file.seq,
            sessions: file.sessions,
        };
        let signature = meta.signature();
        let (file, bytes) = blocking(
            move || {
                let bytes = serde_json::to_vec(&file).map_err(std::io::Error::other)?;
                Ok((file, bytes))
            },
            move |e| StorageIOError::write_snapshot(Some(signature), e),
        )
        .await?;
        let bytes = self.persist(meta, bytes).await?;
        let mut applied = self.applied_mut();
        let old = std::mem::replace(
            &mut *applied,
            Applied {
                state: file.state,
                seq: file.seq,
                sessions: file.sessions,
                last_applied: meta.last_log_id,
                membership: meta.last_membership.clone(),
            },
        );
        self.feed().reset(applied.seq);
        drop(applied);
        // Not under the lock, not on the reactor: a large state takes a
        // while to free.
        tokio::task::spawn_blocking(move || drop(old));
        self.set_current(meta.clone(), bytes);
        tracing::info!(last_log_id = ?meta.last_log_id, "Raft snapshot installed");
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        let current = self
            .current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        Ok(current.map(|(meta, bytes)| Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(bytes)),
        }))
    }
}

/// Applies one proposal as metadata sequence number `index`: its answer, and the JSON of its command
/// for the feed when the state changed (`None` for a duplicate answered from
/// memory).
fn apply_proposal(
    applied: &mut Applied,
    index: u64,
    proposal: Proposal,
) -> (Response, Option<Vec<u8>>) {
    if let Some(session) = &proposal.session {
        if let Admission::Answered(answer) = applied.sessions.admit(session, index) {
            // Like a refused command, it leaves the metadata as it was.
            return (answer, None);
        }
    }
    let answer = apply(&mut applied.state, index, &proposal.command);
    if let Some(session) = &proposal.session {
        applied.sessions.record(session, &answer);
    }
    // A command that serializes here was deserialized from the log: this
    // cannot fail, and watchers only lose an entry they can re-read from a
    // snapshot if it ever did.
    let json = serde_json::to_vec(&proposal.command).ok();
    (answer, json)
}
