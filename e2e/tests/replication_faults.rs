//! Group replication under faults, with real processes: a member killed with
//! SIGKILL during uploads, the source killed after acknowledging uploads, and a
//! member whose disk was wiped.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use fdfs_e2e::{NodeProcess, active_count, upload_to, wait_for};
use fdfs_node::client::{Client, ClientConfig};
use fdfs_node::fileid::FileId;

const TRACKER: &str = "127.0.26.1:22122";

fn storage_toml(dir: &Path, ip: &str) -> anyhow::Result<PathBuf> {
    let path = dir.join(format!("{ip}.toml"));
    std::fs::write(
        &path,
        format!(
            "bind = \"{ip}:23000\"\ngroup_name = \"group1\"\nbase_path = \"{}\"\nsubdir_count_per_path = 4\n\
             heart_beat_interval = 1\ntracker_servers = [\"{TRACKER}\"]\n",
            dir.join(ip).display()
        ),
    )?;
    Ok(path)
}

fn start_storage(cfg: &Path) -> anyhow::Result<NodeProcess> {
    NodeProcess::start(&["storage", "--config", &cfg.to_string_lossy()])
}

fn on_disk(dir: &Path, ip: &str, id: &FileId) -> PathBuf {
    dir.join(ip).join(id.remote.relative_path())
}

fn body(i: usize) -> Vec<u8> {
    (0..(200 + i * 37 % 3000))
        .map(|j| ((i * 13 + j) % 256) as u8)
        .collect()
}

#[test]
fn members_survive_kills_and_a_wiped_disk() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let d = dir.path();
    let _tracker = NodeProcess::start(&[
        "tracker",
        "--bind",
        TRACKER,
        "--base-path",
        &d.join("tracker").to_string_lossy(),
    ])?;
    let (a_cfg, b_cfg) = (
        storage_toml(d, "127.0.26.2")?,
        storage_toml(d, "127.0.26.3")?,
    );
    let mut a = start_storage(&a_cfg)?;
    let mut b = start_storage(&b_cfg)?;
    let a_addr: SocketAddr = "127.0.26.2:23000".parse()?;
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let client = Client::new(ClientConfig::new(vec![TRACKER.into()])).await?;
        wait_for("both members ACTIVE", Duration::from_secs(90), async || {
            active_count(&client, "group1").await == 2
        })
        .await?;

        // 1. SIGKILL B in the middle of a stream of uploads to A; every acknowledged
        //    upload stays readable through the tracker the whole time.
        let mut ids = Vec::new();
        for i in 0..300 {
            if i == 100 {
                b.kill()?;
            }
            let id = upload_to(&client, a_addr, &body(i)).await?;
            let back = client.download_bytes(&id, 0, 0).await?;
            anyhow::ensure!(back == body(i), "{id} unreadable right after its upload");
            ids.push(id);
        }
        b = start_storage(&b_cfg)?;
        wait_for(
            "B converged after SIGKILL",
            Duration::from_secs(90),
            async || ids.iter().all(|id| on_disk(d, "127.0.26.3", id).exists()),
        )
        .await?;
        for (i, id) in ids.iter().enumerate() {
            anyhow::ensure!(
                std::fs::read(on_disk(d, "127.0.26.3", id))? == body(i),
                "{id} corrupt on B"
            );
        }

        // 2. SIGKILL the source A right after acknowledged uploads: what B received stays readable.
        wait_for("both ACTIVE again", Duration::from_secs(90), async || {
            active_count(&client, "group1").await == 2
        })
        .await?;
        let mut fresh = Vec::new();
        for i in 300..400 {
            fresh.push(upload_to(&client, a_addr, &body(i)).await?);
        }
        wait_for("some of them on B", Duration::from_secs(30), async || {
            fresh.iter().any(|id| on_disk(d, "127.0.26.3", id).exists())
        })
        .await?;
        a.kill()?;
        wait_for("A seen down", Duration::from_secs(30), async || {
            active_count(&client, "group1").await == 1
        })
        .await?;
        let mut readable = 0;
        for (k, id) in fresh.iter().enumerate() {
            if on_disk(d, "127.0.26.3", id).exists() {
                let back = client.download_bytes(id, 0, 0).await?;
                anyhow::ensure!(back == body(300 + k), "{id} wrong through B");
                readable += 1;
            }
        }
        anyhow::ensure!(readable > 0);
        a = start_storage(&a_cfg)?;
        wait_for(
            "group converged after A returns",
            Duration::from_secs(90),
            async || fresh.iter().all(|id| on_disk(d, "127.0.26.3", id).exists()),
        )
        .await?;

        // 3. Wipe B's disk: it rebuilds everything from A.
        b.kill()?;
        std::fs::remove_dir_all(d.join("127.0.26.3"))?;
        b = start_storage(&b_cfg)?;
        let all: Vec<(usize, FileId)> = (0..300)
            .zip(ids.iter().cloned())
            .chain((300..400).zip(fresh.iter().cloned()))
            .collect();
        wait_for("B rebuilt from A", Duration::from_secs(120), async || {
            all.iter()
                .all(|(_, id)| on_disk(d, "127.0.26.3", id).exists())
        })
        .await?;
        for (i, id) in &all {
            anyhow::ensure!(
                std::fs::read(on_disk(d, "127.0.26.3", id))? == body(*i),
                "{id} corrupt after rebuild"
            );
        }
        wait_for(
            "both ACTIVE at the end",
            Duration::from_secs(90),
            async || active_count(&client, "group1").await == 2,
        )
        .await?;
        anyhow::Ok(())
    })?;
    drop((a, b));
    Ok(())
}
