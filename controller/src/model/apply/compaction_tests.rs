//! ReplaceIndexEntries (compaction): accepted replacements and every refusal.

use crate::model::fixture::{commit, create_topic, pid, released, trim, Driver};
use crate::model::{ApplyError, Command, IndexEntry, ObjectMeta, PartitionId};

fn entry(d: &Driver, p: PartitionId, base: i64) -> IndexEntry {
    d.state.partition(p).expect("partition").index[&base].clone()
}

fn replace(p: PartitionId, replaced: Vec<IndexEntry>, key: &str, size: u64) -> Command {
    let (base, end) = (
        replaced[0].base_offset,
        replaced[replaced.len() - 1].end_offset,
    );
    Command::ReplaceIndexEntries {
        partition: p,
        replacement: IndexEntry {
            base_offset: base,
            end_offset: end,
            leader_epoch: 0,
            object_key: key.to_owned(),
            byte_start: 0,
            byte_len: size,
            max_timestamp: end * 100,
        },
        replaced,
        object: ObjectMeta {
            key: key.to_owned(),
            size,
            created_ms: 2,
            live_entries: 0,
        },
    }
}

/// Two partitions sharing three small objects: p0 has 0..5, 5..9, 9..12.
fn setup() -> (Driver, PartitionId, PartitionId) {
    let mut d = Driver::default();
    d.ok(create_topic("a", 1, 2));
    let (p0, p1) = (pid(1, 0), pid(1, 1));
    d.ok(commit("o1", &[(p0, 0, 5, 0), (p1, 0, 3, 0)]));
    d.ok(commit("o2", &[(p0, 5, 9, 0)]));
    d.ok(commit("o3", &[(p0, 9, 12, 0), (p1, 3, 4, 0)]));
    (d, p0, p1)
}

#[test]
fn replacing_a_run_releases_only_objects_nothing_else_names() {
    let (mut d, p0, p1) = setup();
    let run = vec![entry(&d, p0, 0), entry(&d, p0, 5), entry(&d, p0, 9)];
    // o2 was p0's alone; o1 and o3 are still named by p1.
    assert_eq!(d.ok(replace(p0, run, "c1", 30)), released(&["o2"]));
    let part = d.state.partition(p0).expect("p0");
    assert_eq!(part.index.keys().copied().collect::<Vec<_>>(), [0]);
    assert_eq!(part.index[&0].end_offset, 12);
    assert_eq!(part.committed_end, 12);
    assert_eq!(d.state.objects["c1"].live_entries, 1);
    assert_eq!(d.state.objects["o1"].live_entries, 1);
    assert!(!d.state.objects.contains_key("o2"));
    // p1 can be compacted next, which frees o1 and o3.
    let run = vec![entry(&d, p1, 0), entry(&d, p1, 3)];
    assert_eq!(d.ok(replace(p1, run, "c2", 20)), released(&["o1", "o3"]));
    assert_eq!(
        d.state.index_entry_at(p1, 3).expect("entry").object_key,
        "c2"
    );
}

#[test]
fn stale_or_malformed_replacements_are_refused() {
    let (mut d, p0, _) = setup();
    let e0 = entry(&d, p0, 0);
    let e5 = entry(&d, p0, 5);
    let e9 = entry(&d, p0, 9);
    // Not contiguous.
    assert!(matches!(
        d.refused(replace(p0, vec![e0.clone(), e9.clone()], "c", 10)),
        ApplyError::InvalidReplacement { .. }
    ));
    // An entry that changed since it was read.
    let mut changed = e5.clone();
    changed.byte_len = 99;
    assert!(matches!(
        d.refused(replace(p0, vec![e0.clone(), changed], "c", 10)),
        ApplyError::ReplacedEntryChanged { base_offset: 5, .. }
    ));
    // An existing object key, a bad byte range, an empty run.
    assert!(matches!(
        d.refused(replace(p0, vec![e0.clone(), e5.clone()], "o1", 10)),
        ApplyError::ObjectExists { .. }
    ));
    assert!(matches!(
        d.refused(replace(p0, vec![e0.clone(), e5.clone()], "c", 0)),
        ApplyError::InvalidByteRange { .. }
    ));
    let mut cmd = replace(p0, vec![e0.clone()], "c", 10);
    if let Command::ReplaceIndexEntries { replaced, .. } = &mut cmd {
        replaced.clear();
    }
    assert!(matches!(
        d.refused(cmd),
        ApplyError::InvalidReplacement { .. }
    ));
    // A trim that raced ahead of the compactor makes its view stale.
    d.ok(trim(p0, 5));
    assert!(matches!(
        d.refused(replace(p0, vec![e0, e5, e9], "c", 30)),
        ApplyError::ReplacedEntryChanged { base_offset: 0, .. }
    ));
}
