//! The typed `Admin` calls of [`ControllerClient`]: topics, moves, drains,
//! rebalances and their progress.
//!
//! Contract: a call that changes the state is applied exactly once or fails
//! (it carries a session, like [`ControllerClient::propose`], and is retried
//! with the same number across lost answers and leader changes). A refusal
//! of the metadata model is [`ClientError::Refused`] with the status code
//! the controller chose (`NOT_FOUND`, `ALREADY_EXISTS`, `INVALID_ARGUMENT`,
//! `FAILED_PRECONDITION`) and its message; it is never retried.

use std::collections::BTreeMap;

use super::super::proto::{
    CreateTopicReply, CreateTopicRequest, DeleteTopicReply, DeleteTopicRequest, DrainBrokerRequest,
    MoveProgress, MoveProgressRequest, MovesReply, PartitionMove, ReassignRequest,
    RebalanceRequest,
};
use super::{ClientError, ControllerClient};

impl ControllerClient {
    /// Creates topic `name` with `partitions` partitions placed on the
    /// least-loaded live brokers; answers its id.
    pub async fn create_topic(
        &self,
        name: &str,
        partitions: i32,
        configs: &BTreeMap<String, String>,
    ) -> Result<CreateTopicReply, ClientError> {
        self.with_session(|addr, session| {
            let client = self.admin(&addr);
            let request = CreateTopicRequest {
                name: name.to_owned(),
                partitions,
                configs: configs.clone().into_iter().collect(),
                session: Some(session),
            };
            async move { Ok(client?.create_topic(request).await?.into_inner()) }
        })
        .await
    }

    /// Deletes topic `name`; answers the objects nothing names any more.
    pub async fn delete_topic(&self, name: &str) -> Result<DeleteTopicReply, ClientError> {
        self.with_session(|addr, session| {
            let client = self.admin(&addr);
            let request = DeleteTopicRequest {
                name: name.to_owned(),
                session: Some(session),
            };
            async move { Ok(client?.delete_topic(request).await?.into_inner()) }
        })
        .await
    }

    /// Requests these moves (a move to the current leader cancels one).
    pub async fn reassign(&self, moves: &[PartitionMove]) -> Result<MovesReply, ClientError> {
        self.with_session(|addr, session| {
            let client = self.admin(&addr);
            let request = ReassignRequest {
                moves: moves.to_vec(),
                session: Some(session),
            };
            async move { Ok(client?.reassign(request).await?.into_inner()) }
        })
        .await
    }

    /// Drains broker `id`: every partition it leads moves away.
    pub async fn drain_broker(&self, id: i32) -> Result<MovesReply, ClientError> {
        self.with_session(|addr, session| {
            let client = self.admin(&addr);
            let request = DrainBrokerRequest {
                broker_id: id,
                session: Some(session),
            };
            async move { Ok(client?.drain_broker(request).await?.into_inner()) }
        })
        .await
    }

    /// Evens out the load the live brokers lead.
    pub async fn rebalance(&self) -> Result<MovesReply, ClientError> {
        self.with_session(|addr, session| {
            let client = self.admin(&addr);
            let request = RebalanceRequest {
                session: Some(session),
            };
            async move { Ok(client?.rebalance(request).await?.into_inner()) }
        })
        .await
    }

    /// The pending moves and the brokers' drain states (a linearizable
    /// read at the leader).
    pub async fn move_progress(
        &self,
        request: &MoveProgressRequest,
    ) -> Result<MoveProgress, ClientError> {
        self.with_retries(true, |addr| {
            let client = self.admin(&addr);
            let request = request.clone();
            async move { Ok(client?.get_move_progress(request).await?.into_inner()) }
        })
        .await
    }
}
