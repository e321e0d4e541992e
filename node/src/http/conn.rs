//! The storage's HTTP/1.1 connections.
//!
//! Served here rather than by a general-purpose HTTP server so that a file body leaves by
//! sendfile(2) straight from the page cache, and a small file is opened, read and sent on
//! the connection's own task, with no trip to another thread (see `body`). The rest is
//! the plain HTTP/1.1 a file server needs: keep-alive, pipelined requests, HEAD, a
//! deadline for each request header that also ends idle connections, a stall deadline for
//! responses the client does not read, and a prompt close when the server stops.

use std::cell::RefCell;
use std::fs::File;
use std::future::Future;
use std::io::{self, IoSlice};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri, header};
use http_body_util::BodyExt;
use tokio::io::Interest;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Largest request head (request line and headers) accepted.
const MAX_HEAD: usize = 16 * 1024;
/// Most header lines in one request.
const MAX_HEADERS: usize = 64;
/// A request body (which no route reads) of at most this many bytes is skipped; a larger
/// one ends the connection after a 413.
const MAX_SKIPPED_BODY: u64 = 64 * 1024;

/// One request: its head only (no route takes a body).
#[derive(Debug)]
pub struct Request {
    pub method: Method,
    pub uri: Uri,
    pub headers: HeaderMap,
}

/// What a response carries after its head.
#[derive(Debug, Default)]
pub enum Payload {
    #[default]
    Empty,
    Bytes(Bytes),
    /// `len` bytes of `file` from `offset`, sent by sendfile(2).
    File {
        file: std::sync::Arc<File>,
        offset: u64,
        len: u64,
    },
    /// A body of unknown length, e.g. relayed from another member.
    Stream(Body),
}

impl Payload {
    fn len(&self) -> Option<u64> {
        match self {
            Payload::Empty => Some(0),
            Payload::Bytes(b) => Some(b.len() as u64),
            Payload::File { len, .. } => Some(*len),
            Payload::Stream(_) => None,
        }
    }
}

/// A response.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    /// Header lines written as they are after `headers`, Content-Length included: a
    /// response head made once and kept (see `cache`).
    pub raw_head: Option<Bytes>,
    pub payload: Payload,
}

impl Reply {
    pub fn new(status: StatusCode) -> Self {
        Reply {
            status,
            headers: HeaderMap::new(),
            raw_head: None,
            payload: Payload::Empty,
        }
    }

    /// A short plain-text answer.
    pub fn text(status: StatusCode, text: impl Into<String>) -> Self {
        Reply::new(status)
            .header(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            )
            .body(Payload::Bytes(Bytes::from(text.into())))
    }

    pub fn header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.insert(name, value);
        self
    }

    pub fn body(mut self, payload: Payload) -> Self {
        self.payload = payload;
        self
    }

    /// A response made elsewhere (relayed from another member), its body streamed.
    pub fn relay(response: axum::response::Response) -> Self {
        let (mut parts, body) = response.into_parts();
        if let Some(n) = axum::body::HttpBody::size_hint(&body).exact() {
            parts
                .headers
                .entry(header::CONTENT_LENGTH)
                .or_insert(HeaderValue::from(n));
        }
        Reply {
            status: parts.status,
            headers: parts.headers,
            raw_head: None,
            payload: Payload::Stream(body),
        }
    }
}

/// Deadlines of one connection.
#[derive(Debug, Clone, Copy)]
pub struct Deadlines {
    /// A request head must arrive whole within this once the connection waits for one;
    /// also how long a keep-alive connection may sit idle.
    pub header: Duration,
    /// A response the client does not read for this long is abandoned.
    pub stall: Duration,
}

/// Serves requests on `stream` with `handle` until the client closes, a deadline passes,
/// or `stop` fires while no request is in progress.
pub async fn serve<H, Fut>(
    stream: TcpStream,
    deadlines: Deadlines,
    stop: CancellationToken,
    mut handle: H,
) where
    H: FnMut(Request) -> Fut,
    Fut: Future<Output = Reply>,
{
    // Replies are written whole; the last segment must not wait for an ACK.
    let _ = stream.set_nodelay(true);
    crate::server::quickack::arm(&stream);
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    loop {
        let head = match read_head(&stream, &mut buf, deadlines.header, &stop).await {
            Ok(Some(head)) => head,
            Ok(None) => return,
            Err(status) => {
                let reply = Reply::text(status, format!("{}\n", status.as_str()));
                answer_and_close(&stream, reply, &mut buf, deadlines.stall).await;
                return;
            }
        };
        let Head {
            request,
            version_11,
            body_len,
        } = head;
        // A body no route reads: skipped when small, else the connection ends.
        if body_len > 0 {
            let skipped = body_len <= MAX_SKIPPED_BODY
                && skip(&stream, &mut buf, body_len, deadlines.header).await;
            if !skipped {
                let reply = Reply::text(StatusCode::PAYLOAD_TOO_LARGE, "no request body taken\n");
                answer_and_close(&stream, reply, &mut buf, deadlines.stall).await;
                return;
            }
        }
        let mut keep_alive = wants_keep_alive(&request.headers, version_11);
        let method = request.method.clone();
        let reply = handle(request).await;
        if stop.is_cancelled() {
            keep_alive = false;
        }
        match write_reply(&stream, reply, &method, keep_alive, deadlines.stall).await {
            Ok(true) if keep_alive => {}
            _ => return,
        }
    }
}

struct Head {
    request: Request,
    version_11: bool,
    body_len: u64,
}

/// Reads until `buf` holds a whole request head, and takes it out of `buf`. `None` when
/// the connection ends cleanly (closed, idle past the deadline, or stopped while idle).
async fn read_head(
    stream: &TcpStream,
    buf: &mut Vec<u8>,
    limit: Duration,
    stop: &CancellationToken,
) -> Result<Option<Head>, StatusCode> {
    let deadline = Instant::now() + limit;
    loop {
        if !buf.is_empty() {
            if let Some((head, used)) = parse_head(buf)? {
                buf.drain(..used);
                return Ok(Some(head));
            }
            if buf.len() >= MAX_HEAD {
                return Err(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
            }
            // Part of a head came: the client may hold the rest until it is acknowledged
            // (Nagle). Re-arming quick ACK sends that ACK now. A whole request needs none:
            // its response carries the ACK, and a forced one would cost a packet each.
            crate::server::quickack::arm(stream);
        }
        let idle = buf.is_empty();
        let read = tokio::select! {
            biased;
            _ = stop.cancelled(), if idle => return Ok(None),
            r = tokio::time::timeout_at(deadline, read_more(stream, buf)) => r,
        };
        match read {
            Ok(Ok(0)) | Ok(Err(_)) => return Ok(None),
            Ok(Ok(_)) => {}
            // A silent connection is closed; a head cut short gets 408 first.
            Err(_) if idle => return Ok(None),
            Err(_) => return Err(StatusCode::REQUEST_TIMEOUT),
        }
    }
}

/// The request at the start of `buf`, with the bytes its head took; `None` when the head
/// is not whole yet.
fn parse_head(buf: &[u8]) -> Result<Option<(Head, usize)>, StatusCode> {
    let mut lines = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut lines);
    let used = match parsed.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
        }
        Err(_) => return Err(StatusCode::BAD_REQUEST),
    };
    let bad = |_| StatusCode::BAD_REQUEST;
    let method = Method::from_bytes(parsed.method.unwrap_or("").as_bytes()).map_err(bad)?;
    let uri: Uri = parsed
        .path
        .unwrap_or("")
        .parse()
        .map_err(|_| StatusCode::BAD_REQUEST)?;
    let mut headers = HeaderMap::with_capacity(parsed.headers.len());
    for h in parsed.headers.iter() {
        let name =
            HeaderName::from_bytes(h.name.as_bytes()).map_err(|_| StatusCode::BAD_REQUEST)?;
        let value = HeaderValue::from_bytes(h.value).map_err(|_| StatusCode::BAD_REQUEST)?;
        headers.append(name, value);
    }
    // Bodies are only ever skipped, so a chunked one is refused rather than decoded.
    if headers.contains_key(header::TRANSFER_ENCODING) {
        return Err(StatusCode::BAD_REQUEST);
    }
    // One Content-Length of digits only: with two, or a `+5`, a proxy in front and this
    // server could see different bodies, and the rest of one as the next request.
    let mut lengths = headers.get_all(header::CONTENT_LENGTH).iter();
    let body_len = match (lengths.next(), lengths.next()) {
        (None, _) => 0,
        (Some(v), None) => v
            .to_str()
            .ok()
            .map(str::trim)
            .filter(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|t| t.parse::<u64>().ok())
            .ok_or(StatusCode::BAD_REQUEST)?,
        (Some(_), Some(_)) => return Err(StatusCode::BAD_REQUEST),
    };
    let head = Head {
        request: Request {
            method,
            uri,
            headers,
        },
        version_11: parsed.version == Some(1),
        body_len,
    };
    Ok(Some((head, used)))
}

fn wants_keep_alive(headers: &HeaderMap, version_11: bool) -> bool {
    let has = |token: &str| {
        headers.get_all(header::CONNECTION).iter().any(|v| {
            v.to_str()
                .is_ok_and(|t| t.split(',').any(|p| p.trim().eq_ignore_ascii_case(token)))
        })
    };
    if version_11 {
        !has("close")
    } else {
        has("keep-alive")
    }
}

/// Reads what the socket has into `buf`; 0 at end of stream.
async fn read_more(stream: &TcpStream, buf: &mut Vec<u8>) -> io::Result<usize> {
    buf.reserve(4096);
    loop {
        match stream.try_read_buf(buf) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => stream.readable().await?,
            other => return other,
        }
    }
}

/// Drops a `len`-byte request body, part of which may already be in `buf`.
async fn skip(stream: &TcpStream, buf: &mut Vec<u8>, len: u64, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    let mut left = len;
    loop {
        let take = left.min(buf.len() as u64) as usize;
        buf.drain(..take);
        left -= take as u64;
        if left == 0 {
            return true;
        }
        crate::server::quickack::arm(stream);
        match tokio::time::timeout_at(deadline, read_more(stream, buf)).await {
            Ok(Ok(n)) if n > 0 => {}
            _ => return false,
        }
    }
}

/// How long, and how many bytes, an error answer waits for the client to stop sending.
const LINGER: Duration = Duration::from_secs(2);
const LINGER_BYTES: usize = 1 << 20;

/// Sends an error answer to a request whose bytes were not all read, then ends the
/// connection without losing that answer.
async fn answer_and_close(stream: &TcpStream, reply: Reply, buf: &mut Vec<u8>, stall: Duration) {
    if write_reply(stream, reply, &Method::GET, false, stall)
        .await
        .is_ok()
    {
        linger_close(stream, buf).await;
    }
}

/// Ends a connection that still has unread request bytes after an error answer. Closing
/// with unread data makes the kernel reset the connection, which can discard the answer
/// before the client reads it; so the write side is shut first and what the client still
/// sends is read and dropped until it closes, or for a bounded time and size.
async fn linger_close(stream: &TcpStream, buf: &mut Vec<u8>) {
    if rustix::net::shutdown(stream, rustix::net::Shutdown::Write).is_err() {
        return;
    }
    let deadline = Instant::now() + LINGER;
    let mut dropped = 0;
    while dropped < LINGER_BYTES {
        buf.clear();
        match tokio::time::timeout_at(deadline, read_more(stream, buf)).await {
            Ok(Ok(n)) if n > 0 => dropped += n,
            _ => return,
        }
    }
}

/// The Date header's text, formatted once a second per thread.
fn date() -> HeaderValue {
    thread_local! {
        static DATE: RefCell<(u64, Option<HeaderValue>)> = const { RefCell::new((0, None)) };
    }
    let now = crate::unix_now();
    DATE.with(|cell| {
        let mut cached = cell.borrow_mut();
        match &cached.1 {
            Some(v) if cached.0 == now => v.clone(),
            _ => {
                let text =
                    httpdate::fmt_http_date(std::time::UNIX_EPOCH + Duration::from_secs(now));
                let v = HeaderValue::from_str(&text).unwrap_or(HeaderValue::from_static(""));
                *cached = (now, Some(v.clone()));
                v
            }
        }
    })
}

/// Statuses whose responses never have a body.
fn bodiless(status: StatusCode) -> bool {
    status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
}

/// Writes `reply`; `Ok(false)` when the connection cannot carry another response.
async fn write_reply(
    stream: &TcpStream,
    reply: Reply,
    method: &Method,
    mut keep_alive: bool,
    stall: Duration,
) -> io::Result<bool> {
    let Reply {
        status,
        mut headers,
        raw_head,
        payload,
    } = reply;
    let with_body = *method != Method::HEAD && !bodiless(status);
    let length = payload.len();
    let chunked = with_body && length.is_none() && !headers.contains_key(header::CONTENT_LENGTH);
    if chunked {
        headers.remove(header::TRANSFER_ENCODING);
    }
    if let Some(n) = length
        && raw_head.is_none()
        && !bodiless(status)
        && !headers.contains_key(header::CONTENT_LENGTH)
    {
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(n));
    }
    let mut head = Vec::with_capacity(256);
    head.extend_from_slice(b"HTTP/1.1 ");
    head.extend_from_slice(status.as_str().as_bytes());
    head.push(b' ');
    head.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    head.extend_from_slice(b"\r\ndate: ");
    head.extend_from_slice(date().as_bytes());
    head.extend_from_slice(b"\r\n");
    for (name, value) in &headers {
        if name == header::CONNECTION {
            continue;
        }
        head.extend_from_slice(name.as_str().as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(value.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    if let Some(raw) = &raw_head {
        head.extend_from_slice(raw);
    }
    if chunked {
        head.extend_from_slice(b"transfer-encoding: chunked\r\n");
    }
    // Said either way: an HTTP/1.0 client keeps the connection only when told so.
    if keep_alive {
        head.extend_from_slice(b"connection: keep-alive\r\n");
    } else {
        head.extend_from_slice(b"connection: close\r\n");
    }
    head.extend_from_slice(b"\r\n");
    if !with_body {
        write_all(stream, &mut [IoSlice::new(&head)], stall).await?;
        return Ok(keep_alive);
    }
    match payload {
        Payload::Empty => write_all(stream, &mut [IoSlice::new(&head)], stall).await?,
        Payload::Bytes(b) => {
            write_all(stream, &mut [IoSlice::new(&head), IoSlice::new(&b)], stall).await?;
        }
        Payload::File { file, offset, len } => {
            send_head_more(stream, &head, stall).await?;
            crate::server::send_file(stream, &file, offset, len, stall).await?;
        }
        Payload::Stream(mut body) => {
            write_all(stream, &mut [IoSlice::new(&head)], stall).await?;
            let declared = headers
                .get(header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
            let mut sent = 0u64;
            loop {
                // A source that stops sending holds this connection no longer than a
                // client that stops reading would.
                let Ok(next) = tokio::time::timeout(stall, body.frame()).await else {
                    return Ok(false);
                };
                let Some(frame) = next else {
                    break;
                };
                let Ok(frame) = frame else {
                    // Cut short upstream: the client must see the body end early.
                    return Ok(false);
                };
                let Ok(data) = frame.into_data() else {
                    continue;
                };
                if data.is_empty() {
                    continue;
                }
                sent += data.len() as u64;
                if chunked {
                    let size = format!("{:x}\r\n", data.len());
                    write_all(
                        stream,
                        &mut [
                            IoSlice::new(size.as_bytes()),
                            IoSlice::new(&data),
                            IoSlice::new(b"\r\n"),
                        ],
                        stall,
                    )
                    .await?;
                } else {
                    write_all(stream, &mut [IoSlice::new(&data)], stall).await?;
                }
            }
            if chunked {
                write_all(stream, &mut [IoSlice::new(b"0\r\n\r\n")], stall).await?;
            } else if declared != Some(sent) {
                keep_alive = false;
            }
        }
    }
    Ok(keep_alive)
}

/// Waits until the socket takes more, failing after `stall` without progress.
async fn writable(stream: &TcpStream, stall: Duration) -> io::Result<()> {
    match tokio::time::timeout(stall, stream.writable()).await {
        Ok(r) => r,
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "the client stopped reading",
        )),
    }
}

async fn write_all(
    stream: &TcpStream,
    mut parts: &mut [IoSlice<'_>],
    stall: Duration,
) -> io::Result<()> {
    while !parts.is_empty() {
        match stream.try_write_vectored(parts) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut parts, n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => writable(stream, stall).await?,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Sends a response head flagged MSG_MORE: the kernel holds it to leave with the first
/// bytes of the file that follows.
async fn send_head_more(stream: &TcpStream, head: &[u8], stall: Duration) -> io::Result<()> {
    let mut sent = 0;
    while sent < head.len() {
        let step = stream.try_io(Interest::WRITABLE, || {
            Ok(rustix::net::send(
                stream,
                &head[sent..],
                rustix::net::SendFlags::MORE,
            )?)
        });
        match step {
            Ok(n) => sent += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => writable(stream, stall).await?,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both ends of a loopback TCP connection: the client's, then the accepted one.
    async fn connected_pair() -> (TcpStream, TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let client = TcpStream::connect(listener.local_addr().expect("addr"))
            .await
            .expect("connect");
        let (accepted, _) = listener.accept().await.expect("accept");
        (client, accepted)
    }

    /// A relayed body that sends its first bytes, then nothing more, ever.
    struct Stalls(Option<Bytes>);

    impl axum::body::HttpBody for Stalls {
        type Data = Bytes;
        type Error = io::Error;

        fn poll_frame(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, io::Error>>> {
            match self.0.take() {
                Some(b) => std::task::Poll::Ready(Some(Ok(hyper::body::Frame::data(b)))),
                None => std::task::Poll::Pending,
            }
        }
    }

    #[tokio::test]
    async fn a_relayed_body_that_stops_coming_ends_the_response_within_the_stall_bound() {
        let (mut client, server) = connected_pair().await;
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(10));
        let reply = Reply {
            status: StatusCode::OK,
            headers,
            raw_head: None,
            payload: Payload::Stream(axum::body::Body::new(Stalls(Some(Bytes::from_static(
                b"first",
            ))))),
        };
        let written = tokio::time::timeout(
            Duration::from_secs(10),
            write_reply(
                &server,
                reply,
                &Method::GET,
                true,
                Duration::from_millis(200),
            ),
        )
        .await
        .expect("ended within the stall bound")
        .expect("written");
        assert!(!written, "the connection cannot carry another response");
        drop(server);
        let mut got = Vec::new();
        tokio::io::AsyncReadExt::read_to_end(&mut client, &mut got)
            .await
            .expect("read");
        assert!(
            got.ends_with(b"\r\n\r\nfirst"),
            "{:?}",
            String::from_utf8_lossy(&got)
        );
    }

    #[test]
    fn heads_parse_whole_or_not_at_all() {
        let raw = b"GET /group1/M00/00/00/a.jpg?w=1 HTTP/1.1\r\nHost: x\r\nRange: bytes=0-1\r\n\r\nGET /next";
        let (head, used) = parse_head(raw).expect("valid").expect("whole");
        assert_eq!(&raw[used..], b"GET /next");
        assert_eq!(head.request.method, Method::GET);
        assert_eq!(head.request.uri.path(), "/group1/M00/00/00/a.jpg");
        assert_eq!(head.request.uri.query(), Some("w=1"));
        assert_eq!(head.request.headers[header::RANGE], "bytes=0-1");
        assert!(head.version_11);
        assert_eq!(head.body_len, 0);
        assert!(parse_head(&raw[..20]).expect("valid so far").is_none());
        assert_eq!(
            parse_head(b"GET / HTTP/1.1\r\nbad header\r\n\r\n").err(),
            Some(StatusCode::BAD_REQUEST)
        );
        assert_eq!(
            parse_head(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n").err(),
            Some(StatusCode::BAD_REQUEST)
        );
        assert_eq!(
            parse_head(b"GET / HTTP/1.1\r\nContent-Length: x\r\n\r\n").err(),
            Some(StatusCode::BAD_REQUEST)
        );
        // Two lengths (the second body would be read as the next request), or a sign.
        for lengths in [
            "Content-Length: 0\r\nContent-Length: 20",
            "Content-Length: +5",
        ] {
            let raw = format!("GET / HTTP/1.1\r\n{lengths}\r\n\r\n");
            assert_eq!(
                parse_head(raw.as_bytes()).err(),
                Some(StatusCode::BAD_REQUEST),
                "{lengths}"
            );
        }
        let many: String = (0..MAX_HEADERS + 1)
            .map(|i| format!("h{i}: v\r\n"))
            .collect();
        assert_eq!(
            parse_head(format!("GET / HTTP/1.1\r\n{many}\r\n").as_bytes()).err(),
            Some(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE)
        );
    }

    /// A client with Nagle on that writes each request head in two pieces, as the C and
    /// Java clients write theirs: the socket is in quick-ACK mode after every read that
    /// leaves a request incomplete.
    #[tokio::test]
    async fn connections_are_in_quickack_mode_after_a_partial_request() {
        const ROUNDS: usize = 20;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (mut client, accepted) = connected_pair().await;
        client.set_nodelay(false).expect("nagle on");
        let observer = rustix::io::dup(&accepted).expect("dup");
        let deadlines = Deadlines {
            header: Duration::from_secs(5),
            stall: Duration::from_secs(5),
        };
        let served = tokio::spawn(serve(
            accepted,
            deadlines,
            CancellationToken::new(),
            move |_| {
                let armed = rustix::net::sockopt::tcp_quickack(&observer).expect("getsockopt");
                async move { Reply::text(StatusCode::OK, if armed { "1" } else { "0" }) }
            },
        ));
        let mut states = Vec::new();
        for _ in 0..ROUNDS {
            client
                .write_all(b"GET /x HTTP/1.1\r\n")
                .await
                .expect("first piece");
            client
                .write_all(b"Host: t\r\n\r\n")
                .await
                .expect("second piece");
            let mut reply = vec![0u8; 512];
            let n = client.read(&mut reply).await.expect("reply");
            let text = String::from_utf8_lossy(&reply[..n]).into_owned();
            assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
            states.push(text.ends_with("\r\n\r\n1"));
        }
        assert_eq!(states, [true; ROUNDS]);
        drop(client);
        served.await.expect("connection ends with the client");
    }

    /// Serves one connection whose handler answers every request with its path, and
    /// returns the client's end.
    async fn served_connection(header: Duration) -> (TcpStream, tokio::task::JoinHandle<()>) {
        let (client, accepted) = connected_pair().await;
        let deadlines = Deadlines {
            header,
            stall: Duration::from_secs(5),
        };
        let served = tokio::spawn(serve(
            accepted,
            deadlines,
            CancellationToken::new(),
            |request: Request| async move {
                Reply::text(StatusCode::OK, request.uri.path().to_string())
            },
        ));
        (client, served)
    }

    /// Everything the server sends until it closes the connection.
    async fn read_to_close(client: &mut TcpStream) -> String {
        use tokio::io::AsyncReadExt;
        let mut all = Vec::new();
        client.read_to_end(&mut all).await.expect("read");
        String::from_utf8_lossy(&all).into_owned()
    }

    #[tokio::test]
    async fn small_bodies_are_skipped_and_the_next_request_served() {
        use tokio::io::AsyncWriteExt;
        let (mut client, served) = served_connection(Duration::from_secs(5)).await;
        let body = vec![b'x'; 1000];
        let mut sent = b"POST /first HTTP/1.1\r\nContent-Length: 1000\r\n\r\n".to_vec();
        sent.extend_from_slice(&body);
        sent.extend_from_slice(b"GET /second HTTP/1.1\r\nConnection: close\r\n\r\n");
        client.write_all(&sent).await.expect("send");
        let text = read_to_close(&mut client).await;
        let answers: Vec<&str> = text.split("HTTP/1.1 ").skip(1).collect();
        assert_eq!(answers.len(), 2, "{text}");
        assert!(answers[0].starts_with("200 OK") && answers[0].ends_with("/first"));
        assert!(answers[1].starts_with("200 OK") && answers[1].ends_with("/second"));
        served.await.expect("served");
    }

    #[tokio::test]
    async fn large_bodies_get_413_and_the_connection_ends() {
        use tokio::io::AsyncWriteExt;
        let (mut client, served) = served_connection(Duration::from_secs(5)).await;
        let head = format!(
            "PUT /big HTTP/1.1\r\nContent-Length: {}\r\n\r\n",
            MAX_SKIPPED_BODY + 1
        );
        client.write_all(head.as_bytes()).await.expect("send");
        // Part of the body is sent and never read: the answer must still arrive whole.
        client.write_all(&[b'x'; 10_000]).await.expect("send");
        let text = read_to_close(&mut client).await;
        assert!(
            text.starts_with("HTTP/1.1 413 Payload Too Large\r\n"),
            "{text}"
        );
        assert!(!text.contains("/big"), "the handler never ran: {text}");
        drop(client);
        served.await.expect("served");
    }

    #[tokio::test]
    async fn oversized_heads_get_431() {
        use tokio::io::AsyncWriteExt;
        let (mut client, served) = served_connection(Duration::from_secs(5)).await;
        let head = format!("GET /x HTTP/1.1\r\nX-Long: {}\r\n", "a".repeat(MAX_HEAD));
        client.write_all(head.as_bytes()).await.expect("send");
        let text = read_to_close(&mut client).await;
        assert!(
            text.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"),
            "{text}"
        );
        drop(client);
        served.await.expect("served");
    }

    #[tokio::test]
    async fn a_head_cut_short_gets_408_and_a_silent_connection_is_closed() {
        use tokio::io::AsyncWriteExt;
        let deadline = Duration::from_millis(200);
        let (mut client, served) = served_connection(deadline).await;
        client
            .write_all(b"GET /slow HTTP/1.1\r\nHo")
            .await
            .expect("send");
        let text = read_to_close(&mut client).await;
        assert!(
            text.starts_with("HTTP/1.1 408 Request Timeout\r\n"),
            "{text}"
        );
        drop(client);
        served.await.expect("served");

        let (mut client, served) = served_connection(deadline).await;
        assert_eq!(
            read_to_close(&mut client).await,
            "",
            "idle: closed without a word"
        );
        served.await.expect("served");
    }

    #[test]
    fn keep_alive_follows_the_version_and_connection_header() {
        let with = |v: &'static str| {
            let mut h = HeaderMap::new();
            h.insert(header::CONNECTION, HeaderValue::from_static(v));
            h
        };
        assert!(wants_keep_alive(&HeaderMap::new(), true));
        assert!(!wants_keep_alive(&with("Close"), true));
        assert!(!wants_keep_alive(&HeaderMap::new(), false));
        assert!(wants_keep_alive(&with("Keep-Alive"), false));
        assert!(!wants_keep_alive(&with("upgrade, close"), true));
    }
}
