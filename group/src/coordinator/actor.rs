//! One task per group owning its state machine: requests arrive as commands with a reply channel, timers fire from a single sleep, and an idle Empty group retires itself.

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use tokio::sync::{mpsc, oneshot, Mutex};
use tokio::time::{sleep_until, Duration, Instant};

use crate::config::GroupConfig;
use crate::group::{
    Group, GroupSummary, JoinOutcome, JoinParams, MemberRef, OffsetDeleteScope, SyncOutcome,
    SyncParams,
};

/// Commands queued per group; beyond this, senders wait (backpressure from a
/// group flooded with requests).
const QUEUE_DEPTH: usize = 256;

pub(crate) type Reply<T> = oneshot::Sender<T>;
pub(crate) type LeaveResults = Result<Vec<Result<(), ResponseError>>, ResponseError>;

pub(crate) enum Command {
    Join {
        params: JoinParams,
        reply: Reply<JoinOutcome>,
    },
    Sync {
        params: SyncParams,
        reply: Reply<SyncOutcome>,
    },
    Heartbeat {
        member: MemberRef,
        generation: i32,
        reply: Reply<Result<(), ResponseError>>,
    },
    Leave {
        members: Vec<MemberRef>,
        reply: Reply<LeaveResults>,
    },
    ValidateCommit {
        member: MemberRef,
        generation: i32,
        reply: Reply<Result<(), ResponseError>>,
    },
    Describe {
        reply: Reply<GroupSummary>,
    },
    Delete {
        reply: Reply<Result<(), ResponseError>>,
    },
    OffsetDeleteScope {
        reply: Reply<Result<OffsetDeleteScope, ResponseError>>,
    },
}

/// The way to a group's task.
pub(crate) struct GroupHandle {
    tx: mpsc::Sender<Command>,
    /// Serialises offset writes of the group in arrival order (tokio's mutex
    /// is FIFO), so a later commit of a partition is never overtaken by an
    /// earlier one; also keeps group deletion apart from commits.
    pub offset_writes: Mutex<()>,
}

impl GroupHandle {
    pub fn spawn(group_id: String, config: GroupConfig) -> Arc<Self> {
        let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
        let retention = config.empty_group_retention;
        let group = Group::new(group_id, config);
        tokio::spawn(run(group, rx, retention));
        Arc::new(Self {
            tx,
            offset_writes: Mutex::new(()),
        })
    }

    /// Whether the task has retired or stopped; such a handle is replaced.
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }

    /// Sends a command and waits for its answer; `None` if the task retired
    /// before answering (the command then had no effect and may be retried
    /// on a fresh task).
    pub async fn ask<T>(&self, command: impl FnOnce(Reply<T>) -> Command) -> Option<T> {
        let (reply, answer) = oneshot::channel();
        self.tx.send(command(reply)).await.ok()?;
        answer.await.ok()
    }
}

async fn run(mut group: Group, mut rx: mpsc::Receiver<Command>, retention: Duration) {
    let mut last_request = Instant::now();
    loop {
        let retire_at = group.is_idle().then(|| last_request + retention);
        let wake = [group.next_deadline(), retire_at]
            .into_iter()
            .flatten()
            .min();
        tokio::select! {
            command = rx.recv() => {
                // Every handle dropped: the group was deleted and forgotten.
                let Some(command) = command else { return };
                last_request = Instant::now();
                handle(&mut group, command, last_request);
            }
            () = sleep_until(wake.unwrap_or(last_request)), if wake.is_some() => {
                let now = Instant::now();
                if retire_at.is_some_and(|at| at <= now) {
                    // Commands that raced in are dropped unanswered; their
                    // senders see that and retry on a fresh task.
                    rx.close();
                    while rx.try_recv().is_ok() {}
                    return;
                }
                group.tick(now);
            }
        }
    }
}

fn handle(group: &mut Group, command: Command, now: Instant) {
    // A requester that went away cannot be answered; nothing to do then.
    match command {
        Command::Join { params, reply } => group.join(params, now, reply),
        Command::Sync { params, reply } => group.sync(params, now, reply),
        Command::Heartbeat {
            member,
            generation,
            reply,
        } => {
            let _ = reply.send(group.heartbeat(&member, generation, now));
        }
        Command::Leave { members, reply } => {
            let _ = reply.send(group.leave(&members, now));
        }
        Command::ValidateCommit {
            member,
            generation,
            reply,
        } => {
            let _ = reply.send(group.validate_commit(&member, generation, now));
        }
        Command::Describe { reply } => {
            let _ = reply.send(group.summary());
        }
        Command::Delete { reply } => {
            let _ = reply.send(group.delete());
        }
        Command::OffsetDeleteScope { reply } => {
            let _ = reply.send(group.offset_delete_scope());
        }
    }
}
