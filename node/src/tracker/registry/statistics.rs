//! Statistics: the group and storage records of the monitor commands (90, 91, 92).

use super::*;

impl Registry {
    /// 90/91 records, sorted by group name.
    pub fn group_stats(&self) -> Vec<GroupStat> {
        self.groups.values().map(|g| self.group_stat(g)).collect()
    }

    pub fn group_stat(&self, g: &Group) -> GroupStat {
        let (total, free) = g.space();
        let ports: std::collections::BTreeSet<u64> = g.members.values().map(|m| m.port).collect();
        GroupStat {
            group: g.name.clone(),
            total_mb: total,
            free_mb: free,
            reserved_mb: self.policy.reserved_storage_space.reserved_mb(total),
            trunk_free_mb: g.trunk.free_mb,
            storage_count: g.members.len() as u64,
            storage_port: if ports.len() == 1 {
                ports.first().copied().unwrap_or(0) as i64
            } else {
                -1
            },
            readable_count: g.readable().len() as u64,
            writable_count: g.writable().len() as u64,
            current_write_server: self.placement.server_cursor(&g.name) as u64,
            store_path_count: g.store_path_count,
            subdir_count_per_path: g.subdir_count_per_path,
            current_trunk_file_id: if self.policy.trunk.use_trunk_file {
                i64::from(g.trunk.file_id)
            } else {
                -1
            },
        }
    }

    /// 92 records of a group, optionally one storage.
    pub fn storage_stats(&self, group: &str, id: Option<&str>) -> Result<Vec<StorageStat>, Status> {
        let g = self.groups.get(group).ok_or(Status::NotFound)?;
        let stats: Vec<StorageStat> = g
            .members
            .values()
            .filter(|m| id.is_none_or(|id| m.id == id || m.ip == id))
            .map(|m| {
                let mut stats = m.stats.clone();
                stats.last_heart_beat_time = m.last_heartbeat;
                stats.last_synced_timestamp = m.last_synced_timestamp;
                StorageStat {
                    status: m.status as u8,
                    rw_mode: m.rw_mode,
                    id: m.id.clone(),
                    ip: m.ip.clone(),
                    src_id: m.src_id.clone(),
                    version: m.version.clone(),
                    join_time: m.join_time,
                    up_time: m.up_time,
                    total_mb: m.total_mb(),
                    free_mb: m.free_mb(),
                    reserved_mb: self.policy.reserved_storage_space.reserved_mb(m.total_mb()),
                    upload_priority: m.upload_priority,
                    store_path_count: m.store_path_count,
                    subdir_count_per_path: m.subdir_count_per_path,
                    current_write_path: self.placement.path_cursor(&g.name, &m.id) as u64,
                    storage_port: m.port,
                    stats,
                    if_trunk_server: g.is_trunk_server(&m.id),
                }
            })
            .collect();
        if id.is_some() && stats.is_empty() {
            return Err(Status::NotFound);
        }
        Ok(stats)
    }
}
