//! Prometheus metrics and the health endpoints. Label sets are bounded: the
//! API name comes from a fixed table, the result is ok/error. Series names
//! are listed in `docs/metrics.md`; an HPA or KEDA scales on them.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::storage::Storage;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub api: &'static str,
    pub result: &'static str,
}

/// The broker's instruments. Counters are updated on the request path;
/// gauges that mirror storage state are refreshed when scraped.
pub struct Metrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub produce_bytes: Counter,
    pub produce_records_batches: Counter,
    pub fetch_bytes: Counter,
    pub connections: Gauge,
    partitions: Gauge,
    upload_pending_bytes: Gauge,
    object_puts: Counter,
    object_put_bytes: Counter,
    object_background_puts: Counter,
    object_escalated_puts: Counter,
    object_gets: Counter,
    object_get_bytes: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("floe");
        let m = Metrics {
            requests: Family::default(),
            produce_bytes: Counter::default(),
            produce_records_batches: Counter::default(),
            fetch_bytes: Counter::default(),
            connections: Gauge::default(),
            partitions: Gauge::default(),
            upload_pending_bytes: Gauge::default(),
            object_puts: Counter::default(),
            object_put_bytes: Counter::default(),
            object_background_puts: Counter::default(),
            object_escalated_puts: Counter::default(),
            object_gets: Counter::default(),
            object_get_bytes: Counter::default(),
            registry: Registry::default(),
        };
        registry.register(
            "requests",
            "Kafka requests handled, by API and result",
            m.requests.clone(),
        );
        registry.register(
            "produce_bytes",
            "Record-batch bytes acknowledged to producers",
            m.produce_bytes.clone(),
        );
        registry.register(
            "produce_batches",
            "Record batches acknowledged to producers",
            m.produce_records_batches.clone(),
        );
        registry.register(
            "fetch_bytes",
            "Record-batch bytes returned to consumers",
            m.fetch_bytes.clone(),
        );
        registry.register(
            "connections",
            "Open client connections",
            m.connections.clone(),
        );
        registry.register(
            "partitions",
            "Partitions this broker leads",
            m.partitions.clone(),
        );
        registry.register(
            "upload_pending_bytes",
            "Bytes appended but not yet committed to object storage (WAL and upload backlog)",
            m.upload_pending_bytes.clone(),
        );
        registry.register(
            "object_puts",
            "Object-store PUT requests",
            m.object_puts.clone(),
        );
        registry.register(
            "object_put_bytes",
            "Bytes written to the object store",
            m.object_put_bytes.clone(),
        );
        registry.register(
            "object_background_puts",
            "Uploads whose PUT ran at idle CPU priority (volume mode)",
            m.object_background_puts.clone(),
        );
        registry.register(
            "object_escalated_puts",
            "Background PUTs that waited too long for CPU and were issued again at normal priority",
            m.object_escalated_puts.clone(),
        );
        registry.register(
            "object_gets",
            "Object-store GET requests",
            m.object_gets.clone(),
        );
        registry.register(
            "object_get_bytes",
            "Bytes read from the object store",
            m.object_get_bytes.clone(),
        );
        Metrics { registry, ..m }
    }

    pub fn request(&self, api: &'static str, ok: bool) {
        self.requests
            .get_or_create(&RequestLabels {
                api,
                result: if ok { "ok" } else { "error" },
            })
            .inc();
    }

    /// Text exposition, with storage gauges refreshed first.
    pub fn render(&self, storage: &Storage) -> String {
        self.partitions.set(storage.partition_ids().len() as i64);
        self.upload_pending_bytes
            .set(storage.pending_bytes() as i64);
        let stats = &storage.objects().stats;
        set_counter(&self.object_puts, stats.puts.load(Ordering::Relaxed));
        set_counter(
            &self.object_put_bytes,
            stats.put_bytes.load(Ordering::Relaxed),
        );
        set_counter(
            &self.object_background_puts,
            stats.background_puts.load(Ordering::Relaxed),
        );
        set_counter(
            &self.object_escalated_puts,
            stats.escalated_puts.load(Ordering::Relaxed),
        );
        set_counter(&self.object_gets, stats.gets.load(Ordering::Relaxed));
        set_counter(
            &self.object_get_bytes,
            stats.get_bytes.load(Ordering::Relaxed),
        );
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// Counters mirror monotonic atomics kept by the object-store client.
fn set_counter(c: &Counter, total: u64) {
    let now = c.get();
    if total > now {
        c.inc_by(total - now);
    }
}

/// Serve `GET /metrics`, `/healthz` (process alive) and `/readyz` (serving
/// Kafka) on a plain HTTP/1.1 listener until shutdown.
/// Whether the broker should receive traffic (`/readyz`).
pub type Readiness = Arc<dyn Fn() -> bool + Send + Sync>;

pub async fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    storage: Arc<Storage>,
    ready: Readiness,
    shutdown: CancellationToken,
) {
    serve_http(listener, shutdown, move |path| match path {
        "/metrics" => Reply::metrics(metrics.render(&storage)),
        "/healthz" => Reply::ok(),
        "/readyz" if ready() => Reply::ok(),
        "/readyz" => Reply::unavailable(
            "no valid controller lease: not registered, or cut off from the controller quorum",
        ),
        _ => Reply::not_found(),
    })
    .await
}

/// One answer of [`serve_http`].
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: &'static str,
    pub content_type: &'static str,
    pub body: String,
}

impl Reply {
    /// `200 OK`, body `ok`.
    pub fn ok() -> Reply {
        Reply {
            status: "200 OK",
            content_type: "text/plain",
            body: "ok\n".to_owned(),
        }
    }

    /// `503 Service Unavailable` with the reason.
    pub fn unavailable(why: impl Into<String>) -> Reply {
        Reply {
            status: "503 Service Unavailable",
            content_type: "text/plain",
            body: why.into() + "\n",
        }
    }

    /// `404 Not Found`.
    pub fn not_found() -> Reply {
        Reply {
            status: "404 Not Found",
            content_type: "text/plain",
            body: "not found\n".to_owned(),
        }
    }

    /// An OpenMetrics exposition.
    pub fn metrics(body: String) -> Reply {
        Reply {
            status: "200 OK",
            content_type: "application/openmetrics-text; version=1.0.0; charset=utf-8",
            body,
        }
    }
}

/// Serves `GET <path>` with `handler`'s reply on a plain HTTP/1.1 listener
/// (one request per connection) until shutdown: the health and metrics
/// endpoint of every `floe` process.
pub async fn serve_http<F>(listener: TcpListener, shutdown: CancellationToken, handler: F)
where
    F: Fn(&str) -> Reply + Send + Sync + 'static,
{
    let handler = Arc::new(handler);
    loop {
        let (mut socket, _) = tokio::select! {
            _ = shutdown.cancelled() => return,
            a = listener.accept() => match a {
                Ok(a) => a,
                Err(_) => continue,
            },
        };
        let handler = handler.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 2048];
            let n = match tokio::time::timeout(
                std::time::Duration::from_secs(5),
                socket.read(&mut buf),
            )
            .await
            {
                Ok(Ok(n)) => n,
                _ => return,
            };
            let request = String::from_utf8_lossy(&buf[..n]);
            let path = request.split_whitespace().nth(1).unwrap_or("");
            let reply = handler(path);
            let head = format!(
                "HTTP/1.1 {}\r\ncontent-type: {}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                reply.status,
                reply.content_type,
                reply.body.len()
            );
            let _ = socket.write_all(head.as_bytes()).await;
            let _ = socket.write_all(reply.body.as_bytes()).await;
        });
    }
}
