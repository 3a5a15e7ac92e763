//! A "process kubelet" for the operator's local end-to-end test: it plays
//! the StatefulSet controller and the kubelet against the fake API server
//! (`support/fake_api.rs`), so that the StatefulSets the real reconciler
//! applies run as local processes.
//!
//! What it does, polling every 250 ms:
//! - every replica ordinal of every StatefulSet in its namespace becomes a
//!   process of the pod template's (only) container: its `command` + `args`,
//!   `floe` being the binary under test; the environment resolved like the
//!   kubelet does (`envFrom` ConfigMaps, then `env`: values with `$(VAR)`
//!   expansion, downward-API `fieldRef`s — name, namespace, labels including
//!   `apps.kubernetes.io/pod-index`, annotations, `status.podIP` —, and
//!   `configMapKeyRef` / `secretKeyRef` read from the API server);
//! - networking is rewritten onto loopback: every `0.0.0.0:PORT` of a pod and
//!   every `<pod>.<service>.<namespace>.svc[.cluster.local]:PORT` becomes
//!   `127.0.0.1:P`, with one port `P` allocated per (pod, port) for the whole
//!   run (the DNS name of a pod is stable, so is its address here);
//! - volumes: each `volumeMount` path in the environment becomes a directory
//!   under the work dir — a fresh one per start for an `emptyDir`, a lasting
//!   one per (claim template, pod) for a PVC;
//! - readiness is the container's `readinessProbe` (HTTP GET) on the pod's
//!   loopback port, asked once per poll (a single failure is not-ready; no
//!   `periodSeconds` or `failureThreshold`); Pod objects (labels, Ready condition) and the
//!   StatefulSet's `status` (replicas, readyReplicas, updatedReplicas,
//!   current/updateRevision, observedGeneration) are written back;
//! - StatefulSet semantics: missing ordinals start together (both Floe sets
//!   are `podManagementPolicy: Parallel`; `OrderedReady` starts one at a time);
//!   a scale-down terminates the ordinals above the count — SIGTERM, then
//!   SIGKILL after `terminationGracePeriodSeconds`; a template change (a new
//!   revision, the FNV hash of the template) rolls the pods from the highest
//!   ordinal down, one at a time, each replaced only once every pod of the
//!   set is ready (`RollingUpdate` with `maxUnavailable: 1`); a pod whose
//!   process exits on its own is recorded as a crash and started again.
//!
//! What it is not: Kubernetes. No scheduling, nodes, cgroups or resource
//! limits, no image (the local `floe` binary runs whatever the image says),
//! no liveness or startup probes, no Services (only pod DNS names are
//! rewritten; a Service name in a pod's environment stays as it is), no
//! PodDisruptionBudgets, no `OnDelete` or partitioned rollouts, no
//! `minReadySeconds`, no restart back-off beyond one second, no network
//! isolation: every process shares this machine's loopback.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::fs::OpenOptions;
use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Container, Pod};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use super::pod_env;

/// The label the StatefulSet controller puts the ordinal in.
const POD_INDEX: &str = "apps.kubernetes.io/pod-index";
const POLL: Duration = Duration::from_millis(250);

/// What happened to a pod, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum What {
    /// Its process started, from this template revision.
    Started { revision: String },
    /// Its readiness probe passed for the first time since it started.
    Ready,
    /// It was sent SIGTERM, for this reason (`scale-down`, `rolling-update`).
    Terminating { reason: &'static str },
    /// Its process exited after SIGTERM: exit code (`None`: by a signal),
    /// and whether the grace period ran out (SIGKILL).
    Exited { code: Option<i32>, killed: bool },
    /// Its process exited without being asked to.
    Crashed { status: String },
}

/// One [`What`] of one pod.
#[derive(Clone, Debug)]
pub struct Lifecycle {
    pub at: Instant,
    pub pod: String,
    pub what: What,
}

#[derive(Default)]
struct Shared {
    ports: BTreeMap<(String, u16), u16>,
    next_port: u16,
    events: Vec<Lifecycle>,
}

/// Runs the pods of a namespace's StatefulSets as local processes (see the
/// module docs). Clones share the same pods, which are SIGKILLed by
/// [`Kubelet::shutdown`], or when the runtime running the loop goes away.
#[derive(Clone)]
pub struct Kubelet {
    shared: Arc<Mutex<Shared>>,
    stop: CancellationToken,
    task: Arc<Mutex<Option<tokio::task::JoinHandle<()>>>>,
}

impl Kubelet {
    /// Starts polling the StatefulSets of `namespace`; pods keep their data
    /// and logs (`<pod>.log`) under `root`; `floe` is the binary run for a
    /// container whose command is `floe`.
    pub fn start(client: Client, namespace: &str, root: &Path, floe: PathBuf) -> Kubelet {
        // Ports below the ephemeral range, so that outgoing connections do
        // not take a port a pod is about to bind.
        let next_port = 20_000 + (std::process::id() % 8_000) as u16;
        let shared = Arc::new(Mutex::new(Shared {
            next_port,
            ..Shared::default()
        }));
        let stop = CancellationToken::new();
        let mut node = Node {
            client,
            namespace: namespace.to_string(),
            root: root.to_path_buf(),
            floe,
            shared: shared.clone(),
            pods: BTreeMap::new(),
            written: BTreeMap::new(),
            current_revision: BTreeMap::new(),
            update_revision: BTreeMap::new(),
            starts: 0,
        };
        let token = stop.clone();
        let task = tokio::spawn(async move {
            while !token.is_cancelled() {
                if let Err(e) = node.sync().await {
                    eprintln!("kubelet: {e:#}");
                }
                tokio::select! {
                    _ = token.cancelled() => {}
                    _ = tokio::time::sleep(POLL) => {}
                }
            }
            node.kill_all();
        });
        Kubelet {
            shared,
            stop,
            task: Arc::new(Mutex::new(Some(task))),
        }
    }

    /// `127.0.0.1:P`: where port `port` of pod `pod` is reachable.
    pub fn address(&self, pod: &str, port: u16) -> String {
        format!("127.0.0.1:{}", port_of(&self.shared, pod, port))
    }

    /// Everything that happened to the pods so far.
    pub fn events(&self) -> Vec<Lifecycle> {
        self.shared.lock().unwrap().events.clone()
    }

    /// SIGKILL every pod and stop.
    pub async fn shutdown(&self) {
        self.stop.cancel();
        let task = self.task.lock().unwrap().take();
        if let Some(task) = task {
            let _ = task.await;
        }
    }
}

fn port_of(shared: &Mutex<Shared>, pod: &str, port: u16) -> u16 {
    let mut s = shared.lock().unwrap();
    if let Some(p) = s.ports.get(&(pod.to_string(), port)) {
        return *p;
    }
    loop {
        let candidate = s.next_port;
        s.next_port += 1;
        if TcpListener::bind(("127.0.0.1", candidate)).is_ok() {
            s.ports.insert((pod.to_string(), port), candidate);
            return candidate;
        }
    }
}

fn record(shared: &Mutex<Shared>, pod: &str, what: What) {
    eprintln!("kubelet: {pod}: {what:?}");
    shared.lock().unwrap().events.push(Lifecycle {
        at: Instant::now(),
        pod: pod.to_string(),
        what,
    });
}

enum Phase {
    Running(Child),
    /// SIGTERM sent at this instant; SIGKILL once the grace period is over.
    Terminating(Child, Instant, Duration),
    /// Exited on its own; started again after a second.
    CrashedAt(Instant),
}

struct PodProcess {
    set: String,
    ordinal: i32,
    revision: String,
    ready: bool,
    /// Readiness probe: loopback port and path.
    probe: Option<(u16, String)>,
    grace: Duration,
    /// The Pod object, without its status.
    object: Value,
    phase: Phase,
}

/// The loop's state: only its task touches the processes.
struct Node {
    client: Client,
    namespace: String,
    root: PathBuf,
    floe: PathBuf,
    shared: Arc<Mutex<Shared>>,
    pods: BTreeMap<String, PodProcess>,
    /// The Pod / StatefulSet status last written, to write only changes.
    written: BTreeMap<String, Value>,
    current_revision: BTreeMap<String, String>,
    update_revision: BTreeMap<String, String>,
    starts: u64,
}

impl Node {
    async fn sync(&mut self) -> anyhow::Result<()> {
        let sets: Api<StatefulSet> = Api::namespaced(self.client.clone(), &self.namespace);
        let sets = sets.list(&ListParams::default()).await?.items;
        self.reap();
        self.probe().await;
        let names: BTreeSet<String> = sets.iter().map(|s| s.name_any()).collect();
        let orphans: Vec<String> = self
            .pods
            .iter()
            .filter(|(_, p)| !names.contains(&p.set))
            .map(|(n, _)| n.clone())
            .collect();
        for pod in orphans {
            self.terminate(&pod, "statefulset-deleted");
        }
        for sts in &sets {
            self.sync_set(sts).await?;
        }
        self.write_pods().await?;
        for sts in &sets {
            self.write_status(sts).await?;
        }
        Ok(())
    }

    /// Collects exits: terminations that finished (or ran out of grace) and
    /// crashes.
    fn reap(&mut self) {
        let mut gone = Vec::new();
        for (name, pod) in self.pods.iter_mut() {
            match &mut pod.phase {
                Phase::Running(child) => {
                    if let Ok(Some(status)) = child.try_wait() {
                        record(
                            &self.shared,
                            name,
                            What::Crashed {
                                status: status.to_string(),
                            },
                        );
                        pod.ready = false;
                        pod.phase = Phase::CrashedAt(Instant::now());
                    }
                }
                Phase::Terminating(child, since, grace) => {
                    let mut killed = false;
                    if since.elapsed() > *grace {
                        let _ = child.kill();
                        killed = true;
                    }
                    let status = if killed {
                        child.wait().ok()
                    } else {
                        child.try_wait().ok().flatten()
                    };
                    if let Some(status) = status {
                        record(
                            &self.shared,
                            name,
                            What::Exited {
                                code: status.code(),
                                killed,
                            },
                        );
                        gone.push(name.clone());
                    }
                }
                Phase::CrashedAt(at) => {
                    if at.elapsed() > Duration::from_secs(1) {
                        gone.push(name.clone());
                    }
                }
            }
        }
        for name in gone {
            self.pods.remove(&name);
        }
    }

    async fn probe(&mut self) {
        for (name, pod) in self.pods.iter_mut() {
            let Phase::Running(_) = pod.phase else {
                continue;
            };
            let ready = match &pod.probe {
                Some((port, path)) => http_ok(*port, path).await,
                None => true,
            };
            if ready && !pod.ready {
                record(&self.shared, name, What::Ready);
            }
            pod.ready = ready;
        }
    }

    fn terminate(&mut self, name: &str, reason: &'static str) {
        let Some(pod) = self.pods.get_mut(name) else {
            return;
        };
        match std::mem::replace(&mut pod.phase, Phase::CrashedAt(Instant::now())) {
            Phase::Running(child) => {
                record(&self.shared, name, What::Terminating { reason });
                let _ = Command::new("kill")
                    .args(["-TERM", &child.id().to_string()])
                    .status();
                pod.ready = false;
                pod.phase = Phase::Terminating(child, Instant::now(), pod.grace);
            }
            other => pod.phase = other,
        }
    }

    async fn sync_set(&mut self, sts: &StatefulSet) -> anyhow::Result<()> {
        let name = sts.name_any();
        let spec = &sts.spec;
        let template = spec.template.clone();
        let revision = format!(
            "{name}-{:010x}",
            fnv(&serde_json::to_vec(&template)?) & 0xff_ffff_ffff
        );
        self.current_revision
            .entry(name.clone())
            .or_insert_with(|| revision.clone());
        self.update_revision.insert(name.clone(), revision.clone());
        let start = spec.ordinals.as_ref().and_then(|o| o.start).unwrap_or(0);
        let wanted = start..start + spec.replicas.unwrap_or(1);
        let mine: Vec<(String, i32)> = self
            .pods
            .iter()
            .filter(|(_, p)| p.set == name)
            .map(|(n, p)| (n.clone(), p.ordinal))
            .collect();
        for (pod, ordinal) in &mine {
            if !wanted.contains(ordinal) {
                self.terminate(pod, "scale-down");
            }
        }
        let pod_name = |ordinal: i32| format!("{name}-{ordinal}");
        let settled = wanted.clone().all(|o| {
            self.pods
                .get(&pod_name(o))
                .is_some_and(|p| p.ready && matches!(p.phase, Phase::Running(_)))
        }) && !self
            .pods
            .values()
            .any(|p| p.set == name && matches!(p.phase, Phase::Terminating(..)));
        let rolling_update = spec
            .update_strategy
            .as_ref()
            .and_then(|s| s.type_.as_deref())
            .unwrap_or("RollingUpdate")
            == "RollingUpdate";
        if settled && rolling_update {
            let stale = wanted
                .clone()
                .rev()
                .find(|o| self.pods[&pod_name(*o)].revision != revision);
            if let Some(ordinal) = stale {
                self.terminate(&pod_name(ordinal), "rolling-update");
            }
        }
        let parallel = spec.pod_management_policy.as_deref() == Some("Parallel");
        for ordinal in wanted.clone() {
            let pod = pod_name(ordinal);
            if self.pods.contains_key(&pod) {
                if !parallel && !self.pods[&pod].ready {
                    break;
                }
                continue;
            }
            self.start_pod(sts, &pod, ordinal, &revision)
                .await
                .with_context(|| format!("starting pod {pod}"))?;
            if !parallel {
                break;
            }
        }
        let all_updated = wanted.clone().all(|o| {
            self.pods
                .get(&pod_name(o))
                .is_some_and(|p| p.revision == revision)
        });
        if all_updated {
            self.current_revision.insert(name, revision);
        }
        Ok(())
    }

    async fn start_pod(
        &mut self,
        sts: &StatefulSet,
        pod: &str,
        ordinal: i32,
        revision: &str,
    ) -> anyhow::Result<()> {
        let template = &sts.spec.template;
        let spec = template.spec.as_ref().context("the template has no spec")?;
        let [container] = spec.containers.as_slice() else {
            bail!("one container per pod is supported");
        };
        let mut labels = template
            .metadata
            .as_ref()
            .and_then(|m| m.labels.clone())
            .unwrap_or_default();
        labels.insert(POD_INDEX.into(), ordinal.to_string());
        labels.insert("statefulset.kubernetes.io/pod-name".into(), pod.into());
        labels.insert("controller-revision-hash".into(), revision.into());
        let annotations = template
            .metadata
            .as_ref()
            .and_then(|m| m.annotations.clone())
            .unwrap_or_default();
        let meta = json!({"name": pod, "namespace": self.namespace, "labels": labels, "annotations": annotations});
        let env = pod_env::resolve(&self.client, &self.namespace, container, &meta).await?;

        // Volumes: emptyDirs fresh per start, claims per (claim, pod).
        self.starts += 1;
        let claims: BTreeSet<String> = sts
            .spec
            .volume_claim_templates
            .iter()
            .flatten()
            .filter_map(|c| c.metadata.name.clone())
            .collect();
        let mut mounts = Vec::new();
        for m in container.volume_mounts.iter().flatten() {
            let dir = if claims.contains(&m.name) {
                self.root.join("claims").join(format!("{}-{pod}", m.name))
            } else {
                self.root
                    .join("empty")
                    .join(format!("{pod}-{}-{}", m.name, self.starts))
            };
            std::fs::create_dir_all(&dir)?;
            mounts.push((m.mount_path.clone(), dir));
        }
        let env: Vec<(String, String)> = env
            .into_iter()
            .map(|(k, v)| {
                let mut v =
                    pod_env::rewrite_addresses(&v, pod, &|p, n| port_of(&self.shared, p, n));
                for (path, dir) in &mounts {
                    if v == *path || v.starts_with(&format!("{path}/")) {
                        v = format!("{}{}", dir.display(), &v[path.len()..]);
                    }
                }
                (k, v)
            })
            .collect();

        let mut argv: Vec<String> = container.command.clone().unwrap_or_default();
        argv.extend(container.args.clone().unwrap_or_default());
        let program = match argv.first().map(String::as_str) {
            Some("floe") => self.floe.clone(),
            Some(other) => PathBuf::from(other),
            None => bail!("the container has no command (image entrypoints are not known here)"),
        };
        let log_path = self.root.join(format!("{pod}.log"));
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)?;
        writeln!(log, "===== kubelet: starting {pod} revision {revision}")?;
        let child = Command::new(&program)
            .args(&argv[1..])
            .env_clear()
            .envs(env.iter().map(|(k, v)| (k, v)))
            .env(
                "FLOE_LOG",
                std::env::var("FLOE_LOG").unwrap_or_else(|_| "info,openraft=warn".into()),
            )
            .current_dir(&self.root)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("spawning {}", program.display()))?;

        let probe = container
            .readiness_probe
            .as_ref()
            .and_then(|p| p.http_get.as_ref())
            .map(|get| -> anyhow::Result<(u16, String)> {
                let port = named_port(container, &get.port)?;
                Ok((
                    port_of(&self.shared, pod, port),
                    get.path.clone().unwrap_or_else(|| "/".into()),
                ))
            })
            .transpose()?;
        let grace = spec.termination_grace_period_seconds.unwrap_or(30);
        let mut object = json!({
            "apiVersion": "v1", "kind": "Pod", "metadata": meta,
            "spec": spec,
        });
        object["spec"]["nodeName"] = json!("localhost");
        record(
            &self.shared,
            pod,
            What::Started {
                revision: revision.to_string(),
            },
        );
        self.pods.insert(
            pod.to_string(),
            PodProcess {
                set: sts.name_any(),
                ordinal,
                revision: revision.to_string(),
                ready: false,
                probe,
                grace: Duration::from_secs(grace.max(0) as u64),
                object,
                phase: Phase::Running(child),
            },
        );
        Ok(())
    }
}

impl Node {
    /// Pod objects: created when a process starts (again), their Ready
    /// condition kept current, deleted once the process is gone.
    async fn write_pods(&mut self) -> anyhow::Result<()> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &self.namespace);
        let gone: Vec<String> = self
            .written
            .keys()
            .filter_map(|k| k.strip_prefix("pod/"))
            .filter(|name| !self.pods.contains_key(*name))
            .map(str::to_string)
            .collect();
        for name in gone {
            delete_pod(&api, &name).await?;
            self.written.remove(&format!("pod/{name}"));
        }
        for (name, pod) in &self.pods {
            let phase = match pod.phase {
                Phase::CrashedAt(_) => "Failed",
                _ => "Running",
            };
            let status = json!({
                "phase": phase,
                "podIP": "127.0.0.1",
                "conditions": [{"type": "Ready", "status": if pod.ready { "True" } else { "False" }}],
            });
            let key = format!("pod/{name}");
            let state = json!({"revision": pod.revision, "status": status, "object": pod.object});
            match self.written.get(&key) {
                Some(prev) if *prev == state => continue,
                Some(prev) if prev["object"] == pod.object => {}
                previous => {
                    if previous.is_some() {
                        delete_pod(&api, name).await?;
                    }
                    let object: Pod = serde_json::from_value(pod.object.clone())?;
                    if let Err(e) = api.create(&PostParams::default(), &object).await {
                        // Left from an earlier incarnation: replace it.
                        delete_pod(&api, name).await?;
                        api.create(&PostParams::default(), &object)
                            .await
                            .map_err(|e2| anyhow!("creating Pod {name}: {e}, then {e2}"))?;
                    }
                }
            }
            api.patch_status(
                name,
                &PatchParams::apply("kubelet"),
                &Patch::Apply(json!({"apiVersion": "v1", "kind": "Pod", "status": status})),
            )
            .await?;
            self.written.insert(key, state);
        }
        Ok(())
    }

    async fn write_status(&mut self, sts: &StatefulSet) -> anyhow::Result<()> {
        let name = sts.name_any();
        let (Some(current), Some(update)) = (
            self.current_revision.get(&name).cloned(),
            self.update_revision.get(&name).cloned(),
        ) else {
            return Ok(());
        };
        let pods: Vec<&PodProcess> = self.pods.values().filter(|p| p.set == name).collect();
        let ready = pods.iter().filter(|p| p.ready).count();
        let status = json!({
            "observedGeneration": sts.metadata.generation,
            "replicas": pods.len(),
            "readyReplicas": ready,
            "availableReplicas": ready,
            "currentReplicas": pods.iter().filter(|p| p.revision == current).count(),
            "updatedReplicas": pods.iter().filter(|p| p.revision == update).count(),
            "currentRevision": current,
            "updateRevision": update,
        });
        let key = format!("statefulset/{name}");
        if self.written.get(&key) == Some(&status) {
            return Ok(());
        }
        let api: Api<StatefulSet> = Api::namespaced(self.client.clone(), &self.namespace);
        api.patch_status(
            &name,
            &PatchParams::apply("kubelet"),
            &Patch::Apply(
                json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "status": status}),
            ),
        )
        .await?;
        self.written.insert(key, status);
        Ok(())
    }

    fn kill_all(&mut self) {
        for pod in self.pods.values_mut() {
            if let Phase::Running(child) | Phase::Terminating(child, ..) = &mut pod.phase {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        self.pods.clear();
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill_all();
    }
}

async fn delete_pod(api: &Api<Pod>, name: &str) -> anyhow::Result<()> {
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

fn named_port(
    container: &Container,
    port: &k8s_openapi::apimachinery::pkg::util::intstr::IntOrString,
) -> anyhow::Result<u16> {
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    let number = match port {
        IntOrString::Int(n) => *n,
        IntOrString::String(name) => container
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref() == Some(name))
            .map(|p| p.container_port)
            .with_context(|| format!("the container has no port named {name}"))?,
    };
    Ok(u16::try_from(number)?)
}

/// `GET path` answered 200 within a second.
async fn http_ok(port: u16, path: &str) -> bool {
    let attempt = async {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
        s.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await?;
        let mut head = [0u8; 12];
        s.read_exact(&mut head).await?;
        std::io::Result::Ok(head.ends_with(b" 200"))
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(1), attempt).await,
        Ok(Ok(true))
    )
}

/// 64-bit FNV-1a.
fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}
