//! GitOps health: the Argo CD health script as shipped (chart file and the `argocd-cm`
//! patch in the docs), run by a real Lua 5.1 interpreter, and every status example of
//! `docs/gitops.md` read by the kstatus rules and by that script.

mod support;

use std::path::Path;

use serde_json::{Value, json};
use support::health::{self, ARGOCD_HEALTH_LUA, KStatus};

fn repo_file(path: &str) -> String {
    let full = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path);
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{}: {e}", full.display()))
}

#[test]
fn the_argocd_cm_patch_carries_the_chart_script_for_both_kinds() {
    let patch: Value =
        serde_norway::from_str(&repo_file("docs/argocd-cm.yaml")).expect("argocd-cm.yaml parses");
    let data = patch["data"].as_object().expect("data");
    let keys: Vec<&str> = data.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "resource.customizations.health.fdfs.dev_FdfsCluster",
            "resource.customizations.health.fdfs.dev_StorageGroup"
        ]
    );
    for (key, script) in data {
        assert_eq!(script.as_str(), Some(ARGOCD_HEALTH_LUA), "{key}");
    }
    let readme = repo_file("charts/fdfs-operator/README.md");
    assert!(readme.contains("files/argocd/health.lua"), "chart README");
}

fn status_of(conditions: Value) -> Value {
    json!({"observedGeneration": 1, "conditions": conditions})
}

fn cond(type_: &str, status: &str, reason: &str) -> Value {
    json!({"type": type_, "status": status, "reason": reason, "message": format!("{type_} {reason}"),
           "lastTransitionTime": "2026-01-01T00:00:00Z"})
}

#[test]
fn the_health_script_maps_each_state_in_order() {
    let meta = json!({"name": "group1", "namespace": "fdfs", "generation": 1});
    let object = |status: Option<Value>| {
        let mut o = json!({"apiVersion": "fdfs.dev/v1alpha1", "kind": "StorageGroup",
                           "metadata": meta, "spec": {}});
        if let Some(status) = status {
            o["status"] = status;
        }
        o
    };
    let ready = cond("Ready", "True", "Ready");
    let not_ready = cond("Ready", "False", "WaitingForMembers");
    let cases: Vec<(&str, Value, &str, &str)> = vec![
        (
            "no status",
            object(None),
            "Progressing",
            "waiting for the operator's first status",
        ),
        (
            "conditions not written yet",
            object(Some(json!({}))),
            "Progressing",
            "waiting for the operator's Ready condition",
        ),
        (
            "ready",
            object(Some(status_of(json!([
                ready,
                cond("Reconciling", "False", "Reconciled")
            ])))),
            "Healthy",
            "Ready Ready",
        ),
        (
            "paused wins over everything",
            object(Some(status_of(json!([
                cond("Stalled", "True", "X"),
                cond("Paused", "True", "ReconcilePaused")
            ])))),
            "Suspended",
            "Paused ReconcilePaused",
        ),
        (
            "stalled before reconciling",
            object(Some(status_of(json!([
                not_ready,
                cond("Reconciling", "True", "RollingUpdate"),
                cond("Stalled", "True", "ProgressDeadlineExceeded")
            ])))),
            "Degraded",
            "Stalled ProgressDeadlineExceeded",
        ),
        (
            "reconciling before degraded",
            object(Some(status_of(json!([
                not_ready,
                cond("Reconciling", "True", "RollingUpdate"),
                cond("Degraded", "True", "MemberOffline")
            ])))),
            "Progressing",
            "Reconciling RollingUpdate",
        ),
        (
            "degraded while ready",
            object(Some(status_of(json!([
                ready,
                cond("Degraded", "True", "TrackerUnreachable")
            ])))),
            "Degraded",
            "Degraded TrackerUnreachable",
        ),
        (
            "not ready, nothing else said",
            object(Some(status_of(json!([not_ready])))),
            "Progressing",
            "Ready WaitingForMembers",
        ),
    ];
    for (name, obj, want, message) in cases {
        assert_eq!(
            health::argocd(&obj),
            (want.to_owned(), message.to_owned()),
            "{name}"
        );
    }

    let mut deleting = object(Some(status_of(json!([ready]))));
    deleting["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
    assert_eq!(
        health::argocd(&deleting),
        ("Progressing".into(), "being deleted".into())
    );
    assert_eq!(health::kstatus(&deleting), KStatus::Terminating);

    let mut behind = object(Some(status_of(json!([ready]))));
    behind["metadata"]["generation"] = json!(2);
    assert_eq!(
        health::argocd(&behind),
        (
            "Progressing".into(),
            "the operator has not acted on generation 2 yet (status describes 1)".into()
        )
    );
    assert_eq!(health::kstatus(&behind), KStatus::InProgress);
}

/// `(first line, YAML)` of each ```` ```yaml crd ```` block of a guide.
fn crd_blocks(markdown: &str) -> Vec<(String, String)> {
    let mut blocks = Vec::new();
    let mut current: Option<Vec<&str>> = None;
    for line in markdown.lines() {
        match &mut current {
            None if line.trim() == "```yaml crd" => current = Some(Vec::new()),
            Some(_) if line.trim() == "```" => {
                let lines = current.take().unwrap_or_default();
                let first = lines.first().copied().unwrap_or_default().to_owned();
                blocks.push((first, lines.join("\n")));
            }
            Some(lines) => lines.push(line),
            None => {}
        }
    }
    blocks
}

#[test]
fn every_state_shown_in_the_guide_reads_as_it_says() {
    let guide = repo_file("docs/gitops.md");
    let blocks = crd_blocks(&guide);
    assert!(blocks.len() >= 5, "{} examples", blocks.len());
    for (first, yaml) in blocks {
        let expected = first
            .strip_prefix("# kstatus: ")
            .and_then(|rest| rest.split_once(" · Argo CD: "))
            .unwrap_or_else(|| panic!("example without its expected health: {first}"));
        let kstatus = match expected.0 {
            "Current" => KStatus::Current,
            "InProgress" => KStatus::InProgress,
            "Failed" => KStatus::Failed,
            "Terminating" => KStatus::Terminating,
            other => panic!("unknown kstatus {other}"),
        };
        let obj: Value = serde_norway::from_str(&yaml).expect("example parses");
        health::expect(&obj, kstatus, expected.1);
    }
}
