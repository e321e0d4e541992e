//! Every client → storage command beyond upload/download/delete, through our
//! client and through raw bytes, with the status-code rules of FastDFS.

mod common;

use std::time::Duration;

use common::{Cluster, exchanges, hex_field};
use fdfs_node::config::{ReservedSpace, StorageConfig, TrackerConfig};
use fdfs_node::fileid::FileId;
use fdfs_node::proto::query::FileRequest;
use fdfs_node::proto::storage::{
    MetaOp, SetMetadataRequest, TruncateRequest, UploadHead, WriteHead,
};
use fdfs_node::proto::{Command, HEADER_LEN, Header, Status};
use fdfs_node::storage::meta;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The 100-byte `small.txt` and 32-byte `append.txt` the recorded tools used.
fn recorded_input(name: &str) -> Vec<u8> {
    let text = include_str!("fixtures/fastdfs-v6.16-exchanges.json");
    let doc: serde_json::Value = serde_json::from_str(text).expect("fixture");
    hex::decode(doc["inputs"][name]["hex"].as_str().expect("input")).expect("hex")
}

async fn raw(
    addr: std::net::SocketAddr,
    cmd: Command,
    status: u8,
    body: &[u8],
) -> (Header, Vec<u8>) {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let mut req = Header {
        body_len: body.len() as u64,
        cmd,
        status,
    }
    .encode()
    .to_vec();
    req.extend_from_slice(body);
    s.write_all(&req).await.expect("write");
    let mut h = [0u8; HEADER_LEN];
    tokio::time::timeout(Duration::from_secs(10), s.read_exact(&mut h))
        .await
        .expect("reply in time")
        .expect("reply");
    let h = Header::decode(&h, 1 << 20).expect("header");
    let mut b = vec![0u8; h.body_len as usize];
    s.read_exact(&mut b).await.expect("body");
    (h, b)
}

fn status_of<T: std::fmt::Debug>(r: Result<T, fdfs_node::client::ClientError>) -> Option<Status> {
    r.expect_err("expected a FastDFS error").status()
}

#[tokio::test]
async fn appender_files_append_modify_truncate_regenerate() {
    let c = Cluster::start(&["group1"], 4).await;
    let client = c.client().await;
    let small = recorded_input("small.txt");
    let append = recorded_input("append.txt");
    let id = client
        .upload_appender_reader(&small[..], small.len() as u64, "txt", None)
        .await
        .expect("appender");
    let core = id.remote.core().expect("core");
    assert!(core.is_appender());
    assert_eq!(
        core.size_field & 0xFFFF_FFFF,
        0,
        "appender names record size 0"
    );
    assert_eq!(core.crc32, crc32fast::hash(&small));
    client.append_bytes(&id, &append).await.expect("append");
    client
        .append_bytes(&id, b"")
        .await
        .expect("empty append is a no-op");
    let info = client.file_info(&id).await.expect("info");
    // Recorded from V6.16.1 for exactly these bytes: 132 bytes, crc dd5b4cba.
    assert_eq!((info.file_size, info.crc32), (132, 0xdd5b_4cba));
    assert_eq!(info.source_ip, "127.0.0.2");
    client.modify_bytes(&id, 10, b"XYZ").await.expect("modify");
    client
        .modify_bytes(&id, 132, b"tail")
        .await
        .expect("modify at the end extends");
    let mut expect = [small.clone(), append.clone()].concat();
    expect[10..13].copy_from_slice(b"XYZ");
    expect.extend_from_slice(b"tail");
    assert_eq!(
        client.download_bytes(&id, 0, 0).await.expect("download"),
        expect
    );
    assert_eq!(
        status_of(client.modify_bytes(&id, 1000, b"x").await),
        Some(Status::InvalidArgument)
    );
    client.truncate(&id, 50).await.expect("truncate");
    assert_eq!(
        client.download_bytes(&id, 0, 0).await.expect("download"),
        expect[..50]
    );
    client.truncate(&id, 50).await.expect("same size is fine");

    let normal = client
        .regenerate_appender_name(&id)
        .await
        .expect("regenerate");
    let ncore = normal.remote.core().expect("core");
    assert!(!ncore.is_appender());
    assert_eq!(
        (normal.remote.hh, normal.remote.ll),
        (id.remote.hh, id.remote.ll)
    );
    assert_eq!(
        &normal.remote.name[27..],
        &id.remote.name[27..],
        "same 7-char ext"
    );
    assert_eq!(ncore.file_size(), 50);
    assert_eq!(ncore.crc32, crc32fast::hash(&expect[..50]));
    assert_eq!(
        client
            .download_bytes(&normal, 0, 0)
            .await
            .expect("download"),
        expect[..50]
    );
    assert_eq!(
        status_of(client.download_bytes(&id, 0, 0).await),
        Some(Status::NotFound)
    );
    // A normal file refuses appender operations.
    assert_eq!(
        status_of(client.append_bytes(&normal, b"x").await),
        Some(Status::InvalidArgument)
    );
    assert_eq!(
        status_of(client.truncate(&normal, 1).await),
        Some(Status::InvalidArgument)
    );
    assert_eq!(
        status_of(client.modify_bytes(&normal, 0, b"x").await),
        Some(Status::InvalidArgument)
    );
    assert_eq!(
        status_of(client.regenerate_appender_name(&normal).await),
        Some(Status::InvalidArgument)
    );
    assert_eq!(
        client
            .download_bytes(&normal, 0, 0)
            .await
            .expect("untouched"),
        expect[..50]
    );
}

#[tokio::test]
async fn appender_rules_in_raw_bytes() {
    let c = Cluster::start(&["group1"], 4).await;
    let client = c.client().await;
    let id = client
        .upload_appender_reader(&b"abc"[..], 3, "txt", None)
        .await
        .expect("appender");
    let addr = c.storage_addr(0);
    let name = id.remote.to_string();
    // Append to a missing appender: ENOENT.
    let missing = name.replacen(&id.remote.name[..5], "AAAAA", 1);
    let mut body = WriteHead {
        name_len: missing.len() as u64,
        offset: None,
        size: 1,
    }
    .encode();
    body.extend_from_slice(missing.as_bytes());
    body.push(b'x');
    assert_eq!(
        raw(addr, Command::AppendFile, 0, &body).await.0.status(),
        Status::NotFound
    );
    // Name length outside 44–127: EINVAL.
    let mut body = WriteHead {
        name_len: 10,
        offset: None,
        size: 0,
    }
    .encode();
    body.extend_from_slice(b"M00/00/00/");
    assert_eq!(
        raw(addr, Command::AppendFile, 0, &body).await.0.status(),
        Status::InvalidArgument
    );
    // Truncate body whose name length lies.
    let mut body = TruncateRequest {
        new_size: 0,
        remote_filename: name.clone(),
    }
    .encode();
    body[7] = 50;
    assert_eq!(
        raw(addr, Command::TruncateFile, 0, &body).await.0.status(),
        Status::InvalidArgument
    );
    assert_eq!(
        client.download_bytes(&id, 0, 0).await.expect("untouched"),
        b"abc"
    );
}

#[tokio::test]
async fn slave_files() {
    let c = Cluster::start(&["group1"], 4).await;
    let client = c.client().await;
    let master = client
        .upload_bytes(b"master image", "jpg", None)
        .await
        .expect("master");
    let slave = client
        .upload_slave_bytes(&master, "_150x150", "jpg", b"thumbnail")
        .await
        .expect("slave");
    let stem = &master.remote.name[..master.remote.name.len() - 4];
    assert_eq!(slave.remote.name, format!("{stem}_150x150.jpg"));
    assert_eq!(
        (slave.remote.hh, slave.remote.ll),
        (master.remote.hh, master.remote.ll)
    );
    assert!(slave.remote.is_slave().expect("slave"));
    assert_eq!(
        client.download_bytes(&slave, 0, 0).await.expect("download"),
        b"thumbnail"
    );
    let info = client.file_info(&slave).await.expect("info");
    assert_eq!(
        (info.file_size, info.crc32),
        (9, crc32fast::hash(b"thumbnail"))
    );
    let bare = client
        .upload_slave_bytes(&master, "_raw", "", b"raw")
        .await
        .expect("no ext");
    assert_eq!(bare.remote.name, format!("{stem}_raw"));
    assert_eq!(
        status_of(
            client
                .upload_slave_bytes(&master, "_150x150", "jpg", b"again")
                .await
        ),
        Some(Status::AlreadyExists)
    );
    assert_eq!(
        client
            .download_bytes(&slave, 0, 0)
            .await
            .expect("untouched"),
        b"thumbnail"
    );
    assert_eq!(
        status_of(client.upload_slave_bytes(&master, "", "jpg", b"x").await),
        Some(Status::InvalidArgument)
    );
    assert_eq!(
        status_of(client.upload_slave_bytes(&master, "-m", "", b"x").await),
        Some(Status::InvalidArgument)
    );
    assert_eq!(
        status_of(client.upload_slave_bytes(&master, "a/b", "", b"x").await),
        Some(Status::InvalidArgument)
    );
    client.delete(&master).await.expect("delete master");
    assert_eq!(
        status_of(client.upload_slave_bytes(&master, "_x", "jpg", b"x").await),
        Some(Status::NotFound)
    );
    // Deleting a master leaves its slaves, as in FastDFS.
    assert_eq!(
        client
            .download_bytes(&slave, 0, 0)
            .await
            .expect("slave stays"),
        b"thumbnail"
    );
}

#[tokio::test]
async fn metadata_overwrite_merge_delete() {
    let c = Cluster::start(&["group1"], 4).await;
    let client = c.client().await;
    let id = client
        .upload_bytes(b"photo", "jpg", None)
        .await
        .expect("upload");
    assert_eq!(
        status_of(client.get_metadata(&id).await),
        Some(Status::NotFound),
        "no metadata yet"
    );
    // The recorded fdfs_test sequence: O width,height,author then M color,width.
    let o = meta::encode_pairs([("width", "1024"), ("height", "768"), ("author", "me")]);
    client
        .set_metadata(&id, &o, false)
        .await
        .expect("overwrite");
    client
        .set_metadata(
            &id,
            &meta::encode_pairs([("color", "red"), ("width", "800")]),
            true,
        )
        .await
        .expect("merge");
    let blob = client.get_metadata(&id).await.expect("get");
    // Exactly what V6.16.1 returned after the same two calls (exchange 123).
    let recorded = exchanges()
        .into_iter()
        .find(|x| x["id"] == 123)
        .expect("exchange 123");
    assert_eq!(blob, hex_field(&recorded["response"], "body_hex"));
    // Stored beside the file, in FastDFS's format.
    let on_disk = c
        .store_root(0)
        .join(format!("{}-m", id.remote.relative_path()));
    assert_eq!(std::fs::read(&on_disk).expect("meta file"), blob);
    // The metadata file is no file a client downloads or asks about: ENOENT for both.
    let meta_id = fdfs_node::fileid::FileId::parse(&format!("{id}-m")).expect("an ID with -m");
    assert_eq!(
        status_of(client.download_bytes(&meta_id, 0, 0).await),
        Some(Status::NotFound)
    );
    assert_eq!(
        status_of(client.file_info(&meta_id).await),
        Some(Status::NotFound)
    );
    // A value may hold the field separator; a record without one is skipped.
    let odd = [b"k\x02v\x02w".as_slice(), b"\x01junk\x01"].concat();
    client
        .set_metadata(&id, &odd, false)
        .await
        .expect("overwrite odd");
    assert_eq!(client.get_metadata(&id).await.expect("get"), b"k\x02v\x02w");
    // Overwrite with nothing deletes the metadata file.
    client.set_metadata(&id, b"", false).await.expect("clear");
    assert!(!on_disk.exists());
    assert_eq!(
        status_of(client.get_metadata(&id).await),
        Some(Status::NotFound)
    );
    // Metadata larger than the storage's buffer is refused; the file is untouched.
    let huge = meta::encode_pairs([("big", "x".repeat(300_000).as_str())]);
    assert_eq!(
        status_of(client.set_metadata(&id, &huge, false).await),
        Some(Status::InvalidArgument)
    );
    assert_eq!(
        client.download_bytes(&id, 0, 0).await.expect("untouched"),
        b"photo"
    );
    // Delete removes the file and its metadata.
    client
        .set_metadata(&id, &o, false)
        .await
        .expect("set again");
    client.delete(&id).await.expect("delete");
    assert!(!on_disk.exists());
    assert_eq!(
        status_of(client.set_metadata(&id, &o, false).await),
        Some(Status::NotFound)
    );
}

#[tokio::test]
async fn metadata_and_info_in_raw_bytes() {
    let c = Cluster::start(&["group1"], 256).await;
    let client = c.client().await;
    let id = client
        .upload_bytes(&recorded_input("small.txt"), "txt", None)
        .await
        .expect("upload");
    let addr = c.storage_addr(0);
    let file = FileRequest {
        group: "group1".into(),
        remote_filename: id.remote.to_string(),
    }
    .encode();
    // QUERY_FILE_INFO: 40 bytes, CRC sign-extended, IP in a 16-byte field.
    let (h, body) = raw(addr, Command::QueryFileInfo, 0, &file).await;
    assert_eq!((h.status(), body.len()), (Status::Ok, 40));
    assert_eq!(&body[..8], &100u64.to_be_bytes());
    assert_eq!(hex::encode(&body[16..24]), "000000001573e516");
    assert_eq!(&body[24..40], b"127.0.0.2\0\0\0\0\0\0\0");
    let appender = client
        .upload_appender_reader(&recorded_input("small.txt")[..], 100, "txt", None)
        .await
        .expect("appender");
    client
        .append_bytes(&appender, &recorded_input("append.txt"))
        .await
        .expect("append");
    let afile = FileRequest {
        group: "group1".into(),
        remote_filename: appender.remote.to_string(),
    }
    .encode();
    let (_, body) = raw(addr, Command::QueryFileInfo, 0, &afile).await;
    assert_eq!(
        hex::encode(&body[16..24]),
        "ffffffffdd5b4cba",
        "as recorded from V6.16.1"
    );
    // Flag bit 0: skip the CRC of appender files.
    let (_, body) = raw(addr, Command::QueryFileInfo, 3, &afile).await;
    assert_eq!(&body[16..24], &[0u8; 8]);
    let gone = FileRequest {
        group: "group1".into(),
        remote_filename: id
            .remote
            .to_string()
            .replacen(&id.remote.name[..4], "ZZZZ", 1),
    }
    .encode();
    assert_eq!(
        raw(addr, Command::QueryFileInfo, 0, &gone).await.0.status(),
        Status::NotFound
    );
    // SET_METADATA with an unknown op flag, and with lengths that lie.
    let mut bad = SetMetadataRequest {
        op: MetaOp::Overwrite,
        group: "group1".into(),
        remote_filename: id.remote.to_string(),
        meta: b"a\x02b".to_vec(),
    }
    .encode();
    bad[16] = b'X';
    assert_eq!(
        raw(addr, Command::SetMetadata, 0, &bad).await.0.status(),
        Status::InvalidArgument
    );
    let mut lying = SetMetadataRequest {
        op: MetaOp::Merge,
        group: "group1".into(),
        remote_filename: id.remote.to_string(),
        meta: b"a\x02b".to_vec(),
    }
    .encode();
    lying[15] = 200;
    assert_eq!(
        raw(addr, Command::SetMetadata, 0, &lying).await.0.status(),
        Status::InvalidArgument
    );
    // The wrong group.
    let other = FileRequest {
        group: "group2".into(),
        remote_filename: id.remote.to_string(),
    }
    .encode();
    assert_eq!(
        raw(addr, Command::GetMetadata, 0, &other).await.0.status(),
        Status::InvalidArgument
    );
    // Replayed from the recording: GET_METADATA of a file without metadata → ENOENT.
    for probe in [255u64, 410, 412, 405] {
        let x = exchanges()
            .into_iter()
            .find(|x| x["id"] == probe)
            .expect("probe");
        let body = hex_field(&x["request"], "body_hex");
        let cmd = Command::from(x["cmd"].as_u64().expect("cmd") as u8);
        let (h, _) = raw(
            addr,
            cmd,
            x["request"]["status"].as_u64().unwrap_or(0) as u8,
            &body,
        )
        .await;
        assert_eq!(
            h.encode().to_vec(),
            hex_field(&x["response"], "header_hex"),
            "exchange {probe}"
        );
    }
}

#[tokio::test]
async fn several_store_paths_round_robin_and_skip_readonly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tracker = common::test_tracker(dir.path()).await;
    let storage = |readonly: Vec<usize>, ip: &str| StorageConfig {
        bind: format!("{ip}:0"),
        base_path: dir.path().join(ip),
        store_paths: vec![
            dir.path().join(ip).join("p0"),
            dir.path().join(ip).join("p1"),
        ],
        readonly_store_paths: readonly,
        subdir_count_per_path: 2,
        tracker_servers: vec![tracker.addr.to_string()],
        group_name: if ip.ends_with('2') {
            "group1".into()
        } else {
            "group2".into()
        },
        ..Default::default()
    };
    let s1 = fdfs_node::storage::start(storage(vec![], "127.0.0.2"))
        .await
        .expect("storage");
    let s2 = fdfs_node::storage::start(storage(vec![1], "127.0.0.3"))
        .await
        .expect("storage");
    let client = common::client_of([tracker.addr]).await;
    common::wait_until(
        "both storages ACTIVE",
        Duration::from_secs(30),
        async || common::ready_members(&tracker, None) == 2,
    )
    .await;
    let mut paths = Vec::new();
    for _ in 0..4 {
        paths.push(
            client
                .upload_bytes(b"x", "txt", Some("group1"))
                .await
                .expect("upload")
                .remote
                .store_path,
        );
    }
    assert_eq!(paths, [0, 1, 0, 1], "the tracker rotates store paths");
    let second = client
        .upload_bytes(b"abc", "txt", Some("group1"))
        .await
        .expect("upload");
    assert!(
        dir.path()
            .join("127.0.0.2/p0")
            .join(second.remote.relative_path())
            .exists()
    );
    // Path 1 of the second storage is read-only: every file lands on M00.
    for _ in 0..4 {
        assert_eq!(
            client
                .upload_bytes(b"x", "txt", Some("group2"))
                .await
                .expect("upload")
                .remote
                .store_path,
            0
        );
    }
    // A storage choosing by itself (index 0xFF) also round-robins over writable paths.
    let mut direct = Vec::new();
    for _ in 0..2 {
        let head = UploadHead {
            store_path_index: 0xFF,
            file_size: 1,
            ext: "txt".into(),
        };
        direct.push(
            client
                .upload_to(s1.addr, head, &mut &b"y"[..])
                .await
                .expect("direct")
                .remote
                .store_path,
        );
    }
    direct.sort();
    assert_eq!(direct, [0, 1]);
    s1.stop(Duration::from_secs(1)).await;
    s2.stop(Duration::from_secs(1)).await;
    tracker.stop(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn a_full_node_answers_enospc_and_writes_nothing() {
    let cfg = TrackerConfig {
        // More than any disk has: the node is full however empty its disk is.
        reserved_storage_space: ReservedSpace::Mb(1 << 40),
        ..Default::default()
    };
    let c = Cluster::start_with_reserved(&["group1"], 2, cfg).await;
    let client = c.client().await;
    assert_eq!(
        status_of(client.upload_bytes(b"x", "txt", None).await),
        Some(Status::NoSpace)
    );
    // Straight to the storage, which applies the tracker's reserve itself.
    let head = UploadHead {
        store_path_index: 0xFF,
        file_size: 3,
        ext: "txt".into(),
    };
    let err = client
        .upload_to(c.storage_addr(0), head, &mut &b"abc"[..])
        .await
        .expect_err("full");
    assert_eq!(err.status(), Some(Status::NoSpace));
    let files: Vec<_> = walk(&c.store_root(0).join("data"));
    assert!(
        files
            .iter()
            .all(|p| p.ends_with(".data_init_flag") || p.to_string_lossy().contains("/data/sync/")),
        "{files:?}"
    );
}

/// A disk that takes only part of an upload (it fills up while the file is written): the
/// client gets a status, nothing of the file stays (under its name, in a temporary file or
/// in the binlog), the connection goes on, and once there is room the next upload is stored.
#[tokio::test]
async fn an_upload_the_disk_takes_only_part_of_leaves_nothing_and_the_next_is_stored() {
    fdfs_test_support::alone!();
    let c = Cluster::start(&["group1"], 1).await;
    let client = c.client().await;
    let kept = client
        .upload_bytes(b"kept", "txt", None)
        .await
        .expect("kept");
    let data = c.store_root(0).join("data");
    let binlog = data.join("sync/binlog.000");
    let (files, lines) = (walk(&data), std::fs::read(&binlog).expect("binlog"));
    fdfs_test_support::full_disk::limit_file_size(Some(32 * 1024));
    // One written whole from the request's buffer, one written as it arrives.
    for size in [48 * 1024, 4 * 1024 * 1024] {
        let body = vec![7u8; size];
        assert_eq!(
            status_of(client.upload_bytes(&body, "bin", None).await),
            Some(Status::Io),
            "{size} bytes"
        );
    }
    fdfs_test_support::full_disk::limit_file_size(None);
    assert_eq!(walk(&data), files, "no file, no temporary file");
    assert_eq!(std::fs::read(&binlog).expect("binlog"), lines);
    assert_eq!(
        client.download_bytes(&kept, 0, 0).await.expect("kept"),
        b"kept"
    );
    let body = vec![9u8; 4 * 1024 * 1024];
    let stored = client
        .upload_bytes(&body, "bin", None)
        .await
        .expect("stored once there is room");
    assert_eq!(
        client
            .download_bytes(&stored, 0, 0)
            .await
            .expect("download"),
        body
    );
}

/// An upload whose binlog line cannot be written (the binlog's volume is full) fails, and
/// its file goes again: acknowledged, it would stay on this member alone, never pushed.
#[tokio::test]
async fn an_upload_whose_binlog_line_cannot_be_written_fails_and_leaves_nothing() {
    fdfs_test_support::alone!();
    let c = Cluster::start(&["group1"], 1).await;
    let client = c.client().await;
    let kept = client
        .upload_bytes(b"kept", "txt", None)
        .await
        .expect("kept");
    let data = c.store_root(0).join("data");
    let binlog = data.join("sync/binlog.000");
    let (files, lines) = (walk(&data), std::fs::read(&binlog).expect("binlog"));
    // Files up to the binlog's size can be written; the binlog cannot grow.
    fdfs_test_support::full_disk::limit_file_size(Some(lines.len() as u64));
    let refused = client.upload_bytes(b"tiny", "txt", None).await;
    let slave = client
        .upload_slave_bytes(&kept, "_s", "txt", b"thumb")
        .await;
    fdfs_test_support::full_disk::limit_file_size(None);
    assert_eq!(status_of(refused), Some(Status::Io));
    assert_eq!(status_of(slave), Some(Status::Io));
    assert_eq!(walk(&data), files, "no file left");
    assert_eq!(std::fs::read(&binlog).expect("binlog"), lines);
    let stored = client
        .upload_bytes(b"tiny", "txt", None)
        .await
        .expect("stored once the binlog can grow");
    assert_eq!(
        client
            .download_bytes(&stored, 0, 0)
            .await
            .expect("download"),
        b"tiny"
    );
}

/// A modify the disk takes only part of (it fills up past the file's end): the client gets a
/// status, what it added past the old end is cut back, and the bytes it overwrote before
/// that, which cannot be put back, are logged as modified, so the other copies get them.
#[tokio::test]
async fn a_modify_the_disk_takes_only_part_of_keeps_the_old_end_and_logs_what_changed() {
    fdfs_test_support::alone!();
    const OLD: usize = 64 * 1024;
    let c = Cluster::start(&["group1"], 1).await;
    let client = c.client().await;
    let id = client
        .upload_appender_reader(&vec![1u8; OLD][..], OLD as u64, "bin", None)
        .await
        .expect("appender");
    let path = c.store_root(0).join(id.remote.relative_path());
    let binlog = c.store_root(0).join("data/sync/binlog.000");
    let lines = std::fs::read_to_string(&binlog).expect("binlog");
    fdfs_test_support::full_disk::limit_file_size(Some(OLD as u64 + 2000));
    let offset = OLD - 1000;
    assert_eq!(
        status_of(client.modify_bytes(&id, offset as u64, &[2u8; 8192]).await),
        Some(Status::Io)
    );
    fdfs_test_support::full_disk::limit_file_size(None);
    let now = std::fs::read(&path).expect("file");
    assert_eq!(now.len(), OLD, "cut back to its old end");
    assert!(now[..offset].iter().all(|&b| b == 1));
    assert!(now[offset..].iter().all(|&b| b == 2));
    let after = std::fs::read_to_string(&binlog).expect("binlog");
    let added: Vec<&str> = after[lines.len()..].lines().collect();
    assert_eq!(added.len(), 1, "{added:?}");
    assert!(
        added[0].ends_with(&format!(" M {} {offset} 1000", id.remote)),
        "{added:?}"
    );
    client
        .modify_bytes(&id, 0, b"room again")
        .await
        .expect("a modify once there is room");
}

/// A name without the encoded part every file name has, such as a trunk file's own
/// (`000001`, holding many small files), is refused by every command that reads, replaces
/// or deletes a file: EINVAL, and the file stays as it was.
#[tokio::test]
async fn a_trunk_files_own_name_is_no_file_to_delete_or_read() {
    let c = Cluster::start(&["group1"], 1).await;
    let trunk = c.store_root(0).join("data/00/00/000001");
    std::fs::write(&trunk, b"many small files").expect("a trunk file");
    let addr = c.storage_addr(0);
    let file = FileRequest {
        group: "group1".into(),
        remote_filename: "M00/00/00/000001".into(),
    }
    .encode();
    let mut download = [0u64.to_be_bytes(), 0u64.to_be_bytes()].concat();
    download.extend_from_slice(&file);
    for (cmd, body) in [
        (Command::DeleteFile, &file),
        (Command::QueryFileInfo, &file),
        (Command::DownloadFile, &download),
    ] {
        let (h, _) = raw(addr, cmd, 0, body).await;
        assert_eq!(h.status(), Status::InvalidArgument, "{cmd:?}");
    }
    assert_eq!(std::fs::read(&trunk).expect("kept"), b"many small files");
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).expect("readdir").flatten() {
        if e.path().is_dir() {
            out.extend(walk(&e.path()));
        } else {
            out.push(e.path());
        }
    }
    out
}

#[tokio::test]
async fn allow_hosts_refuses_other_addresses() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = StorageConfig {
        bind: "127.0.0.2:0".into(),
        base_path: dir.path().into(),
        subdir_count_per_path: 1,
        allow_hosts: vec!["127.0.0.77".into()],
        tracker_servers: vec!["127.0.0.1:1".into()],
        ..Default::default()
    };
    let s = fdfs_node::storage::start(cfg).await.expect("storage");
    let mut conn = TcpStream::connect(s.addr).await.expect("connect");
    let _ = conn
        .write_all(&Header::request(Command::ActiveTest, 0).encode())
        .await;
    let mut b = [0u8; 10];
    let n = tokio::time::timeout(Duration::from_secs(10), conn.read(&mut b))
        .await
        .expect("closed in time");
    assert!(
        matches!(n, Ok(0) | Err(_)),
        "connection from 127.0.0.1 must be refused"
    );
    // From the allowed address it answers.
    let sock = tokio::net::TcpSocket::new_v4().expect("socket");
    sock.bind("127.0.0.77:0".parse().expect("addr"))
        .expect("bind");
    let mut ok = sock.connect(s.addr).await.expect("connect");
    ok.write_all(&Header::request(Command::ActiveTest, 0).encode())
        .await
        .expect("write");
    ok.read_exact(&mut b).await.expect("reply");
    assert_eq!(Header::decode(&b, 0).expect("header").status(), Status::Ok);
    s.stop(Duration::from_secs(1)).await;
}

/// A store path written by FastDFS is served as it is.
#[tokio::test]
async fn serves_a_store_path_laid_out_by_fastdfs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let base = dir.path().join("fastdfs-store");
    // Laid out as the V6.16.1 storage left it: data/HH/LL/<name> and <name>-m.
    let id: FileId = "group1/M00/07/F0/fwAAAmsHltmAfYkIAAAAZBVz5RY696.txt"
        .parse()
        .expect("id");
    let file = base.join("data/07/F0/fwAAAmsHltmAfYkIAAAAZBVz5RY696.txt");
    std::fs::create_dir_all(file.parent().expect("dir")).expect("mkdir");
    std::fs::write(&file, recorded_input("small.txt")).expect("write");
    let blob = meta::encode_pairs([
        ("ext_name", "jpg"),
        ("file_size", "115120"),
        ("height", "80"),
        ("width", "160"),
    ]);
    std::fs::write(
        base.join("data/07/F0/fwAAAmsHltmAfYkIAAAAZBVz5RY696.txt-m"),
        &blob,
    )
    .expect("write meta");
    let tracker = common::test_tracker(dir.path()).await;
    let s = fdfs_node::storage::start(StorageConfig {
        bind: "127.0.0.2:0".into(),
        base_path: base.clone(),
        tracker_servers: vec![tracker.addr.to_string()],
        ..Default::default()
    })
    .await
    .expect("storage");
    let client = common::client_of([tracker.addr]).await;
    common::wait_until("the storage ACTIVE", Duration::from_secs(30), async || {
        common::ready_members(&tracker, None) == 1
    })
    .await;
    assert_eq!(
        client.download_bytes(&id, 0, 0).await.expect("download"),
        recorded_input("small.txt")
    );
    // Byte-identical to the recorded GET_METADATA reply for this metadata (exchange 105).
    let recorded = exchanges()
        .into_iter()
        .find(|x| x["id"] == 105)
        .expect("exchange 105");
    assert_eq!(
        client.get_metadata(&id).await.expect("meta"),
        hex_field(&recorded["response"], "body_hex")
    );
    let info = client.file_info(&id).await.expect("info");
    assert_eq!(
        (info.file_size, info.crc32, info.source_ip.as_str()),
        (100, 0x1573_e516, "127.0.0.2")
    );
    s.stop(Duration::from_secs(1)).await;
    tracker.stop(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn connection_limit_and_idle_timeout() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = StorageConfig {
        bind: "127.0.0.2:0".into(),
        base_path: dir.path().into(),
        subdir_count_per_path: 1,
        max_connections: 2,
        idle_timeout: 1,
        tracker_servers: vec!["127.0.0.1:1".into()],
        ..Default::default()
    };
    let s = fdfs_node::storage::start(cfg).await.expect("storage");
    let ping = Header::request(Command::ActiveTest, 0).encode();
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut c = TcpStream::connect(s.addr).await.expect("connect");
        c.write_all(&ping).await.expect("write");
        let mut b = [0u8; 10];
        c.read_exact(&mut b).await.expect("served");
        held.push(c);
    }
    // A third connection while two are open is closed without an answer.
    let mut third = TcpStream::connect(s.addr).await.expect("connect");
    let _ = third.write_all(&ping).await;
    let mut b = [0u8; 10];
    let r = tokio::time::timeout(Duration::from_secs(10), third.read(&mut b))
        .await
        .expect("in time");
    assert!(
        matches!(r, Ok(0) | Err(_)),
        "third connection must be refused"
    );
    // Idle connections are closed after idle_timeout, freeing their slots.
    for c in &mut held {
        let r = tokio::time::timeout(Duration::from_secs(10), c.read(&mut b))
            .await
            .expect("closed in time");
        assert!(matches!(r, Ok(0) | Err(_)));
    }
    let mut again = TcpStream::connect(s.addr).await.expect("connect");
    again.write_all(&ping).await.expect("write");
    again
        .read_exact(&mut b)
        .await
        .expect("served after the idle ones left");
    s.stop(Duration::from_secs(1)).await;
}

/// FastDFS's `data/storage_stat.dat`: the counters `fdfs_monitor` shows and the round-robin
/// directory position are written at shutdown and taken up again at start.
#[tokio::test]
async fn counters_and_the_directory_rotation_survive_a_restart() {
    use fdfs_node::proto::monitor::counter;
    let mut c = Cluster::start(&["group1"], 4).await;
    let client = c.client().await;
    // The round robin moves on to 00/01 after `file_distribute_rotate_count` (100) files.
    let mut last = None;
    for i in 0..150 {
        last = Some(
            client
                .upload_bytes(format!("file {i}").as_bytes(), "txt", None)
                .await
                .expect("upload"),
        );
    }
    let last = last.expect("uploaded");
    assert_eq!((last.remote.hh, last.remote.ll), (0, 1));
    client.download_bytes(&last, 0, 0).await.expect("download");
    let before = c.storages[0].node.stats();

    let storage = c.storages.pop().expect("storage");
    let mut cfg = storage.node.config.clone();
    cfg.bind = storage.addr.to_string();
    storage.stop(Duration::from_secs(1)).await;
    let text = std::fs::read_to_string(cfg.base_path.join("data/storage_stat.dat"))
        .expect("storage_stat.dat");
    for line in [
        "success_upload_count=150\n",
        "success_download_count=1\n",
        "dist_path_index_high=0\ndist_path_index_low=1\ndist_write_file_count=50\n",
    ] {
        assert!(text.contains(line), "{line:?} in\n{text}");
    }

    c.storages
        .push(fdfs_node::storage::start(cfg).await.expect("restart"));
    c.wait_active().await;
    let after = c.storages[0].node.stats();
    assert_eq!(after.counters, before.counters);
    assert_eq!(after.last_source_update, before.last_source_update);
    let next = client
        .upload_bytes(b"after the restart", "txt", None)
        .await
        .expect("upload");
    assert_eq!(
        (next.remote.hh, next.remote.ll),
        (0, 1),
        "the rotation goes on where it stood"
    );
    assert_eq!(
        c.storages[0].node.stats().counters[counter::SUCCESS_UPLOAD],
        151
    );
}

/// Captured log lines, for the test below.
#[derive(Clone, Default)]
struct Logs(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("logs").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A disk failure reaches the client as FastDFS's status and the log as its cause, once,
/// with the command and the client's address: here the store path's only data directory is
/// a file, so putting an upload there fails with ENOTDIR, and the upload gets EIO.
#[tokio::test]
async fn a_failed_disk_write_is_answered_with_a_status_and_logged_with_its_cause() {
    let logs = Logs::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::WARN)
        .finish();
    // The servers' tasks run on this test's thread: they log to this subscriber.
    let _logging = tracing::subscriber::set_default(subscriber);
    let c = Cluster::start(&["group1"], 1).await;
    let only_dir = c.store_root(0).join("data/00/00");
    std::fs::remove_dir_all(&only_dir).expect("remove");
    std::fs::write(&only_dir, b"not a directory").expect("file in its place");

    let client = c.client().await;
    match client.upload_bytes(b"lost?", "txt", None).await {
        Err(fdfs_node::client::ClientError::Status { status, .. }) => {
            assert_eq!(status, Status::Io)
        }
        other => panic!("expected EIO, got {other:?}"),
    }
    let text = String::from_utf8(logs.0.lock().expect("logs").clone()).expect("utf8");
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("cmd=UploadFile"))
        .collect();
    assert_eq!(lines.len(), 1, "{text}");
    let line = lines[0];
    assert!(line.contains("WARN"), "{line}");
    assert!(line.contains("failed"), "{line}");
    assert!(line.contains("status=EIO"), "{line}");
    assert!(line.contains("peer=127.0.0.1:"), "{line}");
    assert!(line.to_lowercase().contains("not a directory"), "{line}");
    // The server stays up: the directory back, the next upload is stored.
    std::fs::remove_file(&only_dir).expect("remove the file");
    std::fs::create_dir(&only_dir).expect("the directory again");
    client
        .upload_bytes(b"kept", "txt", None)
        .await
        .expect("upload after the fault");
}
