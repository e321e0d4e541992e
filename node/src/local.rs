//! `fdfs-node local`: a tracker and one storage per group on loopback, in one
//! process, for trying the service on a single machine.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::client::{Client, ClientConfig, ClientError};
use crate::config::{StorageConfig, TrackerConfig};
use crate::proto::StorageStatus;
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
    pub data_dir: PathBuf,
    pub tracker_addr: String,
    /// First storage IP; group N listens on this address + N − 1.
    pub first_storage_ip: Ipv4Addr,
    pub storage_port: u16,
    /// HTTP port of each storage (on its own address); 0 disables HTTP.
    pub http_port: u16,
    pub config: LocalConfig,
}

/// A running local cluster.
#[derive(Debug)]
pub struct LocalCluster {
    pub tracker: RunningTracker,
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
    #[error("storages did not become ACTIVE within {0:?}")]
    NotReady(Duration),
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("--groups must be between 1 and 200")]
    BadGroupCount,
}

impl LocalCluster {
    pub async fn start(opts: LocalOptions) -> Result<Self, LocalError> {
        if !(1..=200).contains(&opts.groups) {
            return Err(LocalError::BadGroupCount);
        }
        let mut tcfg = opts.config.tracker.clone();
        tcfg.bind = opts.tracker_addr.clone();
        tcfg.base_path = opts.data_dir.join("tracker");
        let tracker = tracker::start(tcfg)
            .await
            .map_err(|source| LocalError::Start {
                what: format!("tracker on {}", opts.tracker_addr),
                source,
            })?;
        let mut storages = Vec::new();
        for i in 0..opts.groups {
            let group = format!("group{}", i + 1);
            let ip = Ipv4Addr::from(u32::from(opts.first_storage_ip) + i as u32);
            let mut scfg = opts.config.storage.clone();
            scfg.group_name = group.clone();
            scfg.bind = format!("{ip}:{}", opts.storage_port);
            scfg.base_path = opts.data_dir.join(format!("storage-{group}"));
            scfg.store_paths = Vec::new();
            scfg.tracker_servers = vec![tracker.addr.to_string()];
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
        let cluster = LocalCluster { tracker, storages };
        cluster.wait_active(Duration::from_secs(60)).await?;
        Ok(cluster)
    }

    /// Waits until the tracker lists every storage as ACTIVE.
    pub async fn wait_active(&self, limit: Duration) -> Result<(), LocalError> {
        let client = Client::new(ClientConfig::new(vec![self.tracker.addr.to_string()])).await?;
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let mut active = 0;
            for s in &self.storages {
                let group = &s.node.config.group_name;
                if let Ok(list) = client.list_storages(group).await {
                    active += list
                        .iter()
                        .filter(|m| m.status == StorageStatus::Active as u8)
                        .count();
                }
            }
            if active >= self.storages.len() {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                return Err(LocalError::NotReady(limit));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// One line per node, for scripts: `tracker ADDR`, `storage GROUP ADDR`.
    pub fn describe(&self) -> Vec<String> {
        let mut lines = vec![format!("tracker {}", self.tracker.addr)];
        for s in &self.storages {
            let mut line = format!("storage {} {}", s.node.config.group_name, s.addr);
            if let Some(http) = s.http_addr {
                line.push_str(&format!(" http={http}"));
            }
            lines.push(line);
        }
        lines
    }

    pub async fn stop(self) {
        for s in self.storages {
            s.stop(Duration::from_secs(5)).await;
        }
        self.tracker.stop(Duration::from_secs(2)).await;
    }
}
