//! The group coordinator's face to the broker: one async handler per Kafka group API, routing each request to its group's task and committed offsets to the [`OffsetStore`].
//!
//! Single-node for now: this broker coordinates every group, so the broker
//! answers FindCoordinator with itself.

mod actor;
mod admin;
mod membership;
mod offsets;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use kafka_protocol::error::ResponseError;

use crate::config::{ConfigError, GroupConfig};
use crate::store::OffsetStore;
use actor::{Command, GroupHandle, Reply};

/// Who sent a JoinGroup, from the request header and the connection. Shown by
/// DescribeGroups, and the prefix of generated member ids.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClientInfo {
    /// The request header's client id.
    pub client_id: String,
    /// The peer address; Kafka shows it as `/<ip>`.
    pub client_host: String,
}

/// How often a request is retried on a fresh group task when the one it
/// reached had just retired. Retirement needs minutes of idleness, so a
/// second attempt always finds a live task; the third is slack.
const ATTEMPTS: usize = 3;

/// The Kafka consumer-group coordinator of one broker. Cheap to clone; clones
/// share all groups.
#[derive(Clone)]
pub struct GroupCoordinator {
    inner: Arc<Inner>,
}

struct Inner {
    config: GroupConfig,
    store: Arc<dyn OffsetStore>,
    /// Group tasks by group id. Locked only to look up or swap a handle,
    /// never across an await.
    groups: Mutex<HashMap<String, Arc<GroupHandle>>>,
}

impl std::fmt::Debug for GroupCoordinator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupCoordinator")
            .field("config", &self.inner.config)
            .field("groups", &self.lock_groups().len())
            .finish_non_exhaustive()
    }
}

impl GroupCoordinator {
    /// A coordinator with no groups in memory; committed offsets are read
    /// from `store` on demand. Group tasks are spawned on the current tokio
    /// runtime when first needed.
    pub fn new(config: GroupConfig, store: Arc<dyn OffsetStore>) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                store,
                groups: Mutex::new(HashMap::new()),
            }),
        })
    }

    pub fn config(&self) -> &GroupConfig {
        &self.inner.config
    }

    fn store(&self) -> Arc<dyn OffsetStore> {
        Arc::clone(&self.inner.store)
    }

    /// The map holds only handles, each insert or remove is atomic, so a
    /// panic elsewhere cannot leave it inconsistent: ignore poisoning.
    fn lock_groups(&self) -> MutexGuard<'_, HashMap<String, Arc<GroupHandle>>> {
        self.inner
            .groups
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The live task of `group`, created if `create` and there is none.
    fn handle(&self, group: &str, create: bool) -> Option<Arc<GroupHandle>> {
        let mut groups = self.lock_groups();
        if let Some(handle) = groups.get(group) {
            if !handle.is_closed() {
                return Some(Arc::clone(handle));
            }
            groups.remove(group);
        }
        if !create {
            return None;
        }
        let handle = GroupHandle::spawn(group.to_owned(), self.inner.config.clone());
        groups.insert(group.to_owned(), Arc::clone(&handle));
        Some(handle)
    }

    /// Forgets `handle` for `group` unless it has already been replaced.
    fn forget(&self, group: &str, handle: &Arc<GroupHandle>) {
        let mut groups = self.lock_groups();
        if groups.get(group).is_some_and(|h| Arc::ptr_eq(h, handle)) {
            groups.remove(group);
        }
    }

    /// Live handles of all groups, for ListGroups.
    fn handles(&self) -> Vec<(String, Arc<GroupHandle>)> {
        let mut groups = self.lock_groups();
        groups.retain(|_, handle| !handle.is_closed());
        groups
            .iter()
            .map(|(id, handle)| (id.clone(), Arc::clone(handle)))
            .collect()
    }

    /// Asks `group`'s task, retrying on a fresh task if it retired meanwhile.
    /// `None`: the group has no task (and `create` is false), or could not be
    /// reached; either way the caller answers as for an unknown group.
    async fn ask<T>(
        &self,
        group: &str,
        create: bool,
        command: impl Fn(Reply<T>) -> Command,
    ) -> Option<T> {
        for _ in 0..ATTEMPTS {
            let handle = self.handle(group, create)?;
            if let Some(answer) = handle.ask(&command).await {
                return Some(answer);
            }
            self.forget(group, &handle);
        }
        None
    }
}

/// Blocking offset-store work, off the async workers. A panic in the store is
/// a bug there; the request fails retriably rather than taking the
/// connection down.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ResponseError> {
    tokio::task::spawn_blocking(work).await.map_err(|error| {
        tracing::error!(%error, "offset store call panicked");
        ResponseError::CoordinatorNotAvailable
    })
}
