//! The codec against 657 exchanges recorded from FastDFS V6.16.1: every body of
//! a command we implement decodes, and re-encodes to the same bytes.

mod common;

use common::{exchanges, hex_field};
use fdfs_node::fileid::RemoteName;
use fdfs_node::proto::cluster::{ReportStatus, SyncSrcReq, SysFilePiece, SysFileRequest};
use fdfs_node::proto::monitor::{GroupStat, ListStorageRequest, StorageStat};
use fdfs_node::proto::query::{
    FetchAll, FetchAllFormat, FetchTarget, FileRequest, GroupRequest, StoreTarget, StoreTargets,
};
use fdfs_node::proto::report::{
    BeatRequest, DiskUsage, HeartbeatReply, JoinRequest, JoinResponse, SyncSource,
};
use fdfs_node::proto::storage::{
    DownloadRequest, FileInfo, SLAVE_HEAD_LEN, SetMetadataRequest, SlaveHead, TruncateRequest,
    UPLOAD_HEAD_LEN, UploadHead, UploadResponse, WriteHead,
};
use fdfs_node::proto::sync::ServerIdReport;
use fdfs_node::proto::{Command, HEADER_LEN, Header, IpWidth};
use fdfs_node::storage::meta;
use serde_json::Value;

const IMPLEMENTED: &[u8] = &[
    9, 11, 12, 13, 14, 15, 21, 22, 23, 24, 34, 36, 38, 61, 62, 63, 76, 81, 82, 83, 84, 86, 91, 92,
    101, 102, 103, 104, 105, 106, 107, 111,
];

fn header(part: &Value) -> Header {
    let bytes: [u8; HEADER_LEN] = hex_field(part, "header_hex")
        .try_into()
        .expect("10-byte header");
    let h = Header::decode(&bytes, u64::MAX >> 1).expect("header decodes");
    assert_eq!(h.encode(), bytes, "header re-encodes");
    assert_eq!(h.body_len, part["body_len"].as_u64().expect("body_len"));
    h
}

/// Re-encodes the request body of a successful exchange.
fn request_round_trip(cmd: u8, body: &[u8]) -> Vec<u8> {
    match cmd {
        11 | 23 => {
            let head = UploadHead::decode(body).expect("upload head");
            let mut out = head.encode();
            out.extend_from_slice(&body[UPLOAD_HEAD_LEN..]);
            out
        }
        13 => SetMetadataRequest::decode(body)
            .expect("set metadata")
            .encode(),
        15 | 22 => FileRequest::decode_any_len(body)
            .expect("file request")
            .encode(),
        21 => {
            let head = SlaveHead::decode(body).expect("slave head");
            assert_eq!(
                body.len() as u64,
                SLAVE_HEAD_LEN as u64 + head.master_len + head.file_size
            );
            let mut out = head.encode();
            out.extend_from_slice(&body[SLAVE_HEAD_LEN..]);
            out
        }
        24 | 34 => {
            let head = WriteHead::decode(body, cmd == 34).expect("write head");
            let n = WriteHead::len(cmd == 34);
            assert_eq!(body.len() as u64, n as u64 + head.name_len + head.size);
            RemoteName::parse(
                std::str::from_utf8(&body[n..n + head.name_len as usize]).expect("utf8"),
            )
            .expect("name");
            let mut out = head.encode();
            out.extend_from_slice(&body[n..]);
            out
        }
        36 => TruncateRequest::decode(body).expect("truncate").encode(),
        38 => {
            RemoteName::parse(std::str::from_utf8(body).expect("utf8")).expect("appender name");
            body.to_vec()
        }
        12 | 102 | 103 | 105 => {
            let r = if cmd == 12 {
                FileRequest::decode_any_len(body)
            } else {
                FileRequest::decode(body)
            };
            r.expect("file request").encode()
        }
        14 => DownloadRequest::decode(body)
            .expect("download request")
            .encode(),
        9 => ServerIdReport::decode(body).expect("server id").encode(),
        76 => ReportStatus::decode(body).expect("report status").encode(),
        86 => SyncSrcReq::decode(body)
            .expect("sync source request")
            .encode(),
        63 => SysFileRequest::decode(body)
            .expect("sys file request")
            .encode(),
        81 => JoinRequest::decode(body).expect("join").encode(),
        83 => BeatRequest::decode(body).expect("beat").encode(),
        84 => DiskUsage::decode(body).expect("disk usage").encode(),
        92 => ListStorageRequest::decode(body)
            .expect("list storage")
            .encode(),
        104 | 107 => GroupRequest::decode(body).expect("group request").encode(),
        61 | 62 | 82 | 91 | 101 | 106 | 111 => {
            assert!(body.is_empty());
            Vec::new()
        }
        _ => unreachable!("command {cmd} not in the implemented set"),
    }
}

/// Re-encodes the body of an OK response.
fn response_round_trip(cmd: u8, body: &[u8]) -> Vec<u8> {
    let w = IpWidth::V4;
    match cmd {
        11 | 21 | 23 | 38 => UploadResponse::decode(body).expect("upload reply").encode(),
        13 | 24 | 34 | 36 => {
            assert!(body.is_empty());
            Vec::new()
        }
        15 => meta::encode(&meta::parse(body)),
        22 => FileInfo::decode(body).expect("file info").encode(16),
        14 => body.to_vec(),
        9 | 12 | 61 | 62 | 111 => {
            assert!(body.is_empty());
            Vec::new()
        }
        63 => SysFilePiece::decode(body).expect("sys file piece").encode(),
        86 => SyncSource::decode(body).expect("sync source").encode(),
        81 => JoinResponse::decode(body).expect("join reply").encode(),
        83 | 84 => HeartbeatReply::decode(body)
            .expect("heartbeat reply")
            .encode(),
        91 => GroupStat::encode_all(&GroupStat::decode_all(body).expect("group stats")),
        92 => StorageStat::encode_all(&StorageStat::decode_all(body).expect("storage stats"), w),
        101 | 104 => StoreTarget::decode(body).expect("store reply").encode(w),
        102 | 103 => FetchTarget::decode(body).expect("fetch reply").encode(w),
        105 => FetchAll::decode(body, Some(w))
            .expect("fetch-all reply")
            .encode(w, FetchAllFormat::V616),
        106 | 107 => StoreTargets::decode(body, None)
            .expect("store-all reply")
            .encode(w),
        _ => unreachable!("command {cmd} not in the implemented set"),
    }
}

#[test]
fn recorded_exchanges_decode_and_reencode() {
    let mut checked = std::collections::BTreeMap::<u8, usize>::new();
    for x in exchanges() {
        let cmd = x["cmd"].as_u64().expect("cmd") as u8;
        if !IMPLEMENTED.contains(&cmd) {
            continue;
        }
        let id = x["id"].as_u64().unwrap_or(0);
        let req = &x["request"];
        let h = header(req);
        assert_eq!(h.cmd, Command::from(cmd), "exchange {id}");
        let req_body = hex_field(req, "body_hex");
        let resp = &x["response"];
        let ok = resp.is_object() && resp["status"].as_u64() == Some(0);
        if ok && !req["truncated"].as_bool().unwrap_or(true) {
            assert_eq!(
                request_round_trip(cmd, &req_body),
                req_body,
                "request of exchange {id} ({cmd})"
            );
        } else if cmd == 11 || cmd == 23 {
            // Large uploads are cut at 256 bytes: the head is still there.
            let head = UploadHead::decode(&req_body).expect("upload head");
            assert_eq!(
                head.encode(),
                req_body[..UPLOAD_HEAD_LEN],
                "upload head of exchange {id}"
            );
            if ok {
                assert_eq!(h.body_len, UPLOAD_HEAD_LEN as u64 + head.file_size);
            }
        }
        if !resp.is_object() {
            assert_eq!(cmd, 82, "only QUIT goes unanswered (exchange {id})");
            continue;
        }
        let rh = header(resp);
        assert_eq!(rh.cmd, Command::Resp, "exchange {id}");
        let body = hex_field(resp, "body_hex");
        if !ok {
            assert_eq!(
                rh.body_len, 0,
                "error replies carry no body (exchange {id})"
            );
            continue;
        }
        if !resp["truncated"].as_bool().unwrap_or(true) {
            assert_eq!(
                response_round_trip(cmd, &body),
                body,
                "response of exchange {id} ({cmd})"
            );
        }
        *checked.entry(cmd).or_default() += 1;
    }
    // Every implemented command that the recording answered OK was exercised.
    for cmd in [
        11u8, 12, 13, 14, 15, 21, 22, 23, 24, 34, 36, 38, 61, 62, 63, 81, 83, 84, 91, 92, 101, 102,
        103, 104, 105, 106, 107, 111,
    ] {
        assert!(
            checked.get(&cmd).copied().unwrap_or(0) > 0,
            "no OK exchange checked for {cmd}"
        );
    }
}

#[test]
fn recorded_join_fields() {
    let x = exchanges()
        .into_iter()
        .find(|x| x["cmd"] == 81)
        .expect("a join");
    let j = JoinRequest::decode(&hex_field(&x["request"], "body_hex")).expect("join");
    assert_eq!(j.group, "group1");
    assert_eq!(j.storage_port, 23000);
    assert_eq!(j.store_path_count, 1);
    assert_eq!(j.subdir_count_per_path, 256);
    assert_eq!(j.version, "6.16.1");
    assert_eq!(j.trackers, vec!["127.0.0.10:22122".to_owned()]);
}

#[test]
fn recorded_list_storage_records_are_ipv4_variant() {
    let x = exchanges()
        .into_iter()
        .find(|x| x["cmd"] == 92 && x["response"]["body_len"] == 487)
        .expect("a one-storage listing");
    let list = StorageStat::decode_all(&hex_field(&x["response"], "body_hex")).expect("decodes");
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].status, 7);
    assert_eq!(list[0].version, "6.16.1");
    assert_eq!(list[0].storage_port, 23000);
}

fn recorded(id: u64) -> Value {
    exchanges()
        .into_iter()
        .find(|x| x["id"].as_u64() == Some(id))
        .unwrap_or_else(|| panic!("exchange {id}"))
}

/// The V6.16 cluster-stat replies (96/97/98) carry stale bytes after each NUL;
/// decoding cuts there, and our zero-filled re-encoding decodes the same.
#[test]
fn recorded_cluster_stat_replies_decode() {
    use fdfs_node::proto::cluster::{
        StorageClusterStats, StorageStatFilter, TrackerStat, TrackerStatFilter, TrackerStatus,
        VolumeStatFilter, VolumeStats,
    };
    let x = recorded(61);
    assert_eq!(
        TrackerStatFilter::decode(&hex_field(&x["request"], "body_hex")).ok(),
        Some(TrackerStatFilter::default())
    );
    let t = TrackerStat::decode_all(&hex_field(&x["response"], "body_hex")).expect("96");
    assert_eq!(t.len(), 1);
    assert_eq!(t[0].host, "127.0.0.10:22122");
    assert!(t[0].is_leader && t[0].is_active);
    assert_eq!(t[0].version, "6.16.1");
    assert_eq!(t[0].connections, [256, 3, 4]);
    assert_eq!(
        TrackerStat::decode_all(&TrackerStat::encode_all(&t)).ok(),
        Some(t)
    );

    let x = recorded(65);
    let f = StorageStatFilter::decode(&hex_field(&x["request"], "body_hex")).expect("filter");
    assert_eq!((f.filter_by, f.op_type, f.status), (2, b'=', 7));
    let s = StorageClusterStats::decode(&hex_field(&x["response"], "body_hex")).expect("97");
    assert!(!s.use_storage_id);
    assert_eq!(s.storages.len(), 3);
    assert_eq!(s.storages[1].id, "127.0.0.3");
    assert_eq!(s.storages[1].host, "127.0.0.3:23000");
    assert!(s.storages.iter().all(|x| x.status == 7 && f.accepts(x)));
    assert_eq!(StorageClusterStats::decode(&s.encode()).ok(), Some(s));

    let x = recorded(67);
    let f = VolumeStatFilter::decode(&hex_field(&x["request"], "body_hex")).expect("filter");
    assert_eq!((f.filter_by, f.is_space_available), (4, true));
    let v = VolumeStats::decode(&hex_field(&x["response"], "body_hex")).expect("98");
    assert_eq!(v.groups.len(), 2);
    assert_eq!(v.groups[0].group, "group1");
    // avail = free − reserved (10% of total here).
    let g = &v.groups[0];
    assert_eq!(g.avail_mb, g.free_mb - g.reserved_mb);
    assert_eq!(g.reserved_mb, g.total_mb / 10);
    assert!(v.groups.iter().all(|g| f.accepts(g)));
    assert_eq!(VolumeStats::decode(&v.encode()).ok(), Some(v));

    let x = recorded(338);
    let s = TrackerStatus::decode(&hex_field(&x["response"], "body_hex")).expect("64");
    assert!(s.is_leader);
    assert_eq!(s.encode(), hex_field(&x["response"], "body_hex"));
}

/// Exact re-encoding of the recorded 69, 70, 71, 86 and 90 bodies.
#[test]
fn recorded_lookup_bodies_round_trip() {
    use fdfs_node::proto::cluster::{
        FetchStorageIds, GroupAndHost, ReportStatus, StorageIdsPage, SyncSrcReq, encode_briefs,
    };
    use fdfs_node::proto::report::{StorageBrief, SyncSource};
    let body = |id: u64, part: &str| hex_field(&recorded(id)[part], "body_hex");
    for id in [342, 344, 346] {
        let r = FetchStorageIds::decode(&body(id, "request")).expect("69 request");
        assert_eq!(r.encode(), body(id, "request"));
    }
    assert_eq!(
        StorageIdsPage::decode(&body(342, "response")).ok(),
        Some(StorageIdsPage::default())
    );
    let r = GroupAndHost::decode(&body(348, "request")).expect("70 request");
    assert_eq!(
        (r.group.as_str(), r.ip.as_str(), r.port),
        ("group1", "127.0.0.2", 23000)
    );
    assert_eq!(r.encode(), body(348, "request"));
    let b = {
        let raw = body(352, "response");
        let mut rd = fdfs_node::proto::fields::Reader::new(&raw, "brief");
        StorageBrief::decode_from(&mut rd).expect("71 reply")
    };
    assert_eq!((b.status, b.port, b.id.as_str()), (7, 23000, "127.0.0.2"));
    assert_eq!(encode_briefs(&[b]), body(352, "response"));
    let r = SyncSrcReq::decode(&body(363, "request")).expect("86 request");
    assert_eq!(r.dest_id, "127.0.0.3");
    assert_eq!(r.encode(), body(363, "request"));
    let s = SyncSource::decode(&body(363, "response")).expect("86 reply");
    assert_eq!(s.src_id, "127.0.0.2");
    assert_eq!(s.encode(), body(363, "response"));
    let r = ReportStatus::decode(&body(571, "request")).expect("76 request");
    assert_eq!((r.group.as_str(), r.brief.status), ("group9", 5));
    assert_eq!(r.encode(), body(571, "request"));
    let g = GroupStat::decode_all(&body(547, "response")).expect("90 reply");
    assert_eq!(
        (g[0].group.as_str(), g[0].current_trunk_file_id),
        ("group1", -1)
    );
    assert_eq!(GroupStat::encode_all(&g), body(547, "response"));
}

/// The system files of the recorded V6.16.1 tracker (61–63) read back as a tracker that
/// bootstraps from it takes them: its groups with their layout, and the storage the
/// recording kept whole (the storage file is cut at 256 bytes; its first section is used up
/// to its last whole line).
#[test]
fn recorded_system_files_read_back() {
    use fdfs_node::tracker::registry::sys_files::parse_sys_files;
    let file = |id: u64| -> Vec<u8> {
        let piece = SysFilePiece::decode(&hex_field(&recorded(id)["response"], "body_hex"))
            .expect("sys file piece");
        piece.data
    };
    let groups = file(393);
    let mut storages = file(394);
    let whole = storages.iter().rposition(|&b| b == b'\n').expect("a line") + 1;
    storages.truncate(whole);
    let state = parse_sys_files(&groups, &storages, false).expect("read back");
    let names: Vec<(&str, u64, u64)> = state
        .groups
        .iter()
        .map(|g| (g.name.as_str(), g.store_path_count, g.subdir_count_per_path))
        .collect();
    assert_eq!(names, [("group1", 1, 256), ("group2", 1, 256)]);
    let m = &state.groups[0].members[0];
    assert_eq!(
        (m.id.as_str(), m.ip.as_str(), m.port, m.status),
        ("127.0.0.2", "127.0.0.2", 23000, 7)
    );
    assert_eq!((m.version.as_str(), m.join_time), ("6.16.1", 1_795_657_470));
    assert!(state.groups[1].members.is_empty());
    // With storage ids, a section without an `id` is refused, naming the section.
    let err = parse_sys_files(&groups, &storages, true).expect_err("no id");
    assert!(err.to_string().contains("[Storage001]"), "{err}");
    // A count no storage can have (a JOIN carries 1 to 256) is refused, not allocated.
    let text = String::from_utf8(groups.clone()).expect("text");
    let huge = text.replacen("store_path_count=1", "store_path_count=1099511627776", 1);
    assert_ne!(huge, text);
    let err = parse_sys_files(huge.as_bytes(), &storages, false).expect_err("huge");
    assert!(err.to_string().contains("store_path_count"), "{err}");
}
