//! The controllers' gRPC servers: `RaftPeer` (Raft traffic, on the Raft
//! port), `Metadata` and `Admin` (on the metadata port).
//!
//! Bad input is answered, never panicked on: undecodable JSON or ids are
//! `INVALID_ARGUMENT`; a refused command is a normal answer (the outcome's
//! `Err`), decided by the pure apply, so it cannot corrupt the state. A call
//! only the leader serves answers `FAILED_PRECONDITION` with the leader hint
//! ([`super::LEADER_ID_HEADER`], [`super::LEADER_ADDRESS_HEADER`]); a
//! controller that cannot reach a quorum or is shutting down answers
//! `UNAVAILABLE`.

use std::pin::Pin;

use openraft::error::{CheckIsLeaderError, ClientWriteError, ForwardToLeader, RaftError};
use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use super::proto::metadata_server::Metadata;
use super::proto::raft_peer_server::RaftPeer;
use super::proto::{
    watch_event, AppliedEntry, HeartbeatReply, HeartbeatRequest, ProposeReply, ProposeRequest,
    RaftPayload, ReadStateRequest, StateSnapshot, StateSnapshotPart, WatchEvent, WatchHeartbeat,
    WatchRequest,
};
use super::{LEADER_ADDRESS_HEADER, LEADER_ID_HEADER};
use crate::model::{decide, Command};
use crate::raft::{
    Answered, Batch, ControllerNode, FeedRead, NodeId, Proposal, Raft, SessionId, StateMachine,
    TypeConfig,
};

/// Proposals committed in one Raft entry at most.
const MAX_BATCH: usize = 1_024;
/// Bytes of commands (as JSON) in one Raft entry at most (a larger single
/// command goes alone).
const MAX_BATCH_BYTES: usize = 1 << 20;
/// Batches being committed at once; while they are, new proposals gather
/// into the next batch.
const BATCHES_IN_FLIGHT: usize = 2;
/// Proposals waiting for a batch at most (back-pressure on clients).
const PROPOSAL_QUEUE: usize = 16_384;

/// A quiet watch stream sends a heartbeat this often.
const WATCH_HEARTBEAT: std::time::Duration = std::time::Duration::from_secs(1);

/// Entries sent to a watcher per read of the feed.
const WATCH_BATCH: usize = 256;
/// Events buffered per watcher before the stream applies back-pressure.
const WATCH_BUFFER: usize = 1_024;

mod admin;
mod balancer;
pub mod translation;

pub use balancer::BalancerConfig;

/// Serves `RaftPeer`: openraft's RPCs from the other controllers.
#[derive(Clone)]
pub struct PeerService {
    raft: Raft,
}

impl PeerService {
    pub fn new(raft: Raft) -> PeerService {
        PeerService { raft }
    }
}

fn decode<T: DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T, Status> {
    serde_json::from_slice(bytes)
        .map_err(|e| Status::invalid_argument(format!("undecodable {what}: {e}")))
}

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, Status> {
    serde_json::to_vec(value).map_err(|e| Status::internal(format!("cannot encode reply: {e}")))
}

fn payload<T: Serialize>(value: &T) -> Result<Response<RaftPayload>, Status> {
    Ok(Response::new(RaftPayload {
        json: encode(value)?,
        data: Vec::new(),
    }))
}

#[tonic::async_trait]
impl RaftPeer for PeerService {
    async fn append_entries(
        &self,
        request: Request<RaftPayload>,
    ) -> Result<Response<RaftPayload>, Status> {
        let rpc: AppendEntriesRequest<TypeConfig> =
            decode(&request.into_inner().json, "AppendEntries request")?;
        payload(&self.raft.append_entries(rpc).await)
    }

    async fn vote(&self, request: Request<RaftPayload>) -> Result<Response<RaftPayload>, Status> {
        let rpc: VoteRequest<NodeId> = decode(&request.into_inner().json, "Vote request")?;
        payload(&self.raft.vote(rpc).await)
    }

    async fn install_snapshot(
        &self,
        request: Request<RaftPayload>,
    ) -> Result<Response<RaftPayload>, Status> {
        let RaftPayload { json, data } = request.into_inner();
        let mut rpc: InstallSnapshotRequest<TypeConfig> = decode(&json, "InstallSnapshot request")?;
        rpc.data = data;
        payload(&self.raft.install_snapshot(rpc).await)
    }
}

/// The `FAILED_PRECONDITION` a follower answers, with the leader hint.
pub(crate) fn not_leader(me: NodeId, forward: &ForwardToLeader<NodeId, ControllerNode>) -> Status {
    let message = match (&forward.leader_id, &forward.leader_node) {
        (Some(id), Some(node)) => format!(
            "controller {me} is not the leader; controller {id} at {} is",
            node.api_addr
        ),
        _ => format!("controller {me} is not the leader, and knows of no leader yet; retry"),
    };
    let mut status = Status::failed_precondition(message);
    if let (Some(id), Some(node)) = (&forward.leader_id, &forward.leader_node) {
        let meta = status.metadata_mut();
        if let Ok(v) = id.to_string().parse() {
            meta.insert(LEADER_ID_HEADER, v);
        }
        if let Ok(v) = node.api_addr.parse() {
            meta.insert(LEADER_ADDRESS_HEADER, v);
        }
    }
    status
}

/// The session of a proposal: none for an empty client id, else checked.
pub(crate) fn session_of(
    client_id: &[u8],
    seq: u64,
    floor: u64,
) -> Result<Option<SessionId>, Status> {
    if client_id.is_empty() {
        return Ok(None);
    }
    let client = Uuid::from_slice(client_id)
        .map_err(|e| Status::invalid_argument(format!("client_id must be a 16-byte UUID: {e}")))?;
    if floor > seq.saturating_add(1) {
        return Err(Status::invalid_argument(format!(
            "floor {floor} is above seq {seq} + 1: a client cannot have been answered a proposal it has not made"
        )));
    }
    Ok(Some(SessionId { client, seq, floor }))
}

fn write_error(
    me: NodeId,
    e: RaftError<NodeId, ClientWriteError<NodeId, ControllerNode>>,
) -> Status {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => not_leader(me, &f),
        RaftError::APIError(ClientWriteError::ChangeMembershipError(e)) => {
            Status::failed_precondition(format!("membership change refused: {e}"))
        }
        RaftError::Fatal(f) => Status::unavailable(format!("controller {me} is stopping: {f}")),
    }
}

/// Broker leases, kept by the leader in memory (a new leader starts every
/// lease afresh, so a leader change never fences a live broker).
#[derive(Debug, Clone, Copy)]
pub struct LeaseConfig {
    /// How long a renewal lets a broker acknowledge writes.
    pub lease: std::time::Duration,
    /// Extra time the leader waits past a lease before fencing: covers the
    /// renewal's transit and clock-rate differences.
    pub grace: std::time::Duration,
}

impl Default for LeaseConfig {
    fn default() -> LeaseConfig {
        LeaseConfig {
            lease: std::time::Duration::from_secs(5),
            grace: std::time::Duration::from_secs(1),
        }
    }
}

/// Last renewal received per broker: `(epoch, when)`.
type LeaseTable = std::sync::Mutex<std::collections::HashMap<i32, (i64, tokio::time::Instant)>>;

/// While this controller leads: fences every live broker whose lease
/// lapsed (no renewal for `lease + grace`), by proposing `FenceBroker`.
async fn run_lease_reaper(
    service: ApiService,
    config: LeaseConfig,
    mut stopping: tokio::sync::watch::Receiver<bool>,
) {
    // Checked often: a lapsed lease is fenced at most a tenth of a lease late.
    let tick = (config.lease / 10).max(std::time::Duration::from_millis(10));
    loop {
        tokio::select! {
            () = tokio::time::sleep(tick) => {}
            _ = stopping.wait_for(|s| *s) => return,
        }
        let leading = service.raft.metrics().borrow().current_leader == Some(service.id);
        let lapsed = service.lapsed_leases(leading, &config);
        for (id, epoch) in lapsed {
            tracing::warn!(broker = id, epoch, lease = ?config.lease, "broker lease lapsed; fencing it");
            let (reply, _answer) = oneshot::channel();
            let (proposal, bytes) = service.decided(
                Proposal {
                    session: None,
                    command: Command::FenceBroker { id, epoch },
                },
                64,
            );
            let pending = Pending {
                proposal,
                bytes,
                reply,
            };
            if service.proposals.send(pending).await.is_err() {
                return;
            }
        }
    }
}

/// A proposal waiting for its batch.
struct Pending {
    proposal: Proposal,
    bytes: usize,
    reply: oneshot::Sender<Result<Answered, Status>>,
}

/// Gathers concurrent proposals into batches, one Raft entry each, so that
/// many proposals share one log write, one fsync and one replication round:
/// a batch is cut from whatever waits when a commit slot frees up.
async fn run_batcher(id: NodeId, raft: Raft, mut rx: mpsc::Receiver<Pending>) {
    let slots = Arc::new(Semaphore::new(BATCHES_IN_FLIGHT));
    while let Some(first) = rx.recv().await {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let mut bytes = first.bytes;
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH && bytes < MAX_BATCH_BYTES {
            match rx.try_recv() {
                Ok(next) => {
                    bytes += next.bytes;
                    batch.push(next);
                }
                Err(_) => break,
            }
        }
        let raft = raft.clone();
        tokio::spawn(async move {
            let (proposals, replies): (Vec<Proposal>, Vec<_>) =
                batch.into_iter().map(|p| (p.proposal, p.reply)).unzip();
            match raft.client_write(Batch(proposals)).await {
                Ok(written) => {
                    for (reply, answered) in replies.into_iter().zip(written.data) {
                        let _ = reply.send(Ok(answered));
                    }
                }
                Err(e) => {
                    let status = write_error(id, e);
                    for reply in replies {
                        let _ = reply.send(Err(status.clone()));
                    }
                }
            }
            drop(slot);
        });
    }
}

/// Serves `Metadata` and `Admin`.
#[derive(Clone)]
pub struct ApiService {
    id: NodeId,
    raft: Raft,
    sm: StateMachine,
    proposals: mpsc::Sender<Pending>,
    /// Turns true when the controller stops: watch streams end then.
    stopping: tokio::sync::watch::Receiver<bool>,
    leases: Arc<LeaseTable>,
    lease_config: LeaseConfig,
}

impl ApiService {
    /// The services of controller `id`; starts its proposal batcher, broker
    /// lease reaper and balancer (on the current tokio runtime). Watch
    /// streams, the reaper and the balancer end when `stopping` turns true.
    pub fn new(
        id: NodeId,
        raft: Raft,
        sm: StateMachine,
        stopping: tokio::sync::watch::Receiver<bool>,
        lease_config: LeaseConfig,
        balancer: BalancerConfig,
    ) -> ApiService {
        let (proposals, rx) = mpsc::channel(PROPOSAL_QUEUE);
        tokio::spawn(run_batcher(id, raft.clone(), rx));
        let service = ApiService {
            id,
            raft,
            sm,
            proposals,
            stopping: stopping.clone(),
            leases: Arc::new(LeaseTable::default()),
            lease_config,
        };
        tokio::spawn(run_lease_reaper(
            service.clone(),
            lease_config,
            stopping.clone(),
        ));
        tokio::spawn(balancer::run_balancer(service.clone(), balancer, stopping));
        service
    }

    /// The live brokers whose lease lapsed, as of now; restarts their lease
    /// clock so that a fence is proposed again only a lease later. Forgets
    /// every lease when `leading` is false.
    fn lapsed_leases(&self, leading: bool, config: &LeaseConfig) -> Vec<(i32, i64)> {
        let mut table = self.leases.lock().unwrap_or_else(|p| p.into_inner());
        if !leading {
            table.clear();
            return Vec::new();
        }
        let now = tokio::time::Instant::now();
        let live: Vec<(i32, i64)> = self.sm.read(|state, _| {
            state
                .brokers
                .values()
                .filter(|b| !b.fenced)
                .map(|b| (b.id, b.epoch))
                .collect()
        });
        let mut lapsed = Vec::new();
        for (id, epoch) in live {
            let entry = table.entry(id).or_insert((epoch, now));
            if entry.0 != epoch {
                // A new incarnation (or one this leader has not heard of
                // yet): its lease starts now.
                *entry = (epoch, now);
            }
            if now.duration_since(entry.1) > config.lease + config.grace {
                lapsed.push((id, epoch));
                entry.1 = now;
            }
        }
        lapsed
    }

    /// The hint a follower gives, from its own view of the cluster.
    fn forward(&self) -> ForwardToLeader<NodeId, ControllerNode> {
        let metrics = self.raft.metrics().borrow().clone();
        let leader_node = metrics.current_leader.and_then(|id| {
            metrics
                .membership_config
                .membership()
                .get_node(&id)
                .cloned()
        });
        ForwardToLeader {
            leader_id: metrics.current_leader,
            leader_node,
        }
    }

    /// The state as of now (`ReadState`, after a linearizable check).
    async fn current_state(&self) -> Result<StateSnapshot, Status> {
        let (index, state) = self.sm.state_json().await.map_err(encode_failed)?;
        Ok(StateSnapshot { index, state })
    }

    /// A state a watcher that fell behind restarts from, shared with the
    /// other watchers that need one.
    async fn watch_snapshot(&self) -> Result<StateSnapshot, Status> {
        let (index, state) = self.sm.watch_snapshot().await.map_err(encode_failed)?;
        Ok(StateSnapshot { index, state })
    }

    /// Commits one proposal (in the next batch) and returns its answer.
    async fn commit(&self, proposal: Proposal, bytes: usize) -> Result<Answered, Status> {
        let (reply, answer) = oneshot::channel();
        let (proposal, bytes) = self.decided(proposal, bytes);
        let pending = Pending {
            proposal,
            bytes,
            reply,
        };
        let stopping = || Status::unavailable(format!("controller {} is stopping", self.id));
        self.proposals.send(pending).await.map_err(|_| stopping())?;
        answer.await.map_err(|_| stopping())?
    }

    /// The proposal with its placement decided against this controller's
    /// state now (ADR 0013): the log carries the decisions, so every replica
    /// and broker mirror applies them alike, whatever its version's rules.
    /// Proposals that place nothing are returned as they are. Also returns
    /// the proposal's size for batching, `bytes` or more: a decision can
    /// make a command of a few bytes hundreds of KB (about 7 bytes per
    /// placed partition in the log).
    fn decided(&self, mut proposal: Proposal, bytes: usize) -> (Proposal, usize) {
        if !proposal.command.places() {
            return (proposal, bytes);
        }
        if let Some(command) = self.sm.read(|state, _| decide(state, &proposal.command)) {
            proposal.command = command;
        }
        let placed = match &proposal.command {
            Command::Decided { placed, .. } => placed.len(),
            _ => 0,
        };
        (proposal, bytes.max(64 + placed * 8))
    }

    /// Returns once this controller is known to lead (so its applied state
    /// includes everything committed before the call): a follower answers
    /// with the leader hint.
    async fn linearizable(&self) -> Result<(), Status> {
        match self.raft.ensure_linearizable().await {
            Ok(_) => Ok(()),
            Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f))) => {
                Err(not_leader(self.id, &f))
            }
            Err(RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(e))) => Err(
                Status::unavailable(format!("controller {} cannot reach a quorum: {e}", self.id)),
            ),
            Err(RaftError::Fatal(f)) => Err(Status::unavailable(format!(
                "controller {} is stopping: {f}",
                self.id
            ))),
        }
    }

    fn voters(&self) -> Vec<u64> {
        let metrics = self.raft.metrics().borrow().clone();
        metrics.membership_config.voter_ids().collect()
    }
}

/// Feeds one watcher from `after` on until it goes away or the controller
/// stops; a heartbeat every [`WATCH_HEARTBEAT`] while nothing happens.
async fn run_watch(
    service: ApiService,
    mut after: u64,
    part_bytes: u32,
    tx: mpsc::Sender<Result<WatchEvent, Status>>,
) {
    let mut applied = service.sm.subscribe();
    let mut stopping = service.stopping.clone();
    loop {
        applied.borrow_and_update();
        let events = match service.sm.feed_after(after, WATCH_BATCH) {
            FeedRead::Behind => match service.watch_snapshot().await {
                Ok(snapshot) => {
                    after = snapshot.index;
                    snapshot_events(snapshot, part_bytes)
                }
                Err(status) => {
                    let _ = tx.send(Err(status)).await;
                    return;
                }
            },
            FeedRead::Entries(entries) => entries
                .into_iter()
                .map(|e| {
                    after = e.index;
                    WatchEvent {
                        event: Some(watch_event::Event::Entry(AppliedEntry {
                            index: e.index,
                            command: e.command.map(|c| c.to_vec()).unwrap_or_default(),
                        })),
                    }
                })
                .collect(),
        };
        if events.is_empty() {
            enum Idle {
                Changed,
                Gone,
                Stopping,
                Quiet,
            }
            let idle = tokio::select! {
                changed = applied.changed() => if changed.is_ok() { Idle::Changed } else { Idle::Gone },
                () = tx.closed() => Idle::Gone,
                stop = stopping.wait_for(|s| *s) => if stop.is_ok() { Idle::Stopping } else { Idle::Gone },
                () = tokio::time::sleep(WATCH_HEARTBEAT) => Idle::Quiet,
            };
            match idle {
                Idle::Changed => {}
                Idle::Gone => return,
                Idle::Stopping => {
                    let stopped =
                        Status::unavailable(format!("controller {} is stopping", service.id));
                    let _ = tx.send(Err(stopped)).await;
                    return;
                }
                Idle::Quiet => {
                    let leader_id = service.raft.metrics().borrow().current_leader;
                    let beat = WatchEvent {
                        event: Some(watch_event::Event::Heartbeat(WatchHeartbeat {
                            index: after,
                            leader_id,
                        })),
                    };
                    if tx.send(Ok(beat)).await.is_err() {
                        return;
                    }
                }
            }
            continue;
        }
        for event in events {
            if tx.send(Ok(event)).await.is_err() {
                return;
            }
        }
    }
}

type WatchStream = Pin<Box<dyn tokio_stream::Stream<Item = Result<WatchEvent, Status>> + Send>>;

#[tonic::async_trait]
impl Metadata for ApiService {
    async fn heartbeat(
        &self,
        request: Request<HeartbeatRequest>,
    ) -> Result<Response<HeartbeatReply>, Status> {
        let HeartbeatRequest { broker_id, epoch } = request.into_inner();
        if self.raft.metrics().borrow().current_leader != Some(self.id) {
            return Err(not_leader(self.id, &self.forward()));
        }
        let live = self
            .sm
            .read(|state, _| state.brokers.get(&broker_id).map(|b| (b.epoch, b.fenced)));
        match live {
            None => Err(Status::not_found(format!(
                "broker {broker_id} is not registered; register it first"
            ))),
            Some((current, fenced)) if fenced || current != epoch => Err(Status::aborted(format!(
                "broker {broker_id} epoch {epoch} is fenced (current epoch {current}{}); \
                 stop acknowledging writes and register again",
                if fenced { ", fenced" } else { "" }
            ))),
            Some(_) => {
                self.leases
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(broker_id, (epoch, tokio::time::Instant::now()));
                Ok(Response::new(HeartbeatReply {
                    lease_ms: self.lease_config.lease.as_millis() as u64,
                }))
            }
        }
    }

    async fn propose(
        &self,
        request: Request<ProposeRequest>,
    ) -> Result<Response<ProposeReply>, Status> {
        let req = request.into_inner();
        let command: Command = decode(&req.command, "command")?;
        let session = session_of(&req.client_id, req.seq, req.floor)?;
        let answered = self
            .commit(Proposal { session, command }, req.command.len())
            .await?;
        Ok(Response::new(ProposeReply {
            index: answered.seq,
            outcome: encode(&answered.response)?,
        }))
    }

    type WatchStream = WatchStream;

    async fn watch(
        &self,
        request: Request<WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let request = request.into_inner();
        let (tx, rx) = mpsc::channel(WATCH_BUFFER);
        tokio::spawn(run_watch(
            self.clone(),
            request.after_index,
            request.snapshot_part_bytes,
            tx,
        ));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn read_state(
        &self,
        _request: Request<ReadStateRequest>,
    ) -> Result<Response<StateSnapshot>, Status> {
        self.linearizable().await?;
        Ok(Response::new(self.current_state().await?))
    }
}

fn encode_failed(e: std::io::Error) -> Status {
    Status::internal(format!("cannot encode the state: {e}"))
}

/// Smallest and largest state snapshot parts a watcher gets.
const SNAPSHOT_PART_BYTES: std::ops::RangeInclusive<usize> = 1024..=32 * 1024 * 1024;

/// A state snapshot as watch events: one `snapshot` when the watcher asked
/// for no parts (`part_bytes` 0), else `snapshot_part`s of at most
/// `part_bytes` (clamped to [`SNAPSHOT_PART_BYTES`]) that share the
/// snapshot's buffer.
fn snapshot_events(snapshot: StateSnapshot, part_bytes: u32) -> Vec<WatchEvent> {
    if part_bytes == 0 {
        return vec![WatchEvent {
            event: Some(watch_event::Event::Snapshot(snapshot)),
        }];
    }
    let part =
        (part_bytes as usize).clamp(*SNAPSHOT_PART_BYTES.start(), *SNAPSHOT_PART_BYTES.end());
    let total = snapshot.state.len();
    (0..total.max(1))
        .step_by(part)
        .map(|offset| WatchEvent {
            event: Some(watch_event::Event::SnapshotPart(StateSnapshotPart {
                index: snapshot.index,
                total: total as u64,
                offset: offset as u64,
                data: snapshot
                    .state
                    .slice(offset.min(total)..(offset + part).min(total)),
            })),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn parts(events: &[WatchEvent]) -> Vec<(u64, u64, u64, usize)> {
        events
            .iter()
            .map(|e| match &e.event {
                Some(watch_event::Event::SnapshotPart(p)) => {
                    (p.index, p.total, p.offset, p.data.len())
                }
                other => panic!("not a part: {other:?}"),
            })
            .collect()
    }

    #[test]
    fn snapshots_are_cut_into_parts_of_the_size_asked_for_within_bounds() {
        let state = Bytes::from(vec![b'x'; 2500]);
        let snapshot = || StateSnapshot {
            index: 9,
            state: state.clone(),
        };
        let whole = snapshot_events(snapshot(), 0);
        assert!(matches!(
            &whole[..],
            [WatchEvent { event: Some(watch_event::Event::Snapshot(s)) }] if s.state.len() == 2500
        ));
        assert_eq!(
            parts(&snapshot_events(snapshot(), 1000)),
            vec![
                (9, 2500, 0, 1024),
                (9, 2500, 1024, 1024),
                (9, 2500, 2048, 452)
            ]
        );
        assert_eq!(
            parts(&snapshot_events(snapshot(), 2500)),
            vec![(9, 2500, 0, 2500)]
        );
        assert_eq!(
            parts(&snapshot_events(snapshot(), u32::MAX)),
            vec![(9, 2500, 0, 2500)]
        );
        let empty = StateSnapshot {
            index: 3,
            state: Bytes::new(),
        };
        assert_eq!(parts(&snapshot_events(empty, 4096)), vec![(3, 0, 0, 0)]);
        // Large states: parts of at most 32 MiB, sharing the snapshot's buffer.
        let big = Bytes::from(vec![0u8; 70 << 20]);
        let events = snapshot_events(
            StateSnapshot {
                index: 1,
                state: big.clone(),
            },
            u32::MAX,
        );
        assert_eq!(parts(&events).iter().map(|p| p.3).max(), Some(32 << 20));
        let Some(watch_event::Event::SnapshotPart(first)) = &events[0].event else {
            unreachable!()
        };
        assert_eq!(first.data.as_ptr(), big.as_ptr());
    }
}
