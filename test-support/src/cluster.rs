//! In-process clusters on loopback: the one way the workspace's tests start trackers and
//! storages of `fdfs-node` (the node's suites, the operator's, the e2e alert rules). Every
//! storage runs with short timers (`StorageTimers::quick`) and few subdirectories.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use fdfs_node::client::{Client, ClientConfig};
use fdfs_node::config::{ReservedSpace, StorageConfig, StorageTimers, TrackerConfig};
use fdfs_node::proto::StorageStatus;
use fdfs_node::storage::RunningStorage;
use fdfs_node::tracker::RunningTracker;

use crate::wait_until;

/// Starts a tracker from `config` on `ip` (port chosen by the system), its state in
/// `base_path`.
pub async fn tracker_at(ip: &str, mut config: TrackerConfig, base_path: PathBuf) -> RunningTracker {
    config.bind = format!("{ip}:0");
    config.base_path = base_path;
    fdfs_node::tracker::start(config)
        .await
        .expect("tracker starts")
}

/// Starts a tracker from `config` on 127.0.0.1, keeping its state under `dir/tracker`.
pub async fn loopback_tracker(config: TrackerConfig, dir: &Path) -> RunningTracker {
    tracker_at("127.0.0.1", config, dir.join("tracker")).await
}

/// A tracker on 127.0.0.1 with no reserved space, keeping its state under `dir/tracker`.
pub async fn test_tracker(dir: &Path) -> RunningTracker {
    let config = TrackerConfig {
        reserved_storage_space: ReservedSpace::Mb(0),
        ..Default::default()
    };
    loopback_tracker(config, dir).await
}

/// A client of the trackers at `trackers`.
pub async fn client_of(trackers: impl IntoIterator<Item = impl ToString>) -> Client {
    let trackers = trackers.into_iter().map(|t| t.to_string()).collect();
    Client::new(ClientConfig::new(trackers))
        .await
        .expect("client")
}

/// The port all members of one test's group share (FastDFS requires one port per group):
/// the same for every call with the same `dir` and `first`. It starts from a place picked
/// from the test's directory (tests run side by side, each in its own process) and moves
/// on past ports some socket on any address holds now, staying below the ephemeral range
/// so no outgoing connection can take it while a member restarts.
pub fn group_port(dir: &Path, first: u16) -> u16 {
    use std::collections::BTreeMap;
    use std::hash::{Hash, Hasher};
    use std::sync::Mutex;
    static CHOSEN: Mutex<BTreeMap<(PathBuf, u16), u16>> = Mutex::new(BTreeMap::new());
    let mut chosen = CHOSEN.lock().unwrap_or_else(|e| e.into_inner());
    *chosen.entry((dir.to_path_buf(), first)).or_insert_with(|| {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        dir.hash(&mut h);
        let start = h.finish() % 4000;
        (0..4000u64)
            .map(|i| first + ((start + i) % 4000) as u16)
            .find(|port| std::net::TcpListener::bind(("0.0.0.0", *port)).is_ok())
            .expect("a free port for the group")
    })
}

/// A storage of group1 on `ip:port`, state under `dir/<ip>`, reporting to `trackers` every
/// second.
pub fn member_config(
    dir: &Path,
    ip: &str,
    trackers: impl IntoIterator<Item = impl ToString>,
    port: u16,
) -> StorageConfig {
    StorageConfig {
        bind: format!("{ip}:{port}"),
        base_path: dir.join(ip),
        subdir_count_per_path: 4,
        heart_beat_interval: 1,
        timers: StorageTimers::quick(),
        stat_report_interval: 1,
        tracker_servers: trackers.into_iter().map(|t| t.to_string()).collect(),
        ..Default::default()
    }
}

/// Starts a storage from `config`.
pub async fn start_member(config: StorageConfig) -> RunningStorage {
    fdfs_node::storage::start(config)
        .await
        .expect("storage starts")
}

/// Members (of `group`, or of every group) the tracker holds ACTIVE with their disk space
/// reported: a storage whose space is not known yet takes no upload.
pub fn ready_members(tracker: &RunningTracker, group: Option<&str>) -> usize {
    let reg = tracker.tracker.registry();
    reg.groups()
        .values()
        .filter(|g| group.is_none_or(|name| g.name == name))
        .flat_map(|g| g.members.values())
        .filter(|m| m.status == StorageStatus::Active && m.total_mb() > 0)
        .count()
}

/// Waits until the tracker at `tracker` lists the storage at `ip` in `group` with `status`,
/// asking over the wire as a client would.
pub async fn wait_listed(tracker: &str, group: &str, ip: &str, status: StorageStatus) {
    let client = client_of([tracker]).await;
    let what = format!("{tracker} to list {ip} of {group} as {status:?}");
    wait_until(&what, Duration::from_secs(30), async || {
        client
            .list_storages(group)
            .await
            .is_ok_and(|list| list.iter().any(|s| s.ip == ip && s.status == status as u8))
    })
    .await;
}

/// A tracker on 127.0.0.1 and one storage per group on `127.0.0.{2,3,…}:0`.
pub struct Cluster {
    pub tracker: RunningTracker,
    pub storages: Vec<RunningStorage>,
    pub dir: tempfile::TempDir,
}

impl Cluster {
    /// One storage per group, each with `subdirs` subdirectories, no reserved space.
    pub async fn start(groups: &[&str], subdirs: u32) -> Cluster {
        Self::start_with(groups, subdirs, TrackerConfig::default()).await
    }

    /// Like `start`, with the tracker's configuration (its reserved space set to none).
    pub async fn start_with(groups: &[&str], subdirs: u32, mut tcfg: TrackerConfig) -> Cluster {
        tcfg.reserved_storage_space = ReservedSpace::Mb(0);
        Self::start_with_reserved(groups, subdirs, tcfg).await
    }

    /// Like `start_with`, keeping the tracker's `reserved_storage_space`.
    pub async fn start_with_reserved(
        groups: &[&str],
        subdirs: u32,
        tcfg: TrackerConfig,
    ) -> Cluster {
        let dir = tempfile::tempdir().expect("tempdir");
        let tracker = loopback_tracker(tcfg, dir.path()).await;
        let mut storages = Vec::new();
        for (i, g) in groups.iter().enumerate() {
            let cfg = StorageConfig {
                bind: format!("127.0.0.{}:0", i + 2),
                group_name: (*g).into(),
                base_path: dir.path().join(format!("storage{i}")),
                subdir_count_per_path: subdirs,
                timers: StorageTimers::quick(),
                tracker_servers: vec![tracker.addr.to_string()],
                ..Default::default()
            };
            storages.push(start_member(cfg).await);
        }
        let cluster = Cluster {
            tracker,
            storages,
            dir,
        };
        cluster.wait_active().await;
        cluster
    }

    /// Waits until the tracker holds every storage ACTIVE with its disk space reported.
    pub async fn wait_active(&self) {
        let want = self.storages.len();
        wait_until("storages ACTIVE", Duration::from_secs(30), async || {
            ready_members(&self.tracker, None) == want
        })
        .await;
    }

    pub fn tracker_addr(&self) -> SocketAddr {
        self.tracker.addr
    }

    pub fn storage_addr(&self, i: usize) -> SocketAddr {
        self.storages[i].addr
    }

    pub fn store_root(&self, i: usize) -> &Path {
        &self.storages[i].node.config.base_path
    }

    pub async fn client(&self) -> Client {
        client_of([self.tracker.addr]).await
    }
}

/// A tracker and the members of one group on loopback, all members on one port (as
/// FastDFS requires), with a client of the tracker: the one way a suite starts a
/// replicating group. Suites add the members they need and their own helpers.
pub struct TestGroup {
    pub tracker: RunningTracker,
    pub members: Vec<RunningStorage>,
    pub dir: tempfile::TempDir,
    pub client: Client,
    port: u16,
}

impl TestGroup {
    /// A tracker from `tracker` (on 127.0.0.1, state in a fresh directory, no reserved
    /// space) and no member yet; members will share a port picked from `first_port` on.
    pub async fn start(mut tracker: TrackerConfig, first_port: u16) -> TestGroup {
        let dir = tempfile::tempdir().expect("tempdir");
        tracker.reserved_storage_space = ReservedSpace::Mb(0);
        let tracker = loopback_tracker(tracker, dir.path()).await;
        let client = client_of([tracker.addr]).await;
        let port = group_port(dir.path(), first_port);
        TestGroup {
            tracker,
            members: Vec::new(),
            dir,
            client,
            port,
        }
    }

    /// The configuration of a member on `ip` (see [`member_config`]).
    pub fn config(&self, ip: &str) -> StorageConfig {
        member_config(self.dir.path(), ip, [self.tracker.addr], self.port)
    }

    /// Starts a member on `ip`.
    pub async fn add_member(&mut self, ip: &str) {
        let config = self.config(ip);
        self.add(config).await;
    }

    /// Starts a member with `config` (made by [`Self::config`], then changed).
    pub async fn add(&mut self, config: StorageConfig) {
        self.members.push(start_member(config).await);
    }

    /// The running member on `ip`.
    pub fn member(&self, ip: &str) -> &RunningStorage {
        self.members
            .iter()
            .find(|m| m.addr.ip().to_string() == ip)
            .expect("a member on that address")
    }

    /// The status the tracker holds for the member on `ip`.
    pub fn status_of(&self, ip: &str) -> Option<StorageStatus> {
        let reg = self.tracker.tracker.registry();
        reg.groups()
            .get("group1")?
            .members
            .values()
            .find(|m| m.ip == ip)
            .map(|m| m.status)
    }

    /// Waits until the tracker holds every running member ACTIVE with its disk space
    /// reported.
    pub async fn wait_all_active(&self) {
        let want = self.members.len();
        wait_until("every member ACTIVE", Duration::from_secs(60), async || {
            ready_members(&self.tracker, Some("group1")) == want
        })
        .await;
    }
}
