//! Writes the seed corpora under `fuzz/corpus/` from real encoders, so the
//! fuzzer starts from well-formed requests, batches and WAL segments.
//! Run: cargo run --manifest-path fuzz/Cargo.toml --example gen_corpus

use std::path::Path;

use bytes::{Bytes, BytesMut};
use floe_broker::storage::wal::{encode_for_test, WalRecord};
use floe_controller::model::PartitionId;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Encodable, StrBytes};

fn main() {
    let fuzz_dir = option_env!("CARGO_MANIFEST_DIR").unwrap_or("fuzz");
    let root = Path::new(fuzz_dir).join("corpus");
    let topic = TopicName(StrBytes::from_static_str("orders"));
    let topic_id = uuid::Uuid::from_u128(0x1234);
    let reqs: Vec<(&str, i16, RequestKind)> = vec![
        (
            "api_versions_v3",
            3,
            RequestKind::ApiVersions(
                ApiVersionsRequest::default()
                    .with_client_software_name(StrBytes::from_static_str("floe-fuzz"))
                    .with_client_software_version(StrBytes::from_static_str("1.0")),
            ),
        ),
        (
            "metadata_v12",
            12,
            RequestKind::Metadata(
                MetadataRequest::default()
                    .with_topics(Some(vec![MetadataRequestTopic::default()
                        .with_name(Some(topic.clone()))
                        .with_topic_id(topic_id)]))
                    .with_allow_auto_topic_creation(true),
            ),
        ),
        (
            "metadata_v0",
            0,
            RequestKind::Metadata(MetadataRequest::default().with_topics(Some(vec![
                MetadataRequestTopic::default().with_name(Some(topic.clone())),
            ]))),
        ),
        (
            "produce_v9",
            9,
            RequestKind::Produce(
                ProduceRequest::default()
                    .with_acks(-1)
                    .with_timeout_ms(30_000)
                    .with_topic_data(vec![TopicProduceData::default()
                        .with_name(topic.clone())
                        .with_partition_data(vec![PartitionProduceData::default()
                            .with_index(0)
                            .with_records(Some(batch(3, 7, 0)))])]),
            ),
        ),
        (
            "fetch_v12",
            12,
            RequestKind::Fetch(
                FetchRequest::default()
                    .with_max_wait_ms(500)
                    .with_min_bytes(1)
                    .with_max_bytes(1 << 20)
                    .with_topics(vec![FetchTopic::default()
                        .with_topic(topic.clone())
                        .with_partitions(vec![FetchPartition::default()
                            .with_partition(0)
                            .with_fetch_offset(5)
                            .with_partition_max_bytes(1 << 20)])]),
            ),
        ),
        (
            "join_group_v7",
            7,
            RequestKind::JoinGroup(
                JoinGroupRequest::default()
                    .with_group_id(GroupId(StrBytes::from_static_str("g")))
                    .with_session_timeout_ms(10_000)
                    .with_rebalance_timeout_ms(10_000)
                    .with_protocol_type(StrBytes::from_static_str("consumer"))
                    .with_protocols(vec![JoinGroupRequestProtocol::default()
                        .with_name(StrBytes::from_static_str("range"))
                        .with_metadata(Bytes::from_static(b"\0\x01\0\0\0\x01\0\x06orders"))]),
            ),
        ),
    ];
    for (name, version, req) in reqs {
        let api = api_key(&req);
        let header = RequestHeader::default()
            .with_request_api_key(api as i16)
            .with_request_api_version(version)
            .with_correlation_id(7)
            .with_client_id(Some(StrBytes::from_static_str("fuzz")));
        let mut buf = BytesMut::new();
        header
            .encode(&mut buf, api.request_header_version(version))
            .unwrap();
        req.encode(&mut buf, version).unwrap();
        write(&root.join("request_decode").join(name), &buf);
    }

    // record_batch: flags byte (see the target), then batches or a segment.
    let mut two = BytesMut::from(&batch(1, 0, 0)[..]);
    two.extend_from_slice(&batch(4, 1, 10));
    write(
        &root.join("record_batch/batch_one"),
        &[&[0u8][..], &batch(2, 0, 0)].concat(),
    );
    write(
        &root.join("record_batch/batches_two"),
        &[&[0u8][..], &two].concat(),
    );
    let producer = batch_with(2, 0, 3, Some((42, 1, 10)));
    write(
        &root.join("record_batch/batch_idempotent"),
        &[&[1u8][..], &producer].concat(),
    );
    let part = PartitionId {
        topic_id,
        partition: 3,
    };
    let records = vec![
        WalRecord {
            partition: part,
            base_offset: 0,
            end_offset: 2,
            leader_epoch: 1,
            batch: batch(2, 0, 0),
        },
        WalRecord {
            partition: part,
            base_offset: 2,
            end_offset: 3,
            leader_epoch: 1,
            batch: batch(1, 2, 0),
        },
    ];
    let body = encode_for_test(&records);
    // Bit 1: the target prepends the segment header.
    write(
        &root.join("record_batch/wal_segment"),
        &[&[2u8][..], &body].concat(),
    );
    let torn = &body[..body.len() - 5];
    write(
        &root.join("record_batch/wal_torn_tail"),
        &[&[2u8][..], torn].concat(),
    );
    write(
        &root.join("record_batch/wal_not_last"),
        &[&[6u8][..], &body].concat(),
    );
    // Bits 0 and 3: the records as one group of a current-format segment.
    write(
        &root.join("record_batch/wal2_segment"),
        &[&[9u8][..], &body].concat(),
    );
    write(
        &root.join("record_batch/wal2_torn_group"),
        &[&[9u8][..], torn].concat(),
    );
    write(
        &root.join("record_batch/wal2_not_last"),
        &[&[13u8][..], &body].concat(),
    );
}

fn api_key(req: &RequestKind) -> ApiKey {
    match req {
        RequestKind::ApiVersions(_) => ApiKey::ApiVersions,
        RequestKind::Metadata(_) => ApiKey::Metadata,
        RequestKind::Produce(_) => ApiKey::Produce,
        RequestKind::Fetch(_) => ApiKey::Fetch,
        RequestKind::JoinGroup(_) => ApiKey::JoinGroup,
        _ => unreachable!("add the key for new seeds"),
    }
}

fn write(path: &Path, bytes: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
    println!("{} ({} bytes)", path.display(), bytes.len());
}

fn batch(n: i32, base_offset: i64, ts: i64) -> Bytes {
    batch_with(n, base_offset, ts, None)
}

/// A valid uncompressed v2 batch of `n` small records at `base_offset`.
fn batch_with(n: i32, base_offset: i64, ts: i64, producer: Option<(i64, i16, i32)>) -> Bytes {
    let values: Vec<String> = (0..n).map(|i| format!("v{i}")).collect();
    let mut b = floe_broker::protocol::batch::encode_uncompressed(&values, producer, ts);
    floe_broker::protocol::batch::patch(&mut b, base_offset, 0);
    b.freeze()
}
