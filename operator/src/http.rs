//! The operator's HTTP endpoints: `/metrics` (Prometheus text format) and `/healthz`, which
//! fails while the controllers' watches keep failing.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::registry::Registry;

use crate::health::WatchHealth;

/// Content type of the OpenMetrics text format `prometheus-client` writes.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// What the routes read.
#[derive(Clone)]
struct Shared {
    registry: Arc<Registry>,
    health: Arc<WatchHealth>,
}

/// The routes, serving metrics from `registry` and health from `health`.
pub fn router(registry: Arc<Registry>, health: Arc<WatchHealth>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .with_state(Shared { registry, health })
}

async fn healthz(State(shared): State<Shared>) -> impl IntoResponse {
    match shared.health.check(std::time::Instant::now()) {
        Ok(()) => (StatusCode::OK, "ok\n".to_owned()),
        Err(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n")),
    }
}

async fn metrics(State(Shared { registry, .. }): State<Shared>) -> impl IntoResponse {
    let mut text = String::new();
    match prometheus_client::encoding::text::encode(&mut text, &registry) {
        Ok(()) => (StatusCode::OK, [(header::CONTENT_TYPE, OPENMETRICS)], text).into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// Serves the routes on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    registry: Arc<Registry>,
    health: Arc<WatchHealth>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(registry, health))
        .with_graceful_shutdown(shutdown)
        .await
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;
    use crate::metrics::Metrics;

    async fn get(addr: std::net::SocketAddr, path: &str) -> String {
        let mut conn = tokio::net::TcpStream::connect(addr).await.expect("connect");
        conn.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .expect("write");
        let mut out = String::new();
        conn.read_to_string(&mut out).await.expect("read");
        out
    }

    #[tokio::test]
    async fn serves_metrics_and_health() {
        let mut registry = Registry::default();
        let metrics = Metrics::new(&mut registry);
        metrics.reconciled("FdfsCluster", std::time::Duration::from_millis(5));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let watches = Arc::new(WatchHealth::new(std::time::Duration::ZERO));
        let server = tokio::spawn(serve(
            listener,
            Arc::new(registry),
            watches.clone(),
            async {
                let _ = stopped.await;
            },
        ));
        let health = get(addr, "/healthz").await;
        assert!(health.starts_with("HTTP/1.1 200"), "{health}");
        watches.failed(std::time::Instant::now(), "connection refused");
        let health = get(addr, "/healthz").await;
        assert!(
            health.starts_with("HTTP/1.1 503") && health.contains("connection refused"),
            "{health}"
        );
        watches.delivered();
        assert!(get(addr, "/healthz").await.starts_with("HTTP/1.1 200"));
        let metrics = get(addr, "/metrics").await;
        assert!(metrics.starts_with("HTTP/1.1 200"), "{metrics}");
        assert!(
            metrics.contains("application/openmetrics-text"),
            "{metrics}"
        );
        assert!(
            metrics.contains("fdfs_operator_reconciles_total{kind=\"FdfsCluster\"} 1"),
            "{metrics}"
        );
        let _ = stop.send(());
        server.await.expect("task").expect("served");
    }
}
