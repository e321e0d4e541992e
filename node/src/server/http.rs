//! The HTTP side of both roles: the same connection hygiene as the protocol ports.
//!
//! A connection cap (at most half of it per client address), a deadline for each request
//! header that also ends idle keep-alive connections, a deadline for a stalled response,
//! a claim on the process's file-descriptor budget, and `allow_hosts`: a client outside it
//! gets 403 for everything but the probes and metrics.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio::time::{Instant, Sleep};
use tokio_util::sync::CancellationToken;

use super::acl::AccessList;
use super::quickack::QuickAckStream;
use super::{Refusals, Slots, accept, drain_connections, fd_budget, fd_budget_size};

/// Limits of one HTTP listener.
#[derive(Debug, Clone)]
pub struct HttpLimits {
    /// Open connections at most.
    pub max_connections: usize,
    /// A request header must arrive whole within this; also the keep-alive idle time.
    pub header_timeout: Duration,
    /// A response the client does not read for this long is abandoned.
    pub stall_timeout: Duration,
    /// Clients that may fetch files; others get 403 outside [`OPEN_PATHS`].
    pub allow_hosts: AccessList,
}

/// Paths every client may ask for, whatever `allow_hosts` says: probes and metrics.
pub const OPEN_PATHS: &[&str] = &["/healthz", "/readyz", "/metrics"];

/// Serves `app` on `listener` with hyper until `stop`, then lets requests in flight
/// finish for up to `drain`.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: HttpLimits,
    stop: CancellationToken,
    drain: Duration,
) {
    let forbidden = forbidden(app.clone());
    let header_timeout = limits.header_timeout;
    let stall_timeout = limits.stall_timeout;
    accept_loop(
        listener,
        &limits,
        stop,
        drain,
        move |stream, allowed, stop| {
            let app = if allowed {
                app.clone()
            } else {
                forbidden.clone()
            };
            async move {
                let io = TokioIo::new(StallGuard::new(QuickAckStream::new(stream), stall_timeout));
                let mut builder = hyper::server::conn::http1::Builder::new();
                builder
                    .timer(TokioTimer::new())
                    .header_read_timeout(header_timeout)
                    .keep_alive(true);
                let conn = builder.serve_connection(io, TowerToHyperService::new(app));
                let mut conn = std::pin::pin!(conn);
                tokio::select! {
                    _ = conn.as_mut() => {}
                    _ = stop.cancelled() => {
                        conn.as_mut().graceful_shutdown();
                        let _ = conn.await;
                    }
                }
            }
        },
    )
    .await;
}

/// Accepts HTTP connections on `listener` until `stop`, within the connection cap (half of
/// it per client address) and the process's descriptor budget, and runs `conn` for each:
/// the stream, whether `allow_hosts` lets its client fetch files, and `stop`. Then lets
/// the connections finish for up to `drain`.
pub async fn accept_loop<F, Fut>(
    listener: TcpListener,
    limits: &HttpLimits,
    stop: CancellationToken,
    drain: Duration,
    conn: F,
) where
    F: Fn(TcpStream, bool, CancellationToken) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    // HTTP never takes more than half of the descriptor budget: a flood of HTTP
    // connections leaves the protocol ports the other half.
    let slots = Slots::new(limits.max_connections.min(fd_budget_size() / 2));
    let refusals = Refusals::default();
    let mut tasks = JoinSet::new();
    while let Some((stream, peer)) = accept(&listener, &stop, &refusals).await {
        let claimed = fd_budget()
            .clone()
            .try_acquire_owned()
            .map_err(|_| "the process's file descriptor budget is spent")
            .and_then(|fds| slots.claim(peer.ip(), false).map(|slot| (fds, slot)));
        let (fds, slot) = match claimed {
            Ok(x) => x,
            Err(why) => {
                refusals.note(|| tracing::warn!(%peer, why, "HTTP connection refused; closing"));
                continue;
            }
        };
        // A token of the connection's own: waiting on it for every request takes only its
        // lock, not the one all connections of the listener share.
        let served = conn(
            stream,
            limits.allow_hosts.allows(peer.ip()),
            stop.child_token(),
        );
        tasks.spawn(async move {
            served.await;
            drop((fds, slot));
        });
        while tasks.try_join_next().is_some() {}
    }
    drop(listener);
    drain_connections(tasks, drain).await;
}

/// `app` for a client outside `allow_hosts`: the open paths, 403 for everything else.
fn forbidden(app: Router) -> Router {
    app.layer(axum::middleware::from_fn(
        |req: axum::extract::Request, next: axum::middleware::Next| async move {
            use axum::response::IntoResponse;
            if OPEN_PATHS.contains(&req.uri().path()) {
                next.run(req).await
            } else {
                (
                    axum::http::StatusCode::FORBIDDEN,
                    "this address is not in allow_hosts\n",
                )
                    .into_response()
            }
        },
    ))
}

/// A stream that fails with `TimedOut` once neither direction has moved for `limit` while
/// the server waits on it, so a client that stops reading cannot hold its slot forever.
struct StallGuard<S> {
    inner: S,
    limit: Duration,
    /// When either direction last moved.
    progress: Instant,
    /// Wakes the task to look at `progress`; re-armed only when it fires, not on every
    /// read and write of a download.
    deadline: Pin<Box<Sleep>>,
}

impl<S> StallGuard<S> {
    fn new(inner: S, limit: Duration) -> Self {
        StallGuard {
            inner,
            limit,
            progress: Instant::now(),
            deadline: Box::pin(tokio::time::sleep(limit)),
        }
    }

    fn moved(&mut self) {
        self.progress = Instant::now();
    }

    /// On `Pending`: whether nothing has moved for the limit. Otherwise the timer is armed
    /// for the limit after the last progress, and wakes this task then.
    fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        loop {
            if self.deadline.as_mut().poll(cx).is_pending() {
                return false;
            }
            let due = self.progress + self.limit;
            if Instant::now() >= due {
                return true;
            }
            self.deadline.as_mut().reset(due);
        }
    }
}

fn stalled() -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        "no progress within the HTTP timeout",
    )
}

impl<S: AsyncRead + Unpin> AsyncRead for StallGuard<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    self.moved();
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending if self.expired(cx) => Poll::Ready(Err(stalled())),
            other => other,
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for StallGuard<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.inner).poll_write(cx, buf) {
            Poll::Ready(Ok(n)) => {
                self.moved();
                Poll::Ready(Ok(n))
            }
            Poll::Pending if self.expired(cx) => Poll::Ready(Err(stalled())),
            other => other,
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.inner).poll_write_vectored(cx, bufs) {
            Poll::Ready(Ok(n)) => {
                self.moved();
                Poll::Ready(Ok(n))
            }
            Poll::Pending if self.expired(cx) => Poll::Ready(Err(stalled())),
            other => other,
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The HTTP limits for a role's settings: the protocol port's connection cap and header
/// deadline, and `network_timeout` for stalled responses.
pub fn limits(
    max_connections: usize,
    timeouts: super::Timeouts,
    allow_hosts: AccessList,
) -> HttpLimits {
    HttpLimits {
        max_connections,
        header_timeout: timeouts.header,
        stall_timeout: timeouts.network,
        allow_hosts,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test(start_paused = true)]
    async fn a_stalled_peer_times_out_and_progress_restarts_the_clock() {
        let (near, mut far) = tokio::io::duplex(64);
        let mut guarded = StallGuard::new(near, Duration::from_secs(5));
        let started = Instant::now();
        guarded.write_all(&[1; 64]).await.expect("fits the buffer");
        // The peer reads once, 4 s in: the write waiting for room goes through.
        let reader = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(4)).await;
            let mut got = [0u8; 64];
            far.read_exact(&mut got).await.expect("read");
            far
        });
        guarded
            .write_all(&[2; 64])
            .await
            .expect("room after the read");
        let _far = reader.await.expect("reader");
        // Then nothing: 5 s after that progress, the next write fails.
        let err = guarded.write_all(&[3; 64]).await.expect_err("stalled");
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_eq!(started.elapsed(), Duration::from_secs(9));
        // A read with nothing coming fails the same way.
        let mut b = [0u8; 1];
        let err = guarded.read(&mut b).await.expect_err("silent peer");
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    }
}
