//! Placement decided when a command is proposed (ADR 0013): [`decide`]
//! runs the placement rules once, on the proposing controller, and wraps
//! the command with its decisions; [`apply_decided`] applies them without
//! running any rule, so every replica and broker mirror agrees whatever
//! rules its version has.

use uuid::Uuid;

use super::placement::{plan_away, Load};
use super::{
    create_partitions, create_topic, fence_broker, give_up_broker, moves, ApplyError, Outcome,
    MAX_PARTITIONS,
};
use crate::model::{Command, MetadataState, Move, PartitionId};

/// The command to log for `cmd`, proposed now against `state`: a command
/// that places partitions (a new topic or partitions whose leader is left to
/// the controller, a fence, a give-up, a drain, a completed move whose
/// target is gone, a rebalance) carries the placement rules' decisions, made
/// here, once, on the proposing controller; every replica and broker mirror
/// then applies those decisions whatever rules its own version has; a
/// rebalance carries its plan. `None` for commands that place nothing (they
/// are logged as they are).
pub fn decide(state: &MetadataState, cmd: &Command) -> Option<Command> {
    if !cmd.places() {
        return None;
    }
    let placed = match cmd {
        Command::Rebalance => moves::rebalance_plan(state),
        Command::FenceBroker { id, .. } | Command::GiveUpBroker { id } => {
            if state.brokers.get(id).is_some_and(|b| b.volume_wal)
                && matches!(cmd, Command::FenceBroker { .. })
            {
                // Its partitions wait for it: nothing to place.
                Vec::new()
            } else {
                plan_elsewhere(state, *id)
            }
        }
        Command::DrainBroker { id } => moves::plan_drain(state, *id),
        Command::CompleteMoves { from, handoffs, .. } => {
            moves::plan_complete(state, *from, handoffs)
        }
        Command::CreateTopic {
            id,
            partitions,
            leader,
            ..
        } => plan_new(state, *id, 0, *partitions, *leader),
        Command::CreatePartitions {
            name,
            total,
            leader,
        } => match state.topics.get(name) {
            Some(topic) => plan_new(
                state,
                topic.id,
                topic.partitions.len() as i32,
                *total,
                *leader,
            ),
            None => Vec::new(),
        },
        _ => return None,
    };
    Some(Command::Decided {
        command: Box::new(cmd.clone()),
        placed,
    })
}

/// Applies a placing command with the decisions made when it was proposed.
pub(super) fn apply_decided(
    state: &mut MetadataState,
    command: &Command,
    placed: &[Move],
) -> Result<Outcome, ApplyError> {
    match command {
        Command::Rebalance => Ok(moves::rebalance_decided(state, placed)),
        other => apply_placing(state, other, Some(placed)),
    }
}

/// Applies a placing command: with `placed`, its decisions; with `None`
/// (logged before decisions were made at proposal time), decided now by
/// the rules. Any other command is refused.
pub(super) fn apply_placing(
    state: &mut MetadataState,
    command: &Command,
    placed: Option<&[Move]>,
) -> Result<Outcome, ApplyError> {
    match command {
        Command::CompleteMoves {
            from,
            broker_epoch,
            handoffs,
        } => moves::complete_moves(state, *from, *broker_epoch, handoffs, placed),
        Command::DrainBroker { id } => moves::drain_broker(state, *id, placed),
        Command::FenceBroker { id, epoch } => fence_broker(state, *id, *epoch, placed),
        Command::GiveUpBroker { id } => give_up_broker(state, *id, placed),
        Command::CreateTopic {
            name,
            id,
            partitions,
            configs,
            leader,
        } => create_topic(state, name, *id, *partitions, configs, *leader, placed),
        Command::CreatePartitions {
            name,
            total,
            leader,
        } => create_partitions(state, name, *total, *leader, placed),
        other => Err(ApplyError::InvalidDecision {
            command: other.kind().to_owned(),
        }),
    }
}

/// Leaders for partitions `from..to` of topic `topic_id`, when `leader`
/// leaves them to the controller (is negative).
pub(super) fn plan_new(
    state: &MetadataState,
    topic_id: Uuid,
    from: i32,
    to: i32,
    leader: i32,
) -> Vec<Move> {
    if leader >= 0 || !(0..=MAX_PARTITIONS).contains(&to) {
        return Vec::new();
    }
    let mut load = Load::of(state);
    (from.max(0)..to)
        .map(|partition| Move {
            partition: PartitionId {
                topic_id,
                partition,
            },
            to: load.place(topic_id),
        })
        .collect()
}

/// Where a fence or give-up sends broker `id`'s partitions that no live
/// pending target takes, by the placement rules, counting `id` as not live.
pub(super) fn plan_elsewhere(state: &MetadataState, id: i32) -> Vec<Move> {
    plan_away(state, id, |partition, load| {
        partition.leader == id
            && !partition
                .target
                .filter(|&t| t != id)
                .is_some_and(|t| load.is_live(t))
    })
}
