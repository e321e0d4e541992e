//! The tracker's picture of the cluster: groups, their storage members and
//! status, and the placement and routing decisions made from it.
//!
//! Pure state: no I/O, every time passed in, so each rule is unit-tested. The one
//! exception is resolving host names of `storage_ids.conf`, done where an id is
//! looked up by address.

mod admin;
mod changelog;
mod membership;
mod placement;
mod routing;
#[cfg(test)]
mod rules_tests;
mod statistics;
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
    /// Sums saturate: the figures are a storage's own report, any u64 it likes.
    pub fn total_mb(&self) -> u64 {
        self.paths
            .iter()
            .fold(0u64, |sum, p| sum.saturating_add(p.total_mb))
    }

    pub fn free_mb(&self) -> u64 {
        self.paths
            .iter()
            .fold(0u64, |sum, p| sum.saturating_add(p.free_mb))
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
                let row = |backlog: Backlog| BacklogRow {
                    source_id: m.id.clone(),
                    backlog,
                    reported_at: b.at,
                };
                // A member that reported with no peer to push to (it has not heard of the
                // others, or of where they are now) shows as one row naming no peer: it is
                // known to report, so a retirement waits for its word on each other member
                // instead of judging it by the trackers' whole-second timestamps.
                if b.entries.is_empty() {
                    vec![row(Backlog {
                        peer_id: String::new(),
                        bytes: 0,
                        seconds: 0,
                    })]
                } else {
                    b.entries.values().cloned().map(row).collect()
                }
            })
            .collect()
    }

    pub(crate) fn new(name: &str, store_path_count: u64, subdir_count_per_path: u64) -> Self {
        Group {
            name: name.to_owned(),
            members: BTreeMap::new(),
            store_path_count,
            subdir_count_per_path,
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
    policy: TrackerConfig,
    placement: placement::Placement,
    routing: routing::Routing,
    /// Configured storage ids (empty without `use_storage_id`).
    storage_ids: StorageIds,
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

    /// Brings storages' changelog offsets back to the changelog's end where they lie past
    /// it: a changelog cut short by a crash can end before offsets saved earlier, and they
    /// go on from its end, never from inside a line appended later. Called once the
    /// restored state and its changelog are both in place.
    pub(crate) fn fit_changelog_offsets(&mut self) {
        let end = self.changelog.len();
        for m in self
            .groups
            .values_mut()
            .flat_map(|g| g.members.values_mut())
        {
            m.changelog_offset = m.changelog_offset.min(end);
        }
    }

    pub fn new(policy: TrackerConfig) -> Self {
        Self::with_storage_ids(policy, StorageIds::default())
    }

    pub fn with_storage_ids(policy: TrackerConfig, storage_ids: StorageIds) -> Self {
        Registry {
            groups: BTreeMap::new(),
            policy,
            placement: placement::Placement::default(),
            routing: routing::Routing::default(),
            storage_ids,
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
}

/// Sets the cursor under `key`, allocating the key only the first time (placement and
/// routing run for every upload and download).
fn set_cursor(cursors: &mut BTreeMap<String, usize>, key: &str, value: usize) {
    match cursors.get_mut(key) {
        Some(cursor) => *cursor = value,
        None => {
            cursors.insert(key.to_owned(), value);
        }
    }
}

/// Where a round robin over `len` entries (callers have at least one) starts now, the
/// cursor moved on past it.
fn take_turn(cursors: &mut BTreeMap<String, usize>, key: &str, len: usize) -> usize {
    let len = len.max(1);
    let at = cursors.get(key).copied().unwrap_or(0) % len;
    set_cursor(cursors, key, (at + 1) % len);
    at
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

    #[test]
    fn disk_figures_a_storage_reports_add_up_without_overflowing() {
        let mut reg = Registry::new(TrackerConfig::default());
        let mut req = JoinRequest {
            group: "group1".into(),
            storage_port: 23000,
            store_path_count: 2,
            subdir_count_per_path: 256,
            status: 7,
            ..Default::default()
        };
        req.trackers = vec!["127.0.0.1:22122".into()];
        let id = reg.join("127.0.0.2", &req, 1000).expect("join").0;
        let huge = |mb| PathUsage {
            total_mb: mb,
            free_mb: mb,
        };
        reg.disk_usage("group1", &id, vec![huge(u64::MAX), huge(1)], 1000)
            .expect("disk");
        let m = &reg.groups()["group1"].members[&id];
        assert_eq!((m.total_mb(), m.free_mb()), (u64::MAX, u64::MAX));
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
    fn a_turn_goes_round_one_key_per_name_and_an_empty_round_is_no_division_by_zero() {
        let mut cursors = BTreeMap::new();
        let turns: Vec<usize> = (0..5).map(|_| take_turn(&mut cursors, "g", 3)).collect();
        assert_eq!(turns, [0, 1, 2, 0, 1]);
        assert_eq!(take_turn(&mut cursors, "g", 0), 0);
        set_cursor(&mut cursors, "g", 7);
        assert_eq!(cursors.len(), 1);
        assert_eq!(cursors["g"], 7);
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
