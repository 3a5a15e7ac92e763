//! The `Admin` service: cluster status and membership changes, and the
//! typed topic and placement changes, each mapped onto the same [`Command`]
//! `Propose` carries (one code path for every change of the state: the pure
//! apply), with refusals mapped to status codes by [`super::translation`].

use std::collections::{BTreeMap, BTreeSet};

use openraft::ChangeMembers;
use tonic::{Code, Request, Response, Status};
use uuid::Uuid;

use super::super::proto::admin_server::Admin;
use super::super::proto::{
    AddControllerRequest, Broker, ClusterStatus, ClusterStatusRequest, Controller,
    CreateTopicReply, CreateTopicRequest, DeleteTopicReply, DeleteTopicRequest, DrainBrokerRequest,
    MembershipReply, MoveProgress, MoveProgressRequest, MovesReply, ReassignRequest,
    RebalanceRequest, RemoveControllerRequest, Session,
};
use super::translation::{move_progress, refusal, refused, resolve_moves, topic_configs};
use super::{session_of, write_error, ApiService};
use crate::model::{Command, Outcome};
use crate::raft::{ControllerNode, NodeId, Proposal};

impl ApiService {
    /// Commits `command` under the request's session (answered from memory
    /// when the call is a retry) and returns its metadata sequence number
    /// and outcome; the model's refusal becomes the status.
    async fn propose_typed(
        &self,
        session: Option<&Session>,
        command: Command,
    ) -> Result<(u64, Outcome), Status> {
        let session = match session {
            Some(s) => session_of(&s.client_id, s.seq, s.floor)?,
            None => None,
        };
        let bytes = serde_json::to_vec(&command).map_or(64, |json| json.len());
        let answered = self.commit(Proposal { session, command }, bytes).await?;
        match answered.response {
            Ok(outcome) => Ok((answered.seq, outcome)),
            Err(e) => Err(refusal(&e)),
        }
    }

    /// A moves command's answer.
    async fn propose_moves(
        &self,
        session: Option<&Session>,
        command: Command,
    ) -> Result<Response<MovesReply>, Status> {
        let what = format!("{command:?}");
        match self.propose_typed(session, command).await? {
            (index, Outcome::MovesRequested { requested }) => {
                tracing::info!(command = %what, requested, index, "moves requested");
                Ok(Response::new(MovesReply { requested, index }))
            }
            (_, other) => Err(unexpected(&other)),
        }
    }
}

fn unexpected(outcome: &Outcome) -> Status {
    Status::internal(format!("unexpected outcome {outcome:?}"))
}

#[tonic::async_trait]
impl Admin for ApiService {
    async fn get_cluster_status(
        &self,
        _request: Request<ClusterStatusRequest>,
    ) -> Result<Response<ClusterStatus>, Status> {
        let metrics = self.raft.metrics().borrow().clone();
        let membership = metrics.membership_config.membership();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        let nodes: BTreeMap<NodeId, ControllerNode> = membership
            .nodes()
            .map(|(id, node)| (*id, node.clone()))
            .collect();
        let matched = metrics.replication.clone().unwrap_or_default();
        let controllers = nodes
            .iter()
            .map(|(id, node)| Controller {
                id: *id,
                raft_address: node.raft_addr.clone(),
                metadata_address: node.api_addr.clone(),
                voter: voters.contains(id),
                matched_index: matched.get(id).and_then(|m| m.map(|log| log.index)),
            })
            .collect();
        let leader_address = metrics
            .current_leader
            .and_then(|id| nodes.get(&id))
            .map(|n| n.api_addr.clone())
            .unwrap_or_default();
        let (brokers, topics, partitions) = self.sm.read(|state, _| {
            let brokers = state
                .brokers
                .values()
                .map(|b| Broker {
                    id: b.id,
                    host: b.host.clone(),
                    port: b.port,
                    rack: b.rack.clone().unwrap_or_default(),
                })
                .collect::<Vec<_>>();
            let partitions = state
                .topics
                .values()
                .map(|t| t.partitions.len() as u64)
                .sum::<u64>();
            (brokers, state.topics.len() as u32, partitions)
        });
        Ok(Response::new(ClusterStatus {
            node_id: self.id,
            leader_id: metrics.current_leader,
            leader_address,
            term: metrics.current_term,
            last_applied: metrics.last_applied.map_or(0, |l| l.index),
            controllers,
            brokers,
            topics,
            partitions,
        }))
    }

    async fn add_controller(
        &self,
        request: Request<AddControllerRequest>,
    ) -> Result<Response<MembershipReply>, Status> {
        let req = request.into_inner();
        for (what, addr) in [
            ("raft_address", &req.raft_address),
            ("metadata_address", &req.metadata_address),
        ] {
            if addr.parse::<std::net::SocketAddr>().is_err() && !addr.contains(':') {
                return Err(Status::invalid_argument(format!(
                    "{what} {addr:?} must be host:port"
                )));
            }
        }
        if self.voters().contains(&req.id) {
            return Err(refused(
                Code::AlreadyExists,
                "VoterExists",
                format!("controller {} is already a voter", req.id),
            ));
        }
        let node = ControllerNode::new(req.raft_address, req.metadata_address);
        // As a learner first, blocking until it caught up, so that the
        // quorum never waits for a voter that has yet to read the log.
        self.raft
            .add_learner(req.id, node, true)
            .await
            .map_err(|e| write_error(self.id, e))?;
        let written = self
            .raft
            .change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([req.id])), false)
            .await
            .map_err(|e| write_error(self.id, e))?;
        Ok(Response::new(MembershipReply {
            voters: self.voters(),
            index: written.log_id.index,
        }))
    }

    async fn remove_controller(
        &self,
        request: Request<RemoveControllerRequest>,
    ) -> Result<Response<MembershipReply>, Status> {
        let id = request.into_inner().id;
        let voters = self.voters();
        if !voters.contains(&id) {
            return Err(refused(
                Code::NotFound,
                "UnknownVoter",
                format!("controller {id} is not a voter"),
            ));
        }
        if voters.len() == 1 {
            return Err(refused(
                Code::FailedPrecondition,
                "LastVoter",
                "cannot remove the last voter; add another controller first",
            ));
        }
        let written = self
            .raft
            .change_membership(ChangeMembers::RemoveVoters(BTreeSet::from([id])), false)
            .await
            .map_err(|e| write_error(self.id, e))?;
        Ok(Response::new(MembershipReply {
            voters: self.voters(),
            index: written.log_id.index,
        }))
    }

    async fn create_topic(
        &self,
        request: Request<CreateTopicRequest>,
    ) -> Result<Response<CreateTopicReply>, Status> {
        let req = request.into_inner();
        let command = Command::CreateTopic {
            name: req.name.clone(),
            // Chosen here, once: the command in the log carries it, so every
            // replica agrees, and a retry is answered the first id.
            id: Uuid::new_v4(),
            partitions: req.partitions,
            configs: topic_configs(&req.configs)?,
            leader: -1,
        };
        match self.propose_typed(req.session.as_ref(), command).await? {
            (index, Outcome::TopicCreated { id }) => {
                tracing::info!(topic = %req.name, %id, partitions = req.partitions, "topic created");
                Ok(Response::new(CreateTopicReply {
                    topic_id: id.to_string(),
                    index,
                }))
            }
            (_, other) => Err(unexpected(&other)),
        }
    }

    async fn delete_topic(
        &self,
        request: Request<DeleteTopicRequest>,
    ) -> Result<Response<DeleteTopicReply>, Status> {
        let req = request.into_inner();
        let command = Command::DeleteTopic {
            name: req.name.clone(),
        };
        match self.propose_typed(req.session.as_ref(), command).await? {
            (index, Outcome::ObjectsReleased { keys }) => {
                tracing::info!(topic = %req.name, released = keys.len(), "topic deleted");
                Ok(Response::new(DeleteTopicReply {
                    released_objects: keys,
                    index,
                }))
            }
            (_, other) => Err(unexpected(&other)),
        }
    }

    async fn reassign(
        &self,
        request: Request<ReassignRequest>,
    ) -> Result<Response<MovesReply>, Status> {
        let req = request.into_inner();
        // Names are resolved against a state that includes every change
        // committed before this call (a topic just created is found).
        self.linearizable().await?;
        let moves = self.sm.read(|state, _| resolve_moves(state, &req.moves))?;
        self.propose_moves(req.session.as_ref(), Command::RequestMoves { moves })
            .await
    }

    async fn drain_broker(
        &self,
        request: Request<DrainBrokerRequest>,
    ) -> Result<Response<MovesReply>, Status> {
        let req = request.into_inner();
        if req.broker_id < 0 {
            return Err(Status::invalid_argument(format!(
                "broker_id {} is not a broker id (ids are 0 or more)",
                req.broker_id
            )));
        }
        let command = Command::DrainBroker { id: req.broker_id };
        self.propose_moves(req.session.as_ref(), command).await
    }

    async fn rebalance(
        &self,
        request: Request<RebalanceRequest>,
    ) -> Result<Response<MovesReply>, Status> {
        let req = request.into_inner();
        self.propose_moves(req.session.as_ref(), Command::Rebalance)
            .await
    }

    async fn get_move_progress(
        &self,
        request: Request<MoveProgressRequest>,
    ) -> Result<Response<MoveProgress>, Status> {
        let req = request.into_inner();
        self.linearizable().await?;
        let progress = self
            .sm
            .read_seq(|state, seq| move_progress(state, seq, &req))?;
        Ok(Response::new(progress))
    }
}
