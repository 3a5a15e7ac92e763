//! A stand-in for the EC2 instance metadata service on loopback, serving
//! only what the watcher reads: `PUT /latest/api/token` (IMDSv2 session
//! tokens) and `GET` of metadata paths, 404 unless a body was set, 401
//! without a valid token. Each connection carries one request.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

#[derive(Default)]
struct State {
    bodies: HashMap<String, String>,
    token: String,
    tokens_issued: u32,
    requests: Vec<String>,
}

/// The running stand-in; dropped with the test's runtime.
#[derive(Clone)]
pub struct ImdsServer {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
}

impl ImdsServer {
    pub async fn start() -> ImdsServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(State::default()));
        let server = ImdsServer { addr, state };
        let s = server.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut conn, _)) = listener.accept().await else {
                    return;
                };
                let s = s.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 1024];
                    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                        match conn.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let head = String::from_utf8_lossy(&buf).to_string();
                    let (status, body) = s.answer(&head);
                    let reason = match status {
                        200 => "OK",
                        401 => "Unauthorized",
                        404 => "Not Found",
                        _ => "Bad Request",
                    };
                    let resp = format!(
                        "HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = conn.write_all(resp.as_bytes()).await;
                    let _ = conn.shutdown().await;
                });
            }
        });
        server
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Serves `body` at `path` from now on (`None`: 404 again).
    pub fn set(&self, path: &str, body: Option<&str>) {
        let mut st = self.state.lock().unwrap();
        match body {
            Some(b) => st.bodies.insert(path.to_string(), b.to_string()),
            None => st.bodies.remove(path),
        };
    }

    /// Invalidates the issued token, as on expiry.
    pub fn revoke_token(&self) {
        self.state.lock().unwrap().token = String::new();
    }

    pub fn tokens_issued(&self) -> u32 {
        self.state.lock().unwrap().tokens_issued
    }

    /// Request lines seen so far (`METHOD path`).
    pub fn requests(&self) -> Vec<String> {
        self.state.lock().unwrap().requests.clone()
    }

    fn answer(&self, head: &str) -> (u16, String) {
        let mut st = self.state.lock().unwrap();
        let mut lines = head.split("\r\n");
        let mut first = lines.next().unwrap_or_default().split(' ');
        let (method, path) = (
            first.next().unwrap_or_default(),
            first.next().unwrap_or_default(),
        );
        st.requests.push(format!("{method} {path}"));
        let header = |name: &str| {
            head.split("\r\n").skip(1).find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.trim()
                    .eq_ignore_ascii_case(name)
                    .then(|| v.trim().to_string())
            })
        };
        match method {
            "PUT" if path == "/latest/api/token" => {
                match header("x-aws-ec2-metadata-token-ttl-seconds")
                    .and_then(|t| t.parse::<u32>().ok())
                {
                    Some(ttl) if (1..=21600).contains(&ttl) => {
                        st.tokens_issued += 1;
                        st.token = format!("token-{}", st.tokens_issued);
                        (200, st.token.clone())
                    }
                    _ => (400, "missing or invalid TTL".to_string()),
                }
            }
            "GET" => {
                let valid = header("x-aws-ec2-metadata-token")
                    .is_some_and(|t| !st.token.is_empty() && t == st.token);
                if !valid {
                    return (401, String::new());
                }
                match st.bodies.get(path) {
                    Some(b) => (200, b.clone()),
                    None => (404, "Not Found".to_string()),
                }
            }
            _ => (400, String::new()),
        }
    }
}
