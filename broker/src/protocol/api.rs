//! The APIs this broker serves and the versions of each. `ApiVersions` is
//! answered from this table, and requests outside it are refused, so what we
//! advertise and what we handle cannot drift apart.

use kafka_protocol::messages::ApiKey;

/// (API, lowest, highest version we implement). Clipped at start-up to what
/// the codec supports; see [`supported`].
const IMPLEMENTED: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 3, 10),
    (ApiKey::Fetch, 4, 12),
    (ApiKey::ListOffsets, 1, 7),
    (ApiKey::Metadata, 0, 12),
    (ApiKey::OffsetCommit, 2, 8),
    (ApiKey::OffsetFetch, 1, 8),
    (ApiKey::FindCoordinator, 0, 4),
    (ApiKey::JoinGroup, 0, 7),
    (ApiKey::Heartbeat, 0, 4),
    (ApiKey::LeaveGroup, 0, 4),
    (ApiKey::SyncGroup, 0, 5),
    (ApiKey::DescribeGroups, 0, 5),
    (ApiKey::ListGroups, 0, 4),
    (ApiKey::ApiVersions, 0, 3),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::DeleteTopics, 1, 6),
    (ApiKey::DeleteRecords, 0, 2),
    (ApiKey::InitProducerId, 0, 4),
    (ApiKey::OffsetForLeaderEpoch, 2, 4),
    (ApiKey::DescribeConfigs, 1, 4),
    (ApiKey::AlterConfigs, 0, 2),
    (ApiKey::CreatePartitions, 0, 3),
    (ApiKey::DeleteGroups, 0, 2),
    (ApiKey::IncrementalAlterConfigs, 0, 1),
    (ApiKey::OffsetDelete, 0, 0),
    (ApiKey::DescribeCluster, 0, 1),
    (ApiKey::AlterPartitionReassignments, 0, 0),
    (ApiKey::ListPartitionReassignments, 0, 0),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Supported {
    pub key: ApiKey,
    pub min: i16,
    pub max: i16,
}

/// Every API we serve with its version range.
pub fn supported() -> impl Iterator<Item = Supported> {
    IMPLEMENTED.iter().filter_map(|&(key, min, max)| {
        let codec = key.valid_versions();
        let (min, max) = (min.max(codec.min), max.min(codec.max));
        (min <= max).then_some(Supported { key, min, max })
    })
}

/// A fixed, bounded name for metric labels (never a `Debug` string).
pub fn name(key: ApiKey) -> &'static str {
    match key {
        ApiKey::Produce => "produce",
        ApiKey::Fetch => "fetch",
        ApiKey::ListOffsets => "list_offsets",
        ApiKey::Metadata => "metadata",
        ApiKey::OffsetCommit => "offset_commit",
        ApiKey::OffsetFetch => "offset_fetch",
        ApiKey::FindCoordinator => "find_coordinator",
        ApiKey::JoinGroup => "join_group",
        ApiKey::Heartbeat => "heartbeat",
        ApiKey::LeaveGroup => "leave_group",
        ApiKey::SyncGroup => "sync_group",
        ApiKey::DescribeGroups => "describe_groups",
        ApiKey::ListGroups => "list_groups",
        ApiKey::ApiVersions => "api_versions",
        ApiKey::CreateTopics => "create_topics",
        ApiKey::DeleteTopics => "delete_topics",
        ApiKey::DeleteRecords => "delete_records",
        ApiKey::InitProducerId => "init_producer_id",
        ApiKey::OffsetForLeaderEpoch => "offset_for_leader_epoch",
        ApiKey::DescribeConfigs => "describe_configs",
        ApiKey::AlterConfigs => "alter_configs",
        ApiKey::CreatePartitions => "create_partitions",
        ApiKey::DeleteGroups => "delete_groups",
        ApiKey::IncrementalAlterConfigs => "incremental_alter_configs",
        ApiKey::OffsetDelete => "offset_delete",
        ApiKey::DescribeCluster => "describe_cluster",
        ApiKey::AlterPartitionReassignments => "alter_partition_reassignments",
        ApiKey::ListPartitionReassignments => "list_partition_reassignments",
        _ => "other",
    }
}

/// The version range for `key`, if we serve it.
pub fn range(key: ApiKey) -> Option<Supported> {
    supported().find(|s| s.key == key)
}

pub fn is_supported(key: ApiKey, version: i16) -> bool {
    range(key).is_some_and(|s| (s.min..=s.max).contains(&version))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_within_the_codec() {
        assert!(supported().count() >= 25);
        for s in supported() {
            let codec = s.key.valid_versions();
            assert!(s.min >= codec.min && s.max <= codec.max, "{s:?}");
        }
        assert!(is_supported(ApiKey::Produce, 9));
        assert!(!is_supported(ApiKey::Produce, 2));
        assert!(!is_supported(ApiKey::EndTxn, 0));
        for s in supported() {
            assert_ne!(name(s.key), "other", "{:?} needs a metric name", s.key);
        }
    }
}
