//! The storage engine against a real S3-compatible server (moto), through the
//! same client code path as AWS (`Objects::s3`, which `from_url("s3://…")`
//! also uses).
//!
//! Proves: the start-up probe works against S3 and names the bucket when it
//! is missing; `put_new` never overwrites and range reads return exactly the
//! range; appends across partitions are uploaded as objects the index names,
//! under the prefix; a new engine with an empty WAL, in `volume` and in
//! `object` mode, reads every partition back byte-identical from the bucket
//! alone; `object` mode appends acknowledge through S3 conditional PUTs; the
//! orphan sweep deletes an unindexed object and keeps the committed ones.
//!
//! Needs `moto_server` on PATH (`pip install 'moto[server]'`). Without it the
//! tests are skipped loudly, except when `CI` is set: then they fail.

#[path = "support/engine_cycle.rs"]
mod engine_cycle;
#[path = "support/records.rs"]
mod records;
#[path = "support/servers.rs"]
mod servers;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use floe_broker::storage::objects::Objects;
use servers::{http, within, Server};

const BUCKET: &str = "floe-test";

/// Start moto on a free port, or return `None` (after saying so loudly) when
/// it is not installed outside CI. In CI a missing moto fails the test.
fn start_moto(dir: &Path) -> Option<Server> {
    let bin = servers::require(
        servers::find_on_path("moto_server"),
        "moto_server",
        "s3_moto",
        "pip install 'moto[server]'",
    )?;
    let port = servers::free_port();
    let mut cmd = Command::new(bin);
    cmd.args(["-H", "127.0.0.1", "-p", &port.to_string()]);
    Some(Server::start(
        "moto_server",
        cmd,
        port,
        dir.join("moto.log"),
        Duration::from_secs(30),
    ))
}

fn s3(moto: &Server, bucket: &str, prefix: &str) -> Objects {
    Objects::s3(
        bucket,
        prefix,
        Some(&moto.url()),
        Some("testing"),
        Some("testing"),
        Some("us-east-1"),
    )
    .expect("configure the S3 client")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engine_round_trips_through_s3() {
    let dir = tempfile::tempdir().unwrap();
    let Some(moto) = start_moto(dir.path()) else {
        return;
    };
    let (status, body) = http(moto.port, "PUT", &format!("/{BUCKET}"), &[], b"").unwrap();
    assert_eq!(status, 200, "create bucket: {body}");
    let objects = s3(&moto, BUCKET, "/floe/cluster-a/");
    within("probe", objects.probe()).await.expect("probe");
    engine_cycle::put_if_absent_keeps_first(&objects).await;

    let up = engine_cycle::append_and_upload(&objects, dir.path(), "s3", 90).await;
    // The objects are under the prefix in the bucket.
    let (status, body) = http(
        moto.port,
        "GET",
        &format!("/{BUCKET}?list-type=2&prefix=floe/cluster-a/data/"),
        &[],
        b"",
    )
    .unwrap();
    assert_eq!(status, 200);
    assert!(
        body.contains(&up.committed[0]),
        "objects are not under the prefix: {body}"
    );

    // Fresh engines with no WAL read everything back from the bucket alone.
    engine_cycle::cold_reads_append_and_sweep(&objects, up, dir.path(), "moto").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_names_a_missing_bucket() {
    let dir = tempfile::tempdir().unwrap();
    let Some(moto) = start_moto(dir.path()) else {
        return;
    };
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
