//! The object-store client: built from a URL (`file://`, `s3://`, `gs://`,
//! `az://`, `memory://`) with each cloud's usual settings, plus the few
//! operations the engine needs, each counted by purpose so PUTs and GETs per
//! GB are visible.

use std::ops::Range;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};

#[derive(Debug, thiserror::Error)]
pub enum ObjectsError {
    #[error(
        "unsupported object store URL {url:?}: use file:///path, s3://bucket/prefix, gs://bucket/prefix, az://container/prefix or memory://"
    )]
    UnsupportedUrl { url: String },
    #[error("object store URL {url:?}: {key:?} is not a {scheme} option (use object_store's option names, e.g. {example}; see docs/storage.md)")]
    UnknownOption {
        url: String,
        scheme: &'static str,
        key: String,
        example: &'static str,
    },
    #[error("object store URL {url:?}: options after `?` are only read for gs:// and az:// (configure S3 with the AWS_* variables)")]
    OptionsNotSupported { url: String },
    #[error("cannot create local object directory {path}: {source}")]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot configure the object store for {url}: {source}")]
    Configure {
        url: String,
        source: object_store::Error,
    },
    #[error("object store request {op} {key} failed: {source}")]
    Request {
        op: &'static str,
        key: String,
        source: object_store::Error,
    },
    #[error("object store returned {got} bytes for {key} range {start}..{end} (a truncated response; it is not cached and the next read retries)")]
    ShortRead {
        key: String,
        start: u64,
        end: u64,
        got: usize,
    },
    #[error("object {key} range {start}..{end} does not hold the record batches the index names: {reason} (read twice; it is not served or cached)")]
    Corrupt {
        key: String,
        start: u64,
        end: u64,
        reason: String,
    },
}

/// Retries with exponential backoff on throttling (503 SlowDown), 5xx and
/// timeouts, bounded in count and time so a dead store surfaces as an error
/// (the uploader then retries the round with its own backoff).
fn retry_config() -> object_store::RetryConfig {
    object_store::RetryConfig {
        backoff: object_store::BackoffConfig::default(),
        max_retries: 10,
        retry_timeout: Duration::from_secs(60),
    }
}

/// `key=value&…` pairs of a URL's query, percent-decoded.
fn parse_options(query: &str) -> Vec<(String, String)> {
    form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// Whether an option carries a secret (account keys, SAS and bearer tokens,
/// service-account keys): its value never appears in logs or errors.
fn is_secret(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    ["key", "secret", "token", "sas", "password", "credential"]
        .iter()
        .any(|s| key.contains(s))
}

/// The URL with the values of secret options replaced by `***`.
fn redact(url: &str) -> String {
    let Some((location, query)) = url.split_once('?') else {
        return url.to_owned();
    };
    let mut out = form_urlencoded::Serializer::new(String::new());
    for (k, v) in parse_options(query) {
        out.append_pair(&k, if is_secret(&k) { "***" } else { &v });
    }
    format!("{location}?{}", out.finish())
}

/// Request counters by purpose (exported as metrics later).
#[derive(Debug, Default)]
pub struct ObjectStats {
    pub puts: AtomicU64,
    pub put_bytes: AtomicU64,
    pub gets: AtomicU64,
    pub get_bytes: AtomicU64,
    pub deletes: AtomicU64,
    /// PUTs run at idle priority ([`Objects::put_new_parts_background`])...
    pub background_puts: AtomicU64,
    /// ...and those issued again at normal priority because they waited
    /// too long (each also counted in `puts`).
    pub escalated_puts: AtomicU64,
}

#[derive(Clone)]
pub struct Objects {
    store: Arc<dyn ObjectStore>,
    prefix: Path,
    pub stats: Arc<ObjectStats>,
    description: String,
    /// Join a PUT's parts before handing them over (the in-process store).
    join_parts: bool,
    /// Set while a background PUT's thread runs (one at a time).
    background: Arc<AtomicBool>,
}

/// How often a background PUT's caller asks whether it has become urgent.
const URGENCY_CHECK: Duration = Duration::from_millis(10);

/// Clears the background flag when the PUT's thread ends, however it ends.
struct BackgroundSlot(Arc<AtomicBool>);

impl Drop for BackgroundSlot {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// One buffer holding `payload`, copied a mebibyte at a time with a yield of
/// the CPU in between. The in-process store would otherwise join the parts
/// itself in one go, under its lock: tens of milliseconds on one CPU for an
/// object, during which (measured on these 2-CPU machines) threads woken on
/// the other CPU, the WAL's and the acks', wait milliseconds to run.
fn join_yielding(payload: &PutPayload) -> PutPayload {
    if payload.as_ref().len() < 2 {
        return payload.clone();
    }
    let mut joined = Vec::with_capacity(payload.content_length());
    let mut since_yield = 0;
    for part in payload.iter() {
        joined.extend_from_slice(part);
        since_yield += part.len();
        if since_yield >= JOIN_STEP_BYTES {
            since_yield = 0;
            std::thread::yield_now();
        }
    }
    PutPayload::from(Bytes::from(joined))
}

const JOIN_STEP_BYTES: usize = 1 << 20;

impl Objects {
    /// Build a store from a URL. `s3://bucket/prefix` reads the standard
    /// `AWS_*` variables (`AWS_ENDPOINT_URL` for S3-compatible servers).
    /// `gs://bucket/prefix` reads the `GOOGLE_*` variables and
    /// `az://container/prefix` the `AZURE_*` ones, as object_store names
    /// them; for these two, `?key=value&…` after the prefix sets the same
    /// options (object_store's names, e.g. `base_url`, `skip_signature`,
    /// `endpoint`, `account_name`, `allow_http`) over the environment, which
    /// is how an emulator on a non-default port is reached.
    pub fn from_url(url: &str) -> Result<Objects, ObjectsError> {
        let (location, query) = match url.split_once('?') {
            Some((location, query)) => (location, Some(query)),
            None => (url, None),
        };
        let options = query.map(parse_options).unwrap_or_default();
        let description = redact(url);
        let configure = |source| ObjectsError::Configure {
            url: description.clone(),
            source,
        };
        if query.is_some() && !(url.starts_with("gs://") || url.starts_with("az://")) {
            return Err(ObjectsError::OptionsNotSupported { url: description });
        }
        let (store, prefix): (Arc<dyn ObjectStore>, String) = if let Some(path) =
            location.strip_prefix("file://")
        {
            let path = PathBuf::from(path);
            std::fs::create_dir_all(&path).map_err(|source| ObjectsError::CreateDir {
                path: path.clone(),
                source,
            })?;
            let fs =
                object_store::local::LocalFileSystem::new_with_prefix(&path).map_err(configure)?;
            (Arc::new(fs), String::new())
        } else if location.starts_with("memory://") {
            (
                Arc::new(object_store::memory::InMemory::new()),
                String::new(),
            )
        } else if let Some(rest) = location.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            let endpoint = std::env::var("AWS_ENDPOINT_URL").ok();
            let mut objects = Objects::s3(bucket, prefix, endpoint.as_deref(), None, None, None)?;
            objects.description = description;
            return Ok(objects);
        } else if let Some(rest) = location.strip_prefix("gs://") {
            // Credentials from GOOGLE_SERVICE_ACCOUNT(_KEY) or
            // GOOGLE_APPLICATION_CREDENTIALS, else the metadata server.
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            let mut b = object_store::gcp::GoogleCloudStorageBuilder::from_env();
            for (key, value) in &options {
                let parsed: object_store::gcp::GoogleConfigKey =
                    key.parse().map_err(|_| ObjectsError::UnknownOption {
                        url: description.clone(),
                        scheme: "gs://",
                        key: key.clone(),
                        example: "base_url, skip_signature, service_account_key",
                    })?;
                b = b.with_config(parsed, value);
            }
            let gcs = b
                .with_bucket_name(bucket)
                .with_retry(retry_config())
                .build()
                .map_err(configure)?;
            (Arc::new(gcs), prefix.trim_matches('/').to_owned())
        } else if let Some(rest) = location.strip_prefix("az://") {
            // Account and key from AZURE_STORAGE_ACCOUNT_NAME /
            // AZURE_STORAGE_ACCOUNT_KEY (or AZURE_STORAGE_USE_EMULATOR=true
            // for Azurite at AZURITE_BLOB_STORAGE_URL).
            let (container, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            let mut b = object_store::azure::MicrosoftAzureBuilder::from_env();
            for (key, value) in &options {
                let parsed: object_store::azure::AzureConfigKey =
                    key.parse().map_err(|_| ObjectsError::UnknownOption {
                        url: description.clone(),
                        scheme: "az://",
                        key: key.clone(),
                        example: "endpoint, account_name, access_key, allow_http",
                    })?;
                b = b.with_config(parsed, value);
            }
            let azure = b
                .with_container_name(container)
                .with_retry(retry_config())
                .build()
                .map_err(configure)?;
            (Arc::new(azure), prefix.trim_matches('/').to_owned())
        } else {
            return Err(ObjectsError::UnsupportedUrl { url: description });
        };
        Ok(Objects {
            join_parts: location.starts_with("memory://"),
            background: Arc::default(),
            store,
            prefix: Path::from(prefix),
            stats: Arc::new(ObjectStats::default()),
            description,
        })
    }

    /// An S3 (or S3-compatible) bucket. Settings not given here come from the
    /// standard `AWS_*` variables; an `endpoint` (MinIO, moto, ...) switches to
    /// path-style requests and allows `http://`. The region defaults to
    /// `us-east-1` when neither the argument nor `AWS_REGION` /
    /// `AWS_DEFAULT_REGION` sets one.
    pub fn s3(
        bucket: &str,
        prefix: &str,
        endpoint: Option<&str>,
        access_key: Option<&str>,
        secret_key: Option<&str>,
        region: Option<&str>,
    ) -> Result<Objects, ObjectsError> {
        let prefix = prefix.trim_matches('/');
        let url = format!("s3://{bucket}/{prefix}");
        let mut b = object_store::aws::AmazonS3Builder::from_env()
            .with_bucket_name(bucket)
            .with_retry(retry_config());
        if let Some(endpoint) = endpoint {
            b = b
                .with_endpoint(endpoint)
                .with_allow_http(endpoint.starts_with("http://"))
                .with_virtual_hosted_style_request(false);
        }
        if let Some(key) = access_key {
            b = b.with_access_key_id(key);
        }
        if let Some(secret) = secret_key {
            b = b.with_secret_access_key(secret);
        }
        match region {
            Some(region) => b = b.with_region(region),
            None if std::env::var("AWS_REGION").is_err()
                && std::env::var("AWS_DEFAULT_REGION").is_err() =>
            {
                b = b.with_region("us-east-1")
            }
            None => {}
        }
        let s3 = b.build().map_err(|source| ObjectsError::Configure {
            url: url.clone(),
            source,
        })?;
        Ok(Objects {
            store: Arc::new(s3),
            prefix: Path::from(prefix),
            stats: Arc::new(ObjectStats::default()),
            description: url,
            join_parts: false,
            background: Arc::default(),
        })
    }

    /// Wrap an existing store (tests inject fault wrappers this way).
    pub fn new(store: Arc<dyn ObjectStore>, prefix: &str) -> Objects {
        Objects {
            store,
            prefix: Path::from(prefix),
            stats: Arc::new(ObjectStats::default()),
            description: "custom".into(),
            join_parts: false,
            background: Arc::default(),
        }
    }

    pub fn describe(&self) -> &str {
        &self.description
    }

    fn path(&self, key: &str) -> Path {
        if self.prefix.as_ref().is_empty() {
            Path::from(key)
        } else {
            // Not `join`: it appends one segment and would encode the key's
            // `/` as `%2F`, hiding every object from prefix listings.
            Path::from(format!("{}/{key}", self.prefix.as_ref()))
        }
    }

    /// Write a new object; never overwrites. A retry that finds its own
    /// unique key already present means an earlier attempt landed.
    pub async fn put_new(&self, key: &str, data: Bytes) -> Result<(), ObjectsError> {
        self.put_new_parts(key, vec![data]).await
    }

    /// [`put_new`](Self::put_new) of the concatenation of `parts`, without
    /// copying them (except for the in-process store, which keeps one buffer
    /// per object).
    pub async fn put_new_parts(&self, key: &str, parts: Vec<Bytes>) -> Result<(), ObjectsError> {
        let data: PutPayload = parts.into_iter().collect();
        self.count_put(data.content_length());
        // Building a request can be long CPU work on the calling thread: S3
        // signs the payload (SHA-256 of the whole object), the in-process
        // store joins the parts into one buffer. For a 32 MiB object that is
        // tens of milliseconds, which on a runtime worker would hold up the
        // appends and acks queued behind it; so the PUT runs on a blocking
        // thread, its I/O still driven by the runtime.
        let job = self.put_job(key, data);
        let put = tokio::task::spawn_blocking(job).await.unwrap_or_else(|e| {
            Err(object_store::Error::Generic {
                store: "floe",
                source: Box::new(e),
            })
        });
        put_outcome(key, put)
    }

    /// [`put_new_parts`](Self::put_new_parts) for data that can wait, whose
    /// CPU work (joining or signing the request) runs on a thread of its own
    /// in the idle scheduling class ([`crate::sched::run_only_when_idle`],
    /// ADR 0017): it uses CPU time that the WAL's and the acks' threads leave
    /// over and never delays their wake-ups.
    ///
    /// That thread may starve on a busy machine, so `urgent` is asked every
    /// few milliseconds; once it says yes, the same PUT is issued at normal
    /// priority and the background one is dropped as soon as its thread
    /// runs (a PUT is atomic: dropped, it writes nothing; and the key is
    /// created once, so should the background one have landed just before,
    /// the normal one finds it present). One background PUT runs at a time;
    /// while it does, others run at normal priority.
    pub async fn put_new_parts_background(
        &self,
        key: &str,
        parts: Vec<Bytes>,
        urgent: impl Fn() -> bool,
    ) -> Result<(), ObjectsError> {
        if urgent() || self.background.swap(true, Ordering::AcqRel) {
            return self.put_new_parts(key, parts).await;
        }
        let slot = BackgroundSlot(self.background.clone());
        let data: PutPayload = parts.iter().cloned().collect();
        let length = data.content_length();
        let (store, path, opts) = (self.store.clone(), self.path(key), create_only());
        let join = self.join_parts;
        let runtime = tokio::runtime::Handle::current();
        let (mut tx, mut rx) = tokio::sync::oneshot::channel();
        let spawned = std::thread::Builder::new()
            .name("floe-put-idle".into())
            .spawn(move || {
                let _slot = slot;
                crate::sched::run_only_when_idle();
                if tx.is_closed() {
                    return;
                }
                let data = if join { join_yielding(&data) } else { data };
                runtime.block_on(async move {
                    tokio::select! {
                        put = store.put_opts(&path, data, opts) => { let _ = tx.send(put); }
                        // The caller went on without it.
                        _ = tx.closed() => {}
                    }
                });
            });
        if let Err(e) = spawned {
            tracing::debug!(error = %e, "no thread for a background PUT; PUT at normal priority");
            return self.put_new_parts(key, parts).await;
        }
        self.count_put(length);
        self.stats.background_puts.fetch_add(1, Ordering::Relaxed);
        let mut check = tokio::time::interval(URGENCY_CHECK);
        check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                put = &mut rx => {
                    let put = put.unwrap_or_else(|_| Err(object_store::Error::Generic {
                        store: "floe",
                        source: "the background PUT's thread stopped".into(),
                    }));
                    return put_outcome(key, put);
                }
                _ = check.tick() => {
                    if urgent() {
                        break;
                    }
                }
            }
        }
        self.stats.escalated_puts.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(
            key,
            "a background PUT became urgent before it landed; PUT at normal priority"
        );
        drop(rx);
        self.put_new_parts(key, parts).await
    }

    fn count_put(&self, bytes: usize) {
        self.stats.puts.fetch_add(1, Ordering::Relaxed);
        self.stats
            .put_bytes
            .fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// The blocking work of one create-only PUT: run on a thread that is not
    /// a runtime worker, its I/O driven by the current runtime.
    fn put_job(
        &self,
        key: &str,
        data: PutPayload,
    ) -> impl FnOnce() -> object_store::Result<object_store::PutResult> + Send + 'static {
        let (store, path, opts) = (self.store.clone(), self.path(key), create_only());
        let join = self.join_parts;
        let runtime = tokio::runtime::Handle::current();
        move || {
            let data = if join { join_yielding(&data) } else { data };
            runtime.block_on(store.put_opts(&path, data, opts))
        }
    }

    pub async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes, ObjectsError> {
        self.stats.gets.fetch_add(1, Ordering::Relaxed);
        let (start, end) = (range.start, range.end);
        let range_len = end.saturating_sub(start);
        let bytes = self
            .store
            .get_range(&self.path(key), range)
            .await
            .map_err(|source| ObjectsError::Request {
                op: "GET",
                key: key.to_owned(),
                source,
            })?;
        // Never hand back (or let the cache keep) a short body as if it were the range.
        if bytes.len() as u64 != range_len {
            return Err(ObjectsError::ShortRead {
                key: key.to_owned(),
                start,
                end,
                got: bytes.len(),
            });
        }
        self.stats
            .get_bytes
            .fetch_add(bytes.len() as u64, Ordering::Relaxed);
        Ok(bytes)
    }

    pub async fn delete(&self, key: &str) -> Result<(), ObjectsError> {
        self.stats.deletes.fetch_add(1, Ordering::Relaxed);
        match self.store.delete(&self.path(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(source) => Err(ObjectsError::Request {
                op: "DELETE",
                key: key.to_owned(),
                source,
            }),
        }
    }

    /// Keys (relative to the prefix) under `dir` with their last-modified time in ms.
    pub async fn list(&self, dir: &str) -> Result<Vec<(String, i64)>, ObjectsError> {
        use futures::TryStreamExt;
        let base = self.path(dir);
        let strip = if self.prefix.as_ref().is_empty() {
            String::new()
        } else {
            format!("{}/", self.prefix.as_ref())
        };
        let metas: Vec<object_store::ObjectMeta> = self
            .store
            .list(Some(&base))
            .try_collect()
            .await
            .map_err(|source| ObjectsError::Request {
                op: "LIST",
                key: dir.to_owned(),
                source,
            })?;
        Ok(metas
            .into_iter()
            .map(|m| {
                let full = m.location.to_string();
                let key = full.strip_prefix(&strip).unwrap_or(&full).to_owned();
                (key, m.last_modified.timestamp_millis())
            })
            .collect())
    }

    /// Check that the store is reachable and writable (start-up probe).
    pub async fn probe(&self) -> Result<(), ObjectsError> {
        let key = format!("probe/{}", uuid::Uuid::new_v4().simple());
        self.put_new(&key, Bytes::from_static(b"floe")).await?;
        self.delete(&key).await
    }
}

fn create_only() -> PutOptions {
    PutOptions {
        mode: PutMode::Create,
        ..Default::default()
    }
}

/// A create-only PUT's result: finding the key present means an earlier
/// attempt (or the other copy of a background PUT) landed.
fn put_outcome(
    key: &str,
    put: object_store::Result<object_store::PutResult>,
) -> Result<(), ObjectsError> {
    match put {
        Ok(_) | Err(object_store::Error::AlreadyExists { .. }) => Ok(()),
        Err(source) => Err(ObjectsError::Request {
            op: "PUT",
            key: key.to_owned(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(url: &str) -> ObjectsError {
        match Objects::from_url(url) {
            Ok(_) => panic!("{url} should not configure a store"),
            Err(e) => e,
        }
    }

    /// The in-process store gets one buffer: the exact concatenation of the
    /// parts, across several join steps.
    #[tokio::test]
    async fn memory_puts_join_parts_exactly() {
        let objects = Objects::from_url("memory://").unwrap();
        let parts: Vec<Bytes> = (0..5u8)
            .map(|i| Bytes::from(vec![i; (JOIN_STEP_BYTES / 2) + usize::from(i)]))
            .collect();
        let whole: Vec<u8> = parts.iter().flat_map(|p| p.iter().copied()).collect();
        objects.put_new_parts("data/j.floe", parts).await.unwrap();
        let back = objects
            .get_range("data/j.floe", 0..whole.len() as u64)
            .await
            .unwrap();
        assert!(back[..] == whole[..], "joined object differs");
        // One part goes through as it is.
        objects
            .put_new_parts("data/one.floe", vec![Bytes::from_static(b"xyz")])
            .await
            .unwrap();
        assert_eq!(
            &objects.get_range("data/one.floe", 0..3).await.unwrap()[..],
            b"xyz"
        );
    }

    #[test]
    fn secret_options_are_redacted_and_others_kept() {
        let url = "az://c/p?endpoint=http%3A%2F%2F127.0.0.1%3A10000%2Fdev&account_name=dev&access_key=ab%2B%2FcA%3D%3D&allow_http=true";
        let objects = Objects::from_url(url).unwrap();
        let d = objects.describe();
        assert!(d.contains("access_key=***"), "{d}");
        assert!(!d.contains("ab%2B") && !d.contains("ab+"), "{d}");
        assert!(
            d.contains("account_name=dev") && d.contains("allow_http=true"),
            "{d}"
        );
        assert_eq!(redact("s3://b/p"), "s3://b/p");
        assert!(redact("gs://b/p?service_account_key=%7B%7D").ends_with("service_account_key=***"));
        assert!(redact("az://c?sas_token=abc&bearer_token=x")
            .ends_with("sas_token=***&bearer_token=***"));
    }

    #[test]
    fn gs_options_configure_an_emulator_endpoint() {
        let key = r#"{"gcs_base_url":"http://127.0.0.1:4443","disable_oauth":true,"client_email":"","private_key":"","private_key_id":""}"#;
        let q: String = form_urlencoded::byte_serialize(key.as_bytes()).collect();
        let objects =
            Objects::from_url(&format!("gs://bucket/a/b/?service_account_key={q}")).unwrap();
        assert_eq!(objects.prefix.as_ref(), "a/b");
        assert!(objects.describe().ends_with("?service_account_key=***"));
    }

    #[test]
    fn unknown_options_are_named() {
        let e = err("gs://bucket/p?base_url=http://x&no_such_option=1");
        assert!(
            matches!(&e, ObjectsError::UnknownOption { key, scheme: "gs://", .. } if key == "no_such_option"),
            "{e}"
        );
        let e = err("az://c/p?endpointt=http://x");
        assert!(
            e.to_string()
                .contains("\"endpointt\" is not a az:// option"),
            "{e}"
        );
    }

    #[test]
    fn options_are_refused_where_they_are_not_read() {
        for url in [
            "s3://bucket/p?endpoint=http://x",
            "memory://?x=1",
            "file:///tmp/x?y=1",
        ] {
            assert!(
                matches!(err(url), ObjectsError::OptionsNotSupported { .. }),
                "{url}"
            );
        }
        assert!(matches!(
            err("ftp://x"),
            ObjectsError::UnsupportedUrl { .. }
        ));
    }
}
