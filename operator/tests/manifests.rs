//! Every object the build step makes, the CRDs and the samples in `examples/`, validated
//! against the official Kubernetes schemas (kubernetes-validate, strict) by
//! `operator/tests/validate-manifests.sh`; the samples also through the operator's own
//! validation and the CRDs' CEL rules.

use std::path::{Path, PathBuf};
use std::process::Command;

use fdfs_operator::build::{self, BuildOptions, conf::GroupIds};
use fdfs_operator::crd::{FdfsCluster, StorageGroup};
use fdfs_operator::validate::{validate_cluster, validate_storage_group};
use kube::core::cel::Validator;
use kube::{CustomResourceExt, ResourceExt};
use serde::Deserialize;
use serde::Serialize;
use serde_json::Value;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("repository root")
        .to_path_buf()
}

/// Runs the validation script; returns whether it passed, and its output.
fn validate(paths: &[&Path]) -> (bool, String) {
    // The venv goes next to the test binaries, in this build's target directory.
    let target = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("target directory")
        .to_path_buf();
    let output = Command::new("bash")
        .arg(repo().join("operator/tests/validate-manifests.sh"))
        .args(paths)
        .env("CARGO_TARGET_DIR", target)
        .output()
        .expect("bash runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

#[derive(Debug)]
struct Sample {
    clusters: Vec<FdfsCluster>,
    groups: Vec<StorageGroup>,
    docs: Vec<Value>,
}

fn load(path: &Path) -> Sample {
    let text = std::fs::read_to_string(path).expect("sample readable");
    let mut sample = Sample {
        clusters: vec![],
        groups: vec![],
        docs: vec![],
    };
    for doc in serde_norway::Deserializer::from_str(&text) {
        let value = Value::deserialize(doc).expect("YAML");
        match value["kind"].as_str() {
            Some("FdfsCluster") => {
                sample
                    .clusters
                    .push(serde_json::from_value(value.clone()).expect("cluster"));
            }
            Some("StorageGroup") => {
                sample
                    .groups
                    .push(serde_json::from_value(value.clone()).expect("group"));
            }
            other => panic!("{}: unexpected kind {other:?}", path.display()),
        }
        sample.docs.push(value);
    }
    sample
}

fn write_yaml<T: Serialize>(dir: &Path, name: &str, obj: &T) {
    let text = serde_norway::to_string(obj).expect("YAML");
    std::fs::write(dir.join(format!("{name}.yaml")), text).expect("write");
}

/// Writes every object built from `clusters` and `groups` into `dir`, with each group at
/// `replicas_for(group)` storages.
fn build_all(
    dir: &Path,
    tag: &str,
    clusters: &[FdfsCluster],
    groups: &[StorageGroup],
    default_image: Option<&str>,
) -> usize {
    let opts = BuildOptions::default();
    let mut written = 0;
    for cluster in clusters {
        let mut cluster = cluster.clone();
        cluster
            .metadata
            .namespace
            .get_or_insert_with(|| "default".into());
        cluster.metadata.uid = Some("00000000-0000-0000-0000-000000000001".into());
        let valid = validate_cluster(&cluster, default_image).expect("sample cluster is valid");
        let mut ids = Vec::new();
        for sg in groups
            .iter()
            .filter(|g| g.spec.cluster_ref == cluster.name_any())
        {
            let mut sg = sg.clone();
            sg.metadata.namespace = cluster.metadata.namespace.clone();
            sg.metadata.uid = Some("00000000-0000-0000-0000-000000000002".into());
            let valid_group = validate_storage_group(&sg, Some(&cluster), groups, default_image)
                .unwrap_or_else(|e| panic!("{} is invalid: {e}", sg.name_any()));
            ids.push(GroupIds {
                group_name: valid_group.group_name.clone(),
                storage_group: sg.name_any(),
                replicas: sg.spec.replicas,
                writable: sg.spec.replicas,
                ..Default::default()
            });
            for replicas in [sg.spec.replicas, 1] {
                let objects = build::group_objects(&cluster, &sg, &valid_group, replicas, &opts);
                let base = format!("{tag}-{}-{replicas}", sg.name_any());
                write_yaml(dir, &format!("{base}-configmap"), &objects.config);
                write_yaml(dir, &format!("{base}-service"), &objects.headless);
                write_yaml(dir, &format!("{base}-statefulset"), &objects.statefulset);
                written += 3;
                if let Some(pdb) = &objects.pdb {
                    write_yaml(dir, &format!("{base}-pdb"), pdb);
                    written += 1;
                }
                for service in &objects.outside {
                    write_yaml(dir, &format!("{base}-{}", service.name_any()), service);
                    written += 1;
                }
            }
        }
        let objects = build::tracker_objects(&cluster, &valid, &ids, &opts);
        let base = format!("{tag}-{}", cluster.name_any());
        write_yaml(dir, &format!("{base}-tracker-config"), &objects.config);
        write_yaml(dir, &format!("{base}-storage-ids"), &objects.storage_ids);
        write_yaml(dir, &format!("{base}-headless"), &objects.headless);
        write_yaml(dir, &format!("{base}-client"), &objects.client);
        write_yaml(dir, &format!("{base}-trackers"), &objects.statefulset);
        written += 5;
    }
    written
}

#[test]
fn built_objects_crds_and_samples_pass_the_official_schemas() {
    let built = tempfile::tempdir().expect("tempdir");
    let mut count = 0;
    for (tag, file) in [
        ("cluster", "examples/cluster.yaml"),
        ("minimal", "examples/minimal.yaml"),
        ("outside", "examples/outside-clients.yaml"),
    ] {
        let sample = load(&repo().join(file));
        count += build_all(
            built.path(),
            tag,
            &sample.clusters,
            &sample.groups,
            Some("fdfs-node:default"),
        );
    }
    let fixtures = load(&repo().join("operator/tests/fixtures/cluster.yaml"));
    let groups = load(&repo().join("operator/tests/fixtures/groups.yaml"));
    let valid_groups: Vec<StorageGroup> = groups
        .groups
        .iter()
        .filter(|g| ["group1", "photos-eu"].contains(&g.name_any().as_str()))
        .cloned()
        .collect();
    count += build_all(
        built.path(),
        "fixture",
        &fixtures.clusters,
        &valid_groups,
        None,
    );
    assert!(count > 30, "{count} objects");

    let (ok, output) = validate(&[built.path(), &repo().join("crds"), &repo().join("examples")]);
    assert!(ok, "{output}");
    assert!(output.contains(" 0 failed"), "{output}");
    // Each exposed storage's Service, of both kinds.
    for service in ["Service/photos-1-outside", "Service/avatars-1-outside"] {
        assert!(output.contains(service), "{service} not checked:\n{output}");
    }
    for kind in [
        "StatefulSet/",
        "Service/",
        "ConfigMap/",
        "PodDisruptionBudget/",
        "CustomResourceDefinition/",
        "FdfsCluster/",
        "StorageGroup/",
    ] {
        assert!(output.contains(kind), "no {kind} checked:\n{output}");
    }
}

#[test]
fn the_schema_check_rejects_what_kubernetes_would() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cases = [
        (
            "unknown-field",
            "apiVersion: apps/v1\nkind: StatefulSet\nmetadata: {name: x}\n\
             spec: {serviceName: x, selector: {}, template: {}, replica: 2}\n",
        ),
        (
            "bad-type",
            "apiVersion: v1\nkind: Service\nmetadata: {name: x}\n\
             spec: {ports: [{port: http}]}\n",
        ),
        (
            "unknown-cr-field",
            "apiVersion: fdfs.dev/v1alpha1\nkind: StorageGroup\nmetadata: {name: x}\n\
             spec: {clusterRef: main, volume: {size: 1Gi}, replica: 2}\n",
        ),
        (
            "no-schema",
            "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: x}\n",
        ),
    ];
    for (name, text) in cases {
        let path = dir.path().join(format!("{name}.yaml"));
        std::fs::write(&path, text).expect("write");
        let (ok, output) = validate(&[&path]);
        assert!(!ok, "{name} passed:\n{output}");
        assert!(output.contains("FAIL"), "{name}: {output}");
    }
}

#[test]
fn samples_pass_the_cel_rules_and_the_operators_validation() {
    for file in ["examples/cluster.yaml", "examples/minimal.yaml"] {
        let sample = load(&repo().join(file));
        assert!(
            !sample.clusters.is_empty() && !sample.groups.is_empty(),
            "{file}"
        );
        for doc in &sample.docs {
            let crd = match doc["kind"].as_str() {
                Some("FdfsCluster") => FdfsCluster::crd(),
                _ => StorageGroup::crd(),
            };
            let schema = serde_json::to_value(
                crd.spec.versions[0]
                    .schema
                    .as_ref()
                    .and_then(|s| s.open_api_v3_schema.as_ref())
                    .expect("schema"),
            )
            .expect("schema JSON");
            if let Err(errors) = Validator::new().validate(&schema, doc, None) {
                panic!("{file}: {:?}", errors.into_vec());
            }
        }
    }
    let cluster = load(&repo().join("examples/cluster.yaml"));
    assert_eq!(cluster.groups.len(), 2, "one cluster, two groups");
    assert_eq!(cluster.clusters.len(), 1);
}
