//! Hostile bytes on the Kafka listener of a real local node (in-process,
//! `127.0.0.1:0`), over raw TCP: truncated frames, lying and negative length
//! prefixes, unknown API keys, garbage bodies, a too-new ApiVersions, a
//! corrupt record batch. After each, a new connection must still get a
//! normal ApiVersions answer. Every socket operation has a timeout.
//!
//! The one case that can kill the broker (a tiny request whose array length
//! makes the decoder pre-allocate hundreds of GiB) runs against a child
//! `floe` process, so that an abort is a test failure rather than the end of
//! this test binary.

#[path = "support/records.rs"]
mod records;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use clap::Parser;
use floe_broker::local::{LocalArgs, LocalNode};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, ProduceRequest, ProduceResponse,
    RequestHeader, ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const IO_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(clap::Parser)]
struct Cli {
    #[command(flatten)]
    local: LocalArgs,
}

async fn start_node() -> (LocalNode, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let cli = Cli::try_parse_from([
        "hostile-input".as_ref(),
        "--listen".as_ref(),
        "127.0.0.1:0".as_ref(),
        "--metrics-listen".as_ref(),
        "127.0.0.1:0".as_ref(),
        "--data-dir".as_ref(),
        dir.path().as_os_str(),
        "--upload-interval-ms".as_ref(),
        "50".as_ref(),
    ])
    .unwrap();
    let node = within("node start", LocalNode::start(cli.local))
        .await
        .unwrap();
    (node, dir)
}

async fn within<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(IO_TIMEOUT, f)
        .await
        .unwrap_or_else(|_| panic!("timed out after {IO_TIMEOUT:?} waiting for {what}"))
}

async fn connect(addr: SocketAddr) -> TcpStream {
    within("connect", TcpStream::connect(addr)).await.unwrap()
}

/// A request frame: size, header (in the version the API expects), body.
fn request(api: ApiKey, version: i16, correlation_id: i32, body: &[u8]) -> Vec<u8> {
    let mut header = RequestHeader::default();
    header.request_api_key = api as i16;
    header.request_api_version = version;
    header.correlation_id = correlation_id;
    header.client_id = Some(StrBytes::from_static_str("hostile"));
    let mut buf = BytesMut::new();
    header
        .encode(&mut buf, api.request_header_version(version))
        .unwrap();
    buf.extend_from_slice(body);
    let mut frame = (buf.len() as i32).to_be_bytes().to_vec();
    frame.extend_from_slice(&buf);
    frame
}

fn encoded<T: Encodable>(msg: &T, version: i16) -> Vec<u8> {
    let mut buf = BytesMut::new();
    msg.encode(&mut buf, version).unwrap();
    buf.to_vec()
}

/// Read one response frame; `None` if the broker closed the connection.
async fn read_frame(s: &mut TcpStream) -> Option<Bytes> {
    let mut size = [0u8; 4];
    match within("a response", s.read_exact(&mut size)).await {
        Ok(_) => {}
        Err(_) => return None,
    }
    let size = i32::from_be_bytes(size);
    assert!((0..16 << 20).contains(&size), "response size {size}");
    let mut body = vec![0u8; size as usize];
    within("a response body", s.read_exact(&mut body))
        .await
        .expect("response truncated");
    Some(Bytes::from(body))
}

/// The broker closed the connection without answering.
async fn assert_closed(s: &mut TcpStream, what: &str) {
    let mut buf = [0u8; 64];
    match within(what, s.read(&mut buf)).await {
        Ok(0) | Err(_) => {}
        Ok(n) => panic!("{what}: expected the connection closed, got {n} bytes"),
    }
}

/// A normal client on a new connection still gets a normal answer.
async fn assert_healthy(addr: SocketAddr) {
    let mut s = connect(addr).await;
    let mut req = ApiVersionsRequest::default();
    req.client_software_name = StrBytes::from_static_str("hostile-test");
    req.client_software_version = StrBytes::from_static_str("1");
    let frame = request(ApiKey::ApiVersions, 3, 42, &encoded(&req, 3));
    within("write", s.write_all(&frame)).await.unwrap();
    let mut body = read_frame(&mut s).await.expect("ApiVersions answered");
    let header = ResponseHeader::decode(&mut body, 0).unwrap();
    assert_eq!(header.correlation_id, 42);
    let resp = ApiVersionsResponse::decode(&mut body, 3).unwrap();
    assert_eq!(resp.error_code, 0);
    assert!(resp.api_keys.len() > 10);
}

async fn send(addr: SocketAddr, bytes: &[u8]) -> TcpStream {
    let mut s = connect(addr).await;
    within("write", s.write_all(bytes)).await.unwrap();
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_frame_then_close() {
    let (node, _dir) = start_node().await;
    let mut frame = 100i32.to_be_bytes().to_vec();
    frame.extend_from_slice(&[0, 18, 0, 3, 0, 0, 0, 1, 0, 0]);
    let mut s = send(node.addr, &frame).await;
    within("half-close", s.shutdown()).await.unwrap();
    assert_closed(&mut s, "truncated frame").await;
    assert_healthy(node.addr).await;
    node.stop().await;
}

/// This process's virtual size (the broker runs in it), where /proc exists.
fn vm_size_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmSize:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gib_length_prefix_is_refused_before_reading() {
    let (node, _dir) = start_node().await;
    // i32::MAX (2 GiB - 1): refused from the prefix alone, with no body sent,
    // so the broker never waits for (or buffers) the claimed 2 GiB.
    let before = vm_size_kib();
    let mut conns = Vec::new();
    for _ in 0..4 {
        conns.push(send(node.addr, &i32::MAX.to_be_bytes()).await);
    }
    for s in &mut conns {
        assert_closed(s, "2 GiB length prefix").await;
    }
    if let (Some(before), Some(after)) = (before, vm_size_kib()) {
        // Four 2 GiB buffers would add 8 GiB of address space.
        assert!(
            after < before + (1 << 20),
            "address space grew from {before} KiB to {after} KiB"
        );
    }
    // Just above --max-request-bytes (100 MiB): refused the same way.
    let mut s = send(node.addr, &((100 << 20) + 1i32).to_be_bytes()).await;
    assert_closed(&mut s, "length prefix above the limit").await;
    assert_healthy(node.addr).await;
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn negative_length_prefix() {
    let (node, _dir) = start_node().await;
    for size in [-1i32, -2, i32::MIN] {
        let mut s = send(node.addr, &size.to_be_bytes()).await;
        assert_closed(&mut s, "negative length prefix").await;
    }
    assert_healthy(node.addr).await;
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_api_key_and_short_header() {
    let (node, _dir) = start_node().await;
    // Api key 0x7f00, version 0, correlation 1, null client id.
    let body = [0x7f, 0, 0, 0, 0, 0, 0, 1, 0xff, 0xff];
    let mut frame = (body.len() as i32).to_be_bytes().to_vec();
    frame.extend_from_slice(&body);
    let mut s = send(node.addr, &frame).await;
    assert_closed(&mut s, "unknown api key").await;
    // A frame too short to hold a header, and an empty frame.
    for body in [&[0u8, 18, 0][..], &[][..]] {
        let mut frame = (body.len() as i32).to_be_bytes().to_vec();
        frame.extend_from_slice(body);
        let mut s = send(node.addr, &frame).await;
        assert_closed(&mut s, "short header").await;
    }
    assert_healthy(node.addr).await;
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_bodies_for_known_apis() {
    let (node, _dir) = start_node().await;
    let mut rng = 0x5eed_u64;
    for round in 0..40 {
        // Metadata v12: a short topics array (3 entries), then random bytes.
        // (A random array length can abort the process: see the ignored
        // `array_length_bomb_does_not_kill_the_broker`.)
        let mut body = vec![0x04];
        for _ in 0..(round % 7) * 9 + 1 {
            rng = rng
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            body.push((rng >> 33) as u8);
        }
        let frame = request(ApiKey::Metadata, 12, round, &body);
        let mut s = send(node.addr, &frame).await;
        // Either a well-formed answer to this request, or a closed connection.
        if let Some(mut resp) = read_frame(&mut s).await {
            let header = ResponseHeader::decode(&mut resp, 1).unwrap();
            assert_eq!(header.correlation_id, round);
        }
    }
    assert_healthy(node.addr).await;
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_versions_from_the_future_gets_a_v0_answer() {
    let (node, _dir) = start_node().await;
    // A client newer than us sends ApiVersions v99 (flexible header v2).
    let frame = request(ApiKey::ApiVersions, 99, 7, &[0, 0, 0]);
    let mut s = send(node.addr, &frame).await;
    let mut body = read_frame(&mut s).await.expect("an answer, not a close");
    let header = ResponseHeader::decode(&mut body, 0).unwrap();
    assert_eq!(header.correlation_id, 7);
    let resp = ApiVersionsResponse::decode(&mut body, 0).unwrap();
    assert_eq!(resp.error_code, 35, "UNSUPPORTED_VERSION");
    let av = resp
        .api_keys
        .iter()
        .find(|k| k.api_key == ApiKey::ApiVersions as i16)
        .expect("ApiVersions is listed");
    assert_eq!((av.min_version, av.max_version), (0, 3));
    assert!(resp
        .api_keys
        .iter()
        .any(|k| k.api_key == ApiKey::Produce as i16));
    assert!(body.is_empty(), "trailing bytes in the v0 body");
    // The connection stays usable: the client retries with a version we know.
    drop(s);
    assert_healthy(node.addr).await;
    node.stop().await;
}

fn produce(topic: &str, records: Bytes) -> Vec<u8> {
    let mut p = PartitionProduceData::default();
    p.index = 0;
    p.records = Some(records);
    let mut t = TopicProduceData::default();
    t.name = TopicName(StrBytes::from_string(topic.to_owned()));
    t.partition_data = vec![p];
    let mut req = ProduceRequest::default();
    req.acks = -1;
    req.timeout_ms = 5_000;
    req.topic_data = vec![t];
    encoded(&req, 9)
}

async fn produce_error(s: &mut TcpStream, correlation_id: i32, body: &[u8]) -> (i16, i64) {
    let frame = request(ApiKey::Produce, 9, correlation_id, body);
    within("write", s.write_all(&frame)).await.unwrap();
    let mut resp = read_frame(s)
        .await
        .expect("a produce response, not a close");
    let header = ResponseHeader::decode(&mut resp, 1).unwrap();
    assert_eq!(header.correlation_id, correlation_id);
    let r = ProduceResponse::decode(&mut resp, 9).unwrap();
    let p = &r.responses[0].partition_responses[0];
    (p.error_code, p.base_offset)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produce_with_corrupt_crc_is_refused_per_partition() {
    let (node, _dir) = start_node().await;
    floe_broker::handler::admin::create_topic(&node.broker, "hostile", 1, BTreeMap::new())
        .await
        .map_err(|(code, msg)| format!("{code:?}: {msg}"))
        .unwrap();
    let good = records::make_batch(&[b"ok".to_vec(), b"fine".to_vec()], 1);
    let mut bad = good.to_vec();
    let last = bad.len() - 1;
    bad[last] ^= 0x55;
    let mut s = connect(node.addr).await;
    let (code, _) = produce_error(&mut s, 1, &produce("hostile", Bytes::from(bad))).await;
    assert_eq!(code, 2, "CORRUPT_MESSAGE");
    // A batch cut short, on the same connection.
    let cut = good.slice(..good.len() - 3);
    let (code, _) = produce_error(&mut s, 2, &produce("hostile", cut)).await;
    assert_eq!(code, 2, "CORRUPT_MESSAGE for a truncated batch");
    // Nothing was written, and the same connection still works.
    let (code, base) = produce_error(&mut s, 3, &produce("hostile", good)).await;
    assert_eq!((code, base), (0, 0));
    assert_healthy(node.addr).await;
    node.stop().await;
}

/// A `floe local` child process, killed on drop.
struct Floe {
    child: Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Drop for Floe {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start_floe() -> Floe {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let child = Command::new(env!("CARGO_BIN_EXE_floe"))
        .arg("local")
        .arg("--listen")
        .arg(addr.to_string())
        .arg("--metrics-listen")
        .arg("127.0.0.1:0")
        .arg("--data-dir")
        .arg(dir.path())
        .env("FLOE_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start floe");
    let floe = Floe {
        child,
        addr,
        _dir: dir,
    };
    for _ in 0..100 {
        if TcpStream::connect(addr).await.is_ok() {
            return floe;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("floe did not start listening on {addr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn array_length_bomb_does_not_kill_the_broker() {
    let mut floe = start_floe().await;
    assert_healthy(floe.addr).await;
    // Metadata v12: topics compact array with length varint u32::MAX.
    let bombs = [
        request(ApiKey::Metadata, 12, 1, &[0xff, 0xff, 0xff, 0xff, 0x0f]),
        // Metadata v1 (non-flexible): topics array of i32::MAX entries.
        request(ApiKey::Metadata, 1, 2, &i32::MAX.to_be_bytes()),
    ];
    for bomb in bombs {
        let mut s = send(floe.addr, &bomb).await;
        assert_closed(&mut s, "array length bomb").await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        if let Some(status) = floe.child.try_wait().unwrap() {
            panic!("the broker died on a 20-byte request: {status}");
        }
        assert_healthy(floe.addr).await;
    }
}
