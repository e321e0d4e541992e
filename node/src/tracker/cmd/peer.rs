//! Tracker ↔ tracker: the system files a tracker starts from (61–63), status and leader
//! election (58, 64–68).

use crate::proto::cluster;
use crate::proto::{Command, Status};
use crate::tracker::empty;

use super::Request;

pub(super) fn apply(req: Request<'_>) -> Result<Vec<u8>, Status> {
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
        Command::TrackerGetSysFilesStart => empty(body).and_then(|_| {
            let reg = tracker.registry();
            if reg.groups().is_empty() {
                return Err(Status::NotFound);
            }
            session.sys_files = Some(reg.sys_files());
            Ok(Vec::new())
        }),
        Command::TrackerGetOneSysFile => tracker.one_sys_file(session, body),
        Command::TrackerGetSysFilesEnd => empty(body).map(|_| {
            session.sys_files = None;
            Vec::new()
        }),
        // As V6.16.1: a tracker without groups has nothing to lead with.
        Command::TrackerGetStatus => empty(body).and_then(|_| {
            if tracker.registry().groups().is_empty() {
                Err(Status::NotFound)
            } else {
                Ok(tracker.status(now).encode())
            }
        }),
        Command::TrackerJoinLeader => tracker.join_leader(conn, session, body, now),
        Command::TrackerPingLeader => tracker.ping_leader(conn, session, body, now),
        Command::TrackerNotifyNextLeader => cluster::decode_host_port(body)
            .map_err(|e| e.status())
            .map(|next| {
                let mut rel = tracker.relationship();
                tracing::info!(%next, from = %conn.peer, "next leader announced");
                rel.next_leader = Some(next);
                rel.learn_peer(next);
                if rel.is_leader() && rel.me != Some(next) {
                    rel.set_leader(None);
                }
                Vec::new()
            }),
        Command::TrackerCommitNextLeader => cluster::decode_host_port(body)
            .map_err(|e| e.status())
            .and_then(|next| {
                let mut rel = tracker.relationship();
                if rel.next_leader != Some(next) {
                    return Err(Status::InvalidArgument);
                }
                rel.set_leader(Some(next));
                Ok(Vec::new())
            }),
        Command::TrackerNotifyReselectLeader => empty(body).and_then(|_| {
            let mut rel = tracker.relationship();
            if !rel.is_leader() {
                return Err(Status::NotSupported);
            }
            tracing::warn!(from = %conn.peer, "asked to step down as leader");
            rel.set_leader(None);
            Ok(Vec::new())
        }),
        _ => Err(Status::InvalidArgument),
    }
}
