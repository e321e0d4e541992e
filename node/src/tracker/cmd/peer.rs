//! Tracker ↔ tracker: the system files a tracker starts from (61–63), status and leader
//! election (58, 64–68).

use std::net::SocketAddr;

use crate::proto::cluster::{
    self, GroupTrunkServer, JoinLeader, PingLeader, SysFilePiece, SysFileRequest,
};
use crate::proto::{Command, HEADER_LEN, Status};

use super::{CommandFamily, Context, decoded};
use crate::tracker::empty;

/// FastDFS's TRACKER_MAX_PACKAGE_SIZE less the header, the size and one byte: the most of a
/// system file one 63 reply carries.
const MAX_SYS_FILE_PIECE: usize = 8 * 1024 - HEADER_LEN - 8 - 1;

/// One request from another tracker, its body decoded.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Peer {
    /// 61: the system files as they stand now, for the 63s that follow.
    SysFilesStart,
    /// 63: a piece of one of them.
    OneSysFile(SysFileRequest),
    /// 62.
    SysFilesEnd,
    /// 64: leader or not, running time, restart interval.
    Status,
    /// 58: a follower joins this leader.
    JoinLeader(JoinLeader),
    /// 65: a joined follower's ping.
    PingLeader(PingLeader),
    /// 66: the tracker that is to lead next.
    NotifyNextLeader(SocketAddr),
    /// 67: it leads now.
    CommitNextLeader(SocketAddr),
    /// 68: this leader is asked to step down.
    NotifyReselect,
}

impl CommandFamily for Peer {
    fn parse(cmd: Command, body: &[u8]) -> Result<Self, Status> {
        Ok(match cmd {
            Command::TrackerGetSysFilesStart => empty(body).map(|_| Peer::SysFilesStart)?,
            Command::TrackerGetOneSysFile => {
                Peer::OneSysFile(SysFileRequest::decode(body).map_err(|_| Status::InvalidArgument)?)
            }
            Command::TrackerGetSysFilesEnd => empty(body).map(|_| Peer::SysFilesEnd)?,
            Command::TrackerGetStatus => empty(body).map(|_| Peer::Status)?,
            Command::TrackerJoinLeader => Peer::JoinLeader(decoded(JoinLeader::decode(body))?),
            Command::TrackerPingLeader => Peer::PingLeader(decoded(PingLeader::decode(body))?),
            Command::TrackerNotifyNextLeader => {
                Peer::NotifyNextLeader(decoded(cluster::decode_host_port(body))?)
            }
            Command::TrackerCommitNextLeader => {
                Peer::CommitNextLeader(decoded(cluster::decode_host_port(body))?)
            }
            Command::TrackerNotifyReselectLeader => empty(body).map(|_| Peer::NotifyReselect)?,
            _ => return Err(Status::InvalidArgument),
        })
    }

    async fn apply(self, ctx: &mut Context<'_>) -> Result<Vec<u8>, Status> {
        let tracker = ctx.tracker;
        let session = &mut *ctx.session;
        match self {
            Peer::SysFilesStart => {
                let reg = tracker.registry();
                if reg.groups().is_empty() {
                    return Err(Status::NotFound);
                }
                session.sys_files = Some(reg.sys_files());
            }
            Peer::OneSysFile(req) => return one_sys_file(ctx, &req),
            Peer::SysFilesEnd => session.sys_files = None,
            // As V6.16.1: a tracker without groups has nothing to lead with.
            Peer::Status => {
                if tracker.registry().groups().is_empty() {
                    return Err(Status::NotFound);
                }
                return Ok(tracker.status(ctx.now).encode());
            }
            Peer::JoinLeader(j) => {
                let mut rel = tracker.relationship();
                if !rel.is_leader() {
                    return Err(Status::NotSupported);
                }
                if session.joined_leader {
                    return Err(Status::AlreadyExists);
                }
                let addr = SocketAddr::new(ctx.conn.peer.ip(), j.port as u16);
                rel.learn_peer(addr);
                if let Some(p) = rel.peers.get_mut(&addr) {
                    p.up_time = j.up_time;
                    p.version = j.version;
                    p.last_heartbeat = ctx.now;
                }
                tracing::info!(follower = %addr, "tracker joined as follower");
                session.joined_leader = true;
                session.joined_as = Some(addr);
                drop(rel);
                // The follower may have led until now and named other trunk servers to
                // storages that still believe it: every storage hears this leader's again.
                tracker.registry().announce_trunk_servers_again();
            }
            Peer::PingLeader(ping) => return ping_leader(ctx, &ping),
            Peer::NotifyNextLeader(next) => {
                let mut rel = tracker.relationship();
                tracing::info!(%next, from = %ctx.conn.peer, "next leader announced");
                rel.next_leader = Some(next);
                rel.learn_peer(next);
                if rel.is_leader() && rel.me != Some(next) {
                    rel.set_leader(None);
                }
            }
            Peer::CommitNextLeader(next) => {
                let mut rel = tracker.relationship();
                if rel.next_leader != Some(next) {
                    return Err(Status::InvalidArgument);
                }
                rel.set_leader(Some(next));
            }
            Peer::NotifyReselect => {
                let mut rel = tracker.relationship();
                if !rel.is_leader() {
                    return Err(Status::NotSupported);
                }
                tracing::warn!(from = %ctx.conn.peer, "asked to step down as leader");
                rel.set_leader(None);
            }
        }
        Ok(Vec::new())
    }
}

/// 63: a piece of one system file (index 0–3) from an offset: the file's size (u64), then at
/// most what FastDFS's 8 KiB receive buffer holds. Read from the copy 61 took, else as the
/// files stand now.
fn one_sys_file(ctx: &Context<'_>, req: &SysFileRequest) -> Result<Vec<u8>, Status> {
    let fresh;
    let files = match &ctx.session.sys_files {
        Some(files) => files,
        None => {
            fresh = ctx.tracker.registry().sys_files();
            &fresh
        }
    };
    let file = files
        .get(usize::from(req.index))
        .ok_or(Status::InvalidArgument)?;
    let offset = usize::try_from(req.offset)
        .ok()
        .filter(|&o| o <= file.len())
        .ok_or(Status::InvalidArgument)?;
    Ok(SysFilePiece {
        file_size: file.len() as u64,
        data: file[offset..(offset + MAX_SYS_FILE_PIECE).min(file.len())].to_vec(),
    }
    .encode())
}

/// 65: a joined follower's ping; the answer names every group's trunk server, so a follower
/// that met a group late still learns it.
fn ping_leader(ctx: &Context<'_>, ping: &PingLeader) -> Result<Vec<u8>, Status> {
    let session = &*ctx.session;
    let Some(addr) = session.joined_as.filter(|_| session.joined_leader) else {
        return Err(Status::InvalidArgument);
    };
    let mut rel = ctx.tracker.relationship();
    if !rel.is_leader() {
        return Err(Status::NotSupported);
    }
    if let Some(p) = rel.peers.get_mut(&addr) {
        p.last_heartbeat = ctx.now;
        p.connections = ping.connections;
    }
    drop(rel);
    let reg = ctx.tracker.registry();
    let chosen: Vec<GroupTrunkServer> = reg
        .groups()
        .values()
        .filter_map(|g| {
            Some(GroupTrunkServer {
                group: g.name.clone(),
                server_id: g.trunk.server.clone()?,
            })
        })
        .collect();
    Ok(GroupTrunkServer::encode_all(&chosen))
}
