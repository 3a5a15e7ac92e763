//! The instance metadata service (IMDSv2) of the node a pod runs on: the
//! spot interruption notice (`spot/instance-action`) and the rebalance
//! recommendation (`events/recommendations/rebalance`). Both paths answer
//! 404 until EC2 posts a notice.
//!
//! A session token is fetched with `PUT /latest/api/token` and reused until
//! it nearly expires or the service answers 401. Pods reach IMDSv2 only when
//! the instance's hop limit is at least 2 (see docs/spot.md).

use std::str::FromStr;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use futures::future::BoxFuture;
use http_body_util::{BodyExt, Empty};
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;

use crate::signal::{rfc3339, Origin, Signal, SignalKind, Urgency};
use crate::watcher::{Notice, PollError, Source, Target};

/// The link-local address of the metadata service on EC2.
pub const DEFAULT_ENDPOINT: &str = "http://169.254.169.254";
/// Path of the IMDSv2 session token.
pub const TOKEN_PATH: &str = "/latest/api/token";
/// Path of the spot interruption notice.
pub const INSTANCE_ACTION_PATH: &str = "/latest/meta-data/spot/instance-action";
/// Path of the rebalance recommendation.
pub const REBALANCE_PATH: &str = "/latest/meta-data/events/recommendations/rebalance";

/// Lifetime requested for session tokens (the service's maximum is 6 h).
const TOKEN_TTL: Duration = Duration::from_secs(6 * 3600);
/// A token is renewed this long before it expires.
const TOKEN_MARGIN: Duration = Duration::from_secs(60);
/// Budget of one request: the service is on the host, so anything slower
/// means it is unreachable (hop limit 1, or not on EC2).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// Errors of the metadata client.
#[derive(Debug, thiserror::Error)]
pub enum ImdsError {
    /// The endpoint is not an `http://host[:port]` URL.
    #[error("instance metadata endpoint {endpoint:?} is not an http:// URL; pass e.g. http://169.254.169.254")]
    ParseEndpoint {
        /// The endpoint as given.
        endpoint: String,
    },
    /// A request failed or timed out.
    #[error("instance metadata request {method} {path} failed: {reason}; check that the pod can reach {endpoint} (IMDSv2 hop limit >= 2 for pods off the host network)")]
    Request {
        /// The endpoint.
        endpoint: String,
        /// HTTP method.
        method: &'static str,
        /// Request path.
        path: &'static str,
        /// What went wrong.
        reason: String,
    },
    /// The service answered with an unexpected status.
    #[error("instance metadata {method} {path} answered {status}")]
    Status {
        /// HTTP method.
        method: &'static str,
        /// Request path.
        path: &'static str,
        /// The status code.
        status: u16,
    },
    /// A notice's body is not the documented JSON.
    #[error("instance metadata {path} returned a notice that does not parse ({reason}): {body:?}")]
    ParseNotice {
        /// Request path.
        path: &'static str,
        /// What is wrong with it.
        reason: String,
        /// The body.
        body: String,
    },
}

/// A client for one instance's metadata service.
pub struct Imds {
    endpoint: String,
    client: Client<HttpConnector, Empty<Bytes>>,
    token: Option<(String, Instant)>,
}

impl Imds {
    /// A client for `endpoint` (`http://host[:port]`, no path), e.g.
    /// [`DEFAULT_ENDPOINT`] or a test server on loopback.
    pub fn new(endpoint: &str) -> Result<Imds, ImdsError> {
        let endpoint = endpoint.trim_end_matches('/').to_string();
        let valid = endpoint
            .strip_prefix("http://")
            .is_some_and(|host| !host.is_empty() && !host.contains('/'));
        if !valid || hyper::Uri::from_str(&endpoint).is_err() {
            return Err(ImdsError::ParseEndpoint { endpoint });
        }
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(REQUEST_TIMEOUT));
        Ok(Imds {
            endpoint,
            client: Client::builder(TokioExecutor::new()).build(connector),
            token: None,
        })
    }

    /// One request; returns the status and the body.
    async fn request(
        &self,
        method: Method,
        path: &'static str,
        header: (&'static str, &str),
    ) -> Result<(StatusCode, String), ImdsError> {
        let method_name = if method == Method::PUT { "PUT" } else { "GET" };
        let fail = |reason: String| ImdsError::Request {
            endpoint: self.endpoint.clone(),
            method: method_name,
            path,
            reason,
        };
        let req = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.endpoint))
            .header(header.0, header.1)
            .body(Empty::new())
            .map_err(|e| fail(e.to_string()))?;
        let exchange = async {
            let resp = self
                .client
                .request(req)
                .await
                .map_err(|e| fail(e.to_string()))?;
            let status = resp.status();
            let body = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| fail(e.to_string()))?
                .to_bytes();
            Ok((status, String::from_utf8_lossy(&body).into_owned()))
        };
        tokio::time::timeout(REQUEST_TIMEOUT, exchange)
            .await
            .map_err(|_| fail(format!("no answer within {REQUEST_TIMEOUT:?}")))?
    }

    /// A valid session token, fetched when missing or about to expire.
    async fn token(&mut self) -> Result<String, ImdsError> {
        if let Some((token, expires)) = &self.token {
            if Instant::now() + TOKEN_MARGIN < *expires {
                return Ok(token.clone());
            }
        }
        let ttl = TOKEN_TTL.as_secs().to_string();
        let (status, body) = self
            .request(
                Method::PUT,
                TOKEN_PATH,
                ("x-aws-ec2-metadata-token-ttl-seconds", &ttl),
            )
            .await?;
        if status != StatusCode::OK {
            return Err(ImdsError::Status {
                method: "PUT",
                path: TOKEN_PATH,
                status: status.as_u16(),
            });
        }
        let token = body.trim().to_string();
        self.token = Some((token.clone(), Instant::now() + TOKEN_TTL));
        Ok(token)
    }

    /// GETs a metadata path: `Some(body)`, or `None` on 404 (no notice).
    /// A 401 means the token expired or was revoked: renew it once.
    pub async fn get(&mut self, path: &'static str) -> Result<Option<String>, ImdsError> {
        for attempt in 0..2 {
            let token = self.token().await?;
            let (status, body) = self
                .request(Method::GET, path, ("x-aws-ec2-metadata-token", &token))
                .await?;
            match status {
                StatusCode::OK => return Ok(Some(body)),
                StatusCode::NOT_FOUND => return Ok(None),
                StatusCode::UNAUTHORIZED if attempt == 0 => self.token = None,
                other => {
                    return Err(ImdsError::Status {
                        method: "GET",
                        path,
                        status: other.as_u16(),
                    })
                }
            }
        }
        unreachable!("the loop returns on its second attempt")
    }

    /// The current notices of this instance, as signals.
    pub async fn signals(&mut self, now: SystemTime) -> Result<Vec<Signal>, ImdsError> {
        let mut signals = Vec::new();
        if let Some(body) = self.get(INSTANCE_ACTION_PATH).await? {
            signals.push(parse_instance_action(&body)?);
        }
        if let Some(body) = self.get(REBALANCE_PATH).await? {
            signals.push(parse_rebalance(&body, now)?);
        }
        Ok(signals)
    }
}

fn json_time(
    path: &'static str,
    body: &str,
    field: &str,
) -> Result<(serde_json::Value, SystemTime), ImdsError> {
    let bad = |reason: String| ImdsError::ParseNotice {
        path,
        reason,
        body: body.to_string(),
    };
    let v: serde_json::Value = serde_json::from_str(body).map_err(|e| bad(e.to_string()))?;
    let time = v
        .get(field)
        .and_then(|t| t.as_str())
        .ok_or_else(|| bad(format!("no \"{field}\" string")))?;
    let ts = jiff::Timestamp::from_str(time).map_err(|e| bad(format!("{field}: {e}")))?;
    Ok((v, SystemTime::from(ts)))
}

/// Parses `spot/instance-action`: `{"action": "terminate"|"stop"|"hibernate",
/// "time": "2017-09-18T08:22:00Z"}`, the time being when the action happens.
pub fn parse_instance_action(body: &str) -> Result<Signal, ImdsError> {
    let (v, time) = json_time(INSTANCE_ACTION_PATH, body, "time")?;
    let action = v
        .get("action")
        .and_then(|a| a.as_str())
        .unwrap_or("unknown");
    Ok(Signal {
        kind: SignalKind::SpotInterruption,
        urgency: Urgency::Imminent,
        deadline: time,
        origin: Origin::InstanceMetadata,
        detail: format!("spot/instance-action {action} at {}", rfc3339(time)),
    })
}

/// Parses `events/recommendations/rebalance`: `{"noticeTime": "…"}`. A
/// recommendation has no deadline; it is given the kind's advisory window
/// from its notice time (or from `now`, if that is later: an old notice must
/// not look overdue).
pub fn parse_rebalance(body: &str, now: SystemTime) -> Result<Signal, ImdsError> {
    let (_, notice) = json_time(REBALANCE_PATH, body, "noticeTime")?;
    Ok(Signal::seen_at(
        SignalKind::RebalanceRecommendation,
        Origin::InstanceMetadata,
        notice.max(now),
        format!(
            "events/recommendations/rebalance noticeTime {}",
            rfc3339(notice)
        ),
    ))
}

/// A [`Source`] polling the metadata service of the node this process runs
/// on; its notices name that node.
pub struct ImdsSource {
    imds: Imds,
    node: String,
}

impl ImdsSource {
    /// Polls `imds` on behalf of `node` (the pod's `spec.nodeName`, from the
    /// downward API).
    pub fn new(imds: Imds, node: String) -> ImdsSource {
        ImdsSource { imds, node }
    }
}

impl Source for ImdsSource {
    fn name(&self) -> &'static str {
        "imds"
    }

    fn poll(&mut self, now: SystemTime) -> BoxFuture<'_, Result<Vec<Notice>, PollError>> {
        Box::pin(async move {
            let signals = self
                .imds
                .signals(now)
                .await
                .map_err(|e| PollError::new("imds", e))?;
            Ok(signals
                .into_iter()
                .map(|signal| Notice {
                    target: Target::Node(self.node.clone()),
                    signal,
                })
                .collect())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_action_deadline_is_the_action_time() {
        let s = parse_instance_action(r#"{"action": "terminate", "time": "2017-09-18T08:22:00Z"}"#)
            .unwrap();
        assert_eq!(s.kind, SignalKind::SpotInterruption);
        assert_eq!(
            s.deadline,
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_505_722_920)
        );
        assert_eq!(
            s.detail,
            "spot/instance-action terminate at 2017-09-18T08:22:00Z"
        );
        assert!(matches!(
            parse_instance_action(r#"{"action": "terminate"}"#),
            Err(ImdsError::ParseNotice { .. })
        ));
        assert!(parse_instance_action("<html>").is_err());
    }

    #[test]
    fn an_old_rebalance_notice_is_advisory_from_now() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(2_000_000_000);
        let s = parse_rebalance(r#"{"noticeTime": "2020-10-27T08:22:00Z"}"#, now).unwrap();
        assert_eq!(s.kind, SignalKind::RebalanceRecommendation);
        assert_eq!(s.urgency, Urgency::Advisory);
        assert_eq!(
            s.deadline,
            now + SignalKind::RebalanceRecommendation.default_window()
        );
    }

    #[test]
    fn endpoints_must_be_plain_http() {
        assert!(Imds::new("http://169.254.169.254").is_ok());
        assert!(Imds::new("http://127.0.0.1:8080/").is_ok());
        for bad in [
            "https://169.254.169.254",
            "169.254.169.254",
            "http://",
            "http://h/latest",
        ] {
            assert!(Imds::new(bad).is_err(), "{bad}");
        }
    }
}
