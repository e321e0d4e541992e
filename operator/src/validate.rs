//! The validate step of reconcile: checks a spec against FastDFS's rules and against the other
//! resources it relates to.
//!
//! Pure functions: the fetch step hands in everything they look at, so every rule is tested
//! without an API server. The CRD schema enforces most of the same rules at admission; they are
//! checked again here because the operator must not act on objects stored before a rule existed,
//! and because some rules (a unique group name per cluster) span several objects.

use std::cmp::Ordering;

use kube::ResourceExt;

use crate::crd::{
    Expose, ExposeType, FdfsCluster, GROUP_NAME_MAX_LEN, IdType, MAX_GROUP_REPLICAS, MAX_TRACKERS,
    ReservedSpace, StorageGroup, StoreLookup,
};
use crate::naming;
use crate::{Error, Result};
use fdfs_node::tracker::storage_ids::{StorageIdEntry, StorageIds};

/// Highest number of store paths a FastDFS storage supports.
const MAX_STORE_PATHS: i32 = 256;

/// Values of a valid `FdfsCluster` that later steps need in parsed form.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValidCluster {
    /// `settings.reservedStorageSpace`, parsed.
    pub reserved_space: ReservedSpace,
    /// The node image: `spec.image`, or else the operator's default.
    pub image: String,
    /// The storages of `spec.trackers.externalStorageIds`, once the reconcile has read and
    /// checked them (`external_storage_ids`); empty until then.
    pub external_ids: Vec<StorageIdEntry>,
}

/// Values of a valid `StorageGroup` that later steps need in resolved form.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValidStorageGroup {
    /// The FastDFS group name in effect.
    pub group_name: String,
    /// The cluster's settings, parsed.
    pub cluster: ValidCluster,
}

/// Checks an `FdfsCluster` on its own. `default_image` is the operator's `--default-image`,
/// used when `spec.image` is unset.
pub fn validate_cluster(
    cluster: &FdfsCluster,
    default_image: Option<&str>,
) -> Result<ValidCluster> {
    let spec = &cluster.spec;
    let image = match (spec.image.as_deref(), default_image) {
        (Some(image), _) | (None, Some(image)) if !image.trim().is_empty() => image.to_owned(),
        _ => return Err(Error::MissingImage),
    };
    let name = cluster.name_any();
    naming::check_dns_label(&name, naming::CLUSTER_NAME_MAX).map_err(|reason| {
        Error::InvalidResourceName {
            kind: "FdfsCluster",
            name,
            reason,
        }
    })?;
    check_range(
        "spec.trackers.replicas",
        spec.trackers.replicas,
        if spec.trackers.external.is_empty() {
            1
        } else {
            0
        },
        MAX_TRACKERS - spec.trackers.external.len() as i32,
    )?;
    for tracker in &spec.trackers.external {
        check_tracker_endpoint(tracker)?;
    }
    check_port("spec.trackers.port", spec.trackers.port)?;
    check_port("spec.trackers.httpPort", spec.trackers.http_port)?;
    if spec.trackers.port == spec.trackers.http_port {
        return Err(Error::PortConflict {
            port: spec.trackers.port,
        });
    }

    let settings = &spec.settings;
    match (&settings.store_lookup, &settings.store_group) {
        (StoreLookup::SpecifiedGroup, None) => return Err(Error::MissingStoreGroup),
        (_, Some(group)) => check_group_name("spec.settings.storeGroup", group)?,
        (_, None) => {}
    }
    let reserved_space = settings.reserved_storage_space.parse()?;
    let width = settings.compat.ip_field_width;
    if width != 15 && width != 45 {
        return Err(Error::InvalidIpFieldWidth { width });
    }
    if let Some(t) = &settings.trunk {
        let fits = (64..=65536).contains(&t.slot_min_size)
            && t.slot_max_size > t.slot_min_size
            && (4 << 20..=1 << 30).contains(&t.trunk_file_size)
            && i64::from(t.slot_max_size) * 2 <= i64::from(t.trunk_file_size);
        if !fits {
            return Err(Error::InvalidTrunkSizes {
                slot_min: t.slot_min_size,
                slot_max: t.slot_max_size,
                trunk_file: t.trunk_file_size,
            });
        }
    }
    Ok(ValidCluster {
        reserved_space,
        image,
        external_ids: Vec::new(),
    })
}

/// The storages of `spec.trackers.externalStorageIds` (none when unset), from the text the
/// fetch step read under its key (`None`: no such ConfigMap; `Some(None)`: no such key).
/// `ours` are the cluster's groups as (group name, StorageGroup): an external id inside the
/// block of ids the operator gives one of them is refused, as the operator would take that
/// storage for one of its own.
pub fn external_storage_ids(
    cluster: &FdfsCluster,
    text: Option<Option<&str>>,
    ours: &[(&str, &str)],
) -> Result<Vec<StorageIdEntry>> {
    let Some(source) = &cluster.spec.trackers.external_storage_ids else {
        return Ok(Vec::new());
    };
    let refuse = |reason: String| Error::InvalidExternalStorageIds {
        config_map: source.name.clone(),
        key: source.key.clone(),
        reason,
    };
    if !cluster.spec.settings.use_storage_id {
        return Err(refuse(
            "storage ids from a ConfigMap need settings.useStorageId: true".into(),
        ));
    }
    let text = match text {
        None => return Err(refuse("no such ConfigMap".into())),
        Some(None) => return Err(refuse("the ConfigMap has no such key".into())),
        Some(Some(text)) => text,
    };
    let ids = StorageIds::parse(text)
        .map_err(|(line, reason)| refuse(format!("line {line}: {reason}")))?;
    for entry in &ids.entries {
        if let Some((group, storage_group)) = ours
            .iter()
            .find(|(group, _)| naming::ordinal_of_id(group, &entry.id).is_some())
        {
            return Err(refuse(format!(
                "id {} is among the ids the operator gives group {group:?} of StorageGroup \
                 {storage_group:?}",
                entry.id
            )));
        }
    }
    Ok(ids.entries)
}

/// An external tracker must be `host:port` with a port that exists.
fn check_tracker_endpoint(endpoint: &str) -> Result<()> {
    let port = endpoint
        .rsplit_once(':')
        .filter(|(host, _)| !host.is_empty() && !host.contains(char::is_whitespace))
        .and_then(|(_, port)| port.parse::<u16>().ok())
        .filter(|port| *port > 0);
    match port {
        Some(_) => Ok(()),
        None => Err(Error::InvalidTrackerEndpoint {
            endpoint: endpoint.to_owned(),
        }),
    }
}

/// What the schema's rules say of `spec.expose`, checked again for objects that skipped
/// them.
fn check_expose(expose: &Expose, replicas: i32) -> Result<()> {
    let invalid = |reason: String| Err(Error::InvalidExpose { reason });
    if expose.type_ != ExposeType::NodePort {
        return Ok(());
    }
    let (Some(address), Some(base)) = (&expose.node_address, expose.node_port_base) else {
        return invalid("type NodePort needs nodeAddress and nodePortBase".into());
    };
    if address.trim().is_empty() || address.contains([':', ',', ' ']) {
        return invalid(format!(
            "nodeAddress {address:?} must be one host name or IPv4 address"
        ));
    }
    if base < 1024 || i64::from(base) + i64::from(replicas.max(1)) - 1 > 65535 {
        return invalid(format!(
            "nodePortBase {base} leaves no port for each of {replicas} storages below 65536"
        ));
    }
    Ok(())
}

/// Checks a `StorageGroup` against its cluster and the other groups of its namespace.
///
/// `cluster` is the `FdfsCluster` named by `spec.clusterRef`, or `None` when it does not exist.
/// `siblings` are the `StorageGroup`s of the namespace; `group` itself may be among them. When
/// two groups of one cluster claim the same group name, the one created first keeps it (the
/// one whose name sorts first, on a tie) and the other is refused.
///
/// Storage ids are derived from group names (see [`naming::storage_id`]); a group whose ids
/// would collide with an older group's is refused the same way.
pub fn validate_storage_group(
    group: &StorageGroup,
    cluster: Option<&FdfsCluster>,
    siblings: &[StorageGroup],
    default_image: Option<&str>,
) -> Result<ValidStorageGroup> {
    let spec = &group.spec;
    let name_field = if spec.group_name.is_some() {
        "spec.groupName"
    } else {
        "metadata.name"
    };
    let group_name = group.group_name();
    check_group_name(name_field, group_name)?;
    check_range("spec.replicas", spec.replicas, 0, MAX_GROUP_REPLICAS)?;
    if !(1..=MAX_STORE_PATHS).contains(&spec.volume.store_paths) {
        return Err(Error::InvalidStorePaths {
            store_paths: spec.volume.store_paths,
        });
    }
    if !(1..=256).contains(&spec.volume.subdir_count_per_path) {
        return Err(Error::InvalidSubdirCount {
            count: spec.volume.subdir_count_per_path,
        });
    }

    check_storage_group_name(group)?;
    check_expose(&spec.expose, spec.replicas)?;

    let namespace = group.namespace().unwrap_or_default();
    let cluster = cluster
        .filter(|c| {
            c.name_any() == spec.cluster_ref && c.namespace().unwrap_or_default() == namespace
        })
        .ok_or_else(|| Error::ClusterNotFound {
            cluster: spec.cluster_ref.clone(),
            namespace: namespace.clone(),
        })?;
    let valid_cluster =
        validate_cluster(cluster, default_image).map_err(|source| Error::ClusterInvalid {
            cluster: spec.cluster_ref.clone(),
            source: Box::new(source),
        })?;

    if spec.expose.type_ == ExposeType::NodePort
        && !(cluster.spec.settings.use_storage_id
            && cluster.spec.settings.id_type_in_filename == IdType::Id)
    {
        return Err(Error::InvalidExpose {
            reason: "type NodePort gives each storage its own port, which FastDFS allows only \
                     when file IDs carry server ids (settings.useStorageId and \
                     idTypeInFilename: Id)"
                .into(),
        });
    }

    let earlier_claim = siblings
        .iter()
        .filter(|other| {
            other.name_any() != group.name_any()
                && other.namespace().unwrap_or_default() == namespace
                && other.spec.cluster_ref == spec.cluster_ref
                && other.group_name() == group_name
        })
        .filter(|other| claim_order(other, group) == Ordering::Less)
        .min_by(|a, b| claim_order(a, b));
    if let Some(owner) = earlier_claim {
        return Err(Error::GroupNameConflict {
            group_name: group_name.to_owned(),
            claimed_by: owner.name_any(),
        });
    }

    let block = naming::id_block(group_name);
    let earlier_ids = siblings
        .iter()
        .filter(|other| {
            other.name_any() != group.name_any()
                && other.namespace().unwrap_or_default() == namespace
                && other.spec.cluster_ref == spec.cluster_ref
                && other.group_name() != group_name
                && naming::id_block(other.group_name()) == block
        })
        .filter(|other| claim_order(other, group) == Ordering::Less)
        .min_by(|a, b| claim_order(a, b));
    if let Some(owner) = earlier_ids {
        return Err(Error::StorageIdConflict {
            group_name: group_name.to_owned(),
            other_group: owner.group_name().to_owned(),
            claimed_by: owner.name_any(),
        });
    }

    Ok(ValidStorageGroup {
        group_name: group_name.to_owned(),
        cluster: valid_cluster,
    })
}

/// The operator names a group's StatefulSet and headless Service after the `StorageGroup`, so
/// its name must be a DNS label short enough for the StatefulSet's Pod labels, and must not be
/// the name of a tracker object of its cluster.
fn check_storage_group_name(group: &StorageGroup) -> Result<()> {
    let name = group.name_any();
    let invalid = |reason: String| Error::InvalidResourceName {
        kind: "StorageGroup",
        name: name.clone(),
        reason,
    };
    naming::check_dns_label(&name, naming::STATEFULSET_NAME_MAX).map_err(invalid)?;
    let cluster = &group.spec.cluster_ref;
    if name == naming::tracker(cluster) || name == naming::tracker_headless(cluster) {
        return Err(invalid(format!(
            "it is the name of a tracker object of FdfsCluster {cluster:?}"
        )));
    }
    Ok(())
}

/// Checks a name against FastDFS's rule: 1 to 16 bytes, ASCII letters and digits only.
pub fn check_group_name(field: &'static str, name: &str) -> Result<()> {
    if name.is_empty() {
        return Err(Error::GroupNameEmpty { field });
    }
    if name.len() > GROUP_NAME_MAX_LEN {
        return Err(Error::GroupNameTooLong {
            field,
            name: name.to_owned(),
            len: name.len(),
            max: GROUP_NAME_MAX_LEN,
        });
    }
    if let Some(character) = name.chars().find(|c| !c.is_ascii_alphanumeric()) {
        return Err(Error::GroupNameInvalidCharacter {
            field,
            name: name.to_owned(),
            character,
        });
    }
    Ok(())
}

/// Which of two groups claimed a name first: older creation time, then name. An object not yet
/// stored has no creation time and comes last.
fn claim_order(a: &StorageGroup, b: &StorageGroup) -> Ordering {
    let created = |g: &StorageGroup| g.metadata.creation_timestamp.clone();
    match (created(a), created(b)) {
        (Some(x), Some(y)) => x.cmp(&y),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => Ordering::Equal,
    }
    .then_with(|| a.name_any().cmp(&b.name_any()))
}

fn check_range(field: &'static str, replicas: i32, min: i32, max: i32) -> Result<()> {
    if (min..=max).contains(&replicas) {
        Ok(())
    } else {
        Err(Error::InvalidReplicas {
            field,
            replicas,
            min,
            max,
        })
    }
}

fn check_port(field: &'static str, port: i32) -> Result<()> {
    if (1..=65535).contains(&port) {
        Ok(())
    } else {
        Err(Error::InvalidPort { field, port })
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    const CLUSTER: &str = include_str!("../tests/fixtures/cluster.yaml");
    const GROUPS: &str = include_str!("../tests/fixtures/groups.yaml");

    fn cluster() -> FdfsCluster {
        serde_norway::from_str(CLUSTER).expect("cluster fixture parses")
    }

    fn cluster_with(settings_yaml: &str) -> FdfsCluster {
        let mut value: serde_norway::Value =
            serde_norway::from_str(CLUSTER).expect("cluster fixture parses");
        let patch: serde_norway::Value =
            serde_norway::from_str(settings_yaml).expect("patch parses");
        merge(&mut value, patch);
        serde_norway::from_value(value).expect("patched cluster parses")
    }

    /// Deep-merges `patch` into `base`, so a test states only what it changes.
    fn merge(base: &mut serde_norway::Value, patch: serde_norway::Value) {
        match (base, patch) {
            (serde_norway::Value::Mapping(base), serde_norway::Value::Mapping(patch)) => {
                for (key, value) in patch {
                    match base.get_mut(&key) {
                        Some(slot) => merge(slot, value),
                        None => {
                            base.insert(key, value);
                        }
                    }
                }
            }
            (base, patch) => *base = patch,
        }
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

    fn group_yaml(yaml: &str) -> StorageGroup {
        serde_norway::from_str(yaml).expect("inline group parses")
    }

    fn check(group: &StorageGroup) -> Result<ValidStorageGroup> {
        validate_storage_group(group, Some(&cluster()), &groups(), None)
    }

    #[test]
    fn fixture_cluster_is_valid() {
        let valid = validate_cluster(&cluster(), None).expect("valid");
        assert_eq!(
            valid.reserved_space,
            ReservedSpace::Ratio { basis_points: 1000 }
        );
    }

    #[test]
    fn group_name_defaults_to_metadata_name() {
        let valid = check(&group("group1")).expect("valid");
        assert_eq!(valid.group_name, "group1");
    }

    #[test]
    fn explicit_group_name_wins_over_metadata_name() {
        let valid = check(&group("photos-eu")).expect("valid");
        assert_eq!(valid.group_name, "photos");
    }

    #[test]
    fn metadata_name_that_is_no_group_name_asks_for_group_name() {
        let err = check(&group_yaml(
            r#"
            apiVersion: fdfs.dev/v1alpha1
            kind: StorageGroup
            metadata: {name: images-a, namespace: fdfs}
            spec: {clusterRef: main, volume: {size: 10Gi}}
            "#,
        ))
        .expect_err("invalid");
        assert!(
            matches!(
                err,
                Error::GroupNameInvalidCharacter {
                    field: "metadata.name",
                    character: '-',
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(err.to_string().contains("set spec.groupName"), "{err}");
        assert_eq!(err.reason(), "GroupNameInvalidCharacter");
    }

    #[test]
    fn group_name_longer_than_sixteen_bytes_is_refused() {
        let err = check(&group_yaml(
            r#"
            metadata: {name: long, namespace: fdfs}
            spec: {clusterRef: main, groupName: abcdefghijklmnopq, volume: {size: 10Gi}}
            "#,
        ))
        .expect_err("invalid");
        assert!(
            matches!(
                err,
                Error::GroupNameTooLong {
                    len: 17,
                    max: 16,
                    ..
                }
            ),
            "{err:?}"
        );
        assert_eq!(err.reason(), "GroupNameTooLong");
    }

    #[test]
    fn group_name_length_counts_bytes_not_characters() {
        // Eight characters, sixteen bytes: fits, but still no ASCII.
        assert!(matches!(
            check_group_name("spec.groupName", "éééééééé"),
            Err(Error::GroupNameInvalidCharacter {
                character: 'é', ..
            })
        ));
        assert!(matches!(
            check_group_name("spec.groupName", "ééééééééé"),
            Err(Error::GroupNameTooLong { len: 18, .. })
        ));
    }

    #[test]
    fn group_name_characters_follow_fastdfs() {
        for good in ["g", "group1", "G2", "abcdefghijklmnop"] {
            assert!(check_group_name("spec.groupName", good).is_ok(), "{good}");
        }
        for (bad, character) in [
            ("group_1", '_'),
            ("group-1", '-'),
            ("group.1", '.'),
            ("a b", ' '),
        ] {
            assert!(
                matches!(
                    check_group_name("spec.groupName", bad),
                    Err(Error::GroupNameInvalidCharacter { character: c, .. }) if c == character
                ),
                "{bad}"
            );
        }
        assert!(matches!(
            check_group_name("spec.groupName", ""),
            Err(Error::GroupNameEmpty { .. })
        ));
    }

    #[test]
    fn replicas_must_fit_fastdfs_limits() {
        for (replicas, ok) in [(-1, false), (0, true), (1, true), (32, true), (33, false)] {
            let mut g = group("group1");
            g.spec.replicas = replicas;
            let result = check(&g);
            assert_eq!(result.is_ok(), ok, "{replicas}: {result:?}");
            if let Err(err) = result {
                assert!(
                    matches!(
                        err,
                        Error::InvalidReplicas {
                            field: "spec.replicas",
                            min: 0,
                            max: 32,
                            ..
                        }
                    ),
                    "{err:?}"
                );
                assert_eq!(err.reason(), "InvalidReplicas");
            }
        }
    }

    #[test]
    fn store_paths_must_be_between_1_and_256() {
        for (store_paths, ok) in [(0, false), (1, true), (256, true), (257, false)] {
            let mut g = group("group1");
            g.spec.volume.store_paths = store_paths;
            let result = check(&g);
            assert_eq!(result.is_ok(), ok, "{store_paths}: {result:?}");
        }
    }

    #[test]
    fn subdir_count_must_be_between_1_and_256() {
        for (count, ok) in [(0, false), (1, true), (256, true), (257, false)] {
            let mut g = group("group1");
            g.spec.volume.subdir_count_per_path = count;
            let result = check(&g);
            assert_eq!(result.is_ok(), ok, "{count}: {result:?}");
        }
        assert_eq!(group("group1").spec.volume.subdir_count_per_path, 256);
    }

    #[test]
    fn missing_cluster_is_reported() {
        let g = group("group1");
        let err = validate_storage_group(&g, None, &groups(), None).expect_err("no cluster");
        assert!(
            matches!(&err, Error::ClusterNotFound { cluster, namespace } if cluster == "main" && namespace == "fdfs"),
            "{err:?}"
        );
        assert_eq!(err.reason(), "ClusterNotFound");
    }

    #[test]
    fn external_storage_ids_are_read_checked_and_kept_apart_from_the_operators() {
        let with_ids = cluster_with(
            "spec: {settings: {useStorageId: true}, \
             trackers: {externalStorageIds: {name: old-ids}}}",
        );
        let text =
            "# the old cluster\n100001 group1 10.0.0.5\n100002 group1 10.0.0.6:23001 rw=read\n";
        let ours = [("photos", "photos-sg")];
        let entries = external_storage_ids(&with_ids, Some(Some(text)), &ours).expect("valid");
        assert_eq!(
            entries.iter().map(|e| e.to_line()).collect::<Vec<_>>(),
            [
                "100001 group1 10.0.0.5",
                "100002 group1 10.0.0.6:23001 rw=read"
            ]
        );
        assert!(
            external_storage_ids(&cluster(), None, &ours)
                .expect("unset")
                .is_empty(),
            "unset: nothing read, nothing refused"
        );

        let refused = |cluster: &FdfsCluster, text: Option<Option<&str>>| match external_storage_ids(
            cluster, text, &ours,
        ) {
            Err(e @ Error::InvalidExternalStorageIds { .. }) => e.to_string(),
            other => panic!("expected a refusal, got {other:?}"),
        };
        assert!(refused(&with_ids, None).contains("no such ConfigMap"));
        assert!(refused(&with_ids, Some(None)).contains("no such key"));
        assert!(refused(&with_ids, Some(Some("100001 group1\n"))).contains("line 1"));
        assert!(
            refused(&with_ids, Some(Some("1 g 10.0.0.1\n1 g 10.0.0.2\n"))).contains("duplicate")
        );
        let ip_identities = cluster_with(
            "spec: {settings: {useStorageId: false}, trackers: {externalStorageIds: {name: old-ids}}}",
        );
        assert!(refused(&ip_identities, Some(Some(text))).contains("useStorageId"));
        let in_our_block = format!("{} group1 10.0.0.7\n", naming::storage_id("photos", 3));
        assert!(refused(&with_ids, Some(Some(&in_our_block))).contains("photos-sg"));
    }

    #[test]
    fn cluster_with_another_name_or_namespace_is_not_the_reference() {
        let g = group("group1");
        let mut renamed = cluster();
        renamed.metadata.name = Some("other".into());
        let mut moved = cluster();
        moved.metadata.namespace = Some("elsewhere".into());
        for wrong in [renamed, moved] {
            let err = validate_storage_group(&g, Some(&wrong), &groups(), None)
                .expect_err("wrong cluster");
            assert_eq!(err.reason(), "ClusterNotFound");
        }
    }

    #[test]
    fn older_group_keeps_a_contested_name() {
        // `group1` (older) and `group1-copy` (newer) both claim "group1" in cluster `main`.
        assert!(check(&group("group1")).is_ok());
        let err = check(&group("group1-copy")).expect_err("newer claim is refused");
        assert!(
            matches!(&err, Error::GroupNameConflict { group_name, claimed_by } if group_name == "group1" && claimed_by == "group1"),
            "{err:?}"
        );
        assert_eq!(err.reason(), "GroupNameConflict");
    }

    #[test]
    fn same_creation_time_falls_back_to_resource_name() {
        let at = "2025-03-01T00:00:00Z";
        let make = |name: &str| {
            group_yaml(&format!(
                "metadata: {{name: {name}, namespace: fdfs, creationTimestamp: '{at}'}}\n\
                 spec: {{clusterRef: main, groupName: shared, volume: {{size: 1Gi}}}}"
            ))
        };
        let siblings = [make("b"), make("a")];
        assert!(validate_storage_group(&siblings[1], Some(&cluster()), &siblings, None).is_ok());
        let err = validate_storage_group(&siblings[0], Some(&cluster()), &siblings, None)
            .expect_err("later name loses");
        assert!(matches!(&err, Error::GroupNameConflict { claimed_by, .. } if claimed_by == "a"));
    }

    #[test]
    fn unsaved_group_loses_to_a_stored_one() {
        let fresh = group_yaml(
            "metadata: {name: new, namespace: fdfs}\n\
             spec: {clusterRef: main, groupName: photos, volume: {size: 1Gi}}",
        );
        let err = check(&fresh).expect_err("stored group keeps the name");
        assert!(
            matches!(&err, Error::GroupNameConflict { claimed_by, .. } if claimed_by == "photos-eu")
        );
    }

    #[test]
    fn same_name_in_another_cluster_or_namespace_is_no_conflict() {
        // `group1-other` claims "group1" earlier than `group1` does, but in cluster `other`.
        assert!(check(&group("group1")).is_ok());

        // With `group1` moved to another namespace, `group1-copy` is the only claim left.
        let siblings: Vec<StorageGroup> = groups()
            .into_iter()
            .map(|mut g| {
                if g.name_any() == "group1" {
                    g.metadata.namespace = Some("elsewhere".into());
                }
                g
            })
            .collect();
        let valid =
            validate_storage_group(&group("group1-copy"), Some(&cluster()), &siblings, None)
                .expect("no conflict");
        assert_eq!(valid.group_name, "group1");
    }

    #[test]
    fn reserved_space_format_is_checked() {
        for bad in ["10", "110%", "lots", "1.5G"] {
            let c = cluster_with(&format!(
                "spec: {{settings: {{reservedStorageSpace: '{bad}'}}}}"
            ));
            let err = validate_cluster(&c, None).expect_err(bad);
            assert!(
                matches!(&err, Error::InvalidReservedSpace { value } if value == bad),
                "{err:?}"
            );
            assert_eq!(err.reason(), "InvalidReservedSpace");
        }
        let c = cluster_with("spec: {settings: {reservedStorageSpace: 2G}}");
        assert_eq!(
            validate_cluster(&c, None).expect("valid").reserved_space,
            ReservedSpace::Absolute { bytes: 2 << 30 }
        );
    }

    #[test]
    fn group_of_an_invalid_cluster_says_so() {
        let c = cluster_with("spec: {settings: {reservedStorageSpace: lots}}");
        let err = validate_storage_group(&group("group1"), Some(&c), &groups(), None)
            .expect_err("cluster invalid");
        assert_eq!(err.reason(), "ClusterInvalid");
        let source = std::error::Error::source(&err).expect("has a cause");
        assert!(
            source.to_string().contains("reservedStorageSpace"),
            "{source}"
        );
    }

    #[test]
    fn specified_group_lookup_needs_a_valid_store_group() {
        let missing = cluster_with("spec: {settings: {storeLookup: SpecifiedGroup}}");
        assert_eq!(
            validate_cluster(&missing, None)
                .expect_err("missing")
                .reason(),
            "MissingStoreGroup"
        );
        let bad = cluster_with("spec: {settings: {storeLookup: SpecifiedGroup, storeGroup: g_1}}");
        assert!(matches!(
            validate_cluster(&bad, None),
            Err(Error::GroupNameInvalidCharacter {
                field: "spec.settings.storeGroup",
                ..
            })
        ));
        let good =
            cluster_with("spec: {settings: {storeLookup: SpecifiedGroup, storeGroup: group1}}");
        assert!(validate_cluster(&good, None).is_ok());
    }

    #[test]
    fn cluster_numbers_are_checked() {
        let cases = [
            ("spec: {trackers: {replicas: 0}}", "InvalidReplicas"),
            ("spec: {trackers: {replicas: 17}}", "InvalidReplicas"),
            ("spec: {trackers: {port: 0}}", "InvalidPort"),
            ("spec: {trackers: {httpPort: 70000}}", "InvalidPort"),
            (
                "spec: {trackers: {port: 8080, httpPort: 8080}}",
                "PortConflict",
            ),
            (
                "spec: {settings: {compat: {ipFieldWidth: 16}}}",
                "InvalidIpFieldWidth",
            ),
            (
                "spec: {settings: {trunk: {enabled: true, slotMinSize: 256, slotMaxSize: 256}}}",
                "InvalidTrunkSizes",
            ),
            (
                "spec: {settings: {trunk: {enabled: true, slotMaxSize: 4194304, trunkFileSize: 4194304}}}",
                "InvalidTrunkSizes",
            ),
            (
                "spec: {settings: {trunk: {enabled: true, trunkFileSize: 1048576}}}",
                "InvalidTrunkSizes",
            ),
            ("spec: {image: ''}", "MissingImage"),
        ];
        for (patch, reason) in cases {
            let err = validate_cluster(&cluster_with(patch), None).expect_err(patch);
            assert_eq!(err.reason(), reason, "{patch}: {err}");
        }
        let wide = cluster_with("spec: {settings: {compat: {ipFieldWidth: 45}}}");
        assert!(validate_cluster(&wide, None).is_ok());
        let trunk = cluster_with("spec: {settings: {trunk: {enabled: true}}}");
        assert!(validate_cluster(&trunk, None).is_ok());
    }

    #[test]
    fn minimal_cluster_takes_the_documented_defaults() {
        let c: FdfsCluster = serde_norway::from_str(
            "metadata: {name: main, namespace: fdfs}\nspec: {image: fdfs-node:dev}",
        )
        .expect("parses");
        assert_eq!(c.spec.trackers.replicas, 2);
        assert_eq!(c.spec.trackers.port, 22122);
        assert_eq!(c.spec.trackers.http_port, 8080);
        assert_eq!(c.spec.settings.reserved_storage_space, "10%");
        assert!(c.spec.settings.use_storage_id);
        assert_eq!(c.spec.settings.compat.ip_field_width, 15);
        assert!(validate_cluster(&c, None).is_ok());
    }

    #[test]
    fn image_defaults_to_the_operators() {
        let c: FdfsCluster =
            serde_norway::from_str("metadata: {name: main, namespace: fdfs}\nspec: {}")
                .expect("parses");
        assert_eq!(
            validate_cluster(&c, None).expect_err("no image").reason(),
            "MissingImage"
        );
        let valid = validate_cluster(&c, Some("fdfs-node:1.0")).expect("default applies");
        assert_eq!(valid.image, "fdfs-node:1.0");
        let own = validate_cluster(&cluster(), Some("fdfs-node:1.0")).expect("valid");
        assert_eq!(own.image, "registry.example/fdfs-node:0.1.0");
        // An explicitly empty image is a mistake, not a request for the default.
        let empty = cluster_with("spec: {image: ' '}");
        assert_eq!(
            validate_cluster(&empty, Some("fdfs-node:1.0"))
                .expect_err("empty")
                .reason(),
            "MissingImage"
        );
    }

    #[test]
    fn cluster_name_must_fit_the_derived_service_names() {
        for (name, ok) in [
            ("main", true),
            (&"a".repeat(46) as &str, true),
            (&"a".repeat(47), false),
            ("Main", false),
            ("9main", false),
        ] {
            let mut c = cluster();
            c.metadata.name = Some(name.to_owned());
            let result = validate_cluster(&c, None);
            assert_eq!(result.is_ok(), ok, "{name}: {result:?}");
            if let Err(err) = result {
                assert_eq!(err.reason(), "InvalidResourceName");
            }
        }
    }

    #[test]
    fn storage_group_name_must_fit_its_statefulset() {
        let make = |name: &str| {
            group_yaml(&format!(
                "metadata: {{name: '{name}', namespace: fdfs}}\n\
                 spec: {{clusterRef: main, groupName: g{n}, volume: {{size: 1Gi}}}}",
                n = name.len()
            ))
        };
        assert!(check(&make(&"a".repeat(52))).is_ok());
        for bad in ["a".repeat(53), "photos.eu".into(), "main-tracker".into()] {
            let err = check(&make(&bad)).expect_err(&bad);
            assert_eq!(err.reason(), "InvalidResourceName", "{bad}: {err}");
        }
    }

    /// Two group names whose storage ids fall in the same block.
    fn colliding_group_names() -> (String, String) {
        let mut seen = std::collections::HashMap::new();
        for n in 0.. {
            let name = format!("g{n}");
            if let Some(first) = seen.insert(naming::id_block(&name), name.clone()) {
                return (first, name);
            }
        }
        unreachable!()
    }

    #[test]
    fn colliding_storage_ids_are_refused_for_the_newer_group() {
        let (a, b) = colliding_group_names();
        let make = |sg: &str, group: &str, at: &str| {
            group_yaml(&format!(
                "metadata: {{name: {sg}, namespace: fdfs, creationTimestamp: '{at}'}}\n\
                 spec: {{clusterRef: main, groupName: {group}, volume: {{size: 1Gi}}}}"
            ))
        };
        let older = make("older", &a, "2025-01-01T00:00:00Z");
        let newer = make("newer", &b, "2025-02-01T00:00:00Z");
        let siblings = [older.clone(), newer.clone()];
        assert!(validate_storage_group(&older, Some(&cluster()), &siblings, None).is_ok());
        let err = validate_storage_group(&newer, Some(&cluster()), &siblings, None)
            .expect_err("ids collide");
        assert!(
            matches!(&err, Error::StorageIdConflict { claimed_by, other_group, .. }
                if claimed_by == "older" && *other_group == a),
            "{err:?}"
        );
        assert_eq!(err.reason(), "StorageIdConflict");
        assert!(!err.to_string().is_empty());
    }

    #[test]
    fn reasons_are_camel_case() {
        let errors = [
            Error::MissingImage,
            Error::MissingStoreGroup,
            Error::GroupNameEmpty {
                field: "metadata.name",
            },
            Error::InvalidStorePaths { store_paths: 0 },
            Error::PortConflict { port: 1 },
        ];
        for err in errors {
            let reason = err.reason();
            assert!(
                reason.starts_with(|c: char| c.is_ascii_uppercase()),
                "{reason}"
            );
            assert!(
                reason.chars().all(|c| c.is_ascii_alphanumeric()),
                "{reason}"
            );
        }
    }
}
