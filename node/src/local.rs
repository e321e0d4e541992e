//! `fdfs-node local`: trackers and storages on loopback, in one process, for
//! trying the service on a single machine.
//!
//! Tracker `i` listens on the tracker address's port + i (and its HTTP and 45-byte-IP ports
//! likewise + i); storage `r` of group `g` listens on the first storage IP + g × replicas + r.
//! Every storage reports to every tracker.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::client::{Client, ClientConfig, ClientError};
use crate::config::{Compat, ListenerConfig, StorageConfig, TrackerConfig};
use crate::proto::{IpWidth, StorageStatus};
use crate::storage::{self, RunningStorage};
use crate::tracker::{self, RunningTracker};

/// Node settings applied to every node `local` starts (`--config FILE`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LocalConfig {
    pub tracker: TrackerConfig,
    pub storage: StorageConfig,
}

/// Where and how many nodes to start.
#[derive(Debug, Clone)]
pub struct LocalOptions {
    pub groups: usize,
    /// Storages per group (members past the first wait for group replication).
    pub replicas: usize,
    pub trackers: usize,
    pub data_dir: PathBuf,
    pub tracker_addr: String,
    /// First storage IP; later storages take the following addresses.
    pub first_storage_ip: Ipv4Addr,
    pub storage_port: u16,
    /// HTTP port of each storage (on its own address); 0 disables HTTP.
    pub http_port: u16,
    /// HTTP port of the first tracker (on the tracker address; later trackers take the
    /// following ports) unless the config sets `http_bind`; 0 disables it.
    pub tracker_http_port: u16,
    /// Port of the first tracker's second listener, with 45-byte IP fields (later trackers
    /// take the following ports) unless the config lists its own listeners; 0: none.
    pub ip45_port: u16,
    pub config: LocalConfig,
}

/// A running local cluster.
#[derive(Debug)]
pub struct LocalCluster {
    pub trackers: Vec<RunningTracker>,
    pub storages: Vec<RunningStorage>,
}

/// Why the local cluster could not start.
#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    #[error("cannot start {what}: {source}")]
    Start {
        what: String,
        source: std::io::Error,
    },
    #[error("cluster not ready within {0:?}")]
    NotReady(Duration),
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("--groups must be between 1 and 200")]
    BadGroupCount,
    #[error("--replicas must be between 1 and 8, --trackers between 1 and 16")]
    BadCount,
    #[error("bad tracker address {0:?}: expected ip:port")]
    BadTrackerAddr(String),
}

/// `addr` with its port moved up by `i` (port 0 stays 0).
fn shifted(addr: SocketAddr, i: usize) -> SocketAddr {
    let port = if addr.port() == 0 {
        0
    } else {
        addr.port().saturating_add(i as u16)
    };
    SocketAddr::new(addr.ip(), port)
}

fn shifted_text(addr: &str, i: usize) -> String {
    addr.parse::<SocketAddr>()
        .map(|a| shifted(a, i).to_string())
        .unwrap_or_else(|_| addr.to_owned())
}

impl LocalCluster {
    pub async fn start(opts: LocalOptions) -> Result<Self, LocalError> {
        if !(1..=200).contains(&opts.groups) {
            return Err(LocalError::BadGroupCount);
        }
        if !(1..=8).contains(&opts.replicas) || !(1..=16).contains(&opts.trackers) {
            return Err(LocalError::BadCount);
        }
        let first: SocketAddr = opts
            .tracker_addr
            .parse()
            .map_err(|_| LocalError::BadTrackerAddr(opts.tracker_addr.clone()))?;
        let mut trackers = Vec::new();
        for i in 0..opts.trackers {
            let mut tcfg = opts.config.tracker.clone();
            tcfg.bind = shifted(first, i).to_string();
            tcfg.base_path = if opts.trackers == 1 {
                opts.data_dir.join("tracker")
            } else {
                opts.data_dir.join(format!("tracker{}", i + 1))
            };
            if tcfg.listeners.is_empty() && opts.ip45_port != 0 {
                tcfg.listeners.push(ListenerConfig {
                    bind: SocketAddr::new(first.ip(), opts.ip45_port).to_string(),
                    compat: Compat {
                        ip_width: IpWidth::V6,
                        ..Compat::default()
                    },
                });
            }
            for l in &mut tcfg.listeners {
                l.bind = shifted_text(&l.bind, i);
            }
            if tcfg.http_bind.is_empty() && opts.tracker_http_port != 0 {
                tcfg.http_bind = SocketAddr::new(first.ip(), opts.tracker_http_port).to_string();
            }
            if !tcfg.http_bind.is_empty() {
                tcfg.http_bind = shifted_text(&tcfg.http_bind, i);
            }
            let t = tracker::start(tcfg)
                .await
                .map_err(|source| LocalError::Start {
                    what: format!("tracker on {}", shifted(first, i)),
                    source,
                })?;
            trackers.push(t);
        }
        let tracker_addrs: Vec<String> = trackers.iter().map(|t| t.addr.to_string()).collect();
        let mut storages = Vec::new();
        for g in 0..opts.groups {
            let group = format!("group{}", g + 1);
            for r in 0..opts.replicas {
                let n = g * opts.replicas + r;
                let ip = Ipv4Addr::from(u32::from(opts.first_storage_ip) + n as u32);
                let mut scfg = opts.config.storage.clone();
                scfg.group_name = group.clone();
                scfg.bind = format!("{ip}:{}", opts.storage_port);
                scfg.base_path = if opts.replicas == 1 {
                    opts.data_dir.join(format!("storage-{group}"))
                } else {
                    opts.data_dir.join(format!("storage-{group}-{}", r + 1))
                };
                scfg.store_paths = Vec::new();
                scfg.tracker_servers = tracker_addrs.clone();
                scfg.http.bind = if opts.http_port == 0 {
                    String::new()
                } else {
                    format!("{ip}:{}", opts.http_port)
                };
                let s = storage::start(scfg)
                    .await
                    .map_err(|source| LocalError::Start {
                        what: format!("storage {group} on {ip}"),
                        source,
                    })?;
                storages.push(s);
            }
        }
        let cluster = LocalCluster { trackers, storages };
        cluster.wait_ready(Duration::from_secs(60)).await?;
        Ok(cluster)
    }

    /// Waits until the trackers agree on a leader, every tracker knows every
    /// storage, and every group has an ACTIVE member on every tracker.
    pub async fn wait_ready(&self, limit: Duration) -> Result<(), LocalError> {
        let deadline = tokio::time::Instant::now() + limit;
        let mut clients = Vec::new();
        for t in &self.trackers {
            clients.push(Client::new(ClientConfig::new(vec![t.addr.to_string()])).await?);
        }
        let groups: std::collections::BTreeSet<String> = self
            .storages
            .iter()
            .map(|s| s.node.config.group_name.clone())
            .collect();
        loop {
            let leaders: std::collections::BTreeSet<_> =
                self.trackers.iter().map(|t| t.tracker.leader()).collect();
            let mut ready = leaders.len() == 1 && leaders.iter().all(Option::is_some);
            for c in &clients {
                let mut known = 0;
                for g in &groups {
                    match c.list_storages(g).await {
                        Ok(list) => {
                            known += list.len();
                            ready &= list.iter().any(|m| m.status == StorageStatus::Active as u8);
                        }
                        Err(_) => ready = false,
                    }
                }
                ready &= known >= self.storages.len();
            }
            if ready {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                return Err(LocalError::NotReady(limit));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// One line per node, for scripts: `tracker ADDR [http=ADDR]`, one
    /// `tracker ADDR profile=NAME` per extra port, `storage GROUP ADDR`.
    pub fn describe(&self) -> Vec<String> {
        let mut lines = Vec::new();
        for t in &self.trackers {
            lines.extend(tracker_lines(t));
        }
        for s in &self.storages {
            let mut line = format!("storage {} {}", s.node.config.group_name, s.addr);
            if let Some(http) = s.http_addr {
                line.push_str(&format!(" http={http}"));
            }
            lines.push(line);
        }
        lines
    }

    /// Stops every storage at once, then the trackers, all within `drain`.
    pub async fn stop(self, drain: Duration) {
        let deadline = tokio::time::Instant::now() + drain;
        let mut stopping = tokio::task::JoinSet::new();
        for s in self.storages {
            stopping.spawn(s.stop(drain));
        }
        while stopping.join_next().await.is_some() {}
        // Trackers last, so storages could still say goodbye; they get what is left.
        let left = deadline
            .saturating_duration_since(tokio::time::Instant::now())
            .max(Duration::from_millis(500));
        for t in self.trackers {
            stopping.spawn(t.stop(left));
        }
        while stopping.join_next().await.is_some() {}
    }
}

/// The lines `fdfs-node` prints for a running tracker.
pub fn tracker_lines(t: &RunningTracker) -> Vec<String> {
    let mut main = format!("tracker {}", t.addr);
    if let Some(http) = t.http_addr {
        main.push_str(&format!(" http={http}"));
    }
    let mut lines = vec![main];
    for (addr, compat) in t.listeners.iter().skip(1) {
        lines.push(format!("tracker {addr} profile={}", compat.profile_name()));
    }
    lines
}
