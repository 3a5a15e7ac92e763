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
use floe_controller::grpc::node::{self, Listeners, StartError};
use floe_controller::grpc::proto::metadata_client::MetadataClient;
use floe_controller::grpc::proto::ReadStateRequest;
use floe_controller::grpc::tls::{Tls, TlsError, TlsFiles};
use floe_controller::grpc::ControllerClient;
use floe_controller::model::{Command, Outcome};
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint};

#[path = "support/cluster.rs"]
mod cluster;

#[path = "support/certs.rs"]
mod certs;

use certs::{Authority, Files};
use cluster::{config, Cluster};

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
    let first = allocated(
        &client
            .propose(&Command::AllocateProducerIds { count: 1 })
            .await?,
    )?;
    // Another party (a broker) with its own certificate of the authority.
    let broker = ca.write(dir.path(), "broker", &["broker-0.floe"])?;
    let broker = quick(endpoints.clone(), Some(tls(&broker)?));
    let second = allocated(
        &broker
            .propose(&Command::AllocateProducerIds { count: 1 })
            .await?,
    )?;
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
    let third = allocated(
        &client
            .propose(&Command::AllocateProducerIds { count: 1 })
            .await?,
    )?;
    ensure!(third == second + 1, "{first} {second} {third}");
    let states = cluster.states_at(client.read_state().await?.0).await?;
    ensure!(states.values().all(|s| s == &states[&1]), "replicas differ");
    Ok(())
}

#[tokio::test]
async fn unusable_tls_files_are_named_and_stop_the_controller() -> anyhow::Result<()> {
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

    // PEM-shaped but broken key: the controller does not start (before it
    // opens its storage) and says why.
    let broken = dir.path().join("broken.key");
    std::fs::write(
        &broken,
        "-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n",
    )?;
    let tls = Tls::load(&TlsFiles {
        ca: files.ca.clone(),
        cert: files.cert.clone(),
        key: broken,
    })?;
    let listeners = Listeners::bind("127.0.0.1:0".parse()?, "127.0.0.1:0".parse()?).await?;
    let mut config = config(dir.path(), 1, &Default::default())?;
    config.tls = Some(tls);
    match node::start(config, listeners).await {
        Err(e @ StartError::Tls(_)) => ensure!(e.to_string().contains("TLS"), "{e}"),
        Err(other) => bail!("unexpected error {other}"),
        Ok(_) => bail!("a controller started with a broken key"),
    }
    ensure!(
        !dir.path().join("controller-1").exists(),
        "the storage was opened"
    );
    Ok(())
}
