//! The one-process local mode: a single-voter metadata store and one broker
//! in the same process, data under one directory, Kafka on one listener.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::broker::{Broker, BrokerConfig};
use crate::cluster::{Cluster, GroupOffsets};
use crate::gc::Gc;
use crate::leadership::Lease;
use crate::storage::compactor::CompactionConfig;
use crate::storage::objects::Objects;
use crate::storage::{PartitionMeta, Storage, StorageConfig, WalMode};
use floe_controller::model::PartitionId;

/// The local mode's one broker.
const LOCAL_NODE_ID: i32 = 1;

/// `floe local`: every flag also reads an environment variable.
#[derive(Debug, Clone, clap::Args)]
pub struct LocalArgs {
    /// Directory for the WAL, the metadata log and (by default) the objects.
    #[arg(long, env = "FLOE_DATA_DIR", default_value = "floe-data")]
    pub data_dir: PathBuf,
    /// Kafka listener address.
    #[arg(long, env = "FLOE_LISTEN", default_value = "127.0.0.1:9092")]
    pub listen: SocketAddr,
    /// host:port that clients are told to connect to (default: the listen address).
    #[arg(long, env = "FLOE_ADVERTISED_LISTENER")]
    pub advertised_listener: Option<String>,
    /// Object store URL: file:///path, s3://bucket/prefix (AWS_* variables apply),
    /// gs://bucket/prefix (GOOGLE_*), az://container/prefix (AZURE_*; gs:// and az://
    /// also take ?option=value, see docs/storage.md) or memory://.
    /// Default: file://<data-dir>/objects.
    #[arg(long, env = "FLOE_OBJECT_STORE")]
    pub object_store: Option<String>,
    /// Where produce is acknowledged: after the local WAL fsync, or after the object PUT.
    #[arg(long, env = "FLOE_WAL_MODE", value_enum, default_value = "volume")]
    pub wal_mode: WalMode,
    /// Address of the HTTP endpoint serving /metrics, /healthz and /readyz.
    #[arg(long, env = "FLOE_METRICS_LISTEN", default_value = "127.0.0.1:9644")]
    pub metrics_listen: SocketAddr,
    #[command(flatten)]
    pub serving: ServingArgs,
}

/// Flags shared by every process that serves Kafka (`floe local`, `floe broker`).
#[derive(Debug, Clone, clap::Args)]
pub struct ServingArgs {
    /// Create unknown topics when clients ask for their metadata.
    #[arg(long, env = "FLOE_AUTO_CREATE_TOPICS", default_value_t = true, action = clap::ArgAction::Set)]
    pub auto_create_topics: bool,
    /// Partitions of auto-created topics and of CreateTopics with -1.
    #[arg(long, env = "FLOE_NUM_PARTITIONS", default_value_t = 1)]
    pub num_partitions: i32,
    /// Largest request accepted, in bytes (larger ones close the connection).
    #[arg(long, env = "FLOE_MAX_REQUEST_BYTES", default_value_t = 100 << 20)]
    pub max_request_bytes: usize,
    /// Most client connections served at once.
    #[arg(long, env = "FLOE_MAX_CONNECTIONS", default_value_t = 10_000)]
    pub max_connections: usize,
    /// Upload to object storage once this many bytes are pending.
    #[arg(long, env = "FLOE_UPLOAD_BYTES", default_value_t = 32 << 20)]
    pub upload_bytes: usize,
    /// ...or after this many milliseconds (object mode: the batch window).
    #[arg(long, env = "FLOE_UPLOAD_INTERVAL_MS")]
    pub upload_interval_ms: Option<u64>,
    /// Committed bytes kept in memory per partition for caught-up readers.
    #[arg(long, env = "FLOE_HOT_TAIL_BYTES", default_value_t = 8 << 20)]
    pub hot_tail_bytes: usize,
    /// Object-range cache for catch-up readers, in bytes.
    #[arg(long, env = "FLOE_CACHE_BYTES", default_value_t = 256 << 20)]
    pub cache_bytes: usize,
    /// How often retention, compaction and the orphan sweep run, in milliseconds.
    #[arg(long, env = "FLOE_MAINTENANCE_INTERVAL_MS", default_value_t = 60_000)]
    pub maintenance_interval_ms: u64,
    /// Index entries smaller than this are merged into per-partition objects.
    #[arg(long, env = "FLOE_COMPACT_SMALL_BYTES", default_value_t = 2 << 20)]
    pub compact_small_bytes: u64,
    /// Largest object compaction writes.
    #[arg(long, env = "FLOE_COMPACT_TARGET_BYTES", default_value_t = 8 << 20)]
    pub compact_target_bytes: u64,
    /// Seconds an unreferenced object is kept before deletion.
    #[arg(long, env = "FLOE_GC_GRACE_SECS", default_value_t = 300)]
    pub gc_grace_secs: u64,
}

impl ServingArgs {
    /// Check the settings together; errors say what to change.
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            (1..=100_000).contains(&self.num_partitions),
            "--num-partitions must be between 1 and 100000, got {}",
            self.num_partitions
        );
        anyhow::ensure!(
            (1024..=1 << 30).contains(&self.max_request_bytes),
            "--max-request-bytes must be between 1 KiB and 1 GiB, got {}",
            self.max_request_bytes
        );
        anyhow::ensure!(
            self.max_connections > 0,
            "--max-connections must be at least 1"
        );
        anyhow::ensure!(
            self.upload_bytes >= 1024,
            "--upload-bytes must be at least 1024"
        );
        Ok(())
    }

    /// The storage engine's settings for a broker with this WAL.
    pub(crate) fn storage_config(
        &self,
        wal_mode: WalMode,
        wal_dir: PathBuf,
        broker_id: i32,
    ) -> StorageConfig {
        let interval = Duration::from_millis(self.upload_interval_ms.unwrap_or(match wal_mode {
            WalMode::Volume => 1_000,
            WalMode::Object => 100,
        }));
        StorageConfig {
            wal_mode,
            wal_dir,
            wal_segment_bytes: 64 << 20,
            broker_id,
            upload_bytes: self.upload_bytes,
            upload_interval: interval,
            hot_tail_bytes: self.hot_tail_bytes,
            cache_bytes: self.cache_bytes,
            max_pending_bytes: (self.upload_bytes * 8).max(256 << 20),
        }
    }
}

/// `--advertised-listener` must be `host:port`.
pub(crate) fn check_advertised(listener: Option<&str>) -> anyhow::Result<()> {
    if let Some(a) = listener {
        let ok = a
            .rsplit_once(':')
            .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok());
        anyhow::ensure!(ok, "--advertised-listener must be host:port, got {a:?}");
    }
    Ok(())
}

/// What clients are told to connect to: the advertised listener, else the
/// address actually bound.
pub(crate) fn advertised(listener: Option<&str>, bound: SocketAddr) -> (String, i32) {
    match listener.and_then(|a| a.rsplit_once(':')) {
        Some((h, p)) => (h.to_owned(), p.parse().unwrap_or(9092)),
        None => (bound.ip().to_string(), i32::from(bound.port())),
    }
}

/// Binds the Kafka listener, with an error that says what to check.
pub(crate) async fn bind(listen: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen} (is another broker running?)"))
}

/// Opens an object store URL and checks that it can be used.
pub(crate) async fn open_objects(url: &str) -> anyhow::Result<Objects> {
    let objects = Objects::from_url(url)?;
    objects.probe().await.with_context(|| {
        format!(
            "object store {} is not usable (does the bucket exist, are credentials set?)",
            objects.describe()
        )
    })?;
    Ok(objects)
}

/// Everything a serving broker is built from, once its metadata is reachable.
pub(crate) struct Parts<'a> {
    pub listener: TcpListener,
    pub config: BrokerConfig,
    pub cluster: Arc<Cluster>,
    pub objects: Objects,
    pub storage: StorageConfig,
    pub partitions: Vec<(PartitionId, PartitionMeta)>,
    pub serving: &'a ServingArgs,
    pub metrics_listen: SocketAddr,
    pub lease: Option<Arc<Lease>>,
}

/// A broker serving Kafka, its metrics endpoint and its maintenance.
pub(crate) struct Serving {
    pub broker: Arc<Broker>,
    pub addr: SocketAddr,
    pub metrics_addr: SocketAddr,
    pub shutdown: CancellationToken,
    pub server: tokio::task::JoinHandle<()>,
}

/// Recovers the storage engine and starts serving.
pub(crate) async fn serve(parts: Parts<'_>) -> anyhow::Result<Serving> {
    let Parts {
        listener,
        config,
        cluster,
        objects,
        storage,
        partitions,
        serving,
        metrics_listen,
        lease,
    } = parts;
    let addr = listener.local_addr()?;
    let storage = Storage::open(storage, objects.clone(), cluster.clone(), partitions)
        .await
        .context("cannot recover the storage engine")?;
    let gc = Gc::new(objects, Duration::from_secs(serving.gc_grace_secs));
    if let Err(e) = gc.sweep(&cluster).await {
        tracing::warn!(error = %e, "orphan sweep failed; will retry later");
    }
    let groups = floe_group::GroupCoordinator::new(
        floe_group::GroupConfig::default(),
        Arc::new(GroupOffsets::new(cluster.clone())),
    )?;
    let broker = Arc::new(Broker {
        config,
        cluster,
        storage,
        groups,
        producer_ids: Default::default(),
        metrics: Arc::new(crate::metrics::Metrics::new()),
        gc,
        lease: lease.clone(),
    });
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(crate::server::serve(
        listener,
        broker.clone(),
        serving.max_connections,
        shutdown.clone(),
    ));
    let metrics_listener = TcpListener::bind(metrics_listen).await.with_context(|| {
        format!("cannot listen on {metrics_listen} for metrics (set --metrics-listen)")
    })?;
    let metrics_addr = metrics_listener.local_addr()?;
    let ready: crate::metrics::Readiness = match lease {
        Some(lease) => Arc::new(move || lease.valid()),
        None => Arc::new(|| true),
    };
    tokio::spawn(crate::metrics::serve(
        metrics_listener,
        broker.metrics.clone(),
        broker.storage.clone(),
        ready,
        shutdown.clone(),
    ));
    tokio::spawn(maintenance(
        broker.clone(),
        Duration::from_millis(serving.maintenance_interval_ms.max(100)),
        CompactionConfig {
            small_entry_bytes: serving.compact_small_bytes,
            target_bytes: serving
                .compact_target_bytes
                .max(serving.compact_small_bytes),
        },
        shutdown.clone(),
    ));
    tracing::info!(%metrics_addr, "metrics on http://{metrics_addr}/metrics");
    Ok(Serving {
        broker,
        addr,
        metrics_addr,
        shutdown,
        server,
    })
}

/// A running local node (used by the binary and by in-process tests): a
/// one-voter controller quorum and one broker, in this process.
pub struct LocalNode {
    pub broker: Arc<Broker>,
    pub addr: SocketAddr,
    /// Where /metrics, /healthz and /readyz are served.
    pub metrics_addr: SocketAddr,
    node: crate::broker_node::BrokerNode,
    controller: floe_controller::grpc::node::RunningController,
}

impl LocalNode {
    pub async fn start(args: LocalArgs) -> anyhow::Result<LocalNode> {
        use floe_controller::grpc::node::{self, Listeners, NodeConfig};
        use floe_controller::grpc::service::{BalancerConfig, LeaseConfig};
        use floe_controller::raft::ControllerNode;

        args.serving.validate()?;
        check_advertised(args.advertised_listener.as_deref())?;
        let listener = bind(args.listen).await?;
        let addr = listener.local_addr()?;
        std::fs::create_dir_all(&args.data_dir)
            .with_context(|| format!("cannot create data directory {}", args.data_dir.display()))?;
        let data_dir = std::fs::canonicalize(&args.data_dir)?;
        let controller_dir = data_dir.join("controller");
        anyhow::ensure!(
            controller_dir.exists() || !data_dir.join("metadata").exists(),
            "{} holds metadata in the single-node store of an earlier Floe (metadata/), which this \
             version replaced with a one-voter Raft quorum (controller/); start with a fresh \
             --data-dir",
            data_dir.display()
        );
        // The quorum listens on loopback only: nothing outside this process uses it.
        let listeners = Listeners::bind("127.0.0.1:0".parse()?, "127.0.0.1:0".parse()?).await?;
        let (raft_addr, api_addr) = listeners.addrs()?;
        let me = ControllerNode::new(raft_addr.to_string(), api_addr.to_string());
        // Nobody else votes: it can elect itself quickly after a restart.
        let mut raft =
            node::default_raft_config("floe-local").map_err(|e| anyhow::anyhow!("{e}"))?;
        raft.heartbeat_interval = 50;
        raft.election_timeout_min = 150;
        raft.election_timeout_max = 300;
        let raft = raft.validate()?;
        let controller = node::start(
            NodeConfig {
                id: 0,
                advertised: me.clone(),
                initial_voters: std::collections::BTreeMap::from([(0, me)]),
                data_dir: controller_dir,
                raft,
                bootstrap_grace: Duration::ZERO,
                leases: LeaseConfig::default(),
                // One broker: nothing to balance.
                tls: None,
                access: Default::default(),
                balancer: BalancerConfig {
                    interval: None,
                    ..BalancerConfig::default()
                },
            },
            listeners,
        )
        .await
        .with_context(|| format!("cannot start the metadata quorum in {}", data_dir.display()))?;
        let url = args
            .object_store
            .clone()
            .unwrap_or_else(|| format!("file://{}", data_dir.join("objects").display()));
        let objects = open_objects(&url).await?;
        let node = crate::broker_node::start_member(crate::broker_node::Member {
            node_id: LOCAL_NODE_ID,
            listener,
            advertised_listener: args.advertised_listener.as_deref(),
            controllers: vec![api_addr.to_string()],
            channels: Default::default(),
            objects,
            wal_mode: args.wal_mode,
            wal_dir: data_dir.join("wal"),
            rack: None,
            cluster_id: cluster_id(&data_dir)?,
            serving: &args.serving,
            metrics_listen: args.metrics_listen,
            drain_budget: Duration::ZERO,
            imds: None,
        })
        .await?;
        tracing::info!(%addr, data_dir = %data_dir.display(), objects = url, "Floe is ready");
        Ok(LocalNode {
            broker: node.broker.clone(),
            addr: node.addr,
            metrics_addr: node.health_addr,
            node,
            controller,
        })
    }

    /// Stop serving, upload everything that is durable, and return.
    pub async fn stop(self) {
        self.node.stop().await;
        if let Err(e) = self.controller.shutdown().await {
            tracing::warn!(error = %e, "metadata quorum shutdown");
        }
    }
}

/// Retention, compaction and the orphan sweep, until shutdown.
async fn maintenance(
    broker: Arc<Broker>,
    every: Duration,
    cfg: CompactionConfig,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(every);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        match broker.storage.maintain(cfg).await {
            Ok(m) => {
                if m.trimmed_partitions + m.compacted_runs > 0 {
                    tracing::info!(
                        trimmed = m.trimmed_partitions,
                        compacted = m.compacted_runs,
                        released = m.released.len(),
                        "maintenance pass"
                    );
                }
                broker.gc.release(m.released);
            }
            Err(e) => tracing::warn!(error = %e, "maintenance pass failed; retrying next interval"),
        }
        if let Err(e) = broker.gc.sweep(&broker.cluster).await {
            tracing::warn!(error = %e, "orphan sweep failed; retrying next interval");
        }
    }
}

/// The cluster id is made once per data directory and kept beside the data.
fn cluster_id(data_dir: &std::path::Path) -> anyhow::Result<String> {
    let path = data_dir.join("cluster-id");
    match std::fs::read_to_string(&path) {
        Ok(id) if !id.trim().is_empty() => Ok(id.trim().to_owned()),
        _ => {
            let id = uuid::Uuid::new_v4().simple().to_string();
            let tmp = data_dir.join("cluster-id.tmp");
            std::fs::write(&tmp, &id)
                .and_then(|_| std::fs::rename(&tmp, &path))
                .with_context(|| format!("cannot write {}", path.display()))?;
            Ok(id)
        }
    }
}
