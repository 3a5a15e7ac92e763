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
use std::collections::BTreeSet;

use crate::cluster::{BrokerView, TopicView};
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

/// The brokers clients may connect to: every live one (this broker first
/// if it is not registered yet, so a client always has somewhere to go).
fn live_brokers(b: &Broker) -> Vec<BrokerView> {
    let mut live = b.cluster.live_brokers();
    if !live.iter().any(|l| l.id == b.config.node_id) {
        live.insert(
            0,
            BrokerView {
                id: b.config.node_id,
                host: b.config.advertised_host.clone(),
                port: b.config.advertised_port,
                rack: None,
                draining: false,
            },
        );
    }
    live
}

fn broker_entry(l: &BrokerView) -> MetadataResponseBroker {
    let mut e = MetadataResponseBroker::default();
    e.node_id = BrokerId(l.id);
    e.host = str_bytes(l.host.clone());
    e.port = l.port;
    e.rack = l.rack.clone().map(str_bytes);
    e
}

/// Each partition's one replica is its leader; a partition whose leader is
/// fenced or gone is reported leaderless until the controller moves it.
fn topic_entry(live: &BTreeSet<i32>, t: &TopicView) -> MetadataResponseTopic {
    let mut e = MetadataResponseTopic::default();
    e.name = Some(topic_name(t.name.clone()));
    e.topic_id = t.id;
    e.partitions = t
        .partitions
        .iter()
        .enumerate()
        .map(|(i, &(leader, epoch))| {
            let mut p = MetadataResponsePartition::default();
            p.partition_index = i as i32;
            p.leader_epoch = epoch;
            if live.contains(&leader) {
                p.leader_id = BrokerId(leader);
                p.replica_nodes = vec![BrokerId(leader)];
                p.isr_nodes = vec![BrokerId(leader)];
            } else {
                p.error_code = code(ResponseError::LeaderNotAvailable);
                p.leader_id = BrokerId(-1);
            }
            p
        })
        .collect();
    e
}

pub async fn metadata(b: &Broker, req: MetadataRequest, version: i16) -> MetadataResponse {
    let mut r = MetadataResponse::default();
    let brokers = live_brokers(b);
    let live: BTreeSet<i32> = brokers.iter().map(|l| l.id).collect();
    r.brokers = brokers.iter().map(broker_entry).collect();
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
            .map(|t| topic_entry(&live, t))
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
            (Some(t), _) => topic_entry(&live, &t),
            (None, Some(name)) if allow_create => {
                match admin::create_topic(
                    b,
                    name.0.as_str(),
                    b.config.default_partitions,
                    Default::default(),
                )
                .await
                {
                    Ok(t) => topic_entry(&live, &t),
                    Err((ResponseError::TopicAlreadyExists, _)) => {
                        match b.cluster.topic(name.0.as_str()) {
                            Some(t) => topic_entry(&live, &t),
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
    r.brokers = live_brokers(b)
        .into_iter()
        .map(|l| {
            let mut e = DescribeClusterBroker::default();
            e.broker_id = BrokerId(l.id);
            e.host = str_bytes(l.host);
            e.port = l.port;
            e.rack = l.rack.map(str_bytes);
            e
        })
        .collect();
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
    let answer = |key: &str| -> (i16, i32, String, i32) {
        if supported {
            let c = super::groups::coordinator(b, key);
            (0, c.id, c.host, c.port)
        } else {
            (
                code(ResponseError::CoordinatorNotAvailable),
                -1,
                String::new(),
                -1,
            )
        }
    };
    if version >= 4 {
        r.coordinators = req
            .coordinator_keys
            .into_iter()
            .map(|key| {
                let (error_code, node_id, host, port) = answer(key.as_str());
                let mut c = Coordinator::default();
                c.key = key;
                c.node_id = BrokerId(node_id);
                c.host = str_bytes(host);
                c.port = port;
                c.error_code = error_code;
                c
            })
            .collect();
    } else {
        let (error_code, node_id, host, port) = answer(req.key.as_str());
        r.error_code = error_code;
        r.node_id = BrokerId(node_id);
        r.host = str_bytes(host);
        r.port = port;
    }
    r
}
