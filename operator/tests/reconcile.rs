//! Reconcile scenarios: one per expected sequence of API calls, against kube's `tower-test`
//! mock API server, with real trackers and storages (`fdfs_node`) where the operator asks
//! FastDFS.

mod support;

use std::sync::Arc;
use std::time::Duration;

use fdfs_node::proto::StorageStatus;
use fdfs_operator::build::{self, BuildOptions};
use fdfs_operator::controller::{self, Config};
use fdfs_operator::crd::{FdfsCluster, StorageGroup};
use fdfs_operator::naming;
use fdfs_operator::validate::validate_storage_group;
use http::Method;
use kube::runtime::controller::Action;
use serde_json::{Value, json};
use support::health::{self, KStatus};
use support::{Expect, Reply, delete, event, get, list, patch};

const NS: &str = "fdfs";
const FDFS: &str = "/apis/fdfs.dev/v1alpha1/namespaces/fdfs";
const APPS: &str = "/apis/apps/v1/namespaces/fdfs";
const CORE: &str = "/api/v1/namespaces/fdfs";
const POLICY: &str = "/apis/policy/v1/namespaces/fdfs";

fn cluster_json() -> Value {
    json!({
        "apiVersion": "fdfs.dev/v1alpha1",
        "kind": "FdfsCluster",
        "metadata": {"name": "main", "namespace": NS, "uid": "cluster-uid", "generation": 1,
                     "creationTimestamp": "2025-01-01T00:00:00Z"},
        "spec": {"image": "fdfs-node:test", "trackers": {"replicas": 1}},
    })
}

fn cluster() -> FdfsCluster {
    serde_json::from_value(cluster_json()).expect("cluster")
}

fn group_json(replicas: i32) -> Value {
    json!({
        "apiVersion": "fdfs.dev/v1alpha1",
        "kind": "StorageGroup",
        "metadata": {"name": "group1", "namespace": NS, "uid": "sg-uid", "generation": 2,
                     "creationTimestamp": "2025-01-02T00:00:00Z",
                     "finalizers": ["fdfs.dev/storage-group"]},
        "spec": {"clusterRef": "main", "replicas": replicas, "volume": {"size": "1Gi"}},
    })
}

fn group(replicas: i32) -> StorageGroup {
    serde_json::from_value(group_json(replicas)).expect("group")
}

/// The config hash the operator puts on the group's Pod template.
fn group_hash(sg: &StorageGroup) -> String {
    let c = cluster();
    let valid =
        validate_storage_group(sg, Some(&c), std::slice::from_ref(sg), None).expect("valid");
    let objects = build::group_objects(&c, sg, &valid, 1, &BuildOptions::default());
    objects
        .statefulset
        .spec
        .expect("spec")
        .template
        .metadata
        .expect("meta")
        .annotations
        .expect("annotations")[naming::CONFIG_HASH_ANNOTATION]
        .clone()
}

/// The Pod template hash the operator records on the group's StatefulSet.
fn template_hash() -> String {
    let (c, sg) = (cluster(), group(1));
    let valid =
        validate_storage_group(&sg, Some(&c), std::slice::from_ref(&sg), None).expect("valid");
    build::group_objects(&c, &sg, &valid, 1, &BuildOptions::default())
        .statefulset
        .metadata
        .annotations
        .expect("annotations")[naming::TEMPLATE_HASH_ANNOTATION]
        .clone()
}

/// A StatefulSet as the API server holds it: with the current template, or with an older
/// one when `hash` is `"stale"`.
fn statefulset(replicas: i32, hash: &str) -> Value {
    let template = if hash == "stale" {
        "stale".to_owned()
    } else {
        template_hash()
    };
    json!({
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": "group1", "namespace": NS, "generation": 1,
                     "annotations": {naming::TEMPLATE_HASH_ANNOTATION: template}},
        "spec": {
            "replicas": replicas,
            "serviceName": "group1",
            "selector": {"matchLabels": {"fdfs.dev/storage-group": "group1"}},
            "template": {"metadata": {"annotations": {naming::CONFIG_HASH_ANNOTATION: hash}}},
        },
        "status": {"replicas": replicas, "observedGeneration": 1},
    })
}

fn pod(ordinal: u32, ip: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": format!("group1-{ordinal}"), "namespace": NS},
        "status": {"podIP": ip},
    })
}

fn pdb() -> Value {
    json!({
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": "group1", "namespace": NS, "ownerReferences": [{
            "apiVersion": "fdfs.dev/v1alpha1", "kind": "StorageGroup", "name": "group1",
            "uid": "sg-uid", "controller": true}]},
        "spec": {"maxUnavailable": 1},
    })
}

/// The fetch step of a group reconcile.
fn group_fetch(sg: &Value, sts: Option<Value>, pods: Vec<Value>) -> Vec<Expect> {
    vec![
        get(
            format!("{FDFS}/fdfsclusters/main"),
            Reply::Json(cluster_json()),
        ),
        get(
            format!("{FDFS}/storagegroups"),
            list("StorageGroup", "fdfs.dev/v1alpha1", vec![sg.clone()]),
        ),
        get(
            format!("{APPS}/statefulsets/group1"),
            sts.map_or(Reply::Status(404), Reply::Json),
        ),
        get(format!("{CORE}/pods"), list("Pod", "v1", pods)),
    ]
}

/// The apply step of a group reconcile; `pdb` whether a budget is wanted, `stale_pdb` whether
/// one exists that is no longer wanted.
fn group_apply(with_pdb: bool, stale_pdb: bool) -> Vec<Expect> {
    let mut script = vec![
        patch(format!("{CORE}/configmaps/group1-config"), Reply::Echo),
        patch(format!("{CORE}/services/group1"), Reply::Echo),
        patch(format!("{APPS}/statefulsets/group1"), Reply::Echo),
    ];
    if with_pdb {
        script.push(patch(
            format!("{POLICY}/poddisruptionbudgets/group1"),
            Reply::Echo,
        ));
    }
    let existing = if with_pdb || stale_pdb {
        vec![pdb()]
    } else {
        vec![]
    };
    script.push(get(
        format!("{POLICY}/poddisruptionbudgets"),
        list("PodDisruptionBudget", "policy/v1", existing),
    ));
    if stale_pdb {
        script.push(delete(
            format!("{POLICY}/poddisruptionbudgets/group1"),
            Reply::Json(pdb()),
        ));
    }
    script
}

fn status_write(sg: &Value) -> Expect {
    patch(
        format!("{FDFS}/storagegroups/group1/status"),
        Reply::EchoOver(sg.clone()),
    )
}

/// What kstatus and Argo CD make of `object` with the status written last.
fn expect_health(object: &Value, t: &support::Transcript, kstatus: KStatus, argocd: &str) {
    health::expect(&health::with_status(object, t.status()), kstatus, argocd);
}

fn applied_replicas(t: &support::Transcript) -> i64 {
    t.body(Method::PATCH, &format!("{APPS}/statefulsets/group1"))["spec"]["replicas"]
        .as_i64()
        .expect("replicas")
}

async fn run_group(
    sg: StorageGroup,
    trackers: &[String],
    script: Vec<Expect>,
) -> (Action, support::Transcript) {
    let (ctx, server) = support::context(trackers, script);
    let action = controller::reconcile_group(Arc::new(sg), ctx)
        .await
        .expect("reconcile succeeds");
    (action, server.await.expect("API server task"))
}

#[tokio::test]
async fn create_applies_every_group_object_and_reports_progress() {
    let data = tempfile::tempdir().expect("tempdir");
    let t = support::tracker("127.0.0.50", data.path()).await;
    let trackers = vec![t.addr.to_string()];
    let sg = group_json(2);

    let mut script = group_fetch(&sg, None, vec![]);
    script.extend(group_apply(true, false));
    script.push(event(NS));
    script.push(status_write(&sg));
    let (action, transcript) = run_group(group(2), &trackers, script).await;

    assert_eq!(applied_replicas(&transcript), 2);
    let seen = &transcript.0;
    let sts_apply = seen
        .iter()
        .find(|s| s.method == Method::PATCH && s.path == format!("{APPS}/statefulsets/group1"))
        .expect("applied");
    assert!(
        sts_apply.query.contains("fieldManager=fdfs-operator"),
        "{}",
        sts_apply.query
    );
    assert!(
        sts_apply.query.contains("force=true"),
        "{}",
        sts_apply.query
    );
    assert_eq!(
        sts_apply.body["metadata"]["ownerReferences"][0]["uid"],
        "sg-uid"
    );
    let pods = seen
        .iter()
        .find(|s| s.path == format!("{CORE}/pods"))
        .expect("pods");
    assert!(
        pods.query.contains("fdfs.dev%2Fstorage-group%3Dgroup1"),
        "{}",
        pods.query
    );

    assert_eq!(transcript.event_reasons(), ["Created"]);
    assert_eq!(transcript.condition("Ready")["status"], "False");
    assert_eq!(transcript.condition("Ready")["reason"], "WaitingForMembers");
    assert_eq!(transcript.condition("Progressing")["reason"], "ScalingUp");
    assert_eq!(transcript.condition("Degraded")["status"], "False");
    assert_eq!(transcript.condition("ScaleDownBlocked")["status"], "False");
    assert_eq!(transcript.status()["observedGeneration"], 2);
    assert_eq!(transcript.status()["groupName"], "group1");
    assert_eq!(transcript.condition("Reconciling")["reason"], "ScalingUp");
    assert_eq!(transcript.condition("Stalled")["status"], "False");
    expect_health(&sg, &transcript, KStatus::InProgress, "Progressing");
    assert_eq!(action, Action::requeue(Config::default().progress_interval));
    t.stop(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn create_with_delete_policy_lets_the_statefulset_delete_claims() {
    let data = tempfile::tempdir().expect("tempdir");
    let t = support::tracker("127.0.0.50", data.path()).await;
    let mut sg = group_json(1);
    sg["spec"]["deletionPolicy"] = json!("Delete");
    let mut script = group_fetch(&sg, None, vec![]);
    script.extend(group_apply(false, false));
    script.push(event(NS));
    script.push(status_write(&sg));
    let typed: StorageGroup = serde_json::from_value(sg).expect("group");
    let (_, transcript) = run_group(typed, &[t.addr.to_string()], script).await;
    let body = transcript.body(Method::PATCH, &format!("{APPS}/statefulsets/group1"));
    assert_eq!(
        body["spec"]["persistentVolumeClaimRetentionPolicy"],
        json!({"whenDeleted": "Delete", "whenScaled": "Retain"})
    );
    expect_health(
        &group_json(1),
        &transcript,
        KStatus::InProgress,
        "Progressing",
    );
    t.stop(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn update_rolls_the_storages_when_their_config_changes() {
    let data = tempfile::tempdir().expect("tempdir");
    let t = support::tracker("127.0.0.50", data.path()).await;
    let sg = group_json(2);
    let mut script = group_fetch(&sg, Some(statefulset(2, "stale")), vec![]);
    script.extend(group_apply(true, false));
    script.push(event(NS));
    script.push(status_write(&sg));
    let (_, transcript) = run_group(group(2), &[t.addr.to_string()], script).await;
    assert_eq!(applied_replicas(&transcript), 2);
    assert_eq!(transcript.event_reasons(), ["RollingRestart"]);
    let body = transcript.body(Method::PATCH, &format!("{APPS}/statefulsets/group1"));
    assert_eq!(
        body["spec"]["template"]["metadata"]["annotations"][naming::CONFIG_HASH_ANNOTATION],
        group_hash(&group(2))
    );
    expect_health(&sg, &transcript, KStatus::InProgress, "Progressing");
    t.stop(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn scale_up_applies_the_new_count_at_once() {
    let data = tempfile::tempdir().expect("tempdir");
    let t = support::tracker("127.0.0.50", data.path()).await;
    let sg = group_json(3);
    let hash = group_hash(&group(3));
    let mut script = group_fetch(&sg, Some(statefulset(1, &hash)), vec![pod(0, "127.0.0.61")]);
    script.extend(group_apply(true, false));
    script.push(event(NS));
    script.push(status_write(&sg));
    let (_, transcript) = run_group(group(3), &[t.addr.to_string()], script).await;
    assert_eq!(applied_replicas(&transcript), 3);
    assert_eq!(transcript.event_reasons(), ["ScalingUp"]);
    assert_eq!(transcript.condition("Progressing")["reason"], "ScalingUp");
    assert_eq!(transcript.status()["replicas"], 1, "one Pod exists so far");
    expect_health(&sg, &transcript, KStatus::InProgress, "Progressing");
    t.stop(Duration::from_secs(1)).await;
}

/// One reconcile of group1, on Pods 127.0.0.61 and .62, asked to go from two storages to one
/// while something holds the step: it keeps both and publishes one Event.
async fn blocked_scale_down(trackers: &[String]) -> (Action, support::Transcript) {
    let sg = group_json(1);
    let hash = group_hash(&group(1));
    let pods = vec![pod(0, "127.0.0.61"), pod(1, "127.0.0.62")];
    let mut script = group_fetch(&sg, Some(statefulset(2, &hash)), pods);
    script.extend(group_apply(true, false));
    script.push(event(NS));
    script.push(status_write(&sg));
    run_group(group(1), trackers, script).await
}

#[tokio::test]
async fn scale_down_is_blocked_while_the_remaining_storage_is_still_syncing() {
    let data = tempfile::tempdir().expect("tempdir");
    let t = support::tracker("127.0.0.50", data.path()).await;
    let tracker = t.addr.to_string();
    let trackers = vec![tracker.clone()];
    // Pod 1's storage joined first; Pod 0's storage joined later and waits for its copy.
    let s1 = support::active_storage("127.0.0.62", &trackers, data.path()).await;
    let s0 = support::storage("127.0.0.61", "group1", &trackers, data.path()).await;
    support::wait_status(&tracker, "group1", "127.0.0.61", StorageStatus::WaitSync).await;

    let (action, transcript) = blocked_scale_down(&trackers).await;

    assert_eq!(
        applied_replicas(&transcript),
        2,
        "the StatefulSet keeps both storages"
    );
    assert_eq!(transcript.event_reasons(), ["ScaleDownBlocked"]);
    let blocked = transcript.condition("ScaleDownBlocked");
    assert_eq!(blocked["status"], "True");
    let message = blocked["message"].as_str().expect("message");
    assert!(
        message.contains("127.0.0.61") && message.contains("WAIT_SYNC"),
        "{message}"
    );
    assert_eq!(transcript.condition("Syncing")["status"], "True");
    assert_eq!(
        transcript.condition("Progressing")["reason"],
        "ScaleDownBlocked"
    );
    let members = transcript.status()["members"]
        .as_array()
        .expect("members")
        .clone();
    let pods: Vec<&str> = members
        .iter()
        .map(|m| m["pod"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(pods, ["group1-0", "group1-1"]);
    assert_eq!(members[0]["status"], "WAIT_SYNC");
    assert_eq!(members[1]["status"], "ACTIVE");
    assert_eq!(transcript.status()["readyReplicas"], 0);
    assert_eq!(action, Action::requeue(Config::default().progress_interval));

    s0.stop(Duration::from_secs(1)).await;
    s1.stop(Duration::from_secs(1)).await;
    t.stop(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn a_scale_down_blocked_past_the_stall_timeout_is_stalled() {
    let data = tempfile::tempdir().expect("tempdir");
    let t = support::tracker("127.0.0.50", data.path()).await;
    let tracker = t.addr.to_string();
    let trackers = vec![tracker.clone()];
    // Pod 0, the one to keep, runs no storage the trackers know: the scale-down waits.
    let s1 = support::active_storage("127.0.0.62", &trackers, data.path()).await;
    let hash = group_hash(&group(1));
    let pods = vec![pod(0, "127.0.0.61"), pod(1, "127.0.0.62")];
    let reconcile = |sg: Value, events: usize| {
        let mut script = group_fetch(&sg, Some(statefulset(2, &hash)), pods.clone());
        script.extend(group_apply(true, false));
        script.extend((0..events).map(|_| event(NS)));
        script.push(status_write(&sg));
        let typed: StorageGroup = serde_json::from_value(sg).expect("group");
        run_group(typed, &trackers, script)
    };

    let sg = group_json(1);
    let (_, first) = reconcile(sg.clone(), 1).await;
    assert_eq!(first.event_reasons(), ["ScaleDownBlocked"]);
    assert_eq!(first.condition("Reconciling")["reason"], "ScaleDownBlocked");
    expect_health(&sg, &first, KStatus::InProgress, "Progressing");

    // Seen again within the timeout: still converging, no new Event.
    let mut seen = health::with_status(&sg, first.status());
    let (_, again) = reconcile(seen.clone(), 0).await;
    assert_eq!(
        again.status()["lastProgressTime"],
        first.status()["lastProgressTime"]
    );
    expect_health(&seen, &again, KStatus::InProgress, "Progressing");

    // The same wait, last progress longer ago than the stall timeout (15 min by default).
    seen["status"]["lastProgressTime"] = json!("2025-01-01T00:00:00Z");
    let (_, stuck) = reconcile(seen.clone(), 1).await;
    assert_eq!(stuck.event_reasons(), ["ProgressDeadlineExceeded"]);
    let stalled = stuck.condition("Stalled");
    assert_eq!(stalled["status"], "True");
    assert_eq!(stalled["reason"], "ProgressDeadlineExceeded");
    let message = stalled["message"].as_str().expect("message");
    assert!(message.contains("(ScaleDownBlocked)"), "{message}");
    assert_eq!(stuck.condition("Reconciling")["status"], "False");
    assert_eq!(stuck.status()["lastProgressTime"], "2025-01-01T00:00:00Z");
    assert_eq!(
        applied_replicas(&stuck),
        2,
        "nothing is removed while stalled"
    );
    expect_health(&seen, &stuck, KStatus::Failed, "Degraded");

    s1.stop(Duration::from_secs(1)).await;
    t.stop(Duration::from_secs(1)).await;
}

/// A StatefulSet whose data claims were made with `size` of `class`.
fn statefulset_with_claims(replicas: i32, hash: &str, size: &str, class: &str) -> Value {
    let mut sts = statefulset(replicas, hash);
    sts["spec"]["volumeClaimTemplates"] = json!([{
        "metadata": {"name": "data"},
        "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": class,
                 "resources": {"requests": {"storage": size}}},
    }]);
    sts
}

/// A group asking for volumes of `size` in `class`.
fn group_with_volume(replicas: i32, size: &str, class: &str) -> (Value, StorageGroup) {
    let mut sg = group_json(replicas);
    sg["spec"]["volume"] = json!({"size": size, "storageClassName": class});
    let typed = serde_json::from_value(sg.clone()).expect("group");
    (sg, typed)
}

/// The data claim of ordinal `n`, asking for `requested` and holding `capacity`.
fn claim(n: u32, requested: &str, capacity: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": format!("data-group1-{n}"), "namespace": NS},
        "spec": {"storageClassName": "fast", "resources": {"requests": {"storage": requested}}},
        "status": {"phase": "Bound", "capacity": {"storage": capacity}},
    })
}

fn claims(list_of: Vec<Value>) -> Expect {
    get(
        format!("{CORE}/persistentvolumeclaims"),
        list("PersistentVolumeClaim", "v1", list_of),
    )
}

/// The claim template the apply step sent.
fn applied_claim(t: &support::Transcript) -> Value {
    t.body(Method::PATCH, &format!("{APPS}/statefulsets/group1"))["spec"]["volumeClaimTemplates"][0]
        ["spec"]
        .clone()
}

#[tokio::test]
async fn a_volume_change_kubernetes_refuses_keeps_the_volumes_and_stalls() {
    let data = tempfile::tempdir().expect("tempdir");
    let t = support::tracker("127.0.0.50", data.path()).await;
    // (spec size, spec class, what the message names)
    for (size, class, named) in [
        ("1Gi", "standard", "smaller than the 2Gi"),
        ("2Gi", "fast", "storageClassName fast"),
    ] {
        let (sg, typed) = group_with_volume(1, size, class);
        let existing = statefulset_with_claims(1, &group_hash(&typed), "2Gi", "standard");
        let mut script = group_fetch(&sg, Some(existing), vec![]);
        script.extend(group_apply(false, false));
        script.push(event(NS));
        script.push(status_write(&sg));
        let (_, transcript) = run_group(typed, &[t.addr.to_string()], script).await;

        let claim = applied_claim(&transcript);
        assert_eq!(claim["resources"]["requests"]["storage"], "2Gi");
        assert_eq!(claim["storageClassName"], "standard");
        assert_eq!(transcript.event_reasons(), ["VolumeChangeRefused"]);
        let stalled = transcript.condition("Stalled");
        assert_eq!(stalled["reason"], "VolumeChangeRefused");
        let message = stalled["message"].as_str().expect("message");
        assert!(message.contains(named), "{message}");
        assert_eq!(
            transcript.condition("Ready")["reason"],
            "VolumeChangeRefused"
        );
        assert_eq!(transcript.condition("VolumeResizing")["status"], "False");
        expect_health(&sg, &transcript, KStatus::Failed, "Degraded");
    }
    t.stop(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn a_class_that_does_not_expand_volumes_stalls_their_growth() {
    let data = tempfile::tempdir().expect("tempdir");
    let t = support::tracker("127.0.0.50", data.path()).await;
    let (sg, typed) = group_with_volume(1, "2Gi", "fast");
    let existing = statefulset_with_claims(1, &group_hash(&typed), "1Gi", "fast");
    let mut script = group_fetch(&sg, Some(existing), vec![]);
    script.push(claims(vec![claim(0, "1Gi", "1Gi")]));
    // The API server's resize admission refuses the claim.
    script.push(patch(
        format!("{CORE}/persistentvolumeclaims/data-group1-0"),
        Reply::Status(403),
    ));
    script.extend(group_apply(false, false));
    script.push(event(NS));
    script.push(status_write(&sg));
    let (_, transcript) = run_group(typed, &[t.addr.to_string()], script).await;
    assert_eq!(
        applied_claim(&transcript)["resources"]["requests"]["storage"],
        "1Gi"
    );
    assert_eq!(transcript.event_reasons(), ["VolumeExpansionNotAllowed"]);
    let stalled = transcript.condition("Stalled");
    assert_eq!(stalled["reason"], "VolumeExpansionNotAllowed");
    assert!(
        stalled["message"]
            .as_str()
            .is_some_and(|m| m.contains("PersistentVolumeClaim data-group1-0 cannot grow to 2Gi")),
        "{stalled}"
    );
    expect_health(&sg, &transcript, KStatus::Failed, "Degraded");
    t.stop(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn a_larger_volume_grows_the_claims_and_replaces_the_statefulset() {
    let data = tempfile::tempdir().expect("tempdir");
    let t = support::tracker("127.0.0.50", data.path()).await;
    let trackers = [t.addr.to_string()];
    let (sg, typed) = group_with_volume(2, "2Gi", "fast");
    let hash = group_hash(&typed);
    let pods = vec![pod(0, "127.0.0.61"), pod(1, "127.0.0.62")];

    // 1. The claims grow, the StatefulSet goes (its Pods stay), nothing else is applied to it.
    let existing = statefulset_with_claims(2, &hash, "1Gi", "fast");
    let mut script = group_fetch(&sg, Some(existing.clone()), pods.clone());
    script.push(claims(vec![claim(0, "1Gi", "1Gi"), claim(1, "1Gi", "1Gi")]));
    for n in 0..2 {
        script.push(patch(
            format!("{CORE}/persistentvolumeclaims/data-group1-{n}"),
            Reply::Json(claim(n, "2Gi", "1Gi")),
        ));
    }
    script.push(delete(
        format!("{APPS}/statefulsets/group1"),
        Reply::Json(existing),
    ));
    let mut apply = group_apply(true, false);
    apply.retain(|e| !e.path.ends_with("/statefulsets/group1"));
    script.extend(apply);
    script.push(event(NS));
    script.push(status_write(&sg));
    let (_, first) = run_group(typed.clone(), &trackers, script).await;
    for n in 0..2 {
        let body = first.body(
            Method::PATCH,
            &format!("{CORE}/persistentvolumeclaims/data-group1-{n}"),
        );
        assert_eq!(body["spec"]["resources"]["requests"]["storage"], "2Gi");
    }
    let deleted = first.body(Method::DELETE, &format!("{APPS}/statefulsets/group1"));
    assert_eq!(deleted["propagationPolicy"], "Orphan");
    assert_eq!(first.event_reasons(), ["VolumeResizing"]);
    assert_eq!(first.condition("VolumeResizing")["status"], "True");
    assert_eq!(first.condition("Reconciling")["reason"], "VolumeResizing");
    expect_health(&sg, &first, KStatus::InProgress, "Progressing");

    // 2. The StatefulSet is gone: created again with the new template; one claim has grown.
    let seen = health::with_status(&sg, first.status());
    let mut script = group_fetch(&seen, None, pods.clone());
    script.push(claims(vec![claim(0, "2Gi", "2Gi"), claim(1, "2Gi", "1Gi")]));
    script.extend(group_apply(true, false));
    script.push(event(NS));
    script.push(status_write(&seen));
    let typed_seen: StorageGroup = serde_json::from_value(seen.clone()).expect("group");
    let (_, second) = run_group(typed_seen, &trackers, script).await;
    assert_eq!(
        applied_claim(&second)["resources"]["requests"]["storage"],
        "2Gi"
    );
    assert_eq!(second.event_reasons(), ["Created"]);
    assert_eq!(
        second.condition("VolumeResizing")["message"],
        "1 of 2 volumes report 2Gi"
    );
    expect_health(&seen, &second, KStatus::InProgress, "Progressing");
    // Made again over running Pods, it replaces none of them before it holds them.
    assert_eq!(
        second.body(Method::PATCH, &format!("{APPS}/statefulsets/group1"))["spec"]["updateStrategy"]
            ["rollingUpdate"]["partition"],
        2
    );

    // 2b. Had the group asked for one storage fewer meanwhile, the running Pods would
    // still count: the new StatefulSet keeps both until the scale-down's checks pass.
    let mut fewer = seen.clone();
    fewer["spec"]["replicas"] = serde_json::json!(1);
    let mut script = group_fetch(&fewer, None, pods.clone());
    script.push(claims(vec![claim(0, "2Gi", "2Gi"), claim(1, "2Gi", "1Gi")]));
    script.extend(group_apply(true, false));
    script.push(event(NS));
    script.push(event(NS));
    script.push(status_write(&fewer));
    let typed_fewer: StorageGroup = serde_json::from_value(fewer).expect("group");
    let (_, held) = run_group(typed_fewer, &trackers, script).await;
    assert_eq!(applied_replicas(&held), 2);
    assert_eq!(held.event_reasons(), ["Created", "ScaleDownBlocked"]);

    // 3. Both claims report 2Gi: the growth is over.
    let seen = health::with_status(&sg, second.status());
    let grown = statefulset_with_claims(2, &hash, "2Gi", "fast");
    let mut script = group_fetch(&seen, Some(grown), pods);
    script.push(claims(vec![claim(0, "2Gi", "2Gi"), claim(1, "2Gi", "2Gi")]));
    script.extend(group_apply(true, false));
    script.push(status_write(&seen));
    let typed_seen: StorageGroup = serde_json::from_value(seen.clone()).expect("group");
    let (_, third) = run_group(typed_seen, &trackers, script).await;
    assert_eq!(third.condition("VolumeResizing")["status"], "False");
    assert_ne!(third.condition("Reconciling")["reason"], "VolumeResizing");
    t.stop(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn member_status_shows_the_bytes_behind_the_trackers_list() {
    let data = tempfile::tempdir().expect("tempdir");
    let t = support::tracker("127.0.0.50", data.path()).await;
    let tracker = t.addr.to_string();
    let trackers = vec![tracker.clone()];
    let s0 = support::active_storage("127.0.0.61", &trackers, data.path()).await;
    let s1 = support::active_storage("127.0.0.62", &trackers, data.path()).await;
    // Each member reports what the other has yet to receive from it.
    let client =
        fdfs_node::client::Client::new(fdfs_node::client::ClientConfig::new(trackers.clone()))
            .await
            .expect("client");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let rows = client.sync_backlog("group1").await.expect("241");
        let rows = rows.expect("this tracker lists backlogs");
        // (A member that has not heard of the other yet lists one row naming no peer.)
        if rows.len() == 2
            && rows
                .iter()
                .all(|r| !r.backlog.peer_id.is_empty() && r.backlog.bytes == 0)
        {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{rows:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let sg = group_json(2);
    let hash = group_hash(&group(2));
    let pods = vec![pod(0, "127.0.0.61"), pod(1, "127.0.0.62")];
    let mut script = group_fetch(&sg, Some(statefulset(2, &hash)), pods);
    script.extend(group_apply(true, false));
    // A group at rest: no event.
    script.push(status_write(&sg));
    let (_, transcript) = run_group(group(2), &trackers, script).await;
    let members = transcript.status()["members"]
        .as_array()
        .expect("members")
        .clone();
    assert_eq!(members.len(), 2, "{members:?}");
    for m in &members {
        assert_eq!(m["status"], "ACTIVE", "{m}");
        assert_eq!(m["syncLagBytes"], 0, "{m}");
    }
    assert_eq!(transcript.condition("Ready")["status"], "True");
    assert_eq!(transcript.condition("Reconciling")["reason"], "Reconciled");
    expect_health(&sg, &transcript, KStatus::Current, "Healthy");

    s0.stop(Duration::from_secs(1)).await;
    s1.stop(Duration::from_secs(1)).await;
    t.stop(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn scale_down_removes_the_highest_ordinal_when_the_rest_is_active_everywhere() {
    let data = tempfile::tempdir().expect("tempdir");
    // The leaving storage is already out of uploads in both trackers.
    let ids = write_storage_ids_leaving(data.path(), Some(1));
    let t1 = support::tracker_with_ids("127.0.0.50", data.path(), &ids).await;
    let t2 = support::tracker_with_ids("127.0.0.51", data.path(), &ids).await;
    let trackers = vec![t1.addr.to_string(), t2.addr.to_string()];
    let s0 = support::storage("127.0.0.61", "group1", &trackers, data.path()).await;
    for t in &trackers {
        support::wait_status(t, "group1", "127.0.0.61", StorageStatus::Active).await;
    }
    let s1 = support::storage("127.0.0.62", "group1", &trackers, data.path()).await;
    for t in &trackers {
        support::wait_status(t, "group1", "127.0.0.62", StorageStatus::WaitSync).await;
        support::wait_held_elsewhere(t, "group1", "127.0.0.62").await;
    }

    let sg = group_json(1);
    let hash = group_hash(&group(1));
    let pods = vec![pod(0, "127.0.0.61"), pod(1, "127.0.0.62")];
    let mut script = group_fetch(&sg, Some(statefulset(2, &hash)), pods);
    // One storage left: the disruption budget goes.
    script.extend(group_apply(false, true));
    script.push(event(NS));
    script.push(status_write(&sg));
    let (_, transcript) = run_group(group(1), &trackers, script).await;

    assert_eq!(applied_replicas(&transcript), 1);
    assert_eq!(transcript.event_reasons(), ["ScalingDown"]);
    let note = transcript
        .0
        .iter()
        .find(|s| s.event_reason() == "ScalingDown")
        .map(|s| s.body["note"].as_str().unwrap_or_default().to_owned())
        .expect("event");
    assert!(note.contains("group1-1"), "{note}");
    assert_eq!(transcript.condition("Progressing")["reason"], "ScalingDown");
    assert_eq!(transcript.condition("ScaleDownBlocked")["status"], "False");
    assert_eq!(transcript.status()["readyReplicas"], 1);
    assert_eq!(transcript.condition("Reconciling")["reason"], "ScalingDown");
    expect_health(&sg, &transcript, KStatus::InProgress, "Progressing");

    s0.stop(Duration::from_secs(1)).await;
    s1.stop(Duration::from_secs(1)).await;
    t1.stop(Duration::from_secs(1)).await;
    t2.stop(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn a_leaving_storage_still_taking_uploads_is_not_stopped() {
    let data = tempfile::tempdir().expect("tempdir");
    // The trackers have not read the rw=read line yet.
    let ids = write_storage_ids(data.path());
    let t1 = support::tracker_with_ids("127.0.0.50", data.path(), &ids).await;
    let trackers = vec![t1.addr.to_string()];
    let s0 = support::storage("127.0.0.61", "group1", &trackers, data.path()).await;
    support::wait_status(&trackers[0], "group1", "127.0.0.61", StorageStatus::Active).await;
    let s1 = support::storage("127.0.0.62", "group1", &trackers, data.path()).await;
    support::wait_status(&trackers[0], "group1", "127.0.0.62", StorageStatus::Active).await;

    let (_, transcript) = blocked_scale_down(&trackers).await;

    assert_eq!(
        applied_replicas(&transcript),
        2,
        "both storages keep running"
    );
    let blocked = transcript.condition("ScaleDownBlocked");
    assert_eq!(blocked["status"], "True");
    let message = blocked["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("still sends uploads") && message.contains("rw=read"),
        "{message}"
    );
    s0.stop(Duration::from_secs(1)).await;
    s1.stop(Duration::from_secs(1)).await;
    t1.stop(Duration::from_secs(1)).await;
}

/// The `storage_ids.conf` the operator renders for two members on 127.0.0.61 and .62.
fn write_storage_ids(dir: &std::path::Path) -> std::path::PathBuf {
    write_storage_ids_leaving(dir, None)
}

/// [`write_storage_ids`] with the member of ordinal `leaving` taken out of uploads, as the
/// operator renders it while the group asks for fewer storages.
fn write_storage_ids_leaving(dir: &std::path::Path, leaving: Option<u32>) -> std::path::PathBuf {
    let ids = support::group1_storage_ids(leaving);
    let path = dir.join("storage_ids.conf");
    std::fs::write(&path, ids).expect("write ids");
    path
}

/// Writes a FastDFS `storage.conf` for a storage on `ip`, and loads it with the node's own
/// parser.
fn storage_conf(
    dir: &std::path::Path,
    ip: &str,
    ordinal: u32,
    trackers: &[String],
) -> fdfs_node::config::StorageConfig {
    let base = dir.join(format!("storage-{ordinal}"));
    let mut conf = format!(
        "group_name = group1\nport = {}\nbind_addr = {ip}\nbase_path = {}\nsubdir_count_per_path = 2\n\
         heart_beat_interval = 1\nstat_report_interval = 1\n",
        support::group_port(dir),
        base.display(),
    );
    for t in trackers {
        conf.push_str(&format!("tracker_server = {t}\n"));
    }
    let path = dir.join(format!("storage-{ordinal}.conf"));
    std::fs::write(&path, conf).expect("write conf");
    fdfs_node::config::storage_from_fastdfs(&path).expect("storage.conf loads")
}

#[tokio::test]
async fn scaled_away_storage_is_deleted_from_every_tracker() {
    let data = tempfile::tempdir().expect("tempdir");
    let ids = write_storage_ids(data.path());
    let t1 = support::tracker_with_ids("127.0.0.50", data.path(), &ids).await;
    let t2 = support::tracker_with_ids("127.0.0.51", data.path(), &ids).await;
    let trackers = vec![t1.addr.to_string(), t2.addr.to_string()];
    let s0 = fdfs_node::storage::start(storage_conf(data.path(), "127.0.0.61", 0, &trackers))
        .await
        .expect("storage 0");
    let s1 = fdfs_node::storage::start(storage_conf(data.path(), "127.0.0.62", 1, &trackers))
        .await
        .expect("storage 1");
    for t in &trackers {
        support::wait_status(t, "group1", "127.0.0.61", StorageStatus::Active).await;
        support::wait_status(t, "group1", "127.0.0.62", StorageStatus::Active).await;
    }
    // The StatefulSet already went from 2 to 1: Pod 1 stopped, and the trackers notice.
    s1.stop(Duration::from_secs(1)).await;
    for t in &trackers {
        support::wait_status(t, "group1", "127.0.0.62", StorageStatus::Offline).await;
    }

    let sg = group_json(1);
    let hash = group_hash(&group(1));
    let mut script = group_fetch(&sg, Some(statefulset(1, &hash)), vec![pod(0, "127.0.0.61")]);
    script.extend(group_apply(false, false));
    script.push(event(NS));
    script.push(status_write(&sg));
    let (_, transcript) = run_group(group(1), &trackers, script).await;

    // One event names the storage and every tracker that forgot it.
    assert_eq!(transcript.event_reasons(), ["MemberRemoved"]);
    let removed = naming::storage_id("group1", 1).to_string();
    let note = transcript
        .0
        .iter()
        .find(|s| s.event_reason() == "MemberRemoved")
        .map(|s| s.body["note"].as_str().unwrap_or_default().to_owned())
        .expect("event");
    assert!(note.contains(&removed), "{note}");
    for t in &trackers {
        assert!(note.contains(t.as_str()), "{note}");
    }
    for t in &trackers {
        let client =
            fdfs_node::client::Client::new(fdfs_node::client::ClientConfig::new(vec![t.clone()]))
                .await
                .expect("client");
        let list = client.list_storages("group1").await.expect("list");
        assert!(
            list.iter()
                .all(|s| s.id != removed || s.status == StorageStatus::Deleted as u8),
            "{t} still lists {removed}: {list:?}"
        );
    }
    assert_eq!(
        transcript.condition("Reconciling")["reason"],
        "RemovingMember"
    );
    expect_health(&sg, &transcript, KStatus::InProgress, "Progressing");
    s0.stop(Duration::from_secs(1)).await;
    t1.stop(Duration::from_secs(1)).await;
    t2.stop(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn paused_group_only_reports_the_pause() {
    let mut sg = group_json(3);
    sg["metadata"]["annotations"] = json!({"fdfs.dev/reconcile": "paused"});
    let typed: StorageGroup = serde_json::from_value(sg.clone()).expect("group");
    let script = vec![event(NS), status_write(&sg)];
    let (action, transcript) = run_group(typed, &[], script).await;
    assert_eq!(transcript.event_reasons(), ["ReconcilePaused"]);
    assert_eq!(transcript.condition("Paused")["status"], "True");
    assert_eq!(transcript.condition("Reconciling")["status"], "False");
    assert_eq!(transcript.condition("Stalled")["status"], "False");
    expect_health(&sg, &transcript, KStatus::Current, "Suspended");
    assert_eq!(action, Action::await_change());

    // Paused after a spec change the operator has not acted on: kstatus waits for it.
    sg["metadata"]["generation"] = json!(3);
    sg["status"] = transcript.status().clone();
    sg["status"]["observedGeneration"] = json!(2);
    let typed: StorageGroup = serde_json::from_value(sg.clone()).expect("group");
    let script = vec![status_write(&sg)];
    let (_, transcript) = run_group(typed, &[], script).await;
    assert!(transcript.event_reasons().is_empty(), "already paused");
    assert_eq!(transcript.status()["observedGeneration"], 2);
    expect_health(&sg, &transcript, KStatus::InProgress, "Suspended");
}

#[tokio::test]
async fn invalid_specs_build_nothing_and_say_why() {
    let cases: Vec<(&str, Value, Vec<Value>, Option<Value>)> = vec![
        (
            "GroupNameTooLong",
            json!({"groupName": "abcdefghijklmnopq"}),
            vec![],
            Some(cluster_json()),
        ),
        (
            "GroupNameInvalidCharacter",
            json!({"groupName": "group_1"}),
            vec![],
            Some(cluster_json()),
        ),
        ("ClusterNotFound", json!({}), vec![], None),
        (
            "GroupNameConflict",
            json!({}),
            vec![json!({
                "apiVersion": "fdfs.dev/v1alpha1", "kind": "StorageGroup",
                "metadata": {"name": "older", "namespace": NS,
                             "creationTimestamp": "2024-01-01T00:00:00Z"},
                "spec": {"clusterRef": "main", "groupName": "group1", "volume": {"size": "1Gi"}},
            })],
            Some(cluster_json()),
        ),
    ];
    for (reason, spec_patch, others, cluster) in cases {
        let mut sg = group_json(2);
        for (k, v) in spec_patch.as_object().expect("object") {
            sg["spec"][k] = v.clone();
        }
        let mut all = others.clone();
        all.push(sg.clone());
        let script = vec![
            get(
                format!("{FDFS}/fdfsclusters/main"),
                cluster.clone().map_or(Reply::Status(404), Reply::Json),
            ),
            get(
                format!("{FDFS}/storagegroups"),
                list("StorageGroup", "fdfs.dev/v1alpha1", all),
            ),
            event(NS),
            status_write(&sg),
        ];
        let sg_seen = sg.clone();
        let typed: StorageGroup = serde_json::from_value(sg).expect("group");
        let (action, transcript) = run_group(typed, &[], script).await;
        assert_eq!(transcript.event_reasons(), [reason], "{reason}");
        let ready = transcript.condition("Ready");
        assert_eq!(ready["status"], "False", "{reason}");
        assert_eq!(ready["reason"], reason);
        let stalled = transcript.condition("Stalled");
        assert_eq!(
            (&stalled["status"], &stalled["reason"]),
            (&json!("True"), &json!(reason))
        );
        assert_eq!(transcript.condition("Reconciling")["status"], "False");
        expect_health(&sg_seen, &transcript, KStatus::Failed, "Degraded");
        assert_eq!(action, Action::requeue(Config::default().invalid_interval));
    }
}

#[tokio::test]
async fn negative_replicas_are_refused() {
    let mut sg = group_json(-1);
    sg["metadata"]["name"] = json!("group1");
    let script = vec![
        get(
            format!("{FDFS}/fdfsclusters/main"),
            Reply::Json(cluster_json()),
        ),
        get(
            format!("{FDFS}/storagegroups"),
            list("StorageGroup", "fdfs.dev/v1alpha1", vec![sg.clone()]),
        ),
        event(NS),
        status_write(&sg),
    ];
    let typed: StorageGroup = serde_json::from_value(sg.clone()).expect("group");
    let (_, transcript) = run_group(typed, &[], script).await;
    assert_eq!(transcript.condition("Ready")["reason"], "InvalidReplicas");
    expect_health(&sg, &transcript, KStatus::Failed, "Degraded");
}

#[tokio::test]
async fn an_invalid_spec_seen_again_publishes_no_new_event() {
    let mut sg = group_json(2);
    sg["spec"]["groupName"] = json!("group_1");
    sg["status"] = json!({"conditions": [{
        "type": "Ready", "status": "False", "reason": "GroupNameInvalidCharacter",
        "message": "spec.groupName \"group_1\" contains '_'; FastDFS group names allow only ASCII letters and digits",
        "lastTransitionTime": "2025-01-01T00:00:00Z"}]});
    let script = vec![
        get(
            format!("{FDFS}/fdfsclusters/main"),
            Reply::Json(cluster_json()),
        ),
        get(
            format!("{FDFS}/storagegroups"),
            list("StorageGroup", "fdfs.dev/v1alpha1", vec![sg.clone()]),
        ),
        status_write(&sg),
    ];
    let typed: StorageGroup = serde_json::from_value(sg.clone()).expect("group");
    let (_, transcript) = run_group(typed, &[], script).await;
    assert!(transcript.event_reasons().is_empty());
    expect_health(&sg, &transcript, KStatus::Failed, "Degraded");
    assert_eq!(
        transcript.condition("Ready")["lastTransitionTime"],
        "2025-01-01T00:00:00Z"
    );
}

#[tokio::test]
async fn deletion_needs_no_call_with_either_policy() {
    for policy in ["Retain", "Delete"] {
        let mut sg = group_json(2);
        sg["spec"]["deletionPolicy"] = json!(policy);
        sg["metadata"]["deletionTimestamp"] = json!("2025-03-01T00:00:00Z");
        // Released already (or made before the finalizer existed): nothing left to do.
        sg["metadata"]["finalizers"] = json!([]);
        health::expect(&sg, KStatus::Terminating, "Progressing");
        let typed: StorageGroup = serde_json::from_value(sg).expect("group");
        let (action, transcript) = run_group(typed, &[], vec![]).await;
        assert!(
            transcript.0.is_empty(),
            "{policy}: {:?}",
            transcript.calls()
        );
        assert_eq!(action, Action::await_change());
    }
}

// ---- FdfsCluster ----

fn cluster_fetch(groups: Vec<Value>, trackers: Option<Value>) -> Vec<Expect> {
    vec![
        get(
            format!("{FDFS}/storagegroups"),
            list("StorageGroup", "fdfs.dev/v1alpha1", groups),
        ),
        get(
            format!("{APPS}/statefulsets/main-tracker"),
            trackers.map_or(Reply::Status(404), Reply::Json),
        ),
    ]
}

fn cluster_apply(ready_trackers: i32) -> Vec<Expect> {
    vec![
        patch(
            format!("{CORE}/configmaps/main-tracker-config"),
            Reply::Echo,
        ),
        patch(format!("{CORE}/configmaps/main-storage-ids"), Reply::Echo),
        patch(
            format!("{CORE}/services/main-tracker-headless"),
            Reply::Echo,
        ),
        patch(format!("{CORE}/services/main-tracker"), Reply::Echo),
        patch(
            format!("{APPS}/statefulsets/main-tracker"),
            Reply::EchoOver(json!({"status": {
                "replicas": 1, "readyReplicas": ready_trackers, "updatedReplicas": 1}})),
        ),
        // One tracker: no disruption budget, and none left over.
        get(
            format!("{POLICY}/poddisruptionbudgets"),
            list("PodDisruptionBudget", "policy/v1", vec![]),
        ),
        // No Deployment of an earlier version left to remove.
        get(
            format!("{APPS}/deployments"),
            list("Deployment", "apps/v1", vec![]),
        ),
    ]
}

async fn run_cluster(
    cluster: FdfsCluster,
    trackers: &[String],
    script: Vec<Expect>,
) -> (Action, support::Transcript) {
    let (ctx, server) = support::context(trackers, script);
    let action = controller::reconcile_cluster(Arc::new(cluster), ctx)
        .await
        .expect("reconcile succeeds");
    (action, server.await.expect("API server task"))
}

#[tokio::test]
async fn cluster_create_applies_tracker_objects_and_lists_group_storages() {
    let data = tempfile::tempdir().expect("tempdir");
    let t = support::tracker("127.0.0.50", data.path()).await;
    let mut script = cluster_fetch(vec![group_json(2)], None);
    script.extend(cluster_apply(0));
    script.push(event(NS));
    script.push(patch(
        format!("{FDFS}/fdfsclusters/main/status"),
        Reply::EchoOver(cluster_json()),
    ));
    let (_, transcript) = run_cluster(cluster(), &[t.addr.to_string()], script).await;

    assert_eq!(transcript.event_reasons(), ["Created"]);
    let ids = transcript.body(
        Method::PATCH,
        &format!("{CORE}/configmaps/main-storage-ids"),
    );
    let text = ids["data"]["storage_ids.conf"].as_str().expect("ids");
    let id0 = naming::storage_id("group1", 0);
    assert!(
        text.contains(&format!(
            "{id0} group1 group1-0.group1.fdfs.svc.cluster.local:23000"
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!("{} group1 group1-1.", id0 + 1)),
        "{text}"
    );
    let headless = transcript.body(
        Method::PATCH,
        &format!("{CORE}/services/main-tracker-headless"),
    );
    assert_eq!(headless["spec"]["publishNotReadyAddresses"], true);
    assert_eq!(
        transcript.condition("Ready")["reason"],
        "WaitingForTrackers"
    );
    let groups = transcript.status()["groups"]
        .as_array()
        .expect("groups")
        .clone();
    assert_eq!(groups[0]["name"], "group1");
    assert_eq!(groups[0]["storageGroup"], "group1");
    assert_eq!(
        transcript.condition("Reconciling")["reason"],
        "WaitingForTrackers"
    );
    expect_health(
        &cluster_json(),
        &transcript,
        KStatus::InProgress,
        "Progressing",
    );
    t.stop(Duration::from_secs(1)).await;
}

/// A cluster that joins an old one using `storage_ids.conf`: its ConfigMap's lines.
fn joining_cluster_json() -> Value {
    let mut c = cluster_json();
    c["spec"]["trackers"] = json!({"replicas": 1, "external": ["10.20.0.11:22122"],
                                   "externalStorageIds": {"name": "old-ids"}});
    c["spec"]["settings"] = json!({"useStorageId": true});
    c
}

#[tokio::test]
async fn an_old_clusters_storage_ids_are_rendered_and_the_old_trackers_get_their_lines() {
    let data = tempfile::tempdir().expect("tempdir");
    let t = support::tracker("127.0.0.50", data.path()).await;
    let old_ids = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "old-ids", "namespace": NS},
        "data": {"storage_ids.conf": "100001 group1 10.20.0.21\n100002 group1 10.20.0.22\n"}});
    let pod = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "group1-0", "namespace": NS},
        "status": {"podIP": "10.244.1.9"}});
    let mut script = vec![
        get(
            format!("{FDFS}/storagegroups"),
            list("StorageGroup", "fdfs.dev/v1alpha1", vec![group_json(2)]),
        ),
        get(format!("{CORE}/configmaps/old-ids"), Reply::Json(old_ids)),
        get(
            format!("{APPS}/statefulsets/main-tracker"),
            Reply::Status(404),
        ),
    ];
    script.extend(cluster_apply(1));
    script.push(event(NS));
    script.push(get(format!("{CORE}/pods"), list("Pod", "v1", vec![pod])));
    script.push(patch(
        format!("{FDFS}/fdfsclusters/main/status"),
        Reply::EchoOver(joining_cluster_json()),
    ));
    let cluster: FdfsCluster = serde_json::from_value(joining_cluster_json()).expect("cluster");
    let (_, transcript) = run_cluster(cluster, &[t.addr.to_string()], script).await;

    let ids = transcript.body(
        Method::PATCH,
        &format!("{CORE}/configmaps/main-storage-ids"),
    );
    let text = ids["data"]["storage_ids.conf"].as_str().expect("ids");
    let id0 = naming::storage_id("group1", 0);
    let lines: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
    assert_eq!(
        lines,
        [
            "100001 group1 10.20.0.21".to_owned(),
            "100002 group1 10.20.0.22".to_owned(),
            format!("{id0} group1 group1-0.group1.fdfs.svc.cluster.local:23000"),
            format!(
                "{} group1 group1-1.group1.fdfs.svc.cluster.local:23000",
                id0 + 1
            ),
        ]
    );
    // Only group1-0 has an address yet.
    assert_eq!(
        transcript.status()["storageIdsForExternalTrackers"],
        json!([format!("{id0} group1 10.244.1.9:23000")])
    );
    t.stop(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn a_missing_storage_ids_config_map_builds_nothing_and_says_so() {
    let script = vec![
        get(
            format!("{FDFS}/storagegroups"),
            list("StorageGroup", "fdfs.dev/v1alpha1", vec![group_json(2)]),
        ),
        get(format!("{CORE}/configmaps/old-ids"), Reply::Status(404)),
        event(NS),
        patch(
            format!("{FDFS}/fdfsclusters/main/status"),
            Reply::EchoOver(joining_cluster_json()),
        ),
    ];
    let cluster: FdfsCluster = serde_json::from_value(joining_cluster_json()).expect("cluster");
    let (_, transcript) = run_cluster(cluster, &[], script).await;
    let ready = transcript.condition("Ready");
    assert_eq!(ready["status"], "False");
    assert_eq!(ready["reason"], "InvalidExternalStorageIds");
    assert!(
        ready["message"]
            .as_str()
            .is_some_and(|m| m.contains("old-ids") && m.contains("no such ConfigMap")),
        "{ready}"
    );
}

#[tokio::test]
async fn cluster_status_comes_from_the_trackers() {
    let data = tempfile::tempdir().expect("tempdir");
    let t = support::tracker("127.0.0.50", data.path()).await;
    let tracker = t.addr.to_string();
    let s = support::storage(
        "127.0.0.61",
        "group1",
        std::slice::from_ref(&tracker),
        data.path(),
    )
    .await;
    support::wait_status(&tracker, "group1", "127.0.0.61", StorageStatus::Active).await;
    let trackers_sts = json!({
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": "main-tracker", "namespace": NS},
        "spec": {"selector": {}, "template": {"metadata": {"annotations": {
            naming::CONFIG_HASH_ANNOTATION: "will-differ"}}}},
    });
    let mut script = cluster_fetch(vec![group_json(1)], Some(trackers_sts));
    script.extend(cluster_apply(1));
    script.push(event(NS));
    script.push(patch(
        format!("{FDFS}/fdfsclusters/main/status"),
        Reply::EchoOver(cluster_json()),
    ));
    let (action, transcript) = run_cluster(cluster(), std::slice::from_ref(&tracker), script).await;

    assert_eq!(transcript.event_reasons(), ["RollingRestart"]);
    assert_eq!(transcript.condition("Ready")["status"], "True");
    let status = transcript.status();
    assert_eq!(status["readyTrackers"], 1);
    assert_eq!(status["leader"], tracker);
    assert_eq!(status["groups"][0]["name"], "group1");
    assert_eq!(status["groups"][0]["members"], 1);
    assert_eq!(status["groups"][0]["activeMembers"], 1);
    expect_health(&cluster_json(), &transcript, KStatus::Current, "Healthy");
    assert_eq!(action, Action::requeue(Config::default().resync));
    s.stop(Duration::from_secs(1)).await;
    t.stop(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn cluster_without_image_is_invalid() {
    let mut c = cluster_json();
    c["spec"].as_object_mut().expect("spec").remove("image");
    let script = vec![
        get(
            format!("{FDFS}/storagegroups"),
            list("StorageGroup", "fdfs.dev/v1alpha1", vec![]),
        ),
        event(NS),
        patch(
            format!("{FDFS}/fdfsclusters/main/status"),
            Reply::EchoOver(c.clone()),
        ),
    ];
    let typed: FdfsCluster = serde_json::from_value(c.clone()).expect("cluster");
    let (action, transcript) = run_cluster(typed, &[], script).await;
    assert_eq!(transcript.event_reasons(), ["MissingImage"]);
    expect_health(&c, &transcript, KStatus::Failed, "Degraded");
    assert_eq!(transcript.condition("Ready")["reason"], "MissingImage");
    assert_eq!(action, Action::requeue(Config::default().invalid_interval));
}

#[tokio::test]
async fn a_tracker_rollout_without_progress_past_the_stall_timeout_is_stalled() {
    let data = tempfile::tempdir().expect("tempdir");
    let t = support::tracker("127.0.0.50", data.path()).await;
    let tracker = t.addr.to_string();
    let rolling = |c: &Value, events: usize| {
        let mut script = cluster_fetch(vec![], None);
        script.extend(cluster_apply(1));
        // The new tracker Pod never becomes ready: none of one is updated.
        script[6].reply = Reply::EchoOver(json!({"status": {
            "replicas": 2, "readyReplicas": 1, "updatedReplicas": 0}}));
        script.extend((0..events).map(|_| event(NS)));
        script.push(patch(
            format!("{FDFS}/fdfsclusters/main/status"),
            Reply::EchoOver(c.clone()),
        ));
        script
    };
    let c = cluster_json();
    let (_, first) = run_cluster(cluster(), std::slice::from_ref(&tracker), rolling(&c, 1)).await;
    assert_eq!(first.event_reasons(), ["Created"]);
    assert_eq!(first.condition("Reconciling")["reason"], "RollingUpdate");
    assert_eq!(first.condition("Ready")["status"], "False");
    expect_health(&c, &first, KStatus::InProgress, "Progressing");

    let mut seen = health::with_status(&c, first.status());
    seen["status"]["lastProgressTime"] = json!("2025-01-01T00:00:00Z");
    let typed: FdfsCluster = serde_json::from_value(seen.clone()).expect("cluster");
    let (_, stuck) = run_cluster(typed, std::slice::from_ref(&tracker), rolling(&seen, 2)).await;
    assert_eq!(
        stuck.event_reasons(),
        ["Created", "ProgressDeadlineExceeded"]
    );
    let stalled = stuck.condition("Stalled");
    assert_eq!(stalled["status"], "True");
    let message = stalled["message"].as_str().expect("message");
    assert!(
        message.contains("(RollingUpdate)") && message.contains("0 of 1 trackers updated"),
        "{message}"
    );
    expect_health(&seen, &stuck, KStatus::Failed, "Degraded");
    t.stop(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn trackers_are_asked_together_within_one_deadline() {
    let data = tempfile::tempdir().expect("tempdir");
    let t = support::tracker("127.0.0.50", data.path()).await;
    // A tracker address that accepts and never answers.
    let silent = tokio::net::TcpListener::bind("127.0.0.52:0")
        .await
        .expect("bind");
    let silent_addr = silent.local_addr().expect("addr");
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = silent.accept().await {
            held.push(s);
        }
    });
    let trackers = [silent_addr.to_string(), t.addr.to_string()];
    let (ctx, server) = support::context_with(&trackers, vec![], |c| {
        c.tracker_deadline = Duration::from_millis(300);
    });
    let answers = ctx.ask_trackers(&cluster(), None).await;
    let by_addr: std::collections::BTreeMap<String, Result<(), String>> = answers
        .views
        .iter()
        .map(|(a, v)| (a.to_string(), v.as_ref().map(|_| ()).map_err(Clone::clone)))
        .collect();
    assert_eq!(by_addr[&t.addr.to_string()], Ok(()));
    assert_eq!(
        by_addr[&silent_addr.to_string()],
        Err("no answer within 300ms".to_owned())
    );
    drop(ctx);
    server.await.expect("no API call");
    holder.abort();
    t.stop(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn a_group_gets_its_finalizer_before_anything_is_built() {
    let data = tempfile::tempdir().expect("tempdir");
    let t = support::tracker("127.0.0.50", data.path()).await;
    let mut sg = group_json(1);
    sg["metadata"]["finalizers"] = json!(["other.example/keep"]);
    let mut script = group_fetch(&sg, None, vec![]);
    script.insert(
        2,
        patch(
            format!("{FDFS}/storagegroups/group1"),
            Reply::EchoOver(sg.clone()),
        ),
    );
    script.extend(group_apply(false, false));
    script.push(event(NS));
    script.push(status_write(&sg));
    let typed: StorageGroup = serde_json::from_value(sg).expect("group");
    let (_, transcript) = run_group(typed, &[t.addr.to_string()], script).await;
    let body = transcript.body(Method::PATCH, &format!("{FDFS}/storagegroups/group1"));
    assert_eq!(
        body["metadata"]["finalizers"],
        json!(["other.example/keep", "fdfs.dev/storage-group"])
    );
    expect_health(
        &group_json(1),
        &transcript,
        KStatus::InProgress,
        "Progressing",
    );
    t.stop(Duration::from_secs(1)).await;
}

/// A group being deleted, with its storage on 127.0.0.61 registered in a real tracker.
async fn deleting_group(
    data: &std::path::Path,
    confirm: bool,
) -> (
    fdfs_node::tracker::RunningTracker,
    fdfs_node::storage::RunningStorage,
    Value,
) {
    let t = support::tracker("127.0.0.50", data).await;
    let tracker = t.addr.to_string();
    let s = support::storage("127.0.0.61", "group1", std::slice::from_ref(&tracker), data).await;
    support::wait_status(&tracker, "group1", "127.0.0.61", StorageStatus::Active).await;
    let mut sg = group_json(1);
    sg["metadata"]["deletionTimestamp"] = json!("2025-03-01T00:00:00Z");
    if confirm {
        sg["metadata"]["annotations"] = json!({"fdfs.dev/confirm-delete": "group1"});
    }
    (t, s, sg)
}

#[tokio::test]
async fn deleting_a_group_whose_members_are_registered_waits_for_a_confirmation() {
    let data = tempfile::tempdir().expect("tempdir");
    let (t, s, sg) = deleting_group(data.path(), false).await;
    let script = vec![
        get(
            format!("{FDFS}/fdfsclusters/main"),
            Reply::Json(cluster_json()),
        ),
        event(NS),
        status_write(&sg),
    ];
    let typed: StorageGroup = serde_json::from_value(sg.clone()).expect("group");
    let (action, transcript) = run_group(typed, &[t.addr.to_string()], script).await;
    assert_eq!(transcript.event_reasons(), ["DeletionNotConfirmed"]);
    let stalled = transcript.condition("Stalled");
    assert_eq!(stalled["reason"], "DeletionNotConfirmed");
    assert!(
        stalled["message"]
            .as_str()
            .is_some_and(|m| m.contains("fdfs.dev/confirm-delete=group1")),
        "{stalled}"
    );
    assert_eq!(action, Action::requeue(Config::default().invalid_interval));
    // The storage still serves and is still registered.
    assert!(s.node.is_active_everywhere());
    expect_health(&sg, &transcript, KStatus::Terminating, "Progressing");
    s.stop(Duration::from_secs(1)).await;
    t.stop(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn a_confirmed_deletion_stops_the_storages_removes_them_and_releases_the_group() {
    let data = tempfile::tempdir().expect("tempdir");
    let (t, s, sg) = deleting_group(data.path(), true).await;
    let tracker = t.addr.to_string();
    let typed: StorageGroup = serde_json::from_value(sg.clone()).expect("group");
    let cluster_get = || {
        get(
            format!("{FDFS}/fdfsclusters/main"),
            Reply::Json(cluster_json()),
        )
    };

    // 1. The StatefulSet is scaled to zero.
    let script = vec![
        cluster_get(),
        get(
            format!("{APPS}/statefulsets/group1"),
            Reply::Json(statefulset(1, "any")),
        ),
        patch(
            format!("{APPS}/statefulsets/group1"),
            Reply::Json(statefulset(0, "any")),
        ),
        event(NS),
    ];
    let (_, first) = run_group(typed.clone(), std::slice::from_ref(&tracker), script).await;
    let scaled = first.body(Method::PATCH, &format!("{APPS}/statefulsets/group1"));
    assert_eq!(scaled["spec"]["replicas"], 0);
    assert_eq!(first.event_reasons(), ["StoppingStorages"]);

    // 2. The storage has stopped: it leaves every tracker, the volumes are said to stay, and
    //    the finalizer goes.
    s.stop(Duration::from_secs(1)).await;
    support::wait_status(&tracker, "group1", "127.0.0.61", StorageStatus::Offline).await;
    let mut released = sg.clone();
    released["metadata"]["finalizers"] = json!([]);
    let script = vec![
        cluster_get(),
        get(
            format!("{APPS}/statefulsets/group1"),
            Reply::Json(statefulset(0, "any")),
        ),
        get(format!("{CORE}/pods"), list("Pod", "v1", vec![])),
        event(NS),
        event(NS),
        patch(
            format!("{FDFS}/storagegroups/group1"),
            Reply::Json(released),
        ),
    ];
    let (action, second) = run_group(typed, std::slice::from_ref(&tracker), script).await;
    assert_eq!(second.event_reasons(), ["MemberRemoved", "Deleted"]);
    let kept = &second.0[4].body["note"];
    assert!(
        kept.as_str().is_some_and(|n| n.contains("Retain")),
        "{kept}"
    );
    let body = second.body(Method::PATCH, &format!("{FDFS}/storagegroups/group1"));
    assert_eq!(body["metadata"]["finalizers"], json!([]));
    assert_eq!(action, Action::await_change());
    let client =
        fdfs_node::client::Client::new(fdfs_node::client::ClientConfig::new(vec![tracker.clone()]))
            .await
            .expect("client");
    let listed = client.list_storages("group1").await.unwrap_or_default();
    assert!(
        listed
            .iter()
            .all(|m| m.status == StorageStatus::Deleted as u8),
        "{listed:?}"
    );
    t.stop(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn a_member_is_replaced_once_the_others_are_ready_and_only_then() {
    let data = tempfile::tempdir().expect("tempdir");
    let t = support::tracker("127.0.0.50", data.path()).await;
    let tracker = t.addr.to_string();
    let trackers = vec![tracker.clone()];
    let s1 = support::active_storage("127.0.0.62", &trackers, data.path()).await;
    let hash = group_hash(&group(2));
    let pods = vec![pod(0, "127.0.0.61"), pod(1, "127.0.0.62")];
    let asking = |ordinal: &str| {
        let mut sg = group_json(2);
        sg["metadata"]["annotations"] = json!({"fdfs.dev/replace-member": ordinal});
        sg
    };

    // Replacing ordinal 1 while ordinal 0 runs no storage: it waits, nothing is deleted.
    let sg = asking("1");
    let mut script = group_fetch(&sg, Some(statefulset(2, &hash)), pods.clone());
    script.extend(group_apply(true, false));
    script.push(status_write(&sg));
    let typed: StorageGroup = serde_json::from_value(sg.clone()).expect("group");
    let (_, waiting) = run_group(typed, &trackers, script).await;
    assert_eq!(
        waiting.condition("Reconciling")["reason"],
        "ReplacementWaits"
    );
    expect_health(&sg, &waiting, KStatus::InProgress, "Progressing");

    // An ordinal the group does not have: Stalled until corrected.
    let sg = asking("7");
    let mut script = group_fetch(&sg, Some(statefulset(2, &hash)), pods.clone());
    script.extend(group_apply(true, false));
    script.push(event(NS));
    script.push(status_write(&sg));
    let typed: StorageGroup = serde_json::from_value(sg.clone()).expect("group");
    let (_, invalid) = run_group(typed, &trackers, script).await;
    assert_eq!(invalid.event_reasons(), ["InvalidReplaceMember"]);
    assert_eq!(
        invalid.condition("Stalled")["reason"],
        "InvalidReplaceMember"
    );
    expect_health(&sg, &invalid, KStatus::Failed, "Degraded");

    // Ordinal 0 ACTIVE and caught up too: replacing ordinal 1 deletes its claim and Pod,
    // and the request is taken away.
    let s0 = support::active_storage("127.0.0.61", &trackers, data.path()).await;
    support::wait_held_elsewhere(&tracker, "group1", "127.0.0.62").await;
    let sg = asking("1");
    let mut script = group_fetch(&sg, Some(statefulset(2, &hash)), pods);
    script.push(delete(
        format!("{CORE}/persistentvolumeclaims/data-group1-1"),
        Reply::Json(json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                           "metadata": {"name": "data-group1-1", "namespace": NS}})),
    ));
    script.push(delete(
        format!("{CORE}/pods/group1-1"),
        Reply::Json(pod(1, "127.0.0.62")),
    ));
    script.push(patch(
        format!("{FDFS}/storagegroups/group1"),
        Reply::Json(group_json(2)),
    ));
    script.extend(group_apply(true, false));
    script.push(event(NS));
    script.push(status_write(&sg));
    let typed: StorageGroup = serde_json::from_value(sg.clone()).expect("group");
    let (_, started) = run_group(typed, &trackers, script).await;
    let cleared = started.body(Method::PATCH, &format!("{FDFS}/storagegroups/group1"));
    assert_eq!(
        cleared["metadata"]["annotations"],
        json!({"fdfs.dev/replace-member": null, "fdfs.dev/replace-member-discard-unsent": null})
    );
    assert_eq!(started.event_reasons(), ["ReplacingMember"]);
    assert_eq!(
        started.condition("Reconciling")["reason"],
        "ReplacingMember"
    );
    expect_health(&sg, &started, KStatus::InProgress, "Progressing");

    // What Kubernetes does next: the Pod goes, its claim with it, and a new Pod starts on an
    // empty volume at the same name (and here the same address). It ends with every file.
    let client =
        fdfs_node::client::Client::new(fdfs_node::client::ClientConfig::new(trackers.clone()))
            .await
            .expect("client");
    let mut files = Vec::new();
    for i in 0..20u32 {
        let data: Vec<u8> = (0..(1000 + i * 311)).map(|b| (b * 7 + i) as u8).collect();
        let id = client
            .upload_bytes(&data, "bin", Some("group1"))
            .await
            .expect("upload");
        files.push((id, data));
    }
    let volume = s1.node.config.base_path.clone();
    let on_volume = |id: &fdfs_node::fileid::FileId| volume.join(id.remote.relative_path());
    support::wait_until("every file on both members", || {
        files.iter().all(|(id, _)| on_volume(id).exists())
    })
    .await;
    s1.stop(Duration::from_secs(1)).await;
    std::fs::remove_dir_all(&volume).expect("the claim goes");
    let s1 = support::storage("127.0.0.62", "group1", &trackers, data.path()).await;
    support::wait_until("the replaced member holds every file again", || {
        files
            .iter()
            .all(|(id, data)| std::fs::read(on_volume(id)).is_ok_and(|b| b == *data))
    })
    .await;
    s0.stop(Duration::from_secs(1)).await;
    s1.stop(Duration::from_secs(1)).await;
    t.stop(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn storage_groups_come_from_the_watch_store_once_it_has_listed() {
    use kube::runtime::{reflector, watcher};
    let data = tempfile::tempdir().expect("tempdir");
    let t = support::tracker("127.0.0.50", data.path()).await;
    // The store knows group1; no LIST of StorageGroups reaches the API server.
    let mut script = cluster_fetch(vec![], None);
    script.remove(0);
    script.extend(cluster_apply(0));
    script.push(event(NS));
    script.push(patch(
        format!("{FDFS}/fdfsclusters/main/status"),
        Reply::EchoOver(cluster_json()),
    ));
    let (ctx, server) = support::context(&[t.addr.to_string()], script);
    let (store, mut writer) = reflector::store::<StorageGroup>();
    writer.apply_watcher_event(&watcher::Event::Init);
    writer.apply_watcher_event(&watcher::Event::InitApply(group(2)));
    writer.apply_watcher_event(&watcher::Event::InitDone);
    ctx.share_group_store(None, store);
    controller::reconcile_cluster(Arc::new(cluster()), ctx)
        .await
        .expect("reconcile succeeds");
    let transcript = server.await.expect("API server task");
    // The storage ids the store's group needs are rendered.
    let ids = transcript.body(
        Method::PATCH,
        &format!("{CORE}/configmaps/main-storage-ids"),
    );
    let text = ids["data"]["storage_ids.conf"].as_str().expect("ids");
    assert!(text.contains("group1-1.group1.fdfs.svc"), "{text}");
    expect_health(
        &cluster_json(),
        &transcript,
        KStatus::InProgress,
        "Progressing",
    );
    drop(writer);
    t.stop(Duration::from_secs(1)).await;
}

/// The Pod template annotations a group reconcile applies when its cluster checks HTTP
/// tokens with the Secret `fdfs-token`, holding `secret` (or missing).
async fn applied_with_token_secret(secret: Option<&str>) -> Value {
    let data = tempfile::tempdir().expect("tempdir");
    let t = support::tracker("127.0.0.50", data.path()).await;
    let mut cluster = cluster_json();
    cluster["spec"]["settings"] =
        json!({"httpTokenSecretRef": {"name": "fdfs-token", "key": "secret"}});
    let sg = group_json(1);
    let mut script = group_fetch(&sg, None, vec![]);
    script[0] = get(format!("{FDFS}/fdfsclusters/main"), Reply::Json(cluster));
    script.push(get(
        format!("{CORE}/secrets/fdfs-token"),
        match secret {
            Some(value) => {
                let secret = k8s_openapi::api::core::v1::Secret {
                    metadata: kube::api::ObjectMeta {
                        name: Some("fdfs-token".into()),
                        namespace: Some(NS.into()),
                        ..Default::default()
                    },
                    data: Some(
                        [(
                            "secret".to_owned(),
                            k8s_openapi::ByteString(value.as_bytes().to_vec()),
                        )]
                        .into(),
                    ),
                    ..Default::default()
                };
                let mut json = serde_json::to_value(secret).expect("secret");
                json["apiVersion"] = "v1".into();
                json["kind"] = "Secret".into();
                Reply::Json(json)
            }
            None => Reply::Status(404),
        },
    ));
    script.extend(group_apply(false, false));
    script.push(event(NS));
    script.push(status_write(&sg));
    let (_, transcript) = run_group(group(1), &[t.addr.to_string()], script).await;
    t.stop(Duration::from_secs(1)).await;
    transcript.body(Method::PATCH, &format!("{APPS}/statefulsets/group1"))["spec"]["template"]
        ["metadata"]["annotations"]
        .clone()
}

#[tokio::test]
async fn a_rotated_token_secret_rolls_the_storages() {
    let first = applied_with_token_secret(Some("s3cret-1")).await;
    let again = applied_with_token_secret(Some("s3cret-1")).await;
    let rotated = applied_with_token_secret(Some("s3cret-2")).await;
    let missing = applied_with_token_secret(None).await;
    let hash = |a: &Value| a[naming::TOKEN_SECRET_HASH_ANNOTATION].clone();
    assert!(hash(&first).is_string(), "{first}");
    assert_eq!(
        hash(&first),
        hash(&again),
        "the same secret, the same template"
    );
    assert_ne!(
        hash(&first),
        hash(&rotated),
        "a rotated secret changes the template"
    );
    assert!(hash(&missing).is_null(), "nothing to hash: {missing}");
    assert!(
        !first.to_string().contains("s3cret"),
        "the secret itself stays out"
    );
    // The configuration is the same throughout: only the secret's hash rolls the Pods.
    assert_eq!(
        first[naming::CONFIG_HASH_ANNOTATION],
        rotated[naming::CONFIG_HASH_ANNOTATION]
    );
}

fn outside_service(ordinal: u32) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": format!("group1-{ordinal}-outside"), "namespace": NS,
                     "ownerReferences": [{"apiVersion": "fdfs.dev/v1alpha1",
                         "kind": "StorageGroup", "name": "group1", "uid": "sg-uid",
                         "controller": true}]},
    })
}

#[tokio::test]
async fn exposed_storages_get_their_services_and_list_the_load_balancers_addresses() {
    let data = tempfile::tempdir().expect("tempdir");
    let t = support::tracker("127.0.0.50", data.path()).await;
    let mut sg = group_json(1);
    sg["spec"]["expose"] = json!({"type": "LoadBalancer"});
    // It had two storages before: the second one's Service is left over.
    sg["status"] = json!({"outsideAddresses": [
        {"pod": "group1-0"}, {"pod": "group1-1", "address": "203.0.113.11:23000"}]});
    let mut script = group_fetch(&sg, None, vec![]);
    let mut apply = group_apply(false, false);
    let budget = apply.split_off(3);
    script.extend(apply);
    script.push(patch(
        format!("{CORE}/services/group1-0-outside"),
        Reply::EchoOver(json!({"status": {"loadBalancer": {"ingress": [{"ip": "203.0.113.10"}]}}})),
    ));
    let headless = json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "group1", "namespace": NS,
                     "ownerReferences": outside_service(0)["metadata"]["ownerReferences"]}});
    script.push(get(
        format!("{CORE}/services"),
        list(
            "Service",
            "v1",
            vec![headless, outside_service(0), outside_service(1)],
        ),
    ));
    script.push(delete(
        format!("{CORE}/services/group1-1-outside"),
        Reply::Json(outside_service(1)),
    ));
    script.extend(budget);
    script.push(event(NS));
    script.push(status_write(&sg));
    let sg_obj: StorageGroup = serde_json::from_value(sg.clone()).expect("group");
    let (_, transcript) = run_group(sg_obj, &[t.addr.to_string()], script).await;

    let service = transcript.body(Method::PATCH, &format!("{CORE}/services/group1-0-outside"));
    assert_eq!(service["spec"]["type"], "LoadBalancer");
    assert_eq!(
        service["spec"]["selector"]["statefulset.kubernetes.io/pod-name"],
        "group1-0"
    );
    let services = transcript
        .0
        .iter()
        .find(|s| s.method == Method::GET && s.path == format!("{CORE}/services"))
        .expect("services listed");
    assert!(
        services.query.contains("fdfs.dev%2Fstorage-group%3Dgroup1"),
        "{}",
        services.query
    );
    assert_eq!(
        transcript.status()["outsideAddresses"],
        json!([{"pod": "group1-0", "address": "203.0.113.10:23000"}])
    );
    t.stop(Duration::from_secs(1)).await;
}

/// A group's Pod made from StatefulSet revision `revision`.
fn pod_at_revision(ordinal: u32, ip: &str, revision: &str) -> Value {
    let mut pod = pod(ordinal, ip);
    pod["metadata"]["labels"] = json!({naming::POD_REVISION_LABEL: revision});
    pod
}

/// The group's StatefulSet in the middle of a rolling update from revision `old` to `new`.
fn statefulset_rolling(replicas: i32) -> Value {
    let mut sts = statefulset(replicas, &group_hash(&group(replicas)));
    sts["status"]["currentRevision"] = "old".into();
    sts["status"]["updateRevision"] = "new".into();
    sts
}

fn applied_partition(t: &support::Transcript) -> Value {
    t.body(Method::PATCH, &format!("{APPS}/statefulsets/group1"))["spec"]["updateStrategy"]
        ["rollingUpdate"]["partition"]
        .clone()
}

/// One group reconcile in a rolling update whose Pod of ordinal 1 already runs the new
/// template; `cluster` is what the API server holds of the FdfsCluster; `events` how many
/// Events it publishes.
async fn rolling_reconcile(
    trackers: &[String],
    cluster: Value,
    events: usize,
) -> support::Transcript {
    rolling_reconcile_of(group_json(2), trackers, cluster, events).await
}

/// [`rolling_reconcile`] of the StorageGroup `sg` (with the status it has).
async fn rolling_reconcile_of(
    sg: Value,
    trackers: &[String],
    cluster: Value,
    events: usize,
) -> support::Transcript {
    let pods = vec![
        pod_at_revision(0, "127.0.0.61", "old"),
        pod_at_revision(1, "127.0.0.62", "new"),
    ];
    let mut script = group_fetch(&sg, Some(statefulset_rolling(2)), pods);
    script[0] = get(format!("{FDFS}/fdfsclusters/main"), Reply::Json(cluster));
    script.extend(group_apply(true, false));
    script.extend((0..events).map(|_| event(NS)));
    script.push(status_write(&sg));
    let typed: StorageGroup = serde_json::from_value(sg).expect("group");
    run_group(typed, trackers, script).await.1
}

#[tokio::test]
async fn an_upgrade_steps_to_the_next_storage_only_once_the_restarted_one_is_back() {
    let data = tempfile::tempdir().expect("tempdir");
    let t = support::tracker("127.0.0.50", data.path()).await;
    let trackers = vec![t.addr.to_string()];
    let s0 = support::active_storage("127.0.0.61", &trackers, data.path()).await;
    let s1 = support::active_storage("127.0.0.62", &trackers, data.path()).await;
    // The restarted storage is not back yet.
    s1.stop(Duration::from_secs(1)).await;
    support::wait_status(&trackers[0], "group1", "127.0.0.62", StorageStatus::Offline).await;
    let transcript = rolling_reconcile(&trackers, cluster_json(), 1).await;
    assert_eq!(transcript.event_reasons(), ["MemberOffline"]);
    assert_eq!(
        applied_partition(&transcript),
        1,
        "ordinal 0 keeps its old template"
    );
    let reconciling = transcript.condition("Reconciling");
    assert_eq!(reconciling["reason"], "RollingUpdate");
    let message = reconciling["message"].as_str().unwrap_or_default();
    assert!(message.contains("OFFLINE"), "{message}");
    assert_eq!(transcript.condition("Ready")["status"], "False");
    // The same wait past the stall timeout: Stalled, with a Warning Event, and still held.
    let mut seen = health::with_status(&group_json(2), transcript.status());
    seen["status"]["lastProgressTime"] = json!("2025-01-01T00:00:00Z");
    let stuck = rolling_reconcile_of(seen.clone(), &trackers, cluster_json(), 1).await;
    assert_eq!(stuck.event_reasons(), ["ProgressDeadlineExceeded"]);
    let stalled = stuck.condition("Stalled");
    assert_eq!(stalled["status"], "True");
    let message = stalled["message"].as_str().unwrap_or_default();
    assert!(message.contains("(RollingUpdate)"), "{message}");
    assert_eq!(applied_partition(&stuck), 1);
    expect_health(&seen, &stuck, KStatus::Failed, "Degraded");

    // Back, ACTIVE and caught up: the next ordinal may restart.
    let s1 = support::active_storage("127.0.0.62", &trackers, data.path()).await;
    let transcript = rolling_reconcile(&trackers, cluster_json(), 0).await;
    assert_eq!(applied_partition(&transcript), 0);

    // While the trackers roll, no storage does.
    let mut rolling_cluster = cluster_json();
    rolling_cluster["status"] = json!({"observedGeneration": 1, "conditions": [{
        "type": "Progressing", "status": "True", "reason": "RollingUpdate",
        "message": "rolling update: 0 of 1 trackers updated",
        "lastTransitionTime": "2025-01-01T00:00:00Z"}]});
    let transcript = rolling_reconcile(&trackers, rolling_cluster, 0).await;
    assert_eq!(applied_partition(&transcript), 2, "every storage holds");
    let message = transcript.condition("Reconciling")["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(message.contains("0 of 1 trackers updated"), "{message}");

    s0.stop(Duration::from_secs(1)).await;
    s1.stop(Duration::from_secs(1)).await;
    t.stop(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn a_group_no_longer_exposed_deletes_its_outside_services() {
    let data = tempfile::tempdir().expect("tempdir");
    let t = support::tracker("127.0.0.50", data.path()).await;
    let mut sg = group_json(1);
    // Exposed before (its status lists an outside address); `spec.expose` is gone now.
    sg["status"] = json!({"outsideAddresses": [
        {"pod": "group1-0", "address": "203.0.113.10:23000"}]});
    let mut script = group_fetch(&sg, None, vec![]);
    let mut apply = group_apply(false, false);
    let budget = apply.split_off(3);
    script.extend(apply);
    script.push(get(
        format!("{CORE}/services"),
        list("Service", "v1", vec![outside_service(0)]),
    ));
    script.push(delete(
        format!("{CORE}/services/group1-0-outside"),
        Reply::Json(outside_service(0)),
    ));
    script.extend(budget);
    script.push(event(NS));
    script.push(status_write(&sg));
    let typed: StorageGroup = serde_json::from_value(sg.clone()).expect("group");
    let (_, transcript) = run_group(typed, &[t.addr.to_string()], script).await;
    assert!(
        transcript.status().get("outsideAddresses").is_none(),
        "{}",
        transcript.status()
    );
    t.stop(Duration::from_secs(1)).await;
}
