//! Mutual TLS on the controllers' ports: three controllers elect a leader
//! and replicate over TLS; callers holding a certificate of the cluster's
//! authority are served; plaintext callers, callers without a certificate,
//! callers of another authority and callers dialling a name the
//! controllers' certificate does not hold are refused, and nothing they
//! send is applied. Bad files stop a controller with an error naming them.

use std::time::Duration;

use anyhow::{bail, ensure, Context};
use floe_controller::grpc::client::{ClientOptions, Committed};
use floe_controller::grpc::network::Channels;
use floe_controller::grpc::proto::metadata_client::MetadataClient;
use floe_controller::grpc::proto::ReadStateRequest;
use floe_controller::grpc::tls::{Tls, TlsError, TlsFiles, RELOAD_CHECK};
use floe_controller::grpc::ControllerClient;
use floe_controller::model::{Command, Outcome};
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint};

#[path = "support/cluster.rs"]
mod cluster;

#[path = "support/certs.rs"]
mod certs;

use certs::{Authority, Files};
use cluster::Cluster;

fn tls(files: &Files) -> anyhow::Result<Tls> {
    Ok(Tls::load(&TlsFiles {
        ca: files.ca.clone(),
        cert: files.cert.clone(),
        key: files.key.clone(),
    })?)
}

fn allocated(c: &Committed) -> anyhow::Result<i64> {
    match &c.answer {
        Ok(Outcome::ProducerIds { first, .. }) => Ok(*first),
        other => bail!("unexpected answer {other:?}"),
    }
}

/// Allocates one producer id through `client`; returns it.
async fn allocate(client: &ControllerClient) -> anyhow::Result<i64> {
    allocated(
        &client
            .propose(&Command::AllocateProducerIds { count: 1 })
            .await?,
    )
}

/// A client that gives up quickly.
fn quick(endpoints: Vec<String>, tls: Option<Tls>) -> ControllerClient {
    ControllerClient::with_channels(
        endpoints,
        ClientOptions {
            deadline: Duration::from_millis(1_500),
            attempt_timeout: Duration::from_millis(500),
        },
        Channels::new(tls),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controllers_speak_mutual_tls_and_refuse_callers_outside_their_authority(
) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let ca = Authority::new("floe test authority")?;
    // The controllers' certificate names the loopback address only.
    let controllers = ca.write(dir.path(), "controllers", &["127.0.0.1"])?;
    let cluster = Cluster::start_tls(dir.path(), tls(&controllers)?).await?;
    let endpoints = cluster.endpoints();

    // Raft between the controllers runs over TLS: a leader, commits.
    let client = cluster.client();
    let first = allocate(&client).await?;
    // Another party (a broker) with its own certificate of the authority.
    let broker = ca.write(dir.path(), "broker", &["broker-0.floe"])?;
    let broker = quick(endpoints.clone(), Some(tls(&broker)?));
    let second = allocate(&broker).await?;
    ensure!(second == first + 1);

    // Plaintext: refused.
    let plain = quick(endpoints.clone(), None);
    let refused = plain
        .propose(&Command::AllocateProducerIds { count: 1 })
        .await;
    ensure!(refused.is_err(), "plaintext was served: {refused:?}");

    // A certificate of another authority: refused (and its holder does not
    // trust the controllers either).
    let other = Authority::new("another authority")?;
    let stranger = other.write(dir.path(), "stranger", &["127.0.0.1"])?;
    let stranger = quick(endpoints.clone(), Some(tls(&stranger)?));
    let refused = stranger
        .propose(&Command::AllocateProducerIds { count: 1 })
        .await;
    ensure!(
        refused.is_err(),
        "another authority was served: {refused:?}"
    );

    // Trusting the authority but showing no certificate: refused.
    let anonymous = Endpoint::from_shared(format!("https://{}", endpoints[0]))?
        .tls_config(ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&ca.ca_pem)))?
        .connect_timeout(Duration::from_secs(1));
    let served = match anonymous.connect().await {
        Err(_) => false,
        Ok(channel) => MetadataClient::new(channel)
            .read_state(ReadStateRequest {})
            .await
            .is_ok(),
    };
    ensure!(!served, "a caller without a certificate was served");

    // Dialling a name the controllers' certificate does not hold: the
    // caller refuses the controller.
    let port = endpoints[0].rsplit_once(':').context("port")?.1;
    let by_name = quick(
        vec![format!("localhost:{port}")],
        Some(tls(&ca.write(dir.path(), "admin", &["admin"])?)?),
    );
    let refused = by_name
        .propose(&Command::AllocateProducerIds { count: 1 })
        .await;
    ensure!(
        refused.is_err(),
        "a certificate without the dialled name was accepted: {refused:?}"
    );

    // Nothing the refused callers sent was applied.
    let third = allocate(&client).await?;
    ensure!(third == second + 1, "{first} {second} {third}");
    let states = cluster.states_at(client.read_state().await?.0).await?;
    ensure!(states.values().all(|s| s == &states[&1]), "replicas differ");
    Ok(())
}

#[tokio::test]
async fn unusable_tls_files_are_refused_and_named() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let ca = Authority::new("floe test authority")?;
    let files = ca.write(dir.path(), "controller", &["127.0.0.1"])?;

    let missing = TlsFiles {
        ca: files.ca.clone(),
        cert: dir.path().join("nowhere.crt"),
        key: files.key.clone(),
    };
    match Tls::load(&missing) {
        Err(e @ TlsError::Read { .. }) => {
            ensure!(e.to_string().contains("nowhere.crt"), "{e}")
        }
        other => bail!("a missing certificate gave {other:?}"),
    }
    let swapped = TlsFiles {
        ca: files.ca.clone(),
        cert: files.key.clone(),
        key: files.key.clone(),
    };
    match Tls::load(&swapped) {
        Err(e @ TlsError::NotPem { .. }) => ensure!(e.to_string().contains("CERTIFICATE"), "{e}"),
        other => bail!("a key given as the certificate gave {other:?}"),
    }

    // PEM-shaped but broken key: refused when loaded (before a controller
    // opens its storage), naming the file.
    let broken = dir.path().join("broken.key");
    std::fs::write(
        &broken,
        "-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n",
    )?;
    match Tls::load(&TlsFiles {
        ca: files.ca.clone(),
        cert: files.cert.clone(),
        key: broken,
    }) {
        Err(e @ TlsError::Invalid { .. }) => ensure!(e.to_string().contains("broken.key"), "{e}"),
        other => bail!("a broken key gave {other:?}"),
    }
    // A key of another certificate: refused, saying so.
    let other = ca.write(dir.path(), "other", &["127.0.0.1"])?;
    match Tls::load(&TlsFiles {
        ca: files.ca.clone(),
        cert: files.cert.clone(),
        key: other.key,
    }) {
        Err(e @ TlsError::Invalid { .. }) => {
            ensure!(e.to_string().contains("belong together"), "{e}")
        }
        other => bail!("a key of another certificate gave {other:?}"),
    }
    Ok(())
}

/// Replaces `path` the way kubelet updates a mounted Secret: the new
/// content appears at once, never half written.
fn swap(path: &std::path::Path, content: impl AsRef<[u8]>) -> anyhow::Result<()> {
    let tmp = path.with_extension("new");
    std::fs::write(&tmp, content)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// How long a caller that must be served may keep trying (a loaded machine
/// can be slow to hand-shake; one that must be refused never gets in).
const SERVED: Duration = Duration::from_secs(10);

/// Proposes through fresh channels (a new connection, so a new handshake)
/// until it is served or `within` passes.
async fn served_within(endpoints: &[String], tls: &Tls, within: Duration) -> anyhow::Result<i64> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let client = quick(endpoints.to_vec(), Some(tls.clone()));
        match client
            .propose(&Command::AllocateProducerIds { count: 1 })
            .await
        {
            Ok(c) => return allocated(&c),
            Err(e) if tokio::time::Instant::now() > deadline => bail!("not served: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renewed_certificates_and_authorities_are_used_without_a_restart() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let old = Authority::new("old authority")?;
    let new = Authority::new("new authority")?;
    let controllers = old.write(dir.path(), "controllers", &["127.0.0.1"])?;
    let mut cluster = Cluster::start_tls(dir.path(), tls(&controllers)?).await?;
    let endpoints = cluster.endpoints();
    let client = cluster.client();
    let first = allocate(&client).await?;

    // A party of the new authority alone is refused while the controllers
    // show a certificate of the old one.
    let newcomer = tls(&new.write(dir.path(), "newcomer", &["newcomer"])?)?;
    let refused = quick(endpoints.clone(), Some(newcomer.clone()))
        .propose(&Command::AllocateProducerIds { count: 1 })
        .await;
    ensure!(refused.is_err(), "served before the rotation: {refused:?}");
    // A broker of the old authority, whose files are read again too.
    let broker_files = old.write(dir.path(), "broker", &["broker-0"])?;
    let broker = tls(&broker_files)?;
    let second = served_within(&endpoints, &broker, SERVED).await?;
    ensure!(second > first);

    // Change of authority, step one (as cert-manager and kubelet do it):
    // everyone trusts both authorities; the controllers show a
    // certificate of the new one. No process restarts.
    let both = format!("{}{}", old.ca_pem, new.ca_pem);
    swap(&broker_files.ca, &both)?;
    let (cert, key) = new.issue(&["127.0.0.1"])?;
    swap(&controllers.ca, &both)?;
    swap(&controllers.key, &key)?;
    swap(&controllers.cert, &cert)?;
    let wait = RELOAD_CHECK * 5;
    let third = served_within(&endpoints, &newcomer, wait).await?;
    let fourth = served_within(&endpoints, &broker, wait).await?;
    ensure!(first < second && second < third && third < fourth);

    // A broken renewal (a key that is not the certificate's) is refused;
    // the last good material stays in use.
    let (_, stray_key) = new.issue(&["127.0.0.1"])?;
    swap(&controllers.key, &stray_key)?;
    tokio::time::sleep(RELOAD_CHECK + Duration::from_millis(200)).await;
    let fifth = served_within(&endpoints, &newcomer, SERVED).await?;
    ensure!(fifth > fourth);
    swap(&controllers.key, &key)?;

    // Step two: the old authority is trusted no more. A controller
    // restarted with files read afresh is reached by the others over new
    // connections, made with the material they reloaded (still the old
    // one would be refused), and catches up.
    swap(&controllers.ca, &new.ca_pem)?;
    tokio::time::sleep(RELOAD_CHECK + Duration::from_millis(200)).await;
    let leader = cluster.leader().await?;
    let follower = (1..=3).find(|id| *id != leader).context("a follower")?;
    cluster.stop(follower).await?;
    let sixth = served_within(&endpoints, &newcomer, wait).await?;
    cluster.tls = Some(tls(&controllers)?);
    cluster.restart(follower).await?;
    let refused = quick(endpoints.clone(), Some(broker.clone()))
        .propose(&Command::AllocateProducerIds { count: 1 })
        .await;
    ensure!(
        refused.is_err(),
        "a certificate of the retired authority was served: {refused:?}"
    );
    let last = served_within(&endpoints, &newcomer, wait).await?;
    ensure!(fifth < sixth && sixth < last);
    let (index, _) = cluster.client().read_state().await?;
    let states = cluster.states_at(index).await?;
    ensure!(states.len() == 3 && states.values().all(|s| s == &states[&leader]));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_named_certificates_speak_raft() -> anyhow::Result<()> {
    use floe_controller::grpc::access::Access;
    use floe_controller::grpc::proto::admin_client::AdminClient;
    use floe_controller::grpc::proto::raft_peer_client::RaftPeerClient;
    use floe_controller::grpc::proto::{ClusterStatusRequest, RaftPayload};

    let dir = tempfile::tempdir()?;
    let ca = Authority::new("floe test authority")?;
    let controllers = ca.write(
        dir.path(),
        "controllers",
        &["127.0.0.1", "c.controllers.floe"],
    )?;
    let access = Access {
        peers: Some(vec!["*.controllers.floe"
            .parse()
            .map_err(anyhow::Error::msg)?]),
    };
    // The controllers' own certificate is a peer's: they elect and commit.
    let cluster = Cluster::start_tls_access(dir.path(), tls(&controllers)?, access).await?;
    let endpoints = cluster.endpoints();
    let leader = cluster.leader().await?;
    let vote = || RaftPayload {
        json: b"{}".to_vec(),
        data: Vec::new(),
    };

    // A broker's and an admin's certificates: the metadata port serves
    // them, the Raft port refuses them before it decodes anything, on
    // every controller.
    let broker = tls(&ca.write(dir.path(), "broker", &["broker-0.floe"])?)?;
    let admin = tls(&ca.write(dir.path(), "admin", &["admin.floe"])?)?;
    let first = served_within(&endpoints, &broker, SERVED).await?;
    for (party, name) in [(&broker, "broker-0.floe"), (&admin, "admin.floe")] {
        let channels = Channels::new(Some(party.clone()));
        AdminClient::new(channels.get(&endpoints[0])?)
            .get_cluster_status(ClusterStatusRequest {})
            .await?;
        for node in cluster.voters.values() {
            let refused = RaftPeerClient::new(channels.get(&node.raft_addr)?)
                .vote(vote())
                .await;
            match refused {
                Err(s) if s.code() == tonic::Code::PermissionDenied => {
                    ensure!(s.message().contains(name), "{}", s.message())
                }
                other => bail!("{name} spoke Raft: {other:?}"),
            }
        }
    }

    // Nothing of it disturbed the quorum.
    let second = served_within(&endpoints, &broker, SERVED).await?;
    ensure!(second == first + 1);
    let (index, _) = cluster.client().read_state().await?;
    let states = cluster.states_at(index).await?;
    ensure!(states.values().all(|s| s == &states[&leader]));
    Ok(())
}

#[tokio::test]
async fn limiting_names_without_tls_does_not_start() -> anyhow::Result<()> {
    use floe_controller::grpc::access::Access;
    use floe_controller::grpc::node::{self, Listeners, StartError};

    let dir = tempfile::tempdir()?;
    let listeners = Listeners::bind("127.0.0.1:0".parse()?, "127.0.0.1:0".parse()?).await?;
    let mut config = cluster::config(dir.path(), 1, &Default::default())?;
    config.access = Access {
        peers: Some(vec!["*.controllers.floe"
            .parse()
            .map_err(anyhow::Error::msg)?]),
    };
    match node::start(config, listeners).await {
        Err(e @ StartError::Config(_)) => ensure!(e.to_string().contains("needs TLS"), "{e}"),
        Err(other) => bail!("unexpected error {other}"),
        Ok(_) => bail!("started with limited names and no TLS"),
    }
    ensure!(
        !dir.path().join("controller-1").exists(),
        "the storage was opened"
    );
    Ok(())
}
