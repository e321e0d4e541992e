//! The README's main job as a user runs it: `fdfs-node local` as a real process,
//! then the `fdfs` CLI uploads, downloads, monitors and deletes.

use fdfs_e2e::{LocalProcess, run_binary};

#[test]
fn local_cluster_serves_the_cli_and_stops_on_sigterm() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let local = LocalProcess::start(
        &dir.path().join("data"),
        &[
            "--groups",
            "2",
            "--tracker-addr",
            "127.0.20.1:22122",
            "--storage-ip",
            "127.0.20.2",
        ],
    )?;
    assert_eq!(
        local.lines,
        [
            "tracker 127.0.20.1:22122 http=127.0.20.1:8080",
            "tracker 127.0.20.1:22222 profile=ip45",
            "storage group1 127.0.20.2:23000 http=127.0.20.2:8888",
            "storage group2 127.0.20.3:23000 http=127.0.20.3:8888",
        ]
    );
    // The printed tracker HTTP address serves the cluster document.
    let cluster = http_get("127.0.20.1:8080", "/api/v1/cluster")?;
    let cluster = String::from_utf8_lossy(&cluster);
    assert!(cluster.starts_with("HTTP/1.1 200"), "{cluster}");
    assert!(cluster.contains("\"name\":\"group2\""), "{cluster}");

    // A FastDFS client.conf works as well as --tracker.
    let conf = dir.path().join("client.conf");
    std::fs::write(
        &conf,
        "connect_timeout = 5\nnetwork_timeout = 30\ntracker_server = 127.0.20.1:22122\n",
    )?;
    let conf = conf.to_string_lossy().into_owned();
    let src = dir.path().join("photo.png");
    let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 256) as u8).collect();
    std::fs::write(&src, &data)?;
    let id = run_binary("fdfs", &["--conf", &conf, "upload", &src.to_string_lossy()])?;
    let id = id.trim();
    assert!(
        id.starts_with("group1/M00/") && id.ends_with(".png"),
        "{id}"
    );

    let back = dir.path().join("back.png");
    run_binary(
        "fdfs",
        &[
            "--tracker",
            "127.0.20.1:22122",
            "download",
            id,
            &back.to_string_lossy(),
        ],
    )?;
    assert!(std::fs::read(&back)? == data);
    let part = dir.path().join("part");
    run_binary(
        "fdfs",
        &[
            "--conf",
            &conf,
            "download",
            id,
            &part.to_string_lossy(),
            "--offset",
            "10",
            "--length",
            "20",
        ],
    )?;
    assert_eq!(std::fs::read(&part)?, data[10..30]);

    let id2 = run_binary(
        "fdfs",
        &[
            "--conf",
            &conf,
            "upload",
            &src.to_string_lossy(),
            "--group",
            "group2",
            "--ext",
            "bin",
        ],
    )?;
    assert!(
        id2.trim().starts_with("group2/") && id2.trim().ends_with(".bin"),
        "{id2}"
    );

    // The same file over HTTP, straight from its storage.
    let http = http_get("127.0.20.2:8888", &format!("/{id}"))?;
    assert!(
        http.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&http[..40.min(http.len())])
    );
    assert!(http.ends_with(&data), "HTTP body differs");

    let monitor = run_binary("fdfs", &["--conf", &conf, "monitor"])?;
    assert!(monitor.contains("group count: 2"), "{monitor}");
    assert!(
        monitor.contains("host = 127.0.20.2:23000  ACTIVE"),
        "{monitor}"
    );

    // Appender, slave, metadata and info subcommands.
    let piece = dir.path().join("piece.txt");
    std::fs::write(&piece, b"0123456789")?;
    let piece = piece.to_string_lossy().into_owned();
    let app = run_binary("fdfs", &["--conf", &conf, "upload", "--appender", &piece])?;
    let app = app.trim();
    run_binary("fdfs", &["--conf", &conf, "append", app, &piece])?;
    let patch = dir.path().join("patch");
    std::fs::write(&patch, b"AB")?;
    run_binary(
        "fdfs",
        &[
            "--conf",
            &conf,
            "modify",
            app,
            "3",
            &patch.to_string_lossy(),
        ],
    )?;
    run_binary("fdfs", &["--conf", &conf, "truncate", app, "15"])?;
    let info = run_binary("fdfs", &["--conf", &conf, "info", app])?;
    assert!(
        info.contains("kind:        appender") && info.contains("size:        15"),
        "{info}"
    );
    let app_out = dir.path().join("app.out");
    run_binary(
        "fdfs",
        &["--conf", &conf, "download", app, &app_out.to_string_lossy()],
    )?;
    assert_eq!(std::fs::read(&app_out)?, b"012AB5678901234");
    let normal = run_binary("fdfs", &["--conf", &conf, "regenerate", app])?;
    assert!(
        run_binary("fdfs", &["--conf", &conf, "info", normal.trim()])?
            .contains("kind:        normal")
    );
    let slave = run_binary(
        "fdfs",
        &[
            "--conf",
            &conf,
            "upload-slave",
            id,
            &piece,
            "--prefix",
            "_thumb",
        ],
    )?;
    assert!(slave.trim().ends_with("_thumb.txt"), "{slave}");
    run_binary(
        "fdfs",
        &[
            "--conf",
            &conf,
            "meta",
            "set",
            id,
            "width=1024",
            "author=me",
        ],
    )?;
    run_binary(
        "fdfs",
        &["--conf", &conf, "meta", "set", id, "--merge", "width=800"],
    )?;
    let meta = run_binary("fdfs", &["--conf", &conf, "meta", "get", id])?;
    assert_eq!(meta, "author=me\nwidth=800\n");

    run_binary("fdfs", &["--conf", &conf, "delete", id])?;
    let err = run_binary(
        "fdfs",
        &["--conf", &conf, "download", id, &back.to_string_lossy()],
    )
    .expect_err("deleted");
    assert!(
        err.to_string().contains("ENOENT") && err.to_string().contains(id),
        "{err}"
    );

    let status = local.terminate()?;
    assert!(status.success(), "fdfs-node local exited with {status}");
    Ok(())
}

fn http_get(addr: &str, path: &str) -> anyhow::Result<Vec<u8>> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr)?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )?;
    let mut out = Vec::new();
    s.read_to_end(&mut out)?;
    Ok(out)
}

#[test]
fn local_refuses_a_config_with_unknown_keys() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let cfg = dir.path().join("node.toml");
    std::fs::write(&cfg, "[tracker]\nstore_lokup = 1\n")?;
    let out = std::process::Command::new(fdfs_e2e::workspace_binary("fdfs-node")?)
        .args([
            "local",
            "--config",
            &cfg.to_string_lossy(),
            "--tracker-addr",
            "127.0.21.1:22122",
        ])
        .output()?;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("store_lokup"), "{err}");
    Ok(())
}

/// Waiting for replication: only "not there yet" errors are expected.
fn tracing_wait(e: &fdfs_node::client::ClientError) {
    assert_eq!(e.status(), Some(fdfs_node::proto::Status::NotFound), "{e}");
}

/// Several trackers, replicas, and a second tracker port with 45-byte IP fields.
#[test]
fn local_with_three_trackers_replicas_and_an_ip45_port() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let cfg = dir.path().join("node.toml");
    std::fs::write(
        &cfg,
        "[storage]\nsubdir_count_per_path = 4\nheart_beat_interval = 1\n[tracker]\nleader_ping_interval_ms = 200\n\n\
         [[tracker.listeners]]\n\
         bind = \"127.0.22.1:22200\"\ncompat = { ip_width = \"45\" }\n",
    )?;
    let local = LocalProcess::start(
        &dir.path().join("data"),
        &[
            "--groups",
            "2",
            "--replicas",
            "2",
            "--trackers",
            "3",
            "--tracker-addr",
            "127.0.22.1:22122",
            "--storage-ip",
            "127.0.22.11",
            "--config",
            &cfg.to_string_lossy(),
        ],
    )?;
    assert_eq!(
        local.lines[..4],
        [
            "tracker 127.0.22.1:22122 http=127.0.22.1:8080",
            "tracker 127.0.22.1:22200 profile=ip45",
            "tracker 127.0.22.1:22123 http=127.0.22.1:8081",
            "tracker 127.0.22.1:22201 profile=ip45",
        ]
    );
    assert_eq!(local.trackers.len(), 3);
    assert_eq!(local.storages.len(), 4);
    assert_eq!(
        local.storages[3],
        ("group2".to_owned(), "127.0.22.14:23000".parse()?)
    );

    // The ip45 port answers a store query with 70 bytes, the main port with 40.
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        use fdfs_node::client::Conn;
        use fdfs_node::proto::{Command, Status};
        for (addr, len) in [(local.trackers[0], 40), (local.extra_ports[0].0, 70)] {
            let mut c = Conn::connect(
                addr,
                std::time::Duration::from_secs(5),
                std::time::Duration::from_secs(5),
                None,
            )
            .await?;
            let (st, body) = c
                .call(Command::QueryStoreWithoutGroupOne, &[], 1024)
                .await?;
            anyhow::ensure!(
                st == Status::Ok && body.len() == len,
                "{addr}: {st} {}",
                body.len()
            );
        }
        anyhow::Ok(())
    })?;

    // Every tracker names the same leader; the monitor lists both members of each group.
    let trackers: Vec<String> = local.trackers.iter().map(|a| a.to_string()).collect();
    let mut args: Vec<&str> = Vec::new();
    for t in &trackers {
        args.extend(["--tracker", t]);
    }
    args.push("monitor");
    // The election settles on the best-ranked tracker (the highest port here), and second
    // members get a full copy from the first, then turn ACTIVE.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
    let monitor = loop {
        let m = run_binary("fdfs", &args)?;
        // Every tracker, not only the one the monitor asks, must hold every member ACTIVE.
        let everywhere = trackers.iter().all(|t| {
            run_binary("fdfs", &["--tracker", t, "monitor"])
                .is_ok_and(|m| m.matches("  ACTIVE").count() == 4)
        });
        if m.contains("tracker server is 127.0.22.1:22124") && everywhere {
            break m;
        }
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "no settled leader with every member ACTIVE:\n{m}"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    assert!(monitor.contains("tracker server count=3"), "{monitor}");
    assert!(monitor.contains("group count: 2"), "{monitor}");
    assert_eq!(monitor.matches("\tStorage ").count(), 4, "{monitor}");
    assert!(
        monitor.contains("host = 127.0.22.11:23000  ACTIVE"),
        "{monitor}"
    );
    // A file uploaded to the group is served by both of its members.
    rt.block_on(async {
        let client =
            fdfs_node::client::Client::new(fdfs_node::client::ClientConfig::new(trackers.clone()))
                .await?;
        let id = client
            .upload_bytes(b"replicated to every member", "txt", Some("group1"))
            .await?;
        for member in [local.storages[0].1, local.storages[1].1] {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
            loop {
                let mut out = Vec::new();
                match client.download_from(member, &id, 0, 0, &mut out).await {
                    Ok(_) => {
                        anyhow::ensure!(
                            out == b"replicated to every member",
                            "{member} serves other bytes"
                        );
                        break;
                    }
                    Err(e) if std::time::Instant::now() < deadline => {
                        tracing_wait(&e);
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    }
                    Err(e) => anyhow::bail!("{member} never got {id}: {e}"),
                }
            }
        }
        anyhow::Ok(())
    })?;
    // Each member tells the trackers how much of its binlog the other has yet to receive:
    // nothing, once the file is on both.
    let members = [local.storages[0].1.ip(), local.storages[1].1.ip()];
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let list = run_binary(
            "fdfs",
            &["--tracker", &trackers[0], "monitor", "list", "group1"],
        )?;
        if members
            .iter()
            .all(|ip| list.contains(&format!("sync backlog from {ip} = 0 bytes (0s)")))
        {
            break;
        }
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "no backlog lines for {members:?}:\n{list}"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    // Both members hold every file either took: `fdfs migrate` would let either go, but
    // not while it serves.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let status = run_binary(
            "fdfs",
            &["--tracker", &trackers[0], "migrate", "status", "group1"],
        )?;
        if status.matches("may be stopped and retired").count() == 2 {
            break;
        }
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "members never shown retirable:\n{status}"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let member = members[1].to_string();
    let err = run_binary(
        "fdfs",
        &[
            "--tracker",
            &trackers[0],
            "migrate",
            "retire",
            "group1",
            &member,
            "--wait-seconds",
            "1",
        ],
    )
    .expect_err("a serving member is not retired");
    assert!(err.to_string().contains("still serves"), "{err}");

    let list = run_binary(
        "fdfs",
        &["--tracker", &trackers[1], "monitor", "list", "group2"],
    )?;
    assert!(
        list.contains("group name = group2") && !list.contains("group1"),
        "{list}"
    );

    // An ACTIVE storage cannot be deleted, on any tracker.
    let err = run_binary(
        "fdfs",
        &[
            "--tracker",
            &trackers[0],
            "monitor",
            "delete",
            "group1",
            "127.0.22.11",
        ],
    )
    .expect_err("busy");
    assert!(err.to_string().contains("EBUSY"), "{err}");
    let status = local.terminate()?;
    assert!(status.success(), "{status}");
    Ok(())
}
