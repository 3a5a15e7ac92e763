//! The operator's view of a Floe cluster's metadata controllers: the broker
//! list, draining brokers and rebalancing partitions ([`ClusterAdmin`]).
//!
//! The reconciler depends only on these traits. The binary uses
//! [`crate::admin_grpc::GrpcConnector`], which speaks the controllers' gRPC
//! metadata service; [`Unconnected`] answers every call with
//! [`AdminError::Unavailable`] (tests, and the behaviour whenever the quorum
//! is unreachable: the scaling logic then never lowers a broker StatefulSet,
//! because it cannot confirm that the leaving brokers are drained — safe,
//! but scale-in waits).
//!
//! **Broker id = StatefulSet ordinal.** The pods get `FLOE_BROKER_ID` from
//! their `apps.kubernetes.io/pod-index` label, and ordinals are unique across
//! the on-demand and spot StatefulSets, so the ids the controller reports are
//! the ordinals the StatefulSets add and remove.

use futures::future::BoxFuture;

use crate::reconcile::validate::ValidatedCluster;

/// A broker as the metadata controller reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BrokerInfo {
    /// Broker id: the pod's StatefulSet ordinal.
    pub id: i32,
    /// Lifecycle state.
    pub state: BrokerState,
    /// Partitions the broker leads.
    pub partitions: u32,
    /// Partitions being moved onto it (requested, not completed yet).
    pub incoming: u32,
}

/// Where a broker is in its lifecycle, as far as placement is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BrokerState {
    /// Registered and eligible for partitions.
    Active,
    /// Asked to hand its partitions away; still holds some.
    Draining,
    /// Holds no partitions and gets none: safe to remove.
    Drained,
}

/// A failed call to the admin API.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AdminError {
    /// The admin API could not be reached or is not configured.
    #[error("the metadata controllers' admin API is unavailable: {reason}; check that the controller pods are ready")]
    Unavailable {
        /// Why.
        reason: String,
    },
    /// The controller refused or failed the request.
    #[error("the metadata controller refused {request}: {message}")]
    Refused {
        /// The request (`drain`, `rebalance`, `brokers`).
        request: &'static str,
        /// The controller's message.
        message: String,
    },
}

/// The admin calls the reconciler makes, for one cluster.
pub trait ClusterAdmin: Send + Sync {
    /// Every registered broker.
    fn brokers(&self) -> BoxFuture<'_, Result<Vec<BrokerInfo>, AdminError>>;
    /// Start moving every partition off these brokers and stop placing new
    /// ones there. Idempotent: draining a draining broker is not an error.
    fn drain(&self, ids: &[i32]) -> BoxFuture<'_, Result<(), AdminError>>;
    /// Spread partitions over the active brokers; returns how many moved.
    fn rebalance(&self) -> BoxFuture<'_, Result<u32, AdminError>>;
}

/// Opens a [`ClusterAdmin`] for a validated cluster (its controllers'
/// metadata endpoints are derived from the cluster's name and namespace).
pub trait AdminConnector: Send + Sync {
    /// The admin client of `cluster`.
    fn connect(&self, cluster: &ValidatedCluster) -> Box<dyn ClusterAdmin>;
}

/// A connector whose every call fails with [`AdminError::Unavailable`], so
/// scale-in is held (never unsafe).
#[derive(Clone, Copy, Debug, Default)]
pub struct Unconnected;

impl ClusterAdmin for Unconnected {
    fn brokers(&self) -> BoxFuture<'_, Result<Vec<BrokerInfo>, AdminError>> {
        Box::pin(async { Err(unconnected()) })
    }
    fn drain(&self, _ids: &[i32]) -> BoxFuture<'_, Result<(), AdminError>> {
        Box::pin(async { Err(unconnected()) })
    }
    fn rebalance(&self) -> BoxFuture<'_, Result<u32, AdminError>> {
        Box::pin(async { Err(unconnected()) })
    }
}

impl AdminConnector for Unconnected {
    fn connect(&self, _cluster: &ValidatedCluster) -> Box<dyn ClusterAdmin> {
        Box::new(Unconnected)
    }
}

fn unconnected() -> AdminError {
    AdminError::Unavailable {
        reason: "this operator build has no admin API client; scale-in is held until brokers can be drained".into(),
    }
}
