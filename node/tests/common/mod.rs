//! Helpers shared by the integration tests: the recorded V6.16.1 exchanges and
//! in-process clusters on loopback.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use fdfs_node::config::{ReservedSpace, StorageConfig, TrackerConfig};
use fdfs_node::proto::StorageStatus;
use fdfs_node::storage::RunningStorage;
use fdfs_node::tracker::RunningTracker;
use serde_json::Value;

/// All exchanges of the fixture file, parsed once per test binary.
pub fn exchanges() -> Vec<Value> {
    let text = include_str!("../fixtures/fastdfs-v6.16-exchanges.json");
    let doc: Value = serde_json::from_str(text).expect("fixture parses");
    doc["exchanges"]
        .as_array()
        .expect("exchanges array")
        .clone()
}

pub fn hex_field(v: &Value, key: &str) -> Vec<u8> {
    hex::decode(v[key].as_str().unwrap_or_default()).expect("hex")
}

/// A tracker on `127.0.0.1:0` and one storage per group on `127.0.0.{2,3,…}:0`.
pub struct Cluster {
    pub tracker: RunningTracker,
    pub storages: Vec<RunningStorage>,
    pub dir: tempfile::TempDir,
}

impl Cluster {
    pub async fn start(groups: &[&str], subdirs: u32) -> Cluster {
        Self::start_with(groups, subdirs, TrackerConfig::default()).await
    }

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
                timers: fdfs_node::config::StorageTimers::quick(),
                tracker_servers: vec![tracker.addr.to_string()],
                ..Default::default()
            };
            storages.push(
                fdfs_node::storage::start(cfg)
                    .await
                    .expect("storage starts"),
            );
        }
        let cluster = Cluster {
            tracker,
            storages,
            dir,
        };
        cluster.wait_active().await;
        cluster
    }

    /// Waits until the tracker holds every storage ACTIVE with its disk space reported (a
    /// storage whose space is not known yet takes no upload).
    pub async fn wait_active(&self) {
        let want = self.storages.len();
        wait_for("storages ACTIVE", Duration::from_secs(30), async || {
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

    pub async fn client(&self) -> fdfs_node::client::Client {
        fdfs_node::client::Client::new(fdfs_node::client::ClientConfig::new(vec![
            self.tracker.addr.to_string(),
        ]))
        .await
        .expect("client")
    }
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

/// Polls `check` until it holds; fails the test after `limit`.
pub async fn wait_for(what: &str, limit: Duration, check: impl AsyncFnMut() -> bool) {
    if let Err(e) = fdfs_test_support::wait_for(what, limit, check).await {
        panic!("{e}");
    }
}

/// A tracker on 127.0.0.1 with no reserved space, keeping its state under `dir/tracker`.
pub async fn test_tracker(dir: &Path) -> RunningTracker {
    let config = TrackerConfig {
        reserved_storage_space: ReservedSpace::Mb(0),
        ..Default::default()
    };
    loopback_tracker(config, dir).await
}

/// Starts a tracker from `config` on 127.0.0.1, keeping its state under `dir/tracker`.
pub async fn loopback_tracker(mut config: TrackerConfig, dir: &Path) -> RunningTracker {
    config.bind = "127.0.0.1:0".into();
    config.base_path = dir.join("tracker");
    fdfs_node::tracker::start(config)
        .await
        .expect("tracker starts")
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
    static CHOSEN: Mutex<BTreeMap<(std::path::PathBuf, u16), u16>> = Mutex::new(BTreeMap::new());
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

/// A storage of a test group on `ip`, state under `dir/<ip>`, reporting to `tracker` every
/// second.
pub fn member_config(dir: &Path, ip: &str, tracker: &RunningTracker, port: u16) -> StorageConfig {
    StorageConfig {
        bind: format!("{ip}:{port}"),
        base_path: dir.join(ip),
        subdir_count_per_path: 4,
        heart_beat_interval: 1,
        timers: fdfs_node::config::StorageTimers::quick(),
        stat_report_interval: 1,
        tracker_servers: vec![tracker.addr.to_string()],
        ..Default::default()
    }
}

/// A tracker and the members of one group on loopback, all members on one port (as
/// FastDFS requires), with a client of the tracker: the one way the node suite starts a
/// replicating group. Suites add the members they need and their own helpers.
pub struct TestGroup {
    pub tracker: RunningTracker,
    pub members: Vec<RunningStorage>,
    pub dir: tempfile::TempDir,
    pub client: fdfs_node::client::Client,
    port: u16,
}

impl TestGroup {
    /// A tracker from `tracker` (on 127.0.0.1, state in a fresh directory, no reserved
    /// space) and no member yet; members will share a port picked from `first_port` on.
    pub async fn start(mut tracker: TrackerConfig, first_port: u16) -> TestGroup {
        let dir = tempfile::tempdir().expect("tempdir");
        tracker.reserved_storage_space = ReservedSpace::Mb(0);
        let tracker = loopback_tracker(tracker, dir.path()).await;
        let client = fdfs_node::client::Client::new(fdfs_node::client::ClientConfig::new(vec![
            tracker.addr.to_string(),
        ]))
        .await
        .expect("client");
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
        member_config(self.dir.path(), ip, &self.tracker, self.port)
    }

    /// Starts a member on `ip`.
    pub async fn add_member(&mut self, ip: &str) {
        let config = self.config(ip);
        self.add(config).await;
    }

    /// Starts a member with `config` (made by [`Self::config`], then changed).
    pub async fn add(&mut self, config: StorageConfig) {
        let member = fdfs_node::storage::start(config)
            .await
            .expect("member starts");
        self.members.push(member);
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
        wait_for("every member ACTIVE", Duration::from_secs(60), async || {
            ready_members(&self.tracker, Some("group1")) == want
        })
        .await;
    }
}

/// One slot of a trunk file as FastDFS V6 writes it: the 24-byte header (type, allocated
/// size, file size, CRC-32, mtime, formatted ext; integers big-endian), then the bytes.
pub fn fastdfs_slot(alloc: u32, content: &[u8], mtime: u32, ext: &str) -> Vec<u8> {
    let mut slot = vec![b'F'];
    slot.extend_from_slice(&alloc.to_be_bytes());
    slot.extend_from_slice(&(content.len() as u32).to_be_bytes());
    slot.extend_from_slice(&crc32fast::hash(content).to_be_bytes());
    slot.extend_from_slice(&mtime.to_be_bytes());
    slot.extend_from_slice(ext.as_bytes());
    slot.extend_from_slice(content);
    slot.resize(alloc as usize, 0);
    slot
}

/// The name FastDFS gives a file in `slot` of trunk file 1 in `data/00/00` of store path 0:
/// the core with the trunk flag, the slot, the formatted ext (60 characters in all).
pub fn trunk_file_name(
    source: &str,
    content: &[u8],
    mtime: u32,
    slot: fdfs_node::fileid::TrunkSlot,
    ext: &str,
) -> fdfs_node::fileid::RemoteName {
    use fdfs_node::fileid::{NameCore, RemoteName, Source, TRUNK_FLAG};
    let core = NameCore {
        source: Source::Ip(source.parse().expect("ip")),
        timestamp: mtime,
        size_field: (0x8000_4321u64 << 32) | TRUNK_FLAG | content.len() as u64,
        crc32: crc32fast::hash(content),
    };
    let name = RemoteName::new(0, 0, 0, format!("{}{}{ext}", core.encode(), slot.encode()));
    assert_eq!(name.to_string().len(), 60);
    name
}
