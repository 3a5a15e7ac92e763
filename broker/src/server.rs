//! The Kafka listener: bounded accept, one task per connection, graceful
//! shutdown.
//!
//! Requests of one connection are pipelined but behave as if handled one at
//! a time (as Kafka does): responses are written in request order; a
//! produce request starts once the previous request has reached its
//! ordering point (for a produce: its offsets are assigned), so consecutive
//! produce requests append in order while their fsyncs or uploads overlap;
//! any other request starts only once every earlier request has finished.
//! At most [`MAX_IN_FLIGHT`] requests and [`MAX_IN_FLIGHT_BYTES`] of them are
//! in flight per connection; reading waits beyond that.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, Semaphore};
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

/// Requests one connection may have in flight.
pub const MAX_IN_FLIGHT: usize = 16;
/// Request bytes one connection may have in flight (a single larger request
/// is still admitted, alone).
pub const MAX_IN_FLIGHT_BYTES: usize = 64 << 20;

type Response = Result<Option<bytes::Bytes>, crate::broker::DispatchError>;

async fn connection(
    socket: TcpStream,
    broker: Arc<Broker>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let _ = socket.set_nodelay(true);
    let peer: Option<SocketAddr> = socket.peer_addr().ok();
    let peer_ip = Arc::new(peer.map(|p| p.ip().to_string()).unwrap_or_default());
    let (mut socket, writer_half) = socket.into_split();
    let (responses, pending) = mpsc::channel::<oneshot::Receiver<Response>>(MAX_IN_FLIGHT);
    let closed = CancellationToken::new();
    let writer = tokio::spawn(write_responses(writer_half, pending, closed.clone(), peer));
    let slots = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let budget = Arc::new(Semaphore::new(MAX_IN_FLIGHT_BYTES));
    let max = broker.config.max_request_bytes;
    let mut buf = BytesMut::with_capacity(64 * 1024);
    // The previous request's ordering point and its completion (which
    // includes every earlier request's completion).
    let mut prev_ordered: Option<oneshot::Receiver<()>> = None;
    let mut prev_done: Option<oneshot::Receiver<()>> = None;
    'requests: loop {
        // Check-then-parse: the length prefix is validated before any body is buffered.
        let size = loop {
            match frame::check(&buf, max) {
                Ok(Some(size)) => break size,
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(?peer, error = %e, "closing connection: bad frame");
                    break 'requests;
                }
            }
            if buf.len() >= 4 {
                let want = 4 + i32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
                buf.reserve(want.saturating_sub(buf.len()).min(max));
            }
            let n = tokio::select! {
                _ = shutdown.cancelled() => break 'requests,
                _ = closed.cancelled() => break 'requests,
                n = socket.read_buf(&mut buf) => n?,
            };
            if n == 0 {
                break 'requests;
            }
        };
        let body = frame::take(&mut buf, size);
        let request = match frame::parse_header(body) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(?peer, error = %e, "closing connection: unreadable request");
                break 'requests;
            }
        };
        let Ok(slot) = slots.clone().acquire_owned().await else {
            break;
        };
        let weight = size.clamp(1, MAX_IN_FLIGHT_BYTES) as u32;
        let Ok(bytes) = budget.clone().acquire_many_owned(weight).await else {
            break;
        };
        let api = request.api_key;
        let client = request
            .header
            .client_id
            .as_ref()
            .map(|c| c.to_string())
            .unwrap_or_default();
        let (gate, ordered) = crate::broker::OrderGate::new();
        let (done_tx, done) = oneshot::channel::<()>();
        let (answer, response) = oneshot::channel::<Response>();
        if responses.send(response).await.is_err() {
            break;
        }
        let produce = api == kafka_protocol::messages::ApiKey::Produce;
        let after_ordered = prev_ordered.replace(ordered);
        let after_done = prev_done.replace(done);
        let broker = broker.clone();
        let peer_ip = peer_ip.clone();
        tokio::spawn(
            async move {
                let mut after_done = after_done;
                if produce {
                    if let Some(o) = after_ordered {
                        let _ = o.await;
                    }
                } else if let Some(d) = after_done.take() {
                    let _ = d.await;
                }
                let result = broker.dispatch(request, &peer_ip, gate).await;
                let _ = answer.send(result);
                if let Some(d) = after_done {
                    let _ = d.await;
                }
                let _ = done_tx.send(());
                drop((slot, bytes));
            }
            .instrument(tracing::debug_span!("request", ?api, client)),
        );
    }
    // No more requests: answer those in flight, then close.
    drop(responses);
    match writer.await {
        Ok(r) => r,
        Err(e) => Err(std::io::Error::other(e.to_string())),
    }
}

/// Writes the responses in request order; a request that cannot be
/// answered closes the connection (as Kafka does).
async fn write_responses(
    mut socket: tokio::net::tcp::OwnedWriteHalf,
    mut pending: mpsc::Receiver<oneshot::Receiver<Response>>,
    closed: CancellationToken,
    peer: Option<SocketAddr>,
) -> std::io::Result<()> {
    let _close_on_exit = closed.drop_guard();
    while let Some(next) = pending.recv().await {
        match next.await {
            Ok(Ok(Some(bytes))) => socket.write_all(&bytes).await?,
            Ok(Ok(None)) => {}
            Ok(Err(e)) => {
                tracing::warn!(?peer, error = %e, "closing connection");
                return Ok(());
            }
            // The request's task panicked.
            Err(_) => return Ok(()),
        }
    }
    socket.shutdown().await
}
