//! Topic administration: CreateTopics, DeleteTopics, CreatePartitions and
//! DeleteRecords. Every change is a controller command; the storage engine
//! opens or forgets partitions once the command is applied.

use std::collections::BTreeMap;

use floe_controller::model::{ApplyError, Command, Outcome, PartitionId};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::create_topics_response::CreatableTopicResult;
use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{
    CreatePartitionsRequest, CreatePartitionsResponse, CreateTopicsRequest, CreateTopicsResponse,
    DeleteRecordsRequest, DeleteRecordsResponse, DeleteTopicsRequest, DeleteTopicsResponse,
};
use uuid::Uuid;

use super::{code, config, str_bytes, valid_topic_name};
use crate::broker::Broker;
use crate::cluster::{ClusterError, TopicView};

type Failure = (ResponseError, String);

fn failure(e: ClusterError) -> Failure {
    let kafka = match e.apply_error() {
        Some(ApplyError::TopicExists { .. }) | Some(ApplyError::TopicIdExists { .. }) => {
            ResponseError::TopicAlreadyExists
        }
        Some(ApplyError::UnknownTopic { .. }) | Some(ApplyError::UnknownTopicPartition { .. }) => {
            ResponseError::UnknownTopicOrPartition
        }
        Some(ApplyError::InvalidPartitionCount { .. }) => ResponseError::InvalidPartitions,
        Some(ApplyError::InvalidTopicName { .. }) => ResponseError::InvalidTopicException,
        Some(ApplyError::InvalidOffset { .. }) => ResponseError::OffsetOutOfRange,
        Some(_) => ResponseError::InvalidRequest,
        None => ResponseError::KafkaStorageError,
    };
    (kafka, e.to_string())
}

/// Create a topic and open its partitions here (the single leader).
pub async fn create_topic(
    b: &Broker,
    name: &str,
    partitions: i32,
    configs: BTreeMap<String, String>,
) -> Result<TopicView, Failure> {
    if !valid_topic_name(name) {
        return Err((
            ResponseError::InvalidTopicException,
            format!("topic name {name:?} is invalid: use 1-249 characters of [a-zA-Z0-9._-]"),
        ));
    }
    if !(1..=100_000).contains(&partitions) {
        return Err((
            ResponseError::InvalidPartitions,
            format!("{partitions} partitions requested; use 1 to 100000"),
        ));
    }
    let cmd = Command::CreateTopic {
        name: name.to_owned(),
        id: Uuid::new_v4(),
        partitions,
        configs,
        leader: -1,
    };
    b.cluster.propose(cmd).await.map_err(failure)?;
    let topic = b.cluster.topic(name).ok_or((
        ResponseError::UnknownServerError,
        "topic vanished after creation".into(),
    ))?;
    open_partitions(b, &topic);
    tracing::info!(topic = name, partitions, "created topic");
    Ok(topic)
}

fn open_partitions(b: &Broker, topic: &TopicView) {
    for i in 0..topic.partitions.len() as i32 {
        let id = PartitionId {
            topic_id: topic.id,
            partition: i,
        };
        if let Some(meta) = b.cluster.partition_meta(id) {
            b.storage.open_partition(id, meta);
        }
    }
}

pub async fn create_topics(b: &Broker, req: CreateTopicsRequest) -> CreateTopicsResponse {
    let mut r = CreateTopicsResponse::default();
    for t in req.topics {
        let name = t.name.0.to_string();
        let mut res = CreatableTopicResult::default();
        res.name = t.name.clone();
        let partitions = if t.num_partitions == -1 {
            b.config.default_partitions
        } else {
            t.num_partitions
        };
        let mut configs = BTreeMap::new();
        let mut bad_config = None;
        for c in t.configs {
            let key = c.name.to_string();
            match c.value {
                Some(v) => match config::validate_topic_config(&key, v.as_str()) {
                    Ok(()) => {
                        configs.insert(key, v.to_string());
                    }
                    Err(e) => bad_config = Some(e),
                },
                None => bad_config = Some(format!("config {key} has no value")),
            }
        }
        let outcome = if let Some(msg) = bad_config {
            Err((ResponseError::InvalidConfig, msg))
        } else if t.replication_factor != -1 && t.replication_factor < 1 {
            Err((
                ResponseError::InvalidReplicationFactor,
                "replication factor must be -1 or at least 1 (object storage replicates the data)"
                    .into(),
            ))
        } else if !t.assignments.is_empty() {
            Err((
                ResponseError::InvalidRequest,
                "manual replica assignments are not supported; partitions are placed by the controller".into(),
            ))
        } else if req.validate_only {
            match b.cluster.topic(&name) {
                Some(_) => Err((
                    ResponseError::TopicAlreadyExists,
                    format!("topic {name} already exists"),
                )),
                None if !valid_topic_name(&name) => {
                    Err((ResponseError::InvalidTopicException, "invalid name".into()))
                }
                None => Ok(None),
            }
        } else {
            create_topic(b, &name, partitions, configs).await.map(Some)
        };
        match outcome {
            Ok(created) => {
                res.topic_id = created.as_ref().map_or(Uuid::nil(), |t| t.id);
                res.num_partitions = partitions;
                res.replication_factor = 1;
            }
            Err((e, msg)) => {
                res.error_code = code(e);
                res.error_message = Some(str_bytes(msg));
                res.num_partitions = -1;
                res.replication_factor = -1;
            }
        }
        r.topics.push(res);
    }
    r
}

pub async fn delete_topics(
    b: &Broker,
    req: DeleteTopicsRequest,
    version: i16,
) -> DeleteTopicsResponse {
    let mut r = DeleteTopicsResponse::default();
    // v0-5 name topics in `topic_names`; v6 uses `topics` with a name or an id.
    let wanted: Vec<(Option<String>, Uuid)> = if version >= 6 {
        req.topics
            .into_iter()
            .map(|t| (t.name.map(|n| n.0.to_string()), t.topic_id))
            .collect()
    } else {
        req.topic_names
            .into_iter()
            .map(|n| (Some(n.0.to_string()), Uuid::nil()))
            .collect()
    };
    for (name, id) in wanted {
        let topic = match &name {
            Some(n) => b.cluster.topic(n),
            None => b.cluster.topic_by_id(id),
        };
        let mut res = DeletableTopicResult::default();
        res.name = name.clone().map(super::topic_name);
        res.topic_id = id;
        match topic {
            None => {
                res.error_code = code(if name.is_some() {
                    ResponseError::UnknownTopicOrPartition
                } else {
                    ResponseError::UnknownTopicId
                });
            }
            Some(t) => {
                res.topic_id = t.id;
                res.name = Some(super::topic_name(t.name.clone()));
                match b
                    .cluster
                    .propose(Command::DeleteTopic {
                        name: t.name.clone(),
                    })
                    .await
                {
                    Ok(outcome) => {
                        for i in 0..t.partitions.len() as i32 {
                            b.storage.remove_partition(PartitionId {
                                topic_id: t.id,
                                partition: i,
                            });
                        }
                        if let Outcome::ObjectsReleased { keys } = outcome {
                            b.gc.release(keys);
                        }
                        tracing::info!(topic = %t.name, "deleted topic");
                    }
                    Err(e) => {
                        let (e, msg) = failure(e);
                        res.error_code = code(e);
                        res.error_message = Some(str_bytes(msg));
                    }
                }
            }
        }
        r.responses.push(res);
    }
    r
}

pub async fn create_partitions(
    b: &Broker,
    req: CreatePartitionsRequest,
) -> CreatePartitionsResponse {
    let mut r = CreatePartitionsResponse::default();
    for t in req.topics {
        let mut res = CreatePartitionsTopicResult::default();
        res.name = t.name.clone();
        let name = t.name.0.to_string();
        let outcome = match b.cluster.topic(&name) {
            None => Err((
                ResponseError::UnknownTopicOrPartition,
                format!("topic {name} does not exist"),
            )),
            Some(topic) if t.count <= topic.partitions.len() as i32 => Err((
                ResponseError::InvalidPartitions,
                format!(
                    "topic {name} already has {} partitions; the count can only grow",
                    topic.partitions.len()
                ),
            )),
            Some(_) if t.count > 100_000 => Err((
                ResponseError::InvalidPartitions,
                "at most 100000 partitions".into(),
            )),
            Some(_) if req.validate_only => Ok(()),
            Some(_) => b
                .cluster
                .propose(Command::CreatePartitions {
                    name: name.clone(),
                    total: t.count,
                    leader: -1,
                })
                .await
                .map(|_| {
                    if let Some(topic) = b.cluster.topic(&name) {
                        open_partitions(b, &topic);
                    }
                })
                .map_err(failure),
        };
        if let Err((e, msg)) = outcome {
            res.error_code = code(e);
            res.error_message = Some(str_bytes(msg));
        }
        r.results.push(res);
    }
    r
}

pub async fn delete_records(b: &Broker, req: DeleteRecordsRequest) -> DeleteRecordsResponse {
    let mut r = DeleteRecordsResponse::default();
    for t in req.topics {
        let topic = b.cluster.route(t.name.0.as_str());
        let mut tr = DeleteRecordsTopicResult::default();
        tr.name = t.name.clone();
        for p in t.partitions {
            let mut pr = DeleteRecordsPartitionResult::default();
            pr.partition_index = p.partition_index;
            pr.low_watermark = -1;
            let id = topic
                .as_ref()
                .and_then(|t| t.partition_id(p.partition_index));
            match id.and_then(|id| b.storage.watermarks(id).map(|w| (id, w))) {
                None => pr.error_code = code(super::not_served(id)),
                Some((id, w)) => {
                    // -1 means "up to the high watermark".
                    let target = if p.offset == -1 {
                        w.high_watermark
                    } else {
                        p.offset
                    };
                    if target < 0 || target > w.high_watermark {
                        pr.error_code = code(ResponseError::OffsetOutOfRange);
                    } else if target <= w.log_start {
                        pr.low_watermark = w.log_start;
                    } else {
                        // Records above the committed end are trimmed once uploaded.
                        b.storage.flush().await;
                        match b
                            .cluster
                            .propose(Command::TrimPartition {
                                partition: id,
                                log_start_offset: target,
                            })
                            .await
                        {
                            Ok(outcome) => {
                                b.storage.set_log_start(id, target);
                                if let Outcome::ObjectsReleased { keys } = outcome {
                                    b.gc.release(keys);
                                }
                                pr.low_watermark = target;
                            }
                            Err(e) => pr.error_code = code(failure(e).0),
                        }
                    }
                }
            }
            tr.partitions.push(pr);
        }
        r.topics.push(tr);
    }
    r
}
