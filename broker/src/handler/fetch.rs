//! Fetch (with long poll), ListOffsets and OffsetForLeaderEpoch. Readers see
//! only data below the high watermark, which is the durable end.

use std::time::Duration;

use futures::future::select_all;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::{
    FetchRequest, FetchResponse, ListOffsetsRequest, ListOffsetsResponse,
    OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse,
};

use super::{code, not_served};
use crate::broker::Broker;
use crate::storage::ReadError;

/// Longest long poll we honour, whatever the client asks.
const MAX_WAIT: Duration = Duration::from_secs(30);

pub async fn fetch(b: &Broker, req: FetchRequest, _version: i16) -> FetchResponse {
    let wait = Duration::from_millis(req.max_wait_ms.max(0) as u64).min(MAX_WAIT);
    let deadline = tokio::time::Instant::now() + wait;
    let max_bytes = if req.max_bytes <= 0 {
        50 << 20
    } else {
        req.max_bytes as usize
    };
    let min_bytes = req.min_bytes.max(0) as usize;
    let targets: Vec<_> = req
        .topics
        .iter()
        .map(|t| (t, b.cluster.route(t.topic.0.as_str())))
        .collect();
    loop {
        // Subscribe before reading so an append in between still wakes us.
        let mut watches = Vec::new();
        for (t, topic) in &targets {
            for p in &t.partitions {
                if let Some(rx) = topic
                    .as_ref()
                    .and_then(|tv| tv.partition_id(p.partition))
                    .and_then(|id| b.storage.subscribe(id))
                {
                    watches.push(rx);
                }
            }
        }
        let mut r = FetchResponse::default();
        let mut total = 0usize;
        let mut errors = false;
        for (t, topic) in &targets {
            let mut tr = FetchableTopicResponse::default();
            tr.topic = t.topic.clone();
            tr.topic_id = t.topic_id;
            for p in &t.partitions {
                let mut pd = PartitionData::default();
                pd.partition_index = p.partition;
                pd.high_watermark = -1;
                pd.last_stable_offset = -1;
                pd.log_start_offset = -1;
                pd.aborted_transactions = Some(Vec::new());
                let id = topic.as_ref().and_then(|tv| tv.partition_id(p.partition));
                let marks = id.and_then(|id| b.storage.watermarks(id).map(|w| (id, w)));
                match marks {
                    None => {
                        pd.error_code = code(not_served(id));
                        errors = true;
                    }
                    Some((id, w)) => {
                        pd.high_watermark = w.high_watermark;
                        pd.last_stable_offset = w.high_watermark;
                        pd.log_start_offset = w.log_start;
                        let budget = max_bytes.saturating_sub(total);
                        let part_max = (p.partition_max_bytes.max(0) as usize).min(budget);
                        if budget == 0 && total > 0 {
                            pd.records = Some(Default::default());
                        } else {
                            match b.storage.read(id, p.fetch_offset, part_max.max(1)).await {
                                Ok(bytes) => {
                                    total += bytes.len();
                                    pd.records = Some(bytes);
                                }
                                Err(ReadError::OffsetOutOfRange {
                                    log_start,
                                    high_watermark,
                                    ..
                                }) => {
                                    pd.error_code = code(ResponseError::OffsetOutOfRange);
                                    pd.log_start_offset = log_start;
                                    pd.high_watermark = high_watermark;
                                    errors = true;
                                }
                                Err(ReadError::UnknownPartition) => {
                                    pd.error_code = code(ResponseError::NotLeaderOrFollower);
                                    errors = true;
                                }
                                Err(e) => {
                                    tracing::warn!(error = %e, "fetch read failed");
                                    pd.error_code = code(ResponseError::KafkaStorageError);
                                    errors = true;
                                }
                            }
                        }
                    }
                }
                tr.partitions.push(pd);
            }
            r.responses.push(tr);
        }
        let now = tokio::time::Instant::now();
        if errors || total >= min_bytes.max(1) || now >= deadline || watches.is_empty() {
            b.metrics.fetch_bytes.inc_by(total as u64);
            return r;
        }
        let changed = select_all(watches.iter_mut().map(|w| Box::pin(w.changed())));
        if tokio::time::timeout_at(deadline, changed).await.is_err() {
            // Deadline: answer with what we have (usually nothing).
            b.metrics.fetch_bytes.inc_by(total as u64);
            return r;
        }
    }
}

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;

pub async fn list_offsets(
    b: &Broker,
    req: ListOffsetsRequest,
    version: i16,
) -> ListOffsetsResponse {
    let mut r = ListOffsetsResponse::default();
    for t in req.topics {
        let topic = b.cluster.route(t.name.0.as_str());
        let mut tr = ListOffsetsTopicResponse::default();
        tr.name = t.name.clone();
        for p in t.partitions {
            let mut pr = ListOffsetsPartitionResponse::default();
            pr.partition_index = p.partition_index;
            pr.timestamp = -1;
            pr.offset = -1;
            let id = topic
                .as_ref()
                .and_then(|tv| tv.partition_id(p.partition_index));
            match id.and_then(|id| b.storage.watermarks(id).map(|w| (id, w))) {
                None => pr.error_code = code(not_served(id)),
                Some((id, w)) => {
                    if version >= 4 {
                        pr.leader_epoch = w.leader_epoch;
                    }
                    match p.timestamp {
                        LATEST => pr.offset = w.high_watermark,
                        EARLIEST => pr.offset = w.log_start,
                        ts if ts >= 0 => match b.storage.offset_for_timestamp(id, ts).await {
                            Ok(Some((offset, found_ts))) => {
                                pr.offset = offset;
                                pr.timestamp = found_ts;
                            }
                            Ok(None) => {}
                            Err(e) => {
                                tracing::warn!(error = %e, "offset lookup by time failed");
                                pr.error_code = code(ResponseError::KafkaStorageError);
                            }
                        },
                        MAX_TIMESTAMP => match b.storage.max_timestamp(id).await {
                            Ok(Some((offset, ts))) => {
                                pr.offset = offset;
                                pr.timestamp = ts;
                            }
                            Ok(None) => {}
                            Err(e) => {
                                tracing::warn!(error = %e, "max timestamp lookup failed");
                                pr.error_code = code(ResponseError::KafkaStorageError);
                            }
                        },
                        _ => pr.error_code = code(ResponseError::InvalidRequest),
                    }
                }
            }
            tr.partitions.push(pr);
        }
        r.topics.push(tr);
    }
    r
}

/// Single-node leaders never change epoch, so every epoch up to the current
/// one ends at the high watermark.
pub fn offset_for_leader_epoch(
    b: &Broker,
    req: OffsetForLeaderEpochRequest,
) -> OffsetForLeaderEpochResponse {
    let mut r = OffsetForLeaderEpochResponse::default();
    for t in req.topics {
        let topic = b.cluster.route(t.topic.0.as_str());
        let mut tr = OffsetForLeaderTopicResult::default();
        tr.topic = t.topic.clone();
        for p in t.partitions {
            let mut e = EpochEndOffset::default();
            e.partition = p.partition;
            e.leader_epoch = -1;
            e.end_offset = -1;
            let id = topic.as_ref().and_then(|tv| tv.partition_id(p.partition));
            let w = id.and_then(|id| b.storage.watermarks(id));
            match w {
                None => e.error_code = code(not_served(id)),
                Some(w) if p.current_leader_epoch > w.leader_epoch => {
                    e.error_code = code(ResponseError::UnknownLeaderEpoch)
                }
                Some(w)
                    if p.current_leader_epoch >= 0 && p.current_leader_epoch < w.leader_epoch =>
                {
                    e.error_code = code(ResponseError::FencedLeaderEpoch)
                }
                Some(w) => {
                    e.leader_epoch = w.leader_epoch.min(p.leader_epoch.max(0));
                    e.end_offset = w.high_watermark;
                }
            }
            tr.partitions.push(e);
        }
        r.topics.push(tr);
    }
    r
}
