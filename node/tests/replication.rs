//! Group replication between two real storages on loopback: a new member gets a
//! full copy, then every change on one member reaches the other.

mod common;

use common::{Group, wait_until};

use std::path::{Path, PathBuf};
use std::time::Duration;

use fdfs_node::client::{Client, ClientConfig};
use fdfs_node::config::TrackerConfig;
use fdfs_node::fileid::FileId;
use fdfs_node::proto::StorageStatus;
use fdfs_node::storage::RunningStorage;

/// A tracker and member A (127.0.0.2), ACTIVE; tests add the others.
async fn start_group() -> Group {
    let mut g = Group(common::TestGroup::start(TrackerConfig::default(), 24000).await);
    g.add_member("127.0.0.2").await;
    g.wait_all_active().await;
    g
}

/// The group of [`start_group`] and a second member on `ip`, both ACTIVE.
/// A group of two whose first member knows the second, and the second's address: the
/// peer raw sync requests are sent from.
async fn group_with_peer() -> (Group, std::net::IpAddr) {
    let mut g = start_group().await;
    g.add_member("127.0.0.3").await;
    let peer = g.members[1].addr.ip();
    g.wait_member_known(0, peer).await;
    (g, peer)
}

async fn start_pair(ip: &str) -> Group {
    let mut g = start_group().await;
    g.add_member(ip).await;
    g.wait_all_active().await;
    g
}

impl Group {
    /// Waits until member `i` has the group's member at `ip` in its peer list (from its
    /// trackers' heartbeat replies).
    async fn wait_member_known(&self, i: usize, ip: std::net::IpAddr) {
        let node = self.members[i].node.clone();
        wait_until(
            "the member known to its peer",
            Duration::from_secs(30),
            async || node.replication.peers().iter().any(|p| p.addr.ip() == ip),
        )
        .await;
    }

    /// Waits until the tracker holds the member at `ip` OFFLINE (after it stopped): from
    /// then on uploads are no longer routed to it.
    async fn wait_offline(&self, ip: &str) {
        wait_until(
            "the stopped member OFFLINE at the tracker",
            Duration::from_secs(10),
            async || self.status_of(ip) == Some(StorageStatus::Offline),
        )
        .await;
    }

    /// Stops the member started last; its configuration, to start it again.
    async fn stop_last(&mut self) -> fdfs_node::config::StorageConfig {
        let member = self.members.pop().expect("a member");
        let config = member.node.config.clone();
        member.stop(Duration::from_secs(2)).await;
        config
    }

    /// [`Self::upload_contents`], then waits until every file is on members 0 and 1.
    async fn upload_to_both(&self, range: std::ops::Range<usize>) -> Vec<FileId> {
        let files = self.upload_contents(range).await;
        wait_until("files on both", Duration::from_secs(30), async || {
            files
                .iter()
                .all(|id| self.path_on(0, id).exists() && self.path_on(1, id).exists())
        })
        .await;
        files
    }

    /// Uploads `content(i)` for each `i` of `range`, one after another; their ids.
    async fn upload_contents(&self, range: std::ops::Range<usize>) -> Vec<FileId> {
        let mut ids = Vec::with_capacity(range.len());
        for i in range {
            ids.push(
                self.client
                    .upload_bytes(&content(i), "bin", None)
                    .await
                    .expect("upload"),
            );
        }
        ids
    }

    /// An appender file holding `content`, once both members have it.
    async fn appender_on_both(&self, content: &[u8]) -> FileId {
        let id = self
            .client
            .upload_appender_reader(content, content.len() as u64, "bin", None)
            .await
            .expect("appender");
        wait_until(
            "the appender on both members",
            Duration::from_secs(60),
            async || {
                (0..2).all(|m| std::fs::read(self.path_on(m, &id)).is_ok_and(|b| b == content))
            },
        )
        .await;
        id
    }

    /// Appends `tail` to `id` (retried while the source gets over a cut connection), then
    /// waits until both members hold exactly `before` followed by `tail`.
    async fn append_reaches_both(&self, id: &FileId, before: &[u8], tail: &[u8]) {
        wait_until(
            "an append after the cut",
            Duration::from_secs(30),
            async || self.client.append_bytes(id, tail).await.is_ok(),
        )
        .await;
        let want = [before, tail].concat();
        wait_until(
            "both members hold the original plus the append",
            Duration::from_secs(60),
            async || (0..2).all(|m| std::fs::read(self.path_on(m, id)).is_ok_and(|b| b == want)),
        )
        .await;
    }

    /// A client of the group's tracker that concurrent tasks can share.
    async fn shared_client(&self) -> std::sync::Arc<Client> {
        std::sync::Arc::new(
            Client::new(ClientConfig::new(vec![self.tracker.addr.to_string()]))
                .await
                .expect("client"),
        )
    }

    fn path_on(&self, member: usize, id: &FileId) -> PathBuf {
        self.members[member]
            .node
            .config
            .base_path
            .join(id.remote.relative_path())
    }
}

fn content(i: usize) -> Vec<u8> {
    let len = match i % 10 {
        0 => 300_000 + i,
        1..=3 => 0,
        _ => 100 + i * 7 % 5000,
    };
    (0..len).map(|j| ((i * 31 + j * 7) % 251) as u8).collect()
}

#[tokio::test]
async fn two_members_converge_on_every_change() {
    let mut g = start_group().await;
    // Files uploaded before the second member exists reach it through the full copy.
    let mut ids = Vec::new();
    for i in 0..300 {
        ids.push((
            g.client
                .upload_bytes(&content(i), "bin", None)
                .await
                .expect("upload"),
            crc32fast::hash(&content(i)),
        ));
    }
    g.add_member("127.0.0.3").await;
    g.wait_all_active().await;
    // And files uploaded afterwards, to either member, through the push.
    for i in 300..2000 {
        ids.push((
            g.client
                .upload_bytes(&content(i), "bin", None)
                .await
                .expect("upload"),
            crc32fast::hash(&content(i)),
        ));
    }
    wait_until(
        "all 2000 files on both members",
        Duration::from_secs(120),
        async || {
            ids.iter()
                .all(|(id, _)| g.path_on(0, id).exists() && g.path_on(1, id).exists())
        },
    )
    .await;
    for (id, crc) in &ids {
        for m in 0..2 {
            let bytes = std::fs::read(g.path_on(m, id)).expect("read");
            assert_eq!(crc32fast::hash(&bytes), *crc, "{id} differs on member {m}");
        }
    }
    let sources: std::collections::BTreeSet<String> = ids
        .iter()
        .map(|(id, _)| id.remote.core().expect("core").source.to_string())
        .collect();
    assert_eq!(sources.len(), 2, "uploads went to both members");

    // Deletes, appends, modifies, truncates, renames and metadata propagate too.
    let (gone, _) = ids[5].clone();
    g.client.delete(&gone).await.expect("delete");
    let app = g
        .client
        .upload_appender_reader(&b"start-"[..], 6, "log", None)
        .await
        .expect("appender");
    g.client
        .append_bytes(&app, b"appended")
        .await
        .expect("append");
    g.client
        .modify_bytes(&app, 0, b"START")
        .await
        .expect("modify");
    g.client.truncate(&app, 12).await.expect("truncate");
    let (with_meta, _) = ids[7].clone();
    g.client
        .set_metadata(
            &with_meta,
            &fdfs_node::storage::meta::encode_pairs([("k", "v")]),
            false,
        )
        .await
        .expect("meta");
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
    let meta_path = |m: usize| PathBuf::from(format!("{}-m", g.path_on(m, &with_meta).display()));
    wait_until(
        "changes on both members",
        Duration::from_secs(60),
        async || {
            (0..2).all(|m| {
                !g.path_on(m, &gone).exists()
                    && std::fs::read(g.path_on(m, &app))
                        .map(|b| b == b"START-append")
                        .unwrap_or(false)
                    && std::fs::read(meta_path(m))
                        .map(|b| b == b"k\x02v")
                        .unwrap_or(false)
                    && g.path_on(m, &renamed).exists()
                    && !g.path_on(m, &app2).exists()
            })
        },
    )
    .await;
    // Each member reports how far behind it is pushing to the other: nothing, now.
    wait_until("lag metrics at zero", Duration::from_secs(30), async || {
        let text = g.members[0].node.render_metrics();
        text.contains("fdfs_storage_sync_lag_bytes{peer=\"127.0.0.3\"} 0")
            && text.contains("fdfs_storage_sync_lag_seconds{peer=\"127.0.0.3\"} 0")
    })
    .await;
    let text = g.members[0].node.metrics.render();
    let pushed: u64 = text
        .lines()
        .find(|l| l.starts_with("fdfs_storage_synced_records_total{peer=\"127.0.0.3\"}"))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .expect("synced records metric");
    assert!(pushed >= 300, "A pushed {pushed} records to B");

    // The tracker sees both members change files and each fully caught up with the other.
    wait_until(
        "both members caught up in the cluster view",
        Duration::from_secs(30),
        async || {
            let view = g.tracker.tracker.cluster_view();
            let members = &view.groups[0].storages;
            members.len() == 2
                && members.iter().all(|m| {
                    m.last_source_update > 0
                        && m.last_sync_update > 0
                        && m.sync_lag_seconds == Some(0)
                        && m.sync_lag_bytes == Some(0)
                })
        },
    )
    .await;

    // FastDFS's sync byte counters: what each member sent, the other stored; the trackers
    // get them in BEAT, as `fdfs_monitor` shows them.
    use fdfs_node::proto::monitor::counter;
    let total_bytes: u64 = (0..2000).map(|i| content(i).len() as u64).sum();
    let local: Vec<_> = g.members.iter().map(|m| m.node.stats().counters).collect();
    for (from, to) in [(0, 1), (1, 0)] {
        assert_eq!(
            local[from][counter::SUCCESS_SYNC_OUT_BYTES],
            local[to][counter::SUCCESS_SYNC_IN_BYTES],
            "member {from} to member {to}"
        );
    }
    let sent: u64 = local
        .iter()
        .map(|c| c[counter::SUCCESS_SYNC_OUT_BYTES])
        .sum();
    assert!(
        sent >= total_bytes,
        "{sent} bytes replicated of {total_bytes} uploaded"
    );
    wait_until(
        "the counters at the tracker",
        Duration::from_secs(30),
        async || {
            let Ok(listed) = g.client.list_storages("group1").await else {
                return false;
            };
            g.members.iter().all(|m| {
                let now = m.node.stats().counters;
                listed.iter().any(|s| {
                    s.stats.counters[counter::SUCCESS_SYNC_IN_BYTES]
                        == now[counter::SUCCESS_SYNC_IN_BYTES]
                        && s.stats.counters[counter::SUCCESS_SYNC_OUT_BYTES]
                            == now[counter::SUCCESS_SYNC_OUT_BYTES]
                        && s.ip == m.node.config.bind.split(':').next().unwrap_or_default()
                })
            })
        },
    )
    .await;
    // Readiness asks the tracker what the peers still hold for each member (241): nothing
    // once they have converged, so both are ready.
    let tracker = g.tracker.addr;
    for m in &g.members {
        wait_until(
            "the peers' backlog read back",
            Duration::from_secs(30),
            async || m.node.behind_at(tracker) == Some(0),
        )
        .await;
        assert!(m.node.readiness().0, "{}", m.node.readiness().1);
    }
}

/// A's binlog on disk: every `binlog.NNN` file.
fn binlog_size(member: &RunningStorage) -> u64 {
    binlog_files(member)
        .iter()
        .map(|p| std::fs::metadata(p).expect("metadata").len())
        .sum()
}

/// A member's binlog files (`binlog.NNN`), in order.
fn binlog_files(member: &RunningStorage) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(member.node.disk.binlog().dir())
        .expect("binlog dir")
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_prefix("binlog."))
                .is_some_and(|n| n.len() == 3 && n.bytes().all(|b| b.is_ascii_digit()))
        })
        .collect();
    files.sort();
    files
}

/// What the tracker's cluster view says B has yet to receive, in bytes.
fn tracker_backlog_of_b(g: &Group) -> Option<u64> {
    let view = g.tracker.tracker.cluster_view();
    view.groups[0]
        .storages
        .iter()
        .find(|m| m.id == "127.0.0.4")
        .and_then(|m| m.sync_lag_bytes)
}

/// What A says B has yet to receive, in bytes.
fn backlog_of_a(g: &Group) -> Option<u64> {
    fdfs_node::storage::sync::backlog(&g.members[0].node)
        .into_iter()
        .find(|b| b.peer_id == "127.0.0.4")
        .map(|b| b.bytes)
}

#[tokio::test]
async fn a_restarted_member_catches_up_from_its_mark() {
    let mut g = start_pair("127.0.0.4").await;
    let first = g
        .client
        .upload_bytes(b"before the restart", "txt", None)
        .await
        .expect("upload");
    wait_until("first file on both", Duration::from_secs(30), async || {
        g.path_on(0, &first).exists() && g.path_on(1, &first).exists()
    })
    .await;
    wait_until(
        "A's push to B at the end of its binlog",
        Duration::from_secs(30),
        async || backlog_of_a(&g) == Some(0),
    )
    .await;
    // Stop member B, upload to A meanwhile, start B again on the same data. A's mark for B
    // is on disk first (saved once the push is quiet), so what follows starts from it.
    let binlog_before = binlog_size(&g.members[0]);
    let mark = g.members[0]
        .node
        .disk
        .binlog()
        .dir()
        .join(format!("127.0.0.4_{}.mark", g.members[1].addr.port()));
    wait_until(
        "A's mark for B saved",
        Duration::from_secs(30),
        async || mark_offset(&mark) == Some(binlog_before),
    )
    .await;
    let cfg = g.stop_last().await;
    g.wait_offline("127.0.0.4").await;
    let later = g.upload_contents(5000..5050).await;
    // What A has written since is what B lacks, and the trackers are told so.
    let behind = binlog_size(&g.members[0]) - binlog_before;
    assert!(behind > 50 * 40, "{behind} binlog bytes for 50 uploads");
    wait_until(
        "B's backlog at the tracker",
        Duration::from_secs(30),
        async || tracker_backlog_of_b(&g) == Some(behind),
    )
    .await;
    let rows = g
        .client
        .sync_backlog("group1")
        .await
        .expect("listing")
        .expect("this tracker lists backlogs");
    assert!(
        rows.iter().any(|r| r.source_id == "127.0.0.2"
            && r.backlog.peer_id == "127.0.0.4"
            && r.backlog.bytes == behind),
        "{rows:?}"
    );
    let b = fdfs_node::storage::start(cfg).await.expect("restart B");
    g.members.push(b);
    wait_until("B caught up", Duration::from_secs(60), async || {
        later.iter().all(|id| g.path_on(1, id).exists())
    })
    .await;
    wait_until(
        "no backlog left at the tracker",
        Duration::from_secs(30),
        async || tracker_backlog_of_b(&g) == Some(0),
    )
    .await;
    for (i, id) in later.iter().enumerate() {
        assert_eq!(
            std::fs::read(g.path_on(1, id)).expect("read"),
            content(i + 5000)
        );
    }
}

/// Both members restart, B a moment after A, A with FastDFS's default intervals (a beat
/// every 30 s, disk usage every 60 s): the list from A's first beat still shows B OFFLINE,
/// yet A pushes to B within seconds, having asked the trackers, not at its next beat.
#[tokio::test]
async fn a_member_joining_a_running_group_is_active_with_its_copy_before_the_next_beat() {
    // 30 s beats and disk reports, as by default: member lists come in beat replies, so
    // only the backlog ticks (1 s here) can bring the news sooner.
    let mut g = Group(common::TestGroup::start(TrackerConfig::default(), 24000).await);
    let slow_beats = |mut c: fdfs_node::config::StorageConfig| {
        (c.heart_beat_interval, c.stat_report_interval) = (30, 60);
        c
    };
    let a = slow_beats(g.config("127.0.0.2"));
    g.add(a).await;
    g.wait_all_active().await;
    let ids = g.upload_contents(7100..7104).await;

    let b = slow_beats(g.config("127.0.0.3"));
    g.add(b).await;
    // A's next beat is 30 s after its first, B's 30 s after it joined.
    wait_until(
        "B ACTIVE, with A's files, well before either member's next beat",
        Duration::from_secs(12),
        async || {
            g.status_of("127.0.0.3") == Some(StorageStatus::Active)
                && ids.iter().all(|id| g.path_on(1, id).exists())
        },
    )
    .await;
    assert_eq!(g.status_of("127.0.0.2"), Some(StorageStatus::Active));
}

#[tokio::test]
async fn a_peer_back_from_a_restart_is_pushed_to_before_the_next_beat() {
    let mut g = start_pair("127.0.0.3").await;
    let b_config = g.stop_last().await;
    let mut a_config = g.stop_last().await;
    g.wait_offline("127.0.0.3").await;

    (a_config.heart_beat_interval, a_config.stat_report_interval) = (30, 60);
    g.members.push(
        fdfs_node::storage::start(a_config)
            .await
            .expect("restart A"),
    );
    let a_node = g.members[0].node.clone();
    let b_in_a_list = move || {
        a_node
            .replication
            .peers()
            .into_iter()
            .find(|p| p.addr.ip().to_string() == "127.0.0.3")
            .map(|p| p.status)
    };
    wait_until("A lists B, OFFLINE", Duration::from_secs(10), async || {
        b_in_a_list() == Some(StorageStatus::Offline)
    })
    .await;
    g.members.push(
        fdfs_node::storage::start(b_config)
            .await
            .expect("restart B"),
    );
    g.wait_all_active().await;

    let ids = g.upload_contents(7000..7006).await;
    wait_until(
        "every file on both members well before A's next beat",
        Duration::from_secs(10),
        async || {
            ids.iter()
                .all(|id| g.path_on(0, id).exists() && g.path_on(1, id).exists())
        },
    )
    .await;
    assert_eq!(b_in_a_list(), Some(StorageStatus::Active));
}

#[tokio::test]
async fn a_new_member_gets_a_full_copy_before_it_serves_reads() {
    let mut g = start_pair("127.0.0.5").await;
    let mut ids = Vec::new();
    for i in 0..10_000 {
        let data = format!("file {i}").into_bytes();
        ids.push(
            g.client
                .upload_bytes(&data, "txt", None)
                .await
                .expect("upload"),
        );
    }
    let ids = std::sync::Arc::new(ids);
    // Readers hammer the group through the tracker while the third member joins.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut readers = Vec::new();
    for r in 0..4usize {
        let (ids, stop) = (ids.clone(), stop.clone());
        let client = Client::new(ClientConfig::new(vec![g.tracker.addr.to_string()]))
            .await
            .expect("client");
        readers.push(tokio::spawn(async move {
            let mut n = 0usize;
            let mut i = r * 7919;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                i = (i + 104_729) % ids.len();
                let want = format!("file {i}").into_bytes();
                let got = client.download_bytes(&ids[i], 0, 0).await;
                assert_eq!(
                    got.as_deref().ok(),
                    Some(want.as_slice()),
                    "read of {} failed: {got:?}",
                    ids[i]
                );
                n += 1;
            }
            n
        }));
    }
    g.add_member("127.0.0.6").await;
    g.wait_all_active().await;
    for id in ids.iter() {
        assert!(g.path_on(2, id).exists(), "{id} missing on the new member");
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut reads = 0;
    for r in readers {
        reads += r.await.expect("reader");
    }
    assert!(reads > 0);
}

/// A connection to `addr` from address `from`, as a peer on another host opens it.
async fn connect_from(from: std::net::IpAddr, addr: std::net::SocketAddr) -> tokio::net::TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .bind((from, 0).into())
        .expect("bind the source address");
    socket.connect(addr).await.expect("connect")
}

/// Sends one raw request on a fresh connection from `from`; the reply's status, or None
/// when the peer hung up.
async fn send(
    from: std::net::IpAddr,
    addr: std::net::SocketAddr,
    cmd: fdfs_node::proto::Command,
    body: &[u8],
) -> Option<fdfs_node::proto::Status> {
    use fdfs_node::proto::{HEADER_LEN, Header};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = connect_from(from, addr).await;
    let mut req = Header::request(cmd, body.len() as u64).encode().to_vec();
    req.extend_from_slice(body);
    s.write_all(&req).await.ok()?;
    let mut h = [0u8; HEADER_LEN];
    tokio::time::timeout(Duration::from_secs(10), s.read_exact(&mut h))
        .await
        .ok()?
        .ok()?;
    Some(Header::decode(&h, 0).expect("header").status())
}

/// SYNC_RENAME_FILE answers as FastDFS's storage_sync_rename_file: the new name
/// already present is EEXIST whether or not the old one is (a C sender that retries
/// a rename it already delivered then counts it done instead of re-sending the file).
#[tokio::test]
async fn a_rename_already_applied_answers_eexist() {
    use fdfs_node::proto::sync::SyncPair;
    use fdfs_node::proto::{Command, Status};

    let (g, peer) = group_with_peer().await;
    let addr = g.members[0].addr;
    let present = g
        .client
        .upload_bytes(b"renamed already", "txt", None)
        .await
        .expect("upload");
    let pair = |new: &str, old: &str| {
        SyncPair {
            timestamp: 1,
            group: "group1".into(),
            first: new.into(),
            second: old.into(),
        }
        .encode()
    };
    let missing = "M00/00/00/fwAAAmsHltmAfYkIAAAAZBVz5RY696.txt";
    let also_missing = "M00/00/00/fwAAAmsHltmEfYkIAAAAAAAAAAA696.txt";
    let present_name = present.remote.to_string();
    assert_eq!(
        send(
            peer,
            addr,
            Command::SyncRenameFile,
            &pair(&present_name, missing)
        )
        .await,
        Some(Status::AlreadyExists)
    );
    assert_eq!(
        send(
            peer,
            addr,
            Command::SyncRenameFile,
            &pair(missing, also_missing)
        )
        .await,
        Some(Status::NotFound)
    );
    assert_eq!(
        g.client.download_bytes(&present, 0, 0).await.expect("kept"),
        b"renamed already"
    );
}

/// The binlog lines of a member, all files together.
fn binlog_text(member: &RunningStorage) -> String {
    binlog_files(member)
        .iter()
        .map(|p| std::fs::read_to_string(p).expect("binlog"))
        .collect()
}

/// A file pushed again that is here already (placed before a crash kept its binlog line
/// from being written, say) is answered EEXIST and gets its replica line anyway: a full
/// copy from this member to a new one goes by those lines.
#[tokio::test]
async fn a_replica_pushed_again_gets_its_binlog_line() {
    use fdfs_node::proto::sync::SyncFileHead;
    use fdfs_node::proto::{Command, Status};

    let (g, peer) = group_with_peer().await;
    let addr = g.members[0].addr;
    let buff_size = g.members[0].node.config.buff_size as usize;
    // A small file (read whole before it is stored) and one larger than the buffer.
    for content in [
        b"small, here already".to_vec(),
        vec![7u8; 2 * buff_size + 3],
    ] {
        let id = g
            .client
            .upload_bytes(&content, "bin", None)
            .await
            .expect("upload");
        let name = id.remote.to_string();
        let line = format!(" c {name}\n");
        assert!(!binlog_text(&g.members[0]).contains(&line));
        let mut body = SyncFileHead {
            name_len: name.len() as u64,
            file_size: content.len() as u64,
            timestamp: 1_700_000_000,
            group: "group1".into(),
        }
        .encode();
        body.extend_from_slice(name.as_bytes());
        body.extend_from_slice(&content);
        assert_eq!(
            send(peer, addr, Command::SyncCreateFile, &body).await,
            Some(Status::AlreadyExists)
        );
        assert!(
            binlog_text(&g.members[0]).contains(&line),
            "no replica line for {name}"
        );
        assert_eq!(
            g.client.download_bytes(&id, 0, 0).await.expect("kept"),
            content
        );
    }
}

/// A peer that sends a sync for another group, a name outside the store, or a
/// body cut short: refused or dropped, and nothing on disk changes.
#[tokio::test]
async fn bad_sync_requests_change_nothing() {
    use fdfs_node::proto::sync::{SyncDelete, SyncFileHead};
    use fdfs_node::proto::{Command, Header, Status};
    use tokio::io::AsyncWriteExt;

    let (g, peer) = group_with_peer().await;
    let kept = g
        .client
        .upload_bytes(b"kept", "txt", None)
        .await
        .expect("upload");
    let addr = g.members[0].addr;
    let files_before = std::fs::read_dir(g.members[0].node.config.base_path.join("data/00/00"))
        .map(|d| d.count())
        .unwrap_or(0);
    let file = |group: &str, name: &str, content: &[u8]| {
        let mut b = SyncFileHead {
            name_len: name.len() as u64,
            file_size: content.len() as u64,
            timestamp: 1,
            group: group.into(),
        }
        .encode();
        b.extend_from_slice(name.as_bytes());
        b.extend_from_slice(content);
        b
    };
    let name = "M00/00/00/fwAAAmsHltmAfYkIAAAAZBVz5RY696.txt";
    assert_eq!(
        send(
            peer,
            addr,
            Command::SyncCreateFile,
            &file("group9", name, b"x")
        )
        .await,
        Some(Status::InvalidArgument)
    );
    assert_eq!(
        send(
            peer,
            addr,
            Command::SyncCreateFile,
            &file("group1", "M00/00/00/../../../../tmp/evil", b"x")
        )
        .await,
        Some(Status::InvalidArgument)
    );
    let del = SyncDelete {
        timestamp: 1,
        group: "group1".into(),
        name: format!("../{}", kept.remote),
    }
    .encode();
    assert_eq!(
        send(peer, addr, Command::SyncDeleteFile, &del).await,
        Some(Status::InvalidArgument)
    );
    // A truncate whose name length runs past any body.
    let mut lying = fdfs_node::proto::sync::SyncRangeHead {
        name_len: u64::MAX,
        a: 4,
        b: 1,
        timestamp: 1,
        group: "group1".into(),
    }
    .encode();
    lying.extend_from_slice(kept.remote.to_string().as_bytes());
    assert_eq!(
        send(peer, addr, Command::SyncTruncateFile, &lying).await,
        Some(Status::InvalidArgument)
    );
    // From an address that is no member of the group, even a well-formed sync is refused.
    let stranger: std::net::IpAddr = "127.0.0.9".parse().expect("ip");
    let good = file("group1", name, b"from a stranger");
    assert_eq!(
        send(stranger, addr, Command::SyncCreateFile, &good).await,
        Some(Status::AccessDenied)
    );
    let delete_kept = SyncDelete {
        timestamp: 1,
        group: "group1".into(),
        name: kept.remote.to_string(),
    }
    .encode();
    assert_eq!(
        send(stranger, addr, Command::SyncDeleteFile, &delete_kept).await,
        Some(Status::AccessDenied)
    );
    // A body shorter than announced: the peer hangs up mid-file.
    let mut s = connect_from(peer, addr).await;
    let full = file("group1", name, &[7u8; 100_000]);
    let mut req = Header::request(Command::SyncCreateFile, full.len() as u64)
        .encode()
        .to_vec();
    req.extend_from_slice(&full[..50_000]);
    s.write_all(&req).await.expect("write");
    drop(s);
    let target = g.members[0]
        .node
        .config
        .base_path
        .join("data/00/00/fwAAAmsHltmAfYkIAAAAZBVz5RY696.txt");
    let tmp = g.members[0].node.config.base_path.join("data/.tmp");
    wait_until(
        "partial sync discarded",
        Duration::from_secs(10),
        async || {
            std::fs::read_dir(&tmp)
                .map(|d| d.count() == 0)
                .unwrap_or(false)
        },
    )
    .await;
    assert!(!target.exists(), "a cut-off sync must not leave a file");
    assert_eq!(
        std::fs::read_dir(g.members[0].node.config.base_path.join("data/00/00"))
            .map(|d| d.count())
            .unwrap_or(0),
        files_before
    );
    assert_eq!(
        g.client.download_bytes(&kept, 0, 0).await.expect("kept"),
        b"kept"
    );
}

/// A sync whose body cannot be staged (its directory is gone) is answered before the body
/// is read: the connection must end there, or the body's bytes would be taken for requests
/// (here, one that deletes a stored file).
#[tokio::test]
async fn a_sync_body_that_cannot_be_staged_ends_the_connection() {
    use fdfs_node::proto::sync::{SyncDelete, SyncFileHead};
    use fdfs_node::proto::{Command, Header};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let (g, peer) = group_with_peer().await;
    let kept = g
        .client
        .upload_bytes(b"kept", "txt", None)
        .await
        .expect("upload");
    let member = &g.members[0].node.config;
    std::fs::remove_dir(member.base_path.join("data/03/03")).expect("an empty directory");
    let delete = SyncDelete {
        timestamp: 1,
        group: "group1".into(),
        name: kept.remote.to_string(),
    }
    .encode();
    let mut content = Header::request(Command::SyncDeleteFile, delete.len() as u64)
        .encode()
        .to_vec();
    content.extend_from_slice(&delete);
    // Larger than the buffer, so it would be staged in a temporary file.
    content.resize(2 * member.buff_size as usize, 0);
    let name = "M00/03/03/fwAAAmsHltmAfYkIAAAAZBVz5RY696.txt";
    let mut body = SyncFileHead {
        name_len: name.len() as u64,
        file_size: content.len() as u64,
        timestamp: 1,
        group: "group1".into(),
    }
    .encode();
    body.extend_from_slice(name.as_bytes());
    body.extend_from_slice(&content);
    let mut req = Header::request(Command::SyncCreateFile, body.len() as u64)
        .encode()
        .to_vec();
    req.extend_from_slice(&body);
    let mut s = connect_from(peer, g.members[0].addr).await;
    // The server may hang up before it has taken all of it.
    let _ = s.write_all(&req).await;
    let mut rest = Vec::new();
    let ended = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut rest)).await;
    assert!(ended.is_ok(), "the connection ends");
    assert_eq!(
        g.client.download_bytes(&kept, 0, 0).await.expect("kept"),
        b"kept"
    );
}

/// A sync of a trunk-stored file whose size is not the one its name carries is refused
/// before its body is read: a name can claim a slot of up to 4 GiB, and the body of a slot
/// is taken into memory.
#[tokio::test]
async fn a_trunk_sync_of_another_size_than_its_name_says_is_refused_before_its_body() {
    use fdfs_node::fileid::{NameCore, RemoteName, Source, TRUNK_FLAG, TrunkSlot};
    use fdfs_node::proto::sync::SyncFileHead;
    use fdfs_node::proto::{Command, HEADER_LEN, Header, Status};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let (g, peer) = group_with_peer().await;
    let core = NameCore {
        source: Source::Ip([127, 0, 0, 3].into()),
        timestamp: 1_700_000_000,
        size_field: (0x8000_1234u64 << 32) | TRUNK_FLAG | 10,
        crc32: 0,
    };
    let slot = TrunkSlot {
        id: 1,
        offset: 0,
        size: u32::MAX,
    };
    let name = RemoteName::new(
        0,
        0,
        0,
        format!("{}{}000.bin", core.encode(), slot.encode()),
    );
    let name = name.to_string();
    let size: u64 = 64 << 20;
    let mut body = SyncFileHead {
        name_len: name.len() as u64,
        file_size: size,
        timestamp: 1,
        group: "group1".into(),
    }
    .encode();
    body.extend_from_slice(name.as_bytes());
    let mut req = Header::request(Command::SyncCreateFile, body.len() as u64 + size)
        .encode()
        .to_vec();
    req.extend_from_slice(&body);
    let mut s = connect_from(peer, g.members[0].addr).await;
    // The head and name only: the 64 MiB never come.
    s.write_all(&req).await.expect("write");
    let mut h = [0u8; HEADER_LEN];
    tokio::time::timeout(Duration::from_secs(10), s.read_exact(&mut h))
        .await
        .expect("answered without the body")
        .expect("reply");
    assert_eq!(
        Header::decode(&h, 0).expect("header").status(),
        Status::InvalidArgument
    );
}

/// One appended chunk: 1,000 bytes that say which writer and which append they are.
fn chunk(writer: usize, i: usize) -> Vec<u8> {
    let tag = format!("w{writer:02}i{i:03}|");
    tag.bytes().cycle().take(1000).collect()
}

#[tokio::test]
async fn concurrent_appends_keep_every_acknowledged_byte_on_both_members() {
    let g = start_pair("127.0.0.3").await;
    let client = g.shared_client().await;
    let id = client
        .upload_appender_reader(&b""[..], 0, "log", None)
        .await
        .expect("appender");
    let mut writers = tokio::task::JoinSet::new();
    for w in 0..8 {
        let (client, id) = (client.clone(), id.clone());
        writers.spawn(async move {
            for i in 0..50 {
                client
                    .append_bytes(&id, &chunk(w, i))
                    .await
                    .expect("append");
            }
        });
    }
    while let Some(r) = writers.join_next().await {
        r.expect("writer");
    }
    // Every acknowledged chunk is there exactly once, whole.
    let bytes = client.download_bytes(&id, 0, 0).await.expect("download");
    assert_eq!(bytes.len(), 8 * 50 * 1000);
    let mut seen: Vec<Vec<u8>> = bytes.chunks(1000).map(<[u8]>::to_vec).collect();
    seen.sort();
    let mut want: Vec<Vec<u8>> = (0..8)
        .flat_map(|w| (0..50).map(move |i| chunk(w, i)))
        .collect();
    want.sort();
    assert!(seen == want, "chunks lost, torn or doubled");
    // And the other member ends with the same bytes.
    wait_until("both members equal", Duration::from_secs(60), async || {
        (0..2).all(|m| std::fs::read(g.path_on(m, &id)).is_ok_and(|b| b == bytes))
    })
    .await;
}

#[tokio::test]
async fn a_modify_cut_off_mid_body_changes_nothing_on_either_member() {
    use tokio::io::AsyncWriteExt;
    let g = start_pair("127.0.0.3").await;
    let original: Vec<u8> = (0..1000u32).map(|i| (i % 251) as u8).collect();
    let id = g.appender_on_both(&original).await;
    let source = g.client.query_update(&id).await.expect("source");
    let addr: std::net::SocketAddr = format!("{}:{}", source.addr.ip, source.addr.port)
        .parse()
        .expect("addr");
    // MODIFY announcing 400,000 bytes at offset 500; 300,000 are sent, then the
    // connection closes.
    let name = id.remote.to_string();
    let head = fdfs_node::proto::storage::WriteHead {
        name_len: name.len() as u64,
        offset: Some(500),
        size: 400_000,
    };
    let mut body = head.encode();
    body.extend_from_slice(name.as_bytes());
    let total = body.len() as u64 + 400_000;
    let mut raw = tokio::net::TcpStream::connect(addr).await.expect("connect");
    raw.write_all(
        &fdfs_node::proto::Header::request(fdfs_node::proto::Command::ModifyFile, total).encode(),
    )
    .await
    .expect("header");
    raw.write_all(&body).await.expect("head");
    raw.write_all(&vec![0xEE; 300_000])
        .await
        .expect("part of the patch");
    drop(raw);
    // The storage keeps serving; a later change applies to the untouched file.
    g.append_reaches_both(&id, &original, b"0123456789").await;
}

/// Every stored file under a member's `data/` (metadata files included, staging left out).
fn stored_files(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut dirs = vec![root.join("data")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                if entry.file_name() != ".tmp" {
                    dirs.push(path);
                }
            } else if path.parent() != Some(&root.join("data")) {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

#[tokio::test]
async fn an_upload_or_append_cut_off_mid_body_changes_nothing_on_either_member() {
    use fdfs_node::proto::storage::{UploadHead, WriteHead};
    use fdfs_node::proto::{Command, Header};
    use tokio::io::AsyncWriteExt;
    let g = start_pair("127.0.0.3").await;
    let original = b"the appender as it was".to_vec();
    let id = g.appender_on_both(&original).await;
    let roots: Vec<PathBuf> = (0..2)
        .map(|m| g.members[m].node.config.base_path.clone())
        .collect();
    let before: Vec<Vec<PathBuf>> = roots.iter().map(|r| stored_files(r)).collect();
    let source = g.client.query_update(&id).await.expect("source");
    let addr: std::net::SocketAddr = format!("{}:{}", source.addr.ip, source.addr.port)
        .parse()
        .expect("addr");
    let cut = async |cmd: Command, head: Vec<u8>, announced: u64, sent: usize| {
        let mut raw = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let total = head.len() as u64 + announced;
        raw.write_all(&Header::request(cmd, total).encode())
            .await
            .expect("header");
        raw.write_all(&head).await.expect("head");
        raw.write_all(&vec![0xAB; sent])
            .await
            .expect("part of the body");
    };
    // APPEND announcing 400,000 bytes, 300,000 sent; UPLOAD announcing 500,000, 100,000 sent.
    let name = id.remote.to_string();
    let mut append_head = WriteHead {
        name_len: name.len() as u64,
        offset: None,
        size: 400_000,
    }
    .encode();
    append_head.extend_from_slice(name.as_bytes());
    cut(Command::AppendFile, append_head, 400_000, 300_000).await;
    let upload_head = UploadHead {
        store_path_index: 0,
        file_size: 500_000,
        ext: "bin".into(),
    }
    .encode();
    cut(Command::UploadFile, upload_head, 500_000, 100_000).await;

    // A whole append afterwards lands right after the original bytes, on both members,
    // and no other file appeared anywhere.
    g.append_reaches_both(&id, &original, b"+tail").await;
    for (m, root) in roots.iter().enumerate() {
        assert_eq!(
            stored_files(root),
            before[m],
            "member {m} gained or lost a file"
        );
    }
}

#[tokio::test]
async fn a_sync_append_cut_off_mid_body_changes_nothing_on_the_receiving_member() {
    use fdfs_node::proto::sync::SyncRangeHead;
    use fdfs_node::proto::{Command, Header, Status};
    use tokio::io::AsyncWriteExt;
    let g = start_pair("127.0.0.3").await;
    let original: Vec<u8> = (0..1000u32).map(|i| (i % 251) as u8).collect();
    let id = g.appender_on_both(&original).await;
    // Member A pushes an append of 400,000 bytes to B; the connection drops after 300,000.
    let (a, b) = (g.members[0].addr, g.members[1].addr);
    g.wait_member_known(1, a.ip()).await;
    let name = id.remote.to_string();
    let sync_append = |len: u64| {
        let mut body = SyncRangeHead {
            name_len: name.len() as u64,
            a: original.len() as u64,
            b: len,
            timestamp: 1_800_000_000,
            group: "group1".into(),
        }
        .encode();
        body.extend_from_slice(name.as_bytes());
        body
    };
    let head = sync_append(400_000);
    let mut raw = connect_from(a.ip(), b).await;
    raw.write_all(&Header::request(Command::SyncAppendFile, head.len() as u64 + 400_000).encode())
        .await
        .expect("header");
    raw.write_all(&head).await.expect("head");
    raw.write_all(&vec![0xEE; 300_000])
        .await
        .expect("part of the range");
    drop(raw);
    let binlog_before = g.members[1].node.disk.binlog().end();
    // B serves on, with its copy untouched: a whole append from A then applies at the
    // same offset, and only it reaches B's binlog.
    let tail = vec![0x5A; 2000];
    let mut whole = sync_append(tail.len() as u64);
    whole.extend_from_slice(&tail);
    wait_until(
        "a whole sync append after the cut",
        Duration::from_secs(30),
        async || send(a.ip(), b, Command::SyncAppendFile, &whole).await == Some(Status::Ok),
    )
    .await;
    let mut want = original.clone();
    want.extend_from_slice(&tail);
    assert_eq!(std::fs::read(g.path_on(1, &id)).expect("B's copy"), want);
    let logged = g.members[1].node.disk.binlog().end();
    assert!(logged > binlog_before, "the applied append is logged");
}

#[tokio::test]
async fn concurrent_metadata_merges_keep_every_key() {
    let g = start_group().await;
    let client = g.shared_client().await;
    let id = client
        .upload_bytes(b"photo", "jpg", None)
        .await
        .expect("upload");
    let mut writers = tokio::task::JoinSet::new();
    for w in 0..8 {
        let (client, id) = (client.clone(), id.clone());
        writers.spawn(async move {
            for i in 0..20 {
                let pair = format!("key{w}\u{2}{i}");
                client
                    .set_metadata(&id, pair.as_bytes(), true)
                    .await
                    .expect("merge");
            }
        });
    }
    while let Some(r) = writers.join_next().await {
        r.expect("writer");
    }
    let meta = client.get_metadata(&id).await.expect("metadata");
    let mut pairs: Vec<String> = String::from_utf8(meta)
        .expect("text")
        .split('\u{1}')
        .map(str::to_owned)
        .collect();
    pairs.sort();
    let want: Vec<String> = (0..8).map(|w| format!("key{w}\u{2}19")).collect();
    assert_eq!(pairs, want);
}

/// A member stopped while its push to a peer is far behind (SIGTERM in a scale-down or a
/// rollout) pushes on to the end of its binlog before it exits, not just its current batch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopping_member_pushes_its_whole_binlog_first() {
    let mut g = Group(common::TestGroup::start(TrackerConfig::default(), 24000).await);
    let mut a = g.config("127.0.0.2");
    // The push to the end is bounded by the flush grace (3 s by default); on a machine busy
    // with other tests, 2,400 files can take longer. The test is about going on to the end.
    a.timers.flush_grace_ms = 8_000;
    g.add(a).await;
    g.wait_all_active().await;
    g.add_member("127.0.0.4").await;
    g.wait_all_active().await;
    // B is away while A takes many uploads: several push batches' worth. Uploads start
    // once the tracker no longer sends them to B.
    let cfg = g.stop_last().await;
    g.wait_offline("127.0.0.4").await;
    let client = g.shared_client().await;
    let mut tasks = Vec::new();
    for w in 0..4 {
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for i in 0..600 {
                let data = format!("file {w}/{i}");
                ids.push(
                    client
                        .upload_bytes(data.as_bytes(), "txt", None)
                        .await
                        .expect("upload while B is away"),
                );
            }
            ids
        }));
    }
    let mut ids = Vec::new();
    for t in tasks {
        ids.extend(t.await.expect("uploader"));
    }
    // B is back; A stops as soon as its push to B has started.
    g.members
        .push(fdfs_node::storage::start(cfg).await.expect("restart B"));
    wait_until(
        "A's push to B started",
        Duration::from_secs(60),
        async || ids.iter().any(|id| g.path_on(1, id).exists()),
    )
    .await;
    let on_b_at_stop = ids.iter().filter(|id| g.path_on(1, id).exists()).count();
    let a = g.members.remove(0);
    a.stop(Duration::from_secs(10)).await;
    let on_b = ids
        .iter()
        .filter(|id| {
            g.members[0]
                .node
                .config
                .base_path
                .join(id.remote.relative_path())
                .exists()
        })
        .count();
    assert_eq!(
        on_b,
        ids.len(),
        "B holds {on_b} of {} files after A stopped ({on_b_at_stop} when it was told to)",
        ids.len()
    );
}

/// A caught-up push waits `sync_wait_msec` for more changes, to push them together; a member
/// stopped while its push waits pushes what came before it exits, not after the wait.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_stopped_while_its_push_waits_for_more_pushes_what_came_first() {
    let mut g = Group(common::TestGroup::start(TrackerConfig::default(), 24000).await);
    let mut config = g.config("127.0.0.2");
    config.sync_wait_msec = 3_600_000;
    g.add(config).await;
    g.wait_all_active().await;
    let (a, client) = (g.members[0].addr, g.shared_client().await);
    let upload = async |i: usize| {
        let body = content(i);
        let head = fdfs_node::proto::storage::UploadHead {
            store_path_index: 0xFF,
            file_size: body.len() as u64,
            ext: "bin".into(),
        };
        client
            .upload_to(a, head, &mut &body[..])
            .await
            .expect("upload to A")
    };
    // B's full copy of A's first file is pushed at once; then A's push is caught up.
    let first = upload(0).await;
    g.add_member("127.0.0.5").await;
    g.wait_all_active().await;
    wait_until("A's first file on B", Duration::from_secs(30), async || {
        g.path_on(1, &first).exists()
    })
    .await;
    let mut ids = Vec::new();
    for i in 1..6 {
        ids.push(upload(i).await);
    }
    assert!(
        ids.iter().all(|id| !g.path_on(1, id).exists()),
        "the push waits for more"
    );
    let stopped = std::time::Instant::now();
    let a = g.members.remove(0);
    a.stop(Duration::from_secs(10)).await;
    for (i, id) in (1..6).zip(&ids) {
        assert_eq!(
            std::fs::read(g.path_on(0, id)).expect("on B after A stopped"),
            content(i)
        );
    }
    assert!(
        stopped.elapsed() < Duration::from_secs(10),
        "the stop cut the wait short: {:?}",
        stopped.elapsed()
    );
}

/// `fdfs migrate retire`: a member is deleted from the trackers only once it is stopped and
/// every file it took is on the others. One stopped too early (its last uploads never left
/// it) is refused until it runs again and pushes them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_is_retired_only_once_stopped_with_its_files_on_the_others() {
    use fdfs_node::client::migrate::{self, RetireError};
    let mut g = start_pair("127.0.0.4").await;
    let config = ClientConfig::new(vec![g.tracker.addr.to_string()]);
    let retire_b = async |client: &Client, secs: u64| {
        migrate::retire(
            client,
            &config,
            "group1",
            "127.0.0.4",
            Duration::from_secs(secs),
            |_| {},
        )
        .await
    };
    let mut files = Vec::new();
    for i in 0..20 {
        let data = content(i + 7000);
        files.push((
            g.client
                .upload_bytes(&data, "bin", None)
                .await
                .expect("upload"),
            data,
        ));
    }

    wait_until(
        "the first files on both",
        Duration::from_secs(60),
        async || {
            files
                .iter()
                .all(|(id, _)| (0..2).all(|m| g.path_on(m, id).exists()))
        },
    )
    .await;
    // Sync times have a resolution of one second: B's next uploads must carry a later one.
    let synced_at = fdfs_node::unix_now();
    wait_until("the next second", Duration::from_secs(3), async || {
        fdfs_node::unix_now() > synced_at
    })
    .await;

    // A is away while B takes uploads; then B stops before A is back.
    let a = g.members.remove(0);
    let a_cfg = a.node.config.clone();
    a.stop(Duration::from_secs(2)).await;
    wait_until("B alone ACTIVE", Duration::from_secs(30), async || {
        g.client.list_storages("group1").await.is_ok_and(|l| {
            l.iter()
                .any(|s| s.ip == "127.0.0.4" && s.status == StorageStatus::Active as u8)
                && l.iter()
                    .any(|s| s.ip == "127.0.0.2" && s.status != StorageStatus::Active as u8)
        })
    })
    .await;
    for i in 0..10 {
        let data = content(i + 8000);
        files.push((
            g.client
                .upload_bytes(&data, "bin", None)
                .await
                .expect("upload to B"),
            data,
        ));
    }
    let b = g.members.remove(0);
    let b_cfg = b.node.config.clone();
    b.stop(Duration::from_secs(2)).await;
    g.members
        .push(fdfs_node::storage::start(a_cfg).await.expect("A back"));
    wait_until("A ACTIVE again", Duration::from_secs(30), async || {
        g.client.list_storages("group1").await.is_ok_and(|l| {
            l.iter()
                .any(|s| s.ip == "127.0.0.2" && s.status == StorageStatus::Active as u8)
        })
    })
    .await;
    let refused = retire_b(&g.client, 3).await;
    let Err(RetireError::NotYet { why, .. }) = refused else {
        panic!("B's last uploads are only on B: {refused:?}")
    };
    // B's own last report (sent as it stopped) says what A lacks.
    assert!(
        why.contains("127.0.0.4 still has") && why.contains("bytes of changes to push"),
        "{why}"
    );

    // B runs again and pushes them; while it serves it is not retired either.
    g.members
        .push(fdfs_node::storage::start(b_cfg).await.expect("B back"));
    let serving = retire_b(&g.client, 1).await;
    assert!(
        matches!(serving, Err(RetireError::NotYet { .. })),
        "{serving:?}"
    );
    wait_until("every file on A", Duration::from_secs(60), async || {
        files
            .iter()
            .all(|(id, data)| std::fs::read(g.path_on(0, id)).is_ok_and(|b| b == *data))
    })
    .await;
    let b = g.members.pop().expect("B");
    b.stop(Duration::from_secs(5)).await;
    retire_b(&g.client, 60)
        .await
        .expect("retired once stopped with its files on A");
    let listed = g.client.list_storages("group1").await.expect("listing");
    assert!(
        listed
            .iter()
            .all(|s| s.ip != "127.0.0.4" || s.status == StorageStatus::Deleted as u8),
        "{listed:?}"
    );
    for (id, data) in &files {
        assert_eq!(
            g.client.download_bytes(id, 0, 0).await.expect("download"),
            *data
        );
    }
}

/// The `binlog_offset` a mark file records.
fn mark_offset(path: &Path) -> Option<u64> {
    std::fs::read_to_string(path)
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("binlog_offset="))
        .and_then(|v| v.parse().ok())
}

/// With IP identities (no storage ids), a member that comes back at another address reports
/// the move (78): the tracker moves its record and logs it, the other member renames its
/// sync mark from the changelog (77) and goes on from where it was, and nothing is copied
/// again.
/// A tracker that is down while a member moves is told of the move when it comes back: it
/// keeps the member's record at the new address, and does not take the member there for a
/// new, empty one.
#[tokio::test]
async fn a_tracker_down_during_a_move_is_told_of_it_when_it_comes_back() {
    let mut g = Group(common::TestGroup::start(TrackerConfig::default(), 24000).await);
    let second_bind = format!("127.0.0.7:{}", common::group_port(g.dir.path(), 27000));
    let second_config = TrackerConfig {
        bind: second_bind.clone(),
        base_path: g.dir.path().join("tracker-2"),
        reserved_storage_space: fdfs_node::config::ReservedSpace::Mb(0),
        // After its restart it holds B's old record ACTIVE until a check finds it silent.
        check_active_interval: 2,
        ..Default::default()
    };
    let second = fdfs_node::tracker::start(second_config.clone())
        .await
        .expect("second tracker");
    for ip in ["127.0.0.2", "127.0.0.4"] {
        let mut config = g.config(ip);
        config.tracker_servers.push(second_bind.clone());
        g.add(config).await;
    }
    g.wait_all_active().await;
    for ip in ["127.0.0.2", "127.0.0.4"] {
        common::wait_listed(&second_bind, "group1", ip, StorageStatus::Active).await;
    }
    g.upload_to_both(7200..7204).await;

    // The second tracker stops; B starts again on its data at 127.0.0.6.
    second.stop(Duration::from_secs(1)).await;
    let mut cfg = g.stop_last().await;
    let port = g.members[0].addr.port();
    cfg.bind = format!("127.0.0.6:{port}");
    g.0.members.push(
        fdfs_node::storage::start(cfg)
            .await
            .expect("B at its new address"),
    );
    wait_until(
        "B ACTIVE at its new address on the first tracker",
        Duration::from_secs(30),
        async || g.status_of("127.0.0.6") == Some(StorageStatus::Active),
    )
    .await;

    let second = fdfs_node::tracker::start(second_config)
        .await
        .expect("second tracker again");
    common::wait_listed(&second_bind, "group1", "127.0.0.6", StorageStatus::Active).await;
    {
        let reg = second.tracker.registry();
        let members = &reg.groups()["group1"].members;
        assert_eq!(
            members.get("127.0.0.4").map(|m| m.status),
            Some(StorageStatus::IpChanged),
            "the old address left as moved"
        );
        assert_eq!(members.len(), 3);
    }
    second.stop(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn a_member_back_at_a_new_address_keeps_its_record_and_its_peers_marks() {
    let mut g = start_pair("127.0.0.4").await;
    let files = g.upload_to_both(7000..7010).await;
    wait_until("A's push to B done", Duration::from_secs(30), async || {
        backlog_of_a(&g) == Some(0)
    })
    .await;
    let port = g.members[1].addr.port();
    let marks = g.members[0].node.disk.binlog().dir().to_owned();
    let old_mark = marks.join(format!("127.0.0.4_{port}.mark"));
    let pushed = binlog_size(&g.members[0]);
    assert!(pushed > 0);

    // B stops and starts again on its data at 127.0.0.6.
    let mut cfg = g.stop_last().await;
    wait_until(
        "A's mark for B saved",
        Duration::from_secs(30),
        async || mark_offset(&old_mark) == Some(pushed),
    )
    .await;
    let mark_text = std::fs::read_to_string(&old_mark).expect("mark");
    cfg.bind = format!("127.0.0.6:{port}");
    g.0.members.push(
        fdfs_node::storage::start(cfg)
            .await
            .expect("B at its new address"),
    );
    wait_until("B's record moved", Duration::from_secs(60), async || {
        let reg = g.tracker.tracker.registry();
        let members = &reg.groups()["group1"].members;
        members.get("127.0.0.4").map(|m| m.status) == Some(StorageStatus::IpChanged)
            && members.get("127.0.0.6").map(|m| m.status) == Some(StorageStatus::Active)
            && members.len() == 3
    })
    .await;
    let changelog = std::fs::read_to_string(
        g.tracker
            .tracker
            .config()
            .base_path
            .join("data/storage_changelog.dat"),
    )
    .expect("changelog");
    assert!(
        changelog.ends_with(" group1 127.0.0.4 3 127.0.0.6\n"),
        "{changelog}"
    );
    let new_mark = marks.join(format!("127.0.0.6_{port}.mark"));
    wait_until("A's mark renamed", Duration::from_secs(30), async || {
        mark_offset(&new_mark).is_some()
    })
    .await;
    assert_eq!(
        std::fs::read_to_string(&new_mark).expect("mark"),
        mark_text,
        "A goes on from where it was"
    );
    let flag = std::fs::read_to_string(
        g.members[1]
            .node
            .config
            .base_path
            .join("data/.data_init_flag"),
    )
    .expect("init flag");
    wait_until(
        "B keeps its new address",
        Duration::from_secs(30),
        async || {
            std::fs::read_to_string(
                g.members[1]
                    .node
                    .config
                    .base_path
                    .join("data/.data_init_flag"),
            )
            .is_ok_and(|t| t.contains("last_ip_addr=127.0.0.6\n"))
        },
    )
    .await;
    assert!(flag.contains("sync_old_done=1"), "{flag}");

    // New uploads reach B at its new address, and it serves the old ones there.
    let later = g
        .client
        .upload_bytes(b"after the move", "txt", None)
        .await
        .expect("upload");
    wait_until("the new file on B", Duration::from_secs(30), async || {
        g.path_on(1, &later).exists()
    })
    .await;
    for (i, id) in files.iter().enumerate() {
        let mut out = Vec::new();
        g.client
            .download_from(g.members[1].addr, id, 0, 0, &mut out)
            .await
            .expect("download from B");
        assert_eq!(out, content(i + 7000));
        // Through the tracker too: names carrying B's old address still route.
        let via_tracker = g.client.download_bytes(id, 0, 0).await.expect("download");
        assert_eq!(via_tracker, content(i + 7000));
    }
    // Nothing was pushed twice: to B's new address A pushed the one new file at most.
    let pushed_to_new = g.members[0]
        .node
        .metrics
        .synced_records
        .get_or_create(&fdfs_node::storage::metrics::PeerLabels {
            peer: "127.0.0.6".into(),
        })
        .get();
    assert!(pushed_to_new <= 1, "{pushed_to_new} records pushed again");
}

/// A member that comes back at a new address while its old address still serves on the
/// tracker (here another connection holds it ONLINE) is refused the move (EBUSY) and asks
/// again, without joining as a new member; once the old address is gone, the move is taken.
#[tokio::test]
async fn a_move_waits_while_the_old_address_still_serves() {
    use fdfs_node::client::Conn;
    use fdfs_node::proto::report::JoinRequest;
    use fdfs_node::proto::{Command, Status};

    let mut g = start_pair("127.0.0.4").await;
    let b = g.members.pop().expect("B");
    let mut cfg = b.node.config.clone();
    let port = b.addr.port();
    b.stop(Duration::from_secs(2)).await;
    let record = |ip: &str| {
        g.0.tracker.tracker.registry().groups()["group1"]
            .members
            .get(ip)
            .map(|m| m.status)
    };
    wait_until("B OFFLINE", Duration::from_secs(30), async || {
        record("127.0.0.4") == Some(StorageStatus::Offline)
    })
    .await;

    // Something at B's old address joins the tracker again and holds the record.
    let mut old = Conn::connect(
        g.tracker.addr,
        Duration::from_secs(2),
        Duration::from_secs(5),
        Some("127.0.0.4".parse().expect("ip")),
    )
    .await
    .expect("connect");
    let join = JoinRequest {
        group: "group1".into(),
        storage_port: u64::from(port),
        store_path_count: 1,
        subdir_count_per_path: cfg.subdir_count_per_path.into(),
        upload_priority: 10,
        status: StorageStatus::Active as i8,
        version: "6.16.1".into(),
        trackers: vec![g.tracker.addr.to_string()],
        ..Default::default()
    };
    let (st, _) = old
        .call(Command::StorageJoin, &join.encode(), 1024)
        .await
        .expect("join");
    assert_eq!(st, Status::Ok);
    assert!(matches!(
        record("127.0.0.4"),
        Some(StorageStatus::Online | StorageStatus::Active)
    ));

    cfg.bind = format!("127.0.0.6:{port}");
    g.0.members.push(
        fdfs_node::storage::start(cfg)
            .await
            .expect("B at its new address"),
    );
    let busy = || {
        g.tracker
            .tracker
            .metrics
            .requests
            .get_or_create(&vec![
                ("command".to_owned(), "StorageReportIpChanged".to_owned()),
                ("status".to_owned(), "EBUSY".to_owned()),
            ])
            .get()
    };
    wait_until(
        "the move refused twice",
        Duration::from_secs(30),
        async || busy() >= 2,
    )
    .await;
    assert_eq!(record("127.0.0.6"), None, "not joined as a new member");
    assert!(matches!(
        record("127.0.0.4"),
        Some(StorageStatus::Online | StorageStatus::Active)
    ));

    // The old address goes away: the next attempt moves the record.
    drop(old);
    wait_until("B's record moved", Duration::from_secs(60), async || {
        record("127.0.0.4") == Some(StorageStatus::IpChanged)
            && record("127.0.0.6") == Some(StorageStatus::Active)
    })
    .await;
}
