//! `floe admin`: cluster status and partition moves from a terminal or a
//! script. Moves are requested from the controller quorum and followed
//! through a live copy of the metadata, so progress shows as it happens: a
//! progress bar on a terminal, one line per change otherwise, and with
//! `--json` a single JSON line at the end.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use floe_controller::grpc::client::{ClientOptions, ControllerClient, Mirror};
use floe_controller::model::{Command, MetadataState, Move, Outcome, PartitionId};

#[derive(Debug, Clone, Args)]
pub struct AdminArgs {
    /// The controllers' metadata addresses (`host:port`, comma-separated).
    #[arg(long, env = "FLOE_CONTROLLERS", value_delimiter = ',', required = true)]
    pub controllers: Vec<String>,
    /// Print one JSON line at the end instead of progress.
    #[arg(long)]
    pub json: bool,
    /// Give up waiting for moves after this many seconds (they carry on).
    #[arg(long, default_value_t = 300)]
    pub timeout_secs: u64,
    #[command(subcommand)]
    pub command: AdminCommand,
}

#[derive(Debug, Clone, Subcommand)]
pub enum AdminCommand {
    /// Brokers, the partitions each leads, and pending moves.
    Status,
    /// Create a topic; its partitions spread over the least-loaded brokers.
    CreateTopic {
        name: String,
        #[arg(long, default_value_t = 1)]
        partitions: i32,
        /// Topic configs, `key=value` (e.g. retention.ms=3600000).
        #[arg(long = "config", value_parser = parse_config)]
        configs: Vec<(String, String)>,
    },
    /// Delete a topic and release its objects.
    DeleteTopic { name: String },
    /// Move partitions: `TOPIC:PARTITION=BROKER`, or `TOPIC:*=BROKER` for all
    /// of a topic's partitions.
    Reassign {
        #[arg(required = true)]
        moves: Vec<String>,
    },
    /// Move every partition broker FROM leads (or at most --count of them) to TO.
    Move {
        #[arg(long)]
        from: i32,
        #[arg(long)]
        to: i32,
        #[arg(long)]
        count: Option<usize>,
    },
    /// Move every partition away from a broker, and place nothing on it.
    Drain { broker: i32 },
    /// Even out the load each live broker leads: partitions, weighted by the
    /// bytes per second their leaders report.
    Rebalance,
    /// Give up on a fenced `volume`-WAL broker whose volume is lost for good:
    /// its partitions move to the live brokers and open from what it
    /// uploaded. Records it acknowledged after its last upload are LOST.
    GiveUp {
        broker: i32,
        /// Required: confirms that losing the broker's un-uploaded records is
        /// accepted.
        #[arg(long)]
        accept_data_loss: bool,
    },
}

pub async fn run(args: AdminArgs) -> anyhow::Result<()> {
    let client = ControllerClient::new(args.controllers.clone(), ClientOptions::default());
    let mirror = Mirror::start(client.clone());
    let (index, _) = client
        .read_state()
        .await
        .context("cannot reach the controller quorum")?;
    anyhow::ensure!(
        mirror.wait_for(index, Duration::from_secs(30)).await,
        "the metadata watch did not catch up within 30 s"
    );
    let command = match &args.command {
        AdminCommand::Status => {
            let status = mirror.read(describe);
            if args.json {
                println!("{}", serde_json::to_string(&status)?);
            } else {
                print_status(&status);
            }
            return Ok(());
        }
        AdminCommand::CreateTopic {
            name,
            partitions,
            configs,
        } => {
            for (k, v) in configs {
                crate::handler::config::validate_topic_config(k, v)
                    .map_err(|e| anyhow::anyhow!("--config {k}={v}: {e}"))?;
            }
            let cmd = Command::CreateTopic {
                name: name.clone(),
                id: uuid::Uuid::new_v4(),
                partitions: *partitions,
                configs: configs.iter().cloned().collect(),
                leader: -1,
            };
            return simple(&client, &cmd, args.json, &format!("created topic {name}")).await;
        }
        AdminCommand::DeleteTopic { name } => {
            let cmd = Command::DeleteTopic { name: name.clone() };
            return simple(&client, &cmd, args.json, &format!("deleted topic {name}")).await;
        }
        AdminCommand::Reassign { moves } => {
            let moves = mirror.read(|s| parse_moves(s, moves))?;
            Command::RequestMoves { moves }
        }
        AdminCommand::Move { from, to, count } => {
            let moves: Vec<Move> = mirror.read(|s| {
                led_by(s, *from)
                    .into_iter()
                    .take(count.unwrap_or(usize::MAX))
                    .map(|partition| Move { partition, to: *to })
                    .collect()
            });
            if moves.is_empty() {
                bail!("broker {from} leads no partition");
            }
            Command::RequestMoves { moves }
        }
        AdminCommand::GiveUp {
            broker,
            accept_data_loss,
        } => {
            if !accept_data_loss {
                bail!(
                    "giving up on broker {broker} loses the records it acknowledged after its \
                     last upload; pass --accept-data-loss if its volume is gone for good"
                );
            }
            let cmd = Command::GiveUpBroker { id: *broker };
            let done = format!("gave up on broker {broker}; its partitions moved");
            return simple(&client, &cmd, args.json, &done).await;
        }
        AdminCommand::Drain { broker } => Command::DrainBroker { id: *broker },
        AdminCommand::Rebalance => Command::Rebalance,
    };
    // Partitions that moved are those whose leader epoch changed since now.
    let before: BTreeMap<PartitionId, i32> = mirror.read(epochs);
    let started = Instant::now();
    let committed = client.propose(&command).await?;
    let requested = match committed.answer {
        Ok(Outcome::MovesRequested { requested }) => requested as usize,
        Ok(other) => bail!("unexpected answer {other:?}"),
        Err(e) => bail!("refused: {e}"),
    };
    mirror
        .wait_for(committed.index, Duration::from_secs(30))
        .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(args.timeout_secs);
    let tty = !args.json && std::io::stderr().is_terminal();
    let mut changes = mirror.subscribe();
    let mut last = (usize::MAX, usize::MAX);
    let (moved, left) = loop {
        let (moved, left) = mirror.read(|s| {
            let now = epochs(s);
            let moved = now
                .iter()
                .filter(|(p, e)| before.get(p).is_some_and(|b| b != *e))
                .count();
            (moved, pending(s).len())
        });
        if (moved, left) != last && !args.json {
            progress(
                tty,
                moved.min(requested),
                requested,
                left,
                started.elapsed(),
            );
            last = (moved, left);
        }
        if left == 0 {
            break (moved, 0);
        }
        match tokio::time::timeout_at(deadline, changes.changed()).await {
            Ok(Ok(())) => {}
            _ => break (moved, left),
        }
    };
    let elapsed = started.elapsed();
    if tty {
        eprintln!();
    }
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "requested": requested,
                "moved": moved,
                "pending": left,
                "elapsed_ms": elapsed.as_secs_f64() * 1000.0,
            })
        );
    } else {
        println!(
            "{moved} partitions moved ({requested} requested) in {:.3} s{}",
            elapsed.as_secs_f64(),
            if left > 0 {
                format!(" ({left} still pending: they carry on)")
            } else {
                String::new()
            }
        );
    }
    if left > 0 {
        bail!("{left} moves still pending after {} s", args.timeout_secs);
    }
    Ok(())
}

/// Proposes a command with no progress to follow.
async fn simple(
    client: &ControllerClient,
    cmd: &Command,
    json: bool,
    done: &str,
) -> anyhow::Result<()> {
    let committed = client.propose(cmd).await?;
    match committed.answer {
        Ok(outcome) => {
            if json {
                println!(
                    "{}",
                    serde_json::json!({ "outcome": format!("{outcome:?}"), "index": committed.index })
                );
            } else {
                println!("{done}");
            }
            Ok(())
        }
        Err(e) => bail!("refused: {e}"),
    }
}

fn parse_config(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .filter(|(k, _)| !k.is_empty())
        .ok_or_else(|| format!("write key=value, not {s:?}"))
}

fn progress(tty: bool, done: usize, total: usize, pending: usize, elapsed: Duration) {
    if tty {
        let width = 40;
        let filled = (done * width)
            .checked_div(total)
            .unwrap_or(width)
            .min(width);
        eprint!(
            "\r[{}{}] {done}/{total} moved, {pending} pending  {:.1} s ",
            "#".repeat(filled),
            " ".repeat(width - filled),
            elapsed.as_secs_f64()
        );
        let _ = std::io::stderr().flush();
    } else {
        eprintln!(
            "{done}/{total} moved, {pending} pending after {:.3} s",
            elapsed.as_secs_f64()
        );
    }
}

fn epochs(s: &MetadataState) -> BTreeMap<PartitionId, i32> {
    s.topics
        .values()
        .flat_map(|t| {
            t.partitions.iter().enumerate().map(move |(i, p)| {
                (
                    PartitionId {
                        topic_id: t.id,
                        partition: i as i32,
                    },
                    p.leader_epoch,
                )
            })
        })
        .collect()
}

fn pending(s: &MetadataState) -> Vec<PartitionId> {
    s.topics
        .values()
        .flat_map(|t| {
            t.partitions
                .iter()
                .enumerate()
                .filter(|(_, p)| p.target.is_some())
                .map(move |(i, _)| PartitionId {
                    topic_id: t.id,
                    partition: i as i32,
                })
        })
        .collect()
}

fn led_by(s: &MetadataState, broker: i32) -> Vec<PartitionId> {
    s.topics
        .values()
        .flat_map(|t| {
            t.partitions
                .iter()
                .enumerate()
                .filter(move |(_, p)| p.leader == broker && p.target.is_none())
                .map(move |(i, _)| PartitionId {
                    topic_id: t.id,
                    partition: i as i32,
                })
        })
        .collect()
}

fn parse_moves(s: &MetadataState, specs: &[String]) -> anyhow::Result<Vec<Move>> {
    let mut moves = Vec::new();
    for spec in specs {
        let parsed = spec
            .split_once('=')
            .and_then(|(tp, to)| Some((tp.rsplit_once(':')?, to.parse::<i32>().ok()?)));
        let Some(((topic, partition), to)) = parsed else {
            bail!("cannot read {spec:?}: write TOPIC:PARTITION=BROKER or TOPIC:*=BROKER");
        };
        let Some(t) = s.topics.get(topic) else {
            bail!("topic {topic:?} does not exist");
        };
        let indexes: Vec<i32> = if partition == "*" {
            (0..t.partitions.len() as i32).collect()
        } else {
            match partition.parse::<i32>() {
                Ok(p) if (0..t.partitions.len() as i32).contains(&p) => vec![p],
                _ => bail!(
                    "topic {topic:?} has partitions 0..{}, not {partition:?}",
                    t.partitions.len()
                ),
            }
        };
        moves.extend(indexes.into_iter().map(|partition| Move {
            partition: PartitionId {
                topic_id: t.id,
                partition,
            },
            to,
        }));
    }
    Ok(moves)
}

#[derive(Debug, serde::Serialize)]
struct Status {
    brokers: Vec<BrokerStatus>,
    topics: usize,
    partitions: usize,
    leaderless: usize,
    pending_moves: usize,
}

#[derive(Debug, serde::Serialize)]
struct BrokerStatus {
    id: i32,
    address: String,
    rack: Option<String>,
    state: &'static str,
    leads: usize,
    /// Bytes per second (in + out) its partitions last reported.
    load_bytes_per_sec: u64,
}

fn describe(s: &MetadataState) -> Status {
    let mut leads: BTreeMap<i32, usize> = BTreeMap::new();
    let mut load: BTreeMap<i32, u64> = BTreeMap::new();
    let (mut partitions, mut leaderless, mut pending_moves) = (0, 0, 0);
    for p in s.topics.values().flat_map(|t| &t.partitions) {
        partitions += 1;
        *leads.entry(p.leader).or_default() += 1;
        *load.entry(p.leader).or_default() += p.load;
        if p.leader < 0 {
            leaderless += 1;
        }
        if p.target.is_some() {
            pending_moves += 1;
        }
    }
    Status {
        brokers: s
            .brokers
            .values()
            .map(|b| BrokerStatus {
                id: b.id,
                address: format!("{}:{}", b.host, b.port),
                rack: b.rack.clone(),
                state: if b.fenced {
                    "fenced"
                } else if b.draining {
                    "draining"
                } else {
                    "live"
                },
                leads: leads.get(&b.id).copied().unwrap_or(0),
                load_bytes_per_sec: load.get(&b.id).copied().unwrap_or(0),
            })
            .collect(),
        topics: s.topics.len(),
        partitions,
        leaderless,
        pending_moves,
    }
}

fn print_status(s: &Status) {
    println!(
        "{} topics, {} partitions ({} leaderless, {} moves pending)",
        s.topics, s.partitions, s.leaderless, s.pending_moves
    );
    println!(
        "{:>6}  {:<24} {:<10} {:>8} {:>12}  rack",
        "broker", "address", "state", "leads", "load KiB/s"
    );
    for b in &s.brokers {
        println!(
            "{:>6}  {:<24} {:<10} {:>8} {:>12}  {}",
            b.id,
            b.address,
            b.state,
            b.leads,
            b.load_bytes_per_sec / 1024,
            b.rack.as_deref().unwrap_or("-")
        );
    }
}
