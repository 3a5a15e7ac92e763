//! Leader election with a `coordination.k8s.io/v1` Lease, so that only one
//! operator replica runs the controller.
//!
//! Each replica reads the Lease every `renew_every` and decides ([`decide`],
//! pure): create it when missing, renew it when it holds it, take it over
//! when the holder's `renewTime + leaseDurationSeconds` has passed (or no one
//! holds it), otherwise follow. Writes go through `replace` with the
//! `resourceVersion` that was read, so two replicas racing for an expired
//! Lease cannot both win: the loser gets a 409 Conflict and follows.
//!
//! A leader that cannot renew for `renew_deadline` stops its controller
//! before the Lease can expire and another replica can take over, so two
//! controllers never act at once (given clocks that agree within the
//! margin). On shutdown the leader releases the Lease (empties
//! `holderIdentity`), so a successor takes over at once.

use std::future::Future;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, PostParams};
use kube::Client;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;

/// How a replica competes for the Lease.
#[derive(Clone, Debug)]
pub struct LeaseConfig {
    /// Lease name.
    pub name: String,
    /// Lease namespace (the operator's).
    pub namespace: String,
    /// This replica's identity (its pod name).
    pub identity: String,
    /// How long a Lease is valid after its last renewal.
    pub lease_duration: Duration,
    /// How long a leader keeps leading without a successful renewal; less
    /// than `lease_duration`.
    pub renew_deadline: Duration,
    /// How often to read and renew or try to acquire.
    pub renew_every: Duration,
}

/// What to do with the Lease, given what was read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// There is no Lease: create it, held by us.
    Create,
    /// We hold it: renew it.
    Renew,
    /// Nobody holds it or the holder let it expire: take it over.
    TakeOver,
    /// Someone else holds it: do nothing.
    Follow,
}

/// Decide what to do with the Lease (`None`: it does not exist).
pub fn decide(lease: Option<&LeaseSpec>, identity: &str, now: Timestamp) -> Decision {
    let Some(spec) = lease else {
        return Decision::Create;
    };
    match spec.holder_identity.as_deref() {
        Some(holder) if holder == identity => Decision::Renew,
        None | Some("") => Decision::TakeOver,
        Some(_) => {
            let duration = i64::from(spec.lease_duration_seconds.unwrap_or(15));
            let expires = spec
                .renew_time
                .as_ref()
                .or(spec.acquire_time.as_ref())
                .map(|t| t.0 + SignedDuration::from_secs(duration));
            match expires {
                Some(expires) if expires > now => Decision::Follow,
                _ => Decision::TakeOver,
            }
        }
    }
}

/// A failed read or write of the Lease (other than losing a race).
#[derive(Debug, thiserror::Error)]
#[error("{action} Lease {namespace}/{name} failed: {source}; the operator needs get, create and update on leases.coordination.k8s.io in its namespace")]
pub struct LeaseError {
    /// `reading`, `creating`, `updating`.
    pub action: &'static str,
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// The API error.
    #[source]
    pub source: kube::Error,
}

/// One replica's side of the election.
pub struct LeaderElector {
    api: Api<Lease>,
    config: LeaseConfig,
}

impl LeaderElector {
    /// An elector for `config`.
    pub fn new(client: Client, config: LeaseConfig) -> LeaderElector {
        LeaderElector {
            api: Api::namespaced(client, &config.namespace),
            config,
        }
    }

    /// Read the Lease, then act on it; whether we hold it afterwards.
    pub async fn try_acquire_or_renew(&self) -> Result<bool, LeaseError> {
        let observed = self.observe().await?;
        self.act(observed, Timestamp::now()).await
    }

    /// Read the Lease.
    pub async fn observe(&self) -> Result<Option<Lease>, LeaseError> {
        self.api
            .get_opt(&self.config.name)
            .await
            .map_err(|e| self.error("reading", e))
    }

    /// Act on a Lease read earlier (a stale read loses with a conflict);
    /// whether we hold it afterwards.
    pub async fn act(&self, observed: Option<Lease>, now: Timestamp) -> Result<bool, LeaseError> {
        let c = &self.config;
        let decision = decide(
            observed.as_ref().and_then(|l| l.spec.as_ref()),
            &c.identity,
            now,
        );
        let mine = |previous: Option<&LeaseSpec>, transitions: i32| LeaseSpec {
            holder_identity: Some(c.identity.clone()),
            lease_duration_seconds: Some(c.lease_duration.as_secs() as i32),
            acquire_time: previous
                .and_then(|p| p.acquire_time.clone())
                .or(Some(MicroTime(now))),
            renew_time: Some(MicroTime(now)),
            lease_transitions: Some(transitions),
            ..LeaseSpec::default()
        };
        let result = match (decision, observed) {
            (Decision::Follow, _) => return Ok(false),
            (Decision::Create, _) => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(c.name.clone()),
                        namespace: Some(c.namespace.clone()),
                        ..ObjectMeta::default()
                    },
                    spec: Some(mine(None, 0)),
                };
                self.api
                    .create(&PostParams::default(), &lease)
                    .await
                    .map_err(|e| ("creating", e))
            }
            (Decision::Renew, Some(mut lease)) => {
                let spec = lease.spec.take().unwrap_or_default();
                let transitions = spec.lease_transitions.unwrap_or(0);
                lease.spec = Some(mine(Some(&spec), transitions));
                self.replace(lease).await
            }
            (Decision::TakeOver, Some(mut lease)) => {
                let spec = lease.spec.take().unwrap_or_default();
                lease.spec = Some(LeaseSpec {
                    acquire_time: Some(MicroTime(now)),
                    ..mine(None, spec.lease_transitions.unwrap_or(0) + 1)
                });
                self.replace(lease).await
            }
            (Decision::Renew | Decision::TakeOver, None) => return Ok(false),
        };
        match result {
            Ok(_) => Ok(true),
            // Someone else wrote first (conflict) or created it (exists).
            Err((_, kube::Error::Api(status))) if status.code == 409 => Ok(false),
            Err((action, e)) => Err(self.error(action, e)),
        }
    }

    async fn replace(&self, lease: Lease) -> Result<Lease, (&'static str, kube::Error)> {
        self.api
            .replace(&self.config.name, &PostParams::default(), &lease)
            .await
            .map_err(|e| ("updating", e))
    }

    /// Give the Lease up if we hold it, so a successor need not wait for it
    /// to expire.
    pub async fn release(&self) -> Result<(), LeaseError> {
        let Some(mut lease) = self.observe().await? else {
            return Ok(());
        };
        let Some(spec) = lease.spec.as_mut() else {
            return Ok(());
        };
        if spec.holder_identity.as_deref() != Some(self.config.identity.as_str()) {
            return Ok(());
        }
        spec.holder_identity = None;
        match self.replace(lease).await {
            Ok(_) => Ok(()),
            Err((_, kube::Error::Api(status))) if status.code == 409 => Ok(()),
            Err((action, e)) => Err(self.error(action, e)),
        }
    }

    fn error(&self, action: &'static str, source: kube::Error) -> LeaseError {
        LeaseError {
            action,
            namespace: self.config.namespace.clone(),
            name: self.config.name.clone(),
            source,
        }
    }
}

/// Run `work` while this replica holds the Lease, until `shutdown`: started
/// when elected, cancelled (and awaited) when leadership is lost or cannot be
/// renewed for `renew_deadline`, and the Lease released at the end.
pub async fn run_elected<F, Fut>(
    elector: &LeaderElector,
    metrics: &Metrics,
    shutdown: CancellationToken,
    work: F,
) where
    F: Fn(CancellationToken) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut leading: Option<(CancellationToken, tokio::task::JoinHandle<()>)> = None;
    let mut last_renewed = Instant::now();
    loop {
        let holds = match elector.try_acquire_or_renew().await {
            Ok(holds) => {
                if holds {
                    last_renewed = Instant::now();
                }
                holds
            }
            Err(error) => {
                tracing::warn!(%error, "leader election");
                leading.is_some() && last_renewed.elapsed() < elector.config.renew_deadline
            }
        };
        match (holds, leading.is_some()) {
            (true, false) => {
                tracing::info!(identity = %elector.config.identity, "elected leader");
                let token = shutdown.child_token();
                let task = tokio::spawn(work(token.clone()));
                leading = Some((token, task));
                metrics.set_leader(true);
            }
            (false, true) => {
                tracing::warn!(identity = %elector.config.identity, "lost leadership; stopping the controller");
                if let Some((token, task)) = leading.take() {
                    token.cancel();
                    let _ = task.await;
                }
                metrics.set_leader(false);
            }
            _ => {}
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(elector.config.renew_every) => {}
        }
    }
    if let Some((token, task)) = leading.take() {
        token.cancel();
        let _ = task.await;
        metrics.set_leader(false);
        if let Err(error) = elector.release().await {
            tracing::warn!(%error, "releasing the Lease");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(holder: Option<&str>, renewed: Timestamp, seconds: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: holder.map(String::from),
            lease_duration_seconds: Some(seconds),
            renew_time: Some(MicroTime(renewed)),
            ..LeaseSpec::default()
        }
    }

    #[test]
    fn decisions() {
        let now: Timestamp = "2026-01-01T00:01:00Z".parse().unwrap();
        let recent: Timestamp = "2026-01-01T00:00:50Z".parse().unwrap();
        let old: Timestamp = "2026-01-01T00:00:30Z".parse().unwrap();
        assert_eq!(decide(None, "a", now), Decision::Create);
        assert_eq!(
            decide(Some(&spec(Some("a"), old, 15)), "a", now),
            Decision::Renew
        );
        assert_eq!(
            decide(Some(&spec(Some("b"), recent, 15)), "a", now),
            Decision::Follow
        );
        assert_eq!(
            decide(Some(&spec(Some("b"), old, 15)), "a", now),
            Decision::TakeOver
        );
        assert_eq!(
            decide(Some(&spec(Some("b"), old, 60)), "a", now),
            Decision::Follow
        );
        assert_eq!(
            decide(Some(&spec(None, recent, 15)), "a", now),
            Decision::TakeOver
        );
        assert_eq!(
            decide(Some(&spec(Some(""), recent, 15)), "a", now),
            Decision::TakeOver
        );
        let never_renewed = LeaseSpec {
            holder_identity: Some("b".into()),
            ..LeaseSpec::default()
        };
        assert_eq!(decide(Some(&never_renewed), "a", now), Decision::TakeOver);
    }
}
