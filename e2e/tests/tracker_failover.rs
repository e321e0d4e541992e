//! Three tracker processes and two groups of two storage processes; the leader
//! tracker is killed (SIGKILL) in the middle of a stream of client operations,
//! and not one operation fails.

use std::net::SocketAddr;
use std::time::Duration;

use fdfs_e2e::{NodeProcess, wait_for};
use fdfs_node::client::{Client, ClientConfig};
use fdfs_node::proto::StorageStatus;

const TRACKERS: [&str; 3] = ["127.0.40.1:22122", "127.0.40.2:22122", "127.0.40.3:22122"];

async fn leaders(trackers: &[SocketAddr]) -> Vec<Option<String>> {
    let mut out = Vec::new();
    for t in trackers {
        let one = Client::new(ClientConfig::new(vec![t.to_string()])).await;
        out.push(match one {
            Ok(c) => c.leader().await.ok(),
            Err(_) => None,
        });
    }
    out
}

#[test]
fn killing_the_leader_tracker_fails_no_client_operation() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let conf = dir.path().join("tracker.toml");
    std::fs::write(&conf, "leader_ping_interval_ms = 300\n")?;
    let conf = conf.to_string_lossy().into_owned();
    let mut trackers = Vec::new();
    for (i, t) in TRACKERS.iter().enumerate() {
        let base = dir.path().join(format!("t{i}"));
        let p = NodeProcess::start(&[
            "tracker",
            "--config",
            &conf,
            "--bind",
            t,
            "--base-path",
            &base.to_string_lossy(),
        ])?;
        assert_eq!(p.lines[0], format!("tracker {t}"));
        trackers.push(p);
    }
    let sconf = dir.path().join("storage.toml");
    std::fs::write(&sconf, "subdir_count_per_path = 4\n")?;
    let sconf = sconf.to_string_lossy().into_owned();
    let mut storages = Vec::new();
    for (i, (group, ip)) in [
        ("group1", "127.0.40.11"),
        ("group1", "127.0.40.12"),
        ("group2", "127.0.40.13"),
        ("group2", "127.0.40.14"),
    ]
    .into_iter()
    .enumerate()
    {
        let base = dir.path().join(format!("s{i}"));
        let bind = format!("{ip}:23000");
        let mut args = vec![
            "storage",
            "--config",
            &sconf,
            "--bind",
            &bind,
            "--group",
            group,
            "--base-path",
        ];
        let base = base.to_string_lossy().into_owned();
        args.push(&base);
        for t in TRACKERS {
            args.extend(["--tracker", t]);
        }
        storages.push(NodeProcess::start(&args)?);
    }

    let addrs: Vec<SocketAddr> = TRACKERS
        .iter()
        .map(|t| t.parse())
        .collect::<Result<_, _>>()?;
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        // Every tracker sees the first member of each group ACTIVE, and all agree on the leader.
        for t in &addrs {
            let c = Client::new(ClientConfig::new(vec![t.to_string()])).await?;
            wait_for(
                "first members ACTIVE",
                Duration::from_secs(60),
                async || {
                    let mut ok = true;
                    for (g, ip) in [("group1", "127.0.40.11"), ("group2", "127.0.40.13")] {
                        ok &= c.list_storages(g).await.is_ok_and(|l| {
                            l.len() == 2
                                && l.iter()
                                    .any(|s| s.ip == ip && s.status == StorageStatus::Active as u8)
                        });
                    }
                    ok
                },
            )
            .await?;
        }
        wait_for("one leader", Duration::from_secs(60), async || {
            leaders(&addrs).await == vec![Some(TRACKERS[2].to_owned()); 3]
        })
        .await?;

        let mut cfg = ClientConfig::new(TRACKERS.iter().map(|t| t.to_string()).collect());
        cfg.connect_timeout = Duration::from_secs(2);
        cfg.network_timeout = Duration::from_secs(10);
        let client = Client::new(cfg).await?;
        let mut failures = Vec::new();
        let mut kept = Vec::new();
        for i in 0..240u32 {
            if i == 80 {
                trackers[2].kill()?;
            }
            let data: Vec<u8> = (0..(1000 + i * 37)).map(|b| (b * 31 + i) as u8).collect();
            let r = async {
                let id = client.upload_bytes(&data, "bin", None).await?;
                let back = client.download_bytes(&id, 0, 0).await?;
                anyhow::ensure!(back == data, "{id}: content differs");
                if i % 2 == 0 {
                    client.delete(&id).await?;
                } else {
                    kept.push((id, data.clone()));
                }
                anyhow::Ok(())
            }
            .await;
            if let Err(e) = r {
                failures.push(format!("op {i}: {e:#}"));
            }
        }
        assert!(failures.is_empty(), "failed operations: {failures:#?}");
        // The survivors elect a new leader: the greater of the two.
        wait_for("a new leader", Duration::from_secs(60), async || {
            leaders(&addrs[..2]).await == vec![Some(TRACKERS[1].to_owned()); 2]
        })
        .await?;
        for (id, data) in &kept {
            assert!(client.download_bytes(id, 0, 0).await? == *data, "{id}");
        }
        anyhow::Ok(())
    })?;
    drop(storages);
    drop(trackers);
    Ok(())
}
