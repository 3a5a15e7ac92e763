//! WAL tests: order after reopen, torn tails, corruption, segments created
//! ahead, trimming.

use super::*;
use crate::protocol::batch::{patch, tests::make_batch};

fn pid(p: i32) -> PartitionId {
    PartitionId {
        topic_id: Uuid::from_u128(7),
        partition: p,
    }
}

fn record(p: i32, base: i64, n: i32) -> WalRecord {
    let mut b = make_batch(n, None, 1);
    patch(&mut b, base, 0);
    WalRecord {
        partition: pid(p),
        base_offset: base,
        end_offset: base + i64::from(n),
        leader_epoch: 0,
        batch: b.freeze(),
    }
}

async fn append(wal: &Wal, recs: Vec<WalRecord>) {
    wal.submit(recs)
        .await
        .expect("writer alive")
        .expect("durable");
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "wal"))
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn appended_records_come_back_in_order_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, recovered) = Wal::open(dir.path(), 1 << 20).unwrap();
    assert!(recovered.is_empty());
    let mut waits = Vec::new();
    for i in 0..20 {
        waits.push(wal.submit(vec![record(i % 3, i64::from(i) * 2, 2)]));
    }
    for w in waits {
        w.await.unwrap().unwrap();
    }
    drop(wal);
    let (_wal, recovered) = Wal::open(dir.path(), 1 << 20).unwrap();
    let bases: Vec<i64> = recovered.iter().map(|r| r.base_offset).collect();
    assert_eq!(bases, (0..20).map(|i| i * 2).collect::<Vec<_>>());
    assert_eq!(recovered[5], record(2, 10, 2));
}

#[tokio::test]
async fn torn_tail_is_truncated_and_interior_corruption_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = Wal::open(dir.path(), 1 << 20).unwrap();
    append(&wal, vec![record(0, 0, 1), record(0, 1, 1)]).await;
    drop(wal);
    // The first segment is the active one (a second may have been
    // created ahead).
    let seg = segments(dir.path()).swap_remove(0);
    let good_len = fs::metadata(&seg).unwrap().len();
    // A torn write: half of a third record at the end of the newest segment.
    let third = encode_for_test(&[record(0, 2, 1)]);
    let mut f = OpenOptions::new().append(true).open(&seg).unwrap();
    f.write_all(&third[..third.len() / 2]).unwrap();
    drop(f);
    let (wal, recovered) = Wal::open(dir.path(), 1 << 20).unwrap();
    assert_eq!(recovered.len(), 2);
    assert_eq!(fs::metadata(&seg).unwrap().len(), good_len);
    drop(wal);
    // Flip a byte inside the first record of what is now an older segment.
    let mut data = fs::read(&seg).unwrap();
    data[SEGMENT_HEADER_LEN + RECORD_PREFIX + 3] ^= 0xff;
    fs::write(&seg, &data).unwrap();
    let err = Wal::open(dir.path(), 1 << 20).err().expect("refused");
    let msg = err.to_string();
    assert!(matches!(err, WalError::Corrupt { .. }), "{msg}");
    assert!(
        msg.contains(&seg.display().to_string()) && msg.contains("CRC"),
        "{msg}"
    );
}

#[tokio::test]
async fn bad_magic_is_refused_with_the_file_named() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(
        dir.path().join(format!("{:020}.wal", 1)),
        b"NOTAWAL!0000000000000000",
    )
    .unwrap();
    fs::write(dir.path().join(format!("{:020}.wal", 2)), b"").unwrap();
    let msg = Wal::open(dir.path(), 1 << 20)
        .err()
        .expect("refused")
        .to_string();
    assert!(
        msg.contains("bad segment magic") && msg.contains("00000000000000000001.wal"),
        "{msg}"
    );
}

/// Unlinks happen on their own thread: wait (bounded) for the count.
async fn eventually(dir: &Path, count: usize) {
    for _ in 0..200 {
        if segments(dir).len() == count {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(segments(dir).len(), count, "{:?}", segments(dir));
}

#[tokio::test]
async fn segments_created_ahead_do_not_count_as_written() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = Wal::open(dir.path(), 1 << 20).unwrap();
    append(&wal, vec![record(0, 0, 1), record(0, 1, 1)]).await;
    // The active segment and the one created ahead (header only).
    eventually(dir.path(), 2).await;
    drop(wal);
    let segs = segments(dir.path());
    let active = &segs[0];
    assert_eq!(
        fs::metadata(&segs[1]).unwrap().len(),
        SEGMENT_HEADER_LEN as u64
    );
    let good_len = fs::metadata(active).unwrap().len();
    // A crash mid-write in the active segment, and one while creating a
    // further segment ahead (a torn header).
    let third = encode_for_test(&[record(0, 2, 1)]);
    let mut f = OpenOptions::new().append(true).open(active).unwrap();
    f.write_all(&third[..third.len() / 2]).unwrap();
    drop(f);
    fs::write(segment_path(dir.path(), 3), &SEGMENT_MAGIC[..3]).unwrap();
    // The active segment is still the one whose tail may be torn.
    let (wal, recovered) = Wal::open(dir.path(), 1 << 20).unwrap();
    assert_eq!(recovered, vec![record(0, 0, 1), record(0, 1, 1)]);
    assert_eq!(fs::metadata(active).unwrap().len(), good_len);
    assert!(
        !segment_path(dir.path(), 3).exists() || {
            // Re-created ahead by the reopened log: a complete header.
            fs::metadata(segment_path(dir.path(), 3)).unwrap().len() == SEGMENT_HEADER_LEN as u64
        }
    );
    append(&wal, vec![record(0, 2, 1)]).await;
    drop(wal);
    let (_wal, recovered) = Wal::open(dir.path(), 1 << 20).unwrap();
    let bases: Vec<i64> = recovered.iter().map(|r| r.base_offset).collect();
    assert_eq!(bases, vec![0, 1, 2]);
}

#[tokio::test]
async fn trim_deletes_only_fully_committed_closed_segments() {
    let dir = tempfile::tempdir().unwrap();
    // Tiny segments: every append rotates.
    let (wal, _) = Wal::open(dir.path(), 64).unwrap();
    append(&wal, vec![record(0, 0, 1)]).await;
    append(&wal, vec![record(1, 0, 1)]).await;
    append(&wal, vec![record(0, 1, 1)]).await;
    // Completions fire before rotation: an empty submission is a barrier.
    // Three written segments, the active one and the one created ahead.
    append(&wal, vec![]).await;
    eventually(dir.path(), 5).await;
    // Partition 0 committed up to 1: only the first segment is covered.
    wal.trim(HashMap::from([(pid(0), 1), (pid(1), 0)]));
    append(&wal, vec![]).await;
    eventually(dir.path(), 4).await;
    // Partition 1 gone (deleted topic), partition 0 fully committed.
    wal.trim(HashMap::from([(pid(0), 2)]));
    append(&wal, vec![]).await;
    eventually(dir.path(), 2).await;
    let left = segments(dir.path());
    assert_eq!(
        left.len(),
        2,
        "only the active segment and the next one remain: {left:?}"
    );
    drop(wal);
    let (_wal, recovered) = Wal::open(dir.path(), 64).unwrap();
    assert!(recovered.is_empty(), "{recovered:?}");
}
