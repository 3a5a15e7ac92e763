//! Between the typed `Admin` messages and the metadata model, with no I/O:
//! requests become the same [`Command`]s `Propose` carries, refusals of the
//! pure apply become gRPC statuses, and the state becomes move progress.
//!
//! Contract: malformed input is `INVALID_ARGUMENT` with what was wrong,
//! never a panic; every [`ApplyError`] has one status code, chosen here
//! (an exhaustive match: a new refusal needs a decision).

use std::collections::BTreeMap;

use tonic::Status;

use super::super::proto::{
    BrokerMoves, BrokerState, MoveProgress, MoveProgressRequest, PartitionMove, PendingMove,
};
use super::super::REFUSED_HEADER;
use crate::model::{ApplyError, MetadataState, Move, PartitionId};

/// Pending moves listed by `GetMoveProgress` when the request sets no limit.
pub const DEFAULT_PROGRESS_LIMIT: u32 = 1_000;

/// The status a refusal of the pure apply is answered with: its message is
/// the refusal's (which says what to do), its code says what kind it is,
/// and [`REFUSED_HEADER`] names the refusal, so that a client does not take
/// a `FAILED_PRECONDITION` for a follower's "not the leader".
pub fn refusal(e: &ApplyError) -> Status {
    use tonic::Code;
    let code = match e {
        ApplyError::UnknownTopic { .. }
        | ApplyError::UnknownTopicPartition { .. }
        | ApplyError::UnknownPartition { .. }
        | ApplyError::UnknownBroker { .. } => Code::NotFound,
        ApplyError::TopicExists { .. }
        | ApplyError::TopicIdExists { .. }
        | ApplyError::ObjectExists { .. } => Code::AlreadyExists,
        ApplyError::InvalidBroker { .. }
        | ApplyError::InvalidTopicName { .. }
        | ApplyError::InvalidPartitionCount { .. }
        | ApplyError::EmptyCommit { .. }
        | ApplyError::EmptyOffsetRange { .. }
        | ApplyError::ObjectKeyMismatch { .. }
        | ApplyError::InvalidByteRange { .. }
        | ApplyError::InvalidOffset { .. }
        | ApplyError::InvalidProducerIdCount { .. }
        | ApplyError::InvalidReplacement { .. }
        | ApplyError::InvalidDecision { .. } => Code::InvalidArgument,
        ApplyError::StaleBrokerEpoch { .. }
        | ApplyError::StaleLeaderEpoch { .. }
        | ApplyError::NonContiguousCommit { .. }
        | ApplyError::ObjectInUse { .. }
        | ApplyError::InvalidMove { .. }
        | ApplyError::CannotDrain { .. }
        | ApplyError::CannotGiveUp { .. }
        | ApplyError::ReplacedEntryChanged { .. } => Code::FailedPrecondition,
        ApplyError::ProducerIdsExhausted { .. } => Code::ResourceExhausted,
        ApplyError::StaleProposal { .. } => Code::Aborted,
        ApplyError::StaleIndex { .. } => Code::Internal,
    };
    let mut status = Status::new(code, e.to_string());
    if let Ok(kind) = refusal_kind(e).parse() {
        status.metadata_mut().insert(REFUSED_HEADER, kind);
    }
    status
}

/// The refusal's variant name (`CannotDrain`, ...), as its JSON names it.
fn refusal_kind(e: &ApplyError) -> String {
    match serde_json::to_value(e) {
        Ok(serde_json::Value::Object(map)) => map.keys().next().cloned(),
        Ok(serde_json::Value::String(name)) => Some(name),
        _ => None,
    }
    .unwrap_or_else(|| "Refused".to_owned())
}

/// A refusal that the typed call itself finds before proposing anything
/// (the pure apply would refuse it the same way, or cannot express it).
pub fn refused(code: tonic::Code, kind: &str, message: impl Into<String>) -> Status {
    let mut status = Status::new(code, message);
    if let Ok(kind) = kind.parse() {
        status.metadata_mut().insert(REFUSED_HEADER, kind);
    }
    status
}

/// The topic configs of a `CreateTopic`, in a deterministic order.
pub fn topic_configs(
    configs: &std::collections::HashMap<String, String>,
) -> Result<BTreeMap<String, String>, Status> {
    if configs.keys().any(|k| k.trim().is_empty()) {
        return Err(Status::invalid_argument(
            "config keys must not be empty (e.g. \"retention.ms\": \"3600000\")",
        ));
    }
    Ok(configs
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect())
}

/// The moves of a `Reassign`, with topics named by their ids in `state`.
/// Unknown topics, partitions and brokers are `NOT_FOUND`; the model still
/// decides whether each target may take its partition.
pub fn resolve_moves(state: &MetadataState, moves: &[PartitionMove]) -> Result<Vec<Move>, Status> {
    if moves.is_empty() {
        return Err(Status::invalid_argument(
            "name at least one move: {topic, partition, to_broker}",
        ));
    }
    let mut resolved = Vec::new();
    for m in moves {
        if m.to_broker < 0 {
            return Err(Status::invalid_argument(format!(
                "to_broker {} of {}:{} is not a broker id (ids are 0 or more)",
                m.to_broker, m.topic, m.partition
            )));
        }
        if !m.all_partitions && m.partition < 0 {
            return Err(Status::invalid_argument(format!(
                "partition {} of topic {:?} is negative; partitions count from 0",
                m.partition, m.topic
            )));
        }
        let Some(topic) = state.topics.get(&m.topic) else {
            return Err(refusal(&ApplyError::UnknownTopic {
                name: m.topic.clone(),
            }));
        };
        let count = i32::try_from(topic.partitions.len()).unwrap_or(i32::MAX);
        if !m.all_partitions && m.partition >= count {
            return Err(refused(
                tonic::Code::NotFound,
                "UnknownTopicPartition",
                format!(
                    "topic {:?} has partitions 0..{count}, not {}; refresh metadata",
                    m.topic, m.partition
                ),
            ));
        }
        if !state.brokers.contains_key(&m.to_broker) {
            return Err(refusal(&ApplyError::UnknownBroker { id: m.to_broker }));
        }
        let partitions = if m.all_partitions {
            0..count
        } else {
            m.partition..m.partition + 1
        };
        resolved.extend(partitions.map(|partition| Move {
            partition: PartitionId {
                topic_id: topic.id,
                partition,
            },
            to: m.to_broker,
        }));
    }
    Ok(resolved)
}

/// The pending moves and the brokers' drain states in `state` (as of
/// metadata sequence number `index`) that `request` asks about.
pub fn move_progress(
    state: &MetadataState,
    index: u64,
    request: &MoveProgressRequest,
) -> Result<MoveProgress, Status> {
    if let Some(id) = request.broker_id {
        if !state.brokers.contains_key(&id) {
            return Err(refusal(&ApplyError::UnknownBroker { id }));
        }
    }
    if !request.topic.is_empty() && !state.topics.contains_key(&request.topic) {
        return Err(refusal(&ApplyError::UnknownTopic {
            name: request.topic.clone(),
        }));
    }
    let limit = request.limit.unwrap_or(DEFAULT_PROGRESS_LIMIT) as usize;
    let mut counts: BTreeMap<i32, (u32, u32, u32)> = BTreeMap::new();
    let (mut pending, mut moves) = (0u32, Vec::new());
    for topic in state.topics.values() {
        for (i, p) in topic.partitions.iter().enumerate() {
            let leads = counts.entry(p.leader).or_default();
            leads.0 += 1;
            let Some(to) = p.target else {
                continue;
            };
            leads.1 += 1;
            counts.entry(to).or_default().2 += 1;
            let wanted = (request.topic.is_empty() || request.topic == topic.name)
                && request.broker_id.is_none_or(|b| b == p.leader || b == to);
            if !wanted {
                continue;
            }
            pending += 1;
            if moves.len() < limit {
                moves.push(PendingMove {
                    topic: topic.name.clone(),
                    partition: i32::try_from(i).unwrap_or(i32::MAX),
                    from_broker: p.leader,
                    to_broker: to,
                });
            }
        }
    }
    let brokers = state
        .brokers
        .values()
        .filter(|b| request.broker_id.is_none_or(|id| id == b.id))
        .map(|b| {
            let (leads, outgoing, incoming) = counts.get(&b.id).copied().unwrap_or_default();
            let state = if b.fenced {
                BrokerState::Fenced
            } else if b.draining {
                BrokerState::Draining
            } else {
                BrokerState::Live
            };
            BrokerMoves {
                id: b.id,
                state: state as i32,
                leads,
                outgoing,
                incoming,
                drained: (b.draining || b.fenced) && leads == 0 && incoming == 0,
            }
        })
        .collect();
    Ok(MoveProgress {
        index,
        pending,
        moves,
        brokers,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::fixture::{create_topic, register};
    use crate::model::{apply, Command};

    fn state(commands: &[Command]) -> MetadataState {
        let mut state = MetadataState::default();
        for (i, c) in commands.iter().enumerate() {
            apply(&mut state, i as u64 + 1, c).expect("applies");
        }
        state
    }

    #[test]
    fn every_refusal_names_its_kind_and_has_a_fitting_code() {
        let status = refusal(&ApplyError::CannotDrain {
            id: 1,
            reason: "no other live broker can take its partitions".to_owned(),
        });
        assert_eq!(status.code(), tonic::Code::FailedPrecondition);
        assert_eq!(
            status.metadata().get(REFUSED_HEADER).unwrap(),
            "CannotDrain"
        );
        assert!(status.message().contains("no other live broker"));
        let status = refusal(&ApplyError::TopicExists { name: "t".into() });
        assert_eq!(status.code(), tonic::Code::AlreadyExists);
        let status = refusal(&ApplyError::UnknownBroker { id: 4 });
        assert_eq!(status.code(), tonic::Code::NotFound);
        assert_eq!(
            status.metadata().get(REFUSED_HEADER).unwrap(),
            "UnknownBroker"
        );
    }

    fn mv(topic: &str, partition: i32, to: i32) -> PartitionMove {
        PartitionMove {
            topic: topic.to_owned(),
            partition,
            to_broker: to,
            all_partitions: false,
        }
    }

    #[test]
    fn moves_resolve_by_name_and_bad_ones_say_why() {
        let s = state(&[register(1), register(2), create_topic("t", 7, 3)]);
        let all = PartitionMove {
            all_partitions: true,
            ..mv("t", 99, 2)
        };
        assert_eq!(resolve_moves(&s, &[mv("t", 1, 2)]).unwrap().len(), 1);
        assert_eq!(resolve_moves(&s, &[all, mv("t", 0, 1)]).unwrap().len(), 4);
        for (moves, code) in [
            (vec![], tonic::Code::InvalidArgument),
            (vec![mv("t", -1, 2)], tonic::Code::InvalidArgument),
            (vec![mv("t", 0, -2)], tonic::Code::InvalidArgument),
            (vec![mv("u", 0, 2)], tonic::Code::NotFound),
            (vec![mv("t", 3, 2)], tonic::Code::NotFound),
            (vec![mv("t", 0, 9)], tonic::Code::NotFound),
        ] {
            let e = resolve_moves(&s, &moves).expect_err("refused");
            assert_eq!(e.code(), code, "{moves:?}: {e:?}");
        }
    }

    #[test]
    fn progress_lists_pending_moves_and_drained_brokers() {
        let mut s = state(&[register(1), register(2), create_topic("t", 7, 4)]);
        apply(&mut s, 4, &Command::DrainBroker { id: 1 }).expect("drains");
        let all = MoveProgressRequest::default();
        let p = move_progress(&s, 4, &all).unwrap();
        assert_eq!((p.index, p.pending, p.moves.len()), (4, 4, 4));
        assert!(p
            .moves
            .iter()
            .all(|m| m.from_broker == 1 && m.to_broker == 2));
        let one = &p.brokers[0];
        assert_eq!(
            (one.id, one.state, one.leads, one.outgoing, one.drained),
            (1, BrokerState::Draining as i32, 4, 4, false)
        );
        assert_eq!(p.brokers[1].incoming, 4);
        let limited = MoveProgressRequest {
            broker_id: Some(2),
            limit: Some(1),
            ..all.clone()
        };
        let p = move_progress(&s, 4, &limited).unwrap();
        assert_eq!((p.pending, p.moves.len(), p.brokers.len()), (4, 1, 1));
        let unknown = MoveProgressRequest {
            topic: "nope".into(),
            ..all.clone()
        };
        let e = move_progress(&s, 4, &unknown).unwrap_err();
        assert_eq!(e.code(), tonic::Code::NotFound);
    }
}
