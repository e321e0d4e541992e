//! The objects of a cluster's trackers: a StatefulSet (each tracker keeps its state on a
//! small volume), a headless Service through which storages find every tracker, a client
//! Service, a disruption budget, and the ConfigMaps of the cluster.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    StatefulSet, StatefulSetPersistentVolumeClaimRetentionPolicy, StatefulSetSpec,
    StatefulSetUpdateStrategy,
};
use k8s_openapi::api::core::v1::{ConfigMap, Service, ServicePort, ServiceSpec};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::{Resource, ResourceExt};

use crate::crd::{FdfsCluster, ServiceType};
use crate::naming;
use crate::validate::ValidCluster;

use super::conf::{self, GroupIds};
use super::pod::{NodePod, Role};
use super::{BuildOptions, FASTDFS_PORT_NAME, HTTP_PORT_NAME, STORAGE_IDS_FILE, TRACKER_CONF_FILE};

/// Everything a cluster's trackers need.
#[derive(Clone, Debug, PartialEq)]
pub struct TrackerObjects {
    /// `tracker.conf`.
    pub config: ConfigMap,
    /// `storage_ids.conf`, mounted by trackers and storages alike.
    pub storage_ids: ConfigMap,
    /// Resolves to every tracker Pod, ready or not: storages report to each of them.
    pub headless: Service,
    /// What FastDFS clients connect to.
    pub client: Service,
    /// The trackers.
    pub statefulset: StatefulSet,
    /// At most one tracker down at a time through voluntary disruptions (a node drain);
    /// `None` for a single tracker, which a budget would only keep from ever draining.
    pub pdb: Option<PodDisruptionBudget>,
}

pub(super) fn meta(
    name: String,
    namespace: Option<String>,
    labels: &BTreeMap<String, String>,
    owner: Option<OwnerReference>,
) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace,
        labels: Some(labels.clone()),
        owner_references: owner.map(|o| vec![o]),
        ..Default::default()
    }
}

/// A ConfigMap holding one file.
pub(super) fn one_file_config_map(metadata: ObjectMeta, file: &str, text: String) -> ConfigMap {
    ConfigMap {
        metadata,
        data: Some(BTreeMap::from([(file.to_owned(), text)])),
        ..Default::default()
    }
}

/// A headless Service that lists its Pods before they are ready: FastDFS nodes must reach
/// each other (storages their trackers and peers) to become ready at all.
pub(super) fn headless_service(
    metadata: ObjectMeta,
    labels: &BTreeMap<String, String>,
    ports: Vec<ServicePort>,
) -> Service {
    Service {
        metadata,
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".into()),
            publish_not_ready_addresses: Some(true),
            selector: Some(labels.clone()),
            ports: Some(ports),
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub(super) fn service_port(name: &str, port: i32) -> ServicePort {
    ServicePort {
        name: Some(name.into()),
        port,
        target_port: Some(IntOrString::String(name.into())),
        protocol: Some("TCP".into()),
        ..Default::default()
    }
}

/// Builds the tracker objects of a valid cluster. `groups` are the valid groups of the
/// cluster, whose storages go into `storage_ids.conf`.
pub fn tracker_objects(
    cluster: &FdfsCluster,
    valid: &ValidCluster,
    groups: &[GroupIds],
    opts: &BuildOptions,
) -> TrackerObjects {
    let name = cluster.name_any();
    let namespace = cluster.namespace();
    let labels = naming::tracker_labels(&name);
    let owner = cluster.controller_owner_ref(&());
    let spec = &cluster.spec;

    let tracker_conf = conf::tracker_conf(cluster, valid);
    let entries = conf::storage_id_entries(namespace.as_deref().unwrap_or_default(), groups, opts);
    let storage_ids_conf = conf::storage_ids_conf(cluster, &valid.external_ids, &entries);

    let config = one_file_config_map(
        meta(
            naming::tracker_config(&name),
            namespace.clone(),
            &labels,
            owner.clone(),
        ),
        TRACKER_CONF_FILE,
        tracker_conf.clone(),
    );
    let storage_ids = one_file_config_map(
        meta(
            naming::storage_ids(&name),
            namespace.clone(),
            &naming::cluster_labels(&name),
            owner.clone(),
        ),
        STORAGE_IDS_FILE,
        storage_ids_conf,
    );

    let ports = vec![
        service_port(FASTDFS_PORT_NAME, spec.trackers.port),
        service_port(HTTP_PORT_NAME, spec.trackers.http_port),
    ];
    let headless = headless_service(
        meta(
            naming::tracker_headless(&name),
            namespace.clone(),
            &labels,
            owner.clone(),
        ),
        &labels,
        ports.clone(),
    );
    let client = Service {
        metadata: meta(
            naming::tracker(&name),
            namespace.clone(),
            &labels,
            owner.clone(),
        ),
        spec: Some(ServiceSpec {
            type_: Some(spec.client_service.type_.as_str().into()),
            // The trackers answer each client with the storage address on its side, which
            // they tell from the client's own address: keep it (no SNAT to a node address).
            external_traffic_policy: (spec.client_service.type_ != ServiceType::ClusterIp)
                .then(|| "Local".into()),
            selector: Some(labels.clone()),
            ports: Some(vec![service_port(FASTDFS_PORT_NAME, spec.trackers.port)]),
            ..Default::default()
        }),
        ..Default::default()
    };

    let pod = NodePod {
        role: Role::Tracker,
        image: &valid.image,
        pull_policy: spec.image_pull_policy,
        config_file: TRACKER_CONF_FILE,
        config_map: naming::tracker_config(&name),
        storage_ids_config_map: naming::storage_ids(&name),
        port: spec.trackers.port,
        http_port: spec.trackers.http_port,
        resources: spec.trackers.resources.as_ref(),
        scheduling: &spec.trackers.scheduling,
        labels: labels.clone(),
        // storage_ids.conf is left out: adding a group must not restart the trackers.
        config_hash: conf::config_hash(&[&tracker_conf]),
        http_secret: None,
        host_network: false,
        port_from_index: false,
    };
    let pdb = (spec.trackers.replicas > 1).then(|| {
        disruption_budget(
            meta(
                naming::tracker(&name),
                namespace.clone(),
                &labels,
                owner.clone(),
            ),
            &labels,
        )
    });
    let statefulset = StatefulSet {
        metadata: meta(naming::tracker(&name), namespace, &labels, owner),
        spec: Some(StatefulSetSpec {
            replicas: Some(spec.trackers.replicas),
            service_name: Some(naming::tracker_headless(&name)),
            selector: LabelSelector {
                match_labels: Some(labels.clone()),
                ..Default::default()
            },
            // Trackers are equal peers: they start together; an update still replaces one
            // at a time, each waiting for the previous one to answer.
            pod_management_policy: Some("Parallel".into()),
            update_strategy: Some(StatefulSetUpdateStrategy {
                type_: Some("RollingUpdate".into()),
                ..Default::default()
            }),
            // A tracker's state is rebuilt from the storages' reports: its claims go with
            // the cluster, and with a tracker scaled away.
            persistent_volume_claim_retention_policy: Some(
                StatefulSetPersistentVolumeClaimRetentionPolicy {
                    when_deleted: Some("Delete".into()),
                    when_scaled: Some("Delete".into()),
                },
            ),
            template: pod.template(),
            volume_claim_templates: Some(vec![super::group::data_claim(
                &labels,
                &spec.trackers.volume.size,
                spec.trackers.volume.storage_class_name.clone(),
            )]),
            ..Default::default()
        }),
        ..Default::default()
    };

    TrackerObjects {
        config,
        storage_ids,
        headless,
        client,
        statefulset,
        pdb,
    }
}

/// A budget of one Pod down at a time among the Pods with `labels`.
pub(super) fn disruption_budget(
    metadata: ObjectMeta,
    labels: &BTreeMap<String, String>,
) -> PodDisruptionBudget {
    PodDisruptionBudget {
        metadata,
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(LabelSelector {
                match_labels: Some(labels.clone()),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}
