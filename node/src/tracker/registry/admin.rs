//! Status reports about peers (76, 85, 86, 59), admin deletes (93, 108), and the
//! lookups and summaries behind 69, 70, 71, 97 and 98.

use std::net::IpAddr;

use super::{Group, Member, Registry};
use crate::proto::cluster::{
    FetchStorageIds, StorageClusterStat, StorageClusterStats, StorageIdsPage, VolumeStat,
};
use crate::proto::report::{PathUsage, StorageBrief, SyncSource};
use crate::proto::{Status, StorageStatus};
use crate::tracker::storage_ids::RW_BOTH;

/// Most bytes of id lines one FETCH_STORAGE_IDS reply carries (the client pages).
const IDS_PAGE_BYTES: usize = 60 * 1024;

impl Registry {
    /// Applies a status another storage reports for `brief` (76, and each brief of 85).
    ///
    /// Protocol notes §3.1: DELETED/IP_CHANGED always apply; otherwise a member in
    /// INIT, ONLINE, ACTIVE or RECOVERY keeps its status, and any other status only
    /// moves forward. Unknown storages are added unless the report is DELETED,
    /// IP_CHANGED, ONLINE or ACTIVE.
    pub fn report_status(&mut self, group: &str, brief: &StorageBrief) -> Result<(), Status> {
        let status = StorageStatus::from_byte(brief.status)
            .filter(|s| *s != StorageStatus::None)
            .ok_or(Status::InvalidArgument)?;
        let id = if brief.id.is_empty() {
            brief.ip.clone()
        } else {
            brief.id.clone()
        };
        if id.is_empty() {
            return Err(Status::InvalidArgument);
        }
        if self.policy.use_storage_id && self.storage_ids.by_id(&id).is_none() {
            return Err(Status::NotFound);
        }
        let g = self.groups.get_mut(group).ok_or(Status::NotFound)?;
        match g.members.get_mut(&id) {
            Some(m) => {
                let apply = matches!(status, StorageStatus::Deleted | StorageStatus::IpChanged)
                    || (!matches!(
                        m.status,
                        StorageStatus::Init
                            | StorageStatus::Online
                            | StorageStatus::Active
                            | StorageStatus::Recovery
                    ) && status > m.status);
                if apply {
                    tracing::info!(group, storage = %id, from = m.status.name(), to = status.name(),
                        "status reported by a peer");
                    m.status = status;
                    g.changes += 1;
                }
            }
            None => {
                if matches!(
                    status,
                    StorageStatus::Deleted
                        | StorageStatus::IpChanged
                        | StorageStatus::Online
                        | StorageStatus::Active
                ) {
                    return Ok(());
                }
                let m = Member {
                    id: id.clone(),
                    ip: brief.ip.clone(),
                    port: u64::from(brief.port),
                    status,
                    version: String::new(),
                    join_time: 0,
                    up_time: 0,
                    upload_priority: 10,
                    store_path_count: g.store_path_count,
                    subdir_count_per_path: g.subdir_count_per_path,
                    paths: vec![PathUsage::default(); g.store_path_count as usize],
                    stats: Default::default(),
                    last_heartbeat: 0,
                    src_id: String::new(),
                    sync_until: 0,
                    last_synced_timestamp: 0,
                    rw_mode: self
                        .storage_ids
                        .by_id(&id)
                        .map(|e| e.rw_mode)
                        .unwrap_or(RW_BOTH),
                    session: 0,
                    backlog: None,
                    problems: Vec::new(),
                    changelog_offset: self.changelog.len(),
                    fenced: false,
                };
                tracing::info!(group, storage = %id, status = status.name(), "storage added from a peer's report");
                g.members.insert(id, m);
                g.changes += 1;
            }
        }
        Ok(())
    }

    /// SYNC_SRC_REQ (86): the full-sync source recorded for `dest_id`, if still usable.
    pub fn sync_src_req(
        &mut self,
        group: &str,
        dest_id: &str,
    ) -> Result<Option<SyncSource>, Status> {
        let g = self.groups.get_mut(group).ok_or(Status::NotFound)?;
        let dest = g.members.get(dest_id).ok_or(Status::NotFound)?;
        if matches!(
            dest.status,
            StorageStatus::Init | StorageStatus::Deleted | StorageStatus::IpChanged
        ) {
            return Err(Status::NotFound);
        }
        if dest.src_id.is_empty() {
            return Ok(None);
        }
        let src_usable = g.members.get(&dest.src_id).is_some_and(|s| {
            matches!(
                s.status,
                StorageStatus::Offline
                    | StorageStatus::Online
                    | StorageStatus::Active
                    | StorageStatus::Recovery
            )
        });
        let until = dest.sync_until;
        let src_id = dest.src_id.clone();
        if !src_usable {
            if let Some(d) = g.members.get_mut(dest_id) {
                d.src_id.clear();
                d.sync_until = 0;
            }
            g.changes += 1;
            return Ok(None);
        }
        Ok(Some(SyncSource { src_id, until }))
    }

    /// CHANGE_STATUS (59): adopt the status the leader holds for this storage.
    pub fn change_status(&mut self, group: &str, id: &str, wanted: u8) -> Result<(), Status> {
        let wanted = StorageStatus::from_byte(wanted)
            .filter(|s| *s != StorageStatus::None)
            .ok_or(Status::InvalidArgument)?;
        let g = self.groups.get_mut(group).ok_or(Status::NotFound)?;
        let m = g.members.get_mut(id).ok_or(Status::NotFound)?;
        if m.status == wanted || (m.status.is_available() && wanted.is_available()) {
            return Ok(());
        }
        // A beat promotes an OFFLINE storage, so ONLINE/ACTIVE are stored as OFFLINE.
        m.status = if matches!(wanted, StorageStatus::Online | StorageStatus::Active) {
            StorageStatus::Offline
        } else {
            wanted
        };
        g.changes += 1;
        Ok(())
    }

    /// DELETE_STORAGE (93): mark a stopped storage DELETED.
    pub fn delete_storage(&mut self, group: &str, id: &str) -> Result<(), Status> {
        let g = self.groups.get_mut(group).ok_or(Status::NotFound)?;
        let m = g.members.get_mut(id).ok_or(Status::NotFound)?;
        match m.status {
            StorageStatus::IpChanged => return Err(Status::NotFound),
            StorageStatus::Online | StorageStatus::Active | StorageStatus::Recovery => {
                return Err(Status::Busy);
            }
            StorageStatus::Deleted => return Err(Status::AlreadyDone),
            _ => {}
        }
        m.status = StorageStatus::Deleted;
        m.src_id.clear();
        for other in g.members.values_mut() {
            if other.src_id == id {
                other.src_id.clear();
                other.sync_until = 0;
            }
        }
        g.changes += 1;
        tracing::info!(group, storage = id, "storage deleted");
        self.log_deleted(group, id);
        Ok(())
    }

    /// This project's SERVER_FENCE_STORAGE (243): no upload goes to a fenced member, which
    /// still serves reads and replication; kept across restarts of the member and of this
    /// tracker until lifted.
    pub fn fence_storage(&mut self, group: &str, id: &str, fenced: bool) -> Result<(), Status> {
        let g = self.groups.get_mut(group).ok_or(Status::NotFound)?;
        let m = g
            .members
            .get_mut(id)
            .filter(|m| !matches!(m.status, StorageStatus::Deleted | StorageStatus::IpChanged))
            .ok_or(Status::NotFound)?;
        if m.fenced != fenced {
            m.fenced = fenced;
            g.changes += 1;
            tracing::info!(group, storage = id, fenced, "storage fence changed");
        }
        Ok(())
    }

    /// DELETE_GROUP (108): remove a group none of whose storages is left (DELETED
    /// tombstones do not count).
    pub fn delete_group(&mut self, group: &str) -> Result<(), Status> {
        let g = self.groups.get(group).ok_or(Status::NotFound)?;
        if g.members
            .values()
            .any(|m| m.status != StorageStatus::Deleted)
        {
            return Err(Status::Busy);
        }
        self.groups.remove(group);
        tracing::info!(group, "group deleted");
        Ok(())
    }

    fn member_by_addr(&self, group: &str, ip: &str, port: u16) -> Option<&Member> {
        self.groups
            .get(group)?
            .members
            .values()
            .find(|m| m.ip == ip && m.port == u64::from(port) && m.status != StorageStatus::Deleted)
    }

    /// GET_STATUS (71): the brief of the storage at `ip:port`.
    pub fn brief_by_addr(&self, group: &str, ip: &str, port: u16) -> Result<StorageBrief, Status> {
        self.member_by_addr(group, ip, port)
            .map(Member::brief)
            .ok_or(Status::NotFound)
    }

    /// GET_SERVER_ID (70): the id of the storage at `ip:port`.
    pub fn server_id_by_addr(&self, group: &str, ip: &str, port: u16) -> Result<String, Status> {
        if !self.policy.use_storage_id {
            return Ok(ip.to_owned());
        }
        let addr: IpAddr = ip.parse().map_err(|_| Status::InvalidArgument)?;
        self.storage_ids
            .by_group_and_addr(group, addr, port)
            .map(|e| e.id.clone())
            .ok_or(Status::NotFound)
    }

    /// GET_GROUP_NAME (109): the group configured for a storage at `ip:port`.
    pub fn group_by_addr(&self, ip: IpAddr, port: u16) -> Result<String, Status> {
        if !self.policy.use_storage_id {
            return Err(Status::NotSupported);
        }
        self.storage_ids
            .entries
            .iter()
            .find(|e| e.matches(ip, port))
            .map(|e| e.group.clone())
            .ok_or(Status::NotFound)
    }

    /// FETCH_STORAGE_IDS (69): one page of the id list.
    pub fn fetch_storage_ids(&self, req: FetchStorageIds) -> Result<StorageIdsPage, Status> {
        if !self.policy.use_storage_id {
            return if req.allow_empty == Some(true) {
                Ok(StorageIdsPage::default())
            } else {
                Err(Status::NotSupported)
            };
        }
        let total = self.storage_ids.entries.len();
        let start = req.start_index as usize;
        if start >= total {
            return Err(Status::InvalidArgument);
        }
        let mut lines = Vec::new();
        let mut bytes = 0;
        for e in &self.storage_ids.entries[start..] {
            let l = e.to_line();
            if bytes + l.len() + 1 > IDS_PAGE_BYTES && !lines.is_empty() {
                break;
            }
            bytes += l.len() + 1;
            lines.push(l);
        }
        Ok(StorageIdsPage {
            total: total as u32,
            lines,
        })
    }

    /// STORAGE_CLUSTER_STAT (97) records, every group, id order.
    pub fn storage_cluster_stats(&self) -> StorageClusterStats {
        StorageClusterStats {
            use_storage_id: self.policy.use_storage_id,
            use_trunk_file: self.policy.trunk.use_trunk_file,
            storages: self
                .groups
                .values()
                .flat_map(|g| g.members.values().map(move |m| (g, m)))
                .map(|(g, m)| StorageClusterStat {
                    id: m.id.clone(),
                    host: format!("{}:{}", m.ip, m.port),
                    is_trunk_server: g.is_trunk_server(&m.id),
                    status: m.status as u8,
                    connections: m.stats.connections,
                    version: m.version.clone(),
                    up_time: m.up_time,
                    last_heartbeat: m.last_heartbeat,
                })
                .collect(),
        }
    }

    /// STORAGE_VOLUMN_STAT (98) records, one per group.
    pub fn volume_stats(&self) -> Vec<VolumeStat> {
        self.groups
            .values()
            .map(|g: &Group| {
                let (total, free) = g.space();
                let reserved = self.policy.reserved_storage_space.reserved_mb(total);
                VolumeStat {
                    group: g.name.clone(),
                    total_mb: total,
                    free_mb: free,
                    reserved_mb: reserved,
                    avail_mb: free.saturating_sub(reserved),
                    trunk_free_mb: g.trunk.free_mb,
                    is_disk_available: !g.writable().is_empty()
                        && self.policy.reserved_storage_space.has_room(free, total),
                    is_trunk_available: self.policy.trunk.use_trunk_file
                        && g.trunk.server.is_some()
                        && g.trunk.free_mb > 0,
                }
            })
            .collect()
    }
}
