//! [`ControllerClient`]: how brokers, the operator and tools talk to the
//! controller quorum; [`Mirror`]: a broker's live copy of the metadata.
//!
//! Contract of [`ControllerClient::propose`]: the command is applied exactly
//! once or the call fails. The client numbers its proposals (see
//! [`crate::raft::sessions`]) and retries one with the same number after
//! any failure that leaves the outcome unknown (a lost connection, a leader
//! change, a timeout), following leader hints, until its deadline. It finds
//! the leader from a hint (`FAILED_PRECONDITION` + [`super::LEADER_ADDRESS_HEADER`])
//! without scanning; with no hint it tries the configured controllers in
//! turn, backing off.
//!
//! Contract of [`Mirror`]: it follows the `Watch` stream of one controller
//! at a time and applies every entry with the pure
//! [`apply`](crate::model::apply), so its state is the controllers' state as
//! of [`Mirror::applied`], never a mix of two indexes; after a
//! disconnection it resumes after the last index it applied, from another
//! controller if need be (a snapshot first when that controller no longer
//! keeps the entries).

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tonic::transport::Channel;
use uuid::Uuid;

use super::network::Channels;
use super::proto::admin_client::AdminClient;
use super::proto::metadata_client::MetadataClient;
use super::proto::{
    watch_event, AddControllerRequest, ClusterStatus, ClusterStatusRequest, HeartbeatRequest,
    MembershipReply, ProposeRequest, ReadStateRequest, RemoveControllerRequest, Session,
    StateSnapshotPart, WatchRequest,
};
use super::{LEADER_ADDRESS_HEADER, MAX_MESSAGE_BYTES, MAX_STATE_BYTES, REFUSED_HEADER};
use crate::model::{apply, Command, MetadataState};
use crate::raft::Response as Answer;

mod admin;

/// Why a call to the controllers failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("no controller answered within {waited:?} ({attempts} attempts); last error: {last}")]
    Unavailable {
        waited: Duration,
        attempts: u32,
        last: String,
    },
    #[error("the controller refused the request: {code:?}: {message}")]
    Refused { code: tonic::Code, message: String },
    #[error("undecodable answer from the controller: {0}")]
    Decode(String),
    #[error("no controller addresses configured")]
    NoEndpoints,
}

/// What a committed proposal answered.
#[derive(Debug, Clone, PartialEq)]
pub struct Committed {
    /// The Raft log index it was committed at.
    pub index: u64,
    /// What applying it answered: a refusal (`Err`) is deterministic.
    pub answer: Answer,
}

/// Options of a [`ControllerClient`].
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// How long one call keeps retrying before it fails.
    pub deadline: Duration,
    /// Timeout of one attempt.
    pub attempt_timeout: Duration,
}

impl Default for ClientOptions {
    fn default() -> ClientOptions {
        ClientOptions {
            deadline: Duration::from_secs(15),
            attempt_timeout: Duration::from_secs(5),
        }
    }
}

/// A client of the controller quorum. Cloning shares it (and its session).
#[derive(Debug, Clone)]
pub struct ControllerClient {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    endpoints: Vec<String>,
    channels: Channels,
    options: ClientOptions,
    /// The controller believed to lead, from the last hint or success.
    leader: Mutex<Option<String>>,
    /// Round-robin cursor when no leader is known.
    next: AtomicUsize,
    client_id: Uuid,
    seq: AtomicU64,
    /// Proposal numbers still waiting for an answer: their minimum is the
    /// floor sent with every proposal.
    pending: Mutex<BTreeSet<u64>>,
}

/// How one attempt failed: with a status (maybe retried), or for good.
enum Failure {
    Status(tonic::Status),
    Fatal(ClientError),
}

impl From<tonic::Status> for Failure {
    fn from(status: tonic::Status) -> Failure {
        Failure::Status(status)
    }
}

impl From<ClientError> for Failure {
    fn from(e: ClientError) -> Failure {
        Failure::Fatal(e)
    }
}

fn undecodable(e: serde_json::Error) -> Failure {
    Failure::Fatal(ClientError::Decode(e.to_string()))
}

/// What one failed attempt means for the next.
enum Retry {
    /// Go to this controller next (a leader hint).
    To(String),
    /// Try another controller after a pause.
    Elsewhere(String),
}

fn classify(status: &tonic::Status) -> Option<Retry> {
    use tonic::Code;
    if status.metadata().contains_key(REFUSED_HEADER) {
        // Refused by the metadata model (or a membership rule): every
        // controller would answer the same.
        return None;
    }
    match status.code() {
        Code::FailedPrecondition => {
            let hint = status
                .metadata()
                .get(LEADER_ADDRESS_HEADER)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            Some(match hint {
                Some(addr) => Retry::To(addr),
                None => Retry::Elsewhere(status.message().to_owned()),
            })
        }
        Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled | Code::Unknown => Some(
            Retry::Elsewhere(format!("{:?}: {}", status.code(), status.message())),
        ),
        // A connection torn down under an open call (the controller stopped):
        // tonic reports the HTTP/2 error as INTERNAL. The session makes the
        // retry safe.
        Code::Internal if status.message().starts_with("h2 protocol error") => Some(
            Retry::Elsewhere(format!("{:?}: {}", status.code(), status.message())),
        ),
        _ => None,
    }
}

impl ControllerClient {
    /// A client of the controllers at `endpoints` (`host:port` of their
    /// metadata service).
    pub fn new(endpoints: Vec<String>, options: ClientOptions) -> ControllerClient {
        ControllerClient::with_channels(endpoints, options, Channels::default())
    }

    /// Like [`ControllerClient::new`], sharing `channels` with other users.
    pub fn with_channels(
        endpoints: Vec<String>,
        options: ClientOptions,
        channels: Channels,
    ) -> ControllerClient {
        ControllerClient {
            inner: Arc::new(Inner {
                endpoints,
                channels,
                options,
                leader: Mutex::new(None),
                next: AtomicUsize::new(0),
                client_id: Uuid::new_v4(),
                seq: AtomicU64::new(1),
                pending: Mutex::new(BTreeSet::new()),
            }),
        }
    }

    /// The configured controller addresses.
    pub fn endpoints(&self) -> &[String] {
        &self.inner.endpoints
    }

    /// The controller believed to lead, if any.
    pub fn leader(&self) -> Option<String> {
        self.inner
            .leader
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn set_leader(&self, addr: Option<String>) {
        *self.inner.leader.lock().unwrap_or_else(|p| p.into_inner()) = addr;
    }

    /// The leader if known, else the next configured controller.
    fn target(&self) -> Result<String, ClientError> {
        if let Some(leader) = self.leader() {
            return Ok(leader);
        }
        let n = self.inner.endpoints.len();
        if n == 0 {
            return Err(ClientError::NoEndpoints);
        }
        let i = self.inner.next.fetch_add(1, Ordering::Relaxed) % n;
        Ok(self.inner.endpoints[i].clone())
    }

    fn channel(&self, addr: &str) -> Result<Channel, ClientError> {
        self.inner
            .channels
            .get(addr)
            .map_err(|e| ClientError::Refused {
                code: tonic::Code::InvalidArgument,
                message: format!("invalid controller address {addr:?}: {e}"),
            })
    }

    fn metadata(&self, addr: &str) -> Result<MetadataClient<Channel>, ClientError> {
        Ok(MetadataClient::new(self.channel(addr)?)
            .max_decoding_message_size(MAX_STATE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES))
    }

    fn admin(&self, addr: &str) -> Result<AdminClient<Channel>, ClientError> {
        Ok(AdminClient::new(self.channel(addr)?)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES))
    }

    /// Runs `call` against the leader (or whoever answers, for calls any
    /// controller serves), following hints and retrying until the deadline.
    /// `leader_only`: a success proves `addr` leads (remember it).
    async fn with_retries<T, F, Fut>(
        &self,
        leader_only: bool,
        mut call: F,
    ) -> Result<T, ClientError>
    where
        F: FnMut(String) -> Fut,
        Fut: std::future::Future<Output = Result<T, Failure>>,
    {
        let started = Instant::now();
        let deadline = started + self.inner.options.deadline;
        let mut attempts = 0u32;
        let mut pause = Duration::from_millis(10);
        loop {
            attempts += 1;
            let addr = self.target()?;
            let attempt =
                tokio::time::timeout(self.inner.options.attempt_timeout, call(addr.clone()));
            let status = match attempt.await {
                Ok(Ok(value)) => {
                    if leader_only {
                        self.set_leader(Some(addr));
                    }
                    return Ok(value);
                }
                Ok(Err(Failure::Status(status))) => status,
                Ok(Err(Failure::Fatal(e))) => return Err(e),
                Err(_) => tonic::Status::deadline_exceeded("attempt timed out"),
            };
            let last = match classify(&status) {
                None => {
                    return Err(ClientError::Refused {
                        code: status.code(),
                        message: status.message().to_owned(),
                    })
                }
                Some(Retry::To(leader)) => {
                    let changed = Some(&leader) != self.leader().as_ref();
                    self.set_leader(Some(leader.clone()));
                    if changed {
                        // A fresh hint: follow it at once.
                        continue;
                    }
                    format!("{addr}: hinted leader did not answer as leader")
                }
                Some(Retry::Elsewhere(why)) => format!("{addr}: {why}"),
            };
            self.set_leader(None);
            if Instant::now() + pause > deadline {
                return Err(ClientError::Unavailable {
                    waited: started.elapsed(),
                    attempts,
                    last,
                });
            }
            tracing::debug!(attempts, %last, "controller call failed; retrying");
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(500));
        }
    }

    /// Commits `command` exactly once and returns what applying it answered.
    pub async fn propose(&self, command: &Command) -> Result<Committed, ClientError> {
        let json = serde_json::to_vec(command).map_err(|e| ClientError::Decode(e.to_string()))?;
        self.with_session(|addr, session| {
            let request = ProposeRequest {
                command: json.clone(),
                client_id: session.client_id,
                seq: session.seq,
                floor: session.floor,
            };
            let client = self.metadata(&addr);
            async move {
                let reply = client?.propose(request).await?.into_inner();
                let answer: Answer = serde_json::from_slice(&reply.outcome).map_err(undecodable)?;
                Ok(Committed {
                    index: reply.index,
                    answer,
                })
            }
        })
        .await
    }

    /// Runs a leader-only call that changes the state exactly once: it gets
    /// a new proposal number, the same on every retry (with the floor of the
    /// moment), and the quorum answers a retry from memory.
    async fn with_session<T, F, Fut>(&self, mut call: F) -> Result<T, ClientError>
    where
        F: FnMut(String, Session) -> Fut,
        Fut: std::future::Future<Output = Result<T, Failure>>,
    {
        let seq = self.inner.seq.fetch_add(1, Ordering::Relaxed);
        self.pending().insert(seq);
        let result = self
            .with_retries(true, |addr| {
                let session = Session {
                    client_id: self.inner.client_id.as_bytes().to_vec(),
                    seq,
                    floor: self.pending().first().copied().unwrap_or(seq),
                };
                call(addr, session)
            })
            .await;
        // Answered or given up: either way the quorum need not remember it.
        self.pending().remove(&seq);
        result
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, BTreeSet<u64>> {
        self.inner.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Renews broker `broker_id`'s lease for incarnation `epoch`; answers
    /// the lease granted. The broker may acknowledge writes until the time
    /// this call was *sent* plus the lease. `ABORTED` (a
    /// [`ClientError::Refused`]): the incarnation is fenced.
    pub async fn heartbeat(&self, broker_id: i32, epoch: i64) -> Result<Duration, ClientError> {
        self.with_retries(true, |addr| {
            let client = self.metadata(&addr);
            async move {
                let reply = client?
                    .heartbeat(HeartbeatRequest { broker_id, epoch })
                    .await?
                    .into_inner();
                Ok(Duration::from_millis(reply.lease_ms))
            }
        })
        .await
    }

    /// A linearizable read of the whole state, and its log index.
    pub async fn read_state(&self) -> Result<(u64, MetadataState), ClientError> {
        self.with_retries(true, |addr| {
            let client = self.metadata(&addr);
            async move {
                let reply = client?.read_state(ReadStateRequest {}).await?.into_inner();
                let state = serde_json::from_slice(&reply.state).map_err(undecodable)?;
                Ok((reply.index, state))
            }
        })
        .await
    }

    /// The cluster as the leader (when known; else any controller) sees it.
    pub async fn cluster_status(&self) -> Result<ClusterStatus, ClientError> {
        self.with_retries(false, |addr| {
            let client = self.admin(&addr);
            async move {
                Ok(client?
                    .get_cluster_status(ClusterStatusRequest {})
                    .await?
                    .into_inner())
            }
        })
        .await
    }

    /// Adds controller `id` as a voter (a learner first, until caught up).
    pub async fn add_controller(
        &self,
        id: u64,
        raft_address: &str,
        metadata_address: &str,
    ) -> Result<MembershipReply, ClientError> {
        self.with_retries(true, |addr| {
            let client = self.admin(&addr);
            let request = AddControllerRequest {
                id,
                raft_address: raft_address.to_owned(),
                metadata_address: metadata_address.to_owned(),
            };
            async move { Ok(client?.add_controller(request).await?.into_inner()) }
        })
        .await
    }

    /// Removes voter `id`.
    pub async fn remove_controller(&self, id: u64) -> Result<MembershipReply, ClientError> {
        self.with_retries(true, |addr| {
            let client = self.admin(&addr);
            async move {
                Ok(client?
                    .remove_controller(RemoveControllerRequest { id })
                    .await?
                    .into_inner())
            }
        })
        .await
    }
}

fn refused(status: tonic::Status) -> ClientError {
    ClientError::Refused {
        code: status.code(),
        message: status.message().to_owned(),
    }
}

/// A broker's live copy of the metadata, following a controller's `Watch`.
#[derive(Debug, Clone)]
pub struct Mirror {
    state: Arc<RwLock<MetadataState>>,
    applied: watch::Receiver<u64>,
    task: Arc<JoinHandle<()>>,
}

impl Mirror {
    /// Starts following the controllers of `client` from the beginning.
    pub fn start(client: ControllerClient) -> Mirror {
        Mirror::start_with_parts(client, SNAPSHOT_PART_BYTES)
    }

    /// [`Mirror::start`], taking state snapshots in parts of at most
    /// `part_bytes` (0: in one message, as watchers before parts did).
    pub fn start_with_parts(client: ControllerClient, part_bytes: u32) -> Mirror {
        let state = Arc::new(RwLock::new(MetadataState::default()));
        let (tx, applied) = watch::channel(0);
        let task = tokio::spawn(follow(client, state.clone(), tx, part_bytes));
        Mirror {
            state,
            applied,
            task: Arc::new(task),
        }
    }

    /// Runs `f` on the mirrored state.
    pub fn read<R>(&self, f: impl FnOnce(&MetadataState) -> R) -> R {
        f(&self.state.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// The log index the mirrored state includes everything up to.
    pub fn applied(&self) -> u64 {
        *self.applied.borrow()
    }

    /// Changes whenever the mirror applies something.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.applied.clone()
    }

    /// Waits until the mirror has applied `index` (e.g. the index a
    /// proposal committed at, to read one's own writes).
    pub async fn wait_for(&self, index: u64, timeout: Duration) -> bool {
        let mut rx = self.applied.clone();
        tokio::time::timeout(timeout, rx.wait_for(|applied| *applied >= index))
            .await
            .is_ok_and(|r| r.is_ok())
    }
}

impl Drop for Mirror {
    fn drop(&mut self) {
        if Arc::strong_count(&self.task) == 1 {
            self.task.abort();
        }
    }
}

/// The mirror's task: watch, apply, reconnect.
async fn follow(
    client: ControllerClient,
    state: Arc<RwLock<MetadataState>>,
    applied: watch::Sender<u64>,
    part_bytes: u32,
) {
    let mut pause = Duration::from_millis(10);
    loop {
        let after = *applied.borrow();
        match watch_once(&client, &state, &applied, after, part_bytes).await {
            Ok(()) => pause = Duration::from_millis(10),
            Err(e) => {
                tracing::debug!(error = %e, after, "metadata watch interrupted; reconnecting");
                client.set_leader(None);
            }
        }
        if applied.is_closed() {
            return;
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(500));
    }
}

async fn watch_once(
    client: &ControllerClient,
    state: &RwLock<MetadataState>,
    applied: &watch::Sender<u64>,
    after: u64,
    part_bytes: u32,
) -> Result<(), ClientError> {
    let addr = client.target()?;
    let mut stream = client
        .metadata(&addr)?
        .watch(WatchRequest {
            after_index: after,
            snapshot_part_bytes: part_bytes,
        })
        .await
        .map_err(refused)?
        .into_inner();
    let mut parts = SnapshotParts::default();
    loop {
        let next = tokio::time::timeout(WATCH_IDLE, stream.message())
            .await
            .map_err(|_| ClientError::Unavailable {
                waited: WATCH_IDLE,
                attempts: 1,
                last: format!("{addr}: the watch stream went silent"),
            })?;
        let Some(event) = next.map_err(refused)? else {
            return Ok(());
        };
        let event = event.event;
        if parts.started() && !matches!(event, Some(watch_event::Event::SnapshotPart(_))) {
            return Err(ClientError::Decode(
                "the watch sent another event in the middle of a state snapshot".into(),
            ));
        }
        match event {
            Some(watch_event::Event::Snapshot(s)) => {
                install(state, applied, s.index, s.state).await?;
            }
            Some(watch_event::Event::SnapshotPart(part)) => {
                if let Some((index, whole)) = parts.add(part)? {
                    install(state, applied, index, whole).await?;
                }
            }
            Some(watch_event::Event::Entry(e)) => {
                let current = *applied.borrow();
                if e.index != current + 1 {
                    return Err(ClientError::Decode(format!(
                        "watch skipped from {current} to {}",
                        e.index
                    )));
                }
                if !e.command.is_empty() {
                    let command: Command = serde_json::from_slice(&e.command)
                        .map_err(|e| ClientError::Decode(e.to_string()))?;
                    let mut guard = state.write().unwrap_or_else(|p| p.into_inner());
                    // A refusal is the controllers' refusal too: the state
                    // stays as theirs did.
                    let _ = apply(&mut guard, e.index, &command);
                }
                applied.send_replace(e.index);
            }
            // Cut off or electing: its stream may be stale; follow another
            // controller.
            Some(watch_event::Event::Heartbeat(beat)) if beat.leader_id.is_none() => {
                return Err(ClientError::Unavailable {
                    waited: Duration::ZERO,
                    attempts: 1,
                    last: format!("{addr} knows no leader"),
                });
            }
            Some(watch_event::Event::Heartbeat(_)) => {}
            None => {}
        }
    }
}

/// The size of the parts a [`Mirror`] takes state snapshots in.
pub const SNAPSHOT_PART_BYTES: u32 = 4 * 1024 * 1024;

/// Replaces the mirrored state with the snapshot `bytes` at `index`.
/// Decoding (most of a second at 100,000 partitions) and dropping the old
/// state run on the blocking pool, so the broker's reactor keeps serving and
/// readers of the state wait only for the swap.
async fn install(
    state: &RwLock<MetadataState>,
    applied: &watch::Sender<u64>,
    index: u64,
    bytes: Bytes,
) -> Result<(), ClientError> {
    let fresh: MetadataState = tokio::task::spawn_blocking(move || serde_json::from_slice(&bytes))
        .await
        .map_err(|e| ClientError::Decode(e.to_string()))?
        .map_err(|e| ClientError::Decode(format!("state snapshot at {index}: {e}")))?;
    let old = std::mem::replace(
        &mut *state.write().unwrap_or_else(|p| p.into_inner()),
        fresh,
    );
    applied.send_replace(index);
    tokio::task::spawn_blocking(move || drop(old));
    Ok(())
}

/// A state snapshot being received in parts.
#[derive(Default)]
struct SnapshotParts {
    /// The snapshot's index and total size, and the bytes so far.
    receiving: Option<(u64, u64, BytesMut)>,
}

impl SnapshotParts {
    fn started(&self) -> bool {
        self.receiving.is_some()
    }

    /// Adds `part`; the index and the whole state once it is complete.
    /// Parts out of order, of another snapshot, or past the total are a
    /// protocol error (the watch restarts).
    fn add(&mut self, part: StateSnapshotPart) -> Result<Option<(u64, Bytes)>, ClientError> {
        let bad = |what: String| ClientError::Decode(format!("state snapshot part: {what}"));
        let (index, total, buf) = match &mut self.receiving {
            None if part.offset == 0 => {
                // Grown as parts arrive, so memory follows the bytes
                // received, not the total the sender claims.
                let first = BytesMut::with_capacity(part.total.min(64 << 20) as usize);
                self.receiving.insert((part.index, part.total, first))
            }
            None => return Err(bad(format!("the first part starts at {}", part.offset))),
            Some(receiving) => receiving,
        };
        if part.index != *index || part.total != *total || part.offset != buf.len() as u64 {
            return Err(bad(format!(
                "expected index {index}, total {total}, offset {}; got {}, {}, {}",
                buf.len(),
                part.index,
                part.total,
                part.offset
            )));
        }
        if part.offset + part.data.len() as u64 > *total {
            return Err(bad(format!(
                "{} bytes at {} run past the total {total}",
                part.data.len(),
                part.offset
            )));
        }
        buf.extend_from_slice(&part.data);
        if (buf.len() as u64) < *total {
            return Ok(None);
        }
        let (index, _, whole) = self.receiving.take().expect("receiving");
        Ok(Some((index, whole.freeze())))
    }
}

/// A watch stream silent this long is given up (controllers send a
/// heartbeat every second).
const WATCH_IDLE: Duration = Duration::from_secs(3);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transport_failures_are_retried_and_refusals_are_not() {
        let torn = tonic::Status::internal("h2 protocol error: http2 error");
        assert!(classify(&torn).is_some());
        assert!(classify(&tonic::Status::unavailable("connection refused")).is_some());
        assert!(classify(&tonic::Status::internal("state machine failed")).is_none());
        let mut refused = tonic::Status::failed_precondition("cannot drain broker 1");
        refused
            .metadata_mut()
            .insert(REFUSED_HEADER, "CannotDrain".parse().unwrap());
        assert!(classify(&refused).is_none());
    }

    fn part(index: u64, total: u64, offset: u64, data: &'static [u8]) -> StateSnapshotPart {
        StateSnapshotPart {
            index,
            total,
            offset,
            data: Bytes::from_static(data),
        }
    }

    #[test]
    fn snapshot_parts_join_in_order_and_anything_else_is_refused() {
        let mut parts = SnapshotParts::default();
        assert_eq!(parts.add(part(7, 6, 0, b"ab")).unwrap(), None);
        assert!(parts.started());
        assert_eq!(parts.add(part(7, 6, 2, b"cd")).unwrap(), None);
        let (index, whole) = parts.add(part(7, 6, 4, b"ef")).unwrap().unwrap();
        assert_eq!((index, &whole[..]), (7, &b"abcdef"[..]));
        assert!(!parts.started());
        // An empty state is one empty part.
        assert_eq!(
            parts.add(part(8, 0, 0, b"")).unwrap(),
            Some((8, Bytes::new()))
        );

        let refused = |steps: &[StateSnapshotPart]| {
            let mut parts = SnapshotParts::default();
            let mut last = Ok(None);
            for p in steps {
                last = parts.add(p.clone());
                if last.is_err() {
                    break;
                }
            }
            matches!(last, Err(ClientError::Decode(_)))
        };
        let ab = || part(7, 6, 0, b"ab");
        for (steps, why) in [
            (vec![part(7, 6, 2, b"cd")], "not starting at 0"),
            (vec![ab(), part(7, 6, 4, b"ef")], "a gap"),
            (vec![ab(), ab()], "a repeat"),
            (vec![ab(), part(8, 6, 2, b"cd")], "another index"),
            (vec![ab(), part(7, 9, 2, b"cd")], "another total"),
            (vec![part(7, 3, 0, b"abcd")], "past the total"),
        ] {
            assert!(refused(&steps), "{why}");
        }
        // A total larger than one message may carry is fine in parts.
        let mut parts = SnapshotParts::default();
        assert_eq!(parts.add(part(7, 2 << 30, 0, b"ab")).unwrap(), None);
    }
}
