//! `/healthz` follows the controllers' watches: an API server that refuses every watch makes
//! it fail, and nothing else does.

use std::sync::Arc;
use std::time::{Duration, Instant};

use fdfs_operator::controller::{self, Config, Context};
use fdfs_operator::metrics::Metrics;
use http::{Request, Response};
use kube::client::Body;
use tower_test::mock;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watches_refused_by_the_api_server_make_the_operator_unhealthy() {
    let (service, mut handle) = mock::pair::<Request<Body>, Response<Body>>();
    // Every request is refused, as after the operator's permissions were taken away.
    let paths = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = paths.clone();
    let api = tokio::spawn(async move {
        while let Some((request, reply)) = handle.next_request().await {
            seen.lock()
                .expect("paths")
                .push(request.uri().path().to_owned());
            let status = serde_json::json!({
                "kind": "Status", "apiVersion": "v1", "status": "Failure",
                "message": "storagegroups.fdfs.dev is forbidden", "reason": "Forbidden",
                "code": 403,
            });
            reply.send_response(
                Response::builder()
                    .status(403)
                    .body(Body::from(serde_json::to_vec(&status).expect("json")))
                    .expect("response"),
            );
        }
    });
    let mut registry = prometheus_client::registry::Registry::default();
    let config = Config {
        watch_failure_window: Duration::ZERO,
        ..Config::default()
    };
    let ctx = Arc::new(Context::new(
        kube::Client::new(service, "default"),
        config,
        Metrics::new(&mut registry),
        Some("test".into()),
    ));
    assert!(
        ctx.watches.check(Instant::now()).is_ok(),
        "healthy at start"
    );
    let run = tokio::spawn(controller::run(
        ctx.clone(),
        vec!["fdfs".into()],
        std::future::pending::<()>(),
    ));
    let deadline = Instant::now() + Duration::from_secs(30);
    let err = loop {
        if let Err(err) = ctx.watches.check(Instant::now()) {
            break err;
        }
        assert!(Instant::now() < deadline, "a refused watch never showed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(err.contains("forbidden"), "{err}");
    // The controllers' own tasks hold the client; the test's runtime ends them.
    run.abort();
    api.abort();
    let paths = paths.lock().expect("paths").clone();
    assert!(
        paths
            .iter()
            .any(|p| p.ends_with("/namespaces/fdfs/storagegroups")),
        "{paths:?}"
    );
}
