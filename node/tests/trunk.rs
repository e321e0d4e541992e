//! Trunk storage in a group of two real members on loopback: the tracker chooses a trunk
//! server, small uploads on either member go into slots it hands out, the files reach
//! both members, deleted slots are given again, and a trunk server that goes away leaves
//! no slot given twice.

mod common;

use common::{Group, wait_until};

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use fdfs_node::config::{TrackerConfig, TrunkConfig};
use fdfs_node::fileid::{FileId, TrunkSlot};
use fdfs_node::proto::storage::UploadHead;
use fdfs_node::proto::trunk::{TrunkAllocRequest, TrunkBlock, TrunkBlockRequest};
use fdfs_node::proto::{Command, Header, Status, StorageStatus};
use fdfs_node::storage::trunking::TrunkServer;

const A: &str = "127.0.0.2";
const B: &str = "127.0.0.4";
const TRUNK_FILE: u32 = 4 * 1024 * 1024;

/// Trunk storage on, 256 B to 64 KiB slots in 4 MiB trunk files.
fn trunk_on() -> TrunkConfig {
    TrunkConfig {
        use_trunk_file: true,
        slot_min_size: 256,
        slot_max_size: 64 * 1024,
        trunk_alloc_alignment_size: 256,
        trunk_file_size: TRUNK_FILE,
        ..TrunkConfig::default()
    }
}

async fn start_group(check_active_interval: u64) -> Group {
    start_group_with(check_active_interval, trunk_on()).await
}

async fn start_group_with(check_active_interval: u64, trunk: TrunkConfig) -> Group {
    let tracker = TrackerConfig {
        check_active_interval,
        trunk,
        ..Default::default()
    };
    let mut g = Group(common::TestGroup::start(tracker, 25000).await);
    // A alone first: the tracker keeps the first writable member it elects, so B must not
    // turn ACTIVE before A does.
    g.add_member(A).await;
    wait_until("A ACTIVE", Duration::from_secs(30), async || {
        g.status_of(A) == Some(StorageStatus::Active)
    })
    .await;
    g.add_member(B).await;
    g.wait_trunk_server(A).await;
    g
}

impl Group {
    /// Waits until the tracker names `ip` the trunk server, it knows so, and every other
    /// running member knows where to ask, with both members ACTIVE.
    async fn wait_trunk_server(&self, ip: &str) {
        let server = self.member(ip).addr;
        wait_until(
            "the trunk server known to all",
            Duration::from_secs(60),
            async || {
                let chosen = {
                    let reg = self.tracker.tracker.registry();
                    reg.groups().get("group1").is_some_and(|g| {
                        g.trunk.server.as_deref() == Some(ip)
                            && g.members
                                .values()
                                .filter(|m| m.status == StorageStatus::Active)
                                .count()
                                == self.members.len()
                    })
                };
                chosen
                    && self.members.iter().all(|m| {
                        let ready = if m.addr == server {
                            m.node.trunk.serving()
                        } else {
                            m.node.trunk.server() == Some(TrunkServer::Peer(server))
                        };
                        ready && m.node.trunk.params().is_some()
                    })
            },
        )
        .await;
    }

    async fn upload_to(&self, ip: &str, data: &[u8]) -> FileId {
        let head = UploadHead {
            store_path_index: 0xFF,
            file_size: data.len() as u64,
            ext: "jpg".into(),
        };
        let mut reader = data;
        self.client
            .upload_to(self.member(ip).addr, head, &mut reader)
            .await
            .expect("upload")
    }

    /// The trunk binlog member `ip` keeps as a trunk server.
    fn own_trunk_binlog(&self, ip: &str) -> std::path::PathBuf {
        self.member(ip)
            .node
            .config
            .base_path
            .join("data/trunk/binlog")
    }

    /// The trunk binlog a trunk server pushed to member `ip`.
    fn pushed_trunk_binlog(&self, ip: &str) -> std::path::PathBuf {
        self.member(ip)
            .node
            .config
            .base_path
            .join("data/trunk/binlog.pushed")
    }

    /// Uploads `content(i)` for each `i` in `range` to `ip`, keeping each file and its bytes.
    async fn upload_each(
        &self,
        ip: &str,
        range: std::ops::Range<usize>,
        files: &mut Vec<(FileId, Vec<u8>)>,
    ) {
        for i in range {
            let data = content(i);
            files.push((self.upload_to(ip, &data).await, data));
        }
    }

    async fn download_from(&self, addr: SocketAddr, id: &FileId) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        self.client
            .download_from(addr, id, 0, 0, &mut out)
            .await
            .ok()
            .map(|_| out)
    }

    /// Waits until every running member serves each file with its content.
    async fn wait_everywhere(&self, files: &[(FileId, Vec<u8>)]) {
        for (id, data) in files {
            for m in &self.members {
                wait_until(
                    "a file on every member",
                    Duration::from_secs(60),
                    async || {
                        self.download_from(m.addr, id).await.as_deref() == Some(data.as_slice())
                    },
                )
                .await;
            }
        }
    }

    /// No two files share a byte of a trunk file, and every member serves every file.
    async fn check_converged(&self, files: &[(FileId, Vec<u8>)]) {
        let ids: Vec<&FileId> = files.iter().map(|(id, _)| id).collect();
        assert_apart(&ids);
        self.wait_everywhere(files).await;
    }

    async fn wait_gone(&self, id: &FileId) {
        for m in &self.members {
            wait_until("a deleted file gone", Duration::from_secs(60), async || {
                self.download_from(m.addr, id).await.is_none()
            })
            .await;
        }
    }
}

fn content(i: usize) -> Vec<u8> {
    let len = [10, 100, 232, 233, 1000, 4096, 30_000, 60_000][i % 8] + i;
    (0..len).map(|j| ((i * 37 + j * 11) % 253) as u8).collect()
}

fn slot_of(id: &FileId) -> TrunkSlot {
    id.remote.trunk_slot().expect("a trunk-stored file")
}

/// No two files share a byte of a trunk file.
fn assert_apart(ids: &[&FileId]) {
    let slots: Vec<(u8, u8, u8, TrunkSlot)> = ids
        .iter()
        .map(|id| {
            (
                id.remote.store_path,
                id.remote.hh,
                id.remote.ll,
                slot_of(id),
            )
        })
        .collect();
    for (i, x) in slots.iter().enumerate() {
        for y in &slots[i + 1..] {
            let same_file = x.0 == y.0 && x.3.id == y.3.id;
            let apart = x.3.offset + x.3.size <= y.3.offset || y.3.offset + y.3.size <= x.3.offset;
            assert!(!same_file || apart, "{x:?} and {y:?} overlap");
            if same_file {
                assert_eq!((x.1, x.2), (y.1, y.2), "one trunk file, one directory");
            }
        }
    }
}

fn trunk_file(root: &Path, id: &FileId) -> std::path::PathBuf {
    root.join(format!(
        "data/{:02X}/{:02X}/{:06}",
        id.remote.hh,
        id.remote.ll,
        slot_of(id).id
    ))
}

#[tokio::test]
async fn small_uploads_on_either_member_go_into_the_trunk_servers_slots_and_converge() {
    let g = start_group(100).await;
    let mut files = Vec::new();
    for i in 0..24 {
        let data = content(i);
        let id = g.upload_to(if i % 2 == 0 { A } else { B }, &data).await;
        // 24-byte header plus the bytes, rounded up to 256, never below 256.
        let want = (24 + data.len() as u32).div_ceil(256).max(1) * 256;
        assert_eq!(slot_of(&id).size, want, "{} bytes", data.len());
        assert_eq!(id.remote.to_string().len(), 60);
        files.push((id, data));
    }
    // A file whose slot would pass slot_max_size is stored on its own.
    let big = vec![7u8; 64 * 1024];
    let plain = g.upload_to(B, &big).await;
    assert_eq!(plain.remote.trunk_slot(), None);
    assert_eq!(plain.remote.to_string().len(), 44);
    g.check_converged(&files).await;
    g.wait_everywhere(&[(plain, big)]).await;

    // The trunk file is FastDFS's: full length on the trunk server, the slot header and
    // bytes at the offset the name gives, on both members.
    let (first, data) = &files[0];
    for m in &g.members {
        let raw = std::fs::read(trunk_file(&m.node.config.base_path, first)).expect("trunk file");
        let at = slot_of(first).offset as usize;
        assert_eq!(raw[at], b'F');
        assert_eq!(&raw[at + 5..at + 9], &(data.len() as u32).to_be_bytes());
        assert_eq!(&raw[at + 24..at + 24 + data.len()], data.as_slice());
    }
    let on_server = trunk_file(&g.member(A).node.config.base_path, first);
    assert_eq!(
        std::fs::metadata(on_server).expect("trunk").len(),
        u64::from(TRUNK_FILE)
    );
    let binlog =
        std::fs::read_to_string(g.own_trunk_binlog(A)).expect("trunk binlog on the trunk server");
    assert!(
        binlog.lines().all(|l| l.split(' ').count() == 8),
        "{binlog}"
    );
    assert!(
        !g.own_trunk_binlog(B).exists(),
        "only the trunk server keeps one"
    );

    // Deleted on either member: gone from both, and the slots are given again.
    let mut freed = Vec::new();
    for (id, _) in files.drain(..8) {
        g.client.delete(&id).await.expect("delete");
        g.wait_gone(&id).await;
        freed.push(slot_of(&id));
    }
    for i in 0..8 {
        let data = content(i);
        let id = g.upload_to(if i % 3 == 0 { B } else { A }, &data).await;
        assert!(
            freed.contains(&slot_of(&id)),
            "{:?} is not a freed slot",
            slot_of(&id)
        );
        files.push((id, data));
    }
    g.check_converged(&files).await;

    // The trackers show who the trunk server is, and its free trunk space.
    let stats = g.client.list_storages("group1").await.expect("storages");
    let servers: Vec<(String, bool)> = stats
        .iter()
        .map(|s| (s.ip.clone(), s.if_trunk_server))
        .collect();
    assert_eq!(servers, vec![(A.into(), true), (B.into(), false)]);
    wait_until(
        "free trunk space reported",
        Duration::from_secs(30),
        async || {
            let groups = g.client.list_groups().await.expect("groups");
            // The leader knows trunk file ids reserved past the one made (1): 4 at a time.
            groups[0].trunk_free_mb == 3 && groups[0].current_trunk_file_id == 4
        },
    )
    .await;
    // The trunk server's metrics show its trunk space; the other member's are zero.
    wait_until("trunk metrics", Duration::from_secs(30), async || {
        let text = g.member(A).node.metrics.render();
        let value = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse::<u64>().ok())
        };
        value("fdfs_storage_trunk_file_id") == Some(1)
            && value("fdfs_storage_trunk_free_bytes").is_some_and(|b| b > 3 << 20 && b < 4 << 20)
            && value("fdfs_storage_trunk_free_blocks").is_some_and(|n| n >= 1)
    })
    .await;
    let other = g.member(B).node.metrics.render();
    assert!(
        other.contains("fdfs_storage_trunk_free_bytes 0\n"),
        "{other}"
    );
}

/// Trunk files (six-digit names) under a store path.
fn trunk_files_under(root: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for hh in std::fs::read_dir(root.join("data"))
        .expect("data")
        .flatten()
    {
        let Ok(lls) = std::fs::read_dir(hh.path()) else {
            continue;
        };
        for ll in lls.flatten() {
            let Ok(entries) = std::fs::read_dir(ll.path()) else {
                continue;
            };
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.len() == 6 && name.bytes().all(|b| b.is_ascii_digit()) {
                    out.push(e.path());
                }
            }
        }
    }
    out
}

#[tokio::test]
async fn the_trunk_server_makes_files_ahead_compacts_on_schedule_and_pushes_its_binlog() {
    let every_second = fdfs_node::config::TimeOfDay { hour: 0, minute: 0 };
    let g = start_group_with(
        100,
        TrunkConfig {
            trunk_create_file_advance: true,
            trunk_create_file_time_base: every_second,
            trunk_create_file_interval: 1,
            trunk_create_file_space_threshold: 2 * u64::from(TRUNK_FILE),
            trunk_compress_binlog_interval: 1,
            trunk_compress_binlog_time_base: every_second,
            ..trunk_on()
        },
    )
    .await;
    let server = g.member(A);
    // Before any upload, two whole trunk files are made ahead of need, and no more.
    wait_until(
        "trunk files made ahead",
        Duration::from_secs(30),
        async || {
            server
                .node
                .trunk
                .own_figures()
                .is_some_and(|f| f.free_bytes == 2 * u64::from(TRUNK_FILE))
        },
    )
    .await;
    let made = trunk_files_under(&server.node.config.base_path);
    assert_eq!(made.len(), 2, "{made:?}");
    for f in &made {
        assert_eq!(
            std::fs::metadata(f).expect("trunk").len(),
            u64::from(TRUNK_FILE)
        );
    }

    // Uploads into those files, and deletes.
    let mut files = Vec::new();
    g.upload_each(A, 0..10, &mut files).await;
    g.upload_each(B, 10..20, &mut files).await;
    g.check_converged(&files).await;
    assert!(
        files.iter().all(|(id, _)| slot_of(id).id <= 2),
        "no trunk file made beyond those made ahead"
    );
    for (id, _) in files.drain(..12) {
        g.client.delete(&id).await.expect("delete");
    }
    // The scheduled compaction leaves one line per free block (after the newest id's
    // line), and the other member's copy of the binlog, pushed with TRUNK_SYNC_BINLOG and
    // started again with TRUNCATE_BINLOG_FILE after each compaction, is the same.
    let pushed = g.pushed_trunk_binlog(B);
    wait_until(
        "a compacted binlog, pushed whole",
        Duration::from_secs(60),
        async || {
            let Some(figures) = server.node.trunk.own_figures() else {
                return false;
            };
            let own = std::fs::read(g.own_trunk_binlog(A)).unwrap_or_default();
            let lines = own.iter().filter(|&&b| b == b'\n').count();
            lines == figures.free_blocks + 1 && std::fs::read(&pushed).ok() == Some(own)
        },
    )
    .await;
    let text = std::fs::read_to_string(&pushed).expect("pushed binlog");
    assert!(text.lines().skip(1).all(|l| l.contains(" A ")), "{text}");
    g.wait_everywhere(&files).await;
}

#[tokio::test]
async fn a_trunk_server_that_goes_away_leaves_no_slot_given_twice() {
    let mut g = start_group(3).await;
    let mut files = Vec::new();
    for i in 0..12 {
        let data = content(i);
        files.push((
            g.upload_to(if i % 2 == 0 { A } else { B }, &data).await,
            data,
        ));
    }
    g.wait_everywhere(&files).await;
    wait_until(
        "the trunk file id reported",
        Duration::from_secs(30),
        async || {
            let reg = g.tracker.tracker.registry();
            reg.groups()
                .get("group1")
                .is_some_and(|g| g.trunk.file_id == 4)
        },
    )
    .await;

    // The trunk server stops. While B has not heard of a new one, its small uploads are
    // stored as files of their own; then B becomes the trunk server and numbers its trunk
    // files past the one A made.
    let a = g.members.remove(0);
    let a_config = a.node.config.clone();
    a.stop(Duration::from_secs(2)).await;
    let data = content(100);
    let id = g.upload_to(B, &data).await;
    let mut plain = Vec::new();
    if id.remote.trunk_slot().is_none() {
        plain.push((id, data));
    } else {
        // B was already told it is the trunk server.
        assert!(slot_of(&id).id > 4);
        files.push((id, data));
    }
    g.wait_trunk_server(B).await;
    for i in 12..20 {
        let data = content(i);
        let id = g.upload_to(B, &data).await;
        assert!(
            slot_of(&id).id > 1,
            "B made trunk file {} again",
            slot_of(&id).id
        );
        files.push((id, data));
    }

    // A comes back on the same data as a plain member, and takes its slots from B.
    let a = fdfs_node::storage::start(a_config)
        .await
        .expect("restart A");
    g.members.insert(0, a);
    g.wait_trunk_server(B).await;
    g.upload_each(A, 20..28, &mut files).await;
    g.check_converged(&files).await;
    g.wait_everywhere(&plain).await;

    // SET_TRUNK_SERVER (94) moves it back to A.
    let mut body = b"group1".to_vec();
    body.resize(16, 0);
    body.extend_from_slice(A.as_bytes());
    let (status, reply) = g
        .client
        .tracker_call(Command::ServerSetTrunkServer, &body)
        .await
        .expect("set trunk server");
    assert_eq!(status, Status::Ok);
    assert_eq!(reply, [A.as_bytes(), &[0]].concat());
    g.wait_trunk_server(A).await;
    g.upload_each(B, 28..34, &mut files).await;
    g.check_converged(&files).await;
}

/// One raw request from `from`; the reply's status and body.
async fn raw(
    from: &str,
    to: SocketAddr,
    cmd: Command,
    status: u8,
    body: &[u8],
) -> (Status, Vec<u8>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .bind(SocketAddr::new(from.parse().expect("ip"), 0))
        .expect("bind");
    let mut s = socket.connect(to).await.expect("connect");
    let header = Header {
        body_len: body.len() as u64,
        cmd,
        status,
    };
    s.write_all(&header.encode()).await.expect("header");
    s.write_all(body).await.expect("body");
    let mut h = [0u8; 10];
    s.read_exact(&mut h).await.expect("reply header");
    let reply = Header::decode(&h, 1 << 20).expect("header");
    let mut out = vec![0u8; reply.body_len as usize];
    s.read_exact(&mut out).await.expect("reply body");
    (reply.status(), out)
}

/// Two deletes of one trunk-stored file at once (a client's retry on another connection):
/// one succeeds, the other finds nothing, and the slot goes back once: the files uploaded
/// after never share a byte.
#[tokio::test]
async fn two_deletes_of_one_file_hand_its_slot_back_once() {
    use fdfs_node::proto::query::FileRequest;
    let g = start_group(100).await;
    let to = g.member(A).addr;
    let mut kept = Vec::new();
    for i in 0..30 {
        let doomed = g.upload_to(A, &content(i)).await;
        let body = FileRequest {
            group: "group1".into(),
            remote_filename: doomed.remote.to_string(),
        }
        .encode();
        let (first, second) = tokio::join!(
            raw(A, to, Command::DeleteFile, 0, &body),
            raw(A, to, Command::DeleteFile, 0, &body)
        );
        let done = [first.0, second.0]
            .iter()
            .filter(|s| **s == Status::Ok)
            .count();
        assert_eq!(done, 1, "{:?} / {:?}", first.0, second.0);
        // Two uploads of the same size: a slot handed back twice would go to both.
        for _ in 0..2 {
            kept.push(g.upload_to(A, &content(i)).await);
        }
    }
    assert_apart(&kept.iter().collect::<Vec<_>>());
}

#[tokio::test]
async fn bad_trunk_requests_get_a_status_and_change_nothing() {
    let g = start_group(100).await;
    let data = content(5);
    let kept = g.upload_to(B, &data).await;
    let server = g.member(A).addr;
    let ask = |group: &str, size: u32, store_path: u8| {
        TrunkAllocRequest {
            group: group.into(),
            size,
            store_path,
        }
        .encode()
    };

    // A member asking the trunk server gets a slot past the one in use.
    let (status, reply) = raw(
        B,
        server,
        Command::TrunkAllocSpace,
        0,
        &ask("group1", 300, 0),
    )
    .await;
    assert_eq!(status, Status::Ok);
    let given = TrunkBlock::decode(&reply).expect("trunk info");
    assert_eq!(given.size, 512);
    assert_ne!(given.slot(), slot_of(&kept));

    let einval = [
        ("another group", B, server, ask("group2", 300, 0)),
        ("a store path it lacks", B, server, ask("group1", 300, 3)),
        (
            "too large for a slot",
            B,
            server,
            ask("group1", 64 * 1024 + 1, 0),
        ),
        (
            "a length that lies",
            B,
            server,
            ask("group1", 300, 0)[..20].to_vec(),
        ),
        (
            "not the trunk server",
            A,
            g.member(B).addr,
            ask("group1", 300, 0),
        ),
    ];
    for (what, from, to, body) in einval {
        let (status, _) = raw(from, to, Command::TrunkAllocSpace, 0, &body).await;
        assert_eq!(status, Status::InvalidArgument, "{what}");
    }

    // The slot given above, returned unwritten, is free again; returned twice, refused.
    let back = TrunkBlockRequest {
        group: "group1".into(),
        block: given,
    }
    .encode();
    let (status, _) = raw(
        B,
        server,
        Command::TrunkAllocConfirm,
        u8::from(Status::Io),
        &back,
    )
    .await;
    assert_eq!(status, Status::Ok);
    let (status, _) = raw(B, server, Command::TrunkFreeSpace, 0, &back).await;
    assert_eq!(status, Status::AlreadyExists);
    // A block past the end of any trunk file (4 MiB here) is refused.
    let past_end = TrunkBlockRequest {
        group: "group1".into(),
        block: TrunkBlock {
            offset: TRUNK_FILE - 256,
            size: u32::MAX - TRUNK_FILE,
            ..given
        },
    }
    .encode();
    let (status, _) = raw(B, server, Command::TrunkFreeSpace, 0, &past_end).await;
    assert_eq!(status, Status::InvalidArgument);

    // The trunk binlog exchanges of FastDFS trunk servers and trackers (30-33).
    let member = g.member(B).addr;
    let own_binlog = g.own_trunk_binlog(A);
    let (status, size) = raw(B, server, Command::TrunkGetBinlogSize, 0, &[]).await;
    assert_eq!(status, Status::Ok);
    let size = u64::from_be_bytes(size.try_into().expect("8 bytes"));
    assert_eq!(size, std::fs::metadata(&own_binlog).expect("binlog").len());
    let lines = b"1796564653 A 0 0 0 9 0 4194304\n";
    let (status, _) = raw(A, server, Command::TrunkSyncBinlog, 0, lines).await;
    assert_eq!(
        status,
        Status::InvalidArgument,
        "the trunk server takes no push"
    );
    let (status, _) = raw(A, member, Command::TrunkSyncBinlog, 0, lines).await;
    assert_eq!(status, Status::Ok);
    let pushed = g.pushed_trunk_binlog(B);
    assert_eq!(std::fs::read(&pushed).expect("pushed copy"), lines);
    for (what, cmd, to, body) in [
        ("an empty push", Command::TrunkSyncBinlog, member, &b""[..]),
        (
            "a size request with a body",
            Command::TrunkGetBinlogSize,
            server,
            &b"x"[..],
        ),
        (
            "a truncate to the trunk server",
            Command::TrunkTruncateBinlogFile,
            server,
            &b""[..],
        ),
        (
            "marks deleted on the trunk server",
            Command::TrunkDeleteBinlogMarks,
            server,
            &b""[..],
        ),
    ] {
        let (status, _) = raw(B, to, cmd, 0, body).await;
        assert_eq!(status, Status::InvalidArgument, "{what}");
    }
    let (status, _) = raw(A, member, Command::TrunkDeleteBinlogMarks, 0, &[]).await;
    assert_eq!(status, Status::Ok);
    let (status, _) = raw(A, member, Command::TrunkTruncateBinlogFile, 0, &[]).await;
    assert_eq!(status, Status::Ok);
    assert!(!pushed.exists(), "truncated");
    // A pushed copy is never taken for the member's own trunk binlog.
    assert!(!g.own_trunk_binlog(B).exists());

    // The trunk server still serves, and the file stored before is intact on both.
    // (234 bytes: a 512-byte slot, like the one returned.)
    let again = g.upload_to(B, &content(2)).await;
    assert_eq!(
        slot_of(&again),
        given.slot(),
        "the returned slot is given again"
    );
    g.wait_everywhere(&[(kept, data), (again, content(2))])
        .await;
}
