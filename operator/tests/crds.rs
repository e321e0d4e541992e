//! The generated CRDs: subresources, printer columns, defaults and CEL rules, the rules'
//! behaviour on create and update, and that `crds/` holds exactly what `crdgen` writes.

use std::path::Path;

use fdfs_operator::crd::{FdfsCluster, StorageGroup, manifests};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, CustomResourceDefinitionVersion,
};
use kube::CustomResourceExt;
use kube::core::cel::{Validator, compile_schema};
use serde_json::{Value, json};

fn version(crd: &CustomResourceDefinition) -> &CustomResourceDefinitionVersion {
    assert_eq!(crd.spec.versions.len(), 1);
    &crd.spec.versions[0]
}

fn schema(crd: &CustomResourceDefinition) -> Value {
    let schema = version(crd)
        .schema
        .as_ref()
        .and_then(|s| s.open_api_v3_schema.as_ref())
        .expect("CRD has a schema");
    serde_json::to_value(schema).expect("schema serializes")
}

/// The value at a JSON pointer into the schema, e.g. `/properties/spec/properties/replicas`.
fn at<'a>(schema: &'a Value, pointer: &str) -> &'a Value {
    schema
        .pointer(pointer)
        .unwrap_or_else(|| panic!("schema has no {pointer}"))
}

fn rules(schema: &Value, pointer: &str) -> Vec<(String, String)> {
    at(schema, pointer)["x-kubernetes-validations"]
        .as_array()
        .unwrap_or_else(|| panic!("no CEL rules at {pointer}"))
        .iter()
        .map(|r| {
            (
                r["rule"].as_str().expect("rule").to_owned(),
                r["message"].as_str().expect("message").to_owned(),
            )
        })
        .collect()
}

fn column_names(crd: &CustomResourceDefinition) -> Vec<String> {
    version(crd)
        .additional_printer_columns
        .iter()
        .flatten()
        .map(|c| c.name.clone())
        .collect()
}

#[test]
fn names_scope_and_version() {
    for (crd, kind, plural, short) in [
        (FdfsCluster::crd(), "FdfsCluster", "fdfsclusters", "fdfs"),
        (StorageGroup::crd(), "StorageGroup", "storagegroups", "sg"),
    ] {
        assert_eq!(crd.spec.group, "fdfs.dev");
        assert_eq!(crd.spec.scope, "Namespaced");
        assert_eq!(crd.spec.names.kind, kind);
        assert_eq!(crd.spec.names.plural, plural);
        assert_eq!(crd.spec.names.short_names, Some(vec![short.to_owned()]));
        assert_eq!(version(&crd).name, "v1alpha1");
        assert!(version(&crd).served && version(&crd).storage);
    }
}

#[test]
fn storage_group_has_scale_and_status_subresources() {
    let crd = StorageGroup::crd();
    let subresources = version(&crd).subresources.as_ref().expect("subresources");
    assert!(subresources.status.is_some());
    let scale = subresources.scale.as_ref().expect("scale subresource");
    assert_eq!(scale.spec_replicas_path, ".spec.replicas");
    assert_eq!(scale.status_replicas_path, ".status.replicas");

    let cluster = FdfsCluster::crd();
    let subresources = version(&cluster)
        .subresources
        .as_ref()
        .expect("subresources");
    assert!(subresources.status.is_some());
    assert!(subresources.scale.is_none());
}

#[test]
fn printer_columns() {
    assert_eq!(
        column_names(&StorageGroup::crd()),
        ["Cluster", "Group", "Replicas", "Ready", "Status", "Age"]
    );
    assert_eq!(
        column_names(&FdfsCluster::crd()),
        ["Trackers", "Ready", "Leader", "Age"]
    );
}

#[test]
fn storage_group_immutability_rules() {
    let s = schema(&StorageGroup::crd());
    let spec = "/properties/spec";
    assert_eq!(
        rules(&s, &format!("{spec}/properties/clusterRef")),
        [(
            "self == oldSelf".to_owned(),
            "clusterRef is immutable".to_owned()
        )]
    );
    assert_eq!(
        rules(&s, &format!("{spec}/properties/groupName")),
        [(
            "self == oldSelf".to_owned(),
            "groupName is immutable".to_owned()
        )]
    );
    assert_eq!(
        rules(&s, spec),
        [(
            "has(self.groupName) == has(oldSelf.groupName)".to_owned(),
            "groupName cannot be added or removed after creation".to_owned()
        )]
    );
    assert_eq!(
        rules(
            &s,
            &format!("{spec}/properties/volume/properties/storePaths")
        )[0]
        .0,
        "self == oldSelf"
    );
}

#[test]
fn cluster_rules() {
    let s = schema(&FdfsCluster::crd());
    let settings = "/properties/spec/properties/settings";
    assert_eq!(rules(&s, settings).len(), 1);
    assert!(rules(&s, settings)[0].0.contains("has(self.storeGroup)"));
    for field in ["useStorageId", "idTypeInFilename"] {
        assert_eq!(
            rules(&s, &format!("{settings}/properties/{field}"))[0].0,
            "self == oldSelf"
        );
    }
}

#[test]
fn cel_rules_compile() {
    for crd in [FdfsCluster::crd(), StorageGroup::crd()] {
        let compiled = compile_schema(&schema(&crd));
        let mut stack = vec![&compiled];
        while let Some(node) = stack.pop() {
            assert!(
                !node.has_errors(),
                "{}: {:?}",
                crd.spec.names.kind,
                node.compilation_errors()
            );
            stack.extend(node.properties.values());
            stack.extend(node.items.as_deref());
            stack.extend(node.additional_properties.as_deref());
        }
    }
}

#[test]
fn defaults_appear_in_the_schema() {
    let s = schema(&StorageGroup::crd());
    let spec = "/properties/spec/properties";
    assert_eq!(at(&s, &format!("{spec}/replicas/default")), 1);
    assert_eq!(at(&s, &format!("{spec}/deletionPolicy/default")), "Retain");
    assert_eq!(
        at(&s, &format!("{spec}/volume/properties/storePaths/default")),
        1
    );
    assert_eq!(at(&s, &format!("{spec}/groupName/maxLength")), 16);
    assert_eq!(at(&s, &format!("{spec}/replicas/minimum")), 0.0);
    assert_eq!(at(&s, &format!("{spec}/replicas/maximum")), 32.0);

    let s = schema(&FdfsCluster::crd());
    let trackers = at(&s, "/properties/spec/properties/trackers/default");
    assert_eq!(trackers["replicas"], 2);
    assert_eq!(trackers["port"], 22122);
    assert_eq!(trackers["httpPort"], 8080);
    let settings = at(&s, "/properties/spec/properties/settings/default");
    assert_eq!(settings["storeLookup"], "LoadBalance");
    assert_eq!(settings["reservedStorageSpace"], "10%");
    assert_eq!(settings["useStorageId"], true);
    assert_eq!(settings["idTypeInFilename"], "Id");
    assert_eq!(
        settings["compat"],
        json!({"ipFieldWidth": 15, "fetchAllFormat": "V616"})
    );
    assert_eq!(
        at(&s, "/properties/spec/properties/clientService/default"),
        &json!({"type": "ClusterIP"})
    );
    assert_eq!(
        at(
            &s,
            "/properties/spec/properties/settings/properties/compat/properties/ipFieldWidth/enum"
        ),
        &json!([15, 45])
    );
}

#[test]
fn every_property_is_described() {
    fn walk(path: &str, node: &Value, missing: &mut Vec<String>) {
        if let Some(properties) = node.get("properties").and_then(Value::as_object) {
            for (name, child) in properties {
                let child_path = format!("{path}.{name}");
                if child.get("description").is_none() {
                    missing.push(child_path.clone());
                }
                walk(&child_path, child, missing);
            }
        }
        if let Some(items) = node.get("items") {
            walk(&format!("{path}[]"), items, missing);
        }
    }
    for crd in [FdfsCluster::crd(), StorageGroup::crd()] {
        let s = schema(&crd);
        let mut missing = Vec::new();
        for part in ["spec", "status"] {
            walk(part, at(&s, &format!("/properties/{part}")), &mut missing);
        }
        assert!(missing.is_empty(), "{}: {missing:?}", crd.spec.names.kind);
    }
}

fn storage_group(spec: Value) -> Value {
    json!({
        "apiVersion": "fdfs.dev/v1alpha1",
        "kind": "StorageGroup",
        "metadata": {"name": "group1", "namespace": "fdfs"},
        "spec": spec,
    })
}

fn cel_messages(crd: &CustomResourceDefinition, new: &Value, old: Option<&Value>) -> Vec<String> {
    match Validator::new().validate(&schema(crd), new, old) {
        Ok(()) => Vec::new(),
        Err(errors) => errors.into_vec().into_iter().map(|e| e.message).collect(),
    }
}

#[test]
fn storage_group_updates_keep_identity() {
    let crd = StorageGroup::crd();
    let base = json!({"clusterRef": "main", "volume": {"size": "10Gi"}});
    let named = json!({"clusterRef": "main", "groupName": "group1", "volume": {"size": "10Gi"}});
    let old_base = storage_group(base.clone());
    let old_named = storage_group(named.clone());

    assert!(cel_messages(&crd, &old_named, None).is_empty());
    assert!(cel_messages(&crd, &old_named, Some(&old_named)).is_empty());

    let mut scaled = named.clone();
    scaled["replicas"] = json!(3);
    scaled["volume"]["size"] = json!("20Gi");
    assert!(cel_messages(&crd, &storage_group(scaled), Some(&old_named)).is_empty());

    let cases = [
        (
            named.clone(),
            "groupName",
            json!("group2"),
            &old_named,
            "groupName is immutable",
        ),
        (
            named.clone(),
            "clusterRef",
            json!("other"),
            &old_named,
            "clusterRef is immutable",
        ),
        (
            base.clone(),
            "groupName",
            json!("group1"),
            &old_base,
            "groupName cannot be added or removed after creation",
        ),
    ];
    for (mut spec, field, value, old, message) in cases {
        spec[field] = value;
        let messages = cel_messages(&crd, &storage_group(spec), Some(old));
        assert!(
            messages.iter().any(|m| m == message),
            "{field}: {messages:?}"
        );
    }

    let removed = cel_messages(&crd, &old_base, Some(&old_named));
    assert!(
        removed
            .iter()
            .any(|m| m == "groupName cannot be added or removed after creation"),
        "{removed:?}"
    );

    let mut fewer_dirs = named.clone();
    fewer_dirs["volume"]["subdirCountPerPath"] = json!(16);
    let messages = cel_messages(&crd, &storage_group(fewer_dirs), Some(&old_named));
    assert_eq!(messages, ["subdirCountPerPath is immutable"]);

    let mut more_paths = named.clone();
    more_paths["volume"]["storePaths"] = json!(2);
    let messages = cel_messages(&crd, &storage_group(more_paths), Some(&old_named));
    assert_eq!(messages, ["storePaths is immutable"]);
}

#[test]
fn cluster_settings_rules() {
    let crd = FdfsCluster::crd();
    let cluster = |settings: Value| {
        json!({
            "apiVersion": "fdfs.dev/v1alpha1",
            "kind": "FdfsCluster",
            "metadata": {"name": "main", "namespace": "fdfs"},
            "spec": {"image": "fdfs-node:dev", "settings": settings},
        })
    };
    let plain = cluster(json!({}));
    assert!(cel_messages(&crd, &plain, None).is_empty());
    assert_eq!(
        cel_messages(
            &crd,
            &cluster(json!({"storeLookup": "SpecifiedGroup"})),
            None
        ),
        ["storeGroup is required when storeLookup is SpecifiedGroup"]
    );
    let specified = cluster(json!({"storeLookup": "SpecifiedGroup", "storeGroup": "group1"}));
    assert!(cel_messages(&crd, &specified, None).is_empty());

    // Defaults fill in the old object, so switching away from them is a change.
    assert_eq!(
        cel_messages(&crd, &cluster(json!({"useStorageId": false})), Some(&plain)),
        ["useStorageId is immutable"]
    );
    assert_eq!(
        cel_messages(
            &crd,
            &cluster(json!({"idTypeInFilename": "Ip"})),
            Some(&plain)
        ),
        ["idTypeInFilename is immutable"]
    );
    let tuned = cluster(json!({"reservedStorageSpace": "20%", "storeLookup": "RoundRobin"}));
    assert!(cel_messages(&crd, &tuned, Some(&plain)).is_empty());
}

#[test]
fn checked_in_crds_are_up_to_date() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../crds");
    for manifest in manifests().expect("CRDs render") {
        let path = dir.join(&manifest.file_name);
        let on_disk = std::fs::read_to_string(&path)
            .unwrap_or_else(|err| panic!("{}: {err}", path.display()));
        assert!(
            on_disk == manifest.yaml,
            "{} is stale; run `cargo run -p fdfs-operator --bin crdgen`",
            path.display()
        );
    }
}

#[test]
fn rendered_yaml_parses_back() {
    for manifest in manifests().expect("CRDs render") {
        let parsed: CustomResourceDefinition =
            serde_norway::from_str(&manifest.yaml).expect("YAML parses");
        assert_eq!(
            format!("{}.yaml", parsed.metadata.name.expect("name")),
            manifest.file_name
        );
    }
}

#[test]
fn volumes_grow_and_never_shrink() {
    let crd = StorageGroup::crd();
    let sized =
        |size: Value| storage_group(json!({"clusterRef": "main", "volume": {"size": size}}));
    let old = sized(json!("10Gi"));
    for (new, allowed) in [
        (json!("10Gi"), true),
        (json!("10240Mi"), true),
        (json!("20Gi"), true),
        (json!("1Ti"), true),
        (json!("9Gi"), false),
        (json!("10737418239"), false),
        (json!(1000), false),
    ] {
        let messages = cel_messages(&crd, &sized(new.clone()), Some(&old));
        if allowed {
            assert!(messages.is_empty(), "{new}: {messages:?}");
        } else {
            assert_eq!(
                messages,
                ["volume.size cannot shrink: Kubernetes volumes only grow"],
                "{new}"
            );
        }
    }
    assert!(
        cel_messages(&crd, &sized(json!("1Gi")), None).is_empty(),
        "creation"
    );
}

#[test]
fn a_cluster_without_tracker_pods_names_external_trackers() {
    let crd = FdfsCluster::crd();
    let cluster = |trackers: Value| {
        json!({
            "apiVersion": "fdfs.dev/v1alpha1",
            "kind": "FdfsCluster",
            "metadata": {"name": "main", "namespace": "fdfs"},
            "spec": {"image": "fdfs-node:dev", "trackers": trackers},
        })
    };
    let message = "with no tracker Pods (replicas: 0), external must name the trackers to use";
    assert_eq!(
        cel_messages(&crd, &cluster(json!({"replicas": 0})), None),
        [message]
    );
    assert_eq!(
        cel_messages(&crd, &cluster(json!({"replicas": 0, "external": []})), None),
        [message]
    );
    for ok in [
        json!({"replicas": 0, "external": ["10.1.0.5:22122"]}),
        json!({"replicas": 2, "external": ["10.1.0.5:22122"]}),
        json!({"replicas": 2}),
        json!({}),
    ] {
        assert!(
            cel_messages(&crd, &cluster(ok.clone()), None).is_empty(),
            "{ok}"
        );
    }
}

#[test]
fn thumbnail_names_are_unique_and_not_the_metadata_suffix() {
    let crd = StorageGroup::crd();
    let with = |thumbnails: Value| {
        storage_group(json!({
            "clusterRef": "main", "volume": {"size": "10Gi"}, "thumbnails": thumbnails
        }))
    };
    let good = with(json!([
        {"name": "_150x150", "width": 150, "height": 150, "fit": "Cover"},
        {"name": "_m", "width": 640, "height": 480},
    ]));
    assert!(cel_messages(&crd, &good, None).is_empty());
    let twice = with(json!([
        {"name": "_s", "width": 150, "height": 150},
        {"name": "_s", "width": 20, "height": 20},
    ]));
    assert_eq!(
        cel_messages(&crd, &twice, None),
        ["thumbnail names must be unique"]
    );
    let meta = with(json!([{"name": "-m", "width": 150, "height": 150}]));
    assert_eq!(
        cel_messages(&crd, &meta, None),
        ["-m is the metadata suffix"]
    );
    // Sizes and name characters are bounded by the schema itself.
    let schema = schema(&crd);
    let preset = at(&schema, "/properties/spec/properties/thumbnails/items");
    assert_eq!(
        preset["properties"]["width"]["maximum"].as_f64(),
        Some(4096.0)
    );
    assert_eq!(
        preset["properties"]["name"]["pattern"],
        json!("^[A-Za-z0-9_-]+$")
    );
    assert_eq!(preset["properties"]["name"]["maxLength"], json!(16));
}
