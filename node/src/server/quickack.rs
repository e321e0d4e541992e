//! Accepted sockets that acknowledge every read at once.
//!
//! FastDFS's C and Java clients leave Nagle on and send a request in two writes (header,
//! then body). Nagle holds the body until the header is acknowledged, and Linux delays
//! that ACK by up to 40 ms once a connection looks interactive, so every small upload
//! on a pooled connection would wait 40 ms. Like FastDFS's servers, we re-arm
//! TCP_QUICKACK after each read that returned data: the kernel then acknowledges
//! immediately, the client's body leaves at once.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// An accepted TCP stream that re-arms TCP_QUICKACK after every read, or only when its
/// owner asks ([`QuickAckStream::on_demand`]).
#[derive(Debug)]
pub struct QuickAckStream {
    inner: TcpStream,
    after_every_read: bool,
}

impl QuickAckStream {
    /// Wraps an accepted stream and arms quick ACKs for its first read.
    pub fn new(inner: TcpStream) -> Self {
        arm(&inner);
        QuickAckStream {
            inner,
            after_every_read: true,
        }
    }

    /// Wraps an accepted stream whose owner calls [`Self::arm_now`] before it waits for
    /// the rest of a request: the ACK of what came is then sent at once, while a request
    /// that came whole gets its ACK with the response instead of in a packet of its own.
    pub fn on_demand(inner: TcpStream) -> Self {
        arm(&inner);
        QuickAckStream {
            inner,
            after_every_read: false,
        }
    }

    pub fn arm_now(&self) {
        arm(&self.inner);
    }

    pub fn get_ref(&self) -> &TcpStream {
        &self.inner
    }

    /// Whether the socket is in quick-ACK mode now (the kernel leaves it on its own).
    pub fn quickack(&self) -> io::Result<bool> {
        Ok(rustix::net::sockopt::tcp_quickack(&self.inner)?)
    }
}

/// Sets TCP_QUICKACK; a failure only costs latency, so it is not reported.
pub fn arm(stream: &TcpStream) {
    let _ = rustix::net::sockopt::set_tcp_quickack(stream, true);
}

impl AsyncRead for QuickAckStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if self.after_every_read
            && matches!(polled, Poll::Ready(Ok(())))
            && buf.filled().len() > before
        {
            arm(&self.inner);
        }
        polled
    }
}

impl AsyncWrite for QuickAckStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
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
