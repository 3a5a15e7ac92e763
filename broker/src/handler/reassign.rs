//! AlterPartitionReassignments and ListPartitionReassignments, mapped onto
//! the controller's partition moves. A Floe partition has one replica, its
//! leader (the data is in object storage), so a reassignment names exactly
//! one broker: the partition's next leader. A move is pending until its old
//! leader has fenced it, committed its tail and handed it off; listing shows
//! it as Kafka does (replicas = old + new, adding = new, removing = old).

use std::collections::BTreeSet;

use floe_controller::model::{Command, MetadataState, Move, PartitionId};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::alter_partition_reassignments_response::{
    ReassignablePartitionResponse, ReassignableTopicResponse,
};
use kafka_protocol::messages::list_partition_reassignments_response::{
    OngoingPartitionReassignment, OngoingTopicReassignment,
};
use kafka_protocol::messages::{
    AlterPartitionReassignmentsRequest, AlterPartitionReassignmentsResponse, BrokerId,
    ListPartitionReassignmentsRequest, ListPartitionReassignmentsResponse,
};

use super::{code, str_bytes};
use crate::broker::Broker;

/// A refused change: the Kafka error and why.
type Refusal = (ResponseError, String);

/// One requested change, checked against the metadata: a move (or, with
/// `to` = the current leader, a cancellation), or why it cannot be.
fn check(
    s: &MetadataState,
    topic: &str,
    partition: i32,
    replicas: Option<&[BrokerId]>,
) -> Result<Move, Refusal> {
    let t = s.topics.get(topic).ok_or((
        ResponseError::UnknownTopicOrPartition,
        format!("topic {topic:?} does not exist"),
    ))?;
    let p = usize::try_from(partition)
        .ok()
        .and_then(|i| t.partitions.get(i))
        .ok_or((
            ResponseError::UnknownTopicOrPartition,
            format!("topic {topic:?} has no partition {partition}"),
        ))?;
    let id = PartitionId {
        topic_id: t.id,
        partition,
    };
    let to = match replicas {
        // Cancel: the partition stays with its leader.
        None => {
            if p.target.is_none() {
                return Err((
                    ResponseError::NoReassignmentInProgress,
                    "no reassignment of this partition is in progress".into(),
                ));
            }
            p.leader
        }
        Some([one]) => one.0,
        Some(other) => {
            return Err((
                ResponseError::InvalidReplicaAssignment,
                format!(
                    "a Floe partition has exactly one replica, its leader (the data is in \
                     object storage): name one broker, not {}",
                    other.len()
                ),
            ))
        }
    };
    let live = s.brokers.get(&to).is_some_and(|b| !b.fenced && !b.draining);
    if to != p.leader && !live {
        return Err((
            ResponseError::InvalidReplicaAssignment,
            format!("broker {to} is not a live broker (unregistered, fenced or draining)"),
        ));
    }
    Ok(Move { partition: id, to })
}

pub async fn alter(
    b: &Broker,
    req: AlterPartitionReassignmentsRequest,
) -> AlterPartitionReassignmentsResponse {
    let mut moves = Vec::new();
    // Per topic, in request order: (partition, outcome).
    let mut results: Vec<Vec<(i32, Result<(), Refusal>)>> = Vec::new();
    b.cluster.read(|s| {
        for t in &req.topics {
            let mut rs = Vec::new();
            for p in &t.partitions {
                let checked = check(s, t.name.as_str(), p.partition_index, p.replicas.as_deref());
                rs.push((
                    p.partition_index,
                    checked.map(|m| {
                        moves.push(m);
                    }),
                ));
            }
            results.push(rs);
        }
    });
    if !moves.is_empty() {
        if let Err(e) = b.cluster.propose(Command::RequestMoves { moves }).await {
            // Checked a moment ago, refused now (a broker changed state):
            // every move of the batch is refused alike.
            for rs in &mut results {
                for (_, r) in rs.iter_mut() {
                    if r.is_ok() {
                        *r = Err((ResponseError::InvalidReplicaAssignment, e.to_string()));
                    }
                }
            }
        }
    }
    let mut resp = AlterPartitionReassignmentsResponse::default();
    resp.responses = req
        .topics
        .iter()
        .zip(results)
        .map(|(t, rs)| {
            let mut rt = ReassignableTopicResponse::default();
            rt.name = t.name.clone();
            rt.partitions = rs
                .into_iter()
                .map(|(partition, r)| {
                    let mut rp = ReassignablePartitionResponse::default();
                    rp.partition_index = partition;
                    if let Err((e, msg)) = r {
                        rp.error_code = code(e);
                        rp.error_message = Some(str_bytes(msg));
                    }
                    rp
                })
                .collect();
            rt
        })
        .collect();
    resp
}

pub fn list(
    b: &Broker,
    req: ListPartitionReassignmentsRequest,
) -> ListPartitionReassignmentsResponse {
    let mut resp = ListPartitionReassignmentsResponse::default();
    resp.topics = b.cluster.read(|s| {
        let wanted: Option<Vec<(String, BTreeSet<i32>)>> = req.topics.as_ref().map(|ts| {
            ts.iter()
                .map(|t| {
                    (
                        t.name.to_string(),
                        t.partition_indexes.iter().copied().collect(),
                    )
                })
                .collect()
        });
        let mut out = Vec::new();
        for (name, t) in &s.topics {
            let only: Option<&BTreeSet<i32>> = match &wanted {
                None => None,
                Some(w) => match w.iter().find(|(n, _)| n == name) {
                    Some((_, parts)) => Some(parts),
                    None => continue,
                },
            };
            let partitions: Vec<OngoingPartitionReassignment> = t
                .partitions
                .iter()
                .enumerate()
                .filter(|(i, _)| only.is_none_or(|o| o.contains(&(*i as i32))))
                .filter_map(|(i, p)| {
                    let target = p.target?;
                    let mut o = OngoingPartitionReassignment::default();
                    o.partition_index = i as i32;
                    o.replicas = vec![BrokerId(p.leader), BrokerId(target)];
                    o.adding_replicas = vec![BrokerId(target)];
                    o.removing_replicas = vec![BrokerId(p.leader)];
                    Some(o)
                })
                .collect();
            if !partitions.is_empty() {
                let mut ot = OngoingTopicReassignment::default();
                ot.name = super::topic_name(name.clone());
                ot.partitions = partitions;
                out.push(ot);
            }
        }
        out
    });
    resp
}
