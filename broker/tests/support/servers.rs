//! Test helpers shared by the object-store integration tests: find a server
//! binary (or skip loudly, and fail when `CI` is set), pick a free loopback
//! port, run the server as a child process that is killed on drop (its log
//! tail printed when the test panics), and speak bare HTTP/1.1 to it.
#![allow(dead_code)]

use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The repository root (the broker crate's parent).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the broker crate sits in the repository")
        .to_owned()
}

pub fn find_on_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    })
}

/// `name` on PATH or in one of `dirs` (relative to the repository root).
pub fn find_binary(name: &str, dirs: &[&str]) -> Option<PathBuf> {
    find_on_path(name).or_else(|| {
        let root = repo_root();
        dirs.iter()
            .map(|d| root.join(d).join(name))
            .find(|p| p.is_file())
    })
}

/// The binary, or `None` after saying loudly that `test` is skipped. When the
/// `CI` variable is set a missing binary fails the test instead.
pub fn require(bin: Option<PathBuf>, name: &str, test: &str, install: &str) -> Option<PathBuf> {
    if bin.is_some() {
        return bin;
    }
    if std::env::var_os("CI").is_some() {
        panic!("{name} is not installed and CI is set: {install}");
    }
    eprintln!("\n!!! SKIPPING {test}: {name} is not installed ({install}) !!!\n");
    None
}

/// A free loopback port (bound, then released for the server to take).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A server process on loopback, killed on drop. Its output goes to a log
/// file whose tail is printed when the test panics.
pub struct Server {
    pub name: &'static str,
    pub port: u16,
    child: Child,
    log: PathBuf,
}

impl Server {
    /// Start `cmd` (stdout and stderr to `log`) and wait until `port` accepts
    /// connections, at most `startup`.
    pub fn start(
        name: &'static str,
        mut cmd: Command,
        port: u16,
        log: PathBuf,
        startup: Duration,
    ) -> Server {
        let out = fs::File::create(&log).unwrap();
        cmd.stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        let mut server = Server {
            name,
            port,
            child,
            log,
        };
        let deadline = Instant::now() + startup;
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(status) = server.child.try_wait().unwrap() {
                panic!("{name} exited early ({status}):\n{}", server.log_tail());
            }
            assert!(
                Instant::now() < deadline,
                "{name} did not listen on port {port} within {startup:?}:\n{}",
                server.log_tail()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn log_tail(&self) -> String {
        let log = fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- {} log tail ---\n{}", self.name, self.log_tail());
        }
    }
}

/// One HTTP/1.1 request to loopback `port`; returns the status and the whole
/// response (head and body).
pub fn http(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, String)],
    body: &[u8],
) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.set_write_timeout(Some(Duration::from_secs(10)))?;
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes())?;
    s.write_all(body)?;
    let mut resp = Vec::new();
    s.read_to_end(&mut resp)?;
    let resp = String::from_utf8_lossy(&resp).into_owned();
    let status = resp
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    Ok((status, resp))
}

/// Await `f`, failing the test after 20 s.
pub async fn within<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(20), f)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}
