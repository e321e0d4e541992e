//! A scripted Kubernetes API server on kube's `tower-test` mock service, and real FastDFS
//! trackers and storages (`fdfs_node`) on loopback addresses.
//!
//! The API server is the only fake: each scenario lists the requests the operator must send,
//! in order, with the answer to each; anything else fails the test.

#![allow(dead_code)]

pub mod health;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use fdfs_node::config::TrackerConfig;
use fdfs_node::proto::StorageStatus;
use fdfs_node::storage::RunningStorage;
use fdfs_node::tracker::RunningTracker;
use fdfs_operator::controller::{Config, Context, TrackerDirectory};
use fdfs_operator::metrics::Metrics;
use fdfs_test_support::cluster;
use http::{Method, Request, Response};
use kube::client::Body;
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tower_test::mock::{self, Handle};

/// How to answer one request.
pub enum Reply {
    /// 200 with this JSON.
    Json(Value),
    /// 200 with the request's own body (what server-side apply returns for a new object).
    Echo,
    /// 200 with the request's body merged over this JSON (e.g. a status the cluster has).
    EchoOver(Value),
    /// An error Status with this code.
    Status(u16),
}

/// One expected request.
pub struct Expect {
    pub method: Method,
    pub path: String,
    pub reply: Reply,
}

pub fn get(path: impl Into<String>, reply: Reply) -> Expect {
    Expect {
        method: Method::GET,
        path: path.into(),
        reply,
    }
}

pub fn patch(path: impl Into<String>, reply: Reply) -> Expect {
    Expect {
        method: Method::PATCH,
        path: path.into(),
        reply,
    }
}

pub fn post(path: impl Into<String>, reply: Reply) -> Expect {
    Expect {
        method: Method::POST,
        path: path.into(),
        reply,
    }
}

pub fn delete(path: impl Into<String>, reply: Reply) -> Expect {
    Expect {
        method: Method::DELETE,
        path: path.into(),
        reply,
    }
}

/// An Event being published in namespace `ns`.
pub fn event(ns: &str) -> Expect {
    post(
        format!("/apis/events.k8s.io/v1/namespaces/{ns}/events"),
        Reply::Echo,
    )
}

/// A request the operator sent.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: Method,
    pub path: String,
    pub query: String,
    pub body: Value,
}

impl Seen {
    /// The `reason` of an Event request.
    pub fn event_reason(&self) -> &str {
        self.body["reason"].as_str().unwrap_or_default()
    }
}

/// The requests a scenario saw, in order.
#[derive(Debug)]
pub struct Transcript(pub Vec<Seen>);

impl Transcript {
    /// The body of the one request to `path` with `method`.
    pub fn body(&self, method: Method, path: &str) -> &Value {
        let found: Vec<&Seen> = self
            .0
            .iter()
            .filter(|s| s.method == method && s.path == path)
            .collect();
        assert_eq!(found.len(), 1, "{method} {path} in {:#?}", self.calls());
        &found[0].body
    }

    /// `METHOD path` of every request.
    pub fn calls(&self) -> Vec<String> {
        self.0
            .iter()
            .map(|s| format!("{} {}", s.method, s.path))
            .collect()
    }

    /// Reasons of the Events published, in order.
    pub fn event_reasons(&self) -> Vec<String> {
        self.0
            .iter()
            .filter(|s| s.path.ends_with("/events"))
            .map(|s| s.event_reason().to_owned())
            .collect()
    }

    /// The status written last.
    pub fn status(&self) -> &Value {
        let last = self
            .0
            .iter()
            .rev()
            .find(|s| s.path.ends_with("/status"))
            .expect("a status was written");
        &last.body["status"]
    }

    /// The condition of a type in the status written last.
    pub fn condition(&self, type_: &str) -> &Value {
        self.status()["conditions"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["type"] == type_))
            .unwrap_or_else(|| panic!("no {type_} condition in {:#}", self.status()))
    }
}

fn merge(base: &mut Value, over: &Value) {
    match (base, over) {
        (Value::Object(base), Value::Object(over)) => {
            for (k, v) in over {
                merge(base.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
        (base, over) => *base = over.clone(),
    }
}

/// Serves `script` on the mock, then checks no further request arrives before every client
/// is dropped.
fn serve(
    mut handle: Handle<Request<Body>, Response<Body>>,
    script: Vec<Expect>,
) -> JoinHandle<Transcript> {
    tokio::spawn(async move {
        let mut seen = Vec::new();
        for (i, expect) in script.into_iter().enumerate() {
            let next = tokio::time::timeout(Duration::from_secs(30), handle.next_request()).await;
            let (request, respond) = match next {
                Ok(Some(r)) => r,
                Ok(None) => panic!(
                    "request {i} ({} {}) never came; saw {:#?}",
                    expect.method,
                    expect.path,
                    seen.iter()
                        .map(|s: &Seen| format!("{} {}", s.method, s.path))
                        .collect::<Vec<_>>()
                ),
                Err(_) => panic!(
                    "timed out waiting for request {i}: {} {}",
                    expect.method, expect.path
                ),
            };
            let method = request.method().clone();
            let path = request.uri().path().to_owned();
            let query = request.uri().query().unwrap_or_default().to_owned();
            let bytes = request
                .into_body()
                .collect_bytes()
                .await
                .expect("request body");
            let body: Value = if bytes.is_empty() {
                Value::Null
            } else {
                serde_json::from_slice(&bytes).expect("request body is JSON")
            };
            assert_eq!(
                (&method, &path),
                (&expect.method, &expect.path),
                "request {i} differs; saw before: {:#?}",
                seen.iter()
                    .map(|s: &Seen| format!("{} {}", s.method, s.path))
                    .collect::<Vec<_>>()
            );
            let (code, reply) = match expect.reply {
                Reply::Json(v) => (200, v),
                Reply::Echo => (200, body.clone()),
                Reply::EchoOver(mut base) => {
                    merge(&mut base, &body);
                    (200, base)
                }
                Reply::Status(code) => (
                    code,
                    json!({"kind": "Status", "apiVersion": "v1", "metadata": {},
                           "status": "Failure", "message": "scripted", "reason": "NotFound", "code": code}),
                ),
            };
            seen.push(Seen {
                method,
                path,
                query,
                body,
            });
            respond.send_response(
                Response::builder()
                    .status(code)
                    .body(Body::from(
                        serde_json::to_vec(&reply).expect("reply serializes"),
                    ))
                    .expect("response"),
            );
        }
        let extra = tokio::time::timeout(Duration::from_secs(30), handle.next_request()).await;
        match extra {
            Ok(None) => {}
            Ok(Some((request, _))) => panic!(
                "unexpected request {} {} after {:#?}",
                request.method(),
                request.uri(),
                seen.iter()
                    .map(|s| format!("{} {}", s.method, s.path))
                    .collect::<Vec<_>>()
            ),
            Err(_) => panic!("the operator kept a client open"),
        }
        Transcript(seen)
    })
}

/// A bare client on a mock API server that follows `script`.
pub fn client(script: Vec<Expect>) -> (kube::Client, JoinHandle<Transcript>) {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    (kube::Client::new(service, "default"), serve(handle, script))
}

/// An operator context on a mock API server that follows `script`, finding the trackers of
/// cluster `fdfs/main` at `trackers`.
pub fn context(trackers: &[String], script: Vec<Expect>) -> (Arc<Context>, JoinHandle<Transcript>) {
    context_with(trackers, script, |_| {})
}

/// [`context`] with operator settings changed by `tune`.
pub fn context_with(
    trackers: &[String],
    script: Vec<Expect>,
    tune: impl FnOnce(&mut Config),
) -> (Arc<Context>, JoinHandle<Transcript>) {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    let client = kube::Client::new(service, "default");
    let mut registry = prometheus_client::registry::Registry::default();
    let mut config = Config {
        trackers: TrackerDirectory::Static(BTreeMap::from([(
            "fdfs/main".to_owned(),
            trackers.to_vec(),
        )])),
        ..Config::default()
    };
    tune(&mut config);
    let ctx = Arc::new(Context::new(
        client,
        config,
        Metrics::new(&mut registry),
        Some("test".into()),
    ));
    (ctx, serve(handle, script))
}

/// A list reply.
pub fn list(kind: &str, api_version: &str, items: Vec<Value>) -> Reply {
    Reply::Json(json!({
        "apiVersion": api_version,
        "kind": format!("{kind}List"),
        "metadata": {"resourceVersion": "1"},
        "items": items,
    }))
}

/// A tracker on `ip`, port chosen by the system, quick to notice a silent storage.
pub async fn tracker(ip: &str, data: &Path) -> RunningTracker {
    let config = TrackerConfig {
        check_active_interval: 2,
        ..TrackerConfig::default()
    };
    cluster::tracker_at(ip, config, data.join(format!("tracker-{ip}"))).await
}

/// A tracker on `ip` that names storages by the ids of `storage_ids` (`use_storage_id`).
pub async fn tracker_with_ids(ip: &str, data: &Path, storage_ids: &Path) -> RunningTracker {
    let config = TrackerConfig {
        check_active_interval: 2,
        use_storage_id: true,
        storage_ids_filename: storage_ids.to_path_buf(),
        ..TrackerConfig::default()
    };
    cluster::tracker_at(ip, config, data.join(format!("tracker-{ip}"))).await
}

/// The port every storage of one test shares (FastDFS requires one port per group).
pub fn group_port(data: &Path) -> u16 {
    cluster::group_port(data, 24000)
}

/// A storage of `group` on `ip`, reporting to `trackers` every second.
pub async fn storage(ip: &str, group: &str, trackers: &[String], data: &Path) -> RunningStorage {
    let mut config = cluster::member_config(data, ip, trackers, group_port(data));
    config.group_name = group.into();
    cluster::start_member(config).await
}

/// Waits until `tracker` lists the storage at `ip` in `group` with `status`.
pub async fn wait_status(tracker: &str, group: &str, ip: &str, status: StorageStatus) {
    cluster::wait_listed(tracker, group, ip, status).await;
}

/// Waits until `tracker` holds every file the storage on `ip` took as on the group's other
/// members (`fdfs migrate`'s rule: it has reported what each of them lacks since they came
/// up), as a scale-down or a replacement of it requires.
pub async fn wait_held_elsewhere(tracker: &str, group: &str, ip: &str) {
    use fdfs_node::client::migrate::{Standing, standing};
    let config = fdfs_node::client::ClientConfig::new(vec![tracker.to_owned()]);
    let addr = tracker.parse().expect("tracker address");
    fdfs_test_support::wait_until(
        &format!("{ip}'s files held elsewhere"),
        Duration::from_secs(60),
        async || {
            matches!(
                standing(&config, addr, group, ip, None).await,
                Ok(Standing::Running {
                    held_elsewhere: Ok(()),
                    ..
                } | Standing::Stopped {
                    held_elsewhere: Ok(())
                })
            )
        },
    )
    .await;
}

/// A storage of group1 on `ip` reporting to `trackers`, once the first tracker holds it
/// ACTIVE.
pub async fn active_storage(ip: &str, trackers: &[String], data: &Path) -> RunningStorage {
    let s = storage(ip, "group1", trackers, data).await;
    wait_status(&trackers[0], "group1", ip, StorageStatus::Active).await;
    s
}

/// Polls `check` until it holds, for up to a minute.
pub async fn wait_until(what: &str, check: impl Fn() -> bool) {
    fdfs_test_support::wait_until(what, Duration::from_secs(60), async || check()).await;
}

/// `storage_ids.conf` for the group1 storages of ordinals 0 and 1 on 127.0.0.61 and .62, as
/// the operator renders it; `leaving` is listed `rw=read` (the group asks for fewer).
pub fn group1_storage_ids(leaving: Option<u32>) -> String {
    (0..2)
        .map(|o| {
            let rw = if leaving == Some(o) { " rw=read" } else { "" };
            format!(
                "{} group1 127.0.0.{}{rw}\n",
                fdfs_operator::naming::storage_id("group1", o),
                61 + o
            )
        })
        .collect()
}
