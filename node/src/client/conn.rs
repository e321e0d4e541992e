//! One client-side connection to a tracker or storage, with timeouts.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use super::ClientError;

/// Why a reply body could not be streamed on ([`Conn::copy_body_to`]).
#[derive(Debug, thiserror::Error)]
pub enum BodyCopyError {
    #[error(transparent)]
    Read(ClientError),
    #[error("writing the body out: {0}")]
    Write(std::io::Error),
}
use crate::proto::{Command, HEADER_LEN, Header, Status};

/// A connected peer speaking the FastDFS protocol.
#[derive(Debug)]
pub struct Conn {
    stream: TcpStream,
    pub addr: SocketAddr,
    timeout: Duration,
}

impl Conn {
    /// Connects to `addr`, optionally from a fixed local IP (as FastDFS's `client_bind`).
    pub async fn connect(
        addr: SocketAddr,
        connect_timeout: Duration,
        io_timeout: Duration,
        bind_ip: Option<IpAddr>,
    ) -> Result<Self, ClientError> {
        let fut = async {
            let socket = if addr.is_ipv4() {
                TcpSocket::new_v4()?
            } else {
                TcpSocket::new_v6()?
            };
            if let Some(ip) = bind_ip {
                socket.bind(SocketAddr::new(ip, 0))?;
            }
            socket.connect(addr).await
        };
        let stream = match tokio::time::timeout(connect_timeout, fut).await {
            Err(_) => {
                return Err(ClientError::Timeout {
                    addr: addr.to_string(),
                    what: "connecting",
                });
            }
            Ok(Err(source)) => {
                return Err(ClientError::Connect {
                    addr: addr.to_string(),
                    source,
                });
            }
            Ok(Ok(s)) => s,
        };
        let _ = stream.set_nodelay(true);
        Ok(Conn {
            stream,
            addr,
            timeout: io_timeout,
        })
    }

    /// Turns Nagle's algorithm off (the default here) or back on.
    pub fn set_nodelay(&self, on: bool) {
        let _ = self.stream.set_nodelay(on);
    }

    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.stream.local_addr().ok()
    }

    async fn timed<T>(
        &mut self,
        what: &'static str,
        f: impl AsyncFnOnce(&mut TcpStream) -> std::io::Result<T>,
    ) -> Result<T, ClientError> {
        let addr = self.addr;
        match tokio::time::timeout(self.timeout, f(&mut self.stream)).await {
            Err(_) => Err(ClientError::Timeout {
                addr: addr.to_string(),
                what,
            }),
            Ok(Err(source)) => Err(ClientError::Io {
                addr: addr.to_string(),
                source,
            }),
            Ok(Ok(v)) => Ok(v),
        }
    }

    pub async fn write_all(&mut self, bytes: &[u8]) -> Result<(), ClientError> {
        self.timed("sending", async |s| s.write_all(bytes).await)
            .await
    }

    pub async fn read_exact(&mut self, buf: &mut [u8]) -> Result<(), ClientError> {
        self.timed("receiving", async |s| s.read_exact(buf).await.map(|_| ()))
            .await
    }

    /// Reads what has arrived, 0 at the end of the stream (replies that last until close).
    pub async fn read_some(&mut self, buf: &mut [u8]) -> Result<usize, ClientError> {
        self.timed("receiving", async |s| s.read(buf).await).await
    }

    /// Sends a request header and body in one write.
    pub async fn send(&mut self, cmd: Command, status: u8, body: &[u8]) -> Result<(), ClientError> {
        let mut out = Vec::with_capacity(HEADER_LEN + body.len());
        out.extend_from_slice(
            &Header {
                body_len: body.len() as u64,
                cmd,
                status,
            }
            .encode(),
        );
        out.extend_from_slice(body);
        self.write_all(&out).await
    }

    /// Streams the next `len` bytes of a reply body into `out`, a bounded chunk at a time,
    /// so no file is held whole in memory. A failed write to `out` is told apart from a
    /// failed read from the peer.
    pub async fn copy_body_to<W: tokio::io::AsyncWrite + Unpin>(
        &mut self,
        len: u64,
        out: &mut W,
    ) -> Result<(), BodyCopyError> {
        const CHUNK: usize = 256 * 1024;
        let mut left = len;
        let mut buf = vec![0u8; CHUNK.min(usize::try_from(left).unwrap_or(CHUNK)).max(1)];
        while left > 0 {
            let n = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
            self.read_exact(&mut buf[..n])
                .await
                .map_err(BodyCopyError::Read)?;
            out.write_all(&buf[..n])
                .await
                .map_err(BodyCopyError::Write)?;
            left -= n as u64;
        }
        Ok(())
    }

    /// Reads a response header, checking the response marker and the length cap.
    pub async fn read_reply_header(&mut self, max_body: u64) -> Result<Header, ClientError> {
        let mut buf = [0u8; HEADER_LEN];
        self.read_exact(&mut buf).await?;
        let h = Header::decode(&buf, max_body).map_err(|source| ClientError::Proto {
            addr: self.addr.to_string(),
            source,
        })?;
        if h.cmd != Command::Resp {
            return Err(ClientError::NotAResponse {
                addr: self.addr.to_string(),
                cmd: h.cmd.into(),
            });
        }
        Ok(h)
    }

    /// One request/response exchange with a small reply (read whole, capped).
    pub async fn call(
        &mut self,
        cmd: Command,
        body: &[u8],
        max_reply: u64,
    ) -> Result<(Status, Vec<u8>), ClientError> {
        self.send(cmd, 0, body).await?;
        let h = self.read_reply_header(max_reply).await?;
        let mut reply = vec![0u8; h.body_len as usize];
        self.read_exact(&mut reply).await?;
        Ok((h.status(), reply))
    }

    /// Resolves when the peer closes the connection (or sends something unasked).
    pub async fn closed_by_peer(&self) {
        let mut b = [0u8; 1];
        let _ = self.stream.peek(&mut b).await;
    }

    /// Whether this idle connection can no longer carry a request: the peer closed it (a
    /// restart, its idle timeout) or sent something nobody asked for.
    pub fn is_stale(&self) -> bool {
        let mut b = [0u8; 1];
        let mut buf = tokio::io::ReadBuf::new(&mut b);
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        !matches!(
            self.stream.poll_peek(&mut cx, &mut buf),
            std::task::Poll::Pending
        )
    }

    /// Sends QUIT, which the server answers by closing.
    pub async fn quit(mut self) {
        let _ = self.send(Command::Quit, 0, &[]).await;
    }
}

/// Resolves `host:port`; a name with several addresses yields all of them.
pub async fn resolve(target: &str) -> Result<Vec<SocketAddr>, ClientError> {
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host(target)
        .await
        .map_err(|source| ClientError::Connect {
            addr: target.to_owned(),
            source,
        })?
        .collect();
    if addrs.is_empty() {
        return Err(ClientError::NoTracker(target.to_owned()));
    }
    Ok(addrs)
}
