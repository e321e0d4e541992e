//! The tracker's commands, one module per family, and the table that sends each command code
//! to its family (`family`). A family decodes its bodies with `proto`, asks the registry or the
//! leader election, and encodes the reply; `Tracker::handle` counts and sends it.

mod admin;
mod lookup;
mod monitor;
mod peer;
mod query;
mod report;

use super::{Session, Tracker};
use crate::config::Compat;
use crate::proto::{Command, Status};
use crate::server::Connection;

/// One request, as a family's `apply` takes it.
pub(super) struct Request<'a> {
    pub tracker: &'a Tracker,
    pub conn: &'a Connection,
    pub session: &'a mut Session,
    pub compat: &'a Compat,
    pub cmd: Command,
    pub body: &'a [u8],
    pub now: u64,
}

/// The families of commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Family {
    Query,
    Monitor,
    Admin,
    Lookup,
    Report,
    Peer,
}

/// The dispatch table: the family that serves `cmd`, `None` for a command the tracker does not
/// serve (QUIT and ACTIVE_TEST are answered before).
pub(super) fn family(cmd: Command) -> Option<Family> {
    use Command as C;
    Some(match cmd {
        C::QueryStoreWithoutGroupOne
        | C::QueryStoreWithGroupOne
        | C::QueryStoreWithoutGroupAll
        | C::QueryStoreWithGroupAll
        | C::QueryFetchOne
        | C::QueryUpdate
        | C::QueryFetchAll => Family::Query,
        C::ServerListAllGroups
        | C::ServerListOneGroup
        | C::ServerListStorage
        | C::ServerGetLeader
        | C::ServerTrackerClusterStat
        | C::ServerStorageClusterStat
        | C::ServerStorageVolumnStat
        | C::ServerListSyncBacklog => Family::Monitor,
        C::ServerDeleteStorage
        | C::ServerFenceStorage
        | C::ServerDeleteGroup
        | C::ServerSetTrunkServer => Family::Admin,
        C::StorageParameterReq
        | C::StorageFetchStorageIds
        | C::StorageGetServerId
        | C::StorageGetStatus
        | C::StorageGetGroupName
        | C::StorageGetMyIp => Family::Lookup,
        C::StorageChangelogReq
        | C::StorageReportIpChanged
        | C::StorageReportStatus
        | C::StorageSyncSrcReq
        | C::StorageJoin
        | C::StorageBeat
        | C::StorageReportDiskUsage
        | C::StorageSyncReport
        | C::StorageReportSyncBacklog
        | C::StorageReportSyncProblems
        | C::StorageSyncDestReq
        | C::StorageSyncNotify
        | C::StorageSyncDestQuery
        | C::StorageChangeStatus
        | C::StorageReplicaChg
        | C::StorageFetchTrunkFid
        | C::StorageReportTrunkFid
        | C::StorageReportTrunkFree => Family::Report,
        C::TrackerGetSysFilesStart
        | C::TrackerGetOneSysFile
        | C::TrackerGetSysFilesEnd
        | C::TrackerGetStatus
        | C::TrackerJoinLeader
        | C::TrackerPingLeader
        | C::TrackerNotifyNextLeader
        | C::TrackerCommitNextLeader
        | C::TrackerNotifyReselectLeader => Family::Peer,
        _ => return None,
    })
}

/// Runs `req` in its family.
pub(super) async fn apply(family: Family, req: Request<'_>) -> Result<Vec<u8>, Status> {
    match family {
        Family::Query => query::apply(req),
        Family::Monitor => monitor::apply(req),
        Family::Admin => admin::apply(req),
        Family::Lookup => lookup::apply(req),
        Family::Report => report::apply(req).await,
        Family::Peer => peer::apply(req),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each code the tracker serves has one family, by FastDFS's numbering; storage commands,
    /// the reply marker and unknown codes have none.
    #[test]
    fn every_tracker_command_has_its_family_and_nothing_else_has_one() {
        let expect = |codes: &[u8], want: Family| {
            for &code in codes {
                assert_eq!(family(Command::from(code)), Some(want), "command {code}");
            }
        };
        expect(&[101, 102, 103, 104, 105, 106, 107], Family::Query);
        expect(&[90, 91, 92, 95, 96, 97, 98, 241], Family::Monitor);
        expect(&[93, 94, 108, 243], Family::Admin);
        expect(&[60, 69, 70, 71, 75, 109], Family::Lookup);
        expect(
            &[
                59, 72, 73, 74, 76, 77, 78, 79, 81, 83, 84, 85, 86, 87, 88, 89, 240, 242,
            ],
            Family::Report,
        );
        expect(&[58, 61, 62, 63, 64, 65, 66, 67, 68], Family::Peer);
        for code in [0u8, 9, 11, 14, 16, 39, 80, 82, 100, 111, 200] {
            assert_eq!(family(Command::from(code)), None, "command {code}");
        }
    }
}
