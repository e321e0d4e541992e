//! The objects of one storage group: a StatefulSet with a volume claim template, its headless
//! Service, its ConfigMap and, for groups of more than one storage, a PodDisruptionBudget.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    RollingUpdateStatefulSetStrategy, StatefulSet, StatefulSetPersistentVolumeClaimRetentionPolicy,
    StatefulSetSpec, StatefulSetUpdateStrategy,
};
use k8s_openapi::api::core::v1::{
    ConfigMap, PersistentVolumeClaim, PersistentVolumeClaimSpec, Service, ServicePort, ServiceSpec,
    VolumeResourceRequirements,
};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::{Resource, ResourceExt};

use crate::crd::{DeletionPolicy, Expose, ExposeType, FdfsCluster, OutsideAddress, StorageGroup};
use crate::naming;
use crate::validate::ValidStorageGroup;

use super::conf;
use super::pod::{NodePod, Role};
use super::tracker::{
    disruption_budget, headless_service, meta, one_file_config_map, service_port,
};
use super::{
    BuildOptions, DATA_VOLUME, FASTDFS_PORT_NAME, HTTP_PORT_NAME, STORAGE_CONF_FILE,
    STORAGE_HTTP_PORT, STORAGE_PORT,
};

/// Everything one group needs.
#[derive(Clone, Debug, PartialEq)]
pub struct GroupObjects {
    /// `storage.conf`.
    pub config: ConfigMap,
    /// Gives each storage a stable DNS name, published before it is ready.
    pub headless: Service,
    /// The storages.
    pub statefulset: StatefulSet,
    /// At most one storage down at a time through voluntary disruptions; `None` for a group
    /// of one storage, which a budget would make undrainable.
    pub pdb: Option<PodDisruptionBudget>,
    /// One Service per storage publishing it outside the cluster (`spec.expose` of type
    /// `LoadBalancer` or `NodePort`), in ordinal order.
    pub outside: Vec<Service>,
}

/// Marks the storages' Pod template with a hash of the HTTP token secret they read from
/// their environment: a rotated Secret rolls them, as a changed configuration does. The
/// hash is salted with the group's uid, so equal secrets of two groups do not compare.
pub fn mark_token_secret(statefulset: &mut StatefulSet, salt: &str, secret: &[u8]) {
    let hash = conf::bytes_hash([salt.as_bytes(), secret]);
    if let Some(meta) = statefulset
        .spec
        .as_mut()
        .map(|s| s.template.metadata.get_or_insert_with(Default::default))
    {
        meta.annotations
            .get_or_insert_with(Default::default)
            .insert(naming::TOKEN_SECRET_HASH_ANNOTATION.into(), hash);
    }
    seal_template(statefulset);
}

/// Records a hash of the Pod template on the StatefulSet, so the next reconcile tells a new
/// template (a rollout to step) from the one the StatefulSet already has.
fn seal_template(statefulset: &mut StatefulSet) {
    let Some(template) = statefulset.spec.as_ref().map(|s| &s.template) else {
        return;
    };
    let json = serde_json::to_vec(template).unwrap_or_default();
    let hash = conf::bytes_hash([json.as_slice()]);
    statefulset
        .metadata
        .annotations
        .get_or_insert_with(Default::default)
        .insert(naming::TEMPLATE_HASH_ANNOTATION.into(), hash);
}

/// Lets the StatefulSet replace only the Pods from ordinal `partition` up (a rollout stepped
/// by the operator); `None` leaves every Pod to the StatefulSet's own rolling update.
pub fn set_partition(statefulset: &mut StatefulSet, partition: Option<i32>) {
    if let Some(strategy) = statefulset
        .spec
        .as_mut()
        .and_then(|s| s.update_strategy.as_mut())
    {
        strategy.rolling_update = partition.map(|p| RollingUpdateStatefulSetStrategy {
            partition: Some(p),
            ..Default::default()
        });
    }
}

/// The FastDFS port of a group's storage `ordinal`: its own NodePort number when the group
/// is published through NodePorts, else the port every storage uses.
pub fn storage_port(expose: &Expose, ordinal: u32) -> i32 {
    match (expose.type_, expose.node_port_base) {
        (ExposeType::NodePort, Some(base)) => base + ordinal as i32,
        _ => STORAGE_PORT,
    }
}

/// Where outside clients reach each published storage: a load balancer's address once it
/// has one, or the nodes' address and the storage's NodePort.
pub fn outside_addresses(name: &str, expose: &Expose, services: &[Service]) -> Vec<OutsideAddress> {
    (0..services.len() as u32)
        .zip(services)
        .map(|(ordinal, service)| {
            let port = storage_port(expose, ordinal);
            let host = match expose.type_ {
                ExposeType::NodePort => expose.node_address.clone(),
                _ => service
                    .status
                    .as_ref()
                    .and_then(|s| s.load_balancer.as_ref())
                    .and_then(|lb| lb.ingress.as_ref())
                    .and_then(|i| i.first())
                    .and_then(|i| i.ip.clone().or_else(|| i.hostname.clone())),
            };
            OutsideAddress {
                pod: naming::pod(name, ordinal),
                address: host.map(|h| format!("{h}:{port}")),
            }
        })
        .collect()
}

/// The Service publishing storage `ordinal` of a group outside the cluster.
fn outside_service(
    name: &str,
    ordinal: u32,
    expose: &Expose,
    metadata: ObjectMeta,
    labels: &BTreeMap<String, String>,
) -> Option<Service> {
    let mut selector = labels.clone();
    selector.insert(naming::POD_NAME_LABEL.into(), naming::pod(name, ordinal));
    let port = storage_port(expose, ordinal);
    let (type_, ports, annotations) = match expose.type_ {
        ExposeType::LoadBalancer => (
            "LoadBalancer",
            vec![
                service_port(FASTDFS_PORT_NAME, port),
                service_port(HTTP_PORT_NAME, STORAGE_HTTP_PORT),
            ],
            Some(expose.service_annotations.clone()).filter(|a| !a.is_empty()),
        ),
        ExposeType::NodePort => (
            "NodePort",
            // By number: every Pod's template names one port (ordinal 0's), while Pod n
            // listens on the base plus n.
            vec![ServicePort {
                node_port: Some(port),
                target_port: Some(IntOrString::Int(port)),
                ..service_port(FASTDFS_PORT_NAME, port)
            }],
            None,
        ),
        ExposeType::None | ExposeType::HostNetwork => return None,
    };
    Some(Service {
        metadata: ObjectMeta {
            annotations,
            ..metadata
        },
        spec: Some(ServiceSpec {
            type_: Some(type_.into()),
            selector: Some(selector),
            ports: Some(ports),
            // A storage that is starting or copying its group is published all the same:
            // its trackers decide whom to send to it.
            publish_not_ready_addresses: Some(true),
            ..Default::default()
        }),
        ..Default::default()
    })
}

/// Builds a valid group's objects with `replicas` storages (the scale step decides the count,
/// which may lag behind `spec.replicas` while a scale-down waits).
pub fn group_objects(
    cluster: &FdfsCluster,
    group: &StorageGroup,
    valid: &ValidStorageGroup,
    replicas: i32,
    opts: &BuildOptions,
) -> GroupObjects {
    let name = group.name_any();
    let namespace = group.namespace();
    let cluster_name = cluster.name_any();
    let labels = naming::group_labels(&cluster_name, &name, &valid.group_name);
    let owner = group.controller_owner_ref(&());
    let spec = &group.spec;

    let storage_conf = conf::storage_conf(cluster, &valid.group_name, &name, spec, opts);
    let config = one_file_config_map(
        meta(
            naming::group_config(&name),
            namespace.clone(),
            &labels,
            owner.clone(),
        ),
        STORAGE_CONF_FILE,
        storage_conf.clone(),
    );

    // A storage resolves its own name (to find its server id) and its peers' names (to copy
    // files) long before it is ready.
    let headless = headless_service(
        meta(
            naming::group(&name),
            namespace.clone(),
            &labels,
            owner.clone(),
        ),
        &labels,
        vec![
            service_port(FASTDFS_PORT_NAME, STORAGE_PORT),
            service_port(HTTP_PORT_NAME, STORAGE_HTTP_PORT),
        ],
    );

    let pod = NodePod {
        role: Role::Storage,
        image: &valid.cluster.image,
        pull_policy: cluster.spec.image_pull_policy,
        config_file: STORAGE_CONF_FILE,
        config_map: naming::group_config(&name),
        storage_ids_config_map: naming::storage_ids(&cluster_name),
        port: storage_port(&spec.expose, 0),
        http_port: STORAGE_HTTP_PORT,
        resources: spec.resources.as_ref(),
        scheduling: &spec.scheduling,
        labels: labels.clone(),
        config_hash: conf::config_hash(&[&storage_conf]),
        http_secret: cluster.spec.settings.http_token_secret_ref.as_ref(),
        host_network: spec.expose.type_ == ExposeType::HostNetwork,
        port_from_index: spec.expose.type_ == ExposeType::NodePort,
    };
    let claim = data_claim(
        &labels,
        &spec.volume.size,
        spec.volume.storage_class_name.clone(),
    );
    let statefulset = StatefulSet {
        metadata: meta(
            naming::group(&name),
            namespace.clone(),
            &labels,
            owner.clone(),
        ),
        spec: Some(StatefulSetSpec {
            replicas: Some(replicas),
            service_name: Some(naming::group(&name)),
            selector: LabelSelector {
                match_labels: Some(labels.clone()),
                ..Default::default()
            },
            // One storage at a time, each waiting for the previous one to be ACTIVE and
            // caught up: a new member copies the group from a settled peer.
            pod_management_policy: Some("OrderedReady".into()),
            update_strategy: Some(StatefulSetUpdateStrategy {
                type_: Some("RollingUpdate".into()),
                ..Default::default()
            }),
            persistent_volume_claim_retention_policy: Some(
                StatefulSetPersistentVolumeClaimRetentionPolicy {
                    when_deleted: Some(
                        match spec.deletion_policy {
                            DeletionPolicy::Retain => "Retain",
                            DeletionPolicy::Delete => "Delete",
                        }
                        .into(),
                    ),
                    // A removed storage's volume stays: scaling down never deletes files.
                    when_scaled: Some("Retain".into()),
                },
            ),
            template: pod.template(),
            volume_claim_templates: Some(vec![claim]),
            ..Default::default()
        }),
        ..Default::default()
    };

    let outside = (0..replicas.max(0) as u32)
        .filter_map(|ordinal| {
            let metadata = meta(
                naming::outside_service(&name, ordinal),
                namespace.clone(),
                &labels,
                owner.clone(),
            );
            outside_service(&name, ordinal, &spec.expose, metadata, &labels)
        })
        .collect();

    let pdb = (replicas > 1).then(|| {
        disruption_budget(
            meta(naming::group(&name), namespace, &labels, owner),
            &labels,
        )
    });

    let mut statefulset = statefulset;
    seal_template(&mut statefulset);

    GroupObjects {
        config,
        headless,
        statefulset,
        pdb,
        outside,
    }
}

/// The claim template of a node's data volume.
pub(super) fn data_claim(
    labels: &BTreeMap<String, String>,
    size: &k8s_openapi::apimachinery::pkg::api::resource::Quantity,
    storage_class_name: Option<String>,
) -> PersistentVolumeClaim {
    PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some(DATA_VOLUME.into()),
            labels: Some(labels.clone()),
            ..Default::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".into()]),
            storage_class_name,
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([("storage".into(), size.clone())])),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// How the data volumes a group asks for differ from those its StatefulSet has.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClaimChange {
    /// Same size and class.
    None,
    /// A larger `spec.volume.size`: the claims can be expanded where their StorageClass
    /// allows it.
    Grow {
        /// The size the volumes have now.
        from: String,
        /// The size asked for.
        to: String,
    },
    /// A change Kubernetes cannot make to existing volumes (smaller, or another class).
    Refused(String),
}

/// Compares the data claim template `built` asks for with the one of `existing`, and keeps
/// the existing one in `built` (Kubernetes refuses any change to `volumeClaimTemplates`; a
/// growth is carried out on the claims themselves, then the StatefulSet is replaced).
pub fn claim_change(existing: &StatefulSet, built: &mut StatefulSet) -> ClaimChange {
    let data_claim = |sts: &StatefulSet| {
        sts.spec
            .as_ref()?
            .volume_claim_templates
            .as_ref()?
            .iter()
            .find(|c| c.metadata.name.as_deref() == Some(DATA_VOLUME))
            .and_then(|c| c.spec.clone())
    };
    let Some(old) = data_claim(existing) else {
        return ClaimChange::None;
    };
    let Some(new) = data_claim_mut(built) else {
        return ClaimChange::None;
    };
    let mut refused = Vec::new();
    let mut grow = None;
    if let (Some(was), Some(asked)) = (claim_size(&old), claim_size(new))
        && !same_quantity(&was, &asked)
    {
        if quantity_millis(&asked) > quantity_millis(&was) {
            grow = Some((was, asked));
        } else {
            refused.push(format!(
                "spec.volume.size {asked} is smaller than the {was} the volumes have; volumes \
                 only grow"
            ));
        }
        new.resources = old.resources.clone();
    }
    // A class the API server defaulted (old set, new unset) is no change.
    if new.storage_class_name.is_some() && new.storage_class_name != old.storage_class_name {
        refused.push(format!(
            "spec.volume.storageClassName {} (the volumes were created with {}) cannot \
             change; move the files to a new StorageGroup",
            new.storage_class_name.as_deref().unwrap_or_default(),
            old.storage_class_name
                .as_deref()
                .unwrap_or("the default class")
        ));
    }
    new.storage_class_name = old.storage_class_name.clone();
    match (refused.is_empty(), grow) {
        (false, _) => ClaimChange::Refused(format!(
            "the storages' volumes cannot be changed so: {}",
            refused.join("; ")
        )),
        (true, Some((from, to))) => ClaimChange::Grow { from, to },
        (true, None) => ClaimChange::None,
    }
}

/// Puts `size` into the data claim template of `built` (once the claims have grown).
pub fn set_claim_size(built: &mut StatefulSet, size: &str) {
    if let Some(spec) = data_claim_mut(built) {
        spec.resources = Some(VolumeResourceRequirements {
            requests: Some(BTreeMap::from([(
                "storage".to_owned(),
                k8s_openapi::apimachinery::pkg::api::resource::Quantity(size.to_owned()),
            )])),
            ..Default::default()
        });
    }
}

fn data_claim_mut(sts: &mut StatefulSet) -> Option<&mut PersistentVolumeClaimSpec> {
    sts.spec
        .as_mut()?
        .volume_claim_templates
        .as_mut()?
        .iter_mut()
        .find(|c| c.metadata.name.as_deref() == Some(DATA_VOLUME))?
        .spec
        .as_mut()
}

/// The storage a claim spec requests.
pub fn claim_size(spec: &PersistentVolumeClaimSpec) -> Option<String> {
    spec.resources
        .as_ref()?
        .requests
        .as_ref()?
        .get("storage")
        .map(|q| q.0.clone())
}

/// Whether quantity `a` is at least `b`; unparsable ones compare as equal text.
pub fn at_least(a: &str, b: &str) -> bool {
    match (quantity_millis(a), quantity_millis(b)) {
        (Some(x), Some(y)) => x >= y,
        _ => a == b,
    }
}

/// Whether two Kubernetes quantities are the same amount; unparsable ones compare as text.
fn same_quantity(a: &str, b: &str) -> bool {
    match (quantity_millis(a), quantity_millis(b)) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}

/// A quantity such as `10Gi`, `500M`, `1.5Gi` or `1e9`, in thousandths of its unit.
fn quantity_millis(q: &str) -> Option<u128> {
    let q = q.trim();
    let split = q
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(q.len());
    let (number, suffix) = q.split_at(split);
    let multiplier: u128 = match suffix {
        "" => 1,
        "m" => return scaled(number, 1, 1000),
        "k" => 1000,
        "M" => 1000u128.pow(2),
        "G" => 1000u128.pow(3),
        "T" => 1000u128.pow(4),
        "P" => 1000u128.pow(5),
        "E" => 1000u128.pow(6),
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        "Ti" => 1 << 40,
        "Pi" => 1 << 50,
        "Ei" => 1 << 60,
        exp if exp.starts_with(['e', 'E']) => 10u128.checked_pow(exp[1..].parse().ok()?)?,
        _ => return None,
    };
    scaled(number, multiplier, 1)
}

/// `number × multiplier × 1000 ÷ divisor`, exact for up to three decimals.
fn scaled(number: &str, multiplier: u128, divisor: u128) -> Option<u128> {
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() && fraction.is_empty() {
        return None;
    }
    let digits = format!("{whole}{fraction}");
    let mantissa: u128 = digits.parse().ok()?;
    let places = 10u128.checked_pow(u32::try_from(fraction.len()).ok()?)?;
    Some(mantissa.checked_mul(multiplier)?.checked_mul(1000)? / places / divisor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_compare_by_amount() {
        assert!(same_quantity("1Gi", "1024Mi"));
        assert!(same_quantity("1G", "1000M"));
        assert!(same_quantity("1.5Gi", "1536Mi"));
        assert!(same_quantity("1e3", "1k"));
        assert!(!same_quantity("1Gi", "1G"));
        assert!(!same_quantity("10Gi", "20Gi"));
        assert_eq!(quantity_millis("2"), Some(2000));
        assert_eq!(quantity_millis("500m"), Some(500));
        assert_eq!(quantity_millis("Gi"), None);
        assert_eq!(quantity_millis("1Zi"), None);
    }
}
