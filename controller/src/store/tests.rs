//! Recovery after clean shutdowns, torn writes, corruption, snapshots and
//! crashes between a snapshot and the log truncation.

use std::fs::{self, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tempfile::TempDir;

use super::{log, snapshot, LocalStore, StoreError, StoreOptions, LOG_FILE, SNAPSHOT_FILE};
use crate::model::fixture::{commit, create_topic, pid, register};
use crate::model::{ApplyError, Command, MetadataState, Outcome};

fn log_path(dir: &TempDir) -> PathBuf {
    dir.path().join(LOG_FILE)
}

fn state(store: &LocalStore) -> MetadataState {
    store.read(Clone::clone).expect("read")
}

fn alloc(count: i64) -> Command {
    Command::AllocateProducerIds { count }
}

/// A store holding a topic, a commit, and a producer-id block: three
/// commands, each of which would be refused or change the state if replayed
/// twice.
fn populated(dir: &Path) -> (LocalStore, MetadataState) {
    let store = LocalStore::open(dir).expect("open");
    store.propose(create_topic("a", 1, 2)).expect("create");
    store
        .propose(commit("o1", &[(pid(1, 0), 0, 5, 0)]))
        .expect("commit");
    store.propose(alloc(10)).expect("alloc");
    let state = state(&store);
    assert_eq!(state.last_applied, 3);
    (store, state)
}

/// Where the records end: the log file holds zeros after them.
fn records_end(path: &Path) -> u64 {
    let bytes = fs::read(path).expect("read log");
    bytes
        .iter()
        .rposition(|&b| b != 0)
        .map_or(0, |i| i as u64 + 1)
}

/// Write `bytes` right after the last record, where an append would land.
fn append_raw(path: &Path, bytes: &[u8]) {
    let file = OpenOptions::new().write(true).open(path).expect("open log");
    file.write_all_at(bytes, records_end(path)).expect("append");
}

fn record(index: u64, cmd: &Command) -> Vec<u8> {
    log::encode(index, &serde_json::to_vec(cmd).expect("json")).expect("fits")
}

#[test]
fn reopening_recovers_the_same_state() {
    let dir = TempDir::new().expect("tempdir");
    let (store, before) = populated(dir.path());
    drop(store);
    let store = LocalStore::open(dir.path()).expect("reopen");
    assert_eq!(state(&store), before);
    assert_eq!(
        store.propose(alloc(1)).expect("alloc"),
        Outcome::ProducerIds { first: 1010 }
    );
}

#[test]
fn a_refused_command_is_not_logged() {
    let dir = TempDir::new().expect("tempdir");
    let (store, before) = populated(dir.path());
    let len = fs::metadata(log_path(&dir)).expect("stat").len();
    let err = store
        .propose(create_topic("a", 9, 1))
        .expect_err("duplicate");
    assert!(matches!(
        err,
        StoreError::Apply(ApplyError::TopicExists { .. })
    ));
    assert_eq!(fs::metadata(log_path(&dir)).expect("stat").len(), len);
    assert_eq!(state(&store), before);
    // The next command takes the next index: no gap for replay to trip on.
    store.propose(register(1)).expect("register");
    drop(store);
    let store = LocalStore::open(dir.path()).expect("reopen");
    assert_eq!(state(&store).last_applied, 4);
}

#[test]
fn a_batch_logs_only_its_accepted_commands() {
    let dir = TempDir::new().expect("tempdir");
    let store = LocalStore::open(dir.path()).expect("open");
    let results = store
        .propose_many(vec![
            create_topic("a", 1, 1),
            create_topic("a", 2, 1),
            alloc(5),
        ])
        .expect("batch");
    assert!(matches!(results[0], Ok(Outcome::TopicCreated { .. })));
    assert!(matches!(
        results[1],
        Err(StoreError::Apply(ApplyError::TopicExists { .. }))
    ));
    assert!(matches!(
        results[2],
        Ok(Outcome::ProducerIds { first: 1000 })
    ));
    let before = state(&store);
    assert_eq!(before.last_applied, 2);
    drop(store);
    assert_eq!(
        state(&LocalStore::open(dir.path()).expect("reopen")),
        before
    );
}

#[test]
fn a_torn_final_record_is_cut_off() {
    let full = record(4, &alloc(7));
    for torn in [
        full[..full.len() - 3].to_vec(), // cut short
        full[..5].to_vec(),              // not even a whole header
        vec![0; 4096],                   // zero fill from a crash mid-extend
        {
            let mut bad = full.clone(); // complete, but fails its checksum
            bad[12] ^= 1;
            bad
        },
    ] {
        let dir = TempDir::new().expect("tempdir");
        let (store, before) = populated(dir.path());
        drop(store);
        let clean_end = records_end(&log_path(&dir));
        assert!(fs::metadata(log_path(&dir)).expect("stat").len() >= clean_end + (1 << 20));
        append_raw(&log_path(&dir), &torn);
        let store = LocalStore::open(dir.path()).expect("reopen after torn write");
        assert_eq!(state(&store), before);
        assert_eq!(records_end(&log_path(&dir)), clean_end);
        // Appends continue where the valid log ends.
        store.propose(alloc(1)).expect("alloc");
        drop(store);
        let store = LocalStore::open(dir.path()).expect("reopen");
        assert_eq!(state(&store).last_applied, 4);
    }
}

#[test]
fn interior_corruption_refuses_to_open() {
    let dir = TempDir::new().expect("tempdir");
    let (store, _) = populated(dir.path());
    drop(store);
    let path = log_path(&dir);
    let mut bytes = fs::read(&path).expect("read");
    bytes[log::HEADER_LEN + 10] ^= 0x20;
    fs::write(&path, &bytes).expect("write");
    let err = LocalStore::open(dir.path()).expect_err("corrupt log");
    let StoreError::CorruptLog {
        path: at,
        offset,
        next_valid,
    } = &err
    else {
        panic!("unexpected error: {err}");
    };
    assert_eq!((at, *offset), (&path, 0));
    assert!(*next_valid > 0);
    let message = err.to_string();
    assert!(message.contains(&path.display().to_string()) && message.contains("byte 0"));
    // Refusing must not have "repaired" anything.
    assert_eq!(fs::read(&path).expect("read"), bytes);
}

/// Whether an error is the one a case expects.
type IsExpected = fn(&StoreError) -> bool;

#[test]
fn undecodable_gapped_or_failing_records_refuse_to_open() {
    let cases: Vec<(Vec<u8>, IsExpected)> = vec![
        (
            {
                let mut r = b"\0\0\0\0\0\0\0\0not json".to_vec();
                r[..4].copy_from_slice(&8u32.to_le_bytes());
                let crc = crc32c::crc32c(b"not json");
                r[4..8].copy_from_slice(&crc.to_le_bytes());
                r
            },
            |e| matches!(e, StoreError::DecodeRecord { offset: 0, .. }),
        ),
        ([record(1, &alloc(1)), record(3, &alloc(1))].concat(), |e| {
            matches!(
                e,
                StoreError::LogGap {
                    expected: 2,
                    found: 3,
                    ..
                }
            )
        }),
        (record(2, &alloc(1)), |e| {
            matches!(
                e,
                StoreError::LogGap {
                    expected: 1,
                    found: 2,
                    ..
                }
            )
        }),
        (
            [
                record(1, &create_topic("a", 1, 1)),
                record(2, &create_topic("a", 2, 1)),
            ]
            .concat(),
            |e| {
                matches!(
                    e,
                    StoreError::ReplayCommand {
                        index: 2,
                        source: ApplyError::TopicExists { .. },
                        ..
                    }
                )
            },
        ),
    ];
    for (log_bytes, expected) in cases {
        let dir = TempDir::new().expect("tempdir");
        fs::write(log_path(&dir), &log_bytes).expect("write");
        let err = LocalStore::open(dir.path()).expect_err("bad log");
        assert!(expected(&err), "unexpected error: {err}");
    }
}

#[test]
fn snapshot_then_more_commands_then_reopen() {
    let dir = TempDir::new().expect("tempdir");
    let (store, _) = populated(dir.path());
    store.snapshot_now().expect("snapshot");
    assert_eq!(records_end(&log_path(&dir)), 0, "the log holds only zeros");
    store.propose(register(1)).expect("register");
    store.propose(alloc(2)).expect("alloc");
    let before = state(&store);
    drop(store);
    let snapshot = snapshot::load(&dir.path().join(SNAPSHOT_FILE))
        .expect("load")
        .expect("present");
    assert_eq!(snapshot.last_applied, 3);
    let store = LocalStore::open(dir.path()).expect("reopen");
    assert_eq!(state(&store), before);
}

#[test]
fn a_crash_between_snapshot_and_log_truncation_does_not_double_apply() {
    let dir = TempDir::new().expect("tempdir");
    let (store, before) = populated(dir.path());
    let old_log = fs::read(log_path(&dir)).expect("read");
    store.snapshot_now().expect("snapshot");
    drop(store);
    // The crash: the new snapshot is in place but the log was never emptied.
    fs::write(log_path(&dir), &old_log).expect("restore log");
    let store = LocalStore::open(dir.path()).expect("reopen");
    assert_eq!(state(&store), before);
    // New records go after the old ones and replay after the skipped ones.
    store.propose(alloc(1)).expect("alloc");
    let after = state(&store);
    drop(store);
    let store = LocalStore::open(dir.path()).expect("reopen");
    assert_eq!(state(&store), after);
    assert_eq!(after.next_producer_id, 1011);
}

#[test]
fn the_log_is_snapshotted_when_it_passes_the_threshold() {
    let dir = TempDir::new().expect("tempdir");
    let options = StoreOptions {
        snapshot_threshold: 300,
    };
    let store = LocalStore::open_with(dir.path(), options.clone()).expect("open");
    store.propose(create_topic("a", 1, 1)).expect("create");
    for i in 0..20 {
        store
            .propose(commit(&format!("o{i}"), &[(pid(1, 0), i, i + 1, 0)]))
            .expect("commit");
    }
    let before = state(&store);
    drop(store);
    assert!(dir.path().join(SNAPSHOT_FILE).exists());
    assert!(records_end(&log_path(&dir)) < 600);
    let store = LocalStore::open_with(dir.path(), options).expect("reopen");
    assert_eq!(state(&store), before);
    assert_eq!(before.objects.len(), 20);
}

#[test]
fn a_failed_append_poisons_the_store() {
    let dir = TempDir::new().expect("tempdir");
    let (store, before) = populated(dir.path());
    // A read-only handle makes the next write fail, as a full disk would.
    store.lock().expect("lock").log = fs::File::open(log_path(&dir)).expect("open");
    let err = store.propose(alloc(1)).expect_err("write fails");
    assert!(matches!(err, StoreError::AppendLog { .. }), "{err}");
    for err in [
        store.propose(alloc(1)).expect_err("poisoned"),
        store.read(|_| ()).expect_err("poisoned"),
        store.snapshot_now().expect_err("poisoned"),
    ] {
        assert!(matches!(err, StoreError::Poisoned { .. }), "{err}");
        assert!(err.to_string().contains("restart"));
    }
    drop(store);
    // The unacknowledged command is not on disk.
    let store = LocalStore::open(dir.path()).expect("reopen");
    assert_eq!(state(&store), before);
}

#[test]
fn concurrent_proposers_get_disjoint_producer_ids() {
    let dir = TempDir::new().expect("tempdir");
    let store = Arc::new(LocalStore::open(dir.path()).expect("open"));
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let store = Arc::clone(&store);
            std::thread::spawn(move || {
                (0..25)
                    .map(|_| match store.propose(alloc(10)) {
                        Ok(Outcome::ProducerIds { first }) => first,
                        other => panic!("unexpected {other:?}"),
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut firsts: Vec<i64> = threads
        .into_iter()
        .flat_map(|t| t.join().expect("thread"))
        .collect();
    firsts.sort_unstable();
    let expected: Vec<i64> = (0..100).map(|i| 1000 + 10 * i).collect();
    assert_eq!(firsts, expected);
    let before = state(&store);
    drop(store);
    assert_eq!(
        state(&LocalStore::open(dir.path()).expect("reopen")),
        before
    );
}

#[test]
fn placement_is_logged_decided_and_replayed_as_decided() {
    use crate::model::fixture::create_topic_on;
    use crate::model::Move;

    let dir = TempDir::new().expect("tempdir");
    let store = LocalStore::open(dir.path()).expect("open");
    store.propose(register(1)).expect("register");
    store.propose(register(2)).expect("register");
    store
        .propose(create_topic_on("a", 1, 4, -1))
        .expect("create");
    let placed = state(&store).topics["a"]
        .partitions
        .iter()
        .map(|p| p.leader)
        .collect::<Vec<_>>();
    assert_eq!(placed, vec![1, 2, 1, 2]);
    drop(store);
    let log = fs::read(log_path(&dir)).expect("read log");
    let text = String::from_utf8_lossy(&log);
    assert!(text.contains("\"Decided\""), "{text}");

    // A decision this version's rules would not make (another version's)
    // replays as logged: the log, not the replaying binary, says where.
    let decided = Command::Decided {
        command: Box::new(create_topic_on("b", 2, 2, -1)),
        placed: (0..2)
            .map(|i| Move {
                partition: pid(2, i),
                to: 2,
            })
            .collect(),
    };
    append_raw(&log_path(&dir), &record(4, &decided));
    let store = LocalStore::open(dir.path()).expect("reopen");
    let b: Vec<i32> = state(&store).topics["b"]
        .partitions
        .iter()
        .map(|p| p.leader)
        .collect();
    assert_eq!(b, vec![2, 2]);
}
