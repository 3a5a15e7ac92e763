//! `floe admin`: cluster status and partition moves from a terminal or a
//! script. Topics and moves are changed through the controllers' typed
//! `Admin` calls (exactly once, leader hints followed) and moves are
//! followed through a live copy of the metadata, so progress shows as it
//! happens: a progress bar on a terminal, one line per change otherwise, and
//! with `--json` a single JSON line at the end.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use floe_controller::grpc::client::{ClientError, ClientOptions, ControllerClient, Mirror};
use floe_controller::grpc::proto::{MovesReply, PartitionMove};
use floe_controller::model::{MetadataState, Outcome, PartitionId};

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
    /// Mutual TLS with the controllers.
    #[command(flatten)]
    pub controller_tls: crate::controller_node::ControllerTlsArgs,
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
    let channels = args.controller_tls.channels()?;
    let hint = channels.unreachable_hint();
    let client = ControllerClient::with_channels(
        args.controllers.clone(),
        ClientOptions::default(),
        channels,
    );
    // Topic changes have no progress to follow: no copy of the metadata.
    let plan = match &args.command {
        AdminCommand::CreateTopic {
            name,
            partitions,
            configs,
        } => return create_topic(&client, name, *partitions, configs, args.json).await,
        AdminCommand::DeleteTopic { name } => return delete_topic(&client, name, args.json).await,
        AdminCommand::GiveUp {
            broker,
            accept_data_loss,
        } => return give_up(&client, *broker, *accept_data_loss, args.json).await,
        AdminCommand::Status => None,
        AdminCommand::Reassign { moves } => Some(Plan::Reassign(parse_moves(moves)?)),
        AdminCommand::Move { from, to, count } => Some(Plan::Move {
            from: *from,
            to: *to,
            count: count.unwrap_or(usize::MAX),
        }),
        AdminCommand::Drain { broker } => Some(Plan::Drain(*broker)),
        AdminCommand::Rebalance => Some(Plan::Rebalance),
    };
    let mirror = Mirror::start(client.clone());
    let (index, _) = client
        .read_state()
        .await
        .with_context(|| format!("cannot reach the controller quorum ({hint})"))?;
    anyhow::ensure!(
        mirror.wait_for(index, Duration::from_secs(30)).await,
        "the metadata watch did not catch up within 30 s"
    );
    let Some(plan) = plan else {
        let status = mirror.read(describe);
        if args.json {
            println!("{}", serde_json::to_string(&status)?);
        } else {
            print_status(&status);
        }
        return Ok(());
    };
    // Partitions that moved are those whose leader epoch changed since now.
    let before: BTreeMap<PartitionId, i32> = mirror.read(epochs);
    let started = Instant::now();
    let reply: MovesReply = match plan {
        Plan::Reassign(moves) => client.reassign(&moves).await,
        Plan::Move { from, to, count } => {
            let moves: Vec<PartitionMove> = mirror.read(|s| {
                led_by(s, from)
                    .into_iter()
                    .take(count)
                    .map(|(topic, partition)| PartitionMove {
                        topic,
                        partition,
                        to_broker: to,
                        all_partitions: false,
                    })
                    .collect()
            });
            if moves.is_empty() {
                bail!("broker {from} leads no partition");
            }
            client.reassign(&moves).await
        }
        Plan::Drain(id) => client.drain_broker(id).await,
        Plan::Rebalance => client.rebalance().await,
    }
    .map_err(refused)?;
    let requested = reply.requested as usize;
    mirror.wait_for(reply.index, Duration::from_secs(30)).await;
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

/// A change that requests moves, followed until they are done.
enum Plan {
    Reassign(Vec<PartitionMove>),
    /// What broker `from` leads (at most `count` partitions), to `to`,
    /// as the metadata says once it is read.
    Move {
        from: i32,
        to: i32,
        count: usize,
    },
    Drain(i32),
    Rebalance,
}

async fn create_topic(
    client: &ControllerClient,
    name: &str,
    partitions: i32,
    configs: &[(String, String)],
    json: bool,
) -> anyhow::Result<()> {
    for (k, v) in configs {
        crate::handler::config::validate_topic_config(k, v)
            .map_err(|e| anyhow::anyhow!("--config {k}={v}: {e}"))?;
    }
    let configs = configs.iter().cloned().collect();
    let reply = client
        .create_topic(name, partitions, &configs)
        .await
        .map_err(refused)?;
    let id = uuid::Uuid::parse_str(&reply.topic_id)
        .with_context(|| format!("the controller answered topic id {:?}", reply.topic_id))?;
    let outcome = Outcome::TopicCreated { id };
    done(
        &outcome,
        reply.index,
        json,
        &format!("created topic {name}"),
    )
}

async fn delete_topic(client: &ControllerClient, name: &str, json: bool) -> anyhow::Result<()> {
    let reply = client.delete_topic(name).await.map_err(refused)?;
    let outcome = Outcome::ObjectsReleased {
        keys: reply.released_objects,
    };
    done(
        &outcome,
        reply.index,
        json,
        &format!("deleted topic {name}"),
    )
}

/// Proposes `GiveUpBroker` (no typed call: it loses data, so it stays a
/// deliberate command), once the loss is accepted.
async fn give_up(
    client: &ControllerClient,
    broker: i32,
    accept_data_loss: bool,
    json: bool,
) -> anyhow::Result<()> {
    if !accept_data_loss {
        bail!(
            "giving up on broker {broker} loses the records it acknowledged after its last \
             upload; pass --accept-data-loss if its volume is gone for good"
        );
    }
    let committed = client
        .propose(&floe_controller::model::Command::GiveUpBroker { id: broker })
        .await?;
    match committed.answer {
        Ok(outcome) => done(
            &outcome,
            committed.index,
            json,
            &format!("gave up on broker {broker}; its partitions moved"),
        ),
        Err(e) => bail!("refused: {e}"),
    }
}

/// A refusal by the controllers says what was wrong; anything else is the
/// client's error (unreachable quorum, ...).
fn refused(e: ClientError) -> anyhow::Error {
    match e {
        ClientError::Refused { message, .. } => anyhow::anyhow!("refused: {message}"),
        other => other.into(),
    }
}

/// Reports a change with no progress to follow.
fn done(outcome: &Outcome, index: u64, json: bool, done: &str) -> anyhow::Result<()> {
    if json {
        println!(
            "{}",
            serde_json::json!({ "outcome": format!("{outcome:?}"), "index": index })
        );
    } else {
        println!("{done}");
    }
    Ok(())
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

/// The partitions broker `broker` leads with no move pending, as (topic,
/// partition).
fn led_by(s: &MetadataState, broker: i32) -> Vec<(String, i32)> {
    s.topics
        .values()
        .flat_map(|t| {
            t.partitions
                .iter()
                .enumerate()
                .filter(move |(_, p)| p.leader == broker && p.target.is_none())
                .map(move |(i, _)| (t.name.clone(), i as i32))
        })
        .collect()
}

/// `TOPIC:PARTITION=BROKER` or `TOPIC:*=BROKER`; the controllers check that
/// the topic, partition and broker exist.
fn parse_moves(specs: &[String]) -> anyhow::Result<Vec<PartitionMove>> {
    let mut moves = Vec::new();
    for spec in specs {
        let parsed = spec
            .split_once('=')
            .and_then(|(tp, to)| Some((tp.rsplit_once(':')?, to.parse::<i32>().ok()?)));
        let Some(((topic, partition), to)) = parsed else {
            bail!("cannot read {spec:?}: write TOPIC:PARTITION=BROKER or TOPIC:*=BROKER");
        };
        let (partition, all_partitions) = if partition == "*" {
            (0, true)
        } else {
            match partition.parse::<i32>() {
                Ok(p) => (p, false),
                Err(_) => {
                    bail!("cannot read partition {partition:?} of {spec:?}: write a number or *")
                }
            }
        };
        moves.push(PartitionMove {
            topic: topic.to_owned(),
            partition,
            to_broker: to,
            all_partitions,
        });
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn move_specs_name_one_partition_or_all_of_a_topic() {
        let moves = parse_moves(&["orders:3=2".to_owned(), "orders.v2:*=4".to_owned()]).unwrap();
        assert_eq!(
            moves,
            vec![
                PartitionMove {
                    topic: "orders".into(),
                    partition: 3,
                    to_broker: 2,
                    all_partitions: false,
                },
                PartitionMove {
                    topic: "orders.v2".into(),
                    partition: 0,
                    to_broker: 4,
                    all_partitions: true,
                },
            ]
        );
        for bad in ["orders=2", "orders:x=2", "orders:1=", "orders:1"] {
            assert!(parse_moves(&[bad.to_owned()]).is_err(), "{bad}");
        }
    }
}
