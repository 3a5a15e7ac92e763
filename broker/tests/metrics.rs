//! The metrics endpoint of a running node, scraped over HTTP after real
//! Kafka traffic: the series an autoscaler uses are present and move.

use std::time::Duration;

use clap::Parser;
use floe_broker::local::{LocalArgs, LocalNode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    local: LocalArgs,
}

async fn get(addr: std::net::SocketAddr, path: &str) -> (String, String) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nhost: x\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_string(&mut out))
        .await
        .unwrap()
        .unwrap();
    let (head, body) = out.split_once("\r\n\r\n").unwrap();
    (head.lines().next().unwrap().to_owned(), body.to_owned())
}

/// The value of the first sample whose line starts with `prefix`.
fn sample(body: &str, prefix: &str) -> f64 {
    body.lines()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no {prefix} in:\n{body}"))
        .rsplit(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_health_and_traffic_series() {
    let dir = tempfile::tempdir().unwrap();
    let cli = Cli::try_parse_from([
        "metrics".as_ref(),
        "--listen".as_ref(),
        "127.0.0.1:0".as_ref(),
        "--metrics-listen".as_ref(),
        "127.0.0.1:0".as_ref(),
        "--data-dir".as_ref(),
        dir.path().as_os_str(),
        "--num-partitions".as_ref(),
        "3".as_ref(),
    ])
    .unwrap();
    let node = LocalNode::start(cli.local).await.unwrap();
    assert_eq!(
        get(node.metrics_addr, "/healthz").await.0,
        "HTTP/1.1 200 OK"
    );
    assert_eq!(get(node.metrics_addr, "/readyz").await.0, "HTTP/1.1 200 OK");
    assert!(get(node.metrics_addr, "/nope").await.0.contains("404"));

    // Real Kafka traffic through kafka-protocol: ApiVersions, then a
    // Metadata request that auto-creates a 3-partition topic.
    use bytes::BytesMut;
    use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
    use kafka_protocol::messages::{
        ApiKey, ApiVersionsRequest, MetadataRequest, RequestHeader, TopicName,
    };
    use kafka_protocol::protocol::{Encodable, StrBytes};
    let mut kafka = TcpStream::connect(node.addr).await.unwrap();
    for (i, (key, version)) in [(ApiKey::ApiVersions, 3i16), (ApiKey::Metadata, 12)]
        .into_iter()
        .enumerate()
    {
        let mut buf = BytesMut::new();
        let mut h = RequestHeader::default();
        h.request_api_key = key as i16;
        h.request_api_version = version;
        h.correlation_id = i as i32;
        h.encode(&mut buf, key.request_header_version(version))
            .unwrap();
        if key == ApiKey::ApiVersions {
            ApiVersionsRequest::default()
                .encode(&mut buf, version)
                .unwrap();
        } else {
            let mut t = MetadataRequestTopic::default();
            t.name = Some(TopicName(StrBytes::from_static_str("scaled")));
            let mut m = MetadataRequest::default();
            m.topics = Some(vec![t]);
            m.allow_auto_topic_creation = true;
            m.encode(&mut buf, version).unwrap();
        }
        kafka
            .write_all(&(buf.len() as i32).to_be_bytes())
            .await
            .unwrap();
        kafka.write_all(&buf).await.unwrap();
        let mut len = [0u8; 4];
        kafka.read_exact(&mut len).await.unwrap();
        let mut body = vec![0u8; i32::from_be_bytes(len) as usize];
        kafka.read_exact(&mut body).await.unwrap();
    }

    let (status, body) = get(node.metrics_addr, "/metrics").await;
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert_eq!(
        sample(
            &body,
            "floe_requests_total{api=\"api_versions\",result=\"ok\"}"
        ),
        1.0
    );
    assert_eq!(
        sample(&body, "floe_requests_total{api=\"metadata\",result=\"ok\"}"),
        1.0
    );
    assert_eq!(sample(&body, "floe_partitions "), 3.0);
    assert_eq!(sample(&body, "floe_connections "), 1.0);
    for series in [
        "floe_produce_bytes_total",
        "floe_fetch_bytes_total",
        "floe_upload_pending_bytes",
        "floe_object_puts_total",
        "floe_object_background_puts_total",
        "floe_object_escalated_puts_total",
        "floe_object_gets_total",
    ] {
        sample(&body, series);
    }
    assert!(
        body.trim_end().ends_with("# EOF"),
        "OpenMetrics text ends with # EOF"
    );
    drop(kafka);
    node.stop().await;
}
