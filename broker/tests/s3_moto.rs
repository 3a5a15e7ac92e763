//! The storage engine against a real S3-compatible server (moto), through the
//! same client code path as AWS (`Objects::s3`, which `from_url("s3://…")`
//! also uses).
//!
//! Proves: the start-up probe works against S3 and names the bucket when it
//! is missing; appends across partitions are uploaded as objects the index
//! names; a new engine with an empty WAL, in `volume` and in `object` mode,
//! reads every partition back byte-identical from the bucket alone; `object`
//! mode appends acknowledge through S3 conditional PUTs.
//!
//! Needs `moto_server` on PATH (`pip install 'moto[server]'`). Without it the
//! tests are skipped loudly, except when `CI` is set: then they fail.

#[path = "support/records.rs"]
mod records;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use floe_broker::cluster::Cluster;
use floe_broker::storage::objects::Objects;
use floe_broker::storage::{Storage, WalMode};
use floe_controller::model::{Command as MetaCommand, PartitionId};

const BUCKET: &str = "floe-test";

/// A moto server on a free port, killed on drop.
struct Moto {
    child: Child,
    endpoint: String,
    port: u16,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn find_on_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    })
}

/// Start moto, or return `None` (after saying so loudly) when it is not
/// installed outside CI. In CI a missing moto fails the test.
fn start_moto() -> Option<Moto> {
    let Some(bin) = find_on_path("moto_server") else {
        if std::env::var_os("CI").is_some() {
            panic!("moto_server is not on PATH and CI is set: install it with pip install 'moto[server]'");
        }
        eprintln!(
            "\n!!! SKIPPING s3_moto: moto_server is not on PATH (pip install 'moto[server]') !!!\n"
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
        port,
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok((status, _)) = http(port, "GET", "/") {
            if status > 0 {
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "moto_server did not answer on port {port} within 30 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    Some(moto)
}

/// One HTTP/1.1 request with an empty body; returns the status and the body.
fn http(port: u16, method: &str, path: &str) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.set_write_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )?;
    let mut resp = String::new();
    s.read_to_string(&mut resp)?;
    let status = resp
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    Ok((status, resp))
}

fn s3(moto: &Moto, bucket: &str, prefix: &str) -> Objects {
    Objects::s3(
        bucket,
        prefix,
        Some(&moto.endpoint),
        Some("testing"),
        Some("testing"),
        Some("us-east-1"),
    )
    .expect("configure the S3 client")
}

async fn within<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(20), f)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engine_round_trips_through_s3() {
    let Some(moto) = start_moto() else { return };
    let (status, body) = http(moto.port, "PUT", &format!("/{BUCKET}")).unwrap();
    assert_eq!(status, 200, "create bucket: {body}");
    let objects = s3(&moto, BUCKET, "/floe/cluster-a/");
    within("probe", objects.probe()).await.expect("probe");

    let dir = tempfile::tempdir().unwrap();
    let cluster = Arc::new(Cluster::open(&dir.path().join("metadata")).unwrap());
    cluster
        .propose(MetaCommand::CreateTopic {
            name: "s3".into(),
            id: uuid::Uuid::new_v4(),
            partitions: 3,
            configs: Default::default(),
            leader: 1,
        })
        .await
        .unwrap();
    let topic = cluster.topic("s3").unwrap();
    let ids: Vec<PartitionId> = (0..3).map(|p| topic.partition_id(p).unwrap()).collect();
    let open = |mode: WalMode, wal: &str| {
        Storage::open(
            records::small_config(mode, dir.path().join(wal)),
            objects.clone(),
            cluster.clone(),
            cluster.partition_metas(),
        )
    };

    let storage = open(WalMode::Volume, "wal").await.unwrap();
    let mut expected: Vec<Vec<Bytes>> = vec![Vec::new(); ids.len()];
    for i in 0..90usize {
        let p = i % ids.len();
        let values: Vec<Vec<u8>> = (0..1 + i % 4)
            .map(|k| format!("s3-{i}-{k}-{}", "y".repeat(i * 13 % 700)).into_bytes())
            .collect();
        let a = within(
            "append",
            storage.append(ids[p], &records::make_batch(&values, i as i64)),
        )
        .await
        .unwrap();
        assert!(!a.duplicate);
        expected[p].extend(values.into_iter().map(Bytes::from));
    }
    within("flush", storage.flush()).await;

    // The bucket holds the objects the index names, under the prefix.
    let listed: Vec<String> = objects
        .list("data")
        .await
        .unwrap()
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    let committed: Vec<String> = cluster.read(|s| s.objects.keys().cloned().collect());
    assert!(!committed.is_empty(), "nothing was committed");
    for k in &committed {
        assert!(
            listed.contains(k),
            "committed object {k} is not in the bucket: {listed:?}"
        );
    }
    let (status, body) = http(
        moto.port,
        "GET",
        &format!("/{BUCKET}?list-type=2&prefix=floe/cluster-a/data/"),
    )
    .unwrap();
    assert_eq!(status, 200);
    assert!(
        body.contains(&committed[0]),
        "objects are not under the prefix: {body}"
    );

    let mut logs = Vec::new();
    for (id, want) in ids.iter().zip(&expected) {
        let back = records::read_all(&storage, *id).await;
        let got: Vec<Bytes> = back.records.iter().map(|(_, v)| v.clone()).collect();
        assert!(
            got == *want,
            "{id:?}: records differ from what was appended"
        );
        logs.push(back.bytes);
    }
    storage.shutdown().await;
    drop(storage);

    // Fresh engines with no WAL read everything back from the bucket alone.
    for (mode, wal) in [(WalMode::Volume, "empty-wal"), (WalMode::Object, "unused")] {
        let cold = open(mode, wal).await.unwrap();
        for (id, before) in ids.iter().zip(&logs) {
            let back = records::read_all(&cold, *id).await;
            assert!(
                back.bytes == *before,
                "{id:?} ({mode:?}): bytes read from S3 differ"
            );
        }
        if mode == WalMode::Object {
            // Acknowledged through a conditional PUT to S3 and an index commit.
            let hw = cold.watermarks(ids[0]).unwrap().high_watermark;
            let a = within(
                "object-mode append",
                cold.append(ids[0], &records::make_batch(&[b"via-s3".to_vec()], 1)),
            )
            .await
            .unwrap();
            assert_eq!(a.base_offset, hw);
            let back = records::read_all(&cold, ids[0]).await;
            assert_eq!(
                back.records.last().unwrap().1,
                Bytes::from_static(b"via-s3")
            );
        }
        cold.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_names_a_missing_bucket() {
    let Some(moto) = start_moto() else { return };
    let objects = s3(&moto, "no-such-bucket", "x");
    let err = within("probe", objects.probe())
        .await
        .expect_err("probe of a missing bucket must fail");
    let msg = err.to_string();
    eprintln!("probe of a missing bucket: {msg}");
    assert!(
        msg.contains("no-such-bucket") || msg.contains("NoSuchBucket") || msg.contains("404"),
        "the error does not point at the bucket: {msg}"
    );
}
