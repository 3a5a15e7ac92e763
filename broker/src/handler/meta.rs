//! ApiVersions, Metadata, DescribeCluster and FindCoordinator: how clients
//! discover what this broker speaks and where partitions and groups live.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{
    ApiVersionsResponse, BrokerId, DescribeClusterRequest, DescribeClusterResponse,
    FindCoordinatorRequest, FindCoordinatorResponse, MetadataRequest, MetadataResponse,
};

use super::{admin, code, str_bytes, topic_name};
use crate::broker::Broker;
use crate::cluster::TopicView;
use crate::protocol::api;

fn api_keys() -> Vec<ApiVersion> {
    api::supported()
        .map(|s| {
            let mut v = ApiVersion::default();
            v.api_key = s.key as i16;
            v.min_version = s.min;
            v.max_version = s.max;
            v
        })
        .collect()
}

pub fn api_versions() -> ApiVersionsResponse {
    let mut r = ApiVersionsResponse::default();
    r.api_keys = api_keys();
    r
}

/// The reply to an ApiVersions request at a version we do not know.
pub fn api_versions_unsupported() -> ApiVersionsResponse {
    let mut r = api_versions();
    r.error_code = code(ResponseError::UnsupportedVersion);
    r
}

fn broker_entry(b: &Broker) -> MetadataResponseBroker {
    let mut e = MetadataResponseBroker::default();
    e.node_id = BrokerId(b.config.node_id);
    e.host = str_bytes(b.config.advertised_host.clone());
    e.port = b.config.advertised_port;
    e
}

fn topic_entry(b: &Broker, t: &TopicView) -> MetadataResponseTopic {
    let mut e = MetadataResponseTopic::default();
    e.name = Some(topic_name(t.name.clone()));
    e.topic_id = t.id;
    e.partitions = t
        .partitions
        .iter()
        .enumerate()
        .map(|(i, &(_, epoch))| {
            let mut p = MetadataResponsePartition::default();
            p.partition_index = i as i32;
            // Single-node mode: this broker leads every partition.
            p.leader_id = BrokerId(b.config.node_id);
            p.leader_epoch = epoch;
            p.replica_nodes = vec![BrokerId(b.config.node_id)];
            p.isr_nodes = vec![BrokerId(b.config.node_id)];
            p
        })
        .collect();
    e
}

pub async fn metadata(b: &Broker, req: MetadataRequest, version: i16) -> MetadataResponse {
    let mut r = MetadataResponse::default();
    r.brokers = vec![broker_entry(b)];
    r.cluster_id = Some(str_bytes(b.config.cluster_id.clone()));
    r.controller_id = BrokerId(b.config.node_id);
    // v0 treats an empty list as "all topics"; v1+ uses null for that.
    let all = match &req.topics {
        None => true,
        Some(t) => t.is_empty() && version == 0,
    };
    if all {
        r.topics = b
            .cluster
            .topics()
            .iter()
            .map(|t| topic_entry(b, t))
            .collect();
        return r;
    }
    let allow_create =
        (version < 4 || req.allow_auto_topic_creation) && b.config.auto_create_topics;
    for requested in req.topics.unwrap_or_default() {
        let found = match &requested.name {
            Some(name) => b.cluster.topic(name.0.as_str()),
            None => b.cluster.topic_by_id(requested.topic_id),
        };
        let entry = match (found, requested.name) {
            (Some(t), _) => topic_entry(b, &t),
            (None, Some(name)) if allow_create => {
                match admin::create_topic(
                    b,
                    name.0.as_str(),
                    b.config.default_partitions,
                    Default::default(),
                )
                .await
                {
                    Ok(t) => topic_entry(b, &t),
                    Err((ResponseError::TopicAlreadyExists, _)) => {
                        match b.cluster.topic(name.0.as_str()) {
                            Some(t) => topic_entry(b, &t),
                            None => error_topic(Some(name), ResponseError::LeaderNotAvailable),
                        }
                    }
                    Err((e, _)) => error_topic(Some(name), e),
                }
            }
            (None, name) => error_topic(name, ResponseError::UnknownTopicOrPartition),
        };
        r.topics.push(entry);
    }
    r
}

fn error_topic(
    name: Option<kafka_protocol::messages::TopicName>,
    e: ResponseError,
) -> MetadataResponseTopic {
    let mut t = MetadataResponseTopic::default();
    t.name = name;
    t.error_code = code(e);
    t
}

pub fn describe_cluster(
    b: &Broker,
    _req: DescribeClusterRequest,
    version: i16,
) -> DescribeClusterResponse {
    let mut r = DescribeClusterResponse::default();
    r.cluster_id = str_bytes(b.config.cluster_id.clone());
    r.controller_id = BrokerId(b.config.node_id);
    if version >= 1 {
        r.endpoint_type = 1;
    }
    let mut e = DescribeClusterBroker::default();
    e.broker_id = BrokerId(b.config.node_id);
    e.host = str_bytes(b.config.advertised_host.clone());
    e.port = b.config.advertised_port;
    r.brokers = vec![e];
    r
}

pub fn find_coordinator(
    b: &Broker,
    req: FindCoordinatorRequest,
    version: i16,
) -> FindCoordinatorResponse {
    let mut r = FindCoordinatorResponse::default();
    // Only group coordinators (key type 0) exist; transactions are not supported yet.
    let supported = req.key_type == 0;
    let err = if supported {
        0
    } else {
        code(ResponseError::CoordinatorNotAvailable)
    };
    if version >= 4 {
        r.coordinators = req
            .coordinator_keys
            .into_iter()
            .map(|key| {
                let mut c = Coordinator::default();
                c.key = key;
                c.node_id = BrokerId(if supported { b.config.node_id } else { -1 });
                c.host = str_bytes(if supported {
                    b.config.advertised_host.clone()
                } else {
                    String::new()
                });
                c.port = if supported {
                    b.config.advertised_port
                } else {
                    -1
                };
                c.error_code = err;
                c
            })
            .collect();
    } else {
        r.error_code = err;
        r.node_id = BrokerId(if supported { b.config.node_id } else { -1 });
        r.host = str_bytes(if supported {
            b.config.advertised_host.clone()
        } else {
            String::new()
        });
        r.port = if supported {
            b.config.advertised_port
        } else {
            -1
        };
    }
    r
}
