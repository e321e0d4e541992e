//! A tracker that starts with no group at all beside running trackers takes their state
//! first, as FastDFS V6 does: at the first storage JOIN it asks the trackers that storage
//! names for their status (64), fetches the system files (61, 63, 62) of the best-running
//! one that has groups, and only then takes joins. Without it, a new storage that joins the
//! empty tracker first would find its group empty and go ACTIVE without a copy.

use std::net::SocketAddr;
use std::time::Duration;

use super::election::{self, connect, peer_status};
use super::registry::sys_files::{SYS_FILE_COUNT, SysFilesError, parse_sys_files};
use super::{Tracker, unix_now};
use crate::client::ClientError;
use crate::proto::cluster::{SysFilePiece, SysFileRequest};
use crate::proto::{Command, ProtoError, Status};

/// Largest system file taken (FastDFS's are a few hundred bytes per storage).
const MAX_SYS_FILE: u64 = 64 << 20;

/// Why the state of another tracker could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    #[error("tracker {peer}: {source}")]
    Connection {
        peer: SocketAddr,
        source: ClientError,
    },
    #[error("tracker {peer} answered {command:?} with {status}")]
    Refused {
        peer: SocketAddr,
        command: Command,
        status: Status,
    },
    #[error("tracker {peer}: {source}")]
    Malformed {
        peer: SocketAddr,
        source: ProtoError,
    },
    #[error("tracker {peer}: system file {index} is {size} bytes")]
    TooLarge {
        peer: SocketAddr,
        index: usize,
        size: u64,
    },
    #[error("tracker {peer}: {source}")]
    Unreadable {
        peer: SocketAddr,
        source: SysFilesError,
    },
    #[error("cannot keep the fetched changelog: {0}")]
    Changelog(std::io::Error),
}

impl Tracker {
    /// Before a JOIN is taken: takes the state of the best-running tracker in `trackers`
    /// (the joining storage's list) if this one has no group yet and has not done so.
    /// `me` is this tracker's address on the storage's connection.
    pub(super) async fn bootstrap_before_join(
        &self,
        me: SocketAddr,
        trackers: &[SocketAddr],
    ) -> Result<(), BootstrapError> {
        let mut done = self.bootstrapped.lock().await;
        if *done {
            return Ok(());
        }
        if !self.registry().groups().is_empty() {
            *done = true;
            return Ok(());
        }
        let interval = Duration::from_millis(self.config.leader_ping_interval_ms.max(1));
        let mut candidates = Vec::new();
        for &peer in trackers.iter().filter(|&&a| a != me) {
            // A tracker with no group answers 64 with ENOENT: nothing to take from it.
            if let Some(status) = peer_status(peer, me, interval).await {
                candidates.push((peer, status));
            }
        }
        let Some(best) = candidates
            .iter()
            .max_by_key(|(a, s)| election::rank(*a, s))
            .map(|(a, _)| *a)
        else {
            *done = true;
            return Ok(());
        };
        let fetched = fetch(best, me, interval).await.and_then(|files| {
            parse_sys_files(&files[0], &files[1], self.config.use_storage_id)
                .map(|state| (state, files))
                .map_err(|source| BootstrapError::Unreadable { peer: best, source })
        });
        let (state, files) = match fetched {
            Ok(fetched) => fetched,
            // Unreachable now: the joining storage tries again, and so does this tracker.
            Err(e @ BootstrapError::Connection { .. }) => return Err(e),
            // What it answers will not change: go on from the storages' joins alone.
            Err(e) => {
                tracing::error!(error = %e, "other trackers' state not taken");
                *done = true;
                return Ok(());
            }
        };
        let mut reg = self.registry();
        if reg.groups().is_empty() {
            let (groups, storages) = (
                state.groups.len(),
                state.groups.iter().map(|g| g.members.len()).sum::<usize>(),
            );
            state.restore_into(&mut reg, unix_now());
            let adopted = reg.adopt_changelog(&files[3]);
            // Fitted to whichever changelog this tracker has now, adopted or not.
            reg.fit_changelog_offsets();
            adopted.map_err(BootstrapError::Changelog)?;
            tracing::info!(tracker = %best, groups, storages, "system files loaded from tracker");
        }
        *done = true;
        Ok(())
    }
}

/// The four system files of `peer`, each fetched piece by piece.
async fn fetch(
    peer: SocketAddr,
    me: SocketAddr,
    interval: Duration,
) -> Result<Vec<Vec<u8>>, BootstrapError> {
    let io = |source| BootstrapError::Connection { peer, source };
    let mut conn = connect(peer, me, interval).await.map_err(io)?;
    let mut call = async |command: Command, body: &[u8]| {
        let (status, reply) = conn.call(command, body, 64 * 1024).await.map_err(io)?;
        if status != Status::Ok {
            return Err(BootstrapError::Refused {
                peer,
                command,
                status,
            });
        }
        Ok(reply)
    };
    call(Command::TrackerGetSysFilesStart, &[]).await?;
    let mut files = Vec::with_capacity(SYS_FILE_COUNT);
    for index in 0..SYS_FILE_COUNT {
        let mut file = Vec::new();
        loop {
            let req = SysFileRequest {
                index: index as u8,
                offset: file.len() as u64,
            };
            let reply = call(Command::TrackerGetOneSysFile, &req.encode()).await?;
            let piece = SysFilePiece::decode(&reply)
                .map_err(|source| BootstrapError::Malformed { peer, source })?;
            if piece.file_size > MAX_SYS_FILE {
                return Err(BootstrapError::TooLarge {
                    peer,
                    index,
                    size: piece.file_size,
                });
            }
            file.extend_from_slice(&piece.data);
            if file.len() as u64 >= piece.file_size || piece.data.is_empty() {
                break;
            }
        }
        files.push(file);
    }
    call(Command::TrackerGetSysFilesEnd, &[]).await?;
    conn.quit().await;
    Ok(files)
}
