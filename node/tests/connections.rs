//! Connection hygiene under a flood of silent connections: one address cannot take every
//! slot, silent connections are closed after the network timeout instead of the idle one,
//! and other clients keep being served meanwhile.

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use common::wait_for;
use fdfs_node::client::Conn;
use fdfs_node::proto::{Command, Status};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpSocket, TcpStream};

/// Opens `n` connections to `addr` from `from` and never sends a byte on them.
async fn silent_flood(addr: SocketAddr, from: Ipv4Addr, n: usize) -> Vec<TcpStream> {
    let mut flood = Vec::with_capacity(n);
    for _ in 0..n {
        let socket = TcpSocket::new_v4().expect("socket");
        socket
            .bind(SocketAddr::new(IpAddr::V4(from), 0))
            .expect("bind");
        flood.push(socket.connect(addr).await.expect("connect"));
    }
    flood
}

/// How many of the connections the server has closed.
async fn closed(flood: &mut [TcpStream]) -> usize {
    let mut n = 0;
    for s in flood {
        let mut b = [0u8; 1];
        if let Ok(Ok(0) | Err(_)) =
            tokio::time::timeout(Duration::from_millis(1), s.read(&mut b)).await
        {
            n += 1;
        }
    }
    n
}

/// An ACTIVE_TEST from another address succeeds.
async fn answers(addr: SocketAddr, from: Ipv4Addr) -> bool {
    let Ok(mut c) = Conn::connect(
        addr,
        Duration::from_secs(2),
        Duration::from_secs(2),
        Some(IpAddr::V4(from)),
    )
    .await
    else {
        return false;
    };
    matches!(
        c.call(Command::ActiveTest, &[], 16).await,
        Ok((Status::Ok, _))
    )
}

/// A tracker and a storage with `max_connections` 16 and the given network timeout.
async fn small_cluster(
    dir: &std::path::Path,
    network_timeout: u64,
) -> (
    fdfs_node::tracker::RunningTracker,
    fdfs_node::storage::RunningStorage,
) {
    let tracker = fdfs_node::tracker::start(fdfs_node::config::TrackerConfig {
        bind: "127.0.0.1:0".into(),
        base_path: dir.join("tracker"),
        reserved_storage_space: fdfs_node::config::ReservedSpace::Mb(0),
        max_connections: 16,
        network_timeout,
        ..Default::default()
    })
    .await
    .expect("tracker");
    let mut cfg = common::member_config(dir, "127.0.0.2", &tracker, 0);
    cfg.max_connections = 16;
    cfg.network_timeout = network_timeout;
    let storage = fdfs_node::storage::start(cfg).await.expect("storage");
    wait_for("the storage ACTIVE", Duration::from_secs(30), async || {
        storage.node.is_active_everywhere()
    })
    .await;
    (tracker, storage)
}

const FLOODER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 20);
const CLIENT: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 21);

#[tokio::test]
async fn one_address_cannot_take_every_slot() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A network timeout far beyond the test: only the per-address cap is at work.
    let (tracker, storage) = small_cluster(dir.path(), 600).await;
    for (what, addr) in [("storage", storage.addr), ("tracker", tracker.addr)] {
        let mut flood = silent_flood(addr, FLOODER, 40).await;
        // One address holds at most half of the 16 slots: the rest are closed at once.
        wait_for(
            &format!("{what}: connections over the cap closed"),
            Duration::from_secs(10),
            async || closed(&mut flood).await >= 32,
        )
        .await;
        assert!(answers(addr, CLIENT).await, "{what} refused another client");
    }
    // Heartbeats went on: the storage is still ACTIVE on its tracker.
    assert!(storage.node.is_active_everywhere());
}

#[tokio::test]
async fn silent_connections_are_closed_after_the_network_timeout() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (tracker, storage) = small_cluster(dir.path(), 2).await;
    for (what, addr) in [("storage", storage.addr), ("tracker", tracker.addr)] {
        let mut flood = silent_flood(addr, FLOODER, 6).await;
        // Not the idle timeout between requests (900 s): a connection that never sends a
        // header is closed after the network timeout (2 s).
        wait_for(
            &format!("{what}: every silent connection closed"),
            Duration::from_secs(30),
            async || closed(&mut flood).await == 6,
        )
        .await;
        assert!(answers(addr, CLIENT).await, "{what} stopped answering");
    }
}
