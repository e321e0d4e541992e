//! What `fdfs_monitor` and the cluster statistics ask: groups (91), storages (92), the leader
//! (95), trackers, storages and volumes (96–98), and this project's sync backlog listing (241).

use crate::proto::cluster::{self, TrackerStat, TrackerStatFilter, VolumeStatFilter, VolumeStats};
use crate::proto::monitor::{GroupStat, ListStorageRequest, StorageStat};
use crate::proto::query::GroupRequest;
use crate::proto::report::SyncBacklogListing;
use crate::proto::{Command, Status};
use crate::tracker::empty;

use super::Request;

pub(super) fn apply(req: Request<'_>) -> Result<Vec<u8>, Status> {
    let Request {
        tracker,
        compat,
        cmd,
        body,
        now,
        ..
    } = req;
    let width = compat.ip_width;
    let layout = compat.monitor_layout;
    match cmd {
        Command::ServerListAllGroups => {
            empty(body).map(|_| GroupStat::encode_all_as(&tracker.registry().group_stats(), layout))
        }
        Command::ServerListOneGroup => {
            GroupRequest::decode(body)
                .map_err(|e| e.status())
                .and_then(|r| {
                    let reg = tracker.registry();
                    let g = reg.groups().get(&r.group).ok_or(Status::NotFound)?;
                    Ok(GroupStat::encode_all_as(&[reg.group_stat(g)], layout))
                })
        }
        Command::ServerListStorage => ListStorageRequest::decode(body)
            .map_err(|e| e.status())
            .and_then(|r| {
                tracker
                    .registry()
                    .storage_stats(&r.group, r.storage_id.as_deref())
            })
            .map(|s| StorageStat::encode_all_as(&s, width, layout)),
        Command::ServerGetLeader => empty(body).and_then(|_| {
            tracker
                .leader()
                .map(|l| l.to_string().into_bytes())
                .ok_or(Status::NotFound)
        }),
        Command::ServerTrackerClusterStat => TrackerStatFilter::decode(body)
            .map_err(|e| e.status())
            .and_then(|f| {
                if !tracker.is_leader() {
                    return Err(Status::NotSupported);
                }
                let list: Vec<TrackerStat> = tracker
                    .tracker_stats(now)
                    .into_iter()
                    .filter(|s| f.accepts(s))
                    .collect();
                Ok(TrackerStat::encode_all(&list))
            }),
        Command::ServerStorageClusterStat => cluster::StorageStatFilter::decode(body)
            .map_err(|e| e.status())
            .map(|f| {
                let mut all = tracker.registry().storage_cluster_stats();
                all.storages.retain(|s| f.accepts(s));
                all.encode()
            }),
        Command::ServerStorageVolumnStat => VolumeStatFilter::decode(body)
            .map_err(|e| e.status())
            .map(|f| {
                let groups = tracker
                    .registry()
                    .volume_stats()
                    .into_iter()
                    .filter(|v| f.accepts(v))
                    .collect();
                VolumeStats {
                    use_trunk_file: false,
                    groups,
                }
                .encode()
            }),
        Command::ServerListSyncBacklog => GroupRequest::decode(body)
            .map_err(|e| e.status())
            .and_then(|r| {
                let reg = tracker.registry();
                let g = reg.groups().get(&r.group).ok_or(Status::NotFound)?;
                Ok(SyncBacklogListing {
                    rows: g.backlog_rows(),
                }
                .encode())
            }),
        _ => Err(Status::InvalidArgument),
    }
}
