//! The TCP plumbing both roles share: a listener with a connection cap and a
//! graceful stop, and a per-connection framed reader/writer.

pub mod acl;
mod connection;
pub mod quickack;

pub use connection::{ConnError, Connection};
pub use quickack::QuickAckListener;

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
        // Replies go out whole; small ones must not wait for the peer's ACK.
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{Command, HEADER_LEN, Header, Status};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Answers each request with one byte: whether the socket was in quick-ACK mode
    /// right after its header was read.
    struct ReportQuickAck;

    impl Service for ReportQuickAck {
        async fn serve(self: Arc<Self>, mut conn: Connection, _stop: CancellationToken) {
            while let Ok(Some(_)) = conn.read_header(0).await {
                let armed = conn.quickack().expect("getsockopt");
                if conn.reply(Status::Ok, &[u8::from(armed)]).await.is_err() {
                    return;
                }
            }
        }
    }

    /// Sends requests the way the C client does (Nagle on, pooled connection) and reads
    /// the server side's quick-ACK state after each header.
    async fn quickack_states(addr: SocketAddr, requests: usize) -> Vec<u8> {
        let mut client = tokio::net::TcpStream::connect(addr).await.expect("connect");
        client.set_nodelay(false).expect("nagle on");
        let mut states = Vec::new();
        for _ in 0..requests {
            let header = Header::request(Command::ActiveTest, 0).encode();
            client.write_all(&header).await.expect("send");
            let mut reply = [0u8; HEADER_LEN + 1];
            client.read_exact(&mut reply).await.expect("reply");
            states.push(reply[HEADER_LEN]);
        }
        states
    }

    #[tokio::test]
    async fn accepted_connections_are_in_quickack_mode_after_every_read() {
        let (listener, addr) = bind("127.0.0.1:0").await.expect("bind");
        let stop = CancellationToken::new();
        let timeouts = Timeouts {
            network: Duration::from_secs(5),
            idle: Duration::from_secs(5),
        };
        let served = tokio::spawn(run_listener(
            listener,
            Arc::new(ReportQuickAck),
            8,
            timeouts,
            stop.clone(),
            Duration::from_secs(1),
        ));
        // After the first reply Linux treats the connection as interactive and would
        // delay ACKs; only a re-armed TCP_QUICKACK reads 1 on the later requests.
        assert_eq!(quickack_states(addr, 5).await, [1, 1, 1, 1, 1]);
        stop.cancel();
        served.await.expect("listener");
    }

    #[tokio::test]
    async fn http_connections_are_in_quickack_mode_after_every_read() {
        use axum::serve::Listener;
        let (listener, addr) = bind("127.0.0.1:0").await.expect("bind");
        let mut listener = QuickAckListener(listener);
        let mut client = tokio::net::TcpStream::connect(addr).await.expect("connect");
        client.set_nodelay(false).expect("nagle on");
        let (mut server, _) = listener.accept().await;
        let mut states = Vec::new();
        for _ in 0..5 {
            client.write_all(b"ping").await.expect("send");
            let mut got = [0u8; 4];
            server.read_exact(&mut got).await.expect("read");
            states.push(server.quickack().expect("getsockopt"));
            server.write_all(b"pong").await.expect("reply");
            client.read_exact(&mut got).await.expect("pong");
        }
        assert_eq!(states, [true; 5]);
    }
}
