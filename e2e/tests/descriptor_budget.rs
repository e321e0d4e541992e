//! Running out of file descriptors: `fdfs-node local` under a 1,024 open-file limit (a
//! common systemd default) gets 1,300 idle HTTP connections. HTTP takes at most half of the
//! process's connection budget and closes the rest at once, so uploads, downloads, tracker
//! queries and state saves go on; once the flood ends, HTTP serves again.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, ensure};
use fdfs_e2e::{LocalProcess, http_get, wait_for};
use fdfs_node::client::{Client, ClientConfig};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpSocket, TcpStream};

const OPEN_FILES: u64 = 1024;
const FLOOD: usize = 1300;

/// Opens `n` connections to `addr`, spread over 13 source addresses, and sends nothing.
async fn flood(addr: SocketAddr, n: usize) -> anyhow::Result<Vec<TcpStream>> {
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let from = Ipv4Addr::new(127, 0, 31, 1 + (i % 13) as u8);
        let socket = TcpSocket::new_v4()?;
        socket.bind(SocketAddr::new(IpAddr::V4(from), 0))?;
        out.push(socket.connect(addr).await?);
    }
    Ok(out)
}

/// How many of `conns` the server has closed.
async fn closed(conns: &mut [TcpStream]) -> usize {
    let mut n = 0;
    for s in conns {
        let mut b = [0u8; 1];
        if let Ok(Ok(0) | Err(_)) =
            tokio::time::timeout(Duration::from_millis(1), s.read(&mut b)).await
        {
            n += 1;
        }
    }
    n
}

/// Where the storage saves its counters (FastDFS's `storage_stat.dat`).
fn stat_file(data: &Path) -> PathBuf {
    data.join("storage-group1/data/storage_stat.dat")
}

#[test]
fn idle_http_connections_cannot_starve_the_process_of_descriptors() -> anyhow::Result<()> {
    // This test holds 1,300 sockets itself.
    let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    rustix::process::setrlimit(
        rustix::process::Resource::Nofile,
        rustix::process::Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        },
    )?;
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    let config = dir.path().join("local.toml");
    // Silent connections stay for the whole test (their header deadline is 120 s); the
    // storage saves its counters every second.
    std::fs::write(
        &config,
        "[storage]\nsubdir_count_per_path = 4\nheader_timeout = 120\nsync_stat_file_interval = 1\n",
    )?;
    let config = config.to_string_lossy().into_owned();
    let local = LocalProcess::start_with_open_files(
        &data,
        &[
            "--tracker-addr",
            "127.0.30.1:22122",
            "--storage-ip",
            "127.0.30.2",
            "--config",
            &config,
        ],
        OPEN_FILES,
    )?;
    let http = *local.storage_http.first().context("storage HTTP address")?;
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let client = Client::new(ClientConfig::new(vec![local.tracker.to_string()])).await?;
        let before = client.upload_bytes(b"before the flood", "txt", None).await?;

        let mut conns = flood(http, FLOOD).await?;
        // (1,024 − 256 kept back) / 2 = 384 connections in the budget; HTTP holds at most
        // half of them, and closes the rest at once.
        let held_at_most = 192;
        wait_for("the HTTP connections over the cap closed", Duration::from_secs(60), async || {
            closed(&mut conns).await >= FLOOD - held_at_most
        })
        .await?;

        // Everything else goes on: uploads, downloads, tracker queries, state saves.
        let during = client.upload_bytes(b"during the flood", "txt", None).await?;
        ensure!(client.download_bytes(&during, 0, 0).await? == b"during the flood");
        ensure!(client.download_bytes(&before, 0, 0).await? == b"before the flood");
        ensure!(client.list_storages("group1").await?.len() == 1);
        let stats = stat_file(&data);
        wait_for("the counters saved with both uploads", Duration::from_secs(60), async || {
            std::fs::read_to_string(&stats)
                .is_ok_and(|t| t.lines().any(|l| l == "success_upload_count=2"))
        })
        .await?;

        // The flood ends: HTTP serves again.
        drop(conns);
        let path = format!("/{}", during);
        wait_for("HTTP serving again", Duration::from_secs(60), async || {
            matches!(http_get(http, &path).await, Ok((200, ref body)) if body == b"during the flood")
        })
        .await?;
        anyhow::Ok(())
    })?;
    let status = local.terminate()?;
    ensure!(status.success(), "fdfs-node local exited with {status}");
    Ok(())
}
