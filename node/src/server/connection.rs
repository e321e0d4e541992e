//! One accepted connection: reads headers and bodies under a length cap and a
//! timeout, writes header-only errors and framed replies.

use std::fs::File;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader, Interest};
use tokio::net::TcpStream;

use super::quickack::QuickAckStream;
use crate::proto::{HEADER_LEN, Header, ProtoError, Status};

/// Most bytes one sendfile(2) call is asked for, so a timeout still bounds each step.
const SENDFILE_STEP: usize = 4 << 20;

/// Why a connection must end.
#[derive(Debug, thiserror::Error)]
pub enum ConnError {
    #[error("peer closed the connection")]
    Closed,
    #[error("peer idle or stalled for {0:?}")]
    Timeout(Duration),
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    #[error("bad packet: {0}")]
    Proto(#[from] ProtoError),
}

/// Runs an I/O future under the connection's timeout.
async fn timed<T>(
    timeout: Duration,
    fut: impl Future<Output = std::io::Result<T>>,
) -> Result<T, ConnError> {
    match tokio::time::timeout(timeout, fut).await {
        Err(_) => Err(ConnError::Timeout(timeout)),
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => Err(ConnError::Closed),
        Ok(Err(e)) => Err(e.into()),
    }
}

/// An accepted TCP connection with framing helpers.
#[derive(Debug)]
pub struct Connection {
    stream: BufReader<QuickAckStream>,
    pub peer: SocketAddr,
    pub local: SocketAddr,
    /// Longest wait for the rest of a packet once it has started.
    timeout: Duration,
    /// Longest wait for the next packet (pooled clients keep connections idle).
    idle: Duration,
    /// Longest wait for a new connection's first header, whole.
    header: Duration,
    /// Whether a whole request header has arrived yet: until then the header must come
    /// within `header`, not `idle`, so silent connections do not hold slots for long.
    started: bool,
}

impl Connection {
    pub fn new(
        stream: TcpStream,
        peer: SocketAddr,
        local: SocketAddr,
        timeouts: super::Timeouts,
    ) -> Self {
        Connection {
            stream: BufReader::with_capacity(64 * 1024, QuickAckStream::on_demand(stream)),
            peer,
            local,
            timeout: timeouts.network,
            idle: timeouts.idle,
            header: timeouts.header,
            started: false,
        }
    }

    /// Reads the next header; `Ok(None)` on a clean close between packets.
    pub async fn read_header(&mut self, max_body: u64) -> Result<Option<Header>, ConnError> {
        let mut buf = [0u8; HEADER_LEN];
        let wait = if self.started { self.idle } else { self.header };
        let first = match tokio::time::timeout(wait, self.stream.read(&mut buf)).await {
            Err(_) => return Err(ConnError::Timeout(wait)),
            Ok(Ok(0)) => return Ok(None),
            Ok(Ok(n)) => n,
            Ok(Err(e)) if is_reset(&e) => return Ok(None),
            Ok(Err(e)) => return Err(e.into()),
        };
        if first < HEADER_LEN {
            self.stream.get_ref().arm_now();
            let rest = if self.started {
                self.timeout
            } else {
                self.header
            };
            timed(rest, self.stream.read_exact(&mut buf[first..])).await?;
        }
        self.started = true;
        Ok(Some(Header::decode(&buf, max_body)?))
    }

    /// Before a read of `need` bytes: when they are not all here yet, the client may hold
    /// them until what it sent is acknowledged (Nagle, with a header and body written
    /// separately), so the ACK goes now rather than up to 40 ms later.
    fn ack_if_short(&self, need: usize) {
        if self.stream.buffer().len() < need {
            self.stream.get_ref().arm_now();
        }
    }

    /// Reads exactly `buf.len()` bytes.
    pub async fn read_exact(&mut self, buf: &mut [u8]) -> Result<(), ConnError> {
        self.ack_if_short(buf.len());
        timed(self.timeout, self.stream.read_exact(buf))
            .await
            .map(|_| ())
    }

    /// Reads a whole body of `len` bytes (callers have already capped `len`).
    pub async fn read_body(&mut self, len: u64) -> Result<Vec<u8>, ConnError> {
        let mut body = vec![0u8; len as usize];
        self.read_exact(&mut body).await?;
        Ok(body)
    }

    /// Reads up to `buf.len()` bytes, at least one.
    pub async fn read_some(&mut self, buf: &mut [u8]) -> Result<usize, ConnError> {
        self.ack_if_short(1);
        let n = timed(self.timeout, self.stream.read(buf)).await?;
        if n == 0 {
            Err(ConnError::Closed)
        } else {
            Ok(n)
        }
    }

    /// Skips `len` body bytes without keeping them.
    pub async fn discard(&mut self, mut len: u64) -> Result<(), ConnError> {
        let mut scratch = [0u8; 8192];
        while len > 0 {
            let want = scratch
                .len()
                .min(usize::try_from(len).unwrap_or(usize::MAX));
            let n = self.read_some(&mut scratch[..want]).await?;
            len -= n as u64;
        }
        Ok(())
    }

    /// Sends a reply: header and body in one write.
    pub async fn reply(&mut self, status: Status, body: &[u8]) -> Result<(), ConnError> {
        let mut out = Vec::with_capacity(HEADER_LEN + body.len());
        out.extend_from_slice(&Header::response(status, body.len() as u64).encode());
        out.extend_from_slice(body);
        self.write_all(&out).await
    }

    /// Sends a header-only error reply.
    pub async fn reply_error(&mut self, status: Status) -> Result<(), ConnError> {
        self.reply(status, &[]).await
    }

    pub async fn write_all(&mut self, bytes: &[u8]) -> Result<(), ConnError> {
        timed(self.timeout, self.stream.get_mut().write_all(bytes)).await
    }

    /// Writes `bytes` with MSG_MORE, so a header and the file body that follows it leave
    /// in full packets instead of a lone small one.
    pub async fn write_more(&mut self, bytes: &[u8]) -> Result<(), ConnError> {
        let sock = self.socket();
        let mut sent = 0;
        while sent < bytes.len() {
            let n = timed(
                self.timeout,
                sock.async_io(Interest::WRITABLE, || {
                    Ok(rustix::net::send(
                        sock,
                        &bytes[sent..],
                        rustix::net::SendFlags::MORE | rustix::net::SendFlags::NOSIGNAL,
                    )?)
                }),
            )
            .await?;
            sent += n;
        }
        Ok(())
    }

    /// Sends `len` bytes of `file` from `offset` with sendfile(2).
    pub async fn send_file(&mut self, file: &File, offset: u64, len: u64) -> Result<(), ConnError> {
        match send_file(self.socket(), file, offset, len, self.timeout).await {
            Err(e) if e.kind() == io::ErrorKind::TimedOut => Err(ConnError::Timeout(self.timeout)),
            other => Ok(other?),
        }
    }

    /// Whether the socket is in quick-ACK mode (re-armed after every read).
    pub fn quickack(&self) -> io::Result<bool> {
        self.stream.get_ref().quickack()
    }

    fn socket(&self) -> &TcpStream {
        self.stream.get_ref().get_ref()
    }
}

/// Sends `len` bytes of `file` from `offset` on `stream` with sendfile(2): the kernel
/// moves them from the page cache to the socket, with no copy through this process. Fails
/// with `TimedOut` when the socket takes nothing for `stall`, and `UnexpectedEof` when the
/// file ends early (truncated meanwhile).
pub async fn send_file(
    stream: &TcpStream,
    file: &File,
    offset: u64,
    len: u64,
    stall: Duration,
) -> io::Result<()> {
    let end = offset.saturating_add(len);
    let mut pos = offset;
    while pos < end {
        let want = usize::try_from(end - pos)
            .unwrap_or(SENDFILE_STEP)
            .min(SENDFILE_STEP);
        let step = stream.try_io(Interest::WRITABLE, || {
            Ok(rustix::fs::sendfile(stream, file, Some(&mut pos), want)?)
        });
        match step {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                match tokio::time::timeout(stall, stream.writable()).await {
                    Ok(ready) => ready?,
                    Err(_) => return Err(io::ErrorKind::TimedOut.into()),
                }
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn is_reset(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe
    )
}
