//! The storage's HTTP side: files by file ID (as fastdfs-nginx-module serves
//! them, with Range, ETag, Last-Modified and the anti-leech token), plus
//! `/healthz`, `/readyz` and `/metrics`; thumbnails of images on request.

mod fresh;
mod range;
pub mod thumbnail;
pub mod token;

use std::collections::HashMap;
use std::io::SeekFrom;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use axum::Router;
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::fileid::RemoteName;
use crate::storage::StorageNode;
use crate::storage::metrics::{DirectionLabels, HttpLabels};
use range::RangeRequest;
use thumbnail::{Thumbnails, Wanted};

/// Files up to this size are read in one step; larger ones are streamed.
const READ_WHOLE: u64 = 256 * 1024;
/// Chunk size of streamed bodies.
const STREAM_CHUNK: usize = 256 * 1024;

/// Serves HTTP on `listener` until `stop`, with the protocol port's connection cap,
/// `network_timeout` and `allow_hosts`.
pub async fn serve(listener: TcpListener, node: Arc<StorageNode>, stop: CancellationToken) {
    let limits = crate::server::http::limits(
        node.config.max_connections,
        node.config.timeouts(),
        node.acl.clone(),
    );
    crate::server::http::serve(listener, router(node), limits, stop, Duration::from_secs(5)).await;
}

/// What the HTTP side serves from: the storage and its thumbnail maker.
#[derive(Debug)]
struct Edge {
    node: Arc<StorageNode>,
    thumbnails: Thumbnails,
}

/// The storage's routes.
pub fn router(node: Arc<StorageNode>) -> Router {
    let thumbnails = Thumbnails::new(node.config.http.thumbnails.clone());
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .fallback(file)
        .with_state(Arc::new(Edge { node, thumbnails }))
}

async fn readyz(State(edge): State<Arc<Edge>>) -> Response {
    let node = &edge.node;
    let (ready, text) = node.readiness();
    if ready {
        (StatusCode::OK, text).into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, text).into_response()
    }
}

async fn metrics(State(edge): State<Arc<Edge>>) -> Response {
    let node = edge.node.clone();
    // Disk space and binlog sizes are read from the file system.
    let Ok(text) = tokio::task::spawn_blocking(move || node.render_metrics()).await else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    let mut r = text.into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    r
}

fn plain(code: StatusCode, text: &str) -> Response {
    (code, format!("{text}\n")).into_response()
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
    let name = RemoteName::parse(remote).map_err(|_| (StatusCode::BAD_REQUEST, "bad file path"))?;
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
    builder: axum::http::response::Builder,
    method: &Method,
    file: std::fs::File,
    size: u64,
    content_type: &str,
    parts: &[(u64, u64)],
) -> Response {
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
    let builder = builder
        .status(StatusCode::PARTIAL_CONTENT)
        .header(
            header::CONTENT_TYPE,
            format!("multipart/byteranges; boundary={boundary}"),
        )
        .header(header::CONTENT_LENGTH, length);
    if method == Method::HEAD {
        return builder.body(Body::empty()).unwrap_or_default();
    }
    let parts = parts.to_vec();
    let read = crate::disk::run(move || -> std::io::Result<Vec<u8>> {
        let mut body = Vec::with_capacity(length as usize);
        for ((start, end), head) in parts.iter().zip(&heads) {
            body.extend_from_slice(head.as_bytes());
            let at = body.len();
            body.resize(at + (end - start + 1) as usize, 0);
            file.read_exact_at(&mut body[at..], *start)?;
        }
        body.extend_from_slice(closing.as_bytes());
        Ok(body)
    })
    .await;
    match read {
        Ok(Ok(body)) => {
            node.metrics
                .bytes
                .get_or_create(&DirectionLabels {
                    direction: "out",
                    via: "http",
                })
                .inc_by(data);
            builder.body(Body::from(body)).unwrap_or_default()
        }
        _ => plain(StatusCode::INTERNAL_SERVER_ERROR, "cannot read file"),
    }
}

struct Opened {
    file: std::fs::File,
    size: u64,
    mtime: std::time::SystemTime,
}

async fn file(
    State(edge): State<Arc<Edge>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let label = method.as_str().to_owned();
    let response = serve_file(&edge, &method, &uri, &headers, &query).await;
    edge.node
        .metrics
        .http_requests
        .get_or_create(&HttpLabels {
            method: label,
            code: response.status().as_u16(),
        })
        .inc();
    response
}

/// Opens a stored file for reading, if it is a regular file.
async fn open(path: std::path::PathBuf) -> std::io::Result<Opened> {
    crate::disk::run(move || -> std::io::Result<Opened> {
        let file = std::fs::File::open(&path)?;
        let meta = file.metadata()?;
        if !meta.is_file() {
            return Err(std::io::ErrorKind::NotFound.into());
        }
        Ok(Opened {
            file,
            size: meta.len(),
            mtime: meta.modified()?,
        })
    })
    .await
    .map_err(|_| std::io::Error::other("disk step lost"))?
}

async fn serve_file(
    edge: &Edge,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    query: &HashMap<String, String>,
) -> Response {
    let node = &edge.node;
    if method != Method::GET && method != Method::HEAD {
        return plain(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD");
    }
    let asked = match parse_path(node, uri.path()) {
        Ok(n) => n,
        Err((code, text)) => return plain(code, text),
    };
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
    let by_size = match edge.thumbnails.asked(&asked, query) {
        Ok(w) => w,
        Err(refusal) => {
            thumbnail::note(node, refusal.outcome());
            return refusal.into_response();
        }
    };
    let name = by_size.as_ref().map_or(&asked, |w| &w.slave).clone();
    let Ok(path) = node.store.file_path(&name) else {
        return plain(StatusCode::NOT_FOUND, "no such file");
    };
    let mut made: Option<Wanted> = None;
    let opened = loop {
        match open(path.clone()).await {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && made.is_none() => {
                let wanted = by_size.clone().or_else(|| edge.thumbnails.named(&name));
                let Some(wanted) = wanted else { break Err(e) };
                match edge.thumbnails.make(node, &wanted).await {
                    Ok(()) => made = Some(wanted),
                    // Not here: perhaps still on its way from its source (below).
                    Err(thumbnail::Refusal::NoMaster) => break Err(e),
                    Err(refusal) => return refusal.into_response(),
                }
            }
            other => break other,
        }
    };
    if opened.is_ok() && made.is_none() && by_size.is_some() {
        thumbnail::note(node, "stored");
    }
    let Opened { file, size, mtime } = match opened {
        Ok(o) => o,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return match fresh::source_to_ask(node, &name, headers) {
                Some(source) => fresh::answer_from(node, source, method, uri, headers).await,
                None => plain(StatusCode::NOT_FOUND, "no such file"),
            };
        }
        Err(_) => return plain(StatusCode::INTERNAL_SERVER_ERROR, "cannot read file"),
    };
    let secs = mtime
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs();
    let etag = format!("\"{secs:x}-{size:x}\"");
    let last_modified = httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(secs));
    // A file under its ID never changes, except an appender file, which grows.
    let cache = if name.core().is_ok_and(|c| c.is_appender()) {
        "no-cache"
    } else {
        "public, max-age=31536000, immutable"
    };
    let mut builder = Response::builder()
        .header(header::ETAG, &etag)
        .header(header::LAST_MODIFIED, &last_modified)
        .header(header::ACCEPT_RANGES, "bytes")
        .header(header::CACHE_CONTROL, cache);
    let header_text = |h: header::HeaderName| headers.get(h).and_then(|v| v.to_str().ok());
    let not_modified = match header_text(header::IF_NONE_MATCH) {
        Some(tags) => tags.split(',').any(|t| t.trim() == etag || t.trim() == "*"),
        None => header_text(header::IF_MODIFIED_SINCE)
            .and_then(|d| httpdate::parse_http_date(d).ok())
            .is_some_and(|since| UNIX_EPOCH + Duration::from_secs(secs) <= since),
    };
    if not_modified {
        return builder
            .status(StatusCode::NOT_MODIFIED)
            .body(Body::empty())
            .unwrap_or_default();
    }
    let content_type = Path::new(&name.name)
        .extension()
        .and_then(|e| mime_guess::from_ext(&e.to_string_lossy()).first_raw())
        .unwrap_or("application/octet-stream");
    builder = builder.header(header::CONTENT_TYPE, content_type);
    if let Some(v) = query.get("filename").and_then(|n| content_disposition(n)) {
        builder = builder.header(header::CONTENT_DISPOSITION, v);
    }
    // If-Range with a different validator means "send it all".
    let range_header = match header_text(header::IF_RANGE) {
        Some(v) if v != etag && v != last_modified => None,
        _ => header_text(header::RANGE),
    };
    let (status, start, len) = match range::parse(range_header, size) {
        RangeRequest::Full => (StatusCode::OK, 0, size),
        RangeRequest::Parts(parts) => {
            return multipart(node, builder, method, file, size, content_type, &parts).await;
        }
        RangeRequest::Part { start, end } => {
            builder = builder.header(header::CONTENT_RANGE, format!("bytes {start}-{end}/{size}"));
            (StatusCode::PARTIAL_CONTENT, start, end - start + 1)
        }
        RangeRequest::Unsatisfiable => {
            return builder
                .status(StatusCode::RANGE_NOT_SATISFIABLE)
                .header(header::CONTENT_RANGE, format!("bytes */{size}"))
                .body(Body::empty())
                .unwrap_or_default();
        }
    };
    builder = builder.status(status).header(header::CONTENT_LENGTH, len);
    if method == Method::HEAD {
        return builder.body(Body::empty()).unwrap_or_default();
    }
    node.metrics
        .bytes
        .get_or_create(&DirectionLabels {
            direction: "out",
            via: "http",
        })
        .inc_by(len);
    let body = if len <= READ_WHOLE {
        let read = crate::disk::run(move || {
            let mut buf = vec![0u8; len as usize];
            file.read_exact_at(&mut buf, start).map(|_| buf)
        })
        .await;
        match read {
            Ok(Ok(buf)) => Body::from(buf),
            _ => return plain(StatusCode::INTERNAL_SERVER_ERROR, "cannot read file"),
        }
    } else {
        let mut f = tokio::fs::File::from_std(file);
        if f.seek(SeekFrom::Start(start)).await.is_err() {
            return plain(StatusCode::INTERNAL_SERVER_ERROR, "cannot read file");
        }
        Body::from_stream(tokio_util::io::ReaderStream::with_capacity(
            f.take(len),
            STREAM_CHUNK,
        ))
    };
    builder.body(body).unwrap_or_default()
}
