//! WAL tests: order after reopen, torn tails, corruption, segments created
//! ahead, trimming, reuse of released segments, the earlier format.

use std::io::Write;
use std::os::unix::fs::MetadataExt;

use uuid::Uuid;

use super::format::{GROUP_HEADER, MAGIC_V1, RECORD_PREFIX};
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

/// One group of segment `seq` holding `records`, as the writer lays it out.
fn group(seq: u64, records: &[WalRecord]) -> Vec<u8> {
    let mut out = Vec::new();
    let start = begin_group(&mut out);
    for r in records {
        encode_record(&mut out, r);
    }
    finish_group(&mut out, start, seq, records.len() as u32);
    out
}

#[tokio::test]
async fn torn_group_is_truncated_and_corruption_before_later_groups_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = Wal::open(dir.path(), 1 << 20).unwrap();
    append(&wal, vec![record(0, 0, 1), record(0, 1, 1)]).await;
    append(&wal, vec![record(0, 2, 1)]).await;
    append(&wal, vec![record(0, 3, 1)]).await;
    drop(wal);
    // The first segment is the active one (a second may have been
    // created ahead).
    let seg = segments(dir.path()).swap_remove(0);
    let good_len = fs::metadata(&seg).unwrap().len();
    assert_eq!(good_len, 4 * BLOCK as u64, "header block and three groups");
    let acknowledged = vec![
        record(0, 0, 1),
        record(0, 1, 1),
        record(0, 2, 1),
        record(0, 3, 1),
    ];
    // A torn write: a whole group header whose records did not all reach
    // the disk, followed by what an earlier use of the file left behind
    // (sequence 7), or by a second group of this segment written whole
    // while the torn one was being synced (two in flight at the crash).
    // Neither was acknowledged, so everything from the torn group on goes.
    for next_seq in [7, 1] {
        let mut torn = group(1, &[record(0, 4, 1)]);
        torn[GROUP_HEADER + RECORD_PREFIX + 5] ^= 0xff;
        torn.extend(group(next_seq, &[record(0, 5, 1)]));
        let mut f = OpenOptions::new().append(true).open(&seg).unwrap();
        f.write_all(&torn).unwrap();
        drop(f);
        let (wal, recovered) = Wal::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(recovered, acknowledged, "followed by sequence {next_seq}");
        assert_eq!(fs::metadata(&seg).unwrap().len(), good_len);
        drop(wal);
    }
    // Flip a byte inside the first group: two groups were written after
    // it, which the WAL only does once it is durable (and acknowledged),
    // so this is corruption, not a torn write.
    let mut data = fs::read(&seg).unwrap();
    data[BLOCK + GROUP_HEADER + RECORD_PREFIX + 3] ^= 0xff;
    fs::write(&seg, &data).unwrap();
    let err = Wal::open(dir.path(), 1 << 20).err().expect("refused");
    let msg = err.to_string();
    assert!(matches!(err, WalError::Corrupt { .. }), "{msg}");
    assert!(
        msg.contains(&seg.display().to_string()) && msg.contains("CRC"),
        "{msg}"
    );
    // The same flip in the second group, which one group follows: that
    // is how a crash with two groups in flight looks, so the last two
    // groups are dropped as never acknowledged.
    data[BLOCK + GROUP_HEADER + RECORD_PREFIX + 3] ^= 0xff;
    data[2 * BLOCK + GROUP_HEADER + RECORD_PREFIX + 3] ^= 0xff;
    fs::write(&seg, &data).unwrap();
    let (_wal, recovered) = Wal::open(dir.path(), 1 << 20).unwrap();
    assert_eq!(recovered, acknowledged[..2]);
}

#[tokio::test]
async fn an_older_segment_that_ends_without_its_trailer_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut first = header_block(1);
    first.extend(group(1, &[record(0, 0, 1)]));
    first.extend(vec![0x5a; BLOCK]);
    fs::write(segment_path(dir.path(), 1), &first).unwrap();
    let mut second = header_block(2);
    second.extend(group(2, &[record(0, 1, 1)]));
    fs::write(segment_path(dir.path(), 2), &second).unwrap();
    let msg = Wal::open(dir.path(), 1 << 20)
        .err()
        .expect("refused")
        .to_string();
    assert!(
        msg.contains("without its trailer") && msg.contains("00000000000000000001.wal"),
        "{msg}"
    );
}

#[tokio::test]
async fn segments_of_the_earlier_format_are_still_recovered() {
    let dir = tempfile::tempdir().unwrap();
    let mut old = MAGIC_V1.to_vec();
    old.extend_from_slice(&1u64.to_be_bytes());
    old.extend_from_slice(&encode_for_test(&[record(0, 0, 1), record(1, 0, 2)]));
    fs::write(segment_path(dir.path(), 1), &old).unwrap();
    let (wal, recovered) = Wal::open(dir.path(), 1 << 20).unwrap();
    assert_eq!(recovered, vec![record(0, 0, 1), record(1, 0, 2)]);
    append(&wal, vec![record(0, 1, 1)]).await;
    drop(wal);
    let (_wal, recovered) = Wal::open(dir.path(), 1 << 20).unwrap();
    assert_eq!(
        recovered,
        vec![record(0, 0, 1), record(1, 0, 2), record(0, 1, 1)]
    );
    assert_eq!(fs::read(segment_path(dir.path(), 1)).unwrap(), old);
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
    assert_eq!(fs::metadata(&segs[1]).unwrap().len(), BLOCK as u64);
    let good_len = fs::metadata(active).unwrap().len();
    // A crash mid-write in the active segment, and one while creating a
    // further segment ahead (a torn header).
    let third = group(1, &[record(0, 2, 1)]);
    let mut f = OpenOptions::new().append(true).open(active).unwrap();
    f.write_all(&third[..GROUP_HEADER + 20]).unwrap();
    drop(f);
    fs::write(segment_path(dir.path(), 3), &b"FLOEWAL2"[..3]).unwrap();
    // The active segment is still the one whose tail may be torn.
    let (wal, recovered) = Wal::open(dir.path(), 1 << 20).unwrap();
    assert_eq!(recovered, vec![record(0, 0, 1), record(0, 1, 1)]);
    assert_eq!(fs::metadata(active).unwrap().len(), good_len);
    // Segments 2 (created ahead, never written) and 3 (torn) were set aside
    // for reuse, not deleted: the reopened log starts a new segment 2, and
    // one of the set-aside files becomes segment 3, the one prepared ahead.
    eventually(dir.path(), 3).await;
    assert_eq!(free(dir.path()), 1);
    assert_eq!(
        fs::metadata(segment_path(dir.path(), 3)).unwrap().len(),
        BLOCK as u64
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

fn free(dir: &Path) -> usize {
    fs::read_dir(dir)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|e| e == FREE_EXT)
        })
        .count()
}

#[tokio::test]
async fn released_segments_are_reused_and_their_old_groups_never_replayed() {
    let dir = tempfile::tempdir().unwrap();
    // Three one-record groups fill a segment (header block + 3 blocks).
    let seg_bytes = 4 * BLOCK as u64;
    let (wal, _) = Wal::open(dir.path(), seg_bytes).unwrap();
    let rec = |base| record(0, base, 1);
    for base in 0..3 {
        append(&wal, vec![rec(base)]).await;
    }
    let first = fs::metadata(segment_path(dir.path(), 1)).unwrap().ino();
    // Segment 1 is covered: released, set aside for reuse.
    wal.trim(HashMap::from([(pid(0), 3)]));
    append(&wal, vec![]).await;
    for _ in 0..200 {
        if free(dir.path()) == 1 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(free(dir.path()), 1);
    // Fill segments 2 and 3; segment 4 is the released file, reused.
    for base in 3..9 {
        append(&wal, vec![rec(base)]).await;
    }
    append(&wal, vec![rec(9)]).await;
    drop(wal);
    assert_eq!(
        fs::metadata(segment_path(dir.path(), 4)).unwrap().ino(),
        first,
        "segment 4 reuses segment 1's file"
    );
    assert_eq!(free(dir.path()), 0);
    // A file renamed for reuse whose new header never landed (a crash in
    // between): ahead of the newest segment, holding only an old sequence
    // number's groups.
    fs::copy(segment_path(dir.path(), 2), segment_path(dir.path(), 9)).unwrap();
    let (wal, recovered) = Wal::open(dir.path(), seg_bytes).unwrap();
    let bases: Vec<i64> = recovered.iter().map(|r| r.base_offset).collect();
    // Segment 1's records (0..3) are still in segment 4's blocks after the
    // one group written there; they must not come back.
    assert_eq!(bases, (3..10).collect::<Vec<_>>());
    assert!(!segment_path(dir.path(), 9).exists());
    // Segment 4 ends at its one group now: what follows went with the truncation.
    assert_eq!(
        fs::metadata(segment_path(dir.path(), 4)).unwrap().len(),
        2 * BLOCK as u64
    );
    drop(wal);
    let (_wal, again) = Wal::open(dir.path(), seg_bytes).unwrap();
    assert_eq!(again, recovered);
}

/// Syncs finish in any order; acknowledgements leave in write order, a
/// sync covers the earlier groups of its own segment only, and a barrier
/// waits for every group before it.
#[test]
fn acknowledgements_follow_write_order_whichever_sync_returns_first() {
    let mut acks = Acks::default();
    let mut rx = Vec::new();
    // Groups 0 and 1 in segment 5, a barrier, group 3 in segment 6.
    for (seq, durable) in [(5, false), (5, false), (5, true), (6, false)] {
        let (done, r) = oneshot::channel();
        acks.push(seq, durable, vec![done]);
        rx.push(r);
    }
    let acked = |rx: &mut Vec<oneshot::Receiver<Result<(), WalError>>>| {
        rx.iter_mut()
            .map(|r| matches!(r.try_recv(), Ok(Ok(()))))
            .collect::<Vec<_>>()
    };
    // The next segment's group is durable first: nothing before it is.
    synced(&mut acks, 3, 6);
    assert_eq!(acked(&mut rx), [false, false, false, false]);
    // Group 1's sync returns before group 0's and covers it (same file);
    // the barrier and the group of segment 6 follow at once.
    synced(&mut acks, 1, 5);
    assert_eq!(acked(&mut rx), [true, true, true, true]);
    assert!(acks.pending.is_empty());
    // Group 0's own sync returning late changes nothing.
    synced(&mut acks, 0, 5);
}

/// Every crash image the writer can leave: the groups before `k` durable,
/// groups `k` and `k + 1` (the two in flight) with any of their 4 KiB
/// blocks on disk or not, and what an earlier use of the file (or nothing)
/// left after them. Recovery must start, and give back exactly the records
/// of a prefix of the groups that holds every group before `k`.
#[tokio::test]
async fn every_crash_with_two_groups_in_flight_recovers_a_prefix() {
    let seq = 9;
    let mut offset = 0;
    let groups: Vec<Vec<WalRecord>> = [1, 300, 2, 50, 700, 1, 3, 120]
        .iter()
        .enumerate()
        .map(|(i, &n)| {
            let recs: Vec<WalRecord> = (0..1 + i % 2)
                .map(|_| {
                    let r = record(i as i32 % 3, offset, n);
                    offset += i64::from(n);
                    r
                })
                .collect();
            recs
        })
        .collect();
    let encoded: Vec<Vec<u8>> = groups.iter().map(|g| group(seq, g)).collect();
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut cases = 0;
    for k in 0..=groups.len() {
        for variant in 0..24 {
            // What the file held before: zeros, or an earlier segment's groups.
            let mut stale = Vec::new();
            if variant % 2 == 1 {
                stale.extend(header_block(seq - 1));
                for g in groups.iter().cycle().take(16) {
                    stale.extend(group(seq - 1, g));
                }
            }
            stale.resize(64 * BLOCK, 0);
            let mut image = header_block(seq);
            for g in &encoded[..k] {
                image.extend(g);
            }
            for g in encoded.iter().skip(k).take(2) {
                for block in g.chunks(BLOCK) {
                    let at = image.len();
                    if next() % 2 == 0 {
                        image.extend(block);
                    } else {
                        image.extend(&stale[at..at + block.len()]);
                    }
                }
            }
            let at = image.len();
            let tail = (next() % 4) as usize * BLOCK;
            image.extend(&stale[at..at + tail]);
            let dir = tempfile::tempdir().unwrap();
            fs::write(segment_path(dir.path(), seq), &image).unwrap();
            let (wal, recovered) = Wal::open(dir.path(), 1 << 20)
                .unwrap_or_else(|e| panic!("crash at group {k}, variant {variant}: {e}"));
            drop(wal);
            let prefix = (k..=(k + 2).min(groups.len()))
                .find(|&j| groups[..j].concat() == recovered)
                .unwrap_or_else(|| {
                    panic!(
                        "crash at group {k}, variant {variant}: recovered {} records, not a prefix holding the first {k} groups",
                        recovered.len()
                    )
                });
            assert!(prefix >= k);
            cases += 1;
        }
    }
    assert_eq!(cases, 24 * (groups.len() + 1));
}
