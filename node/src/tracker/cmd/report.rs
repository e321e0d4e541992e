//! A storage's reports on its report connection: JOIN (81), beats and disk, sync progress and
//! sources, status changes, trunk ids and space, the changelog (77) and an address change (78).

use crate::proto::cluster::{self, IpChangedReport, ReportStatus, SyncSrcReq};
use crate::proto::report::{
    BeatRequest, DiskUsage, HeartbeatReply, JoinRequest, StorageBrief, SyncBacklogReport,
    SyncProblemReport, SyncReport, SyncSource,
};
use crate::proto::{Command, Status};
use crate::tracker::{Session, Tracker, resolve_trackers};

use super::{CommandFamily, Context, decoded};
use crate::tracker::empty;

/// One report, its body decoded.
#[derive(Debug, PartialEq)]
pub(super) enum Report {
    /// 77: the storage changelog from where a storage left off: the joined one (no body) or
    /// the one the body names.
    Changelog(Option<SyncSrcReq>),
    /// 78: a storage known by its IP address moved to the connection's.
    IpChanged(IpChangedReport),
    /// 76: a storage's status, as another tracker or tool reports it.
    Status(ReportStatus),
    /// 86: the member that copies the group's files to the named one.
    SyncSource(SyncSrcReq),
    /// 81.
    Join(JoinRequest),
    /// What only a joined storage reports about itself.
    Joined(Joined),
}

/// The reports of a joined storage (the connection's JOIN names it).
#[derive(Debug, PartialEq)]
pub(super) enum Joined {
    /// 83.
    Beat(Box<BeatRequest>),
    /// 84.
    DiskUsage(DiskUsage),
    /// 89.
    SyncReport(SyncReport),
    /// 240.
    SyncBacklog(SyncBacklogReport),
    /// 242.
    SyncProblems(SyncProblemReport),
    /// 87: the member that copies the group's files to it, chosen now if none is.
    SyncDestReq,
    /// 88: the source it was told to copy from.
    SyncNotify(SyncSource),
    /// 79: the member that copies the group's files to it, as already chosen.
    SyncDestQuery,
    /// 59: its own new status.
    ChangeStatus(u8),
    /// 85: the statuses it knows of its group's members.
    ReplicaChange(Vec<StorageBrief>),
    /// 72: the group's last trunk file id.
    FetchTrunkFileId,
    /// 73.
    ReportTrunkFileId(u32),
    /// 74: the trunk server's free space, in MB.
    ReportTrunkFree(u64),
}

fn needs_join(cmd: Command) -> bool {
    matches!(
        cmd,
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
            | Command::StorageReportTrunkFree
    )
}

impl CommandFamily for Report {
    /// A storage reports about itself only once its JOIN went through.
    fn admit(cmd: Command, ctx: &Context<'_>) -> Result<(), Status> {
        if needs_join(cmd) && ctx.session.joined.is_none() {
            Err(Status::AccessDenied)
        } else {
            Ok(())
        }
    }

    fn parse(cmd: Command, body: &[u8]) -> Result<Self, Status> {
        let joined = |j| Ok(Report::Joined(j));
        match cmd {
            Command::StorageChangelogReq if body.is_empty() => Ok(Report::Changelog(None)),
            Command::StorageChangelogReq => {
                Ok(Report::Changelog(Some(decoded(SyncSrcReq::decode(body))?)))
            }
            Command::StorageReportIpChanged => {
                Ok(Report::IpChanged(decoded(IpChangedReport::decode(body))?))
            }
            Command::StorageReportStatus => {
                Ok(Report::Status(decoded(ReportStatus::decode(body))?))
            }
            Command::StorageSyncSrcReq => {
                Ok(Report::SyncSource(decoded(SyncSrcReq::decode(body))?))
            }
            Command::StorageJoin => Ok(Report::Join(decoded(JoinRequest::decode(body))?)),
            Command::StorageBeat => {
                joined(Joined::Beat(Box::new(decoded(BeatRequest::decode(body))?)))
            }
            Command::StorageReportDiskUsage => {
                joined(Joined::DiskUsage(decoded(DiskUsage::decode(body))?))
            }
            Command::StorageSyncReport => {
                joined(Joined::SyncReport(decoded(SyncReport::decode(body))?))
            }
            Command::StorageReportSyncBacklog => joined(Joined::SyncBacklog(decoded(
                SyncBacklogReport::decode(body),
            )?)),
            Command::StorageReportSyncProblems => joined(Joined::SyncProblems(decoded(
                SyncProblemReport::decode(body),
            )?)),
            Command::StorageSyncDestReq => empty(body).and_then(|_| joined(Joined::SyncDestReq)),
            Command::StorageSyncNotify => {
                joined(Joined::SyncNotify(decoded(SyncSource::decode(body))?))
            }
            Command::StorageSyncDestQuery => {
                empty(body).and_then(|_| joined(Joined::SyncDestQuery))
            }
            Command::StorageChangeStatus => match body {
                [status] => joined(Joined::ChangeStatus(*status)),
                _ => Err(Status::InvalidArgument),
            },
            Command::StorageReplicaChg => joined(Joined::ReplicaChange(decoded(
                cluster::decode_briefs(body),
            )?)),
            Command::StorageFetchTrunkFid => {
                empty(body).and_then(|_| joined(Joined::FetchTrunkFileId))
            }
            Command::StorageReportTrunkFid => {
                let fid = <[u8; 4]>::try_from(body).map_err(|_| Status::InvalidArgument)?;
                joined(Joined::ReportTrunkFileId(u32::from_be_bytes(fid)))
            }
            Command::StorageReportTrunkFree => {
                let mb = <[u8; 8]>::try_from(body).map_err(|_| Status::InvalidArgument)?;
                joined(Joined::ReportTrunkFree(u64::from_be_bytes(mb)))
            }
            _ => Err(Status::InvalidArgument),
        }
    }

    async fn apply(self, ctx: &mut Context<'_>) -> Result<Vec<u8>, Status> {
        let tracker = ctx.tracker;
        match self {
            Report::Changelog(named) => {
                let (group, id) = match (&ctx.session.joined, named) {
                    (Some((group, id, _)), None) => (group.clone(), id.clone()),
                    (None, Some(r)) => (r.group, r.dest_id),
                    _ => return Err(Status::InvalidArgument),
                };
                tracker.registry().changelog_chunk(&group, &id)
            }
            Report::IpChanged(r) => {
                if tracker.config.use_storage_id {
                    return Err(Status::NotSupported);
                }
                let peer_ip = ctx.conn.peer.ip().to_string();
                tracker
                    .registry()
                    .ip_changed(&r.group, &r.old_ip, &r.new_ip, &peer_ip, ctx.now)?;
                Ok(Vec::new())
            }
            Report::Status(r) => {
                tracker.registry().report_status(&r.group, &r.brief)?;
                Ok(Vec::new())
            }
            Report::SyncSource(r) => Ok(tracker
                .registry()
                .sync_src_req(&r.group, &r.dest_id)?
                .map(|s| s.encode())
                .unwrap_or_default()),
            Report::Join(req) => {
                let trackers = resolve_trackers(&req.trackers).await;
                match tracker
                    .bootstrap_before_join(ctx.conn.local, &trackers)
                    .await
                {
                    // As FastDFS: the storage tries again, and so does this tracker.
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot take the other trackers' state yet");
                        Err(Status::TryAgain)
                    }
                    Ok(()) => join(ctx, &req, &trackers),
                }
            }
            Report::Joined(report) => {
                let Some((group, id, _)) = ctx.session.joined.clone() else {
                    return Err(Status::AccessDenied);
                };
                joined_report(tracker, ctx.session, report, &group, &id, ctx.now)
            }
        }
    }
}

/// STORAGE_JOIN (81), once this tracker has what other trackers know.
fn join(
    ctx: &mut Context<'_>,
    req: &JoinRequest,
    trackers: &[std::net::SocketAddr],
) -> Result<Vec<u8>, Status> {
    let (tracker, conn) = (ctx.tracker, ctx.conn);
    let peer_ip = conn.peer.ip().to_string();
    let attempt = || {
        let mut reg = tracker.registry();
        reg.join(&peer_ip, req, ctx.now).map(|(id, reply)| {
            let s = reg.groups()[&req.group].members[&id].session;
            (id, reply, s)
        })
    };
    match attempt() {
        Ok((id, reply, s)) => {
            tracing::info!(group = %req.group, storage = %id, status = reply.status, "storage joined");
            tracker.learn_from_join(conn, trackers);
            tracker.end_session(ctx.session);
            ctx.session.joined = Some((req.group.clone(), id, s));
            ctx.session.members_sent = None;
            Ok(reply.encode())
        }
        Err(status) => {
            tracing::warn!(peer = %conn.peer, group = %req.group,
                storage_id = %req.storage_id, %status, "storage join refused");
            Err(status)
        }
    }
}

fn joined_report(
    tracker: &Tracker,
    session: &mut Session,
    report: Joined,
    group: &str,
    id: &str,
    now: u64,
) -> Result<Vec<u8>, Status> {
    match report {
        Joined::Beat(beat) => {
            tracker.registry().beat(group, id, beat.stats, now)?;
            return Ok(heartbeat_reply(tracker, session));
        }
        Joined::DiskUsage(usage) => {
            tracker.registry().disk_usage(group, id, usage.paths, now)?;
            return Ok(heartbeat_reply(tracker, session));
        }
        Joined::SyncReport(report) => {
            tracker
                .registry()
                .sync_report(group, id, &report.entries, now)?;
            return Ok(heartbeat_reply(tracker, session));
        }
        Joined::SyncBacklog(report) => {
            tracker
                .registry()
                .sync_backlog(group, id, report.entries, now)?;
        }
        Joined::SyncProblems(report) => {
            tracker
                .registry()
                .sync_problems(group, id, report.entries)?;
        }
        Joined::SyncDestReq => {
            return Ok(tracker
                .registry()
                .sync_dest_req(group, id, now)?
                .map(|s| s.encode())
                .unwrap_or_default());
        }
        Joined::SyncNotify(src) => tracker.registry().sync_notify(group, id, &src)?,
        Joined::ChangeStatus(status) => tracker.registry().change_status(group, id, status)?,
        Joined::ReplicaChange(briefs) => {
            // The leader is the reference; only followers take a storage's word.
            if !tracker.is_leader() {
                let mut reg = tracker.registry();
                for b in &briefs {
                    if let Err(status) = reg.report_status(group, b) {
                        tracing::warn!(group, storage = %b.id, %status, "replica change entry ignored");
                    }
                }
            }
        }
        Joined::FetchTrunkFileId => {
            // Only the leader follows trunk servers.
            if !tracker.is_leader() {
                return Err(Status::NotSupported);
            }
            let id = tracker.registry().trunk_file_id(group)?;
            return Ok(id.to_be_bytes().to_vec());
        }
        Joined::ReportTrunkFileId(fid) => {
            tracker.registry().report_trunk_file_id(group, id, fid)?;
        }
        Joined::ReportTrunkFree(mb) => tracker.registry().report_trunk_free(group, id, mb)?,
        Joined::SyncDestQuery => {
            let reg = tracker.registry();
            let m = reg
                .groups()
                .get(group)
                .and_then(|g| g.members.get(id))
                .ok_or(Status::NotFound)?;
            return Ok(if m.src_id.is_empty() {
                Vec::new()
            } else {
                SyncSource {
                    src_id: m.src_id.clone(),
                    until: m.sync_until,
                }
                .encode()
            });
        }
    }
    Ok(Vec::new())
}

/// The reply to a beat, disk or sync report. Only the leader pushes changes (the leader's
/// address once per leader change, the member list on every change); a follower answers a
/// bare flags byte 0.
fn heartbeat_reply(tracker: &Tracker, session: &mut Session) -> Vec<u8> {
    let mut reply = HeartbeatReply::default();
    let (is_leader, epoch, me) = {
        let rel = tracker.relationship();
        (rel.is_leader(), rel.leader_epoch, rel.me)
    };
    if !is_leader {
        return reply.encode();
    }
    if session.leader_epoch_sent != Some(epoch) {
        let (ip, port) = me
            .map(|a| (a.ip().to_string(), u32::from(a.port())))
            .unwrap_or_default();
        reply.leader = Some(StorageBrief {
            status: 0,
            port,
            id: ip.clone(),
            ip,
        });
        session.leader_epoch_sent = Some(epoch);
    }
    if let Some((group, _, _)) = &session.joined {
        let mut reg = tracker.registry();
        reg.elect_trunk_server(group);
        if let Some(g) = reg.groups().get(group) {
            if session.members_sent != Some(g.changes) {
                reply.members = Some(g.briefs());
                session.members_sent = Some(g.changes);
            }
            // A storage learns the trunk server once, and again on every change.
            if session.trunk_sent != g.trunk.changes {
                reply.trunk = Some(g.trunk_brief());
                session.trunk_sent = g.trunk.changes;
            }
        }
    }
    reply.encode()
}
