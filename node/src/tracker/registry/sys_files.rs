//! The tracker's system files as FastDFS V6 writes them, for a FastDFS tracker that starts
//! beside this one and bootstraps from it (GET_SYS_FILES_START 61, GET_ONE_SYS_FILE 63,
//! GET_SYS_FILES_END 62): `storage_groups_new.dat`, `storage_servers_new.dat`,
//! `storage_sync_timestamp.dat` and `storage_changelog.dat`, in that order (the file index
//! of 63). This tracker keeps its own state file instead; these are rendered from the
//! registry when asked for, and read back (`parse_sys_files`) when this tracker starts
//! empty beside running ones and bootstraps from them.

use std::collections::BTreeMap;
use std::fmt::Write;

use super::{Member, Registry};
use crate::proto::StorageStatus;
use crate::proto::monitor::counter as c;
use crate::tracker::persist::{FORMAT, SavedGroup, SavedMember, SavedState};
use crate::tracker::storage_ids::RW_BOTH;

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

/// Why fetched system files could not be read.
#[derive(Debug, thiserror::Error)]
#[error("{file}, [{section}]: {reason}")]
pub struct SysFilesError {
    file: &'static str,
    section: String,
    reason: String,
}

/// The `[section]`s of one of FastDFS's ini-style system files, each with its `key=value`
/// lines (tab-indented; `#` comments).
fn sections(text: &str) -> Vec<(String, BTreeMap<String, String>)> {
    let mut out: Vec<(String, BTreeMap<String, String>)> = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            out.push((name.to_owned(), BTreeMap::new()));
        } else if let (Some((key, value)), Some((_, keys))) = (line.split_once('='), out.last_mut())
        {
            keys.insert(key.trim().to_owned(), value.trim().to_owned());
        }
    }
    out
}

/// One section's values, with errors that name the file and section.
struct Section<'a> {
    file: &'static str,
    name: &'a str,
    keys: &'a BTreeMap<String, String>,
}

impl Section<'_> {
    fn error(&self, reason: String) -> SysFilesError {
        SysFilesError {
            file: self.file,
            section: self.name.to_owned(),
            reason,
        }
    }

    fn text(&self, key: &str) -> Result<String, SysFilesError> {
        self.keys
            .get(key)
            .cloned()
            .ok_or_else(|| self.error(format!("no {key}")))
    }

    /// A number; absent counts as 0, as FastDFS's reader takes it.
    fn number(&self, key: &str) -> Result<u64, SysFilesError> {
        match self.keys.get(key) {
            None => Ok(0),
            Some(v) => v
                .parse()
                .map_err(|_| self.error(format!("{key}={v} is not a number"))),
        }
    }

    /// A store path or subdirectory count: at most 256, as a JOIN must carry (0 when
    /// absent, as for any number here).
    fn count(&self, key: &str) -> Result<u64, SysFilesError> {
        let n = self.number(key)?;
        if n <= 256 {
            Ok(n)
        } else {
            Err(self.error(format!("{key}={n} is more than 256")))
        }
    }
}

/// Reads the groups (`storage_groups_new.dat`) and storages (`storage_servers_new.dat`) of
/// another tracker into the form this tracker saves its state in. Storages are keyed by
/// their `id` with storage ids, else by their address, as FastDFS writes them.
pub fn parse_sys_files(
    groups: &[u8],
    storages: &[u8],
    use_storage_id: bool,
) -> Result<SavedState, SysFilesError> {
    const GROUPS: &str = "storage_groups_new.dat";
    const STORAGES: &str = "storage_servers_new.dat";
    let mut state = SavedState {
        format: FORMAT,
        groups: Vec::new(),
    };
    let groups_text = String::from_utf8_lossy(groups);
    for (name, keys) in sections(&groups_text) {
        if !name.starts_with("Group") {
            continue;
        }
        let s = Section {
            file: GROUPS,
            name: &name,
            keys: &keys,
        };
        let group = s.text("group_name")?;
        if !crate::fileid::valid_group(&group) {
            return Err(s.error(format!("bad group name {group:?}")));
        }
        let trunk_server = s.text("trunk_server").unwrap_or_default();
        state.groups.push(SavedGroup {
            name: group,
            store_path_count: s.count("store_path_count")?,
            subdir_count_per_path: s.count("subdir_count_per_path")?,
            members: Vec::new(),
            trunk_server: (!trunk_server.is_empty()).then_some(trunk_server),
            trunk_file_id: u32::try_from(s.number("current_trunk_file_id")?)
                .map_err(|_| s.error("current_trunk_file_id out of range".into()))?,
        });
    }
    let storages_text = String::from_utf8_lossy(storages);
    for (name, keys) in sections(&storages_text) {
        if !name.starts_with("Storage") {
            continue;
        }
        let s = Section {
            file: STORAGES,
            name: &name,
            keys: &keys,
        };
        let group = s.text("group_name")?;
        let ip = s.text("ip_addr")?;
        let id = if use_storage_id {
            s.text("id")?
        } else {
            ip.clone()
        };
        let status = u8::try_from(s.number("status")?)
            .ok()
            .filter(|b| StorageStatus::from_byte(*b).is_some())
            .ok_or_else(|| s.error("unknown status".into()))?;
        let member = SavedMember {
            id,
            ip,
            port: s.number("storage_port")?,
            status,
            version: s.text("version").unwrap_or_default(),
            join_time: s.number("join_time")?,
            upload_priority: s.number("upload_priority")?,
            store_path_count: s.count("store_path_count")?,
            subdir_count_per_path: s.count("subdir_count_per_path")?,
            // Disk figures come with the storage's next report.
            paths: Vec::new(),
            src_id: s.text("sync_src_server").unwrap_or_default(),
            sync_until: s.number("sync_until_timestamp")?,
            last_synced_timestamp: s.number("last_synced_timestamp")?,
            rw_mode: RW_BOTH,
            changelog_offset: s.number("changelog_offset")?,
            fenced: false,
            last_source_update: s.number("last_source_update").unwrap_or(0),
            backlog: None,
        };
        let g = state
            .groups
            .iter_mut()
            .find(|g| g.name == group)
            .ok_or_else(|| s.error(format!("group {group:?} is not in {GROUPS}")))?;
        g.members.push(member);
    }
    Ok(state)
}
