//! `floe controller`: one voter (or learner) of the metadata quorum, as its
//! own process. Configured like the pods the operator builds: one flag per
//! `FLOE_*` environment variable.
//!
//! The peers are given twice, in the same order: `--raft-peers` names each
//! controller's id and Raft address (`0=host:9093,...`) and `--controllers`
//! the metadata addresses brokers use (`host:9094,...`). A pristine
//! controller listed in `--raft-peers` forms the cluster with exactly those
//! voters; one not listed waits to be added (`AddController`).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;
use floe_controller::grpc::access::{Access, NamePattern};
use floe_controller::grpc::network::Channels;
use floe_controller::grpc::node::{self, Listeners, NodeConfig, RunningController};
use floe_controller::grpc::service::{BalancerConfig, LeaseConfig};
use floe_controller::grpc::tls::{Tls, TlsFiles};
use floe_controller::raft::{ControllerNode, NodeId, RaftMetrics};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::metrics::{serve_http, Reply};

/// Flags of `floe controller`.
#[derive(Debug, Clone, Args)]
pub struct ControllerArgs {
    /// This controller's Raft node id (the pod ordinal under the operator).
    #[arg(long, env = "FLOE_NODE_ID")]
    pub id: NodeId,
    /// Where Raft traffic from the other controllers arrives.
    #[arg(long, env = "FLOE_RAFT_LISTEN", default_value = "127.0.0.1:9093")]
    pub raft_listen: SocketAddr,
    /// Where brokers, the operator and tools call the metadata and admin
    /// services.
    #[arg(long, env = "FLOE_METADATA_LISTEN", default_value = "127.0.0.1:9094")]
    pub metadata_listen: SocketAddr,
    /// The initial voters: `<id>=<host>:<raft port>`, comma-separated.
    /// Empty: this controller joins an existing cluster when added.
    #[arg(
        long,
        env = "FLOE_RAFT_PEERS",
        value_delimiter = ',',
        default_value = ""
    )]
    pub raft_peers: Vec<String>,
    /// The voters' metadata addresses, in the order of `--raft-peers`.
    #[arg(
        long,
        env = "FLOE_CONTROLLERS",
        value_delimiter = ',',
        default_value = ""
    )]
    pub controllers: Vec<String>,
    /// Raft address advertised to the others (default: this id's entry in
    /// `--raft-peers`, else the listen address).
    #[arg(long, env = "FLOE_RAFT_ADVERTISE")]
    pub raft_advertise: Option<String>,
    /// Metadata address advertised to clients (default: this id's entry in
    /// `--controllers`, else the listen address).
    #[arg(long, env = "FLOE_METADATA_ADVERTISE")]
    pub metadata_advertise: Option<String>,
    /// Where the Raft log, vote and snapshots are kept.
    #[arg(long, env = "FLOE_DATA_DIR", default_value = "floe-controller-data")]
    pub data_dir: PathBuf,
    /// Cluster name (Raft refuses peers of another cluster name).
    #[arg(long, env = "FLOE_CLUSTER", default_value = "floe")]
    pub cluster: String,
    /// HTTP endpoint serving /metrics, /healthz and /readyz (ready once a
    /// leader is known).
    #[arg(long, env = "FLOE_HEALTH_LISTEN", default_value = "127.0.0.1:9645")]
    pub health_listen: SocketAddr,
    /// Raft heartbeat interval, in milliseconds.
    #[arg(long, env = "FLOE_RAFT_HEARTBEAT_MS", default_value_t = 100)]
    pub heartbeat_ms: u64,
    /// Shortest election timeout, in milliseconds (the longest is twice it).
    #[arg(long, env = "FLOE_RAFT_ELECTION_TIMEOUT_MS", default_value_t = 600)]
    pub election_timeout_ms: u64,
    /// How long a broker's lease renewal lets it acknowledge writes, in
    /// milliseconds.
    #[arg(long, env = "FLOE_BROKER_LEASE_MS", default_value_t = 5_000)]
    pub broker_lease_ms: u64,
    /// How much longer the leader waits past a lapsed lease before it fences
    /// the broker, in milliseconds.
    #[arg(long, env = "FLOE_BROKER_LEASE_GRACE_MS", default_value_t = 1_000)]
    pub broker_lease_grace_ms: u64,
    /// How often the leader checks whether the brokers' load (partitions,
    /// weighted by measured bytes per second) is out of balance and, if so,
    /// rebalances by itself, in seconds; 0 turns automatic rebalancing off.
    #[arg(long, env = "FLOE_REBALANCE_INTERVAL_S", default_value_t = 30)]
    pub rebalance_interval_s: u64,
    /// How long no partition may have changed leader (no move, no
    /// failover) before an automatic rebalance, in seconds.
    #[arg(long, env = "FLOE_REBALANCE_COOLDOWN_S", default_value_t = 300)]
    pub rebalance_cooldown_s: u64,
    /// Mutual TLS on both ports and towards the other controllers.
    #[command(flatten)]
    pub tls: ControllerTlsArgs,
    /// With TLS: the certificate names that may speak Raft to this
    /// controller (its peers), comma-separated; a name or `*.` and a name.
    /// Default: any certificate of the authority.
    #[arg(long, env = "FLOE_CONTROLLER_TLS_PEER_NAMES", value_delimiter = ',')]
    pub controller_tls_peer_names: Vec<String>,
}

/// Mutual TLS with the controllers (docs/controller.md, "TLS"): all three
/// files or none. On `floe controller` they secure its own ports and its
/// calls to the other controllers; on brokers and `floe admin`, their calls
/// to the controllers.
#[derive(Debug, Clone, Default, Args)]
pub struct ControllerTlsArgs {
    /// PEM certificate of the authority that signs every controller's and
    /// client's certificate (a cert-manager Secret's `ca.crt`).
    #[arg(long, env = "FLOE_CONTROLLER_TLS_CA")]
    pub controller_tls_ca: Option<PathBuf>,
    /// PEM certificate (chain) of this process (`tls.crt`).
    #[arg(long, env = "FLOE_CONTROLLER_TLS_CERT")]
    pub controller_tls_cert: Option<PathBuf>,
    /// PEM private key of that certificate (`tls.key`).
    #[arg(long, env = "FLOE_CONTROLLER_TLS_KEY")]
    pub controller_tls_key: Option<PathBuf>,
}

impl ControllerTlsArgs {
    /// The TLS material, read now; `None` when no flag is given.
    pub fn load(&self) -> anyhow::Result<Option<Tls>> {
        match (
            &self.controller_tls_ca,
            &self.controller_tls_cert,
            &self.controller_tls_key,
        ) {
            (None, None, None) => Ok(None),
            (Some(ca), Some(cert), Some(key)) => Ok(Some(Tls::load(&TlsFiles {
                ca: ca.clone(),
                cert: cert.clone(),
                key: key.clone(),
            })?)),
            _ => bail!(
                "give all of --controller-tls-ca, --controller-tls-cert and \
                 --controller-tls-key, or none of them"
            ),
        }
    }

    /// Channels to the controllers, over TLS when configured.
    pub fn channels(&self) -> anyhow::Result<Channels> {
        Ok(Channels::new(self.load()?))
    }
}

impl ControllerArgs {
    /// Who may speak Raft, from `--controller-tls-peer-names`.
    pub fn access(&self) -> anyhow::Result<Access> {
        let names: Vec<&String> = self
            .controller_tls_peer_names
            .iter()
            .filter(|n| !n.trim().is_empty())
            .collect();
        if names.is_empty() {
            return Ok(Access::default());
        }
        if self.tls.controller_tls_ca.is_none() {
            bail!(
                "--controller-tls-peer-names needs --controller-tls-ca, \
                 --controller-tls-cert and --controller-tls-key"
            );
        }
        let peers = names
            .into_iter()
            .map(|n| {
                n.parse::<NamePattern>()
                    .map_err(|e| anyhow::anyhow!("--controller-tls-peer-names: {e}"))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Access { peers: Some(peers) })
    }

    /// The initial voters from `--raft-peers` and `--controllers`.
    pub fn voters(&self) -> anyhow::Result<BTreeMap<NodeId, ControllerNode>> {
        let peers: Vec<&String> = self.raft_peers.iter().filter(|p| !p.is_empty()).collect();
        let apis: Vec<&String> = self.controllers.iter().filter(|p| !p.is_empty()).collect();
        if peers.len() != apis.len() {
            bail!(
                "--raft-peers names {} controllers but --controllers {}: give each voter's \
                 metadata address, in the same order",
                peers.len(),
                apis.len()
            );
        }
        let mut voters = BTreeMap::new();
        for (peer, api) in peers.into_iter().zip(apis) {
            let (id, raft) = peer.split_once('=').with_context(|| {
                format!("--raft-peers entry {peer:?} is not <id>=<host>:<port>")
            })?;
            let id: NodeId = id
                .trim()
                .parse()
                .with_context(|| format!("--raft-peers entry {peer:?}: the id is not a number"))?;
            for addr in [raft, api.as_str()] {
                if addr
                    .rsplit_once(':')
                    .is_none_or(|(_, port)| port.parse::<u16>().is_err())
                {
                    bail!("controller address {addr:?} is not <host>:<port>");
                }
            }
            if voters
                .insert(id, ControllerNode::new(raft.trim(), api.trim()))
                .is_some()
            {
                bail!("--raft-peers names controller {id} twice");
            }
        }
        Ok(voters)
    }
}

/// A running `floe controller`.
pub struct ControllerProcess {
    pub node: RunningController,
    pub health_addr: SocketAddr,
    stop: CancellationToken,
}

impl ControllerProcess {
    /// Binds, starts the controller and its health endpoint.
    pub async fn start(args: ControllerArgs) -> anyhow::Result<ControllerProcess> {
        let voters = args.voters()?;
        let listeners = Listeners::bind(args.raft_listen, args.metadata_listen)
            .await
            .with_context(|| {
                format!(
                    "cannot listen on {} (Raft) and {} (metadata)",
                    args.raft_listen, args.metadata_listen
                )
            })?;
        let (raft_addr, api_addr) = listeners.addrs()?;
        let own = voters.get(&args.id);
        let advertised = ControllerNode::new(
            args.raft_advertise
                .clone()
                .or_else(|| own.map(|n| n.raft_addr.clone()))
                .unwrap_or_else(|| raft_addr.to_string()),
            args.metadata_advertise
                .clone()
                .or_else(|| own.map(|n| n.api_addr.clone()))
                .unwrap_or_else(|| api_addr.to_string()),
        );
        let mut raft =
            node::default_raft_config(&args.cluster).map_err(|e| anyhow::anyhow!("{e}"))?;
        raft.heartbeat_interval = args.heartbeat_ms;
        raft.election_timeout_min = args.election_timeout_ms;
        raft.election_timeout_max = args.election_timeout_ms * 2;
        let raft = raft.validate().context(
            "Raft timing flags: the heartbeat must be shorter than the election timeout",
        )?;
        let config = NodeConfig {
            id: args.id,
            advertised,
            initial_voters: voters,
            data_dir: args.data_dir.clone(),
            raft,
            bootstrap_grace: Duration::from_millis(args.election_timeout_ms),
            leases: LeaseConfig {
                lease: Duration::from_millis(args.broker_lease_ms),
                grace: Duration::from_millis(args.broker_lease_grace_ms),
            },
            tls: args.tls.load()?,
            access: args.access()?,
            balancer: BalancerConfig {
                interval: (args.rebalance_interval_s > 0)
                    .then(|| Duration::from_secs(args.rebalance_interval_s)),
                cooldown: Duration::from_secs(args.rebalance_cooldown_s),
            },
        };
        let node = node::start(config, listeners).await?;

        let stop = CancellationToken::new();
        let health = TcpListener::bind(args.health_listen)
            .await
            .with_context(|| format!("cannot listen on {} (health)", args.health_listen))?;
        let health_addr = health.local_addr()?;
        let raft = node.raft.clone();
        let gauges = RaftGauges::default();
        let registry = gauges.registry();
        tokio::spawn(serve_http(health, stop.clone(), move |path| {
            let metrics = raft.metrics().borrow().clone();
            match path {
                "/healthz" => Reply::ok(),
                "/readyz" => match metrics.current_leader {
                    Some(_) => Reply::ok(),
                    None => Reply::unavailable("no leader known yet"),
                },
                "/metrics" => {
                    gauges.update(&metrics);
                    let mut body = String::new();
                    match encode(&mut body, &registry) {
                        Ok(()) => Reply::metrics(body),
                        Err(e) => Reply::unavailable(format!("cannot encode metrics: {e}")),
                    }
                }
                _ => Reply::not_found(),
            }
        }));
        tracing::info!(id = args.id, %raft_addr, metadata = %api_addr, health = %health_addr, "controller serving");
        Ok(ControllerProcess {
            node,
            health_addr,
            stop,
        })
    }

    /// Stops serving and shuts Raft down.
    pub async fn stop(self) {
        self.stop.cancel();
        if let Err(e) = self.node.shutdown().await {
            tracing::warn!(error = %e, "controller shutdown");
        }
    }
}

/// The controller's series (names in docs/metrics.md).
#[derive(Default, Clone)]
struct RaftGauges {
    is_leader: Gauge,
    term: Gauge,
    last_log_index: Gauge,
    last_applied_index: Gauge,
    voters: Gauge,
    leader_id: Gauge,
}

impl RaftGauges {
    fn registry(&self) -> std::sync::Arc<Registry> {
        let mut r = Registry::with_prefix("floe_controller");
        r.register(
            "is_leader",
            "1 on the controller that leads",
            self.is_leader.clone(),
        );
        r.register("term", "Current Raft term", self.term.clone());
        r.register(
            "last_log_index",
            "Last Raft log index written locally",
            self.last_log_index.clone(),
        );
        r.register(
            "last_applied_index",
            "Last Raft log index applied to the metadata state",
            self.last_applied_index.clone(),
        );
        r.register(
            "voters",
            "Voters in the current configuration",
            self.voters.clone(),
        );
        r.register(
            "leader_id",
            "Id of the known leader, -1 if none",
            self.leader_id.clone(),
        );
        std::sync::Arc::new(r)
    }

    fn update(&self, m: &RaftMetrics) {
        let gauge = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        self.is_leader
            .set(i64::from(m.current_leader == Some(m.id)));
        self.term.set(gauge(m.current_term));
        self.last_log_index
            .set(gauge(m.last_log_index.unwrap_or(0)));
        self.last_applied_index
            .set(gauge(m.last_applied.map_or(0, |l| l.index)));
        self.voters
            .set(gauge(m.membership_config.voter_ids().count() as u64));
        self.leader_id.set(m.current_leader.map_or(-1, gauge));
    }
}
