//! Trunk storage under faults, with real processes: the group's trunk server killed with
//! SIGKILL while the other member asks it for slots, the other member taking over, and the
//! old trunk server started again on the same data. No acknowledged file is lost and no two
//! files share a byte of a trunk file.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use fdfs_e2e::{NodeProcess, active_count, upload_to, wait_for};
use fdfs_node::client::{Client, ClientConfig};
use fdfs_node::fileid::FileId;

const TRACKER: &str = "127.0.28.1:22122";
const A: &str = "127.0.28.2";
const B: &str = "127.0.28.3";

/// Store path, trunk id, its directory (HH, LL), slot offset and size.
type SlotPlace = (u8, u32, (u8, u8), u32, u32);

fn write(dir: &Path, name: &str, text: String) -> anyhow::Result<PathBuf> {
    let path = dir.join(name);
    std::fs::write(&path, text)?;
    Ok(path)
}

fn storage_toml(dir: &Path, ip: &str) -> anyhow::Result<PathBuf> {
    write(
        dir,
        &format!("{ip}.toml"),
        format!(
            "bind = \"{ip}:23000\"\ngroup_name = \"group1\"\nbase_path = \"{}\"\n\
             subdir_count_per_path = 4\nheart_beat_interval = 1\n\
             tracker_servers = [\"{TRACKER}\"]\n",
            dir.join(ip).display()
        ),
    )
}

fn start_storage(cfg: &Path) -> anyhow::Result<NodeProcess> {
    NodeProcess::start(&["storage", "--config", &cfg.to_string_lossy()])
}

fn body(i: usize) -> Vec<u8> {
    let len = 100 + (i * 7919) % 20_000;
    (0..len).map(|j| ((i * 131 + j * 17) % 251) as u8).collect()
}

fn addr(ip: &str) -> SocketAddr {
    SocketAddr::new(ip.parse().expect("ip"), 23000)
}

/// The trunk servers the tracker lists (by IP).
async fn trunk_servers(client: &Client) -> Vec<String> {
    client
        .list_storages("group1")
        .await
        .map(|l| {
            l.iter()
                .filter(|s| s.if_trunk_server && s.status == 7)
                .map(|s| s.ip.clone())
                .collect()
        })
        .unwrap_or_default()
}

/// Uploads `count` files to `ip` from 4 connections at once, numbered from `first`; every
/// acknowledged one is recorded in `done`.
async fn upload_many(
    client: &Arc<Client>,
    ip: &str,
    first: usize,
    count: usize,
    done: &Arc<std::sync::Mutex<Vec<(FileId, usize)>>>,
    acknowledged: &Arc<AtomicUsize>,
) -> anyhow::Result<()> {
    let mut tasks = Vec::new();
    for t in 0..4 {
        let (client, done, acknowledged) = (client.clone(), done.clone(), acknowledged.clone());
        let to = addr(ip);
        tasks.push(tokio::spawn(async move {
            for i in (first + t..first + count).step_by(4) {
                let id = upload_to(&client, to, &body(i)).await?;
                done.lock().expect("ids").push((id, i));
                acknowledged.fetch_add(1, Ordering::SeqCst);
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(())
}

#[test]
fn a_trunk_server_killed_mid_allocation_loses_no_file_and_gives_no_slot_twice() -> anyhow::Result<()>
{
    let dir = tempfile::tempdir()?;
    let d = dir.path();
    let tracker_cfg = write(
        d,
        "tracker.toml",
        format!(
            "bind = \"{TRACKER}\"\nbase_path = \"{}\"\nreserved_storage_space = \"0\"\n\
             check_active_interval = 5\n[trunk]\nuse_trunk_file = true\n\
             slot_max_size = 65536\ntrunk_file_size = 4194304\n",
            d.join("tracker").display()
        ),
    )?;
    let _tracker = NodeProcess::start(&["tracker", "--config", &tracker_cfg.to_string_lossy()])?;
    let (a_cfg, b_cfg) = (storage_toml(d, A)?, storage_toml(d, B)?);
    let mut a = start_storage(&a_cfg)?;
    let _b = start_storage(&b_cfg)?;
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let client = Arc::new(Client::new(ClientConfig::new(vec![TRACKER.into()])).await?);
        wait_for("A the trunk server", Duration::from_secs(90), async || {
            active_count(&client, "group1").await == 2 && trunk_servers(&client).await == [A]
        })
        .await?;
        let done = Arc::new(std::sync::Mutex::new(Vec::new()));
        let acknowledged = Arc::new(AtomicUsize::new(0));
        // B asks A for its slots once it has heard of A.
        wait_for("a trunk slot from A", Duration::from_secs(30), async || {
            let id = upload_to(&client, addr(B), &body(0)).await;
            id.is_ok_and(|id| id.remote.trunk_slot().is_some())
        })
        .await?;

        // SIGKILL A while four connections upload to B, which asks A for every slot.
        let uploads = {
            let (client, done, acknowledged) = (client.clone(), done.clone(), acknowledged.clone());
            tokio::spawn(async move { upload_many(&client, B, 1, 600, &done, &acknowledged).await })
        };
        wait_for("uploads under way", Duration::from_secs(60), async || {
            acknowledged.load(Ordering::SeqCst) >= 150
        })
        .await?;
        a.kill()?;
        uploads.await??;
        // B takes over as trunk server, then A comes back on the same data.
        wait_for("B the trunk server", Duration::from_secs(90), async || {
            trunk_servers(&client).await == [B]
        })
        .await?;
        wait_for("a trunk slot from B", Duration::from_secs(30), async || {
            let id = upload_to(&client, addr(B), &body(0)).await;
            id.is_ok_and(|id| id.remote.trunk_slot().is_some())
        })
        .await?;
        upload_many(&client, B, 1000, 100, &done, &acknowledged).await?;
        a = start_storage(&a_cfg)?;
        wait_for("A back", Duration::from_secs(90), async || {
            active_count(&client, "group1").await == 2
        })
        .await?;
        wait_for(
            "A asking B for slots",
            Duration::from_secs(30),
            async || {
                let id = upload_to(&client, addr(A), &body(0)).await;
                id.is_ok_and(|id| id.remote.trunk_slot().is_some())
            },
        )
        .await?;
        upload_many(&client, A, 2000, 100, &done, &acknowledged).await?;
        upload_many(&client, B, 3000, 100, &done, &acknowledged).await?;

        let done = done.lock().expect("ids").clone();
        anyhow::ensure!(done.len() == 900, "{} acknowledged", done.len());
        // While A was down and B not yet the trunk server, B stored small files on their
        // own; once either trunk server served, every small file went into a slot.
        let trunked = |range: std::ops::Range<usize>| {
            done.iter()
                .filter(|(id, i)| range.contains(i) && id.remote.trunk_slot().is_some())
                .count()
        };
        anyhow::ensure!(trunked(1..150) > 0, "no slot from A before it was killed");
        anyhow::ensure!(
            trunked(1000..4000) == 300,
            "{} of 300 after",
            trunked(1000..4000)
        );

        // No two files share a byte of one trunk file, and one trunk id is one file.
        let mut slots: Vec<SlotPlace> = done
            .iter()
            .filter_map(|(id, _)| {
                let s = id.remote.trunk_slot()?;
                Some((
                    id.remote.store_path,
                    s.id,
                    (id.remote.hh, id.remote.ll),
                    s.offset,
                    s.size,
                ))
            })
            .collect();
        slots.sort();
        for w in slots.windows(2) {
            let (x, y) = (w[0], w[1]);
            if (x.0, x.1) == (y.0, y.1) {
                anyhow::ensure!(x.2 == y.2, "trunk file {} made twice: {x:?} {y:?}", x.1);
                anyhow::ensure!(x.3 + x.4 <= y.3, "{x:?} and {y:?} overlap");
            }
        }

        // Every acknowledged file reads back whole from both members.
        for (id, i) in &done {
            for ip in [A, B] {
                wait_for(
                    &format!("file {i} ({id}) on {ip}"),
                    Duration::from_secs(90),
                    async || {
                        let mut out = Vec::new();
                        client
                            .download_from(addr(ip), id, 0, 0, &mut out)
                            .await
                            .is_ok()
                            && out == body(*i)
                    },
                )
                .await?;
            }
        }
        anyhow::Ok(())
    })?;
    drop(a);
    Ok(())
}
