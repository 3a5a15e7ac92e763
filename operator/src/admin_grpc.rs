//! [`ClusterAdmin`] over the controllers' gRPC metadata service: the broker
//! list comes from a linearizable read of the metadata, drains and
//! rebalances are proposed as controller commands (exactly once, through
//! the client's session), and the controllers' leader hints are followed.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use floe_controller::grpc::client::{ClientError, ClientOptions, ControllerClient};
use floe_controller::model::{ApplyError, Command, MetadataState, Outcome};
use futures::future::BoxFuture;

use crate::admin::{AdminConnector, AdminError, BrokerInfo, BrokerState, ClusterAdmin};
use crate::names;
use crate::reconcile::build::METADATA_PORT;
use crate::reconcile::validate::ValidatedCluster;

/// A cluster's namespace, name and controller endpoints.
type ClusterKey = (String, String, Vec<String>);

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

impl AdminConnector for GrpcConnector {
    fn connect(&self, cluster: &ValidatedCluster) -> Box<dyn ClusterAdmin> {
        let endpoints = Self::endpoints(cluster);
        let key = (
            cluster.namespace.clone(),
            cluster.name.clone(),
            endpoints.clone(),
        );
        let client = self
            .clients
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(key)
            .or_insert_with(|| {
                // A reconcile must not hang on an unreachable quorum.
                ControllerClient::new(
                    endpoints,
                    ClientOptions {
                        deadline: Duration::from_secs(10),
                        attempt_timeout: Duration::from_secs(3),
                    },
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

fn unavailable(e: ClientError) -> AdminError {
    AdminError::Unavailable {
        reason: e.to_string(),
    }
}

fn refused(request: &'static str, e: impl ToString) -> AdminError {
    AdminError::Refused {
        request,
        message: e.to_string(),
    }
}

/// Each registered broker's placement state. A broker that leads nothing and
/// gets nothing (drained, or fenced with its partitions moved away) is
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

impl ClusterAdmin for GrpcAdmin {
    fn brokers(&self) -> BoxFuture<'_, Result<Vec<BrokerInfo>, AdminError>> {
        Box::pin(async move {
            let (_, state) = self.client.read_state().await.map_err(unavailable)?;
            Ok(broker_infos(&state))
        })
    }

    fn drain(&self, ids: &[i32]) -> BoxFuture<'_, Result<(), AdminError>> {
        let ids = ids.to_vec();
        Box::pin(async move {
            for id in ids {
                let committed = self
                    .client
                    .propose(&Command::DrainBroker { id })
                    .await
                    .map_err(unavailable)?;
                match committed.answer {
                    Ok(_) => {}
                    // Never registered (the pod never started): nothing to move.
                    Err(ApplyError::UnknownBroker { .. }) => {}
                    Err(e @ ApplyError::CannotDrain { .. }) => {
                        // A fenced broker whose partitions already moved is
                        // drained; any other refusal holds the scale-in.
                        let (_, state) = self.client.read_state().await.map_err(unavailable)?;
                        let drained = broker_infos(&state)
                            .iter()
                            .any(|b| b.id == id && b.state == BrokerState::Drained);
                        if !drained {
                            return Err(refused("drain", e));
                        }
                    }
                    Err(e) => return Err(refused("drain", e)),
                }
            }
            Ok(())
        })
    }

    fn rebalance(&self) -> BoxFuture<'_, Result<u32, AdminError>> {
        Box::pin(async move {
            let committed = self
                .client
                .propose(&Command::Rebalance)
                .await
                .map_err(unavailable)?;
            match committed.answer {
                Ok(Outcome::MovesRequested { requested }) => Ok(requested),
                Ok(other) => Err(refused("rebalance", format!("unexpected answer {other:?}"))),
                Err(e) => Err(refused("rebalance", e)),
            }
        })
    }
}
