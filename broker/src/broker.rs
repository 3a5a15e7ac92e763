//! The broker: shared state for every connection and the dispatch of one
//! decoded request to its handler.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestKind, ResponseHeader, ResponseKind};
use kafka_protocol::protocol::Encodable;

use crate::cluster::Cluster;
use crate::handler;
use crate::handler::groups;
use crate::protocol::{api, frame::RawRequest};
use crate::storage::Storage;

/// Settings the Kafka layer needs (validated by the binary's config).
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    pub node_id: i32,
    pub advertised_host: String,
    pub advertised_port: i32,
    pub cluster_id: String,
    pub auto_create_topics: bool,
    pub default_partitions: i32,
    pub max_request_bytes: usize,
}

pub struct Broker {
    pub config: BrokerConfig,
    pub cluster: Arc<Cluster>,
    pub storage: Arc<Storage>,
    pub groups: floe_group::GroupCoordinator,
    pub producer_ids: crate::handler::produce::ProducerIds,
    pub gc: crate::gc::Gc,
    pub metrics: Arc<crate::metrics::Metrics>,
    /// In a cluster, the lease that lets this broker acknowledge writes.
    pub lease: Option<Arc<crate::leadership::Lease>>,
}

/// Lets the next request of a connection start once this one reached its
/// ordering point (see `server.rs`): opened explicitly by a handler that
/// has one (produce, once offsets are assigned), or when dropped at the end
/// of the request.
#[derive(Debug, Default)]
pub struct OrderGate(Option<tokio::sync::oneshot::Sender<()>>);

impl OrderGate {
    pub fn new() -> (OrderGate, tokio::sync::oneshot::Receiver<()>) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        (OrderGate(Some(tx)), rx)
    }

    pub fn open(&mut self) {
        if let Some(tx) = self.0.take() {
            let _ = tx.send(());
        }
    }
}

impl Broker {
    /// Whether a write may be acknowledged now: always in the local mode;
    /// in a cluster only while the controller lease is valid, so that a
    /// broker cut off from the quorum stops before its partitions move.
    pub fn may_acknowledge(&self) -> bool {
        self.lease.as_ref().is_none_or(|l| l.valid())
    }
}

/// What to do with a request that could not be served.
#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    #[error("{api:?} v{version} is not supported (supported: {supported})")]
    UnsupportedVersion {
        api: ApiKey,
        version: i16,
        supported: String,
    },
    #[error("malformed {api:?} v{version} request: {reason}")]
    Malformed {
        api: ApiKey,
        version: i16,
        reason: String,
    },
    #[error("cannot encode {api:?} v{version} response: {reason}")]
    Encode {
        api: ApiKey,
        version: i16,
        reason: String,
    },
}

impl Broker {
    /// Handle one request; `Ok(None)` means no response (produce with acks=0).
    pub async fn dispatch(
        &self,
        req: RawRequest,
        peer: &str,
        gate: OrderGate,
    ) -> Result<Option<Bytes>, DispatchError> {
        let api = api::name(req.api_key);
        let result = self.handle(req, peer, gate).await;
        self.metrics.request(api, result.is_ok());
        result
    }

    async fn handle(
        &self,
        req: RawRequest,
        peer: &str,
        gate: OrderGate,
    ) -> Result<Option<Bytes>, DispatchError> {
        let api = req.api_key;
        let version = req.header.request_api_version;
        let correlation_id = req.header.correlation_id;
        if !api::is_supported(api, version) {
            if api == ApiKey::ApiVersions {
                // Answer with v0 so any client can read the supported range and retry.
                let resp = handler::meta::api_versions_unsupported();
                return encode(api, 0, correlation_id, &ResponseKind::ApiVersions(resp)).map(Some);
            }
            let supported = api::range(api)
                .map(|s| format!("{}..={}", s.min, s.max))
                .unwrap_or_else(|| "none".into());
            return Err(DispatchError::UnsupportedVersion {
                api,
                version,
                supported,
            });
        }
        let client = floe_group::ClientInfo {
            client_id: req
                .header
                .client_id
                .as_ref()
                .map(|c| c.to_string())
                .unwrap_or_default(),
            client_host: format!("/{peer}"),
        };
        let mut body = req.body;
        let request =
            RequestKind::decode(api, &mut body, version).map_err(|e| DispatchError::Malformed {
                api,
                version,
                reason: e.to_string(),
            })?;
        let response = match request {
            RequestKind::ApiVersions(_) => ResponseKind::ApiVersions(handler::meta::api_versions()),
            RequestKind::Metadata(r) => {
                ResponseKind::Metadata(handler::meta::metadata(self, r, version).await)
            }
            RequestKind::DescribeCluster(r) => {
                ResponseKind::DescribeCluster(handler::meta::describe_cluster(self, r, version))
            }
            RequestKind::FindCoordinator(r) => {
                ResponseKind::FindCoordinator(handler::meta::find_coordinator(self, r, version))
            }
            RequestKind::Produce(r) => {
                let acks = r.acks;
                let resp = handler::produce::produce(self, r, version, gate).await;
                if acks == 0 {
                    return Ok(None);
                }
                ResponseKind::Produce(resp)
            }
            RequestKind::InitProducerId(r) => {
                ResponseKind::InitProducerId(handler::produce::init_producer_id(self, r).await)
            }
            RequestKind::Fetch(r) => {
                ResponseKind::Fetch(handler::fetch::fetch(self, r, version).await)
            }
            RequestKind::ListOffsets(r) => {
                ResponseKind::ListOffsets(handler::fetch::list_offsets(self, r, version).await)
            }
            RequestKind::OffsetForLeaderEpoch(r) => {
                ResponseKind::OffsetForLeaderEpoch(handler::fetch::offset_for_leader_epoch(self, r))
            }
            RequestKind::CreateTopics(r) => {
                ResponseKind::CreateTopics(handler::admin::create_topics(self, r).await)
            }
            RequestKind::DeleteTopics(r) => {
                ResponseKind::DeleteTopics(handler::admin::delete_topics(self, r, version).await)
            }
            RequestKind::CreatePartitions(r) => {
                ResponseKind::CreatePartitions(handler::admin::create_partitions(self, r).await)
            }
            RequestKind::DeleteRecords(r) => {
                ResponseKind::DeleteRecords(handler::admin::delete_records(self, r).await)
            }
            RequestKind::DescribeConfigs(r) => {
                ResponseKind::DescribeConfigs(handler::config::describe_configs(self, r, version))
            }
            RequestKind::AlterConfigs(r) => {
                ResponseKind::AlterConfigs(handler::config::alter_configs(self, r).await)
            }
            RequestKind::IncrementalAlterConfigs(r) => ResponseKind::IncrementalAlterConfigs(
                handler::config::incremental_alter_configs(self, r).await,
            ),
            RequestKind::AlterPartitionReassignments(r) => {
                ResponseKind::AlterPartitionReassignments(handler::reassign::alter(self, r).await)
            }
            RequestKind::ListPartitionReassignments(r) => {
                ResponseKind::ListPartitionReassignments(handler::reassign::list(self, r))
            }
            RequestKind::JoinGroup(r) => {
                ResponseKind::JoinGroup(match groups::join(self, &r.group_id) {
                    Some(elsewhere) => elsewhere,
                    None => self.groups.join_group(r, version, &client).await,
                })
            }
            RequestKind::SyncGroup(r) => {
                ResponseKind::SyncGroup(match groups::sync(self, &r.group_id) {
                    Some(elsewhere) => elsewhere,
                    None => self.groups.sync_group(r, version).await,
                })
            }
            RequestKind::Heartbeat(r) => {
                ResponseKind::Heartbeat(match groups::heartbeat(self, &r.group_id) {
                    Some(elsewhere) => elsewhere,
                    None => self.groups.heartbeat(r, version).await,
                })
            }
            RequestKind::LeaveGroup(r) => {
                ResponseKind::LeaveGroup(match groups::leave(self, &r.group_id) {
                    Some(elsewhere) => elsewhere,
                    None => self.groups.leave_group(r, version).await,
                })
            }
            RequestKind::DescribeGroups(mut r) => {
                let elsewhere = groups::describe_elsewhere(self, &mut r);
                let mut resp = self.groups.describe_groups(r, version).await;
                resp.groups.extend(elsewhere);
                ResponseKind::DescribeGroups(resp)
            }
            RequestKind::ListGroups(r) => {
                ResponseKind::ListGroups(self.groups.list_groups(r, version).await)
            }
            RequestKind::DeleteGroups(mut r) => {
                let elsewhere = groups::delete_elsewhere(self, &mut r);
                let mut resp = self.groups.delete_groups(r, version).await;
                resp.results.extend(elsewhere);
                ResponseKind::DeleteGroups(resp)
            }
            RequestKind::OffsetCommit(r) => {
                ResponseKind::OffsetCommit(match groups::offset_commit(self, &r) {
                    Some(elsewhere) => elsewhere,
                    None => self.groups.offset_commit(r, version).await,
                })
            }
            RequestKind::OffsetFetch(mut r) => {
                ResponseKind::OffsetFetch(match groups::offset_fetch(self, &mut r, version) {
                    groups::FetchRoute::Here => self.groups.offset_fetch(r, version).await,
                    groups::FetchRoute::Answer(elsewhere) => elsewhere,
                    groups::FetchRoute::Append(elsewhere) => {
                        let mut resp = if r.groups.is_empty() {
                            Default::default()
                        } else {
                            self.groups.offset_fetch(r, version).await
                        };
                        resp.groups.extend(elsewhere);
                        resp
                    }
                })
            }
            RequestKind::OffsetDelete(r) => {
                ResponseKind::OffsetDelete(match groups::offset_delete(self, &r.group_id) {
                    Some(elsewhere) => elsewhere,
                    None => self.groups.offset_delete(r, version).await,
                })
            }
            _ => {
                return Err(DispatchError::UnsupportedVersion {
                    api,
                    version,
                    supported: "none".into(),
                })
            }
        };
        encode(api, version, correlation_id, &response).map(Some)
    }
}

/// Encode a response frame: size, header, body.
pub fn encode(
    api: ApiKey,
    version: i16,
    correlation_id: i32,
    resp: &ResponseKind,
) -> Result<Bytes, DispatchError> {
    let err = |e: anyhow::Error| DispatchError::Encode {
        api,
        version,
        reason: e.to_string(),
    };
    let mut buf = BytesMut::with_capacity(256);
    buf.extend_from_slice(&[0; 4]);
    let mut header = ResponseHeader::default();
    header.correlation_id = correlation_id;
    // ApiVersions responses always use header v0 so old clients can parse them.
    let header_version = if api == ApiKey::ApiVersions {
        0
    } else {
        resp.header_version(version)
    };
    header.encode(&mut buf, header_version).map_err(err)?;
    resp.encode(&mut buf, version).map_err(err)?;
    let len = (buf.len() - 4) as i32;
    buf[0..4].copy_from_slice(&len.to_be_bytes());
    Ok(buf.freeze())
}
