//! The storage's HTTP side: files by file ID (as fastdfs-nginx-module serves
//! them, with Range, ETag, Last-Modified and the anti-leech token), plus
//! `/healthz`, `/readyz` and `/metrics`; thumbnails of images on request.
//!
//! A file is opened, checked and (when small) read on the connection's task when the
//! kernel can do so from its caches (`openat2` with `RESOLVE_CACHED`, `preadv2` with
//! `RWF_NOWAIT`); only what needs the disk goes to the disk threads. Larger bodies leave
//! by sendfile(2).

mod cache;
pub mod conn;
mod fresh;
mod range;
pub mod thumbnail;
pub mod token;

use std::collections::HashMap;

use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::http::{HeaderValue, Method, StatusCode, Uri, header};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::disk::OpenedFile;
use crate::fileid::RemoteName;
use crate::storage::StorageNode;
use crate::storage::metrics::{DirectionLabels, HttpLabels};
use cache::{FileCache, Lookup};
use conn::{Deadlines, Payload, Reply, Request};
use range::RangeRequest;
use thumbnail::{Thumbnails, Wanted};

/// Cache-Control of a file under its ID, which never changes (appender files aside).
const IMMUTABLE: &str = "public, max-age=31536000, immutable";

/// Bodies up to this size are read and written with their head in one call; larger ones
/// go by sendfile(2).
const READ_WHOLE: u64 = 16 * 1024;

/// Serves HTTP on `listener` until `stop`, with the protocol port's connection cap,
/// `network_timeout` and `allow_hosts`.
pub async fn serve(listener: TcpListener, node: Arc<StorageNode>, stop: CancellationToken) {
    let limits = crate::server::http::limits(
        node.config.max_connections,
        node.config.timeouts(),
        node.acl.clone(),
    );
    let deadlines = Deadlines {
        header: limits.header_timeout,
        stall: limits.stall_timeout,
    };
    let thumbnails = Thumbnails::new(node.config.http.thumbnails.clone());
    let cache = FileCache::new(
        node.config.http.cache_bytes,
        node.config.http.cache_max_file,
    );
    let drain = node.config.timers.http_drain();
    let edge = Arc::new(Edge {
        node,
        thumbnails,
        cache,
    });
    crate::server::http::accept_loop(
        listener,
        &limits,
        stop,
        drain,
        move |stream, allowed, stop| {
            let edge = edge.clone();
            conn::serve(stream, deadlines, stop, move |request| {
                let edge = edge.clone();
                async move { respond(&edge, request, allowed).await }
            })
        },
    )
    .await;
}

/// What the HTTP side serves from: the storage and its thumbnail maker.
#[derive(Debug)]
struct Edge {
    node: Arc<StorageNode>,
    thumbnails: Thumbnails,
    cache: FileCache,
}

/// Answers one request; clients outside `allow_hosts` get the probes and metrics only.
async fn respond(edge: &Edge, request: Request, allowed: bool) -> Reply {
    let node = &edge.node;
    match request.uri.path() {
        "/healthz" => Reply::text(StatusCode::OK, "ok\n"),
        "/readyz" => {
            let (ready, text) = node.readiness();
            let status = if ready {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            Reply::text(status, text)
        }
        "/metrics" => metrics(node.clone()).await,
        _ if !allowed => Reply::text(
            StatusCode::FORBIDDEN,
            "this address is not in allow_hosts\n",
        ),
        _ => {
            let reply = match kept_whole(edge, &request) {
                Ok(reply) => reply,
                Err(looked) => serve_file(edge, &request, looked).await,
            };
            let method = match request.method {
                Method::GET => "GET",
                Method::HEAD => "HEAD",
                _ => "other",
            };
            node.metrics
                .http_requests
                .get_or_create(&HttpLabels {
                    method,
                    code: reply.status.as_u16(),
                })
                .inc();
            reply
        }
    }
}

/// The whole of a file kept in memory, for a plain GET or HEAD of its URL (no query,
/// range or condition, no token to check): its head made once, its bytes shared.
/// Otherwise what the cache said of the URL, if it was asked, for `serve_file` to use.
fn kept_whole(edge: &Edge, request: &Request) -> Result<Reply, Option<Lookup>> {
    let plain_get = matches!(request.method, Method::GET | Method::HEAD)
        && request.uri.query().is_none()
        && !edge.node.config.http.check_token
        && [
            header::RANGE,
            header::IF_NONE_MATCH,
            header::IF_MODIFIED_SINCE,
            header::IF_RANGE,
        ]
        .iter()
        .all(|h| !request.headers.contains_key(h));
    if !plain_get {
        return Err(None);
    }
    let entry = match edge.cache.lookup(&edge.node, request.uri.path()) {
        Lookup::Fresh(entry) => entry,
        other => return Err(Some(other)),
    };
    let mut reply = Reply::new(StatusCode::OK);
    reply.raw_head = Some(entry.head.clone());
    if request.method == Method::GET {
        count_out(&edge.node, entry.data.len() as u64);
        reply.payload = Payload::Bytes(entry.data.clone());
    }
    Ok(reply)
}

async fn metrics(node: Arc<StorageNode>) -> Reply {
    // Disk space and binlog sizes are read from the file system.
    let Ok(text) = crate::disk::run(move || node.render_metrics()).await else {
        return Reply::new(StatusCode::INTERNAL_SERVER_ERROR);
    };
    Reply::new(StatusCode::OK)
        .header(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
        )
        .body(Payload::Bytes(Bytes::from(text)))
}

fn plain(code: StatusCode, text: &str) -> Reply {
    Reply::text(code, format!("{text}\n"))
}

/// The query's pairs, percent-decoded; the last of a repeated key wins.
fn query_pairs(uri: &Uri) -> HashMap<String, String> {
    uri.query()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default()
}

/// Splits `/[group/]Mxx/HH/LL/name` and checks it names a file of this group.
fn parse_path(node: &StorageNode, raw: &str) -> Result<RemoteName, (StatusCode, &'static str)> {
    // No file ID needs percent-encoding, so any escape (`%2e%2e`, `%2f`, `%00`) is refused.
    if raw.contains('%') || raw.contains('\\') || raw.len() > 256 {
        return Err((StatusCode::BAD_REQUEST, "bad file path"));
    }
    let path = raw.strip_prefix('/').unwrap_or(raw);
    let remote = match path.split_once('/') {
        Some((first, rest)) if !(first.len() == 3 && first.starts_with('M')) => {
            if first != node.config.group_name {
                return Err((StatusCode::NOT_FOUND, "no such file in this group"));
            }
            rest
        }
        _ => path,
    };
    let name =
        RemoteName::parse_file(remote).map_err(|_| (StatusCode::BAD_REQUEST, "bad file path"))?;
    // `<name>-m` holds a file's metadata, not a file (no valid file name ends so: the slave
    // prefix `-m` without an extension is refused for this reason).
    if name.name.ends_with("-m") {
        return Err((StatusCode::NOT_FOUND, "no such file"));
    }
    Ok(name)
}

/// Quotes a download name for Content-Disposition, with an RFC 5987 copy for non-ASCII.
fn content_disposition(name: &str) -> Option<HeaderValue> {
    let ascii: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let encoded: String = name
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    HeaderValue::from_str(&format!(
        "attachment; filename=\"{ascii}\"; filename*=UTF-8''{encoded}"
    ))
    .ok()
}

/// A `multipart/byteranges` answer: each range with its own Content-Type and
/// Content-Range, read in one disk step (multi-range bodies are capped in size).
async fn multipart(
    node: &StorageNode,
    mut reply: Reply,
    method: &Method,
    content: Content,
    size: u64,
    content_type: &str,
    parts: &[(u64, u64)],
) -> Reply {
    let boundary = format!("fdfs-{:016x}", rand::random::<u64>());
    let heads: Vec<String> = parts
        .iter()
        .map(|(start, end)| {
            format!(
                "\r\n--{boundary}\r\nContent-Type: {content_type}\r\n\
                 Content-Range: bytes {start}-{end}/{size}\r\n\r\n"
            )
        })
        .collect();
    let closing = format!("\r\n--{boundary}--\r\n");
    let data: u64 = parts.iter().map(|(s, e)| e - s + 1).sum();
    let length = data + heads.iter().map(|h| h.len() as u64).sum::<u64>() + closing.len() as u64;
    reply.status = StatusCode::PARTIAL_CONTENT;
    if let Ok(v) = HeaderValue::from_str(&format!("multipart/byteranges; boundary={boundary}")) {
        reply.headers.insert(header::CONTENT_TYPE, v);
    }
    reply
        .headers
        .insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    if method == Method::HEAD {
        return reply;
    }
    let parts = parts.to_vec();
    let assemble =
        move |read_at: &dyn Fn(&mut [u8], u64) -> std::io::Result<()>| -> std::io::Result<Vec<u8>> {
            let mut body = Vec::with_capacity(length as usize);
            for ((start, end), head) in parts.iter().zip(&heads) {
                body.extend_from_slice(head.as_bytes());
                let at = body.len();
                body.resize(at + (end - start + 1) as usize, 0);
                read_at(&mut body[at..], *start)?;
            }
            body.extend_from_slice(closing.as_bytes());
            Ok(body)
        };
    let read = match content {
        Content::Kept(entry) => Ok(assemble(&|buf: &mut [u8], at: u64| {
            let at = at as usize;
            buf.copy_from_slice(&entry.data[at..at + buf.len()]);
            Ok(())
        })),
        Content::Open(o) => {
            let (file, base) = (o.file.clone(), o.base);
            crate::disk::run(move || {
                assemble(&|buf: &mut [u8], at: u64| file.read_exact_at(buf, base + at))
            })
            .await
        }
        Content::Disk(o) => {
            crate::disk::run(move || {
                assemble(&|buf: &mut [u8], at: u64| o.file.read_exact_at(buf, o.base + at))
            })
            .await
        }
    };
    match read {
        Ok(Ok(body)) => {
            count_out(node, data);
            reply.body(Payload::Bytes(Bytes::from(body)))
        }
        _ => plain(StatusCode::INTERNAL_SERVER_ERROR, "cannot read file"),
    }
}

fn count_out(node: &StorageNode, bytes: u64) {
    node.metrics
        .bytes
        .get_or_create(&DirectionLabels {
            direction: "out",
            via: "http",
        })
        .inc_by(bytes);
}

/// Answers a request for a file; `looked` is the cache's answer for the URL's path when
/// it was asked already.
async fn serve_file(edge: &Edge, request: &Request, looked: Option<Lookup>) -> Reply {
    let node = &edge.node;
    let (method, uri, headers) = (&request.method, &request.uri, &request.headers);
    if method != Method::GET && method != Method::HEAD {
        return plain(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD")
            .header(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
    }
    let asked = match parse_path(node, uri.path()) {
        Ok(n) => n,
        Err((code, text)) => return plain(code, text),
    };
    let query = query_pairs(uri);
    let http = &node.config.http;
    // The token covers every form of the URL, thumbnails included.
    if http.check_token {
        let checked = token::check(
            &asked.to_string(),
            &http.secret_key,
            http.token_ttl,
            query.get("token").map(String::as_str),
            query.get("ts").map(String::as_str),
            crate::unix_now(),
        );
        if let Err(why) = checked {
            tracing::debug!(file = %asked, ?why, "token refused");
            return plain(StatusCode::FORBIDDEN, "invalid or expired token");
        }
    }
    // `?w=&h=&fit=` asks for a thumbnail of the file: the slave file that holds it.
    let by_size = match edge.thumbnails.asked(&asked, &query) {
        Ok(w) => w,
        Err(refusal) => {
            thumbnail::note(node, refusal.outcome());
            return refusal.into_reply();
        }
    };
    let name = by_size.as_ref().map_or(&asked, |w| &w.slave).clone();
    if node.disk.store().file_path(&name).is_err() {
        return plain(StatusCode::NOT_FOUND, "no such file");
    }
    let appender = name.core().is_ok_and(|c| c.is_appender());
    // Kept under the URL's path, so a later request for it is answered before any parsing;
    // a thumbnail asked for by size under its own URL (`/<group>/<slave>`).
    let slave_key;
    let key = match &by_size {
        Some(w) => {
            slave_key = format!("/{}/{}", node.config.group_name, w.slave);
            slave_key.as_str()
        }
        None => uri.path(),
    };
    // Read before the file is: a removal after this makes the kept copy checked again.
    let removals = node.disk.store().removals();
    let mut kept = None;
    if !appender {
        let looked = match looked {
            // Asked under the same key: the URL's path, no thumbnail by size.
            Some(l) if by_size.is_none() => l,
            _ => edge.cache.lookup(node, key),
        };
        match looked {
            Lookup::Fresh(entry) => kept = Some(entry),
            Lookup::Recheck(entry) => match node.disk.store().open_file(&name).await {
                Ok(o)
                    if (o.ino, o.size, o.mtime)
                        == (entry.ino, entry.data.len() as u64, entry.mtime) =>
                {
                    edge.cache.confirm(&entry, removals);
                    kept = Some(entry);
                }
                _ => edge.cache.forget(key),
            },
            Lookup::Missing => {}
        }
    }
    let kept_open = match kept {
        None if !appender => edge.cache.lookup_open(node, key),
        _ => None,
    };
    let content = match (kept, kept_open) {
        (Some(entry), _) => Content::Kept(entry),
        (None, Some(open)) => Content::Open(open),
        (None, None) => match open_or_make(edge, &name, by_size.as_ref()).await {
            Ok((opened, made)) => {
                if by_size.is_some() && !made {
                    thumbnail::note(node, "stored");
                }
                Content::Disk(opened)
            }
            Err(OpenFailure::Missing) => {
                return match fresh::source_to_ask(node, &name, headers) {
                    Some(source) => {
                        Reply::relay(fresh::answer_from(node, source, method, uri, headers).await)
                    }
                    None => plain(StatusCode::NOT_FOUND, "no such file"),
                };
            }
            Err(OpenFailure::Refused(refusal)) => return refusal.into_reply(),
            Err(OpenFailure::Io(e)) => {
                tracing::warn!(file = %name, error = %e, "cannot open a file to serve");
                return plain(StatusCode::INTERNAL_SERVER_ERROR, "cannot read file");
            }
        },
    };
    let size = content.size();
    let validators = match &content {
        Content::Kept(entry) => {
            if by_size.is_some() {
                thumbnail::note(node, "stored");
            }
            entry.validators.clone()
        }
        Content::Open(o) => o.validators.clone(),
        Content::Disk(o) => Validators::of(o.size, o.mtime),
    };
    let (etag, last_modified) = (validators.etag_text(), validators.last_modified_text());
    let secs = validators.secs;
    // A file under its ID never changes, except an appender file, which grows.
    let cache = if name.core().is_ok_and(|c| c.is_appender()) {
        "no-cache"
    } else {
        IMMUTABLE
    };
    let value = |text: &str| HeaderValue::from_str(text).unwrap_or(HeaderValue::from_static(""));
    let mut reply = Reply::new(StatusCode::OK)
        .header(header::ETAG, validators.etag.clone())
        .header(header::LAST_MODIFIED, validators.last_modified.clone())
        .header(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"))
        .header(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    let header_text = |h: header::HeaderName| headers.get(h).and_then(|v| v.to_str().ok());
    let not_modified = match header_text(header::IF_NONE_MATCH) {
        // Weak comparison (RFC 9110 §13.1.2): a proxy that changed the encoding marks
        // the tag weak, and it still names this file.
        Some(tags) => tags.split(',').any(|t| {
            let t = t.trim();
            t == "*" || t.strip_prefix("W/").unwrap_or(t) == etag
        }),
        None => header_text(header::IF_MODIFIED_SINCE)
            .and_then(|d| httpdate::parse_http_date(d).ok())
            .is_some_and(|since| UNIX_EPOCH + Duration::from_secs(secs) <= since),
    };
    if not_modified {
        reply.status = StatusCode::NOT_MODIFIED;
        return reply;
    }
    let content_type = Path::new(&name.name)
        .extension()
        .and_then(|e| mime_guess::from_ext(&e.to_string_lossy()).first_raw())
        .unwrap_or("application/octet-stream");
    reply = reply.header(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Some(v) = query.get("filename").and_then(|n| content_disposition(n)) {
        reply = reply.header(header::CONTENT_DISPOSITION, v);
    }
    // If-Range with a different validator means "send it all".
    let range_header = match header_text(header::IF_RANGE) {
        Some(v) if v != etag && v != last_modified => None,
        _ => header_text(header::RANGE),
    };
    let (status, start, len) = match range::parse(range_header, size) {
        RangeRequest::Full => (StatusCode::OK, 0, size),
        RangeRequest::Parts(parts) => {
            return multipart(node, reply, method, content, size, content_type, &parts).await;
        }
        RangeRequest::Part { start, end } => {
            reply = reply.header(
                header::CONTENT_RANGE,
                value(&format!("bytes {start}-{end}/{size}")),
            );
            (StatusCode::PARTIAL_CONTENT, start, end - start + 1)
        }
        RangeRequest::Unsatisfiable => {
            reply.status = StatusCode::RANGE_NOT_SATISFIABLE;
            // An answer about the request, not the file: nothing for caches to keep.
            for h in [header::CACHE_CONTROL, header::ETAG, header::LAST_MODIFIED] {
                reply.headers.remove(h);
            }
            return reply
                .header(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))
                .header(header::CONTENT_RANGE, value(&format!("bytes */{size}")))
                .header(header::CONTENT_LENGTH, HeaderValue::from(0u64));
        }
    };
    reply.status = status;
    reply = reply.header(header::CONTENT_LENGTH, HeaderValue::from(len));
    if method == Method::HEAD {
        return reply;
    }
    count_out(node, len);
    let span = start as usize..(start + len) as usize;
    let payload = match content {
        Content::Kept(entry) => Payload::Bytes(entry.data.slice(span)),
        // A small file is read whole and kept, whatever part of it was asked for.
        Content::Disk(o) if !appender && edge.cache.takes(size) => {
            match crate::disk::read_cached(o.file, o.base, size).await {
                Ok(buf) => {
                    let data = Bytes::from(buf);
                    edge.cache.keep(
                        key,
                        data.clone(),
                        validators,
                        content_type,
                        o.mtime,
                        o.ino,
                        removals,
                    );
                    Payload::Bytes(data.slice(span))
                }
                Err(_) => return plain(StatusCode::INTERNAL_SERVER_ERROR, "cannot read file"),
            }
        }
        Content::Open(o) if len <= READ_WHOLE => {
            match crate::disk::read_cached(o.file.clone(), o.base + start, len).await {
                Ok(buf) => Payload::Bytes(Bytes::from(buf)),
                Err(_) => return plain(StatusCode::INTERNAL_SERVER_ERROR, "cannot read file"),
            }
        }
        Content::Open(o) => Payload::File {
            file: o.file.clone(),
            offset: o.base + start,
            len,
        },
        Content::Disk(o) if len <= READ_WHOLE => {
            match crate::disk::read_cached(o.file, o.base + start, len).await {
                Ok(buf) => Payload::Bytes(Bytes::from(buf)),
                Err(_) => return plain(StatusCode::INTERNAL_SERVER_ERROR, "cannot read file"),
            }
        }
        Content::Disk(o) => {
            let file = Arc::new(o.file);
            if !appender {
                edge.cache
                    .keep_open(key, file.clone(), o.base, o.size, validators, removals);
            }
            Payload::File {
                file,
                offset: o.base + start,
                len,
            }
        }
    };
    reply.body(payload)
}

/// Where a response's bytes come from.
enum Content {
    Kept(Arc<cache::Entry>),
    Open(Arc<cache::OpenEntry>),
    Disk(OpenedFile),
}

impl Content {
    fn size(&self) -> u64 {
        match self {
            Content::Kept(e) => e.data.len() as u64,
            Content::Open(o) => o.size,
            Content::Disk(o) => o.size,
        }
    }
}

/// A file version's ETag and Last-Modified (whole seconds), as header values.
#[derive(Debug, Clone)]
pub struct Validators {
    pub secs: u64,
    pub etag: HeaderValue,
    pub last_modified: HeaderValue,
}

impl Validators {
    pub fn of(size: u64, mtime: SystemTime) -> Self {
        let secs = mtime
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO)
            .as_secs();
        let value =
            |text: String| HeaderValue::from_str(&text).unwrap_or(HeaderValue::from_static(""));
        Validators {
            secs,
            etag: value(format!("\"{secs:x}-{size:x}\"")),
            last_modified: value(httpdate::fmt_http_date(
                UNIX_EPOCH + Duration::from_secs(secs),
            )),
        }
    }

    fn etag_text(&self) -> &str {
        self.etag.to_str().unwrap_or("")
    }

    fn last_modified_text(&self) -> &str {
        self.last_modified.to_str().unwrap_or("")
    }
}

/// Why a file could not be opened for an answer.
enum OpenFailure {
    /// Not on this storage (nor made here, for a thumbnail).
    Missing,
    /// A thumbnail that is not made, with the answer that says why.
    Refused(thumbnail::Refusal),
    Io(std::io::Error),
}

/// Opens `name`; when it is a thumbnail not made yet (asked for `by_size`, or by its
/// slave name), makes it first (then `true` comes with the file when this request made it).
async fn open_or_make(
    edge: &Edge,
    name: &RemoteName,
    by_size: Option<&Wanted>,
) -> Result<(OpenedFile, bool), OpenFailure> {
    let open = |name: &RemoteName| {
        let name = name.clone();
        async move {
            edge.node
                .disk
                .store()
                .open_file(&name)
                .await
                .map_err(|e| match e.kind() {
                    std::io::ErrorKind::NotFound => OpenFailure::Missing,
                    _ => OpenFailure::Io(e),
                })
        }
    };
    match open(name).await {
        Err(OpenFailure::Missing) => {
            let Some(wanted) = by_size.cloned().or_else(|| edge.thumbnails.named(name)) else {
                return Err(OpenFailure::Missing);
            };
            match edge.thumbnails.make(&edge.node, &wanted).await {
                Ok(made) => Ok((open(name).await?, made == thumbnail::Made::Now)),
                // Not here: perhaps still on its way from its source.
                Err(thumbnail::Refusal::NoMaster) => Err(OpenFailure::Missing),
                Err(refusal) => Err(OpenFailure::Refused(refusal)),
            }
        }
        other => other.map(|o| (o, false)),
    }
}
