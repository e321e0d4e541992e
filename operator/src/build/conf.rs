//! FastDFS configuration files, rendered as text: `tracker.conf`, `storage.conf` and
//! `storage_ids.conf`.
//!
//! The files use FastDFS's own keys, so an operator of FastDFS can read them, and `fdfs-node`
//! loads them with the same parser it uses for existing FastDFS installations. Keys that the
//! node does not act on yet (`use_storage_id`, `http.server_port`, ...) are ones FastDFS defines;
//! the node accepts and logs them, so the same files keep working as it learns them.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use fdfs_node::tracker::storage_ids::StorageIdEntry as ExternalIdEntry;

use crate::crd::{
    DownloadServer, Expose, FdfsCluster, FetchAllFormat, IdType, OutsideAddress, StorageGroupSpec,
    StoreLookup, StorePath, StoreServer, ThumbnailFit,
};
use kube::ResourceExt;

use crate::naming;
use crate::validate::ValidCluster;

use super::{
    BuildOptions, CONFIG_DIR, DATA_DIR, HEART_BEAT_INTERVAL, STAT_REPORT_INTERVAL,
    STORAGE_HTTP_PORT, STORAGE_IDS_FILE, STORAGE_PORT,
};

/// Seconds without a heartbeat before a tracker marks a storage OFFLINE: three missed beats.
pub const CHECK_ACTIVE_INTERVAL: u32 = 3 * HEART_BEAT_INTERVAL;

fn header(kind: &str, namespace: &str, name: &str) -> String {
    format!(
        "# Rendered by {} from {kind} {namespace}/{name}. Edits are overwritten.\n",
        naming::MANAGER
    )
}

/// `tracker.conf` of a cluster's trackers.
pub fn tracker_conf(cluster: &FdfsCluster, valid: &ValidCluster) -> String {
    let spec = &cluster.spec;
    let settings = &spec.settings;
    let mut out = header(
        "FdfsCluster",
        cluster.metadata.namespace.as_deref().unwrap_or_default(),
        cluster.metadata.name.as_deref().unwrap_or_default(),
    );
    let mut line = |key: &str, value: &dyn std::fmt::Display| {
        let _ = writeln!(out, "{key} = {value}");
    };
    line("port", &spec.trackers.port);
    line("base_path", &DATA_DIR);
    line(
        "store_lookup",
        &match settings.store_lookup {
            StoreLookup::RoundRobin => 0,
            StoreLookup::SpecifiedGroup => 1,
            StoreLookup::LoadBalance => 2,
        },
    );
    line(
        "store_group",
        &settings.store_group.as_deref().unwrap_or_default(),
    );
    line(
        "store_server",
        &match settings.store_server {
            StoreServer::RoundRobin => 0,
            StoreServer::FirstById => 1,
            StoreServer::FirstByPriority => 2,
        },
    );
    line(
        "store_path",
        &match settings.store_path {
            StorePath::RoundRobin => 0,
            StorePath::LoadBalance => 2,
        },
    );
    line(
        "download_server",
        &match settings.download_server {
            DownloadServer::RoundRobin => 0,
            DownloadServer::SourceFirst => 1,
        },
    );
    line("reserved_storage_space", &valid.reserved_space);
    line("check_active_interval", &CHECK_ACTIVE_INTERVAL);
    // FastDFS gives 15-byte IP fields only for `auto`; any other value means 45.
    line(
        "response_ip_addr_size",
        &if settings.compat.ip_field_width == 45 {
            "46"
        } else {
            "auto"
        },
    );
    if settings.compat.fetch_all_format == FetchAllFormat::Legacy {
        line("fetch_all_format", &"legacy");
    }
    if let Some(t) = &settings.trunk {
        line("use_trunk_file", &t.enabled);
        line("slot_min_size", &t.slot_min_size);
        line("slot_max_size", &t.slot_max_size);
        line("trunk_file_size", &t.trunk_file_size);
        if let Some(a) = &t.create_ahead {
            line("trunk_create_file_advance", &true);
            line("trunk_create_file_time_base", &a.at);
            line("trunk_create_file_interval", &a.interval_seconds);
            line("trunk_create_file_space_threshold", &a.space_threshold);
        }
        if t.check_occupying {
            line("trunk_init_check_occupying", &true);
        }
        if let Some(c) = &t.binlog_compaction {
            line("trunk_compress_binlog_time_base", &c.at);
            line("trunk_compress_binlog_interval", &c.interval_seconds);
            line(
                "trunk_compress_binlog_min_interval",
                &c.min_interval_seconds,
            );
        }
    }
    identity_lines(&mut line, cluster);
    line("trust_storage_server_id", &true);
    line("http.server_port", &spec.trackers.http_port);
    out
}

/// The storage-id settings trackers and storages share.
fn identity_lines(line: &mut impl FnMut(&str, &dyn std::fmt::Display), cluster: &FdfsCluster) {
    let settings = &cluster.spec.settings;
    line("use_storage_id", &settings.use_storage_id);
    line(
        "storage_ids_filename",
        &format!("{CONFIG_DIR}/{STORAGE_IDS_FILE}"),
    );
    line(
        "id_type_in_filename",
        &match settings.id_type_in_filename {
            IdType::Id => "id",
            IdType::Ip => "ip",
        },
    );
}

/// Where store path `index` lives on a storage's volume: `M00`, `M01`, ... as in file IDs.
pub fn store_path(index: i32) -> String {
    format!("{DATA_DIR}/M{index:02X}")
}

/// `storage.conf` of one group's storages.
pub fn storage_conf(
    cluster: &FdfsCluster,
    group_name: &str,
    storage_group: &str,
    spec: &StorageGroupSpec,
    opts: &BuildOptions,
) -> String {
    let volume = &spec.volume;
    let namespace = cluster.metadata.namespace.as_deref().unwrap_or_default();
    let mut out = header("StorageGroup", namespace, storage_group);
    let mut line = |key: &str, value: &dyn std::fmt::Display| {
        let _ = writeln!(out, "{key} = {value}");
    };
    line("group_name", &group_name);
    line("port", &STORAGE_PORT);
    line("base_path", &DATA_DIR);
    line("store_path_count", &volume.store_paths);
    for index in 0..volume.store_paths {
        line(&format!("store_path{index}"), &store_path(index));
    }
    line("subdir_count_per_path", &volume.subdir_count_per_path);
    // One name that resolves to every tracker Pod (the node reports to each address), then
    // the trackers the operator does not run.
    for tracker in tracker_endpoints(cluster, opts) {
        line("tracker_server", &tracker);
    }
    line("heart_beat_interval", &HEART_BEAT_INTERVAL);
    line("stat_report_interval", &STAT_REPORT_INTERVAL);
    identity_lines(&mut line, cluster);
    line("http.server_port", &STORAGE_HTTP_PORT);
    if cluster.spec.settings.http_token_secret_ref.is_some() {
        // The key itself arrives in the environment, from the Secret (see the pod builder).
        line("http.anti_steal.check_token", &true);
    }
    for t in &spec.thumbnails {
        let fit = match t.fit {
            ThumbnailFit::Contain => "contain",
            ThumbnailFit::Cover => "cover",
        };
        line(
            "http.thumbnail_preset",
            &format_args!("{} {}x{} {fit}", t.name, t.width, t.height),
        );
    }
    out
}

/// Every tracker a cluster's storages report to: the tracker Pods' headless Service name
/// (which resolves to each Pod), unless there are none, then `spec.trackers.external`.
pub fn tracker_endpoints(cluster: &FdfsCluster, opts: &BuildOptions) -> Vec<String> {
    let trackers = &cluster.spec.trackers;
    let own = (trackers.replicas > 0).then(|| {
        format!(
            "{}:{}",
            naming::service_host(
                &naming::tracker_headless(&cluster.name_any()),
                cluster.metadata.namespace.as_deref().unwrap_or_default(),
                &opts.cluster_domain
            ),
            trackers.port
        )
    });
    own.into_iter()
        .chain(trackers.external.iter().cloned())
        .collect()
}

/// One storage in `storage_ids.conf`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StorageIdEntry {
    /// FastDFS server id.
    pub id: u32,
    /// Name of the storage's Pod.
    pub pod: String,
    /// FastDFS group name.
    pub group_name: String,
    /// Stable DNS name of the storage's Pod.
    pub host: String,
    /// The storage's address for clients outside the cluster (`spec.expose`), when it has
    /// one: listed second, so the trackers give it to clients on that side.
    pub outside_host: Option<String>,
    /// The storage's FastDFS port, inside and outside.
    pub port: i32,
    /// The storage is leaving its group (scaled away): `rw=read`, so the trackers send it
    /// no more uploads while its files reach the members that stay.
    pub read_only: bool,
}

/// The storages of one group, as listed in `storage_ids.conf`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GroupIds {
    /// FastDFS group name.
    pub group_name: String,
    /// Name of the `StorageGroup`.
    pub storage_group: String,
    /// How many ordinals to list: the larger of the desired and the current replica count, so
    /// a storage keeps its entry until it is gone.
    pub replicas: i32,
    /// Ordinals from this one on are leaving (the group asks for fewer): read-only.
    pub writable: i32,
    /// How the group is published outside the cluster.
    pub expose: Expose,
    /// The outside addresses the group's status lists (`host:port`, by Pod).
    pub outside: Vec<OutsideAddress>,
}

/// Every storage of a cluster, in group name then ordinal order.
pub fn storage_id_entries(
    namespace: &str,
    groups: &[GroupIds],
    opts: &BuildOptions,
) -> Vec<StorageIdEntry> {
    let mut groups: Vec<&GroupIds> = groups.iter().collect();
    groups.sort_by(|a, b| a.group_name.cmp(&b.group_name));
    groups
        .into_iter()
        .flat_map(|g| {
            (0..g.replicas.max(0) as u32).map(move |ordinal| {
                let pod = naming::pod(&g.storage_group, ordinal);
                let outside_host = g
                    .outside
                    .iter()
                    .find(|o| o.pod == pod)
                    .and_then(|o| o.address.as_deref())
                    .and_then(|a| a.rsplit_once(':'))
                    .map(|(host, _)| host.to_owned());
                StorageIdEntry {
                    id: naming::storage_id(&g.group_name, ordinal),
                    pod: pod.clone(),
                    group_name: g.group_name.clone(),
                    host: naming::pod_host(
                        &g.storage_group,
                        ordinal,
                        namespace,
                        &opts.cluster_domain,
                    ),
                    outside_host,
                    port: super::storage_port(&g.expose, ordinal),
                    read_only: i64::from(ordinal) >= i64::from(g.writable.max(0)),
                }
            })
        })
        .collect()
}

/// `storage_ids.conf`: `<id> <group> <host>[,<outside host>]:<port>[ rw=read]`, one line per
/// storage.
///
/// Hosts are the Pods' DNS names under their group's headless Service (which publishes
/// not-ready addresses, so a storage resolves its own name before it is ready). A storage
/// finds its own id as FastDFS does, by the entry whose host resolves to its address; the
/// trackers trust the id a storage reports (`trust_storage_server_id`).
///
/// The storages of `spec.trackers.externalStorageIds` come first, as the old trackers list
/// them.
pub fn storage_ids_conf(
    cluster: &FdfsCluster,
    external: &[ExternalIdEntry],
    entries: &[StorageIdEntry],
) -> String {
    let mut out = header(
        "FdfsCluster",
        cluster.metadata.namespace.as_deref().unwrap_or_default(),
        cluster.metadata.name.as_deref().unwrap_or_default(),
    );
    if let Some(source) = &cluster.spec.trackers.external_storage_ids {
        let _ = writeln!(
            out,
            "# From ConfigMap {}, key {}: the storages the external trackers know.",
            source.name, source.key
        );
        for e in external {
            let _ = writeln!(out, "{}", e.to_line());
        }
        let _ = writeln!(out, "# The storages of this cluster's StorageGroups.");
    }
    for e in entries {
        let rw = if e.read_only { " rw=read" } else { "" };
        let outside = e
            .outside_host
            .as_deref()
            .map(|h| format!(",{h}"))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "{} {} {}{outside}:{}{rw}",
            e.id, e.group_name, e.host, e.port
        );
    }
    out
}

/// The lines the external trackers' `storage_ids.conf` needs for this cluster's storages,
/// with addresses those trackers resolve: the outside address when the group is exposed,
/// else the Pod's IP (`pod_ips`, by Pod name); a Pod without either is left out until it has
/// one.
pub fn lines_for_external_trackers(
    entries: &[StorageIdEntry],
    pod_ips: &BTreeMap<String, String>,
) -> Vec<String> {
    entries
        .iter()
        .filter_map(|e| {
            let host = e
                .outside_host
                .as_deref()
                .or_else(|| pod_ips.get(&e.pod).map(String::as_str))?;
            let rw = if e.read_only { " rw=read" } else { "" };
            Some(format!("{} {} {host}:{}{rw}", e.id, e.group_name, e.port))
        })
        .collect()
}

/// A short, stable hash of rendered configuration, for the Pod template annotation.
pub fn config_hash(parts: &[&str]) -> String {
    bytes_hash(parts.iter().map(|p| p.as_bytes()))
}

/// FNV-1a over `parts`, each followed by a zero byte.
pub fn bytes_hash<'a>(parts: impl IntoIterator<Item = &'a [u8]>) -> String {
    let mut hash = 0xcbf2_9ce4_8422_2325_u64;
    for part in parts {
        for &b in part.iter().chain(&[0]) {
            hash = (hash ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    format!("{hash:016x}")
}
