//! Membership: storages joining (81), their beats and reports (83, 84, 89, 240, 242), the
//! member that copies a group's files to a new one (87, 88), and going offline.

use super::*;

impl Registry {
    /// The id a joining storage is known by: its configured id, or its IP.
    fn identify(&self, peer_ip: &str, req: &JoinRequest) -> Result<(String, u8), Status> {
        if !self.policy.use_storage_id {
            return Ok((peer_ip.to_owned(), RW_BOTH));
        }
        let entry = if self.policy.trust_storage_server_id && !req.storage_id.is_empty() {
            self.storage_ids.by_id(&req.storage_id)
        } else {
            let ip: IpAddr = peer_ip.parse().map_err(|_| Status::InvalidArgument)?;
            let port = u16::try_from(req.storage_port).map_err(|_| Status::InvalidArgument)?;
            self.storage_ids.by_group_and_addr(&req.group, ip, port)
        };
        let Some(entry) = entry else {
            tracing::warn!(group = %req.group, storage_id = %req.storage_id, %peer_ip,
                "storage not in storage_ids.conf; join refused");
            return Err(Status::NotFound);
        };
        if entry.group != req.group {
            tracing::warn!(group = %req.group, configured = %entry.group, id = %entry.id,
                "storage joins a group other than its configured one; refused");
            return Err(Status::InvalidArgument);
        }
        Ok((entry.id.clone(), entry.rw_mode))
    }

    /// STORAGE_JOIN (81): register or log in a storage seen at `peer_ip`.
    pub fn join(
        &mut self,
        peer_ip: &str,
        req: &JoinRequest,
        now: u64,
    ) -> Result<(String, JoinResponse), Status> {
        if !crate::fileid::valid_group(&req.group)
            || !(1..=256).contains(&req.store_path_count)
            || !(1..=256).contains(&req.subdir_count_per_path)
            || req.storage_port == 0
            || req.storage_port > 65535
        {
            return Err(Status::InvalidArgument);
        }
        // Without storage ids a storage is known by the address it connects from.
        let (id, rw_mode) = self.identify(peer_ip, req)?;
        if let Some(m) = self.groups.get(&req.group).and_then(|g| g.members.get(&id))
            && m.session != 0
            && m.ip != peer_ip
        {
            tracing::warn!(group = %req.group, %id, held_by = %m.ip, %peer_ip,
                "storage id already held by a connected storage at another address; join refused");
            return Err(Status::AlreadyExists);
        }
        if let Some((other, _)) = self
            .groups
            .iter()
            .find(|(name, g)| **name != req.group && g.members.contains_key(&id))
            .filter(|_| self.policy.use_storage_id)
        {
            tracing::warn!(group = %req.group, %id, %other, "storage id already used in another group");
            return Err(Status::InvalidArgument);
        }
        self.next_session += 1;
        let session = self.next_session;
        let group = self.groups.entry(req.group.clone()).or_insert_with(|| {
            Group::new(&req.group, req.store_path_count, req.subdir_count_per_path)
        });
        if group.store_path_count != req.store_path_count
            || group.subdir_count_per_path != req.subdir_count_per_path
        {
            if group.members.is_empty() {
                group.store_path_count = req.store_path_count;
                group.subdir_count_per_path = req.subdir_count_per_path;
            } else {
                tracing::warn!(group = %req.group, storage = %id,
                    "store path or subdir count differs from the group's; join refused");
                return Err(Status::InvalidArgument);
            }
        }
        // Members share one port, unless names carry storage ids (V6.16 multi-instance).
        let ports_may_differ = self.policy.use_storage_id
            && self.policy.id_type_in_filename == crate::config::IdType::Id;
        if !ports_may_differ
            && group.members.values().any(|m| {
                m.id != id && m.port != req.storage_port && m.status != StorageStatus::Deleted
            })
        {
            tracing::warn!(group = %req.group, storage = %id, port = req.storage_port,
                "port differs from the group's; join refused");
            return Err(Status::InvalidArgument);
        }
        let member = match group.members.get_mut(&id) {
            Some(m) => {
                if matches!(m.status, StorageStatus::Deleted | StorageStatus::IpChanged) {
                    m.status = StorageStatus::Init;
                }
                m
            }
            None => {
                let status = if req.init_flag {
                    StorageStatus::Init
                } else {
                    match status_of(req.status) {
                        Some(StorageStatus::Active) => StorageStatus::Online,
                        Some(s)
                            if !matches!(
                                s,
                                StorageStatus::Deleted
                                    | StorageStatus::IpChanged
                                    | StorageStatus::None
                            ) =>
                        {
                            s
                        }
                        _ => return Err(Status::Fault),
                    }
                };
                group.members.entry(id.clone()).or_insert(Member {
                    id: id.clone(),
                    ip: peer_ip.to_owned(),
                    port: req.storage_port,
                    status,
                    version: req.version.clone(),
                    join_time: req.join_time,
                    up_time: req.up_time,
                    upload_priority: req.upload_priority,
                    store_path_count: req.store_path_count,
                    subdir_count_per_path: req.subdir_count_per_path,
                    paths: vec![PathUsage::default(); req.store_path_count as usize],
                    stats: StorageStats::default(),
                    last_heartbeat: now,
                    src_id: String::new(),
                    sync_until: 0,
                    last_synced_timestamp: 0,
                    rw_mode,
                    session: 0,
                    backlog: None,
                    problems: Vec::new(),
                    // What was logged before it joined is not its concern.
                    changelog_offset: self.changelog.len(),
                    fenced: false,
                })
            }
        };
        member.session = session;
        member.rw_mode = rw_mode;
        member.ip = peer_ip.to_owned();
        member.port = req.storage_port;
        member.version = req.version.clone();
        member.join_time = req.join_time;
        member.up_time = req.up_time;
        member.upload_priority = req.upload_priority;
        member.last_heartbeat = now;
        if matches!(
            member.status,
            StorageStatus::Offline | StorageStatus::Recovery
        ) {
            member.status = StorageStatus::Online;
        }
        let reply = JoinResponse {
            status: member.status as u8,
            src_id: member.src_id.clone(),
        };
        group.changes += 1;
        Ok((id, reply))
    }

    /// SYNC_DEST_REQ (87): a new storage asks who copies the group's files to it.
    pub fn sync_dest_req(
        &mut self,
        group: &str,
        id: &str,
        now: u64,
    ) -> Result<Option<SyncSource>, Status> {
        let (g, id) = self.member_mut(group, id)?;
        let source = g
            .members
            .values()
            .filter(|m| m.id != id && m.is_active())
            .map(|m| m.id.clone())
            .next();
        let others_available = g
            .members
            .values()
            .any(|m| m.id != id && m.status.is_available());
        let m = g.members.get_mut(&id).ok_or(Status::NotFound)?;
        g.changes += 1;
        if !others_available {
            m.status = StorageStatus::Online;
            return Ok(None);
        }
        let src = source.ok_or(Status::NotFound)?;
        m.status = StorageStatus::WaitSync;
        m.src_id = src.clone();
        m.sync_until = now;
        Ok(Some(SyncSource {
            src_id: src,
            until: now,
        }))
    }

    /// SYNC_NOTIFY (88): the storage tells this tracker its sync source.
    pub fn sync_notify(&mut self, group: &str, id: &str, src: &SyncSource) -> Result<(), Status> {
        let (g, id) = self.member_mut(group, id)?;
        if !src.src_id.is_empty() {
            match g.members.get(&src.src_id) {
                Some(s)
                    if !matches!(s.status, StorageStatus::Deleted | StorageStatus::IpChanged) => {}
                _ => return Err(Status::NotFound),
            }
        }
        let m = g.members.get_mut(&id).ok_or(Status::NotFound)?;
        if src.src_id.is_empty() {
            if matches!(
                m.status,
                StorageStatus::Init | StorageStatus::WaitSync | StorageStatus::Syncing
            ) {
                m.status = StorageStatus::Online;
            }
        } else {
            if m.status == StorageStatus::Init {
                m.status = StorageStatus::WaitSync;
            }
            if m.src_id.is_empty()
                && matches!(m.status, StorageStatus::WaitSync | StorageStatus::Syncing)
            {
                m.src_id = src.src_id.clone();
                m.sync_until = src.until;
            }
        }
        g.changes += 1;
        Ok(())
    }

    /// Any report from a settled storage makes it ACTIVE (protocol notes §3.1).
    fn mark_alive(g: &mut Group, id: &str, now: u64) -> Result<(), Status> {
        let m = g.members.get_mut(id).ok_or(Status::NotFound)?;
        m.last_heartbeat = now;
        if !matches!(
            m.status,
            StorageStatus::Init
                | StorageStatus::WaitSync
                | StorageStatus::Syncing
                | StorageStatus::IpChanged
                | StorageStatus::Deleted
                | StorageStatus::Active
        ) {
            m.status = StorageStatus::Active;
            g.changes += 1;
        }
        Ok(())
    }

    /// BEAT (83).
    pub fn beat(
        &mut self,
        group: &str,
        id: &str,
        stats: Option<StorageStats>,
        now: u64,
    ) -> Result<(), Status> {
        let (g, id) = self.member_mut(group, id)?;
        if let (Some(stats), Some(m)) = (stats, g.members.get_mut(&id)) {
            m.stats = stats;
        }
        Self::mark_alive(g, &id, now)
    }

    /// REPORT_DISK_USAGE (84).
    pub fn disk_usage(
        &mut self,
        group: &str,
        id: &str,
        paths: Vec<PathUsage>,
        now: u64,
    ) -> Result<(), Status> {
        let g = self.groups.get_mut(group).ok_or(Status::NotFound)?;
        let m = g.members.get_mut(id).ok_or(Status::NotFound)?;
        if paths.len() as u64 != m.store_path_count {
            return Err(Status::InvalidArgument);
        }
        if self.policy.store_path == 2 {
            self.placement.follow_disk_report(group, id, &paths);
        }
        m.paths = paths;
        Self::mark_alive(g, id, now)
    }

    /// SYNC_REPORT (89): the destination's view of how far each source got.
    pub fn sync_report(
        &mut self,
        group: &str,
        id: &str,
        entries: &[(String, u32)],
        now: u64,
    ) -> Result<(), Status> {
        let use_min = self.policy.store_server == 0;
        let (g, id) = self.member_mut(group, id)?;
        let relevant: Vec<u64> = entries
            .iter()
            .filter(|(src, _)| *src != id && g.members.get(src).is_some_and(Member::is_active))
            .map(|(_, ts)| u64::from(*ts))
            .collect();
        let m = g.members.get_mut(&id).ok_or(Status::NotFound)?;
        let value = if use_min {
            relevant.iter().min()
        } else {
            relevant.iter().max()
        };
        if let Some(&v) = value {
            m.last_synced_timestamp = v;
        }
        Self::mark_alive(g, &id, now)
    }

    /// SYNC_BACKLOG_REPORT (240): what a member's peers have yet to receive from it. Entries
    /// for storages outside its group, or for itself, are dropped.
    pub fn sync_backlog(
        &mut self,
        group: &str,
        id: &str,
        entries: Vec<Backlog>,
        now: u64,
    ) -> Result<(), Status> {
        let (g, id) = self.member_mut(group, id)?;
        // A peer named twice keeps its last entry.
        let entries = entries
            .into_iter()
            .filter(|e| e.peer_id != id && g.members.contains_key(&e.peer_id))
            .map(|e| (e.peer_id.clone(), e))
            .collect();
        let m = g.members.get_mut(&id).ok_or(Status::NotFound)?;
        m.backlog = Some(ReportedBacklog { at: now, entries });
        Ok(())
    }

    /// SYNC_PROBLEM_REPORT (242): the members whose pushes a member cannot apply. Entries
    /// for storages outside its group, or for itself, are dropped.
    pub fn sync_problems(
        &mut self,
        group: &str,
        id: &str,
        entries: Vec<SyncProblem>,
    ) -> Result<(), Status> {
        let (g, id) = self.member_mut(group, id)?;
        let mut entries: Vec<SyncProblem> = entries
            .into_iter()
            .filter(|e| e.source_id != id && g.members.contains_key(&e.source_id))
            .collect();
        entries.sort_by(|a, b| a.source_id.cmp(&b.source_id));
        entries.dedup_by(|a, b| a.source_id == b.source_id);
        let m = g.members.get_mut(&id).ok_or(Status::NotFound)?;
        m.problems = entries;
        Ok(())
    }

    /// The report connection `session` of a storage ended: it goes OFFLINE, as in
    /// FastDFS, unless a newer connection has joined since.
    pub fn disconnect(&mut self, group: &str, id: &str, session: u64) {
        let Some(g) = self.groups.get_mut(group) else {
            return;
        };
        let Some(m) = g.members.get_mut(id).filter(|m| m.session == session) else {
            return;
        };
        m.session = 0;
        m.up_time = 0;
        // Its last backlog report stays: its final word on what its peers lack, which a
        // retirement needs once it is stopped.
        m.problems.clear();
        if matches!(m.status, StorageStatus::Online | StorageStatus::Active) {
            tracing::info!(
                group,
                storage = id,
                "report connection closed; marking OFFLINE"
            );
            m.status = StorageStatus::Offline;
            g.changes += 1;
        }
    }

    /// Scheduled liveness check: silent ACTIVE members go OFFLINE.
    pub fn check_alive(&mut self, now: u64) {
        let limit = self.policy.check_active_interval;
        for g in self.groups.values_mut() {
            for m in g.members.values_mut() {
                if m.is_active() && now.saturating_sub(m.last_heartbeat) > limit {
                    tracing::warn!(group = %g.name, storage = %m.id, "no heartbeat; marking OFFLINE");
                    m.status = StorageStatus::Offline;
                    m.problems.clear();
                    g.changes += 1;
                }
            }
        }
    }
}
