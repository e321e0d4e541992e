//! FastDFS-compatible file service node: protocol codec, tracker and storage
//! roles, async client, and the all-in-one `local` mode.

pub mod bench;
pub mod client;
pub mod config;
pub mod disk;
pub mod fileid;
pub mod fsutil;
pub mod http;
pub mod local;
pub mod proto;
pub mod retry;
pub mod server;
pub mod storage;
pub mod tracker;

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
