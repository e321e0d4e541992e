//! The tracker's state on disk: `<base_path>/data/tracker_state.json`.
//!
//! Groups and their members (ids, addresses, status, sync sources and progress,
//! disk usage) are saved whenever they change, by writing a temporary file,
//! syncing it and renaming it over the old one, so a crash leaves either the old
//! or the new state, never half of one. A restarted tracker loads it and can
//! answer at once; storages it does not hear from again go OFFLINE after
//! `check_active_interval` like any silent storage.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::registry::{Group, Member, Registry, ReportedBacklog};
use crate::proto::StorageStatus;
use crate::proto::monitor::StorageStats;
use crate::proto::report::{Backlog, PathUsage};

/// Format version written into the file.
pub(crate) const FORMAT: u32 = 1;

/// Why the state could not be saved or loaded.
#[derive(Debug, thiserror::Error)]
pub enum PersistError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not a tracker state file: {source}")]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("{path}: format {found} is newer than this tracker understands ({FORMAT})")]
    Format { path: PathBuf, found: u32 },
}

/// Everything saved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedState {
    pub format: u32,
    pub groups: Vec<SavedGroup>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedGroup {
    pub name: String,
    pub store_path_count: u64,
    pub subdir_count_per_path: u64,
    pub members: Vec<SavedMember>,
    /// The trunk server's storage id, kept so a restarted tracker names the same one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trunk_server: Option<String>,
    /// The highest trunk file id reported, so no trunk file id is made twice.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub trunk_file_id: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedMember {
    pub id: String,
    pub ip: String,
    pub port: u64,
    pub status: u8,
    pub version: String,
    pub join_time: u64,
    pub upload_priority: u64,
    pub store_path_count: u64,
    pub subdir_count_per_path: u64,
    /// (total_mb, free_mb) per store path.
    pub paths: Vec<(u64, u64)>,
    pub src_id: String,
    pub sync_until: u64,
    pub last_synced_timestamp: u64,
    pub rw_mode: u8,
    /// How much of the storage changelog it has read.
    #[serde(default)]
    pub changelog_offset: u64,
    /// Fenced for its retirement: no uploads.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub fenced: bool,
    /// When it last took a change from a client (`last_source_update`): a member that
    /// stopped before the tracker restarted is judged by it, not by a blank.
    #[serde(default)]
    pub last_source_update: u64,
    /// What it last said its peers lack of its changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backlog: Option<SavedBacklog>,
}

/// A member's last backlog report: when the tracker got it, and what each peer lacks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedBacklog {
    pub at: u64,
    pub peers: Vec<SavedPeerBacklog>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedPeerBacklog {
    pub peer_id: String,
    pub bytes: u64,
    pub seconds: u64,
}

/// The state file under a tracker's base path.
pub fn state_path(base_path: &Path) -> PathBuf {
    base_path.join("data").join("tracker_state.json")
}

impl SavedState {
    pub fn of(reg: &Registry) -> Self {
        SavedState {
            format: FORMAT,
            groups: reg
                .groups()
                .values()
                .map(|g| SavedGroup {
                    name: g.name.clone(),
                    store_path_count: g.store_path_count,
                    subdir_count_per_path: g.subdir_count_per_path,
                    trunk_server: g.trunk.server.clone(),
                    trunk_file_id: g.trunk.file_id,
                    members: g
                        .members
                        .values()
                        .map(|m| SavedMember {
                            id: m.id.clone(),
                            ip: m.ip.clone(),
                            port: m.port,
                            status: m.status as u8,
                            version: m.version.clone(),
                            join_time: m.join_time,
                            upload_priority: m.upload_priority,
                            store_path_count: m.store_path_count,
                            subdir_count_per_path: m.subdir_count_per_path,
                            paths: m.paths.iter().map(|p| (p.total_mb, p.free_mb)).collect(),
                            src_id: m.src_id.clone(),
                            sync_until: m.sync_until,
                            last_synced_timestamp: m.last_synced_timestamp,
                            rw_mode: m.rw_mode,
                            changelog_offset: m.changelog_offset,
                            fenced: m.fenced,
                            // Kept for members with no report connection (stopped): what a
                            // retirement judges them by. A running member's change with every
                            // beat would rewrite and sync the file each second, and it tells
                            // a restarted tracker again anyway.
                            last_source_update: if m.session == 0 {
                                m.stats.last_source_update
                            } else {
                                0
                            },
                            backlog: m.backlog.as_ref().filter(|_| m.session == 0).map(|b| {
                                SavedBacklog {
                                    at: b.at,
                                    peers: b
                                        .entries
                                        .values()
                                        .map(|e| SavedPeerBacklog {
                                            peer_id: e.peer_id.clone(),
                                            bytes: e.bytes,
                                            seconds: e.seconds,
                                        })
                                        .collect(),
                                }
                            }),
                        })
                        .collect(),
                })
                .collect(),
        }
    }

    /// Puts the saved groups into `reg`; heartbeat clocks restart at `now`.
    pub fn restore_into(self, reg: &mut Registry, now: u64) {
        for sg in self.groups {
            if !crate::fileid::valid_group(&sg.name) {
                tracing::warn!(group = %sg.name, "saved group has a bad name; skipped");
                continue;
            }
            let mut g = Group::new(&sg.name, sg.store_path_count, sg.subdir_count_per_path);
            g.trunk.file_id = sg.trunk_file_id;
            g.trunk.changes = u64::from(sg.trunk_server.is_some());
            g.trunk.server = sg.trunk_server;
            for sm in sg.members {
                let Some(status) = StorageStatus::from_byte(sm.status) else {
                    tracing::warn!(group = %sg.name, storage = %sm.id, status = sm.status,
                        "saved storage has an unknown status; skipped");
                    continue;
                };
                let m = Member {
                    id: sm.id.clone(),
                    ip: sm.ip,
                    port: sm.port,
                    status,
                    version: sm.version,
                    join_time: sm.join_time,
                    up_time: 0,
                    upload_priority: sm.upload_priority,
                    store_path_count: sm.store_path_count,
                    subdir_count_per_path: sm.subdir_count_per_path,
                    paths: sm
                        .paths
                        .into_iter()
                        .map(|(total_mb, free_mb)| PathUsage { total_mb, free_mb })
                        .collect(),
                    stats: StorageStats {
                        last_source_update: sm.last_source_update,
                        ..StorageStats::default()
                    },
                    last_heartbeat: now,
                    src_id: sm.src_id,
                    sync_until: sm.sync_until,
                    last_synced_timestamp: sm.last_synced_timestamp,
                    rw_mode: sm.rw_mode,
                    session: 0,
                    backlog: sm.backlog.map(|b| ReportedBacklog {
                        at: b.at,
                        entries: b
                            .peers
                            .into_iter()
                            .map(|p| {
                                (
                                    p.peer_id.clone(),
                                    Backlog {
                                        peer_id: p.peer_id,
                                        bytes: p.bytes,
                                        seconds: p.seconds,
                                    },
                                )
                            })
                            .collect(),
                    }),
                    problems: Vec::new(),
                    changelog_offset: sm.changelog_offset,
                    fenced: sm.fenced,
                };
                g.members.insert(sm.id, m);
            }
            g.changes = 1;
            reg.restore_group(g);
        }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).unwrap_or_default()
    }
}

/// Loads the state file; `Ok(None)` when there is none yet.
pub fn load(path: &Path) -> Result<Option<SavedState>, PersistError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(PersistError::Io {
                path: path.into(),
                source,
            });
        }
    };
    let state: SavedState =
        serde_json::from_slice(&bytes).map_err(|source| PersistError::Parse {
            path: path.into(),
            source,
        })?;
    if state.format > FORMAT {
        return Err(PersistError::Format {
            path: path.into(),
            found: state.format,
        });
    }
    Ok(Some(state))
}

/// Writes `bytes` to `path` durably (`fsutil::write_atomically`).
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), PersistError> {
    crate::fsutil::write_atomically(path, bytes).map_err(|source| PersistError::Io {
        path: path.into(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TrackerConfig;
    use crate::proto::report::JoinRequest;

    #[test]
    fn round_trips_through_a_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut reg = Registry::new(TrackerConfig::default());
        let req = JoinRequest {
            group: "group1".into(),
            storage_port: 23000,
            store_path_count: 2,
            subdir_count_per_path: 16,
            upload_priority: 10,
            status: 7,
            version: "6.16.1".into(),
            trackers: vec!["127.0.0.1:22122".into()],
            ..Default::default()
        };
        reg.join("127.0.0.2", &req, 100).expect("join");
        reg.disk_usage(
            "group1",
            "127.0.0.2",
            vec![
                PathUsage {
                    total_mb: 10,
                    free_mb: 5,
                },
                PathUsage {
                    total_mb: 20,
                    free_mb: 7,
                },
            ],
            100,
        )
        .expect("disk");
        reg.beat(
            "group1",
            "127.0.0.2",
            Some(StorageStats {
                last_source_update: 90,
                ..StorageStats::default()
            }),
            100,
        )
        .expect("beat");
        reg.sync_backlog(
            "group1",
            "127.0.0.2",
            vec![Backlog {
                peer_id: "127.0.0.2".into(),
                bytes: 1,
                seconds: 1,
            }],
            100,
        )
        .expect("backlog");
        // Running, its beat figures are not saved (they would rewrite the file each second).
        assert_eq!(
            SavedState::of(&reg).groups[0].members[0].last_source_update,
            0
        );
        let session = reg.groups()["group1"].members["127.0.0.2"].session;
        reg.disconnect("group1", "127.0.0.2", session);
        let saved = SavedState::of(&reg);
        let path = state_path(dir.path());
        write_atomically(&path, &saved.to_bytes()).expect("write");
        assert!(!path.with_extension("json.tmp").exists());
        let loaded = load(&path).expect("load").expect("present");
        assert_eq!(loaded, saved);
        let mut back = Registry::new(TrackerConfig::default());
        loaded.restore_into(&mut back, 500);
        let m = &back.groups()["group1"].members["127.0.0.2"];
        assert_eq!(m.status, StorageStatus::Offline);
        assert_eq!(m.free_mb(), 12);
        assert_eq!(m.last_heartbeat, 500);
        // What decides whether a stopped member's files are elsewhere survives the restart.
        assert_eq!(m.stats.last_source_update, 90);
        assert_eq!(m.backlog.as_ref().map(|b| b.at), Some(100));
        assert_eq!(SavedState::of(&back), saved);

        assert!(load(&dir.path().join("none.json")).expect("ok").is_none());
        std::fs::write(&path, b"{not json").expect("write");
        assert!(matches!(load(&path), Err(PersistError::Parse { .. })));
    }
}
