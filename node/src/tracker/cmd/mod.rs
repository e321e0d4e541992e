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
use crate::proto::{Command, ProtoError, Status};
use crate::server::Connection;

/// What a command runs against: the tracker, the connection it came on and what that
/// connection remembers, the port's compat profile and the time it arrived.
pub(super) struct Context<'a> {
    pub tracker: &'a Tracker,
    pub conn: &'a Connection,
    pub session: &'a mut Session,
    pub compat: &'a Compat,
    pub now: u64,
}

/// A family of commands as a type: one value per request, decoded from the body by `parse`
/// (with `proto`'s decoders, touching no state) and run by `apply`.
pub(super) trait CommandFamily: Sized {
    /// Refuses a command the connection may not send, before its body is decoded.
    fn admit(_cmd: Command, _ctx: &Context<'_>) -> Result<(), Status> {
        Ok(())
    }

    /// The request `body` of `cmd`, one of this family's codes.
    fn parse(cmd: Command, body: &[u8]) -> Result<Self, Status>;

    /// Runs the request; the reply's body, or the status to answer with.
    async fn apply(self, ctx: &mut Context<'_>) -> Result<Vec<u8>, Status>;
}

/// A body decoded by `proto`, its error as the status FastDFS answers.
fn decoded<T>(r: Result<T, ProtoError>) -> Result<T, Status> {
    r.map_err(|e| e.status())
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

async fn run<F: CommandFamily>(
    cmd: Command,
    body: &[u8],
    ctx: &mut Context<'_>,
) -> Result<Vec<u8>, Status> {
    F::admit(cmd, ctx)?;
    F::parse(cmd, body)?.apply(ctx).await
}

/// Runs `cmd` in its family's type.
pub(super) async fn apply(
    family: Family,
    cmd: Command,
    body: &[u8],
    ctx: &mut Context<'_>,
) -> Result<Vec<u8>, Status> {
    match family {
        Family::Query => run::<query::Query>(cmd, body, ctx).await,
        Family::Monitor => run::<monitor::Monitor>(cmd, body, ctx).await,
        Family::Admin => run::<admin::Admin>(cmd, body, ctx).await,
        Family::Lookup => run::<lookup::Lookup>(cmd, body, ctx).await,
        Family::Report => run::<report::Report>(cmd, body, ctx).await,
        Family::Peer => run::<peer::Peer>(cmd, body, ctx).await,
    }
}

#[cfg(test)]
mod tests {
    use super::admin::Admin;
    use super::lookup::Lookup;
    use super::monitor::Monitor;
    use super::peer::Peer;
    use super::query::Query;
    use super::report::{Joined, Report};
    use super::*;
    use crate::proto::query::{FileRequest, GroupRequest};

    /// A family's `parse` decodes a body with no tracker at hand, and refuses one that is
    /// too short, too long or belongs to another family's command, before anything runs.
    #[test]
    fn each_family_decodes_its_bodies_and_refuses_bodies_that_lie() {
        use Command as C;
        let bad = Some(Status::InvalidArgument);
        let group = GroupRequest {
            group: "group1".into(),
        }
        .encode();
        assert_eq!(
            Query::parse(C::QueryStoreWithGroupOne, &group),
            Ok(Query::StoreOne {
                group: Some("group1".into())
            })
        );
        assert_eq!(
            Query::parse(C::QueryStoreWithoutGroupAll, &group).err(),
            bad
        );
        let file = FileRequest {
            group: "group1".into(),
            remote_filename: "M00/00/00/wKgAAmZ1a2uAAAAAAAAAAB5lc5E.jpg".into(),
        };
        assert_eq!(
            Query::parse(C::QueryFetchAll, &file.encode()),
            Ok(Query::FetchAll(file.clone()))
        );
        assert_eq!(
            Query::parse(C::QueryFetchAll, &file.encode()[..10]).err(),
            bad
        );

        let mut trunk = group.clone();
        trunk.extend_from_slice(b"10.0.0.1");
        assert_eq!(
            Admin::parse(C::ServerSetTrunkServer, &trunk),
            Ok(Admin::SetTrunkServer {
                group: "group1".into(),
                id: "10.0.0.1".into()
            })
        );
        assert_eq!(
            Admin::parse(C::ServerSetTrunkServer, &trunk[..5]).err(),
            bad
        );

        let mut by_addr = b"10.0.0.7".to_vec();
        by_addr.extend_from_slice(&23000u32.to_be_bytes());
        assert_eq!(
            Lookup::parse(C::StorageGetGroupName, &by_addr),
            Ok(Lookup::GroupName {
                ip: Some("10.0.0.7".parse().expect("an address")),
                port: 23000
            })
        );
        assert_eq!(
            Lookup::parse(C::StorageGetGroupName, &23000u32.to_be_bytes()),
            Ok(Lookup::GroupName {
                ip: None,
                port: 23000
            })
        );
        assert_eq!(
            Lookup::parse(C::StorageGetGroupName, &70000u32.to_be_bytes()).err(),
            bad
        );

        assert_eq!(
            Report::parse(C::StorageChangelogReq, &[]),
            Ok(Report::Changelog(None))
        );
        assert_eq!(
            Report::parse(C::StorageChangeStatus, &[7]),
            Ok(Report::Joined(Joined::ChangeStatus(7)))
        );
        assert_eq!(Report::parse(C::StorageChangeStatus, &[7, 7]).err(), bad);
        assert_eq!(
            Report::parse(C::StorageReportTrunkFree, &5u64.to_be_bytes()),
            Ok(Report::Joined(Joined::ReportTrunkFree(5)))
        );
        assert_eq!(Report::parse(C::StorageReportTrunkFid, &[0; 3]).err(), bad);

        assert_eq!(
            Peer::parse(C::TrackerCommitNextLeader, b"127.0.0.1:22122"),
            Ok(Peer::CommitNextLeader(
                "127.0.0.1:22122".parse().expect("an address")
            ))
        );
        assert_eq!(Peer::parse(C::TrackerGetStatus, &[0]).err(), bad);
        assert_eq!(
            Monitor::parse(C::ServerListAllGroups, &[]),
            Ok(Monitor::AllGroups)
        );
        assert_eq!(Monitor::parse(C::QueryFetchOne, &file.encode()).err(), bad);
    }

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
