//! Test doubles of the operator's outside world other than Kubernetes: an
//! in-memory metadata controller ([`MemoryAdmin`]) and a recording
//! object-store reclaimer ([`RecordingReclaimer`]).
#![allow(dead_code)]

use std::sync::{Arc, Mutex};

use floe_operator::admin::{AdminConnector, AdminError, BrokerInfo, BrokerState, ClusterAdmin};
use floe_operator::reclaim::{Credentials, DataReclaimer, ReclaimError};
use floe_operator::reconcile::validate::{ObjectStore, ValidatedCluster};
use futures::future::BoxFuture;

use super::fake_api::Clock;

/// One admin call, stamped with the shared [`Clock`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AdminCall {
    /// `drain(ids)`.
    Drain(Vec<i32>),
    /// `rebalance()`.
    Rebalance,
}

#[derive(Default)]
struct AdminState {
    brokers: Vec<BrokerInfo>,
    calls: Vec<(u64, AdminCall)>,
    unavailable: bool,
}

/// A metadata controller in memory: brokers registered by the test, drains
/// that mark brokers `Draining` until the test finishes them, rebalances
/// that spread the partitions evenly.
#[derive(Clone)]
pub struct MemoryAdmin {
    state: Arc<Mutex<AdminState>>,
    clock: Clock,
}

impl MemoryAdmin {
    pub fn new(clock: Clock) -> MemoryAdmin {
        MemoryAdmin {
            state: Arc::default(),
            clock,
        }
    }

    /// Register brokers `ids`, active, each leading `partitions`.
    pub fn register(&self, ids: impl IntoIterator<Item = i32>, partitions: u32) {
        let mut s = self.state.lock().unwrap();
        for id in ids {
            s.brokers.retain(|b| b.id != id);
            s.brokers.push(BrokerInfo {
                id,
                state: BrokerState::Active,
                partitions,
                incoming: 0,
            });
        }
        s.brokers.sort_by_key(|b| b.id);
    }

    /// Finish every drain: draining brokers hand their partitions to the
    /// active ones and become `Drained`.
    pub fn finish_drains(&self) {
        let mut s = self.state.lock().unwrap();
        let mut moved = 0;
        for b in s
            .brokers
            .iter_mut()
            .filter(|b| b.state == BrokerState::Draining)
        {
            moved += b.partitions;
            b.partitions = 0;
            b.state = BrokerState::Drained;
        }
        if let Some(first) = s
            .brokers
            .iter_mut()
            .find(|b| b.state == BrokerState::Active)
        {
            first.partitions += moved;
        }
    }

    /// Make every call fail as if the controllers were down.
    pub fn set_unavailable(&self, unavailable: bool) {
        self.state.lock().unwrap().unavailable = unavailable;
    }

    pub fn brokers_now(&self) -> Vec<BrokerInfo> {
        self.state.lock().unwrap().brokers.clone()
    }

    /// Calls so far, with their sequence numbers.
    pub fn calls(&self) -> Vec<(u64, AdminCall)> {
        self.state.lock().unwrap().calls.clone()
    }

    fn check(&self) -> Result<(), AdminError> {
        if self.state.lock().unwrap().unavailable {
            return Err(AdminError::Unavailable {
                reason: "connection refused".into(),
            });
        }
        Ok(())
    }
}

impl ClusterAdmin for MemoryAdmin {
    fn brokers(&self) -> BoxFuture<'_, Result<Vec<BrokerInfo>, AdminError>> {
        Box::pin(async move {
            self.check()?;
            Ok(self.brokers_now())
        })
    }

    fn drain(&self, ids: &[i32]) -> BoxFuture<'_, Result<(), AdminError>> {
        let ids = ids.to_vec();
        Box::pin(async move {
            self.check()?;
            let seq = self.clock.tick();
            let mut s = self.state.lock().unwrap();
            s.calls.push((seq, AdminCall::Drain(ids.clone())));
            for b in s.brokers.iter_mut().filter(|b| ids.contains(&b.id)) {
                if b.state == BrokerState::Active {
                    b.state = BrokerState::Draining;
                }
            }
            Ok(())
        })
    }

    fn rebalance(&self) -> BoxFuture<'_, Result<u32, AdminError>> {
        Box::pin(async move {
            self.check()?;
            let seq = self.clock.tick();
            let mut s = self.state.lock().unwrap();
            s.calls.push((seq, AdminCall::Rebalance));
            let active: Vec<usize> = (0..s.brokers.len())
                .filter(|i| s.brokers[*i].state == BrokerState::Active)
                .collect();
            let total: u32 = active.iter().map(|i| s.brokers[*i].partitions).sum();
            let n = active.len() as u32;
            let mut moved = 0;
            for (k, i) in active.iter().enumerate() {
                let share = total / n + u32::from((k as u32) < total % n);
                let b = &mut s.brokers[*i];
                moved += share.saturating_sub(b.partitions);
                b.partitions = share;
            }
            Ok(moved)
        })
    }
}

impl AdminConnector for MemoryAdmin {
    fn connect(&self, _cluster: &ValidatedCluster) -> Box<dyn ClusterAdmin> {
        Box::new(self.clone())
    }
}

/// One reclaim: the `s3://` URL and the credentials it was given.
pub type Reclaimed = (String, Option<Credentials>);

/// Records what a reclaim was asked to delete; fails on demand.
#[derive(Clone, Default)]
pub struct RecordingReclaimer {
    pub deleted: Arc<Mutex<Vec<Reclaimed>>>,
    pub fail: Arc<Mutex<bool>>,
}

impl DataReclaimer for RecordingReclaimer {
    fn delete_all<'a>(
        &'a self,
        store: &'a ObjectStore,
        credentials: Option<&'a Credentials>,
    ) -> BoxFuture<'a, Result<u64, ReclaimError>> {
        Box::pin(async move {
            if *self.fail.lock().unwrap() {
                return Err(ReclaimError {
                    url: store.url(),
                    message: "access denied".into(),
                });
            }
            self.deleted
                .lock()
                .unwrap()
                .push((store.url(), credentials.cloned()));
            Ok(7)
        })
    }
}
