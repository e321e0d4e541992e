//! Retiring a group member safely, as a migration (or any removal) needs it: every file the
//! member took must be on the others first, judged from what every tracker lists.

use std::net::SocketAddr;
use std::time::Duration;

use crate::proto::Status;
use crate::proto::StorageStatus;
use crate::proto::monitor::StorageStat;
use crate::proto::report::BacklogRow;

use super::{Client, ClientConfig, ClientError};

/// A record of a member no longer there: deleted, or left behind at an address the member
/// moved away from (IP identities).
fn left(s: &StorageStat) -> bool {
    s.status == StorageStatus::Deleted as u8 || s.status == StorageStatus::IpChanged as u8
}

/// Why `member`'s files cannot yet be relied on elsewhere in its group, if they cannot, from
/// one tracker's listing of the group (and, from this project's trackers, the members'
/// backlog reports):
/// - every other member must be ACTIVE, and have synced past the last change `member` took
///   (`last_synced_timestamp` ≥ its `last_source_update`, the trackers' own measure);
/// - and `member`, where it reports backlogs, must have said of every other member that it
///   lacks none of its changes, in a report made since its last change and since that
///   member came up.
///
/// A FastDFS storage (no backlog reports) that has stopped cannot be judged by the
/// timestamps once it has more than one other member: trackers count only ACTIVE sources in
/// what a member has synced, so the others' timestamps move on without it. It is judged
/// while it runs; `vouched` is its last change when it was last found held elsewhere
/// running, and holds while it has taken nothing since.
pub fn not_held_elsewhere(
    member: &StorageStat,
    group: &[StorageStat],
    backlog: Option<&[BacklogRow]>,
    vouched: Option<u64>,
) -> Option<String> {
    let others: Vec<&StorageStat> = group
        .iter()
        .filter(|s| s.id != member.id && !left(s))
        .collect();
    if others.is_empty() {
        return Some(format!("{} is the group's only member", member.id));
    }
    let took_until = member.stats.last_source_update;
    // What the member itself last said each other member lacks (this project's storages
    // report it; FastDFS storages do not, and their trackers list none).
    let reported: Vec<&BacklogRow> = backlog
        .into_iter()
        .flatten()
        .filter(|r| r.source_id == member.id)
        .collect();
    for other in &others {
        if other.status != StorageStatus::Active as u8 {
            return Some(format!(
                "{} is {}, not ACTIVE",
                other.id,
                StorageStatus::from_byte(other.status).map_or("UNKNOWN", StorageStatus::name)
            ));
        }
    }
    if took_until == 0 {
        // It never took a change from a client (the storage keeps the time of its last one
        // across restarts): nothing of its own to be elsewhere.
        return None;
    }
    if reported.is_empty() {
        let running = matches!(
            StorageStatus::from_byte(member.status),
            Some(StorageStatus::Active | StorageStatus::Online)
        );
        if !running && others.len() > 1 {
            if vouched == Some(took_until) {
                return None;
            }
            return Some(format!(
                "{} has stopped: with {} other members the trackers no longer show what \
                 came from it; it is judged while it runs (fenced, before it is stopped)",
                member.id,
                others.len()
            ));
        }
        // A FastDFS storage: the trackers' own measure, in whole seconds.
        return others.iter().find_map(|other| {
            (other.stats.last_synced_timestamp < took_until).then(|| {
                format!(
                    "{} has synced up to {}, before {}'s last change at {took_until}",
                    other.id, other.stats.last_synced_timestamp, member.id
                )
            })
        });
    }
    // A storage of this project says itself what each other member lacks, once its pushes
    // were acknowledged: that is the proof, for a report made since its last change (a
    // stopping storage reports last, after its last pushes). The timestamps count whole
    // seconds and a stopped member's peers no longer report progress from it, so they are
    // not what decides here.
    let unsent: u64 = reported.iter().map(|r| r.backlog.bytes).sum();
    if unsent > 0 {
        return Some(format!(
            "{} still has {unsent} bytes of changes to push to its peers",
            member.id
        ));
    }
    if let Some(other) = others
        .iter()
        .find(|o| !reported.iter().any(|r| r.backlog.peer_id == o.id))
    {
        return Some(format!(
            "{} has not reported what {} lacks of its changes yet",
            member.id, other.id
        ));
    }
    // A report from before another member came up (same second included: whole seconds)
    // may predate the member hearing where that one is now, e.g. back at a new address:
    // changes made since could still have nowhere to go.
    if let Some(other) = others.iter().find(|o| {
        reported
            .iter()
            .any(|r| r.backlog.peer_id == o.id && r.reported_at <= o.up_time)
    }) {
        return Some(format!(
            "{} has not reported since {} came up",
            member.id, other.id
        ));
    }
    let reported_at = reported.iter().map(|r| r.reported_at).min().unwrap_or(0);
    if reported_at < took_until {
        return Some(format!(
            "{} has not reported since its last change at {took_until}",
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
    /// Still serving: stop it once the others hold its files. `last_change` is its last
    /// change from a client, as the tracker lists it.
    Running {
        held_elsewhere: Result<(), String>,
        last_change: u64,
    },
    /// Stopped; its files are (or are not yet) all on the others.
    Stopped { held_elsewhere: Result<(), String> },
}

/// A client of the tracker at `tracker` alone: what one tracker lists, not the first that
/// answers.
async fn one_tracker(config: &ClientConfig, tracker: SocketAddr) -> Result<Client, ClientError> {
    Client::new(ClientConfig {
        trackers: vec![tracker.to_string()],
        ..config.clone()
    })
    .await
}

/// How `id` of `group` stands on the tracker at `tracker`; `vouched` as for
/// [`not_held_elsewhere`].
pub async fn standing(
    config: &ClientConfig,
    tracker: SocketAddr,
    group: &str,
    id: &str,
    vouched: Option<u64>,
) -> Result<Standing, ClientError> {
    let one = one_tracker(config, tracker).await?;
    let list = one.list_storages(group).await?;
    let Some(member) = list.iter().find(|s| (s.id == id || s.ip == id) && !left(s)) else {
        return Ok(Standing::Gone);
    };
    let backlog = one.sync_backlog(group).await.unwrap_or(None);
    let held = match not_held_elsewhere(member, &list, backlog.as_deref(), vouched) {
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
            last_change: member.stats.last_source_update,
        }
    } else {
        Standing::Stopped {
            held_elsewhere: held,
        }
    })
}

/// The id the trackers list `member` of `group` under: `member` itself, or the id of the
/// member listed at that address (the first tracker that lists one says).
async fn listed_id(
    config: &ClientConfig,
    trackers: &[SocketAddr],
    group: &str,
    member: &str,
) -> Result<String, ClientError> {
    for &tracker in trackers {
        let one = one_tracker(config, tracker).await?;
        let list = one.list_storages(group).await?;
        if let Some(s) = list.iter().find(|s| s.id == member && !left(s)) {
            return Ok(s.id.clone());
        }
        if let Some(s) = list.iter().find(|s| s.ip == member && !left(s)) {
            return Ok(s.id.clone());
        }
    }
    Ok(member.to_string())
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

/// Retires member `id` of `group`: fences it on every tracker that can (no upload is routed
/// to it any more; this project's trackers, not FastDFS's), waits up to `wait` until every
/// tracker lists it stopped with every file it took on the other members, then deletes it
/// from every tracker. A member still serving, or whose files have not all reached the
/// others, is not deleted; the error says which tracker sees what, and the fence stays
/// until lifted (`fence_storage(.., false)`).
pub async fn retire(
    client: &Client,
    config: &ClientConfig,
    group: &str,
    id: &str,
    wait: Duration,
    mut progress: impl FnMut(&str),
) -> Result<(), RetireError> {
    let deadline = tokio::time::Instant::now() + wait;
    // Trackers fence and delete members by id: a member named by its address (as the
    // listing allows) is fenced and deleted by the id listed for it.
    let id = &listed_id(config, client.trackers(), group, id).await?;
    for (tracker, outcome) in client.fence_storage(group, id, true).await {
        match outcome? {
            // Fenced, or not known there (nothing to route to).
            Status::Ok | Status::NotFound => {}
            Status::InvalidArgument => progress(&format!(
                "tracker {tracker} cannot fence {id} (a FastDFS tracker): clients that use it may \
                 still upload there"
            )),
            status => return Err(RetireError::Refused { tracker, status }),
        }
    }
    // Per tracker, the member's last change when it was last found held elsewhere while
    // it ran (what a stopped FastDFS storage is judged by).
    let mut vouched = std::collections::HashMap::new();
    loop {
        let mut blocker = None;
        for &tracker in client.trackers() {
            let at = vouched.get(&tracker).copied();
            let why = match standing(config, tracker, group, id, at).await? {
                Standing::Gone
                | Standing::Stopped {
                    held_elsewhere: Ok(()),
                } => continue,
                Standing::Running {
                    held_elsewhere: Ok(()),
                    last_change,
                } => {
                    vouched.insert(tracker, last_change);
                    format!("{id} still serves; its files are on the others: stop it now")
                }
                Standing::Running {
                    held_elsewhere: Err(why),
                    ..
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
            // Deleted there already: a retirement run again after one that reached only
            // some trackers.
            Status::Ok | Status::NotFound | Status::AlreadyDone => {}
            status => return Err(RetireError::Refused { tracker, status }),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stat(id: &str, status: StorageStatus, synced: u64, took: u64) -> StorageStat {
        let mut s = StorageStat {
            id: id.into(),
            ip: id.into(),
            status: status as u8,
            ..Default::default()
        };
        s.stats.last_synced_timestamp = synced;
        s.stats.last_source_update = took;
        s
    }

    #[test]
    fn records_left_at_an_old_address_or_deleted_do_not_hold_a_retirement() {
        let old = stat("10.0.0.5", StorageStatus::Offline, 0, 100);
        let group = vec![
            old.clone(),
            stat("10.0.0.11", StorageStatus::IpChanged, 0, 0),
            stat("10.0.0.12", StorageStatus::Deleted, 0, 0),
            stat("10.0.0.13", StorageStatus::Active, 100, 0),
        ];
        assert_eq!(not_held_elsewhere(&old, &group, None, None), None);
        let behind = vec![old.clone(), stat("10.0.0.13", StorageStatus::Active, 99, 0)];
        assert!(not_held_elsewhere(&old, &behind, None, None).is_some());
        // A member that reports backlogs must have reported on every other member.
        let row = |peer: &str, bytes: u64| BacklogRow {
            source_id: "10.0.0.5".into(),
            backlog: crate::proto::report::Backlog {
                peer_id: peer.into(),
                bytes,
                seconds: 0,
            },
            reported_at: 100,
        };
        let stale = [row("10.0.0.11", 0)];
        assert!(
            not_held_elsewhere(&old, &group, Some(&stale), None)
                .is_some_and(|w| w.contains("not reported what 10.0.0.13 lacks"))
        );
        assert_eq!(
            not_held_elsewhere(&old, &group, Some(&[row("10.0.0.13", 0)]), None),
            None
        );
        assert!(not_held_elsewhere(&old, &group, Some(&[row("10.0.0.13", 7)]), None).is_some());
        // A report naming no peer (it has not heard where the others are) proves nothing,
        // whatever the trackers' timestamps say.
        assert!(
            not_held_elsewhere(&old, &group, Some(&[row("", 0)]), None)
                .is_some_and(|w| w.contains("not reported what 10.0.0.13 lacks"))
        );
        // Its own report decides, not the whole-second timestamps a stopped member's peers
        // no longer advance...
        assert_eq!(
            not_held_elsewhere(&old, &behind, Some(&[row("10.0.0.13", 0)]), None),
            None
        );
        // ...when it was made since the member's last change.
        let earlier = BacklogRow {
            reported_at: 99,
            ..row("10.0.0.13", 0)
        };
        assert!(
            not_held_elsewhere(&old, &group, Some(&[earlier]), None)
                .is_some_and(|w| w.contains("not reported since its last change"))
        );
        // ...and since the other came up where it is now.
        let mut moved = group.clone();
        moved[3].up_time = 100;
        assert!(
            not_held_elsewhere(&old, &moved, Some(&[row("10.0.0.13", 0)]), None)
                .is_some_and(|w| w.contains("not reported since 10.0.0.13 came up"))
        );
        let later = BacklogRow {
            reported_at: 101,
            ..row("10.0.0.13", 0)
        };
        assert_eq!(not_held_elsewhere(&old, &moved, Some(&[later]), None), None);
        let alone = vec![
            old.clone(),
            stat("10.0.0.11", StorageStatus::IpChanged, 0, 0),
        ];
        assert!(
            not_held_elsewhere(&old, &alone, None, None).is_some_and(|w| w.contains("only member"))
        );
    }

    #[test]
    fn a_stopped_fastdfs_storage_with_several_others_is_judged_as_it_ran() {
        // Stopped, its last change at 100; the others' timestamps moved past it without
        // it (trackers count only ACTIVE sources), which proves nothing.
        let gone = stat("10.0.0.5", StorageStatus::Offline, 0, 100);
        let group = vec![
            gone.clone(),
            stat("10.0.0.6", StorageStatus::Active, 200, 150),
            stat("10.0.0.7", StorageStatus::Active, 200, 0),
        ];
        assert!(
            not_held_elsewhere(&gone, &group, None, None)
                .is_some_and(|w| w.contains("judged while it runs"))
        );
        // Found held elsewhere while it ran, at the same last change: it may go.
        assert_eq!(not_held_elsewhere(&gone, &group, None, Some(100)), None);
        // A change since (or a judgement of an earlier one) does not count.
        assert!(not_held_elsewhere(&gone, &group, None, Some(99)).is_some());
        // Running, the timestamps decide.
        let mut running = gone.clone();
        running.status = StorageStatus::Active as u8;
        assert_eq!(not_held_elsewhere(&running, &group, None, None), None);
        // With one other member its timestamp stays its own: as before.
        assert_eq!(not_held_elsewhere(&gone, &group[..2], None, None), None);
    }
}
