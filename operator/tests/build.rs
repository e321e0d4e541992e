//! The build step from YAML fixtures: validate, then build, then check the objects and the
//! rendered FastDFS configuration.

use fdfs_operator::build::{self, BuildOptions, GroupObjects, TrackerObjects, conf::GroupIds};
use fdfs_operator::crd::{FdfsCluster, StorageGroup};
use fdfs_operator::naming;
use fdfs_operator::validate::{validate_cluster, validate_storage_group};
use k8s_openapi::api::core::v1::{Container, PodSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;
use serde::Deserialize;

const CLUSTER: &str = include_str!("fixtures/cluster.yaml");
const GROUPS: &str = include_str!("fixtures/groups.yaml");

fn cluster() -> FdfsCluster {
    serde_norway::from_str(CLUSTER).expect("cluster fixture parses")
}

fn groups() -> Vec<StorageGroup> {
    serde_norway::Deserializer::from_str(GROUPS)
        .map(|doc| StorageGroup::deserialize(doc).expect("group fixture parses"))
        .collect()
}

fn group(name: &str) -> StorageGroup {
    groups()
        .into_iter()
        .find(|g| g.name_any() == name)
        .expect("fixture has the group")
}

fn with_uid<K: kube::Resource>(mut obj: K, uid: &str) -> K {
    obj.meta_mut().uid = Some(uid.into());
    obj
}

fn tracker_objects(cluster: &FdfsCluster) -> TrackerObjects {
    let valid = validate_cluster(cluster, None).expect("valid cluster");
    let ids = vec![
        GroupIds {
            group_name: "group1".into(),
            storage_group: "group1".into(),
            replicas: 2,
            writable: 2,
            ..Default::default()
        },
        GroupIds {
            group_name: "photos".into(),
            storage_group: "photos-eu".into(),
            replicas: 3,
            writable: 3,
            ..Default::default()
        },
    ];
    build::tracker_objects(cluster, &valid, &ids, &BuildOptions::default())
}

fn group_objects(sg: &StorageGroup, replicas: i32) -> GroupObjects {
    let cluster = with_uid(cluster(), "cluster-uid");
    let valid = validate_storage_group(sg, Some(&cluster), &groups(), None).expect("valid group");
    build::group_objects(&cluster, sg, &valid, replicas, &BuildOptions::default())
}

fn pod_spec(template: &k8s_openapi::api::core::v1::PodTemplateSpec) -> &PodSpec {
    template.spec.as_ref().expect("pod spec")
}

fn container(spec: &PodSpec) -> &Container {
    assert_eq!(spec.containers.len(), 1);
    &spec.containers[0]
}

#[test]
fn tracker_conf_renders_the_cluster_settings() {
    let objects = tracker_objects(&cluster());
    let conf = &objects.config.data.as_ref().expect("data")["tracker.conf"];
    assert_eq!(
        conf,
        "# Rendered by fdfs-operator from FdfsCluster fdfs/main. Edits are overwritten.\n\
         port = 22122\n\
         base_path = /var/lib/fdfs\n\
         store_lookup = 2\n\
         store_group = \n\
         store_server = 0\n\
         store_path = 2\n\
         download_server = 1\n\
         reserved_storage_space = 10.00%\n\
         check_active_interval = 30\n\
         response_ip_addr_size = auto\n\
         use_storage_id = true\n\
         storage_ids_filename = /etc/fdfs/storage_ids.conf\n\
         id_type_in_filename = id\n\
         trust_storage_server_id = true\n\
         http.server_port = 8080\n"
    );
}

#[test]
fn trunk_settings_render_into_tracker_conf_and_the_node_reads_them() {
    let mut c = cluster();
    c.spec.settings.trunk = Some(fdfs_operator::crd::TrunkSettings {
        enabled: true,
        slot_min_size: 512,
        slot_max_size: 65536,
        trunk_file_size: 8 << 20,
        create_ahead: Some(fdfs_operator::crd::TrunkCreateAhead {
            at: "01:30".into(),
            interval_seconds: 3600,
            space_threshold: "2G".into(),
        }),
        check_occupying: true,
        binlog_compaction: Some(fdfs_operator::crd::TrunkBinlogCompaction {
            at: "04:15".into(),
            interval_seconds: 0,
            min_interval_seconds: 600,
        }),
    });
    let objects = tracker_objects(&c);
    let conf = &objects.config.data.as_ref().expect("data")["tracker.conf"];
    assert!(
        conf.contains(
            "use_trunk_file = true\nslot_min_size = 512\nslot_max_size = 65536\n\
             trunk_file_size = 8388608\ntrunk_create_file_advance = true\n\
             trunk_create_file_time_base = 01:30\ntrunk_create_file_interval = 3600\n\
             trunk_create_file_space_threshold = 2G\ntrunk_init_check_occupying = true\n\
             trunk_compress_binlog_time_base = 04:15\ntrunk_compress_binlog_interval = 0\n\
             trunk_compress_binlog_min_interval = 600\n"
        ),
        "{conf}"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("tracker.conf");
    std::fs::write(&path, conf).expect("write");
    let node = fdfs_node::config::tracker_from_fastdfs(&path).expect("the node loads it");
    assert_eq!(
        node.trunk,
        fdfs_node::config::TrunkConfig {
            use_trunk_file: true,
            slot_min_size: 512,
            slot_max_size: 65536,
            trunk_alloc_alignment_size: 256,
            trunk_file_size: 8 << 20,
            trunk_create_file_advance: true,
            trunk_create_file_time_base: fdfs_node::config::TimeOfDay {
                hour: 1,
                minute: 30
            },
            trunk_create_file_interval: 3600,
            trunk_create_file_space_threshold: 2 << 30,
            trunk_init_check_occupying: true,
            trunk_compress_binlog_min_interval: 600,
            trunk_compress_binlog_interval: 0,
            trunk_compress_binlog_time_base: fdfs_node::config::TimeOfDay {
                hour: 4,
                minute: 15
            },
        }
    );
    // Without the setting, nothing about trunks is written: FastDFS's default (off).
    let plain = tracker_objects(&cluster());
    assert!(!plain.config.data.as_ref().expect("data")["tracker.conf"].contains("trunk"));
}

#[test]
fn storage_ids_conf_lists_every_storage_by_stable_name() {
    let objects = tracker_objects(&cluster());
    let ids = &objects.storage_ids.data.as_ref().expect("data")["storage_ids.conf"];
    let lines: Vec<&str> = ids.lines().skip(1).collect();
    let g1 = naming::storage_id("group1", 0);
    let ph = naming::storage_id("photos", 0);
    assert_eq!(
        lines,
        [
            format!("{g1} group1 group1-0.group1.fdfs.svc.cluster.local:23000"),
            format!(
                "{} group1 group1-1.group1.fdfs.svc.cluster.local:23000",
                g1 + 1
            ),
            format!("{ph} photos photos-eu-0.photos-eu.fdfs.svc.cluster.local:23000"),
            format!(
                "{} photos photos-eu-1.photos-eu.fdfs.svc.cluster.local:23000",
                ph + 1
            ),
            format!(
                "{} photos photos-eu-2.photos-eu.fdfs.svc.cluster.local:23000",
                ph + 2
            ),
        ]
    );
}

#[test]
fn tracker_services_publish_every_tracker() {
    let objects = tracker_objects(&cluster());
    let headless = objects.headless.spec.as_ref().expect("spec");
    assert_eq!(objects.headless.name_any(), "main-tracker-headless");
    assert_eq!(headless.cluster_ip.as_deref(), Some("None"));
    assert_eq!(headless.publish_not_ready_addresses, Some(true));
    let client = objects.client.spec.as_ref().expect("spec");
    assert_eq!(objects.client.name_any(), "main-tracker");
    assert_eq!(client.type_.as_deref(), Some("ClusterIP"));
    assert_eq!(client.ports.as_ref().expect("ports")[0].port, 22122);
    assert_eq!(client.selector, headless.selector);

    let mut node_port = cluster();
    node_port.spec.client_service.type_ = fdfs_operator::crd::ServiceType::NodePort;
    let objects = tracker_objects(&node_port);
    assert_eq!(
        objects.client.spec.as_ref().expect("spec").type_.as_deref(),
        Some("NodePort")
    );
}

#[test]
fn tracker_statefulset_runs_the_rendered_config() {
    let objects = tracker_objects(&with_uid(cluster(), "cluster-uid"));
    let trackers = &objects.statefulset;
    let owner = &trackers.owner_references()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.uid.as_str()),
        ("FdfsCluster", "cluster-uid")
    );
    assert_eq!(owner.controller, Some(true));
    let spec = trackers.spec.as_ref().expect("spec");
    assert_eq!(spec.replicas, Some(3));
    assert_eq!(spec.service_name.as_deref(), Some("main-tracker-headless"));
    // Each tracker keeps its state on a 1Gi claim that goes with the cluster.
    let claim = &spec.volume_claim_templates.as_ref().expect("claims")[0];
    assert_eq!(claim.metadata.name.as_deref(), Some("data"));
    assert_eq!(
        claim
            .spec
            .as_ref()
            .and_then(|s| s.resources.as_ref())
            .and_then(|r| r.requests.as_ref())
            .map(|r| r["storage"].0.as_str()),
        Some("1Gi")
    );
    let retention = spec
        .persistent_volume_claim_retention_policy
        .as_ref()
        .expect("retention");
    assert_eq!(retention.when_deleted.as_deref(), Some("Delete"));
    let pod = pod_spec(&spec.template);
    let c = container(pod);
    assert_eq!(c.image.as_deref(), Some("registry.example/fdfs-node:0.1.0"));
    assert_eq!(c.image_pull_policy.as_deref(), Some("IfNotPresent"));
    assert_eq!(c.command.as_deref(), Some(&["fdfs-node".to_owned()][..]));
    assert_eq!(
        c.args.as_deref().expect("args"),
        [
            "tracker",
            "--config",
            "/etc/fdfs/tracker.conf",
            "--bind",
            "$(POD_IP):22122"
        ]
    );
    let env: Vec<&str> = c.env.iter().flatten().map(|e| e.name.as_str()).collect();
    assert_eq!(env, ["POD_NAME", "POD_NAMESPACE", "POD_IP"]);
    assert_eq!(
        c.resources
            .as_ref()
            .and_then(|r| r.requests.as_ref())
            .map(|r| r["cpu"].0.as_str()),
        Some("100m")
    );
    assert_eq!(
        pod.node_selector.as_ref().expect("selector")["kubernetes.io/os"],
        "linux"
    );
    assert_eq!(pod.tolerations.as_ref().expect("tolerations").len(), 1);
    // Both ConfigMaps appear in /etc/fdfs.
    let sources = pod.volumes.as_ref().expect("volumes")[0]
        .projected
        .as_ref()
        .and_then(|p| p.sources.clone())
        .expect("projected");
    let names: Vec<String> = sources
        .iter()
        .filter_map(|s| s.config_map.as_ref().map(|c| c.name.clone()))
        .collect();
    assert_eq!(names, ["main-tracker-config", "main-storage-ids"]);
}

fn assert_probes_and_shutdown(c: &Container, pod: &PodSpec, http_port: i32) {
    let http = c
        .ports
        .iter()
        .flatten()
        .find(|p| p.name.as_deref() == Some("http"))
        .expect("http port");
    assert_eq!(http.container_port, http_port);
    for (probe, path) in [
        (&c.readiness_probe, "/readyz"),
        (&c.liveness_probe, "/healthz"),
        (&c.startup_probe, "/healthz"),
    ] {
        let get = probe
            .as_ref()
            .and_then(|p| p.http_get.as_ref())
            .expect("http probe");
        assert_eq!(get.path.as_deref(), Some(path));
        assert_eq!(get.port, IntOrString::String("http".into()));
    }
    let pre_stop = c
        .lifecycle
        .as_ref()
        .and_then(|l| l.pre_stop.as_ref())
        .and_then(|p| p.sleep.as_ref())
        .expect("preStop sleep")
        .seconds;
    let grace = pod.termination_grace_period_seconds.expect("grace period");
    // The node drains for up to 10 s after SIGTERM, which comes after the preStop pause.
    assert!(
        grace >= pre_stop + 10 + 5,
        "grace {grace}, preStop {pre_stop}"
    );
    let security = pod.security_context.as_ref().expect("pod security");
    assert_eq!(security.run_as_non_root, Some(true));
}

#[test]
fn tracker_pods_probe_the_node_and_drain() {
    let objects = tracker_objects(&cluster());
    let spec = objects.statefulset.spec.as_ref().expect("spec");
    let pod = pod_spec(&spec.template);
    assert_probes_and_shutdown(container(pod), pod, 8080);
    // Rolled one tracker at a time (each waits for the previous one to answer); started
    // together, as equal peers.
    let strategy = spec.update_strategy.as_ref().expect("update strategy");
    assert_eq!(strategy.type_.as_deref(), Some("RollingUpdate"));
    assert_eq!(spec.pod_management_policy.as_deref(), Some("Parallel"));
}

#[test]
fn storage_conf_renders_the_group() {
    let objects = group_objects(&group("group1"), 2);
    let conf = &objects.config.data.as_ref().expect("data")["storage.conf"];
    assert_eq!(
        conf,
        "# Rendered by fdfs-operator from StorageGroup fdfs/group1. Edits are overwritten.\n\
         group_name = group1\n\
         port = 23000\n\
         base_path = /var/lib/fdfs\n\
         store_path_count = 2\n\
         store_path0 = /var/lib/fdfs/M00\n\
         store_path1 = /var/lib/fdfs/M01\n\
         subdir_count_per_path = 256\n\
         tracker_server = main-tracker-headless.fdfs.svc.cluster.local:22122\n\
         heart_beat_interval = 10\n\
         stat_report_interval = 30\n\
         use_storage_id = true\n\
         storage_ids_filename = /etc/fdfs/storage_ids.conf\n\
         id_type_in_filename = id\n\
         http.server_port = 8888\n\
         http.anti_steal.check_token = true\n"
    );
}

#[test]
fn group_statefulset_has_volumes_identity_and_safe_rolls() {
    let sg = with_uid(group("photos-eu"), "sg-uid");
    let objects = group_objects(&sg, 3);
    let sts = &objects.statefulset;
    assert_eq!(sts.name_any(), "photos-eu");
    let owner = &sts.owner_references()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.uid.as_str()),
        ("StorageGroup", "sg-uid")
    );
    let spec = sts.spec.as_ref().expect("spec");
    assert_eq!(spec.replicas, Some(3));
    assert_eq!(spec.service_name.as_deref(), Some("photos-eu"));
    assert_eq!(spec.pod_management_policy.as_deref(), Some("OrderedReady"));
    let labels = spec.selector.match_labels.as_ref().expect("selector");
    assert_eq!(labels[naming::GROUP_LABEL], "photos");
    assert_eq!(labels[naming::CLUSTER_LABEL], "main");

    let claim = &spec.volume_claim_templates.as_ref().expect("claims")[0];
    let claim_spec = claim.spec.as_ref().expect("claim spec");
    assert_eq!(claim.metadata.name.as_deref(), Some("data"));
    assert_eq!(
        claim_spec
            .resources
            .as_ref()
            .and_then(|r| r.requests.as_ref())
            .map(|r| r["storage"].0.as_str()),
        Some("1Ti")
    );
    assert_eq!(claim_spec.storage_class_name, None);
    let retention = spec
        .persistent_volume_claim_retention_policy
        .as_ref()
        .expect("retention");
    assert_eq!(retention.when_deleted.as_deref(), Some("Delete"));
    assert_eq!(retention.when_scaled.as_deref(), Some("Retain"));

    let pod = pod_spec(&spec.template);
    let c = container(pod);
    assert_eq!(
        c.args.as_deref().expect("args"),
        [
            "storage",
            "--config",
            "/etc/fdfs/storage.conf",
            "--bind",
            "$(POD_IP):23000"
        ]
    );
    // The token secret comes from the Secret, never from the ConfigMap.
    let secret = c
        .env
        .iter()
        .flatten()
        .find(|e| e.name == build::HTTP_SECRET_ENV)
        .and_then(|e| e.value_from.as_ref())
        .and_then(|v| v.secret_key_ref.as_ref())
        .expect("secret env");
    assert_eq!(
        (secret.name.as_str(), secret.key.as_str()),
        ("fdfs-token", "secret")
    );
    assert_probes_and_shutdown(c, pod, build::STORAGE_HTTP_PORT);
    let mounts: Vec<(&str, &str)> = c
        .volume_mounts
        .iter()
        .flatten()
        .map(|m| (m.name.as_str(), m.mount_path.as_str()))
        .collect();
    assert_eq!(mounts, [("config", "/etc/fdfs"), ("data", "/var/lib/fdfs")]);
}

#[test]
fn retained_groups_keep_their_volumes() {
    let objects = group_objects(&group("group1"), 2);
    let spec = objects.statefulset.spec.as_ref().expect("spec");
    let retention = spec
        .persistent_volume_claim_retention_policy
        .as_ref()
        .expect("retention");
    assert_eq!(retention.when_deleted.as_deref(), Some("Retain"));
    let claim = &spec.volume_claim_templates.as_ref().expect("claims")[0];
    assert_eq!(
        claim
            .spec
            .as_ref()
            .and_then(|s| s.storage_class_name.as_deref()),
        Some("fast")
    );
}

#[test]
fn group_headless_service_publishes_not_ready_storages() {
    let objects = group_objects(&group("group1"), 2);
    let spec = objects.headless.spec.as_ref().expect("spec");
    assert_eq!(objects.headless.name_any(), "group1");
    assert_eq!(spec.cluster_ip.as_deref(), Some("None"));
    assert_eq!(spec.publish_not_ready_addresses, Some(true));
}

#[test]
fn disruption_budget_only_for_more_than_one_storage() {
    for (replicas, expected) in [(0, false), (1, false), (2, true), (5, true)] {
        let objects = group_objects(&group("group1"), replicas);
        assert_eq!(objects.pdb.is_some(), expected, "{replicas}");
        if let Some(pdb) = objects.pdb {
            let spec = pdb.spec.expect("spec");
            assert_eq!(spec.max_unavailable, Some(IntOrString::Int(1)));
            assert_eq!(spec.min_available, None);
        }
    }
}

#[test]
fn config_changes_roll_the_pods_and_new_groups_do_not() {
    let hash = |objects: &TrackerObjects| {
        objects
            .statefulset
            .spec
            .as_ref()
            .expect("spec")
            .template
            .metadata
            .as_ref()
            .and_then(|m| m.annotations.as_ref())
            .map(|a| a[naming::CONFIG_HASH_ANNOTATION].clone())
            .expect("hash")
    };
    let base = tracker_objects(&cluster());
    let mut tuned = cluster();
    tuned.spec.settings.reserved_storage_space = "20%".into();
    assert_ne!(hash(&base), hash(&tracker_objects(&tuned)));

    let valid = validate_cluster(&cluster(), None).expect("valid");
    let fewer = build::tracker_objects(&cluster(), &valid, &[], &BuildOptions::default());
    assert_ne!(fewer.storage_ids, base.storage_ids);
    assert_eq!(
        hash(&fewer),
        hash(&base),
        "storage ids do not restart trackers"
    );
}

#[test]
fn cluster_domain_reaches_every_rendered_name() {
    let opts = BuildOptions {
        cluster_domain: "example.internal".into(),
    };
    let cluster = cluster();
    let sg = group("group1");
    let valid = validate_storage_group(&sg, Some(&cluster), &groups(), None).expect("valid");
    let objects = build::group_objects(&cluster, &sg, &valid, 1, &opts);
    let conf = &objects.config.data.as_ref().expect("data")["storage.conf"];
    assert!(
        conf.contains("tracker_server = main-tracker-headless.fdfs.svc.example.internal:22122"),
        "{conf}"
    );
}

#[test]
fn default_image_fills_in_for_a_cluster_without_one() {
    let mut c = cluster();
    c.spec.image = None;
    let valid = validate_cluster(&c, Some("fdfs-node:default")).expect("valid");
    let objects = build::tracker_objects(&c, &valid, &[], &BuildOptions::default());
    let spec = objects.statefulset.spec.expect("spec");
    assert_eq!(
        container(pod_spec(&spec.template)).image.as_deref(),
        Some("fdfs-node:default")
    );
}

#[test]
fn wide_ip_fields_and_legacy_fetch_all_render_their_keys() {
    let mut c = cluster();
    c.spec.settings.compat.ip_field_width = 45;
    c.spec.settings.compat.fetch_all_format = fdfs_operator::crd::FetchAllFormat::Legacy;
    c.spec.settings.store_lookup = fdfs_operator::crd::StoreLookup::SpecifiedGroup;
    c.spec.settings.store_group = Some("group1".into());
    let objects = tracker_objects(&c);
    let conf = &objects.config.data.as_ref().expect("data")["tracker.conf"];
    for line in [
        "response_ip_addr_size = 46\n",
        "fetch_all_format = legacy\n",
        "store_lookup = 1\n",
        "store_group = group1\n",
    ] {
        assert!(conf.contains(line), "{line:?} missing from\n{conf}");
    }
}

/// The preferred anti-affinity term and zone spread a component's Pods get by default.
fn assert_default_placement(spec: &PodSpec, labels: &std::collections::BTreeMap<String, String>) {
    let anti = spec
        .affinity
        .as_ref()
        .and_then(|a| a.pod_anti_affinity.as_ref())
        .and_then(|a| {
            a.preferred_during_scheduling_ignored_during_execution
                .as_ref()
        })
        .expect("preferred anti-affinity");
    assert_eq!(anti.len(), 1);
    assert_eq!(
        anti[0].pod_affinity_term.topology_key,
        "kubernetes.io/hostname"
    );
    let selector = anti[0].pod_affinity_term.label_selector.as_ref();
    assert_eq!(selector.and_then(|s| s.match_labels.as_ref()), Some(labels));
    let spread = spec
        .topology_spread_constraints
        .as_ref()
        .expect("zone spread");
    assert_eq!(spread.len(), 1);
    assert_eq!(spread[0].topology_key, "topology.kubernetes.io/zone");
    assert_eq!(spread[0].when_unsatisfiable, "ScheduleAnyway");
    assert_eq!(
        spread[0]
            .label_selector
            .as_ref()
            .and_then(|s| s.match_labels.as_ref()),
        Some(labels)
    );
    let security = spec
        .security_context
        .as_ref()
        .expect("pod security context");
    assert_eq!(
        security.fs_group_change_policy.as_deref(),
        Some("OnRootMismatch")
    );
}

/// A StatefulSet's Pod template and the labels on it.
fn template_and_labels(
    sts: &k8s_openapi::api::apps::v1::StatefulSet,
) -> (
    k8s_openapi::api::core::v1::PodTemplateSpec,
    std::collections::BTreeMap<String, String>,
) {
    let template = sts.spec.as_ref().expect("spec").template.clone();
    let labels = template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.clone())
        .expect("labels");
    (template, labels)
}

fn requests(c: &Container) -> Vec<(String, String)> {
    c.resources
        .as_ref()
        .and_then(|r| r.requests.as_ref())
        .map(|r| r.iter().map(|(k, v)| (k.clone(), v.0.clone())).collect())
        .unwrap_or_default()
}

#[test]
fn pods_get_safe_placement_and_requests_by_default() {
    let objects = group_objects(&group("group1"), 2);
    let (template, labels) = template_and_labels(&objects.statefulset);
    let spec = pod_spec(&template);
    assert_default_placement(spec, &labels);
    assert_eq!(
        requests(container(spec)),
        [
            ("cpu".into(), "100m".into()),
            ("memory".into(), "128Mi".into())
        ]
    );
    assert!(
        container(spec)
            .resources
            .as_ref()
            .and_then(|r| r.limits.as_ref())
            .is_none()
    );

    // The trackers keep their own requests from the fixture, and the same placement rules
    // (the fixture sets a node selector and tolerations, no affinity).
    let t = tracker_objects(&cluster());
    let (template, labels) = template_and_labels(&t.statefulset);
    let spec = pod_spec(&template);
    assert_default_placement(spec, &labels);
    assert_eq!(
        requests(container(spec)),
        [
            ("cpu".into(), "100m".into()),
            ("memory".into(), "64Mi".into())
        ]
    );
    let mut bare = cluster();
    bare.spec.trackers.resources = None;
    let t = tracker_objects(&bare);
    let spec = pod_spec(&t.statefulset.spec.as_ref().expect("spec").template).clone();
    assert_eq!(
        requests(container(&spec)),
        [
            ("cpu".into(), "50m".into()),
            ("memory".into(), "64Mi".into())
        ]
    );
}

#[test]
fn placement_and_requests_can_be_switched_off_or_replaced() {
    let mut sg = group("group1");
    sg.spec.scheduling = serde_json::from_value(serde_json::json!({
        "affinity": {}, "topologySpreadConstraints": []
    }))
    .expect("scheduling");
    sg.spec.resources = Some(
        serde_json::from_value(
            serde_json::json!({"requests": {"cpu": "2"}, "limits": {"memory": "4Gi"}}),
        )
        .expect("resources"),
    );
    let objects = group_objects(&sg, 2);
    let spec = pod_spec(&objects.statefulset.spec.as_ref().expect("spec").template).clone();
    assert!(spec.affinity.is_none(), "{{}} means no affinity rule");
    assert!(
        spec.topology_spread_constraints.is_none(),
        "[] means no spread"
    );
    assert_eq!(requests(container(&spec)), [("cpu".into(), "2".into())]);

    let mut custom = group("group1");
    custom.spec.scheduling = serde_json::from_value(serde_json::json!({
        "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchExpressions": [
                {"key": "disk", "operator": "In", "values": ["ssd"]}]}]}}}
    }))
    .expect("scheduling");
    let objects = group_objects(&custom, 2);
    let spec = pod_spec(&objects.statefulset.spec.as_ref().expect("spec").template).clone();
    let affinity = spec.affinity.expect("the given affinity");
    assert!(affinity.node_affinity.is_some() && affinity.pod_anti_affinity.is_none());
    assert!(
        spec.topology_spread_constraints.is_some(),
        "the default spread stays"
    );
}

/// The operator watches only objects labelled as its own, so every object it builds must
/// carry the label.
#[test]
fn every_built_object_carries_the_label_the_operator_watches_by() {
    fn managed(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> bool {
        meta.labels
            .as_ref()
            .and_then(|l| l.get("app.kubernetes.io/managed-by"))
            .is_some_and(|v| v == naming::MANAGER)
    }
    let t = tracker_objects(&cluster());
    for (what, meta) in [
        ("tracker config", &t.config.metadata),
        ("storage ids", &t.storage_ids.metadata),
        ("tracker headless service", &t.headless.metadata),
        ("tracker client service", &t.client.metadata),
        ("tracker statefulset", &t.statefulset.metadata),
    ] {
        assert!(managed(meta), "{what}");
    }
    let g = group_objects(&group("group1"), 2);
    let pdb = g.pdb.as_ref().expect("a budget for two storages");
    for (what, meta) in [
        ("group config", &g.config.metadata),
        ("group headless service", &g.headless.metadata),
        ("group statefulset", &g.statefulset.metadata),
        ("group budget", &pdb.metadata),
    ] {
        assert!(managed(meta), "{what}");
    }
}

#[test]
fn several_trackers_get_a_disruption_budget_and_one_does_not() {
    let t = tracker_objects(&cluster());
    let pdb = t.pdb.expect("three trackers have a budget");
    let spec = pdb.spec.expect("spec");
    assert_eq!(spec.max_unavailable, Some(IntOrString::Int(1)));
    let labels = t.statefulset.spec.expect("spec").selector.match_labels;
    assert_eq!(spec.selector.and_then(|s| s.match_labels), labels);
    let mut single = cluster();
    single.spec.trackers.replicas = 1;
    assert!(tracker_objects(&single).pdb.is_none());
}

#[test]
fn storages_scaled_away_are_listed_read_only_until_they_are_gone() {
    let c = cluster();
    let valid = validate_cluster(&c, None).expect("valid cluster");
    let ids = [GroupIds {
        group_name: "group1".into(),
        storage_group: "group1".into(),
        replicas: 3,
        writable: 2,
        ..Default::default()
    }];
    let objects = build::tracker_objects(&c, &valid, &ids, &BuildOptions::default());
    let text = objects.storage_ids.data.as_ref().expect("data")["storage_ids.conf"].clone();
    let lines: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(
        !lines[0].contains("rw=") && !lines[1].contains("rw="),
        "{text}"
    );
    assert!(lines[2].ends_with(":23000 rw=read"), "{text}");
    // The node's parser reads it so.
    let parsed = fdfs_node::tracker::storage_ids::StorageIds::parse(&text).expect("parses");
    let leaving = parsed
        .by_id(&naming::storage_id("group1", 2).to_string())
        .expect("listed");
    assert_eq!(leaving.rw_mode, fdfs_node::tracker::storage_ids::RW_READ);
}

fn exposed(expose: serde_json::Value) -> StorageGroup {
    let mut sg = group("group1");
    sg.spec.expose = serde_json::from_value(expose).expect("expose parses");
    with_uid(sg, "group-uid")
}

fn storage_ids_of(sg: &StorageGroup, outside: serde_json::Value) -> Vec<String> {
    let cluster = cluster();
    let valid = validate_cluster(&cluster, None).expect("valid cluster");
    let ids = [GroupIds {
        group_name: "group1".into(),
        storage_group: sg.name_any(),
        replicas: 2,
        writable: 2,
        expose: sg.spec.expose.clone(),
        outside: serde_json::from_value(outside).expect("outside addresses"),
    }];
    let objects = build::tracker_objects(&cluster, &valid, &ids, &BuildOptions::default());
    objects.storage_ids.data.as_ref().expect("data")["storage_ids.conf"]
        .lines()
        .skip(1)
        .map(str::to_owned)
        .collect()
}

#[test]
fn load_balanced_storages_get_a_service_each_and_a_second_address_once_assigned() {
    let sg = exposed(serde_json::json!({
        "type": "LoadBalancer",
        "serviceAnnotations": {"example.com/internal": "true"},
    }));
    let objects = group_objects(&sg, 2);
    assert_eq!(objects.outside.len(), 2);
    for (ordinal, service) in objects.outside.iter().enumerate() {
        assert_eq!(service.name_any(), format!("group1-{ordinal}-outside"));
        assert_eq!(
            service
                .annotations()
                .get("example.com/internal")
                .map(String::as_str),
            Some("true")
        );
        let spec = service.spec.as_ref().expect("spec");
        assert_eq!(spec.type_.as_deref(), Some("LoadBalancer"));
        let selector = spec.selector.as_ref().expect("selector");
        assert_eq!(
            selector[naming::POD_NAME_LABEL],
            format!("group1-{ordinal}"),
            "one Pod behind each Service"
        );
        let ports: Vec<i32> = spec.ports.iter().flatten().map(|p| p.port).collect();
        assert_eq!(ports, [23000, 8888]);
    }
    // The Pods themselves are unchanged.
    let pod = pod_spec(&objects.statefulset.spec.as_ref().expect("spec").template).clone();
    assert_eq!(pod.host_network, None);
    assert!(
        !container(&pod)
            .args
            .iter()
            .flatten()
            .any(|a| a == "--port-offset")
    );

    // The load balancer's address, once the status lists it, becomes the second host.
    let mut stored = objects.outside.clone();
    stored[0].status = serde_json::from_value(serde_json::json!({
        "loadBalancer": {"ingress": [{"ip": "203.0.113.10"}]}
    }))
    .expect("status");
    stored[1].status = serde_json::from_value(serde_json::json!({
        "loadBalancer": {"ingress": [{"hostname": "lb-1.example.com"}]}
    }))
    .expect("status");
    let outside = build::outside_addresses("group1", &sg.spec.expose, &stored);
    assert_eq!(
        serde_json::to_value(&outside).expect("json"),
        serde_json::json!([
            {"pod": "group1-0", "address": "203.0.113.10:23000"},
            {"pod": "group1-1", "address": "lb-1.example.com:23000"},
        ])
    );
    let g0 = naming::storage_id("group1", 0);
    let g1 = naming::storage_id("group1", 1);
    assert_eq!(
        storage_ids_of(
            &sg,
            serde_json::json!([{"pod": "group1-0", "address": "203.0.113.10:23000"}])
        ),
        [
            format!("{g0} group1 group1-0.group1.fdfs.svc.cluster.local,203.0.113.10:23000"),
            format!("{g1} group1 group1-1.group1.fdfs.svc.cluster.local:23000"),
        ],
        "a storage whose load balancer has no address yet keeps its Pod address only"
    );
}

#[test]
fn node_port_storages_listen_on_their_own_port_inside_and_out() {
    let sg = exposed(serde_json::json!({
        "type": "NodePort", "nodeAddress": "nodes.example.com", "nodePortBase": 30100,
    }));
    let objects = group_objects(&sg, 2);
    for (ordinal, service) in objects.outside.iter().enumerate() {
        let spec = service.spec.as_ref().expect("spec");
        assert_eq!(spec.type_.as_deref(), Some("NodePort"));
        let port = &spec.ports.as_ref().expect("ports")[0];
        let want = 30100 + ordinal as i32;
        assert_eq!((port.port, port.node_port), (want, Some(want)));
        // Pod n listens on the base plus n: the Service targets that port by number.
        assert_eq!(port.target_port, Some(IntOrString::Int(want)));
    }
    let pod = pod_spec(&objects.statefulset.spec.as_ref().expect("spec").template).clone();
    let c = container(&pod);
    let args = c.args.clone().unwrap_or_default();
    assert!(
        args.windows(2).any(|w| w == ["--bind", "$(POD_IP):30100"])
            && args
                .windows(2)
                .any(|w| w == ["--port-offset", "$(POD_INDEX)"]),
        "{args:?}"
    );
    let index = c
        .env
        .iter()
        .flatten()
        .find(|e| e.name == "POD_INDEX")
        .and_then(|e| e.value_from.as_ref())
        .and_then(|v| v.field_ref.as_ref())
        .map(|f| f.field_path.clone());
    assert_eq!(
        index.as_deref(),
        Some("metadata.labels['apps.kubernetes.io/pod-index']")
    );
    let outside = build::outside_addresses("group1", &sg.spec.expose, &objects.outside);
    assert_eq!(
        outside[1].address.as_deref(),
        Some("nodes.example.com:30101")
    );
    let g0 = naming::storage_id("group1", 0);
    let g1 = naming::storage_id("group1", 1);
    assert_eq!(
        storage_ids_of(&sg, serde_json::to_value(&outside).expect("json")),
        [
            format!("{g0} group1 group1-0.group1.fdfs.svc.cluster.local,nodes.example.com:30100"),
            format!("{g1} group1 group1-1.group1.fdfs.svc.cluster.local,nodes.example.com:30101"),
        ]
    );
}

#[test]
fn host_network_storages_use_their_nodes_address_and_ports() {
    let sg = exposed(serde_json::json!({"type": "HostNetwork"}));
    let objects = group_objects(&sg, 2);
    assert!(
        objects.outside.is_empty(),
        "the node's address is the outside one"
    );
    let pod = pod_spec(&objects.statefulset.spec.as_ref().expect("spec").template).clone();
    assert_eq!(pod.host_network, Some(true));
    assert_eq!(pod.dns_policy.as_deref(), Some("ClusterFirstWithHostNet"));
    let host_ports: Vec<Option<i32>> = container(&pod)
        .ports
        .iter()
        .flatten()
        .map(|p| p.host_port)
        .collect();
    assert_eq!(host_ports, [Some(23000), Some(8888)]);
}

#[test]
fn an_outside_tracker_service_keeps_client_addresses() {
    let mut c = cluster();
    let internal = tracker_objects(&c);
    let spec = internal.client.spec.as_ref().expect("spec");
    assert_eq!(spec.external_traffic_policy, None);
    c.spec.client_service.type_ = fdfs_operator::crd::ServiceType::LoadBalancer;
    let outside = tracker_objects(&c);
    let spec = outside.client.spec.as_ref().expect("spec");
    assert_eq!(spec.external_traffic_policy.as_deref(), Some("Local"));
}

#[test]
fn exposures_that_cannot_work_are_refused() {
    let cluster = with_uid(cluster(), "cluster-uid");
    for (expose, wanted) in [
        (
            serde_json::json!({"type": "NodePort", "nodePortBase": 30100}),
            "needs nodeAddress and nodePortBase",
        ),
        (
            serde_json::json!({"type": "NodePort", "nodeAddress": "a,b", "nodePortBase": 30100}),
            "one host name",
        ),
        (
            serde_json::json!({"type": "NodePort", "nodeAddress": "n", "nodePortBase": 65535}),
            "leaves no port",
        ),
    ] {
        let sg = exposed(expose.clone());
        let err = validate_storage_group(&sg, Some(&cluster), std::slice::from_ref(&sg), None)
            .expect_err("refused");
        assert_eq!(err.reason(), "InvalidExpose");
        assert!(err.to_string().contains(wanted), "{expose}: {err}");
    }
    // Ports differing within a group need server ids in file IDs.
    let mut ip_names = cluster.clone();
    ip_names.spec.settings.id_type_in_filename = fdfs_operator::crd::IdType::Ip;
    let sg = exposed(serde_json::json!({
        "type": "NodePort", "nodeAddress": "n", "nodePortBase": 30100,
    }));
    let err = validate_storage_group(&sg, Some(&ip_names), std::slice::from_ref(&sg), None)
        .expect_err("refused");
    assert!(err.to_string().contains("idTypeInFilename"), "{err}");
}

#[test]
fn storages_also_report_to_external_trackers_and_only_to_them_without_tracker_pods() {
    let mut c = cluster();
    c.spec.trackers.external = vec![
        "10.1.0.5:22122".into(),
        "old-tracker.example.com:22122".into(),
    ];
    let trackers_of = |c: &FdfsCluster| -> Vec<String> {
        let c = with_uid(c.clone(), "cluster-uid");
        let sg = group("group1");
        let valid = validate_storage_group(&sg, Some(&c), &groups(), None).expect("valid group");
        let objects = build::group_objects(&c, &sg, &valid, 1, &BuildOptions::default());
        objects.config.data.as_ref().expect("data")["storage.conf"]
            .lines()
            .filter_map(|l| l.strip_prefix("tracker_server = "))
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(
        trackers_of(&c),
        [
            "main-tracker-headless.fdfs.svc.cluster.local:22122",
            "10.1.0.5:22122",
            "old-tracker.example.com:22122"
        ]
    );
    c.spec.trackers.replicas = 0;
    assert_eq!(
        trackers_of(&c),
        ["10.1.0.5:22122", "old-tracker.example.com:22122"]
    );
    let objects = tracker_objects(&c);
    assert_eq!(
        objects.statefulset.spec.as_ref().and_then(|s| s.replicas),
        Some(0)
    );
    assert!(objects.pdb.is_none());
}

#[test]
fn external_trackers_must_be_host_and_port_and_leave_room_for_the_pods() {
    for (external, replicas, reason) in [
        (vec![], 0, "InvalidReplicas"),
        (vec!["old-tracker"], 1, "InvalidTrackerEndpoint"),
        (vec!["old-tracker:0"], 1, "InvalidTrackerEndpoint"),
        (vec!["old tracker:22122"], 1, "InvalidTrackerEndpoint"),
        (vec!["a:1"; 15], 2, "InvalidReplicas"),
    ] {
        let mut c = cluster();
        c.spec.trackers.replicas = replicas;
        c.spec.trackers.external = external.iter().map(|e| (*e).to_owned()).collect();
        let err = validate_cluster(&c, None).expect_err("refused");
        assert_eq!(
            err.reason(),
            reason,
            "{external:?} with {replicas} Pods: {err}"
        );
    }
    let mut c = cluster();
    c.spec.trackers.replicas = 0;
    c.spec.trackers.external = vec!["[fd00::5]:22122".into()];
    validate_cluster(&c, None).expect("an IPv6 external tracker alone");
}

#[test]
fn thumbnail_sizes_reach_the_storages_and_the_node_reads_them() {
    use fdfs_operator::crd::{ThumbnailFit, ThumbnailPreset};
    let mut sg = group("group1");
    sg.spec.thumbnails = vec![
        ThumbnailPreset {
            name: "_150x150".into(),
            width: 150,
            height: 150,
            fit: ThumbnailFit::Cover,
        },
        ThumbnailPreset {
            name: "_m".into(),
            width: 640,
            height: 480,
            fit: ThumbnailFit::Contain,
        },
    ];
    let objects = group_objects(&sg, 2);
    let conf = &objects.config.data.as_ref().expect("data")["storage.conf"];
    assert!(
        conf.ends_with(
            "http.thumbnail_preset = _150x150 150x150 cover\n\
             http.thumbnail_preset = _m 640x480 contain\n"
        ),
        "{conf}"
    );
    // The node reads exactly these lines (the token key, which the Pod gets from its
    // Secret through the environment, given here as a line).
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("storage.conf");
    std::fs::write(&path, format!("{conf}http.anti_steal.secret_key = k\n")).expect("write");
    let node = fdfs_node::config::storage_from_fastdfs(&path).expect("the node loads it");
    let sizes: Vec<_> = node
        .http
        .thumbnails
        .presets
        .iter()
        .map(|p| (p.name.as_str(), p.width, p.height, p.fit))
        .collect();
    use fdfs_node::config::Fit;
    assert_eq!(
        sizes,
        [
            ("_150x150", 150, 150, Fit::Cover),
            ("_m", 640, 480, Fit::Contain)
        ]
    );
}

#[test]
fn an_old_clusters_storage_ids_come_first_and_the_old_trackers_get_lines_they_can_resolve() {
    let mut c = cluster();
    c.spec.trackers.external = vec!["10.0.0.1:22122".into()];
    c.spec.trackers.external_storage_ids =
        Some(serde_json::from_value(serde_json::json!({"name": "old-ids"})).expect("key ref"));
    let mut valid = validate_cluster(&c, None).expect("valid cluster");
    valid.external_ids = fdfs_node::tracker::storage_ids::StorageIds::parse(
        "100001 group1 10.0.0.5\n100002 group1 10.0.0.6 rw=read\n",
    )
    .expect("old ids")
    .entries;
    let ids = [GroupIds {
        group_name: "group1".into(),
        storage_group: "photos".into(),
        replicas: 3,
        writable: 2,
        outside: serde_json::from_value(serde_json::json!([
            {"pod": "photos-1", "address": "203.0.113.7:23000"}]))
        .expect("outside"),
        ..Default::default()
    }];
    let objects = build::tracker_objects(&c, &valid, &ids, &BuildOptions::default());
    let text = objects.storage_ids.data.as_ref().expect("data")["storage_ids.conf"].clone();
    let lines: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
    assert_eq!(
        lines[..2],
        ["100001 group1 10.0.0.5", "100002 group1 10.0.0.6 rw=read"],
        "{text}"
    );
    assert_eq!(lines.len(), 5, "{text}");
    // Trackers and storages read the whole file; the old storages are found by address.
    let parsed = fdfs_node::tracker::storage_ids::StorageIds::parse(&text).expect("parses");
    let old = parsed
        .by_group_and_addr("group1", "10.0.0.5".parse().expect("ip"), 23000)
        .expect("old storage listed");
    assert_eq!(old.id, "100001");

    // The old trackers' lines: outside address first, else the Pod's IP; a Pod with
    // neither is left out until it has one.
    let entries = build::conf::storage_id_entries("fdfs", &ids, &BuildOptions::default());
    let pod_ips = std::collections::BTreeMap::from([
        ("photos-0".to_owned(), "10.244.1.9".to_owned()),
        ("photos-1".to_owned(), "10.244.2.3".to_owned()),
    ]);
    let id = |ordinal| naming::storage_id("group1", ordinal);
    assert_eq!(
        build::conf::lines_for_external_trackers(&entries, &pod_ips),
        [
            format!("{} group1 10.244.1.9:23000", id(0)),
            format!("{} group1 203.0.113.7:23000", id(1)),
        ]
    );
}
