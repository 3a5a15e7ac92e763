//! Three controllers in one process, talking real gRPC over loopback
//! (the same servers and network as `floe controller`): bootstrap, leader
//! hints, exactly-once proposals across a leader loss, restart from disk,
//! membership changes, watches, and hostile requests.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{bail, ensure, Context};
use floe_controller::grpc::client::{ClientError, Committed};
use floe_controller::grpc::node::{self, Listeners};
use floe_controller::grpc::proto::metadata_client::MetadataClient;
use floe_controller::grpc::proto::raft_peer_client::RaftPeerClient;
use floe_controller::grpc::proto::{ProposeRequest, RaftPayload};
use floe_controller::grpc::{ControllerClient, Mirror, LEADER_ADDRESS_HEADER};
use floe_controller::model::{Command, Outcome};
use floe_controller::raft::ControllerNode;

#[path = "support/cluster.rs"]
mod cluster;

use cluster::{complete_moves, config, Cluster, LEASE, LEASE_GRACE, WAIT};

fn allocated(c: &Committed) -> anyhow::Result<i64> {
    match &c.answer {
        Ok(Outcome::ProducerIds { first, .. }) => Ok(*first),
        other => bail!("unexpected answer {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_controllers_elect_commit_fail_over_and_restart() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut cluster = Cluster::start(dir.path()).await?;
    let client = cluster.client();
    let mirror = Mirror::start(client.clone());

    // Exactly once: each allocation of one producer id is applied once, so
    // the ids handed out are 0, 1, 2, ... with no gap, whatever retries the
    // leader loss below causes.
    let mut ids = Vec::new();
    for _ in 0..20 {
        ids.push(allocated(
            &client
                .propose(&Command::AllocateProducerIds { count: 1 })
                .await?,
        )?);
    }
    let first_leader = cluster.leader().await?;
    cluster.stop(first_leader).await?;
    // Concurrent proposals through the leader change.
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            let mut got = Vec::new();
            for _ in 0..10 {
                let c = client
                    .propose(&Command::AllocateProducerIds { count: 1 })
                    .await?;
                got.push(allocated(&c)?);
            }
            anyhow::Ok(got)
        }));
    }
    for t in tasks {
        ids.extend(t.await??);
    }
    let second_leader = cluster.leader().await?;
    ensure!(second_leader != first_leader);
    ids.sort_unstable();
    let base = ids[0];
    ensure!(
        ids == (base..base + 60).collect::<Vec<i64>>(),
        "ids not contiguous: {ids:?}"
    );

    // Followers hint the leader. On a loaded machine an election may happen
    // between looking the leader up and asking a follower: ask again until
    // a follower's hint names the leader of that moment.
    let deadline = tokio::time::Instant::now() + WAIT;
    // Proposals a node accepted because it had just become the leader.
    let mut accepted = 0;
    loop {
        let leader = cluster.leader().await?;
        let follower = cluster
            .nodes
            .keys()
            .copied()
            .find(|id| *id != leader)
            .context("follower")?;
        let mut raw =
            MetadataClient::connect(format!("http://{}", cluster.voters[&follower].api_addr))
                .await?;
        let status = raw
            .propose(ProposeRequest {
                command: serde_json::to_vec(&Command::AllocateProducerIds { count: 1 })?,
                ..ProposeRequest::default()
            })
            .await
            .err();
        if status.is_none() {
            accepted += 1;
        }
        let hinted = status.as_ref().and_then(|s| {
            (s.code() == tonic::Code::FailedPrecondition)
                .then(|| s.metadata().get(LEADER_ADDRESS_HEADER))
                .flatten()
                .and_then(|h| h.to_str().ok().map(str::to_owned))
        });
        if hinted.as_deref() == Some(cluster.voters[&leader].api_addr.as_str()) {
            break;
        }
        ensure!(
            tokio::time::Instant::now() < deadline,
            "follower {follower} never hinted leader {leader}: {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The old leader comes back and catches up; then everyone restarts.
    cluster.restart(first_leader).await?;
    let last = client
        .propose(&Command::AllocateProducerIds { count: 1 })
        .await?;
    ensure!(allocated(&last)? == base + 60 + accepted);
    let states = cluster.states_at(last.index).await?;
    ensure!(states.values().all(|s| s == &states[&1]), "replicas differ");
    ensure!(
        mirror.wait_for(last.index, WAIT).await,
        "mirror never applied {}",
        last.index
    );
    let mirrored = mirror.read(|s| serde_json::to_value(s))?;
    ensure!(
        mirrored == states[&1],
        "the mirror differs from the controllers"
    );

    for id in [1, 2, 3] {
        cluster.stop(id).await?;
    }
    for id in [1, 2, 3] {
        cluster.restart(id).await?;
    }
    let after = client
        .propose(&Command::AllocateProducerIds { count: 1 })
        .await?;
    ensure!(
        allocated(&after)? == base + 61,
        "a committed command was lost or repeated over the restart"
    );
    let states = cluster.states_at(after.index).await?;
    ensure!(
        states.values().all(|s| s == &states[&1]),
        "replicas differ after restart"
    );
    // A fresh watcher starts from a snapshot or the feed and agrees too.
    let late = Mirror::start(cluster.client());
    ensure!(late.wait_for(after.index, WAIT).await);
    ensure!(late.read(|s| serde_json::to_value(s))? == states[&1]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controllers_are_added_and_removed_without_downtime() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut cluster = Cluster::start(dir.path()).await?;
    let client = cluster.client();
    let first = allocated(
        &client
            .propose(&Command::AllocateProducerIds { count: 1 })
            .await?,
    )?;

    // A fourth controller joins: started with no initial voters, then added.
    let listeners = Listeners::bind("127.0.0.1:0".parse()?, "127.0.0.1:0".parse()?).await?;
    let (raft, api) = listeners.addrs()?;
    let fourth = ControllerNode::new(raft.to_string(), api.to_string());
    let mut cfg = config(dir.path(), 4, &BTreeMap::new())?;
    cfg.advertised = fourth.clone();
    let running = node::start(cfg, listeners).await?;
    cluster.nodes.insert(4, running);
    let reply = client
        .add_controller(4, &fourth.raft_addr, &fourth.api_addr)
        .await?;
    ensure!(reply.voters == vec![1, 2, 3, 4], "{reply:?}");
    cluster.voters.insert(4, fourth);

    // Remove the leader itself: the others go on.
    let leader = cluster.leader().await?;
    let reply = client.remove_controller(leader).await?;
    ensure!(
        !reply.voters.contains(&leader) && reply.voters.len() == 3,
        "{reply:?}"
    );
    cluster.stop(leader).await?;
    cluster.voters.remove(&leader);
    let client = cluster.client();
    let c = client
        .propose(&Command::AllocateProducerIds { count: 1 })
        .await?;
    ensure!(allocated(&c)? == first + 1);
    let status = client.cluster_status().await?;
    ensure!(
        status.controllers.iter().filter(|c| c.voter).count() == 3,
        "{status:?}"
    );
    ensure!(!status.controllers.iter().any(|c| c.id == leader));

    // Bad membership requests are refused with a clear error.
    let err = client
        .remove_controller(99)
        .await
        .expect_err("unknown voter");
    ensure!(err.to_string().contains("not a voter"), "{err}");
    let voter = *cluster.voters.keys().next().context("voter")?;
    let err = client
        .add_controller(voter, "127.0.0.1:1", "127.0.0.1:2")
        .await
        .expect_err("dup");
    ensure!(err.to_string().contains("already a voter"), "{err}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_are_refused_and_change_nothing() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let cluster = Cluster::start(dir.path()).await?;
    let client = cluster.client();
    let before = client
        .propose(&Command::AllocateProducerIds { count: 1 })
        .await?;
    let leader = cluster.leader().await?;
    let addr = &cluster.voters[&leader];

    let mut meta = MetadataClient::connect(format!("http://{}", addr.api_addr)).await?;
    for (request, expect) in [
        (
            ProposeRequest {
                command: b"{not json".to_vec(),
                ..ProposeRequest::default()
            },
            "undecodable command",
        ),
        (
            ProposeRequest {
                command: br#"{"NoSuchCommand":{}}"#.to_vec(),
                ..ProposeRequest::default()
            },
            "undecodable command",
        ),
        (
            ProposeRequest {
                command: serde_json::to_vec(&Command::AllocateProducerIds { count: 1 })?,
                client_id: vec![1, 2, 3],
                ..ProposeRequest::default()
            },
            "16-byte UUID",
        ),
    ] {
        let status = meta.propose(request).await.expect_err("refused");
        ensure!(status.code() == tonic::Code::InvalidArgument, "{status:?}");
        ensure!(status.message().contains(expect), "{status:?}");
    }
    let mut peer = RaftPeerClient::connect(format!("http://{}", addr.raft_addr)).await?;
    for garbage in [&b""[..], b"\xff\xfe", br#"{"vote":1}"#] {
        let status = peer
            .append_entries(RaftPayload {
                json: garbage.to_vec(),
                data: Vec::new(),
            })
            .await
            .expect_err("refused");
        ensure!(status.code() == tonic::Code::InvalidArgument, "{status:?}");
        let status = peer
            .vote(RaftPayload {
                json: garbage.to_vec(),
                data: Vec::new(),
            })
            .await
            .expect_err("refused");
        ensure!(status.code() == tonic::Code::InvalidArgument, "{status:?}");
    }
    // A refused command is an answer, not a failure; the state is intact.
    let refused = client
        .propose(&Command::DeleteTopic {
            name: "never-created".to_owned(),
        })
        .await?;
    ensure!(refused.answer.is_err(), "{refused:?}");
    let after = client
        .propose(&Command::AllocateProducerIds { count: 1 })
        .await?;
    ensure!(allocated(&after)? == allocated(&before)? + 1);
    let states = cluster.states_at(after.index).await?;
    ensure!(states.values().all(|s| s == &states[&1]));
    Ok(())
}

fn register_broker(id: i32) -> Command {
    Command::RegisterBroker {
        id,
        host: "127.0.0.1".to_owned(),
        port: 9092 + id,
        rack: None,
        volume_wal: false,
    }
}

/// Creates `name` with every partition led by broker `leader`.
async fn create_topic_on(
    client: &ControllerClient,
    name: &str,
    partitions: i32,
    leader: i32,
) -> anyhow::Result<()> {
    let created = client
        .propose(&Command::CreateTopic {
            name: name.to_owned(),
            id: uuid::Uuid::new_v4(),
            partitions,
            configs: BTreeMap::new(),
            leader,
        })
        .await?;
    ensure!(created.answer.is_ok(), "{created:?}");
    Ok(())
}

fn registered(c: &Committed) -> anyhow::Result<i64> {
    match &c.answer {
        Ok(Outcome::BrokerRegistered { epoch }) => Ok(*epoch),
        other => bail!("unexpected answer {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_that_stops_renewing_is_fenced_only_after_its_lease() -> anyhow::Result<()> {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    let dir = tempfile::tempdir()?;
    let mut cluster = Cluster::start(dir.path()).await?;
    let client = cluster.client();
    let e1 = registered(&client.propose(&register_broker(1)).await?)?;
    let e2 = registered(&client.propose(&register_broker(2)).await?)?;
    create_topic_on(&client, "t", 4, 1).await?;

    // Broker 2 renews all along (through a leader change below).
    let stop = Arc::new(AtomicBool::new(false));
    let renewing = {
        let (client, stop) = (client.clone(), stop.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let lease = client.heartbeat(2, e2).await?;
                ensure!(lease == LEASE);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            anyhow::Ok(())
        })
    };
    // Broker 1 renews a few times, then goes silent.
    for _ in 0..5 {
        client.heartbeat(1, e1).await?;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Every renewal of broker 1 was received before this instant.
    let silent_since = tokio::time::Instant::now();
    let state = loop {
        let (_, state) = client.read_state().await?;
        if state.brokers[&1].fenced {
            break state;
        }
        ensure!(silent_since.elapsed() < WAIT, "broker 1 was never fenced");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let fenced_after = silent_since.elapsed();
    // Safety: the broker's own lease (from the time it sent its last
    // renewal) ran out before the controllers fenced it.
    ensure!(
        fenced_after >= LEASE,
        "fenced {fenced_after:?} after the last renewal: inside the lease"
    );
    ensure!(
        fenced_after <= LEASE + LEASE_GRACE + Duration::from_secs(2),
        "fenced only {fenced_after:?} after the last renewal"
    );
    // Its partitions moved to the live broker, each under a new epoch.
    ensure!(
        state.topics["t"]
            .partitions
            .iter()
            .all(|p| p.leader == 2 && p.leader_epoch == 1),
        "{:?}",
        state.topics["t"].partitions
    );
    // The fenced incarnation's renewals are refused.
    match client.heartbeat(1, e1).await {
        Err(ClientError::Refused {
            code: tonic::Code::Aborted,
            ..
        }) => {}
        other => bail!("a fenced broker renewed: {other:?}"),
    }
    // An unknown broker is told to register.
    match client.heartbeat(7, 1).await {
        Err(ClientError::Refused {
            code: tonic::Code::NotFound,
            ..
        }) => {}
        other => bail!("an unknown broker renewed: {other:?}"),
    }

    // A leader change does not fence the live broker: the new leader starts
    // every lease afresh.
    let leader = cluster.leader().await?;
    cluster.stop(leader).await?;
    tokio::time::sleep(LEASE * 3).await;
    let (_, state) = client.read_state().await?;
    ensure!(
        !state.brokers[&2].fenced,
        "a renewing broker was fenced across a leader change"
    );

    // Broker 1 comes back as a new incarnation.
    let again = registered(&client.propose(&register_broker(1)).await?)?;
    ensure!(again == e1 + 1);
    client.heartbeat(1, again).await?;
    stop.store(true, Ordering::Relaxed);
    renewing.await??;
    Ok(())
}

/// The leader proposes `Rebalance` by itself once placement has been quiet
/// for the cool-down, and stays put once balanced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leader_rebalances_by_itself_after_a_quiet_cooldown() -> anyhow::Result<()> {
    use floe_controller::grpc::service::BalancerConfig;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    const COOLDOWN: Duration = Duration::from_millis(1_500);
    let dir = tempfile::tempdir()?;
    let started = tokio::time::Instant::now();
    let balancer = BalancerConfig {
        interval: Some(Duration::from_millis(100)),
        cooldown: COOLDOWN,
    };
    let cluster = Cluster::start_with(dir.path(), Some(balancer)).await?;
    let client = cluster.client();
    let epochs = [
        (1, registered(&client.propose(&register_broker(1)).await?)?),
        (2, registered(&client.propose(&register_broker(2)).await?)?),
    ];
    // Both brokers renew all along: nothing is fenced.
    let stop = Arc::new(AtomicBool::new(false));
    let renewing = {
        let (client, stop) = (client.clone(), stop.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                for (id, epoch) in epochs {
                    client.heartbeat(id, epoch).await?;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            anyhow::Ok(())
        })
    };
    // All four partitions on broker 1.
    create_topic_on(&client, "t", 4, 1).await?;

    // Two of them are asked to move to broker 2, no earlier than the
    // cool-down after the controllers started.
    let deadline = tokio::time::Instant::now() + WAIT;
    let requested_at = loop {
        let (_, state) = client.read_state().await?;
        let targets: Vec<Option<i32>> = state.topics["t"]
            .partitions
            .iter()
            .map(|p| p.target)
            .collect();
        if targets.iter().any(Option::is_some) {
            ensure!(
                targets.iter().filter(|t| **t == Some(2)).count() == 2
                    && targets.iter().filter(|t| t.is_none()).count() == 2,
                "{targets:?}"
            );
            break tokio::time::Instant::now();
        }
        ensure!(
            tokio::time::Instant::now() < deadline,
            "no automatic rebalance"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    ensure!(
        requested_at - started >= COOLDOWN,
        "rebalanced {:?} after the start, inside the cool-down",
        requested_at - started
    );

    // Broker 1 hands them off.
    ensure!(complete_moves(&client, 1, epochs[0].1, "t").await? == (2, 0));

    // Balanced: two more cool-downs pass and nothing moves.
    tokio::time::sleep(2 * COOLDOWN + Duration::from_millis(300)).await;
    let (_, after) = client.read_state().await?;
    let now: Vec<(i32, i32, Option<i32>)> = after.topics["t"]
        .partitions
        .iter()
        .map(|p| (p.leader, p.leader_epoch, p.target))
        .collect();
    let mut leaders: Vec<i32> = now.iter().map(|p| p.0).collect();
    leaders.sort_unstable();
    ensure!(leaders == vec![1, 1, 2, 2], "{now:?}");
    ensure!(
        now.iter().all(|p| p.2.is_none() && p.1 <= 1),
        "moved again: {now:?}"
    );
    stop.store(true, Ordering::Relaxed);
    renewing.await??;
    Ok(())
}

/// A watcher that fell behind what the controllers keep gets the state in
/// parts of the size it asked for (or in one message when it asked for
/// none), and mirrors of either kind end up equal to the leader's state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watcher_behind_the_feed_gets_the_state_in_parts() -> anyhow::Result<()> {
    use floe_controller::grpc::proto::{watch_event, WatchRequest};
    use floe_controller::raft::FEED_CAPACITY;

    let dir = tempfile::tempdir()?;
    let cluster = Cluster::start(dir.path()).await?;
    let client = cluster.client();
    create_topic_on(&client, "wide", 64, 0).await?;
    // More commands than the feed keeps, so a watcher from 0 starts from a
    // snapshot.
    let mut tasks = Vec::new();
    for _ in 0..32 {
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            let mut last = 0;
            for _ in 0..(FEED_CAPACITY / 32 + 2) {
                last = client
                    .propose(&Command::AllocateProducerIds { count: 1 })
                    .await?
                    .index;
            }
            anyhow::Ok(last)
        }));
    }
    let mut last = 0;
    for task in tasks {
        last = last.max(task.await??);
    }
    let (at, leader_state) = client.read_state().await?;
    ensure!(at >= last);
    let leader_state = serde_json::to_value(&leader_state)?;

    let leader = cluster.leader().await?;
    let mut meta =
        MetadataClient::connect(format!("http://{}", cluster.voters[&leader].api_addr)).await?;
    let mut stream = meta
        .watch(WatchRequest {
            after_index: 0,
            snapshot_part_bytes: 100, // raised to 1 KiB
        })
        .await?
        .into_inner();
    let mut whole = Vec::new();
    let mut parts = 0;
    let index = loop {
        let event = stream.message().await?.context("the watch ended")?;
        let Some(watch_event::Event::SnapshotPart(part)) = event.event else {
            bail!("expected a snapshot part, got {event:?}");
        };
        ensure!(part.offset == whole.len() as u64, "parts out of order");
        ensure!(
            part.data.len() <= 1024,
            "a part of {} bytes",
            part.data.len()
        );
        whole.extend_from_slice(&part.data);
        parts += 1;
        if whole.len() as u64 == part.total {
            break part.index;
        }
    };
    ensure!(
        parts > 2,
        "a state of {} bytes in {parts} parts",
        whole.len()
    );
    ensure!(index >= last, "the snapshot is at {index}, before {last}");
    // Commands after the snapshot follow it, from the next index on.
    let next = client
        .propose(&Command::AllocateProducerIds { count: 1 })
        .await?;
    loop {
        let event = stream.message().await?.context("the watch ended")?;
        match event.event {
            Some(watch_event::Event::Entry(e)) if e.index == next.index => break,
            Some(watch_event::Event::Entry(e)) => ensure!(e.index > index && e.index < next.index),
            Some(watch_event::Event::Heartbeat(_)) => {}
            other => bail!("unexpected {other:?}"),
        }
    }
    let state: serde_json::Value = serde_json::from_slice(&whole)?;
    ensure!(
        index == at,
        "the snapshot is at {index}, the leader's state at {at}"
    );
    ensure!(
        state == leader_state,
        "the joined parts differ from the leader's state"
    );

    // Mirrors taking parts and taking one message agree with the leader.
    let (at, leader_state) = client.read_state().await?;
    let leader_state = serde_json::to_value(&leader_state)?;
    for part_bytes in [1024, 0] {
        let mirror = Mirror::start_with_parts(client.clone(), part_bytes);
        ensure!(
            mirror.wait_for(at, WAIT).await,
            "mirror ({part_bytes}) never caught up"
        );
        ensure!(
            mirror.read(|s| serde_json::to_value(s))? == leader_state,
            "mirror ({part_bytes}) differs from the leader"
        );
    }
    Ok(())
}

/// Placement is decided on the proposing controller and logged with the
/// command (ADR 0013): the feed every replica and broker mirror applies
/// carries the decisions, not a request to run the rules again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn placement_is_decided_when_proposed_and_carried_in_the_log() -> anyhow::Result<()> {
    use floe_controller::grpc::proto::{watch_event, WatchRequest};

    let dir = tempfile::tempdir()?;
    let cluster = Cluster::start(dir.path()).await?;
    let client = cluster.client();
    for id in 1..=3 {
        registered(&client.propose(&register_broker(id)).await?)?;
    }
    let created = client
        .propose(&Command::CreateTopic {
            name: "spread".to_owned(),
            id: uuid::Uuid::new_v4(),
            partitions: 6,
            configs: BTreeMap::new(),
            leader: -1,
        })
        .await?;
    ensure!(created.answer.is_ok(), "{created:?}");
    let rebalanced = client.propose(&Command::Rebalance).await?;
    ensure!(
        matches!(
            rebalanced.answer,
            Ok(Outcome::MovesRequested { requested: 0 })
        ),
        "{rebalanced:?}"
    );

    let leader = cluster.leader().await?;
    let mut meta =
        MetadataClient::connect(format!("http://{}", cluster.voters[&leader].api_addr)).await?;
    let mut stream = meta
        .watch(WatchRequest {
            after_index: 0,
            snapshot_part_bytes: 0,
        })
        .await?
        .into_inner();
    let mut logged = BTreeMap::new();
    while logged.len() < 2 {
        let event = stream.message().await?.context("the watch ended")?;
        match event.event {
            Some(watch_event::Event::Entry(e))
                if e.index == created.index || e.index == rebalanced.index =>
            {
                logged.insert(e.index, serde_json::from_slice::<Command>(&e.command)?);
            }
            Some(_) => {}
            None => bail!("an empty event"),
        }
    }
    let Command::Decided { command, placed } = &logged[&created.index] else {
        bail!("logged undecided: {:?}", logged[&created.index]);
    };
    ensure!(matches!(**command, Command::CreateTopic { leader: -1, .. }));
    let mut to: Vec<i32> = placed.iter().map(|m| m.to).collect();
    to.sort_unstable();
    ensure!(to == vec![1, 1, 2, 2, 3, 3], "placed on {to:?}");
    ensure!(
        logged[&rebalanced.index]
            == Command::Decided {
                command: Box::new(Command::Rebalance),
                placed: vec![]
            },
        "a rebalance is logged with its (empty) plan: {:?}",
        logged[&rebalanced.index]
    );
    // Every replica applied the same decisions.
    let states = cluster.states_at(rebalanced.index).await?;
    ensure!(states.values().all(|s| s == &states[&1]), "replicas differ");
    Ok(())
}
