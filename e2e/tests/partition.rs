//! A network partition between the two members of a group, with real network namespaces:
//! member A (and the tracker) on one side of a veth pair, member B on the other. Uploads
//! and a delete go on at A while the link is down; once it is up again, B ends with exactly
//! A's files, byte for byte.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::ensure;
use fdfs_e2e::{NodeProcess, in_netns, ip, upload_to, wait_for};
use fdfs_node::client::{Client, ClientConfig};
use fdfs_node::fileid::FileId;

const A_IP: &str = "10.77.0.1";
const B_IP: &str = "10.77.0.2";

/// Two network namespaces joined by a veth pair; deleted (with their links) when dropped.
struct Link {
    a: String,
    b: String,
}

impl Link {
    fn new() -> anyhow::Result<Self> {
        let id = std::process::id();
        let link = Link {
            a: format!("fdfs-a-{id}"),
            b: format!("fdfs-b-{id}"),
        };
        ip(&["netns", "add", &link.a])?;
        ip(&["netns", "add", &link.b])?;
        ip(&[
            "link", "add", "veth-a", "netns", &link.a, "type", "veth", "peer", "name", "veth-b",
            "netns", &link.b,
        ])?;
        for (ns, dev, addr) in [(&link.a, "veth-a", A_IP), (&link.b, "veth-b", B_IP)] {
            ip(&["-n", ns, "addr", "add", &format!("{addr}/24"), "dev", dev])?;
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
            ip(&["-n", ns, "link", "set", dev, "up"])?;
        }
        Ok(link)
    }

    /// Cuts (`false`) or restores (`true`) the link between the two sides.
    fn set_up(&self, up: bool) -> anyhow::Result<()> {
        ip(&[
            "-n",
            &self.a,
            "link",
            "set",
            "veth-a",
            if up { "up" } else { "down" },
        ])
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        let _ = ip(&["netns", "del", &self.a]);
        let _ = ip(&["netns", "del", &self.b]);
    }
}

fn storage_toml(dir: &Path, ip: &str) -> anyhow::Result<PathBuf> {
    let path = dir.join(format!("{ip}.toml"));
    std::fs::write(
        &path,
        format!(
            "bind = \"{ip}:23000\"\ngroup_name = \"group1\"\nbase_path = \"{}\"\n\
             subdir_count_per_path = 1\nheart_beat_interval = 1\nnetwork_timeout = 5\n\
             tracker_servers = [\"{A_IP}:22122\"]\n",
            dir.join(ip).display()
        ),
    )?;
    Ok(path)
}

fn body(i: usize) -> Vec<u8> {
    (0..(1000 + i * 997 % 60_000))
        .map(|j| ((i * 17 + j) % 251) as u8)
        .collect()
}

fn on_disk(dir: &Path, ip: &str, id: &FileId) -> PathBuf {
    dir.join(ip).join(id.remote.relative_path())
}

#[test]
fn a_partitioned_member_ends_with_exactly_its_peers_files() -> anyhow::Result<()> {
    let link = Link::new()?;
    let dir = tempfile::tempdir()?;
    let d = dir.path().to_path_buf();
    let tracker_toml = d.join("tracker.toml");
    // Notices a silent member within seconds.
    std::fs::write(
        &tracker_toml,
        format!(
            "bind = \"{A_IP}:22122\"\nbase_path = \"{}\"\ncheck_active_interval = 3\n",
            d.join("tracker").display()
        ),
    )?;
    let _tracker = NodeProcess::start_in_netns(
        &link.a,
        &["tracker", "--config", &tracker_toml.to_string_lossy()],
    )?;
    let a_cfg = storage_toml(&d, A_IP)?;
    let b_cfg = storage_toml(&d, B_IP)?;
    let _a =
        NodeProcess::start_in_netns(&link.a, &["storage", "--config", &a_cfg.to_string_lossy()])?;
    let _b =
        NodeProcess::start_in_netns(&link.b, &["storage", "--config", &b_cfg.to_string_lossy()])?;

    let (ids, deleted) = {
        let d = d.clone();
        let a_side = link.a.clone();
        in_netns(&link.a.clone(), async move || {
            let client = Client::new(ClientConfig::new(vec![format!("{A_IP}:22122")])).await?;
            let a_addr: std::net::SocketAddr = format!("{A_IP}:23000").parse()?;
            let active = async || {
                client
                    .list_storages("group1")
                    .await
                    .map(|l| l.iter().filter(|m| m.status == 7).count())
                    .unwrap_or(0)
            };
            wait_for("both members ACTIVE", Duration::from_secs(90), async || {
                active().await == 2
            })
            .await?;
            let mut ids = Vec::new();
            for i in 0..40 {
                ids.push(upload_to(&client, a_addr, &body(i)).await?);
            }
            wait_for(
                "the first files on B",
                Duration::from_secs(60),
                async || ids.iter().all(|id| on_disk(&d, B_IP, id).exists()),
            )
            .await?;

            // The link goes down: A goes on taking uploads and a delete.
            ip(&["-n", &a_side, "link", "set", "veth-a", "down"])?;
            for i in 40..120 {
                ids.push(upload_to(&client, a_addr, &body(i)).await?);
            }
            let deleted = ids.remove(3);
            client.delete(&deleted).await?;
            wait_for(
                "the tracker sees B gone",
                Duration::from_secs(30),
                async || active().await == 1,
            )
            .await?;
            ensure!(
                !on_disk(&d, B_IP, &ids[ids.len() - 1]).exists(),
                "a file crossed a link that is down"
            );
            anyhow::Ok((ids, deleted))
        })?
    };

    // The link comes back: B catches up without help.
    link.set_up(true)?;
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(wait_for(
        "B identical to A",
        Duration::from_secs(120),
        async || {
            !on_disk(&d, B_IP, &deleted).exists()
                && ids.iter().all(|id| {
                    std::fs::read(on_disk(&d, B_IP, id))
                        .is_ok_and(|b| std::fs::read(on_disk(&d, A_IP, id)).is_ok_and(|a| a == b))
                })
        },
    ))?;
    for (n, id) in ids.iter().enumerate() {
        let i = if n < 3 { n } else { n + 1 };
        ensure!(
            std::fs::read(on_disk(&d, A_IP, id))? == body(i),
            "{id} differs from what was uploaded"
        );
    }
    ensure!(!on_disk(&d, A_IP, &deleted).exists());
    Ok(())
}
