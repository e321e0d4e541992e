//! A member whose disk fills up: it cannot apply what its peer pushes, says so once in its
//! log, in its `/metrics` and in the tracker's cluster view, and catches up by itself once
//! space returns, ending with the same bytes as its peer.
//!
//! Member B runs on a 6 MiB tmpfs of its own mount namespace (the suite runs as root), 4 MiB
//! of it taken by a ballast file; the test frees the space by deleting the ballast through
//! `/proc/<pid>/root`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, ensure};
use fdfs_e2e::{NodeProcess, http_get, upload_to, wait_for};
use fdfs_node::client::{Client, ClientConfig};
use fdfs_node::fileid::FileId;

const TRACKER: &str = "127.0.32.1:22122";
const TRACKER_HTTP: &str = "127.0.32.1:8080";
const A: &str = "127.0.32.2";
const B: &str = "127.0.32.3";
const FILES: usize = 15;
const FILE_SIZE: usize = 200 * 1024;

fn storage_toml(dir: &Path, ip: &str, base: &Path) -> anyhow::Result<PathBuf> {
    let path = dir.join(format!("{ip}.toml"));
    std::fs::write(
        &path,
        format!(
            "bind = \"{ip}:23000\"\ngroup_name = \"group1\"\nbase_path = \"{}\"\n\
             subdir_count_per_path = 1\nheart_beat_interval = 1\n\
             tracker_servers = [\"{TRACKER}\"]\n[http]\nbind = \"{ip}:8888\"\n",
            base.display()
        ),
    )?;
    Ok(path)
}

fn body(i: usize) -> Vec<u8> {
    (0..FILE_SIZE).map(|j| ((i * 31 + j) % 253) as u8).collect()
}

/// B's problems as the tracker's cluster view lists them: (source, error).
async fn problems_in_view() -> Vec<(String, String)> {
    let Ok(addr) = TRACKER_HTTP.parse() else {
        return Vec::new();
    };
    let Ok((200, body)) = http_get(addr, "/api/v1/cluster").await else {
        return Vec::new();
    };
    let Ok(view) = serde_json::from_slice::<serde_json::Value>(&body) else {
        return Vec::new();
    };
    view["groups"][0]["storages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|s| s["addr"] == format!("{B}:23000"))
        .flat_map(|s| s["sync_problems"].as_array().cloned().unwrap_or_default())
        .map(|p| {
            (
                p["source"].as_str().unwrap_or_default().to_owned(),
                p["error"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// B's `fdfs_storage_sync_apply_blocked` line for pushes from A failing with ENOSPC.
async fn blocked_gauge() -> Option<String> {
    let addr = format!("{B}:8888").parse().ok()?;
    let (_, body) = http_get(addr, "/metrics").await.ok()?;
    String::from_utf8(body)
        .ok()?
        .lines()
        .find(|l| {
            l.starts_with("fdfs_storage_sync_apply_blocked{")
                && l.contains(&format!("source=\"{A}\""))
                && l.contains("error=\"ENOSPC\"")
        })
        .map(str::to_owned)
}

#[test]
fn a_full_member_says_so_and_catches_up_once_space_returns() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let d = dir.path();
    let _tracker = NodeProcess::start(&[
        "tracker",
        "--bind",
        TRACKER,
        "--http",
        TRACKER_HTTP,
        "--base-path",
        &d.join("tracker").to_string_lossy(),
    ])?;
    let a_cfg = storage_toml(d, A, &d.join(A))?;
    let _a = NodeProcess::start(&["storage", "--config", &a_cfg.to_string_lossy()])?;
    let b_disk = d.join(B);
    let b_cfg = storage_toml(d, B, &b_disk)?;
    let b_log = d.join("b.log");
    let b = NodeProcess::start_on_small_disk(
        &["storage", "--config", &b_cfg.to_string_lossy()],
        &b_disk,
        6,
        &b_log,
    )?;
    // B's disk as B sees it.
    let b_root = PathBuf::from(format!("/proc/{}/root", b.pid())).join(
        b_disk
            .strip_prefix("/")
            .context("an absolute temporary directory")?,
    );
    let ballast = b_root.join("ballast");
    std::fs::write(&ballast, vec![0u8; 4 * 1024 * 1024]).context("ballast on B's tmpfs")?;

    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let client = Client::new(ClientConfig::new(vec![TRACKER.into()])).await?;
        let a_addr: SocketAddr = format!("{A}:23000").parse()?;
        wait_for("both members ACTIVE", Duration::from_secs(90), async || {
            client
                .list_storages("group1")
                .await
                .is_ok_and(|l| l.iter().filter(|m| m.status == 7).count() == 2)
        })
        .await?;

        // 3 MB to A, with 2 MB left on B: its writes fail with ENOSPC.
        let mut ids = Vec::new();
        for i in 0..FILES {
            ids.push(upload_to(&client, a_addr, &body(i)).await?);
        }
        wait_for(
            "B's metrics show the blocked pushes",
            Duration::from_secs(60),
            async || blocked_gauge().await.is_some_and(|l| l.ends_with(" 1")),
        )
        .await?;
        wait_for(
            "the tracker lists B's problem",
            Duration::from_secs(60),
            async || problems_in_view().await == vec![(A.to_owned(), "ENOSPC".to_owned())],
        )
        .await?;
        let on_b = |id: &FileId| b_root.join(id.remote.relative_path());
        ensure!(
            ids.iter().any(|id| !on_b(id).exists()),
            "every file reached B although its disk is full"
        );

        // Space returns: B catches up by itself, with A's bytes, and the problem clears.
        std::fs::remove_file(&ballast)?;
        wait_for("B holds every file", Duration::from_secs(90), async || {
            ids.iter()
                .enumerate()
                .all(|(i, id)| std::fs::read(on_b(id)).is_ok_and(|b| b == body(i)))
        })
        .await?;
        wait_for("B's gauge back to 0", Duration::from_secs(30), async || {
            blocked_gauge().await.is_some_and(|l| l.ends_with(" 0"))
        })
        .await?;
        wait_for(
            "the tracker's view clear",
            Duration::from_secs(30),
            async || problems_in_view().await.is_empty(),
        )
        .await?;
        anyhow::Ok(())
    })?;
    // One WARN for the cause, however many times A retried.
    let log = std::fs::read_to_string(&b_log)?;
    let warnings = log
        .lines()
        .filter(|l| l.contains("cannot apply what this peer pushes"))
        .count();
    ensure!(warnings == 1, "{warnings} warnings in B's log:\n{log}");
    ensure!(
        log.contains("applies what this peer pushes again"),
        "no recovery line in B's log:\n{log}"
    );
    Ok(())
}
