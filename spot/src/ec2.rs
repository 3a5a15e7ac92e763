//! The EC2 API watcher (feature `ec2`): for the instances behind the
//! cluster's nodes, polls
//!
//! - `DescribeSpotInstanceRequests`: the request's status code says when a
//!   spot instance is marked for termination or stop, or was already
//!   terminated or stopped (`instance-terminated-by-price`, …);
//! - `DescribeInstanceStatus` (all states): the instance state
//!   (`shutting-down`, `terminated`, `stopping`, `stopped`) and its
//!   scheduled events (reboot, retirement, stop, maintenance).
//!
//! Credentials and region come from the standard AWS chain (environment,
//! profile, web identity / IRSA, EKS Pod Identity, instance role); the
//! endpoint can be overridden (`AWS_ENDPOINT_URL` or [`Ec2Config::endpoint`]).
//! The HTTPS client is rustls on ring, so aws-lc-sys is not built.
//!
//! Classification is pure ([`spot_request_signal`], [`instance_status_signals`])
//! and tested on SDK values; the polling is tested against moto.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_sdk_ec2::types::{
    EventCode, Filter, InstanceStateName, InstanceStatus, SpotInstanceRequest,
};
use aws_sdk_ec2::Client;
use futures::future::BoxFuture;
use tokio::sync::watch;

use crate::respond::ClusterView;
use crate::signal::{rfc3339, Origin, Signal, SignalKind, Urgency, SPOT_WARNING};
use crate::watcher::{Notice, PollError, Source, Target};

/// Where and how to reach EC2.
#[derive(Clone, Debug, Default)]
pub struct Ec2Config {
    /// Overrides the endpoint (tests: a moto server on loopback). `None`
    /// uses `AWS_ENDPOINT_URL_EC2` / `AWS_ENDPOINT_URL` or the regional one.
    pub endpoint: Option<String>,
    /// Overrides the region; `None` uses the standard chain (`AWS_REGION`,
    /// profile, instance metadata).
    pub region: Option<String>,
}

/// An EC2 client from the standard AWS configuration chain.
pub async fn client(config: &Ec2Config) -> Client {
    use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider};
    let https = aws_smithy_http_client::Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::Ring))
        .build_https();
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest()).http_client(https);
    if let Some(endpoint) = &config.endpoint {
        loader = loader.endpoint_url(endpoint);
    }
    if let Some(region) = &config.region {
        loader = loader.region(aws_config::Region::new(region.clone()));
    }
    Client::new(&loader.load().await)
}

/// Errors of the EC2 watcher.
#[derive(Debug, thiserror::Error)]
pub enum Ec2Error {
    /// `DescribeSpotInstanceRequests` failed.
    #[error("DescribeSpotInstanceRequests failed: {0}; the role needs ec2:DescribeSpotInstanceRequests, and region/endpoint must be the cluster's")]
    DescribeSpotRequests(String),
    /// `DescribeInstanceStatus` failed.
    #[error("DescribeInstanceStatus failed: {0}; the role needs ec2:DescribeInstanceStatus, and region/endpoint must be the cluster's")]
    DescribeInstanceStatus(String),
}

/// What a spot request's status code means for its instance, if anything.
/// See "Spot request status codes" in the EC2 user guide.
pub fn spot_request_signal(request: &SpotInstanceRequest, now: SystemTime) -> Option<Signal> {
    let status = request.status()?;
    let code = status.code()?;
    let kind = match code {
        "marked-for-termination" | "marked-for-stop" | "marked-for-hibernation" => {
            SignalKind::SpotInterruption
        }
        // EC2 sets `instance-terminated-no-capacity` at the notice and
        // leaves the instance running for the two-minute window.
        c if c.starts_with("instance-terminated-")
            || c.starts_with("instance-stopped-")
            || c.starts_with("instance-hibernated-")
            || c == "spot-instance-terminated-by-user" =>
        {
            SignalKind::InstanceGoing
        }
        _ => return None,
    };
    let updated = status
        .update_time()
        .and_then(|t| SystemTime::try_from(*t).ok())
        .unwrap_or(now);
    let (urgency, deadline) = match kind {
        SignalKind::SpotInterruption => (Urgency::Imminent, updated + SPOT_WARNING),
        // The instance may still run for the rest of the window; drain as
        // if it did, but now.
        _ => (Urgency::Immediate, (updated + SPOT_WARNING).min(now)),
    };
    Some(Signal {
        kind,
        urgency,
        deadline,
        origin: Origin::Ec2Api,
        detail: format!(
            "spot request {} {code} at {}",
            request.spot_instance_request_id().unwrap_or("?"),
            rfc3339(updated)
        ),
    })
}

/// The signals in one `DescribeInstanceStatus` entry: a state on the way
/// out, and scheduled events that are neither completed nor canceled.
pub fn instance_status_signals(status: &InstanceStatus, now: SystemTime) -> Vec<Signal> {
    let mut signals = Vec::new();
    if let Some(state) = status.instance_state().and_then(|s| s.name()) {
        if matches!(
            state,
            InstanceStateName::ShuttingDown
                | InstanceStateName::Terminated
                | InstanceStateName::Stopping
                | InstanceStateName::Stopped
        ) {
            signals.push(Signal::seen_at(
                SignalKind::InstanceGoing,
                Origin::Ec2Api,
                now,
                format!("instance state {}", state.as_str()),
            ));
        }
    }
    for event in status.events() {
        let description = event.description().unwrap_or_default();
        // Past and canceled events stay listed for a while, marked in the description.
        if description.starts_with("[Completed]") || description.starts_with("[Canceled]") {
            continue;
        }
        let Some(code) = event.code() else { continue };
        if !matches!(
            code,
            EventCode::InstanceReboot
                | EventCode::InstanceRetirement
                | EventCode::InstanceStop
                | EventCode::SystemMaintenance
                | EventCode::SystemReboot
        ) {
            continue;
        }
        let not_before = event
            .not_before()
            .and_then(|t| SystemTime::try_from(*t).ok())
            .unwrap_or(now);
        let urgency = if not_before <= now + SPOT_WARNING {
            Urgency::Imminent
        } else {
            Urgency::Scheduled
        };
        signals.push(Signal {
            kind: SignalKind::ScheduledEvent,
            urgency,
            deadline: not_before,
            origin: Origin::Ec2Api,
            detail: format!(
                "scheduled event {} {} not before {}: {description}",
                event.instance_event_id().unwrap_or("?"),
                code.as_str(),
                rfc3339(not_before)
            ),
        });
    }
    signals
}

/// `DescribeInstanceStatus` takes at most this many instance ids per filter.
const IDS_PER_CALL: usize = 200;

/// A [`Source`] polling EC2 for the instances behind the nodes of a
/// [`ClusterView`].
pub struct Ec2Source {
    client: Client,
    view: watch::Receiver<Arc<ClusterView>>,
}

impl Ec2Source {
    /// Polls through `client` for the instances of the nodes in `view`.
    pub fn new(client: Client, view: watch::Receiver<Arc<ClusterView>>) -> Ec2Source {
        Ec2Source { client, view }
    }

    /// Every signal EC2 has for `instances`, keyed by instance id.
    pub async fn signals(
        &self,
        instances: &BTreeSet<String>,
        now: SystemTime,
    ) -> Result<Vec<(String, Signal)>, Ec2Error> {
        let mut out = Vec::new();
        if instances.is_empty() {
            return Ok(out);
        }
        // Spot requests: listed whole and matched here (a request stays
        // listed, closed, after its instance is gone; the `instance-id`
        // filter is not supported by every EC2-compatible endpoint).
        let mut pages = self
            .client
            .describe_spot_instance_requests()
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| {
                Ec2Error::DescribeSpotRequests(
                    aws_sdk_ec2::error::DisplayErrorContext(e).to_string(),
                )
            })?;
            for request in page.spot_instance_requests() {
                let Some(id) = request.instance_id() else {
                    continue;
                };
                if !instances.contains(id) {
                    continue;
                }
                if let Some(signal) = spot_request_signal(request, now) {
                    out.push((id.to_string(), signal));
                }
            }
        }
        // Instance state and events. Filtering by `instance-id` (rather than
        // naming the ids) does not fail the whole call when one instance is
        // already gone.
        let ids: Vec<String> = instances.iter().cloned().collect();
        let mut answered = BTreeSet::new();
        for chunk in ids.chunks(IDS_PER_CALL) {
            let mut pages = self
                .client
                .describe_instance_status()
                .include_all_instances(true)
                .filters(
                    Filter::builder()
                        .name("instance-id")
                        .set_values(Some(chunk.to_vec()))
                        .build(),
                )
                .into_paginator()
                .send();
            while let Some(page) = pages.next().await {
                let page = page.map_err(|e| {
                    Ec2Error::DescribeInstanceStatus(
                        aws_sdk_ec2::error::DisplayErrorContext(e).to_string(),
                    )
                })?;
                for status in page.instance_statuses() {
                    let Some(id) = status.instance_id() else {
                        continue;
                    };
                    answered.insert(id.to_string());
                    for signal in instance_status_signals(status, now) {
                        out.push((id.to_string(), signal));
                    }
                }
            }
        }
        // EC2 lists terminated instances for about an hour, so a node whose
        // instance is missing points at a wrong region or account rather than
        // at an interruption: say so, but do not drain on it.
        let missing: Vec<&String> = instances.difference(&answered).collect();
        if !missing.is_empty() {
            tracing::warn!(
                count = missing.len(),
                first = %missing[0],
                "EC2 does not know some of the nodes' instances; check the region and account of the EC2 client"
            );
        }
        Ok(out)
    }
}

impl Source for Ec2Source {
    fn name(&self) -> &'static str {
        "ec2"
    }

    fn poll(&mut self, now: SystemTime) -> BoxFuture<'_, Result<Vec<Notice>, PollError>> {
        let instances: BTreeSet<String> = self.view.borrow().instance_nodes().into_keys().collect();
        Box::pin(async move {
            let signals = self
                .signals(&instances, now)
                .await
                .map_err(|e| PollError::new("ec2", e))?;
            Ok(signals
                .into_iter()
                .map(|(id, signal)| Notice {
                    target: Target::Instance(id),
                    signal,
                })
                .collect())
        })
    }
}

/// How often to poll EC2: each poll costs two or more API calls, which count
/// against the account's EC2 request rate limits shared with every other
/// tool, so this is slower than node-object polling.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(10);

#[cfg(test)]
mod tests {
    use aws_sdk_ec2::primitives::DateTime;
    use aws_sdk_ec2::types::{InstanceState, InstanceStatusEvent, SpotInstanceStatus};

    use super::*;

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn request(code: &str, updated: i64) -> SpotInstanceRequest {
        SpotInstanceRequest::builder()
            .spot_instance_request_id("sir-1")
            .instance_id("i-0abc")
            .status(
                SpotInstanceStatus::builder()
                    .code(code)
                    .update_time(DateTime::from_secs(updated))
                    .build(),
            )
            .build()
    }

    #[test]
    fn spot_request_status_codes() {
        let now = at(10_000);
        let s = spot_request_signal(&request("marked-for-termination", 9_990), now).unwrap();
        assert_eq!(s.kind, SignalKind::SpotInterruption);
        assert_eq!(s.deadline, at(9_990 + 120));
        assert_eq!(s.urgency, Urgency::Imminent);
        let s = spot_request_signal(&request("marked-for-stop", 9_990), now).unwrap();
        assert_eq!(s.kind, SignalKind::SpotInterruption);
        for code in [
            "instance-terminated-by-price",
            "instance-terminated-no-capacity",
            "instance-terminated-by-user",
            "instance-stopped-no-capacity",
            "spot-instance-terminated-by-user",
        ] {
            let s = spot_request_signal(&request(code, 9_990), now).unwrap();
            assert_eq!(s.kind, SignalKind::InstanceGoing, "{code}");
            assert_eq!(s.urgency, Urgency::Immediate);
            assert_eq!(s.deadline, now, "{code}");
        }
        for code in [
            "fulfilled",
            "pending-evaluation",
            "request-canceled-and-instance-running",
        ] {
            assert_eq!(
                spot_request_signal(&request(code, 9_990), now),
                None,
                "{code}"
            );
        }
    }

    fn status(state: InstanceStateName, events: Vec<InstanceStatusEvent>) -> InstanceStatus {
        InstanceStatus::builder()
            .instance_id("i-0abc")
            .instance_state(InstanceState::builder().name(state).build())
            .set_events(Some(events))
            .build()
    }

    fn event(code: EventCode, description: &str, not_before: i64) -> InstanceStatusEvent {
        InstanceStatusEvent::builder()
            .instance_event_id("instance-event-1")
            .code(code)
            .description(description)
            .not_before(DateTime::from_secs(not_before))
            .build()
    }

    #[test]
    fn instance_states_on_the_way_out() {
        for state in [
            InstanceStateName::ShuttingDown,
            InstanceStateName::Terminated,
            InstanceStateName::Stopping,
            InstanceStateName::Stopped,
        ] {
            let s = instance_status_signals(&status(state.clone(), vec![]), at(5));
            assert_eq!(s.len(), 1, "{state:?}");
            assert_eq!(s[0].kind, SignalKind::InstanceGoing);
            assert_eq!(s[0].deadline, at(5));
        }
        for state in [InstanceStateName::Running, InstanceStateName::Pending] {
            assert!(instance_status_signals(&status(state, vec![]), at(5)).is_empty());
        }
    }

    #[test]
    fn scheduled_events_unless_completed_or_canceled() {
        let now = at(1_000_000);
        let s = instance_status_signals(
            &status(
                InstanceStateName::Running,
                vec![
                    event(
                        EventCode::InstanceRetirement,
                        "The instance is running on degraded hardware",
                        1_086_400,
                    ),
                    event(
                        EventCode::SystemReboot,
                        "[Completed] scheduled reboot",
                        900_000,
                    ),
                    event(
                        EventCode::InstanceStop,
                        "[Canceled] scheduled stop",
                        1_100_000,
                    ),
                    event(
                        EventCode::SystemMaintenance,
                        "Scheduled system maintenance",
                        1_000_060,
                    ),
                ],
            ),
            now,
        );
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].kind, SignalKind::ScheduledEvent);
        assert_eq!(s[0].urgency, Urgency::Scheduled);
        assert_eq!(s[0].deadline, at(1_086_400));
        assert!(
            s[0].detail.contains("instance-retirement"),
            "{}",
            s[0].detail
        );
        assert_eq!(s[1].urgency, Urgency::Imminent);
        assert_eq!(s[1].deadline, at(1_000_060));
    }
}
