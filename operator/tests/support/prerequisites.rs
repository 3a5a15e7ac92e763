//! What the operator's local end-to-end test (`local_processes.rs`) needs
//! from outside the workspace, each found or started here: the `floe`
//! binary, a Python with confluent-kafka running the Kafka clients
//! (`kafka_clients.py`), and a moto S3 server. A missing Python or moto skips
//! the test loudly ([`required`]), except when `CI` is set.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Skip (`None`, said loudly) — or fail when `CI` is set.
pub fn required(what: &str) -> Option<()> {
    if std::env::var_os("CI").is_some() {
        panic!("{what}, and CI is set");
    }
    eprintln!("\n!!! SKIPPING local_processes: {what} !!!\n");
    None
}

/// The workspace root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `FLOE_BIN`, else `floe` in the target dir this test was built into.
pub fn floe_binary() -> PathBuf {
    let path = std::env::var_os("FLOE_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let exe = std::env::current_exe().unwrap();
            // target/debug/deps/local_processes-<hash> → target/debug/floe
            exe.parent().and_then(Path::parent).unwrap().join("floe")
        });
    assert!(
        path.is_file(),
        "the floe binary is not at {}: build it first (cargo build --bin floe) or set FLOE_BIN",
        path.display()
    );
    path
}

/// The first of `FLOE_E2E_PYTHON`, `python3` and `e2e/.venv/bin/python`
/// that imports confluent_kafka.
pub fn python() -> Option<PathBuf> {
    let candidates = [
        std::env::var_os("FLOE_E2E_PYTHON").map(PathBuf::from),
        Some(PathBuf::from("python3")),
        Some(repo().join("e2e/.venv/bin/python")),
    ];
    candidates.into_iter().flatten().find(|py| {
        Command::new(py)
            .args(["-c", "import confluent_kafka"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}

/// An executable on PATH, else in `e2e/.venv/bin`.
pub fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .chain([repo().join("e2e/.venv/bin").join(name)])
        .find(|p| p.is_file())
}

/// A moto S3 server on loopback with the bucket created; killed on drop.
pub struct Moto {
    child: Child,
    pub endpoint: String,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP/1.1 request without a body to a loopback port; the raw response.
pub fn http(port: u16, method: &str, path: &str) -> std::io::Result<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    s.read_to_string(&mut response)?;
    Ok(response)
}

pub fn start_moto(bin: &Path, bucket: &str) -> Moto {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(bin)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start moto_server");
    let moto = Moto {
        child,
        endpoint: format!("http://127.0.0.1:{port}"),
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while !http(port, "GET", "/moto-api/").is_ok_and(|r| r.starts_with("HTTP/1.")) {
        assert!(
            Instant::now() < deadline,
            "moto_server did not answer within 30 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let created = http(port, "PUT", &format!("/{bucket}")).unwrap();
    assert!(
        created.starts_with("HTTP/1.1 200"),
        "creating the bucket: {created}"
    );
    moto
}

/// The Python clients (`support/kafka_clients.py`), their output lines
/// echoed to stderr and kept.
pub struct Clients {
    child: Child,
    pub stdin: Option<ChildStdin>,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Clients {
    pub fn start(
        python: &Path,
        bootstrap: &str,
        topic: &str,
        partitions: u32,
        acks: &Path,
    ) -> Clients {
        let script =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/support/kafka_clients.py");
        let mut child = Command::new(python)
            .arg(script)
            .args([bootstrap, topic, &partitions.to_string()])
            .arg(acks)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the Python clients");
        let stdout = child.stdout.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let kept = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if !line.starts_with("PROGRESS") || kept.lock().unwrap().len() % 10 == 0 {
                    eprintln!("clients: {line}");
                }
                kept.lock().unwrap().push(line);
            }
        });
        Clients {
            stdin: child.stdin.take(),
            child,
            lines,
        }
    }

    pub fn line(&self, prefix: &str) -> Option<String> {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .rev()
            .find(|l| l.starts_with(prefix))
            .cloned()
    }

    /// Acknowledged records so far.
    pub fn acked(&self) -> u64 {
        self.line("PROGRESS")
            .and_then(|l| {
                l.split_whitespace()
                    .find_map(|w| w.strip_prefix("acked="))
                    .and_then(|n| n.parse().ok())
            })
            .unwrap_or(0)
    }

    pub fn alive(&mut self) -> bool {
        self.child.try_wait().is_ok_and(|s| s.is_none())
    }
}

impl Drop for Clients {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Prints the tail of every pod's log when the test fails.
pub struct LogsOnFailure(pub PathBuf);

impl Drop for LogsOnFailure {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        let mut logs: Vec<_> = std::fs::read_dir(&self.0)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "log"))
            .collect();
        logs.sort();
        for path in logs {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            eprintln!("----- {} (last 40 lines)", path.display());
            for line in &lines[lines.len().saturating_sub(40)..] {
                eprintln!("{line}");
            }
        }
    }
}
