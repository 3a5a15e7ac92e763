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

/// One partition of a produce request after the ordered phase.
enum Slot {
    /// Answered already (refused, or failed before offsets were assigned).
    Done(PartitionProduceResponse),
    /// Not led here (fenced for a move, moved, or the lease lapsed): answered
    /// NOT_LEADER_OR_FOLLOWER once the metadata names the new leader, so the
    /// client's refresh finds it.
    NotLeader {
        out: PartitionProduceResponse,
        id: floe_controller::model::PartitionId,
    },
    /// Offsets assigned; waiting for durability.
    Pending {
        out: PartitionProduceResponse,
        pending: crate::storage::PendingAppend,
        bytes: usize,
    },
}

fn fail(out: &mut PartitionProduceResponse, e: ResponseError, msg: String) {
    out.error_code = code(e);
    out.error_message = Some(str_bytes(msg));
}

/// Produce in two phases. First every partition's batches get their offsets
/// (in request order relative to the connection's earlier produce requests);
/// then `gate` opens, letting the connection's next request start, and this
/// one waits for durability. So a client pipelining produce requests has
/// them appended in order while their uploads and fsyncs overlap.
pub async fn produce(
    b: &Broker,
    req: ProduceRequest,
    _version: i16,
    mut gate: crate::broker::OrderGate,
) -> ProduceResponse {
    let bad_acks = !matches!(req.acks, -1..=1);
    let transactional = req.transactional_id.is_some();
    // acks=0 has nobody to tell about a timeout: let those appends finish.
    let timeout_ms = if req.acks == 0 {
        300_000
    } else {
        req.timeout_ms.clamp(1, 300_000)
    };
    let timeout = std::time::Duration::from_millis(timeout_ms as u64);
    let deadline = tokio::time::Instant::now() + timeout;
    let mut topics = Vec::with_capacity(req.topic_data.len());
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
                let Some(id) = id else {
                    fail(
                        &mut out,
                        ResponseError::UnknownTopicOrPartition,
                        "unknown topic or partition".into(),
                    );
                    return Slot::Done(out);
                };
                if bad_acks {
                    fail(
                        &mut out,
                        ResponseError::InvalidRequiredAcks,
                        "acks must be -1, 0 or 1".into(),
                    );
                    return Slot::Done(out);
                }
                if transactional {
                    fail(
                        &mut out,
                        ResponseError::TransactionalIdAuthorizationFailed,
                        "transactions are not supported yet".into(),
                    );
                    return Slot::Done(out);
                }
                let Some(records) = p.records else {
                    fail(&mut out, ResponseError::CorruptMessage, "no records".into());
                    return Slot::Done(out);
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
                    return Slot::Done(out);
                }
                if !b.may_acknowledge() {
                    fail(
                        &mut out,
                        ResponseError::NotLeaderOrFollower,
                        "this broker's controller lease lapsed; it accepts no writes".into(),
                    );
                    return Slot::Done(out);
                }
                let begun =
                    tokio::time::timeout_at(deadline, b.storage.begin_append(id, &records)).await;
                match begun {
                    Err(_) => {
                        fail(
                            &mut out,
                            ResponseError::RequestTimedOut,
                            format!("not appended within {timeout:?}"),
                        );
                        Slot::Done(out)
                    }
                    Ok(Err(e)) => {
                        fail(&mut out, append_error(&e), e.to_string());
                        if matches!(e, AppendError::Fenced | AppendError::UnknownPartition) {
                            Slot::NotLeader { out, id }
                        } else {
                            Slot::Done(out)
                        }
                    }
                    Ok(Ok(pending)) => Slot::Pending {
                        out,
                        pending,
                        bytes: records.len(),
                    },
                }
            }
        });
        let slots = join_all(futures).await;
        topics.push((t.name, slots));
    }
    // Every partition has its offsets: the next request may start.
    gate.open();
    let mut r = ProduceResponse::default();
    let leaders = std::sync::Mutex::new(std::collections::BTreeSet::new());
    let leaders = &leaders;
    for (name, slots) in topics {
        let futures = slots.into_iter().map(|slot| async move {
            let (mut out, pending, bytes) = match slot {
                Slot::Done(out) => return out,
                Slot::NotLeader { mut out, id } => {
                    if let Some((leader, epoch)) = new_leader(b, id).await {
                        out.current_leader.leader_id = kafka_protocol::messages::BrokerId(leader);
                        out.current_leader.leader_epoch = epoch;
                        leaders
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .insert(leader);
                    }
                    return out;
                }
                Slot::Pending {
                    out,
                    pending,
                    bytes,
                } => (out, pending, bytes),
            };
            // Kafka's produce timeout: past it the client hears REQUEST_TIMED_OUT
            // (the append may still complete, exactly as in Kafka).
            let Ok(appended) = tokio::time::timeout_at(deadline, pending.durable()).await else {
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
                    "this broker's controller lease lapsed before the write could be acknowledged"
                        .into(),
                ),
                Ok(a) => {
                    if !a.duplicate {
                        b.metrics.produce_bytes.inc_by(bytes as u64);
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
        });
        let mut tr = TopicProduceResponse::default();
        tr.name = name;
        tr.partition_responses = join_all(futures).await;
        r.responses.push(tr);
    }
    // KIP-951 (v10+): where the partitions that moved are led now.
    let leaders = leaders.lock().unwrap_or_else(|e| e.into_inner()).clone();
    if !leaders.is_empty() {
        r.node_endpoints = b
            .cluster
            .live_brokers()
            .into_iter()
            .filter(|l| leaders.contains(&l.id))
            .map(|l| {
                let mut e = kafka_protocol::messages::produce_response::NodeEndpoint::default();
                e.node_id = kafka_protocol::messages::BrokerId(l.id);
                e.host = str_bytes(l.host);
                e.port = l.port;
                e.rack = l.rack.map(str_bytes);
                e
            })
            .collect();
    }
    r
}

/// How long a NOT_LEADER_OR_FOLLOWER answer waits for the metadata to name
/// the partition's next leader (a move completes in milliseconds).
const NEW_LEADER_WAIT: std::time::Duration = std::time::Duration::from_millis(500);

/// The partition's leader and epoch once it is a live broker other than
/// this one, waiting up to [`NEW_LEADER_WAIT`] for a move to complete.
async fn new_leader(b: &Broker, id: floe_controller::model::PartitionId) -> Option<(i32, i32)> {
    let me = b.config.node_id;
    let look = || {
        b.cluster.read(|s| {
            let p = s.partition(id)?;
            let live = s.brokers.get(&p.leader).is_some_and(|l| !l.fenced);
            (p.leader != me && live).then_some((p.leader, p.leader_epoch))
        })
    };
    let mut changes = b.cluster.mirror()?.subscribe();
    let deadline = tokio::time::Instant::now() + NEW_LEADER_WAIT;
    loop {
        if let Some(found) = look() {
            return Some(found);
        }
        match tokio::time::timeout_at(deadline, changes.changed()).await {
            Ok(Ok(())) => {}
            _ => return None,
        }
    }
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
