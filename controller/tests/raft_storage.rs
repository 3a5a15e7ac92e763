//! The Raft log store and state machine against openraft's own storage
//! conformance suite, plus what the suite does not cover: reopening from disk
//! after appends, truncation and purge, and a torn final record.

use std::os::unix::fs::FileExt;
use std::path::Path;

use floe_controller::model::Command;
use floe_controller::raft::{open_storage, LogStore, StateMachine, StorageError, TypeConfig};
use openraft::storage::{RaftLogStorage, RaftLogStorageExt, RaftStateMachine};
use openraft::testing::{log_id, StoreBuilder, Suite};
use openraft::{Entry, EntryPayload, RaftLogReader, RaftSnapshotBuilder, Vote};
use tempfile::TempDir;

struct OnDisk;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, TempDir> for OnDisk {
    async fn build(&self) -> Result<(TempDir, LogStore, StateMachine), StorageError> {
        let dir = tempfile::tempdir().expect("temporary directory");
        let (log, sm) = open_storage(dir.path()).await?;
        Ok((dir, log, sm))
    }
}

#[test]
fn openraft_storage_conformance_suite() -> anyhow::Result<()> {
    Ok(Suite::test_all(OnDisk)?)
}

fn register(id: i32) -> Command {
    Command::RegisterBroker {
        id,
        host: format!("broker-{id}"),
        port: 9092,
        rack: None,
        volume_wal: false,
    }
}

fn normal(term: u64, index: u64, cmd: Command) -> Entry<TypeConfig> {
    Entry {
        log_id: log_id(term, 1, index),
        payload: EntryPayload::Normal(cmd.into()),
    }
}

async fn indexes(log: &mut LogStore) -> anyhow::Result<Vec<u64>> {
    Ok(log
        .try_get_log_entries(0..)
        .await?
        .iter()
        .map(|e| e.log_id.index)
        .collect())
}

async fn reopen(dir: &Path) -> anyhow::Result<LogStore> {
    Ok(LogStore::open(dir.to_owned()).await?)
}

#[tokio::test]
async fn the_log_survives_reopening_after_append_truncate_and_purge() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut log = reopen(dir.path()).await?;
    log.blocking_append((1..=6).map(|i| normal(1, i, register(i as i32))))
        .await?;
    log.save_vote(&Vote::new(2, 1)).await?;
    log.truncate(log_id(1, 1, 5)).await?;
    log.blocking_append([normal(2, 5, register(50))]).await?;
    log.purge(log_id(1, 1, 2)).await?;
    drop(log);

    let mut log = reopen(dir.path()).await?;
    assert_eq!(indexes(&mut log).await?, [3, 4, 5]);
    let state = log.get_log_state().await?;
    assert_eq!(state.last_purged_log_id, Some(log_id(1, 1, 2)));
    assert_eq!(state.last_log_id, Some(log_id(2, 1, 5)));
    assert_eq!(log.read_vote().await?, Some(Vote::new(2, 1)));
    let fifth = log.try_get_log_entries(5..6).await?;
    assert!(matches!(&fifth[0].payload, EntryPayload::Normal(b) if b.0[0].command == register(50)));
    // Appending after a purge-rewrite lands after the surviving records.
    log.blocking_append([normal(2, 6, register(60))]).await?;
    drop(log);
    let mut log = reopen(dir.path()).await?;
    assert_eq!(indexes(&mut log).await?, [3, 4, 5, 6]);
    Ok(())
}

#[tokio::test]
async fn a_torn_final_record_is_cut_off_and_interior_damage_refuses_to_open() -> anyhow::Result<()>
{
    let dir = tempfile::tempdir()?;
    let mut log = reopen(dir.path()).await?;
    log.blocking_append((1..=3).map(|i| normal(1, i, register(i as i32))))
        .await?;
    drop(log);
    let path = dir.path().join("raft-log");
    // The file is zero-filled ahead of its records.
    let end = records_end(&path)?;
    assert!(std::fs::metadata(&path)?.len() >= end + (1 << 20));
    // A crash mid-append: half a record after the last one.
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)?
        .write_all_at(&[42, 0, 0, 0, 1, 2], end)?;
    let mut log = reopen(dir.path()).await?;
    assert_eq!(indexes(&mut log).await?, [1, 2, 3]);
    assert_eq!(records_end(&path)?, end, "the torn record is gone");
    drop(log);

    // A flipped byte inside the first record, with valid records after it.
    let mut bytes = std::fs::read(&path)?;
    bytes[12] ^= 0x20;
    std::fs::write(&path, &bytes)?;
    let err = LogStore::open(dir.path().to_owned())
        .await
        .expect_err("corruption must refuse to open");
    assert!(err.to_string().contains("corrupt at byte 0"), "{err}");
    Ok(())
}

/// Where the records end: the file holds zeros after them.
fn records_end(path: &Path) -> anyhow::Result<u64> {
    let bytes = std::fs::read(path)?;
    Ok(bytes
        .iter()
        .rposition(|&b| b != 0)
        .map_or(0, |i| i as u64 + 1))
}

#[tokio::test]
async fn truncated_entries_never_come_back_from_the_zero_filled_log() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("raft-log");
    let mut log = reopen(dir.path()).await?;
    log.blocking_append((1..=6).map(|i| normal(1, i, register(i as i32))))
        .await?;
    let full = records_end(&path)?;
    log.truncate(log_id(1, 1, 4)).await?;
    let cut = records_end(&path)?;
    assert!(cut < full);
    // Appends go on overwriting zeros after the cut.
    assert!(std::fs::metadata(&path)?.len() >= cut + (1 << 20));
    drop(log);
    let mut log = reopen(dir.path()).await?;
    assert_eq!(indexes(&mut log).await?, [1, 2, 3]);
    log.blocking_append([normal(2, 4, register(40))]).await?;
    drop(log);
    let mut log = reopen(dir.path()).await?;
    assert_eq!(indexes(&mut log).await?, [1, 2, 3, 4]);
    let fourth = log.try_get_log_entries(4..5).await?;
    assert!(
        matches!(&fourth[0].payload, EntryPayload::Normal(b) if b.0[0].command == register(40))
    );
    Ok(())
}

#[tokio::test]
async fn a_snapshot_survives_reopening_the_state_machine() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut sm = StateMachine::open(dir.path().to_owned()).await?;
    let responses = sm
        .apply([normal(1, 1, register(7)), normal(1, 2, register(7))])
        .await?;
    assert_eq!(responses.len(), 2);
    let snapshot = sm.get_snapshot_builder().await.build_snapshot().await?;
    assert_eq!(snapshot.meta.last_log_id, Some(log_id(1, 1, 2)));
    let before = sm.read(|state, last| (state.clone(), last));
    assert_eq!(
        before.0.brokers[&7].epoch, 2,
        "re-registration bumps the epoch"
    );
    drop(sm);

    let mut sm = StateMachine::open(dir.path().to_owned()).await?;
    assert_eq!(sm.read(|state, last| (state.clone(), last)), before);
    let (applied, _) = sm.applied_state().await?;
    assert_eq!(applied, Some(log_id(1, 1, 2)));
    Ok(())
}

#[tokio::test]
async fn watchers_behind_the_feed_share_one_state_copy_and_reads_see_the_latest(
) -> anyhow::Result<()> {
    use floe_controller::model::MetadataState;
    use floe_controller::raft::FEED_CAPACITY;

    let dir = tempfile::tempdir()?;
    let mut sm = StateMachine::open(dir.path().to_owned()).await?;
    sm.apply([normal(1, 1, register(1))]).await?;
    let decode = |bytes: &[u8]| serde_json::from_slice::<MetadataState>(bytes);

    let (first_seq, first) = sm.watch_snapshot().await?;
    let (again_seq, again) = sm.watch_snapshot().await?;
    assert_eq!((first_seq, again_seq), (1, 1));
    assert_eq!(first.as_ptr(), again.as_ptr(), "one copy, shared");

    // The feed still continues from the shared copy: watchers get it and
    // catch up from the feed; a linearizable read gets the latest state.
    sm.apply([normal(1, 2, register(2))]).await?;
    let (seq, shared) = sm.watch_snapshot().await?;
    assert_eq!((seq, shared.as_ptr()), (1, first.as_ptr()));
    assert!(!decode(&shared)?.brokers.contains_key(&2));
    let (seq, latest) = sm.state_json().await?;
    assert_eq!(seq, 2);
    assert!(decode(&latest)?.brokers.contains_key(&2));

    // Once the feed no longer holds what follows it, a new copy is made.
    let entries: Vec<_> = (0..FEED_CAPACITY as u64 + 1)
        .map(|i| normal(1, 3 + i, register(3)))
        .collect();
    sm.apply(entries).await?;
    let last = 2 + FEED_CAPACITY as u64 + 1;
    let (seq, renewed) = sm.watch_snapshot().await?;
    assert_eq!(seq, last);
    assert_eq!(
        decode(&renewed)?.brokers[&3].epoch,
        FEED_CAPACITY as i64 + 1
    );
    assert_eq!(sm.state_json().await?.1.as_ptr(), renewed.as_ptr());
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn a_state_encoding_is_kept_for_a_while_then_dropped() -> anyhow::Result<()> {
    use floe_controller::raft::ENCODING_KEPT;

    let dir = tempfile::tempdir()?;
    let mut sm = StateMachine::open(dir.path().to_owned()).await?;
    sm.apply([normal(1, 1, register(1))]).await?;
    let (_, first) = sm.watch_snapshot().await?;
    tokio::time::sleep(ENCODING_KEPT / 2).await;
    let (_, again) = sm.watch_snapshot().await?;
    assert_eq!(again.as_ptr(), first.as_ptr(), "kept for more readers");
    tokio::time::sleep(ENCODING_KEPT).await;
    // `first` is still alive here, so a new encoding has another address.
    let (seq, later) = sm.watch_snapshot().await?;
    assert_eq!(seq, 1);
    assert_ne!(later.as_ptr(), first.as_ptr(), "dropped after a while");
    assert_eq!(later, first);
    Ok(())
}
