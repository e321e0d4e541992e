//! Files uploaded a moment ago to another member of the group: until the copy arrives, a
//! request here is answered from the file's source member, by proxy or by redirect, as
//! fastdfs-nginx-module does. 404 stays for names that never were files.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Method, Request, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use hyper_util::rt::TokioIo;

use crate::config::ResponseMode;
use crate::fileid::RemoteName;
use crate::storage::StorageNode;
use crate::storage::metrics::FreshLabels;

/// Marks a request one member makes of another on a client's behalf: the source answers
/// it from its own disk and never passes it on, so two members cannot bounce a request.
pub const PROXIED: &str = "x-fdfs-proxied";

/// Request headers that travel to the source with a proxied request.
const FORWARDED: [header::HeaderName; 5] = [
    header::RANGE,
    header::IF_RANGE,
    header::IF_NONE_MATCH,
    header::IF_MODIFIED_SINCE,
    header::ACCEPT_ENCODING,
];

/// Response headers about the hop, not the file: not passed back.
const HOP_BY_HOP: [header::HeaderName; 3] = [
    header::CONNECTION,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// The member to ask for `name`, which this storage does not hold: the file's source, when
/// it is another member and the name is recent enough for the copy to be still on its way.
pub fn source_to_ask(
    node: &StorageNode,
    name: &RemoteName,
    headers: &HeaderMap,
) -> Option<SocketAddr> {
    let http = &node.config.http;
    if http.response_mode == ResponseMode::None || headers.contains_key(PROXIED) {
        return None;
    }
    let core = name.core().ok()?;
    let age = crate::unix_now().saturating_sub(u64::from(core.timestamp));
    if age > http.fresh_file_max_age {
        return None;
    }
    let port = node.http_port.load(Ordering::Relaxed);
    let member = node.member_named_by(core.source)?;
    (port != 0).then(|| SocketAddr::new(member.ip(), port))
}

/// Answers a request for a file held by `source` only, as configured.
pub async fn answer_from(
    node: &StorageNode,
    source: SocketAddr,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
) -> Response {
    let target = uri.path_and_query().map_or("/", |p| p.as_str());
    let mode = node.config.http.response_mode;
    node.metrics
        .http_fresh_files
        .get_or_create(&FreshLabels {
            mode: match mode {
                ResponseMode::Redirect => "redirect",
                _ => "proxy",
            },
        })
        .inc();
    match mode {
        ResponseMode::Redirect => {
            let location = format!("http://{source}{target}");
            match HeaderValue::from_str(&location) {
                Ok(v) => (
                    StatusCode::FOUND,
                    [
                        (header::LOCATION, v),
                        (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
                    ],
                )
                    .into_response(),
                Err(_) => StatusCode::NOT_FOUND.into_response(),
            }
        }
        ResponseMode::Proxy | ResponseMode::None => {
            let timeout = Duration::from_secs(node.config.connect_timeout.max(1));
            match proxy(source, method, target, headers, timeout).await {
                Ok(response) => response,
                Err(e) => {
                    tracing::warn!(%source, file = target, error = %e, "cannot fetch a fresh file from its source");
                    (
                        StatusCode::BAD_GATEWAY,
                        "the file's source member did not answer\n",
                    )
                        .into_response()
                }
            }
        }
    }
}

/// One request to `source` over a fresh connection, its response streamed back.
async fn proxy(
    source: SocketAddr,
    method: &Method,
    target: &str,
    headers: &HeaderMap,
    timeout: Duration,
) -> Result<Response, String> {
    let stream = tokio::time::timeout(timeout, tokio::net::TcpStream::connect(source))
        .await
        .map_err(|_| format!("no connection within {timeout:?}"))?
        .map_err(|e| e.to_string())?;
    let _ = stream.set_nodelay(true);
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake::<_, Body>(TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
    // Drives the connection until the response body has been read.
    tokio::spawn(connection);
    let mut request = Request::builder()
        .method(method.clone())
        .uri(target)
        .header(header::HOST, source.to_string())
        .header(PROXIED, "1");
    for name in FORWARDED {
        if let Some(v) = headers.get(&name) {
            request = request.header(name, v);
        }
    }
    let request = request.body(Body::empty()).map_err(|e| e.to_string())?;
    let response = tokio::time::timeout(timeout, sender.send_request(request))
        .await
        .map_err(|_| format!("no answer within {timeout:?}"))?
        .map_err(|e| e.to_string())?;
    let (mut parts, body) = response.into_parts();
    for name in HOP_BY_HOP {
        parts.headers.remove(name);
    }
    Ok(Response::from_parts(parts, Body::new(body)))
}
