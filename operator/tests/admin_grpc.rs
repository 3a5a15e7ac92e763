//! The operator's admin client against a real (one-voter) controller quorum
//! over gRPC: the broker list, drains and rebalances are what the controller
//! applies, not what a fake says.

use std::collections::BTreeMap;
use std::time::Duration;

use floe_controller::grpc::client::{ClientOptions, ControllerClient};
use floe_controller::grpc::node::{self, default_raft_config, Listeners, NodeConfig};
use floe_controller::grpc::service::{BalancerConfig, LeaseConfig};
use floe_controller::model::{Command, HandOff, Outcome, PartitionId};
use floe_controller::raft::ControllerNode;
use floe_operator::admin::{AdminError, BrokerState, ClusterAdmin};
use floe_operator::admin_grpc::GrpcAdmin;

fn register(id: i32) -> Command {
    Command::RegisterBroker {
        id,
        host: format!("broker-{id}"),
        port: 9092,
        rack: None,
        volume_wal: false,
    }
}

/// A one-voter quorum's config (id 0) on the given addresses.
fn one_voter(
    dir: &std::path::Path,
    raft: std::net::SocketAddr,
    api: std::net::SocketAddr,
    tls: Option<floe_controller::grpc::tls::Tls>,
) -> anyhow::Result<NodeConfig> {
    let me = ControllerNode::new(raft.to_string(), api.to_string());
    Ok(NodeConfig {
        id: 0,
        advertised: me.clone(),
        initial_voters: BTreeMap::from([(0, me)]),
        data_dir: dir.join("c0"),
        raft: default_raft_config("floe")?.validate()?,
        bootstrap_grace: Duration::from_millis(50),
        // Long leases: nothing is fenced during the test.
        leases: LeaseConfig {
            lease: Duration::from_secs(600),
            grace: Duration::from_secs(60),
        },
        tls,
        access: Default::default(),
        balancer: BalancerConfig {
            interval: None,
            ..BalancerConfig::default()
        },
    })
}

fn state_of(admin_view: &[floe_operator::admin::BrokerInfo], id: i32) -> (BrokerState, u32) {
    let b = admin_view.iter().find(|b| b.id == id).expect("listed");
    (b.state, b.partitions)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_and_rebalance_go_through_the_controller() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let listeners = Listeners::bind("127.0.0.1:0".parse()?, "127.0.0.1:0".parse()?).await?;
    let (raft, api) = listeners.addrs()?;
    let config = one_voter(dir.path(), raft, api, None)?;
    let node = node::start(config, listeners).await?;
    let client = ControllerClient::new(
        vec![api.to_string()],
        ClientOptions {
            deadline: Duration::from_secs(20),
            attempt_timeout: Duration::from_secs(5),
        },
    );
    for id in [0, 1, 2] {
        client.propose(&register(id)).await?;
    }
    let topic = uuid::Uuid::from_u128(7);
    client
        .propose(&Command::CreateTopic {
            name: "t".into(),
            id: topic,
            partitions: 6,
            configs: BTreeMap::new(),
            leader: 2,
        })
        .await?;
    let admin = GrpcAdmin::new(client.clone());

    let brokers = admin.brokers().await?;
    assert_eq!(state_of(&brokers, 2), (BrokerState::Active, 6));
    assert_eq!(state_of(&brokers, 0), (BrokerState::Active, 0));

    // Rebalance: 6 on broker 2 becomes 2/2/2 once the moves complete; until
    // then brokers 0 and 1 lead nothing but have 2 partitions coming each.
    assert_eq!(admin.rebalance().await?, 4);
    let brokers = admin.brokers().await?;
    for id in [0, 1] {
        let b = brokers.iter().find(|b| b.id == id).expect("listed");
        assert_eq!((b.partitions, b.incoming), (0, 2), "broker {id}");
    }

    // Drain broker 2: Draining until it hands everything off, then Drained.
    admin.drain(&[2]).await?;
    admin.drain(&[2, 9]).await?; // idempotent; a never-registered id is drained
    assert_eq!(
        state_of(&admin.brokers().await?, 2),
        (BrokerState::Draining, 6)
    );
    let handoffs = (0..6)
        .map(|partition| HandOff {
            partition: PartitionId {
                topic_id: topic,
                partition,
            },
            leader_epoch: 0,
            committed_end: 0,
        })
        .collect();
    let done = client
        .propose(&Command::CompleteMoves {
            from: 2,
            broker_epoch: 1,
            handoffs,
        })
        .await?;
    assert_eq!(
        done.answer,
        Ok(Outcome::MovesCompleted {
            moved: 6,
            skipped: 0
        })
    );
    let brokers = admin.brokers().await?;
    assert_eq!(state_of(&brokers, 2), (BrokerState::Drained, 0));
    assert_eq!(state_of(&brokers, 0).1 + state_of(&brokers, 1).1, 6);

    // The last brokers cannot all be drained: refused, and scale-in holds.
    admin.drain(&[0]).await?;
    match admin.drain(&[1]).await {
        Err(AdminError::Refused { request, message }) => {
            assert_eq!(request, "drain");
            assert!(message.contains("no other live broker"), "{message}");
        }
        other => panic!("draining the last live broker: {other:?}"),
    }

    node.shutdown().await.map_err(anyhow::Error::msg)?;
    // An unreachable quorum is Unavailable (scale-in is held, never unsafe).
    let gone = GrpcAdmin::new(ControllerClient::new(
        vec![api.to_string()],
        ClientOptions {
            deadline: Duration::from_millis(500),
            attempt_timeout: Duration::from_millis(200),
        },
    ));
    assert!(matches!(
        gone.brokers().await,
        Err(AdminError::Unavailable { .. })
    ));
    Ok(())
}

#[path = "../../controller/tests/support/certs.rs"]
mod certs;
#[path = "support/fixtures.rs"]
mod fixtures;

/// With `controllers.tls`, the operator calls the controllers with the
/// certificate from the cluster's Secret (as the API returned it); the
/// same cluster without it, in plaintext, is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_presents_the_clusters_certificate_to_tls_controllers() -> anyhow::Result<()> {
    use floe_controller::grpc::tls::Tls;
    use floe_operator::admin_grpc::GrpcConnector;
    use floe_operator::reconcile::validate::validate;

    let dir = tempfile::tempdir()?;
    let ca = certs::Authority::new("floe test authority")?;
    let (cert, key) = ca.issue(&["127.0.0.1"])?;
    let listeners = Listeners::bind("127.0.0.1:0".parse()?, "127.0.0.1:0".parse()?).await?;
    let (raft, api) = listeners.addrs()?;
    let tls = Tls::from_pem(ca.ca_pem.as_bytes(), cert.as_bytes(), key.as_bytes())?;
    let node = node::start(one_voter(dir.path(), raft, api, Some(tls))?, listeners).await?;

    // The `tls` fixture's Secret, holding this authority's files.
    let (cluster, mut referenced) = fixtures::load("tls");
    let secret = referenced
        .tls_secret
        .as_mut()
        .expect("the fixture's Secret");
    secret.string_data = Some(BTreeMap::from([
        ("ca.crt".to_string(), ca.ca_pem.clone()),
        ("tls.crt".to_string(), cert),
        ("tls.key".to_string(), key),
    ]));
    let validated = validate(&cluster, &referenced)?;
    let options = ClientOptions {
        deadline: Duration::from_secs(20),
        attempt_timeout: Duration::from_secs(5),
    };
    let admin = GrpcAdmin::new(ControllerClient::with_channels(
        vec![api.to_string()],
        options,
        GrpcConnector::channels(&validated),
    ));
    admin.brokers().await?;

    let (plain, referenced) = fixtures::load("minimal");
    let plain = validate(&plain, &referenced)?;
    let refused = GrpcAdmin::new(ControllerClient::with_channels(
        vec![api.to_string()],
        ClientOptions {
            deadline: Duration::from_millis(800),
            attempt_timeout: Duration::from_millis(300),
        },
        GrpcConnector::channels(&plain),
    ));
    assert!(matches!(
        refused.brokers().await,
        Err(AdminError::Unavailable { .. })
    ));
    node.shutdown().await.map_err(anyhow::Error::msg)?;
    Ok(())
}
