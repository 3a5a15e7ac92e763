//! A moto server (`pip install 'moto[server]'`) on a free loopback port,
//! killed on drop. moto serves EC2 (and S3) on that one port.
//!
//! `moto_server` is looked up on PATH, then in the repository's
//! `e2e/.venv/bin` (where `scripts/test` installs it). When it is missing the
//! test is skipped loudly — unless `FLOE_E2E_REQUIRE_ALL` or `CI` is set:
//! then it fails.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

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

fn find_moto() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("moto_server"))
            .find(|p| p.is_file())
    });
    on_path.or_else(|| {
        let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../e2e/.venv/bin/moto_server");
        venv.is_file().then_some(venv)
    })
}

/// Starts moto, or returns `None` after saying so when it is not installed
/// and nothing requires it.
pub fn start() -> Option<Moto> {
    let Some(bin) = find_moto() else {
        if std::env::var_os("FLOE_E2E_REQUIRE_ALL").is_some() || std::env::var_os("CI").is_some() {
            panic!(
                "moto_server is not on PATH nor in e2e/.venv/bin, and FLOE_E2E_REQUIRE_ALL or CI is set: \
                 run scripts/test once, or pip install 'moto[server]==5.2.1'"
            );
        }
        eprintln!(
            "\n!!! SKIPPING: moto_server not found (pip install 'moto[server]==5.2.1') !!!\n"
        );
        return None;
    };
    let port = TcpListener::bind("127.0.0.1:0")
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
    while !answers(port) {
        assert!(
            Instant::now() < deadline,
            "moto_server did not answer on port {port} within 30 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    Some(moto)
}

fn answers(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let req =
        format!("GET /moto-api/ HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
    if s.write_all(req.as_bytes()).is_err() {
        return false;
    }
    let mut buf = [0u8; 12];
    s.read_exact(&mut buf).is_ok() && buf.starts_with(b"HTTP/1.")
}
