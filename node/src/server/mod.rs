//! The TCP plumbing both roles share: a listener with a connection cap and a
//! graceful stop, and a per-connection framed reader/writer.

pub mod acl;
mod connection;

pub use connection::{ConnError, Connection};

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// How one role serves one connection.
pub trait Service: Send + Sync + 'static {
    /// Serves requests on `conn` until the peer leaves, a fatal error, or `stop`.
    fn serve(
        self: Arc<Self>,
        conn: Connection,
        stop: CancellationToken,
    ) -> impl Future<Output = ()> + Send;
}

/// How long a connection may stall mid-packet, and sit idle between packets.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub network: Duration,
    pub idle: Duration,
}

/// Accepts connections until `stop` fires, then waits up to `drain` for them to end.
pub async fn run_listener<S: Service>(
    listener: TcpListener,
    service: Arc<S>,
    max_connections: usize,
    timeouts: Timeouts,
    stop: CancellationToken,
    drain: Duration,
) {
    let limit = Arc::new(Semaphore::new(max_connections.max(1)));
    let mut tasks = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            _ = stop.cancelled() => break,
            a = listener.accept() => a,
        };
        let (stream, peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                // Usually EMFILE: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            tracing::warn!(%peer, max_connections, "connection limit reached; closing");
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let local = stream.local_addr().unwrap_or(peer);
        let conn = Connection::new(stream, peer, local, timeouts.network, timeouts.idle);
        let service = service.clone();
        let stop = stop.clone();
        tasks.spawn(async move {
            service.serve(conn, stop).await;
            drop(permit);
        });
        // Reap finished tasks so the set does not grow without bound.
        while tasks.try_join_next().is_some() {}
    }
    drop(listener);
    let _ = tokio::time::timeout(drain, async { while tasks.join_next().await.is_some() {} }).await;
    tasks.abort_all();
}

/// Binds `addr`, returning the listener and its actual address (for port 0).
pub async fn bind(addr: &str) -> std::io::Result<(TcpListener, SocketAddr)> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    Ok((listener, local))
}
