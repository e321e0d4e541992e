//! Connection hygiene under a flood of silent connections: one address cannot take every
//! slot, silent connections are closed after the network timeout instead of the idle one,
//! and other clients keep being served meanwhile.

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use common::wait_until;
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

/// A tracker and a storage with `max_connections` 16 and the given network timeout, both
/// with their HTTP sides on.
async fn small_cluster(
    dir: &std::path::Path,
    network_timeout: u64,
) -> (
    fdfs_node::tracker::RunningTracker,
    fdfs_node::storage::RunningStorage,
) {
    guarded_cluster(dir, network_timeout, &[]).await
}

/// `small_cluster` with `allow_hosts` on both roles.
async fn guarded_cluster(
    dir: &std::path::Path,
    network_timeout: u64,
    allow_hosts: &[&str],
) -> (
    fdfs_node::tracker::RunningTracker,
    fdfs_node::storage::RunningStorage,
) {
    let allow_hosts: Vec<String> = allow_hosts.iter().map(|h| (*h).to_owned()).collect();
    let tracker_config = fdfs_node::config::TrackerConfig {
        http_bind: "127.0.0.1:0".into(),
        reserved_storage_space: fdfs_node::config::ReservedSpace::Mb(0),
        max_connections: 16,
        network_timeout,
        header_timeout: network_timeout,
        allow_hosts: allow_hosts.clone(),
        ..Default::default()
    };
    let tracker = common::loopback_tracker(tracker_config, dir).await;
    let mut cfg = common::member_config(dir, "127.0.0.2", [tracker.addr], 0);
    cfg.max_connections = 16;
    cfg.network_timeout = network_timeout;
    cfg.header_timeout = network_timeout;
    cfg.http.bind = "127.0.0.2:0".into();
    cfg.allow_hosts = allow_hosts;
    let storage = common::start_member(cfg).await;
    wait_until("the storage ACTIVE", Duration::from_secs(30), async || {
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
    let mut floods = Vec::new();
    for (what, addr) in [("storage", storage.addr), ("tracker", tracker.addr)] {
        let mut flood = silent_flood(addr, FLOODER, 40).await;
        // One address holds at most half of the 16 slots: the rest are closed at once.
        wait_until(
            &format!("{what}: connections over the cap closed"),
            Duration::from_secs(10),
            async || closed(&mut flood).await >= 32,
        )
        .await;
        assert!(answers(addr, CLIENT).await, "{what} refused another client");
        floods.push(flood);
    }
    // With both floods held, a client keeps uploading and downloading through the tracker.
    let client = fdfs_node::client::Client::new(fdfs_node::client::ClientConfig::new(vec![
        tracker.addr.to_string(),
    ]))
    .await
    .expect("client");
    for i in 0..20u8 {
        let data = vec![i; 1000 + usize::from(i)];
        let id = client
            .upload_bytes(&data, "bin", None)
            .await
            .expect("upload during the flood");
        assert_eq!(
            client.download_bytes(&id, 0, 0).await.expect("download"),
            data
        );
    }
    // Heartbeats went on: the storage is still ACTIVE on its tracker.
    assert!(storage.node.is_active_everywhere());
    drop(floods);
}

#[tokio::test]
async fn silent_connections_are_closed_after_the_network_timeout() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (tracker, storage) = small_cluster(dir.path(), 2).await;
    for (what, addr) in [("storage", storage.addr), ("tracker", tracker.addr)] {
        let mut flood = silent_flood(addr, FLOODER, 6).await;
        // Not the idle timeout between requests (900 s): a connection that never sends a
        // header is closed after the network timeout (2 s).
        wait_until(
            &format!("{what}: every silent connection closed"),
            Duration::from_secs(30),
            async || closed(&mut flood).await == 6,
        )
        .await;
        assert!(answers(addr, CLIENT).await, "{what} stopped answering");
    }
}

/// One HTTP/1.1 GET from `from`: the status code, or None when the server closed first.
async fn http_get(addr: SocketAddr, from: Ipv4Addr, path: &str) -> Option<u16> {
    use tokio::io::AsyncWriteExt;
    let socket = TcpSocket::new_v4().expect("socket");
    socket
        .bind(SocketAddr::new(IpAddr::V4(from), 0))
        .expect("bind");
    let mut s = socket.connect(addr).await.ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: fdfs\r\nConnection: close\r\n\r\n");
    s.write_all(request.as_bytes()).await.ok()?;
    let mut reply = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut reply))
        .await
        .ok()?
        .ok()?;
    let text = String::from_utf8_lossy(&reply);
    text.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()
}

#[tokio::test]
async fn http_sides_cap_each_address_and_close_silent_connections() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (tracker, storage) = small_cluster(dir.path(), 2).await;
    let storage_http = storage.http_addr.expect("storage HTTP");
    let tracker_http = tracker.http_addr.expect("tracker HTTP");
    for (what, addr) in [("storage", storage_http), ("tracker", tracker_http)] {
        let mut flood = silent_flood(addr, FLOODER, 40).await;
        // Half of the 16 slots per address: the other 32 are closed at once.
        wait_until(
            &format!("{what} HTTP: connections over the cap closed"),
            Duration::from_secs(10),
            async || closed(&mut flood).await >= 32,
        )
        .await;
        assert_eq!(
            http_get(addr, CLIENT, "/healthz").await,
            Some(200),
            "{what}"
        );
        // The rest never send a header: closed after the network timeout (2 s), not kept.
        wait_until(
            &format!("{what} HTTP: every silent connection closed"),
            Duration::from_secs(30),
            async || closed(&mut flood).await == 40,
        )
        .await;
    }
}

#[tokio::test]
async fn allow_hosts_guards_the_tracker_and_both_http_sides() {
    const OUTSIDER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 22);
    let dir = tempfile::tempdir().expect("tempdir");
    // The storage itself (127.0.0.2) must reach its tracker; clients only from CLIENT.
    let (tracker, storage) = guarded_cluster(dir.path(), 600, &["127.0.0.2", "127.0.0.21"]).await;
    let client = fdfs_node::client::Client::new(fdfs_node::client::ClientConfig::new(vec![
        tracker.addr.to_string(),
    ]))
    .await
    .expect("client");
    // The test's own client connects from 127.0.0.1: refused by the tracker.
    assert!(client.upload_bytes(b"x", "txt", None).await.is_err());

    // Protocol ports: an allowed address is answered, another is closed unanswered.
    assert!(answers(tracker.addr, CLIENT).await);
    assert!(!answers(tracker.addr, OUTSIDER).await);
    assert!(answers(storage.addr, CLIENT).await);
    assert!(!answers(storage.addr, OUTSIDER).await);

    // HTTP: probes and metrics stay open to all; everything else is 403 outside the list.
    let storage_http = storage.http_addr.expect("storage HTTP");
    let tracker_http = tracker.http_addr.expect("tracker HTTP");
    let file = "/group1/M00/00/00/fwAAAmsHltmAfYkIAAAAZBVz5RY696.txt";
    assert_eq!(http_get(storage_http, OUTSIDER, file).await, Some(403));
    assert_eq!(http_get(storage_http, CLIENT, file).await, Some(404));
    assert_eq!(
        http_get(tracker_http, OUTSIDER, "/api/v1/cluster").await,
        Some(403)
    );
    assert_eq!(
        http_get(tracker_http, CLIENT, "/api/v1/cluster").await,
        Some(200)
    );
    for path in ["/healthz", "/metrics"] {
        assert_eq!(
            http_get(storage_http, OUTSIDER, path).await,
            Some(200),
            "{path}"
        );
        assert_eq!(
            http_get(tracker_http, OUTSIDER, path).await,
            Some(200),
            "{path}"
        );
    }
    // The storage kept its own place at the tracker.
    assert!(storage.node.is_active_everywhere());
}
