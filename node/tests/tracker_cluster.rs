//! Trackers as a cluster, in process on loopback: saved state, storage ids,
//! leader election and failover, admin and statistics commands, several ports.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use common::{Cluster, exchanges, hex_field, wait_until};
use fdfs_node::client::{Client, ClientConfig, Conn};
use fdfs_node::config::{
    Compat, IdType, ListenerConfig, ReservedSpace, StorageConfig, TrackerConfig,
};
use fdfs_node::fileid::Source;
use fdfs_node::proto::cluster::{
    FetchStorageIds, GroupAndHost, GroupAndId, StorageClusterStats, StorageIdsPage,
    StorageStatFilter, TrackerStat, TrackerStatFilter, TrackerStatus, VolumeStatFilter,
    VolumeStats,
};
use fdfs_node::proto::monitor::{GroupStat, ListStorageRequest, MonitorLayout, StorageStat};
use fdfs_node::proto::query::GroupRequest;
use fdfs_node::proto::report::{HeartbeatReply, JoinRequest, Parameters};
use fdfs_node::proto::{Command, IpWidth, Status, StorageStatus};
use fdfs_node::storage::RunningStorage;
use fdfs_node::tracker::RunningTracker;

async fn call(addr: SocketAddr, cmd: Command, body: &[u8]) -> (Status, Vec<u8>) {
    let mut c = Conn::connect(addr, Duration::from_secs(5), Duration::from_secs(10), None)
        .await
        .expect("connect");
    c.call(cmd, body, 1 << 20).await.expect("call")
}

fn tracker_cfg(bind: &str, base: &Path) -> TrackerConfig {
    TrackerConfig {
        bind: bind.into(),
        base_path: base.into(),
        reserved_storage_space: ReservedSpace::Mb(0),
        leader_ping_interval_ms: 200,
        ..Default::default()
    }
}

async fn start_storage(
    bind: &str,
    group: &str,
    base: &Path,
    trackers: &[SocketAddr],
    server_id: &str,
) -> RunningStorage {
    fdfs_node::storage::start(StorageConfig {
        bind: bind.into(),
        group_name: group.into(),
        base_path: base.into(),
        subdir_count_per_path: 2,
        tracker_servers: trackers.iter().map(SocketAddr::to_string).collect(),
        heart_beat_interval: 1,
        timers: fdfs_node::config::StorageTimers::quick(),
        stat_report_interval: 1,
        server_id: server_id.into(),
        ..Default::default()
    })
    .await
    .expect("storage starts")
}

fn member_status(t: &RunningTracker, group: &str, id: &str) -> Option<StorageStatus> {
    t.tracker
        .registry()
        .groups()
        .get(group)
        .and_then(|g| g.members.get(id))
        .map(|m| m.status)
}

async fn client_of(trackers: &[SocketAddr]) -> Client {
    let mut cfg = ClientConfig::new(trackers.iter().map(SocketAddr::to_string).collect());
    cfg.connect_timeout = Duration::from_secs(2);
    cfg.network_timeout = Duration::from_secs(10);
    Client::new(cfg).await.expect("client")
}

/// A tracker stopped (a drain, a rolling restart) saves its storages as they were, not
/// OFFLINE: restarted, it routes to them at once.
#[tokio::test]
async fn a_drained_tracker_saves_its_storages_as_they_were() {
    let dir = tempfile::tempdir().expect("tempdir");
    let base = dir.path().join("tracker");
    let t = fdfs_node::tracker::start(tracker_cfg("127.0.0.1:0", &base))
        .await
        .expect("tracker");
    let s = start_storage(
        "127.0.0.2:0",
        "group1",
        &dir.path().join("s"),
        &[t.addr],
        "",
    )
    .await;
    wait_until("ACTIVE", Duration::from_secs(20), async || {
        member_status(&t, "group1", "127.0.0.2") == Some(StorageStatus::Active)
    })
    .await;
    t.stop(Duration::from_secs(2)).await;
    let again = fdfs_node::tracker::start(tracker_cfg("127.0.0.1:0", &base))
        .await
        .expect("tracker again");
    assert_eq!(
        member_status(&again, "group1", "127.0.0.2"),
        Some(StorageStatus::Active)
    );
    again.stop(Duration::from_secs(1)).await;
    s.stop(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn restarted_tracker_answers_from_saved_state() {
    let c = Cluster::start(&["group1"], 2).await;
    let client = c.client().await;
    let id = client
        .upload_bytes(b"kept", "txt", None)
        .await
        .expect("upload");
    let state = c.dir.path().join("tracker/data/tracker_state.json");
    wait_until(
        "the state file with the ACTIVE storage",
        Duration::from_secs(10),
        async || {
            std::fs::read_to_string(&state)
                .ok()
                .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
                .is_some_and(|v| v["groups"][0]["members"][0]["status"] == 7)
        },
    )
    .await;
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&state).expect("read")).expect("json");
    assert_eq!(saved["groups"][0]["name"], "group1");
    assert_eq!(saved["groups"][0]["members"][0]["status"], 7);
    assert!(!state.with_extension("json.tmp").exists());

    // A second tracker on the same base path, which no storage reports to, knows
    // the group and routes the file at once.
    let t2 = fdfs_node::tracker::start(tracker_cfg("127.0.0.1:0", &c.dir.path().join("tracker")))
        .await
        .expect("second tracker");
    let (st, body) = call(t2.addr, Command::ServerListAllGroups, &[]).await;
    assert_eq!(st, Status::Ok);
    let groups = GroupStat::decode_all(&body).expect("91");
    assert_eq!(groups[0].group, "group1");
    assert_eq!(groups[0].writable_count, 1);
    let c2 = client_of(&[t2.addr]).await;
    assert_eq!(
        c2.download_bytes(&id, 0, 0).await.expect("download"),
        b"kept"
    );
    // A storage that never reports again goes OFFLINE after check_active_interval
    // (here the registry is asked directly with a later clock).
    t2.tracker
        .registry()
        .check_alive(fdfs_node::unix_now() + 1000);
    assert_eq!(
        member_status(&t2, "group1", "127.0.0.2"),
        Some(StorageStatus::Offline)
    );
    t2.stop(Duration::from_secs(1)).await;

    // A corrupt state file stops the start with a message naming it.
    let bad = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(bad.path().join("data")).expect("mkdir");
    std::fs::write(bad.path().join("data/tracker_state.json"), b"{oops").expect("write");
    let err = fdfs_node::tracker::start(tracker_cfg("127.0.0.1:0", bad.path()))
        .await
        .expect_err("corrupt state");
    assert!(err.to_string().contains("tracker_state.json"), "{err}");
}

#[tokio::test]
async fn storage_keeps_its_id_on_a_new_address() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ids = dir.path().join("storage_ids.conf");
    std::fs::write(
        &ids,
        "# id group host\n100001 group1 127.0.0.2\n100002 group1 127.0.0.4 rw=read\n",
    )
    .expect("write");
    let mut cfg = tracker_cfg("127.0.0.1:0", &dir.path().join("tracker"));
    cfg.use_storage_id = true;
    cfg.id_type_in_filename = IdType::Id;
    cfg.storage_ids_filename = ids.clone();
    let t = fdfs_node::tracker::start(cfg).await.expect("tracker");
    let base = dir.path().join("s1");
    // No server_id configured: the storage asks the tracker (70) which id is its.
    let s = start_storage("127.0.0.2:0", "group1", &base, &[t.addr], "").await;
    wait_until("ACTIVE", Duration::from_secs(20), async || {
        member_status(&t, "group1", "100001") == Some(StorageStatus::Active)
    })
    .await;
    let client = client_of(&[t.addr]).await;
    let id = client
        .upload_bytes(b"by id", "txt", None)
        .await
        .expect("upload");
    assert_eq!(
        id.remote.core().expect("core").source,
        Source::ServerId(100001),
        "{id}"
    );
    // The parameters say so, in the recorded key order.
    let (_, body) = call(t.addr, Command::StorageParameterReq, &[]).await;
    let params = Parameters::decode(&body).expect("75");
    assert_eq!(params.get("use_storage_id"), Some("1"));
    assert_eq!(params.get("id_type_in_filename"), Some("id"));

    // Restarted on another address with its id configured: same member, new address.
    s.stop(Duration::from_secs(2)).await;
    wait_until(
        "OFFLINE after the storage left",
        Duration::from_secs(10),
        async || member_status(&t, "group1", "100001") == Some(StorageStatus::Offline),
    )
    .await;
    let s = start_storage("127.0.0.5:0", "group1", &base, &[t.addr], "100001").await;
    wait_until("ACTIVE again", Duration::from_secs(20), async || {
        member_status(&t, "group1", "100001") == Some(StorageStatus::Active)
    })
    .await;
    {
        let reg = t.tracker.registry();
        let g = &reg.groups()["group1"];
        assert_eq!(g.members.len(), 1, "one member, not two");
        assert_eq!(g.members["100001"].ip, "127.0.0.5");
    }
    let fresh = client_of(&[t.addr]).await;
    assert_eq!(
        fresh.download_bytes(&id, 0, 0).await.expect("download"),
        b"by id"
    );
    let target = fresh.query_fetch(&id).await.expect("102");
    assert_eq!(target.addr.ip, "127.0.0.5");

    // Refused joins change nothing: an unknown id, the wrong group, an id in use elsewhere.
    let join = |group: &str, storage_id: &str| JoinRequest {
        group: group.into(),
        storage_port: 23000,
        store_path_count: 1,
        subdir_count_per_path: 2,
        upload_priority: 10,
        status: 7,
        storage_id: storage_id.into(),
        version: "6.16.1".into(),
        trackers: vec![t.addr.to_string()],
        ..Default::default()
    };
    for (group, sid, want) in [
        ("group1", "100009", Status::NotFound),
        ("group2", "100001", Status::InvalidArgument),
        ("group1", "100001", Status::AlreadyExists),
        ("group1", "", Status::NotFound),
    ] {
        let (st, body) = call(t.addr, Command::StorageJoin, &join(group, sid).encode()).await;
        assert_eq!((st, body.len()), (want, 0), "{group} {sid:?}");
    }
    let (st, _) = call(t.addr, Command::StorageJoin, b"garbage").await;
    assert_eq!(st, Status::InvalidArgument);
    {
        let reg = t.tracker.registry();
        assert_eq!(reg.groups().len(), 1);
        assert_eq!(reg.groups()["group1"].members["100001"].ip, "127.0.0.5");
        assert_eq!(
            reg.groups()["group1"].members["100001"].status,
            StorageStatus::Active
        );
    }

    // 69 in both request forms, paged; 70 by address.
    for body in [
        FetchStorageIds {
            start_index: 0,
            allow_empty: None,
        }
        .encode(),
        FetchStorageIds {
            start_index: 0,
            allow_empty: Some(true),
        }
        .encode(),
    ] {
        let (st, reply) = call(t.addr, Command::StorageFetchStorageIds, &body).await;
        assert_eq!(st, Status::Ok);
        let page = StorageIdsPage::decode(&reply).expect("69 reply");
        assert_eq!(page.total, 2);
        assert_eq!(
            page.lines,
            ["100001 group1 127.0.0.2", "100002 group1 127.0.0.4 rw=read"]
        );
    }
    let (st, _) = call(
        t.addr,
        Command::StorageFetchStorageIds,
        &FetchStorageIds {
            start_index: 2,
            allow_empty: Some(false),
        }
        .encode(),
    )
    .await;
    assert_eq!(st, Status::InvalidArgument);
    let req = GroupAndHost {
        group: "group1".into(),
        ip: "127.0.0.4".into(),
        port: 23000,
    };
    let (st, reply) = call(t.addr, Command::StorageGetServerId, &req.encode()).await;
    assert_eq!((st, reply.as_slice()), (Status::Ok, b"100002".as_slice()));
    s.stop(Duration::from_secs(2)).await;
    t.stop(Duration::from_secs(1)).await;
}

/// A storage added to `storage_ids.conf` (as the operator does when a group grows, the
/// kubelet replacing the mounted file) joins without a tracker restart.
/// `fdfs migrate retire` with storage ids, the member named by its address: it is fenced
/// and deleted under its id, not reported retired while still listed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_retired_by_its_address_is_deleted_under_its_id() {
    use fdfs_node::client::migrate;
    let dir = tempfile::tempdir().expect("tempdir");
    let ids = dir.path().join("storage_ids.conf");
    std::fs::write(&ids, "100001 group1 127.0.0.2\n100002 group1 127.0.0.4\n").expect("write");
    let mut cfg = tracker_cfg("127.0.0.1:0", &dir.path().join("tracker"));
    cfg.use_storage_id = true;
    cfg.storage_ids_filename = ids;
    let t = fdfs_node::tracker::start(cfg).await.expect("tracker");
    // Members of a group share one port.
    let a = start_storage(
        "127.0.0.2:23610",
        "group1",
        &dir.path().join("a"),
        &[t.addr],
        "",
    )
    .await;
    let b = start_storage(
        "127.0.0.4:23610",
        "group1",
        &dir.path().join("b"),
        &[t.addr],
        "",
    )
    .await;
    wait_until("both ACTIVE", Duration::from_secs(20), async || {
        ["100001", "100002"]
            .iter()
            .all(|id| member_status(&t, "group1", id) == Some(StorageStatus::Active))
    })
    .await;
    let client = client_of(&[t.addr]).await;
    let file = client
        .upload_to(
            b.addr,
            fdfs_node::proto::storage::UploadHead {
                store_path_index: 0xFF,
                file_size: 7,
                ext: "txt".into(),
            },
            &mut &b"on b  1"[..],
        )
        .await
        .expect("upload to b");
    b.stop(Duration::from_secs(10)).await;
    let config = ClientConfig::new(vec![t.addr.to_string()]);
    migrate::retire(
        &client,
        &config,
        "group1",
        "127.0.0.4",
        Duration::from_secs(30),
        |_| {},
    )
    .await
    .expect("retired");
    assert!(
        matches!(
            member_status(&t, "group1", "100002"),
            None | Some(StorageStatus::Deleted)
        ),
        "{:?}",
        member_status(&t, "group1", "100002")
    );
    assert_eq!(
        client.download_bytes(&file, 0, 0).await.expect("on a"),
        b"on b  1"
    );
    // Run again (as after a run that reached only some trackers): done, not refused.
    migrate::retire(
        &client,
        &config,
        "group1",
        "100002",
        Duration::from_secs(5),
        |_| {},
    )
    .await
    .expect("retired already");
    drop(a);
}

#[tokio::test]
async fn a_storage_added_to_storage_ids_conf_joins_without_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ids = dir.path().join("storage_ids.conf");
    std::fs::write(&ids, "100001 group1 127.0.0.2\n").expect("write");
    let mut cfg = tracker_cfg("127.0.0.1:0", &dir.path().join("tracker"));
    cfg.use_storage_id = true;
    cfg.storage_ids_filename = ids.clone();
    let t = fdfs_node::tracker::start(cfg).await.expect("tracker");
    let ask = GroupAndHost {
        group: "group1".into(),
        ip: "127.0.0.3".into(),
        port: 23000,
    }
    .encode();
    assert_eq!(
        call(t.addr, Command::StorageGetServerId, &ask).await.0,
        Status::NotFound
    );

    // Replaced the way the kubelet updates a ConfigMap volume: a new file renamed over.
    let next = dir.path().join("storage_ids.conf.new");
    std::fs::write(&next, "100001 group1 127.0.0.2\n100002 group1 127.0.0.3\n").expect("write");
    std::fs::rename(&next, &ids).expect("rename");
    wait_until("the new id answered", Duration::from_secs(5), async || {
        call(t.addr, Command::StorageGetServerId, &ask).await == (Status::Ok, b"100002".to_vec())
    })
    .await;
    let _s = start_storage(
        "127.0.0.3:0",
        "group1",
        &dir.path().join("s2"),
        &[t.addr],
        "",
    )
    .await;
    wait_until(
        "the new storage ACTIVE under its id",
        Duration::from_secs(20),
        async || member_status(&t, "group1", "100002") == Some(StorageStatus::Active),
    )
    .await;
    // A malformed file is not taken, not even its good lines: the ids in use stay. Asked
    // for longer than the tracker's once-a-second reread, it is read at least once.
    std::fs::write(
        &ids,
        "100001 group1 127.0.0.2\n100002 group1 127.0.0.3\n100003 group1 127.0.0.9\nnot an id line\n",
    )
    .expect("write");
    let other = GroupAndHost {
        group: "group1".into(),
        ip: "127.0.0.9".into(),
        port: 23000,
    }
    .encode();
    let window = tokio::time::Instant::now() + Duration::from_millis(2500);
    while tokio::time::Instant::now() < window {
        assert_eq!(
            call(t.addr, Command::StorageGetServerId, &other).await.0,
            Status::NotFound
        );
        assert_eq!(
            call(t.addr, Command::StorageGetServerId, &ask).await,
            (Status::Ok, b"100002".to_vec())
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Mended, it is read again.
    std::fs::write(
        &ids,
        "100001 group1 127.0.0.2\n100002 group1 127.0.0.3\n100003 group1 127.0.0.9\n",
    )
    .expect("write");
    wait_until("the mended file read", Duration::from_secs(5), async || {
        call(t.addr, Command::StorageGetServerId, &other).await == (Status::Ok, b"100003".to_vec())
    })
    .await;
}

/// Three trackers, storages reporting to all: one leader, pushes only from it,
/// and a new leader when it dies.
#[tokio::test]
async fn three_trackers_elect_one_leader_and_fail_over() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut trackers = Vec::new();
    for i in 0..3 {
        let cfg = tracker_cfg(
            &format!("127.0.0.{}:0", 11 + i),
            &dir.path().join(format!("t{i}")),
        );
        trackers.push(fdfs_node::tracker::start(cfg).await.expect("tracker"));
    }
    let addrs: Vec<SocketAddr> = trackers.iter().map(|t| t.addr).collect();
    let mut storages = Vec::new();
    for (i, g) in ["group1", "group2"].iter().enumerate() {
        storages.push(
            start_storage(
                &format!("127.0.0.{}:0", 21 + i),
                g,
                &dir.path().join(format!("s{i}")),
                &addrs,
                "",
            )
            .await,
        );
    }
    let leaders = |ts: &[RunningTracker]| -> Vec<Option<SocketAddr>> {
        ts.iter().map(|t| t.tracker.leader()).collect()
    };
    // The greatest address leads once everyone knows everyone.
    wait_until("one agreed leader", Duration::from_secs(30), async || {
        leaders(&trackers) == vec![Some(addrs[2]); 3]
    })
    .await;
    for a in &addrs {
        let (st, body) = call(*a, Command::ServerGetLeader, &[]).await;
        assert_eq!((st, body), (Status::Ok, addrs[2].to_string().into_bytes()));
        let (st, body) = call(*a, Command::TrackerGetStatus, &[]).await;
        assert_eq!(st, Status::Ok);
        assert_eq!(
            TrackerStatus::decode(&body).expect("64").is_leader,
            *a == addrs[2]
        );
    }
    // 96 is the leader's: every tracker, one leader, all active.
    wait_until("followers pinging", Duration::from_secs(10), async || {
        let (_, body) = call(addrs[2], Command::ServerTrackerClusterStat, &[0, 0, 0]).await;
        TrackerStat::decode_all(&body).is_ok_and(|l| l.len() == 3 && l.iter().all(|s| s.is_active))
    })
    .await;
    let (_, body) = call(
        addrs[2],
        Command::ServerTrackerClusterStat,
        &TrackerStatFilter {
            filter_by: 2,
            is_active: false,
            is_leader: true,
        }
        .encode(),
    )
    .await;
    let only = TrackerStat::decode_all(&body).expect("96");
    assert_eq!(only.len(), 1);
    assert_eq!(only[0].host, addrs[2].to_string());
    let (st, _) = call(addrs[0], Command::ServerTrackerClusterStat, &[0, 0, 0]).await;
    assert_eq!(st, Status::NotSupported, "followers refuse 96");
    let (st, _) = call(addrs[0], Command::TrackerJoinLeader, &[0; 24]).await;
    assert_eq!(st, Status::InvalidArgument, "port 0");
    let (st, _) = call(addrs[0], Command::TrackerJoinLeader, &{
        let mut j = vec![0u8; 24];
        j[23] = 1;
        j
    })
    .await;
    assert_eq!(st, Status::NotSupported, "a follower is no leader to join");
    // COMMIT without NOTIFY of the same address is refused.
    let (st, _) = call(
        addrs[0],
        Command::TrackerCommitNextLeader,
        b"127.0.0.99:22122",
    )
    .await;
    assert_eq!(st, Status::InvalidArgument);
    assert_eq!(trackers[0].tracker.leader(), Some(addrs[2]));
    // NOTIFY_RESELECT_LEADER: a follower refuses; the leader steps down, and the
    // cluster elects again (the same tracker still ranks first).
    let (st, _) = call(addrs[0], Command::TrackerNotifyReselectLeader, &[]).await;
    assert_eq!(st, Status::NotSupported);
    let (st, _) = call(addrs[2], Command::TrackerNotifyReselectLeader, &[]).await;
    assert_eq!(st, Status::Ok);
    wait_until(
        "the leader re-elected",
        Duration::from_secs(30),
        async || leaders(&trackers) == vec![Some(addrs[2]); 3],
    )
    .await;

    // Heartbeat replies: the leader pushes the leader and the members; a follower sends 0.
    for (addr, is_leader) in [(addrs[2], true), (addrs[0], false)] {
        let mut c = Conn::connect(addr, Duration::from_secs(2), Duration::from_secs(5), None)
            .await
            .expect("connect");
        let join = JoinRequest {
            group: "group9".into(),
            storage_port: 23999,
            store_path_count: 1,
            subdir_count_per_path: 2,
            upload_priority: 10,
            status: 7,
            version: "6.16.1".into(),
            trackers: addrs.iter().map(|a| a.to_string()).collect(),
            ..Default::default()
        };
        let (st, _) = c
            .call(Command::StorageJoin, &join.encode(), 1024)
            .await
            .expect("join");
        assert_eq!(st, Status::Ok);
        let (st, body) = c.call(Command::StorageBeat, &[], 4096).await.expect("beat");
        assert_eq!(st, Status::Ok);
        if is_leader {
            let hb = HeartbeatReply::decode(&body).expect("heartbeat reply");
            let l = hb.leader.expect("leader pushed");
            assert_eq!(
                (l.ip, l.port),
                (addrs[2].ip().to_string(), u32::from(addrs[2].port()))
            );
            assert_eq!(hb.members.expect("members pushed").len(), 1);
            // Nothing changed since: nothing pushed.
            let (_, body) = c.call(Command::StorageBeat, &[], 4096).await.expect("beat");
            assert_eq!(body, [0]);
        } else {
            assert_eq!(body, [0], "a follower pushes nothing");
        }
        c.quit().await;
    }
    // Gone storages go OFFLINE at once; then they and their group can be deleted.
    for t in [&trackers[0], &trackers[2]] {
        wait_until(
            "the fake storage OFFLINE",
            Duration::from_secs(10),
            async || member_status(t, "group9", "127.0.0.1") == Some(StorageStatus::Offline),
        )
        .await;
        let del = GroupAndId {
            group: "group9".into(),
            id: "127.0.0.1".into(),
        };
        let (st, _) = call(t.addr, Command::ServerDeleteStorage, &del.encode()).await;
        assert_eq!(st, Status::Ok);
        let (st, _) = call(t.addr, Command::ServerDeleteStorage, &del.encode()).await;
        assert_eq!(st, Status::AlreadyDone);
        let g9 = GroupRequest {
            group: "group9".into(),
        }
        .encode();
        let (st, _) = call(t.addr, Command::ServerDeleteGroup, &g9).await;
        assert_eq!(st, Status::Ok);
        let g1 = GroupRequest {
            group: "group1".into(),
        }
        .encode();
        let (st, _) = call(t.addr, Command::ServerDeleteGroup, &g1).await;
        assert_eq!(st, Status::Busy);
    }

    // Every tracker places uploads; kill the leader, the others elect a new one.
    let client = client_of(&addrs).await;
    let id = client
        .upload_bytes(b"before", "txt", None)
        .await
        .expect("upload");
    let leader = trackers.pop().expect("leader");
    leader.stop(Duration::from_millis(100)).await;
    wait_until("a new leader", Duration::from_secs(30), async || {
        leaders(&trackers) == vec![Some(addrs[1]); 2]
    })
    .await;
    assert_eq!(
        client.download_bytes(&id, 0, 0).await.expect("download"),
        b"before"
    );
    client.delete(&id).await.expect("delete");
    for s in storages {
        s.stop(Duration::from_secs(1)).await;
    }
    for t in trackers {
        t.stop(Duration::from_secs(1)).await;
    }
}

/// 93/108 refusals, 96–98 statistics, and a second port with its own profile.
#[tokio::test]
async fn followers_learn_the_trunk_server_from_the_leader() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut trackers = Vec::new();
    for i in 0..2 {
        let mut cfg = tracker_cfg(
            &format!("127.0.0.{}:0", 31 + i),
            &dir.path().join(format!("t{i}")),
        );
        cfg.trunk.use_trunk_file = true;
        trackers.push(fdfs_node::tracker::start(cfg).await.expect("tracker"));
    }
    let addrs: Vec<SocketAddr> = trackers.iter().map(|t| t.addr).collect();
    // One port for the group's members, as FastDFS requires.
    let port = common::group_port(dir.path(), 26000);
    let mut storages = Vec::new();
    for ip in ["127.0.0.33", "127.0.0.34"] {
        let base = dir.path().join(ip);
        storages.push(start_storage(&format!("{ip}:{port}"), "group1", &base, &addrs, "").await);
    }
    let trunk_server = |t: &RunningTracker| {
        t.tracker
            .registry()
            .groups()
            .get("group1")
            .and_then(|g| g.trunk.server.clone())
    };
    wait_until("one leader", Duration::from_secs(30), async || {
        trackers
            .iter()
            .all(|t| t.tracker.leader() == Some(addrs[1]))
    })
    .await;
    // The leader chooses; the follower, which never elects, hears it in the pings.
    wait_until(
        "the trunk server on both trackers",
        Duration::from_secs(30),
        async || {
            trackers
                .iter()
                .all(|t| trunk_server(t).as_deref() == Some("127.0.0.33"))
        },
    )
    .await;
    // The leader moves it (94); the follower, which never chooses, hears of it in the pings.
    let mut ask = b"group1".to_vec();
    ask.resize(16, 0);
    ask.extend_from_slice(b"127.0.0.34");
    let (st, _) = call(addrs[0], Command::ServerSetTrunkServer, &ask).await;
    assert_eq!(
        st,
        Status::NotSupported,
        "a follower leaves it to the leader"
    );
    wait_until(
        "both members ACTIVE at the leader",
        Duration::from_secs(30),
        async || member_status(&trackers[1], "group1", "127.0.0.34") == Some(StorageStatus::Active),
    )
    .await;
    let (st, body) = call(addrs[1], Command::ServerSetTrunkServer, &ask).await;
    assert_eq!((st, body), (Status::Ok, b"127.0.0.34\0".to_vec()));
    wait_until(
        "the new trunk server on both trackers",
        Duration::from_secs(30),
        async || {
            trackers
                .iter()
                .all(|t| trunk_server(t).as_deref() == Some("127.0.0.34"))
        },
    )
    .await;
    let (st, body) = call(
        addrs[0],
        Command::ServerListStorage,
        &ListStorageRequest {
            group: "group1".into(),
            storage_id: None,
        }
        .encode(),
    )
    .await;
    assert_eq!(st, Status::Ok);
    let listed = StorageStat::decode_all(&body).expect("92");
    let flags: Vec<bool> = listed.iter().map(|s| s.if_trunk_server).collect();
    assert_eq!(flags, [false, true], "the follower lists the trunk server");
    // Only the leader answers FETCH_TRUNK_FID; it knows the ids the trunk server reserved.
    let leader = &trackers[1];
    wait_until(
        "trunk file ids reserved",
        Duration::from_secs(30),
        async || {
            let reg = leader.tracker.registry();
            reg.groups()
                .get("group1")
                .is_some_and(|g| g.trunk.file_id > 0)
        },
    )
    .await;
}

#[tokio::test]
async fn admin_statistics_and_a_second_port_with_its_own_profile() {
    let mut cfg = TrackerConfig::default();
    cfg.listeners.push(ListenerConfig {
        bind: "127.0.0.1:0".into(),
        compat: Compat {
            ip_width: IpWidth::V6,
            monitor_layout: MonitorLayout::Classic,
            ..Default::default()
        },
    });
    let c = Cluster::start_with(&["group1"], 2, cfg).await;
    let main = c.tracker_addr();
    let (second, profile) = c.tracker.listeners[1];
    assert_eq!(profile.profile_name(), "ip45,classic");
    assert_eq!(c.tracker.listeners[0].1.profile_name(), "ip15");

    let (st, body) = call(main, Command::QueryStoreWithoutGroupOne, &[]).await;
    assert_eq!((st, body.len()), (Status::Ok, 40));
    let (st, body) = call(second, Command::QueryStoreWithoutGroupOne, &[]).await;
    assert_eq!((st, body.len()), (Status::Ok, 70));
    let (_, body) = call(main, Command::ServerListAllGroups, &[]).await;
    assert_eq!(body.len(), 113);
    let (_, body) = call(second, Command::ServerListAllGroups, &[]).await;
    assert_eq!(body.len(), 105);
    let g = GroupStat::decode_all_classic(&body).expect("classic 91");
    assert_eq!((g[0].group.as_str(), g[0].writable_count), ("group1", 1));
    let list = ListStorageRequest {
        group: "group1".into(),
        storage_id: None,
    }
    .encode();
    let (_, body) = call(second, Command::ServerListStorage, &list).await;
    assert_eq!(body.len(), 612);
    let s = StorageStat::decode_all_classic(&body).expect("classic 92");
    assert_eq!((s[0].ip.as_str(), s[0].status), ("127.0.0.2", 7));
    assert_eq!(s[0].storage_port, u64::from(c.storage_addr(0).port()));
    let (_, body) = call(main, Command::ServerListStorage, &list).await;
    assert_eq!(body.len(), 487);

    // 97 with and without a status filter.
    for (filter, n) in [
        (StorageStatFilter::default(), 1),
        (
            StorageStatFilter {
                filter_by: 2,
                op_type: b'=',
                status: 7,
                is_trunk_server: false,
            },
            1,
        ),
        (
            StorageStatFilter {
                filter_by: 2,
                op_type: b'!',
                status: 7,
                is_trunk_server: false,
            },
            0,
        ),
    ] {
        let (st, body) = call(main, Command::ServerStorageClusterStat, &filter.encode()).await;
        assert_eq!(st, Status::Ok);
        let stats = StorageClusterStats::decode(&body).expect("97");
        assert_eq!(stats.storages.len(), n, "{filter:?}");
        if n == 1 {
            assert_eq!(stats.storages[0].host, c.storage_addr(0).to_string());
            assert_eq!(stats.storages[0].status, 7);
        }
    }
    let (st, _) = call(main, Command::ServerStorageClusterStat, &[2, b'?', 7, 0]).await;
    assert_eq!(st, Status::InvalidArgument);
    // 98: the group's space, available when above the reserve.
    let (st, body) = call(
        main,
        Command::ServerStorageVolumnStat,
        &VolumeStatFilter::default().encode(),
    )
    .await;
    assert_eq!(st, Status::Ok);
    let v = VolumeStats::decode(&body).expect("98");
    assert_eq!(v.groups.len(), 1);
    let g = &v.groups[0];
    assert!(g.total_mb > 0 && g.is_disk_available);
    assert_eq!(g.avail_mb, g.free_mb - g.reserved_mb);
    // 96 from the lone tracker: itself, leader.
    let (st, body) = call(main, Command::ServerTrackerClusterStat, &[0, 0, 0]).await;
    assert_eq!(st, Status::Ok);
    let t = TrackerStat::decode_all(&body).expect("96");
    assert_eq!(t.len(), 1);
    assert!(t[0].is_leader && t[0].is_active);
    assert_eq!(t[0].host, main.to_string());

    // An ACTIVE storage and a group with members cannot be deleted.
    let del = GroupAndId {
        group: "group1".into(),
        id: "127.0.0.2".into(),
    };
    let (st, _) = call(main, Command::ServerDeleteStorage, &del.encode()).await;
    assert_eq!(st, Status::Busy);
    let (st, _) = call(
        main,
        Command::ServerDeleteGroup,
        &GroupRequest {
            group: "group1".into(),
        }
        .encode(),
    )
    .await;
    assert_eq!(st, Status::Busy);
    assert_eq!(
        member_status(&c.tracker, "group1", "127.0.0.2"),
        Some(StorageStatus::Active)
    );
}

/// PARAMETER_REQ answers the keys of a V6.16.1 tracker, in its order.
#[tokio::test]
async fn parameters_match_the_recorded_key_order() {
    let recorded = exchanges()
        .into_iter()
        .find(|x| x["cmd"] == 75)
        .expect("a recorded 75");
    let recorded = Parameters::decode(&hex_field(&recorded["response"], "body_hex")).expect("75");
    let c = Cluster::start(&["group1"], 2).await;
    let (_, body) = call(c.tracker_addr(), Command::StorageParameterReq, &[]).await;
    let ours = Parameters::decode(&body).expect("ours");
    let keys = |p: &Parameters| p.entries.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>();
    assert_eq!(keys(&ours), keys(&recorded));
    for k in [
        "use_storage_id",
        "id_type_in_filename",
        "response_ip_addr_size",
        "use_trunk_file",
    ] {
        assert_eq!(ours.get(k), recorded.get(k), "{k}");
    }
}

/// GET over a plain TCP connection: (status code, body).
async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .expect("send");
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut raw))
        .await
        .expect("in time")
        .expect("read");
    let text = String::from_utf8_lossy(&raw).into_owned();
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status line");
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (code, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_status_health_readiness_and_metrics() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = tracker_cfg("127.0.0.1:0", &dir.path().join("t"));
    cfg.http_bind = "127.0.0.1:0".into();
    let t = fdfs_node::tracker::start(cfg).await.expect("tracker");
    let http = t.http_addr.expect("http listener");
    assert_eq!(
        fdfs_node::local::tracker_lines(&t)[0],
        format!("tracker {} http={http}", t.addr)
    );
    assert_eq!(http_get(http, "/healthz").await, (200, "ok\n".into()));
    // Without groups a tracker reports no status to its peers (as V6.16.1).
    assert_eq!(
        call(t.addr, Command::TrackerGetStatus, &[]).await.0,
        Status::NotFound
    );
    let (code, body) = http_get(http, "/readyz").await;
    assert_eq!(code, 503, "{body}");
    let s = start_storage(
        "127.0.0.2:0",
        "group1",
        &dir.path().join("s"),
        &[t.addr],
        "",
    )
    .await;
    wait_until("ready", Duration::from_secs(20), async || {
        http_get(http, "/readyz").await.0 == 200
    })
    .await;

    let (code, body) = http_get(http, "/api/v1/cluster").await;
    assert_eq!(code, 200);
    let v: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(v["tracker"]["is_leader"], true);
    assert_eq!(v["tracker"]["leader"], t.addr.to_string());
    assert_eq!(v["groups"][0]["name"], "group1");
    assert_eq!(v["groups"][0]["writable"], 1);
    assert_eq!(v["groups"][0]["storages"][0]["status"], "ACTIVE");
    assert_eq!(v["groups"][0]["storages"][0]["addr"], s.addr.to_string());

    let (code, body) = http_get(http, "/metrics").await;
    assert_eq!(code, 200);
    for line in [
        "fdfs_tracker_is_leader 1",
        "fdfs_tracker_groups 1",
        "fdfs_tracker_storages{group=\"group1\",status=\"ACTIVE\"} 1",
        // Joins (81) were counted, named as the storage names its commands.
        "fdfs_tracker_requests_total{command=\"StorageJoin\",status=\"OK\"}",
    ] {
        assert!(body.contains(line), "{line} missing from:\n{body}");
    }
    // Scrapes at once (two Prometheus replicas) each count the one storage once.
    let mut scrapes = tokio::task::JoinSet::new();
    for _ in 0..16 {
        scrapes.spawn(async move { http_get(http, "/metrics").await });
    }
    for (code, body) in scrapes.join_all().await {
        assert_eq!(code, 200);
        assert!(
            body.contains("fdfs_tracker_storages{group=\"group1\",status=\"ACTIVE\"} 1\n"),
            "{body}"
        );
    }
    assert_eq!(http_get(http, "/nope").await.0, 404);
    s.stop(Duration::from_secs(1)).await;
    t.stop(Duration::from_secs(1)).await;
    assert!(
        tokio::net::TcpStream::connect(http).await.is_err(),
        "HTTP stops with the tracker"
    );
}

/// A report connection of a storage at `ip` that joined `group7` as ACTIVE.
async fn join_group7(c: &Cluster, ip: &str) -> Conn {
    join_as(c.tracker_addr(), "group7", ip, 23999, 2).await
}

/// Malformed reports from a joined storage get EINVAL and change nothing.
#[tokio::test]
async fn malformed_reports_are_refused_and_change_nothing() {
    let c = Cluster::start(&["group1"], 2).await;
    let mut conn = join_group7(&c, "127.0.0.1").await;
    let snapshot = |c: &Cluster| {
        let reg = c.tracker.tracker.registry();
        let m = &reg.groups()["group7"].members["127.0.0.1"];
        (
            m.status,
            m.paths.clone(),
            m.last_synced_timestamp,
            reg.groups()["group7"].members.len(),
        )
    };
    let before = snapshot(&c);
    for (cmd, body) in [
        (Command::StorageBeat, vec![0u8; 10]),
        (Command::StorageReportDiskUsage, vec![0u8; 32]), // two paths, the group has one
        (Command::StorageReportDiskUsage, vec![0u8; 15]),
        (Command::StorageSyncReport, vec![0u8; 7]),
        (Command::StorageSyncNotify, vec![0u8; 3]),
        (Command::StorageChangeStatus, vec![42]),
        (Command::StorageChangeStatus, vec![]),
        (Command::StorageReplicaChg, vec![0u8; 66]),
        (Command::StorageSyncDestReq, vec![1]),
    ] {
        let (st, reply) = conn.call(cmd, &body, 1024).await.expect("reply");
        assert_eq!(
            (st, reply.len()),
            (Status::InvalidArgument, 0),
            "{cmd:?} {}",
            body.len()
        );
    }
    assert_eq!(snapshot(&c), before);
    // CHANGELOG_REQ (77): nothing logged, an empty chunk; joined requests carry no body.
    let (st, reply) = conn
        .call(Command::StorageChangelogReq, &[], 1024)
        .await
        .expect("77");
    assert_eq!((st, reply.len()), (Status::Ok, 0));
    let (st, _) = conn
        .call(Command::StorageChangelogReq, &[0; 32], 1024)
        .await
        .expect("77");
    assert_eq!(st, Status::InvalidArgument);
    let by_id = fdfs_node::proto::cluster::SyncSrcReq {
        group: "group1".into(),
        dest_id: "127.0.0.2".into(),
    };
    let (st, reply) = call(
        c.tracker_addr(),
        Command::StorageChangelogReq,
        &by_id.encode(),
    )
    .await;
    assert_eq!((st, reply.len()), (Status::Ok, 0));
    let unknown = fdfs_node::proto::cluster::SyncSrcReq {
        group: "group1".into(),
        dest_id: "127.0.0.99".into(),
    };
    let (st, _) = call(
        c.tracker_addr(),
        Command::StorageChangelogReq,
        &unknown.encode(),
    )
    .await;
    assert_eq!(st, Status::NotFound);
    // The connection still works.
    let (st, _) = conn
        .call(Command::StorageBeat, &[], 1024)
        .await
        .expect("beat");
    assert_eq!(st, Status::Ok);
}

/// SYNC_BACKLOG_REPORT (240) and LIST_SYNC_BACKLOG (241), this project's own: only a joined
/// storage reports, about members of its own group; a malformed report changes nothing; the
/// listing and the cluster view show what was reported until the reporter goes away.
#[tokio::test]
async fn backlog_reports_are_checked_listed_and_outlive_the_reporters_connection() {
    use fdfs_node::proto::report::{Backlog, SyncBacklogListing, SyncBacklogReport};
    let c = Cluster::start(&["group1"], 2).await;
    let entry = |peer: &str, bytes| Backlog {
        peer_id: peer.into(),
        bytes,
        seconds: 3,
    };
    let report = SyncBacklogReport {
        entries: vec![
            entry("127.0.0.77", 4096),
            entry("127.0.0.1", 5), // itself
            entry("10.9.9.9", 6),  // not a member of group7
            entry("127.0.0.2", 7), // a member of another group
        ],
    }
    .encode();
    let (st, _) = call(c.tracker_addr(), Command::StorageReportSyncBacklog, &report).await;
    assert_eq!(st, Status::AccessDenied, "a report before joining");

    let mut a = join_group7(&c, "127.0.0.1").await;
    let _b = join_group7(&c, "127.0.0.77").await;
    let (st, _) = a
        .call(Command::StorageReportSyncBacklog, &report[..31], 1024)
        .await
        .expect("240");
    assert_eq!(st, Status::InvalidArgument);
    assert!(
        c.tracker.tracker.registry().groups()["group7"]
            .backlog_rows()
            .is_empty(),
        "a malformed report is not taken"
    );
    let (st, _) = a
        .call(Command::StorageReportSyncBacklog, &report, 1024)
        .await
        .expect("240");
    assert_eq!(st, Status::Ok);

    let list = |group: &str| {
        GroupRequest {
            group: group.into(),
        }
        .encode()
    };
    let (st, reply) = call(
        c.tracker_addr(),
        Command::ServerListSyncBacklog,
        &list("group7"),
    )
    .await;
    assert_eq!(st, Status::Ok);
    let rows = SyncBacklogListing::decode(&reply).expect("listing").rows;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(
        (rows[0].source_id.as_str(), &rows[0].backlog),
        ("127.0.0.1", &entry("127.0.0.77", 4096))
    );
    let (st, _) = call(
        c.tracker_addr(),
        Command::ServerListSyncBacklog,
        &list("group9"),
    )
    .await;
    assert_eq!(st, Status::NotFound);
    let (st, _) = call(c.tracker_addr(), Command::ServerListSyncBacklog, &[1, 2, 3]).await;
    assert_eq!(st, Status::InvalidArgument);

    let view = c.tracker.tracker.cluster_view();
    let group7 = view
        .groups
        .iter()
        .find(|g| g.name == "group7")
        .expect("group7");
    let lag = |id: &str| {
        let m = group7.storages.iter().find(|m| m.id == id).expect("member");
        (m.sync_lag_bytes, m.sync_backlog.len())
    };
    assert_eq!(lag("127.0.0.77"), (Some(4096), 1));
    assert_eq!(lag("127.0.0.1"), (None, 0));
    let client = client_of(&[c.tracker_addr()]).await;
    let rows = client.sync_backlog("group7").await.expect("241");
    assert_eq!(rows.map(|r| r.len()), Some(1));

    // The reporter's connection ends: its figures no longer count as the peer's lag, and
    // its last report stays listed, for a retirement to check.
    a.quit().await;
    wait_until(
        "the reporter's figures no longer lag",
        Duration::from_secs(10),
        async || {
            let reg = c.tracker.tracker.registry();
            let g = &reg.groups()["group7"];
            g.lag_bytes_towards("127.0.0.77").is_none() && g.backlog_rows().len() == 1
        },
    )
    .await;
    let rows = client.sync_backlog("group7").await.expect("241");
    assert_eq!(rows.map(|r| r.len()), Some(1));
}

/// A report connection of a storage at `ip` that joined `group` as ACTIVE on `port`, with
/// one store path of `subdirs` directories.
async fn join_as(tracker: SocketAddr, group: &str, ip: &str, port: u64, subdirs: u64) -> Conn {
    let join = JoinRequest {
        group: group.into(),
        storage_port: port,
        store_path_count: 1,
        subdir_count_per_path: subdirs,
        upload_priority: 10,
        status: 7,
        version: "6.16.1".into(),
        trackers: vec![tracker.to_string()],
        ..Default::default()
    };
    join_from(tracker, ip, &join).await
}

/// The report connection of a storage at `ip` that sent `join` to `tracker` and was taken.
async fn join_from(tracker: SocketAddr, ip: &str, join: &JoinRequest) -> Conn {
    let mut conn = Conn::connect(
        tracker,
        Duration::from_secs(2),
        Duration::from_secs(5),
        Some(ip.parse().expect("ip")),
    )
    .await
    .expect("connect");
    let (st, _) = conn
        .call(Command::StorageJoin, &join.encode(), 1024)
        .await
        .expect("join");
    assert_eq!(st, Status::Ok);
    conn
}

/// A FastDFS tracker that starts beside this one fetches the system files from it (61, 63
/// per file, 62), as it fetches them from another FastDFS tracker. The group file is the
/// recorded V6.16.1 one byte for byte for the same groups; the storage file and the sync
/// timestamps have its layout; bad requests get FastDFS's status.
#[tokio::test]
async fn a_fastdfs_tracker_can_bootstrap_its_system_files_from_this_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let t = fdfs_node::tracker::start(tracker_cfg("127.0.0.1:0", dir.path()))
        .await
        .expect("tracker");
    let addr = t.addr;
    // Before any storage joined, there is nothing to give (ENOENT, as V6.16.1 answers).
    let (st, _) = call(addr, Command::TrackerGetSysFilesStart, &[]).await;
    assert_eq!(st, Status::NotFound);
    // As the recorded V6.16.1 cluster: port 23000, one store path of 256 directories.
    let _a = join_as(addr, "group1", "127.0.0.2", 23000, 256).await;
    let _b = join_as(addr, "group1", "127.0.0.3", 23000, 256).await;
    let _c = join_as(addr, "group2", "127.0.0.4", 23000, 256).await;

    let recorded = |id: u64| -> Vec<u8> {
        let e = exchanges()
            .into_iter()
            .find(|e| e["id"] == id)
            .expect("recorded exchange");
        let body = hex_field(&e["response"], "body_hex");
        body[8..].to_vec()
    };

    let mut conn = Conn::connect(addr, Duration::from_secs(2), Duration::from_secs(5), None)
        .await
        .expect("connect");
    let (st, body) = conn
        .call(Command::TrackerGetSysFilesStart, &[], 64)
        .await
        .expect("61");
    assert_eq!((st, body.len()), (Status::Ok, 0));
    let mut files = Vec::new();
    for index in 0..4u8 {
        let mut file = Vec::new();
        loop {
            let mut req = vec![index];
            req.extend_from_slice(&(file.len() as u64).to_be_bytes());
            let (st, body) = conn
                .call(Command::TrackerGetOneSysFile, &req, 8192)
                .await
                .expect("63");
            assert_eq!(st, Status::Ok);
            let size = u64::from_be_bytes(body[..8].try_into().expect("size"));
            assert!(
                body.len() <= 8 + 8173,
                "a piece fits FastDFS's 8 KiB buffer"
            );
            file.extend_from_slice(&body[8..]);
            if file.len() as u64 >= size {
                assert_eq!(file.len() as u64, size);
                break;
            }
        }
        files.push(String::from_utf8(file).expect("text"));
    }
    // Past the end, a bad index and a bad length: EINVAL, as V6.16.1 answers them.
    for bad in [
        [vec![0u8], 10_000u64.to_be_bytes().to_vec()].concat(),
        [vec![4u8], 0u64.to_be_bytes().to_vec()].concat(),
        vec![0u8; 3],
    ] {
        let (st, _) = conn
            .call(Command::TrackerGetOneSysFile, &bad, 64)
            .await
            .expect("63");
        assert_eq!(st, Status::InvalidArgument, "{bad:?}");
    }
    let (st, _) = conn
        .call(Command::TrackerGetSysFilesEnd, &[], 64)
        .await
        .expect("62");
    assert_eq!(st, Status::Ok);

    assert_eq!(
        files[0].as_bytes(),
        recorded(393).as_slice(),
        "{}",
        files[0]
    );
    // The storage file: a section per storage, in the recorded order of keys, and the
    // count at the end, which a FastDFS tracker reads back.
    let recorded_head = String::from_utf8(recorded(394)).expect("text");
    let head_keys = |text: &str| -> Vec<String> {
        text.lines()
            .take_while(|l| !l.is_empty())
            .filter_map(|l| Some(l.strip_prefix('\t')?.split_once('=')?.0.to_owned()))
            .collect()
    };
    let ours = head_keys(&files[1]);
    let theirs = head_keys(&recorded_head);
    assert!(theirs.len() >= 10, "{recorded_head}");
    assert_eq!(
        ours[..theirs.len() - 1],
        theirs[..theirs.len() - 1],
        "{}",
        files[1]
    );
    assert!(files[1].starts_with("# storage: 127.0.0.2:23000\n[Storage001]\n\tgroup_name=group1\n\tip_addr=127.0.0.2\n\tstatus="), "{}", files[1]);
    assert!(
        files[1].contains("[Storage003]\n\tgroup_name=group2\n\tip_addr=127.0.0.4\n"),
        "{}",
        files[1]
    );
    assert!(
        files[1].ends_with("\n[Global]\n\tstorage_count=3\n"),
        "{}",
        files[1]
    );
    assert_eq!(ours.len(), 50, "{}", files[1]);
    // Sync timestamps: a line per storage, a column per storage of its group.
    let lines: Vec<Vec<&str>> = files[2].lines().map(|l| l.split(',').collect()).collect();
    assert_eq!(lines.len(), 3, "{}", files[2]);
    assert_eq!(lines[0][..2], ["group1", "127.0.0.2"]);
    assert_eq!((lines[0].len(), lines[2].len()), (4, 3), "{}", files[2]);
    assert_eq!(lines[2], ["group2", "127.0.0.4", "0"]);
    assert_eq!(files[3], "", "nothing deleted or moved");
}

/// This project's SERVER_FENCE_STORAGE (243): a member is fenced and unfenced on every
/// tracker; unknown members and malformed bodies get a status and change nothing.
#[tokio::test]
async fn members_are_fenced_and_unfenced_by_request() {
    let c = Cluster::start(&["group1"], 2).await;
    let _a = join_group7(&c, "127.0.0.77").await;
    let client = client_of(&[c.tracker_addr()]).await;
    let fenced = |on: bool| {
        c.tracker.tracker.registry().groups()["group7"].members["127.0.0.77"].fenced == on
    };
    let statuses = |r: Vec<(SocketAddr, Result<Status, fdfs_node::client::ClientError>)>| {
        r.into_iter()
            .map(|(_, s)| s.expect("answer"))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        statuses(client.fence_storage("group7", "127.0.0.77", true).await),
        [Status::Ok]
    );
    assert!(fenced(true));
    assert_eq!(
        statuses(client.fence_storage("group7", "127.0.0.78", true).await),
        [Status::NotFound]
    );
    for bad in [vec![], vec![2u8; 20], vec![1u8; 17]] {
        let (st, _) = call(c.tracker_addr(), Command::ServerFenceStorage, &bad).await;
        assert_eq!(st, Status::InvalidArgument, "{bad:?}");
    }
    assert!(fenced(true));
    assert_eq!(
        statuses(client.fence_storage("group7", "127.0.0.77", false).await),
        [Status::Ok]
    );
    assert!(fenced(false));
}

/// A tracker that starts with no state beside a running one takes that one's state before
/// the first join, as a FastDFS tracker does (64 to each tracker the storage names, then
/// 61, 63 per file, 62 from the best): a new storage that joins it first is told to copy
/// the group from a member, instead of finding the group empty and serving without a copy.
#[tokio::test]
async fn an_empty_tracker_takes_a_running_trackers_state_before_the_first_join() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = fdfs_node::tracker::start(tracker_cfg("127.0.0.1:0", &dir.path().join("a")))
        .await
        .expect("tracker a");
    let mut member = join_as(a.addr, "group1", "127.0.0.2", 23000, 256).await;
    let (st, _) = member
        .call(Command::StorageBeat, &[], 4096)
        .await
        .expect("beat");
    assert_eq!(st, Status::Ok);
    assert_eq!(
        member_status(&a, "group1", "127.0.0.2"),
        Some(StorageStatus::Active)
    );
    let b = fdfs_node::tracker::start(tracker_cfg("127.0.0.1:0", &dir.path().join("b")))
        .await
        .expect("tracker b");
    assert!(b.tracker.registry().groups().is_empty());

    // A new storage reports to both trackers and joins the empty one first.
    let join = JoinRequest {
        group: "group1".into(),
        storage_port: 23000,
        store_path_count: 1,
        subdir_count_per_path: 256,
        upload_priority: 10,
        version: "6.16.1".into(),
        trackers: vec![a.addr.to_string(), b.addr.to_string()],
        ..Default::default()
    };
    let mut conn = join_from(b.addr, "127.0.0.3", &join).await;
    let known = |t: &RunningTracker| {
        let reg = t.tracker.registry();
        let m = &reg.groups()["group1"].members["127.0.0.2"];
        (
            m.join_time,
            m.port,
            m.store_path_count,
            m.subdir_count_per_path,
        )
    };
    assert_eq!(
        known(&b),
        known(&a),
        "the member as the running tracker knows it"
    );
    let (st, body) = conn
        .call(Command::StorageSyncDestReq, &[], 1024)
        .await
        .expect("sync dest");
    assert_eq!(st, Status::Ok);
    let src = fdfs_node::proto::report::SyncSource::decode(&body).expect("a source");
    assert_eq!(
        src.src_id, "127.0.0.2",
        "the new storage copies from the member"
    );
    assert_eq!(
        member_status(&b, "group1", "127.0.0.3"),
        Some(StorageStatus::WaitSync)
    );

    // A tracker that has state of its own keeps it: nothing is fetched again.
    let c = fdfs_node::tracker::start(tracker_cfg("127.0.0.1:0", &dir.path().join("c")))
        .await
        .expect("tracker c");
    let _own = join_as(c.addr, "group2", "127.0.0.4", 23000, 256).await;
    let mut later = join;
    later.group = "group2".into();
    later.trackers = vec![a.addr.to_string(), c.addr.to_string()];
    let _second = join_from(c.addr, "127.0.0.5", &later).await;
    assert!(!c.tracker.registry().groups().contains_key("group1"));
}
