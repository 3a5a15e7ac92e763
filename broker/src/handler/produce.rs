//! Produce and InitProducerId. Partitions of one request are appended
//! concurrently, so their WAL writes share a group commit.

use std::sync::Mutex;

use floe_controller::model::{Command, Outcome};
use futures::future::join_all;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{
    InitProducerIdRequest, InitProducerIdResponse, ProduceRequest, ProduceResponse, ProducerId,
};

use super::{code, str_bytes};
use crate::broker::Broker;
use crate::protocol::batch::BatchError;
use crate::storage::AppendError;

fn append_error(e: &AppendError) -> ResponseError {
    match e {
        // The topic's metadata names the partition (checked first), so it is
        // led by another broker.
        AppendError::UnknownPartition => ResponseError::NotLeaderOrFollower,
        AppendError::InvalidBatch(BatchError::UnsupportedMagic { .. }) => {
            ResponseError::UnsupportedForMessageFormat
        }
        AppendError::InvalidBatch(
            BatchError::CrcMismatch { .. } | BatchError::Truncated { .. },
        ) => ResponseError::CorruptMessage,
        AppendError::InvalidBatch(_) => ResponseError::InvalidRecord,
        AppendError::Fenced | AppendError::ShuttingDown => ResponseError::NotLeaderOrFollower,
        AppendError::OutOfOrderSequence { .. } => ResponseError::OutOfOrderSequenceNumber,
        AppendError::StaleProducerEpoch { .. } => ResponseError::InvalidProducerEpoch,
        AppendError::UnknownProducer => ResponseError::UnknownProducerId,
        AppendError::Storage(_) => ResponseError::KafkaStorageError,
    }
}

pub async fn produce(b: &Broker, req: ProduceRequest, _version: i16) -> ProduceResponse {
    let mut r = ProduceResponse::default();
    let bad_acks = !matches!(req.acks, -1..=1);
    let transactional = req.transactional_id.is_some();
    // acks=0 has nobody to tell about a timeout: let those appends finish.
    let timeout_ms = if req.acks == 0 {
        300_000
    } else {
        req.timeout_ms.clamp(1, 300_000)
    };
    let timeout = std::time::Duration::from_millis(timeout_ms as u64);
    for t in req.topic_data {
        let topic = b.cluster.route(t.name.0.as_str());
        let max_message = topic.map_or(usize::MAX, |t| t.max_message_bytes);
        let futures = t.partition_data.into_iter().map(|p| {
            let id = topic.and_then(|t| t.partition_id(p.index));
            async move {
                let mut out = PartitionProduceResponse::default();
                out.index = p.index;
                out.base_offset = -1;
                out.log_append_time_ms = -1;
                out.log_start_offset = -1;
                let fail = |out: &mut PartitionProduceResponse, e: ResponseError, msg: String| {
                    out.error_code = code(e);
                    out.error_message = Some(str_bytes(msg));
                };
                let Some(id) = id else {
                    fail(
                        &mut out,
                        ResponseError::UnknownTopicOrPartition,
                        "unknown topic or partition".into(),
                    );
                    return out;
                };
                if bad_acks {
                    fail(
                        &mut out,
                        ResponseError::InvalidRequiredAcks,
                        "acks must be -1, 0 or 1".into(),
                    );
                    return out;
                }
                if transactional {
                    fail(
                        &mut out,
                        ResponseError::TransactionalIdAuthorizationFailed,
                        "transactions are not supported yet".into(),
                    );
                    return out;
                }
                let Some(records) = p.records else {
                    fail(&mut out, ResponseError::CorruptMessage, "no records".into());
                    return out;
                };
                if records.len() > max_message.saturating_add(crate::protocol::batch::LOG_OVERHEAD)
                {
                    fail(
                        &mut out,
                        ResponseError::MessageTooLarge,
                        format!(
                            "record batch of {} bytes exceeds max.message.bytes {max_message}",
                            records.len()
                        ),
                    );
                    return out;
                }
                if !b.may_acknowledge() {
                    fail(
                        &mut out,
                        ResponseError::NotLeaderOrFollower,
                        "this broker's controller lease lapsed; it accepts no writes".into(),
                    );
                    return out;
                }
                // Kafka's produce timeout: past it the client hears REQUEST_TIMED_OUT
                // (the append may still complete, exactly as in Kafka).
                let appended = tokio::time::timeout(timeout, b.storage.append(id, &records)).await;
                let Ok(appended) = appended else {
                    fail(
                        &mut out,
                        ResponseError::RequestTimedOut,
                        format!("not durable within {timeout:?}"),
                    );
                    return out;
                };
                match appended {
                    // Durable, but the lease lapsed meanwhile: the partition may
                    // already be someone else's, so this broker must not say so.
                    Ok(_) if !b.may_acknowledge() => fail(
                        &mut out,
                        ResponseError::NotLeaderOrFollower,
                        "this broker's controller lease lapsed before the write could be acknowledged".into(),
                    ),
                    Ok(a) => {
                        if !a.duplicate {
                            b.metrics.produce_bytes.inc_by(records.len() as u64);
                            b.metrics.produce_records_batches.inc();
                        }
                        out.base_offset = a.base_offset;
                        out.log_start_offset = a.log_start_offset;
                    }
                    Err(e) => {
                        if matches!(e, AppendError::Storage(_)) {
                            tracing::error!(error = %e, "append failed");
                        }
                        fail(&mut out, append_error(&e), e.to_string());
                    }
                }
                out
            }
        });
        let mut tr = TopicProduceResponse::default();
        tr.name = t.name;
        tr.partition_responses = join_all(futures).await;
        r.responses.push(tr);
    }
    r
}

/// Producer ids are allocated from the controller in blocks.
#[derive(Default)]
pub struct ProducerIds {
    block: Mutex<(i64, i64)>,
}

const ID_BLOCK: i64 = 1000;

impl ProducerIds {
    async fn next(&self, b: &Broker) -> Result<i64, String> {
        {
            let mut blk = self.block.lock().unwrap_or_else(|e| e.into_inner());
            if blk.0 < blk.1 {
                blk.0 += 1;
                return Ok(blk.0 - 1);
            }
        }
        match b
            .cluster
            .propose(Command::AllocateProducerIds { count: ID_BLOCK })
            .await
        {
            Ok(Outcome::ProducerIds { first }) => {
                let mut blk = self.block.lock().unwrap_or_else(|e| e.into_inner());
                *blk = (first + 1, first + ID_BLOCK);
                Ok(first)
            }
            Ok(other) => Err(format!("unexpected outcome {other:?}")),
            Err(e) => Err(e.to_string()),
        }
    }
}

pub async fn init_producer_id(b: &Broker, req: InitProducerIdRequest) -> InitProducerIdResponse {
    let mut r = InitProducerIdResponse::default();
    r.producer_id = ProducerId(-1);
    r.producer_epoch = -1;
    if req.transactional_id.is_some() {
        r.error_code = code(ResponseError::TransactionalIdAuthorizationFailed);
        return r;
    }
    if req.producer_id.0 >= 0 && req.producer_epoch >= 0 {
        // KIP-360: an idempotent producer bumps its own epoch to reset sequences.
        if req.producer_epoch < i16::MAX - 1 {
            r.producer_id = req.producer_id;
            r.producer_epoch = req.producer_epoch + 1;
            return r;
        }
    }
    match b.producer_ids.next(b).await {
        Ok(id) => {
            r.producer_id = ProducerId(id);
            r.producer_epoch = 0;
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot allocate producer id");
            r.error_code = code(ResponseError::CoordinatorNotAvailable);
        }
    }
    r
}
