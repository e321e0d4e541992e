//! The storage's HTTP side over raw HTTP/1.1: file serving as fastdfs-nginx-module
//! does it, ranges, validators, the anti-leech token, traversal attempts, health.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use common::Group;
use fdfs_node::config::{StorageConfig, TrackerConfig};
use fdfs_node::http::token;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

struct Reply {
    status: u16,
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

/// Sends one request with `Connection: close` and reads the whole reply.
async fn request(addr: SocketAddr, method: &str, target: &str, extra: &[(&str, &str)]) -> Reply {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let mut req = format!("{method} {target} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n");
    for (k, v) in extra {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).await.expect("write");
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut raw))
        .await
        .expect("in time")
        .expect("read");
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("end of headers");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .expect("status");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Reply {
        status,
        headers,
        body: raw[split + 4..].to_vec(),
    }
}

/// The parts of a `multipart/byteranges` body: each part's headers and bytes.
fn multipart_parts(body: &[u8], boundary: &str) -> Vec<(HashMap<String, String>, Vec<u8>)> {
    let delimiter = format!("\r\n--{boundary}");
    let text = body;
    let mut cuts = Vec::new();
    let mut at = 0;
    while let Some(i) = text[at..]
        .windows(delimiter.len())
        .position(|w| w == delimiter.as_bytes())
    {
        cuts.push(at + i);
        at += i + delimiter.len();
    }
    assert!(
        text[cuts.last().copied().expect("a delimiter")..].ends_with(b"--\r\n"),
        "the body closes with the final delimiter"
    );
    cuts.windows(2)
        .map(|w| {
            let part = &text[w[0] + delimiter.len() + 2..w[1]];
            let split = part
                .windows(4)
                .position(|x| x == b"\r\n\r\n")
                .expect("part headers");
            let headers = String::from_utf8_lossy(&part[..split])
                .lines()
                .filter_map(|l| l.split_once(':'))
                .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
                .collect();
            (headers, part[split + 4..].to_vec())
        })
        .collect()
}

struct Node {
    tracker: fdfs_node::tracker::RunningTracker,
    storage: fdfs_node::storage::RunningStorage,
    _dir: tempfile::TempDir,
}

impl Node {
    async fn start(ip: &str, check_token: bool) -> Node {
        let dir = tempfile::tempdir().expect("tempdir");
        let tracker = common::test_tracker(dir.path()).await;
        let mut cfg = common::member_config(dir.path(), ip, [tracker.addr], 0);
        cfg.http.bind = format!("{ip}:0");
        cfg.http.check_token = check_token;
        cfg.http.secret_key = "FastDFS1234567890".into();
        cfg.http.token_ttl = 600;
        let storage = common::start_member(cfg).await;
        Node {
            tracker,
            storage,
            _dir: dir,
        }
    }

    fn http(&self) -> SocketAddr {
        self.storage.http_addr.expect("http enabled")
    }

    async fn client(&self) -> fdfs_node::client::Client {
        common::client_of([self.tracker.addr]).await
    }

    async fn wait_ready(&self) {
        common::wait_until("ready", Duration::from_secs(30), async || {
            request(self.http(), "GET", "/readyz", &[]).await.status == 200
        })
        .await;
    }
}

fn data(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 13 % 251) as u8).collect()
}

#[tokio::test]
async fn get_head_ranges_and_validators() {
    let n = Node::start("127.0.0.2", false).await;
    n.wait_ready().await;
    let client = n.client().await;
    let content = data(600_000);
    let id = client
        .upload_bytes(&content, "jpg", None)
        .await
        .expect("upload");
    let with_group = format!("/{id}");
    let without_group = format!("/{}", id.remote);
    for path in [&with_group, &without_group] {
        let r = request(n.http(), "GET", path, &[]).await;
        assert_eq!(r.status, 200, "{path}");
        assert!(r.body == content, "streamed body differs");
        assert_eq!(r.headers["content-type"], "image/jpeg");
        assert_eq!(r.headers["content-length"], "600000");
        assert_eq!(r.headers["accept-ranges"], "bytes");
    }
    let r = request(n.http(), "HEAD", &with_group, &[]).await;
    assert_eq!((r.status, r.body.len()), (200, 0));
    assert_eq!(r.headers["content-length"], "600000");
    let etag = r.headers["etag"].clone();
    let last_modified = r.headers["last-modified"].clone();
    // Validators; a tag a proxy marked weak still matches.
    assert_eq!(
        request(n.http(), "GET", &with_group, &[("If-None-Match", &etag)])
            .await
            .status,
        304
    );
    let weak = format!("\"x\", W/{etag}");
    assert_eq!(
        request(n.http(), "GET", &with_group, &[("If-None-Match", &weak)])
            .await
            .status,
        304
    );
    let r = request(n.http(), "DELETE", &with_group, &[]).await;
    assert_eq!((r.status, r.headers["allow"].as_str()), (405, "GET, HEAD"));
    // An HTTP/1.0 client asking to keep the connection is told it is kept, and it is.
    {
        let mut s = TcpStream::connect(n.http()).await.expect("connect");
        for _ in 0..2 {
            let req = format!("HEAD {with_group} HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
            s.write_all(req.as_bytes()).await.expect("write");
            let mut head = Vec::new();
            while !head.ends_with(b"\r\n\r\n") {
                let mut byte = [0u8; 1];
                tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut byte))
                    .await
                    .expect("in time")
                    .expect("read");
                head.push(byte[0]);
            }
            let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
            assert!(head.contains("connection: keep-alive"), "{head}");
        }
    }
    assert_eq!(
        request(
            n.http(),
            "GET",
            &with_group,
            &[("If-None-Match", "\"other\"")]
        )
        .await
        .status,
        200
    );
    assert_eq!(
        request(
            n.http(),
            "GET",
            &with_group,
            &[("If-Modified-Since", &last_modified)]
        )
        .await
        .status,
        304
    );
    // Single ranges.
    let r = request(n.http(), "GET", &with_group, &[("Range", "bytes=100-199")]).await;
    assert_eq!(r.status, 206);
    assert_eq!(r.headers["content-range"], "bytes 100-199/600000");
    assert_eq!(r.body, content[100..200]);
    let r = request(n.http(), "GET", &with_group, &[("Range", "bytes=-10")]).await;
    assert_eq!((r.status, r.body.as_slice()), (206, &content[599_990..]));
    let r = request(n.http(), "GET", &with_group, &[("Range", "bytes=599000-")]).await;
    assert_eq!((r.status, r.body.len()), (206, 1000));
    let r = request(n.http(), "GET", &with_group, &[("Range", "bytes=700000-")]).await;
    assert_eq!(r.status, 416);
    assert_eq!(r.headers["content-range"], "bytes */600000");
    assert_eq!(r.headers["cache-control"], "no-store");
    assert!(!r.headers.contains_key("etag"));
    // Overlapping pieces adding up to more than the file: the file, once.
    let copies = ["0-599999"; 3].join(",");
    let r = request(
        n.http(),
        "GET",
        &with_group,
        &[("Range", &format!("bytes={copies}"))],
    )
    .await;
    assert_eq!((r.status, r.body.len()), (200, 600_000));
    // Several ranges: a multipart/byteranges body, each part with its own headers; HEAD
    // says the same length; with a stale If-Range, the whole file.
    let asked = [(0u64, 9u64), (599_990, 599_999), (1000, 1099)];
    let r = request(
        n.http(),
        "GET",
        &with_group,
        &[("Range", "bytes=0-9,-10,1000-1099")],
    )
    .await;
    assert_eq!(r.status, 206);
    let boundary = r.headers["content-type"]
        .strip_prefix("multipart/byteranges; boundary=")
        .expect("a multipart answer")
        .to_owned();
    assert_eq!(r.headers["content-length"], r.body.len().to_string());
    let parts = multipart_parts(&r.body, &boundary);
    assert_eq!(parts.len(), asked.len());
    for ((headers, body), (start, end)) in parts.iter().zip(asked) {
        assert_eq!(headers["content-type"], "image/jpeg");
        assert_eq!(
            headers["content-range"],
            format!("bytes {start}-{end}/600000")
        );
        assert_eq!(body.as_slice(), &content[start as usize..=end as usize]);
    }
    let head = request(
        n.http(),
        "HEAD",
        &with_group,
        &[("Range", "bytes=0-9,-10,1000-1099")],
    )
    .await;
    assert_eq!(head.status, 206);
    assert_eq!(head.headers["content-length"], r.headers["content-length"]);
    let r = request(
        n.http(),
        "GET",
        &with_group,
        &[("Range", "bytes=0-9,20-29"), ("If-Range", "\"stale\"")],
    )
    .await;
    assert_eq!((r.status, r.body.len()), (200, 600_000));
    // If-Range with a stale validator sends the whole file.
    let r = request(
        n.http(),
        "GET",
        &with_group,
        &[("Range", "bytes=0-9"), ("If-Range", "\"stale\"")],
    )
    .await;
    assert_eq!((r.status, r.body.len()), (200, 600_000));
    // Download name.
    let r = request(
        n.http(),
        "GET",
        &format!("{with_group}?filename=photo%20one.jpg"),
        &[],
    )
    .await;
    assert!(
        r.headers["content-disposition"].starts_with("attachment; filename=\"photo one.jpg\""),
        "{:?}",
        r.headers
    );
    // Unknown files, other groups, other methods.
    let missing = with_group.replacen(&id.remote.name[..6], "AAAAAA", 1);
    assert_eq!(request(n.http(), "GET", &missing, &[]).await.status, 404);
    assert_eq!(
        request(
            n.http(),
            "GET",
            &with_group.replacen("group1", "group2", 1),
            &[]
        )
        .await
        .status,
        404
    );
    assert_eq!(
        request(n.http(), "DELETE", &with_group, &[]).await.status,
        405
    );
    // Files never change under their ID and may be cached for good; appender files grow.
    assert_eq!(
        request(n.http(), "HEAD", &with_group, &[]).await.headers["cache-control"],
        "public, max-age=31536000, immutable"
    );
    let appender = client
        .upload_appender_reader(&b"log"[..], 3, "log", None)
        .await
        .expect("appender");
    assert_eq!(
        request(n.http(), "HEAD", &format!("/{appender}"), &[])
            .await
            .headers["cache-control"],
        "no-cache"
    );
    // Deleted files are gone over HTTP too.
    client.delete(&id).await.expect("delete");
    assert_eq!(request(n.http(), "GET", &with_group, &[]).await.status, 404);
}

#[tokio::test]
async fn traversal_never_leaves_the_store() {
    let n = Node::start("127.0.0.3", false).await;
    n.wait_ready().await;
    let client = n.client().await;
    let id = client
        .upload_bytes(b"inside", "txt", None)
        .await
        .expect("upload");
    let long = format!("/group1/M00/00/00/{}", "a".repeat(300));
    let attempts = [
        "/group1/M00/00/00/../../../../etc/passwd",
        "/M00/00/00/../../../../../etc/passwd",
        "/group1/M00/00/00/%2e%2e/%2e%2e/etc/passwd",
        "/group1/M00/00/00/..%2f..%2fetc%2fpasswd",
        "/group1/M00%2f00%2f00%2fx",
        "/group1/M00/00/00/a%00b",
        "/etc/passwd",
        "//etc/passwd",
        "/group1//etc/passwd",
        "/group1/M00/00/00/.hidden",
        "/group1/M00/00/00/..",
        "/group1/M00/00/0a/abc",
        "/group1/M00/09/00/abc",
        long.as_str(),
    ];
    for target in attempts {
        let r = request(n.http(), "GET", target, &[]).await;
        assert!(matches!(r.status, 400 | 404), "{target} → {}", r.status);
        assert!(
            !String::from_utf8_lossy(&r.body).contains("root:"),
            "{target} leaked"
        );
    }
    // A file's metadata companion (`<name>-m`) is not a file to serve.
    client
        .set_metadata(&id, b"owner\x02alice", false)
        .await
        .expect("metadata");
    for target in [format!("/{id}-m"), format!("/{}-m", id.remote)] {
        let r = request(n.http(), "GET", &target, &[]).await;
        assert_eq!(r.status, 404, "{target}");
        assert!(!String::from_utf8_lossy(&r.body).contains("alice"));
    }
    // Still serving.
    assert_eq!(
        request(n.http(), "GET", &format!("/{id}"), &[]).await.body,
        b"inside"
    );
}

#[tokio::test]
async fn anti_leech_token() {
    let n = Node::start("127.0.0.4", true).await;
    n.wait_ready().await;
    let client = n.client().await;
    let id = client
        .upload_bytes(b"protected", "png", None)
        .await
        .expect("upload");
    let name = id.remote.to_string();
    let now = fdfs_node::unix_now();
    // The token covers the file ID without the group.
    let good = token::token(&name, "FastDFS1234567890", now);
    let r = request(
        n.http(),
        "GET",
        &format!("/{id}?token={good}&ts={now}"),
        &[],
    )
    .await;
    assert_eq!(
        (r.status, r.body.as_slice()),
        (200, b"protected".as_slice())
    );
    let with_group = token::token(&id.to_string(), "FastDFS1234567890", now);
    assert_eq!(
        request(
            n.http(),
            "GET",
            &format!("/{id}?token={with_group}&ts={now}"),
            &[]
        )
        .await
        .status,
        403
    );
    assert_eq!(
        request(n.http(), "GET", &format!("/{id}"), &[])
            .await
            .status,
        403
    );
    let old = now - 601;
    let expired = token::token(&name, "FastDFS1234567890", old);
    assert_eq!(
        request(
            n.http(),
            "GET",
            &format!("/{id}?token={expired}&ts={old}"),
            &[]
        )
        .await
        .status,
        403
    );
    let wrong = token::token(&name, "guess", now);
    assert_eq!(
        request(
            n.http(),
            "GET",
            &format!("/{id}?token={wrong}&ts={now}"),
            &[]
        )
        .await
        .status,
        403
    );
    // Health endpoints need no token.
    assert_eq!(request(n.http(), "GET", "/healthz", &[]).await.status, 200);
}

#[tokio::test]
async fn readiness_follows_the_trackers_view_and_metrics_count() {
    let n = Node::start("127.0.0.5", false).await;
    n.wait_ready().await;
    let client = n.client().await;
    let id = client
        .upload_bytes(&data(5000), "bin", None)
        .await
        .expect("upload");
    client.download_bytes(&id, 0, 0).await.expect("download");
    let _ = request(n.http(), "GET", &format!("/{id}"), &[]).await;
    let m = request(n.http(), "GET", "/metrics", &[]).await;
    assert_eq!(m.status, 200);
    let text = String::from_utf8(m.body).expect("text");
    assert!(
        text.contains("fdfs_storage_requests_total{command=\"UploadFile\",status=\"OK\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("fdfs_storage_requests_total{command=\"DownloadFile\",status=\"OK\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("fdfs_storage_request_duration_seconds_bucket{"),
        "{text}"
    );
    assert!(
        text.contains("fdfs_storage_disk_free_bytes{store_path=\"M00\"}"),
        "{text}"
    );
    assert!(
        text.contains("fdfs_storage_http_requests_total{method=\"GET\",code=\"200\"} 1"),
        "{text}"
    );
    // Losing the tracker makes the storage unready.
    let http = n.http();
    n.tracker.stop(Duration::from_secs(1)).await;
    common::wait_until(
        "unready without tracker",
        Duration::from_secs(30),
        async || request(http, "GET", "/readyz", &[]).await.status == 503,
    )
    .await;
}

/// The name `source` gives a file with `content` it stored `age` seconds ago.
fn fresh_name(source: &str, age: u64, content: &[u8]) -> fdfs_node::fileid::RemoteName {
    use fdfs_node::fileid::{NameCore, RemoteName, Source, normal_size_field};
    let core = NameCore {
        source: Source::Ip(source.parse().expect("ip")),
        timestamp: (fdfs_node::unix_now() - age) as u32,
        size_field: normal_size_field(content.len() as u64, 7),
        crc32: crc32fast::hash(content),
    };
    RemoteName::new(0, 0, 0, format!("{}.jpg", core.encode()))
}

/// A group whose members each serve HTTP on the same port of their own address.
impl Group {
    async fn with_http(members: &[(&str, fdfs_node::config::ResponseMode)]) -> Group {
        Self::with_http_tuned(members, |_| {}).await
    }

    async fn with_http_tuned(
        members: &[(&str, fdfs_node::config::ResponseMode)],
        tune: impl Fn(&mut StorageConfig),
    ) -> Group {
        let mut g = Group(common::TestGroup::start(TrackerConfig::default(), 25000).await);
        let http_port = common::group_port(g.dir.path(), 30000);
        for (ip, mode) in members {
            let mut cfg = g.config(ip);
            cfg.http.bind = format!("{ip}:{http_port}");
            cfg.http.response_mode = *mode;
            tune(&mut cfg);
            g.add(cfg).await;
        }
        // Every member knows every other one: ACTIVE everywhere, peers listed.
        common::wait_until(
            "members ACTIVE and known",
            Duration::from_secs(60),
            async || {
                g.members.iter().all(|m| {
                    m.node.is_active_everywhere()
                        && m.node.replication.peers().len() == g.members.len() - 1
                })
            },
        )
        .await;
        g
    }

    /// A file only member `m` holds, under a name that says `source` made it `age` seconds
    /// ago: as a fresh upload looks before replication has copied it. Returns its URL path.
    fn file_on(&self, m: usize, source: &str, age: u64, content: &[u8]) -> String {
        let name = fresh_name(source, age, content);
        let path = self.members[m]
            .node
            .config
            .base_path
            .join(name.relative_path());
        std::fs::create_dir_all(path.parent().expect("dir")).expect("dirs");
        std::fs::write(&path, content).expect("file");
        format!("/group1/{name}")
    }

    /// Member `m`'s HTTP address.
    fn http(&self, m: usize) -> SocketAddr {
        self.members[m].http_addr.expect("HTTP on")
    }
}

#[tokio::test]
async fn a_fresh_file_is_served_by_any_member_through_its_source() {
    use fdfs_node::config::ResponseMode;
    const A: &str = "127.0.0.40";
    let g = Group::with_http(&[
        (A, ResponseMode::Proxy),
        ("127.0.0.41", ResponseMode::Proxy),
        ("127.0.0.42", ResponseMode::Redirect),
    ])
    .await;
    let content: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
    let fresh = g.file_on(0, A, 2, &content);

    // B proxies: the body, a range of it and HEAD, as A serves them.
    let got = request(g.http(1), "GET", &fresh, &[]).await;
    assert_eq!((got.status, got.body.as_slice()), (200, content.as_slice()));
    assert_eq!(got.headers["content-type"], "image/jpeg");
    assert_eq!(
        got.headers["cache-control"],
        "public, max-age=31536000, immutable"
    );
    let part = request(g.http(1), "GET", &fresh, &[("Range", "bytes=10-19")]).await;
    assert_eq!((part.status, part.body.as_slice()), (206, &content[10..20]));
    assert_eq!(part.headers["content-range"], "bytes 10-19/5000");
    let head = request(g.http(1), "HEAD", &fresh, &[]).await;
    assert_eq!(
        (head.status, head.headers["content-length"].as_str()),
        (200, "5000")
    );

    // C redirects to A's HTTP address, and following it gets the file.
    let moved = request(g.http(2), "GET", &fresh, &[]).await;
    assert_eq!(moved.status, 302);
    let location = &moved.headers["location"];
    assert_eq!(location, &format!("http://{}{fresh}", g.http(0)));
    let followed = request(g.http(0), "GET", &fresh, &[]).await;
    assert_eq!(followed.body, content);

    // 404 for a name that never was a file: one of B's own, one A does not hold (A does
    // not pass the request on), and one too old to be still on its way.
    for (what, target) in [
        (
            "B's own name",
            format!("/group1/{}", fresh_name("127.0.0.41", 2, b"x")),
        ),
        (
            "a name A does not hold",
            format!("/group1/{}", fresh_name(A, 2, b"y")),
        ),
        ("an old name", g.file_on(0, A, 3 * 86_400, b"old")),
    ] {
        assert_eq!(
            request(g.http(1), "GET", &target, &[]).await.status,
            404,
            "{what}"
        );
    }

    // Each answer from a source is counted, by mode.
    let metrics = request(g.http(1), "GET", "/metrics", &[]).await;
    let text = String::from_utf8_lossy(&metrics.body);
    assert!(
        text.contains("fdfs_storage_http_fresh_files_total{mode=\"proxy\"} 4"),
        "{text}"
    );

    // The protocol keeps FastDFS's answer: ENOENT from B for the fresh file.
    let mut conn = fdfs_node::client::Conn::connect(
        g.members[1].addr,
        Duration::from_secs(2),
        Duration::from_secs(5),
        None,
    )
    .await
    .expect("connect to B");
    let req = fdfs_node::proto::storage::DownloadRequest {
        offset: 0,
        length: 0,
        group: "group1".into(),
        remote_filename: fresh["/group1/".len()..].to_owned(),
    };
    let (status, _) = conn
        .call(
            fdfs_node::proto::Command::DownloadFile,
            &req.encode(),
            1 << 20,
        )
        .await
        .expect("reply");
    assert_eq!(status, fdfs_node::proto::Status::NotFound);
}

/// Encodes a test image: a gradient, so resizing has something to average.
fn image_file(w: u32, h: u32, format: image::ImageFormat) -> Vec<u8> {
    let pixels = image::ImageBuffer::from_fn(w, h, |x, y| {
        image::Rgb([(x * 255 / w) as u8, (y * 255 / h) as u8, 90])
    });
    let mut out = std::io::Cursor::new(Vec::new());
    image::DynamicImage::ImageRgb8(pixels)
        .write_to(&mut out, format)
        .expect("encode");
    out.into_inner()
}

fn dimensions(body: &[u8]) -> (image::ImageFormat, u32, u32) {
    let reader = image::ImageReader::new(std::io::Cursor::new(body))
        .with_guessed_format()
        .expect("format");
    let format = reader.format().expect("an image");
    let (w, h) = reader.into_dimensions().expect("dimensions");
    (format, w, h)
}

/// Peak resident memory of this test process.
fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .expect("status")
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM")
}

#[tokio::test]
async fn thumbnails_are_made_once_stored_as_slaves_and_served_by_every_member() {
    use fdfs_node::config::{Fit, ResponseMode, ThumbnailPreset};
    const SECRET: &str = "thumb-secret";
    let g = Group::with_http_tuned(
        &[
            ("127.0.0.43", ResponseMode::Proxy),
            ("127.0.0.44", ResponseMode::Proxy),
        ],
        |cfg| {
            cfg.http.check_token = true;
            cfg.http.secret_key = SECRET.into();
            cfg.http.thumbnails.presets = vec![
                ThumbnailPreset {
                    name: "_150x150".into(),
                    width: 150,
                    height: 150,
                    fit: Fit::Cover,
                },
                ThumbnailPreset {
                    name: "_m".into(),
                    width: 320,
                    height: 320,
                    fit: Fit::Contain,
                },
            ];
        },
    )
    .await;
    let client = &g.client;
    let now = fdfs_node::unix_now();
    let signed = |remote: &str, query: &str| {
        let token = token::token(remote, SECRET, now);
        format!("/group1/{remote}?{query}token={token}&ts={now}")
    };
    let holds = |m: usize, remote: &str| {
        let name = fdfs_node::fileid::RemoteName::parse(remote).expect("name");
        g.members[m]
            .node
            .config
            .base_path
            .join(name.relative_path())
            .is_file()
    };

    for (format, ext, mime) in [
        (image::ImageFormat::Jpeg, "jpg", "image/jpeg"),
        (image::ImageFormat::Png, "png", "image/png"),
        (image::ImageFormat::WebP, "webp", "image/webp"),
    ] {
        let source = image_file(800, 600, format);
        let id = client
            .upload_bytes(&source, ext, None)
            .await
            .expect("upload");
        let master = id.remote.to_string();
        common::wait_until(
            "both members hold the image",
            Duration::from_secs(30),
            async || holds(0, &master) && holds(1, &master),
        )
        .await;

        // By size on member A: made, stored as the slave `_150x150`, served.
        let made = request(
            g.http(0),
            "GET",
            &signed(&master, "w=150&h=150&fit=cover&"),
            &[],
        )
        .await;
        assert_eq!(
            made.status,
            200,
            "{ext}: {}",
            String::from_utf8_lossy(&made.body)
        );
        assert_eq!(dimensions(&made.body), (format, 150, 150), "{ext}");
        assert_eq!(made.headers["content-type"], mime);
        assert_eq!(
            made.headers["cache-control"],
            "public, max-age=31536000, immutable"
        );
        let slave = master.replace(&format!(".{ext}"), &format!("_150x150.{ext}"));
        assert!(holds(0, &slave), "{ext}: stored under the slave name on A");
        // The next request is served from that file, byte for byte.
        let again = request(
            g.http(0),
            "GET",
            &signed(&master, "w=150&h=150&fit=cover&"),
            &[],
        )
        .await;
        assert_eq!(again.body, made.body);
        // The image itself is still the image, whatever was served for its thumbnail URL.
        let image = request(g.http(0), "GET", &signed(&master, ""), &[]).await;
        assert_eq!(image.body, source, "{ext}");
        // The slave file replicates: B serves it under its own name, same bytes.
        common::wait_until(
            "B holds the thumbnail",
            Duration::from_secs(30),
            async || holds(1, &slave),
        )
        .await;
        let on_b = request(g.http(1), "GET", &signed(&slave, ""), &[]).await;
        assert_eq!((on_b.status, &on_b.body), (200, &made.body));
        let downloaded = client
            .download_bytes(
                &fdfs_node::fileid::FileId::parse(&format!("group1/{slave}")).expect("id"),
                0,
                0,
            )
            .await
            .expect("download the slave by protocol");
        assert_eq!(downloaded, made.body);

        // By slave name on member B: `_m` (contain, 320×240), then replicated to A.
        let named = master.replace(&format!(".{ext}"), &format!("_m.{ext}"));
        let contain = request(g.http(1), "GET", &signed(&named, ""), &[]).await;
        assert_eq!(contain.status, 200, "{ext}");
        assert_eq!(dimensions(&contain.body), (format, 320, 240), "{ext}");
        common::wait_until(
            "A holds the named thumbnail",
            Duration::from_secs(30),
            async || holds(0, &named),
        )
        .await;
        let on_a = request(g.http(0), "GET", &signed(&named, ""), &[]).await;
        assert_eq!(on_a.body, contain.body);
        // HEAD answers like GET.
        let head = request(g.http(0), "HEAD", &signed(&master, "w=320&h=320&"), &[]).await;
        assert_eq!(
            (head.status, head.headers["content-length"].clone()),
            (200, contain.body.len().to_string())
        );
    }

    let photo = image_file(640, 480, image::ImageFormat::Jpeg);
    let id = client
        .upload_bytes(&photo, "jpg", None)
        .await
        .expect("upload");
    let master = id.remote.to_string();
    common::wait_until("the photo on both", Duration::from_secs(30), async || {
        holds(0, &master) && holds(1, &master)
    })
    .await;
    // The token covers thumbnail URLs too.
    let unsigned = format!("/group1/{master}?w=150&h=150&fit=cover");
    assert_eq!(request(g.http(0), "GET", &unsigned, &[]).await.status, 403);
    // Sizes outside the presets are refused, and nothing is stored for them.
    for query in ["w=151&h=150&fit=cover&", "w=150&h=150&fit=fill&", "w=150&"] {
        let r = request(g.http(0), "GET", &signed(&master, query), &[]).await;
        assert_eq!(r.status, 400, "{query}");
    }
    let odd_slave = master.replace(".jpg", "_151x150.jpg");
    let r = request(g.http(0), "GET", &signed(&odd_slave, ""), &[]).await;
    assert_eq!(r.status, 404);
    assert!(!holds(0, &odd_slave));

    // A decompression bomb (a small PNG that claims 30,000 × 30,000) and a corrupt JPEG
    // are refused with 4xx, without the memory the image would need.
    let rss_before = peak_rss_kib();
    let bomb = {
        let mut out = std::io::Cursor::new(Vec::new());
        let encoder = image::codecs::png::PngEncoder::new_with_quality(
            &mut out,
            image::codecs::png::CompressionType::Fast,
            image::codecs::png::FilterType::NoFilter,
        );
        // A real 64 × 64 PNG whose header then claims 30,000 × 30,000.
        let small = image::DynamicImage::ImageLuma8(image::ImageBuffer::new(64, 64));
        small.write_with_encoder(encoder).expect("png");
        let mut png = out.into_inner();
        forge_png_size(&mut png, 30_000, 30_000);
        png
    };
    // Uploaded, on A, then asked for a thumbnail of.
    let thumbnail_of = async |bytes: &[u8], ext: &str| {
        let id = client.upload_bytes(bytes, ext, None).await.expect("upload");
        let name = id.remote.to_string();
        common::wait_until("the file on A", Duration::from_secs(30), async || {
            holds(0, &name)
        })
        .await;
        request(
            g.http(0),
            "GET",
            &signed(&name, "w=150&h=150&fit=cover&"),
            &[],
        )
        .await
    };
    let r = thumbnail_of(&bomb, "png").await;
    assert_eq!(r.status, 422, "{}", String::from_utf8_lossy(&r.body));
    let mut corrupt = photo.clone();
    corrupt.truncate(300);
    let r = thumbnail_of(&corrupt, "jpg").await;
    assert_eq!(r.status, 415, "{}", String::from_utf8_lossy(&r.body));
    assert!(
        peak_rss_kib() < rss_before + 64 * 1024,
        "memory grew from {rss_before} KiB to {} KiB",
        peak_rss_kib()
    );
    // The member still serves. Six requests at once for a thumbnail not made yet: it is
    // made once, and every request gets the same bytes.
    let url = signed(&master, "w=150&h=150&fit=cover&");
    let addr = g.http(0);
    let asked: Vec<_> = (0..6)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { request(addr, "GET", &url, &[]).await })
        })
        .collect();
    let mut answers = Vec::new();
    for a in asked {
        answers.push(a.await.expect("request"));
    }
    assert_eq!(dimensions(&answers[0].body).1, 150);
    for a in &answers {
        assert_eq!((a.status, &a.body), (200, &answers[0].body));
    }
    // Each outcome was counted.
    let metrics = request(g.http(0), "GET", "/metrics", &[]).await;
    let text = String::from_utf8_lossy(&metrics.body);
    for line in [
        "fdfs_storage_http_thumbnails_total{outcome=\"made\"} 4",
        "fdfs_storage_http_thumbnails_total{outcome=\"stored\"} 11",
        "fdfs_storage_http_thumbnails_total{outcome=\"refused\"} 5",
        "fdfs_storage_thumbnail_make_seconds_count 4",
    ] {
        assert!(text.contains(line), "{line} in\n{text}");
    }
}

/// Rewrites a PNG's IHDR width and height (and its CRC), so a small file claims to be huge.
fn forge_png_size(png: &mut [u8], width: u32, height: u32) {
    // Signature (8), IHDR length (4), "IHDR" (4), then width and height.
    png[16..20].copy_from_slice(&width.to_be_bytes());
    png[20..24].copy_from_slice(&height.to_be_bytes());
    let crc = crc32fast::hash(&png[12..29]);
    png[29..33].copy_from_slice(&crc.to_be_bytes());
}

/// Counts of `fdfs_storage_http_cache_lookups_total` by result.
async fn cache_lookups(addr: SocketAddr) -> (u64, u64) {
    let text = String::from_utf8(request(addr, "GET", "/metrics", &[]).await.body).expect("utf-8");
    let count = |result: &str| {
        text.lines()
            .find_map(|l| {
                l.strip_prefix(&format!(
                    "fdfs_storage_http_cache_lookups_total{{result=\"{result}\"}} "
                ))
            })
            .map_or(0, |v| v.trim().parse().expect("count"))
    };
    (count("hit"), count("miss"))
}

#[tokio::test]
async fn small_files_served_from_memory_go_when_the_file_goes() {
    use fdfs_node::config::ResponseMode;
    let g = Group::with_http(&[
        ("127.0.0.45", ResponseMode::None),
        ("127.0.0.46", ResponseMode::None),
    ])
    .await;
    let client = &g.client;
    let content = data(9000);
    let id = client
        .upload_bytes(&content, "jpg", None)
        .await
        .expect("upload");
    let url = format!("/{id}");
    let on_b = async || request(g.http(1), "GET", &url, &[]).await;
    common::wait_until("B holds the copy", Duration::from_secs(30), async || {
        on_b().await.status == 200
    })
    .await;
    // Read from disk once, then from memory: whole, a range, HEAD and a revalidation.
    let before = cache_lookups(g.http(1)).await;
    let first = on_b().await;
    assert_eq!((first.status, &first.body), (200, &content));
    let again = on_b().await;
    assert_eq!((again.status, &again.body), (200, &content));
    assert_eq!(again.headers["etag"], first.headers["etag"]);
    assert_eq!(
        again.headers["last-modified"],
        first.headers["last-modified"]
    );
    let part = request(g.http(1), "GET", &url, &[("Range", "bytes=100-199")]).await;
    assert_eq!(
        (part.status, part.body.as_slice()),
        (206, &content[100..200])
    );
    assert_eq!(part.headers["content-range"], "bytes 100-199/9000");
    let head = request(g.http(1), "HEAD", &url, &[]).await;
    assert_eq!(head.headers["content-length"], "9000");
    assert!(head.body.is_empty());
    let unchanged = request(
        g.http(1),
        "GET",
        &url,
        &[("If-None-Match", first.headers["etag"].as_str())],
    )
    .await;
    assert_eq!(unchanged.status, 304);
    // Five requests, each looked up once (kept since the polling above).
    let after = cache_lookups(g.http(1)).await;
    assert_eq!(
        after,
        (before.0 + 5, before.1),
        "hits and misses {before:?} → {after:?}"
    );

    // Deleted on its source: the copy B kept is not served once B's file is gone.
    let b_path = g.members[1]
        .node
        .config
        .base_path
        .join(id.remote.relative_path());
    client.delete(&id).await.expect("delete");
    common::wait_until(
        "the deletion reaches B",
        Duration::from_secs(30),
        async || !b_path.exists(),
    )
    .await;
    assert_eq!(on_b().await.status, 404);
    // Found, checked against the disk, dropped: one lookup for the request.
    assert_eq!(cache_lookups(g.http(1)).await, (after.0 + 1, after.1));
    assert_eq!(request(g.http(0), "GET", &url, &[]).await.status, 404);
}

#[tokio::test]
async fn larger_files_kept_open_go_when_the_file_goes() {
    use fdfs_node::config::ResponseMode;
    let g = Group::with_http(&[("127.0.0.47", ResponseMode::None)]).await;
    let client = &g.client;
    // Over the in-memory limit (64 KiB): kept open, not read into memory.
    let content = data(300_000);
    let id = client
        .upload_bytes(&content, "bin", None)
        .await
        .expect("upload");
    let url = format!("/{id}");
    for (range, span) in [
        ("bytes=0-65535", 0..65536),
        ("bytes=100000-100099", 100_000..100_100),
        ("bytes=250000-", 250_000..300_000),
    ] {
        let part = request(g.http(0), "GET", &url, &[("Range", range)]).await;
        assert_eq!(
            (part.status, part.body.as_slice()),
            (206, &content[span]),
            "{range}"
        );
    }
    let whole = request(g.http(0), "GET", &url, &[]).await;
    assert_eq!((whole.status, whole.body.len()), (200, content.len()));
    assert_eq!(whole.body, content);
    // Deleted: the open copy is not served, although its descriptor still reads.
    let path = g.members[0]
        .node
        .config
        .base_path
        .join(id.remote.relative_path());
    client.delete(&id).await.expect("delete");
    assert!(!path.exists());
    let gone = request(g.http(0), "GET", &url, &[("Range", "bytes=0-65535")]).await;
    assert_eq!(gone.status, 404);
}

#[tokio::test]
async fn trunk_stored_files_of_a_fastdfs_store_path_are_served_replicated_and_deleted() {
    use fdfs_node::config::ResponseMode;
    use fdfs_node::fileid::{FileId, TrunkSlot};
    const A: &str = "127.0.0.61";
    let mtime = fdfs_node::unix_now() as u32 - 3600;
    let photo: Vec<u8> = (0..600u32).map(|i| (i * 7 % 251) as u8).collect();
    let note = b"a small text kept in a trunk".to_vec();
    let (one, two) = (
        TrunkSlot {
            id: 1,
            offset: 0,
            size: 1024,
        },
        TrunkSlot {
            id: 1,
            offset: 1024,
            size: 256,
        },
    );
    let photo_name = common::trunk_file_name(A, &photo, mtime, one, "000.jpg");
    let note_name = common::trunk_file_name(A, &note, mtime, two, "000.txt");
    // Member A starts on a store path a FastDFS storage wrote: trunk file 000001 with
    // two slots, and its binlog naming both files.
    let g = Group::with_http_tuned(
        &[(A, ResponseMode::None), ("127.0.0.62", ResponseMode::None)],
        |cfg| {
            if !cfg.bind.starts_with(&format!("{A}:")) {
                return;
            }
            let dir = cfg.base_path.join("data/00/00");
            std::fs::create_dir_all(&dir).expect("dirs");
            let mut trunk = common::fastdfs_slot(one.size, &photo, mtime, "000.jpg");
            trunk.extend(common::fastdfs_slot(two.size, &note, mtime, "000.txt"));
            std::fs::write(dir.join("000001"), trunk).expect("trunk file");
            std::fs::create_dir_all(cfg.base_path.join("data/sync")).expect("sync dir");
            std::fs::write(
                cfg.base_path.join("data/sync/binlog.000"),
                format!("{mtime} C {photo_name}\n{mtime} C {note_name}\n"),
            )
            .expect("binlog");
        },
    )
    .await;
    let client = &g.client;
    let id = |name: &fdfs_node::fileid::RemoteName| {
        FileId::parse(&format!("group1/{name}")).expect("id")
    };
    let (photo_id, note_id) = (id(&photo_name), id(&note_name));

    // The protocol: whole, a range, file info from the slot's header.
    assert_eq!(
        client.download_bytes(&photo_id, 0, 0).await.expect("photo"),
        photo
    );
    assert_eq!(
        client
            .download_bytes(&photo_id, 100, 50)
            .await
            .expect("range"),
        &photo[100..150]
    );
    assert_eq!(
        client.download_bytes(&note_id, 0, 0).await.expect("note"),
        note
    );
    let info = client.file_info(&photo_id).await.expect("info");
    assert_eq!(
        (info.file_size, info.create_timestamp, info.crc32),
        (600, u64::from(mtime), crc32fast::hash(&photo))
    );

    // HTTP: whole and a range, from the slot.
    let url = format!("/group1/{photo_name}");
    let whole = request(g.http(0), "GET", &url, &[]).await;
    assert_eq!((whole.status, &whole.body), (200, &photo));
    let part = request(g.http(0), "GET", &url, &[("Range", "bytes=10-19")]).await;
    assert_eq!((part.status, &part.body[..]), (206, &photo[10..20]));

    // Metadata (its own file beside the trunk) and a slave file of a trunk-stored master.
    client
        .set_metadata(&photo_id, b"width\x02600", false)
        .await
        .expect("set metadata");
    assert_eq!(
        client.get_metadata(&photo_id).await.expect("metadata"),
        b"width\x02600"
    );
    let slave = client
        .upload_slave_bytes(&photo_id, "_s", "jpg", b"small")
        .await
        .expect("slave of a trunk file");
    assert_eq!(
        client.download_bytes(&slave, 0, 0).await.expect("slave"),
        b"small"
    );

    // Replication: B gets both files into the same slots of its own trunk file.
    let trunk_on = |m: usize| g.members[m].node.config.base_path.join("data/00/00/000001");
    let slots_on_b =
        async || std::fs::read(trunk_on(1)).is_ok_and(|t| t.len() >= 1024 + 24 + note.len());
    common::wait_until(
        "B holds both trunk files",
        Duration::from_secs(60),
        slots_on_b,
    )
    .await;
    let on_b = std::fs::read(trunk_on(1)).expect("B's trunk file");
    let on_a = std::fs::read(trunk_on(0)).expect("A's trunk file");
    assert_eq!(on_b[..24 + photo.len()], on_a[..24 + photo.len()]);
    assert_eq!(
        on_b[1024..1024 + 24 + note.len()],
        on_a[1024..1024 + 24 + note.len()]
    );
    let from_b = request(g.http(1), "GET", &format!("/group1/{note_name}"), &[]).await;
    assert_eq!((from_b.status, &from_b.body), (200, &note));

    // Delete: the slot is zeroed on A; on B its header (the space may hold files A has
    // put there since); the neighbour slot stays readable.
    client.delete(&photo_id).await.expect("delete");
    assert!(
        std::fs::read(trunk_on(0)).expect("trunk")[..1024]
            .iter()
            .all(|&b| b == 0)
    );
    assert_eq!(request(g.http(0), "GET", &url, &[]).await.status, 404);
    common::wait_until("B freed the slot", Duration::from_secs(60), async || {
        std::fs::read(trunk_on(1)).is_ok_and(|t| t[..24].iter().all(|&b| b == 0))
    })
    .await;
    assert_eq!(request(g.http(1), "GET", &url, &[]).await.status, 404);
    assert!(client.download_bytes(&photo_id, 0, 0).await.is_err());
    assert_eq!(
        client.download_bytes(&note_id, 0, 0).await.expect("note"),
        note
    );

    // A name whose slot header does not match (another CRC) is not found.
    let forged = common::trunk_file_name(A, b"other bytes", mtime, two, "000.txt");
    assert_eq!(
        request(g.http(0), "GET", &format!("/group1/{forged}"), &[])
            .await
            .status,
        404
    );
}
