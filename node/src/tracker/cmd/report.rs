//! A storage's reports on its report connection: JOIN (81), beats and disk, sync progress and
//! sources, status changes, trunk ids and space, the changelog (77) and an address change (78).

use crate::proto::cluster::{ReportStatus, SyncSrcReq};
use crate::proto::report::JoinRequest;
use crate::proto::{Command, Status};
use crate::tracker::resolve_trackers;

use super::Request;

pub(super) async fn apply(req: Request<'_>) -> Result<Vec<u8>, Status> {
    let Request {
        tracker,
        conn,
        session,
        cmd,
        body,
        now,
        ..
    } = req;
    match cmd {
        Command::StorageChangelogReq => tracker.changelog(session, body),
        Command::StorageReportIpChanged => tracker.ip_changed(conn, body, now),
        Command::StorageReportStatus => ReportStatus::decode(body)
            .map_err(|e| e.status())
            .and_then(|r| tracker.registry().report_status(&r.group, &r.brief))
            .map(|_| Vec::new()),
        Command::StorageSyncSrcReq => SyncSrcReq::decode(body)
            .map_err(|e| e.status())
            .and_then(|r| tracker.registry().sync_src_req(&r.group, &r.dest_id))
            .map(|s| s.map(|s| s.encode()).unwrap_or_default()),
        Command::StorageJoin => match JoinRequest::decode(body) {
            Err(e) => {
                tracing::warn!(peer = %conn.peer, error = %e, "malformed storage join");
                Err(e.status())
            }
            Ok(req) => {
                let trackers = resolve_trackers(&req.trackers);
                match tracker.bootstrap_before_join(conn.local, &trackers).await {
                    // As FastDFS: the storage tries again, and so does this tracker.
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot take the other trackers' state yet");
                        Err(Status::TryAgain)
                    }
                    Ok(()) => tracker.join(conn, session, &req, now),
                }
            }
        },
        Command::StorageBeat
        | Command::StorageReportDiskUsage
        | Command::StorageSyncReport
        | Command::StorageReportSyncBacklog
        | Command::StorageReportSyncProblems
        | Command::StorageSyncDestReq
        | Command::StorageSyncNotify
        | Command::StorageSyncDestQuery
        | Command::StorageChangeStatus
        | Command::StorageReplicaChg
        | Command::StorageFetchTrunkFid
        | Command::StorageReportTrunkFid
        | Command::StorageReportTrunkFree => match session.joined.clone() {
            None => Err(Status::AccessDenied),
            Some((group, id, _)) => tracker.storage_report(session, cmd, body, &group, &id, now),
        },
        _ => Err(Status::InvalidArgument),
    }
}
