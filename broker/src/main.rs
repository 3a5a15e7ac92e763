//! `floe`: the Floe command line.

use clap::{Parser, Subcommand};
use floe_broker::broker_node::{BrokerArgs, BrokerNode};
use floe_broker::controller_node::{ControllerArgs, ControllerProcess};
use floe_broker::local::{LocalArgs, LocalNode};

#[global_allocator]
static ALLOC: floe_broker::alloc::LazyHugeAlloc = floe_broker::alloc::LazyHugeAlloc;

#[derive(Parser)]
#[command(
    name = "floe",
    version,
    about = "Kafka-compatible brokers on object storage"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a single-node cluster (controller + broker) in this process.
    Local(LocalArgs),
    /// Run one controller of the metadata quorum (Raft over gRPC).
    Controller(ControllerArgs),
    /// Run one broker of a cluster (metadata from the controller quorum).
    Broker(BrokerArgs),
    /// Cluster status and partition moves (reassign, drain, rebalance).
    Admin(floe_broker::admin_cli::AdminArgs),
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("FLOE_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        match cli.command {
            Command::Local(args) => {
                let node = LocalNode::start(args).await?;
                wait_for_signal().await?;
                tracing::info!("shutting down: uploading what is buffered");
                node.stop().await;
                tracing::info!("stopped");
                Ok(())
            }
            Command::Broker(args) => {
                let node = BrokerNode::start(args).await?;
                let mut signals = Signals::new()?;
                tokio::select! {
                    _ = signals.next() => {}
                    _ = node.interrupted.cancelled() => {}
                }
                tracing::info!(budget = ?node.drain_budget, "shutting down: draining (a second signal skips to a full upload)");
                tokio::select! {
                    _ = node.drain(node.drain_budget) => {}
                    _ = signals.next() => tracing::warn!("second signal: skipping the drain"),
                }
                tracing::info!("shutting down: uploading what is buffered");
                node.stop().await;
                tracing::info!("stopped");
                Ok(())
            }
            Command::Admin(args) => floe_broker::admin_cli::run(args).await,
            Command::Controller(args) => {
                let controller = ControllerProcess::start(args).await?;
                wait_for_signal().await?;
                tracing::info!("shutting down");
                controller.stop().await;
                Ok(())
            }
        }
    })
}

/// SIGTERM and SIGINT, each delivery counted.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> anyhow::Result<Signals> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    async fn next(&mut self) {
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.int.recv() => {}
        }
    }
}

async fn wait_for_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    Ok(())
}
