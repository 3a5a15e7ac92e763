//! [`ClusterAdmin`] over the controllers' typed gRPC `Admin` calls: the
//! broker list comes from `GetMoveProgress` (a linearizable read of the
//! brokers' drain states, not of the whole metadata), drains and rebalances
//! are `DrainBroker` and `Rebalance` (exactly once, through the client's
//! session), and the controllers' leader hints are followed.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use floe_controller::grpc::client::{ClientError, ClientOptions, ControllerClient};
use floe_controller::grpc::network::Channels;
use floe_controller::grpc::proto::{self, MoveProgressRequest};
use floe_controller::grpc::tls::Tls;
use floe_controller::model::MetadataState;
use futures::future::BoxFuture;

use crate::admin::{AdminConnector, AdminError, BrokerInfo, BrokerState, ClusterAdmin};
use crate::names;
use crate::reconcile::build::METADATA_PORT;
use crate::reconcile::validate::ValidatedCluster;

/// A cluster's namespace, name, controller endpoints and the digest of its
/// TLS certificates (a renewed certificate gets a new client).
type ClusterKey = (String, String, Vec<String>, Option<String>);

/// Opens (and keeps) one controller client per cluster and controller set.
#[derive(Default)]
pub struct GrpcConnector {
    clients: Mutex<HashMap<ClusterKey, ControllerClient>>,
}

impl GrpcConnector {
    /// The controllers' metadata addresses of `cluster` (headless DNS names).
    pub fn endpoints(cluster: &ValidatedCluster) -> Vec<String> {
        (0..cluster.controllers.replicas)
            .map(|i| {
                format!(
                    "{}:{METADATA_PORT}",
                    names::controller_host(&cluster.name, &cluster.namespace, i)
                )
            })
            .collect()
    }
}

impl GrpcConnector {
    /// Channels to `cluster`'s controllers: mutual TLS with the cluster's
    /// own certificate (`controllers.tls`), else plaintext.
    pub fn channels(cluster: &ValidatedCluster) -> Channels {
        match cluster
            .controllers
            .tls
            .as_ref()
            .map(|t| Tls::from_pem(&t.ca, &t.cert, &t.key))
        {
            None => Channels::default(),
            Some(Ok(tls)) => Channels::new(Some(tls)),
            Some(Err(e)) => {
                // Validation checked the PEM; should it still fail, calls fail
                // (plaintext against TLS ports) instead of the operator.
                tracing::error!(cluster = %cluster.name, error = %e, "unusable controller TLS certificates");
                Channels::default()
            }
        }
    }
}

impl AdminConnector for GrpcConnector {
    fn connect(&self, cluster: &ValidatedCluster) -> Box<dyn ClusterAdmin> {
        let endpoints = Self::endpoints(cluster);
        let key = (
            cluster.namespace.clone(),
            cluster.name.clone(),
            endpoints.clone(),
            cluster.controllers.tls.as_ref().map(|t| t.digest()),
        );
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        // The same cluster's clients for older endpoints or certificates go.
        clients.retain(|k, _| k.0 != key.0 || k.1 != key.1 || *k == key);
        let client = clients
            .entry(key)
            .or_insert_with(|| {
                // A reconcile must not hang on an unreachable quorum.
                ControllerClient::with_channels(
                    endpoints,
                    ClientOptions {
                        deadline: Duration::from_secs(10),
                        attempt_timeout: Duration::from_secs(3),
                    },
                    Self::channels(cluster),
                )
            })
            .clone();
        Box::new(GrpcAdmin { client })
    }
}

/// One cluster's admin client.
pub struct GrpcAdmin {
    client: ControllerClient,
}

impl GrpcAdmin {
    pub fn new(client: ControllerClient) -> GrpcAdmin {
        GrpcAdmin { client }
    }
}

/// A refusal by the controllers is [`AdminError::Refused`] (with their
/// message); anything else means they could not be asked.
fn failed(request: &'static str, e: ClientError) -> AdminError {
    match e {
        ClientError::Refused { message, .. } => refused(request, message),
        other => AdminError::Unavailable {
            reason: other.to_string(),
        },
    }
}

fn refused(request: &'static str, e: impl ToString) -> AdminError {
    AdminError::Refused {
        request,
        message: e.to_string(),
    }
}

/// Each registered broker's placement state in `state` (for a tool holding a
/// copy of the metadata; the controllers apply the same rule in
/// `GetMoveProgress`). A broker that leads nothing and gets nothing
/// (drained, or fenced with its partitions moved away) is
/// [`BrokerState::Drained`]: removing it loses nothing.
pub fn broker_infos(state: &MetadataState) -> Vec<BrokerInfo> {
    let mut leads: BTreeMap<i32, u32> = BTreeMap::new();
    let mut incoming: BTreeMap<i32, u32> = BTreeMap::new();
    for p in state.topics.values().flat_map(|t| &t.partitions) {
        *leads.entry(p.leader).or_default() += 1;
        if let Some(t) = p.target {
            *incoming.entry(t).or_default() += 1;
        }
    }
    state
        .brokers
        .values()
        .map(|b| {
            let partitions = leads.get(&b.id).copied().unwrap_or(0);
            let incoming = incoming.get(&b.id).copied().unwrap_or(0);
            let holds = partitions + incoming;
            let state = if (b.draining || b.fenced) && holds == 0 {
                BrokerState::Drained
            } else if b.draining || b.fenced {
                BrokerState::Draining
            } else {
                BrokerState::Active
            };
            BrokerInfo {
                id: b.id,
                state,
                partitions,
                incoming,
            }
        })
        .collect()
}

/// A broker's placement state as the controllers report it.
fn broker_info(b: &proto::BrokerMoves) -> BrokerInfo {
    let live = b.state() == proto::BrokerState::Live;
    BrokerInfo {
        id: b.id,
        state: if b.drained {
            BrokerState::Drained
        } else if live {
            BrokerState::Active
        } else {
            BrokerState::Draining
        },
        partitions: b.leads,
        incoming: b.incoming,
    }
}

impl GrpcAdmin {
    async fn broker_list(&self) -> Result<Vec<BrokerInfo>, AdminError> {
        let progress = self
            .client
            .move_progress(&MoveProgressRequest {
                limit: Some(0),
                ..MoveProgressRequest::default()
            })
            .await
            .map_err(|e| failed("brokers", e))?;
        Ok(progress.brokers.iter().map(broker_info).collect())
    }
}

impl ClusterAdmin for GrpcAdmin {
    fn brokers(&self) -> BoxFuture<'_, Result<Vec<BrokerInfo>, AdminError>> {
        Box::pin(self.broker_list())
    }

    fn drain(&self, ids: &[i32]) -> BoxFuture<'_, Result<(), AdminError>> {
        let ids = ids.to_vec();
        Box::pin(async move {
            for id in ids {
                match self.client.drain_broker(id).await {
                    Ok(_) => {}
                    // Never registered (the pod never started): nothing to move.
                    Err(ClientError::Refused {
                        code: tonic::Code::NotFound,
                        ..
                    }) => {}
                    Err(ClientError::Refused {
                        code: tonic::Code::FailedPrecondition,
                        message,
                    }) => {
                        // A fenced broker whose partitions already moved is
                        // drained; any other refusal holds the scale-in.
                        let drained = self
                            .broker_list()
                            .await?
                            .iter()
                            .any(|b| b.id == id && b.state == BrokerState::Drained);
                        if !drained {
                            return Err(refused("drain", message));
                        }
                    }
                    Err(e) => return Err(failed("drain", e)),
                }
            }
            Ok(())
        })
    }

    fn rebalance(&self) -> BoxFuture<'_, Result<u32, AdminError>> {
        Box::pin(async move {
            let reply = self
                .client
                .rebalance()
                .await
                .map_err(|e| failed("rebalance", e))?;
            Ok(reply.requested)
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use floe_controller::grpc::service::translation::move_progress;
    use floe_controller::model::{apply, Command};

    use super::*;

    /// The controllers' drain states and the rule applied to a copy of the
    /// metadata agree: live, draining with partitions, drained, and fenced
    /// with its partitions moved away.
    #[test]
    fn the_controllers_report_the_same_broker_states_as_the_metadata_says() {
        let mut state = MetadataState::default();
        let mut commands: Vec<Command> = (1..=4)
            .map(|id| Command::RegisterBroker {
                id,
                host: format!("broker-{id}"),
                port: 9092,
                rack: None,
                volume_wal: false,
            })
            .collect();
        commands.extend([
            Command::CreateTopic {
                name: "t".into(),
                id: uuid::Uuid::from_u128(1),
                partitions: 4,
                configs: BTreeMap::new(),
                leader: 1,
            },
            Command::DrainBroker { id: 1 },
            Command::DrainBroker { id: 2 },
            Command::FenceBroker { id: 3, epoch: 1 },
        ]);
        for (i, c) in commands.iter().enumerate() {
            apply(&mut state, i as u64 + 1, c).expect("applies");
        }
        let progress = move_progress(&state, 9, &MoveProgressRequest::default()).expect("reads");
        let reported: Vec<BrokerInfo> = progress.brokers.iter().map(broker_info).collect();
        assert_eq!(reported, broker_infos(&state));
        let states: Vec<BrokerState> = reported.iter().map(|b| b.state).collect();
        assert_eq!(
            states,
            [
                BrokerState::Draining,
                BrokerState::Drained,
                BrokerState::Drained,
                BrokerState::Active
            ]
        );
    }
}
