//! A scale-down under continuous uploads, with real trackers and storages: the operator's
//! scale step, fed what the real tracker lists, lets the leaving storage stop only once it is
//! out of uploads and drained; every acknowledged upload then downloads from the storage that
//! stays, including those first stored on the one that left.

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fdfs_node::client::{Client, ClientConfig};
use fdfs_node::fileid::{FileId, Source};
use fdfs_node::proto::StorageStatus;
use fdfs_operator::fastdfs::{self, DeleteOutcome};
use fdfs_operator::naming;
use fdfs_operator::scale::{self, PodAddresses, ScaleStep, TrackerMembers};

fn body(n: usize) -> Vec<u8> {
    (0..(2_000 + n * 37 % 30_000))
        .map(|i| ((i * 7 + n) % 251) as u8)
        .collect()
}

type Acknowledged = Arc<Mutex<Vec<(FileId, Vec<u8>)>>>;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scale_down_under_continuous_uploads_loses_no_acknowledged_file() {
    let data = tempfile::tempdir().expect("tempdir");
    let ids = data.path().join("storage_ids.conf");
    std::fs::write(&ids, support::group1_storage_ids(None)).expect("ids");
    let t = support::tracker_with_ids("127.0.0.50", data.path(), &ids).await;
    let trackers = vec![t.addr.to_string()];
    let s0 = support::active_storage("127.0.0.61", &trackers, data.path()).await;
    let s1 = support::active_storage("127.0.0.62", &trackers, data.path()).await;
    let leaving_id = naming::storage_id("group1", 1);

    // Uploads go on throughout, each recorded once acknowledged.
    let acknowledged: Acknowledged = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let uploader = {
        let (acknowledged, stop, trackers) = (acknowledged.clone(), stop.clone(), trackers.clone());
        tokio::spawn(async move {
            let client = Client::new(ClientConfig::new(trackers))
                .await
                .expect("client");
            let mut failed = 0usize;
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                let data = body(n);
                n += 1;
                match client.upload_bytes(&data, "bin", Some("group1")).await {
                    Ok(id) => acknowledged.lock().expect("list").push((id, data)),
                    Err(_) => failed += 1,
                }
            }
            failed
        })
    };
    let count = || acknowledged.lock().expect("list").len();
    let from_leaving = |acknowledged: &Acknowledged| {
        acknowledged
            .lock()
            .expect("list")
            .iter()
            .filter(|(id, _)| {
                matches!(
                    id.remote.core().map(|c| c.source),
                    Ok(Source::ServerId(s)) if s == leaving_id
                ) || matches!(
                    id.remote.core().map(|c| c.source),
                    Ok(Source::Ip(ip)) if ip.octets() == [127, 0, 0, 62]
                )
            })
            .count()
    };
    support::wait_until("uploads to both storages", || {
        count() >= 200 && from_leaving(&acknowledged) >= 50
    })
    .await;

    // The scale-down to one storage: the operator renders ordinal 1 read-only...
    std::fs::write(&ids, support::group1_storage_ids(Some(1))).expect("ids");
    // ...and steps only when the scale plan, fed the tracker's listing, lets it go.
    let pods = PodAddresses::from([("127.0.0.61".to_owned(), 0), ("127.0.0.62".to_owned(), 1)]);
    let mut blocked_for = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let view = fastdfs::query(t.addr, Some(&["group1"]))
            .await
            .expect("tracker answers");
        let members = scale::members(
            "group1",
            &view.storages["group1"],
            view.backlog.get("group1").map_or(&[][..], Vec::as_slice),
            &pods,
        );
        let views = [TrackerMembers {
            tracker: t.addr.to_string(),
            members: Ok(members),
        }];
        match scale::plan(1, Some(2), &[0, 1], &views, scale::Gates::default()).step {
            ScaleStep::Down { ordinal: 1 } => break,
            ScaleStep::Blocked { reason } => blocked_for.push(reason),
            other => panic!("unexpected step {other:?}"),
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never ready to stop: {:?}",
            blocked_for.last()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        blocked_for.iter().any(|r| r.contains("rw=read")),
        "the step first waited for the tracker to fence the storage: {blocked_for:?}"
    );
    let before_stop = count();

    // Its Pod stops (the node drains on SIGTERM); then it leaves the tracker.
    s1.stop(Duration::from_secs(5)).await;
    support::wait_status(&trackers[0], "group1", "127.0.0.62", StorageStatus::Offline).await;
    assert_eq!(
        fastdfs::delete_storage(t.addr, "group1", &leaving_id.to_string())
            .await
            .expect("tracker answers"),
        DeleteOutcome::Deleted
    );
    support::wait_until("more uploads after the scale-down", || {
        count() >= before_stop + 50
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    let failed = uploader.await.expect("uploader");

    // Every acknowledged upload is on the storage that stays.
    let files = acknowledged.lock().expect("list").clone();
    let client = Client::new(ClientConfig::new(trackers.clone()))
        .await
        .expect("client");
    for (id, data) in &files {
        let got = client
            .download_bytes(id, 0, 0)
            .await
            .unwrap_or_else(|e| panic!("{id}: {e}"));
        assert!(got == *data, "{id} differs");
    }
    eprintln!(
        "{} acknowledged uploads ({} first stored on the storage that left), {failed} refused",
        files.len(),
        from_leaving(&acknowledged)
    );
    s0.stop(Duration::from_secs(1)).await;
    t.stop(Duration::from_secs(1)).await;
}
