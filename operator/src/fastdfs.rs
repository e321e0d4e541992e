//! What the operator asks the trackers over the FastDFS protocol: group and storage lists
//! (commands 91 and 92), the leader (95), and removing a storage (93).
//!
//! Each tracker is asked on its own, because trackers are peers that can disagree: a
//! scale-down needs every tracker to see the remaining storages ACTIVE, and a removed storage
//! must be deleted from every tracker.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use fdfs_node::client::{Client, ClientConfig, ClientError, conn};
use fdfs_node::proto::monitor::{GroupStat, StorageStat};
use fdfs_node::proto::report::BacklogRow;
use fdfs_node::proto::{Command, Status};

/// How long the operator waits for a tracker to accept a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long the operator waits for a tracker's answer.
const NETWORK_TIMEOUT: Duration = Duration::from_secs(5);
/// Width of the group name field of a DELETE_STORAGE request.
const GROUP_FIELD: usize = 16;
/// Longest storage id a DELETE_STORAGE request carries (a 16-byte field with its NUL).
const STORAGE_ID_MAX: usize = 15;

/// Where the trackers of a cluster are, as `host:port` names that may each resolve to several
/// trackers.
pub async fn resolve(endpoints: &[String]) -> Result<Vec<SocketAddr>, ClientError> {
    let mut addrs = Vec::new();
    for endpoint in endpoints {
        for addr in conn::resolve(endpoint).await? {
            if !addrs.contains(&addr) {
                addrs.push(addr);
            }
        }
    }
    addrs.sort();
    Ok(addrs)
}

async fn client(tracker: SocketAddr) -> Result<Client, ClientError> {
    Client::new(ClientConfig {
        trackers: vec![tracker.to_string()],
        connect_timeout: CONNECT_TIMEOUT,
        network_timeout: NETWORK_TIMEOUT,
        write_profile: Default::default(),
    })
    .await
}

/// What one tracker knows.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrackerView {
    /// Every group, from command 91.
    pub groups: Vec<GroupStat>,
    /// The storages of the groups asked for, from command 92.
    pub storages: BTreeMap<String, Vec<StorageStat>>,
    /// The leader as this tracker names it (command 95), when it knows one.
    pub leader: Option<String>,
    /// What the members of those groups reported each other has yet to receive (command
    /// 241); none from a FastDFS tracker.
    pub backlog: BTreeMap<String, Vec<BacklogRow>>,
}

/// Asks one tracker for its groups, the storages of `groups` (all groups when `None`) and its
/// leader.
pub async fn query(
    tracker: SocketAddr,
    groups: Option<&[&str]>,
) -> Result<TrackerView, ClientError> {
    let client = client(tracker).await?;
    let all = client.list_groups().await?;
    let wanted: Vec<String> = match groups {
        Some(names) => names.iter().map(|n| (*n).to_owned()).collect(),
        None => all.iter().map(|g| g.group.clone()).collect(),
    };
    let mut storages = BTreeMap::new();
    let mut backlog = BTreeMap::new();
    for group in wanted {
        if !all.iter().any(|g| g.group == group) {
            // Not known yet: no storage of the group has joined this tracker.
            storages.insert(group, Vec::new());
            continue;
        }
        let list = client.list_storages(&group).await?;
        // Informational only: a tracker that cannot say leaves the figures unset.
        if let Ok(Some(rows)) = client.sync_backlog(&group).await {
            backlog.insert(group.clone(), rows);
        }
        storages.insert(group, list);
    }
    let leader = match client.tracker_call(Command::ServerGetLeader, &[]).await {
        Ok((Status::Ok, body)) => String::from_utf8(body).ok().filter(|l| !l.is_empty()),
        _ => None,
    };
    Ok(TrackerView {
        groups: all,
        storages,
        leader,
        backlog,
    })
}

/// Body of DELETE_STORAGE (93): the group name in 16 bytes, then the storage id.
pub fn delete_storage_body(group: &str, storage_id: &str) -> Vec<u8> {
    let mut body = vec![0u8; GROUP_FIELD];
    let name = group.as_bytes();
    body[..name.len().min(GROUP_FIELD)].copy_from_slice(&name[..name.len().min(GROUP_FIELD)]);
    let id = storage_id.as_bytes();
    body.extend_from_slice(&id[..id.len().min(STORAGE_ID_MAX)]);
    body
}

/// How a tracker answered DELETE_STORAGE.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeleteOutcome {
    /// The tracker marked the storage DELETED.
    Deleted,
    /// The tracker had no such storage, or had deleted it already (ENOENT, EALREADY).
    AlreadyGone,
    /// The storage is still ONLINE, ACTIVE or RECOVERY there (EBUSY): it has not stopped yet,
    /// or the tracker has not noticed. Ask again later.
    StillRunning,
    /// Any other answer.
    Refused(Status),
}

impl DeleteOutcome {
    /// Reads the status byte of a DELETE_STORAGE reply.
    pub fn from_status(status: Status) -> Self {
        match status {
            Status::Ok => Self::Deleted,
            Status::NotFound | Status::AlreadyDone => Self::AlreadyGone,
            Status::Busy => Self::StillRunning,
            other => Self::Refused(other),
        }
    }

    /// Whether the tracker no longer counts the storage as a member.
    pub fn is_done(self) -> bool {
        matches!(self, Self::Deleted | Self::AlreadyGone)
    }
}

/// Removes a storage from one tracker (FastDFS command 93, as `fdfs_monitor delete` sends it
/// to every tracker).
pub async fn delete_storage(
    tracker: SocketAddr,
    group: &str,
    storage_id: &str,
) -> Result<DeleteOutcome, ClientError> {
    let client = client(tracker).await?;
    let (status, _) = client
        .tracker_call(
            Command::ServerDeleteStorage,
            &delete_storage_body(group, storage_id),
        )
        .await?;
    Ok(DeleteOutcome::from_status(status))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delete_storage_body_is_group16_then_id() {
        let body = delete_storage_body("group1", "7218849");
        assert_eq!(body.len(), 16 + 7);
        assert_eq!(&body[..6], b"group1");
        assert!(body[6..16].iter().all(|b| *b == 0));
        assert_eq!(&body[16..], b"7218849");
        let long = delete_storage_body("abcdefghijklmnop", "1234567890123456789");
        assert_eq!(long.len(), 16 + 15);
    }

    #[test]
    fn delete_outcomes_follow_fastdfs_statuses() {
        assert_eq!(
            DeleteOutcome::from_status(Status::Ok),
            DeleteOutcome::Deleted
        );
        assert!(DeleteOutcome::from_status(Status::NotFound).is_done());
        assert!(DeleteOutcome::from_status(Status::AlreadyDone).is_done());
        assert_eq!(
            DeleteOutcome::from_status(Status::Busy),
            DeleteOutcome::StillRunning
        );
        assert_eq!(
            DeleteOutcome::from_status(Status::InvalidArgument),
            DeleteOutcome::Refused(Status::InvalidArgument)
        );
        assert!(!DeleteOutcome::StillRunning.is_done());
    }
}
