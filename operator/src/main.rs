//! `floe-operator`: reconciles `KafkaCluster` resources. Replicas elect a
//! leader with a Lease; only the leader runs the controller and, unless
//! `--spot-watch=false`, the spot watchers (brokers on nodes that are going
//! are drained early, see `floe_operator::spot`). Every replica serves
//! `/metrics`, `/healthz` and `/readyz`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _};
use clap::Parser;
use floe_operator::admin_grpc::GrpcConnector;
use floe_operator::controller::{self, Context};
use floe_operator::lease::{run_elected, LeaderElector, LeaseConfig};
use floe_operator::metrics::Metrics;
use floe_operator::reclaim::S3Reclaimer;
use floe_operator::spot::{self, SpotConfig, SpotContext};
use kube::runtime::events::{Recorder, Reporter};
use kube::Client;
use tokio_util::sync::CancellationToken;

/// The operator's configuration; every flag has an environment variable.
#[derive(Debug, Parser)]
#[command(name = "floe-operator", version, about)]
struct Config {
    /// Address of `/metrics`, `/healthz` and `/readyz`.
    #[arg(
        long,
        env = "FLOE_OPERATOR_METRICS_LISTEN",
        default_value = "0.0.0.0:8080"
    )]
    metrics_listen: SocketAddr,
    /// Elect a leader with a Lease (turn off only for a single replica).
    #[arg(long, env = "FLOE_OPERATOR_LEADER_ELECTION", default_value_t = true, action = clap::ArgAction::Set)]
    leader_election: bool,
    /// Name of the Lease.
    #[arg(
        long,
        env = "FLOE_OPERATOR_LEASE_NAME",
        default_value = "floe-operator"
    )]
    lease_name: String,
    /// Namespace of the Lease (the operator's own; the Downward API sets it).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    lease_namespace: String,
    /// This replica's identity in the Lease (its pod name).
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
    /// Seconds a Lease stays valid without renewal.
    #[arg(long, env = "FLOE_OPERATOR_LEASE_DURATION", default_value_t = 15)]
    lease_duration_secs: u64,
    /// Seconds a leader keeps leading while renewals fail.
    #[arg(long, env = "FLOE_OPERATOR_RENEW_DEADLINE", default_value_t = 10)]
    renew_deadline_secs: u64,
    /// Seconds between Lease reads and renewals.
    #[arg(long, env = "FLOE_OPERATOR_RETRY_PERIOD", default_value_t = 2)]
    retry_period_secs: u64,
    /// Watch Nodes for interruption signals (Node Termination Handler and
    /// Karpenter taints, cordons, deletions) and drain the brokers on them
    /// through the controllers before they are evicted.
    #[arg(long, env = "FLOE_OPERATOR_SPOT_WATCH", default_value_t = true, action = clap::ArgAction::Set)]
    spot_watch: bool,
    /// Seconds between two looks of the spot watchers at a cluster's nodes
    /// (the nodes themselves are watched, so a look costs no API call).
    #[arg(long, env = "FLOE_OPERATOR_SPOT_INTERVAL", default_value_t = 2)]
    spot_interval_secs: u64,
    /// Also poll the EC2 API (spot requests, instance state, scheduled
    /// events) for the instances behind the brokers' nodes. Credentials and
    /// region come from the standard AWS chain.
    #[cfg(feature = "ec2")]
    #[arg(long, env = "FLOE_OPERATOR_EC2_WATCH", default_value_t = false, action = clap::ArgAction::Set)]
    ec2_watch: bool,
    /// EC2 endpoint override (an EC2-compatible endpoint, or a test server).
    #[cfg(feature = "ec2")]
    #[arg(long, env = "FLOE_OPERATOR_EC2_ENDPOINT")]
    ec2_endpoint: Option<String>,
    /// Seconds between two EC2 polls per cluster (API calls count against the
    /// account's rate limits).
    #[cfg(feature = "ec2")]
    #[arg(long, env = "FLOE_OPERATOR_EC2_INTERVAL", default_value_t = 10)]
    ec2_interval_secs: u64,
}

impl Config {
    fn lease(&self) -> anyhow::Result<LeaseConfig> {
        if !(self.retry_period_secs < self.renew_deadline_secs
            && self.renew_deadline_secs < self.lease_duration_secs)
        {
            bail!(
                "lease timings must satisfy retry period ({}s) < renew deadline ({}s) < lease duration ({}s)",
                self.retry_period_secs,
                self.renew_deadline_secs,
                self.lease_duration_secs
            );
        }
        let identity = match &self.identity {
            Some(id) if !id.is_empty() => id.clone(),
            _ => std::env::var("HOSTNAME")
                .ok()
                .filter(|h| !h.is_empty())
                .context(
                "set --identity (POD_NAME) or HOSTNAME: the Lease needs this replica's identity",
            )?,
        };
        Ok(LeaseConfig {
            name: self.lease_name.clone(),
            namespace: self.lease_namespace.clone(),
            identity,
            lease_duration: Duration::from_secs(self.lease_duration_secs),
            renew_deadline: Duration::from_secs(self.renew_deadline_secs),
            renew_every: Duration::from_secs(self.retry_period_secs),
        })
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,kube=warn".into()),
        )
        .init();
    let config = Config::parse();
    let lease = config.leader_election.then(|| config.lease()).transpose()?;
    // One TLS provider for kube and S3; other builds of the workspace may
    // compile rustls with a second one, so pick explicitly.
    let _ = rustls::crypto::ring::default_provider().install_default();

    let shutdown = CancellationToken::new();
    let metrics = Arc::new(Metrics::new());
    let listener = tokio::net::TcpListener::bind(config.metrics_listen)
        .await
        .with_context(|| format!("binding --metrics-listen {}", config.metrics_listen))?;
    let endpoints = tokio::spawn(floe_operator::endpoints::serve(
        listener,
        metrics.clone(),
        shutdown.clone(),
    ));

    let client = Client::try_default()
        .await
        .context("no Kubernetes configuration (in-cluster service account or kubeconfig)")?;
    client
        .apiserver_version()
        .await
        .context("the Kubernetes API server did not answer")?;
    metrics.set_ready(true);

    let identity = lease.as_ref().map(|l| l.identity.clone());
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: "floe-operator".into(),
            instance: identity,
        },
    );
    let admin = Arc::new(GrpcConnector::default());
    #[allow(unused_mut)]
    let mut extra_sources: Vec<spot::SourceFactory> = Vec::new();
    #[cfg(feature = "ec2")]
    if config.spot_watch && config.ec2_watch {
        let ec2 = floe_spot::ec2::client(&floe_spot::ec2::Ec2Config {
            endpoint: config.ec2_endpoint.clone(),
            region: None,
        })
        .await;
        let every = Duration::from_secs(config.ec2_interval_secs.max(1));
        tracing::info!(?every, "spot: polling the EC2 API too");
        extra_sources.push(Arc::new(move |view| {
            Box::new(spot::Throttled::new(
                floe_spot::ec2::Ec2Source::new(ec2.clone(), view),
                every,
            ))
        }));
    }
    let spot = config.spot_watch.then(|| {
        Arc::new(SpotContext {
            extra_sources,
            client: client.clone(),
            admin: admin.clone(),
            recorder: Some(recorder.clone()),
            metrics: metrics.spot.clone(),
            config: SpotConfig {
                interval: Duration::from_secs(config.spot_interval_secs.max(1)),
                ..SpotConfig::default()
            },
        })
    });
    if spot.is_none() {
        tracing::info!("spot watch off (--spot-watch=false): brokers on nodes that are going drain only on SIGTERM");
    }
    let ctx = Arc::new(Context {
        recorder,
        client: client.clone(),
        admin,
        reclaimer: Arc::new(S3Reclaimer),
        metrics: metrics.clone(),
    });

    let signal = shutdown.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutting down");
        signal.cancel();
    });

    let work = move |token: CancellationToken| {
        let ctx = ctx.clone();
        let spot = spot.clone();
        async move {
            let stop = token.clone();
            tokio::join!(
                controller::run(ctx, async move { stop.cancelled().await }),
                async move {
                    if let Some(spot) = spot {
                        spot::run(spot, token).await;
                    }
                },
            );
        }
    };
    match lease {
        Some(lease) => {
            let elector = LeaderElector::new(client, lease);
            run_elected(&elector, &metrics, shutdown.clone(), work).await;
        }
        None => {
            metrics.set_leader(true);
            work(shutdown.clone()).await;
        }
    }
    shutdown.cancel();
    let _ = endpoints.await;
    Ok(())
}

async fn wait_for_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing a SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
