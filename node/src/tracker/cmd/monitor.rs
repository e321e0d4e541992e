//! What `fdfs_monitor` and the cluster statistics ask: groups (91), storages (92), the leader
//! (95), trackers, storages and volumes (96–98), and this project's sync backlog listing (241).

use crate::proto::cluster::{
    StorageStatFilter, TrackerStat, TrackerStatFilter, VolumeStatFilter, VolumeStats,
};
use crate::proto::monitor::{GroupStat, ListStorageRequest, StorageStat};
use crate::proto::query::GroupRequest;
use crate::proto::report::SyncBacklogListing;
use crate::proto::{Command, Status};

use super::{CommandFamily, Context, decoded};
use crate::tracker::empty;

/// One monitor question, its body decoded.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Monitor {
    /// 91.
    AllGroups,
    /// 90.
    OneGroup(String),
    /// 92: a group's storages, or one of them.
    Storages(ListStorageRequest),
    /// 95.
    Leader,
    /// 96, leader only.
    Trackers(TrackerStatFilter),
    /// 97.
    StorageCluster(StorageStatFilter),
    /// 98.
    Volumes(VolumeStatFilter),
    /// 241: what each member of a group still has to push.
    SyncBacklog(String),
}

impl CommandFamily for Monitor {
    fn parse(cmd: Command, body: &[u8]) -> Result<Self, Status> {
        let group = |body| decoded(GroupRequest::decode(body)).map(|r| r.group);
        Ok(match cmd {
            Command::ServerListAllGroups => empty(body).map(|_| Monitor::AllGroups)?,
            Command::ServerListOneGroup => Monitor::OneGroup(group(body)?),
            Command::ServerListStorage => {
                Monitor::Storages(decoded(ListStorageRequest::decode(body))?)
            }
            Command::ServerGetLeader => empty(body).map(|_| Monitor::Leader)?,
            Command::ServerTrackerClusterStat => {
                Monitor::Trackers(decoded(TrackerStatFilter::decode(body))?)
            }
            Command::ServerStorageClusterStat => {
                Monitor::StorageCluster(decoded(StorageStatFilter::decode(body))?)
            }
            Command::ServerStorageVolumnStat => {
                Monitor::Volumes(decoded(VolumeStatFilter::decode(body))?)
            }
            Command::ServerListSyncBacklog => Monitor::SyncBacklog(group(body)?),
            _ => return Err(Status::InvalidArgument),
        })
    }

    async fn apply(self, ctx: &mut Context<'_>) -> Result<Vec<u8>, Status> {
        let tracker = ctx.tracker;
        let layout = ctx.compat.monitor_layout;
        Ok(match self {
            Monitor::AllGroups => {
                GroupStat::encode_all_as(&tracker.registry().group_stats(), layout)
            }
            Monitor::OneGroup(group) => {
                let reg = tracker.registry();
                let g = reg.groups().get(&group).ok_or(Status::NotFound)?;
                GroupStat::encode_all_as(&[reg.group_stat(g)], layout)
            }
            Monitor::Storages(r) => {
                let stats = tracker
                    .registry()
                    .storage_stats(&r.group, r.storage_id.as_deref())?;
                StorageStat::encode_all_as(&stats, ctx.compat.ip_width, layout)
            }
            Monitor::Leader => tracker
                .leader()
                .map(|l| l.to_string().into_bytes())
                .ok_or(Status::NotFound)?,
            Monitor::Trackers(filter) => {
                if !tracker.is_leader() {
                    return Err(Status::NotSupported);
                }
                let list: Vec<TrackerStat> = tracker
                    .tracker_stats(ctx.now)
                    .into_iter()
                    .filter(|s| filter.accepts(s))
                    .collect();
                TrackerStat::encode_all(&list)
            }
            Monitor::StorageCluster(filter) => {
                let mut all = tracker.registry().storage_cluster_stats();
                all.storages.retain(|s| filter.accepts(s));
                all.encode()
            }
            Monitor::Volumes(filter) => {
                let groups = tracker
                    .registry()
                    .volume_stats()
                    .into_iter()
                    .filter(|v| filter.accepts(v))
                    .collect();
                VolumeStats {
                    use_trunk_file: false,
                    groups,
                }
                .encode()
            }
            Monitor::SyncBacklog(group) => {
                let reg = tracker.registry();
                let g = reg.groups().get(&group).ok_or(Status::NotFound)?;
                SyncBacklogListing {
                    rows: g.backlog_rows(),
                }
                .encode()
            }
        })
    }
}
