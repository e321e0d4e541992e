//! The tracker's system files as FastDFS V6 writes them, for a FastDFS tracker that starts
//! beside this one and bootstraps from it (GET_SYS_FILES_START 61, GET_ONE_SYS_FILE 63,
//! GET_SYS_FILES_END 62): `storage_groups_new.dat`, `storage_servers_new.dat`,
//! `storage_sync_timestamp.dat` and `storage_changelog.dat`, in that order (the file index
//! of 63). This tracker keeps its own state file instead; these are rendered from the
//! registry when asked for.

use std::fmt::Write;

use super::{Member, Registry};
use crate::proto::StorageStatus;
use crate::proto::monitor::counter as c;

/// How many system files a FastDFS tracker fetches.
pub const SYS_FILE_COUNT: usize = 4;

/// Members FastDFS writes: not the deleted ones, nor the records left at an old address.
fn written(m: &Member) -> bool {
    !matches!(m.status, StorageStatus::Deleted | StorageStatus::IpChanged)
}

impl Registry {
    /// The four system files, rendered now.
    pub fn sys_files(&self) -> [Vec<u8>; SYS_FILE_COUNT] {
        [
            self.groups_file().into_bytes(),
            self.storages_file().into_bytes(),
            self.sync_timestamps_file().into_bytes(),
            self.changelog_bytes().to_vec(),
        ]
    }

    fn groups_file(&self) -> String {
        let mut out = format!("[Global]\n\tgroup_count={}\n\n", self.groups.len());
        for (i, g) in self.groups.values().enumerate() {
            let port = g
                .members
                .values()
                .find(|m| written(m))
                .map_or(0, |m| m.port);
            let _ = write!(
                out,
                "# group: {name}\n[Group{n:03}]\n\tgroup_name={name}\n\tstorage_port={port}\n\
                 \tstore_path_count={paths}\n\tsubdir_count_per_path={subdirs}\n\
                 \tcurrent_trunk_file_id={trunk_id}\n\ttrunk_server={trunk}\n\
                 \tlast_trunk_server={trunk}\n\n",
                name = g.name,
                n = i + 1,
                paths = g.store_path_count,
                subdirs = g.subdir_count_per_path,
                trunk_id = g.trunk.file_id,
                trunk = g.trunk.server.as_deref().unwrap_or(""),
            );
        }
        out
    }

    fn storages_file(&self) -> String {
        let mut out = String::new();
        let mut count = 0;
        for g in self.groups.values() {
            for m in g.members.values().filter(|m| written(m)) {
                count += 1;
                let _ = write!(out, "# storage: {}:{}\n[Storage{count:03}]\n", m.ip, m.port);
                let n = &m.stats.counters;
                let mut items: Vec<(&str, String)> = Vec::with_capacity(48);
                if self.policy.use_storage_id {
                    items.push(("id", m.id.clone()));
                }
                items.extend([
                    ("group_name", g.name.clone()),
                    ("ip_addr", m.ip.clone()),
                    ("status", (m.status as u8).to_string()),
                    ("version", m.version.clone()),
                    ("join_time", m.join_time.to_string()),
                    ("storage_port", m.port.to_string()),
                    ("sync_src_server", m.src_id.clone()),
                    ("sync_until_timestamp", m.sync_until.to_string()),
                ]);
                let numbers: [(&str, u64); 38] = [
                    ("total_mb", m.total_mb()),
                    ("free_mb", m.free_mb()),
                    ("changelog_offset", m.changelog_offset),
                    ("store_path_count", m.store_path_count),
                    ("subdir_count_per_path", m.subdir_count_per_path),
                    ("upload_priority", m.upload_priority),
                    ("total_upload_count", n[c::TOTAL_UPLOAD]),
                    ("success_upload_count", n[c::SUCCESS_UPLOAD]),
                    ("total_append_count", n[c::TOTAL_APPEND]),
                    ("success_append_count", n[c::SUCCESS_APPEND]),
                    ("total_set_meta_count", n[c::TOTAL_SET_META]),
                    ("success_set_meta_count", n[c::SUCCESS_SET_META]),
                    ("total_delete_count", n[c::TOTAL_DELETE]),
                    ("success_delete_count", n[c::SUCCESS_DELETE]),
                    ("total_download_count", n[c::TOTAL_DOWNLOAD]),
                    ("success_download_count", n[c::SUCCESS_DOWNLOAD]),
                    ("total_get_meta_count", n[c::TOTAL_GET_META]),
                    ("success_get_meta_count", n[c::SUCCESS_GET_META]),
                    ("total_create_link_count", n[c::TOTAL_CREATE_LINK]),
                    ("success_create_link_count", n[c::SUCCESS_CREATE_LINK]),
                    ("total_delete_link_count", n[c::TOTAL_DELETE_LINK]),
                    ("success_delete_link_count", n[c::SUCCESS_DELETE_LINK]),
                    ("total_upload_bytes", n[c::TOTAL_UPLOAD_BYTES]),
                    ("success_upload_bytes", n[c::SUCCESS_UPLOAD_BYTES]),
                    ("total_append_bytes", n[c::TOTAL_APPEND_BYTES]),
                    ("success_append_bytes", n[c::SUCCESS_APPEND_BYTES]),
                    ("total_download_bytes", n[c::TOTAL_DOWNLOAD_BYTES]),
                    ("success_download_bytes", n[c::SUCCESS_DOWNLOAD_BYTES]),
                    ("total_sync_in_bytes", n[c::TOTAL_SYNC_IN_BYTES]),
                    ("success_sync_in_bytes", n[c::SUCCESS_SYNC_IN_BYTES]),
                    ("total_sync_out_bytes", n[c::TOTAL_SYNC_OUT_BYTES]),
                    ("success_sync_out_bytes", n[c::SUCCESS_SYNC_OUT_BYTES]),
                    ("total_file_open_count", n[c::TOTAL_FILE_OPEN]),
                    ("success_file_open_count", n[c::SUCCESS_FILE_OPEN]),
                    ("total_file_read_count", n[c::TOTAL_FILE_READ]),
                    ("success_file_read_count", n[c::SUCCESS_FILE_READ]),
                    ("total_file_write_count", n[c::TOTAL_FILE_WRITE]),
                    ("success_file_write_count", n[c::SUCCESS_FILE_WRITE]),
                ];
                items.extend(numbers.iter().map(|(k, v)| (*k, v.to_string())));
                items.extend([
                    ("last_source_update", m.stats.last_source_update.to_string()),
                    ("last_sync_update", m.stats.last_sync_update.to_string()),
                    ("last_synced_timestamp", m.last_synced_timestamp.to_string()),
                    ("last_heart_beat_time", m.last_heartbeat.to_string()),
                ]);
                for (key, value) in items {
                    let _ = writeln!(out, "\t{key}={value}");
                }
                out.push('\n');
            }
        }
        let _ = write!(out, "\n[Global]\n\tstorage_count={count}\n");
        out
    }

    /// Per group, a line per member: the group, its id, then for each member in the same
    /// order how far that member synced (0 against itself).
    fn sync_timestamps_file(&self) -> String {
        let mut out = String::new();
        for g in self.groups.values() {
            let members: Vec<&Member> = g.members.values().filter(|m| written(m)).collect();
            for src in &members {
                let _ = write!(out, "{},{}", g.name, src.id);
                for dest in &members {
                    let ts = if dest.id == src.id {
                        0
                    } else {
                        dest.last_synced_timestamp
                    };
                    let _ = write!(out, ",{ts}");
                }
                out.push('\n');
            }
        }
        out
    }
}
