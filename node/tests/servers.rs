//! In-process tracker and storage on loopback: the data path through our client
//! and through raw bytes, and every kind of bad input the servers must survive.

mod common;

use std::time::Duration;

use common::{Cluster, exchanges, hex_field};
use fdfs_node::client::ClientError;
use fdfs_node::fileid::FileId;
use fdfs_node::proto::query::{FileRequest, GroupRequest};
use fdfs_node::proto::storage::{DownloadRequest, UploadHead};
use fdfs_node::proto::{Command, HEADER_LEN, Header, Status};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn payload(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

/// Sends raw bytes and reads one reply header (None if the server closed instead).
async fn raw_call(s: &mut TcpStream, bytes: &[u8]) -> Option<Header> {
    s.write_all(bytes).await.ok()?;
    read_header(s).await
}

async fn read_header(s: &mut TcpStream) -> Option<Header> {
    let mut h = [0u8; HEADER_LEN];
    match tokio::time::timeout(Duration::from_secs(10), s.read_exact(&mut h)).await {
        Ok(Ok(_)) => Some(Header::decode(&h, u64::MAX >> 1).expect("reply header")),
        _ => None,
    }
}

/// True when the server has closed the connection.
async fn closed(s: &mut TcpStream) -> bool {
    let mut b = [0u8; 1];
    matches!(
        tokio::time::timeout(Duration::from_secs(10), s.read(&mut b)).await,
        Ok(Ok(0)) | Ok(Err(_))
    )
}

fn packet(cmd: Command, body: &[u8]) -> Vec<u8> {
    let mut out = Header::request(cmd, body.len() as u64).encode().to_vec();
    out.extend_from_slice(body);
    out
}

/// Every regular file under the store's `data/HH/LL` directories.
fn stored_files(root: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.join("data")];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).expect("readdir").flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.retain(|p| {
        !p.to_string_lossy().contains(".data_init_flag")
            && !p.to_string_lossy().contains("/data/sync/")
    });
    out
}

#[tokio::test]
async fn upload_download_delete_round_trips() {
    let c = Cluster::start(&["group1"], 2).await;
    let client = c.client().await;
    for (i, size) in [0usize, 1, 4096, 10 * 1024 * 1024].into_iter().enumerate() {
        let data = payload(size, i as u32);
        let id = client
            .upload_bytes(&data, "bin", None)
            .await
            .expect("upload");
        let text = id.to_string();
        assert!(text.starts_with("group1/M00/"), "{text}");
        assert_eq!(id.remote.name.len(), 27 + 7, "{text}");
        assert!(text.ends_with(".bin"));
        let core = id.remote.core().expect("core");
        assert_eq!(core.file_size(), size as u64);
        assert_eq!(core.crc32, crc32fast::hash(&data));
        assert_eq!(core.source.to_string(), "127.0.0.2");
        // The file sits exactly where FastDFS would put it.
        let on_disk = c.store_root(0).join(id.remote.relative_path());
        assert_eq!(std::fs::read(&on_disk).expect("on disk"), data);
        let back = client.download_bytes(&id, 0, 0).await.expect("download");
        assert_eq!(back.len(), data.len());
        assert!(back == data, "content differs for size {size}");
        client.delete(&id).await.expect("delete");
        assert!(!on_disk.exists());
        let err = client.download_bytes(&id, 0, 0).await.expect_err("deleted");
        assert_eq!(err.status(), Some(Status::NotFound), "{err}");
        let err = client.delete(&id).await.expect_err("already deleted");
        assert_eq!(err.status(), Some(Status::NotFound));
    }
    assert!(
        stored_files(c.store_root(0)).is_empty(),
        "no temp or stray files left"
    );
}

#[tokio::test]
async fn uploads_stream_from_a_file_and_download_to_a_file() {
    let c = Cluster::start(&["group1"], 4).await;
    let client = c.client().await;
    let src = c.dir.path().join("photo.jpg");
    let data = payload(3 * 1024 * 1024 + 17, 9);
    std::fs::write(&src, &data).expect("write");
    let id = client
        .upload_file(&src, None, Some("group1"))
        .await
        .expect("upload");
    assert!(id.remote.name.ends_with(".jpg"));
    let dst = c.dir.path().join("back.jpg");
    assert_eq!(
        client
            .download_file(&id, &dst, 0, 0)
            .await
            .expect("download"),
        data.len() as u64
    );
    assert!(std::fs::read(&dst).expect("read") == data);
}

#[tokio::test]
async fn ranged_downloads() {
    let c = Cluster::start(&["group1"], 4).await;
    let client = c.client().await;
    let data = payload(1_000_000, 3);
    let id = client.upload_bytes(&data, "", None).await.expect("upload");
    assert_eq!(id.remote.name.len(), 34, "no ext: 7 digits");
    let part = client.download_bytes(&id, 1000, 5000).await.expect("range");
    assert!(part == data[1000..6000]);
    let tail = client.download_bytes(&id, 999_990, 0).await.expect("tail");
    assert!(tail == data[999_990..]);
    // A length past the end is clamped (V6.15.4+).
    let clamped = client
        .download_bytes(&id, 999_000, 5000)
        .await
        .expect("clamped");
    assert!(clamped == data[999_000..]);
    let err = client
        .download_bytes(&id, 1_000_000, 0)
        .await
        .expect_err("offset at end");
    assert_eq!(err.status(), Some(Status::InvalidArgument));
    let err = client
        .download_bytes(&id, 2_000_000, 1)
        .await
        .expect_err("offset past end");
    assert_eq!(err.status(), Some(Status::InvalidArgument));
    // The storage closed that connection; the client recovers with a new one.
    assert_eq!(
        client.download_bytes(&id, 0, 10).await.expect("again"),
        data[..10]
    );
}

#[tokio::test]
async fn tracker_places_round_robin_and_reports_members() {
    let c = Cluster::start(&["group1", "group2"], 2).await;
    let client = c.client().await;
    let mut groups = Vec::new();
    for i in 0..4 {
        groups.push(
            client
                .upload_bytes(&payload(10, i), "txt", None)
                .await
                .expect("upload")
                .group,
        );
    }
    assert_eq!(groups, ["group1", "group2", "group1", "group2"]);
    let id = client
        .upload_bytes(b"x", "txt", Some("group2"))
        .await
        .expect("named group");
    assert_eq!(id.group, "group2");
    let err = client
        .upload_bytes(b"x", "txt", Some("group9"))
        .await
        .expect_err("unknown group");
    assert_eq!(err.status(), Some(Status::NotFound));
    let listed = client.list_groups().await.expect("91");
    assert_eq!(
        listed.iter().map(|g| g.group.as_str()).collect::<Vec<_>>(),
        ["group1", "group2"]
    );
    assert!(
        listed
            .iter()
            .all(|g| g.storage_count == 1 && g.writable_count == 1 && g.subdir_count_per_path == 2)
    );
    let members = client.list_storages("group2").await.expect("92");
    assert_eq!(members.len(), 1);
    assert_eq!(members[0].ip, "127.0.0.3");
    assert_eq!(members[0].status, 7);
    assert_eq!(members[0].storage_port, u64::from(c.storage_addr(1).port()));
    let err = client.list_storages("group9").await.expect_err("unknown");
    assert_eq!(err.status(), Some(Status::NotFound));
}

#[tokio::test]
async fn tracker_refuses_lies_and_keeps_serving() {
    let c = Cluster::start(&["group1"], 2).await;
    let addr = c.tracker_addr();
    // A header announcing 2^62 bytes: EINVAL, connection closed, nothing read or allocated.
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let h = raw_call(
        &mut s,
        &Header::request(Command::QueryStoreWithoutGroupOne, 1 << 62).encode(),
    )
    .await;
    assert_eq!(h.map(|h| h.status()), Some(Status::InvalidArgument));
    assert!(closed(&mut s).await);
    // A negative length.
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let mut neg = Header::request(Command::QueryFetchOne, 0).encode();
    neg[..8].copy_from_slice(&(-5i64).to_be_bytes());
    assert_eq!(
        raw_call(&mut s, &neg).await.map(|h| h.status()),
        Some(Status::InvalidArgument)
    );
    assert!(closed(&mut s).await);
    // A body shorter than announced stalls only its own connection.
    let mut stalled = TcpStream::connect(addr).await.expect("connect");
    stalled
        .write_all(&Header::request(Command::QueryStoreWithGroupOne, 16).encode())
        .await
        .expect("write");
    stalled.write_all(b"grou").await.expect("write");
    // Unknown command: EINVAL, connection stays usable (as the C tracker).
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let h = raw_call(&mut s, &packet(Command::Unknown(39), b"abc"))
        .await
        .expect("reply");
    assert_eq!(
        (h.cmd, h.status(), h.body_len),
        (Command::Resp, Status::InvalidArgument, 0)
    );
    let h = raw_call(&mut s, &packet(Command::ActiveTest, &[]))
        .await
        .expect("reply");
    assert_eq!(h.status(), Status::Ok);
    // Bad body lengths.
    let h = raw_call(&mut s, &packet(Command::QueryStoreWithGroupOne, b"group1"))
        .await
        .expect("reply");
    assert_eq!(h.status(), Status::InvalidArgument);
    let h = raw_call(&mut s, &packet(Command::QueryFetchOne, &[b'a'; 200]))
        .await
        .expect("reply");
    assert_eq!(h.status(), Status::InvalidArgument);
    // Path tricks in a routed file name.
    let evil = FileRequest {
        group: "group1".into(),
        remote_filename: "M00/00/00/../../../../etc/passwd".into(),
    };
    let h = raw_call(&mut s, &packet(Command::QueryFetchOne, &evil.encode()))
        .await
        .expect("reply");
    assert_eq!(h.status(), Status::InvalidArgument);
    // Storage-only commands before JOIN.
    let h = raw_call(&mut s, &packet(Command::StorageBeat, &[]))
        .await
        .expect("reply");
    assert_eq!(h.status(), Status::AccessDenied);
    // QUIT closes without a reply.
    s.write_all(&packet(Command::Quit, &[]))
        .await
        .expect("quit");
    assert!(closed(&mut s).await);
    // The tracker still serves everyone else.
    let client = c.client().await;
    let id = client
        .upload_bytes(b"still here", "txt", None)
        .await
        .expect("upload after abuse");
    assert_eq!(
        client.download_bytes(&id, 0, 0).await.expect("download"),
        b"still here"
    );
    drop(stalled);
}

#[tokio::test]
async fn storage_refuses_bad_input_and_touches_nothing() {
    let c = Cluster::start(&["group1"], 2).await;
    let client = c.client().await;
    let keep = client
        .upload_bytes(b"precious", "txt", None)
        .await
        .expect("upload");
    let kept_path = c.store_root(0).join(keep.remote.relative_path());
    let victim = c.dir.path().join("victim.txt");
    std::fs::write(&victim, b"outside").expect("write");
    let addr = c.storage_addr(0);

    let expect_einval_and_close = |body: Vec<u8>, cmd: Command| async move {
        let mut s = TcpStream::connect(addr).await.expect("connect");
        let h = raw_call(&mut s, &packet(cmd, &body)).await.expect("reply");
        assert_eq!(
            (h.status(), h.body_len),
            (Status::InvalidArgument, 0),
            "{cmd:?}"
        );
        assert!(closed(&mut s).await, "storage closes after EINVAL");
    };
    for name in [
        "M00/00/00/../../../victim.txt",
        "M00/00/00/%2e%2e",
        "M00/00/00/a/b",
        "M00/00/00/a\0b",
        "M05/00/00/abcdefghij",
        "M00/0A/00/abcdefghij",
        "/etc/passwd",
    ] {
        let del = FileRequest {
            group: "group1".into(),
            remote_filename: name.into(),
        }
        .encode();
        expect_einval_and_close(del, Command::DeleteFile).await;
        let dl = DownloadRequest {
            offset: 0,
            length: 0,
            group: "group1".into(),
            remote_filename: name.into(),
        }
        .encode();
        expect_einval_and_close(dl, Command::DownloadFile).await;
    }
    // The right name in the wrong group.
    let wrong = FileRequest {
        group: "group2".into(),
        remote_filename: keep.remote.to_string(),
    }
    .encode();
    expect_einval_and_close(wrong, Command::DeleteFile).await;
    // Upload lies: size field disagreeing with the header, a bad ext, a path index out of range.
    let mut body = UploadHead {
        store_path_index: 0,
        file_size: 100,
        ext: "txt".into(),
    }
    .encode();
    body.extend_from_slice(&[1u8; 10]);
    expect_einval_and_close(body, Command::UploadFile).await;
    let mut body = UploadHead {
        store_path_index: 0,
        file_size: 3,
        ext: "t/x".into(),
    }
    .encode();
    body.extend_from_slice(b"abc");
    expect_einval_and_close(body, Command::UploadFile).await;
    let mut body = UploadHead {
        store_path_index: 7,
        file_size: 3,
        ext: "txt".into(),
    }
    .encode();
    body.extend_from_slice(b"abc");
    expect_einval_and_close(body, Command::UploadFile).await;
    expect_einval_and_close(b"short".to_vec(), Command::UploadFile).await;
    // Unknown command and oversized small bodies.
    expect_einval_and_close(b"??".to_vec(), Command::Unknown(39)).await;
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let h = raw_call(
        &mut s,
        &Header::request(Command::DeleteFile, 1 << 62).encode(),
    )
    .await
    .expect("reply");
    assert_eq!(h.status(), Status::InvalidArgument);
    assert!(closed(&mut s).await);

    // An upload cut off mid-body leaves no file and no temp file behind.
    let before = stored_files(c.store_root(0));
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let mut partial = Header::request(Command::UploadFile, 15 + 1_000_000)
        .encode()
        .to_vec();
    partial.extend_from_slice(
        &UploadHead {
            store_path_index: 0xFF,
            file_size: 1_000_000,
            ext: "bin".into(),
        }
        .encode(),
    );
    partial.extend_from_slice(&payload(600_000, 1));
    s.write_all(&partial).await.expect("write");
    drop(s);
    common::wait_until(
        "the partial upload cleaned up",
        Duration::from_secs(10),
        async || stored_files(c.store_root(0)) == before,
    )
    .await;

    // Everything that was there is intact, and the storage still serves.
    assert_eq!(std::fs::read(&kept_path).expect("kept"), b"precious");
    assert_eq!(std::fs::read(&victim).expect("victim"), b"outside");
    assert_eq!(
        client.download_bytes(&keep, 0, 0).await.expect("download"),
        b"precious"
    );
    let more = client
        .upload_bytes(b"more", "txt", None)
        .await
        .expect("upload");
    assert_eq!(
        client.download_bytes(&more, 0, 0).await.expect("download"),
        b"more"
    );
}

#[tokio::test]
async fn a_storage_of_the_wrong_group_or_a_missing_tracker_gives_clear_errors() {
    let c = Cluster::start(&["group1"], 2).await;
    let client = c.client().await;
    let id: FileId = "group1/M00/00/01/fwAAAmsHltmAfYkIAAAAZBVz5RY696.txt"
        .parse()
        .expect("id");
    let err = client.download_bytes(&id, 0, 0).await.expect_err("missing");
    let text = err.to_string();
    assert!(
        text.contains("group1/M00/00/01/fwAAAmsHltmAfYkIAAAAZBVz5RY696.txt")
            && text.contains("ENOENT"),
        "{text}"
    );
    let nobody = fdfs_node::client::Client::new(fdfs_node::client::ClientConfig {
        trackers: vec!["127.0.0.1:1".into()],
        connect_timeout: Duration::from_secs(1),
        network_timeout: Duration::from_secs(1),
        write_profile: Default::default(),
    })
    .await
    .expect("client");
    let err = nobody
        .upload_bytes(b"x", "", None)
        .await
        .expect_err("no tracker");
    assert!(matches!(err, ClientError::Connect { .. }), "{err}");
}

/// Replays error probes recorded against the C servers; our replies must match
/// byte for byte.
#[tokio::test]
async fn recorded_error_probes_get_the_same_replies() {
    let c = Cluster::start(&["group1"], 256).await;
    let replayed: &[u64] = &[
        327, 338, 342, 344, 348, 354, 359, 367, 369, 371, 379, 383, 385, 390, 421, 422, 429, 456,
        458, 460, 549, 551, 556, 564, 569, 571, 573, 577, 579, 581, 583,
        // The trunk commands, trunk storage off: 27-33 to a storage, 94 and 72-74 to the
        // tracker (the last three before JOIN).
        423, 424, 431, 558, 560, 562, 585, 586, 587, 592, 593,
    ];
    let mut seen = 0;
    for x in exchanges() {
        let id = x["id"].as_u64().unwrap_or(0);
        if !replayed.contains(&id) {
            continue;
        }
        seen += 1;
        let to_storage = x["to"] == "storage";
        let addr = if to_storage {
            c.storage_addr(0)
        } else {
            c.tracker_addr()
        };
        let mut request = hex_field(&x["request"], "header_hex");
        request.extend(hex_field(&x["request"], "body_hex"));
        let mut s = TcpStream::connect(addr).await.expect("connect");
        let reply = raw_call(&mut s, &request)
            .await
            .unwrap_or_else(|| panic!("no reply to exchange {id}"));
        let expected = hex_field(&x["response"], "header_hex");
        assert_eq!(
            reply.encode().to_vec(),
            expected,
            "exchange {id}: {}",
            x["tool"]
        );
    }
    assert_eq!(seen, replayed.len());
    // And the group query the recorded tools sent succeeds against ours.
    let mut s = TcpStream::connect(c.tracker_addr()).await.expect("connect");
    let body = GroupRequest {
        group: "group1".into(),
    }
    .encode();
    let h = raw_call(&mut s, &packet(Command::QueryStoreWithGroupOne, &body))
        .await
        .expect("reply");
    assert_eq!((h.status(), h.body_len), (Status::Ok, 40));
}

#[tokio::test]
async fn many_concurrent_clients() {
    let c = Cluster::start(&["group1"], 16).await;
    let client = std::sync::Arc::new(c.client().await);
    let mut tasks = tokio::task::JoinSet::new();
    for t in 0..16u32 {
        let client = client.clone();
        tasks.spawn(async move {
            for i in 0..20u32 {
                let data = payload(100 + (i as usize) * 37, t * 100 + i);
                let id = client
                    .upload_bytes(&data, "dat", None)
                    .await
                    .expect("upload");
                assert!(client.download_bytes(&id, 0, 0).await.expect("download") == data);
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.expect("task");
    }
}

/// The query forms not used by our own client: 90, 95, 105, 106, 107, 75, 60.
#[tokio::test]
async fn tracker_answers_every_query_form() {
    use fdfs_node::proto::monitor::GroupStat;
    use fdfs_node::proto::query::{FetchAll, StoreTargets};
    use fdfs_node::proto::report::{GetMyIpRequest, Parameters};

    let c = Cluster::start(&["group1", "group2"], 2).await;
    let client = c.client().await;
    let id = client
        .upload_bytes(b"hello", "txt", Some("group1"))
        .await
        .expect("upload");
    let mut s = TcpStream::connect(c.tracker_addr()).await.expect("connect");
    async fn call(s: &mut TcpStream, cmd: Command, body: &[u8]) -> (Status, Vec<u8>) {
        let h = raw_call(s, &packet(cmd, body)).await.expect("reply");
        let mut b = vec![0u8; h.body_len as usize];
        s.read_exact(&mut b).await.expect("body");
        (h.status(), b)
    }
    let file = FileRequest {
        group: "group1".into(),
        remote_filename: id.remote.to_string(),
    }
    .encode();
    let (st, body) = call(&mut s, Command::QueryFetchAll, &file).await;
    assert_eq!(st, Status::Ok);
    let all = FetchAll::decode(&body, None).expect("105 reply");
    assert_eq!((all.group.as_str(), all.servers.len()), ("group1", 1));
    assert_eq!(all.servers[0].ip, "127.0.0.2");
    let (st, body) = call(&mut s, Command::QueryStoreWithoutGroupAll, &[]).await;
    assert_eq!(st, Status::Ok);
    assert_eq!(body.len(), 16 + 23 + 1);
    StoreTargets::decode(&body, None).expect("106 reply");
    let (st, body) = call(
        &mut s,
        Command::QueryStoreWithGroupAll,
        &GroupRequest {
            group: "group2".into(),
        }
        .encode(),
    )
    .await;
    assert_eq!(st, Status::Ok);
    assert_eq!(
        StoreTargets::decode(&body, None).expect("107").servers[0].ip,
        "127.0.0.3"
    );
    let (st, _) = call(
        &mut s,
        Command::QueryStoreWithGroupAll,
        &GroupRequest {
            group: "nope".into(),
        }
        .encode(),
    )
    .await;
    assert_eq!(st, Status::NotFound);
    let (st, body) = call(
        &mut s,
        Command::ServerListOneGroup,
        &GroupRequest {
            group: "group2".into(),
        }
        .encode(),
    )
    .await;
    assert_eq!(st, Status::Ok);
    assert_eq!(GroupStat::decode_all(&body).expect("90")[0].group, "group2");
    let (st, _) = call(
        &mut s,
        Command::ServerListOneGroup,
        &GroupRequest {
            group: "nope".into(),
        }
        .encode(),
    )
    .await;
    assert_eq!(st, Status::NotFound);
    let (st, body) = call(&mut s, Command::ServerGetLeader, &[]).await;
    assert_eq!(
        (st, String::from_utf8(body).expect("text")),
        (Status::Ok, c.tracker_addr().to_string())
    );
    let (st, body) = call(&mut s, Command::StorageParameterReq, &[]).await;
    assert_eq!(st, Status::Ok);
    let params = Parameters::decode(&body).expect("75");
    assert_eq!(
        params.entries[0],
        ("use_storage_id".to_owned(), "0".to_owned())
    );
    assert_eq!(params.get("response_ip_addr_size"), Some("16"));
    let (st, body) = call(
        &mut s,
        Command::StorageGetMyIp,
        &GetMyIpRequest {
            group: "group1".into(),
            port: 23000,
        }
        .encode(),
    )
    .await;
    assert_eq!((st, body), (Status::Ok, b"127.0.0.1".to_vec()));
}

/// The 45-byte IP profile for clients of V6.11–V6.14.
#[tokio::test]
async fn ipv6_sized_fields_when_configured() {
    use fdfs_node::config::TrackerConfig;
    use fdfs_node::proto::IpWidth;
    let mut cfg = TrackerConfig::default();
    cfg.compat.ip_width = IpWidth::V6;
    let c = Cluster::start_with(&["group1"], 2, cfg).await;
    let mut s = TcpStream::connect(c.tracker_addr()).await.expect("connect");
    let h = raw_call(&mut s, &packet(Command::QueryStoreWithoutGroupOne, &[]))
        .await
        .expect("reply");
    assert_eq!((h.status(), h.body_len), (Status::Ok, 70));
    let mut b = vec![0u8; 70];
    s.read_exact(&mut b).await.expect("body");
    let list = raw_call(
        &mut s,
        &packet(
            Command::ServerListStorage,
            &GroupRequest {
                group: "group1".into(),
            }
            .encode(),
        ),
    )
    .await
    .expect("reply");
    assert_eq!(list.body_len, 517);
}

/// An upload announcing more bytes than the disk holds is refused at once.
#[tokio::test]
async fn upload_larger_than_the_disk_gets_enospc() {
    let c = Cluster::start(&["group1"], 2).await;
    let mut s = TcpStream::connect(c.storage_addr(0))
        .await
        .expect("connect");
    let size = 1u64 << 60;
    let mut req = Header::request(Command::UploadFile, 15 + size)
        .encode()
        .to_vec();
    req.extend_from_slice(
        &UploadHead {
            store_path_index: 0xFF,
            file_size: size,
            ext: "bin".into(),
        }
        .encode(),
    );
    let h = raw_call(&mut s, &req).await.expect("reply");
    assert_eq!((h.status(), h.body_len), (Status::NoSpace, 0));
    assert!(closed(&mut s).await);
    assert!(stored_files(c.store_root(0)).is_empty());
}
