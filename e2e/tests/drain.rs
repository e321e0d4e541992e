//! Stopping under load: `fdfs-node local` gets SIGTERM while clients upload as the C and
//! Java clients do (Nagle on, header and body in separate writes). It must exit within its
//! drain bound, and every upload it acknowledged must be there after a restart, on both
//! members.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fdfs_e2e::LocalProcess;
use fdfs_node::client::{Client, ClientConfig, WriteProfile};
use fdfs_node::fileid::FileId;

const DRAIN_SECS: u64 = 4;

fn args() -> Vec<String> {
    [
        "--replicas",
        "2",
        "--tracker-addr",
        "127.0.27.1:22122",
        "--storage-ip",
        "127.0.27.2",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect()
}

fn body(i: usize) -> Vec<u8> {
    // Alternate a file read in one piece with one streamed in chunks.
    let len = if i.is_multiple_of(2) { 4096 } else { 300_000 };
    (0..len).map(|k| ((k * 13 + i * 7) % 251) as u8).collect()
}

async fn client(tracker: &str) -> anyhow::Result<Client> {
    let mut cfg = ClientConfig::new(vec![tracker.to_owned()]);
    cfg.write_profile = WriteProfile::Split;
    cfg.network_timeout = Duration::from_secs(10);
    Ok(Client::new(cfg).await?)
}

#[test]
fn a_loaded_node_exits_within_its_drain_bound_and_keeps_every_acknowledged_upload()
-> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    let drain = DRAIN_SECS.to_string();
    // Few data directories and beats every second: this test is about stopping, not about
    // the layout or how soon the second member is ACTIVE.
    let config = dir.path().join("local.toml");
    std::fs::write(
        &config,
        "[storage]\nsubdir_count_per_path = 4\nheart_beat_interval = 1\nstat_report_interval = 1\n\
         [storage.timers]\nsync_retry_ms = 100\nsync_retry_max_ms = 400\npeer_status_poll_ms = 100\n",
    )?;
    let mut start_args: Vec<String> = args();
    start_args.extend([
        "--drain-timeout".to_owned(),
        drain,
        "--config".to_owned(),
        config.to_string_lossy().into_owned(),
    ]);
    let argv: Vec<&str> = start_args.iter().map(String::as_str).collect();
    let rt = tokio::runtime::Runtime::new()?;

    let local = LocalProcess::start(&data, &argv)?;
    let tracker = local.tracker.to_string();
    let acked: Arc<Mutex<Vec<(FileId, usize)>>> = Arc::default();
    let loaders = rt.block_on(async {
        let client = Arc::new(client(&tracker).await?);
        // Both members must be ACTIVE before the load, or the second one is still copying.
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let members = client.list_storages("group1").await?;
            if members.len() == 2 && members.iter().all(|m| m.status == 7) {
                break;
            }
            anyhow::ensure!(Instant::now() < deadline, "members never both ACTIVE");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let mut loaders = Vec::new();
        for worker in 0..16 {
            let (client, acked) = (client.clone(), acked.clone());
            loaders.push(tokio::spawn(async move {
                for n in 0.. {
                    let i = worker + 16 * n;
                    match client.upload_bytes(&body(i), "bin", None).await {
                        Ok(id) => acked.lock().expect("lock").push((id, i)),
                        // The node is going away: connections are refused or closed.
                        Err(_) => return,
                    }
                }
            }));
        }
        anyhow::Ok(loaders)
    })?;
    rt.block_on(async {
        while acked.lock().expect("lock").len() < 300 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });

    let asked = Instant::now();
    let status = local.terminate()?;
    let took = asked.elapsed();
    assert!(status.success(), "exit status {status}");
    // The drain bound, plus the runtime's one second for stray blocking work.
    assert!(
        took <= Duration::from_secs(DRAIN_SECS + 2),
        "took {took:?} to exit under load"
    );
    rt.block_on(async {
        for l in loaders {
            l.await?;
        }
        anyhow::Ok(())
    })?;

    // Restarted on the same data, every acknowledged upload is on its first member at
    // once, and reaches the other as the push resumes from its saved mark.
    let acked = acked.lock().expect("lock").clone();
    assert!(acked.len() >= 300);
    let local = LocalProcess::start(&data, &argv)?;
    rt.block_on(async {
        let client = client(&local.tracker.to_string()).await?;
        for (group, addr) in &local.storages {
            assert_eq!(group, "group1");
            for (id, i) in &acked {
                let deadline = Instant::now() + Duration::from_secs(60);
                let got = loop {
                    let mut got = Vec::new();
                    match client.download_from(*addr, id, 0, 0, &mut got).await {
                        Ok(_) => break got,
                        Err(e) if Instant::now() < deadline => {
                            assert_eq!(e.status(), Some(fdfs_node::proto::Status::NotFound));
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                        Err(e) => anyhow::bail!("{id} never reached {addr}: {e}"),
                    }
                };
                assert!(got == body(*i), "{id} on {addr} differs");
            }
        }
        anyhow::Ok(())
    })?;
    local.terminate()?;
    Ok(())
}
