//! `floe broker`: one broker of a cluster, as its own process. It keeps no
//! metadata of its own: it registers with the controller quorum, renews a
//! lease, follows the metadata through a [`Mirror`], and serves Kafka for the
//! partitions the controller says it leads. Data lives in the shared object
//! store (and, in `volume` WAL mode, briefly in a local WAL).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use floe_controller::grpc::client::{ClientOptions, ControllerClient, Mirror};
use floe_controller::grpc::network::Channels;
use tokio_util::sync::CancellationToken;

use crate::broker::{Broker, BrokerConfig};
use crate::cluster::Cluster;
use crate::controller_node::ControllerTlsArgs;
use crate::leadership::{self, Lease, Registration};
use crate::local::{self, Parts, ServingArgs};
use crate::storage::WalMode;

/// Flags of `floe broker`: every flag also reads an environment variable.
#[derive(Debug, Clone, clap::Args)]
pub struct BrokerArgs {
    /// This broker's id: stable across restarts (the pod ordinal under the
    /// operator), unique in the cluster.
    #[arg(long, env = "FLOE_BROKER_ID")]
    pub node_id: i32,
    /// Kafka listener address.
    #[arg(long, env = "FLOE_LISTEN", default_value = "127.0.0.1:9092")]
    pub listen: SocketAddr,
    /// host:port that clients are told to connect to (default: the listen address).
    #[arg(long, env = "FLOE_ADVERTISED_LISTENER")]
    pub advertised_listener: Option<String>,
    /// The controllers' metadata addresses (`host:port`, comma-separated).
    #[arg(long, env = "FLOE_CONTROLLERS", value_delimiter = ',', required = true)]
    pub controllers: Vec<String>,
    /// Object store URL shared by every broker: s3://bucket/prefix (AWS_*
    /// variables apply), gs://bucket/prefix (GOOGLE_*), az://container/prefix
    /// (AZURE_*; gs:// and az:// also take ?option=value, see
    /// docs/storage.md), file:///path (one machine only) or memory:// (tests).
    #[arg(long, env = "FLOE_OBJECT_STORE")]
    pub object_store: String,
    /// Where produce is acknowledged: after the object PUT and index commit
    /// (`object`: no local state, partitions fail over at once), or after a
    /// local WAL fsync (`volume`: lower latency; a dead broker's partitions
    /// wait for it to come back with its volume).
    #[arg(long, env = "FLOE_WAL_MODE", value_enum, default_value = "object")]
    pub wal_mode: WalMode,
    /// The WAL directory (`volume` mode).
    #[arg(long, env = "FLOE_DATA_DIR", default_value = "floe-broker-data")]
    pub data_dir: PathBuf,
    /// The zone or rack this broker runs in (reported to clients as its rack).
    #[arg(long, env = "FLOE_RACK")]
    pub rack: Option<String>,
    /// The cluster id reported to Kafka clients.
    #[arg(long, env = "FLOE_CLUSTER", default_value = "floe")]
    pub cluster: String,
    /// Address of the HTTP endpoint serving /metrics, /healthz and /readyz
    /// (ready while the controller lease is valid).
    #[arg(long, env = "FLOE_HEALTH_LISTEN", default_value = "127.0.0.1:9644")]
    pub health_listen: SocketAddr,
    /// On SIGTERM, how long the broker may spend moving its partitions to
    /// other brokers before it stops anyway (uploading everything first).
    #[arg(long, env = "FLOE_DRAIN_BUDGET_MS", default_value_t = 20_000)]
    pub drain_budget_ms: u64,
    /// Poll this instance metadata service (e.g. http://169.254.169.254 on
    /// EC2) for a spot interruption notice; on one, drain and exit as on
    /// SIGTERM, well inside the two-minute warning. Off when unset.
    #[arg(long, env = "FLOE_IMDS_ENDPOINT")]
    pub imds_endpoint: Option<String>,
    /// How often the instance metadata service is polled, in milliseconds.
    #[arg(long, env = "FLOE_IMDS_POLL_MS", default_value_t = 1_000)]
    pub imds_poll_ms: u64,
    #[command(flatten)]
    pub serving: ServingArgs,
    /// Mutual TLS with the controllers.
    #[command(flatten)]
    pub controller_tls: ControllerTlsArgs,
}

impl BrokerArgs {
    pub fn validate(&self) -> anyhow::Result<()> {
        self.serving.validate()?;
        local::check_advertised(self.advertised_listener.as_deref())?;
        anyhow::ensure!(self.node_id >= 0, "--node-id must not be negative");
        if let Some(endpoint) = &self.imds_endpoint {
            floe_spot::imds::Imds::new(endpoint)
                .map_err(|e| anyhow::anyhow!("--imds-endpoint {endpoint:?}: {e}"))?;
        }
        anyhow::ensure!(
            !self.controllers.is_empty() && self.controllers.iter().all(|c| !c.trim().is_empty()),
            "--controllers must name at least one controller metadata address (host:port)"
        );
        Ok(())
    }
}

/// A running cluster broker.
pub struct BrokerNode {
    pub broker: Arc<Broker>,
    pub drain_budget: Duration,
    /// Cancelled when the machine is about to go (a spot interruption
    /// notice): the broker should drain and exit, as on SIGTERM.
    pub interrupted: CancellationToken,
    pub addr: SocketAddr,
    pub health_addr: SocketAddr,
    shutdown: CancellationToken,
    server: tokio::task::JoinHandle<()>,
}

/// What a broker of a quorum is started from (`floe broker`, and the broker
/// of `floe local` next to its in-process one-voter quorum).
pub(crate) struct Member<'a> {
    pub node_id: i32,
    pub listener: tokio::net::TcpListener,
    pub advertised_listener: Option<&'a str>,
    pub controllers: Vec<String>,
    /// Channels to the controllers (TLS or plaintext).
    pub channels: Channels,
    pub objects: crate::storage::objects::Objects,
    pub wal_mode: WalMode,
    pub wal_dir: PathBuf,
    pub rack: Option<String>,
    pub cluster_id: String,
    pub serving: &'a ServingArgs,
    pub metrics_listen: SocketAddr,
    pub drain_budget: Duration,
    pub imds: Option<(String, Duration)>,
}

impl BrokerNode {
    pub async fn start(args: BrokerArgs) -> anyhow::Result<BrokerNode> {
        args.validate()?;
        let listener = local::bind(args.listen).await?;
        let objects = local::open_objects(&args.object_store).await?;
        let channels = args.controller_tls.channels()?;
        start_member(Member {
            node_id: args.node_id,
            listener,
            advertised_listener: args.advertised_listener.as_deref(),
            controllers: args
                .controllers
                .iter()
                .map(|c| c.trim().to_owned())
                .collect(),
            channels,
            objects,
            wal_mode: args.wal_mode,
            wal_dir: args.data_dir.join("wal"),
            rack: args.rack.clone(),
            cluster_id: args.cluster.clone(),
            serving: &args.serving,
            metrics_listen: args.health_listen,
            drain_budget: Duration::from_millis(args.drain_budget_ms),
            imds: args
                .imds_endpoint
                .clone()
                .map(|e| (e, Duration::from_millis(args.imds_poll_ms.max(100)))),
        })
        .await
    }

    /// Moves every partition this broker leads to other brokers (through
    /// the controller: each is fenced, flushed and handed off) and waits
    /// until it leads none, for at most `budget`. Returns whether it did.
    pub async fn drain(&self, budget: Duration) -> bool {
        let started = std::time::Instant::now();
        let id = self.broker.config.node_id;
        let Some(mirror) = self.broker.cluster.mirror().cloned() else {
            return false;
        };
        let cmd = floe_controller::model::Command::DrainBroker { id };
        match tokio::time::timeout(budget, self.broker.cluster.propose(cmd)).await {
            Ok(Ok(outcome)) => tracing::info!(?outcome, "draining: partitions are moving away"),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "cannot drain; stopping with a full upload instead");
                return false;
            }
            Err(_) => {
                tracing::warn!(
                    ?budget,
                    "the drain request timed out; stopping with a full upload instead"
                );
                return false;
            }
        }
        let leads_nothing = |s: &floe_controller::model::MetadataState| {
            s.topics
                .values()
                .flat_map(|t| &t.partitions)
                .all(|p| p.leader != id)
        };
        let mut changes = mirror.subscribe();
        let deadline = tokio::time::Instant::now() + budget.saturating_sub(started.elapsed());
        loop {
            if mirror.read(leads_nothing) {
                tracing::info!(
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "drained: this broker leads no partition"
                );
                return true;
            }
            match tokio::time::timeout_at(deadline, changes.changed()).await {
                Ok(Ok(())) => {}
                _ => {
                    tracing::warn!(
                        ?budget,
                        "not drained within the budget; stopping with a full upload"
                    );
                    return false;
                }
            }
        }
    }

    /// Stop serving, upload everything that is durable, and return.
    pub async fn stop(self) {
        self.shutdown.cancel();
        let _ = self.server.await;
        self.broker.storage.shutdown().await;
    }
}

/// Polls the instance metadata service until a notice says this machine is
/// going (a spot interruption), then cancels `interrupted`. A rebalance
/// recommendation is only logged: it carries no deadline, and draining on
/// every one would move partitions back and forth for nothing.
async fn watch_imds(
    mut imds: floe_spot::imds::Imds,
    every: Duration,
    interrupted: CancellationToken,
    stop: CancellationToken,
) {
    use floe_spot::{SignalKind, Urgency};
    let mut advised = false;
    let mut failing = false;
    loop {
        match imds.signals(std::time::SystemTime::now()).await {
            Ok(signals) => {
                failing = false;
                for s in signals {
                    let urgent = matches!(s.urgency, Urgency::Immediate | Urgency::Imminent);
                    if urgent {
                        let left = s
                            .deadline
                            .duration_since(std::time::SystemTime::now())
                            .unwrap_or_default();
                        tracing::warn!(kind = s.kind.as_str(), detail = %s.detail, seconds_left = left.as_secs(), "this machine is being interrupted: draining");
                        interrupted.cancel();
                        return;
                    }
                    if s.kind == SignalKind::RebalanceRecommendation && !advised {
                        tracing::info!(detail = %s.detail, "spot rebalance recommendation (no drain until an interruption notice)");
                        advised = true;
                    }
                }
            }
            Err(e) if !failing => {
                tracing::warn!(error = %e, "instance metadata service unreachable; retrying");
                failing = true;
            }
            Err(_) => {}
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
    }
}

/// Registers with the quorum, recovers the storage engine for the
/// partitions this incarnation leads, and serves.
pub(crate) async fn start_member(m: Member<'_>) -> anyhow::Result<BrokerNode> {
    let listener = m.listener;
    let addr = listener.local_addr()?;
    let endpoints = m.controllers.clone();
    let client = ControllerClient::with_channels(
        endpoints.clone(),
        ClientOptions::default(),
        m.channels.clone(),
    );
    let mirror = Mirror::start(client.clone());
    let cluster = Arc::new(Cluster::quorum(client, mirror));
    let (host, port) = local::advertised(m.advertised_listener, addr);
    let me = Registration {
        id: m.node_id,
        host: host.clone(),
        port,
        rack: m.rack.clone(),
        volume_wal: m.wal_mode == WalMode::Volume,
    };
    let epoch = leadership::register(&cluster, &me).await.with_context(|| {
        format!(
            "cannot register broker {} with the controllers {} ({})",
            me.id,
            endpoints.join(","),
            m.channels.unreachable_hint()
        )
    })?;
    let lease = Arc::new(Lease::default());
    lease.registered(epoch);
    tracing::info!(
        broker = me.id,
        epoch,
        "registered with the controller quorum"
    );
    let stop = CancellationToken::new();
    // Renewals need their own short deadline: one that takes a lease is useless.
    let heartbeats = ControllerClient::with_channels(
        endpoints,
        ClientOptions {
            deadline: Duration::from_millis(1_000),
            attempt_timeout: Duration::from_millis(500),
        },
        m.channels,
    );
    // The first renewal before serving: without it every write would be
    // refused until the renewal task's first round trip.
    let sent = std::time::Instant::now();
    match heartbeats.heartbeat(me.id, epoch).await {
        Ok(granted) => lease.renewed(sent, granted),
        Err(e) => {
            tracing::warn!(error = %e, "first lease renewal failed; retrying in the background")
        }
    }
    tokio::spawn(leadership::run_lease(
        heartbeats,
        cluster.clone(),
        lease.clone(),
        me.clone(),
        stop.clone(),
    ));
    // What this incarnation leads now: the WAL (volume mode) replays into these.
    let partitions = {
        let plan = cluster
            .mirror()
            .map(|m| m.read(|s| leadership::plan(s, me.id, epoch, &Default::default())))
            .unwrap_or_default();
        plan.open
    };
    let wal_dir = m.wal_dir.clone();
    if m.wal_mode == WalMode::Volume {
        std::fs::create_dir_all(&wal_dir)
            .with_context(|| format!("cannot create the WAL directory {}", wal_dir.display()))?;
    }
    // The URL's secret options (gs://, az://) are redacted in the description.
    let objects_description = m.objects.describe().to_owned();
    let running = local::serve(Parts {
        listener,
        config: BrokerConfig {
            node_id: me.id,
            advertised_host: host,
            advertised_port: port,
            cluster_id: m.cluster_id.clone(),
            auto_create_topics: m.serving.auto_create_topics,
            default_partitions: m.serving.num_partitions,
            max_request_bytes: m.serving.max_request_bytes,
        },
        cluster: cluster.clone(),
        objects: m.objects,
        storage: m.serving.storage_config(m.wal_mode, wal_dir, me.id),
        partitions,
        serving: m.serving,
        metrics_listen: m.metrics_listen,
        lease: Some(lease.clone()),
    })
    .await?;
    tokio::spawn(leadership::report_loads(
        cluster.clone(),
        running.broker.storage.clone(),
        lease.clone(),
        me.id,
        stop.clone(),
    ));
    tokio::spawn(leadership::follow(
        cluster,
        running.broker.storage.clone(),
        lease,
        me.id,
        stop.clone(),
    ));
    let interrupted = CancellationToken::new();
    if let Some((endpoint, every)) = &m.imds {
        let imds = floe_spot::imds::Imds::new(endpoint)?;
        tokio::spawn(watch_imds(imds, *every, interrupted.clone(), stop.clone()));
    }
    let shutdown = running.shutdown.clone();
    tokio::spawn(async move {
        shutdown.cancelled().await;
        stop.cancel();
    });
    tracing::info!(broker = me.id, %addr, objects = %objects_description, wal = ?m.wal_mode, "Floe broker is ready");
    Ok(BrokerNode {
        interrupted,
        drain_budget: m.drain_budget,
        broker: running.broker,
        addr: running.addr,
        health_addr: running.metrics_addr,
        shutdown: running.shutdown,
        server: running.server,
    })
}
