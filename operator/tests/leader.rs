//! Leader election rounds against the mock API server: who writes the Lease, and when.

mod support;

use std::time::Duration;

use fdfs_operator::leader::{LeaseConfig, try_lead};
use http::Method;
use k8s_openapi::jiff::Timestamp;
use serde_json::json;
use support::{Reply, get, post};

const LEASES: &str = "/apis/coordination.k8s.io/v1/namespaces/ops/leases";

fn config() -> LeaseConfig {
    LeaseConfig {
        namespace: "ops".into(),
        name: "fdfs-operator".into(),
        identity: "replica-a".into(),
        duration: Duration::from_secs(15),
        renew_every: Duration::from_secs(5),
    }
}

fn lease(holder: &str, renewed: Timestamp) -> serde_json::Value {
    json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": "fdfs-operator", "namespace": "ops", "resourceVersion": "7"},
        "spec": {"holderIdentity": holder, "leaseDurationSeconds": 15,
                 "renewTime": renewed.strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()},
    })
}

#[tokio::test]
async fn first_replica_creates_the_lease() {
    let (client, server) = support::client(vec![
        get(format!("{LEASES}/fdfs-operator"), Reply::Status(404)),
        post(LEASES, Reply::Echo),
    ]);
    assert!(try_lead(&client, &config()).await.expect("round"));
    drop(client);
    let t = server.await.expect("server");
    let body = t.body(Method::POST, LEASES);
    assert_eq!(body["spec"]["holderIdentity"], "replica-a");
    assert_eq!(body["spec"]["leaseDurationSeconds"], 15);
}

#[tokio::test]
async fn a_live_lease_of_another_replica_is_left_alone() {
    let (client, server) = support::client(vec![get(
        format!("{LEASES}/fdfs-operator"),
        Reply::Json(lease("replica-b", Timestamp::now())),
    )]);
    assert!(!try_lead(&client, &config()).await.expect("round"));
    drop(client);
    assert_eq!(server.await.expect("server").0.len(), 1, "no write");
}

#[tokio::test]
async fn an_expired_lease_is_taken_over_with_its_resource_version() {
    let stale = Timestamp::now() - k8s_openapi::jiff::SignedDuration::from_secs(60);
    let path = format!("{LEASES}/fdfs-operator");
    let (client, server) = support::client(vec![
        get(path.clone(), Reply::Json(lease("replica-b", stale))),
        support::Expect {
            method: Method::PUT,
            path: path.clone(),
            reply: Reply::Echo,
        },
    ]);
    assert!(try_lead(&client, &config()).await.expect("round"));
    drop(client);
    let t = server.await.expect("server");
    let body = t.body(Method::PUT, &path);
    assert_eq!(body["metadata"]["resourceVersion"], "7");
    assert_eq!(body["spec"]["holderIdentity"], "replica-a");
    assert_eq!(body["spec"]["leaseTransitions"], 1);
}

#[tokio::test]
async fn losing_the_race_for_a_lease_is_no_error() {
    let (client, server) = support::client(vec![
        get(format!("{LEASES}/fdfs-operator"), Reply::Status(404)),
        post(LEASES, Reply::Status(409)),
    ]);
    assert!(!try_lead(&client, &config()).await.expect("round"));
    drop(client);
    server.await.expect("server");
}
