//! Disk recovery: FETCH_ONE_PATH_BINLOG (26) byte for byte against the recorded
//! V6.16.1 reply, its refusals, and a group member that lost a store path
//! rebuilding it from its peer (RECOVERY → ONLINE → ACTIVE).

mod common;

use common::wait_until;

use std::net::SocketAddr;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use fdfs_node::config::{StorageConfig, TrackerConfig};
use fdfs_node::fileid::FileId;
use fdfs_node::proto::StorageStatus;
use fdfs_node::storage::RunningStorage;
use fdfs_node::storage::binlog::{Op, Record};
use fdfs_node::storage::recovery::{BINLOG_FILE, FLAG_FILE, Flag, MARK_FILE};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Sends raw request bytes and reads everything until the storage closes.
async fn exchange_until_close(addr: SocketAddr, request: &[u8]) -> Vec<u8> {
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.write_all(request).await.expect("send");
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out))
        .await
        .expect("storage closes the connection")
        .expect("read");
    out
}

fn request_26(group: &[u8], rest: &[u8]) -> Vec<u8> {
    let mut body = group.to_vec();
    body.resize(16, 0);
    body.extend_from_slice(rest);
    let mut req = (body.len() as u64).to_be_bytes().to_vec();
    req.extend_from_slice(&[26, 0]);
    req.extend_from_slice(&body);
    req
}

const RECORDED_NAME: &str = "M00/05/4B/fwAABGsHltqAV__gAAAAZBVz5RY383.txt";

#[tokio::test]
async fn fetch_one_path_binlog_matches_the_recorded_reply() {
    let ex = common::exchanges()
        .into_iter()
        .find(|e| e["cmd"] == 26)
        .expect("a recorded command-26 exchange");
    let request = [
        common::hex_field(&ex["request"], "header_hex"),
        common::hex_field(&ex["request"], "body_hex"),
    ]
    .concat();
    let reply = [
        common::hex_field(&ex["response"], "header_hex"),
        common::hex_field(&ex["response"], "body_hex"),
    ]
    .concat();
    assert_eq!(ex["response"]["truncated"], false);

    // storage3 of the recording: group2, one path, the recorded file on disk, and
    // around its create record the kinds FastDFS leaves out.
    let cluster = common::Cluster::start(&["group2"], 256).await;
    let node = &cluster.storages[0].node;
    let root = cluster.store_root(0).join("data");
    std::fs::write(root.join(&RECORDED_NAME[4..]), b"recorded file").expect("file");
    std::fs::write(root.join("05/4B/appended.bin"), b"x").expect("file");
    node.disk
        .binlog()
        .append(&[
            Record::new(1_795_659_470, Op::Create, "M00/05/4B/gone.txt"),
            Record::new(1_795_659_471, Op::Append, RECORDED_NAME).with_extra("0 5"),
            Record::new(1_795_659_472, Op::Update, "M00/05/4B/appended.bin"),
            Record::new(1_795_659_473, Op::Delete, "M00/05/4B/gone.txt"),
            Record::new(1_795_659_482, Op::Create, RECORDED_NAME),
            Record::new(1_795_659_483, Op::Modify, RECORDED_NAME).with_extra("1 2"),
            Record::new(1_795_659_484, Op::Truncate, RECORDED_NAME).with_extra("5 3"),
        ])
        .expect("binlog");
    let got = exchange_until_close(cluster.storage_addr(0), &request).await;
    assert_eq!(hex::encode(&got), hex::encode(&reply));

    // Renames go as creates of the new name, replica records keep their lower
    // case, other paths' records and missing files are left out.
    std::fs::write(root.join("00/00/fwAABGsHltqAV__gAAAAZBVz5RY384.txt"), b"r").expect("file");
    std::fs::write(root.join("00/00/fwAABGsHltqAV__gAAAAZBVz5RY385.txt"), b"c").expect("file");
    node.disk
        .binlog()
        .append(&[
            Record::new(
                1_795_659_490,
                Op::Rename,
                "M00/00/00/fwAABGsHltqAV__gAAAAZBVz5RY384.txt",
            )
            .with_extra("M00/00/00/fwAABGsHltqAV__gAAAAZBVz5RY386.txt"),
            Record::new(
                1_795_659_491,
                Op::Create,
                "M00/00/00/fwAABGsHltqAV__gAAAAZBVz5RY385.txt",
            )
            .replica(),
            Record::new(
                1_795_659_492,
                Op::Create,
                "M01/00/00/fwAABGsHltqAV__gAAAAZBVz5RY385.txt",
            ),
        ])
        .expect("binlog");
    let got = exchange_until_close(cluster.storage_addr(0), &request).await;
    let text = format!(
        "1795659482 C {RECORDED_NAME}\n1795659490 C M00/00/00/fwAABGsHltqAV__gAAAAZBVz5RY384.txt\n1795659491 c M00/00/00/fwAABGsHltqAV__gAAAAZBVz5RY385.txt\n"
    );
    let mut want = hex::decode("04000000000000006400").expect("hex");
    want.extend_from_slice(text.as_bytes());
    want.extend_from_slice(&(text.len() as u64).to_be_bytes());
    assert_eq!(
        String::from_utf8_lossy(&got),
        String::from_utf8_lossy(&want)
    );
}

#[tokio::test]
async fn bad_fetch_binlog_requests_get_einval_and_change_nothing() {
    let cluster = common::Cluster::start(&["group1"], 2).await;
    let node = &cluster.storages[0].node;
    let addr = cluster.storage_addr(0);
    node.disk
        .binlog()
        .append(&[Record::new(1, Op::Create, "M00/00/00/x.txt")])
        .expect("binlog");
    let before = node.disk.binlog().end();
    let einval_then_close = hex::decode("00000000000000006416").expect("hex");
    for (what, req) in [
        ("other group", request_26(b"group2", &[0])),
        ("index past the last path", request_26(b"group1", &[1])),
        ("negative index", request_26(b"group1", &[0xFF])),
        ("cut-off body", request_26(b"group1", &[])),
        ("body too long", request_26(b"group1", &[0, 0])),
    ] {
        let got = exchange_until_close(addr, &req).await;
        assert_eq!(hex::encode(got), hex::encode(&einval_then_close), "{what}");
    }
    assert_eq!(node.disk.binlog().end(), before);
    // A good request still works, and the file it names is not there: empty slice.
    let got = exchange_until_close(addr, &request_26(b"group1", &[0])).await;
    assert_eq!(hex::encode(got), "040000000000000064000000000000000000");
}

/// A two-member group; B keeps its files on a disk of its own (`store_paths`).
struct Group {
    base: common::TestGroup,
    b_config: StorageConfig,
}

impl std::ops::Deref for Group {
    type Target = common::TestGroup;

    fn deref(&self) -> &common::TestGroup {
        &self.base
    }
}

const A: &str = "127.0.0.2";
const B: &str = "127.0.0.3";

impl Group {
    async fn start() -> Group {
        let mut base = common::TestGroup::start(TrackerConfig::default(), 28000).await;
        base.add_member(A).await;
        let mut b_config = base.config(B);
        b_config.store_paths = vec![base.dir.path().join("disk-of-b")];
        base.add(b_config.clone()).await;
        Group { base, b_config }
    }

    fn a(&self) -> &RunningStorage {
        self.member(A)
    }

    /// Starts B again (after [`Self::stop_b`]).
    async fn start_b(&mut self) {
        self.base.add(self.b_config.clone()).await;
    }

    async fn wait_status(&self, ip: &str, want: StorageStatus) {
        wait_until(
            &format!("{ip} {}", want.name()),
            Duration::from_secs(60),
            async || self.status_of(ip) == Some(want),
        )
        .await;
    }

    fn a_path(&self, name: &str) -> PathBuf {
        self.a().node.config.base_path.join(name)
    }

    fn b_path(&self, name: &str) -> PathBuf {
        self.b_config.store_paths[0].join(name)
    }

    fn b_data(&self) -> PathBuf {
        self.b_config.store_paths[0].join("data")
    }

    async fn stop_b(&mut self) {
        let members = &mut self.base.members;
        if let Some(i) = members.iter().position(|m| m.addr.ip().to_string() == B) {
            members.remove(i).stop(Duration::from_secs(2)).await;
        }
        self.wait_status(B, StorageStatus::Offline).await;
    }
}

/// Remote names of every file of the path on a member's disk, metadata files included.
fn files_under(data: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for hh in std::fs::read_dir(data).expect("data") {
        let hh = hh.expect("entry");
        let name = hh.file_name().to_string_lossy().into_owned();
        if name.len() != 2 || !hh.path().is_dir() {
            continue;
        }
        for ll in std::fs::read_dir(hh.path()).expect("hh") {
            let ll = ll.expect("entry");
            for f in std::fs::read_dir(ll.path()).expect("ll") {
                let f = f.expect("entry");
                out.push(format!(
                    "M00/{name}/{}/{}",
                    ll.file_name().to_string_lossy(),
                    f.file_name().to_string_lossy()
                ));
            }
        }
    }
    out.sort();
    out
}

/// Requests of one command a storage answered, whatever the status.
fn served(node: &fdfs_node::storage::StorageNode, command: &str) -> u64 {
    node.metrics
        .render()
        .lines()
        .filter(|l| {
            l.starts_with(&format!(
                "fdfs_storage_requests_total{{command=\"{command}\""
            ))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

fn content(i: usize) -> Vec<u8> {
    let len = [0, 1, 4096, 300_000, 3 * 1024 * 1024 + 7][i % 5];
    (0..len).map(|j| ((i * 131 + j * 7) % 251) as u8).collect()
}

#[tokio::test]
async fn a_member_that_lost_its_store_path_recovers_it_from_its_peer() {
    let mut g = Group::start().await;
    g.wait_status("127.0.0.2", StorageStatus::Active).await;
    g.wait_status("127.0.0.3", StorageStatus::Active).await;

    // Files of mixed sizes land on both members (round robin), with metadata,
    // an appended appender, a renamed appender and a deleted file.
    let mut ids: Vec<FileId> = Vec::new();
    for i in 0..20 {
        ids.push(
            g.client
                .upload_bytes(&content(i), "bin", None)
                .await
                .expect("upload"),
        );
    }
    for id in &ids[..3] {
        g.client
            .set_metadata(
                id,
                &fdfs_node::storage::meta::encode_pairs([("width", "640"), ("k", "v")]),
                false,
            )
            .await
            .expect("metadata");
    }
    let app = g
        .client
        .upload_appender_reader(&b"head-"[..], 5, "log", None)
        .await
        .expect("appender");
    g.client.append_bytes(&app, b"tail").await.expect("append");
    let app2 = g
        .client
        .upload_appender_reader(&b"to be renamed"[..], 13, "txt", None)
        .await
        .expect("appender");
    let renamed = g
        .client
        .regenerate_appender_name(&app2)
        .await
        .expect("regenerate");
    let gone = ids.remove(7);
    g.client.delete(&gone).await.expect("delete");
    ids.push(app);
    ids.push(renamed);
    let sources: std::collections::BTreeSet<String> = ids
        .iter()
        .map(|id| id.remote.core().expect("core").source.to_string())
        .collect();
    assert_eq!(sources.len(), 2, "uploads went to both members");
    wait_until(
        "both members hold the same files",
        Duration::from_secs(60),
        async || {
            let a = files_under(&g.a().node.config.base_path.join("data"));
            a.len() == ids.len() + 3 && files_under(&g.b_data()) == a
        },
    )
    .await;
    let expected = files_under(&g.a().node.config.base_path.join("data"));

    // B's disk is replaced while B is stopped; its base path keeps its state.
    g.stop_b().await;
    std::fs::remove_dir_all(g.b_data()).expect("wipe B's disk");
    // A leftover directory where the slice is written holds the recovery at
    // its first step, once B has told the tracker it is recovering.
    let obstacle = g.b_data().join(format!("{BINLOG_FILE}.tmp"));
    std::fs::create_dir_all(&obstacle).expect("obstacle");
    g.start_b().await;
    g.wait_status("127.0.0.3", StorageStatus::Recovery).await;
    assert!(g.b_data().join(FLAG_FILE).is_file());
    // Meanwhile every read goes to A, and B is in no readable list.
    let a_addr = g.a().addr.to_string();
    for id in &ids {
        let t = g.client.query_fetch(id).await.expect("query fetch");
        assert_eq!(format!("{}:{}", t.addr.ip, t.addr.port), a_addr, "{id}");
        let got = g.client.download_bytes(id, 0, 0).await.expect("download");
        let on_a = g.a().node.config.base_path.join(id.remote.relative_path());
        assert_eq!(got, std::fs::read(on_a).expect("A's copy"));
    }
    {
        let reg = g.tracker.tracker.registry();
        let readable: Vec<String> = reg.groups()["group1"]
            .readable()
            .iter()
            .map(|m| m.ip.clone())
            .collect();
        assert_eq!(readable, vec!["127.0.0.2".to_owned()]);
    }
    assert_eq!(served(&g.a().node, "FetchOnePathBinlog"), 0);
    std::fs::remove_dir(&obstacle).expect("clear the obstacle");

    // B rebuilds the path from A and serves again.
    g.wait_status("127.0.0.3", StorageStatus::Active).await;
    assert_eq!(files_under(&g.b_data()), expected);
    for name in &expected {
        let rel = format!("data/{}", &name[4..]);
        let (a, b) = (g.a_path(&rel), g.b_path(&rel));
        assert_eq!(
            std::fs::read(&b).expect("B's copy"),
            std::fs::read(&a).expect("A's copy"),
            "{name}"
        );
    }
    for f in [FLAG_FILE, BINLOG_FILE, MARK_FILE] {
        assert!(!g.b_data().join(f).exists(), "{f} left behind");
    }
    assert_eq!(served(&g.a().node, "FetchOnePathBinlog"), 1);

    // An interrupted recovery resumes from its mark: the slice is fetched
    // already and the first files are back, so only the rest is downloaded.
    g.stop_b().await;
    let slice = exchange_until_close(g.a().addr, &request_26(b"group1", &[0])).await;
    let text = fdfs_node::proto::sync::binlog_reply_text(&slice[10..])
        .expect("slice")
        .to_vec();
    let lines: Vec<&[u8]> = text.split_inclusive(|&b| b == b'\n').collect();
    assert_eq!(
        lines.len(),
        expected.len(),
        "one line per file still present"
    );
    let done = 10;
    let offset: usize = lines[..done].iter().map(|l| l.len()).sum();
    std::fs::remove_dir_all(g.b_data()).expect("wipe B's disk again");
    std::fs::create_dir_all(g.b_data()).expect("data");
    let mut kept = Vec::new();
    for line in &lines[..done] {
        let name = std::str::from_utf8(line)
            .expect("utf8")
            .split(' ')
            .nth(2)
            .expect("name")
            .trim()
            .to_owned();
        let rel = format!("data/{}", &name[4..]);
        std::fs::create_dir_all(g.b_path(&rel).parent().expect("dir")).expect("dirs");
        std::fs::copy(g.a_path(&rel), g.b_path(&rel)).expect("copy");
        kept.push((
            rel.clone(),
            std::fs::metadata(g.b_path(&rel)).expect("meta").ino(),
        ));
    }
    // A corrupt line longer than any record, whose last 4 KiB piece reads like one, is
    // passed over whole.
    let mut corrupt = vec![b'x'; 8192];
    corrupt.extend_from_slice(b"1800000000 C M00/00/00/not-a-file-on-A.bin\n");
    let mut slice_text = text[..offset].to_vec();
    slice_text.extend_from_slice(&corrupt);
    slice_text.extend_from_slice(&text[offset..]);
    std::fs::write(g.b_data().join(BINLOG_FILE), &slice_text).expect("slice");
    std::fs::write(
        g.b_data().join(MARK_FILE),
        format!("binlog_offset={offset}\n"),
    )
    .expect("mark");
    let flag = Flag {
        saved_status: StorageStatus::Active as i32,
        fetch_binlog_done: true,
        recovery_threads: 1,
    };
    std::fs::write(g.b_data().join(FLAG_FILE), flag.render()).expect("flag");
    let downloads_before = served(&g.a().node, "DownloadFile");
    g.start_b().await;
    g.wait_status("127.0.0.3", StorageStatus::Active).await;
    assert_eq!(
        served(&g.a().node, "FetchOnePathBinlog"),
        2,
        "the slice is not fetched again"
    );
    assert_eq!(
        served(&g.a().node, "DownloadFile") - downloads_before,
        (expected.len() - done) as u64,
        "one download per remaining file, none for the corrupt line"
    );
    for (rel, ino) in &kept {
        assert_eq!(
            std::fs::metadata(g.b_path(rel)).expect("meta").ino(),
            *ino,
            "{rel} rewritten"
        );
    }
    assert_eq!(files_under(&g.b_data()), expected);
    for name in &expected {
        let rel = format!("data/{}", &name[4..]);
        assert_eq!(
            std::fs::read(g.b_path(&rel)).expect("B"),
            std::fs::read(g.a_path(&rel)).expect("A"),
            "{name}"
        );
    }

    // A flag saying the slice was fetched, without the slice (a finish cut short after
    // removing it): the slice is fetched again and the recovery ends, not stuck.
    g.stop_b().await;
    std::fs::remove_dir_all(g.b_data()).expect("wipe B's disk a third time");
    std::fs::create_dir_all(g.b_data()).expect("data");
    std::fs::write(g.b_data().join(FLAG_FILE), flag.render()).expect("flag alone");
    g.start_b().await;
    g.wait_status("127.0.0.3", StorageStatus::Active).await;
    assert_eq!(served(&g.a().node, "FetchOnePathBinlog"), 3);
    assert_eq!(files_under(&g.b_data()), expected);
    assert!(!g.b_data().join(FLAG_FILE).exists());
}

#[tokio::test]
async fn trunk_stored_files_are_recovered_into_their_slots() {
    use fdfs_node::fileid::TrunkSlot;
    let mut g = common::TestGroup::start(TrackerConfig::default(), 28000).await;
    let a_config = g.config(A);
    // A's store path was written by a FastDFS storage with trunk files: trunk 000001 in
    // data/00/00 with two slots, and the binlog naming them.
    let mtime = fdfs_node::unix_now() as u32 - 60;
    let files: Vec<(TrunkSlot, Vec<u8>, &str)> = vec![
        (
            TrunkSlot {
                id: 1,
                offset: 0,
                size: 4096,
            },
            (0..3000u32).map(|i| (i % 253) as u8).collect(),
            "000.jpg",
        ),
        (
            TrunkSlot {
                id: 1,
                offset: 4096,
                size: 512,
            },
            b"avatar".to_vec(),
            "000.png",
        ),
    ];
    let names: Vec<_> = files
        .iter()
        .map(|(slot, data, ext)| common::trunk_file_name("127.0.0.2", data, mtime, *slot, ext))
        .collect();
    let trunk_dir = a_config.base_path.join("data/00/00");
    std::fs::create_dir_all(&trunk_dir).expect("dirs");
    let trunk: Vec<u8> = files
        .iter()
        .flat_map(|(slot, data, ext)| common::fastdfs_slot(slot.size, data, mtime, ext))
        .collect();
    std::fs::write(trunk_dir.join("000001"), &trunk).expect("trunk file");
    std::fs::create_dir_all(a_config.base_path.join("data/sync")).expect("sync dir");
    let binlog: String = names.iter().map(|n| format!("{mtime} C {n}\n")).collect();
    std::fs::write(a_config.base_path.join("data/sync/binlog.000"), binlog).expect("binlog");
    g.add(a_config).await;

    let mut b_config = g.config(B);
    b_config.store_paths = vec![g.dir.path().join("disk-of-b")];
    let b_trunk = b_config.store_paths[0].join("data/00/00/000001");
    g.add(b_config.clone()).await;
    // B copies both into its own trunk file; then loses its disk.
    // (and knows its first full copy done, so a lost disk is recovered, not copied anew)
    let init_flag = b_config.base_path.join("data/.data_init_flag");
    wait_until(
        "B holds the trunk files",
        Duration::from_secs(60),
        async || {
            std::fs::read(&b_trunk).is_ok_and(|t| t.len() >= 4096 + 24 + 6)
                && std::fs::read_to_string(&init_flag).is_ok_and(|f| f.contains("sync_old_done=1"))
        },
    )
    .await;
    let b = g.members.pop().expect("B");
    b.stop(Duration::from_secs(2)).await;
    std::fs::remove_dir_all(b_config.store_paths[0].join("data")).expect("wipe B's disk");
    g.add(b_config.clone()).await;
    let (a, b) = (g.member(A), g.member(B));
    wait_until(
        "B recovered and active",
        Duration::from_secs(60),
        async || {
            std::fs::read(&b_trunk).is_ok_and(|t| t.len() >= 4096 + 24 + 6)
                && !b_config.store_paths[0]
                    .join("data")
                    .join(FLAG_FILE)
                    .exists()
                && b.node.is_active_everywhere()
        },
    )
    .await;
    assert_eq!(
        served(&a.node, "FetchOnePathBinlog"),
        1,
        "B rebuilt its path by recovery"
    );
    // Same bytes in the same slots as on A, and B serves them.
    let on_b = std::fs::read(&b_trunk).expect("B's trunk file");
    for (slot, data, _) in &files {
        let (at, end) = (slot.offset as usize, slot.offset as usize + 24 + data.len());
        assert_eq!(on_b[at..end], trunk[at..end]);
    }
    let mut conn = fdfs_node::client::Conn::connect(
        b.addr,
        Duration::from_secs(2),
        Duration::from_secs(5),
        None,
    )
    .await
    .expect("connect to B");
    for (name, (_, data, _)) in names.iter().zip(&files) {
        let req = fdfs_node::proto::storage::DownloadRequest {
            offset: 0,
            length: 0,
            group: "group1".into(),
            remote_filename: name.to_string(),
        };
        let (status, body) = conn
            .call(
                fdfs_node::proto::Command::DownloadFile,
                &req.encode(),
                1 << 20,
            )
            .await
            .expect("download from B");
        assert_eq!((status, &body), (fdfs_node::proto::Status::Ok, data));
    }
}
