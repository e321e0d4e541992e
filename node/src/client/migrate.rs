//! Retiring a group member safely, as a migration (or any removal) needs it: every file the
//! member took must be on the others first, judged from what every tracker lists.

use std::net::SocketAddr;
use std::time::Duration;

use crate::proto::Status;
use crate::proto::StorageStatus;
use crate::proto::monitor::StorageStat;
use crate::proto::report::BacklogRow;

use super::{Client, ClientConfig, ClientError};

/// Why `member`'s files cannot yet be relied on elsewhere in its group, if they cannot, from
/// one tracker's listing of the group (and, from this project's trackers, the members'
/// backlog reports):
/// - every other member must be ACTIVE, and have synced past the last change `member` took
///   (`last_synced_timestamp` ≥ its `last_source_update`, the trackers' own measure);
/// - and `member` must have reported no change of its own that a peer lacks.
pub fn not_held_elsewhere(
    member: &StorageStat,
    group: &[StorageStat],
    backlog: Option<&[BacklogRow]>,
) -> Option<String> {
    let others: Vec<&StorageStat> = group
        .iter()
        .filter(|s| s.id != member.id && s.status != StorageStatus::Deleted as u8)
        .collect();
    if others.is_empty() {
        return Some(format!("{} is the group's only member", member.id));
    }
    let took_until = member.stats.last_source_update;
    for other in others {
        if other.status != StorageStatus::Active as u8 {
            return Some(format!(
                "{} is {}, not ACTIVE",
                other.id,
                StorageStatus::from_byte(other.status).map_or("UNKNOWN", StorageStatus::name)
            ));
        }
        if took_until > 0 && other.stats.last_synced_timestamp < took_until {
            return Some(format!(
                "{} has synced up to {}, before {}'s last change at {took_until}",
                other.id, other.stats.last_synced_timestamp, member.id
            ));
        }
    }
    let unsent: u64 = backlog
        .into_iter()
        .flatten()
        .filter(|r| r.source_id == member.id)
        .map(|r| r.backlog.bytes)
        .sum();
    if unsent > 0 {
        return Some(format!(
            "{} still has {unsent} bytes of changes to push to its peers",
            member.id
        ));
    }
    None
}

/// Where the retirement of a member stands on one tracker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Standing {
    /// The tracker does not list it (any more).
    Gone,
    /// Still serving: stop it once the others hold its files.
    Running { held_elsewhere: Result<(), String> },
    /// Stopped; its files are (or are not yet) all on the others.
    Stopped { held_elsewhere: Result<(), String> },
}

/// How `id` of `group` stands on the tracker at `tracker`.
pub async fn standing(
    config: &ClientConfig,
    tracker: SocketAddr,
    group: &str,
    id: &str,
) -> Result<Standing, ClientError> {
    let one = Client::new(ClientConfig {
        trackers: vec![tracker.to_string()],
        ..config.clone()
    })
    .await?;
    let list = one.list_storages(group).await?;
    let Some(member) = list
        .iter()
        .find(|s| (s.id == id || s.ip == id) && s.status != StorageStatus::Deleted as u8)
    else {
        return Ok(Standing::Gone);
    };
    let backlog = one.sync_backlog(group).await.unwrap_or(None);
    let held = match not_held_elsewhere(member, &list, backlog.as_deref()) {
        None => Ok(()),
        Some(why) => Err(why),
    };
    let running = matches!(
        StorageStatus::from_byte(member.status),
        Some(StorageStatus::Active | StorageStatus::Online)
    );
    Ok(if running {
        Standing::Running {
            held_elsewhere: held,
        }
    } else {
        Standing::Stopped {
            held_elsewhere: held,
        }
    })
}

/// Why a retirement did not finish.
#[derive(Debug, thiserror::Error)]
pub enum RetireError {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("tracker {tracker}: {why}")]
    NotYet { tracker: SocketAddr, why: String },
    #[error("tracker {tracker} refused the deletion: {status}")]
    Refused { tracker: SocketAddr, status: Status },
}

/// Retires member `id` of `group`: waits up to `wait` until every tracker lists it stopped
/// with every file it took on the other members, then deletes it from every tracker. A
/// member still serving, or whose files have not all reached the others, is not deleted;
/// the error says which tracker sees what.
pub async fn retire(
    client: &Client,
    config: &ClientConfig,
    group: &str,
    id: &str,
    wait: Duration,
    mut progress: impl FnMut(&str),
) -> Result<(), RetireError> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let mut blocker = None;
        for &tracker in client.trackers() {
            let why = match standing(config, tracker, group, id).await? {
                Standing::Gone
                | Standing::Stopped {
                    held_elsewhere: Ok(()),
                } => continue,
                Standing::Running {
                    held_elsewhere: Ok(()),
                } => format!("{id} still serves; its files are on the others: stop it now"),
                Standing::Running {
                    held_elsewhere: Err(why),
                }
                | Standing::Stopped {
                    held_elsewhere: Err(why),
                } => why,
            };
            blocker = Some(RetireError::NotYet { tracker, why });
            break;
        }
        let Some(blocker) = blocker else { break };
        if tokio::time::Instant::now() >= deadline {
            return Err(blocker);
        }
        progress(&blocker.to_string());
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    for (tracker, outcome) in client.delete_storage(group, id).await {
        match outcome? {
            Status::Ok | Status::NotFound => {}
            status => return Err(RetireError::Refused { tracker, status }),
        }
    }
    Ok(())
}
