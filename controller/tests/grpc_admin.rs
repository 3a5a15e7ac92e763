//! The typed `Admin` calls against three real controllers over gRPC on
//! loopback: each call's answer and refusal codes, move progress until the
//! old leader completes the moves, leader hints from a follower, retried
//! calls applied once (by hand and across a leader loss), and malformed
//! requests.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{bail, ensure, Context};
use floe_controller::grpc::client::ClientError;
use floe_controller::grpc::proto::admin_client::AdminClient;
use floe_controller::grpc::proto::{
    BrokerState, CreateTopicRequest, DeleteTopicRequest, DrainBrokerRequest, MoveProgress,
    MoveProgressRequest, PartitionMove, ReassignRequest, RebalanceRequest, Session,
};
use floe_controller::grpc::{LEADER_ADDRESS_HEADER, REFUSED_HEADER};
use floe_controller::model::Command;
use tonic::Code;

#[path = "support/cluster.rs"]
mod cluster;

use cluster::{complete_moves, Cluster, WAIT};

fn register(id: i32) -> Command {
    Command::RegisterBroker {
        id,
        host: "127.0.0.1".to_owned(),
        port: 9092 + id,
        rack: None,
        volume_wal: false,
    }
}

/// The code and message of a refused call.
fn refusal<T: std::fmt::Debug>(result: Result<T, ClientError>) -> anyhow::Result<(Code, String)> {
    match result {
        Err(ClientError::Refused { code, message }) => Ok((code, message)),
        other => bail!("expected a refusal, got {other:?}"),
    }
}

fn mv(topic: &str, partition: i32, to: i32) -> PartitionMove {
    PartitionMove {
        topic: topic.to_owned(),
        partition,
        to_broker: to,
        all_partitions: false,
    }
}

fn everything() -> MoveProgressRequest {
    MoveProgressRequest::default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_calls_answer_what_they_did_and_refuse_with_fitting_codes() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let cluster = Cluster::start(dir.path()).await?;
    let client = cluster.client();
    for id in [1, 2] {
        client.propose(&register(id)).await?;
    }

    // CreateTopic answers the id the state holds.
    let configs = BTreeMap::from([("retention.ms".to_owned(), "60000".to_owned())]);
    let created = client.create_topic("orders", 4, &configs).await?;
    let (_, state) = client.read_state().await?;
    let orders = &state.topics["orders"];
    ensure!(orders.id.to_string() == created.topic_id, "{created:?}");
    ensure!(orders.configs == configs && orders.partitions.len() == 4);
    ensure!(created.index > 0);
    for (result, code, says) in [
        (
            client.create_topic("orders", 1, &BTreeMap::new()).await,
            Code::AlreadyExists,
            "already exists",
        ),
        (
            client.create_topic("no spaces", 1, &BTreeMap::new()).await,
            Code::InvalidArgument,
            "may contain only",
        ),
        (
            client.create_topic("zero", 0, &BTreeMap::new()).await,
            Code::InvalidArgument,
            "cannot have 0 partitions",
        ),
    ] {
        let (got, message) = refusal(result)?;
        ensure!(got == code && message.contains(says), "{got:?}: {message}");
    }

    // Reassign: refusals name what is missing.
    for (moves, code, says) in [
        (vec![], Code::InvalidArgument, "at least one move"),
        (vec![mv("nope", 0, 2)], Code::NotFound, "does not exist"),
        (vec![mv("orders", 4, 2)], Code::NotFound, "partitions 0..4"),
        (vec![mv("orders", 0, 9)], Code::NotFound, "broker 9"),
        (vec![mv("orders", -1, 2)], Code::InvalidArgument, "negative"),
    ] {
        let (got, message) = refusal(client.reassign(&moves).await)?;
        ensure!(got == code && message.contains(says), "{got:?}: {message}");
    }

    // A move is pending until its old leader completes it.
    let leader0 = orders.partitions[0].leader;
    let other = 3 - leader0;
    let reply = client.reassign(&[mv("orders", 0, other)]).await?;
    ensure!(reply.requested == 1, "{reply:?}");
    let progress = client.move_progress(&everything()).await?;
    ensure!(progress.pending == 1 && progress.index >= reply.index);
    let m = &progress.moves[0];
    ensure!(
        (m.topic.as_str(), m.partition, m.from_broker, m.to_broker)
            == ("orders", 0, leader0, other),
        "{progress:?}"
    );
    // Moving it to its current leader cancels it.
    client.reassign(&[mv("orders", 0, leader0)]).await?;
    ensure!(client.move_progress(&everything()).await?.pending == 0);
    client.reassign(&[mv("orders", 0, other)]).await?;
    ensure!(complete_moves(&client, leader0, 1, "orders").await? == (1, 0));
    let progress = client.move_progress(&everything()).await?;
    ensure!(
        progress.pending == 0 && progress.moves.is_empty(),
        "{progress:?}"
    );
    let (_, state) = client.read_state().await?;
    ensure!(state.topics["orders"].partitions[0].leader == other);

    // Drain broker 1: its moves show until it hands them off, then it is
    // drained.
    let drained = |p: &MoveProgress| p.brokers.iter().any(|b| b.id == 1 && b.drained);
    let (_, state) = client.read_state().await?;
    let on_one = state.topics["orders"]
        .partitions
        .iter()
        .filter(|p| p.leader == 1)
        .count() as u32;
    let reply = client.drain_broker(1).await?;
    ensure!(reply.requested == on_one, "{reply:?}, {on_one} on broker 1");
    let one = MoveProgressRequest {
        broker_id: Some(1),
        ..everything()
    };
    let progress = client.move_progress(&one).await?;
    ensure!(progress.brokers.len() == 1, "{progress:?}");
    let b = &progress.brokers[0];
    ensure!(b.state == BrokerState::Draining as i32 && b.outgoing == on_one);
    ensure!(progress.pending == on_one && (on_one == 0) == drained(&progress));
    ensure!(complete_moves(&client, 1, 1, "orders").await? == (on_one, 0));
    let progress = client.move_progress(&one).await?;
    ensure!(progress.pending == 0 && drained(&progress), "{progress:?}");
    // Nothing moves to a draining broker.
    let (code, message) = refusal(client.reassign(&[mv("orders", 0, 1)]).await)?;
    ensure!(
        code == Code::FailedPrecondition && message.contains("not a live broker"),
        "{code:?}: {message}"
    );

    // The last live broker cannot be drained: refused at once, not retried
    // elsewhere until the deadline.
    let asked = tokio::time::Instant::now();
    let (code, message) = refusal(client.drain_broker(2).await)?;
    ensure!(
        code == Code::FailedPrecondition && message.contains("no other live broker"),
        "{code:?}: {message}"
    );
    ensure!(asked.elapsed() < WAIT / 3, "a refusal was retried");
    let (code, _) = refusal(client.drain_broker(7).await)?;
    ensure!(code == Code::NotFound);
    let (code, _) = refusal(
        client
            .move_progress(&MoveProgressRequest {
                topic: "nope".to_owned(),
                ..everything()
            })
            .await,
    )?;
    ensure!(code == Code::NotFound);

    // A new broker gets half of the partitions from a rebalance.
    client.propose(&register(3)).await?;
    let reply = client.rebalance().await?;
    ensure!(reply.requested == 2, "{reply:?}");
    let progress = client.move_progress(&everything()).await?;
    ensure!(progress.pending == 2 && progress.moves.iter().all(|m| m.to_broker == 3));
    ensure!(complete_moves(&client, 2, 1, "orders").await? == (2, 0));
    ensure!(client.rebalance().await?.requested == 0);

    // DeleteTopic; a second delete finds nothing.
    let deleted = client.delete_topic("orders").await?;
    ensure!(deleted.released_objects.is_empty() && deleted.index > reply.index);
    let (code, message) = refusal(client.delete_topic("orders").await)?;
    ensure!(
        code == Code::NotFound && message.contains("orders"),
        "{message}"
    );
    Ok(())
}

fn session(client: uuid::Uuid, seq: u64) -> Option<Session> {
    Some(Session {
        client_id: client.as_bytes().to_vec(),
        seq,
        floor: seq,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_apply_once_followers_hint_and_bad_requests_are_refused() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut cluster = Cluster::start(dir.path()).await?;
    let client = cluster.client();
    for id in [1, 2] {
        client.propose(&register(id)).await?;
    }
    let leader = cluster.leader().await?;
    let mut admin =
        AdminClient::connect(format!("http://{}", cluster.voters[&leader].api_addr)).await?;

    // A call repeated with its session gets the first answer, applied once
    // (at a later sequence number: the repeat is logged, and changes
    // nothing).
    let me = uuid::Uuid::new_v4();
    let create = CreateTopicRequest {
        name: "once".to_owned(),
        partitions: 2,
        configs: Default::default(),
        session: session(me, 1),
    };
    let first = admin.create_topic(create.clone()).await?.into_inner();
    let again = admin.create_topic(create.clone()).await?.into_inner();
    ensure!(first.topic_id == again.topic_id, "{first:?} then {again:?}");
    // Without a session the repeat is a new call, refused.
    let status = admin
        .create_topic(CreateTopicRequest {
            session: None,
            ..create.clone()
        })
        .await
        .expect_err("exists");
    ensure!(status.code() == Code::AlreadyExists, "{status:?}");
    ensure!(status.metadata().get(REFUSED_HEADER).is_some());
    let drain = DrainBrokerRequest {
        broker_id: 1,
        session: session(me, 2),
    };
    let first = admin.drain_broker(drain.clone()).await?.into_inner();
    let again = admin.drain_broker(drain).await?.into_inner();
    ensure!(
        first.requested == again.requested && first.requested > 0,
        "{first:?} then {again:?}"
    );
    let delete = DeleteTopicRequest {
        name: "once".to_owned(),
        session: session(me, 3),
    };
    let first = admin.delete_topic(delete.clone()).await?.into_inner();
    let again = admin.delete_topic(delete).await?.into_inner();
    ensure!(
        first.released_objects == again.released_objects,
        "{first:?} then {again:?}"
    );

    // Malformed requests: INVALID_ARGUMENT, and the controller serves on.
    let bad_session = Some(Session {
        client_id: vec![1, 2, 3],
        seq: 1,
        floor: 1,
    });
    let bad_floor = Some(Session {
        client_id: me.as_bytes().to_vec(),
        seq: u64::MAX,
        floor: 0,
    });
    let statuses = [
        admin
            .rebalance(RebalanceRequest {
                session: bad_session.clone(),
            })
            .await
            .err(),
        admin
            .create_topic(CreateTopicRequest {
                name: "x".to_owned(),
                partitions: 1,
                configs: [(" ".to_owned(), "1".to_owned())].into(),
                session: None,
            })
            .await
            .err(),
        admin
            .reassign(ReassignRequest {
                moves: vec![mv("", i32::MIN, i32::MIN)],
                session: None,
            })
            .await
            .err(),
        admin
            .drain_broker(DrainBrokerRequest {
                broker_id: -5,
                session: None,
            })
            .await
            .err(),
        admin
            .create_topic(CreateTopicRequest {
                name: "y".to_owned(),
                partitions: i32::MIN,
                configs: Default::default(),
                session: Some(Session {
                    seq: 7,
                    floor: 9,
                    ..bad_floor.clone().unwrap_or_default()
                }),
            })
            .await
            .err(),
    ];
    for status in statuses {
        let status = status.context("a malformed request was accepted")?;
        ensure!(status.code() == Code::InvalidArgument, "{status:?}");
    }
    let status = admin
        .rebalance(RebalanceRequest { session: bad_floor })
        .await;
    ensure!(
        status.is_ok(),
        "seq u64::MAX with floor 0 is valid: {status:?}"
    );

    // Followers answer every typed call with the leader hint. An election
    // may happen in between on a loaded machine: ask until a hint names the
    // leader of that moment.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let leader = cluster.leader().await?;
        let follower = *cluster
            .nodes
            .keys()
            .find(|id| **id != leader)
            .context("follower")?;
        let mut raw =
            AdminClient::connect(format!("http://{}", cluster.voters[&follower].api_addr)).await?;
        let statuses = [
            raw.rebalance(RebalanceRequest::default()).await.err(),
            raw.get_move_progress(everything()).await.err(),
            raw.reassign(ReassignRequest {
                moves: vec![mv("nope", 0, 1)],
                session: None,
            })
            .await
            .err(),
        ];
        let want = cluster.voters[&leader].api_addr.as_str();
        let hinted = statuses.iter().all(|s| {
            s.as_ref().is_some_and(|s| {
                s.code() == Code::FailedPrecondition
                    && s.metadata()
                        .get(LEADER_ADDRESS_HEADER)
                        .is_some_and(|h| h.to_str().ok() == Some(want))
            })
        });
        if hinted {
            break;
        }
        ensure!(
            tokio::time::Instant::now() < deadline,
            "follower {follower} never hinted leader {leader}: {statuses:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Across a leader loss: concurrent creates, each retried with its
    // session until answered, are each applied once (a second application
    // would answer ALREADY_EXISTS).
    let leader = cluster.leader().await?;
    let mut tasks = Vec::new();
    for i in 0..8 {
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            client
                .create_topic(&format!("t{i}"), 1, &BTreeMap::new())
                .await
        }));
    }
    cluster.stop(leader).await?;
    for t in tasks {
        t.await??;
    }
    let (_, state) = client.read_state().await?;
    ensure!(
        (0..8).all(|i| state.topics.contains_key(&format!("t{i}"))),
        "{:?}",
        state.topics.keys()
    );
    Ok(())
}
