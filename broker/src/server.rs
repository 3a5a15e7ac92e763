//! The Kafka listener: bounded accept, one task per connection, requests on a
//! connection handled in order (as Kafka does), graceful shutdown.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::broker::Broker;
use crate::protocol::frame;

/// Accept connections until `shutdown` fires. At most `max_connections` are
/// served at once; further clients wait in the kernel's accept queue.
pub async fn serve(
    listener: TcpListener,
    broker: Arc<Broker>,
    max_connections: usize,
    shutdown: CancellationToken,
) {
    let permits = Arc::new(Semaphore::new(max_connections));
    loop {
        let permit = tokio::select! {
            _ = shutdown.cancelled() => return,
            p = permits.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return,
            },
        };
        let (socket, peer) = tokio::select! {
            _ = shutdown.cancelled() => return,
            a = listener.accept() => match a {
                Ok(a) => a,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let broker = broker.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(
            async move {
                broker.metrics.connections.inc();
                if let Err(e) = connection(socket, broker.clone(), shutdown).await {
                    tracing::debug!(error = %e, "connection closed");
                }
                broker.metrics.connections.dec();
                drop(permit);
            }
            .instrument(tracing::debug_span!("conn", %peer)),
        );
    }
}

async fn connection(
    mut socket: TcpStream,
    broker: Arc<Broker>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let _ = socket.set_nodelay(true);
    let peer: Option<SocketAddr> = socket.peer_addr().ok();
    let peer_ip = peer.map(|p| p.ip().to_string()).unwrap_or_default();
    let max = broker.config.max_request_bytes;
    let mut buf = BytesMut::with_capacity(64 * 1024);
    loop {
        // Check-then-parse: the length prefix is validated before any body is buffered.
        let size = loop {
            match frame::check(&buf, max) {
                Ok(Some(size)) => break size,
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(?peer, error = %e, "closing connection: bad frame");
                    return Ok(());
                }
            }
            if buf.len() >= 4 {
                let want = 4 + i32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
                buf.reserve(want.saturating_sub(buf.len()).min(max));
            }
            let n = tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                n = socket.read_buf(&mut buf) => n?,
            };
            if n == 0 {
                return Ok(());
            }
        };
        let body = frame::take(&mut buf, size);
        let request = match frame::parse_header(body) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(?peer, error = %e, "closing connection: unreadable request");
                return Ok(());
            }
        };
        let api = request.api_key;
        let client = request
            .header
            .client_id
            .as_ref()
            .map(|c| c.to_string())
            .unwrap_or_default();
        let response = broker
            .dispatch(request, &peer_ip)
            .instrument(tracing::debug_span!("request", ?api, client))
            .await;
        match response {
            Ok(Some(bytes)) => socket.write_all(&bytes).await?,
            Ok(None) => {}
            Err(e) => {
                // Kafka closes the connection on requests it cannot parse or answer.
                tracing::warn!(?peer, client, error = %e, "closing connection");
                return Ok(());
            }
        }
    }
}
