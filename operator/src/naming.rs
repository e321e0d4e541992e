//! Names, labels and FastDFS server ids the operator derives from its resources.
//!
//! Everything here is a pure function of resource names, so the fetch step can find objects
//! again by name or label, and a storage keeps its server id across restarts, reschedules and
//! operator upgrades.
//!
//! | object | name |
//! |---|---|
//! | tracker Deployment, client Service | `<cluster>-tracker` |
//! | tracker headless Service | `<cluster>-tracker-headless` |
//! | tracker ConfigMap (`tracker.conf`) | `<cluster>-tracker-config` |
//! | cluster ConfigMap (`storage_ids.conf`) | `<cluster>-storage-ids` |
//! | group StatefulSet, headless Service, PodDisruptionBudget | `<storagegroup>` |
//! | group ConfigMap (`storage.conf`) | `<storagegroup>-config` |
//! | storage Pod `i` | `<storagegroup>-<i>` |

use std::collections::BTreeMap;

use fdfs_node::fileid::MAX_SERVER_ID;

use crate::crd::MAX_GROUP_REPLICAS;

/// Field manager of every server-side apply, and the value of `app.kubernetes.io/managed-by`.
pub const MANAGER: &str = "fdfs-operator";

/// Label naming the `FdfsCluster` an object belongs to.
pub const CLUSTER_LABEL: &str = "fdfs.dev/cluster";
/// Label naming the FastDFS group of a storage object.
pub const GROUP_LABEL: &str = "fdfs.dev/group";
/// Label naming the `StorageGroup` a storage object belongs to.
pub const STORAGE_GROUP_LABEL: &str = "fdfs.dev/storage-group";
/// Annotation that stops reconciling a resource while it is `paused`.
pub const RECONCILE_ANNOTATION: &str = "fdfs.dev/reconcile";
/// Pod template annotation carrying a hash of the rendered configuration, so a change rolls
/// the Pods.
pub const CONFIG_HASH_ANNOTATION: &str = "fdfs.dev/config-hash";

/// `app.kubernetes.io/component` of the tracker objects.
pub const TRACKER_COMPONENT: &str = "tracker";
/// `app.kubernetes.io/component` of the storage objects.
pub const STORAGE_COMPONENT: &str = "storage";

/// Longest DNS label, the limit for Service names and label values.
pub const DNS_LABEL_MAX: usize = 63;
/// Longest StatefulSet name: its Pods carry a `controller-revision-hash` label of the
/// StatefulSet name plus 11 characters, and label values are DNS labels.
pub const STATEFULSET_NAME_MAX: usize = 52;
/// Longest `FdfsCluster` name: `<cluster>-tracker-headless` must be a DNS label.
pub const CLUSTER_NAME_MAX: usize = DNS_LABEL_MAX - "-tracker-headless".len();

/// Name of the tracker Deployment and of the client Service.
pub fn tracker(cluster: &str) -> String {
    format!("{cluster}-tracker")
}

/// Name of the tracker headless Service, whose DNS name resolves to every tracker Pod.
pub fn tracker_headless(cluster: &str) -> String {
    format!("{cluster}-tracker-headless")
}

/// Name of the tracker ConfigMap.
pub fn tracker_config(cluster: &str) -> String {
    format!("{cluster}-tracker-config")
}

/// Name of the cluster-wide ConfigMap holding `storage_ids.conf`.
pub fn storage_ids(cluster: &str) -> String {
    format!("{cluster}-storage-ids")
}

/// Name of a group's StatefulSet, headless Service and PodDisruptionBudget.
pub fn group(storage_group: &str) -> String {
    storage_group.to_owned()
}

/// Name of a group's ConfigMap.
pub fn group_config(storage_group: &str) -> String {
    format!("{storage_group}-config")
}

/// Name of a group's Pod with the given StatefulSet ordinal.
pub fn pod(storage_group: &str, ordinal: u32) -> String {
    format!("{storage_group}-{ordinal}")
}

/// Name of the Service that publishes one storage outside the cluster.
pub fn outside_service(storage_group: &str, ordinal: u32) -> String {
    format!("{}-outside", pod(storage_group, ordinal))
}

/// Pod template annotation with a hash of the HTTP token secret: a rotated secret rolls
/// the storages.
pub const TOKEN_SECRET_HASH_ANNOTATION: &str = "fdfs.dev/token-secret-hash";

/// StatefulSet annotation with a hash of the Pod template the operator built: a different
/// hash starts a rollout, stepped on FastDFS state.
pub const TEMPLATE_HASH_ANNOTATION: &str = "fdfs.dev/template-hash";

/// The label a StatefulSet controller puts on each of its Pods, with the revision of the
/// template the Pod was made from.
pub const POD_REVISION_LABEL: &str = "controller-revision-hash";

/// The label a StatefulSet controller puts on each of its Pods, with the Pod's name.
pub const POD_NAME_LABEL: &str = "statefulset.kubernetes.io/pod-name";

/// The label a StatefulSet controller puts on each of its Pods, with the Pod's ordinal.
pub const POD_INDEX_LABEL: &str = "apps.kubernetes.io/pod-index";

/// The ordinal of a group's Pod, from its name.
pub fn pod_ordinal(storage_group: &str, pod: &str) -> Option<u32> {
    pod.strip_prefix(storage_group)?
        .strip_prefix('-')?
        .parse()
        .ok()
}

/// Fully qualified DNS name of a Service.
pub fn service_host(service: &str, namespace: &str, cluster_domain: &str) -> String {
    format!("{service}.{namespace}.svc.{cluster_domain}")
}

/// Fully qualified DNS name of a storage Pod behind its group's headless Service.
pub fn pod_host(
    storage_group: &str,
    ordinal: u32,
    namespace: &str,
    cluster_domain: &str,
) -> String {
    format!(
        "{}.{}",
        pod(storage_group, ordinal),
        service_host(&group(storage_group), namespace, cluster_domain)
    )
}

/// Labels of every tracker object of a cluster; also the tracker Pod selector.
pub fn tracker_labels(cluster: &str) -> BTreeMap<String, String> {
    common_labels(cluster, TRACKER_COMPONENT)
}

/// Labels of every object of a group; also its Pod selector.
pub fn group_labels(
    cluster: &str,
    storage_group: &str,
    group_name: &str,
) -> BTreeMap<String, String> {
    let mut labels = storage_labels(cluster);
    labels.insert(STORAGE_GROUP_LABEL.into(), storage_group.into());
    labels.insert(GROUP_LABEL.into(), group_name.into());
    labels
}

/// Labels every storage Pod of a cluster carries, whatever its group.
pub fn storage_labels(cluster: &str) -> BTreeMap<String, String> {
    common_labels(cluster, STORAGE_COMPONENT)
}

/// Labels of the cluster-wide objects that both trackers and storages use.
pub fn cluster_labels(cluster: &str) -> BTreeMap<String, String> {
    common_labels(cluster, "config")
}

fn common_labels(cluster: &str, component: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".into(), "fdfs".into()),
        ("app.kubernetes.io/instance".into(), cluster.into()),
        ("app.kubernetes.io/component".into(), component.into()),
        ("app.kubernetes.io/managed-by".into(), MANAGER.into()),
        (CLUSTER_LABEL.into(), cluster.into()),
    ])
}

/// A label selector string (`k=v,k=v`) matching all of `labels`.
pub fn selector(labels: &BTreeMap<String, String>) -> String {
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Checks that a name is a DNS-1035 label of at most `max` characters: lowercase letters,
/// digits and `-`, starting with a letter and ending with a letter or digit. Service names
/// must be such labels, and the operator names Services after its resources.
pub fn check_dns_label(name: &str, max: usize) -> Result<(), String> {
    if name.is_empty() || name.len() > max {
        return Err(format!("must be 1 to {max} characters long"));
    }
    let bytes = name.as_bytes();
    let ok_char = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-';
    if !bytes.iter().all(|b| ok_char(*b)) {
        return Err("may contain only lowercase letters, digits and '-'".into());
    }
    if !bytes[0].is_ascii_lowercase() {
        return Err("must start with a lowercase letter".into());
    }
    if bytes[bytes.len() - 1] == b'-' {
        return Err("must end with a letter or digit".into());
    }
    Ok(())
}

/// Storage ids per group: one per possible StatefulSet ordinal.
const IDS_PER_GROUP: u32 = MAX_GROUP_REPLICAS as u32;
/// Number of id blocks of [`IDS_PER_GROUP`] ids that fit below FastDFS's largest server id,
/// leaving out block 0 (id 0 is no valid server id).
const ID_BLOCKS: u32 = (MAX_SERVER_ID + 1) / IDS_PER_GROUP - 1;

/// The block of server ids of a group: a hash of its name, the same on every operator run.
pub fn id_block(group_name: &str) -> u32 {
    // FNV-1a, 32 bits: stable across Rust releases, unlike `DefaultHasher`.
    let hash = group_name.bytes().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    1 + hash % ID_BLOCKS
}

/// FastDFS server id of the storage with StatefulSet ordinal `ordinal` in group `group_name`.
///
/// Ids are decimal numbers from 1 to 2^24 − 1 (FastDFS encodes them in file names in place of
/// an IPv4 address), unique across a cluster. Each group owns a block of 32 consecutive ids,
/// chosen by a hash of its name; the ordinal picks the id inside the block. Two groups whose
/// names hash to the same block are refused by validation (the older one keeps its ids).
pub fn storage_id(group_name: &str, ordinal: u32) -> u32 {
    debug_assert!(ordinal < IDS_PER_GROUP);
    id_block(group_name) * IDS_PER_GROUP + ordinal % IDS_PER_GROUP
}

/// The ordinal of a storage of `group_name` from its server id, when the id is one the operator
/// derived for that group.
pub fn ordinal_of_id(group_name: &str, id: &str) -> Option<u32> {
    let id: u32 = id.parse().ok()?;
    (id / IDS_PER_GROUP == id_block(group_name)).then_some(id % IDS_PER_GROUP)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_ids_are_valid_fastdfs_server_ids() {
        for group in ["group1", "g", "abcdefghijklmnop", "ZZZZZZZZZZZZZZZZ"] {
            for ordinal in [0, 1, 31] {
                let id = storage_id(group, ordinal);
                assert!((1..=MAX_SERVER_ID).contains(&id), "{group}/{ordinal}: {id}");
                assert_eq!(ordinal_of_id(group, &id.to_string()), Some(ordinal));
            }
        }
        assert_eq!(ID_BLOCKS * IDS_PER_GROUP + IDS_PER_GROUP - 1, MAX_SERVER_ID);
    }

    #[test]
    fn storage_ids_are_stable() {
        // Changing these numbers renames every storage of every running cluster.
        assert_eq!(storage_id("group1", 0), 7_218_848);
        assert_eq!(storage_id("group1", 1), 7_218_849);
        assert_eq!(storage_id("group2", 0), 7_232_768);
    }

    #[test]
    fn foreign_ids_map_to_no_ordinal() {
        assert_eq!(ordinal_of_id("group1", "127.0.0.1"), None);
        assert_eq!(ordinal_of_id("group1", "100001"), None);
        let other = storage_id("group2", 3).to_string();
        assert_eq!(ordinal_of_id("group1", &other), None);
        assert_eq!(ordinal_of_id("group2", &other), Some(3));
    }

    #[test]
    fn pod_names_and_ordinals() {
        assert_eq!(pod("photos-eu", 2), "photos-eu-2");
        assert_eq!(pod_ordinal("photos-eu", "photos-eu-2"), Some(2));
        assert_eq!(pod_ordinal("photos", "photos-eu-2"), None);
        assert_eq!(pod_ordinal("photos-eu", "photos-eu-x"), None);
        assert_eq!(
            pod_host("group1", 0, "fdfs", "cluster.local"),
            "group1-0.group1.fdfs.svc.cluster.local"
        );
    }

    #[test]
    fn dns_labels() {
        assert!(check_dns_label("main", 63).is_ok());
        assert!(check_dns_label("photos-eu1", 63).is_ok());
        for bad in ["", "Main", "1main", "main-", "ma.in", "ma_in"] {
            assert!(check_dns_label(bad, 63).is_err(), "{bad}");
        }
        assert!(check_dns_label(&"a".repeat(53), STATEFULSET_NAME_MAX).is_err());
        assert_eq!(CLUSTER_NAME_MAX, 46);
    }
}
