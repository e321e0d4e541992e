//! The tracker's picture of the cluster: groups, their storage members and
//! status, and the placement and routing decisions made from it.
//!
//! Pure state: no I/O, every time passed in, so each rule is unit-tested. The one
//! exception is resolving host names of `storage_ids.conf`, done where an id is
//! looked up by address.

mod admin;
mod changelog;
#[cfg(test)]
mod rules_tests;
pub mod sys_files;
mod trunk;

use std::collections::BTreeMap;
use std::net::IpAddr;

use crate::config::{ReservedSpace, TrackerConfig};
use crate::fileid::{RemoteName, Source};
use crate::proto::monitor::{GroupStat, StorageStat, StorageStats};
use crate::proto::query::{FetchTarget, StorageAddr, StoreTarget, StoreTargets};
use crate::proto::report::{
    Backlog, BacklogRow, JoinRequest, JoinResponse, PathUsage, StorageBrief, SyncProblem,
    SyncSource,
};
use crate::proto::{Status, StorageStatus};
use crate::tracker::storage_ids::{RW_BOTH, RW_READ, RW_WRITE, StorageIds, address_for_client};
pub use trunk::GroupTrunk;

/// One storage as the tracker knows it.
#[derive(Debug, Clone)]
pub struct Member {
    pub id: String,
    pub ip: String,
    pub port: u64,
    pub status: StorageStatus,
    pub version: String,
    pub join_time: u64,
    pub up_time: u64,
    pub upload_priority: u64,
    pub store_path_count: u64,
    pub subdir_count_per_path: u64,
    pub paths: Vec<PathUsage>,
    pub current_write_path: usize,
    pub stats: StorageStats,
    pub last_heartbeat: u64,
    /// Full-sync source and the timestamp up to which it copies.
    pub src_id: String,
    pub sync_until: u64,
    /// Everything uploaded before this time has reached this member.
    pub last_synced_timestamp: u64,
    /// R_OK (4) | W_OK (2), from `storage_ids.conf` (both when not configured).
    pub rw_mode: u8,
    /// The live report connection that joined last; 0 = none.
    pub session: u64,
    /// What this member last said its peers have yet to receive of its binlog (this
    /// project's SYNC_BACKLOG_REPORT); none from FastDFS storages. Kept once it stops:
    /// its last report (sent after its last pushes) is what a retirement checks.
    pub backlog: Option<ReportedBacklog>,
    /// The members whose pushes this one last said it cannot apply (this project's
    /// SYNC_PROBLEM_REPORT); none once offline.
    pub problems: Vec<SyncProblem>,
    /// How much of the storage changelog it has read (77).
    pub changelog_offset: u64,
    /// Fenced for its retirement (this project's 243): no upload is routed to it.
    pub fenced: bool,
}

/// A member's backlog report and when it arrived (unix seconds), one entry per peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportedBacklog {
    pub at: u64,
    pub entries: BTreeMap<String, Backlog>,
}

impl Member {
    pub fn total_mb(&self) -> u64 {
        self.paths.iter().map(|p| p.total_mb).sum()
    }

    pub fn free_mb(&self) -> u64 {
        self.paths.iter().map(|p| p.free_mb).sum()
    }

    pub fn addr(&self) -> StorageAddr {
        StorageAddr {
            ip: self.ip.clone(),
            port: self.port,
        }
    }

    pub fn brief(&self) -> StorageBrief {
        StorageBrief {
            status: self.status as u8,
            port: self.port as u32,
            id: self.id.clone(),
            ip: self.ip.clone(),
        }
    }

    fn is_active(&self) -> bool {
        self.status == StorageStatus::Active
    }

    fn is_running(&self) -> bool {
        matches!(self.status, StorageStatus::Active | StorageStatus::Online)
    }

    /// ACTIVE and allowed to serve reads.
    pub fn is_readable(&self) -> bool {
        self.is_active() && self.rw_mode & RW_READ != 0
    }

    /// ACTIVE and allowed to take uploads.
    pub fn is_writable(&self) -> bool {
        self.is_active() && self.rw_mode & RW_WRITE != 0 && !self.fenced
    }
}

/// A group and its members, ordered by storage id.
#[derive(Debug, Clone)]
pub struct Group {
    pub name: String,
    pub members: BTreeMap<String, Member>,
    pub store_path_count: u64,
    pub subdir_count_per_path: u64,
    current_write_server: usize,
    current_read_server: usize,
    /// Bumped on every membership or status change; drives heartbeat pushes.
    pub changes: u64,
    /// Its trunk server and trunk space.
    pub trunk: GroupTrunk,
}

impl Group {
    /// What the other members that run last reported `peer` has yet to receive from each
    /// of them.
    pub fn backlog_towards(&self, peer: &str) -> Vec<BacklogRow> {
        self.members
            .values()
            .filter(|m| m.is_running())
            .filter_map(|m| {
                let b = m.backlog.as_ref()?;
                Some(BacklogRow {
                    source_id: m.id.clone(),
                    backlog: b.entries.get(peer)?.clone(),
                    reported_at: b.at,
                })
            })
            .collect()
    }

    /// The bytes `peer` has yet to receive from all the others that run, as they reported
    /// them; `None` when none reports.
    pub fn lag_bytes_towards(&self, peer: &str) -> Option<u64> {
        self.members
            .values()
            .filter(|m| m.is_running())
            .filter_map(|m| m.backlog.as_ref()?.entries.get(peer))
            .map(|b| b.bytes)
            .reduce(u64::saturating_add)
    }

    /// Every backlog its members reported, by source: of a stopped member, its last
    /// report (what a retirement checks).
    pub fn backlog_rows(&self) -> Vec<BacklogRow> {
        self.members
            .values()
            .filter_map(|m| Some((m, m.backlog.as_ref()?)))
            .flat_map(|(m, b)| {
                b.entries.values().map(|e| BacklogRow {
                    source_id: m.id.clone(),
                    backlog: e.clone(),
                    reported_at: b.at,
                })
            })
            .collect()
    }

    pub(crate) fn new(name: &str, store_path_count: u64, subdir_count_per_path: u64) -> Self {
        Group {
            name: name.to_owned(),
            members: BTreeMap::new(),
            store_path_count,
            subdir_count_per_path,
            current_write_server: 0,
            current_read_server: 0,
            changes: 0,
            trunk: GroupTrunk::default(),
        }
    }

    /// ACTIVE members, in id order.
    pub fn active(&self) -> Vec<&Member> {
        self.members.values().filter(|m| m.is_active()).collect()
    }

    /// Members that take uploads, in id order.
    pub fn writable(&self) -> Vec<&Member> {
        self.members.values().filter(|m| m.is_writable()).collect()
    }

    /// Members that serve downloads, in id order.
    pub fn readable(&self) -> Vec<&Member> {
        self.members.values().filter(|m| m.is_readable()).collect()
    }

    /// The group's space is that of its writable member with the least free space.
    pub fn space(&self) -> (u64, u64) {
        self.writable()
            .iter()
            .min_by_key(|m| m.free_mb())
            .map(|m| (m.total_mb(), m.free_mb()))
            .unwrap_or((0, 0))
    }

    pub fn briefs(&self) -> Vec<StorageBrief> {
        self.members.values().map(Member::brief).collect()
    }

    fn find_source(&self, source: Source) -> Option<&Member> {
        match source {
            Source::Ip(ip) => {
                let ip = ip.to_string();
                self.members.values().find(|m| m.ip == ip || m.id == ip)
            }
            Source::ServerId(n) => self.members.get(&n.to_string()),
        }
    }
}

/// Everything a tracker knows, plus the policies it applies.
#[derive(Debug)]
pub struct Registry {
    groups: BTreeMap<String, Group>,
    current_write_group: usize,
    policy: TrackerConfig,
    /// Configured storage ids (empty without `use_storage_id`).
    storage_ids: StorageIds,
    /// Storages listed with two addresses (inner, outer) in `storage_ids.conf`, resolved.
    address_pairs: BTreeMap<String, [IpAddr; 2]>,
    next_session: u64,
    /// Storages deleted or moved to another address, for the storages to read (77).
    changelog: changelog::Changelog,
}

fn status_of(byte: i8) -> Option<StorageStatus> {
    u8::try_from(byte).ok().and_then(StorageStatus::from_byte)
}

impl Registry {
    /// The groups and their members, to read; changes go through the registry's methods.
    pub fn groups(&self) -> &BTreeMap<String, Group> {
        &self.groups
    }

    /// Puts a group back as saved or fetched from another tracker, replacing one of the
    /// same name.
    pub(crate) fn restore_group(&mut self, group: Group) {
        self.groups.insert(group.name.clone(), group);
    }

    pub fn new(policy: TrackerConfig) -> Self {
        Self::with_storage_ids(policy, StorageIds::default())
    }

    pub fn with_storage_ids(policy: TrackerConfig, storage_ids: StorageIds) -> Self {
        Registry {
            groups: BTreeMap::new(),
            current_write_group: 0,
            policy,
            storage_ids,
            address_pairs: BTreeMap::new(),
            next_session: 0,
            changelog: changelog::Changelog::default(),
        }
    }

    pub fn storage_ids(&self) -> &StorageIds {
        &self.storage_ids
    }

    /// Takes a re-read `storage_ids.conf`; members already joined keep their ids, and take
    /// a changed `rw=` at once: a member made read-only gets no more uploads.
    pub fn set_storage_ids(&mut self, ids: StorageIds) {
        if self.policy.use_storage_id {
            for g in self.groups.values_mut() {
                let mut changed = false;
                for m in g.members.values_mut() {
                    if let Some(entry) = ids.by_id(&m.id).filter(|e| e.rw_mode != m.rw_mode) {
                        tracing::info!(group = %g.name, storage = %m.id, rw_mode = entry.rw_mode,
                            "storage_ids.conf changed the storage's access");
                        m.rw_mode = entry.rw_mode;
                        changed = true;
                    }
                }
                if changed {
                    g.changes += 1;
                }
            }
        }
        self.storage_ids = ids;
    }

    /// Takes the resolved address pairs of `storage_ids.conf`; true when they changed.
    pub fn set_address_pairs(&mut self, pairs: BTreeMap<String, [IpAddr; 2]>) -> bool {
        let changed = self.address_pairs != pairs;
        self.address_pairs = pairs;
        changed
    }

    /// Rewrites storage addresses of `group` for a client at `client`: a storage listed with
    /// two addresses is given as the one on the client's side (FastDFS's inner/outer rule),
    /// so clients inside and outside a Kubernetes cluster each reach it.
    pub fn as_seen_from<'a>(
        &self,
        group: &str,
        addrs: impl IntoIterator<Item = &'a mut StorageAddr>,
        client: IpAddr,
    ) {
        if self.address_pairs.is_empty() {
            return;
        }
        let Some(g) = self.groups.get(group) else {
            return;
        };
        for addr in addrs {
            let pair = g
                .members
                .values()
                .find(|m| m.ip == addr.ip && m.port == addr.port)
                .and_then(|m| self.address_pairs.get(&m.id))
                .filter(|pair| pair.iter().any(|ip| ip.to_string() == addr.ip));
            if let Some(pair) = pair {
                addr.ip = address_for_client(*pair, client).to_string();
            }
        }
    }

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

    pub fn policy(&self) -> &TrackerConfig {
        &self.policy
    }

    fn member_mut(&mut self, group: &str, id: &str) -> Result<(&mut Group, String), Status> {
        let g = self.groups.get_mut(group).ok_or(Status::NotFound)?;
        if !g.members.contains_key(id) {
            return Err(Status::NotFound);
        }
        Ok((g, id.to_owned()))
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
                    current_write_path: 0,
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
        let store_path = self.policy.store_path;
        let (g, id) = self.member_mut(group, id)?;
        let m = g.members.get_mut(&id).ok_or(Status::NotFound)?;
        if paths.len() as u64 != m.store_path_count {
            return Err(Status::InvalidArgument);
        }
        if store_path == 2 {
            m.current_write_path = paths
                .iter()
                .enumerate()
                .max_by_key(|(_, p)| p.free_mb)
                .map(|(i, _)| i)
                .unwrap_or(0);
        }
        m.paths = paths;
        Self::mark_alive(g, &id, now)
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

    fn group_has_room(&self, g: &Group) -> bool {
        let (total, free) = g.space();
        self.policy.reserved_storage_space.has_room(free, total)
    }

    /// Picks the group for an upload (`store_lookup`), or the named one.
    fn choose_group(&mut self, named: Option<&str>) -> Result<String, Status> {
        let named = named
            .map(str::to_owned)
            .or_else(|| (self.policy.store_lookup == 1).then(|| self.policy.store_group.clone()));
        if let Some(name) = named {
            let g = self.groups.get(&name).ok_or(Status::NotFound)?;
            if g.writable().is_empty() {
                return Err(Status::NotFound);
            }
            return if self.group_has_room(g) {
                Ok(name)
            } else {
                Err(Status::NoSpace)
            };
        }
        let names: Vec<&Group> = self
            .groups
            .values()
            .filter(|g| !g.writable().is_empty())
            .collect();
        if names.is_empty() {
            return Err(Status::NotFound);
        }
        if self.policy.store_lookup == 2 {
            return names
                .iter()
                .filter(|g| self.group_has_room(g))
                .max_by_key(|g| g.space().1)
                .map(|g| g.name.clone())
                .ok_or(Status::NoSpace);
        }
        let n = names.len();
        let start = self.current_write_group % n;
        let chosen = (0..n)
            .map(|i| names[(start + i) % n])
            .find(|g| self.group_has_room(g))
            .map(|g| g.name.clone());
        self.current_write_group = (start + 1) % n;
        chosen.ok_or(Status::NoSpace)
    }

    /// Picks the storage in `group` for an upload (`store_server`).
    fn choose_storage(&mut self, group: &str) -> Result<String, Status> {
        let store_server = self.policy.store_server;
        let g = self.groups.get_mut(group).ok_or(Status::NotFound)?;
        let active = g.writable();
        if active.is_empty() {
            return Err(Status::NotFound);
        }
        let id = match store_server {
            1 => active[0].id.clone(),
            2 => active
                .iter()
                .min_by_key(|m| (m.upload_priority, m.id.clone()))
                .map(|m| m.id.clone())
                .unwrap_or_default(),
            _ => {
                let i = g.current_write_server % active.len();
                let id = active[i].id.clone();
                g.current_write_server = (i + 1) % active.len();
                id
            }
        };
        Ok(id)
    }

    /// Picks the store path on a member (`store_path`) that passes the reserve check.
    fn choose_path(&mut self, group: &str, id: &str) -> Result<u8, Status> {
        let reserved: ReservedSpace = self.policy.reserved_storage_space;
        let round_robin = self.policy.store_path == 0;
        let (g, id) = self.member_mut(group, id)?;
        let m = g.members.get_mut(&id).ok_or(Status::NotFound)?;
        let n = m.paths.len().max(1);
        let start = m.current_write_path % n;
        let per_path_reserve = |p: &PathUsage| match reserved {
            ReservedSpace::Mb(mb) => p.free_mb > mb / n as u64,
            ReservedSpace::Ratio(_) => reserved.has_room(p.free_mb, p.total_mb),
        };
        let found = (0..n)
            .map(|i| (start + i) % n)
            .find(|&i| m.paths.get(i).is_some_and(per_path_reserve));
        if round_robin {
            m.current_write_path = (start + 1) % n;
        }
        found.map(|i| i as u8).ok_or(Status::NoSpace)
    }

    /// 101/104: one storage and path for an upload.
    pub fn query_store(&mut self, group: Option<&str>) -> Result<StoreTarget, Status> {
        let group = self.choose_group(group)?;
        let id = self.choose_storage(&group)?;
        let path = self.choose_path(&group, &id)?;
        let m = &self.groups[&group].members[&id];
        Ok(StoreTarget {
            group,
            addr: m.addr(),
            store_path_index: path,
        })
    }

    /// 106/107: every writable storage of the chosen group.
    pub fn query_store_all(&mut self, group: Option<&str>) -> Result<StoreTargets, Status> {
        let group = self.choose_group(group)?;
        let first = self.groups[&group]
            .writable()
            .first()
            .map(|m| m.id.clone())
            .ok_or(Status::NotFound)?;
        let path = self.choose_path(&group, &first)?;
        let servers = self.groups[&group]
            .writable()
            .iter()
            .map(|m| m.addr())
            .collect();
        Ok(StoreTargets {
            group,
            servers,
            store_path_index: path,
        })
    }

    /// Whether member `m` can already serve a file uploaded at `file_ts` to `source`.
    fn has_file(&self, m: &Member, source_id: Option<&str>, file_ts: u64, now: u64) -> bool {
        Some(m.id.as_str()) == source_id
            || file_ts + self.policy.storage_sync_file_max_delay < now
            || m.last_synced_timestamp > file_ts
            || (m.last_synced_timestamp + 1 >= file_ts
                && now.saturating_sub(file_ts) > self.policy.storage_sync_file_max_time)
    }

    fn decode(&self, group: &str, remote: &str) -> Result<(RemoteName, Source, u64, bool), Status> {
        if !self.groups.contains_key(group) {
            return Err(Status::NotFound);
        }
        let name = RemoteName::parse(remote).map_err(|_| Status::InvalidArgument)?;
        let core = name.core().map_err(|_| Status::InvalidArgument)?;
        let normal = !core.is_appender() && !name.is_slave().unwrap_or(true);
        Ok((name, core.source, u64::from(core.timestamp), normal))
    }

    /// 102: one storage that holds the file (protocol notes §4.6).
    pub fn query_fetch(
        &mut self,
        group: &str,
        remote: &str,
        now: u64,
    ) -> Result<FetchTarget, Status> {
        let all = self.readable_holders(group, remote, now, true)?;
        all.into_iter()
            .next()
            .map(|addr| FetchTarget {
                group: group.to_owned(),
                addr,
            })
            .ok_or(Status::NotFound)
    }

    /// 105: every storage that holds the file.
    pub fn query_fetch_all(
        &mut self,
        group: &str,
        remote: &str,
        now: u64,
    ) -> Result<Vec<StorageAddr>, Status> {
        let all = self.readable_holders(group, remote, now, false)?;
        if all.is_empty() {
            Err(Status::NotFound)
        } else {
            Ok(all)
        }
    }

    fn readable_holders(
        &mut self,
        group: &str,
        remote: &str,
        now: u64,
        one: bool,
    ) -> Result<Vec<StorageAddr>, Status> {
        let (_, source, file_ts, normal) = self.decode(group, remote)?;
        let g = &self.groups[group];
        let source_member = g.find_source(source).filter(|m| m.is_readable());
        let source_id = g.find_source(source).map(|m| m.id.clone());
        if let Some(s) =
            source_member.filter(|_| (!normal || self.policy.download_server == 1) && one)
        {
            return Ok(vec![s.addr()]);
        }
        let active = g.readable();
        if active.is_empty() {
            return Err(Status::NotFound);
        }
        if !normal {
            return Ok(source_member
                .map(|s| vec![s.addr()])
                .unwrap_or_else(|| vec![active[0].addr()]));
        }
        let start = g.current_read_server % active.len();
        let holders: Vec<StorageAddr> = (0..active.len())
            .map(|i| active[(start + i) % active.len()])
            .filter(|m| self.has_file(m, source_id.as_deref(), file_ts, now))
            .map(Member::addr)
            .collect();
        let fallback = active[0].addr();
        if let Some(g) = self.groups.get_mut(group) {
            g.current_read_server = (start + 1) % active_len(g);
        }
        Ok(if holders.is_empty() {
            vec![fallback]
        } else if one {
            holders[..1].to_vec()
        } else {
            holders
        })
    }

    /// 103: the storage to update a file on: its source when writable.
    pub fn query_update(&mut self, group: &str, remote: &str) -> Result<FetchTarget, Status> {
        let (_, source, _, _) = self.decode(group, remote)?;
        let g = &self.groups[group];
        if let Some(s) = g.find_source(source).filter(|m| m.is_writable()) {
            return Ok(FetchTarget {
                group: group.to_owned(),
                addr: s.addr(),
            });
        }
        let id = self.choose_storage(group)?;
        let addr = self.groups[group].members[&id].addr();
        Ok(FetchTarget {
            group: group.to_owned(),
            addr,
        })
    }

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
            current_write_server: g.current_write_server as u64,
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
                    current_write_path: m.current_write_path as u64,
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

fn active_len(g: &Group) -> usize {
    g.readable().len().max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fileid::{NameCore, normal_size_field};

    fn join(reg: &mut Registry, group: &str, ip: &str, init: bool) -> String {
        let req = JoinRequest {
            group: group.into(),
            storage_port: 23000,
            store_path_count: 1,
            subdir_count_per_path: 256,
            upload_priority: 10,
            init_flag: init,
            status: if init { 0 } else { 7 },
            trackers: vec!["127.0.0.1:22122".into()],
            ..Default::default()
        };
        reg.join(ip, &req, 1000).expect("join").0
    }

    fn activate(reg: &mut Registry, group: &str, id: &str) {
        reg.disk_usage(
            group,
            id,
            vec![PathUsage {
                total_mb: 100_000,
                free_mb: 50_000,
            }],
            1000,
        )
        .expect("disk");
    }

    fn name_from(ip: [u8; 4], ts: u32) -> String {
        let core = NameCore {
            source: Source::Ip(ip.into()),
            timestamp: ts,
            size_field: normal_size_field(10, 1),
            crc32: 7,
        };
        format!("M00/00/00/{}123.txt", core.encode())
    }

    #[test]
    fn new_storage_goes_init_online_active() {
        let mut reg = Registry::new(TrackerConfig::default());
        let id = join(&mut reg, "group1", "127.0.0.2", true);
        assert_eq!(
            reg.groups["group1"].members[&id].status,
            StorageStatus::Init
        );
        assert_eq!(reg.sync_dest_req("group1", &id, 1000), Ok(None));
        assert_eq!(
            reg.groups["group1"].members[&id].status,
            StorageStatus::Online
        );
        activate(&mut reg, "group1", &id);
        assert_eq!(
            reg.groups["group1"].members[&id].status,
            StorageStatus::Active
        );
    }

    #[test]
    fn second_member_waits_for_sync() {
        let mut reg = Registry::new(TrackerConfig::default());
        let a = join(&mut reg, "group1", "127.0.0.2", false);
        activate(&mut reg, "group1", &a);
        let b = join(&mut reg, "group1", "127.0.0.3", true);
        let src = reg.sync_dest_req("group1", &b, 2000).expect("source");
        assert_eq!(
            src,
            Some(SyncSource {
                src_id: a,
                until: 2000
            })
        );
        assert_eq!(
            reg.groups["group1"].members[&b].status,
            StorageStatus::WaitSync
        );
    }

    #[test]
    fn heartbeat_timeout_goes_offline() {
        let mut reg = Registry::new(TrackerConfig::default());
        let a = join(&mut reg, "group1", "127.0.0.2", false);
        activate(&mut reg, "group1", &a);
        reg.check_alive(1050);
        assert_eq!(
            reg.groups["group1"].members[&a].status,
            StorageStatus::Active
        );
        reg.check_alive(1101);
        assert_eq!(
            reg.groups["group1"].members[&a].status,
            StorageStatus::Offline
        );
        assert_eq!(reg.query_store(None), Err(Status::NotFound));
    }

    #[test]
    fn round_robin_groups_and_unknown_group() {
        let mut reg = Registry::new(TrackerConfig::default());
        for (g, ip) in [("group1", "127.0.0.2"), ("group2", "127.0.0.3")] {
            let id = join(&mut reg, g, ip, false);
            activate(&mut reg, g, &id);
        }
        let picks: Vec<String> = (0..4)
            .map(|_| reg.query_store(None).expect("store").group)
            .collect();
        assert_eq!(picks, ["group1", "group2", "group1", "group2"]);
        assert_eq!(reg.query_store(Some("nope")), Err(Status::NotFound));
        assert_eq!(
            reg.query_store(Some("group2")).map(|t| t.addr.ip),
            Ok("127.0.0.3".into())
        );
    }

    #[test]
    fn reserved_space_gives_enospc() {
        let cfg = TrackerConfig {
            reserved_storage_space: ReservedSpace::Ratio(0.9),
            ..Default::default()
        };
        let mut reg = Registry::new(cfg);
        let a = join(&mut reg, "group1", "127.0.0.2", false);
        activate(&mut reg, "group1", &a);
        assert_eq!(reg.query_store(None), Err(Status::NoSpace));
    }

    #[test]
    fn fetch_routes_recent_files_to_their_source() {
        let mut reg = Registry::new(TrackerConfig::default());
        let a = join(&mut reg, "group1", "127.0.0.2", false);
        activate(&mut reg, "group1", &a);
        // A second ACTIVE member that has synced nothing yet.
        let b = join(&mut reg, "group1", "127.0.0.3", false);
        activate(&mut reg, "group1", &b);
        let fresh = name_from([127, 0, 0, 2], 990);
        for _ in 0..4 {
            let t = reg.query_fetch("group1", &fresh, 1000).expect("fetch");
            assert_eq!(t.addr.ip, "127.0.0.2");
        }
        let old = name_from([127, 0, 0, 2], 10);
        let ips: std::collections::BTreeSet<String> = (0..4)
            .map(|_| {
                reg.query_fetch("group1", &old, 100_000)
                    .expect("fetch")
                    .addr
                    .ip
            })
            .collect();
        assert_eq!(ips.len(), 2, "old files are spread over both members");
        assert_eq!(
            reg.query_update("group1", &fresh).map(|t| t.addr.ip),
            Ok("127.0.0.2".into())
        );
        assert_eq!(reg.query_fetch("nope", &fresh, 1000), Err(Status::NotFound));
        assert_eq!(
            reg.query_fetch("group1", "M00/00/00/../../x", 1000),
            Err(Status::InvalidArgument)
        );
    }
}
