//! `floe controller` as real processes: three voters on loopback lose their
//! leader to SIGKILL; three voters in their own network namespaces lose
//! their leader to a network partition (iptables) and heal. Throughout,
//! clients keep proposing; at the end every acknowledged command was applied
//! exactly once, and every controller holds the same state.
//!
//! Exactly once is checked through producer-id allocation: each proposal
//! takes the next id, so the acknowledged ids must be contiguous, with no
//! gap (a lost command) and no repeat (a command applied twice).
//!
//! The partition test needs root, `ip` and `iptables`; without them it is
//! skipped loudly, except when `CI` is set: then it fails.

use std::process::{Child, Command as Process, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use floe_controller::grpc::client::ClientOptions;
use floe_controller::grpc::{ControllerClient, Mirror};
use floe_controller::model::{Command, Outcome};

const WAIT: Duration = Duration::from_secs(20);

struct Controller {
    id: u64,
    raft: String,
    api: String,
    /// Command prefix (e.g. `ip netns exec ns`), empty on plain loopback.
    prefix: Vec<String>,
    child: Option<Child>,
}

struct Quorum {
    dir: tempfile::TempDir,
    controllers: Vec<Controller>,
}

fn free_port(ip: &str) -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind((ip, 0))?.local_addr()?.port())
}

impl Quorum {
    fn new(nodes: Vec<(String, String, Vec<String>)>) -> anyhow::Result<Quorum> {
        let controllers = nodes
            .into_iter()
            .enumerate()
            .map(|(i, (raft, api, prefix))| Controller {
                id: i as u64 + 1,
                raft,
                api,
                prefix,
                child: None,
            })
            .collect();
        Ok(Quorum {
            dir: tempfile::tempdir()?,
            controllers,
        })
    }

    fn start(&mut self, id: u64) -> anyhow::Result<()> {
        let peers = self
            .controllers
            .iter()
            .map(|c| format!("{}={}", c.id, c.raft))
            .collect::<Vec<_>>()
            .join(",");
        let apis = self
            .controllers
            .iter()
            .map(|c| c.api.clone())
            .collect::<Vec<_>>()
            .join(",");
        let data = self.dir.path().join(format!("controller-{id}"));
        let log = std::fs::File::create(self.dir.path().join(format!("controller-{id}.log")))?;
        let c = self
            .controllers
            .iter_mut()
            .find(|c| c.id == id)
            .context("no such controller")?;
        let mut argv = c.prefix.clone();
        argv.push(env!("CARGO_BIN_EXE_floe").to_owned());
        let mut cmd = Process::new(&argv[0]);
        cmd.args(&argv[1..])
            .arg("controller")
            .args(["--id", &id.to_string()])
            .args(["--raft-listen", &c.raft, "--metadata-listen", &c.api])
            .args(["--raft-peers", &peers, "--controllers", &apis])
            .arg("--data-dir")
            .arg(&data)
            .args(["--health-listen", "127.0.0.1:0"])
            .args(["--heartbeat-ms", "100", "--election-timeout-ms", "500"])
            .env("FLOE_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        c.child = Some(cmd.spawn().context("spawning floe controller")?);
        Ok(())
    }

    /// SIGKILL.
    fn kill(&mut self, id: u64) -> anyhow::Result<()> {
        let c = self
            .controllers
            .iter_mut()
            .find(|c| c.id == id)
            .context("no such controller")?;
        if let Some(mut child) = c.child.take() {
            child.kill()?;
            child.wait()?;
        }
        Ok(())
    }

    fn client(&self) -> ControllerClient {
        ControllerClient::new(
            self.controllers.iter().map(|c| c.api.clone()).collect(),
            ClientOptions {
                deadline: WAIT,
                attempt_timeout: Duration::from_secs(2),
            },
        )
    }

    fn client_of(&self, id: u64) -> anyhow::Result<ControllerClient> {
        let c = self
            .controllers
            .iter()
            .find(|c| c.id == id)
            .context("no such controller")?;
        Ok(ControllerClient::new(
            vec![c.api.clone()],
            ClientOptions {
                deadline: WAIT,
                attempt_timeout: Duration::from_secs(2),
            },
        ))
    }

    /// The controller that reports itself the leader (ignoring `except`).
    async fn leader_except(&self, except: Option<u64>) -> anyhow::Result<u64> {
        let deadline = Instant::now() + WAIT;
        loop {
            for c in &self.controllers {
                if Some(c.id) == except || c.child.is_none() {
                    continue;
                }
                let quick = ControllerClient::new(
                    vec![c.api.clone()],
                    ClientOptions {
                        deadline: Duration::from_millis(500),
                        attempt_timeout: Duration::from_millis(300),
                    },
                );
                if let Ok(status) = quick.cluster_status().await {
                    if status.leader_id == Some(status.node_id) {
                        return Ok(status.node_id);
                    }
                }
            }
            if Instant::now() > deadline {
                bail!("no controller (but {except:?}) reports itself leader");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn logs(&self) -> String {
        let mut out = String::new();
        for c in &self.controllers {
            let path = self.dir.path().join(format!("controller-{}.log", c.id));
            let text = std::fs::read_to_string(path).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(15).collect();
            out += &format!("--- controller {} ---\n", c.id);
            for line in tail.into_iter().rev() {
                out += line;
                out.push('\n');
            }
        }
        out
    }
}

impl Drop for Quorum {
    fn drop(&mut self) {
        for c in &mut self.controllers {
            if let Some(mut child) = c.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// Proposes allocations from `tasks` concurrent clients until `stop`,
/// returning every acknowledged id.
fn load(
    client: &ControllerClient,
    tasks: usize,
    stop: Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<anyhow::Result<Vec<i64>>>> {
    (0..tasks)
        .map(|_| {
            let client = client.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut ids = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let c = client
                        .propose(&Command::AllocateProducerIds { count: 1 })
                        .await?;
                    match c.answer {
                        Ok(Outcome::ProducerIds { first }) => ids.push(first),
                        other => bail!("unexpected answer {other:?}"),
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Ok(ids)
            })
        })
        .collect()
}

/// Stops the load, checks the acknowledged ids are contiguous and that every
/// controller's state equals the leader's.
async fn finish_and_check(
    quorum: &Quorum,
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<anyhow::Result<Vec<i64>>>>,
) -> anyhow::Result<usize> {
    stop.store(true, Ordering::Relaxed);
    let mut ids = Vec::new();
    for t in tasks {
        ids.extend(t.await??);
    }
    ids.sort_unstable();
    ensure!(!ids.is_empty());
    let base = ids[0];
    let expected: Vec<i64> = (base..base + ids.len() as i64).collect();
    ensure!(
        ids == expected,
        "acknowledged ids are not contiguous: lost or repeated commands"
    );
    // One more, to learn the final index; then every controller's watch
    // must reach it with the same state.
    let client = quorum.client();
    let last = client
        .propose(&Command::AllocateProducerIds { count: 1 })
        .await?;
    ensure!(
        last.answer
            == Ok(Outcome::ProducerIds {
                first: base + ids.len() as i64
            })
    );
    let (index, leader_state) = client.read_state().await?;
    ensure!(index >= last.index);
    let leader_state = serde_json::to_value(&leader_state)?;
    for c in &quorum.controllers {
        let mirror = Mirror::start(quorum.client_of(c.id)?);
        ensure!(
            mirror.wait_for(index, WAIT).await,
            "controller {} never reached index {index}",
            c.id
        );
        let state = mirror.read(|s| serde_json::to_value(s))?;
        // Everything up to `index` is the same; nothing was proposed since.
        ensure!(
            state == leader_state,
            "controller {} differs from the leader",
            c.id
        );
    }
    Ok(ids.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_of_the_leader_loses_and_repeats_nothing() -> anyhow::Result<()> {
    let nodes = (0..3)
        .map(|_| {
            Ok((
                format!("127.0.0.1:{}", free_port("127.0.0.1")?),
                format!("127.0.0.1:{}", free_port("127.0.0.1")?),
                Vec::new(),
            ))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut quorum = Quorum::new(nodes)?;
    for id in 1..=3 {
        quorum.start(id)?;
    }
    let result = async {
        let client = quorum.client();
        let stop = Arc::new(AtomicBool::new(false));
        let tasks = load(&client, 4, stop.clone());
        tokio::time::sleep(Duration::from_millis(500)).await;
        let leader = quorum.leader_except(None).await?;
        quorum.kill(leader)?;
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        let next = quorum.leader_except(Some(leader)).await?;
        ensure!(next != leader);
        quorum.start(leader)?;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let n = finish_and_check(&quorum, stop, tasks).await?;
        eprintln!("{n} acknowledged commands across a SIGKILL of leader {leader}, exactly once");
        anyhow::Ok(())
    }
    .await;
    result.with_context(|| quorum.logs())
}

/// Network namespaces joined by a bridge, removed on drop.
struct Netns {
    tag: String,
    names: Vec<String>,
}

fn sh(args: &[&str]) -> anyhow::Result<()> {
    let out = Process::new(args[0]).args(&args[1..]).output()?;
    ensure!(
        out.status.success(),
        "{}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(())
}

impl Netns {
    /// `n` namespaces `10.<net>.0.<11+i>/24` on a bridge at `10.<net>.0.1`.
    fn create(n: usize) -> anyhow::Result<(Netns, Vec<String>)> {
        let pid = std::process::id() % 10_000;
        let tag = format!("fl{pid}");
        let net = 100 + pid % 150;
        let mut ns = Netns {
            tag: tag.clone(),
            names: Vec::new(),
        };
        let bridge = format!("{tag}br");
        sh(&["ip", "link", "add", &bridge, "type", "bridge"])?;
        sh(&[
            "ip",
            "addr",
            "add",
            &format!("10.{net}.0.1/24"),
            "dev",
            &bridge,
        ])?;
        sh(&["ip", "link", "set", &bridge, "up"])?;
        let mut ips = Vec::new();
        for i in 0..n {
            let name = format!("{tag}n{i}");
            sh(&["ip", "netns", "add", &name])?;
            ns.names.push(name.clone());
            let (outer, inner) = (format!("{tag}v{i}"), format!("{tag}p{i}"));
            sh(&[
                "ip", "link", "add", &outer, "type", "veth", "peer", "name", &inner,
            ])?;
            sh(&["ip", "link", "set", &inner, "netns", &name])?;
            sh(&["ip", "link", "set", &outer, "master", &bridge])?;
            sh(&["ip", "link", "set", &outer, "up"])?;
            let ip = format!("10.{net}.0.{}", 11 + i);
            sh(&[
                "ip",
                "netns",
                "exec",
                &name,
                "ip",
                "addr",
                "add",
                &format!("{ip}/24"),
                "dev",
                &inner,
            ])?;
            sh(&[
                "ip", "netns", "exec", &name, "ip", "link", "set", &inner, "up",
            ])?;
            sh(&[
                "ip", "netns", "exec", &name, "ip", "link", "set", "lo", "up",
            ])?;
            ips.push(ip);
        }
        Ok((ns, ips))
    }

    /// Drops every packet in and out of namespace `i` (but its loopback).
    fn cut(&self, i: usize) -> anyhow::Result<()> {
        let name = &self.names[i];
        for (chain, dir) in [("INPUT", "-i"), ("OUTPUT", "-o")] {
            sh(&[
                "ip", "netns", "exec", name, "iptables", "-I", chain, "!", dir, "lo", "-j", "DROP",
            ])?;
        }
        Ok(())
    }

    fn heal(&self, i: usize) -> anyhow::Result<()> {
        let name = &self.names[i];
        sh(&["ip", "netns", "exec", name, "iptables", "-F"])
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        for name in &self.names {
            let _ = sh(&["ip", "netns", "del", name]);
        }
        let _ = sh(&["ip", "link", "del", &format!("{}br", self.tag)]);
    }
}

fn skip(why: &str) -> anyhow::Result<()> {
    if std::env::var_os("CI").is_some() {
        bail!("the partition test cannot run and CI is set: {why}");
    }
    eprintln!("SKIPPED: {why}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_leader_cannot_commit_and_rejoins_without_divergence() -> anyhow::Result<()> {
    // Root, as `id -u` tells.
    let uid = Process::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
    if uid.as_deref().ok() != Some("0") {
        return skip("not root: cannot create network namespaces");
    }
    for tool in ["ip", "iptables"] {
        if Process::new(tool).arg("--version").output().is_err() {
            return skip(&format!("`{tool}` is not installed"));
        }
    }
    let (netns, ips) = Netns::create(3)?;
    let nodes = ips
        .iter()
        .zip(&netns.names)
        .map(|(ip, ns)| {
            (
                format!("{ip}:9093"),
                format!("{ip}:9094"),
                vec![
                    "ip".to_owned(),
                    "netns".to_owned(),
                    "exec".to_owned(),
                    ns.clone(),
                ],
            )
        })
        .collect();
    let mut quorum = Quorum::new(nodes)?;
    for id in 1..=3 {
        quorum.start(id)?;
    }
    let result = async {
        let client = quorum.client();
        let stop = Arc::new(AtomicBool::new(false));
        let tasks = load(&client, 4, stop.clone());
        tokio::time::sleep(Duration::from_millis(500)).await;
        let leader = quorum.leader_except(None).await?;
        let cut_at = Instant::now();
        netns.cut(leader as usize - 1)?;
        // The majority elects a new leader and goes on committing.
        let next = quorum.leader_except(Some(leader)).await?;
        eprintln!(
            "leader {leader} cut off; controller {next} leads after {:?}",
            cut_at.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(1_000)).await;
        netns.heal(leader as usize - 1)?;
        tokio::time::sleep(Duration::from_millis(1_000)).await;
        let n = finish_and_check(&quorum, stop, tasks).await?;
        eprintln!("{n} acknowledged commands across a partition of leader {leader}, exactly once");
        anyhow::Ok(())
    }
    .await;
    let logs = quorum.logs();
    drop(quorum);
    drop(netns);
    result.with_context(|| logs)
}
