//! The storage's short calls to its trackers, apart from the report sessions (join, beats,
//! reports) that `session` keeps: whom a peer copies from (86), a member's new status (76), how
//! the trackers hold this storage (71) and the group's members (92). Each call goes to every
//! tracker, on its report session's connection when one stands and on a connection of its
//! own otherwise, with the bodies `proto` defines.

use std::net::SocketAddr;

use crate::proto::cluster::{GroupAndHost, ReportStatus, SyncSrcReq};
use crate::proto::fields::Reader;
use crate::proto::monitor::{ListStorageRequest, StorageStat};
use crate::proto::report::{StorageBrief, SyncSource};
use crate::proto::{Command, ProtoError, Status, StorageStatus};
use crate::storage::StorageNode;

/// The trackers a call goes to, and the storage it goes from.
pub(in crate::storage) struct Trackers<'a> {
    node: &'a StorageNode,
    addrs: Vec<SocketAddr>,
}

impl<'a> Trackers<'a> {
    /// The trackers this storage reports to now.
    pub(in crate::storage) fn of(node: &'a StorageNode) -> Self {
        Trackers {
            addrs: node.tracker_addrs(),
            node,
        }
    }

    /// Given trackers (a recovery asks before any report session stands).
    pub(in crate::storage) fn at(node: &'a StorageNode, addrs: &[SocketAddr]) -> Self {
        Trackers {
            node,
            addrs: addrs.to_vec(),
        }
    }

    /// One call to each tracker in turn: the status and body of each that answered.
    async fn each(&self, cmd: Command, body: &[u8], max_reply: u64) -> Vec<Answer> {
        let mut out = Vec::with_capacity(self.addrs.len());
        for &tracker in &self.addrs {
            let sessions = &self.node.tracker_sessions;
            let reply = match sessions.call(tracker, cmd, body, max_reply).await {
                Some(on_session) => on_session,
                None => self.call_alone(tracker, cmd, body, max_reply).await,
            };
            if let Some((status, body)) = reply {
                out.push(Answer {
                    tracker,
                    status,
                    body,
                });
            }
        }
        out
    }

    /// A call on a connection of its own (no report session with `tracker` stands).
    async fn call_alone(
        &self,
        tracker: SocketAddr,
        cmd: Command,
        body: &[u8],
        max_reply: u64,
    ) -> Option<(Status, Vec<u8>)> {
        let Ok(mut conn) = self.node.connect(tracker).await else {
            tracing::debug!(%tracker, ?cmd, "tracker unreachable");
            return None;
        };
        let reply = conn.call(cmd, body, max_reply).await;
        conn.quit().await;
        reply.ok()
    }

    /// SYNC_SRC_REQ (86): who copies the old files to `dest_id`. A tracker that has not yet
    /// heard of the source (its SYNC_NOTIFY may still be on the way) answers empty, so any
    /// named source wins; `None` when no tracker answered.
    pub(in crate::storage) async fn sync_source(
        &self,
        group: &str,
        dest_id: &str,
    ) -> Option<SyncSource> {
        let body = SyncSrcReq {
            group: group.to_owned(),
            dest_id: dest_id.to_owned(),
        }
        .encode();
        let mut answered = None;
        for a in self.each(Command::StorageSyncSrcReq, &body, 1024).await {
            if a.status != Status::Ok {
                continue;
            }
            if a.body.is_empty() {
                answered.get_or_insert(SyncSource::default());
            } else if let Ok(src) = SyncSource::decode(&a.body) {
                return Some(src);
            }
        }
        answered
    }

    /// REPORT_STATUS (76): a member's new status; how many trackers took it.
    pub(in crate::storage) async fn report_status(
        &self,
        group: &str,
        brief: StorageBrief,
    ) -> usize {
        let body = ReportStatus {
            group: group.to_owned(),
            brief,
        }
        .encode();
        self.each(Command::StorageReportStatus, &body, 1024)
            .await
            .iter()
            .filter(|a| a.status == Status::Ok)
            .count()
    }

    /// STORAGE_GET_STATUS (71): the status each answering tracker holds for the storage at
    /// `ip:port`; `None` where a tracker does not know it.
    pub(in crate::storage) async fn storage_status(
        &self,
        group: &str,
        ip: &str,
        port: u16,
    ) -> Vec<(SocketAddr, Option<StorageStatus>)> {
        let body = GroupAndHost {
            group: group.to_owned(),
            ip: ip.to_owned(),
            port,
        }
        .encode();
        self.each(Command::StorageGetStatus, &body, 1024)
            .await
            .into_iter()
            .map(|a| (a.tracker, status_in_reply(a.status, &a.body)))
            .collect()
    }

    /// SERVER_LIST_STORAGE (92): the members of `group` as each answering tracker lists them.
    pub(in crate::storage) async fn list_storages(
        &self,
        group: &str,
    ) -> Vec<(SocketAddr, Result<Vec<StorageStat>, ProtoError>)> {
        let body = ListStorageRequest {
            group: group.to_owned(),
            storage_id: None,
        }
        .encode();
        self.each(Command::ServerListStorage, &body, 1 << 20)
            .await
            .into_iter()
            .filter(|a| a.status == Status::Ok)
            .map(|a| (a.tracker, StorageStat::decode_all(&a.body)))
            .collect()
    }
}

/// What one tracker answered.
struct Answer {
    tracker: SocketAddr,
    status: Status,
    body: Vec<u8>,
}

/// The status a STORAGE_GET_STATUS (71) reply gives; `None` for a refusal or a reply that
/// does not decode.
pub(super) fn status_in_reply(status: Status, body: &[u8]) -> Option<StorageStatus> {
    if status != Status::Ok {
        return None;
    }
    let mut r = Reader::new(body, "storage status");
    let brief = StorageBrief::decode_from(&mut r).ok()?;
    StorageStatus::from_byte(brief.status)
}
