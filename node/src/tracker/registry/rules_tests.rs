//! Unit tests of the state machine (§3.1), storage identity and every placement
//! policy (§5.1–5.3, §4.6).

use super::*;
use crate::config::IdType;
use crate::fileid::{NameCore, appender_size_field, normal_size_field};
use crate::proto::cluster::FetchStorageIds;

fn req(group: &str, init: bool, status: i8, id: &str) -> JoinRequest {
    JoinRequest {
        group: group.into(),
        storage_port: 23000,
        store_path_count: 2,
        subdir_count_per_path: 256,
        upload_priority: 10,
        init_flag: init,
        status,
        storage_id: id.into(),
        trackers: vec!["127.0.0.1:22122".into()],
        ..Default::default()
    }
}

fn join(reg: &mut Registry, group: &str, ip: &str) -> String {
    reg.join(ip, &req(group, false, 7, ""), 1000)
        .expect("join")
        .0
}

fn disk(reg: &mut Registry, group: &str, id: &str, free: [u64; 2]) {
    reg.disk_usage(
        group,
        id,
        free.iter()
            .map(|f| PathUsage {
                total_mb: 100_000,
                free_mb: *f,
            })
            .collect(),
        1000,
    )
    .expect("disk");
}

fn status(reg: &Registry, group: &str, id: &str) -> StorageStatus {
    reg.groups[group].members[id].status
}

fn brief(id: &str, status: StorageStatus) -> StorageBrief {
    StorageBrief {
        status: status as u8,
        port: 23000,
        id: id.into(),
        ip: id.into(),
    }
}

fn with_ids(text: &str, id_type: IdType) -> Registry {
    let cfg = TrackerConfig {
        use_storage_id: true,
        id_type_in_filename: id_type,
        reserved_storage_space: ReservedSpace::Mb(0),
        ..Default::default()
    };
    Registry::with_storage_ids(cfg, StorageIds::parse(text).expect("ids"))
}

#[test]
fn join_refuses_bad_status_and_revives_deleted_members() {
    let mut reg = Registry::new(TrackerConfig::default());
    for bad in [
        -1i8,
        StorageStatus::Deleted as i8,
        StorageStatus::IpChanged as i8,
        99,
    ] {
        assert_eq!(
            reg.join("127.0.0.2", &req("group1", false, bad, ""), 1)
                .map(|_| ()),
            Err(Status::Fault),
            "status {bad}"
        );
    }
    assert!(
        reg.groups
            .get("group1")
            .is_none_or(|g| g.members.is_empty())
    );
    // A reported ACTIVE comes back ONLINE; OFFLINE too.
    let a = join(&mut reg, "group1", "127.0.0.2");
    assert_eq!(status(&reg, "group1", &a), StorageStatus::Online);
    reg.groups
        .get_mut("group1")
        .expect("g")
        .members
        .get_mut(&a)
        .expect("m")
        .status = StorageStatus::Offline;
    join(&mut reg, "group1", "127.0.0.2");
    assert_eq!(status(&reg, "group1", &a), StorageStatus::Online);
    // Stopped and deleted, it rejoins as a fresh member.
    reg.disconnect("group1", &a, reg.groups["group1"].members[&a].session);
    assert_eq!(status(&reg, "group1", &a), StorageStatus::Offline);
    reg.delete_storage("group1", &a).expect("delete");
    join(&mut reg, "group1", "127.0.0.2");
    assert_eq!(status(&reg, "group1", &a), StorageStatus::Init);
    // Members of a group must agree on the path layout.
    let mut other = req("group1", false, 7, "");
    other.store_path_count = 3;
    assert_eq!(
        reg.join("127.0.0.3", &other, 1).map(|_| ()),
        Err(Status::InvalidArgument)
    );
    assert_eq!(reg.groups["group1"].members.len(), 1);
    // ... and on one port, unless file names carry storage ids.
    let mut other = req("group1", false, 7, "");
    other.storage_port = 23001;
    assert_eq!(
        reg.join("127.0.0.3", &other, 1).map(|_| ()),
        Err(Status::InvalidArgument)
    );
    assert_eq!(reg.groups["group1"].members.len(), 1);
    // The member itself may move to another port.
    reg.join("127.0.0.2", &other, 1).expect("own port change");
    let mut ids = with_ids("1 group1 127.0.0.2\n2 group1 127.0.0.3\n", IdType::Id);
    ids.join("127.0.0.2", &req("group1", false, 7, "1"), 1)
        .expect("join");
    let mut second = req("group1", false, 7, "2");
    second.storage_port = 23001;
    ids.join("127.0.0.3", &second, 1)
        .expect("ports may differ with ids in names");
    assert_eq!(ids.group_stat(&ids.groups["group1"]).storage_port, -1);
}

#[test]
fn disconnect_only_ends_the_current_session() {
    let mut reg = Registry::new(TrackerConfig::default());
    let a = join(&mut reg, "group1", "127.0.0.2");
    disk(&mut reg, "group1", &a, [10, 10]);
    let old = reg.groups["group1"].members[&a].session;
    join(&mut reg, "group1", "127.0.0.2");
    disk(&mut reg, "group1", &a, [10, 10]);
    reg.disconnect("group1", &a, old);
    assert_eq!(status(&reg, "group1", &a), StorageStatus::Active);
    let cur = reg.groups["group1"].members[&a].session;
    reg.disconnect("group1", &a, cur);
    assert_eq!(status(&reg, "group1", &a), StorageStatus::Offline);
}

#[test]
fn report_status_follows_the_rules() {
    let mut reg = Registry::new(TrackerConfig::default());
    let a = join(&mut reg, "group1", "127.0.0.2");
    disk(&mut reg, "group1", &a, [10, 10]);
    let b = reg
        .join("127.0.0.3", &req("group1", true, 0, ""), 1000)
        .expect("join")
        .0;
    reg.sync_dest_req("group1", &b, 1000).expect("source");
    assert_eq!(status(&reg, "group1", &b), StorageStatus::WaitSync);
    // Forward moves apply: WAIT_SYNC → SYNCING → OFFLINE; backwards ones do not.
    reg.report_status("group1", &brief(&b, StorageStatus::Syncing))
        .expect("76");
    assert_eq!(status(&reg, "group1", &b), StorageStatus::Syncing);
    reg.report_status("group1", &brief(&b, StorageStatus::WaitSync))
        .expect("76");
    assert_eq!(status(&reg, "group1", &b), StorageStatus::Syncing);
    reg.report_status("group1", &brief(&b, StorageStatus::Offline))
        .expect("76");
    assert_eq!(status(&reg, "group1", &b), StorageStatus::Offline);
    // The next disk report makes it ACTIVE.
    disk(&mut reg, "group1", &b, [10, 10]);
    assert_eq!(status(&reg, "group1", &b), StorageStatus::Active);
    // ACTIVE keeps its status against anything but DELETED / IP_CHANGED.
    reg.report_status("group1", &brief(&b, StorageStatus::Recovery))
        .expect("76");
    assert_eq!(status(&reg, "group1", &b), StorageStatus::Active);
    reg.report_status("group1", &brief(&b, StorageStatus::Deleted))
        .expect("76");
    assert_eq!(status(&reg, "group1", &b), StorageStatus::Deleted);
    // Unknown storages are added unless the report is ONLINE/ACTIVE/DELETED/IP_CHANGED.
    reg.report_status("group1", &brief("127.0.0.9", StorageStatus::Active))
        .expect("76");
    assert!(!reg.groups["group1"].members.contains_key("127.0.0.9"));
    reg.report_status("group1", &brief("127.0.0.9", StorageStatus::WaitSync))
        .expect("76");
    assert_eq!(status(&reg, "group1", "127.0.0.9"), StorageStatus::WaitSync);
    // Bad input changes nothing.
    let before = reg.groups["group1"].changes;
    assert_eq!(
        reg.report_status("group9", &brief(&b, StorageStatus::Offline)),
        Err(Status::NotFound)
    );
    let mut weird = brief(&a, StorageStatus::Offline);
    weird.status = 42;
    assert_eq!(
        reg.report_status("group1", &weird),
        Err(Status::InvalidArgument)
    );
    assert_eq!(reg.groups["group1"].changes, before);
    assert_eq!(status(&reg, "group1", &a), StorageStatus::Active);
}

#[test]
fn sync_source_request_and_change_status() {
    let mut reg = Registry::new(TrackerConfig::default());
    let a = join(&mut reg, "group1", "127.0.0.2");
    disk(&mut reg, "group1", &a, [10, 10]);
    let b = reg
        .join("127.0.0.3", &req("group1", true, 0, ""), 1000)
        .expect("join")
        .0;
    assert_eq!(
        reg.sync_src_req("group1", &b),
        Err(Status::NotFound),
        "INIT"
    );
    reg.sync_dest_req("group1", &b, 1500).expect("87");
    assert_eq!(
        reg.sync_src_req("group1", &b),
        Ok(Some(SyncSource {
            src_id: a.clone(),
            until: 1500
        }))
    );
    assert_eq!(reg.sync_src_req("group1", &a), Ok(None), "no source");
    assert_eq!(reg.sync_src_req("group1", "nobody"), Err(Status::NotFound));
    // The source is deleted: the record is cleared.
    reg.groups
        .get_mut("group1")
        .expect("g")
        .members
        .get_mut(&a)
        .expect("m")
        .status = StorageStatus::Deleted;
    assert_eq!(reg.sync_src_req("group1", &b), Ok(None));
    assert!(reg.groups["group1"].members[&b].src_id.is_empty());

    // 59: adopt the leader's view; ONLINE/ACTIVE are stored as OFFLINE.
    reg.change_status("group1", &b, StorageStatus::Active as u8)
        .expect("59");
    assert_eq!(status(&reg, "group1", &b), StorageStatus::Offline);
    reg.change_status("group1", &b, StorageStatus::Online as u8)
        .expect("59");
    assert_eq!(
        status(&reg, "group1", &b),
        StorageStatus::Offline,
        "both available"
    );
    reg.change_status("group1", &b, StorageStatus::Syncing as u8)
        .expect("59");
    assert_eq!(status(&reg, "group1", &b), StorageStatus::Syncing);
    assert_eq!(
        reg.change_status("group1", &b, 99),
        Err(Status::InvalidArgument)
    );
    assert_eq!(status(&reg, "group1", &b), StorageStatus::Syncing);
}

#[test]
fn delete_storage_and_group() {
    let mut reg = Registry::new(TrackerConfig::default());
    let a = join(&mut reg, "group1", "127.0.0.2");
    disk(&mut reg, "group1", &a, [10, 10]);
    assert_eq!(reg.delete_storage("group1", &a), Err(Status::Busy));
    assert_eq!(reg.delete_group("group1"), Err(Status::Busy));
    assert_eq!(reg.delete_storage("group1", "x"), Err(Status::NotFound));
    assert_eq!(reg.delete_storage("group9", &a), Err(Status::NotFound));
    reg.check_alive(5000);
    assert_eq!(status(&reg, "group1", &a), StorageStatus::Offline);
    assert_eq!(reg.delete_storage("group1", &a), Ok(()));
    assert_eq!(reg.delete_storage("group1", &a), Err(Status::AlreadyDone));
    assert_eq!(reg.delete_group("group1"), Ok(()));
    assert_eq!(reg.delete_group("group1"), Err(Status::NotFound));
}

#[test]
fn backlog_reports_keep_one_entry_per_peer_and_end_with_the_reporter() {
    use crate::proto::report::Backlog;
    let mut reg = Registry::new(TrackerConfig::default());
    let [a, b, c] = ["127.0.0.2", "127.0.0.3", "127.0.0.4"].map(|ip| join(&mut reg, "group1", ip));
    for id in [&a, &b, &c] {
        disk(&mut reg, "group1", id, [10, 10]);
    }
    let to = |peer: &str, bytes| Backlog {
        peer_id: peer.into(),
        bytes,
        seconds: 1,
    };
    // A peer named twice keeps its last entry; figures that would overflow a sum saturate.
    reg.sync_backlog(
        "group1",
        &a,
        vec![to(&c, 1), to(&c, u64::MAX), to(&b, 7)],
        1000,
    )
    .expect("a reports");
    reg.sync_backlog("group1", &b, vec![to(&c, u64::MAX)], 1000)
        .expect("b reports");
    let g = &reg.groups["group1"];
    assert_eq!(g.backlog_towards(&c).len(), 2);
    assert_eq!(g.lag_bytes_towards(&c), Some(u64::MAX));
    assert_eq!(g.lag_bytes_towards(&b), Some(7));
    assert_eq!(g.lag_bytes_towards(&a), None, "nobody reports about a");
    assert_eq!(g.backlog_rows().len(), 3);
    // A reporter that stops beating is OFFLINE: its figures no longer count as lag, but its
    // last report stays listed (a retirement checks it).
    reg.check_alive(5000);
    assert_eq!(status(&reg, "group1", &a), StorageStatus::Offline);
    let g = &reg.groups["group1"];
    assert!(g.backlog_towards(&c).is_empty());
    assert_eq!(g.lag_bytes_towards(&b), None);
    assert_eq!(g.backlog_rows().len(), 3);
    // A report naming no peer (none known to c yet, or only outsiders) still shows that c
    // reports: one row, naming no peer, nothing unsent.
    reg.sync_backlog("group1", &c, vec![to("10.9.9.9", 5)], 1000)
        .expect("c reports");
    let rows = reg.groups["group1"].backlog_rows();
    let of_c: Vec<_> = rows.iter().filter(|r| r.source_id == c).collect();
    assert_eq!(of_c.len(), 1);
    assert_eq!(
        (of_c[0].backlog.peer_id.as_str(), of_c[0].backlog.bytes),
        ("", 0)
    );
}

#[test]
fn sync_problem_reports_name_members_only_and_end_with_the_reporter() {
    use crate::proto::report::SyncProblem;
    let mut reg = Registry::new(TrackerConfig::default());
    let [a, b] = ["127.0.0.2", "127.0.0.3"].map(|ip| join(&mut reg, "group1", ip));
    for id in [&a, &b] {
        disk(&mut reg, "group1", id, [10, 10]);
    }
    let from = |source: &str, status| SyncProblem {
        source_id: source.into(),
        status,
        since: 900,
    };
    reg.sync_problems(
        "group1",
        &b,
        vec![
            from(&a, 28),
            from(&a, 5),
            from(&b, 28),
            from("10.9.9.9", 28),
        ],
    )
    .expect("b reports");
    assert_eq!(
        reg.groups["group1"].members[&b].problems,
        vec![from(&a, 28)]
    );
    assert_eq!(
        reg.sync_problems("group2", &b, vec![]),
        Err(Status::NotFound),
        "only a member of the group reports"
    );
    reg.sync_problems("group1", &b, vec![]).expect("cleared");
    assert!(reg.groups["group1"].members[&b].problems.is_empty());
    reg.sync_problems("group1", &b, vec![from(&a, 28)])
        .expect("again");
    reg.check_alive(5000);
    assert!(reg.groups["group1"].members[&b].problems.is_empty());
}

#[test]
fn a_reread_storage_ids_conf_changes_a_joined_members_access() {
    let both = "100001 group1 127.0.0.2\n100002 group1 127.0.0.3\n";
    let mut reg = with_ids(both, IdType::Id);
    for (ip, id) in [("127.0.0.2", "100001"), ("127.0.0.3", "100002")] {
        reg.join(ip, &req("group1", false, 7, id), 1).expect("join");
    }
    let before = reg.groups["group1"].changes;
    // 100002 is on its way out: read-only, so it takes no more uploads.
    reg.set_storage_ids(
        StorageIds::parse("100001 group1 127.0.0.2\n100002 group1 127.0.0.3 rw=read\n")
            .expect("ids"),
    );
    let g = &reg.groups["group1"];
    assert_eq!(
        g.members["100002"].rw_mode,
        crate::tracker::storage_ids::RW_READ
    );
    assert_eq!(
        g.members["100001"].rw_mode,
        crate::tracker::storage_ids::RW_BOTH
    );
    assert!(g.changes > before, "members are told");
    // The same file again changes nothing.
    let again = reg.groups["group1"].changes;
    reg.set_storage_ids(
        StorageIds::parse("100001 group1 127.0.0.2\n100002 group1 127.0.0.3 rw=read\n")
            .expect("ids"),
    );
    assert_eq!(reg.groups["group1"].changes, again);
}

#[test]
fn storage_ids_decide_identity() {
    let mut reg = with_ids(
        "100001 group1 127.0.0.2\n100002 group1 127.0.0.3:23000 rw=read\n100003 group2 localhost\n",
        IdType::Id,
    );
    // The announced id is trusted; the address may change.
    let (id, _) = reg
        .join("127.0.0.7", &req("group1", false, 7, "100001"), 1)
        .expect("join");
    assert_eq!(id, "100001");
    // Without an announced id, the address decides (host names resolved).
    let (id, _) = reg
        .join("127.0.0.3", &req("group1", false, 7, ""), 1)
        .expect("join");
    assert_eq!(id, "100002");
    let (id, _) = reg
        .join("127.0.0.1", &req("group2", false, 7, ""), 1)
        .expect("join");
    assert_eq!(id, "100003");
    // Not configured, wrong group, or an id held by a connected storage elsewhere.
    assert_eq!(
        reg.join("127.0.0.8", &req("group1", false, 7, "100009"), 1)
            .map(|_| ()),
        Err(Status::NotFound)
    );
    assert_eq!(
        reg.join("127.0.0.9", &req("group1", false, 7, ""), 1)
            .map(|_| ()),
        Err(Status::NotFound)
    );
    assert_eq!(
        reg.join("127.0.0.7", &req("group2", false, 7, "100001"), 1)
            .map(|_| ()),
        Err(Status::InvalidArgument)
    );
    assert_eq!(
        reg.join("127.0.0.5", &req("group1", false, 7, "100001"), 1)
            .map(|_| ()),
        Err(Status::AlreadyExists)
    );
    assert_eq!(reg.groups["group1"].members["100001"].ip, "127.0.0.7");
    // Once its connection is gone, the id may come back from a new address.
    let s = reg.groups["group1"].members["100001"].session;
    reg.disconnect("group1", "100001", s);
    reg.join("127.0.0.5", &req("group1", false, 7, "100001"), 1)
        .expect("rejoin");
    assert_eq!(reg.groups["group1"].members["100001"].ip, "127.0.0.5");

    // rw=read: serves downloads, takes no uploads.
    disk(&mut reg, "group1", "100001", [10, 10]);
    disk(&mut reg, "group1", "100002", [10, 10]);
    let g = &reg.groups["group1"];
    assert_eq!(g.writable().len(), 1);
    assert_eq!(g.readable().len(), 2);
    for _ in 0..3 {
        assert_eq!(
            reg.query_store(Some("group1")).map(|t| t.addr.ip),
            Ok("127.0.0.5".into())
        );
    }
    // Names carrying a server id route to that storage's current address.
    let core = NameCore {
        source: Source::ServerId(100001),
        timestamp: 990,
        size_field: normal_size_field(3, 1),
        crc32: 1,
    };
    let name = format!("M00/00/00/{}123.txt", core.encode());
    assert_eq!(
        reg.query_fetch("group1", &name, 1000).map(|t| t.addr.ip),
        Ok("127.0.0.5".into())
    );

    // 69 and 70.
    let page = reg
        .fetch_storage_ids(FetchStorageIds {
            start_index: 1,
            allow_empty: None,
        })
        .expect("69");
    assert_eq!(page.total, 3);
    assert_eq!(
        page.lines,
        [
            "100002 group1 127.0.0.3:23000 rw=read",
            "100003 group2 localhost"
        ]
    );
    assert_eq!(
        reg.fetch_storage_ids(FetchStorageIds {
            start_index: 3,
            allow_empty: Some(true),
        }),
        Err(Status::InvalidArgument)
    );
    assert_eq!(
        reg.server_id_by_addr("group2", "127.0.0.1", 23000),
        Ok("100003".into())
    );
    assert_eq!(
        reg.server_id_by_addr("group1", "127.0.0.1", 23000),
        Err(Status::NotFound)
    );
    assert_eq!(
        reg.group_by_addr("127.0.0.3".parse().expect("ip"), 23000),
        Ok("group1".into())
    );
}

#[test]
fn without_storage_ids_69_and_109_say_so() {
    let reg = Registry::new(TrackerConfig::default());
    assert_eq!(
        reg.fetch_storage_ids(FetchStorageIds {
            start_index: 0,
            allow_empty: Some(true)
        })
        .map(|p| p.total),
        Ok(0)
    );
    for allow_empty in [Some(false), None] {
        assert_eq!(
            reg.fetch_storage_ids(FetchStorageIds {
                start_index: 0,
                allow_empty
            }),
            Err(Status::NotSupported)
        );
    }
    assert_eq!(
        reg.group_by_addr("127.0.0.2".parse().expect("ip"), 23000),
        Err(Status::NotSupported)
    );
    assert_eq!(
        reg.server_id_by_addr("group1", "127.0.0.2", 23000),
        Ok("127.0.0.2".into())
    );
}

/// Three groups with different free space, two storages in group1.
fn placement(cfg: TrackerConfig) -> Registry {
    let mut reg = Registry::new(cfg);
    for (g, ip, free) in [
        ("group1", "127.0.0.2", [500, 900]),
        ("group1", "127.0.0.3", [700, 100]),
        ("group2", "127.0.0.4", [5000, 5000]),
        ("group3", "127.0.0.5", [300, 300]),
    ] {
        let id = join(&mut reg, g, ip);
        disk(&mut reg, g, &id, free);
    }
    reg
}

fn cfg() -> TrackerConfig {
    TrackerConfig {
        reserved_storage_space: ReservedSpace::Mb(0),
        ..Default::default()
    }
}

#[test]
fn store_lookup_policies() {
    // 0: round robin over groups in name order.
    let mut reg = placement(cfg());
    let picks: Vec<String> = (0..4)
        .map(|_| reg.query_store(None).expect("store").group)
        .collect();
    assert_eq!(picks, ["group1", "group2", "group3", "group1"]);
    // 1: the configured group only.
    let mut reg = placement(TrackerConfig {
        store_lookup: 1,
        store_group: "group3".into(),
        ..cfg()
    });
    for _ in 0..3 {
        assert_eq!(reg.query_store(None).map(|t| t.group), Ok("group3".into()));
    }
    let mut reg = placement(TrackerConfig {
        store_lookup: 1,
        store_group: "group9".into(),
        ..cfg()
    });
    assert_eq!(reg.query_store(None), Err(Status::NotFound));
    // 2: the group with the most free space (a group's space is its emptiest writable member's).
    let mut reg = placement(TrackerConfig {
        store_lookup: 2,
        ..cfg()
    });
    for _ in 0..3 {
        assert_eq!(reg.query_store(None).map(|t| t.group), Ok("group2".into()));
    }
    // Round robin skips a group below the reserve; nothing left gives ENOSPC.
    let mut reg = placement(TrackerConfig {
        reserved_storage_space: ReservedSpace::Mb(900),
        ..cfg()
    });
    for _ in 0..3 {
        assert_eq!(reg.query_store(None).map(|t| t.group), Ok("group2".into()));
    }
    let mut reg = placement(TrackerConfig {
        reserved_storage_space: ReservedSpace::Mb(100_000),
        ..cfg()
    });
    assert_eq!(reg.query_store(None), Err(Status::NoSpace));
    assert_eq!(reg.query_store(Some("group2")), Err(Status::NoSpace));
}

#[test]
fn store_server_and_store_path_policies() {
    // store_server 0: round robin over writable members.
    let mut reg = placement(cfg());
    let ips: Vec<String> = (0..4)
        .map(|_| reg.query_store(Some("group1")).expect("store").addr.ip)
        .collect();
    assert_eq!(ips, ["127.0.0.2", "127.0.0.3", "127.0.0.2", "127.0.0.3"]);
    // The placement's cursors are what the monitor reports (90 and 92).
    reg.query_store(Some("group1")).expect("store");
    assert_eq!(reg.group_stats()[0].current_write_server, 1);
    let cursors: Vec<u64> = (reg.storage_stats("group1", None).expect("92").iter())
        .map(|s| s.current_write_path)
        .collect();
    assert_eq!(
        cursors,
        [1, 0],
        "127.0.0.2 took three uploads, 127.0.0.3 two"
    );
    // 1: always the first by id.
    let mut reg = placement(TrackerConfig {
        store_server: 1,
        ..cfg()
    });
    for _ in 0..3 {
        assert_eq!(
            reg.query_store(Some("group1")).map(|t| t.addr.ip),
            Ok("127.0.0.2".into())
        );
    }
    // 2: the lowest upload priority.
    let mut reg = placement(TrackerConfig {
        store_server: 2,
        ..cfg()
    });
    reg.groups
        .get_mut("group1")
        .expect("g")
        .members
        .get_mut("127.0.0.3")
        .expect("m")
        .upload_priority = 1;
    for _ in 0..3 {
        assert_eq!(
            reg.query_store(Some("group1")).map(|t| t.addr.ip),
            Ok("127.0.0.3".into())
        );
    }
    // store_path 0: paths in turn; 2: the freest path (set at each disk report).
    let mut reg = placement(TrackerConfig {
        store_server: 1,
        ..cfg()
    });
    let paths: Vec<u8> = (0..4)
        .map(|_| reg.query_store(Some("group1")).expect("s").store_path_index)
        .collect();
    assert_eq!(paths, [0, 1, 0, 1]);
    let mut reg = placement(TrackerConfig {
        store_server: 1,
        store_path: 2,
        ..cfg()
    });
    for _ in 0..3 {
        assert_eq!(
            reg.query_store(Some("group1")).map(|t| t.store_path_index),
            Ok(1)
        );
    }
    let reported = reg.storage_stats("group1", Some("127.0.0.2")).expect("92");
    assert_eq!(reported[0].current_write_path, 1);
    // A path below its share of the reserve is skipped.
    let mut one = Registry::new(TrackerConfig {
        reserved_storage_space: ReservedSpace::Mb(1000),
        ..cfg()
    });
    let id = join(&mut one, "group1", "127.0.0.2");
    disk(&mut one, "group1", &id, [100, 5000]);
    for _ in 0..3 {
        assert_eq!(one.query_store(None).map(|t| t.store_path_index), Ok(1));
    }
    // 106/107 list every writable member.
    let all = reg.query_store_all(Some("group1")).expect("107");
    assert_eq!(all.servers.len(), 2);
}

#[test]
fn download_server_policies() {
    let name_from = |ip: [u8; 4], ts: u32, appender: bool| {
        let core = NameCore {
            source: Source::Ip(ip.into()),
            timestamp: ts,
            size_field: if appender {
                appender_size_field(1)
            } else {
                normal_size_field(10, 1)
            },
            crc32: 7,
        };
        format!("M00/00/00/{}123.txt", core.encode())
    };
    // download_server 1: the source first, even for old files.
    let mut reg = placement(TrackerConfig {
        download_server: 1,
        ..cfg()
    });
    let old = name_from([127, 0, 0, 3], 10, false);
    for _ in 0..4 {
        assert_eq!(
            reg.query_fetch("group1", &old, 1_000_000)
                .map(|t| t.addr.ip),
            Ok("127.0.0.3".into())
        );
    }
    // download_server 0: old files spread over the readable members.
    let mut reg = placement(cfg());
    let ips: std::collections::BTreeSet<String> = (0..4)
        .map(|_| {
            reg.query_fetch("group1", &old, 1_000_000)
                .expect("f")
                .addr
                .ip
        })
        .collect();
    assert_eq!(ips.len(), 2);
    // Appender files always go to their source.
    let app = name_from([127, 0, 0, 3], 10, true);
    for _ in 0..4 {
        assert_eq!(
            reg.query_fetch("group1", &app, 1_000_000)
                .map(|t| t.addr.ip),
            Ok("127.0.0.3".into())
        );
    }
    // A member synced past the file's time may serve it.
    let fresh = name_from([127, 0, 0, 2], 990, false);
    reg.sync_report("group1", "127.0.0.3", &[("127.0.0.2".into(), 995)], 1000)
        .expect("89");
    let ips: std::collections::BTreeSet<String> = (0..4)
        .map(|_| reg.query_fetch("group1", &fresh, 1000).expect("f").addr.ip)
        .collect();
    assert_eq!(ips.len(), 2);
    let all = reg.query_fetch_all("group1", &fresh, 1000).expect("105");
    assert_eq!(all.len(), 2);
}

#[test]
fn a_storage_with_two_addresses_is_given_as_the_one_on_the_clients_side() {
    let mut reg = with_ids(
        "100001 group1 127.0.0.2,10.78.0.11\n100002 group1 127.0.0.3\n",
        IdType::Ip,
    );
    let pairs = reg.storage_ids().resolve_pairs();
    assert!(reg.set_address_pairs(pairs.clone()));
    assert!(!reg.set_address_pairs(pairs), "unchanged");
    for ip in ["127.0.0.2", "127.0.0.3"] {
        let id = join(&mut reg, "group1", ip);
        disk(&mut reg, "group1", &id, [10, 10]);
    }
    let seen = |reg: &mut Registry, client: &str| {
        let mut all = reg.query_store_all(Some("group1")).expect("store");
        reg.as_seen_from("group1", &mut all.servers, client.parse().expect("ip"));
        all.servers.into_iter().map(|a| a.ip).collect::<Vec<_>>()
    };
    assert_eq!(seen(&mut reg, "127.0.0.1"), ["127.0.0.2", "127.0.0.3"]);
    assert_eq!(
        seen(&mut reg, "10.78.0.2"),
        ["10.78.0.11", "127.0.0.3"],
        "an outside client gets the outer address of the storage that has one"
    );
    // The registered address stays what the storage connects from.
    assert_eq!(reg.groups["group1"].members["100001"].ip, "127.0.0.2");
}

#[test]
fn a_fenced_member_takes_no_uploads_but_serves_and_the_fence_survives_a_restart() {
    let mut reg = Registry::new(TrackerConfig::default());
    let [a, b] = ["127.0.0.2", "127.0.0.3"].map(|ip| join(&mut reg, "group1", ip));
    for id in [&a, &b] {
        disk(&mut reg, "group1", id, [50_000, 50_000]);
    }
    assert_eq!(reg.fence_storage("group1", &a, true), Ok(()));
    assert_eq!(
        reg.fence_storage("group1", "127.0.0.9", true),
        Err(Status::NotFound)
    );
    assert_eq!(reg.fence_storage("group9", &a, true), Err(Status::NotFound));
    for _ in 0..4 {
        assert_eq!(
            reg.query_store(Some("group1")).map(|t| t.addr.ip),
            Ok(b.clone())
        );
    }
    assert_eq!(
        reg.groups["group1"].readable().len(),
        2,
        "it still serves reads"
    );
    // It rejoins (a restart of the storage) and the tracker restarts: still fenced.
    let s = reg.groups["group1"].members[&a].session;
    reg.disconnect("group1", &a, s);
    join(&mut reg, "group1", &a);
    let saved = crate::tracker::persist::SavedState::of(&reg);
    let mut back = Registry::new(TrackerConfig::default());
    saved.restore_into(&mut back, 1000);
    assert!(back.groups["group1"].members[&a].fenced);
    // Lifted: uploads may go to it again.
    assert_eq!(reg.fence_storage("group1", &a, false), Ok(()));
    disk(&mut reg, "group1", &a, [50_000, 50_000]);
    let chosen: std::collections::BTreeSet<String> = (0..4)
        .map(|_| reg.query_store(Some("group1")).expect("store").addr.ip)
        .collect();
    assert!(chosen.contains(&a), "{chosen:?}");
}
